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

static struct nlmsghdr *rule_msg(char *buf, uint16_t type, uint16_t flags,
				 int family, uint32_t mark, uint32_t table)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	struct fib_rule_hdr *frh = mnl_nlmsg_put_extra_header(nlh, sizeof(*frh));
	frh->family = family;
	frh->action = FR_ACT_TO_TBL;
	frh->table = table < 256 ? table : RT_TABLE_UNSPEC;
	mnl_attr_put_u32(nlh, FRA_TABLE, table);
	mnl_attr_put_u32(nlh, FRA_FWMARK, mark);
	mnl_attr_put_u32(nlh, FRA_PRIORITY, TPROXY_RULE_PRIORITY);
	mnl_attr_put_u8(nlh, FRA_PROTOCOL, RTPROT_MPREDIR);
	return nlh;
}

static struct nlmsghdr *local_route_msg(char *buf, uint16_t type,
					uint16_t flags, int family,
					uint32_t table, unsigned lo)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = family;
	rtm->rtm_dst_len = 0; /* default */
	rtm->rtm_table = table < 256 ? table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = RTPROT_MPREDIR;
	rtm->rtm_scope = RT_SCOPE_HOST;
	rtm->rtm_type = RTN_LOCAL;
	mnl_attr_put_u32(nlh, RTA_TABLE, table);
	mnl_attr_put_u32(nlh, RTA_OIF, lo);
	return nlh;
}

int route_tproxy_add(uint32_t mark, uint32_t table, const char **what)
{
	static const int families[] = { AF_INET, AF_INET6 };
	char buf[MNL_SOCKET_BUFFER_SIZE];
	unsigned lo = if_nametoindex("lo");
	int rc = 0;

	struct mnl_socket *nl = nl_open(NETLINK_ROUTE, 0, false);
	if (!nl) {
		*what = "netlink socket";
		return -errno;
	}
	for (size_t i = 0; i < 2 && rc == 0; i++) {
		int fam = families[i];
		rc = nl_talk(nl, local_route_msg(buf, RTM_NEWROUTE,
						 NLM_F_CREATE | NLM_F_REPLACE,
						 fam, table, lo), NULL, NULL);
		if (rc < 0) {
			*what = fam == AF_INET ? "local route (IPv4)"
					       : "local route (IPv6)";
			break;
		}
		/* A rule that exists already (an earlier run) is fine. */
		rc = nl_talk(nl, rule_msg(buf, RTM_NEWRULE,
					  NLM_F_CREATE | NLM_F_EXCL, fam, mark,
					  table), NULL, NULL);
		if (rc == -EEXIST)
			rc = 0;
		if (rc < 0)
			*what = fam == AF_INET ? "fwmark rule (IPv4)"
					       : "fwmark rule (IPv6)";
	}
	mnl_socket_close(nl);
	return rc;
}

void route_tproxy_del(uint32_t mark, uint32_t table)
{
	static const int families[] = { AF_INET, AF_INET6 };
	char buf[MNL_SOCKET_BUFFER_SIZE];
	unsigned lo = if_nametoindex("lo");

	struct mnl_socket *nl = nl_open(NETLINK_ROUTE, 0, false);
	if (!nl)
		return;
	for (size_t i = 0; i < 2; i++) {
		int rc = nl_talk(nl, rule_msg(buf, RTM_DELRULE, 0, families[i],
					      mark, table), NULL, NULL);
		if (rc < 0 && rc != -ENOENT)
			log_warn("removing the tproxy rule: %s", strerror(-rc));
		rc = nl_talk(nl, local_route_msg(buf, RTM_DELROUTE, 0,
						 families[i], table, lo),
			     NULL, NULL);
		if (rc < 0 && rc != -ESRCH && rc != -ENOENT)
			log_warn("removing the tproxy route: %s", strerror(-rc));
	}
	mnl_socket_close(nl);
}
