/**
 * Runs every test file under `deno test` and `bun test` with the pinned runtimes from node_modules,
 * then prints one closing line totalling both: "N passed, N failed, N skipped".
 *
 * Leaf tests are counted from each runner's JUnit report (a describe block is not a test). With
 * `--summary FILE` (or the environment variable `CNLINK_TEST_SUMMARY=FILE`, which reaches the runner
 * through `npm install-test`, whose own arguments are package names) the totals and every failed or
 * skipped test are also written there as JSON, for CI to read instead of scraping this output.
 * Arguments that are not options are test files.
 *
 * @module
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { countLeaves } from "./junit.ts";

const root = join(import.meta.dirname!, "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);
const out = mkdtempSync(join(tmpdir(), "cnlink-test-"));
const args = process.argv.slice(2);
const summaryAt = args.indexOf("--summary");
const summaryFile = summaryAt >= 0 ? args.splice(summaryAt, 2)[1] : (process.env.CNLINK_TEST_SUMMARY || undefined);
const files = args;

const runs = [
  {
    runtime: "deno",
    report: join(out, "deno.xml"),
    args: (report: string) => ["test", "-A", `--junit-path=${report}`, ...(files.length ? files : ["tests/"])],
  },
  {
    runtime: "bun",
    report: join(out, "bun.xml"),
    args: (report: string) => ["test", "--timeout=60000", "--reporter=junit", `--reporter-outfile=${report}`, ...files],
  },
];

/** What the summary file holds. */
interface Summary {
  passed: number;
  failed: number;
  skipped: number;
  runs: { runtime: string; passed: number; failed: string[]; skipped: string[]; exit: number | string | null }[];
}

// Figures the hardening tests record (tests/_figures.ts), per runtime, in this run's own directory.
const figuresFile = (runtime: string) => join(out, `figures-${runtime}.json`);

const summary: Summary = { passed: 0, failed: 0, skipped: 0, runs: [] };
for (const run of runs) {
  console.log(`\n=== ${run.runtime} test ===`);
  const child = new Deno.Command(bin(run.runtime), {
    args: run.args(run.report),
    cwd: root,
    stdin: "null",
    env: { CNLINK_FIGURES_DIR: out },
  }).spawn();
  const status = await child.status;
  const exit = status.signal ?? status.code;
  if (!existsSync(run.report)) {
    console.log(`${run.runtime}: the runner wrote no report (exit ${exit})`);
    summary.runs.push({ runtime: run.runtime, passed: 0, failed: ["<no report>"], skipped: [], exit });
    summary.failed++;
    continue;
  }
  const c = countLeaves(readFileSync(run.report, "utf8"));
  const failed = c.failed.map((f) => f.name);
  console.log(`${run.runtime}: ${c.passed} passed, ${c.failed.length} failed, ${c.skipped.length} skipped`);
  for (const f of failed) console.log(`  failed: ${f}`);
  for (const s of c.skipped) console.log(`  skipped: ${s.name}`);
  if (status.code !== 0 && c.failed.length === 0) {
    console.log(`${run.runtime}: exited ${exit} with no failed test reported`);
    failed.push(`<${run.runtime} exited ${exit}>`);
  }
  summary.runs.push({ runtime: run.runtime, passed: c.passed, failed, skipped: c.skipped.map((s) => s.name), exit });
  summary.passed += c.passed;
  summary.failed += failed.length;
  summary.skipped += c.skipped.length;
}
for (const run of runs) {
  if (!existsSync(figuresFile(run.runtime))) continue;
  console.log(`\nfigures (${run.runtime}): ${readFileSync(figuresFile(run.runtime), "utf8")}`);
}
if (summaryFile) writeFileSync(summaryFile, JSON.stringify(summary, null, 2) + "\n");
rmSync(out, { recursive: true, force: true });
console.log(`\n${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped`);
process.exit(summary.failed > 0 ? 1 : 0);
