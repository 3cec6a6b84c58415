import { describe } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import process from "node:process";
import { Connector, type ConnectorMessage, encodeMessage, type NetlinkError } from "../mod.ts";
import { loadLibc } from "../src/ffi/load.ts";
import { NetlinkSocket } from "../src/socket/netlink_socket.ts";
import { ProcMonitor, type ProcMonitorItem } from "../proc.ts";
import { connectorSocketInodes, kernelAtLeast, kernelTest, markerProcess, sleep, socketTest } from "./_kernel.ts";
import { recordFigure } from "./_figures.ts";

// Our own agent address and groups: nothing in the kernel uses idx 20..22 or groups 20/22.
const AGENT = { idx: 20, val: 0xc0ffee };
const GROUP_A = 20;
const GROUP_B = 22;

async function nextOf(it: AsyncIterator<ConnectorMessage>, ms = 2000): Promise<ConnectorMessage> {
  const timeout = sleep(ms).then(() => {
    throw new Error(`no message within ${ms} ms`);
  });
  const r = await Promise.race([it.next(), timeout]);
  assert.equal(r.done, false);
  return r.value;
}

describe("real kernel", () => {
  kernelTest("two sockets exchange messages by unicast, with the sender's port as source", async () => {
    await using a = await Connector.open();
    await using b = await Connector.open();
    assert.notEqual(a.port, b.port);
    const it = b.messages();
    a.send({ id: AGENT, seq: 1, ack: 2, flags: 0, data: new TextEncoder().encode("hello") }, { to: { port: b.port } });
    const m = await nextOf(it);
    assert.deepEqual(m.id, AGENT);
    assert.equal(m.seq, 1);
    assert.equal(m.ack, 2);
    assert.equal(new TextDecoder().decode(m.data), "hello");
    assert.deepEqual(m.source, { port: a.port, group: 0 });
  });

  kernelTest("one socket in two groups receives multicast on both, and the sender gets none back", async () => {
    await using rx = await Connector.open({ groups: [GROUP_A, GROUP_B] });
    await using tx = await Connector.open({ groups: [GROUP_A] });
    assert.deepEqual(rx.groups, [GROUP_A, GROUP_B]);
    const it = rx.messages();
    const own = tx.messages();
    tx.send({ id: AGENT, seq: 10 }, { to: { group: GROUP_A } });
    tx.send({ id: AGENT, seq: 11 }, { to: { group: GROUP_B } });
    const first = await nextOf(it);
    const second = await nextOf(it);
    assert.deepEqual([first.seq, first.source.group], [10, GROUP_A]);
    assert.deepEqual([second.seq, second.source.group], [11, GROUP_B]);
    assert.equal(first.source.port, tx.port);
    await sleep(50);
    assert.equal(tx.stats.messages, 0, "a sender does not get its own multicast");
    void own;
  });

  kernelTest("request() gets the reply of an agent on another socket by seq/ack", async () => {
    await using agent = await Connector.open();
    await using client = await Connector.open();
    agent.addCallback(AGENT, "echo", (m) => {
      agent.send({ id: m.id, seq: m.seq, ack: m.seq + 1, data: m.data.reverse() }, { to: { port: m.source.port } });
    });
    const reply = await client.request({ id: AGENT, data: new Uint8Array([1, 2, 3]) }, {
      to: { port: agent.port },
      timeoutMs: 2000,
    });
    assert.deepEqual([...reply.data], [3, 2, 1]);
    assert.equal(reply.source.port, agent.port);
  });

  kernelTest("join and leave take effect in the kernel", async () => {
    await using rx = await Connector.open();
    await using tx = await Connector.open();
    const it = rx.messages();
    rx.join(GROUP_B);
    assert.deepEqual(rx.groups, [GROUP_B]);
    tx.send({ id: AGENT, seq: 1 }, { to: { group: GROUP_B } });
    assert.equal((await nextOf(it)).seq, 1);
    rx.leave(GROUP_B);
    assert.deepEqual(rx.groups, []);
    tx.send({ id: AGENT, seq: 2 }, { to: { group: GROUP_B } });
    rx.join(GROUP_B);
    tx.send({ id: AGENT, seq: 3 }, { to: { group: GROUP_B } });
    assert.equal((await nextOf(it)).seq, 3, "the message sent while out of the group never arrives");
  });

  kernelTest("sending to a dead port gives ECONNREFUSED", async () => {
    await using a = await Connector.open();
    const dead = await Connector.open();
    const port = dead.port;
    await dead.close();
    assert.throws(() => a.send({ id: AGENT }, { to: { port } }), (e: NetlinkError) => {
      assert.equal(e.code, "ECONNREFUSED");
      assert.equal(e.op, "sendto");
      assert.match(
        e.message,
        new RegExp(`^Cannot send to port ${port}: sendto failed .*nobody listens at port ${port}`),
      );
      return true;
    });
  });

  socketTest("an explicit port already held gives EADDRINUSE", async () => {
    await using a = await Connector.open();
    await assert.rejects(Connector.open({ port: a.port }), (e: NetlinkError) => e.code === "EADDRINUSE");
  });

  socketTest("group 33 is a RangeError before any system call", async () => {
    await using a = await Connector.open();
    assert.throws(() => a.join(33), RangeError);
    await assert.rejects(Connector.open({ groups: [0] }), RangeError);
  });

  // Verified on 6.1 (8-byte form dropped), 6.12 and 6.18 (both acked) in the kernel lab and on the host.
  kernelTest("the process-events connector acks LISTEN: the 4-byte form always, the 8-byte form from 6.6", async () => {
    await using conn = await Connector.open({ groups: [1] });
    const op = (code: number, bytes: 4 | 8) => {
      const data = new Uint8Array(bytes);
      new DataView(data.buffer).setUint32(0, code, true);
      if (bytes === 8) new DataView(data.buffer).setUint32(4, 0xe00003c7, true); // PROC_EVENT_ALL
      return data;
    };
    const listen = (bytes: 4 | 8, timeoutMs: number) => {
      const ack = 0x5eed0000 + Math.floor(Math.random() * 0xffff);
      return conn.request({ id: { idx: 1, val: 1 }, ack, data: op(1, bytes) }, {
        match: (m) => m.ack === ack + 1 && new DataView(m.data.buffer, m.data.byteOffset).getUint32(0, true) === 0,
        timeoutMs,
      });
    };
    try {
      const classic = await listen(4, 2000);
      assert.deepEqual(classic.source, { port: 0, group: 1 });
      if (kernelAtLeast(6, 6)) {
        assert.deepEqual((await listen(8, 2000)).source, { port: 0, group: 1 });
      } else {
        // Before 6.6 cn_proc only understands len == 4 and drops anything else without a word.
        await assert.rejects(listen(8, 500), (e: Error) => e.name === "TimeoutError");
      }
    } finally {
      conn.send({ id: { idx: 1, val: 1 }, data: op(2, 4) }); // IGNORE, in the form every kernel knows
    }
  });

  kernelTest("rcvbuf is applied (SO_RCVBUFFORCE as root, beyond rmem_max) and reported in both meanings", async () => {
    await using conn = await Connector.open({ rcvbuf: 8 << 20 });
    assert.deepEqual(conn.receiveBuffer, { requested: 8 << 20, reported: 16 << 20 });
    assert.deepEqual(conn.setReceiveBuffer(3 << 20), { requested: 3 << 20, reported: 6 << 20 });
  });

  kernelTest("close() while a for-await is pending ends it in under 50 ms and really closes the fd", async () => {
    const before = connectorSocketInodes();
    const conn = await Connector.open({ groups: [GROUP_A] });
    const during = connectorSocketInodes();
    assert.equal(during.length, before.length + 1);
    let ended = 0;
    const loop = (async () => {
      for await (const _ of conn) { /* nothing arrives */ }
      ended = performance.now();
    })();
    await sleep(100);
    const start = performance.now();
    await conn.close();
    await loop;
    const elapsed = ended - start;
    assert.ok(elapsed < 50, `for-await ended ${elapsed.toFixed(2)} ms after close()`);
    assert.deepEqual(connectorSocketInodes(), before);
    await conn.close();
  });

  kernelTest("many open/close cycles with pending iterators leak no sockets", async () => {
    const before = connectorSocketInodes();
    for (let i = 0; i < 50; i++) {
      const conn = await Connector.open({ groups: [GROUP_A] });
      const pending = conn.messages().next();
      if (i % 2) await sleep(1);
      await conn.close();
      assert.equal((await pending).done, true);
    }
    assert.deepEqual(connectorSocketInodes(), before);
  });
});

