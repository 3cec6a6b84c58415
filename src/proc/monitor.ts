/**
 * `ProcMonitor`: a trustworthy subscription to the process-events connector, on the receive core.
 *
 * - only datagrams from the kernel (sender port 0) are delivered; others are counted as `foreign`;
 * - LISTEN is confirmed by its ack (random `ack`, reply `ack + 1`) within a timeout, so a kernel that
 *   ignores us (another user or pid namespace) gives an error instead of silence;
 * - on Linux >= 6.6 the kernel filters events (`proc_input`); before, the same rules run here;
 * - loss is delivered in the stream: `{ type: "lost", reason: "overrun" }` after ENOBUFS and
 *   `{ type: "lost", reason: "seq-gap", cpu, count }` from per-CPU sequence gaps (when receiving all events);
 * - close() sends IGNORE first, so the kernel's listener count stays right.
 *
 * @module
 */
import { encodeMessage } from "../codec/cn_msg.ts";
import type { CnMessage } from "../codec/cn_msg.ts";
import { CN_IDX_PROC, CN_VAL_PROC } from "../codec/constants.ts";
import {
  encodeProcInput,
  isProcEventDatagram,
  PROC_EVENT_DATAGRAM,
  PROC_EVENT_DATAGRAM_EVENT,
  procEventDatagramAck,
  procEventDatagramSeq,
} from "../codec/proc.ts";
import type { MessageStream } from "../core/message_stream.ts";
import { Receiver } from "../core/receiver.ts";
import type { MessageSource, ReceiveBufferSize, ReceiveIssueInfo, ReceiveStats } from "../core/types.ts";
import { NetlinkError, TimeoutError } from "../errors.ts";
import { type FileReader, libcFileReader } from "../ffi/files.ts";
import { loadLibc } from "../ffi/load.ts";
import { NetlinkSocket } from "../socket/netlink_socket.ts";
import { checkTransport, type ReceivedDatagram, type Transport } from "../socket/transport.ts";
import { PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL } from "./constants.ts";
import { bootOffsetClock, monotonicClock } from "./clock.ts";
import { listPids, type ProcessInfo } from "./enrich.ts";
import { ProcessTable, SWEEP_MS } from "./table.ts";
import { type ReceiptStats, ReceiptTransport } from "./receipt.ts";
import { type AckEvent, decodeProcEvent, decodeProcEventAt, type ProcEvent } from "./event.ts";
import { eventMask, passes, type ProcEventName, TABLE_EVENTS } from "./filter.ts";
import { checkCount, checkFunction, checkOptions, checkSignal, checkTimeout, checkType, show } from "../args.ts";

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
  /**
   * Which events; default all. `"nonzero-exit"` = only exits with a non-zero wait status. With a
   * process table (`enrich`, `cgroup`) the kernel is asked for what the table needs as well (fork,
   * exec, exit, comm, uid, gid) and this filter applies after the table has seen each event, so an
   * event shown carries its right process whatever the filter hides.
   */
  events?: readonly ProcEventName[];
  /** Receive buffer to ask for, in bytes; default 32 MiB (SO_RCVBUFFORCE as root, else capped at rmem_max). */
  rcvbuf?: number;
  /** Double the receive buffer after each overrun, up to this many bytes; default 256 MiB, `0` to keep it. */
  maxRcvbuf?: number;
  /**
   * How long to wait for the kernel's ack of LISTEN; default 1000 ms. The ack queues behind other
   * listeners' events: while the socket still holds events that came before it (a busy host, a
   * starved process), the wait is extended, up to ten times this.
   */
  timeoutMs?: number;
  /**
   * @deprecated since 0.3.0: use `timeoutMs` (the name every other wait of the library uses). Still
   * accepted; giving both is a TypeError.
   */
  ackTimeoutMs?: number;
  /** Closes the monitor when aborted: the iteration ends quietly, as with `close()`. */
  signal?: AbortSignal;
  /**
   * Keep a live process table (`monitor.processes`): a /proc scan at open, then kept by the events,
   * so each event carries `process` (its process: command line, user, cgroup, container, start
   * time, ...) including processes that started earlier. /proc is read at the point of receipt: a
   * worker thread receives the events and reads /proc for each exec as soon as its datagram arrives
   * (until it runs, the receive loop reads, without coalescing wake-ups), so short-lived processes
   * are read while they still exist; what cannot be read is listed in `process.missing`
   * (`stats.receipt` says what the worker did).
   * /proc is read through libc (open/read/close), several times faster than the runtimes' fs
   * modules, and so with Deno's `--allow-ffi` alone (its fs module wants `--allow-all` for /proc).
   */
  enrich?: boolean;
  /**
   * Only events of processes whose cgroup v2 path starts with this (e.g. `"/system.slice/docker-"`,
   * `"/kubepods"`); turns `enrich` on. Loss reports always pass.
   */
  cgroup?: string;
  /** Most events queued before the receive loop pauses (the kernel then buffers, then overruns). Default 65536. */
  maxQueued?: number;
  /**
   * Most bytes of events queued before the receive loop pauses (each event counts its 40-byte
   * `proc_event`). Default 64 MiB.
   */
  maxQueuedBytes?: number;
  /** Called for datagrams not delivered (malformed, foreign senders). Default: a warning for the first of each kind. */
  onError?: (error: unknown, info: ReceiveIssueInfo) => void;
  /** libc to load; default `libc.so.6`. */
  libcPath?: string;
}

