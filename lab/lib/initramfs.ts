/**
 * The guest's initramfs, as three newc archives concatenated (the kernel unpacks them in order):
 *
 * - base (cached): static busybox, the pinned Deno and Bun binaries, setpriv/unshare from the host,
 *   the few glibc libraries they load (ldd), `/etc/ld.so.cache` so FFI's dlopen("libc.so.6") works;
 * - kernel (per kernel): the lab's modules and the in-tree 1-Wire core, under /lib/modules/<release>;
 * - project (every run): /init, the test plan, the tasks helper and the library with its tests.
 *
 * @module
 */
import { dirname, join, relative } from "node:path";
import { type CpioEntry, writeCpio } from "./cpio.ts";
import { cacheDir, digest, fileStamp, LabError, run } from "./host.ts";
import type { PreparedKernel } from "./kernels.ts";

const repo = join(import.meta.dirname!, "..", "..");

/** The runtimes the guest can run, with where npm installed their binaries. */
export const RUNTIME_BINARIES: Record<string, string> = {
  deno: join(repo, "node_modules", "deno", "deno"),
  bun: join(repo, "node_modules", "bun", "bin", "bun.exe"),
};

/** Host programs the tests start that busybox lacks or implements too thinly (setpriv --reuid). */
const HOST_PROGRAMS = ["/usr/bin/setpriv", "/usr/bin/unshare"];

