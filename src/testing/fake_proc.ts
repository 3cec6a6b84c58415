/**
 * A fake `cn_proc` for the fake kernel: acks LISTEN/IGNORE, keeps a per-socket filter like Linux >= 6.6,
 * and multicasts events you emit to group 1 with per-CPU sequence numbers.
 *
 * @module
 */
import { encodeMessage } from "../codec/cn_msg.ts";
import { CN_IDX_PROC, CN_VAL_PROC } from "../codec/constants.ts";
import { decodeProcInput } from "../codec/proc.ts";
import { PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL } from "../proc/constants.ts";
import { encodeProcEvent, type ProcEvent } from "../proc/event.ts";
import { passes } from "../proc/filter.ts";
import type { FakeKernel, KernelMessage } from "./fake_kernel.ts";
import { checkOptions, checkType } from "../args.ts";

/** Options of `FakeKernel.enableProcEvents`. */
export interface FakeProcOptions {
  /** Ack LISTEN/IGNORE (default true). `false` behaves like a kernel that ignores a foreign namespace. */
  ack?: boolean;
  /** Understand the 8-byte `proc_input` filter, like Linux >= 6.6 (default true). */
  inputFilter?: boolean;
}

/** One LISTEN/IGNORE the fake cn_proc received. */
export interface ProcOp {
  /** Sender port. */
  port: number;
  /** `PROC_CN_MCAST_LISTEN` (1), `PROC_CN_MCAST_IGNORE` (2) or anything else a client sent. */
  op: number;
  /** The event mask (PROC_EVENT_ALL for 4-byte requests). */
  mask: number;
}

const PROC_ID = { idx: CN_IDX_PROC, val: CN_VAL_PROC };

/**
 * Control of the fake process-events connector.
 *
 * @example Feeding a monitor under test
 * ```ts
 * import { FakeKernel } from "@cnlink/connector/testing";
 * import assert from "node:assert/strict";
 *
 * const kernel = new FakeKernel();
 * const proc = kernel.enableProcEvents();
 * await using monitor = await kernel.openProcMonitor({ events: ["exec"] });
 * proc.emit({ type: "exec", cpu: 0, timestampNs: 1n, seq: 0, pid: 42, tgid: 42 });
 * const { value } = await monitor[Symbol.asyncIterator]().next();
 * assert.equal(value?.type === "exec" && value.pid, 42);
 * ```
 */
export class FakeProcEvents implements Disposable {
  readonly #kernel: FakeKernel;
  readonly #options: Required<FakeProcOptions>;
  readonly #filters = new Map<number, ProcOp>();
  readonly #seq = new Map<number, number>();
  readonly #registration: Disposable;
  /** Every LISTEN/IGNORE received, in order. */
  readonly ops: ProcOp[] = [];

  /**
   * Registers the fake cn_proc on `kernel`; prefer `kernel.enableProcEvents()`.
   *
   * @param kernel the fake kernel
   * @param options ack and filter behaviour
   * @throws {TypeError} an unknown option or a non-boolean flag
   */
  constructor(kernel: FakeKernel, options?: FakeProcOptions) {
    const opts = checkOptions("FakeProcEvents options", options, ["ack", "inputFilter"]);
    checkType(opts.ack, "ack", "boolean");
    checkType(opts.inputFilter, "inputFilter", "boolean");
    this.#kernel = kernel;
    this.#options = { ack: options?.ack ?? true, inputFilter: options?.inputFilter ?? true };
    this.#registration = kernel.addCallback(PROC_ID, "cn_proc", (m) => this.#control(m));
  }

  #control(m: KernelMessage): void {
    let input;
    try {
      input = decodeProcInput(m.data);
    } catch {
      return; // the kernel ignores other lengths
    }
    let op: ProcOp;
    if (input.events === undefined) op = { port: m.senderPort, op: input.op, mask: PROC_EVENT_ALL };
    else if (this.#options.inputFilter) {
      const mask = (input.events & PROC_EVENT_ALL) >>> 0;
      op = { port: m.senderPort, op: input.op, mask: mask === 0 ? PROC_EVENT_ALL : mask };
    } else return;
    this.ops.push(op);
    if (this.#options.inputFilter) this.#filters.set(op.port, op);
    if (!this.#options.ack) return;
    const err = op.op === PROC_CN_MCAST_LISTEN || op.op === PROC_CN_MCAST_IGNORE ? 0 : 22;
    this.#multicast({ type: "ack", cpu: 0, timestampNs: 0n, seq: 0, ack: m.ack + 1, err }, (m.ack + 1) >>> 0);
  }

  /** Ports currently subscribed (last op LISTEN). */
  get listeners(): number[] {
    return [...this.#filters.values()].filter((f) => f.op === PROC_CN_MCAST_LISTEN).map((f) => f.port);
  }

  /**
   * Multicasts `event` to group 1, through each socket's filter, numbered by its CPU's counter.
   *
   * @param event the event (its `seq` is ignored: the per-CPU counter is used)
   * @param skip bump the CPU's counter by this many first, as if messages had been lost
   * @returns the sequence number it was sent with
   */
  emit(event: ProcEvent, skip = 0): number {
    return this.#multicast(event, 0, skip);
  }

  #multicast(event: ProcEvent, ack: number, skip = 0): number {
    const seq = ((this.#seq.get(event.cpu) ?? 0) + skip) >>> 0;
    this.#seq.set(event.cpu, (seq + 1) >>> 0);
    const datagram = encodeMessage({ id: PROC_ID, seq, ack, data: encodeProcEvent(event) });
    for (const port of this.#kernel.members(CN_IDX_PROC)) {
      const state = this.#filters.get(port);
      if (state) {
        if (state.op === PROC_CN_MCAST_IGNORE) continue;
        if (event.type === "ack" ? state.mask !== PROC_EVENT_ALL : !passes(event, state.mask)) continue;
      }
      this.#kernel.sendRaw(datagram, { to: { port }, from: { port: 0, groups: 1 } });
    }
    return seq;
  }

  /** Unregisters the fake cn_proc. */
  [Symbol.dispose](): void {
    this.#registration[Symbol.dispose]();
  }
}
