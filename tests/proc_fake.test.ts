import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { encodeMessage, type NetlinkError } from "../mod.ts";
import {
  encodeProcEvent,
  type FileReader,
  PROC_CN_MCAST_IGNORE,
  PROC_CN_MCAST_LISTEN,
  PROC_EVENT_ALL,
  PROC_EVENT_EXIT,
  type ProcEvent,
  ProcMonitor,
  type ProcMonitorItem,
} from "../proc.ts";
import { FakeKernel } from "../testing.ts";

const at = { cpu: 0, timestampNs: 1n, seq: 0 };
const exec = (pid: number, cpu = 0): ProcEvent => ({ type: "exec", ...at, cpu, pid, tgid: pid });
const exit = (pid: number, exitCode: number): ProcEvent => ({
  type: "exit",
  ...at,
  pid,
  tgid: pid,
  exitCode,
  exitSignal: 17,
  parentPid: 1,
  parentTgid: 1,
});

async function take(it: AsyncIterator<ProcMonitorItem>, n: number): Promise<ProcMonitorItem[]> {
  const out: ProcMonitorItem[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

describe("subscribing", () => {
  test("an ack lost to an overrun while subscribing: LISTEN is sent again and open() succeeds", async () => {
    // On a busy host a group-1 socket gets other listeners' events from bind() on; a small buffer can
    // be full when the kernel multicasts the ack of our LISTEN, and the ack is dropped. Here the first
    // LISTEN is preceded by 40 events (as another listener's traffic would), the next ones are not.
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    await using _other = await kernel.openProcMonitor(); // someone else listens: events flow
    let flooded = false;
    const listens: number[] = [];
    const push = proc.ops.push.bind(proc.ops);
    proc.ops.push = (...ops) => {
      for (const o of ops) if (o.op === PROC_CN_MCAST_LISTEN) listens.push(o.port);
      if (!flooded && listens.length > 0) {
        flooded = true;
        for (let i = 0; i < 40; i++) proc.emit(exec(100 + i));
      }
      return push(...ops);
    };
    await using monitor = await kernel.openProcMonitor({ rcvbuf: 4096, maxRcvbuf: 0, ackTimeoutMs: 1000 });
    assert.ok(flooded);
    assert.ok(monitor.stats.overruns > 0, "the overrun was seen");
    // Two LISTENs (8-byte and 4-byte) whose ack was lost, then the two that were acked.
    assert.equal(listens.length, 4);
  });

  test("events({ signal }): close() takes the abort listener off the signal; an abort closes the monitor", async () => {
    const kernel = new FakeKernel();
    kernel.enableProcEvents();
    const controller = new AbortController();
    const signal = controller.signal;
    let listeners = 0;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = ((...args: Parameters<typeof add>) => (listeners++, add(...args))) as typeof add;
    signal.removeEventListener =
      ((...args: Parameters<typeof remove>) => (listeners--, remove(...args))) as typeof remove;
    const first = await kernel.openProcMonitor();
    first.events({ signal });
    assert.equal(listeners, 1);
    await first.close();
    assert.equal(listeners, 0, "a long-lived signal keeps no closed monitor");
    const second = await kernel.openProcMonitor();
    second.events({ signal });
    controller.abort();
    for await (const _ of second) assert.fail("nothing after the abort");
    assert.equal(second.closed, true);
  });

  test("LISTEN goes out in both forms, {LISTEN, ALL} and the 4-byte one, confirmed by its ack; close() sends IGNORE", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    const monitor = await kernel.openProcMonitor();
    assert.equal(monitor.filterMode, "none");
    assert.deepEqual(proc.ops.map((o) => [o.op, o.mask]), [[PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL], [
      PROC_CN_MCAST_LISTEN,
      PROC_EVENT_ALL,
    ]]);
    assert.equal(proc.listeners.length, 1);
    await monitor.close();
    assert.deepEqual(proc.ops.at(-1)?.op, PROC_CN_MCAST_IGNORE);
    assert.equal(proc.listeners.length, 0);
    assert.deepEqual(kernel.ports, [], "the socket is closed");
  });

  test("a kernel that never acks gives ETIMEDOUT naming namespaces, and the socket is closed", async () => {
    const kernel = new FakeKernel();
    kernel.enableProcEvents({ ack: false });
    await assert.rejects(kernel.openProcMonitor({ ackTimeoutMs: 50 }), (e: NetlinkError) => {
      assert.equal(e.code, "ETIMEDOUT");
      assert.match(e.message, /initial user and pid namespaces/);
      return true;
    });
    assert.deepEqual(kernel.ports, []);
  });

  test("sending from a non-initial network namespace fails with ECONNREFUSED and its hint", async () => {
    const kernel = new FakeKernel({ initialNetworkNamespace: false });
    kernel.enableProcEvents();
    await assert.rejects(kernel.openProcMonitor(), /ECONNREFUSED.*initial network namespace/);
  });

  test("an unknown event name is a TypeError", async () => {
    const kernel = new FakeKernel();
    kernel.enableProcEvents();
    await assert.rejects(kernel.openProcMonitor({ events: ["spawn" as "exec"] }), TypeError);
  });
});

describe("filtering", () => {
  test("on a >= 6.6 kernel the filter is set in the kernel after the ALL handshake", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    await using monitor = await kernel.openProcMonitor({ events: ["exit"] });
    assert.equal(monitor.filterMode, "kernel");
    assert.equal(monitor.checksSequence, false);
    assert.deepEqual(proc.ops.map((o) => o.mask), [PROC_EVENT_ALL, PROC_EVENT_ALL, PROC_EVENT_EXIT]);
    proc.emit(exec(10));
    proc.emit(exit(10, 0));
    const [first] = await take(monitor[Symbol.asyncIterator](), 1);
    assert.equal(first.type, "exit");
    assert.equal(monitor.stats.filtered, 0, "the kernel dropped the exec, not us");
  });

  test("on an older kernel (no proc_input) it falls back to 4-byte LISTEN and filters here", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents({ inputFilter: false });
    // No wait for an ack that will not come: the 4-byte LISTEN's ack settles it (a minute-long
    // timeout would fail this test by its own timeout).
    await using monitor = await kernel.openProcMonitor({ events: ["nonzero-exit"], ackTimeoutMs: 60_000 });
    assert.equal(monitor.filterMode, "userspace");
    assert.equal(monitor.checksSequence, true);
    proc.emit(exec(10));
    proc.emit(exit(10, 0));
    proc.emit(exit(11, 256));
    const [first] = await take(monitor[Symbol.asyncIterator](), 1);
    assert.deepEqual(first.type === "exit" && [first.pid, first.exitCode], [11, 256]);
    assert.equal(monitor.stats.filtered, 2);
  });
});

