// SPDX-License-Identifier: GPL-2.0-or-later
#include "rtmon.h"

#include <errno.h>
#include <limits.h>
#include <linux/if_addr.h>
#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nl.h"

struct rtmon {
	struct ev_loop *loop;
	struct mnl_socket *events;  /* joined to the address groups */
	ev_io io;
	ev_timer settle;            /* report a burst of events once */
	rtmon_changed_fn *fn;
	void *arg;
	unsigned pending;           /* rtmon_what bits not reported yet */
	/* written by the main thread only; the workers read it
	 * (rtmon_is_local) under addr_lock */
	pthread_rwlock_t addr_lock;
	struct rtmon_addr *list;
	size_t n, cap;
	struct rtmon_link *links;
	size_t n_links, cap_links;
	struct rtmon_route *routes;
	size_t n_routes, cap_routes;
};

/* Room for one more element in a growing array. */
static bool grow(void **arr, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return true;
	size_t c = *cap ? 2 * *cap : 16;
	void *p = realloc(*arr, c * size);
	if (!p) {
		log_error("rtnetlink: out of memory");
		return false;
	}
	*arr = p;
	*cap = c;
	return true;
}

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
static bool parse(const struct nlmsghdr *nlh, struct rtmon_addr *out)
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

static bool same(const struct rtmon_addr *a, const struct rtmon_addr *b)
{
	return a->ifindex == b->ifindex && a->prefix.family == b->prefix.family &&
	       a->prefix.len == b->prefix.len &&
	       memcmp(a->prefix.addr, b->prefix.addr, 16) == 0;
}

/* Apply one address message; true when the list changed. */
static bool apply_addr(struct rtmon *ia, const struct nlmsghdr *nlh)
{
	struct rtmon_addr e;

	if (!parse(nlh, &e))
		return false;
	size_t i = 0;
	bool changed = false;
	pthread_rwlock_wrlock(&ia->addr_lock);
	while (i < ia->n && !same(&ia->list[i], &e))
		i++;
	if (nlh->nlmsg_type == RTM_DELADDR) {
		if (i < ia->n) {
			ia->list[i] = ia->list[--ia->n];
			changed = true;
		}
	} else if (i == ia->n &&
		   grow((void **)&ia->list, &ia->cap, ia->n, sizeof(e))) {
		ia->list[ia->n++] = e;
		changed = true;
	}
	pthread_rwlock_unlock(&ia->addr_lock);
	return changed;
}

static int link_attr_cb(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;

	if (mnl_attr_type_valid(a, IFLA_MAX) < 0)
		return MNL_CB_OK;
	if (mnl_attr_get_type(a) == IFLA_IFNAME &&
	    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0)
		return MNL_CB_ERROR;
	tb[mnl_attr_get_type(a)] = a;
	return MNL_CB_OK;
}

/* RTM_NEWLINK / RTM_DELLINK; true when the list changed. */
static bool apply_link(struct rtmon *rm, const struct nlmsghdr *nlh)
{
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[IFLA_MAX + 1] = { 0 };

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifi)) ||
	    mnl_attr_parse(nlh, sizeof(*ifi), link_attr_cb, tb) != MNL_CB_OK)
		return false;
	size_t i = 0;
	while (i < rm->n_links && rm->links[i].ifindex != ifi->ifi_index)
		i++;
	if (nlh->nlmsg_type == RTM_DELLINK) {
		if (i == rm->n_links)
			return false;
		rm->links[i] = rm->links[--rm->n_links];
		return true;
	}
	struct rtmon_link l = { .ifindex = ifi->ifi_index, .flags = ifi->ifi_flags };
	if (tb[IFLA_IFNAME])
		snprintf(l.name, sizeof(l.name), "%s",
			 mnl_attr_get_str(tb[IFLA_IFNAME]));
	else if (i < rm->n_links)
		memcpy(l.name, rm->links[i].name, sizeof(l.name));
	if (i < rm->n_links) {
		bool same = rm->links[i].flags == l.flags &&
			    strcmp(rm->links[i].name, l.name) == 0;
		rm->links[i] = l;
		return !same;
	}
	if (!grow((void **)&rm->links, &rm->cap_links, rm->n_links, sizeof(l)))
		return false;
	rm->links[rm->n_links++] = l;
	return true;
}

static int route_attr_cb(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(a);

	if (mnl_attr_type_valid(a, RTA_MAX) < 0)
		return MNL_CB_OK;
	if ((type == RTA_OIF || type == RTA_TABLE) &&
	    mnl_attr_validate(a, MNL_TYPE_U32) < 0)
		return MNL_CB_ERROR;
	tb[type] = a;
	return MNL_CB_OK;
}

