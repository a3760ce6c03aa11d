/* SPDX-License-Identifier: GPL-2.0-or-later */
/* capture: what the router hands to the daemon — the policy behind the
 * nftables table. It builds the fw spec from the configuration (LAN
 * interfaces, mode, ports, the user's bypass list), the servers' resolved
 * addresses and the router's own addresses and subnets, plus the reserved
 * ranges; installs it (and, in tproxy mode, the policy routing tproxy
 * needs); and keeps the bypass sets current as addresses change. */
#ifndef MPREDIR_CAPTURE_H
#define MPREDIR_CAPTURE_H

#include <ev.h>

#include "config.h"
#include "rtmon.h"
#include "upstream.h"

struct capture;

/* Install per ups->cfg (firewall.enabled must be true); ups and ia must
 * outlive the capture or be replaced by capture_reload(). NULL after
 * logging why on failure. */
struct capture *capture_start(struct ev_loop *loop, const struct upstream *ups,
			      const struct rtmon *ia);
/* A new server set and its configuration (reload): only the sets whose
 * elements differ are rewritten, unless the chains change too (mode,
 * port, mark, ...): then the table is rebuilt. 0, or -1 after logging
 * (the old rules stay, for the old set). */
int capture_reload(struct capture *c, const struct upstream *ups);
/* The router's addresses changed: rewrite the bypass sets that differ. */
void capture_addresses_changed(struct capture *c);
/* Remove the table and routes; NULL-safe. */
void capture_stop(struct capture *c);

#endif
