/**
 * `struct nlmsghdr` and `struct sockaddr_nl` (`include/uapi/linux/netlink.h`), in host byte order.
 *
 * @module
 */
import { NLMSG_HDRLEN } from "./constants.ts";
import { DecodeError } from "./decode_error.ts";

/** True on little-endian hosts; every DataView access passes it. Detected once. */
export const LITTLE_ENDIAN: boolean = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * `NLMSG_ALIGN(len) = ((len) + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1)`, NLMSG_ALIGNTO = 4.
 *
 * @example
 * ```ts
 * import { nlmsgAlign } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * assert.equal(nlmsgAlign(77), 80);
 * ```
 */
export function nlmsgAlign(len: number): number {
  return (len + 3) & ~3;
}

/*
 * struct nlmsghdr {
 *   __u32 nlmsg_len;    // 0..4   header + payload, not padded
 *   __u16 nlmsg_type;   // 4..6
 *   __u16 nlmsg_flags;  // 6..8
 *   __u32 nlmsg_seq;    // 8..12
 *   __u32 nlmsg_pid;    // 12..16 sender-written, not authenticated
 * };
 */
/** Byte offsets of `struct nlmsghdr`'s fields, for readers that peek without decoding (internal). */
export const NLMSGHDR = { len: 0, type: 4, flags: 6, seq: 8, pid: 12 } as const;
const NLMSG_LEN = NLMSGHDR.len;
const NLMSG_TYPE = NLMSGHDR.type;
const NLMSG_FLAGS = NLMSGHDR.flags;
const NLMSG_SEQ = NLMSGHDR.seq;
const NLMSG_PID = NLMSGHDR.pid;

