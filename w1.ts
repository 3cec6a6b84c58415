/**
 * 1-Wire over the connector: a typed client of the kernel's w1 core (`CONFIG_W1_CON`, `{3, 1}`).
 * List bus masters, search a bus (ROM ids with family, serial and CRC checked), run reset, read,
 * write and touch on a master or one slave (several commands in one request), add and remove
 * slaves, and follow bus events. Device helpers: the DS18B20 thermometer (resolution, power
 * supply, the power-on value, many sensors with one conversion), the DS2431 EEPROM, the DS2413 and
 * DS2408 switches, the DS2438 battery monitor and the DS2423 counter; hot-plug by periodic search.
 *
 * Verified against the kernel's w1 core on Linux 6.1 and 6.12 (Debian) in cnlink's kernel lab,
 * with a software bus master module that emulates the devices bit by bit.
 *
 * @example Every thermometer on every bus
 * ```ts ignore
 * import { familyName, readTemperature, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * for (const master of await bus.listMasters()) {
 *   for (const id of await bus.search(master)) {
 *     if (familyName(id.family) !== "DS18B20") continue;
 *     console.log(id.name, (await readTemperature(bus, id)).celsius);
 *   }
 * }
 * ```
 *
 * @module
 */
export { W1Bus, W1Error } from "./src/w1/bus.ts";
export type { ByteInput } from "./src/args.ts";
export type {
  W1BusOptions,
  W1BusOverOptions,
  W1Event,
  W1EventsOptions,
  W1Op,
  W1RequestOptions,
  W1Result,
  W1Stats,
  W1Target,
} from "./src/w1/types.ts";
export {
  convertAll,
  decodeDs18b20Scratchpad,
  ds18b20ConversionMs,
  type Ds18b20Reading,
  type Ds18b20Result,
  familyName,
  getResolution,
  readEeprom,
  readPowerSupply,
  readTemperature,
  type ReadTemperatureOptions,
  readTemperatures,
  type ReadTemperaturesOptions,
  setResolution,
  type SetResolutionOptions,
  W1_FAMILY,
  writeEeprom,
  type WriteEepromOptions,
} from "./src/w1/devices.ts";
export {
  type Ds2408Registers,
  type Ds2413State,
  readDs2408,
  readDs2413,
  resetDs2408Activity,
  type W1SwitchOptions,
  writeDs2408,
  writeDs2408Control,
  writeDs2413,
} from "./src/w1/switches.ts";
export {
  ds2438Humidity,
  type Ds2438Options,
  type Ds2438Reading,
  readDs2438,
  readDs2438Page,
  setDs2438Config,
  setDs2438Offset,
  writeDs2438Page,
} from "./src/w1/ds2438.ts";
export { type Ds2423Counters, readDs2423Counters } from "./src/w1/ds2423.ts";
export { setKernelSearch, type W1SlaveChange, watchSlaves, type WatchSlavesOptions } from "./src/w1/hotplug.ts";
export {
  crc16,
  crc8,
  decodeW1Messages,
  DS18B20_COMMAND,
  DS2408_COMMAND,
  DS2413_COMMAND,
  DS2423_COMMAND,
  DS2431_COMMAND,
  DS2438_COMMAND,
  encodeW1Messages,
  masterIdBytes,
  parseW1Id,
  W1_CMD,
  W1_CN_BUNDLE,
  W1_COMMAND,
  W1_CONFIRMATION,
  W1_MESSAGE,
  W1_MSG,
  W1_NETLINK_CMD,
  W1_NETLINK_MSG,
  W1_ROM_COMMAND,
  type W1Id,
  w1IdFromBytes,
  type W1NetlinkCommand,
  type W1NetlinkMessage,
} from "./src/codec/w1.ts";
