/**
 * The argument contract of every public entry point, in one place (internal). Each check runs before
 * anything happens (no socket, no system call, no library load) and throws:
 *
 * - `TypeError` for a wrong type or shape: an unknown option key (named, with the accepted ones
 *   listed), a 0.1 option shape (with the 0.2 one to write instead), an id that is not
 *   `{ idx, val }`, a `groups` that is not an array, a signal that is not an `AbortSignal`;
 * - `RangeError` for a number out of range: ids (u32), groups (1..32), timeouts (finite,
 *   0 < t <= 2147483647 ms, the most a timer can wait), durations, counts.
 *
 * The wording follows the codec's (`message.id.idx must be an integer in 0..4294967295, got NaN`).
 * Nothing here imports above the codec layer.
 *
 * @module
 */

/** The longest timeout a timer takes (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMEOUT_MS = 0x7fffffff;

/** A value as an error message shows it: numbers as they print, strings quoted, the rest by kind. */
export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "function") return "a function";
  return typeof value === "object" ? "an object" : typeof value;
}

/** 0.1 option keys that moved, and what to write instead (shown in the error). */
export type MovedKeys = Readonly<Record<string, string>>;

/** The 0.1 `{ port }` / `{ group }` options of a send, which 0.2 takes as `{ to: { port } }` / `{ to: { group } }`. */
export const MOVED_TO: MovedKeys = {
  port: "{ to: { port: PORT } } (0.1 took { port }; an options object without to sends to the kernel)",
  group: "{ to: { group: GROUP } } (0.1 took { group }; an options object without to sends to the kernel)",
};

/**
 * Checks that `options` is undefined or a plain object whose own keys are all in `accepted`.
 *
 * @param name how the message names the object: `"options"`, `"to"`, `"Connector.open options"`
 * @param options what the caller passed
 * @param accepted the keys the entry point takes
 * @param moved 0.1 keys that moved, with what to write instead
 * @returns the options, or an empty object for undefined
 * @throws {TypeError} not an object, or an unknown key (named, with the accepted ones listed)
 */
export function checkOptions<T extends object>(
  name: string,
  options: T | undefined,
  accepted: readonly string[],
  moved: MovedKeys = {},
): T {
  if (options === undefined) return {} as T;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`${name} must be an object with some of ${listOf(accepted)}, got ${show(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (accepted.includes(key)) continue;
    if (Object.hasOwn(moved, key)) {
      throw new TypeError(`${name}.${key} is not an option: write ${moved[key]}`);
    }
    throw new TypeError(`${name} has an unknown key "${key}"; the accepted keys are ${listOf(accepted)}`);
  }
  return options;
}

function listOf(keys: readonly string[]): string {
  return keys.length ? keys.join(", ") : "none";
}

/**
 * Checks a u32 integer (an id's `idx` or `val`, a port).
 *
 * @throws {TypeError} not a number
 * @throws {RangeError} not an integer in 0..4294967295
 */
export function checkU32Arg(name: string, value: unknown): number {
  if (typeof value !== "number") throw new TypeError(`${name} must be a number, got ${show(value)}`);
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${name} must be an integer in 0..4294967295, got ${show(value)}`);
  }
  return value;
}

/**
 * Checks an agent's id, `{ idx, val }` with u32 integers (other keys are ignored, as `send` ignores them).
 *
 * @throws {TypeError} not `{ idx: number, val: number }`
 * @throws {RangeError} `idx` or `val` not an integer in 0..4294967295
 */
export function checkId(name: string, id: unknown): { idx: number; val: number } {
  const shape = `${name} must be { idx: number, val: number } (the agent's cb_id)`;
  if (typeof id !== "object" || id === null || Array.isArray(id)) throw new TypeError(`${shape}, got ${show(id)}`);
  const { idx, val } = id as { idx?: unknown; val?: unknown };
  if (typeof idx !== "number" || typeof val !== "number") {
    throw new TypeError(`${shape}, got { idx: ${show(idx)}, val: ${show(val)} }`);
  }
  return { idx: checkU32Arg(`${name}.idx`, idx), val: checkU32Arg(`${name}.val`, val) };
}

