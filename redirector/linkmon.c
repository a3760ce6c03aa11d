// SPDX-License-Identifier: GPL-2.0-or-later
#include "linkmon.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "mptcp_pm.h"
#include "route.h"

/* Endpoint ids: WAN i asks for id 100 + i, so that it keeps it across
 * down/up (mptcp_pm takes the next free one if another owner holds it). */
#define ENDPOINT_ID_BASE 100

struct wan {
	struct linkmon *lm;
	const struct config_wan *cfg;
	unsigned index;
	/* what the kernel says */
	int ifindex;
	bool running;                 /* up, with carrier */
	bool has_addr, has_gw;
	union sockaddr_any addr, gw;
	/* health */
	bool up;
	unsigned answered, lost;      /* in a row */
	uint64_t probes, probes_lost;
	double rtt_ms;                /* smoothed */
	/* installed */
	bool routed;
	union sockaddr_any routed_addr;
	uint8_t endpoint;             /* 0: none */
	/* the probe in flight */
	ev_timer tick;
	ev_io probe_io;
	ev_timer probe_timeout;
	int probe_fd;
	double probe_sent;
	uint16_t echo_seq;
};

struct linkmon {
	struct ev_loop *loop;
	const struct upstream *ups;
	const struct rtmon *rm;
	struct mptcp_pm *pm;
	union sockaddr_any target;    /* probe target; family 0: no probes */
	int best;                     /* WAN index behind the marked route */
	bool mark_rule;
	size_t n;
	struct wan wans[];
};

static const struct config *cfg_of(const struct linkmon *lm)
{
	return lm->ups->cfg;
}

/* ---- what a WAN gets ------------------------------------------------------
 * Its routing (table + "from" rule) as long as it has a running link and an
 * address: its probes need it, healthy or not. Its MPTCP endpoint only
 * while it is healthy. */

static void endpoint_del(struct wan *w)
{
	if (!w->endpoint)
		return;
	int rc = mptcp_pm_del(w->lm->pm, w->endpoint);
	if (rc < 0)
		log_warn("wan %s: removing MPTCP endpoint %u: %s",
			 w->cfg->interface, w->endpoint, strerror(-rc));
	w->endpoint = 0;
}

static int endpoint_add(struct wan *w)
{
	if (!w->lm->pm || w->endpoint)
		return 0;
	int rc = mptcp_pm_add(w->lm->pm, &w->addr, w->ifindex, w->cfg->backup,
			      ENDPOINT_ID_BASE + w->index);
	if (rc < 0) {
		log_error("wan %s: MPTCP endpoint: %s", w->cfg->interface,
			  strerror(-rc));
		return rc;
	}
	w->endpoint = (uint8_t)rc;
	return 0;
}

static void unroute(struct wan *w)
{
	if (!w->routed)
		return;
	int rc = route_rule_from(false, &w->routed_addr, w->cfg->table,
				 LINKMON_RULE_PRIO_FROM + w->index);
	if (rc < 0)
		log_warn("wan %s: removing its rule: %s", w->cfg->interface,
			 strerror(-rc));
	route_default_del(w->cfg->table);
	w->routed = false;
}

static int route(struct wan *w)
{
	const char *iface = w->cfg->interface;
	int rc;

	if (w->routed && !addr_equal(&w->routed_addr, &w->addr)) {
		endpoint_del(w); /* a new address: everything follows it */
		unroute(w);
	}
	rc = route_default_set(w->cfg->table, w->has_gw ? &w->gw : NULL,
			       w->ifindex);
	if (rc < 0) {
		log_error("wan %s: default route in table %u: %s", iface,
			  w->cfg->table, strerror(-rc));
		return rc;
	}
	if (!w->routed) {
		rc = route_rule_from(true, &w->addr, w->cfg->table,
				     LINKMON_RULE_PRIO_FROM + w->index);
		if (rc < 0) {
			log_error("wan %s: rule from its address: %s", iface,
				  strerror(-rc));
			return rc;
		}
		w->routed = true;
		w->routed_addr = w->addr;
	}
	return 0;
}

