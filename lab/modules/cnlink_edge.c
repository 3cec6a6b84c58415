// SPDX-License-Identifier: GPL-2.0
/*
 * cnlink_edge: a kernel-side connector agent that exercises the edges of
 * the connector for cnlink's kernel lab.
 *
 * Requests go to {idx, val}. The first byte of the data is an operation,
 * followed at byte 4 by a u32 argument (host byte order):
 *
 *   0 COUNT   nothing is sent back; only the counters move.
 *   1 BUNDLE  arg cn_msgs (1..64) in ONE netlink message, back to back and
 *             unpadded (cn_netlink_send_mult): message i carries i + 1
 *             bytes of value i, seq = request seq, ack = seq + 1.
 *   2 BIG     one reply of arg data bytes (up to 65535, more than a page):
 *             byte j = (j * 31 + 7) & 0xff.
 *   3 GROUP   multicast one message to group arg (portid 0), then unicast
 *             a status reply whose data is the s32 that multicast returned
 *             (-ESRCH when nobody is in the group).
 *   4 SIZE    unicast reply whose data is the u32 cn_msg.len the callback
 *             got: what survived the connector's size checks.
 *   5 SLOW    sleep arg ms in the callback, then reply like SIZE: the
 *             callback runs inside the sender's sendmsg(), so the sender
 *             waits too.
 *   6 EXCLUDE one message sent with portid = sender AND group = arg: the
 *             kernel multicasts it to the group leaving the sender out.
 *
 * Writing 0 to /sys/module/cnlink_edge/parameters/registered removes the
 * callback (cn_del_callback) while the module stays loaded; 1 adds it back.
 * Counters are read-only parameters next to it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/connector.h>
#include <linux/delay.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/version.h>

enum { OP_COUNT, OP_BUNDLE, OP_BIG, OP_GROUP, OP_SIZE, OP_SLOW, OP_EXCLUDE };

#define MAX_BUNDLE 64
#define MAX_SLOW_MS 10000

static uint idx = 18;
module_param(idx, uint, 0444);
MODULE_PARM_DESC(idx, "cb_id.idx of the agent (default 18)");

static uint val = 1;
module_param(val, uint, 0444);
MODULE_PARM_DESC(val, "cb_id.val of the agent (default 1)");

static atomic_t received = ATOMIC_INIT(0);
static atomic_t last_len = ATOMIC_INIT(-1);
static atomic_t send_errors = ATOMIC_INIT(0);
static atomic_t last_error = ATOMIC_INIT(0);

static int get_counter(char *buffer, const struct kernel_param *kp)
{
	return sysfs_emit(buffer, "%d\n", atomic_read((atomic_t *)kp->arg));
}

static const struct kernel_param_ops counter_ops = { .get = get_counter };
module_param_cb(received, &counter_ops, &received, 0444);
MODULE_PARM_DESC(received, "messages the callback got");
module_param_cb(last_len, &counter_ops, &last_len, 0444);
MODULE_PARM_DESC(last_len, "cn_msg.len of the last message the callback got");
module_param_cb(send_errors, &counter_ops, &send_errors, 0444);
MODULE_PARM_DESC(send_errors, "sends that returned an error");
module_param_cb(last_error, &counter_ops, &last_error, 0444);
MODULE_PARM_DESC(last_error, "the last negative errno a send returned");

static struct cb_id edge_id;
static atomic_t inflight = ATOMIC_INIT(0);
static DEFINE_MUTEX(registration);
static bool registered_now;
static bool initialized;

/* cn_netlink_send_mult() gained a netlink filter in 6.6. */
static int send_mult(struct cn_msg *msg, u16 len, u32 portid, u32 group)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 6, 0)
	return cn_netlink_send_mult(msg, len, portid, group, GFP_ATOMIC, NULL, NULL);
#else
	return cn_netlink_send_mult(msg, len, portid, group, GFP_ATOMIC);
#endif
}

static int checked(int err)
{
	if (err < 0) {
		atomic_inc(&send_errors);
		atomic_set(&last_error, err);
	}
	return err;
}

/* A reply header for request `req` carrying `len` bytes of data. */
static void reply_header(struct cn_msg *reply, const struct cn_msg *req, u16 len)
{
	reply->id = req->id;
	reply->seq = req->seq;
	reply->ack = req->seq + 1;
	reply->len = len;
	reply->flags = 0;
}

static void reply_u32(const struct cn_msg *req, u32 portid, u32 value)
{
	struct {
		struct cn_msg msg;
		u32 value;
	} r;

	reply_header(&r.msg, req, sizeof(r.value));
	r.value = value;
	checked(cn_netlink_send(&r.msg, portid, 0, GFP_ATOMIC));
}

