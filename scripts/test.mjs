#!/usr/bin/env node
// Runs every test file under `deno test` and `bun test` with the pinned runtimes from node_modules,
// then prints one closing line totalling both: "N passed, N failed, N skipped".
// Leaf tests are counted from each runner's JUnit report (a describe block is not a test).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const bin = (name) => join(import.meta.dirname, "..", "node_modules", ".bin", name);
const out = mkdtempSync(join(tmpdir(), "cnlink-test-"));
const files = process.argv.slice(2);

const runs = [
  {
    runtime: "deno",
    report: join(out, "deno.xml"),
    args: (report) => ["test", "-A", `--junit-path=${report}`, ...(files.length ? files : ["tests/"])],
  },
  {
    runtime: "bun",
    report: join(out, "bun.xml"),
    args: (report) => ["test", "--timeout=60000", "--reporter=junit", `--reporter-outfile=${report}`, ...files],
  },
];

function unescape(s) {
  return s.replace(/&gt;/g, ">").replace(/&lt;/g, "<").replace(/&quot;/g, '"').replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&");
}

function count(xml) {
  const cases = [];
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const name = unescape(/\bname="([^"]*)"/.exec(m[1])?.[1] ?? "");
    const classname = unescape(/\bclassname="([^"]*)"/.exec(m[1])?.[1] ?? "");
    const body = m[3] ?? "";
    cases.push({ name, classname, failed: /<failure|<error/.test(body), skipped: /<skipped/.test(body) });
  }
  // Deno reports describe blocks as test cases too and their steps as "block > step": keep leaves.
  const names = cases.map((c) => c.name);
  const leaves = cases.filter((c) => !names.some((n) => n.startsWith(`${c.name} > `)));
  return {
    passed: leaves.filter((c) => !c.failed && !c.skipped).length,
    failed: leaves.filter((c) => c.failed),
    skipped: leaves.filter((c) => c.skipped),
  };
}

// Figures the hardening tests record (tests/_figures.ts), per runtime.
const figuresFile = (runtime) => join(tmpdir(), `cnlink-figures-${runtime}.json`);
for (const run of runs) rmSync(figuresFile(run.runtime), { force: true });

const total = { passed: 0, failed: 0, skipped: 0 };
let broken = false;
for (const run of runs) {
  console.log(`\n=== ${run.runtime} test ===`);
  const result = spawnSync(bin(run.runtime), run.args(run.report), { stdio: "inherit" });
  if (!existsSync(run.report)) {
    console.log(`${run.runtime}: the runner wrote no report (exit ${result.status ?? result.signal})`);
    total.failed++;
    broken = true;
    continue;
  }
  const c = count(readFileSync(run.report, "utf8"));
  console.log(`${run.runtime}: ${c.passed} passed, ${c.failed.length} failed, ${c.skipped.length} skipped`);
  for (const f of c.failed) console.log(`  failed: ${f.name}`);
  for (const s of c.skipped) console.log(`  skipped: ${s.name}`);
  if (result.status !== 0 && c.failed.length === 0) {
    console.log(`${run.runtime}: exited ${result.status ?? result.signal} with no failed test reported`);
    total.failed++;
    broken = true;
  }
  total.passed += c.passed;
  total.failed += c.failed.length;
  total.skipped += c.skipped.length;
}
for (const run of runs) {
  if (!existsSync(figuresFile(run.runtime))) continue;
  console.log(`\nfigures (${run.runtime}): ${readFileSync(figuresFile(run.runtime), "utf8")}`);
}
console.log(`\n${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
process.exit(total.failed > 0 || broken ? 1 : 0);
