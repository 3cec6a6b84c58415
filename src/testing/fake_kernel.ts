/**
 * An in-memory kernel for testing connector agents without root: sockets, ports, groups, kernel
 * callbacks, permission rules, receive-buffer accounting and overruns, and raw injection of
 * arbitrary datagrams.
 *
 * This is the bus alone: it knows no protocol family. {@linkcode FakeKernelCore.socket} hands out
 * sockets as transports (what `Connector.over`, `ProcMonitor.over` and `W1Bus.over` take); the
 * family fakes (`FakeProcEvents` in `src/proc/fake.ts`, `FakeW1Core` in `src/w1/fake_core.ts`) are
 * kernel callbacks registered on it; `FakeKernel` (`src/fakes/kernel.ts`, exported from
 * `@cnlink/connector/testing`) adds them and the clients on top.
 *
 * It follows the kernel where a test can see it, and `tests/differential.test.ts` checks that by
 * running the same scenarios against the real kernel and against this fake, observation by
 * observation (verified identical on Linux 6.18; the kernel lab runs it on Debian's 6.1 and 6.12 too,
 * with the fake configured from what each kernel is observed to do):
 *
 * - deliveries: unicast to a port, multicast to every member of a group but the sender, each
 *   socket's messages in the order they were sent; a multicast from userspace also reaches the
 *   kernel's callback for its id (the kernel's `netlink_sendmsg` sends it to port 0 too);
 * - errors: ECONNREFUSED for a port nobody holds, EADDRINUSE for a port taken, EAGAIN for a unicast
 *   the receiver has no room for (nothing is sent), RangeError for a group outside 1..32; messages to
 *   the kernel for an id without a callback vanish without a word (EPERM without privilege and
 *   ECONNREFUSED outside the initial network namespace are modelled but not compared: the suite runs
 *   as root in the initial namespace);
 * - the sender of each message (port, and the group it was multicast to); a process monitor receives
 *   into 128-byte slots, as `ProcMonitor.open` does, so a longer datagram from the kernel is truncated;
 * - the receive buffer, charged as the kernel charges it: each datagram costs its skb's *truesize*
 *   (the slab-rounded head plus `struct sk_buff`), not its length; a datagram is taken when the
 *   charge with it stays within the buffer or when the buffer is empty (option `rcvbufRule`); a
 *   multicast or a kernel message that finds no room marks the socket *congested*: the next receive
 *   reports the overrun (ENOBUFS) before the queued datagrams, and every datagram is refused (also
 *   unicasts, with EAGAIN) until the reader has emptied the queue; `SO_RCVBUF` reports twice the
 *   request, at least 2304, capped by `rmemMax` without privilege; {@linkcode FakeKernelCore.socketInfo}
 *   shows the charge as `/proc/net/netlink` does;
 * - process events (`FakeKernel.enableProcEvents`, the fake cn_proc of `src/proc/fake.ts`): acks with `ack = request's ack + 1` and `err` (EINVAL for an
 *   unknown op), multicast to group 1 through each socket's filter (the sender of IGNORE, or of a
 *   LISTEN with a narrower mask, does not get its ack), the kernel's global listener count (no acks
 *   and no events while it is below 1), and the 4-byte / 8-byte `proc_input` forms.
 *
 * Known differences, each with its reason (the differential suite asserts them as differences):
 *
 * - port ids: the real kernel gives a process's first socket its pid and the others random ids in
 *   0x80000000..0xffffefff; the fake numbers sockets from 1000, so that tests are repeatable;
 * - process events come only from `emit()`: the fake cannot see real forks and execs; an ack's `seq`
 *   is the fake's per-CPU counter and its `cpu` and timestamp are 0 (the kernel's are those of the
 *   CPU and the moment it handled the request, which no test can predict);
 * - timing: the fake delivers synchronously, within the `send`; the real kernel too for everything
 *   above, but the receive loop's wake-up comes later;
 * - the skb sizes depend on the kernel build: `struct sk_buff` (256 bytes with alignment) and
 *   `struct skb_shared_info` (320) are fixed here; the small-head cache (Linux >= 6.3) is the option
 *   `smallSkbHead`; the rule that admits a datagram changed in 2025 (option `rcvbufRule`);
 * - without privilege the real `SO_RCVBUF` is capped by the host's `net.core.rmem_max`; the fake
 *   uses the option `rmemMax` (default 212992, the kernel's default) and is not compared, as the
 *   suite runs as root.
 *
 * @module
 */