/** Counters of a monitor (`foreign`: datagrams from a sender other than the kernel, e.g. forged events). */
export interface ProcMonitorStats extends ReceiveStats {
  /** Events delivered. */
  events: number;
  /** Messages missing from per-CPU sequences. */
  seqLost: number;
  /** Acks seen (ours and other clients'). */
  acks: number;
  /**
   * Events dropped by the filter here: all of them before 6.6; with a kernel filter, stragglers and
   * the events only the process table asked the kernel for.
   */
  filtered: number;
  /** @deprecated since 0.3.0: use `monitor.receiveBuffer.reported`. The receive buffer the kernel reports. */
  rcvbuf: number;
  /**
   * With a process table: the execs whose /proc files the receive worker read at receipt, how many
   * of those reads were uncertain (a later exec of the same process came first: not used), and the
   * batches it handed over.
   */
  receipt?: ReceiptStats;
}

/** How events are selected: by the kernel (>= 6.6), here (older kernels), or not at all. */
export type FilterMode = "kernel" | "userspace" | "none";

const DEFAULT_RCVBUF = 32 << 20;
/**
 * Bytes per receive slot of a monitor's socket: an event is a 76-byte datagram, and a longer one is
 * received truncated (the fake kernel's monitors receive the same way).
 */
export const MONITOR_SLOT_SIZE = 128;
const DEFAULT_MAX_RCVBUF = 256 << 20;
const PROC_ID = { idx: CN_IDX_PROC, val: CN_VAL_PROC };
// Bytes a queued event counts for (the stream's byte bound): its proc_event (PROC_EVENT.size),
// as a literal for the same reason as the codec's datagram offsets.
const EVENT_BYTES = 40;
// Most events held back for one batch before they go to the stream anyway.
const HELD_MAX = 512;

function unrefTimer(timer: ReturnType<typeof setTimeout>): void {
  const deno = (globalThis as { Deno?: { unrefTimer(id: number): void } }).Deno;
  if (typeof timer === "number") deno?.unrefTimer(timer);
  else (timer as { unref?: () => void }).unref?.();
}

const OPTION_KEYS = [
  "events",
  "rcvbuf",
  "maxRcvbuf",
  "timeoutMs",
  "ackTimeoutMs",
  "signal",
  "enrich",
  "cgroup",
  "maxQueued",
  "maxQueuedBytes",
  "onError",
  "libcPath",
] as const satisfies readonly (keyof ProcMonitorOptions)[];
/** The keys of `ProcMonitor.over`'s options: `libcPath` is the transport's and the dependencies'. */
const OVER_KEYS = OPTION_KEYS.filter((k) => k !== "libcPath") as readonly (keyof ProcMonitorOverOptions)[];
const EVENTS_KEYS = ["signal"] as const satisfies readonly (keyof ProcEventsOptions)[];

/** Options of {@linkcode ProcMonitor.over}: those of `open` but `libcPath` (the transport is made already). */
export type ProcMonitorOverOptions = Omit<ProcMonitorOptions, "libcPath">;

/** Options of {@linkcode ProcMonitor.events}. */
export interface ProcEventsOptions {
  /** Closes the monitor when aborted: the iteration ends quietly, as with `close()`. */
  signal?: AbortSignal;
}

/**
 * What a monitor reads besides its socket, for {@linkcode ProcMonitor.over}: the clocks that turn
 * kernel timestamps into times, and how `/proc` is read for the process table (`enrich`, `cgroup`).
 * Each is optional: a missing clock is read from the host, a missing reader reads nothing (the table
 * then knows only what the events say). Tests give fixed clocks and an in-memory `/proc`.
 */
export interface ProcMonitorDependencies {
  /** Nanoseconds from boot to the Unix epoch (CLOCK_REALTIME - CLOCK_BOOTTIME). */
  bootOffsetNs?: () => bigint;
  /** CLOCK_MONOTONIC, in nanoseconds. */
  monotonicNs?: () => bigint;
  /** Reads `/proc/<pid>/...` files for the process table. */
  files?: FileReader;
  /** The pids in `/proc`, for the table's scan at open. */
  list?: () => number[];
}

