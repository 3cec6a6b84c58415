/**
 * Device helpers on top of `W1Bus`, small examples of the API: the DS18B20 thermometer and the
 * DS2431 EEPROM. Both speak through `W1_SLAVE_CMD`, so the kernel resets the bus and selects the
 * device before each step.
 *
 * @module
 */
import { crc16, crc8, type W1Id } from "../codec/w1.ts";
import type { W1Bus } from "./bus.ts";
import { checkW1RequestOptions, W1Error } from "./bus.ts";
import { checkDuration, checkType } from "../args.ts";
import type { W1RequestOptions } from "./types.ts";

/** Family codes of the devices this module knows, and a few common others. */
export const W1_FAMILY: Readonly<Record<string, number>> = {
  /** DS2401 / DS1990A silicon serial number. */
  DS2401: 0x01,
  /** DS18S20 thermometer. */
  DS18S20: 0x10,
  /** DS2438 battery monitor. */
  DS2438: 0x26,
  /** DS18B20 thermometer. */
  DS18B20: 0x28,
  /** DS2431 1024-bit EEPROM. */
  DS2431: 0x2d,
  /** DS28EA00 thermometer. */
  DS28EA00: 0x42,
};

const FAMILY_NAMES = new Map(Object.entries(W1_FAMILY).map(([name, code]) => [code, name]));

/**
 * The usual device name of a family code, e.g. `"DS18B20"` for 0x28, or `undefined`.
 *
 * @example
 * ```ts
 * import { familyName, parseW1Id } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(familyName(parseW1Id("28-0123456789ab").family), "DS18B20");
 * ```
 */
export function familyName(family: number): string | undefined {
  return FAMILY_NAMES.get(family);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return signal?.aborted ? Promise.reject(signal.reason) : Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function checkRetries(retries: number | undefined): number {
  const n = retries ?? 2;
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`retries must be a non-negative integer, got ${retries}`);
  return n;
}

/** A DS18B20 reading, decoded from its scratchpad. */
export interface Ds18b20Reading {
  /** Degrees Celsius, exactly as the device reports it (a multiple of 1/16 at 12 bits). */
  celsius: number;
  /** The temperature register (signed sixteenths of a degree). */
  raw: number;
  /** Bits of resolution, 9..12 (from the configuration register). */
  resolution: number;
  /** The high alarm limit, whole degrees. */
  th: number;
  /** The low alarm limit, whole degrees. */
  tl: number;
  /** The 9 scratchpad bytes as read (the last is the CRC8). */
  scratchpad: Uint8Array;
  /** How many reads it took (1 without a CRC error). */
  attempts: number;
}

/** Options of {@linkcode readTemperature}. */
export interface ReadTemperatureOptions extends W1RequestOptions {
  /**
   * Start a conversion first (CONVERT T) and wait `conversionMs`; default true. Pass false after
   * {@linkcode convertAll} started every thermometer of a bus at once.
   */
  convert?: boolean;
  /** How long a conversion takes; default 750 ms (12 bits; 94 ms at 9 bits). */
  conversionMs?: number;
  /** Reads of the scratchpad to try again after a CRC error; default 2. */
  retries?: number;
}

/**
 * Decodes a DS18B20 scratchpad (9 bytes), checking its CRC8.
 *
 * @throws {W1Error} `CRC` when the CRC does not match
 * @throws {RangeError} not 9 bytes
 *
 * @example The power-on value, +85 °C
 * ```ts
 * import { crc8, decodeDs18b20Scratchpad } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const pad = new Uint8Array([0x50, 0x05, 75, 70, 0x7f, 0xff, 0x0c, 0x10, 0]);
 * pad[8] = crc8(pad.subarray(0, 8));
 * assert.equal(decodeDs18b20Scratchpad(pad).celsius, 85);
 * ```
 */
export function decodeDs18b20Scratchpad(scratchpad: Uint8Array): Omit<Ds18b20Reading, "attempts"> {
  if (scratchpad.byteLength !== 9) {
    throw new RangeError(`a DS18B20 scratchpad is 9 bytes, got ${scratchpad.byteLength}`);
  }
  const crc = crc8(scratchpad.subarray(0, 8));
  if (crc !== scratchpad[8]) {
    throw new W1Error("read a DS18B20 scratchpad", "READ SCRATCHPAD", "CRC", {
      hint: `CRC8 ${hex(crc)} computed, ${hex(scratchpad[8])} received`,
    });
  }
  const resolution = ((scratchpad[4] >> 5) & 3) + 9;
  const view = new DataView(scratchpad.buffer, scratchpad.byteOffset, 9);
  // The low bits below the resolution are undefined.
  const raw = view.getInt16(0, true) & ~((1 << (12 - resolution)) - 1);
  return {
    celsius: raw / 16,
    raw,
    resolution,
    th: view.getInt8(2),
    tl: view.getInt8(3),
    scratchpad: scratchpad.slice(),
  };
}

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

