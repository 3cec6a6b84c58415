/**
 * CPU per event of an enriching `ProcMonitor` (`enrich: true`: a process table, /proc read for every
 * exec) of several checkouts, side by side in one run, under the same bursts of short-lived children:
 *
 *   deno run -A bench/enrich_cpu.ts [--rounds N] [--burst 8,32,128] [--repeat N] [--warm N] [--runtimes deno,bun] [--together] [--c=NICE,...] DIR...   (root)
 *
 * Each DIR is a checkout with its node_modules (e.g. `git worktree add --detach /tmp/cpu-base 4a171ca`);
 * `.` is this one. In each round, for each runtime, each checkout in turn (the order rotates from round
 * to round) runs alone in a process of its own (this script with `--monitor DIR`): it opens the
 * monitor, waits until it is subscribed (and until its receipt worker reads the socket, where there is
 * one), then reads every item in a `for await` loop while this script runs a warm-up burst of 32 of
 * each workload (and, with `--warm N`, N unmeasured passes of the measured bursts too: a long-running
 * monitor's steady state, once the runtime has compiled its hot code), then the measured bursts (`--repeat`
 * times each of `sh -c 'exit 0'` and `/bin/true quick`, N children at once for each N of `--burst`,
 * 300 ms apart). It counts CPU from just before the first burst to 500 ms after the last: user +
 * system of its own process from `process.cpuUsage()` (every thread of the monitoring process: the
 * receive loop, the consumer, the receipt worker, the runtime's own; the children are other
 * processes and not counted), divided by the items it got meanwhile (the bursts' and whatever else
 * ran on the host); and it tells how the bursts' execs were named: the whole command line, only a
 * name (comm), or nothing.
 *
 * With `--together` the checkouts' monitors (of one runtime) run at the same time instead, in
 * processes of their own: each gets exactly the same events (the host's activity, which moves the
 * absolute figures by a third between runs on a shared machine, is then the same for all), while
 * they compete for the CPU with each other.
 *
 * With `--c=NICE[,NICE]` (e.g. `--c=-10,0`), C references run too, as checkouts named `C, nice N`: bench/proc_reads.c, a
 * plain C loop that does the receipt worker's /proc reads (cmdline and stat at an exec, then cgroup
 * and exe; the cgroup of a process exiting, and of a parent forking) at that nice value (the worker's
 * is -10 as root). It tells the price of the reads and of the race to them from the price of the JS.
 *
 * Prints, per runtime and checkout, the medians over rounds of CPU µs per item (and of the main
 * thread's alone: CLOCK_THREAD_CPUTIME_ID), of its ratio to the first checkout's in the same round,
 * and of items, and the sums of the execs named; writes every run to bench/out/enrich_cpu.json.
 *
 * @module
 */
import process from "node:process";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { threadClock } from "./thread_clock.ts";
import { burstOf } from "../tests/_kernel.ts";

const here = dirname(new URL(import.meta.url).pathname);
const WORKLOADS = [
  { command: "sh -c 'exit 0'", cmdline: "sh -c exit 0" },
  { command: "/bin/true quick", cmdline: "/bin/true quick" },
] as const;

/** What one monitoring process reports. */
interface Run {
  tree: string;
  runtime: string;
  round: number;
  items: number;
  cpuUs: number;
  /** Of it, the main thread's (the receive loop, the table, the consumer). */
  mainUs: number;
  usPerItem: number;
  execs: number;
  cmdline: number;
  nameOnly: number;
  nothing: number;
}

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    monitor: { type: "string" },
    rounds: { type: "string", default: "5" },
    burst: { type: "string", default: "8,32,128" },
    repeat: { type: "string", default: "2" },
    warm: { type: "string", default: "0" },
    runtimes: { type: "string", default: "deno,bun" },
    together: { type: "boolean", default: false },
    c: { type: "string" },
  },
});

if (values.monitor !== undefined) await monitor(resolve(values.monitor));
else await drive();

