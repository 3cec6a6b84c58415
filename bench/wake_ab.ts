/**
 * Wake-up latency of two or more versions of the library, in one process, taking turns: the A/B
 * check of `bench/run.ts --baseline` for latency alone, with far more samples and with the machine's
 * drift shared by both sides. Needs root and `bench/out/storm` (built by `bench/run.ts`).
 *
 *   deno run -A bench/wake_ab.ts TREE...      bun bench/wake_ab.ts TREE...
 *
 * Each tree first gets a `ProcMonitor` through an unpaced storm (`WARM` children, default 100 000: the
 * state a monitor is in after a burst, which is where `bench/run.ts` samples latency). Then, for
 * `ROUNDS` rounds (default 12), each tree in turn (the order reversed every other round) opens a
 * monitor, sees `CHILDREN` children (default 60) forked `PAUSE_US` apart (default 20 000), and closes.
 * A sample is the time from a fork event's kernel timestamp to the moment the `for await` loop has it
 * (CLOCK_MONOTONIC on both sides), one per child: the first event after a quiet spell, as in the
 * benchmark.
 *
 * Prints one JSON line per tree: median over rounds of each round's p50, the p50 and p90 of all its
 * samples, the median over rounds of the process's CPU per paced fork (a fork and an exit event, each
 * a wake-up; measured from the first sampled fork to the last, so the storm's spawn is left out), and
 * (for every tree after the first) the median over rounds of its p50 / the first tree's.
 *
 * @module
 */
import process from "node:process";
import { join, resolve } from "node:path";
import { monotonicClock } from "../proc.ts";
import { startStorm } from "./storm_process.ts";

const trees = process.argv.slice(2).map((t) => resolve(t));
if (!trees.length) trees.push(resolve(join(import.meta.dirname!, "..")));
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const ROUNDS = env("ROUNDS", 12);
const WARM = env("WARM", 100_000);
const CHILDREN = env("CHILDREN", 60);
const PAUSE_US = env("PAUSE_US", 20_000);
const now = await monotonicClock();

type Monitor = import("../proc.ts").ProcMonitor;
const opens: (() => Promise<Monitor>)[] = [];
for (const tree of trees) {
  const { ProcMonitor } = await import(join(tree, "proc.ts")) as typeof import("../proc.ts");
  opens.push(() => ProcMonitor.open());
}

/**
 * Runs bench/out/storm with `args` under `monitor`; returns the latency samples (µs) of its forks and
 * the process's CPU time (µs) from the first sampled fork to the last.
 */
async function storm(monitor: Monitor, args: string[]): Promise<{ samples: number[]; cpuUs: number }> {
  const { pid, go } = await startStorm(args);
  const samples: number[] = [];
  // The storm forks one worker (per core when unpaced), and the workers fork the children.
  const workers = new Set<number>();
  let over = false;
  let first: { user: number; system: number } | undefined;
  let cpuUs = 0;
  void go().then(() => setTimeout(() => (over = true, void monitor.close()), 300));
  for await (const e of monitor) {
    if (e.type === "fork" && e.parentTgid === pid) workers.add(e.childTgid);
    else if (e.type === "fork" && workers.has(e.parentTgid)) {
      samples.push(Number(now() - e.timestampNs) / 1000);
      if (!first) first = process.cpuUsage();
      else {
        const c = process.cpuUsage(first);
        cpuUs = c.user + c.system;
      }
    }
    if (over) break;
  }
  return { samples, cpuUs };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))];
};

for (const open of opens) await storm(await open(), [String(WARM)]);
const p50s: number[][] = trees.map(() => []);
const all: number[][] = trees.map(() => []);
const cpuPerFork: number[][] = trees.map(() => []);
for (let round = 0; round < ROUNDS; round++) {
  const order = trees.map((_, i) => i);
  if (round % 2) order.reverse();
  for (const i of order) {
    const { samples, cpuUs } = await storm(await opens[i](), [String(CHILDREN), "-p", String(PAUSE_US)]);
    p50s[i].push(quantile(samples, 0.5));
    cpuPerFork[i].push(cpuUs / Math.max(1, samples.length - 1));
    all[i].push(...samples);
  }
}
trees.forEach((tree, i) => {
  const ratios = p50s[i].map((p, round) => p / p50s[0][round]);
  console.log(JSON.stringify({
    tree,
    runtime: typeof Deno !== "undefined" ? "deno" : "bun",
    samples: all[i].length,
    p50OfRounds: Math.round(quantile(p50s[i], 0.5)),
    p50: Math.round(quantile(all[i], 0.5)),
    p90: Math.round(quantile(all[i], 0.9)),
    cpuUsPerFork: Math.round(quantile(cpuPerFork[i], 0.5)),
    ...(i > 0 ? { ratioToFirst: Number(quantile(ratios, 0.5).toFixed(3)) } : {}),
  }));
});
