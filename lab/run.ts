/**
 * The kernel lab: runs the kernel-facing test suites on other kernels (Debian's 6.1 and 6.12) under
 * qemu, on Deno and on Bun, against the lab's own kernel-side agents. `npm run lab` / `deno task lab`.
 *
 * For each kernel of the matrix: fetch and extract Debian's packages (cached), build lab/modules
 * against its headers, pack an initramfs (busybox, the pinned runtimes, the library and its tests),
 * boot it with no network, run the plan, and collect each runner's JUnit report. Prints a table per
 * kernel × runtime and one closing line "N passed, N failed, N skipped". Anything that cannot be
 * fetched, built or booted is a failure with its reason, never a skip.
 *
 * Options: --kernel RELEASE (repeatable; "6.1" or "6.12": the pinned one; default the pinned matrix,
 * or CNLINK_LAB_KERNELS=a,b),
 * --runtime deno|bun (repeatable), --file PATH (repeatable; default the lab plan), --timeout SEC
 * (per kernel, default 900), --jobs N (guests at once, default 2), --summary FILE (JSON), --verbose (the whole console), --readme (write
 * the "Kernels we test on" table of this run into README.md).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import process from "node:process";
import { countLeaves } from "../scripts/junit.ts";
import { buildModules, buildTasksHelper } from "./lib/build.ts";
import { cacheDir, ensureHostPackages, LabError } from "./lib/host.ts";
import { baseArchive, concatenate, kernelArchive, projectArchive } from "./lib/initramfs.ts";
import { DEFAULT_MATRIX, type KernelSpec, prepareKernel, specOf } from "./lib/kernels.ts";
import { boot } from "./lib/qemu.ts";
import { type KernelRun, renderReadmeTable, type RuntimeRun, updateReadme } from "./lib/report.ts";

/** The suites the lab runs: the host's real-kernel suites, then the lab's own (agents, 1-Wire). */
// tests/proc_product.test.ts stays on the host: it starts procmon as a child runtime per test and
// times short-lived processes against /proc reads, which under TCG measures the emulator (a 100 ms
// `sleep` is gone before a cold runtime reads it), not the kernel. The connector side of process
// events is in proc_kernel.
// tests/differential.test.ts probes each kernel (admission rule, skb sizes, 8-byte proc_input) and
// configures the fake kernel from what it saw, then compares the two observation by observation.
const DEFAULT_FILES = [
  "tests/kernel.test.ts",
  "tests/differential.test.ts",
  "tests/proc_kernel.test.ts",
  "tests/hardening.test.ts",
  ...[...Deno.readDirSync(join(import.meta.dirname!, "tests"))]
    .filter((e) => e.name.endsWith(".test.ts")).map((e) => `lab/tests/${e.name}`).sort(),
];

/** Environment of the tests in the guest. */
const GUEST_ENV: Record<string, string> = {
  CNLINK_REQUIRE_KERNEL: "1",
  CNLINK_LAB: "1",
  CNLINK_TASKS_BIN: "/usr/bin/cnlink-tasks",
  // Sizes of the load tests, cut to what emulation runs in seconds while keeping their point: the
  // host runs the full sizes (10 000 open/close cycles, storms of 400-1000 processes).
  CNLINK_LIFECYCLE_CYCLES: "200",
  CNLINK_STORM: "200",
  CNLINK_FLOOD: "5000",
};

const { values } = parseArgs({
  args: Deno.args,
  options: {
    kernel: { type: "string", multiple: true },
    runtime: { type: "string", multiple: true },
    file: { type: "string", multiple: true },
    timeout: { type: "string", default: "900" },
    memory: { type: "string", default: "3072" },
    jobs: { type: "string", default: "2" },
    summary: { type: "string" },
    verbose: { type: "boolean", default: false },
    readme: { type: "boolean", default: false },
  },
});

const fromEnv = Deno.env.get("CNLINK_LAB_KERNELS")?.split(",").map((s) => s.trim()).filter(Boolean);
const kernels: KernelSpec[] = (values.kernel ?? fromEnv)?.map(specOf) ?? [...DEFAULT_MATRIX];
const runtimes = values.runtime ?? ["deno", "bun"];
const files = values.file ?? DEFAULT_FILES;
const started = performance.now();
const log = (line: string) =>
  console.log(`[lab ${((performance.now() - started) / 1000).toFixed(1).padStart(5)}s] ${line}`);

function planFor(kernel: KernelSpec): string {
  const env = { ...GUEST_ENV, CNLINK_LAB_MODULES: `/lib/modules/${kernel.release}` };
  return [
    `RUNTIMES="${runtimes.join(" ")}"`,
    `TEST_FILES="${files.join(" ")}"`,
    ...Object.entries(env).map(([k, v]) => `export ${k}="${v}"`),
    "",
  ].join("\n");
}

/** Splits the results port's text into the sections the guest sent ("@@begin X" ... "@@end X ..."). */
function sections(text: string): Map<string, { body: string; end: string }> {
  const out = new Map<string, { body: string; end: string }>();
  const re = /^@@begin (\S+)\n([\s\S]*?)^@@end \1(.*)$/gm;
  for (const m of text.matchAll(re)) out.set(m[1], { body: m[2], end: m[3].trim() });
  return out;
}

