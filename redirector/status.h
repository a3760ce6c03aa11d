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
#include <stddef.h>

struct daemon;
struct flow;

/* Answer to {"request": "status"}; with flows, at most limit of them
 * (newest first; 0 = all). NULL on allocation failure. */
struct json_object *status_json(struct daemon *d, bool flows, unsigned limit);

/* The flow ends: its bytes by local address go to flow_shared's credit
 * (when there are WANs), in the flow's thread. */
void status_flow_end(struct flow *f);
/* On the main thread: credits to the WANs (linkmon_account). */
struct linkmon;
struct wan_credit;
void status_credit_wans(struct linkmon *lm, const struct wan_credit *c,
			size_t n);
/* One worker's part of a status answer, in its thread (worker.h). */
struct flow_env;
struct worker_report;
void status_worker_report(const struct flow_env *env,
			  struct worker_report *rep);

#endif
