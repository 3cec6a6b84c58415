/**
 * Real NATS servers for tests: Debian's nats-server (installed with apt-get when missing, as the kernel
 * lab installs qemu; a test fails loudly when it cannot be had), on 127.0.0.1 only, on random free
 * ports, with JetStream's store in a temp directory removed by `stop()`. One server, or a local
 * three-node JetStream cluster.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

let installed: string | undefined;

/** The nats-server binary; installs Debian's package when it is missing, or throws saying why it could not. */
export function natsServerBinary(): string {
  if (installed) return installed;
  const which = () => spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" }).stdout.trim();
  let path = which();
  if (!path) {
    if (process.getuid?.() !== 0) {
      throw new Error("these tests need nats-server (Debian package nats-server); installing it needs root");
    }
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const args = ["install", "-y", "-qq", "--no-install-recommends", "nats-server"];
    let r = spawnSync("apt-get", args, { encoding: "utf8", env });
    if (r.status !== 0) {
      spawnSync("apt-get", ["update", "-qq"], { encoding: "utf8", env });
      r = spawnSync("apt-get", args, { encoding: "utf8", env });
    }
    path = which();
    if (r.status !== 0 || !path) {
      throw new Error(`could not install nats-server with apt-get (exit ${r.status}): ${r.stderr}${r.stdout}`);
    }
  }
  return installed = path;
}

/** A free TCP port on 127.0.0.1 (bound and released; the caller binds it next). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  server.close();
  await once(server, "close");
  return port;
}

/** One running nats-server with JetStream. */
export class NatsServer {
  #child: ChildProcess | undefined;
  #log = "";

  private constructor(
    readonly port: number,
    readonly storeDir: string,
    readonly extraArgs: string[],
    readonly name: string,
  ) {}

  /** `nats://127.0.0.1:<port>`. */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** What the server printed. */
  get log(): string {
    return this.#log;
  }

  /** Starts a server on a free port with its store in a fresh temp directory. */
  static async start(options: { name?: string; port?: number; args?: string[]; storeDir?: string } = {}) {
    const port = options.port ?? await freePort();
    const dir = options.storeDir ?? mkdtempSync(join(tmpdir(), "cnlink-nats-"));
    const server = new NatsServer(port, dir, options.args ?? [], options.name ?? `n${port}`);
    await server.restart();
    return server;
  }

  /** (Re)starts the server on the same port and store; resolves once it accepts clients. */
  async restart(): Promise<void> {
    if (this.#child) throw new Error("already running");
    const args = [
      "-a",
      "127.0.0.1",
      "-p",
      String(this.port),
      "-js",
      "-sd",
      this.storeDir,
      "--server_name",
      this.name,
      ...this.extraArgs,
    ];
    const child = spawn(natsServerBinary(), args, { stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    const onData = (c: Buffer) => (this.#log += c.toString());
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    const deadline = Date.now() + 15_000;
    while (!/Server is ready/.test(this.#log)) {
      if (child.exitCode !== null) throw new Error(`nats-server exited ${child.exitCode}:\n${this.#log}`);
      if (Date.now() > deadline) throw new Error(`nats-server did not start in 15 s:\n${this.#log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Kills the server (SIGKILL: no goodbye to clients) and waits for it to end. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    if (child.exitCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  }

  /** Kills the server and removes its store. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}

/** A local three-node JetStream cluster (different ports on 127.0.0.1). */
export class NatsCluster {
  private constructor(readonly nodes: NatsServer[]) {}

  /** The client URLs of all nodes. */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** Starts three nodes routed to each other. */
  static async start(size = 3): Promise<NatsCluster> {
    const clusterPorts: number[] = [];
    for (let i = 0; i < size; i++) clusterPorts.push(await freePort());
    const routes = clusterPorts.map((p) => `nats://127.0.0.1:${p}`).join(",");
    const starts = clusterPorts.map((cp, i) =>
      NatsServer.start({
        name: `node${i + 1}`,
        args: ["--cluster_name", "cnlink", "--cluster", `nats://127.0.0.1:${cp}`, "--routes", routes],
      })
    );
    return new NatsCluster(await Promise.all(starts));
  }

  /** Kills every node and removes their stores. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}