/** One monitoring process: stdin says `go`, then `stop PID,PID,...` (the bursts' execs). */
async function monitor(tree: string): Promise<void> {
  const { ProcMonitor } = await import(join(tree, "proc.ts")) as typeof import("../proc.ts");
  const threadUs = await threadClock();
  const m = await ProcMonitor.open({ enrich: true });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // A checkout with a receipt worker: wait until it reads the socket (older ones have none).
  for (let waited = 0; m.stats.receipt && !m.stats.receipt.active && waited < 60_000; waited += 50) await sleep(50);
  let counting = false;
  let items = 0;
  const named = new Map<number, "cmdline" | "nameOnly" | "nothing">();
  const reader = (async () => {
    for await (const item of m) {
      if (!counting) continue;
      items++;
      if (item.type !== "exec") continue;
      const p = item.process;
      const argv = p?.cmdline?.join(" ");
      named.set(
        item.pid,
        argv && WORKLOADS.some((w) => w.cmdline === argv) ? "cmdline" : p?.comm ? "nameOnly" : "nothing",
      );
    }
  })();
  await sleep(300);
  let start = process.cpuUsage();
  let startMain = threadUs();
  const lines = createInterface({ input: process.stdin });
  console.log("ready");
  for await (const line of lines) {
    if (line === "go") {
      items = 0;
      named.clear();
      counting = true;
      start = process.cpuUsage();
      startMain = threadUs();
      continue;
    }
    const cpu = process.cpuUsage(start);
    const mainUs = threadUs() - startMain;
    counting = false;
    const pids = line.slice("stop ".length).split(",").map(Number);
    const run = { items, cpuUs: cpu.user + cpu.system, mainUs, execs: 0, cmdline: 0, nameOnly: 0, nothing: 0 };
    for (const pid of pids) {
      const how = named.get(pid);
      if (!how) continue;
      run.execs++;
      run[how]++;
    }
    console.log(JSON.stringify(run));
    break;
  }
  lines.close();
  await m.close();
  await reader;
  process.exit(0);
}

/**
 * Runs the bursts under the monitors of `trees` on `runtime`, all at once (each sees the same
 * events), and returns what each reported.
 */
async function measure(trees: string[], runtime: string, round: number): Promise<Run[]> {
  const script = join(here, "enrich_cpu.ts");
  const bin = join(here, "..", "node_modules", ".bin", runtime);
  const monitors = [];
  for (const tree of trees) {
    const args = runtime === "deno" ? ["run", "-A", script, "--monitor", tree] : [script, "--monitor", tree];
    const nice = cNice(tree);
    const child = nice === null
      ? spawn(bin, args, { cwd: tree, stdio: ["pipe", "pipe", "inherit"] })
      : spawn(join(here, "out", "proc_reads"), [String(nice)], { stdio: ["pipe", "pipe", "inherit"] });
    const exited = once(child, "exit");
    const out = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const first = await out.next();
    if (first.value !== "ready") throw new Error(`${runtime} ${tree}: ${first.value ?? "exited"}`);
    monitors.push({ tree, child, out, exited });
  }
  // One burst of each workload first, so that what is measured runs compiled code.
  for (const w of WORKLOADS) await burstOf(32, w.command);
  await new Promise((r) => setTimeout(r, 300));
  const sizes = values.burst.split(",").map(Number);
  await passes(Number(values.warm) * Number(values.repeat), sizes);
  for (const m of monitors) m.child.stdin!.write("go\n");
  const pids = await passes(Number(values.repeat), sizes);
  await new Promise((r) => setTimeout(r, 500));
  for (const m of monitors) m.child.stdin!.write(`stop ${pids.join(",")}\n`);
  const runs: Run[] = [];
  for (const { tree, out, exited } of monitors) {
    const reply = await out.next();
    await exited;
    if (typeof reply.value !== "string") throw new Error(`${runtime} ${tree}: exited without a result`);
    const run = JSON.parse(reply.value);
    runs.push({ tree, runtime, round, ...run, usPerItem: run.cpuUs / run.items });
  }
  return runs;
}

