// SPDX-License-Identifier: GPL-2.0-or-later
/* libFuzzer target: rtmon's rtnetlink parsers (redirector/rtmon.c).
 *
 * Input: a buffer of netlink messages as the event socket receives it
 * (RTM_NEWLINK/DELLINK, RTM_NEWADDR/DELADDR, RTM_NEWROUTE/DELROUTE and
 * anything else), applied to an rtmon without a socket
 * (rtmon_open_detached, rtmon_apply_msgs).
 *
 * Checked after applying it: every address has a known family and a
 * prefix length within it, appears once, is "local" and is found by
 * rtmon_first_addr() for its interface (link-local IPv6 aside); every
 * interface name the input carries that rtmon kept is NUL-terminated and
 * fits IF_NAMESIZE; every default route found for an RTA_OIF of the input
 * is for that interface, with an IPv4 gateway if any. Applying the same
 * buffer a second time changes nothing: for each object the last message
 * about it decides. rtmon_close() frees everything (ASan's leak check). */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>

#include "nl.h"
#include "rtmon.h"

#include "fuzz.h"

/* What the input names: interface names and route interfaces, read here
 * with libmnl alone (whatever rtmon made of them). */
#define MAX_SEEN 64
struct seen {
	char names[MAX_SEEN][IF_NAMESIZE + 1];
	size_t n_names;
	int oifs[MAX_SEEN];
	size_t n_oifs;
};

static int seen_attr_cb(const struct nlattr *a, void *data)
{
	struct seen *s = data;
	uint16_t type = mnl_attr_get_type(a);
	uint16_t len = mnl_attr_get_payload_len(a);

	(void)type;
	if (s->n_names < MAX_SEEN && len > 0 && len <= IF_NAMESIZE) {
		const char *p = mnl_attr_get_payload(a);
		if (memchr(p, '\0', len)) {
			memcpy(s->names[s->n_names], p, len);
			s->names[s->n_names++][len] = '\0';
		}
	}
	if (s->n_oifs < MAX_SEEN && len == 4)
		s->oifs[s->n_oifs++] = (int)mnl_attr_get_u32(a);
	return MNL_CB_OK;
}

/* Every attribute of every message, as a possible name or ifindex. */
static void collect(struct seen *s, const void *buf, size_t size)
{
	const struct nlmsghdr *nlh = buf;
	int len = (int)size;

	memset(s, 0, sizeof(*s));
	for (; nl_msg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
		size_t hdr;
		switch (nlh->nlmsg_type) {
		case RTM_NEWLINK:
		case RTM_DELLINK:
			hdr = sizeof(struct ifinfomsg);
			break;
		case RTM_NEWROUTE:
		case RTM_DELROUTE:
			hdr = sizeof(struct rtmsg);
			break;
		default:
			continue;
		}
		if (mnl_nlmsg_get_payload_len(nlh) >= hdr)
			mnl_attr_parse(nlh, (unsigned)hdr, seen_attr_cb, s);
	}
}

struct snapshot {
	struct rtmon_addr *addrs;
	size_t n;
};

static void snap(const struct rtmon *rm, struct snapshot *s)
{
	const struct rtmon_addr *a = rtmon_addrs(rm, &s->n);
	s->addrs = malloc((s->n ? s->n : 1) * sizeof(*a));
	FUZZ_CHECK(s->addrs);
	if (s->n)
		memcpy(s->addrs, a, s->n * sizeof(*a));
}

static bool addr_eq(const struct rtmon_addr *a, const struct rtmon_addr *b)
{
	return a->ifindex == b->ifindex && a->prefix.family == b->prefix.family &&
	       a->prefix.len == b->prefix.len &&
	       memcmp(a->prefix.addr, b->prefix.addr, 16) == 0;
}

/* Same set of addresses (the order may differ: deletion moves the last). */
static bool same_set(const struct snapshot *x, const struct snapshot *y)
{
	if (x->n != y->n)
		return false;
	for (size_t i = 0; i < x->n; i++) {
		size_t j = 0;
		while (j < y->n && !addr_eq(&x->addrs[i], &y->addrs[j]))
			j++;
		if (j == y->n)
			return false;
	}
	return true;
}

static void check_state(const struct rtmon *rm, const struct seen *s)
{
	size_t n;
	const struct rtmon_addr *list = rtmon_addrs(rm, &n);

	for (size_t i = 0; i < n; i++) {
		const struct rtmon_addr *a = &list[i];
		FUZZ_CHECK((a->prefix.family == AF_INET && a->prefix.len <= 32) ||
			   (a->prefix.family == AF_INET6 &&
			    a->prefix.len <= 128));
		if (a->prefix.family == AF_INET)
			for (int k = 4; k < 16; k++)
				FUZZ_CHECK(a->prefix.addr[k] == 0);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(!addr_eq(a, &list[j]));

		union sockaddr_any sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa.sa_family = (sa_family_t)a->prefix.family;
		if (a->prefix.family == AF_INET)
			memcpy(&sa.in4.sin_addr, a->prefix.addr, 4);
		else
			memcpy(&sa.in6.sin6_addr, a->prefix.addr, 16);
		FUZZ_CHECK(rtmon_is_local(rm, &sa));

		const struct rtmon_addr *f =
			rtmon_first_addr(rm, a->ifindex, a->prefix.family);
		bool ll = a->prefix.family == AF_INET6 &&
			  a->prefix.addr[0] == 0xfe &&
			  (a->prefix.addr[1] & 0xc0) == 0x80;
		if (!ll) {
			FUZZ_CHECK(f);
		}
		if (f) {
			FUZZ_CHECK(f->ifindex == a->ifindex);
			FUZZ_CHECK(f->prefix.family == a->prefix.family);
		}
	}
	for (size_t i = 0; i < s->n_names; i++) {
		const struct rtmon_link *l = rtmon_link_by_name(rm, s->names[i]);
		if (!l)
			continue;
		FUZZ_CHECK(memchr(l->name, '\0', sizeof(l->name)));
		FUZZ_CHECK(strcmp(l->name, s->names[i]) == 0);
		(void)rtmon_link_running(l);
	}
	for (size_t i = 0; i < s->n_oifs; i++) {
		const struct rtmon_route *r = rtmon_default_route(rm, s->oifs[i]);
		if (!r)
			continue;
		FUZZ_CHECK(r->ifindex == s->oifs[i]);
		if (r->has_gateway)
			FUZZ_CHECK(r->gateway.sa.sa_family == AF_INET);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen seen;
	struct snapshot one, two;

	/* As from recvfrom into a buffer of its own: aligned, exact size. */
	void *buf = malloc(size ? size : 1);
	FUZZ_CHECK(buf);
	memcpy(buf, data, size);

	struct rtmon *rm = rtmon_open_detached();
	FUZZ_CHECK(rm);
	unsigned what = rtmon_apply_msgs(rm, buf, size);
	FUZZ_CHECK((what & ~(unsigned)(RTMON_ADDRS | RTMON_LINKS |
				       RTMON_ROUTES)) == 0);
	collect(&seen, buf, size);
	check_state(rm, &seen);
	snap(rm, &one);

	rtmon_apply_msgs(rm, buf, size);
	check_state(rm, &seen);
	snap(rm, &two);
	FUZZ_CHECK(same_set(&one, &two));

	free(one.addrs);
	free(two.addrs);
	rtmon_close(rm);
	free(buf);
	return 0;
}
