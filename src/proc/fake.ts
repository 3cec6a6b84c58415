/**
 * A fake `cn_proc` for the fake kernel: acks LISTEN/IGNORE, keeps a per-socket filter like Linux >= 6.6,
 * keeps the kernel's global listener count, and multicasts events you emit to group 1 with per-CPU
 * sequence numbers.
 *
 * As in the kernel (verified on 6.18 by `tests/differential.test.ts`): the ack of a request is a
 * `PROC_EVENT_NONE` event with `ack` = the request's ack + 1 and `err` 0, or EINVAL (22) for an op
 * that is neither LISTEN nor IGNORE; it is multicast to group 1 through each socket's filter, so the
 * sender of IGNORE, and of a LISTEN with a mask narrower than every event, does not get it, while a
 * socket that never sent a request gets everything. Requests of another length are ignored. No ack
 * and no event is sent while the global listener count is below 1 (it counts LISTENs less IGNOREs;
 * from 6.6 only changes of a socket's op count).
 *
 * @module
 */
import { encodeMessage } from "../codec/cn_msg.ts";
import { CN_IDX_PROC, CN_VAL_PROC } from "../codec/constants.ts";
import { decodeProcInput } from "../codec/proc.ts";
import { PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL } from "./constants.ts";
import { encodeProcEvent, type ProcEvent } from "./event.ts";
import { passes } from "./filter.ts";
import type { FakeKernelCore, KernelCallbackRegistration, KernelMessage } from "../testing/fake_kernel.ts";
import { checkOptions, checkType } from "../args.ts";
import { Errno } from "../errors.ts";

/** Options of `FakeKernel.enableProcEvents`. */
export interface FakeProcOptions {
  /** Ack LISTEN/IGNORE (default true). `false` behaves like a kernel that ignores a foreign namespace. */
  ack?: boolean;
  /**
   * Understand the 8-byte `proc_input` filter, like Linux >= 6.6 (default true). `false` acts like an
   * older kernel: 8-byte requests are dropped without an ack, every member of group 1 gets every ack
   * and event, and every LISTEN / IGNORE moves the listener count.
   */
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
  readonly #kernel: FakeKernelCore;
  readonly #options: Required<FakeProcOptions>;
  readonly #filters = new Map<number, ProcOp>();
  readonly #seq = new Map<number, number>();
  readonly #registration: KernelCallbackRegistration;
  #listeners = 0;
  /** Every LISTEN/IGNORE received, in order. */
  readonly ops: ProcOp[] = [];

  /**
   * Registers the fake cn_proc on `kernel`; prefer `kernel.enableProcEvents()`.
   *
   * @param kernel the fake kernel
   * @param options ack and filter behaviour
   * @throws {TypeError} an unknown option or a non-boolean flag
   */
  constructor(kernel: FakeKernelCore, options?: FakeProcOptions) {
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
    if (input.events === undefined) op = { port: m.source.port, op: input.op, mask: PROC_EVENT_ALL };
    else if (this.#options.inputFilter) {
      const mask = (input.events & PROC_EVENT_ALL) >>> 0;
      op = { port: m.source.port, op: input.op, mask: mask === 0 ? PROC_EVENT_ALL : mask };
    } else return;
    this.ops.push(op);
    if (this.#options.inputFilter) {
      // cn_proc_mcast_ctl from 6.6: a socket counts once while its last op is LISTEN.
      const previous = this.#filters.get(op.port)?.op;
      if (op.op === PROC_CN_MCAST_LISTEN && previous !== PROC_CN_MCAST_LISTEN) this.#listeners++;
      if (op.op === PROC_CN_MCAST_IGNORE && previous !== undefined && previous !== PROC_CN_MCAST_IGNORE) {
        this.#listeners--;
      }
      this.#filters.set(op.port, op);
    } else if (op.op === PROC_CN_MCAST_LISTEN) this.#listeners++;
    else if (op.op === PROC_CN_MCAST_IGNORE) this.#listeners--;
    if (!this.#options.ack) return;
    const err = op.op === PROC_CN_MCAST_LISTEN || op.op === PROC_CN_MCAST_IGNORE ? 0 : Errno.EINVAL;
    this.#multicast({ type: "ack", cpu: 0, timestampNs: 0n, seq: 0, ack: m.ack + 1, err }, (m.ack + 1) >>> 0);
  }

  /**
   * The kernel's global count of process-event listeners (`proc_event_num_listeners`): while it is
   * below 1, no acks and no events are sent. Unbalanced requests move it for good, as in the kernel.
   */
  get listenerCount(): number {
    return this.#listeners;
  }

  /** Ports currently subscribed (last op LISTEN). */
  get listeners(): number[] {
    return [...this.#filters.values()].filter((f) => f.op === PROC_CN_MCAST_LISTEN).map((f) => f.port);
  }

  /**
   * Multicasts `event` to group 1, through each socket's filter, numbered by its CPU's counter. Like
   * the kernel, sends nothing while no one listens (`listenerCount` below 1).
   *
   * @param event the event (its `seq` is ignored: the per-CPU counter is used)
   * @param skip bump the CPU's counter by this many first, as if messages had been lost
   * @returns the sequence number it was sent with, or -1 when no one listens (nothing was sent)
   */
  emit(event: ProcEvent, skip = 0): number {
    return this.#multicast(event, 0, skip);
  }

  #multicast(event: ProcEvent, ack: number, skip = 0): number {
    if (this.#listeners < 1) return -1;
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
    this.#registration.close();
  }
}
