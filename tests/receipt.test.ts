/**
 * Enrichment at the point of receipt (src/proc/receipt.ts, src/proc/receipt_worker.ts): with a process
 * table, a worker receives the process events and reads /proc for each exec at once. Against the real
 * kernel: short-lived processes are named (compared with forkstat on the same burst when it is
 * installed), a huge command line neither stalls other events nor is read whole, a later exec's
 * program is never shown for an earlier exec, close() leaves no thread or fd, and loss is reported.
 */
import { describe } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { monotonicClock, ProcMonitor, type ProcMonitorItem, type ProcMonitorOptions } from "../proc.ts";
import { ReceiptTransport } from "../src/proc/receipt.ts";
import { cgroupPathOf } from "../src/proc/cgroup.ts";
import { burstOf, echoedPids, forkStorm, kernelTest, markerProcess, sleep } from "./_kernel.ts";
import { recordFigure } from "./_figures.ts";

/** Reads `monitor` into `items` until `done` holds or `timeoutMs` pass; `received` gets each item's arrival. */
async function collect(
  monitor: ProcMonitor,
  activity: () => Promise<void>,
  done: (items: ProcMonitorItem[]) => boolean,
  timeoutMs = 10_000,
  received?: (item: ProcMonitorItem) => void,
  items: ProcMonitorItem[] = [],
): Promise<ProcMonitorItem[]> {
  const reader = (async () => {
    for await (const item of monitor) {
      received?.(item);
      items.push(item);
    }
  })();
  await activity();
  const deadline = Date.now() + timeoutMs;
  while (!done(items) && Date.now() < deadline) await sleep(20);
  await monitor.close();
  await reader;
  return items;
}

/**
 * Opens an enriching monitor and resolves once its receipt worker reads the socket (it takes over
 * after it started: seconds under \`deno test\`, which type-checks a worker's module at each start).
 */
async function openActive(options: ProcMonitorOptions): Promise<ProcMonitor> {
  const monitor = await ProcMonitor.open({ enrich: true, ...options });
  for (let waited = 0; !monitor.stats.receipt!.active; waited += 20) {
    if (waited > 30_000) {
      await monitor.close();
      throw new Error("the receipt worker did not take the socket over in 30 s");
    }
    await sleep(20);
  }
  return monitor;
}

type Naming = { cmdline: number; nameOnly: number; nothing: number; missing: number };
const naming = (): Naming => ({ cmdline: 0, nameOnly: 0, nothing: 0, missing: 0 });

