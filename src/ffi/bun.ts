/**
 * Bun backend: `bun:ffi` on libc.
 *
 * Bun has no nonblocking FFI calls, so waiting runs in a Worker that blocks in poll() over
 * [socket, eventfd] and hands readiness to the JS thread through a shared Int32 and
 * `Atomics.waitAsync`. close() writes the eventfd so the worker's poll returns, then waits for it
 * to exit before anyone closes the fds.
 *
 * @module
 */
import { dlopen, ptr, toArrayBuffer } from "bun:ffi";
import { NetlinkError } from "../errors.ts";
import { RecvBatch } from "./batch.ts";
import { CLOCK_MONOTONIC, EFD_CLOEXEC, EFD_NONBLOCK, type Libc, POLLIN, type Waiter } from "./types.ts";

const SYMBOLS = {
  // int socket(int domain, int type, int protocol)
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  // int bind(int fd, const struct sockaddr *addr, socklen_t len)
  bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
  // int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
  getsockname: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  // int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
  // int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
  getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
  // ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
  // (declared i32: a datagram length always fits)
  sendto: { args: ["i32", "ptr", "u64", "i32", "ptr", "u32"], returns: "i32" },
  // ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
  recvfrom: { args: ["i32", "ptr", "u64", "i32", "ptr", "ptr"], returns: "i32" },
  // int recvmmsg(int fd, struct mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout)
  recvmmsg: { args: ["i32", "ptr", "u32", "i32", "ptr"], returns: "i32" },
  // int close(int fd)
  close: { args: ["i32"], returns: "i32" },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { args: ["u32", "i32"], returns: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count)
  write: { args: ["i32", "ptr", "u64"], returns: "i32" },
  // int clock_gettime(clockid_t clock, struct timespec *ts)
  clock_gettime: { args: ["i32", "ptr"], returns: "i32" },
  // int *__errno_location(void)
  __errno_location: { args: [], returns: "ptr" },
} as const;

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
  const timespec = new BigInt64Array(2);

  return {
    socket(domain, type, protocol) {
      const r = s.socket(domain, type, protocol);
      return r < 0 ? -errno[0] : r;
    },
    bind(fd, addr) {
      const r = s.bind(fd, addr, addr.byteLength);
      return r < 0 ? -errno[0] : r;
    },
    getsockname(fd, addr, addrlen) {
      const r = s.getsockname(fd, addr, addrlen);
      return r < 0 ? -errno[0] : r;
    },
    setsockopt(fd, level, name, value) {
      const r = s.setsockopt(fd, level, name, value, value.byteLength);
      return r < 0 ? -errno[0] : r;
    },
    getsockopt(fd, level, name, value, len) {
      const r = s.getsockopt(fd, level, name, value, len);
      return r < 0 ? -errno[0] : r;
    },
    sendto(fd, buf, len, flags, to) {
      const r = s.sendto(fd, buf, len, flags, to, to.byteLength);
      return r < 0 ? -errno[0] : r;
    },
    recvfrom(fd, buf, len, flags, from, fromlen) {
      const r = s.recvfrom(fd, buf, len, flags, from, fromlen);
      return r < 0 ? -errno[0] : r;
    },
    recvmmsg(fd, batch, flags) {
      const r = s.recvmmsg(fd, batch.headers, batch.count, flags, null);
      return r < 0 ? -errno[0] : r;
    },
    createRecvBatch(count, slotSize) {
      return new RecvBatch(count, slotSize, (bytes) => BigInt(ptr(bytes)));
    },
    close(fd) {
      const r = s.close(fd);
      return r < 0 ? -errno[0] : r;
    },
    monotonicNs() {
      s.clock_gettime(CLOCK_MONOTONIC, timespec);
      return timespec[0] * 1_000_000_000n + timespec[1];
    },
    createWaiter(fd) {
      const efd = s.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (efd < 0) throw new NetlinkError("create eventfd for", errno[0]);
      return new BunWaiter(fd, efd, path, (buf) => s.write(efd, buf, 8n), () => s.close(efd));
    },
  };
}

// Hand-off states in the shared Int32.
const ARMED = 0;
const READABLE = 1;
const CLOSED = 2;
const EXITED = 3;