import { type CallbackId, CN_MSG, decodeDatagram, encodeMessage, type MessageInit } from "../codec/cn_msg.ts";
import { CN_MSG_HDRLEN, CONNECTOR_MAX_MSG_SIZE, NLMSG_HDRLEN } from "../codec/constants.ts";
import type { NetlinkAddress } from "../codec/netlink.ts";
import { decodeNetlinkHeader, LITTLE_ENDIAN } from "../codec/netlink.ts";
import { ClosedError, Errno, groupHint, NetlinkError } from "../errors.ts";
import { checkCount, checkGroup, checkGroups, checkId, checkOptions, checkType, MOVED_TO } from "../args.ts";
import type { MessageSource } from "../core/types.ts";
import { describeAddress } from "../socket/netlink_socket.ts";
import { groupBit, groupOf, groupsOf, type ReceiveResult, type Transport } from "../socket/transport.ts";

/** A message the fake kernel received from userspace. */
export interface KernelMessage {
  /** Agent address. */
  id: CallbackId;
  /** `cn_msg.seq`. */
  seq: number;
  /** `cn_msg.ack`. */
  ack: number;
  /** `cn_msg.flags`. */
  flags: number;
  /** Payload (a copy). */
  data: Uint8Array;
  /**
   * Who sent it, as on a received `ConnectorMessage`: the sending socket's port, and the group it
   * was multicast to (0 when it was sent to the kernel alone).
   */
  source: MessageSource;
  /** @deprecated since 0.3.0: use `source.port`. The sending socket's port. */
  senderPort: number;
}

/** Options of {@linkcode FakeKernelCore} (and of `FakeKernel`). */
export interface FakeKernelOptions {
  /**
   * Whether sockets have CAP_NET_ADMIN. Without it: even groups and sends to ports/groups give EPERM
   * (Linux >= 6.6 rules). Default true.
   */
  privileged?: boolean;
  /**
   * Whether the sockets live in the initial network namespace. When false, sends to the kernel and
   * to groups give ECONNREFUSED. Default true.
   */
  initialNetworkNamespace?: boolean;
  /**
   * Default receive buffer per socket in bytes, as `SO_RCVBUF` reports it (the kernel's
   * `net.core.rmem_default`). Each datagram is charged its skb's truesize (see `smallSkbHead`).
   * Default 212992.
   */
  rcvbuf?: number;
  /**
   * `net.core.rmem_max`: without privilege a requested receive buffer is capped at this before it is
   * doubled (with privilege the connector uses SO_RCVBUFFORCE, which is not capped). Default 212992.
   */
  rmemMax?: number;
  /**
   * When a datagram is taken into a receive buffer. `"fits-or-empty"` (current mainline, since the 2025
   * fix of netlink's `sk_rmem_alloc` wraparound, verified on 6.18): when the buffer's charge with it
   * stays within the size, or the buffer is empty. `"not-over"` (the rule of older kernels, from the
   * kernel source): when the charge before it is not over the size, so the last datagram may overshoot.
   * `tests/differential.test.ts` tells them apart on the running kernel. Default `"fits-or-empty"`.
   */
  rcvbufRule?: "fits-or-empty" | "not-over";
  /**
   * Size of the kernel's small skb head cache (`SKB_SMALL_HEAD_CACHE_SIZE`, Linux >= 6.3): datagrams
   * whose head fits are charged this plus `struct sk_buff`. It depends on the build (576 on the 6.18
   * this was measured on, which charges 832 bytes for an empty message); 0 for kernels without the
   * cache (heads then come from kmalloc: 768 bytes for an empty message, computed from the kernel
   * source). Default 576.
   */
  smallSkbHead?: number;
}

