/**
 * Text that comes from processes (names, arguments, paths, cgroups, user names): kept exact, shown
 * safely. Any process can name itself anything, including a newline (a fake row), terminal control
 * sequences (clear the screen, set the window title), bidi overrides (`\u202Etxt.exe` shows as
 * `exe.txt`) and bytes that are not UTF-8, and a process monitor's output lands on root's terminal.
 *
 * - {@linkcode decodeBytes}: bytes to an exact string (invalid UTF-8 kept as lone surrogates);
 *   {@linkcode encodeText} turns it back into the same bytes.
 * - {@linkcode escapeText}: the one escaping for display, applied where text is printed.
 * - {@linkcode safeJson}: NDJSON that round-trips the exact bytes and is itself safe on a terminal.
 *
 * @module
 */

const hex = (n: number) => n.toString(16).padStart(2, "0");
// ignoreBOM: a leading U+FEFF is part of the text (by default TextDecoder drops it, losing 3 bytes).
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The length of the well-formed UTF-8 sequence at `bytes[i]`, or 0 when none starts there (the
 * Unicode "well-formed byte sequences" table: no overlongs, no surrogates, nothing above U+10FFFF).
 */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i];
  if (b < 0x80) return 1;
  const n = bytes.length - i;
  if (b < 0xc2 || b > 0xf4) return 0;
  const b1 = n > 1 ? bytes[i + 1] : 0;
  if (b < 0xe0) return b1 >= 0x80 && b1 <= 0xbf ? 2 : 0;
  const lo = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
  const hi = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
  if (b1 < lo || b1 > hi) return 0;
  const b2 = n > 2 ? bytes[i + 2] : 0;
  if (b2 < 0x80 || b2 > 0xbf) return 0;
  if (b < 0xf0) return 3;
  const b3 = n > 3 ? bytes[i + 3] : 0;
  return b3 >= 0x80 && b3 <= 0xbf ? 4 : 0;
}

/**
 * Bytes as an exact string: valid UTF-8 decodes as is (controls included: nothing is escaped here),
 * and each byte that is not part of valid UTF-8 becomes the lone surrogate U+DC80 + (byte - 0x80)
 * (0xff becomes U+DCFF; Python calls this "surrogateescape"). Valid UTF-8 never decodes to a
 * surrogate, so {@linkcode encodeText} gives back the same bytes. Linear time: valid UTF-8 in one
 * `TextDecoder` call, anything else in one pass over the bytes.
 *
 * @example
 * ```ts
 * import { decodeBytes, encodeText } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array([0x6f, 0x6b, 0xff, 0x0a]);
 * assert.equal(decodeBytes(bytes), "ok\udcff\n");
 * assert.deepEqual(encodeText(decodeBytes(bytes)), bytes);
 * ```
 */
export function decodeBytes(bytes: Uint8Array): string {
  // Short ASCII (most names, arguments, paths) in JS: cheaper than a call into the runtime's decoder.
  if (bytes.length <= 64) {
    let text = "";
    let i = 0;
    for (; i < bytes.length && bytes[i] < 0x80; i++) text += String.fromCharCode(bytes[i]);
    if (i === bytes.length) return text;
  }
  try {
    return strict.decode(bytes);
  } catch {
    // Not valid UTF-8 as a whole: decode by hand, each byte outside a valid sequence as a lone surrogate.
  }
  // UTF-16 code units, then strings of up to 8192 of them at a time (arguments to fromCharCode).
  const units = new Uint16Array(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    const len = sequenceLength(bytes, i);
    if (len === 1) units[n++] = b;
    else if (len === 2) units[n++] = ((b & 0x1f) << 6) | (bytes[i + 1] & 0x3f);
    else if (len === 3) units[n++] = ((b & 0x0f) << 12) | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f);
    else if (len === 4) {
      const cp = ((b & 0x07) << 18) | ((bytes[i + 1] & 0x3f) << 12) | ((bytes[i + 2] & 0x3f) << 6) |
        (bytes[i + 3] & 0x3f);
      units[n++] = 0xd800 + ((cp - 0x10000) >> 10);
      units[n++] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
    } else units[n++] = 0xdc00 + b;
    i += len || 1;
  }
  let out = "";
  for (let at = 0; at < n; at += 8192) {
    out += String.fromCharCode.apply(null, units.subarray(at, Math.min(n, at + 8192)) as unknown as number[]);
  }
  return out;
}

