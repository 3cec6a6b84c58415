// SPDX-License-Identifier: GPL-2.0
/*
 * cnlink_echo: a kernel-side connector agent for cnlink's kernel lab, the
 * scenario the connector was made for: a module registers a callback at
 * {idx, val} and talks with userspace agents.
 *
 * {idx, val}      every message is answered twice:
 *                 - unicast to the sender's port: same id and seq,
 *                   ack = seq + 1, same data;
 *                 - the same reply multicast to `group` (portid 0, so every
 *                   member gets it, the sender too when it is a member).
 * {idx, val + 1}  "who am I": a unicast reply with what the kernel knows
 *                 of the sender (struct cnlink_echo_who below).
 * timer           every `period_ms` (0 = off), {idx, val} with
 *                 seq = counter and data "counter = N\0" multicast to
 *                 `timer_group`.
 *
 * Replies use GFP_ATOMIC: the callback runs inside the sender's sendmsg(),
 * and a GFP_KERNEL unicast to a full receive buffer would block that
 * sender until the buffer drains. A reply that does not fit is dropped and
 * counted instead.
 *
 * Counters are read-only parameters in /sys/module/cnlink_echo/parameters/.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/connector.h>
#include <linux/cred.h>
#include <linux/delay.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <linux/timer.h>
#include <linux/uidgid.h>

static uint idx = 16;
module_param(idx, uint, 0444);
MODULE_PARM_DESC(idx, "cb_id.idx of the agent (default 16)");

static uint val = 1;
module_param(val, uint, 0444);
MODULE_PARM_DESC(val, "cb_id.val of the echo callback; val + 1 answers who-am-i (default 1)");

static uint group = 16;
module_param(group, uint, 0444);
MODULE_PARM_DESC(group, "group the echo copies go to, 1..32 (default 16)");

static uint timer_group = 17;
module_param(timer_group, uint, 0444);
MODULE_PARM_DESC(timer_group, "group the timer's counter goes to, 1..32 (default 17)");

static uint period_ms = 1000;
module_param(period_ms, uint, 0444);
MODULE_PARM_DESC(period_ms, "timer period in ms, 0 = no timer (default 1000)");

/* Counters, readable in sysfs while the module runs. */
static atomic_t received = ATOMIC_INIT(0);
static atomic_t unicast_errors = ATOMIC_INIT(0);
static atomic_t multicast_errors = ATOMIC_INIT(0);
static atomic_t ticks = ATOMIC_INIT(0);
static atomic_t last_error = ATOMIC_INIT(0);

static int get_counter(char *buffer, const struct kernel_param *kp)
{
	return sysfs_emit(buffer, "%d\n", atomic_read((atomic_t *)kp->arg));
}

static const struct kernel_param_ops counter_ops = { .get = get_counter };
module_param_cb(received, &counter_ops, &received, 0444);
MODULE_PARM_DESC(received, "messages received by the echo and who-am-i callbacks");
module_param_cb(unicast_errors, &counter_ops, &unicast_errors, 0444);
MODULE_PARM_DESC(unicast_errors, "unicast replies that failed");
module_param_cb(multicast_errors, &counter_ops, &multicast_errors, 0444);
MODULE_PARM_DESC(multicast_errors, "multicasts that failed (-ESRCH: nobody in the group)");
module_param_cb(ticks, &counter_ops, &ticks, 0444);
MODULE_PARM_DESC(ticks, "timer multicasts attempted");
module_param_cb(last_error, &counter_ops, &last_error, 0444);
MODULE_PARM_DESC(last_error, "the last negative errno a send returned");

/* The who-am-i reply, host byte order. */
struct cnlink_echo_who {
	__u32 portid;   /* nsp->portid: the sending socket's port */
	__u32 pid;      /* nsp->creds.pid: the sender's process id */
	__u32 uid;      /* nsp->creds.uid in the initial user namespace */
	__u32 gid;      /* nsp->creds.gid in the initial user namespace */
	__u32 seen_len; /* cn_msg.len as the callback got it */
};

static struct cb_id echo_id;
static struct cb_id who_id;
static struct timer_list tick_timer;
static bool stopping;
static atomic_t inflight = ATOMIC_INIT(0);

