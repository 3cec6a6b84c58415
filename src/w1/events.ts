/**
 * The 1-Wire bus events (slaves and masters added and removed, multicast by the w1 core to group 3)
 * as an async iterator over a connector's messages.
 *
 * @module
 */
import type { Connector } from "../connector/connector.ts";
import type { ConnectorMessage } from "../connector/types.ts";
import { CN_W1_IDX } from "../codec/constants.ts";
import { LITTLE_ENDIAN } from "../codec/netlink.ts";
import { W1_MESSAGE, w1IdFromBytes, type W1NetlinkMessage } from "../codec/w1.ts";
import type { W1Event } from "./types.ts";
import { W1_ID } from "./transaction.ts";

/** The group the w1 core multicasts bus events to (its idx). */
export const W1_GROUP = CN_W1_IDX;

/**
 * The events in the w1 messages multicast to group 3, from the kernel only: a plain iterator over
 * the connector's stream (not an async generator), so that `return()` ends a pending `next()` at
 * once, as the connector's own iterators do.
 *
 * @param conn the connector, in group 3
 * @param signal ends the iteration quietly
 * @param fromKernel whether a message is the kernel's (and counts it when not)
 * @param decode the w1 messages of a message (counting one that does not decode)
 */
export function w1Events(
  conn: Connector,
  signal: AbortSignal | undefined,
  fromKernel: (m: ConnectorMessage) => boolean,
  decode: (m: ConnectorMessage) => W1NetlinkMessage[],
): AsyncIterableIterator<W1Event> {
  const messages = conn.messages({ id: W1_ID, signal });
  const pending: W1Event[] = [];
  const iterator: AsyncIterableIterator<W1Event> = {
    next: async (): Promise<IteratorResult<W1Event>> => {
      while (pending.length === 0) {
        const r = await messages.next();
        if (r.done) return { done: true, value: undefined };
        const m = r.value;
        if (m.source.group !== W1_GROUP) continue; // a reply to a request: not an event
        if (!fromKernel(m)) continue;
        for (const w of decode(m)) {
          const event = eventOf(w, m.seq);
          if (event) pending.push(event);
        }
      }
      return { done: false, value: pending.shift()! };
    },
    return: async (): Promise<IteratorResult<W1Event>> => {
      pending.length = 0;
      await messages.return?.();
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}

function eventOf(w: W1NetlinkMessage, seq: number): W1Event | undefined {
  switch (w.type) {
    case W1_MESSAGE.SLAVE_ADD:
      return { type: "slave-added", id: w1IdFromBytes(w.id), seq };
    case W1_MESSAGE.SLAVE_REMOVE:
      return { type: "slave-removed", id: w1IdFromBytes(w.id), seq };
    case W1_MESSAGE.MASTER_ADD:
    case W1_MESSAGE.MASTER_REMOVE: {
      const master = new DataView(w.id.buffer, w.id.byteOffset, 4).getUint32(0, LITTLE_ENDIAN);
      return { type: w.type === W1_MESSAGE.MASTER_ADD ? "master-added" : "master-removed", master, seq };
    }
    default:
      return undefined;
  }
}
