/**
 * procmon on Deno, procmon on Bun and forkstat (when installed) watching the same workload at the
 * same time, to compare what each can name:
 *
 * - a burst of short-lived children (`sh -c 'exit 0'`, N at once): how many exec rows show the
 *   command line, only a name, or nothing;
 * - processes that started before the monitors (`sleep`, killed while they watch): how many exit
 *   rows show the command line and a duration.
 *
 *   deno run -A bench/names.ts [--burst N] [--early N] [--rounds N] [--only NAME]      (root)
 *
 * The listeners run at the same time (the same events for all, competing for the CPU with each other
 * and with the burst); `--only deno|bun|forkstat` runs one alone.
 *
 * Prints a table and writes bench/out/names.json.
 *
 * @module
 */
import process from "node:process";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";

const here = dirname(new URL(import.meta.url).pathname);
const root = join(here, "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    burst: { type: "string", default: "8" },
    early: { type: "string", default: "8" },
    rounds: { type: "string", default: "5" },
    only: { type: "string" },
  },
});
const burst = Number(values.burst);
const early = Number(values.early);
const rounds = Number(values.rounds);

interface Row {
  listener: string;
  burstExecs: number;
  burstCmdline: number;
  burstNameOnly: number;
  burstNothing: number;
  earlyExits: number;
  earlyCmdline: number;
  earlyDuration: number;
}

function start(name: string, cmd: string, args: string[]): { name: string; child: ChildProcess; out: () => string } {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"], cwd: root });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
  return { name, child, out: () => out };
}

async function round(): Promise<Row[]> {
  const earlies = Array.from({ length: early }, () => spawn("sleep", ["30"], { stdio: "ignore" }));
  const earlyPids = new Set(earlies.map((c) => c.pid!));
  const seconds = "12";
  const wanted = (name: string) => !values.only || name.toLowerCase().includes(values.only.toLowerCase());
  const listeners = [];
  if (wanted("procmon on Deno")) {
    listeners.push(
      start("procmon on Deno", bin("deno"), [
        "run",
        "-A",
        "cli/procmon.ts",
        "--json",
        "-e",
        "exec,exit",
        "-D",
        seconds,
      ]),
    );
  }
  if (wanted("procmon on Bun")) {
    listeners.push(start("procmon on Bun", bin("bun"), ["cli/procmon.ts", "--json", "-e", "exec,exit", "-D", seconds]));
  }
  const forkstat = spawnSync("sh", ["-c", "command -v forkstat"]).status === 0;
  if (forkstat && wanted("forkstat")) listeners.push(start("forkstat", "forkstat", ["-e", "exec,exit", "-D", seconds]));
  await new Promise((r) => setTimeout(r, 5000)); // every runtime up and subscribed
  const runner = spawn("sh", ["-c", `for i in $(seq ${burst}); do sh -c 'exit 0' & echo $!; done; wait`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let pids = "";
  runner.stdout!.setEncoding("utf8").on("data", (c: string) => (pids += c));
  await once(runner, "exit");
  const burstPids = new Set(pids.trim().split("\n").map(Number));
  await new Promise((r) => setTimeout(r, 500));
  for (const c of earlies) c.kill("SIGTERM");
  await Promise.all(listeners.map((l) => once(l.child, "exit")));
  return listeners.map(({ name, out }) => {
    const row: Row = {
      listener: name,
      burstExecs: 0,
      burstCmdline: 0,
      burstNameOnly: 0,
      burstNothing: 0,
      earlyExits: 0,
      earlyCmdline: 0,
      earlyDuration: 0,
    };
    for (const line of out().split("\n")) {
      let type: string, pid: number, cmdline: string, nameOnly: boolean, duration: boolean;
      if (name === "forkstat") {
        // "01:33:25 exec  29026                 sh -c exit 0 " / "... exit  29028      0   0.000s sh"
        const m = /^\S+ (exec|exit) +(\d+) +(?:(-?\d+) +([\d.]+s) )? *(.*?) *$/.exec(line);
        if (!m) continue;
        [type, pid, cmdline] = [m[1], Number(m[2]), m[5]];
        nameOnly = cmdline !== "" && !cmdline.includes(" ") && !cmdline.startsWith("<");
        duration = m[4] !== undefined;
        if (cmdline.startsWith("<")) cmdline = "";
      } else {
        if (!line.startsWith("{")) continue;
        const e = JSON.parse(line);
        [type, pid] = [e.type, e.pid];
        const argv: string[] = e.process?.cmdline ?? [];
        cmdline = argv.join(" ");
        nameOnly = argv.length === 0 && e.process?.comm !== undefined;
        duration = e.durationMs !== undefined;
      }
      if (type === "exec" && burstPids.has(pid)) {
        row.burstExecs++;
        if (cmdline && !nameOnly) row.burstCmdline++;
        else if (nameOnly) row.burstNameOnly++;
        else row.burstNothing++;
      }
      if (type === "exit" && earlyPids.has(pid)) {
        row.earlyExits++;
        if (cmdline.includes("sleep 30")) row.earlyCmdline++;
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
    else for (const k of Object.keys(row) as (keyof Row)[]) if (k !== "listener") (t[k] as number) += row[k] as number;
  }
  console.error(`names: round ${r + 1} of ${rounds} done`);
}
const rows = [...totals.values()];
console.log(
  "listener           burst execs  with cmdline  name only  nothing   early exits  with cmdline  with duration",
);
for (const r of rows) {
  console.log(
    `${r.listener.padEnd(18)} ${String(r.burstExecs).padStart(11)}  ${String(r.burstCmdline).padStart(12)}  ${
      String(r.burstNameOnly).padStart(9)
    }  ${String(r.burstNothing).padStart(7)}   ${String(r.earlyExits).padStart(11)}  ${
      String(r.earlyCmdline).padStart(12)
    }  ${String(r.earlyDuration).padStart(13)}`,
  );
}
mkdirSync(join(here, "out"), { recursive: true });
writeFileSync(join(here, "out", "names.json"), JSON.stringify({ burst, early, rounds, rows }, null, 2));
