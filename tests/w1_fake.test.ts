/**
 * The 1-Wire client's logic against the fake w1 core (no kernel, no root): reply collection and
 * completion, result assembly, the error model, events, timeouts, and the device helpers. The same
 * behaviour against the real core is in lab/tests/w1.test.ts (Linux 6.1 and 6.12).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { TimeoutError } from "../mod.ts";
import { fakeDs18b20, fakeDs2431, FakeKernel, type FakeW1Device } from "../testing.ts";
import {
  crc16,
  crc8,
  decodeDs18b20Scratchpad,
  decodeW1Messages,
  encodeW1Messages,
  familyName,
  masterIdBytes,
  parseW1Id,
  readEeprom,
  readTemperature,
  W1_MESSAGE,
  W1Error,
  type W1Event,
  w1IdFromBytes,
  writeEeprom,
} from "../w1.ts";
import { W1_GOLDEN } from "./fixtures/golden_w1.ts";

const serialOnly = (name: string): FakeW1Device => ({
  id: name,
  write: () => {},
  read: (n) => new Uint8Array(n).fill(0xff),
});

async function setup(options?: { slaveTtl?: number; idsPerReply?: number; bundle?: boolean }) {
  const kernel = new FakeKernel();
  const w1 = kernel.enableW1({ slaveTtl: options?.slaveTtl, idsPerReply: options?.idsPerReply });
  const master = w1.addMaster();
  const bus = await kernel.openW1Bus({ bundle: options?.bundle });
  return { kernel, w1, master, bus };
}

async function next<T>(it: AsyncIterator<T>, ms = 1000): Promise<T> {
  const r = await Promise.race([
    it.next(),
    new Promise<never>((_, no) => setTimeout(() => no(new Error("no event")), ms)),
  ]);
  assert.equal(r.done, false);
  return r.value;
}

describe("1-Wire ids and CRCs", () => {
  test("a ROM id from its name and from its bytes: family, serial LSB first, CRC8 checked", () => {
    const id = parseW1Id("28-0123456789ab");
    assert.deepEqual([...id.bytes.subarray(0, 7)], [0x28, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]);
    assert.equal(id.serial, 0x0123456789abn);
    assert.equal(id.crc, crc8(id.bytes.subarray(0, 7)));
    const corrupt = id.bytes.slice();
    corrupt[7] ^= 1;
    assert.equal(w1IdFromBytes(corrupt).crcValid, false);
    assert.equal(w1IdFromBytes(corrupt).name, "28-0123456789ab");
    assert.throws(() => parseW1Id("28.0123456789ab"), TypeError);
    assert.throws(() => w1IdFromBytes(new Uint8Array(7)), RangeError);
    assert.equal(familyName(0x2d), "DS2431");
    assert.equal(familyName(0x99), undefined);
  });

  test("CRC8 and CRC16 match Maxim's published check values", () => {
    assert.equal(crc8(Uint8Array.of(0x02, 0x1c, 0xb8, 0x01, 0x00, 0x00, 0x00)), 0xa2);
    assert.equal(crc16(new TextEncoder().encode("123456789")), 0xbb3d);
    // CRC16 continues across calls.
    assert.equal(crc16(new TextEncoder().encode("6789"), crc16(new TextEncoder().encode("12345"))), 0xbb3d);
  });

  test("a DS18B20 scratchpad decodes at every resolution; the low undefined bits are dropped", () => {
    const pad = (raw: number, config: number) => {
      const p = Uint8Array.of(raw & 0xff, (raw >> 8) & 0xff, 75, 0xf6, config, 0xff, 0x0c, 0x10, 0);
      p[8] = crc8(p.subarray(0, 8));
      return p;
    };
    assert.equal(decodeDs18b20Scratchpad(pad(0x0191, 0x7f)).celsius, 25.0625);
    assert.equal(decodeDs18b20Scratchpad(pad(0xff5e, 0x7f)).celsius, -10.125);
    const nine = decodeDs18b20Scratchpad(pad(0x0197, 0x1f));
    assert.deepEqual([nine.resolution, nine.celsius, nine.tl], [9, 25.0, -10]);
    const bad = pad(0x0191, 0x7f);
    bad[8] ^= 0xff;
    assert.throws(() => decodeDs18b20Scratchpad(bad), (e: W1Error) => e.code === "CRC");
  });
});

describe("W1Bus against the fake w1 core", () => {
  test("listMasters, and a search in the kernel's order whose replies may be split, bundled or not", async () => {
    for (const bundle of [true, false]) {
      const { kernel, w1, master, bus } = await setup({ idsPerReply: 1, bundle });
      const second = w1.addMaster();
      for (const name of ["28-000000000003", "01-000000000001", "2d-000000000002"]) w1.plug(master, serialOnly(name));
      assert.deepEqual(await bus.listMasters(), [master, second]);
      const found = await bus.search(master);
      // Bit by bit from the least significant bit of the family byte, 0 first: 0x28, 0x01, 0x2d.
      assert.deepEqual(found.map((id) => id.name), ["28-000000000003", "01-000000000001", "2d-000000000002"]);
      assert.ok(found.every((id) => id.crcValid));
      assert.deepEqual(await bus.search(second), []);
      assert.equal(kernel.ports.length, 1);
      await bus.close();
    }
  });

  test("a transaction returns each command's result; a failing command is thrown with all results", async () => {
    const { w1, master, bus } = await setup();
    w1.plug(master, fakeDs18b20("28-000000000001", { celsius: 20 }));
    const [id] = await bus.search(master);
    const results = await bus.transaction({ master }, [
      { op: "reset" },
      { op: "write", data: [0x55, ...id.bytes, 0xbe] },
      { op: "read", length: 9 },
      { op: "list-slaves" },
    ]);
    assert.deepEqual(results.map((r) => r.op), ["reset", "write", "read", "list-slaves"]);
    assert.equal(decodeDs18b20Scratchpad(results[2].data).celsius, 85, "power-on value before any conversion");
    assert.deepEqual(results[3].ids.map((x) => x.name), [id.name]);
    // The kernel goes on after a failing command: the error carries the later results too.
    const err = await bus.transaction({ master }, [{ op: "add-slave", id }, { op: "list-slaves" }]).catch((e) => e);
    assert.ok(err instanceof W1Error);
    assert.deepEqual([err.code, err.op, err.index, err.status], ["EINVAL", "W1_CMD_SLAVE_ADD", 0, 22]);
    assert.deepEqual(err.results[1].ids.map((x: { name: string }) => x.name), [id.name]);
    await bus.close();
  });

  test("errors: no presence (status 255), unknown master, unattached slave, failed select", async () => {
    const { w1, master, bus } = await setup();
    w1.plug(master, fakeDs18b20("28-000000000001"));
    await bus.search(master);
    w1.setFault(master, "no-presence");
    await assert.rejects(bus.reset(master), (e: W1Error) => e.code === "NO_PRESENCE" && e.status === 255);
    await assert.rejects(
      bus.read({ slave: "28-000000000001" }, 1),
      (e: W1Error) => e.code === "ENODEV" && e.op === "W1_SLAVE_CMD" && /no device answered the reset/.test(e.message),
    );
    w1.setFault(master, "none");
    await assert.rejects(
      bus.reset(master + 7),
      (e: W1Error) =>
        e.code === "ENODEV" && e.op === "W1_MASTER_CMD" && /ENODEV \(no such device\).*listMasters/.test(e.message),
    );
    await assert.rejects(
      bus.read({ slave: "28-0000000000ee" }, 1),
      (e: W1Error) => e.code === "ENODEV" && /no slave with that id attached/.test(e.message),
    );
    await bus.close();
  });

  test("bad arguments are refused before anything is sent", async () => {
    const { w1, master, bus } = await setup();
    const sent = w1.requests.length;
    await assert.rejects(bus.transaction({ master }, []), TypeError);
    await assert.rejects(bus.transaction({ slave: "28-000000000001" }, [{ op: "reset" }]), /runs on a master only/);
    await assert.rejects(bus.read({ master }, 0), RangeError);
    await assert.rejects(bus.read({ master }, 70000), RangeError);
    // Bytes as Connector.send takes them: an element out of 0..255 is a RangeError, a non-number a TypeError.
    await assert.rejects(bus.write({ master }, [256]), {
      name: "RangeError",
      message: /^write\.data\[0\] must be a byte/,
    });
    await assert.rejects(bus.write({ master }, ["1"] as never), TypeError);
    await assert.rejects(bus.write({ master }, "1" as never), TypeError);
    await assert.rejects(bus.write({ master }, []), RangeError);
    await assert.rejects(bus.read({ master: -1 }, 1), RangeError);
    await assert.rejects(bus.read({ slave: "nope" }, 1), TypeError);
    // deno-lint-ignore no-explicit-any
    await assert.rejects(bus.transaction({ master }, [{ op: "jump" } as any]), TypeError);
    assert.equal(w1.requests.length, sent);
    await bus.close();
  });

  test("concurrent requests get their own replies", async () => {
    const { w1, master, bus } = await setup();
    const second = w1.addMaster();
    w1.plug(master, serialOnly("01-000000000001"));
    w1.plug(second, serialOnly("01-000000000002"));
    const [a, b, c] = await Promise.all([bus.search(master), bus.search(second), bus.listMasters()]);
    assert.deepEqual([a.map((x) => x.name), b.map((x) => x.name), c], [["01-000000000001"], ["01-000000000002"], [
      master,
      second,
    ]]);
    await bus.close();
  });

  test("events: masters and slaves come and go; messages to group 3 from userspace are not events", async () => {
    const { kernel, w1, master, bus } = await setup({ slaveTtl: 1 });
    const stop = new AbortController();
    const events = bus.events({ signal: stop.signal });
    const describe = (e: W1Event) => ("id" in e ? `${e.type} ${e.id.name}` : `${e.type} ${e.master}`);
    w1.plug(master, serialOnly("01-000000000001"));
    await bus.search(master);
    assert.equal(describe(await next(events)), "slave-added 01-000000000001");
    // A root process forging an event: counted, not delivered.
    await using forger = await kernel.connect();
    forger.send({
      id: { idx: 3, val: 1 },
      data: encodeW1Messages([{ type: W1_MESSAGE.SLAVE_ADD, id: parseW1Id("01-0000000000ff").bytes }]),
    }, { to: { group: 3 } });
    w1.unplug(master, "01-000000000001");
    await bus.search(master);
    assert.equal(describe(await next(events)), "slave-removed 01-000000000001");
    assert.equal(bus.stats.foreign, 1);
    const other = w1.addMaster();
    assert.equal(describe(await next(events)), `master-added ${other}`);
    w1.removeMaster(other);
    const removed = await next(events);
    assert.deepEqual([removed.type, "master" in removed && removed.master], ["master-removed", other]);
    stop.abort();
    assert.equal((await events.next()).done, true, "abort ends the iteration quietly");
    const another = bus.events();
    const waiting = another.next();
    await another.return!();
    assert.equal((await waiting).done, true, "return() ends a pending next() at once");
    await bus.close();
  });

  test("no core answers: a TimeoutError; an abort rejects with its reason; close rejects what waits", async () => {
    const kernel = new FakeKernel();
    kernel.addCallback({ idx: 3, val: 1 }, "silent", () => {});
    const bus = await kernel.openW1Bus();
    await assert.rejects(bus.listMasters({ timeoutMs: 50 }), TimeoutError);
    const abort = new AbortController();
    const waiting = bus.search(1, { signal: abort.signal });
    abort.abort(new Error("stop"));
    await assert.rejects(waiting, /stop/);
    const closing = bus.search(1);
    await bus.close();
    await assert.rejects(closing, (e: Error) => e.name === "ClosedError");
    assert.equal(masterIdBytes(1).byteLength, 8);
  });

  test("readTemperature converts and reads exactly; a CRC error is read again; too many are a W1Error", async () => {
    const { w1, master, bus } = await setup();
    const thermo = fakeDs18b20("28-000000000001", { celsius: -10.125 });
    w1.plug(master, thermo);
    w1.plug(master, serialOnly("01-000000000002"));
    await bus.search(master);
    const reading = await readTemperature(bus, "28-000000000001", { conversionMs: 0 });
    assert.deepEqual([reading.celsius, reading.resolution, reading.attempts], [-10.125, 12, 1]);
    thermo.celsius = 23.5;
    thermo.badCrcReads = 1;
    assert.deepEqual(
      Object.values(await readTemperature(bus, "28-000000000001", { conversionMs: 0 })).slice(0, 1),
      [23.5],
    );
    assert.equal(thermo.badCrcReads, 0);
    thermo.badCrcReads = 5;
    await assert.rejects(
      readTemperature(bus, "28-000000000001", { conversionMs: 0, retries: 2 }),
      (e: W1Error) => e.code === "CRC" && /3 attempts/.test(e.message),
    );
    await assert.rejects(readTemperature(bus, "28-000000000001", { retries: -1 }), RangeError);
    await bus.close();
  });

  test("DS2431: partial rows merge with what is stored; the registers are refused", async () => {
    const { w1, master, bus } = await setup();
    const eeprom = fakeDs2431("2d-00000000cafe");
    w1.plug(master, eeprom);
    w1.plug(master, serialOnly("01-000000000002"));
    await bus.search(master);
    const text = new TextEncoder().encode("hello, 1-Wire!");
    await writeEeprom(bus, "2d-00000000cafe", 0x0d, text, { programMs: 0 });
    assert.deepEqual(eeprom.memory.subarray(0x0d, 0x0d + text.length), text);
    assert.equal(eeprom.memory[0x0c], 0xff);
    assert.equal(eeprom.memory[0x0d + text.length], 0xff);
    assert.deepEqual(await readEeprom(bus, "2d-00000000cafe", 0x0d, text.length), text);
    await assert.rejects(writeEeprom(bus, "2d-00000000cafe", 0x7c, new Uint8Array(8)), RangeError);
    await assert.rejects(readEeprom(bus, "2d-00000000cafe", 0x88, 9), RangeError);
    await bus.close();
  });
});

describe("the w1 core's bytes (captured from Linux 6.1 and 6.12 in the kernel lab)", () => {
  const exchanges = W1_GOLDEN["6.12"];
  const bytes = (hexText: string) => Uint8Array.from(hexText.match(/../g) ?? [], (b) => parseInt(b, 16));

  test("every request and reply decodes, and encodes back to the same bytes", () => {
    for (const e of exchanges) {
      for (const data of [e.request, ...e.replies.map((r) => r.data)]) {
        const decoded = decodeW1Messages(bytes(data));
        assert.deepEqual(encodeW1Messages(decoded), bytes(data), `${e.name}: ${data}`);
      }
    }
    const by = (name: string) => exchanges.find((e) => e.name === name)!;
    const [masters] = decodeW1Messages(bytes(by("list masters").replies[0].data));
    assert.deepEqual([masters.type, masters.status, [...masters.data]], [W1_MESSAGE.LIST_MASTERS, 0, [1, 0, 0, 0]]);
    const search = by("search, bundled").replies.map((r) => decodeW1Messages(bytes(r.data))[0]);
    const ids = [];
    for (let at = 0; at < search[0].commands[0].data.byteLength; at += 8) {
      ids.push(w1IdFromBytes(search[0].commands[0].data.subarray(at, at + 8)));
    }
    assert.deepEqual(ids.map((id) => [id.name, id.crcValid]), [
      ["28-000000000001", true],
      ["01-0000000000a5", true],
      ["2d-00000000cafe", true],
    ]);
    assert.deepEqual([search[1].status, search[1].commands[0].cmd, search[1].commands[0].data.byteLength], [0, 2, 0]);
    const read = by("read scratchpad from a slave, not bundled").replies.map((r) => decodeW1Messages(bytes(r.data))[0]);
    assert.deepEqual(read.map((m) => m.commands[0].cmd), [1, 0, 0], "write status, read data, read status");
    assert.equal(decodeDs18b20Scratchpad(read[1].commands[0].data).celsius, 23.5);
    assert.equal(decodeW1Messages(bytes(by("reset without presence, bundled").replies[0].data))[0].status, 255);
    const unknown = decodeW1Messages(bytes(by("unknown master").replies[0].data))[0];
    assert.deepEqual([unknown.status, unknown.commands.length, unknown.data.byteLength], [19, 0, 0]);
  });

  test("the fake core answers the same requests with the same bytes", async () => {
    const kernel = new FakeKernel();
    const w1 = kernel.enableW1();
    const master = w1.addMaster();
    w1.plug(master, fakeDs18b20("28-000000000001", { celsius: 23.5 }));
    w1.plug(master, fakeDs2431("2d-00000000cafe"));
    w1.plug(master, serialOnly("01-0000000000a5"));
    await using bus = await kernel.openW1Bus();
    await bus.search(master);
    await readTemperature(bus, "28-000000000001", { conversionMs: 0 });
    await using conn = await kernel.connect();
    for (const e of exchanges) {
      if (e.name.startsWith("reset without")) w1.setFault(master, "no-presence");
      const commands = decodeW1Messages(bytes(e.request))[0].commands.length;
      let statuses = 0;
      const replies = await conn.requestAll(
        { id: { idx: 3, val: 1 }, seq: e.seq, ack: e.ack, flags: e.flags, data: bytes(e.request) },
        {
          match: (m) => m.seq === e.seq,
          until: (m) => {
            if (m.ack !== e.ack) return commands === 0 || decodeW1Messages(m.data)[0].type === W1_MESSAGE.LIST_MASTERS;
            return decodeW1Messages(m.data)[0].commands.length === 0 || ++statuses === commands;
          },
        },
      );
      w1.setFault(master, "none");
      const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
      assert.deepEqual(
        replies.map((m) => ({ seq: m.seq, ack: m.ack, flags: m.flags, data: hex(m.data) })),
        e.replies,
        e.name,
      );
    }
  });
});
