/**
 * Host side of the lab: running commands, installing what the lab needs from Debian, the cache.
 *
 * @module
 */
import { join } from "node:path";

/** A step of the lab failed; the message says what and why. It is never turned into a skip. */
export class LabError extends Error {
  override name = "LabError";
}

/** What a finished command printed. */
export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; throws a LabError naming `what` when it fails (unless `allowFailure`). */
export async function run(
  what: string,
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; allowFailure?: boolean } = {},
): Promise<Output> {
  let child;
  try {
    child = await new Deno.Command(cmd, { args, cwd: options.cwd, env: options.env, stdin: "null" }).output();
  } catch (cause) {
    throw new LabError(`${what}: cannot run ${cmd}: ${(cause as Error).message}`, { cause });
  }
  const out = {
    code: child.code,
    stdout: new TextDecoder().decode(child.stdout),
    stderr: new TextDecoder().decode(child.stderr),
  };
  if (out.code !== 0 && !options.allowFailure) {
    const tail = (out.stderr.trim() || out.stdout.trim()).split("\n").slice(-15).join("\n");
    throw new LabError(`${what} failed (${cmd} ${args.join(" ")} exited ${out.code}):\n${tail}`);
  }
  return out;
}

/** Whether `cmd` is on PATH. */
export async function have(cmd: string): Promise<boolean> {
  return (await run("which", "sh", ["-c", `command -v ${cmd}`], { allowFailure: true })).code === 0;
}

/** Where downloads, extracted kernels and builds are kept between runs (outside the repository). */
export function cacheDir(): string {
  const base = Deno.env.get("CNLINK_LAB_CACHE") ??
    join(Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/root", ".cache"), "cnlink-lab");
  Deno.mkdirSync(base, { recursive: true });
  return base;
}

/** Debian packages the lab uses on the host (busybox-static: the guest has no libraries for busybox). */
const HOST_PACKAGES = [
  "qemu-system-x86",
  "busybox-static",
  "kmod",
  "make",
  "gcc",
  "libc6-dev",
  "libelf1",
  "pahole",
  "xz-utils",
  "util-linux",
];

let aptUpdated = false;
const APT_ENV = { DEBIAN_FRONTEND: "noninteractive" };

/**
 * Refreshes the package lists, once per run; false when they were refreshed already. Lists a
 * machine was built with may predate the pinned kernels (Debian replaces its kernel packages).
 */
export async function aptUpdateOnce(): Promise<boolean> {
  if (aptUpdated) return false;
  aptUpdated = true;
  await run("apt-get update", "apt-get", ["update", "-qq"], { env: APT_ENV });
  return true;
}

/** `apt-get` with the package lists refreshed once if the first attempt fails. */
export async function apt(what: string, args: string[], cwd?: string): Promise<Output> {
  // apt-get download drops to the _apt user unless told otherwise; the cache belongs to us.
  const full = ["-o", "APT::Sandbox::User=root", ...args];
  const first = await run(what, "apt-get", full, { cwd, env: APT_ENV, allowFailure: true });
  if (first.code === 0) return first;
  await aptUpdateOnce();
  return await run(what, "apt-get", full, { cwd, env: APT_ENV });
}

/** Installs the host packages the lab needs that are missing. */
export async function ensureHostPackages(log: (line: string) => void): Promise<void> {
  const status = await run("dpkg-query", "dpkg-query", ["-W", "-f", "${Package} ${Status}\n", ...HOST_PACKAGES], {
    allowFailure: true,
  });
  const installed = new Set(
    status.stdout.split("\n").filter((l) => l.endsWith(" installed")).map((l) => l.split(" ")[0]),
  );
  const missing = HOST_PACKAGES.filter((p) => !installed.has(p));
  if (missing.length === 0) return;
  if (Deno.uid() !== 0) {
    throw new LabError(`the lab needs these Debian packages, and installing them needs root: ${missing.join(" ")}`);
  }
  log(`installing ${missing.join(" ")} from Debian`);
  await apt("installing the lab's host packages", ["install", "-y", "-qq", "--no-install-recommends", ...missing]);
}

/** Size and modification time of a file, as a cache key part. */
export function fileStamp(path: string): string {
  const s = Deno.statSync(path);
  return `${path}:${s.size}:${s.mtime?.getTime() ?? 0}`;
}

/** A short hex digest of some strings. */
export async function digest(parts: readonly (string | Uint8Array)[]): Promise<string> {
  const chunks = parts.map((p) => (typeof p === "string" ? new TextEncoder().encode(p + "\0") : p));
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return [...hash.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
