/**
 * Text a process chose, from its bytes to the terminal and to JSON: exact in the library, escaped by
 * one function in every text mode of procmon, exact bytes in NDJSON. Fuzzed with fast-check over the
 * bytes of argv, comm, exe, cgroup names and user names (CNLINK_TEXT_FUZZ_RUNS cases, default 1000;
 * five times as many for the escaping alone).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import fc from "fast-check";
import {
  CMDLINE_LIMIT,
  decodeBytes,
  encodeText,
  escapeBytes,
  escapeText,
  type FileReader,
  jsonText,
  type ProcessInfo,
  procReader,
  readProcessInfo,
  safeJson,
} from "../proc.ts";
import type { ProcMonitorItem } from "../src/proc/monitor.ts";
import { type NameStyle, statsRow, toJson, toText, TRUNCATED } from "../src/procmon/format.ts";
import { recordFigure } from "./_figures.ts";

const RUNS = Number(process.env.CNLINK_TEXT_FUZZ_RUNS ?? 1000);
const utf8 = new TextEncoder();

/** What must never reach a terminal: controls, format characters (bidi, ...), separators, lone surrogates. */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

/** Reverses escapeText + encodeText: the bytes an escaped display form stands for. */
function unescape(shown: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < shown.length;) {
    if (shown[i] !== "\\") {
      const cp = shown.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      out.push(...utf8.encode(ch));
      i += ch.length;
      continue;
    }
    const next = shown[i + 1];
    if (next === "\\") out.push(0x5c), i += 2;
    else if (next === "n") out.push(0x0a), i += 2;
    else if (next === "t") out.push(0x09), i += 2;
    else if (next === "r") out.push(0x0d), i += 2;
    else if (next === "x") out.push(parseInt(shown.slice(i + 2, i + 4), 16)), i += 4;
    else if (next === "u") {
      const end = shown.indexOf("}", i);
      out.push(...utf8.encode(String.fromCodePoint(parseInt(shown.slice(i + 3, end), 16))));
      i = end + 1;
    } else throw new Error(`not an escape at ${i}: ${shown}`);
  }
  return new Uint8Array(out);
}

/** The characters that did harm in the tester's report, and their relatives. */
const HOSTILE = [
  "\x1b]0;PWNED\x07",
  "\x1b[2J",
  "\n",
  "\r",
  "\x7f",
  "\u009b",
  "\u0085",
  "\u202e",
  "\u202a",
  "\u2066",
  "\u2069",
  "\u200e",
  "\u200f",
  "\u200b",
  "\u2028",
  "\u2029",
  "\u00ad",
  "\ufeff",
  "\u061c",
  "\u{e0001}",
  "\\",
  "名前",
  "é",
];

/** Bytes a process may choose: pieces of hostile text, any code point, and any bytes (not UTF-8). */
const hostileBytes = (maxLength: number) =>
  fc.array(
    fc.oneof(
      fc.constantFrom(...HOSTILE).map((s) => utf8.encode(s)),
      fc.string({ unit: "binary", maxLength: 4 }).map((s) => utf8.encode(s)),
      fc.uint8Array({ minLength: 1, maxLength: 4 }),
    ),
    { maxLength },
  ).map((parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) out.set(p, at), at += p.length;
    return out;
  });
const noNul = (bytes: Uint8Array) => bytes.map((b) => (b === 0 ? 0x30 : b));

/** A FileReader serving one fake process's /proc files. */
function fakeProc(files: Record<string, Uint8Array>): FileReader {
  return {
    read: (path, limit) => files[path]?.subarray(0, limit) ?? null,
    readlink: (path) => files[path] ?? null,
    list: () => null,
  };
}

/** `parts` with a `sep` byte between each two. */
function join(parts: Uint8Array[], sep: number): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length + 1, -1));
  let at = 0;
  parts.forEach((p, i) => {
    if (i > 0) out[at++] = sep;
    out.set(p, at);
    at += p.length;
  });
  return out;
}

