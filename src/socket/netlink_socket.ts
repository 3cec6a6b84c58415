/**
 * A `NETLINK_CONNECTOR` socket over the FFI backend: fd lifecycle, groups, send, receive, errno
 * to `NetlinkError`.
 *
 * @module
 */
import {
  AF_NETLINK,
  MAX_DATAGRAM,
  MSG_DONTWAIT,
  MSG_TRUNC,
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_CONNECTOR,
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
} from "../codec/constants.ts";
import {
  decodeSockaddrNl,
  encodeSockaddrNl,
  LITTLE_ENDIAN,
  type NetlinkAddress,
  nlmsgAlign,
} from "../codec/netlink.ts";
import { Errno, NetlinkError } from "../errors.ts";
import type { Libc, Waiter } from "../ffi/types.ts";
import { groupBit, groupsOf, type ReceivedDatagram, type ReceiveResult, type Transport } from "./transport.ts";

/** Options for {@linkcode NetlinkSocket.open}. */
export interface SocketOptions {
  /** Groups to bind to (1..32). */
  groups?: readonly number[];
  /** Port id to bind; default 0 lets the kernel choose. */
  port?: number;
  /** Receive buffer size in bytes; SO_RCVBUFFORCE is tried first so root can exceed rmem_max. */
  rcvbuf?: number;
}

const RECV_BUFFER = nlmsgAlign(MAX_DATAGRAM);

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
  readonly #received: ReceivedDatagram = {
    data: this.#buffer.subarray(0, 0),
    source: { port: 0, groups: 0 },
    truncated: false,
    length: 0,
  };
  #waiter: Waiter | null = null;
  #closing: Promise<void> | null = null;

  private constructor(libc: Libc, fd: number, port: number) {
    this.#libc = libc;
    this.#fd = fd;
    this.port = port;
  }

  /** The file descriptor, for tests that check it is really closed. */
  get fd(): number {
    return this.#fd;
  }

  /** Opens, binds and configures a socket; closes it again if any step fails. */
  static open(libc: Libc, options: SocketOptions = {}): NetlinkSocket {
    let mask = 0;
    for (const bit of new Set((options.groups ?? []).map((g) => groupBit(g, "bind")))) mask += bit;
    const fd = libc.socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    if (fd < 0) throw new NetlinkError("open", -fd);
    try {
      const r = libc.bind(fd, encodeSockaddrNl({ port: options.port ?? 0, groups: mask }));
      if (r < 0) {
        const groups = options.groups?.length ? `to groups ${options.groups.join(", ")}` : "";
        const port = options.port ? ` at port ${options.port}` : "";
        throw new NetlinkError("bind", -r, `(${(groups + port).trim() || "autobind"})`);
      }
      const addr = new Uint8Array(SOCKADDR_NL_LEN);
      const len = new Uint32Array([SOCKADDR_NL_LEN]);
      const g = libc.getsockname(fd, addr, len);
      if (g < 0) throw new NetlinkError("getsockname of", -g);
      const socket = new NetlinkSocket(libc, fd, decodeSockaddrNl(addr).port);
      if (options.rcvbuf !== undefined) socket.setReceiveBuffer(options.rcvbuf);
      return socket;
    } catch (err) {
      libc.close(fd);
      throw err;
    }
  }

  #checkOpen(op: string): void {
    if (this.#closing) throw new NetlinkError(op, Errno.EBADF, "(the socket is closed)");
  }

  #setInt(level: number, name: number, value: number): number {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setInt32(0, value, LITTLE_ENDIAN);
    return this.#libc.setsockopt(this.#fd, level, name, bytes);
  }

  join(group: number): void {
    groupBit(group, "join group on");
    this.#checkOpen("join group on");
    const r = this.#setInt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group);
    if (r < 0) throw new NetlinkError("join group on", -r, `(group ${group})`);
  }

  leave(group: number): void {
    groupBit(group, "leave group on");
    this.#checkOpen("leave group on");
    const r = this.#setInt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, group);
    if (r < 0) throw new NetlinkError("leave group on", -r, `(group ${group})`);
  }

  memberships(): number[] {
    this.#checkOpen("list groups of");
    const bytes = new Uint8Array(4);
    const len = new Uint32Array([4]);
    const r = this.#libc.getsockopt(this.#fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, bytes, len);
    if (r < 0) throw new NetlinkError("list groups of", -r);
    return groupsOf(new DataView(bytes.buffer).getUint32(0, LITTLE_ENDIAN));
  }

  setReceiveBuffer(bytes: number): number {
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0x7fffffff) {
      throw new RangeError(`rcvbuf must be a positive integer below 2^31, got ${bytes}`);
    }
    this.#checkOpen("set receive buffer of");
    let r = this.#setInt(SOL_SOCKET, SO_RCVBUFFORCE, bytes);
    if (r === -Errno.EPERM) r = this.#setInt(SOL_SOCKET, SO_RCVBUF, bytes);
    if (r < 0) throw new NetlinkError("set receive buffer of", -r);
    const out = new Uint8Array(4);
    const len = new Uint32Array([4]);
    const g = this.#libc.getsockopt(this.#fd, SOL_SOCKET, SO_RCVBUF, out, len);
    if (g < 0) throw new NetlinkError("get receive buffer of", -g);
    return new DataView(out.buffer).getInt32(0, LITTLE_ENDIAN);
  }

  send(datagram: Uint8Array, to: NetlinkAddress): void {
    this.#checkOpen("send on");
    encodeSockaddrNl(to, this.#to);
    for (;;) {
      const r = this.#libc.sendto(this.#fd, datagram, BigInt(datagram.byteLength), MSG_DONTWAIT, this.#to);
      if (r >= 0) return;
      if (r === -Errno.EINTR) continue;
      const where = to.port === 0 && to.groups === 0
        ? "to the kernel"
        : to.groups !== 0
        ? `to groups ${groupsOf(to.groups).join(", ")}`
        : `to port ${to.port}`;
      throw new NetlinkError("send on", -r, `(${where})`);
    }
  }

  receive(): ReceiveResult {
    this.#checkOpen("receive on");
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
        const got = this.#received;
        got.length = r;
        got.truncated = r > RECV_BUFFER;
        got.data = this.#buffer.subarray(0, Math.min(r, RECV_BUFFER));
        got.source = {
          port: this.#fromView.getUint32(4, LITTLE_ENDIAN),
          groups: this.#fromView.getUint32(8, LITTLE_ENDIAN),
        };
        return got;
      }
      if (r === -Errno.EAGAIN) return "again";
      if (r === -Errno.ENOBUFS) return "overrun";
      if (r !== -Errno.EINTR) throw new NetlinkError("receive on", -r);
    }
  }

  wait(): Promise<boolean> {
    if (this.#closing) return Promise.resolve(false);
    this.#waiter ??= this.#libc.createWaiter(this.#fd);
    return this.#waiter.wait();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Never close an fd another thread may be blocked on: wake and await the waiter first.
      if (this.#waiter) await this.#waiter.close();
      this.#libc.close(this.#fd);
    })();
    return this.#closing;
  }
}