describe("many waiting sockets", () => {
  kernelTest(
    "200 connectors and process monitors wait at once on one thread, and closing some disturbs none",
    async () => {
      const threads = () => readdirSync("/proc/self/task").length;
      const before = threads();
      const conns = await Promise.all(Array.from({ length: 100 }, () => Connector.open()));
      const monitors: ProcMonitor[] = [];
      for (let i = 0; i < 100; i++) monitors.push(await ProcMonitor.open({ events: ["exit"], rcvbuf: 1 << 20 }));
      await using tx = await Connector.open();
      try {
        // Round 1: every socket waits, then gets its message.
        const firstRound = conns.map((c) => c.messages().next());
        const iterators = monitors.map((m) => m[Symbol.asyncIterator]());
        const exitOf = (pid: number) => (it: AsyncIterator<ProcMonitorItem>) => nextExitOf(it, pid);
        await sleep(200);
        const during = threads();
        assert.ok(during - before <= 8, `threads went from ${before} to ${during} for 200 waiting sockets`);
        for (const c of conns) tx.send({ id: AGENT, seq: c.port }, { to: { port: c.port } });
        const pid = await markerProcess(5);
        const got = await Promise.all(firstRound);
        assert.ok(got.every((r, i) => !r.done && r.value.seq === conns[i].port), "every connector got its own message");
        await Promise.all(iterators.map(exitOf(pid)));
        // Close every tenth one while the others wait again: the others still get round 2.
        const secondRound = conns.map((c) => c.messages().next());
        const closing = conns.filter((_, i) => i % 10 === 0);
        await Promise.all([
          ...closing.map((c) => c.close()),
          ...monitors.filter((_, i) => i % 10 === 0).map((m) => m.close()),
        ]);
        for (const c of conns) if (!c.closed) tx.send({ id: AGENT, seq: 2 }, { to: { port: c.port } });
        const pid2 = await markerProcess(6);
        const second = await Promise.all(secondRound);
        second.forEach((r, i) => assert.equal(r.done, i % 10 === 0, `connector ${i}`));
        await Promise.all(iterators.filter((_, i) => i % 10 !== 0).map(exitOf(pid2)));
      } finally {
        await Promise.all([...conns.map((c) => c.close()), ...monitors.map((m) => m.close())]);
      }
    },
    120_000,
  );
});