/** What a kernel callback gets besides the message. */
export interface KernelCallbackContext {
  /** The fake kernel, to send replies (`kernel.send(reply, { to: { port: message.source.port } })`). */
  kernel: FakeKernelCore;
  /** @deprecated since 0.3.0: use the message's `source.port`. The sender's port. */
  senderPort: number;
}

/** `SKB_DATA_ALIGN(sizeof(struct sk_buff))` on x86_64: charged for every datagram on top of its head. */
const SKB_STRUCT = 256;
/** `SKB_DATA_ALIGN(sizeof(struct skb_shared_info))` on x86_64: part of every skb head. */
const SKB_SHARED_INFO = 320;
/** `SOCK_MIN_RCVBUF`: the smallest receive buffer the kernel sets (2048 + the aligned `struct sk_buff`). */
const SOCK_MIN_RCVBUF = 2048 + SKB_STRUCT;
/** The kernel doubles a requested buffer after capping it at INT_MAX / 2. */
const RCVBUF_REQUEST_MAX = 0x3fffffff;

/** How the kernel built the skb of a datagram, which decides its truesize. */
type SkbKind = "user-unicast" | "other";

/**
 * The truesize the kernel charges a receive buffer for a datagram of `length` bytes (measured on
 * 6.18 through /proc/net/netlink's Rmem, for 36 to 65571 bytes, unicast and multicast): the head is
 * the data rounded to 64 plus `struct skb_shared_info`, from the small-head cache when it fits, else
 * from kmalloc (a power of two); a unicast from userspace whose head is over a page gets a head of
 * exactly that size (`netlink_alloc_large_skb`). Plus `struct sk_buff`.
 */
function truesize(length: number, kind: SkbKind, smallHead: number): number {
  const head = Math.ceil(length / 64) * 64 + SKB_SHARED_INFO;
  if (kind === "user-unicast" && head > 4096) return head + SKB_STRUCT;
  if (head <= smallHead) return smallHead + SKB_STRUCT;
  return 2 ** Math.ceil(Math.log2(head)) + SKB_STRUCT;
}

/** What a socket's row of `/proc/net/netlink` shows, from {@linkcode FakeKernelCore.socketInfo}. */
export interface FakeSocketInfo {
  /** The socket's port id. */
  port: number;
  /** Its multicast groups, as the `nl_groups` bitmask (the Groups column). */
  groups: number;
  /** Bytes charged to its receive buffer now: the truesize of every queued datagram (the Rmem column). */
  rmem: number;
  /** Its receive buffer size, as `SO_RCVBUF` reports it. */
  rcvbuf: number;
  /** Datagrams dropped for want of room, from multicasts and the kernel (the Drops column). */
  drops: number;
}

/**
 * Where the fake kernel sends, with `cn_netlink_send` semantics: a port (unicast), a group
 * (multicast), or both (multicast to the group, leaving that port out). Omitted: the group `id.idx`.
 */
export type KernelDestination = { port: number } | { group: number } | { port: number; group: number };

/** What a fake socket asks of its kernel (kept off FakeKernelCore's public surface). */
interface SocketHost {
  settings(): Required<FakeKernelOptions>;
  checkGroup(group: number, what: string, op: string): void;
  route(from: FakeSocket, datagram: Uint8Array, to: NetlinkAddress): void;
  release(socket: FakeSocket): void;
}

