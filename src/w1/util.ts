/**
 * Small helpers shared by the 1-Wire device helpers (not exported from `w1.ts`).
 *
 * @module
 */
import { crc16, type W1Id } from "../codec/w1.ts";
import { checkW1RequestOptions } from "./bus.ts";
import type { W1RequestOptions } from "./types.ts";

/** Waits `ms`; rejects with the signal's reason when aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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

/** The `retries` option: a non-negative integer, default 2. */
export function checkRetries(retries: number | undefined): number {
  const n = retries ?? 2;
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`retries must be a non-negative integer, got ${retries}`);
  return n;
}

/** `0x5a`. */
export function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

/** Same bytes. */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}

/** A slave's name for messages. */
export function nameOf(slave: W1Id | string): string {
  return typeof slave === "string" ? slave : slave?.name;
}

/** Whether `crc` (2 bytes, LSB first) is the inverted CRC16 of `bytes`, as Maxim's memory devices send it. */
export function invertedCrcMatches(bytes: Uint8Array, crc: Uint8Array): boolean {
  const expected = ~crc16(bytes) & 0xffff;
  return crc.byteLength === 2 && (crc[0] | (crc[1] << 8)) === expected;
}

/**
 * Checks a helper's options (`timeoutMs`, `signal` and the helper's `extra` keys; an unknown key is
 * a TypeError) and returns them with the request options (timeout and signal only) apart.
 */
export function optionsOf<T extends W1RequestOptions>(
  name: string,
  options: T | undefined,
  extra: readonly string[] = [],
): { opts: T; request: W1RequestOptions } {
  const opts = checkW1RequestOptions(name, options, extra);
  return { opts, request: { timeoutMs: opts.timeoutMs, signal: opts.signal } };
}
