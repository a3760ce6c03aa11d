// SPDX-License-Identifier: GPL-2.0-or-later
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "daemon.h"
#include "flow.h"
#include "linkmon.h"
#include "paths.h"
#include "pool.h"
#include "relay.h"
#include "upstream.h"
#include "worker.h"

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

/* Flow f's bytes by local IPv4 address, from reading r: each subflow's;
 * what the connection carried beyond its subflows (those that closed:
 * Linux 6.5+ counts the whole connection) for its first subflow's
 * address. Returns the number of credits in c (room: STATUS_SUBFLOWS + 1). */
static size_t credits_of(const struct flow *f, const struct reading *r,
			 struct wan_credit *c)
{
	uint64_t s = 0, rcv = 0;
	size_t n = 0;

	for (int i = 0; i < r->n; i++) {
		if (gone(&r->sf[i]))
			continue;
		c[n++] = (struct wan_credit){ r->sf[i].local.in4.sin_addr.s_addr,
					      r->sf[i].bytes_sent,
					      r->sf[i].bytes_received };
		s += r->sf[i].bytes_sent;
		rcv += r->sf[i].bytes_received;
	}
	if (r->info.bytes_known && f->first_local4 &&
	    (r->info.bytes_sent > s || r->info.bytes_received > rcv))
		c[n++] = (struct wan_credit){
			f->first_local4,
			r->info.bytes_sent > s ? r->info.bytes_sent - s : 0,
			r->info.bytes_received > rcv
				? r->info.bytes_received - rcv : 0 };
	return n;
}

/* The WAN a credit's address is on, or -1. */
static int wan_of_credit(const struct linkmon *lm, const struct wan_credit *c)
{
	union sockaddr_any a = { .in4 = { .sin_family = AF_INET } };
	a.in4.sin_addr.s_addr = c->addr4;
	return linkmon_wan_of(lm, &a);
}

void status_credit_wans(struct linkmon *lm, const struct wan_credit *c,
			size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int w = wan_of_credit(lm, &c[i]);
		if (w >= 0)
			linkmon_account(lm, w, c[i].sent, c[i].received);
	}
}

