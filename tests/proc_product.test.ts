/**
 * Process events as a product, on the real kernel: terminal-safe procmon output, the live process
 * table (names, ancestry, updates, processes that started earlier), container and service
 * attribution from real cgroups, stopping, and the forkstat-style options.
 */
import { describe } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProcMonitor, type ProcMonitorItem, watchProcesses } from "../proc.ts";
import { connectorSocketInodes, kernelTest, sleep } from "./_kernel.ts";
import { Procmon, runToEnd } from "./_procmon.ts";
import { waitFor } from "./_wait.ts";
import { recordFigure } from "./_figures.ts";

/** Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts). */
function cgroup2Root(): string {
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const [left, right] = line.split(" - ");
    if (right?.startsWith("cgroup2 ")) return left.split(" ")[4];
  }
  throw new Error("no cgroup2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)");
}

/** Collects a monitor's items until `done(items)` holds or `ms` pass. */
async function collect(
  monitor: ProcMonitor,
  activity: () => Promise<void>,
  done: (items: ProcMonitorItem[]) => boolean,
  ms = 10_000,
): Promise<ProcMonitorItem[]> {
  const items: ProcMonitorItem[] = [];
  const reader = (async () => {
    for await (const item of monitor) {
      items.push(item);
      if (done(items)) break;
    }
  })();
  await activity();
  await Promise.race([reader, sleep(ms)]);
  await monitor.close();
  await reader;
  return items;
}

const exitOf = (pid: number) => (items: ProcMonitorItem[]) =>
  items.some((e) => e.type === "exit" && e.pid === pid && e.tgid === pid);

async function exited(child: ChildProcess): Promise<number> {
  await once(child, "exit");
  return child.pid!;
}

describe("procmon output is safe for a terminal", () => {
  kernelTest("a process with control characters in its arguments and name reaches no terminal raw", async () => {
    const hostile = "evil\n\x1b[2J\x1b]0;pwned\x07\u009b31mrow\\";
    const procmon = await Procmon.start(["-x", "--tree", "-S"]);
    // Its comm becomes ESC [ 3 1 m r e d (via /proc/self/comm), its third argument the hostile text.
    // "; exit 0": dash would exec the last simple command in place of sh, and the exec row of this pid
    // could then be read after sleep's exec (withheld as uncertain: no argument shown). Wait for a row
    // of this pid that shows the argument, not for the argument of any run.
    const pid = await procmon.repeatUntil(
      () => runToEnd("sh", ["-c", "printf '\\033[31mred' > /proc/self/comm; sleep 0.3; exit 0", hostile]),
      (pid, out) => out.split("\n").some((l) => l.includes(` ${pid} `) && l.includes("pwned")),
    );
    const { stdout, code, signal } = await procmon.stop();
    assert.ok(code === 0 || signal === "SIGINT", `exit ${code} ${signal}`);
    assert.match(stdout, /\(all processes\)/, "it ended by itself, with its summary");
    const lines = stdout.split("\n");
    // deno-lint-ignore no-control-regex
    const raw = /[\x00-\x09\x0b-\x1f\x7f\u0080-\u009f\u2028\u2029]/;
    assert.deepEqual(lines.filter((l) => raw.test(l)), [], "no control character in any line");
    const mine = lines.filter((l) => l.includes(` ${pid} `));
    assert.ok(mine.length >= 3, `rows of the hostile process: ${mine.length}`);
    assert.ok(
      mine.some((l) => l.includes("evil\\n\\x1b[2J\\x1b]0;pwned\\x07\\u{9b}31mrow\\\\")),
      "the argument shows escaped, in one line",
    );
    assert.ok(mine.some((l) => l.includes("name \\x1b[31mred")), "the new comm shows escaped");
  }, 60_000);

  kernelTest("--json stays exact JSON and just as safe: the argument comes back exact", async () => {
    const hostile = "j\n\x1b[2J\u009bk";
    const procmon = await Procmon.start(["--json", "-e", "exec,exit"]);
    const pid = await procmon.repeatUntil(
      // "; exit 0": a last simple command would be exec'd by dash in place of sh, and the exec event of
      // this pid could then be read after the second exec (sleep's argv, without the hostile text).
      () => runToEnd("sh", ["-c", "sleep 0.3; exit 0", hostile]),
      (pid, out) => out.includes(`"pid":${pid},`) && out.includes(`"exitCode"`),
    );
    const { stdout } = await procmon.stop();
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(stdout, /[\x00-\x09\x0b-\x1f\x7f\u0080-\u009f]/);
    const events = stdout.trim().split("\n").map((l) => JSON.parse(l));
    const exec = events.find((e) => e.type === "exec" && e.pid === pid);
    assert.deepEqual(exec?.process?.cmdline?.slice(-1), [hostile]);
  }, 60_000);
});

