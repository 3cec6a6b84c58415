/**
 * The kernel's 1-Wire netlink protocol (`drivers/w1/w1_netlink.h`, the same in Linux 6.1 and 6.12):
 * `struct w1_netlink_msg` and `struct w1_netlink_cmd` inside a cn_msg to `{CN_W1_IDX 3, CN_W1_VAL 1}`,
 * 1-Wire ROM ids, and the CRCs of 1-Wire devices.
 *
 * @module
 */
import { DecodeError } from "./decode_error.ts";
import { LITTLE_ENDIAN } from "./netlink.ts";

/*
 * struct w1_netlink_msg {
 *   __u8  type;      // 0     enum w1_netlink_message_types
 *   __u8  status;    // 1     0, or a positive errno (u8) in replies
 *   __u16 len;       // 2..4  bytes of data that follow
 *   union { __u8 id[8]; struct { __u32 id; __u32 res; } mst; } id;  // 4..12
 *   __u8  data[];    // 12..  w1_netlink_cmd ones (requests, replies) or master ids (LIST_MASTERS)
 * };
 */
/** Byte offsets of `struct w1_netlink_msg`, and its size without data. */
export const W1_NETLINK_MSG = { type: 0, status: 1, len: 2, id: 4, data: 12, size: 12 } as const;

/**
 * The offsets of `struct w1_netlink_msg`.
 *
 * @deprecated Use {@linkcode W1_NETLINK_MSG}: `W1_MSG` read like the kernel's message-type enum,
 * which is {@linkcode W1_MESSAGE}.
 */
export const W1_MSG: typeof W1_NETLINK_MSG = W1_NETLINK_MSG;

/*
 * struct w1_netlink_cmd {
 *   __u8  cmd;       // 0     enum w1_commands
 *   __u8  res;       // 1
 *   __u16 len;       // 2..4  bytes of data that follow
 *   __u8  data[];    // 4..
 * };
 */
/** Byte offsets of `struct w1_netlink_cmd`, and its size without data. */
export const W1_NETLINK_CMD = { cmd: 0, res: 1, len: 2, data: 4, size: 4 } as const;

/**
 * The offsets of `struct w1_netlink_cmd`.
 *
 * @deprecated Use {@linkcode W1_NETLINK_CMD}: the kernel's `W1_CMD_*` names the command enum, which
 * is {@linkcode W1_COMMAND}.
 */
export const W1_CMD: typeof W1_NETLINK_CMD = W1_NETLINK_CMD;

/** `enum w1_netlink_message_types`. */
export const W1_MESSAGE = {
  SLAVE_ADD: 0,
  SLAVE_REMOVE: 1,
  MASTER_ADD: 2,
  MASTER_REMOVE: 3,
  MASTER_CMD: 4,
  SLAVE_CMD: 5,
  LIST_MASTERS: 6,
} as const;

/** `enum w1_commands`. */
export const W1_COMMAND = {
  READ: 0,
  WRITE: 1,
  SEARCH: 2,
  ALARM_SEARCH: 3,
  TOUCH: 4,
  RESET: 5,
  SLAVE_ADD: 6,
  SLAVE_REMOVE: 7,
  LIST_SLAVES: 8,
} as const;

/** `W1_CN_BUNDLE`: the cn_msg flag asking the kernel to bundle replies into fewer datagrams. */
export const W1_CN_BUNDLE = 1;

/*
 * What goes on the wire after a reset: a ROM function command (the w1 core sends MATCH ROM and the
 * id itself for a SLAVE_CMD), then a device's function command and its arguments. The opcodes
 * below are the datasheets' (Maxim/Analog Devices); a device helper names them from here.
 */
/**
 * ROM function commands every 1-Wire device understands (datasheets: "ROM Commands").
 *
 * @example Start a conversion on every thermometer of a bus at once
 * ```ts
 * import { DS18B20_COMMAND, W1_ROM_COMMAND } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const broadcast = [W1_ROM_COMMAND.SKIP_ROM, DS18B20_COMMAND.CONVERT_T];
 * assert.deepEqual(broadcast, [0xcc, 0x44]);
 * ```
 */
export const W1_ROM_COMMAND = {
  SEARCH_ROM: 0xf0,
  READ_ROM: 0x33,
  MATCH_ROM: 0x55,
  SKIP_ROM: 0xcc,
  ALARM_SEARCH: 0xec,
} as const;

/**
 * DS18B20 (and DS18S20, DS1822, DS28EA00) function commands.
 *
 * @example
 * ```ts
 * import { DS18B20_COMMAND } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DS18B20_COMMAND.READ_SCRATCHPAD, 0xbe);
 * ```
 */
