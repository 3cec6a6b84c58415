/**
 * The DS2438 smart battery monitor (family 0x26): temperature, the two voltage inputs (VAD and
 * VDD), the current register (the voltage across the sense resistor), its memory pages, and the
 * relative humidity of the usual HIH-4000 sensor wired to VAD.
 *
 * The helpers speak through `W1_SLAVE_CMD`; each page read is RECALL MEMORY then READ SCRATCHPAD
 * with the CRC8 checked (retried, counted), as the kernel's `w1_ds2438` driver does. Verified
 * against that driver's sysfs files (`temperature`, `vad`, `vdd`, `iad`, `page0`, `page1`,
 * `offset`) on Debian's 6.1 and 6.12 in the kernel lab.
 *
 * @module
 */
import { crc8, DS2438_COMMAND as DS2438, type W1Id } from "../codec/w1.ts";
import type { W1Bus } from "./bus.ts";
import { W1Error } from "./bus.ts";
import type { W1RequestOptions } from "./types.ts";
import { checkRetries, nameOf, optionsOf, sleep } from "./util.ts";

/** Options of the DS2438 helpers. */
export interface Ds2438Options extends W1RequestOptions {
  /** Page reads to try again after a CRC error; default 2. */
  retries?: number;
}

/** The longest DS2438 conversion (temperature or voltage), ms. */
const CONVERSION_MS = 10;
/** Status/configuration register bits (page 0, byte 0). */
const IAD = 0x01;
const CA = 0x02;
const EE = 0x04;
const AD = 0x08;

function checkPage(page: number): number {
  if (!Number.isInteger(page) || page < 0 || page > 7) throw new RangeError(`a DS2438 page is 0..7, got ${page}`);
  return page;
}

/**
 * Reads one 8-byte page of a DS2438 (RECALL MEMORY, then READ SCRATCHPAD with its CRC8 checked).
 * Page 0 holds the status, temperature, voltage and current registers and the threshold; page 1
 * the elapsed time meter, ICA and the offset register.
 *
 * @throws {RangeError} not a page 0..7
 * @throws {W1Error} `CRC` when every read failed its CRC8
 *
 * @example
 * ```ts ignore
 * import { readDs2438Page, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * console.log(await readDs2438Page(bus, "26-000000000001", 0));
 * ```
 */
export async function readDs2438Page(
  bus: W1Bus,
  slave: W1Id | string,
  page: number,
  options?: Ds2438Options,
): Promise<Uint8Array> {
  const { request } = optionsOf("readDs2438Page options", options, ["retries"]);
  checkPage(page);
  const retries = checkRetries(options?.retries);
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    await bus.write({ slave }, [DS2438.RECALL_MEMORY, page], request);
    const [, read] = await bus.transaction(
      { slave },
      [{ op: "write", data: [DS2438.READ_SCRATCHPAD, page] }, { op: "read", length: 9 }],
      request,
    );
    if (crc8(read.data.subarray(0, 8)) === read.data[8]) return read.data.slice(0, 8);
  }
  throw new W1Error(`read page ${page} of ${nameOf(slave)}`, "READ SCRATCHPAD", "CRC", {
    hint: `${retries + 1} attempts failed their CRC8`,
  });
}

/**
 * Writes bytes to a DS2438 page from its first byte (WRITE SCRATCHPAD, then COPY SCRATCHPAD). The
 * device keeps only its writable bytes (page 0: the low four status bits and the threshold; page 1:
 * ICA and the offset; pages 2..7: all).
 *
 * @throws {RangeError} not a page 0..7, or not 1..8 bytes
 *
 * @example
 * ```ts ignore
 * import { W1Bus, writeDs2438Page } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * await writeDs2438Page(bus, "26-000000000001", 3, new TextEncoder().encode("cnlink"));
 * ```
 */
