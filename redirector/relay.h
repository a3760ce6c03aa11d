/* SPDX-License-Identifier: GPL-2.0-or-later */
/* relay: two independent one-way pipes between the LAN socket and the
 * upstream socket. Per direction: at most one bounded pending buffer
 * (allocated only while the destination cannot take the bytes: an idle
 * flow holds no buffer), EOF seen, SHUT_WR sent, byte count. Reads only
 * while nothing is pending (backpressure: a slow reader never grows
 * memory); after EOF and an empty buffer, shutdown(SHUT_WR) once. */
#ifndef MPREDIR_RELAY_H
#define MPREDIR_RELAY_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum relay_side { RELAY_LAN = 0, RELAY_UP = 1 };

struct relay_dir {
	ev_io rd;       /* readable on the source */
	ev_io wr;       /* writable on the destination */
	char *buf;      /* pending bytes [off, len), NULL when none */
	uint32_t off, len;
	uint64_t bytes; /* delivered to the destination */
	bool eof;       /* the source reached EOF */
	bool shut;      /* SHUT_WR sent to the destination */
	uint8_t src;    /* enum relay_side of the source: index in relay.dir */
};

enum relay_event {
	RELAY_EV_HALF,  /* one direction finished (EOF forwarded) */
	RELAY_EV_DONE,  /* both directions finished: close with FIN */
	RELAY_EV_RESET, /* a peer reset or failed: close with RST */
};

struct relay;
/* Called from inside the relay's watchers. For RELAY_EV_RESET, `side` is
 * the socket that failed and `err` its errno. The callee may stop and free
 * the relay (relay_stop, then free its owner): the relay touches nothing
 * after calling it. */
typedef void relay_notify_fn(struct ev_loop *loop, struct relay *r,
			     enum relay_event ev, enum relay_side side, int err);

struct relay {
	struct relay_dir dir[2]; /* [RELAY_LAN]: LAN -> up, [RELAY_UP]: up -> LAN */
	int fd[2];               /* [RELAY_LAN], [RELAY_UP] */
	relay_notify_fn *notify;
};

/* Start relaying between two connected non-blocking sockets. `pending[i]`
 * (may be empty) are bytes already read from side i's source that must go
 * out first, e.g. payload that followed the SOCKS reply; they are copied.
 * Returns 0 or -ENOMEM. The fds stay owned by the caller. */
int relay_start(struct ev_loop *loop, struct relay *r, int lan_fd, int up_fd,
		relay_notify_fn *notify, const void *pending_up,
		size_t pending_up_len, const void *pending_lan,
		size_t pending_lan_len);
/* Stop all watchers and free the buffers (idempotent). */
void relay_stop(struct ev_loop *loop, struct relay *r);

/* Size of the read buffer shared by all flows of the calling thread (each
 * worker thread sets its own; 0 frees it); also the cap of what one
 * direction can hold pending. Default 65536, allocated at first use. */
int relay_set_buffer_size(size_t size);
/* A worker thread ends: free its buffer. */
void relay_thread_exit(void);

/* Bytes held in pending buffers by all relays (for status and tests). */
size_t relay_buffered_bytes(void);

#endif
