import { describe } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { Connector } from "../mod.ts";
import { kernelTest } from "./_kernel.ts";
import { scriptCommand } from "./_runtime.ts";

describe("examples", () => {
  kernelTest("echo_agent answers a request and exits cleanly on SIGTERM", async () => {
    const [cmd, args] = scriptCommand("examples/echo_agent.ts", "--idx", "21", "--val", "7");
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    try {
      let out = "";
      child.stdout.setEncoding("utf8");
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout.on("data", (chunk: string) => {
          out += chunk;
          const m = /listening on port (\d+) for 21:7/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.once("exit", (code) => reject(new Error(`agent exited with ${code}: ${out}`)));
      });
      await using client = await Connector.open();
      const reply = await client.request({ id: { idx: 21, val: 7 }, data: new Uint8Array([1, 2, 3]) }, {
        to: { port },
        timeoutMs: 3000,
      });
      assert.deepEqual([...reply.data], [3, 2, 1]);
      assert.equal(reply.source.port, port);
      const exited = once(child, "close");
      child.kill("SIGTERM");
      await exited;
      // Deno's node:child_process reports a child that handled the signal as killed by it, so the
      // clean shutdown is checked by what the agent printed after close().
      assert.match(out, /stopped\n$/, `the agent closes its connector and exits by itself; it printed: ${out}`);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  kernelTest("send_recv runs to the end and gets its pong", async () => {
    const [cmd, args] = scriptCommand("examples/send_recv.ts");
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (c: string) => (out += c));
    const [code] = await once(child, "close"); // after stdout is read to the end; "exit" may come before
    assert.equal(code, 0);
    assert.match(out, /by multicast to group 20 .*"to group 20"/);
    assert.match(out, /by multicast to group 22 .*"to group 22"/);
    assert.match(out, /by unicast .*"to the port"/);
    assert.match(out, /client got "pong"/);
  });
});
