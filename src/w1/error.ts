/**
 * `W1Error`: what a 1-Wire request that failed throws, with the kernel's status and every command's
 * result.
 *
 * @module
 */
import { Errno, type ErrnoName, errnoName, errnoText } from "../errors.ts";
import type { W1Result } from "./types.ts";

/** What went wrong on the bus, beside errnos: the kernel's status 255 after a reset, or a device's CRC. */
const BUS_CODES: Record<string, string> = {
  NO_PRESENCE: "no device answered the reset pulse",
  CRC: "the data failed its CRC",
  VERIFY: "the data read back differs from what was written",
  POWER_ON: "the device holds its power-on value",
};

/**
 * A 1-Wire request failed: the kernel answered a command (or the whole message) with an error, or a
 * device helper found bad data.
 *
 * `code` is the errno name the kernel sent (`"ENODEV"`, `"EINVAL"`, `"E2BIG"`, `"EPROTO"`, ...), or
 * `"NO_PRESENCE"` (a reset found no device: the kernel's status 255), `"CRC"`, `"VERIFY"` or
 * `"POWER_ON"` (device helpers: a thermometer that never converted). `op` names what failed: the command (`"W1_CMD_RESET"`) or the message (`"W1_SLAVE_CMD"`).
 * `results` holds what the other commands of the transaction returned (the kernel runs them all).
 *
 * @example
 * ```ts
 * import { W1Error } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const err = new W1Error("reset bus master 1", "W1_CMD_RESET", 255);
 * assert.equal(err.code, "NO_PRESENCE");
 * assert.match(err.message, /^Cannot reset bus master 1: W1_CMD_RESET failed with NO_PRESENCE/);
 * ```
 */
export class W1Error extends Error {
  /** `"ENODEV"`, `"EINVAL"`, ... or `"NO_PRESENCE"`, `"CRC"`, `"VERIFY"`, `"POWER_ON"`. */
  readonly code: string;
  /** What failed: `"W1_CMD_READ"`, `"W1_SLAVE_CMD"`, `"W1_MASTER_CMD"`, `"W1_LIST_MASTERS"`, or a helper's step. */
  readonly op: string;
  /** The kernel's status byte (0 for helper checks). */
  readonly status: number;
  /** Index of the failed command in the transaction, or -1 for the whole message. */
  readonly index: number;
  /** The results of every command of the transaction (those that failed have empty data). */
  readonly results: W1Result[];

  /**
   * Builds the error: "Cannot `what`: `op` failed with `code` (...)".
   *
   * @param what what was being done, as a phrase
   * @param op the command or message that failed
   * @param status the kernel's status byte (an errno, or 255 after a reset without presence), or a
   *   code string for checks done here (`"CRC"`, `"VERIFY"`)
   * @param details the command index, the transaction's results, and a hint
   */
  constructor(
    what: string,
    op: string,
    status: number | string,
    details: { index?: number; results?: W1Result[]; hint?: string } = {},
  ) {
    const code = typeof status === "string" ? status : status === 255 ? "NO_PRESENCE" : errnoName(status);
    const text = BUS_CODES[code] ?? (code in Errno ? errnoText(Errno[code as ErrnoName]) : "error");
    super(`Cannot ${what}: ${op} failed with ${code} (${text})${details.hint ? `; ${details.hint}` : ""}`);
    this.name = "W1Error";
    this.code = code;
    this.op = op;
    this.status = typeof status === "number" ? status : 0;
    this.index = details.index ?? -1;
    this.results = details.results ?? [];
  }
}
