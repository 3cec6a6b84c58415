/**
 * Shipping documents to a NATS JetStream stream without losing any silently: `push()` never waits
 * (it queues, spools or counts a drop), one publisher sends in order with a message id per record
 * (`Nats-Msg-Id`: a resend inside the stream's duplicate window is not stored twice) and takes each
 * record off the queue only when the stream acknowledged it. While the server is unreachable the
 * records wait in a bounded in-memory buffer, then in an optional on-disk spool, bounded in bytes;
 * past both bounds they are counted as dropped.
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  type PubAck,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { type ShipRecord, Spool } from "./spool.ts";

export type { ShipRecord };

/** Options of {@linkcode JetStreamShipper.open}. */
export interface ShipperOptions {
  /** NATS server URL(s): `nats://host:4222`, or several for a cluster. */
  servers: string | string[];
  /** The stream; created when missing. Default `PROCMON`. */
  stream?: string;
  /** The stream's subjects (when it is created). Default `["procmon.>"]`. */
  subjects?: string[];
  /** `"file"` (default) or `"memory"` storage, when the stream is created. */
  storage?: "file" | "memory";
  /** Replicas of the stream, when it is created (3 on a three-node cluster). Default 1. */
  replicas?: number;
  /** Retention: how long the stream keeps a message, in ms; default 0 (no age limit). */
  maxAgeMs?: number;
  /** Retention: the stream's size bound in bytes (oldest go first); default -1 (none). */
  maxBytes?: number;
  /** The stream's duplicate window in ms: a message id seen within it is not stored again. Default 120 000. */
  duplicateWindowMs?: number;
  /** Records held in memory while they wait for an acknowledgement. Default 100 000. */
  maxBuffered?: number;
  /** A directory for the on-disk spool, used when the memory buffer is full; none by default. */
  spoolDir?: string;
  /** The spool's bound in bytes. Default 256 MiB. */
  spoolMaxBytes?: number;
  /** Publishes awaiting their acknowledgement at once. Default 256. */
  inFlight?: number;
  /** How long to wait for an acknowledgement before sending again, in ms. Default 5000. */
  ackTimeoutMs?: number;
  /** Connection name the server shows. */
  name?: string;
  /** Called for connection and publish problems (they are retried). Default: a warning for the first of each kind. */
  onError?: (error: Error) => void;
}

/** What a shipper did. Every pushed record is acknowledged, a duplicate, dropped, or still waiting. */
export interface ShipperStats {
  /** Records given to `push()` (and read back from an earlier run's spool). */
  accepted: number;
  /** Stored by the stream. */
  acked: number;
  /** Acknowledged as duplicates: stored before (an earlier send whose acknowledgement was lost). */
  duplicates: number;
  /** Given up: neither the memory buffer nor the spool had room (or a spool line was unreadable). */
  dropped: number;
  /** Waiting in memory. */
  buffered: number;
  /** Waiting on disk. */
  spooled: number;
  /** Bytes of the spool. */
  spoolBytes: number;
  /** Records found in the spool at open (left by an earlier run). */
  recovered: number;
  /** Publishes sent again after a failure or timeout. */
  retries: number;
  /** Reconnections to the server. */
  reconnects: number;
  /** Whether the connection is up. */
  connected: boolean;
}

const DEFAULTS = {
  stream: "PROCMON",
  maxBuffered: 100_000,
  spoolMaxBytes: 256 << 20,
  inFlight: 256,
  ackTimeoutMs: 5000,
  duplicateWindowMs: 120_000,
};

type ResolvedOptions = Required<Omit<ShipperOptions, "spoolDir" | "name" | "onError" | "subjects">> & ShipperOptions;

/** Batches of publishes out at once. */
const WINDOW = 4;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Validates server URLs; throws a TypeError naming the bad one. */
function serverList(servers: string | string[]): string[] {
  const list = Array.isArray(servers) ? servers : servers.split(",");
  if (list.length === 0) throw new TypeError("servers: give at least one NATS URL, e.g. nats://127.0.0.1:4222");
  return list.map((s) => {
    const trimmed = s.trim();
    let url: URL;
    try {
      url = new URL(trimmed.includes("://") ? trimmed : `nats://${trimmed}`);
    } catch {
      throw new TypeError(`not a NATS server URL: "${s}" (want nats://host:port)`);
    }
    if (!["nats:", "tls:"].includes(url.protocol) || !url.hostname) {
      throw new TypeError(`not a NATS server URL: "${s}" (want nats://host:port)`);
    }
    return trimmed;
  });
}