void status_flow_end(struct flow *f)
{
	struct flow_shared *sh = f->env->shared;
	struct wan_credit c[STATUS_SUBFLOWS + 1];
	struct reading r;

	if (!sh->wans || !sh->credit || !has_paths(f))
		return;
	take_reading(f, &r);
	size_t n = credits_of(f, &r, c);
	if (n)
		sh->credit(sh, f->env->worker, c, n);
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

static struct json_object *flows_summary(const struct daemon *d,
					 const struct worker_report *all)
{
	const struct flow_stats *st = &all->stats;
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
	put_u64(o, "now", all->nflows);
	put_u64(o, "total", n_ended + all->nflows);
	put_u64(o, "max", d->ups->cfg->max_flows);
	put_u64(o, "workers", d->n_workers);
	put(o, "ended", ended);
	put(o, "refused", refused);
	return o;
}

static const char *pipelining_name(enum upstream_pipelining p)
{
	switch (p) {
	case UPSTREAM_PIPE_YES: return "works";
	case UPSTREAM_PIPE_NO: return "refused";
	default: return "unknown";
	}
}

static struct json_object *server_json(const struct upstream *u,
				       const struct upstream_server *s,
				       const struct pool_figures *pf,
				       unsigned n_workers, double now)
{
	struct json_object *o = json_object_new_object();
	struct json_object *conns = json_object_new_object();
	const struct config_server *c = s->cfg;
	struct upstream_state st;

	upstream_state_get(s, &st);

	put_str(o, "address", c->address);
	put_u64(o, "port", c->port);
	put_ip(o, "resolved", s->resolved, &s->addr);
	put_bool(o, "auth", c->username != NULL);
	put_str(o, "health", !s->resolved ? "unresolved"
			     : st.backoff_until > now ? "backing_off"
			     : st.consecutive_failures ? "failing" : "ok");
	put_ms3(o, "backoff_left_s", st.backoff_until > now
					      ? st.backoff_until - now : 0);
	put_u64(o, "flows", st.flows);
	put_u64(o, "failures", st.failures);
	put_u64(o, "failures_in_a_row", st.consecutive_failures);
	put_u64(conns, "mptcp", st.n_mptcp);
	put_u64(conns, "tcp_fallback", st.n_fallback);
	put_u64(conns, "tcp", st.n_tcp);
	put(o, "connections", conns);
	put_str(o, "pipeline", config_mode_name(c->pipeline));
	put_str(o, "pipelining", pipelining_name(st.pipelining));
	put_bool(o, "pipelined", c->pipeline == CONFIG_ON ||
				 (c->pipeline == CONFIG_AUTO &&
				  st.pipelining != UPSTREAM_PIPE_NO));
	put_bool(o, "fast_open", upstream_fast_open(u));
	put_u64(o, "fast_open_accepted", st.n_fast_open);
	if (pf->has) {
		struct json_object *p = json_object_new_object();
		put_u64(p, "size", u->cfg->pool_size * n_workers);
		put_u64(p, "ready", pf->ready);
		put_u64(p, "opening", pf->opening);
		put_u64(p, "taken", pf->taken);
		put_u64(p, "discarded", pf->discarded);
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

static struct json_object *flow_json(const struct flow *f,
				     const struct reading *r,
				     const struct linkmon *lm, double now)
{
	struct json_object *o = json_object_new_object();
	put_u64(o, "id", f->id);
	put_addr(o, "lan", &f->lan);
	put_addr(o, "destination", &f->dst);
	put_str(o, "server", f->up_fd >= 0 && f->server ? f->server->name : NULL);
	put_str(o, "state", flow_state_name(f));
	put_ms3(o, "age_s", now - f->started);
	put_u64(o, "bytes_up", f->relay.dir[RELAY_LAN].bytes);
	put_u64(o, "bytes_down", f->relay.dir[RELAY_UP].bytes);
	put_str(o, "transport", f->state == FLOW_RELAYING
			       ? paths_kind_name((enum paths_kind)f->kind)
			       : NULL);
	struct json_object *arr = json_object_new_array();
	for (int i = 0; r && i < r->n; i++) {
		if (gone(&r->sf[i]))
			continue;
		struct linkmon_wan_status ws;
		int w = linkmon_wan_of(lm, &r->sf[i].local);
		if (w >= 0)
			linkmon_wan_status(lm, (size_t)w, &ws);
		json_object_array_add(arr, subflow_json(&r->sf[i],
							w >= 0 ? ws.interface
							       : NULL));
	}
	put(o, "subflows", arr);
	return o;
}

void status_worker_report(const struct flow_env *env, struct worker_report *rep)
{
	const struct linkmon *lm = rep->linkmon;
	double now = ev_time();
	unsigned listed = 0;
	struct reading r;
	struct wan_credit c[STATUS_SUBFLOWS + 1];

	rep->nflows = env->nflows;
	rep->stats = env->stats;
	rep->flows = rep->list_flows ? json_object_new_array() : NULL;
	for (const struct flow *f = env->flows; f; f = f->next) {
		rep->live_up += f->relay.dir[RELAY_LAN].bytes;
		rep->live_down += f->relay.dir[RELAY_UP].bytes;
		bool listing = rep->flows && (!rep->limit || listed < rep->limit);
		bool read = has_paths(f) && (linkmon_count(lm) || listing);
		if (read) {
			take_reading(f, &r);
			size_t n = credits_of(f, &r, c);
			for (size_t i = 0; i < n; i++) {
				int w = wan_of_credit(lm, &c[i]);
				if (w >= 0) {
					rep->wan_sent[w] += c[i].sent;
					rep->wan_received[w] += c[i].received;
				}
			}
		}
		if (listing) {
			json_object_array_add(rep->flows, flow_json(
				f, read ? &r : NULL, lm, now));
			listed++;
		}
	}
	/* this worker's warm connections to the servers of the set asked */
	for (size_t i = 0; env->ups == rep->ups && i < rep->ups->n; i++) {
		const struct pool *p = rep->ups->servers[i].pools[env->worker];
		struct pool_figures *pf = &rep->pools[i];
		if (!p)
			continue;
		pf->has = true;
		pf->ready = p->n_ready;
		pf->opening = p->n - p->n_ready;
		pf->taken = p->taken;
		pf->discarded = p->discarded;
	}
}

/* Newest flows first: by id, descending. */
static int by_id_desc(const void *a, const void *b)
{
	uint64_t x = json_object_get_uint64(json_object_object_get(
		*(struct json_object *const *)a, "id"));
	uint64_t y = json_object_get_uint64(json_object_object_get(
		*(struct json_object *const *)b, "id"));
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The workers' flow lists as one, newest first, at most limit (0: all).
 * Takes the lists. */
static struct json_object *merge_flows(struct worker_report *reps, unsigned n,
				       unsigned limit)
{
	size_t total = 0, k = 0;
	for (unsigned i = 0; i < n; i++)
		total += reps[i].flows ? json_object_array_length(reps[i].flows)
				       : 0;
	struct json_object **all = calloc(total ? total : 1, sizeof(*all));
	struct json_object *list = json_object_new_array();
	for (unsigned i = 0; all && i < n; i++)
		for (size_t j = 0; reps[i].flows &&
				   j < json_object_array_length(reps[i].flows); j++)
			all[k++] = json_object_array_get_idx(reps[i].flows, j);
	if (all)
		qsort(all, k, sizeof(*all), by_id_desc);
	for (size_t i = 0; all && i < k && (!limit || i < limit); i++)
		json_object_array_add(list, json_object_get(all[i]));
	free(all);
	for (unsigned i = 0; i < n; i++)
		json_object_put(reps[i].flows);
	return list;
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
	const struct upstream *u = d->ups;
	struct linkmon *lm = d->linkmon;
	double now = ev_now(d->loop);
	size_t n_wans = linkmon_count(lm);
	struct linkmon_wan_status ws[CONFIG_MAX_WANS];
	struct worker_report reps[CONFIG_MAX_WORKERS], all = { 0 };
	struct pool_figures *pools = calloc(u->n * (d->n_workers + 1),
					    sizeof(*pools));
	struct json_object *o = json_object_new_object();

	if (!o || !pools) {
		free(pools);
		json_object_put(o);
		return NULL;
	}
	/* every worker's figures (the others pause the main loop a moment) */
	for (unsigned i = 0; i < d->n_workers; i++) {
		reps[i] = (struct worker_report){
			.list_flows = flows, .limit = limit, .linkmon = lm,
			.ups = u, .pools = pools + (i + 1) * u->n };
		worker_report(d->workers[i], &reps[i]);
		const struct worker_report *r = &reps[i];
		all.nflows += r->nflows;
		all.live_up += r->live_up;
		all.live_down += r->live_down;
		for (size_t w = 0; w < n_wans; w++) {
			all.wan_sent[w] += r->wan_sent[w];
			all.wan_received[w] += r->wan_received[w];
		}
		/* (struct flow_stats is counters only) */
		_Static_assert(sizeof(struct flow_stats) % sizeof(uint64_t) == 0,
			       "flow_stats holds uint64_t counters only");
		const uint64_t *src = (const uint64_t *)&r->stats;
		uint64_t *dst = (uint64_t *)&all.stats;
		for (size_t k = 0; k < sizeof(all.stats) / sizeof(uint64_t); k++)
			dst[k] += src[k];
		for (size_t k = 0; k < u->n; k++) {
			struct pool_figures *sum = &pools[k];
			const struct pool_figures *pf = &r->pools[k];
			sum->has |= pf->has;
			sum->ready += pf->ready;
			sum->opening += pf->opening;
			sum->taken += pf->taken;
			sum->discarded += pf->discarded;
		}
	}
	for (size_t i = 0; i < n_wans; i++)
		linkmon_wan_status(lm, i, &ws[i]);

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
	put(o, "flows", flows_summary(d, &all));
	struct json_object *bytes = json_object_new_object();
	put_u64(bytes, "up", all.stats.bytes_up + all.live_up);
	put_u64(bytes, "down", all.stats.bytes_down + all.live_down);
	put_u64(bytes, "buffered", relay_buffered_bytes());
	put(o, "bytes", bytes);

	struct json_object *servers = json_object_new_array();
	for (size_t i = 0; i < u->n; i++)
		json_object_array_add(servers, server_json(u, &u->servers[i],
							   &pools[i],
							   d->n_workers, now));
	put(o, "servers", servers);
	struct json_object *wans = json_object_new_array();
	for (size_t i = 0; i < n_wans; i++)
		json_object_array_add(wans, wan_json(&ws[i], all.wan_sent[i],
						     all.wan_received[i], now));
	put(o, "wans", wans);
	if (flows)
		put(o, "flow_list", merge_flows(reps, d->n_workers, limit));
	free(pools);
	return o;
}
