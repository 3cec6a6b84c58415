/**
 * Fake 1-Wire devices for `FakeW1Core.plug`: the DS18B20 thermometer, the DS2431 EEPROM, the
 * DS2413 and DS2408 switches, the DS2438 battery monitor and the DS2423 counter. Each answers the
 * function commands the `@cnlink/connector/w1` helpers (and the kernel's drivers) use, with the
 * same checks as the real part (complements, CRC8, inverted CRC16, `AAh` confirmations), so tests of
 * code built on those helpers run without hardware or root. The same behaviour, bit by bit, is in
 * the kernel lab's `cnlink_w1soft` module, where it is compared with the kernel's own drivers.
 *
 * @module
 */
import { crc16, crc8, type W1Id } from "../codec/w1.ts";
import type { FakeW1Device } from "./fake_core.ts";

/** The byte machinery the fakes share: a function command, its argument bytes, and what to send. */
function byteDevice(
  id: W1Id | string,
  onByte: (cmd: number, args: number[], send: (bytes: number[], fill?: number) => void) => void,
): FakeW1Device {
  let cmd = -1;
  let args: number[] = [];
  let out: number[] = [];
  let fill = 0xff;
  const send = (bytes: number[], after = 0xff) => {
    out = [...bytes];
    fill = after;
  };
  return {
    id,
    reset: () => {
      cmd = -1;
      args = [];
      out = [];
      fill = 0xff;
    },
    write(bytes) {
      for (const b of bytes) {
        if (cmd === -1) cmd = b;
        else args.push(b);
        onByte(cmd, args, send);
      }
    },
    read(length) {
      const bytes = new Uint8Array(length).fill(fill);
      for (let i = 0; i < length && out.length; i++) bytes[i] = out.shift()!;
      return bytes;
    },
  };
}

function invertedCrc16(bytes: number[]): number[] {
  const crc = ~crc16(Uint8Array.from(bytes)) & 0xffff;
  return [crc & 0xff, crc >> 8];
}

/** A fake DS2413 (family 0x3A): two PIO channels. */
export interface FakeDs2413 extends FakeW1Device {
  /** The output latches (bit 0 PIOA, bit 1 PIOB; 1 = released); 0xff from power-on. */
  latch: number;
  /** The levels outside drives on the pins (bit 0 PIOA, bit 1 PIOB; 0 = held low); default 0xff. */
  input: number;
}

/**
 * A fake DS2413 dual switch: PIO ACCESS READ (F5h) and PIO ACCESS WRITE (5Ah, confirmed by `AAh`
 * and the new status when the inverted byte matches).
 *
 * @example
 * ```ts
 * import { FakeKernel, fakeDs2413 } from "@cnlink/connector/testing";
 * import { readDs2413 } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const kernel = new FakeKernel();
 * const w1 = kernel.enableW1();
 * const master = w1.addMaster();
 * const pio = fakeDs2413("3a-000000000001");
 * w1.plug(master, pio);
 * await using bus = await kernel.openW1Bus();
 * await bus.search(master);
 * pio.input = 0b10; // PIOA held low outside
 * assert.equal((await readDs2413(bus, "3a-000000000001")).pioA, false);
 * ```
 */
export function fakeDs2413(id: W1Id | string): FakeDs2413 {
  const status = () => {
    const pins = device.latch & device.input & 3;
    const low = (pins & 1) | ((device.latch & 1) << 1) | ((pins & 2) << 1) | ((device.latch & 2) << 2);
    return low | ((~low & 0x0f) << 4);
  };
  const base = byteDevice(id, (cmd, args, send) => {
    if (cmd === 0xf5 && args.length === 0) send([], status());
    else if (cmd === 0x5a && args.length === 2) {
      if (args[1] !== (~args[0] & 0xff)) return send([]);
      device.latch = args[0] | 0xfc;
      send([0xaa, status()]);
    }
  });
  const device: FakeDs2413 = Object.assign(base, { latch: 0xff, input: 0xff });
  return device;
}

/** A fake DS2408 (family 0x29): eight PIO channels and their registers. */
export interface FakeDs2408 extends FakeW1Device {
  /** The output latches (1 = released); 0xff from power-on. */
  latch: number;
  /** The levels outside drives on the pins (0 = held low); default 0xff. */
  input: number;
  /** The activity latches: pins whose level changed. */
  activity: number;
  /** The control/status register (88h: VCC powered, power-on reset latch set). */
  control: number;
  /** Conditional search mask and polarity (8Bh, 8Ch). */
  searchMask: number;
  /** Conditional search polarity (8Ch). */
  searchPolarity: number;
}

