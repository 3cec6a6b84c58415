/**
 * One 1-Wire request's replies, as the kernel's w1 core sends them (see `bus.ts`): data replies
 * (`ack = seq + 1`) fill the results of the command whose status comes next, a status per command
 * (`ack` = the request's) moves on to the next, and a status without a command fails the whole
 * message. {@linkcode TransactionReplies} is that state machine; `orNoCore` turns a silent timeout
 * into the hint to load the w1 core.
 *
 * @module
 */
import type { ConnectorMessage } from "../connector/types.ts";
import { CN_W1_IDX, CN_W1_VAL } from "../codec/constants.ts";
import { W1_COMMAND, type W1Id, w1IdFromBytes, type W1NetlinkCommand, type W1NetlinkMessage } from "../codec/w1.ts";
import { Errno, TimeoutError } from "../errors.ts";
import type { ResolvedTarget } from "./args.ts";
import { W1Error } from "./error.ts";
import type { W1Op, W1Result } from "./types.ts";

/** The w1 core's connector id. */
export const W1_ID = { idx: CN_W1_IDX, val: CN_W1_VAL } as const;

const COMMAND_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(W1_COMMAND).map(([name, value]) => [value, `W1_CMD_${name}`]),
);

const ID_OPS = new Set<W1Op["op"]>(["search", "alarm-search", "list-slaves"]);

/**
 * What a timeout without a single reply means: no w1 core in the kernel to answer (the connector drops
 * messages for an id nobody registered without a word; seen on the host's 6.18 without the wire module).
 * With the core loaded, every request is answered, also for a master that does not exist (ENODEV).
 */
const NO_W1_CORE = "nothing answered: the kernel's 1-Wire core is probably not loaded (modprobe wire, on a " +
  "kernel with CONFIG_W1 and CONFIG_W1_CON), or the command took longer than timeoutMs (a search that " +
  "attaches many devices answers only when it is done: 32 attaches took over 5 s on Debian's 6.1)";

/** Runs an exchange; a timeout before any reply came becomes a TimeoutError that says to load the w1 core. */
export async function orNoCore<T>(
  exchange: Promise<T>,
  replied: () => boolean,
  what: string,
  timeoutMs: number | undefined,
): Promise<T> {
  try {
    return await exchange;
  } catch (err) {
    if (err instanceof TimeoutError && !replied()) {
      throw new TimeoutError(`No reply from the kernel's 1-Wire core to ${what}`, timeoutMs ?? 5000, NO_W1_CORE);
    }
    throw err;
  }
}

function idsIn(data: Uint8Array): W1Id[] {
  const ids: W1Id[] = [];
  for (let at = 0; at + 8 <= data.byteLength; at += 8) ids.push(w1IdFromBytes(data.subarray(at, at + 8)));
  return ids;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.byteLength === 0) return b.slice();
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

function hintFor(status: number, target: ResolvedTarget, select: boolean): string | undefined {
  if (status !== Errno.ENODEV) return undefined;
  if ("master" in target) return "no bus master has that id (listMasters() gives them)";
  return select
    ? "no device answered the reset before the select: the bus is empty or broken"
    : "the kernel has no slave with that id attached: a search attaches what it finds (or addSlave)";
}

/**
 * The replies to one transaction: feed each reply's decoded messages to `take` (it says when the last
 * came), then `outcome()` gives the results or throws the first failure with them.
 */
export class TransactionReplies {
  /** Each command's result so far. */
  readonly results: W1Result[];
  readonly #ops: readonly W1Op[];
  readonly #commands: readonly W1NetlinkCommand[];
  readonly #target: ResolvedTarget;
  readonly #ack: number;
  readonly #what: string;
  readonly #statuses: { index: number; status: number }[] = [];
  #messageError: number | undefined;
  #selectFailed = false;
  #next = 0; // the command whose status comes next
  /** Whether any reply came. */
  replied = false;

  /**
   * @param ops the commands as the caller gave them
   * @param commands their wire form
   * @param target where they run
   * @param ack the request's `ack` (statuses echo it; data replies carry `seq + 1`)
   * @param what what is being done, for the error message
   */
  constructor(
    ops: readonly W1Op[],
    commands: readonly W1NetlinkCommand[],
    target: ResolvedTarget,
    ack: number,
    what: string,
  ) {
    this.#ops = ops;
    this.#commands = commands;
    this.#target = target;
    this.#ack = ack;
    this.#what = what;
    this.results = ops.map((op) => ({ op: op.op, data: new Uint8Array(0), ids: [] }));
  }

  /** Takes one reply (its w1 messages decoded); true when it was the last. */
  take(reply: ConnectorMessage, messages: readonly W1NetlinkMessage[]): boolean {
    this.replied = true;
    const onSlave = "slave" in this.#target;
    const results = this.results;
    for (const w of messages) {
      if (reply.ack === this.#ack) {
        // A status: with its command, or for the whole message.
        if (w.commands.length === 0) {
          this.#messageError = w.status;
          return true;
        }
        if (onSlave && w.status === Errno.ENODEV && this.#next === 0) this.#selectFailed = true;
        this.#statuses.push({ index: this.#next, status: w.status });
        this.#next++;
        if (this.#selectFailed) return true;
      } else {
        for (const c of w.commands) {
          const result = results[Math.min(this.#next, results.length - 1)];
          if (ID_OPS.has(result.op)) result.ids.push(...idsIn(c.data));
          else result.data = concat(result.data, c.data);
        }
      }
    }
    return this.#next >= this.#ops.length;
  }

  /**
   * The results, once every reply came.
   *
   * @throws {W1Error} the message failed (no such master or slave, a failed select), or a command did
   */
  outcome(): W1Result[] {
    const { results } = this;
    const messageOp = "slave" in this.#target ? "W1_SLAVE_CMD" : "W1_MASTER_CMD";
    if (this.#messageError !== undefined) {
      const hint = hintFor(this.#messageError, this.#target, false);
      throw new W1Error(this.#what, messageOp, this.#messageError, { results, hint });
    }
    if (this.#selectFailed) {
      throw new W1Error(this.#what, messageOp, Errno.ENODEV, {
        results,
        hint: hintFor(Errno.ENODEV, this.#target, true),
      });
    }
    const failed = this.#statuses.find((s) => s.status !== 0);
    if (failed) {
      const cmd = this.#commands[failed.index].cmd;
      throw new W1Error(this.#what, COMMAND_NAMES[cmd], failed.status, {
        index: failed.index,
        results,
        hint: failed.status === 255 ? "check the wiring and the pull-up, or search the bus again" : undefined,
      });
    }
    return results;
  }
}
