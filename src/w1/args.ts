/**
 * The argument checks of the 1-Wire client: options, targets, ids, and each op turned into its wire
 * command (nothing is sent before these pass).
 *
 * @module
 */
import { masterIdBytes, parseW1Id, W1_COMMAND, type W1Id, w1IdFromBytes, type W1NetlinkCommand } from "../codec/w1.ts";
import {
  checkBytes,
  checkOptions,
  checkSignal,
  checkSocketClientOptions,
  checkTimeout,
  checkType,
  SOCKET_CLIENT_KEYS,
} from "../args.ts";
import type { W1BusOptions, W1BusOverOptions, W1Op, W1RequestOptions, W1Target } from "./types.ts";

const OPS: Record<W1Op["op"], number> = {
  "reset": W1_COMMAND.RESET,
  "write": W1_COMMAND.WRITE,
  "read": W1_COMMAND.READ,
  "touch": W1_COMMAND.TOUCH,
  "search": W1_COMMAND.SEARCH,
  "alarm-search": W1_COMMAND.ALARM_SEARCH,
  "list-slaves": W1_COMMAND.LIST_SLAVES,
  "add-slave": W1_COMMAND.SLAVE_ADD,
  "remove-slave": W1_COMMAND.SLAVE_REMOVE,
};
const SLAVE_OPS = new Set<W1Op["op"]>(["read", "write", "touch"]);

/** Accepts a W1Id or its sysfs name. */
export function idOf(id: W1Id | string, what: string): W1Id {
  if (typeof id === "string") return parseW1Id(id);
  if (typeof id === "object" && id !== null && id.bytes instanceof Uint8Array && id.bytes.byteLength === 8) {
    return w1IdFromBytes(id.bytes);
  }
  throw new TypeError(`${what} must be a 1-Wire id (a W1Id, or its name like "28-0123456789ab")`);
}

function checkMaster(master: number): number {
  if (!Number.isInteger(master) || master < 0 || master > 0xffffffff) {
    throw new RangeError(`a bus master id is a u32 (listMasters() gives them), got ${master}`);
  }
  return master;
}

const OPEN_KEYS = [...SOCKET_CLIENT_KEYS, "bundle"] as const satisfies readonly (keyof W1BusOptions)[];
/** The keys of `W1Bus.over`'s options: the bus's own. */
export const OVER_KEYS = ["bundle"] as const satisfies readonly (keyof W1BusOverOptions)[];
const REQUEST_KEYS = ["timeoutMs", "signal"] as const satisfies readonly (keyof W1RequestOptions)[];

/**
 * Checks `W1Bus.open`'s options (and the fake kernel's `openW1Bus`) before anything is opened.
 *
 * @throws {TypeError} an unknown key or a wrong type
 * @throws {RangeError} rcvbuf out of range
 */
export function checkW1BusOptions(options: W1BusOptions | undefined): W1BusOptions {
  const opts = checkOptions("W1Bus options", options, OPEN_KEYS);
  checkType(opts.bundle, "bundle", "boolean");
  checkSocketClientOptions(opts);
  return opts;
}

/**
 * Checks the options of one request (`timeoutMs`, `signal`, and for the device helpers `extra` keys).
 *
 * @throws {TypeError} an unknown key, a signal that is not an `AbortSignal`
 * @throws {RangeError} `timeoutMs` not finite with 0 < t <= 2147483647
 */
export function checkW1RequestOptions<T extends W1RequestOptions>(
  name: string,
  options: T | undefined,
  extra: readonly string[] = [],
): T {
  const opts = checkOptions(name, options, [...REQUEST_KEYS, ...extra]);
  checkTimeout(opts.timeoutMs);
  checkSignal(opts.signal);
  return opts;
}

/** A target with its id checked: a master's u32, or a slave's ROM id. */
export type ResolvedTarget = { master: number } | { slave: W1Id };

/**
 * Checks a target and resolves a slave's name to its id.
 *
 * @throws {TypeError} not `{ master }` or `{ slave }`, or a slave id that is not one
 * @throws {RangeError} a master id that is not a u32
 */
export function resolveTarget(target: W1Target): ResolvedTarget {
  if (typeof target !== "object" || target === null) {
    throw new TypeError("a target is { master: id } or { slave: id }");
  }
  if ("master" in target) return { master: checkMaster(target.master) };
  if ("slave" in target) return { slave: idOf(target.slave, "slave") };
  throw new TypeError("a target is { master: id } or { slave: id }");
}

/** The id bytes of a target, as the w1 message header carries them. */
export function targetIdBytes(target: ResolvedTarget): Uint8Array {
  return "slave" in target ? target.slave.bytes : masterIdBytes(target.master);
}

/** "bus master 1", "slave 28-0123456789ab". */
export function describeTarget(target: W1Target): string {
  return "master" in target ? `bus master ${target.master}` : `slave ${(target.slave as W1Id).name}`;
}

/** Turns an op into its wire command, checking its arguments. */
export function commandOf(op: W1Op, onSlave: boolean): W1NetlinkCommand {
  if (typeof op !== "object" || op === null || !(op.op in OPS)) {
    throw new TypeError(`a 1-Wire command is { op: ${Object.keys(OPS).map((o) => `"${o}"`).join(" | ")}, ... }`);
  }
  if (onSlave && !SLAVE_OPS.has(op.op)) {
    throw new TypeError(
      `"${op.op}" runs on a master only; a slave takes read, write and touch (the kernel resets and selects it first)`,
    );
  }
  const cmd = OPS[op.op];
  switch (op.op) {
    case "write":
    case "touch": {
      const data = checkBytes(op.data, `${op.op}.data`);
      if (data.byteLength === 0) throw new RangeError(`${op.op} needs at least one byte`);
      return { cmd, data };
    }
    case "read": {
      if (!Number.isInteger(op.length) || op.length < 1 || op.length > 0xffff) {
        throw new RangeError(`read.length must be 1..65535 bytes, got ${op.length}`);
      }
      return { cmd, data: new Uint8Array(op.length) };
    }
    case "add-slave":
    case "remove-slave":
      return { cmd, data: idOf(op.id, `${op.op}.id`).bytes };
    default:
      return { cmd, data: new Uint8Array(0) };
  }
}
