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
 * down/up (mptcp_pm takes the next free one if another owner holds it).
 * A reload that moves a WAN leaves its endpoint and id alone: only an
 * endpoint it gets later asks for the id of its new index. */
#define ENDPOINT_ID_BASE 100

struct wan {
	struct linkmon *lm;
	const struct config_wan *cfg; /* in lm->ups->cfg */
	unsigned index;               /* in cfg->wans[] */
	bool in_use;                  /* (a slot of lm->slot[]) */
	/* what the kernel says */
	int ifindex;
	bool running;                 /* up, with carrier */
	bool has_addr, has_gw;
	union sockaddr_any addr, gw;
	/* health */
	bool up;
	char why[40];                 /* cause of the last change */
	double since;                 /* ev_now() of the last change */
	unsigned answered, lost;      /* in a row */
	uint64_t probes, probes_lost;
	double rtt_ms;                /* smoothed */
	uint64_t bytes_sent, bytes_received; /* of subflows that ended */
	/* installed: the rule and its table's route as they were made (a
	 * reload may change the config before they move); routed_addr stays
	 * after unroute(), the last address routed */
	bool routed;
	union sockaddr_any routed_addr;
	uint32_t routed_table, routed_prio;
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
	/* the marked sockets' route, as installed */
	struct wan *best;             /* NULL: none, or its WAN was removed */
	bool best_routed;
	int best_ifindex;
	bool best_has_gw;
	union sockaddr_any best_gw;
	/* the rule to it */
	bool mark_rule;
	uint32_t mark;
	size_t n;
	struct wan *wans[CONFIG_MAX_WANS]; /* in config order, into slot[] */
	/* Storage: a WAN never moves (libev holds its watchers) while a
	 * reload reorders, removes and adds them. */
	struct wan slot[CONFIG_MAX_WANS];
};

static const struct config *cfg_of(const struct linkmon *lm)
{
	return lm->ups->cfg;
}

static uint32_t rule_prio(const struct wan *w)
{
	return LINKMON_RULE_PRIO_FROM + w->index;
}