/**
 * A fake DS2408 8-channel switch: READ PIO REGISTERS (F0h, with the inverted CRC16), CHANNEL
 * ACCESS WRITE (5Ah), RESET ACTIVITY LATCHES (C3h), WRITE CONDITIONAL SEARCH REGISTER (CCh).
 * Setting `input` records activity as the device does.
 *
 * @example
 * ```ts
 * import { fakeDs2408 } from "@cnlink/connector/testing";
 * import assert from "node:assert/strict";
 *
 * const pio = fakeDs2408("29-000000000001");
 * pio.input = 0x7f;
 * assert.equal(pio.activity, 0x80);
 * ```
 */
export function fakeDs2408(id: W1Id | string): FakeDs2408 {
  let latch = 0xff;
  let input = 0xff;
  let last = 0xff;
  const pins = () => latch & input;
  const changed = () => {
    device.activity |= pins() ^ last;
    last = pins();
  };
  const register = (addr: number): number =>
    [pins(), latch, device.activity, device.searchMask, device.searchPolarity, device.control, 0xff, 0xff][
      addr - 0x88
    ] ?? 0xff;
  const base = byteDevice(id, (cmd, args, send) => {
    if (cmd === 0xf0 && args.length === 2) {
      const addr = args[0] | (args[1] << 8);
      if (addr < 0x88 || addr > 0x8f) return send([]);
      const regs = Array.from({ length: 0x90 - addr }, (_, i) => register(addr + i));
      send([...regs, ...invertedCrc16([0xf0, args[0], args[1], ...regs])]);
    } else if (cmd === 0x5a && args.length === 2) {
      if (args[1] !== (~args[0] & 0xff)) return send([]);
      latch = args[0];
      changed();
      send([0xaa, pins()]);
    } else if (cmd === 0xc3 && args.length === 0) {
      device.activity = 0;
      send([], 0xaa);
    } else if (cmd === 0xcc && args.length >= 3) {
      const addr = (args[0] | (args[1] << 8)) + args.length - 3;
      const v = args[args.length - 1];
      if (addr === 0x8b) device.searchMask = v;
      else if (addr === 0x8c) device.searchPolarity = v;
      else if (addr === 0x8d) device.control = (device.control & 0xf0) | (v & 0x07) | (device.control & v & 0x08);
    }
  });
  const device = Object.assign(base, {
    activity: 0,
    control: 0x88,
    searchMask: 0,
    searchPolarity: 0,
  }) as FakeDs2408;
  Object.defineProperty(device, "latch", {
    get: () => latch,
    set: (v: number) => {
      latch = v;
      changed();
    },
    enumerable: true,
  });
  Object.defineProperty(device, "input", {
    get: () => input,
    set: (v: number) => {
      input = v;
      changed();
    },
    enumerable: true,
  });
  return device;
}

/** A fake DS2438 (family 0x26). */
export interface FakeDs2438 extends FakeW1Device {
  /** The temperature the next CONVERT T reads, °C. */
  celsius: number;
  /** Volts on VAD and VDD for the next CONVERT V. */
  vad: number;
  /** Volts on VDD. */
  vdd: number;
  /** The current register (raw, signed), updated while the status IAD bit is set. */
  current: number;
  /** The eight 8-byte pages (page 0: status and registers; page 1: ETM, ICA, offset). */
  readonly pages: Uint8Array[];
}

/** Bytes COPY SCRATCHPAD keeps per page (the others are read-only registers). */
function ds2438Writable(page: number, i: number): number {
  if (page === 0) return i === 0 ? 0x0f : i === 7 ? 0xff : 0;
  if (page === 1) return i >= 4 ? 0xff : 0;
  return 0xff;
}

/**
 * A fake DS2438 battery monitor: CONVERT T (44h), CONVERT V (B4h: VAD, or VDD with the AD bit),
 * RECALL (B8h), READ SCRATCHPAD (BEh, with CRC8), WRITE SCRATCHPAD (4Eh), COPY SCRATCHPAD (48h).
 *
 * @example
 * ```ts
 * import { fakeDs2438 } from "@cnlink/connector/testing";
 * import assert from "node:assert/strict";
 *
 * const battery = fakeDs2438("26-000000000001", { vdd: 4.98 });
 * assert.equal(battery.pages[0][0], 0x0f); // IAD, CA, EE, AD from power-on
 * ```
 */
