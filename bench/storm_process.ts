/**
 * Starting `bench/out/storm` (built from storm.c by `bench/run.ts`), for every bench script that
 * needs a fork storm.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";

/**
 * Starts the storm, which prints its pid and waits; `go()` runs it and resolves, once every child it
 * forked has exited, with the number of events it made.
 *
 * @param args storm.c's arguments: `CHILDREN [-x] [-p PAUSE_US]`
 */
export async function startStorm(args: string[]): Promise<{ pid: number; go: () => Promise<number> }> {
  const s = spawn(join(import.meta.dirname!, "out", "storm"), args, { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: s.stdout! })[Symbol.asyncIterator]();
  const pid = Number((await lines.next()).value);
  const go = async () => {
    s.stdin!.write("go\n");
    return Number((await lines.next()).value);
  };
  return { pid, go };
}