/* RTM_NEWROUTE / RTM_DELROUTE of an IPv4 main-table default route. */
static bool apply_route(struct rtmon *rm, const struct nlmsghdr *nlh)
{
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[RTA_MAX + 1] = { 0 };

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*rtm)) ||
	    rtm->rtm_family != AF_INET || rtm->rtm_dst_len != 0 ||
	    rtm->rtm_type != RTN_UNICAST ||
	    mnl_attr_parse(nlh, sizeof(*rtm), route_attr_cb, tb) != MNL_CB_OK)
		return false;
	uint32_t table = tb[RTA_TABLE] ? mnl_attr_get_u32(tb[RTA_TABLE])
				       : rtm->rtm_table;
	if (table != RT_TABLE_MAIN || !tb[RTA_OIF])
		return false;
	struct rtmon_route r = { .ifindex = (int)mnl_attr_get_u32(tb[RTA_OIF]) };
	if (tb[RTA_GATEWAY] && mnl_attr_get_payload_len(tb[RTA_GATEWAY]) == 4) {
		r.has_gateway = true;
		r.gateway.in4.sin_family = AF_INET;
		memcpy(&r.gateway.in4.sin_addr,
		       mnl_attr_get_payload(tb[RTA_GATEWAY]), 4);
	}
	size_t i = 0;
	while (i < rm->n_routes && rm->routes[i].ifindex != r.ifindex)
		i++;
	if (nlh->nlmsg_type == RTM_DELROUTE) {
		if (i == rm->n_routes)
			return false;
		rm->routes[i] = rm->routes[--rm->n_routes];
		return true;
	}
	if (i < rm->n_routes) {
		rm->routes[i] = r;
		return true;
	}
	if (!grow((void **)&rm->routes, &rm->cap_routes, rm->n_routes,
		  sizeof(r)))
		return false;
	rm->routes[rm->n_routes++] = r;
	return true;
}

/* Apply one message; the rtmon_what bit of what changed, or 0. */
static unsigned apply(struct rtmon *rm, const struct nlmsghdr *nlh)
{
	switch (nlh->nlmsg_type) {
	case RTM_NEWADDR:
	case RTM_DELADDR:
		return apply_addr(rm, nlh) ? RTMON_ADDRS : 0;
	case RTM_NEWLINK:
	case RTM_DELLINK:
		return apply_link(rm, nlh) ? RTMON_LINKS : 0;
	case RTM_NEWROUTE:
	case RTM_DELROUTE:
		return apply_route(rm, nlh) ? RTMON_ROUTES : 0;
	}
	return 0;
}

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	apply(data, nlh);
	return MNL_CB_OK;
}

/* Fresh lists from dumps on a socket of their own. */
static int dump(struct rtmon *ia)
{
	static const struct { uint16_t type; uint8_t family; } dumps[] = {
		{ RTM_GETLINK, AF_UNSPEC },
		{ RTM_GETADDR, AF_UNSPEC },
		{ RTM_GETROUTE, AF_INET },
	};
	struct mnl_socket *nl = nl_open(NETLINK_ROUTE, 0, false);
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int rc = 0;

	if (!nl)
		return -errno;
	pthread_rwlock_wrlock(&ia->addr_lock);
	ia->n = 0; /* (a worker finds no address until the dump ends) */
	pthread_rwlock_unlock(&ia->addr_lock);
	ia->n_links = ia->n_routes = 0;
	for (size_t i = 0; i < sizeof(dumps) / sizeof(*dumps) && rc == 0; i++) {
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
		nlh->nlmsg_type = dumps[i].type;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		/* rtgenmsg-sized header; ifinfomsg/rtmsg both start with
		 * the family */
		struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
		rtm->rtm_family = dumps[i].family;
		rc = nl_talk(nl, nlh, dump_cb, ia);
	}
	mnl_socket_close(nl);
	return rc;
}

static void report(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rtmon *ia = w->data;
	unsigned what = ia->pending;

	ia->pending = 0;
	ia->fn(ia, what, ia->arg);
}

static void changed(struct rtmon *ia, unsigned what)
{
	ia->pending |= what;
	/* Addresses come and go in bursts (an interface going down): tell
	 * once, a moment later. */
	if (!ev_is_active(&ia->settle))
		ev_timer_start(ia->loop, &ia->settle);
}

