import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { decodeCnMsg, DecodeError } from "../mod.ts";
import {
  decodeProcEvent,
  encodeProcEvent,
  encodeText,
  escapeBytes,
  escapeText,
  eventMask,
  isThread,
  passes,
  PROC_EVENT_ALL,
  PROC_EVENT_EXIT,
  PROC_EVENT_NONZERO_EXIT,
  type ProcEvent,
  waitStatus,
} from "../proc.ts";
import { safeJson } from "../src/proc/text.ts";
import { PROC_EVENT_DATA, PROC_EVENT_MIN_DATA } from "../src/codec/proc.ts";
import * as G from "./fixtures/golden_proc.ts";
import { PROC_ACK } from "./fixtures/golden.ts";

/** Decodes the proc_event of a golden datagram, dropping the timestamp/cpu/seq for comparison. */
function fields(datagram: Uint8Array): Record<string, unknown> {
  const m = decodeCnMsg(datagram, 16);
  const { cpu: _c, timestampNs: _t, seq: _s, ...rest } = decodeProcEvent(m.data, m.seq, m.ack);
  return rest;
}

describe("golden process events from the kernel", () => {
  const P = 4421; // the capturing python3
  test("fork of a child process: real parent and child pid/tgid", () => {
    assert.deepEqual(fields(G.EXIT3_FORK), {
      type: "fork",
      parentPid: P,
      parentTgid: P,
      childPid: 4462,
      childTgid: 4462,
    });
  });
  test("exec", () => assert.deepEqual(fields(G.EXIT3_EXEC), { type: "exec", pid: 4462, tgid: 4462 }));
  test("exit of `exit 3`: wait status 768, SIGCHLD, parent", () => {
    assert.deepEqual(fields(G.EXIT3_EXIT), {
      type: "exit",
      pid: 4462,
      tgid: 4462,
      exitCode: 768,
      exitSignal: 17,
      parentPid: P,
      parentTgid: P,
    });
  });
  test("uid and gid changes by setpriv carry real and effective ids", () => {
    assert.deepEqual(fields(G.SETPRIV_UID), { type: "uid", pid: 4463, tgid: 4463, ruid: 1, euid: 1 });
    assert.deepEqual(fields(G.SETPRIV_GID), { type: "gid", pid: 4463, tgid: 4463, rgid: 1, egid: 1 });
  });
  test("sid", () => assert.deepEqual(fields(G.SETPRIV_SID), { type: "sid", pid: 4463, tgid: 4463 }));
  test("comm written to /proc/self/comm keeps the newline echo wrote: exact in comm and commBytes", () => {
    assert.deepEqual(fields(G.COMM_COMM), {
      type: "comm",
      pid: 4464,
      tgid: 4464,
      comm: "renamed\n",
      commBytes: new TextEncoder().encode("renamed\n"),
    });
  });
  test("coredump names the parent", () => {
    assert.deepEqual(fields(G.SEGV_COREDUMP), {
      type: "coredump",
      pid: 4465,
      tgid: 4465,
      parentPid: P,
      parentTgid: P,
    });
    const exit = fields(G.SEGV_EXIT);
    assert.equal(exit.exitCode, 11);
    assert.deepEqual(waitStatus(exit.exitCode as number), { exited: false, signal: 11, coreDumped: false });
  });
  test("ptrace attach names the tracer, detach zeroes it", () => {
    assert.deepEqual(fields(G.PTRACED_PTRACE), {
      type: "ptrace",
      pid: 4466,
      tgid: 4466,
      tracerPid: P,
      tracerTgid: P,
    });
    assert.deepEqual(fields(G.PTRACED_PTRACE_DETACH), {
      type: "ptrace",
      pid: 4466,
      tgid: 4466,
      tracerPid: 0,
      tracerTgid: 0,
    });
  });
  test("a thread's fork has pid != tgid and names the process's real parent (the shell)", () => {
    const m = decodeCnMsg(G.THREAD_FORK, 16);
    const e = decodeProcEvent(m.data, m.seq);
    assert.deepEqual(fields(G.THREAD_FORK), {
      type: "fork",
      parentPid: 4378,
      parentTgid: 4378,
      childPid: 4467,
      childTgid: P,
    });
    assert.equal(isThread(e), true);
    assert.deepEqual(fields(G.THREAD_COMM), {
      type: "comm",
      pid: 4467,
      tgid: P,
      comm: "worker",
      commBytes: new TextEncoder().encode("worker"),
    });
  });
  test("a thread's exit has exit_signal -1 and parent 0/0", () => {
    assert.deepEqual(fields(G.THREAD_EXIT), {
      type: "exit",
      pid: 4365,
      tgid: 4319,
      exitCode: 0,
      exitSignal: -1,
      parentPid: 0,
      parentTgid: 0,
    });
  });
  test("the LISTEN ack: err 0 and ack = request ack + 1", () => {
    assert.deepEqual(fields(PROC_ACK), { type: "ack", ack: 0x1235, err: 0 });
  });
  test("cpu, timestamp and seq come from the datagram", () => {
    const m = decodeCnMsg(G.EXIT3_EXIT, 16);
    const e = decodeProcEvent(m.data, m.seq);
    assert.equal(e.cpu, 0);
    assert.equal(e.timestampNs, 790405497468n);
    assert.equal(e.seq, 0xc56);
  });
  test("every golden event re-encodes to its exact 40 bytes", () => {
    for (const [name, datagram] of Object.entries(G)) {
      if (!(datagram instanceof Uint8Array)) continue;
      const m = decodeCnMsg(datagram, 16);
      assert.deepEqual(encodeProcEvent(decodeProcEvent(m.data, m.seq)), m.data, name);
    }
  });
});

