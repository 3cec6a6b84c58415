/**
 * Best-effort process details from /proc and /etc/passwd. A short-lived process may be gone before
 * it is read: the result then says what could not be read instead of guessing. Every string is
 * exact (see text.ts: bytes that are not UTF-8 are kept as lone surrogates) and not escaped: a
 * process can name itself anything, so whatever prints them escapes them (`escapeText`).
 *
 * @module
 */
import { defaultFileReader, type FileReader } from "../ffi/files.ts";
import { type CgroupInfo, cgroupPathOf, type ContainerRef, parseCgroup } from "./cgroup.ts";
import { decodeBytes } from "./text.ts";

/**
 * How much of `/proc/PID/cmdline` is read: 64 KiB. Linux allows about 2 MiB of arguments, and
 * reading and decoding them all on every exec held up every other event (a process re-exec'ing
 * itself with 1.9 MB of arguments delayed unrelated events by seconds). A longer command line is cut
 * here and `cmdlineTruncated` says so.
 */
export const CMDLINE_LIMIT = 65536;

/**
 * What is known about a process. The process-events connector only gives ids; everything else here
 * is read from /proc (best effort, it races the process) or updated from later events (exact: a
 * `comm` event's name, a `uid` event's ids).
 *
 * Strings are the exact text the process chose, **not escaped**: decoded from UTF-8, with each byte
 * that is not UTF-8 kept as a lone surrogate (`decodeBytes`; `encodeText` gives the bytes back).
 * They may hold newlines, terminal escape sequences and bidi overrides: show them with
 * `escapeText`, write JSON with `safeJson`.
 */
export interface ProcessInfo {
  /** The process id (the tgid). */
  pid: number;
  /** The real parent's process id. */
  ppid?: number;
  /** The task name (`comm`, at most 15 bytes). */
  comm?: string;
  /**
   * `/proc/PID/cmdline`, one string per argument, its first {@linkcode CMDLINE_LIMIT} bytes (then
   * `cmdlineTruncated` is set and the last argument is cut). Empty for kernel threads and zombies.
   */
  cmdline?: string[];
  /** Set when the command line is longer than {@linkcode CMDLINE_LIMIT} bytes and `cmdline` is its start. */
  cmdlineTruncated?: true;
  /** The `/proc/PID/exe` target. */
  exe?: string;
  /** Real uid. */
  uid?: number;
  /** User name of `uid` from /etc/passwd. */
  user?: string;
  /** Real gid. */
  gid?: number;
  /** The controlling terminal (`pts/3`, `tty1`), when it has one. */
  tty?: string;
  /**
   * When it started, in CLOCK_MONOTONIC nanoseconds (the clock of the events' `timestampNs`): the
   * kernel's fork timestamp when its fork was seen, else /proc/PID/stat's start time converted to
   * CLOCK_MONOTONIC, rounded down to its 10 ms resolution (so never after the real start: a duration
   * to a later event is never negative, and at most 10 ms long). Absent when /proc's start time
   * could not be converted (no clock offset given to `readProcessInfo`).
   */
  startNs?: bigint;
  /** The cgroup v2 path. */
  cgroup?: string;
  /** The container it runs in, when the cgroup path follows a known runtime's naming. */
  container?: ContainerRef;
  /** The innermost systemd unit of its cgroup (`ssh.service`, `session-3.scope`). */
  unit?: string;
  /** Which fields could not be read (the process may have exited, or permission was denied). */
  missing?: ("comm" | "cmdline" | "exe" | "uid" | "stat" | "cgroup")[];
  /**
   * Fields of an `exec` event's process that are left out because the /proc read that would fill
   * them may have seen a later program of the same process: another exec of that pid came in the
   * same received batch, or was stamped by the kernel before the read ended. Such a field is never
   * filled with the later program's value (a borrowed name); it is named here instead.
   */
  uncertain?: ("comm" | "cmdline" | "exe")[];
}

/**
 * What {@linkcode readProcessInfo} may leave out.
 *
 * @example The process table's read at an exec of a process it knows
 * ```ts
 * import { readProcessInfo } from "@cnlink/connector/proc";
 * import process from "node:process";
 *
 * const info = readProcessInfo(process.pid, undefined, undefined, { ids: false });
 * console.log(info.uid === undefined && !info.missing?.includes("uid")); // true
 * ```
 */
export interface ReadOptions {
  /**
   * Read the real user and group ids (`/proc/PID/status`, the most expensive file for the kernel
   * to render; 10 µs on Linux 6.18 against 4-7 µs for cmdline, stat or cgroup)? Default true. With
   * false, `uid`, `user` and `gid` are left out and not named in `missing`. For a caller that
   * follows them another way: exec never changes the real ids (a set-user-ID program changes the
   * effective one), they are inherited at fork, and the kernel reports every other change as a
   * `uid` or `gid` event, which is how the process table keeps them for an exec it has seen the
   * fork of.
   */
  ids?: boolean;
}

