/**
 * The workaround for a kernel bug: while a slave add or remove waits for the master's lock, its
 * kernel thread is woken with requests that touch neither the bus nor the lock.
 *
 * @module
 */
import type { Connector } from "../connector/connector.ts";
import { encodeW1Messages, masterIdBytes, W1_COMMAND, W1_MESSAGE } from "../codec/w1.ts";
import type { W1Op } from "./types.ts";
import { W1_ID } from "./transaction.ts";

/** Commands that take the master's `mutex` in the kernel (see `nudge`). */
export const LOCKING_OPS = new Set<W1Op["op"]>(["add-slave", "remove-slave"]);
/** How long a slave add/remove may go unanswered before the master thread is woken. */
const NUDGE_MS = 100;

/**
 * Wakes the master's kernel thread every NUDGE_MS until `stop()`, with a request that touches
 * neither the bus nor the lock (LIST_SLAVES, whose replies are dropped).
 *
 * Why: in Linux 6.1 and 6.12 a netlink SEARCH that attaches a new slave leaves the master's
 * `mutex` held by the master thread (w1_attach_slave_device releases and retakes a lock that the
 * netlink search path never took). The next SLAVE_ADD/SLAVE_REMOVE, which takes that lock, then
 * waits in the thread until something wakes it again; it completes after the wake-up and
 * releases the lock, which also lets a later removal of the master (rmmod of its driver) go
 * through instead of hanging. Measured in the kernel lab (lab/tests/w1.test.ts).
 */
export function nudge(conn: Connector, master: number, nextSeq: () => number): { stop(): void } {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = () => {
    if (stopped || conn.closed) return;
    const data = encodeW1Messages([{
      type: W1_MESSAGE.MASTER_CMD,
      id: masterIdBytes(master),
      commands: [{ cmd: W1_COMMAND.LIST_SLAVES, data: new Uint8Array(0) }],
    }]);
    const seq = nextSeq();
    const ack = (seq + 0x80000000) >>> 0;
    conn.requestAll({ id: W1_ID, seq, ack, data }, {
      timeoutMs: 1000,
      match: (m) => m.source.port === 0 && m.seq === seq,
      until: (m) => m.ack === ack,
    }).catch(() => {});
    timer = setTimeout(tick, NUDGE_MS);
  };
  timer = setTimeout(tick, NUDGE_MS);
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