/**
 * `union event_data` as `include/uapi/linux/cn_proc.h` (Linux 6.18) declares it, written out here by
 * hand from the header, not from the codec: C member name, byte offset in the union, signedness.
 */
const KERNEL_EVENT_DATA: Record<string, [string, string, number, "i32" | "u32" | "comm"][]> = {
  ack: [["err", "err", 0, "u32"]],
  fork: [
    ["parentPid", "parent_pid", 0, "i32"],
    ["parentTgid", "parent_tgid", 4, "i32"],
    ["childPid", "child_pid", 8, "i32"],
    ["childTgid", "child_tgid", 12, "i32"],
  ],
  exec: [["pid", "process_pid", 0, "i32"], ["tgid", "process_tgid", 4, "i32"]],
  uid: [
    ["pid", "process_pid", 0, "i32"],
    ["tgid", "process_tgid", 4, "i32"],
    ["ruid", "r.ruid", 8, "u32"],
    ["euid", "e.euid", 12, "u32"],
  ],
  gid: [
    ["pid", "process_pid", 0, "i32"],
    ["tgid", "process_tgid", 4, "i32"],
    ["rgid", "r.rgid", 8, "u32"],
    ["egid", "e.egid", 12, "u32"],
  ],
  sid: [["pid", "process_pid", 0, "i32"], ["tgid", "process_tgid", 4, "i32"]],
  ptrace: [
    ["pid", "process_pid", 0, "i32"],
    ["tgid", "process_tgid", 4, "i32"],
    ["tracerPid", "tracer_pid", 8, "i32"],
    ["tracerTgid", "tracer_tgid", 12, "i32"],
  ],
  comm: [["pid", "process_pid", 0, "i32"], ["tgid", "process_tgid", 4, "i32"], ["comm", "comm[16]", 8, "comm"]],
  coredump: [
    ["pid", "process_pid", 0, "i32"],
    ["tgid", "process_tgid", 4, "i32"],
    ["parentPid", "parent_pid", 8, "i32"],
    ["parentTgid", "parent_tgid", 12, "i32"],
  ],
  exit: [
    ["pid", "process_pid", 0, "i32"],
    ["tgid", "process_tgid", 4, "i32"],
    ["exitCode", "exit_code", 8, "u32"],
    ["exitSignal", "exit_signal", 12, "i32"],
    ["parentPid", "parent_pid", 16, "i32"],
    ["parentTgid", "parent_tgid", 20, "i32"],
  ],
};

