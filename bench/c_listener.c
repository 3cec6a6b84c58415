/*
 * C reference listener for the cnlink benchmark: the floor a JS listener is compared with.
 * Subscribes to all process events (32 MiB SO_RCVBUFFORCE, like cnlink's default), receives with
 * recvmmsg(64), accepts kernel datagrams only, checks per-CPU seq gaps, counts ENOBUFS, and tracks
 * the storm's process tree. It speaks the same line protocol on stdin/stdout as bench/listener.ts:
 *   -> {"ready":true}   <- "track PID"   -> {"tracking":PID}   ... storm ...   -> {result}
 *   <- "idle SEC"  -> {"idleCpuPct":..}   <- "close"  -> {"closeMs":..}
 * With -c it runs cnlink's receive loop (src/socket/pump.ts) in C: after a drain of 8+ datagrams it
 * sleeps and drains again instead of going back to poll(); the sleep doubles from 1 ms up to 16 ms
 * while bursts go on, bounded by the time the observed rate needs to fill half the receive buffer.
 */
#define _GNU_SOURCE
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VLEN 64
#define BUF 256
#define MAX_PID (1 << 22)
#define MAX_SAMPLES 100000

static uint8_t tracked[MAX_PID];
static int fd;
static long delivered, overruns, seq_lost;
static uint32_t last_seq[1024];
static uint8_t have_seq[1024];
static long samples[MAX_SAMPLES];
static int nsamples;

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long cpu_us(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000L + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = 0;
  while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
  if (f) fclose(f);
  return kb;
}

static void send_op(uint32_t op) {
  struct { struct nlmsghdr nl; struct cn_msg cn; uint32_t op; } __attribute__((packed)) m = {0};
  m.nl.nlmsg_len = sizeof m;
  m.nl.nlmsg_type = NLMSG_DONE;
  m.cn.id.idx = CN_IDX_PROC;
  m.cn.id.val = CN_VAL_PROC;
  m.cn.len = 4;
  m.op = op;
  struct sockaddr_nl to = {.nl_family = AF_NETLINK};
  sendto(fd, &m, sizeof m, 0, (struct sockaddr *)&to, sizeof to);
}

static int cmp(const void *a, const void *b) { return (*(long *)a > *(long *)b) - (*(long *)a < *(long *)b); }

