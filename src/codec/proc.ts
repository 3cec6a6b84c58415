/**
 * Layouts of the process-events connector (`include/uapi/linux/cn_proc.h`): where `struct
 * proc_event`'s fields sit, and `struct proc_input`, the subscription request.
 *
 * @module
 */
import { DecodeError } from "./decode_error.ts";
import { LITTLE_ENDIAN } from "./netlink.ts";

/*
 * struct proc_event {               // 40 bytes; at byte 36 of a datagram, so never 8-aligned there
 *   __u32 what;                     // 0..4
 *   __u32 cpu;                      // 4..8
 *   __u64 timestamp_ns;             // 8..16  CLOCK_MONOTONIC
 *   union { ... } event_data;       // 16..40 (each member's fields: src/proc/event.ts)
 * };
 */
/** Byte offsets of `struct proc_event`'s fields, and its size. */
export const PROC_EVENT = { what: 0, cpu: 4, timestamp: 8, data: 16, size: 40 } as const;

/*
 * struct proc_input {               // Linux >= 6.6; before, the request is a bare __u32 op
 *   enum proc_cn_mcast_op mcast_op; // 0..4  PROC_CN_MCAST_LISTEN 1, PROC_CN_MCAST_IGNORE 2
 *   enum proc_cn_event event_type;  // 4..8  mask of PROC_EVENT_* (NONZERO_EXIT is a filter bit)
 * };
 */
/** Byte offsets of `struct proc_input`'s fields, and its size. */
export const PROC_INPUT = { op: 0, events: 4, size: 8 } as const;

/** A subscription request: the op and, in the 8-byte form (Linux >= 6.6), an event mask. */
export interface ProcInput {
  /** `PROC_CN_MCAST_LISTEN` (1) or `PROC_CN_MCAST_IGNORE` (2). */
  op: number;
  /** The event mask of the 8-byte form; undefined for the 4-byte form every kernel understands. */
  events?: number;
}

/**
 * Encodes a subscription request: 4 bytes (the op alone) without `events`, 8 with them.
 *
 * @throws {RangeError} op or events outside 0..2^32-1
 *
 * @example {LISTEN, exec | exit}
 * ```ts
 * import { encodeProcInput } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...encodeProcInput({ op: 1 })], [1, 0, 0, 0]);
 * assert.equal(encodeProcInput({ op: 1, events: 0x80000002 }).byteLength, 8);
 * ```
 */
export function encodeProcInput(input: ProcInput): Uint8Array {
  const u32 = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${name} must be a u32, got ${v}`);
    return v;
  };
  const bytes = new Uint8Array(input.events === undefined ? 4 : PROC_INPUT.size);
  const view = new DataView(bytes.buffer);
  view.setUint32(PROC_INPUT.op, u32("op", input.op), LITTLE_ENDIAN);
  if (input.events !== undefined) view.setUint32(PROC_INPUT.events, u32("events", input.events), LITTLE_ENDIAN);
  return bytes;
}

/**
 * Decodes a subscription request as the kernel reads it: 4 bytes (op) or 8 (op and mask).
 *
 * @throws {DecodeError} any other length (the kernel ignores those)
 *
 * @example
 * ```ts
 * import { decodeProcInput, encodeProcInput } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(decodeProcInput(encodeProcInput({ op: 2, events: 0 })), { op: 2, events: 0 });
 * ```
 */
export function decodeProcInput(data: Uint8Array): ProcInput {
  if (data.byteLength !== 4 && data.byteLength !== PROC_INPUT.size) {
    throw new DecodeError("proc_input", 0, `is 4 or 8 bytes, got ${data.byteLength}`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const op = view.getUint32(PROC_INPUT.op, LITTLE_ENDIAN);
  return data.byteLength === 4 ? { op } : { op, events: view.getUint32(PROC_INPUT.events, LITTLE_ENDIAN) };
}
