/**
 * Process events in two standard schemas, so a fleet's events can be queried with the tools that
 * already speak them:
 *
 * - **Elastic Common Schema (ECS) 8.11**: one document per event, with the `process`, `event`,
 *   `user`/`group` (reused under `process`), `container`, `host` and base (`@timestamp`, `labels`)
 *   fieldsets. Names and types were checked against ECS's own field definitions (the `schemas/*.yml`
 *   of the ECS repository): `process.pid`, `process.parent.pid`, `process.args_count`,
 *   `process.exit_code` are `long`; `process.start`, `process.end`, `@timestamp` are `date`;
 *   `process.user.id`, `process.group.id`, `container.id`, `host.name` are `keyword` (strings: ECS ids
 *   are keywords, also numeric ones); `event.category` and `event.type` are arrays.
 * - **OpenTelemetry semantic conventions 1.37.0** (the `process` attribute registry; every `process.*`
 *   attribute there is at stability "development"): log-record attributes, flat, with the registry's
 *   types: `process.pid`, `process.parent_pid`, `process.exit.code`, `process.user.id` are `int`;
 *   `process.creation.time`, `process.exit.time` are ISO 8601 strings; `process.command_args` is
 *   `string[]`. The registry says command lines SHOULD NOT be collected by default unless sanitized,
 *   and that `process.command_line` should not be assembled just for monitoring: here both are
 *   opt-in (`commandLine`).
 *
 * Strings that come from processes are the library's escaped, lossless forms (see `escapeText`).
 *
 * @module
 */
import { defaultFileReader, type FileReader } from "../ffi/files.ts";
import { isThread, waitStatus } from "./event.ts";
import { namesById, type ProcessInfo } from "./enrich.ts";
import type { ProcMonitorItem } from "./monitor.ts";
import { escapeText } from "./text.ts";

/** The ECS version the documents declare in `ecs.version`. */
export const ECS_VERSION = "8.11.0";
/** The OpenTelemetry semantic conventions version the attributes follow (its schema URL's version). */
export const OTEL_SEMCONV_VERSION = "1.37.0";
/** The schema URL of {@linkcode OTEL_SEMCONV_VERSION}, for an OTLP scope or resource. */
export const OTEL_SCHEMA_URL = `https://opentelemetry.io/schemas/${OTEL_SEMCONV_VERSION}`;

/** What a mapper needs beyond the event: where it happened and how to read its clock. */
export interface SchemaContext {
  /** The host's name (`host.name`). */
  host: string;
  /** Maps a CLOCK_MONOTONIC timestamp (ns) to epoch milliseconds: `await wallClock()`. */
  toEpochMs: (timestampNs: bigint) => number;
  /** Epoch milliseconds of the event when it has no timestamp (a loss report); default `Date.now()`. */
  nowMs?: number;
  /** A unique id for the event (`event.id` in ECS, `log.record.uid` in OpenTelemetry), e.g. {@linkcode eventId}. */
  id?: string;
}

/** Options of {@linkcode toEcs}. */
export interface EcsOptions {
  /**
   * Put `process.args`, `process.args_count` and `process.command_line` in the document. Default
   * true (ECS notes that arguments "may be filtered to protect sensitive information").
   */
  commandLine?: boolean;
}

/** Options of {@linkcode toOtelAttributes} and {@linkcode toOtelLogRecord}. */
export interface OtelOptions {
  /**
   * `"args"`: set `process.command_args` and `process.args_count`; `"args+line"`: also
   * `process.command_line`, joined with spaces (the conventions advise against assembling it);
   * `"none"` (default): neither, as the conventions advise unless arguments are sanitized.
   */
  commandLine?: "none" | "args" | "args+line";
}

/** A value of an ECS document (nested objects, as ECS documents are written). */
export type EcsValue = string | number | boolean | string[] | EcsDocument;
/** An ECS document: nested objects whose leaves are the ECS fields. */
export interface EcsDocument {
  /** A fieldset (an object) or a field's value. */
  [field: string]: EcsValue;
}

/** An OpenTelemetry attribute value of the types the process registry uses. */
export type OtelValue = string | number | boolean | string[];

