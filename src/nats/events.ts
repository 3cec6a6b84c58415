/**
 * Process events to JetStream: each event becomes a document in a standard schema (ECS or an
 * OpenTelemetry log record, see `toEcs` / `toOtelLogRecord`), published to
 * `<prefix>.<host>.<type>` with a message id that is the event's own identity (host, CPU, kernel
 * timestamp, sequence), so a resend is never stored twice.
 *
 * @module
 */
import { hostname } from "node:os";
import { wallClock } from "../proc/clock.ts";
import type { ProcMonitorItem } from "../proc/monitor.ts";
import { eventId, type OtelOptions, toEcs, toOtelLogRecord } from "../proc/schema.ts";
import { escapeText } from "../proc/text.ts";
import { JetStreamShipper, type ShipperOptions, type ShipperStats, subjectToken } from "./shipper.ts";

/** The document shipped per event. */
export type ShipFormat = "ecs" | "otel";

/** Options of {@linkcode ProcEventShipper.open}: the shipper's, and how events become messages. */
export interface ProcEventShipperOptions extends ShipperOptions {
  /** `host.name` in the documents and the subject's host token; default the machine's host name. */
  host?: string;
  /** `"ecs"` (default) or `"otel"` (an OTLP/JSON log record). */
  format?: ShipFormat;
  /** The first subject token; default `procmon` (subjects `procmon.<host>.<type>`). */
  subjectPrefix?: string;
  /** Command lines in the documents: ECS's default is yes, OpenTelemetry's no (see `OtelOptions`). */
  commandLine?: OtelOptions["commandLine"];
  /** Maps the kernel's monotonic timestamps to epoch ms; default `await wallClock()`. */
  toEpochMs?: (timestampNs: bigint) => number;
}

/**
 * Ships process events (a `ProcMonitor`'s items) to a JetStream stream.
 *
 * @example Every process event of this host to a local JetStream, in ECS
 * ```ts ignore
 * import { ProcMonitor } from "@cnlink/connector/proc";
 * import { ProcEventShipper } from "@cnlink/connector/nats";
 *
 * const shipper = await ProcEventShipper.open({ servers: "nats://127.0.0.1:4222", spoolDir: "/var/spool/procmon" });
 * await using monitor = await ProcMonitor.open({ enrich: true, signal: AbortSignal.timeout(10_000) });
 * for await (const e of monitor) shipper.ship(e);
 * console.log(await shipper.close());
 * ```
 */
export class ProcEventShipper {
  readonly #shipper: JetStreamShipper;
  readonly #host: string;
  readonly #prefix: string;
  readonly #format: ShipFormat;
  readonly #commandLine: OtelOptions["commandLine"];
  readonly #toEpochMs: (timestampNs: bigint) => number;
  #lost = 0;

  private constructor(shipper: JetStreamShipper, options: ProcEventShipperOptions, toEpochMs: (ns: bigint) => number) {
    this.#shipper = shipper;
    this.#host = options.host ?? hostname();
    this.#prefix = options.subjectPrefix ?? "procmon";
    this.#format = options.format ?? "ecs";
    this.#commandLine = options.commandLine;
    this.#toEpochMs = toEpochMs;
  }

  /** Validates the options and starts the shipper (it connects in the background). */
  static async open(options: ProcEventShipperOptions): Promise<ProcEventShipper> {
    if (options.format !== undefined && options.format !== "ecs" && options.format !== "otel") {
      throw new TypeError(`format must be "ecs" or "otel", got "${options.format}"`);
    }
    const prefix = options.subjectPrefix ?? "procmon";
    if (!/^[A-Za-z0-9_-]+$/.test(prefix)) throw new TypeError(`subjectPrefix "${prefix}": one token, no dots`);
    subjectToken(options.host ?? hostname());
    const toEpochMs = options.toEpochMs ?? await wallClock();
    const shipper = await JetStreamShipper.open({ subjects: [`${prefix}.>`], ...options });
    return new ProcEventShipper(shipper, options, toEpochMs);
  }

  /** The subject an item goes to: `<prefix>.<host token>.<type>`. */
  subject(item: ProcMonitorItem): string {
    return `${this.#prefix}.${subjectToken(this.#host)}.${item.type}`;
  }

  /** The message id of an item (see `eventId`); loss reports are numbered per shipper. */
  id(item: ProcMonitorItem): string {
    return eventId(this.#host, item, item.type === "lost" ? ++this.#lost : 0);
  }

  /**
   * Queues one event, as its ECS or OpenTelemetry document, or as `document` (JSON on one line) when
   * given. Never waits; returns false when it was dropped (counted in `stats.dropped`).
   */
  ship(item: ProcMonitorItem, document?: string): boolean {
    const id = this.id(item);
    let data = document;
    if (data === undefined) {
      const ctx = { host: escapeText(this.#host), toEpochMs: this.#toEpochMs, id };
      // Every string in the document comes escaped from the library (see escapeText), so plain JSON is safe.
      data = JSON.stringify(
        this.#format === "otel"
          ? toOtelLogRecord(item, ctx, { commandLine: this.#commandLine })
          : toEcs(item, ctx, { commandLine: this.#commandLine !== undefined ? this.#commandLine !== "none" : true }),
      );
    }
    return this.#shipper.push({ subject: this.subject(item), id, data });
  }

  /** Counters: see `ShipperStats`. */
  get stats(): ShipperStats {
    return this.#shipper.stats;
  }

  /** Waits until everything shipped so far is acknowledged (or `timeoutMs`); true when it was. */
  flush(timeoutMs?: number): Promise<boolean> {
    return this.#shipper.flush(timeoutMs);
  }

  /** Drains (up to `drainTimeoutMs`), then closes; see `JetStreamShipper.close`. */
  close(drainTimeoutMs?: number): Promise<ShipperStats> {
    return this.#shipper.close(drainTimeoutMs);
  }
}