export async function writeDs2438Page(
  bus: W1Bus,
  slave: W1Id | string,
  page: number,
  data: Uint8Array,
  options?: W1RequestOptions,
): Promise<void> {
  const { request } = optionsOf("writeDs2438Page options", options);
  checkPage(page);
  if (!(data instanceof Uint8Array) || data.byteLength < 1 || data.byteLength > 8) {
    throw new RangeError("a DS2438 page write takes a Uint8Array of 1..8 bytes");
  }
  await bus.write({ slave }, [DS2438.WRITE_SCRATCHPAD, page, ...data], request);
  await bus.write({ slave }, [DS2438.COPY_SCRATCHPAD, page], request);
  await sleep(CONVERSION_MS, options?.signal); // EEPROM pages: tEEPROM
}

/** What {@linkcode readDs2438} measured. */
export interface Ds2438Reading {
  /** Degrees Celsius (13 bits: a multiple of 1/32). */
  celsius: number;
  /** Volts on VAD (10 mV steps). */
  vad: number;
  /** Volts on VDD (10 mV steps). */
  vdd: number;
  /**
   * The current register: the voltage across the sense resistor in units of 0.2441 mV (1/4096 V),
   * signed; the current in amperes is `current / (4096 * Rsens)`. Updated by the device while the
   * status IAD bit is set (the power-on default).
   */
  current: number;
  /** The registers as the kernel's sysfs files show them: temperature (signed, 1/256 °C), vad and vdd (10 mV), current. */
  raw: { temperature: number; vad: number; vdd: number; current: number };
  /** The status/configuration register after the reading (the AD bit restored). */
  status: number;
}

async function setStatusBits(
  bus: W1Bus,
  slave: W1Id | string,
  mask: number,
  value: number,
  options?: Ds2438Options,
): Promise<number> {
  const request = { timeoutMs: options?.timeoutMs, signal: options?.signal };
  const page0 = await readDs2438Page(bus, slave, 0, options);
  const status = (page0[0] & ~mask) | (value & mask);
  if (status !== page0[0]) {
    await bus.write({ slave }, [DS2438.WRITE_SCRATCHPAD, 0, status & 0x0f], request);
    await bus.write({ slave }, [DS2438.COPY_SCRATCHPAD, 0], request);
  }
  return page0[0];
}

async function convertVoltage(
  bus: W1Bus,
  slave: W1Id | string,
  input: "vad" | "vdd",
  options?: Ds2438Options,
): Promise<Uint8Array> {
  const request = { timeoutMs: options?.timeoutMs, signal: options?.signal };
  await setStatusBits(bus, slave, AD, input === "vdd" ? AD : 0, options);
  await bus.write({ slave }, [DS2438.CONVERT_V], request);
  await sleep(CONVERSION_MS, options?.signal);
  return readDs2438Page(bus, slave, 0, options);
}

/**
 * Measures a DS2438: CONVERT T, CONVERT V on VAD then on VDD (switching the AD bit and putting it
 * back), and the current register, each from a CRC-checked page 0.
 *
 * @throws {W1Error} `CRC` when a page failed every read
 *
 * @example Battery voltage and a humidity sensor on VAD
 * ```ts ignore
 * import { ds2438Humidity, readDs2438, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * const r = await readDs2438(bus, "26-000000000001");
 * console.log(r.celsius, r.vdd, ds2438Humidity(r));
 * ```
 */
export async function readDs2438(bus: W1Bus, slave: W1Id | string, options?: Ds2438Options): Promise<Ds2438Reading> {
  const { request } = optionsOf("readDs2438 options", options, ["retries"]);
  await bus.write({ slave }, [DS2438.CONVERT_T], request);
  await sleep(CONVERSION_MS, options?.signal);
  const original = (await readDs2438Page(bus, slave, 0, options))[0];
  const onVad = await convertVoltage(bus, slave, "vad", options);
  const onVdd = await convertVoltage(bus, slave, "vdd", options);
  if ((original & AD) !== AD) await setStatusBits(bus, slave, AD, original, options);
  const view = new DataView(onVdd.buffer, onVdd.byteOffset, 8);
  const temperature = view.getInt16(1, true);
  const vad = (onVad[3] | (onVad[4] << 8)) & 0x3ff;
  const vdd = view.getUint16(3, true) & 0x3ff;
  const current = view.getInt16(5, true);
  return {
    celsius: (temperature >> 3) / 32,
    vad: vad / 100,
    vdd: vdd / 100,
    current,
    raw: { temperature, vad, vdd, current },
    status: (original & AD) | (onVdd[0] & ~AD),
  };
}

