/**
 * Figures the hardening tests measure (cases fuzzed, datagrams sent and reported, leaks, ...), for
 * docs/RELIABILITY.md. scripts/test.ts gives each run a private directory in `CNLINK_FIGURES_DIR` and
 * prints the figures at the end; without it (a test file run on its own) nothing is written, so no
 * file is ever shared between runs or users.
 */
import process from "node:process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runtimeName } from "./_runtime.ts";

const dir = process.env.CNLINK_FIGURES_DIR;

/** The file this runtime's figures go to in the run's directory, if the run gave one. */
export const FIGURES_FILE: string | undefined = dir ? join(dir, `figures-${runtimeName}.json`) : undefined;

/** Records one figure (the last value for a name wins). */
export function recordFigure(name: string, value: unknown): void {
  if (!FIGURES_FILE) return;
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(readFileSync(FIGURES_FILE, "utf8"));
  } catch {
    // first figure of the run
  }
  all[name] = value;
  writeFileSync(FIGURES_FILE, JSON.stringify(all, null, 2));
}
