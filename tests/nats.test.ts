/**
 * Process events in ECS and OpenTelemetry, and shipped to a real NATS JetStream (Debian's
 * nats-server, started here on 127.0.0.1 with random ports and temp stores): two agents with
 * exactly-once delivery, a server killed for 5 s mid-storm, a three-node cluster losing a node.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import {
  ECS_VERSION,
  eventId,
  type ExecEvent,
  exitCodeOf,
  type ProcMonitorItem,
  toEcs,
  toOtelAttributes,
  toOtelLogRecord,
} from "../proc.ts";
import { JetStreamShipper, subjectToken } from "../nats.ts";
import { parseOptions } from "../src/procmon/cli.ts";
import { kernelTest } from "./_kernel.ts";
import { freePort, NatsCluster, NatsServer } from "./_nats.ts";
import { Procmon } from "./_procmon.ts";
import { sleep } from "./_wait.ts";
import { runChild, scriptCommand } from "./_runtime.ts";

// ---------------------------------------------------------------------------------------------
// The standards' definitions, as looked up in their own sources:
// ECS 8.11 (elastic/ecs schemas/*.yml: process, event, user, group, container, host, base, ecs)
// and the OpenTelemetry semantic conventions 1.37.0 (model/process/registry.yaml and the
// container, host, thread and log registries).

/** ECS field → its ECS type; `[]` marks fields ECS normalizes to arrays. */
const ECS_FIELDS: Record<string, string> = {
  "@timestamp": "date",
  "ecs.version": "keyword",
  "event.kind": "keyword",
  "event.category": "keyword[]",
  "event.type": "keyword[]",
  "event.action": "keyword",
  "event.id": "keyword",
  "host.name": "keyword",
  "process.pid": "long",
  "process.thread.id": "long",
  "process.parent.pid": "long",
  "process.executable": "keyword",
  "process.name": "keyword",
  "process.title": "keyword",
  "process.command_line": "wildcard",
  "process.args": "keyword[]",
  "process.args_count": "long",
  "process.start": "date",
  "process.end": "date",
  "process.exit_code": "long",
  "process.user.id": "keyword",
  "process.user.name": "keyword",
  "process.real_user.id": "keyword",
  "process.group.id": "keyword",
  "process.group.name": "keyword",
  "process.real_group.id": "keyword",
  "container.id": "keyword",
  "container.runtime": "keyword",
  "labels.systemd_unit": "keyword",
  "labels.lost_reason": "keyword",
  "labels.lost_count": "keyword",
};
/** event.kind's allowed values, and event.type's expected values for event.category "process". */
const ECS_KINDS = ["alert", "event", "metric", "state", "pipeline_error", "signal"];
const ECS_PROCESS_TYPES = ["access", "change", "end", "info", "start"];

/** OpenTelemetry attribute → its type in the registry. */
const OTEL_ATTRIBUTES: Record<string, string> = {
  "process.pid": "int",
  "process.parent_pid": "int",
  "process.executable.name": "string",
  "process.executable.path": "string",
  "process.command_line": "string",
  "process.command_args": "string[]",
  "process.args_count": "int",
  "process.creation.time": "iso8601",
  "process.exit.code": "int",
  "process.exit.time": "iso8601",
  "process.user.id": "int",
  "process.user.name": "string",
  "process.real_user.id": "int",
  "thread.id": "int",
  "container.id": "string",
  "host.name": "string",
  "log.record.uid": "string",
};

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** Flattens a nested document to dotted leaves (arrays are leaves). */
function flatten(doc: Record<string, unknown>, prefix = ""): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) Object.assign(out, flatten(v as never, key));
    else out[key] = v;
  }
  return out;
}

/** Checks a value against an ECS or OpenTelemetry type; returns a complaint or undefined. */
function typeProblem(field: string, type: string, value: unknown): string | undefined {
  const ok = (() => {
    switch (type) {
      case "long":
      case "int":
        return Number.isSafeInteger(value);
      case "keyword":
      case "wildcard":
      case "string":
        return typeof value === "string";
      case "date":
      case "iso8601":
        return typeof value === "string" && ISO.test(value) && !Number.isNaN(Date.parse(value));
      case "keyword[]":
      case "string[]":
        return Array.isArray(value) && value.every((v) => typeof v === "string");
    }
    return false;
  })();
  return ok ? undefined : `${field} should be ${type}, is ${JSON.stringify(value)}`;
}

