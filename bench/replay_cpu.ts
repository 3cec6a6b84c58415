/**
 * CPU per event of the library's own code, without the kernel, for two or more versions of the
 * library (a checkout of each) in one process, alternating.
 *
 * Each version's `ProcMonitor` reads a replayed fork storm (fork and exit events: 76-byte datagrams in
 * 64-slot batches, as recvmmsg() hands them out, `BURST` per drain) from an in-memory transport, and a
 * `for await` loop takes every event. The kernel's share of a real storm (fork, exit, recvmmsg) is the
 * same for any version and is what makes `storm_cpu.ts` noisy; this leaves only what a change to the
 * library can move. The versions take turns, `CHUNK` events each, for `ROUNDS` rounds, so a slow
 * spell of the machine hits all of them alike; the figure is each version's CPU per event in its five
 * cheapest rounds, and its ratio to the first version's.
 *
 *   deno run -A bench/replay_cpu.ts TREE...     bun bench/replay_cpu.ts TREE...
 *   (environment: ROUNDS=30 WARMUP=10 CHUNK=100000 BURST=512)
 *
 * Prints one JSON line per version: {"tree","usPerEvent","ratio","median","rounds"} (ALL=1 adds every round).
 *
 * @module
 */
import process from "node:process";
import { threadClock } from "./thread_clock.ts";
import { resolve } from "node:path";

const threadUs = await threadClock();
const measure = process.env.CLOCK === "process"
  ? () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  }
  : threadUs;

const trees = process.argv.slice(2).map((t) => resolve(t));
if (trees.length === 0) throw new Error("usage: replay_cpu.ts TREE... (checkouts of the library to compare)");
const ROUNDS = Number(process.env.ROUNDS ?? 30);
const CHUNK = Number(process.env.CHUNK ?? 100_000);
const BURST = Number(process.env.BURST ?? 512);

const NLMSG_DONE = 3;
const EVENT_DATAGRAM = 76;
const SLOT = 128;
const SLOTS = 64;
const FORK = 0x1;
const EXIT = 0x80000000;
const LISTEN = 1;

/** The received-datagram object a transport refills per datagram, like the real socket's. */
class Received {
  offset = 0;
  size = EVENT_DATAGRAM;
  length = EVENT_DATAGRAM;
  truncated = false;
  readonly source = { port: 0, groups: 1 };
  constructor(readonly buffer: Uint8Array) {}
  get data(): Uint8Array {
    return this.buffer.subarray(this.offset, this.offset + this.size);
  }
}

/** An in-memory socket that acks LISTEN and hands out the events it was allowed to. */
class ReplayTransport {
  readonly port = 4242;
  // A small receive buffer as far as the loop knows: it then waits for the socket between drains
  // instead of sleeping on a timer (a timer costs the same in every version, and makes a run slow).
  readonly rcvbuf = 8192;
  readonly #slots = new Uint8Array(SLOTS * SLOT);
  readonly #view = new DataView(this.#slots.buffer);
  readonly #received = new Received(this.#slots);
  readonly #acks: number[] = [];
  #ackSeq = 0;
  #produced = 0;
  #allowed = 0;
  #inSlots = 0;
  #next = 0;
  #inBurst = 0;
  #waiting: ((ready: boolean) => void) | null = null;
  #closed = false;

  /** Lets `n` more events through (and wakes the reader). */
  allow(n: number): void {
    this.#allowed += n;
    const wake = this.#waiting;
    this.#waiting = null;
    wake?.(true);
  }

  join(): void {}
  leave(): void {}
  memberships(): number[] {
    return [1];
  }

  send(datagram: Uint8Array): void {
    const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
    // cn_msg ack at 16 + 12, proc_input op at 16 + 20: a LISTEN is acked with ack + 1 (both forms,
    // as Linux >= 6.6 does).
    if (view.getUint32(36, true) !== LISTEN) return;
    this.#acks.push(view.getUint32(28, true) + 1);
    this.allow(0);
  }

