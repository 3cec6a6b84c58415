/** How to run a script file with the runtime that runs the tests, and child processes in general. */
import process from "node:process";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** argv to run `script` under the current runtime (Deno with all permissions). */
export function scriptCommand(script: string, ...args: string[]): [string, string[]] {
  return isBun ? [process.execPath, [script, ...args]] : [process.execPath, ["run", "-A", script, ...args]];
}

/** "deno" or "bun". */
export const runtimeName: string = isBun ? "bun" : "deno";

/** What {@linkcode runChild} returns. */
export interface ChildResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs `cmd args` to its end (killing it after `timeoutMs`) and returns its exit and output. */
export async function runChild(
  cmd: string,
  args: string[],
  options: { timeoutMs?: number; env?: Record<string, string>; started?: (child: ChildProcess) => void } = {},
): Promise<ChildResult> {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } });
  options.started?.(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
  const [code, signal] = await once(child, "close");
  clearTimeout(timer);
  return { code, signal, stdout, stderr, timedOut: signal === "SIGKILL" };
}
