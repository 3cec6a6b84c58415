/**
 * 1-Wire over the connector: a typed client of the kernel's w1 core (`CONFIG_W1_CON`, `{3, 1}`).
 * List bus masters, search a bus (ROM ids with family, serial and CRC checked), run reset, read,
 * write and touch on a master or one slave (several commands in one request), add and remove
 * slaves, and follow bus events. Helpers for the DS18B20 thermometer and the DS2431 EEPROM show
 * the API at work.
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
export type {
  W1BusOptions,
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
  type Ds18b20Reading,
  familyName,
  readEeprom,
  readTemperature,
  type ReadTemperatureOptions,
  W1_FAMILY,
  writeEeprom,
  type WriteEepromOptions,
} from "./src/w1/devices.ts";
export {
  crc16,
  crc8,
  decodeW1Messages,
  encodeW1Messages,
  masterIdBytes,
  parseW1Id,
  W1_CMD,
  W1_CN_BUNDLE,
  W1_COMMAND,
  W1_MESSAGE,
  W1_MSG,
  type W1Id,
  w1IdFromBytes,
  type W1NetlinkCommand,
  type W1NetlinkMessage,
} from "./src/codec/w1.ts";
