/**
 * Test helpers: an in-memory fake kernel, so agents built on `@cnlink/connector` can be tested
 * without root or a real connector.
 *
 * - {@linkcode FakeKernelCore}: the bus alone (sockets as transports, groups, kernel callbacks,
 *   receive-buffer accounting); build clients over its sockets with `Connector.over`,
 *   `ProcMonitor.over` and `W1Bus.over`.
 * - {@linkcode FakeKernel}: the bus with the conveniences `connect()`, `openProcMonitor()`,
 *   `openW1Bus()` and the fake families (`enableProcEvents()`, `enableW1()`).
 *
 * @example
 * ```ts
 * import { FakeKernel } from "@cnlink/connector/testing";
 * import assert from "node:assert/strict";
 *
 * const kernel = new FakeKernel();
 * await using conn = await kernel.connect({ groups: [14] });
 * kernel.send({ id: { idx: 14, val: 0x456 }, seq: 1, data: new TextEncoder().encode("counter = 1") });
 * const { value } = await conn.messages().next();
 * assert.equal(value?.source.group, 14);
 * ```
 *
 * @module
 */
export {
  FakeKernelCore,
  type FakeKernelOptions,
  type FakeSocketInfo,
  type FakeSocketOptions,
  type KernelCallback,
  type KernelCallbackContext,
  type KernelCallbackRegistration,
  type KernelDestination,
  type KernelMessage,
} from "./src/testing/fake_kernel.ts";
export { FakeKernel } from "./src/fakes/kernel.ts";
export { FakeProcEvents, type FakeProcOptions, type ProcOp } from "./src/proc/fake.ts";
export { FakeW1Core, type FakeW1Device, type FakeW1Options } from "./src/w1/fake_core.ts";
export {
  type FakeDs18b20,
  fakeDs18b20,
  type FakeDs18b20Options,
  type FakeDs2408,
  fakeDs2408,
  type FakeDs2413,
  fakeDs2413,
  type FakeDs2423,
  fakeDs2423,
  fakeDs2431,
  type FakeDs2438,
  fakeDs2438,
} from "./src/w1/fake_devices.ts";
