/**
 * A fleet query over the process events procmon agents ship to NATS JetStream
 * (`procmon --nats nats://... [--format ecs|otel]` on every host), live, with a durable consumer:
 *
 *   deno run -A examples/fleet.ts --nats nats://127.0.0.1:4222 ran /usr/bin/curl --since 1h
 *     → every host that ran that binary (a path, or a program name) in the last hour, as they come
 *   deno run -A examples/fleet.ts --nats nats://127.0.0.1:4222 failed nginx --since 1h
 *     → every nonzero exit of that program or systemd unit, on every host, as they come
 *
 * `--once` answers from what the stream holds and exits; otherwise it keeps answering (Ctrl-C).
 * `--durable NAME` names the consumer: a later run goes on where that one stopped. Reads ECS
 * documents and OpenTelemetry log records alike. Bun: `bun examples/fleet.ts ...`.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";

/** The fields a query looks at, from either schema. */
interface Fact {
  host: string;
  time: string;
  action: string;
  pid?: number;
  executable?: string;
  name?: string;
  args?: string[];
  unit?: string;
  exitCode?: number;
}

type Json = Record<string, unknown>;
const get = (doc: Json, path: string): unknown =>
  path.split(".").reduce<unknown>((v, k) => (v && typeof v === "object" ? (v as Json)[k] : undefined), doc);

/** Reads an ECS document or an OTLP/JSON log record. */
function factOf(doc: Json): Fact | undefined {
  if (typeof doc["@timestamp"] === "string") {
    return {
      host: String(get(doc, "host.name")),
      time: doc["@timestamp"] as string,
      action: String(get(doc, "event.action")),
      pid: get(doc, "process.pid") as number | undefined,
      executable: get(doc, "process.executable") as string | undefined,
      name: get(doc, "process.name") as string | undefined,
      args: get(doc, "process.args") as string[] | undefined,
      unit: get(doc, "labels.systemd_unit") as string | undefined,
      exitCode: get(doc, "process.exit_code") as number | undefined,
    };
  }
  if (Array.isArray(doc.attributes) && typeof doc.timeUnixNano === "string") {
    const a = new Map<string, unknown>();
    for (const { key, value } of doc.attributes as { key: string; value: Json }[]) {
      const v = value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : undefined) ??
        (value.arrayValue as { values: Json[] } | undefined)?.values.map((x) => x.stringValue);
      a.set(key, v);
    }
    return {
      host: String(a.get("host.name")),
      time: new Date(Number(BigInt(doc.timeUnixNano) / 1_000_000n)).toISOString(),
      action: String(doc.eventName ?? "").replace(/^procmon\./, ""),
      pid: a.get("process.pid") as number | undefined,
      executable: a.get("process.executable.path") as string | undefined,
      name: a.get("process.executable.name") as string | undefined,
      args: a.get("process.command_args") as string[] | undefined,
      exitCode: a.get("process.exit.code") as number | undefined,
    };
  }
  return undefined;
}

const basename = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/** Whether a fact is about `program`: a path matches the executable, a name the program or unit. */
function isProgram(f: Fact, program: string): boolean {
  if (program.includes("/")) return f.executable === program || f.args?.[0] === program;
  const names = [f.name, f.executable && basename(f.executable), f.args?.[0] && basename(f.args[0]), f.unit];
  return names.includes(program) || f.unit === `${program}.service`;
}

/** `1h`, `30m`, `45s`, `2d` ago, or an ISO date. */
function parseSince(text: string): Date {
  const m = /^(\d+(?:\.\d+)?)([smhd])$/.exec(text);
  if (m) return new Date(Date.now() - Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[m[2] as "s"]);
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) throw new TypeError(`--since wants 1h, 30m, 45s, 2d or a date, got "${text}"`);
  return d;
}

const USAGE = `Usage: fleet.ts --nats URL[,URL] [--stream PROCMON] [--since 1h] [--durable NAME] [--once] QUESTION
  ran PROGRAM       which hosts ran PROGRAM (a path like /usr/bin/curl, or a program name)
  failed PROGRAM    every nonzero exit of PROGRAM (a program name or systemd unit), on every host`;

/** Runs the query; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: {
        nats: { type: "string" },
        stream: { type: "string", default: "PROCMON" },
        since: { type: "string", default: "1h" },
        durable: { type: "string" },
        once: { type: "boolean", default: false },
        prefix: { type: "string", default: "procmon" },
      },
      allowPositionals: true,
    }));
    if (!values.nats || positionals.length !== 2 || !["ran", "failed"].includes(positionals[0])) {
      throw new TypeError("give --nats and a question");
    }
  } catch (err) {
    console.error(`fleet: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const [question, program] = positionals;
  const since = parseSince(values.since!);
  const nc = await connect({ servers: values.nats.split(",") });
  const stop = () => nc.close();
  process.on("SIGINT", stop);
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    // One subject per question: execs for "ran", exits for "failed", of every host.
    const filter = `${values.prefix}.*.${question === "ran" ? "exec" : "exit"}`;
    const name = values.durable ?? `fleet_${question}_${program.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    await jsm.consumers.add(values.stream!, {
      durable_name: name,
      filter_subject: filter,
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: since.toISOString(),
      ack_policy: AckPolicy.Explicit,
      ...(values.durable ? {} : { inactive_threshold: 3_600_000_000_000 }),
    });
    const consumer = await js.consumers.get(values.stream!, name);
    const hosts = new Map<string, { first: string; count: number }>();
    let failures = 0;
    const pending = (await consumer.info()).num_pending;
    if (values.once && pending === 0) {
      console.log(question === "ran" ? `no host ran ${program} since ${since.toISOString()}` : "no nonzero exits");
      return 0;
    }
    const messages = await consumer.consume();
    for await (const m of messages) {
      const fact = factOf(m.json<Json>());
      m.ack();
      if (fact && isProgram(fact, program)) {
        if (question === "ran") {
          const seen = hosts.get(fact.host);
          if (seen) seen.count++;
          else {
            hosts.set(fact.host, { first: fact.time, count: 1 });
            console.log(
              `${fact.host}\tran ${program} at ${fact.time} (pid ${fact.pid}: ${fact.args?.join(" ") ?? ""})`,
            );
          }
        } else if (fact.exitCode !== undefined && fact.exitCode !== 0) {
          failures++;
          console.log(
            `${fact.host}\t${fact.time}\tpid ${fact.pid}\texit ${fact.exitCode}\t${fact.args?.join(" ") ?? ""}`,
          );
        }
      }
      if (values.once && m.info.pending === 0) break;
    }
    if (question === "ran") {
      console.log(`${hosts.size} host(s): ${[...hosts].map(([h, s]) => `${h} (${s.count}x)`).join(", ")}`);
    } else console.log(`${failures} nonzero exit(s)`);
    return 0;
  } finally {
    process.off("SIGINT", stop);
    await nc.close().catch(() => {});
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
