/**
 * The client contract: Connector, ProcMonitor and W1Bus, each on the real kernel and on the fake one,
 * have the same shape and behave the same where a user relies on it: `open()`/`over()` async,
 * `closed`, async `close()`, async and sync dispose, `stats` with the core's counters under the same
 * names, `receiveBuffer`, the options `maxQueued`/`maxQueuedBytes`, `signal` where an iteration
 * starts, `timeoutMs` for every wait, the same byte inputs.
 *
 * The real W1Bus is checked over a real Connector (`W1Bus.over`): this host has no w1 core, so its
 * requests time out, which is what the byte-input check relies on.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Connector, type ReceiveBufferSize, type ReceiveStats, TimeoutError } from "../mod.ts";
import { ProcMonitor } from "../proc.ts";
import { W1Bus } from "../w1.ts";
import { FakeKernel, FakeKernelCore } from "../testing.ts";
import { kernelTest, socketTest } from "./_kernel.ts";

/** What every client has. */
interface Client {
  readonly closed: boolean;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  [Symbol.dispose](): void;
  readonly stats: Readonly<ReceiveStats>;
  readonly receiveBuffer: ReceiveBufferSize;
}

/** One client on one kernel, and how to reach the parts of the contract. */
interface Subject<C extends Client = Client> {
  name: string;
  open(options?: Record<string, unknown>): Promise<C>;
  /** Where open()'s options are checked, when `open` is not the client's own open(). */
  openChecked?(options: object): unknown;
  /** Starts the client's iteration with `signal`. */
  iterate(client: C, signal?: AbortSignal): AsyncIterator<unknown>;
  /** Calls the options of the iteration's start, a wait, and open with `options` (to read their keys). */
  iterateWith(client: C, options: object): unknown;
  waitWith(client: C, options: object): unknown;
}

/** The counters of the receive core, which every client's stats carry under these names. */
const CORE_COUNTERS: (keyof ReceiveStats)[] = [
  "datagrams",
  "messages",
  "overruns",
  "malformed",
  "truncated",
  "control",
  "foreign",
];

/** The accepted keys an options check lists when it meets an unknown one. */
async function keysOf(call: () => unknown): Promise<string[]> {
  let error: unknown;
  try {
    await call();
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof TypeError, `an unknown key was accepted (${String(error)})`);
  const match = /the accepted keys are (.*)$/.exec(error.message);
  assert.ok(match, error.message);
  return match[1].split(", ").sort();
}

/** Reads the iterator to its end, which must come quietly within `ms`. */
async function drained(it: AsyncIterator<unknown>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await Promise.race([
      it.next(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`did not end within ${ms} ms`)), ms)),
    ]);
    if (r.done) return;
    assert.ok(Date.now() < deadline, `did not end within ${ms} ms`);
  }
}

const fakeW1 = () => {
  const kernel = new FakeKernel();
  const w1 = kernel.enableW1();
  return { kernel, w1, master: w1.addMaster() };
};
const fakeProc = () => {
  const kernel = new FakeKernel();
  kernel.enableProcEvents();
  return kernel;
};

