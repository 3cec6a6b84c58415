/**
 * The cnlink benchmark: the same fork storm against a C reference listener, cnlink on Deno and cnlink
 * on Bun, and forkstat when installed, one after another in one invocation. Needs root and `cc`.
 *
 *   deno run -A bench/run.ts [--children N] [--exec] [--idle SEC] [--paced N] [--quick] [--check] [--out FILE]
 *                            [--baseline GIT-REF [--rounds N]] [--only NAME]
 *
 * `--baseline REF` also runs the cnlink listeners of an earlier commit (extracted with `git archive`
 * into a temporary folder), next to the current one on the same runtime, and prints the ratios
 * current / baseline: a regression check with both sides measured in the same invocation.
 * `--rounds N` measures each pair N times, the baseline first in odd rounds and second in even ones
 * (a storm heats the machine and the host's noise drifts, so whichever runs first is favoured), and
 * reports every round's ratio and their median. One pair is not enough on a noisy machine: the same
 * code measured twice in a row differs by up to ~15 % in CPU per event.
 * Prints a table and writes JSON (default bench/out/results.json). `--quick` is the smoke run CI does
 * (a few thousand events, 1 s idle); `--check` exits 1 when a listener lost events or its count of the
 * storm is off by more than pid reuse explains (no timing is ever asserted: the machines are noisy).
 *
 * @module
 */
import process from "node:process";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { startStorm } from "./storm_process.ts";
import { cpus, release, tmpdir } from "node:os";

const here = dirname(new URL(import.meta.url).pathname);
const root = join(here, "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    children: { type: "string" },
    exec: { type: "boolean", default: false },
    idle: { type: "string" },
    paced: { type: "string" },
    quick: { type: "boolean", default: false },
    check: { type: "boolean", default: false },
    out: { type: "string", default: join(here, "out", "results.json") },
    only: { type: "string" },
    baseline: { type: "string" },
    rounds: { type: "string", default: "1" },
  },
});
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`bench: --rounds must be a positive integer`);
const quick = values.quick!;
const children = Number(values.children ?? (quick ? 2000 : 500_000));
const idleSeconds = Number(values.idle ?? (quick ? 1 : 20));
const paced = Number(values.paced ?? (quick ? 5 : 50));
const stormArgs = [String(children), ...(values.exec ? ["-x"] : [])];

/** A listener process speaking the line protocol of bench/listener.ts and bench/c_listener.c. */
class Listener {
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  #waiting: ((line: string) => void) | null = null;

