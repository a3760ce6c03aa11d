/* SPDX-License-Identifier: GPL-2.0-or-later */
/* route: the policy routing the daemon owns, through rtnetlink. Its rules
 * and routes carry protocol RTPROT_MPREDIR, so that they can be told from
 * anyone else's (`ip rule show` / `ip route show table N` print "proto
 * 77"), and only those are ever removed. */
#ifndef MPREDIR_ROUTE_H
#define MPREDIR_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

#define RTPROT_MPREDIR 77

/* tproxy: packets marked `mark` are delivered locally, through routing
 * table `table` ("local default dev lo"), for IPv4 and IPv6. Idempotent.
 * 0, or -errno with *what naming the step that failed. */
int route_tproxy_add(uint32_t mark, uint32_t table, const char **what);
/* Remove them (what is missing is fine). */
void route_tproxy_del(uint32_t mark, uint32_t table);

/* IPv4 default route of `table`: via gw (NULL: straight out of the
 * interface, e.g. point-to-point) on ifindex; replaces the one there.
 * 0 or -errno. */
int route_default_set(uint32_t table, const union sockaddr_any *gw,
		      int ifindex);
void route_default_del(uint32_t table);
/* Rules "from <src> lookup <table>" and "fwmark <mark> lookup <table>" at
 * priority prio; adding one that exists, or removing one that does not,
 * is fine. 0 or -errno. */
int route_rule_from(bool add, const union sockaddr_any *src, uint32_t table,
		    uint32_t prio);
int route_rule_fwmark(bool add, int family, uint32_t mark, uint32_t table,
		      uint32_t prio);

#endif
