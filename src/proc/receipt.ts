/**
 * Enrichment at the point of receipt: a {@linkcode Transport} whose datagrams come from the receipt
 * worker (receipt_worker.ts), which receives them from the process-events socket and reads `/proc`
 * for each exec at once, off the JS thread, and hands them over in batches through a shared ring
 * (receipt_format.ts): this thread copies each batch out as it takes it, and waits for more with
 * Atomics.waitAsync. The monitor runs its pipeline on it unchanged (decode,
 * table, filters, loss accounting): datagrams and overruns come out of `receive()` in the order the
 * worker received them, and `files` serves the /proc files read for the datagram being handled, so
 * the process table's reads (`readProcessInfo`) find them instead of racing the process to /proc.
 *
 * Sends, groups and the receive buffer go to the socket itself. `close()` stops the worker (an
 * eventfd wakes its poll()), waits until it has left its loop, then terminates it and closes the
 * eventfd and the socket: no thread or fd is left, and the worker never sees a closed or reused fd.
 *
 * @module
 */
import { ClosedError, NetlinkError } from "../errors.ts";
import type { FileReader } from "../ffi/files.ts";
import { EFD_CLOEXEC, EFD_NONBLOCK, type Libc } from "../ffi/types.ts";
import type { NetlinkAddress } from "../codec/netlink.ts";
import type { ReceiveResult, Transport } from "../socket/transport.ts";
import { type NetlinkSocket, ReusedDatagram } from "../socket/netlink_socket.ts";
import {
  CGROUP_HEADER,
  CHUNK_HEADER,
  DATAGRAM_HEADER,
  FILE_HEADER,
  FILE_UNCERTAIN,
  FILES,
  inFlightLimit,
  KIND_CGROUP,
  KIND_DATAGRAM,
  KIND_FILE,
  KIND_OVERRUN,
  LAYOUT,
  RECEIPT_NICE,
  type ReceiptMessage,
  type ReceiptSetup,
  type ReceiptStart,
  RING_BYTES,
  RING_WRAP,
  SHARED,
  UNLINKED,
  WORKER_SYMBOLS,
} from "./receipt_format.ts";
import { receiptWorker } from "./receipt_worker.ts";

let workerUrl: string | undefined;

/** The /proc files read for one exec when it was received. */
interface Prefetched {
  /** `/proc/PID/` */
  readonly dir: string;
  /** By index in FILES: the bytes, or null when it could not be read. */
  readonly files: (Uint8Array | null)[];
  /** Some file was read after a later exec of the same process: none of them can be trusted. */
  uncertain: boolean;
}

/** What the monitor can see of the reads at receipt (for tests and the bench). */
export interface ReceiptStats {
  /**
   * Whether the worker reads the socket (it takes over once started; until then, or if it cannot
   * start, the JS thread reads the socket and /proc, as without a worker).
   */
  active: boolean;
  /** Execs whose /proc files the worker read. */
  reads: number;
  /** Of those, reads marked uncertain (a later exec of the process came before the read ended). */
  uncertain: number;
  /** Batches handed over by the worker. */
  batches: number;
  /** Whether the worker's thread runs at a raised priority (nice -10: the process may, e.g. as root). */
  raisedPriority: boolean;
  /**
   * Whether the worker has its exec-only socket: a second process-events socket with a filter that
   * passes exec events only. With it, the worker wakes at once for an exec (the race to /proc) and
   * takes the other events every 4 ms while they come (1 ms when they come fast), a wake-up per
   * period rather than per event; without it (the socket could not be opened), it wakes for every
   * datagram. The kernel then delivers each event to one more socket (and runs the filter), in the
   * context of the process the event is about.
   */
  execSocket: boolean;
  /**
   * Cgroups the worker read for forks and exits: once per batch for each process that forked (its
   * children start in its cgroup) or exited (it may have moved since it was read), after the batch
   * was received, in place of a read from the JS thread for each fork and exit.
   */
  cgroups: number;
}

