/**
 * The 1-Wire device helpers beyond the basics, against the fake w1 core and its fake devices (no
 * kernel, no root): DS18B20 resolution, power-on value, power supply and many sensors with one
 * conversion; the DS2413, DS2408, DS2438 and DS2423; hot-plug by periodic search. The same helpers
 * against the kernel's own slave drivers are in lab/tests/w1_drivers.test.ts (Linux 6.1 and 6.12).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  fakeDs18b20,
  fakeDs2408,
  fakeDs2413,
  fakeDs2423,
  fakeDs2438,
  FakeKernel,
  type FakeW1Device,
} from "../testing.ts";
import {
  ds18b20ConversionMs,
  ds2438Humidity,
  getResolution,
  readDs2408,
  readDs2413,
  readDs2423Counters,
  readDs2438,
  readDs2438Page,
  readPowerSupply,
  readTemperature,
  readTemperatures,
  resetDs2408Activity,
  setDs2438Config,
  setDs2438Offset,
  setResolution,
  type W1Error,
  type W1SlaveChange,
  watchSlaves,
  writeDs2408,
  writeDs2408Control,
  writeDs2413,
} from "../w1.ts";

const serialOnly = (name: string): FakeW1Device => ({
  id: name,
  write: () => {},
  read: (n) => new Uint8Array(n).fill(0xff),
});

async function setup(devices: FakeW1Device[]) {
  const kernel = new FakeKernel();
  const w1 = kernel.enableW1({ slaveTtl: 1 });
  const master = w1.addMaster();
  for (const d of devices) w1.plug(master, d);
  const bus = await kernel.openW1Bus();
  return { kernel, w1, master, bus };
}

const THERMO = "28-000000000001";

describe("DS18B20 in full (fake)", () => {
  test("resolution: set, read back, persisted over a power cycle only when asked; conversion time follows", async () => {
    const thermo = fakeDs18b20(THERMO, { celsius: 23.4375 });
    const { master, bus } = await setup([thermo, serialOnly("01-000000000002")]);
    await bus.search(master);
    assert.equal(await getResolution(bus, THERMO), 12);
    await setResolution(bus, THERMO, 9);
    assert.equal(await getResolution(bus, THERMO), 9);
    const t0 = performance.now();
    const nine = await readTemperature(bus, THERMO);
    const waited = performance.now() - t0;
    assert.deepEqual([nine.celsius, nine.resolution], [23, 9], "9 bits: half degrees");
    assert.ok(waited >= ds18b20ConversionMs(9) - 5 && waited < 500, `waited ${waited.toFixed(0)} ms at 9 bits`);
    thermo.powerCycle();
    assert.equal(await getResolution(bus, THERMO), 12, "not persisted: the EEPROM still says 12");
    await setResolution(bus, THERMO, 10, { persist: true });
    thermo.powerCycle();
    assert.equal(await getResolution(bus, THERMO), 10, "persisted");
    assert.deepEqual([9, 10, 11, 12].map(ds18b20ConversionMs), [94, 188, 375, 750]);
    await assert.rejects(setResolution(bus, THERMO, 13), RangeError);
    await assert.rejects(setResolution(bus, THERMO, 9.5), RangeError);
    await assert.rejects(setResolution(bus, THERMO, 9, { persist: "yes" as unknown as boolean }), TypeError);
    await assert.rejects(setResolution(bus, THERMO, 9, { persistent: true } as never), /unknown key "persistent"/);
    await bus.close();
  });

  test("the power-on value is POWER_ON, never 85 °C; a converted 85 °C is a reading", async () => {
    const thermo = fakeDs18b20(THERMO, { celsius: 85 });
    const { master, bus } = await setup([thermo]);
    await bus.search(master);
    const err = await readTemperature(bus, THERMO, { convert: false }).then(() => null, (e) => e);
    assert.equal((err as W1Error)?.code, "POWER_ON", String(err));
    assert.match((err as W1Error).message, /power-on/);
    const real = await readTemperature(bus, THERMO, { conversionMs: 0 });
    assert.deepEqual([real.celsius, real.powerOn], [85, false]);
    thermo.powerCycle();
    const [result] = await readTemperatures(bus, master, { conversionMs: 0 });
    assert.equal(result.reading?.celsius, 85, "readTemperatures converts first");
    await bus.close();
  });

  test("READ POWER SUPPLY tells parasite from external power", async () => {
    const thermo = fakeDs18b20(THERMO);
    const { master, bus } = await setup([thermo, serialOnly("01-000000000002")]);
    await bus.search(master);
    assert.equal(await readPowerSupply(bus, THERMO), "external");
    thermo.parasite = true;
    assert.equal(await readPowerSupply(bus, THERMO), "parasite");
    await bus.close();
  });

  test("readTemperatures: N sensors in one conversion time; CRC errors retried and counted per sensor", async () => {
    const sensors = Array.from({ length: 8 }, (_, i) => fakeDs18b20(`28-0000000000${(i + 16).toString(16)}`));
    sensors.forEach((s, i) => (s.celsius = 20 + i / 16));
    const { master, bus } = await setup([...sensors, serialOnly("01-000000000002")]);
    await bus.search(master);
    sensors[3].badCrcReads = 1;
    sensors[5].badCrcReads = 9;
    const t0 = performance.now();
    const results = await readTemperatures(bus, master, { conversionMs: 100 });
    const ms = performance.now() - t0;
    assert.ok(ms >= 95 && ms < 8 * 100, `one conversion wait for 8 sensors, not 8 (${ms.toFixed(0)} ms)`);
    // Every attached thermometer, in the kernel's order; the serial number is not one.
    const byName = new Map(results.map((r) => [r.id.name, r]));
    assert.deepEqual([...byName.keys()].sort(), sensors.map((s) => s.id).sort());
    assert.deepEqual(
      sensors.map((s) => byName.get(s.id as string)!).map((r) => r.reading?.celsius ?? r.error?.code),
      sensors.map((s, i) => (i === 5 ? "CRC" : s.celsius)),
    );
    assert.equal(byName.get(sensors[3].id as string)!.reading?.attempts, 2, "one CRC error, retried");
    assert.match(byName.get(sensors[5].id as string)!.error!.message, /3 attempts/);
    const some = await readTemperatures(bus, master, { ids: [sensors[0].id as string], conversionMs: 0 });
    assert.equal(some.length, 1);
    await assert.rejects(readTemperatures(bus, master, { ids: "28-000000000010" as never }), TypeError);
    await assert.rejects(readTemperatures(bus, master, { conversionMs: -1 }), RangeError);
    await bus.close();
  });
});

describe("switches, battery monitor and counter (fake)", () => {
  test("DS2413: pins and latches read and written, a pin held low outside", async () => {
    const pio = fakeDs2413("3a-000000000001");
    const { master, bus } = await setup([pio, serialOnly("01-000000000002")]);
    await bus.search(master);
    const s0 = await readDs2413(bus, "3a-000000000001");
    assert.deepEqual([s0.pioA, s0.latchA, s0.pioB, s0.latchB, s0.attempts], [true, true, true, true, 1]);
    const s1 = await writeDs2413(bus, "3a-000000000001", 0b10);
    assert.deepEqual([s1.pioA, s1.latchA, s1.pioB, s1.latchB], [false, false, true, true]);
    assert.equal(pio.latch & 3, 0b10);
    await writeDs2413(bus, "3a-000000000001", 0b11);
    pio.input = 0b01;
    const s2 = await readDs2413(bus, "3a-000000000001");
    assert.deepEqual([s2.pioB, s2.latchB], [false, true], "held low outside, latch released");
    assert.equal(s2.raw & 0x0f, ~s2.raw >> 4 & 0x0f, "complement nibble");
    await assert.rejects(writeDs2413(bus, "3a-000000000001", 4), RangeError);
    await bus.close();
  });

  test("DS2408: registers with CRC16, output, activity and control", async () => {
    const pio = fakeDs2408("29-000000000001");
    const { master, bus } = await setup([pio, serialOnly("01-000000000002")]);
    await bus.search(master);
    const r0 = await readDs2408(bus, "29-000000000001");
    assert.deepEqual([r0.state, r0.output, r0.activity, r0.control], [0xff, 0xff, 0, 0x88]);
    assert.equal(await writeDs2408(bus, "29-000000000001", 0x0f), 0x0f);
    const r1 = await readDs2408(bus, "29-000000000001");
    assert.deepEqual([r1.state, r1.output, r1.activity], [0x0f, 0x0f, 0xf0]);
    await resetDs2408Activity(bus, "29-000000000001");
    assert.equal((await readDs2408(bus, "29-000000000001")).activity, 0);
    const c = await writeDs2408Control(bus, "29-000000000001", 0x04);
    assert.equal(c.control, 0x84, "ROS set, PORL cleared, VCCP kept");
    await assert.rejects(writeDs2408(bus, "29-000000000001", 256), RangeError);
    await bus.close();
  });

  test("DS2438: temperature, VAD, VDD, current, offset, IAD; humidity from VAD", async () => {
    const battery = fakeDs2438("26-000000000001", { celsius: 23.5, vad: 2.4, vdd: 4.98, current: -123 });
    const { master, bus } = await setup([battery, serialOnly("01-000000000002")]);
    await bus.search(master);
    const r = await readDs2438(bus, "26-000000000001");
    assert.deepEqual([r.celsius, r.vad, r.vdd, r.current], [23.5, 2.4, 4.98, -123]);
    assert.deepEqual(r.raw, { temperature: 6016, vad: 240, vdd: 498, current: -123 });
    assert.equal(r.status & 0x08, 0x08, "the AD bit is back as it was");
    const page1 = await setDs2438Offset(bus, "26-000000000001", -8);
    assert.deepEqual([page1[5], page1[6]], [0xf8, 0xff]);
    assert.equal(await setDs2438Config(bus, "26-000000000001", { iad: false }) & 1, 0);
    assert.equal((await readDs2438Page(bus, "26-000000000001", 0))[0] & 1, 0);
    assert.ok(Math.abs(ds2438Humidity({ vad: 2.4, vdd: 5, celsius: 25 }) - 51.58) < 0.01);
    assert.throws(() => ds2438Humidity({ vad: 2.4, vdd: 0, celsius: 25 }), RangeError);
    await assert.rejects(readDs2438Page(bus, "26-000000000001", 8), RangeError);
    await assert.rejects(setDs2438Config(bus, "26-000000000001", { iad: 1 as unknown as boolean }), TypeError);
    await bus.close();
  });

  test("DS2423: the four counters of pages 12..15, every page's CRC16 checked", async () => {
    const counter = fakeDs2423("1d-000000000001");
    const { master, bus } = await setup([counter, serialOnly("01-000000000002")]);
    await bus.search(master);
    counter.counters.splice(12, 4, 7, 65_536, 123_456_789, 0xfffffffe);
    counter.memory.fill(0x5a);
    const { counters, attempts } = await readDs2423Counters(bus, "1d-000000000001");
    assert.deepEqual([counters, attempts], [[7, 65_536, 123_456_789, 0xfffffffe], 1]);
    await assert.rejects(readDs2423Counters(bus, "1d-000000000001", { retries: -1 }), RangeError);
    await bus.close();
  });
});

describe("hot-plug by periodic search (fake)", () => {
  test("watchSlaves reports devices plugged in and pulled out within one interval", async () => {
    const { w1, master, bus } = await setup([serialOnly("01-000000000002")]);
    await bus.search(master);
    const stop = new AbortController();
    const changes = watchSlaves(bus, master, { intervalMs: 20, signal: stop.signal });
    const first = changes.next();
    const t0 = performance.now();
    w1.plug(master, fakeDs2413("3a-0000000000e1"));
    const added = (await first).value as W1SlaveChange;
    assert.deepEqual([added.type, added.id.name, added.master], ["slave-added", "3a-0000000000e1", master]);
    w1.unplug(master, "3a-0000000000e1");
    const removed = (await changes.next()).value as W1SlaveChange;
    assert.deepEqual([removed.type, removed.id.name], ["slave-removed", "3a-0000000000e1"]);
    assert.ok(performance.now() - t0 < 1000);
    assert.deepEqual(w1.slaves(master), ["01-000000000002"]);
    stop.abort();
    assert.equal((await changes.next()).done, true, "ends quietly when aborted");
    await assert.rejects(watchSlaves(bus, master, { intervalMs: -1 }).next(), RangeError);
    await bus.close();
  });
});
