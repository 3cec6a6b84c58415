/**
 * Event selection: names to the kernel's `proc_input.event_type` mask, and the same filter in
 * userspace for kernels before 6.6 (a copy of `cn_filter`'s rules).
 *
 * @module
 */
import { PROC_EVENT_ALL, PROC_EVENT_NONZERO_EXIT } from "./constants.ts";
import { type ProcEvent, WHAT_OF } from "./event.ts";

/** A name for `events`: an event type, or `"nonzero-exit"` (only exits with a non-zero wait status). */
export type ProcEventName =
  | "fork"
  | "exec"
  | "uid"
  | "gid"
  | "sid"
  | "ptrace"
  | "comm"
  | "coredump"
  | "exit"
  | "nonzero-exit";

const { ack: _ack, ...TYPE_BITS } = WHAT_OF;
const BITS: Record<ProcEventName, number> = { ...TYPE_BITS, "nonzero-exit": PROC_EVENT_NONZERO_EXIT };

/**
 * What a process table needs from the kernel whatever the user's filter: forks (new processes and
 * their parents), execs (new programs), exits (processes leaving), comm, uid and gid changes.
 */
export const TABLE_EVENTS: number = (WHAT_OF.fork | WHAT_OF.exec | WHAT_OF.exit | WHAT_OF.comm | WHAT_OF.uid |
  WHAT_OF.gid) >>> 0;

/** Every accepted event name. */
export const PROC_EVENT_NAMES: readonly ProcEventName[] = Object.keys(BITS) as ProcEventName[];

/**
 * The kernel mask for a list of names; all events when the list is empty or omitted.
 *
 * @throws {TypeError} an unknown name, or `names` not an array (a string is refused, not split)
 *
 * @example
 * ```ts
 * import { eventMask, PROC_EVENT_EXEC, PROC_EVENT_EXIT } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(eventMask(["exec", "exit"]), (PROC_EVENT_EXEC | PROC_EVENT_EXIT) >>> 0);
 * ```
 */
export function eventMask(names?: readonly string[]): number {
  const given: unknown = names;
  if (typeof given === "string") {
    const list = given.split(",").map((n) => n.trim()).filter(Boolean);
    throw new TypeError(
      `events must be an array of event names: pass ${JSON.stringify(list)}, not the string ${JSON.stringify(given)}`,
    );
  }
  if (names !== undefined && !Array.isArray(names)) {
    throw new TypeError(`events must be an array of event names like ["exec", "exit"], got ${typeof names}`);
  }
  if (!names || names.length === 0) return PROC_EVENT_ALL;
  let mask = 0;
  for (const name of names) {
    const bit = BITS[name as ProcEventName];
    if (bit === undefined) {
      throw new TypeError(`Unknown process event "${name}"; use one of ${PROC_EVENT_NAMES.join(", ")}`);
    }
    mask = (mask | bit) >>> 0;
  }
  return mask;
}

/**
 * Whether `event` passes `mask`, by the kernel's `cn_filter` rules. Acks and unknown types always pass.
 *
 * @example Only non-zero exits
 * ```ts
 * import { eventMask, passes } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const exit = {
 *   type: "exit", cpu: 0, timestampNs: 0n, seq: 0, pid: 9, tgid: 9,
 *   exitCode: 0, exitSignal: 17, parentPid: 1, parentTgid: 1,
 * } as const;
 * assert.equal(passes(exit, eventMask(["nonzero-exit"])), false);
 * ```
 */
export function passes(event: ProcEvent, mask: number): boolean {
  if (mask === PROC_EVENT_ALL) return true;
  if (event.type === "ack" || event.type === "unknown") return true;
  if (event.type === "exit" && (mask & PROC_EVENT_NONZERO_EXIT) !== 0 && event.exitCode !== 0) return true;
  return ((mask & WHAT_OF[event.type]) >>> 0) !== 0;
}
