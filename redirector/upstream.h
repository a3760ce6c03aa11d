/* SPDX-License-Identifier: GPL-2.0-or-later */
/* upstream: the aggregation servers of one configuration: their resolved
 * addresses, choice in order, health from flow outcomes (back-off), and the
 * per-flow MPTCP socket with its TCP fallback. */
#ifndef MPREDIR_UPSTREAM_H
#define MPREDIR_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"

struct upstream_server {
	const struct config_server *cfg;
	union sockaddr_any addr;
	bool resolved;
	char name[ADDR_STRLEN + 256]; /* "host (addr)" or "addr", for logs */
	unsigned consecutive_failures;
	double backoff_until;          /* ev_now() time; 0 = usable */
	uint64_t flows, failures;
};

/* One configuration's server set. Flows hold a reference, so a reload can
 * install a new set while old flows finish with the old one. */
struct upstream {
	struct config *cfg; /* owned: freed with the set */
	struct upstream_server *servers;
	size_t n;
	unsigned refs;
};

/* Takes ownership of cfg. Resolves host names (blocking getaddrinfo; done at
 * start and on reload only); a name that does not resolve is logged and the
 * server is unusable until the next reload. NULL on allocation failure. */
struct upstream *upstream_new(struct config *cfg);
struct upstream *upstream_ref(struct upstream *u);
void upstream_unref(struct upstream *u);

/* The next usable server in configuration order, starting at index *pos
 * (begin with *pos = 0); advances *pos past it. NULL when none is left. */
struct upstream_server *upstream_next(struct upstream *u, size_t *pos,
				      double now);

/* A flow's outcome with server s: a failure to reach it or to get through
 * the SOCKS greeting/auth counts against it, and after two in a row it is
 * skipped for a back-off that doubles up to cfg->server_backoff_s. */
void upstream_report(struct upstream *u, struct upstream_server *s, bool ok,
		     double now);

/* A non-blocking socket with a connect() to s in progress (or done).
 * MPTCP when cfg->mptcp and the kernel allows it, else TCP (logged when
 * this changes). Marked with cfg->mark, TCP_NODELAY, keepalive.
 * Returns the fd, or -errno with `what` naming the call that failed. */
int upstream_connect(const struct upstream *u, const struct upstream_server *s,
		     bool *is_mptcp, const char **what);

#endif
