/**
 * Gate for tests that need root and the real kernel connector. Without them the tests skip with
 * the reason; with CNLINK_REQUIRE_KERNEL=1 (set by .ci/run) that skip becomes a failure.
 */
import { test } from "node:test";
import process from "node:process";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

function missing(root: boolean): string | null {
  if (process.platform !== "linux") return "needs Linux";
  if (root && process.getuid?.() !== 0) return "needs root (CAP_NET_ADMIN) for groups and unicast";
  if (!existsSync("/proc/net/connector")) return "the kernel has no connector (CONFIG_CONNECTOR)";
  return null;
}

const reason = missing(true);
const socketReason = missing(false);
const required = process.env.CNLINK_REQUIRE_KERNEL === "1";

function gatedTest(why: string | null, name: string, fn: () => Promise<void> | void, timeout: number): void {
  if (why && required) {
    test(name, () => {
      throw new Error(`kernel test could not run: ${why} (CNLINK_REQUIRE_KERNEL=1 makes this a failure)`);
    });
    return;
  }
  if (why) test(`${name} [skipped: ${why}]`, { skip: why }, fn);
  else test(name, { timeout }, fn);
}

/**
 * A test against the real kernel: skipped when impossible, failed when CI requires it. A skip carries
 * its reason in the test's name, because the runners print a skip's name but not its reason (Deno says
 * "ignored", Bun "(skip)").
 */
export function kernelTest(name: string, fn: () => Promise<void> | void, timeout = 20_000): void {
  gatedTest(reason, name, fn, timeout);
}

/**
 * A test that needs a connector socket but no privilege (it opens sockets without groups and sends
 * nothing to ports or groups): it runs as any user, and is gated like {@linkcode kernelTest} otherwise.
 */
export function socketTest(name: string, fn: () => Promise<void> | void, timeout = 20_000): void {
  gatedTest(socketReason, name, fn, timeout);
}

/** Inodes of this process's open NETLINK_CONNECTOR sockets, from /proc/self/fd and /proc/net/netlink. */
export function connectorSocketInodes(): string[] {
  const connector = new Set(
    readFileSync("/proc/net/netlink", "utf8").trim().split("\n").slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((cols) => cols[1] === "11")
      .map((cols) => cols[cols.length - 1]),
  );
  const inodes: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    let target = "";
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && connector.has(m[1])) inodes.push(m[1]);
  }
  return inodes.sort();
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let builtTasks: string | undefined;

/**
 * The path of tests/fixtures/tasks (threads, ptrace, exec from a thread, plain netlink calls):
 * `CNLINK_TASKS_BIN` when set (the kernel lab's guest has it prebuilt), else built once per process with
 * `cc -static` into a directory of this process's own (readable by every user, since tests run it as
 * uid 65534 too), removed when the process exits: nothing is shared between runs or users in /tmp.
 */
export function tasksBinary(): string {
  const given = process.env.CNLINK_TASKS_BIN;
  if (given) return given;
  if (builtTasks) return builtTasks;
  const source = fileURLToPath(new URL("./fixtures/tasks.c", import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), "cnlink-tasks-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const out = join(dir, "tasks");
  const cc = spawnSync("cc", ["-static", "-O2", "-pthread", "-o", out, source], { encoding: "utf8" });
  if (cc.status !== 0) throw new Error(`cannot build ${source} (needs cc and libc6-dev): ${cc.stderr}`);
  builtTasks = out;
  return out;
}

/** The running kernel's version as [major, minor] (from os.release(), e.g. "6.1.0-56-amd64" gives [6, 1]). */
export function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release());
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/** Whether the running kernel is at least `major.minor`. */
export function kernelAtLeast(major: number, minor: number): boolean {
  const [a, b] = kernelVersion();
  return a > major || (a === major && b >= minor);
}

/** taskset's arguments for a storm of `count` (or `CNLINK_STORM`) `/bin/true` on CPU 0. */
function stormArgs(count: number): string[] {
  const n = Number(process.env.CNLINK_STORM ?? count);
  return ["-c", "0", "sh", "-c", `for i in $(seq ${n}); do /bin/true & done; wait`];
}

/**
 * Runs `count` short-lived processes at once, all on CPU 0 (so that the events kept before an
 * overflow and those after it share one per-CPU sequence, which makes the loss visible as a gap),
 * and resolves when they all ended. `CNLINK_STORM` overrides `count` (the kernel lab uses fewer).
 */
export async function forkStorm(count: number): Promise<void> {
  const child = spawn("taskset", stormArgs(count), { stdio: "ignore" });
  const [code] = await once(child, "exit");
  if (code !== 0) throw new Error(`the fork storm exited ${code}`);
}

/**
 * `forkStorm` with this thread blocked until the storm ended: nothing on the JS thread (a monitor's
 * consumer) takes events meanwhile, so a monitor's receive path stops at what its buffer holds, and
 * a small buffer overflows however fast the machine reads (on a slow one a concurrent reader kept up
 * with 1500 children and a 4 KiB buffer never overflowed).
 */
export function forkStormBlocking(count: number): void {
  const r = spawnSync("taskset", stormArgs(count), { stdio: "ignore" });
  if (r.status !== 0) throw new Error(`the fork storm exited ${r.status ?? r.signal}`);
}

/**
 * Runs `n` copies of `command` at once from one shell (each `command &`); resolves with their pids
 * once all ended. The bursts of short-lived children of the receipt tests and of the naming and
 * CPU benchmarks (bench/names.ts, bench/enrich_cpu.ts).
 */
export function burstOf(n: number, command: string): Promise<number[]> {
  return echoedPids(`for i in $(seq ${n}); do ${command} & echo $!; done; wait`);
}

/** Runs `script` with sh; resolves, once it ended, with the pids it printed (`echo $!`), one per line. */
export async function echoedPids(script: string, stderr: "inherit" | "ignore" = "inherit"): Promise<number[]> {
  const runner = spawn("sh", ["-c", script], { stdio: ["ignore", "pipe", stderr] });
  let pids = "";
  runner.stdout!.setEncoding("utf8").on("data", (c: string) => (pids += c));
  await once(runner, "close");
  return pids.trim().split("\n").map(Number);
}

/** Runs `sh -c "exit CODE"` on CPU 0 and resolves with its pid once it ended. */
export async function markerProcess(code: number): Promise<number> {
  const child = spawn("taskset", ["-c", "0", "sh", "-c", `exit ${code}`], { stdio: "ignore" });
  await once(child, "exit");
  return child.pid!;
}

/**
 * Resolves once process `pid` holds a NETLINK_CONNECTOR socket in group 1 (a process monitor that has
 * bound and sent LISTEN: the first netlink socket of a process gets its pid as port id), or throws
 * after `timeoutMs`. Runtimes start slowly under emulation: a fixed sleep is not enough there.
 */
export async function subscribed(pid: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = readFileSync("/proc/net/netlink", "utf8").trim().split("\n").slice(1);
    const found = lines.map((l) => l.trim().split(/\s+/)).some((c) =>
      c[1] === "11" && Number(c[2]) === pid && (parseInt(c[3], 16) & 1) === 1
    );
    if (found) return;
    if (Date.now() > deadline) throw new Error(`process ${pid} did not subscribe to process events in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
