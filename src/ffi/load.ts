/**
 * Picks the FFI backend for the running runtime. Bun is checked first: it has no `Deno` global,
 * while both expose Node-like globals. String-literal dynamic imports keep each runtime away from
 * the other's module.
 *
 * @module
 */
import { DEFAULT_LIBC, type Libc } from "./types.ts";

const cache = new Map<string, Promise<Libc>>();
// The ones that have finished loading, for callers that cannot wait (loadedLibc).
const loaded = new Map<string, Libc>();

interface RuntimeGlobals {
  Bun?: unknown;
  Deno?: { build?: { os?: string } };
  process?: { platform?: string };
}

/**
 * Loads libc through the runtime's FFI, once per path.
 *
 * @param path library path; default `libc.so.6`
 * @throws {Error} not Deno or Bun, not Linux, or the library cannot be opened
 */
export function loadLibc(path: string = DEFAULT_LIBC): Promise<Libc> {
  let loading = cache.get(path);
  if (!loading) {
    loading = load(path);
    cache.set(path, loading);
    loading.then((libc) => loaded.set(path, libc), () => cache.delete(path));
  }
  return loading;
}

/**
 * libc as {@linkcode loadLibc} loaded it, if it has finished loading in this process; undefined
 * before (and when it failed). For synchronous callers that can use libc but need not.
 *
 * @param path library path; default `libc.so.6`
 */
export function loadedLibc(path: string = DEFAULT_LIBC): Libc | undefined {
  return loaded.get(path);
}

async function load(path: string): Promise<Libc> {
  const g = globalThis as RuntimeGlobals;
  if (typeof g.Bun !== "undefined") {
    if (g.process?.platform !== "linux") throw unsupported(`Bun on ${g.process?.platform}`);
    const { loadBun } = await import("./bun.ts");
    return loadBun(path);
  }
  if (typeof g.Deno !== "undefined") {
    if (g.Deno.build?.os !== "linux") throw unsupported(`Deno on ${g.Deno.build?.os}`);
    const { loadDeno } = await import("./deno.ts");
    return loadDeno(path);
  }
  throw unsupported("this runtime");
}

function unsupported(what: string): Error {
  return new Error(`cnlink runs on Deno or Bun on Linux (the netlink connector is Linux-only), not ${what}`);
}
