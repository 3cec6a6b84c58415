/**
 * Test helpers: an in-memory fake kernel, so agents built on `@cnlink/connector` can be tested
 * without root or a real connector.
 *
 * @example
 * ```ts
 * import { FakeKernel } from "@cnlink/connector/testing";
 * import assert from "node:assert/strict";
 *
 * const kernel = new FakeKernel();
 * await using conn = kernel.connect({ groups: [14] });
 * kernel.send({ id: { idx: 14, val: 0x456 }, seq: 1, data: new TextEncoder().encode("counter = 1") });
 * const { value } = await conn.messages().next();
 * assert.equal(value?.source.group, 14);
 * ```
 *
 * @module
 */
export {
  FakeKernel,
  type FakeKernelOptions,
  type FakeSocketInfo,
  type KernelCallbackContext,
  type KernelDestination,
  type KernelMessage,
} from "./src/testing/fake_kernel.ts";
export { FakeProcEvents, type FakeProcOptions, type ProcOp } from "./src/testing/fake_proc.ts";
export {
  type FakeDs18b20,
  fakeDs18b20,
  type FakeDs18b20Options,
  fakeDs2431,
  FakeW1Core,
  type FakeW1Device,
  type FakeW1Options,
} from "./src/testing/fake_w1.ts";
export {
  type FakeDs2408,
  fakeDs2408,
  type FakeDs2413,
  fakeDs2413,
  type FakeDs2423,
  fakeDs2423,
  type FakeDs2438,
  fakeDs2438,
} from "./src/testing/fake_w1_devices.ts";
