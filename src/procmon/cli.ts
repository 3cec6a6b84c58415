/**
 * procmon: a live process monitor on the process-events connector (forkstat-class), text or NDJSON.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { wallClock } from "../proc/clock.ts";
import { eventMask, PROC_EVENT_NAMES, type ProcEventName } from "../proc/filter.ts";
import { ProcMonitor, type ProcMonitorItem } from "../proc/monitor.ts";
import { type Context, TEXT_HEADER, toJson, toText } from "./format.ts";
import type { ProcessInfo } from "../proc/enrich.ts";

/** The usage text. */
export const HELP = `procmon: show process events (fork, exec, exit, uid, gid, sid, ptrace, comm, coredump) live.

Usage: procmon [options]

  -e, --events LIST    comma-separated events to show (default: all):
                       ${PROC_EVENT_NAMES.join(", ")}
                       ("nonzero-exit" = only exits with a non-zero status)
  -D, --duration SEC   stop after SEC seconds
  -S, --stats          print a summary at exit: counts per event and the busiest processes
  -p, --pid PID        only PID and its descendants (seen being forked while running)
      --json           one JSON object per line (NDJSON), stable field names
      --tree           indent processes under their parents
      --no-enrich      do not read comm/cmdline/user from /proc
  -h, --help           this text

Needs root (or Linux >= 6.6 for an unprivileged subscription) and, on Deno, -A (Deno guards /proc/PID,
read for the comm/cmdline/user columns, behind --allow-all; with --no-enrich, --allow-ffi is enough).
Lost events are always shown ("lost" rows), never dropped silently. Exit status: 0, 1 on error.`;

interface Options {
  events?: ProcEventName[];
  durationMs?: number;
  stats: boolean;
  pid?: number;
  json: boolean;
  tree: boolean;
  enrich: boolean;
}

