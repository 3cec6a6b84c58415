/**
 * A `NETLINK_CONNECTOR` socket over the FFI backend: fd lifecycle, groups, send, receive, errno
 * to `NetlinkError`.
 *
 * @module
 */
import { MAX_DATAGRAM, NETLINK_CONNECTOR } from "../codec/constants.ts";
import {
  decodeSockaddrNl,
  encodeSockaddrNl,
  LITTLE_ENDIAN,
  type NetlinkAddress,
  nlmsgAlign,
  SOCKADDR_NL,
} from "../codec/netlink.ts";
import { ClosedError, Errno, groupHint, NetlinkError } from "../errors.ts";
import type { Libc } from "../ffi/types.ts";
import type { RecvBatch } from "../ffi/batch.ts";
import {
  AF_NETLINK,
  MSG_DONTWAIT,
  MSG_TRUNC,
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_DROP_MEMBERSHIP,
  NETLINK_LIST_MEMBERSHIPS,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCKADDR_NL_LEN,
  SOL_NETLINK,
  SOL_SOCKET,
} from "./sys.ts";
import { groupBit, groupsOf, type ReceivedDatagram, type ReceiveResult, type Transport } from "./transport.ts";

/** Options for {@linkcode NetlinkSocket.open}. */
export interface SocketOptions {
  /** Groups to bind to (1..32). */
  groups?: readonly number[];
  /** Port id to bind; default 0 lets the kernel choose. */
  port?: number;
  /** Receive buffer size in bytes; SO_RCVBUFFORCE is tried first so root can exceed rmem_max. */
  rcvbuf?: number;
  /**
   * Receive with recvmmsg() into `count` slots of `slotSize` bytes: one system call for many
   * datagrams. Datagrams longer than a slot come back truncated, so only for protocols with a known
   * small size (process events are 76 bytes). Default: one recvfrom() per datagram into 64 KiB.
   */
  batch?: { count: number; slotSize: number };
}

const RECV_BUFFER = nlmsgAlign(MAX_DATAGRAM);
// Where the sender's port and groups sit in the sockaddr_nl recvfrom() fills (read per datagram).
const NL_PID = SOCKADDR_NL.pid;
const NL_GROUPS = SOCKADDR_NL.groups;

/** Where a send goes, in words for error messages. */
export function describeAddress(to: NetlinkAddress): string {
  if (to.groups !== 0) return `group ${groupsOf(to.groups).join(", ")}`;
  return to.port === 0 ? "the kernel" : `port ${to.port}`;
}

/**
 * The one ReceivedDatagram a receiver hands out, refilled by each receive: no allocation per
 * datagram. Used by the socket and by the receipt worker's transport.
 */
export class ReusedDatagram implements ReceivedDatagram {
  buffer: Uint8Array = new Uint8Array(0);
  offset = 0;
  size = 0;
  length = 0;
  truncated = false;
  readonly source = { port: 0, groups: 0 };

  set(
    buffer: Uint8Array,
    offset: number,
    size: number,
    length: number,
    truncated: boolean,
    port: number,
    groups: number,
  ): this {
    this.buffer = buffer;
    this.offset = offset;
    this.size = size;
    this.length = length;
    this.truncated = truncated;
    this.source.port = port;
    this.source.groups = groups;
    return this;
  }

  get data(): Uint8Array {
    return this.buffer.subarray(this.offset, this.offset + this.size);
  }
}

/** A connector socket. Not exported from `mod.ts`: the public face is `Connector`. */
export class NetlinkSocket implements Transport {
  readonly #libc: Libc;
  readonly #fd: number;
  readonly port: number;
  readonly #buffer = new Uint8Array(RECV_BUFFER);
  readonly #bufferLength = BigInt(RECV_BUFFER);
  readonly #from = new Uint8Array(SOCKADDR_NL_LEN);
  readonly #fromView = new DataView(this.#from.buffer);
  readonly #fromLength = new Uint32Array(1);
  readonly #to = new Uint8Array(SOCKADDR_NL_LEN);
  readonly #received = new ReusedDatagram();
  #closed = false;
  #waited = false;
  #batch: RecvBatch | null = null;
  #rcvbuf = 0;
  #batchNext = 0;
  #batchCount = 0;

