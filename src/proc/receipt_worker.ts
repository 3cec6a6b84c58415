/**
 * The receipt worker: the thread that receives the process-events datagrams of an enriching monitor
 * and reads `/proc` for each exec as soon as it is received, before handing both to the JS thread.
 *
 * Why: an exec event carries no name, so a monitor races the process to `/proc`. Read from the JS
 * thread, the first read came 0.5-4 ms after the exec (a wake-up crossed the runtime's waiting
 * thread, and the JS thread competed with the burst for the CPU), and most children of a burst were
 * gone by then. This thread sleeps in poll() on the socket itself and reads at once, like forkstat's
 * C loop; the JS thread never blocks on a /proc read for an exec.
 *
 * Its loop: poll([socket, eventfd]); recvmmsg() up to 64 datagrams; for each exec among them read
 * cmdline and comm at once (the name is what a short-lived process loses first); again until EAGAIN;
 * then stat, status, exe and cgroup of those execs; then post the batch (the datagrams as received,
 * overruns where recvmmsg() reported them, and the files) as one transferred ArrayBuffer (layout:
 * receipt_format.ts). A read for exec E of process P is marked uncertain when a later exec of P was
 * received before the read was complete, or has a kernel timestamp up to UNCERTAIN_MARGIN_NS after
 * its end: the files may be the later program's, and the JS thread must not use them. (The kernel
 * renames the task and switches its memory early in exec, but sends the event only once the new
 * image is loaded: a read in between sees the later program while its event is not there yet. The
 * batch is held until the margin has passed, so that event arrives and marks the read.)
 *
 * It stops when the eventfd is written (close), and waits, without receiving, while
 * as many datagrams as the socket's buffer holds are not taken yet (the kernel's buffer then fills and reports the
 * overrun, as for a paused receive loop).
 *
 * It runs in its own thread, so receipt.ts ships {@linkcode receiptWorker} as source text
 * (`String(receiptWorker)`) in a Blob, as bun_poller_worker.ts does: the function may use nothing but
 * its arguments and globals (a module worker would be a module graph to load, and under `deno test`
 * to type-check, at every start: seconds under load). Keeping it here, as a function, lets lint and
 * both type-checkers see it. The layouts it writes by hand are those of src/ffi/batch.ts (recvmmsg)
 * and receipt_format.ts, passed in `setup.layout`.
 *
 * @module
 */
import type { ReceiptMessage, ReceiptSetup, ReceiptStart } from "./receipt_format.ts";

/** What the runtime glue gives the worker (see `WorkerFfi.open`). */
export interface WorkerLibc {
  // deno-lint-ignore no-explicit-any
  s: any;
  address(bytes: Uint8Array): bigint;
  errno: Int32Array;
}

interface Scope {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: ReceiptMessage, transfer?: Transferable[]): void;
  close?(): void;
}

