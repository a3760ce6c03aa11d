// SPDX-License-Identifier: GPL-2.0-or-later
#include "ifaddrs.h"

#include <errno.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nl.h"

struct ifaddrs {
	struct ev_loop *loop;
	struct mnl_socket *events;  /* joined to the address groups */
	ev_io io;
	ev_timer settle;            /* report a burst of events once */
	ifaddrs_changed_fn *fn;
	void *arg;
	struct ifaddr *list;
	size_t n, cap;
};

static int attr_cb(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(a);

	if (mnl_attr_type_valid(a, IFA_MAX) < 0)
		return MNL_CB_OK; /* newer than us: skip */
	if ((type == IFA_ADDRESS || type == IFA_LOCAL) &&
	    mnl_attr_validate(a, MNL_TYPE_BINARY) < 0)
		return MNL_CB_ERROR;
	tb[type] = a;
	return MNL_CB_OK;
}

/* One RTM_NEWADDR/RTM_DELADDR into an entry; false if unusable. */
static bool parse(const struct nlmsghdr *nlh, struct ifaddr *out)
{
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[IFA_MAX + 1] = { 0 };
	size_t alen;

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifa)))
		return false;
	if (ifa->ifa_family == AF_INET)
		alen = 4;
	else if (ifa->ifa_family == AF_INET6)
		alen = 16;
	else
		return false;
	if (mnl_attr_parse(nlh, sizeof(*ifa), attr_cb, tb) != MNL_CB_OK)
		return false;
	/* IFA_LOCAL is the interface's own address on point-to-point links,
	 * where IFA_ADDRESS is the peer's. */
	const struct nlattr *a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!a || mnl_attr_get_payload_len(a) != alen ||
	    ifa->ifa_prefixlen > alen * 8)
		return false;
	memset(out, 0, sizeof(*out));
	out->prefix.family = ifa->ifa_family;
	out->prefix.len = ifa->ifa_prefixlen;
	memcpy(out->prefix.addr, mnl_attr_get_payload(a), alen);
	out->ifindex = (int)ifa->ifa_index;
	return true;
}

static bool same(const struct ifaddr *a, const struct ifaddr *b)
{
	return a->ifindex == b->ifindex && a->prefix.family == b->prefix.family &&
	       a->prefix.len == b->prefix.len &&
	       memcmp(a->prefix.addr, b->prefix.addr, 16) == 0;
}

/* Apply one message; true when the list changed. */
static bool apply(struct ifaddrs *ia, const struct nlmsghdr *nlh)
{
	struct ifaddr e;

	if ((nlh->nlmsg_type != RTM_NEWADDR && nlh->nlmsg_type != RTM_DELADDR) ||
	    !parse(nlh, &e))
		return false;
	size_t i = 0;
	while (i < ia->n && !same(&ia->list[i], &e))
		i++;
	if (nlh->nlmsg_type == RTM_DELADDR) {
		if (i == ia->n)
			return false;
		ia->list[i] = ia->list[--ia->n];
		return true;
	}
	if (i < ia->n)
		return false;
	if (ia->n == ia->cap) {
		size_t cap = ia->cap ? 2 * ia->cap : 16;
		struct ifaddr *l = realloc(ia->list, cap * sizeof(*l));
		if (!l) {
			log_error("router addresses: out of memory");
			return false;
		}
		ia->list = l;
		ia->cap = cap;
	}
	ia->list[ia->n++] = e;
	return true;
}

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	apply(data, nlh);
	return MNL_CB_OK;
}

/* A fresh list from a dump on a socket of its own. */
static int dump(struct ifaddrs *ia)
{
	struct mnl_socket *nl = nl_open(NETLINK_ROUTE, 0, false);
	char buf[MNL_SOCKET_BUFFER_SIZE];

	if (!nl)
		return -errno;
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_UNSPEC;
	ia->n = 0;
	int rc = nl_talk(nl, nlh, dump_cb, ia);
	mnl_socket_close(nl);
	return rc;
}

static void report(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ifaddrs *ia = w->data;
	ia->fn(ia, ia->arg);
}

static void changed(struct ifaddrs *ia)
{
	/* Addresses come and go in bursts (an interface going down): tell
	 * once, a moment later. */
	if (!ev_is_active(&ia->settle))
		ev_timer_start(ia->loop, &ia->settle);
}

static void on_events(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ifaddrs *ia = w->data;
	char buf[NL_BUF_SIZE];
	bool any = false;

	for (;;) {
		ssize_t n = mnl_socket_recvfrom(ia->events, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			if (errno == ENOBUFS) {
				/* events lost: start again from a dump */
				log_warn("router addresses: netlink events lost; "
					 "reading them again");
				int rc = dump(ia);
				if (rc < 0)
					log_error("router addresses: dump: %s",
						  strerror(-rc));
				any = true;
				continue;
			}
			log_error("router addresses: netlink: %s",
				  strerror(errno));
			break;
		}
		int len = (int)n;
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
		for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len))
			any |= apply(ia, nlh);
	}
	if (any)
		changed(ia);
}

struct ifaddrs *ifaddrs_open(struct ev_loop *loop, ifaddrs_changed_fn *fn,
			     void *arg)
{
	struct ifaddrs *ia = calloc(1, sizeof(*ia));
	if (!ia)
		return NULL;
	ia->loop = loop;
	ia->fn = fn;
	ia->arg = arg;
	/* Join the groups before the dump: no change falls in between. */
	ia->events = nl_open(NETLINK_ROUTE, RTMGRP_IPV4_IFADDR |
			     RTMGRP_IPV6_IFADDR, true);
	int rc = ia->events ? dump(ia) : -errno;
	if (rc < 0) {
		ifaddrs_close(ia);
		errno = -rc;
		return NULL;
	}
	ev_io_init(&ia->io, on_events, mnl_socket_get_fd(ia->events), EV_READ);
	ia->io.data = ia;
	ev_io_start(loop, &ia->io);
	ev_timer_init(&ia->settle, report, 0.05, 0);
	ia->settle.data = ia;
	return ia;
}

void ifaddrs_close(struct ifaddrs *ia)
{
	if (!ia)
		return;
	if (ia->loop) {
		ev_io_stop(ia->loop, &ia->io);
		ev_timer_stop(ia->loop, &ia->settle);
	}
	if (ia->events)
		mnl_socket_close(ia->events);
	free(ia->list);
	free(ia);
}

const struct ifaddr *ifaddrs_list(const struct ifaddrs *ia, size_t *n)
{
	*n = ia->n;
	return ia->list;
}

bool ifaddrs_is_local(const struct ifaddrs *ia, const union sockaddr_any *a)
{
	const void *addr = a->sa.sa_family == AF_INET
				   ? (const void *)&a->in4.sin_addr
				   : (const void *)&a->in6.sin6_addr;
	size_t len = a->sa.sa_family == AF_INET ? 4 : 16;

	for (size_t i = 0; i < ia->n; i++)
		if (ia->list[i].prefix.family == a->sa.sa_family &&
		    memcmp(ia->list[i].prefix.addr, addr, len) == 0)
			return true;
	return false;
}
