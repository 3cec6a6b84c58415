/**
 * `struct cn_msg` (`include/uapi/linux/connector.h`) and whole connector datagrams.
 *
 * @module
 */
import { CN_MSG_HDRLEN, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLMSG_NOOP, NLMSG_OVERRUN } from "./constants.ts";
import { DecodeError } from "./decode_error.ts";
import {
  checkU16,
  checkU32,
  decodeNetlinkHeader,
  encodeNetlinkHeader,
  LITTLE_ENDIAN,
  type NetlinkHeader,
  nlmsgAlign,
} from "./netlink.ts";

/*
 * struct cb_id { __u32 idx; __u32 val; };
 * struct cn_msg {
 *   struct cb_id id;   // 0..8   idx 0..4, val 4..8
 *   __u32 seq;         // 8..12
 *   __u32 ack;         // 12..16
 *   __u16 len;         // 16..18 bytes of data that follow
 *   __u16 flags;       // 18..20
 *   __u8  data[];      // 20..20+len
 * };
 */
/** Byte offsets of `struct cn_msg`'s fields, for readers that peek without decoding (internal). */
export const CN_MSG = { idx: 0, val: 4, seq: 8, ack: 12, len: 16, flags: 18, data: 20 } as const;
const CN_IDX = CN_MSG.idx;
const CN_VAL = CN_MSG.val;
const CN_SEQ = CN_MSG.seq;
const CN_ACK = CN_MSG.ack;
const CN_LEN = CN_MSG.len;
const CN_FLAGS = CN_MSG.flags;

/** The address of a connector agent (`struct cb_id`). For kernel agents `idx` is also the multicast group. */
export interface CallbackId {
  /** `cb_id.idx`. */
  idx: number;
  /** `cb_id.val`. */
  val: number;
}

/** A decoded `cn_msg`. */
export interface CnMessage {
  /** Which agent the message is for or from. */
  id: CallbackId;
  /** `seq`. */
  seq: number;
  /** `ack`. */
  ack: number;
  /** `flags` (the core ignores them; w1 uses 1 for bundled replies). */
  flags: number;
  /** The payload: a view into the decoded buffer, not a copy. */
  data: Uint8Array;
}

/** What a caller gives to build a `cn_msg`. Omitted numbers are 0, omitted data is empty. */
export interface MessageInit {
  /** Destination agent. */
  id: CallbackId;
  /** `seq`, default 0. */
  seq?: number;
  /** `ack`, default 0. */
  ack?: number;
  /** `flags`, default 0. */
  flags?: number;
  /**
   * Payload, at most 65535 bytes; default empty. A `Uint8Array`, or any other typed array, `DataView`
   * or `ArrayBuffer`, taken as the bytes it covers (a `Uint16Array([0x0201])` is the bytes 1, 2 on a
   * little-endian host).
   */
  data?: ArrayBufferView | ArrayBufferLike;
}

/**
 * The bytes `value` covers: a Uint8Array as is, any other ArrayBufferView or an ArrayBuffer as a
 * Uint8Array over the same memory (no copy).
 *
 * @throws {TypeError} anything else, naming `field`
 */
export function toBytes(value: unknown, field: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return new Uint8Array(value);
  const what = value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
  throw new TypeError(`${field} must be a Uint8Array, another typed array, a DataView or an ArrayBuffer, got ${what}`);
}

/**
 * Checks the shape of a message before anything is encoded or sent.
 *
 * @throws {TypeError} not an object, or no `id` with numeric `idx` and `val`, or `data` of another type
 * @throws {RangeError} a number out of its field's range, or data over 65535 bytes
 */
function checkMessage(message: MessageInit): Uint8Array {
  if (typeof message !== "object" || message === null) {
    throw new TypeError(`a message must be an object like { id: { idx, val }, data }, got ${message}`);
  }
  const id = message.id;
  if (typeof id !== "object" || id === null || typeof id.idx !== "number" || typeof id.val !== "number") {
    throw new TypeError("message.id must be { idx: number, val: number } (the agent's cb_id)");
  }
  const data = message.data === undefined ? new Uint8Array(0) : toBytes(message.data, "message.data");
  if (data.byteLength > 0xffff) {
    throw new RangeError(`message.data is ${data.byteLength} bytes; a cn_msg carries at most 65535`);
  }
  return data;
}

/** Optional `nlmsghdr` fields for {@linkcode encodeMessage}; the connector ignores all of them. */
export interface EncodeOptions {
  /** `nlmsg_type`, default `NLMSG_DONE`. */
  type?: number;
  /** `nlmsg_flags`, default 0. */
  flags?: number;
  /** `nlmsg_seq`, default the cn_msg seq. */
  seq?: number;
  /** `nlmsg_pid`, default 0. */
  pid?: number;
}

/**
 * Encodes one connector datagram: `nlmsghdr` + `cn_msg` + data.
 *
 * @param message the cn_msg to send
 * @param options nlmsghdr fields; the defaults are what the kernel and `ucon.c` use
 * @returns a new buffer of 36 + data length bytes
 * @throws {TypeError} the message has no `{ idx, val }` id, or data that is not bytes
 * @throws {RangeError} a field is out of range or the data is longer than 65535 bytes
 *
 * @example A message for the echo agent
 * ```ts
 * import { encodeMessage } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeMessage({ id: { idx: 14, val: 0x456 }, seq: 1, data: new Uint8Array([1, 2]) });
 * assert.equal(bytes.byteLength, 16 + 20 + 2);
 * ```
 */
