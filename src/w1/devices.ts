/**
 * Device helpers on top of `W1Bus`: the DS18B20 thermometer (reading, resolution, power supply,
 * the power-on value, many sensors with one conversion) and the DS2431 EEPROM. They speak through
 * `W1_SLAVE_CMD`, so the kernel resets the bus and selects the device before each step.
 *
 * Parasite power: a parasite-powered DS18B20 draws its conversion (and EEPROM copy) current from
 * the data line and needs the master's strong pull-up right after the CONVERT T or COPY
 * SCRATCHPAD byte. The kernel's netlink interface has no way to ask for one (the w1 core arms it
 * only for its own slave drivers, through `w1_next_pullup()`), so over netlink such a device may
 * read its power-on value (+85 °C, reported here as `POWER_ON`) or a stale temperature. Detect it
 * with {@linkcode readPowerSupply}, then power the device from VDD, use a bus master with an
 * active pull-up that holds the line high between slots, or read it through the kernel's
 * `w1_therm` driver in sysfs, which arms the strong pull-up itself.
 *
 * @module
 */
import {
  crc8,
  DS18B20_COMMAND as DS18B20,
  DS2431_COMMAND as DS2431,
  parseW1Id,
  W1_ROM_COMMAND,
  type W1Id,
  w1IdFromBytes,
} from "../codec/w1.ts";
import type { W1Bus } from "./bus.ts";
import { checkW1RequestOptions, W1Error } from "./bus.ts";
import { checkDuration, checkType } from "../args.ts";
import type { W1RequestOptions } from "./types.ts";
import { checkRetries, equal, hex, invertedCrcMatches, nameOf, optionsOf, sleep } from "./util.ts";

/** Family codes of the devices this module knows, and a few common others. */
export const W1_FAMILY: Readonly<Record<string, number>> = {
  /** DS2401 / DS1990A silicon serial number. */
  DS2401: 0x01,
  /** DS18S20 thermometer. */
  DS18S20: 0x10,
  /** DS2423 4 kbit RAM with four counters. */
  DS2423: 0x1d,
  /** DS2438 battery monitor. */
  DS2438: 0x26,
  /** DS18B20 thermometer. */
  DS18B20: 0x28,
  /** DS2408 8-channel switch. */
  DS2408: 0x29,
  /** DS2431 1024-bit EEPROM. */
  DS2431: 0x2d,
  /** DS2413 dual-channel switch. */
  DS2413: 0x3a,
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
  /**
   * The scratchpad still holds the power-on value: +85 °C (`50h 05h`) with byte 6 at `0Ch`. A
   * conversion sets byte 6 to `10h` minus the low nibble of the register (`10h` for a real 85 °C),
   * so this tells "no conversion happened since power-up" (a brown-out, a parasite-powered device
   * without its strong pull-up) from a real 85 °C. The kernel's `w1_therm` makes the same check.
   * `readTemperature` never returns such a reading: it throws `POWER_ON`.
   */
  powerOn: boolean;
  /** The 9 scratchpad bytes as read (the last is the CRC8). */
  scratchpad: Uint8Array;
  /** How many reads it took (1 without a CRC error): `attempts - 1` CRC errors were retried. */
  attempts: number;
}

/** Options of {@linkcode readTemperature}. */
export interface ReadTemperatureOptions extends W1RequestOptions {
  /**
   * Start a conversion first (CONVERT T) and wait `conversionMs`; default true. Pass false after
   * {@linkcode convertAll} started every thermometer of a bus at once.
   */
  convert?: boolean;
  /**
   * How long a conversion takes; default: the datasheet's time for the device's resolution
   * ({@linkcode ds18b20ConversionMs}: 94 ms at 9 bits ... 750 ms at 12), read from its scratchpad
   * the first time this bus client meets it, then remembered (and updated by every read).
   */
  conversionMs?: number;
  /** Reads of the scratchpad to try again after a CRC error; default 2. */
  retries?: number;
}