  private constructor(libc: Libc, fd: number, port: number, batch?: { count: number; slotSize: number }) {
    this.#libc = libc;
    this.#fd = fd;
    this.port = port;
    if (batch) this.#batch = libc.createRecvBatch(batch.count, batch.slotSize);
  }

  /** The file descriptor, for tests that check it is really closed. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Opens, binds and configures a socket; closes it again if any step fails.
   *
   * @throws {RangeError} a group outside 1..32 or a bad port or rcvbuf, before any system call
   * @throws {NetlinkError} the kernel refused (EPROTONOSUPPORT, EPERM, EADDRINUSE, ...)
   */
  static open(libc: Libc, options: SocketOptions = {}): NetlinkSocket {
    let mask = 0;
    for (const bit of new Set((options.groups ?? []).map(groupBit))) mask += bit;
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 0xffffffff) {
      throw new RangeError(`port must be an integer in 0..4294967295, got ${port}`);
    }
    if (options.rcvbuf !== undefined) checkRcvbuf(options.rcvbuf);
    const fd = libc.socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    if (fd < 0) throw new NetlinkError("socket", -fd, "open a NETLINK_CONNECTOR socket");
    try {
      const r = libc.bind(fd, encodeSockaddrNl({ port, groups: mask }));
      if (r < 0) {
        const groups = options.groups?.length
          ? ` to group${options.groups.length > 1 ? "s" : ""} ${options.groups.join(", ")}`
          : "";
        throw new NetlinkError(
          "bind",
          -r,
          `bind${groups}${port ? ` at port ${port}` : ""}`,
          groupHint(-r, options.groups ?? []),
        );
      }
      const addr = new Uint8Array(SOCKADDR_NL_LEN);
      const len = new Uint32Array([SOCKADDR_NL_LEN]);
      const g = libc.getsockname(fd, addr, len);
      if (g < 0) throw new NetlinkError("getsockname", -g, "read the socket's port id");
      const socket = new NetlinkSocket(libc, fd, decodeSockaddrNl(addr).port, options.batch);
      if (options.rcvbuf !== undefined) socket.setReceiveBuffer(options.rcvbuf);
      else socket.#rcvbuf = socket.#getRcvbuf();
      return socket;
    } catch (err) {
      libc.close(fd);
      throw err;
    }
  }

  #checkOpen(what: string): void {
    if (this.#closed) throw new ClosedError(what);
  }

  #setInt(level: number, name: number, value: number): number {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setInt32(0, value, LITTLE_ENDIAN);
    return this.#libc.setsockopt(this.#fd, level, name, bytes);
  }

  join(group: number): void {
    groupBit(group);
    this.#checkOpen(`join group ${group}`);
    const r = this.#setInt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group);
    if (r < 0) throw new NetlinkError("setsockopt", -r, `join group ${group}`, groupHint(-r, [group]));
  }

  leave(group: number): void {
    groupBit(group);
    this.#checkOpen(`leave group ${group}`);
    const r = this.#setInt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, group);
    if (r < 0) throw new NetlinkError("setsockopt", -r, `leave group ${group}`);
  }

  memberships(): number[] {
    this.#checkOpen("list the groups");
    const bytes = new Uint8Array(4);
    const len = new Uint32Array([4]);
    const r = this.#libc.getsockopt(this.#fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, bytes, len);
    if (r < 0) throw new NetlinkError("getsockopt", -r, "list the groups");
    return groupsOf(new DataView(bytes.buffer).getUint32(0, LITTLE_ENDIAN));
  }

  setReceiveBuffer(bytes: number): number {
    checkRcvbuf(bytes);
    this.#checkOpen("set the receive buffer");
    let r = this.#setInt(SOL_SOCKET, SO_RCVBUFFORCE, bytes);
    if (r === -Errno.EPERM) r = this.#setInt(SOL_SOCKET, SO_RCVBUF, bytes);
    if (r < 0) throw new NetlinkError("setsockopt", -r, `set the receive buffer to ${bytes} bytes`);
    return this.#rcvbuf = this.#getRcvbuf();
  }

  get rcvbuf(): number {
    return this.#rcvbuf;
  }

  #getRcvbuf(): number {
    const out = new Uint8Array(4);
    const len = new Uint32Array([4]);
    const g = this.#libc.getsockopt(this.#fd, SOL_SOCKET, SO_RCVBUF, out, len);
    if (g < 0) throw new NetlinkError("getsockopt", -g, "read the receive buffer size");
    return new DataView(out.buffer).getInt32(0, LITTLE_ENDIAN);
  }

  send(datagram: Uint8Array, to: NetlinkAddress): void {
    this.#checkOpen("send");
    encodeSockaddrNl(to, this.#to);
    for (;;) {
      const r = this.#libc.sendto(this.#fd, datagram, BigInt(datagram.byteLength), MSG_DONTWAIT, this.#to);
      if (r >= 0) return;
      if (r === -Errno.EINTR) continue;
      throw new NetlinkError("sendto", -r, `send to ${describeAddress(to)}`, sendHint(-r, to));
    }
  }

  receive(): ReceiveResult {
    this.#checkOpen("receive");
    if (this.#batch) return this.#receiveBatched(this.#batch);
    for (;;) {
      this.#fromLength[0] = SOCKADDR_NL_LEN;
      const r = this.#libc.recvfrom(
        this.#fd,
        this.#buffer,
        this.#bufferLength,
        MSG_DONTWAIT | MSG_TRUNC,
        this.#from,
        this.#fromLength,
      );
      if (r >= 0) {
        return this.#received.set(
          this.#buffer,
          0,
          Math.min(r, RECV_BUFFER),
          r,
          r > RECV_BUFFER,
          this.#fromView.getUint32(NL_PID, LITTLE_ENDIAN),
          this.#fromView.getUint32(NL_GROUPS, LITTLE_ENDIAN),
        );
      }
      if (r === -Errno.EAGAIN) return "again";
      if (r === -Errno.ENOBUFS) return "overrun";
      if (r !== -Errno.EINTR) throw new NetlinkError("recvfrom", -r, "receive");
    }
  }

  /**
   * The next datagram that an earlier recvmmsg() took from the kernel and `receive()` has not handed
   * out yet, or "again": no system call. For a reader that hands the socket to another thread (the
   * receipt worker) and must first take what was received here, in order.
   */
  receiveBuffered(): ReceiveResult {
    if (!this.#batch || this.#batchNext >= this.#batchCount) return "again";
    return this.#receiveBatched(this.#batch);
  }

  #receiveBatched(batch: RecvBatch): ReceiveResult {
    while (this.#batchNext >= this.#batchCount) {
      batch.rearm(this.#batchCount);
      this.#batchNext = this.#batchCount = 0;
      const n = this.#libc.recvmmsg(this.#fd, batch, MSG_DONTWAIT | MSG_TRUNC);
      if (n > 0) this.#batchCount = n;
      else if (n === -Errno.EAGAIN || n === 0) return "again";
      else if (n === -Errno.ENOBUFS) return "overrun";
      else if (n !== -Errno.EINTR) throw new NetlinkError("recvmmsg", -n, "receive");
    }
    const i = this.#batchNext++;
    const length = batch.length(i);
    return this.#received.set(
      batch.data,
      i * batch.slotSize,
      Math.min(length, batch.slotSize),
      length,
      length > batch.slotSize || batch.truncated(i),
      batch.sourcePort(i),
      batch.sourceGroups(i),
    );
  }

  /** Stops a pending `wait()` (it resolves false) and leaves the process's poll set; the fd stays open. */
  stopWaiting(): void {
    if (this.#waited) this.#libc.poller.forget(this.#fd);
  }

  wait(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    this.#waited = true;
    return this.#libc.poller.wait(this.#fd);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      // Out of the process's epoll set first (a pending wait resolves false), then the fd: no
      // native thread waits on the fd itself, so nothing needs to be awaited.
      if (this.#waited) this.#libc.poller.forget(this.#fd);
      this.#libc.close(this.#fd);
    }
    return Promise.resolve();
  }
}

function checkRcvbuf(bytes: number): void {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0x7fffffff) {
    throw new RangeError(`rcvbuf must be a positive integer below 2^31, got ${bytes}`);
  }
}

/** The advice for a failed send, which depends on where it went. */
function sendHint(errno: number, to: NetlinkAddress): string | undefined {
  if (errno === Errno.ECONNREFUSED) {
    return to.port !== 0 && to.groups === 0
      ? `nobody listens at port ${to.port}`
      : "the connector exists only in the initial network namespace, and this process is in another one";
  }
  if (errno === Errno.EPERM) {
    return "sending to a userspace port or a group needs CAP_NET_ADMIN (run as root), on every kernel";
  }
  return undefined;
}
