/**
 * The receive loop both the connector and the process monitor run: drain the socket until EAGAIN,
 * then wait for it without polling.
 *
 * Two measured costs shape it (bench/README.md):
 * - a wake-up from the waiting thread costs tens of microseconds of CPU, so when a drain found a
 *   burst, the loop sleeps one timer tick before the next drain instead of waiting at once: under
 *   load many datagrams share one wake-up, while a lone event after quiet is still handled at once;
 * - a socket that never runs dry must not starve timers and I/O, so a long drain yields now and then.
 *
 * @module
 */
import type { ReceivedDatagram, Transport } from "./transport.ts";

/** What the loop calls. */
export interface PumpHandlers {
  /** Whether to go on (checked before every receive). */
  running(): boolean;
  /** One datagram; its bytes are only valid during the call. */
  datagram(got: ReceivedDatagram): void;
  /** The kernel reported ENOBUFS. */
  overrun(): void;
  /** Resolves when the consumer has room again; undefined when it has room now. */
  backpressure?(): Promise<void> | undefined;
}

/** A drain of at least this many datagrams counts as a burst. */
const BURST = 8;
/** Longest stretch of draining before timers and I/O get a turn. */
const YIELD_MS = 20;

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 1));

/** Runs the loop until `running()` is false or the transport closes. */
export async function pump(transport: Transport, on: PumpHandlers): Promise<void> {
  let drained = 0;
  let since = performance.now();
  while (on.running()) {
    const got = transport.receive();
    if (got === "again") {
      if (drained >= BURST) await tick();
      else if (!await transport.wait()) return;
      drained = 0;
      since = performance.now();
      continue;
    }
    if (got === "overrun") on.overrun();
    else on.datagram(got);
    if (++drained % 64 === 0 && performance.now() - since > YIELD_MS) {
      await tick();
      since = performance.now();
    }
    const paused = on.backpressure?.();
    if (paused) await paused;
  }
}
