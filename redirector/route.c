// SPDX-License-Identifier: GPL-2.0-or-later
#include "route.h"

#include <errno.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "nl.h"

/* Priority of the tproxy rules: before the main table (32766). */
#define TPROXY_RULE_PRIORITY 100

/* Room for one rule or route message. */
#define ROUTE_MSG_SIZE 512

/* One request on a socket of its own (route changes are rare). */
static int talk(struct nlmsghdr *nlh)
{
	struct mnl_socket *nl = nl_open(NETLINK_ROUTE, 0, false);
	if (!nl)
		return -errno;
	int rc = nl_talk(nl, nlh, NULL, NULL);
	mnl_socket_close(nl);
	return rc;
}

static struct nlmsghdr *rule_msg(char *buf, bool add, int family,
				 const union sockaddr_any *from, uint32_t mark,
				 uint32_t table, uint32_t prio)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK |
			   (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
	struct fib_rule_hdr *frh = mnl_nlmsg_put_extra_header(nlh, sizeof(*frh));
	frh->family = family;
	frh->action = FR_ACT_TO_TBL;
	frh->table = table < 256 ? table : RT_TABLE_UNSPEC;
	mnl_attr_put_u32(nlh, FRA_TABLE, table);
	if (from) {
		bool v4 = family == AF_INET;
		frh->src_len = v4 ? 32 : 128;
		mnl_attr_put(nlh, FRA_SRC, v4 ? 4 : 16,
			     v4 ? (const void *)&from->in4.sin_addr
				: (const void *)&from->in6.sin6_addr);
	} else {
		mnl_attr_put_u32(nlh, FRA_FWMARK, mark);
	}
	mnl_attr_put_u32(nlh, FRA_PRIORITY, prio);
	mnl_attr_put_u8(nlh, FRA_PROTOCOL, RTPROT_MPREDIR);
	return nlh;
}

/* A default route in `table`: RTN_LOCAL via lo (tproxy), or unicast via
 * gw (if any) on ifindex. */
static struct nlmsghdr *default_msg(char *buf, bool add, int family,
				    uint32_t table, bool local,
				    const union sockaddr_any *gw, int ifindex)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK |
			   (add ? NLM_F_CREATE | NLM_F_REPLACE : 0);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = family;
	rtm->rtm_dst_len = 0; /* default */
	rtm->rtm_table = table < 256 ? table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = RTPROT_MPREDIR;
	/* a delete matches any scope only with RT_SCOPE_NOWHERE (as ip does);
	 * the protocol makes it match only our routes */
	rtm->rtm_scope = !add ? RT_SCOPE_NOWHERE
			 : local ? RT_SCOPE_HOST
			 : gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	rtm->rtm_type = local ? RTN_LOCAL : RTN_UNICAST;
	mnl_attr_put_u32(nlh, RTA_TABLE, table);
	if (gw)
		mnl_attr_put(nlh, RTA_GATEWAY, 4, &gw->in4.sin_addr);
	if (ifindex > 0)
		mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)ifindex);
	return nlh;
}

int route_default_set(uint32_t table, const union sockaddr_any *gw,
		      int ifindex)
{
	char buf[ROUTE_MSG_SIZE] = { 0 }; /* libmnl leaves padding as it was */
	return talk(default_msg(buf, true, AF_INET, table, false, gw, ifindex));
}

void route_default_del(uint32_t table)
{
	char buf[ROUTE_MSG_SIZE] = { 0 }; /* libmnl leaves padding as it was */
	int rc = talk(default_msg(buf, false, AF_INET, table, false, NULL, 0));
	if (rc < 0 && rc != -ESRCH && rc != -ENOENT)
		log_warn("removing the default route of table %u: %s", table,
			 strerror(-rc));
}

int route_rule_from(bool add, const union sockaddr_any *src, uint32_t table,
		    uint32_t prio)
{
	char buf[ROUTE_MSG_SIZE] = { 0 }; /* libmnl leaves padding as it was */
	int rc = talk(rule_msg(buf, add, src->sa.sa_family, src, 0, table,
			       prio));
	return rc == (add ? -EEXIST : -ENOENT) ? 0 : rc;
}

int route_rule_fwmark(bool add, int family, uint32_t mark, uint32_t table,
		      uint32_t prio)
{
	char buf[ROUTE_MSG_SIZE] = { 0 }; /* libmnl leaves padding as it was */
	int rc = talk(rule_msg(buf, add, family, NULL, mark, table, prio));
	return rc == (add ? -EEXIST : -ENOENT) ? 0 : rc;
}

int route_tproxy_add(uint32_t mark, uint32_t table, const char **what)
{
	static const int families[] = { AF_INET, AF_INET6 };
	char buf[ROUTE_MSG_SIZE] = { 0 }; /* libmnl leaves padding as it was */
	int lo = (int)if_nametoindex("lo");

	for (size_t i = 0; i < 2; i++) {
		int fam = families[i];
		int rc = talk(default_msg(buf, true, fam, table, true, NULL, lo));
		if (rc < 0) {
			*what = fam == AF_INET ? "local route (IPv4)"
					       : "local route (IPv6)";
			return rc;
		}
		rc = route_rule_fwmark(true, fam, mark, table,
				       TPROXY_RULE_PRIORITY);
		if (rc < 0) {
			*what = fam == AF_INET ? "fwmark rule (IPv4)"
					       : "fwmark rule (IPv6)";
			return rc;
		}
	}
	return 0;
}

void route_tproxy_del(uint32_t mark, uint32_t table)
{
	static const int families[] = { AF_INET, AF_INET6 };
	char buf[ROUTE_MSG_SIZE] = { 0 }; /* libmnl leaves padding as it was */
	int lo = (int)if_nametoindex("lo");

	for (size_t i = 0; i < 2; i++) {
		int rc = route_rule_fwmark(false, families[i], mark, table,
					   TPROXY_RULE_PRIORITY);
		if (rc < 0)
			log_warn("removing the tproxy rule: %s", strerror(-rc));
		rc = talk(default_msg(buf, false, families[i], table, true,
				      NULL, lo));
		if (rc < 0 && rc != -ESRCH && rc != -ENOENT)
			log_warn("removing the tproxy route: %s", strerror(-rc));
	}
}
