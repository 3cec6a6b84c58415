/**
 * One argument contract at every public entry point: each bad shape is refused before anything
 * happens, with the error class and a message that names the key (and lists the accepted ones) or
 * shows the 0.2 shape to write. Against the fake kernel (no root), the real `open()`s with a libc
 * that does not exist (the check must come before it is loaded), and procmon and the examples as
 * child processes.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Connector, type ConnectorMessage, TimeoutError } from "../mod.ts";
import { bootOffsetClock, monotonicClock, ProcMonitor, wallClock, watchProcesses } from "../proc.ts";
import { readEeprom, readTemperature, W1Bus, writeEeprom } from "../w1.ts";
import { fakeDs18b20, FakeKernel } from "../testing.ts";
import { parseOptions } from "../src/procmon/cli.ts";
import { runChild, scriptCommand } from "./_runtime.ts";
import { connectorSocketInodes, socketTest } from "./_kernel.ts";

type ErrorClass = typeof TypeError | typeof RangeError;
/** One bad call: what it is, the call, the error class it must throw or reject with, and its message. */
type Row = [name: string, call: () => unknown, type: ErrorClass, message: RegExp];

/** Runs every row: each must throw (or reject with) exactly `type`, with a message matching. */
async function expectRows(rows: Row[]): Promise<void> {
  for (const [name, call, type, message] of rows) {
    const check = (err: unknown) => {
      assert.ok(err instanceof Error, `${name}: threw ${String(err)}`);
      assert.equal(err.constructor, type, `${name}: ${err.constructor.name} (${err.message}), wanted ${type.name}`);
      assert.match(err.message, message, `${name}`);
      return true;
    };
    let result: unknown;
    try {
      result = call();
    } catch (err) {
      check(err);
      continue;
    }
    await assert.rejects(Promise.resolve(result), check, `${name}: accepted`);
  }
}

const ECHO = { idx: 14, val: 0x456 };
const OTHER = { idx: 14, val: 1 };
const NO_LIBC = "/nonexistent/libc-for-argument-tests.so.6";

/** The bad timeouts, as `[value, class]`. */
const BAD_TIMEOUTS: [unknown, ErrorClass][] = [
  [0, RangeError],
  [-1, RangeError],
  [NaN, RangeError],
  [Infinity, RangeError],
  [2 ** 31, RangeError],
  [3e9, RangeError],
  ["100", TypeError],
];
const timeoutRows = (name: string, call: (timeoutMs: never) => unknown, key = "timeoutMs"): Row[] =>
  BAD_TIMEOUTS.map(([value, type]) => [
    `${name} ${key}: ${String(value)}`,
    () => call(value as never),
    type,
    type === RangeError
      ? new RegExp(`^${key} must be a number of milliseconds with 0 < ${key} <= 2147483647 .*got ${String(value)}$`)
      : new RegExp(`^${key} must be a number of milliseconds, got "100"$`),
  ]);