/** A decoded batch: entry offsets of datagrams and overruns (-1) in order, and the files by datagram. */
interface Batch {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly entries: number[];
  /** How many of the entries are datagrams (not overruns). */
  readonly datagrams: number;
  readonly prefetched: Map<number, Prefetched>;
  /** The cgroups the worker read for the batch's forks and exits, by tgid (null: could not be read). */
  readonly cgroups: Map<number, Uint8Array | null>;
}

/** Bun's Worker can be unref'd; Deno's cannot (and needs not: the monitor is open while it runs). */
type AnyWorker = Worker & { unref?(): void };

/**
 * Serves the files read at receipt for the datagram being handled, and everything else from
 * `fallback` (the table's own reads: a scan, a process that started unseen).
 */
class ReceiptFiles implements FileReader {
  current: Prefetched | null = null;
  /** The cgroups read for the batch of the datagram being handled. */
  cgroups: Map<number, Uint8Array | null> | null = null;
  constructor(readonly fallback: FileReader) {}

  #lookup(path: string): Uint8Array | null | undefined {
    const c = this.current;
    if (c && path.startsWith(c.dir)) {
      const index = FILES.indexOf(path.slice(c.dir.length) as typeof FILES[number]);
      // An uncertain read may show a later program: unknown, never borrowed.
      if (index >= 0) return c.uncertain ? null : c.files[index];
    }
    const g = this.cgroups;
    if (g && g.size > 0 && path.startsWith("/proc/") && path.endsWith("/cgroup")) {
      return g.get(Number(path.slice(6, -7)));
    }
    return undefined;
  }

  read(path: string, max?: number): Uint8Array | null {
    const hit = this.#lookup(path);
    if (hit === undefined) return this.fallback.read(path, max);
    return hit && max !== undefined && hit.byteLength > max ? hit.subarray(0, max) : hit;
  }

  readlink(path: string): Uint8Array | null {
    const hit = this.#lookup(path);
    return hit === undefined ? this.fallback.readlink(path) : hit;
  }

  list(path: string): string[] | null {
    return this.fallback.list(path);
  }
}

/**
 * The process-events socket read by the receipt worker. Internal: `ProcMonitor.open()` uses it when
 * the monitor keeps a process table.
 */
export class ReceiptTransport implements Transport {
  /** Internal, for tests of the fallback: whether workers started from now on open their exec-only socket. */
  static execSocket = true;

  readonly #socket: NetlinkSocket;
  readonly #libc: Libc;
  #wake = -1;
  readonly #shared = new Int32Array(new SharedArrayBuffer(4 * SHARED.LENGTH));
  // The ring the worker writes batches to (receipt_format.ts), what of it this thread consumed, and
  // the chunks of a batch not complete yet.
  readonly #ring = new Uint8Array(new SharedArrayBuffer(RING_BYTES));
  readonly #ringView = new DataView(this.#ring.buffer);
  #tail = 0;
  #partial: Uint8Array[] = [];
  #worker: AnyWorker | null = null;
  readonly #files: ReceiptFiles;
  readonly #received = new ReusedDatagram();
  readonly #batches: Batch[] = [];
  #batch: Batch | null = null;
  #next = 0;
  #taken = 0;
  // Until the worker has the socket, this thread reads it (as without a worker).
  #direct = true;
  #waiting: ((ready: boolean) => void) | null = null;
  #failure: unknown = null;
  #stopped: Promise<void> = Promise.resolve();
  #closing: Promise<void> | null = null;
  readonly stats: ReceiptStats = {
    active: false,
    reads: 0,
    uncertain: 0,
    batches: 0,
    raisedPriority: false,
    execSocket: false,
    cgroups: 0,
  };

