/**
 * Running procmon as a child process in tests: output as it comes, and a workload repeated until
 * procmon shows it (a runtime starts slowly under emulation, and procmon says nothing when it has
 * subscribed in --json mode, so no fixed sleep is right everywhere).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { scriptCommand } from "./_runtime.ts";
import { subscribed } from "./_kernel.ts";

/** A running procmon. */
export class Procmon {
  #out = "";
  #err = "";
  readonly child: ChildProcess;
  readonly #exited: Promise<unknown[]>;

  private constructor(cmd: string, args: string[]) {
    this.child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8").on("data", (c: string) => (this.#out += c));
    this.child.stderr!.setEncoding("utf8").on("data", (c: string) => (this.#err += c));
    this.#exited = once(this.child, "exit");
  }

  /** Starts `cli/procmon.ts args` with the runtime under test (or `command` instead) and waits for its socket. */
  static async start(args: string[], command?: [string, string[]]): Promise<Procmon> {
    const [cmd, argv] = command ?? scriptCommand("cli/procmon.ts", ...args);
    const p = new Procmon(cmd, argv);
    await subscribed(p.child.pid!);
    return p;
  }

  /** What it printed so far. */
  get stdout(): string {
    return this.#out;
  }

  /** What it printed on stderr so far. */
  get stderr(): string {
    return this.#err;
  }

  /**
   * Runs `workload` (which returns the pid it started) every 300 ms until `shown(pid)` holds for one
   * of them; returns that pid.
   */
  async repeatUntil(workload: () => Promise<number>, shown: (pid: number, out: string) => boolean, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    const pids: number[] = [];
    for (;;) {
      pids.push(await workload());
      const start = Date.now();
      while (Date.now() - start < 300) {
        const seen = pids.find((pid) => shown(pid, this.#out));
        if (seen !== undefined) return seen;
        await new Promise((r) => setTimeout(r, 20));
      }
      if (Date.now() > deadline) {
        throw new Error(
          `procmon showed none of ${pids.length} workload runs in ${timeoutMs} ms:\n${this.#out}\n${this.#err}`,
        );
      }
    }
  }

  /** Sends SIGINT and waits for it to end; the runtimes report a child that handled it as killed by it. */
  async stop(): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
    await new Promise((r) => setTimeout(r, 200)); // what is in flight gets printed
    this.child.kill("SIGINT");
    const [code, signal] = await this.#exited as [number | null, string | null];
    return { code, signal, stdout: this.#out, stderr: this.#err };
  }
}

/** Starts `cmd args` and resolves with its pid once it ended. */
export async function runToEnd(cmd: string, args: string[]): Promise<number> {
  const child = spawn(cmd, args, { stdio: "ignore" });
  await once(child, "exit");
  return child.pid!;
}
