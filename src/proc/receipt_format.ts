/**
 * What the receipt worker (receipt_worker.ts) and the JS thread (receipt.ts) agree on: how a batch of
 * received datagrams and the /proc files read for them are laid out, the ring the worker hands
 * batches over through, the shared words of their flow control, and the bounds of a read.
 *
 * A batch is a sequence of entries, each 4-byte aligned, little-endian:
 *
 *     datagram: u32 KIND_DATAGRAM, u32 length (the real one), u32 size (bytes here), u32 truncated,
 *               u32 source port, u32 source groups, then `size` bytes (padded to 4)
 *     overrun:  u32 KIND_OVERRUN (recvmmsg() failed with ENOBUFS at this point of the stream)
 *     file:     u32 KIND_FILE, u32 datagram (its index in this batch), u32 file (index in FILES),
 *               u32 flags (FILE_UNCERTAIN), i32 length (-1: could not be read), then the bytes (padded to 4)
 *     cgroup:   u32 KIND_CGROUP, u32 tgid, i32 length (-1: could not be read), then the bytes of
 *               /proc/TGID/cgroup (padded to 4)
 *
 * Datagrams are numbered in the order they were received. A file entry may come before the datagram
 * it was read for (the worker reads as soon as its exec-only socket shows the exec, and numbers the
 * entries once the main socket gives the datagram), in the order read, not of FILES; its datagram
 * is {@linkcode UNLINKED} when the batch has none for it. A file the worker did not read (it stops
 * at the first one missing because the process is gone) has no entry, and counts as one that could
 * not be read.
 *
 * Cgroup entries come at the end of a batch: the worker reads, once each and after every datagram of
 * the batch was received, the cgroup of every process that forked (the child starts in its parent's
 * cgroup of now) or exited (it may have moved since it was read) in it, which the process table
 * otherwise reads from the JS thread for each fork and exit. They serve every datagram of that batch.
 *
 * @module
 */
import { CMDLINE_LIMIT } from "./enrich.ts";

/** Entry kinds. */
export const KIND_DATAGRAM = 1;
export const KIND_OVERRUN = 2;
export const KIND_FILE = 3;
export const KIND_CGROUP = 4;

/** Bytes before a datagram's bytes, and before a file's. */
export const DATAGRAM_HEADER = 24;
export const FILE_HEADER = 20;
/** Bytes before the bytes of a cgroup entry. */
export const CGROUP_HEADER = 12;

/**
 * The files read for an exec, by index in file entries. The worker reads the command line first
 * (forkstat's order: it names the process), then stat, whose second field gives the comm entry (the
 * same task name /proc/PID/comm shows, with its newline: comm is not read itself), then cgroup and
 * exe. Not status: the real ids it gives are the ones before the exec (exec never changes them), so
 * the process table keeps them from the fork and the uid/gid events, and reads status itself only
 * for a process it did not know (the worker's costliest read: the kernel renders 60 lines for it).
 */
export const FILES = ["cmdline", "comm", "stat", "exe", "cgroup"] as const;
/** One of {@linkcode FILES}. */
export type PrefetchedFile = typeof FILES[number];

/**
 * A file entry's flag: a later exec of the same process happened (by the kernel's timestamp) before
 * this read ended, so what was read may be that later program's.
 */
export const FILE_UNCERTAIN = 1;

/**
 * A file entry's datagram index when the read matches no datagram of its batch (read for an exec
 * seen on the worker's exec-only socket whose datagram the main socket did not give in that batch,
 * e.g. after an overrun): the JS thread skips such entries.
 */
export const UNLINKED = 0xffffffff;

/**
 * Words of the shared Int32Array: datagrams the JS thread has taken (counting up, wrapping at 2^32),
 * the stop request, how many datagrams may be in flight (see {@linkcode inFlightLimit}), and the
 * ring's bytes written by the worker and consumed by the JS thread (both counting up, wrapping at
 * 2^32; a position in the ring is the count modulo its size).
 */
