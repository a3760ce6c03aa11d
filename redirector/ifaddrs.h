/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ifaddrs: the router's own addresses, from rtnetlink: dumped at start,
 * then followed by events (re-dumped after ENOBUFS). Other modules read
 * the list and hear of changes through one callback. */
#ifndef MPREDIR_IFADDRS_H
#define MPREDIR_IFADDRS_H

#include <ev.h>
#include <stdbool.h>

#include "addr.h"

struct ifaddr {
	struct addr_prefix prefix; /* the address, with its subnet's length */
	int ifindex;
};

struct ifaddrs;

/* Called (from the loop) after the list changed. */
typedef void ifaddrs_changed_fn(struct ifaddrs *ia, void *arg);

/* Dump the addresses now and follow them. NULL with errno on failure. */
struct ifaddrs *ifaddrs_open(struct ev_loop *loop, ifaddrs_changed_fn *fn,
			     void *arg);
void ifaddrs_close(struct ifaddrs *ia);

/* The current list (valid until the next change or close). */
const struct ifaddr *ifaddrs_list(const struct ifaddrs *ia, size_t *n);

/* Whether addr (family AF_INET/AF_INET6, network order) is one of ours. */
bool ifaddrs_is_local(const struct ifaddrs *ia, const union sockaddr_any *a);

#endif