/** The DS18B20's maximum conversion time per resolution (datasheet tCONV: 93.75 ms at 9 bits, doubling per bit). */
const CONVERSION_MS: Record<number, number> = { 9: 94, 10: 188, 11: 375, 12: 750 };

/**
 * How long a DS18B20 conversion takes at a resolution: 94, 188, 375 or 750 ms (the datasheet's
 * tCONV, rounded up).
 *
 * @throws {RangeError} not 9..12
 *
 * @example
 * ```ts
 * import { ds18b20ConversionMs } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([9, 10, 11, 12].map(ds18b20ConversionMs), [94, 188, 375, 750]);
 * ```
 */
export function ds18b20ConversionMs(resolution: number): number {
  const ms = CONVERSION_MS[resolution];
  if (ms === undefined) throw new RangeError(`a DS18B20 resolution is 9..12 bits, got ${resolution}`);
  return ms;
}

/**
 * Decodes a DS18B20 scratchpad (9 bytes), checking its CRC8.
 *
 * @throws {W1Error} `CRC` when the CRC does not match
 * @throws {RangeError} not 9 bytes
 *
 * @example The power-on value, +85 °C, is flagged
 * ```ts
 * import { crc8, decodeDs18b20Scratchpad } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const pad = new Uint8Array([0x50, 0x05, 75, 70, 0x7f, 0xff, 0x0c, 0x10, 0]);
 * pad[8] = crc8(pad.subarray(0, 8));
 * const reading = decodeDs18b20Scratchpad(pad);
 * assert.deepEqual([reading.celsius, reading.powerOn], [85, true]);
 * ```
 */
export function decodeDs18b20Scratchpad(scratchpad: Uint8Array): Omit<Ds18b20Reading, "attempts"> {
  if (!(scratchpad instanceof Uint8Array)) throw new TypeError("a DS18B20 scratchpad is a Uint8Array");
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
    powerOn: scratchpad[0] === 0x50 && scratchpad[1] === 0x05 && scratchpad[6] === 0x0c,
    scratchpad: scratchpad.slice(),
  };
}

/** Resolutions seen per bus client and device, so the conversion time can follow them. */
const resolutions = new WeakMap<W1Bus, Map<string, number>>();

function remember(bus: W1Bus, slave: W1Id | string, resolution: number): void {
  let known = resolutions.get(bus);
  if (!known) resolutions.set(bus, known = new Map());
  known.set(idName(slave), resolution);
}

function known(bus: W1Bus, slave: W1Id | string): number | undefined {
  return resolutions.get(bus)?.get(idName(slave));
}

function idName(slave: W1Id | string): string {
  return typeof slave === "string" ? slave.toLowerCase() : slave.name;
}

/**
 * Starts a temperature conversion on every thermometer of a bus at once (SKIP ROM, CONVERT T). Wait
 * the conversion time, then read each with `convert: false` ({@linkcode readTemperatures} does it
 * all).
 *
 * @throws {W1Error} `NO_PRESENCE` when no device is on the bus
 *
 * @example
 * ```ts ignore
 * import { convertAll, readTemperature, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * await convertAll(bus, 1);
 * await new Promise((r) => setTimeout(r, 750));
 * console.log((await readTemperature(bus, "28-000000000001", { convert: false })).celsius);
 * ```
 */
export async function convertAll(bus: W1Bus, master: number, options?: W1RequestOptions): Promise<void> {
  const request = checkW1RequestOptions("convertAll options", options);
  await bus.transaction({ master }, [{ op: "reset" }, {
    op: "write",
    data: [W1_ROM_COMMAND.SKIP_ROM, DS18B20.CONVERT_T],
  }], request);
}

