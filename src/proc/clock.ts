/**
 * The kernel stamps process events with CLOCK_MONOTONIC; these helpers read that clock through FFI
 * and map its values to wall-clock time.
 *
 * @module
 */
import { NetlinkError } from "../errors.ts";
import { loadLibc } from "../ffi/load.ts";
import { CLOCK_BOOTTIME, CLOCK_MONOTONIC } from "../ffi/types.ts";
import { checkOptions, checkType } from "../args.ts";

/** Options of the clock helpers (`monotonicClock`, `wallClock`, `bootOffsetClock`). */
export interface ClockOptions {
  /** libc to load; default `libc.so.6`. */
  libcPath?: string;
}

/**
 * The libc path from the options (or, deprecated since 0.3.0, the path itself).
 *
 * @throws {TypeError} an unknown key, a path that is not a string
 */
function libcPathOf(options: ClockOptions | string | undefined): string | undefined {
  if (typeof options === "string") return options;
  const opts = checkOptions("clock options", options, ["libcPath"]);
  checkType(opts.libcPath, "libcPath", "string");
  return opts.libcPath;
}

/**
 * Returns a function that reads CLOCK_MONOTONIC in nanoseconds (the clock of `timestampNs`).
 *
 * @param options `libcPath`: the libc to load (a bare string is the deprecated 0.2 form)
 *
 * @example Latency of an event
 * ```ts ignore
 * import { monotonicClock } from "@cnlink/connector/proc";
 *
 * const now = await monotonicClock();
 * // for an event e: const latencyNs = now() - e.timestampNs;
 * ```
 */
export async function monotonicClock(options?: ClockOptions | string): Promise<() => bigint> {
  const libc = await loadLibc(libcPathOf(options));
  return () => libc.monotonicNs();
}

/**
 * Returns a function mapping a monotonic timestamp (ns) to epoch milliseconds. The offset is measured
 * once, so a wall-clock step afterwards (NTP, settimeofday) is not followed.
 *
 * @param options `libcPath`: the libc to load (a bare string is the deprecated 0.2 form)
 *
 * @example
 * ```ts ignore
 * import { wallClock } from "@cnlink/connector/proc";
 *
 * const toEpochMs = await wallClock();
 * // new Date(toEpochMs(event.timestampNs))
 * ```
 */
export async function wallClock(options?: ClockOptions | string): Promise<(timestampNs: bigint) => number> {
  const now = await monotonicClock(libcPathOf(options));
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
 * @param options `libcPath`: the libc to load (a bare string is the deprecated 0.2 form)
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
export async function bootOffsetClock(options?: ClockOptions | string): Promise<() => bigint> {
  const libc = await loadLibc(libcPathOf(options));
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
