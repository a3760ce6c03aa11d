/* SPDX-License-Identifier: GPL-2.0-or-later */
/* paths: what the kernel knows about one upstream socket's paths — each
 * MPTCP subflow's addresses and TCP counters (MPTCP_SUBFLOW_ADDRS,
 * MPTCP_TCPINFO), the connection's own counters (MPTCP_INFO), or, for a
 * connection that fell back to TCP or never was MPTCP, its one TCP path.
 * For the status command and the per-WAN byte counts. */
#ifndef MPREDIR_PATHS_H
#define MPREDIR_PATHS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* The most subflows read in one call. The in-kernel path manager allows
 * 8 per connection; closing ones may linger in the kernel's list a moment
 * longer, hence the margin. Beyond this, n_subflows still counts them. */
#define PATHS_MAX_SUBFLOWS 16

enum paths_kind {
	PATHS_MPTCP,    /* an MPTCP connection (subflows below) */
	PATHS_FALLBACK, /* an MPTCP socket that fell back to plain TCP */
	PATHS_TCP,      /* a plain TCP socket */
};

struct paths_subflow {
	/* As the kernel has them (an IPv6 socket's IPv4 path is v4-mapped,
	 * as getsockname() says). remote is AF_UNSPEC when unknown: a TCP
	 * socket that is closed or not connected has no peer. */
	union sockaddr_any local, remote;
	uint64_t bytes_sent, bytes_received, bytes_acked; /* tcpi_bytes_* */
	uint32_t rtt_us, snd_cwnd, total_retrans;
	uint8_t state; /* tcpi_state: TCP_ESTABLISHED, TCP_CLOSE, ... */
};

struct paths_info {
	enum paths_kind kind;
	/* Subflows the kernel reported (may exceed what fit in the array);
	 * 1 for TCP and fallback. */
	unsigned n_subflows;
	/* MPTCP level (kind == PATHS_MPTCP): the whole connection, subflows
	 * that are gone included. Linux 6.5+; before, bytes_known is false
	 * and these are 0. */
	bool bytes_known;
	uint64_t bytes_sent, bytes_received, bytes_retrans, bytes_acked;
	unsigned local_addr_used, local_addr_max;
};

/* Read fd's paths. `is_mptcp` says whether the socket was created with
 * IPPROTO_MPTCP. Fills info and up to max entries of sf (sf may be NULL
 * when max is 0): for MPTCP one per subflow, in the kernel's order; for
 * TCP and fallback one, from TCP_INFO, getsockname() and getpeername().
 * At most PATHS_MAX_SUBFLOWS entries are stored. Returns the number of
 * entries stored (<= max), or -errno: -EAGAIN when the subflows changed
 * while being read, twice in a row (ask again later); entries past the
 * count, and everything on an error, are unspecified. Never blocks: a few
 * getsockopt() calls (about 6 KiB of stack), cheap enough once per flow
 * at its end. */
int paths_read(int fd, bool is_mptcp, struct paths_info *info,
	       struct paths_subflow *sf, size_t max);

/* Only the kind (one MPTCP_INFO request): cheap enough for every flow. */
enum paths_kind paths_kind_of(int fd, bool is_mptcp);
/* "mptcp", "tcp_fallback", "tcp" ("?" for anything else). */
const char *paths_kind_name(enum paths_kind k);

#endif