/* A change of w's state, and its cause (for linkmon_wan_status). */
static void note(struct wan *w, const char *why)
{
	snprintf(w->why, sizeof(w->why), "%s", why);
	w->since = ev_now(w->lm->loop);
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

/* A reload changed the mode of w, which has an endpoint: its backup flag
 * changes in place (the peers get MP_PRIO; the subflows stay). */
static void endpoint_set_backup(struct wan *w)
{
	int rc = mptcp_pm_add(w->lm->pm, &w->routed_addr, w->ifindex,
			      w->cfg->backup, w->endpoint);
	if (rc < 0) {
		log_error("wan %s: MPTCP endpoint %u: setting its flags: %s",
			  w->cfg->interface, w->endpoint, strerror(-rc));
		return;
	}
	w->endpoint = (uint8_t)rc;
}

static void unroute(struct wan *w)
{
	if (!w->routed)
		return;
	int rc = route_rule_from(false, &w->routed_addr, w->routed_table,
				 w->routed_prio);
	if (rc < 0)
		log_warn("wan %s: removing its rule: %s", w->cfg->interface,
			 strerror(-rc));
	route_default_del(w->routed_table);
	w->routed = false;
}

/* Its table's default route, and its rule where the config puts them. A
 * WAN whose table or position a reload changed gets the new rule before
 * the old one (and the old table's route) go, so that its subflows
 * always have a way out. */
static int route(struct wan *w)
{
	const char *iface = w->cfg->interface;
	uint32_t table = w->cfg->table, prio = rule_prio(w);
	int rc;

	if (w->routed && !addr_equal(&w->routed_addr, &w->addr)) {
		endpoint_del(w); /* a new address: everything follows it */
		unroute(w);
	}
	rc = route_default_set(table, w->has_gw ? &w->gw : NULL, w->ifindex);
	if (rc < 0) {
		log_error("wan %s: default route in table %u: %s", iface,
			  table, strerror(-rc));
		return rc;
	}
	if (w->routed && w->routed_table == table && w->routed_prio == prio)
		return 0;
	rc = route_rule_from(true, &w->addr, table, prio);
	if (rc < 0) {
		log_error("wan %s: rule from its address: %s", iface,
			  strerror(-rc));
		return rc;
	}
	if (w->routed) {
		log_debug("wan %s: rule moves to priority %u, table %u", iface,
			  prio, table);
		rc = route_rule_from(false, &w->routed_addr, w->routed_table,
				     w->routed_prio);
		if (rc < 0)
			log_warn("wan %s: removing its previous rule: %s", iface,
				 strerror(-rc));
		if (w->routed_table != table)
			route_default_del(w->routed_table);
	}
	w->routed = true;
	w->routed_addr = w->addr;
	w->routed_table = table;
	w->routed_prio = prio;
	return 0;
}

/* The WAN new flows start on: the first healthy active one, else the
 * first healthy backup one; NULL. */
static struct wan *pick_best(const struct linkmon *lm)
{
	for (size_t i = 0; i < lm->n; i++)
		if (lm->wans[i]->up && !lm->wans[i]->cfg->backup)
			return lm->wans[i];
	for (size_t i = 0; i < lm->n; i++)
		if (lm->wans[i]->up)
			return lm->wans[i];
	return NULL;
}

/* The marked (upstream) sockets' default route: via the best healthy WAN.
 * Set again when another WAN is the best, or the best one's gateway or
 * device changed. */
static void update_best(struct linkmon *lm)
{
	struct wan *w = pick_best(lm);

	if (!w) {
		if (lm->best_routed) {
			route_default_del(LINKMON_BEST_TABLE);
			log_warn("no healthy WAN: new flows use the main "
				 "routing table");
		}
		lm->best = NULL;
		lm->best_routed = false;
		return;
	}
	if (w == lm->best && w->ifindex == lm->best_ifindex &&
	    w->has_gw == lm->best_has_gw &&
	    (!w->has_gw || addr_equal(&w->gw, &lm->best_gw)))
		return;
	int rc = route_default_set(LINKMON_BEST_TABLE, w->has_gw ? &w->gw : NULL,
				   w->ifindex);
	if (rc < 0) {
		log_error("route of new flows via %s: %s", w->cfg->interface,
			  strerror(-rc));
		return;
	}
	if (w != lm->best)
		log_info("new flows start on wan %s", w->cfg->interface);
	lm->best = w;
	lm->best_routed = true;
	lm->best_ifindex = w->ifindex;
	lm->best_has_gw = w->has_gw;
	lm->best_gw = w->gw;
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
	note(w, why);
	update_best(w->lm);
}

/* ---- probes ------------------------------------------------------------- */

/* End the probe in flight, if any (a TCP one with a reset: no lingering
 * connection towards the target). */
static void probe_close(struct wan *w)
{
	struct linkmon *lm = w->lm;

	ev_io_stop(lm->loop, &w->probe_io);
	ev_timer_stop(lm->loop, &w->probe_timeout);
	if (w->probe_fd >= 0) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		(void)setsockopt(w->probe_fd, SOL_SOCKET, SO_LINGER, &lg,
				 sizeof(lg));
		close(w->probe_fd);
		w->probe_fd = -1;
	}
}

static void probe_done(struct wan *w, bool answered)
{
	struct linkmon *lm = w->lm;
	const struct config *cfg = cfg_of(lm);

	probe_close(w);
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
		else if (strcmp(w->why, why) != 0)
			note(w, why); /* down already, now for this reason */
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
		evaluate(lm->wans[i]);
	update_best(lm); /* (the best WAN's learned gateway may have moved) */
}

/* ---- a WAN's life ------------------------------------------------------- */

/* WAN i of the configuration in a free slot: watchers ready, nothing
 * started yet. There is always a free slot: at most CONFIG_MAX_WANS are
 * in use, and a reload frees the removed ones first. */
static struct wan *wan_new(struct linkmon *lm, size_t i)
{
	struct wan *w = lm->slot;

	while (w->in_use)
		w++;
	memset(w, 0, sizeof(*w));
	w->in_use = true;
	w->lm = lm;
	w->cfg = &cfg_of(lm)->wans[i];
	w->index = (unsigned)i;
	w->probe_fd = -1;
	ev_init(&w->tick, on_tick);
	ev_init(&w->probe_io, on_probe_io);
	ev_init(&w->probe_timeout, on_probe_timeout);
	note(w, "starting");
	return w;
}

/* Probe per the configuration from now on: the first probe at once (WANs
 * a little apart); none without a target. A probe in flight is neither
 * answered nor lost. */
static void wan_probe_start(struct wan *w)
{
	struct linkmon *lm = w->lm;

	ev_timer_stop(lm->loop, &w->tick);
	probe_close(w);
	if (!lm->target.sa.sa_family)
		return;
	ev_timer_set(&w->tick, 0.01 * w->index,
		     cfg_of(lm)->probe_interval_ms / 1000.0);
	ev_timer_start(lm->loop, &w->tick);
}

