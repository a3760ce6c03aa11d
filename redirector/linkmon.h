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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* A reload, applied by difference; WANs are matched by interface name.
 * A WAN in both keeps its whole state (health, counters, RTT, endpoint,
 * routing): a changed mode flips its endpoint's backup flag in place (its
 * subflows stay), a changed table, gateway or position moves its route
 * and rule (the new ones first, so its subflows always have a way out;
 * only two WANs trading tables are without one for a moment). It keeps
 * its endpoint id; one it gets later asks for 100 + its new index. A WAN
 * only in the old set is torn down, one only in the new set starts as at
 * start. Probe settings apply at once (each WAN's next probe goes out
 * now), the fwmark rule follows a new upstream mark, the MPTCP limits the
 * new count, and the best WAN is chosen again. One log line per change.
 * Returns the monitor to use: NULL when the new configuration has no
 * WANs (lm stopped), a new one when lm was NULL. */
struct linkmon *linkmon_reload(struct linkmon *lm, struct ev_loop *loop,
			       const struct upstream *ups,
			       const struct rtmon *rm);
/* Remove the endpoints, rules and routes it made; NULL-safe. */
void linkmon_stop(struct linkmon *lm);

/* ---- status (for the control socket) ----------------------------------- */

struct linkmon_wan_status {
	const char *interface;
	bool backup;            /* configured mode */
	bool up;                /* healthy */
	bool best;              /* carries new flows' initial subflow (the marked route) */
	const char *why;        /* cause of the last state change, e.g. "3 probes lost", "carrier lost", "2 probes answered", "starting" */
	double since;           /* ev_now() of the last state change */
	bool has_addr, has_gw;
	union sockaddr_any addr, gw;
	double rtt_ms;          /* smoothed probe RTT, 0 = none yet */
	uint64_t probes, probes_lost;
	unsigned endpoint;      /* MPTCP endpoint id, 0 = none */
	uint64_t bytes_sent, bytes_received; /* accumulated via linkmon_account */
};

/* The number of WANs, in the order of the configuration. NULL-safe: 0. */
size_t linkmon_count(const struct linkmon *lm);
/* WAN i (< linkmon_count; else *out is zeroed). The strings belong to
 * the monitor and the configuration: valid until the WAN's next change
 * or the next reload. A WAN that is down and then loses its link, address
 * or interface records that as its cause too. */
void linkmon_wan_status(const struct linkmon *lm, size_t i,
			struct linkmon_wan_status *out);
/* Index of the WAN whose current (or last routed) IPv4 address equals
 * addr's address (port ignored; v4-mapped IPv6 accepted), or -1.
 * NULL-safe. */
int linkmon_wan_of(const struct linkmon *lm, const union sockaddr_any *addr);
/* Add bytes carried by subflows that ended to WAN i (the flow module
 * calls this when a flow ends; i from linkmon_wan_of at that moment, out
 * of range ignored). Kept across reloads for a WAN that stays. */
void linkmon_account(struct linkmon *lm, int i, uint64_t sent,
		     uint64_t received);

#endif
