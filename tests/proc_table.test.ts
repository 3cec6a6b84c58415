/**
 * The process table's own logic against a fake /proc: parents and impostors, what exec keeps,
 * withheld reads, reconciling after a loss and seeded zombies. What the kernel does is tested in
 * tests/proc_table_kernel.test.ts; these pin the rules the table applies to it.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ProcessInfo, ProcessTable, type ProcEvent, type ProcStat } from "../proc.ts";

const MS = 1_000_000n;

/** A fake /proc: processes with a stat, a cgroup and thread names; `gone()` takes one away. */
class FakeProc {
  readonly procs = new Map<number, { info: ProcessInfo; stat: ProcStat; threads?: Record<number, string> }>();
  /** Each read of a process: its pid, and whether the ids were asked for. */
  readonly reads: { pid: number; ids: boolean }[] = [];
  /** Each pid whose cgroup was read on its own. */
  readonly cgroupReads: number[] = [];

  add(pid: number, ppid: number, startMs: number, extra: Partial<ProcessInfo> = {}, state = "S"): void {
    const startNs = BigInt(startMs) * MS;
    this.procs.set(pid, {
      info: {
        pid,
        ppid,
        startNs,
        comm: `p${pid}`,
        cmdline: [`/bin/p${pid}`],
        exe: `/bin/p${pid}`,
        cgroup: "/a",
        ...extra,
      },
      stat: { state, ppid, startNs },
    });
  }

  gone(pid: number): void {
    this.procs.delete(pid);
  }

  table(): ProcessTable {
    return new ProcessTable({
      list: () => [...this.procs.keys()],
      read: (pid, _boot, options) => {
        const ids = options?.ids !== false;
        this.reads.push({ pid, ids });
        const p = this.procs.get(pid);
        if (!p) {
          return {
            pid,
            missing: ids
              ? ["comm", "cmdline", "exe", "uid", "stat", "cgroup"]
              : ["comm", "cmdline", "exe", "stat", "cgroup"],
          };
        }
        const info = structuredClone(p.info);
        if (!ids) {
          delete info.uid;
          delete info.user;
          delete info.gid;
        }
        return info;
      },
      reader: {
        stat: (pid) => this.procs.get(pid)?.stat,
        taskComm: (tgid, tid) => this.procs.get(tgid)?.threads?.[tid],
        cgroup: (pid) => {
          this.cgroupReads.push(pid);
          const cgroup = this.procs.get(pid)?.info.cgroup;
          return cgroup === undefined ? undefined : { cgroup };
        },
      },
    });
  }
}

const base = (ms: number) => ({ cpu: 0, timestampNs: BigInt(ms) * MS, seq: 0 });
const fork = (parent: number, child: number, ms: number, thread = parent): ProcEvent => ({
  type: "fork",
  ...base(ms),
  parentPid: thread,
  parentTgid: parent,
  childPid: child,
  childTgid: child,
});
const exec = (pid: number, ms: number): ProcEvent => ({ type: "exec", ...base(ms), pid, tgid: pid });
const exit = (pid: number, ms: number, code = 0): ProcEvent => ({
  type: "exit",
  ...base(ms),
  pid,
  tgid: pid,
  exitCode: code,
  exitSignal: 17,
  parentPid: 0,
  parentTgid: 0,
});

describe("parents", () => {
  test("a parent's exit gives its children the parent /proc names now", () => {
    const proc = new FakeProc();
    proc.add(1, 0, 0);
    proc.add(10, 1, 100);
    const table = proc.table();
    table.scan();
    proc.add(20, 10, 200);
    table.apply(fork(10, 20, 200));
    assert.equal(table.get(20)?.ppid, 10);
    // The kernel re-parents 20 to init before it sends 10's exit.
    proc.gone(10);
    proc.procs.get(20)!.stat.ppid = 1;
    table.apply(exit(10, 300));
    assert.equal(table.get(20)?.ppid, 1);
    assert.deepEqual(table.ancestry(20).map((p) => p.pid), [1, 20]);
  });

  test("exec takes /proc's parent, fresher than the fork's; a fork's parent is the event's", () => {
    const proc = new FakeProc();
    proc.add(1, 0, 0);
    proc.add(10, 1, 100);
    const table = proc.table();
    table.scan();
    table.apply(fork(10, 20, 200));
    proc.add(20, 1, 200); // re-parented before its exec, its parent's exit not seen yet
    table.apply(exec(20, 250));
    assert.equal(table.get(20)?.ppid, 1);
  });

  test("ancestry stops below a parent that started after its child: a reused pid is no ancestor", () => {
    const proc = new FakeProc();
    proc.add(1, 0, 0);
    proc.add(10, 1, 100);
    proc.add(20, 10, 200);
    const table = proc.table();
    table.scan();
    // 10 ends unseen (its exit lost) and its pid goes to a new process, started later than 20.
    proc.add(10, 1, 5000);
    table.apply(fork(1, 10, 5000));
    assert.deepEqual(table.ancestry(20).map((p) => p.pid), [20]);
    assert.deepEqual(table.ancestry(10).map((p) => p.pid), [1, 10]);
  });
});

