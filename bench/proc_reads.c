/*
 * The C reference of bench/enrich_cpu.ts: a plain loop that does the /proc reads an enriching
 * monitor's receipt worker does, at the worker's priority, to tell the price of the reads and of the
 * race from the price of the JS around them.
 *
 *   proc_reads NICE        (root: it subscribes to process events, and a negative nice needs it)
 *
 * It joins the process-events group, sends LISTEN, and for every datagram: at an exec, reads
 * /proc/PID/cmdline and stat at once, then cgroup and the exe link (the worker's first and second
 * halves); at the exit of a process (not a thread) and at a fork, the cgroup of the process exiting
 * or forking. It sleeps in poll() on the socket and stdin, and takes up to 64 datagrams per wake-up.
 *
 * stdin/stdout speak enrich_cpu.ts's monitor protocol: it prints "ready"; "go" starts counting;
 * "stop PID,PID,..." prints one JSON line (items, CPU µs of the process, and how the execs of those
 * pids were named: the whole command line of a workload, a name from stat, or nothing) and exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PID (1 << 22)

static char file[65536 + 1];
static unsigned char how[MAX_PID]; /* 0 not seen, 1 nothing, 2 a name, 3 the command line */
static long items;
static int counting;

/* Reads /proc/PID/NAME into `file`: its length, or -1. */
static ssize_t slurp(int pid, const char *name)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, file, sizeof file - 1);
	close(fd);
	return n;
}

static int workload(const char *argv, ssize_t n)
{
	static const char sh[] = "sh\0-c\0exit 0", tr[] = "/bin/true\0quick";
	return (n == sizeof sh && !memcmp(argv, sh, sizeof sh)) || (n == sizeof tr && !memcmp(argv, tr, sizeof tr));
}

static void exec_read(int pid)
{
	int named = 1;
	ssize_t n = slurp(pid, "cmdline");
	if (n > 0 && workload(file, n))
		named = 3;
	n = slurp(pid, "stat");
	if (n > 0 && named == 1 && memchr(file, '(', n))
		named = 2;
	slurp(pid, "cgroup");
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/exe", pid);
	readlink(path, file, 4096);
	if (counting && pid < MAX_PID)
		how[pid] = named;
}

static long cpu_us(void)
{
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000L + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}

int main(int argc, char **argv)
{
	int nice = argc > 1 ? atoi(argv[1]) : 0;
	if (setpriority(PRIO_PROCESS, 0, nice) < 0)
		perror("setpriority");
	int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	struct sockaddr_nl a = { .nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC };
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
		perror("netlink connector socket");
		return 1;
	}
	int size = 4 << 20;
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
	struct __attribute__((packed)) {
		struct nlmsghdr h;
		struct cn_msg m;
		enum proc_cn_mcast_op op;
	} listen = { 0 };
	listen.h.nlmsg_len = sizeof listen;
	listen.h.nlmsg_type = NLMSG_DONE;
	listen.m.id.idx = CN_IDX_PROC;
	listen.m.id.val = CN_VAL_PROC;
	listen.m.len = sizeof listen.op;
	listen.op = PROC_CN_MCAST_LISTEN;
	if (send(s, &listen, sizeof listen, 0) < 0) {
		perror("LISTEN");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);

	static char slots[64][256];
	struct mmsghdr msgs[64];
	struct iovec iov[64];
	long start = cpu_us();
	struct pollfd fds[2] = { { s, POLLIN, 0 }, { 0, POLLIN, 0 } };
	static char line[1 << 20];
	for (;;) {
		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			return 1;
		if (fds[1].revents) {
			if (!fgets(line, sizeof line, stdin))
				return 0;
			if (!strncmp(line, "go", 2)) {
				items = 0;
				counting = 1;
				memset(how, 0, sizeof how);
				start = cpu_us();
				continue;
			}
			long used = cpu_us() - start;
			long execs = 0, counts[4] = { 0 };
			for (char *p = line + 5; *p && *p != '\n';) {
				long pid = strtol(p, &p, 10);
				if (pid > 0 && pid < MAX_PID && how[pid]) {
					execs++;
					counts[how[pid]]++;
				}
				if (*p == ',')
					p++;
			}
			printf("{\"items\":%ld,\"cpuUs\":%ld,\"mainUs\":%ld,\"execs\":%ld,\"cmdline\":%ld,\"nameOnly\":%ld,"
			       "\"nothing\":%ld}\n",
			       items, used, used, execs, counts[3], counts[2], counts[1]);
			return 0;
		}
		if (!fds[0].revents)
			continue;
		int parent = 0; /* the worker reads a forking parent's cgroup once per batch: here once per run of forks */
		for (;;) {
			for (int i = 0; i < 64; i++) {
				iov[i] = (struct iovec){ slots[i], sizeof slots[i] };
				msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
			}
			int n = recvmmsg(s, msgs, 64, MSG_DONTWAIT, NULL);
			if (n <= 0)
				break;
			for (int i = 0; i < n; i++) {
				struct cn_msg *m = NLMSG_DATA((struct nlmsghdr *)slots[i]);
				struct proc_event *e = (struct proc_event *)m->data;
				if (counting)
					items++;
				if (e->what == PROC_EVENT_EXEC)
					exec_read(e->event_data.exec.process_tgid);
				else if (e->what == PROC_EVENT_EXIT &&
					 e->event_data.exit.process_pid == e->event_data.exit.process_tgid)
					slurp(e->event_data.exit.process_tgid, "cgroup");
				else if (e->what == PROC_EVENT_FORK && e->event_data.fork.parent_tgid != parent)
					slurp(parent = e->event_data.fork.parent_tgid, "cgroup");
			}
			if (n < 64)
				break;
		}
	}
}
