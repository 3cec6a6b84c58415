/**
 * The cnlink listener for the benchmark, run under Deno and under Bun. Same line protocol as
 * c_listener.c: prints {"ready":true}; reads "track PID", "idle SEC", "close".
 *
 * @module
 */
import process from "node:process";
import { createInterface } from "node:readline";
import { monotonicClock, ProcMonitor } from "../proc.ts";
import { Connector } from "../mod.ts";

const MAX_PID = 1 << 22;
const tracked = new Uint8Array(MAX_PID);
const now = await monotonicClock();
const monitor = await ProcMonitor.open();
const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");

let root = 0;
let rootExited = false;
let delivered = 0;
let cpu0 = process.cpuUsage();
let rss10k = 0;
let lastDelivery = 0;
let quietTimer: ReturnType<typeof setTimeout> | undefined;
let samples: number[] = [];
let base = { overruns: 0, seqLost: 0 };

const cpuSinceUs = (start: { user: number; system: number }) => {
  const c = process.cpuUsage(start);
  return c.user + c.system;
};

function report(): void {
  samples.sort((a, b) => a - b);
  const s = monitor.stats;
  say({
    delivered,
    overruns: s.overruns - base.overruns,
    seqLost: s.seqLost - base.seqLost,
    cpuUs: cpuSinceUs(cpu0),
    rss10kKb: rss10k,
    rssEndKb: Math.round(process.memoryUsage().rss / 1024),
    latencyP50Us: samples.length ? samples[samples.length >> 1] : -1,
    latencyP99Us: samples.length ? samples[Math.floor(samples.length * 0.99)] : -1,
    latencySamples: samples.length,
  });
  root = 0;
  rootExited = false;
}

const commands = createInterface({ input: process.stdin });
commands.on("line", async (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === "track") {
    tracked.fill(0);
    root = Number(arg);
    tracked[root] = 1;
    delivered = 0;
    samples = [];
    rss10k = 0;
    base = { overruns: monitor.stats.overruns, seqLost: monitor.stats.seqLost };
    cpu0 = process.cpuUsage();
    say({ tracking: root });
  } else if (cmd === "idle") {
    const c = process.cpuUsage();
    const t = performance.now();
    await new Promise((r) => setTimeout(r, Number(arg) * 1000));
    say({ idleCpuPct: cpuSinceUs(c) / 1e4 / ((performance.now() - t) / 1000) });
  } else if (cmd === "close") {
    const t = performance.now();
    await monitor.close();
    say({ closeMs: performance.now() - t });
  } else if (cmd === "quiet") {
    // A connector waiting on a group nobody sends to: what an idle cnlink socket costs.
    const conn = await Connector.open({ groups: [23] });
    const pending = conn.messages().next();
    await new Promise((r) => setTimeout(r, 1000)); // the first wait starts the waiter (Bun: a worker); measure after
    const c = process.cpuUsage();
    const t = performance.now();
    await new Promise((r) => setTimeout(r, Number(arg) * 1000));
    say({ quietCpuPct: cpuSinceUs(c) / 1e4 / ((performance.now() - t) / 1000) });
    await conn.close();
    await pending;
    commands.close();
  }
});

say({ ready: true });
for await (const e of monitor) {
  if (root === 0 || e.type === "lost") continue;
  let mine = false;
  if (e.type === "fork") {
    if (tracked[e.parentTgid] === 1) {
      tracked[e.childTgid] = 1;
      mine = true;
    }
  } else if (e.type === "exec") {
    // The storm root's own exec happened before tracking began, but may be read after it.
    mine = tracked[e.tgid] === 1 && e.tgid !== root;
  } else if (e.type === "exit") {
    mine = tracked[e.tgid] === 1;
    if (mine && e.tgid === root) rootExited = true;
    // The pid will be reused: stop tracking it once the process is gone.
    else if (mine && e.pid === e.tgid) tracked[e.tgid] = 0;
  }
  if (!mine) continue;
  delivered++;
  if (delivered === 10_000) rss10k = Math.round(process.memoryUsage().rss / 1024);
  const t = performance.now();
  if (t - lastDelivery > 5) samples.push(Number(now() - e.timestampNs) / 1000);
  lastDelivery = t;
  if (rootExited) {
    clearTimeout(quietTimer);
    quietTimer = setTimeout(report, 300);
  }
}
