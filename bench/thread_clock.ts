/**
 * CPU time of the calling thread (clock_gettime(CLOCK_THREAD_CPUTIME_ID)) through libc, on Deno or
 * Bun: the receive loop and the consumer run on the main thread, while the runtimes' helper threads
 * (garbage collection, compilation, Bun's poll worker) come and go.
 *
 * @module
 */

/** A function that returns the calling thread's CPU time in microseconds. */
export async function threadClock(): Promise<() => number> {
  const CLOCK_THREAD_CPUTIME_ID = 3;
  const ts = new BigInt64Array(2);
  const read = () => Number(ts[0]) * 1e6 + Number(ts[1]) / 1e3;
  if (typeof Deno !== "undefined") {
    const lib = Deno.dlopen("libc.so.6", { clock_gettime: { parameters: ["i32", "buffer"], result: "i32" } });
    return () => (lib.symbols.clock_gettime(CLOCK_THREAD_CPUTIME_ID, ts), read());
  }
  const { dlopen, FFIType } = await import("bun:ffi");
  const lib = dlopen("libc.so.6", { clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 } });
  return () => (lib.symbols.clock_gettime(CLOCK_THREAD_CPUTIME_ID, ts), read());
}
