/**
 * The replies of the fake 1-Wire core to one request, laid out and sent as the kernel's
 * `w1_netlink.c` does: data replies with `ack = seq + 1`, a status per command echoing the request's
 * `ack`, message-level errors, and `W1_CN_BUNDLE` (every reply in one datagram).
 *
 * @module
 */
import { CN_W1_IDX, CN_W1_VAL, NLMSG_DONE, NLMSG_HDRLEN } from "../codec/constants.ts";
import { encodeMessage } from "../codec/cn_msg.ts";
import { encodeNetlinkHeader, LITTLE_ENDIAN } from "../codec/netlink.ts";
import {
  encodeW1Messages,
  W1_CN_BUNDLE,
  W1_MESSAGE,
  type W1Id,
  type W1NetlinkCommand,
  type W1NetlinkMessage,
} from "../codec/w1.ts";
import { NetlinkError } from "../errors.ts";
import type { FakeKernelCore, KernelMessage } from "../testing/fake_kernel.ts";

const W1_ID = { idx: CN_W1_IDX, val: CN_W1_VAL };

export class Reply {
  readonly #kernel: FakeKernelCore;
  readonly #request: KernelMessage;
  readonly #bundle: boolean;
  #refs = 1;
  #queued: Uint8Array[] = []; // whole cn_msgs (header + data)

  constructor(kernel: FakeKernelCore, request: KernelMessage) {
    this.#kernel = kernel;
    this.#request = request;
    this.#bundle = (request.flags & W1_CN_BUNDLE) !== 0;
  }

  hold(): void {
    this.#refs++;
  }

  /** The last holder sends what is left (w1_unref_block). */
  release(): void {
    if (--this.#refs === 0) this.#flush();
  }

  /** w1_netlink_send_error: at once, the request's cn_msg with one w1_netlink_msg, len 0, the status. */
  error(msg: W1NetlinkMessage | undefined, errno: number): void {
    const w1 = encodeW1Messages([{ type: msg?.type ?? 0, status: errno, id: msg?.id ?? new Uint8Array(8) }]);
    this.#send([this.#cn(this.#request.ack, w1)]);
  }

  listMasters(ids: number[]): void {
    const data = new Uint8Array(ids.length * 4);
    const view = new DataView(data.buffer);
    ids.forEach((id, i) => view.setUint32(i * 4, id, LITTLE_ENDIAN));
    const w1 = encodeW1Messages([{ type: W1_MESSAGE.LIST_MASTERS, id: new Uint8Array(8), data }]);
    this.#send([this.#cn((this.#request.seq + 1) >>> 0, w1)]);
  }

  /** A data reply: the command with its data, `ack = seq + 1`. Sent at once when not bundling. */
  data(msg: W1NetlinkMessage, cmd: number, data: Uint8Array): void {
    const w1 = encodeW1Messages([{ type: msg.type, id: msg.id, commands: [{ cmd, data }] }]);
    this.#queue(this.#cn((this.#request.seq + 1) >>> 0, w1));
  }

  ids(msg: W1NetlinkMessage, cmd: number, ids: W1Id[], perReply: number): void {
    if (ids.length === 0) {
      this.data(msg, cmd, new Uint8Array(0));
      return;
    }
    for (let at = 0; at < ids.length; at += perReply) {
      const chunk = ids.slice(at, at + perReply);
      const data = new Uint8Array(chunk.length * 8);
      chunk.forEach((id, i) => data.set(id.bytes, i * 8));
      this.data(msg, cmd, data);
    }
  }

  /**
   * A status: the request's message header, the command header with len 0, `ack` = the request's.
   * `err` is the kernel's: 0, a negative errno, or 1 from a reset without presence.
   */
  status(msg: W1NetlinkMessage, cmd: W1NetlinkCommand | undefined, err: number): void {
    const w1 = encodeW1Messages([{
      type: msg.type,
      status: (-err) & 0xff, // (u8)-error: an errno, or 255 for w1_reset_bus's 1
      id: msg.id,
      commands: cmd ? [{ cmd: cmd.cmd, data: new Uint8Array(0) }] : [],
    }]);
    this.#queue(this.#cn(this.#request.ack, w1));
  }

  #queue(cn: Uint8Array): void {
    this.#queued.push(cn);
    if (!this.#bundle) this.#flush();
  }

  #flush(): void {
    if (this.#queued.length === 0) return;
    const parts = this.#queued;
    this.#queued = [];
    this.#send(parts);
  }

  #cn(ack: number, data: Uint8Array): Uint8Array {
    const r = this.#request;
    return encodeMessage({ id: W1_ID, seq: r.seq, ack, flags: r.flags, data }).subarray(NLMSG_HDRLEN);
  }

  /** One netlink message holding the cn_msgs back to back (cn_netlink_send_mult). */
  #send(cns: Uint8Array[]): void {
    const length = NLMSG_HDRLEN + cns.reduce((n, c) => n + c.byteLength, 0);
    const datagram = new Uint8Array(length);
    encodeNetlinkHeader(datagram, { length, type: NLMSG_DONE, flags: 0, seq: this.#request.seq, pid: 0 });
    let at = NLMSG_HDRLEN;
    for (const c of cns) {
      datagram.set(c, at);
      at += c.byteLength;
    }
    try {
      this.#kernel.sendRaw(datagram, { to: { port: this.#request.source.port } });
    } catch (err) {
      if (!(err instanceof NetlinkError)) throw err;
    }
  }
}
