// SPDX-License-Identifier: GPL-2.0-or-later
#include "upstream.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

/* Set once the kernel refused an MPTCP socket; cleared when it takes one
 * (any worker: atomic, so that it is logged once). */
static bool mptcp_refused_logged;

static int resolve(struct upstream_server *s)
{
	const struct config_server *c = s->cfg;
	char buf[ADDR_STRLEN];

	if (addr_parse(c->address, c->port, &s->addr) == 0) {
		snprintf(s->name, sizeof(s->name), "%s",
			 addr_fmt(&s->addr, buf, sizeof(buf)));
		return 0;
	}
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_ADDRCONFIG,
	}, *res;
	char port[8];
	snprintf(port, sizeof(port), "%u", c->port);
	int rc = getaddrinfo(c->address, port, &hints, &res);
	if (rc != 0) {
		snprintf(s->name, sizeof(s->name), "%s:%u", c->address, c->port);
		log_warn("server %s: cannot resolve: %s; unusable until reload",
			 s->name, gai_strerror(rc));
		return -1;
	}
	memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	snprintf(s->name, sizeof(s->name), "%s (%s)", c->address,
		 addr_fmt(&s->addr, buf, sizeof(buf)));
	return 0;
}

struct upstream *upstream_new(struct config *cfg)
{
	struct upstream *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->servers = calloc(cfg->n_servers, sizeof(*u->servers));
	if (!u->servers) {
		free(u);
		return NULL;
	}
	u->cfg = cfg;
	u->n = cfg->n_servers;
	u->refs = 1;
	for (size_t i = 0; i < u->n; i++) {
		struct upstream_server *s = &u->servers[i];
		if (!(s->st = calloc(1, sizeof(*s->st)))) {
			u->cfg = NULL; /* the caller still owns cfg */
			upstream_unref(u);
			return NULL;
		}
		s->st->refs = 1;
		pthread_mutex_init(&s->st->lock, NULL);
		s->cfg = &cfg->servers[i];
		s->resolved = resolve(s) == 0;
	}
	return u;
}

static void state_unref(struct upstream_state *st)
{
	if (st && !__atomic_sub_fetch(&st->refs, 1, __ATOMIC_ACQ_REL)) {
		pthread_mutex_destroy(&st->lock);
		free(st);
	}
}

#define LOCK(s) pthread_mutex_lock(&(s)->st->lock)
#define UNLOCK(s) pthread_mutex_unlock(&(s)->st->lock)

void upstream_state_get(const struct upstream_server *s,
			struct upstream_state *out)
{
	LOCK(s);
	*out = *s->st;
	UNLOCK(s);
}

double upstream_backoff_until(const struct upstream_server *s)
{
	LOCK(s);
	double t = s->st->backoff_until;
	UNLOCK(s);
	return t;
}

enum upstream_pipelining upstream_pipelining(const struct upstream_server *s)
{
	LOCK(s);
	enum upstream_pipelining p = s->st->pipelining;
	UNLOCK(s);
	return p;
}

void upstream_pipelining_unsure(struct upstream_server *s)
{
	LOCK(s);
	if (s->st->pipelining == UPSTREAM_PIPE_YES)
		s->st->pipelining = UPSTREAM_PIPE_UNKNOWN;
	UNLOCK(s);
}

struct upstream *upstream_ref(struct upstream *u)
{
	__atomic_add_fetch(&u->refs, 1, __ATOMIC_RELAXED);
	return u;
}

void upstream_unref(struct upstream *u)
{
	if (!u || __atomic_sub_fetch(&u->refs, 1, __ATOMIC_ACQ_REL))
		return;
	for (size_t i = 0; i < u->n; i++)
		state_unref(u->servers[i].st);
	config_free(u->cfg);
	free(u->servers);
	free(u);
}

