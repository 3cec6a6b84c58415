/**
 * The receive loop under every socket: drain the socket until EAGAIN, then wait for it without
 * polling.
 *
 * Measured costs shape it (bench/README.md):
 * - a wake-up from the waiting thread costs tens of microseconds of CPU, so when a drain found a
 *   burst, the loop sleeps on a timer before the next drain instead of waiting at once: under load
 *   many datagrams share one wake-up, while a lone datagram after quiet is still handled at once.
 *   A timer tick costs CPU too, so while bursts go on the sleep doubles, up to 16 ms, but never
 *   longer than it takes the observed rate to fill half the receive buffer (a small buffer, e.g. an
 *   unprivileged one capped at rmem_max, must not overflow while we sleep);
 * - neither a socket that never runs dry nor a loop of requests to a kernel agent may starve timers
 *   and I/O: an agent's reply is queued inside our sendto(), so each request's loop finds it at
 *   once and the whole exchange runs on microtasks (timers starved for seconds, before this). So
 *   every loop, however short, gives the event loop a turn once the JS thread has gone `YIELD_MS`
 *   without one (checked at the start of each drain and then every
 *   `TURN_CHECK` datagrams: reading the clock per datagram was a measurable share of a storm's CPU).
 *
 * The figures behind each choice: bench/README.md, "Figures the code cites".
 *
 * @module
 */
import type { ReceivedDatagram, Transport } from "../socket/transport.ts";

/** What the loop calls. */
export interface PumpHandlers {
  /** Whether to go on (checked before every receive). */
  running(): boolean;
  /** One datagram; its bytes are only valid during the call. */
  datagram(got: ReceivedDatagram): void;
  /** The kernel reported ENOBUFS. */
  overrun(): void;
  /**
   * The loop is about to wait, sleep or give the event loop a turn: what it handled since may go
   * to its consumers now (a reader that holds a received batch back to look ahead in it).
   */
  idle?(): void;
  /** The socket had nothing more to read (everything queued before this receive was handled). */
  empty?(): void;
  /**
   * Undefined when the consumer has room now; else a promise that resolves when it may have room
   * again (asked again then, before the next receive).
   */
  backpressure?(): Promise<void> | undefined;
}

/** Time as the loop sees it; tests give a fake one. */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Resolves after `ms` milliseconds, through the event loop's timers. */
  sleep(ms: number): Promise<void>;
}

/** The runtime's clock and timers. */
export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
};

/** A drain of at least this many datagrams counts as a burst. */
export const BURST = 8;
/** Longest stretch of work without a turn of the event loop. */
export const YIELD_MS = 20;
/** Longest sleep between drains while bursts go on. */
export const MAX_SLEEP_MS = 16;
/** How often (in datagrams) a long drain checks whether the event loop is owed a turn. */
export const TURN_CHECK = 32;
/**
 * Receive-buffer bytes one small datagram takes: the skb truesize of a 76-byte event, rounded up
 * (bench/README.md, "Figures the code cites").
 */
export const DATAGRAM_TRUESIZE = 768;

/**
 * When the event loop last had a turn (an awaited wait or timer), and when any loop last handled a
 * datagram: one pair per clock, i.e. for the thread, however many sockets it serves. A gap between
 * datagrams longer than `YIELD_MS` counts as a turn, so the first datagram after quiet never waits.
 */
export class Turns {
  lastTurn = 0;
  lastActive = 0;

  constructor(readonly clock: Clock) {}

  /** Whether the thread has run `YIELD_MS` without a turn (and so must give one before more work). */
  owed(): boolean {
    const now = this.clock.now();
    if (now - this.lastActive > YIELD_MS) this.lastTurn = now;
    this.lastActive = now;
    return now - this.lastTurn >= YIELD_MS;
  }

  /** A timer to await when a turn is owed; undefined otherwise. */
  due(): Promise<void> | undefined {
    return this.owed() ? this.clock.sleep(0).then(() => this.turned()) : undefined;
  }

  turned(): void {
    this.lastTurn = this.lastActive = this.clock.now();
  }
}

const turnsOf = new WeakMap<Clock, Turns>();

/** The turn bookkeeping of the thread that `clock` serves. */
export function turnsFor(clock: Clock): Turns {
  let turns = turnsOf.get(clock);
  if (!turns) turnsOf.set(clock, turns = new Turns(clock));
  return turns;
}

/**
 * Runs the loop until `running()` is false or the transport closes (`coalesce` may be a function, asked
 * after each drain). `coalesce: false` never sleeps
 * between drains: every datagram is handled as soon as the waiting thread sees it (for readers that
 * must act before the sender is gone, e.g. reading /proc of a short-lived process).
 */
export async function pump(
  transport: Transport,
  on: PumpHandlers,
  clock: Clock = realClock,
  coalesce: boolean | (() => boolean) = true,
): Promise<void> {
  const turns = turnsFor(clock);
  let drained = 0;
  let sleepMs = 1;
  let cycle = clock.now();
  // Set when a drain starts after a wait: its first datagram reaches the consumer (one microtask
  // tick) before the loop goes on to the next receive and to re-arming the wait, which on a machine
  // just back from idle delayed the event (bench/README.md, "Figures the code cites").
  let fresh = false;
  while (on.running()) {
    // Reading the clock costs as much as handling a small datagram, so a drain asks whether a turn
    // is owed at its start (a request's loop handles one reply) and then every TURN_CHECK datagrams.
    const turn = drained % TURN_CHECK === 0 ? turns.due() : undefined;
    if (turn) {
      on.idle?.();
      await turn;
      if (!on.running()) return;
    }
    const got = transport.receive();
    if (got === "again") {
      on.empty?.();
      const now = clock.now();
      // Arrival rate since the previous drain ended (datagrams per ms), and how long half the
      // buffer lasts at that rate.
      const rate = drained / Math.max(now - cycle, 0.001);
      const safeMs = transport.rcvbuf / DATAGRAM_TRUESIZE / 2 / rate;
      cycle = now;
      on.idle?.();
      if ((coalesce === true || (coalesce !== false && coalesce())) && drained >= BURST && safeMs >= 1) {
        await clock.sleep(Math.min(sleepMs, safeMs));
        sleepMs = Math.min(sleepMs * 2, MAX_SLEEP_MS);
      } else {
        sleepMs = 1;
        if (!await transport.wait()) return;
        fresh = true;
      }
      turns.turned();
      drained = 0;
      continue;
    }
    if (got === "overrun") {
      sleepMs = 1;
      on.overrun();
    } else on.datagram(got);
    drained++;
    if (fresh) {
      fresh = false;
      await undefined;
    }
    // Asked again after each pause: another consumer may still be full.
    for (let paused = on.backpressure?.(); paused; paused = on.backpressure?.()) await paused;
  }
}
