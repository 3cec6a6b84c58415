import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
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
const { CN_IDX_PROC, CN_VAL_PROC, NLMSG_DONE, NLMSG_ERROR } = constants;
import { PROC_ACK, PROC_EXIT, PROC_FORK, USER_MULTICAST, USER_UNICAST } from "./fixtures/golden.ts";
import { CN_MSG } from "../src/codec/cn_msg.ts";
import { NLMSGHDR } from "../src/codec/netlink.ts";
import { Errno, errnoName, errnoText, NetlinkError } from "../src/errors.ts";
import {
  isProcEventDatagram,
  PROC_EVENT,
  PROC_EVENT_DATAGRAM,
  PROC_EVENT_DATAGRAM_EVENT,
  procEventDatagramAck,
  procEventDatagramSeq,
} from "../src/codec/proc.ts";

const u32 = (bytes: Uint8Array, at: number) => new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true);

describe("golden datagrams from the kernel", () => {
  test("the proc ack decodes to its header and cn_msg, and re-encodes to the same bytes", () => {
    const [part] = decodeDatagram(PROC_ACK);
    assert.equal(part.kind, "connector");
    if (part.kind !== "connector") return;
    assert.deepEqual(part.header, { length: 76, type: NLMSG_DONE, flags: 0, seq: 0x1a8, pid: 0 });
    assert.equal(part.messages.length, 1);
    const m = part.messages[0];
    assert.deepEqual(m.id, { idx: CN_IDX_PROC, val: CN_VAL_PROC });
    assert.equal(m.seq, 0x1a8);
    assert.equal(m.ack, 0x1235);
    assert.equal(m.flags, 0);
    assert.equal(m.data.byteLength, 40);
    assert.deepEqual(encodeMessage({ id: m.id, seq: m.seq, ack: m.ack, data: m.data }), PROC_ACK);
  });

  test("fork and exit events carry 40-byte proc_event payloads at offset 36", () => {
    for (const bytes of [PROC_FORK, PROC_EXIT]) {
      const [part] = decodeDatagram(bytes);
      assert.equal(part.kind, "connector");
      if (part.kind !== "connector") continue;
      const { data } = part.messages[0];
      assert.equal(data.byteOffset, 36);
      assert.equal(data.byteLength, 40);
    }
    assert.equal(u32(decodeCnMsg(PROC_EXIT, 16).data, 0), 0x80000000);
  });

  test("the process-event fast path's literal offsets agree with the layout tables and the kernel's bytes", () => {
    const HDR = 16; // NLMSG_HDRLEN
    assert.equal(PROC_EVENT_DATAGRAM, HDR + 20 + PROC_EVENT.size);
    assert.equal(PROC_EVENT_DATAGRAM_EVENT, HDR + 20);
    assert.equal(NLMSGHDR.len, 0);
    // Each golden datagram, placed at an odd offset in a bigger buffer, as in a recvmmsg() slot.
    for (const [bytes, ack] of [[PROC_FORK, 0], [PROC_EXIT, 0], [PROC_ACK, 0x1235]] as const) {
      const buffer = new Uint8Array(300);
      buffer.set(bytes, 131);
      const view = new DataView(buffer.buffer);
      assert.equal(isProcEventDatagram(view, 131), true);
      assert.equal(procEventDatagramSeq(view, 131), u32(bytes, HDR + CN_MSG.seq));
      assert.equal(procEventDatagramAck(view, 131), ack);
      assert.equal(procEventDatagramAck(view, 131), u32(bytes, HDR + CN_MSG.ack));
    }
    // Any header field that is not a single process event's is refused.
    for (const [at, value] of [[NLMSGHDR.len, 77], [NLMSGHDR.type, 2], [HDR + CN_MSG.idx, 2], [HDR + CN_MSG.val, 2]]) {
      const bytes = PROC_FORK.slice();
      new DataView(bytes.buffer).setUint16(at, value, true);
      assert.equal(isProcEventDatagram(new DataView(bytes.buffer), 0), false, `field at ${at} = ${value}`);
    }
    const longer = PROC_FORK.slice();
    new DataView(longer.buffer).setUint16(HDR + CN_MSG.len, 41, true);
    assert.equal(isProcEventDatagram(new DataView(longer.buffer), 0), false, "cn_msg len 41");
  });

  test("a user multicast decodes with its payload and re-encodes with its nlmsg seq", () => {
    const [part] = decodeDatagram(USER_MULTICAST);
    assert.equal(part.kind, "connector");
    if (part.kind !== "connector") return;
    const m = part.messages[0];
    assert.deepEqual(m.id, { idx: 14, val: 0x456 });
    assert.equal(new TextDecoder().decode(m.data), "counter = 1\0");
    assert.deepEqual(encodeMessage({ id: m.id, seq: 7, data: m.data }), USER_MULTICAST);
  });

  test("a user unicast with no data decodes and re-encodes", () => {
    const [part] = decodeDatagram(USER_UNICAST);
    assert.equal(part.kind, "connector");
    if (part.kind !== "connector") return;
    assert.deepEqual({ ...part.messages[0], data: [...part.messages[0].data] }, {
      id: { idx: 14, val: 0x457 },
      seq: 8,
      ack: 9,
      flags: 0,
      data: [],
    });
    assert.deepEqual(encodeMessage({ id: { idx: 14, val: 0x457 }, seq: 8, ack: 9 }), USER_UNICAST);
  });
});

