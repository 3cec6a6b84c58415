/**
 * Deno backend: `Deno.dlopen` on libc.
 *
 * Waiting is one `nonblocking` epoll_wait() on Deno's blocking pool for all sockets of the process
 * (poller.ts). Such a call cannot be cancelled and keeps the process alive while pending, so the
 * loop runs only while some socket waits, and the eventfd in the set makes it return when none does.
 *
 * @module
 */
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { NetlinkError } from "../errors.ts";
import { RecvBatch } from "./batch.ts";
import {
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  epollEventLayout,
  EPOLLIN,
  MAX_EVENTS,
  type PollBackend,
  PollSet,
  WAKE_TOKEN,
} from "./poller.ts";
import { CLOCK_MONOTONIC, EFD_CLOEXEC, EFD_NONBLOCK, type Libc, type Poller } from "./types.ts";

const SYMBOLS = {
  // int socket(int domain, int type, int protocol)
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int bind(int fd, const struct sockaddr *addr, socklen_t len)
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
  // (declared i32: a datagram length always fits, and an i32 result avoids a bigint per call)
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "i32" },
  // ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
  recvfrom: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"], result: "i32" },
  // int recvmmsg(int fd, struct mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout)
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  // int close(int fd)
  close: { parameters: ["i32"], result: "i32" },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count)
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  // int open(const char *path, int flags)
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // ssize_t readlink(const char *path, char *buf, size_t size)
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "i32" },
  // ssize_t getdents64(int fd, void *dirp, size_t count)
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  // int epoll_create1(int flags)
  epoll_create1: { parameters: ["i32"], result: "i32" },
  // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) -- on the blocking pool
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32", nonblocking: true },
  // int clock_gettime(clockid_t clock, struct timespec *ts)
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  // int *__errno_location(void)
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * Opens libc and returns the backend.
 *
 * @param path library to open
 */
