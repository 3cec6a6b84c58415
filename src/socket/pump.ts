/**
 * The receive loop both the connector and the process monitor run: drain the socket until EAGAIN,
 * then wait for it without polling.
 *
 * Two measured costs shape it (bench/README.md):
 * - a wake-up from the waiting thread costs tens of microseconds of CPU, so when a drain found a
 *   burst, the loop sleeps on a timer before the next drain instead of waiting at once: under load
 *   many datagrams share one wake-up, while a lone event after quiet is still handled at once.
 *   A timer tick costs CPU too (Deno 44 us, Bun 14 us), so while bursts go on the sleep doubles,
 *   up to 16 ms, but never longer than it takes the observed rate to fill half the receive buffer
 *   (a small buffer, e.g. an unprivileged one capped at rmem_max, must not overflow while we sleep);
 * - a socket that never runs dry must not starve timers and I/O, so a long drain yields now and then;
 * - nor may a loop of requests to a kernel agent: the agent's reply is queued inside our sendto(), so
 *   each request's receive loop finds it at once and the whole exchange runs on microtasks. Timers
 *   never fired during such a loop (found in the kernel lab). So every loop, however short, gives
 *   the event loop a turn once the JS thread has gone YIELD_MS without one.
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
/** Longest sleep between drains while bursts go on. */
const MAX_SLEEP_MS = 16;
/** Receive-buffer bytes one small datagram takes (skb truesize of a 76-byte event, measured ~700). */
const DATAGRAM_TRUESIZE = 768;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * When the event loop last had a turn (an awaited wait or timer), and when any loop last handled a
 * datagram: one pair for the thread, however many sockets it serves. A gap between datagrams
 * longer than `YIELD_MS` counts as a turn, so the first datagram after quiet never waits for one.
 */
let lastTurn = 0;
let lastActive = 0;

/** A timer to await (a real turn of the event loop) when the thread has run `YIELD_MS` without one. */
function turnDue(): Promise<void> | undefined {
  const now = performance.now();
  if (now - lastActive > YIELD_MS) lastTurn = now;
  lastActive = now;
  if (now - lastTurn < YIELD_MS) return undefined;
  return sleep(0).then(() => void (lastTurn = lastActive = performance.now()));
}

/** Runs the loop until `running()` is false or the transport closes. */
export async function pump(transport: Transport, on: PumpHandlers): Promise<void> {
  let drained = 0;
  let sleepMs = 1;
  let cycle = performance.now();
  while (on.running()) {
    const turn = turnDue();
    if (turn) {
      await turn;
      if (!on.running()) return;
    }
    const got = transport.receive();
    if (got === "again") {
      const now = performance.now();
      // Arrival rate since the previous drain ended (datagrams per ms), and how long half the
      // buffer lasts at that rate.
      const rate = drained / Math.max(now - cycle, 0.001);
      const safeMs = transport.rcvbuf / DATAGRAM_TRUESIZE / 2 / rate;
      cycle = now;
      if (drained >= BURST && safeMs >= 1) {
        await sleep(Math.min(sleepMs, safeMs));
        sleepMs = Math.min(sleepMs * 2, MAX_SLEEP_MS);
      } else {
        sleepMs = 1;
        if (!await transport.wait()) return;
      }
      lastTurn = lastActive = performance.now();
      drained = 0;
      continue;
    }
    if (got === "overrun") {
      sleepMs = 1;
      on.overrun();
    } else on.datagram(got);
    drained++;
    const paused = on.backpressure?.();
    if (paused) await paused;
  }
}
