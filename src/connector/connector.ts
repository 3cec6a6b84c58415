/**
 * `Connector`: the public client, on the receive core. It adds a registry of callbacks by
 * `{idx, val}`, async iterators and request/reply by seq/ack.
 *
 * @module
 */
import type { CallbackId, CnMessage, MessageInit } from "../codec/cn_msg.ts";
import { encodeMessage } from "../codec/cn_msg.ts";
import { MAX_DATA_TO_KERNEL } from "../codec/constants.ts";
import type { NetlinkAddress } from "../codec/netlink.ts";
import type { MessageStream } from "../core/message_stream.ts";
import { Receiver } from "../core/receiver.ts";
import { InFlightLimit, type InFlightTicket } from "../core/in_flight.ts";
import type { MessageSource, ReceiveBufferSize } from "../core/types.ts";
import { ClosedError, Errno, NetlinkError, TimeoutError } from "../errors.ts";
import { loadLibc } from "../ffi/load.ts";
import { describeAddress, NetlinkSocket } from "../socket/netlink_socket.ts";
import { checkTransport, groupBit, type Transport } from "../socket/transport.ts";
import {
  checkBytes,
  checkCount,
  checkFunction,
  checkGroup,
  checkGroups,
  checkId,
  checkOptions,
  checkSignal,
  checkSocketClientOptions,
  checkTimeout,
  MOVED_TO,
  show,
  SOCKET_CLIENT_KEYS,
} from "../args.ts";
import type {
  CallbackRegistration,
  ConnectorMessage,
  ConnectorOptions,
  ConnectorOverOptions,
  ConnectorStats,
  Destination,
  MessageInput,
  MessagesOptions,
  RequestAllOptions,
  RequestOptions,
  SendOptions,
} from "./types.ts";

type Callback = (message: ConnectorMessage) => void;
interface Registered {
  readonly handle: number;
  readonly name: string;
  readonly id: CallbackId;
  readonly fn: Callback;
}
interface Pending {
  readonly matches: (reply: ConnectorMessage) => boolean;
  /** Takes a matching reply; the exchange ends when it was the last. */
  readonly take: (reply: ConnectorMessage) => void;
  readonly reject: (error: unknown) => void;
}
interface Subscriber {
  readonly stream: MessageStream<ConnectorMessage>;
  readonly id?: CallbackId;
}

const keyOf = (id: CallbackId): string => `${id.idx}:${id.val}`;

/** The keys of `Connector.open`'s options. */
const OPEN_KEYS = [
  "groups",
  "port",
  ...SOCKET_CLIENT_KEYS,
  "maxInFlight",
  "whenBusy",
] as const satisfies readonly (keyof ConnectorOptions)[];
/** The keys of `Connector.over`'s options: how the socket is bound is the transport's business. */
const OVER_KEYS = OPEN_KEYS.filter((k) => k !== "groups" && k !== "port" && k !== "libcPath") as readonly (
  keyof ConnectorOverOptions
)[];
const SEND_KEYS = ["to"] as const satisfies readonly (keyof SendOptions)[];
const REQUEST_KEYS = ["to", "timeoutMs", "signal", "match"] as const satisfies readonly (keyof RequestOptions)[];
const REQUEST_ALL_KEYS = [...REQUEST_KEYS, "until"] as const satisfies readonly (keyof RequestAllOptions)[];
const MESSAGES_KEYS = ["id", "signal"] as const satisfies readonly (keyof MessagesOptions)[];

/**
 * Checks the options of `Connector.open` (and the fake kernel's `connect`) before anything is
 * loaded or opened.
 *
 * @throws {TypeError} an unknown key, a wrong type (`groups` not an array, a hook not a function)
 * @throws {RangeError} a group outside 1..32, a port, rcvbuf or limit out of range
 */
export function checkConnectorOptions(options: ConnectorOptions | undefined): ConnectorOptions {
  return checkOptionValues(checkOptions("Connector options", options, OPEN_KEYS));
}

