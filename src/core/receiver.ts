/**
 * The receive core that `Connector` and `ProcMonitor` stand on (and any other protocol family):
 * one receive loop over a transport, with
 *
 * - its lifecycle: it runs while its owner wants messages and stops on close;
 * - wake-up coalescing, batching and turns for the event loop (pump.ts);
 * - back-pressure: streams are bounded in messages and in bytes; a full one pauses the loop, so the
 *   kernel's buffer fills and reports an overrun instead of memory growing;
 * - one policy for what does not decode: truncated, malformed and control datagrams (and, when the
 *   owner accepts only the kernel, datagrams from anyone else) are counted and reported to
 *   `onError`; the valid messages around them are still delivered;
 * - the close order: streams end, the socket closes (which wakes the loop), then the loop is awaited.
 *
 * The owner (the protocol family) gets each well-formed message as a view valid during the call,
 * or, with a `datagram` fast path, the raw datagram first.
 *
 * @module
 */
import { decodeDatagram } from "../codec/cn_msg.ts";
import type { CnMessage } from "../codec/cn_msg.ts";
import type { ReceivedDatagram, Transport } from "../socket/transport.ts";
import { groupOf } from "../socket/transport.ts";
import { MessageStream } from "./message_stream.ts";
import { type Clock, pump, realClock, turnsFor } from "./pump.ts";
import type { MessageSource, ReceiveIssue, ReceiveIssueInfo, ReceiveStats } from "./types.ts";

/** Default bound of a stream in messages. */
export const DEFAULT_MAX_QUEUED = 65536;
/** Default bound of a stream in bytes of message data. */
export const DEFAULT_MAX_QUEUED_BYTES = 64 << 20;

/** What the core asks of the protocol family on top. */
export interface ReceiverSink {
  /** Whether the family wants messages now (the loop runs while it does and the receiver is open). */
  wanted(): boolean;
  /**
   * Optional fast path: take a whole datagram that holds one message (its bytes valid during the
   * call) and return true, or return false to let the core decode it. It is called only for
   * datagrams that pass the core's checks (sender, truncation).
   */
  datagram?(got: ReceivedDatagram): boolean;
  /** One cn_msg of a well-formed datagram; `message.data` is a view valid during the call. */
  message(message: CnMessage, source: MessageSource): void;
  /** The kernel reported ENOBUFS: messages were lost. */
  overrun(): void;
  /** The loop stops to wait (or to give a turn): what it handled since may go to consumers now. */
  idle?(): void;
  /** The loop failed (a system call error); the receiver is closing with `error`. */
  failed(error: unknown): void;
}

/** Options of a {@linkcode Receiver}. */
export interface ReceiverOptions {
  /** Most messages a stream holds before the loop pauses. */
  maxQueued?: number;
  /** Most bytes of message data a stream holds before the loop pauses. */
  maxQueuedBytes?: number;
  /** Accept only datagrams from the kernel (port 0); others are counted as `foreign`. */
  kernelOnly?: boolean;
  /** Called for everything received that is not delivered. Default: a warning for the first of each kind. */
  onError?: (error: unknown, info: ReceiveIssueInfo) => void;
  /** What the warnings name, e.g. "port 1234". */
  label?: () => string;
  /** Time for the loop (tests give a fake clock). */
  clock?: Clock;
  /** Coalesce wake-ups under load (default true); false handles each datagram as soon as it is seen. */
  coalesce?: boolean | (() => boolean);
}

/** The receive loop of one socket. */
export class Receiver {
  readonly #transport: Transport;
  readonly #sink: ReceiverSink;
  readonly #options: ReceiverOptions;
  readonly #streams = new Set<MessageStream<unknown>>();
  // A bounded stream that a push filled: the loop pauses after the datagram until it drains. The
  // streams report it themselves, so the loop checks this one field per datagram, not every stream.
  #full: MessageStream<unknown> | null = null;
  readonly #warned = new Set<ReceiveIssue>();
  readonly stats: ReceiveStats = {
    datagrams: 0,
    messages: 0,
    overruns: 0,
    malformed: 0,
    truncated: 0,
    control: 0,
    foreign: 0,
  };
  readonly #maxQueued: number;
  readonly #maxQueuedBytes: number;
  readonly #kernelOnly: boolean;
  #loop: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #closeReason: unknown = undefined;
  #dispatching = false;
  #paused = false;
  #emptied = 0;
  #drainLater: Promise<void> | null = null;

