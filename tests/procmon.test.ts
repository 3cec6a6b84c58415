import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseOptions } from "../src/procmon/cli.ts";
import { placeOf, processName, toJson, toText } from "../src/procmon/format.ts";
import { kernelTest } from "./_kernel.ts";
import { Procmon, runToEnd } from "./_procmon.ts";
import { runChild, scriptCommand } from "./_runtime.ts";

/** Runs procmon to its end. */
function runProcmon(args: string[]) {
  const [cmd, argv] = scriptCommand("cli/procmon.ts", ...args);
  return runChild(cmd, argv);
}

describe("procmon options", () => {
  test("events, duration, pid and flags are parsed; unknown events and clashing styles are refused", () => {
    assert.deepEqual(parseOptions(["-e", "exec,exit", "-D", "2.5", "-S", "-q", "-x", "-d", "--json", "-p", "1"]), {
      events: ["exec", "exit"],
      durationMs: 2500,
      stats: true,
      quiet: true,
      extra: true,
      names: "strip-dir",
      lineBuffered: false,
      json: true,
      tree: false,
      enrich: true,
      pid: 1,
    });
    assert.deepEqual(parseOptions(["-c", "-l", "--cgroup", "/system.slice/"]), {
      stats: false,
      quiet: false,
      extra: false,
      names: "comm",
      lineBuffered: true,
      json: false,
      tree: false,
      enrich: true,
      cgroup: "/system.slice/",
    });
    assert.equal(parseOptions(["--help"]), "help");
    assert.throws(() => parseOptions(["-e", "spawn"]), /Unknown process event "spawn"/);
    assert.throws(() => parseOptions(["-D", "soon"]), /--duration/);
    assert.throws(() => parseOptions(["-c", "-s"]), /one name style/);
    assert.throws(() => parseOptions(["--cgroup", "docker"]), /--cgroup wants a path/);
    assert.throws(() => parseOptions(["--cgroup", "/x", "--no-enrich"]), /cannot go with --no-enrich/);
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
    }, { timeMs: 0, depth: 0, durationNs: 2_500_000n, process: { pid: 5, comm: "sh", cmdline: ["sh"], startNs: 7n } });
    assert.deepEqual(JSON.parse(line), {
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
      process: { pid: 5, comm: "sh", cmdline: ["sh"], startNs: "7" },
    });
  });

  const base = { cpu: 0, timestampNs: 0n, seq: 0 };
  const text = { colour: false, tree: false, extra: false, names: "cmdline" as const };

  test("a thread's fork names the process it belongs to; a process's fork its parent", () => {
    const thread = toText({ ...base, type: "fork", parentPid: 1, parentTgid: 1, childPid: 11, childTgid: 10 }, {
      timeMs: 0,
      depth: 0,
    }, text);
    assert.match(thread, / 11 +thread of 10 /);
    const child = toText({ ...base, type: "fork", parentPid: 1, parentTgid: 1, childPid: 12, childTgid: 12 }, {
      timeMs: 0,
      depth: 0,
    }, text);
    assert.match(child, / 12 +child of 1 /);
  });

  test("name styles: command line, [comm], stripped directory, short; <gone> without anything", () => {
    const p = { pid: 3, comm: "cc1", cmdline: ["/usr/lib/gcc/cc1", "-quiet", "x.c"] };
    assert.equal(processName(p, "cmdline"), "/usr/lib/gcc/cc1 -quiet x.c");
    assert.equal(processName(p, "comm"), "[cc1]");
    assert.equal(processName(p, "strip-dir"), "cc1 -quiet x.c");
    assert.equal(processName(p, "short"), "cc1");
    assert.equal(processName({ pid: 4, comm: "kworker/0:1", cmdline: [] }), "[kworker/0:1]");
    assert.equal(processName(undefined), "<gone>");
  });

  test("the Container/Unit column shows runtime:short-id, else the unit; -x the whole cgroup", () => {
    const id = "0123456789abcdef".repeat(4);
    const p = { pid: 1, cgroup: `/system.slice/docker-${id}.scope`, container: { runtime: "docker" as const, id } };
    assert.equal(placeOf(p, false), "docker:0123456789ab");
    assert.equal(placeOf({ pid: 1, cgroup: "/system.slice/ssh.service", unit: "ssh.service" }, false), "ssh.service");
    assert.equal(placeOf(p, true), `/system.slice/docker-${id}.scope`);
  });

  test("--help prints the usage and a bad option exits 2 with it", async () => {
    const help = await runProcmon(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: procmon/);
    for (const flag of ["-q", "-x", "-c", "-d", "-s", "-l", "--cgroup", "--tree", "--json", "Example:"]) {
      assert.ok(help.stdout.includes(flag), `--help mentions ${flag}`);
    }
    const bad = await runProcmon(["-e", "nope"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Unknown process event "nope"/);
  });
});

describe("procmon permissions", () => {
  kernelTest("on Deno, --allow-ffi alone is enough: /proc is read through libc, names and users appear", async () => {
    const deno = join(import.meta.dirname!, "..", "node_modules", ".bin", "deno");
    const procmon = await Procmon.start([], [deno, ["run", "--allow-ffi", "cli/procmon.ts", "--json", "-e", "exec"]]);
    const pid = await procmon.repeatUntil(
      () => runToEnd("sleep", ["0.3"]),
      (pid, out) => out.includes(`"pid":${pid},`),
    );
    const { code, signal, stdout, stderr } = await procmon.stop();
    assert.ok(code === 0 || signal === "SIGINT", `exit ${code} ${signal}: ${stderr}`);
    const exec = stdout.trim().split("\n").map((l) => JSON.parse(l)).find((e) => e.pid === pid);
    assert.equal(exec?.process?.cmdline?.at(-1), "0.3");
    assert.equal(exec?.process?.user, "root");
  }, 60_000);
  kernelTest(
    "on Deno, --allow-ffi alone is enough for ECS documents' group names (/etc/group read through libc)",
    async () => {
      const deno = join(import.meta.dirname!, "..", "node_modules", ".bin", "deno");
      const args = ["run", "--allow-ffi", "cli/procmon.ts", "--format", "ecs", "-e", "exec"];
      const procmon = await Procmon.start([], [deno, args]);
      const pid = await procmon.repeatUntil(
        () => runToEnd("sleep", ["0.3"]),
        (pid, out) => out.includes(`"pid":${pid},`),
      );
      const { code, signal, stdout, stderr } = await procmon.stop();
      assert.ok(code === 0 || signal === "SIGINT", `exit ${code} ${signal}: ${stderr}`);
      const doc = stdout.trim().split("\n").map((l) => JSON.parse(l)).find((d) => d.process?.pid === pid);
      assert.deepEqual(doc?.process?.group, { id: "0", name: "root" });
      assert.equal(doc?.process?.user?.name, "root");
    },
    60_000,
  );
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
  kernelTest("--json prints NDJSON with our own child's fork, exec and exit, and -S a summary line", async () => {
    const procmon = await Procmon.start(["--json", "-S"]);
    // Long enough to still be in /proc when procmon reads it at exec (enrichment is best-effort).
    const pid = await procmon.repeatUntil(
      () => runToEnd("sh", ["-c", "sleep 0.3; exit 5"]),
      (pid, out) => out.includes(`"pid":${pid},"tgid":${pid},"exitCode"`),
    );
    const { stdout } = await procmon.stop();
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
  }, 60_000);
});
