/** How to run a script file with the runtime that runs the tests. */
import process from "node:process";

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** argv to run `script` under the current runtime (Deno with all permissions). */
export function scriptCommand(script: string, ...args: string[]): [string, string[]] {
  return isBun ? [process.execPath, [script, ...args]] : [process.execPath, ["run", "-A", script, ...args]];
}

/** "deno" or "bun". */
export const runtimeName: string = isBun ? "bun" : "deno";