describe("escapeText, decodeBytes, jsonText", () => {
  test("bidi overrides and isolates, LRM/RLM, zero-width and other format characters show as \\u{...}", () => {
    assert.equal(escapeText("\u202Etxt.exe"), "\\u{202e}txt.exe");
    assert.equal(
      escapeText("a\u2066b\u2069c\u200e\u200f\u200b\u00ad\ufeff"),
      "a\\u{2066}b\\u{2069}c\\u{200e}\\u{200f}\\u{200b}\\u{ad}\\u{feff}",
    );
    assert.equal(escapeText("tag\u{e0001}"), "tag\\u{e0001}");
    assert.equal(escapeText("ünïcödé 名前 🙂 ok"), "ünïcödé 名前 🙂 ok", "printable text of any script stays");
  });

  test("bytes that are not UTF-8 stay bytes: \\xHH on display, exact through decodeBytes/encodeText", () => {
    const bytes = new Uint8Array([0x63, 0x67, 0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xf0, 0x9f, 0x99, 0x82, 0xe2, 0x82]);
    const text = decodeBytes(bytes);
    assert.equal(text, "cg\udcff\udcc3(\udced\udca0\udc80🙂\udce2\udc82");
    assert.deepEqual(encodeText(text), bytes);
    assert.equal(escapeText(text), "cg\\xff\\xc3(\\xed\\xa0\\x80🙂\\xe2\\x82");
    assert.ok(!text.includes("\ufffd"), "never U+FFFD");
  });

  test("an escaped byte right after an astral character is not read as half of it", () => {
    // U+10080 is D800 DC80 in UTF-16: its low half is in the range used for escaped bytes.
    const bytes = new Uint8Array([...utf8.encode("\u{10080}"), 0x80]);
    assert.equal(decodeBytes(bytes), "\u{10080}\udc80");
    assert.deepEqual(encodeText(decodeBytes(bytes)), bytes);
  });

  test("JSON: a string when valid UTF-8 (controls as \\u escapes), else { base64 } of the exact bytes", () => {
    assert.equal(jsonText("a\nb"), "a\nb");
    assert.deepEqual(jsonText(decodeBytes(new Uint8Array([0x61, 0xff]))), { base64: "Yf8=" });
    const line = safeJson({ a: "\u202eexe\x1b\u2028", b: decodeBytes(new Uint8Array([0xc3])) });
    assert.equal(line, '{"a":"\\u202eexe\\u001b\\u2028","b":{"base64":"ww=="}}');
  });

  test("the worst command line we read (64 KiB: every byte escaped, half not UTF-8) takes milliseconds", () => {
    const worst = new Uint8Array(CMDLINE_LIMIT).map((_, i) => (i % 2 ? 0xff : 0x1b));
    const plain = new Uint8Array(CMDLINE_LIMIT).fill(0x61);
    assert.equal(escapeBytes(worst).length, CMDLINE_LIMIT * 4);
    const time = (bytes: Uint8Array) => {
      let best = Infinity;
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        escapeBytes(bytes);
        best = Math.min(best, performance.now() - t0);
      }
      return best;
    };
    const worstMs = time(worst);
    const plainMs = time(plain);
    recordFigure("text.escape64kWorstMs", Math.round(worstMs * 10) / 10);
    recordFigure("text.escape64kPlainMs", Math.round(plainMs * 100) / 100);
    assert.ok(worstMs < 100, `worst case took ${worstMs.toFixed(1)} ms`);
    assert.ok(plainMs < 10, `plain ASCII took ${plainMs.toFixed(2)} ms`);
  });
});

