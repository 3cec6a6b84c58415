/**
 * The interface both FFI backends implement. Every call returns its result, or `-errno` read
 * inline right after the call (a helper reading errno later saw values clobbered during JIT
 * warm-up on Deno). Pointers never leave `src/ffi/`: memory is passed as typed arrays.
 *
 * @module
 */

import type { RecvBatch } from "./batch.ts";

/** Waiting for sockets to become readable: one epoll set for the process (see poller.ts). */
export interface Poller {
  /** Resolves `true` once `fd` is readable or has an error pending, `false` when forgotten. */
  wait(fd: number): Promise<boolean>;
  /** Removes `fd` (before it is closed) and resolves its pending wait `false`. Idempotent. */
  forget(fd: number): void;
  /** How many sockets wait right now. */
  readonly waiting: number;
}

/**
 * libc for a worker thread of our own (FFI handles do not cross threads): the symbols in the
 * runtime's spelling, and the source of a function that opens them in the worker, for a worker whose
 * body is shipped as source text (no module graph to load or, under `deno test`, type-check).
 */
export interface WorkerFfi {
  /** The library to open. */
  readonly path: string;
  /** Declarations of these functions of the libc table (libc.ts), as this runtime's dlopen takes them. */
  symbols(names: readonly string[]): Record<string, unknown>;
  /**
   * Source of `(path, symbols) => ({ s, address, errno })`: opens the library in the worker and gives
   * its symbols, a typed array's address as a bigint, and a view of the worker thread's errno.
   */
  readonly open: string;
}

/** The libc calls the socket layer needs. */
export interface Libc {
  /** `int socket(int domain, int type, int protocol)` */
  socket(domain: number, type: number, protocol: number): number;
  /** `int bind(int fd, const struct sockaddr *addr, socklen_t len)` */
  bind(fd: number, addr: Uint8Array): number;
  /** `int getsockname(int fd, struct sockaddr *addr, socklen_t *len)` */
  getsockname(fd: number, addr: Uint8Array, addrlen: Uint32Array): number;
  /** `int setsockopt(int fd, int level, int name, const void *value, socklen_t len)` */
  setsockopt(fd: number, level: number, name: number, value: Uint8Array): number;
  /** `int getsockopt(int fd, int level, int name, void *value, socklen_t *len)` */
  getsockopt(fd: number, level: number, name: number, value: Uint8Array, len: Uint32Array): number;
  /** `ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)` */
  sendto(fd: number, buf: Uint8Array, len: bigint, flags: number, to: Uint8Array): number;
  /** `ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)` */
  recvfrom(fd: number, buf: Uint8Array, len: bigint, flags: number, from: Uint8Array, fromlen: Uint32Array): number;
  /** `int recvmmsg(int fd, struct mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout)`, no timeout */
  recvmmsg(fd: number, batch: RecvBatch, flags: number): number;
  /** A recvmmsg batch of `count` slots of `slotSize` bytes, with its pointers filled in. */
  createRecvBatch(count: number, slotSize: number): RecvBatch;
  /** `int close(int fd)` */
  close(fd: number): number;
  /** `int open(const char *path, int flags)`; `path` NUL-terminated */
  open(path: Uint8Array, flags: number): number;
  /** `ssize_t read(int fd, void *buf, size_t count)` into `buf[offset..]` */
  read(fd: number, buf: Uint8Array, offset: number): number;
  /** `ssize_t readlink(const char *path, char *buf, size_t size)`; `path` NUL-terminated */
  readlink(path: Uint8Array, buf: Uint8Array): number;
  /**
   * `int poll(struct pollfd *fds, nfds_t nfds, int timeout)` over `fds`, an array of 8-byte `struct
   * pollfd { int fd; short events; short revents; }`. It blocks the calling thread: only a worker
   * of our own calls it.
   */
  poll(fds: Uint8Array, timeoutMs: number): number;
  /** `setpriority(PRIO_PROCESS, gettid(), nice)`: the calling thread's nice value (lower needs CAP_SYS_NICE). */
  setThreadNice(nice: number): number;
  /** `int eventfd(unsigned int initval, int flags)` */
  eventfd(initval: number, flags: number): number;
  /** `ssize_t write(int fd, const void *buf, size_t count)` of all of `buf` */
  write(fd: number, buf: Uint8Array | BigUint64Array): number;
  /** `ssize_t getdents64(int fd, void *dirp, size_t count)` (glibc >= 2.30) */
  getdents64(fd: number, buf: Uint8Array): number;
  /** `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds: the clock of proc_event timestamps. */
  monotonicNs(): bigint;
  /** `clock_gettime(clock)` in nanoseconds, or `-errno` (a number) when it fails. */
  clockNs(clock: number): bigint | number;
  /** What a worker thread of our own needs to open libc itself. */
  readonly worker: WorkerFfi;
  /** The process's one poll set, made on first use (it holds an epoll fd, an eventfd and one thread). */
  readonly poller: Poller;
}

/** `CLOCK_MONOTONIC` */
export const CLOCK_MONOTONIC = 1;
/** `CLOCK_BOOTTIME`: CLOCK_MONOTONIC plus the time spent suspended (the clock of /proc/PID/stat's start time). */
export const CLOCK_BOOTTIME = 7;
/** `EFD_CLOEXEC` */
export const EFD_CLOEXEC = 0o2000000;
/** `EFD_NONBLOCK` */
export const EFD_NONBLOCK = 0o4000;
/** `O_RDONLY | O_CLOEXEC`. */
export const O_RDONLY_CLOEXEC = 0o2000000;
/** `O_RDONLY | O_DIRECTORY | O_CLOEXEC`. */
export const O_DIRECTORY_CLOEXEC = 0o2000000 | 0o200000;
/** Default library name; `libc.so` is a linker script on glibc, so the soname is used. */
export const DEFAULT_LIBC = "libc.so.6";
