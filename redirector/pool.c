// SPDX-License-Identifier: GPL-2.0-or-later
#include "pool.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "socks5.h"

enum pool_conn_state { PC_CONNECTING, PC_NEGOTIATING, PC_READY };

struct pool_conn {
	ev_io io;
	ev_timer timer; /* connect+negotiation deadline, then lifetime */
	struct pool *pool;
	struct pool_conn *prev, *next;
	struct socks5_parser parser;
	enum pool_conn_state state;
	bool mptcp;
};

static void fill(struct pool *p);

static bool warm(const struct pool *p)
{
	return ev_now(p->loop) - p->last_used <= p->ups->cfg->pool_keep_warm_s;
}

static void conn_free(struct pool_conn *c, bool close_fd)
{
	struct pool *p = c->pool;

	ev_io_stop(p->loop, &c->io);
	ev_timer_stop(p->loop, &c->timer);
	if (close_fd)
		close(c->io.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->n--;
	if (c->state == PC_READY)
		p->n_ready--;
	free(c);
}

/* A connection that died or failed: drop it, count it, refill later. */
static void conn_fail(struct pool_conn *c, const char *why, bool server_fault)
{
	struct pool *p = c->pool;

	log_debug("pool %s: warm connection dropped: %s", p->server->name, why);
	p->discarded++;
	if (server_fault)
		upstream_report(p->ups, p->server, false, ev_now(p->loop));
	conn_free(c, true);
	fill(p);
}

static bool send_all(int fd, const uint8_t *buf, size_t len)
{
	/* A few bytes on a fresh connection: the socket buffer takes them. */
	return send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len;
}

static void become_ready(struct pool_conn *c)
{
	struct pool *p = c->pool;

	c->state = PC_READY;
	p->n_ready++;
	upstream_report(p->ups, p->server, true, ev_now(p->loop));
	ev_timer_stop(p->loop, &c->timer);
	ev_timer_set(&c->timer, p->ups->cfg->pool_lifetime_s, 0);
	ev_timer_start(p->loop, &c->timer);
}

static void on_negotiation(struct pool_conn *c)
{
	const struct config_server *cs = c->pool->server->cfg;
	uint8_t buf[64];
	ssize_t n = recv(c->io.fd, buf, sizeof(buf), 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_fail(c, n ? strerror(errno) : "server closed", true);
		return;
	}
	size_t off = 0;
	while (off < (size_t)n) {
		size_t used;
		enum socks5_event ev = socks5_parse(&c->parser, buf + off,
						    n - off, &used);
		off += used;
		char why[160];
		switch (ev) {
		case SOCKS5_EV_NEED_MORE:
			return;
		case SOCKS5_EV_METHOD:
			if (c->parser.method == SOCKS5_METHOD_NONE) {
				if (off < (size_t)n)
					goto extra;
				become_ready(c);
				return;
			}
			uint8_t auth[SOCKS5_AUTH_MAX];
			ssize_t len = socks5_build_auth(auth, sizeof(auth),
							cs->username, cs->password);
			if (len < 0 || !send_all(c->io.fd, auth, len)) {
				conn_fail(c, "sending auth", true);
				return;
			}
			break;
		case SOCKS5_EV_AUTH_OK:
			if (off < (size_t)n)
				goto extra;
			become_ready(c);
			return;
		default:
			conn_fail(c, socks5_strerror(&c->parser, ev, why,
						     sizeof(why)), true);
			return;
		}
	}
	return;
extra:
	conn_fail(c, "unexpected bytes after the negotiation", true);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pool_conn *c = (struct pool_conn *)w; /* io is the first member */
	const struct config_server *cs = c->pool->server->cfg;

	switch (c->state) {
	case PC_CONNECTING: {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			conn_fail(c, strerror(err), true);
			return;
		}
		bool auth = cs->username != NULL;
		uint8_t greeting[SOCKS5_GREETING_MAX];
		ssize_t n = socks5_build_greeting(greeting, sizeof(greeting),
						  !auth, auth);
		if (n < 0 || !send_all(w->fd, greeting, n)) {
			conn_fail(c, "sending greeting", true);
			return;
		}
		socks5_parser_init(&c->parser, !auth, auth);
		c->state = PC_NEGOTIATING;
		ev_io_stop(loop, w);
		ev_io_set(w, w->fd, EV_READ);
		ev_io_start(loop, w);
		return;
	}
	case PC_NEGOTIATING:
		on_negotiation(c);
		return;
	case PC_READY: {
		/* Nothing may arrive on a waiting connection: EOF, RST or
		 * stray bytes all mean it cannot be used. */
		uint8_t b;
		ssize_t n = recv(w->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_fail(c, n == 0 ? "closed by the server"
			  : n < 0 ? strerror(errno) : "unexpected bytes", false);
		return;
	}
	}
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pool_conn *c = (struct pool_conn *)((char *)w -
						   offsetof(struct pool_conn, timer));
	struct pool *p = c->pool;

	if (c->state != PC_READY) {
		conn_fail(c, "negotiation timed out", true);
		return;
	}
	log_debug("pool %s: recycling a warm connection", p->server->name);
	conn_free(c, true);
	fill(p);
}

static void open_one(struct pool *p)
{
	const char *what;
	bool mptcp;
	int fd = upstream_connect(p->ups, p->server, false, &mptcp, &what);
	if (fd < 0) {
		log_debug("pool %s: %s: %s", p->server->name, what,
			  strerror(-fd));
		if (fd != -EMFILE && fd != -ENFILE)
			upstream_report(p->ups, p->server, false,
					ev_now(p->loop));
		return;
	}
	struct pool_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->pool = p;
	c->mptcp = mptcp;
	c->state = PC_CONNECTING;
	ev_io_init(&c->io, on_io, fd, EV_WRITE);
	ev_timer_init(&c->timer, on_timer,
		      p->ups->cfg->handshake_timeout_ms / 1000.0, 0);
	ev_io_start(p->loop, &c->io);
	ev_timer_start(p->loop, &c->timer);
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	p->n++;
}

static void fill(struct pool *p)
{
	struct upstream_server *s = p->server;
	double now = ev_now(p->loop);

	if (!warm(p) || !s->resolved)
		return;
	double backoff_until = upstream_backoff_until(s);
	if (backoff_until > now) {
		if (!ev_is_active(&p->retry)) {
			ev_timer_set(&p->retry, backoff_until - now, 0);
			ev_timer_start(p->loop, &p->retry);
		}
		return;
	}
	unsigned want = p->ups->cfg->pool_size;
	while (p->n < want && upstream_backoff_until(s) <= now) {
		unsigned before = p->n;
		open_one(p);
		if (p->n == before)
			break; /* socket trouble: next use or retry tries again */
	}
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	fill((struct pool *)((char *)w - offsetof(struct pool, retry)));
}

int pool_take(struct pool *p, bool *is_mptcp)
{
	p->last_used = ev_now(p->loop);
	struct pool_conn *c = p->conns, *next;
	for (; c; c = next) {
		next = c->next;
		if (c->state != PC_READY)
			continue;
		uint8_t b;
		ssize_t n = recv(c->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int fd = c->io.fd;
			*is_mptcp = c->mptcp;
			p->taken++;
			conn_free(c, false);
			fill(p);
			return fd;
		}
		log_debug("pool %s: warm connection found dead",
			  p->server->name);
		p->discarded++;
		conn_free(c, true);
	}
	fill(p);
	return -1;
}

void pool_note_use(struct pool *p)
{
	p->last_used = ev_now(p->loop);
	fill(p);
}

int pool_start_all(struct ev_loop *loop, struct upstream *u,
		   struct upstream *old, unsigned worker)
{
	if (!u->cfg->pool_size)
		return 0;
	/* warm connections are kept only if they are what a new one would be */
	if (old && (old->cfg->mark != u->cfg->mark ||
		    old->cfg->mptcp != u->cfg->mptcp))
		old = NULL;
	for (size_t i = 0; i < u->n; i++) {
		struct upstream_server *s = &u->servers[i];
		if (s->pools[worker])
			continue; /* a retry after a partial failure */
		struct upstream_server *o = upstream_match(old, s);
		struct pool *p = o ? o->pools[worker] : NULL;
		if (p) {
			/* the same server: its warm connections stay */
			o->pools[worker] = NULL;
		} else if (!(p = calloc(1, sizeof(*p)))) {
			return -ENOMEM;
		} else {
			p->loop = loop;
			p->last_used = ev_now(loop);
			ev_timer_init(&p->retry, on_retry, 0, 0);
		}
		p->ups = u;
		p->server = s;
		s->pools[worker] = p;
		fill(p);
	}
	return 0;
}

void pool_stop_all(struct upstream *u, unsigned worker)
{
	for (size_t i = 0; i < u->n; i++) {
		struct pool *p = u->servers[i].pools[worker];
		if (!p)
			continue;
		while (p->conns)
			conn_free(p->conns, true);
		ev_timer_stop(p->loop, &p->retry);
		free(p);
		u->servers[i].pools[worker] = NULL;
	}
}
