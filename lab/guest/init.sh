#!/bin/sh
# /init of the kernel lab's guest (busybox sh). Runs the test plan /lab/plan.sh wrote by lab/run.ts,
# sends each runner's JUnit report to the host over the second serial port (/dev/ttyS1), then powers
# off. Progress lines on the console start with "@@" so the host can show them.
export PATH=/usr/bin:/bin:/sbin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /tmp
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o size=1g tmpfs /tmp
mount -t cgroup2 none /sys/fs/cgroup
ip link set lo up 2>/dev/null
hostname cnlink-lab

export HOME=/tmp/home DENO_DIR=/tmp/deno TMPDIR=/tmp
export DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1
mkdir -p "$HOME" "$DENO_DIR"
. /lab/plan.sh

results=/dev/ttyS1
stty -F "$results" raw -echo 2>/dev/null
say() { echo "@@$*"; }
send() { echo "@@$*" > "$results"; }

say "kernel $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"
send "kernel $(uname -r)"
cd /cnlink || { say "no /cnlink"; poweroff -f; }

for runtime in $RUNTIMES; do
  report=/tmp/$runtime.xml
  started=$(cut -d' ' -f1 /proc/uptime)
  say "start $runtime"
  case $runtime in
    deno) deno test -A --no-check --no-lock --junit-path="$report" $TEST_FILES ;;
    bun) bun test --timeout=120000 --reporter=junit --reporter-outfile="$report" $TEST_FILES ;;
  esac
  code=$?
  ended=$(cut -d' ' -f1 /proc/uptime)
  say "end $runtime exit=$code"
  send "begin $runtime"
  [ -f "$report" ] && cat "$report" > "$results"
  send "end $runtime exit=$code started=$started ended=$ended"
done

# Anything the kernel complained about while the tests ran (a module oops, a warning) fails the run.
send "begin dmesg"
dmesg | grep -E 'BUG|Oops|WARNING|Call Trace|general protection|cnlink' > "$results"
send "end dmesg"
send "done"
sync
poweroff -f
