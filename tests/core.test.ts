/**
 * The runtime-neutral core without a kernel: the receive loop over a scripted transport and a fake
 * clock, the receiver's policies, the message stream's bounds, and the recvmmsg batch layout.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { encodeMessage, encodeNetlinkHeader } from "../mod.ts";
import type { ReceivedDatagram, ReceiveResult, Transport } from "../src/socket/transport.ts";
import { BURST, type Clock, DATAGRAM_TRUESIZE, MAX_SLEEP_MS, pump, YIELD_MS } from "../src/core/pump.ts";
import { MessageStream } from "../src/core/message_stream.ts";
import { Receiver } from "../src/core/receiver.ts";
import { RecvBatch } from "../src/ffi/batch.ts";

/** A transport whose datagrams the test queues; `wait()` resolves when something is queued. */
class ScriptedTransport implements Transport {
  readonly port = 77;
  rcvbuf = 212992;
  readonly queue: ReceiveResult[] = [];
  waits = 0;
  receives = 0;
  closed = false;
  #wake: ((ready: boolean) => void) | null = null;

  push(...items: ReceiveResult[]): void {
    this.queue.push(...items);
    const wake = this.#wake;
    this.#wake = null;
    wake?.(true);
  }

  receive(): ReceiveResult {
    this.receives++;
    return this.queue.shift() ?? "again";
  }

