/* SPDX-License-Identifier: GPL-2.0-or-later */
/* linkmon: the WAN links (config wans[]). Per WAN: link and carrier, its
 * address and gateway (from rtmon, or configured), probes bound to it
 * (TCP connect or ICMP echo, RTT and loss), and a health state with
 * hysteresis: down at once on carrier loss or a lost address, down after
 * `down_after` probes lost in a row, up after `up_after` answered. A
 * healthy WAN gets an MPTCP endpoint (subflow, + backup for a backup WAN),
 * a routing table with its default route and a rule "from <its address>";
 * the daemon's marked sockets get a rule to a table whose default route is
 * the best healthy WAN (the first active one, else the first backup one).
 * Every change is logged with its cause. Only what it created is removed. */
#ifndef MPREDIR_LINKMON_H
#define MPREDIR_LINKMON_H

#include <ev.h>

#include "rtmon.h"
#include "upstream.h"

/* Rule priorities (before the main table's 32766). */
#define LINKMON_RULE_PRIO_FROM 10000 /* + WAN index */
#define LINKMON_RULE_PRIO_MARK 10100
/* The table of the marked sockets' route. */
#define LINKMON_BEST_TABLE (CONFIG_WAN_TABLE_BASE - 1)

struct linkmon;

/* Start following ups->cfg->wans (at least one). NULL after logging why. */
struct linkmon *linkmon_start(struct ev_loop *loop, const struct upstream *ups,
			      const struct rtmon *rm);
/* rtmon saw changes (rtmon_what bits). */
void linkmon_network_changed(struct linkmon *lm, unsigned what);
/* A reload: with the same WANs and probe settings the monitor goes on with
 * the new set (nothing is torn down: running flows keep their subflows);
 * otherwise it starts anew. Returns the monitor to use (NULL when the new
 * configuration has no WANs). */
struct linkmon *linkmon_reload(struct linkmon *lm, struct ev_loop *loop,
			       const struct upstream *ups,
			       const struct rtmon *rm);
/* Remove the endpoints, rules and routes it made; NULL-safe. */
void linkmon_stop(struct linkmon *lm);

#endif
