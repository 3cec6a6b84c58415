/**
 * Hot-plug: noticing devices plugged into and pulled out of a bus without the caller rescanning.
 *
 * Two ways, both verified in the kernel lab on Debian's 6.1 and 6.12:
 * - {@linkcode watchSlaves}: this client searches the bus over netlink every `intervalMs` and
 *   yields what changed. Any user may run it (searches need no privilege). After a search that
 *   attached a new slave it releases the master's mutex, which the kernel's netlink search path
 *   leaves held in 6.1 and 6.12 (`w1_attach_slave_device()` drops and retakes a lock that path never
 *   took; until it is released, slave add/remove waits and removing the master hangs): it asks the
 *   kernel to attach a slave that is already attached, which takes and frees the lock and fails
 *   harmlessly with `EINVAL` (`W1Bus.addSlave` wakes the master thread when the kernel sits on it).
 *   A slave missing from a search is detached at once with `W1_CMD_SLAVE_REMOVE` (the kernel alone
 *   would wait for `slave_ttl` searches, 10 by default).
 * - {@linkcode setKernelSearch}: the kernel's own periodic search (`w1_master_search` in sysfs,
 *   root only), every `timeout` seconds of the `wire` module (10 by default) — the kernel's path
 *   holds the lock properly. Slaves come and go as `W1Bus.events()` (`slave-added`,
 *   `slave-removed`); a pulled device goes after `slave_ttl` searches.
 *
 * @module
 */
import { writeFileSync } from "node:fs";
import type { W1Id } from "../codec/w1.ts";
import type { W1Bus } from "./bus.ts";
import { W1Error } from "./bus.ts";
import { checkDuration, checkType } from "../args.ts";
import { optionsOf, sleep } from "./util.ts";

/** A change {@linkcode watchSlaves} saw. */
export interface W1SlaveChange {
  /** `slave-added`: found and attached by a search; `slave-removed`: missing from a search, detached. */
  type: "slave-added" | "slave-removed";
  /** The slave. */
  id: W1Id;
  /** The master. */
  master: number;
}

/** Options of {@linkcode watchSlaves}. */
export interface WatchSlavesOptions {
  /** Time between the end of one search and the start of the next; default 1000 ms. */
  intervalMs?: number;
  /** Detach a slave as soon as a search misses it (default true); false leaves it to the kernel's `slave_ttl`. */
  removeMissing?: boolean;
  /** Report the slaves attached when the watch starts as `slave-added` first; default false. */
  initial?: boolean;
  /** Timeout of each request; default 5000 ms. */
  timeoutMs?: number;
  /** Ends the iteration quietly. */
  signal?: AbortSignal;
}

/**
 * Watches a bus for devices plugged in and pulled out by searching it every `intervalMs` over
 * netlink: yields a `slave-added` for each device a search attaches and a `slave-removed` for each
 * attached one a search misses (detached at once unless `removeMissing: false`). A change is
 * reported within `intervalMs` plus one search, which for a device plugged in includes the kernel's
 * attach (its `request_module()` and the family driver's probe); README, "1-Wire", "Hot-plug" gives
 * what the kernel lab measured. Stop it with `signal`, or by leaving the `for await` loop.
 *
 * The kernel multicasts its own `slave-added` / `slave-removed` events for the same attaches and
 * detaches; `W1Bus.events()` sees them when it may join group 3 (root, or any user on Linux >= 6.6).
 *
 * @throws {W1Error} a search failed other than by an empty bus (`NO_PRESENCE` is an empty bus)
 *
 * @example
 * ```ts ignore
 * import { W1Bus, watchSlaves } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * const [master] = await bus.listMasters();
 * for await (const change of watchSlaves(bus, master, { intervalMs: 500 })) {
 *   console.log(change.type, change.id.name);
 * }
 * ```
 */
