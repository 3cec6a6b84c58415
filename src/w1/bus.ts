/**
 * `W1Bus`: a client of the kernel's 1-Wire core (`drivers/w1/w1_netlink.c`) on `Connector`.
 *
 * How the core answers (read in the 6.1 and 6.12 sources; verified on both in the kernel lab):
 * - `W1_LIST_MASTERS` is answered at once, inside our `sendto()`: one reply, `seq` = ours,
 *   `ack = seq + 1`, the master ids as u32 (no status reply).
 * - `W1_MASTER_CMD` / `W1_SLAVE_CMD` run later in the master's kernel thread. Every command gets a
 *   status reply (`ack` = the request's `ack`, `status` = the errno as a u8, the command header with
 *   `len` 0); commands that return data (read, touch, search, list slaves) first get a data reply
 *   (`ack = seq + 1`) with the command and its data. A failing command does not stop the next.
 * - Errors of the whole message (no such master or slave, a bad type, unknown `cn_msg.flags`) come
 *   as one status reply without a command. A slave command starts with a reset, then SKIP ROM when
 *   the master has one slave attached, else MATCH ROM; when no device answers the reset, one status
 *   reply, `ENODEV`, comes with the first command. (A slave that left a bus other devices remain on
 *   is not noticed by the select: it reads 0xff.)
 * - Replies go to the requesting port only; bus events (slave/master added/removed) are multicast to
 *   group 3 with the master's event counter as `seq`.
 *
 * So a request is tagged with its own `seq` and an `ack` that can never equal `seq + 1`, and is over
 * when every command has its status (or a message-level error came).
 *
 * @module
 */
import type { ConnectorMessage, ConnectorOptions } from "../connector/types.ts";
import type { ReceiveBufferSize } from "../core/types.ts";
import { Connector } from "../connector/connector.ts";
import {
  decodeW1Messages,
  encodeW1Messages,
  masterIdBytes,
  parseW1Id,
  W1_CN_BUNDLE,
  W1_COMMAND,
  W1_MESSAGE,
  type W1Id,
  w1IdFromBytes,
  type W1NetlinkCommand,
  type W1NetlinkMessage,
} from "../codec/w1.ts";
import { CN_W1_IDX, CN_W1_VAL } from "../codec/constants.ts";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { errnoName, TimeoutError } from "../errors.ts";
import {
  type ByteInput,
  checkBytes,
  checkCount,
  checkFunction,
  checkOptions,
  checkSignal,
  checkTimeout,
  checkType,
  show,
} from "../args.ts";
import type {
  W1BusOptions,
  W1BusOverOptions,
  W1Event,
  W1EventsOptions,
  W1Op,
  W1RequestOptions,
  W1Result,
  W1Stats,
  W1Target,
} from "./types.ts";

const W1_ID = { idx: CN_W1_IDX, val: CN_W1_VAL } as const;
/** The group the w1 core multicasts bus events to (its idx). */
const W1_GROUP = CN_W1_IDX;
const ENODEV = 19;

const COMMAND_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(W1_COMMAND).map(([name, value]) => [value, `W1_CMD_${name}`]),
);

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
const ID_OPS = new Set<W1Op["op"]>(["search", "alarm-search", "list-slaves"]);
const SLAVE_OPS = new Set<W1Op["op"]>(["read", "write", "touch"]);
/** Commands that take the master's `mutex` in the kernel (see `#nudge`). */
const LOCKING_OPS = new Set<W1Op["op"]>(["add-slave", "remove-slave"]);
/** How long a slave add/remove may go unanswered before the master thread is woken. */
const NUDGE_MS = 100;

/** What went wrong on the bus, beside errnos: the kernel's status 255 after a reset, or a device's CRC. */
const BUS_CODES: Record<string, string> = {
  NO_PRESENCE: "no device answered the reset pulse",
  CRC: "the data failed its CRC",
  VERIFY: "the data read back differs from what was written",
  POWER_ON: "the device holds its power-on value",
};

