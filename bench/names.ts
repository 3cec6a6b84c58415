/**
 * procmon on Deno, procmon on Bun and forkstat (when installed) watching the same workload at the
 * same time, to compare what each can name:
 *
 * - bursts of short-lived children, N at once for each N of `--burst` (default 8, 32 and 128), of two
 *   workloads: `sh -c 'exit 0'` (each ends about a millisecond after its exec) and the harder
 *   `/bin/true quick` (a static-free exec of a program that exits at once, ~0.3 ms): how many exec
 *   rows show the command line, only a name, or nothing;
 * - processes that started before the monitors (`sleep`, killed while they watch): how many exit
 *   rows show the command line and a duration;
 * - CPU per event of each listener (user + system of its whole process, all threads, from
 *   /proc/PID/stat, between just before the first burst and the end of the last, divided by the
 *   rows it printed meanwhile: every exec and exit on the host, not only the bursts').
 *
 *   deno run -A bench/names.ts [--burst 8,32,128] [--early N] [--rounds N] [--only a,b] [--baseline DIR]   (root)
 *
 * Listeners: `forkstat`, `deno`, `bun` (procmon of this checkout) and, with `--baseline DIR` (another
 * checkout, e.g. `git worktree add /tmp/cnlink-main main`), `deno@base` and `bun@base`: procmon of that
 * checkout. They run at the same time (the same events for all, competing for the CPU with each other
 * and with the bursts); `--only` picks some of them (comma-separated names), e.g. one alone.
 *
 * Prints a table and writes bench/out/names.json.
 *
 * @module
 */
import process from "node:process";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { burstOf } from "../tests/_kernel.ts";

const here = dirname(new URL(import.meta.url).pathname);
const root = join(here, "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    burst: { type: "string", default: "8,32,128" },
    early: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
    only: { type: "string" },
    baseline: { type: "string" },
  },
});
const bursts = values.burst.split(",").map(Number);
const early = Number(values.early);
const rounds = Number(values.rounds);
const baseline = values.baseline ? resolve(values.baseline) : undefined;
const WORKLOADS = [
  { name: "sh", command: "sh -c 'exit 0'", cmdline: "sh -c exit 0" },
  { name: "true", command: "/bin/true quick", cmdline: "/bin/true quick" },
] as const;

interface Counts {
  execs: number;
  cmdline: number;
  nameOnly: number;
  nothing: number;
}

interface Row {
  listener: string;
  /** By workload and burst size, e.g. "sh 32". */
  bursts: Record<string, Counts>;
  earlyExits: number;
  earlyCmdline: number;
  earlyDuration: number;
  cpuTicks: number;
  rowsDuringBursts: number;
}

interface Listener {
  name: string;
  child: ChildProcess;
  out: () => string;
}

function start(name: string, cmd: string, args: string[], cwd: string): Listener {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"], cwd });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
  return { name, child, out: () => out };
}

/** utime + stime of a process, in clock ticks (1/100 s), all threads. */
function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return NaN;
  }
}

