// SPDX-License-Identifier: GPL-2.0-or-later
#include "status.h"

#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture.h"
#include "config.h"
#include "control.h"
#include "daemon.h"
#include "flow.h"
#include "linkmon.h"
#include "paths.h"
#include "pool.h"
#include "relay.h"
#include "upstream.h"

/* Subflows remembered per flow: MPTCP allows 8 at once. When a flow has
 * had more in its life, a closed one makes room (its bytes then drop out
 * of its WAN's total: rare enough to accept). */
#define STATUS_SUBFLOWS 8

/* A flow's subflows as readings saw them. Kept (allocated) only for a flow
 * seen with more than one subflow, where one may close while the flow goes
 * on; any other flow is read into a record on the stack each time: an
 * ordinary flow costs no memory for this. Freed at the flow's end. */
struct flow_paths {
	unsigned n;
	struct status_subflow {
		union sockaddr_any local, remote;
		uint64_t sent, received;
		uint32_t rtt_us;
		bool live;
	} sf[STATUS_SUBFLOWS];
};

/* Fold a fresh reading into p: known subflows updated, new ones added,
 * missing ones kept with their last figures. */
static void paths_merge(struct flow_paths *p, const struct paths_subflow *sf,
			int n)
{
	for (unsigned i = 0; i < p->n; i++)
		p->sf[i].live = false;
	for (int k = 0; k < n; k++) {
		struct status_subflow *r = NULL;
		for (unsigned i = 0; i < p->n && !r; i++)
			if (addr_equal(&p->sf[i].local, &sf[k].local) &&
			    addr_equal(&p->sf[i].remote, &sf[k].remote))
				r = &p->sf[i];
		if (!r && p->n < STATUS_SUBFLOWS)
			r = &p->sf[p->n++];
		for (unsigned i = 0; i < p->n && !r; i++)
			if (!p->sf[i].live) /* full: a closed one makes room */
				r = &p->sf[i];
		if (!r)
			continue;
		r->local = sf[k].local;
		r->remote = sf[k].remote;
		addr_unmap(&r->local); /* WANs are known by their IPv4 address */
		addr_unmap(&r->remote);
		r->sent = sf[k].bytes_sent;
		r->received = sf[k].bytes_received;
		r->rtt_us = sf[k].rtt_us;
		r->live = true;
	}
}

/* Read f's subflows now: into f->paths when it has one (or needs one
 * now), else into *tmp. The reading, or NULL if the kernel said nothing. */
static const struct flow_paths *paths_reading(struct flow *f,
					      struct flow_paths *tmp)
{
	struct paths_info info;
	struct paths_subflow sf[STATUS_SUBFLOWS];
	int n = paths_read(f->up_fd, f->mptcp, &info, sf, STATUS_SUBFLOWS);

	if (n > 1 && !f->paths)
		f->paths = calloc(1, sizeof(*f->paths));
	struct flow_paths *p = f->paths;
	if (!p) {
		memset(tmp, 0, sizeof(*tmp));
		p = tmp;
	}
	if (n >= 0)
		paths_merge(p, sf, n);
	return n >= 0 || p != tmp ? p : NULL;
}

static bool has_paths(const struct flow *f)
{
	return f->state == FLOW_RELAYING && f->up_fd >= 0;
}

