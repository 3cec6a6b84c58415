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
 *   union { ... } event_data;       // 16..40 (each member's fields: PROC_EVENT_DATA below)
 * };
 */
/** Byte offsets of `struct proc_event`'s fields, and its size. */
export const PROC_EVENT = { what: 0, cpu: 4, timestamp: 8, data: 16, size: 40 } as const;

/**
 * How one member of `event_data` is stored: a `__kernel_pid_t` or `int` (`i32`), a `__u32` or
 * `__kernel_[ug]id_t` (`u32`), or `char comm[16]` (`comm`: NUL-padded bytes).
 */
export type ProcEventFieldKind = "i32" | "u32" | "comm";

/** One member of an `event_data` union member: where it sits (from the union's start) and how it is stored. */
export interface ProcEventField {
  /** Byte offset from the start of `event_data` (byte 16 of the proc_event). */
  readonly offset: number;
  /** How it is stored. */
  readonly kind: ProcEventFieldKind;
  /** Bytes it takes: 4, or 16 for `comm`. */
  readonly size: number;
  /** Added to the kernel after the member itself: an event without it is accepted and it reads as 0. */
  readonly optional?: true;
}

const i32 = (offset: number) => ({ offset, kind: "i32", size: 4 }) as const;
const u32 = (offset: number) => ({ offset, kind: "u32", size: 4 }) as const;
const later = <F extends ProcEventField>(field: F) => ({ ...field, optional: true }) as const;

/*
 * union {                                                           // event_data, at byte 16
 *   struct { __u32 err; } ack;                                      // what = NONE
 *   struct fork_proc_event { __kernel_pid_t parent_pid, parent_tgid, child_pid, child_tgid; } fork;
 *   struct exec_proc_event { __kernel_pid_t process_pid, process_tgid; } exec;
 *   struct id_proc_event { __kernel_pid_t process_pid, process_tgid;
 *                          union { __u32 ruid; __u32 rgid; } r; union { __u32 euid; __u32 egid; } e; } id;
 *   struct sid_proc_event { __kernel_pid_t process_pid, process_tgid; } sid;
 *   struct ptrace_proc_event { __kernel_pid_t process_pid, process_tgid, tracer_pid, tracer_tgid; } ptrace;
 *   struct comm_proc_event { __kernel_pid_t process_pid, process_tgid; char comm[16]; } comm;
 *   struct coredump_proc_event { __kernel_pid_t process_pid, process_tgid, parent_pid, parent_tgid; } coredump;
 *   struct exit_proc_event { __kernel_pid_t process_pid, process_tgid; __u32 exit_code, exit_signal;
 *                            __kernel_pid_t parent_pid, parent_tgid; } exit;
 * } event_data;
 * coredump's and exit's parent_pid/parent_tgid came later (Linux 4.x); events without them are 32
 * bytes. exit_signal is a __u32 that holds -1 for threads, so it is read as signed.
 */
/**
 * The members of `proc_event.event_data` for each event type, named as the decoded events name them
 * (`src/proc/event.ts`): the one place their layout is written. It drives the encoder and the
 * minimum sizes ({@linkcode PROC_EVENT_MIN_DATA}); the decoder reads its offsets through named
 * constants taken from it.
 */
export const PROC_EVENT_DATA = {
  ack: { err: u32(0) },
  fork: { parentPid: i32(0), parentTgid: i32(4), childPid: i32(8), childTgid: i32(12) },
  exec: { pid: i32(0), tgid: i32(4) },
  uid: { pid: i32(0), tgid: i32(4), ruid: u32(8), euid: u32(12) },
  gid: { pid: i32(0), tgid: i32(4), rgid: u32(8), egid: u32(12) },
  sid: { pid: i32(0), tgid: i32(4) },
  ptrace: { pid: i32(0), tgid: i32(4), tracerPid: i32(8), tracerTgid: i32(12) },
  comm: { pid: i32(0), tgid: i32(4), comm: { offset: 8, kind: "comm", size: 16 } },
  coredump: { pid: i32(0), tgid: i32(4), parentPid: later(i32(8)), parentTgid: later(i32(12)) },
  exit: {
    pid: i32(0),
    tgid: i32(4),
    exitCode: u32(8),
    exitSignal: i32(12),
    parentPid: later(i32(16)),
    parentTgid: later(i32(20)),
  },
} as const satisfies Record<string, Record<string, ProcEventField>>;

/** The event types of {@linkcode PROC_EVENT_DATA} (the ack included). */
export type ProcEventDataType = keyof typeof PROC_EVENT_DATA;

/**
 * The fewest `event_data` bytes each type is decoded from: up to the end of its last member that is
 * not optional, where a `comm` needs one byte of its name. Derived from {@linkcode PROC_EVENT_DATA}.
 */
export const PROC_EVENT_MIN_DATA: Readonly<Record<ProcEventDataType, number>> = Object.fromEntries(
  Object.entries(PROC_EVENT_DATA).map(([type, fields]) => [
    type,
    Math.max(
      ...Object.values(fields as Record<string, ProcEventField>)
        .filter((f) => !f.optional)
        .map((f) => f.offset + (f.kind === "comm" ? 1 : f.size)),
    ),
  ]),
) as Record<ProcEventDataType, number>;

/*
 * One process event as the kernel multicasts it: a datagram of exactly 76 bytes,
 *   struct nlmsghdr (16: len 0, type 4, ..) | struct cn_msg (20: idx 16, val 20, seq 24, ack 28,
 *   len 32, ..) | struct proc_event (40, from 36)
 * The receive loop reads it in place through these helpers. Their offsets are the sums of the tables
 * above (NLMSGHDR, CN_MSG, PROC_EVENT; tests/codec.test.ts checks them against the tables and encoded
 * bytes) written as literals: V8 reads a property of an imported table on every use, a measurable
 * share of an event's CPU (bench/README.md, "Figures the code cites").
 */
/** Size of a datagram that holds one process event (nlmsghdr + cn_msg header + proc_event). */
export const PROC_EVENT_DATAGRAM = 76;
/** Where the `proc_event` starts in such a datagram. */
export const PROC_EVENT_DATAGRAM_EVENT = 36;

/**
 * Whether the 76 bytes at `at` are one process event: nlmsg_len 76, type NLMSG_DONE, cb_id
 * {CN_IDX_PROC, CN_VAL_PROC}, cn_msg len 40. The caller has checked that 76 bytes are there.
 */
export function isProcEventDatagram(view: DataView, at: number): boolean {
  return view.getUint32(at, LITTLE_ENDIAN) === 76 && view.getUint16(at + 4, LITTLE_ENDIAN) === 3 &&
    view.getUint32(at + 16, LITTLE_ENDIAN) === 1 && view.getUint32(at + 20, LITTLE_ENDIAN) === 1 &&
    view.getUint16(at + 32, LITTLE_ENDIAN) === 40;
}

/** The cn_msg `seq` of the process-event datagram at `at` (the kernel's per-CPU counter). */
export function procEventDatagramSeq(view: DataView, at: number): number {
  return view.getUint32(at + 24, LITTLE_ENDIAN);
}

/** The cn_msg `ack` of the process-event datagram at `at` (non-zero only on replies to LISTEN/IGNORE). */
export function procEventDatagramAck(view: DataView, at: number): number {
  return view.getUint32(at + 28, LITTLE_ENDIAN);
}

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