/** The worker's whole body: started with its first message, `start`, and the runtime's way to open libc. */
export function receiptWorker(start: ReceiptStart, open: (path: string, symbols: unknown) => WorkerLibc): void {
  const scope = globalThis as unknown as Scope;
  const L = start.layout;
  const LE = true;
  const EINTR = 4, EAGAIN = 11, ENOBUFS = 105;
  const POLLIN = 1, MSG_DONTWAIT = 0x40, MSG_TRUNC = 0x20, O_RDONLY_CLOEXEC = 0o2000000;
  let lib: WorkerLibc;
  try {
    lib = open(start.path, start.symbols);
  } catch (err) {
    scope.postMessage({ type: "failed", op: "dlopen", errno: 0, message: String((err as Error)?.message ?? err) });
    return;
  }
  const { s, errno } = lib;
  // This thread races short-lived processes to /proc: give it the CPU first when the process may
  // (CAP_SYS_NICE, e.g. root); otherwise it keeps the process's priority. PRIO_PROCESS with a
  // thread id sets that thread's nice on Linux.
  const raised = s.setpriority(0, s.gettid(), start.nice) === 0;

  // recvmmsg() memory, as src/ffi/batch.ts lays it out: mmsghdr[64], iovec[64], sockaddr_nl[64], slots.
  const VECTOR = L.vector, SLOT = L.slot;
  const iovAt = VECTOR * 64, namesAt = iovAt + VECTOR * 16, dataAt = namesAt + VECTOR * 16;
  const memory = new Uint8Array(dataAt + VECTOR * SLOT);
  const mv = new DataView(memory.buffer);
  const base = lib.address(memory);
  for (let i = 0; i < VECTOR; i++) {
    mv.setBigUint64(i * 64, base + BigInt(namesAt + i * 16), LE);
    mv.setBigUint64(i * 64 + 16, base + BigInt(iovAt + i * 16), LE);
    mv.setBigUint64(i * 64 + 24, 1n, LE);
    mv.setBigUint64(iovAt + i * 16, base + BigInt(dataAt + i * SLOT), LE);
    mv.setBigUint64(iovAt + i * 16 + 8, BigInt(SLOT), LE);
  }
  const rearm = (n: number) => {
    for (let i = 0; i < n; i++) {
      mv.setUint32(i * 64 + 8, 12, LE); // msg_namelen = sizeof(sockaddr_nl)
      mv.setInt32(i * 64 + 48, 0, LE); // msg_flags
    }
  };
  rearm(VECTOR);

  // Reading files: open/read/close into one buffer that grows, never past `limit`.
  const encoder = new TextEncoder();
  let buffer = new Uint8Array(16384);
  const readFile = (path: string, limit: number): Uint8Array | null => {
    const fd = s.open(encoder.encode(path + "\0"), O_RDONLY_CLOEXEC);
    if (fd < 0) return null;
    let n = 0;
    try {
      while (n < limit) {
        if (n === buffer.byteLength) {
          const bigger = new Uint8Array(buffer.byteLength * 2);
          bigger.set(buffer);
          buffer = bigger;
        }
        const into = (limit < buffer.byteLength ? buffer.subarray(0, limit) : buffer).subarray(n);
        const r = s.read(fd, into, BigInt(into.byteLength));
        if (r === 0) break;
        if (r < 0) {
          if (errno[0] === EINTR) continue;
          return null;
        }
        n += r;
        // /proc's files (seq_file, cmdline) fill what was asked up to their end: a short read is
        // the end, and asking again would only return 0 (a system call per file saved).
        if (r < into.byteLength) break;
      }
    } finally {
      s.close(fd);
    }
    return buffer.subarray(0, n);
  };
  const readLink = (path: string): Uint8Array | null => {
    const r = s.readlink(encoder.encode(path + "\0"), buffer, BigInt(buffer.byteLength));
    return r < 0 ? null : buffer.subarray(0, r);
  };
  const timespec = new BigInt64Array(2);
  const monotonicNs = () => {
    s.clock_gettime(1, timespec);
    return timespec[0] * 1_000_000_000n + timespec[1];
  };

  scope.onmessage = (e: MessageEvent) => {
    scope.onmessage = null;
    try {
      run(e.data as ReceiptSetup);
      scope.postMessage({ type: "stopped" });
    } catch (err) {
      const f = err as { op?: string; errno?: number; message?: string };
      scope.postMessage({
        type: "failed",
        op: f.op ?? "receive",
        errno: f.errno ?? 0,
        message: String(f.message ?? err),
      });
    }
  };
  scope.postMessage({ type: "ready", raised });

  /** A read for an exec in the current batch. */
  interface Read {
    readonly index: number;
    readonly tgid: number;
    /** Where its file entries' flag words are, to mark them uncertain later. */
    readonly flags: number[];
    uncertain: boolean;
    /** When its last file was read (CLOCK_MONOTONIC ns), once all were. */
    endNs: bigint;
    done: boolean;
  }

  function run(setup: ReceiptSetup): void {
    const shared = new Int32Array(setup.shared);
    const fds = new Uint8Array(16);
    const fdsView = new DataView(fds.buffer);
    fdsView.setInt32(0, setup.socket, LE);
    fdsView.setInt16(4, POLLIN, LE);
    fdsView.setInt32(8, setup.wake, LE);
    fdsView.setInt16(12, POLLIN, LE);
    const slots = new DataView(memory.buffer, dataAt);
    let out = new Uint8Array(64 << 10);
    let ov = new DataView(out.buffer);
    let at = 0;
    const reserve = (n: number) => {
      if (at + n <= out.byteLength) return;
      let size = out.byteLength * 2;
      while (size < at + n) size *= 2;
      const bigger = new Uint8Array(size);
      bigger.set(out.subarray(0, at));
      out = bigger;
      ov = new DataView(out.buffer);
    };
    const u32 = (v: number) => {
      ov.setUint32(at, v, LE);
      at += 4;
    };
    let posted = 0;
    let count = 0; // datagrams in the current batch
    const reads = new Map<number, Read>(); // the latest read of each process in the current batch
    const due: Read[] = []; // reads whose second half (stat, status, exe, cgroup) is due
    const fresh: Read[] = [];
    // A later exec within this margin after a read's end marks it uncertain (see the hold below).
    const margin = BigInt(L.uncertainMarginNs);
    let lastEndNs = -margin;

    const uncertain = (read: Read) => {
      read.uncertain = true;
      for (const flag of read.flags) ov.setUint32(flag, L.fileUncertain, LE);
    };
    const file = (read: Read, index: number) => {
      const path = `/proc/${read.tgid}/${L.files[index]}`;
      const bytes = L.files[index] === "exe"
        ? readLink(path)
        : readFile(path, L.files[index] === "cmdline" ? L.cmdlineLimit + 1 : Infinity);
      reserve(L.fileHeader + (bytes ? bytes.byteLength + 3 : 0));
      u32(L.kindFile);
      u32(read.index);
      u32(index);
      read.flags.push(at);
      u32(read.uncertain ? L.fileUncertain : 0);
      u32(bytes ? bytes.byteLength : 0xffffffff);
      if (bytes) {
        out.set(bytes, at);
        at += (bytes.byteLength + 3) & ~3;
      }
    };
    const finish = () => {
      for (const read of due) {
        for (let index = 2; index < L.files.length; index++) file(read, index);
        read.endNs = lastEndNs = monotonicNs();
        read.done = true;
      }
      due.length = 0;
    };
    const post = () => {
      if (at === 0) return;
      const batch = out.buffer.slice(0, at) as ArrayBuffer;
      at = 0;
      scope.postMessage({ type: "batch", batch }, [batch]);
      posted = (posted + count) | 0;
      count = 0;
      reads.clear();
    };

    for (;;) {
      // Room for more? (The JS thread notifies TAKEN after each batch, and close() after STOP.)
      let room = 0;
      for (;;) {
        if (Atomics.load(shared, L.stop)) return;
        const taken = Atomics.load(shared, L.taken);
        room = Atomics.load(shared, L.limit) - ((posted - taken) | 0);
        if (room > 0) break;
        Atomics.wait(shared, L.taken, taken);
      }
      if (Atomics.load(shared, L.stop)) return;
      const p = s.poll(fds, 2n, -1);
      if (p < 0) {
        if (errno[0] === EINTR) continue;
        throw { op: "poll", errno: errno[0], message: "poll failed" };
      }
      if (fdsView.getInt16(14, LE) !== 0) return; // the eventfd: close()
      // Drain: vectors until EAGAIN, each exec's command line and name right after its vector; the
      // rest of the reads once drained.
      for (;;) {
        const n = s.recvmmsg(setup.socket, memory, VECTOR, MSG_DONTWAIT | MSG_TRUNC, null);
        if (n < 0) {
          const err = errno[0];
          if (err === EINTR) continue;
          if (err === ENOBUFS) {
            reserve(4);
            u32(L.kindOverrun);
            continue;
          }
          if (err !== EAGAIN) throw { op: "recvmmsg", errno: err, message: "recvmmsg failed" };
        }
        if (n <= 0) {
          if (due.length === 0) {
            // Hold the batch until the margin after the last read has passed: a later exec of the
            // same process that had begun (new name, new image) before the read, but whose event the
            // kernel sends only once the new image is loaded, comes meanwhile and marks it.
            const left = lastEndNs + margin - monotonicNs();
            if (left <= 0n) break;
            const q = s.poll(fds, 2n, Math.ceil(Number(left) / 1e6));
            if (q > 0 && fdsView.getInt16(14, LE) !== 0) return;
            continue;
          }
          // Drained: the second halves, then look again (events may have come meanwhile).
          finish();
          if (at >= L.batchBytes) break;
          continue;
        }
        fresh.length = 0;
        for (let i = 0; i < n; i++) {
          const length = mv.getUint32(i * 64 + 56, LE);
          const size = Math.min(length, SLOT);
          const truncated = length > SLOT || (mv.getInt32(i * 64 + 48, LE) & MSG_TRUNC) !== 0;
          const port = mv.getUint32(namesAt + i * 16 + 4, LE);
          reserve(L.datagramHeader + SLOT);
          u32(L.kindDatagram);
          u32(length);
          u32(size);
          u32(truncated ? 1 : 0);
          u32(port);
          u32(mv.getUint32(namesAt + i * 16 + 8, LE));
          const d = i * SLOT;
          out.set(memory.subarray(dataAt + d, dataAt + d + size), at);
          at += (size + 3) & ~3;
          // The kernel's exec events only (nlmsg_len 76, cb_id {1, 1}, cn_msg len 40, what EXEC);
          // the JS thread checks everything else.
          if (
            size === 76 && !truncated && port === 0 && slots.getUint32(d, LE) === 76 &&
            slots.getUint32(d + 16, LE) === 1 && slots.getUint32(d + 20, LE) === 1 &&
            slots.getUint16(d + 32, LE) === 40 && slots.getUint32(d + 36, LE) === L.procEventExec
          ) {
            const tgid = slots.getInt32(d + 56, LE);
            // An earlier read of this process not complete yet, or completed after this exec: its
            // files may be this exec's program.
            const earlier = reads.get(tgid);
            if (earlier && (!earlier.done || earlier.endNs + margin >= slots.getBigUint64(d + 44, LE))) {
              uncertain(earlier);
            }
            const read: Read = { index: count, tgid, flags: [], uncertain: false, endNs: 0n, done: false };
            reads.set(tgid, read);
            fresh.push(read);
          }
          count++;
        }
        rearm(n);
        for (const read of fresh) {
          file(read, 0);
          file(read, 1);
          due.push(read);
        }
        if (at >= L.batchBytes || count >= room) {
          finish();
          break;
        }
      }
      post();
    }
  }
}
