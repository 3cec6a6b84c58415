/**
 * The kernel stamps process events with CLOCK_MONOTONIC; these helpers read that clock through FFI
 * and map its values to wall-clock time.
 *
 * @module
 */
import { NetlinkError } from "../errors.ts";
import { loadLibc } from "../ffi/load.ts";
import { CLOCK_BOOTTIME, CLOCK_MONOTONIC } from "../ffi/types.ts";

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

/**
 * Returns a function that reads CLOCK_BOOTTIME minus CLOCK_MONOTONIC in nanoseconds: the time the
 * machine spent suspended, which converts /proc/PID/stat's start time (CLOCK_BOOTTIME) to the
 * events' clock (`monotonic = boottime - offset`). Both clocks are read with `clock_gettime` (ns
 * resolution, no /proc/uptime and its 10 ms, no file permission on Deno), CLOCK_MONOTONIC first, so
 * the offset is never below the real one: a start time converted with it is never later than the
 * real start. The offset grows after a suspend, so it is read again at each use.
 *
 * @throws {NetlinkError} at the first read already, when a clock cannot be read (`op` `clock_gettime`)
 *
 * @example The start of a process on the events' clock
 * ```ts ignore
 * import { bootOffsetClock } from "@cnlink/connector/proc";
 *
 * const bootOffsetNs = await bootOffsetClock();
 * // /proc/PID/stat field 22 is in clock ticks (1/100 s) since boot:
 * // const startNs = BigInt(ticks) * 10_000_000n - bootOffsetNs();
 * ```
 */
export async function bootOffsetClock(libcPath?: string): Promise<() => bigint> {
  const libc = await loadLibc(libcPath);
  const read = (clock: number, name: string): bigint => {
    const ns = libc.clockNs(clock);
    if (typeof ns === "number") throw new NetlinkError("clock_gettime", -ns, `read ${name}`);
    return ns;
  };
  const offset = () => {
    const monotonic = read(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
    return read(CLOCK_BOOTTIME, "CLOCK_BOOTTIME") - monotonic;
  };
  offset();
  return offset;
}
