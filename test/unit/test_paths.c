// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit tests of paths (no root): real connections over loopback inside
 * this process, IPv4 (127.0.0.1) and IPv6 (::1):
 *
 *     client ──MPTCP──▶ MPTCP listener     both ends: kind mptcp
 *     client ──MPTCP──▶ TCP listener       client: tcp_fallback
 *     client ──TCP────▶ MPTCP listener     accepted end: tcp_fallback
 *     client ──TCP────▶ TCP listener       both ends: kind tcp
 *
 * Over each, 1 MiB one way and 64 KiB back (content checked), then what
 * paths_read() says of each end is compared with getsockname(),
 * getpeername(), the bytes moved and — where the kernel reports them
 * (6.5+) — the connection-level counters. Then a connection's end: the
 * peer resets it and its counters must still be readable.
 *
 * Then two subflows, in a network namespace of the test's own (a user
 * namespace makes that possible without root), with a "subflow" endpoint
 * that the kernel's path manager uses at once:
 *
 *     client 127.0.0.1 ══ subflow 1 ═════════════╗
 *            127.0.0.2 ══ subflow 2 (endpoint) ══╩══▶ server 127.0.0.1
 *
 * Each subflow's counters must belong with its addresses (they come from
 * two requests): what a client subflow sent is what the server subflow
 * with the same addresses got, and the first subflow's are what TCP_INFO
 * on the socket says. Without MPTCP, IPv6 or namespaces here the parts
 * that need them say "skipped: ..." and only the rest runs. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "mptcp_pm.h"
#include "paths.h"

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

#define ONE_WAY (1024u * 1024u) /* client to server */
#define BACK (64u * 1024u)      /* server to client */

/* ---------------------------------------------------------------- */
/* Connections                                                       */

struct conn {
	/* -1 when not made. The listener stays: a second subflow's
	 * MP_JOIN goes to it. */
	int client, server, listener;
};

static const char *fam_name(int family)
{
	return family == AF_INET6 ? "IPv6" : "IPv4";
}

static const char *proto_name(int proto)
{
	return proto == IPPROTO_MPTCP ? "MPTCP" : "TCP";
}

static void loopback(int family, union sockaddr_any *a)
{
	CHECK(addr_parse(family == AF_INET6 ? "::1" : "127.0.0.1", 0, a) == 0);
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	CHECK(fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
}

/* A client of cproto connected to a listener of lproto on loopback;
 * both ends non-blocking. */
static struct conn conn_make(int family, int cproto, int lproto)
{
	struct conn c = { -1, -1, -1 };
	union sockaddr_any a;
	socklen_t len = sizeof(a);

	loopback(family, &a);
	c.listener = socket(family, SOCK_STREAM, lproto);
	if (c.listener < 0 || bind(c.listener, &a.sa, addr_len(&a)) < 0 ||
	    listen(c.listener, 1) < 0 ||
	    getsockname(c.listener, &a.sa, &len) < 0) {
		CHECK_MSG(false, "%s %s listener: %s", fam_name(family),
			  proto_name(lproto), strerror(errno));
		return c;
	}
	c.client = socket(family, SOCK_STREAM, cproto);
	if (c.client < 0 || connect(c.client, &a.sa, addr_len(&a)) < 0) {
		CHECK_MSG(false, "%s %s client: %s", fam_name(family),
			  proto_name(cproto), strerror(errno));
		return c;
	}
	c.server = accept(c.listener, NULL, NULL);
	CHECK_MSG(c.server >= 0, "accept: %s", strerror(errno));
	set_nonblock(c.client);
	if (c.server >= 0)
		set_nonblock(c.server);
	return c;
}

static void conn_close(struct conn *c)
{
	if (c->client >= 0)
		close(c->client);
	if (c->server >= 0)
		close(c->server);
	if (c->listener >= 0)
		close(c->listener);
	c->client = c->server = c->listener = -1;
}

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 131 + (i >> 9));
}

