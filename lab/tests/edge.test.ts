/**
 * The connector's edges, against a kernel module built for them (lab/modules/cnlink_edge.c): several
 * cn_msgs in one netlink message, replies larger than a page, multicast to a group nobody joined, the
 * size limits of the kernel's receive path, messages to an unregistered id, callbacks that run inside
 * the sender's sendmsg(), and cn_del_callback while userspace keeps sending.
 * Runs inside the kernel lab on every kernel of its matrix.
 */
import { after, before, describe } from "node:test";
import assert from "node:assert/strict";
import { Connector, type ConnectorMessage, encodeMessage } from "../../mod.ts";
import { loadLibc } from "../../src/ffi/load.ts";
import { NetlinkSocket } from "../../src/socket/netlink_socket.ts";
import process from "node:process";
import { runChild, scriptCommand } from "../../tests/_runtime.ts";
import { counter, insmod, labTest, rmmod, setParam, sleep } from "./_lab.ts";

/** Messages the flooding process sends (CNLINK_FLOOD overrides). */
const FLOOD = Number(process.env.CNLINK_FLOOD ?? 20_000);

const IDX = 18;
const EDGE = { idx: IDX, val: 1 };
const Op = { COUNT: 0, BUNDLE: 1, BIG: 2, GROUP: 3, SIZE: 4, SLOW: 5, EXCLUDE: 6 } as const;

/** A request for the edge agent: op at byte 0, u32 argument at byte 4, `size` bytes in all. */
function op(code: number, arg = 0, size = 8): Uint8Array {
  const data = new Uint8Array(Math.max(size, 8));
  data[0] = code;
  new DataView(data.buffer).setUint32(4, arg, true);
  return size < 8 ? data.subarray(0, size) : data;
}

const u32 = (m: ConnectorMessage) => new DataView(m.data.buffer, m.data.byteOffset).getUint32(0, true);
const s32 = (m: ConnectorMessage) => new DataView(m.data.buffer, m.data.byteOffset).getInt32(0, true);

async function next(it: AsyncIterator<ConnectorMessage>, ms = 3000): Promise<ConnectorMessage> {
  const timeout = sleep(ms).then(() => {
    throw new Error(`no message within ${ms} ms`);
  });
  const r = await Promise.race([it.next(), timeout]);
  assert.equal(r.done, false);
  return r.value;
}

/** Sends raw bytes to the kernel from a bare socket, bypassing the library's checks. */
async function sendRaw(datagram: Uint8Array): Promise<void> {
  const socket = NetlinkSocket.open(await loadLibc());
  try {
    socket.send(datagram, { port: 0, groups: 0 });
  } finally {
    await socket.close();
  }
}

