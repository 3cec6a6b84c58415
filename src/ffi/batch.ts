/**
 * Memory for recvmmsg(): `count` slots of `slotSize` bytes plus the mmsghdr, iovec and sockaddr_nl
 * arrays that point at them, all in one ArrayBuffer so that nothing moves or is collected while the
 * kernel writes into it. The backends fill in the addresses; everything else is runtime-neutral.
 *
 * Layouts (LP64: x86_64, aarch64):
 *   struct iovec   { void *iov_base; size_t iov_len; }                             16 bytes
 *   struct msghdr  { void *msg_name @0; socklen_t msg_namelen @8; struct iovec *msg_iov @16;
 *                    size_t msg_iovlen @24; void *msg_control @32; size_t msg_controllen @40;
 *                    int msg_flags @48; }                                          56 bytes
 *   struct mmsghdr { struct msghdr msg_hdr @0; unsigned int msg_len @56; }          64 bytes
 *
 * @module
 */
import { LITTLE_ENDIAN as LE, SOCKADDR_NL } from "../codec/netlink.ts";

const MMSGHDR = 64;
const IOVEC = 16;
const NAME = 16; // sockaddr_nl is 12 bytes; 16 keeps each one 8-aligned
// Where a sender's port and groups sit in its sockaddr_nl (numbers, not table reads, per datagram).
const NL_PID = SOCKADDR_NL.pid;
const NL_GROUPS = SOCKADDR_NL.groups;
const MSG_NAMELEN = 8;
const MSG_FLAGS = 48;
const MSG_LEN = 56;
const MSG_TRUNC = 0x20;

/** A reusable recvmmsg() batch. */
export class RecvBatch {
  /** The one allocation everything lives in (kept referenced by this object). */
  readonly memory: ArrayBuffer;
  /** The mmsghdr array, passed to recvmmsg. */
  readonly headers: Uint8Array;
  /** All slots back to back: slot `i` is `data.subarray(i * slotSize, (i + 1) * slotSize)`. */
  readonly data: Uint8Array;
  readonly #view: DataView;
  readonly #namesAt: number;

  /**
   * Allocates the batch and writes every pointer with `address` (the backend's way to get a
   * typed array's address as a bigint).
   */
  constructor(readonly count: number, readonly slotSize: number, address: (bytes: Uint8Array) => bigint) {
    const iovAt = count * MMSGHDR;
    this.#namesAt = iovAt + count * IOVEC;
    const dataAt = this.#namesAt + count * NAME;
    this.memory = new ArrayBuffer(dataAt + count * slotSize);
    this.headers = new Uint8Array(this.memory, 0, iovAt);
    this.data = new Uint8Array(this.memory, dataAt, count * slotSize);
    this.#view = new DataView(this.memory);
    const base = address(new Uint8Array(this.memory));
    for (let i = 0; i < count; i++) {
      const h = i * MMSGHDR;
      const iov = iovAt + i * IOVEC;
      this.#view.setBigUint64(h + 0, base + BigInt(this.#namesAt + i * NAME), LE);
      this.#view.setBigUint64(h + 16, base + BigInt(iov), LE);
      this.#view.setBigUint64(h + 24, 1n, LE);
      this.#view.setBigUint64(iov, base + BigInt(dataAt + i * slotSize), LE);
      this.#view.setBigUint64(iov + 8, BigInt(slotSize), LE);
    }
    this.rearm(count);
  }

  /** Resets the in/out fields of the first `n` entries before the next call. */
  rearm(n: number): void {
    for (let i = 0; i < n; i++) {
      const h = i * MMSGHDR;
      this.#view.setUint32(h + MSG_NAMELEN, SOCKADDR_NL.size, LE);
      this.#view.setInt32(h + MSG_FLAGS, 0, LE);
    }
  }

  /** Bytes received into slot `i` (at most `slotSize`). */
  length(i: number): number {
    return this.#view.getUint32(i * MMSGHDR + MSG_LEN, LE);
  }

  /** Whether slot `i`'s datagram was longer than the slot. */
  truncated(i: number): boolean {
    return (this.#view.getInt32(i * MMSGHDR + MSG_FLAGS, LE) & MSG_TRUNC) !== 0;
  }

  /** Sender port of slot `i`. */
  sourcePort(i: number): number {
    return this.#view.getUint32(this.#namesAt + i * NAME + NL_PID, LE);
  }

  /** Sender group bitmask of slot `i`. */
  sourceGroups(i: number): number {
    return this.#view.getUint32(this.#namesAt + i * NAME + NL_GROUPS, LE);
  }
}
