/* SPDX-License-Identifier: GPL-2.0-or-later */
/* worker: the threads that carry flows. Each worker has its own libev loop,
 * its own listening socket (SO_REUSEPORT: the kernel spreads new
 * connections over them), its own flows and warm pools; worker 0 runs on
 * the main loop, which alone does the rest (signals, control socket,
 * netlink: firewall, link monitor). The main thread talks to the other
 * workers only through requests (apply a server set and listener, report
 * for status, stop), each waited for; the workers talk to it only through
 * what flow_shared offers (atomic counters, byte credits for the WANs). */
#ifndef MPREDIR_WORKER_H
#define MPREDIR_WORKER_H

#include <ev.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>

#include "config.h"
#include "flow.h"
#include "listener.h"

/* One worker's figures for a status answer, made in its thread. */
struct worker_report {
	/* asked */
	bool list_flows;
	unsigned limit;                  /* 0: all */
	const struct linkmon *linkmon;   /* read only while main waits */
	const struct upstream *ups;      /* the set whose pools to report */
	/* answered */
	unsigned nflows;
	struct flow_stats stats;
	uint64_t live_up, live_down;     /* bytes of its open flows */
	uint64_t wan_sent[CONFIG_MAX_WANS], wan_received[CONFIG_MAX_WANS];
	struct json_object *flows;       /* newest first, or NULL */
	struct pool_figures {
		bool has;
		unsigned ready, opening;
		uint64_t taken, discarded;
	} *pools;                        /* one per server of ups */
};

struct worker;

/* A worker with its loop (index 0: `loop`, the main loop; others: a new
 * loop, no thread yet). NULL on failure (logged). */
struct worker *worker_new(struct flow_shared *shared, unsigned index,
			  struct ev_loop *loop);
/* Its listener, to open (listener_open) before worker_apply hands it over. */
struct listener *worker_listener(struct worker *w);
struct flow_env *worker_env(struct worker *w);
/* Start its thread (index > 0). 0 or -errno. */
int worker_run(struct worker *w);
/* Use server set ups for new flows (a reference is taken), with tproxy on
 * or off; and, when l is not NULL, listen on l (taken over: the worker's
 * old listener is closed). Done in the worker's thread; returns when it
 * is. */
void worker_apply(struct worker *w, struct upstream *ups, bool tproxy,
		  struct listener *l);
/* Fill rep (see above) in the worker's thread; returns when done. */
void worker_report(struct worker *w, struct worker_report *rep);
/* Stop: reset its flows, close its listener and pools, end its thread,
 * free it. NULL-safe. */
void worker_stop(struct worker *w);

#endif
