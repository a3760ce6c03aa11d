// SPDX-License-Identifier: GPL-2.0-or-later
/* capture_nl: real netlink replies and events, written to files as seeds
 * for the fuzz targets (test/fuzz/README.md). Needs root; run it inside a
 * throwaway network namespace, as test/fuzz/capture-seeds.sh does.
 *
 *   capture_nl links|addrs|routes FILE   the rtnetlink dump reply
 *   capture_nl events PREFIX SECONDS     rtnetlink events (links, IPv4 and
 *                                        IPv6 addresses, IPv4 routes): each
 *                                        buffer received to PREFIX.N
 *   capture_nl mptcp-family FILE         the CTRL_CMD_GETFAMILY reply for
 *                                        "mptcp_pm" (and its ack)
 *   capture_nl mptcp-endpoints FILE      the MPTCP_PM_CMD_GET_ADDR dump reply
 *
 * A file holds the bytes exactly as the kernel sent them: the buffers of
 * one request back to back, NLMSG_DONE or the ack included. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/mptcp.h>
#include <linux/rtnetlink.h>

static char buf[32768];

static void die(const char *what)
{
	fprintf(stderr, "capture_nl: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct mnl_socket *open_bus(int bus, unsigned groups)
{
	struct mnl_socket *nl = mnl_socket_open(bus);
	if (!nl || mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) < 0)
		die("netlink socket");
	return nl;
}

/* Whether buf[0..n) ends the reply: NLMSG_DONE or NLMSG_ERROR (ack). */
static int ends_reply(const char *b, int n)
{
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)b;
	for (; mnl_nlmsg_ok(nlh, n); nlh = mnl_nlmsg_next(nlh, &n))
		if (nlh->nlmsg_type == NLMSG_DONE ||
		    nlh->nlmsg_type == NLMSG_ERROR)
			return 1;
	return 0;
}

/* Send nlh, write every reply buffer to f (if any) until the reply ends;
 * the first buffer is also left in buf. */
static void talk(struct mnl_socket *nl, struct nlmsghdr *nlh, FILE *f)
{
	static char first[sizeof(buf)];
	int first_len = -1;

	nlh->nlmsg_seq = (unsigned)time(NULL);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		die("send");
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			die("recv");
		if (f && fwrite(buf, 1, (size_t)n, f) != (size_t)n)
			die("write");
		if (first_len < 0) {
			memcpy(first, buf, (size_t)n);
			first_len = (int)n;
		}
		if (ends_reply(buf, (int)n))
			break;
	}
	memcpy(buf, first, (size_t)first_len);
}

static FILE *out(const char *path)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		die(path);
	return f;
}

static void rt_dump(uint16_t type, uint8_t family, const char *path)
{
	struct mnl_socket *nl = open_bus(NETLINK_ROUTE, 0);
	char req[256] = { 0 };
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = family;
	FILE *f = out(path);
	talk(nl, nlh, f);
	fclose(f);
	mnl_socket_close(nl);
}

static void events(const char *prefix, int seconds)
{
	struct mnl_socket *nl = open_bus(NETLINK_ROUTE, RTMGRP_LINK |
					 RTMGRP_IPV4_IFADDR |
					 RTMGRP_IPV6_IFADDR |
					 RTMGRP_IPV4_ROUTE);
	struct pollfd p = { .fd = mnl_socket_get_fd(nl), .events = POLLIN };
	time_t end = time(NULL) + seconds;
	int k = 0;

	/* Tell the caller we listen (it makes its changes then). */
	printf("listening\n");
	fflush(stdout);
	while (time(NULL) < end) {
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			die("recv");
		char path[4096];
		snprintf(path, sizeof(path), "%s.%d", prefix, k++);
		FILE *f = out(path);
		if (fwrite(buf, 1, (size_t)n, f) != (size_t)n)
			die("write");
		fclose(f);
	}
	mnl_socket_close(nl);
}

static struct nlmsghdr *genl_req(char *req, uint16_t type, uint16_t flags,
				 uint8_t cmd, uint8_t version)
{
	memset(req, 0, 256);
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	struct genlmsghdr *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

static int family_attr_cb(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID &&
	    mnl_attr_validate(a, MNL_TYPE_U16) == 0)
		*(uint16_t *)data = mnl_attr_get_u16(a);
	return MNL_CB_OK;
}

/* The "mptcp_pm" family id; the reply written to f if any. */
static uint16_t mptcp_family(struct mnl_socket *nl, FILE *f)
{
	char req[256];
	uint16_t id = 0;
	struct nlmsghdr *nlh = genl_req(req, GENL_ID_CTRL, NLM_F_ACK,
					CTRL_CMD_GETFAMILY, 1);
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, MPTCP_PM_NAME);
	talk(nl, nlh, f);
	const struct nlmsghdr *r = (const struct nlmsghdr *)buf;
	if (r->nlmsg_type == GENL_ID_CTRL)
		mnl_attr_parse(r, sizeof(struct genlmsghdr), family_attr_cb, &id);
	if (!id) {
		fprintf(stderr, "capture_nl: no mptcp_pm family\n");
		exit(1);
	}
	return id;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "links")) {
		rt_dump(RTM_GETLINK, AF_UNSPEC, argv[2]);
	} else if (argc >= 3 && !strcmp(argv[1], "addrs")) {
		rt_dump(RTM_GETADDR, AF_UNSPEC, argv[2]);
	} else if (argc >= 3 && !strcmp(argv[1], "routes")) {
		rt_dump(RTM_GETROUTE, AF_INET, argv[2]);
	} else if (argc >= 4 && !strcmp(argv[1], "events")) {
		events(argv[2], atoi(argv[3]));
	} else if (argc >= 3 && !strcmp(argv[1], "mptcp-family")) {
		struct mnl_socket *nl = open_bus(NETLINK_GENERIC, 0);
		FILE *f = out(argv[2]);
		mptcp_family(nl, f);
		fclose(f);
		mnl_socket_close(nl);
	} else if (argc >= 3 && !strcmp(argv[1], "mptcp-endpoints")) {
		struct mnl_socket *nl = open_bus(NETLINK_GENERIC, 0);
		uint16_t fam = mptcp_family(nl, NULL);
		char req[256];
		FILE *f = out(argv[2]);
		talk(nl, genl_req(req, fam, NLM_F_DUMP, MPTCP_PM_CMD_GET_ADDR,
				  MPTCP_PM_VER), f);
		fclose(f);
		mnl_socket_close(nl);
	} else {
		fprintf(stderr, "usage: capture_nl links|addrs|routes|"
			"mptcp-family|mptcp-endpoints FILE\n"
			"       capture_nl events PREFIX SECONDS\n");
		return 2;
	}
	return 0;
}
