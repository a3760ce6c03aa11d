// SPDX-License-Identifier: GPL-2.0-or-later
/* libFuzzer target: mptcp_pm's generic-netlink reply parsers
 * (redirector/mptcp_pm.c: mptcp_pm_parse_family, mptcp_pm_parse_endp).
 *
 * Input: a buffer of netlink messages as a reply arrives on the socket:
 * the CTRL_CMD_GETFAMILY reply, MPTCP_PM_CMD_GET_ADDR dump entries, acks,
 * errors, NLMSG_DONE. It is read twice: through nl_run(), as nl_talk()
 * does (data messages to the callback, control messages to libmnl, a
 * buffer libmnl cannot walk refused), and message by message, so that
 * every message reaches both parsers.
 *
 * Checked for each message: a family id that parses is not 0; an endpoint
 * that parses has a known family (or AF_UNSPEC, nothing else set in the
 * address), and an IPv4/IPv6 one with an id survives a round trip through
 * the module's own builder (mptcp_pm_msg_add: build -> parse -> same id,
 * flags, interface and address). The ids of the endpoints listed then go
 * to mptcp_pm_pick_id() as pm_add does: the id it picks is free. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>

#include "mptcp_pm.h"
#include "nl.h"

#include "fuzz.h"

#define FAM 0x1d /* a family id as the kernel might give */

struct list {
	bool taken[256];
	unsigned n_msgs;
};

static void round_trip(const struct mptcp_pm_endp *e)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct mptcp_pm_endp back;

	struct nlmsghdr *nlh = mptcp_pm_msg_add(buf, FAM, e);
	FUZZ_CHECK(nlh->nlmsg_len <= MPTCP_PM_MSG_SIZE);
	FUZZ_CHECK(mptcp_pm_parse_endp(nlh, &back) == 0);
	FUZZ_CHECK(back.id == e->id);
	FUZZ_CHECK(back.flags == e->flags);
	FUZZ_CHECK(back.ifindex == e->ifindex);
	FUZZ_CHECK(back.addr.sa.sa_family == e->addr.sa.sa_family);
	if (e->addr.sa.sa_family == AF_INET) {
		FUZZ_CHECK(back.addr.in4.sin_addr.s_addr ==
			   e->addr.in4.sin_addr.s_addr);
		FUZZ_CHECK(back.addr.in4.sin_port == 0); /* not sent */
	} else {
		FUZZ_CHECK(memcmp(&back.addr.in6.sin6_addr,
				  &e->addr.in6.sin6_addr, 16) == 0);
		FUZZ_CHECK(back.addr.in6.sin6_port == 0);
	}
}

static int msg_cb(const struct nlmsghdr *nlh, void *data)
{
	struct list *l = data;
	uint16_t family = 0xffff;
	struct mptcp_pm_endp e;

	l->n_msgs++;
	if (mptcp_pm_parse_family(nlh, &family) == 0)
		FUZZ_CHECK(family != 0);

	memset(&e, 0xa5, sizeof(e));
	int rc = mptcp_pm_parse_endp(nlh, &e);
	FUZZ_CHECK(rc == 0 || rc == -EPROTO);
	if (rc < 0)
		return MNL_CB_OK;
	switch (e.addr.sa.sa_family) {
	case AF_INET:
	case AF_INET6:
		if (e.id)
			round_trip(&e);
		break;
	case AF_UNSPEC: {
		static const union sockaddr_any zero;
		FUZZ_CHECK(memcmp(&e.addr, &zero, sizeof(zero)) == 0);
		break;
	}
	default:
		FUZZ_CHECK(!"unknown family kept");
	}
	if (e.id)
		l->taken[e.id] = true; /* as list_cb */
	return MNL_CB_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct list l;

	/* As from recvfrom into a buffer of its own: aligned, exact size. */
	void *buf = malloc(size ? size : 1);
	FUZZ_CHECK(buf);
	memcpy(buf, data, size);

	/* 1. as nl_talk reads a reply (seq and portid 0: not checked) */
	memset(&l, 0, sizeof(l));
	errno = 0;
	int rc = nl_run(buf, size, 0, 0, msg_cb, &l);
	FUZZ_CHECK(rc == MNL_CB_OK || rc == MNL_CB_STOP || rc == MNL_CB_ERROR);
	FUZZ_CHECK(nl_buf_ok(buf, size) || (rc == MNL_CB_ERROR && !l.n_msgs));

	/* 2. every message, control ones included */
	memset(&l, 0, sizeof(l));
	const struct nlmsghdr *nlh = buf;
	int len = (int)size;
	for (; nl_msg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len))
		msg_cb(nlh, &l);

	/* the id pm_add would ask for, given these endpoints */
	uint8_t want = size ? data[0] : 1;
	int id = mptcp_pm_pick_id(l.taken, want);
	if (!want) {
		FUZZ_CHECK(id == -EINVAL);
	} else if (id > 0) {
		FUZZ_CHECK(id <= 255 && !l.taken[id]);
		for (unsigned k = want; k != (unsigned)id; k = k % 255 + 1)
			FUZZ_CHECK(l.taken[k]); /* the first free from want */
	} else {
		FUZZ_CHECK(id == -ENOSPC);
		for (int k = 1; k < 256; k++)
			FUZZ_CHECK(l.taken[k]);
	}

	free(buf);
	return 0;
}