/** Parses the command line; throws a TypeError with a usable message on bad input. */
export function parseOptions(args: string[]): Options | "help" {
  const { values } = parseArgs({
    args,
    options: {
      events: { type: "string", short: "e" },
      duration: { type: "string", short: "D" },
      stats: { type: "boolean", short: "S", default: false },
      pid: { type: "string", short: "p" },
      json: { type: "boolean", default: false },
      tree: { type: "boolean", default: false },
      "no-enrich": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const options: Options = {
    stats: values.stats!,
    json: values.json!,
    tree: values.tree!,
    enrich: !values["no-enrich"],
  };
  if (values.events !== undefined && values.events !== "all") {
    options.events = values.events.split(",").map((s) => s.trim()).filter(Boolean) as ProcEventName[];
    eventMask(options.events);
  }
  if (values.duration !== undefined) {
    const seconds = Number(values.duration);
    if (!(seconds > 0)) throw new TypeError(`--duration wants a positive number of seconds, got "${values.duration}"`);
    options.durationMs = seconds * 1000;
  }
  if (values.pid !== undefined) {
    const pid = Number(values.pid);
    if (!Number.isInteger(pid) || pid <= 0) throw new TypeError(`--pid wants a process id, got "${values.pid}"`);
    options.pid = pid;
  }
  return options;
}

/** Per-run bookkeeping: parents, fork times, names, counts. */
class Tracker {
  readonly parent = new Map<number, number>();
  readonly forkedAt = new Map<number, bigint>();
  readonly info = new Map<number, ProcessInfo>();
  readonly counts = new Map<string, number>();
  readonly busiest = new Map<string, number>();

  constructor(readonly root?: number) {}

  depth(tgid: number): number {
    let depth = 0;
    for (let p = this.parent.get(tgid); p !== undefined && depth < 64; p = this.parent.get(p)) depth++;
    return depth;
  }

  inScope(tgid: number): boolean {
    if (this.root === undefined) return true;
    for (let p: number | undefined = tgid, n = 0; p !== undefined && n < 256; p = this.parent.get(p), n++) {
      if (p === this.root) return true;
    }
    return false;
  }

  /** Updates the bookkeeping; returns the context to format with, or null when out of scope. */
  see(item: ProcMonitorItem, timeMs: number): Context | null {
    this.counts.set(item.type, (this.counts.get(item.type) ?? 0) + 1);
    if (item.type === "lost" || item.type === "unknown") return { timeMs, depth: 0 };
    const tgid = item.type === "fork" ? item.childTgid : item.tgid;
    if (item.type === "fork" && item.childPid === item.childTgid) {
      this.parent.set(tgid, item.parentTgid);
      this.forkedAt.set(tgid, item.timestampNs);
    }
    if (!this.inScope(tgid)) return null;
    if (item.process) this.info.set(tgid, item.process);
    const process = item.process ?? this.info.get(tgid);
    const ctx: Context = { timeMs, depth: this.depth(tgid), process };
    if (item.type === "exit" && item.pid === item.tgid) {
      const start = this.forkedAt.get(tgid);
      if (start !== undefined) ctx.durationNs = item.timestampNs - start;
      this.forkedAt.delete(tgid);
      this.info.delete(tgid);
      this.parent.delete(tgid);
    }
    const name = process?.comm ?? "?";
    this.busiest.set(name, (this.busiest.get(name) ?? 0) + 1);
    return ctx;
  }

  summary(): { events: Record<string, number>; busiest: { process: string; events: number }[] } {
    const busiest = [...this.busiest.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10)
      .map(([process, events]) => ({ process, events }));
    return { events: Object.fromEntries([...this.counts.entries()].sort()), busiest };
  }
}

/** Buffers output lines and writes them in chunks, so a fork storm is not one write per event. */
class Output {
  #lines: string[] = [];
  #scheduled = false;

  line(text: string): void {
    this.#lines.push(text);
    if (this.#lines.length >= 512) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setTimeout(() => this.flush(), 0);
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    process.stdout.write(this.#lines.join("\n") + "\n");
    this.#lines = [];
  }
}

/**
 * Runs procmon with `args` (without the program name) until the duration ends or SIGINT/SIGTERM.
 *
 * @returns the exit status
 *
 * @example Ten seconds of exec/exit events as NDJSON
 * ```ts ignore
 * import { main } from "@cnlink/connector/procmon";
 *
 * const status = await main(["-e", "exec,exit", "--json", "-D", "10"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let options: Options | "help";
  try {
    options = parseOptions(args);
  } catch (err) {
    console.error(`procmon: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (options === "help") {
    console.log(HELP);
    return 0;
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const timer = options.durationMs !== undefined ? setTimeout(onSignal, options.durationMs) : undefined;
  const out = new Output();
  const tracker = new Tracker(options.pid);
  const colour = !options.json && process.stdout.isTTY === true && !process.env.NO_COLOR;
  let monitor: ProcMonitor | undefined;
  try {
    const toEpochMs = await wallClock();
    monitor = await ProcMonitor.open({ events: options.events, enrich: options.enrich });
    const closed = monitor;
    stop.signal.addEventListener("abort", () => void closed.close(), { once: true });
    if (stop.signal.aborted) await monitor.close();
    if (!options.json) out.line(TEXT_HEADER);
    for await (const item of monitor) {
      const timeMs = "timestampNs" in item ? toEpochMs(item.timestampNs) : Date.now();
      const ctx = tracker.see(item, timeMs);
      if (!ctx) continue;
      out.line(options.json ? JSON.stringify(toJson(item, ctx)) : toText(item, ctx, colour, options.tree));
    }
    if (options.stats) printSummary(out, tracker, monitor, options.json);
    out.flush();
    return 0;
  } catch (err) {
    out.flush();
    console.error(`procmon: ${(err as Error).message}`);
    return 1;
  } finally {
    clearTimeout(timer);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await monitor?.close();
  }
}

function printSummary(out: Output, tracker: Tracker, monitor: ProcMonitor, json: boolean): void {
  const summary = { ...tracker.summary(), monitor: monitor.stats, filter: monitor.filterMode };
  if (json) {
    out.line(JSON.stringify({ type: "summary", ...summary }));
    return;
  }
  out.line("");
  out.line("Event      Count");
  for (const [type, count] of Object.entries(summary.events)) out.line(`${type.padEnd(10)} ${count}`);
  out.line("");
  out.line("Events  Process");
  for (const { process, events } of summary.busiest) out.line(`${String(events).padStart(6)}  ${process}`);
  const s = monitor.stats;
  out.line("");
  out.line(
    `lost: ${s.overruns} overrun(s), ${s.seqLost} by sequence gaps; forged rejected: ${s.foreign}; ` +
      `filter: ${monitor.filterMode}`,
  );
}