  /**
   * Reads `socket` on this thread at once; `start()` starts the worker, which takes the socket over
   * as soon as it runs (a runtime may take from a tenth of a second to seconds, under load, to start
   * a worker: `open()` does not wait for it, and until then /proc is read here, as without a worker).
   * If the worker cannot start, this thread goes on reading; `stats.active` says which.
   *
   * @param socket the process-events socket (bound; it becomes the worker's to read)
   * @param libc the JS thread's libc (eventfd, write, close)
   * @param fallback reads of files the worker did not read
   */
  constructor(socket: NetlinkSocket, libc: Libc, fallback: FileReader) {
    this.#socket = socket;
    this.#libc = libc;
    this.#files = new ReceiptFiles(fallback);
  }

  /**
   * Starts the worker (the monitor calls it once its subscription is confirmed: under \`deno test\`,
   * which type-checks a worker's module, starting one blocks this thread for a while).
   * Idempotent; nothing after close().
   */
  start(): void {
    if (this.#worker || this.#closing) return;
    let stopped!: () => void;
    this.#stopped = new Promise<void>((resolve) => (stopped = resolve));
    workerUrl ??= URL.createObjectURL(
      new Blob([
        `self.onmessage = (e) => { self.onmessage = null; (${
          String(receiptWorker)
        })(e.data, ${this.#libc.worker.open}); };`,
      ], { type: "application/javascript" }),
    );
    const worker: AnyWorker = new Worker(workerUrl, { type: "module" });
    this.#worker = worker;
    worker.onmessage = (e: MessageEvent) => {
      const m = e.data as ReceiptMessage;
      if (m.type === "ready") this.#handOver(m.raised);
      else if (m.type === "watching") this.stats.execSocket = m.ok;
      else if (m.type === "stopped") stopped();
      else if (m.type === "failed") {
        if (this.#direct) {
          // It never had the socket: this thread goes on reading it.
          worker.terminate();
          stopped();
          return;
        }
        this.#fail(new NetlinkError(m.op, m.errno, `receive process events in the receipt worker (${m.message})`));
        stopped();
      }
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault?.();
      if (!this.#direct) this.#fail(new Error(`cnlink: the receipt worker failed: ${e.message}`));
      stopped();
    };
    const ffi = this.#libc.worker;
    worker.postMessage(
      {
        path: ffi.path,
        symbols: ffi.symbols(WORKER_SYMBOLS),
        nice: RECEIPT_NICE,
        execSocket: ReceiptTransport.execSocket,
        layout: LAYOUT,
      } satisfies ReceiptStart,
    );
  }

  /** The worker runs: stop reading here, and give it the socket. */
  #handOver(raised: boolean): void {
    if (this.#closing) return;
    const wake = this.#libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake < 0) {
      // No eventfd, no way to stop the worker: keep reading here.
      this.#worker!.terminate();
      return;
    }
    this.#wake = wake;
    this.#direct = false;
    Atomics.store(this.#shared, SHARED.LIMIT, inFlightLimit(this.#socket.rcvbuf));
    this.stats.active = true;
    this.stats.raisedPriority = raised;
    // A pending wait() on the socket resolves false and is turned into a wait for batches.
    this.#socket.stopWaiting();
    const setup: ReceiptSetup = {
      socket: this.#socket.fd,
      wake,
      shared: this.#shared.buffer as SharedArrayBuffer,
      ring: this.#ring.buffer as SharedArrayBuffer,
    };
    this.#worker!.postMessage(setup);
  }

  /** Serves the files read at receipt for the datagram being handled; anything else from the fallback. */
  get files(): FileReader {
    return this.#files;
  }

  get port(): number {
    return this.#socket.port;
  }

  join(group: number): void {
    this.#socket.join(group);
  }

  leave(group: number): void {
    this.#socket.leave(group);
  }

  memberships(): number[] {
    return this.#socket.memberships();
  }

  send(datagram: Uint8Array, to: NetlinkAddress): void {
    if (this.#closing) throw new ClosedError("send");
    this.#socket.send(datagram, to);
  }

  setReceiveBuffer(bytes: number): number {
    const reported = this.#socket.setReceiveBuffer(bytes);
    // The worker buffers as much as the socket would, no more.
    Atomics.store(this.#shared, SHARED.LIMIT, inFlightLimit(reported));
    Atomics.notify(this.#shared, SHARED.TAKEN);
    return reported;
  }

  get rcvbuf(): number {
    return this.#socket.rcvbuf;
  }

  #fail(err: unknown): void {
    this.#failure ??= err;
    this.#waiting?.(true);
    this.#waiting = null;
  }

  /**
   * Takes what the worker put in the ring since the last time: copies each batch out (its bytes are
   * referenced while its datagrams are handled) and gives the worker the room back.
   */
  #pull(): void {
    const head = Atomics.load(this.#shared, SHARED.HEAD);
    if (head === this.#tail) return;
    const mask = RING_BYTES - 1;
    while (this.#tail !== head) {
      const pos = this.#tail & mask;
      const n = this.#ringView.getUint32(pos, true);
      if (n === RING_WRAP) {
        this.#tail = (this.#tail + RING_BYTES - pos) | 0;
        continue;
      }
      const more = this.#ringView.getUint32(pos + 4, true) !== 0;
      // slice() of a shared view copies into an ArrayBuffer of its own.
      const chunk = this.#ring.slice(pos + CHUNK_HEADER, pos + CHUNK_HEADER + n);
      this.#tail = (this.#tail + CHUNK_HEADER + n) | 0;
      if (more) this.#partial.push(chunk);
      else if (this.#partial.length === 0) this.#arrived(chunk.buffer);
      else {
        this.#partial.push(chunk);
        const whole = new Uint8Array(this.#partial.reduce((sum, c) => sum + c.byteLength, 0));
        let at = 0;
        for (const c of this.#partial) {
          whole.set(c, at);
          at += c.byteLength;
        }
        this.#partial = [];
        this.#arrived(whole.buffer);
      }
    }
    Atomics.store(this.#shared, SHARED.TAIL, this.#tail);
    Atomics.notify(this.#shared, SHARED.TAIL);
  }

  #arrived(buffer: ArrayBuffer): void {
    if (this.#closing) return;
    const bytes = new Uint8Array(buffer);
    const view = new DataView(buffer);
    const entries: number[] = [];
    const files: number[] = [];
    const cgroups = new Map<number, Uint8Array | null>();
    for (let at = 0; at < bytes.byteLength;) {
      const kind = view.getUint32(at, true);
      if (kind === KIND_DATAGRAM) {
        entries.push(at);
        at += DATAGRAM_HEADER + ((view.getUint32(at + 8, true) + 3) & ~3);
      } else if (kind === KIND_OVERRUN) {
        entries.push(-1);
        at += 4;
      } else if (kind === KIND_FILE) {
        files.push(at);
        const length = view.getInt32(at + 16, true);
        at += FILE_HEADER + (length < 0 ? 0 : (length + 3) & ~3);
      } else if (kind === KIND_CGROUP) {
        const length = view.getInt32(at + 8, true);
        cgroups.set(
          view.getInt32(at + 4, true),
          length < 0 ? null : bytes.subarray(at + CGROUP_HEADER, at + CGROUP_HEADER + length),
        );
        this.stats.cgroups++;
        at += CGROUP_HEADER + (length < 0 ? 0 : (length + 3) & ~3);
      } else {
        this.#fail(new Error(`cnlink: the receipt worker sent an entry of unknown kind ${kind}`));
        return;
      }
    }
    // A file entry may come before its datagram (read as soon as the exec-only socket showed the
    // exec), or have none in this batch (UNLINKED: skipped).
    const prefetched = new Map<number, Prefetched>();
    for (const at of files) {
      const index = view.getUint32(at + 4, true);
      const d = index === UNLINKED ? -1 : entries[index] ?? -1;
      if (d < 0) continue;
      const file = view.getUint32(at + 8, true);
      const length = view.getInt32(at + 16, true);
      let p = prefetched.get(index);
      if (!p) {
        const tgid = view.getInt32(d + DATAGRAM_HEADER + 56, true);
        // A file without an entry was not read (the process was gone): null.
        prefetched.set(index, p = { dir: `/proc/${tgid}/`, files: FILES.map(() => null), uncertain: false });
        this.stats.reads++;
      }
      if ((view.getUint32(at + 12, true) & FILE_UNCERTAIN) !== 0 && !p.uncertain) {
        p.uncertain = true;
        this.stats.uncertain++;
      }
      p.files[file] = length < 0 ? null : bytes.subarray(at + FILE_HEADER, at + FILE_HEADER + length);
    }
    this.stats.batches++;
    let datagrams = 0;
    for (const at of entries) if (at >= 0) datagrams++;
    this.#batches.push({ bytes, view, entries, datagrams, prefetched, cgroups });
  }

  receive(): ReceiveResult {
    if (this.#closing) throw new ClosedError("receive");
    if (this.#failure) throw this.#failure;
    this.#files.current = null;
    this.#files.cgroups = null;
    if (this.#direct) return this.#socket.receive();
    // What this thread took from the kernel before the hand-over comes first.
    const early = this.#socket.receiveBuffered();
    if (early !== "again") return early;
    for (;;) {
      if (!this.#batch) this.#pull();
      const b = this.#batch ??= this.#batches.shift() ?? null;
      if (!b) return "again";
      if (this.#next === b.entries.length) {
        // Done with it: the worker may post another.
        this.#batch = null;
        this.#next = 0;
        this.#taken = (this.#taken + b.datagrams) | 0;
        Atomics.store(this.#shared, SHARED.TAKEN, this.#taken);
        Atomics.notify(this.#shared, SHARED.TAKEN);
        continue;
      }
      const i = this.#next++;
      const at = b.entries[i];
      if (at < 0) return "overrun";
      const v = b.view;
      this.#files.current = b.prefetched.get(i) ?? null;
      this.#files.cgroups = b.cgroups;
      return this.#received.set(
        b.bytes,
        at + DATAGRAM_HEADER,
        v.getUint32(at + 8, true),
        v.getUint32(at + 4, true),
        v.getUint32(at + 12, true) !== 0,
        v.getUint32(at + 16, true),
        v.getUint32(at + 20, true),
      );
    }
  }

  wait(): Promise<boolean> {
    if (this.#closing) return Promise.resolve(false);
    if (this.#direct) {
      // Resolves false when closed, or when the hand-over stopped it: then wait for batches.
      return this.#socket.wait().then((ready) => ready || (!this.#closing && !this.#direct ? this.wait() : false));
    }
    if (this.#failure || this.#batch || this.#batches.length) return Promise.resolve(true);
    const waited = Atomics.waitAsync(this.#shared, SHARED.HEAD, this.#tail);
    if (!waited.async) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      this.#waiting = resolve;
      // The worker notifies HEAD after a batch is in the ring, at once or up to NOTIFY_MS later, and
      // before it waits for room (close() too, to end this wait).
      void waited.value.then(() => {
        if (this.#waiting !== resolve) return;
        this.#waiting = null;
        resolve(!this.#closing);
      });
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#waiting?.(false);
      this.#waiting = null;
      this.#batches.length = 0;
      this.#batch = null;
      this.#partial = [];
      this.#files.current = null;
      this.#files.cgroups = null;
      // A pending Atomics.waitAsync of wait() ends.
      Atomics.notify(this.#shared, SHARED.HEAD);
      if (this.#wake >= 0) {
        Atomics.store(this.#shared, SHARED.STOP, 1);
        Atomics.notify(this.#shared, SHARED.TAKEN);
        Atomics.notify(this.#shared, SHARED.TAIL);
        this.#libc.write(this.#wake, new BigUint64Array([1n]));
        // The worker leaves its loop at once (it waits in poll() or for room, and both were woken);
        // only then may the fds close (a closed fd number can be reused at once).
        await this.#stopped;
      }
      // A worker that never got the socket has nothing to stop.
      this.#worker?.terminate();
      if (this.#wake >= 0) this.#libc.close(this.#wake);
      await this.#socket.close();
    })();
    return this.#closing;
  }
}