const signalRows = (name: string, call: (signal: never) => unknown): Row[] =>
  [{}, "abort", new AbortController()].map((value) => [
    `${name} signal: ${typeof value}`,
    () => call(value as never),
    TypeError,
    /^signal must be an AbortSignal \(an AbortController's signal, or AbortSignal\.timeout\(ms\)\), got /,
  ]);

const CONNECTOR_KEYS =
  "groups, port, rcvbuf, libcPath, onError, onOverrun, maxQueued, maxQueuedBytes, maxInFlight, whenBusy";

/** Connector.open and FakeKernel.connect take the same options and refuse the same shapes. */
function connectorOptionRows(name: string, open: (options: never) => unknown): Row[] {
  const row = (label: string, options: unknown, type: ErrorClass, message: RegExp): Row => [
    `${name} ${label}`,
    () => open(options as never),
    type,
    message,
  ];
  return [
    row(
      "unknown key",
      { grups: [1] },
      TypeError,
      new RegExp(`unknown key "grups"; the accepted keys are ${CONNECTOR_KEYS}$`),
    ),
    row("not an object", 21, TypeError, /^Connector options must be an object with some of groups, .*got 21$/),
    row(
      "groups: a number",
      { groups: 21 },
      TypeError,
      /^groups must be an array of group numbers \(1\.\.32\), like \[21\], got 21$/,
    ),
    row("groups: a string", { groups: "21" }, TypeError, /^groups must be an array of group numbers/),
    row("groups: 0", { groups: [0] }, RangeError, /^groups\[0\] must be an integer in 1\.\.32 .*got 0$/),
    row("groups: 33", { groups: [1, 33] }, RangeError, /^groups\[1\] must be an integer in 1\.\.32 .*got 33$/),
    row("groups: 1.5", { groups: [1.5] }, RangeError, /^groups\[0\] must be an integer in 1\.\.32/),
    row("port: -1", { port: -1 }, RangeError, /^port must be an integer in 0\.\.4294967295, got -1$/),
    row("rcvbuf: 0", { rcvbuf: 0 }, RangeError, /^rcvbuf must be an integer in 1\.\.2147483647, got 0$/),
    row("maxQueued: 0", { maxQueued: 0 }, RangeError, /^maxQueued must be a positive integer, got 0$/),
    row("maxQueuedBytes: NaN", { maxQueuedBytes: NaN }, RangeError, /^maxQueuedBytes must be a positive integer/),
    row("maxInFlight: 1.5", { maxInFlight: 1.5 }, RangeError, /^maxInFlight must be a positive integer, got 1\.5$/),
    row("whenBusy", { whenBusy: "never" }, TypeError, /^whenBusy must be "queue" or "fail", got "never"$/),
    row("onError", { onError: "log" }, TypeError, /^onError must be a function, got "log"$/),
  ];
}

describe("argument contract: Connector", () => {
  test("Connector.open refuses bad options before loading libc or opening a socket", async () => {
    // libcPath names a file that does not exist: a check after the load would fail on that instead.
    await expectRows(
      connectorOptionRows(
        "Connector.open",
        (o: object) => Connector.open(typeof o === "object" ? { libcPath: NO_LIBC, ...o } : o),
      ),
    );
  });

  socketTest(
    "on the real kernel, a bad limit leaves no socket open (it was checked after the socket was made)",
    async () => {
      const before = connectorSocketInodes();
      for (const options of [{ maxQueued: 0 }, { maxInFlight: -1 }, { maxQueuedBytes: 1.5 }, { groups: [1, 40] }]) {
        await assert.rejects(Connector.open(options), RangeError);
      }
      assert.deepEqual(connectorSocketInodes(), before);
    },
  );

  test("FakeKernel.connect refuses the same options, and no socket is made", async () => {
    const kernel = new FakeKernel();
    await expectRows(connectorOptionRows("connect", (o) => kernel.connect(o)));
    assert.deepEqual(kernel.ports, []);
  });

  test("send: the 0.1 { port } / { group }, both at once, unknown keys, bad ports and groups", async () => {
    const kernel = new FakeKernel();
    await using agent = await kernel.connect();
    await using conn = await kernel.connect();
    const msg = { id: ECHO, data: new Uint8Array([1]) };
    const send = (options: unknown) => () => conn.send(msg, options as never);
    await expectRows([
      [
        "{ port }",
        send({ port: agent.port }),
        TypeError,
        /^send options\.port is not an option: write \{ to: \{ port: PORT \} \}/,
      ],
      [
        "{ group }",
        send({ group: 5 }),
        TypeError,
        /^send options\.group is not an option: write \{ to: \{ group: GROUP \} \}/,
      ],
      [
        "to both",
        send({ to: { port: agent.port, group: 5 } }),
        TypeError,
        /^to must be \{ port \} or \{ group \}.*not both/,
      ],
      [
        "to: unknown key",
        send({ to: { prot: 5 } }),
        TypeError,
        /^to has an unknown key "prot"; the accepted keys are port, group$/,
      ],
      [
        "unknown key",
        send({ too: { port: 5 } }),
        TypeError,
        /^send options has an unknown key "too"; the accepted keys are to$/,
      ],
      ["not an object", send(5), TypeError, /^send options must be an object with some of to, got 5$/],
      [
        "to: a number",
        send({ to: 5 }),
        TypeError,
        /^to must be \{ port \} or \{ group \}; omit it to send to the kernel \(got 5\)$/,
      ],
      ["to.group 0", send({ to: { group: 0 } }), RangeError, /^group must be an integer in 1\.\.32 .*got 0$/],
      ["to.group 33", send({ to: { group: 33 } }), RangeError, /^group must be an integer in 1\.\.32 .*got 33$/],
      ["to.port 0", send({ to: { port: 0 } }), RangeError, /^to\.port must be a port id in 1\.\.4294967295/],
      ["to.port NaN", send({ to: { port: NaN } }), RangeError, /^to\.port must be a port id .*got NaN$/],
    ]);
    assert.deepEqual(kernel.received, [], "nothing reached the kernel");
    assert.equal(agent.stats.datagrams, 0);
  });

  test("request and requestAll: 0.1 shapes, unknown keys, timeouts, signals, match; nothing is sent", async () => {
    const kernel = new FakeKernel();
    await using conn = await kernel.connect();
    const msg = { id: ECHO };
    const until = () => true;
    const request = (options: object) => conn.request(msg, options);
    const requestAll = (options: object) => conn.requestAll(msg, { until, ...options });
    await expectRows([
      [
        "request { port }",
        () => request({ port: 1234 }),
        TypeError,
        /^request options\.port is not an option: write \{ to: \{ port: PORT \} \}/,
      ],
      [
        "request { group }",
        () => request({ group: 3 }),
        TypeError,
        /^request options\.group is not an option: write \{ to: \{ group/,
      ],
      ["request to both", () => request({ to: { port: 5, group: 5 } }), TypeError, /not both/],
      [
        "request unknown key",
        () => request({ timeout: 100 }),
        TypeError,
        /^request options has an unknown key "timeout"; the accepted keys are to, timeoutMs, signal, match$/,
      ],
      [
        "requestAll unknown key",
        () => requestAll({ untill: until }),
        TypeError,
        /^requestAll options has an unknown key "untill"; the accepted keys are to, timeoutMs, signal, match, until$/,
      ],
      ["requestAll { port }", () => requestAll({ port: 9 }), TypeError, /^requestAll options\.port is not an option/],
      ["match not a function", () => request({ match: true }), TypeError, /^match must be a function, got true$/],
      ...timeoutRows("request", (timeoutMs) => request({ timeoutMs })),
      ...timeoutRows("requestAll", (timeoutMs) => requestAll({ timeoutMs })),
      ...signalRows("request", (signal) => request({ signal })),
      ...signalRows("requestAll", (signal) => requestAll({ signal })),
    ]);
    assert.deepEqual(kernel.received, [], "no request was sent");
  });

  test("addCallback, messages, join and leave check ids, groups and signals as send does", async () => {
    const kernel = new FakeKernel();
    await using conn = await kernel.connect();
    const fn = () => {};
    const add = (id: unknown) => () => conn.addCallback(id as never, "x", fn);
    const messages = (options: unknown) => () => conn.messages(options as never);
    await expectRows([
      [
        "addCallback idx NaN",
        add({ idx: NaN, val: 1 }),
        RangeError,
        /^id\.idx must be an integer in 0\.\.4294967295, got NaN$/,
      ],
      [
        "addCallback idx -1",
        add({ idx: -1, val: 1 }),
        RangeError,
        /^id\.idx must be an integer in 0\.\.4294967295, got -1$/,
      ],
      [
        "addCallback val 2^32",
        add({ idx: 1, val: 2 ** 32 }),
        RangeError,
        /^id\.val must be an integer in 0\.\.4294967295, got 4294967296$/,
      ],
      ["addCallback idx 1.5", add({ idx: 1.5, val: 1 }), RangeError, /^id\.idx must be an integer/],
      [
        "addCallback idx a string",
        add({ idx: "a", val: 1 }),
        TypeError,
        /^id must be \{ idx: number, val: number \} \(the agent's cb_id\), got \{ idx: "a", val: 1 \}$/,
      ],
      ["addCallback id null", add(null), TypeError, /^id must be \{ idx: number, val: number \}.*got null$/],
      [
        "addCallback fn",
        () => conn.addCallback(ECHO, "x", "f" as never),
        TypeError,
        /^callback must be a function, got "f"$/,
      ],
      [
        "messages id idx a string",
        messages({ id: { idx: "a", val: 1 } }),
        TypeError,
        /^id must be \{ idx: number, val: number \}/,
      ],
      [
        "messages id idx -1",
        messages({ id: { idx: -1, val: 1 } }),
        RangeError,
        /^id\.idx must be an integer in 0\.\.4294967295, got -1$/,
      ],
      [
        "messages unknown key",
        messages({ idx: 1 }),
        TypeError,
        /^messages options has an unknown key "idx"; the accepted keys are id, signal$/,
      ],
      ...signalRows("messages", (signal) => conn.messages({ signal })),
      ["join 0", () => conn.join(0), RangeError, /^group must be an integer in 1\.\.32 .*got 0$/],
      ["join 33", () => conn.join(33), RangeError, /got 33$/],
      ["join a string", () => conn.join("3" as never), RangeError, /got "3"$/],
      ["leave NaN", () => conn.leave(NaN), RangeError, /got NaN$/],
    ]);
    assert.deepEqual(conn.callbacks, [], "no callback was registered");
    assert.deepEqual(conn.groups, []);
  });
});

describe("argument contract: process events", () => {
  const keys =
    "events, rcvbuf, maxRcvbuf, timeoutMs, ackTimeoutMs, signal, enrich, cgroup, maxQueued, maxQueuedBytes, onError, libcPath";
  const rows = (name: string, open: (options: object) => unknown): Row[] => [
    [
      `${name} unknown key`,
      () => open({ event: ["exec"] }),
      TypeError,
      new RegExp(`unknown key "event"; the accepted keys are ${keys}$`),
    ],
    [
      `${name} events: a string`,
      () => open({ events: "exec" }),
      TypeError,
      /^events must be an array of event names: pass \["exec"\], not the string "exec"$/,
    ],
    [`${name} events: "exec,exit"`, () => open({ events: "exec,exit" }), TypeError, /pass \["exec","exit"\]/],
    [
      `${name} events: unknown`,
      () => open({ events: ["spawn"] }),
      TypeError,
      /^Unknown process event "spawn"; use one of fork, exec/,
    ],
    [`${name} events: a number`, () => open({ events: 5 }), TypeError, /^events must be an array of event names like/],
    [`${name} enrich: a string`, () => open({ enrich: "yes" }), TypeError, /^enrich must be a boolean, got "yes"$/],
    [
      `${name} maxRcvbuf: -1`,
      () => open({ maxRcvbuf: -1 }),
      RangeError,
      /^maxRcvbuf must be an integer in 0\.\.2147483647, got -1$/,
    ],
    ...timeoutRows(name, (timeoutMs) => open({ timeoutMs }), "timeoutMs"),
    ...timeoutRows(name, (ackTimeoutMs) => open({ ackTimeoutMs }), "ackTimeoutMs"),
    [
      `${name} timeoutMs and its deprecated alias`,
      () => open({ timeoutMs: 100, ackTimeoutMs: 100 }),
      TypeError,
      /^give timeoutMs or its deprecated alias ackTimeoutMs, not both$/,
    ],
    [
      `${name} maxQueuedBytes: 0`,
      () => open({ maxQueuedBytes: 0 }),
      RangeError,
      /^maxQueuedBytes must be a positive integer, got 0$/,
    ],
    ...signalRows(name, (signal) => open({ signal })),
  ];

  test("FakeKernel.openProcMonitor refuses bad options before a socket is made", async () => {
    const kernel = new FakeKernel();
    kernel.enableProcEvents();
    await expectRows(rows("openProcMonitor", (o) => kernel.openProcMonitor(o)));
    assert.deepEqual(kernel.ports, []);
  });

  test("ProcMonitor.open refuses them before loading libc; watchProcesses at the call", async () => {
    await expectRows(rows("ProcMonitor.open", (o) => ProcMonitor.open({ libcPath: NO_LIBC, ...o })));
    await expectRows(rows("watchProcesses", (o) => watchProcesses({ libcPath: NO_LIBC, ...o })));
  });
});

describe("argument contract: 1-Wire", () => {
  test("W1Bus.open, openW1Bus, every method's options and the device helpers", async () => {
    const kernel = new FakeKernel();
    const w1 = kernel.enableW1();
    const master = w1.addMaster();
    w1.plug(master, fakeDs18b20("28-000000000001"));
    await using bus = await kernel.openW1Bus();
    const slave = "28-000000000001";
    const methods: [string, (options: never) => unknown][] = [
      ["listMasters", (o) => bus.listMasters(o)],
      ["search", (o) => bus.search(master, o)],
      ["alarmSearch", (o) => bus.alarmSearch(master, o)],
      ["listSlaves", (o) => bus.listSlaves(master, o)],
      ["reset", (o) => bus.reset(master, o)],
      ["read", (o) => bus.read({ master }, 1, o)],
      ["write", (o) => bus.write({ master }, [1], o)],
      ["touch", (o) => bus.touch({ master }, [1], o)],
      ["transaction", (o) => bus.transaction({ master }, [{ op: "reset" }], o)],
      ["addSlave", (o) => bus.addSlave(master, "28-000000000002", o)],
      ["removeSlave", (o) => bus.removeSlave(master, slave, o)],
      ["readEeprom", (o) => readEeprom(bus, slave, 0, 1, o)],
    ];
    const rows: Row[] = [];
    for (const [name, call] of methods) {
      rows.push(
        [
          `${name} unknown key`,
          () => call({ timeout: 5 } as never),
          TypeError,
          /unknown key "timeout"; the accepted keys are timeoutMs, signal$/,
        ],
        ...timeoutRows(name, (timeoutMs) => call({ timeoutMs } as never)),
        ...signalRows(name, (signal) => call({ signal } as never)),
      );
    }
    const w1Keys = "rcvbuf, libcPath, onError, onOverrun, maxQueued, maxQueuedBytes, bundle";
    rows.push(
      [
        "W1Bus.open unknown key",
        () => W1Bus.open({ libcPath: NO_LIBC, bundled: true } as never),
        TypeError,
        new RegExp(`unknown key "bundled"; the accepted keys are ${w1Keys}$`),
      ],
      [
        "W1Bus.open bundle",
        () => W1Bus.open({ libcPath: NO_LIBC, bundle: "yes" } as never),
        TypeError,
        /^bundle must be a boolean, got "yes"$/,
      ],
      // The options every socket-owning client shares are checked alike (W1Bus took any rcvbuf before).
      [
        "W1Bus.open rcvbuf 0",
        () => W1Bus.open({ libcPath: NO_LIBC, rcvbuf: 0 }),
        RangeError,
        /^rcvbuf must be an integer in 1\.\.2147483647, got 0$/,
      ],
      [
        "W1Bus.open maxQueuedBytes 1.5",
        () => W1Bus.open({ libcPath: NO_LIBC, maxQueuedBytes: 1.5 }),
        RangeError,
        /^maxQueuedBytes must be a positive integer, got 1\.5$/,
      ],
      ["openW1Bus unknown key", () => kernel.openW1Bus({ bundled: true } as never), TypeError, /unknown key "bundled"/],
      [
        "events unknown key",
        () => bus.events({ sig: 1 } as never),
        TypeError,
        /^events options has an unknown key "sig"; the accepted keys are signal$/,
      ],
      ...signalRows("events", (signal) => bus.events({ signal })),
      [
        "readTemperature unknown key",
        () => readTemperature(bus, slave, { conversion: 1 } as never),
        TypeError,
        /unknown key "conversion"; the accepted keys are timeoutMs, signal, convert, conversionMs, retries$/,
      ],
      [
        "readTemperature conversionMs -1",
        () => readTemperature(bus, slave, { conversionMs: -1 }),
        RangeError,
        /^conversionMs must be a number of milliseconds in 0\.\.2147483647, got -1$/,
      ],
      [
        "readTemperature conversionMs Infinity",
        () => readTemperature(bus, slave, { conversionMs: Infinity }),
        RangeError,
        /^conversionMs must be/,
      ],
      ...timeoutRows("readTemperature", (timeoutMs) => readTemperature(bus, slave, { timeoutMs })),
      [
        "writeEeprom programMs NaN",
        () => writeEeprom(bus, "2d-000000000001", 0, new Uint8Array([1]), { programMs: NaN }),
        RangeError,
        /^programMs must be a number of milliseconds/,
      ],
    );
    const portsBefore = kernel.ports.length;
    const requestsBefore = w1.requests.length;
    await expectRows(rows);
    assert.equal(w1.requests.length, requestsBefore, "nothing reached the w1 core");
    assert.equal(kernel.ports.length, portsBefore, "no socket was opened");
  });

  test("with no w1 core to answer, the timeout says to load it (modprobe wire)", async () => {
    const kernel = new FakeKernel(); // no enableW1(): like a kernel without the wire module
    await using bus = await kernel.openW1Bus();
    const started = Date.now();
    for (const call of [() => bus.listMasters({ timeoutMs: 50 }), () => bus.search(1, { timeoutMs: 50 })]) {
      await assert.rejects(call(), (err: Error) => {
        assert.ok(err instanceof TimeoutError, String(err));
        assert.equal(err.timeoutMs, 50);
        assert.match(err.message, /^No reply from the kernel's 1-Wire core to .* within 50 ms: /);
        assert.match(
          err.message,
          /nothing answered: the kernel.s 1-Wire core is probably not loaded \(modprobe wire, on a kernel with CONFIG_W1 and CONFIG_W1_CON\), or the command took longer than timeoutMs/,
        );
        return true;
      });
    }
    assert.ok(Date.now() - started >= 100, "each request waited its timeout");
  });
});

describe("argument contract: the fake kernel", () => {
  test("constructors, send and sendRaw refuse unknown keys and the 0.1 shapes", async () => {
    const kernel = new FakeKernel();
    const datagram = new Uint8Array(36);
    await expectRows([
      [
        "FakeKernel unknown key",
        () => new FakeKernel({ prvileged: false } as never),
        TypeError,
        /^FakeKernel options has an unknown key "prvileged"; the accepted keys are privileged, initialNetworkNamespace, rcvbuf, rmemMax, rcvbufRule, smallSkbHead$/,
      ],
      [
        "FakeKernel rcvbufRule",
        () => new FakeKernel({ rcvbufRule: "fits" } as never),
        TypeError,
        /^rcvbufRule must be "fits-or-empty" or "not-over", got "fits"$/,
      ],
      [
        "FakeKernel smallSkbHead",
        () => new FakeKernel({ smallSkbHead: -1 }),
        RangeError,
        /^smallSkbHead must be an integer in 0\.\.4096, got -1$/,
      ],
      [
        "FakeKernel privileged",
        () => new FakeKernel({ privileged: "no" } as never),
        TypeError,
        /^privileged must be a boolean, got "no"$/,
      ],
      [
        "FakeKernel rcvbuf",
        () => new FakeKernel({ rcvbuf: 0 }),
        RangeError,
        /^rcvbuf must be an integer in 1\.\.2147483647, got 0$/,
      ],
      [
        "enableProcEvents unknown key",
        () => kernel.enableProcEvents({ acks: false } as never),
        TypeError,
        /unknown key "acks"; the accepted keys are ack, inputFilter$/,
      ],
      [
        "enableProcEvents ack",
        () => kernel.enableProcEvents({ ack: 0 } as never),
        TypeError,
        /^ack must be a boolean, got 0$/,
      ],
      [
        "enableW1 unknown key",
        () => kernel.enableW1({ ttl: 1 } as never),
        TypeError,
        /unknown key "ttl"; the accepted keys are slaveTtl, idsPerReply$/,
      ],
      [
        "enableW1 slaveTtl",
        () => kernel.enableW1({ slaveTtl: 0 }),
        RangeError,
        /^slaveTtl must be a positive integer, got 0$/,
      ],
      [
        "kernel.send { port }",
        () => kernel.send({ id: ECHO }, { port: 5 } as never),
        TypeError,
        /^send options\.port is not an option: write \{ to: \{ port: PORT \} \}/,
      ],
      [
        "kernel.sendRaw { group }",
        () => kernel.sendRaw(datagram, { group: 3 } as never),
        TypeError,
        /^sendRaw options\.group is not an option: write \{ to: \{ group: GROUP \} \}/,
      ],
      [
        "kernel.sendRaw to unknown key",
        () => kernel.sendRaw(datagram, { to: { grop: 3 } } as never),
        TypeError,
        /^to has an unknown key "grop"/,
      ],
      [
        "kernel.sendRaw to.group 40",
        () => kernel.sendRaw(datagram, { to: { group: 40 } }),
        RangeError,
        /^to\.group must be an integer in 1\.\.32/,
      ],
      [
        "kernel.addCallback idx NaN",
        () => kernel.addCallback({ idx: NaN, val: 1 }, "x", () => {}),
        RangeError,
        /^id\.idx must be an integer in 0\.\.4294967295, got NaN$/,
      ],
    ]);
  });
});

describe("a throwing match", () => {
  test("rejects only its request; the connector, another iterator and a later request go on", async () => {
    const kernel = new FakeKernel();
    kernel.addCallback(ECHO, "echo", (msg, ctx) => {
      ctx.kernel.send({ id: msg.id, seq: msg.seq, ack: msg.seq + 1, data: msg.data }, {
        to: { port: msg.source.port },
      });
    });
    const errors: unknown[] = [];
    await using conn = await kernel.connect({ groups: [14], onError: (e) => errors.push(e) });
    const others = conn.messages({ id: OTHER });
    const boom = new Error("boom");
    await assert.rejects(
      conn.request({ id: ECHO, data: new Uint8Array([1]) }, {
        match: () => {
          throw boom;
        },
      }),
      (err: Error) => {
        assert.equal(err.cause, boom);
        assert.match(err.message, /^The match function of the request for cn_msg 14:1110 seq \d+ threw: boom$/);
        return true;
      },
    );
    assert.equal(conn.closed, false);
    kernel.send({ id: OTHER, seq: 7 }, { to: { group: 14 } });
    const next = await others.next();
    assert.equal(next.done, false);
    assert.equal((next.value as ConnectorMessage).seq, 7);
    const reply = await conn.request({ id: ECHO, data: new Uint8Array([2]) }, { timeoutMs: 2000 });
    assert.deepEqual([...reply.data], [2]);
    assert.deepEqual(errors, [], "nothing was reported as a receive error");
  });
});

describe("argument contract: procmon and the examples", () => {
  test("procmon's numeric flags and durations (parsed in-process)", () => {
    const bad: [string[], RegExp][] = [
      [["-D", "3000000"], /^--duration wants a number of seconds with 0 < N <= 2147483\.647 .*got "3000000"$/],
      [["-D", "0"], /^--duration wants .*got "0"$/],
      [["--duration=-1"], /^--duration wants .*got "-1"$/],
      [["-D", "NaN"], /^--duration wants .*got "NaN"$/],
      [["-D", "Infinity"], /^--duration wants .*got "Infinity"$/],
      [["-D", ""], /^--duration wants .*got ""$/],
      [["-p", "0"], /^--pid wants a process id \(an integer in 1\.\.2147483647\), got "0"$/],
      [["-p", "1.5"], /^--pid wants a process id/],
      [["-p", "2147483648"], /^--pid wants a process id/],
      [["-e", ","], /^--events wants a comma-separated list of events/],
    ];
    for (const [args, message] of bad) {
      assert.throws(
        () => parseOptions(args),
        (e: Error) => e instanceof TypeError && message.test(e.message),
        args.join(" "),
      );
    }
    assert.equal((parseOptions(["-D", "2147483.647"]) as { durationMs: number }).durationMs, 2147483647);
  });

  test("procmon and the examples exit 2 with the message before opening anything (child processes)", async () => {
    const rows: [string, string[], RegExp][] = [
      [
        "cli/procmon.ts",
        ["-D", "3000000"],
        /^procmon: --duration wants a number of seconds with 0 < N <= 2147483\.647/,
      ],
      ["cli/procmon.ts", ["-p", "x"], /^procmon: --pid wants a process id/],
      [
        "examples/echo_agent.ts",
        ["--idx", "foo"],
        /^echo_agent: --idx wants an integer in 0\.\.4294967295 \(decimal or 0x hex\), got "foo"/,
      ],
      ["examples/echo_agent.ts", ["--val=-1"], /^echo_agent: --val wants an integer in 0\.\.4294967295/],
      ["examples/echo_agent.ts", ["--idx"], /^echo_agent: .*--idx/],
      [
        "examples/w1scan.ts",
        ["--timeout-ms", "0"],
        /^w1scan: --timeout-ms wants a number of milliseconds with 0 < N <= 2147483647, got "0"/,
      ],
      ["examples/w1scan.ts", ["--timeout-ms", "3e9"], /^w1scan: --timeout-ms wants .*got "3e9"/],
      [
        "examples/w1scan.ts",
        ["--conversion-ms=-5"],
        /^w1scan: --conversion-ms wants a number of milliseconds in 0\.\.2147483647, got "-5"/,
      ],
    ];
    for (const [script, args, message] of rows) {
      const [cmd, argv] = scriptCommand(script, ...args);
      const r = await runChild(cmd, argv, { timeoutMs: 60_000 });
      const what = `${script} ${args.join(" ")}: ${r.stderr}`;
      assert.equal(r.code, 2, what);
      assert.match(r.stderr, message, what);
      assert.equal(r.stdout, "", what);
    }
  });
});

describe("argument contract: the clocks take options, as everything else does", () => {
  test("{ libcPath } is checked before libc is loaded; the 0.2 bare path still works", async () => {
    const NO_LIBC = "/nonexistent/libc.so.6";
    for (
      const [name, clock] of [["wallClock", wallClock], ["monotonicClock", monotonicClock], [
        "bootOffsetClock",
        bootOffsetClock,
      ]] as const
    ) {
      await expectRows([
        [
          `${name} unknown key`,
          () => clock({ libc: NO_LIBC } as never),
          TypeError,
          /^clock options has an unknown key "libc"; the accepted keys are libcPath$/,
        ],
        [`${name} libcPath: a number`, () => clock({ libcPath: 5 } as never), TypeError, /^libcPath must be a string/],
      ]);
      // The path is used: a libc that does not exist fails to load, in either form.
      await assert.rejects(clock({ libcPath: NO_LIBC }), name);
      await assert.rejects(clock(NO_LIBC), name);
    }
    const toEpochMs = await wallClock({});
    assert.ok(Math.abs(toEpochMs((await monotonicClock())()) - Date.now()) < 1000);
  });
});