// The worker opens libc itself (FFI handles do not cross threads). It polls while ARMED, flips
// ARMED -> READABLE when the socket is readable, and parks in Atomics.wait until the JS thread
// re-arms or closes. compareExchange makes sure a CLOSED is never overwritten. Once out of poll()
// for good it stores EXITED: from then on it touches no fd, and the JS thread may close them (an
// Atomics hand-off measured faster than waiting for a postMessage).
const WORKER_SOURCE = `
const { dlopen } = require("bun:ffi");
self.onmessage = (event) => {
  const { path, fd, efd, shared } = event.data;
  const state = new Int32Array(shared);
  const lib = dlopen(path, { poll: { args: ["ptr", "u64", "i32"], returns: "i32" } });
  const fds = new Int32Array(4);
  const shorts = new Int16Array(fds.buffer);
  fds[0] = fd; shorts[2] = ${POLLIN}; fds[2] = efd; shorts[6] = ${POLLIN};
  for (;;) {
    let s = Atomics.load(state, 0);
    while (s === ${READABLE}) { Atomics.wait(state, 0, ${READABLE}); s = Atomics.load(state, 0); }
    if (s === ${CLOSED}) break;
    shorts[3] = 0; shorts[7] = 0;
    if (lib.symbols.poll(fds, 2n, -1) < 0) continue;
    if (shorts[7] !== 0) break;
    if (shorts[3] !== 0 && Atomics.compareExchange(state, 0, ${ARMED}, ${READABLE}) === ${ARMED}) {
      Atomics.notify(state, 0);
    }
  }
  Atomics.store(state, 0, ${EXITED});
  Atomics.notify(state, 0);
  lib.close();
};
`;

let workerUrl: string | undefined;

/** Bun's Worker can be unref'd so that an idle waiter does not keep the process alive. */
type BunWorker = Worker & { ref(): void; unref(): void };

class BunWaiter implements Waiter {
  readonly #state = new Int32Array(new SharedArrayBuffer(4));
  #worker: BunWorker | null = null;
  #gone: Promise<void> | null = null;
  readonly #closed = Promise.withResolvers<void>();
  #closing: Promise<void> | null = null;

  constructor(
    readonly fd: number,
    readonly efd: number,
    readonly path: string,
    readonly signal: (one: BigUint64Array) => number,
    readonly closeEventfd: () => number,
  ) {}

  #start(): BunWorker {
    workerUrl ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
    const worker = new Worker(workerUrl) as BunWorker;
    // If the worker fails to start or dies, close() must not wait for an EXITED that never comes.
    this.#gone = new Promise((resolve) => {
      worker.addEventListener("error", () => resolve());
      worker.addEventListener("close", () => resolve());
    });
    worker.postMessage({ path: this.path, fd: this.fd, efd: this.efd, shared: this.#state.buffer });
    return worker;
  }

  async wait(): Promise<boolean> {
    if (this.#closing) return false;
    const worker = this.#worker ??= this.#start();
    if (Atomics.compareExchange(this.#state, 0, READABLE, ARMED) === READABLE) Atomics.notify(this.#state, 0);
    // Only a waiting connector keeps the process alive, as on Deno.
    worker.ref();
    try {
      for (;;) {
        const s = Atomics.load(this.#state, 0);
        if (s === READABLE) return true;
        if (s === CLOSED || s === EXITED) return false;
        const result = Atomics.waitAsync(this.#state, 0, s);
        // close() also resolves #closed directly: Bun delivers a waitAsync wake-up ~2 ms later.
        if (result.async) await Promise.race([result.value, this.#closed.promise]);
      }
    } finally {
      worker.unref();
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Resolves once the worker stored EXITED. */
  async #workerDone(): Promise<void> {
    for (;;) {
      const s = Atomics.load(this.#state, 0);
      if (s === EXITED) return;
      const result = Atomics.waitAsync(this.#state, 0, s);
      if (result.async) await result.value;
    }
  }

  async #close(): Promise<void> {
    Atomics.store(this.#state, 0, CLOSED);
    Atomics.notify(this.#state, 0);
    this.#closed.resolve();
    this.signal(new BigUint64Array([1n]));
    if (this.#worker) {
      // Keep the process alive until the worker is out of poll(): Bun may otherwise exit in the
      // middle of close() (seen with the worker ref'd again, so a timer holds the loop instead).
      const keepAlive = setInterval(() => {}, 60_000);
      try {
        await Promise.race([this.#workerDone(), this.#gone]);
      } finally {
        clearInterval(keepAlive);
      }
      this.#worker.terminate();
    }
    this.closeEventfd();
  }
}
