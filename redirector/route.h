/* SPDX-License-Identifier: GPL-2.0-or-later */
/* route: the policy routing the daemon owns, through rtnetlink. Its rules
 * and routes carry protocol RTPROT_MPREDIR, so that they can be told from
 * anyone else's (`ip rule show` / `ip route show table N` print "proto
 * 77"), and only those are ever removed. */
#ifndef MPREDIR_ROUTE_H
#define MPREDIR_ROUTE_H

#include <stdint.h>

#define RTPROT_MPREDIR 77

/* tproxy: packets marked `mark` are delivered locally, through routing
 * table `table` ("local default dev lo"), for IPv4 and IPv6. Idempotent.
 * 0, or -errno with *what naming the step that failed. */
int route_tproxy_add(uint32_t mark, uint32_t table, const char **what);
/* Remove them (what is missing is fine). */
void route_tproxy_del(uint32_t mark, uint32_t table);

#endif
