/**
 * Process-events constants (`include/uapi/linux/cn_proc.h`), under their kernel names.
 *
 * @module
 */

/** `PROC_CN_MCAST_LISTEN`: subscribe. */
export const PROC_CN_MCAST_LISTEN = 1;
/** `PROC_CN_MCAST_IGNORE`: unsubscribe. */
export const PROC_CN_MCAST_IGNORE = 2;

/** `PROC_EVENT_NONE`: only acks carry it. */
export const PROC_EVENT_NONE = 0x0;
/** `PROC_EVENT_FORK`. */
export const PROC_EVENT_FORK = 0x1;
/** `PROC_EVENT_EXEC`. */
export const PROC_EVENT_EXEC = 0x2;
/** `PROC_EVENT_UID`. */
export const PROC_EVENT_UID = 0x4;
/** `PROC_EVENT_GID`. */
export const PROC_EVENT_GID = 0x40;
/** `PROC_EVENT_SID`. */
export const PROC_EVENT_SID = 0x80;
/** `PROC_EVENT_PTRACE`. */
export const PROC_EVENT_PTRACE = 0x100;
/** `PROC_EVENT_COMM`. */
export const PROC_EVENT_COMM = 0x200;
/** `PROC_EVENT_NONZERO_EXIT` (Linux >= 6.6): a filter bit only; such events arrive as EXIT. */
export const PROC_EVENT_NONZERO_EXIT = 0x20000000;
/** `PROC_EVENT_COREDUMP`. */
export const PROC_EVENT_COREDUMP = 0x40000000;
/** `PROC_EVENT_EXIT`. */
export const PROC_EVENT_EXIT = 0x80000000;
/** `PROC_EVENT_ALL` (Linux >= 6.6): every event bit. */
export const PROC_EVENT_ALL = 0xe00003c7;
