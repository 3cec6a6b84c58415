/**
 * The libc symbols cnlink calls, once, each with its C prototype, and the one wrapper that turns a
 * failed call into `-errno`. The runtime backends (deno.ts, bun.ts) only translate {@linkcode LIBC}
 * into their FFI's spelling, open the library, and own the wait for readable sockets.
 *
 * Kinds of parameter and result, runtime-neutral:
 * - `i32`, `u32`: a C int / unsigned int, passed as a number;
 * - `size`: a `size_t`, passed as a bigint (Deno takes the fast call path only for a bigint);
 * - `buffer`: memory the call reads or writes, passed as a typed array (`null` allowed);
 * - `pointer`: an opaque pointer (only `__errno_location`'s result and recvmmsg's NULL timeout).
 *
 * `ssize_t` results are declared `i32`: a datagram or a /proc file read always fits, and an i32 result
 * avoids a bigint per call.
 *
 * @module
 */
import type { RecvBatch } from "./batch.ts";
import { CLOCK_MONOTONIC, type Libc, type Poller, type WorkerFfi } from "./types.ts";

/** A parameter or result kind; see the module documentation. */
export type CKind = "i32" | "u32" | "size" | "buffer" | "pointer";

/** One libc function: its parameters and result, and whether it blocks (`wait`). */
export interface CFunction {
  readonly args: readonly CKind[];
  readonly result: CKind;
  /** The one call that blocks: Deno runs it on its blocking pool, Bun in its poll worker. */
  readonly wait?: true;
}

