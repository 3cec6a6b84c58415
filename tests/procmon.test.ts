import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { parseOptions } from "../src/procmon/cli.ts";
import { toJson } from "../src/procmon/format.ts";
import { kernelTest, sleep } from "./_kernel.ts";
import { runChild, scriptCommand } from "./_runtime.ts";

/** Runs procmon to its end; `during` runs meanwhile and returns a pid of interest. */
async function runProcmon(args: string[], during?: () => Promise<number>) {
  const [cmd, argv] = scriptCommand("cli/procmon.ts", ...args);
  const result = runChild(cmd, argv);
  const pid = during ? await during() : 0;
  return { ...await result, pid };
}

describe("procmon options", () => {
  test("events, duration, pid and flags are parsed; unknown events are refused", () => {
    assert.deepEqual(parseOptions(["-e", "exec,exit", "-D", "2.5", "-S", "--json", "-p", "1"]), {
      events: ["exec", "exit"],
      durationMs: 2500,
      stats: true,
      json: true,
      tree: false,
      enrich: true,
      pid: 1,
    });
    assert.equal(parseOptions(["--help"]), "help");
    assert.throws(() => parseOptions(["-e", "spawn"]), /Unknown process event "spawn"/);
    assert.throws(() => parseOptions(["-D", "soon"]), /--duration/);
    assert.throws(() => parseOptions(["--colour"]), TypeError);
  });

  test("JSON output has stable names, decimal-string timestamps and a decoded wait status", () => {
    const line = toJson({
      type: "exit",
      cpu: 1,
      timestampNs: 123456789012345678n,
      seq: 9,
      pid: 5,
      tgid: 5,
      exitCode: 768,
      exitSignal: 17,
      parentPid: 1,
      parentTgid: 1,
    }, { timeMs: 0, depth: 0, durationNs: 2_500_000n, process: { comm: "sh", cmdline: ["sh"] } });
    assert.deepEqual(line, {
      type: "exit",
      time: "1970-01-01T00:00:00.000Z",
      cpu: 1,
      timestampNs: "123456789012345678",
      seq: 9,
      pid: 5,
      tgid: 5,
      exitCode: 768,
      exitSignal: 17,
      parentPid: 1,
      parentTgid: 1,
      status: { exited: true, code: 3 },
      durationMs: 2.5,
      process: { comm: "sh", cmdline: ["sh"] },
    });
  });

  test("--help prints the usage and a bad option exits 2 with it", async () => {
    const help = await runProcmon(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: procmon/);
    const bad = await runProcmon(["-e", "nope"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Unknown process event "nope"/);
  });
});

describe("procmon permissions", () => {
  test("on Deno without --allow-all, enrichment fails with a clear error instead of empty columns", async () => {
    const deno = join(import.meta.dirname!, "..", "node_modules", ".bin", "deno");
    const { code, stderr } = await runChild(deno, [
      "run",
      "--allow-ffi",
      "--allow-read",
      "cli/procmon.ts",
      "-D",
      "1",
    ]);
    assert.equal(code, 1);
    assert.match(stderr, /needs Deno's --allow-all \(-A\)/);
  });
});

describe("Deno's FFI permission", () => {
  for (const flag of ["--allow-ffi=libc.so.6", "--allow-ffi=/lib/x86_64-linux-gnu/libc.so.6", "--allow-env"]) {
    test(`${flag} gives one sentence that says to use the plain --allow-ffi`, async () => {
      const deno = join(import.meta.dirname!, "..", "node_modules", ".bin", "deno");
      const { code, stderr } = await runChild(deno, [
        "run",
        "--allow-read",
        flag,
        "cli/procmon.ts",
        "--no-enrich",
        "-D",
        "1",
      ]);
      assert.equal(code, 1);
      assert.match(stderr, /^procmon: cnlink needs Deno's plain --allow-ffi flag \(or -A\); a path-scoped/);
      assert.doesNotMatch(stderr, /Could not open library: Could not open library/);
    });
  }
});

describe("procmon on the real kernel", () => {
  kernelTest("--json -D 2 prints NDJSON that contains our own child's fork, exec and exit", async () => {
    const { code, stdout, pid } = await runProcmon(["--json", "-D", "2", "-S"], async () => {
      await sleep(1000);
      // Long enough to still be in /proc when procmon reads it at exec (enrichment is best-effort).
      const child = spawn("sh", ["-c", "sleep 0.3; exit 5"], { stdio: "ignore" });
      await once(child, "exit");
      return child.pid!;
    });
    assert.equal(code, 0);
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l));
    const mine = lines.filter((e) => e.pid === pid || e.childPid === pid);
    assert.deepEqual(mine.map((e) => e.type).sort(), ["exec", "exit", "fork"]);
    const exit = mine.find((e) => e.type === "exit");
    assert.deepEqual(exit.status, { exited: true, code: 5 });
    assert.equal(typeof exit.durationMs, "number");
    // Deno's spawn passes the resolved path as argv[0].
    assert.match(exit.process.cmdline[0], /(^|\/)sh$/);
    assert.deepEqual(exit.process.cmdline.slice(1), ["-c", "sleep 0.3; exit 5"]);
    assert.equal(lines.at(-1).type, "summary");
    assert.ok(lines.at(-1).events.exit >= 1);
  }, 30_000);
});
