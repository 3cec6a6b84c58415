/**
 * Text that comes from processes (names, arguments, paths) made safe to show: any process can name
 * itself anything, including a newline (a fake row) or terminal control sequences (clear the
 * screen, set the window title), and a process monitor's output lands on root's terminal.
 *
 * @module
 */

const hex = (n: number) => n.toString(16).padStart(2, "0");
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Escapes one code point when it could act on a terminal, or a backslash (to stay lossless). */
function escapeCodePoint(cp: number): string | undefined {
  if (cp === 0x5c) return "\\\\";
  if (cp === 0x0a) return "\\n";
  if (cp === 0x09) return "\\t";
  if (cp === 0x0d) return "\\r";
  // C0 controls, DEL, C1 controls (0x80..0x9f: 8-bit CSI and friends), and the line/paragraph
  // separators some terminals and JSON readers treat as line breaks.
  if (cp < 0x20 || cp === 0x7f) return `\\x${hex(cp)}`;
  if (cp >= 0x80 && cp <= 0x9f) return `\\u{${cp.toString(16)}}`;
  if (cp === 0x2028 || cp === 0x2029) return `\\u{${cp.toString(16)}}`;
  return undefined;
}

/**
 * Escapes the characters of `text` that could act on a terminal (control characters, escape
 * sequences, C1 controls) and backslashes, so that it shows as one visible line: a newline becomes
 * `\n`, ESC becomes `\x1b`, U+009B becomes `\u{9b}`, `\` becomes `\\`. Printable text, any script,
 * is left as is.
 *
 * @example
 * ```ts
 * import { escapeText } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * assert.equal(escapeText("evil\n\x1b[2Jrow"), "evil\\n\\x1b[2Jrow");
 * ```
 */
export function escapeText(text: string): string {
  let out = "";
  for (const ch of text) out += escapeCodePoint(ch.codePointAt(0)!) ?? ch;
  return out;
}

/**
 * Bytes as text that is safe to show and lossless: valid UTF-8 decodes (its controls escaped as by
 * {@linkcode escapeText}), every byte that is not part of valid UTF-8 becomes `\xHH`, and `\`
 * becomes `\\`, so the original bytes can always be recovered.
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
  try {
    return escapeText(decoder.decode(bytes));
  } catch {
    // Not valid UTF-8 as a whole: walk it, decoding each well-formed sequence and escaping the rest.
  }
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len > 0 && i + len <= bytes.length) {
      try {
        out += escapeText(decoder.decode(bytes.subarray(i, i + len)));
        i += len;
        continue;
      } catch {
        // fall through: this byte starts no valid sequence
      }
    }
    out += `\\x${hex(b)}`;
    i++;
  }
  return out;
}

/**
 * JSON for one line of NDJSON that is also safe on a terminal: `JSON.stringify` escapes C0 controls
 * but leaves DEL, the C1 controls and U+2028/2029 raw; this escapes them too (as `\u00XX`, which any
 * JSON reader reads back to the same string).
 */
export function safeJson(value: unknown, replacer?: (key: string, value: unknown) => unknown): string {
  return JSON.stringify(value, replacer as (this: unknown, key: string, value: unknown) => unknown)
    .replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
