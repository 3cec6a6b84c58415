/**
 * The live process table against the real kernel: exact under every event filter, parents that
 * follow re-parenting, cgroups kept through exec and followed when a process moves, a bounded size
 * after loss and reaping, and names that are the process's own or left out, never borrowed.
 * Verified on Linux 6.18 (x86_64, 2 vCPU), where the kernel applies the `events` filter itself.
 */
import { describe } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ProcMonitor, type ProcMonitorItem, type ProcMonitorOptions } from "../proc.ts";
import { forkStormBlocking, kernelTest, tasksBinary } from "./_kernel.ts";
import { Procmon } from "./_procmon.ts";
import { waitFor } from "./_wait.ts";

/** Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts). */
function cgroup2Root(): string {
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const [left, right] = line.split(" - ");
    if (right?.startsWith("cgroup2 ")) return left.split(" ")[4];
  }
  throw new Error("no cgroup2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)");
}

/**
 * A monitor whose items are recorded as they arrive, each `process` copied at once: what a consumer
 * saw when it got the event, not what the object became later.
 */
class Recording {
  readonly items: ProcMonitorItem[] = [];
  readonly #reader: Promise<void>;

  private constructor(readonly monitor: ProcMonitor) {
    this.#reader = (async () => {
      for await (const item of monitor) this.items.push(structuredClone(item));
    })();
  }

  static async open(options: ProcMonitorOptions): Promise<Recording> {
    return new Recording(await ProcMonitor.open(options));
  }

  /** Waits until `found(items)` holds (or throws after `timeoutMs`). */
  until<T>(found: (items: ProcMonitorItem[]) => T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
    return waitFor(() => found(this.items), what, { timeoutMs, everyMs: 20 });
  }

  async close(): Promise<ProcMonitorItem[]> {
    await this.monitor.close();
    await this.#reader;
    return this.items;
  }
}

/** A test cgroup `<root>/cnlink-table-PID.slice/docker-<id>.scope`, removed (once empty) by `remove()`. */
function testCgroup(tag: string) {
  const root = cgroup2Root();
  const slice = `cnlink-table-${tag}-${process.pid}.slice`;
  const id = "feed".padEnd(64, "0123456789abcdef");
  const scope = `${slice}/docker-${id}.scope`;
  mkdirSync(join(root, scope), { recursive: true });
  return {
    prefix: `/${slice}/`,
    path: `/${scope}`,
    procs: join(root, scope, "cgroup.procs"),
    async remove() {
      await waitFor(() => {
        try {
          rmdirSync(join(root, scope));
          rmdirSync(join(root, slice));
          return true;
        } catch {
          return false;
        }
      }, "the test cgroup to empty");
    },
  };
}

async function exited(child: ChildProcess): Promise<number> {
  if (child.exitCode === null && child.signalCode === null) await once(child, "exit");
  return child.pid!;
}

/** The first line a child prints, as a number (a pid it reports). */
async function firstNumber(child: ChildProcess): Promise<number> {
  // Listeners, not `for await ... break`: under Deno, breaking out of the stream's iterator while
  // the child exits threw an AbortError now and then (2026-12-06).
  const stdout = child.stdout!;
  const text = await new Promise<string>((resolve, reject) => {
    let got = "";
    const done = () => {
      stdout.off("data", onData);
      stdout.off("end", done);
      stdout.off("error", reject);
      resolve(got);
    };
    const onData = (chunk: unknown) => {
      got += String(chunk);
      if (got.includes("\n")) done();
    };
    stdout.on("data", onData);
    stdout.once("end", done);
    stdout.once("error", reject);
  });
  const n = Number(text.split("\n")[0]);
  assert.ok(Number.isInteger(n) && n > 0, `a pid, got ${JSON.stringify(text)}`);
  return n;
}

function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "latin1");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0], ppid: Number(fields[1]) };
  } catch {
    return undefined;
  }
}

