/**
 * `struct proc_event` decoding into a discriminated union, and helpers for its traps.
 *
 * @module
 */
import { DecodeError } from "../codec/decode_error.ts";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { PROC_EVENT, PROC_EVENT_DATA, PROC_EVENT_MIN_DATA, type ProcEventField } from "../codec/proc.ts";
import { decodeBytes } from "./text.ts";
import {
  PROC_EVENT_COMM,
  PROC_EVENT_COREDUMP,
  PROC_EVENT_EXEC,
  PROC_EVENT_EXIT,
  PROC_EVENT_FORK,
  PROC_EVENT_GID,
  PROC_EVENT_NONE,
  PROC_EVENT_PTRACE,
  PROC_EVENT_SID,
  PROC_EVENT_UID,
} from "./constants.ts";

// Field offsets of struct proc_event, and of its union's members (from DATA), out of the codec's
// tables: the decoder reads them as plain numbers, not as properties of a table on every event
// (bench/README.md, "Figures the code cites"), and an edit of the table moves them all.
const { what: WHAT, cpu: CPU, timestamp: TIMESTAMP, data: DATA } = PROC_EVENT;
const { ack: ACK, fork: FORK, exec: EXEC, uid: UID, gid: GID, sid: SID } = PROC_EVENT_DATA;
const { ptrace: PTRACE, comm: COMM, coredump: COREDUMP, exit: EXIT } = PROC_EVENT_DATA;
const ACK_ERR = ACK.err.offset;
const FORK_PARENT_PID = FORK.parentPid.offset, FORK_PARENT_TGID = FORK.parentTgid.offset;
const FORK_CHILD_PID = FORK.childPid.offset, FORK_CHILD_TGID = FORK.childTgid.offset;
const EXEC_PID = EXEC.pid.offset, EXEC_TGID = EXEC.tgid.offset;
const UID_PID = UID.pid.offset, UID_TGID = UID.tgid.offset, UID_RUID = UID.ruid.offset, UID_EUID = UID.euid.offset;
const GID_PID = GID.pid.offset, GID_TGID = GID.tgid.offset, GID_RGID = GID.rgid.offset, GID_EGID = GID.egid.offset;
const SID_PID = SID.pid.offset, SID_TGID = SID.tgid.offset;
const PTRACE_PID = PTRACE.pid.offset, PTRACE_TGID = PTRACE.tgid.offset;
const PTRACE_TRACER_PID = PTRACE.tracerPid.offset, PTRACE_TRACER_TGID = PTRACE.tracerTgid.offset;
const COMM_PID = COMM.pid.offset, COMM_TGID = COMM.tgid.offset;
const COMM_COMM = COMM.comm.offset, COMM_SIZE = COMM.comm.size;
const COREDUMP_PID = COREDUMP.pid.offset, COREDUMP_TGID = COREDUMP.tgid.offset;
const COREDUMP_PARENT_PID = COREDUMP.parentPid.offset, COREDUMP_PARENT_TGID = COREDUMP.parentTgid.offset;
const EXIT_PID = EXIT.pid.offset, EXIT_TGID = EXIT.tgid.offset;
const EXIT_CODE = EXIT.exitCode.offset, EXIT_SIGNAL = EXIT.exitSignal.offset;
const EXIT_PARENT_PID = EXIT.parentPid.offset, EXIT_PARENT_TGID = EXIT.parentTgid.offset;

/** Fields every process event has. */
export interface ProcEventBase {
  /** CPU that sent it. */
  cpu: number;
  /** `ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds. */
  timestampNs: bigint;
  /** `cn_msg.seq`: a per-CPU counter (compare only with events of the same `cpu`). */
  seq: number;
}