/* n bytes from one end to the other, checked as they arrive. */
static bool pump(int from, int to, size_t n)
{
	unsigned char buf[16384];
	size_t sent = 0, got = 0;

	while (got < n) {
		struct pollfd p[2] = {
			{ .fd = from, .events = sent < n ? POLLOUT : 0 },
			{ .fd = to, .events = POLLIN },
		};
		if (poll(p, 2, 5000) <= 0)
			return false;
		if (p[0].revents & POLLOUT) {
			size_t k = n - sent < sizeof(buf) ? n - sent : sizeof(buf);
			for (size_t i = 0; i < k; i++)
				buf[i] = pattern(sent + i);
			ssize_t w = send(from, buf, k, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN)
				return false;
			if (w > 0)
				sent += (size_t)w;
		}
		if (p[1].revents) {
			ssize_t r = recv(to, buf, sizeof(buf), 0);
			if (r == 0 || (r < 0 && errno != EAGAIN))
				return false;
			for (ssize_t i = 0; i < r; i++)
				if (buf[i] != pattern(got + (size_t)i))
					return false;
			if (r > 0)
				got += (size_t)r;
		}
	}
	return sent == n;
}

/* ---------------------------------------------------------------- */
/* What one end should say                                           */

struct expect {
	const char *what;
	bool is_mptcp;         /* as created */
	enum paths_kind kind;
	uint64_t sent, received; /* by the application */
	/* The peer answered after it had all we sent: all of it is acked
	 * (a later ack may still be on its way to the other end). */
	bool answered;
};

static void check_addrs(const char *what, int fd, const struct paths_subflow *s)
{
	union sockaddr_any local, remote;
	socklen_t len = sizeof(local);
	char b1[ADDR_STRLEN], b2[ADDR_STRLEN];

	memset(&local, 0, sizeof(local));
	memset(&remote, 0, sizeof(remote));
	CHECK(getsockname(fd, &local.sa, &len) == 0);
	len = sizeof(remote);
	CHECK(getpeername(fd, &remote.sa, &len) == 0);
	CHECK_MSG(addr_equal(&s->local, &local), "%s: local %s, getsockname %s",
		  what, addr_fmt(&s->local, b1, sizeof(b1)),
		  addr_fmt(&local, b2, sizeof(b2)));
	CHECK_MSG(addr_equal(&s->remote, &remote),
		  "%s: remote %s, getpeername %s", what,
		  addr_fmt(&s->remote, b1, sizeof(b1)),
		  addr_fmt(&remote, b2, sizeof(b2)));
}

/* The connection level, where this kernel has it: data the application
 * moved, counted once whatever the subflows did. */
static void check_conn_bytes(const struct expect *e,
			     const struct paths_info *info)
{
	static bool said;

	if (e->kind == PATHS_MPTCP && !info->bytes_known && !said) {
		printf("note: no connection-level bytes in this kernel's "
		       "MPTCP_INFO (before 6.5): not checked\n");
		said = true;
	}
	if (e->kind != PATHS_MPTCP || !info->bytes_known) {
		CHECK(info->bytes_sent == 0 && info->bytes_received == 0 &&
		      info->bytes_retrans == 0 && info->bytes_acked == 0);
		return;
	}
	CHECK_MSG(info->bytes_sent == e->sent, "%s: bytes_sent %llu, sent %llu",
		  e->what, (unsigned long long)info->bytes_sent,
		  (unsigned long long)e->sent);
	CHECK_MSG(info->bytes_received == e->received,
		  "%s: bytes_received %llu, received %llu", e->what,
		  (unsigned long long)info->bytes_received,
		  (unsigned long long)e->received);
	if (e->answered)
		CHECK_MSG(info->bytes_acked == e->sent,
			  "%s: bytes_acked %llu, sent %llu", e->what,
			  (unsigned long long)info->bytes_acked,
			  (unsigned long long)e->sent);
	else
		CHECK(info->bytes_acked <= info->bytes_sent);
}

