/**
 * `Connector`: the public client. One receive loop per socket feeds callbacks registered by
 * `{idx, val}`, async iterators and pending requests.
 *
 * @module
 */
import { CN_MSG_HDRLEN, CONNECTOR_MAX_MSG_SIZE } from "../codec/constants.ts";
import type { CallbackId, MessageInit } from "../codec/cn_msg.ts";
import { decodeDatagram, encodeMessage } from "../codec/cn_msg.ts";
import type { NetlinkAddress } from "../codec/netlink.ts";
import { loadLibc } from "../ffi/load.ts";
import { NetlinkSocket } from "../socket/netlink_socket.ts";
import { pump } from "../socket/pump.ts";
import { groupBit, type ReceivedDatagram, type Transport } from "../socket/transport.ts";
import { MessageStream, type StreamOwner } from "./message_stream.ts";
import type {
  CallbackRegistration,
  ConnectorMessage,
  ConnectorOptions,
  ConnectorStats,
  Destination,
  MessagesOptions,
  ReceiveIssueInfo,
  RequestOptions,
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
  readonly resolve: (reply: ConnectorMessage) => void;
  readonly reject: (error: unknown) => void;
}
interface Subscriber {
  readonly stream: MessageStream<ConnectorMessage>;
  readonly id?: CallbackId;
}

const DEFAULT_MAX_QUEUED = 65536;
const MAX_KERNEL_DATA = CONNECTOR_MAX_MSG_SIZE - CN_MSG_HDRLEN;

let construct: (transport: Transport, options: ConnectorOptions) => Connector;

/** Builds a connector over any transport; internal (the fake kernel uses it), not exported from mod.ts. */
export function connectorOver(transport: Transport, options: ConnectorOptions = {}): Connector {
  return construct(transport, options);
}

const keyOf = (id: CallbackId): string => `${id.idx}:${id.val}`;

/** Resolves `to` to a socket address; omitted means the kernel. */
function addressOf(to?: Destination): NetlinkAddress {
  if (!to) return { port: 0, groups: 0 };
  if ("group" in to) return { port: 0, groups: groupBit(to.group, "send to group on") };
  if (!Number.isInteger(to.port) || to.port < 0 || to.port > 0xffffffff) {
    throw new RangeError(`port must be an integer in 0..4294967295, got ${to.port}`);
  }
  return { port: to.port, groups: 0 };
}

/**
 * A netlink connector socket with a callback registry, async iteration and request/reply.
 *
 * @example Ask the process-events connector for an ack
 * ```ts ignore
 * import { Connector, CN_IDX_PROC, CN_VAL_PROC } from "@cnlink/connector";
 *
 * await using conn = await Connector.open({ groups: [CN_IDX_PROC] });
 * const listen = new Uint8Array(new Uint32Array([1]).buffer); // PROC_CN_MCAST_LISTEN
 * const ack = await conn.request(
 *   { id: { idx: CN_IDX_PROC, val: CN_VAL_PROC }, ack: 42, data: listen },
 *   { match: (m, req) => m.ack === req.ack + 1 },
 * );
 * console.log("subscribed, ack", ack.ack);
 * ```
 */