/** A new task: a process, or a thread when `childPid !== childTgid`. The parent is the *real* parent. */
export interface ForkEvent extends ProcEventBase {
  /** Discriminant. */
  type: "fork";
  /** Thread id of the real parent (for a new thread: the process's parent, not the creating thread). */
  parentPid: number;
  /** Process id of the real parent. */
  parentTgid: number;
  /** Thread id of the new task. */
  childPid: number;
  /** Process id of the new task (equals `childPid` for a process). */
  childTgid: number;
}

/**
 * exec() succeeded. From a non-leader thread, `pid` is already the leader's (README, "Process events",
 * "Semantics worth knowing").
 */
export interface ExecEvent extends ProcEventBase {
  /** Discriminant. */
  type: "exec";
  /** Thread id. */
  pid: number;
  /** Process id. */
  tgid: number;
}

/** uid change (real or effective shown; suid/fsuid changes trigger it too). Ids are in the initial user namespace. */
export interface UidEvent extends ProcEventBase {
  /** Discriminant. */
  type: "uid";
  /** Thread id. */
  pid: number;
  /** Process id. */
  tgid: number;
  /** Real uid. */
  ruid: number;
  /** Effective uid. */
  euid: number;
}

/** gid change (real or effective shown). */
export interface GidEvent extends ProcEventBase {
  /** Discriminant. */
  type: "gid";
  /** Thread id. */
  pid: number;
  /** Process id. */
  tgid: number;
  /** Real gid. */
  rgid: number;
  /** Effective gid. */
  egid: number;
}

/** setsid(). */
export interface SidEvent extends ProcEventBase {
  /** Discriminant. */
  type: "sid";
  /** Thread id (the group leader). */
  pid: number;
  /** Process id. */
  tgid: number;
}

/** ptrace attach (tracer set) or detach (tracer 0/0). No event is sent when a tracer exits. */
export interface PtraceEvent extends ProcEventBase {
  /** Discriminant. */
  type: "ptrace";
  /** Tracee thread id. */
  pid: number;
  /** Tracee process id. */
  tgid: number;
  /** Tracer thread id; 0 on detach. */
  tracerPid: number;
  /** Tracer process id; 0 on detach. */
  tracerTgid: number;
}

/** The task's name changed (prctl(PR_SET_NAME) or /proc/PID/comm; not exec). */
export interface CommEvent extends ProcEventBase {
  /** Discriminant. */
  type: "comm";
  /** Thread id. */
  pid: number;
  /** Process id. */
  tgid: number;
  /**
   * The new name, exact: its bytes decoded by `decodeBytes` (UTF-8; a byte that is not UTF-8 becomes a
   * lone surrogate, so nothing is lost). Not escaped: a process can name itself anything, including
   * control characters, so show it with `escapeText(comm)`.
   */
  comm: string;
  /** The name's raw bytes (up to 15, without the NUL padding). */
  commBytes: Uint8Array;
}

/** A fatal signal is about to dump core (sent even with RLIMIT_CORE = 0). */
export interface CoredumpEvent extends ProcEventBase {
  /** Discriminant. */
  type: "coredump";
  /** Thread id. */
  pid: number;
  /** Process id. */
  tgid: number;
  /** Parent thread id (0 when not known). */
  parentPid: number;
  /** Parent process id. */
  parentTgid: number;
}

/** A task ended: sent once **per thread**. Use {@linkcode waitStatus} on `exitCode`. */
export interface ExitEvent extends ProcEventBase {
  /** Discriminant. */
  type: "exit";
  /** Thread id. */
  pid: number;
  /** Process id. */
  tgid: number;
  /** `task->exit_code` in wait-status encoding: `exit 3` gives 768, SIGKILL gives 9. */
  exitCode: number;
  /** Signal sent to the parent: 17 (SIGCHLD) for processes, -1 for threads. */
  exitSignal: number;
  /**
   * Parent thread id; 0 for auto-reaped tasks (threads, children of a SIGCHLD-ignoring parent), and 0 when
   * the parent reaped the process before the kernel sent this event (it is sent after the parent is
   * notified and reads the parent only while the pid is alive: seen on 6.1 under emulation).
   */
  parentPid: number;
  /** Parent process id; 0 as above. */
  parentTgid: number;
}