/**
 * A 1-Wire request failed: the kernel answered a command (or the whole message) with an error, or a
 * device helper found bad data.
 *
 * `code` is the errno name the kernel sent (`"ENODEV"`, `"EINVAL"`, `"E2BIG"`, `"EPROTO"`, ...), or
 * `"NO_PRESENCE"` (a reset found no device: the kernel's status 255), `"CRC"`, `"VERIFY"` or
 * `"POWER_ON"` (device helpers: a thermometer that never converted). `op` names what failed: the command (`"W1_CMD_RESET"`) or the message (`"W1_SLAVE_CMD"`).
 * `results` holds what the other commands of the transaction returned (the kernel runs them all).
 *
 * @example
 * ```ts
 * import { W1Error } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const err = new W1Error("reset bus master 1", "W1_CMD_RESET", 255);
 * assert.equal(err.code, "NO_PRESENCE");
 * assert.match(err.message, /^Cannot reset bus master 1: W1_CMD_RESET failed with NO_PRESENCE/);
 * ```
 */
export class W1Error extends Error {
  /** `"ENODEV"`, `"EINVAL"`, ... or `"NO_PRESENCE"`, `"CRC"`, `"VERIFY"`, `"POWER_ON"`. */
  readonly code: string;
  /** What failed: `"W1_CMD_READ"`, `"W1_SLAVE_CMD"`, `"W1_MASTER_CMD"`, `"W1_LIST_MASTERS"`, or a helper's step. */
  readonly op: string;
  /** The kernel's status byte (0 for helper checks). */
  readonly status: number;
  /** Index of the failed command in the transaction, or -1 for the whole message. */
  readonly index: number;
  /** The results of every command of the transaction (those that failed have empty data). */
  readonly results: W1Result[];

  /**
   * Builds the error: "Cannot `what`: `op` failed with `code` (...)".
   *
   * @param what what was being done, as a phrase
   * @param op the command or message that failed
   * @param status the kernel's status byte (an errno, or 255 after a reset without presence), or a
   *   code string for checks done here (`"CRC"`, `"VERIFY"`)
   * @param details the command index, the transaction's results, and a hint
   */
  constructor(
    what: string,
    op: string,
    status: number | string,
    details: { index?: number; results?: W1Result[]; hint?: string } = {},
  ) {
    const code = typeof status === "string" ? status : status === 255 ? "NO_PRESENCE" : errnoName(status);
    const text = BUS_CODES[code] ?? W1_ERRNO_TEXT[code] ?? "error";
    super(`Cannot ${what}: ${op} failed with ${code} (${text})${details.hint ? `; ${details.hint}` : ""}`);
    this.name = "W1Error";
    this.code = code;
    this.op = op;
    this.status = typeof status === "number" ? status : 0;
    this.index = details.index ?? -1;
    this.results = details.results ?? [];
  }
}

const W1_ERRNO_TEXT: Record<string, string> = {
  ENODEV: "no such device",
  EINVAL: "invalid argument",
  E2BIG: "argument list too long",
  EPROTO: "protocol error",
  ENOMEM: "cannot allocate memory",
};

