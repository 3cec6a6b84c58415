/**
 * Public types of the connector layer.
 *
 * @module
 */
import type { CallbackId } from "../codec/cn_msg.ts";
import type { NetlinkAddress } from "../codec/netlink.ts";

/** A received connector message. `data` is the caller's own copy. */
export interface ConnectorMessage {
  /** The agent it is from or for. */
  id: CallbackId;
  /** `cn_msg.seq`. */
  seq: number;
  /** `cn_msg.ack`. */
  ack: number;
  /** `cn_msg.flags`. */
  flags: number;
  /** The payload (an owned copy). */
  data: Uint8Array;
  /**
   * Who sent it, from the socket layer (not from the message, which anyone can write):
   * `port` 0 is the kernel; `groups` has bit `g - 1` set when it was multicast to group `g`, 0 for unicast.
   */
  source: NetlinkAddress;
}

/** Where to send: a userspace port, or a multicast group. Omitted: the kernel. */
export type Destination = { port: number } | { group: number };

/** Why the receive loop reports something through `onError`. */
export type ReceiveIssue =
  | "callback" // a registered callback threw
  | "malformed" // a datagram that does not decode (DecodeError)
  | "truncated" // a datagram larger than the receive buffer
  | "control"; // an NLMSG_ERROR / NOOP / OVERRUN, which only a userspace peer sends here

/** Context handed to `onError`. */
export interface ReceiveIssueInfo {
  /** What went wrong. */
  kind: ReceiveIssue;
  /** Sender of the datagram involved. */
  source: NetlinkAddress;
}

/** Counters of one connector. Everything that was not delivered is counted here. */
export interface ConnectorStats {
  /** Datagrams received. */
  datagrams: number;
  /** cn_msgs decoded and dispatched. */
  messages: number;
  /** Times the kernel reported ENOBUFS: messages were lost. */
  overruns: number;
  /** Datagrams that did not decode. */
  malformed: number;
  /** Datagrams cut short by the receive buffer. */
  truncated: number;
  /** Netlink control messages received (from userspace peers). */
  control: number;
  /** Callbacks that threw. */
  callbackErrors: number;
  /** Messages no callback, iterator or request wanted. */
  unhandled: number;
}

/** Options of `Connector.open`. */
export interface ConnectorOptions {
  /** Multicast groups (1..32) to bind to. */
  groups?: readonly number[];
  /** Port id to bind (default: the kernel chooses). */
  port?: number;
  /** Receive buffer in bytes. SO_RCVBUFFORCE is used when permitted, so root may exceed `rmem_max`. */
  rcvbuf?: number;
  /** libc to load; default `libc.so.6` (musl systems need e.g. `libc.musl-x86_64.so.1`). */
  libcPath?: string;
  /** Called for callback exceptions and bad datagrams. Default: `console.error`. */
  onError?: (error: unknown, info: ReceiveIssueInfo) => void;
  /** Called when the kernel reports an overrun (messages lost). Default: `console.warn`. */
  onOverrun?: (stats: Readonly<ConnectorStats>) => void;
  /**
   * Most messages queued for one iterator before the receive loop pauses and lets the kernel
   * buffer (and, when that is full, report an overrun). Default 65536.
   */
  maxQueued?: number;
}

/** Options of `Connector.request`. */
export interface RequestOptions {
  /** How long to wait for the reply; default 5000 ms. */
  timeoutMs?: number;
  /** Cancels the wait. */
  signal?: AbortSignal;
  /** Which message is the reply. Default: same id and `ack === seq + 1`. */
  match?: (reply: ConnectorMessage, request: Required<Pick<ConnectorMessage, "id" | "seq" | "ack">>) => boolean;
  /** Where to send the request; default the kernel. */
  to?: Destination;
}

/** Options of `Connector.messages`. */
export interface MessagesOptions {
  /** Only messages for this agent. */
  id?: CallbackId;
  /** Ends the iteration with the signal's reason. */
  signal?: AbortSignal;
}

/** A registered callback; dispose it to unregister. */
export interface CallbackRegistration extends Disposable {
  /** Registration number, for `removeCallback`. */
  readonly handle: number;
  /** The name given at registration. */
  readonly name: string;
  /** The agent address it listens on. */
  readonly id: CallbackId;
}
