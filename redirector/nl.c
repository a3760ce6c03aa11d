// SPDX-License-Identifier: GPL-2.0-or-later
#include "nl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <time.h>

static uint32_t nl_seq;

struct mnl_socket *nl_open(int bus, unsigned groups, bool nonblock)
{
	struct mnl_socket *nl = mnl_socket_open2(bus, SOCK_CLOEXEC |
					     (nonblock ? SOCK_NONBLOCK : 0));
	if (!nl)
		return NULL;
	if (mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) < 0) {
		int err = errno;
		mnl_socket_close(nl);
		errno = err;
		return NULL;
	}
	return nl;
}

int nl_talk(struct mnl_socket *nl, struct nlmsghdr *nlh, mnl_cb_t cb,
	    void *data)
{
	char buf[NL_BUF_SIZE];
	unsigned portid = mnl_socket_get_portid(nl);

	if (!nl_seq)
		nl_seq = (uint32_t)time(NULL);
	nlh->nlmsg_seq = ++nl_seq;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		int rc = nl_run(buf, (size_t)n, nlh->nlmsg_seq, portid, cb, data);
		if (rc < 0)
			return -errno;
		if (rc == MNL_CB_STOP)
			return 0;
	}
}

bool nl_msg_ok(const struct nlmsghdr *nlh, int len)
{
	return len >= (int)sizeof(*nlh) && nlh->nlmsg_len >= sizeof(*nlh) &&
	       nlh->nlmsg_len <= (unsigned)len &&
	       MNL_ALIGN(nlh->nlmsg_len) <= (unsigned)len;
}

bool nl_buf_ok(const void *buf, size_t len)
{
	const struct nlmsghdr *nlh = buf;
	int n = len > INT_MAX ? INT_MAX : (int)len;

	while (nl_msg_ok(nlh, n))
		nlh = mnl_nlmsg_next(nlh, &n);
	/* We stop here: libmnl must too (mnl_nlmsg_ok). */
	return n < (int)sizeof(*nlh) || nlh->nlmsg_len < sizeof(*nlh) ||
	       (nlh->nlmsg_len > (unsigned)n && nlh->nlmsg_len <= INT_MAX);
}

int nl_run(const void *buf, size_t len, uint32_t seq, unsigned portid,
	   mnl_cb_t cb, void *data)
{
	if (!nl_buf_ok(buf, len)) {
		errno = EBADMSG;
		return MNL_CB_ERROR;
	}
	return mnl_cb_run(buf, len, seq, portid, cb, data);
}