/** READ SCRATCHPAD with its CRC checked, retried `retries` times; remembers the resolution. */
async function readScratchpad(
  bus: W1Bus,
  slave: W1Id | string,
  retries: number,
  request: W1RequestOptions,
): Promise<Ds18b20Reading> {
  let last: W1Error | undefined;
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    const [, read] = await bus.transaction(
      { slave },
      [{ op: "write", data: [DS18B20.READ_SCRATCHPAD] }, { op: "read", length: 9 }],
      request,
    );
    try {
      const reading = { ...decodeDs18b20Scratchpad(read.data), attempts: attempt };
      remember(bus, slave, reading.resolution);
      return reading;
    } catch (err) {
      if (!(err instanceof W1Error)) throw err;
      last = err;
    }
  }
  throw new W1Error(`read the scratchpad of ${nameOf(slave)}`, "READ SCRATCHPAD", "CRC", {
    hint: `${retries + 1} attempts, the last: ${last!.message.replace(/^.*; /, "")}`,
  });
}

/**
 * Reads a DS18B20 (family 0x28): CONVERT T, the conversion time of its resolution, then READ
 * SCRATCHPAD with its CRC8 checked; a CRC error is read again up to `retries` times (the reading
 * says how many attempts it took). A scratchpad still holding the power-on value is an error, not
 * a reading of 85 °C. For externally powered devices: see the module notes on parasite power.
 *
 * @throws {W1Error} `CRC` after every attempt failed its CRC; `POWER_ON` when the device holds its
 *   power-on value (no conversion completed); `ENODEV` when the device is not attached or does not
 *   answer
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
  const { request } = optionsOf("readTemperature options", options, ["convert", "conversionMs", "retries"]);
  const retries = checkRetries(options?.retries);
  const conversionMs = checkDuration(options?.conversionMs, "conversionMs");
  checkType(options?.convert, "convert", "boolean");
  if (options?.convert ?? true) {
    let wait = conversionMs;
    if (wait === undefined) {
      const resolution = known(bus, slave) ?? (await readScratchpad(bus, slave, retries, request)).resolution;
      wait = ds18b20ConversionMs(resolution);
    }
    await bus.write({ slave }, [DS18B20.CONVERT_T], request);
    await sleep(wait, options?.signal);
  }
  const reading = await readScratchpad(bus, slave, retries, request);
  if (reading.powerOn) throw powerOnError(slave);
  return reading;
}

function powerOnError(slave: W1Id | string): W1Error {
  return new W1Error(`read the temperature of ${nameOf(slave)}`, "CONVERT T", "POWER_ON", {
    hint: "+85 °C with the power-on signature: no conversion completed (power lost, a parasite-powered " +
      "device without strong pull-up, or a read before any conversion)",
  });
}

/** One thermometer's outcome in {@linkcode readTemperatures}. */
export type Ds18b20Result =
  | { id: W1Id; reading: Ds18b20Reading; error?: undefined }
  | { id: W1Id; reading?: undefined; error: W1Error };

/** Options of {@linkcode readTemperatures}. */
export interface ReadTemperaturesOptions extends W1RequestOptions {
  /**
   * The thermometers to read; default every DS18B20-compatible slave the kernel has attached on the
   * master (families 0x28, 0x22, 0x3B, 0x42; search first to attach new ones).
   */
  ids?: readonly (W1Id | string)[];
  /**
   * How long to wait after the one CONVERT T; default the longest conversion time among the
   * resolutions this client has seen for them (750 ms for one it has not read yet).
   */
  conversionMs?: number;
  /** Reads to try again per thermometer after a CRC error; default 2. */
  retries?: number;
}

const THERMOMETERS = new Set([0x28, 0x22, 0x3b, 0x42]);

/**
 * Reads many DS18B20s with one conversion: SKIP ROM + CONVERT T for the whole bus, one conversion
 * time, then each scratchpad (CRC-checked, retried). N sensors cost one conversion time plus N
 * short reads instead of N conversion times. A thermometer that fails (CRC after every retry, the
 * power-on value, gone) gets its `error`; the others their `reading`, in the order asked.
 *
 * @throws {W1Error} the conversion could not be started (`NO_PRESENCE`: nobody on the bus)
 *
 * @example
 * ```ts ignore
 * import { readTemperatures, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * await bus.search(1);
 * for (const r of await readTemperatures(bus, 1)) console.log(r.id.name, r.reading?.celsius ?? r.error.message);
 * ```
 */