export const SHARED = { TAKEN: 0, STOP: 1, LIMIT: 2, HEAD: 3, TAIL: 4, LENGTH: 5 } as const;

/**
 * The ring the worker hands batches over through (a SharedArrayBuffer): 2 MiB. A batch goes in as
 * chunks of at most {@linkcode CHUNK_BYTES}, each `u32 length, u32 more (1: the batch goes on)`, then
 * its bytes; a chunk that does not fit before the ring's end leaves {@linkcode RING_WRAP} there and
 * starts at 0. The worker waits (Atomics.wait on TAIL) for room, after notifying HEAD (the JS thread
 * must take what the ring holds), and notifies HEAD after a batch, at once or up to NOTIFY_MS later;
 * the JS thread copies chunks out as it takes batches, and waits with Atomics.waitAsync on HEAD.
 * It replaced a postMessage() per batch (a structured clone and a message event each); CPU per event
 * before and after: bench/README.md, "CPU per event of enrichment at receipt".
 */
export const RING_BYTES = 2 << 20;
/** The largest chunk: half of the ring, so that one always fits once the JS thread has caught up. */
export const CHUNK_BYTES = 1 << 20;
/** Bytes before a chunk's bytes. */
export const CHUNK_HEADER = 8;
/** In a chunk's length word: the rest of the ring up to its end is unused, go on at 0. */
export const RING_WRAP = 0xffffffff;

/**
 * Datagrams the worker may have received and posted that the JS thread has not taken yet: as many as
 * the socket's buffer holds (bytes / 768, the kernel's charge for an event), at least 64, at most
 * 65536. At the bound the worker stops receiving, so the kernel's buffer fills and reports an
 * overrun, as when the receive loop itself pauses for a full stream: the buffering the user sized
 * (`rcvbuf`) is not doubled silently, memory stays bounded, and the loss is reported.
 */
export function inFlightLimit(rcvbuf: number): number {
  return Math.min(65536, Math.max(64, Math.floor(rcvbuf / 768)));
}
/** A batch is posted once the socket is drained, or at this size (at most one vector's reads over). */
export const BATCH_BYTES = 1 << 20;

/**
 * How much of a /proc file other than cmdline the worker reads: 64 KiB (stat and cgroup are
 * a few KiB at most; the bound keeps one vector's reads bounded).
 */
export const FILE_LIMIT = 64 << 10;

/**
 * A read is uncertain when a later exec of the same process has a kernel timestamp up to 2 ms after
 * the read's end (receipt_worker.ts): the kernel sends an exec's event only after loading the new
 * image, while /proc already shows its name. The worker holds a batch with reads that long.
 */
export const UNCERTAIN_MARGIN_NS = 2_000_000;

/**
 * How long the worker lets datagrams other than execs wait in the socket once it has taken some: 4 ms
 * (1 ms while they come fast enough to fill a quarter of the socket's buffer in that time).
 * With its exec-only socket (receipt_worker.ts) it wakes at once for an exec; a fork or an exit
 * waits for the next exec or the end of this period, so that a stream of them costs a wake-up (and
 * the context switch, 15-30 µs of CPU on a 2-vCPU VM under Linux 6.18) per period rather than per
 * datagram. Items other than execs reach the JS thread up to this much later (plus up to NOTIFY_MS
 * while batches keep coming). (2 ms cost 4-8 % more
 * CPU per event than 4 ms on that VM, where a burst's execs came 2-3 ms apart: a wake-up at the end
 * of each period between them.)
 */
export const COALESCE_MS = 4;

/**
 * How often, at most, the worker wakes the JS thread while batches keep coming: 10 ms. The first
 * batch after a quiet period wakes it at once (a lone event is not delayed); later batches go into
 * the ring at once, and the JS thread, woken at most once per period, takes all of them together.
 * A JS thread that is awake finds them without a wake-up (it looks at the ring before it waits). On
 * a 2-vCPU VM under Linux 6.18 a burst of execs came one per 2-3 ms, a batch each: a wake-up of the
 * JS thread per exec, which cost more CPU than handling the exec's datagrams.
 */
