/**
 * Gate for tests that need root and the real kernel connector. Without them the tests skip with
 * the reason; with CNLINK_REQUIRE_KERNEL=1 (set by .ci/run) that skip becomes a failure.
 */
import { test } from "node:test";
import process from "node:process";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync, readFileSync, readlinkSync, renameSync, statSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

function missing(): string | null {
  if (process.platform !== "linux") return "needs Linux";
  if (process.getuid?.() !== 0) return "needs root (CAP_NET_ADMIN) for groups and unicast";
  if (!existsSync("/proc/net/connector")) return "the kernel has no connector (CONFIG_CONNECTOR)";
  return null;
}

const reason = missing();
const required = process.env.CNLINK_REQUIRE_KERNEL === "1";

/** A test against the real kernel: skipped with a reason when impossible, failed when CI requires it. */
export function kernelTest(name: string, fn: () => Promise<void> | void, timeout = 20_000): void {
  if (reason && required) {
    test(name, () => {
      throw new Error(`kernel test could not run: ${reason} (CNLINK_REQUIRE_KERNEL=1 makes this a failure)`);
    });
    return;
  }
  test(name, { skip: reason ?? false, timeout }, fn);
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

/**
 * The path of tests/fixtures/tasks (threads, ptrace, exec from a thread): `CNLINK_TASKS_BIN` when set
 * (the kernel lab's guest has it prebuilt), else built once with `cc -static` into the temp folder.
 */
export function tasksBinary(): string {
  const given = process.env.CNLINK_TASKS_BIN;
  if (given) return given;
  const source = fileURLToPath(new URL("./fixtures/tasks.c", import.meta.url));
  const out = join(tmpdir(), `cnlink-tasks-${statSync(source).mtimeMs.toString(36)}`);
  if (!existsSync(out)) {
    const cc = spawnSync("cc", ["-static", "-O2", "-pthread", "-o", `${out}.tmp`, source], { encoding: "utf8" });
    if (cc.status !== 0) throw new Error(`cannot build ${source} (needs cc and libc6-dev): ${cc.stderr}`);
    renameSync(`${out}.tmp`, out);
  }
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

/**
 * Runs `count` short-lived processes at once, all on CPU 0 (so that the events kept before an
 * overflow and those after it share one per-CPU sequence, which makes the loss visible as a gap),
 * and resolves when they all ended. `CNLINK_STORM` overrides `count` (the kernel lab uses fewer).
 */
export async function forkStorm(count: number): Promise<void> {
  const n = Number(process.env.CNLINK_STORM ?? count);
  const child = spawn("taskset", ["-c", "0", "sh", "-c", `for i in $(seq ${n}); do /bin/true & done; wait`], {
    stdio: "ignore",
  });
  const [code] = await once(child, "exit");
  if (code !== 0) throw new Error(`the fork storm exited ${code}`);
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
