/**
 * A userspace Connector and a kernel module agent (lab/modules/cnlink_echo.c) exchanging messages both
 * ways by {idx, val}: request/reply with seq/ack, unicast and multicast, kernel-originated messages
 * routed to callbacks, several groups on one socket, and the module going away mid-traffic.
 * Runs inside the kernel lab on every kernel of its matrix.
 */
import { describe } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { Connector, type ConnectorMessage } from "../../mod.ts";
import { runChild, scriptCommand } from "../../tests/_runtime.ts";
import { connectorCallbacks, counter, insmod, labTest, loaded, rmmod, sleep, withModule } from "./_lab.ts";

/** Messages the flooding process sends (CNLINK_FLOOD overrides). */
const FLOOD = Number(process.env.CNLINK_FLOOD ?? 20_000);

const IDX = 16;
const ECHO = { idx: IDX, val: 1 };
const WHO = { idx: IDX, val: 2 };
const ECHO_GROUP = 16;
const TIMER_GROUP = 17;
const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function next(it: AsyncIterator<ConnectorMessage>, ms = 3000): Promise<ConnectorMessage> {
  const timeout = sleep(ms).then(() => {
    throw new Error(`no message within ${ms} ms`);
  });
  const r = await Promise.race([it.next(), timeout]);
  assert.equal(r.done, false);
  return r.value;
}

const echo = (period = 0) => ({ idx: IDX, val: 1, group: ECHO_GROUP, timer_group: TIMER_GROUP, period_ms: period });

describe("a kernel module agent (cnlink_echo)", () => {
  labTest("registers at {idx, val} as /proc/net/connector shows", async () => {
    await withModule("cnlink_echo", echo(), () => {
      assert.ok(connectorCallbacks().includes(`cnlink_echo ${IDX}:1`), connectorCallbacks().join("; "));
      assert.ok(connectorCallbacks().includes(`cnlink_who ${IDX}:2`));
      return Promise.resolve();
    });
    assert.equal(connectorCallbacks().some((c) => c.startsWith("cnlink_echo")), false, "gone after rmmod");
  });

  labTest("request() gets the module's unicast reply: from port 0, same seq, ack = seq + 1, data echoed", async () => {
    await withModule("cnlink_echo", echo(), async () => {
      await using conn = await Connector.open();
      const before = counter("cnlink_echo", "received");
      for (let i = 0; i < 20; i++) {
        const seq = 1000 + i;
        const reply = await conn.request({ id: ECHO, seq, data: bytes(`ping ${i}`) }, { timeoutMs: 2000 });
        assert.deepEqual(reply.id, ECHO);
        assert.equal(reply.seq, seq);
        assert.equal(reply.ack, seq + 1);
        assert.equal(text(reply.data), `ping ${i}`);
        assert.deepEqual(reply.source, { port: 0, group: 0 }, "unicast from the kernel");
      }
      assert.equal(counter("cnlink_echo", "received"), before + 20, "the module counted every request");
    });
  });

  labTest("the kernel tells the module who sent: our port, pid and uid", async () => {
    await withModule("cnlink_echo", echo(), async () => {
      await using conn = await Connector.open();
      const reply = await conn.request({ id: WHO, data: bytes("x") }, { timeoutMs: 2000 });
      const v = new DataView(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength);
      assert.equal(reply.data.byteLength, 20);
      assert.equal(v.getUint32(0, true), conn.port, "nsp->portid is our port");
      assert.equal(v.getUint32(4, true), process.pid, "creds.pid is our process");
      assert.equal(v.getUint32(8, true), 0, "creds.uid");
      assert.equal(v.getUint32(16, true), 1, "the module saw the data length we sent");
    });
  });

  labTest("the module's multicast copy reaches every member of its group, source = that group", async () => {
    await withModule("cnlink_echo", echo(), async () => {
      await using a = await Connector.open({ groups: [ECHO_GROUP] });
      await using b = await Connector.open({ groups: [ECHO_GROUP] });
      await using client = await Connector.open();
      const [ia, ib, own] = [a.messages(), b.messages(), client.messages({ id: ECHO })];
      const reply = await client.request({ id: ECHO, seq: 7, data: bytes("to all") }, { timeoutMs: 2000 });
      for (const it of [ia, ib]) {
        const m = await next(it);
        assert.deepEqual([m.seq, m.ack, text(m.data)], [7, 8, "to all"]);
        assert.deepEqual(m.source, { port: 0, group: ECHO_GROUP });
      }
      assert.equal(reply.source.group, 0);
      // The client is not in the group: the unicast reply was all it got (and request() took it).
      await sleep(200);
      assert.equal(client.stats.messages, 1);
      void own;
    });
  });

  labTest("kernel-originated timer messages reach callbacks registered by {idx, val}, with rising seq", async () => {
    await withModule("cnlink_echo", echo(100), async () => {
      await using conn = await Connector.open({ groups: [TIMER_GROUP] });
      const ticks: ConnectorMessage[] = [];
      const other: ConnectorMessage[] = [];
      conn.addCallback(ECHO, "ticks", (m) => ticks.push(m));
      conn.addCallback(WHO, "not-this-one", (m) => other.push(m));
      const deadline = Date.now() + 5000;
      while (ticks.length < 5 && Date.now() < deadline) await sleep(50);
      assert.ok(ticks.length >= 5, `${ticks.length} ticks in 5 s`);
      assert.equal(other.length, 0, "a callback of another val gets none");
      for (const m of ticks) {
        assert.equal(text(m.data), `counter = ${m.seq}\0`);
        assert.deepEqual(m.source, { port: 0, group: TIMER_GROUP });
      }
      for (let i = 1; i < ticks.length; i++) assert.ok(ticks[i].seq > ticks[i - 1].seq, "seq rises");
    });
  });

  labTest("one socket in both groups gets echo copies and ticks, told apart by source.group", async () => {
    await withModule("cnlink_echo", echo(100), async () => {
      await using rx = await Connector.open({ groups: [ECHO_GROUP, TIMER_GROUP] });
      await using tx = await Connector.open();
      const seen = new Set<number>();
      const it = rx.messages();
      await tx.request({ id: ECHO, data: bytes("copy") }, { timeoutMs: 2000 });
      const deadline = Date.now() + 5000;
      while (seen.size < 2 && Date.now() < deadline) seen.add((await next(it)).source.group);
      assert.deepEqual([...seen].sort((x, y) => x - y), [ECHO_GROUP, TIMER_GROUP]);
      rx.leave(TIMER_GROUP);
      assert.deepEqual(rx.groups, [ECHO_GROUP]);
    });
  });

  labTest("nobody in the timer's group: the module's multicast fails with -ESRCH and nothing breaks", async () => {
    await withModule("cnlink_echo", echo(50), async () => {
      await sleep(400);
      assert.ok(counter("cnlink_echo", "ticks") >= 3);
      assert.ok(counter("cnlink_echo", "multicast_errors") >= 3);
      assert.equal(counter("cnlink_echo", "last_error"), -3, "ESRCH");
    });
  });

  labTest(
    "unloading the module while requests are in flight: replies until then, timeouts after, no hang",
    async () => {
      insmod("cnlink_echo", echo());
      try {
        await using conn = await Connector.open();
        let gone = false;
        const unloader = (async () => {
          await sleep(300);
          const child = spawn("rmmod", ["cnlink_echo"], { stdio: "ignore" });
          const [code] = await once(child, "exit");
          gone = true;
          return code as number;
        })();
        const ask = () => conn.request({ id: ECHO, data: bytes("still there?") }, { timeoutMs: 500 });
        let replies = 0;
        const started = Date.now();
        while (!gone) {
          // Until rmmod returns, a request may be answered or (once cn_del_callback ran) dropped.
          try {
            assert.equal(text((await ask()).data), "still there?");
            replies++;
          } catch (err) {
            assert.equal((err as Error).name, "TimeoutError", String(err));
          }
        }
        assert.equal(await unloader, 0, "rmmod succeeded");
        assert.equal(loaded("cnlink_echo"), false);
        assert.ok(replies > 0, "replies while the module was there");
        for (let i = 0; i < 3; i++) {
          await assert.rejects(ask(), (err: Error) => {
            assert.equal(err.name, "TimeoutError", String(err));
            assert.match(err.message, new RegExp(`${IDX}:1`), "the error names the agent");
            return true;
          }, "after it left, the kernel drops messages to its id without a word");
        }
        assert.ok(Date.now() - started < 20_000, "nothing hung");
      } finally {
        rmmod("cnlink_echo");
      }
    },
  );
});