/** What the process table reads of `/proc/PID/stat` to follow parents and tell processes apart. */
export interface ProcStat {
  /** The state letter (`R`, `S`, `Z` for a zombie, ...). */
  state: string;
  /** The real parent's process id (its tgid), now. */
  ppid: number;
  /** The start time, in CLOCK_MONOTONIC nanoseconds (10 ms resolution); absent without a clock offset. */
  startNs?: bigint;
}

/**
 * How a `ProcessTable` reads /proc; every part is replaceable (tests give fakes). The
 * default, {@linkcode procReader}, reads through a {@linkcode FileReader}.
 *
 * @example A reader where every process is gone
 * ```ts
 * import { ProcessTable, type ProcReader } from "@cnlink/connector/proc";
 *
 * const gone: ProcReader = {
 *   info: (pid) => ({ pid, missing: ["comm", "cmdline", "exe", "uid", "stat", "cgroup"] }),
 *   stat: () => undefined,
 *   taskComm: () => undefined,
 *   cgroup: () => undefined,
 * };
 * const table = new ProcessTable({ reader: gone, list: () => [] });
 * ```
 */
export interface ProcReader {
  /** Everything about a process ({@linkcode readProcessInfo}), less what `options` leaves out. */
  info(pid: number, bootToMonotonicNs?: bigint, options?: ReadOptions): ProcessInfo;
  /** Its state, parent and start time, or undefined when it is gone. */
  stat(pid: number, bootToMonotonicNs?: bigint): ProcStat | undefined;
  /** The name of one of its threads (`/proc/TGID/task/TID/comm`), or undefined. */
  taskComm(tgid: number, tid: number): string | undefined;
  /** Its cgroup now, or undefined when it cannot be read. */
  cgroup(pid: number): CgroupInfo | undefined;
}

let passwd: Map<number, string> | null = null;

const latin1 = new TextDecoder("latin1");

/**
 * The names of the ids in `/etc/passwd` or `/etc/group` (`name:x:id:...` lines; the first line of an
 * id wins), exact (not escaped); empty when the file cannot be read. Internal: user and group names.
 */
export function namesById(files: FileReader, path: string): Map<number, string> {
  const names = new Map<number, string>();
  const bytes = files.read(path);
  for (const line of bytes ? decodeBytes(bytes).split("\n") : []) {
    const [name, , id] = line.split(":");
    if (name && id !== undefined && !names.has(Number(id))) names.set(Number(id), name);
  }
  return names;
}

/**
 * The process ids in /proc (its numeric entries), read with `files`; empty when /proc cannot be
 * listed.
 *
 * @example
 * ```ts
 * import { listPids } from "./enrich.ts";
 * import assert from "node:assert/strict";
 * import process from "node:process";
 *
 * assert.ok(listPids().includes(process.pid));
 * ```
 */
export function listPids(files: FileReader = defaultFileReader()): number[] {
  return (files.list("/proc") ?? []).filter((name) => /^\d+$/.test(name)).map(Number);
}

/**
 * User name for `uid` from /etc/passwd (read once, with `files`, by default as
 * {@linkcode readProcessInfo} reads), exact (not escaped), or undefined.
 *
 * @example
 * ```ts
 * import { userName } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(userName(0), "root");
 * ```
 */
export function userName(uid: number, files: FileReader = defaultFileReader()): string | undefined {
  passwd ??= namesById(files, "/etc/passwd");
  return passwd.get(uid);
}

/** USER_HZ: the unit of /proc/PID/stat's times, fixed at 100 by the kernel ABI. */
const USER_HZ = 100;
const NS_PER_TICK = BigInt(1e9 / USER_HZ);

/** The device name of a `tty_nr` from /proc/PID/stat, for the common terminals. */
function ttyName(ttyNr: number): string | undefined {
  if (ttyNr === 0) return undefined;
  const major = (ttyNr >> 8) & 0xfff;
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
  if (major >= 136 && major <= 143) return `pts/${(major - 136) * 256 + minor}`;
  if (major === 4) return minor < 64 ? `tty${minor}` : `ttyS${minor - 64}`;
  return `${major}:${minor}`;
}

