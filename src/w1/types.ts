/**
 * Public types of the 1-Wire family.
 *
 * @module
 */
import type { ConnectorOptions } from "../connector/types.ts";
import type { ReceiveStats } from "../core/types.ts";
import type { ByteInput } from "../args.ts";
import type { W1Id } from "../codec/w1.ts";

/**
 * Where a transaction runs: on a bus master (the commands drive the bus as they are, including
 * `reset`), or on one slave (the kernel resets the bus and selects the slave with MATCH ROM first;
 * only `read`, `write` and `touch` are allowed).
 */
export type W1Target = { master: number } | { slave: W1Id | string };

/** One command of a transaction. */
export type W1Op =
  | { op: "reset" }
  | { op: "write"; data: ByteInput }
  | { op: "read"; length: number }
  | { op: "touch"; data: ByteInput }
  | { op: "search" }
  | { op: "alarm-search" }
  | { op: "list-slaves" }
  | { op: "add-slave"; id: W1Id | string }
  | { op: "remove-slave"; id: W1Id | string };

/** The result of one command. */
export interface W1Result {
  /** The command. */
  op: W1Op["op"];
  /** Bytes read (`read`), or the bytes the bus gave back (`touch`); empty for the others. */
  data: Uint8Array;
  /** The ROM ids found (`search`, `alarm-search`) or attached (`list-slaves`); empty for the others. */
  ids: W1Id[];
}

/** Options of one request to the w1 core. */
export interface W1RequestOptions {
  /** How long to wait for all replies; default 5000 ms. */
  timeoutMs?: number;
  /** Cancels the wait (the kernel still runs the commands it received). */
  signal?: AbortSignal;
}

/** Options of {@linkcode W1Bus.open}. */
export interface W1BusOptions
  extends Pick<ConnectorOptions, "rcvbuf" | "libcPath" | "onError" | "onOverrun" | "maxQueued" | "maxQueuedBytes"> {
  /**
   * Ask the kernel to bundle a request's replies into one datagram (`W1_CN_BUNDLE`); default true.
   * The results are the same either way.
   */
  bundle?: boolean;
}

/** Options of {@linkcode W1Bus.over}: the bus's own; the rest are the connector's. */
export type W1BusOverOptions = Pick<W1BusOptions, "bundle">;

/** A bus event, multicast by the w1 core to group 3. */
export type W1Event =
  | {
    /** A slave was attached (found by a search, or added) or detached. */
    type: "slave-added" | "slave-removed";
    /** The slave. */
    id: W1Id;
    /** The master's event counter (`cn_msg.seq`). */
    seq: number;
  }
  | {
    /** A bus master was registered or removed. */
    type: "master-added" | "master-removed";
    /** The master's id, as `listMasters()` gives it. */
    master: number;
    /** The master's event counter (`cn_msg.seq`). */
    seq: number;
  };

/** Options of {@linkcode W1Bus.events}. */
export interface W1EventsOptions {
  /** Ends the iteration quietly when aborted. */
  signal?: AbortSignal;
}

/**
 * Counters of a bus client: the connector's receive counters, under the same names, with what the
 * bus itself set aside added in: `foreign` also counts messages to group 3 that did not come from the
 * kernel (a root process can send there; not events), `malformed` also counts messages from the
 * kernel whose 1-Wire payload did not decode (ignored; `undecodable` before 0.3.0).
 */
export interface W1Stats extends ReceiveStats {
  /** Callbacks of the connector that threw. */
  callbackErrors: number;
  /** Messages no request or iterator wanted (late replies, replies to the nudges). */
  unhandled: number;
}