/* The marked (upstream) sockets' default route: the best healthy WAN. */
static void update_best(struct linkmon *lm)
{
	int best = -1;

	for (size_t i = 0; i < lm->n && best < 0; i++)
		if (lm->wans[i].up && !lm->wans[i].cfg->backup)
			best = (int)i;
	for (size_t i = 0; i < lm->n && best < 0; i++)
		if (lm->wans[i].up)
			best = (int)i;
	if (best == lm->best)
		return;
	if (best < 0) {
		route_default_del(LINKMON_BEST_TABLE);
		log_warn("no healthy WAN: new flows use the main routing table");
	} else {
		struct wan *w = &lm->wans[best];
		int rc = route_default_set(LINKMON_BEST_TABLE,
					   w->has_gw ? &w->gw : NULL, w->ifindex);
		if (rc < 0) {
			log_error("route of new flows via %s: %s",
				  w->cfg->interface, strerror(-rc));
			return;
		}
		log_info("new flows start on wan %s", w->cfg->interface);
	}
	lm->best = best;
}

static void set_up(struct wan *w, bool up, const char *why)
{
	char a[ADDR_STRLEN], g[ADDR_STRLEN];

	if (up) {
		if (route(w) < 0 || endpoint_add(w) < 0)
			return; /* stays down; the next change or probe retries */
		w->up = true;
		log_info("wan %s up: %s, address %s, gateway %s", w->cfg->interface,
			 why, addr_ip(&w->addr, a, sizeof(a)),
			 w->has_gw ? addr_ip(&w->gw, g, sizeof(g)) : "none");
	} else {
		w->up = false;
		endpoint_del(w);
		log_warn("wan %s down: %s", w->cfg->interface, why);
	}
	update_best(w->lm);
}

/* ---- probes ------------------------------------------------------------- */

static void probe_done(struct wan *w, bool answered)
{
	struct linkmon *lm = w->lm;
	const struct config *cfg = cfg_of(lm);

	ev_io_stop(lm->loop, &w->probe_io);
	ev_timer_stop(lm->loop, &w->probe_timeout);
	if (w->probe_fd >= 0) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		(void)setsockopt(w->probe_fd, SOL_SOCKET, SO_LINGER, &lg,
				 sizeof(lg));
		close(w->probe_fd);
		w->probe_fd = -1;
	}
	w->probes++;
	if (answered) {
		double rtt = (ev_now(lm->loop) - w->probe_sent) * 1000;
		w->rtt_ms = w->rtt_ms ? 0.75 * w->rtt_ms + 0.25 * rtt : rtt;
		w->answered++;
		w->lost = 0;
		if (!w->up && w->running && w->has_addr &&
		    w->answered >= cfg->up_after) {
			char why[64];
			snprintf(why, sizeof(why), "%u probes answered",
				 w->answered);
			set_up(w, true, why);
		}
		return;
	}
	w->probes_lost++;
	w->lost++;
	w->answered = 0;
	if (w->up && w->lost >= cfg->down_after) {
		char why[64];
		snprintf(why, sizeof(why), "%u probes lost", w->lost);
		set_up(w, false, why);
	}
}

static void on_probe_io(struct ev_loop *loop, ev_io *w_io, int revents)
{
	struct wan *w = (struct wan *)((char *)w_io - offsetof(struct wan,
							     probe_io));

	if (cfg_of(w->lm)->probe == CONFIG_PROBE_TCP) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(w->probe_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		/* a reset from the target also proves the path works */
		probe_done(w, err == 0 || err == ECONNREFUSED);
		return;
	}
	/* ICMP: an echo reply with our id and sequence number */
	uint8_t buf[1500];
	ssize_t n = recv(w->probe_fd, buf, sizeof(buf), 0);
	if (n < 0)
		return;
	size_t ihl = (size_t)(buf[0] & 0x0f) * 4;
	if ((size_t)n < ihl + 8)
		return;
	const struct icmphdr *icmp = (const struct icmphdr *)(buf + ihl);
	if (icmp->type == ICMP_ECHOREPLY &&
	    icmp->un.echo.id == htons((uint16_t)(0x4d00 + w->index)) &&
	    icmp->un.echo.sequence == htons(w->echo_seq))
		probe_done(w, true);
}

static void on_probe_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	probe_done((struct wan *)((char *)t - offsetof(struct wan,
						       probe_timeout)), false);
}

static uint16_t icmp_sum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/* Open a socket bound to the WAN (device and source address) and send
 * one probe. -errno on failure. */