/** The kernel's answer to LISTEN/IGNORE (`what = NONE`); `err` is a positive errno or 0. */
export interface AckEvent extends ProcEventBase {
  /** Discriminant. */
  type: "ack";
  /** `cn_msg.ack`: the request's ack + 1. */
  ack: number;
  /** 0, or a positive errno. */
  err: number;
}

/** An event type this library does not know yet; nothing is dropped. */
export interface UnknownEvent extends ProcEventBase {
  /** Discriminant. */
  type: "unknown";
  /** The raw `what`. */
  what: number;
  /** The whole proc_event as received (a copy). */
  raw: Uint8Array;
}

/** Any decoded process event. */
export type ProcEvent =
  | ForkEvent
  | ExecEvent
  | UidEvent
  | GidEvent
  | SidEvent
  | PtraceEvent
  | CommEvent
  | CoredumpEvent
  | ExitEvent
  | AckEvent
  | UnknownEvent;

/** The event type names, in kernel bit order. */
export type ProcEventType = Exclude<ProcEvent["type"], "ack" | "unknown">;

/** `what` of each known type (the ack is PROC_EVENT_NONE). Internal: filter.ts builds masks from it. */
export const WHAT_OF: Readonly<Record<ProcEventType | "ack", number>> = {
  ack: PROC_EVENT_NONE,
  fork: PROC_EVENT_FORK,
  exec: PROC_EVENT_EXEC,
  uid: PROC_EVENT_UID,
  gid: PROC_EVENT_GID,
  sid: PROC_EVENT_SID,
  ptrace: PROC_EVENT_PTRACE,
  comm: PROC_EVENT_COMM,
  coredump: PROC_EVENT_COREDUMP,
  exit: PROC_EVENT_EXIT,
};

/**
 * Decodes a `proc_event` from a cn_msg's data.
 *
 * The kernel's 40 bytes are expected; a shorter payload (older kernels had 32) is accepted when it
 * holds the header and the fields the type needs, and missing trailing fields read as 0.
 *
 * @param data the cn_msg data (any alignment)
 * @param seq the cn_msg seq
 * @param ack the cn_msg ack (used by acks)
 * @returns the event
 * @throws {DecodeError} fewer bytes than the type needs
 *
 * @example Decoding a cn_msg's data
 * ```ts
 * import { decodeProcEvent } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const data = new Uint8Array(40);
 * const view = new DataView(data.buffer);
 * view.setUint32(0, 0x80000000, true); // EXIT
 * view.setInt32(16, 42, true);
 * view.setInt32(20, 42, true);
 * view.setUint32(24, 768, true);
 * const event = decodeProcEvent(data, 7);
 * assert.equal(event.type, "exit");
 * if (event.type === "exit") assert.equal(event.exitCode, 768);
 * ```
 */
export function decodeProcEvent(data: Uint8Array, seq: number, ack = 0): ProcEvent {
  return decodeProcEventAt(new DataView(data.buffer, data.byteOffset, data.byteLength), 0, data.byteLength, seq, ack);
}

// Reads past `end` (a short event from an old kernel) give 0, as the kernel zeroes unused bytes.
function i32(view: DataView, at: number, end: number): number {
  return at + 4 <= end ? view.getInt32(at, LITTLE_ENDIAN) : 0;
}
function u32(view: DataView, at: number, end: number): number {
  return at + 4 <= end ? view.getUint32(at, LITTLE_ENDIAN) : 0;
}

// The fewest bytes of a proc_event each `what` decodes from (the header and PROC_EVENT_MIN_DATA), and its name.
const MIN_SIZE: Record<number, [number, string]> = Object.fromEntries(
  Object.entries(WHAT_OF).map(([type, what]) => [
    what,
    [DATA + PROC_EVENT_MIN_DATA[type as keyof typeof WHAT_OF], type === "ack" ? "an ack" : type],
  ]),
);

