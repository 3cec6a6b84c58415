/**
 * Bursts of short-lived children for the naming and CPU benchmarks (`names.ts`, `enrich_cpu.ts`).
 *
 * @module
 */
import { spawn } from "node:child_process";
import { once } from "node:events";

/** Runs `n` copies of `command` at once from one shell; resolves with their pids once all ended. */
export async function burstOf(n: number, command: string): Promise<number[]> {
  const runner = spawn("sh", ["-c", `for i in $(seq ${n}); do ${command} & echo $!; done; wait`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let pids = "";
  runner.stdout!.setEncoding("utf8").on("data", (c: string) => (pids += c));
  await once(runner, "close");
  return pids.trim().split("\n").map(Number);
}
