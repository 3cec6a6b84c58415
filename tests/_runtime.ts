/** How to run a script file with the runtime that runs the tests, and child processes in general. */
import process from "node:process";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, copyFileSync, cpSync, linkSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** argv to run `script` under the current runtime (Deno with all permissions). */
export function scriptCommand(script: string, ...args: string[]): [string, string[]] {
  return isBun ? [process.execPath, [script, ...args]] : [process.execPath, ["run", "-A", script, ...args]];
}

/** Whether a user other than the owner can reach `path` (every directory above it searchable by others). */
function reachableByAll(path: string, mode: number): boolean {
  const full = resolve(path);
  if ((statSync(full).mode & mode) === 0) return false;
  for (let dir = dirname(full);; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dir === dirname(dir)) return true;
  }
}

/** What {@linkcode scriptCommandForAnyUser} returns: the command, and how to remove what was staged. */
export interface AnyUserCommand {
  cmd: string;
  args: string[];
  /** Removes the staged copy, if one was made; call it when the child has ended. */
  dispose(): void;
}

/**
 * The command to run `script` (a path from the repository root) as another user, e.g. under `setpriv
 * --reuid=65534`. A clone under a 0700 directory (what `mktemp -d` makes, and where CI may clone) is
 * closed to that user, so then the library's sources, the script and the runtime binary are staged in
 * a fresh directory that everyone can read (the runtime by a hard link, or a copy across filesystems).
 */
export function scriptCommandForAnyUser(script: string, ...args: string[]): AnyUserCommand {
  const root = resolve(import.meta.dirname!, "..");
  const runtimeOpen = reachableByAll(process.execPath, 0o001);
  const treeOpen = reachableByAll(join(root, script), 0o004) && reachableByAll(join(root, "src"), 0o001);
  if (runtimeOpen && treeOpen) {
    const [cmd, argv] = scriptCommand(join(root, script), ...args);
    return { cmd, args: argv, dispose() {} };
  }
  const stage = mkdtempSync(join(tmpdir(), "cnlink-any-user-"));
  chmodSync(stage, 0o755);
  for (const part of ["src", "mod.ts", "proc.ts", "w1.ts", "testing.ts", script]) {
    mkdirSync(dirname(join(stage, part)), { recursive: true, mode: 0o755 });
    cpSync(join(root, part), join(stage, part), { recursive: true });
  }
  let runtime = process.execPath;
  if (!runtimeOpen) {
    runtime = join(stage, isBun ? "bun" : "deno");
    try {
      linkSync(process.execPath, runtime);
    } catch {
      copyFileSync(process.execPath, runtime);
      chmodSync(runtime, 0o755);
    }
  }
  const staged = join(stage, script);
  return {
    cmd: runtime,
    args: isBun ? [staged, ...args] : ["run", "-A", staged, ...args],
    dispose: () => rmSync(stage, { recursive: true, force: true }),
  };
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
