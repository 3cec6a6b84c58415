/**
 * Figures the hardening tests measure (cases fuzzed, datagrams sent and reported, leaks, ...), kept
 * per runtime in the system temp folder; `npm test` prints them at the end for docs/RELIABILITY.md.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtimeName } from "./_runtime.ts";

/** The file this runtime's figures go to. */
export const FIGURES_FILE: string = join(tmpdir(), `cnlink-figures-${runtimeName}.json`);

/** Records one figure (the last value for a name wins). */
export function recordFigure(name: string, value: unknown): void {
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(readFileSync(FIGURES_FILE, "utf8"));
  } catch {
    // first figure of the run
  }
  all[name] = value;
  writeFileSync(FIGURES_FILE, JSON.stringify(all, null, 2));
}