/** Every libc function cnlink calls. */
export const LIBC = {
  // int socket(int domain, int type, int protocol)
  socket: { args: ["i32", "i32", "i32"], result: "i32" },
  // int bind(int fd, const struct sockaddr *addr, socklen_t len)
  bind: { args: ["i32", "buffer", "u32"], result: "i32" },
  // int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
  getsockname: { args: ["i32", "buffer", "buffer"], result: "i32" },
  // int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
  setsockopt: { args: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
  getsockopt: { args: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
  sendto: { args: ["i32", "buffer", "size", "i32", "buffer", "u32"], result: "i32" },
  // ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
  recvfrom: { args: ["i32", "buffer", "size", "i32", "buffer", "buffer"], result: "i32" },
  // int recvmmsg(int fd, struct mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout)
  recvmmsg: { args: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  // int close(int fd)
  close: { args: ["i32"], result: "i32" },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { args: ["u32", "i32"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count)
  write: { args: ["i32", "buffer", "size"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { args: ["i32", "buffer", "size"], result: "i32" },
  // int open(const char *path, int flags)
  open: { args: ["buffer", "i32"], result: "i32" },
  // ssize_t readlink(const char *path, char *buf, size_t size)
  readlink: { args: ["buffer", "buffer", "size"], result: "i32" },
  // ssize_t getdents64(int fd, void *dirp, size_t count) (glibc >= 2.30)
  getdents64: { args: ["i32", "buffer", "size"], result: "i32" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout): blocks the calling thread, so only a
  // worker of our own calls it (the receipt worker, src/proc/receipt_worker.ts)
  poll: { args: ["buffer", "size", "i32"], result: "i32" },
  // pid_t gettid(void) (glibc >= 2.30)
  gettid: { args: [], result: "i32" },
  // int setpriority(int which, id_t who, int prio): with PRIO_PROCESS and a thread id, that thread's nice
  setpriority: { args: ["i32", "u32", "i32"], result: "i32" },
  // int epoll_create1(int flags)
  epoll_create1: { args: ["i32"], result: "i32" },
  // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
  epoll_ctl: { args: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
  epoll_wait: { args: ["i32", "buffer", "i32", "i32"], result: "i32", wait: true },
  // int clock_gettime(clockid_t clock, struct timespec *ts)
  clock_gettime: { args: ["i32", "buffer"], result: "i32" },
  // int *__errno_location(void)
  __errno_location: { args: [], result: "pointer" },
} as const satisfies Record<string, CFunction>;

/** `PRIO_PROCESS`: setpriority()'s `who` is a process id, or on Linux a thread id. */
const PRIO_PROCESS = 0;

/** The functions of {@linkcode LIBC} that run on the calling thread (all but the waiting one). */
export type DirectCall = { [K in keyof typeof LIBC]: typeof LIBC[K] extends { wait: true } ? never : K }[
  keyof typeof LIBC
];

/**
 * The symbols as both FFIs hand them out, for the calls made on the JS thread (typed arrays in,
 * numbers out). `__errno_location` is left to the backend: its pointer type differs by runtime.
 */
export interface Symbols {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  getsockname(fd: number, addr: Uint8Array, len: Uint32Array): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Uint8Array, len: Uint32Array): number;
  sendto(fd: number, buf: Uint8Array, len: bigint, flags: number, to: Uint8Array, tolen: number): number;
  recvfrom(fd: number, buf: Uint8Array, len: bigint, flags: number, from: Uint8Array, fromlen: Uint32Array): number;
  recvmmsg(fd: number, headers: Uint8Array, count: number, flags: number, timeout: null): number;
  close(fd: number): number;
  eventfd(initval: number, flags: number): number;
  write(fd: number, buf: Uint8Array | BigUint64Array, len: bigint): number;
  read(fd: number, buf: Uint8Array | BigUint64Array, len: bigint): number;
  open(path: Uint8Array, flags: number): number;
  readlink(path: Uint8Array, buf: Uint8Array, size: bigint): number;
  getdents64(fd: number, buf: Uint8Array, size: bigint): number;
  poll(fds: Uint8Array, count: bigint, timeoutMs: number): number;
  gettid(): number;
  setpriority(which: number, who: number, prio: number): number;
  epoll_create1(flags: number): number;
  epoll_ctl(epfd: number, op: number, fd: number, event: Uint8Array): number;
  clock_gettime(clock: number, ts: BigInt64Array): number;
}

/** What only the backend knows: recvmmsg's pointer table and the wait. */
export interface BackendParts {
  /** A recvmmsg batch of `count` slots of `slotSize` bytes, with its pointers filled in. */
  createRecvBatch(count: number, slotSize: number): RecvBatch;
  /** The process's poll set, made on first use. */
  poller(): Poller;
  /** libc for a worker of our own. */
  worker: WorkerFfi;
}

/**
 * The entries of a runtime's symbol table named in `names`: what a worker thread opens libc with
 * (FFI handles do not cross threads).
 *
 * @param table the runtime's spelling of {@linkcode LIBC}
 * @param names the symbols the worker calls
 */
export function pickSymbols(
  table: Readonly<Record<string, unknown>>,
  names: readonly string[],
): Record<string, unknown> {
  return Object.fromEntries(names.map((name) => [name, table[name]]));
}

/**
 * The {@linkcode Libc} over a backend's symbols: every call returns its result or `-errno`.
 *
 * errno is read inline, in the same function, right after the call: on Deno a read through a helper
 * function saw clobbered values during JIT warm-up in some fresh processes (bench/README.md,
 * "Figures the code cites").
 *
 * @param s the symbols
 * @param errno a view of the JS thread's errno (`__errno_location()`)
 * @param parts the backend's own parts
 * @returns the calls the socket layer makes
 */
export function wrapLibc(s: Symbols, errno: Int32Array, parts: BackendParts): Libc {
  const timespec = new BigInt64Array(2);
  let poller: Poller | undefined;
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
    createRecvBatch: parts.createRecvBatch,
    worker: parts.worker,
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
    poll(fds, timeoutMs) {
      const r = s.poll(fds, BigInt(fds.byteLength >> 3), timeoutMs);
      return r < 0 ? -errno[0] : r;
    },
    setThreadNice(nice) {
      const r = s.setpriority(PRIO_PROCESS, s.gettid(), nice);
      return r < 0 ? -errno[0] : r;
    },
    eventfd(initval, flags) {
      const r = s.eventfd(initval, flags);
      return r < 0 ? -errno[0] : r;
    },
    write(fd, buf) {
      const r = s.write(fd, buf, BigInt(buf.byteLength));
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
    clockNs(clock) {
      const r = s.clock_gettime(clock, timespec);
      return r < 0 ? -errno[0] : timespec[0] * 1_000_000_000n + timespec[1];
    },
    get poller(): Poller {
      return poller ??= parts.poller();
    },
  };
}