describe("the module leaving under load", () => {
  labTest("rmmod while another process floods the agent: rmmod succeeds, the sender sees no error", async () => {
    insmod("cnlink_echo", echo());
    try {
      const [cmd, args] = scriptCommand("lab/tests/fixtures/flood.ts", String(IDX), "1", String(FLOOD));
      const flood = runChild(cmd, args, { timeoutMs: 120_000 });
      // The flooder's runtime takes a while to start under emulation: wait until it is sending.
      const deadline = Date.now() + 60_000;
      while (counter("cnlink_echo", "received") === 0 && Date.now() < deadline) await sleep(20);
      const received = counter("cnlink_echo", "received");
      rmmod("cnlink_echo");
      const r = await flood;
      assert.equal(r.timedOut, false);
      const report = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
      assert.deepEqual(report, { sent: FLOOD, failed: 0, errors: [] });
      assert.ok(received > 0, "the module was receiving when it went");
      assert.equal(loaded("cnlink_echo"), false);
    } finally {
      rmmod("cnlink_echo");
    }
  }, 120_000);
});

describe("the kernel's 1-Wire core (w1, {3, 1})", () => {
  labTest("answers W1_LIST_MASTERS with an empty list when no bus master exists", async () => {
    insmod("wire", {}, "kernel/drivers/w1");
    try {
      await using conn = await Connector.open();
      // struct w1_netlink_msg { u8 type; u8 status; u16 len; u8 id[8]; } with type W1_LIST_MASTERS (6).
      const request = new Uint8Array(12);
      request[0] = 6;
      const reply = await conn.request({ id: { idx: 3, val: 1 }, seq: 42, data: request }, {
        timeoutMs: 3000,
        match: (m) => m.id.idx === 3 && m.id.val === 1 && m.seq === 42,
      });
      assert.equal(reply.source.port, 0);
      assert.ok(reply.data.byteLength >= 12, `${reply.data.byteLength} bytes`);
      assert.deepEqual([reply.data[0], reply.data[1], reply.data[2] | (reply.data[3] << 8)], [6, 0, 0]);
    } finally {
      rmmod("wire");
    }
  });
});
