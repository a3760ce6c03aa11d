// SPDX-License-Identifier: GPL-2.0-or-later
#include "flow.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "origdst.h"
#include "socks5.h"

/* State that only lives until the SOCKS handshake is over. */
struct flow_setup {
	ev_io io;                 /* the upstream socket */
	struct socks5_parser parser;
	size_t server_pos;        /* where upstream_next() goes on */
	double deadline;          /* whole setup: handshake_timeout_ms */
	double attempt_deadline;  /* current connect: connect_timeout_ms */
	char last_error[384];     /* why the last server attempt failed */
	bool connect_sent;        /* past this, no other server is tried */
	uint16_t out_off, out_len;
	uint8_t out[SOCKS5_GREETING_MAX + SOCKS5_AUTH_MAX + SOCKS5_CONNECT_MAX];
};

static const struct {
	const char *name;
	bool reset;               /* close with RST */
	enum log_level level;
} flow_ends[FLOW_END__COUNT] = {
	[FLOW_END_DONE] = { "done", false, LOG_LVL_DEBUG },
	[FLOW_END_LAN_RESET] = { "LAN side reset", true, LOG_LVL_DEBUG },
	[FLOW_END_UP_RESET] = { "server side reset", true, LOG_LVL_INFO },
	[FLOW_END_IDLE] = { "idle timeout", true, LOG_LVL_DEBUG },
	[FLOW_END_NO_SERVER] = { "no server reachable", true, LOG_LVL_INFO },
	[FLOW_END_SETUP_TIMEOUT] = { "setup timeout", true, LOG_LVL_INFO },
	[FLOW_END_REFUSED] = { "CONNECT refused", true, LOG_LVL_INFO },
	[FLOW_END_SERVER_CLOSED] = { "server closed before CONNECT reply", true, LOG_LVL_INFO },
	[FLOW_END_PROTOCOL] = { "SOCKS protocol error", true, LOG_LVL_WARN },
	[FLOW_END_NOMEM] = { "out of memory or descriptors", true, LOG_LVL_WARN },
	[FLOW_END_SHUTDOWN] = { "daemon stopping", true, LOG_LVL_DEBUG },
};

const char *flow_end_name(enum flow_end why)
{
	return why < FLOW_END__COUNT ? flow_ends[why].name : "?";
}

static void close_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void close_fd(int fd, bool reset)
{
	if (reset)
		close_rst(fd);
	else if (fd >= 0)
		close(fd);
}

static void setup_free(struct ev_loop *loop, struct flow *f)
{
	if (!f->setup)
		return;
	ev_io_stop(loop, &f->setup->io);
	free(f->setup);
	f->setup = NULL;
}

/* Failures come in floods (a server down, descriptors exhausted): below
 * debug level, each reason is logged at most once a second. */
static struct log_limit end_limits[FLOW_END__COUNT];

void flow_close(struct ev_loop *loop, struct flow *f, enum flow_end why,
		const char *detail)
{
	struct flow_env *env = f->env;
	char lan[ADDR_STRLEN], dst[ADDR_STRLEN];
	enum log_level lvl = flow_ends[why].level;

	if (log_enabled(lvl)) {
		struct log_limit *lim = &end_limits[why];
		if (log_enabled(LOG_LVL_DEBUG))
			lim->interval_s = 0;
		else if (!lim->interval_s)
			lim->interval_s = 1.0;
		log_limited(lim, ev_now(loop), lvl,
			    "flow %s -> %s via %s%s: up %llu B, down %llu B, "
			    "%.3f s: %s%s%s",
			    addr_fmt(&f->lan, lan, sizeof(lan)),
			    addr_fmt(&f->dst, dst, sizeof(dst)),
			    f->up_fd >= 0 ? f->server->name : "-",
			    f->up_fd < 0 ? "" : f->mptcp ? " (mptcp)" : " (tcp)",
			    (unsigned long long)f->relay.dir[RELAY_LAN].bytes,
			    (unsigned long long)f->relay.dir[RELAY_UP].bytes,
			    ev_now(loop) - f->started, flow_ends[why].name,
			    detail ? ": " : "", detail ? detail : "");
	}
	env->stats.ended[why]++;
	ev_timer_stop(loop, &f->timer);
	setup_free(loop, f);
	relay_stop(loop, &f->relay);
	close_fd(f->lan_fd, flow_ends[why].reset);
	close_fd(f->up_fd, flow_ends[why].reset);
	if (f->prev)
		f->prev->next = f->next;
	else
		env->flows = f->next;
	if (f->next)
		f->next->prev = f->prev;
	env->nflows--;
	upstream_unref(f->ups);
	free(f);
}