const subjects = {
  connector: {
    real: {
      name: "Connector on the kernel",
      open: (o) => Connector.open(o),
      iterate: (c, signal) => c.messages({ signal }),
      iterateWith: (c, o) => c.messages(o as never),
      waitWith: (c, o) => c.request({ id: { idx: 0x7ffffff0, val: 1 } }, o as never),
    } satisfies Subject<Connector>,
    fake: {
      name: "Connector on the fake kernel",
      open: (o) => new FakeKernel().connect(o),
      iterate: (c, signal) => c.messages({ signal }),
      iterateWith: (c, o) => c.messages(o as never),
      waitWith: (c, o) => c.request({ id: { idx: 0x7ffffff0, val: 1 } }, o as never),
    } satisfies Subject<Connector>,
  },
  monitor: {
    real: {
      name: "ProcMonitor on the kernel",
      open: (o) => ProcMonitor.open({ rcvbuf: 1 << 20, ...o }),
      iterate: (m, signal) => m.events({ signal }),
      iterateWith: (m, o) => m.events(o as never),
      // The monitor's one wait is the kernel's ack of LISTEN, in open().
      waitWith: (_m, o) => ProcMonitor.open(o as never),
    } satisfies Subject<ProcMonitor>,
    fake: {
      name: "ProcMonitor on the fake kernel",
      open: (o) => fakeProc().openProcMonitor(o),
      iterate: (m, signal) => m.events({ signal }),
      iterateWith: (m, o) => m.events(o as never),
      waitWith: (_m, o) => fakeProc().openProcMonitor(o as never),
    } satisfies Subject<ProcMonitor>,
  },
  w1: {
    real: {
      name: "W1Bus over a Connector on the kernel",
      open: async (o) => {
        const { bundle, ...conn } = o ?? {};
        return await W1Bus.over(await Connector.open(conn), { bundle } as never);
      },
      openChecked: (o) => W1Bus.open(o as never),
      iterate: (b, signal) => b.events({ signal }),
      iterateWith: (b, o) => b.events(o as never),
      waitWith: (b, o) => b.listMasters(o as never),
    } satisfies Subject<W1Bus>,
    fake: {
      name: "W1Bus on the fake kernel",
      open: (o) => fakeW1().kernel.openW1Bus(o),
      iterate: (b, signal) => b.events({ signal }),
      iterateWith: (b, o) => b.events(o as never),
      waitWith: (b, o) => b.listMasters(o as never),
    } satisfies Subject<W1Bus>,
  },
};

/** The checks every subject passes, on its own. */
async function contract(s: Subject): Promise<void> {
  // open() is async and takes the queue bounds.
  const opening = s.open({ maxQueued: 64, maxQueuedBytes: 1 << 16 });
  assert.ok(opening instanceof Promise, `${s.name}: open() returns a promise`);
  const client = await opening;
  try {
    assert.equal(client.closed, false, `${s.name}: closed is false while open`);
    for (const key of CORE_COUNTERS) {
      assert.equal(typeof client.stats[key], "number", `${s.name}: stats.${key}`);
    }
    assert.deepEqual(Object.keys(client.receiveBuffer).sort(), ["reported", "requested"], `${s.name}: receiveBuffer`);
    assert.ok(client.receiveBuffer.reported > 0, `${s.name}: receiveBuffer.reported`);

    // signal where the iteration starts; timeoutMs and signal for every wait.
    assert.ok((await keysOf(() => s.iterateWith(client, { nope: 1 }))).includes("signal"), `${s.name}: iteration`);
    const waitKeys = await keysOf(() => s.waitWith(client, { nope: 1 }));
    for (const key of ["timeoutMs", "signal"]) assert.ok(waitKeys.includes(key), `${s.name}: wait option ${key}`);

    // Aborting the signal ends the iteration quietly, also while a next() waits.
    const ac = new AbortController();
    const it = s.iterate(client, ac.signal);
    const pending = it.next();
    ac.abort(new Error("stop"));
    const first = await pending;
    if (!first.done) await drained(it);
  } finally {
    await client.close();
  }
  assert.equal(client.closed, true, `${s.name}: closed after close()`);
  await client.close(); // idempotent

  // close() ends an iteration quietly; so do the disposes, the sync one without waiting.
  const again = await s.open();
  const it = s.iterate(again);
  const ending = drained(it);
  const closing = again.close();
  assert.ok(closing instanceof Promise, `${s.name}: close() returns a promise`);
  await closing;
  await ending;

  let held: Client;
  {
    await using c = await s.open();
    held = c;
  }
  assert.equal(held.closed, true, `${s.name}: closed by await using`);
  const synced = await s.open();
  assert.equal(synced[Symbol.dispose](), undefined);
  assert.equal(synced.closed, true, `${s.name}: closed at once by the sync dispose`);
  await synced.close(); // waits for what the dispose started
}

/** What the real and the fake client of one kind must share: members, counters, option names. */
async function same(real: Subject, fake: Subject): Promise<void> {
  const a = await real.open();
  const b = await fake.open();
  try {
    assert.equal(a.constructor, b.constructor, "one class on both kernels");
    assert.deepEqual(Object.keys(a.stats).sort(), Object.keys(b.stats).sort(), "the same counters");
    assert.deepEqual(
      await keysOf(() => (real.openChecked ?? real.open)({ nope: 1 })),
      await keysOf(() => (fake.openChecked ?? fake.open)({ nope: 1 })),
      "the same open() options",
    );
    assert.deepEqual(
      await keysOf(() => real.iterateWith(a, { nope: 1 })),
      await keysOf(() => fake.iterateWith(b, { nope: 1 })),
      "the same iteration options",
    );
    assert.deepEqual(
      await keysOf(() => real.waitWith(a, { nope: 1 })),
      await keysOf(() => fake.waitWith(b, { nope: 1 })),
      "the same wait options",
    );
  } finally {
    await a.close();
    await b.close();
  }
}