struct upstream_server *upstream_next(struct upstream *u, size_t *pos,
				      double now)
{
	/* Positions 0..n-1: the servers not backing off, in order; then
	 * n..2n-1: those backing off, as a last resort. */
	while (*pos < 2 * u->n) {
		size_t i = (*pos)++;
		struct upstream_server *s = &u->servers[i % u->n];
		bool backing_off = upstream_backoff_until(s) > now;
		if (s->resolved && backing_off == (i >= u->n))
			return s;
	}
	return NULL;
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

struct upstream_server *upstream_match(const struct upstream *old,
				       const struct upstream_server *s)
{
	for (size_t i = 0; old && i < old->n; i++) {
		struct upstream_server *o = &old->servers[i];
		if (strcmp(o->cfg->address, s->cfg->address) == 0 &&
		    o->cfg->port == s->cfg->port &&
		    same_str(o->cfg->username, s->cfg->username) &&
		    same_str(o->cfg->password, s->cfg->password) &&
		    o->resolved == s->resolved &&
		    (!s->resolved || addr_equal(&o->addr, &s->addr)))
			return o;
	}
	return NULL;
}

void upstream_carry_over(struct upstream *u, const struct upstream *old)
{
	for (size_t i = 0; i < u->n; i++) {
		struct upstream_server *s = &u->servers[i];
		const struct upstream_server *o = upstream_match(old, s);
		if (!o)
			continue;
		state_unref(s->st);
		s->st = o->st;
		__atomic_add_fetch(&s->st->refs, 1, __ATOMIC_RELAXED);
	}
}

void upstream_report(struct upstream *u, struct upstream_server *s, bool ok,
		     double now)
{
	struct upstream_state *st = s->st;
	bool was_off, off = false;
	unsigned in_a_row;
	double backoff = 0;

	LOCK(s);
	if (ok) {
		was_off = st->backoff_until != 0;
		st->consecutive_failures = 0;
		st->backoff_until = 0;
		UNLOCK(s);
		if (was_off)
			log_info("server %s: working again", s->name);
		return;
	}
	st->failures++;
	in_a_row = ++st->consecutive_failures;
	if (in_a_row >= 2) {
		backoff = 1 << (in_a_row < 12 ? in_a_row - 2 : 10);
		if (backoff > u->cfg->server_backoff_s)
			backoff = u->cfg->server_backoff_s;
		st->backoff_until = now + backoff;
		off = true;
	}
	UNLOCK(s);
	if (off)
		log_warn("server %s: %u failures in a row, skipped for %.0f s",
			 s->name, in_a_row, backoff);
}

static int open_socket(int family, bool want_mptcp, bool *is_mptcp)
{
	const int type = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;

	if (want_mptcp) {
		int fd = socket(family, type, IPPROTO_MPTCP);
		if (fd >= 0) {
			if (__atomic_exchange_n(&mptcp_refused_logged, false,
						__ATOMIC_RELAXED))
				log_info("MPTCP available again");
			*is_mptcp = true;
			return fd;
		}
		if (errno != EPROTONOSUPPORT && errno != ENOPROTOOPT &&
		    errno != EINVAL && errno != EAFNOSUPPORT)
			return -1;
		int err = errno;
		if (!__atomic_exchange_n(&mptcp_refused_logged, true,
					 __ATOMIC_RELAXED))
			log_warn("kernel refuses MPTCP sockets (%s; is "
				 "net.mptcp.enabled=1?): using plain TCP",
				 strerror(err));
	}
	*is_mptcp = false;
	return socket(family, type, IPPROTO_TCP);
}

static int set_int(int fd, int level, int opt, int val)
{
	return setsockopt(fd, level, opt, &val, sizeof(val));
}

bool upstream_pipeline(struct upstream_server *s, double now)
{
	switch (s->cfg->pipeline) {
	case CONFIG_ON:
		return true;
	case CONFIG_OFF:
		return false;
	case CONFIG_AUTO:
		break;
	}
	struct upstream_state *st = s->st;
	LOCK(s);
	if (st->pipelining == UPSTREAM_PIPE_NO && now >= st->pipelining_recheck)
		st->pipelining = UPSTREAM_PIPE_UNKNOWN;
	bool yes = st->pipelining != UPSTREAM_PIPE_NO;
	UNLOCK(s);
	return yes;
}

bool upstream_pipeline_proven(const struct upstream_server *s)
{
	return s->cfg->pipeline == CONFIG_ON ||
	       (s->cfg->pipeline == CONFIG_AUTO &&
		upstream_pipelining(s) == UPSTREAM_PIPE_YES);
}

void upstream_pipelining_learned(struct upstream_server *s, bool works,
				 double now)
{
	LOCK(s);
	bool news = s->st->pipelining != (works ? UPSTREAM_PIPE_YES
						: UPSTREAM_PIPE_NO);
	s->st->pipelining = works ? UPSTREAM_PIPE_YES : UPSTREAM_PIPE_NO;
	if (!works)
		s->st->pipelining_recheck = now + UPSTREAM_PIPE_RECHECK_S;
	UNLOCK(s);
	if (works && news)
		log_info("server %s takes a pipelined SOCKS handshake", s->name);
	else if (!works)
		log_info("server %s does not answer a pipelined SOCKS handshake: "
			 "step by step with it, checked again in %d s", s->name,
			 UPSTREAM_PIPE_RECHECK_S);
}

bool upstream_fast_open(const struct upstream *u)
{
	switch (u->cfg->fast_open) {
	case CONFIG_ON:
		return true;
	case CONFIG_OFF:
		return false;
	case CONFIG_AUTO:
		break;
	}
	return !u->cfg->mptcp || mptcp_refused_logged;
}

int upstream_connect(const struct upstream *u, const struct upstream_server *s,
		     bool fast_open, bool *is_mptcp, const char **what)
{
	const struct config *cfg = u->cfg;
	int fd = open_socket(s->addr.sa.sa_family, cfg->mptcp, is_mptcp);
	if (fd < 0) {
		*what = "socket";
		return -errno;
	}
	if (cfg->mark && set_int(fd, SOL_SOCKET, SO_MARK, (int)cfg->mark) < 0) {
		*what = "setsockopt(SO_MARK)";
		goto fail;
	}
	if (set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1) < 0) {
		*what = "setsockopt(TCP_NODELAY)";
		goto fail;
	}
	if (set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1) < 0) {
		*what = "setsockopt(SO_KEEPALIVE)";
		goto fail;
	}
	/* Keepalive timing: find a dead server path within about 2 minutes.
	 * Older kernels refuse these on MPTCP sockets: not worth failing. */
	(void)set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60);
	(void)set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, 10);
	(void)set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, 6);
	/* Fast Open: connect() returns at once and the SYN leaves with the
	 * first write, carrying it (with a cookie from an earlier connection;
	 * without one, a normal SYN asks for a cookie).
	 * Refused (EOPNOTSUPP) without the client bit of net.ipv4.tcp_fastopen,
	 * which the daemon warns about at start: the connection just goes
	 * without it. */
	if (fast_open)
		(void)set_int(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1);
	if (connect(fd, &s->addr.sa, addr_len(&s->addr)) < 0 &&
	    errno != EINPROGRESS) {
		*what = "connect";
		goto fail;
	}
	return fd;
fail:;
	int err = errno;
	close(fd);
	return -err;
}
