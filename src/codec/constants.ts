/**
 * The kernel constants users need, under their kernel names: agent ids (`CN_IDX_*`/`CN_VAL_*`),
 * netlink message types and the connector's size limits. Exported from `mod.ts` as the `constants`
 * namespace; socket-level constants (socket options, flags) stay internal (`src/socket/sys.ts`).
 *
 * Sources: `include/uapi/linux/netlink.h` and `include/uapi/linux/connector.h`.
 *
 * @module
 */

/** `NETLINK_CONNECTOR`: the connector's netlink protocol number. */
export const NETLINK_CONNECTOR = 11;

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
/** `CONNECTOR_MAX_MSG_SIZE`: the kernel drops inbound payloads (cn_msg header and data) larger than this. */
export const CONNECTOR_MAX_MSG_SIZE = 16384;
/**
 * Most data bytes a message **to the kernel** may carry: CONNECTOR_MAX_MSG_SIZE minus the cn_msg
 * header. The kernel drops anything larger without a word (verified on 6.1, 6.12 and 6.18).
 * Messages to a userspace port or a group are limited only by `cn_msg.len` (65535).
 */
export const MAX_DATA_TO_KERNEL: number = CONNECTOR_MAX_MSG_SIZE - CN_MSG_HDRLEN;
/** Most data bytes any cn_msg can carry (`cn_msg.len` is a u16). */
export const MAX_DATA = 0xffff;
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