  receive(): Received | "again" | "overrun" {
    if (this.#next === this.#inSlots) {
      if (this.#acks.length) {
        this.#received.source.groups = 0;
        this.#write(0, this.#ackSeq++, 0, this.#acks.shift()!);
        this.#inSlots = 1;
      } else {
        if (this.#inBurst >= BURST || this.#produced >= this.#allowed) {
          this.#inBurst = 0;
          return "again";
        }
        this.#received.source.groups = 1;
        const n = Math.min(SLOTS, this.#allowed - this.#produced, BURST - this.#inBurst);
        for (let i = 0; i < n; i++) {
          const e = this.#produced + i;
          this.#write(i, e, e % 2 === 0 ? FORK : EXIT, 0);
        }
        this.#produced += n;
        this.#inBurst += n;
        this.#inSlots = n;
      }
      this.#next = 0;
    }
    this.#received.offset = this.#next++ * SLOT;
    return this.#received;
  }

  /** Event `n` (or an ack, `what` 0) into slot `i`: two CPUs take turns, each with its own gapless seq. */
  #write(i: number, n: number, what: number, ack: number): void {
    const v = this.#view;
    const at = i * SLOT;
    const cpu = what === 0 ? 2 : n % 2;
    const seq = what === 0 ? n : n >> 1;
    const pid = 1000 + (n >> 1);
    v.setUint32(at, EVENT_DATAGRAM, true);
    v.setUint16(at + 4, NLMSG_DONE, true);
    v.setUint16(at + 6, 0, true);
    v.setUint32(at + 8, seq, true);
    v.setUint32(at + 12, 0, true);
    v.setUint32(at + 16, 1, true); // CN_IDX_PROC
    v.setUint32(at + 20, 1, true); // CN_VAL_PROC
    v.setUint32(at + 24, seq, true);
    v.setUint32(at + 28, ack, true);
    v.setUint16(at + 32, 40, true);
    v.setUint16(at + 34, 0, true);
    const e = at + 36;
    v.setUint32(e, what, true);
    v.setUint32(e + 4, cpu, true);
    v.setBigUint64(e + 8, BigInt(n) * 1000n, true);
    if (what === FORK) {
      v.setInt32(e + 16, 999, true), v.setInt32(e + 20, 999, true);
      v.setInt32(e + 24, pid, true), v.setInt32(e + 28, pid, true);
    } else if (what === EXIT) {
      v.setInt32(e + 16, pid, true), v.setInt32(e + 20, pid, true);
      v.setUint32(e + 24, 0, true), v.setInt32(e + 28, 17, true);
      v.setInt32(e + 32, 999, true), v.setInt32(e + 36, 999, true);
    } else v.setUint32(e + 16, 0, true); // an ack: err 0
  }

  wait(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    if (this.#produced < this.#allowed || this.#acks.length) return Promise.resolve(true);
    return new Promise((resolve) => (this.#waiting = resolve));
  }

  setReceiveBuffer(): number {
    return this.rcvbuf;
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#waiting?.(false);
    this.#waiting = null;
    return Promise.resolve();
  }
}

interface Version {
  tree: string;
  transport: ReplayTransport;
  monitor: AsyncIterable<{ type: string }> & { close(): Promise<void> };
  events: AsyncIterator<{ type: string }>;
  usPerEvent: number[];
}

const versions: Version[] = [];
for (const tree of trees) {
  const mod = await import(resolve(tree, "src/proc/monitor.ts"));
  const transport = new ReplayTransport();
  // The seam is ProcMonitor.over from 0.3.0; older trees (compared side by side) have procMonitorOver.
  const monitor = mod.ProcMonitor.over
    ? await mod.ProcMonitor.over(transport, {})
    : await mod.procMonitorOver(transport, {});
  versions.push({ tree, transport, monitor, events: monitor[Symbol.asyncIterator](), usPerEvent: [] });
}

// The first WARMUP rounds are not counted: the JIT takes that long to settle (measured on Deno:
// the first rounds cost up to 4x the later ones).
const WARMUP = Number(process.env.WARMUP ?? 10);
for (let round = -WARMUP; round < ROUNDS; round++) {
  for (const v of versions) {
    const start = measure();
    v.transport.allow(CHUNK);
    for (let n = 0; n < CHUNK; n++) {
      const r = await v.events.next();
      if (r.done || r.value.type === "lost") {
        throw new Error(`${v.tree}: ${JSON.stringify(r.value)} in a gapless replay`);
      }
    }
    if (round >= 0) v.usPerEvent.push((measure() - start) / CHUNK);
  }
}
for (const v of versions) await v.monitor.close();

// Noise on a shared machine only adds time, and it comes in spells (whole rounds at 1.5-2x for every
// version), so the figure is the mean of each version's five cheapest rounds: what its code costs
// when nothing interferes.
const floor = (xs: number[]) => {
  const low = xs.toSorted((a, b) => a - b).slice(0, 5);
  return low.reduce((a, b) => a + b, 0) / low.length;
};
const base = floor(versions[0].usPerEvent);
for (const v of versions) {
  const us = floor(v.usPerEvent);
  console.log(JSON.stringify({
    tree: v.tree,
    usPerEvent: Number(us.toFixed(4)),
    ratio: Number((us / base).toFixed(3)),
    median: Number(v.usPerEvent.toSorted((a, b) => a - b)[v.usPerEvent.length >> 1].toFixed(4)),
    rounds: ROUNDS,
    all: process.env.ALL ? v.usPerEvent.map((x) => Number(x.toFixed(3))) : undefined,
  }));
}