/**
 * A subject token for a host name: NATS tokens cannot hold `.`, `*`, `>` or whitespace, so every
 * character outside `[A-Za-z0-9_-]` becomes `_` (`web-1.example.com` → `web-1_example_com`).
 *
 * @example
 * ```ts
 * import { subjectToken } from "@cnlink/connector/nats";
 * import assert from "node:assert/strict";
 *
 * assert.equal(subjectToken("web-1.example.com"), "web-1_example_com");
 * ```
 */
export function subjectToken(name: string): string {
  if (name.length === 0) throw new TypeError("a host name for a subject cannot be empty");
  return name.replace(/[^A-Za-z0-9_-]/g, "_");
}

/**
 * Ships records to a JetStream stream, in order, each acknowledged or counted.
 *
 * @example Ship two documents and wait until they are stored
 * ```ts ignore
 * import { JetStreamShipper } from "@cnlink/connector/nats";
 *
 * const shipper = await JetStreamShipper.open({ servers: "nats://127.0.0.1:4222", spoolDir: "/var/spool/procmon" });
 * shipper.push({ subject: "procmon.web-1.exec", id: "web-1:0:123:1", data: JSON.stringify({ pid: 1 }) });
 * shipper.push({ subject: "procmon.web-1.exit", id: "web-1:0:456:2", data: JSON.stringify({ pid: 1 }) });
 * const stats = await shipper.close(); // drains first (up to 10 s by default)
 * console.log(stats.acked, stats.dropped);
 * ```
 */
