/**
 * CPU per event of one `ProcMonitor` and a `for await` loop, in one process, over one fork storm: the
 * quick in-process A/B of two versions of the library (a checkout of each), alternated by a shell loop
 * because one run is not enough on a noisy machine. Needs root and `bench/out/storm` (built by
 * `bench/run.ts`).
 *
 *   deno run -A bench/storm_cpu.ts TREE [CHILDREN]    bun bench/storm_cpu.ts TREE [CHILDREN]
 *
 * Prints {"tree","events","usPerEvent","mainUsPerEvent","user","sys"}: CPU of the whole process per event (all
 * threads), of the main thread alone (CLOCK_THREAD_CPUTIME_ID: the receive loop and the consumer), and the
 * process's user and system shares.
 *
 * @module
 */
import process from "node:process";
import { threadClock } from "./thread_clock.ts";
import { startStorm } from "./storm_process.ts";
import { join, resolve } from "node:path";

const threadUs = await threadClock();

const tree = resolve(process.argv[2] ?? join(import.meta.dirname!, ".."));
const { ProcMonitor } = await import(join(tree, "proc.ts")) as typeof import("../proc.ts");
const monitor = await ProcMonitor.open();
const storm = await startStorm([process.argv[3] ?? "100000"]);
const start = process.cpuUsage();
const startMain = threadUs();
let events = 0;
let over = false;
void storm.go().then(() => setTimeout(() => (over = true, void monitor.close()), 500));
for await (const _ of monitor) {
  events++;
  if (over) break;
}
const cpu = process.cpuUsage(start);
const main = threadUs() - startMain;
const per = (us: number) => Number((us / events).toFixed(3));
console.log(JSON.stringify({
  tree,
  events,
  usPerEvent: per(cpu.user + cpu.system),
  mainUsPerEvent: per(main),
  user: per(cpu.user),
  sys: per(cpu.system),
}));