const basename = (path: string) => path.slice(path.lastIndexOf("/") + 1);
/**
 * Epoch ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`, what `Date#toISOString` gives (for years 1970-9999), by
 * arithmetic: `toISOString` cost ~14 us a call on Deno 2.9 here, twice per document.
 */
function iso(ms: number): string {
  const t = Math.floor(ms);
  if (!(t >= 0 && t < 253402300800000)) return new Date(ms).toISOString();
  const days = Math.floor(t / 86_400_000);
  let rest = t - days * 86_400_000;
  // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const min = Math.floor(rest / 60_000);
  rest -= min * 60_000;
  const sec = Math.floor(rest / 1000);
  const milli = rest - sec * 1000;
  const p2 = (n: number) => (n < 10 ? "0" : "") + n;
  const p3 = (n: number) => (n < 10 ? "00" : n < 100 ? "0" : "") + n;
  return `${y}-${p2(m)}-${p2(d)}T${p2(h)}:${p2(min)}:${p2(sec)}.${p3(milli)}Z`;
}

let groups: Map<number, string> | null = null;

/**
 * The group name of `gid` from /etc/group (read once, with `files`, by default on libc once any
 * `open()` has loaded it, so procmon needs no --allow-read on Deno), escaped for display, or
 * undefined.
 *
 * @example
 * ```ts
 * import { groupName } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(groupName(0), "root");
 * ```
 */
export function groupName(gid: number, files: FileReader = defaultFileReader()): string | undefined {
  groups ??= namesById(files, "/etc/group");
  const name = groups.get(gid);
  return name === undefined ? undefined : escapeText(name);
}

/**
 * The process id an item is about: the child for a fork, the process (tgid) otherwise; undefined for
 * a loss report.
 */
function subjectPid(item: ProcMonitorItem): number | undefined {
  if (item.type === "lost" || item.type === "unknown") return undefined;
  return item.type === "fork" ? item.childTgid : item.tgid;
}

/** The thread id when the event is about a thread that is not its process's leader. */
function threadId(item: ProcMonitorItem): number | undefined {
  if (item.type === "lost" || item.type === "unknown") return undefined;
  if (!isThread(item)) return undefined;
  return item.type === "fork" ? item.childPid : item.pid;
}

/** The parent's process id: from the event when it carries one, else from the process table. */
function parentPid(item: ProcMonitorItem, p: ProcessInfo | undefined): number | undefined {
  if (item.type === "fork") return item.parentTgid;
  if ((item.type === "exit" || item.type === "coredump") && item.parentTgid > 0) return item.parentTgid;
  return p?.ppid;
}

/** Whether the item is the end of a process (its leader's exit), not of one of its threads. */
const isProcessExit = (item: ProcMonitorItem) => item.type === "exit" && item.pid === item.tgid;

/**
 * The exit code of a wait status as shells report it: the code for a normal exit, 128 + the signal for
 * a process killed by one (ECS's own example, 137, is SIGKILL's).
 *
 * @example
 * ```ts
 * import { exitCodeOf } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(exitCodeOf(3 << 8), 3); // exit 3
 * assert.equal(exitCodeOf(9), 137); // SIGKILL
 * ```
 */
export function exitCodeOf(status: number): number {
  const s = waitStatus(status);
  return s.exited ? s.code : 128 + s.signal;
}

/**
 * A stable, unique id for an event on a host: host, CPU, kernel timestamp and per-CPU sequence (the
 * same event always gets the same id, so a resend can be recognised). Loss reports have no kernel
 * identity: they get `lost-<n>` from the caller's counter `n`.
 *
 * @example
 * ```ts
 * import { eventId } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const e = { type: "exec", pid: 7, tgid: 7, cpu: 1, timestampNs: 123n, seq: 9 } as const;
 * assert.equal(eventId("web-1", e), "web-1:1:123:9");
 * ```
 */
export function eventId(host: string, item: ProcMonitorItem, lostCounter = 0): string {
  if (item.type === "lost") return `${host}:lost-${lostCounter}`;
  return `${host}:${item.cpu}:${item.timestampNs}:${item.seq}`;
}