const info = (e: ProcMonitorItem | undefined) => (e === undefined || e.type === "lost" ? undefined : e.process);
/** "1 2 3 ... n", for a shell loop without a `seq` process of its own. */
const count = (n: number) => Array.from({ length: n }, (_, i) => i + 1).join(" ");
const program = (argv?: string[]) => argv?.[0]?.replace(/^.*\//, "");
const exitOf = (items: ProcMonitorItem[], pid: number) =>
  items.find((e) => e.type === "exit" && e.pid === pid && e.tgid === pid);

describe("a filter does not hide what the table needs", () => {
  kernelTest("-e exit: a process that started after the monitor is named at its exit", async () => {
    const rec = await Recording.open({ events: ["exit"], enrich: true });
    try {
      const pid = await exited(spawn("sleep", ["0.3"], { stdio: "ignore" }));
      const exit = await rec.until((items) => exitOf(items, pid), `the exit of ${pid}`);
      assert.ok(exit.type === "exit");
      assert.deepEqual([program(exit.process?.cmdline), ...exit.process?.cmdline?.slice(1) ?? []], ["sleep", "0.3"]);
      assert.ok(rec.items.every((e) => e.type === "exit" || e.type === "lost"), "only exits were shown");
      assert.equal(rec.monitor.filterMode, "kernel");
    } finally {
      await rec.close();
    }
  });

  kernelTest("-e nonzero-exit with a cgroup prefix: every matching exit, with its own command line", async () => {
    const cgroup = testCgroup("nz");
    try {
      const rec = await Recording.open({ events: ["nonzero-exit"], cgroup: cgroup.prefix });
      const runs = 50;
      let shell = 0;
      try {
        const script = `echo $$ > ${cgroup.procs}; for i in ${count(runs)}; do /bin/false; done; ` +
          `(sleep 0.3; exec sh -c 'sleep 0.1; exit 4'); exit 0`;
        shell = await exited(spawn("sh", ["-c", script], { stdio: "ignore" }));
        await rec.until(
          (items) => items.filter((e) => e.type === "exit").length >= runs + 1,
          `${runs + 1} non-zero exits`,
        );
      } finally {
        await rec.close();
      }
      const exits = rec.items.filter((e) => e.type === "exit");
      assert.ok(exits.every((e) => e.type === "exit" && e.exitCode !== 0), "only non-zero exits");
      // A /bin/false may be gone before its exec's /proc read: then its command line is missing,
      // never its shell's.
      const falses = exits.filter((e) => info(e)?.ppid === shell);
      assert.equal(falses.length, runs + 1, "every /bin/false of the cgroup, and the subshell");
      assert.ok(falses.every((e) => info(e)?.cgroup === cgroup.path));
      const named = falses.filter((e) => info(e)?.cmdline?.length);
      assert.ok(named.every((e) => ["false", "sh"].includes(program(info(e)?.cmdline)!)), "no borrowed name");
      assert.ok(falses.every((e) => ["false", "sh", undefined].includes(info(e)?.comm)), "no borrowed comm");
      // The subshell's row names the program it exec'd last, not the shell it was forked from (when
      // its exec's /proc read got there in time; on a loaded machine it may say it could not).
      const four = info(exits.find((e) => e.type === "exit" && e.exitCode === 4 << 8));
      assert.ok(four, "the subshell's exit 4");
      if (four.cmdline?.length) assert.deepEqual(four.cmdline.slice(1), ["-c", "sleep 0.1; exit 4"]);
      else assert.ok(four.missing?.includes("cmdline") || four.uncertain?.includes("cmdline"), "says it is unknown");
    } finally {
      await cgroup.remove();
    }
  }, 30_000);

  kernelTest("procmon -e exit -p PID shows the exits of PID's children", async () => {
    const flag = join("/tmp", `cnlink-table-go-${process.pid}`);
    const parent = spawn("sh", ["-c", `while [ ! -e ${flag} ]; do sleep 0.02; done; /bin/true; /bin/true; sleep 0.1`], {
      stdio: "ignore",
    });
    try {
      const procmon = await Procmon.start(["--json", "-e", "exit", "-p", String(parent.pid)]);
      // Its waiting loop's sleeps show once procmon has scanned /proc and reads events.
      await waitFor(() => procmon.stdout.includes(`"ppid":${parent.pid},`), "procmon's first row", {
        timeoutMs: 30_000,
      });
      writeFileSync(flag, "");
      await exited(parent);
      await waitFor(() => procmon.stdout.includes(`"pid":${parent.pid},`), "the parent's own exit row");
      const { stdout } = await procmon.stop();
      const rows = stdout.trim().split("\n").map((l) => JSON.parse(l)).filter((r) => r.type === "exit");
      // Its children (sleeps, then two /bin/true and a sleep 0.1) each have a row; a name when one
      // could be read before they ended (not always under load), and never another program's.
      const children = rows.filter((r) => r.process?.ppid === parent.pid);
      assert.ok(children.length >= 3, `its children's exits shown:\n${stdout}`);
      assert.ok(children.every((r) => ["sleep", "true", undefined].includes(program(r.process?.cmdline))));
      assert.ok(rows.find((r) => r.pid === parent.pid)?.process?.cmdline, "the parent's own exit, named");
      assert.ok(rows.every((r) => r.pid === parent.pid || r.process?.ppid === parent.pid), "only the subtree");
    } finally {
      parent.kill();
      rmSync(flag, { force: true });
    }
  }, 60_000);
});

describe("cgroups are kept through exec and followed when a process moves", () => {
  kernelTest("every child of a process in a cgroup carries it, also when /proc is gone at its exec", async () => {
    const cgroup = testCgroup("exec");
    try {
      const rec = await Recording.open({ enrich: true, cgroup: cgroup.prefix });
      const runs = 200;
      let shell = 0;
      try {
        // The shell moves itself, then execs the one that forks: a program started in the container.
        const script = `echo $$ > ${cgroup.procs}; exec sh -c 'for i in ${count(runs)}; do /bin/true; done'`;
        shell = await exited(spawn("sh", ["-c", script], { stdio: "ignore" }));
        await rec.until((items) => exitOf(items, shell), "the shell's exit");
      } finally {
        await rec.close();
      }
      const mine = (type: string) => rec.items.filter((e) => e.type === type && info(e)?.ppid === shell);
      const execs = new Set(mine("exec").map((e) => e.type === "exec" && e.pid));
      const without = mine("exit").flatMap((e) => e.type === "exit" && !execs.has(e.pid) ? [e.pid] : []);
      assert.equal(
        mine("exec").length,
        runs,
        `every exec of the children passed the cgroup filter; the items of those without one: ${
          JSON.stringify(
            rec.items.filter((e) => without.includes(e.type === "fork" ? e.childTgid : "tgid" in e ? e.tgid : -1)),
            (_, v) => typeof v === "bigint" ? `${v}` : v,
          )
        }; lost: ${JSON.stringify(rec.items.filter((e) => e.type === "lost"))}`,
      );
      assert.equal(mine("exit").length, runs, "every exit of the children passed the cgroup filter");
      assert.ok(rec.items.every((e) => e.type === "lost" || e.process?.cgroup === cgroup.path));
    } finally {
      await cgroup.remove();
    }
  }, 60_000);

  kernelTest("a process moved into the cgroup after its exec is seen there at its exit", async () => {
    const cgroup = testCgroup("move");
    try {
      const rec = await Recording.open({ events: ["nonzero-exit"], cgroup: cgroup.prefix });
      try {
        // A subshell that exits 3 while its parent (a sleep after exec) never reaps it: its exit can
        // be read in /proc while it is a zombie.
        const parent = spawn("sh", ["-c", "(sleep 0.4; exit 3) & echo $!; exec sleep 1"], {
          stdio: ["ignore", "pipe", "ignore"],
        });
        const pid = await firstNumber(parent);
        writeFileSync(cgroup.procs, String(pid));
        const exit = await rec.until((items) => exitOf(items, pid), `the exit of ${pid} in the cgroup`);
        assert.equal(info(exit)?.cgroup, cgroup.path);
        assert.equal(info(exit)?.container?.runtime, "docker");
      } finally {
        await rec.close();
      }
    } finally {
      await cgroup.remove();
    }
  });
});

describe("parents follow re-parenting", () => {
  kernelTest("after a double fork, the orphan's parent is what /proc says, not the dead middle process", async () => {
    // Every event: the table sees the fork, so the parent it knows first is the middle process.
    const rec = await Recording.open({ enrich: true });
    try {
      // The orphan lives long enough for a monitor lagging behind a busy host to read it.
      const middle = spawn("sh", ["-c", "sleep 5 >/dev/null 2>&1 & echo $!"], {
        stdio: ["ignore", "pipe", "ignore"],
      });
      const orphan = await firstNumber(middle);
      await exited(middle);
      const table = rec.monitor.processes!;
      const now = await waitFor(() => {
        const stat = procStat(orphan);
        return stat && stat.ppid !== middle.pid ? stat : undefined;
      }, "the kernel to re-parent the orphan");
      await waitFor(() => table.get(orphan)?.ppid === now.ppid, `the table to say ppid ${now.ppid}`, {
        // Under a parallel fork load the monitor first works through everyone else's events.
        timeoutMs: 15_000,
      }).catch(() => assert.fail(`the table says ppid ${table.get(orphan)?.ppid}, /proc says ${now.ppid}`));
      assert.ok(!table.ancestry(orphan).some((p) => p.pid === middle.pid), "the dead middle is no ancestor");
    } finally {
      await rec.close();
    }
  });

  kernelTest("an orphan of a subreaper's child gets the subreaper as its parent", async () => {
    const rec = await Recording.open({ events: ["exit"], enrich: true });
    try {
      const reaper = spawn(tasksBinary(), ["subreaper"], { stdio: ["ignore", "pipe", "inherit"] });
      const grandchild = await firstNumber(reaper);
      const table = rec.monitor.processes!;
      await waitFor(() => table.get(grandchild)?.ppid === reaper.pid, "the table to name the subreaper", {
        // Under a parallel fork load the monitor first works through everyone else's events.
        timeoutMs: 15_000,
      }).catch(() => assert.fail(`the table says ppid ${table.get(grandchild)?.ppid}, not ${reaper.pid}`));
      assert.deepEqual(table.ancestry(grandchild).slice(-2).map((p) => p.pid), [reaper.pid, grandchild]);
      await exited(reaper);
    } finally {
      await rec.close();
    }
  });
});

describe("the table stays bounded", () => {
  kernelTest("a zombie seen at the seeding scan leaves once it is reaped", async () => {
    // The child exits after its parent exec'd a sleep that never waits: a zombie until the sleep ends.
    const parent = spawn("sh", ["-c", "sleep 0.2 & echo $!; exec sleep 5"], { stdio: ["ignore", "pipe", "ignore"] });
    const zombie = await firstNumber(parent);
    await waitFor(() => procStat(zombie)?.state === "Z", "the child to be a zombie");
    const rec = await Recording.open({ events: ["exec"], enrich: true });
    try {
      const table = rec.monitor.processes!;
      assert.ok(table.get(zombie), "the seeding scan found the zombie");
      parent.kill();
      await exited(parent);
      await waitFor(() => !procStat(zombie), "init to reap the zombie");
      await waitFor(() => !table.get(zombie), "the zombie to leave the table", { timeoutMs: 4000 });
    } finally {
      await rec.close();
    }
  });

  kernelTest("after an overrun the table is reconciled with /proc: no entry of a process that is gone", async () => {
    // A 4 KiB buffer (it doubles after each overrun). Its ack may be lost to other processes' events
    // on a busy machine: try again then.
    let rec: Recording | undefined;
    for (let attempt = 1; !rec; attempt++) {
      rec = await Recording.open({ enrich: true, rcvbuf: 4096 }).catch((err) => {
        if ((err as Error).name !== "TimeoutError" || attempt === 3) throw err;
        return undefined;
      });
    }
    try {
      // The JS thread blocked meanwhile: the worker stops at what the buffer holds, and it overflows.
      forkStormBlocking(1500);
      const table = rec.monitor.processes!;
      await waitFor(() => rec!.monitor.stats.overruns > 0, "the overrun to be reported", { timeoutMs: 5000 })
        .catch(() => {});
      assert.ok(rec.monitor.stats.overruns > 0, "the storm overran a 4 KiB buffer");
      const stale = () => [...table].filter((p) => !existsSync(`/proc/${p.pid}`));
      // The entries of processes gone right after the storm must leave. (On a host with other work
      // forking meanwhile, new ones come and go within the grace window: they are not counted.)
      const gone = stale();
      const left = () => gone.filter((p) => table.get(p.pid) && !existsSync(`/proc/${p.pid}`));
      await waitFor(() => left().length === 0, "the entries of processes that are gone to leave", { timeoutMs: 15_000 })
        .catch(() => assert.fail(`${left().length} of ${gone.length} entries of processes gone are still there`));
      await waitFor(() => table.size <= readdirCount() + 10, "the table to be no larger than /proc", {
        timeoutMs: 15_000,
      })
        .catch(() => assert.fail(`table ${table.size}, /proc ${readdirCount()}`));
    } finally {
      await rec.close();
    }
  }, 60_000);
});

/** How many processes /proc lists now. */
function readdirCount(): number {
  return readdirSync("/proc").filter((name) => /^\d+$/.test(name)).length;
}

describe("names are the process's own, or left out", () => {
  kernelTest("a child forked by a named thread carries the thread's name", async () => {
    const rec = await Recording.open({ events: ["fork"], enrich: true });
    try {
      const tasks = spawn(tasksBinary(), ["thread-fork"], { stdio: ["ignore", "pipe", "inherit"] });
      const child = await firstNumber(tasks);
      // The thread waits for its child: kill the child only once the fork was seen (a 100 ms child
      // was gone with its thread before a monitor on a loaded host read the thread's name).
      const fork = await rec.until(
        (items) => items.find((e) => e.type === "fork" && e.childPid === child),
        "the fork of the thread's child",
      );
      process.kill(child, "SIGKILL");
      await exited(tasks);
      assert.ok(fork.type === "fork" && fork.parentPid !== fork.parentTgid, "forked by a thread");
      assert.equal(fork.process?.comm, "cnlink-worker");
    } finally {
      await rec.close();
    }
  });

  kernelTest("an exec followed by another exec of the same pid never carries the later program", async () => {
    const rec = await Recording.open({ events: ["exec"], enrich: true });
    const runs = 100;
    const pids: number[] = [];
    try {
      for (let i = 0; i < runs; i++) {
        pids.push(await exited(spawn("sh", ["-c", "exec /bin/sleep 0.05"], { stdio: "ignore" })));
      }
      await rec.until(
        (items) => items.filter((e) => e.type === "exec" && pids.includes(e.pid)).length >= 2 * runs,
        "both execs of every run",
      );
    } finally {
      await rec.close();
    }
    let withheld = 0;
    let borrowedCount = 0;
    for (const pid of pids) {
      const [first, second] = rec.items.filter((e) => e.type === "exec" && e.pid === pid);
      const p = first.type === "exec" ? first.process : undefined;
      const borrowed = program(p?.cmdline) === "sleep" || p?.comm === "sleep" || p?.exe?.endsWith("/sleep");
      // The kernel renames the task and switches its memory early in exec but stamps the event only
      // after loading the new image: a task preempted in between (a loaded host) can still give a
      // read of the next program before its event exists. That window is bounded here, not denied.
      if (borrowed) borrowedCount++;
      if (p?.uncertain) withheld++;
      else assert.equal(program(p?.cmdline) ?? "sh", "sh");
      const q = second.type === "exec" ? second.process : undefined;
      if (q?.cmdline?.length) assert.deepEqual([program(q.cmdline), ...q.cmdline.slice(1)], ["sleep", "0.05"]);
    }
    assert.ok(borrowedCount <= 2, `${borrowedCount}/${runs} execs of sh carried sleep's name (before: 187/200)`);
    console.log(`exec of sh: ${withheld}/${runs} withheld as uncertain, ${borrowedCount} borrowed`);
  }, 60_000);
});
