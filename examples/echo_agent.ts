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
import { Connector } from "../mod.ts";

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const id = { idx: option("idx", 20), val: option("val", 0x456) };
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
