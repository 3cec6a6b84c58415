/**
 * Picks the FFI backend for the running runtime. Bun is checked first: it has no `Deno` global,
 * while both expose Node-like globals. String-literal dynamic imports keep each runtime away from
 * the other's module.
 *
 * @module
 */
import { DEFAULT_LIBC, type Libc } from "./types.ts";

const cache = new Map<string, Promise<Libc>>();

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
  let loaded = cache.get(path);
  if (!loaded) {
    loaded = load(path);
    cache.set(path, loaded);
    loaded.catch(() => cache.delete(path));
  }
  return loaded;
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
