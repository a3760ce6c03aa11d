// SPDX-License-Identifier: GPL-2.0-or-later
#include "capture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fw.h"
#include "log.h"
#include "route.h"

/* Reserved, private and special-purpose destinations: never captured
 * (RFC 6890 and friends). Not listed: the benchmarking ranges
 * 198.18.0.0/15 and 2001:2::/48, unroutable on the Internet too; the
 * tests use them as "Internet" destinations. */
static const char *const reserved[] = {
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
	"169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
	"192.168.0.0/16", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
	"240.0.0.0/4",
	"::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "100::/64",
	"2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
};
#define N_RESERVED (sizeof(reserved) / sizeof(reserved[0]))

struct capture {
	struct fw *fw;
	const struct upstream *ups; /* its cfg is the configuration in force */
	const struct rtmon *ia;
	bool routes;               /* tproxy rules/routes installed */
	uint32_t route_mark, route_table;
};

/* Everything that is never captured, for the current inputs. The caller
 * frees the array. */
static struct addr_prefix *bypass_list(const struct capture *c, size_t *n)
{
	size_t n_ifaddrs;
	const struct rtmon_addr *ifa = rtmon_addrs(c->ia, &n_ifaddrs);
	const struct config *cfg = c->ups->cfg;
	size_t cap = N_RESERVED + c->ups->n + n_ifaddrs + cfg->n_fw_bypass;
	struct addr_prefix *l = calloc(cap, sizeof(*l));
	size_t k = 0;

	if (!l)
		return NULL;
	for (size_t i = 0; i < N_RESERVED; i++)
		if (addr_prefix_parse(reserved[i], &l[k]) == 0)
			k++;
	/* the servers: their traffic must never loop back into the daemon */
	for (size_t i = 0; i < c->ups->n; i++) {
		const struct upstream_server *s = &c->ups->servers[i];
		if (!s->resolved)
			continue;
		struct addr_prefix *p = &l[k++];
		p->family = s->addr.sa.sa_family;
		if (p->family == AF_INET) {
			memcpy(p->addr, &s->addr.in4.sin_addr, 4);
			p->len = 32;
		} else {
			memcpy(p->addr, &s->addr.in6.sin6_addr, 16);
			p->len = 128;
		}
	}
	/* the router's own subnets (its addresses are in them) */
	for (size_t i = 0; i < n_ifaddrs; i++) {
		struct addr_prefix *p = &l[k++];
		*p = ifa[i].prefix;
		addr_prefix_mask(p);
	}
	for (size_t i = 0; i < cfg->n_fw_bypass; i++)
		l[k++] = cfg->fw_bypass[i];
	*n = k;
	return l;
}

/* Why the table is being brought in line, for the log. */
enum capture_why { CAPTURE_START, CAPTURE_RELOAD, CAPTURE_ADDRESSES };

static void log_applied(const struct capture *c, enum capture_why why,
			unsigned diff, const struct fw_spec *spec)
{
	char what[128];

	fw_diff_str(diff, what, sizeof(what));
	if (diff & FW_DIFF_REBUILD) {
		bool start = why == CAPTURE_START;
		log_info("nftables: table inet %s %s%s%s (%s mode, %zu bypass "
			 "prefixes%s)", FW_TABLE, start ? "installed" : "rebuilt",
			 start ? "" : diff & FW_DIFF_NO_TABLE ? ", " : ", changed: ",
			 start ? "" : what,
			 spec->mode == FW_TPROXY ? "tproxy" : "redirect",
			 spec->n_bypass, fw_has_owner(c->fw)
			 ? ", owned by the daemon"
			 : "; this kernel has no table owner flag: the table "
			   "stays if the daemon dies");
	} else if (diff && why == CAPTURE_ADDRESSES) {
		/* follows the router's addresses: routine */
		log_debug("nftables: sets updated: %s (%zu bypass prefixes)",
			  what, spec->n_bypass);
	} else if (diff) {
		log_info("nftables: sets updated: %s", what);
	} else {
		log_debug("nftables: table inet %s unchanged", FW_TABLE);
	}
}

/* Bring the table in line with the current inputs (fw_update: only the
 * sets that differ, unless the chains do). 0, or -1 after logging. */
static int apply(struct capture *c, enum capture_why why)
{
	const struct config *cfg = c->ups->cfg;
	char err[256] = "";
	unsigned diff = 0;
	size_t n;
	struct addr_prefix *bypass = bypass_list(c, &n);

	if (!bypass) {
		log_error("nftables: out of memory");
		return -1;
	}
	struct fw_spec spec = {
		.mode = cfg->fw_mode == CONFIG_FW_TPROXY ? FW_TPROXY : FW_REDIRECT,
		.lan_ifaces = (const char *const *)cfg->fw_lan_ifaces,
		.n_lan_ifaces = cfg->n_fw_lan_ifaces,
		.port = cfg->listen_port,
		.mark = cfg->mark,
		.tproxy_mark = cfg->fw_tproxy_mark,
		.router_traffic = cfg->fw_router_traffic,
		.block_quic = cfg->fw_block_quic,
		.bypass_ports = cfg->fw_bypass_ports,
		.n_bypass_ports = cfg->n_fw_bypass_ports,
		.bypass = bypass,
		.n_bypass = n,
	};
	int rc = fw_update(c->fw, &spec, &diff, err, sizeof(err));
	if (rc == 0)
		log_applied(c, why, diff, &spec);
	free(bypass);
	if (rc < 0) {
		log_error("%s", err[0] ? err : strerror(-rc));
		return -1;
	}
	return 0;
}

static int set_routes(struct capture *c)
{
	const struct config *cfg = c->ups->cfg;
	bool want = cfg->fw_mode == CONFIG_FW_TPROXY;

	if (c->routes && (!want || c->route_mark != cfg->fw_tproxy_mark ||
			  c->route_table != cfg->fw_tproxy_table)) {
		route_tproxy_del(c->route_mark, c->route_table);
		c->routes = false;
	}
	if (!want || c->routes)
		return 0;
	const char *what = "";
	int rc = route_tproxy_add(cfg->fw_tproxy_mark, cfg->fw_tproxy_table,
				  &what);
	if (rc < 0) {
		log_error("tproxy routing: %s: %s", what, strerror(-rc));
		return -1;
	}
	c->routes = true;
	c->route_mark = cfg->fw_tproxy_mark;
	c->route_table = cfg->fw_tproxy_table;
	return 0;
}

struct capture *capture_start(struct ev_loop *loop, const struct upstream *ups,
			      const struct rtmon *ia)
{
	struct capture *c = calloc(1, sizeof(*c));
	int err = ENOMEM;

	if (!c || !(c->fw = fw_open(loop, &err))) {
		log_error("nftables: %s", strerror(err));
		free(c);
		return NULL;
	}
	c->ups = ups;
	c->ia = ia;
	if (set_routes(c) < 0 || apply(c, CAPTURE_START) < 0) {
		capture_stop(c);
		return NULL;
	}
	return c;
}

int capture_reload(struct capture *c, const struct upstream *ups)
{
	const struct upstream *old = c->ups;

	c->ups = ups;
	if (set_routes(c) < 0 || apply(c, CAPTURE_RELOAD) < 0) {
		c->ups = old;
		set_routes(c);
		return -1;
	}
	return 0;
}

void capture_addresses_changed(struct capture *c)
{
	apply(c, CAPTURE_ADDRESSES);
}

void capture_stop(struct capture *c)
{
	if (!c)
		return;
	fw_close(c->fw);
	if (c->routes)
		route_tproxy_del(c->route_mark, c->route_table);
	free(c);
}