/**
 * Starts a temperature conversion on every thermometer of a bus at once (SKIP ROM, CONVERT T). Wait
 * the conversion time, then read each with `convert: false`.
 *
 * @throws {W1Error} `NO_PRESENCE` when no device is on the bus
 */
export async function convertAll(bus: W1Bus, master: number, options?: W1RequestOptions): Promise<void> {
  const request = checkW1RequestOptions("convertAll options", options);
  await bus.transaction({ master }, [{ op: "reset" }, { op: "write", data: [0xcc, 0x44] }], request);
}

/**
 * Reads a DS18B20 (family 0x28): CONVERT T, the conversion time, then READ SCRATCHPAD with its CRC8
 * checked; a CRC error is read again up to `retries` times. For externally powered devices (a
 * parasite-powered one needs the kernel's strong pull-up, which the netlink interface cannot ask for).
 *
 * @throws {W1Error} `CRC` after every attempt failed its CRC; `ENODEV` when the device is not attached
 *   or does not answer
 *
 * @example
 * ```ts ignore
 * import { readTemperature, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * const reading = await readTemperature(bus, "28-0123456789ab");
 * console.log(`${reading.celsius} °C`);
 * ```
 */
export async function readTemperature(
  bus: W1Bus,
  slave: W1Id | string,
  options?: ReadTemperatureOptions,
): Promise<Ds18b20Reading> {
  checkW1RequestOptions("readTemperature options", options, ["convert", "conversionMs", "retries"]);
  const retries = checkRetries(options?.retries);
  const conversionMs = checkDuration(options?.conversionMs, "conversionMs") ?? 750;
  checkType(options?.convert, "convert", "boolean");
  const request = { timeoutMs: options?.timeoutMs, signal: options?.signal };
  if (options?.convert ?? true) {
    await bus.write({ slave }, [0x44], request);
    await sleep(conversionMs, options?.signal);
  }
  let last: unknown;
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    const [, read] = await bus.transaction(
      { slave },
      [{ op: "write", data: [0xbe] }, { op: "read", length: 9 }],
      request,
    );
    try {
      return { ...decodeDs18b20Scratchpad(read.data), attempts: attempt };
    } catch (err) {
      if (!(err instanceof W1Error)) throw err;
      last = err;
    }
  }
  const name = typeof slave === "string" ? slave : slave.name;
  const cause = last as W1Error;
  throw new W1Error(`read the temperature of ${name}`, "READ SCRATCHPAD", "CRC", {
    hint: `${retries + 1} attempts, the last: ${cause.message.replace(/^.*; /, "")}`,
  });
}

/** DS2431 memory: 128 bytes of data in 16 rows of 8, then 16 bytes of registers (0x80..0x8f). */
const DS2431_DATA = 0x80;
const DS2431_MEMORY = 0x90;
const ROW = 8;

/**
 * Reads DS2431 memory (READ MEMORY, F0h): `length` bytes from `address` (0..0x8f, registers
 * included).
 *
 * @throws {RangeError} outside 0..0x8f
 */
export async function readEeprom(
  bus: W1Bus,
  slave: W1Id | string,
  address: number,
  length: number,
  options?: W1RequestOptions,
): Promise<Uint8Array> {
  if (
    !Number.isInteger(address) || !Number.isInteger(length) || address < 0 || length < 1 ||
    address + length > DS2431_MEMORY
  ) {
    throw new RangeError(`a DS2431 read must stay within 0x00..0x8f, got ${length} bytes at ${address}`);
  }
  checkW1RequestOptions("readEeprom options", options);
  const [, read] = await bus.transaction({ slave }, [
    { op: "write", data: [0xf0, address & 0xff, address >> 8] },
    { op: "read", length },
  ], options);
  return read.data;
}

/** Options of {@linkcode writeEeprom}. */
export interface WriteEepromOptions extends W1RequestOptions {
  /** Attempts per row after a CRC or verify error; default 2. */
  retries?: number;
  /** Programming time after COPY SCRATCHPAD; default 12 ms (the datasheet's tPROG is 10 ms). */
  programMs?: number;
}

