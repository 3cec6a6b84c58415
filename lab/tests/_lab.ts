/**
 * Helpers of the suites that run inside the kernel lab's guest (`npm run lab`): loading the lab's
 * modules, reading their counters, and a test gate. Outside the lab these tests skip with the reason;
 * the lab itself runs with CNLINK_REQUIRE_KERNEL=1, where a skip would be a failure.
 */
import { test } from "node:test";
import process from "node:process";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Where the guest keeps the modules of the running kernel. */
const modulesDir = process.env.CNLINK_LAB_MODULES ?? "";

function missing(): string | null {
  if (process.env.CNLINK_LAB !== "1") return "runs inside the kernel lab (npm run lab), which loads its own modules";
  if (process.getuid?.() !== 0) return "needs root";
  if (!existsSync(join(modulesDir, "extra"))) return `no lab modules under ${modulesDir}/extra`;
  return null;
}

const reason = missing();

/** A test of the kernel lab: skipped with a reason elsewhere, a failure when CI requires it. */
export function labTest(name: string, fn: () => Promise<void> | void, timeout = 30_000): void {
  if (reason && process.env.CNLINK_REQUIRE_KERNEL === "1") {
    test(name, () => {
      throw new Error(`lab test could not run: ${reason}`);
    });
    return;
  }
  test(name, { skip: reason ?? false, timeout }, fn);
}

function sh(what: string, cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${what} failed: ${r.stderr || r.stdout || `exit ${r.status}`}`);
}

/** Whether a module is loaded. */
export function loaded(name: string): boolean {
  return existsSync(`/sys/module/${name}`);
}

/** Loads one of the lab's modules (from extra/) or an in-tree one (a path under kernel/) with parameters. */
export function insmod(name: string, params: Record<string, string | number> = {}, where = "extra"): void {
  if (loaded(name)) rmmod(name);
  const path = join(modulesDir, where, `${name}.ko`);
  sh(`insmod ${name}`, "insmod", [path, ...Object.entries(params).map(([k, v]) => `${k}=${v}`)]);
}

/** Unloads a module (waits for its exit function: `rmmod` returns when the module is gone). */
export function rmmod(name: string): void {
  if (loaded(name)) sh(`rmmod ${name}`, "rmmod", [name]);
}

/** A module's parameter as sysfs shows it. */
export function param(module: string, name: string): string {
  return readFileSync(`/sys/module/${module}/parameters/${name}`, "utf8").trim();
}

/** A module's numeric parameter (its counters). */
export function counter(module: string, name: string): number {
  return Number(param(module, name));
}

/** Writes a module's parameter (those with mode 0644). */
export function setParam(module: string, name: string, value: string | number): void {
  writeFileSync(`/sys/module/${module}/parameters/${name}`, String(value));
}

/** Loads `name` for the duration of `fn`. */
export async function withModule<T>(
  name: string,
  params: Record<string, string | number>,
  fn: () => Promise<T>,
): Promise<T> {
  insmod(name, params);
  try {
    return await fn();
  } finally {
    rmmod(name);
  }
}

/** The connector's registered callbacks as /proc/net/connector lists them ("name idx:val"). */
export function connectorCallbacks(): string[] {
  return readFileSync("/proc/net/connector", "utf8").trim().split("\n").slice(1).map((l) =>
    l.trim().replace(/\s+/g, " ")
  );
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