/* Stop following w and remove what it made. The marked route stays until
 * update_best() picks another WAN (or none). */
static void wan_free(struct wan *w)
{
	struct linkmon *lm = w->lm;

	ev_timer_stop(lm->loop, &w->tick);
	probe_close(w);
	endpoint_del(w);
	unroute(w);
	if (lm->best == w)
		lm->best = NULL;
	w->in_use = false;
}

/* A WAN that stays across a reload takes its new entry c (at idx). Its
 * endpoint's flag changes here; route() moves its route and rule when it
 * is next evaluated. */
static void wan_reconfigure(struct wan *w, const struct config_wan *c,
			    unsigned idx)
{
	const struct config_wan *old = w->cfg;
	const char *iface = c->interface;
	char a[ADDR_STRLEN];

	if (old->backup != c->backup)
		log_info("wan %s: now %s", iface, c->backup ? "backup" : "active");
	if (old->table != c->table)
		log_info("wan %s: table %u, was %u", iface, c->table, old->table);
	if (old->gateway_set != c->gateway_set ||
	    (c->gateway_set && !addr_equal(&old->gateway, &c->gateway)))
		log_info("wan %s: gateway %s", iface, c->gateway_set
			 ? addr_ip(&c->gateway, a, sizeof(a))
			 : "learned from the main table");
	if (w->index != idx)
		log_info("wan %s: now wans[%u], rule priority %u", iface, idx,
			 LINKMON_RULE_PRIO_FROM + idx);
	w->cfg = c;
	w->index = idx;
	if (old->backup != c->backup && w->endpoint)
		endpoint_set_backup(w);
}

/* Another WAN's route is in `table`, as installed. */
static bool table_taken(const struct linkmon *lm, const struct wan *w,
			uint32_t table)
{
	for (size_t i = 0; i < lm->n; i++) {
		const struct wan *o = lm->wans[i];
		if (o != w && o->routed && o->routed_table == table)
			return true;
	}
	return false;
}

/* After a reload, the routed WANs whose table changed move to it one at a
 * time, each once no other WAN's route is left there (one configuration's
 * tables differ, but old and new ones overlap: with default tables a WAN
 * that moves up takes the table of the one before it). WANs that trade
 * tables make a cycle, broken by unrouting one of them for a moment. */
static void move_tables(struct linkmon *lm)
{
	for (;;) {
		struct wan *ready = NULL, *blocked = NULL;
		for (size_t i = 0; i < lm->n && !ready; i++) {
			struct wan *w = lm->wans[i];
			if (!w->routed || w->routed_table == w->cfg->table)
				continue;
			if (!table_taken(lm, w, w->cfg->table))
				ready = w;
			else if (!blocked)
				blocked = w;
		}
		if (ready) {
			evaluate(ready);
			if (ready->routed && ready->routed_table != ready->cfg->table)
				unroute(ready); /* failed: out of the way */
		} else if (blocked) {
			log_debug("wan %s: tables in a cycle: unrouted for a "
				  "moment", blocked->cfg->interface);
			unroute(blocked);
		} else {
			return;
		}
	}
}

/* ---- the monitor's settings --------------------------------------------- */

/* What the probes aim at: the configured target, else the first server.
 * Family 0: no probes (also without an IPv4 target). */
static union sockaddr_any probe_target(const struct upstream *ups)
{
	const struct config *cfg = ups->cfg;
	union sockaddr_any t;

	memset(&t, 0, sizeof(t));
	if (cfg->probe == CONFIG_PROBE_NONE)
		return t;
	if (cfg->probe_target_set)
		t = cfg->probe_target;
	else if (ups->n && ups->servers[0].resolved)
		t = ups->servers[0].addr;
	if (t.sa.sa_family != AF_INET)
		memset(&t, 0, sizeof(t));
	return t;
}

static void warn_no_target(const struct linkmon *lm)
{
	if (cfg_of(lm)->probe != CONFIG_PROBE_NONE && !lm->target.sa.sa_family)
		log_warn("link monitor: no IPv4 probe target: WANs are judged "
			 "by their link state only");
}

static bool same_probes(const struct config *a, const struct config *b)
{
	return a->probe == b->probe &&
	       a->probe_interval_ms == b->probe_interval_ms &&
	       a->probe_timeout_ms == b->probe_timeout_ms &&
	       a->down_after == b->down_after && a->up_after == b->up_after;
}