export async function readTemperatures(
  bus: W1Bus,
  master: number,
  options?: ReadTemperaturesOptions,
): Promise<Ds18b20Result[]> {
  const { request } = optionsOf("readTemperatures options", options, ["ids", "conversionMs", "retries"]);
  const retries = checkRetries(options?.retries);
  checkDuration(options?.conversionMs, "conversionMs");
  if (options?.ids !== undefined && !Array.isArray(options.ids)) {
    throw new TypeError("ids must be an array of 1-Wire ids");
  }
  const ids = options?.ids
    ? options.ids.map((id) => (typeof id === "string" ? parseW1Id(id) : w1IdFromBytes(id.bytes)))
    : (await bus.listSlaves(master, request)).filter((id) => THERMOMETERS.has(id.family));
  if (ids.length === 0) return [];
  const wait = options?.conversionMs ??
    Math.max(...ids.map((id) => ds18b20ConversionMs(known(bus, id) ?? 12)));
  await convertAll(bus, master, request);
  await sleep(wait, options?.signal);
  const results: Ds18b20Result[] = [];
  for (const id of ids) {
    try {
      const reading = await readScratchpad(bus, id, retries, request);
      results.push(reading.powerOn ? { id, error: powerOnError(id) } : { id, reading });
    } catch (err) {
      if (!(err instanceof W1Error)) throw err;
      results.push({ id, error: err });
    }
  }
  return results;
}

/** Options of {@linkcode setResolution}. */
export interface SetResolutionOptions extends W1RequestOptions {
  /**
   * Also copy TH, TL and the configuration to the device's EEPROM (COPY SCRATCHPAD, then RECALL to
   * verify), so the resolution survives a power cycle; default false (the scratchpad only).
   */
  persist?: boolean;
  /** Reads to try again after a CRC error; default 2. */
  retries?: number;
}

/**
 * Sets a DS18B20's resolution (9..12 bits): WRITE SCRATCHPAD with its TH and TL kept, then READ
 * SCRATCHPAD to verify (some clones ignore the resolution). With `persist`, COPY SCRATCHPAD (10 ms)
 * and RECALL E2 to check the EEPROM took it. The conversion time of later reads follows.
 *
 * A parasite-powered device needs the strong pull-up during the copy, which netlink cannot ask for:
 * see the module notes.
 *
 * @throws {RangeError} not an integer 9..12
 * @throws {W1Error} `VERIFY` when the device does not keep it; `CRC` after every read failed
 *
 * @example
 * ```ts ignore
 * import { readTemperature, setResolution, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * await setResolution(bus, "28-0123456789ab", 9, { persist: true });
 * console.log((await readTemperature(bus, "28-0123456789ab")).celsius); // waits 94 ms, not 750
 * ```
 */