static int probe_send(struct wan *w)
{
	struct linkmon *lm = w->lm;
	const struct config *cfg = cfg_of(lm);
	bool tcp = cfg->probe == CONFIG_PROBE_TCP;
	int fd = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_RAW) |
				 SOCK_NONBLOCK | SOCK_CLOEXEC,
			tcp ? IPPROTO_TCP : IPPROTO_ICMP);
	if (fd < 0)
		return -errno;
	union sockaddr_any src = w->addr;
	src.in4.sin_port = 0;
	int mark = (int)cfg->mark;
	if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, w->cfg->interface,
		       (socklen_t)strlen(w->cfg->interface)) < 0 ||
	    (mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark,
				sizeof(mark)) < 0) ||
	    bind(fd, &src.sa, sizeof(src.in4)) < 0)
		goto fail;
	w->probe_sent = ev_now(lm->loop);
	if (tcp) {
		if (connect(fd, &lm->target.sa, sizeof(lm->target.in4)) < 0 &&
		    errno != EINPROGRESS)
			goto fail;
	} else {
		struct icmphdr icmp = { .type = ICMP_ECHO };
		icmp.un.echo.id = htons((uint16_t)(0x4d00 + w->index));
		icmp.un.echo.sequence = htons(++w->echo_seq);
		icmp.checksum = icmp_sum(&icmp, sizeof(icmp));
		if (sendto(fd, &icmp, sizeof(icmp), 0, &lm->target.sa,
			   sizeof(lm->target.in4)) < 0)
			goto fail;
	}
	w->probe_fd = fd;
	ev_io_set(&w->probe_io, fd, tcp ? EV_WRITE : EV_READ);
	ev_io_start(lm->loop, &w->probe_io);
	ev_timer_set(&w->probe_timeout, cfg->probe_timeout_ms / 1000.0, 0);
	ev_timer_start(lm->loop, &w->probe_timeout);
	return 0;
fail:;
	int err = errno;
	close(fd);
	return -err;
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct wan *w = (struct wan *)((char *)t - offsetof(struct wan, tick));

	if (!w->running || !w->has_addr)
		return;
	/* one probe per interval: one still unanswered now is lost (its
	 * timeout is at most the interval) */
	if (w->probe_fd >= 0)
		probe_done(w, false);
	int rc = probe_send(w);
	if (rc < 0) {
		log_debug("wan %s: probe: %s", w->cfg->interface, strerror(-rc));
		w->probe_sent = ev_now(loop);
		probe_done(w, false);
	}
}

/* ---- the kernel's view -------------------------------------------------- */

static void evaluate(struct wan *w)
{
	const struct rtmon *rm = w->lm->rm;
	const struct config_wan *c = w->cfg;
	const struct rtmon_link *l = rtmon_link_by_name(rm, c->interface);
	const char *why = NULL;

	w->ifindex = l ? l->ifindex : 0;
	w->running = l && rtmon_link_running(l);
	const struct rtmon_addr *a = l ? rtmon_first_addr(rm, l->ifindex,
							  AF_INET) : NULL;
	bool had_addr = w->has_addr;
	union sockaddr_any old_addr = w->addr;
	w->has_addr = a != NULL;
	if (a) {
		memset(&w->addr, 0, sizeof(w->addr));
		w->addr.in4.sin_family = AF_INET;
		memcpy(&w->addr.in4.sin_addr, a->prefix.addr, 4);
	}
	w->has_gw = c->gateway_set;
	if (c->gateway_set) {
		w->gw = c->gateway;
	} else if (l) {
		const struct rtmon_route *r = rtmon_default_route(rm, l->ifindex);
		if (r && r->has_gateway) {
			w->has_gw = true;
			w->gw = r->gateway;
		}
	}
	if (!l)
		why = "interface missing";
	else if (!(l->flags & IFF_UP))
		why = "link down";
	else if (!w->running)
		why = "carrier lost";
	else if (!w->has_addr)
		why = "no IPv4 address";
	if (why) {
		w->answered = 0;
		if (w->up)
			set_up(w, false, why);
		unroute(w);
		return;
	}
	if (had_addr && w->routed && !addr_equal(&old_addr, &w->addr))
		log_info("wan %s: new address", c->interface);
	/* (again: the address or the gateway may have changed) */
	if (route(w) < 0) {
		if (w->up)
			set_up(w, false, "routing failed");
		return;
	}
	if (w->up)
		endpoint_add(w);
	else if (w->lm->target.sa.sa_family == 0)
		set_up(w, true, "link up");
}

void linkmon_network_changed(struct linkmon *lm, unsigned what)
{
	for (size_t i = 0; i < lm->n; i++)
		evaluate(&lm->wans[i]);
}