class FakeSocket implements Transport {
  readonly queue: { data: Uint8Array; source: NetlinkAddress; charge: number }[] = [];
  /** `sk_rmem_alloc`: the truesize of every queued datagram. */
  rmem = 0;
  /** Datagrams refused to multicasts and the kernel (`sk_drops`). */
  drops = 0;
  /** ENOBUFS is pending: the next receive reports it (`sk_err`). */
  overrun = false;
  /** `NETLINK_S_CONGESTED`: set by an overrun, cleared when a receive finds the queue empty. */
  congested = false;
  mask = 0;
  closed = false;
  #wake: ((ok: boolean) => void) | null = null;

  /**
   * @param slotSize bytes the reader receives a datagram into (a process monitor's receive slots);
   *   longer datagrams come back truncated, as from recvmmsg() with MSG_TRUNC. Default: whole.
   */
  constructor(
    readonly host: SocketHost,
    readonly port: number,
    public rcvbuf: number,
    readonly slotSize = Infinity,
  ) {}

  /**
   * Queues a datagram, or returns false when the kernel would not take it: the socket is congested,
   * or the buffer has no room by `rcvbufRule`. Like `netlink_attachskb`, a refusal marks an overrun
   * (and congestion) for the kernel's messages and for multicasts, but not for a userspace unicast:
   * that sender gets EAGAIN instead.
   */
  enqueue(data: Uint8Array, source: NetlinkAddress, kind: SkbKind, overrunWhenFull = true): boolean {
    if (this.closed) return false;
    const charge = truesize(data.byteLength, kind, this.host.settings().smallSkbHead);
    const room = this.host.settings().rcvbufRule === "not-over"
      ? this.rmem <= this.rcvbuf
      : this.rmem === 0 || this.rmem + charge <= this.rcvbuf;
    if (this.congested || !room) {
      if (!overrunWhenFull) return false;
      this.drops++;
      if (!this.congested) {
        this.congested = true;
        this.overrun = true;
        this.#notify();
      }
      return false;
    }
    this.queue.push({ data: data.slice(), source: { ...source }, charge });
    this.rmem += charge;
    this.#notify();
    return true;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.(true);
  }

  join(group: number): void {
    const bit = groupBit(group);
    if (this.closed) throw new ClosedError(`join group ${group}`);
    this.host.checkGroup(group, `join group ${group}`, "setsockopt");
    this.mask = (this.mask | bit) >>> 0;
  }

  leave(group: number): void {
    const bit = groupBit(group);
    if (this.closed) throw new ClosedError(`leave group ${group}`);
    this.mask = (this.mask & ~bit) >>> 0;
  }

  memberships(): number[] {
    return groupsOf(this.mask);
  }

  send(datagram: Uint8Array, to: NetlinkAddress): void {
    if (this.closed) throw new ClosedError("send");
    this.host.route(this, datagram, to);
  }

  receive(): ReceiveResult {
    if (this.closed) throw new ClosedError("receive");
    // The kernel reports a pending error before the queue, and clears congestion at the end of any
    // receive that leaves the queue empty (netlink_rcv_wake).
    let result: ReceiveResult;
    if (this.overrun) {
      this.overrun = false;
      result = "overrun";
    } else {
      const next = this.queue.shift();
      if (next) {
        this.rmem -= next.charge;
        const length = next.data.byteLength;
        const size = Math.min(length, this.slotSize);
        const data = size < length ? next.data.subarray(0, size) : next.data;
        result = { data, buffer: next.data, offset: 0, size, source: next.source, truncated: size < length, length };
      } else result = "again";
    }
    if (this.queue.length === 0) this.congested = false;
    return result;
  }

  wait(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.queue.length || this.overrun) return Promise.resolve(true);
    return new Promise((resolve) => (this.#wake = resolve));
  }

  setReceiveBuffer(bytes: number): number {
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0x7fffffff) {
      throw new RangeError(`rcvbuf must be a positive integer below 2^31, got ${bytes}`);
    }
    // SO_RCVBUFFORCE with privilege; else SO_RCVBUF, capped at rmem_max. Then sock_setsockopt's rule.
    const options = this.host.settings();
    const asked = Math.min(bytes, options.privileged ? RCVBUF_REQUEST_MAX : options.rmemMax, RCVBUF_REQUEST_MAX);
    this.rcvbuf = Math.max(asked * 2, SOCK_MIN_RCVBUF);
    return this.rcvbuf;
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.host.release(this);
      const wake = this.#wake;
      this.#wake = null;
      wake?.(false);
    }
    return Promise.resolve();
  }
}

