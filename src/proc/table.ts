/**
 * A live process table: seeded from a /proc scan, then kept by the event stream, so every event can
 * carry its process and its ancestry, including processes that started before the monitor.
 *
 * What is exact and what is best effort:
 * - exact, from the kernel: who forked whom (the real parent), when (the fork's timestamp), that a
 *   process exec'd, its new name on a `comm` event, its ids on `uid`/`gid` events, its exit;
 * - kept exact where the kernel gives no event: when a process exits, the kernel has already given
 *   its children a new parent (a subreaper or init), so their parents are read again from
 *   /proc/PID/stat then; a fresher read of the parent always wins over an older one;
 * - best effort, from /proc, read as early as possible (at the scan, at fork, at exec, in the
 *   receive loop before the event waits in the queue): command line, executable, name after exec,
 *   user, terminal, cgroup. A process that is gone by then gives `missing` instead of a guess, and a
 *   read that may have seen a later exec of the same pid gives `uncertain` instead of a borrowed
 *   name. A forked child takes its parent's entry (it is a copy of its parent until it execs),
 *   except its terminal, which is not known until read, and its name when a thread forked it (the
 *   thread's name, read from /proc/TGID/task/TID/comm). Exec changes neither the cgroup nor the
 *   user nor the terminal: what /proc no longer has at exec is kept from before. A process moved to
 *   another cgroup (no event says so) is seen there at its next fork or exec, at its exit while it
 *   is still a zombie, and at a reconciling scan.
 *
 * Size: an entry leaves at its process's exit event. After a loss (overrun or sequence gap) exits
 * may be missing, so the table is reconciled with a /proc scan (`sweep()`, which `ProcMonitor`
 * runs every second while there is something to check): a process no longer in
 * /proc at one sweep leaves at the next unless an event of it came in between. Zombies found by
 * a scan (their exit came before the monitor, or before the scan: the kernel sends the exit event
 * before the parent reaps) leave at the first sweep after they are reaped, and a process a
 * reconciling scan added is checked again at the next sweep (it may have been exiting then). So
 * the table holds the live processes plus, for at most two sweeps (about 2 s) after a loss or a
 * reaping, those that ended unseen.
 *
 * @module
 */
import type { ProcEvent } from "./event.ts";
import type { FileReader } from "../ffi/files.ts";
import type { CgroupInfo } from "./cgroup.ts";
import {
  listPids,
  type ProcessInfo,
  type ProcReader,
  procReader,
  type ProcStat,
  type ReadOptions,
  userName,
  withheldByExec,
} from "./enrich.ts";

/**
 * How long before an exec event's timestamp a /proc read may already see the new program: the kernel
 * stamps the event after exec has switched memory and name, and the exec'ing task can be preempted in
 * between. A read of the previous program that ended within this window is withheld (`uncertain`).
 */
const EXEC_TAIL_NS = 50_000_000n;

/** How long the last exec read of a process that ended unseen is kept for a late exec event of it. */
const EXEC_KEPT_NS = 10_000_000_000n;

/** How often (ms) `ProcMonitor` sweeps the table while a loss or a reaping is to be checked. */
export const SWEEP_MS = 1000;

/**
 * How far apart two start times of one process may be: a fork's timestamp against /proc's start
 * time (10 ms ticks, rounded down). A pid is not reused that fast.
 */
const SAME_START_NS = 50_000_000n;

const IDS_KNOWN: ReadOptions = { ids: false };
const ALL_MISSING: NonNullable<ProcessInfo["missing"]> = ["comm", "cmdline", "exe", "uid", "stat", "cgroup"];