struct linkmon *linkmon_start(struct ev_loop *loop, const struct upstream *ups,
			      const struct rtmon *rm)
{
	const struct config *cfg = ups->cfg;
	struct linkmon *lm = calloc(1, sizeof(*lm) +
					   cfg->n_wans * sizeof(struct wan));
	if (!lm) {
		log_error("link monitor: out of memory");
		return NULL;
	}
	lm->loop = loop;
	lm->ups = ups;
	lm->rm = rm;
	lm->best = -1;
	lm->n = cfg->n_wans;
	int err = 0;
	lm->pm = mptcp_pm_open(&err);
	if (!lm->pm)
		log_warn("MPTCP path manager: %s: WAN endpoints not managed",
			 strerror(err));
	else if ((err = mptcp_pm_set_limits(lm->pm, (unsigned)lm->n,
					    (unsigned)lm->n)) < 0)
		log_warn("MPTCP limits: %s", strerror(-err));
	/* what the probes aim at */
	if (cfg->probe != CONFIG_PROBE_NONE) {
		if (cfg->probe_target_set)
			lm->target = cfg->probe_target;
		else if (ups->n && ups->servers[0].resolved)
			lm->target = ups->servers[0].addr;
		if (lm->target.sa.sa_family != AF_INET) {
			log_warn("link monitor: no IPv4 probe target: WANs are "
				 "judged by their link state only");
			memset(&lm->target, 0, sizeof(lm->target));
		}
	}
	int rc = route_rule_fwmark(true, AF_INET, cfg->mark, LINKMON_BEST_TABLE,
				   LINKMON_RULE_PRIO_MARK);
	if (rc < 0)
		log_error("rule for the daemon's marked sockets: %s",
			  strerror(-rc));
	lm->mark_rule = rc == 0;
	for (size_t i = 0; i < lm->n; i++) {
		struct wan *w = &lm->wans[i];
		w->lm = lm;
		w->cfg = &cfg->wans[i];
		w->index = (unsigned)i;
		w->probe_fd = -1;
		ev_init(&w->probe_io, on_probe_io);
		ev_init(&w->probe_timeout, on_probe_timeout);
		ev_timer_init(&w->tick, on_tick, 0.01 * (double)i,
			      cfg->probe_interval_ms / 1000.0);
		if (lm->target.sa.sa_family)
			ev_timer_start(loop, &w->tick);
		evaluate(w);
	}
	return lm;
}

void linkmon_stop(struct linkmon *lm)
{
	if (!lm)
		return;
	for (size_t i = 0; i < lm->n; i++) {
		struct wan *w = &lm->wans[i];
		ev_timer_stop(lm->loop, &w->tick);
		ev_io_stop(lm->loop, &w->probe_io);
		ev_timer_stop(lm->loop, &w->probe_timeout);
		if (w->probe_fd >= 0)
			close(w->probe_fd);
		endpoint_del(w);
		unroute(w);
	}
	route_default_del(LINKMON_BEST_TABLE);
	if (lm->mark_rule)
		route_rule_fwmark(false, AF_INET, cfg_of(lm)->mark,
				  LINKMON_BEST_TABLE, LINKMON_RULE_PRIO_MARK);
	mptcp_pm_close(lm->pm);
	free(lm);
}

static bool same_wan(const struct config_wan *a, const struct config_wan *b)
{
	return strcmp(a->interface, b->interface) == 0 &&
	       a->backup == b->backup && a->table == b->table &&
	       a->gateway_set == b->gateway_set &&
	       (!a->gateway_set || addr_equal(&a->gateway, &b->gateway));
}

struct linkmon *linkmon_reload(struct linkmon *lm, struct ev_loop *loop,
			       const struct upstream *ups,
			       const struct rtmon *rm)
{
	const struct config *old = lm ? cfg_of(lm) : NULL, *cfg = ups->cfg;
	bool same = lm && old->n_wans == cfg->n_wans && old->mark == cfg->mark &&
		    old->probe == cfg->probe &&
		    old->probe_interval_ms == cfg->probe_interval_ms &&
		    old->probe_target_set == cfg->probe_target_set &&
		    (!cfg->probe_target_set ||
		     addr_equal(&old->probe_target, &cfg->probe_target));
	for (size_t i = 0; same && i < cfg->n_wans; i++)
		same = same_wan(&old->wans[i], &cfg->wans[i]);
	if (!same) {
		linkmon_stop(lm);
		return cfg->n_wans ? linkmon_start(loop, ups, rm) : NULL;
	}
	/* the WANs' config entries move to the new configuration */
	lm->ups = ups;
	for (size_t i = 0; i < lm->n; i++)
		lm->wans[i].cfg = &cfg->wans[i];
	return lm;
}