export const NOTIFY_MS = 10;

/** Layouts and bounds the worker's body uses (it can import nothing: receipt_worker.ts). */
export const LAYOUT = {
  vector: 64,
  slot: 128,
  files: FILES,
  cmdlineLimit: CMDLINE_LIMIT,
  fileLimit: FILE_LIMIT,
  datagramHeader: DATAGRAM_HEADER,
  fileHeader: FILE_HEADER,
  kindDatagram: KIND_DATAGRAM,
  kindOverrun: KIND_OVERRUN,
  kindFile: KIND_FILE,
  kindCgroup: KIND_CGROUP,
  cgroupHeader: CGROUP_HEADER,
  fileUncertain: FILE_UNCERTAIN,
  taken: SHARED.TAKEN,
  stop: SHARED.STOP,
  limit: SHARED.LIMIT,
  head: SHARED.HEAD,
  tail: SHARED.TAIL,
  chunkBytes: CHUNK_BYTES,
  chunkHeader: CHUNK_HEADER,
  ringWrap: RING_WRAP,
  batchBytes: BATCH_BYTES,
  procEventFork: 0x1,
  procEventExec: 0x2,
  procEventExit: 0x80000000,
  uncertainMarginNs: UNCERTAIN_MARGIN_NS,
  coalesceMs: COALESCE_MS,
  notifyMs: NOTIFY_MS,
  /** A file entry's datagram index while its read is not matched to a datagram of the batch. */
  unlinked: UNLINKED,
} as const;

/** The worker's first message: how to open libc (FFI handles do not cross threads), and the layouts. */
export interface ReceiptStart {
  path: string;
  /** The libc table's functions the worker calls, in the runtime's spelling. */
  symbols: Record<string, unknown>;
  /** The nice value to ask for its thread. */
  nice: number;
  /** Whether to open the exec-only socket (receipt_worker.ts); false only in tests of the fallback. */
  execSocket: boolean;
  layout: typeof LAYOUT;
}

/** The libc functions the worker calls. */
export const WORKER_SYMBOLS = [
  "poll",
  "recvmmsg",
  "open",
  "read",
  "close",
  "readlink",
  "clock_gettime",
  "gettid",
  "setpriority",
  "socket",
  "bind",
  "setsockopt",
  "__errno_location",
] as const;

/** Its second message, once it is `ready`: what to read. */
export interface ReceiptSetup {
  /** The process-events socket (fds are process-wide); the worker is its only reader. */
  socket: number;
  /** An eventfd written to stop the worker's poll(). */
  wake: number;
  /** {@linkcode SHARED}. */
  shared: SharedArrayBuffer;
  /** The ring of {@linkcode RING_BYTES}. */
  ring: SharedArrayBuffer;
}

/**
 * The receipt thread's nice value when the process may lower it (CAP_SYS_NICE, e.g. root): a thread
 * that sleeps until an exec and then races the process to /proc should get the CPU first. Measured on
 * a loaded 2-vCPU machine (docs/PROCMON.md): at the process's nice it named about as many short-lived
 * processes as forkstat, at -10 about twice as many. It costs CPU: the thread preempts each exec'ing
 * child to read it, and reads more of them while they are still there. A C loop doing the same reads
 * (bench/proc_reads.c) took 32.5 µs per event at -10 against 16.4 at 0, and named 1751 command lines of
 * 2016 against 1161 (bench/README.md, "The price of the race").
 */
export const RECEIPT_NICE = -10;

/** Messages from the worker. */
export type ReceiptMessage =
  | { type: "ready"; raised: boolean }
  /** Whether the exec-only socket could be opened (errno when not). */
  | { type: "watching"; ok: boolean; errno: number }
  | { type: "failed"; op: string; errno: number; message: string }
  | { type: "stopped" };
