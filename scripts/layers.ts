/**
 * The layer check CI runs: reads the module graph of every entry point with `deno info --json` and
 * fails on
 *
 * - an upward import: a module importing one of a higher layer (the table below, lowest first);
 * - an import between two families of the same layer (proc and w1 know nothing of each other);
 * - a cycle at any level: between files, or between the folders of `src/`;
 * - the fake kernel's bus (`src/testing/`) importing a client or a family: it provides transports,
 *   the families' fakes sit beside their families, and `FakeKernel` (`src/fakes/`) on top;
 * - a file of `src/` that the table does not place.
 *
 * Type-only imports count like any other: a cycle of types is still a cycle for a reader.
 *
 *   deno run -A scripts/layers.ts          prints the layers and any violation; exit 1 on one
 *
 * @module
 */
import process from "node:process";
import { spawnSync } from "node:child_process";
import { join, relative } from "node:path";

const root = join(import.meta.dirname!, "..");
const ENTRIES = ["mod.ts", "proc.ts", "testing.ts", "w1.ts", "cli/procmon.ts"];

/** Layers, lowest first: a module may import its own layer's or lower ones. */
const LAYERS: { layer: number; prefix: string; family?: string }[] = [
  { layer: 0, prefix: "src/errors.ts" },
  { layer: 0, prefix: "src/codec/" },
  { layer: 0, prefix: "src/args.ts" }, // the argument contract: imports nothing
  { layer: 1, prefix: "src/ffi/" },
  { layer: 2, prefix: "src/socket/" },
  { layer: 3, prefix: "src/core/" },
  { layer: 3, prefix: "src/testing/" }, // the fake kernel's bus: sockets as transports, no family
  { layer: 4, prefix: "src/connector/" },
  { layer: 6, prefix: "src/proc/", family: "proc" }, // with its fake, src/proc/fake.ts
  { layer: 6, prefix: "src/w1/", family: "w1" }, // with its fakes, src/w1/fake_*.ts
  { layer: 7, prefix: "src/nats/" }, // ships process events: above proc, below procmon, which uses it
  { layer: 7, prefix: "src/fakes/" }, // FakeKernel: the bus, the family fakes and the clients together
  { layer: 8, prefix: "src/procmon/" },
  { layer: 9, prefix: "cli/" },
  { layer: 10, prefix: "" }, // the entry points at the top
];

interface Module {
  specifier: string;
  local?: string;
  dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
}

function placeOf(file: string) {
  return LAYERS.find((l) => l.prefix === "" ? !file.includes("/") : file.startsWith(l.prefix));
}

const deno = process.execPath.endsWith("deno") ? process.execPath : "deno";
const modules: Module[] = ENTRIES.flatMap((entry) => {
  const info = spawnSync(deno, ["info", "--json", entry], { cwd: root, encoding: "utf8", maxBuffer: 64 << 20 });
  if (info.status !== 0) throw new Error(`deno info ${entry} failed: ${info.stderr}`);
  return JSON.parse(info.stdout).modules;
});

const edges = new Map<string, Set<string>>();
const problems: string[] = [];
for (const m of modules) {
  if (!m.local || !m.specifier.startsWith("file:")) continue;
  const from = relative(root, m.local);
  if (from.startsWith("..") || from.startsWith("node_modules")) continue;
  const targets = new Set<string>();
  for (const d of m.dependencies ?? []) {
    for (const s of [d.code?.specifier, d.type?.specifier]) {
      if (!s?.startsWith("file:")) continue;
      const to = relative(root, new URL(s).pathname);
      if (!to.startsWith("..") && !to.startsWith("node_modules")) targets.add(to);
    }
  }
  edges.set(from, targets);
}

for (const [from, targets] of edges) {
  const a = placeOf(from);
  if (!a) {
    problems.push(`${from}: no layer (add its folder to scripts/layers.ts)`);
    continue;
  }
  for (const to of targets) {
    const b = placeOf(to);
    if (!b) continue;
    if (b.layer > a.layer) problems.push(`upward import: ${from} (layer ${a.layer}) -> ${to} (layer ${b.layer})`);
    else if (a.family && b.family && a.family !== b.family) problems.push(`between families: ${from} -> ${to}`);
  }
}

/** The fake kernel's bus knows no client and no family (also not through a type). */
const BUS = "src/testing/";
const NOT_FROM_BUS = ["src/connector/", "src/proc/", "src/w1/", "src/nats/", "src/fakes/"];
for (const [from, targets] of edges) {
  if (!from.startsWith(BUS)) continue;
  for (const to of targets) {
    if (NOT_FROM_BUS.some((p) => to.startsWith(p))) {
      problems.push(`the fake kernel's bus imports a family: ${from} -> ${to}`);
    }
  }
}

/** Cycles of a graph, each once, by depth-first search (Tarjan's strongly connected components). */
function cycles(graph: Map<string, Set<string>>): string[][] {
  let index = 0;
  const stack: string[] = [];
  const on = new Set<string>();
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const component: string[] = [];
      for (let w = stack.pop()!;; w = stack.pop()!) {
        on.delete(w);
        component.push(w);
        if (w === v) break;
      }
      if (component.length > 1 || graph.get(v)?.has(v)) out.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

for (const c of cycles(edges)) problems.push(`cycle between files: ${c.join(", ")}`);
const folders = new Map<string, Set<string>>();
const folderOf = (f: string) => f.includes("/") ? f.slice(0, f.lastIndexOf("/")) : ".";
for (const [from, targets] of edges) {
  const a = folderOf(from);
  if (!a.startsWith("src")) continue;
  const set = folders.get(a) ?? new Set<string>();
  folders.set(a, set);
  for (const to of targets) {
    const b = folderOf(to);
    if (b !== a && b.startsWith("src")) set.add(b);
  }
}
for (const c of cycles(folders)) problems.push(`cycle between folders: ${c.join(", ")}`);

console.log(`${edges.size} modules of the library checked against ${LAYERS.length} layers`);
for (const p of problems) console.log(`  ${p}`);
console.log(problems.length ? `${problems.length} layer problem(s)` : "no upward import, no cycle");
process.exit(problems.length ? 1 : 0);
