// SPDX-License-Identifier: GPL-2.0-or-later
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_S 0.1

static int set_int(int fd, int level, int opt, int val)
{
	return setsockopt(fd, level, opt, &val, sizeof(val));
}

int listener_set_transparent(struct listener *l, bool on, const char **what)
{
	/* tproxy: accept connections for any destination address. */
	if (l->addr.sa.sa_family == AF_INET6 &&
	    set_int(l->fd, SOL_IPV6, IPV6_TRANSPARENT, on) < 0) {
		*what = "setsockopt(IPV6_TRANSPARENT)";
		return -errno;
	}
	if (set_int(l->fd, SOL_IP, IP_TRANSPARENT, on) < 0) {
		int err = errno;
		*what = "setsockopt(IP_TRANSPARENT)";
		if (l->addr.sa.sa_family == AF_INET6) /* all or nothing */
			(void)set_int(l->fd, SOL_IPV6, IPV6_TRANSPARENT, !on);
		return -err;
	}
	return 0;
}

int listener_open(struct listener *l, struct flow_env *env,
		  const char *address, uint16_t port, bool transparent,
		  bool reuseport, const char **what)
{
	memset(l, 0, sizeof(*l));
	l->fd = l->reserve_fd = -1;
	l->env = env;
	if (addr_parse(address, port, &l->addr) < 0) {
		*what = "address";
		return -EINVAL;
	}
	int fd = socket(l->addr.sa.sa_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*what = "socket";
		return -errno;
	}
	if (set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0) {
		*what = "setsockopt(SO_REUSEADDR)";
		goto fail;
	}
	if (reuseport && set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0) {
		*what = "setsockopt(SO_REUSEPORT)";
		goto fail;
	}
	/* "::" takes IPv4 too (v4-mapped); a specific IPv6 address only v6. */
	if (l->addr.sa.sa_family == AF_INET6 &&
	    set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY,
		    !IN6_IS_ADDR_UNSPECIFIED(&l->addr.in6.sin6_addr)) < 0) {
		*what = "setsockopt(IPV6_V6ONLY)";
		goto fail;
	}
	l->fd = fd;
	if (transparent && listener_set_transparent(l, true, what) < 0)
		goto fail;
	if (bind(fd, &l->addr.sa, addr_len(&l->addr)) < 0) {
		*what = "bind";
		goto fail;
	}
	if (listen(fd, SOMAXCONN) < 0) {
		*what = "listen";
		goto fail;
	}
	l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return 0;
fail:;
	int err = errno;
	close(fd);
	l->fd = -1;
	return -err;
}

static struct log_limit accept_limit = LOG_LIMIT_INIT(1.0);

/* Out of descriptors: free the reserve, take the waiting connection and
 * reset it, take the reserve back. False when that is impossible too. */
static bool refuse_one(struct listener *l)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (l->reserve_fd < 0)
		return false;
	close(l->reserve_fd);
	int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0) {
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0;
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = (struct listener *)w; /* io is the first member */

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		union sockaddr_any peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(l->fd, &peer.sa, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			flow_accept(loop, l->env, fd, &peer);
			continue;
		}
		switch (errno) {
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			log_limited(&flow_shortage_limit, ev_now(loop),
				    LOG_LVL_WARN,
				    "accept: %s: resetting new connections",
				    strerror(errno));
			l->env->stats.refused_nofd++;
			if (refuse_one(l) && l->reserve_fd >= 0)
				continue;
			ev_io_stop(loop, &l->io);
			ev_timer_start(loop, &l->pause);
			return;
		default:
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_limited(&accept_limit, ev_now(loop),
					    LOG_LVL_ERROR, "accept: %s",
					    strerror(errno));
			return;
		}
	}
}

static void on_pause_end(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct listener *l = (struct listener *)((char *)w -
						 offsetof(struct listener, pause));

	/* The reserve is lost when another worker took the descriptor that
	 * refuse_one() freed: take it back, trying again each pause until
	 * descriptors free up. */
	if (l->reserve_fd < 0)
		l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (l->reserve_fd < 0)
		ev_timer_start(loop, &l->pause);
	ev_io_start(loop, &l->io);
}

void listener_start(struct ev_loop *loop, struct listener *l)
{
	ev_io_init(&l->io, on_accept, l->fd, EV_READ);
	ev_timer_init(&l->pause, on_pause_end, ACCEPT_PAUSE_S, 0);
	ev_io_start(loop, &l->io);
}

void listener_close(struct ev_loop *loop, struct listener *l)
{
	if (l->fd < 0)
		return;
	ev_io_stop(loop, &l->io);
	ev_timer_stop(loop, &l->pause);
	close(l->fd);
	l->fd = -1;
	if (l->reserve_fd >= 0)
		close(l->reserve_fd);
	l->reserve_fd = -1;
}
