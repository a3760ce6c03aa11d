// SPDX-License-Identifier: GPL-2.0-or-later
#include "nl.h"

#include <errno.h>
#include <fcntl.h>
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
		int rc = mnl_cb_run(buf, n, nlh->nlmsg_seq, portid, cb, data);
		if (rc < 0)
			return -errno;
		if (rc == MNL_CB_STOP)
			return 0;
	}
}