/* A reload's new probe settings, in one line. */
static void log_probes(const struct linkmon *lm)
{
	const struct config *cfg = cfg_of(lm);
	char t[ADDR_STRLEN];

	if (cfg->probe == CONFIG_PROBE_NONE)
		log_info("link monitor: no probes: WANs are judged by their "
			 "link state only");
	else if (!lm->target.sa.sa_family)
		warn_no_target(lm);
	else
		log_info("link monitor: %s probes to %s every %u ms (timeout "
			 "%u ms), down after %u lost, up after %u answered",
			 cfg->probe == CONFIG_PROBE_TCP ? "tcp" : "icmp",
			 cfg->probe == CONFIG_PROBE_TCP
			 ? addr_fmt(&lm->target, t, sizeof(t))
			 : addr_ip(&lm->target, t, sizeof(t)),
			 cfg->probe_interval_ms, cfg->probe_timeout_ms,
			 cfg->down_after, cfg->up_after);
}

static void mark_rule_del(struct linkmon *lm)
{
	if (!lm->mark_rule)
		return;
	int rc = route_rule_fwmark(false, AF_INET, lm->mark, LINKMON_BEST_TABLE,
				   LINKMON_RULE_PRIO_MARK);
	if (rc < 0)
		log_warn("removing the rule for the daemon's marked sockets: %s",
			 strerror(-rc));
	lm->mark_rule = false;
}

/* The rule that sends the daemon's marked sockets to the best WAN's table.
 * A new mark's rule goes in before the old one goes out (running flows'
 * subflows are routed by their WAN's "from" rule, before it). */
static void mark_rule_set(struct linkmon *lm, uint32_t mark)
{
	if (lm->mark_rule && lm->mark == mark)
		return;
	int rc = route_rule_fwmark(true, AF_INET, mark, LINKMON_BEST_TABLE,
				   LINKMON_RULE_PRIO_MARK);
	if (rc < 0) {
		/* the old rule (if any) stays: better a stale mark than none */
		log_error("rule for the daemon's marked sockets: %s",
			  strerror(-rc));
		return;
	}
	if (lm->mark_rule)
		log_info("link monitor: upstream mark %#x, was %#x", mark,
			 lm->mark);
	mark_rule_del(lm);
	lm->mark_rule = true;
	lm->mark = mark;
}

/* One subflow per WAN, and an address from the peer for each. */
static void set_limits(struct linkmon *lm)
{
	if (!lm->pm)
		return;
	int rc = mptcp_pm_set_limits(lm->pm, (unsigned)lm->n, (unsigned)lm->n);
	if (rc < 0)
		log_warn("MPTCP limits: %s", strerror(-rc));
}

/* ---- API ----------------------------------------------------------------- */

struct linkmon *linkmon_start(struct ev_loop *loop, const struct upstream *ups,
			      const struct rtmon *rm)
{
	const struct config *cfg = ups->cfg;
	struct linkmon *lm = calloc(1, sizeof(*lm));
	if (!lm) {
		log_error("link monitor: out of memory");
		return NULL;
	}
	lm->loop = loop;
	lm->ups = ups;
	lm->rm = rm;
	lm->n = cfg->n_wans;
	int err = 0;
	lm->pm = mptcp_pm_open(&err);
	if (!lm->pm)
		log_warn("MPTCP path manager: %s: WAN endpoints not managed",
			 strerror(err));
	set_limits(lm);
	lm->target = probe_target(ups);
	warn_no_target(lm);
	mark_rule_set(lm, cfg->mark);
	/* (all of them first: evaluating one looks at the others) */
	for (size_t i = 0; i < lm->n; i++)
		lm->wans[i] = wan_new(lm, i);
	for (size_t i = 0; i < lm->n; i++) {
		wan_probe_start(lm->wans[i]);
		evaluate(lm->wans[i]);
	}
	return lm;
}

void linkmon_stop(struct linkmon *lm)
{
	if (!lm)
		return;
	for (size_t i = 0; i < lm->n; i++)
		wan_free(lm->wans[i]);
	route_default_del(LINKMON_BEST_TABLE);
	mark_rule_del(lm);
	mptcp_pm_close(lm->pm);
	free(lm);
}

/* The WANs of lm that are also in cfg go to next[] at their new index;
 * lm->wans[] keeps the others. */