describe("many sockets readable at once", () => {
  kernelTest(
    "300 group members woken by one message each get it (more than one batch of the waiting thread)",
    async () => {
      // 300 sockets become readable together: more than one epoll_wait() returns (64 each), and on
      // Bun more than the worker's hand-off ring holds (128), so the worker must wait for room.
      const members = await Promise.all(Array.from({ length: 300 }, () => Connector.open({ groups: [GROUP_A] })));
      await using tx = await Connector.open();
      try {
        for (let round = 1; round <= 3; round++) {
          const pending = members.map((c) => c.messages().next());
          await sleep(100);
          tx.send({ id: AGENT, seq: round }, { to: { group: GROUP_A } });
          const got = await Promise.race([Promise.all(pending), sleep(20_000).then(() => null)]);
          assert.ok(got, `round ${round}: not every member got the message within 20 s`);
          assert.ok(got.every((r) => !r.done && r.value.seq === round), `round ${round}: a member got something else`);
        }
      } finally {
        await Promise.all(members.map((c) => c.close()));
      }
    },
    120_000,
  );
});

/** Reads `it` until the exit of `pid` (other processes' exits are skipped). */
async function nextExitOf(it: AsyncIterator<ProcMonitorItem>, pid: number): Promise<void> {
  for (;;) {
    const r = await Promise.race([it.next(), sleep(10_000).then(() => null)]);
    assert.ok(r && !r.done, `no exit of ${pid} within 10 s`);
    if (r.value.type === "exit" && r.value.pid === pid) return;
  }
}

