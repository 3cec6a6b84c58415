/**
 * Process events from the kernel's process-events connector (`CN_IDX_PROC`): fork, exec, uid, gid,
 * sid, ptrace, comm, coredump and exit of every task on the host, typed, from the kernel only, with
 * loss reported in the stream and kernel-side filtering on Linux >= 6.6.
 *
 * @example Every exec on the host, with its command line
 * ```ts ignore
 * import { ProcMonitor } from "@cnlink/connector/proc";
 *
 * await using monitor = await ProcMonitor.open({ events: ["exec"], enrich: true });
 * for await (const e of monitor) {
 *   if (e.type === "exec") console.log(e.pid, e.process?.cmdline?.join(" "));
 *   if (e.type === "lost") console.warn("lost events:", e.reason, e.count ?? "");
 * }
 * ```
 *
 * @module
 */
export * from "./src/proc/constants.ts";
export {
  type AckEvent,
  type CommEvent,
  type CoredumpEvent,
  decodeProcEvent,
  encodeProcEvent,
  type ExecEvent,
  type ExitEvent,
  type ForkEvent,
  type GidEvent,
  isThread,
  type ProcEvent,
  type ProcEventBase,
  type ProcEventType,
  type PtraceEvent,
  type SidEvent,
  type UidEvent,
  type UnknownEvent,
  type WaitStatus,
  waitStatus,
} from "./src/proc/event.ts";
export { eventMask, passes, PROC_EVENT_NAMES, type ProcEventName } from "./src/proc/filter.ts";
export {
  CMDLINE_LIMIT,
  type ProcessInfo,
  type ProcReader,
  procReader,
  type ProcStat,
  type ReadOptions,
  readProcessInfo,
  userName,
} from "./src/proc/enrich.ts";
export { ProcessTable, type ProcessTableOptions } from "./src/proc/table.ts";
/** How `/proc` is read: implement it to feed `readProcessInfo` or `ProcessTable` in tests. */
export type { FileReader } from "./src/ffi/files.ts";
export type { ReceiptStats } from "./src/proc/receipt.ts";
export { type CgroupInfo, type ContainerRef, parseCgroup } from "./src/proc/cgroup.ts";
export { decodeBytes, encodeText, escapeBytes, escapeText, jsonText, safeJson } from "./src/proc/text.ts";
export {
  type EnrichedProcEvent,
  type FilterMode,
  type LostEvent,
  type ProcEventsOptions,
  ProcMonitor,
  type ProcMonitorDependencies,
  type ProcMonitorItem,
  type ProcMonitorOptions,
  type ProcMonitorOverOptions,
  type ProcMonitorStats,
  watchProcesses,
} from "./src/proc/monitor.ts";
export { bootOffsetClock, type ClockOptions, monotonicClock, wallClock } from "./src/proc/clock.ts";
export { decodeProcInput, encodeProcInput, type ProcInput } from "./src/codec/proc.ts";
export {
  ECS_VERSION,
  type EcsDocument,
  type EcsOptions,
  type EcsValue,
  eventId,
  exitCodeOf,
  groupName,
  OTEL_SCHEMA_URL,
  OTEL_SEMCONV_VERSION,
  type OtelOptions,
  type OtelValue,
  type OtlpAnyValue,
  type OtlpLogRecord,
  type SchemaContext,
  toEcs,
  toOtelAttributes,
  toOtelLogRecord,
} from "./src/proc/schema.ts";