describe("connector edges (cnlink_edge)", () => {
  before(() => insmod("cnlink_edge", { idx: IDX, val: 1 }));
  after(() => rmmod("cnlink_edge"));

  labTest("several cn_msgs bundled in one netlink message arrive as separate messages, in order", async () => {
    await using conn = await Connector.open();
    const it = conn.messages({ id: EDGE });
    const datagrams = conn.stats.datagrams;
    conn.send({ id: EDGE, seq: 500, data: op(Op.BUNDLE, 5) });
    const got: ConnectorMessage[] = [];
    for (let i = 0; i < 5; i++) got.push(await next(it));
    assert.deepEqual(got.map((m) => [...m.data]), [[0], [1, 1], [2, 2, 2], [3, 3, 3, 3], [4, 4, 4, 4, 4]]);
    assert.ok(got.every((m) => m.seq === 500 && m.ack === 501 && m.source.port === 0));
    assert.equal(conn.stats.datagrams, datagrams + 1, "all five came in one datagram");
  });

  labTest("replies larger than a page arrive whole, up to the 65535 bytes a cn_msg can carry", async () => {
    await using conn = await Connector.open();
    for (const size of [4095, 4096, 4097, 16384, 40000, 65535]) {
      const reply = await conn.request({ id: EDGE, data: op(Op.BIG, size) }, { timeoutMs: 3000 });
      assert.equal(reply.data.byteLength, size);
      const wrong = reply.data.findIndex((b, j) => b !== ((j * 31 + 7) & 0xff));
      assert.equal(wrong, -1, `byte ${wrong} of a ${size}-byte reply`);
    }
    assert.equal(conn.stats.truncated, 0);
  });

  labTest("a module's multicast to a group nobody joined returns -ESRCH; to a joined group it arrives", async () => {
    await using conn = await Connector.open();
    const nobody = await conn.request({ id: EDGE, data: op(Op.GROUP, 29) }, { timeoutMs: 3000 });
    assert.equal(s32(nobody), -3, "ESRCH: the kernel sends nothing when nobody listens");
    await using member = await Connector.open({ groups: [29] });
    const it = member.messages();
    const joined = await conn.request({ id: EDGE, seq: 9, data: op(Op.GROUP, 29) }, { timeoutMs: 3000 });
    assert.ok(s32(joined) >= 0, `cn_netlink_send returned ${s32(joined)}`);
    const m = await next(it);
    assert.deepEqual([m.seq, m.source.port, m.source.group], [9, 0, 29]);
  });

  labTest("portid and group together: the kernel multicasts to the group leaving the sender out", async () => {
    await using sender = await Connector.open({ groups: [27] });
    await using other = await Connector.open({ groups: [27] });
    const mine = sender.messages();
    const theirs = other.messages();
    sender.send({ id: EDGE, seq: 31, data: op(Op.EXCLUDE, 27) });
    const m = await next(theirs);
    assert.deepEqual([m.seq, m.source.group], [31, 27]);
    const none = await Promise.race([mine.next().then(() => "got one"), sleep(300).then(() => "none")]);
    assert.equal(none, "none", "the sending port is excluded");
  });

  labTest("the kernel takes 16364 data bytes and silently drops 16365 (CONNECTOR_MAX_MSG_SIZE 16384)", async () => {
    await using conn = await Connector.open();
    const max = await conn.request({ id: EDGE, data: op(Op.SIZE, 0, 16364) }, { timeoutMs: 3000 });
    assert.equal(u32(max), 16364);
    assert.throws(() => conn.send({ id: EDGE, data: op(Op.SIZE, 0, 16365) }), RangeError, "the library refuses it");
    const received = counter("cnlink_edge", "received");
    const over = encodeMessage({ id: EDGE, seq: 1, data: op(Op.SIZE, 0, 16365) });
    await sendRaw(over);
    await sleep(200);
    assert.equal(counter("cnlink_edge", "received"), received, "the callback never ran");
  });

  labTest("a cn_msg.len longer than the netlink message is dropped before the callback", async () => {
    const received = counter("cnlink_edge", "received");
    const lying = encodeMessage({ id: EDGE, seq: 1, data: op(Op.SIZE) });
    new DataView(lying.buffer).setUint16(16 + 16, 200, true); // cn_msg.len says 200, 8 bytes follow
    await sendRaw(lying);
    await sleep(200);
    assert.equal(counter("cnlink_edge", "received"), received);
  });

  labTest("only the first cn_msg of a datagram reaches the callback", async () => {
    const received = counter("cnlink_edge", "received");
    // Two netlink messages in one datagram, then two cn_msgs in one netlink message.
    const a = encodeMessage({ id: EDGE, seq: 1, data: op(Op.COUNT) });
    const twoNlmsgs = new Uint8Array(a.byteLength * 2);
    twoNlmsgs.set(a);
    twoNlmsgs.set(a, a.byteLength);
    await sendRaw(twoNlmsgs);
    const twoCnMsgs = new Uint8Array(16 + 2 * (a.byteLength - 16));
    twoCnMsgs.set(a);
    twoCnMsgs.set(a.subarray(16), a.byteLength);
    new DataView(twoCnMsgs.buffer).setUint32(0, twoCnMsgs.byteLength, true);
    await sendRaw(twoCnMsgs);
    await sleep(200);
    assert.equal(counter("cnlink_edge", "received"), received + 2, "one call per datagram");
  });

  labTest("a message to an unregistered id: sendto succeeds, nothing comes back", async () => {
    await using conn = await Connector.open();
    const it = conn.messages();
    conn.send({ id: { idx: IDX, val: 99 }, data: op(Op.SIZE) });
    const r = await Promise.race([it.next().then(() => "reply"), sleep(300).then(() => "nothing")]);
    assert.equal(r, "nothing");
    await assert.rejects(
      conn.request({ id: { idx: IDX, val: 99 }, data: op(Op.SIZE) }, { timeoutMs: 300 }),
      (e: Error) => e.name === "TimeoutError",
    );
  });

  labTest("the callback runs inside the sender's sendmsg(): send() returns after the callback did", async () => {
    await using conn = await Connector.open();
    const it = conn.messages({ id: EDGE });
    const start = performance.now();
    conn.send({ id: EDGE, data: op(Op.SLOW, 300) });
    const took = performance.now() - start;
    assert.ok(took >= 290, `send() returned after ${took.toFixed(0)} ms`);
    assert.equal(u32(await next(it, 100)), 8, "the reply was queued before send() returned");
  });

  labTest("cn_del_callback between sends: messages sent while unregistered are dropped, the rest run", async () => {
    await using conn = await Connector.open();
    const send = (n: number) => {
      for (let i = 0; i < n; i++) conn.send({ id: EDGE, data: op(Op.COUNT) });
    };
    const start = counter("cnlink_edge", "received");
    send(100);
    setParam("cnlink_edge", "registered", 0);
    send(100);
    setParam("cnlink_edge", "registered", 1);
    send(100);
    assert.equal(counter("cnlink_edge", "received"), start + 200, "the 100 sent while unregistered never ran");
    const reply = await conn.request({ id: EDGE, data: op(Op.SIZE) }, { timeoutMs: 3000 });
    assert.equal(u32(reply), 8);
  });

  labTest("cn_del_callback and cn_add_callback while another process floods the id: no error, no hang", async () => {
    const start = counter("cnlink_edge", "received");
    const total = FLOOD;
    const [cmd, args] = scriptCommand("lab/tests/fixtures/flood.ts", String(IDX), "1", String(total));
    const flood = runChild(cmd, args, { timeoutMs: 120_000 });
    let toggles = 0;
    let done = false;
    void flood.then(() => (done = true));
    // The flooder's runtime takes a while to start under emulation: toggle once it is sending.
    while (!done && counter("cnlink_edge", "received") === start) await sleep(10);
    while (!done) {
      setParam("cnlink_edge", "registered", toggles % 2);
      toggles++;
      await sleep(5);
    }
    setParam("cnlink_edge", "registered", 1);
    const r = await flood;
    assert.equal(r.timedOut, false);
    const report = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    assert.deepEqual(report, { sent: total, failed: 0, errors: [] }, "sendto never fails: the kernel drops silently");
    const ran = counter("cnlink_edge", "received") - start;
    assert.ok(toggles >= 2, `${toggles} toggles`);
    assert.ok(ran > 0 && ran <= total, `${ran} of ${total} reached the callback`);
    const reply = await (async () => {
      await using conn = await Connector.open();
      return await conn.request({ id: EDGE, data: op(Op.SIZE) }, { timeoutMs: 3000 });
    })();
    assert.equal(u32(reply), 8, "registered again, it answers");
  }, 120_000);
});