export const DS18B20_COMMAND = {
  CONVERT_T: 0x44,
  WRITE_SCRATCHPAD: 0x4e,
  READ_SCRATCHPAD: 0xbe,
  COPY_SCRATCHPAD: 0x48,
  RECALL_E2: 0xb8,
  READ_POWER_SUPPLY: 0xb4,
} as const;

/**
 * DS2431 (1 kbit EEPROM) memory function commands.
 *
 * @example
 * ```ts
 * import { DS2431_COMMAND } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DS2431_COMMAND.READ_MEMORY, 0xf0);
 * ```
 */
export const DS2431_COMMAND = {
  WRITE_SCRATCHPAD: 0x0f,
  READ_SCRATCHPAD: 0xaa,
  COPY_SCRATCHPAD: 0x55,
  READ_MEMORY: 0xf0,
} as const;

/**
 * DS2423 (RAM with counters) memory function commands (the helpers use only the counter read).
 *
 * @example
 * ```ts
 * import { DS2423_COMMAND } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DS2423_COMMAND.READ_MEMORY_COUNTER, 0xa5);
 * ```
 */
export const DS2423_COMMAND = {
  WRITE_SCRATCHPAD: 0x0f,
  READ_SCRATCHPAD: 0xaa,
  COPY_SCRATCHPAD: 0x5a,
  READ_MEMORY: 0xf0,
  READ_MEMORY_COUNTER: 0xa5,
} as const;

/**
 * DS2438 (smart battery monitor) function commands; scratchpad commands take a page number.
 *
 * @example
 * ```ts
 * import { DS2438_COMMAND } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DS2438_COMMAND.CONVERT_V, 0xb4);
 * ```
 */
export const DS2438_COMMAND = {
  CONVERT_T: 0x44,
  CONVERT_V: 0xb4,
  WRITE_SCRATCHPAD: 0x4e,
  READ_SCRATCHPAD: 0xbe,
  COPY_SCRATCHPAD: 0x48,
  RECALL_MEMORY: 0xb8,
} as const;

/**
 * DS2413 (dual-channel switch) function commands.
 *
 * @example
 * ```ts
 * import { DS2413_COMMAND } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DS2413_COMMAND.PIO_ACCESS_READ, 0xf5);
 * ```
 */
export const DS2413_COMMAND = {
  PIO_ACCESS_READ: 0xf5,
  PIO_ACCESS_WRITE: 0x5a,
} as const;

/**
 * DS2408 (8-channel switch) function commands, and the addresses of the registers they name.
 *
 * @example
 * ```ts
 * import { DS2408_COMMAND } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DS2408_COMMAND.CHANNEL_ACCESS_WRITE, 0x5a);
 * ```
 */
export const DS2408_COMMAND = {
  READ_PIO_REGISTERS: 0xf0,
  CHANNEL_ACCESS_READ: 0xf5,
  CHANNEL_ACCESS_WRITE: 0x5a,
  WRITE_CONDITIONAL_SEARCH_REGISTER: 0xcc,
  RESET_ACTIVITY_LATCHES: 0xc3,
  /** Address of the PIO logic state register, the first of the registers READ PIO REGISTERS gives. */
  PIO_LOGIC_STATE_ADDRESS: 0x88,
  /** Address of the control/status register. */
  CONTROL_STATUS_ADDRESS: 0x8d,
} as const;

/**
 * The byte a DS2413 or DS2408 sends back after a PIO write or RESET ACTIVITY LATCHES it carried out.
 *
 * @example
 * ```ts
 * import { W1_CONFIRMATION } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(W1_CONFIRMATION, 0xaa);
 * ```
 */
export const W1_CONFIRMATION = 0xaa;

/** One `w1_netlink_cmd`. */
export interface W1NetlinkCommand {
  /** `enum w1_commands`. */
  cmd: number;
  /** Data written (WRITE, TOUCH), buffer to read into (READ: its length), or results in replies. */
  data: Uint8Array;
}

/** One `w1_netlink_msg`. */
export interface W1NetlinkMessage {
  /** `enum w1_netlink_message_types`. */
  type: number;
  /** 0, or a positive errno in replies. */
  status: number;
  /** The 8 id bytes: a slave's ROM id, or a master id in the first 4 (host byte order). */
  id: Uint8Array;
  /** The commands (MASTER_CMD, SLAVE_CMD, and their replies), or empty. */
  commands: W1NetlinkCommand[];
  /** The raw data after the header (LIST_MASTERS replies carry u32 master ids here). */
  data: Uint8Array;
}

/** The 8 id bytes of master `id` (`id.mst.id`, host byte order; `res` 0). */
export function masterIdBytes(id: number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, id >>> 0, LITTLE_ENDIAN);
  return bytes;
}

