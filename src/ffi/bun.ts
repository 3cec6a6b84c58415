/**
 * Bun backend: `bun:ffi` on libc.
 *
 * Bun has no nonblocking FFI calls, so one Worker for the whole process blocks in epoll_wait() over
 * every waiting socket (poller.ts, bun_poller_worker.ts) and hands the tokens that fired to the JS
 * thread through a ring in a SharedArrayBuffer, watched with `Atomics.waitAsync`. The worker is ref'd only while some
 * socket waits, so an idle process exits as it would without it.
 *
 * @module
 */
import { dlopen, ptr, toArrayBuffer } from "bun:ffi";
import process from "node:process";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { NetlinkError } from "../errors.ts";
import { RecvBatch } from "./batch.ts";
import { pollerWorker, type PollerWorkerSetup, RING, SLOT } from "./bun_poller_worker.ts";
import { EPOLL_CLOEXEC, epollEventLayout, MAX_EVENTS, type PollBackend, PollSet } from "./poller.ts";
import { CLOCK_MONOTONIC, type Libc, type Poller } from "./types.ts";

const SYMBOLS = {
  // int socket(int domain, int type, int protocol)
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  // int bind(int fd, const struct sockaddr *addr, socklen_t len)
  bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
  // int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
  getsockname: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  // int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
  // int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
  getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
  // ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
  // (declared i32: a datagram length always fits)
  sendto: { args: ["i32", "ptr", "u64", "i32", "ptr", "u32"], returns: "i32" },
  // ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
  recvfrom: { args: ["i32", "ptr", "u64", "i32", "ptr", "ptr"], returns: "i32" },
  // int recvmmsg(int fd, struct mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout)
  recvmmsg: { args: ["i32", "ptr", "u32", "i32", "ptr"], returns: "i32" },
  // int close(int fd)
  close: { args: ["i32"], returns: "i32" },
  // int open(const char *path, int flags)
  open: { args: ["ptr", "i32"], returns: "i32" },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { args: ["i32", "ptr", "u64"], returns: "i32" },
  // ssize_t readlink(const char *path, char *buf, size_t size)
  readlink: { args: ["ptr", "ptr", "u64"], returns: "i32" },
  // ssize_t getdents64(int fd, void *dirp, size_t count)
  getdents64: { args: ["i32", "ptr", "u64"], returns: "i32" },
  // int epoll_create1(int flags)
  epoll_create1: { args: ["i32"], returns: "i32" },
  // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
  epoll_ctl: { args: ["i32", "i32", "i32", "ptr"], returns: "i32" },
  // int clock_gettime(clockid_t clock, struct timespec *ts)
  clock_gettime: { args: ["i32", "ptr"], returns: "i32" },
  // int *__errno_location(void)
  __errno_location: { args: [], returns: "ptr" },
} as const;

/**
 * Opens libc and returns the backend.
 *
 * @param path library to open
 */
export function loadBun(path: string): Libc {
  let lib;
  try {
    lib = dlopen(path, SYMBOLS);
  } catch (cause) {
    throw new Error(`cnlink cannot open ${path}: ${(cause as Error).message}`, { cause });
  }
  const s = lib.symbols;
  const errnoPointer = s.__errno_location();
  if (!errnoPointer) throw new Error("cnlink: __errno_location() returned NULL");
  const errno = new Int32Array(toArrayBuffer(errnoPointer, 0, 4));
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
      return new RecvBatch(count, slotSize, (bytes) => BigInt(ptr(bytes)));
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
      return poller ??= createPoller(s, errno, path);
    },
  };
}

type Symbols = ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"];

/** Bun's Worker can be unref'd so that an idle poll thread does not keep the process alive. */
type BunWorker = Worker & { ref(): void; unref(): void };

let workerUrl: string | undefined;

/** The process's poll set, the poll worker, and the JS side of their hand-off. */
function createPoller(s: Symbols, errno: Int32Array, path: string): PollSet {
  const epfd = s.epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) throw new NetlinkError("epoll_create1", errno[0], "set up waiting for sockets");
  const layout = epollEventLayout(process.arch === "x64");
  const event = new Uint8Array(layout.size);
  const eventView = new DataView(event.buffer);
  const shared = new Int32Array(new SharedArrayBuffer(4 * (SLOT.RING + RING)));
  let worker: BunWorker | null = null;
  let listening = false;
  let stopListening: (() => void) | null = null;
  // At most one Atomics.waitAsync outstanding: one that an idle spell left pending is reused.
  let outstanding: Promise<unknown> | null = null;
  // Tokens taken from the ring so far (wraps at 2^32 like the worker's count).
  let taken = 0;

  const start = (): BunWorker => {
    const setup: PollerWorkerSetup = {
      path,
      epfd,
      shared: shared.buffer as SharedArrayBuffer,
      eventSize: layout.size,
      dataOffset: layout.data,
      maxEvents: MAX_EVENTS,
      littleEndian: LITTLE_ENDIAN,
      slot: SLOT,
      ring: RING,
    };
    const source = `self.onmessage = (e) => (${String(pollerWorker)})(e.data, require("bun:ffi").dlopen);`;
    workerUrl ??= URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
    const w = new Worker(workerUrl) as BunWorker;
    w.postMessage(setup);
    return w;
  };

  /** The tokens the worker has written since the last call; wakes it if it waits for room. */
  const take = (written: number): number[] => {
    const n = (written - taken) | 0;
    const tokens = new Array<number>(n);
    for (let i = 0; i < n; i++) tokens[i] = shared[SLOT.RING + ((taken + i) & (RING - 1))];
    taken = written;
    Atomics.store(shared, SLOT.TAKEN, taken);
    // Almost always nobody waits, and then notify is a lookup in the runtime, not a system call.
    // (Notifying only when the ring looked full would race: the worker can fill it after our load.)
    Atomics.notify(shared, SLOT.TAKEN);
    return tokens;
  };

  const listen = async (): Promise<void> => {
    const w = worker ??= start();
    // Only a waiting socket keeps the process alive, as on Deno.
    w.ref();
    const idle = new Promise<"idle">((resolve) => (stopListening = () => resolve("idle")));
    try {
      while (set.waiting > 0) {
        const written = Atomics.load(shared, SLOT.WRITTEN);
        if (written !== taken) {
          set.ready(take(written));
          continue;
        }
        if (!outstanding) {
          const pending = Atomics.waitAsync(shared, SLOT.WRITTEN, written);
          if (!pending.async) continue;
          outstanding = pending.value.finally(() => (outstanding = null));
        }
        if (await Promise.race([outstanding, idle]) === "idle") break;
      }
    } finally {
      listening = false;
      stopListening = null;
      w.unref();
    }
  };

  const backend: PollBackend = {
    ctl(op, fd, mask, token) {
      eventView.setUint32(0, mask, LITTLE_ENDIAN);
      eventView.setBigUint64(layout.data, BigInt(token), LITTLE_ENDIAN);
      const r = s.epoll_ctl(epfd, op, fd, event);
      return r < 0 ? -errno[0] : r;
    },
    activate() {
      if (listening) return;
      listening = true;
      void listen();
    },
    idle() {
      stopListening?.();
    },
  };
  const set = new PollSet(backend);
  return set;
}
