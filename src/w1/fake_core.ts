/**
 * A fake of the kernel's 1-Wire core (`drivers/w1/w1_netlink.c`) for the `FakeKernel`: bus masters
 * with devices on them, answering `W1_LIST_MASTERS`, `W1_MASTER_CMD` and `W1_SLAVE_CMD` with the
 * kernel's reply rules (data replies `ack = seq + 1`, a status per command echoing the request's
 * `ack`, message-level errors, `W1_CN_BUNDLE`), and multicasting bus events to group 3.
 *
 * Devices are byte-level: the fake core handles the ROM layer (reset, MATCH ROM, SKIP ROM, search)
 * and hands the bytes after it to the selected device.
 *
 * @module
 */
import { CN_W1_IDX, CN_W1_VAL } from "../codec/constants.ts";
import { checkCount, checkOptions } from "../args.ts";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import {
  decodeW1Messages,
  encodeW1Messages,
  masterIdBytes,
  parseW1Id,
  W1_CN_BUNDLE,
  W1_COMMAND,
  W1_MESSAGE,
  type W1Id,
  w1IdFromBytes,
  type W1NetlinkCommand,
  type W1NetlinkMessage,
} from "../codec/w1.ts";
import { Errno, NetlinkError } from "../errors.ts";
import type { FakeKernelCore, KernelCallbackRegistration, KernelMessage } from "../testing/fake_kernel.ts";
import { Reply } from "./fake_reply.ts";

const W1_ID = { idx: CN_W1_IDX, val: CN_W1_VAL };
const { ENODEV, EINVAL, E2BIG, EPROTO } = Errno;

/** A device on a fake bus. The fake core does the ROM layer; the device sees what follows it. */
export interface FakeW1Device {
  /** Its ROM id (a W1Id, or the name `"28-0123456789ab"`). */
  readonly id: W1Id | string;
  /** Whether it answers an ALARM SEARCH; default never. */
  alarm?(): boolean;
  /** The bus was reset. */
  reset?(): void;
  /** Bytes written to it while selected (the function command, then its arguments). */
  write(bytes: Uint8Array): void;
  /** Its answer to `length` read slots (0xff where it stays silent). */
  read(length: number): Uint8Array;
}

/** Options of {@linkcode FakeW1Core}. */
export interface FakeW1Options {
  /**
   * Searches to miss a slave before the core detaches it (the `wire` module's `slave_ttl`);
   * default 10, as in the kernel.
   */
  slaveTtl?: number;
  /** Most ids per search data reply, to exercise results split across replies; default all in one. */
  idsPerReply?: number;
}

interface Master {
  readonly id: number;
  readonly devices: { device: FakeW1Device; rom: W1Id }[];
  readonly slaves: Map<string, { rom: W1Id; ttl: number }>;
  seq: number;
  fault: "none" | "no-presence";
  // ROM layer state after a reset.
  phase: "idle" | "rom" | "match" | "selected";
  match: number[];
  selected: FakeW1Device[];
}

/** Orders ROM ids as the kernel's search finds them: bit by bit from the least significant, 0 first. */
function searchOrder(a: W1Id, b: W1Id): number {
  for (let bit = 0; bit < 64; bit++) {
    const x = (a.bytes[bit >> 3] >> (bit & 7)) & 1;
    const y = (b.bytes[bit >> 3] >> (bit & 7)) & 1;
    if (x !== y) return x - y;
  }
  return 0;
}

/**
 * The fake 1-Wire core. Get one with `kernel.enableW1()`; add masters and devices; open a client
 * with `kernel.openW1Bus()`.
 *
 * @example A thermometer on a fake bus
 * ```ts
 * import { FakeKernel, fakeDs18b20 } from "@cnlink/connector/testing";
 * import { readTemperature } from "@cnlink/connector/w1";
 * import assert from "node:assert/strict";
 *
 * const kernel = new FakeKernel();
 * const w1 = kernel.enableW1();
 * const master = w1.addMaster();
 * w1.plug(master, fakeDs18b20("28-000000000001", { celsius: 21.5 }));
 * await using bus = await kernel.openW1Bus();
 * const [id] = await bus.search(master);
 * assert.equal((await readTemperature(bus, id, { conversionMs: 0 })).celsius, 21.5);
 * ```
 */