static void check_end(int fd, const struct expect *e)
{
	struct paths_info info;
	struct paths_subflow sf[PATHS_MAX_SUBFLOWS];
	int n = paths_read(fd, e->is_mptcp, &info, sf, PATHS_MAX_SUBFLOWS);

	CHECK_MSG(n == 1, "%s: paths_read %d", e->what, n);
	if (n != 1)
		return;
	CHECK_MSG(info.kind == e->kind, "%s: kind %s, want %s", e->what,
		  paths_kind_name(info.kind), paths_kind_name(e->kind));
	CHECK_MSG(info.n_subflows == 1, "%s: %u subflows", e->what,
		  info.n_subflows);
	check_addrs(e->what, fd, &sf[0]);
	CHECK_MSG(sf[0].state == TCP_ESTABLISHED, "%s: state %u", e->what,
		  sf[0].state);
	CHECK_MSG(sf[0].bytes_sent >= e->sent, "%s: subflow sent %llu < %llu",
		  e->what, (unsigned long long)sf[0].bytes_sent,
		  (unsigned long long)e->sent);
	CHECK_MSG(sf[0].bytes_received >= e->received,
		  "%s: subflow received %llu < %llu", e->what,
		  (unsigned long long)sf[0].bytes_received,
		  (unsigned long long)e->received);
	/* tcpi_bytes_acked counts the SYN too. */
	CHECK(!e->answered || sf[0].bytes_acked >= e->sent);
	CHECK(sf[0].snd_cwnd > 0);
	CHECK(sf[0].rtt_us > 0);
	check_conn_bytes(e, &info);

	/* No room: the count and kind only. */
	n = paths_read(fd, e->is_mptcp, &info, NULL, 0);
	CHECK_MSG(n == 0, "%s: max 0: %d", e->what, n);
	CHECK(info.n_subflows == 1 && info.kind == e->kind);
}

/* ---------------------------------------------------------------- */
/* Cases                                                             */

/* One connection, both ends checked. */
static void run_case(int family, int cproto, int lproto,
		     enum paths_kind client_kind, enum paths_kind server_kind)
{
	char cw[96], sw[96];
	struct conn c = conn_make(family, cproto, lproto);

	if (c.server < 0) {
		conn_close(&c);
		return;
	}
	CHECK_MSG(pump(c.client, c.server, ONE_WAY), "%s: one way",
		  fam_name(family));
	CHECK_MSG(pump(c.server, c.client, BACK), "%s: back", fam_name(family));
	snprintf(cw, sizeof(cw), "%s %s client to %s", fam_name(family),
		 proto_name(cproto), proto_name(lproto));
	snprintf(sw, sizeof(sw), "%s %s listener's end, from %s",
		 fam_name(family), proto_name(lproto), proto_name(cproto));
	check_end(c.client, &(struct expect){ cw, cproto == IPPROTO_MPTCP,
		  client_kind, ONE_WAY, BACK, true });
	check_end(c.server, &(struct expect){ sw, lproto == IPPROTO_MPTCP,
		  server_kind, BACK, ONE_WAY, false });
	conn_close(&c);
}

/* The peer resets the connection (as a failing upstream would): the end
 * left over still gives what it moved. A TCP socket keeps its one entry
 * (closed, no peer); an MPTCP one may have no subflow left, but the
 * connection-level counters (6.5+) survive its subflows. */