function checkOptionValues(opts: ConnectorOptions): ConnectorOptions {
  checkGroups(opts.groups);
  checkCount(opts.port, "port", 0, 0xffffffff);
  checkSocketClientOptions(opts);
  checkCount(opts.maxInFlight, "maxInFlight", 1);
  if (opts.whenBusy !== undefined && opts.whenBusy !== "queue" && opts.whenBusy !== "fail") {
    throw new TypeError(`whenBusy must be "queue" or "fail", got ${show(opts.whenBusy)}`);
  }
  return opts;
}

/** Resolves `to` to a socket address; omitted means the kernel. */
function addressOf(to: Destination | undefined): NetlinkAddress {
  if (to === undefined) return { port: 0, groups: 0 };
  const shape = "to must be { port } or { group }; omit it to send to the kernel";
  if (typeof to !== "object" || to === null || Array.isArray(to)) throw new TypeError(`${shape} (got ${show(to)})`);
  checkOptions("to", to, ["port", "group"]);
  const hasPort = "port" in to;
  if (hasPort && "group" in to) {
    throw new TypeError(`${shape}, not both: a message goes to one port or to one group's members`);
  }
  if ("group" in to) return { port: 0, groups: groupBit(to.group) };
  if (hasPort) {
    if (!Number.isInteger(to.port) || to.port < 1 || to.port > 0xffffffff) {
      throw new RangeError(
        `to.port must be a port id in 1..4294967295 (omit "to" for the kernel), got ${show(to.port)}`,
      );
    }
    return { port: to.port, groups: 0 };
  }
  throw new TypeError(shape);
}

/** The message with its data as bytes: an array of bytes is checked and copied; the rest is encodeMessage's to check. */
function withBytes(message: MessageInput): MessageInit {
  if (typeof message === "object" && message !== null && Array.isArray(message.data)) {
    return { ...message, data: checkBytes(message.data, "message.data") };
  }
  return message as MessageInit;
}

/** Checks the options `request` and `requestAll` share. */
function checkRequestOptions(opts: RequestOptions): void {
  checkTimeout(opts.timeoutMs);
  checkSignal(opts.signal);
  checkFunction(opts.match, "match");
}

/**
 * A netlink connector socket with a callback registry, async iteration and request/reply.
 *
 * @example Ask the process-events connector for an ack
 * ```ts ignore
 * import { Connector, constants } from "@cnlink/connector";
 *
 * await using conn = await Connector.open({ groups: [constants.CN_IDX_PROC] });
 * const listen = new Uint32Array([1]); // PROC_CN_MCAST_LISTEN
 * const ack = await conn.request(
 *   { id: { idx: constants.CN_IDX_PROC, val: constants.CN_VAL_PROC }, ack: 42, data: listen },
 *   { match: (m, req) => m.ack === req.ack + 1 },
 * );
 * console.log("subscribed, ack", ack.ack);
 * ```
 */
export class Connector implements AsyncIterable<ConnectorMessage>, AsyncDisposable, Disposable {
  readonly #receiver: Receiver;
  readonly #options: ConnectorOptions;
  readonly #callbacks = new Map<string, Registered[]>();
  readonly #handles = new Map<number, Registered>();
  readonly #pending = new Set<Pending>();
  readonly #subscribers = new Set<Subscriber>();
  readonly #counts = { callbackErrors: 0, unhandled: 0 };
  readonly #limit: InFlightLimit;
  #requested: number | undefined;
  #nextHandle = 1;
  #nextSeq = Math.floor(Math.random() * 0x7fffffff);