export class FakeW1Core implements Disposable {
  readonly #kernel: FakeKernelCore;
  readonly #registration: KernelCallbackRegistration;
  readonly #masters = new Map<number, Master>();
  readonly #slaveTtl: number;
  readonly #idsPerReply: number;
  #nextMaster = 1;
  /** Every request the core received, decoded, in order. */
  readonly requests: { flags: number; seq: number; ack: number; messages: W1NetlinkMessage[] }[] = [];

  /**
   * Registers the fake core at `{3, 1}` on `kernel`; prefer `kernel.enableW1()`.
   *
   * @param kernel the fake kernel
   * @param options slave time to live, reply splitting
   * @throws {TypeError} an unknown option
   * @throws {RangeError} `slaveTtl` or `idsPerReply` not a positive integer (`idsPerReply` may be Infinity)
   */
  constructor(kernel: FakeKernelCore, options?: FakeW1Options) {
    const opts = checkOptions("FakeW1Core options", options, ["slaveTtl", "idsPerReply"]);
    checkCount(opts.slaveTtl, "slaveTtl", 1);
    if (opts.idsPerReply !== Infinity) checkCount(opts.idsPerReply, "idsPerReply", 1);
    this.#kernel = kernel;
    this.#slaveTtl = options?.slaveTtl ?? 10;
    this.#idsPerReply = options?.idsPerReply ?? Infinity;
    this.#registration = kernel.addCallback(W1_ID, "w1", (m) => this.#receive(m));
  }

  /** Registers a bus master; multicasts `master-added`. Returns its id (1, 2, ...). */
  addMaster(): number {
    const id = this.#nextMaster++;
    const master: Master = {
      id,
      devices: [],
      slaves: new Map(),
      seq: 0,
      fault: "none",
      phase: "idle",
      match: [],
      selected: [],
    };
    this.#masters.set(id, master);
    this.#event(master, W1_MESSAGE.MASTER_ADD, masterIdBytes(id));
    return id;
  }

  /** Removes a bus master: its slaves are detached (`slave-removed` each), then `master-removed`. */
  removeMaster(id: number): void {
    const master = this.#master(id);
    for (const { rom } of master.slaves.values()) this.#event(master, W1_MESSAGE.SLAVE_REMOVE, rom.bytes);
    master.slaves.clear();
    this.#masters.delete(id);
    this.#event(master, W1_MESSAGE.MASTER_REMOVE, masterIdBytes(id));
  }

  /** Puts a device on a master's bus (attached by the next search, as on a real bus). */
  plug(master: number, device: FakeW1Device): void {
    const m = this.#master(master);
    const rom = typeof device.id === "string" ? parseW1Id(device.id) : w1IdFromBytes(device.id.bytes);
    if (m.devices.some((d) => d.rom.name === rom.name)) throw new Error(`${rom.name} is already on bus ${master}`);
    m.devices.push({ device, rom });
  }

  /** Takes a device off the bus (the kernel detaches it after `slaveTtl` searches without it). */
  unplug(master: number, id: W1Id | string): void {
    const m = this.#master(master);
    const name = typeof id === "string" ? parseW1Id(id).name : id.name;
    const at = m.devices.findIndex((d) => d.rom.name === name);
    if (at < 0) throw new Error(`${name} is not on bus ${master}`);
    m.devices.splice(at, 1);
  }

  /** `"no-presence"`: resets find no device (the kernel's status 255), selects fail. */
  setFault(master: number, fault: "none" | "no-presence"): void {
    this.#master(master).fault = fault;
  }

  /** The names of the slaves the core has attached on a master. */
  slaves(master: number): string[] {
    return [...this.#master(master).slaves.keys()];
  }

  /** Unregisters the core. */
  [Symbol.dispose](): void {
    this.#registration.close();
  }

  #master(id: number): Master {
    const m = this.#masters.get(id);
    if (!m) throw new RangeError(`no fake bus master ${id}`);
    return m;
  }

