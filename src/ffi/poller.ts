/**
 * One waiter for every socket of the process: an epoll set that a single native thread waits on
 * (Deno: one `nonblocking` epoll_wait() on its blocking pool; Bun: one Worker), woken by one eventfd.
 * N waiting sockets cost one thread, where a poll() per socket cost one each (and Deno's pool has 32).
 *
 * This file is the runtime-neutral half: which socket waits under which token, arming and
 * forgetting. The backends run the wait loop and call {@linkcode PollSet.ready} with the tokens that
 * fired.
 *
 * - Each wait registers the fd with `EPOLLIN | EPOLLONESHOT` under a fresh token: it fires once, then
 *   stays disabled until the next wait re-arms it (EPOLL_CTL_MOD), so a readable socket whose owner
 *   is still draining never spins the waiting thread. epoll_ctl() may be called while another thread
 *   is inside epoll_wait(); the change applies to that wait.
 * - A closed socket is removed (EPOLL_CTL_DEL) before its fd is closed. An event already collected
 *   for it carries a token nobody holds any more and is ignored, even if the fd number is reused.
 * - Errors count as readiness: ENOBUFS shows up as EPOLLERR, which epoll always reports.
 *
 * @module
 */
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { Errno, NetlinkError } from "../errors.ts";

/** `EPOLL_CTL_ADD`, `EPOLL_CTL_DEL`, `EPOLL_CTL_MOD` (`include/uapi/linux/eventpoll.h`). */
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
/** `EPOLLIN`. */
export const EPOLLIN = 0x001;
/** `EPOLLONESHOT`. */
export const EPOLLONESHOT = 1 << 30;
/** `EPOLL_CLOEXEC` (= O_CLOEXEC). */
export const EPOLL_CLOEXEC = 0o2000000;
/** The token of the eventfd that wakes the waiting thread; sockets get 1 and up. */
export const WAKE_TOKEN = 0;
/** Events collected per epoll_wait() call. */
export const MAX_EVENTS = 64;

/**
 * `struct epoll_event { __u32 events; __u64 data; }`: packed (12 bytes) on x86_64, naturally aligned
 * (16 bytes, data at 8) elsewhere (`EPOLL_PACKED` in the uapi header). The token is data's low half.
 */
export function epollEventLayout(x86_64: boolean): { size: number; data: number } {
  return x86_64 ? { size: 12, data: 4 } : { size: 16, data: 8 };
}

/** The process's epoll set as both backends make it. */
export interface Epoll {
  /** The epoll fd. */
  readonly epfd: number;
  /** `struct epoll_event` on this architecture. */
  readonly layout: { size: number; data: number };
  /** `epoll_ctl(epfd, op, fd, {events, data: token})`; returns 0 or `-errno`, read inline. */
  ctl(op: number, fd: number, events: number, token: number): number;
}

/**
 * Creates the epoll set and its `ctl()`, which builds each `epoll_event` in one reused buffer.
 *
 * @param s epoll_create1 and epoll_ctl as the backend's FFI gives them
 * @param errno the JS thread's errno
 * @param x86_64 whether `struct epoll_event` is packed (see {@linkcode epollEventLayout})
 * @returns the set
 * @throws {NetlinkError} epoll_create1 failed
 */
export function createEpoll(
  s: {
    epoll_create1(flags: number): number;
    epoll_ctl(epfd: number, op: number, fd: number, event: Uint8Array): number;
  },
  errno: Int32Array,
  x86_64: boolean,
): Epoll {
  const epfd = s.epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) throw new NetlinkError("epoll_create1", errno[0], "set up waiting for sockets");
  const layout = epollEventLayout(x86_64);
  const event = new Uint8Array(layout.size);
  const view = new DataView(event.buffer);
  return {
    epfd,
    layout,
    ctl(op, fd, mask, token) {
      view.setUint32(0, mask, LITTLE_ENDIAN);
      view.setBigUint64(layout.data, BigInt(token), LITTLE_ENDIAN);
      const r = s.epoll_ctl(epfd, op, fd, event);
      return r < 0 ? -errno[0] : r;
    },
  };
}