describe("the live process table", () => {
  kernelTest("a process that started before the monitor is named, with its start time and duration", async () => {
    const early = spawn("sleep", ["1.5"], { stdio: "ignore" });
    await sleep(300);
    const monitor = await ProcMonitor.open({ enrich: true, events: ["exit"] });
    const seeded = monitor.processes!.get(early.pid!);
    // Deno's spawn passes the resolved path as argv[0].
    const argv = (p?: { cmdline?: string[] }) => p?.cmdline?.map((a, i) => (i === 0 ? a.replace(/^.*\//, "") : a));
    assert.deepEqual(argv(seeded), ["sleep", "1.5"], "found by the scan at open");
    const items = await collect(monitor, async () => void await once(early, "exit"), exitOf(early.pid!));
    const exit = items.find((e) => e.type === "exit" && e.pid === early.pid);
    assert.ok(exit?.type === "exit" && exit.process);
    assert.deepEqual(argv(exit.process), ["sleep", "1.5"]);
    const seconds = Number(exit.timestampNs - exit.process.startNs!) / 1e9;
    assert.ok(seconds > 1.3 && seconds < 2.5, `duration from /proc's start time: ${seconds.toFixed(2)} s`);
    assert.equal(monitor.processes!.get(early.pid!), undefined, "it left the table at its exit");
  });

  kernelTest("events carry their process and its ancestry; comm and uid events update the entry", async () => {
    const monitor = await ProcMonitor.open({ enrich: true });
    const script =
      "sh -c 'printf renamed > /proc/self/comm; setpriv --reuid=65534 --regid=65534 --clear-groups sleep 0.2'";
    const items = await collect(monitor, async () => {
      await exited(spawn("sh", ["-c", script], { stdio: "ignore" }));
    }, (i) => i.some((e) => e.type === "exit" && e.process?.comm === "sleep" && e.process.uid === 65534));
    const inner = items.find((e) => e.type === "exec" && e.process?.cmdline?.[0] === "sleep");
    assert.ok(inner?.type === "exec", "the innermost exec");
    assert.ok(inner.process?.ppid !== undefined, "the exec knows its parent");
    // Its real ids are those setpriv set before the exec (a uid and a gid event; status is not read at an exec).
    assert.equal(inner.process?.uid, 65534, "the exec has the uid set before it");
    assert.equal(inner.process?.gid, 65534, "the exec has the gid set before it");
    const renamed = items.find((e) => e.type === "comm" && e.comm === "renamed");
    assert.ok(renamed?.type === "comm" && renamed.process?.comm === "renamed", "the comm event renames the entry");
    const uid = items.find((e) => e.type === "uid" && e.ruid === 65534);
    assert.ok(uid?.type === "uid" && uid.process?.uid === 65534 && uid.process.user === "nobody");
    const last = items.find((e) => e.type === "exit" && e.process?.comm === "sleep" && e.process.uid === 65534);
    assert.ok(last, "the exit shows the user after the change");
  });

  kernelTest("ancestry of an exec: the chain of parents down to it, from the table", async () => {
    const monitor = await ProcMonitor.open({ enrich: true, events: ["exec"] });
    let chain: string[] = [];
    let detail = "";
    await collect(monitor, async () => {
      // Neither shell's last command: each one forks (a shell may exec its last command in place).
      await exited(spawn("sh", ["-c", "sh -c 'sleep 0.3; true'; true"], { stdio: "ignore" }));
    }, (items) => {
      const exec = items.find((e) => e.type === "exec" && e.process?.cmdline?.[0] === "sleep");
      if (exec?.type === "exec") {
        const ancestry = monitor.processes!.ancestry(exec.tgid);
        chain = ancestry.map((p) => (p.cmdline?.[0] ?? "?").replace(/^.*\//, ""));
        detail = JSON.stringify(ancestry.map(({ pid, ppid, comm, cmdline, missing, uncertain }) => ({
          pid,
          ppid,
          comm,
          cmdline,
          missing,
          uncertain,
        })));
      }
      return chain.length > 0;
    });
    assert.deepEqual(chain.slice(-3), ["sh", "sh", "sleep"], `${chain.join(" → ")}: ${detail}`);
    assert.ok(chain.length >= 4, "and further up, to this test's runtime and beyond");
  });

  kernelTest("a burst of short-lived children is named (what could not be read says so)", async () => {
    const monitor = await ProcMonitor.open({ enrich: true, events: ["exec"] });
    const pids = new Set<number>();
    const items = await collect(monitor, async () => {
      const children = Array.from({ length: 8 }, () => spawn("sh", ["-c", "exit 0"], { stdio: "ignore" }));
      for (const c of children) pids.add(c.pid!);
      await Promise.all(children.map((c) => once(c, "exit")));
    }, (i) => i.filter((e) => e.type === "exec" && pids.has(e.pid)).length === 8);
    const execs = items.filter((e) => e.type === "exec" && pids.has(e.pid));
    assert.equal(execs.length, 8);
    for (const e of execs) {
      const p = e.type === "exec" ? e.process : undefined;
      assert.ok(p, "every exec carries its process");
      assert.ok(p.cmdline?.length || p.comm || p.missing?.length, "named, or honest about what is missing");
    }
    const named = execs.filter((e) => e.type === "exec" && e.process?.cmdline?.[0] === "sh").length;
    recordFigure("names.shortLivedBurst", `${named}/8`);
  });
});

describe("containers and services", () => {
  kernelTest(
    "a process moved into a docker-like cgroup carries the cgroup, the container id and the unit",
    async () => {
      const root = cgroup2Root();
      const slice = `cnlink-test-${process.pid}.slice`;
      const id = "c0ffee".padEnd(64, "0123456789abcdef");
      const scope = `${slice}/docker-${id}.scope`;
      const unit = `${slice}/cnlink-demo.service`;
      mkdirSync(join(root, scope), { recursive: true });
      mkdirSync(join(root, unit), { recursive: true });
      try {
        const monitor = await ProcMonitor.open({ enrich: true, cgroup: `/${slice}/` });
        const inScope = (dir: string) => `echo $$ > ${join(root, dir, "cgroup.procs")}; sh -c 'exit 0'; sleep 0.1`;
        let a = 0;
        let b = 0;
        let outside = 0;
        const items = await collect(monitor, async () => {
          outside = await exited(spawn("sh", ["-c", "sh -c 'exit 0'"], { stdio: "ignore" }));
          a = await exited(spawn("sh", ["-c", inScope(scope)], { stdio: "ignore" }));
          b = await exited(spawn("sh", ["-c", inScope(unit)], { stdio: "ignore" }));
        }, (i) => i.some((e) => e.type === "exit" && b !== 0 && e.process?.ppid === b));
        const kids = (parent: number) => items.filter((e) => e.type === "exec" && e.process?.ppid === parent);
        const docker = kids(a)[0];
        assert.ok(docker?.type === "exec" && docker.process, "the child in the docker-like scope was seen");
        assert.equal(docker.process.cgroup, `/${scope}`);
        assert.deepEqual(docker.process.container, { runtime: "docker", id });
        assert.equal(docker.process.unit, `docker-${id}.scope`);
        const service = kids(b)[0];
        assert.ok(service?.type === "exec" && service.process, "the child in the service's cgroup was seen");
        assert.equal(service.process.unit, "cnlink-demo.service");
        assert.equal(service.process.container, undefined);
        assert.ok(
          items.every((e) => e.type === "lost" || e.process?.cgroup?.startsWith(`/${slice}/`)),
          "the cgroup filter let only processes of the slice through",
        );
        assert.ok(!items.some((e) => "tgid" in e && e.tgid === outside), "the process outside was filtered");
      } finally {
        await waitFor(() => {
          try {
            rmdirSync(join(root, scope));
            rmdirSync(join(root, unit));
            rmdirSync(join(root, slice));
            return true;
          } catch {
            return false;
          }
        }, "the test cgroups to empty");
      }
    },
    30_000,
  );

  kernelTest("procmon --cgroup shows the Container/Unit column and only that subtree", async () => {
    const root = cgroup2Root();
    const slice = `cnlink-procmon-${process.pid}.slice`;
    const id = "beef".padEnd(64, "fedcba9876543210");
    const scope = `${slice}/libpod-${id}.scope`;
    mkdirSync(join(root, scope), { recursive: true });
    try {
      const procmon = await Procmon.start(["--cgroup", `/${slice}/`, "-e", "exec"]);
      const into = `echo $$ > ${join(root, scope, "cgroup.procs")}; exec sleep 0.2`;
      await procmon.repeatUntil(() => runToEnd("sh", ["-c", into]), (pid, out) => out.includes(` ${pid} `));
      await runToEnd("sleep", ["0.1"]);
      const { stdout } = await procmon.stop();
      const rows = stdout.trim().split("\n").slice(1);
      assert.ok(rows.length >= 1, stdout);
      assert.ok(rows.every((r) => r.includes(`podman:${id.slice(0, 12)}`)), stdout);
      assert.match(stdout, /Container\/Unit/);
    } finally {
      await waitFor(() => {
        try {
          rmdirSync(join(root, scope));
          rmdirSync(join(root, slice));
          return true;
        } catch {
          return false;
        }
      }, "the test cgroups to empty");
    }
  }, 30_000);
});

describe("stopping", () => {
  kernelTest("watchProcesses: return() while next() waits ends it at once and closes the socket", async () => {
    const before = connectorSocketInodes();
    // A filter nothing matches: next() would wait forever.
    const it = watchProcesses({ events: ["coredump"], cgroup: "/nothing-matches-this/" })[Symbol.asyncIterator]();
    const pending = it.next();
    await sleep(1500);
    const start = performance.now();
    await it.return!();
    assert.deepEqual(await pending, { value: undefined, done: true });
    const ms = performance.now() - start;
    assert.ok(ms < 200, `stopped in ${ms.toFixed(1)} ms`);
    assert.deepEqual(connectorSocketInodes(), before);
    recordFigure("stop.return.ms", Math.round(ms * 10) / 10);
  });

  kernelTest("an AbortSignal ends ProcMonitor and watchProcesses quietly, no try/catch needed", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    let n = 0;
    for await (const _ of watchProcesses({ events: ["coredump"], signal: ac.signal })) n++;
    const monitor = await ProcMonitor.open({ events: ["coredump"], signal: AbortSignal.timeout(300) });
    for await (const _ of monitor) n++;
    assert.equal(n, 0);
  });
});

describe("procmon like forkstat", () => {
  kernelTest("-q -S prints only the table: events per process and type, with totals", async () => {
    // A program of our own name: other processes on a shared host run `sleep` too, and the table
    // counts by name.
    const dir = mkdtempSync(join(tmpdir(), "cnlink-table-"));
    const name = `zz${process.pid}`.slice(0, 15);
    copyFileSync("/bin/sleep", join(dir, name));
    chmodSync(join(dir, name), 0o755);
    const procmon = await Procmon.start(["-q", "-S"]);
    // In -q mode nothing shows until the end: run the workload a few times, then stop.
    try {
      for (let i = 0; i < 5; i++) await runToEnd(join(dir, name), ["0.2"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const { stdout, code, signal } = await procmon.stop();
    assert.ok(code === 0 || signal === "SIGINT", `exit ${code} ${signal}`);
    const lines = stdout.split("\n").filter((l) => l.trim() !== "");
    assert.match(lines[0], /^ +Fork +Exec +Exit +Coredump +Comm +Ptrace +Uid +Gid +Sid +Total {2}Process$/);
    assert.ok(lines.some((l) => new RegExp(`^ +\\d+ +[1-5] +[1-5] .* +${name}$`).test(l)), stdout);
    assert.ok(lines.some((l) => /\(all processes\)$/.test(l)));
    assert.ok(!lines.some((l) => /^\d\d:\d\d:\d\d\./.test(l)), "no event lines");
  }, 20_000);

  kernelTest("-x adds UID and TTY; -s shows the program only; lines reach a pipe before procmon exits", async () => {
    const procmon = await Procmon.start(["-x", "-s", "-e", "exec"]);
    // The row must be named (what this test checks is the columns): on a busy host the 0.1 s sleep
    // can end before /proc was read, and its row says <gone>; another one is run then.
    const named = (pid: number, out: string) =>
      out.split("\n").some((l) => l.includes(` ${pid} `) && l.endsWith("sleep"));
    const pid = await procmon.repeatUntil(() => runToEnd("sleep", ["0.1"]), named);
    assert.equal(procmon.child.exitCode, null, "seen while procmon still runs: not held back by a pipe");
    const { stdout } = await procmon.stop();
    const line = stdout.split("\n").find((l) => l.includes(` ${pid} `))!;
    assert.match(stdout.split("\n")[0], / UID +TTY +User +Cgroup +Process$/);
    assert.match(line, new RegExp(` ${pid} .* ${process.getuid!()} +\\S* +root .* sleep$`));
  }, 60_000);
});
