/**
 * Property tests of every decoder with fast-check: random and mutated inputs throw nothing but
 * DecodeError, decode -> encode -> decode is stable, and no decoder reads outside its input.
 * CNLINK_FUZZ_RUNS sets the cases per property (default 100 000).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import fc from "fast-check";
import {
  type CnMessage,
  constants,
  decodeCnMsg,
  decodeDatagram,
  DecodeError,
  decodeNetlinkHeader,
  decodeSockaddrNl,
  encodeMessage,
  encodeNetlinkHeader,
  encodeSockaddrNl,
  nlmsgAlign,
} from "../mod.ts";
const { NLMSG_DONE } = constants;
import { decodeBytes, decodeProcEvent, encodeProcEvent, type ProcEvent } from "../proc.ts";
import { PROC_ACK, PROC_EXIT, PROC_FORK, USER_MULTICAST, USER_UNICAST } from "./fixtures/golden.ts";
import { recordFigure } from "./_figures.ts";
import { decodeW1Messages, encodeW1Messages, W1_MESSAGE } from "../w1.ts";

const RUNS = Number(process.env.CNLINK_FUZZ_RUNS ?? 100_000);
const params = { numRuns: RUNS };

/** Runs `decode`; a DecodeError becomes the string "DecodeError", anything else is rethrown. */
function outcome<T>(decode: () => T): T | "DecodeError" {
  try {
    return decode();
  } catch (err) {
    if (err instanceof DecodeError) return "DecodeError";
    throw err;
  }
}

/** The same bytes inside a larger buffer full of 0xff: a decoder that reads outside sees them. */
function padded(bytes: Uint8Array): Uint8Array {
  const big = new Uint8Array(bytes.byteLength + 64).fill(0xff);
  big.set(bytes, 32);
  return big.subarray(32, 32 + bytes.byteLength);
}

