/**
 * `@cnlink/connector`: the Linux kernel netlink connector (`NETLINK_CONNECTOR`) for Deno and Bun,
 * through the runtimes' built-in FFI.
 *
 * Open a socket with {@linkcode Connector.open}, join groups, register callbacks by `{idx, val}`,
 * iterate over messages, or send a request and await its reply. Process events live in
 * `@cnlink/connector/proc`; an in-memory fake kernel for tests in `@cnlink/connector/testing`.
 *
 * Needs `--allow-ffi` on Deno, Linux, and for most groups root (CAP_NET_ADMIN); see the README, "Permissions".
 *
 * @example Two sockets talking over a group of their own (as root)
 * ```ts ignore
 * import { Connector } from "@cnlink/connector";
 *
 * await using listener = await Connector.open({ groups: [14] });
 * await using sender = await Connector.open();
 * const next = listener.messages().next();
 * sender.send({ id: { idx: 14, val: 0x456 }, data: new TextEncoder().encode("hi") }, { to: { group: 14 } });
 * console.log((await next).value);
 * ```
 *
 * @module
 */
export { Connector } from "./src/connector/connector.ts";
export type {
  CallbackRegistration,
  ConnectorMessage,
  ConnectorOptions,
  ConnectorOverOptions,
  ConnectorStats,
  Destination,
  MessageInput,
  MessagesOptions,
  RequestAllOptions,
  RequestOptions,
  SendOptions,
} from "./src/connector/types.ts";
export type {
  MessageSource,
  ReceiveBufferSize,
  ReceiveIssue,
  ReceiveIssueInfo,
  ReceiveStats,
} from "./src/core/types.ts";
export type { ReceivedDatagram, ReceiveResult, Transport } from "./src/socket/transport.ts";
export type { ByteInput } from "./src/args.ts";
export { ClosedError, errnoName, NetlinkError, TimeoutError } from "./src/errors.ts";
export { DecodeError } from "./src/codec/decode_error.ts";
export {
  type CallbackId,
  type CnMessage,
  type DatagramPart,
  decodeCnMsg,
  decodeDatagram,
  encodeMessage,
  type EncodeOptions,
  type MessageInit,
} from "./src/codec/cn_msg.ts";
export {
  decodeNetlinkHeader,
  decodeSockaddrNl,
  encodeNetlinkHeader,
  encodeSockaddrNl,
  type NetlinkAddress,
  type NetlinkHeader,
  nlmsgAlign,
} from "./src/codec/netlink.ts";
/** Kernel constants under their kernel names: `constants.CN_IDX_PROC`, `constants.NLMSG_DONE`, ... */
export * as constants from "./src/codec/constants.ts";