  constructor(readonly name: string, command: string, args: string[]) {
    this.child = spawn(command, args, { stdio: ["pipe", "pipe", "inherit"], cwd: root });
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      const w = this.#waiting;
      if (w) {
        this.#waiting = null;
        w(line);
      } else this.#lines.push(line);
    });
  }

  next(timeoutMs = 600_000): Promise<Record<string, number>> {
    const line = this.#lines.shift();
    if (line !== undefined) return Promise.resolve(JSON.parse(line));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no answer in ${timeoutMs} ms`)), timeoutMs);
      this.#waiting = (l) => {
        clearTimeout(timer);
        resolve(JSON.parse(l));
      };
    });
  }

  send(line: string): void {
    this.child.stdin!.write(line + "\n");
  }
}

/** Runs one storm while `listener` tracks it; returns the listener's result and what the storm made. */
async function storm(
  listener: Listener,
  args: string[],
): Promise<{ generated: number; result: Record<string, number> }> {
  const { pid, go } = await startStorm(args);
  listener.send(`track ${pid}`);
  await listener.next();
  const generated = await go();
  const result = await listener.next();
  return { generated, result };
}

/**
 * forkstat (Debian's `forkstat`), when installed: started for a fixed duration around the same storm.
 * It reports no per-storm counts, so "delivered" is the fork/exec/exit total of its end-of-run summary
 * (host-wide; the storm dominates) and its CPU is read from /proc/PID/stat while it runs.
 */
async function forkstat(): Promise<Record<string, unknown> | null> {
  if (spawnSync("sh", ["-c", "command -v forkstat"]).status !== 0) return null;
  // forkstat runs until the storm is over, then SIGINT makes it print its -S table and exit. (A fixed -D
  // duration raced the storm: when forkstat ended first, its exit was missed and the run hung.)
  const log = join(here, "out", "forkstat.log");
  const out = openSync(log, "w");
  const fs = spawn("forkstat", ["-S", "-e", "fork,exec,exit"], { stdio: ["ignore", out, out] });
  const exited = new Promise((r) => fs.once("exit", r));
  const ticks = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
  let cpuTicks = 0;
  const sampler = setInterval(() => {
    try {
      const fields = readFileSync(`/proc/${fs.pid}/stat`, "utf8").split(") ")[1].split(" ");
      cpuTicks = Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }, 50);
  await new Promise((r) => setTimeout(r, 500));
  const generated = await (await startStorm(stormArgs)).go();
  await new Promise((r) => setTimeout(r, 2000)); // let it read what is still queued
  fs.kill("SIGINT");
  await exited;
  clearInterval(sampler);
  closeSync(out);
  const text = readFileSync(log, "utf8");
  const nobufs = text.split("\n").filter((l) => l.includes("nobufs")).length;
  let delivered = 0;
  let inSummary = false;
  for (const line of text.split("\n")) {
    if (/^\s+Fork\s+Exec\s+Exit/.test(line)) inSummary = true;
    else if (inSummary && /^\s+\d/.test(line)) {
      const [fork, exec, exit] = line.trim().split(/\s+/).map(Number);
      delivered += fork + exec + exit;
    }
  }
  return {
    listener: "forkstat " +
      (spawnSync("forkstat", ["-h"], { encoding: "utf8" }).stdout.match(/version (\S+)/)?.[1] ?? ""),
    generated,
    delivered,
    lostOverruns: nobufs,
    lostSeq: "?",
    cpuUsPerEvent: (cpuTicks / ticks) * 1e6 / Math.max(1, delivered),
  };
}

function compile(): void {
  mkdirSync(join(here, "out"), { recursive: true });
  for (const name of ["storm", "c_listener"]) {
    const r = spawnSync("cc", ["-O2", "-o", join(here, "out", name), join(here, `${name}.c`)], { stdio: "inherit" });
    if (r.error || r.status !== 0) {
      throw new Error(`cannot compile bench/${name}.c (is cc installed? apt-get install gcc)`);
    }
  }
}

/** CPU % of a runtime doing nothing for `seconds` (the baseline for idle listeners). */
function bareIdle(runtime: string, seconds: number): number {
  const code = `const c=process.cpuUsage();const t=performance.now();` +
    `setTimeout(()=>{const u=process.cpuUsage(c);console.log((u.user+u.system)/1e4/((performance.now()-t)/1000))},${
      seconds * 1000
    })`;
  const args = runtime === "deno" ? ["eval", `import process from "node:process";${code}`] : ["-e", code];
  const r = spawnSync(bin(runtime), args, { encoding: "utf8" });
  return Number(r.stdout.trim());
}

async function measure(listener: Listener) {
  await listener.next(); // ready
  await storm(listener, [String(Math.min(children, 2000))]); // warm-up, not reported
  const main = await storm(listener, stormArgs);
  const pace = await storm(listener, [String(paced), "-p", "100000"]);
  listener.send(`idle ${idleSeconds}`);
  const idle = await listener.next();
  listener.send("close");
  const closed = await listener.next();
  listener.send(`quiet ${idleSeconds}`);
  const quiet = await listener.next();
  const r = main.result;
  return {
    generated: main.generated,
    delivered: r.delivered,
    lostOverruns: r.overruns,
    lostSeq: r.seqLost,
    cpuUsPerEvent: r.cpuUs / Math.max(1, r.delivered),
    rss10kKb: r.rss10kKb,
    rssEndKb: r.rssEndKb,
    latencyP50Us: pace.result.latencyP50Us,
    latencyP99Us: pace.result.latencyP99Us,
    idleCpuPct: idle.idleCpuPct,
    quietCpuPct: quiet.quietCpuPct,
    closeMs: closed.closeMs,
  };
}

if (process.getuid?.() !== 0) {
  console.error("bench: needs root (the storm's events are read from the process-events connector)");
  process.exit(1);
}
compile();

/** The tree of `ref` in a temporary folder (sharing node_modules), for its bench/listener.ts. */
function checkout(ref: string): string {
  const dir = mkdtempSync(join(tmpdir(), "cnlink-baseline-"));
  const r = spawnSync("sh", ["-c", 'git -C "$1" archive "$2" | tar -x -C "$3"', "sh", root, ref, dir], {
    stdio: "inherit",
  });
  if (r.status !== 0) throw new Error(`bench: cannot extract ${ref} (git archive failed)`);
  symlinkSync(join(root, "node_modules"), join(dir, "node_modules"));
  return dir;
}

const base = values.baseline ? checkout(values.baseline) : null;
type Entry = [name: string, command: string, args: string[], round: number];
const listeners: Entry[] = [
  ["C, recvmmsg", join(here, "out", "c_listener"), [], 1],
  ["C, recvmmsg, cnlink's loop", join(here, "out", "c_listener"), ["-c"], 1],
];
for (const [runtime, command, run] of [["Deno", bin("deno"), ["run", "-A"]], ["Bun", bin("bun"), []]] as const) {
  const current: Entry = [`cnlink on ${runtime}`, command, [...run, join(here, "listener.ts")], 1];
  if (!base) {
    listeners.push(current);
    continue;
  }
  for (let round = 1; round <= rounds; round++) {
    const then: Entry = [`cnlink on ${runtime} @${values.baseline}`, command, [
      ...run,
      join(base, "bench", "listener.ts"),
    ], round];
    const now: Entry = [current[0], command, current[2], round];
    listeners.push(...(round % 2 === 1 ? [then, now] : [now, then]));
  }
}
const rows: Record<string, unknown>[] = [];
for (const [name, cmd, args, round] of listeners) {
  if (values.only && !name.toLowerCase().includes(values.only.toLowerCase())) continue;
  const label = rounds > 1 && base && name.startsWith("cnlink") ? `${name} #${round}` : name;
  console.error(`bench: ${label} ...`);
  const listener = new Listener(name, cmd, args);
  rows.push({ listener: label, round, ...await measure(listener) });
  await new Promise((r) => listener.child.once("exit", r));
}
if (!values.only || "forkstat".includes(values.only.toLowerCase())) {
  console.error("bench: forkstat (if installed) ...");
  const row = await forkstat();
  if (row) rows.push(row);
}
const baseline = {
  deno: bareIdle("deno", idleSeconds),
  bun: bareIdle("bun", idleSeconds),
};
// The floor: C running the same loop as cnlink (coalescing wake-ups under load), or plain C if that did not run.
const c = rows.find((r) => r.listener === "C, recvmmsg, cnlink's loop") ??
  rows.find((r) => r.listener === "C, recvmmsg");
