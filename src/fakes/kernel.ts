/**
 * `FakeKernel`: the fake kernel's bus ({@linkcode FakeKernelCore}) with the fake families and the
 * clients on top, for tests of agents. It is the top of the fakes: the bus knows no family, each
 * family's fake lives beside its family (`src/proc/fake.ts`, `src/w1/fake_core.ts`), and this layer
 * puts them together through the clients' public seams (`Connector.over`, `ProcMonitor.over`,
 * `W1Bus.over`), as a user could.
 *
 * @module
 */
import { Connector } from "../connector/connector.ts";
import type { ConnectorOptions } from "../connector/types.ts";
import { checkConnectorOptions } from "../connector/connector.ts";
import { checkProcMonitorOptions, MONITOR_SLOT_SIZE, ProcMonitor, type ProcMonitorOptions } from "../proc/monitor.ts";
import { FakeProcEvents, type FakeProcOptions } from "../proc/fake.ts";
import { checkW1BusOptions, W1Bus } from "../w1/bus.ts";
import type { W1BusOptions } from "../w1/types.ts";
import { FakeW1Core, type FakeW1Options } from "../w1/fake_core.ts";
import { FakeKernelCore } from "../testing/fake_kernel.ts";
import type { Transport } from "../socket/transport.ts";

/** Builds a client over a new socket; closes the socket when that fails. */
async function over<T>(socket: Transport, build: (socket: Transport) => Promise<T>): Promise<T> {
  try {
    return await build(socket);
  } catch (err) {
    await socket.close();
    throw err;
  }
}

/**
 * A fake kernel connector. Connectors from {@linkcode FakeKernel.connect} talk to it as they would to
 * the real one; kernel-side agents are plain functions registered with `addCallback`; the fake
 * process-events connector and 1-Wire core are one call away ({@linkcode FakeKernel.enableProcEvents},
 * {@linkcode FakeKernel.enableW1}).
 *
 * @example Testing an agent that talks to a kernel-side echo
 * ```ts
 * import { FakeKernel } from "@cnlink/connector/testing";
 * import assert from "node:assert/strict";
 *
 * const kernel = new FakeKernel();
 * kernel.addCallback({ idx: 14, val: 0x456 }, "echo", (msg, ctx) => {
 *   ctx.kernel.send({ id: msg.id, seq: msg.seq, ack: msg.seq + 1, data: msg.data }, { to: { port: msg.source.port } });
 * });
 * await using conn = await kernel.connect();
 * const reply = await conn.request({ id: { idx: 14, val: 0x456 }, data: new Uint8Array([7]) });
 * assert.deepEqual([...reply.data], [7]);
 * assert.equal(reply.source.port, 0);
 * ```
 */
export class FakeKernel extends FakeKernelCore {
  /**
   * Opens a connector on this kernel, like `Connector.open` does on the real one (with the same
   * checks of its options, before a socket is made): `Connector.over` a new {@linkcode FakeKernelCore.socket}.
   * `libcPath` is accepted and unused.
   *
   * @returns the open connector
   * @throws {TypeError} an unknown option or a wrong type, as `Connector.open`
   * @throws {RangeError} a group, port, rcvbuf or limit out of range, as `Connector.open`
   * @throws {NetlinkError} EPERM for an even group when unprivileged, EADDRINUSE for a taken port
   *
   * @example
   * ```ts
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernel();
   * await using conn = await kernel.connect({ groups: [14] });
   * assert.deepEqual(kernel.members(14), [conn.port]);
   * ```
   */
  async connect(options?: ConnectorOptions): Promise<Connector> {
    const { groups, port, libcPath: _, ...rest } = checkConnectorOptions(options);
    return await over(this.socket({ groups, port }), (socket) => Connector.over(socket, rest));
  }

  /**
   * Opens a process-events monitor on this kernel (see {@linkcode FakeKernel.enableProcEvents}):
   * `ProcMonitor.over` a new socket that receives into 128-byte slots, as the real monitor's does.
   * `libcPath` is accepted and unused; the process table (`enrich`) reads nothing from `/proc`.
   *
   * @returns the subscribed monitor
   * @throws {TimeoutError} when no fake cn_proc acks the LISTEN
   * @throws {TypeError} bad options, as `ProcMonitor.open` (before a socket is made)
   *
   * @example
   * ```ts
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernel();
   * kernel.enableProcEvents();
   * await using monitor = await kernel.openProcMonitor({ timeoutMs: 500 });
   * assert.equal(monitor.closed, false);
   * ```
   */
  async openProcMonitor(options?: ProcMonitorOptions): Promise<ProcMonitor> {
    const { libcPath: _, ...rest } = checkProcMonitorOptions(options);
    rest.signal?.throwIfAborted();
    // Group 1 is joined by the monitor's handshake, as on the real kernel.
    return await over(this.socket({ slotSize: MONITOR_SLOT_SIZE }), (socket) => ProcMonitor.over(socket, rest));
  }

  /**
   * Installs a fake process-events connector (Linux >= 6.6 behaviour by default) and returns its control.
   *
   * @param options `ack: false` ignores LISTEN like a kernel in another namespace; `inputFilter: false` acts like a
   *   kernel before 6.6 (8-byte requests are dropped, every socket gets every event)
   *
   * @example
   * ```ts
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const proc = new FakeKernel().enableProcEvents({ inputFilter: false });
   * assert.equal(proc.listenerCount, 0);
   * ```
   */
  enableProcEvents(options?: FakeProcOptions): FakeProcEvents {
    return new FakeProcEvents(this, options ?? {});
  }

  /**
   * Installs a fake 1-Wire core at `{3, 1}` and returns its control (masters, devices, faults).
   *
   * @param options the slaves' time to live, reply splitting
   *
   * @example
   * ```ts
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const w1 = new FakeKernel().enableW1();
   * assert.equal(w1.addMaster(), 1);
   * ```
   */
  enableW1(options?: FakeW1Options): FakeW1Core {
    return new FakeW1Core(this, options);
  }

  /**
   * Opens a 1-Wire client on this kernel, like `W1Bus.open` does on the real one: `W1Bus.over` a new
   * connector.
   *
   * @returns the bus client
   * @throws {TypeError} an unknown option or a wrong type, as `W1Bus.open` (before a socket is made)
   *
   * @example
   * ```ts
   * import { FakeKernel } from "@cnlink/connector/testing";
   * import assert from "node:assert/strict";
   *
   * const kernel = new FakeKernel();
   * kernel.enableW1().addMaster();
   * await using bus = await kernel.openW1Bus({ bundle: false });
   * assert.deepEqual(await bus.listMasters(), [1]);
   * ```
   */
  async openW1Bus(options?: W1BusOptions): Promise<W1Bus> {
    const { bundle, libcPath: _, ...conn } = checkW1BusOptions(options);
    const connector = await this.connect(conn);
    try {
      return await W1Bus.over(connector, { bundle });
    } catch (err) {
      await connector.close();
      throw err;
    }
  }
}
