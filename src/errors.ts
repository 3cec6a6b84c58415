/**
 * `NetlinkError`: the one error type for failed system calls.
 *
 * @module
 */

/** errno values on Linux (x86_64 and aarch64 share the generic table). */
const ERRNO_NAMES: Record<number, [string, string]> = {
  1: ["EPERM", "operation not permitted"],
  2: ["ENOENT", "no such file or directory"],
  3: ["ESRCH", "no such process"],
  4: ["EINTR", "interrupted system call"],
  5: ["EIO", "input/output error"],
  9: ["EBADF", "bad file descriptor"],
  11: ["EAGAIN", "resource temporarily unavailable"],
  12: ["ENOMEM", "cannot allocate memory"],
  13: ["EACCES", "permission denied"],
  14: ["EFAULT", "bad address"],
  16: ["EBUSY", "device or resource busy"],
  19: ["ENODEV", "no such device"],
  22: ["EINVAL", "invalid argument"],
  23: ["ENFILE", "too many open files in system"],
  24: ["EMFILE", "too many open files"],
  61: ["ENODATA", "no data available"],
  88: ["ENOTSOCK", "socket operation on non-socket"],
  90: ["EMSGSIZE", "message too long"],
  92: ["ENOPROTOOPT", "protocol not available"],
  93: ["EPROTONOSUPPORT", "protocol not supported"],
  94: ["ESOCKTNOSUPPORT", "socket type not supported"],
  95: ["EOPNOTSUPP", "operation not supported"],
  97: ["EAFNOSUPPORT", "address family not supported by protocol"],
  98: ["EADDRINUSE", "address already in use"],
  105: ["ENOBUFS", "no buffer space available"],
  110: ["ETIMEDOUT", "connection timed out"],
  111: ["ECONNREFUSED", "connection refused"],
};

const HINTS: Record<string, string> = {
  EPERM: "needs CAP_NET_ADMIN (run as root); on Linux >= 6.6 only odd groups may be joined without it, " +
    "and sending to a port or a group always needs it",
  EPROTONOSUPPORT: "the kernel was built without CONFIG_CONNECTOR (or the cn module cannot be loaded)",
  ECONNREFUSED: "nobody listens at that port; when sending to the kernel this means the connector only exists " +
    "in the initial network namespace and this process is in another one",
  ENOBUFS: "the socket's receive buffer overflowed and messages were lost; raise rcvbuf",
  EADDRINUSE: "another netlink socket already holds that port id",
  EMSGSIZE: "the message is larger than the socket's send buffer allows",
  EAGAIN: "the receiving socket's buffer is full; nothing was sent, try again later",
};

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
  return ERRNO_NAMES[errno]?.[0] ?? `E${errno}`;
}

/**
 * A failed system call on a netlink socket.
 *
 * `code` is the errno name, `errno` the number, `op` the call (`"bind"`, `"sendto"`, ...). The message
 * carries a hint for the failures users hit: missing privileges, no connector, wrong namespace, overruns.
 *
 * @example Telling a permission problem apart
 * ```ts
 * import { NetlinkError } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const err = new NetlinkError("bind", 1);
 * assert.equal(err.code, "EPERM");
 * assert.match(err.message, /CAP_NET_ADMIN/);
 * ```
 */
export class NetlinkError extends Error {
  /** The operation that failed, e.g. `"bind"`. */
  readonly op: string;
  /** The errno value. */
  readonly errno: number;
  /** The errno name, e.g. `"EPERM"`. */
  readonly code: string;

  /**
   * Builds the error with its message and hint.
   *
   * @param op the operation that failed
   * @param errno the errno value (positive)
   * @param detail extra context appended to the message
   */
  constructor(op: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    const text = ERRNO_NAMES[errno]?.[1] ?? "unknown error";
    const hint = HINTS[code];
    super(
      `Cannot ${op} netlink socket: ${code} (${text})` + (detail ? ` ${detail}` : "") +
        (hint ? `; ${hint}` : ""),
    );
    this.name = "NetlinkError";
    this.op = op;
    this.errno = errno;
    this.code = code;
  }
}

/** Numeric errno constants used by the library. */
export const Errno = {
  EPERM: 1,
  ESRCH: 3,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  EINVAL: 22,
  EMSGSIZE: 90,
  EPROTONOSUPPORT: 93,
  EADDRINUSE: 98,
  ENOBUFS: 105,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
} as const;