/* cn_netlink_send() returns the bytes sent, or a negative errno. */
static void count_send(int err, atomic_t *errors)
{
	if (err >= 0)
		return;
	atomic_inc(errors);
	atomic_set(&last_error, err);
}

static void echo_callback(struct cn_msg *msg, struct netlink_skb_parms *nsp)
{
	struct cn_msg *reply;

	atomic_inc(&inflight);
	atomic_inc(&received);
	reply = kmalloc(sizeof(*reply) + msg->len, GFP_ATOMIC);
	if (!reply) {
		count_send(-ENOMEM, &unicast_errors);
		goto out;
	}
	reply->id = msg->id;
	reply->seq = msg->seq;
	reply->ack = msg->seq + 1;
	reply->len = msg->len;
	reply->flags = 0;
	memcpy(reply->data, msg->data, msg->len);
	count_send(cn_netlink_send(reply, nsp->portid, 0, GFP_ATOMIC), &unicast_errors);
	count_send(cn_netlink_send(reply, 0, group, GFP_ATOMIC), &multicast_errors);
	kfree(reply);
out:
	atomic_dec(&inflight);
}

static void who_callback(struct cn_msg *msg, struct netlink_skb_parms *nsp)
{
	struct {
		struct cn_msg msg;
		struct cnlink_echo_who who;
	} reply = {};

	atomic_inc(&inflight);
	atomic_inc(&received);
	reply.msg.id = msg->id;
	reply.msg.seq = msg->seq;
	reply.msg.ack = msg->seq + 1;
	reply.msg.len = sizeof(reply.who);
	reply.who.portid = nsp->portid;
	reply.who.pid = nsp->creds.pid;
	reply.who.uid = from_kuid_munged(&init_user_ns, nsp->creds.uid);
	reply.who.gid = from_kgid_munged(&init_user_ns, nsp->creds.gid);
	reply.who.seen_len = msg->len;
	count_send(cn_netlink_send(&reply.msg, nsp->portid, 0, GFP_ATOMIC), &unicast_errors);
	atomic_dec(&inflight);
}

static void tick(struct timer_list *unused)
{
	struct {
		struct cn_msg msg;
		char text[32];
	} m = {};
	u32 n = atomic_inc_return(&ticks);

	m.msg.id = echo_id;
	m.msg.seq = n;
	m.msg.len = scnprintf(m.text, sizeof(m.text), "counter = %u", n) + 1;
	count_send(cn_netlink_send(&m.msg, 0, timer_group, GFP_ATOMIC), &multicast_errors);
	if (!READ_ONCE(stopping))
		mod_timer(&tick_timer, jiffies + msecs_to_jiffies(period_ms));
}

static int __init cnlink_echo_init(void)
{
	int err;

	if (group < 1 || group > 32 || timer_group < 1 || timer_group > 32) {
		pr_err("groups must be 1..32 (group=%u timer_group=%u)\n", group, timer_group);
		return -EINVAL;
	}
	echo_id.idx = idx;
	echo_id.val = val;
	who_id.idx = idx;
	who_id.val = val + 1;
	err = cn_add_callback(&echo_id, "cnlink_echo", echo_callback);
	if (err)
		return err;
	err = cn_add_callback(&who_id, "cnlink_who", who_callback);
	if (err) {
		cn_del_callback(&echo_id);
		return err;
	}
	timer_setup(&tick_timer, tick, 0);
	if (period_ms)
		mod_timer(&tick_timer, jiffies + msecs_to_jiffies(period_ms));
	pr_info("echo at {%u, %u}, who-am-i at {%u, %u}, copies to group %u, timer %u ms to group %u\n",
		idx, val, idx, val + 1, group, period_ms, timer_group);
	return 0;
}

static void __exit cnlink_echo_exit(void)
{
	/* A self-arming timer: stop the re-arming first (6.1 has no timer_shutdown_sync). */
	WRITE_ONCE(stopping, true);
	del_timer_sync(&tick_timer);
	cn_del_callback(&echo_id);
	cn_del_callback(&who_id);
	/*
	 * cn_del_callback() does not wait for a callback that is running on
	 * another CPU (the connector core holds a reference to its entry, not
	 * to this module), so wait for ours to return before the code goes.
	 */
	while (atomic_read(&inflight))
		msleep(1);
}

module_init(cnlink_echo_init);
module_exit(cnlink_echo_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("cnlink kernel lab: a connector echo agent");