/**
 * Checks a multicast group number.
 *
 * @throws {RangeError} not an integer in 1..32 (the connector's multicast groups)
 */
export function checkGroup(value: unknown, name = "group"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 32) {
    throw new RangeError(`${name} must be an integer in 1..32 (the connector's multicast groups), got ${show(value)}`);
  }
  return value;
}

/**
 * Checks a list of groups: undefined, or an array of group numbers.
 *
 * @throws {TypeError} not an array
 * @throws {RangeError} an element outside 1..32
 */
export function checkGroups(value: unknown, name = "groups"): readonly number[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    throw new TypeError(`${name} must be an array of group numbers (1..32), like [${show(value)}], got ${show(value)}`);
  }
  value.forEach((g, i) => checkGroup(g, `${name}[${i}]`));
  return value;
}

/**
 * Checks a signal: undefined or an `AbortSignal`.
 *
 * @throws {TypeError} anything else
 */
export function checkSignal(value: unknown, name = "signal"): AbortSignal | undefined {
  if (value === undefined || value instanceof AbortSignal) return value;
  throw new TypeError(
    `${name} must be an AbortSignal (an AbortController's signal, or AbortSignal.timeout(ms)), got ${show(value)}`,
  );
}

/**
 * Checks a timeout in milliseconds: undefined, or finite with 0 < t <= 2147483647.
 *
 * @throws {TypeError} not a number
 * @throws {RangeError} 0, negative, NaN, Infinity, or beyond what a timer can wait
 */
export function checkTimeout(value: unknown, name = "timeoutMs"): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number") throw new TypeError(`${name} must be a number of milliseconds, got ${show(value)}`);
  if (!(value > 0 && value <= MAX_TIMEOUT_MS)) {
    throw new RangeError(
      `${name} must be a number of milliseconds with 0 < ${name} <= ${MAX_TIMEOUT_MS} (about 24.8 days, ` +
        `the longest a timer waits), got ${show(value)}`,
    );
  }
  return value;
}

/**
 * Checks a duration in milliseconds (a wait that may be 0): undefined, or finite in 0..2147483647.
 *
 * @throws {TypeError} not a number
 * @throws {RangeError} negative, NaN, Infinity, or beyond what a timer can wait
 */
export function checkDuration(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number") throw new TypeError(`${name} must be a number of milliseconds, got ${show(value)}`);
  if (!(value >= 0 && value <= MAX_TIMEOUT_MS)) {
    throw new RangeError(`${name} must be a number of milliseconds in 0..${MAX_TIMEOUT_MS}, got ${show(value)}`);
  }
  return value;
}

/**
 * Checks an integer count: undefined, or an integer in `min`..`max`.
 *
 * @throws {TypeError} not a number
 * @throws {RangeError} not an integer in range
 */
export function checkCount(
  value: unknown,
  name: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number") throw new TypeError(`${name} must be a number, got ${show(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = min === 1 && max === Number.MAX_SAFE_INTEGER ? "a positive integer" : `an integer in ${min}..${max}`;
    throw new RangeError(`${name} must be ${range}, got ${show(value)}`);
  }
  return value;
}

/** The options the clients that own a socket share (Connector, W1Bus): the receive core's, and libc's path. */
export const SOCKET_CLIENT_KEYS = [
  "rcvbuf",
  "libcPath",
  "onError",
  "onOverrun",
  "maxQueued",
  "maxQueuedBytes",
] as const;

/**
 * Checks the values of the {@linkcode SOCKET_CLIENT_KEYS} options, the same way for every client.
 *
 * @throws {TypeError} a wrong type (a hook not a function, `libcPath` not a string)
 * @throws {RangeError} `rcvbuf` outside 1..2^31-1, a queue bound not a positive integer
 */
export function checkSocketClientOptions(opts: { readonly [K in typeof SOCKET_CLIENT_KEYS[number]]?: unknown }): void {
  checkCount(opts.rcvbuf, "rcvbuf", 1, 0x7fffffff);
  checkType(opts.libcPath, "libcPath", "string");
  checkFunction(opts.onError, "onError");
  checkFunction(opts.onOverrun, "onOverrun");
  checkCount(opts.maxQueued, "maxQueued", 1);
  checkCount(opts.maxQueuedBytes, "maxQueuedBytes", 1);
}