/** Accepts a W1Id or its sysfs name. */
function idOf(id: W1Id | string, what: string): W1Id {
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

const OPEN_KEYS = [
  "rcvbuf",
  "libcPath",
  "onError",
  "onOverrun",
  "maxQueued",
  "maxQueuedBytes",
  "bundle",
] as const satisfies readonly (keyof W1BusOptions)[];
const OVER_KEYS = ["bundle"] as const satisfies readonly (keyof W1BusOverOptions)[];
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
  checkType(opts.libcPath, "libcPath", "string");
  checkFunction(opts.onError, "onError");
  checkFunction(opts.onOverrun, "onOverrun");
  checkCount(opts.maxQueued, "maxQueued", 1);
  checkCount(opts.maxQueuedBytes, "maxQueuedBytes", 1);
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

/**
 * What a timeout without a single reply means: no w1 core in the kernel to answer (the connector drops
 * messages for an id nobody registered without a word; seen on the host's 6.18 without the wire module).
 * With the core loaded, every request is answered, also for a master that does not exist (ENODEV).
 */
const NO_W1_CORE = "nothing answered: the kernel's 1-Wire core is probably not loaded (modprobe wire, on a " +
  "kernel with CONFIG_W1 and CONFIG_W1_CON), or the command took longer than timeoutMs (a search that " +
  "attaches many devices answers only when it is done: 32 attaches took over 5 s on Debian's 6.1)";

/** Runs an exchange; a timeout before any reply came becomes a TimeoutError that says to load the w1 core. */
async function orNoCore<T>(
  exchange: Promise<T>,
  replied: () => boolean,
  what: string,
  timeoutMs: number | undefined,
): Promise<T> {
  try {
    return await exchange;
  } catch (err) {
    if (err instanceof TimeoutError && !replied()) {
      throw new TimeoutError(`No reply from the kernel's 1-Wire core to ${what}`, timeoutMs ?? 5000, NO_W1_CORE);
    }
    throw err;
  }
}

function describeTarget(target: W1Target): string {
  return "master" in target ? `bus master ${target.master}` : `slave ${(target.slave as W1Id).name}`;
}

/** Turns an op into its wire command, checking its arguments. */
function commandOf(op: W1Op, onSlave: boolean): W1NetlinkCommand {
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

function idsIn(data: Uint8Array): W1Id[] {
  const ids: W1Id[] = [];
  for (let at = 0; at + 8 <= data.byteLength; at += 8) ids.push(w1IdFromBytes(data.subarray(at, at + 8)));
  return ids;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.byteLength === 0) return b.slice();
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/**
 * A client of the kernel's 1-Wire core over the connector: bus masters, ROM search, transactions on
 * a master or a slave, and bus events.
 *
 * Needs a kernel with `CONFIG_W1` and `CONFIG_W1_CON` (the `wire` module loaded) and a bus master
 * driver. Any user may send commands (the w1 core checks no capability: a write to a device is
 * allowed to everyone who can open a netlink socket); events need group 3, which CAP_NET_ADMIN always
 * allows, and mainline Linux >= 6.6 to any user too (older kernels and some vendor builds refuse it).
 *
 * @example List the masters and search each bus
 * ```ts ignore
 * import { W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * for (const master of await bus.listMasters()) {
 *   for (const id of await bus.search(master)) console.log(master, id.name, id.crcValid);
 * }
 * ```
 */
export class W1Bus implements AsyncDisposable, Disposable {
  readonly #conn: Connector;
  readonly #bundle: boolean;
  readonly #stats = { foreign: 0, malformed: 0 };
  #seq = Math.floor(Math.random() * 0x7fffffff);

  /** Use {@linkcode W1Bus.open} or {@linkcode W1Bus.over}. */
  private constructor(conn: Connector, options: W1BusOptions) {
    this.#conn = conn;
    this.#bundle = options.bundle ?? true;
  }

  /**
   * Opens a connector socket for the w1 core.
   *
   * @throws {TypeError} an unknown option (the message lists the accepted ones), a wrong type
   * @throws {NetlinkError} the socket cannot be made (no connector in the kernel)
   */
  static async open(options?: W1BusOptions): Promise<W1Bus> {
    const opts = checkW1BusOptions(options);
    const connOptions: ConnectorOptions = {
      rcvbuf: opts.rcvbuf,
      libcPath: opts.libcPath,
      onError: opts.onError,
      onOverrun: opts.onOverrun,
      maxQueued: opts.maxQueued,
      maxQueuedBytes: opts.maxQueuedBytes,
    };
    return new W1Bus(await Connector.open(connOptions), opts);
  }

  /**
   * Builds a bus client over a connector that is already open: the seam the fake kernel and tests use,
   * the way `open()` is this over a new connector. The bus owns the connector from then on: `close()`
   * closes it. Options are checked as `open()` checks them.
   *
   * @param connector an open `Connector` (its receive buffer, limits and hooks are the bus's)
   * @param options the bus's own: `bundle`
   * @returns the bus client
   * @throws {TypeError} `connector` is not an open Connector, an unknown option, a wrong type
   *
   * @example Over a fake kernel's connector
   * ```ts
   * import { W1Bus } from "@cnlink/connector/w1";
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernel();
   * const master = kernel.enableW1().addMaster();
   * await using bus = await W1Bus.over(await kernel.connect(), { bundle: false });
   * assert.deepEqual(await bus.listMasters(), [master]);
   * ```
   */
  static over(connector: Connector, options?: W1BusOverOptions): Promise<W1Bus> {
    try {
      const opts = checkOptions("W1Bus.over options", options, OVER_KEYS);
      checkType(opts.bundle, "bundle", "boolean");
      if (!(connector instanceof Connector)) {
        throw new TypeError(`connector must be an open Connector, got ${show(connector)}`);
      }
      if (connector.closed) throw new TypeError("connector must be an open Connector, got a closed one");
      return Promise.resolve(new W1Bus(connector, opts));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The connector below (its port, groups, callbacks). */
  get connector(): Connector {
    return this.#conn;
  }

  /** Whether `close()` was called (or an error closed the connector below). */
  get closed(): boolean {
    return this.#conn.closed;
  }

  /** The receive buffer of the connector below: what was asked for, and what the kernel reports. */
  get receiveBuffer(): ReceiveBufferSize {
    return this.#conn.receiveBuffer;
  }

  /**
   * The connector's counters, with what the bus set aside added in: `foreign` (messages to group 3
   * not from the kernel) and `malformed` (1-Wire payloads that did not decode).
   */
  get stats(): Readonly<W1Stats> {
    const conn = this.#conn.stats;
    return {
      ...conn,
      foreign: conn.foreign + this.#stats.foreign,
      malformed: conn.malformed + this.#stats.malformed,
    };
  }

  /**
   * The ids of the registered bus masters (`W1_LIST_MASTERS`).
   *
   * @throws {TimeoutError} no answer: the w1 core is not loaded (`modprobe wire`) or the kernel has no
   *   `CONFIG_W1_CON`; the message says so
   * @throws {TypeError} an unknown option or a signal that is not an `AbortSignal`
   * @throws {RangeError} `timeoutMs` not finite with 0 < t <= 2147483647
   *
   * @example
   * ```ts ignore
   * import { W1Bus } from "@cnlink/connector/w1";
   *
   * await using bus = await W1Bus.open();
   * console.log(await bus.listMasters()); // e.g. [1]
   * ```
   */
  async listMasters(options?: W1RequestOptions): Promise<number[]> {
    const wait = this.#wait("listMasters options", options);
    const seq = this.#nextSeq();
    const ack = (seq + 0x80000000) >>> 0;
    const data = encodeW1Messages([{ type: W1_MESSAGE.LIST_MASTERS, id: new Uint8Array(8) }]);
    const replies = await orNoCore(
      this.#conn.requestAll({ id: W1_ID, seq, ack, data }, {
        ...wait,
        match: (m) => m.source.port === 0 && m.seq === seq && (m.ack === ((seq + 1) >>> 0) || m.ack === ack),
        until: () => true,
      }),
      () => false,
      "list the bus masters",
      wait.timeoutMs,
    );
    const [reply] = replies;
    const messages = this.#decode(reply);
    const failed = messages.find((m) => m.status !== 0);
    if (reply.ack === ack || failed) {
      throw new W1Error("list the bus masters", "W1_LIST_MASTERS", failed?.status ?? 0);
    }
    const masters: number[] = [];
    for (const m of messages) {
      if (m.type !== W1_MESSAGE.LIST_MASTERS) continue;
      const view = new DataView(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      for (let at = 0; at + 4 <= m.data.byteLength; at += 4) masters.push(view.getUint32(at, LITTLE_ENDIAN));
    }
    return masters;
  }

  /**
   * Runs commands on a master or a slave in one request and returns each command's result. The
   * kernel runs the commands in order, holding the bus, and goes on after one fails; the first
   * failure is thrown with every result attached.
   *
   * @param target `{ master: id }`, or `{ slave: id }` (the kernel resets the bus and selects the
   *   slave first; only read, write and touch)
   * @param ops the commands, at least one
   * @throws {TypeError} a bad command, or a master-only command on a slave (nothing is sent)
   * @throws {W1Error} the kernel refused the message (`ENODEV`: no such master, a slave the kernel
   *   has not attached, or no device answering the reset before a slave's select) or a command
   *   (`NO_PRESENCE` after a reset, `EINVAL`, ...)
   * @throws {TimeoutError} not all replies came within `timeoutMs`; when none came at all, the message
   *   says to load the kernel's w1 core (`modprobe wire`)
   * @throws {RangeError} `timeoutMs` not finite with 0 < t <= 2147483647 (nothing is sent)
   *
   * @example Read a DS18B20's scratchpad by hand, from the master
   * ```ts ignore
   * import { W1Bus } from "@cnlink/connector/w1";
   *
   * await using bus = await W1Bus.open();
   * const [id] = await bus.search(1);
   * const [, , , read] = await bus.transaction({ master: 1 }, [
   *   { op: "reset" },
   *   { op: "write", data: [0x55, ...id.bytes] }, // MATCH ROM
   *   { op: "write", data: [0xbe] }, // READ SCRATCHPAD
   *   { op: "read", length: 9 },
   * ]);
   * console.log(read.data);
   * ```
   */
  async transaction(target: W1Target, ops: readonly W1Op[], options?: W1RequestOptions): Promise<W1Result[]> {
    const wait = this.#wait("options", options);
    const resolved = this.#target(target);
    if (!Array.isArray(ops) || ops.length === 0) throw new TypeError("a transaction needs at least one command");
    const onSlave = "slave" in resolved;
    const commands = ops.map((op) => commandOf(op, onSlave));
    const type = onSlave ? W1_MESSAGE.SLAVE_CMD : W1_MESSAGE.MASTER_CMD;
    const message = {
      type,
      id: onSlave ? (resolved.slave as W1Id).bytes : masterIdBytes(resolved.master),
      commands,
    };
    const where = describeTarget(resolved);
    const what = ops.length === 1 ? `${ops[0].op} on ${where}` : `run ${ops.length} commands on ${where}`;
    const messageOp = onSlave ? "W1_SLAVE_CMD" : "W1_MASTER_CMD";
    const data = encodeW1Messages([message]);
    const seq = this.#nextSeq();
    const ack = (seq + 0x80000000) >>> 0;
    const results: W1Result[] = ops.map((op) => ({ op: op.op, data: new Uint8Array(0), ids: [] }));
    const statuses: { index: number; status: number }[] = [];
    let messageError: number | undefined;
    let selectFailed = false;
    let next = 0; // the command whose status comes next
    let replied = false;
    const nudging = !onSlave && ops.some((op) => LOCKING_OPS.has(op.op))
      ? this.#nudge((resolved as { master: number }).master)
      : undefined;
    const exchange = this.#conn.requestAll({ id: W1_ID, seq, ack, flags: this.#bundle ? W1_CN_BUNDLE : 0, data }, {
      ...wait,
      match: (m) => m.source.port === 0 && m.seq === seq && (m.ack === ((seq + 1) >>> 0) || m.ack === ack),
      until: (m) => {
        replied = true;
        for (const w of this.#decode(m)) {
          if (m.ack === ack) {
            // A status: with its command, or for the whole message.
            if (w.commands.length === 0) {
              messageError = w.status;
              return true;
            }
            if (onSlave && w.status === ENODEV && next === 0) selectFailed = true;
            statuses.push({ index: next, status: w.status });
            next++;
            if (selectFailed) return true;
          } else {
            for (const c of w.commands) {
              const result = results[Math.min(next, results.length - 1)];
              if (ID_OPS.has(result.op)) result.ids.push(...idsIn(c.data));
              else result.data = concat(result.data, c.data);
            }
          }
        }
        return next >= ops.length;
      },
    });
    try {
      await orNoCore(exchange, () => replied, what, wait.timeoutMs);
    } finally {
      nudging?.stop();
    }
    if (messageError !== undefined) {
      throw new W1Error(what, messageOp, messageError, { results, hint: hintFor(messageError, resolved, false) });
    }
    if (selectFailed) {
      throw new W1Error(what, messageOp, ENODEV, { results, hint: hintFor(ENODEV, resolved, true) });
    }
    const failed = statuses.find((s) => s.status !== 0);
    if (failed) {
      const cmd = commands[failed.index].cmd;
      throw new W1Error(what, COMMAND_NAMES[cmd], failed.status, {
        index: failed.index,
        results,
        hint: failed.status === 255 ? "check the wiring and the pull-up, or search the bus again" : undefined,
      });
    }
    return results;
  }

  /**
   * Searches the bus (SEARCH ROM) and returns the ids found, in the order of the search. The kernel
   * also attaches new slaves (a `slave-added` event) and counts down those not found (detached when
   * their time to live, the `wire` module's `slave_ttl`, runs out).
   *
   * Ids whose CRC is wrong are returned too, with `crcValid: false` (the kernel does not attach them).
   */
  async search(master: number, options?: W1RequestOptions): Promise<W1Id[]> {
    const [result] = await this.transaction({ master }, [{ op: "search" }], options);
    return result.ids;
  }

  /**
   * Searches for devices in the alarm state (ALARM SEARCH, e.g. thermometers outside their limits).
   *
   * Note: the kernel counts this search like a full one, so slaves not in alarm lose one unit of
   * their time to live (with `slave_ttl=1` they are detached).
   */
  async alarmSearch(master: number, options?: W1RequestOptions): Promise<W1Id[]> {
    const [result] = await this.transaction({ master }, [{ op: "alarm-search" }], options);
    return result.ids;
  }

  /** The slaves the kernel has attached on a master (no bus traffic). */
  async listSlaves(master: number, options?: W1RequestOptions): Promise<W1Id[]> {
    const [result] = await this.transaction({ master }, [{ op: "list-slaves" }], options);
    return result.ids;
  }

  /**
   * Sends a reset pulse.
   *
   * @throws {W1Error} `NO_PRESENCE` when no device answered
   */
  async reset(master: number, options?: W1RequestOptions): Promise<void> {
    await this.transaction({ master }, [{ op: "reset" }], options);
  }

  /** Reads `length` bytes (read slots) from a master, or from a slave after the kernel selects it. */
  async read(target: W1Target, length: number, options?: W1RequestOptions): Promise<Uint8Array> {
    const [result] = await this.transaction(target, [{ op: "read", length }], options);
    return result.data;
  }

  /** Writes bytes to a master's bus, or to a slave after the kernel selects it. */
  async write(target: W1Target, data: ByteInput, options?: W1RequestOptions): Promise<void> {
    await this.transaction(target, [{ op: "write", data }], options);
  }

  /** Writes bytes bit by bit and returns what the bus read back in each slot (a 0xff byte reads). */
  async touch(target: W1Target, data: ByteInput, options?: W1RequestOptions): Promise<Uint8Array> {
    const [result] = await this.transaction(target, [{ op: "touch", data }], options);
    return result.data;
  }

  /**
   * Attaches a slave by id without a search (the kernel emits `slave-added`).
   *
   * When the kernel does not answer within 100 ms, its master thread is woken with a harmless
   * request until it does (a kernel lock bug in 6.1 and 6.12 leaves it waiting after a search that
   * attached new slaves; see the README).
   *
   * @throws {W1Error} `EINVAL` when it is already attached
   */
  async addSlave(master: number, id: W1Id | string, options?: W1RequestOptions): Promise<void> {
    await this.transaction({ master }, [{ op: "add-slave", id }], options);
  }

  /**
   * Detaches a slave (the kernel emits `slave-removed`).
   *
   * @throws {W1Error} `EINVAL` when it is not attached
   */
  async removeSlave(master: number, id: W1Id | string, options?: W1RequestOptions): Promise<void> {
    await this.transaction({ master }, [{ op: "remove-slave", id }], options);
  }

  /**
   * Bus events as they come: slaves and masters added and removed. Joins group 3 on first use.
   * Only messages from the kernel are taken (others, which a root process can send to group 3, are
   * counted in `stats.foreign`). Replies to requests are only taken from the kernel too.
   *
   * @throws {NetlinkError} EPERM when the kernel refuses group 3 without CAP_NET_ADMIN (before Linux 6.6, and on some vendor builds)
   *
   * @example Watch slaves come and go
   * ```ts ignore
   * import { W1Bus } from "@cnlink/connector/w1";
   *
   * await using bus = await W1Bus.open();
   * for await (const e of bus.events()) {
   *   if (e.type === "slave-added" || e.type === "slave-removed") console.log(e.type, e.id.name);
   * }
   * ```
   */
  events(options?: W1EventsOptions): AsyncIterableIterator<W1Event> {
    const opts = checkOptions("events options", options, ["signal"]);
    checkSignal(opts.signal);
    if (!this.#conn.groups.includes(W1_GROUP)) this.#conn.join(W1_GROUP);
    const messages = this.#conn.messages({ id: W1_ID, signal: opts.signal });
    // A plain iterator over the connector's stream (not an async generator), so that return()
    // ends a pending next() at once, as the connector's own iterators do.
    const pending: W1Event[] = [];
    const iterator: AsyncIterableIterator<W1Event> = {
      next: async (): Promise<IteratorResult<W1Event>> => {
        while (pending.length === 0) {
          const r = await messages.next();
          if (r.done) return { done: true, value: undefined };
          const m = r.value;
          if (m.source.group !== W1_GROUP) continue; // a reply to a request: not an event
          if (!this.#fromKernel(m)) continue;
          for (const w of this.#decode(m)) {
            const event = eventOf(w, m.seq);
            if (event) pending.push(event);
          }
        }
        return { done: false, value: pending.shift()! };
      },
      return: async (): Promise<IteratorResult<W1Event>> => {
        pending.length = 0;
        await messages.return?.();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  /** Closes the socket: pending requests reject with a `ClosedError`, event iterators end. */
  close(): Promise<void> {
    return this.#conn.close();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Starts `close()` without waiting for it. */
  [Symbol.dispose](): void {
    void this.close();
  }

  #nextSeq(): number {
    const seq = this.#seq;
    this.#seq = (this.#seq + 1) >>> 0;
    return seq;
  }

  /**
   * Wakes the master's kernel thread every NUDGE_MS until `stop()`, with a request that touches
   * neither the bus nor the lock (LIST_SLAVES, whose replies are dropped).
   *
   * Why: in Linux 6.1 and 6.12 a netlink SEARCH that attaches a new slave leaves the master's
   * `mutex` held by the master thread (w1_attach_slave_device releases and retakes a lock that the
   * netlink search path never took). The next SLAVE_ADD/SLAVE_REMOVE, which takes that lock, then
   * waits in the thread until something wakes it again; it completes after the wake-up and
   * releases the lock, which also lets a later removal of the master (rmmod of its driver) go
   * through instead of hanging. Measured in the kernel lab (lab/tests/w1.test.ts).
   */
  #nudge(master: number): { stop(): void } {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = () => {
      if (stopped || this.#conn.closed) return;
      const data = encodeW1Messages([{
        type: W1_MESSAGE.MASTER_CMD,
        id: masterIdBytes(master),
        commands: [{ cmd: W1_COMMAND.LIST_SLAVES, data: new Uint8Array(0) }],
      }]);
      const seq = this.#nextSeq();
      const ack = (seq + 0x80000000) >>> 0;
      this.#conn.requestAll({ id: W1_ID, seq, ack, data }, {
        timeoutMs: 1000,
        match: (m) => m.source.port === 0 && m.seq === seq,
        until: (m) => m.ack === ack,
      }).catch(() => {});
      timer = setTimeout(tick, NUDGE_MS);
    };
    timer = setTimeout(tick, NUDGE_MS);
    return {
      stop: () => {
        stopped = true;
        clearTimeout(timer);
      },
    };
  }

  #target(target: W1Target): { master: number } | { slave: W1Id } {
    if (typeof target !== "object" || target === null) {
      throw new TypeError("a target is { master: id } or { slave: id }");
    }
    if ("master" in target) return { master: checkMaster(target.master) };
    if ("slave" in target) return { slave: idOf(target.slave, "slave") };
    throw new TypeError("a target is { master: id } or { slave: id }");
  }

  #fromKernel(m: ConnectorMessage): boolean {
    if (m.source.port === 0) return true;
    this.#stats.foreign++;
    return false;
  }

  #decode(m: ConnectorMessage): W1NetlinkMessage[] {
    try {
      return decodeW1Messages(m.data);
    } catch {
      this.#stats.malformed++;
      return [];
    }
  }

  #wait(name: string, options: W1RequestOptions | undefined): { timeoutMs?: number; signal?: AbortSignal } {
    const opts = checkW1RequestOptions(name, options);
    return { timeoutMs: opts.timeoutMs, signal: opts.signal };
  }
}

function hintFor(status: number, target: { master: number } | { slave: W1Id }, select: boolean): string | undefined {
  if (status !== ENODEV) return undefined;
  if ("master" in target) return "no bus master has that id (listMasters() gives them)";
  return select
    ? "no device answered the reset before the select: the bus is empty or broken"
    : "the kernel has no slave with that id attached: a search attaches what it finds (or addSlave)";
}

function eventOf(w: W1NetlinkMessage, seq: number): W1Event | undefined {
  switch (w.type) {
    case W1_MESSAGE.SLAVE_ADD:
      return { type: "slave-added", id: w1IdFromBytes(w.id), seq };
    case W1_MESSAGE.SLAVE_REMOVE:
      return { type: "slave-removed", id: w1IdFromBytes(w.id), seq };
    case W1_MESSAGE.MASTER_ADD:
    case W1_MESSAGE.MASTER_REMOVE: {
      const master = new DataView(w.id.buffer, w.id.byteOffset, 4).getUint32(0, LITTLE_ENDIAN);
      return { type: w.type === W1_MESSAGE.MASTER_ADD ? "master-added" : "master-removed", master, seq };
    }
    default:
      return undefined;
  }
}
