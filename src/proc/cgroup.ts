/**
 * Which container or service a process belongs to, from its cgroup: the path in the cgroup v2
 * hierarchy (`0::/...` in /proc/PID/cgroup), read by the naming conventions of the common runtimes.
 *
 * @module
 */

/** A container a process runs in, as its runtime names it in the cgroup path. */
export interface ContainerRef {
  /** `docker`, `containerd` (Kubernetes' CRI), `cri-o`, `podman` or `lxc`. */
  runtime: "docker" | "containerd" | "cri-o" | "podman" | "lxc";
  /** The container id (64 hex digits for all but lxc, whose id is the container name). */
  id: string;
}

/** What a cgroup path says about a process. */
export interface CgroupInfo {
  /** The cgroup v2 path, e.g. `/system.slice/docker-<id>.scope`. */
  cgroup: string;
  /** The container, when the path follows a known runtime's convention. */
  container?: ContainerRef;
  /** The innermost systemd unit (`ssh.service`, `session-3.scope`), when the path has one. */
  unit?: string;
}

const ID = "([0-9a-f]{64})";
const PATTERNS: [RegExp, ContainerRef["runtime"]][] = [
  [new RegExp(`(?:^|/)docker-${ID}\\.scope(?:/|$)`), "docker"],
  [new RegExp(`(?:^|/)docker/${ID}(?:/|$)`), "docker"],
  [new RegExp(`(?:^|/)cri-containerd-${ID}\\.scope(?:/|$)`), "containerd"],
  [new RegExp(`(?:^|/)crio-${ID}\\.scope(?:/|$)`), "cri-o"],
  [new RegExp(`(?:^|/)libpod-${ID}\\.scope(?:/|$)`), "podman"],
  // kubepods with the cgroupfs driver: /kubepods/<qos>/pod<uid>/<id>
  [new RegExp(`(?:^|/)kubepods(?:/[^/]+)?/pod[0-9a-f-]+/${ID}(?:/|$)`), "containerd"],
];

/**
 * Reads a cgroup path the way container runtimes and systemd name their cgroups.
 *
 * @example
 * ```ts
 * import { parseCgroup } from "@cnlink/connector/proc";
 * import assert from "node:assert/strict";
 *
 * const id = "a".repeat(64);
 * assert.deepEqual(parseCgroup(`/system.slice/docker-${id}.scope`), {
 *   cgroup: `/system.slice/docker-${id}.scope`,
 *   container: { runtime: "docker", id },
 *   unit: `docker-${id}.scope`,
 * });
 * assert.equal(parseCgroup("/system.slice/ssh.service").unit, "ssh.service");
 * ```
 */
export function parseCgroup(path: string): CgroupInfo {
  const info: CgroupInfo = { cgroup: path };
  for (const [re, runtime] of PATTERNS) {
    const m = re.exec(path);
    if (m) {
      info.container = { runtime, id: m[1] };
      break;
    }
  }
  const lxc = /(?:^|\/)lxc\.payload\.([^/]+)/.exec(path);
  if (!info.container && lxc) info.container = { runtime: "lxc", id: lxc[1] };
  const unit = path.split("/").findLast((part) => /\.(service|scope)$/.test(part));
  if (unit) info.unit = unit;
  return info;
}

/**
 * The cgroup v2 path in the text of /proc/PID/cgroup (the `0::` line), or, on a host with only the
 * v1 hierarchies, the path of the `name=systemd` one; undefined when neither is there.
 */
export function cgroupPathOf(procCgroup: string): string | undefined {
  let v1: string | undefined;
  for (const line of procCgroup.split("\n")) {
    if (line.startsWith("0::")) return line.slice(3);
    const m = /^\d+:name=systemd:(.*)$/.exec(line);
    if (m) v1 = m[1];
  }
  return v1;
}
