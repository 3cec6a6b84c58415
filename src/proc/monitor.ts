/**
 * `ProcMonitor`: a trustworthy subscription to the process-events connector.
 *
 * - only datagrams from the kernel (sender port 0) are delivered; anything else is counted as forged;
 * - LISTEN is confirmed by its ack (random `ack`, reply `ack + 1`) within a timeout, so a kernel that
 *   ignores us (another user or pid namespace) gives an error instead of silence;
 * - on Linux >= 6.6 the kernel filters events (`proc_input`); before, the same rules run here;
 * - loss is delivered in the stream: `{ type: "lost", reason: "overrun" }` after ENOBUFS and
 *   `{ type: "lost", reason: "seq-gap", cpu, count }` from per-CPU sequence gaps (when receiving all events);
 * - close() sends IGNORE first, so the kernel's listener count stays right.
 *
 * @module
 */
import { decodeDatagram, encodeMessage } from "../codec/cn_msg.ts";
import { CN_IDX_PROC, CN_MSG_HDRLEN, CN_VAL_PROC, NLMSG_DONE, NLMSG_HDRLEN } from "../codec/constants.ts";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { MessageStream, type StreamOwner } from "../connector/message_stream.ts";
import { Errno, NetlinkError } from "../errors.ts";
import { loadLibc } from "../ffi/load.ts";
import { NetlinkSocket } from "../socket/netlink_socket.ts";
import { pump } from "../socket/pump.ts";
import type { ReceivedDatagram, Transport } from "../socket/transport.ts";
import { PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL, PROC_EVENT_SIZE } from "./constants.ts";
import { checkProcAccess, type ProcessInfo, readProcessInfo } from "./enrich.ts";
import { type AckEvent, decodeProcEvent, decodeProcEventAt, type ProcEvent } from "./event.ts";
import { eventMask, passes, type ProcEventName } from "./filter.ts";

/** Loss, reported in the stream where it happened. */
export interface LostEvent {
  /** Discriminant. */
  type: "lost";
  /** `overrun`: the kernel reported ENOBUFS; `seq-gap`: a CPU's sequence skipped `count` messages. */
  reason: "overrun" | "seq-gap";
  /** How many messages were lost, when known (seq gaps). */
  count?: number;
  /** The CPU whose sequence skipped (seq gaps). */
  cpu?: number;
}

/** A process event, with `/proc` details when enrichment is on. */
export type EnrichedProcEvent = Exclude<ProcEvent, AckEvent> & {
  /** Best-effort details read from /proc (only with `enrich`). */
  process?: ProcessInfo;
};

/** What a monitor yields. */
export type ProcMonitorItem = EnrichedProcEvent | LostEvent;

/** Options of {@linkcode ProcMonitor.open}. */
export interface ProcMonitorOptions {
  /** Which events; default all. `"nonzero-exit"` = only exits with a non-zero wait status. */
  events?: readonly ProcEventName[];
  /** Receive buffer in bytes; default 32 MiB (SO_RCVBUFFORCE as root, else capped at rmem_max). */
  rcvbuf?: number;
  /** Double the receive buffer after each overrun, up to this many bytes; default 256 MiB, `0` to keep it. */
  maxRcvbuf?: number;
  /** How long to wait for the kernel's ack of LISTEN; default 1000 ms. */
  ackTimeoutMs?: number;
  /** Closes the monitor when aborted (the iteration ends with the signal's reason). */
  signal?: AbortSignal;
  /**
   * Read comm/cmdline/exe/user from /proc at fork and exec (best-effort; exits reuse what was read).
   * On Deno this needs `--allow-all`: Deno guards /proc/PID behind it, and `open()` says so.
   */
  enrich?: boolean;
  /** Most events queued before the receive loop pauses (the kernel then buffers, then overruns). Default 65536. */
  maxQueued?: number;
  /** libc to load; default `libc.so.6`. */
  libcPath?: string;
}

/** Counters of a monitor. */
export interface ProcMonitorStats {
  /** Events delivered. */
  events: number;
  /** Datagrams from a sender other than the kernel, not delivered. */
  forged: number;
  /** ENOBUFS overruns reported. */
  overruns: number;
  /** Messages missing from per-CPU sequences. */
  seqLost: number;
  /** Datagrams that did not decode. */
  malformed: number;
  /** Acks seen (ours and other clients'). */
  acks: number;
  /** Events dropped by the userspace filter (all of them before 6.6; only stragglers with a kernel filter). */
  filtered: number;
  /** The receive buffer the kernel reports. */
  rcvbuf: number;
}

/** How events are selected: by the kernel (>= 6.6), here (older kernels), or not at all. */
export type FilterMode = "kernel" | "userspace" | "none";