  constructor(transport: Transport, sink: ReceiverSink, options: ReceiverOptions = {}) {
    this.#transport = transport;
    this.#sink = sink;
    this.#options = options;
    this.#maxQueued = positive(options.maxQueued, DEFAULT_MAX_QUEUED, "maxQueued");
    this.#maxQueuedBytes = positive(options.maxQueuedBytes, DEFAULT_MAX_QUEUED_BYTES, "maxQueuedBytes");
    this.#kernelOnly = options.kernelOnly === true;
  }

  /**
   * How many times a receive found the socket empty: once it grew after a send, everything the
   * kernel queued inside that send has been handled (a handshake's ack, if one was sent, was seen).
   */
  get emptied(): number {
    return this.#emptied;
  }

  /** Whether `close()` was called (or an error closed the receiver). */
  get closed(): boolean {
    return this.#closing !== null;
  }

  /** The error that closed the receiver, if one did. */
  get closeReason(): unknown {
    return this.#closeReason;
  }

  /** The transport below (for the family's sends). */
  get transport(): Transport {
    return this.#transport;
  }

  /**
   * A new stream bounded by the receiver's limits: while it holds more than `maxQueued` messages or
   * `maxQueuedBytes` bytes, the loop pauses. `detached` runs when its consumer stops.
   */
  stream<T>(
    signal?: AbortSignal,
    detached?: (stream: MessageStream<T>) => void,
    bounded = true,
  ): MessageStream<T> {
    const stream = new MessageStream<T>({
      detach: (s) => {
        this.#streams.delete(s as MessageStream<unknown>);
        if (this.#full === s) this.#full = this.#fullStream();
        detached?.(s);
      },
      full: (s) => {
        this.#full ??= s as MessageStream<unknown>;
      },
    }, signal);
    if (this.#closing) stream.end(this.#closeReason);
    else if (!stream.done) {
      this.#streams.add(stream as MessageStream<unknown>);
      if (bounded) this.bound(stream as MessageStream<unknown>);
    }
    return stream;
  }

  /**
   * Puts a stream made with `bounded: false` under the limits from now on (a reader that must not
   * pause before a handshake is through, like the process monitor before the kernel's ack).
   */
  bound(stream: MessageStream<unknown>): void {
    stream.bound(this.#maxQueued, this.#maxQueuedBytes);
    if (stream.full && this.#streams.has(stream)) this.#full ??= stream;
  }

  /** Starts the loop if the family wants messages and it is not running. Idempotent. */
  start(): void {
    if (this.#loop || this.#closing || !this.#sink.wanted()) return;
    this.#loop = pump(
      this.#transport,
      {
        running: () => !this.#closing && this.#sink.wanted(),
        datagram: (got) => {
          // No try/finally here: if handling throws, the loop fails and the receiver closes.
          this.#dispatching = true;
          this.#handle(got);
          this.#dispatching = false;
        },
        overrun: () => this.#overrun(),
        idle: this.#sink.idle && (() => this.#sink.idle!()),
        empty: () => this.#emptied++,
        backpressure: () => this.#full === null ? undefined : this.#pause(this.#full),
      },
      this.#options.clock ?? realClock,
      this.#options.coalesce ?? true,
    ).then(
      () => {
        this.#loop = null;
        // Demand may have come back between the loop's last check and its end.
        this.start();
      },
      (err) => {
        this.#loop = null;
        this.#sink.failed(err);
        void this.close(err);
      },
    );
  }

  /**
   * Takes what is queued on the socket now, without waiting: for right after a send to a kernel
   * agent, whose reply was queued inside our sendto(). It saves a wake-up of the waiting thread (and,
   * on a slow machine, the time that takes). Does nothing while a stream is full or while the loop is
   * handing out a datagram (a callback that sends): the loop will get to it. When the thread owes the
   * event loop a turn, it drains after one.
   */
  drainNow(): void {
    if (this.#closing || this.#paused || this.#dispatching) return;
    // A loop of requests answered here would run on microtasks alone: once the thread owes the
    // event loop a turn, drain again from a timer, after the turn (not from the receive loop,
    // which would need the waiting thread - on Bun a Worker that may still be starting).
    const clock = this.#options.clock ?? realClock;
    const turns = turnsFor(clock);
    this.#dispatching = true;
    try {
      for (let n = 0; n < 64; n++) {
        if (turns.owed()) {
          this.#drainLater ??= clock.sleep(0).then(() => {
            this.#drainLater = null;
            turns.turned();
            this.drainNow();
          });
          return;
        }
        const got = this.#transport.receive();
        if (got === "again") {
          this.#emptied++;
          return;
        }
        if (got === "overrun") this.#overrun();
        else this.#handle(got);
        if (this.#closing || this.#full !== null) return;
      }
    } finally {
      this.#dispatching = false;
      this.#sink.idle?.();
    }
  }

  /** Counts an issue and reports it through `onError` (or the default warning). */
  report(kind: ReceiveIssue, error: unknown, source: MessageSource): void {
    if (kind !== "callback") this.stats[kind]++;
    const onError = this.#options.onError;
    try {
      if (onError) onError(error, { kind, source });
      else if (!this.#warned.has(kind)) {
        this.#warned.add(kind);
        const where = this.#options.label?.() ?? `port ${this.#transport.port}`;
        const text = error instanceof Error ? error.message : String(error);
        console.warn(
          `cnlink: ${kind} ${
            kind === "callback" ? "error" : "datagram"
          } on ${where}: ${text} (further ones are only counted in stats)`,
        );
      }
    } catch (err) {
      console.error("cnlink: onError threw:", err);
    }
  }

  #overrun(): void {
    this.stats.overruns++;
    this.#sink.overrun();
  }

  /** A bounded stream at its bound, if any (after the one the loop waited for has drained). */
  #fullStream(): MessageStream<unknown> | null {
    for (const s of this.#streams) if (s.full) return s;
    return null;
  }

  #pause(full: MessageStream<unknown>): Promise<void> {
    this.#paused = true;
    return full.drainedTo(this.#maxQueued >> 1, this.#maxQueuedBytes / 2).finally(() => {
      this.#paused = false;
      this.#full = this.#fullStream();
    });
  }

  // Per datagram, so kept lean (bench/replay_cpu.ts measures it): the checks, then the family's fast
  // path, then the general decode.
  #handle(got: ReceivedDatagram): void {
    this.stats.datagrams++;
    // The source object is made only off the fast path: one allocation per event shows in the bench.
    if (this.#kernelOnly && got.source.port !== 0) {
      this.report("foreign", new Error(`a datagram from port ${got.source.port}, not from the kernel`), sourceOf(got));
      return;
    }
    if (got.truncated) {
      this.report(
        "truncated",
        new RangeError(`datagram of ${got.length} bytes truncated to ${got.size}`),
        sourceOf(got),
      );
      return;
    }
    if (this.#sink.datagram !== undefined && this.#sink.datagram(got)) {
      this.stats.messages++;
      return;
    }
    this.#decode(got);
  }

  #decode(got: ReceivedDatagram): void {
    const source = sourceOf(got);
    let parts;
    try {
      parts = decodeDatagram(got.data);
    } catch (err) {
      this.report("malformed", err, source);
      return;
    }
    for (const part of parts) {
      if (part.kind === "control") {
        this.report("control", new Error(`unexpected netlink control message type ${part.header.type}`), source);
        continue;
      }
      for (const m of part.messages) {
        this.stats.messages++;
        this.#sink.message(m, source);
        if (this.#closing) return;
      }
    }
  }

  /**
   * Closes: streams end (with `reason` when given), the socket closes, then the loop is awaited.
   * Idempotent.
   */
  close(reason?: unknown): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closeReason = reason;
    for (const s of [...this.#streams]) s.end(reason);
    this.#streams.clear();
    this.#full = null;
    this.#closing = (async () => {
      await this.#transport.close();
      if (this.#loop) await this.#loop;
    })();
    return this.#closing;
  }
}

function sourceOf(got: ReceivedDatagram): MessageSource {
  return { port: got.source.port, group: groupOf(got.source.groups) };
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!(Number.isInteger(value) && value > 0)) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}
