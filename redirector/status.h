/* SPDX-License-Identifier: GPL-2.0-or-later */
/* status: what `mpredir status` shows, as JSON (schema: doc/status.md):
 * the daemon's counters, the servers, the WANs with the bytes their
 * subflows carried, and each flow with its subflows as the kernel reports
 * them (paths.c). Per-WAN bytes = subflows of flows that ended (counted at
 * their end) + subflows of the flows alive now (read now). A subflow that
 * closes while its flow goes on is counted with the figures of the last
 * reading that saw it (a status request, or the flow's end). */
#ifndef MPREDIR_STATUS_H
#define MPREDIR_STATUS_H

#include <json-c/json.h>
#include <stdbool.h>

struct daemon;
struct flow;

/* Answer to {"request": "status"}; with flows, at most limit of them
 * (newest first; 0 = all). NULL on allocation failure. */
struct json_object *status_json(struct daemon *d, bool flows, unsigned limit);

/* Hooks of the flow module: the flow starts relaying (its transport is
 * known: counted on its server) / the flow ends (its subflows' bytes go to
 * their WANs; f->paths is freed). */
void status_flow_relaying(struct flow *f);
void status_flow_end(struct flow *f);

#endif
