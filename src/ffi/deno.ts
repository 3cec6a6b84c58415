/**
 * Deno backend: `Deno.dlopen` on libc.
 *
 * Waiting uses a `nonblocking` poll() over [socket, eventfd] on Deno's blocking pool; such a call
 * cannot be cancelled, so close() writes the eventfd to make it return, then awaits it.
 *
 * @module
 */
import { NetlinkError } from "../errors.ts";
import { RecvBatch } from "./batch.ts";
import { CLOCK_MONOTONIC, EFD_CLOEXEC, EFD_NONBLOCK, type Libc, POLLIN, type Waiter } from "./types.ts";

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
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout) -- on the blocking pool
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
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
    if (cause instanceof Deno.errors.NotCapable) {
      throw new Error(`cnlink needs FFI access: run Deno with --allow-ffi (${(cause as Error).message})`, { cause });
    }
    throw new Error(`cnlink cannot open ${path}: ${(cause as Error).message}`, { cause });
  }
  const s = lib.symbols;
  const errnoPointer = s.__errno_location();
  if (errnoPointer === null) throw new Error("cnlink: __errno_location() returned NULL");
  // errno lives at a fixed thread-local address of the JS thread. Read it inline after each call:
  // a helper function read it late during JIT warm-up (see ffi-notes §1).
  const errno = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(errnoPointer, 4));
  const timespec = new BigInt64Array(2);

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
    monotonicNs() {
      s.clock_gettime(CLOCK_MONOTONIC, timespec);
      return timespec[0] * 1_000_000_000n + timespec[1];
    },
    createWaiter(fd) {
      const efd = s.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (efd < 0) throw new NetlinkError("create eventfd for", errno[0]);
      return new DenoWaiter(fd, efd, s);
    },
  };
}

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/**
 * Deno runs `nonblocking` calls on a pool of at most 32 threads, shared with its own blocking work;
 * a 33rd poll would wait for a free thread, which for sockets that stay quiet means forever. So the
 * number of polls in flight is capped below that, and a wait past the cap fails with an error that
 * says why instead of stalling (measured: with 34 waiting sockets the last never saw its message).
 */
export const MAX_WAITING = 30;
let waiting = 0;

class DenoWaiter implements Waiter {
  // struct pollfd { int fd; short events; short revents; } x 2, in native order. Kept on the
  // instance: the pool thread reads it while a poll is in flight.
  readonly #fds = new Int32Array(4);
  readonly #shorts = new Int16Array(this.#fds.buffer);
  readonly #one = new BigUint64Array([1n]);
  #inFlight: Promise<number> | null = null;
  #closed = false;
  #closing: Promise<void> | null = null;

  constructor(fd: number, readonly efd: number, readonly s: Symbols) {
    this.#fds[0] = fd;
    this.#shorts[2] = POLLIN;
    this.#fds[2] = efd;
    this.#shorts[6] = POLLIN;
  }

  async wait(): Promise<boolean> {
    while (!this.#closed) {
      if (waiting >= MAX_WAITING) {
        throw new Error(
          `cnlink: ${MAX_WAITING} sockets are already waiting, and Deno runs at most 32 blocking FFI calls at ` +
            "once; another would never wake. Share a socket (one Connector can join many groups) or close some.",
        );
      }
      this.#shorts[3] = 0;
      this.#shorts[7] = 0;
      waiting++;
      this.#inFlight = this.s.poll(this.#fds, 2n, -1);
      const r = await this.#inFlight.finally(() => waiting--);
      this.#inFlight = null;
      // errno of a nonblocking call is set on the pool thread and unreadable here: a -1 is
      // treated as EINTR and the poll retried.
      if (r < 0) continue;
      if (this.#closed || this.#shorts[7] !== 0) return false;
      if (this.#shorts[3] !== 0) return true;
    }
    return false;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.s.write(this.efd, this.#one, 8n);
    if (this.#inFlight) await this.#inFlight;
    this.s.close(this.efd);
  }
}
