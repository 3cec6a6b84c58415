/**
 * w1scan: lists the 1-Wire bus masters and the devices on each bus, and reads every family the
 * library knows, through the kernel's w1 netlink interface: DS18B20 thermometers (all converted at
 * once; temperature, resolution, power supply), DS2413 and DS2408 switches (pins and latches), DS2438
 * battery monitors (temperature, VAD, VDD, current), DS2423 counters, DS2431 EEPROMs (first bytes).
 * With `--watch` it then prints bus events (devices and masters coming and going) until interrupted.
 *
 *   deno run --allow-ffi examples/w1scan.ts [--json] [--watch] [--conversion-ms 750]
 *   bun examples/w1scan.ts --json
 *
 * Needs the w1 core (`modprobe wire`, a kernel with CONFIG_W1_CON) and a bus master driver. Any user
 * may scan; `--watch` needs root before Linux 6.6 (group 3). Exit status: 0 done, 1 failed, 2 usage.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import {
  convertAll,
  familyName,
  readDs2408,
  readDs2413,
  readDs2423Counters,
  readDs2438,
  readEeprom,
  readPowerSupply,
  readTemperature,
  W1Bus,
  type W1Id,
} from "../w1.ts";
import { parseNumberFlag } from "../src/args.ts";

const USAGE = "usage: w1scan [--json] [--watch] [--conversion-ms N] [--timeout-ms N]";

let options;
try {
  options = parseArgs({
    options: {
      json: { type: "boolean", default: false },
      watch: { type: "boolean", default: false },
      "conversion-ms": { type: "string", default: "750" },
      "timeout-ms": { type: "string", default: "5000" },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
} catch (err) {
  console.error(`w1scan: ${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
if (options.help) {
  console.log(USAGE);
  process.exit(0);
}
let conversionMs: number;
let timeoutMs: number;
try {
  conversionMs = parseNumberFlag("--conversion-ms", options["conversion-ms"], "duration-ms");
  timeoutMs = parseNumberFlag("--timeout-ms", options["timeout-ms"], "timeout-ms");
} catch (err) {
  console.error(`w1scan: ${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}

const json = options.json;
const print = (item: Record<string, unknown>, text: string) => console.log(json ? JSON.stringify(item) : text);

const bits = (value: number, width: number) => value.toString(2).padStart(width, "0");
const hexBytes = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");

/** What a device of a known family reads: fields for --json, and the text after the id. */
async function readingOf(
  bus: W1Bus,
  id: W1Id,
  converted: boolean,
): Promise<[Record<string, unknown>, string] | undefined> {
  const request = { timeoutMs };
  switch (id.family) {
    case 0x28: {
      const r = await readTemperature(bus, id, { convert: !converted, conversionMs, ...request });
      const power = await readPowerSupply(bus, id, request);
      return [
        { celsius: r.celsius, resolution: r.resolution, power },
        `${r.celsius.toFixed(4)} °C  ${r.resolution} bits  ${power} power`,
      ];
    }
    case 0x3a: {
      const s = await readDs2413(bus, id, request);
      const level = (high: boolean) => (high ? "high" : "low");
      return [
        { pioA: s.pioA, pioB: s.pioB, latchA: s.latchA, latchB: s.latchB },
        `PIOA ${level(s.pioA)}${s.latchA ? "" : " (driven)"}  PIOB ${level(s.pioB)}${s.latchB ? "" : " (driven)"}`,
      ];
    }
    case 0x29: {
      const r = await readDs2408(bus, id, request);
      return [
        { state: r.state, output: r.output, activity: r.activity },
        `pins ${bits(r.state, 8)}  latches ${bits(r.output, 8)}  activity ${bits(r.activity, 8)}`,
      ];
    }
    case 0x26: {
      const r = await readDs2438(bus, id, request);
      return [
        { celsius: r.celsius, vad: r.vad, vdd: r.vdd, current: r.current },
        `${r.celsius.toFixed(3)} °C  VAD ${r.vad.toFixed(2)} V  VDD ${r.vdd.toFixed(2)} V  current ${r.current}`,
      ];
    }
    case 0x1d: {
      const { counters } = await readDs2423Counters(bus, id, request);
      return [{ counters }, `counters ${counters.join(" ")} (A ${counters[2]}, B ${counters[3]})`];
    }
    case 0x2d: {
      const first = await readEeprom(bus, id, 0, 8, request);
      return [{ memory: hexBytes(first) }, `memory ${hexBytes(first)} ...`];
    }
    default:
      return undefined;
  }
}

/** One device's line: id, family, and what a device of a known family reads. */
async function describe(bus: W1Bus, master: number, id: W1Id, converted: boolean): Promise<void> {
  const family = familyName(id.family);
  const item: Record<string, unknown> = { type: "device", master, id: id.name, family: id.family, familyName: family };
  let text = `  ${id.name}  ${(family ?? "?").padEnd(8)}`;
  if (!id.crcValid) {
    item.crcValid = false;
    text += "  ROM CRC wrong (not attached by the kernel)";
  } else {
    try {
      const reading = await readingOf(bus, id, converted);
      if (reading) {
        Object.assign(item, reading[0]);
        text += `  ${reading[1]}`;
      }
    } catch (err) {
      item.error = (err as Error).message;
      text += `  ${(err as Error).message}`;
    }
  }
  print(item, text);
}

await using bus = await W1Bus.open();
let masters: number[];
try {
  masters = await bus.listMasters({ timeoutMs });
} catch (err) {
  // With no w1 core loaded, the library's TimeoutError says so (modprobe wire).
  console.error(`w1scan: ${(err as Error).message}`);
  process.exit(1);
}
if (masters.length === 0 && !json) console.log("no 1-Wire bus masters");
let failed = false;
for (const master of masters) {
  let ids: W1Id[];
  try {
    ids = await bus.search(master, { timeoutMs });
  } catch (err) {
    failed = true;
    print({ type: "master", master, error: (err as Error).message }, `master ${master}: ${(err as Error).message}`);
    continue;
  }
  print({ type: "master", master, devices: ids.length }, `master ${master}: ${ids.length} device(s)`);
  // Start every thermometer of the bus at once, then read each.
  let converted = false;
  if (ids.some((id) => id.family === 0x28 && id.crcValid)) {
    await convertAll(bus, master, { timeoutMs });
    await new Promise((r) => setTimeout(r, conversionMs));
    converted = true;
  }
  for (const id of ids) await describe(bus, master, id, converted);
}

if (options.watch) {
  const stop = new AbortController();
  process.on("SIGINT", () => stop.abort());
  process.on("SIGTERM", () => stop.abort());
  if (!json) console.log("watching bus events (Ctrl-C to stop)");
  else print({ type: "watching" }, "");
  for await (const e of bus.events({ signal: stop.signal })) {
    if ("id" in e) {
      print({ type: e.type, id: e.id.name, seq: e.seq }, `${e.type} ${e.id.name}`);
    } else {
      print({ type: e.type, master: e.master, seq: e.seq }, `${e.type} ${e.master}`);
    }
  }
}
process.exitCode = failed ? 1 : 0;
