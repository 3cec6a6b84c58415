/**
 * Builds what the guest runs that the host compiles: the lab's kernel modules (against each kernel's
 * extracted headers) and the static tasks helper of the process-event tests. Both are cached by the
 * digest of their sources.
 *
 * @module
 */
import { join } from "node:path";
import { cacheDir, digest, LabError, run } from "./host.ts";
import type { PreparedKernel } from "./kernels.ts";

const repo = join(import.meta.dirname!, "..", "..");
const MODULE_SOURCES = join(repo, "lab", "modules");

function sources(dir: string): string[] {
  return [...Deno.readDirSync(dir)].filter((e) => e.isFile && /\.(c|h)$|^Makefile$|^Kbuild$/.test(e.name))
    .map((e) => e.name).sort();
}

/**
 * Builds the lab's modules for `kernel`; returns the paths of the `.ko` files by module name.
 *
 * @throws {LabError} the build fails (its last lines are in the message)
 */
export async function buildModules(kernel: PreparedKernel, log: (line: string) => void): Promise<Map<string, string>> {
  const files = sources(MODULE_SOURCES);
  const key = await digest([kernel.release, ...files.flatMap((f) => [f, Deno.readFileSync(join(MODULE_SOURCES, f))])]);
  const dir = join(cacheDir(), "build", kernel.release, key);
  const modules = () =>
    new Map(
      [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".ko")).map((
        e,
      ) => [e.name.slice(0, -3), join(dir, e.name)]),
    );
  try {
    Deno.statSync(join(dir, ".complete"));
    return modules();
  } catch {
    // not built yet
  }
  log(`building modules for ${kernel.release}`);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  Deno.mkdirSync(dir, { recursive: true });
  for (const f of files) Deno.copyFileSync(join(MODULE_SOURCES, f), join(dir, f));
  // W=1 would flag kernel-header noise; plain warnings are errors here so a sloppy module fails loudly.
  await run(`building the lab modules against ${kernel.release}`, "make", [
    "-C",
    kernel.headers,
    `M=${dir}`,
    "KCFLAGS=-Werror",
    "modules",
  ]);
  Deno.writeTextFileSync(join(dir, ".complete"), "");
  const built = modules();
  if (built.size === 0) throw new LabError(`building modules for ${kernel.release} produced no .ko`);
  return built;
}

/** Builds tests/fixtures/tasks.c statically (the guest has no libraries for it); returns its path. */
export async function buildTasksHelper(): Promise<string> {
  const source = join(repo, "tests", "fixtures", "tasks.c");
  const out = join(cacheDir(), `tasks-${await digest([Deno.readFileSync(source)])}`);
  try {
    Deno.statSync(out);
    return out;
  } catch {
    await run("building tests/fixtures/tasks.c", "cc", ["-static", "-O2", "-pthread", "-o", `${out}.tmp`, source]);
    Deno.renameSync(`${out}.tmp`, out);
    return out;
  }
}