static void match_wans(struct linkmon *lm, const struct config *cfg,
		       struct wan *next[CONFIG_MAX_WANS])
{
	for (size_t i = 0; i < cfg->n_wans; i++) {
		for (size_t j = 0; j < lm->n; j++) {
			struct wan *w = lm->wans[j];
			if (w && strcmp(w->cfg->interface,
					cfg->wans[i].interface) == 0) {
				next[i] = w;
				lm->wans[j] = NULL;
				break;
			}
		}
	}
}

/* (The old configuration, lm->ups->cfg, is valid during the call.) */
struct linkmon *linkmon_reload(struct linkmon *lm, struct ev_loop *loop,
			       const struct upstream *ups,
			       const struct rtmon *rm)
{
	const struct config *cfg = ups->cfg;

	if (!cfg->n_wans) {
		if (lm)
			log_info("link monitor: no WANs configured: stopping");
		linkmon_stop(lm);
		return NULL;
	}
	if (!lm)
		return linkmon_start(loop, ups, rm);

	const struct config *old = cfg_of(lm);
	union sockaddr_any old_target = lm->target;
	struct wan *next[CONFIG_MAX_WANS] = { NULL };

	match_wans(lm, cfg, next);
	for (size_t j = 0; j < lm->n; j++) {
		if (!lm->wans[j])
			continue;
		log_info("wan %s removed", lm->wans[j]->cfg->interface);
		wan_free(lm->wans[j]);
	}
	for (size_t i = 0; i < cfg->n_wans; i++)
		if (next[i])
			wan_reconfigure(next[i], &cfg->wans[i], (unsigned)i);
	/* the monitor's settings */
	lm->loop = loop;
	lm->rm = rm;
	lm->ups = ups;
	lm->target = probe_target(ups);
	if (!same_probes(old, cfg) || !addr_equal(&old_target, &lm->target))
		log_probes(lm);
	mark_rule_set(lm, cfg->mark);
	for (size_t i = 0; i < cfg->n_wans; i++) {
		if (next[i])
			continue;
		next[i] = wan_new(lm, i);
		log_info("wan %s added", cfg->wans[i].interface);
	}
	lm->n = cfg->n_wans;
	memcpy(lm->wans, next, sizeof(next));
	set_limits(lm);
	move_tables(lm);
	for (size_t i = 0; i < lm->n; i++) {
		wan_probe_start(lm->wans[i]);
		evaluate(lm->wans[i]);
	}
	update_best(lm);
	return lm;
}

/* ---- status ------------------------------------------------------------ */

size_t linkmon_count(const struct linkmon *lm)
{
	return lm ? lm->n : 0;
}

void linkmon_wan_status(const struct linkmon *lm, size_t i,
			struct linkmon_wan_status *out)
{
	memset(out, 0, sizeof(*out));
	if (!lm || i >= lm->n)
		return;
	const struct wan *w = lm->wans[i];
	out->interface = w->cfg->interface;
	out->backup = w->cfg->backup;
	out->up = w->up;
	out->best = w == lm->best;
	out->why = w->why;
	out->since = w->since;
	out->has_addr = w->has_addr;
	if (w->has_addr)
		out->addr = w->addr;
	out->has_gw = w->has_gw;
	if (w->has_gw)
		out->gw = w->gw;
	out->rtt_ms = w->rtt_ms;
	out->probes = w->probes;
	out->probes_lost = w->probes_lost;
	out->endpoint = w->endpoint;
	out->bytes_sent = w->bytes_sent;
	out->bytes_received = w->bytes_received;
}

static bool same_ip4(const union sockaddr_any *a, const union sockaddr_any *b)
{
	return a->sa.sa_family == AF_INET && b->sa.sa_family == AF_INET &&
	       a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
}

int linkmon_wan_of(const struct linkmon *lm, const union sockaddr_any *addr)
{
	if (!lm || !addr)
		return -1;
	union sockaddr_any a = *addr;
	addr_unmap(&a);
	for (size_t i = 0; i < lm->n; i++)
		if (lm->wans[i]->has_addr && same_ip4(&lm->wans[i]->addr, &a))
			return (int)i;
	/* (a subflow of an address the WAN has lost since) */
	for (size_t i = 0; i < lm->n; i++)
		if (same_ip4(&lm->wans[i]->routed_addr, &a))
			return (int)i;
	return -1;
}

void linkmon_account(struct linkmon *lm, int i, uint64_t sent,
		     uint64_t received)
{
	if (!lm || i < 0 || (size_t)i >= lm->n)
		return;
	lm->wans[i]->bytes_sent += sent;
	lm->wans[i]->bytes_received += received;
}