const ECS_TYPES: Record<string, string[]> = {
  fork: ["start"],
  exec: ["start"],
  exit: ["end"],
  uid: ["change"],
  gid: ["change"],
  sid: ["change"],
  ptrace: ["change"],
  comm: ["change"],
  coredump: ["info"],
  unknown: ["info"],
};

/**
 * An ECS document for a process event (and its `process` snapshot from the process table).
 *
 * - `event.kind` `event`, `event.category` `["process"]`, `event.type` `["start"]` (fork, exec),
 *   `["end"]` (exit), `["change"]` (uid, gid, sid, ptrace, comm), `["info"]` (coredump), and
 *   `event.action` the event's type (`fork`, `exec`, `exit`, ...); a thread's fork and exit add
 *   `process.thread.id` and are `thread-start` / `thread-end`.
 * - A loss report is `event.kind` `pipeline_error` ("event data may be missing"), `event.action`
 *   `lost`, with `labels.lost_reason` and `labels.lost_count`.
 * - `process.exit_code` and `process.end` only on a process's exit (its leader's), the code as
 *   {@linkcode exitCodeOf} gives it; `process.start` when the table knows the start.
 * - `process.user.*` is the effective user in ECS: a `uid` event's euid, else the table's uid (the
 *   real uid, equal to the effective one but for set-user-ID programs), and `process.real_user.id`
 *   the real uid; likewise for groups.
 * - `labels.systemd_unit` holds the systemd unit (ECS has no field for it).
 *
 * @example
 * ```ts
 * import { type ProcMonitorItem, toEcs } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const exit: ProcMonitorItem = {
 *   type: "exit", pid: 42, tgid: 42, exitCode: 1 << 8, exitSignal: 17, parentPid: 1, parentTgid: 1,
 *   cpu: 0, timestampNs: 2_000_000_000n, seq: 5,
 *   process: { pid: 42, exe: "/usr/bin/make", cmdline: ["make", "all"], uid: 0, user: "root" },
 * };
 * const doc = toEcs(exit, { host: "web-1", toEpochMs: (ns) => Number(ns / 1_000_000n) });
 * assert.equal((doc.process as { exit_code: number }).exit_code, 1);
 * assert.deepEqual(doc.event, { kind: "event", category: ["process"], type: ["end"], action: "exit" });
 * ```
 */
export function toEcs(item: ProcMonitorItem, ctx: SchemaContext, options: EcsOptions = {}): EcsDocument {
  const timeMs = "timestampNs" in item ? ctx.toEpochMs(item.timestampNs) : (ctx.nowMs ?? Date.now());
  const doc: EcsDocument = { "@timestamp": iso(timeMs), ecs: { version: ECS_VERSION } };
  if (item.type === "lost") {
    const labels: EcsDocument = { lost_reason: item.reason };
    if (item.count !== undefined) labels.lost_count = String(item.count);
    doc.event = { kind: "pipeline_error", action: "lost", ...(ctx.id ? { id: ctx.id } : {}) };
    doc.labels = labels;
    doc.host = { name: ctx.host };
    return doc;
  }
  const thread = threadId(item);
  let action: string = item.type;
  if (thread !== undefined && item.type === "fork") action = "thread-start";
  if (thread !== undefined && item.type === "exit") action = "thread-end";
  const event: EcsDocument = { kind: "event", category: ["process"], type: ECS_TYPES[item.type], action };
  if (ctx.id) event.id = ctx.id;
  doc.event = event;
  doc.host = { name: ctx.host };

  const p = item.process;
  const proc: EcsDocument = {};
  const pid = subjectPid(item);
  if (pid !== undefined) proc.pid = pid;
  if (thread !== undefined) proc.thread = { id: thread };
  const ppid = parentPid(item, p);
  if (ppid !== undefined && ppid > 0) proc.parent = { pid: ppid };
  if (p?.exe !== undefined) proc.executable = p.exe;
  const name = p?.exe !== undefined ? basename(p.exe) : p?.comm;
  if (name !== undefined) proc.name = name;
  if (options.commandLine !== false && p?.cmdline && p.cmdline.length > 0) {
    proc.args = [...p.cmdline];
    proc.args_count = p.cmdline.length;
    proc.command_line = p.cmdline.join(" ");
  }
  if (p?.startNs !== undefined) proc.start = iso(ctx.toEpochMs(p.startNs));
  if (item.type === "exit" && isProcessExit(item)) {
    proc.end = iso(timeMs);
    proc.exit_code = exitCodeOf(item.exitCode);
  }
  const euid = item.type === "uid" ? item.euid : p?.uid;
  const ruid = item.type === "uid" ? item.ruid : p?.uid;
  if (euid !== undefined) {
    const user: EcsDocument = { id: String(euid) };
    const name = item.type === "uid" ? userNameOf(euid, p) : p?.user;
    if (name !== undefined) user.name = name;
    proc.user = user;
  }
  if (ruid !== undefined) proc.real_user = { id: String(ruid) };
  const egid = item.type === "gid" ? item.egid : p?.gid;
  const rgid = item.type === "gid" ? item.rgid : p?.gid;
  if (egid !== undefined) {
    const group: EcsDocument = { id: String(egid) };
    const gname = groupName(egid);
    if (gname !== undefined) group.name = gname;
    proc.group = group;
  }
  if (rgid !== undefined) proc.real_group = { id: String(rgid) };
  if (item.type === "comm") proc.title = item.comm;
  doc.process = proc;
  if (p?.container) doc.container = { id: p.container.id, runtime: p.container.runtime };
  if (p?.unit) doc.labels = { systemd_unit: p.unit };
  return doc;
}

