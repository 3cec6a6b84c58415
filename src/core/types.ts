/**
 * Public types of the receive core, shared by the connector and the protocol families.
 *
 * @module
 */

/**
 * Who sent a message, from the socket layer (not from the message, which anyone can write).
 * `port` 0 is the kernel (userspace cannot hold port 0).
 */
export interface MessageSource {
  /** The sender's port (`nl_pid` of the source address); 0 is the kernel. */
  port: number;
  /** The multicast group it was sent to (1..32), or 0 when it was unicast to us. */
  group: number;
}

/** Why something received was not delivered, as `onError` reports it. */
export type ReceiveIssue =
  | "callback" // a registered callback threw
  | "malformed" // a datagram that does not decode (DecodeError)
  | "truncated" // a datagram larger than the receive buffer: the rest was lost
  | "control" // an NLMSG_NOOP / ERROR / OVERRUN, which only a userspace peer sends on this protocol
  | "foreign"; // a datagram from a sender this reader does not accept (not the kernel, for process events)

/** Context handed to `onError`. */
export interface ReceiveIssueInfo {
  /** What went wrong. */
  kind: ReceiveIssue;
  /** Sender of the datagram involved. */
  source: MessageSource;
}

/** What the receive loop counted. Everything received that was not delivered is counted here. */
export interface ReceiveStats {
  /** Datagrams received. */
  datagrams: number;
  /** Messages (cn_msgs) decoded from them. */
  messages: number;
  /** Times the kernel reported ENOBUFS: messages were lost. */
  overruns: number;
  /** Datagrams that did not decode. */
  malformed: number;
  /** Datagrams cut short by the receive buffer. */
  truncated: number;
  /** Netlink control messages received (from userspace peers). */
  control: number;
  /** Datagrams from senders not accepted (see `foreign` in {@linkcode ReceiveIssue}). */
  foreign: number;
}

/** The receive buffer: what was asked for and what the kernel reports. */
export interface ReceiveBufferSize {
  /** The size last asked for (`rcvbuf` option or `setReceiveBuffer`), or undefined for the default. */
  requested: number | undefined;
  /**
   * What the kernel reports (`SO_RCVBUF`): twice the request, as it counts its bookkeeping too, and
   * capped by `net.core.rmem_max` (times two) unless the process has CAP_NET_ADMIN.
   */
  reported: number;
}