describe("multi-message datagrams", () => {
  test("several netlink messages are read at 4-byte aligned offsets", () => {
    const a = encodeMessage({ id: { idx: 3, val: 1 }, seq: 1, data: new Uint8Array([1, 2, 3]) }); // 39 bytes
    const b = encodeMessage({ id: { idx: 3, val: 1 }, seq: 2 });
    const both = new Uint8Array(nlmsgAlign(a.byteLength) + b.byteLength);
    both.set(a);
    both.set(b, nlmsgAlign(a.byteLength));
    const parts = decodeDatagram(both);
    assert.equal(parts.length, 2);
    assert.deepEqual(parts.map((p) => p.kind === "connector" ? p.messages[0].seq : -1), [1, 2]);
  });

  test("cn_msgs bundled back to back in one netlink message are all returned", () => {
    const one = encodeMessage({ id: { idx: 3, val: 1 }, seq: 1, data: new Uint8Array([9]) }).subarray(16);
    const two = encodeMessage({ id: { idx: 3, val: 1 }, seq: 2, data: new Uint8Array([8, 7]) }).subarray(16);
    const bytes = new Uint8Array(16 + one.byteLength + two.byteLength);
    encodeNetlinkHeader(bytes, { length: bytes.byteLength, type: NLMSG_DONE, flags: 0, seq: 0, pid: 0 });
    bytes.set(one, 16);
    bytes.set(two, 16 + one.byteLength);
    const [part] = decodeDatagram(bytes);
    assert.equal(part.kind, "connector");
    if (part.kind !== "connector") return;
    assert.deepEqual(part.messages.map((m) => [m.seq, [...m.data]]), [[1, [9]], [2, [8, 7]]]);
  });

  test("an NLMSG_ERROR comes back as a control part, not as a cn_msg", () => {
    const bytes = new Uint8Array(36);
    encodeNetlinkHeader(bytes, { length: 36, type: NLMSG_ERROR, flags: 0, seq: 0, pid: 5 });
    const [part] = decodeDatagram(bytes);
    assert.equal(part.kind, "control");
    assert.equal(part.header.type, NLMSG_ERROR);
  });
});