/**
 * Checks a monitor's options before anything is loaded or opened (`open`, `watchProcesses`, the
 * fake kernel's `openProcMonitor`).
 *
 * @throws {TypeError} an unknown key, `events` not an array of known names, a wrong type
 * @throws {RangeError} a size, limit or timeout out of range
 */
export function checkProcMonitorOptions(options: ProcMonitorOptions | undefined): ProcMonitorOptions {
  return checkOptionValues(checkOptions("ProcMonitor options", options, OPTION_KEYS));
}

function checkOptionValues(opts: ProcMonitorOptions): ProcMonitorOptions {
  eventMask(opts.events);
  checkCount(opts.rcvbuf, "rcvbuf", 1, 0x7fffffff);
  checkCount(opts.maxRcvbuf, "maxRcvbuf", 0, 0x7fffffff);
  checkTimeout(opts.timeoutMs, "timeoutMs");
  checkTimeout(opts.ackTimeoutMs, "ackTimeoutMs");
  if (opts.timeoutMs !== undefined && opts.ackTimeoutMs !== undefined) {
    throw new TypeError("give timeoutMs or its deprecated alias ackTimeoutMs, not both");
  }
  checkSignal(opts.signal);
  checkType(opts.enrich, "enrich", "boolean");
  if (opts.cgroup !== undefined && typeof opts.cgroup !== "string") {
    throw new TypeError(`cgroup must be a path prefix like "/system.slice/", got ${show(opts.cgroup)}`);
  }
  checkCount(opts.maxQueued, "maxQueued", 1);
  checkCount(opts.maxQueuedBytes, "maxQueuedBytes", 1);
  checkFunction(opts.onError, "onError");
  checkType(opts.libcPath, "libcPath", "string");
  // The deprecated alias is read as timeoutMs from here on.
  if (opts.ackTimeoutMs !== undefined) {
    const { ackTimeoutMs, ...rest } = opts;
    return { ...rest, timeoutMs: ackTimeoutMs };
  }
  return opts;
}

function randomAck(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] & 0x7fffffff;
}

/**
 * LISTEN handshakes tried when the kernel's ack was lost to an overrun (known lost: the socket was read
 * empty after the send without it, and an overrun was reported since), within ACK_BACKLOG_LIMIT times
 * the timeout.
 */
const SUBSCRIBE_ATTEMPTS = 10;
/** How many times `timeoutMs` the handshake waits while the socket still holds what came before the ack. */
const ACK_BACKLOG_LIMIT = 10;
/** How often the LISTEN handshake checks whether the socket was read empty since the send. */
const HANDSHAKE_TICK_MS = 20;