const hasForkstat = spawnSync("sh", ["-c", "command -v forkstat"]).status === 0;
const tids = () => new Set(readdirSync("/proc/self/task"));
const threadName = (tid: string) => {
  try {
    return readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
};
const fds = () => readdirSync("/proc/self/fd").length;

describe("enrichment at the point of receipt", () => {
  /**
   * Bursts of short-lived children, watched by forkstat (when installed) and by a monitor whose
   * worker opens its exec-only socket or not (`execSocket`).
   */
  const namesBursts = async (execSocket: boolean) => {
    // forkstat (when installed) watches the same bursts at the same time: the floor is what it
    // names on this machine now. Without it, the documented floor: half the command lines.
    let forkstat: ChildProcess | undefined;
    let forkstatOut = "";
    if (hasForkstat) {
      forkstat = spawn("forkstat", ["-e", "exec", "-D", "60"], { stdio: ["ignore", "pipe", "ignore"] });
      forkstat.stdout!.setEncoding("utf8").on("data", (c: string) => (forkstatOut += c));
      await sleep(500);
    }
    const monitor = await (async () => {
      ReceiptTransport.execSocket = execSocket;
      try {
        return await openActive({ events: ["exec"] });
      } finally {
        ReceiptTransport.execSocket = true;
      }
    })();
    const pids: number[] = [];
    const rounds = 3;
    const burst = 32;
    const items = await collect(monitor, async () => {
      for (let r = 0; r < rounds; r++) {
        pids.push(...await burstOf(burst, "sh -c 'exit 0'"));
        await sleep(200);
      }
    }, (i) => i.filter((e) => e.type === "exec" && pids.includes(e.pid)).length >= pids.length);
    const ours = naming();
    const wanted = new Set(pids);
    for (const e of items) {
      if (e.type !== "exec" || !wanted.has(e.pid)) continue;
      const p = e.process;
      if (p?.cmdline?.join(" ") === "sh -c exit 0") ours.cmdline++;
      else if (p?.comm) ours.nameOnly++;
      else ours.nothing++;
    }
    ours.missing = pids.length - ours.cmdline - ours.nameOnly - ours.nothing;
    assert.equal(ours.missing, 0, "every exec arrived");
    const theirs = naming();
    if (forkstat) {
      await sleep(300);
      forkstat.kill("SIGINT");
      await once(forkstat, "close");
      const seen = new Set<number>();
      for (const line of forkstatOut.split("\n")) {
        const m = /^\S+ exec +(\d+) +(.*?) *$/.exec(line);
        if (!m || !wanted.has(Number(m[1]))) continue;
        seen.add(Number(m[1]));
        if (m[2] === "sh -c exit 0") theirs.cmdline++;
        else if (m[2] && !m[2].startsWith("<")) theirs.nameOnly++;
        else theirs.nothing++;
      }
      theirs.missing = pids.length - seen.size;
    }
    const figures = `ours ${JSON.stringify(ours)}, forkstat ${hasForkstat ? JSON.stringify(theirs) : "not installed"}`;
    recordFigure(execSocket ? "receipt.burst" : "receipt.burst.fallback", figures);
    // A guard against a regression (before enrichment at receipt, 1-17 of 40 were named), not the
    // measurement of the claim: bench/names.ts compares with forkstat over rounds. One run of 96 moves
    // by a few execs either way: on a slow VM (0.9 ms per fork+wait) where both named 86-96 of 96,
    // ours minus forkstat's ranged from -4 to +3 over 20 runs (Bun, 2026-12-06). So: level with
    // forkstat within 5 % of the execs.
    const slack = Math.ceil(pids.length * 0.05);
    const floor = hasForkstat ? theirs.cmdline - slack : Math.ceil(pids.length / 2);
    assert.ok(ours.cmdline >= floor, `command lines (within ${slack} of forkstat's): ${figures}`);
    assert.ok(monitor.stats.receipt!.reads >= pids.length, "read at receipt");
    // As root the receipt thread runs at nice -10.
    assert.equal(monitor.stats.receipt!.raisedPriority, process.getuid?.() === 0);
    // The exec-only socket opens wherever the monitor could join group 1 (as root, here).
    assert.equal(monitor.stats.receipt!.execSocket, execSocket);
  };

  kernelTest("a burst of short-lived children is named: as many command lines as forkstat, within 5 %", async () => {
    await namesBursts(true);
  }, 60_000);

  kernelTest(
    "without the exec-only socket (the fallback), the worker still names as many as forkstat, within 5 %",
    async () => {
      await namesBursts(false);
    },
    60_000,
  );

  kernelTest("the worker reads a forking shell's and the exiting children's cgroups, once per batch", async () => {
    const ours = cgroupPathOf(readFileSync("/proc/self/cgroup", "utf8"));
    const monitor = await openActive({});
    const before = monitor.stats.receipt!.cgroups;
    const burst = 32;
    let pids: number[] = [];
    const items = await collect(
      monitor,
      async () => void (pids = await burstOf(burst, "sh -c 'exit 0'")),
      (i) => pids.length > 0 && i.filter((e) => e.type === "exit" && pids.includes(e.pid)).length === burst,
    );
    const read = monitor.stats.receipt!.cgroups - before;
    const forks = items.filter((e) => e.type === "fork" && pids.includes(e.childTgid));
    const exits = items.filter((e) => e.type === "exit" && pids.includes(e.pid));
    assert.equal(forks.length, burst, "every fork arrived");
    assert.equal(exits.length, burst, "every exit arrived");
    // Each fork and exit is served from a read the worker made after it was received: the children
    // carry the shell's cgroup, which is this test's.
    for (const e of [...forks, ...exits]) {
      const p = e.type === "lost" ? undefined : e.process;
      assert.equal(p?.cgroup, ours, `${e.type} of ${p?.pid}: ${p?.cgroup}`);
    }
    // One read per batch for the shell, whatever the number of its forks in it (and one per exit).
    assert.ok(read > 0, "the worker read cgroups");
    assert.ok(read < forks.length + exits.length, `${read} reads for ${forks.length} forks and ${exits.length} exits`);
    recordFigure("receipt.cgroupReads", `${read} for ${forks.length} forks and ${exits.length} exits`);
  }, 60_000);

  kernelTest("a 1.9 MB command line is read up to 64 KiB and does not delay another exec by 200 ms", async () => {
    const clock = await monotonicClock();
    const monitor = await openActive({ events: ["exec"] });
    // 64 arguments of 30 000 bytes: 1.92 MB (argv may hold a quarter of the 8 MiB stack limit). A
    // shell makes them, so that this thread (which a runtime's spawn of 1.9 MB blocks) measures only.
    const script = `a=$(printf '%030000d' 0); sh -c 'sleep 0.3' ${'"$a" '.repeat(64)}& echo $!; ` +
      "sleep 0.02; sh -c 'exit 0' & echo $!; wait";
    const delays = new Map<number, number>();
    let bigPid = 0;
    let markerPid = 0;
    const items = await collect(
      monitor,
      async () => void ([bigPid, markerPid] = await echoedPids(script, "ignore")),
      (i) => [bigPid, markerPid].every((pid) => i.some((e) => e.type === "exec" && e.pid === pid)),
      10_000,
      (item) => {
        if (item.type === "exec") delays.set(item.pid, Number(clock() - item.timestampNs) / 1e6);
      },
    );
    const bigExec = items.find((e) => e.type === "exec" && e.pid === bigPid);
    assert.ok(bigExec?.type === "exec" && bigExec.process?.cmdline, "the big exec was read");
    const argv = bigExec.process.cmdline;
    assert.deepEqual(argv.slice(0, 3), ["sh", "-c", "sleep 0.3"]);
    assert.ok(argv[3] === "0".repeat(30_000), "the first argument whole");
    assert.equal(bigExec.process.cmdlineTruncated, true, "says it was cut");
    assert.ok(argv.join("\0").length <= 64 << 10, `${argv.join("\0").length} bytes kept`);
    assert.equal(argv[4]?.length, 30_000, "the first whole arguments are kept");
    const delay = delays.get(markerPid)!;
    assert.ok(delay !== undefined, "the other exec arrived");
    recordFigure("receipt.bigArgvOtherExecDelayMs", Math.round(delay * 10) / 10);
    assert.ok(delay < 200, `the other exec arrived ${delay.toFixed(1)} ms after it happened`);
  }, 30_000);

  kernelTest("48 execs of 60 KB command lines at once (batches over the ring's half) all arrive, read", async () => {
    // Each read keeps up to 64 KiB of a command line, so these make batches of a MiB and more that
    // cross the ring in chunks, and wake-ups the worker owes this thread while it builds the next
    // (a worker that waited for room without waking this thread would wait forever).
    const monitor = await openActive({ events: ["exec"] });
    const runs = 48;
    const script =
      `a=$(printf '%060000d' 0); for i in $(seq ${runs}); do sh -c 'sleep 1; :' "$a" & echo $!; done; wait`;
    let pids: number[] = [];
    const items = await collect(
      monitor,
      async () => void (pids = await echoedPids(script, "ignore")),
      (i) => pids.length === runs && pids.every((pid) => i.some((e) => e.type === "exec" && e.pid === pid)),
      20_000,
    );
    assert.equal(pids.length, runs);
    const execs = items.filter((e) => e.type === "exec" && pids.includes(e.pid));
    assert.equal(execs.length, runs, `${execs.length} of ${runs} execs arrived`);
    const read = execs.filter((e) => e.type === "exec" && e.process?.cmdline?.[3]?.length === 60_000).length;
    // Each lives a second (its sleep is a child: the shell's exec is its pid's only one), so each is
    // there when read.
    assert.equal(read, runs, `${read} of ${runs} read with their 60 KB argument`);
  }, 60_000);

  kernelTest("an exec chain: what was read after a later exec was received is not used", async () => {
    const monitor = await openActive({ events: ["exec"] });
    const pids: number[] = [];
    // Each child execs sh, which execs /bin/true at once: two execs of one process ~1 ms apart.
    const items = await collect(monitor, async () => {
      for (let r = 0; r < 2; r++) {
        pids.push(...await burstOf(16, "sh -c 'exec /bin/true first'"));
        await sleep(100);
      }
    }, (i) => i.filter((e) => e.type === "exec" && pids.includes(e.pid)).length >= 2 * pids.length);
    let firstNamed = 0;
    let secondNamed = 0;
    let borrowed = 0;
    let withheld = 0;
    for (const pid of pids) {
      const execs = items.filter((e) => e.type === "exec" && e.pid === pid);
      assert.equal(execs.length, 2, `two execs of ${pid}`);
      const [first, second] = execs.map((e) => (e.type === "exec" ? e.process : undefined));
      // The first is sh's: named sh, or unknown. Showing true is borrowing from the later exec.
      if (first?.cmdline?.[0] === "/bin/true" || first?.comm === "true") borrowed++;
      if (first?.cmdline?.[0] === "sh") firstNamed++;
      if (first?.uncertain?.includes("cmdline")) withheld++;
      if (second?.cmdline?.[0] === "/bin/true") secondNamed++;
    }
    const figure = `sh named ${firstNamed}/${pids.length}, true ${secondNamed}/${pids.length}, ` +
      `borrowed ${borrowed}, withheld ${withheld}, uncertain reads ${monitor.stats.receipt!.uncertain}`;
    recordFigure("receipt.execChain", figure);
    // Reads that a later exec received first made uncertain are never used. Left: a read inside the
    // kernel's own window (the task renamed and its memory switched, the event not sent yet) while
    // the exec'ing task waits for the CPU more than the 2 ms margin: rare, bounded here at 1 in 8.
    assert.ok(borrowed <= pids.length / 8, figure);
    // The chains were caught: by the worker (a later exec seen before a read ended, or within 2 ms
    // of its end: where the two execs come ~1 ms apart) or by the table (a later exec stamped within
    // 50 ms of the read's end: where they come 10-20 ms apart, as on a 2-vCPU VM whose fork+wait
    // took 0.9 ms, 2026-12-06). Either way the first exec's fields are withheld, not borrowed.
    assert.ok(monitor.stats.receipt!.uncertain > 0 || withheld > 0, `chains are caught: ${figure}`);
  }, 60_000);

  kernelTest("the name taken from /proc/PID/stat is exactly what /proc/PID/comm shows", async () => {
    // The worker reads stat, not comm, and takes the name from its second field: "(name)", where
    // the name may hold ")", "(", spaces and newlines, and is cut at 15 bytes. A program's name is
    // the base name of the path it was exec'd by: symlinks to sleep with such names.
    const dir = mkdtempSync("/tmp/cnlink-comm-");
    const names = ["a) b (c)) d", "x) (y)) z) longer than fifteen", "p\nq) r", ")"];
    const paths = names.map((name) => join(dir, name));
    for (const path of paths) symlinkSync("/bin/sleep", path);
    const monitor = await openActive({ events: ["exec"] });
    const children: ChildProcess[] = [];
    const comms = new Map<number, string>();
    try {
      const items = await collect(monitor, async () => {
        for (const path of paths) {
          const child = spawn(path, ["3"], { stdio: "ignore" });
          children.push(child);
          await once(child, "spawn");
        }
        await sleep(300);
        // What /proc/PID/comm shows while they live, without its newline.
        for (const child of children) {
          comms.set(child.pid!, readFileSync(`/proc/${child.pid}/comm`, "latin1").replace(/\n$/, ""));
        }
      }, (i) => children.every((c) => i.some((e) => e.type === "exec" && e.pid === c.pid)));
      for (const child of children) {
        const exec = items.find((e) => e.type === "exec" && e.pid === child.pid);
        assert.ok(exec?.type === "exec", `the exec of ${child.pid} arrived`);
        assert.equal(exec.process?.comm, comms.get(child.pid!), `missing: ${exec.process?.missing}`);
      }
      // And they are the names asked for, cut at 15 bytes.
      assert.deepEqual(children.map((c) => comms.get(c.pid!)), names.map((n) => n.slice(0, 15)));
    } finally {
      for (const child of children) child.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  kernelTest("close() leaves no worker thread, eventfd or socket behind", async () => {
    // The first worker makes the runtime set up its own machinery for workers (kept): not counted.
    await (await openActive({ events: ["exec"] })).close();
    // And one closed before its worker started: nothing of it is left either.
    await (await ProcMonitor.open({ enrich: true, events: ["exec"] })).close();
    await sleep(500);
    const before = { tids: tids(), fds: fds() };
    const workers = new Set<string>();
    // Three cycles: \`deno test\` type-checks a worker's module at each start (seconds under load).
    for (let i = 0; i < 3; i++) {
      const monitor = await openActive({ events: ["exec"] });
      // The worker's thread (Deno names it worker-N, Bun Worker; the runtimes start threads of their
      // own meanwhile, e.g. Bun's signal sender, which stay).
      const started = [...tids()].filter((t) => !before.tids.has(t) && /^worker/i.test(threadName(t)));
      assert.ok(started.length > 0, "the worker's thread runs while open");
      for (const t of started) workers.add(t);
      await markerProcess(0);
      await monitor.close();
    }
    // A terminated worker's thread ends a little after terminate().
    const left = () => [...workers].filter((t) => tids().has(t));
    for (let waited = 0; left().length > 0 && waited < 10_000; waited += 100) await sleep(100);
    const after = fds();
    recordFigure("receipt.lifecycle", `worker threads left ${left().length}, fds ${before.fds} -> ${after}`);
    assert.deepEqual(left(), [], "every worker thread ended");
    assert.ok(after <= before.fds, `fds ${before.fds} -> ${after}`);
  }, 120_000);

  kernelTest("after an overrun in a batch, each exec still gets its own process's reads", async () => {
    // The worker numbers its reads by entry of the batch, and an overrun is an entry too: a read
    // numbered by datagrams alone went to the entry before its exec (another process's). Each program
    // here shows its own pid in its argv (the shell's $$ is the pid that execs echo), so a read served
    // for the wrong process is seen. A 4 KiB buffer and one queued item make the socket overflow
    // while the worker reads, so overruns and execs share batches.
    const monitor = await openActive({ rcvbuf: 4096, maxRcvbuf: 0, maxQueued: 1, events: ["exec"] });
    const items = await collect(
      monitor,
      async () => {
        for (let round = 0; round < 6; round++) {
          await burstOf(120, "sh -c 'exec /bin/echo $$ >/dev/null'");
          await sleep(100);
        }
      },
      () => false,
      1_000,
    );
    const echoed = items.filter((e) => e.type === "exec" && e.process?.cmdline?.[0]?.endsWith("echo"));
    const wrong = echoed.filter((e) => e.type === "exec" && e.process?.cmdline?.[1] !== String(e.pid));
    const overruns = monitor.stats.overruns;
    recordFigure(
      "receipt.overrunReads",
      `${echoed.length} echo execs named, ${wrong.length} wrong, ${overruns} overruns`,
    );
    assert.ok(overruns > 0, "the socket overflowed while the worker read (else this test shows nothing)");
    assert.ok(echoed.length > 0, `no exec of echo was named (${items.length} items)`);
    assert.deepEqual(
      wrong.map((e) => e.type === "exec" && `${e.pid}: ${e.process?.cmdline?.join(" ")}`),
      [],
      "an exec showed another process's command line",
    );
  }, 60_000);

  kernelTest("a tiny buffer and a fork storm still give a lost item, and the stream goes on", async () => {
    // One queued event pauses the receive loop; the worker then stops once it holds what the 4 KiB
    // socket would (64 datagrams), so the socket overflows however fast the worker reads.
    const monitor = await openActive({ rcvbuf: 4096, maxRcvbuf: 0, maxQueued: 1, events: ["exec", "exit"] });
    const markers: number[] = [];
    const exitedMarker = (i: ProcMonitorItem[]) =>
      i.some((e) => e.type === "exit" && markers.includes(e.pid) && e.exitCode === 7 << 8);
    // Nobody reads during the storm (as in tests/proc_kernel.test.ts): the stream fills at once.
    await forkStorm(400);
    const items: ProcMonitorItem[] = [];
    await collect(
      monitor,
      async () => {
        await sleep(300);
        // With a 4 KiB buffer on a busy host a marker's own events can be lost too: try a few.
        for (let i = 0; i < 10 && !exitedMarker(items); i++) {
          markers.push(await markerProcess(7));
          await sleep(500);
        }
      },
      (i) => exitedMarker(i),
      5_000,
      undefined,
      items,
    );
    const lost = items.filter((e) => e.type === "lost");
    recordFigure("receipt.stormLost", `${lost.length} lost items, ${monitor.stats.overruns} overruns`);
    assert.ok(lost.length > 0, `no loss reported (${items.length} items)`);
    assert.ok(monitor.stats.overruns > 0 || monitor.stats.seqLost > 0);
    assert.ok(exitedMarker(items), `an event after the storm still arrived (${markers.length} markers)`);
  }, 60_000);
});
