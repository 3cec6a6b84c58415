/**
 * The 1-Wire switches: DS2413 (family 0x3A, two PIO channels) and DS2408 (family 0x29, eight).
 * Both speak through `W1_SLAVE_CMD` (the kernel resets the bus and selects the device first), check
 * what the device sends (the DS2413's complement nibble, the DS2408's inverted CRC16 and `AAh`
 * confirmations), and try again a bounded number of times.
 *
 * A PIO output latch bit at 1 leaves its pin released (pulled high by the pull-up, or driven low by
 * something outside); at 0 the device pulls the pin low. The pin state is what the device reads on
 * the pin. Verified against the kernel's `w1_ds2413` and `w1_ds2408` drivers (their sysfs `state`,
 * `output`, `activity` and `status_control` files) on Debian's 6.1 and 6.12 in the kernel lab.
 *
 * @module
 */
import { DS2408_COMMAND as DS2408, DS2413_COMMAND as DS2413, W1_CONFIRMATION, type W1Id } from "../codec/w1.ts";
import type { W1Bus } from "./bus.ts";
import { W1Error } from "./bus.ts";
import type { W1RequestOptions } from "./types.ts";
import { checkRetries, hex, invertedCrcMatches, nameOf, optionsOf } from "./util.ts";

/** Options of the switch helpers. */
export interface W1SwitchOptions extends W1RequestOptions {
  /** Attempts to repeat after a bad complement, CRC or confirmation; default 2. */
  retries?: number;
}

/** A DS2413's PIO status (PIO ACCESS READ, F5h). */
export interface Ds2413State {
  /** The level on pin PIOA (true = high). */
  pioA: boolean;
  /** The level on pin PIOB. */
  pioB: boolean;
  /** PIOA's output latch: true = released (off), false = pulling the pin low. */
  latchA: boolean;
  /** PIOB's output latch. */
  latchB: boolean;
  /** The status byte as the device sent it (low nibble: PIOA pin, PIOA latch, PIOB pin, PIOB latch; high nibble: their complement). */
  raw: number;
  /** Reads it took (1 when the first was consistent). */
  attempts: number;
}

function decodeDs2413(raw: number, attempts: number): Ds2413State | undefined {
  if ((raw & 0x0f) !== (~raw >> 4 & 0x0f)) return undefined;
  return { pioA: !!(raw & 1), latchA: !!(raw & 2), pioB: !!(raw & 4), latchB: !!(raw & 8), raw, attempts };
}

/**
 * Writes `command` and reads `length` bytes, up to `retries + 1` times, until `accept` makes
 * something of the answer: that, or the last answer (for the error) when no attempt was accepted.
 */
async function untilAccepted<T>(
  bus: W1Bus,
  slave: W1Id | string,
  exchange: { command: readonly number[]; length: number; retries: number; request: W1RequestOptions },
  accept: (answer: Uint8Array, attempt: number) => T | undefined,
): Promise<{ value: T } | { last: Uint8Array }> {
  const { command, length, retries, request } = exchange;
  let last: Uint8Array = new Uint8Array(0);
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    const [, read] = await bus.transaction(
      { slave },
      [{ op: "write", data: command }, { op: "read", length }],
      request,
    );
    last = read.data;
    const value = accept(last, attempt);
    if (value !== undefined) return { value };
  }
  return { last };
}

/**
 * Reads a DS2413's pins and output latches (PIO ACCESS READ, F5h), checking the complement nibble;
 * an inconsistent byte is read again up to `retries` times.
 *
 * @throws {W1Error} `CRC` when every read failed its complement check
 *
 * @example
 * ```ts ignore
 * import { readDs2413, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * const s = await readDs2413(bus, "3a-000000000001");
 * console.log(s.pioA, s.pioB);
 * ```
 */
export async function readDs2413(bus: W1Bus, slave: W1Id | string, options?: W1SwitchOptions): Promise<Ds2413State> {
  const { request } = optionsOf("readDs2413 options", options, ["retries"]);
  const retries = checkRetries(options?.retries);
  const exchange = { command: [DS2413.PIO_ACCESS_READ], length: 1, retries, request };
  const got = await untilAccepted(bus, slave, exchange, (answer, attempt) => decodeDs2413(answer[0], attempt));
  if ("value" in got) return got.value;
  throw new W1Error(`read the PIO status of ${nameOf(slave)}`, "PIO ACCESS READ", "CRC", {
    hint: `${retries + 1} attempts, the last status byte ${hex(got.last[0])} fails its complement nibble`,
  });
}