const encoder = new TextEncoder();
const ESCAPED_BYTE = /[\udc80-\udcff]/;

/**
 * The bytes a string from {@linkcode decodeBytes} came from: UTF-8, with each lone surrogate U+DC80..
 * U+DCFF back as the byte it stands for. (Other lone surrogates, which no bytes decode to, become
 * U+FFFD's bytes, as in `TextEncoder`.)
 *
 * @example
 * ```ts
 * import { encodeText } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(encodeText("a\udcffb"), new Uint8Array([0x61, 0xff, 0x62]));
 * ```
 */
export function encodeText(text: string): Uint8Array {
  if (!ESCAPED_BYTE.test(text)) return encoder.encode(text);
  const parts: Uint8Array[] = [];
  let size = 0;
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const u = text.charCodeAt(i);
    if (u >= 0xdc80 && u <= 0xdcff && !(i > 0 && isHigh(text.charCodeAt(i - 1)))) {
      const before = encoder.encode(text.slice(run, i));
      parts.push(before, new Uint8Array([u - 0xdc00]));
      size += before.length + 1;
      run = i + 1;
    }
  }
  const rest = encoder.encode(text.slice(run));
  parts.push(rest);
  size += rest.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const isHigh = (u: number) => u >= 0xd800 && u <= 0xdbff;

/**
 * What escapeText escapes: the backslash (so that escaping stays reversible), control characters
 * (C0, DEL, C1: Unicode category Cc), format characters (Cf: bidi embeddings, overrides and
 * isolates U+202A..U+202E and U+2066..U+2069, LRM/RLM, zero-width characters, soft hyphen, BOM,
 * ...), the line and paragraph separators U+2028/U+2029, and lone surrogates (invalid UTF-8 kept by
 * decodeBytes).
 */
const UNSAFE = /[\\\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

// The escape of each BMP code unit that has one, made once.
const bmpEscapes: string[] = [];

function escapeOf(ch: string): string {
  const cp = ch.codePointAt(0)!;
  switch (cp) {
    case 0x5c:
      return "\\\\";
    case 0x0a:
      return "\\n";
    case 0x09:
      return "\\t";
    case 0x0d:
      return "\\r";
  }
  if (cp < 0x20 || cp === 0x7f) return `\\x${hex(cp)}`;
  // A byte that was not UTF-8 (see decodeBytes).
  if (cp >= 0xdc80 && cp <= 0xdcff) return `\\x${hex(cp - 0xdc00)}`;
  return `\\u{${cp.toString(16)}}`;
}

/**
 * Text as one visible line that nothing in it can act on: the one escaping every text mode of
 * procmon applies to what a process chose. A newline becomes `\n` (also `\t`, `\r`), other C0
 * controls and DEL `\xHH`, a byte that was not UTF-8 (a lone surrogate from
 * {@linkcode decodeBytes}) `\xHH`, C1 controls, format characters (bidi overrides and isolates,
 * LRM/RLM, zero-width characters, ...; Unicode category Cf) and U+2028/2029 `\u{H...}`, and `\`
 * becomes `\\`, so the escaped form is unambiguous. Printable text, any script, is left as is.
 * Linear time; text with nothing to escape is returned as is.
 *
 * @example
 * ```ts
 * import { escapeText } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(escapeText("evil\n\x1b[2Jrow"), "evil\\n\\x1b[2Jrow");
 * assert.equal(escapeText("\u202Etxt.exe"), "\\u{202e}txt.exe");
 * assert.equal(escapeText("caf\udce9"), "caf\\xe9"); // the byte 0xe9 alone: not UTF-8
 * ```
 */
export function escapeText(text: string): string {
  if (!UNSAFE.test(text)) return text;
  const unsafe = bmpTable ??= unsafeBmp();
  let out = "";
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const u = text.charCodeAt(i);
    let width = 1;
    let escape: boolean;
    if (u >= 0xd800 && u <= 0xdbff && isLow(text.charCodeAt(i + 1))) {
      width = 2; // an astral character: a few are format characters (U+E0001 tags, ...)
      escape = UNSAFE.test(text.slice(i, i + 2));
    } else escape = (u >= 0xd800 && u <= 0xdfff) || unsafe[u] === 1;
    if (escape) {
      if (run < i) out += text.slice(run, i);
      out += width === 1 ? (bmpEscapes[u] ??= escapeOf(text[i])) : escapeOf(text.slice(i, i + 2));
      run = i + width;
    }
    i += width - 1;
  }
  return out + text.slice(run);
}

