/**
 * How procmon shows an item: a forkstat-style text line or one NDJSON object with stable field names.
 *
 * @module
 */
import type { ProcMonitorItem } from "../proc/monitor.ts";
import { waitStatus } from "../proc/event.ts";
import type { ProcessInfo } from "../proc/enrich.ts";

/** What the formatter knows beyond the event itself. */
export interface Context {
  /** Epoch milliseconds of the event. */
  timeMs: number;
  /** Fork-to-exit duration of the process, when its fork was seen. */
  durationNs?: bigint;
  /** Depth in the process tree seen so far (for --tree). */
  depth: number;
  /** Best-known details of the process. */
  process?: ProcessInfo;
}

/** The NDJSON object for an item. Field names are stable; bigints become decimal strings. */
export function toJson(item: ProcMonitorItem, ctx: Context): Record<string, unknown> {
  const out: Record<string, unknown> = { type: item.type, time: new Date(ctx.timeMs).toISOString() };
  for (const [key, value] of Object.entries(item)) {
    if (key === "type" || key === "process") continue;
    out[key] = typeof value === "bigint" ? value.toString() : value instanceof Uint8Array ? [...value] : value;
  }
  if (item.type === "exit") out.status = waitStatus(item.exitCode);
  if (ctx.durationNs !== undefined) out.durationMs = Number(ctx.durationNs) / 1e6;
  if (ctx.process) out.process = ctx.process;
  return out;
}

const COLOURS: Record<string, string> = {
  fork: "36",
  exec: "32",
  exit: "33",
  coredump: "31;1",
  lost: "41;97",
  ptrace: "35",
  comm: "34",
};

function clock(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function describe(item: ProcMonitorItem): [pid: string, info: string] {
  switch (item.type) {
    case "fork":
      return [String(item.childPid), `${item.childPid === item.childTgid ? "child" : "thread"} of ${item.parentTgid}`];
    case "exec":
      return [String(item.pid), item.pid === item.tgid ? "" : `thread of ${item.tgid}`];
    case "exit": {
      const s = waitStatus(item.exitCode);
      const how = s.exited ? `code ${s.code}` : `signal ${s.signal}${s.coreDumped ? " (core)" : ""}`;
      return [String(item.pid), item.pid === item.tgid ? how : `${how}, thread of ${item.tgid}`];
    }
    case "uid":
      return [String(item.pid), `uid ${item.ruid} euid ${item.euid}`];
    case "gid":
      return [String(item.pid), `gid ${item.rgid} egid ${item.egid}`];
    case "sid":
      return [String(item.pid), "new session"];
    case "ptrace":
      return [String(item.pid), item.tracerTgid ? `traced by ${item.tracerTgid}` : "detached"];
    case "comm":
      return [String(item.pid), `name ${JSON.stringify(item.comm)}`];
    case "coredump":
      return [String(item.pid), "dumping core"];
    case "lost":
      return ["-", item.count !== undefined ? `${item.count} lost (cpu ${item.cpu})` : "overrun: events lost"];
    case "unknown":
      return ["-", `what 0x${item.what.toString(16)}`];
  }
}

function processName(info: ProcessInfo | undefined): string {
  if (!info) return "";
  if (info.cmdline && info.cmdline.length > 0) return info.cmdline.join(" ");
  if (info.comm) return `[${info.comm}]`;
  return "<gone>";
}

/** The header line of the text format. */
export const TEXT_HEADER = "Time         Event     PID      Info                    Duration  User      Process";

/** One text line, forkstat-style; `colour` adds ANSI colour to the event name. */
export function toText(item: ProcMonitorItem, ctx: Context, colour: boolean, tree: boolean): string {
  const [pid, info] = describe(item);
  const name = item.type.padEnd(9);
  const event = colour && COLOURS[item.type] ? `\x1b[${COLOURS[item.type]}m${name}\x1b[0m` : name;
  const duration = ctx.durationNs !== undefined ? `${(Number(ctx.durationNs) / 1e9).toFixed(3)}s` : "";
  const user = ctx.process?.user ?? (ctx.process?.uid !== undefined ? String(ctx.process.uid) : "");
  const indent = tree ? "  ".repeat(ctx.depth) : "";
  return `${clock(ctx.timeMs)} ${event} ${pid.padEnd(8)} ${info.padEnd(23)} ${duration.padStart(8)}  ${
    user.padEnd(9)
  } ${indent}${processName(ctx.process)}`;
}