/**
 * Encodes `w1_netlink_msg`s back to back, each with its commands (or, without commands, its raw
 * `data`, as in LIST_MASTERS replies): the data of a cn_msg to the w1 core. What `decodeW1Messages`
 * returns encodes back to the same bytes.
 *
 * @throws {RangeError} an id that is not 8 bytes, or a message or command over 65535 bytes
 *
 * @example A search on master 1
 * ```ts
 * import { encodeW1Messages, masterIdBytes, W1_COMMAND, W1_MESSAGE } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const data = encodeW1Messages([{
 *   type: W1_MESSAGE.MASTER_CMD,
 *   id: masterIdBytes(1),
 *   commands: [{ cmd: W1_COMMAND.SEARCH, data: new Uint8Array(0) }],
 * }]);
 * assert.equal(data.byteLength, 12 + 4);
 * ```
 */
export function encodeW1Messages(
  messages: readonly {
    type: number;
    status?: number;
    id: Uint8Array;
    commands?: readonly W1NetlinkCommand[];
    data?: Uint8Array;
  }[],
): Uint8Array {
  let size = 0;
  for (const m of messages) {
    if (m.id.byteLength !== 8) throw new RangeError(`a w1 id is 8 bytes, got ${m.id.byteLength}`);
    const body = m.commands?.length
      ? m.commands.reduce((n, c) => n + W1_NETLINK_CMD.size + c.data.byteLength, 0)
      : m.data?.byteLength ?? 0;
    if (body > 0xffff) throw new RangeError(`a w1_netlink_msg carries at most 65535 bytes, got ${body}`);
    for (const c of m.commands ?? []) {
      if (c.data.byteLength > 0xffff) throw new RangeError(`a w1_netlink_cmd carries at most 65535 bytes`);
    }
    size += W1_NETLINK_MSG.size + body;
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const m of messages) {
    const start = at;
    out[at + W1_NETLINK_MSG.type] = m.type;
    out[at + W1_NETLINK_MSG.status] = m.status ?? 0;
    out.set(m.id, at + W1_NETLINK_MSG.id);
    at += W1_NETLINK_MSG.size;
    if (m.commands?.length) {
      for (const c of m.commands) {
        out[at + W1_NETLINK_CMD.cmd] = c.cmd;
        view.setUint16(at + W1_NETLINK_CMD.len, c.data.byteLength, LITTLE_ENDIAN);
        out.set(c.data, at + W1_NETLINK_CMD.data);
        at += W1_NETLINK_CMD.size + c.data.byteLength;
      }
    } else if (m.data) {
      out.set(m.data, at);
      at += m.data.byteLength;
    }
    view.setUint16(start + W1_NETLINK_MSG.len, at - start - W1_NETLINK_MSG.size, LITTLE_ENDIAN);
  }
  return out;
}

/**
 * Decodes the `w1_netlink_msg`s of a cn_msg's data. Commands are decoded for every type but
 * LIST_MASTERS (whose data is master ids) and the four notifications (no data).
 *
 * @throws {DecodeError} a length that runs past the end
 *
 * @example
 * ```ts
 * import { decodeW1Messages, encodeW1Messages, masterIdBytes } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const [m] = decodeW1Messages(encodeW1Messages([{ type: 4, id: masterIdBytes(2), commands: [] }]));
 * assert.deepEqual([m.type, m.commands.length], [4, 0]);
 * ```
 */
export function decodeW1Messages(data: Uint8Array): W1NetlinkMessage[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: W1NetlinkMessage[] = [];
  for (let at = 0; at < data.byteLength;) {
    if (data.byteLength - at < W1_NETLINK_MSG.size) {
      throw new DecodeError("w1_netlink_msg", at, `needs ${W1_NETLINK_MSG.size} bytes, ${data.byteLength - at} remain`);
    }
    const len = view.getUint16(at + W1_NETLINK_MSG.len, LITTLE_ENDIAN);
    const end = at + W1_NETLINK_MSG.size + len;
    if (end > data.byteLength) {
      throw new DecodeError(
        "w1_netlink_msg",
        at,
        `len ${len} runs past the end (${data.byteLength - at - W1_NETLINK_MSG.size} remain)`,
      );
    }
    const type = data[at + W1_NETLINK_MSG.type];
    const body = data.subarray(at + W1_NETLINK_MSG.data, end);
    const commands: W1NetlinkCommand[] = [];
    if (type === W1_MESSAGE.MASTER_CMD || type === W1_MESSAGE.SLAVE_CMD) {
      for (let c = at + W1_NETLINK_MSG.data; c < end;) {
        if (end - c < W1_NETLINK_CMD.size) {
          throw new DecodeError("w1_netlink_cmd", c, `needs ${W1_NETLINK_CMD.size} bytes, ${end - c} remain`);
        }
        const clen = view.getUint16(c + W1_NETLINK_CMD.len, LITTLE_ENDIAN);
        if (c + W1_NETLINK_CMD.size + clen > end) {
          throw new DecodeError(
            "w1_netlink_cmd",
            c,
            `len ${clen} runs past its message (${end - c - W1_NETLINK_CMD.size} remain)`,
          );
        }
        commands.push({
          cmd: data[c + W1_NETLINK_CMD.cmd],
          data: data.subarray(c + W1_NETLINK_CMD.data, c + W1_NETLINK_CMD.data + clen),
        });
        c += W1_NETLINK_CMD.size + clen;
      }
    }
    out.push({
      type,
      status: data[at + W1_NETLINK_MSG.status],
      id: data.subarray(at + W1_NETLINK_MSG.id, at + W1_NETLINK_MSG.data),
      commands,
      data: body,
    });
    at = end;
  }
  return out;
}

