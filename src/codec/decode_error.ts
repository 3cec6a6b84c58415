/**
 * The one error every decoder throws for bytes that do not hold what they claim.
 *
 * @example Catching a malformed datagram
 * ```ts
 * import { decodeDatagram, DecodeError } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => decodeDatagram(new Uint8Array(7)), DecodeError);
 * ```
 */
export class DecodeError extends RangeError {
  /** What was being decoded, e.g. `"nlmsghdr"` or `"cn_msg"`. */
  readonly structure: string;
  /** Byte offset in the input where the problem was found. */
  readonly offset: number;

  /**
   * Builds the error; the message names the structure and the offset.
   *
   * @param structure what was being decoded
   * @param offset byte offset where the problem was found
   * @param message what is wrong
   */
  constructor(structure: string, offset: number, message: string) {
    super(`Cannot decode ${structure} at byte ${offset}: ${message}`);
    this.name = "DecodeError";
    this.structure = structure;
    this.offset = offset;
  }
}