/**
 * Writes DS2431 data memory (0x00..0x7f) row by row: WRITE SCRATCHPAD (with its inverted CRC16
 * checked), READ SCRATCHPAD (address, E/S and data verified), COPY SCRATCHPAD, the programming
 * time, then READ MEMORY to verify. Partial rows are read first and merged. The registers
 * (0x80..0x8f, where a write can lock memory for good) are refused.
 *
 * @throws {RangeError} outside 0x00..0x7f
 * @throws {W1Error} `CRC` or `VERIFY` after every attempt of a row failed
 *
 * @example
 * ```ts ignore
 * import { readEeprom, W1Bus, writeEeprom } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * await writeEeprom(bus, "2d-00000000cafe", 0x10, new TextEncoder().encode("hello"));
 * console.log(new TextDecoder().decode(await readEeprom(bus, "2d-00000000cafe", 0x10, 5)));
 * ```
 */
export async function writeEeprom(
  bus: W1Bus,
  slave: W1Id | string,
  address: number,
  data: Uint8Array,
  options?: WriteEepromOptions,
): Promise<void> {
  if (!(data instanceof Uint8Array)) throw new TypeError("data must be a Uint8Array");
  if (!Number.isInteger(address) || address < 0 || data.byteLength === 0 || address + data.byteLength > DS2431_DATA) {
    throw new RangeError(
      `a DS2431 write must stay within data memory 0x00..0x7f (the registers are refused), got ${data.byteLength} bytes at ${address}`,
    );
  }
  checkW1RequestOptions("writeEeprom options", options, ["retries", "programMs"]);
  const retries = checkRetries(options?.retries);
  const programMs = checkDuration(options?.programMs, "programMs") ?? 12;
  const request = { timeoutMs: options?.timeoutMs, signal: options?.signal };
  const first = address - (address % ROW);
  for (let row = first; row < address + data.byteLength; row += ROW) {
    const from = Math.max(address, row);
    const to = Math.min(address + data.byteLength, row + ROW);
    let bytes: Uint8Array;
    if (from === row && to === row + ROW) bytes = data.slice(from - address, to - address);
    else {
      bytes = await readEeprom(bus, slave, row, ROW, request);
      bytes.set(data.subarray(from - address, to - address), from - row);
    }
    let last: W1Error | undefined;
    for (let attempt = 0; attempt <= retries; attempt++) {
      last = await writeRow(bus, slave, row, bytes, programMs, request, options?.signal);
      if (!last) break;
    }
    if (last) throw last;
  }
}

/** One row: returns a W1Error to retry, or undefined when written and verified. */
async function writeRow(
  bus: W1Bus,
  slave: W1Id | string,
  row: number,
  bytes: Uint8Array,
  programMs: number,
  request: W1RequestOptions,
  signal: AbortSignal | undefined,
): Promise<W1Error | undefined> {
  const name = typeof slave === "string" ? slave : slave.name;
  const what = `write row 0x${row.toString(16).padStart(2, "0")} of ${name}`;
  const ta1 = row & 0xff;
  const ta2 = row >> 8;
  const command = Uint8Array.from([0x0f, ta1, ta2, ...bytes]);
  const [, crcRead] = await bus.transaction(
    { slave },
    [{ op: "write", data: command }, { op: "read", length: 2 }],
    request,
  );
  if (!invertedCrcMatches(command, crcRead.data)) {
    return new W1Error(what, "WRITE SCRATCHPAD", "CRC", { hint: "the device's CRC16 of what it received differs" });
  }
  const [, pad] = await bus.transaction(
    { slave },
    [{ op: "write", data: [0xaa] }, { op: "read", length: 13 }],
    request,
  );
  const echo = pad.data;
  if (!invertedCrcMatches(Uint8Array.from([0xaa, ...echo.subarray(0, 11)]), echo.subarray(11, 13))) {
    return new W1Error(what, "READ SCRATCHPAD", "CRC", { hint: "the scratchpad read back failed its CRC16" });
  }
  const es = echo[2];
  if (echo[0] !== ta1 || echo[1] !== ta2 || (es & 0x07) !== 7 || !equal(echo.subarray(3, 11), bytes)) {
    return new W1Error(what, "READ SCRATCHPAD", "VERIFY", { hint: "the scratchpad holds other data or address" });
  }
  await bus.write({ slave }, [0x55, ta1, ta2, es], request);
  await sleep(programMs, signal);
  const stored = await readEeprom(bus, slave, row, ROW, request);
  if (!equal(stored, bytes)) {
    return new W1Error(what, "COPY SCRATCHPAD", "VERIFY", {
      hint: "memory read back differs (a write-protected row?)",
    });
  }
  return undefined;
}

function invertedCrcMatches(bytes: Uint8Array, crc: Uint8Array): boolean {
  const expected = ~crc16(bytes) & 0xffff;
  return crc.byteLength === 2 && (crc[0] | (crc[1] << 8)) === expected;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}
