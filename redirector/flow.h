/* SPDX-License-Identifier: GPL-2.0-or-later */
/* flow: one LAN connection's life, from accept to its single teardown:
 *   ACCEPTED -> [WAIT_DATA] -> CONNECTING (to a server, next one on
 *   failure; skipped with a warm pooled connection) -> SOCKS (greeting
 *   [+ auth] + CONNECT [+ first bytes], replies) -> RELAYING -> closed.
 * Every exit goes through flow_close() with a reason: watchers stopped,
 * sockets closed with RST when the end is an error, one log line. */
#ifndef MPREDIR_FLOW_H
#define MPREDIR_FLOW_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "log.h"
#include "relay.h"
#include "upstream.h"

enum flow_state {
	FLOW_WAIT_DATA,  /* Fast Open: the client's first bytes go in the SYN */
	FLOW_CONNECTING, /* connect() to a server in progress */
	FLOW_SOCKS,      /* SOCKS messages out, replies being parsed */
	FLOW_RELAYING,
};

/* Why a flow ended. One table in flow.c names them and says which end
 * with RST. */
enum flow_end {
	FLOW_END_DONE,          /* both directions ended with FIN */
	FLOW_END_LAN_RESET,     /* the LAN side reset or failed */
	FLOW_END_UP_RESET,      /* the server side reset or failed */
	FLOW_END_IDLE,          /* idle / half-close timeout */
	FLOW_END_NO_SERVER,     /* every server failed or is backing off */
	FLOW_END_SETUP_TIMEOUT, /* no CONNECT reply within the deadline */
	FLOW_END_REFUSED,       /* CONNECT answered with an error */
	FLOW_END_SERVER_CLOSED, /* server closed before the CONNECT reply */
	FLOW_END_PROTOCOL,      /* malformed SOCKS reply */
	FLOW_END_NOMEM,
	FLOW_END_SHUTDOWN,      /* the daemon is stopping */
	FLOW_END__COUNT
};

struct flow_setup;

struct flow {
	struct relay relay;       /* watchers of the RELAYING state */
	ev_timer timer;           /* setup deadline, then idle check */
	struct flow *prev, *next; /* in flow_env.flows */
	struct flow_env *env;
	struct upstream *ups;     /* the server set this flow started with */
	struct upstream_server *server;
	struct flow_setup *setup; /* only before RELAYING */
	union sockaddr_any lan, dst;
	double started;
	double last_active;       /* when the idle check last saw bytes move */
	uint64_t idle_mark;       /* bytes seen by the last idle check */
	int lan_fd, up_fd;
	enum flow_state state;
	bool mptcp;               /* the upstream socket is IPPROTO_MPTCP */
	bool fast_open;           /* its connect asked for TCP Fast Open */
	uint8_t kind;             /* enum paths_kind, known once relaying */
	uint32_t first_local4;    /* IPv4 address of its first subflow, or 0 */
	uint64_t id;              /* for status: 1, 2, ... */
};

/* Counters for the whole daemon. */
struct flow_stats {
	uint64_t accepted, total_ok;
	uint64_t ended[FLOW_END__COUNT];
	uint64_t refused_self, refused_full, refused_origdst, refused_nofd;
	uint64_t bytes_up, bytes_down; /* relayed by flows that ended */
};

/* What flows share: the current server set and the live flows. */
struct rtmon;

struct flow_shared;

struct flow_env {
	struct upstream *ups; /* current set; flows take a reference */
	const struct rtmon *ifaddrs; /* the router's addresses */
	bool tproxy;          /* the listener is transparent */
	struct flow *flows;
	unsigned nflows;
	unsigned worker;      /* index of the worker (thread) owning these */
	struct flow_shared *shared; /* what all workers share */
	struct flow_stats stats;
};

/* Bytes carried from (or on the subflows of) one local IPv4 address. */
struct wan_credit {
	uint32_t addr4; /* network order */
	uint64_t sent, received;
};

/* What the workers' flow_envs share (atomic counters). */
struct flow_shared {
	unsigned nflows;      /* all workers' flows: max_flows applies to it */
	uint64_t last_id;
	bool wans;            /* WANs configured: credit bytes at a flow's end */
	/* a flow's end: bytes per local IPv4 address, for the WANs' counters
	 * (called in the worker's thread; the callee hands it to the main
	 * thread) */
	void (*credit)(struct flow_shared *sh, unsigned worker,
		       const struct wan_credit *c, size_t n);
	void *credit_arg;
};

/* Take over an accepted LAN socket (non-blocking): find its original
 * destination and start a flow, or refuse it with RST (direct connection
 * to the listener, max_flows reached, no memory). Never fails: the fd is
 * always consumed. */
void flow_accept(struct ev_loop *loop, struct flow_env *env, int fd,
		 const union sockaddr_any *peer);

/* The single teardown path. */
void flow_close(struct ev_loop *loop, struct flow *f, enum flow_end why,
		const char *detail);

/* Close every flow (with RST: a stopping daemon must not look like a clean
 * end of data to the LAN client). */
void flow_close_all(struct ev_loop *loop, struct flow_env *env);

/* The one rate limit of every line about running out of descriptors or
 * memory (flows ended for it, connections the listener resets for it):
 * a shortage costs at most a line a second. */
extern struct log_limit flow_shortage_limit;

const char *flow_end_name(enum flow_end why);
/* Its identifier in status ("done", "server_reset", ...). */
const char *flow_end_key(enum flow_end why);

#endif