export function encodeMessage(message: MessageInit, options?: EncodeOptions): Uint8Array {
  const data = checkMessage(message);
  const seq = checkU32("message.seq", message.seq ?? 0);
  const length = NLMSG_HDRLEN + CN_MSG_HDRLEN + data.byteLength;
  const bytes = new Uint8Array(length);
  encodeNetlinkHeader(bytes, {
    length,
    type: options?.type ?? NLMSG_DONE,
    flags: options?.flags ?? 0,
    seq: options?.seq ?? seq,
    pid: options?.pid ?? 0,
  });
  const view = new DataView(bytes.buffer);
  const at = NLMSG_HDRLEN;
  view.setUint32(at + CN_IDX, checkU32("message.id.idx", message.id.idx), LITTLE_ENDIAN);
  view.setUint32(at + CN_VAL, checkU32("message.id.val", message.id.val), LITTLE_ENDIAN);
  view.setUint32(at + CN_SEQ, seq, LITTLE_ENDIAN);
  view.setUint32(at + CN_ACK, checkU32("message.ack", message.ack ?? 0), LITTLE_ENDIAN);
  view.setUint16(at + CN_LEN, data.byteLength, LITTLE_ENDIAN);
  view.setUint16(at + CN_FLAGS, checkU16("message.flags", message.flags ?? 0), LITTLE_ENDIAN);
  bytes.set(data, at + CN_MSG_HDRLEN);
  return bytes;
}

/**
 * Decodes the `cn_msg` at `offset`, whose data must end by `end`.
 *
 * @param bytes the buffer
 * @param offset where the cn_msg starts
 * @param end where the enclosing netlink payload ends (default: end of `bytes`)
 * @returns the message; `data` is a view into `bytes`
 * @throws {DecodeError} fewer than 20 bytes remain, or `len` runs past `end`
 *
 * @example Decoding the cn_msg of an encoded datagram
 * ```ts
 * import { decodeCnMsg, encodeMessage } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const msg = decodeCnMsg(encodeMessage({ id: { idx: 1, val: 1 }, seq: 9 }), 16);
 * assert.equal(msg.seq, 9);
 * ```
 */
export function decodeCnMsg(bytes: Uint8Array, offset = 0, end: number = bytes.byteLength): CnMessage {
  const limit = Math.min(end, bytes.byteLength);
  const remaining = limit - offset;
  if (remaining < CN_MSG_HDRLEN) {
    throw new DecodeError("cn_msg", offset, `needs ${CN_MSG_HDRLEN} bytes, ${remaining} remain`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = view.getUint16(offset + CN_LEN, LITTLE_ENDIAN);
  if (CN_MSG_HDRLEN + len > remaining) {
    throw new DecodeError("cn_msg", offset, `len ${len} runs past the end (${remaining - CN_MSG_HDRLEN} bytes remain)`);
  }
  const start = offset + CN_MSG_HDRLEN;
  return {
    id: { idx: view.getUint32(offset + CN_IDX, LITTLE_ENDIAN), val: view.getUint32(offset + CN_VAL, LITTLE_ENDIAN) },
    seq: view.getUint32(offset + CN_SEQ, LITTLE_ENDIAN),
    ack: view.getUint32(offset + CN_ACK, LITTLE_ENDIAN),
    flags: view.getUint16(offset + CN_FLAGS, LITTLE_ENDIAN),
    data: bytes.subarray(start, start + len),
  };
}

/** One netlink message of a datagram: either connector messages or a netlink control message. */
export type DatagramPart =
  | {
    /** A message carrying one or more `cn_msg` back to back. */
    kind: "connector";
    /** Its netlink header. */
    header: NetlinkHeader;
    /** Every cn_msg in it, in order. */
    messages: CnMessage[];
  }
  | {
    /** `NLMSG_NOOP`, `NLMSG_ERROR` or `NLMSG_OVERRUN`: never sent by the kernel on this protocol. */
    kind: "control";
    /** Its netlink header. */
    header: NetlinkHeader;
    /** The payload after the header (a view). */
    payload: Uint8Array;
  };

function isControlType(type: number): boolean {
  return type === NLMSG_NOOP || type === NLMSG_ERROR || type === NLMSG_OVERRUN;
}

/**
 * Decodes a whole datagram: every netlink message in it and every `cn_msg` in each.
 *
 * Strict: the datagram must be made of whole netlink messages (each starting at a 4-byte aligned
 * offset), and each connector message's payload must be whole cn_msgs with no bytes left over.
 * The kernel may put several cn_msgs back to back in one netlink message (w1 bundles).
 *
 * @param bytes one datagram as received
 * @returns its parts in order; `data` fields are views into `bytes`
 * @throws {DecodeError} anything short, lying or left over
 *
 * @example Decoding what encodeMessage made
 * ```ts
 * import { decodeDatagram, encodeMessage } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const [part] = decodeDatagram(encodeMessage({ id: { idx: 14, val: 0x456 }, ack: 3 }));
 * assert.equal(part.kind, "connector");
 * if (part.kind === "connector") assert.equal(part.messages[0].ack, 3);
 * ```
 */
export function decodeDatagram(bytes: Uint8Array): DatagramPart[] {
  if (bytes.byteLength === 0) throw new DecodeError("datagram", 0, "it is empty");
  const parts: DatagramPart[] = [];
  let offset = 0;
  while (offset < bytes.byteLength) {
    const header = decodeNetlinkHeader(bytes, offset);
    const end = offset + header.length;
    if (isControlType(header.type)) {
      parts.push({ kind: "control", header, payload: bytes.subarray(offset + NLMSG_HDRLEN, end) });
    } else {
      const messages: CnMessage[] = [];
      let at = offset + NLMSG_HDRLEN;
      do {
        const message = decodeCnMsg(bytes, at, end);
        messages.push(message);
        at += CN_MSG_HDRLEN + message.data.byteLength;
      } while (at < end);
      parts.push({ kind: "connector", header, messages });
    }
    offset += nlmsgAlign(header.length);
  }
  return parts;
}
