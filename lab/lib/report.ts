/**
 * Results of a lab run, and the README's "Kernels we test on" table made from them.
 *
 * @module
 */
import { join } from "node:path";
import type { KernelSpec } from "./kernels.ts";

/** One runtime's run of the plan in one guest. */
export interface RuntimeRun {
  runtime: string;
  passed: number;
  failed: string[];
  skipped: string[];
  /** Seconds the runner took inside the guest. */
  seconds: number;
}

/** One kernel of the matrix. */
export interface KernelRun extends KernelSpec {
  runs: RuntimeRun[];
  /** Lines of the guest's kernel log that show a problem (oops, warning). */
  kernelProblems: string[];
  /** Seconds from qemu's start to the guest's power-off. */
  bootSeconds: number;
  /** Why the kernel could not be run at all. */
  error?: string;
}

const BEGIN = "<!-- lab:kernels:begin -->";
const END = "<!-- lab:kernels:end -->";

/** The markdown table of a run (kernels of the lab; the host's own kernel is added by the caller's text). */
export function renderReadmeTable(kernels: readonly KernelRun[], date = new Date()): string {
  const cell = (k: KernelRun, runtime: string) => {
    const r = k.runs.find((x) => x.runtime === runtime);
    if (!r) return k.error ? "not run" : "—";
    return r.failed.length ? `${r.passed} passed, **${r.failed.length} failed**` : `${r.passed} passed`;
  };
  const lines = [
    `| kernel (Debian package) | Deno | Bun |`,
    `| --- | --- | --- |`,
    ...kernels.map((k) => `| ${k.release} | ${cell(k, "deno")} | ${cell(k, "bun")} |`),
  ];
  return `${lines.join("\n")}\n\nLast lab run: ${date.toISOString().slice(0, 10)} (\`npm run lab -- --readme\`).`;
}

/** Replaces the table between the README's lab markers. */
export function updateReadme(table: string): void {
  const path = join(import.meta.dirname!, "..", "..", "README.md");
  const text = Deno.readTextFileSync(path);
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${BEGIN} ... ${END} section`);
  Deno.writeTextFileSync(path, text.slice(0, start + BEGIN.length) + "\n" + table + "\n" + text.slice(end));
}
