/**
 * The body of Bun's poll worker: the one thread that blocks in epoll_wait() for every socket of the
 * process (Bun has no nonblocking FFI calls). It reports the tokens that fired through a shared
 * Int32Array and parks until the JS thread has taken them.
 *
 * It runs in its own thread, so bun.ts ships {@linkcode pollerWorker} as source text
 * (`String(pollerWorker)`) in a Blob: the function may use nothing but its arguments and globals.
 * Keeping it here, as a function, lets lint and the type-checker (tsconfig.bun.json) see it.
 *
 * @module
 */
import type { dlopen } from "bun:ffi";

/** Slots of the shared Int32Array. */
export const SLOT = { STATE: 0, COUNT: 1, TOKENS: 2 } as const;
/** Values of the STATE slot: the worker may wait (ARMED), or holds a batch for the JS thread (READY). */
export const STATE = { ARMED: 0, READY: 1 } as const;

/** What the worker is started with. */
export interface PollerWorkerSetup {
  /** The libc to open (FFI handles do not cross threads). */
  path: string;
  /** The epoll fd (fds are process-wide). */
  epfd: number;
  /** STATE, COUNT, then up to `maxEvents` tokens. */
  shared: SharedArrayBuffer;
  /** Size of `struct epoll_event` and where its data sits (it is packed on x86_64). */
  eventSize: number;
  dataOffset: number;
  maxEvents: number;
  littleEndian: boolean;
  slot: typeof SLOT;
  state: typeof STATE;
}

/** Waits in epoll_wait() forever, handing each batch of tokens to the JS thread. */
export function pollerWorker(setup: PollerWorkerSetup, open: typeof dlopen): void {
  const lib = open(setup.path, { epoll_wait: { args: ["i32", "ptr", "i32", "i32"], returns: "i32" } });
  const shared = new Int32Array(setup.shared);
  const events = new Uint8Array(setup.eventSize * setup.maxEvents);
  const view = new DataView(events.buffer);
  const { slot, state } = setup;
  for (;;) {
    const n = lib.symbols.epoll_wait(setup.epfd, events, setup.maxEvents, -1);
    // -1 here is EINTR (a signal landed on this thread): wait again.
    if (n <= 0) continue;
    for (let i = 0; i < n; i++) {
      shared[slot.TOKENS + i] = Number(view.getBigUint64(i * setup.eventSize + setup.dataOffset, setup.littleEndian));
    }
    shared[slot.COUNT] = n;
    Atomics.store(shared, slot.STATE, state.READY);
    Atomics.notify(shared, slot.STATE);
    while (Atomics.load(shared, slot.STATE) === state.READY) Atomics.wait(shared, slot.STATE, state.READY);
  }
}
