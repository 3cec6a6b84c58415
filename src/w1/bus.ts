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
  W1_CN_BUNDLE,
  W1_MESSAGE,
  type W1Id,
  type W1NetlinkMessage,
} from "../codec/w1.ts";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { type ByteInput, checkOptions, checkSignal, checkType, show } from "../args.ts";
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
import {
  checkW1BusOptions,
  checkW1RequestOptions,
  commandOf,
  describeTarget,
  OVER_KEYS,
  resolveTarget,
  targetIdBytes,
} from "./args.ts";
import { W1Error } from "./error.ts";
import { orNoCore, TransactionReplies, W1_ID } from "./transaction.ts";
import { LOCKING_OPS, nudge } from "./nudge.ts";
import { W1_GROUP, w1Events } from "./events.ts";

export { W1Error } from "./error.ts";
export { checkW1BusOptions, checkW1RequestOptions } from "./args.ts";

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
    const resolved = resolveTarget(target);
    if (!Array.isArray(ops) || ops.length === 0) throw new TypeError("a transaction needs at least one command");
    const onSlave = "slave" in resolved;
    const commands = ops.map((op) => commandOf(op, onSlave));
    const type = onSlave ? W1_MESSAGE.SLAVE_CMD : W1_MESSAGE.MASTER_CMD;
    const where = describeTarget(resolved);
    const what = ops.length === 1 ? `${ops[0].op} on ${where}` : `run ${ops.length} commands on ${where}`;
    const data = encodeW1Messages([{ type, id: targetIdBytes(resolved), commands }]);
    const seq = this.#nextSeq();
    const ack = (seq + 0x80000000) >>> 0;
    const replies = new TransactionReplies(ops, commands, resolved, ack, what);
    const nudging = !onSlave && ops.some((op) => LOCKING_OPS.has(op.op))
      ? nudge(this.#conn, (resolved as { master: number }).master, () => this.#nextSeq())
      : undefined;
    const exchange = this.#conn.requestAll({ id: W1_ID, seq, ack, flags: this.#bundle ? W1_CN_BUNDLE : 0, data }, {
      ...wait,
      match: (m) => m.source.port === 0 && m.seq === seq && (m.ack === ((seq + 1) >>> 0) || m.ack === ack),
      until: (m) => replies.take(m, this.#decode(m)),
    });
    try {
      await orNoCore(exchange, () => replies.replied, what, wait.timeoutMs);
    } finally {
      nudging?.stop();
    }
    return replies.outcome();
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
    return w1Events(this.#conn, opts.signal, (m) => this.#fromKernel(m), (m) => this.#decode(m));
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
