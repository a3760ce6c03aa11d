/* SPDX-License-Identifier: GPL-2.0-or-later */
/* status: what `mpredir status` shows, as JSON (schema: doc/status.md):
 * the daemon's counters, the servers, the WANs with the bytes their
 * subflows carried, and each flow with its subflows as the kernel reports
 * them (paths.c). Per-WAN bytes = flows that ended (read at their end) +
 * flows open now (read now); per flow, each subflow's bytes go to the WAN
 * of its local address, and what the connection carried on subflows that
 * have closed (its own total, Linux 6.5+, minus its subflows') to the WAN
 * of its first subflow. No memory is kept per flow for this. */
#ifndef MPREDIR_STATUS_H
#define MPREDIR_STATUS_H

#include <json-c/json.h>
#include <stdbool.h>

struct daemon;
struct flow;

/* Answer to {"request": "status"}; with flows, at most limit of them
 * (newest first; 0 = all). NULL on allocation failure. */
struct json_object *status_json(struct daemon *d, bool flows, unsigned limit);

/* The flow ends: its subflows' bytes go to their WANs (linkmon_account). */
void status_flow_end(struct flow *f);

#endif