describe("client contract", () => {
  describe("the fakes", () => {
    for (const kind of Object.values(subjects)) {
      test(kind.fake.name, () => contract(kind.fake as unknown as Subject));
    }
  });

  describe("the real clients", () => {
    socketTest(subjects.connector.real.name, () => contract(subjects.connector.real as unknown as Subject));
    kernelTest(subjects.monitor.real.name, () => contract(subjects.monitor.real as unknown as Subject));
    kernelTest(subjects.w1.real.name, () => contract(subjects.w1.real as unknown as Subject));
  });

  describe("real and fake alike", () => {
    kernelTest("Connector", () => same(subjects.connector.real, subjects.connector.fake as unknown as Subject));
    kernelTest("ProcMonitor", () => same(subjects.monitor.real, subjects.monitor.fake as unknown as Subject));
    kernelTest("W1Bus", () => same(subjects.w1.real, subjects.w1.fake as unknown as Subject));
  });

  test("every class has open() and over(), and over() validates as open() does, rejecting", async () => {
    const kernel = new FakeKernelCore();
    for (
      const [name, over] of [
        ["Connector.over", () => Connector.over({} as never)],
        ["ProcMonitor.over", () => ProcMonitor.over({} as never)],
        ["W1Bus.over", () => W1Bus.over({} as never)],
        ["Connector.over options", () => Connector.over(kernel.socket(), { groups: [1] } as never)],
        ["ProcMonitor.over options", () => ProcMonitor.over(kernel.socket(), { libcPath: "x" } as never)],
      ] as const
    ) {
      let result: unknown;
      assert.doesNotThrow(() => void (result = over()), `${name} throws instead of rejecting`);
      await assert.rejects(result as Promise<unknown>, TypeError, name);
    }
    for (const cls of [Connector, ProcMonitor, W1Bus]) {
      assert.equal(typeof cls.open, "function");
      assert.equal(typeof cls.over, "function");
      const members = Object.getOwnPropertyDescriptors(cls.prototype);
      for (const getter of ["closed", "stats", "receiveBuffer"]) {
        assert.equal(typeof members[getter]?.get, "function", `${cls.name}.${getter} is a getter`);
      }
      for (const method of ["close", Symbol.asyncDispose, Symbol.dispose] as const) {
        assert.equal(typeof members[method as string]?.value, "function", `${cls.name}.${String(method)}`);
      }
    }
  });

  test("the same byte inputs: a Uint8Array, an ArrayBuffer, an array of bytes (fakes)", async () => {
    const { kernel, w1, master } = fakeW1();
    await using conn = await kernel.connect();
    const id = { idx: 0x7ffffff0, val: 2 };
    const inputs = [new Uint8Array([1, 2]), new Uint8Array([1, 2]).buffer, [1, 2]];
    for (const data of inputs) conn.send({ id, data });
    assert.deepEqual(kernel.received.map((m) => [...m.data]), [[1, 2], [1, 2], [1, 2]]);
    await using bus = await kernel.openW1Bus();
    for (const data of inputs) await bus.write({ master }, data);
    const written = w1.requests.slice(-3).map((r) => [...r.messages[0].commands![0].data]);
    assert.deepEqual(written, [[1, 2], [1, 2], [1, 2]]);
  });

  kernelTest("the same byte inputs on the kernel: taken (the request times out: no w1 core here)", async () => {
    await using conn = await Connector.open();
    conn.send({ id: { idx: 0x7ffffff0, val: 2 }, data: [1, 2] });
    conn.send({ id: { idx: 0x7ffffff0, val: 2 }, data: new Uint8Array([1, 2]).buffer });
    await using bus = await W1Bus.over(await Connector.open());
    for (const data of [new Uint8Array([1]).buffer, [1]]) {
      await assert.rejects(bus.write({ master: 1 }, data, { timeoutMs: 50 }), TimeoutError);
    }
  });
});