/** The user name for a uid an event reports: the table's when it is the same uid, else unknown. */
function userNameOf(uid: number, p: ProcessInfo | undefined): string | undefined {
  return p?.uid === uid ? p.user : undefined;
}

/**
 * OpenTelemetry log-record attributes for a process event: `process.pid`, `process.parent_pid`,
 * `process.executable.name` (base name of the executable, else the task name) and `.path`,
 * `process.creation.time`, `process.exit.code` and `process.exit.time` (a process's exit only, code
 * as {@linkcode exitCodeOf}), `process.user.id`/`.name` (effective, as for {@linkcode toEcs}),
 * `process.real_user.id`, `thread.id` (events about a thread), `container.id`, `host.name`; the
 * command line only on request (`commandLine`). A loss report has only `host.name`.
 *
 * @example
 * ```ts
 * import { type ProcMonitorItem, toOtelAttributes } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const exec: ProcMonitorItem = {
 *   type: "exec", pid: 42, tgid: 42, cpu: 0, timestampNs: 1n, seq: 1,
 *   process: { pid: 42, ppid: 1, exe: "/usr/bin/make", cmdline: ["make", "all"], uid: 1000 },
 * };
 * const attrs = toOtelAttributes(exec, { host: "web-1", toEpochMs: () => 0 });
 * assert.equal(attrs["process.parent_pid"], 1);
 * assert.equal(attrs["process.command_args"], undefined); // opt-in
 * ```
 */
export function toOtelAttributes(
  item: ProcMonitorItem,
  ctx: SchemaContext,
  options: OtelOptions = {},
): Record<string, OtelValue> {
  const a: Record<string, OtelValue> = {};
  const timeMs = "timestampNs" in item ? ctx.toEpochMs(item.timestampNs) : (ctx.nowMs ?? Date.now());
  if (item.type !== "lost") {
    const p = item.process;
    const pid = subjectPid(item);
    if (pid !== undefined) a["process.pid"] = pid;
    const ppid = parentPid(item, p);
    if (ppid !== undefined && ppid > 0) a["process.parent_pid"] = ppid;
    const thread = threadId(item);
    if (thread !== undefined) a["thread.id"] = thread;
    const name = p?.exe !== undefined ? basename(p.exe) : p?.comm;
    if (name !== undefined) a["process.executable.name"] = name;
    if (p?.exe !== undefined) a["process.executable.path"] = p.exe;
    const mode = options.commandLine ?? "none";
    if (mode !== "none" && p?.cmdline && p.cmdline.length > 0) {
      a["process.command_args"] = [...p.cmdline];
      a["process.args_count"] = p.cmdline.length;
      if (mode === "args+line") a["process.command_line"] = p.cmdline.join(" ");
    }
    if (p?.startNs !== undefined) a["process.creation.time"] = iso(ctx.toEpochMs(p.startNs));
    if (item.type === "exit" && isProcessExit(item)) {
      a["process.exit.code"] = exitCodeOf(item.exitCode);
      a["process.exit.time"] = iso(timeMs);
    }
    const euid = item.type === "uid" ? item.euid : p?.uid;
    if (euid !== undefined) {
      a["process.user.id"] = euid;
      const uname = item.type === "uid" ? userNameOf(euid, p) : p?.user;
      if (uname !== undefined) a["process.user.name"] = uname;
    }
    const ruid = item.type === "uid" ? item.ruid : p?.uid;
    if (ruid !== undefined) a["process.real_user.id"] = ruid;
    if (p?.container) a["container.id"] = p.container.id;
  }
  a["host.name"] = ctx.host;
  if (ctx.id) a["log.record.uid"] = ctx.id;
  return a;
}