/**
 * Sets a DS2413's output latches (PIO ACCESS WRITE, 5Ah): bit 0 for PIOA, bit 1 for PIOB, 1 =
 * released, 0 = pulled low (the other bits are sent as 1s, as the datasheet asks). Checks the `AAh`
 * confirmation and returns the status the device sends after it.
 *
 * @throws {RangeError} not 0..3
 * @throws {W1Error} `VERIFY` when no attempt was confirmed
 *
 * @example Pull PIOB low, release PIOA
 * ```ts ignore
 * import { W1Bus, writeDs2413 } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * const s = await writeDs2413(bus, "3a-000000000001", 0b01);
 * console.log(s.pioB); // false
 * ```
 */
export async function writeDs2413(
  bus: W1Bus,
  slave: W1Id | string,
  latches: number,
  options?: W1SwitchOptions,
): Promise<Ds2413State> {
  const { request } = optionsOf("writeDs2413 options", options, ["retries"]);
  if (!Number.isInteger(latches) || latches < 0 || latches > 3) {
    throw new RangeError(`DS2413 latches are two bits (0..3: bit 0 PIOA, bit 1 PIOB), got ${latches}`);
  }
  const retries = checkRetries(options?.retries);
  const value = latches | 0xfc;
  const command = [DS2413.PIO_ACCESS_WRITE, value, ~value & 0xff];
  const exchange = { command, length: 2, retries, request };
  const got = await untilAccepted(
    bus,
    slave,
    exchange,
    (answer, attempt) => answer[0] === W1_CONFIRMATION ? decodeDs2413(answer[1], attempt) : undefined,
  );
  if ("value" in got) return got.value;
  throw new W1Error(`set the PIO latches of ${nameOf(slave)}`, "PIO ACCESS WRITE", "VERIFY", {
    hint: `${retries + 1} attempts, the last answered ${[...got.last].map(hex).join(" ")} instead of ${
      hex(W1_CONFIRMATION)
    } and a status`,
  });
}

/** The DS2408's registers (88h..8Dh). */
export interface Ds2408Registers {
  /** PIO logic state (88h): the level on each pin P0..P7 (bit n = Pn, 1 = high). */
  state: number;
  /** PIO output latch state (89h): 1 = released, 0 = pulling the pin low. */
  output: number;
  /** PIO activity latch state (8Ah): pins whose level changed since the last reset of the latches. */
  activity: number;
  /** Conditional search channel selection mask (8Bh). */
  searchMask: number;
  /** Conditional search channel polarity selection (8Ch). */
  searchPolarity: number;
  /** Control/status register (8Dh): PLS, CT, ROS, PORL (bit 3, power-on reset), VCCP (bit 7, VCC powered). */
  control: number;
  /** Reads it took (1 when the first passed its CRC16). */
  attempts: number;
}

/**
 * Reads all of a DS2408's registers (READ PIO REGISTERS, F0h, from 88h) with the inverted CRC16
 * checked; retried after a CRC error.
 *
 * @throws {W1Error} `CRC` when every read failed
 *
 * @example
 * ```ts ignore
 * import { readDs2408, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * const r = await readDs2408(bus, "29-000000000001");
 * console.log(r.state.toString(2).padStart(8, "0"));
 * ```
 */
export async function readDs2408(
  bus: W1Bus,
  slave: W1Id | string,
  options?: W1SwitchOptions,
): Promise<Ds2408Registers> {
  const { request } = optionsOf("readDs2408 options", options, ["retries"]);
  const retries = checkRetries(options?.retries);
  const command = [DS2408.READ_PIO_REGISTERS, DS2408.PIO_LOGIC_STATE_ADDRESS, 0x00];
  const got = await untilAccepted(bus, slave, { command, length: 10, retries, request }, (r, attempt) => {
    if (!invertedCrcMatches(Uint8Array.from([...command, ...r.subarray(0, 8)]), r.subarray(8, 10))) return undefined;
    return {
      state: r[0],
      output: r[1],
      activity: r[2],
      searchMask: r[3],
      searchPolarity: r[4],
      control: r[5],
      attempts: attempt,
    };
  });
  if ("value" in got) return got.value;
  throw new W1Error(`read the registers of ${nameOf(slave)}`, "READ PIO REGISTERS", "CRC", {
    hint: `${retries + 1} attempts failed their CRC16`,
  });
}

function checkByte(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 255) {
    throw new RangeError(`${what} is a byte (0..255), got ${value}`);
  }
  return value;
}