static void test_after_reset(int family, int proto)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct paths_info info;
	struct paths_subflow sf[PATHS_MAX_SUBFLOWS];
	struct conn c = conn_make(family, proto, proto);

	if (c.server < 0) {
		conn_close(&c);
		return;
	}
	CHECK(pump(c.client, c.server, ONE_WAY));
	CHECK(setsockopt(c.client, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
	close(c.client);
	c.client = -1;
	/* Wait for the reset to arrive: the read fails. */
	struct pollfd p = { .fd = c.server, .events = POLLIN };
	CHECK(poll(&p, 1, 5000) == 1);
	char byte;
	CHECK(recv(c.server, &byte, 1, 0) < 0);

	int n = paths_read(c.server, proto == IPPROTO_MPTCP, &info, sf,
			   PATHS_MAX_SUBFLOWS);
	if (proto != IPPROTO_MPTCP) {
		CHECK_MSG(n == 1, "TCP after reset: %d", n);
		CHECK(info.kind == PATHS_TCP);
		CHECK(n < 1 || sf[0].state == TCP_CLOSE);
		CHECK(n < 1 || sf[0].remote.sa.sa_family == AF_UNSPEC);
		CHECK(n < 1 || sf[0].local.sa.sa_family == family);
		CHECK(n < 1 || sf[0].bytes_received >= ONE_WAY);
	} else {
		CHECK_MSG(n >= 0 && n <= 1, "MPTCP after reset: %d", n);
		CHECK(n < 0 || (unsigned)n == info.n_subflows);
		CHECK(info.kind == PATHS_MPTCP);
		if (info.bytes_known)
			CHECK_MSG(info.bytes_received == ONE_WAY,
				  "MPTCP after reset: received %llu",
				  (unsigned long long)info.bytes_received);
	}
	conn_close(&c);
}

/* A socket that never connected: its one entry has no peer. */
static void test_unconnected(void)
{
	struct paths_info info;
	struct paths_subflow sf[1];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	CHECK(fd >= 0);
	int n = paths_read(fd, false, &info, sf, 1);
	CHECK(n == 1 && info.kind == PATHS_TCP && info.n_subflows == 1);
	CHECK(n < 1 || sf[0].state == TCP_CLOSE);
	CHECK(n < 1 || sf[0].remote.sa.sa_family == AF_UNSPEC);
	CHECK(n < 1 || (sf[0].bytes_sent == 0 && sf[0].bytes_received == 0));
	close(fd);
}

static void test_not_a_socket(void)
{
	struct paths_info info;
	struct paths_subflow sf[1];
	int p[2];

	CHECK(paths_read(-1, false, &info, sf, 1) == -EBADF);
	CHECK(paths_read(-1, true, &info, sf, 1) == -EBADF);
	CHECK(pipe(p) == 0);
	CHECK(paths_read(p[0], false, &info, sf, 1) == -ENOTSOCK);
	CHECK(paths_read(p[0], true, &info, sf, 1) == -ENOTSOCK);
	close(p[0]);
	close(p[1]);
}

static void test_kind_names(void)
{
	CHECK(strcmp(paths_kind_name(PATHS_MPTCP), "mptcp") == 0);
	CHECK(strcmp(paths_kind_name(PATHS_FALLBACK), "tcp_fallback") == 0);
	CHECK(strcmp(paths_kind_name(PATHS_TCP), "tcp") == 0);
	CHECK(strcmp(paths_kind_name((enum paths_kind)42), "?") == 0);
}

/* ---------------------------------------------------------------- */
/* Two subflows, in a namespace of our own                           */

/* A network namespace of our own (as root a user namespace is not
 * needed, but may be refused where a plain one is not). NULL, or why not. */
static const char *own_netns(void)
{
	static char why[160];
	int e1;

	if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0)
		return NULL;
	e1 = errno;
	if (unshare(CLONE_NEWNET) == 0)
		return NULL;
	snprintf(why, sizeof(why), "unshare: user+net: %s, net: %s",
		 strerror(e1), strerror(errno));
	return why;
}