  /** Use {@linkcode Connector.open}. */
  private constructor(transport: Transport, options: ConnectorOptions) {
    this.#options = options;
    this.#requested = options.rcvbuf;
    this.#limit = new InFlightLimit(options.maxInFlight);
    this.#receiver = new Receiver(transport, {
      wanted: () => this.#handles.size + this.#subscribers.size + this.#pending.size > 0,
      message: (m, source) => this.#deliver(m, source),
      overrun: () => {
        const report = options.onOverrun ??
          ((s) =>
            console.warn(`cnlink: receive buffer overrun on port ${this.port}, messages lost (${s.overruns} so far)`));
        report(this.stats);
      },
      failed: (error) => {
        this.#limit.pause();
        this.#rejectPending(new ClosedError("wait for a reply", error));
      },
    }, { maxQueued: options.maxQueued, maxQueuedBytes: options.maxQueuedBytes, onError: options.onError });
  }

  /**
   * Opens a connector socket, bound to `options.groups`.
   *
   * @param options groups, port, receive buffer, limits, error hooks
   * @returns the open connector
   * @throws {TypeError} an unknown option (the message lists the accepted ones), `groups` not an array
   * @throws {RangeError} a group outside 1..32, a bad port, rcvbuf or limit (before anything is opened)
   * @throws {NetlinkError} the socket cannot be made or bound (no connector, no permission, port in use)
   *
   * @example Joining two groups
   * ```ts ignore
   * import { Connector } from "@cnlink/connector";
   *
   * await using conn = await Connector.open({ groups: [15, 17], rcvbuf: 4 << 20 });
   * console.log(conn.port, conn.groups);
   * ```
   */
  static async open(options?: ConnectorOptions): Promise<Connector> {
    const opts = checkConnectorOptions(options);
    const libc = await loadLibc(opts.libcPath);
    return new Connector(NetlinkSocket.open(libc, opts), opts);
  }

  /**
   * Builds a connector over a transport that is already open and bound: the seam the fake kernel and
   * tests use (`Connector.over(kernel.socket({ groups: [14] }))`), the way `open()` is this over a
   * real socket. The connector owns the transport from then on: `close()` closes it. Options are
   * checked as `open()` checks them (before the transport is touched); `rcvbuf` is applied to it.
   *
   * @param transport the socket: a `Transport` (see `FakeKernelCore.socket`)
   * @param options as for `open`, without `groups`, `port` and `libcPath` (the transport's)
   * @returns the connector
   * @throws {TypeError} `transport` is not a Transport, an unknown option, a wrong type
   * @throws {RangeError} an rcvbuf or limit out of range
   *
   * @example Over a fake kernel's socket
   * ```ts
   * import { Connector } from "@cnlink/connector";
   * import { FakeKernelCore } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernelCore();
   * await using conn = await Connector.over(kernel.socket({ groups: [14] }), { maxQueued: 16 });
   * assert.deepEqual(conn.groups, [14]);
   * ```
   */
  static over(transport: Transport, options?: ConnectorOverOptions): Promise<Connector> {
    try {
      const opts = checkOptionValues(checkOptions("Connector.over options", options, OVER_KEYS));
      checkTransport(transport);
      if (opts.rcvbuf !== undefined) transport.setReceiveBuffer(opts.rcvbuf);
      return Promise.resolve(new Connector(transport, opts));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Our netlink port id (`nl_pid`). */
  get port(): number {
    return this.#receiver.transport.port;
  }

  /** The multicast groups this socket is in, ascending. */
  get groups(): number[] {
    this.#checkOpen("list the groups");
    return this.#receiver.transport.memberships();
  }

  /** A snapshot of the counters. */
  get stats(): Readonly<ConnectorStats> {
    return { ...this.#receiver.stats, ...this.#counts };
  }

  /** The receive buffer: what was asked for, and what the kernel reports (twice that, capped). */
  get receiveBuffer(): ReceiveBufferSize {
    return { requested: this.#requested, reported: this.#receiver.transport.rcvbuf };
  }

  /** Whether `close()` was called (or an error closed the connector). */
  get closed(): boolean {
    return this.#receiver.closed;
  }

  #checkOpen(what: string): void {
    if (this.#receiver.closed) throw new ClosedError(what, this.#receiver.closeReason);
  }

  /**
   * Joins multicast group `group` (1..32).
   *
   * @throws {RangeError} outside 1..32
   * @throws {NetlinkError} EPERM when the kernel refuses the group without CAP_NET_ADMIN (even groups always; odd ones before Linux 6.6 and on some vendor builds)
   */
  join(group: number): void {
    checkGroup(group);
    this.#checkOpen(`join group ${group}`);
    this.#receiver.transport.join(group);
  }

  /**
   * Leaves multicast group `group` (1..32).
   *
   * @throws {RangeError} outside 1..32
   */
  leave(group: number): void {
    checkGroup(group);
    this.#checkOpen(`leave group ${group}`);
    this.#receiver.transport.leave(group);
  }

  /**
   * Asks for a receive buffer of `bytes` (SO_RCVBUFFORCE when permitted, else SO_RCVBUF).
   *
   * @returns what was asked for and what the kernel reports (twice that, capped by rmem_max without CAP_NET_ADMIN)
   */
  setReceiveBuffer(bytes: number): ReceiveBufferSize {
    this.#checkOpen("set the receive buffer");
    this.#receiver.transport.setReceiveBuffer(bytes);
    this.#requested = bytes;
    return this.receiveBuffer;
  }

  /**
   * Sends one message to the kernel (default), a userspace port, or a multicast group.
   *
   * @param message the cn_msg; `data` is a {@linkcode ByteInput}: any typed array, DataView or
   *   ArrayBuffer (taken as the bytes it covers), or an array of integers 0..255
   * @param options `to: { port }` or `to: { group }`; omitted: the kernel
   * @throws {TypeError} a message without `{ idx, val }` id, data that is not bytes, an unknown option,
   *   the 0.1 `{ port }` / `{ group }` (write `{ to: { port } }` / `{ to: { group } }`), `to` with both
   * @throws {RangeError} a field out of range; data over 16364 bytes to the kernel (it drops those
   *   without a word) or over 65535 to anyone
   * @throws {ClosedError} the connector is closed
   * @throws {NetlinkError} the kernel refused: EPERM for ports and groups without CAP_NET_ADMIN,
   *   ECONNREFUSED for a port nobody holds, EAGAIN when the receiving port's buffer is full
   */
  send(message: MessageInput, options?: SendOptions): void {
    const address = addressOf(checkOptions("send options", options, SEND_KEYS, MOVED_TO).to);
    const datagram = encodeMessage(withBytes(message));
    const size = datagram.byteLength - 36;
    // cn_rx_skb drops a payload (cn_msg header and data) over CONNECTOR_MAX_MSG_SIZE without a word;
    // ports and groups take all 65535 bytes a cn_msg can carry (checked on 6.1, 6.12 and 6.18).
    if (address.port === 0 && address.groups === 0 && size > MAX_DATA_TO_KERNEL) {
      throw new RangeError(
        `message.data is ${size} bytes; the kernel silently drops data over ${MAX_DATA_TO_KERNEL} bytes ` +
          `(ports and groups take up to 65535)`,
      );
    }
    this.#checkOpen("send");
    this.#receiver.transport.send(datagram, address);
  }

  /**
   * Sends `message` and resolves with the first reply that matches.
   *
   * `seq` defaults to a per-connector counter. The default match is the connector convention, from
   * where the request went: same id, `ack === seq + 1`, and the sender is the kernel (port 0) for a
   * request to the kernel, or the port it was sent to (a reply from anyone else is not taken: a root
   * process could otherwise answer in the kernel's name). A reply taken by a request is not passed to
   * callbacks or iterators.
   *
   * Options are checked before anything is sent: an unknown key, the 0.1 `{ port }` / `{ group }`, a
   * signal that is not an `AbortSignal` or `match` that is not a function reject with a `TypeError`; a
   * `timeoutMs` that is not finite with 0 < t <= 2147483647 with a `RangeError`. A `match` that throws
   * rejects this request (the thrown error is the rejection's `cause`); the connector goes on.
   *
   * @throws {TimeoutError} no reply within `timeoutMs` (default 5000)
   * @throws {ClosedError} the connector closed before the reply came
   * @throws {NetlinkError} the send failed (see `send`); EAGAIN also when `maxInFlight` requests are
   *   waiting and `whenBusy` is `"fail"`
   */
  request(message: MessageInput, options?: RequestOptions): Promise<ConnectorMessage> {
    let opts: RequestOptions;
    try {
      opts = checkOptions("request options", options, REQUEST_KEYS, MOVED_TO);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#exchange(message, opts, () => true).then((replies) => replies[0]);
  }

  /**
   * Sends `message` and collects every matching reply until `until` says the last one came: for
   * agents that answer one request with several messages (the 1-Wire core sends a data reply and a
   * status per command). Matching, `seq`, timeout and abort work as in `request`; the timeout covers
   * the whole exchange. Collected replies are not passed to callbacks or iterators.
   *
   * @param message the request
   * @param options as for `request`, plus `until(reply, replies)`: true when `reply` (already
   *   appended to `replies`) is the last one
   * @returns the replies in the order they came
   * @throws {TimeoutError} the last reply did not come within `timeoutMs` (default 5000); the message
   *   says how many came
   * @throws {ClosedError} the connector closed first
   * @throws {NetlinkError} the send failed (see `send`)
   *
   * @example Two replies to one request (here from the fake kernel)
   * ```ts
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernel();
   * kernel.addCallback({ idx: 14, val: 1 }, "twice", (m) => {
   *   for (const part of [1, 2]) {
   *     kernel.send({ id: m.id, seq: m.seq, ack: m.seq + 1, data: new Uint8Array([part]) }, {
   *       to: { port: m.source.port },
   *     });
   *   }
   * });
   * await using conn = await kernel.connect();
   * const replies = await conn.requestAll({ id: { idx: 14, val: 1 } }, {
   *   until: (_reply, replies) => replies.length === 2,
   * });
   * assert.deepEqual(replies.map((r) => r.data[0]), [1, 2]);
   * ```
   */
  requestAll(message: MessageInput, options: RequestAllOptions): Promise<ConnectorMessage[]> {
    try {
      checkOptions("requestAll options", options, REQUEST_ALL_KEYS, MOVED_TO);
    } catch (err) {
      return Promise.reject(err);
    }
    if (typeof options?.until !== "function") {
      return Promise.reject(
        new TypeError("requestAll needs options.until(reply, replies), which says when the last reply came"),
      );
    }
    return this.#exchange(message, options, options.until);
  }

  #exchange(
    input: MessageInput,
    opts: RequestOptions,
    until: (reply: ConnectorMessage, replies: ConnectorMessage[]) => boolean,
  ): Promise<ConnectorMessage[]> {
    let address: NetlinkAddress;
    let message: MessageInit;
    try {
      address = addressOf(opts.to);
      checkRequestOptions(opts);
      message = withBytes(input);
      encodeMessage(message);
    } catch (err) {
      return Promise.reject(err);
    }
    const seq = message.seq ?? this.#takeSeq();
    const request = { id: { idx: message.id.idx, val: message.id.val }, seq, ack: message.ack ?? 0 };
    const from = address.groups !== 0 ? undefined : address.port;
    const match = opts.match ??
      ((m: ConnectorMessage) =>
        m.id.idx === request.id.idx && m.id.val === request.id.val && m.ack === ((request.seq + 1) >>> 0) &&
        (from === undefined || m.source.port === from));
    const timeoutMs = opts.timeoutMs ?? 5000;
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#receiver.closed) return Promise.reject(new ClosedError("send a request", this.#receiver.closeReason));
    const where = describeAddress(address);
    return new Promise<ConnectorMessage[]>((resolve, reject) => {
      let ticket: InFlightTicket | null = null;
      const replies: ConnectorMessage[] = [];
      const finish = () => {
        this.#pending.delete(pending);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        ticket?.done();
      };
      let sent = false;
      const pending: Pending = {
        matches: (m) => {
          if (!sent) return false;
          try {
            return Boolean(match(m, request));
          } catch (err) {
            // The caller's predicate failed: that is this request's problem, not the connector's.
            pending.reject(
              new Error(
                `The match function of the request for cn_msg ${request.id.idx}:${request.id.val} seq ${seq} threw: ` +
                  (err instanceof Error ? err.message : String(err)),
                { cause: err },
              ),
            );
            return false;
          }
        },
        take: (m) => {
          replies.push(m);
          let last: boolean;
          try {
            last = until(m, replies);
          } catch (err) {
            pending.reject(err);
            return;
          }
          if (!last) return;
          finish();
          resolve(replies);
        },
        reject: (e) => {
          finish();
          reject(e);
        },
      };
      const onAbort = () => pending.reject(signal?.reason);
      const timer = setTimeout(() => {
        const waited = ticket?.waiting ? ` (it was still waiting for one of ${this.#limit.max} request slots)` : "";
        const got = replies.length
          ? ` (${replies.length} repl${replies.length === 1 ? "y" : "ies"} came, not the last)`
          : "";
        const what = `No ${
          replies.length ? "last " : ""
        }reply to cn_msg ${request.id.idx}:${request.id.val} seq ${seq} from ${where}${waited}${got}`;
        pending.reject(new TimeoutError(what, timeoutMs));
      }, timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pending.add(pending);
      const go = (taken: InFlightTicket) => {
        ticket = taken;
        sent = true;
        try {
          this.#receiver.transport.send(encodeMessage({ ...message, seq }), address);
        } catch (err) {
          pending.reject(err);
          return;
        }
        this.#receiver.start();
        // A kernel agent answers inside our sendto(): take the reply now, without a wake-up.
        this.#receiver.drainNow();
      };
      if (this.#limit.full && this.#options.whenBusy === "fail") {
        pending.reject(
          new NetlinkError(
            "sendto",
            Errno.EAGAIN,
            `send a request to ${where}`,
            `${this.#limit.max} requests (maxInFlight) already wait for replies: nothing was sent`,
          ),
        );
      } else ticket = this.#limit.take(go);
    });
  }

  #takeSeq(): number {
    const seq = this.#nextSeq;
    this.#nextSeq = (this.#nextSeq + 1) >>> 0;
    return seq;
  }

  /**
   * Registers `fn` for messages whose id is `id` (the userspace twin of the kernel's `cn_add_callback`).
   * Starts the receive loop. A callback that throws is reported through `onError`; the loop goes on.
   *
   * @returns a registration; dispose it (or call `removeCallback(reg.handle)`) to unregister
   * @throws {TypeError} `fn` is not a function, `id` is not `{ idx: number, val: number }`
   * @throws {RangeError} `idx` or `val` is not an integer in 0..4294967295 (as `send` checks them)
   * @throws {ClosedError} the connector is closed
   */
  addCallback(id: CallbackId, name: string, fn: (message: ConnectorMessage) => void): CallbackRegistration {
    checkId("id", id);
    if (typeof fn !== "function") throw new TypeError(`callback must be a function, got ${show(fn)}`);
    this.#checkOpen("add a callback");
    const entry: Registered = { handle: this.#nextHandle++, name, id: { idx: id.idx, val: id.val }, fn };
    const key = keyOf(id);
    this.#callbacks.set(key, [...(this.#callbacks.get(key) ?? []), entry]);
    this.#handles.set(entry.handle, entry);
    this.#receiver.start();
    return {
      handle: entry.handle,
      name,
      id: entry.id,
      [Symbol.dispose]: () => void this.removeCallback(entry.handle),
    };
  }

  /**
   * Unregisters a callback.
   *
   * @returns whether it was registered
   */
  removeCallback(handle: number): boolean {
    const entry = this.#handles.get(handle);
    if (!entry) return false;
    this.#handles.delete(handle);
    const key = keyOf(entry.id);
    const rest = this.#callbacks.get(key)!.filter((e) => e !== entry);
    if (rest.length) this.#callbacks.set(key, rest);
    else this.#callbacks.delete(key);
    return true;
  }

  /** The registered callbacks, like `/proc/net/connector` lists the kernel's. */
  get callbacks(): { handle: number; name: string; id: CallbackId }[] {
    return [...this.#handles.values()].map(({ handle, name, id }) => ({ handle, name, id: { ...id } }));
  }

  /**
   * An async iterator over received messages (optionally only those for one id). It ends quietly on
   * `close()`, on `break` and when `signal` is aborted; with the error when an error closed the
   * connector.
   *
   * @throws {TypeError} an unknown option, an `id` that is not `{ idx, val }`, a signal that is not an
   *   `AbortSignal`
   * @throws {RangeError} `idx` or `val` is not an integer in 0..4294967295
   */
  messages(options?: MessagesOptions): AsyncIterableIterator<ConnectorMessage> {
    const opts = checkOptions("messages options", options, MESSAGES_KEYS);
    if (opts.id !== undefined) checkId("id", opts.id);
    checkSignal(opts.signal);
    const stream = this.#receiver.stream<ConnectorMessage>(opts.signal, (s) => {
      for (const sub of this.#subscribers) if (sub.stream === s) this.#subscribers.delete(sub);
    });
    if (!stream.done) {
      this.#subscribers.add({ stream, id: opts.id && { idx: opts.id.idx, val: opts.id.val } });
      this.#receiver.start();
    }
    return stream;
  }

  /** Same as `messages()`. */
  [Symbol.asyncIterator](): AsyncIterableIterator<ConnectorMessage> {
    return this.messages();
  }

  #deliver(m: CnMessage, source: MessageSource): void {
    const message: ConnectorMessage = {
      id: { idx: m.id.idx, val: m.id.val },
      seq: m.seq,
      ack: m.ack,
      flags: m.flags,
      data: m.data.slice(),
      source,
    };
    for (const pending of this.#pending) {
      if (pending.matches(message)) {
        pending.take(message);
        return;
      }
    }
    let taken = false;
    const callbacks = this.#callbacks.get(keyOf(message.id));
    if (callbacks) {
      taken = true;
      for (const entry of callbacks) {
        try {
          entry.fn(message);
        } catch (err) {
          this.#counts.callbackErrors++;
          this.#receiver.report("callback", err, source);
        }
        // A callback that closed the connector stops this message too.
        if (this.#receiver.closed) return;
      }
    }
    for (const s of this.#subscribers) {
      if (s.id && (s.id.idx !== message.id.idx || s.id.val !== message.id.val)) continue;
      taken = true;
      s.stream.push(message, message.data.byteLength);
    }
    if (!taken) this.#counts.unhandled++;
  }

  #rejectPending(error: unknown): void {
    for (const pending of [...this.#pending]) pending.reject(error);
  }

  /**
   * Closes the socket: iterators end, pending requests reject with a `ClosedError`, callbacks are
   * dropped. Idempotent; resolves when the fd is closed and the receive loop has ended.
   */
  close(): Promise<void> {
    if (!this.#receiver.closed) {
      this.#limit.pause();
      this.#rejectPending(new ClosedError("wait for a reply"));
      this.#subscribers.clear();
      this.#callbacks.clear();
      this.#handles.clear();
    }
    return this.#receiver.close();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Starts `close()` without waiting for it. */
  [Symbol.dispose](): void {
    void this.close();
  }
}
