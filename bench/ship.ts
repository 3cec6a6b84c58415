/**
 * Shipping cost: procmon shipping every event to a local NATS JetStream (`--nats`, ECS documents,
 * acknowledged one by one with a message id), side by side with `procmon --json` written to a pipe
 * that is read and thrown away, on Deno and on Bun, over the same fork storm, in one invocation.
 * Needs root, `cc` (builds bench/out/storm like bench/run.ts) and nats-server (installed with apt-get
 * when missing).
 *
 *   deno run -A bench/ship.ts [CHILDREN]     (default 20 000 children: ~60 000 storm events)
 *
 * Per run: events procmon handled (its own count: the storm's plus whatever else the host did),
 * events per second from the storm's start to the last event written (json) or stored (nats), CPU
 * of the procmon process (user + system, all threads, from /proc/PID/stat) per event, and for nats
 * the acked/duplicate/dropped counts.
 *
 * @module
 */
import process from "node:process";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsServer } from "../tests/_nats.ts";
import { subscribed } from "../tests/_kernel.ts";
import { startStorm } from "./storm_process.ts";

const here = import.meta.dirname!;
const root = join(here, "..");
const children = process.argv[2] ?? "20000";
const TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim() || 100);

mkdirSync(join(here, "out"), { recursive: true });
const cc = spawnSync("cc", ["-O2", "-o", join(here, "out", "storm"), join(here, "storm.c")], { stdio: "inherit" });
if (cc.status !== 0) throw new Error("cannot compile bench/storm.c (is cc installed? apt-get install gcc)");

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

const runtimes: [string, (args: string[]) => [string, string[]]][] = [
  ["deno", (a) => [join(root, "node_modules/.bin/deno"), ["run", "-A", join(root, "cli/procmon.ts"), ...a]]],
  ["bun", (a) => [join(root, "node_modules/.bin/bun"), [join(root, "cli/procmon.ts"), ...a]]],
];

const server = await NatsServer.start();
const nc = await connect({ servers: server.url });
const jsm = await jetstreamManager(nc);
const rows: Record<string, unknown>[] = [];

try {
  for (const [runtime, command] of runtimes) {
    for (const mode of ["json", "nats"] as const) {
      const host = `bench-${runtime}`;
      const args = mode === "json" ? ["--json"] : ["--nats", server.url, "--host", host, "-q"];
      const [cmd, argv] = command(args);
      const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
      let lines = 0;
      let lastLine = 0;
      let stderr = "";
      child.stdout!.on("data", (c: Buffer) => {
        for (const b of c) if (b === 10) lines++;
        lastLine = performance.now();
      });
      child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
      const exited = once(child, "exit");
      await subscribed(child.pid!);
      await new Promise((r) => setTimeout(r, 1000)); // the shipper connects, the table is seeded
      const storm = await startStorm([children, "-x"]);
      const count = async () => {
        const info = await jsm.streams.info("PROCMON", { subjects_filter: `procmon.${host}.>` }).catch(() => undefined);
        return Object.values(info?.state.subjects ?? {}).reduce((a, b) => a + b, 0);
      };
      // Events before the storm (the host's own) are not counted: counts and CPU start here.
      const lines0 = lines;
      const stored0 = mode === "nats" ? await count() : 0;
      const cpu0 = cpuSeconds(child.pid!);
      const t0 = performance.now();
      await storm.go();
      const stormEnd = performance.now();
      // Until nothing more arrives for 2 s (nats: and something arrived, or 120 s passed): the last
      // event written, or stored.
      let stored = stored0;
      let lastStored = t0;
      for (let quiet = 0; quiet < 20;) {
        await new Promise((r) => setTimeout(r, 100));
        if (mode === "nats") {
          const n = await count();
          if (n !== stored) (stored = n, lastStored = performance.now(), quiet = 0);
          else if (stored > stored0 || performance.now() - stormEnd > 120_000) quiet++;
        } else quiet = performance.now() - lastLine > 2000 ? 20 : 0;
        // The host's own processes keep producing events: stop 30 s after the storm whatever comes.
        if (performance.now() - stormEnd > 30_000 && (mode === "json" || stored > stored0)) break;
      }
      const cpu = cpuSeconds(child.pid!) - cpu0;
      // CPU per event over what was handled (json) or stored (nats) until here, before the exit's drain.
      const handled = mode === "nats" ? stored - stored0 : lines - lines0;
      child.kill("SIGINT");
      await exited;
      // procmon drains for up to 10 s at exit: what it stored then counts, at the time it exited.
      if (mode === "nats") {
        const final = await count();
        if (final > stored) (stored = final, lastStored = performance.now());
      }
      const end = mode === "nats" ? lastStored : Math.min(lastLine, stormEnd + 30_000);
      const m = /nats: (\d+) accepted, (\d+) acked, (\d+) duplicates, (\d+) dropped/.exec(stderr);
      const events = mode === "nats" ? stored - stored0 : lines - lines0;
      rows.push({
        runtime,
        mode: mode === "json" ? "procmon --json > pipe" : "procmon --nats (ECS, acked)",
        events,
        stormSeconds: Number(((stormEnd - t0) / 1000).toFixed(1)),
        eventsPerSecond: Math.round(events / ((end - t0) / 1000)),
        cpuUsPerEvent: Number((cpu * 1e6 / Math.max(1, handled)).toFixed(2)),
        ...(mode === "nats" ? { storedAtExitDrain: events - handled } : {}),
        ...(mode === "nats" ? { acked: Number(m?.[2]), duplicates: Number(m?.[3]), dropped: Number(m?.[4]) } : {}),
      });
      console.error(JSON.stringify(rows.at(-1)));
    }
  }
} finally {
  await nc.close();
  await server.stop();
}
console.table(rows);