/**
 * The CRC8 of 1-Wire ROM ids and the DS18B20 scratchpad (polynomial x^8 + x^5 + x^4 + 1, LSB first,
 * Maxim application note 27).
 *
 * @example
 * ```ts
 * import { crc8 } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * // Maxim's example ROM: family 02, serial 00000001B81C, CRC A2.
 * assert.equal(crc8(new Uint8Array([0x02, 0x1c, 0xb8, 0x01, 0x00, 0x00, 0x00])), 0xa2);
 * ```
 */
export function crc8(bytes: Uint8Array): number {
  let crc = 0;
  for (let byte of bytes) {
    for (let b = 0; b < 8; b++) {
      const mix = (crc ^ byte) & 1;
      crc >>= 1;
      if (mix) crc ^= 0x8c;
      byte >>= 1;
    }
  }
  return crc;
}

/**
 * The CRC16 of 1-Wire EEPROMs such as the DS2431 (polynomial x^16 + x^15 + x^2 + 1, LSB first),
 * continuing from `crc`. Devices send it inverted.
 *
 * @example
 * ```ts
 * import { crc16 } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * assert.equal(crc16(new TextEncoder().encode("123456789")), 0xbb3d);
 * ```
 */
export function crc16(bytes: Uint8Array, crc = 0): number {
  for (const byte of bytes) {
    crc ^= byte;
    for (let b = 0; b < 8; b++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc & 0xffff;
}

/** A 1-Wire ROM id: family code, 48-bit serial, CRC8; written `28-0123456789ab` as in sysfs. */
export interface W1Id {
  /** The family code (0x28 DS18B20, 0x2D DS2431, 0x01 DS2401, ...). */
  family: number;
  /** The serial number, 48 bits. */
  serial: bigint;
  /** The CRC8 byte as received. */
  crc: number;
  /** Whether `crc` is the CRC8 of family and serial (a corrupt search result is not). */
  crcValid: boolean;
  /** The 8 bytes on the wire: family, serial least significant byte first, CRC. */
  bytes: Uint8Array;
  /** `"28-0123456789ab"`, the kernel's sysfs name for the device. */
  name: string;
}

/**
 * A ROM id from its 8 bytes (as a search returns them).
 *
 * @throws {RangeError} not 8 bytes
 */
export function w1IdFromBytes(bytes: Uint8Array): W1Id {
  if (bytes.byteLength !== 8) throw new RangeError(`a 1-Wire ROM id is 8 bytes, got ${bytes.byteLength}`);
  const own = bytes.slice();
  let serial = 0n;
  for (let i = 6; i >= 1; i--) serial = (serial << 8n) | BigInt(own[i]);
  const family = own[0];
  return {
    family,
    serial,
    crc: own[7],
    crcValid: crc8(own.subarray(0, 7)) === own[7],
    bytes: own,
    name: `${family.toString(16).padStart(2, "0")}-${serial.toString(16).padStart(12, "0")}`,
  };
}

/**
 * A ROM id from its sysfs name, `"28-0123456789ab"` (the CRC is computed).
 *
 * @throws {TypeError} not of that form
 *
 * @example
 * ```ts
 * import { parseW1Id } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const id = parseW1Id("28-0123456789ab");
 * assert.equal(id.family, 0x28);
 * assert.equal(id.crcValid, true);
 * assert.equal(id.name, "28-0123456789ab");
 * ```
 */
export function parseW1Id(name: string): W1Id {
  const m = /^([0-9a-f]{2})-([0-9a-f]{12})$/i.exec(name);
  if (!m) throw new TypeError(`a 1-Wire id is written like 28-0123456789ab, got "${name}"`);
  const bytes = new Uint8Array(8);
  bytes[0] = parseInt(m[1], 16);
  let serial = BigInt(`0x${m[2]}`);
  for (let i = 1; i <= 6; i++) {
    bytes[i] = Number(serial & 0xffn);
    serial >>= 8n;
  }
  bytes[7] = crc8(bytes.subarray(0, 7));
  return w1IdFromBytes(bytes);
}