export function loadDeno(path: string): Libc {
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen(path, SYMBOLS);
  } catch (cause) {
    // A path-scoped --allow-ffi=PATH leaves the permission at "prompt": Deno resolves PATH against
    // the working directory (so dlopen looks for ./libc.so.6), and pointer operations such as
    // reading errno need the unscoped permission anyway.
    if (cause instanceof Deno.errors.NotCapable || Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      throw new Error(
        "cnlink needs Deno's plain --allow-ffi flag (or -A); a path-scoped --allow-ffi=PATH is not enough " +
          "(Deno resolves PATH against the working directory, and reading errno needs the unscoped permission)",
        { cause },
      );
    }
    const reason = (cause as Error).message.replace(/^(Could not open library: )+/, "");
    throw new Error(`cnlink cannot open ${path}: ${reason}`, { cause });
  }
  const s = lib.symbols;
  const errnoPointer = s.__errno_location();
  if (errnoPointer === null) throw new Error("cnlink: __errno_location() returned NULL");
  // errno lives at a fixed thread-local address of the JS thread. Read it inline after each call:
  // a helper function read it late during JIT warm-up (see ffi-notes §1).
  const errno = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(errnoPointer, 4));
  const timespec = new BigInt64Array(2);
  let poller: PollSet | undefined;

  return {
    socket(domain, type, protocol) {
      const r = s.socket(domain, type, protocol);
      return r < 0 ? -errno[0] : r;
    },
    bind(fd, addr) {
      const r = s.bind(fd, addr, addr.byteLength);
      return r < 0 ? -errno[0] : r;
    },
    getsockname(fd, addr, addrlen) {
      const r = s.getsockname(fd, addr, addrlen);
      return r < 0 ? -errno[0] : r;
    },
    setsockopt(fd, level, name, value) {
      const r = s.setsockopt(fd, level, name, value, value.byteLength);
      return r < 0 ? -errno[0] : r;
    },
    getsockopt(fd, level, name, value, len) {
      const r = s.getsockopt(fd, level, name, value, len);
      return r < 0 ? -errno[0] : r;
    },
    sendto(fd, buf, len, flags, to) {
      const r = s.sendto(fd, buf, len, flags, to, to.byteLength);
      return r < 0 ? -errno[0] : r;
    },
    recvfrom(fd, buf, len, flags, from, fromlen) {
      const r = s.recvfrom(fd, buf, len, flags, from, fromlen);
      return r < 0 ? -errno[0] : r;
    },
    recvmmsg(fd, batch, flags) {
      const r = s.recvmmsg(fd, batch.headers, batch.count, flags, null);
      return r < 0 ? -errno[0] : r;
    },
    createRecvBatch(count, slotSize) {
      return new RecvBatch(count, slotSize, (bytes) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes))));
    },
    close(fd) {
      const r = s.close(fd);
      return r < 0 ? -errno[0] : r;
    },
    open(path, flags) {
      const r = s.open(path, flags);
      return r < 0 ? -errno[0] : r;
    },
    read(fd, buf, offset) {
      const r = s.read(fd, offset === 0 ? buf : buf.subarray(offset), BigInt(buf.byteLength - offset));
      return r < 0 ? -errno[0] : r;
    },
    readlink(path, buf) {
      const r = s.readlink(path, buf, BigInt(buf.byteLength));
      return r < 0 ? -errno[0] : r;
    },
    getdents64(fd, buf) {
      const r = s.getdents64(fd, buf, BigInt(buf.byteLength));
      return r < 0 ? -errno[0] : r;
    },
    monotonicNs() {
      s.clock_gettime(CLOCK_MONOTONIC, timespec);
      return timespec[0] * 1_000_000_000n + timespec[1];
    },
    get poller(): Poller {
      return poller ??= createPoller(s, errno);
    },
  };
}

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** The process's poll set and the loop that runs epoll_wait() for it on the blocking pool. */
function createPoller(s: Symbols, errno: Int32Array): PollSet {
  const epfd = s.epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) throw new NetlinkError("epoll_create1", errno[0], "set up waiting for sockets");
  const efd = s.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) throw new NetlinkError("eventfd", errno[0], "set up waiting for sockets");
  const layout = epollEventLayout(Deno.build.arch === "x86_64");
  const event = new Uint8Array(layout.size);
  const eventView = new DataView(event.buffer);
  // Written by the pool thread while a wait is in flight: read only after it settled.
  const events = new Uint8Array(layout.size * MAX_EVENTS);
  const eventsView = new DataView(events.buffer);
  const one = new BigUint64Array([1n]);
  const drain = new BigUint64Array(1);
  let running = false;
  let wakePending = false;

  const backend: PollBackend = {
    ctl(op, fd, mask, token) {
      eventView.setUint32(0, mask, LITTLE_ENDIAN);
      eventView.setBigUint64(layout.data, BigInt(token), LITTLE_ENDIAN);
      const r = s.epoll_ctl(epfd, op, fd, event);
      return r < 0 ? -errno[0] : r;
    },
    activate() {
      if (running) return;
      running = true;
      void loop();
    },
    idle() {
      // Make the pending epoll_wait return, so the loop can see nobody waits and end.
      if (running && !wakePending) {
        wakePending = true;
        s.write(efd, one, 8n);
      }
    },
  };
  const set = new PollSet(backend);
  const added = backend.ctl(EPOLL_CTL_ADD, efd, EPOLLIN, WAKE_TOKEN);
  if (added < 0) throw new NetlinkError("epoll_ctl", -added, "set up waiting for sockets");

  async function loop(): Promise<void> {
    try {
      while (set.waiting > 0) {
        const n = await s.epoll_wait(epfd, events, MAX_EVENTS, -1);
        // errno of a nonblocking call is set on the pool thread and unreadable here: -1 can only be
        // EINTR for a valid set, so the wait is retried.
        if (n <= 0) continue;
        const tokens: number[] = [];
        for (let i = 0; i < n; i++) {
          const token = Number(eventsView.getBigUint64(i * layout.size + layout.data, LITTLE_ENDIAN));
          if (token === WAKE_TOKEN) {
            s.read(efd, drain, 8n);
            wakePending = false;
          } else tokens.push(token);
        }
        set.ready(tokens);
      }
    } finally {
      running = false;
    }
  }
  return set;
}