void flow_close_all(struct ev_loop *loop, struct flow_env *env)
{
	while (env->flows)
		flow_close(loop, env->flows, FLOW_END_SHUTDOWN, NULL);
}

/* ---- relaying ---------------------------------------------------------- */

static uint64_t flow_bytes(const struct flow *f)
{
	return f->relay.dir[0].bytes + f->relay.dir[1].bytes;
}

static double idle_limit(const struct flow *f)
{
	const struct config *cfg = f->ups->cfg;
	bool half = f->relay.dir[0].shut || f->relay.dir[1].shut;

	return half ? cfg->half_close_timeout_s : cfg->idle_timeout_s;
}

/* The idle check compares byte counts at most every quarter of the limit:
 * no timer work per read, and a flow ends between 1 and 1.25 times the
 * limit after its last byte. */
static void arm_idle(struct ev_loop *loop, struct flow *f)
{
	double now = ev_now(loop), limit = idle_limit(f);
	uint64_t bytes = flow_bytes(f);

	if (bytes != f->idle_mark) {
		f->idle_mark = bytes;
		f->last_active = now;
	}
	double left = f->last_active + limit - now;
	ev_timer_stop(loop, &f->timer);
	ev_timer_set(&f->timer, left < limit / 4 ? left : limit / 4, 0);
	ev_timer_start(loop, &f->timer);
}

static void on_relay(struct ev_loop *loop, struct relay *r,
		     enum relay_event ev, enum relay_side side, int err)
{
	struct flow *f = (struct flow *)r; /* relay is the first member */

	switch (ev) {
	case RELAY_EV_HALF:
		arm_idle(loop, f);
		return;
	case RELAY_EV_DONE:
		flow_close(loop, f, FLOW_END_DONE, NULL);
		return;
	case RELAY_EV_RESET:
		flow_close(loop, f, side == RELAY_LAN ? FLOW_END_LAN_RESET
						      : FLOW_END_UP_RESET,
			   strerror(err));
		return;
	}
}

static void start_relay(struct ev_loop *loop, struct flow *f,
			const uint8_t *rest, size_t rest_len)
{
	setup_free(loop, f);
	f->state = FLOW_RELAYING;
	if (relay_start(loop, &f->relay, f->lan_fd, f->up_fd, on_relay, NULL, 0,
			rest, rest_len) < 0) {
		flow_close(loop, f, FLOW_END_NOMEM, "relay buffer");
		return;
	}
	f->idle_mark = 0;
	f->last_active = ev_now(loop);
	arm_idle(loop, f);
}

/* ---- setup: connect, SOCKS ---------------------------------------------- */

static void try_next_server(struct ev_loop *loop, struct flow *f);

static const struct config_server *server_cfg(const struct flow *f)
{
	return f->server->cfg;
}

/* Queue one SOCKS message behind what is already queued. */
static bool queue(struct flow_setup *s, ssize_t n)
{
	if (n < 0)
		return false;
	s->out_len += n;
	return true;
}

static uint8_t *queue_tail(struct flow_setup *s, size_t *cap)
{
	*cap = sizeof(s->out) - s->out_len;
	return s->out + s->out_len;
}

static bool queue_greeting(struct flow *f)
{
	struct flow_setup *s = f->setup;
	bool auth = server_cfg(f)->username != NULL;
	size_t cap;
	uint8_t *p = queue_tail(s, &cap);

	socks5_parser_init(&s->parser, !auth, auth);
	return queue(s, socks5_build_greeting(p, cap, !auth, auth));
}

static bool queue_auth(struct flow *f)
{
	size_t cap;
	uint8_t *p = queue_tail(f->setup, &cap);

	return queue(f->setup, socks5_build_auth(p, cap, server_cfg(f)->username,
						 server_cfg(f)->password));
}

static bool queue_connect(struct flow *f)
{
	size_t cap;
	uint8_t *p = queue_tail(f->setup, &cap);

	f->setup->connect_sent = true;
	return queue(f->setup, socks5_build_connect(p, cap, &f->dst.sa));
}

/* This server attempt failed: count it, and try the next server unless the
 * CONNECT already went out (then the destination's fate is sealed). */