/** One event of every type, with values that tell signed from unsigned and each field from the others. */
const EVERY_TYPE: ProcEvent[] = [
  { type: "ack", cpu: 0, timestampNs: 0n, seq: 0, ack: 0, err: 22 },
  { type: "fork", cpu: 1, timestampNs: 11n, seq: 0, parentPid: 10, parentTgid: 11, childPid: 12, childTgid: 13 },
  { type: "exec", cpu: 2, timestampNs: 12n, seq: 0, pid: 20, tgid: 21 },
  { type: "uid", cpu: 3, timestampNs: 13n, seq: 0, pid: 30, tgid: 31, ruid: 0xfffffffe, euid: 65534 },
  { type: "gid", cpu: 4, timestampNs: 14n, seq: 0, pid: 40, tgid: 41, rgid: 0xfffffffd, egid: 100 },
  { type: "sid", cpu: 5, timestampNs: 15n, seq: 0, pid: 50, tgid: 51 },
  { type: "ptrace", cpu: 6, timestampNs: 16n, seq: 0, pid: 60, tgid: 61, tracerPid: 62, tracerTgid: 63 },
  {
    type: "comm",
    cpu: 7,
    timestampNs: 17n,
    seq: 0,
    pid: 70,
    tgid: 71,
    comm: "fifteen-bytes-x",
    commBytes: new TextEncoder().encode("fifteen-bytes-x"),
  },
  { type: "coredump", cpu: 8, timestampNs: 18n, seq: 0, pid: 80, tgid: 81, parentPid: 82, parentTgid: 83 },
  {
    type: "exit",
    cpu: 9,
    timestampNs: 2n ** 63n + 19n,
    seq: 0,
    pid: 90,
    tgid: 91,
    exitCode: 0x8b,
    exitSignal: -1,
    parentPid: 0,
    parentTgid: 93,
  },
];

describe("the proc_event layout table", () => {
  test("every member sits where the kernel's header puts it, with the kernel's signedness", () => {
    assert.deepEqual(Object.keys(PROC_EVENT_DATA).sort(), Object.keys(KERNEL_EVENT_DATA).sort());
    for (const [type, members] of Object.entries(KERNEL_EVENT_DATA)) {
      const table = PROC_EVENT_DATA[type as keyof typeof PROC_EVENT_DATA] as Record<
        string,
        { offset: number; kind: string }
      >;
      assert.deepEqual(Object.keys(table), members.map(([name]) => name), type);
      for (const [name, cName, offset, kind] of members) {
        assert.deepEqual([table[name].offset, table[name].kind], [offset, kind], `${type}.${cName}`);
      }
    }
  });
  test("each type's minimum size is the kernel's 40 bytes less the members old kernels lack", () => {
    // In whole proc_event bytes (16 of header): old kernels' exit and coredump lack the parents
    // (32 and 24 bytes), and a comm is accepted with one byte of its name.
    const header = 16;
    const min: Record<string, number> = Object.fromEntries(
      Object.entries(PROC_EVENT_MIN_DATA).map(([t, n]) => [t, header + n]),
    );
    assert.deepEqual({ ...min }, {
      ack: 20,
      fork: 32,
      exec: 24,
      uid: 32,
      gid: 32,
      sid: 24,
      ptrace: 32,
      comm: 25,
      coredump: 24,
      exit: 32,
    });
    for (const event of EVERY_TYPE) {
      const bytes = encodeProcEvent(event);
      const short = bytes.subarray(0, min[event.type] - 1);
      assert.throws(() => decodeProcEvent(short, 0), DecodeError, event.type);
      assert.equal(decodeProcEvent(bytes.subarray(0, min[event.type]), 0).type, event.type);
    }
  });
  test("every type decodes back to what was encoded, each member at the kernel's offset", () => {
    for (const event of EVERY_TYPE) {
      const bytes = encodeProcEvent(event);
      assert.equal(bytes.byteLength, 40);
      assert.deepEqual(decodeProcEvent(bytes, event.seq), event, event.type);
      const view = new DataView(bytes.buffer);
      const values = event as unknown as Record<string, number>;
      for (const [name, cName, offset, kind] of KERNEL_EVENT_DATA[event.type]) {
        const at = 16 + offset;
        if (kind === "comm") {
          assert.deepEqual(
            bytes.subarray(at, at + 16),
            Uint8Array.from([...event.type === "comm" ? event.commBytes : [], 0]),
          );
        } else {
          const got = kind === "i32" ? view.getInt32(at, true) : view.getUint32(at, true);
          assert.equal(got, values[name], `${event.type}.${cName}`);
        }
      }
    }
  });
});

describe("strict and tolerant decoding", () => {
  test("fewer than 16 bytes, or fewer than a type needs, throw DecodeError", () => {
    const exit = decodeCnMsg(G.EXIT3_EXIT, 16).data;
    assert.throws(() => decodeProcEvent(exit.subarray(0, 15), 0), DecodeError);
    assert.throws(() => decodeProcEvent(exit.subarray(0, 31), 0), /exit needs 32 bytes/);
  });
  test("a 32-byte event from an old kernel decodes with the missing parent fields as 0", () => {
    const exit = decodeCnMsg(G.EXIT3_EXIT, 16).data.subarray(0, 32);
    const e = decodeProcEvent(exit, 1);
    assert.equal(e.type, "exit");
    if (e.type === "exit") assert.deepEqual([e.exitCode, e.parentPid, e.parentTgid], [768, 0, 0]);
  });
  test("an unknown what comes through with its raw bytes", () => {
    const data = decodeCnMsg(G.EXIT3_EXEC, 16).data.slice();
    new DataView(data.buffer).setUint32(0, 0x800, true);
    const e = decodeProcEvent(data, 1);
    assert.equal(e.type, "unknown");
    if (e.type === "unknown") {
      assert.equal(e.what, 0x800);
      assert.deepEqual(e.raw, data);
    }
  });
  test("decoding reads the event at an odd offset (36 in the datagram) with no alignment trouble", () => {
    const buf = new Uint8Array(41);
    buf.set(decodeCnMsg(G.EXIT3_FORK, 16).data, 1);
    assert.equal(decodeProcEvent(buf.subarray(1), 0).type, "fork");
  });
});