/**
 * A subscription to process events. Iterate it for events and loss reports; close it to unsubscribe.
 *
 * @example Print every exec for five seconds (as root; mainline Linux >= 6.6 also allows any user)
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
export class ProcMonitor implements AsyncIterable<ProcMonitorItem>, AsyncDisposable, Disposable {
  readonly #receiver: Receiver;
  readonly #options: ProcMonitorOptions;
  readonly #mask: number;
  // What the kernel is asked for: the user's events, and what the process table needs.
  readonly #kernelMask: number;
  readonly #stream: MessageStream<ProcMonitorItem>;
  // Last cn_msg seq seen per CPU, indexed by CPU number.
  readonly #lastSeq: number[] = [];
  #view: DataView | null = null;
  readonly #table: ProcessTable | undefined;
  readonly #counts = { events: 0, seqLost: 0, acks: 0, filtered: 0 };
  #mode: FilterMode = "none";
  #listenFormat: 4 | 8 = 8;
  #subscribed = false;
  /** Overruns while subscribing, and who waits to hear of one (the handshake resends LISTEN). */
  #handshakeOverruns = 0;
  #onAck: ((ack: AckEvent) => void) | null = null;
  #closing: Promise<void> | null = null;
  // With a table, what the receive loop got since it last paused: held back until then, so that an
  // exec's /proc read can still be withheld when a later exec of the same pid follows in the batch.
  #held: ProcMonitorItem[] | null = null;
  #sweepTimer: ReturnType<typeof setTimeout> | undefined;
  /** Takes the abort listeners of `events({ signal })` off their signals. */
  readonly #detach: (() => void)[] = [];
  #requested: number;

  /** Use {@linkcode ProcMonitor.open} or {@linkcode ProcMonitor.over}. */
  private constructor(transport: Transport, options: ProcMonitorOptions, internals: ProcMonitorDependencies) {
    this.#options = options;
    this.#mask = eventMask(options.events);
    const enrich = options.enrich || options.cgroup !== undefined;
    if (enrich) {
      this.#table = new ProcessTable({
        bootOffsetNs: internals.bootOffsetNs,
        monotonicNs: internals.monotonicNs,
        files: internals.files,
        list: internals.list,
      });
      this.#held = [];
    }
    this.#kernelMask = this.#table && this.#mask !== PROC_EVENT_ALL ? (this.#mask | TABLE_EVENTS) >>> 0 : this.#mask;
    this.#receiver = new Receiver(transport, {
      wanted: () => true,
      datagram: (got) => this.#fastPath(got),
      message: (m, source) => this.#message(m, source),
      overrun: () => this.#overrun(),
      idle: this.#held ? () => this.#release() : undefined,
      failed: () => {},
    }, {
      kernelOnly: true,
      maxQueued: options.maxQueued,
      maxQueuedBytes: options.maxQueuedBytes,
      onError: options.onError,
      label: () => "the process-events socket",
      // /proc must be read before short-lived processes are gone: no sleeping between drains.
      // Once the receipt worker reads /proc at receipt, it coalesces: it wakes this thread at
      // most once per NOTIFY_MS while batches keep coming (receipt_format.ts), and a timer here
      // would only add wake-ups.
      coalesce: !enrich,
    });
    // Not bounded before the kernel's ack is through: a full stream would pause the loop before it.
    this.#stream = this.#receiver.stream(options.signal, () => void this.close(), false);
    this.#requested = options.rcvbuf ?? DEFAULT_RCVBUF;
    transport.setReceiveBuffer(this.#requested);
    this.#receiver.start();
  }

  /**
   * Subscribes to process events and resolves once the kernel has confirmed it.
   *
   * @throws {NetlinkError} EPERM (group 1 refused: root always works; mainline Linux >= 6.6 allows any user, some vendor builds do not), EPROTONOSUPPORT
   *   (no connector), ECONNREFUSED (not the initial network namespace)
   * @throws {TimeoutError} the kernel did not ack LISTEN: not the initial user/pid namespace, or no
   *   CONFIG_PROC_EVENTS; or its ack was lost to an overrun at each of 10 tries (a tiny `rcvbuf` that
   *   other listeners' events keep full)
   * @throws {TypeError} an unknown option (the message lists the accepted ones), `events` not an array
   *   of known names, a signal that is not an `AbortSignal` (all before anything is opened)
   * @throws {RangeError} `timeoutMs` not finite with 0 < t <= 2147483647, a size out of range
   * @throws the reason of `signal` when it is aborted already (nothing is opened) or while subscribing
   */
  static async open(options?: ProcMonitorOptions): Promise<ProcMonitor> {
    const opts = checkProcMonitorOptions(options);
    opts.signal?.throwIfAborted();
    const libc = await loadLibc(opts.libcPath);
    // Events are 76-byte datagrams: batch them, 64 per system call. A larger datagram cannot be a
    // process event; it arrives truncated and is reported as such.
    // Group 1 is joined by the handshake, right before LISTEN goes out (see #subscribe).
    const socket = NetlinkSocket.open(libc, {
      batch: { count: 64, slotSize: MONITOR_SLOT_SIZE },
    });
    let files = libcFileReader(libc);
    let transport: Transport = socket;
    if (opts.enrich || opts.cgroup !== undefined) {
      // With a table, a worker takes the socket over once it runs, and reads /proc for each exec as
      // soon as it is received (receipt.ts).
      const receipt = new ReceiptTransport(socket, libc, files);
      transport = receipt;
      files = receipt.files;
    }
    const list = files;
    return await ProcMonitor.#subscribeOver(transport, opts, {
      bootOffsetNs: await bootOffsetClock({ libcPath: opts.libcPath }),
      monotonicNs: await monotonicClock({ libcPath: opts.libcPath }),
      files,
      list: () => listPids(list),
    });
  }

  /**
   * Builds a monitor over a transport that is already open (not yet in group 1: the handshake joins
   * it) and subscribes, as `open()` does over a real socket: the seam the fake kernel and tests use.
   * The monitor owns the transport from then on: when the handshake fails (or the signal aborts it)
   * the transport is closed. Options are checked as `open()` checks them, before the transport is
   * touched; a refused argument leaves it to the caller.
   *
   * @param transport the socket (see `FakeKernelCore.socket`; a monitor's receives 128-byte slots)
   * @param options as for `open`, without `libcPath`
   * @param dependencies the clocks and the `/proc` reader the process table uses (default: the host's
   *   clocks, no `/proc`)
   * @returns the subscribed monitor
   * @throws {TypeError} `transport` is not a Transport, a bad option or dependency
   * @throws {RangeError} a size, limit or timeout out of range
   * @throws {TimeoutError} nothing acked LISTEN within `timeoutMs`
   * @throws the reason of `signal` when it is aborted already or while subscribing
   *
   * @example Over a fake kernel's socket
   * ```ts
   * import { ProcMonitor } from "@cnlink/connector/proc";
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernel();
   * kernel.enableProcEvents();
   * await using monitor = await ProcMonitor.over(kernel.socket({ slotSize: 128 }), { events: ["exec"] });
   * assert.equal(monitor.filterMode, "kernel");
   * ```
   */
  static async over(
    transport: Transport,
    options?: ProcMonitorOverOptions,
    dependencies?: ProcMonitorDependencies,
  ): Promise<ProcMonitor> {
    const opts = checkOptionValues(checkOptions("ProcMonitor.over options", options, OVER_KEYS));
    checkTransport(transport);
    const deps = checkOptions("ProcMonitor.over dependencies", dependencies, [
      "bootOffsetNs",
      "monotonicNs",
      "files",
      "list",
    ]);
    checkFunction(deps.bootOffsetNs, "bootOffsetNs");
    checkFunction(deps.monotonicNs, "monotonicNs");
    checkFunction(deps.list, "list");
    if (deps.files !== undefined && (typeof deps.files !== "object" || deps.files === null)) {
      throw new TypeError(`files must be a FileReader, got ${show(deps.files)}`);
    }
    return await ProcMonitor.#subscribeOver(transport, opts, deps);
  }

  /** Makes the monitor and runs the handshake; on failure the transport is closed. */
  static async #subscribeOver(
    transport: Transport,
    options: ProcMonitorOptions,
    dependencies: ProcMonitorDependencies,
  ): Promise<ProcMonitor> {
    // Aborted already: open nothing (a stream made with an aborted signal ends at once, but no abort
    // event would ever close the subscribed socket).
    if (options.signal?.aborted) {
      await transport.close();
      throw options.signal.reason;
    }
    const monitor = new ProcMonitor(transport, options, dependencies);
    try {
      await monitor.#subscribe();
    } catch (err) {
      await monitor.#shutdown(false);
      throw options.signal?.aborted ? options.signal.reason : err;
    }
    if (options.signal?.aborted) {
      // Aborted while subscribing: the stream has ended; take the subscription down too.
      await monitor.close();
      throw options.signal.reason;
    }
    return monitor;
  }

  /**
   * The live process table, with `enrich: true` (or `cgroup`): every process the monitor knows, and
   * `ancestry(pid)`. Undefined otherwise.
   */
  get processes(): ProcessTable | undefined {
    return this.#table;
  }

  /** How events are selected: `"kernel"` (Linux >= 6.6 `proc_input`), `"userspace"`, or `"none"` (all). */
  get filterMode(): FilterMode {
    return this.#mode;
  }

  /** Whether per-CPU sequence gaps are checked (only when every event is received). */
  get checksSequence(): boolean {
    return this.#mode !== "kernel";
  }

  /** Whether `close()` was called (or an error, or the signal, closed the monitor). */
  get closed(): boolean {
    return this.#closing !== null || this.#receiver.closed;
  }

  /** The receive buffer: what was asked for (`rcvbuf`, or grown after overruns), and what the kernel reports. */
  get receiveBuffer(): ReceiveBufferSize {
    return { requested: this.#requested, reported: this.#receiver.transport.rcvbuf };
  }

  /** A snapshot of the counters. */
  get stats(): Readonly<ProcMonitorStats> {
    const transport = this.#receiver.transport;
    const stats: ProcMonitorStats = { ...this.#receiver.stats, ...this.#counts, rcvbuf: transport.rcvbuf };
    if (transport instanceof ReceiptTransport) stats.receipt = { ...transport.stats };
    return stats;
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
    const timeoutMs = this.#options.timeoutMs ?? 1000;
    const deadline = performance.now() + timeoutMs;
    const hardDeadline = deadline + (ACK_BACKLOG_LIMIT - 1) * timeoutMs;
    const seen = new Set<number>();
    let wide = 0;
    let ack: AckEvent | null = null;
    let lostAcks = 0; // attempts in a row whose ack was lost to an overrun
    // The socket is in group 1 from bind() on, so on a busy host other listeners' events already flow
    // into it, and a small buffer can be full when the kernel multicasts our ack: the ack is dropped
    // and the next receive reports the overrun. Then LISTEN is sent again into the buffer just drained
    // (a datagram into an empty buffer is always taken). A repeated LISTEN is not counted twice by the
    // kernel (>= 6.6: the socket's previous op was LISTEN); retries happen only after an overrun.
    // The socket joins group 1 only now: once in the group it receives every other listener's
    // events, and whatever arrived between a bind() and LISTEN would queue ahead of our ack. On a busy
    // host (a fork load, seven monitors starting on two cores) that backlog held the ack back past the
    // timeout (bench/README.md, "Figures the code cites"). Joined here, only what the kernel sends between this
    // setsockopt() and the sendto() below is ahead of the ack.
    this.#receiver.transport.join(CN_IDX_PROC);
    for (let attempt = 0; !ack && attempt < SUBSCRIBE_ATTEMPTS && performance.now() < hardDeadline; attempt++) {
      wide = randomAck();
      const classic = randomAck();
      let overruns = this.#handshakeOverruns;
      let sent = Infinity;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let settle = () => {};
      const confirmed = new Promise<AckEvent | null>((resolve) => {
        // The ack is queued inside our sendto(), behind what other listeners' events queued before
        // it. So it is missing only once the socket was read empty after the send. An overrun
        // reported meanwhile does not mean the ack was lost (the kernel reports it ahead of what is
        // still queued): only when the socket was read empty after the send without the ack, and an
        // overrun was reported since the send, is the ack known lost, and LISTEN goes out again.
        // Without an overrun, the wait lasts the timeout; a slow reader (a starved process on a busy
        // host) still catching up extends it, up to ACK_BACKLOG_LIMIT times the timeout.
        settle = () => {
          const now = performance.now();
          const readEmpty = this.#receiver.emptied > sent;
          const lost = this.#handshakeOverruns !== overruns;
          if ((readEmpty && (lost || now >= deadline)) || now >= hardDeadline) {
            clearTimeout(timer);
            resolve(null);
          }
        };
        const tick = () => {
          settle();
          timer = setTimeout(tick, HANDSHAKE_TICK_MS);
        };
        timer = setTimeout(tick, HANDSHAKE_TICK_MS);
        this.#onAck = (event) => {
          seen.add(event.ack);
          if (event.ack !== ((classic + 1) >>> 0)) return;
          clearTimeout(timer);
          resolve(event);
        };
      });
      try {
        // A retry first empties the buffer the lost ack overflowed. Reading it empty also clears the
        // kernel's congestion flag: while that is set, a dropped datagram is not reported again, so a
        // second lost ack would go unseen. The first attempt sends at once, so that nothing but what
        // the kernel sends in between queues ahead of the ack. The overruns this drain reports belong
        // to the previous attempt: they are counted before this attempt's baseline. The drain comes
        // right before the sends: under a flood a small buffer fills again within microseconds (on
        // Debian's 6.1 in the lab's emulated guest, a drain before this attempt's setup lost the ack
        // 10 times in a row).
        if (attempt > 0) {
          this.#receiver.drainNow();
          overruns = this.#handshakeOverruns;
        }
        this.#sendOp(PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL, 8, wide);
        this.#sendOp(PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL, 4, classic);
        sent = this.#receiver.emptied;
        // The acks were queued inside those sendto() calls: take them now, without a wake-up.
        this.#receiver.drainNow();
        settle();
        ack = await confirmed;
      } finally {
        clearTimeout(timer);
        this.#onAck = null;
      }
      // No overrun since the send: the kernel did not ack (or the hard deadline passed); do not retry.
      if (!ack && this.#handshakeOverruns === overruns) {
        lostAcks = 0;
        break;
      }
      if (!ack) lostAcks++;
    }
    if (!ack && lostAcks > 0) {
      throw new TimeoutError(
        `The kernel's ack of LISTEN was lost to an overrun ${lostAcks} time(s)`,
        timeoutMs,
        `other listeners' process events fill this socket's receive buffer (${this.#receiver.transport.rcvbuf} B as ` +
          "the kernel reports it) faster than it is read: give a larger rcvbuf",
      );
    }
    if (!ack) {
      throw new TimeoutError(
        "The kernel did not ack LISTEN",
        timeoutMs,
        "it ignores requests from outside the initial user and pid namespaces (a container, unshare -U/-p), " +
          "or it lacks CONFIG_PROC_EVENTS (see /proc/net/connector for cn_proc)",
      );
    }
    if (ack.err !== 0) {
      throw new NetlinkError("PROC_CN_MCAST_LISTEN", ack.err, "subscribe to process events");
    }
    // A {LISTEN, mask} narrows the kernel's filter; it is not acked to us (our own filter drops acks).
    const inputFilter = seen.has((wide + 1) >>> 0);
    this.#listenFormat = inputFilter ? 8 : 4;
    if (this.#mask === PROC_EVENT_ALL) this.#mode = "none";
    else if (inputFilter && this.#kernelMask !== PROC_EVENT_ALL) {
      this.#mode = "kernel";
      this.#sendOp(PROC_CN_MCAST_LISTEN, this.#kernelMask);
    } else this.#mode = "userspace";
    // Seed the process table after subscribing, so no process can start unseen in between.
    this.#table?.scan();
    this.#sweepLater(); // zombies of the scan
    this.#subscribed = true;
    // With a table: the worker that reads /proc at receipt starts now (receipt.ts).
    if (this.#receiver.transport instanceof ReceiptTransport) this.#receiver.transport.start();
    this.#receiver.bound(this.#stream as MessageStream<unknown>);
  }

  #sendOp(op: number, mask: number, format: 4 | 8 = this.#listenFormat, ack = 0): void {
    const data = encodeProcInput(format === 8 ? { op, events: mask } : { op });
    this.#receiver.transport.send(encodeMessage({ id: PROC_ID, ack, data }), { port: 0, groups: 0 });
  }

  #overrun(): void {
    if (!this.#subscribed) this.#handshakeOverruns++;
    this.#push({ type: "lost", reason: "overrun" });
    this.#lost();
    const max = this.#options.maxRcvbuf ?? DEFAULT_MAX_RCVBUF;
    // keepalived's remedy: a bigger buffer for the next burst. The kernel reports twice what was set.
    const rcvbuf = this.#receiver.transport.rcvbuf;
    if (max > 0 && rcvbuf < max) {
      try {
        this.#receiver.transport.setReceiveBuffer(Math.min(rcvbuf, max));
        this.#requested = Math.min(rcvbuf, max);
      } catch {
        // Keep the current size; the loss was reported already.
      }
    }
  }

  /**
   * The kernel sends each event as one 76-byte datagram: decode it in place, through one DataView
   * kept over the whole receive buffer, with no intermediate objects. Anything else goes the core's
   * general way (`#message`).
   */
  #fastPath(got: ReceivedDatagram): boolean {
    if (got.size !== PROC_EVENT_DATAGRAM) return false;
    const buffer = got.buffer;
    let v = this.#view;
    if (!v || v.buffer !== buffer.buffer || v.byteOffset !== buffer.byteOffset) {
      v = this.#view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    }
    const at = got.offset;
    if (!isProcEventDatagram(v, at)) return false;
    this.#accept(
      decodeProcEventAt(
        v,
        at + PROC_EVENT_DATAGRAM_EVENT,
        EVENT_BYTES,
        procEventDatagramSeq(v, at),
        procEventDatagramAck(v, at),
      ),
    );
    return true;
  }

  #message(m: CnMessage, source: MessageSource): void {
    if (m.id.idx !== CN_IDX_PROC || m.id.val !== CN_VAL_PROC) {
      this.#receiver.report("malformed", new Error(`a cn_msg for ${m.id.idx}:${m.id.val} on group 1`), source);
      return;
    }
    let event: ProcEvent;
    try {
      event = decodeProcEvent(m.data, m.seq, m.ack);
    } catch (err) {
      this.#receiver.report("malformed", err, source);
      return;
    }
    this.#accept(event);
  }

  #accept(event: ProcEvent): void {
    if (this.#mode !== "kernel") this.#checkSequence(event);
    if (event.type === "ack") {
      this.#counts.acks++;
      this.#onAck?.(event);
      return;
    }
    // The table follows every event, also those the filter drops (a fork it does not show still
    // makes a process it may show later).
    const process = this.#table?.apply(event);
    // Also under a kernel filter: events queued before the filter was set still pass through here.
    const prefix = this.#options.cgroup;
    if (!passes(event, this.#mask) || (prefix !== undefined && !process?.cgroup?.startsWith(prefix))) {
      this.#counts.filtered++;
      return;
    }
    const enriched: EnrichedProcEvent = event;
    if (process) enriched.process = process;
    this.#counts.events++;
    this.#push(enriched);
  }

  #push(item: ProcMonitorItem): void {
    const held = this.#held;
    if (held === null) this.#stream.push(item, EVENT_BYTES);
    else if (held.push(item) >= HELD_MAX) this.#release();
  }

  /** Hands what was held back to the stream: the receive loop pauses, or the batch is long. */
  #release(): void {
    const held = this.#held;
    if (held === null) return;
    this.#held = [];
    for (const item of held) this.#stream.push(item, EVENT_BYTES);
    this.#table!.settle();
    this.#sweepLater();
  }

  /** Events were lost: the table may hold processes whose exit went missing, and miss new ones. */
  #lost(): void {
    this.#table?.lost();
  }

  /** Sweeps the table (see `ProcessTable.sweep`) in SWEEP_MS while it has something to check. */
  #sweepLater(): void {
    if (this.#sweepTimer !== undefined || !this.#table?.sweepDue || this.#closing) return;
    this.#sweepTimer = setTimeout(() => {
      this.#sweepTimer = undefined;
      if (this.#closing) return;
      this.#table!.sweep();
      this.#sweepLater();
    }, SWEEP_MS);
    // A pending sweep does not keep the process alive; the monitor's socket wait decides that.
    unrefTimer(this.#sweepTimer);
  }

  #checkSequence(event: ProcEvent): void {
    const last = this.#lastSeq[event.cpu];
    this.#lastSeq[event.cpu] = event.seq;
    if (last === undefined) return;
    const gap = (event.seq - last - 1) >>> 0;
    // A huge "gap" is a step backwards (a counter reset): start over from here.
    if (gap === 0 || gap >= 0x80000000) return;
    this.#counts.seqLost += gap;
    this.#push({ type: "lost", reason: "seq-gap", cpu: event.cpu, count: gap });
    this.#lost();
  }

  /**
   * The event stream, as the monitor itself iterates: there is one per monitor, and ending it (e.g.
   * `break`) closes the monitor. With `signal`, aborting it closes the monitor too (the iteration
   * ends quietly), as the `signal` option of `open` does.
   *
   * @throws {TypeError} an unknown option, a signal that is not an `AbortSignal`
   *
   * @example Until the signal is aborted
   * ```ts
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernel();
   * kernel.enableProcEvents();
   * const monitor = await kernel.openProcMonitor();
   * const seen: string[] = [];
   * for await (const e of monitor.events({ signal: AbortSignal.timeout(20) })) seen.push(e.type);
   * assert.deepEqual(seen, []); // nothing happened on the fake
   * assert.equal(monitor.closed, true); // the abort closed the monitor
   * ```
   */
  events(options?: ProcEventsOptions): AsyncIterableIterator<ProcMonitorItem> {
    const opts = checkOptions("events options", options, EVENTS_KEYS);
    checkSignal(opts.signal);
    const signal = opts.signal;
    if (signal?.aborted) void this.close();
    else if (signal && !this.#closing) {
      // Taken off at close, so that a long-lived signal keeps no closed monitor alive.
      const onAbort = () => void this.close();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#detach.push(() => signal.removeEventListener("abort", onAbort));
    }
    return this.#stream;
  }

  /** The event stream; there is one per monitor, and ending it (e.g. `break`) closes the monitor. */
  [Symbol.asyncIterator](): AsyncIterableIterator<ProcMonitorItem> {
    return this.#stream;
  }

  /** Unsubscribes (IGNORE) and closes the socket; the iteration ends quietly. Idempotent. */
  close(): Promise<void> {
    return this.#shutdown(true);
  }

  #shutdown(unsubscribe: boolean): Promise<void> {
    clearTimeout(this.#sweepTimer);
    for (const detach of this.#detach.splice(0)) detach();
    if (!this.#closing) this.#release();
    this.#closing ??= (async () => {
      if (unsubscribe && this.#subscribed && !this.#receiver.closed) {
        try {
          this.#sendOp(PROC_CN_MCAST_IGNORE, 0);
        } catch {
          // Closing anyway; the kernel frees the socket's filter state at close.
        }
      }
      await this.#receiver.close();
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

/**
 * Process events as an async iterable that subscribes when iteration starts and unsubscribes when it
 * ends. Its iterator's `return()` (what `break` calls) stops at once, also while a `next()` waits for
 * an event: the monitor closes and the pending `next()` ends `done`. An aborted `signal` ends it the
 * same way, quietly. The options are checked at the call, as `ProcMonitor.open` checks them.
 *
 * @example Exits with a non-zero status, until aborted
 * ```ts ignore
 * import { watchProcesses, waitStatus } from "@cnlink/connector/proc";
 *
 * for await (const e of watchProcesses({ events: ["nonzero-exit"], signal: AbortSignal.timeout(60_000) })) {
 *   if (e.type === "exit") console.log(e.pid, waitStatus(e.exitCode));
 * }
 * ```
 */
export function watchProcesses(options?: ProcMonitorOptions): AsyncIterable<ProcMonitorItem> {
  checkProcMonitorOptions(options);
  return {
    [Symbol.asyncIterator](): AsyncIterator<ProcMonitorItem> {
      const done: IteratorReturnResult<undefined> = { value: undefined, done: true };
      let monitor: ProcMonitor | null = null;
      let opening: Promise<AsyncIterator<ProcMonitorItem>> | null = null;
      // An aborted signal ends the iteration quietly, before anything is opened.
      let stopped = options?.signal?.aborted ?? false;
      const open = () =>
        opening ??= ProcMonitor.open(options).then((m) => {
          monitor = m;
          if (stopped) void m.close();
          return m[Symbol.asyncIterator]();
        });
      return {
        async next() {
          if (stopped) return done;
          let it: AsyncIterator<ProcMonitorItem>;
          try {
            it = await open();
          } catch (err) {
            // Aborted while opening: ends quietly too.
            if (!options?.signal?.aborted) throw err;
            stopped = true;
            return done;
          }
          return stopped ? done : it.next();
        },
        async return() {
          stopped = true;
          if (!monitor && opening) await opening.catch(() => {});
          await (monitor as ProcMonitor | null)?.close();
          return done;
        },
      };
    },
  };
}