/** Options of {@linkcode FakeKernelCore.socket}: how the socket is bound. */
export interface FakeSocketOptions {
  /** Multicast groups (1..32) to bind to. */
  groups?: readonly number[];
  /** Port id to bind; default: the next free one from 1000. */
  port?: number;
  /** Receive buffer to ask for, in bytes (as `SO_RCVBUFFORCE` with privilege, else capped by `rmemMax`). */
  rcvbuf?: number;
  /**
   * Bytes the reader receives a datagram into (a process monitor's 128-byte slots): a longer
   * datagram comes back truncated, as from `recvmmsg()` with `MSG_TRUNC`. Default: whole datagrams.
   */
  slotSize?: number;
}

/** A kernel callback's registration: close or dispose it to unregister (the `cn_del_callback` analogue). */
export interface KernelCallbackRegistration extends Disposable {
  /** The agent address it listens on. */
  readonly id: CallbackId;
  /** The name given at registration. */
  readonly name: string;
  /** Unregisters the callback; idempotent. */
  close(): void;
}

/** A kernel-side agent: gets each well-formed message userspace sends to its id. */
export type KernelCallback = (message: KernelMessage, context: KernelCallbackContext) => void;

const SOCKET_KEYS = ["groups", "port", "rcvbuf", "slotSize"] as const satisfies readonly (keyof FakeSocketOptions)[];

/**
 * The fake kernel's bus: sockets (as transports), ports, groups, kernel callbacks, permission rules,
 * receive-buffer accounting and overruns. It knows no protocol family: clients are built over its
 * sockets with `Connector.over` (and the families' `over`), and `FakeKernel` from
 * `@cnlink/connector/testing` adds those conveniences and the fake families.
 *
 * @example A kernel-side echo, reached through a bare socket
 * ```ts
 * import { FakeKernelCore } from "@cnlink/connector/testing";
 * import { Connector } from "@cnlink/connector";
 * import assert from "node:assert/strict";
 *
 * const kernel = new FakeKernelCore();
 * using _echo = kernel.addCallback({ idx: 14, val: 0x456 }, "echo", (msg, ctx) => {
 *   ctx.kernel.send({ id: msg.id, seq: msg.seq, ack: msg.seq + 1, data: msg.data }, { to: { port: msg.source.port } });
 * });
 * await using conn = await Connector.over(kernel.socket());
 * const reply = await conn.request({ id: { idx: 14, val: 0x456 }, data: new Uint8Array([7]) });
 * assert.deepEqual([...reply.data], [7]);
 * assert.equal(reply.source.port, 0);
 * ```
 */
export class FakeKernelCore {
  readonly #sockets = new Map<number, FakeSocket>();
  readonly #callbacks = new Map<string, { name: string; fn: (m: KernelMessage, c: KernelCallbackContext) => void }>();
  readonly #options: Required<FakeKernelOptions>;
  #nextPort = 1000;
  /** Every well-formed message userspace sent to the kernel, in order. */
  readonly received: KernelMessage[] = [];
  /** Datagrams the kernel dropped silently (malformed, too large, or no callback: the real kernel says nothing). */
  dropped = 0;

