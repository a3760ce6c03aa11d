// SPDX-License-Identifier: GPL-2.0-or-later
#include "status.h"

#include <stdio.h>
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

/* Subflows read per flow: MPTCP allows 8 at once; the kernel keeps a
 * closing one in its list a moment longer. */
#define STATUS_SUBFLOWS PATHS_MAX_SUBFLOWS

/* One reading of a relaying flow's paths. */
struct reading {
	struct paths_info info;
	struct paths_subflow sf[STATUS_SUBFLOWS];
	int n; /* entries in sf, or -errno */
};

static bool has_paths(const struct flow *f)
{
	return f->state == FLOW_RELAYING && f->up_fd >= 0;
}

static void take_reading(const struct flow *f, struct reading *r)
{
	r->n = paths_read(f->up_fd, f->mptcp, &r->info, r->sf,
			  STATUS_SUBFLOWS);
	for (int i = 0; i < r->n; i++) {
		addr_unmap(&r->sf[i].local); /* WANs are known by IPv4 */
		addr_unmap(&r->sf[i].remote);
	}
}

/* A subflow the kernel has already let go of (its addresses cleared, its
 * counters zeroed): its bytes are in the connection's remainder. */
static bool gone(const struct paths_subflow *sf)
{
	return sf->local.sa.sa_family != AF_INET || !sf->local.in4.sin_addr.s_addr;
}

/* Add flow f's bytes per WAN (reading r) to wb: each subflow's to the WAN
 * of its local address; what the connection carried beyond its subflows
 * (those that closed: Linux 6.5+ counts the whole connection) to the WAN
 * of its first subflow. */
static void wan_bytes_add(const struct linkmon *lm, const struct flow *f,
			  const struct reading *r, uint64_t *sent,
			  uint64_t *received)
{
	uint64_t s = 0, rcv = 0;

	for (int i = 0; i < r->n; i++) {
		if (gone(&r->sf[i]))
			continue;
		int w = linkmon_wan_of(lm, &r->sf[i].local);
		if (w >= 0) {
			sent[w] += r->sf[i].bytes_sent;
			received[w] += r->sf[i].bytes_received;
		}
		s += r->sf[i].bytes_sent;
		rcv += r->sf[i].bytes_received;
	}
	union sockaddr_any first = { .in4 = { .sin_family = AF_INET } };
	first.in4.sin_addr.s_addr = f->first_local4;
	int w = f->first_local4 ? linkmon_wan_of(lm, &first) : -1;
	if (r->info.bytes_known && w >= 0) {
		if (r->info.bytes_sent > s)
			sent[w] += r->info.bytes_sent - s;
		if (r->info.bytes_received > rcv)
			received[w] += r->info.bytes_received - rcv;
	}
}