/**
 * Sets a DS2408's eight output latches (CHANNEL ACCESS WRITE, 5Ah, with the inverted byte) and
 * returns the pin state the device sends after its `AAh` confirmation.
 *
 * @throws {RangeError} not a byte
 * @throws {W1Error} `VERIFY` when no attempt was confirmed
 *
 * @example Pull P0 and P1 low
 * ```ts ignore
 * import { W1Bus, writeDs2408 } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * console.log(await writeDs2408(bus, "29-000000000001", 0xfc)); // the pin levels
 * ```
 */
export async function writeDs2408(
  bus: W1Bus,
  slave: W1Id | string,
  output: number,
  options?: W1SwitchOptions,
): Promise<number> {
  const { request } = optionsOf("writeDs2408 options", options, ["retries"]);
  checkByte(output, "a DS2408 output");
  const retries = checkRetries(options?.retries);
  const command = [DS2408.CHANNEL_ACCESS_WRITE, output, ~output & 0xff];
  const exchange = { command, length: 2, retries, request };
  const got = await untilAccepted(
    bus,
    slave,
    exchange,
    (answer) => answer[0] === W1_CONFIRMATION ? answer[1] : undefined,
  );
  if ("value" in got) return got.value;
  throw new W1Error(`set the outputs of ${nameOf(slave)}`, "CHANNEL ACCESS WRITE", "VERIFY", {
    hint: `${retries + 1} attempts, the last answered ${hex(got.last[0])} instead of ${hex(W1_CONFIRMATION)}`,
  });
}

/**
 * Clears a DS2408's activity latches (RESET ACTIVITY LATCHES, C3h, confirmed by `AAh`).
 *
 * @throws {W1Error} `VERIFY` when no attempt was confirmed
 *
 * @example
 * ```ts ignore
 * import { readDs2408, resetDs2408Activity, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * await resetDs2408Activity(bus, "29-000000000001");
 * console.log((await readDs2408(bus, "29-000000000001")).activity); // 0
 * ```
 */
export async function resetDs2408Activity(
  bus: W1Bus,
  slave: W1Id | string,
  options?: W1SwitchOptions,
): Promise<void> {
  const { request } = optionsOf("resetDs2408Activity options", options, ["retries"]);
  const retries = checkRetries(options?.retries);
  const exchange = { command: [DS2408.RESET_ACTIVITY_LATCHES], length: 1, retries, request };
  const got = await untilAccepted(bus, slave, exchange, (answer) => answer[0] === W1_CONFIRMATION ? true : undefined);
  if ("value" in got) return;
  throw new W1Error(`reset the activity latches of ${nameOf(slave)}`, "RESET ACTIVITY LATCHES", "VERIFY", {
    hint: `${retries + 1} attempts, the last answered ${hex(got.last[0])} instead of ${hex(W1_CONFIRMATION)}`,
  });
}

/**
 * Writes a DS2408's control/status register (WRITE CONDITIONAL SEARCH REGISTER, CCh, at 8Dh): bits
 * 0..2 (PLS, CT, ROS) take the value, a 0 in bit 3 clears the power-on reset latch (PORL). Reads
 * the registers back to verify and returns them.
 *
 * @throws {RangeError} not a byte
 * @throws {W1Error} `VERIFY` when the register reads back otherwise
 *
 * @example Clear the power-on reset latch
 * ```ts ignore
 * import { W1Bus, writeDs2408Control } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * await writeDs2408Control(bus, "29-000000000001", 0x00);
 * ```
 */
export async function writeDs2408Control(
  bus: W1Bus,
  slave: W1Id | string,
  control: number,
  options?: W1SwitchOptions,
): Promise<Ds2408Registers> {
  const { request } = optionsOf("writeDs2408Control options", options, ["retries"]);
  checkByte(control, "a DS2408 control value");
  await bus.write(
    { slave },
    [DS2408.WRITE_CONDITIONAL_SEARCH_REGISTER, DS2408.CONTROL_STATUS_ADDRESS, 0x00, control],
    request,
  );
  const registers = await readDs2408(bus, slave, options);
  if ((registers.control & 0x07) !== (control & 0x07) || (!(control & 0x08) && registers.control & 0x08)) {
    throw new W1Error(`write the control register of ${nameOf(slave)}`, "WRITE CONDITIONAL SEARCH REGISTER", "VERIFY", {
      hint: `it reads back ${hex(registers.control)}`,
    });
  }
  return registers;
}
