/**
 * Socket-level constants the socket layer passes to the system calls (internal).
 *
 * Sources: `include/uapi/linux/netlink.h`, `include/uapi/linux/socket.h` and `asm-generic/socket.h`
 * (x86_64 and aarch64 share these values).
 *
 * @module
 */

/** `SOCK_DGRAM`. */
export const SOCK_DGRAM = 2;
/** `SOCK_NONBLOCK` (= O_NONBLOCK). */
export const SOCK_NONBLOCK = 0o4000;
/** `SOCK_CLOEXEC` (= O_CLOEXEC). */
export const SOCK_CLOEXEC = 0o2000000;

/** `SOL_SOCKET`. */
export const SOL_SOCKET = 1;
/** `SO_RCVBUF`. */
export const SO_RCVBUF = 8;
/** `SO_RCVBUFFORCE`: like SO_RCVBUF but ignores `rmem_max`; needs CAP_NET_ADMIN. */
export const SO_RCVBUFFORCE = 33;
/** `SOL_NETLINK`. */
export const SOL_NETLINK = 270;
/** `NETLINK_ADD_MEMBERSHIP`. */
export const NETLINK_ADD_MEMBERSHIP = 1;
/** `NETLINK_DROP_MEMBERSHIP` (2, not 0 as the connector docs claim). */
export const NETLINK_DROP_MEMBERSHIP = 2;
/** `NETLINK_NO_ENOBUFS`. */
export const NETLINK_NO_ENOBUFS = 5;
/** `NETLINK_LIST_MEMBERSHIPS` (getsockopt only). */
export const NETLINK_LIST_MEMBERSHIPS = 9;

/** `MSG_DONTWAIT`. */
export const MSG_DONTWAIT = 0x40;
/** `MSG_TRUNC`: as a recv flag, return the real datagram length. */
export const MSG_TRUNC = 0x20;

export { AF_NETLINK, SOCKADDR_NL_LEN } from "../codec/netlink.ts";