static void on_events(struct ev_loop *loop, ev_io *w, int revents)
{
	struct rtmon *ia = w->data;
	char buf[NL_BUF_SIZE];
	unsigned any = 0;

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
				any = RTMON_ADDRS | RTMON_LINKS | RTMON_ROUTES;
				continue;
			}
			log_error("router addresses: netlink: %s",
				  strerror(errno));
			break;
		}
		int len = (int)n;
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
		for (; nl_msg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len))
			any |= apply(ia, nlh);
	}
	if (any)
		changed(ia, any);
}

struct rtmon *rtmon_open(struct ev_loop *loop, rtmon_changed_fn *fn,
			     void *arg)
{
	struct rtmon *ia = calloc(1, sizeof(*ia));
	if (!ia)
		return NULL;
	pthread_rwlock_init(&ia->addr_lock, NULL);
	ia->loop = loop;
	ia->fn = fn;
	ia->arg = arg;
	/* Join the groups before the dump: no change falls in between. */
	ia->events = nl_open(NETLINK_ROUTE, RTMGRP_LINK | RTMGRP_IPV4_IFADDR |
			     RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE, true);
	int rc = ia->events ? dump(ia) : -errno;
	if (rc < 0) {
		rtmon_close(ia);
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

void rtmon_close(struct rtmon *ia)
{
	if (!ia)
		return;
	if (ia->loop) {
		ev_io_stop(ia->loop, &ia->io);
		ev_timer_stop(ia->loop, &ia->settle);
	}
	if (ia->events)
		mnl_socket_close(ia->events);
	pthread_rwlock_destroy(&ia->addr_lock);
	free(ia->list);
	free(ia->links);
	free(ia->routes);
	free(ia);
}

const struct rtmon_link *rtmon_link_by_name(const struct rtmon *rm,
					    const char *name)
{
	for (size_t i = 0; i < rm->n_links; i++)
		if (strcmp(rm->links[i].name, name) == 0)
			return &rm->links[i];
	return NULL;
}

bool rtmon_link_running(const struct rtmon_link *l)
{
	return (l->flags & IFF_UP) && (l->flags & IFF_LOWER_UP);
}

const struct rtmon_addr *rtmon_first_addr(const struct rtmon *rm, int ifindex,
					  int family)
{
	for (size_t i = 0; i < rm->n; i++) {
		const struct rtmon_addr *a = &rm->list[i];
		if (a->ifindex != ifindex || a->prefix.family != family)
			continue;
		if (family == AF_INET6 && a->prefix.addr[0] == 0xfe &&
		    (a->prefix.addr[1] & 0xc0) == 0x80)
			continue; /* link-local */
		return a;
	}
	return NULL;
}

const struct rtmon_route *rtmon_default_route(const struct rtmon *rm,
					      int ifindex)
{
	for (size_t i = 0; i < rm->n_routes; i++)
		if (rm->routes[i].ifindex == ifindex)
			return &rm->routes[i];
	return NULL;
}

const struct rtmon_addr *rtmon_addrs(const struct rtmon *ia, size_t *n)
{
	*n = ia->n;
	return ia->list;
}

bool rtmon_is_local(const struct rtmon *ia, const union sockaddr_any *a)
{
	const void *addr = a->sa.sa_family == AF_INET
				   ? (const void *)&a->in4.sin_addr
				   : (const void *)&a->in6.sin6_addr;
	size_t len = a->sa.sa_family == AF_INET ? 4 : 16;
	bool local = false;

	pthread_rwlock_rdlock((pthread_rwlock_t *)&ia->addr_lock);
	for (size_t i = 0; i < ia->n && !local; i++)
		local = ia->list[i].prefix.family == a->sa.sa_family &&
			memcmp(ia->list[i].prefix.addr, addr, len) == 0;
	pthread_rwlock_unlock((pthread_rwlock_t *)&ia->addr_lock);
	return local;
}

/* --- For tests and fuzzing (rtmon.h) ------------------------------------ */

struct rtmon *rtmon_open_detached(void)
{
	struct rtmon *rm = calloc(1, sizeof(*rm));
	if (rm)
		pthread_rwlock_init(&rm->addr_lock, NULL);
	return rm;
}

unsigned rtmon_apply_msgs(struct rtmon *rm, const void *buf, size_t len)
{
	const struct nlmsghdr *nlh = buf;
	int n = len > INT_MAX ? INT_MAX : (int)len;
	unsigned any = 0;

	for (; nl_msg_ok(nlh, n); nlh = mnl_nlmsg_next(nlh, &n))
		any |= apply(rm, nlh);
	return any;
}
