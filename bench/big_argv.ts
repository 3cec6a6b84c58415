/**
 * How long one process with a huge command line holds up everyone else's events (as root).
 *
 *   deno run -A bench/big_argv.ts [--mb 1.9] [--execs 100]
 *   bun bench/big_argv.ts
 *
 * A `ProcMonitor` with `enrich: true` (what procmon runs) reads /proc/PID/cmdline in its receive loop,
 * before the event is queued. Here a shell re-execs itself `--execs` times with `--mb` MB of arguments
 * (arguments of 64 KiB: one argument may hold at most 128 KiB), while a shell loop of its own starts
 * an unrelated `sleep 0.3` and a `sleep 0.05` every 50 ms. For each unrelated exec the delay is the
 * monotonic time at which the monitor delivers it minus the kernel's timestamp of the event. Prints
 * one JSON line: delays (p50, max) and how many of the unrelated execs came without their command
 * line (read after the process was gone). Figures: docs/PROCMON.md.
 *
 * @module
 */
import process from "node:process";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { parseArgs } from "node:util";
import { monotonicClock, ProcMonitor } from "../proc.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { mb: { type: "string", default: "1.9" }, execs: { type: "string", default: "100" } },
});
const bytes = Number(values.mb) * 1e6;
const execs = Number(values.execs);
const ARG = 64 * 1024;
const big = Array.from({ length: Math.max(1, Math.round(bytes / ARG)) }, (_, i) => String(i % 10).repeat(ARG - 1));

const now = await monotonicClock();
const monitor = await ProcMonitor.open({ enrich: true });
// The unrelated processes: a shell loop of its own, so that starting them does not wait for this
// process's JavaScript thread; its children are recognised by their fork events.
const ticker = spawn("sh", ["-c", "while :; do sleep 0.3 & sleep 0.05; done"], { stdio: "ignore" });
const delaysMs: number[] = [];
const unrelated = new Set<number>();
let withoutCmdline = 0;
let bigExecs = 0;
let bigPid = 0;
const reader = (async () => {
  for await (const e of monitor) {
    if (e.type === "fork" && e.parentTgid === ticker.pid) unrelated.add(e.childTgid);
    if (e.type !== "exec") continue;
    if (e.tgid === bigPid) bigExecs++;
    if (!unrelated.has(e.tgid)) continue;
    delaysMs.push(Number(now() - e.timestampNs) / 1e6);
    if (!e.process?.cmdline?.length) withoutCmdline++;
  }
})();
await new Promise((r) => setTimeout(r, 500));

// $0 is the script itself: each round execs a new shell with the same huge arguments.
const script = 'n=$1; shift; if [ "$n" -gt 0 ]; then exec sh -c "$0" "$0" $((n - 1)) "$@"; fi';
const hog = spawn("sh", ["-c", script, script, String(execs), ...big], { stdio: "ignore" });
bigPid = hog.pid!;
await once(hog, "exit");
// Until the monitor has seen every exec of the big process, and one second more.
const deadline = performance.now() + 120_000;
while (bigExecs < execs + 1 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, 1000));
ticker.kill();
await monitor.close();
await reader;

const sorted = [...delaysMs].sort((a, b) => a - b);
const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? "bun" : "deno";
console.log(JSON.stringify({
  runtime,
  argvBytes: big.length * ARG,
  hogExecsSeen: bigExecs,
  unrelatedExecs: delaysMs.length,
  delayP50Ms: Math.round(sorted[Math.floor(sorted.length / 2)] * 10) / 10,
  delayMaxMs: Math.round((sorted.at(-1) ?? NaN) * 10) / 10,
  withoutCmdline,
}));
