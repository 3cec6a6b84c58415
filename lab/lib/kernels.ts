/**
 * The kernels of the lab: Debian's own builds, fetched with `apt-get download` and **extracted**
 * into the cache (never installed on the host: the 6.12 headers package would pull its image,
 * udev and initramfs-tools into the host).
 *
 * @module
 */
import { join } from "node:path";
import { apt, aptUpdateOnce, cacheDir, LabError, run } from "./host.ts";

/** One column of the matrix. */
export interface KernelSpec {
  /** Short name for reports: "6.1", "6.12". */
  name: string;
  /** Debian's kernel release string, as `uname -r` prints it in the guest. */
  release: string;
}

/**
 * The pinned matrix: Debian 12's default kernel (6.1, before the connector's 6.6 changes) and its
 * 6.12 backport. Override with `CNLINK_LAB_KERNELS=6.1.0-57-amd64,6.12.117+deb12-amd64` or `--kernel`.
 */
export const DEFAULT_MATRIX: readonly KernelSpec[] = [
  { name: "6.1", release: "6.1.0-56-amd64" },
  { name: "6.12", release: "6.12.117+deb12-amd64" },
];

/**
 * A kernel release string as a matrix column ("6.12.117+deb12-amd64" is "6.12"). A column's short
 * name alone ("6.1", "6.12") stands for the pinned matrix's release of that column: Debian has no
 * package linux-image-6.1, so taken as a release it could only fail after a long download.
 */
export function specOf(release: string): KernelSpec {
  const pinned = DEFAULT_MATRIX.find((k) => k.name === release);
  if (pinned) return { ...pinned };
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) throw new LabError(`"${release}" is not a kernel release like 6.1.0-56-amd64`);
  return { name: `${m[1]}.${m[2]}`, release };
}

/** A kernel ready to boot and to build modules against. */
export interface PreparedKernel extends KernelSpec {
  /** The compressed kernel image. */
  vmlinuz: string;
  /** The kernel's build configuration. */
  config: string;
  /** The headers tree to run `make -C` in. */
  headers: string;
  /**
   * Where the in-tree modules the lab uses were extracted, uncompressed: the 1-Wire core and its
   * slave drivers, and `lib/crc16.ko` (w1_ds2423 needs it on 6.12).
   */
  modules: string;
}

/** Written last into an extracted kernel; bumped when the extracted set grows (v2: lib/crc16.ko). */
const STAMP = ".complete-v2";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Downloads `packages` into the cache (kept: a second run downloads nothing). */
async function download(packages: string[], log: (line: string) => void): Promise<Map<string, string>> {
  const dir = join(cacheDir(), "debs");
  Deno.mkdirSync(dir, { recursive: true });
  const found = new Map<string, string>();
  const lookup = () => {
    for (const entry of Deno.readDirSync(dir)) {
      const pkg = entry.name.split("_")[0];
      if (entry.name.endsWith(".deb") && packages.includes(pkg)) found.set(pkg, join(dir, entry.name));
    }
  };
  lookup();
  const missing = packages.filter((p) => !found.has(p));
  if (missing.length) {
    log(`downloading ${missing.join(" ")}`);
    try {
      await apt(`downloading ${missing.join(" ")}`, ["download", ...missing], dir);
    } catch (err) {
      throw new LabError(
        `${(err as Error).message}\nDebian may have dropped this kernel: list the current ones with ` +
          `"apt-cache search --names-only '^linux-image-6\\.(1|12)[.0-9+a-z-]*-amd64$'" and pin them with ` +
          `CNLINK_LAB_KERNELS=<release>,<release>.`,
      );
    }
    lookup();
  }
  for (const p of packages) if (!found.has(p)) throw new LabError(`apt-get download ${p} produced no .deb`);
  return found;
}