describe("exec", () => {
  test("the ids of a process seen before are not read at its exec: they are the fork's, or a uid/gid event's", () => {
    const proc = new FakeProc();
    proc.add(10, 1, 100, { uid: 1000, user: "alice", gid: 100 });
    const table = proc.table();
    table.scan();
    table.apply(fork(10, 20, 200));
    // The child changes its real ids (setresuid(): the kernel sends a uid event), then execs.
    proc.add(20, 10, 200, { uid: 65534, user: "nobody", gid: 65534 });
    table.apply({ type: "uid", ...base(210), pid: 20, tgid: 20, ruid: 65534, euid: 65534 });
    table.apply({ type: "gid", ...base(211), pid: 20, tgid: 20, rgid: 65534, egid: 65534 });
    proc.reads.length = 0;
    const e = table.apply(exec(20, 250))!;
    assert.deepEqual(proc.reads, [{ pid: 20, ids: false }], "status is not asked for");
    assert.equal(e.uid, 65534);
    assert.equal(e.gid, 65534);
    assert.equal(e.missing, undefined, "the ids are not reported missing");
    // A process the table did not know: its ids are read.
    proc.add(30, 1, 300, { uid: 7, gid: 8 });
    proc.reads.length = 0;
    const unknown = table.apply(exec(30, 350))!;
    assert.deepEqual(proc.reads, [{ pid: 30, ids: true }]);
    assert.equal(unknown.uid, 7);
  });

  test("an exec's cgroup read at receipt is not the last word: the process's next fork reads it again", () => {
    const proc = new FakeProc();
    proc.add(10, 1, 100, { cgroup: "/old" });
    const table = proc.table();
    table.scan();
    table.apply(exec(10, 150)); // read at receipt: "/old"
    proc.procs.get(10)!.info.cgroup = "/moved"; // it moves itself right after (echo $$ > cgroup.procs)
    table.apply(fork(10, 20, 200)); // same batch
    assert.equal(table.get(20)?.cgroup, "/moved");
  });

  test("what exec does not change is kept when /proc is gone at the exec; the program's fields are not", () => {
    const proc = new FakeProc();
    proc.add(10, 1, 100, { cgroup: "/system.slice/docker-x.scope", uid: 1000, user: "alice" });
    const table = proc.table();
    table.scan();
    table.apply(fork(10, 20, 200));
    const got = table.apply(exec(20, 210))!; // 20 is not in the fake /proc: gone
    assert.equal(got.cgroup, "/system.slice/docker-x.scope");
    assert.equal(got.uid, 1000);
    assert.equal(got.ppid, 10);
    assert.equal(got.startNs, 200n * MS);
    assert.equal(got.cmdline, undefined, "not the parent's command line");
    assert.equal(got.comm, undefined);
    assert.deepEqual(got.missing, ["comm", "cmdline", "exe", "stat"]);
  });

  test("a read whose start time is another process's is not taken", () => {
    const proc = new FakeProc();
    proc.add(10, 1, 100);
    const table = proc.table();
    table.scan();
    table.apply(fork(10, 20, 200));
    proc.add(20, 1, 900); // the pid already belongs to a later process
    const got = table.apply(exec(20, 210))!;
    assert.equal(got.cmdline, undefined);
    assert.equal(got.startNs, 200n * MS);
  });

  test("two execs of one pid in one received batch: the first one's read is withheld, named uncertain", () => {
    const proc = new FakeProc();
    proc.add(10, 1, 100);
    const table = proc.table();
    table.scan();
    table.apply(fork(10, 20, 200));
    proc.add(20, 10, 200, { cmdline: ["sleep", "1"], comm: "sleep", exe: "/bin/sleep" });
    const first = table.apply(exec(20, 210))!;
    const second = table.apply(exec(20, 220))!;
    assert.equal(first.cmdline, undefined);
    assert.deepEqual(first.uncertain, ["comm", "cmdline", "exe"]);
    assert.deepEqual(second.cmdline, ["sleep", "1"]);
    // Once the batch went to the consumer, a later exec (stamped after the read) leaves it alone.
    table.settle();
    const third = table.apply(exec(20, 5000))!;
    assert.deepEqual(second.cmdline, ["sleep", "1"]);
    assert.equal(third.uncertain, undefined);
  });

  test("a child forked by a thread gets the thread's name, or none when it cannot be read", () => {
    const proc = new FakeProc();
    proc.add(10, 1, 100, { comm: "leader" });
    proc.procs.get(10)!.threads = { 11: "worker" };
    const table = proc.table();
    table.scan();
    assert.equal(table.apply(fork(10, 20, 200, 11))?.comm, "worker");
    assert.equal(table.apply(fork(10, 21, 200))?.comm, "leader");
    const unread = table.apply(fork(10, 22, 200, 12))!;
    assert.equal(unread.comm, undefined);
    assert.ok(unread.missing?.includes("comm"));
  });
});

