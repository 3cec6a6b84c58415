/**
 * The DS2423 4 kbit RAM with counters (family 0x1D): its four 32-bit counters, those of memory
 * pages 12..15. The counters of pages 14 and 15 count the falling edges on inputs A and B; those of
 * pages 12 and 13 count writes to those pages.
 *
 * Read with READ MEMORY + COUNTER (A5h) as the kernel's `w1_ds2423` driver does, each page's
 * inverted CRC16 checked (retried, counted). Verified against that driver's sysfs `w1_slave` on
 * Debian's 6.1 and 6.12 in the kernel lab.
 *
 * @module
 */
import { crc16, DS2423_COMMAND, type W1Id } from "../codec/w1.ts";
import type { W1Bus } from "./bus.ts";
import { W1Error } from "./bus.ts";
import type { W1RequestOptions } from "./types.ts";
import { checkRetries, nameOf, optionsOf } from "./util.ts";

/** The DS2423's counters, by memory page. */
export interface Ds2423Counters {
  /** The counters of pages 12, 13, 14 (input A) and 15 (input B). */
  counters: [number, number, number, number];
  /** Reads it took (1 when every page passed its CRC16 the first time). */
  attempts: number;
}

/** CRC16 over data followed by its inverted CRC leaves this residue. */
const CRC16_RESIDUE = 0xb001;
/** The last byte of page 12: the read starts there, so page 12 costs 1 data byte. */
const START = 12 * 32 + 31;

/**
 * Reads the four counters of a DS2423 in one transaction: READ MEMORY + COUNTER from the last byte
 * of page 12 through page 15 (137 bytes), each page's CRC16 checked. The whole read is repeated
 * after a CRC error, up to `retries` times.
 *
 * @throws {W1Error} `CRC` when every attempt had a page fail its CRC16
 *
 * @example
 * ```ts ignore
 * import { readDs2423Counters, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * const { counters: [, , a, b] } = await readDs2423Counters(bus, "1d-000000000001");
 * console.log(`input A ${a}, input B ${b}`);
 * ```
 */
export async function readDs2423Counters(
  bus: W1Bus,
  slave: W1Id | string,
  options?: W1RequestOptions & { retries?: number },
): Promise<Ds2423Counters> {
  const { request } = optionsOf("readDs2423Counters options", options, ["retries"]);
  const retries = checkRetries(options?.retries);
  const command = Uint8Array.of(DS2423_COMMAND.READ_MEMORY_COUNTER, START & 0xff, START >> 8);
  let bad = -1;
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    const [, read] = await bus.transaction(
      { slave },
      [{ op: "write", data: command }, { op: "read", length: 11 + 3 * 42 }],
      request,
    );
    const bytes = read.data;
    const counters: number[] = [];
    bad = -1;
    // Page 12: 1 data byte, counter, 4 zero bytes, CRC (over the command too); pages 13..15: 32 + 4 + 4 + 2.
    for (let page = 0; page < 4 && bad < 0; page++) {
      const start = page === 0 ? 0 : 11 + (page - 1) * 42;
      const end = page === 0 ? 11 : start + 42;
      const crc = page === 0 ? crc16(bytes.subarray(0, 11), crc16(command)) : crc16(bytes.subarray(start, end));
      if (crc !== CRC16_RESIDUE) bad = 12 + page;
      const at = end - 10; // the counter sits before 4 zero bytes and the CRC
      counters.push(new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0, true));
    }
    if (bad < 0) return { counters: counters as [number, number, number, number], attempts: attempt };
  }
  throw new W1Error(`read the counters of ${nameOf(slave)}`, "READ MEMORY + COUNTER", "CRC", {
    hint: `${retries + 1} attempts, the last failed at page ${bad}`,
  });
}
