// SPDX-License-Identifier: GPL-2.0-or-later
#include "flow.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rtmon.h"
#include "log.h"
#include "origdst.h"
#include "paths.h"
#include "pool.h"
#include "socks5.h"
#include "status.h"

/* The client's first bytes that may ride with the SOCKS messages: enough
 * for a TLS ClientHello or an HTTP request; the rest follows in the relay. */
#define FLOW_FIRST_MAX 4096

/* Auto pipelining: after the method reply, how long the next reply may take
 * before the server is taken for one that dropped the rest of our write.
 * An auth reply needs no destination: it comes at once; a CONNECT reply
 * waits for the server's own connect. Plus twice the measured round trip. */
#define PIPE_AUTH_BOUND_S 0.25
#define PIPE_CONNECT_BOUND_S 1.0

/* State that only lives until the SOCKS handshake is over. */
struct flow_setup {
	ev_io io;                 /* the upstream socket */
	ev_io lan_io;             /* LAN readable: the client's first bytes */
	struct socks5_parser parser;
	size_t server_pos;        /* where upstream_next() goes on */
	double deadline;          /* whole setup: handshake_timeout_ms */
	double attempt_deadline;  /* current connect; 0 once connected */
	double first_deadline;    /* stop waiting for the first bytes */
	double reply_deadline;    /* auto pipelining check; 0 = none */
	double sent_at;           /* when the opening write went out */
	char last_error[384];     /* why the last server attempt failed */
	bool want_first;          /* still waiting for the client's first bytes */
	bool pipeline;            /* this attempt: one write, first bytes in it */
	bool pooled;              /* this attempt: warm connection, CONNECT only */
	bool probing;             /* auto: watch whether the server drops bytes */
	bool fast_open;           /* this attempt: TCP Fast Open */
	bool opened;              /* the opening write is queued */
	bool pool_failed;         /* a warm connection died under this flow */
	bool connect_sent;        /* past this, no other server is tried */
	uint16_t out_off, out_len; /* out_off counts first[] too when pipelined */
	uint16_t first_len;
	uint8_t out[SOCKS5_GREETING_MAX + SOCKS5_AUTH_MAX + SOCKS5_CONNECT_MAX];
	uint8_t first[FLOW_FIRST_MAX];
};

static const struct {
	const char *name;
	const char *key;          /* in status (stable, documented) */
	bool reset;               /* close with RST */
	enum log_level level;
} flow_ends[FLOW_END__COUNT] = {
	[FLOW_END_DONE] = { "done", "done", false, LOG_LVL_DEBUG },
	[FLOW_END_LAN_RESET] = { "LAN side reset", "lan_reset", true, LOG_LVL_DEBUG },
	[FLOW_END_UP_RESET] = { "server side reset", "server_reset", true, LOG_LVL_INFO },
	[FLOW_END_IDLE] = { "idle timeout", "idle_timeout", true, LOG_LVL_DEBUG },
	[FLOW_END_NO_SERVER] = { "no server reachable", "no_server", true, LOG_LVL_INFO },
	[FLOW_END_SETUP_TIMEOUT] = { "setup timeout", "setup_timeout", true, LOG_LVL_INFO },
	[FLOW_END_REFUSED] = { "CONNECT refused", "connect_refused", true, LOG_LVL_INFO },
	[FLOW_END_SERVER_CLOSED] = { "server closed before CONNECT reply", "server_closed", true, LOG_LVL_INFO },
	[FLOW_END_PROTOCOL] = { "SOCKS protocol error", "protocol_error", true, LOG_LVL_WARN },
	[FLOW_END_NOMEM] = { "out of memory or descriptors", "no_resources", true, LOG_LVL_WARN },
	[FLOW_END_SHUTDOWN] = { "daemon stopping", "shutdown", true, LOG_LVL_DEBUG },
};

const char *flow_end_name(enum flow_end why)
{
	return why < FLOW_END__COUNT ? flow_ends[why].name : "?";
}