for (const row of rows) {
  row.cpuRatioToC = c ? (row.cpuUsPerEvent as number) / (c.cpuUsPerEvent as number) : null;
  row.latencyRatioToC = c ? (row.latencyP50Us as number) / (c.latencyP50Us as number) : null;
  row.rssGrowthKb = row.rss10kKb && row.rssEndKb ? (row.rssEndKb as number) - (row.rss10kKb as number) : null;
}

const fmt = (v: unknown, digits = 2) => typeof v === "number" ? v.toFixed(digits) : String(v ?? "-");
const header = [
  "listener",
  "generated",
  "delivered",
  "lost ovr/seq",
  "CPU µs/event",
  "× C",
  "wake p50/p99 µs",
  "idle CPU % subscribed/quiet",
  "close ms",
  "RSS 10k→end MB",
];
const table = [
  header,
  ...rows.map((r) =>
    [
      r.listener,
      r.generated,
      r.delivered,
      `${r.lostOverruns}/${r.lostSeq}`,
      fmt(r.cpuUsPerEvent),
      fmt(r.cpuRatioToC),
      `${fmt(r.latencyP50Us, 0)}/${fmt(r.latencyP99Us, 0)}`,
      `${fmt(r.idleCpuPct, 3)}/${fmt(r.quietCpuPct, 3)}`,
      fmt(r.closeMs),
      r.rssEndKb === undefined
        ? "-"
        : `${r.rss10kKb ? fmt((r.rss10kKb as number) / 1024, 1) : "-"}→${fmt((r.rssEndKb as number) / 1024, 1)}`,
    ].map(String)
  ),
];
const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
for (const row of table) console.log(row.map((cell, i) => cell.padEnd(widths[i])).join("  "));
console.log(`bare runtime idle CPU %: deno ${fmt(baseline.deno, 3)}, bun ${fmt(baseline.bun, 3)}`);
if (base) {
  // current / baseline on the same runtime, per round and their median: > 1 is worse for CPU and latency.
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  for (const runtime of ["Deno", "Bun"]) {
    const pairs: [Record<string, unknown>, Record<string, unknown>][] = [];
    for (let round = 1; round <= rounds; round++) {
      const of = (prefix: string) =>
        rows.find((r) => r.round === round && String(r.listener).replace(/ #\d+$/, "") === prefix);
      const now = of(`cnlink on ${runtime}`);
      const then = of(`cnlink on ${runtime} @${values.baseline}`);
      if (now && then) pairs.push([now, then]);
    }
    if (!pairs.length) continue;
    const ratio = (k: string) => {
      const each = pairs.map(([now, then]) => (now[k] as number) / (then[k] as number));
      return pairs.length === 1 ? fmt(each[0]) : `${fmt(median(each))} (${each.map((x) => fmt(x)).join(", ")})`;
    };
    const lost = (rs: Record<string, unknown>[]) =>
      `${rs.reduce((n, r) => n + (r.lostOverruns as number), 0)}/${rs.reduce((n, r) => n + (r.lostSeq as number), 0)}`;
    const compared = {
      cpu: ratio("cpuUsPerEvent"),
      wakeP50: ratio("latencyP50Us"),
      closeMs: ratio("closeMs"),
      idle: ratio("idleCpuPct"),
      lost: `${lost(pairs.map((p) => p[0]))} vs ${lost(pairs.map((p) => p[1]))}`,
    };
    const what = pairs.length === 1 ? "" : ` (median of ${pairs.length} rounds; baseline first in odd rounds)`;
    console.log(`${runtime}: current / ${values.baseline}${what}: ${JSON.stringify(compared)}`);
    for (const [now] of pairs) (now as Record<string, unknown>).versusBaseline = compared;
  }
  rmSync(base, { recursive: true, force: true });
}
const machine = { kernel: release(), cpus: cpus().length, cpuModel: cpus()[0]?.model, date: new Date().toISOString() };
console.log(`machine: Linux ${machine.kernel}, ${machine.cpus} × ${machine.cpuModel}`);
mkdirSync(dirname(values.out!), { recursive: true });
writeFileSync(values.out!, JSON.stringify({ machine, children, exec: values.exec, baseline, rows }, null, 2));
console.log(`results: ${values.out}`);
if (values.check) {
  // Loss must be nil. The tree accounting may be off by one or two when a pid is reused while the old
  // process's exit and the new one's fork are read in the opposite order (different CPUs).
  const slack = (r: Record<string, unknown>) => Math.max(2, (r.generated as number) / 1000);
  // forkstat is measured, not checked: losing events is what it does under a storm.
  const ours = rows.filter((r) => !String(r.listener).startsWith("forkstat"));
  const bad = ours.filter((r) =>
    r.lostOverruns !== 0 || r.lostSeq !== 0 || Math.abs((r.delivered as number) - (r.generated as number)) > slack(r)
  );
  for (const r of bad) console.error(`bench: ${r.listener} delivered ${r.delivered} of ${r.generated}`);
  if (bad.length) process.exit(1);
}