export class Connector implements AsyncIterable<ConnectorMessage>, AsyncDisposable, Disposable {
  readonly #transport: Transport;
  readonly #options: ConnectorOptions;
  readonly #callbacks = new Map<string, Registered[]>();
  readonly #handles = new Map<number, Registered>();
  readonly #pending = new Set<Pending>();
  readonly #subscribers = new Set<Subscriber>();
  readonly #owner: StreamOwner<ConnectorMessage>;
  readonly #stats: ConnectorStats = {
    datagrams: 0,
    messages: 0,
    overruns: 0,
    malformed: 0,
    truncated: 0,
    control: 0,
    callbackErrors: 0,
    unhandled: 0,
  };
  #nextHandle = 1;
  #nextSeq = Math.floor(Math.random() * 0x7fffffff);
  #loop: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #closeReason: unknown = undefined;

  /** Use {@linkcode Connector.open}. */
  private constructor(transport: Transport, options: ConnectorOptions) {
    this.#transport = transport;
    this.#options = options;
    this.#owner = {
      detach: (stream) => {
        for (const s of this.#subscribers) if (s.stream === stream) this.#subscribers.delete(s);
      },
    };
  }

  /**
   * Opens a connector socket, bound to `options.groups`.
   *
   * @param options groups, port, receive buffer, error hooks
   * @returns the open connector
   * @throws {NetlinkError} the socket cannot be made or bound (no connector, no permission, port in use)
   *
   * @example Joining two groups
   * ```ts ignore
   * import { Connector } from "@cnlink/connector";
   *
   * await using conn = await Connector.open({ groups: [14, 15], rcvbuf: 4 << 20 });
   * console.log(conn.port, conn.groups);
   * ```
   */
  static async open(options: ConnectorOptions = {}): Promise<Connector> {
    const libc = await loadLibc(options.libcPath);
    return new Connector(NetlinkSocket.open(libc, options), options);
  }

  static {
    construct = (transport, options) => new Connector(transport, options);
  }

  /** Our netlink port id (`nl_pid`). */
  get port(): number {
    return this.#transport.port;
  }

  /** The multicast groups this socket is in, ascending. */
  get groups(): number[] {
    return this.#transport.memberships();
  }

  /** A snapshot of the counters. */
  get stats(): Readonly<ConnectorStats> {
    return { ...this.#stats };
  }

  /** Whether `close()` was called (or an error closed the connector). */
  get closed(): boolean {
    return this.#closing !== null;
  }

  /**
   * Joins multicast group `group` (1..32).
   *
   * @throws {NetlinkError} EPERM without CAP_NET_ADMIN (even groups, or any group before Linux 6.6); EINVAL outside 1..32
   */
  join(group: number): void {
    this.#transport.join(group);
  }

  /** Leaves multicast group `group` (1..32). */
  leave(group: number): void {
    this.#transport.leave(group);
  }

  /**
   * Sets the receive buffer size (SO_RCVBUFFORCE when permitted, else SO_RCVBUF).
   *
   * @returns the size the kernel reports (it doubles the request for bookkeeping)
   */
  setReceiveBuffer(bytes: number): number {
    return this.#transport.setReceiveBuffer(bytes);
  }

  /**
   * Sends one message to the kernel (default), a userspace port, or a multicast group.
   *
   * @param message the cn_msg
   * @param to `{ port }` or `{ group }`; omitted: the kernel
   * @throws {RangeError} a field is out of range, or data over 16364 bytes to the kernel (it would drop it silently)
   * @throws {NetlinkError} the kernel refused (EPERM for ports and groups without CAP_NET_ADMIN, ECONNREFUSED for a dead port)
   */
  send(message: MessageInit, to?: Destination): void {
    if (this.#closing) throw new Error("Cannot send: the connector is closed");
    const address = addressOf(to);
    const size = message.data?.byteLength ?? 0;
    // cn_rx_skb drops a netlink payload (cn_msg header + data) over CONNECTOR_MAX_MSG_SIZE without a word.
    if (address.port === 0 && size > MAX_KERNEL_DATA) {
      throw new RangeError(
        `cn_msg data is ${size} bytes; the kernel silently drops data over ${MAX_KERNEL_DATA} bytes`,
      );
    }
    this.#transport.send(encodeMessage(message), address);
  }

  /**
   * Sends `message` and resolves with the first reply that matches.
   *
   * `seq` defaults to a per-connector counter. The default match is the connector convention:
   * same id and `ack === seq + 1`. A reply taken by a request is not passed to callbacks or iterators.
   *
   * @throws {DOMException} `TimeoutError` after `timeoutMs`, or the signal's reason when aborted
   */
  request(message: MessageInit, options: RequestOptions = {}): Promise<ConnectorMessage> {
    const seq = message.seq ?? this.#takeSeq();
    const request = { id: { ...message.id }, seq, ack: message.ack ?? 0 };
    const match = options.match ??
      ((m: ConnectorMessage) =>
        m.id.idx === request.id.idx && m.id.val === request.id.val && m.ack === ((request.seq + 1) >>> 0));
    const timeoutMs = options.timeoutMs ?? 5000;
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<ConnectorMessage>((resolve, reject) => {
      const finish = () => {
        this.#pending.delete(pending);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        finish();
        reject(signal?.reason);
      };
      const pending: Pending = {
        matches: (m) => match(m, request),
        resolve: (m) => {
          finish();
          resolve(m);
        },
        reject: (e) => {
          finish();
          reject(e);
        },
      };
      this.#pending.add(pending);
      const timer = setTimeout(() => {
        pending.reject(
          new DOMException(
            `No reply to cn_msg ${request.id.idx}:${request.id.val} seq ${seq} within ${timeoutMs} ms`,
            "TimeoutError",
          ),
        );
      }, timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        this.send({ ...message, seq }, options.to);
      } catch (err) {
        pending.reject(err);
        return;
      }
      this.#startLoop();
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
   */
  addCallback(id: CallbackId, name: string, fn: (message: ConnectorMessage) => void): CallbackRegistration {
    if (this.#closing) throw new Error("Cannot add a callback: the connector is closed");
    if (typeof fn !== "function") throw new TypeError("callback must be a function");
    const entry: Registered = { handle: this.#nextHandle++, name, id: { idx: id.idx, val: id.val }, fn };
    const key = keyOf(id);
    this.#callbacks.set(key, [...(this.#callbacks.get(key) ?? []), entry]);
    this.#handles.set(entry.handle, entry);
    this.#startLoop();
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
   * An async iterator over received messages (optionally only those for one id).
   * It ends quietly on `close()`, with the error when an error closed the connector, and with the
   * signal's reason on abort.
   */
  messages(options: MessagesOptions = {}): AsyncIterableIterator<ConnectorMessage> {
    const stream = new MessageStream<ConnectorMessage>(this.#owner, options.signal);
    if (this.#closing) {
      stream.end(this.#closeReason);
      return stream;
    }
    if (options.signal?.aborted) {
      stream.end(options.signal.reason);
      return stream;
    }
    this.#subscribers.add({ stream, id: options.id });
    this.#startLoop();
    return stream;
  }

  /** Same as `messages()`. */
  [Symbol.asyncIterator](): AsyncIterableIterator<ConnectorMessage> {
    return this.messages();
  }

  #consumers(): number {
    return this.#handles.size + this.#subscribers.size + this.#pending.size;
  }

  #startLoop(): void {
    if (this.#loop || this.#closing) return;
    this.#loop = this.#run().then(
      () => {
        this.#loop = null;
        // A consumer may have arrived between the last check and the end of the loop.
        if (this.#consumers() > 0) this.#startLoop();
      },
      (err) => {
        this.#loop = null;
        void this.#close(err);
      },
    );
  }

  #run(): Promise<void> {
    return pump(this.#transport, {
      running: () => !this.#closing && this.#consumers() > 0,
      datagram: (got) => this.#dispatch(got),
      overrun: () => {
        this.#stats.overruns++;
        const report = this.#options.onOverrun ??
          ((s) =>
            console.warn(`cnlink: receive buffer overrun on port ${this.port}, messages lost (${s.overruns} so far)`));
        report(this.stats);
      },
      backpressure: () => this.#fullStream()?.drainedTo(this.#maxQueued() >> 1),
    });
  }

  #maxQueued(): number {
    return this.#options.maxQueued ?? DEFAULT_MAX_QUEUED;
  }

  #fullStream(): MessageStream<ConnectorMessage> | undefined {
    const max = this.#maxQueued();
    for (const s of this.#subscribers) if (s.stream.size >= max) return s.stream;
    return undefined;
  }

  #report(error: unknown, info: ReceiveIssueInfo): void {
    const report = this.#options.onError ?? ((e, i) => console.error(`cnlink: ${i.kind} on port ${this.port}:`, e));
    try {
      report(error, info);
    } catch (err) {
      console.error("cnlink: onError threw:", err);
    }
  }

  #dispatch(got: ReceivedDatagram): void {
    const stats = this.#stats;
    stats.datagrams++;
    const source = { port: got.source.port, groups: got.source.groups };
    if (got.truncated) {
      stats.truncated++;
      this.#report(new RangeError(`datagram of ${got.length} bytes truncated to ${got.data.byteLength}`), {
        kind: "truncated",
        source,
      });
      return;
    }
    let parts;
    try {
      parts = decodeDatagram(got.data);
    } catch (err) {
      stats.malformed++;
      this.#report(err, { kind: "malformed", source });
      return;
    }
    for (const part of parts) {
      if (part.kind === "control") {
        stats.control++;
        this.#report(new Error(`unexpected netlink control message type ${part.header.type}`), {
          kind: "control",
          source,
        });
        continue;
      }
      for (const m of part.messages) {
        stats.messages++;
        this.#deliver({ id: m.id, seq: m.seq, ack: m.ack, flags: m.flags, data: m.data.slice(), source });
      }
    }
  }

  #deliver(message: ConnectorMessage): void {
    for (const pending of this.#pending) {
      if (pending.matches(message)) {
        pending.resolve(message);
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
          this.#stats.callbackErrors++;
          this.#report(err, { kind: "callback", source: message.source });
        }
      }
    }
    for (const s of this.#subscribers) {
      if (s.id && (s.id.idx !== message.id.idx || s.id.val !== message.id.val)) continue;
      taken = true;
      s.stream.push(message);
    }
    if (!taken) this.#stats.unhandled++;
  }

  /**
   * Closes the socket: iterators end, pending requests reject, callbacks are dropped.
   * Idempotent; resolves when the fd is closed and no thread waits on it.
   */
  close(): Promise<void> {
    return this.#close(undefined);
  }

  #close(reason: unknown): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closeReason = reason;
    const closedError = reason ?? new Error("The connector was closed before a reply arrived");
    for (const pending of [...this.#pending]) pending.reject(closedError);
    for (const s of this.#subscribers) s.stream.end(reason);
    this.#subscribers.clear();
    this.#callbacks.clear();
    this.#handles.clear();
    this.#closing = (async () => {
      await this.#transport.close();
      if (this.#loop) await this.#loop;
    })();
    return this.#closing;
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
