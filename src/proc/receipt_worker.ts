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
 * Its sockets: the monitor's (every event, in order) and its own exec-only socket, a second
 * process-events socket whose BPF filter passes exec events only (opened here; without it, e.g.
 * when it cannot be opened, the monitor's socket plays both parts). Idle, it sleeps in
 * poll([eventfd, exec-only, socket]). Once datagrams came it is busy: it sleeps in
 * poll([eventfd, exec-only]) for up to COALESCE_MS (1 ms after a batch that took a quarter of what
 * the socket's buffer holds; less when a wake-up of the JS thread is due sooner), so that it wakes
 * at once for an exec (the race) and only once per period for forks, exits and the rest (a wake-up
 * and its context switch cost more CPU than what it takes; a period without any datagram makes it
 * idle again).
 *
 * What a wake-up does: recvmmsg() what the exec-only socket holds, and for each exec read cmdline
 * and stat at once (the name is what a short-lived process loses first; the name, comm, is taken
 * from stat's second field, which is the same task->comm /proc/PID/comm prints: one read saved);
 * then recvmmsg() the socket into the batch, up to 64 datagrams at a time, until it is drained;
 * each of its execs gets the read made for it (matched by pid and kernel timestamp), or one at
 * once when the exec-only socket did not show it; then cgroup and exe of those execs; then put the
 * batch (the datagrams as received, overruns where recvmmsg() reported them, and the files) in the
 * ring shared with the JS thread (layout and ring: receipt_format.ts). Just before, it reads the
 * cgroup of each process that forked or exited in the batch, once each: the process table needs it
 * for every fork (the child starts in its parent's cgroup) and exit (a process may move), and a
 * shell's burst of forks then costs one read instead of one per fork on the JS thread; a process
 * whose exec was read in the same batch takes that read's cgroup (a few ms old) instead. Then it
 * wakes the JS thread: at once if it was last woken NOTIFY_MS ago or more, else when that period
 * ends (or before this thread waits for room), so that while batches keep coming the JS thread
 * wakes once per period and takes them all.
 *
 * A read for exec E of process P is marked uncertain when a later exec of P was seen before the
 * read was complete, or has a kernel timestamp up to UNCERTAIN_MARGIN_NS after its end: the files
 * may be the later program's, and the JS thread must not use them. (The kernel renames the task
 * and switches its memory early in exec, but sends the event only once the new image is loaded: a
 * read in between sees the later program while its event is not there yet. The batch is held
 * until the margin has passed, so that event arrives and marks the read.)
 *
 * A process's reads stop at the first file missing because the process is gone (ENOENT, ESRCH):
 * the rest would fail too, a system call each. Paths are built in one reused buffer, and files are
 * read straight into the batch.
 *
 * It stops when the eventfd is written (close), and waits, without receiving, while as many
 * datagrams as the socket's buffer holds are not taken yet (the kernel's buffer then fills and
 * reports the overrun, as for a paused receive loop), or while the ring has no room.
 *
 * The loop is a few small functions, not one large one (an earlier, lost version of this change saw
 * V8 deoptimize and recompile the one large function again and again). CPU per event against the
 * monitor before enrichment at receipt (4a171ca): bench/README.md, "CPU per event of enrichment at
 * receipt".
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
  const ENOENT = 2, ESRCH = 3, EINTR = 4, EAGAIN = 11, ENOBUFS = 105;
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

  // The batch being built: entries as receipt_format.ts lays them out, in a buffer that grows.
  let out = new Uint8Array(64 << 10);
  let ov = new DataView(out.buffer);
  let at = 0;
  /** Makes room for `n` more bytes after `at` (the buffer may be replaced: views of it go stale). */
  const reserve = (n: number) => {
    if (at + n <= out.byteLength) return;
    let size = out.byteLength * 2;
    while (size < at + n) size *= 2;
    const bigger = new Uint8Array(size);
    // All of it: a read may be filling bytes past `at`.
    bigger.set(out);
    out = bigger;
    ov = new DataView(out.buffer);
  };
  const u32 = (v: number) => {
    ov.setUint32(at, v, LE);
    at += 4;
  };

  // Paths: "/proc/PID/NAME\0" in one buffer, reused: the directory once per read, the name per file.
  const FILES = L.files;
  const CMDLINE = FILES.indexOf("cmdline"), COMM = FILES.indexOf("comm"), STAT = FILES.indexOf("stat");
  const EXE = FILES.indexOf("exe"), CGROUP = FILES.indexOf("cgroup");
  // The second half, in this order: cgroup before exe, whose link a zombie no longer has.
  const LATER = [CGROUP, EXE];
  const encoder = new TextEncoder();
  const names = FILES.map((name) => encoder.encode(`${name}\0`));
  const path = new Uint8Array(64);
  path.set(encoder.encode("/proc/"));
  let dirEnd = 0;
  const directory = (tgid: number) => {
    let digits = 1;
    for (let v = tgid; v >= 10; v = Math.floor(v / 10)) digits++;
    for (let i = 5 + digits, v = tgid; i > 5; i--, v = Math.floor(v / 10)) path[i] = 48 + (v % 10);
    path[6 + digits] = 0x2f; // "/"
    dirEnd = 7 + digits;
  };
  const pathOf = (file: number) => {
    path.set(names[file], dirEnd);
    return path;
  };

  // What reading a file gave: its length, or one of these.
  const FAILED = -1, GONE = -2;
  const failure = () => {
    const err = errno[0];
    return err === ENOENT || err === ESRCH ? GONE : FAILED;
  };
  /** Reads file `file` (its path set) into the batch at `into`, up to `limit` bytes: its length, FAILED or GONE. */
  const readInto = (file: number, into: number, limit: number): number => {
    const fd = s.open(pathOf(file), O_RDONLY_CLOEXEC);
    if (fd < 0) return failure();
    let n = 0;
    while (n < limit) {
      const end = into + n;
      if (out.byteLength - end < 4096 + 4) reserve(end + 4096 + 4 - at);
      const want = Math.min(limit - n, out.byteLength - end - 4);
      // The length as a BigInt: Deno's fast path for a size_t takes nothing else (a number takes
      // the slow path, and optimized code that saw one is thrown away).
      const r = s.read(fd, out.subarray(end, end + want), BigInt(want));
      if (r === 0) break;
      if (r < 0) {
        if (errno[0] === EINTR) continue;
        n = failure();
        break;
      }
      n += r;
      // /proc's files (seq_file, cmdline) fill what was asked up to their end: a short read is
      // the end, and asking again would only return 0 (a system call per file saved).
      if (r < want) break;
    }
    s.close(fd);
    return n;
  };
  const readLinkInto = (file: number, into: number): number => {
    reserve(into + 4096 + 4 - at);
    const r = s.readlink(pathOf(file), out.subarray(into, into + 4096), 4096n);
    return r < 0 ? failure() : r;
  };
  // CLOCK_MONOTONIC in ns as a number (exact for 104 days of uptime), read through 32-bit halves:
  // no BigInt is made per read (each is an allocation the worker's heap collects).
  const timespec = new BigInt64Array(2);
  const halves = new Uint32Array(timespec.buffer);
  const monotonicNs = () => {
    s.clock_gettime(1, timespec);
    return (halves[0] + halves[1] * 2 ** 32) * 1e9 + halves[2];
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
    /** Its datagram's index in the batch, or UNLINKED until the main socket gives the datagram. */
    index: number;
    readonly tgid: number;
    /** The exec's kernel timestamp (CLOCK_MONOTONIC ns): with tgid, which exec it is. */
    readonly stampNs: number;
    /** The read of an earlier exec of the same process in this batch. */
    readonly earlier: Read | undefined;
    /** Where its file entries' flag words are, to mark them uncertain later (the index is 8 bytes before). */
    readonly flags: number[];
    uncertain: boolean;
    /** A file was missing because the process is gone: nothing more is read. */
    gone: boolean;
    /** When its last file was read (CLOCK_MONOTONIC ns), once all were. */
    endNs: number;
    done: boolean;
    /** Where its cgroup file's bytes are in the batch, and how many (-1: not read, or it failed). */
    cgroupAt: number;
    cgroupLength: number;
  }

  /** Starts a file entry of `read` for `file` at `at`; returns where its bytes go. */
  const entry = (read: Read, file: number): number => {
    reserve(L.fileHeader);
    u32(L.kindFile);
    u32(read.index);
    u32(file);
    read.flags.push(at);
    u32(read.uncertain ? L.fileUncertain : 0);
    u32(0xffffffff);
    return at;
  };
  /** Ends the entry whose bytes start at `into`: `n` bytes, or FAILED/GONE (length -1). */
  const ended = (read: Read, into: number, n: number) => {
    if (n < 0) {
      if (n === GONE) read.gone = true;
      at = into;
      return;
    }
    ov.setUint32(into - 4, n, LE);
    at = into + ((n + 3) & ~3);
  };
  const file = (read: Read, file: number) => {
    const into = entry(read, file);
    const n = file === EXE
      ? readLinkInto(file, into)
      : readInto(file, into, file === CMDLINE ? L.cmdlineLimit + 1 : L.fileLimit);
    if (file === CGROUP && n >= 0) {
      read.cgroupAt = into;
      read.cgroupLength = n;
    }
    ended(read, into, n);
  };
  /**
   * The name from the stat entry that ends at `at`: /proc/PID/stat's second field is the same
   * task name /proc/PID/comm shows (both print it unescaped, up to 64 bytes for kernel workers), in
   * parentheses; the name itself may hold ")" and spaces, so it ends at the last ")". Written as a
   * comm entry, with comm's newline: one file read per exec saved.
   */
  const commFromStat = (read: Read, from: number, n: number) => {
    let open = from;
    while (open < from + n && out[open] !== 0x28) open++;
    let close = from + n - 1;
    while (close > open && out[close] !== 0x29) close--;
    if (close <= open) return; // not a stat line: comm stays unread (null)
    const length = close - open - 1;
    reserve(L.fileHeader + length + 4);
    const into = entry(read, COMM);
    out.copyWithin(into, open + 1, close);
    out[into + length] = 0x0a;
    ended(read, into, length + 1);
  };
  /** The first half, at once: the command line, then stat (and the name in it). */
  const firstHalf = (read: Read) => {
    directory(read.tgid);
    file(read, CMDLINE);
    if (read.gone) return;
    const into = entry(read, STAT);
    const n = readInto(STAT, into, L.fileLimit);
    ended(read, into, n);
    if (n > 0) commFromStat(read, into, n);
  };
  /** The second half, once the socket is drained: cgroup, exe, unless the process is gone. */
  const secondHalf = (read: Read) => {
    if (!read.gone) {
      directory(read.tgid);
      for (let i = 0; i < LATER.length && !read.gone; i++) file(read, LATER[i]);
    }
  };

  /**
   * Opens the exec-only socket: NETLINK_CONNECTOR, bound to group 1 (process events), with a
   * classic BPF filter that keeps a datagram only when its event is an exec (`what`, the u32 at
   * byte 36: nlmsghdr 16 + cn_msg 20; BPF loads are big-endian, hence the swapped constant). No
   * LISTEN is sent on it: the main socket's subscription makes the kernel send, and on kernels with
   * per-socket filters (6.6 and later) a socket that never sent LISTEN gets every event (which the
   * BPF filter then narrows). Returns the fd, or -errno.
   */
  const openExecSocket = (): number => {
    const AF_NETLINK = 16, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0o2000000, NETLINK_CONNECTOR = 11;
    const SOL_SOCKET = 1, SO_ATTACH_FILTER = 26;
    const fd = s.socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    if (fd < 0) return -errno[0];
    const address = new Uint8Array(12);
    const av = new DataView(address.buffer);
    av.setUint16(0, AF_NETLINK, LE);
    av.setUint32(8, 1, LE); // groups: bit 0, group 1 (CN_IDX_PROC)
    const program = new Uint8Array(4 * 8);
    const pv = new DataView(program.buffer);
    const insn = (i: number, code: number, jt: number, jf: number, k: number) => {
      pv.setUint16(i * 8, code, LE);
      pv.setUint8(i * 8 + 2, jt);
      pv.setUint8(i * 8 + 3, jf);
      pv.setUint32(i * 8 + 4, k, LE);
    };
    insn(0, 0x20, 0, 0, 36); // ld [36]       (BPF_LD | BPF_W | BPF_ABS)
    insn(1, 0x15, 0, 1, ((L.procEventExec & 0xff) << 24) >>> 0); // jeq exec, accept, drop
    insn(2, 0x06, 0, 0, 0xffff); // ret 0xffff (keep the datagram)
    insn(3, 0x06, 0, 0, 0); // ret 0 (drop it)
    const fprog = new Uint8Array(16);
    const fv = new DataView(fprog.buffer);
    fv.setUint16(0, 4, LE);
    fv.setBigUint64(8, lib.address(program), LE);
    if (s.setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog, 16) < 0 || s.bind(fd, address, 12) < 0) {
      const err = errno[0];
      s.close(fd);
      return -err;
    }
    return fd;
  };

  function run(setup: ReceiptSetup): void {
    const opened = start.execSocket ? openExecSocket() : -1;
    const execs = opened >= 0 ? opened : -1;
    scope.postMessage({ type: "watching", ok: execs >= 0, errno: start.execSocket && opened < 0 ? -opened : 0 });
    try {
      loop(setup, execs);
    } finally {
      if (execs >= 0) s.close(execs);
    }
  }

  /** Receives from `setup.socket` (and the exec-only socket `execs`, or -1) until stopped. */
  function loop(setup: ReceiptSetup, execs: number): void {
    const shared = new Int32Array(setup.shared);
    const ring = new Uint8Array(setup.ring);
    const rv = new DataView(setup.ring);
    const ringMask = ring.byteLength - 1;
    let head = 0;
    // poll() set: the eventfd, what is watched while busy (the exec-only socket, or the socket
    // itself without one), the socket. Idle: all three; busy: the first two.
    const fds = new Uint8Array(24);
    const fdsView = new DataView(fds.buffer);
    fdsView.setInt32(0, setup.wake, LE);
    fdsView.setInt16(4, POLLIN, LE);
    fdsView.setInt32(8, execs >= 0 ? execs : setup.socket, LE);
    fdsView.setInt16(12, POLLIN, LE);
    fdsView.setInt32(16, setup.socket, LE);
    fdsView.setInt16(20, POLLIN, LE);
    const slots = new DataView(memory.buffer, dataAt);
    let posted = 0;
    let count = 0; // datagrams in the current batch
    // Entries of the current batch: its datagrams and overruns, in order. The JS thread numbers them
    // so (an overrun is an entry of its own), and a read names its datagram by this number.
    let entries = 0;
    const reads = new Map<number, Read>(); // the latest read of each process in the current batch
    const due: Read[] = []; // reads whose second half is due
    // Processes whose cgroup the table needs for a fork or an exit of the current batch: read once
    // each, when the batch is posted (after every datagram of it was received).
    const cgroupDue = new Set<number>();
    const fresh: Read[] = [];
    // A later exec within this margin after a read's end marks it uncertain (see the hold below).
    const margin = L.uncertainMarginNs;
    let lastEndNs = -margin;
    let stopped = false;
    // Waking the JS thread: at once for the first batch after it was last woken NOTIFY_MS ago or
    // more; later batches wait in the ring (`owed`) until that period has passed, or until this
    // thread waits for the JS thread (room in the ring, or to take more datagrams).
    const notifyNs = L.notifyMs * 1e6;
    let notifiedNs = -notifyNs;
    let owed = false;
    const wakeJs = () => {
      owed = false;
      // The JS thread has taken everything already (it was awake): nothing to wake it for.
      if (Atomics.load(shared, L.tail) === head) return;
      notifiedNs = monotonicNs();
      Atomics.notify(shared, L.head);
    };
    /** The poll() timeout until the owed wake-up is due (0: due now), or -1 when none is owed. */
    const owedMs = () => owed ? Math.max(0, Math.ceil((notifiedNs + notifyNs - monotonicNs()) / 1e6)) : -1;
    /**
     * A poll() timeout of `ms` (-1: none), shortened to when the owed wake-up of the JS thread is
     * due; one due now is done first.
     */
    const untilOwed = (ms: number): number => {
      const due = owedMs();
      if (due === 0) wakeJs();
      return due <= 0 ? ms : ms < 0 ? due : Math.min(ms, due);
    };

    const uncertain = (read: Read) => {
      read.uncertain = true;
      for (const flag of read.flags) ov.setUint32(flag, L.fileUncertain, LE);
    };
    const link = (read: Read, index: number) => {
      read.index = index;
      for (const flag of read.flags) ov.setUint32(flag - 8, index, LE);
    };
    const finish = () => {
      for (const read of due) {
        secondHalf(read);
        read.endNs = lastEndNs = monotonicNs();
        read.done = true;
      }
      due.length = 0;
    };
    /**
     * Reads the cgroup of each process in `cgroupDue` once, after every datagram of the batch was
     * received: what it gives is as recent as a read made for each of the batch's forks and exits
     * when it is handled (this thread's read replaces the JS thread's, and a shell's burst of forks
     * costs one read, not one per fork).
     */
    const readCgroups = () => {
      for (const tgid of cgroupDue) {
        // An exec of the process read in this batch read its cgroup a few ms ago (or found it gone):
        // that serves, without another read.
        const exec = reads.get(tgid);
        const known = exec !== undefined && (exec.cgroupAt >= 0 || exec.gone);
        reserve(L.cgroupHeader + (known && exec.cgroupLength > 0 ? exec.cgroupLength + 4 : 0));
        u32(L.kindCgroup);
        u32(tgid);
        u32(0xffffffff);
        const into = at;
        let n = -1;
        if (known) {
          if (exec.cgroupAt >= 0) out.copyWithin(into, exec.cgroupAt, exec.cgroupAt + (n = exec.cgroupLength));
        } else {
          directory(tgid);
          n = readInto(CGROUP, into, L.fileLimit);
        }
        if (n >= 0) {
          ov.setUint32(into - 4, n, LE);
          at = into + ((n + 3) & ~3);
        }
      }
      cgroupDue.clear();
    };
    /** Waits for `need` bytes of room in the ring, contiguous or after a wrap; false when stopped. */
    const ringRoom = (need: number): boolean => {
      for (;;) {
        if (Atomics.load(shared, L.stop)) return false;
        const tail = Atomics.load(shared, L.tail);
        const toEnd = ring.byteLength - (head & ringMask);
        const total = need <= toEnd ? need : toEnd + need;
        if (ring.byteLength - ((head - tail) | 0) >= total) return true;
        // Always: the ring holds what the JS thread has not taken, perhaps the first chunks of
        // this very batch, which no wake-up was owed for yet (it would wait for them forever).
        wakeJs();
        Atomics.wait(shared, L.tail, tail);
      }
    };
    /** Puts `n` bytes of the batch from `from` in the ring as one chunk (`more`: the batch goes on). */
    const put = (from: number, n: number, more: boolean): boolean => {
      const need = L.chunkHeader + n;
      if (!ringRoom(need)) return false;
      let pos = head & ringMask;
      if (need > ring.byteLength - pos) {
        rv.setUint32(pos, L.ringWrap, LE);
        head = (head + ring.byteLength - pos) | 0;
        pos = 0;
      }
      rv.setUint32(pos, n, LE);
      rv.setUint32(pos + 4, more ? 1 : 0, LE);
      ring.set(out.subarray(from, from + n), pos + L.chunkHeader);
      head = (head + need) | 0;
      Atomics.store(shared, L.head, head);
      return true;
    };
    /**
     * Hands the batch over through the ring, in chunks of at most half of it, and wakes the JS
     * thread, or owes it the wake-up (see `wakeJs`).
     */
    const post = () => {
      if (at === 0) return;
      readCgroups();
      for (let from = 0; from < at;) {
        const n = Math.min(at - from, L.chunkBytes);
        if (!put(from, n, from + n < at)) {
          stopped = true;
          return;
        }
        from += n;
      }
      owed = true;
      if (owedMs() === 0) wakeJs();
      at = 0;
      posted = (posted + count) | 0;
      count = 0;
      entries = 0;
      reads.clear();
    };
    /** Waits until the JS thread has room for more datagrams; the room, or 0 when stopped. */
    const room = (): number => {
      for (;;) {
        if (Atomics.load(shared, L.stop)) return 0;
        const taken = Atomics.load(shared, L.taken);
        const left = Atomics.load(shared, L.limit) - ((posted - taken) | 0);
        if (left > 0) return left;
        if (owed) wakeJs();
        Atomics.wait(shared, L.taken, taken);
      }
    };
    /** The real length of datagram `i` of the vector, and whether it was cut to its slot. */
    const lengthAt = (i: number) => mv.getUint32(i * 64 + 56, LE);
    const truncatedAt = (i: number) => lengthAt(i) > SLOT || (mv.getInt32(i * 64 + 48, LE) & MSG_TRUNC) !== 0;
    /** The `what` of the kernel's process event in slot `i` of the vector, or -1 for anything else. */
    const eventAt = (i: number): number => {
      const d = i * SLOT;
      // nlmsg_len 76, cb_id {1, 1}, cn_msg len 40, from the kernel (port 0); the JS thread checks
      // everything else.
      if (
        lengthAt(i) === 76 && !truncatedAt(i) && mv.getUint32(namesAt + i * 16 + 4, LE) === 0 &&
        slots.getUint32(d, LE) === 76 && slots.getUint32(d + 16, LE) === 1 && slots.getUint32(d + 20, LE) === 1 &&
        slots.getUint16(d + 32, LE) === 40
      ) {
        return slots.getUint32(d + 36, LE);
      }
      return -1;
    };
    /** The kernel's exec event in slot `i` of the vector (its tgid), or -1. */
    const execAt = (i: number): number => eventAt(i) === L.procEventExec ? slots.getInt32(i * SLOT + 56, LE) : -1;
    /**
     * Notes the process whose cgroup the JS thread's table needs for the event in slot `i` (`what`):
     * the parent of a process forked (its child starts in the parent's cgroup of now), a process
     * exiting (it may have moved since it was read).
     */
    const cgroupNeeded = (i: number, what: number) => {
      const d = i * SLOT;
      // fork: parent_pid 52, parent_tgid 56, child_pid 60, child_tgid 64 (a thread: pid != tgid).
      if (what === L.procEventFork && slots.getInt32(d + 60, LE) === slots.getInt32(d + 64, LE)) {
        cgroupDue.add(slots.getInt32(d + 56, LE));
      } // exit: process_pid 52, process_tgid 56 (a thread's exit: pid != tgid).
      else if (what === L.procEventExit && slots.getInt32(d + 52, LE) === slots.getInt32(d + 56, LE)) {
        cgroupDue.add(slots.getInt32(d + 56, LE));
      }
    };
    const stampAt = (i: number) => slots.getUint32(i * SLOT + 44, LE) + slots.getUint32(i * SLOT + 48, LE) * 2 ** 32;
    /**
     * An exec of `tgid` stamped `stampNs` was seen, on the exec-only socket (`index` UNLINKED) or
     * in the batch at `index`: matches it with its read, or starts one (in `fresh`).
     */
    const sighted = (tgid: number, stampNs: number, index: number) => {
      const latest = reads.get(tgid);
      for (let r = latest; r; r = r.earlier) {
        if (r.stampNs !== stampNs) continue;
        // Seen on the other socket already: the datagram gets its read.
        if (index !== L.unlinked && r.index === L.unlinked) link(r, index);
        return;
      }
      // An earlier read of this process not complete yet, or completed after this exec: its
      // files may be this exec's program.
      if (latest && latest.stampNs < stampNs && (!latest.done || latest.endNs + margin >= stampNs)) {
        uncertain(latest);
      }
      const read: Read = {
        index,
        tgid,
        stampNs,
        earlier: latest,
        flags: [],
        // Read after a later exec of the process was seen: it may show that program.
        uncertain: latest !== undefined && latest.stampNs > stampNs,
        gone: false,
        endNs: 0,
        cgroupAt: -1,
        cgroupLength: -1,
        done: false,
      };
      reads.set(tgid, read);
      fresh.push(read);
    };
    /** Copies datagram `i` of the vector into the batch; an exec of the kernel's gets a read. */
    const take = (i: number) => {
      const length = lengthAt(i);
      const size = Math.min(length, SLOT);
      const truncated = truncatedAt(i);
      reserve(L.datagramHeader + SLOT);
      u32(L.kindDatagram);
      u32(length);
      u32(size);
      u32(truncated ? 1 : 0);
      u32(mv.getUint32(namesAt + i * 16 + 4, LE));
      u32(mv.getUint32(namesAt + i * 16 + 8, LE));
      const d = i * SLOT;
      out.set(memory.subarray(dataAt + d, dataAt + d + size), at);
      at += (size + 3) & ~3;
      const what = eventAt(i);
      if (what === L.procEventExec) sighted(slots.getInt32(d + 56, LE), stampAt(i), entries);
      else if (what >= 0) cgroupNeeded(i, what);
      count++;
      entries++;
    };
    /** Reads the first halves of the execs just seen. */
    const readFresh = () => {
      for (const read of fresh) {
        firstHalf(read);
        due.push(read);
      }
      fresh.length = 0;
    };
    /**
     * Takes what the exec-only socket holds: each exec's first half is read at once, before its
     * datagram is taken from the socket (which may not even have it yet).
     */
    const drainExecs = () => {
      if (execs < 0) return;
      for (;;) {
        const n = s.recvmmsg(execs, memory, VECTOR, MSG_DONTWAIT | MSG_TRUNC, null);
        if (n < 0) {
          const err = errno[0];
          // An overrun here loses wake-ups only: the socket has every datagram, and an exec it
          // gives without a read yet gets one then.
          if (err === EINTR || err === ENOBUFS) continue;
          if (err === EAGAIN) return;
          throw { op: "recvmmsg", errno: err, message: "recvmmsg of the exec-only socket failed" };
        }
        if (n === 0) return;
        for (let i = 0; i < n; i++) {
          const tgid = execAt(i);
          if (tgid >= 0) sighted(tgid, stampAt(i), L.unlinked);
        }
        rearm(n);
        readFresh();
        if (n < VECTOR) return;
      }
    };
    /** Takes what the socket holds into the batch, up to `limit` datagrams in it; how many it took. */
    const drainSocket = (limit: number): number => {
      let got = 0;
      for (;;) {
        const n = s.recvmmsg(setup.socket, memory, VECTOR, MSG_DONTWAIT | MSG_TRUNC, null);
        if (n < 0) {
          const err = errno[0];
          if (err === EINTR) continue;
          if (err === ENOBUFS) {
            reserve(4);
            u32(L.kindOverrun);
            entries++;
            got++;
            continue;
          }
          if (err === EAGAIN) return got;
          throw { op: "recvmmsg", errno: err, message: "recvmmsg failed" };
        }
        if (n === 0) return got;
        for (let i = 0; i < n; i++) take(i);
        rearm(n);
        readFresh();
        got += n;
        // A vector not filled: the socket was drained when it was taken (what came since, the
        // next poll() finds): a recvmmsg() that would find nothing is saved.
        if (at >= L.batchBytes || count >= limit || n < VECTOR) return got;
      }
    };
    /**
     * poll() of the first `n` fds (2: what is watched while busy; 3: all) for up to `ms` (-1: no
     * limit). How many fds are ready, or -1 when a signal interrupted it; sets `stopped` when
     * close() woke it.
     */
    const watch = (n: bigint, ms: number): number => {
      const ready = s.poll(fds, n, ms);
      if (ready < 0) {
        if (errno[0] === EINTR) return -1;
        throw { op: "poll", errno: errno[0], message: "poll failed" };
      }
      if (fdsView.getInt16(6, LE) !== 0) stopped = true;
      return ready;
    };
    /**
     * Builds a batch: the execs' first halves, the socket's datagrams, the second halves; again
     * while the margin after the last read has not passed (a later exec of the same process that
     * had begun, new name, new image, before the read, but whose event the kernel sends only once
     * the new image is loaded, comes meanwhile and marks it). How many datagrams it took.
     */
    const build = (limit: number): number => {
      let got = 0;
      for (;;) {
        drainExecs();
        got += drainSocket(limit);
        finish();
        if (stopped || at >= L.batchBytes || count >= limit) return got;
        const left = lastEndNs + margin - monotonicNs();
        if (left <= 0) return got;
        // A stream of execs may hold this batch a long time: the previous one's wake-up is not.
        watch(2n, untilOwed(Math.ceil(left / 1e6)));
        if (stopped) return got;
      }
    };

    // Idle, it sleeps until anything comes. Busy (the last batch had datagrams), it wakes for an
    // exec at once (the race to /proc) and for the rest once per period (COALESCE_MS): a stream of
    // forks and exits costs a wake-up per period, not per datagram; a shorter one (1 ms) after a
    // batch that took a quarter of what the socket's buffer holds (LIMIT), so that a fast stream
    // does not fill it meanwhile. Without the exec-only socket, it wakes for every datagram.
    let busy = false;
    let periodMs: number = L.coalesceMs;
    while (!stopped) {
      // Room for more? (The JS thread notifies TAKEN after each batch, and close() after STOP.)
      const limit = room();
      if (limit === 0 || Atomics.load(shared, L.stop)) return;
      // A wake-up of the JS thread that is owed bounds the sleep; once due, it is done first.
      const ready = busy ? watch(2n, untilOwed(periodMs)) : watch(3n, untilOwed(-1));
      if (ready < 0) continue;
      if (stopped) return; // the eventfd: close()
      // Idle, nothing came: only the owed wake-up was due (the next turn does it).
      if (!busy && ready === 0) continue;
      const got = build(limit);
      if (stopped) return;
      // Execs read for datagrams the socket did not give (an overrun lost them): their entries
      // stay UNLINKED, and the JS thread skips them.
      post();
      busy = execs >= 0 && got > 0;
      periodMs = got * 4 > Atomics.load(shared, L.limit) ? 1 : L.coalesceMs;
    }
  }
}
