/**
 * The library's errors. There are three, besides `TypeError`/`RangeError` for bad arguments (thrown
 * before any system call) and `DecodeError` for bytes that do not decode:
 *
 * - {@linkcode NetlinkError}: a system call failed, or the kernel answered a request with an errno;
 * - {@linkcode TimeoutError}: no answer in time (a request, the process-events subscription);
 * - {@linkcode ClosedError}: the socket was closed (by `close()` or by an error) before or while a
 *   call needed it.
 *
 * @module
 */

/**
 * errno values on Linux (x86_64 and aarch64 share the generic table), with the text `strerror()`
 * gives: the one table of errno numbers and texts; {@linkcode Errno}, {@linkcode errnoName} and
 * {@linkcode errnoText} are read from it.
 */
const ERRNO_TABLE = {
  EPERM: [1, "operation not permitted"],
  ENOENT: [2, "no such file or directory"],
  ESRCH: [3, "no such process"],
  EINTR: [4, "interrupted system call"],
  EIO: [5, "input/output error"],
  E2BIG: [7, "argument list too long"],
  EBADF: [9, "bad file descriptor"],
  EAGAIN: [11, "resource temporarily unavailable"],
  ENOMEM: [12, "cannot allocate memory"],
  EACCES: [13, "permission denied"],
  EFAULT: [14, "bad address"],
  EBUSY: [16, "device or resource busy"],
  EEXIST: [17, "file exists"],
  ENODEV: [19, "no such device"],
  EINVAL: [22, "invalid argument"],
  ENFILE: [23, "too many open files in system"],
  EMFILE: [24, "too many open files"],
  ENOSPC: [28, "no space left on device"],
  ENODATA: [61, "no data available"],
  EPROTO: [71, "protocol error"],
  ENOTSOCK: [88, "socket operation on non-socket"],
  EMSGSIZE: [90, "message too long"],
  ENOPROTOOPT: [92, "protocol not available"],
  EPROTONOSUPPORT: [93, "protocol not supported"],
  ESOCKTNOSUPPORT: [94, "socket type not supported"],
  EOPNOTSUPP: [95, "operation not supported"],
  EAFNOSUPPORT: [97, "address family not supported by protocol"],
  EADDRINUSE: [98, "address already in use"],
  ENOBUFS: [105, "no buffer space available"],
  ETIMEDOUT: [110, "connection timed out"],
  ECONNREFUSED: [111, "connection refused"],
} as const satisfies Record<string, readonly [number, string]>;

/** The name of an errno in {@linkcode Errno}. */
export type ErrnoName = keyof typeof ERRNO_TABLE;

/**
 * errno numbers by name, e.g. `Errno.EAGAIN` (11), for every errno the library or its fakes
 * compare against or send. Internal.
 */
export const Errno: { readonly [K in ErrnoName]: (typeof ERRNO_TABLE)[K][0] } = Object.fromEntries(
  Object.entries(ERRNO_TABLE).map(([name, [n]]) => [name, n]),
) as { readonly [K in ErrnoName]: (typeof ERRNO_TABLE)[K][0] };

const BY_NUMBER: Record<number, readonly [string, string]> = Object.fromEntries(
  Object.entries(ERRNO_TABLE).map(([name, [n, text]]) => [n, [name, text]]),
);

/** What to do about the failures users hit, by errno name (call sites may give a better one). */
const HINTS: Record<string, string> = {
  EPERM: "needs CAP_NET_ADMIN (run as root)",
  EPROTONOSUPPORT: "the kernel was built without CONFIG_CONNECTOR (or the cn module cannot be loaded)",
  ECONNREFUSED: "nobody listens at that port",
  ENOBUFS: "the socket's receive buffer overflowed and messages were lost; raise rcvbuf",
  EADDRINUSE: "another netlink socket already holds that port id",
  EMSGSIZE: "the message is larger than the socket's send buffer allows",
  EAGAIN: "the receiving socket's buffer is full: nothing was sent; retry later, or bound the requests in flight " +
    "(the Connector option maxInFlight)",
  ENOSPC: "the per-user limit of epoll watches (/proc/sys/fs/epoll/max_user_watches) is reached",
  EMFILE: "the process has too many files open (ulimit -n)",
};

/**
 * The advice for a refused bind or join. It starts from what this kernel just did (it refused) and
 * never claims a version rule as a fact for it: mainline Linux >= 6.6 lets any user join odd groups,
 * but vendor builds may not (Linux 6.18.44-fc-v1252 refuses group 1 to an unprivileged user), and
 * older kernels never do. Even groups need CAP_NET_ADMIN on every kernel. Internal: the socket and
 * the fake kernel give the same advice.
 *
 * @param errno the errno of the failed bind or setsockopt
 * @param groups the groups asked for
 * @returns the hint, or undefined when there is nothing better than the default
 */
export function groupHint(errno: number, groups: readonly number[]): string | undefined {
  if (errno !== Errno.EPERM || groups.length === 0) return undefined;
  const even = groups.filter((g) => g % 2 === 0);
  if (even.length) {
    return `the kernel refused this process group ${even.join(", ")}: even groups need CAP_NET_ADMIN ` +
      "(run as root) on every kernel";
  }
  return `the kernel refused this process group ${groups.join(", ")}: CAP_NET_ADMIN (run as root) allows it. ` +
    "Mainline Linux >= 6.6 also lets unprivileged users join odd groups, but this kernel did not: it is " +
    "older, or built with other rules (as some vendor kernels are), or this process is outside the initial " +
    "user namespace";
}