/**
 * Reads what it can about process `pid` right now. `bootToMonotonicNs` is CLOCK_BOOTTIME minus
 * CLOCK_MONOTONIC now (the time the machine spent suspended; `bootOffsetClock()` reads it), which
 * converts /proc's start time (since boot, CLOCK_BOOTTIME) to the events' clock; without it
 * `startNs` is left out rather than guessed. `files` reads /proc; by default `defaultFileReader()`, on libc
 * once any `open()` has loaded it (several times faster than the runtime's fs module, and without
 * Deno's --allow-read), else the fs module. Strings are exact,
 * not escaped (see {@linkcode ProcessInfo}); the command line is read up to {@linkcode CMDLINE_LIMIT}.
 * `options` may leave the ids out ({@linkcode ReadOptions}).
 *
 * @example
 * ```ts
 * import { readProcessInfo } from "@cnlink/connector/proc";
 * import process from "node:process";
 *
 * console.log(readProcessInfo(process.pid).cmdline);
 * ```
 */
export function readProcessInfo(
  pid: number,
  bootToMonotonicNs?: bigint,
  files: FileReader = defaultFileReader(),
  options: ReadOptions = {},
): ProcessInfo {
  const info: ProcessInfo = { pid };
  const missing: NonNullable<ProcessInfo["missing"]> = [];
  const dir = `/proc/${pid}`;
  // The executable is read first and again last: if it changed in between, the process exec'd
  // while it was read, and the program's fields may belong to either program.
  const first = files.readlink(`${dir}/exe`);
  const exeBefore = first ? decodeBytes(first) : undefined;
  // Then the most useful first: a short-lived process may be gone before the last read.
  // One byte over the limit tells a command line of exactly the limit from a longer one.
  let cmdline = files.read(`${dir}/cmdline`, CMDLINE_LIMIT + 1);
  if (cmdline) {
    if (cmdline.length > CMDLINE_LIMIT) {
      cmdline = cmdline.subarray(0, CMDLINE_LIMIT);
      info.cmdlineTruncated = true;
    }
    const end = cmdline.at(-1) === 0 && !info.cmdlineTruncated ? cmdline.length - 1 : cmdline.length;
    info.cmdline = [];
    // Empty for kernel threads; "\0" is one empty argument.
    for (let start = 0; cmdline.length > 0;) {
      // A loop, not indexOf(): the builtin is a call out of JIT code, per argument.
      let nul = start;
      while (nul < end && cmdline[nul] !== 0) nul++;
      info.cmdline.push(decodeBytes(cmdline.subarray(start, nul)));
      if (nul >= end) break;
      start = nul + 1;
    }
  } else missing.push("cmdline");
  // A zombie still has its comm (the program it ran last) after its cmdline is gone.
  const comm = files.read(`${dir}/comm`);
  if (comm) info.comm = decodeBytes(comm.subarray(0, comm.at(-1) === 0x0a ? -1 : undefined));
  else missing.push("comm");
  const stat = files.read(`${dir}/stat`);
  if (stat) {
    const fields = statFields(stat, pid);
    if (fields) {
      if (fields.ppid !== undefined) info.ppid = fields.ppid;
      const tty = ttyName(fields.tty);
      if (tty) info.tty = tty;
      // Clock ticks since boot, rounded down by the kernel: the start is at or after this.
      if (bootToMonotonicNs !== undefined) info.startNs = BigInt(fields.start) * NS_PER_TICK - bootToMonotonicNs;
    } else missing.push("stat");
  } else missing.push("stat");
  if (options.ids !== false) {
    const status = files.read(`${dir}/status`);
    const statusText = status ? latin1.decode(status) : "";
    const uid = /^Uid:\s+(\d+)/m.exec(statusText);
    const gid = /^Gid:\s+(\d+)/m.exec(statusText);
    if (uid) {
      info.uid = Number(uid[1]);
      info.user = userName(info.uid, files);
    } else missing.push("uid");
    if (gid) info.gid = Number(gid[1]);
  }
  const exe = files.readlink(`${dir}/exe`);
  if (exe) info.exe = decodeBytes(exe);
  else missing.push("exe");
  const cgroup = cgroupOf(files.read(`${dir}/cgroup`));
  if (cgroup) Object.assign(info, cgroup);
  else missing.push("cgroup");
  if (missing.length) info.missing = missing;
  // An empty command line with an executable is a process inside exec: its new program is mapped,
  // its arguments not yet (a zombie or a kernel thread has no executable).
  // (An executable that is gone by the second read is a process that ended, not an exec.)
  const changed = exeBefore !== undefined && info.exe !== undefined && info.exe !== exeBefore;
  if (changed || (info.cmdline?.length === 0 && info.exe !== undefined)) withheldByExec(info);
  return info;
}

/**
 * Leaves out the program's fields of a read that may have seen another program than the one the
 * caller asked about (an exec during the read, or after the event that prompted it), and names them
 * in `uncertain`.
 */