/**
 * {@linkcode decodeProcEvent} over a DataView the caller keeps (no copy, no view per event): the
 * receive loop's fast path. `length` bytes at `offset` are the cn_msg data.
 */
export function decodeProcEventAt(view: DataView, offset: number, length: number, seq: number, ack = 0): ProcEvent {
  if (length < DATA) throw new DecodeError("proc_event", 0, `the header needs ${DATA} bytes, got ${length}`);
  const what = view.getUint32(offset + WHAT, LITTLE_ENDIAN);
  const min = MIN_SIZE[what];
  if (min && length < min[0]) throw new DecodeError("proc_event", 0, `${min[1]} needs ${min[0]} bytes, got ${length}`);
  const cpu = view.getUint32(offset + CPU, LITTLE_ENDIAN);
  const timestampNs = view.getBigUint64(offset + TIMESTAMP, LITTLE_ENDIAN);
  const d = offset + DATA;
  const end = offset + length;
  switch (what) {
    case PROC_EVENT_NONE:
      return { type: "ack", cpu, timestampNs, seq, ack, err: u32(view, d + ACK_ERR, end) };
    case PROC_EVENT_FORK:
      return {
        type: "fork",
        cpu,
        timestampNs,
        seq,
        parentPid: i32(view, d + FORK_PARENT_PID, end),
        parentTgid: i32(view, d + FORK_PARENT_TGID, end),
        childPid: i32(view, d + FORK_CHILD_PID, end),
        childTgid: i32(view, d + FORK_CHILD_TGID, end),
      };
    case PROC_EVENT_EXEC:
      return {
        type: "exec",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d + EXEC_PID, end),
        tgid: i32(view, d + EXEC_TGID, end),
      };
    case PROC_EVENT_UID:
      return {
        type: "uid",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d + UID_PID, end),
        tgid: i32(view, d + UID_TGID, end),
        ruid: u32(view, d + UID_RUID, end),
        euid: u32(view, d + UID_EUID, end),
      };
    case PROC_EVENT_GID:
      return {
        type: "gid",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d + GID_PID, end),
        tgid: i32(view, d + GID_TGID, end),
        rgid: u32(view, d + GID_RGID, end),
        egid: u32(view, d + GID_EGID, end),
      };
    case PROC_EVENT_SID:
      return {
        type: "sid",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d + SID_PID, end),
        tgid: i32(view, d + SID_TGID, end),
      };
    case PROC_EVENT_PTRACE:
      return {
        type: "ptrace",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d + PTRACE_PID, end),
        tgid: i32(view, d + PTRACE_TGID, end),
        tracerPid: i32(view, d + PTRACE_TRACER_PID, end),
        tracerTgid: i32(view, d + PTRACE_TRACER_TGID, end),
      };
    case PROC_EVENT_COMM: {
      const at = d + COMM_COMM;
      const raw = new Uint8Array(view.buffer, view.byteOffset + at, Math.min(COMM_SIZE, end - at));
      const nul = raw.indexOf(0);
      const commBytes = (nul < 0 ? raw : raw.subarray(0, nul)).slice();
      return {
        type: "comm",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d + COMM_PID, end),
        tgid: i32(view, d + COMM_TGID, end),
        comm: decodeBytes(commBytes),
        commBytes,
      };
    }
    case PROC_EVENT_COREDUMP:
      return {
        type: "coredump",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d + COREDUMP_PID, end),
        tgid: i32(view, d + COREDUMP_TGID, end),
        parentPid: i32(view, d + COREDUMP_PARENT_PID, end),
        parentTgid: i32(view, d + COREDUMP_PARENT_TGID, end),
      };
    case PROC_EVENT_EXIT:
      return {
        type: "exit",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d + EXIT_PID, end),
        tgid: i32(view, d + EXIT_TGID, end),
        exitCode: u32(view, d + EXIT_CODE, end),
        exitSignal: i32(view, d + EXIT_SIGNAL, end),
        parentPid: i32(view, d + EXIT_PARENT_PID, end),
        parentTgid: i32(view, d + EXIT_PARENT_TGID, end),
      };
    default:
      return {
        type: "unknown",
        cpu,
        timestampNs,
        seq,
        what,
        raw: new Uint8Array(view.buffer, view.byteOffset + offset, length).slice(),
      };
  }
}