describe("names a process chose", () => {
  test("a comm that is not UTF-8 keeps its bytes (lone surrogates in comm) and shows escaped, lossless", () => {
    const data = new Uint8Array(40);
    const view = new DataView(data.buffer);
    view.setUint32(0, 0x200, true); // COMM
    const bytes = [0xff, 0xfe, 0x62, 0x61, 0x64, 0xc3, 0x75, 0x74, 0x66, 0x38];
    data.set(bytes, 24);
    const e = decodeProcEvent(data, 0);
    assert.ok(e.type === "comm");
    assert.deepEqual([...e.commBytes], bytes);
    assert.equal(e.comm, "\udcff\udcfebad\udcc3utf8");
    assert.deepEqual(encodeText(e.comm), new Uint8Array(bytes));
    assert.equal(escapeText(e.comm), "\\xff\\xfebad\\xc3utf8");
    assert.deepEqual(encodeProcEvent(e), data, "the raw bytes round-trip");
  });

  test("control characters and escape sequences show as visible escapes; backslashes double", () => {
    assert.equal(
      escapeText("a\nb\tc\rd\x1b[2J\x07\x7f\u009b\u2028\\"),
      "a\\nb\\tc\\rd\\x1b[2J\\x07\\x7f\\u{9b}\\u{2028}\\\\",
    );
    assert.equal(escapeText("ünïcödé 名前 ok"), "ünïcödé 名前 ok");
    assert.equal(escapeBytes(new TextEncoder().encode("ok\x1b")), "ok\\x1b");
  });

  test("JSON lines escape DEL and C1 controls too, and still parse to the same string", () => {
    const text = "x\u007f\u0085\u009b\u2028y";
    const line = safeJson({ text });
    assert.doesNotMatch(line, /[\u007f-\u009f\u2028\u2029]/);
    assert.equal(JSON.parse(line).text, text);
  });
});

describe("helpers", () => {
  test("waitStatus decodes exit codes, signals and core dumps", () => {
    assert.deepEqual(waitStatus(0), { exited: true, code: 0 });
    assert.deepEqual(waitStatus(768), { exited: true, code: 3 });
    assert.deepEqual(waitStatus(9), { exited: false, signal: 9, coreDumped: false });
    assert.deepEqual(waitStatus(0x8b), { exited: false, signal: 11, coreDumped: true });
  });

  test("eventMask maps names to kernel bits and rejects unknown names", () => {
    assert.equal(eventMask(), PROC_EVENT_ALL);
    assert.equal(eventMask(["exit"]), PROC_EVENT_EXIT);
    assert.equal(eventMask(["fork", "exec"]), 3);
    assert.throws(() => eventMask(["forks"]), TypeError);
  });

  test("passes() follows cn_filter: nonzero-exit alone keeps only non-zero exits", () => {
    const base = { cpu: 0, timestampNs: 0n, seq: 0, pid: 1, tgid: 1, exitSignal: 17, parentPid: 0, parentTgid: 0 };
    const ok: ProcEvent = { type: "exit", ...base, exitCode: 0 };
    const bad: ProcEvent = { type: "exit", ...base, exitCode: 256 };
    const exec: ProcEvent = { type: "exec", cpu: 0, timestampNs: 0n, seq: 0, pid: 1, tgid: 1 };
    assert.deepEqual([passes(ok, PROC_EVENT_NONZERO_EXIT), passes(bad, PROC_EVENT_NONZERO_EXIT)], [false, true]);
    assert.equal(passes(ok, PROC_EVENT_NONZERO_EXIT | PROC_EVENT_EXIT), true);
    assert.equal(passes(exec, PROC_EVENT_EXIT), false);
    assert.equal(passes(exec, PROC_EVENT_ALL), true);
  });
});