export function fakeDs2438(
  id: W1Id | string,
  initial?: { celsius?: number; vad?: number; vdd?: number; current?: number },
): FakeDs2438 {
  const pages = Array.from({ length: 8 }, () => new Uint8Array(8));
  const spad = Array.from({ length: 8 }, () => new Uint8Array(8));
  pages[0][0] = 0x0f;
  const base = byteDevice(id, (cmd, args, send) => {
    const page = (args[0] ?? 0) & 7;
    if (cmd === 0x44 && args.length === 0) {
      const reg = Math.max(-55 * 256, Math.min(125 * 256, Math.round(device.celsius * 32) * 8));
      pages[0][1] = reg & 0xff;
      pages[0][2] = (reg >> 8) & 0xff;
    } else if (cmd === 0xb4 && args.length === 0) {
      const volts = pages[0][0] & 0x08 ? device.vdd : device.vad;
      const reg = Math.max(0, Math.min(1023, Math.round(volts * 100)));
      pages[0][3] = reg & 0xff;
      pages[0][4] = reg >> 8;
    } else if (cmd === 0xb8 && args.length === 1) {
      if (page === 0 && pages[0][0] & 0x01) {
        pages[0][5] = device.current & 0xff;
        pages[0][6] = (device.current >> 8) & 0xff;
      }
      spad[page].set(pages[page]);
    } else if (cmd === 0xbe && args.length === 1) {
      send([...spad[page], crc8(spad[page])]);
    } else if (cmd === 0x4e && args.length >= 2 && args.length <= 9) {
      spad[page][args.length - 2] = args[args.length - 1];
    } else if (cmd === 0x48 && args.length === 1) {
      for (let i = 0; i < 8; i++) {
        const keep = ds2438Writable(page, i);
        pages[page][i] = (pages[page][i] & ~keep) | (spad[page][i] & keep);
      }
    }
  });
  const device: FakeDs2438 = Object.assign(base, {
    celsius: initial?.celsius ?? 20,
    vad: initial?.vad ?? 0,
    vdd: initial?.vdd ?? 5,
    current: initial?.current ?? 0,
    pages,
  });
  return device;
}

/** A fake DS2423 (family 0x1D). */
export interface FakeDs2423 extends FakeW1Device {
  /** The 16 pages' counters (those of pages 12..15 are the real part's; 14 and 15 count inputs A and B). */
  readonly counters: number[];
  /** The 512 bytes of memory. */
  readonly memory: Uint8Array;
}

/**
 * A fake DS2423 counter: READ MEMORY + COUNTER (A5h): from the address to the end of each page its
 * data, the page's 32-bit counter, four zero bytes and the inverted CRC16, through page 15.
 *
 * @example
 * ```ts
 * import { fakeDs2423 } from "@cnlink/connector/testing";
 * import assert from "node:assert/strict";
 *
 * const counter = fakeDs2423("1d-000000000001");
 * counter.counters[14] = 42; // input A
 * assert.equal(counter.counters.length, 16);
 * ```
 */
export function fakeDs2423(id: W1Id | string): FakeDs2423 {
  const counters = new Array<number>(16).fill(0);
  const memory = new Uint8Array(512);
  const base = byteDevice(id, (cmd, args, send) => {
    if (cmd !== 0xa5 || args.length !== 2) return;
    let addr = args[0] | (args[1] << 8);
    if (addr >= 512) return send([]);
    const out: number[] = [];
    let covered = [0xa5, args[0], args[1]];
    while (addr < 512) {
      const end = (Math.floor(addr / 32) + 1) * 32;
      const c = counters[Math.floor(addr / 32)] >>> 0;
      const part = [...memory.subarray(addr, end), c & 0xff, (c >>> 8) & 0xff, (c >>> 16) & 0xff, c >>> 24, 0, 0, 0, 0];
      out.push(...part, ...invertedCrc16([...covered, ...part]));
      covered = [];
      addr = end;
    }
    send(out);
  });
  return Object.assign(base, { counters, memory });
}

/** Options of {@linkcode fakeDs18b20}. */
export interface FakeDs18b20Options {
  /** The temperature it converts, °C; default 20. Change it later through `device.celsius`. */
  celsius?: number;
  /** Send scratchpads with a wrong CRC this many times first; default 0. */
  badCrcReads?: number;
  /** Parasite-powered: READ POWER SUPPLY reads 0s; default false. */
  parasite?: boolean;
}

/**
 * A fake DS18B20: CONVERT T (44h), READ SCRATCHPAD (BEh), WRITE SCRATCHPAD (4Eh: TH, TL, config),
 * COPY SCRATCHPAD (48h), RECALL E2 (B8h), READ POWER SUPPLY (B4h).
 */
export interface FakeDs18b20 extends FakeW1Device {
  /** The temperature the next conversion reads, °C. */
  celsius: number;
  /** Scratchpad reads still to corrupt. */
  badCrcReads: number;
  /** Parasite-powered (READ POWER SUPPLY reads 0s). */
  parasite: boolean;
  /** Power-cycles it: +85 °C with the power-on signature, TH, TL and the resolution from its EEPROM. */
  powerCycle(): void;
}

