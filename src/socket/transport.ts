/**
 * What the connector needs from a socket. The real one is {@linkcode NetlinkSocket}; the fake
 * kernel in `@cnlink/connector/testing` provides an in-memory one.
 *
 * @module
 */
import type { NetlinkAddress } from "../codec/netlink.ts";
import { checkGroup, show } from "../args.ts";

/**
 * One received datagram. It may live in a reused buffer, and the object itself may be reused:
 * everything in it is valid until the next receive.
 */
export interface ReceivedDatagram {
  /** The bytes received (the first `buffer size` bytes when truncated): `buffer[offset, offset + size)`. */
  readonly data: Uint8Array;
  /** The buffer the datagram sits in (for readers that want no view per datagram). */
  readonly buffer: Uint8Array;
  /** Where in `buffer` it starts. */
  readonly offset: number;
  /** How many of its bytes are in `buffer`. */
  readonly size: number;
  /** Who sent it: port 0 is the kernel; `groups` is set for multicast. */
  readonly source: NetlinkAddress;
  /** The datagram was longer than the receive buffer; the rest was lost. */
  truncated: boolean;
  /** The datagram's real length. */
  length: number;
}

/** `receive()` returns a datagram, `"again"` when nothing is queued, or `"overrun"` after ENOBUFS. */
export type ReceiveResult = ReceivedDatagram | "again" | "overrun";

/** A connector socket as the connector layer sees it. */
export interface Transport {
  /** Our port id. */
  readonly port: number;
  /** Joins a multicast group (1..32). */
  join(group: number): void;
  /** Leaves a multicast group (1..32). */
  leave(group: number): void;
  /** The groups this socket is in, ascending. */
  memberships(): number[];
  /** Sends one datagram; throws `NetlinkError` on failure. */
  send(datagram: Uint8Array, to: NetlinkAddress): void;
  /** Takes one queued datagram without waiting. */
  receive(): ReceiveResult;
  /** Resolves `true` when something may be queued, `false` once closed. */
  wait(): Promise<boolean>;
  /** Sets the receive buffer size; returns the size the kernel reports (twice the request, capped). */
  setReceiveBuffer(bytes: number): number;
  /** The receive buffer size the kernel reports: bytes of queued datagrams (with overhead) it will hold. */
  readonly rcvbuf: number;
  /** Releases everything; idempotent. */
  close(): Promise<void>;
}

/**
 * Checks a multicast group number and returns its `nl_groups` bit.
 *
 * @throws {RangeError} outside 1..32 (the connector's groups), before any system call
 */
export function groupBit(group: number): number {
  return 2 ** (checkGroup(group) - 1);
}

/** The group a datagram was multicast to, from its source `nl_groups` (one bit), or 0 for unicast. */
export function groupOf(mask: number): number {
  return mask === 0 ? 0 : 31 - Math.clz32(mask) + 1;
}

/** The group numbers set in a `nl_groups` bitmask, ascending. */
export function groupsOf(mask: number): number[] {
  const groups: number[] = [];
  for (let g = 1; g <= 32; g++) if (Math.floor(mask / 2 ** (g - 1)) % 2 === 1) groups.push(g);
  return groups;
}

/** The methods a transport must have, checked by the `over()` seams. */
const TRANSPORT_METHODS = [
  "join",
  "leave",
  "memberships",
  "send",
  "receive",
  "wait",
  "setReceiveBuffer",
  "close",
] as const satisfies readonly (keyof Transport)[];

/**
 * Checks that `value` looks like a {@linkcode Transport} (a socket, or a fake kernel's socket).
 *
 * @throws {TypeError} not an object with a numeric `port` and the transport's methods
 */
export function checkTransport(value: unknown, name = "transport"): Transport {
  const t = value as Record<string, unknown> | null;
  const missing = typeof t === "object" && t !== null
    ? TRANSPORT_METHODS.filter((m) => typeof t[m] !== "function")
    : TRANSPORT_METHODS;
  if (missing.length || typeof t!.port !== "number") {
    throw new TypeError(
      `${name} must be a Transport (a NetlinkSocket, or a fake kernel's socket()), got ${show(value)}` +
        (missing.length && typeof t === "object" && t !== null ? ` (no ${missing.join(", ")})` : ""),
    );
  }
  return value as Transport;
}
