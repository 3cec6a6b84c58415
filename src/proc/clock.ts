/**
 * The kernel stamps process events with CLOCK_MONOTONIC; these helpers read that clock through FFI
 * and map its values to wall-clock time.
 *
 * @module
 */
import { loadLibc } from "../ffi/load.ts";

/**
 * Returns a function that reads CLOCK_MONOTONIC in nanoseconds (the clock of `timestampNs`).
 *
 * @example Latency of an event
 * ```ts ignore
 * import { monotonicClock } from "@cnlink/connector/proc";
 *
 * const now = await monotonicClock();
 * // for an event e: const latencyNs = now() - e.timestampNs;
 * ```
 */
export async function monotonicClock(libcPath?: string): Promise<() => bigint> {
  const libc = await loadLibc(libcPath);
  return () => libc.monotonicNs();
}

/**
 * Returns a function mapping a monotonic timestamp (ns) to epoch milliseconds. The offset is measured
 * once, so a wall-clock step afterwards (NTP, settimeofday) is not followed.
 *
 * @example
 * ```ts ignore
 * import { wallClock } from "@cnlink/connector/proc";
 *
 * const toEpochMs = await wallClock();
 * // new Date(toEpochMs(event.timestampNs))
 * ```
 */
export async function wallClock(libcPath?: string): Promise<(timestampNs: bigint) => number> {
  const now = await monotonicClock(libcPath);
  const offsetMs = Date.now() - Number(now()) / 1e6;
  return (timestampNs) => Number(timestampNs) / 1e6 + offsetMs;
}
