/**
 * Kernel constants, under their kernel names.
 *
 * Sources: `include/uapi/linux/netlink.h`, `include/uapi/linux/connector.h`,
 * `include/uapi/linux/socket.h` and `asm-generic/socket.h` (x86_64 and aarch64 share these values).
 *
 * @module
 */

/** `AF_NETLINK`: the netlink address family. */
export const AF_NETLINK = 16;
/** `NETLINK_CONNECTOR`: the connector's netlink protocol number. */
export const NETLINK_CONNECTOR = 11;
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

/** `NLMSG_NOOP`. */
export const NLMSG_NOOP = 1;
/** `NLMSG_ERROR`. */
export const NLMSG_ERROR = 2;
/** `NLMSG_DONE`: the type the connector uses for every message. */
export const NLMSG_DONE = 3;
/** `NLMSG_OVERRUN`. */
export const NLMSG_OVERRUN = 4;
/** `NLMSG_HDRLEN`: size of `struct nlmsghdr`. */
export const NLMSG_HDRLEN = 16;
/** Size of `struct cn_msg` without its data. */
export const CN_MSG_HDRLEN = 20;
/** Size of `struct sockaddr_nl` (12 bytes, not 16). */
export const SOCKADDR_NL_LEN = 12;
/** `CONNECTOR_MAX_MSG_SIZE`: the kernel drops inbound payloads larger than this. */
export const CONNECTOR_MAX_MSG_SIZE = 16384;
/** Largest datagram the kernel can send on this protocol (cn_msg.len is a u16). */
export const MAX_DATAGRAM: number = NLMSG_HDRLEN + CN_MSG_HDRLEN + 0xffff;

/** `CN_IDX_PROC`: process events connector index (also its multicast group). */
export const CN_IDX_PROC = 1;
/** `CN_VAL_PROC`: process events connector value. */
export const CN_VAL_PROC = 1;
/** `CN_IDX_CIFS`. */
export const CN_IDX_CIFS = 2;
/** `CN_VAL_CIFS`. */
export const CN_VAL_CIFS = 1;
/** `CN_W1_IDX`: 1-Wire. */
export const CN_W1_IDX = 3;
/** `CN_W1_VAL`: 1-Wire. */
export const CN_W1_VAL = 1;
/** `CN_IDX_V86D`: uvesafb. */
export const CN_IDX_V86D = 4;
/** `CN_VAL_V86D_UVESAFB`. */
export const CN_VAL_V86D_UVESAFB = 1;
/** `CN_IDX_BB`: BlackBoard. */
export const CN_IDX_BB = 5;
/** `CN_DST_IDX`. */
export const CN_DST_IDX = 6;
/** `CN_DST_VAL`. */
export const CN_DST_VAL = 1;
/** `CN_IDX_DM`: dm-log-userspace. */
export const CN_IDX_DM = 7;
/** `CN_VAL_DM_USERSPACE_LOG`. */
export const CN_VAL_DM_USERSPACE_LOG = 1;
/** `CN_IDX_DRBD`. */
export const CN_IDX_DRBD = 8;
/** `CN_VAL_DRBD`. */
export const CN_VAL_DRBD = 1;
/** `CN_KVP_IDX`: Hyper-V KVP. */
export const CN_KVP_IDX = 9;
/** `CN_KVP_VAL`. */
export const CN_KVP_VAL = 1;
/** `CN_VSS_IDX`: Hyper-V VSS. */
export const CN_VSS_IDX = 0xa;
/** `CN_VSS_VAL`. */
export const CN_VSS_VAL = 1;
/** `CN_NETLINK_USERS`: highest in-tree idx + 1. */
export const CN_NETLINK_USERS = 11;
/** Highest multicast group number on this protocol (groups are 1..32). */
export const MAX_GROUP = 32;