/**
 * Sets the DS2438 status/configuration bits (page 0, byte 0): IAD (the current A/D runs), CA (the
 * current accumulators), EE (their EEPROM shadow), AD (CONVERT V measures VDD instead of VAD).
 * Returns the register read back.
 *
 * @throws {W1Error} `VERIFY` when the register reads back otherwise
 *
 * @example Stop the current measurement
 * ```ts ignore
 * import { setDs2438Config, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * await setDs2438Config(bus, "26-000000000001", { iad: false });
 * ```
 */
export async function setDs2438Config(
  bus: W1Bus,
  slave: W1Id | string,
  bits: { iad?: boolean; ca?: boolean; ee?: boolean; ad?: boolean },
  options?: Ds2438Options,
): Promise<number> {
  optionsOf("setDs2438Config options", options, ["retries"]);
  if (typeof bits !== "object" || bits === null) throw new TypeError("bits is { iad?, ca?, ee?, ad? }");
  let mask = 0;
  let value = 0;
  for (const [name, bit] of [["iad", IAD], ["ca", CA], ["ee", EE], ["ad", AD]] as const) {
    const v = bits[name];
    if (v === undefined) continue;
    if (typeof v !== "boolean") throw new TypeError(`${name} must be a boolean, got ${v}`);
    mask |= bit;
    if (v) value |= bit;
  }
  await setStatusBits(bus, slave, mask, value, options);
  const status = (await readDs2438Page(bus, slave, 0, options))[0];
  if ((status & mask) !== value) {
    throw new W1Error(`configure ${nameOf(slave)}`, "COPY SCRATCHPAD", "VERIFY", {
      hint: `the status register reads back 0x${status.toString(16)}`,
    });
  }
  return status;
}

/**
 * Writes the DS2438 offset register (page 1, bytes 5..6: what the device subtracts from the current
 * measurement), keeping the rest of page 1, and returns page 1 read back.
 *
 * @throws {RangeError} not a signed 16-bit value
 *
 * @example
 * ```ts ignore
 * import { setDs2438Offset, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * await setDs2438Offset(bus, "26-000000000001", -8);
 * ```
 */
export async function setDs2438Offset(
  bus: W1Bus,
  slave: W1Id | string,
  offset: number,
  options?: Ds2438Options,
): Promise<Uint8Array> {
  const { request } = optionsOf("setDs2438Offset options", options, ["retries"]);
  if (!Number.isInteger(offset) || offset < -32768 || offset > 32767) {
    throw new RangeError(`the DS2438 offset register is a signed 16-bit value, got ${offset}`);
  }
  const page1 = await readDs2438Page(bus, slave, 1, options);
  const data = page1.slice(0, 7);
  data[5] = offset & 0xff;
  data[6] = (offset >> 8) & 0xff;
  await writeDs2438Page(bus, slave, 1, data, request);
  return readDs2438Page(bus, slave, 1, options);
}

/**
 * Relative humidity (%) of a Honeywell HIH-4000-style sensor on a DS2438's VAD input, powered from
 * its VDD: `(VAD / VDD - 0.16) / 0.0062`, compensated for temperature by `1.0546 - 0.00216 T`
 * (the sensor's datasheet). Not clamped: a value outside 0..100 says the wiring or the sensor is
 * off.
 *
 * @example
 * ```ts
 * import { ds2438Humidity } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(Math.round(ds2438Humidity({ vad: 2.4, vdd: 5, celsius: 25 })), 52);
 * ```
 */
export function ds2438Humidity(reading: Pick<Ds2438Reading, "vad" | "vdd" | "celsius">): number {
  const { vad, vdd, celsius } = reading ?? {};
  if (![vad, vdd, celsius].every((v) => typeof v === "number" && Number.isFinite(v)) || vdd <= 0) {
    throw new RangeError("ds2438Humidity needs finite vad, vdd (> 0) and celsius");
  }
  return (vad / vdd - 0.16) / 0.0062 / (1.0546 - 0.00216 * celsius);
}
