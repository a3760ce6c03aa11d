// SPDX-License-Identifier: GPL-2.0-or-later
#include "paths.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/mptcp.h>
#include <linux/tcp.h>

#ifndef SOL_MPTCP
#define SOL_MPTCP 284
#endif
#ifndef MPTCP_INFO_FLAG_FALLBACK
#define MPTCP_INFO_FLAG_FALLBACK 1u
#endif

/* struct mptcp_info as Linux 6.10+ lays it out. The build headers may be
 * older than the kernel we run on (Debian 12's stop at csum_enabled), so
 * the whole layout is here. The kernel only appends to it, copies
 * min(our size, its size) and says how much in optlen: 48 bytes on 6.1,
 * 80 from 6.5 (retransmits, bytes_*), 96 from 6.10. */
struct paths_mptcp_info {
	uint8_t subflows;
	uint8_t add_addr_signal;
	uint8_t add_addr_accepted;
	uint8_t subflows_max;
	uint8_t add_addr_signal_max;
	uint8_t add_addr_accepted_max;
	uint32_t flags;
	uint32_t token;
	uint64_t write_seq;
	uint64_t snd_una;
	uint64_t rcv_nxt;
	uint8_t local_addr_used;
	uint8_t local_addr_max;
	uint8_t csum_enabled;
	uint32_t retransmits;		/* 6.5 */
	uint64_t bytes_retrans;		/* 6.5 */
	uint64_t bytes_sent;		/* 6.5 */
	uint64_t bytes_received;	/* 6.5 */
	uint64_t bytes_acked;		/* 6.5 */
	uint8_t subflows_total;		/* 6.10 */
	uint8_t reserved[3];
	uint32_t last_data_sent;	/* 6.10 */
	uint32_t last_data_recv;	/* 6.10 */
	uint32_t last_ack_recv;		/* 6.10 */
};

/* The fields the build headers know must sit where they say; the newer
 * ones where the kernel's uapi puts them (the same on every ABI: each
 * field is naturally aligned). */