function assertEcs(doc: Record<string, unknown>): Record<string, unknown> {
  const flat = flatten(doc);
  for (const [field, value] of Object.entries(flat)) {
    const type = ECS_FIELDS[field];
    assert.ok(type, `${field} is not an ECS field this mapper was checked for`);
    const problem = typeProblem(field, type, value);
    assert.equal(problem, undefined, problem ?? "");
  }
  assert.equal(flat["ecs.version"], ECS_VERSION);
  assert.ok(ECS_KINDS.includes(flat["event.kind"] as string));
  if (flat["event.category"]) {
    assert.deepEqual(flat["event.category"], ["process"]);
    for (const t of flat["event.type"] as string[]) assert.ok(ECS_PROCESS_TYPES.includes(t), t);
  }
  return flat;
}

function assertOtel(attrs: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(attrs)) {
    const type = OTEL_ATTRIBUTES[key];
    assert.ok(type, `${key} is not an attribute this mapper was checked for`);
    const problem = typeProblem(key, type, value);
    assert.equal(problem, undefined, problem ?? "");
  }
}

const CTX = { host: "web-1", toEpochMs: (ns: bigint) => 1_700_000_000_000 + Number(ns / 1_000_000n), nowMs: 5 };
const base = { cpu: 1, seq: 7, timestampNs: 2_000_000_000n };
const make = {
  pid: 4242,
  ppid: 1,
  comm: "make",
  cmdline: ["make", "-j2", "all"],
  exe: "/usr/bin/make",
  uid: 1000,
  user: "alice",
  gid: 0,
  startNs: 1_000_000_000n,
  cgroup: "/system.slice/docker-" + "ab".repeat(32) + ".scope",
  container: { runtime: "docker" as const, id: "ab".repeat(32) },
  unit: "docker-" + "ab".repeat(32) + ".scope",
};
const EVENTS: ProcMonitorItem[] = [
  { ...base, type: "fork", parentPid: 1, parentTgid: 1, childPid: 4242, childTgid: 4242, process: make },
  { ...base, type: "fork", parentPid: 1, parentTgid: 1, childPid: 4243, childTgid: 4242, process: make },
  { ...base, type: "exec", pid: 4242, tgid: 4242, process: make },
  { ...base, type: "uid", pid: 4242, tgid: 4242, ruid: 1000, euid: 0, process: make },
  { ...base, type: "gid", pid: 4242, tgid: 4242, rgid: 0, egid: 0, process: make },
  { ...base, type: "sid", pid: 4242, tgid: 4242, process: make },
  { ...base, type: "ptrace", pid: 4242, tgid: 4242, tracerPid: 9, tracerTgid: 9, process: make },
  { ...base, type: "comm", pid: 4242, tgid: 4242, comm: "worker", commBytes: new Uint8Array(), process: make },
  { ...base, type: "coredump", pid: 4242, tgid: 4242, parentPid: 1, parentTgid: 1, process: make },
  { ...base, type: "exit", pid: 4243, tgid: 4242, exitCode: 0, exitSignal: -1, parentPid: 0, parentTgid: 0 },
  { ...base, type: "exit", pid: 4242, tgid: 4242, exitCode: 3 << 8, exitSignal: 17, parentPid: 1, parentTgid: 1 },
  { ...base, type: "exit", pid: 4242, tgid: 4242, exitCode: 9, exitSignal: 17, parentPid: 1, parentTgid: 1 },
  { ...base, type: "exec", pid: 77, tgid: 77 },
  { ...base, type: "unknown", what: 0x1234, raw: new Uint8Array(40) },
  { type: "lost", reason: "seq-gap", cpu: 1, count: 12 },
];

