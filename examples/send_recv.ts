/**
 * Two connector sockets in one process: unicast, multicast on two groups, and request/reply.
 * Needs root (groups 20/22 are even, and user-to-user sends need CAP_NET_ADMIN).
 *
 *   deno run --allow-ffi examples/send_recv.ts
 *   bun examples/send_recv.ts
 *
 * @module
 */
import { Connector } from "../mod.ts";

const id = { idx: 20, val: 0x456 };
const text = (s: string) => new TextEncoder().encode(s);

await using server = await Connector.open({ groups: [20, 22] });
await using client = await Connector.open();
console.log(`server port ${server.port} in groups ${server.groups.join(", ")}; client port ${client.port}`);

// The server answers requests (and prints everything else it receives).
server.addCallback(id, "server", (msg) => {
  const body = new TextDecoder().decode(msg.data);
  const how = msg.source.group ? `multicast to group ${msg.source.group}` : "unicast";
  console.log(`server got seq ${msg.seq} by ${how} from port ${msg.source.port}: ${JSON.stringify(body)}`);
  if (body.startsWith("ping")) {
    server.send({ id, seq: msg.seq, ack: msg.seq + 1, data: text("pong") }, { to: { port: msg.source.port } });
  }
});

client.send({ id, seq: 1, data: text("to group 20") }, { to: { group: 20 } });
client.send({ id, seq: 2, data: text("to group 22") }, { to: { group: 22 } });
client.send({ id, seq: 3, data: text("to the port") }, { to: { port: server.port } });
const reply = await client.request({ id, data: text("ping") }, { to: { port: server.port }, timeoutMs: 1000 });
console.log(`client got ${JSON.stringify(new TextDecoder().decode(reply.data))} with ack ${reply.ack}`);
