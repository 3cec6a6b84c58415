/**
 * Best-effort process details from /proc and /etc/passwd. A short-lived process may be gone before
 * it is read: the result then says what could not be read instead of guessing. Every string is
 * escaped for display (see text.ts): a process can name itself anything.
 *
 * @module
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import type { FileReader } from "../ffi/files.ts";
import { cgroupPathOf, type ContainerRef, parseCgroup } from "./cgroup.ts";
import { escapeBytes, escapeText } from "./text.ts";

/**
 * What is known about a process. The process-events connector only gives ids; everything else here
 * is read from /proc (best effort, it races the process) or updated from later events (exact: a
 * `comm` event's name, a `uid` event's ids). Strings are escaped for display: control characters,
 * bytes that are not UTF-8 and backslashes show as `\n`, `\xHH`, `\\`.
 */
export interface ProcessInfo {
  /** The process id (the tgid). */
  pid: number;
  /** The real parent's process id. */
  ppid?: number;
  /** The task name (`comm`, at most 15 bytes). */
  comm?: string;
  /** `/proc/PID/cmdline`, one string per argument. Empty for kernel threads and zombies. */
  cmdline?: string[];
  /** The `/proc/PID/exe` target. */
  exe?: string;
  /** Real uid. */
  uid?: number;
  /** User name of `uid` from /etc/passwd (escaped). */
  user?: string;
  /** Real gid. */
  gid?: number;
  /** The controlling terminal (`pts/3`, `tty1`), when it has one. */
  tty?: string;
  /**
   * When it started, in CLOCK_MONOTONIC nanoseconds: the kernel's fork timestamp when its fork was
   * seen, else /proc/PID/stat's start time (10 ms resolution).
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
}

let passwd: Map<number, string> | null = null;

/** Reads files with the runtime's fs module (when no libc reader is given). */
const fsFiles: FileReader = {
  read(path) {
    try {
      return readFileSync(path);
    } catch {
      return null;
    }
  },
  readlink(path) {
    try {
      return readlinkSync(path, { encoding: "buffer" });
    } catch {
      return null;
    }
  },
  list(path) {
    try {
      return readdirSync(path);
    } catch {
      return null;
    }
  },
};

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

/**
 * User name for `uid` from /etc/passwd (read once, with `files` when given), escaped for display, or
 * undefined.
 *
 * @example
 * ```ts
 * import { userName } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(userName(0), "root");
 * ```
 */
export function userName(uid: number, files: FileReader = fsFiles): string | undefined {
  if (!passwd) {
    passwd = new Map();
    const bytes = files.read("/etc/passwd");
    // No /etc/passwd (or not readable): names stay unknown.
    for (const line of bytes ? utf8.decode(bytes).split("\n") : []) {
      const [name, , id] = line.split(":");
      if (name && id !== undefined && !passwd.has(Number(id))) passwd.set(Number(id), escapeText(name));
    }
  }
  return passwd.get(uid);
}

/** USER_HZ: the unit of /proc/PID/stat's times, fixed at 100 by the kernel ABI. */
const USER_HZ = 100;

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
 * Reads what it can about process `pid` right now. `bootToMonotonicNs` converts /proc's start time
 * (nanoseconds since boot, CLOCK_BOOTTIME) to CLOCK_MONOTONIC; without it they are taken as equal
 * (they differ by the time the machine spent suspended). `files` reads /proc (the monitor gives one
 * on libc, several times faster than the runtime's fs module); by default the fs module.
 *
 * @example
 * ```ts
 * import { readProcessInfo } from "@cnlink/connector/proc";
 * import process from "node:process";
 *
 * console.log(readProcessInfo(process.pid).cmdline);
 * ```
 */
export function readProcessInfo(pid: number, bootToMonotonicNs = 0n, files: FileReader = fsFiles): ProcessInfo {
  const info: ProcessInfo = { pid };
  const missing: NonNullable<ProcessInfo["missing"]> = [];
  const dir = `/proc/${pid}`;
  // The most useful first: a short-lived process may be gone before the last read.
  const cmdline = files.read(`${dir}/cmdline`);
  if (cmdline) {
    const end = cmdline.at(-1) === 0 ? cmdline.length - 1 : cmdline.length;
    info.cmdline = [];
    for (let start = 0; start < end;) {
      let nul = cmdline.indexOf(0, start);
      if (nul < 0 || nul > end) nul = end;
      info.cmdline.push(escapeBytes(cmdline.subarray(start, nul)));
      start = nul + 1;
    }
  } else missing.push("cmdline");
  // A zombie still has its comm (the program it ran last) after its cmdline is gone.
  const comm = files.read(`${dir}/comm`);
  if (comm) info.comm = escapeBytes(comm.subarray(0, comm.at(-1) === 0x0a ? -1 : undefined));
  else missing.push("comm");
  const stat = files.read(`${dir}/stat`);
  if (stat) {
    const text = latin1.decode(stat);
    // The comm in parentheses may itself hold ") ": the fields start after the last one.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    info.ppid = Number(fields[1]);
    const tty = ttyName(Number(fields[4]));
    if (tty) info.tty = tty;
    info.startNs = BigInt(fields[19]) * BigInt(1e9 / USER_HZ) - bootToMonotonicNs;
  } else missing.push("stat");
  const status = files.read(`${dir}/status`);
  const statusText = status ? latin1.decode(status) : "";
  const uid = /^Uid:\s+(\d+)/m.exec(statusText);
  const gid = /^Gid:\s+(\d+)/m.exec(statusText);
  if (uid) {
    info.uid = Number(uid[1]);
    info.user = userName(info.uid, files);
  } else missing.push("uid");
  if (gid) info.gid = Number(gid[1]);
  const exe = files.readlink(`${dir}/exe`);
  if (exe) info.exe = escapeBytes(exe);
  else missing.push("exe");
  const cgroup = files.read(`${dir}/cgroup`);
  const path = cgroup ? cgroupPathOf(utf8.decode(cgroup)) : undefined;
  if (path !== undefined) Object.assign(info, parseCgroup(path));
  else missing.push("cgroup");
  if (missing.length) info.missing = missing;
  return info;
}

/** /proc/uptime (CLOCK_BOOTTIME, 10 ms resolution) in nanoseconds. */
export function uptimeNs(): bigint {
  const seconds = readFileSync("/proc/uptime", "utf8").split(" ")[0];
  const [whole, frac = "0"] = seconds.split(".");
  return BigInt(whole) * 1_000_000_000n + BigInt(frac.padEnd(9, "0").slice(0, 9));
}