describe("readProcessInfo keeps bytes exact and bounded", () => {
  test(`a command line over ${CMDLINE_LIMIT} bytes is cut there and says so; shorter ones are whole`, () => {
    const arg = new Uint8Array(64 * 1024 - 1).fill(0x78);
    const huge = join([utf8.encode("sh"), ...Array.from({ length: 29 }, () => arg)], 0);
    const cut = readProcessInfo(1, 0n, fakeProc({ "/proc/1/cmdline": huge }));
    assert.equal(cut.cmdlineTruncated, true);
    const kept = cut.cmdline!.reduce((n, a) => n + encodeText(a).length + 1, 0) - 1;
    assert.equal(kept, CMDLINE_LIMIT, "exactly the limit is kept");
    assert.equal(cut.cmdline![0], "sh");
    const exact = new Uint8Array(CMDLINE_LIMIT).fill(0x61);
    const whole = readProcessInfo(1, 0n, fakeProc({ "/proc/1/cmdline": exact }));
    assert.equal(whole.cmdlineTruncated, undefined, "a command line of exactly the limit is whole");
    const shown = toText(execOf(cut), { timeMs: 0, depth: 0, process: cut }, {
      colour: false,
      tree: false,
      extra: false,
      names: "cmdline",
    });
    assert.ok(shown.endsWith(TRUNCATED), "the text line says it was cut");
    assert.equal(JSON.parse(toJson(execOf(cut), { timeMs: 0, depth: 0, process: cut })).process.cmdlineTruncated, true);
  });

  test("without a clock offset the start time is left out, not guessed", () => {
    const stat = utf8.encode("1 (x) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0");
    assert.equal(readProcessInfo(1, undefined, fakeProc({ "/proc/1/stat": stat })).startNs, undefined);
    assert.equal(readProcessInfo(1, 5n, fakeProc({ "/proc/1/stat": stat })).startNs, 123_450_000_000n - 5n);
  });

  test("stat: a name with ') (' and spaces, a negative tpgid and priority; parent, terminal, state, start", () => {
    // A name may hold anything but NUL and newline; the fields start after its last ")". tty_nr
    // 34816 is /dev/pts/0 (major 136); tpgid -1; priority -21 (a real-time thread).
    const stat = utf8.encode("42 (a) (b c) R 7 42 42 34816 -1 4194560 0 0 0 0 0 0 0 0 -21 0 1 0 98765 0 0\n");
    const files = fakeProc({ "/proc/42/stat": stat });
    const info = readProcessInfo(42, 0n, files);
    assert.equal(info.ppid, 7);
    assert.equal(info.tty, "pts/0");
    assert.equal(info.startNs, 987_650_000_000n);
    assert.ok(!info.missing?.includes("stat"));
    assert.deepEqual(procReader(files).stat(42, 0n), { state: "R", ppid: 7, startNs: 987_650_000_000n });
    const garbage = fakeProc({ "/proc/42/stat": utf8.encode("no name here") });
    assert.ok(readProcessInfo(42, 0n, garbage).missing?.includes("stat"), "a line without a name is no stat");
    assert.equal(procReader(garbage).stat(42, 0n), undefined);
    // A task already unhashed in its exit: the kernel prints parent 0 (seen on 6.18 for a /bin/true
    // read at its exec, while it exited). Not a parent; init's 0 is.
    const dying = utf8.encode("42 (true) X 0 0 0 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0\n");
    assert.equal(readProcessInfo(42, 0n, fakeProc({ "/proc/42/stat": dying })).ppid, undefined);
    assert.equal(procReader(fakeProc({ "/proc/42/stat": dying })).stat(42, 0n), undefined, "gone");
    const init = utf8.encode("1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n");
    assert.equal(readProcessInfo(1, 0n, fakeProc({ "/proc/1/stat": init })).ppid, 0);
    const cut = fakeProc({ "/proc/42/stat": utf8.encode("42 (a) R 7 42 42 34816 -1 4194560 0 0") });
    assert.ok(readProcessInfo(42, 0n, cut).missing?.includes("stat"), "a line cut before the start time is no stat");
  });
});

function execOf(p: ProcessInfo): ProcMonitorItem {
  return { type: "exec", cpu: 0, timestampNs: 1n, seq: 0, pid: p.pid, tgid: p.pid };
}

const STYLES: NameStyle[] = ["cmdline", "comm", "strip-dir", "short"];