  wait(): Promise<boolean> {
    this.waits++;
    if (this.closed) return Promise.resolve(false);
    if (this.queue.length) return Promise.resolve(true);
    return new Promise((resolve) => (this.#wake = resolve));
  }

  close(): Promise<void> {
    this.closed = true;
    const wake = this.#wake;
    this.#wake = null;
    wake?.(false);
    return Promise.resolve();
  }

  join(): void {}
  leave(): void {}
  memberships(): number[] {
    return [];
  }
  send(): void {}
  setReceiveBuffer(bytes: number): number {
    return this.rcvbuf = bytes * 2;
  }
}

/** Virtual time: `sleep(ms)` advances it at once and calls `onSleep`, which may queue more datagrams. */
class FakeClock implements Clock {
  t = 1000;
  readonly sleeps: number[] = [];
  onSleep: (ms: number) => void = () => {};

  now(): number {
    return this.t;
  }

  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.t += ms;
    this.onSleep(ms);
    return Promise.resolve();
  }
}

function datagram(
  seq: number,
  source = { port: 0, groups: 0 },
  bytes = encodeMessage({ id: { idx: 9, val: 1 }, seq }),
) {
  return {
    data: bytes,
    buffer: bytes,
    offset: 0,
    size: bytes.byteLength,
    source,
    truncated: false,
    length: bytes.byteLength,
  } satisfies ReceivedDatagram;
}

describe("the receive loop (pump) with a scripted transport and a fake clock", () => {
  test("a lone datagram after quiet is handled at once: the loop waits, it does not sleep", async () => {
    const t = new ScriptedTransport();
    const clock = new FakeClock();
    const seen: number[] = [];
    const loop = pump(t, {
      running: () => seen.length < 2,
      datagram: () => seen.push(clock.now()),
      overrun: () => {},
    }, clock);
    t.push(datagram(1));
    await new Promise((r) => setTimeout(r, 0));
    t.push(datagram(2));
    await loop;
    assert.equal(seen.length, 2);
    assert.deepEqual(clock.sleeps, [], "no coalescing sleep for single datagrams");
    assert.ok(t.waits >= 2);
  });

  test("bursts make it sleep before the next drain, doubling up to 16 ms, never past half the buffer", async () => {
    const t = new ScriptedTransport();
    const clock = new FakeClock();
    let bursts = 0;
    const burst = () => t.push(...Array.from({ length: 20 }, (_, i) => datagram(i)));
    clock.onSleep = (ms) => {
      if (ms > 0 && ++bursts < 12) burst();
    };
    let handled = 0;
    // Handling a datagram takes 0.05 ms of virtual time: a burst of 20 drains in 1 ms.
    const loop = pump(t, {
      running: () => !t.closed,
      datagram: () => {
        handled++;
        clock.t += 0.05;
      },
      overrun: () => {},
    }, clock);
    burst();
    while (bursts < 12) await new Promise((r) => setTimeout(r, 0));
    await t.close();
    await loop;
    const sleeps = clock.sleeps.filter((ms) => ms > 0);
    assert.equal(handled, 12 * 20);
    assert.equal(sleeps[0], 1);
    assert.equal(sleeps[1], 2);
    assert.equal(sleeps[2], 4);
    // 20 datagrams per (sleep + 1 ms of draining): half of a 212992-byte buffer holds ~138 of them.
    for (const [i, ms] of sleeps.entries()) {
      const rate = 20 / (1 + (i === 0 ? 0 : sleeps[i - 1]));
      const safe = t.rcvbuf / DATAGRAM_TRUESIZE / 2 / rate;
      assert.ok(ms <= MAX_SLEEP_MS && ms <= safe + 1e-9, `sleep ${i} was ${ms} ms (safe ${safe.toFixed(2)})`);
    }
    assert.ok(sleeps.some((ms) => ms > 4), "the sleep grew while bursts went on");
  });

  test(`fewer than ${BURST} datagrams per drain: it goes back to waiting`, async () => {
    const t = new ScriptedTransport();
    const clock = new FakeClock();
    let handled = 0;
    const loop = pump(t, { running: () => handled < 6, datagram: () => handled++, overrun: () => {} }, clock);
    t.push(datagram(1), datagram(2), datagram(3));
    await new Promise((r) => setTimeout(r, 0));
    t.push(datagram(4), datagram(5), datagram(6));
    await loop;
    assert.deepEqual(clock.sleeps.filter((ms) => ms > 0), []);
  });

  test(`a socket that never runs dry gives the event loop a turn every ${YIELD_MS} ms`, async () => {
    const t = new ScriptedTransport();
    const clock = new FakeClock();
    let handled = 0;
    // Each datagram "takes" 0.1 ms of virtual time (a slow one), and there is always another. The
    // loop reads the clock every TURN_CHECK datagrams, so a turn comes within 20 ms + 3.2 ms.
    t.receive = () => datagram(handled);
    const loop = pump(t, {
      running: () => handled < 1000,
      datagram: () => {
        handled++;
        clock.t += 0.1;
      },
      overrun: () => {},
    }, clock);
    await loop;
    const turns = clock.sleeps.filter((ms) => ms === 0).length;
    assert.ok(turns >= 4 && turns <= 6, `${turns} turns in 100 ms of work`);
  });

  test("back-pressure pauses receiving until the consumer has room", async () => {
    const t = new ScriptedTransport();
    const clock = new FakeClock();
    const room = Promise.withResolvers<void>();
    let handled = 0;
    let full = true;
    let asked = 0;
    const loop = pump(t, {
      running: () => handled < 4,
      datagram: () => handled++,
      overrun: () => {},
      // Asked after every datagram, and again when a pause ends.
      backpressure: () => (asked++, handled === 2 && full ? room.promise : undefined),
    }, clock);
    t.push(datagram(1), datagram(2), datagram(3), datagram(4));
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(handled, 2, "paused after the second");
    const received = t.receives;
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(t.receives, received, "nothing is received while paused");
    full = false;
    const before = asked;
    room.resolve();
    await loop;
    assert.equal(handled, 4);
    assert.equal(asked, before + 3, "asked again once the pause ended, then after datagrams 3 and 4");
  });

  test("an overrun is reported in order with the datagrams around it", async () => {
    const t = new ScriptedTransport();
    const seen: string[] = [];
    const loop = pump(t, {
      running: () => seen.length < 3,
      datagram: () => seen.push("datagram"),
      overrun: () => seen.push("overrun"),
    }, new FakeClock());
    t.push(datagram(1), "overrun", datagram(2));
    await loop;
    assert.deepEqual(seen, ["datagram", "overrun", "datagram"]);
  });

  for (const state of ["waiting", "paused"] as const) {
    test(`closing while ${state} ends the loop`, async () => {
      const t = new ScriptedTransport();
      let open = true;
      const never = new Promise<void>(() => {});
      const loop = pump(t, {
        running: () => open,
        datagram: () => {},
        overrun: () => {},
        backpressure: () => (state === "paused" ? never : undefined),
      }, new FakeClock());
      if (state === "paused") t.push(datagram(1));
      await new Promise((r) => setTimeout(r, 5));
      open = false;
      await t.close();
      const ended = await Promise.race([
        loop.then(() => "ended"),
        new Promise((r) => setTimeout(() => r("hung"), 200)),
      ]);
      // A paused loop resumes when its stream ends (the receiver ends streams before closing).
      assert.equal(ended, state === "waiting" ? "ended" : "hung");
    });
  }
});

describe("the receiver's policy for what does not decode", () => {
  function receiver(options: ConstructorParameters<typeof Receiver>[2] = {}) {
    const t = new ScriptedTransport();
    const messages: number[] = [];
    const issues: string[] = [];
    const r = new Receiver(t, {
      wanted: () => true,
      message: (m) => messages.push(m.seq),
      overrun: () => {},
      failed: () => {},
    }, { onError: (_e, info) => issues.push(`${info.kind}@${info.source.port}/${info.source.group}`), ...options });
    return { t, r, messages, issues };
  }

  test("truncated, malformed and control datagrams are counted and reported; the rest delivered", async () => {
    const { t, r, messages, issues } = receiver();
    const control = new Uint8Array(20);
    encodeNetlinkHeader(control, { length: 20, type: 2, flags: 0, seq: 0, pid: 0 });
    const truncated = { ...datagram(2), truncated: true, length: 70000 };
    t.push(
      datagram(1, { port: 5, groups: 0 }),
      truncated,
      datagram(3, { port: 5, groups: 1 << 3 }, new Uint8Array(7)),
      datagram(4, { port: 5, groups: 0 }, control),
      datagram(5),
    );
    r.start();
    await new Promise((res) => setTimeout(res, 10));
    assert.deepEqual(messages, [1, 5]);
    assert.deepEqual(issues, ["truncated@0/0", "malformed@5/4", "control@5/0"]);
    assert.deepEqual(
      { ...r.stats },
      { datagrams: 5, messages: 2, overruns: 0, malformed: 1, truncated: 1, control: 1, foreign: 0 },
    );
    await r.close();
  });

  test("kernelOnly: datagrams from any other port are foreign, counted and not delivered", async () => {
    const { t, r, messages, issues } = receiver({ kernelOnly: true });
    t.push(datagram(1, { port: 4242, groups: 1 }), datagram(2, { port: 0, groups: 1 }));
    r.start();
    await new Promise((res) => setTimeout(res, 10));
    assert.deepEqual(messages, [2]);
    assert.deepEqual(issues, ["foreign@4242/1"]);
    await r.close();
  });

  test("without onError the first issue of each kind is a warning and the rest are only counted", async () => {
    const t = new ScriptedTransport();
    const r = new Receiver(t, { wanted: () => true, message: () => {}, overrun: () => {}, failed: () => {} });
    const warnings: unknown[][] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => void warnings.push(args);
    try {
      for (let i = 0; i < 5; i++) t.push(datagram(i, { port: 1, groups: 0 }, new Uint8Array(3)));
      r.start();
      await new Promise((res) => setTimeout(res, 10));
    } finally {
      console.warn = warn;
    }
    assert.equal(r.stats.malformed, 5);
    assert.equal(warnings.length, 1);
    assert.match(
      String(warnings[0][0]),
      /^cnlink: malformed datagram on port 77: Cannot decode .* \(further ones are only counted/,
    );
    await r.close();
  });

  test("drainNow() takes what is queued at once, but not from inside a delivery or while a stream is full", async () => {
    const t = new ScriptedTransport();
    const seen: number[] = [];
    let nested = 0;
    const r: Receiver = new Receiver(t, {
      wanted: () => false,
      message: (m) => {
        seen.push(m.seq);
        if (m.seq === 1) {
          r.drainNow(); // a callback that sends and drains: must not re-enter
          nested = seen.length;
        }
      },
      overrun: () => {},
      failed: () => {},
      // A clock that stands still: the thread never owes the event loop a turn here, so the drain
      // happens inside the call however loaded the machine is.
    }, { maxQueued: 1, clock: { now: () => 0, sleep: (ms) => new Promise((r) => setTimeout(r, ms)) } });
    t.push(datagram(1), datagram(2));
    r.drainNow();
    assert.deepEqual(seen, [1, 2]);
    assert.equal(nested, 1, "the nested drainNow() took nothing");
    const stream = r.stream<number>();
    stream.push(0);
    t.push(datagram(3));
    r.drainNow();
    assert.deepEqual(seen, [1, 2, 3], "a full stream stops the drain after the datagram that filled it");
    await r.close();
  });
});

describe("the receiver's back-pressure over its streams", () => {
  test("a push that fills any bounded stream pauses the loop until every stream is back under its bounds", async () => {
    const t = new ScriptedTransport();
    const streams: MessageStream<number>[] = [];
    const r = new Receiver(t, {
      wanted: () => true,
      // Every message goes to every stream, as a connector's callbacks and iterators get it.
      message: (m) => streams.forEach((s) => s.push(m.seq, 10)),
      overrun: () => {},
      failed: () => {},
    }, { maxQueued: 3, maxQueuedBytes: 1000 });
    const a = r.stream<number>();
    const b = r.stream<number>();
    const late = r.stream<number>(undefined, undefined, false); // bounded later, as the monitor's after its ack
    streams.push(a, b, late);
    const settle = () => new Promise((res) => setTimeout(res, 5));
    t.push(...Array.from({ length: 10 }, (_, i) => datagram(i)));
    r.start();
    await settle();
    assert.equal(t.queue.length, 7, "paused after the third datagram filled both bounded streams");
    for (let i = 0; i < 3; i++) await a.next();
    await settle();
    assert.equal(t.queue.length, 7, "b is still full: still paused");
    await b.next();
    await b.next();
    await settle();
    // b at 1 (under half of 3): the loop takes datagrams until a push fills a stream again.
    assert.equal(t.queue.length, 5, "resumed, and paused again when b was full again");
    assert.equal(late.size, 5, "the unbounded stream took everything delivered");
    r.bound(late as MessageStream<unknown>);
    await a.next();
    await a.next();
    await b.next();
    await b.next();
    await settle();
    assert.equal(t.queue.length, 5, "the stream bounded while over its bound holds the loop");
    await late.return(); // its consumer stops: the stream goes, and with it the pause
    await settle();
    assert.ok(t.queue.length < 5, "detaching the full stream let the loop go on");
    await r.close();
  });
});

describe("message streams", () => {
  const owner = { detach: () => {} };

  test("count messages and bytes, and drainedTo() resolves when both are at or under the levels", async () => {
    const s = new MessageStream<string>(owner);
    s.push("a", 100);
    s.push("b", 200);
    s.push("c", 300);
    assert.deepEqual([s.size, s.bytes], [3, 600]);
    let drained = false;
    const done = s.drainedTo(1, 300).then(() => (drained = true));
    await s.next();
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(drained, false, "2 messages and 500 bytes left");
    await s.next();
    await done;
    assert.deepEqual([s.size, s.bytes], [1, 300]);
  });

  test("end() delivers what is queued, then done; end(error) rejects after the queue", async () => {
    const s = new MessageStream<number>(owner);
    s.push(1);
    s.end(new Error("boom"));
    s.push(2);
    assert.deepEqual(await s.next(), { value: 1, done: false });
    await assert.rejects(s.next(), /boom/);
    assert.deepEqual(await s.next(), { value: undefined, done: true });
  });

  test("return() ends a pending next() at once and detaches the stream", async () => {
    let detached = 0;
    const s = new MessageStream<number>({ detach: () => detached++ });
    const pending = s.next();
    await s.return();
    assert.deepEqual(await pending, { value: undefined, done: true });
    assert.equal(detached, 1);
  });

  test("an abort ends a pending next() quietly and detaches the stream", async () => {
    const ac = new AbortController();
    let detached = 0;
    const s = new MessageStream<number>({ detach: () => detached++ }, ac.signal);
    const pending = s.next();
    ac.abort(new Error("stop"));
    assert.deepEqual(await pending, { value: undefined, done: true });
    assert.equal(detached, 1);
  });

  test("two next() calls at once are refused", async () => {
    const s = new MessageStream<number>(owner);
    void s.next();
    await assert.rejects(s.next(), /previous call settled/);
    s.end();
  });
});

describe("recvmmsg batch layout", () => {
  test("each mmsghdr points at its sockaddr_nl and iovec, each iovec at its slot (x86_64/aarch64 LP64)", () => {
    const base = 0x7f0000001000n;
    const count = 3;
    const slot = 128;
    const batch = new RecvBatch(count, slot, () => base);
    const view = new DataView(batch.memory);
    const le = true;
    const iovAt = count * 64;
    const namesAt = iovAt + count * 16;
    const dataAt = namesAt + count * 16;
    assert.equal(batch.memory.byteLength, dataAt + count * slot);
    for (let i = 0; i < count; i++) {
      const h = i * 64;
      assert.equal(view.getBigUint64(h + 0, le), base + BigInt(namesAt + i * 16), "msg_name");
      assert.equal(view.getUint32(h + 8, le), 12, "msg_namelen");
      assert.equal(view.getBigUint64(h + 16, le), base + BigInt(iovAt + i * 16), "msg_iov");
      assert.equal(view.getBigUint64(h + 24, le), 1n, "msg_iovlen");
      assert.equal(view.getBigUint64(iovAt + i * 16, le), base + BigInt(dataAt + i * slot), "iov_base");
      assert.equal(view.getBigUint64(iovAt + i * 16 + 8, le), BigInt(slot), "iov_len");
    }
    // What recvmmsg writes back: msg_len at 56, msg_flags at 48, the sender in the sockaddr_nl.
    view.setUint32(1 * 64 + 56, 76, le);
    view.setInt32(1 * 64 + 48, 0x20, le);
    view.setUint32(namesAt + 16 + 4, 4242, le);
    view.setUint32(namesAt + 16 + 8, 1, le);
    assert.deepEqual([batch.length(1), batch.truncated(1), batch.sourcePort(1), batch.sourceGroups(1)], [
      76,
      true,
      4242,
      1,
    ]);
    batch.rearm(2);
    assert.equal(batch.truncated(1), false, "rearm clears msg_flags");
    assert.equal(view.getUint32(1 * 64 + 8, le), 12, "and resets msg_namelen");
  });
});
