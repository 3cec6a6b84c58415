/**
 * The body of Bun's poll worker: the one thread that blocks in epoll_wait() for every socket of the
 * process (Bun has no nonblocking FFI calls). It appends the tokens that fired to a ring in a shared
 * Int32Array and goes straight back to epoll_wait(); the JS thread takes them from the ring.
 *
 * Why a ring and not a one-batch mailbox: with a mailbox the worker parks until the JS thread has taken
 * the batch, so on the way to delivering every event the JS thread had to wake a sleeping thread
 * (Atomics.notify, a futex wake). With the ring nobody sleeps on that path, which bench/wake_ab.ts
 * measured as a lower wake-up latency (bench/README.md, "Figures the code cites").
 *
 * The worker cannot spin meanwhile: every socket is registered `EPOLLONESHOT`, so it stays disabled
 * until its owner waits again. It parks only when the ring is full (more sockets fired than the JS
 * thread has taken yet), until the JS thread takes some.
 *
 * It runs in its own thread, so bun.ts ships {@linkcode pollerWorker} as source text
 * (`String(pollerWorker)`) in a Blob: the function may use nothing but its arguments and globals.
 * Keeping it here, as a function, lets lint and the type-checker (tsconfig.bun.json) see it.
 *
 * @module
 */
import type { dlopen } from "bun:ffi";

/**
 * Slots of the shared Int32Array: how many tokens the worker has written (WRITTEN) and the JS thread
 * has taken (TAKEN), both counting up and wrapping at 2^32, then the ring of `RING` tokens.
 */
export const SLOT = { WRITTEN: 0, TAKEN: 1, RING: 2 } as const;
/**
 * Tokens the ring holds: a power of two, at least `maxEvents`. Only sockets that fired and were not
 * yet taken occupy it, and the JS thread takes all of them at once, so it fills only when more than
 * `RING - maxEvents` sockets become readable together (then the worker waits for the JS thread).
 */
export const RING = 128;

/** What the worker is started with. */
export interface PollerWorkerSetup {
  /** The libc to open (FFI handles do not cross threads). */
  path: string;
  /** epoll_wait() as `bun:ffi` declares it (from the one libc table, libc.ts). */
  epollWait: { args: ["i32", "ptr", "i32", "i32"]; returns: "i32" };
  /** The epoll fd (fds are process-wide). */
  epfd: number;
  /** WRITTEN, TAKEN, then the ring. */
  shared: SharedArrayBuffer;
  /** Size of `struct epoll_event` and where its data sits (it is packed on x86_64). */
  eventSize: number;
  dataOffset: number;
  maxEvents: number;
  littleEndian: boolean;
  slot: typeof SLOT;
  ring: number;
}

/** Waits in epoll_wait() forever, appending each batch of tokens to the ring. */
export function pollerWorker(setup: PollerWorkerSetup, open: typeof dlopen): void {
  const lib = open(setup.path, { epoll_wait: setup.epollWait });
  const shared = new Int32Array(setup.shared);
  const events = new Uint8Array(setup.eventSize * setup.maxEvents);
  const view = new DataView(events.buffer);
  const { slot, ring } = setup;
  let written = Atomics.load(shared, slot.WRITTEN);
  for (;;) {
    const n = lib.symbols.epoll_wait(setup.epfd, events, setup.maxEvents, -1);
    // -1 here is EINTR (a signal landed on this thread): wait again.
    if (n <= 0) continue;
    // Room for n more: park until the JS thread has taken enough (it notifies after every take; a
    // take between our load and the wait makes the wait return at once).
    for (let taken = Atomics.load(shared, slot.TAKEN); ((written - taken) | 0) > ring - n;) {
      Atomics.wait(shared, slot.TAKEN, taken);
      taken = Atomics.load(shared, slot.TAKEN);
    }
    for (let i = 0; i < n; i++) {
      const token = Number(view.getBigUint64(i * setup.eventSize + setup.dataOffset, setup.littleEndian));
      shared[slot.RING + ((written + i) & (ring - 1))] = token;
    }
    written = (written + n) | 0;
    Atomics.store(shared, slot.WRITTEN, written);
    Atomics.notify(shared, slot.WRITTEN);
  }
}