/** Plain values for comparison (Uint8Array views compare by content). */
function plain(x: unknown): unknown {
  return JSON.parse(JSON.stringify(x, (_k, v) => {
    if (v instanceof Uint8Array) return [...v];
    if (typeof v === "bigint") return `${v}n`;
    return v;
  }));
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const s32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const goldens = [PROC_ACK, PROC_FORK, PROC_EXIT, USER_MULTICAST, USER_UNICAST];

/** A golden datagram with a random mutation: truncation, extension, byte flips, or a length field rewrite. */
const mutated = fc.tuple(
  fc.constantFrom(...goldens),
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
  fc.integer({ min: -80, max: 40 }),
  fc.option(fc.tuple(fc.constantFrom(0, 32), fc.integer({ min: 0, max: 0xffff })), { nil: undefined }),
).map(([golden, flips, resize, lengthField]) => {
  const size = Math.max(0, golden.byteLength + resize);
  const bytes = new Uint8Array(size);
  bytes.set(golden.subarray(0, Math.min(size, golden.byteLength)));
  for (const [at, value] of flips) if (size) bytes[at % size] = value;
  if (lengthField && lengthField[0] + 2 <= size) {
    new DataView(bytes.buffer).setUint16(lengthField[0], lengthField[1], true);
  }
  return bytes;
});

const message = fc.record({
  id: fc.record({ idx: u32, val: u32 }),
  seq: u32,
  ack: u32,
  flags: u16,
  data: fc.uint8Array({ maxLength: 48 }),
});

const procEvent: fc.Arbitrary<ProcEvent> = fc.oneof(
  fc.record({ type: fc.constant("fork" as const), parentPid: s32, parentTgid: s32, childPid: s32, childTgid: s32 }),
  fc.record({ type: fc.constantFrom("exec" as const, "sid" as const), pid: s32, tgid: s32 }),
  fc.record({ type: fc.constant("uid" as const), pid: s32, tgid: s32, ruid: u32, euid: u32 }),
  fc.record({ type: fc.constant("gid" as const), pid: s32, tgid: s32, rgid: u32, egid: u32 }),
  fc.record({ type: fc.constant("ptrace" as const), pid: s32, tgid: s32, tracerPid: s32, tracerTgid: s32 }),
  fc.record({
    type: fc.constant("comm" as const),
    pid: s32,
    tgid: s32,
    // Any bytes but NUL (the kernel pads the name with NULs): comm is their exact text.
    commBytes: fc.uint8Array({ min: 1, maxLength: 15 }),
  }).map((e) => ({ ...e, comm: decodeBytes(e.commBytes) })),
  fc.record({ type: fc.constant("coredump" as const), pid: s32, tgid: s32, parentPid: s32, parentTgid: s32 }),
  fc.record({
    type: fc.constant("exit" as const),
    pid: s32,
    tgid: s32,
    exitCode: u32,
    exitSignal: s32,
    parentPid: s32,
    parentTgid: s32,
  }),
  fc.record({ type: fc.constant("ack" as const), err: u32, ack: fc.constant(0) }),
).chain((fields) =>
  fc.record({ cpu: u32, timestampNs: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }).map((base) =>
    ({ ...fields, ...base, seq: 0 }) as ProcEvent
  )
);

describe(`fuzzing the decoders (${RUNS} cases per property)`, () => {
  test("nlmsghdr: any bytes at any offset decode within bounds or throw DecodeError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(48), (bytes, at) => {
        const r = outcome(() => decodeNetlinkHeader(padded(bytes), at));
        assert.deepEqual(r, outcome(() => decodeNetlinkHeader(bytes.slice(), at)));
        if (r !== "DecodeError") assert.ok(r.length >= 16 && at + r.length <= bytes.byteLength);
      }),
      params,
    );
    recordFigure("fuzz.nlmsghdr.cases", RUNS);
  });

  test("nlmsghdr: encode -> decode returns the fields", () => {
    fc.assert(
      fc.property(fc.record({ type: u16, flags: u16, seq: u32, pid: u32 }), fc.nat(32), (h, extra) => {
        const bytes = new Uint8Array(16 + extra);
        encodeNetlinkHeader(bytes, { ...h, length: 16 + extra });
        assert.deepEqual(decodeNetlinkHeader(bytes), { ...h, length: 16 + extra });
      }),
      params,
    );
  });

  test("cn_msg: any bytes decode within [offset, end) or throw DecodeError; encode -> decode is the identity", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(64), fc.nat(64), (bytes, at, end) => {
        const r = outcome(() => decodeCnMsg(padded(bytes), at, end));
        assert.deepEqual(plain(r), plain(outcome(() => decodeCnMsg(bytes.slice(), at, end))));
        if (r !== "DecodeError") {
          assert.ok(r.data.byteOffset - 32 >= at + 20 || bytes.byteLength === 0);
        }
      }),
      params,
    );
    fc.assert(
      fc.property(message, (m) => {
        assert.deepEqual(plain(decodeCnMsg(encodeMessage(m), 16)), plain(m));
      }),
      params,
    );
    // Every accepted data type is taken as the bytes it covers, at any offset into its buffer.
    const views = [
      (b: Uint8Array) => b,
      (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength),
      (b: Uint8Array) => b.slice().buffer,
      (b: Uint8Array) => new Int8Array(b.buffer, b.byteOffset, b.byteLength),
      (b: Uint8Array) => new Uint8ClampedArray(b.buffer, b.byteOffset, b.byteLength),
      (b: Uint8Array) => new Uint16Array(b.slice(0, b.byteLength & ~1).buffer),
      (b: Uint8Array) => new Int32Array(b.slice(0, b.byteLength & ~3).buffer),
      (b: Uint8Array) => new Float32Array(b.slice(0, b.byteLength & ~3).buffer),
      (b: Uint8Array) => new Float64Array(b.slice(0, b.byteLength & ~7).buffer),
      (b: Uint8Array) => new BigUint64Array(b.slice(0, b.byteLength & ~7).buffer),
    ];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(8), fc.nat(views.length - 1), (raw, skip, kind) => {
        const bytes = raw.subarray(Math.min(skip, raw.byteLength));
        const data = views[kind](bytes);
        const expected = new Uint8Array(ArrayBuffer.isView(data) ? data.buffer : data).slice(
          ArrayBuffer.isView(data) ? data.byteOffset : 0,
          ArrayBuffer.isView(data) ? data.byteOffset + data.byteLength : undefined,
        );
        const decoded = decodeCnMsg(encodeMessage({ id: { idx: 1, val: 2 }, data }), 16);
        assert.deepEqual([...decoded.data], [...expected]);
      }),
      params,
    );
    recordFigure("fuzz.cn_msg.cases", 3 * RUNS);
  });

  test("sockaddr_nl: any bytes decode or throw DecodeError; encode -> decode is the identity", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 16 }), (bytes) => {
        outcome(() => decodeSockaddrNl(padded(bytes)));
      }),
      params,
    );
    fc.assert(
      fc.property(u32, u32, (port, groups) => {
        assert.deepEqual(decodeSockaddrNl(encodeSockaddrNl({ port, groups })), { port, groups });
      }),
      params,
    );
    recordFigure("fuzz.sockaddr_nl.cases", 2 * RUNS);
  });

  test("proc_event: any bytes decode or throw DecodeError; encode -> decode -> encode is stable", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 48 }), u32, (bytes, seq) => {
        const r = outcome(() => decodeProcEvent(padded(bytes), seq));
        assert.deepEqual(plain(r), plain(outcome(() => decodeProcEvent(bytes.slice(), seq))));
      }),
      params,
    );
    fc.assert(
      fc.property(procEvent, (event) => {
        const bytes = encodeProcEvent(event);
        const decoded = decodeProcEvent(bytes, event.seq, event.type === "ack" ? event.ack : 0);
        assert.deepEqual(plain(decoded), plain(event));
        assert.deepEqual(encodeProcEvent(decoded), bytes);
      }),
      params,
    );
    recordFigure("fuzz.proc_event.cases", 2 * RUNS);
  });

  test("w1_netlink_msg: any bytes decode or throw DecodeError within their input; encode -> decode -> encode is stable", () => {
    const command = fc.record({ cmd: fc.integer({ min: 0, max: 255 }), data: fc.uint8Array({ maxLength: 24 }) });
    const w1Message = fc.record({
      type: fc.constantFrom(W1_MESSAGE.MASTER_CMD, W1_MESSAGE.SLAVE_CMD),
      status: fc.integer({ min: 0, max: 255 }),
      id: fc.uint8Array({ minLength: 8, maxLength: 8 }),
      commands: fc.array(command, { maxLength: 4 }),
    });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 96 }),
          fc.array(w1Message, { maxLength: 3 }).map((m) => encodeW1Messages(m)),
        ),
        (bytes) => {
          const r = outcome(() => decodeW1Messages(padded(bytes)));
          assert.deepEqual(plain(r), plain(outcome(() => decodeW1Messages(bytes.slice()))));
        },
      ),
      params,
    );
    fc.assert(
      fc.property(fc.array(w1Message, { maxLength: 3 }), (messages) => {
        const bytes = encodeW1Messages(messages);
        const decoded = decodeW1Messages(bytes);
        assert.deepEqual(
          plain(decoded.map(({ type, status, id, commands }) => ({ type, status, id, commands }))),
          plain(messages),
        );
        assert.deepEqual(encodeW1Messages(decoded), bytes);
      }),
      params,
    );
    recordFigure("fuzz.w1.cases", 2 * RUNS);
  });

  test("datagrams: random and mutated golden bytes throw nothing but DecodeError and read only their input", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 160 }), mutated), (bytes) => {
        const r = outcome(() => decodeDatagram(padded(bytes)));
        assert.deepEqual(plain(r), plain(outcome(() => decodeDatagram(bytes.slice()))));
      }),
      params,
    );
    recordFigure("fuzz.datagram.cases", RUNS);
  });

  test("datagrams: several netlink messages of bundled cn_msgs decode to what was put in, and re-encode the same", () => {
    const nlmsg = fc.tuple(fc.integer({ min: 3, max: 0xffff }), fc.array(message, { minLength: 1, maxLength: 3 }));
    fc.assert(
      fc.property(fc.array(nlmsg, { minLength: 1, maxLength: 4 }), (parts) => {
        const chunks = parts.map(([type, messages]) => {
          const body = messages.map((m) => encodeMessage(m).subarray(16));
          const length = 16 + body.reduce((n, b) => n + b.byteLength, 0);
          const bytes = new Uint8Array(nlmsgAlign(length));
          encodeNetlinkHeader(bytes, { length, type: type === 4 ? NLMSG_DONE : type, flags: 0, seq: 0, pid: 0 });
          let at = 16;
          for (const b of body) {
            bytes.set(b, at);
            at += b.byteLength;
          }
          return bytes;
        });
        const datagram = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
        let at = 0;
        for (const c of chunks) {
          datagram.set(c, at);
          at += c.byteLength;
        }
        const decoded = decodeDatagram(datagram);
        const messages: CnMessage[] = decoded.flatMap((p) => (p.kind === "connector" ? p.messages : []));
        assert.deepEqual(plain(messages), plain(parts.flatMap(([, m]) => m)));
        const again = messages.map((m) => decodeCnMsg(encodeMessage(m), 16));
        assert.deepEqual(plain(again), plain(messages));
      }),
      { numRuns: Math.max(1, Math.floor(RUNS / 5)) },
    );
    recordFigure("fuzz.multi_message.cases", Math.max(1, Math.floor(RUNS / 5)));
  });
});
