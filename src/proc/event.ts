/**
 * `struct proc_event` decoding into a discriminated union, and helpers for its traps.
 *
 * @module
 */
import { DecodeError } from "../codec/decode_error.ts";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { PROC_EVENT } from "../codec/proc.ts";
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

// Field offsets of struct proc_event (the union members' fields are read below, from DATA).
const { what: WHAT, cpu: CPU, timestamp: TIMESTAMP, data: DATA } = PROC_EVENT;

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

/** exec() succeeded. From a non-leader thread, `pid` is already the leader's (see the README). */
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

const MIN_DATA: Record<number, [number, string]> = {
  [PROC_EVENT_NONE]: [4, "an ack"],
  [PROC_EVENT_FORK]: [16, "fork"],
  [PROC_EVENT_EXEC]: [8, "exec"],
  [PROC_EVENT_UID]: [16, "uid"],
  [PROC_EVENT_GID]: [16, "gid"],
  [PROC_EVENT_SID]: [8, "sid"],
  [PROC_EVENT_PTRACE]: [16, "ptrace"],
  [PROC_EVENT_COMM]: [9, "comm"],
  [PROC_EVENT_COREDUMP]: [8, "coredump"],
  [PROC_EVENT_EXIT]: [16, "exit"],
};

/**
 * {@linkcode decodeProcEvent} over a DataView the caller keeps (no copy, no view per event): the
 * receive loop's fast path. `length` bytes at `offset` are the cn_msg data.
 */
export function decodeProcEventAt(view: DataView, offset: number, length: number, seq: number, ack = 0): ProcEvent {
  if (length < DATA) throw new DecodeError("proc_event", 0, `the header needs ${DATA} bytes, got ${length}`);
  const what = view.getUint32(offset + WHAT, LITTLE_ENDIAN);
  const min = MIN_DATA[what];
  if (min && length < DATA + min[0]) {
    throw new DecodeError("proc_event", 0, `${min[1]} needs ${DATA + min[0]} bytes, got ${length}`);
  }
  const cpu = view.getUint32(offset + CPU, LITTLE_ENDIAN);
  const timestampNs = view.getBigUint64(offset + TIMESTAMP, LITTLE_ENDIAN);
  const d = offset + DATA;
  const end = offset + length;
  switch (what) {
    case PROC_EVENT_NONE:
      return { type: "ack", cpu, timestampNs, seq, ack, err: u32(view, d, end) };
    case PROC_EVENT_FORK:
      return {
        type: "fork",
        cpu,
        timestampNs,
        seq,
        parentPid: i32(view, d, end),
        parentTgid: i32(view, d + 4, end),
        childPid: i32(view, d + 8, end),
        childTgid: i32(view, d + 12, end),
      };
    case PROC_EVENT_EXEC:
      return { type: "exec", cpu, timestampNs, seq, pid: i32(view, d, end), tgid: i32(view, d + 4, end) };
    case PROC_EVENT_UID:
      return {
        type: "uid",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d, end),
        tgid: i32(view, d + 4, end),
        ruid: u32(view, d + 8, end),
        euid: u32(view, d + 12, end),
      };
    case PROC_EVENT_GID:
      return {
        type: "gid",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d, end),
        tgid: i32(view, d + 4, end),
        rgid: u32(view, d + 8, end),
        egid: u32(view, d + 12, end),
      };
    case PROC_EVENT_SID:
      return { type: "sid", cpu, timestampNs, seq, pid: i32(view, d, end), tgid: i32(view, d + 4, end) };
    case PROC_EVENT_PTRACE:
      return {
        type: "ptrace",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d, end),
        tgid: i32(view, d + 4, end),
        tracerPid: i32(view, d + 8, end),
        tracerTgid: i32(view, d + 12, end),
      };
    case PROC_EVENT_COMM: {
      const raw = new Uint8Array(view.buffer, view.byteOffset + d + 8, Math.min(16, end - d - 8));
      const nul = raw.indexOf(0);
      const commBytes = (nul < 0 ? raw : raw.subarray(0, nul)).slice();
      return {
        type: "comm",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d, end),
        tgid: i32(view, d + 4, end),
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
        pid: i32(view, d, end),
        tgid: i32(view, d + 4, end),
        parentPid: i32(view, d + 8, end),
        parentTgid: i32(view, d + 12, end),
      };
    case PROC_EVENT_EXIT:
      return {
        type: "exit",
        cpu,
        timestampNs,
        seq,
        pid: i32(view, d, end),
        tgid: i32(view, d + 4, end),
        exitCode: u32(view, d + 8, end),
        exitSignal: i32(view, d + 12, end),
        parentPid: i32(view, d + 16, end),
        parentTgid: i32(view, d + 20, end),
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
  const i32 = (off: number, v: number) => view.setInt32(DATA + off, v, LITTLE_ENDIAN);
  const u32 = (off: number, v: number) => view.setUint32(DATA + off, v >>> 0, LITTLE_ENDIAN);
  if (event.type === "unknown") {
    bytes.set(event.raw.subarray(0, 40));
    return bytes;
  }
  view.setUint32(WHAT, WHAT_OF[event.type], LITTLE_ENDIAN);
  view.setUint32(CPU, event.cpu, LITTLE_ENDIAN);
  view.setBigUint64(TIMESTAMP, event.timestampNs, LITTLE_ENDIAN);
  switch (event.type) {
    case "ack":
      u32(0, event.err);
      break;
    case "fork":
      i32(0, event.parentPid), i32(4, event.parentTgid), i32(8, event.childPid), i32(12, event.childTgid);
      break;
    case "exec":
    case "sid":
      i32(0, event.pid), i32(4, event.tgid);
      break;
    case "uid":
      i32(0, event.pid), i32(4, event.tgid), u32(8, event.ruid), u32(12, event.euid);
      break;
    case "gid":
      i32(0, event.pid), i32(4, event.tgid), u32(8, event.rgid), u32(12, event.egid);
      break;
    case "ptrace":
      i32(0, event.pid), i32(4, event.tgid), i32(8, event.tracerPid), i32(12, event.tracerTgid);
      break;
    case "comm":
      i32(0, event.pid), i32(4, event.tgid);
      bytes.set(event.commBytes.subarray(0, 15), DATA + 8);
      break;
    case "coredump":
      i32(0, event.pid), i32(4, event.tgid), i32(8, event.parentPid), i32(12, event.parentTgid);
      break;
    case "exit":
      i32(0, event.pid), i32(4, event.tgid), u32(8, event.exitCode), i32(12, event.exitSignal);
      i32(16, event.parentPid), i32(20, event.parentTgid);
      break;
  }
  return bytes;
}
