/**
 * Booting a guest under qemu and collecting what it sends back.
 *
 * - TCG only: the machines' /dev/kvm is a software device that cannot run stock kernels.
 * - `-cpu max`: Bun uses AVX2 and dies with SIGILL on qemu64.
 * - `-nic none`: the guest has no network, so nothing in it can reach (or wait for) a registry.
 * - The console is the first serial port (ttyS0, streamed to a log); results come over the second
 *   (ttyS1, a file), so test output cannot garble them.
 *
 * @module
 */
import { LabError } from "./host.ts";

/** What one boot produced. */
export interface BootResult {
  /** Everything the guest printed on its console. */
  console: string;
  /** Everything it sent on the results port. */
  results: string;
  /** Seconds from start to power-off. */
  seconds: number;
}

/** Options of {@linkcode boot}. */
export interface BootOptions {
  kernel: string;
  initrd: string;
  /** Where the results port is written. */
  resultsFile: string;
  /** Where the console is logged. */
  consoleFile: string;
  /** Guest memory in MiB. */
  memoryMiB: number;
  cpus: number;
  timeoutSeconds: number;
  /** Called with every console line that starts with "@@" (progress), or every line when verbose. */
  onLine: (line: string) => void;
  verbose: boolean;
}

/**
 * Boots the guest and waits for it to power off.
 *
 * @throws {LabError} qemu cannot start, the kernel panics, or the guest does not finish in time
 */
export async function boot(o: BootOptions): Promise<BootResult> {
  const args = [
    ...["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", String(o.cpus), "-m", String(o.memoryMiB)],
    ...["-M", "q35", "-nographic", "-nic", "none", "-no-reboot", "-monitor", "none"],
    ...["-serial", "stdio", "-serial", `file:${o.resultsFile}`],
    ...["-kernel", o.kernel, "-initrd", o.initrd],
    ...["-append", "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=4"],
  ];
  const started = performance.now();
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("qemu-system-x86_64", { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  } catch (cause) {
    throw new LabError(`cannot start qemu-system-x86_64: ${(cause as Error).message}`, { cause });
  }
  const log = await Deno.open(o.consoleFile, { write: true, create: true, truncate: true });
  let console = "";
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, o.timeoutSeconds * 1000);
  const encoder = new TextEncoder();
  const stderr = new Response(child.stderr).text();
  try {
    let pending = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      console += chunk;
      await log.write(encoder.encode(chunk));
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const raw of lines) {
        // deno-lint-ignore no-control-regex
        const line = raw.replace(/\r$/, "").replace(/\x1b(\[[0-9;?]*[a-zA-Z]|c)/g, "");
        if (o.verbose || line.startsWith("@@")) o.onLine(line);
      }
    }
  } finally {
    clearTimeout(timer);
    log.close();
  }
  const status = await child.status;
  const seconds = (performance.now() - started) / 1000;
  let results = "";
  try {
    results = Deno.readTextFileSync(o.resultsFile).replace(/\r/g, "");
  } catch {
    // reported below
  }
  const tail = () => console.split("\n").slice(-40).join("\n");
  if (timedOut) {
    throw new LabError(`the guest did not finish within ${o.timeoutSeconds} s (console: ${o.consoleFile}):\n${tail()}`);
  }
  if (/Kernel panic/.test(console)) {
    throw new LabError(`the guest kernel panicked (console: ${o.consoleFile}):\n${tail()}`);
  }
  if (status.code !== 0) {
    throw new LabError(`qemu exited ${status.code}: ${(await stderr).trim()}\n${tail()}`);
  }
  if (!results.includes("@@done")) {
    throw new LabError(`the guest powered off without finishing its plan (console: ${o.consoleFile}):\n${tail()}`);
  }
  return { console, results, seconds };
}
