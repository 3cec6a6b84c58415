/**
 * How long each way of stopping a process monitor takes, from the call until the iteration has
 * ended and the socket is closed (the README's "Stopping" table).
 *
 *   deno run -A bench/stop.ts        bun bench/stop.ts        (Linux >= 6.6 or root)
 *
 * Each way is measured `ROUNDS` times on a monitor that waits for an event nothing sends (a filter
 * that matches nothing), after it has waited 100 ms; prints the median and the maximum in ms.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { ProcMonitor, watchProcesses } from "../proc.ts";

const ROUNDS = 20;
const options = { events: ["coredump"] as const, cgroup: "/nothing-matches-this/" };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Time from `stop()` until `done` settled. */
async function time(start: () => Promise<{ stop: () => unknown; done: Promise<unknown> }>): Promise<number> {
  const { stop, done } = await start();
  await sleep(100);
  const t = performance.now();
  await Promise.all([stop(), done]);
  return performance.now() - t;
}

const ways: Record<string, () => Promise<{ stop: () => unknown; done: Promise<unknown> }>> = {
  "break (for await)": async () => {
    // Time from an event in hand (the loop body runs) to the end of the loop that breaks on it.
    const monitor = await ProcMonitor.open({ events: ["exit"] });
    let go!: () => void;
    const signal = new Promise<void>((r) => (go = r));
    let inBody!: () => void;
    const reached = new Promise<void>((r) => (inBody = r));
    const done = (async () => {
      for await (const _ of monitor) {
        inBody();
        await signal;
        break;
      }
    })();
    await sleep(50);
    spawn("true", { stdio: "ignore" });
    await reached;
    return { stop: () => go(), done };
  },
  "close()": async () => {
    const monitor = await ProcMonitor.open(options);
    const done = (async () => {
      for await (const _ of monitor);
    })();
    return { stop: () => monitor.close(), done };
  },
  "signal (AbortController)": async () => {
    const ac = new AbortController();
    const monitor = await ProcMonitor.open({ ...options, signal: ac.signal });
    const done = (async () => {
      for await (const _ of monitor);
    })();
    return { stop: () => ac.abort(), done: done.then(() => monitor.close()) };
  },
  "await using (scope exit)": async () => {
    const ac = new AbortController();
    const done = (async () => {
      await using monitor = await ProcMonitor.open(options);
      await new Promise((r) => ac.signal.addEventListener("abort", r));
      void monitor;
    })();
    await sleep(200);
    return { stop: () => ac.abort(), done };
  },
  "return() (watchProcesses)": async () => {
    const it = watchProcesses(options)[Symbol.asyncIterator]();
    const pending = it.next();
    await sleep(200);
    return { stop: () => it.return!(), done: pending };
  },
};

const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? "bun" : "deno";
const results: Record<string, { medianMs: number; maxMs: number }> = {};
for (const [name, start] of Object.entries(ways)) {
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) times.push(await time(start));
  times.sort((a, b) => a - b);
  results[name] = { medianMs: +times[ROUNDS >> 1].toFixed(2), maxMs: +times[ROUNDS - 1].toFixed(2) };
}
console.log(JSON.stringify({ runtime, rounds: ROUNDS, results }));
