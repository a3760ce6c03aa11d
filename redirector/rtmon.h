/* SPDX-License-Identifier: GPL-2.0-or-later */
/* rtmon: what the kernel says of the router's links (up, carrier),
 * addresses and main-table default routes, from rtnetlink: dumped at
 * start, then followed by events (dumped again after ENOBUFS). Other
 * modules read the lists and hear of changes through one callback. */
#ifndef MPREDIR_RTMON_H
#define MPREDIR_RTMON_H

#include <ev.h>
#include <stdbool.h>

#include "addr.h"

#include <net/if.h>

struct rtmon_addr {
	struct addr_prefix prefix; /* the address, with its subnet's length */
	int ifindex;
};

struct rtmon_link {
	int ifindex;
	char name[IF_NAMESIZE];
	unsigned flags;            /* IFF_UP, IFF_LOWER_UP (carrier), ... */
};

/* A default route of the main table (IPv4). */
struct rtmon_route {
	int ifindex;
	bool has_gateway;
	union sockaddr_any gateway;
};

enum rtmon_what { RTMON_ADDRS = 1, RTMON_LINKS = 2, RTMON_ROUTES = 4 };

struct rtmon;

/* Called (from the loop, a moment after a burst of events) with the
 * rtmon_what bits of what changed. */
typedef void rtmon_changed_fn(struct rtmon *ia, unsigned what, void *arg);

/* Dump the addresses now and follow them. NULL with errno on failure. */
struct rtmon *rtmon_open(struct ev_loop *loop, rtmon_changed_fn *fn,
			     void *arg);
void rtmon_close(struct rtmon *ia);

/* The current list (valid until the next change or close). */
const struct rtmon_addr *rtmon_addrs(const struct rtmon *ia, size_t *n);

const struct rtmon_link *rtmon_link_by_name(const struct rtmon *rm,
					    const char *name);
/* Administratively up and with carrier. */
bool rtmon_link_running(const struct rtmon_link *l);
/* The first address of `family` on ifindex (link-local IPv6 skipped), or
 * NULL. */
const struct rtmon_addr *rtmon_first_addr(const struct rtmon *rm, int ifindex,
					  int family);
/* The main table's IPv4 default route through ifindex, or NULL. */
const struct rtmon_route *rtmon_default_route(const struct rtmon *rm,
					      int ifindex);

/* Whether addr (family AF_INET/AF_INET6, network order) is one of ours. */
bool rtmon_is_local(const struct rtmon *ia, const union sockaddr_any *a);

/* --- For tests and fuzzing: the message parsers, without a socket ------ */

/* An rtmon with empty lists, no socket, no loop and no callback; free it
 * with rtmon_close(). NULL on no memory. */
struct rtmon *rtmon_open_detached(void);
/* Apply a buffer of netlink messages as the event socket receives it
 * (RTM_NEWLINK/DELLINK, NEWADDR/DELADDR, NEWROUTE/DELROUTE; any other type,
 * and whatever follows the last whole message, ignored), exactly as
 * events are applied. Returns the rtmon_what bits of what changed. */
unsigned rtmon_apply_msgs(struct rtmon *rm, const void *buf, size_t len);

#endif
