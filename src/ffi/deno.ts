/**
 * Deno backend: `Deno.dlopen` on libc.
 *
 * Waiting is one `nonblocking` epoll_wait() on Deno's blocking pool for all sockets of the process
 * (poller.ts). Such a call cannot be cancelled and keeps the process alive while pending, so the
 * loop runs only while some socket waits, and the eventfd in the set makes it return when none does.
 *
 * @module
 */
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { NetlinkError } from "../errors.ts";
import { RecvBatch } from "./batch.ts";
import { createEpoll, EPOLL_CTL_ADD, EPOLLIN, MAX_EVENTS, type PollBackend, PollSet, WAKE_TOKEN } from "./poller.ts";
import { EFD_CLOEXEC, EFD_NONBLOCK, type Libc } from "./types.ts";
import { type CFunction, type CKind, LIBC, pickSymbols, wrapLibc } from "./libc.ts";

/** Deno's spelling of each kind in the libc table. */
const KIND = { i32: "i32", u32: "u32", size: "usize", buffer: "buffer", pointer: "pointer" } as const;
type Kinds<T extends readonly CKind[]> = { -readonly [I in keyof T]: typeof KIND[T[I]] };
type DenoSymbols = {
  -readonly [N in keyof typeof LIBC]: {
    parameters: Kinds<typeof LIBC[N]["args"]>;
    result: typeof KIND[typeof LIBC[N]["result"]];
    nonblocking: typeof LIBC[N] extends { wait: true } ? true : false;
  };
};

/** {@linkcode LIBC} in Deno's words; the waiting call runs on the blocking pool (`nonblocking`). */
const SYMBOLS = Object.fromEntries(
  Object.entries(LIBC).map(([name, fn]: [string, CFunction]) => [name, {
    parameters: fn.args.map((k) => KIND[k]),
    result: KIND[fn.result],
    nonblocking: fn.wait === true,
  }]),
) as DenoSymbols satisfies Deno.ForeignLibraryInterface;

/**
 * Opens libc and returns the backend.
 *
 * @param path library to open
 */
export function loadDeno(path: string): Libc {
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen(path, SYMBOLS);
  } catch (cause) {
    // A path-scoped --allow-ffi=PATH leaves the permission at "prompt": Deno resolves PATH against
    // the working directory (so dlopen looks for ./libc.so.6), and pointer operations such as
    // reading errno need the unscoped permission anyway.
    if (cause instanceof Deno.errors.NotCapable || Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      throw new Error(
        "cnlink needs Deno's plain --allow-ffi flag (or -A); a path-scoped --allow-ffi=PATH is not enough " +
          "(Deno resolves PATH against the working directory, and reading errno needs the unscoped permission)",
        { cause },
      );
    }
    const reason = (cause as Error).message.replace(/^(Could not open library: )+/, "");
    throw new Error(`cnlink cannot open ${path}: ${reason}`, { cause });
  }
  const s = lib.symbols;
  const errnoPointer = s.__errno_location();
  if (errnoPointer === null) throw new Error("cnlink: __errno_location() returned NULL");
  // errno lives at a fixed thread-local address of the JS thread. Read it inline after each call:
  // a helper function read it late during JIT warm-up (libc.ts).
  const errno = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(errnoPointer, 4));
  return wrapLibc(s, errno, {
    createRecvBatch: (count, slotSize) =>
      new RecvBatch(count, slotSize, (bytes) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)))),
    poller: () => createPoller(s, errno),
    worker: {
      path,
      symbols: (names) => pickSymbols(SYMBOLS, names),
      open: `(path, symbols) => {
        const lib = Deno.dlopen(path, symbols);
        const at = lib.symbols.__errno_location();
        return {
          s: lib.symbols,
          address: (bytes) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes))),
          errno: new Int32Array(Deno.UnsafePointerView.getArrayBuffer(at, 4)),
        };
      }`,
    },
  });
}

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** The process's poll set and the loop that runs epoll_wait() for it on the blocking pool. */
function createPoller(s: Symbols, errno: Int32Array): PollSet {
  const { epfd, layout, ctl } = createEpoll(s, errno, Deno.build.arch === "x86_64");
  const efd = s.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) throw new NetlinkError("eventfd", errno[0], "set up waiting for sockets");
  // Written by the pool thread while a wait is in flight: read only after it settled.
  const events = new Uint8Array(layout.size * MAX_EVENTS);
  const eventsView = new DataView(events.buffer);
  const one = new BigUint64Array([1n]);
  const drain = new BigUint64Array(1);
  let wakePending = false;

  const backend: PollBackend = {
    ctl,
    run: (done) => void loop(done),
    wake() {
      // Make the pending epoll_wait return, so the loop can see nobody waits and end.
      if (wakePending) return;
      wakePending = true;
      s.write(efd, one, 8n);
    },
  };
  const set = new PollSet(backend);
  const added = backend.ctl(EPOLL_CTL_ADD, efd, EPOLLIN, WAKE_TOKEN);
  if (added < 0) throw new NetlinkError("epoll_ctl", -added, "set up waiting for sockets");

  async function loop(done: () => void): Promise<void> {
    try {
      while (set.waiting > 0) {
        const n = await s.epoll_wait(epfd, events, MAX_EVENTS, -1);
        // errno of a nonblocking call is set on the pool thread and unreadable here: -1 can only be
        // EINTR for a valid set, so the wait is retried.
        if (n <= 0) continue;
        const tokens: number[] = [];
        for (let i = 0; i < n; i++) {
          const token = Number(eventsView.getBigUint64(i * layout.size + layout.data, LITTLE_ENDIAN));
          if (token === WAKE_TOKEN) {
            s.read(efd, drain, 8n);
            wakePending = false;
          } else tokens.push(token);
        }
        set.ready(tokens);
      }
    } finally {
      done();
    }
  }
  return set;
}