/** Shared libraries `binary` loads, by the path the loader finds them at. */
async function librariesOf(binary: string): Promise<string[]> {
  const out = await run(`ldd ${binary}`, "ldd", [binary], { allowFailure: true });
  if (/not a dynamic executable/.test(out.stdout + out.stderr)) return [];
  return [...out.stdout.matchAll(/(?:=> )?(\/\S+) \(0x/g)].map((m) => m[1]);
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The base archive (cached by the identity of every binary in it). */
export async function baseArchive(runtimes: readonly string[], log: (line: string) => void): Promise<string> {
  const binaries = runtimes.map((r) => {
    const path = RUNTIME_BINARIES[r];
    if (!path) throw new LabError(`unknown runtime "${r}" (the lab knows ${Object.keys(RUNTIME_BINARIES).join(", ")})`);
    if (!exists(path)) throw new LabError(`${path} is missing: run "npm install" first (it pins the runtimes)`);
    return [r, path] as const;
  });
  const programs = ["/bin/busybox", ...HOST_PROGRAMS, ...binaries.map(([, p]) => p)];
  for (const p of programs) if (!exists(p)) throw new LabError(`${p} is missing on the host`);
  const key = await digest(["base-v1", ...runtimes, ...programs.map(fileStamp), fileStamp("/etc/ld.so.cache")]);
  const path = join(cacheDir(), `base-${key}.cpio`);
  if (exists(path)) return path;
  log("packing the guest's base archive");

  const entries: CpioEntry[] = [];
  const lists = await run("busybox --list-full", "/bin/busybox", ["--list-full"]);
  const own = new Set(HOST_PROGRAMS.map((p) => p.split("/").pop()));
  entries.push({ kind: "file", path: "bin/busybox", source: "/bin/busybox", mode: 0o755 });
  for (const applet of lists.stdout.split("\n").filter(Boolean)) {
    if (applet === "bin/busybox" || own.has(applet.split("/").pop())) continue;
    entries.push({ kind: "symlink", path: applet, target: "/bin/busybox" });
  }
  const libraries = new Set<string>();
  for (const p of programs.slice(1)) for (const lib of await librariesOf(p)) libraries.add(lib);
  // FFI opens libc by its soname at run time; ldd of a static program would not list it.
  libraries.add("/lib/x86_64-linux-gnu/libc.so.6");
  for (const lib of libraries) {
    entries.push({ kind: "file", path: lib.slice(1), source: Deno.realPathSync(lib), mode: 0o755 });
  }
  for (const p of HOST_PROGRAMS) entries.push({ kind: "file", path: p.slice(1), source: p, mode: 0o755 });
  for (const [name, p] of binaries) entries.push({ kind: "file", path: `usr/bin/${name}`, source: p, mode: 0o755 });
  entries.push(
    { kind: "file", path: "etc/ld.so.cache", source: "/etc/ld.so.cache" },
    {
      kind: "data",
      path: "etc/passwd",
      data: "root:x:0:0:root:/tmp/home:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    },
    { kind: "data", path: "etc/group", data: "root:x:0:\nnogroup:x:65534:\n" },
    { kind: "dir", path: "proc" },
    { kind: "dir", path: "sys" },
    { kind: "dir", path: "dev" },
    { kind: "dir", path: "tmp", mode: 0o1777 },
  );
  await writeCpio(`${path}.tmp`, entries);
  Deno.renameSync(`${path}.tmp`, path);
  // Older base archives (another npm install of the runtimes, an upgraded host program) are 100-200 MB
  // each and never used again: a CI machine would otherwise gain one per clean clone.
  for (const old of Deno.readDirSync(cacheDir())) {
    if (/^base-[0-9a-f]+\.cpio$/.test(old.name) && join(cacheDir(), old.name) !== path) {
      log(`removing the old base archive ${old.name}`);
      Deno.removeSync(join(cacheDir(), old.name));
    }
  }
  return path;
}

/** The kernel archive: the lab's modules under extra/, the in-tree 1-Wire core and slave drivers, and crc16. */
export async function kernelArchive(kernel: PreparedKernel, modules: Map<string, string>): Promise<string> {
  const base = `lib/modules/${kernel.release}`;
  const entries: CpioEntry[] = [];
  for (const [name, path] of modules) entries.push({ kind: "file", path: `${base}/extra/${name}.ko`, source: path });
  const w1 = join(kernel.modules, "kernel", "drivers", "w1");
  for (const entry of walk(w1)) {
    if (entry.endsWith(".ko")) {
      entries.push({ kind: "file", path: `${base}/kernel/drivers/w1/${relative(w1, entry)}`, source: entry });
    }
  }
  // w1_ds2423 needs the kernel's CRC16 library (a module in Debian's builds; built in elsewhere).
  const crc16 = join(kernel.modules, "kernel", "lib", "crc16.ko");
  if (exists(crc16)) entries.push({ kind: "file", path: `${base}/kernel/lib/crc16.ko`, source: crc16 });
  const path = join(cacheDir(), "build", kernel.release, "kernel.cpio");
  Deno.mkdirSync(dirname(path), { recursive: true });
  await writeCpio(path, entries);
  return path;
}

function* walk(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* walk(p);
    else if (e.isFile) yield p;
  }
}

/** What the project archive carries of the repository: the library, its tests and the examples they run. */
const PROJECT_PATHS = [
  "mod.ts",
  "proc.ts",
  "testing.ts",
  "w1.ts",
  "deno.json",
  "src",
  "cli",
  "tests",
  "examples",
  "lab/tests",
];

/** The project archive: /init, the plan, the tasks helper and the library. */
export async function projectArchive(
  path: string,
  plan: string,
  tasksHelper: string,
): Promise<void> {
  const entries: CpioEntry[] = [
    { kind: "file", path: "init", source: join(repo, "lab", "guest", "init.sh"), mode: 0o755 },
    { kind: "data", path: "lab/plan.sh", data: plan },
    { kind: "file", path: "usr/bin/cnlink-tasks", source: tasksHelper, mode: 0o755 },
  ];
  for (const p of PROJECT_PATHS) {
    const full = join(repo, p);
    if (Deno.statSync(full).isDirectory) {
      for (const f of walk(full)) entries.push({ kind: "file", path: `cnlink/${relative(repo, f)}`, source: f });
    } else {
      entries.push({ kind: "file", path: `cnlink/${p}`, source: full });
    }
  }
  await writeCpio(path, entries);
}

/** Concatenates archives into one initrd file. */
export async function concatenate(out: string, parts: readonly string[]): Promise<void> {
  const file = await Deno.open(out, { write: true, create: true, truncate: true });
  try {
    for (const part of parts) {
      const input = await Deno.open(part);
      await input.readable.pipeTo(file.writable, { preventClose: true });
    }
  } finally {
    file.close();
  }
}
