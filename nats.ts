/**
 * Process events shipped to NATS JetStream, without loss going unnoticed: each event as an ECS
 * document or an OpenTelemetry log record on `procmon.<host>.<type>`, acknowledged by the stream,
 * with a message id per event (a resend is not stored twice), a bounded memory buffer and an
 * optional on-disk spool while the server is unreachable, and every event acknowledged or counted as
 * dropped. A separate entry point: it depends on the official NATS client (`@nats-io/transport-node`,
 * `@nats-io/jetstream`), the rest of the library depends on nothing.
 *
 * @example
 * ```ts ignore
 * import { ProcMonitor } from "@cnlink/connector/proc";
 * import { ProcEventShipper } from "@cnlink/connector/nats";
 *
 * const shipper = await ProcEventShipper.open({ servers: "nats://127.0.0.1:4222", host: "web-1" });
 * await using monitor = await ProcMonitor.open({ enrich: true, signal: AbortSignal.timeout(60_000) });
 * for await (const e of monitor) shipper.ship(e);
 * const stats = await shipper.close();
 * console.log(`${stats.acked} stored, ${stats.dropped} dropped`);
 * ```
 *
 * @module
 */
export {
  JetStreamShipper,
  type ShipperOptions,
  type ShipperStats,
  type ShipRecord,
  subjectToken,
} from "./src/nats/shipper.ts";
export { ProcEventShipper, type ProcEventShipperOptions, type ShipFormat } from "./src/nats/events.ts";
