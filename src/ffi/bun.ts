/**
 * Bun backend: `bun:ffi` on libc.
 *
 * Bun has no nonblocking FFI calls, so one Worker for the whole process blocks in epoll_wait() over
 * every waiting socket (poller.ts, bun_poller_worker.ts) and hands the tokens that fired to the JS
 * thread through a ring in a SharedArrayBuffer, watched with `Atomics.waitAsync`. The worker is ref'd only while some
 * socket waits, so an idle process exits as it would without it.
 *
 * @module
 */
import { dlopen, ptr, toArrayBuffer } from "bun:ffi";
import process from "node:process";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { RecvBatch } from "./batch.ts";
import { pollerWorker, type PollerWorkerSetup, RING, SLOT } from "./bun_poller_worker.ts";
import { createEpoll, MAX_EVENTS, type PollBackend, PollSet } from "./poller.ts";
import type { Libc } from "./types.ts";
import { type CFunction, type CKind, LIBC, pickSymbols, wrapLibc } from "./libc.ts";

/** Bun's spelling of each kind in the libc table. */
const KIND = { i32: "i32", u32: "u32", size: "u64", buffer: "ptr", pointer: "ptr" } as const;
type Kinds<T extends readonly CKind[]> = { -readonly [I in keyof T]: typeof KIND[T[I]] };
type BunSymbol<F extends CFunction> = { args: Kinds<F["args"]>; returns: typeof KIND[F["result"]] };
type BunSymbols = { -readonly [N in Exclude<keyof typeof LIBC, "epoll_wait">]: BunSymbol<typeof LIBC[N]> };

/** One function of {@linkcode LIBC} in Bun's words. */
function bunSymbol<F extends CFunction>(fn: F): BunSymbol<F> {
  return { args: fn.args.map((k) => KIND[k]), returns: KIND[fn.result] } as BunSymbol<F>;
}

/** {@linkcode LIBC} in Bun's words, but for epoll_wait: only the poll worker calls that. */
const SYMBOLS = Object.fromEntries(
  Object.entries(LIBC).filter(([, fn]: [string, CFunction]) => !fn.wait).map((
    [name, fn]: [string, CFunction],
  ) => [name, bunSymbol(fn)]),
) as BunSymbols;

/**
 * Opens libc and returns the backend.
 *
 * @param path library to open
 */
export function loadBun(path: string): Libc {
  let lib;
  try {
    lib = dlopen(path, SYMBOLS);
  } catch (cause) {
    throw new Error(`cnlink cannot open ${path}: ${(cause as Error).message}`, { cause });
  }
  const s = lib.symbols;
  const errnoPointer = s.__errno_location();
  if (!errnoPointer) throw new Error("cnlink: __errno_location() returned NULL");
  const errno = new Int32Array(toArrayBuffer(errnoPointer, 0, 4));
  return wrapLibc(s, errno, {
    createRecvBatch: (count, slotSize) => new RecvBatch(count, slotSize, (bytes) => BigInt(ptr(bytes))),
    poller: () => createPoller(s, errno, path),
    worker: {
      path,
      symbols: (names) => pickSymbols(SYMBOLS, names),
      open: `(path, symbols) => {
        const ffi = require("bun:ffi");
        const lib = ffi.dlopen(path, symbols);
        return {
          s: lib.symbols,
          address: (bytes) => BigInt(ffi.ptr(bytes)),
          errno: new Int32Array(ffi.toArrayBuffer(lib.symbols.__errno_location(), 0, 4)),
        };
      }`,
    },
  });
}

type Symbols = ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"];

/** Bun's Worker can be unref'd so that an idle poll thread does not keep the process alive. */
type BunWorker = Worker & { ref(): void; unref(): void };

let workerUrl: string | undefined;

/** The process's poll set, the poll worker, and the JS side of their hand-off. */
function createPoller(s: Symbols, errno: Int32Array, path: string): PollSet {
  const { epfd, layout, ctl } = createEpoll(s, errno, process.arch === "x64");
  const shared = new Int32Array(new SharedArrayBuffer(4 * (SLOT.RING + RING)));
  let worker: BunWorker | null = null;
  let stopListening: (() => void) | null = null;
  // At most one Atomics.waitAsync outstanding: one that an idle spell left pending is reused.
  let outstanding: Promise<unknown> | null = null;
  // Tokens taken from the ring so far (wraps at 2^32 like the worker's count).
  let taken = 0;

  const start = (): BunWorker => {
    const setup: PollerWorkerSetup = {
      path,
      epollWait: bunSymbol(LIBC.epoll_wait),
      epfd,
      shared: shared.buffer as SharedArrayBuffer,
      eventSize: layout.size,
      dataOffset: layout.data,
      maxEvents: MAX_EVENTS,
      littleEndian: LITTLE_ENDIAN,
      slot: SLOT,
      ring: RING,
    };
    const source = `self.onmessage = (e) => (${String(pollerWorker)})(e.data, require("bun:ffi").dlopen);`;
    workerUrl ??= URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
    const w = new Worker(workerUrl) as BunWorker;
    w.postMessage(setup);
    return w;
  };

  /** The tokens the worker has written since the last call; wakes it if it waits for room. */
  const take = (written: number): number[] => {
    const n = (written - taken) | 0;
    const tokens = new Array<number>(n);
    for (let i = 0; i < n; i++) tokens[i] = shared[SLOT.RING + ((taken + i) & (RING - 1))];
    taken = written;
    Atomics.store(shared, SLOT.TAKEN, taken);
    // Almost always nobody waits, and then notify is a lookup in the runtime, not a system call.
    // (Notifying only when the ring looked full would race: the worker can fill it after our load.)
    Atomics.notify(shared, SLOT.TAKEN);
    return tokens;
  };

  const listen = async (done: () => void): Promise<void> => {
    const w = worker ??= start();
    // Only a waiting socket keeps the process alive, as on Deno.
    w.ref();
    const idle = new Promise<"idle">((resolve) => (stopListening = () => resolve("idle")));
    try {
      while (set.waiting > 0) {
        const written = Atomics.load(shared, SLOT.WRITTEN);
        if (written !== taken) {
          set.ready(take(written));
          continue;
        }
        if (!outstanding) {
          const pending = Atomics.waitAsync(shared, SLOT.WRITTEN, written);
          if (!pending.async) continue;
          outstanding = pending.value.finally(() => (outstanding = null));
        }
        if (await Promise.race([outstanding, idle]) === "idle") break;
      }
    } finally {
      done();
      stopListening = null;
      w.unref();
    }
  };

  const backend: PollBackend = { ctl, run: (done) => void listen(done), wake: () => stopListening?.() };
  const set = new PollSet(backend);
  return set;
}