async function runKernel(spec: KernelSpec, base: string, tasks: string): Promise<KernelRun> {
  const kernel = await prepareKernel(spec, log);
  const modules = await buildModules(kernel, log);
  const kernelCpio = await kernelArchive(kernel, modules);
  const work = Deno.makeTempDirSync({ prefix: `cnlink-lab-${spec.name}-` });
  const project = join(work, "project.cpio");
  await projectArchive(project, planFor(spec), tasks);
  const initrd = join(work, "initrd.cpio");
  await concatenate(initrd, [base, kernelCpio, project]);
  log(`booting ${spec.release}`);
  const result = await boot({
    kernel: kernel.vmlinuz,
    initrd,
    resultsFile: join(cacheDir(), `results-${spec.release}.txt`),
    consoleFile: join(cacheDir(), `console-${spec.release}.log`),
    memoryMiB: Number(values.memory),
    cpus: 2,
    timeoutSeconds: Number(values.timeout),
    verbose: values.verbose,
    onLine: (line) => log(`${spec.name}: ${line.replace(/^@@/, "")}`),
  });
  await Deno.remove(work, { recursive: true });
  const parts = sections(result.results);
  const runs: RuntimeRun[] = runtimes.map((runtime) => {
    const section = parts.get(runtime);
    if (!section) return { runtime, passed: 0, failed: ["<the guest sent no report>"], skipped: [], seconds: 0 };
    const exit = /exit=(\d+)/.exec(section.end)?.[1];
    const t0 = Number(/started=([\d.]+)/.exec(section.end)?.[1] ?? 0);
    const t1 = Number(/ended=([\d.]+)/.exec(section.end)?.[1] ?? 0);
    const counts = countLeaves(section.body);
    const failed = counts.failed.map((f) => `${f.name}${f.message ? `: ${f.message.split("\n")[0]}` : ""}`);
    if (!section.body.includes("<testsuites")) failed.push(`<no JUnit report; the runner exited ${exit}>`);
    else if (exit !== "0" && failed.length === 0) failed.push(`<${runtime} exited ${exit} with no failed test>`);
    return { runtime, passed: counts.passed, failed, skipped: counts.skipped.map((s) => s.name), seconds: t1 - t0 };
  });
  const kernelLog = parts.get("dmesg")?.body.split("\n").filter((l) =>
    /BUG|Oops|WARNING|Call Trace|protection/.test(l)
  );
  return { ...spec, runs, kernelProblems: kernelLog ?? [], bootSeconds: result.seconds };
}

const results: KernelRun[] = [];
let broken: string[] = [];
try {
  await ensureHostPackages(log);
  const base = await baseArchive(runtimes, log);
  const tasks = await buildTasksHelper();
  // Kernels run side by side: a guest keeps about one host core busy (the tests are mostly one JS
  // thread), so two guests on the machine's two cores take little longer than one.
  const jobs = Math.max(1, Number(values.jobs));
  const queue = [...kernels];
  const worker = async () => {
    for (let spec = queue.shift(); spec; spec = queue.shift()) {
      try {
        results.push(await runKernel(spec, base, tasks));
      } catch (err) {
        if (!(err instanceof LabError)) throw err;
        log(`${spec.release}: ${err.message}`);
        broken = [...broken, `${spec.release}: ${err.message.split("\n")[0]}`];
        results.push({ ...spec, runs: [], kernelProblems: [], bootSeconds: 0, error: err.message.split("\n")[0] });
      }
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  results.sort((a, b) =>
    kernels.findIndex((k) => k.release === a.release) - kernels.findIndex((k) => k.release === b.release)
  );
} catch (err) {
  if (!(err instanceof LabError)) throw err;
  log(err.message);
  broken = [...broken, err.message.split("\n")[0]];
}

let passed = 0;
let failed = broken.length;
let skipped = 0;
console.log("\nkernel lab");
for (const k of results) {
  for (const r of k.runs) {
    console.log(
      `  ${k.release.padEnd(24)} ${r.runtime.padEnd(5)} ${String(r.passed).padStart(4)} passed ` +
        `${String(r.failed.length).padStart(3)} failed ${String(r.skipped.length).padStart(3)} skipped  ` +
        `${r.seconds.toFixed(0)} s`,
    );
    for (const f of r.failed) console.log(`      failed: ${f}`);
    for (const s of r.skipped) console.log(`      skipped: ${s}`);
    passed += r.passed;
    failed += r.failed.length;
    skipped += r.skipped.length;
  }
  if (k.kernelProblems.length) {
    console.log(`  ${k.release}: the kernel log shows problems:\n      ${k.kernelProblems.join("\n      ")}`);
    failed++;
  }
  if (k.error) console.log(`  ${k.release}: ${k.error}`);
  else console.log(`  ${k.release}: guest ran ${k.bootSeconds.toFixed(0)} s`);
}
const seconds = (performance.now() - started) / 1000;
console.log(`  wall time ${seconds.toFixed(0)} s`);
const summary = { passed, failed, skipped, seconds, kernels: results, problems: broken };
Deno.writeTextFileSync(join(cacheDir(), "last-run.json"), JSON.stringify(summary, null, 2) + "\n");
if (values.summary) Deno.writeTextFileSync(values.summary, JSON.stringify(summary, null, 2) + "\n");
if (values.readme) {
  updateReadme(renderReadmeTable(results));
  log("README.md: kernels table updated");
}
console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
