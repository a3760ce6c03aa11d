// SPDX-License-Identifier: GPL-2.0-or-later
#include "origdst.h"

#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <string.h>

int origdst_get(int fd, union sockaddr_any *dst, union sockaddr_any *local,
		bool tproxy)
{
	socklen_t len = sizeof(*local);

	if (getsockname(fd, &local->sa, &len) < 0)
		return -errno;
	addr_unmap(local);
	if (tproxy) {
		*dst = *local;
		return 0;
	}
	memset(dst, 0, sizeof(*dst));
	if (local->sa.sa_family == AF_INET) {
		len = sizeof(dst->in4);
		if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst->in4, &len) < 0)
			return -errno;
	} else {
		len = sizeof(dst->in6);
		if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst->in6,
			       &len) < 0)
			return -errno;
	}
	addr_unmap(dst);
	return 0;
}