/** Options of a {@linkcode ProcessTable}. */
export interface ProcessTableOptions {
  /**
   * CLOCK_BOOTTIME minus CLOCK_MONOTONIC now, in nanoseconds (`bootOffsetClock()`), to convert
   * /proc's start times (which count from boot, suspended time included) to the clock of the
   * events; read at each /proc read. Without it, a process whose fork was not seen has no `startNs`
   * (rather than a guess).
   */
  bootOffsetNs?: () => bigint;
  /**
   * How /proc (and /etc/passwd) is read, the pid listing included; default on libc once any
   * `open()` has loaded it, else the runtime's fs module (`readProcessInfo` says more).
   */
  files?: FileReader;
  /**
   * Reads one process (default: {@linkcode readProcessInfo} with `files`); tests give a fake. The
   * table leaves the ids out (`options.ids` false) at the exec of a process whose ids it knows.
   */
  read?: (pid: number, bootToMonotonicNs: bigint | undefined, options?: ReadOptions) => ProcessInfo;
  /** The other /proc reads (parents, threads' names, cgroups); default on `files`. Tests give fakes. */
  reader?: Partial<ProcReader>;
  /**
   * CLOCK_MONOTONIC now, in nanoseconds (`monotonicClock()`, the clock of the events), to tell a
   * /proc read from a later exec of the same process by the kernel's timestamps. Without it only a
   * later exec in the same received batch counts.
   */
  monotonicNs?: () => bigint;
  /** The processes to scan at the start (default: every numeric entry of /proc). */
  list?: () => number[];
}

const gone = (info: ProcessInfo) => info.missing?.includes("stat") === true && info.missing.includes("comm");