/**
 * Runs `times` passes of the bursts: each workload with N children at once for each N of `sizes`,
 * 300 ms apart. Returns the pids of their execs.
 */
async function passes(times: number, sizes: number[]): Promise<number[]> {
  const pids: number[] = [];
  for (let r = 0; r < times; r++) {
    for (const w of WORKLOADS) {
      for (const n of sizes) {
        pids.push(...await burstOf(n, w.command));
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }
  return pids;
}

/** The nice value of a C reference's pseudo-checkout (`C, nice N`), or null for a checkout. */
function cNice(tree: string): number | null {
  const m = /^C, nice (-?\d+)$/.exec(tree);
  return m ? Number(m[1]) : null;
}

async function drive(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error("enrich_cpu: needs root (the monitors subscribe to process events)");
    process.exit(1);
  }
  const trees = (positionals.length ? positionals : ["."]).map((t) => resolve(t));
  if (values.c !== undefined) {
    mkdirSync(join(here, "out"), { recursive: true });
    const cc = spawnSync("cc", ["-O2", "-o", join(here, "out", "proc_reads"), join(here, "proc_reads.c")], {
      stdio: "inherit",
    });
    if (cc.status !== 0) throw new Error("cannot compile bench/proc_reads.c (is cc installed? apt-get install gcc)");
    for (const nice of values.c.split(",")) trees.push(`C, nice ${Number(nice)}`);
  }
  const runtimes = values.runtimes.split(",");
  const rounds = Number(values.rounds);
  const runs: Run[] = [];
  const load = () => {
    try {
      return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
    } catch {
      return "?";
    }
  };
  const loads = [load()];
  for (let round = 0; round < rounds; round++) {
    const order = trees.map((_, i) => trees[(i + round) % trees.length]);
    for (const runtime of runtimes) {
      // Alternating: each checkout alone in turn; --together: all at once.
      const batches = values.together ? [order] : order.map((tree) => [tree]);
      for (const batch of batches) {
        for (const run of await measure(batch, runtime, round)) {
          runs.push(run);
          console.error(
            `round ${round + 1} ${runtime} ${run.tree}: ${run.usPerItem.toFixed(1)} µs/item ` +
              `(main thread ${(run.mainUs / run.items).toFixed(1)}), ${run.items} items, ` +
              `${run.cmdline}/${run.nameOnly}/${run.nothing} of ${run.execs} execs`,
          );
        }
      }
    }
    loads.push(load());
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  console.log(`load average (1, 5, 15 min) at the start and after each round: ${loads.join(" | ")}`);
  console.log(
    "runtime  checkout                        CPU µs/item (median)  main thread  × first (median of rounds)  " +
      "items (median)  cmdline / name / nothing",
  );
  for (const runtime of runtimes) {
    for (const tree of trees) {
      const mine = runs.filter((r) => r.runtime === runtime && r.tree === tree);
      const sum = (k: "execs" | "cmdline" | "nameOnly" | "nothing") => mine.reduce((a, r) => a + r[k], 0);
      // Against the first checkout in the same round (the same host activity, minutes apart at most).
      const ratios = mine.map((r) => {
        const first = runs.find((f) => f.runtime === runtime && f.tree === trees[0] && f.round === r.round)!;
        return r.usPerItem / first.usPerItem;
      });
      console.log(
        `${runtime.padEnd(8)} ${tree.padEnd(31)} ${median(mine.map((r) => r.usPerItem)).toFixed(1).padStart(20)}  ${
          median(mine.map((r) => r.mainUs / r.items)).toFixed(1).padStart(11)
        }  ${median(ratios).toFixed(3).padStart(26)}  ${String(median(mine.map((r) => r.items))).padStart(14)}  ${
          sum("cmdline")
        } / ${sum("nameOnly")} / ${sum("nothing")} of ${sum("execs")}`,
      );
    }
  }
  mkdirSync(join(here, "out"), { recursive: true });
  writeFileSync(
    join(here, "out", "enrich_cpu.json"),
    JSON.stringify({ trees, rounds, together: values.together, loads, runs }, null, 2),
  );
}