describe(`fuzzing what processes choose (${RUNS} cases)`, () => {
  test("no text mode prints a control, format or bidi character or a lone surrogate; escapes read back to the bytes", () => {
    fc.assert(
      fc.property(
        fc.array(hostileBytes(6).map(noNul), { minLength: 1, maxLength: 4 }),
        hostileBytes(5).map(noNul),
        hostileBytes(6),
        hostileBytes(6).map((b) => b.map((x) => (x === 0x0a || x === 0 ? 0x2f : x))),
        hostileBytes(4),
        (argv, comm, exe, cgroupName, user) => {
          const files = fakeProc({
            "/proc/7/cmdline": join([...argv, new Uint8Array()], 0),
            "/proc/7/comm": new Uint8Array([...comm.subarray(0, 15), 0x0a]),
            "/proc/7/exe": exe,
            "/proc/7/cgroup": new Uint8Array([
              ...utf8.encode("0::/x.slice/"),
              ...cgroupName,
              ...utf8.encode(".service\n"),
            ]),
          });
          const p = readProcessInfo(7, 0n, files);
          p.user = decodeBytes(user);
          // Exact in the library.
          assert.deepEqual(p.cmdline!.map(encodeText), argv);
          assert.deepEqual(encodeText(p.comm!), comm.subarray(0, 15));
          assert.deepEqual(encodeText(p.exe!), exe);
          const commEvent: ProcMonitorItem = {
            type: "comm",
            cpu: 0,
            timestampNs: 2n,
            seq: 0,
            pid: 7,
            tgid: 7,
            comm: p.comm!,
            commBytes: comm.subarray(0, 15),
          };
          const exit: ProcMonitorItem = {
            type: "exit",
            cpu: 0,
            timestampNs: 3n,
            seq: 0,
            pid: 7,
            tgid: 7,
            exitCode: 0,
            exitSignal: 17,
            parentPid: 1,
            parentTgid: 1,
          };
          const lines: string[] = [];
          for (const item of [execOf(p), commEvent, exit]) {
            for (const names of STYLES) {
              for (const extra of [false, true]) {
                const ctx = { timeMs: 0, depth: 2, process: p, durationNs: 5n };
                lines.push(toText(item, ctx, { colour: false, tree: true, extra, names }));
              }
            }
            // --no-enrich: no process, what the event says.
            lines.push(
              toText(item, { timeMs: 0, depth: 0 }, {
                colour: false,
                tree: false,
                extra: false,
                names: "cmdline",
                enriched: false,
              }),
            );
          }
          lines.push(statsRow([1, 2, 3], p.cmdline![0]), statsRow([1], p.comm!));
          for (const line of lines) {
            assert.doesNotMatch(line, UNSAFE);
            assert.doesNotMatch(line, /\n/);
          }
          // The escaped forms read back to the exact bytes.
          const [first] = lines;
          for (const arg of argv) assert.ok(first.includes(escapeText(decodeBytes(arg))));
          assert.deepEqual(unescape(escapeText(decodeBytes(exe))), exe);
          assert.deepEqual(unescape(escapeText(p.cgroup!)), encodeText(p.cgroup!));
          // JSON: safe on a terminal, and the exact bytes back.
          for (const item of [execOf(p), commEvent]) {
            const line = toJson(item, { timeMs: 0, depth: 0, process: p });
            assert.doesNotMatch(line, UNSAFE);
            const parsed = JSON.parse(line);
            const bytesOf = (v: string | { base64: string }) =>
              typeof v === "string" ? utf8.encode(v) : Uint8Array.from(atob(v.base64), (c) => c.charCodeAt(0));
            assert.deepEqual(parsed.process.cmdline.map(bytesOf), argv);
            assert.deepEqual(bytesOf(parsed.process.exe), exe);
            assert.deepEqual(bytesOf(parsed.process.comm), comm.subarray(0, 15));
            assert.deepEqual(bytesOf(parsed.process.user), user);
            assert.deepEqual(bytesOf(parsed.process.cgroup), encodeText(p.cgroup!));
            if (item.type === "comm") assert.deepEqual(bytesOf(parsed.comm), comm.subarray(0, 15));
          }
        },
      ),
      { numRuns: RUNS },
    );
    recordFigure("text.fuzzCases", RUNS);
  });

  test("escapeText(decodeBytes(bytes)) of any bytes is safe and reads back to them", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), hostileBytes(16)), (bytes) => {
        const shown = escapeBytes(bytes);
        assert.doesNotMatch(shown, UNSAFE);
        assert.deepEqual(unescape(shown), bytes);
        assert.deepEqual(encodeText(decodeBytes(bytes)), bytes);
      }),
      { numRuns: RUNS * 5 },
    );
  });
});