static void bundle(const struct cn_msg *req, u32 portid, u32 count)
{
	size_t total = 0, at = 0;
	u8 *buffer;
	u32 i;

	if (count < 1 || count > MAX_BUNDLE)
		return;
	for (i = 0; i < count; i++)
		total += sizeof(struct cn_msg) + i + 1;
	buffer = kzalloc(total, GFP_ATOMIC);
	if (!buffer) {
		checked(-ENOMEM);
		return;
	}
	for (i = 0; i < count; i++) {
		struct cn_msg *m = (struct cn_msg *)(buffer + at);

		reply_header(m, req, i + 1);
		memset(m->data, i, i + 1);
		at += sizeof(*m) + i + 1;
	}
	/* len: every byte after the first cn_msg header. */
	checked(send_mult((struct cn_msg *)buffer, total - sizeof(struct cn_msg), portid, 0));
	kfree(buffer);
}

static void big(const struct cn_msg *req, u32 portid, u32 size)
{
	struct cn_msg *m;
	u32 j;

	if (size > U16_MAX)
		return;
	m = kmalloc(sizeof(*m) + size, GFP_ATOMIC);
	if (!m) {
		checked(-ENOMEM);
		return;
	}
	reply_header(m, req, size);
	for (j = 0; j < size; j++)
		m->data[j] = (j * 31 + 7) & 0xff;
	checked(cn_netlink_send(m, portid, 0, GFP_ATOMIC));
	kfree(m);
}

static void edge_callback(struct cn_msg *msg, struct netlink_skb_parms *nsp)
{
	u32 arg = 0;
	u8 op = OP_COUNT;

	atomic_inc(&inflight);
	atomic_inc(&received);
	atomic_set(&last_len, msg->len);
	if (msg->len >= 1)
		op = msg->data[0];
	if (msg->len >= 8)
		memcpy(&arg, msg->data + 4, sizeof(arg));

	switch (op) {
	case OP_BUNDLE:
		bundle(msg, nsp->portid, arg);
		break;
	case OP_BIG:
		big(msg, nsp->portid, arg);
		break;
	case OP_GROUP: {
		struct cn_msg m;
		int err;

		reply_header(&m, msg, 0);
		err = cn_netlink_send(&m, 0, arg, GFP_ATOMIC);
		reply_u32(msg, nsp->portid, (u32)err);
		break;
	}
	case OP_SIZE:
		reply_u32(msg, nsp->portid, msg->len);
		break;
	case OP_SLOW:
		msleep(min_t(u32, arg, MAX_SLOW_MS));
		reply_u32(msg, nsp->portid, msg->len);
		break;
	case OP_EXCLUDE: {
		struct cn_msg m;

		reply_header(&m, msg, 0);
		checked(cn_netlink_send(&m, nsp->portid, arg, GFP_ATOMIC));
		break;
	}
	default:
		break;
	}
	atomic_dec(&inflight);
}

static int set_registered(const char *value, const struct kernel_param *kp)
{
	bool want;
	int err = kstrtobool(value, &want);

	if (err)
		return err;
	/* At load time the id is not known yet: init registers. */
	if (!initialized && kp)
		return 0;
	mutex_lock(&registration);
	if (want && !registered_now) {
		err = cn_add_callback(&edge_id, "cnlink_edge", edge_callback);
		registered_now = err == 0;
	} else if (!want && registered_now) {
		cn_del_callback(&edge_id);
		registered_now = false;
	}
	mutex_unlock(&registration);
	return err;
}

static int get_registered(char *buffer, const struct kernel_param *kp)
{
	return sysfs_emit(buffer, "%d\n", registered_now);
}

static const struct kernel_param_ops registered_ops = { .set = set_registered, .get = get_registered };
module_param_cb(registered, &registered_ops, NULL, 0644);
MODULE_PARM_DESC(registered, "1 while the callback is registered; write 0/1 to remove/add it");

static int __init cnlink_edge_init(void)
{
	edge_id.idx = idx;
	edge_id.val = val;
	initialized = true;
	return set_registered("1", NULL);
}

static void __exit cnlink_edge_exit(void)
{
	set_registered("0", NULL);
	/* cn_del_callback() does not wait for a running callback: wait for ours. */
	while (atomic_read(&inflight))
		msleep(1);
}

module_init(cnlink_edge_init);
module_exit(cnlink_edge_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("cnlink kernel lab: a connector agent for the edges");
