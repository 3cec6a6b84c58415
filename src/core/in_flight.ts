/**
 * `InFlightLimit`: at most `max` things at once (requests waiting for their replies), the rest
 * started in order as slots free up. The connector's `maxInFlight`.
 *
 * @module
 */

/** A place taken with {@linkcode InFlightLimit.take}: started at once, or waiting for a slot. */
export interface InFlightTicket {
  /** True while it waits for a slot (it has not started). */
  readonly waiting: boolean;
  /** Leaves the queue when it still waits; gives its slot back when it started. Idempotent. */
  done(): void;
}

/**
 * A counting semaphore without promises: `take(start)` runs `start` now when a slot is free, else
 * when one is given back; `done()` on the ticket gives the slot back (or leaves the queue).
 *
 * @example Two slots, three takers
 * ```ts
 * import { InFlightLimit } from "./in_flight.ts";
 * import assert from "node:assert/strict";
 *
 * const limit = new InFlightLimit(2);
 * const started: number[] = [];
 * const tickets = [1, 2, 3].map((n) => limit.take(() => started.push(n)));
 * assert.deepEqual(started, [1, 2]);
 * assert.equal(tickets[2].waiting, true);
 * tickets[0].done();
 * assert.deepEqual(started, [1, 2, 3]);
 * ```
 */
export class InFlightLimit {
  readonly #max: number | undefined;
  readonly #waiting: (() => void)[] = [];
  #active = 0;
  #paused = false;

  /** @param max most at once; undefined: no limit */
  constructor(max: number | undefined) {
    this.#max = max;
  }

  /** The limit (undefined: none). */
  get max(): number | undefined {
    return this.#max;
  }

  /** How many hold a slot now. */
  get active(): number {
    return this.#active;
  }

  /** Whether every slot is taken (a `take` now would wait). */
  get full(): boolean {
    return this.#max !== undefined && this.#active >= this.#max;
  }

  /**
   * Takes a slot for `start`: it runs now when one is free, else once one is given back (in the
   * order of the takes). `start` gets the ticket (it may run before `take` returns it).
   */
  take(start: (ticket: InFlightTicket) => void): InFlightTicket {
    let state: "waiting" | "running" | "done" = "waiting";
    const run = () => {
      state = "running";
      this.#active++;
      start(ticket);
    };
    const ticket: InFlightTicket = {
      get waiting() {
        return state === "waiting";
      },
      done: () => {
        if (state === "waiting") {
          const at = this.#waiting.indexOf(run);
          if (at >= 0) this.#waiting.splice(at, 1);
        } else if (state === "running") {
          this.#active--;
          if (!this.#paused && !this.full) this.#waiting.shift()?.();
        }
        state = "done";
      },
    };
    if (this.full) this.#waiting.push(run);
    else run();
    return ticket;
  }

  /** Starts nothing more from the queue (the owner is closing; what waits is ended by its owner). */
  pause(): void {
    this.#paused = true;
  }
}