/**
 * Returns the symbolic name of an errno value, e.g. `"EPERM"`, or `"E<n>"` when unknown.
 *
 * @example
 * ```ts
 * import { errnoName } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * assert.equal(errnoName(105), "ENOBUFS");
 * ```
 */
export function errnoName(errno: number): string {
  return BY_NUMBER[errno]?.[0] ?? `E${errno}`;
}

/**
 * The text of an errno value, as `strerror()` words it in lower case, e.g. `"no such device"`, or
 * `"unknown error"`. Internal: errors build their messages with it.
 *
 * @example
 * ```ts
 * import { errnoText } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(errnoText(7), "argument list too long");
 * ```
 */
export function errnoText(errno: number): string {
  return BY_NUMBER[errno]?.[1] ?? "unknown error";
}

/**
 * A system call on a netlink socket failed, or the kernel answered a request with an errno.
 *
 * `op` is the call, a stable name to compare against: `socket`, `bind`, `getsockname`, `setsockopt`,
 * `getsockopt`, `sendto`, `recvfrom`, `recvmmsg`, `epoll_create1`, `epoll_ctl`, `eventfd`, or for an
 * errno the kernel sent back in a reply, the request (`PROC_CN_MCAST_LISTEN`). `code` is the errno
 * name, `errno` the number. The message says what was being done and, for the failures users hit
 * (missing privileges, no connector, wrong namespace, overruns), what to do.
 *
 * @example Telling a permission problem apart
 * ```ts
 * import { NetlinkError } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const err = new NetlinkError("setsockopt", 1, "join group 2");
 * assert.equal(err.code, "EPERM");
 * assert.equal(err.op, "setsockopt");
 * assert.match(err.message, /^Cannot join group 2: setsockopt failed with EPERM .*CAP_NET_ADMIN/);
 * ```
 */
export class NetlinkError extends Error {
  /** The system call (or kernel request) that failed, e.g. `"sendto"`. */
  readonly op: string;
  /** The errno value. */
  readonly errno: number;
  /** The errno name, e.g. `"EPERM"`. */
  readonly code: string;

  /**
   * Builds the error with its message and hint.
   *
   * @param op the system call (or kernel request) that failed
   * @param errno the errno value (positive)
   * @param what what was being done, as a phrase: `"join group 4"`, `"send to port 1234"`
   * @param hint what to do about it; default: the usual advice for this errno, if any
   */
  constructor(op: string, errno: number, what: string, hint?: string) {
    const code = errnoName(errno);
    const text = errnoText(errno);
    const advice = hint ?? HINTS[code];
    super(`Cannot ${what}: ${op} failed with ${code} (${text})` + (advice ? `; ${advice}` : ""));
    this.name = "NetlinkError";
    this.op = op;
    this.errno = errno;
    this.code = code;
  }
}

/**
 * Nothing answered in time: a request's reply, or the kernel's ack of a process-events subscription.
 * `name` is `"TimeoutError"` (as for `AbortSignal.timeout()`) and `code` is `"ETIMEDOUT"`.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const err = new TimeoutError("No reply to cn_msg 14:1 seq 3", 500);
 * assert.equal(err.code, "ETIMEDOUT");
 * assert.match(err.message, /within 500 ms/);
 * ```
 */
export class TimeoutError extends Error {
  /** Always `"ETIMEDOUT"`. */
  readonly code = "ETIMEDOUT";
  /** How long was waited, in milliseconds. */
  readonly timeoutMs: number;

  /**
   * Builds the error: "`what` within `timeoutMs` ms: `why`".
   *
   * @param what what did not happen, as a sentence start: `"No reply to cn_msg 14:1 seq 3"`
   * @param timeoutMs how long was waited
   * @param why an explanation appended after the wait
   */
  constructor(what: string, timeoutMs: number, why?: string) {
    super(`${what} within ${timeoutMs} ms` + (why ? `: ${why}` : ""));
    this.name = "TimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The connector or monitor was closed, by `close()` or because an error closed it (then `cause`
 * holds that error), before or while a call needed it.
 *
 * @example
 * ```ts
 * import { ClosedError } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const err = new ClosedError("send");
 * assert.equal(err.code, "ERR_CLOSED");
 * assert.equal(err.message, "Cannot send: the socket is closed");
 * ```
 */
export class ClosedError extends Error {
  /** Always `"ERR_CLOSED"`. */
  readonly code = "ERR_CLOSED";

  /**
   * Builds the error: "Cannot `what`: the socket is closed".
   *
   * @param what what could not be done, as a phrase: `"send"`, `"wait for a reply"`
   * @param cause the error that closed the socket, when one did
   */
  constructor(what: string, cause?: unknown) {
    super(`Cannot ${what}: the socket is closed` + (cause instanceof Error ? ` (${cause.message})` : ""), { cause });
    this.name = "ClosedError";
  }
}