export async function setResolution(
  bus: W1Bus,
  slave: W1Id | string,
  bits: number,
  options?: SetResolutionOptions,
): Promise<void> {
  if (!Number.isInteger(bits) || bits < 9 || bits > 12) {
    throw new RangeError(`a DS18B20 resolution is 9..12 bits, got ${bits}`);
  }
  const { request } = optionsOf("setResolution options", options, ["persist", "retries"]);
  const retries = checkRetries(options?.retries);
  checkType(options?.persist, "persist", "boolean");
  const what = `set the resolution of ${nameOf(slave)} to ${bits} bits`;
  const before = await readScratchpad(bus, slave, retries, request);
  const config = ((bits - 9) << 5) | 0x1f;
  await bus.write({ slave }, [DS18B20.WRITE_SCRATCHPAD, before.scratchpad[2], before.scratchpad[3], config], request);
  const after = await readScratchpad(bus, slave, retries, request);
  if (after.resolution !== bits) {
    throw new W1Error(what, "WRITE SCRATCHPAD", "VERIFY", {
      hint: `the device reads back ${after.resolution} bits (a clone without a resolution setting?)`,
    });
  }
  if (!options?.persist) return;
  await bus.write({ slave }, [DS18B20.COPY_SCRATCHPAD], request);
  await sleep(10, options?.signal);
  await bus.write({ slave }, [DS18B20.RECALL_E2], request);
  const recalled = await readScratchpad(bus, slave, retries, request);
  if (recalled.resolution !== bits) {
    throw new W1Error(what, "COPY SCRATCHPAD", "VERIFY", {
      hint: `the EEPROM gives back ${recalled.resolution} bits after RECALL E2`,
    });
  }
}

/**
 * A DS18B20's resolution, 9..12 bits (READ SCRATCHPAD, CRC-checked).
 *
 * @throws {W1Error} `CRC` after every read failed
 *
 * @example
 * ```ts ignore
 * import { getResolution, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * console.log(await getResolution(bus, "28-0123456789ab")); // 12 from the factory
 * ```
 */
export async function getResolution(
  bus: W1Bus,
  slave: W1Id | string,
  options?: W1RequestOptions & { retries?: number },
): Promise<number> {
  const { request } = optionsOf("getResolution options", options, ["retries"]);
  return (await readScratchpad(bus, slave, checkRetries(options?.retries), request)).resolution;
}

/**
 * How a DS18B20 is powered (READ POWER SUPPLY, B4h): `"parasite"` when it pulls the read slots
 * low, `"external"` (VDD) otherwise. A parasite-powered device needs a strong pull-up the netlink
 * interface cannot give: see the module notes.
 *
 * @example
 * ```ts ignore
 * import { readPowerSupply, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * if (await readPowerSupply(bus, "28-0123456789ab") === "parasite") console.warn("power it from VDD");
 * ```
 */
export async function readPowerSupply(
  bus: W1Bus,
  slave: W1Id | string,
  options?: W1RequestOptions,
): Promise<"external" | "parasite"> {
  const [, read] = await bus.transaction(
    { slave },
    [{ op: "write", data: [DS18B20.READ_POWER_SUPPLY] }, { op: "read", length: 1 }],
    options,
  );
  return read.data[0] === 0xff ? "external" : "parasite";
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
    { op: "write", data: [DS2431.READ_MEMORY, address & 0xff, address >> 8] },
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
  const command = Uint8Array.from([DS2431.WRITE_SCRATCHPAD, ta1, ta2, ...bytes]);
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
    [{ op: "write", data: [DS2431.READ_SCRATCHPAD] }, { op: "read", length: 13 }],
    request,
  );
  const echo = pad.data;
  if (!invertedCrcMatches(Uint8Array.from([DS2431.READ_SCRATCHPAD, ...echo.subarray(0, 11)]), echo.subarray(11, 13))) {
    return new W1Error(what, "READ SCRATCHPAD", "CRC", { hint: "the scratchpad read back failed its CRC16" });
  }
  const es = echo[2];
  if (echo[0] !== ta1 || echo[1] !== ta2 || (es & 0x07) !== 7 || !equal(echo.subarray(3, 11), bytes)) {
    return new W1Error(what, "READ SCRATCHPAD", "VERIFY", { hint: "the scratchpad holds other data or address" });
  }
  await bus.write({ slave }, [DS2431.COPY_SCRATCHPAD, ta1, ta2, es], request);
  await sleep(programMs, signal);
  const stored = await readEeprom(bus, slave, row, ROW, request);
  if (!equal(stored, bytes)) {
    return new W1Error(what, "COPY SCRATCHPAD", "VERIFY", {
      hint: "memory read back differs (a write-protected row?)",
    });
  }
  return undefined;
}