/** What a backend gives the poll set. */
export interface PollBackend {
  /** `epoll_ctl(epfd, op, fd, {events, data: token})`; returns 0 or `-errno`, read inline. */
  ctl(op: number, fd: number, events: number, token: number): number;
  /**
   * Someone waits and the native wait is not running: start it (it keeps the process alive while
   * {@linkcode PollSet.waiting} > 0). It calls `done` synchronously as it ends, so that a wait
   * asked for right after finds it not running and starts it again.
   */
  run(done: () => void): void;
  /** Nobody waits any more while the native wait runs: let it end (or stop keeping the process alive). */
  wake(): void;
}

interface Waiter {
  readonly fd: number;
  readonly resolve: (ready: boolean) => void;
}

/** The runtime-neutral state of the process's one epoll set. */
export class PollSet {
  readonly #backend: PollBackend;
  #running = false;
  readonly #waiters = new Map<number, Waiter>();
  readonly #tokenOf = new Map<number, number>();
  readonly #registered = new Set<number>();
  #nextToken = WAKE_TOKEN + 1;

  constructor(backend: PollBackend) {
    this.#backend = backend;
  }

  /** How many sockets wait right now. */
  get waiting(): number {
    return this.#waiters.size;
  }

  /**
   * Resolves `true` once `fd` is readable or has an error pending, `false` when {@linkcode forget}
   * cancels it. One wait per fd at a time.
   *
   * @throws {NetlinkError} epoll_ctl failed (ENOMEM, ENOSPC: the per-user epoll watch limit)
   */
  wait(fd: number): Promise<boolean> {
    if (this.#tokenOf.has(fd)) return Promise.reject(new Error(`fd ${fd} is already waited for`));
    const token = this.#nextToken;
    this.#nextToken = this.#nextToken >= 0x7fffffff ? WAKE_TOKEN + 1 : this.#nextToken + 1;
    let op = this.#registered.has(fd) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    let r = this.#backend.ctl(op, fd, EPOLLIN | EPOLLONESHOT, token);
    // A stale view of the set (an fd number closed and reused behind our back): try the other op.
    if (r === -Errno.EEXIST || r === -Errno.ENOENT) {
      op = op === EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
      r = this.#backend.ctl(op, fd, EPOLLIN | EPOLLONESHOT, token);
    }
    if (r < 0) return Promise.reject(new NetlinkError("epoll_ctl", -r, "wait for the socket to become readable"));
    this.#registered.add(fd);
    this.#tokenOf.set(fd, token);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    this.#waiters.set(token, { fd, resolve });
    if (!this.#running) {
      this.#running = true;
      this.#backend.run(() => (this.#running = false));
    }
    return promise;
  }

  /**
   * Removes `fd` from the set (call it before closing the fd) and resolves its pending wait `false`.
   * Idempotent.
   */
  forget(fd: number): void {
    if (this.#registered.delete(fd)) this.#backend.ctl(EPOLL_CTL_DEL, fd, 0, 0);
    const token = this.#tokenOf.get(fd);
    if (token === undefined) return;
    this.#tokenOf.delete(fd);
    const waiter = this.#waiters.get(token)!;
    this.#waiters.delete(token);
    waiter.resolve(false);
    if (this.#waiters.size === 0 && this.#running) this.#backend.wake();
  }

  /** The backend's report: these tokens fired. Unknown tokens (forgotten sockets) are ignored. */
  ready(tokens: Iterable<number>): void {
    for (const token of tokens) {
      const waiter = this.#waiters.get(token);
      if (!waiter) continue;
      this.#waiters.delete(token);
      this.#tokenOf.delete(waiter.fd);
      waiter.resolve(true);
    }
  }
}