/** A decoded `struct nlmsghdr`. */
export interface NetlinkHeader {
  /** Header plus payload, in bytes (`nlmsg_len`). */
  length: number;
  /** `nlmsg_type`; the connector always uses `NLMSG_DONE` (3). */
  type: number;
  /** `nlmsg_flags`. */
  flags: number;
  /** `nlmsg_seq`. */
  seq: number;
  /** `nlmsg_pid`: written by the sender, so not proof of who sent it. */
  pid: number;
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decodes the `nlmsghdr` at `offset` and checks that its length fits in `bytes`.
 *
 * @param bytes the datagram
 * @param offset where the header starts
 * @returns the header
 * @throws {DecodeError} fewer than 16 bytes remain, or `nlmsg_len` is < 16 or runs past the end
 *
 * @example Reading a header
 * ```ts
 * import { decodeNetlinkHeader } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array(16);
 * new DataView(bytes.buffer).setUint32(0, 16, true);
 * assert.equal(decodeNetlinkHeader(bytes).length, 16);
 * ```
 */
export function decodeNetlinkHeader(bytes: Uint8Array, offset = 0): NetlinkHeader {
  const remaining = bytes.byteLength - offset;
  if (remaining < NLMSG_HDRLEN) {
    throw new DecodeError("nlmsghdr", offset, `needs ${NLMSG_HDRLEN} bytes, ${remaining} remain`);
  }
  const view = viewOf(bytes);
  const length = view.getUint32(offset + NLMSG_LEN, LITTLE_ENDIAN);
  if (length < NLMSG_HDRLEN) {
    throw new DecodeError("nlmsghdr", offset, `nlmsg_len ${length} is shorter than the header`);
  }
  if (length > remaining) {
    throw new DecodeError("nlmsghdr", offset, `nlmsg_len ${length} runs past the end (${remaining} bytes remain)`);
  }
  return {
    length,
    type: view.getUint16(offset + NLMSG_TYPE, LITTLE_ENDIAN),
    flags: view.getUint16(offset + NLMSG_FLAGS, LITTLE_ENDIAN),
    seq: view.getUint32(offset + NLMSG_SEQ, LITTLE_ENDIAN),
    pid: view.getUint32(offset + NLMSG_PID, LITTLE_ENDIAN),
  };
}

/**
 * Writes an `nlmsghdr` into `bytes` at `offset`.
 *
 * @param bytes destination, at least `offset + 16` bytes
 * @param header the fields to write
 * @param offset where to write
 * @throws {RangeError} the destination is too short or a field is out of range
 *
 * @example Writing a header
 * ```ts
 * import { encodeNetlinkHeader, decodeNetlinkHeader } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array(16);
 * encodeNetlinkHeader(bytes, { length: 16, type: 3, flags: 0, seq: 7, pid: 0 });
 * assert.equal(decodeNetlinkHeader(bytes).seq, 7);
 * ```
 */
export function encodeNetlinkHeader(bytes: Uint8Array, header: NetlinkHeader, offset = 0): void {
  if (bytes.byteLength - offset < NLMSG_HDRLEN) throw new RangeError("nlmsghdr does not fit in the destination");
  const view = viewOf(bytes);
  view.setUint32(offset + NLMSG_LEN, checkU32("nlmsg_len", header.length), LITTLE_ENDIAN);
  view.setUint16(offset + NLMSG_TYPE, checkU16("nlmsg_type", header.type), LITTLE_ENDIAN);
  view.setUint16(offset + NLMSG_FLAGS, checkU16("nlmsg_flags", header.flags), LITTLE_ENDIAN);
  view.setUint32(offset + NLMSG_SEQ, checkU32("nlmsg_seq", header.seq), LITTLE_ENDIAN);
  view.setUint32(offset + NLMSG_PID, checkU32("nlmsg_pid", header.pid), LITTLE_ENDIAN);
}

/** `AF_NETLINK`: the netlink address family. */
export const AF_NETLINK = 16;
/*
 * struct sockaddr_nl {
 *   __kernel_sa_family_t nl_family;  // 0..2  AF_NETLINK
 *   unsigned short       nl_pad;     // 2..4  zero
 *   __u32                nl_pid;     // 4..8  port id, 0 = kernel
 *   __u32                nl_groups;  // 8..12 bit (g-1) = group g
 * };
 */
/**
 * Byte offsets of `struct sockaddr_nl`'s fields, and its size (internal: the socket and the
 * recvmmsg() batch read senders' addresses in place through it).
 */
export const SOCKADDR_NL = { family: 0, pad: 2, pid: 4, groups: 8, size: 12 } as const;

/** Size of `struct sockaddr_nl` (12 bytes, not 16). */
export const SOCKADDR_NL_LEN: number = SOCKADDR_NL.size;

/** A netlink address: a port id and a multicast group bitmask. */
export interface NetlinkAddress {
  /** `nl_pid`: the port id; 0 is the kernel. */
  port: number;
  /** `nl_groups`: bit `g - 1` set for multicast group `g`; 0 for unicast. */
  groups: number;
}

/**
 * Encodes a 12-byte `sockaddr_nl`.
 *
 * @param address port and group bitmask
 * @param out optional 12-byte destination to reuse
 * @returns the encoded address (`out` when given)
 *
 * @example Address of the kernel
 * ```ts
 * import { encodeSockaddrNl } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * assert.equal(encodeSockaddrNl({ port: 0, groups: 0 }).byteLength, 12);
 * ```
 */
export function encodeSockaddrNl(address: NetlinkAddress, out?: Uint8Array): Uint8Array {
  const bytes = out ?? new Uint8Array(SOCKADDR_NL_LEN);
  if (bytes.byteLength < SOCKADDR_NL_LEN) throw new RangeError(`sockaddr_nl needs ${SOCKADDR_NL_LEN} bytes`);
  const view = viewOf(bytes);
  view.setUint16(SOCKADDR_NL.family, AF_NETLINK, LITTLE_ENDIAN);
  view.setUint16(SOCKADDR_NL.pad, 0, LITTLE_ENDIAN);
  view.setUint32(SOCKADDR_NL.pid, checkU32("nl_pid", address.port), LITTLE_ENDIAN);
  view.setUint32(SOCKADDR_NL.groups, checkU32("nl_groups", address.groups), LITTLE_ENDIAN);
  return bytes;
}

/**
 * Decodes a `sockaddr_nl`.
 *
 * @param bytes at least 12 bytes
 * @returns port and group bitmask
 * @throws {DecodeError} fewer than 12 bytes, or a family other than AF_NETLINK
 *
 * @example Round trip
 * ```ts
 * import { decodeSockaddrNl, encodeSockaddrNl } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const addr = decodeSockaddrNl(encodeSockaddrNl({ port: 42, groups: 1 }));
 * assert.deepEqual(addr, { port: 42, groups: 1 });
 * ```
 */
export function decodeSockaddrNl(bytes: Uint8Array): NetlinkAddress {
  if (bytes.byteLength < SOCKADDR_NL_LEN) {
    throw new DecodeError("sockaddr_nl", 0, `needs ${SOCKADDR_NL_LEN} bytes, got ${bytes.byteLength}`);
  }
  const view = viewOf(bytes);
  const family = view.getUint16(SOCKADDR_NL.family, LITTLE_ENDIAN);
  if (family !== AF_NETLINK) throw new DecodeError("sockaddr_nl", 0, `family ${family} is not AF_NETLINK`);
  return {
    port: view.getUint32(SOCKADDR_NL.pid, LITTLE_ENDIAN),
    groups: view.getUint32(SOCKADDR_NL.groups, LITTLE_ENDIAN),
  };
}

/** Throws a RangeError unless `value` is an integer in 0..2^32-1. */
export function checkU32(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${name} must be an integer in 0..4294967295, got ${value}`);
  }
  return value;
}

/** Throws a RangeError unless `value` is an integer in 0..65535. */
export function checkU16(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new RangeError(`${name} must be an integer in 0..65535, got ${value}`);
  }
  return value;
}