/* A new namespace's loopback is down. */
static int lo_up(void)
{
	struct ifreq ifr;
	int rc = -1;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Poll until fd's connection has `want` subflows (the join is the
 * kernel's, after connect() returned); false after 5 s. */
static bool wait_subflows(int fd, unsigned want)
{
	struct paths_info info;
	double end = now_s() + 5;

	do {
		if (paths_read(fd, true, &info, NULL, 0) == 0 &&
		    info.n_subflows == want)
			return true;
		poll(NULL, 0, 10);
	} while (now_s() < end);
	return false;
}

/* The entry of sf whose addresses are local and remote, or NULL. */
static const struct paths_subflow *
find_sf(const struct paths_subflow *sf, int n, const union sockaddr_any *local,
	const union sockaddr_any *remote)
{
	for (int i = 0; i < n; i++)
		if (addr_equal(&sf[i].local, local) &&
		    addr_equal(&sf[i].remote, remote))
			return &sf[i];
	return NULL;
}

static void check_two_subflows(const struct conn *c)
{
	struct paths_info ci, si;
	struct paths_subflow csf[PATHS_MAX_SUBFLOWS], ssf[PATHS_MAX_SUBFLOWS];
	union sockaddr_any local, remote, second;
	socklen_t len = sizeof(local);
	char b[ADDR_STRLEN];

	CHECK(getsockname(c->client, &local.sa, &len) == 0);
	len = sizeof(remote);
	CHECK(getpeername(c->client, &remote.sa, &len) == 0);

	int n = paths_read(c->client, true, &ci, csf, PATHS_MAX_SUBFLOWS);
	CHECK_MSG(n == 2, "client: %d entries", n);
	CHECK(ci.kind == PATHS_MPTCP && ci.n_subflows == 2);
	if (n != 2)
		return;
	/* The initial subflow first, then the join. */
	CHECK(addr_equal(&csf[0].local, &local));
	CHECK(addr_equal(&csf[0].remote, &remote));
	second = csf[1].local;
	CHECK_MSG(strcmp(addr_ip(&second, b, sizeof(b)), "127.0.0.2") == 0 &&
		  addr_port(&second) != 0, "second subflow from %s",
		  addr_fmt(&second, b, sizeof(b)));
	CHECK(addr_equal(&csf[1].remote, &remote));
	CHECK(csf[0].state == TCP_ESTABLISHED &&
	      csf[1].state == TCP_ESTABLISHED);
	CHECK(csf[0].bytes_sent + csf[1].bytes_sent >= ONE_WAY);
	if (ci.bytes_known)
		CHECK(ci.bytes_sent == ONE_WAY + 1 &&
		      ci.bytes_received == BACK + 1);

	n = paths_read(c->server, true, &si, ssf, PATHS_MAX_SUBFLOWS);
	CHECK_MSG(n == 2, "server: %d entries", n);
	CHECK(si.kind == PATHS_MPTCP && si.n_subflows == 2);
	for (int i = 0; i < 2 && n == 2; i++) {
		const struct paths_subflow *peer =
			find_sf(ssf, n, &csf[i].remote, &csf[i].local);
		CHECK_MSG(peer != NULL, "server: no subflow from %s",
			  addr_fmt(&csf[i].local, b, sizeof(b)));
		if (!peer)
			continue;
		/* Counters paired with the wrong addresses show here, unless
		 * both subflows carried exactly as much. Retransmissions
		 * (none on loopback, normally) are counted by the sender
		 * only. */
		if (csf[i].total_retrans == 0 && peer->total_retrans == 0)
			CHECK_MSG(csf[i].bytes_sent == peer->bytes_received &&
				  csf[i].bytes_received == peer->bytes_sent,
				  "subflow %d: sent %llu, server got %llu", i,
				  (unsigned long long)csf[i].bytes_sent,
				  (unsigned long long)peer->bytes_received);
	}

	/* The pairing, against an answer that does not depend on it: read
	 * as plain TCP, the socket gives its first subflow's addresses
	 * (getsockname) and counters (TCP_INFO goes to that subflow). */
	struct paths_subflow first;
	struct paths_info fi;
	CHECK(paths_read(c->client, false, &fi, &first, 1) == 1);
	const struct paths_subflow *same =
		find_sf(csf, 2, &first.local, &first.remote);
	CHECK(same == &csf[0]);
	CHECK(same && same->bytes_sent == first.bytes_sent &&
	      same->bytes_received == first.bytes_received);

	/* Room for one: the first, and the count of all. */
	struct paths_subflow one[1];
	n = paths_read(c->client, true, &ci, one, 1);
	CHECK(n == 1 && ci.n_subflows == 2);
	CHECK(n < 1 || addr_equal(&one[0].local, &local));
}

/* In the child, in its own namespace: limits, the endpoint, one
 * connection, the checks. Returns the exit status: 0, or 2 for a skip. */
static int two_subflows_child(void)
{
	union sockaddr_any ep;
	int err;
	const char *why = own_netns();

	if (why) {
		printf("skipped: two subflows (%s)\n", why);
		return 2;
	}
	CHECK_MSG(lo_up() == 0, "lo up: %s", strerror(errno));
	struct mptcp_pm *pm = mptcp_pm_open(&err);
	if (!pm) {
		printf("skipped: two subflows (mptcp_pm: %s)\n", strerror(err));
		return 2;
	}
	CHECK_MSG((err = mptcp_pm_set_limits(pm, 2, 0)) == 0, "limits: %s",
		  strerror(-err));
	CHECK(addr_parse("127.0.0.2", 0, &ep) == 0);
	err = mptcp_pm_add(pm, &ep, (int)if_nametoindex("lo"), false, 1);
	CHECK_MSG(err > 0, "endpoint: %s", strerror(-err));

	struct conn c = conn_make(AF_INET, IPPROTO_MPTCP, IPPROTO_MPTCP);
	if (c.server >= 0) {
		/* The path manager adds subflows to a fully established
		 * connection only: the client's is after its first data is
		 * acked at the MPTCP level. */
		CHECK(pump(c.client, c.server, 1) && pump(c.server, c.client, 1));
		CHECK_MSG(wait_subflows(c.client, 2), "client: no second subflow");
		CHECK_MSG(wait_subflows(c.server, 2), "server: no second subflow");
		CHECK(pump(c.client, c.server, ONE_WAY));
		CHECK(pump(c.server, c.client, BACK));
		check_two_subflows(&c);
	}
	conn_close(&c);
	mptcp_pm_close(pm);
	return 0;
}

/* The namespace needs a process of its own: a child, whose counts come
 * back through a pipe. */
static void test_two_subflows(void)
{
	unsigned counts[2] = { 0, 0 };
	int p[2], status;

	CHECK(pipe(p) == 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		check_passed = check_failed = 0;
		int rc = two_subflows_child();
		counts[0] = check_passed;
		counts[1] = check_failed;
		if (write(p[1], counts, sizeof(counts)) != sizeof(counts))
			rc = 1;
		fflush(NULL);
		exit(rc);
	}
	close(p[1]);
	CHECK(read(p[0], counts, sizeof(counts)) == sizeof(counts));
	close(p[0]);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) != 1,
		  "child status 0x%x", status);
	check_passed += counts[0];
	check_failed += counts[1];
}