export function withheldByExec(info: ProcessInfo): void {
  const uncertain = info.uncertain ?? [];
  for (const field of ["comm", "cmdline", "exe"] as const) {
    if (info[field] === undefined) continue;
    delete info[field];
    if (!uncertain.includes(field)) uncertain.push(field);
  }
  if (uncertain.length) info.uncertain = uncertain;
}

// The last /proc/PID/cgroup parsed, and what it gave.
let lastCgroup: Uint8Array | undefined;
let lastCgroupInfo: CgroupInfo | undefined;

/**
 * What a /proc/PID/cgroup file's bytes say (undefined: none, or no cgroup in it). Most processes
 * read one after another are in the same cgroup: the same bytes as last time give the same result
 * (shared: its users copy it) without decoding and parsing them again.
 */
function cgroupOf(bytes: Uint8Array | null): CgroupInfo | undefined {
  if (!bytes) return undefined;
  const last = lastCgroup;
  if (last !== undefined && last.length === bytes.length) {
    let i = 0;
    while (i < bytes.length && bytes[i] === last[i]) i++;
    if (i === bytes.length) return lastCgroupInfo;
  }
  const path = cgroupPathOf(decodeBytes(bytes));
  lastCgroup = bytes.slice();
  lastCgroupInfo = path === undefined ? undefined : parseCgroup(path);
  return lastCgroupInfo;
}

/** The fields after the comm of a /proc/PID/stat (whose comm in parentheses may itself hold ") "). */
function statFields(stat: Uint8Array, pid: number): StatFields | undefined {
  // The name in parentheses may hold ")" and spaces: the fields start after the last ")".
  let i = stat.length - 1;
  while (i >= 0 && stat[i] !== 0x29) i--;
  if (i < 0 || i + 3 >= stat.length) return undefined;
  const state = String.fromCharCode(stat[i + 2]);
  // Fields after the state: 1 ppid, 4 tty_nr, 19 starttime (of the text after ") ", split at spaces).
  let field = 1, value = 0, negative = false, ppid = NaN, tty = NaN, start = NaN;
  for (i += 4; i <= stat.length; i++) {
    const c = i < stat.length ? stat[i] : 0x20;
    if (c === 0x20 || c === 0x0a) {
      const v = negative ? -value : value;
      if (field === 1) ppid = v;
      else if (field === 4) tty = v;
      else if (field === 19) {
        start = v;
        break;
      }
      field++;
      value = 0;
      negative = false;
    } else if (c === 0x2d) negative = true;
    else value = value * 10 + (c - 0x30);
  }
  // Cut short before the start time: not a stat line this parser can trust.
  if (Number.isNaN(start)) return undefined;
  // The kernel prints 0 for the parent of a task already unhashed in its exit (pid_alive() is
  // false): not a parent. (Only init and kthreadd really have none.)
  return { state, ppid: ppid === 0 && pid > 2 ? undefined : ppid, tty, start };
}

/** The fields of /proc/PID/stat the table uses (numbers: exact, a tick count stays far below 2^53). */
interface StatFields {
  state: string;
  /** Undefined for a task already unhashed in its exit (see statFields). */
  ppid: number | undefined;
  tty: number;
  /** Clock ticks (USER_HZ) since boot. */
  start: number;
}

/**
 * A {@linkcode ProcReader} over `files` (default: on libc once any `open()` has loaded it, else the
 * runtime's fs module; see {@linkcode readProcessInfo}).
 *
 * @example
 * ```ts
 * import { procReader } from "@cnlink/connector/proc";
 * import process from "node:process";
 *
 * console.log(procReader().stat(process.pid)?.ppid);
 * ```
 */
export function procReader(files: FileReader = defaultFileReader()): ProcReader {
  return {
    info: (pid, boot, options) => readProcessInfo(pid, boot, files, options),
    stat(pid, boot) {
      const stat = files.read(`/proc/${pid}/stat`);
      if (!stat) return undefined;
      const fields = statFields(stat, pid);
      // No parent: a task already unhashed in its exit, gone.
      if (!fields || fields.ppid === undefined) return undefined;
      const result: ProcStat = { state: fields.state, ppid: fields.ppid };
      if (boot !== undefined) result.startNs = BigInt(fields.start) * NS_PER_TICK - boot;
      return result;
    },
    taskComm(tgid, tid) {
      const comm = files.read(`/proc/${tgid}/task/${tid}/comm`);
      return comm ? decodeBytes(comm.subarray(0, comm.at(-1) === 0x0a ? -1 : undefined)) : undefined;
    },
    cgroup(pid) {
      return cgroupOf(files.read(`/proc/${pid}/cgroup`));
    },
  };
}
