/**
 * Best-effort process details from /proc and /etc/passwd. A short-lived process may be gone before
 * it is read: the result then says what could not be read instead of guessing.
 *
 * @module
 */
import { readFileSync, readlinkSync } from "node:fs";

/** What could be read about a process, and when. Every field is optional: reading races the process. */
export interface ProcessInfo {
  /** `/proc/PID/comm`. */
  comm?: string;
  /** `/proc/PID/cmdline`, split on NUL. Empty for kernel threads and zombies. */
  cmdline?: string[];
  /** `/proc/PID/exe` target. */
  exe?: string;
  /** Real uid from `/proc/PID/status`. */
  uid?: number;
  /** User name of `uid` from /etc/passwd. */
  user?: string;
  /** Which fields could not be read (the process may have exited, or permission was denied). */
  missing?: ("comm" | "cmdline" | "exe" | "uid")[];
}

let passwd: Map<number, string> | null = null;

/**
 * Throws a clear error when the runtime forbids reading `/proc/PID` (Deno allows it only with
 * `--allow-all`, whatever `--allow-read` says), instead of enrichment silently finding nothing.
 */
export function checkProcAccess(): void {
  try {
    readFileSync("/proc/1/comm", "utf8");
  } catch (err) {
    if ((err as Error).name === "NotCapable") {
      throw new Error(
        "Reading process details from /proc/PID needs Deno's --allow-all (-A): Deno guards /proc/PID " +
          "behind it whatever --allow-read says. Run with -A, or turn enrichment off.",
        { cause: err },
      );
    }
  }
}

/**
 * User name for `uid` from /etc/passwd (read once), or undefined.
 *
 * @example
 * ```ts
 * import { userName } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(userName(0), "root");
 * ```
 */
export function userName(uid: number): string | undefined {
  if (!passwd) {
    passwd = new Map();
    try {
      for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
        const [name, , id] = line.split(":");
        if (name && id !== undefined && !passwd.has(Number(id))) passwd.set(Number(id), name);
      }
    } catch {
      // No /etc/passwd: names stay unknown.
    }
  }
  return passwd.get(uid);
}

/**
 * Reads what it can about process `pid` right now.
 *
 * @example
 * ```ts
 * import { readProcessInfo } from "@cnlink/connector/proc";
 * import process from "node:process";
 *
 * console.log(readProcessInfo(process.pid).comm);
 * ```
 */
export function readProcessInfo(pid: number): ProcessInfo {
  const info: ProcessInfo = {};
  const missing: NonNullable<ProcessInfo["missing"]> = [];
  const dir = `/proc/${pid}`;
  try {
    info.comm = readFileSync(`${dir}/comm`, "utf8").replace(/\n$/, "");
  } catch {
    missing.push("comm");
  }
  try {
    const raw = readFileSync(`${dir}/cmdline`, "utf8");
    info.cmdline = raw === "" ? [] : raw.replace(/\0$/, "").split("\0");
  } catch {
    missing.push("cmdline");
  }
  try {
    info.exe = readlinkSync(`${dir}/exe`);
  } catch {
    missing.push("exe");
  }
  try {
    const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`${dir}/status`, "utf8"));
    if (m) {
      info.uid = Number(m[1]);
      info.user = userName(info.uid);
    } else missing.push("uid");
  } catch {
    missing.push("uid");
  }
  if (missing.length) info.missing = missing;
  return info;
}