const char *flow_end_key(enum flow_end why)
{
	return why < FLOW_END__COUNT ? flow_ends[why].key : "?";
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
	ev_io_stop(loop, &f->setup->lan_io);
	free(f->setup);
	f->setup = NULL;
}

/* Failures come in floods (a server down, descriptors exhausted): below
 * debug level, each reason is logged at most once a second. */
static struct log_limit end_limits[FLOW_END__COUNT] = {
	[0 ... FLOW_END__COUNT - 1] = LOG_LIMIT_INIT(1.0),
};
struct log_limit flow_shortage_limit = LOG_LIMIT_INIT(1.0);

void flow_close(struct ev_loop *loop, struct flow *f, enum flow_end why,
		const char *detail)
{
	struct flow_env *env = f->env;
	char lan[ADDR_STRLEN], dst[ADDR_STRLEN];
	enum log_level lvl = flow_ends[why].level;

	if (log_enabled(lvl)) {
		log_limited(why == FLOW_END_NOMEM ? &flow_shortage_limit
						  : &end_limits[why],
			    ev_now(loop), lvl,
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
	env->stats.bytes_up += f->relay.dir[RELAY_LAN].bytes;
	env->stats.bytes_down += f->relay.dir[RELAY_UP].bytes;
	status_flow_end(f);
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
	__atomic_sub_fetch(&env->shared->nflows, 1, __ATOMIC_RELAXED);
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
		/* The FIN passed on is progress: the half-close limit runs
		 * from it, not from a last byte that may be long past (a
		 * client that reads its last bytes slowly, then closes). */
		f->last_active = ev_now(loop);
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

/* The connection relays: what it turned out to be (MPTCP, fallen back to
 * TCP, TCP), counted on its server; and the address of its first subflow,
 * the WAN that status credits with the bytes of subflows that closed. */
static void note_transport(struct flow *f)
{
	union sockaddr_any a;
	socklen_t len = sizeof(a);

	f->kind = (uint8_t)paths_kind_of(f->up_fd, f->mptcp);
	switch ((enum paths_kind)f->kind) {
	case PATHS_MPTCP: UPSTREAM_COUNT(f->server, n_mptcp); break;
	case PATHS_FALLBACK: UPSTREAM_COUNT(f->server, n_fallback); break;
	case PATHS_TCP: UPSTREAM_COUNT(f->server, n_tcp); break;
	}
	if (f->fast_open) {
		/* did the server acknowledge the data in our SYN? */
		struct tcp_info ti;
		socklen_t tlen = sizeof(ti);
		if (getsockopt(f->up_fd, IPPROTO_TCP, TCP_INFO, &ti, &tlen) == 0 &&
		    (ti.tcpi_options & TCPI_OPT_SYN_DATA))
			UPSTREAM_COUNT(f->server, n_fast_open);
	}
	if (getsockname(f->up_fd, &a.sa, &len) == 0) {
		addr_unmap(&a);
		if (a.sa.sa_family == AF_INET)
			f->first_local4 = a.in4.sin_addr.s_addr;
	}
}

/* The CONNECT succeeded: `rest` is what the server sent after its reply.
 * The client's first bytes, unless they went with the handshake, go up
 * first. */
static void start_relay(struct ev_loop *loop, struct flow *f,
			const uint8_t *rest, size_t rest_len)
{
	struct flow_setup *s = f->setup;
	int rc = relay_start(loop, &f->relay, f->lan_fd, f->up_fd, on_relay,
			     s->first, s->pipeline ? 0 : s->first_len, rest,
			     rest_len);

	if (s->pipeline) /* they went with the handshake: count them */
		f->relay.dir[RELAY_LAN].bytes += s->first_len;
	setup_free(loop, f);
	f->state = FLOW_RELAYING;
	if (rc < 0) {
		flow_close(loop, f, FLOW_END_NOMEM, "relay buffer");
		return;
	}
	f->idle_mark = 0;
	f->last_active = ev_now(loop);
	arm_idle(loop, f);
	note_transport(f);
}

/* ---- setup ---------------------------------------------------------------
 *
 * Per server attempt, one of:
 *   pooled:    a warm connection (negotiated, authenticated): CONNECT, plus
 *              the first bytes if the server is known to take them;
 *   pipelined: greeting [+ auth] + CONNECT + first bytes in one write,
 *              in the SYN with Fast Open;
 *   step:      greeting, then auth, then CONNECT, each after its reply.
 * The client's first bytes are awaited at most first_data_wait_ms (not for
 * server-speaks-first ports), in parallel with the connect; a pipelined
 * write waits for them, a Fast Open connect too (they go in its SYN). */

static void try_next_server(struct ev_loop *loop, struct flow *f);
static void open_handshake(struct ev_loop *loop, struct flow *f);
static void start_connect(struct ev_loop *loop, struct flow *f);

static const struct config_server *server_cfg(const struct flow *f)
{
	return f->server->cfg;
}

/* The flow's timer fires at the earliest setup deadline in force. */
static void arm_setup_timer(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;
	double at = s->deadline;

	if (s->attempt_deadline && s->attempt_deadline < at)
		at = s->attempt_deadline;
	if (s->want_first && s->first_deadline < at)
		at = s->first_deadline;
	if (s->reply_deadline && s->reply_deadline < at)
		at = s->reply_deadline;
	ev_timer_stop(loop, &f->timer);
	ev_timer_set(&f->timer, at > ev_now(loop) ? at - ev_now(loop) : 0, 0);
	ev_timer_start(loop, &f->timer);
}

/* Append one SOCKS message built by fn into the output queue. */
static bool queue(struct flow_setup *s, ssize_t n)
{
	if (n < 0)
		return false;
	s->out_len += n;
	return true;
}
#define QUEUE(s, build, ...) \
	queue((s), build((s)->out + (s)->out_len, \
			 sizeof((s)->out) - (s)->out_len, __VA_ARGS__))

static bool queue_greeting(struct flow *f)
{
	bool auth = server_cfg(f)->username != NULL;

	socks5_parser_init(&f->setup->parser, !auth, auth);
	return QUEUE(f->setup, socks5_build_greeting, !auth, auth);
}

static bool queue_auth(struct flow *f)
{
	return QUEUE(f->setup, socks5_build_auth, server_cfg(f)->username,
		     server_cfg(f)->password);
}

static bool queue_connect(struct flow *f)
{
	f->setup->connect_sent = true;
	return QUEUE(f->setup, socks5_build_connect, &f->dst.sa);
}

static void watch_upstream(struct ev_loop *loop, struct flow *f, int events)
{
	ev_io *io = &f->setup->io;

	if (ev_is_active(io) && (io->events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(loop, io);
	ev_io_set(io, f->up_fd, events);
	ev_io_start(loop, io);
}

/* Drop this attempt's upstream socket. */
static void drop_upstream(struct ev_loop *loop, struct flow *f)
{
	ev_io_stop(loop, &f->setup->io);
	close_rst(f->up_fd);
	f->up_fd = -1;
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

	/* A warm connection that died under us before any reply: the server
	 * never acted on the CONNECT; try again on a fresh connection. */
	if (s->pooled && s->parser.have == 0 &&
	    s->parser.stage == SOCKS5_STAGE_CONNECT) {
		log_debug("flow via warm connection: %s; retrying fresh",
			  s->last_error);
		drop_upstream(loop, f);
		s->server_pos--; /* the same server again */
		s->pool_failed = true;
		try_next_server(loop, f);
		return;
	}
	if (s->connect_sent) {
		flow_close(loop, f, why, s->last_error);
		return;
	}
	log_debug("flow to server %s", s->last_error);
	upstream_report(f->ups, f->server, false, ev_now(loop));
	drop_upstream(loop, f);
	try_next_server(loop, f);
}

/* The server answered the method but not the rest of a pipelined write in
 * time: it dropped it. Same server again, step by step; the client's first
 * bytes are still here and go up once the CONNECT is answered. */
static void pipeline_dropped(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;

	upstream_pipelining_learned(f->server, false, ev_now(loop));
	drop_upstream(loop, f);
	s->server_pos--;
	try_next_server(loop, f);
}

static void send_queued(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;
	size_t first = s->pipeline ? s->first_len : 0;
	size_t total = s->out_len + first;

	while (s->out_off < total) {
		struct iovec iov[2];
		int n_iov = 0;
		if (s->out_off < s->out_len)
			iov[n_iov++] = (struct iovec){ s->out + s->out_off,
						       s->out_len - s->out_off };
		size_t f_off = s->out_off > s->out_len ? s->out_off - s->out_len : 0;
		if (first > f_off)
			iov[n_iov++] = (struct iovec){ s->first + f_off,
						       first - f_off };
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n_iov };
		ssize_t n = sendmsg(f->up_fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* EINPROGRESS: a Fast Open SYN that took no data yet */
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINPROGRESS)
				break;
			attempt_failed(loop, f, FLOW_END_UP_RESET, "send: %s",
				       strerror(errno));
			return;
		}
		s->out_off += n;
	}
	if (s->out_off == total && !s->pipeline)
		s->out_off = s->out_len = 0; /* step: the next message starts anew */
	watch_upstream(loop, f, s->out_off < total ? EV_READ | EV_WRITE
						   : EV_READ);
}

/* The connection is up (or warm) and, for a pipelined write, the first
 * bytes are in or will not come: send the opening messages. */
static void open_handshake(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;
	bool ok;

	if (s->opened || f->state != FLOW_SOCKS || (s->pipeline && s->want_first))
		return;
	s->opened = true;
	s->out_off = s->out_len = 0;
	if (s->pooled) {
		socks5_parser_init_connect(&s->parser);
		ok = queue_connect(f);
	} else {
		ok = queue_greeting(f);
		if (ok && s->pipeline) {
			if (server_cfg(f)->username)
				ok = queue_auth(f);
			ok = ok && queue_connect(f);
		}
	}
	if (!ok) {
		flow_close(loop, f, FLOW_END_NOMEM, "SOCKS message");
		return;
	}
	s->sent_at = ev_now(loop);
	send_queued(loop, f);
}

/* Handle one parsed SOCKS event; false once the flow is gone or has moved
 * on to another attempt. */
static bool socks_event(struct ev_loop *loop, struct flow *f,
			enum socks5_event ev)
{
	struct flow_setup *s = f->setup;
	double now = ev_now(loop);
	char why[160];

	switch (ev) {
	case SOCKS5_EV_NEED_MORE:
		return true;
	case SOCKS5_EV_METHOD:
		if (s->probing) {
			s->reply_deadline = now + 2 * (now - s->sent_at) +
				(s->parser.method == SOCKS5_METHOD_USERPASS
					 ? PIPE_AUTH_BOUND_S
					 : PIPE_CONNECT_BOUND_S);
			arm_setup_timer(loop, f);
		}
		if (s->pipeline)
			return true;
		if (!(s->parser.method == SOCKS5_METHOD_USERPASS ? queue_auth(f)
								 : queue_connect(f)))
			goto nomem;
		return true;
	case SOCKS5_EV_AUTH_OK:
		if (s->probing) {
			s->reply_deadline = now + 2 * (now - s->sent_at) +
					    PIPE_CONNECT_BOUND_S;
			arm_setup_timer(loop, f);
		}
		if (s->pipeline)
			return true;
		if (!queue_connect(f))
			goto nomem;
		return true;
	case SOCKS5_EV_CONNECTED:
	case SOCKS5_EV_ERR_REPLY:
		/* An answer to the CONNECT: the server took the whole write. */
		if (s->probing)
			upstream_pipelining_learned(f->server, true, now);
		upstream_report(f->ups, f->server, true, now);
		if (ev == SOCKS5_EV_CONNECTED)
			return true;
		const char *name = socks5_reply_name(s->parser.reply);
		snprintf(why, sizeof(why), "%s (0x%02x)", name ? name : "unknown reply",
			 s->parser.reply);
		flow_close(loop, f, FLOW_END_REFUSED, why);
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
	s->attempt_deadline = 0;
	ev_io_stop(loop, &s->io);
	arm_setup_timer(loop, f);
	open_handshake(loop, f);
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

/* The first bytes are in, or will not come: stop waiting for them. */
static void first_done(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;

	s->want_first = false;
	ev_io_stop(loop, &s->lan_io);
	if (f->state == FLOW_WAIT_DATA) {
		start_connect(loop, f);
		return;
	}
	arm_setup_timer(loop, f);
	open_handshake(loop, f);
}

static void on_lan_first(struct ev_loop *loop, ev_io *w, int revents)
{
	struct flow *f = w->data;
	struct flow_setup *s = f->setup;

	ssize_t n = recv(f->lan_fd, s->first, sizeof(s->first), 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		flow_close(loop, f, FLOW_END_LAN_RESET, strerror(errno));
		return;
	}
	/* n == 0: the client sent FIN at once; the relay will see it too. */
	s->first_len = n;
	first_done(loop, f);
}

static void start_connect(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;
	const char *what;

	int fd = upstream_connect(f->ups, f->server, s->fast_open, &f->mptcp,
				  &what);
	if (fd < 0) {
		if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS ||
		    fd == -ENOMEM) {
			flow_close(loop, f, FLOW_END_NOMEM, strerror(-fd));
			return;
		}
		snprintf(s->last_error, sizeof(s->last_error), "%s: %s: %s",
			 f->server->name, what, strerror(-fd));
		upstream_report(f->ups, f->server, false, ev_now(loop));
		try_next_server(loop, f);
		return;
	}
	f->up_fd = fd;
	f->fast_open = s->fast_open;
	f->state = FLOW_CONNECTING;
	s->attempt_deadline = ev_now(loop) +
			      f->ups->cfg->connect_timeout_ms / 1000.0;
	watch_upstream(loop, f, EV_WRITE);
	arm_setup_timer(loop, f);
}

static void try_next_server(struct ev_loop *loop, struct flow *f)
{
	struct flow_setup *s = f->setup;
	double now = ev_now(loop);

	f->server = upstream_next(f->ups, &s->server_pos, now);
	if (!f->server) {
		flow_close(loop, f, FLOW_END_NO_SERVER,
			   s->last_error[0] ? s->last_error
					    : "all servers backing off");
		return;
	}
	UPSTREAM_COUNT(f->server, flows);
	s->opened = s->connect_sent = false;
	s->reply_deadline = s->attempt_deadline = 0;
	s->pipeline = upstream_pipeline(f->server, now);
	s->probing = s->pipeline && f->server->cfg->pipeline == CONFIG_AUTO &&
		     upstream_pipelining(f->server) == UPSTREAM_PIPE_UNKNOWN;
	/* A warm connection, unless this flow has to find out whether the
	 * server takes a pipelined write (only a fresh one can tell). */
	struct pool *pool = f->server->pools[f->env->worker];
	if (pool && !s->probing && !s->pool_failed) {
		int fd = pool_take(pool, &f->mptcp);
		if (fd >= 0) {
			log_debug("flow to %s: warm connection", f->server->name);
			f->up_fd = fd;
			s->pooled = true;
			s->pipeline = upstream_pipeline_proven(f->server);
			f->state = FLOW_SOCKS;
			arm_setup_timer(loop, f);
			open_handshake(loop, f);
			return;
		}
	} else if (pool) {
		pool_note_use(pool);
	}
	s->pooled = false;
	s->fast_open = upstream_fast_open(f->ups);
	if (s->fast_open && s->pipeline && s->want_first) {
		/* The SYN will carry everything: connect once the bytes are in. */
		f->state = FLOW_WAIT_DATA;
		arm_setup_timer(loop, f);
		return;
	}
	start_connect(loop, f);
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
		/* A server we believed to take pipelined writes answered
		 * part of one and then nothing: check it again. */
		if (s->pipeline && !s->probing &&
		    s->parser.stage > SOCKS5_STAGE_METHOD)
			upstream_pipelining_unsure(f->server);
		flow_close(loop, f, FLOW_END_SETUP_TIMEOUT,
			   f->state == FLOW_CONNECTING ? "connecting to server"
			   : f->state == FLOW_WAIT_DATA ? "waiting for data"
						      : "waiting for SOCKS reply");
		return;
	}
	if (s->reply_deadline && now >= s->reply_deadline) {
		pipeline_dropped(loop, f);
		return;
	}
	if (f->state == FLOW_CONNECTING && now >= s->attempt_deadline) {
		attempt_failed(loop, f, FLOW_END_NO_SERVER, "connect: timed out");
		return;
	}
	if (s->want_first && now >= s->first_deadline) {
		first_done(loop, f);
		return;
	}
	arm_setup_timer(loop, f);
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
	if (__atomic_load_n(&env->shared->nflows, __ATOMIC_RELAXED) >=
	    cfg->max_flows) {
		env->stats.refused_full++;
		log_limited(&refuse_limit, ev_now(loop), LOG_LVL_WARN,
			    "refusing %s: max_flows (%u) reached",
			    addr_fmt(&lan, a, sizeof(a)), cfg->max_flows);
		close_rst(fd);
		return;
	}
	int rc = origdst_get(fd, &dst, &local, env->tproxy);
	if (rc < 0) {
		env->stats.refused_origdst++;
		log_limited(&refuse_limit, ev_now(loop), LOG_LVL_WARN,
			    "refusing %s: no original destination: %s",
			    addr_fmt(&lan, a, sizeof(a)), strerror(-rc));
		close_rst(fd);
		return;
	}
	/* Someone connected straight to the listener: with REDIRECT, nothing
	 * rewrote the destination; with tproxy, the destination is one of the
	 * router's own addresses (which the rules never capture). */
	if (env->tproxy ? rtmon_is_local(env->ifaddrs, &dst)
			: addr_equal(&dst, &local)) {
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
		log_limited(&flow_shortage_limit, ev_now(loop), LOG_LVL_WARN,
			    "refusing %s: out of memory",
			    addr_fmt(&lan, a, sizeof(a)));
		close_rst(fd);
		return;
	}
	f->env = env;
	f->id = __atomic_add_fetch(&env->shared->last_id, 1, __ATOMIC_RELAXED);
	f->ups = upstream_ref(env->ups);
	f->setup = s;
	f->lan = lan;
	f->dst = dst;
	f->lan_fd = fd;
	f->up_fd = -1;
	f->started = ev_now(loop);
	f->next = env->flows;
	if (env->flows)
		env->flows->prev = f;
	env->flows = f;
	env->nflows++;
	__atomic_add_fetch(&env->shared->nflows, 1, __ATOMIC_RELAXED);
	ev_init(&f->timer, on_timer);
	ev_init(&s->io, on_upstream_io);
	s->io.data = f;
	s->deadline = f->started + cfg->handshake_timeout_ms / 1000.0;
	s->want_first = cfg->first_data_wait_ms > 0 &&
			!config_server_first_port(cfg, addr_port(&dst));
	if (s->want_first) {
		s->first_deadline = f->started + cfg->first_data_wait_ms / 1000.0;
		ev_io_init(&s->lan_io, on_lan_first, fd, EV_READ);
		s->lan_io.data = f;
		ev_io_start(loop, &s->lan_io);
	}
	log_debug("flow %s -> %s: accepted", addr_fmt(&lan, a, sizeof(a)),
		  addr_fmt(&dst, b, sizeof(b)));
	try_next_server(loop, f);
}