describe("ECS and OpenTelemetry documents", () => {
  test("every ECS field is one the ECS definitions have, with their type, for every event type", () => {
    for (const e of EVENTS) assertEcs(toEcs(e, { ...CTX, id: eventId("web-1", e, 1) }) as Record<string, unknown>);
  });

  test("ECS: ids, parents, users, times, exit codes and categories carry the event's meaning", () => {
    const [fork, threadFork, exec, uid, , , , comm, , threadExit, exit3, killed, bare] = EVENTS.map((e) =>
      flatten(toEcs(e, { ...CTX, id: "x" }) as Record<string, unknown>)
    );
    assert.equal(fork["process.pid"], 4242);
    assert.equal(fork["process.parent.pid"], 1);
    assert.deepEqual(fork["event.type"], ["start"]);
    assert.equal(fork["event.action"], "fork");
    assert.equal(threadFork["process.pid"], 4242);
    assert.equal(threadFork["process.thread.id"], 4243);
    assert.equal(threadFork["event.action"], "thread-start");
    assert.equal(exec["process.executable"], "/usr/bin/make");
    assert.equal(exec["process.name"], "make");
    assert.deepEqual(exec["process.args"], ["make", "-j2", "all"]);
    assert.equal(exec["process.args_count"], 3);
    assert.equal(exec["process.command_line"], "make -j2 all");
    assert.equal(exec["process.user.id"], "1000");
    assert.equal(exec["process.user.name"], "alice");
    assert.equal(exec["process.group.id"], "0");
    assert.equal(exec["process.group.name"], "root");
    assert.equal(exec["container.id"], "ab".repeat(32));
    assert.equal(exec["host.name"], "web-1");
    assert.equal(exec["event.id"], "x");
    assert.equal(exec["@timestamp"], new Date(1_700_000_002_000).toISOString());
    assert.equal(exec["process.start"], new Date(1_700_000_001_000).toISOString());
    assert.equal(exec["process.exit_code"], undefined, "only a termination has an exit code");
    assert.equal(exec["process.end"], undefined);
    // A uid event: the effective user is the new euid (its name unknown here), the real one stays.
    assert.equal(uid["process.user.id"], "0");
    assert.equal(uid["process.user.name"], undefined);
    assert.equal(uid["process.real_user.id"], "1000");
    assert.deepEqual(uid["event.type"], ["change"]);
    assert.equal(comm["process.title"], "worker");
    assert.equal(threadExit["event.action"], "thread-end");
    assert.equal(threadExit["process.exit_code"], undefined, "a thread's end is not the process's");
    assert.equal(exit3["process.exit_code"], 3);
    assert.equal(exit3["process.end"], exit3["@timestamp"]);
    assert.deepEqual(exit3["event.type"], ["end"]);
    assert.equal(killed["process.exit_code"], 137);
    assert.equal(bare["process.pid"], 77);
    assert.equal(bare["process.executable"], undefined, "nothing is made up when /proc was not read");
    const lost = flatten(toEcs(EVENTS.at(-1)!, CTX) as Record<string, unknown>);
    assert.equal(lost["event.kind"], "pipeline_error");
    assert.equal(lost["labels.lost_count"], "12");
    assert.equal(lost["@timestamp"], new Date(5).toISOString());
    const noArgs = flatten(toEcs(EVENTS[2], CTX, { commandLine: false }) as Record<string, unknown>);
    assert.equal(noArgs["process.args"], undefined);
    assert.equal(noArgs["process.command_line"], undefined);
    assert.equal(exitCodeOf(0), 0);
    assert.equal(exitCodeOf(15), 143);
  });

  test("every OpenTelemetry attribute is one the registry has, with its type; command lines are opt-in", () => {
    for (const mode of ["none", "args", "args+line"] as const) {
      for (const e of EVENTS) assertOtel(toOtelAttributes(e, { ...CTX, id: "i" }, { commandLine: mode }));
    }
    const exec = toOtelAttributes(EVENTS[2], CTX);
    assert.equal(exec["process.pid"], 4242);
    assert.equal(exec["process.parent_pid"], 1);
    assert.equal(exec["process.executable.name"], "make");
    assert.equal(exec["process.executable.path"], "/usr/bin/make");
    assert.equal(exec["process.user.id"], 1000);
    assert.equal(exec["process.user.name"], "alice");
    assert.equal(exec["container.id"], "ab".repeat(32));
    assert.equal(exec["host.name"], "web-1");
    assert.equal(exec["process.creation.time"], new Date(1_700_000_001_000).toISOString());
    assert.equal(exec["process.command_args"], undefined, "not collected by default");
    assert.equal(exec["process.command_line"], undefined);
    const args = toOtelAttributes(EVENTS[2], CTX, { commandLine: "args" });
    assert.deepEqual(args["process.command_args"], ["make", "-j2", "all"]);
    assert.equal(args["process.args_count"], 3);
    assert.equal(args["process.command_line"], undefined, "not assembled unless asked");
    assert.equal(
      toOtelAttributes(EVENTS[2], CTX, { commandLine: "args+line" })["process.command_line"],
      "make -j2 all",
    );
    const exit = toOtelAttributes(EVENTS[10], CTX);
    assert.equal(exit["process.exit.code"], 3);
    assert.equal(exit["process.exit.time"], new Date(1_700_000_002_000).toISOString());
    assert.equal(toOtelAttributes(EVENTS[11], CTX)["process.exit.code"], 137);
    assert.equal(toOtelAttributes(EVENTS[9], CTX)["process.exit.code"], undefined);
    assert.equal(toOtelAttributes(EVENTS[1], CTX)["thread.id"], 4243);
    assert.equal(toOtelAttributes(EVENTS[3], CTX)["process.user.id"], 0, "the effective uid");
    assert.equal(toOtelAttributes(EVENTS[3], CTX)["process.real_user.id"], 1000);
  });

  test("dates are exactly Date#toISOString's (the mappers format them by arithmetic)", () => {
    const exit = EVENTS[10];
    const at = (ms: number) => flatten(toEcs(exit, { host: "h", toEpochMs: () => ms }) as Record<string, unknown>);
    const edges = [0, 951_782_400_000, 951_868_799_999, 1_709_164_800_000, 4_107_542_399_999, 253_402_300_799_999];
    const random = Array.from({ length: 2000 }, () => Math.random() * 253_402_300_799_999);
    for (const ms of [...edges, ...random]) {
      assert.equal(at(ms)["@timestamp"], new Date(ms).toISOString());
      assert.equal(at(ms)["process.end"], new Date(ms).toISOString());
    }
  });

  test("the OTLP/JSON log record encodes ints as decimal strings, arrays as arrayValue, time in ns", () => {
    const r = toOtelLogRecord(EVENTS[2], CTX, { commandLine: "args" });
    assert.equal(r.timeUnixNano, "1700000002000000000");
    assert.equal(r.eventName, "procmon.exec");
    assert.equal(r.severityText, "INFO");
    const attr = (k: string) => r.attributes.find((a) => a.key === k)?.value;
    assert.deepEqual(attr("process.pid"), { intValue: "4242" });
    assert.deepEqual(attr("process.executable.path"), { stringValue: "/usr/bin/make" });
    assert.deepEqual(attr("process.command_args"), {
      arrayValue: { values: [{ stringValue: "make" }, { stringValue: "-j2" }, { stringValue: "all" }] },
    });
    assert.equal(toOtelLogRecord(EVENTS.at(-1)!, CTX).severityText, "WARN");
  });

  test("message ids are the event's identity; subjects take a host name safely; bad options are refused", () => {
    assert.equal(eventId("h", EVENTS[2]), "h:1:2000000000:7");
    assert.equal(eventId("h", EVENTS[2]), eventId("h", { ...EVENTS[2] }), "the same event, the same id");
    assert.notEqual(eventId("h", EVENTS[2]), eventId("h", { ...(EVENTS[2] as ExecEvent), seq: 8 }));
    assert.equal(subjectToken("db-1.prod.example"), "db-1_prod_example");
    assert.throws(() => subjectToken(""), /empty/);
    assert.throws(() => JetStreamShipper.open({ servers: "http://x:1" }), /not a NATS server URL/);
    assert.throws(() => JetStreamShipper.open({ servers: "nats://x:1", maxBuffered: 0 }), /maxBuffered/);
    assert.throws(() => JetStreamShipper.open({ servers: "nats://x:1", stream: "a.b" }), /stream name/);
    assert.throws(() => parseOptions(["--format", "xml"]), /--format wants/);
    assert.throws(() => parseOptions(["--json", "--format", "ecs"]), /--json is --format ndjson/);
    assert.throws(() => parseOptions(["--host", "x"]), /option of --nats/);
    assert.throws(() => parseOptions(["--nats", "localhost"]), /--nats wants/);
    assert.throws(() => parseOptions(["--nats", "nats://h:1", "--spool-max", "5"]), /needs --spool/);
    assert.throws(() => parseOptions(["--nats", "nats://h:1", "--replicas", "0"]), /--replicas/);
    assert.throws(() => parseOptions(["--command-line", "all"]), /--command-line/);
    const o = parseOptions(["--nats", "nats://a:1,nats://b:2", "--host", "w", "--spool", "/s", "--spool-max", "1"]);
    assert.ok(o !== "help");
    assert.deepEqual(o.nats, {
      servers: ["nats://a:1", "nats://b:2"],
      host: "w",
      spoolDir: "/s",
      spoolMaxBytes: 1 << 20,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Against the real engine.

interface Stored {
  subject: string;
  id: string;
  doc: Record<string, unknown>;
}

/**
 * Every message of `stream` on `filter`, from any of `servers`; tried again for up to 60 s while the
 * stream has no leader (a cluster elects a new one after losing it; on a loaded 2-core host the
 * consumer's creation still timed out 30 s after the leader was killed, once in a 5-run series).
 */
async function readStream(servers: string[], stream: string, filter: string): Promise<Stored[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await readStreamOnce(servers, stream, filter);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

async function readStreamOnce(servers: string[], stream: string, filter: string): Promise<Stored[]> {
  const nc = await connect({ servers });
  try {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream, { subjects_filter: filter });
    const total = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    const out: Stored[] = [];
    if (total === 0) return out;
    // A pull consumer with one filter_subject (Debian's 2.9 server predates filter_subjects).
    const name = `read_${Math.random().toString(36).slice(2)}`;
    await jsm.consumers.add(stream, {
      name,
      filter_subject: filter,
      deliver_policy: DeliverPolicy.All,
      ack_policy: AckPolicy.None,
      inactive_threshold: 30_000_000_000,
    });
    const consumer = await js.consumers.get(stream, name);
    const messages = await consumer.consume();
    for await (const m of messages) {
      out.push({ subject: m.subject, id: m.headers?.get("Nats-Msg-Id") ?? "", doc: m.json() });
      if (m.info.pending === 0) break;
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** The counts procmon prints at exit on stderr. */
function shipped(stderr: string) {
  const m =
    /nats: (\d+) accepted, (\d+) acked, (\d+) duplicates, (\d+) dropped, (\d+) left in the spool, (\d+) retries, (\d+) reconnects/
      .exec(stderr);
  assert.ok(m, `no counts from procmon:\n${stderr}`);
  const [accepted, acked, duplicates, dropped, spooled, retries, reconnects] = m.slice(1).map(Number);
  return { accepted, acked, duplicates, dropped, spooled, retries, reconnects };
}

/** A fork workload for `seconds`: short-lived processes, one after another, from a shell loop. */
async function forkLoop(seconds: number): Promise<void> {
  const child = spawn("sh", [
    "-c",
    `end=$(($(date +%s) + ${seconds})); while [ $(date +%s) -lt $end ]; do /bin/true; done`,
  ], {
    stdio: "ignore",
  });
  await once(child, "exit");
}

/** Checks that `stored` holds each event of `host` exactly once, on its subject, as an ECS document. */
function assertExactlyOnce(stored: Stored[], host: string, expected: number): void {
  const ids = new Set(stored.map((s) => s.id));
  assert.equal(ids.size, stored.length, `${host}: ${stored.length - ids.size} events stored twice`);
  assert.equal(stored.length, expected, `${host}: ${stored.length} stored, ${expected} expected`);
  for (const s of stored) {
    const flat = flatten(s.doc);
    assert.equal(flat["host.name"], host);
    assert.equal(flat["event.id"], s.id, "the message id is the document's event.id");
    const [prefix, token, type] = s.subject.split(".");
    assert.equal(prefix, "procmon");
    assert.equal(token, host);
    const action = flat["event.action"] as string;
    assert.ok(action === type || action === `thread-${type === "fork" ? "start" : "end"}`, `${s.subject}: ${action}`);
  }
}

describe("the shipper without procmon", () => {
  test("push() never waits for an unreachable server: past the buffer, events are counted as dropped", async () => {
    const port = await freePort(); // nothing listens there
    const shipper = await JetStreamShipper.open({
      servers: `nats://127.0.0.1:${port}`,
      maxBuffered: 1000,
      onError() {},
    });
    const start = performance.now();
    let kept = 0;
    for (let i = 0; i < 5000; i++) if (shipper.push({ subject: "procmon.h.exec", id: `i${i}`, data: "{}" })) kept++;
    assert.ok(performance.now() - start < 1000, "pushing 5000 records took over a second");
    assert.equal(kept, 1000);
    assert.deepEqual([shipper.stats.accepted, shipper.stats.buffered, shipper.stats.dropped], [5000, 1000, 4000]);
    const stats = await shipper.close(200);
    assert.deepEqual([stats.acked, stats.dropped, stats.buffered], [0, 5000, 0], "at close, what is left is counted");
    assert.throws(() => shipper.push({ subject: "procmon.h.exec", id: "late", data: "{}" }), /after close/);
  });

  test("the spool keeps what memory cannot, across a restart of the agent, and it is sent in order", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cnlink-spool-"));
    const server = await NatsServer.start();
    try {
      const unreachable = `nats://127.0.0.1:${await freePort()}`;
      const first = await JetStreamShipper.open({ servers: unreachable, maxBuffered: 10, spoolDir: dir, onError() {} });
      for (let i = 0; i < 100; i++) first.push({ subject: "procmon.h.exec", id: `r${i}`, data: `{"i":${i}}` });
      assert.equal(first.stats.spooled, 90);
      const left = await first.close(100);
      assert.deepEqual([left.dropped, left.spooled], [0, 100], "memory's records went to the spool at close");
      const second = await JetStreamShipper.open({ servers: server.url, spoolDir: dir });
      assert.equal(second.stats.recovered, 100);
      second.push({ subject: "procmon.h.exec", id: "new", data: '{"i":100}' });
      assert.ok(await second.flush(20_000), "the spool was sent");
      const stats = await second.close();
      assert.deepEqual([stats.acked, stats.duplicates, stats.dropped, stats.spooled], [101, 0, 0, 0]);
      const stored = await readStream([server.url], "PROCMON", "procmon.h.>");
      assert.equal(stored.length, 101);
      // The ten that were in memory at the first close come after the 90 spooled before them.
      const order = stored.map((s) => s.doc.i as number);
      assert.deepEqual(order, [...range(10, 100), ...range(0, 10), 100]);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe("shipping to NATS JetStream", () => {
  kernelTest(
    "two procmon agents: every event each delivered is in the stream exactly once, on its subject",
    async () => {
      const server = await NatsServer.start();
      const agents: Procmon[] = [];
      try {
        agents.push(
          ...await Promise.all(
            ["agent-a", "agent-b"].map((host) =>
              Procmon.start(["--nats", server.url, "--host", host, "--format", "ecs", "-q", "-e", "fork,exec,exit"])
            ),
          ),
        );
        const failing = spawn("sh", ["-c", "sleep 0.3; exit 3"], { stdio: "ignore" });
        const failed = once(failing, "exit");
        await forkLoop(3);
        await failed;
        const results = await Promise.all(agents.map((a) => a.stop()));
        for (const [i, host] of ["agent-a", "agent-b"].entries()) {
          const counts = shipped(results[i].stderr);
          assert.ok(counts.accepted > 100, `${host} saw only ${counts.accepted} events of the fork loop`);
          assert.equal(counts.dropped, 0);
          assert.equal(counts.spooled, 0);
          assert.equal(counts.acked + counts.duplicates, counts.accepted);
          const stored = await readStream([server.url], "PROCMON", `procmon.${host}.>`);
          assertExactlyOnce(stored, host, counts.accepted);
          console.log(
            `${host}: ${counts.accepted} delivered, ${stored.length} stored, ${counts.duplicates} duplicates`,
          );
        }
        // The fleet questions, answered across both hosts from the stream by examples/fleet.ts.
        const fleet = (...args: string[]) => {
          const [cmd, argv] = scriptCommand("examples/fleet.ts", "--nats", server.url, "--once", ...args);
          return runChild(cmd, argv, { timeoutMs: 30_000 });
        };
        // sleep lives 0.3 s: long enough for its executable to be read from /proc on a busy machine.
        const ran = await fleet("ran", "/usr/bin/sleep");
        assert.equal(ran.code, 0, ran.stderr);
        assert.match(ran.stdout, /^agent-a\tran \/usr\/bin\/sleep at /m);
        assert.match(ran.stdout, /^agent-b\tran \/usr\/bin\/sleep at /m);
        assert.match(ran.stdout, /^2 host\(s\)/m);
        const exits = await fleet("failed", "sh");
        assert.equal(exits.code, 0, exits.stderr);
        for (const host of ["agent-a", "agent-b"]) {
          const line = new RegExp(
            `^${host}\\t\\S+\\tpid ${failing.pid}\\texit 3\\t(?:/\\S*/)?sh -c sleep 0.3; exit 3$`,
            "m",
          );
          assert.match(exits.stdout, line);
        }
      } finally {
        for (const a of agents) if (a.child.exitCode === null) a.child.kill("SIGKILL");
        await server.stop();
      }
    },
    90_000,
  );

  kernelTest(
    "the server killed for 5 s mid-storm: nothing lost within the spool bound; past it, drops = what is missing",
    async () => {
      const spoolDir = mkdtempSync(join(tmpdir(), "cnlink-spool-"));
      const started: Procmon[] = [];
      const server = await NatsServer.start();
      try {
        for (
          const run of [
            { host: "within", args: ["--buffer", "500", "--spool", join(spoolDir, "a")] },
            { host: "past", args: ["--buffer", "200", "--spool", join(spoolDir, "b"), "--spool-max", "0.1"] },
          ]
        ) {
          const agent = await Procmon.start([
            "--nats",
            server.url,
            "--host",
            run.host,
            "-q",
            "-e",
            "fork,exec,exit",
            ...run.args,
          ]);
          started.push(agent);
          const storm = forkLoop(8);
          await sleep(1500);
          await server.kill();
          await sleep(5000);
          await server.restart();
          await storm;
          const counts = shipped((await agent.stop()).stderr);
          const stored = await readStream([server.url], "PROCMON", `procmon.${run.host}.>`);
          assertExactlyOnce(stored, run.host, counts.accepted - counts.dropped);
          assert.equal(counts.spooled, 0, "everything spooled was sent after the restart");
          if (run.host === "within") assert.equal(counts.dropped, 0, "within the bound nothing is dropped");
          else assert.ok(counts.dropped > 0, "past the bound some are dropped (and counted)");
          assert.ok(counts.reconnects >= 1, "the agent reconnected");
          console.log(
            `${run.host}: ${counts.accepted} delivered, ${stored.length} stored, ${counts.dropped} dropped, ` +
              `${counts.duplicates} duplicates, ${counts.retries} retries`,
          );
        }
      } finally {
        for (const a of started) if (a.child.exitCode === null) a.child.kill("SIGKILL");
        await server.stop();
        rmSync(spoolDir, { recursive: true, force: true });
      }
    },
    120_000,
  );

  kernelTest(
    "a three-node cluster, a replicated stream (R3), its leader killed mid-storm: no acknowledged event lost",
    async () => {
      const cluster = await NatsCluster.start();
      const started: Procmon[] = [];
      try {
        const agent = await Procmon.start([
          "--nats",
          cluster.urls.join(","),
          "--host",
          "clustered",
          "--replicas",
          "3",
          "-q",
          "-e",
          "fork,exec,exit",
        ]);
        started.push(agent);
        const storm = forkLoop(6);
        // The stream exists once the agent created it; then kill the node that leads it.
        let leader: string | undefined;
        const deadline = Date.now() + 20_000;
        while (!leader) {
          assert.ok(Date.now() < deadline, "the replicated stream got no leader in 20 s");
          const nc = await connect({ servers: cluster.urls });
          try {
            leader = (await (await jetstreamManager(nc)).streams.info("PROCMON")).cluster?.leader;
          } catch {
            await sleep(200);
          } finally {
            await nc.close();
          }
        }
        await sleep(1500);
        const victim = cluster.nodes.find((n) => n.name === leader)!;
        await victim.kill();
        await storm;
        const counts = shipped((await agent.stop()).stderr);
        const alive = cluster.nodes.filter((n) => n !== victim).map((n) => n.url);
        const stored = await readStream(alive, "PROCMON", "procmon.clustered.>");
        assert.equal(counts.dropped, 0);
        assertExactlyOnce(stored, "clustered", counts.accepted);
        console.log(
          `cluster: leader ${leader} killed; ${counts.accepted} delivered, ${stored.length} stored, ` +
            `${counts.duplicates} duplicates, ${counts.retries} retries`,
        );
      } finally {
        for (const a of started) if (a.child.exitCode === null) a.child.kill("SIGKILL");
        await cluster.stop();
      }
    },
    120_000,
  );
});