const isLow = (u: number) => u >= 0xdc00 && u <= 0xdfff;

/** 1 for each BMP code unit UNSAFE matches (surrogates aside): one table lookup per character. */
let bmpTable: Uint8Array | undefined;
function unsafeBmp(): Uint8Array {
  const table = new Uint8Array(0x10000);
  for (let u = 0; u < 0x10000; u++) {
    if ((u < 0xd800 || u > 0xdfff) && UNSAFE.test(String.fromCharCode(u))) table[u] = 1;
  }
  return table;
}

/**
 * Bytes as text that is safe to show and lossless: `escapeText(decodeBytes(bytes))`. Valid UTF-8
 * decodes (its controls and format characters escaped), every byte that is not part of valid UTF-8
 * becomes `\xHH`, and `\` becomes `\\`.
 *
 * @example A comm that is not valid UTF-8
 * ```ts
 * import { escapeBytes } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const comm = new Uint8Array([0xff, 0xfe, 0x62, 0x61, 0x64, 0xc3, 0x75, 0x74, 0x66, 0x38]);
 * assert.equal(escapeBytes(comm), "\\xff\\xfebad\\xc3utf8");
 * ```
 */
export function escapeBytes(bytes: Uint8Array): string {
  return escapeText(decodeBytes(bytes));
}

const LONE_SURROGATE = /\p{Cs}/u;

/** Base64 of bytes, in chunks (String.fromCharCode takes a limited number of arguments). */
function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * How a string a process chose goes into JSON: the string itself when it is valid UTF-8 (a JSON
 * string holds any text exactly, controls included), else `{ "base64": "..." }` holding its exact
 * bytes (a string from {@linkcode decodeBytes} with bytes that are not UTF-8).
 *
 * @example
 * ```ts
 * import { jsonText } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(jsonText("tab\there"), "tab\there");
 * assert.deepEqual(jsonText("caf\udce9"), { base64: "Y2Fm6Q==" });
 * ```
 */
export function jsonText(text: string): string | { base64: string } {
  return LONE_SURROGATE.test(text) ? { base64: base64(encodeText(text)) } : text;
}

/** Everything escapeText escapes except the backslash (JSON escapes it already). */
const JSON_UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/**
 * JSON for one line of NDJSON that is exact and also safe on a terminal. Every string goes through
 * {@linkcode jsonText} (text that is not UTF-8 becomes `{ "base64": ... }`), so parsing the line gives
 * back the exact bytes; and every control or format character is written as a `\uXXXX` escape
 * (`JSON.stringify` leaves DEL, C1 controls, bidi overrides and U+2028/2029 raw), which any JSON
 * reader reads back to the same string. `replacer` runs first (e.g. for bigints).
 *
 * @example
 * ```ts
 * import { safeJson } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const line = safeJson({ arg: "\u202Eexe\u009b", comm: "a\udcff" });
 * assert.equal(line, '{"arg":"\\u202eexe\\u009b","comm":{"base64":"Yf8="}}');
 * assert.deepEqual(JSON.parse(line).arg, "\u202Eexe\u009b");
 * ```
 */
export function safeJson(value: unknown, replacer?: (key: string, value: unknown) => unknown): string {
  return JSON.stringify(value, function (this: unknown, key: string, v: unknown) {
    const out = replacer ? replacer.call(this, key, v) : v;
    return typeof out === "string" ? jsonText(out) : out;
  }).replace(JSON_UNSAFE, (c) => {
    let s = "";
    // An astral format character (U+E0001 tags, ...) is a surrogate pair in JSON.
    for (let i = 0; i < c.length; i++) s += `\\u${c.charCodeAt(i).toString(16).padStart(4, "0")}`;
    return s;
  });
}
