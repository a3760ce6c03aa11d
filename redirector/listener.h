/* SPDX-License-Identifier: GPL-2.0-or-later */
/* listener: the socket nftables redirects LAN flows to. Accepts in batches
 * and hands each connection to flow_accept(). Running out of descriptors is
 * normal weather: a reserve descriptor is given up to accept the waiting
 * connection and reset it at once (the client learns now, not after a
 * timeout); if even that fails, accepting pauses for a moment and resumes
 * by itself. Logged at most once a second. */
#ifndef MPREDIR_LISTENER_H
#define MPREDIR_LISTENER_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "flow.h"

struct listener {
	ev_io io;
	ev_timer pause;
	struct flow_env *env;
	union sockaddr_any addr;
	int fd;
	int reserve_fd; /* /dev/null, closed to make room in an fd shortage */
};

/* Bind and listen on address:port ("::" = dual-stack), with IP_TRANSPARENT
 * for tproxy when `transparent`, SO_REUSEPORT when `reuseport` (one
 * listener per worker on the same port). Returns 0, or -errno with *what
 * naming the failing call. Does not start accepting. */
int listener_open(struct listener *l, struct flow_env *env,
		  const char *address, uint16_t port, bool transparent,
		  bool reuseport, const char **what);
void listener_start(struct ev_loop *loop, struct listener *l);
/* Switch tproxy transparency on an open listener (a reload that changes
 * only the firewall mode keeps its socket). 0 or -errno (*what). */
int listener_set_transparent(struct listener *l, bool on, const char **what);
/* Stop accepting and close the socket (idempotent). */
void listener_close(struct ev_loop *loop, struct listener *l);

#endif