/** The headers package's dependencies that hold files a module build needs (-common, kbuild). */
async function headerPackages(release: string): Promise<string[]> {
  const depends = () =>
    run("apt-cache depends", "apt-cache", ["depends", `linux-headers-${release}`], { allowFailure: true });
  const known = (o: { code: number; stdout: string }) => o.code === 0 && o.stdout.includes("Depends");
  let out = await depends();
  // Lists older than the pinned kernel: refreshed once, then asked again.
  if (!known(out) && await aptUpdateOnce()) out = await depends();
  if (!known(out)) {
    throw new LabError(
      `Debian has no linux-headers-${release} (apt-cache depends: ${out.stderr.trim() || "nothing"}); ` +
        `run "apt-get update", or pin another kernel with CNLINK_LAB_KERNELS`,
    );
  }
  const deps = [...out.stdout.matchAll(/^\s+Depends: (linux-(?:headers|kbuild)-\S+)$/gm)].map((m) => m[1]);
  return [`linux-headers-${release}`, ...new Set(deps)];
}

/**
 * Fetches and extracts kernel `spec` (cached), and returns where its parts are.
 *
 * @throws {LabError} a package cannot be fetched or does not hold what the lab needs
 */
export async function prepareKernel(spec: KernelSpec, log: (line: string) => void): Promise<PreparedKernel> {
  const root = join(cacheDir(), "kernels", spec.release);
  const prepared: PreparedKernel = {
    ...spec,
    vmlinuz: join(root, "boot", `vmlinuz-${spec.release}`),
    config: join(root, "boot", `config-${spec.release}`),
    headers: join(root, "usr", "src", `linux-headers-${spec.release}`),
    modules: join(root, "lib", "modules", spec.release),
  };
  if (exists(join(root, STAMP))) return prepared;

  const image = `linux-image-${spec.release}`;
  const packages = [image, ...await headerPackages(spec.release)];
  const debs = await download(packages, log);
  log(`extracting ${spec.release}`);
  const staging = `${root}.partial`;
  await Deno.remove(staging, { recursive: true }).catch(() => {});
  Deno.mkdirSync(staging, { recursive: true });
  // From the image only the kernel, its config, the 1-Wire modules and the CRC16 library w1_ds2423 uses:
  // the rest is 400 MB the lab never uses.
  await run("extracting the kernel image", "sh", [
    "-c",
    `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './boot/vmlinuz-*' './boot/config-*' ` +
    `'./lib/modules/*/kernel/drivers/w1/*' './lib/modules/*/kernel/lib/crc16.ko*' ` +
    `'./lib/modules/*/modules.builtin*' './lib/modules/*/modules.order'`,
    "sh",
    debs.get(image)!,
    staging,
  ]);
  for (const pkg of packages.slice(1)) await run(`extracting ${pkg}`, "dpkg-deb", ["-x", debs.get(pkg)!, staging]);
  // Debian compresses modules (.ko.xz) on newer kernels; busybox insmod wants them plain.
  await run("uncompressing modules", "sh", ["-c", `find "$1" -name '*.ko.xz' -exec xz -d {} +`, "sh", staging]);
  // The headers' Makefile includes the -common tree by its absolute /usr/src path: point it here.
  const makefile = join(staging, "usr", "src", `linux-headers-${spec.release}`, "Makefile");
  const text = Deno.readTextFileSync(makefile);
  Deno.writeTextFileSync(makefile, text.replace(/^include \/usr\/src\//m, `include ${root}/usr/src/`));
  await Deno.remove(root, { recursive: true }).catch(() => {});
  Deno.renameSync(staging, root);
  for (const path of [prepared.vmlinuz, prepared.config, prepared.headers, join(prepared.modules, "kernel")]) {
    if (!exists(path)) throw new LabError(`the packages of ${spec.release} hold no ${path}`);
  }
  Deno.writeTextFileSync(join(root, STAMP), packages.join("\n") + "\n");
  return prepared;
}

/** The value of a `CONFIG_` option in the kernel's config ("y", "m", or undefined). */
export function configValue(kernel: PreparedKernel, option: string): string | undefined {
  const m = new RegExp(`^${option}=(.*)$`, "m").exec(Deno.readTextFileSync(kernel.config));
  return m?.[1];
}