int main(int argc, char **argv) {
  int coalesce = argc > 1 && !strcmp(argv[1], "-c");
  setvbuf(stdout, NULL, _IOLBF, 0);
  fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
  struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
  int rcvbuf = 32 << 20;
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("socket/bind"); return 1; }
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  send_op(PROC_CN_MCAST_LISTEN);
  printf("{\"ready\":true}\n");

  static uint8_t bufs[VLEN][BUF];
  struct iovec iov[VLEN];
  struct sockaddr_nl from[VLEN];
  struct mmsghdr msgs[VLEN];
  int root = 0, root_exited = 0;
  long cpu0 = 0, rss10k = 0;
  long long last_delivery = 0, quiet_since = 0;
  struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
  for (;;) {
    int timeout = root_exited ? 50 : -1;
    int r = poll(pfd, 2, timeout);
    if (r == 0 && root_exited && now_ns() - quiet_since > 300000000LL) {
      qsort(samples, nsamples, sizeof samples[0], cmp);
      printf("{\"delivered\":%ld,\"overruns\":%ld,\"seqLost\":%ld,\"cpuUs\":%ld,\"rss10kKb\":%ld,\"rssEndKb\":%ld,"
             "\"latencyP50Us\":%.1f,\"latencyP99Us\":%.1f,\"latencySamples\":%d}\n",
             delivered, overruns, seq_lost, cpu_us() - cpu0, rss10k, rss_kb(),
             nsamples ? samples[nsamples / 2] / 1000.0 : -1.0, nsamples ? samples[nsamples * 99 / 100] / 1000.0 : -1.0,
             nsamples);
      root = 0;
      root_exited = 0;
      continue;
    }
    if (pfd[1].revents) {
      char line[64];
      if (!fgets(line, sizeof line, stdin)) return 0;
      if (!strncmp(line, "track ", 6)) {
        memset(tracked, 0, sizeof tracked);
        root = atoi(line + 6);
        tracked[root] = 1;
        delivered = overruns = seq_lost = 0;
        nsamples = 0;
        rss10k = 0;
        cpu0 = cpu_us();
        printf("{\"tracking\":%d}\n", root);
      } else if (!strncmp(line, "idle ", 5)) {
        long c = cpu_us();
        long long t = now_ns();
        sleep(atoi(line + 5));
        printf("{\"idleCpuPct\":%.4f}\n", (cpu_us() - c) / 1e4 / ((now_ns() - t) / 1e9) * 1.0);
      } else if (!strncmp(line, "quiet ", 6)) {
        int q = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
        struct sockaddr_nl qa = {.nl_family = AF_NETLINK, .nl_groups = 1u << 22};
        bind(q, (struct sockaddr *)&qa, sizeof qa);
        struct pollfd qp = {.fd = q, .events = POLLIN};
        long c = cpu_us();
        long long t = now_ns();
        poll(&qp, 1, atoi(line + 6) * 1000);
        printf("{\"quietCpuPct\":%.4f}\n", (cpu_us() - c) / 1e4 / ((now_ns() - t) / 1e9));
        close(q);
        return 0;
      } else if (!strncmp(line, "close", 5)) {
        long long t = now_ns();
        send_op(PROC_CN_MCAST_IGNORE);
        close(fd);
        printf("{\"closeMs\":%.3f}\n", (now_ns() - t) / 1e6);
      }
    }
    if (!(pfd[0].revents)) continue;
    long long cycle = now_ns();
    int sleep_ms = 1;
    for (int drained = 0;;) {
      for (int i = 0; i < VLEN; i++) {
        iov[i] = (struct iovec){bufs[i], BUF};
        msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i], .msg_iovlen = 1};
      }
      int n = recvmmsg(fd, msgs, VLEN, MSG_DONTWAIT, NULL);
      if (n < 0) {
        if (errno == ENOBUFS) { overruns++; sleep_ms = 1; continue; }
        if (coalesce && drained >= 8) {
          long long t = now_ns();
          double rate = drained / ((t - cycle) / 1e6 + 1e-3); /* datagrams per ms */
          double safe_ms = (2.0 * rcvbuf) / 768 / 2 / rate;  /* the kernel reports twice what was set */
          cycle = t;
          if (safe_ms >= 1) {
            usleep((useconds_t)((sleep_ms < safe_ms ? sleep_ms : safe_ms) * 1000));
            sleep_ms = sleep_ms * 2 > 16 ? 16 : sleep_ms * 2;
            drained = 0;
            continue;
          }
        }
        break;
      }
      drained += n;
      long long t = now_ns();
      for (int i = 0; i < n; i++) {
        if (from[i].nl_pid != 0 || msgs[i].msg_len < 16 + 20 + 40) continue;
        struct cn_msg *cn = (struct cn_msg *)(bufs[i] + 16);
        struct proc_event *ev = (struct proc_event *)cn->data;
        uint32_t cpu = ev->cpu & 1023;
        if (have_seq[cpu] && cn->seq != last_seq[cpu] + 1) seq_lost += cn->seq - last_seq[cpu] - 1;
        have_seq[cpu] = 1;
        last_seq[cpu] = cn->seq;
        if (!root) continue;
        int mine = 0;
        switch (ev->what) {
        case PROC_EVENT_FORK:
          if (ev->event_data.fork.parent_tgid < MAX_PID && tracked[ev->event_data.fork.parent_tgid] &&
              ev->event_data.fork.child_tgid < MAX_PID) {
            tracked[ev->event_data.fork.child_tgid] = 1;
            mine = 1;
          }
          break;
        case PROC_EVENT_EXEC:
          /* The storm root's own exec happened before tracking began, but may be read after it. */
          mine = ev->event_data.exec.process_tgid < MAX_PID && tracked[ev->event_data.exec.process_tgid] &&
                 ev->event_data.exec.process_tgid != root;
          break;
        case PROC_EVENT_EXIT:
          mine = ev->event_data.exit.process_tgid < MAX_PID && tracked[ev->event_data.exit.process_tgid];
          if (mine && ev->event_data.exit.process_tgid == root) { root_exited = 1; quiet_since = t; }
          /* The pid will be reused: stop tracking it once the process is gone. */
          if (mine && ev->event_data.exit.process_pid == ev->event_data.exit.process_tgid && ev->event_data.exit.process_tgid != root)
            tracked[ev->event_data.exit.process_tgid] = 0;
          break;
        default: break;
        }
        if (!mine) continue;
        delivered++;
        if (delivered == 10000) rss10k = rss_kb();
        if (t - last_delivery > 5000000LL && nsamples < MAX_SAMPLES) samples[nsamples++] = t - (long long)ev->timestamp_ns;
        last_delivery = t;
      }
      if (root_exited) quiet_since = t;
    }
  }
}