/** An OTLP/JSON `AnyValue`. */
export type OtlpAnyValue =
  | { stringValue: string }
  | { intValue: string }
  | { boolValue: boolean }
  | { doubleValue: number }
  | { arrayValue: { values: OtlpAnyValue[] } };

/** An OTLP/JSON `LogRecord` (the fields this library sets). */
export interface OtlpLogRecord {
  /** Event time, nanoseconds since the epoch, as a decimal string (OTLP/JSON's int64 encoding). */
  timeUnixNano: string;
  /** When it was observed (mapped), likewise. */
  observedTimeUnixNano: string;
  /** 9 (INFO), or 13 (WARN) for a loss report. */
  severityNumber: number;
  /** `INFO` or `WARN`. */
  severityText: string;
  /** `procmon.<type>`: `procmon.exec`, `procmon.exit`, `procmon.lost`, ... */
  eventName: string;
  /** The event's type as a string value. */
  body: OtlpAnyValue;
  /** The attributes of {@linkcode toOtelAttributes} as OTLP key/values (ints as decimal strings). */
  attributes: { key: string; value: OtlpAnyValue }[];
}

/** Epoch ms (with a fraction) as integer nanoseconds, without going through a double of ~1e18. */
function epochNs(ms: number): bigint {
  const whole = Math.floor(ms);
  return BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6));
}

function anyValue(v: OtelValue): OtlpAnyValue {
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (typeof v === "number") return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
  return { arrayValue: { values: v.map((s) => ({ stringValue: s })) } };
}

/**
 * The event as an OTLP/JSON log record (what an OTLP collector's JSON receiver takes inside a
 * `scopeLogs` entry, whose `schemaUrl` would be {@linkcode OTEL_SCHEMA_URL}).
 *
 * @example
 * ```ts
 * import { toOtelLogRecord } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const e = { type: "exec", pid: 42, tgid: 42, cpu: 0, timestampNs: 5_000_000n, seq: 1 } as const;
 * const record = toOtelLogRecord(e, { host: "web-1", toEpochMs: (ns) => Number(ns) / 1e6 });
 * assert.equal(record.timeUnixNano, "5000000");
 * assert.deepEqual(record.attributes[0], { key: "process.pid", value: { intValue: "42" } });
 * ```
 */
export function toOtelLogRecord(item: ProcMonitorItem, ctx: SchemaContext, options: OtelOptions = {}): OtlpLogRecord {
  const timeMs = "timestampNs" in item ? ctx.toEpochMs(item.timestampNs) : (ctx.nowMs ?? Date.now());
  const attributes = toOtelAttributes(item, ctx, options);
  return {
    timeUnixNano: String(epochNs(timeMs)),
    observedTimeUnixNano: String(BigInt(Date.now()) * 1_000_000n),
    severityNumber: item.type === "lost" ? 13 : 9,
    severityText: item.type === "lost" ? "WARN" : "INFO",
    eventName: `procmon.${item.type}`,
    body: { stringValue: item.type },
    attributes: Object.entries(attributes).map(([key, value]) => ({ key, value: anyValue(value) })),
  };
}
