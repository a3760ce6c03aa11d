/* SPDX-License-Identifier: GPL-2.0-or-later */
/* relay: two independent one-way pipes between the LAN socket and the
 * upstream socket. Per direction: at most one bounded pending buffer
 * (allocated only while the destination cannot take the bytes: an idle
 * flow holds no buffer), EOF seen, SHUT_WR sent, byte count. Reads only
 * while nothing is pending (backpressure: a slow reader never grows
 * memory); after EOF and an empty buffer, shutdown(SHUT_WR) once.
 *
 * Bytes are copied through the calling thread's read buffer; a direction
 * from a TCP socket that keeps filling it (bulk) moves its bytes with
 * splice() through a pipe of its own instead, which it gives back once it
 * has been idle for a second or its source has ended (relay.c says when,
 * and why not from an MPTCP socket). A pipe costs two
 * descriptors: at most RELAY_PIPES_MAX pipes exist in the process, and a
 * pipe is never made with the last eighth of the descriptor limit, so
 * pipes never take the descriptors new flows need; without a pipe, a
 * direction simply copies. splice() needs SIGPIPE ignored (the daemon
 * does): it reports a reset destination with a signal as well as EPIPE.
 *
 * Threads: every thread may run relays on its own loop (a relay stays on
 * the loop it was started on). Each thread's read buffer is allocated at
 * its first relay_start(), with the size set by relay_set_buffer_size();
 * a thread that ends calls relay_thread_exit() once all its relays are
 * stopped. relay_buffered_bytes() and the pipe count are process-wide. */
#ifndef MPREDIR_RELAY_H
#define MPREDIR_RELAY_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum relay_side { RELAY_LAN = 0, RELAY_UP = 1 };

/* Pipes held by all relays at most (two descriptors each). */
#define RELAY_PIPES_MAX 256

struct relay_pipe;

struct relay_dir {
	union {
		char *buf;               /* copy: pending bytes [off, len) */
		struct relay_pipe *pipe; /* splice: the pipe, len - off in it */
	};                               /* NULL when none */
	uint32_t off, len;
	uint64_t bytes;  /* delivered to the destination */
	uint8_t src;     /* enum relay_side of the source: index in relay.dir */
	uint8_t streak;  /* copy: full reads in a row; splice: short ones */
	bool eof;        /* the source reached EOF */
	bool shut;       /* SHUT_WR sent to the destination */
	bool spliced;    /* the union holds a pipe */
	bool nosplice;   /* splice does not pay or failed here: copy only */
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
	/* One watcher per socket ([RELAY_LAN], [RELAY_UP]; the fd is in
	 * io[i].fd): readable for the direction it is the source of,
	 * writable for the one it is the destination of. */
	ev_io io[2];
	struct relay_dir dir[2]; /* [RELAY_LAN]: LAN -> up, [RELAY_UP]: up -> LAN */
	relay_notify_fn *notify;
};

/* Start relaying between two connected non-blocking sockets. `pending[i]`
 * (may be empty) are bytes already read from side i's source that must go
 * out first, e.g. payload that followed the SOCKS reply; they are copied.
 * Returns 0 or -ENOMEM. The fds stay owned by the caller. A relay that was
 * zeroed and never started may be given to relay_stop(). */
int relay_start(struct ev_loop *loop, struct relay *r, int lan_fd, int up_fd,
		relay_notify_fn *notify, const void *pending_up,
		size_t pending_up_len, const void *pending_lan,
		size_t pending_lan_len);
/* Stop all watchers, free the buffers, close the pipes (idempotent). From
 * the thread that started it. */
void relay_stop(struct ev_loop *loop, struct relay *r);

/* Size of each thread's read buffer; also the cap of what one direction
 * can hold pending. Any thread, at start and reload (default 65536):
 * threads take the new size at their next read. The calling thread's
 * buffer is resized at once: -ENOMEM if that fails (the size stays). 0
 * frees the calling thread's buffer (as relay_thread_exit()). */
int relay_set_buffer_size(size_t size);

/* A thread that ran relays ends: its read buffer is freed. Call it after
 * all of the thread's relays are stopped, before its loop is destroyed. */
void relay_thread_exit(void);

/* Bytes held in pending buffers and pipes by all relays, every thread
 * (for status and tests). */
size_t relay_buffered_bytes(void);

/* Pipes open now, all threads (for tests and status). */
unsigned relay_pipes(void);

#endif
