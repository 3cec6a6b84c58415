/**
 * procmon: a live process monitor on the process-events connector (forkstat-class), text or NDJSON.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { wallClock } from "../proc/clock.ts";
import { eventMask, passes, PROC_EVENT_NAMES, type ProcEventName } from "../proc/filter.ts";
import { ProcMonitor, type ProcMonitorItem } from "../proc/monitor.ts";
import { escapeText, safeJson } from "../proc/text.ts";
import type { ProcessInfo } from "../proc/enrich.ts";
import { type Context, type NameStyle, statsRow, textHeader, type TextOptions, toJson, toText } from "./format.ts";
import { parseNumberFlag } from "../args.ts";
import { hostname } from "node:os";
import { defaultFileReader } from "../ffi/files.ts";
import { loadLibc } from "../ffi/load.ts";
import { toEcs, toOtelLogRecord } from "../proc/schema.ts";
import type { ProcEventShipper } from "../nats/events.ts";

/** The usage text. */
export const HELP = `procmon: show process events (fork, exec, exit, uid, gid, sid, ptrace, comm, coredump) live.

Usage: procmon [options]

  -e, --events LIST      comma-separated events to show (default: all):
                         ${PROC_EVENT_NAMES.join(", ")}
                         ("nonzero-exit" = only exits with a non-zero status)
  -D, --duration SEC     stop after SEC seconds
  -S, --stats            at exit, a table of events per process and type, with totals
  -q, --quiet            no line per event (with -S: only the table)
  -x, --extra            UID and TTY columns, and the whole cgroup path
  -c, --comm             name processes by their task name (comm), not their command line
  -d, --strip-dir        strip the directory from the program's path
  -s, --short            only the program's name, no arguments
  -l, --line-buffered    write each line as it comes (default: each batch of events at once)
  -p, --pid PID          only PID and its descendants
      --cgroup PREFIX    only processes whose cgroup v2 path starts with PREFIX (e.g. /system.slice/docker-)
      --json             one JSON object per line (NDJSON), stable field names (= --format ndjson)
      --format FORMAT    text (default), ndjson, ecs (Elastic Common Schema 8.11 documents) or otel
                         (OpenTelemetry log records, semantic conventions 1.37.0), one per line
      --command-line M   command lines in ecs/otel documents: none, args, args+line
                         (default: args+line for ecs; none for otel, as its conventions advise)
      --tree             indent processes under their parents
      --no-enrich        do not read /proc (no names, users, containers; faster under storms)
  -h, --help             this text

Shipping to NATS JetStream (every event acknowledged by the stream, or counted as dropped):
      --nats URL[,URL]   publish each event to procmon.<host>.<type> (a message id per event: a
                         resend is never stored twice); the document is --format's (default ecs)
      --host NAME        host.name in documents and the subject's host token (default: hostname;
                         characters other than letters, digits, - and _ become _ in the subject)
      --stream NAME      the stream, created if missing (default PROCMON)
      --max-age SEC      retention of a created stream: drop messages older than SEC (default: none)
      --replicas N       replicas of a created stream (default 1; 3 on a three-node cluster)
      --buffer N         events held in memory while the server is unreachable (default 100000)
      --spool DIR        then spool them to DIR (kept across restarts), up to --spool-max
      --spool-max MB     the spool's bound in MiB (default 256); past it events are dropped, counted
      Counts (accepted, acked, duplicates, dropped, left in the spool) are printed at exit on stderr.

Example: the exits with a non-zero status of everything in docker containers, for a minute:
  procmon -e nonzero-exit --cgroup /system.slice/docker- -D 60

Columns: time, event, pid, details (wait status, ids, tracer, new name), start-to-exit duration, user,
container (runtime:id) or systemd unit, and the process (its command line; [name] when it has none,
<gone> when it ended before it could be read). Text a process chose (arguments, names, cgroups, units,
users) is escaped: control characters show as \\n, \\x1b, bidi and other format characters as \\u{202e},
bytes that are not UTF-8 as \\xff, so nothing it prints can act on the terminal. Command lines are read up
to 64 KiB (longer ones end with …[truncated]). --json keeps the exact bytes: a string, or {"base64": ...}
when they are not UTF-8.
Needs root (CAP_NET_ADMIN; mainline Linux >= 6.6 also lets any user subscribe, some kernel builds
do not) and, on Deno, --allow-ffi (/proc is read through libc). Lost events are always shown ("lost" rows), never dropped silently.
Exit status: 0 (also when the reader of the output goes away, as in procmon | head), 1 on error,
2 on bad options.`;