describe("trust and loss", () => {
  test("a datagram from a userspace port is not delivered and is counted as forged", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    await using monitor = await kernel.openProcMonitor();
    const forged = encodeMessage({ id: { idx: 1, val: 1 }, data: encodeProcEvent(exec(666)) });
    kernel.sendRaw(forged, { to: { group: 1 }, from: { port: 31337, groups: 1 } });
    proc.emit(exec(7));
    const [first] = await take(monitor[Symbol.asyncIterator](), 1);
    assert.deepEqual(first.type === "exec" && first.pid, 7);
    assert.equal(monitor.stats.foreign, 1);
  });

  test("a kernel datagram longer than the monitor's 128-byte receive slots is counted as truncated, as ProcMonitor.open's socket receives it", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    const issues: string[] = [];
    await using monitor = await kernel.openProcMonitor({ onError: (e, info) => issues.push(`${info.kind}: ${e}`) });
    kernel.sendRaw(encodeMessage({ id: { idx: 1, val: 1 }, data: new Uint8Array(200) }), { to: { group: 1 } });
    proc.emit(exec(8));
    const [first] = await take(monitor[Symbol.asyncIterator](), 1);
    assert.equal(first.type === "exec" && first.pid, 8);
    assert.equal(monitor.stats.truncated, 1);
    assert.deepEqual(issues, ["truncated: RangeError: datagram of 236 bytes truncated to 128"]);
  });

  test("a per-CPU seq gap is delivered as a lost item with its count and cpu, and events go on", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    await using monitor = await kernel.openProcMonitor();
    proc.emit(exec(1, 1));
    proc.emit(exec(2, 1), 5);
    proc.emit(exec(3, 0));
    const items = await take(monitor[Symbol.asyncIterator](), 4);
    assert.deepEqual(items.map((i) => i.type === "lost" ? `lost ${i.reason} ${i.count} cpu${i.cpu}` : i.type), [
      "exec",
      "lost seq-gap 5 cpu1",
      "exec",
      "exec",
    ]);
    assert.equal(monitor.stats.seqLost, 5);
  });

  test("an overrun is delivered as a lost item, the buffer grows, and later events still arrive", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    await using monitor = await kernel.openProcMonitor({ rcvbuf: 1000, maxRcvbuf: 64000 });
    const before = monitor.receiveBuffer;
    assert.deepEqual(before, { requested: 1000, reported: 2304 }); // the kernel's minimum
    for (let i = 0; i < 20; i++) proc.emit(exec(100 + i));
    const items = await take(monitor[Symbol.asyncIterator](), 3);
    const lost = items.find((i) => i.type === "lost");
    assert.deepEqual(lost, { type: "lost", reason: "overrun" });
    const after = monitor.receiveBuffer;
    assert.ok(after.reported > before.reported, `rcvbuf grew from ${before.reported} to ${after.reported}`);
    assert.ok(after.requested! > before.requested!, "the size asked for after the overrun");
    assert.equal(monitor.stats.rcvbuf, after.reported, "the deprecated stats.rcvbuf says the same");
    proc.emit(exec(999));
    for (;;) {
      const [next] = await take(monitor[Symbol.asyncIterator](), 1);
      if (next.type === "exec" && next.pid === 999) break;
    }
    assert.equal(monitor.stats.overruns, 1);
  });
});