#define SAME_AS_UAPI(f) \
	_Static_assert(offsetof(struct paths_mptcp_info, f) == \
		       offsetof(struct mptcp_info, mptcpi_##f), #f)
SAME_AS_UAPI(flags);
SAME_AS_UAPI(write_seq);
SAME_AS_UAPI(local_addr_used);
SAME_AS_UAPI(local_addr_max);
SAME_AS_UAPI(csum_enabled);
_Static_assert(offsetof(struct paths_mptcp_info, retransmits) == 44, "");
_Static_assert(offsetof(struct paths_mptcp_info, bytes_retrans) == 48, "");
_Static_assert(offsetof(struct paths_mptcp_info, bytes_acked) == 72, "");
_Static_assert(offsetof(struct paths_mptcp_info, subflows_total) == 80, "");
_Static_assert(sizeof(struct paths_mptcp_info) == 96, "");

/* Whether the first len bytes hold all of type's field. */
#define COVERS(len, type, field) \
	((size_t)(len) >= offsetof(type, field) + sizeof(((type *)0)->field))

/* A failed SOL_MPTCP request on an MPTCP socket means it fell back: the
 * kernel then hands every getsockopt() to the one TCP subflow, whose IPv4
 * code refuses the level with EOPNOTSUPP and IPv6 code with ENOPROTOOPT. */
static bool fell_back(int err)
{
	return err == -EOPNOTSUPP || err == -ENOPROTOOPT;
}

/* An address the kernel wrote; only IPv4 and IPv6 are kept, anything
 * else is AF_UNSPEC. */
static void take_addr(union sockaddr_any *to, const struct sockaddr *from)
{
	memset(to, 0, sizeof(*to));
	if (from->sa_family == AF_INET)
		memcpy(&to->in4, from, sizeof(to->in4));
	else if (from->sa_family == AF_INET6)
		memcpy(&to->in6, from, sizeof(to->in6));
}

/* Counters the kernel did not fill (an older, shorter tcp_info) stay 0. */
static void take_tcp_info(struct paths_subflow *s, const void *raw,
			  size_t len)
{
	struct tcp_info ti;

	memset(&ti, 0, sizeof(ti));
	memcpy(&ti, raw, len < sizeof(ti) ? len : sizeof(ti));
	s->state = ti.tcpi_state;
	s->rtt_us = ti.tcpi_rtt;
	s->snd_cwnd = ti.tcpi_snd_cwnd;
	s->total_retrans = ti.tcpi_total_retrans;
	s->bytes_sent = ti.tcpi_bytes_sent;
	s->bytes_received = ti.tcpi_bytes_received;
	s->bytes_acked = ti.tcpi_bytes_acked;
}

/* ---------------------------------------------------------------- */
/* TCP, and MPTCP fallen back to it                                  */

/* The one path of a TCP socket. A closed or unconnected socket has no
 * peer (ENOTCONN): its counters are still worth having. */
static int read_tcp(int fd, struct paths_info *info, struct paths_subflow *sf,
		    size_t max)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -errno;
	info->n_subflows = 1;
	if (max == 0)
		return 0;
	memset(sf, 0, sizeof(*sf));
	take_tcp_info(sf, &ti, len);
	len = sizeof(sf->local);
	if (getsockname(fd, &sf->local.sa, &len) < 0)
		return -errno;
	len = sizeof(sf->remote);
	if (getpeername(fd, &sf->remote.sa, &len) < 0) {
		if (errno != ENOTCONN)
			return -errno;
		memset(&sf->remote, 0, sizeof(sf->remote));
	}
	return 1;
}

/* ---------------------------------------------------------------- */
/* MPTCP                                                             */

/* The connection level. A fallback the kernel flags here (rather than
 * by refusing the request) is reported as such; its subflows are still
 * read the MPTCP way. */
static int read_conn(int fd, struct paths_info *info)
{
	struct paths_mptcp_info mi;
	socklen_t len = sizeof(mi);

	memset(&mi, 0, sizeof(mi));
	if (getsockopt(fd, SOL_MPTCP, MPTCP_INFO, &mi, &len) < 0)
		return -errno;
	if (mi.flags & MPTCP_INFO_FLAG_FALLBACK)
		info->kind = PATHS_FALLBACK;
	info->local_addr_used = mi.local_addr_used;
	info->local_addr_max = mi.local_addr_max;
	if (COVERS(len, struct paths_mptcp_info, bytes_acked)) {
		info->bytes_known = true;
		info->bytes_sent = mi.bytes_sent;
		info->bytes_received = mi.bytes_received;
		info->bytes_retrans = mi.bytes_retrans;
		info->bytes_acked = mi.bytes_acked;
	}
	return 0;
}

#define SF_ENTRY_MAX                                                   \
	(sizeof(struct tcp_info) > sizeof(struct mptcp_subflow_addrs)  \
		 ? sizeof(struct tcp_info)                             \
		 : sizeof(struct mptcp_subflow_addrs))

/* An answer to MPTCP_TCPINFO or MPTCP_SUBFLOW_ADDRS: a header, then one
 * entry per subflow. */
union sf_buf {
	struct mptcp_subflow_data hdr;
	unsigned char bytes[sizeof(struct mptcp_subflow_data) +
			    PATHS_MAX_SUBFLOWS * SF_ENTRY_MAX];
};

/* One request for up to `want` entries of our size `elem`. Returns the
 * kernel's subflow count (which may exceed want), or -errno; *stored:
 * the entries copied; *stride: each one's size, the smaller of ours and
 * the kernel's. */
static int sf_get(int fd, int optname, union sf_buf *b, size_t elem,
		  size_t want, size_t *stored, size_t *stride)
{
	socklen_t len = (socklen_t)(sizeof(b->hdr) + want * elem);

	memset(&b->hdr, 0, sizeof(b->hdr));
	b->hdr.size_subflow_data = sizeof(b->hdr);
	b->hdr.size_user = (uint32_t)elem;
	if (getsockopt(fd, SOL_MPTCP, optname, b, &len) < 0)
		return -errno;
	if (len < sizeof(b->hdr) || b->hdr.size_user == 0 ||
	    b->hdr.size_user > elem || b->hdr.num_subflows > 0xffff)
		return -EPROTO;
	*stride = b->hdr.size_user;
	*stored = (len - sizeof(b->hdr)) / *stride;
	if (*stored > want || *stored > b->hdr.num_subflows)
		return -EPROTO;
	return (int)b->hdr.num_subflows;
}

static const unsigned char *sf_entry(const union sf_buf *b, size_t i,
				     size_t stride)
{
	return b->bytes + sizeof(b->hdr) + i * stride;
}

struct sf_addrs {
	union sockaddr_any local, remote;
};

/* Each subflow's addresses; the kernel's count, or -errno. */
static int read_addrs(int fd, union sf_buf *b, struct sf_addrs *out,
		      size_t want, size_t *stored)
{
	struct mptcp_subflow_addrs a;
	size_t stride;
	int n = sf_get(fd, MPTCP_SUBFLOW_ADDRS, b, sizeof(a), want, stored,
		       &stride);

	for (size_t i = 0; n >= 0 && i < *stored; i++) {
		memset(&a, 0, sizeof(a));
		memcpy(&a, sf_entry(b, i, stride), stride);
		take_addr(&out[i].local, &a.sa_local);
		take_addr(&out[i].remote, &a.sa_remote);
	}
	return n;
}

/* Each subflow's TCP counters into sf; the kernel's count, or -errno. */
static int read_tcpinfo(int fd, union sf_buf *b, struct paths_subflow *sf,
			size_t want, size_t *stored)
{
	size_t stride;
	int n = sf_get(fd, MPTCP_TCPINFO, b, sizeof(struct tcp_info), want,
		       stored, &stride);

	for (size_t i = 0; n >= 0 && i < *stored; i++)
		take_tcp_info(&sf[i], sf_entry(b, i, stride), stride);
	return n;
}

/* Addresses and counters come from two requests over the same list of
 * subflows, so entries match by position — if the list did not change
 * in between. Reading the addresses before and after the counters shows
 * that it did not (a new subflow has a new port); if it did, once more. */
static int read_subflows(int fd, struct paths_info *info,
			 struct paths_subflow *sf, size_t max)
{
	size_t want = max < PATHS_MAX_SUBFLOWS ? max : PATHS_MAX_SUBFLOWS;
	struct sf_addrs before[PATHS_MAX_SUBFLOWS], after[PATHS_MAX_SUBFLOWS];
	size_t n_before, n_info, n_after;
	union sf_buf b;

	for (int attempt = 0; attempt < 2; attempt++) {
		int n = read_addrs(fd, &b, before, want, &n_before);
		if (n < 0)
			return n;
		int n2 = read_tcpinfo(fd, &b, sf, want, &n_info);
		if (n2 < 0)
			return n2;
		int n3 = read_addrs(fd, &b, after, want, &n_after);
		if (n3 < 0)
			return n3;
		if (n != n2 || n != n3 || n_before != n_info ||
		    n_before != n_after ||
		    memcmp(before, after, n_before * sizeof(before[0])))
			continue;
		for (size_t i = 0; i < n_before; i++) {
			sf[i].local = before[i].local;
			sf[i].remote = before[i].remote;
		}
		info->n_subflows = (unsigned)n;
		return (int)n_before;
	}
	return -EAGAIN;
}

static int read_mptcp(int fd, struct paths_info *info,
		      struct paths_subflow *sf, size_t max)
{
	int rc = read_conn(fd, info);

	if (rc == 0)
		rc = read_subflows(fd, info, sf, max);
	return rc;
}

int paths_read(int fd, bool is_mptcp, struct paths_info *info,
	       struct paths_subflow *sf, size_t max)
{
	int rc;

	memset(info, 0, sizeof(*info));
	if (!is_mptcp) {
		info->kind = PATHS_TCP;
		return read_tcp(fd, info, sf, max);
	}
	info->kind = PATHS_MPTCP;
	rc = read_mptcp(fd, info, sf, max);
	if (!fell_back(rc))
		return rc;
	/* Before our first request or between two. */
	memset(info, 0, sizeof(*info));
	info->kind = PATHS_FALLBACK;
	return read_tcp(fd, info, sf, max);
}

enum paths_kind paths_kind_of(int fd, bool is_mptcp)
{
	struct paths_info info = { .kind = PATHS_MPTCP };

	if (!is_mptcp)
		return PATHS_TCP;
	/* any other error: it is an MPTCP socket we cannot say more of */
	return fell_back(read_conn(fd, &info)) ? PATHS_FALLBACK : info.kind;
}

const char *paths_kind_name(enum paths_kind k)
{
	static const char *const names[] = {
		[PATHS_MPTCP] = "mptcp",
		[PATHS_FALLBACK] = "tcp_fallback",
		[PATHS_TCP] = "tcp",
	};

	if ((unsigned)k < sizeof(names) / sizeof(names[0]) && names[k])
		return names[k];
	return "?";
}