/** The parsed command line. */
export interface Options {
  events?: ProcEventName[];
  durationMs?: number;
  stats: boolean;
  quiet: boolean;
  extra: boolean;
  names: NameStyle;
  lineBuffered: boolean;
  pid?: number;
  cgroup?: string;
  json: boolean;
  tree: boolean;
  enrich: boolean;
  /** --format: text, or one JSON document per line in a schema; unset: `json` says (ndjson or text). */
  format?: OutputFormat;
  /** ecs/otel documents: command lines (undefined: each schema's default). */
  commandLine?: "none" | "args" | "args+line";
  /** Shipping to NATS JetStream, when --nats is given. */
  nats?: NatsOptions;
}

/** procmon's per-event formats. */
export type OutputFormat = "text" | "ndjson" | "ecs" | "otel";

/** The --nats options. */
export interface NatsOptions {
  servers: string[];
  host?: string;
  stream?: string;
  maxAgeMs?: number;
  replicas?: number;
  maxBuffered?: number;
  spoolDir?: string;
  spoolMaxBytes?: number;
}

/** Parses the command line; throws a TypeError with a usable message on bad input. */
export function parseOptions(args: string[]): Options | "help" {
  const { values } = parseArgs({
    args,
    options: {
      events: { type: "string", short: "e" },
      duration: { type: "string", short: "D" },
      stats: { type: "boolean", short: "S", default: false },
      quiet: { type: "boolean", short: "q", default: false },
      extra: { type: "boolean", short: "x", default: false },
      comm: { type: "boolean", short: "c", default: false },
      "strip-dir": { type: "boolean", short: "d", default: false },
      short: { type: "boolean", short: "s", default: false },
      "line-buffered": { type: "boolean", short: "l", default: false },
      pid: { type: "string", short: "p" },
      cgroup: { type: "string" },
      json: { type: "boolean", default: false },
      tree: { type: "boolean", default: false },
      "no-enrich": { type: "boolean", default: false },
      format: { type: "string" },
      "command-line": { type: "string" },
      nats: { type: "string" },
      host: { type: "string" },
      stream: { type: "string" },
      "max-age": { type: "string" },
      replicas: { type: "string" },
      buffer: { type: "string" },
      spool: { type: "string" },
      "spool-max": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const styles = [values.comm && "comm", values["strip-dir"] && "strip-dir", values.short && "short"].filter(Boolean);
  if (styles.length > 1) throw new TypeError("-c, -d and -s choose one name style: give one of them");
  const options: Options = {
    stats: values.stats!,
    quiet: values.quiet!,
    extra: values.extra!,
    names: (styles[0] || "cmdline") as NameStyle,
    lineBuffered: values["line-buffered"]!,
    json: values.json!,
    tree: values.tree!,
    enrich: !values["no-enrich"],
  };
  parseFormatOptions(values, options);
  if (values.events !== undefined && values.events !== "all") {
    options.events = values.events.split(",").map((s) => s.trim()).filter(Boolean) as ProcEventName[];
    if (options.events.length === 0) {
      throw new TypeError(`--events wants a comma-separated list of events (or "all"), got "${values.events}"`);
    }
    eventMask(options.events);
  }
  // A timer cannot wait longer than 2^31 - 1 ms: a longer -D would end procmon at once.
  if (values.duration !== undefined) options.durationMs = parseNumberFlag("--duration", values.duration, "seconds");
  if (values.pid !== undefined) options.pid = parseNumberFlag("--pid", values.pid, "pid");
  if (values.cgroup !== undefined) {
    if (!values.cgroup.startsWith("/")) {
      throw new TypeError(`--cgroup wants a path like /system.slice/, got "${values.cgroup}"`);
    }
    if (!options.enrich) throw new TypeError("--cgroup needs /proc: it cannot go with --no-enrich");
    options.cgroup = values.cgroup;
  }
  return options;
}

type Values = Record<string, string | boolean | undefined>;

const positive = (name: string, text: string, integer: boolean): number => {
  const n = Number(text);
  if (!(n > 0) || (integer && !Number.isInteger(n))) {
    throw new TypeError(`--${name} wants a positive ${integer ? "integer" : "number"}, got "${text}"`);
  }
  return n;
};

/** --format, --command-line and the NATS options. */
function parseFormatOptions(values: Values, options: Options): void {
  const format = values.format as string | undefined;
  if (format !== undefined) {
    if (!["text", "ndjson", "ecs", "otel"].includes(format)) {
      throw new TypeError(`--format wants text, ndjson, ecs or otel, got "${format}"`);
    }
    if (values.json && format !== "ndjson") {
      throw new TypeError(`--json is --format ndjson: it cannot go with --format ${format}`);
    }
    options.format = format as OutputFormat;
    options.json = format !== "text";
  }
  const commandLine = values["command-line"] as string | undefined;
  if (commandLine !== undefined) {
    if (!["none", "args", "args+line"].includes(commandLine)) {
      throw new TypeError(`--command-line wants none, args or args+line, got "${commandLine}"`);
    }
    options.commandLine = commandLine as Options["commandLine"];
  }
  const natsOnly = ["host", "stream", "max-age", "replicas", "buffer", "spool", "spool-max"];
  if (values.nats === undefined) {
    const given = natsOnly.find((k) => values[k] !== undefined);
    if (given) throw new TypeError(`--${given} is an option of --nats: give --nats URL too`);
    return;
  }
  const servers = String(values.nats).split(",").map((s) => s.trim()).filter(Boolean);
  for (const s of servers) {
    if (!/^(nats|tls):\/\/[^/\s]+$/.test(s)) throw new TypeError(`--nats wants nats://host:port[,...], got "${s}"`);
  }
  if (servers.length === 0) throw new TypeError("--nats wants nats://host:port[,...]");
  const nats: NatsOptions = { servers };
  if (values.host !== undefined) {
    if (values.host === "") throw new TypeError("--host wants a name");
    nats.host = String(values.host);
  }
  if (values.stream !== undefined) {
    if (!/^[A-Za-z0-9_-]+$/.test(String(values.stream))) {
      throw new TypeError(`--stream wants a name of letters, digits, - and _, got "${values.stream}"`);
    }
    nats.stream = String(values.stream);
  }
  if (values["max-age"] !== undefined) nats.maxAgeMs = positive("max-age", String(values["max-age"]), false) * 1000;
  if (values.replicas !== undefined) nats.replicas = positive("replicas", String(values.replicas), true);
  if (values.buffer !== undefined) nats.maxBuffered = positive("buffer", String(values.buffer), true);
  if (values.spool !== undefined) nats.spoolDir = String(values.spool);
  if (values["spool-max"] !== undefined) {
    if (values.spool === undefined) throw new TypeError("--spool-max needs --spool DIR");
    nats.spoolMaxBytes = Math.floor(positive("spool-max", String(values["spool-max"]), false) * (1 << 20));
  }
  options.nats = nats;
}

/** Events per process and type, for -S. */
class Statistics {
  readonly #rows = new Map<string, Map<string, number>>();
  readonly #totals = new Map<string, number>();

  count(name: string, type: string): void {
    let row = this.#rows.get(name);
    if (!row) this.#rows.set(name, row = new Map());
    row.set(type, (row.get(type) ?? 0) + 1);
    this.#totals.set(type, (this.#totals.get(type) ?? 0) + 1);
  }

  /** The busiest processes first, `limit` rows. */
  table(limit = 25): { process: string; events: Record<string, number>; total: number }[] {
    return [...this.#rows.entries()]
      .map(([process, row]) => ({
        process,
        events: Object.fromEntries(row),
        total: [...row.values()].reduce((a, b) => a + b, 0),
      }))
      .sort((a, b) => b.total - a.total || a.process.localeCompare(b.process))
      .slice(0, limit);
  }

  totals(): Record<string, number> {
    return Object.fromEntries([...this.#totals.entries()].sort());
  }
}

/** Parents, start times and names of processes when there is no process table (--no-enrich). */
class Tracker {
  readonly parent = new Map<number, number>();
  readonly forkedAt = new Map<number, bigint>();

  see(item: ProcMonitorItem): void {
    if (item.type === "fork" && item.childPid === item.childTgid) {
      this.parent.set(item.childTgid, item.parentTgid);
      this.forkedAt.set(item.childTgid, item.timestampNs);
    }
  }

  forget(tgid: number): void {
    this.parent.delete(tgid);
    this.forkedAt.delete(tgid);
  }
}

/** The Output writing to stdout now: stdout's errors go to it (one listener for the process). */
let current: Output | undefined;
let listening = false;

/**
 * Buffers output lines and writes them per batch of events (or each at once with -l). When the
 * reader goes away (`procmon | head`: EPIPE) it stops writing and calls `closed`, so procmon ends
 * quietly like any Unix filter; another write error is kept in `error`.
 */
class Output {
  #lines: string[] = [];
  #scheduled = false;
  #closed = false;
  /** A write error other than the reader going away. */
  error: Error | undefined;

  constructor(readonly lineBuffered: boolean, readonly closed: () => void) {
    current = this;
    if (!listening) {
      listening = true;
      process.stdout.on("error", (err: Error) => current?.failed(err));
    }
  }

  failed(err: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#lines = [];
    if ((err as { code?: string }).code !== "EPIPE") this.error = err;
    this.closed();
  }

  line(text: string): void {
    if (this.#closed) return;
    if (this.lineBuffered) {
      process.stdout.write(text + "\n");
      return;
    }
    this.#lines.push(text);
    if (this.#lines.length >= 512) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setTimeout(() => this.flush(), 0);
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#closed || this.#lines.length === 0) return;
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
  const o = options;
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const timer = o.durationMs !== undefined ? setTimeout(onSignal, o.durationMs) : undefined;
  const out = new Output(o.lineBuffered, onSignal);
  const tracker = new Tracker();
  const stats = new Statistics();
  const text: TextOptions = {
    colour: !o.json && process.stdout.isTTY === true && !process.env.NO_COLOR,
    tree: o.tree,
    extra: o.extra,
    names: o.names,
    enriched: o.enrich,
  };
  let monitor: ProcMonitor | undefined;
  let shipper: ProcEventShipper | undefined;
  try {
    const toEpochMs = await wallClock();
    const format: OutputFormat = o.format ?? (o.json ? "ndjson" : "text");
    // Only documents name the host: plain procmon must not need more than --allow-ffi on Deno.
    const host = o.nats?.host ?? (o.nats || format === "ecs" || format === "otel" ? await hostName() : "");
    const render = documentFormatter(o, format, host, toEpochMs);
    if (o.nats) shipper = await openShipper(o, o.nats, host, toEpochMs);
    // -p needs every fork to know the descendants: without a process table (which asks the kernel
    // for them itself), receive every event and apply -e here.
    const own = o.pid !== undefined && !o.enrich && o.events !== undefined ? eventMask(o.events) : undefined;
    monitor = await ProcMonitor.open({
      events: own === undefined ? o.events : undefined,
      enrich: o.enrich,
      cgroup: o.cgroup,
      signal: stop.signal,
    });
    const table = monitor.processes;
    // The ancestors of a process (nearest first): from the table, which checks that each parent
    // started before its child, else from the forks seen.
    const ancestors = (tgid: number, process?: ProcessInfo) => {
      const chain: number[] = [];
      if (table) {
        const lineage = table.ancestry(process ?? tgid).reverse().slice(1);
        const top = lineage.at(-1)?.ppid ?? (process ?? table.get(tgid))?.ppid;
        for (const p of lineage) chain.push(p.pid);
        if (top !== undefined && top > 0 && !table.get(top)) chain.push(top); // a parent the table does not know
        return chain;
      }
      const parentOf = (p: number) => tracker.parent.get(p);
      for (let p = parentOf(tgid); p !== undefined && p > 0 && chain.length < 256; p = parentOf(p)) chain.push(p);
      return chain;
    };
    if (!o.json && !o.quiet) out.line(textHeader(text));
    for await (const item of monitor) {
      const timeMs = "timestampNs" in item ? toEpochMs(item.timestampNs) : Date.now();
      const ctx: Context = { timeMs, depth: 0 };
      if (item.type !== "lost" && item.type !== "unknown") {
        tracker.see(item);
        const tgid = item.type === "fork" ? item.childTgid : item.tgid;
        if (own !== undefined && !passes(item, own)) {
          if (item.type === "exit" && item.pid === item.tgid) tracker.forget(tgid);
          continue;
        }
        const chain = ancestors(tgid, item.process);
        if (o.pid !== undefined && tgid !== o.pid && !chain.includes(o.pid)) continue;
        ctx.depth = o.pid !== undefined ? chain.indexOf(o.pid) + 1 : chain.length;
        ctx.process = item.process;
        if (item.type === "exit" && item.pid === item.tgid) {
          // The exit's kernel timestamp minus the start on the same clock (CLOCK_MONOTONIC): the fork's
          // kernel timestamp when it was seen, else /proc's start time (rounded down: never later).
          const start = tracker.forkedAt.get(tgid) ?? item.process?.startNs;
          if (start !== undefined) ctx.durationNs = item.timestampNs - start;
          tracker.forget(tgid);
        }
        stats.count(statName(item.process, o.enrich), item.type);
      } else stats.count(item.type === "lost" ? "(lost)" : "(unknown)", item.type);
      if (shipper) {
        // The shipped document: --format's, ecs when it is text.
        const id = shipper.id(item);
        const shipped = render(item, ctx, id, format === "text" ? "ecs" : format);
        shipper.ship(item, shipped);
        if (o.quiet) continue;
        // stdout shows the shipped document (with its id) when the formats are the same.
        out.line(format === "text" ? toText(item, ctx, text) : shipped);
        continue;
      }
      if (o.quiet) continue;
      out.line(format === "text" ? toText(item, ctx, text) : render(item, ctx));
    }
    if (o.stats) printStatistics(out, stats, monitor, o.json);
    out.flush();
    if (out.error) {
      console.error(`procmon: cannot write the output: ${escapeText(out.error.message)}`);
      return 1;
    }
    return 0;
  } catch (err) {
    out.flush();
    console.error(`procmon: ${escapeText((err as Error).message)}`);
    return 1;
  } finally {
    clearTimeout(timer);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await monitor?.close();
    if (shipper) await closeShipper(shipper);
  }
}

/** Renders an item as one JSON line in `format` (default: the chosen one); `id` goes in ecs/otel. */
type Render = (item: ProcMonitorItem, ctx: Context, id?: string, format?: OutputFormat) => string;

function documentFormatter(
  o: Options,
  chosen: OutputFormat,
  host: string,
  toEpochMs: (ns: bigint) => number,
): Render {
  const safeHost = escapeText(host);
  return (item, ctx, id, format = chosen) => {
    // Every string in an ECS or OTel document comes escaped from the library (escapeText: no control
    // characters, DEL, C1 or U+2028/2029), the host name included: plain JSON.stringify is terminal-safe.
    const schemaCtx = { host: safeHost, toEpochMs, id, nowMs: ctx.timeMs };
    if (format === "ecs") {
      return JSON.stringify(toEcs(item, schemaCtx, { commandLine: o.commandLine !== "none" }));
    }
    if (format === "otel") return JSON.stringify(toOtelLogRecord(item, schemaCtx, { commandLine: o.commandLine }));
    return toJson(item, ctx);
  };
}

/**
 * This machine's name: the runtime's (Deno asks for --allow-sys=hostname), else the kernel's
 * /proc/sys/kernel/hostname read through libc (--allow-ffi is enough, as for the rest of procmon).
 */
async function hostName(): Promise<string> {
  try {
    return hostname();
  } catch {
    await loadLibc();
    const bytes = defaultFileReader().read("/proc/sys/kernel/hostname");
    const name = bytes ? new TextDecoder().decode(bytes).trim() : "";
    if (!name) throw new Error("cannot read the host name: give --host NAME");
    return name;
  }
}

/** The NATS shipper, loaded only with --nats: the rest of procmon does not need the NATS client. */
async function openShipper(
  o: Options,
  nats: NatsOptions,
  host: string,
  toEpochMs: (ns: bigint) => number,
): Promise<ProcEventShipper> {
  const { ProcEventShipper } = await import("../nats/events.ts");
  return await ProcEventShipper.open({
    servers: nats.servers,
    host,
    stream: nats.stream,
    maxAgeMs: nats.maxAgeMs,
    replicas: nats.replicas,
    maxBuffered: nats.maxBuffered,
    spoolDir: nats.spoolDir,
    spoolMaxBytes: nats.spoolMaxBytes,
    format: o.format === "otel" ? "otel" : "ecs",
    commandLine: o.commandLine,
    toEpochMs,
    name: `procmon@${host}`,
  });
}

/** Drains the shipper and prints its counts on stderr (stdout may be a pipe of documents). */
async function closeShipper(shipper: ProcEventShipper): Promise<void> {
  const s = await shipper.close();
  console.error(
    `nats: ${s.accepted} accepted, ${s.acked} acked, ${s.duplicates} duplicates, ${s.dropped} dropped, ` +
      `${s.spooled} left in the spool, ${s.retries} retries, ${s.reconnects} reconnects`,
  );
}

/**
 * A process's row in -S (exact; escaped where printed): its program (a zombie has no command line
 * left, but its comm); without /proc (--no-enrich), one row for all.
 */
function statName(p: ProcessInfo | undefined, enriched: boolean): string {
  const program = p?.cmdline?.[0];
  if (program) return program.slice(program.lastIndexOf("/") + 1);
  return p?.comm ?? (enriched ? "<gone>" : "(not looked up: --no-enrich)");
}

const STAT_COLUMNS = ["fork", "exec", "exit", "coredump", "comm", "ptrace", "uid", "gid", "sid"];

function printStatistics(out: Output, stats: Statistics, monitor: ProcMonitor, json: boolean): void {
  const s = monitor.stats;
  const lost = { overruns: s.overruns, seqLost: s.seqLost, foreign: s.foreign, malformed: s.malformed };
  if (json) {
    out.line(
      safeJson({ type: "summary", events: stats.totals(), processes: stats.table(), lost, filter: monitor.filterMode }),
    );
    return;
  }
  out.line("");
  out.line(statsRow([...STAT_COLUMNS.map((c) => c[0].toUpperCase() + c.slice(1)), "Total"], "Process"));
  for (const p of stats.table()) {
    out.line(statsRow([...STAT_COLUMNS.map((c) => p.events[c] ?? 0), p.total], p.process));
  }
  const totals = stats.totals();
  const all = Object.values(totals).reduce((a, b) => a + b, 0);
  out.line(statsRow([...STAT_COLUMNS.map((c) => totals[c] ?? 0), all], "(all processes)"));
  out.line("");
  out.line(
    `lost: ${s.overruns} overrun(s), ${s.seqLost} by sequence gaps; forged rejected: ${s.foreign}; ` +
      `filter: ${monitor.filterMode}`,
  );
}
