/* SPDX-License-Identifier: GPL-2.0-or-later */
/* upstream: the aggregation servers of one configuration: their resolved
 * addresses, choice in order, health from flow outcomes (back-off), and the
 * per-flow MPTCP socket with its TCP fallback. */
#ifndef MPREDIR_UPSTREAM_H
#define MPREDIR_UPSTREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"

/* What we know of a server's handling of a pipelined handshake. */
enum upstream_pipelining {
	UPSTREAM_PIPE_UNKNOWN, /* the next pipelined flow checks it */
	UPSTREAM_PIPE_YES,     /* answered every message of one write */
	UPSTREAM_PIPE_NO,      /* dropped what followed the greeting */
};

struct pool;

/* What is learnt of a server, and its counters. Shared by the server's
 * entries in successive sets (upstream_carry_over): flows still using an
 * old set after a reload update the same figures. */
struct upstream_state {
	pthread_mutex_t lock;          /* the workers share it */
	unsigned refs;                 /* atomic */
	enum upstream_pipelining pipelining;
	double pipelining_recheck;     /* when NO becomes UNKNOWN again */
	unsigned consecutive_failures;
	double backoff_until;          /* ev_now() time; 0 = usable */
	uint64_t flows, failures;
	/* connections that relayed, by what they turned out to be */
	uint64_t n_mptcp, n_fallback, n_tcp;
	uint64_t n_fast_open;          /* of those: data in the SYN accepted */
};

/* Counters of upstream_state: atomic, no lock. */
#define UPSTREAM_COUNT(s, field) \
	__atomic_fetch_add(&(s)->st->field, 1, __ATOMIC_RELAXED)

struct upstream_server {
	const struct config_server *cfg;
	struct pool *pools[CONFIG_MAX_WORKERS]; /* warm connections, per worker;
						 * NULL without */
	struct upstream_state *st;
	union sockaddr_any addr;
	bool resolved;
	char name[ADDR_STRLEN + 256]; /* "host (addr)" or "addr", for logs */
};

/* One configuration's server set. Flows hold a reference, so a reload can
 * install a new set while old flows finish with the old one. */
struct upstream {
	struct config *cfg; /* owned: freed with the set */
	struct upstream_server *servers;
	size_t n;
	unsigned refs;      /* atomic: the workers take references */
};

/* Takes ownership of cfg. Resolves host names (blocking getaddrinfo; done at
 * start and on reload only); a name that does not resolve is logged and the
 * server is unusable until the next reload. NULL on allocation failure. */
struct upstream *upstream_new(struct config *cfg);
struct upstream *upstream_ref(struct upstream *u);
/* The server of `old` that is the same as s (address as written, port,
 * credentials, resolved address), or NULL. */
struct upstream_server *upstream_match(const struct upstream *old,
				       const struct upstream_server *s);
/* A reload: servers of u that were in old share their state with them
 * (what was learnt: back-off, pipelining; and the counters). */
void upstream_carry_over(struct upstream *u, const struct upstream *old);
void upstream_unref(struct upstream *u);

/* The next server to try for a flow, starting at *pos (begin with 0);
 * advances *pos past it. Servers in configuration order, those backing off
 * skipped — and then, as a last resort, those backing off too: a server
 * that is back is found by the next flow, not after its back-off. NULL
 * when every server has been tried. */
struct upstream_server *upstream_next(struct upstream *u, size_t *pos,
				      double now);

/* A flow's outcome with server s: a failure to reach it or to get through
 * the SOCKS greeting/auth counts against it, and after two in a row it is
 * passed over (while another server can be used) for a back-off that
 * doubles up to cfg->server_backoff_s; a success ends the back-off. */
void upstream_report(struct upstream *u, struct upstream_server *s, bool ok,
		     double now);

/* A non-blocking socket with a connect() to s in progress (or done).
 * MPTCP when cfg->mptcp and the kernel allows it, else TCP (logged when
 * this changes). Marked with cfg->mark, TCP_NODELAY, keepalive.
 * Returns the fd, or -errno with `what` naming the call that failed. */
int upstream_connect(const struct upstream *u, const struct upstream_server *s,
		     bool fast_open, bool *is_mptcp, const char **what);

/* Whether a new flow to s sends greeting, auth, CONNECT and its first bytes
 * in one write: configured "on"; or "auto" unless s was found not to take
 * that (re-checked UPSTREAM_PIPE_RECHECK_S later). */
#define UPSTREAM_PIPE_RECHECK_S 600
bool upstream_pipeline(struct upstream_server *s, double now);
/* Pipelined first bytes on an already negotiated (pooled) connection are
 * only safe with a server known to take them. */
bool upstream_pipeline_proven(const struct upstream_server *s);
/* Outcome of a pipelined handshake whose replies were watched. */
void upstream_pipelining_learned(struct upstream_server *s, bool works,
				 double now);

/* A consistent copy of s's state (for status). */
void upstream_state_get(const struct upstream_server *s,
			struct upstream_state *out);
/* When s's back-off ends (0: not backing off). */
double upstream_backoff_until(const struct upstream_server *s);
/* What is known of s's pipelining; upstream_pipelining_unsure: a flow
 * that relied on it found nothing (YES becomes UNKNOWN again). */
enum upstream_pipelining upstream_pipelining(const struct upstream_server *s);
void upstream_pipelining_unsure(struct upstream_server *s);

/* Whether new upstream sockets should use TCP Fast Open: "on"; "auto" only
 * where the socket will be plain TCP (MPTCP off or refused by the kernel):
 * see doc/configuration.md for why not over MPTCP. */
bool upstream_fast_open(const struct upstream *u);

#endif