async function round(): Promise<Row[]> {
  const earlies = Array.from({ length: early }, () => spawn("sleep", ["60"], { stdio: "ignore" }));
  const earlyPids = new Set(earlies.map((c) => c.pid!));
  const seconds = String(8 + bursts.length * WORKLOADS.length * 2);
  const only = values.only?.split(",");
  const wanted = (name: string) => !only || only.includes(name);
  const listeners: Listener[] = [];
  const procmon = ["cli/procmon.ts", "--json", "-e", "exec,exit", "-D", seconds];
  for (const [suffix, dir] of [["", root], ["@base", baseline]] as const) {
    if (!dir) continue;
    if (wanted(`deno${suffix}`)) listeners.push(start(`deno${suffix}`, bin("deno"), ["run", "-A", ...procmon], dir));
    if (wanted(`bun${suffix}`)) listeners.push(start(`bun${suffix}`, bin("bun"), procmon, dir));
  }
  const forkstat = spawnSync("sh", ["-c", "command -v forkstat"]).status === 0;
  if (forkstat && wanted("forkstat")) {
    listeners.push(start("forkstat", "forkstat", ["-e", "exec,exit", "-D", seconds], root));
  }
  await new Promise((r) => setTimeout(r, 6000)); // every runtime up and subscribed
  const ticks0 = listeners.map((l) => cpuTicks(l.child.pid!));
  const lines0 = listeners.map((l) => l.out().split("\n").length);
  const burstPids = new Map<number, string>();
  for (const w of WORKLOADS) {
    for (const n of bursts) {
      for (const pid of await burstOf(n, w.command)) burstPids.set(pid, `${w.name} ${n}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const ticks1 = listeners.map((l) => cpuTicks(l.child.pid!));
  const lines1 = listeners.map((l) => l.out().split("\n").length);
  for (const c of earlies) c.kill("SIGTERM");
  await Promise.all(listeners.map((l) => once(l.child, "exit")));
  return listeners.map(({ name, out }, i) => {
    const row: Row = {
      listener: name,
      bursts: {},
      earlyExits: 0,
      earlyCmdline: 0,
      earlyDuration: 0,
      cpuTicks: ticks1[i] - ticks0[i],
      rowsDuringBursts: lines1[i] - lines0[i],
    };
    for (const w of WORKLOADS) {
      for (const n of bursts) row.bursts[`${w.name} ${n}`] = { execs: 0, cmdline: 0, nameOnly: 0, nothing: 0 };
    }
    for (const line of out().split("\n")) {
      let type: string, pid: number, cmdline: string, duration: boolean;
      if (name === "forkstat") {
        // "01:33:25 exec  29026                 sh -c exit 0 " / "... exit  29028      0   0.000s sh"
        const m = /^\S+ (exec|exit) +(\d+) +(?:(-?\d+) +([\d.]+s) )? *(.*?) *$/.exec(line);
        if (!m) continue;
        [type, pid, cmdline] = [m[1], Number(m[2]), m[5]];
        duration = m[4] !== undefined;
        if (cmdline.startsWith("<")) cmdline = "";
      } else {
        if (!line.startsWith("{")) continue;
        const e = JSON.parse(line);
        [type, pid] = [e.type, e.pid];
        const argv: string[] = e.process?.cmdline ?? [];
        cmdline = argv.length ? argv.join(" ") : e.process?.comm ?? "";
        duration = e.durationMs !== undefined;
      }
      const burst = burstPids.get(pid);
      if (type === "exec" && burst) {
        const c = row.bursts[burst];
        const w = WORKLOADS.find((w) => burst.startsWith(`${w.name} `))!;
        c.execs++;
        // The whole command line; else a bare name (forkstat prints the comm when cmdline is empty).
        if (cmdline === w.cmdline) c.cmdline++;
        else if (cmdline !== "" && !cmdline.includes(" ")) c.nameOnly++;
        else c.nothing++;
      }
      if (type === "exit" && earlyPids.has(pid)) {
        row.earlyExits++;
        if (cmdline.includes("sleep 60")) row.earlyCmdline++;
        if (duration) row.earlyDuration++;
      }
    }
    return row;
  });
}

if (process.getuid?.() !== 0) {
  console.error("names: needs root (forkstat and the monitors subscribe to process events)");
  process.exit(1);
}
const totals = new Map<string, Row>();
for (let r = 0; r < rounds; r++) {
  for (const row of await round()) {
    const t = totals.get(row.listener);
    if (!t) totals.set(row.listener, row);
    else {
      for (const [k, c] of Object.entries(row.bursts)) {
        for (const f of Object.keys(c) as (keyof Counts)[]) t.bursts[k][f] += c[f];
      }
      t.earlyExits += row.earlyExits;
      t.earlyCmdline += row.earlyCmdline;
      t.earlyDuration += row.earlyDuration;
      t.cpuTicks += row.cpuTicks;
      t.rowsDuringBursts += row.rowsDuringBursts;
    }
  }
  console.error(`names: round ${r + 1} of ${rounds} done`);
}
const rows = [...totals.values()];
const pad = (v: unknown, n: number) => String(v).padStart(n);
console.log(`${"workload".padEnd(10)} ${"listener".padEnd(10)} execs  cmdline  name only  nothing`);
for (const key of Object.keys(rows[0]?.bursts ?? {})) {
  for (const r of rows) {
    const c = r.bursts[key];
    console.log(
      `${key.padEnd(10)} ${r.listener.padEnd(10)} ${pad(c.execs, 5)}  ${pad(c.cmdline, 7)}  ${pad(c.nameOnly, 9)}  ${
        pad(c.nothing, 7)
      }`,
    );
  }
}
console.log(`\n${"listener".padEnd(10)} early exits  with cmdline  with duration  CPU µs/row (rows)`);
for (const r of rows) {
  const perRow = r.rowsDuringBursts > 0 ? (r.cpuTicks * 10_000 / r.rowsDuringBursts).toFixed(0) : "-";
  console.log(
    `${r.listener.padEnd(10)} ${pad(r.earlyExits, 11)}  ${pad(r.earlyCmdline, 12)}  ${pad(r.earlyDuration, 13)}  ${
      pad(perRow, 10)
    } (${r.rowsDuringBursts})`,
  );
}
mkdirSync(join(here, "out"), { recursive: true });
writeFileSync(join(here, "out", "names.json"), JSON.stringify({ bursts, early, rounds, rows }, null, 2));