describe("lifecycle", () => {
  test("break ends the subscription (IGNORE sent, socket closed)", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    const monitor = await kernel.openProcMonitor();
    proc.emit(exec(5));
    for await (const e of monitor) {
      assert.equal(e.type, "exec");
      break;
    }
    await monitor.close();
    assert.equal(proc.ops.at(-1)?.op, PROC_CN_MCAST_IGNORE);
    assert.deepEqual(kernel.ports, []);
  });

  test("an abort signal ends the iteration quietly, like close(), and unsubscribes", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    const ac = new AbortController();
    const monitor = await kernel.openProcMonitor({ signal: ac.signal });
    const pending = monitor[Symbol.asyncIterator]().next();
    ac.abort(new Error("enough"));
    assert.deepEqual(await pending, { value: undefined, done: true });
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(proc.listeners.length, 0, "IGNORE was sent");
    assert.deepEqual(kernel.ports, [], "the socket is closed");
    await monitor.close();
    assert.equal(proc.listeners.length, 0);
  });
});

describe("the kernel's listener count", () => {
  const PROC = { idx: 1, val: 1 };
  const op = (code: number) => new Uint8Array(new Uint32Array([code]).buffer);

  test("no acks and no events while it is below 1; from 6.6 a socket counts once while its op is LISTEN", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    await using a = await kernel.connect({ groups: [1] });
    const acks: number[] = [];
    a.addCallback(PROC, "acks", (m) => acks.push(m.ack));
    assert.equal(proc.emit(exec(1)), -1, "nobody listens: nothing sent");
    a.send({ id: PROC, ack: 10, data: op(PROC_CN_MCAST_LISTEN) });
    a.send({ id: PROC, ack: 20, data: op(PROC_CN_MCAST_LISTEN) });
    assert.equal(proc.listenerCount, 1, "a second LISTEN of the same socket does not count");
    a.send({ id: PROC, ack: 30, data: op(3) }); // EINVAL, the count stays
    a.send({ id: PROC, ack: 40, data: op(PROC_CN_MCAST_IGNORE) });
    assert.equal(proc.listenerCount, 0);
    a.send({ id: PROC, ack: 50, data: op(3) }); // nobody listens: no ack
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(acks, [11, 21, 31]);
  });

  test("before 6.6 (inputFilter false) every LISTEN and IGNORE moves it, and the sender of IGNORE gets its ack", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents({ inputFilter: false });
    await using a = await kernel.connect({ groups: [1] });
    await using b = await kernel.connect({ groups: [1] });
    const acks: number[] = [];
    b.addCallback(PROC, "acks", (m) => acks.push(m.ack));
    a.send({ id: PROC, ack: 10, data: op(PROC_CN_MCAST_LISTEN) });
    b.send({ id: PROC, ack: 20, data: op(PROC_CN_MCAST_LISTEN) });
    b.send({ id: PROC, ack: 30, data: op(PROC_CN_MCAST_LISTEN) });
    assert.equal(proc.listenerCount, 3);
    b.send({ id: PROC, ack: 40, data: op(PROC_CN_MCAST_IGNORE) });
    assert.equal(proc.listenerCount, 2);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(acks, [11, 21, 31, 41]);
  });
});

describe("ProcMonitor.over: the seam the fake kernel builds monitors with", () => {
  test("it takes the clocks and the /proc reader it is given: the table's scan reads through them", async () => {
    const kernel = new FakeKernel();
    kernel.enableProcEvents();
    let listed = 0;
    const read: string[] = [];
    const files: FileReader = {
      read: (path) => {
        read.push(path);
        return null;
      },
      readlink: () => null,
      list: () => null,
    };
    const dependencies = {
      list: () => (listed++, [4242]),
      files,
      bootOffsetNs: () => 0n,
      monotonicNs: () => 0n,
    };
    await using monitor = await ProcMonitor.over(kernel.socket({ slotSize: 128 }), { enrich: true }, dependencies);
    assert.equal(listed, 1, "the scan at open lists the pids once");
    assert.ok(read.some((path) => path.startsWith("/proc/4242/")), `read: ${read.join(", ")}`);
    assert.ok(monitor.processes, "a table is kept");
  });

  test("bad dependencies and a bad transport are refused before anything is sent", async () => {
    const kernel = new FakeKernel();
    const proc = kernel.enableProcEvents();
    await assert.rejects(ProcMonitor.over(kernel.socket(), {}, { clock: 1 } as never), /unknown key "clock"/);
    await assert.rejects(ProcMonitor.over(kernel.socket(), {}, { list: [1] } as never), TypeError);
    await assert.rejects(ProcMonitor.over({ port: 1 } as never), /transport must be a Transport/);
    assert.deepEqual(proc.ops, []);
  });
});
