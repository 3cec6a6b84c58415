/**
 * Gate for tests that need root and the real kernel connector. Without them the tests skip with
 * the reason; with CNLINK_REQUIRE_KERNEL=1 (set by .ci/run) that skip becomes a failure.
 */
import { test } from "node:test";
import process from "node:process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";

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