describe("edges that used to lose or refuse data", () => {
  kernelTest("a group member receives 16365, 32768 and 65535-byte messages intact", async () => {
    await using rx = await Connector.open({ groups: [GROUP_A], rcvbuf: 1 << 20 });
    await using tx = await Connector.open();
    const it = rx.messages();
    for (const size of [16365, 32768, 65535]) {
      const data = new Uint8Array(size).map((_, i) => (i * 13) & 0xff);
      tx.send({ id: AGENT, seq: size, data }, { to: { group: GROUP_A } });
      const m = await nextOf(it);
      assert.equal(m.seq, size);
      assert.deepEqual(m.data, data);
    }
    assert.equal(rx.stats.truncated, 0);
  });

  kernelTest("64 KiB messages to an unread iterator: memory stays bounded and the loss is reported", async () => {
    const overruns: number[] = [];
    await using rx = await Connector.open({
      groups: [GROUP_A],
      maxQueuedBytes: 8 << 20,
      onOverrun: (s) => overruns.push(s.overruns),
    });
    // A bare socket sends one pre-encoded datagram over and over: the sender allocates nothing.
    const tx = NetlinkSocket.open(await loadLibc());
    const unread = rx.messages();
    const datagram = encodeMessage({ id: AGENT, seq: 0, data: new Uint8Array(65535) });
    const rss = () => process.memoryUsage().rss;
    const send = async (n: number) => {
      for (let i = 0; i < n; i++) {
        tx.send(datagram, { port: 0, groups: 2 ** (GROUP_A - 1) });
        if (i % 50 === 49) await sleep(1);
      }
    };
    try {
      await send(1500); // the queue fills to its bound
      const first = rss();
      await send(3000); // ~197 MB more offered
      const grown = rss() - first;
      assert.ok(
        grown < 24 << 20,
        `RSS grew ${(grown / 2 ** 20).toFixed(1)} MiB for 197 MB offered to an unread iterator`,
      );
      recordFigure("bounds.rssGrowthMiB", Math.round(grown / 2 ** 20));
    } finally {
      await tx.close();
    }
    assert.ok(rx.stats.overruns > 0 && overruns.length > 0, "the kernel's drops were reported");
    assert.equal((await unread.next()).value?.seq, 0, "the iterator still starts where it was");
    // 4500 sends of 64 KiB: 0.2-0.4 s on the host, 5-7 s under the lab's emulation, and once 20 s there
    // (Bun on 6.12 while the other guest ran its suite on the same two cores).
  }, 60_000);

  kernelTest("1000 concurrent requests to a userspace agent: maxInFlight queues them, all answered", async () => {
    await using agent = await Connector.open();
    agent.addCallback(AGENT, "echo", (m) => {
      agent.send({ id: m.id, seq: m.seq, ack: m.seq + 1, data: m.data }, { to: { port: m.source.port } });
    });
    const ask = (client: Connector, i: number) =>
      client.request({ id: AGENT, data: new Uint32Array([i]) }, { to: { port: agent.port }, timeoutMs: 20_000 });
    await using unbounded = await Connector.open({ rcvbuf: 4 << 20 });
    const burst = await Promise.allSettled(Array.from({ length: 1000 }, (_, i) => ask(unbounded, i)));
    const eagain = burst.filter((r) => r.status === "rejected" && r.reason.code === "EAGAIN").length;
    const ok = burst.filter((r) => r.status === "fulfilled").length;
    assert.equal(ok + eagain, 1000, "each either answered or refused with EAGAIN (nothing sent)");
    await using bounded = await Connector.open({ rcvbuf: 4 << 20, maxInFlight: 64 });
    const replies = await Promise.all(Array.from({ length: 1000 }, (_, i) => ask(bounded, i)));
    assert.deepEqual(
      replies.map((r) => new DataView(r.data.buffer, r.data.byteOffset).getUint32(0, true)),
      Array.from({ length: 1000 }, (_, i) => i),
    );
    await using failing = await Connector.open({ rcvbuf: 4 << 20, maxInFlight: 64, whenBusy: "fail" });
    const fast = await Promise.allSettled(Array.from({ length: 1000 }, (_, i) => ask(failing, i)));
    assert.equal(fast.filter((r) => r.status === "fulfilled").length, 64);
    assert.ok(fast.every((r) => r.status === "fulfilled" || r.reason.code === "EAGAIN"));
    recordFigure("requests.unbounded.eagain", eagain);
  }, 60_000);
});