static void attempt_failed(struct ev_loop *loop, struct flow *f,
			   enum flow_end why, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void attempt_failed(struct ev_loop *loop, struct flow *f,
			   enum flow_end why, const char *fmt, ...)
{
	struct flow_setup *s = f->setup;
	va_list ap;
	int n = snprintf(s->last_error, sizeof(s->last_error), "%s: ",
			 f->server->name);
	va_start(ap, fmt);
	vsnprintf(s->last_error + n, sizeof(s->last_error) - n, fmt, ap);
	va_end(ap);

	if (s->connect_sent) {
		flow_close(loop, f, why, s->last_error);
		return;
	}
	log_debug("flow to server %s", s->last_error);
	upstream_report(f->ups, f->server, false, ev_now(loop));
	ev_io_stop(loop, &s->io);
	close_rst(f->up_fd);
	f->up_fd = -1;
	try_next_server(loop, f);
}

static void set_timer(struct ev_loop *loop, struct flow *f, double at)
{
	ev_timer_stop(loop, &f->timer);
	ev_timer_set(&f->timer, at - ev_now(loop) > 0 ? at - ev_now(loop) : 0, 0);
	ev_timer_start(loop, &f->timer);
}

static void send_queued(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;

	while (s->out_off < s->out_len) {
		ssize_t n = send(f->up_fd, s->out + s->out_off,
				 s->out_len - s->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			attempt_failed(loop, f, FLOW_END_UP_RESET, "send: %s",
				       strerror(errno));
			return;
		}
		s->out_off += n;
	}
	if (s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
	ev_io_stop(loop, &s->io);
	ev_io_set(&s->io, f->up_fd, s->out_len ? EV_READ | EV_WRITE : EV_READ);
	ev_io_start(loop, &s->io);
}

/* Handle parsed SOCKS events; returns false once the flow is gone or has
 * moved on. */
static bool socks_event(struct ev_loop *loop, struct flow *f,
			enum socks5_event ev)
{
	struct flow_setup *s = f->setup;
	char why[160];

	switch (ev) {
	case SOCKS5_EV_NEED_MORE:
		return true;
	case SOCKS5_EV_METHOD:
		if (!(s->parser.method == SOCKS5_METHOD_USERPASS ? queue_auth(f)
								 : queue_connect(f)))
			goto nomem;
		return true;
	case SOCKS5_EV_AUTH_OK:
		if (!queue_connect(f))
			goto nomem;
		return true;
	case SOCKS5_EV_CONNECTED:
		upstream_report(f->ups, f->server, true, ev_now(loop));
		return true;
	case SOCKS5_EV_ERR_REPLY:
		upstream_report(f->ups, f->server, true, ev_now(loop));
		flow_close(loop, f, FLOW_END_REFUSED,
			   socks5_strerror(&s->parser, ev, why, sizeof(why)));
		return false;
	default:
		attempt_failed(loop, f, FLOW_END_PROTOCOL, "%s",
			       socks5_strerror(&s->parser, ev, why, sizeof(why)));
		return false;
	}
nomem:
	flow_close(loop, f, FLOW_END_NOMEM, "SOCKS message");
	return false;
}

static void on_socks_readable(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;
	uint8_t buf[1024];

	ssize_t n = recv(f->up_fd, buf, sizeof(buf), 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		attempt_failed(loop, f, FLOW_END_SERVER_CLOSED, "recv: %s",
			       strerror(errno));
		return;
	}
	if (n == 0) {
		attempt_failed(loop, f, FLOW_END_SERVER_CLOSED,
			       "closed the connection");
		return;
	}
	size_t off = 0;
	while (s->parser.stage != SOCKS5_STAGE_DONE) {
		size_t used;
		enum socks5_event ev = socks5_parse(&s->parser, buf + off,
						    n - off, &used);
		off += used;
		if (!socks_event(loop, f, ev))
			return;
		if (ev == SOCKS5_EV_NEED_MORE)
			break;
	}
	if (s->parser.stage == SOCKS5_STAGE_DONE)
		start_relay(loop, f, buf + off, n - off);
	else
		send_queued(loop, f);
}

static void on_connected(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(f->up_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		attempt_failed(loop, f, FLOW_END_NO_SERVER, "connect: %s",
			       strerror(err));
		return;
	}
	f->state = FLOW_SOCKS;
	set_timer(loop, f, s->deadline);
	if (!queue_greeting(f)) {
		flow_close(loop, f, FLOW_END_NOMEM, "SOCKS greeting");
		return;
	}
	send_queued(loop, f);
}

static void on_upstream_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct flow *f = w->data;

	if (f->state == FLOW_CONNECTING) {
		on_connected(loop, f);
		return;
	}
	if (revents & EV_READ) {
		on_socks_readable(loop, f);
		return; /* the flow may be gone; writes resume on the next turn */
	}
	if (revents & EV_WRITE)
		send_queued(loop, f);
}

static void try_next_server(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;
	const struct config *cfg = f->ups->cfg;
	double now = ev_now(loop);

	for (;;) {
		f->server = upstream_next(f->ups, &s->server_pos, now);
		if (!f->server) {
			f->server = NULL;
			flow_close(loop, f, FLOW_END_NO_SERVER,
				   s->last_error[0] ? s->last_error
						    : "all servers backing off");
			return;
		}
		const char *what;
		int fd = upstream_connect(f->ups, f->server, &f->mptcp, &what);
		if (fd >= 0) {
			f->up_fd = fd;
			break;
		}
		if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS ||
		    fd == -ENOMEM) {
			flow_close(loop, f, FLOW_END_NOMEM, strerror(-fd));
			return;
		}
		snprintf(s->last_error, sizeof(s->last_error), "%s: %s: %s",
			 f->server->name, what, strerror(-fd));
		upstream_report(f->ups, f->server, false, now);
	}
	f->server->flows++;
	f->state = FLOW_CONNECTING;
	s->connect_sent = false;
	s->out_off = s->out_len = 0;
	ev_io_init(&s->io, on_upstream_io, f->up_fd, EV_WRITE);
	s->io.data = f;
	ev_io_start(loop, &s->io);
	s->attempt_deadline = now + cfg->connect_timeout_ms / 1000.0;
	set_timer(loop, f, s->attempt_deadline < s->deadline ? s->attempt_deadline
							      : s->deadline);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct flow *f = (struct flow *)((char *)w - offsetof(struct flow, timer));
	double now = ev_now(loop);

	if (f->state == FLOW_RELAYING) {
		arm_idle(loop, f);
		if (now - f->last_active >= idle_limit(f))
			flow_close(loop, f, FLOW_END_IDLE, NULL);
		return;
	}
	struct flow_setup *s = f->setup;
	if (now >= s->deadline) {
		if (f->state == FLOW_CONNECTING)
			upstream_report(f->ups, f->server, false, now);
		flow_close(loop, f, FLOW_END_SETUP_TIMEOUT,
			   f->state == FLOW_CONNECTING ? "connecting to server"
						       : "waiting for SOCKS reply");
		return;
	}
	if (f->state == FLOW_CONNECTING)
		attempt_failed(loop, f, FLOW_END_NO_SERVER, "connect: timed out");
}

