/**
 * A userspace connector agent: the twin of the kernel's `samples/connector/cn_test.c`.
 * It registers a callback for `{idx, val}` and answers every request with the data reversed,
 * `ack = seq + 1`, unicast back to the sender. Needs root (sending to a port needs CAP_NET_ADMIN).
 *
 *   deno run --allow-ffi examples/echo_agent.ts [--idx 20] [--val 0x456]
 *   bun examples/echo_agent.ts
 *
 * It prints `listening on port N for IDX:VAL`, then one line per request, until SIGINT/SIGTERM
 * closes the connector (`stopped`) and the process exits by itself.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { Connector } from "../mod.ts";
import { parseNumberFlag } from "../src/args.ts";

const USAGE = "usage: echo_agent [--idx N] [--val N]   (u32 numbers, decimal or 0x hex)";

// Every flag is checked before the socket is opened; a bad one exits with status 2.
let id: { idx: number; val: number };
try {
  const { values } = parseArgs({
    options: { idx: { type: "string", default: "20" }, val: { type: "string", default: "0x456" } },
    strict: true,
    allowPositionals: false,
  });
  id = { idx: parseNumberFlag("--idx", values.idx!, "u32"), val: parseNumberFlag("--val", values.val!, "u32") };
} catch (err) {
  console.error(`echo_agent: ${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
const conn = await Connector.open();
conn.addCallback(id, "echo", (msg) => {
  const reply = msg.data.slice().reverse();
  conn.send({ id, seq: msg.seq, ack: (msg.seq + 1) >>> 0, data: reply }, { to: { port: msg.source.port } });
  console.log(`seq ${msg.seq} from port ${msg.source.port}: ${msg.data.byteLength} bytes echoed`);
});
const stop = async () => {
  await conn.close();
  console.log("stopped");
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
console.log(`listening on port ${conn.port} for ${id.idx}:${id.val}`);