  #event(master: Master, type: number, id: Uint8Array): void {
    const data = encodeW1Messages([{ type, id }]);
    const seq = master.seq;
    master.seq = (master.seq + 1) >>> 0;
    try {
      this.#kernel.send({ id: W1_ID, seq, data }, { to: { group: CN_W1_IDX } });
    } catch (err) {
      // cn_netlink_send's ESRCH: nobody listens, nothing happens.
      if (!(err instanceof NetlinkError)) throw err;
    }
  }

  #receive(m: KernelMessage): void {
    let messages: W1NetlinkMessage[];
    try {
      messages = decodeW1Messages(m.data);
    } catch {
      messages = [];
    }
    this.requests.push({ flags: m.flags, seq: m.seq, ack: m.ack, messages });
    const reply = new Reply(this.#kernel, m);
    if (m.flags & ~W1_CN_BUNDLE) {
      reply.error(messages[0], EINVAL);
      return;
    }
    if (messages.length === 0 && m.data.byteLength > 0) {
      reply.error(undefined, E2BIG);
      return;
    }
    for (const msg of messages) {
      if (msg.type === W1_MESSAGE.LIST_MASTERS) {
        reply.listMasters([...this.#masters.keys()]);
        continue;
      }
      if (msg.data.byteLength === 0) {
        reply.error(msg, EPROTO);
        continue;
      }
      let master: Master | undefined;
      let slave: W1Id | undefined;
      if (msg.type === W1_MESSAGE.MASTER_CMD) {
        master = this.#masters.get(new DataView(msg.id.buffer, msg.id.byteOffset, 4).getUint32(0, LITTLE_ENDIAN));
      } else if (msg.type === W1_MESSAGE.SLAVE_CMD) {
        const name = w1IdFromBytes(msg.id).name;
        master = [...this.#masters.values()].find((x) => x.slaves.has(name));
        slave = master?.slaves.get(name)?.rom;
      } else {
        reply.error(msg, EPROTO);
        continue;
      }
      if (!master) {
        reply.error(msg, ENODEV);
        continue;
      }
      // The kernel runs commands later, in the master's thread.
      reply.hold();
      const target = master;
      setTimeout(() => {
        this.#run(target, slave, msg, reply);
        reply.release();
      }, 0);
    }
    reply.release();
  }

  #run(master: Master, slave: W1Id | undefined, msg: W1NetlinkMessage, reply: Reply): void {
    if (slave && !this.#select(master, slave)) {
      reply.status(msg, msg.commands[0], -ENODEV);
      return;
    }
    for (const cmd of msg.commands) {
      const err = slave ? this.#slaveCommand(master, cmd, msg, reply) : this.#masterCommand(master, cmd, msg, reply);
      reply.status(msg, cmd, err);
    }
  }

  #reset(master: Master): boolean {
    for (const d of master.devices) d.device.reset?.();
    master.selected = [];
    master.match = [];
    if (master.fault === "no-presence" || master.devices.length === 0) {
      master.phase = "idle";
      return false;
    }
    master.phase = "rom";
    return true;
  }

  /**
   * w1_reset_select_slave: a reset (failing only when nobody answers), then SKIP ROM when the core
   * has one slave attached, else MATCH ROM. A slave that left a bus others remain on is "selected"
   * and reads 0xff, as on a real bus.
   */
  #select(master: Master, rom: W1Id): boolean {
    if (!this.#reset(master)) return false;
    this.#write(master, master.slaves.size === 1 ? Uint8Array.of(0xcc) : Uint8Array.from([0x55, ...rom.bytes]));
    return true;
  }

  #write(master: Master, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.byteLength; i++) {
      const b = bytes[i];
      switch (master.phase) {
        case "rom":
          if (b === 0x55) master.phase = "match";
          else if (b === 0xcc) {
            master.selected = master.devices.map((d) => d.device);
            master.phase = "selected";
          } else master.phase = "idle";
          break;
        case "match":
          master.match.push(b);
          if (master.match.length === 8) {
            const name = w1IdFromBytes(Uint8Array.from(master.match)).name;
            master.selected = master.devices.filter((d) => d.rom.name === name).map((d) => d.device);
            master.phase = master.selected.length ? "selected" : "idle";
          }
          break;
        case "selected":
          for (const d of master.selected) d.write(bytes.subarray(i, i + 1));
          break;
        case "idle":
          break;
      }
    }
  }

  #read(master: Master, length: number): Uint8Array {
    const out = new Uint8Array(length).fill(0xff);
    if (master.phase !== "selected") return out;
    for (const d of master.selected) {
      const got = d.read(length);
      for (let i = 0; i < length; i++) out[i] &= got[i] ?? 0xff; // wired AND
    }
    return out;
  }

  #io(master: Master, cmd: W1NetlinkCommand, msg: W1NetlinkMessage, reply: Reply): number {
    switch (cmd.cmd) {
      case W1_COMMAND.WRITE:
        this.#write(master, cmd.data);
        return 0;
      case W1_COMMAND.READ:
        reply.data(msg, cmd.cmd, this.#read(master, cmd.data.byteLength));
        return 0;
      case W1_COMMAND.TOUCH:
        // No device drives the line in write slots here: the bus reads back what was written.
        this.#write(master, cmd.data);
        reply.data(msg, cmd.cmd, cmd.data.slice());
        return 0;
      default:
        return -EINVAL;
    }
  }

  #slaveCommand(master: Master, cmd: W1NetlinkCommand, msg: W1NetlinkMessage, reply: Reply): number {
    return this.#io(master, cmd, msg, reply);
  }

  #masterCommand(master: Master, cmd: W1NetlinkCommand, msg: W1NetlinkMessage, reply: Reply): number {
    switch (cmd.cmd) {
      case W1_COMMAND.RESET:
        return this.#reset(master) ? 0 : 1; // w1_reset_bus: 1 = no presence, sent as (u8)-1 = 255
      case W1_COMMAND.SEARCH:
      case W1_COMMAND.ALARM_SEARCH: {
        const alarmOnly = cmd.cmd === W1_COMMAND.ALARM_SEARCH;
        const found = master.fault === "no-presence" ? [] : master.devices
          .filter((d) => !alarmOnly || (d.device.alarm?.() ?? false))
          .map((d) => d.rom)
          .sort(searchOrder);
        reply.ids(msg, cmd.cmd, found, this.#idsPerReply);
        this.#afterSearch(master, found);
        master.phase = "idle";
        return 0;
      }
      case W1_COMMAND.LIST_SLAVES:
        reply.ids(msg, cmd.cmd, [...master.slaves.values()].map((s) => s.rom), this.#idsPerReply);
        return 0;
      case W1_COMMAND.SLAVE_ADD:
      case W1_COMMAND.SLAVE_REMOVE: {
        if (cmd.data.byteLength !== 8) return -EINVAL;
        const rom = w1IdFromBytes(cmd.data);
        const attached = master.slaves.has(rom.name);
        if (cmd.cmd === W1_COMMAND.SLAVE_ADD) {
          if (attached) return -EINVAL;
          this.#attach(master, rom);
        } else {
          if (!attached) return -EINVAL;
          this.#detach(master, rom);
        }
        return 0;
      }
      default:
        return this.#io(master, cmd, msg, reply);
    }
  }

  #attach(master: Master, rom: W1Id): void {
    master.slaves.set(rom.name, { rom, ttl: this.#slaveTtl });
    this.#event(master, W1_MESSAGE.SLAVE_ADD, rom.bytes);
  }

  #detach(master: Master, rom: W1Id): void {
    master.slaves.delete(rom.name);
    this.#event(master, W1_MESSAGE.SLAVE_REMOVE, rom.bytes);
  }

  /** w1_search_process_cb: found slaves are attached (valid CRC) or refreshed; the others age. */
  #afterSearch(master: Master, found: W1Id[]): void {
    const seen = new Set(found.map((r) => r.name));
    for (const rom of found) {
      const slave = master.slaves.get(rom.name);
      if (slave) slave.ttl = this.#slaveTtl;
      else if (rom.crcValid) this.#attach(master, rom);
    }
    for (const [name, slave] of [...master.slaves]) {
      if (seen.has(name)) continue;
      if (--slave.ttl <= 0) this.#detach(master, slave.rom);
    }
  }
}

/** The replies to one request, laid out and sent as the kernel does. */
