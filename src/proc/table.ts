/**
 * A live process table: seeded from a /proc scan, then kept by the event stream, so every event can
 * carry its process and its ancestry, including processes that started before the monitor.
 *
 * What is exact and what is best effort:
 * - exact, from the kernel: who forked whom (the real parent), when (the fork's timestamp), that a
 *   process exec'd, its new name on a `comm` event, its ids on `uid`/`gid` events, its exit;
 * - best effort, from /proc, read as early as possible (at the scan, at fork, at exec, in the
 *   receive loop before the event waits in the queue): command line, executable, name after exec,
 *   user, terminal, cgroup. A process that is gone by then gives `missing` instead of a guess. A
 *   forked child takes its parent's entry (it is a copy of its parent until it execs), except its
 *   terminal, which is not known until read.
 *
 * @module
 */
import { readdirSync } from "node:fs";
import type { ProcEvent } from "./event.ts";
import type { FileReader } from "../ffi/files.ts";
import { type ProcessInfo, readProcessInfo, userName } from "./enrich.ts";

/** Options of a {@linkcode ProcessTable}. */
export interface ProcessTableOptions {
  /**
   * CLOCK_BOOTTIME minus CLOCK_MONOTONIC now, in nanoseconds (`bootOffsetClock()`), to convert
   * /proc's start times (which count from boot, suspended time included) to the clock of the
   * events; read at each /proc read. Without it, a process whose fork was not seen has no `startNs`
   * (rather than a guess).
   */
  bootOffsetNs?: () => bigint;
  /** How /proc is read (the monitor gives one on libc); default the runtime's fs module. */
  files?: FileReader;
  /** Reads one process (default: {@linkcode readProcessInfo} with `files`); tests give a fake. */
  read?: (pid: number, bootToMonotonicNs: bigint | undefined) => ProcessInfo;
  /** The processes to scan at the start (default: every numeric entry of /proc). */
  list?: () => number[];
}

function listProc(): number[] {
  return readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).map(Number);
}

/**
 * The processes of the host as the monitor sees them. `ProcMonitor` keeps one when opened with
 * `enrich: true` (`monitor.processes`); each event's `process` is a snapshot of its entry.
 *
 * @example The ancestry of every exec
 * ```ts ignore
 * import { ProcMonitor } from "@cnlink/connector/proc";
 *
 * await using monitor = await ProcMonitor.open({ events: ["exec"], enrich: true });
 * for await (const e of monitor) {
 *   if (e.type !== "exec") continue;
 *   const chain = monitor.processes!.ancestry(e.tgid).map((p) => p.comm).join(" → ");
 *   console.log(chain); // systemd → sshd → bash → make → cc
 * }
 * ```
 */
export class ProcessTable implements Iterable<ProcessInfo> {
  readonly #entries = new Map<number, ProcessInfo>();
  readonly #read: (pid: number) => ProcessInfo;
  readonly #list: () => number[];
  readonly #files: FileReader | undefined;

  /**
   * Builds an empty table; `scan()` fills it from /proc.
   *
   * @param options clock offset, file reader and process lister
   */
  constructor(options: ProcessTableOptions = {}) {
    this.#files = options.files;
    const read = options.read ??
      ((pid: number, boot: bigint | undefined) => readProcessInfo(pid, boot, options.files));
    const offset = options.bootOffsetNs;
    this.#read = (pid) => read(pid, offset?.());
    this.#list = options.list ?? listProc;
  }

  /** Reads every process in /proc into the table (entries already known are refreshed). */
  scan(): void {
    for (const pid of this.#list()) {
      const info = this.#read(pid);
      if (info.missing?.includes("stat") && info.missing.includes("comm")) continue; // gone already
      this.#entries.set(pid, info);
    }
  }

  /** How many processes are known. */
  get size(): number {
    return this.#entries.size;
  }

  /** The entry of process `pid`, if known. */
  get(pid: number): ProcessInfo | undefined {
    return this.#entries.get(pid);
  }

  /** Every known process. */
  [Symbol.iterator](): Iterator<ProcessInfo> {
    return this.#entries.values();
  }

  /**
   * The chain of processes from the oldest known ancestor down to `pid` itself (`[systemd, sshd,
   * bash, make, cc]`), as far as the table knows them.
   */
  ancestry(pid: number): ProcessInfo[] {
    const chain: ProcessInfo[] = [];
    const seen = new Set<number>();
    for (let p: number | undefined = pid; p !== undefined && p > 0 && !seen.has(p);) {
      seen.add(p);
      const entry = this.#entries.get(p);
      if (!entry) break;
      chain.push(entry);
      p = entry.ppid;
    }
    return chain.reverse();
  }

  /** The entry of `pid`, read from /proc now if unknown (a process that started unseen). */
  #known(pid: number): ProcessInfo | undefined {
    let entry = this.#entries.get(pid);
    if (!entry) {
      entry = this.#read(pid);
      if (entry.missing?.includes("stat") && entry.missing.includes("comm")) return undefined;
      this.#entries.set(pid, entry);
    }
    return entry;
  }

  /**
   * Updates the table from `event` (as early as possible: in the receive loop, before the event is
   * queued) and returns a snapshot of the entry of the process it is about, or undefined.
   * An exiting process leaves the table; its snapshot goes with its exit event.
   */
  apply(event: ProcEvent): ProcessInfo | undefined {
    switch (event.type) {
      case "fork": {
        if (event.childPid !== event.childTgid) return snapshot(this.#known(event.childTgid));
        // A forked child is a copy of its parent (same program, arguments, user, cgroup) until it
        // execs: take the parent's entry instead of reading /proc, so the reader gets to the exec
        // that follows sooner, while that process still exists.
        const parent = this.#entries.get(event.parentTgid);
        const child: ProcessInfo = parent ? snapshot(parent)! : this.#read(event.childTgid);
        child.pid = event.childTgid;
        child.ppid = event.parentTgid;
        child.startNs = event.timestampNs;
        delete child.tty;
        this.#entries.set(event.childTgid, child);
        return snapshot(child);
      }
      case "exec": {
        const before = this.#entries.get(event.tgid);
        const now = this.#read(event.tgid);
        // A new program: what could not be read is unknown, not the old program's. What the kernel
        // told us (parent, start) stays.
        if (before) {
          now.ppid = before.ppid ?? now.ppid;
          now.startNs = before.startNs ?? now.startNs;
        }
        this.#entries.set(event.tgid, now);
        return snapshot(now);
      }
      case "comm": {
        const entry = this.#known(event.tgid);
        if (entry && event.pid === event.tgid) entry.comm = event.comm;
        return snapshot(entry);
      }
      case "uid": {
        const entry = this.#known(event.tgid);
        if (entry) {
          entry.uid = event.ruid;
          entry.user = userName(event.ruid, this.#files);
        }
        return snapshot(entry);
      }
      case "gid": {
        const entry = this.#known(event.tgid);
        if (entry) entry.gid = event.rgid;
        return snapshot(entry);
      }
      case "exit": {
        const entry = snapshot(this.#entries.get(event.tgid));
        if (event.pid === event.tgid) this.#entries.delete(event.tgid);
        return entry;
      }
      case "ack":
      case "unknown":
        return undefined;
      default:
        return snapshot(this.#known(event.tgid));
    }
  }
}

function snapshot(entry: ProcessInfo | undefined): ProcessInfo | undefined {
  if (!entry) return undefined;
  const copy = { ...entry };
  if (entry.cmdline) copy.cmdline = [...entry.cmdline];
  if (entry.missing) copy.missing = [...entry.missing];
  return copy;
}