export async function* watchSlaves(
  bus: W1Bus,
  master: number,
  options?: WatchSlavesOptions,
): AsyncGenerator<W1SlaveChange, void, undefined> {
  const { request } = optionsOf("watchSlaves options", options, ["intervalMs", "removeMissing", "initial"]);
  const intervalMs = checkDuration(options?.intervalMs, "intervalMs") ?? 1000;
  checkType(options?.removeMissing, "removeMissing", "boolean");
  checkType(options?.initial, "initial", "boolean");
  const signal = options?.signal;
  const removeMissing = options?.removeMissing ?? true;
  const attached = new Map<string, W1Id>();
  try {
    for (const id of await bus.listSlaves(master, request)) attached.set(id.name, id);
    if (options?.initial) { for (const id of attached.values()) yield { type: "slave-added", id, master }; }
    while (!signal?.aborted) {
      const found = (await search(bus, master, request)).filter((id) => id.crcValid);
      const names = new Set(found.map((id) => id.name));
      const added = found.filter((id) => !attached.has(id.name));
      const missing = [...attached.values()].filter((id) => !names.has(id.name));
      if (added.length) await releaseMasterLock(bus, master, added[0], request);
      for (const id of added) attached.set(id.name, id);
      for (const id of missing) {
        if (removeMissing) {
          await bus.removeSlave(master, id, request).catch((err) => {
            // EINVAL: the kernel detached it already (its slave_ttl ran out in this search).
            if (!(err instanceof W1Error && err.code === "EINVAL")) throw err;
          });
        } else if ((await bus.listSlaves(master, request)).some((x) => x.name === id.name)) {
          continue; // the kernel keeps it until its slave_ttl runs out
        }
        attached.delete(id.name);
      }
      for (const id of added) yield { type: "slave-added", id, master };
      for (const id of missing) if (!attached.has(id.name)) yield { type: "slave-removed", id, master };
      await sleep(intervalMs, signal);
    }
  } catch (err) {
    if (signal?.aborted) return;
    throw err;
  }
}

async function search(bus: W1Bus, master: number, request: { timeoutMs?: number; signal?: AbortSignal }) {
  try {
    return await bus.search(master, request);
  } catch (err) {
    if (err instanceof W1Error && err.code === "NO_PRESENCE") return [];
    throw err;
  }
}

/**
 * Takes and frees the master's mutex by attaching a slave that is attached already (EINVAL): after
 * a netlink search attached a new slave, the kernel leaves that mutex held (6.1, 6.12).
 */
async function releaseMasterLock(
  bus: W1Bus,
  master: number,
  attachedId: W1Id,
  request: { timeoutMs?: number; signal?: AbortSignal },
): Promise<void> {
  await bus.addSlave(master, attachedId, request).catch((err) => {
    if (!(err instanceof W1Error && err.code === "EINVAL")) throw err;
  });
}

/**
 * Turns the kernel's own periodic search of a bus master on or off through sysfs
 * (`/sys/bus/w1/devices/w1_bus_master<master>/w1_master_search`, root only): `searches` more
 * searches, `-1` for ever, `0` to stop. The kernel then searches every `timeout` seconds of the
 * `wire` module (10 by default) and multicasts `slave-added` / `slave-removed` (`W1Bus.events()`);
 * a pulled device is detached after `slave_ttl` searches without it (10 by default).
 *
 * @throws {RangeError} not an integer >= -1
 * @throws {Error} the sysfs file cannot be written (`EACCES` without root, `ENOENT` no such master)
 *
 * @example Search for ever, and watch the kernel's events
 * ```ts ignore
 * import { setKernelSearch, W1Bus } from "@cnlink/connector/w1";
 *
 * await using bus = await W1Bus.open();
 * setKernelSearch(1, -1);
 * for await (const e of bus.events()) console.log(e.type);
 * ```
 */
export function setKernelSearch(master: number, searches: number, sysfs = "/sys/bus/w1/devices"): void {
  if (!Number.isInteger(master) || master < 0) throw new RangeError(`a bus master id is a u32, got ${master}`);
  if (!Number.isInteger(searches) || searches < -1) {
    throw new RangeError(`searches is a count, or -1 for ever, got ${searches}`);
  }
  writeFileSync(`${sysfs}/w1_bus_master${master}/w1_master_search`, `${searches}\n`);
}