/* NULL when the family's loopback address is there; else why not. */
static const char *family_missing(int family)
{
	union sockaddr_any a;
	const char *why = NULL;
	int fd = socket(family, SOCK_STREAM, 0);

	loopback(family, &a);
	if (fd < 0 || bind(fd, &a.sa, addr_len(&a)) < 0)
		why = strerror(errno);
	if (fd >= 0)
		close(fd);
	return why;
}

/* NULL when MPTCP sockets can be made here; else why not. */
static const char *mptcp_missing(void)
{
	static char why[128];
	FILE *f = fopen("/proc/sys/net/mptcp/enabled", "r");
	int enabled = -1;

	if (f) {
		if (fscanf(f, "%d", &enabled) != 1)
			enabled = -1;
		fclose(f);
	}
	if (enabled == 0)
		return "net.mptcp.enabled=0";
	int fd = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
	if (fd < 0) {
		snprintf(why, sizeof(why), "socket(IPPROTO_MPTCP): %s",
			 strerror(errno));
		return why;
	}
	close(fd);
	return NULL;
}

int main(void)
{
	static const int families[] = { AF_INET, AF_INET6 };
	const char *no_mptcp = mptcp_missing();

	test_kind_names();
	test_not_a_socket();
	test_unconnected();
	if (no_mptcp)
		printf("skipped: every MPTCP case (%s)\n", no_mptcp);
	for (size_t i = 0; i < 2; i++) {
		int fam = families[i];
		const char *why = family_missing(fam);
		if (why) {
			printf("skipped: every %s case (no %s loopback: %s)\n",
			       fam_name(fam), fam_name(fam), why);
			continue;
		}
		run_case(fam, IPPROTO_TCP, IPPROTO_TCP, PATHS_TCP, PATHS_TCP);
		test_after_reset(fam, IPPROTO_TCP);
		if (no_mptcp)
			continue;
		run_case(fam, IPPROTO_MPTCP, IPPROTO_MPTCP, PATHS_MPTCP,
			 PATHS_MPTCP);
		run_case(fam, IPPROTO_MPTCP, IPPROTO_TCP, PATHS_FALLBACK,
			 PATHS_TCP);
		run_case(fam, IPPROTO_TCP, IPPROTO_MPTCP, PATHS_TCP,
			 PATHS_FALLBACK);
		test_after_reset(fam, IPPROTO_MPTCP);
	}
	if (!no_mptcp)
		test_two_subflows();
	return check_done();
}