void status_flow_relaying(struct flow *f)
{
	struct paths_info info;
	struct upstream_server *s = f->server;

	if (paths_read(f->up_fd, f->mptcp, &info, NULL, 0) < 0)
		info.kind = f->mptcp ? PATHS_MPTCP : PATHS_TCP;
	f->kind = (uint8_t)info.kind;
	switch (info.kind) {
	case PATHS_MPTCP: s->n_mptcp++; break;
	case PATHS_FALLBACK: s->n_fallback++; break;
	case PATHS_TCP: s->n_tcp++; break;
	}
	if (f->fast_open) {
		/* the server acknowledged the data in our SYN */
		struct tcp_info ti;
		socklen_t len = sizeof(ti);
		if (getsockopt(f->up_fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
		    (ti.tcpi_options & TCPI_OPT_SYN_DATA))
			s->n_fast_open++;
	}
}

void status_flow_end(struct flow *f)
{
	struct linkmon *lm = f->env->linkmon;
	struct flow_paths tmp;
	const struct flow_paths *p;

	if (lm && has_paths(f) && (p = paths_reading(f, &tmp)))
		for (unsigned i = 0; i < p->n; i++) {
			int w = linkmon_wan_of(lm, &p->sf[i].local);
			if (w >= 0)
				linkmon_account(lm, w, p->sf[i].sent,
						p->sf[i].received);
		}
	free(f->paths);
	f->paths = NULL;
}

/* ---- JSON helpers --------------------------------------------------------- */

static void put(struct json_object *o, const char *k, struct json_object *v)
{
	json_object_object_add(o, k, v);
}

static void put_u64(struct json_object *o, const char *k, uint64_t v)
{
	put(o, k, json_object_new_uint64(v));
}

static void put_str(struct json_object *o, const char *k, const char *v)
{
	put(o, k, v ? json_object_new_string(v) : NULL);
}

static void put_bool(struct json_object *o, const char *k, bool v)
{
	put(o, k, json_object_new_boolean(v));
}

/* Seconds with millisecond precision. */
static void put_secs(struct json_object *o, const char *k, double v)
{
	put(o, k, json_object_new_double((double)(int64_t)(v * 1000) / 1000));
}

static void put_ip(struct json_object *o, const char *k, bool has,
		   const union sockaddr_any *a)
{
	char buf[ADDR_STRLEN];
	put_str(o, k, has ? addr_ip(a, buf, sizeof(buf)) : NULL);
}

static void put_addr(struct json_object *o, const char *k,
		     const union sockaddr_any *a)
{
	char buf[ADDR_STRLEN];
	put_str(o, k, addr_fmt(a, buf, sizeof(buf)));
}

static void put_time(struct json_object *o, const char *k, time_t t)
{
	char buf[32];
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	put_str(o, k, buf);
}

/* ---- sections --------------------------------------------------------- */

static struct json_object *flows_summary(const struct daemon *d)
{
	const struct flow_stats *st = &d->env.stats;
	struct json_object *o = json_object_new_object();
	struct json_object *ended = json_object_new_object();
	struct json_object *refused = json_object_new_object();
	uint64_t n_ended = 0;

	for (int i = 0; i < FLOW_END__COUNT; i++) {
		put_u64(ended, flow_end_key((enum flow_end)i), st->ended[i]);
		n_ended += st->ended[i];
	}
	put_u64(refused, "direct", st->refused_self);
	put_u64(refused, "max_flows", st->refused_full);
	put_u64(refused, "no_original_destination", st->refused_origdst);
	put_u64(refused, "no_descriptors", st->refused_nofd);
	put_u64(o, "now", d->env.nflows);
	put_u64(o, "total", n_ended + d->env.nflows);
	put_u64(o, "max", d->env.ups->cfg->max_flows);
	put(o, "ended", ended);
	put(o, "refused", refused);
	return o;
}

static const char *pipelining_name(const struct upstream_server *s)
{
	switch (s->pipelining) {
	case UPSTREAM_PIPE_YES: return "works";
	case UPSTREAM_PIPE_NO: return "refused";
	default: return "unknown";
	}
}

static struct json_object *server_json(const struct upstream *u,
				       const struct upstream_server *s,
				       double now)
{
	struct json_object *o = json_object_new_object();
	struct json_object *conns = json_object_new_object();
	const struct config_server *c = s->cfg;

	put_str(o, "address", c->address);
	put_u64(o, "port", c->port);
	put_ip(o, "resolved", s->resolved, &s->addr);
	put_bool(o, "auth", c->username != NULL);
	put_str(o, "health", !s->resolved ? "unresolved"
			     : s->backoff_until > now ? "backing_off"
			     : s->consecutive_failures ? "failing" : "ok");
	put_secs(o, "backoff_left_s", s->backoff_until > now
					      ? s->backoff_until - now : 0);
	put_u64(o, "flows", s->flows);
	put_u64(o, "failures", s->failures);
	put_u64(o, "failures_in_a_row", s->consecutive_failures);
	put_u64(conns, "mptcp", s->n_mptcp);
	put_u64(conns, "tcp_fallback", s->n_fallback);
	put_u64(conns, "tcp", s->n_tcp);
	put(o, "connections", conns);
	put_str(o, "pipeline", config_mode_name(c->pipeline));
	put_str(o, "pipelining", pipelining_name(s));
	put_bool(o, "pipelined", c->pipeline == CONFIG_ON ||
				 (c->pipeline == CONFIG_AUTO &&
				  s->pipelining != UPSTREAM_PIPE_NO));
	put_bool(o, "fast_open", upstream_fast_open(u));
	put_u64(o, "fast_open_accepted", s->n_fast_open);
	if (s->pool) {
		struct json_object *p = json_object_new_object();
		put_u64(p, "size", u->cfg->pool_size);
		put_u64(p, "ready", s->pool->n_ready);
		put_u64(p, "opening", s->pool->n - s->pool->n_ready);
		put_u64(p, "taken", s->pool->taken);
		put_u64(p, "discarded", s->pool->discarded);
		put(o, "pool", p);
	} else {
		put(o, "pool", NULL);
	}
	return o;
}

/* Per-WAN bytes of the live flows' subflows (read now), and the flows'
 * own JSON when asked for. */
struct wan_bytes {
	uint64_t sent, received;
};

static const char *flow_state_name(const struct flow *f)
{
	switch (f->state) {
	case FLOW_WAIT_DATA: return "waiting_for_data";
	case FLOW_CONNECTING: return "connecting";
	case FLOW_SOCKS: return "socks";
	case FLOW_RELAYING: return "relaying";
	}
	return "?";
}

static struct json_object *subflow_json(const struct status_subflow *r,
					const char *wan)
{
	struct json_object *o = json_object_new_object();
	put_addr(o, "local", &r->local);
	put_addr(o, "remote", &r->remote);
	put_str(o, "wan", wan);
	put_bool(o, "live", r->live);
	put_u64(o, "bytes_sent", r->sent);
	put_u64(o, "bytes_received", r->received);
	put(o, "rtt_ms", json_object_new_double(r->rtt_us / 1000.0));
	return o;
}

static struct json_object *flow_json(const struct daemon *d,
				     const struct flow *f,
				     const struct flow_paths *p,
				     const char **wans)
{
	struct json_object *o = json_object_new_object();
	put_u64(o, "id", f->id);
	put_addr(o, "lan", &f->lan);
	put_addr(o, "destination", &f->dst);
	put_str(o, "server", f->up_fd >= 0 && f->server ? f->server->name : NULL);
	put_str(o, "state", flow_state_name(f));
	put_secs(o, "age_s", ev_now(d->loop) - f->started);
	put_u64(o, "bytes_up", f->relay.dir[RELAY_LAN].bytes);
	put_u64(o, "bytes_down", f->relay.dir[RELAY_UP].bytes);
	put_str(o, "transport", f->state == FLOW_RELAYING
			       ? paths_kind_name((enum paths_kind)f->kind)
			       : NULL);
	struct json_object *arr = json_object_new_array();
	for (unsigned i = 0; p && i < p->n; i++) {
		int w = linkmon_wan_of(d->env.linkmon, &p->sf[i].local);
		json_object_array_add(arr, subflow_json(&p->sf[i],
							w >= 0 ? wans[w] : NULL));
	}
	put(o, "subflows", arr);
	return o;
}

/* Read every relaying flow's subflows, add them to per-WAN totals, and
 * list up to `limit` flows (newest first) in `list` when it is not NULL. */
static void walk_flows(struct daemon *d, struct wan_bytes *wb,
		       const char **wans, struct json_object *list,
		       unsigned limit, uint64_t *up, uint64_t *down)
{
	struct linkmon *lm = d->env.linkmon;
	unsigned listed = 0;

	for (struct flow *f = d->env.flows; f; f = f->next) {
		*up += f->relay.dir[RELAY_LAN].bytes;
		*down += f->relay.dir[RELAY_UP].bytes;
		bool listing = list && (!limit || listed < limit);
		struct flow_paths tmp;
		const struct flow_paths *p = NULL;
		if (has_paths(f) && (lm || listing))
			p = paths_reading(f, &tmp);
		for (unsigned i = 0; p && i < p->n; i++) {
			int w = linkmon_wan_of(lm, &p->sf[i].local);
			if (w >= 0) {
				wb[w].sent += p->sf[i].sent;
				wb[w].received += p->sf[i].received;
			}
		}
		if (listing) {
			json_object_array_add(list, flow_json(d, f, p, wans));
			listed++;
		}
	}
}

static struct json_object *wan_json(const struct linkmon_wan_status *w,
				    const struct wan_bytes *live, double now)
{
	struct json_object *o = json_object_new_object();
	put_str(o, "interface", w->interface);
	put_str(o, "mode", w->backup ? "backup" : "active");
	put_str(o, "state", w->up ? "up" : "down");
	put_str(o, "why", w->why);
	put_secs(o, "since_s", now - w->since);
	put_bool(o, "best", w->best);
	put_ip(o, "address", w->has_addr, &w->addr);
	put_ip(o, "gateway", w->has_gw, &w->gw);
	put(o, "rtt_ms", w->rtt_ms > 0 ? json_object_new_double(
			 (double)(int64_t)(w->rtt_ms * 1000) / 1000) : NULL);
	put_u64(o, "probes", w->probes);
	put_u64(o, "probes_lost", w->probes_lost);
	put(o, "endpoint", w->endpoint ? json_object_new_int((int)w->endpoint)
				       : NULL);
	put_u64(o, "bytes_sent", w->bytes_sent + live->sent);
	put_u64(o, "bytes_received", w->bytes_received + live->received);
	return o;
}

struct json_object *status_json(struct daemon *d, bool flows, unsigned limit)
{
	const struct upstream *u = d->env.ups;
	struct linkmon *lm = d->env.linkmon;
	double now = ev_now(d->loop);
	size_t n_wans = linkmon_count(lm);
	struct linkmon_wan_status ws[CONFIG_MAX_WANS];
	const char *wan_names[CONFIG_MAX_WANS];
	struct wan_bytes wb[CONFIG_MAX_WANS] = { { 0 } };
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	for (size_t i = 0; i < n_wans; i++) {
		linkmon_wan_status(lm, i, &ws[i]);
		wan_names[i] = ws[i].interface;
	}
	put_bool(o, "ok", true);
	put_str(o, "version", MPREDIR_VERSION);
	put_u64(o, "pid", (uint64_t)getpid());
	put_time(o, "started", d->started);
	put_secs(o, "uptime_s", now - d->started_mono);
	struct json_object *cfg = json_object_new_object();
	put_str(cfg, "file", d->config_path);
	put_time(cfg, "loaded", d->config_loaded);
	put_u64(cfg, "reloads", d->reloads);
	put_u64(cfg, "reloads_refused", d->reloads_refused);
	put_str(cfg, "control_socket", d->control ? control_path(d->control)
						  : NULL);
	put(o, "config", cfg);

	struct json_object *list = flows ? json_object_new_array() : NULL;
	uint64_t up = d->env.stats.bytes_up, down = d->env.stats.bytes_down;
	walk_flows(d, wb, wan_names, list, limit, &up, &down);
	put(o, "flows", flows_summary(d));
	struct json_object *bytes = json_object_new_object();
	put_u64(bytes, "up", up);
	put_u64(bytes, "down", down);
	put_u64(bytes, "buffered", relay_buffered_bytes());
	put(o, "bytes", bytes);

	struct json_object *servers = json_object_new_array();
	for (size_t i = 0; i < u->n; i++)
		json_object_array_add(servers, server_json(u, &u->servers[i], now));
	put(o, "servers", servers);
	struct json_object *wans = json_object_new_array();
	for (size_t i = 0; i < n_wans; i++)
		json_object_array_add(wans, wan_json(&ws[i], &wb[i], now));
	put(o, "wans", wans);
	if (list)
		put(o, "flow_list", list);
	return o;
}
