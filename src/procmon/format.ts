/**
 * How procmon shows an item: a forkstat-style text line or one NDJSON object with stable field names.
 *
 * Every string that comes from a process (names, arguments, paths, user names, cgroups, units,
 * container ids) arrives exact from the library and is escaped here, at the output, by the one
 * `escapeText` (`\n`, `\x1b`, `\u{202e}`, `\xff`, `\\`): no byte a process chose can act on the
 * terminal. Numbers and our own words are the only other things on a line. JSON goes through
 * `safeJson`: exact strings, `{ "base64": ... }` for bytes that are not UTF-8.
 *
 * @module
 */
import type { ProcMonitorItem } from "../proc/monitor.ts";
import { waitStatus } from "../proc/event.ts";
import type { ProcessInfo } from "../proc/enrich.ts";
import { escapeText, safeJson } from "../proc/text.ts";

/** How a process is named in the Process column. */
export type NameStyle = "cmdline" | "comm" | "strip-dir" | "short";

/** What the formatter knows beyond the event itself. */
export interface Context {
  /** Epoch milliseconds of the event. */
  timeMs: number;
  /** Start-to-exit duration of the process, when its start is known. */
  durationNs?: bigint;
  /** Depth in the process tree (for --tree). */
  depth: number;
  /** Best-known details of the process. */
  process?: ProcessInfo;
}

/** What the text format shows. */
export interface TextOptions {
  colour: boolean;
  tree: boolean;
  /** -x: UID and TTY columns, and the whole cgroup path instead of the container or unit. */
  extra: boolean;
  names: NameStyle;
  /**
   * Whether processes were looked up in /proc (default true). Without (--no-enrich), an event without
   * its process is not a process that is gone: the Process column shows what the event says.
   */
  enriched?: boolean;
}

/**
 * The NDJSON line for an item. Field names are stable; bigints become decimal strings; an unknown
 * event's raw bytes an array of numbers. Strings a process chose are exact: a JSON string when valid
 * UTF-8, else `{ "base64": ... }` (see `safeJson`); a comm event's name is `comm` (its bytes are not
 * repeated).
 */
export function toJson(item: ProcMonitorItem, ctx: Context): string {
  const out: Record<string, unknown> = { type: item.type, time: new Date(ctx.timeMs).toISOString() };
  for (const [key, value] of Object.entries(item)) {
    if (key === "type" || key === "process" || key === "commBytes") continue;
    out[key] = value instanceof Uint8Array ? [...value] : value;
  }
  if (item.type === "exit") out.status = waitStatus(item.exitCode);
  if (ctx.durationNs !== undefined) out.durationMs = Number(ctx.durationNs) / 1e6;
  if (ctx.process) out.process = ctx.process;
  return safeJson(out, (_key, value) => (typeof value === "bigint" ? value.toString() : value));
}

const COLOURS: Record<string, string> = {
  fork: "36",
  exec: "32",
  exit: "33",
  coredump: "31;1",
  lost: "41;97",
  ptrace: "35",
  comm: "34",
  uid: "95",
  gid: "95",
  sid: "94",
};

function clock(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function describe(item: ProcMonitorItem): [pid: string, info: string] {
  switch (item.type) {
    case "fork":
      return item.childPid === item.childTgid
        ? [String(item.childPid), `child of ${item.parentTgid}`]
        : [String(item.childPid), `thread of ${item.childTgid}`];
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
      return [String(item.pid), `name ${escapeText(item.comm)}`];
    case "coredump":
      return [String(item.pid), "dumping core"];
    case "lost":
      return ["-", item.count !== undefined ? `${item.count} lost (cpu ${item.cpu})` : "overrun: events lost"];
    case "unknown":
      return ["-", `what 0x${item.what.toString(16)}`];
  }
}

const basename = (path: string) => path.slice(path.lastIndexOf("/") + 1);

/** What ends a command line that was cut at `CMDLINE_LIMIT` bytes. */
export const TRUNCATED = "…[truncated]";

/**
 * The process's name in the chosen style, escaped: `[comm]` without a command line, `<gone>` without
 * anything; a command line cut at the read limit ends with {@linkcode TRUNCATED}.
 */
export function processName(info: ProcessInfo | undefined, style: NameStyle = "cmdline"): string {
  if (!info) return "<gone>";
  const argv = info.cmdline ?? [];
  if (style === "comm" || argv.length === 0) return info.comm !== undefined ? `[${escapeText(info.comm)}]` : "<gone>";
  if (style === "short") return escapeText(basename(argv[0]));
  const shown = style === "strip-dir" ? [basename(argv[0]), ...argv.slice(1)] : argv;
  return shown.map(escapeText).join(" ") + (info.cmdlineTruncated ? TRUNCATED : "");
}

/** The Container/Unit column, escaped: the container (runtime and short id), else the systemd unit. */
export function placeOf(info: ProcessInfo | undefined, extra: boolean): string {
  if (!info) return "";
  if (extra) return escapeText(info.cgroup ?? "");
  if (info.container) return `${info.container.runtime}:${escapeText(info.container.id.slice(0, 12))}`;
  return escapeText(info.unit ?? "");
}

/** The Process column of an event whose process was not looked up (--no-enrich): what the event says. */
function eventName(item: ProcMonitorItem): string {
  return item.type === "comm" ? `[${escapeText(item.comm)}]` : "";
}

/** The header line of the text format. */
export function textHeader(options: Pick<TextOptions, "extra">): string {
  const extra = options.extra ? `${"UID".padEnd(6)} ${"TTY".padEnd(7)} ` : "";
  return `Time         Event     PID      Info                    Duration  ${extra}User      ` +
    `${(options.extra ? "Cgroup" : "Container/Unit").padEnd(20)} Process`;
}

/** One text line, forkstat-style. */
export function toText(item: ProcMonitorItem, ctx: Context, options: TextOptions): string {
  const [pid, info] = describe(item);
  const name = item.type.padEnd(9);
  const event = options.colour && COLOURS[item.type] ? `\x1b[${COLOURS[item.type]}m${name}\x1b[0m` : name;
  const duration = ctx.durationNs !== undefined ? `${(Number(ctx.durationNs) / 1e9).toFixed(3)}s` : "";
  const p = ctx.process;
  const user = p?.user !== undefined ? escapeText(p.user) : p?.uid !== undefined ? String(p.uid) : "";
  const extra = options.extra ? `${String(p?.uid ?? "").padEnd(6)} ${(p?.tty ?? "").padEnd(7)} ` : "";
  const indent = options.tree ? "  ".repeat(ctx.depth) : "";
  const process = item.type === "lost" || item.type === "unknown"
    ? ""
    : !p && options.enriched === false
    ? eventName(item)
    : processName(p, options.names);
  return `${clock(ctx.timeMs)} ${event} ${pid.padEnd(8)} ${info.padEnd(23)} ${duration.padStart(8)}  ${extra}${
    user.padEnd(9)
  } ${placeOf(p, options.extra).padEnd(20)} ${indent}${process}`;
}

/** One row of the -S table: right-aligned counts, then the process's name, escaped. */
export function statsRow(cells: (string | number)[], name: string): string {
  return cells.map((c) => String(c).padStart(9)).join("") + `  ${escapeText(name)}`;
}