const DEFAULT_RCVBUF = 32 << 20;
const DEFAULT_MAX_RCVBUF = 256 << 20;
const DEFAULT_MAX_QUEUED = 65536;
const PROC_ID = { idx: CN_IDX_PROC, val: CN_VAL_PROC };
const EVENT_DATAGRAM = NLMSG_HDRLEN + CN_MSG_HDRLEN + PROC_EVENT_SIZE;

let construct: (transport: Transport, options: ProcMonitorOptions) => ProcMonitor;
let subscribe: (monitor: ProcMonitor) => Promise<void>;

/** Opens a monitor over any transport (the fake kernel uses it); internal, not exported from proc.ts. */
export async function procMonitorOver(transport: Transport, options: ProcMonitorOptions = {}): Promise<ProcMonitor> {
  const monitor = construct(transport, options);
  try {
    await subscribe(monitor);
  } catch (err) {
    await monitor.close(false);
    throw err;
  }
  return monitor;
}

function randomAck(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] & 0x7fffffff;
}

/**
 * A subscription to process events. Iterate it for events and loss reports; close it to unsubscribe.
 *
 * @example Print every exec for five seconds (as root, or on Linux >= 6.6 as any user)
 * ```ts ignore
 * import { ProcMonitor } from "@cnlink/connector/proc";
 *
 * await using monitor = await ProcMonitor.open({ events: ["exec"], signal: AbortSignal.timeout(5000) });
 * try {
 *   for await (const e of monitor) if (e.type === "exec") console.log(e.pid);
 * } catch (err) {
 *   if ((err as Error).name !== "TimeoutError") throw err;
 * }
 * ```
 */