  /**
   * Makes an empty kernel: no sockets, no callbacks.
   *
   * @param options permission, namespace and buffer settings
   * @throws {TypeError} an unknown option (the message lists the accepted ones) or a wrong type
   * @throws {RangeError} `rcvbuf` or `rmemMax` not a positive integer below 2^31, `smallSkbHead` outside 0..4096
   */
  constructor(options?: FakeKernelOptions) {
    const opts = checkOptions(`${new.target.name} options`, options, [
      "privileged",
      "initialNetworkNamespace",
      "rcvbuf",
      "rmemMax",
      "rcvbufRule",
      "smallSkbHead",
    ]);
    checkType(opts.privileged, "privileged", "boolean");
    checkType(opts.initialNetworkNamespace, "initialNetworkNamespace", "boolean");
    checkCount(opts.rcvbuf, "rcvbuf", 1, 0x7fffffff);
    checkCount(opts.rmemMax, "rmemMax", 1, 0x7fffffff);
    checkCount(opts.smallSkbHead, "smallSkbHead", 0, 4096);
    if (opts.rcvbufRule !== undefined && opts.rcvbufRule !== "fits-or-empty" && opts.rcvbufRule !== "not-over") {
      throw new TypeError(`rcvbufRule must be "fits-or-empty" or "not-over", got ${JSON.stringify(opts.rcvbufRule)}`);
    }
    this.#options = {
      privileged: opts.privileged ?? true,
      initialNetworkNamespace: opts.initialNetworkNamespace ?? true,
      rcvbuf: opts.rcvbuf ?? 212992,
      rmemMax: opts.rmemMax ?? 212992,
      rcvbufRule: opts.rcvbufRule ?? "fits-or-empty",
      smallSkbHead: opts.smallSkbHead ?? 576,
    };
  }

  /**
   * Makes a socket bound to `options.groups` (and `port`), as `socket()` + `bind()` would on the real
   * kernel: the transport to build a client over (`Connector.over(kernel.socket())`).
   *
   * @throws {TypeError} an unknown option or a wrong type
   * @throws {RangeError} a group outside 1..32, a port, rcvbuf or slot size out of range
   * @throws {NetlinkError} EPERM for an even group when unprivileged, EADDRINUSE for a taken port
   *
   * @example
   * ```ts
   * import { FakeKernelCore } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernelCore();
   * const socket = kernel.socket({ groups: [14] });
   * assert.deepEqual(kernel.members(14), [socket.port]);
   * await socket.close();
   * ```
   */
  socket(options?: FakeSocketOptions): Transport {
    const opts = checkOptions("socket options", options, SOCKET_KEYS);
    checkGroups(opts.groups);
    checkCount(opts.port, "port", 0, 0xffffffff);
    checkCount(opts.rcvbuf, "rcvbuf", 1, 0x7fffffff);
    if (opts.slotSize !== Infinity) checkCount(opts.slotSize, "slotSize", 16, 0x7fffffff);
    return this.#open(opts);
  }

  /** The ports of the sockets in `group`. */
  members(group: number): number[] {
    const bit = groupBit(group);
    return [...this.#sockets.values()].filter((s) => (s.mask & bit) !== 0).map((s) => s.port);
  }

  #open(options: { groups?: readonly number[]; port?: number; rcvbuf?: number; slotSize?: number }): FakeSocket {
    let port = options.port ?? 0;
    let mask = 0;
    for (const g of options.groups ?? []) mask = (mask | groupBit(g)) >>> 0;
    if (port !== 0 && this.#sockets.has(port)) {
      throw new NetlinkError("bind", Errno.EADDRINUSE, `bind at port ${port}`);
    }
    for (const g of options.groups ?? []) this.#checkGroup(g, `bind to group ${g}`, "bind");
    if (port === 0) {
      while (this.#sockets.has(this.#nextPort)) this.#nextPort++;
      port = this.#nextPort++;
    }
    const socket = new FakeSocket(this.#host, port, this.#options.rcvbuf, options.slotSize);
    socket.mask = mask;
    if (options.rcvbuf !== undefined) socket.setReceiveBuffer(options.rcvbuf);
    this.#sockets.set(port, socket);
    return socket;
  }

  /**
   * Registers a kernel-side agent for `id` (the `cn_add_callback` analogue).
   *
   * @returns the registration; close or dispose it to unregister
   * @throws {TypeError} `id` is not `{ idx: number, val: number }`, `fn` is not a function
   * @throws {RangeError} `idx` or `val` is not an integer in 0..4294967295
   */
  addCallback(id: CallbackId, name: string, fn: KernelCallback): KernelCallbackRegistration;
  /** Registers a kernel-side agent for `id`, named after it (`"14:1110"`). */
  addCallback(id: CallbackId, fn: KernelCallback): KernelCallbackRegistration;
  addCallback(
    id: CallbackId,
    nameOrFn: string | KernelCallback,
    maybeFn?: KernelCallback,
  ): KernelCallbackRegistration {
    checkId("id", id);
    const fn = typeof nameOrFn === "function" ? nameOrFn : maybeFn;
    if (typeof fn !== "function") throw new TypeError("a kernel callback must be a function");
    const key = `${id.idx}:${id.val}`;
    const name = typeof nameOrFn === "string" ? nameOrFn : key;
    if (this.#callbacks.has(key)) throw new Error(`A kernel callback for ${key} is already registered`);
    const entry = { name, fn };
    this.#callbacks.set(key, entry);
    const close = () => {
      if (this.#callbacks.get(key) === entry) this.#callbacks.delete(key);
    };
    return { id: { idx: id.idx, val: id.val }, name, close, [Symbol.dispose]: close };
  }

  /**
   * Sends from the kernel, with `cn_netlink_send` semantics: to a port (unicast), to a group
   * (multicast), to both (multicast leaving that port out), or with neither to the group `id.idx`.
   *
   * @returns how many sockets received it
   * @throws {NetlinkError} ESRCH when nobody receives it, as the kernel reports
   * @throws {TypeError} an unknown option, or the 0.1 `{ port }` / `{ group }` (write `{ to: ... }`)
   */
  send(message: MessageInit, options?: { to?: KernelDestination }): number {
    checkOptions("send options", options, ["to"], MOVED_TO);
    return this.sendRaw(encodeMessage(message), options);
  }

  /**
   * Delivers raw bytes as if the kernel (or, with `from`, any sender) sent them: for tests of
   * malformed input. `to` as for {@linkcode FakeKernelCore.send}.
   *
   * @returns how many sockets received it
   * @throws {NetlinkError} ESRCH when nobody receives a datagram the kernel sent
   */
  sendRaw(datagram: Uint8Array, options?: { to?: KernelDestination; from?: NetlinkAddress }): number {
    checkOptions("sendRaw options", options, ["to", "from"], MOVED_TO);
    const to: { port?: number; group?: number } = checkOptions("to", options?.to, ["port", "group"]);
    if (to.group !== undefined) checkGroup(to.group, "to.group");
    if (to.port !== undefined) checkCount(to.port, "to.port", 0, 0xffffffff);
    const source = options?.from;
    const group = to.group ?? (to.port === undefined ? this.#idxOf(datagram) : undefined);
    let delivered = 0;
    if (group !== undefined) {
      const bit = groupBit(group);
      const from = source ?? { port: 0, groups: bit };
      for (const s of this.#sockets.values()) {
        if (s.port !== to.port && (s.mask & bit) !== 0 && s.enqueue(datagram, from, "other")) delivered++;
      }
    } else {
      const s = this.#sockets.get(to.port!);
      if (s?.enqueue(datagram, source ?? { port: 0, groups: 0 }, "other")) delivered++;
    }
    if (delivered === 0 && source === undefined) {
      throw new NetlinkError("netlink_broadcast", Errno.ESRCH, "send from the kernel", "nobody received it");
    }
    return delivered;
  }

  #idxOf(datagram: Uint8Array): number {
    return new DataView(datagram.buffer, datagram.byteOffset).getUint32(NLMSG_HDRLEN + CN_MSG.idx, LITTLE_ENDIAN);
  }

  /** The ports of the open sockets. */
  get ports(): number[] {
    return [...this.#sockets.keys()];
  }

  /**
   * What `/proc/net/netlink` shows for the socket at `port` (its groups, receive-buffer charge and
   * drops), or undefined when no socket holds it.
   *
   * @example The charge of one queued empty message
   * ```ts
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernel();
   * await using rx = await kernel.connect();
   * await using tx = await kernel.connect();
   * tx.send({ id: { idx: 20, val: 1 } }, { to: { port: rx.port } });
   * assert.equal(kernel.socketInfo(rx.port)?.rmem, 832); // a 36-byte datagram's skb, as on Linux 6.18
   * ```
   */
  socketInfo(port: number): FakeSocketInfo | undefined {
    const s = this.#sockets.get(port);
    return s && { port: s.port, groups: s.mask, rmem: s.rmem, rcvbuf: s.rcvbuf, drops: s.drops };
  }

  readonly #host: SocketHost = {
    settings: () => this.#options,
    checkGroup: (group, what, op) => this.#checkGroup(group, what, op),
    route: (from, datagram, to) => this.#route(from, datagram, to),
    release: (socket) => void this.#sockets.delete(socket.port),
  };

  #checkGroup(group: number, what: string, op: string): void {
    if (!this.#options.privileged && group % 2 === 0) {
      throw new NetlinkError(op, Errno.EPERM, what, groupHint(Errno.EPERM, [group]));
    }
  }

  #route(from: FakeSocket, datagram: Uint8Array, to: NetlinkAddress): void {
    const fail = (errno: number, hint?: string) => {
      throw new NetlinkError("sendto", errno, `send to ${describeAddress(to)}`, hint);
    };
    if ((to.port !== 0 || to.groups !== 0) && !this.#options.privileged) {
      fail(Errno.EPERM, "sending to a userspace port or a group needs CAP_NET_ADMIN (run as root), on every kernel");
    }
    if (to.port !== 0) {
      const peer = this.#sockets.get(to.port);
      if (!peer) fail(Errno.ECONNREFUSED, `nobody listens at port ${to.port}`);
      if (!peer!.enqueue(datagram, { port: from.port, groups: 0 }, "user-unicast", false)) fail(Errno.EAGAIN);
      return;
    }
    if (!this.#options.initialNetworkNamespace) {
      fail(
        Errno.ECONNREFUSED,
        "the connector exists only in the initial network namespace, and this process is in another one",
      );
    }
    if (to.groups !== 0) {
      const source = { port: from.port, groups: to.groups };
      for (const s of this.#sockets.values()) {
        if (s !== from && (s.mask & to.groups) !== 0) s.enqueue(datagram, source, "other");
      }
    }
    this.#toKernel({ port: from.port, group: groupOf(to.groups) }, datagram);
  }

  // The kernel's cn_rx_skb: only the first nlmsghdr is looked at; bad ones are dropped silently.
  #toKernel(source: MessageSource, datagram: Uint8Array): void {
    let message;
    try {
      const header = decodeNetlinkHeader(datagram);
      if (header.length - NLMSG_HDRLEN < CN_MSG_HDRLEN || header.length - NLMSG_HDRLEN > CONNECTOR_MAX_MSG_SIZE) {
        throw new RangeError("dropped");
      }
      const part = decodeDatagram(datagram.subarray(0, header.length))[0];
      if (part.kind !== "connector") throw new RangeError("dropped");
      message = part.messages[0];
    } catch {
      this.dropped++;
      return;
    }
    const received: KernelMessage = {
      id: { ...message.id },
      seq: message.seq,
      ack: message.ack,
      flags: message.flags,
      data: message.data.slice(),
      source,
      senderPort: source.port,
    };
    this.received.push(received);
    const callback = this.#callbacks.get(`${message.id.idx}:${message.id.val}`);
    if (!callback) {
      this.dropped++;
      return;
    }
    callback.fn(received, { kernel: this, senderPort: source.port });
  }
}