describe("size", () => {
  test("after a loss, processes gone from /proc leave at the second sweep unless seen in between", () => {
    const proc = new FakeProc();
    for (const pid of [1, 10, 11, 12]) proc.add(pid, 1, pid);
    const table = proc.table();
    table.scan();
    proc.gone(10);
    proc.gone(11);
    proc.add(30, 1, 3000); // started unseen
    table.lost();
    assert.ok(table.sweepDue);
    table.sweep();
    assert.ok(table.get(10) && table.get(11), "kept for one sweep: their exits may still come");
    assert.ok(table.get(30), "a process that started unseen is added");
    const exited = table.apply(exit(11, 4000));
    assert.equal(exited?.pid, 11, "its late exit still carries it");
    table.sweep();
    assert.equal(table.get(10), undefined);
    assert.deepEqual([...table].map((p) => p.pid).sort((a, b) => a - b), [1, 12, 30]);
    assert.equal(table.sweepDue, false);
  });

  test("a zombie found by a reconciling scan leaves once reaped, also when its exit was seen before", () => {
    const proc = new FakeProc();
    proc.add(1, 0, 0);
    proc.add(50, 1, 500);
    proc.add(51, 1, 510);
    const table = proc.table();
    table.scan();
    // 50 exits (its event taken, the entry removed) and 51 exits unseen; both wait to be reaped.
    assert.equal(table.apply(exit(50, 600))?.pid, 50);
    assert.equal(table.get(50), undefined);
    proc.add(50, 1, 500, { cmdline: [], exe: undefined, missing: ["exe"] }, "Z");
    proc.add(51, 1, 510, { cmdline: [], exe: undefined, missing: ["exe"] }, "Z");
    table.lost();
    table.sweep();
    assert.ok(table.get(50) && table.get(51), "zombies are processes until reaped");
    for (const pid of [50, 51]) proc.gone(pid);
    table.sweep();
    assert.equal(table.get(50), undefined, "the zombie the scan added leaves once reaped");
    assert.equal(table.get(51), undefined, "the zombie whose exit was lost leaves once reaped");
    assert.equal(table.sweepDue, false);
  });

  test("a process a reconciling scan found while it was exiting leaves once gone", () => {
    const proc = new FakeProc();
    proc.add(1, 0, 0);
    const table = proc.table();
    table.scan();
    // 60 started unseen; its exit event comes (nothing to remove) while /proc still lists it,
    // exiting but not a zombie yet; the scan after a loss finds it.
    proc.add(60, 1, 600, { exe: undefined, missing: ["exe"] }, "R");
    table.apply(exit(60, 700));
    table.lost();
    table.sweep();
    assert.ok(table.get(60), "found by the scan");
    assert.ok(table.sweepDue, "and checked again at the next sweep");
    proc.gone(60);
    table.sweep();
    assert.equal(table.get(60), undefined, "gone at the next sweep: it leaves");
    assert.equal(table.sweepDue, false);
  });

  test("a zombie found by the scan leaves at the first sweep after it is reaped", () => {
    const proc = new FakeProc();
    proc.add(1, 0, 0);
    proc.add(40, 1, 400, { cmdline: [], exe: undefined, missing: ["exe"] }, "Z");
    const table = proc.table();
    table.scan();
    assert.ok(table.sweepDue);
    table.sweep();
    assert.ok(table.get(40), "still a zombie");
    proc.gone(40);
    table.sweep();
    assert.equal(table.get(40), undefined);
    assert.equal(table.sweepDue, false);
  });
});