/**
 * A fake DS18B20 thermometer for {@linkcode FakeW1Core.plug}: conversions take no time, the alarm
 * flag follows TH/TL as on the device. It starts with the power-on scratchpad (+85 °C, byte 6 =
 * `0Ch`); a conversion sets byte 6 to `10h` minus the register's low nibble, as the real device
 * does, so a real 85 °C is told from the power-on value. The configuration register keeps only its
 * resolution bits.
 *
 * @example
 * ```ts
 * import { fakeDs18b20 } from "@cnlink/connector/testing";
 * import assert from "node:assert/strict";
 *
 * const t = fakeDs18b20("28-000000000001", { celsius: -10.125 });
 * assert.equal(t.celsius, -10.125);
 * ```
 */
export function fakeDs18b20(id: W1Id | string, options?: FakeDs18b20Options): FakeDs18b20 {
  const eeprom = Uint8Array.from([75, 70, 0x7f]);
  const pad = Uint8Array.from([0x50, 0x05, 75, 70, 0x7f, 0xff, 0x0c, 0x10, 0]);
  let alarm = false;
  const base = byteDevice(id, (cmd, args, send) => {
    if (args.length === 0) {
      if (cmd === 0x44) {
        const resolution = ((pad[4] >> 5) & 3) + 9;
        const raw = Math.round(device.celsius * 16) & ~((1 << (12 - resolution)) - 1);
        pad[0] = raw & 0xff;
        pad[1] = (raw >> 8) & 0xff;
        pad[6] = 0x10 - (raw & 0x0f);
        const whole = raw >> 4;
        alarm = whole >= ((pad[2] << 24) >> 24) || whole <= ((pad[3] << 24) >> 24);
      } else if (cmd === 0xbe) {
        pad[8] = crc8(pad.subarray(0, 8));
        const bytes = [...pad];
        if (device.badCrcReads > 0) {
          device.badCrcReads--;
          bytes[8] ^= 0x5a;
        }
        send(bytes);
      } else if (cmd === 0x48) {
        eeprom.set(pad.subarray(2, 5));
      } else if (cmd === 0xb8) {
        pad.set(eeprom, 2);
      } else if (cmd === 0xb4) {
        send([], device.parasite ? 0x00 : 0xff);
      }
    } else if (cmd === 0x4e && args.length === 3) {
      pad.set([args[0], args[1], (args[2] & 0x60) | 0x1f], 2);
    }
  });
  const device: FakeDs18b20 = Object.assign(base, {
    celsius: options?.celsius ?? 20,
    badCrcReads: options?.badCrcReads ?? 0,
    parasite: options?.parasite ?? false,
    alarm: () => alarm,
    powerCycle() {
      pad.set([0x50, 0x05, ...eeprom, 0xff, 0x0c, 0x10]);
      alarm = false;
    },
  });
  return device;
}

/**
 * A fake DS2431 EEPROM for {@linkcode FakeW1Core.plug}: WRITE SCRATCHPAD (0Fh, inverted CRC16),
 * READ SCRATCHPAD (AAh), COPY SCRATCHPAD (55h, whole rows), READ MEMORY (F0h). `memory` is its
 * 144 bytes (0xff when new).
 *
 * @example
 * ```ts
 * import { fakeDs2431 } from "@cnlink/connector/testing";
 * import assert from "node:assert/strict";
 *
 * assert.equal(fakeDs2431("2d-00000000cafe").memory.length, 0x90);
 * ```
 */
export function fakeDs2431(id: W1Id | string): FakeW1Device & { memory: Uint8Array } {
  const memory = new Uint8Array(0x90).fill(0xff);
  const sp = new Uint8Array(8);
  let ta = 0;
  let es = 0;
  const base = byteDevice(id, (cmd, args, send) => {
    if (args.length === 0) {
      if (cmd === 0xaa) {
        const body = [ta & 0xff, ta >> 8, es, ...sp];
        send([...body, ...invertedCrc16([0xaa, ...body])]);
      }
    } else if (cmd === 0xf0 && args.length === 2) {
      const addr = args[0] | (args[1] << 8);
      send(addr < memory.length ? [...memory.subarray(addr)] : []);
    } else if (cmd === 0x0f && args.length >= 2) {
      ta = args[0] | (args[1] << 8);
      const want = 2 + 8 - (ta & 7);
      if (args.length === want) {
        const data = args.slice(2);
        sp.set(data, ta & 7);
        es = ((ta & 7) + data.length - 1) & 7;
        send(invertedCrc16([0x0f, ...args]));
      }
    } else if (cmd === 0x55 && args.length === 3) {
      if (args[0] === (ta & 0xff) && args[1] === ta >> 8 && args[2] === es && (ta & 7) === 0 && es === 7 && ta < 0x80) {
        memory.set(sp, ta);
        es |= 0x80;
      }
    }
  });
  return Object.assign(base, { memory });
}