/** How a task ended, from a wait status. */
export type WaitStatus =
  | {
    /** It called exit(). */
    exited: true;
    /** The exit code, 0..255. */
    code: number;
  }
  | {
    /** A signal killed it. */
    exited: false;
    /** The signal number. */
    signal: number;
    /** It dumped core. */
    coreDumped: boolean;
  };

/**
 * Decodes a wait status (`ExitEvent.exitCode`) the way `WIFEXITED`/`WTERMSIG` do.
 *
 * @example
 * ```ts
 * import { waitStatus } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(waitStatus(768), { exited: true, code: 3 });
 * assert.deepEqual(waitStatus(11 | 0x80), { exited: false, signal: 11, coreDumped: true });
 * ```
 */
export function waitStatus(status: number): WaitStatus {
  const signal = status & 0x7f;
  if (signal === 0) return { exited: true, code: (status >> 8) & 0xff };
  return { exited: false, signal, coreDumped: (status & 0x80) !== 0 };
}

/**
 * Whether an event is about a thread rather than a whole process (pid ≠ tgid; for fork, of the child).
 *
 * @example
 * ```ts
 * import { isThread } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isThread({ type: "exec", pid: 5, tgid: 4, cpu: 0, timestampNs: 0n, seq: 0 }), true);
 * ```
 */
export function isThread(event: ProcEvent): boolean {
  if (event.type === "fork") return event.childPid !== event.childTgid;
  if ("pid" in event && "tgid" in event) return event.pid !== event.tgid;
  return false;
}

/**
 * Encodes an event back into the kernel's 40-byte `proc_event` (for fake kernels and tests).
 * `seq` is not part of the proc_event (it lives in the cn_msg) and is ignored; so is an ack's `ack`.
 *
 * @example Round trip
 * ```ts
 * import { decodeProcEvent, encodeProcEvent } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const exec = { type: "exec", cpu: 1, timestampNs: 5n, seq: 3, pid: 10, tgid: 10 } as const;
 * assert.deepEqual(decodeProcEvent(encodeProcEvent(exec), 3), exec);
 * ```
 */
export function encodeProcEvent(event: ProcEvent): Uint8Array {
  const bytes = new Uint8Array(PROC_EVENT.size);
  const view = new DataView(bytes.buffer);
  if (event.type === "unknown") {
    bytes.set(event.raw.subarray(0, PROC_EVENT.size));
    return bytes;
  }
  view.setUint32(WHAT, WHAT_OF[event.type], LITTLE_ENDIAN);
  view.setUint32(CPU, event.cpu, LITTLE_ENDIAN);
  view.setBigUint64(TIMESTAMP, event.timestampNs, LITTLE_ENDIAN);
  const fields: Record<string, ProcEventField> = PROC_EVENT_DATA[event.type];
  const values = event as unknown as Record<string, unknown>;
  for (const [name, field] of Object.entries(fields)) {
    const at = DATA + field.offset;
    if (field.kind === "comm") {
      // A NUL ends the name: at most size - 1 bytes of it.
      bytes.set((values.commBytes as Uint8Array).subarray(0, field.size - 1), at);
    } else if (field.kind === "i32") view.setInt32(at, values[name] as number, LITTLE_ENDIAN);
    else view.setUint32(at, (values[name] as number) >>> 0, LITTLE_ENDIAN);
  }
  return bytes;
}