export class ProcMonitor implements AsyncIterable<ProcMonitorItem>, AsyncDisposable {
  readonly #transport: Transport;
  readonly #options: ProcMonitorOptions;
  readonly #mask: number;
  readonly #stream: MessageStream<ProcMonitorItem>;
  // Last cn_msg seq seen per CPU, indexed by CPU number.
  readonly #lastSeq: number[] = [];
  #view: DataView | null = null;
  readonly #known = new Map<number, ProcessInfo>();
  readonly #stats: Omit<ProcMonitorStats, "rcvbuf"> = {
    events: 0,
    forged: 0,
    overruns: 0,
    seqLost: 0,
    malformed: 0,
    acks: 0,
    filtered: 0,
  };
  #mode: FilterMode = "none";
  #listenFormat: 4 | 8 = 8;
  #subscribed = false;
  #onAck: ((ack: AckEvent) => void) | null = null;
  #loop: Promise<void>;
  #closing: Promise<void> | null = null;

  static {
    construct = (transport, options) => new ProcMonitor(transport, options);
    subscribe = (monitor) => monitor.#subscribe();
  }

  private constructor(transport: Transport, options: ProcMonitorOptions) {
    this.#transport = transport;
    this.#options = options;
    this.#mask = eventMask(options.events);
    const owner: StreamOwner<ProcMonitorItem> = { detach: () => void this.close() };
    this.#stream = new MessageStream(owner, options.signal);
    transport.setReceiveBuffer(options.rcvbuf ?? DEFAULT_RCVBUF);
    this.#loop = this.#run().catch((err) => {
      this.#stream.end(err);
      void this.close(false);
    });
  }

  /**
   * Subscribes to process events and resolves once the kernel has confirmed it.
   *
   * @throws {NetlinkError} EPERM (not permitted: root or Linux >= 6.6 needed), EPROTONOSUPPORT (no
   *   connector), ECONNREFUSED (not the initial network namespace), ETIMEDOUT (the kernel ignored
   *   LISTEN: not the initial user/pid namespace, or no CONFIG_PROC_EVENTS)
   * @throws {TypeError} an unknown event name
   */
  static async open(options: ProcMonitorOptions = {}): Promise<ProcMonitor> {
    eventMask(options.events);
    if (options.enrich) checkProcAccess();
    const libc = await loadLibc(options.libcPath);
    // Events are 76-byte datagrams: batch them, 64 per system call. A larger datagram cannot be a
    // process event; it arrives truncated and is counted as malformed.
    const socket = NetlinkSocket.open(libc, { groups: [CN_IDX_PROC], batch: { count: 64, slotSize: 128 } });
    return procMonitorOver(socket, options);
  }

  /** How events are selected: `"kernel"` (Linux >= 6.6 `proc_input`), `"userspace"`, or `"none"` (all). */
  get filterMode(): FilterMode {
    return this.#mode;
  }

  /** Whether per-CPU sequence gaps are checked (only when every event is received). */
  get checksSequence(): boolean {
    return this.#mode !== "kernel";
  }

  /** A snapshot of the counters. */
  get stats(): Readonly<ProcMonitorStats> {
    return { ...this.#stats, rcvbuf: this.#transport.rcvbuf };
  }

  /**
   * The LISTEN handshake; `open()` runs it. Two LISTENs go out back to back: the 8-byte
   * `{LISTEN, ALL}` that Linux >= 6.6 acks (older kernels drop it without a word) and the 4-byte one
   * every kernel acks. The kernel handles them in order, so by the time the second ack arrives the
   * first one has too, if the kernel understood it: no timeout is needed to tell the kernels apart
   * (waiting for the 8-byte ack alone cost a full ack timeout on 6.1, found in the kernel lab).
   * On >= 6.6 the second LISTEN does not count the socket twice (its previous op was LISTEN).
   */
  async #subscribe(): Promise<void> {
    const timeoutMs = this.#options.ackTimeoutMs ?? 1000;
    const wide = randomAck();
    const classic = randomAck();
    const seen = new Set<number>();
    const confirmed = new Promise<AckEvent | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      this.#onAck = (event) => {
        seen.add(event.ack);
        if (event.ack !== ((classic + 1) >>> 0)) return;
        clearTimeout(timer);
        resolve(event);
      };
    });
    let ack: AckEvent | null;
    try {
      this.#sendOp(PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL, 8, wide);
      this.#sendOp(PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL, 4, classic);
      ack = await confirmed;
    } finally {
      this.#onAck = null;
    }
    if (!ack) {
      throw new NetlinkError(
        "subscribe to process events on",
        Errno.ETIMEDOUT,
        `(the kernel did not ack LISTEN within ${timeoutMs} ms: it ignores requests from outside the initial ` +
          `user and pid namespaces, e.g. in a container or under unshare -U/-p; or it lacks CONFIG_PROC_EVENTS ` +
          `(see /proc/net/connector for cn_proc))`,
      );
    }
    if (ack.err !== 0) {
      throw new NetlinkError("subscribe to process events on", ack.err, "(the kernel refused LISTEN)");
    }
    // A {LISTEN, mask} narrows the kernel's filter; it is not acked to us (our own filter drops acks).
    const inputFilter = seen.has((wide + 1) >>> 0);
    this.#listenFormat = inputFilter ? 8 : 4;
    if (this.#mask === PROC_EVENT_ALL) this.#mode = "none";
    else if (inputFilter) {
      this.#mode = "kernel";
      this.#sendOp(PROC_CN_MCAST_LISTEN, this.#mask);
    } else this.#mode = "userspace";
    this.#subscribed = true;
  }

  #sendOp(op: number, mask: number, format: 4 | 8 = this.#listenFormat, ack = 0): void {
    const data = new Uint8Array(format);
    const view = new DataView(data.buffer);
    view.setUint32(0, op, LITTLE_ENDIAN);
    if (format === 8) view.setUint32(4, mask, LITTLE_ENDIAN);
    this.#transport.send(encodeMessage({ id: PROC_ID, ack, data }), { port: 0, groups: 0 });
  }

  #run(): Promise<void> {
    const maxQueued = this.#options.maxQueued ?? DEFAULT_MAX_QUEUED;
    return pump(this.#transport, {
      running: () => !this.#closing,
      datagram: (got) => this.#handle(got),
      overrun: () => this.#overrun(),
      // No back-pressure before the ack arrived: nobody reads yet, and the ack must get through.
      backpressure: () =>
        this.#subscribed && this.#stream.size >= maxQueued ? this.#stream.drainedTo(maxQueued >> 1) : undefined,
    });
  }

  #overrun(): void {
    this.#stats.overruns++;
    this.#stream.push({ type: "lost", reason: "overrun" });
    const max = this.#options.maxRcvbuf ?? DEFAULT_MAX_RCVBUF;
    // keepalived's remedy: a bigger buffer for the next burst. The kernel reports twice what was set.
    const rcvbuf = this.#transport.rcvbuf;
    if (max > 0 && rcvbuf < max) {
      try {
        this.#transport.setReceiveBuffer(Math.min(rcvbuf, max));
      } catch {
        // Keep the current size; the loss was reported already.
      }
    }
  }

  #handle(got: ReceivedDatagram): void {
    if (got.source.port !== 0) {
      this.#stats.forged++;
      return;
    }
    // Fast path: the kernel sends each event as one 76-byte datagram. Decode it in place, through one
    // DataView kept over the whole receive buffer, with no intermediate objects.
    if (!got.truncated && got.size === EVENT_DATAGRAM) {
      const buffer = got.buffer;
      let v = this.#view;
      if (!v || v.buffer !== buffer.buffer || v.byteOffset !== buffer.byteOffset) {
        v = this.#view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      }
      const at = got.offset;
      if (
        v.getUint32(at, LITTLE_ENDIAN) === EVENT_DATAGRAM && v.getUint16(at + 4, LITTLE_ENDIAN) === NLMSG_DONE &&
        v.getUint32(at + 16, LITTLE_ENDIAN) === CN_IDX_PROC && v.getUint32(at + 20, LITTLE_ENDIAN) === CN_VAL_PROC &&
        v.getUint16(at + 32, LITTLE_ENDIAN) === PROC_EVENT_SIZE
      ) {
        const seq = v.getUint32(at + 24, LITTLE_ENDIAN);
        this.#accept(decodeProcEventAt(v, at + 36, PROC_EVENT_SIZE, seq, v.getUint32(at + 28, LITTLE_ENDIAN)));
        return;
      }
    }
    let parts;
    try {
      if (got.truncated) throw new RangeError("truncated");
      parts = decodeDatagram(got.data);
    } catch {
      this.#stats.malformed++;
      return;
    }
    for (const part of parts) {
      if (part.kind !== "connector") {
        this.#stats.malformed++;
        continue;
      }
      for (const m of part.messages) {
        if (m.id.idx !== CN_IDX_PROC || m.id.val !== CN_VAL_PROC) {
          this.#stats.malformed++;
          continue;
        }
        let event: ProcEvent;
        try {
          event = decodeProcEvent(m.data, m.seq, m.ack);
        } catch {
          this.#stats.malformed++;
          continue;
        }
        this.#accept(event);
      }
    }
  }

  #accept(event: ProcEvent): void {
    if (this.#mode !== "kernel") this.#checkSequence(event);
    if (event.type === "ack") {
      this.#stats.acks++;
      this.#onAck?.(event);
      return;
    }
    // Also under a kernel filter: events queued before the filter was set still pass through here.
    if (!passes(event, this.#mask)) {
      this.#stats.filtered++;
      return;
    }
    const enriched: EnrichedProcEvent = event;
    if (this.#options.enrich) this.#enrich(enriched);
    this.#stats.events++;
    this.#stream.push(enriched);
  }

  #checkSequence(event: ProcEvent): void {
    const last = this.#lastSeq[event.cpu];
    this.#lastSeq[event.cpu] = event.seq;
    if (last === undefined) return;
    const gap = (event.seq - last - 1) >>> 0;
    // A huge "gap" is a step backwards (a counter reset): start over from here.
    if (gap === 0 || gap >= 0x80000000) return;
    this.#stats.seqLost += gap;
    this.#stream.push({ type: "lost", reason: "seq-gap", cpu: event.cpu, count: gap });
  }

  #enrich(event: EnrichedProcEvent): void {
    switch (event.type) {
      case "fork":
        if (event.childPid === event.childTgid) {
          event.process = readProcessInfo(event.childTgid);
          this.#known.set(event.childTgid, event.process);
        }
        break;
      case "exec":
        event.process = readProcessInfo(event.tgid);
        this.#known.set(event.tgid, event.process);
        break;
      case "exit":
        event.process = this.#known.get(event.tgid);
        if (event.pid === event.tgid) this.#known.delete(event.tgid);
        break;
      case "unknown":
        break;
      default:
        event.process = this.#known.get(event.tgid) ?? readProcessInfo(event.tgid);
    }
  }

  /** The event stream; there is one per monitor, and ending it (e.g. `break`) closes the monitor. */
  [Symbol.asyncIterator](): AsyncIterableIterator<ProcMonitorItem> {
    return this.#stream;
  }

  /**
   * Unsubscribes (IGNORE) and closes the socket; the iteration ends quietly. Idempotent.
   *
   * @param unsubscribe send IGNORE first (default true)
   */
  close(unsubscribe = true): Promise<void> {
    this.#closing ??= (async () => {
      if (unsubscribe && this.#subscribed) {
        try {
          this.#sendOp(PROC_CN_MCAST_IGNORE, 0);
        } catch {
          // Closing anyway; the kernel frees the socket's filter state at close.
        }
      }
      this.#stream.end();
      await this.#transport.close();
      await this.#loop;
    })();
    return this.#closing;
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Process events as an async iterable that subscribes when iteration starts and unsubscribes when it ends.
 *
 * @example Exits with a non-zero status, until aborted
 * ```ts ignore
 * import { watchProcesses, waitStatus } from "@cnlink/connector/proc";
 *
 * for await (const e of watchProcesses({ events: ["nonzero-exit"] })) {
 *   if (e.type === "exit") console.log(e.pid, waitStatus(e.exitCode));
 * }
 * ```
 */
export async function* watchProcesses(options: ProcMonitorOptions = {}): AsyncGenerator<ProcMonitorItem, void> {
  await using monitor = await ProcMonitor.open(options);
  yield* monitor;
}
