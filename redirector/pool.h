/* SPDX-License-Identifier: GPL-2.0-or-later */
/* pool: warm connections to one server, opened in advance and taken past
 * the connect, the method negotiation and the RFC 1929 auth, so that a new
 * flow only has to send its CONNECT (and first bytes).
 *
 * - A warm connection is watched while it waits: if the server closes it
 *   (its negotiation timeout, a restart) or sends anything, it is discarded
 *   at once; pool_take() checks again before handing one out. A dead
 *   connection is never given to a flow.
 * - It is recycled after pool.lifetime_s (keep that below the server's
 *   negotiation timeout: dante's timeout.negotiate is 30 s by default).
 * - The pool refills after a use, and replaces expired connections only
 *   while it was used within pool.keep_warm_s: an idle router lets it
 *   drain and then sends nothing.
 * - Connection failures count against the server (upstream_report); no
 *   refill while the server is backing off. */
#ifndef MPREDIR_POOL_H
#define MPREDIR_POOL_H

#include <ev.h>
#include <stdbool.h>

#include "upstream.h"

struct pool_conn;

struct pool {
	struct ev_loop *loop;
	struct upstream *ups;           /* not a reference: the set owns us */
	struct upstream_server *server;
	struct pool_conn *conns;        /* opening and ready ones */
	unsigned n, n_ready;
	double last_used;
	ev_timer retry;                 /* refill when a back-off ends */
	uint64_t taken, discarded;      /* counters */
};

/* Each worker (thread, loop) has its own pools: server->pools[worker].
 * Pools for every server of u with pool.size > 0, and start filling them.
 * On a reload, `old` is the previous set: a server in both takes over its
 * pool (the warm connections stay); else NULL. Servers that already have
 * a pool keep it. 0 or -ENOMEM. */
int pool_start_all(struct ev_loop *loop, struct upstream *u,
		   struct upstream *old, unsigned worker);
/* Close every warm connection of u's servers (this worker's) and free the
 * pools. */
void pool_stop_all(struct upstream *u, unsigned worker);

/* A ready, live connection to the server (fd ownership passes to the
 * caller; *is_mptcp tells its kind), or -1 when none is ready. Counts as a
 * use: the pool refills. */
int pool_take(struct pool *p, bool *is_mptcp);
/* A flow to this server could not use the pool: keep it warm anyway. */
void pool_note_use(struct pool *p);

#endif