/**
 * Checks a function option: undefined or a function.
 *
 * @throws {TypeError} anything else
 */
export function checkFunction(value: unknown, name: string): void {
  if (value !== undefined && typeof value !== "function") {
    throw new TypeError(`${name} must be a function, got ${show(value)}`);
  }
}

/**
 * Checks an option of a given primitive type: undefined or `typeof value === type`.
 *
 * @throws {TypeError} anything else
 */
export function checkType(value: unknown, name: string, type: "boolean" | "string"): void {
  if (value !== undefined && typeof value !== type) {
    throw new TypeError(`${name} must be a ${type}, got ${show(value)}`);
  }
}

/** What {@linkcode parseNumberFlag} accepts. */
export type FlagKind = "u32" | "pid" | "timeout-ms" | "duration-ms" | "seconds";

const FLAG_WANTS: Record<FlagKind, string> = {
  "u32": "an integer in 0..4294967295 (decimal or 0x hex)",
  "pid": "a process id (an integer in 1..2147483647)",
  "timeout-ms": `a number of milliseconds with 0 < N <= ${MAX_TIMEOUT_MS}`,
  "duration-ms": `a number of milliseconds in 0..${MAX_TIMEOUT_MS}`,
  "seconds": `a number of seconds with 0 < N <= ${MAX_TIMEOUT_MS / 1000} (about 24.8 days)`,
};

/**
 * Parses a command-line flag's number: `u32` (ids), `pid`, `timeout-ms`, `duration-ms`, or `seconds`
 * (returned in milliseconds, within what a timer can wait).
 *
 * @throws {TypeError} not a number of that kind, naming the flag: `--idx wants an integer ..., got "foo"`
 */
export function parseNumberFlag(flag: string, text: string, kind: FlagKind): number {
  const n = text.trim() === "" ? NaN : Number(text);
  let ok: boolean;
  switch (kind) {
    case "u32":
      ok = Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
      break;
    case "pid":
      ok = Number.isInteger(n) && n >= 1 && n <= 0x7fffffff;
      break;
    case "timeout-ms":
      ok = n > 0 && n <= MAX_TIMEOUT_MS;
      break;
    case "duration-ms":
      ok = n >= 0 && n <= MAX_TIMEOUT_MS;
      break;
    case "seconds":
      ok = n > 0 && n * 1000 <= MAX_TIMEOUT_MS;
      break;
  }
  if (!ok) throw new TypeError(`${flag} wants ${FLAG_WANTS[kind]}, got ${JSON.stringify(text)}`);
  return kind === "seconds" ? n * 1000 : n;
}

/**
 * Bytes, as every method of the library takes them (`Connector.send` and `request` data, 1-Wire
 * `write` and `touch`): a `Uint8Array` (or any other typed array or `DataView`, taken as the bytes it
 * covers), an `ArrayBuffer`, or an array of integers 0..255.
 */
export type ByteInput = ArrayBufferView | ArrayBufferLike | readonly number[];

/**
 * The bytes of a {@linkcode ByteInput}: a Uint8Array as is, another view or a buffer as a Uint8Array
 * over the same memory, an array of integers 0..255 copied into a new one.
 *
 * @throws {TypeError} not one of those, or an array element that is not a number
 * @throws {RangeError} an array element that is not an integer in 0..255
 */
export function checkBytes(value: unknown, name: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof SharedArrayBuffer !== "undefined" && value instanceof SharedArrayBuffer) return new Uint8Array(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const b: unknown = value[i];
      if (typeof b !== "number") throw new TypeError(`${name}[${i}] must be a byte (a number 0..255), got ${show(b)}`);
      if (!Number.isInteger(b) || b < 0 || b > 255) {
        throw new RangeError(`${name}[${i}] must be a byte (an integer in 0..255), got ${show(b)}`);
      }
    }
    return Uint8Array.from(value);
  }
  throw new TypeError(
    `${name} must be a Uint8Array, another typed array, a DataView, an ArrayBuffer or an array of bytes, got ${
      show(value)
    }`,
  );
}