void status_flow_end(struct flow *f)
{
	struct linkmon *lm = f->env->linkmon;
	size_t n = linkmon_count(lm);

	if (!n || !has_paths(f))
		return;
	struct reading r;
	uint64_t sent[CONFIG_MAX_WANS] = { 0 }, received[CONFIG_MAX_WANS] = { 0 };
	take_reading(f, &r);
	wan_bytes_add(lm, f, &r, sent, received);
	for (size_t i = 0; i < n; i++)
		if (sent[i] || received[i])
			linkmon_account(lm, (int)i, sent[i], received[i]);
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

/* A number printed with 3 decimals (json-c would print 17 digits). */
static void put_ms3(struct json_object *o, const char *k, double v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%.3f", v);
	put(o, k, json_object_new_double_s(v, buf));
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
	switch (s->st->pipelining) {
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
			     : s->st->backoff_until > now ? "backing_off"
			     : s->st->consecutive_failures ? "failing" : "ok");
	put_ms3(o, "backoff_left_s", s->st->backoff_until > now
					      ? s->st->backoff_until - now : 0);
	put_u64(o, "flows", s->st->flows);
	put_u64(o, "failures", s->st->failures);
	put_u64(o, "failures_in_a_row", s->st->consecutive_failures);
	put_u64(conns, "mptcp", s->st->n_mptcp);
	put_u64(conns, "tcp_fallback", s->st->n_fallback);
	put_u64(conns, "tcp", s->st->n_tcp);
	put(o, "connections", conns);
	put_str(o, "pipeline", config_mode_name(c->pipeline));
	put_str(o, "pipelining", pipelining_name(s));
	put_bool(o, "pipelined", c->pipeline == CONFIG_ON ||
				 (c->pipeline == CONFIG_AUTO &&
				  s->st->pipelining != UPSTREAM_PIPE_NO));
	put_bool(o, "fast_open", upstream_fast_open(u));
	put_u64(o, "fast_open_accepted", s->st->n_fast_open);
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

static struct json_object *subflow_json(const struct paths_subflow *sf,
					const char *wan)
{
	struct json_object *o = json_object_new_object();
	put_addr(o, "local", &sf->local);
	put_addr(o, "remote", &sf->remote);
	put_str(o, "wan", wan);
	put_u64(o, "bytes_sent", sf->bytes_sent);
	put_u64(o, "bytes_received", sf->bytes_received);
	put_ms3(o, "rtt_ms", sf->rtt_us / 1000.0);
	return o;
}

static struct json_object *flow_json(const struct daemon *d,
				     const struct flow *f,
				     const struct reading *r,
				     const char **wans)
{
	struct json_object *o = json_object_new_object();
	put_u64(o, "id", f->id);
	put_addr(o, "lan", &f->lan);
	put_addr(o, "destination", &f->dst);
	put_str(o, "server", f->up_fd >= 0 && f->server ? f->server->name : NULL);
	put_str(o, "state", flow_state_name(f));
	put_ms3(o, "age_s", ev_now(d->loop) - f->started);
	put_u64(o, "bytes_up", f->relay.dir[RELAY_LAN].bytes);
	put_u64(o, "bytes_down", f->relay.dir[RELAY_UP].bytes);
	put_str(o, "transport", f->state == FLOW_RELAYING
			       ? paths_kind_name((enum paths_kind)f->kind)
			       : NULL);
	struct json_object *arr = json_object_new_array();
	for (int i = 0; r && i < r->n; i++) {
		if (gone(&r->sf[i]))
			continue;
		int w = linkmon_wan_of(d->env.linkmon, &r->sf[i].local);
		json_object_array_add(arr, subflow_json(&r->sf[i],
							w >= 0 ? wans[w] : NULL));
	}
	put(o, "subflows", arr);
	return o;
}

/* Read every relaying flow's paths, add them to the per-WAN bytes, and
 * list up to `limit` flows (newest first) in `list` when it is not NULL. */
static void walk_flows(struct daemon *d, uint64_t *sent, uint64_t *received,
		       const char **wans, struct json_object *list,
		       unsigned limit, uint64_t *up, uint64_t *down)
{
	struct linkmon *lm = d->env.linkmon;
	unsigned listed = 0;
	struct reading r;

	for (struct flow *f = d->env.flows; f; f = f->next) {
		*up += f->relay.dir[RELAY_LAN].bytes;
		*down += f->relay.dir[RELAY_UP].bytes;
		bool listing = list && (!limit || listed < limit);
		bool read = has_paths(f) && (linkmon_count(lm) || listing);
		if (read) {
			take_reading(f, &r);
			wan_bytes_add(lm, f, &r, sent, received);
		}
		if (listing) {
			json_object_array_add(list, flow_json(d, f, read ? &r
								  : NULL, wans));
			listed++;
		}
	}
}

static struct json_object *wan_json(const struct linkmon_wan_status *w,
				    uint64_t live_sent, uint64_t live_received,
				    double now)
{
	struct json_object *o = json_object_new_object();
	put_str(o, "interface", w->interface);
	put_str(o, "mode", w->backup ? "backup" : "active");
	put_str(o, "state", w->up ? "up" : "down");
	put_str(o, "why", w->why);
	put_ms3(o, "since_s", now - w->since);
	put_bool(o, "best", w->best);
	put_ip(o, "address", w->has_addr, &w->addr);
	put_ip(o, "gateway", w->has_gw, &w->gw);
	if (w->rtt_ms > 0)
		put_ms3(o, "rtt_ms", w->rtt_ms);
	else
		put(o, "rtt_ms", NULL);
	put_u64(o, "probes", w->probes);
	put_u64(o, "probes_lost", w->probes_lost);
	put(o, "endpoint", w->endpoint ? json_object_new_int((int)w->endpoint)
				       : NULL);
	put_u64(o, "bytes_sent", w->bytes_sent + live_sent);
	put_u64(o, "bytes_received", w->bytes_received + live_received);
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
	uint64_t sent[CONFIG_MAX_WANS] = { 0 }, received[CONFIG_MAX_WANS] = { 0 };
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
	put_ms3(o, "uptime_s", now - d->started_mono);
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
	walk_flows(d, sent, received, wan_names, list, limit, &up, &down);
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
		json_object_array_add(wans, wan_json(&ws[i], sent[i],
						     received[i], now));
	put(o, "wans", wans);
	if (list)
		put(o, "flow_list", list);
	return o;
}