describe("strict decoding", () => {
  test("every truncation of a golden datagram throws DecodeError", () => {
    for (const golden of [PROC_ACK, USER_MULTICAST, USER_UNICAST]) {
      for (let n = 0; n < golden.byteLength; n++) {
        assert.throws(() => decodeDatagram(golden.subarray(0, n)), DecodeError, `length ${n}`);
      }
    }
  });

  test("an nlmsg_len past the end, or below 16, throws DecodeError", () => {
    const bytes = PROC_FORK.slice();
    new DataView(bytes.buffer).setUint32(0, 77, true);
    assert.throws(() => decodeNetlinkHeader(bytes), /runs past the end/);
    new DataView(bytes.buffer).setUint32(0, 15, true);
    assert.throws(() => decodeNetlinkHeader(bytes), DecodeError);
    assert.throws(() => decodeNetlinkHeader(new Uint8Array(15)), DecodeError);
  });

  test("a cn_msg len past the end of its netlink message throws DecodeError", () => {
    const bytes = PROC_FORK.slice();
    new DataView(bytes.buffer).setUint16(16 + 16, 41, true);
    assert.throws(() => decodeDatagram(bytes), /len 41 runs past the end/);
    assert.throws(() => decodeCnMsg(bytes, 16), DecodeError);
    assert.throws(() => decodeCnMsg(new Uint8Array(19)), DecodeError);
  });

  test("bytes left over after the last cn_msg throw DecodeError", () => {
    const bytes = PROC_FORK.slice();
    new DataView(bytes.buffer).setUint16(16 + 16, 30, true);
    assert.throws(() => decodeDatagram(bytes), DecodeError);
  });

  test("a netlink message with no room for a cn_msg throws DecodeError", () => {
    const bytes = new Uint8Array(16);
    encodeNetlinkHeader(bytes, { length: 16, type: NLMSG_DONE, flags: 0, seq: 0, pid: 0 });
    assert.throws(() => decodeDatagram(bytes), DecodeError);
  });

  test("an empty datagram throws DecodeError", () => {
    assert.throws(() => decodeDatagram(new Uint8Array(0)), DecodeError);
  });

  test("decoding reads only inside the given view", () => {
    const padded = new Uint8Array(200).fill(0xff);
    padded.set(USER_UNICAST, 50);
    const view = padded.subarray(50, 50 + USER_UNICAST.byteLength - 1);
    assert.throws(() => decodeDatagram(view), DecodeError);
  });
});

describe("sockaddr_nl", () => {
  test("encodes 12 bytes: family, pad, port, groups", () => {
    const bytes = encodeSockaddrNl({ port: 0x01020304, groups: 1 << 13 });
    assert.deepEqual([...bytes], [16, 0, 0, 0, 4, 3, 2, 1, 0, 0x20, 0, 0]);
    assert.deepEqual(decodeSockaddrNl(bytes), { port: 0x01020304, groups: 1 << 13 });
  });

  test("a short address or another family throws DecodeError", () => {
    assert.throws(() => decodeSockaddrNl(new Uint8Array(11)), DecodeError);
    assert.throws(() => decodeSockaddrNl(new Uint8Array(12)), /not AF_NETLINK/);
  });
});

describe("encoding rejects bad input", () => {
  test("data over 65535 bytes is a RangeError", () => {
    assert.throws(() => encodeMessage({ id: { idx: 1, val: 1 }, data: new Uint8Array(65536) }), RangeError);
  });

  test("negative or fractional ids are RangeErrors", () => {
    assert.throws(() => encodeMessage({ id: { idx: -1, val: 1 } }), /id.idx/);
    assert.throws(() => encodeMessage({ id: { idx: 1, val: 1.5 } }), /id.val/);
    assert.throws(() => encodeMessage({ id: { idx: 1, val: 1 }, flags: 0x10000 }), /flags/);
  });
});

describe("the errno table", () => {
  test("names, numbers and texts agree with Linux's generic table for every errno the library sends or compares", () => {
    // From include/uapi/asm-generic/errno-base.h and errno.h, and glibc's strerror(), by hand.
    const linux: [keyof typeof Errno, number, string][] = [
      ["EPERM", 1, "operation not permitted"],
      ["ENOENT", 2, "no such file or directory"],
      ["ESRCH", 3, "no such process"],
      ["EINTR", 4, "interrupted system call"],
      ["E2BIG", 7, "argument list too long"],
      ["EAGAIN", 11, "resource temporarily unavailable"],
      ["ENOMEM", 12, "cannot allocate memory"],
      ["EEXIST", 17, "file exists"],
      ["ENODEV", 19, "no such device"],
      ["EINVAL", 22, "invalid argument"],
      ["EPROTO", 71, "protocol error"],
      ["EMSGSIZE", 90, "message too long"],
      ["EADDRINUSE", 98, "address already in use"],
      ["ENOBUFS", 105, "no buffer space available"],
      ["ECONNREFUSED", 111, "connection refused"],
    ];
    for (const [name, n, text] of linux) {
      assert.deepEqual([Errno[name], errnoName(n), errnoText(n)], [n, name, text], name);
    }
    assert.deepEqual([errnoName(4095), errnoText(4095)], ["E4095", "unknown error"]);
    assert.match(new NetlinkError("sendto", Errno.E2BIG, "send").message, /E2BIG \(argument list too long\)/);
  });
});
