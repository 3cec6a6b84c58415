/**
 * Public types of the connector layer.
 *
 * @module
 */
import type { CallbackId, MessageInit } from "../codec/cn_msg.ts";
import type { ByteInput } from "../args.ts";
import type { MessageSource, ReceiveIssueInfo, ReceiveStats } from "../core/types.ts";

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
  /** Who sent it and how: `port` 0 is the kernel; `group` is the multicast group, 0 for unicast. */
  source: MessageSource;
}

/**
 * A message to send (`Connector.send`, `request`, `requestAll`): a `MessageInit` whose `data` may be
 * any {@linkcode ByteInput}, an array of bytes included.
 */
export interface MessageInput extends Omit<MessageInit, "data"> {
  /** Payload, at most 65535 bytes; default empty. */
  data?: ByteInput;
}

/** Where a message goes: a userspace port, or a multicast group. Omitted: the kernel. */
export type Destination = { port: number } | { group: number };

/** Options of `Connector.send`. */
export interface SendOptions {
  /** A port or a group; omitted: the kernel. */
  to?: Destination;
}

/** Counters of one connector. Everything that was not delivered is counted here. */
export interface ConnectorStats extends ReceiveStats {
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
  /** Receive buffer to ask for, in bytes. SO_RCVBUFFORCE is used when permitted, so root may exceed `rmem_max`. */
  rcvbuf?: number;
  /** libc to load; default `libc.so.6` (musl systems need e.g. `libc.musl-x86_64.so.1`). */
  libcPath?: string;
  /**
   * Called for everything received that is not delivered (callback exceptions, bad datagrams).
   * Default: a warning for the first of each kind; all are counted in `stats`.
   */
  onError?: (error: unknown, info: ReceiveIssueInfo) => void;
  /** Called when the kernel reports an overrun (messages lost). Default: `console.warn`. */
  onOverrun?: (stats: Readonly<ConnectorStats>) => void;
  /**
   * Most messages queued for one iterator before the receive loop pauses and lets the kernel
   * buffer (and, when that is full, report an overrun). Default 65536.
   */
  maxQueued?: number;
  /** Most bytes of message data queued for one iterator before the loop pauses. Default 64 MiB. */
  maxQueuedBytes?: number;
  /**
   * Most requests waiting for their replies at once; default unbounded. A receiver whose buffer is
   * full makes `sendto` fail with EAGAIN (nothing is sent), so a burst of requests to one userspace
   * agent may fail in part; a bound keeps the burst within what the agent can queue.
   */
  maxInFlight?: number;
  /** Past `maxInFlight`: wait for a slot (`"queue"`, the default) or reject at once with EAGAIN (`"fail"`). */
  whenBusy?: "queue" | "fail";
}

/**
 * Options of `Connector.over`: those of `Connector.open` but the ones that say how the socket is made
 * and bound (`groups`, `port`, `libcPath`): those are the transport's. `rcvbuf` is applied to it.
 */
export type ConnectorOverOptions = Omit<ConnectorOptions, "groups" | "port" | "libcPath">;

/** Options of `Connector.request`. */
export interface RequestOptions {
  /** A port or a group; omitted: the kernel. */
  to?: Destination;
  /** How long to wait for the reply; default 5000 ms. */
  timeoutMs?: number;
  /** Cancels the wait. */
  signal?: AbortSignal;
  /**
   * Which message is the reply. Default: same id, `ack === seq + 1`, and from where the request went
   * (port 0 for the kernel, the port for a port; any sender for a group).
   */
  match?: (reply: ConnectorMessage, request: Required<Pick<ConnectorMessage, "id" | "seq" | "ack">>) => boolean;
}

/** Options of `Connector.requestAll`: those of `request`, and when to stop collecting. */
export interface RequestAllOptions extends RequestOptions {
  /** True when `reply` (already appended to `replies`) is the last reply of the exchange. */
  until: (reply: ConnectorMessage, replies: readonly ConnectorMessage[]) => boolean;
}

/** Options of `Connector.messages`. */
export interface MessagesOptions {
  /** Only messages for this agent. */
  id?: CallbackId;
  /** Ends the iteration (quietly, like `close()`) when aborted. */
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