/* ---- accept ------------------------------------------------------------- */

static struct log_limit refuse_limit = LOG_LIMIT_INIT(1.0);

void flow_accept(struct ev_loop *loop, struct flow_env *env, int fd,
		 const union sockaddr_any *peer)
{
	const struct config *cfg = env->ups->cfg;
	union sockaddr_any dst, local, lan = *peer;
	char a[ADDR_STRLEN], b[ADDR_STRLEN];

	addr_unmap(&lan);
	env->stats.accepted++;
	if (env->nflows >= cfg->max_flows) {
		env->stats.refused_full++;
		log_limited(&refuse_limit, ev_now(loop), LOG_LVL_WARN,
			    "refusing %s: max_flows (%u) reached",
			    addr_fmt(&lan, a, sizeof(a)), cfg->max_flows);
		close_rst(fd);
		return;
	}
	int rc = origdst_get(fd, &dst, &local);
	if (rc < 0) {
		env->stats.refused_origdst++;
		log_limited(&refuse_limit, ev_now(loop), LOG_LVL_WARN,
			    "refusing %s: no original destination: %s",
			    addr_fmt(&lan, a, sizeof(a)), strerror(-rc));
		close_rst(fd);
		return;
	}
	if (addr_equal(&dst, &local)) {
		env->stats.refused_self++;
		log_limited(&refuse_limit, ev_now(loop), LOG_LVL_INFO,
			    "refusing %s: connected straight to the listener "
			    "%s (not redirected)",
			    addr_fmt(&lan, a, sizeof(a)),
			    addr_fmt(&local, b, sizeof(b)));
		close_rst(fd);
		return;
	}
	struct flow *f = calloc(1, sizeof(*f));
	struct flow_setup *s = calloc(1, sizeof(*s));
	if (!f || !s) {
		free(f);
		free(s);
		log_limited(&refuse_limit, ev_now(loop), LOG_LVL_WARN,
			    "refusing %s: out of memory",
			    addr_fmt(&lan, a, sizeof(a)));
		close_rst(fd);
		return;
	}
	f->env = env;
	f->ups = upstream_ref(env->ups);
	f->setup = s;
	f->lan = lan;
	f->dst = dst;
	f->lan_fd = fd;
	f->up_fd = -1;
	f->relay.fd[0] = f->relay.fd[1] = -1;
	f->started = ev_now(loop);
	f->next = env->flows;
	if (env->flows)
		env->flows->prev = f;
	env->flows = f;
	env->nflows++;
	ev_init(&f->timer, on_timer);
	s->deadline = f->started + cfg->handshake_timeout_ms / 1000.0;
	log_debug("flow %s -> %s: accepted", addr_fmt(&lan, a, sizeof(a)),
		  addr_fmt(&dst, b, sizeof(b)));
	try_next_server(loop, f);
}