export class JetStreamShipper {
  readonly #options: ResolvedOptions;
  readonly #servers: string[];
  readonly #queue: ShipRecord[] = [];
  #head = 0;
  /** Records sent and not yet acknowledged, in batches in the order they were sent. */
  readonly #window: { records: ShipRecord[]; results: Promise<PromiseSettledResult<PubAck>[]> }[] = [];
  #inWindow = 0;
  /** Records whose publish failed: sent again before anything newer. */
  #retry: ShipRecord[] = [];
  #abandoned = false;
  readonly #spool: Spool | undefined;
  #nc: NatsConnection | undefined;
  #js: JetStreamClient | undefined;
  #streamReady = false;
  #closing = false;
  #closed = false;
  #wake: (() => void) | undefined;
  #pump: Promise<void> | undefined;
  #drained: (() => void) | undefined;
  readonly #warned = new Set<string>();
  readonly #stats: Omit<ShipperStats, "buffered" | "spooled" | "spoolBytes" | "connected"> = {
    accepted: 0,
    acked: 0,
    duplicates: 0,
    dropped: 0,
    recovered: 0,
    retries: 0,
    reconnects: 0,
  };

  private constructor(options: ShipperOptions) {
    this.#servers = serverList(options.servers);
    // An option given as undefined takes its default.
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.#options = {
      ...DEFAULTS,
      storage: "file",
      replicas: 1,
      maxAgeMs: 0,
      maxBytes: -1,
      ...given,
    } as ResolvedOptions;
    const o = this.#options;
    for (const key of ["maxBuffered", "inFlight", "ackTimeoutMs", "replicas"] as const) {
      if (!Number.isInteger(o[key]) || o[key] < 1) {
        throw new RangeError(`${key} must be a positive integer, got ${o[key]}`);
      }
    }
    if (!/^[A-Za-z0-9_-]+$/.test(o.stream)) {
      throw new TypeError(`stream name "${o.stream}": use letters, digits, - and _ only`);
    }
    if (o.spoolDir !== undefined) {
      this.#spool = new Spool(o.spoolDir, o.spoolMaxBytes);
      this.#stats.recovered = this.#spool.records;
      this.#stats.accepted += this.#spool.records;
    }
  }

  /**
   * Validates the options, opens the spool, and starts connecting in the background: records can
   * be pushed at once, and wait until the server is reachable. Bad options throw here.
   */
  static open(options: ShipperOptions): Promise<JetStreamShipper> {
    const shipper = new JetStreamShipper(options);
    shipper.#pump = shipper.#run();
    return Promise.resolve(shipper);
  }

  /** Counters; see {@linkcode ShipperStats}. */
  get stats(): ShipperStats {
    return {
      ...this.#stats,
      buffered: this.#memory(),
      spooled: this.#spool?.records ?? 0,
      spoolBytes: this.#spool?.bytes ?? 0,
      connected: this.#nc !== undefined && !this.#nc.isClosed() && this.#streamReady,
    };
  }

  /**
   * Queues `record` for the stream. Never waits: it goes to memory, else to the spool (keeping the
   * order), else it is counted in `stats.dropped`. Returns false when it was dropped.
   */
  push(record: ShipRecord): boolean {
    if (this.#closing) throw new Error("push() after close()");
    this.#stats.accepted++;
    const spool = this.#spool;
    if ((!spool || spool.records === 0) && this.#memory() < this.#options.maxBuffered) {
      this.#queue.push(record);
    } else if (!spool || !spool.add(record)) {
      this.#stats.dropped++;
      return false;
    }
    this.#wake?.();
    return true;
  }

  #warn(kind: string, error: Error): void {
    if (this.#options.onError) {
      this.#options.onError(error);
      return;
    }
    if (this.#warned.has(kind)) return;
    this.#warned.add(kind);
    console.warn(`nats: ${error.message} (retrying; further ${kind} errors are not shown)`);
  }

  async #connect(): Promise<void> {
    while (!this.#closed && !this.#nc) {
      try {
        this.#nc = await connect({
          servers: this.#servers,
          name: this.#options.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          timeout: 2000,
          pingInterval: 10_000,
        });
      } catch (err) {
        this.#warn("connect", err as Error);
        await sleep(500);
        continue;
      }
      const nc = this.#nc;
      if (this.#closed) {
        // close() came while connecting: nothing will be sent on it.
        await nc.close().catch(() => {});
        return;
      }
      (async () => {
        for await (const s of nc.status()) {
          if (s.type === "reconnect") this.#stats.reconnects++;
        }
      })().catch(() => {});
      this.#js = jetstream(nc, { timeout: this.#options.ackTimeoutMs });
    }
  }

  async #ensureStream(): Promise<void> {
    const o = this.#options;
    while (!this.#closed && !this.#streamReady) {
      try {
        const jsm: JetStreamManager = await jetstreamManager(this.#nc!, { timeout: o.ackTimeoutMs });
        try {
          await jsm.streams.info(o.stream);
        } catch (err) {
          if (!/not found/i.test((err as Error).message)) throw err;
          const config: Partial<StreamConfig> & { name: string } = {
            name: o.stream,
            subjects: o.subjects ?? ["procmon.>"],
            storage: o.storage === "memory" ? StorageType.Memory : StorageType.File,
            num_replicas: o.replicas,
            retention: RetentionPolicy.Limits,
            max_age: o.maxAgeMs * 1_000_000,
            max_bytes: o.maxBytes,
            duplicate_window: o.duplicateWindowMs * 1_000_000,
          };
          try {
            await jsm.streams.add(config);
          } catch (addErr) {
            // Another agent created it first: fine.
            if (!/already in use/i.test((addErr as Error).message)) throw addErr;
          }
        }
        this.#streamReady = true;
      } catch (err) {
        this.#warn("stream", new Error(`stream ${o.stream}: ${(err as Error).message}`));
        await sleep(500);
      }
    }
  }

  /** Refills memory from the spool when memory has room (oldest segment first). */
  #refill(): void {
    const spool = this.#spool;
    if (!spool || spool.records === 0) return;
    if (this.#queue.length - this.#head + this.#retry.length > this.#options.maxBuffered / 2) return;
    const before = spool.unreadable;
    for (const r of spool.takeOldest()) this.#queue.push(r);
    this.#stats.dropped += spool.unreadable - before;
  }

  /** Records in memory: queued, to be sent again, and sent but not yet acknowledged. */
  #memory(): number {
    return this.#queue.length - this.#head + this.#retry.length + this.#inWindow;
  }

  /** The next records to send, oldest first: those to send again, then the queue (refilled from the spool). */
  #take(n: number): ShipRecord[] {
    if (this.#retry.length) return this.#retry.splice(0, n);
    this.#refill();
    const batch = this.#queue.slice(this.#head, this.#head + n);
    this.#head += batch.length;
    if (this.#head > 65_536) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    return batch;
  }

  /** Counts a sent batch's acknowledgements; returns the records that were not acknowledged, in order. */
  #settle(records: ShipRecord[], results: PromiseSettledResult<PubAck>[]): { failed: ShipRecord[]; error?: Error } {
    const failed: ShipRecord[] = [];
    let error: Error | undefined;
    // After close() gave up waiting, these records were kept (spooled) or counted as dropped.
    if (this.#abandoned) return { failed };
    results.forEach((res, i) => {
      if (res.status === "fulfilled") {
        if (res.value.duplicate) this.#stats.duplicates++;
        else this.#stats.acked++;
      } else {
        failed.push(records[i]);
        error = res.reason as Error;
      }
    });
    this.#inWindow -= records.length;
    return { failed, error };
  }

  async #run(): Promise<void> {
    await this.#connect();
    await this.#ensureStream();
    const o = this.#options;
    let backoff = 100;
    // Up to WINDOW batches of `inFlight` publishes are out at once (the acknowledgements of one batch
    // arrive while the next are sent); they are settled in the order they were sent. A failure stops
    // sending: every batch out is settled, and what failed is sent again, in order, before anything else.
    while (!this.#closed) {
      while (this.#window.length < WINDOW) {
        const records = this.#take(o.inFlight);
        if (records.length === 0) break;
        const js = this.#js!;
        this.#inWindow += records.length;
        this.#window.push({
          records,
          results: Promise.allSettled(
            records.map((r) => js.publish(r.subject, r.data, { msgID: r.id, timeout: o.ackTimeoutMs })),
          ),
        });
      }
      // A batch stays in the window until it is settled: close() counts what is there if it stops waiting.
      const first = this.#window[0];
      if (!first) {
        if (this.#closing) break;
        this.#drained?.();
        await new Promise<void>((r) => (this.#wake = r));
        this.#wake = undefined;
        continue;
      }
      const firstResults = await first.results;
      this.#window.shift();
      let { failed, error } = this.#settle(first.records, firstResults);
      if (failed.length === 0) {
        backoff = 100;
        continue;
      }
      while (this.#window.length) {
        const later = this.#window[0];
        const results = await later.results;
        this.#window.shift();
        const settled = this.#settle(later.records, results);
        failed = failed.concat(settled.failed);
        error = settled.error ?? error;
      }
      this.#retry = failed.concat(this.#retry);
      this.#stats.retries += failed.length;
      this.#warn("publish", error!);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 2000);
    }
    this.#drained?.();
  }

  /**
   * Waits until everything pushed so far (memory and spool) is acknowledged, or `timeoutMs` passed;
   * resolves true when it all was.
   */
  async flush(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const s = this.stats;
      if (s.buffered === 0 && s.spooled === 0) return true;
      await new Promise<void>((r) => {
        this.#drained = r;
        setTimeout(r, 50);
      });
    }
    const s = this.stats;
    return s.buffered === 0 && s.spooled === 0;
  }

  /**
   * Stops accepting records, waits up to `drainTimeoutMs` (default 10 s) for those waiting, then
   * keeps the rest in the spool for the next run (with a spool) or counts them as dropped, and
   * closes the connection. Idempotent; returns the final stats.
   */
  async close(drainTimeoutMs = 10_000): Promise<ShipperStats> {
    if (this.#closed) return this.stats;
    this.#closing = true;
    this.#wake?.();
    await this.flush(drainTimeoutMs);
    this.#closed = true;
    this.#wake?.();
    // Publishes still out get their acknowledgement or time out; nothing else is worth waiting for.
    if (this.#window.length) await Promise.race([this.#pump, sleep(this.#options.ackTimeoutMs + 1000)]);
    // Sent but never settled (the pump was still waiting), to be sent again, and queued: kept in order.
    this.#abandoned = true;
    const left = [
      ...this.#window.splice(0).flatMap((w) => w.records),
      ...this.#retry,
      ...this.#queue.slice(this.#head),
    ];
    this.#inWindow = 0;
    this.#retry = [];
    this.#queue.length = 0;
    this.#head = 0;
    for (const r of left) {
      if (!this.#spool?.add(r)) this.#stats.dropped++;
    }
    // Records still in the spool stay there for the next run: they are neither acked nor dropped.
    this.#spool?.flush();
    await this.#nc?.close().catch(() => {});
    return this.stats;
  }
}