const sameStart = (a: bigint | undefined, b: bigint | undefined) =>
  a === undefined || b === undefined || (a > b ? a - b : b - a) <= SAME_START_NS;

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
  // Children by parent pid, to give them their new parent when it exits.
  readonly #children = new Map<number, Set<number>>();
  readonly #reader: ProcReader;
  readonly #offset: (() => bigint) | undefined;
  readonly #list: () => number[];
  readonly #files: FileReader | undefined;
  readonly #now: (() => bigint) | undefined;
  // The snapshot of each process's last exec, with the received batch it came in and when its
  // /proc read ended: a later exec of the same pid in that batch, or stamped before that, may have
  // been what the read saw.
  readonly #lastExec = new Map<number, { snapshot: ProcessInfo; batch: number; readNs?: bigint }>();
  #batch = 0;
  // Zombies seen by a scan: no exit event will say when they are reaped.
  readonly #zombies = new Set<number>();
  // Added by a reconciling scan: checked again at the next sweep (they may have been exiting).
  readonly #fresh = new Set<number>();
  // Not in /proc at the last reconciling scan: they leave at the next sweep unless seen again.
  readonly #absent = new Set<number>();
  #reconcile = false;

  /**
   * Builds an empty table; `scan()` fills it from /proc.
   *
   * @param options clock offset, file reader and process lister
   */
  constructor(options: ProcessTableOptions = {}) {
    this.#offset = options.bootOffsetNs;
    this.#files = options.files;
    this.#now = options.monotonicNs;
    const reader = { ...procReader(options.files), ...options.reader };
    if (options.read) reader.info = options.read;
    this.#reader = reader;
    this.#list = options.list ?? (() => listPids(options.files));
  }

  #read(pid: number): ProcessInfo {
    return this.#reader.info(pid, this.#offset?.());
  }

  #stat(pid: number): ProcStat | undefined {
    return this.#reader.stat(pid, this.#offset?.());
  }

  /** Reads every process in /proc into the table (entries already known are refreshed). */
  scan(): void {
    for (const pid of this.#list()) {
      const info = this.#read(pid);
      if (gone(info)) continue;
      this.#put(info);
      // A zombie has no executable left: only then is its state worth a read.
      if (info.missing?.includes("exe") && this.#stat(pid)?.state === "Z") this.#zombies.add(pid);
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
   * The chain of processes from the oldest known ancestor down to the process itself (`[systemd,
   * sshd, bash, make, cc]`), as far as the table knows them. The process is given by its pid, or by
   * an entry (e.g. an exit event's `process`, whose entry has left the table). A parent that
   * started after its child is another process that reuses the pid: the chain stops below it.
   */
  ancestry(of: number | ProcessInfo): ProcessInfo[] {
    const chain: ProcessInfo[] = [];
    const seen = new Set<number>();
    let entry = typeof of === "number" ? this.#entries.get(of) : of;
    while (entry && !seen.has(entry.pid)) {
      seen.add(entry.pid);
      chain.push(entry);
      const ppid = entry.ppid;
      const parent = ppid !== undefined && ppid > 0 ? this.#entries.get(ppid) : undefined;
      if (
        parent?.startNs !== undefined && entry.startNs !== undefined && parent.startNs > entry.startNs + SAME_START_NS
      ) {
        break;
      }
      entry = parent;
    }
    return chain.reverse();
  }

  /**
   * Says that the events received so far have gone to the consumer: a later exec no longer counts
   * as "in the same batch" as the ones before. `ProcMonitor` calls it when its receive loop pauses.
   */
  settle(): void {
    this.#batch++;
  }

  /** Says that events were lost: the next `sweep()` reconciles the table with a /proc scan. */
  lost(): void {
    this.#reconcile = true;
  }

  /** Whether `sweep()` has anything to do (a loss to reconcile, zombies or absent processes to check). */
  get sweepDue(): boolean {
    return this.#reconcile || this.#zombies.size > 0 || this.#absent.size > 0 || this.#fresh.size > 0;
  }

  /**
   * Removes what has ended unseen: processes found absent from /proc by the previous reconciling
   * scan (and not seen since), seeded zombies that were reaped; after a loss, scans /proc to find
   * the processes that are gone (they leave at the next sweep, in case their exit is still on its
   * way), the ones that started unseen, and the parents that changed.
   */
  sweep(): void {
    // A process that ended unseen leaves, but what was read at its last exec stays a while: an exec
    // of that pid still on its way (a backlog) must still withhold that read if it saw the new program.
    for (const pid of [...this.#absent]) this.#remove(pid, true);
    // What the last reconciling scan added may have been exiting then, its exit event taken before
    // the scan (the kernel sends it before the task is a zombie, and /proc still lists it): gone now,
    // it leaves; a zombie now leaves once reaped; otherwise its exit event is still to come.
    for (const pid of [...this.#fresh]) {
      this.#fresh.delete(pid);
      const entry = this.#entries.get(pid);
      const stat = entry && this.#stat(pid);
      if (!entry) continue;
      if (!stat || !sameStart(entry.startNs, stat.startNs)) this.#remove(pid, true);
      else if (stat.state === "Z") this.#zombies.add(pid);
    }
    for (const pid of [...this.#zombies]) {
      const entry = this.#entries.get(pid);
      const stat = entry && this.#stat(pid);
      if (!stat || !sameStart(entry!.startNs, stat.startNs)) this.#remove(pid, true);
    }
    const now = this.#now?.();
    if (now !== undefined) {
      for (const [pid, last] of this.#lastExec) {
        if (!this.#entries.has(pid) && (last.readNs === undefined || last.readNs < now - EXEC_KEPT_NS)) {
          this.#lastExec.delete(pid);
        }
      }
    } else for (const pid of this.#lastExec.keys()) if (!this.#entries.has(pid)) this.#lastExec.delete(pid);
    if (!this.#reconcile) return;
    this.#reconcile = false;
    const listed = new Set(this.#list());
    for (const pid of this.#entries.keys()) if (!listed.has(pid)) this.#absent.add(pid);
    for (const pid of listed) {
      const entry = this.#entries.get(pid);
      const stat = entry && this.#stat(pid);
      if (entry && stat && sameStart(entry.startNs, stat.startNs)) {
        this.#parent(entry, stat.ppid);
        // Its exit was lost: it leaves once reaped.
        if (stat.state === "Z") this.#zombies.add(pid);
        continue;
      }
      // Unknown, or the pid now belongs to another process.
      const info = this.#read(pid);
      if (!gone(info)) {
        this.#put(info);
        // Unknown here, it may have exited already (a zombie, or still on its way out: its exit was
        // lost, or taken before this scan, since the exit event comes before the parent reaps). No
        // event would remove it then: the next sweep checks it again, and a zombie leaves once
        // reaped. (A fork storm whose shell reaps at the end left 805 of 907 entries of reaped
        // processes for good on Bun.)
        this.#fresh.add(pid);
      } else if (entry) this.#absent.add(pid);
    }
  }

  /** The entry of `pid`, read from /proc now if unknown (a process that started unseen). */
  #known(pid: number): ProcessInfo | undefined {
    let entry = this.#entries.get(pid);
    if (!entry) {
      entry = this.#read(pid);
      if (gone(entry)) return undefined;
      this.#put(entry);
    }
    return entry;
  }

  #put(entry: ProcessInfo): void {
    const old = this.#entries.get(entry.pid);
    if (old) this.#unlink(old);
    this.#entries.set(entry.pid, entry);
    this.#link(entry);
    this.#absent.delete(entry.pid);
  }

  #parent(entry: ProcessInfo, ppid: number): void {
    if (entry.ppid === ppid) return;
    this.#unlink(entry);
    entry.ppid = ppid;
    this.#link(entry);
  }

  #link(entry: ProcessInfo): void {
    if (entry.ppid === undefined) return;
    let children = this.#children.get(entry.ppid);
    if (!children) this.#children.set(entry.ppid, children = new Set());
    children.add(entry.pid);
  }

  #unlink(entry: ProcessInfo): void {
    if (entry.ppid === undefined) return;
    const children = this.#children.get(entry.ppid);
    children?.delete(entry.pid);
    if (children?.size === 0) this.#children.delete(entry.ppid);
  }

  #remove(pid: number, keepExec = false): void {
    const entry = this.#entries.get(pid);
    if (entry) this.#unlink(entry);
    this.#entries.delete(pid);
    if (!keepExec) this.#lastExec.delete(pid);
    this.#zombies.delete(pid);
    this.#absent.delete(pid);
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
        // The parent may have moved to another cgroup since it was read (no event says so); the
        // child starts in the parent's cgroup of now. One small read, of a process that just forked
        // (with the receipt worker, made by it once per batch for all the forks of that parent).
        if (parent) moveTo(parent, this.#reader.cgroup(event.parentTgid));
        const child: ProcessInfo = parent ? forkedFrom(parent) : this.#read(event.childTgid);
        if (parent) {
          // The child has the name of the thread that forked it, which may not be the leader's.
          if (event.parentPid !== event.parentTgid) {
            const comm = this.#reader.taskComm(event.parentTgid, event.parentPid);
            if (comm !== undefined) child.comm = comm;
            else {
              delete child.comm;
              child.missing = [...new Set([...child.missing ?? [], "comm" as const])];
            }
          }
        }
        child.pid = event.childTgid;
        child.ppid = event.parentTgid;
        child.startNs = event.timestampNs;
        this.#put(child);
        return snapshot(child);
      }
      case "exec":
        return this.#exec(event.tgid, event.timestampNs);
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
        const entry = this.#entries.get(event.tgid);
        if (event.pid !== event.tgid) return snapshot(entry);
        // It may have moved to another cgroup since it was read (a zombie still shows its own).
        if (entry) moveTo(entry, this.#reader.cgroup(event.tgid));
        const exited = snapshot(entry);
        const children = this.#children.get(event.tgid);
        this.#remove(event.tgid);
        this.#children.delete(event.tgid);
        // The kernel gave its children their new parent (a subreaper, or init) before it sent the exit.
        for (const pid of children ?? []) {
          const child = this.#entries.get(pid);
          const stat = child && this.#stat(pid);
          if (!child || !stat) continue; // gone too: its exit event, or the next sweep, says so
          if (sameStart(child.startNs, stat.startNs)) this.#parent(child, stat.ppid);
          else this.#remove(pid); // ended unseen; the pid is another process's now
        }
        return exited;
      }
      case "ack":
      case "unknown":
        return undefined;
      default:
        return snapshot(this.#known(event.tgid));
    }
  }

  #exec(tgid: number, timestampNs: bigint): ProcessInfo {
    const before = this.#entries.get(tgid);
    // The real ids of a process seen before: exec does not change them, the kernel reports every
    // other change (uid/gid events), so /proc/PID/status, the costliest file, is not read for them.
    const idsKnown = before?.uid !== undefined;
    let now = this.#reader.info(tgid, this.#offset?.(), idsKnown ? IDS_KNOWN : undefined);
    if (idsKnown && now.uid === undefined && !now.missing?.includes("uid")) {
      now.missing = [...now.missing ?? [], "uid"]; // taken from `before` below
    }
    const readNs = this.#now?.();
    // A start time that does not match is another process with that pid: nothing read is ours.
    if (before && !sameStart(before.startNs, now.startNs)) now = { pid: tgid, missing: [...ALL_MISSING] };
    // A new program: what could not be read of it is unknown, not the old program's. What exec does
    // not change (parent, start, user, terminal, cgroup) is kept when /proc no longer has it; the
    // fork's timestamp is more exact than /proc's start time, /proc's parent fresher than the fork's.
    if (before) {
      if (before.startNs !== undefined) now.startNs = before.startNs;
      const kept = (field: NonNullable<ProcessInfo["missing"]>[number], names: (keyof ProcessInfo)[]) => {
        if (!now.missing?.includes(field)) return;
        if (names.every((name) => before[name] === undefined)) return;
        for (const name of names) {
          if (before[name] !== undefined) (now as unknown as Record<string, unknown>)[name] = before[name];
        }
        now.missing = now.missing.filter((m) => m !== field);
      };
      if (now.ppid === undefined && before.ppid !== undefined) now.ppid = before.ppid;
      if (now.missing?.includes("stat") && before.tty !== undefined) now.tty = before.tty;
      kept("uid", ["uid", "user", "gid"]);
      kept("cgroup", ["cgroup", "container", "unit"]);
      if (now.missing?.length === 0) {
        // Left out rather than deleted (see forkedFrom()).
        const { missing: _missing, ...rest } = now;
        now = rest;
      }
    }
    // The read may have seen this exec instead of the previous one: withhold what it gave that one.
    // The kernel stamps an exec event at the end of exec, after the new program's memory (its argv)
    // and name are in place, so a read that ended a little before this stamp may already have seen
    // the new program: EXEC_TAIL_NS of grace (seen under a parallel fork load on 6.18: a read ending
    // before the stamp that carried the next program).
    const previous = this.#lastExec.get(tgid);
    if (
      previous &&
      (previous.batch === this.#batch ||
        (previous.readNs !== undefined && timestampNs <= previous.readNs + EXEC_TAIL_NS))
    ) {
      withheldByExec(previous.snapshot);
    }
    this.#put(now);
    const result = snapshot(now)!;
    this.#lastExec.set(tgid, { snapshot: result, batch: this.#batch, readNs });
    return result;
  }
}

/** Sets the cgroup read now (nothing when it could not be read). */
function moveTo(entry: ProcessInfo, cgroup: CgroupInfo | undefined): void {
  if (!cgroup || cgroup.cgroup === entry.cgroup) return;
  delete entry.container;
  delete entry.unit;
  Object.assign(entry, cgroup);
  if (entry.missing?.includes("cgroup")) {
    entry.missing = entry.missing.filter((m) => m !== "cgroup");
    if (entry.missing.length === 0) delete entry.missing;
  }
}

/**
 * A forked child's entry: a copy of its parent's without its terminal and its uncertain fields. Left
 * out, not deleted: V8 turns an object a property is deleted from into a dictionary, and copying
 * one (snapshot(), at every event of the process) took 50 times as long (1.5 µs) on Deno 2.9.
 */
function forkedFrom(parent: ProcessInfo): ProcessInfo {
  const { tty: _tty, uncertain: _uncertain, ...child } = parent;
  return ownLists(child);
}

function snapshot(entry: ProcessInfo | undefined): ProcessInfo | undefined {
  return entry && ownLists({ ...entry });
}

/** Gives `copy`, a fresh copy of an entry, lists of its own (the entry's are not shared with it). */
function ownLists(copy: ProcessInfo): ProcessInfo {
  if (copy.cmdline) copy.cmdline = [...copy.cmdline];
  if (copy.missing) copy.missing = [...copy.missing];
  if (copy.uncertain) copy.uncertain = [...copy.uncertain];
  return copy;
}
