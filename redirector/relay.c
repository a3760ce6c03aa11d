// SPDX-License-Identifier: GPL-2.0-or-later
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Copy or splice, per direction (the figures behind these choices are in
 * doc/architecture.md, Relay). Bytes are read into the thread's read
 * buffer and sent on at once; only what the destination does not take is
 * copied to a buffer of exactly that size. A direction whose reads fill
 * the buffer (64 KiB of a larger one) RELAY_SPLICE_AFTER times in a row is
 * bulk: if splice pays from its source, it takes a pipe and moves its
 * bytes with splice() (socket -> pipe -> socket: no copy through user
 * space; reads still stop while the pipe holds bytes). It gives the pipe
 * back after RELAY_SPLICE_SHORT short reads (less than a quarter of that)
 * in a row, at its source's EOF, or when a sweep (every RELAY_SWEEP_S)
 * finds that it has moved nothing since the last one. A splice the
 * sockets do not support (EINVAL, ENOSYS, EOPNOTSUPP) turns the direction
 * back to copying for good.
 *
 * Splice pays when the source is a TCP socket, whose splice_read hands its
 * pages to the pipe without a copy: to a TCP socket, which takes them as
 * they are, a third to a half less CPU per GB; to an MPTCP socket, whose
 * sendmsg copies them (as send() copies the read buffer), a few per cent.
 * An MPTCP socket has no splice_read (Linux 6.18): the kernel copies into
 * fresh pages, which costs 3-14 % more CPU than recv() into the warm read
 * buffer, so a direction from one copies. RELAY_SPLICE_MPTCP 1 lets it
 * splice too (to measure a newer kernel). */
#ifndef RELAY_SPLICE_AFTER
#define RELAY_SPLICE_AFTER 4     /* > 255: never */
#endif
#ifndef RELAY_SPLICE_SHORT
#define RELAY_SPLICE_SHORT 16
#endif
#ifndef RELAY_SPLICE_MPTCP
#define RELAY_SPLICE_MPTCP 0
#endif
#define RELAY_SWEEP_S 1.0

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

struct relay_pipe {
	int rd, wr;
	struct relay_dir *dir;
	struct relay_pipe *prev, *next; /* the thread's pipes */
	uint64_t mark;                  /* dir->bytes at the last sweep */
};

/* Process-wide. */
static atomic_size_t buffer_size = 65536;
static atomic_size_t buffered_total;
static atomic_uint pipes_open;
static atomic_bool splice_absent; /* ENOSYS: no thread tries again */

/* Per thread: its read buffer, its pipes and their sweep. */
static __thread struct {
	char *buf;
	size_t size;
	struct relay_pipe *pipes;
	struct ev_loop *loop; /* the sweep's */
	ev_timer sweep;
} th;

enum { IO_GONE = -1, IO_WAIT = 0, IO_OK = 1 };

int relay_set_buffer_size(size_t size)
{
	if (!size) {
		relay_thread_exit();
		return 0;
	}
	char *p = realloc(th.buf, size);
	if (!p)
		return -ENOMEM;
	th.buf = p;
	th.size = size;
	atomic_store(&buffer_size, size);
	return 0;
}

void relay_thread_exit(void)
{
	free(th.buf);
	th.buf = NULL;
	th.size = 0;
}

/* The thread's read buffer at the size in force (kept at its old size if
 * a new one cannot be had). */
static int thread_buffer(void)
{
	size_t want = atomic_load_explicit(&buffer_size, memory_order_relaxed);

	if (th.size == want)
		return 0;
	char *p = realloc(th.buf, want);
	if (!p)
		return th.buf ? 0 : -ENOMEM;
	th.buf = p;
	th.size = want;
	return 0;
}

size_t relay_buffered_bytes(void)
{
	return atomic_load_explicit(&buffered_total, memory_order_relaxed);
}

unsigned relay_pipes(void)
{
	return atomic_load_explicit(&pipes_open, memory_order_relaxed);
}

static void count(size_t add, size_t sub)
{
	if (add)
		atomic_fetch_add_explicit(&buffered_total, add,
					  memory_order_relaxed);
	if (sub)
		atomic_fetch_sub_explicit(&buffered_total, sub,
					  memory_order_relaxed);
}

/* (a function: the thresholds may be set beyond a streak's range) */
static bool at_least(unsigned streak, unsigned n)
{
	return streak >= n;
}

/* A read that brings this much (the whole buffer, or 64 KiB of a larger
 * one) finds the source with more queued than the relay takes at once. */
static size_t full_read(void)
{
	return th.size < 65536 ? th.size : 65536;
}

static bool pending(const struct relay_dir *d)
{
	return d->off < d->len;
}

static bool reading(const struct relay_dir *d)
{
	return !d->eof && !pending(d);
}

static int src_fd(const struct relay *r, const struct relay_dir *d)
{
	return r->io[d->src].fd;
}

static int dst_fd(const struct relay *r, const struct relay_dir *d)
{
	return r->io[!d->src].fd;
}

/* ---- copy --------------------------------------------------------------- */

static void set_pending(struct relay_dir *d, char *buf, uint32_t len)
{
	d->buf = buf;
	d->off = 0;
	d->len = len;
	count(len, 0);
}

/* ---- pipes -------------------------------------------------------------- */

static void give_back(struct relay_dir *d);

static void on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct relay_pipe *p = th.pipes, *next;

	for (; p; p = next) {
		next = p->next;
		if (!pending(p->dir) && p->dir->bytes == p->mark)
			give_back(p->dir);
		else
			p->mark = p->dir->bytes;
	}
}

static bool is_mptcp(int fd)
{
	int proto = 0;
	socklen_t len = sizeof(proto);

	return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 &&
	       proto == IPPROTO_MPTCP;
}

/* A pipe for a bulk direction, if one may be had: within RELAY_PIPES_MAX,
 * and not with the last eighth of the descriptor limit (new flows need
 * those). Otherwise the direction goes on copying. */
static bool take_pipe(struct ev_loop *loop, struct relay_dir *d)
{
	struct relay_pipe *p = NULL;
	struct rlimit rl;
	int fds[2];

	d->streak = 0; /* without a pipe: try again after as many full reads */
	if (atomic_load_explicit(&splice_absent, memory_order_relaxed)) {
		d->nosplice = true;
		return false;
	}
	if (atomic_fetch_add(&pipes_open, 1) >= RELAY_PIPES_MAX ||
	    !(p = malloc(sizeof(*p))))
		goto none;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		goto none;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)fds[1] >= rl.rlim_cur - rl.rlim_cur / 8) {
		close(fds[0]);
		close(fds[1]);
		goto none;
	}
	/* The pipe holds at most the read buffer's size, but in one slot
	 * per piece of socket buffer (often less than a page): 4 slots per
	 * page of it (the default is 16 slots), at most 1 MiB (what an
	 * unprivileged process may set). Only filled slots cost memory. */
	(void)fcntl(fds[1], F_SETPIPE_SZ,
		    th.size < 256 * 1024 ? 4 * (int)th.size : 1024 * 1024);
	p->rd = fds[0];
	p->wr = fds[1];
	p->dir = d;
	p->mark = d->bytes;
	p->prev = NULL;
	p->next = th.pipes;
	if (th.pipes) {
		th.pipes->prev = p;
	} else {
		th.loop = loop;
		ev_timer_init(&th.sweep, on_sweep, RELAY_SWEEP_S,
			      RELAY_SWEEP_S);
		ev_timer_start(loop, &th.sweep);
		ev_unref(loop); /* the sweep alone keeps no loop alive */
	}
	th.pipes = p;
	d->pipe = p;
	d->spliced = true;
	return true;
none:
	free(p);
	atomic_fetch_sub(&pipes_open, 1);
	return false;
}

/* Close a direction's pipe (it holds nothing counted any more). */
static void give_back(struct relay_dir *d)
{
	struct relay_pipe *p = d->pipe;

	close(p->rd);
	close(p->wr);
	if (p->prev)
		p->prev->next = p->next;
	else
		th.pipes = p->next;
	if (p->next)
		p->next->prev = p->prev;
	free(p);
	atomic_fetch_sub(&pipes_open, 1);
	d->pipe = NULL;
	d->spliced = false;
	d->streak = 0;
	if (!th.pipes) {
		ev_ref(th.loop);
		ev_timer_stop(th.loop, &th.sweep);
	}
}

/* Errors that say splice cannot be used on these descriptors (a real
 * error on the socket, if it was one, shows up again when copying). */
static bool splice_unsupported(int err)
{
	if (err == ENOSYS)
		atomic_store(&splice_absent, true);
	return err == EINVAL || err == ENOSYS || err == EOPNOTSUPP;
}

/* Drop pending bytes, whichever way they are held. */
static void drop_pending(struct relay_dir *d)
{
	count(0, d->len);
	if (d->spliced) {
		give_back(d);
	} else {
		free(d->buf);
		d->buf = NULL;
	}
	d->off = d->len = 0;
}

/* ---- both ways ---------------------------------------------------------- */

/* Each socket's watcher follows what its two directions need. */
static void update(struct ev_loop *loop, struct relay *r)
{
	for (int s = 0; s < 2; s++) {
		ev_io *w = &r->io[s];
		int want = (reading(&r->dir[s]) ? EV_READ : 0) |
			   (pending(&r->dir[!s]) ? EV_WRITE : 0);

		if (ev_is_active(w) ? (w->events & (EV_READ | EV_WRITE)) == want
				    : !want)
			continue;
		ev_io_stop(loop, w);
		if (!want)
			continue;
		ev_io_modify(w, want);
		ev_io_start(loop, w);
	}
}

static void fail(struct ev_loop *loop, struct relay *r, enum relay_side side,
		 int err)
{
	r->notify(loop, r, RELAY_EV_RESET, side, err);
}

/* EOF seen and nothing pending: pass the FIN on, once, and say whether the
 * whole relay is now finished. The relay may be gone after it. */
static void finish_dir(struct ev_loop *loop, struct relay *r,
		       struct relay_dir *d)
{
	d->shut = true;
	update(loop, r);
	if (shutdown(dst_fd(r, d), SHUT_WR) < 0 && errno != ENOTCONN) {
		fail(loop, r, !d->src, errno);
		return;
	}
	bool both = r->dir[0].shut && r->dir[1].shut;
	r->notify(loop, r, both ? RELAY_EV_DONE : RELAY_EV_HALF, d->src, 0);
}

static int flush_copy(struct ev_loop *loop, struct relay *r,
		      struct relay_dir *d)
{
	while (pending(d)) {
		ssize_t n = send(dst_fd(r, d), d->buf + d->off, d->len - d->off,
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return IO_WAIT;
			if (errno == EINTR)
				continue;
			fail(loop, r, !d->src, errno);
			return IO_GONE;
		}
		d->off += n;
		d->bytes += n;
	}
	drop_pending(d);
	return IO_OK;
}

/* The destination refuses splice: what the pipe holds becomes a pending
 * buffer, and the direction copies from now on. */
static int unsplice(struct ev_loop *loop, struct relay *r, struct relay_dir *d)
{
	uint32_t n = d->len - d->off, got = 0;
	char *b = malloc(n ? n : 1);

	if (!b) {
		fail(loop, r, d->src, ENOMEM);
		return IO_GONE;
	}
	while (got < n) {
		ssize_t k = read(d->pipe->rd, b + got, n - got);
		if (k <= 0) {
			if (k < 0 && errno == EINTR)
				continue;
			free(b);
			fail(loop, r, d->src, k < 0 ? errno : EIO);
			return IO_GONE;
		}
		got += k;
	}
	drop_pending(d);
	d->nosplice = true;
	set_pending(d, b, n);
	return flush_copy(loop, r, d);
}

static int flush_pipe(struct ev_loop *loop, struct relay *r,
		      struct relay_dir *d)
{
	while (pending(d)) {
		ssize_t n = splice(d->pipe->rd, NULL, dst_fd(r, d), NULL,
				   d->len - d->off,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return IO_WAIT;
			if (errno == EINTR)
				continue;
			if (splice_unsupported(errno))
				return unsplice(loop, r, d);
			fail(loop, r, !d->src, errno);
			return IO_GONE;
		}
		d->off += n;
		d->bytes += n;
	}
	count(0, d->len);
	d->off = d->len = 0;
	return IO_OK;
}

/* Send what is pending: IO_OK when all is out, IO_WAIT when the destination
 * is full, IO_GONE after reporting an error (the relay may be gone). */
static int flush(struct ev_loop *loop, struct relay *r, struct relay_dir *d)
{
	return d->spliced ? flush_pipe(loop, r, d) : flush_copy(loop, r, d);
}

static int read_copy(struct ev_loop *loop, struct relay *r,
		     struct relay_dir *d)
{
	if (thread_buffer() < 0) {
		fail(loop, r, d->src, ENOMEM);
		return IO_GONE;
	}
	ssize_t n = recv(src_fd(r, d), th.buf, th.size, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return IO_OK;
		fail(loop, r, d->src, errno);
		return IO_GONE;
	}
	if (n == 0) {
		d->eof = true;
		finish_dir(loop, r, d);
		return IO_GONE;
	}
	if ((size_t)n < full_read())
		d->streak = 0;
	else if (d->streak < UINT8_MAX)
		d->streak++;
	ssize_t sent = send(dst_fd(r, d), th.buf, n, MSG_NOSIGNAL);
	if (sent < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			fail(loop, r, !d->src, errno);
			return IO_GONE;
		}
		sent = 0;
	}
	d->bytes += sent;
	if (sent == n)
		return IO_OK;
	char *rest = malloc(n - sent);
	if (!rest) {
		fail(loop, r, d->src, ENOMEM);
		return IO_GONE;
	}
	memcpy(rest, th.buf + sent, n - sent);
	set_pending(d, rest, n - sent);
	return IO_WAIT;
}

static int read_pipe(struct ev_loop *loop, struct relay *r,
		     struct relay_dir *d)
{
	if (thread_buffer() < 0) {
		fail(loop, r, d->src, ENOMEM);
		return IO_GONE;
	}
	ssize_t n = splice(src_fd(r, d), NULL, d->pipe->wr, NULL, th.size,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return IO_OK;
		if (splice_unsupported(errno)) {
			give_back(d);
			d->nosplice = true;
			return read_copy(loop, r, d);
		}
		fail(loop, r, d->src, errno);
		return IO_GONE;
	}
	if (n == 0) {
		give_back(d);
		d->eof = true;
		finish_dir(loop, r, d);
		return IO_GONE;
	}
	if ((size_t)n >= full_read() / 4)
		d->streak = 0;
	else if (d->streak < UINT8_MAX)
		d->streak++;
	d->off = 0;
	d->len = n;
	count(n, 0);
	int rc = flush_pipe(loop, r, d);
	if (rc == IO_OK && d->spliced &&
	    at_least(d->streak, RELAY_SPLICE_SHORT))
		give_back(d); /* no longer bulk */
	return rc;
}

/* The source is readable: IO_OK (still reading), IO_WAIT (bytes pending) or
 * IO_GONE. */
static int read_dir(struct ev_loop *loop, struct relay *r, struct relay_dir *d)
{
	if (!d->spliced && !d->nosplice &&
	    at_least(d->streak, RELAY_SPLICE_AFTER)) {
		if (!RELAY_SPLICE_MPTCP && is_mptcp(src_fd(r, d)))
			d->nosplice = true; /* copying is cheaper */
		else
			take_pipe(loop, d);
	}
	return d->spliced ? read_pipe(loop, r, d) : read_copy(loop, r, d);
}

/* A socket is ready: it is the source of dir[side] and the destination of
 * dir[!side]. */
static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct relay *r = w->data;
	enum relay_side side = w == &r->io[RELAY_UP] ? RELAY_UP : RELAY_LAN;
	struct relay_dir *in = &r->dir[side], *out = &r->dir[!side];

	if ((revents & EV_WRITE) && pending(out)) {
		int rc = flush(loop, r, out);
		if (rc == IO_GONE)
			return;
		if (rc == IO_OK && out->eof) {
			finish_dir(loop, r, out);
			return;
		}
	}
	if ((revents & EV_READ) && reading(in) &&
	    read_dir(loop, r, in) == IO_GONE)
		return;
	update(loop, r);
}

static int init_dir(struct relay *r, enum relay_side src, const void *early,
		    size_t len)
{
	struct relay_dir *d = &r->dir[src];

	memset(d, 0, sizeof(*d));
	d->src = src;
	if (!len)
		return 0;
	char *copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, early, len);
	set_pending(d, copy, len);
	return 0;
}

int relay_start(struct ev_loop *loop, struct relay *r, int lan_fd, int up_fd,
		relay_notify_fn *notify, const void *pending_up,
		size_t pending_up_len, const void *pending_lan,
		size_t pending_lan_len)
{
	int fds[2] = { [RELAY_LAN] = lan_fd, [RELAY_UP] = up_fd };

	r->notify = notify;
	for (int i = 0; i < 2; i++) {
		ev_io_init(&r->io[i], on_io, fds[i], 0);
		r->io[i].data = r;
	}
	memset(r->dir, 0, sizeof(r->dir));
	if (thread_buffer() < 0 ||
	    init_dir(r, RELAY_LAN, pending_up, pending_up_len) < 0 ||
	    init_dir(r, RELAY_UP, pending_lan, pending_lan_len) < 0) {
		relay_stop(loop, r);
		return -ENOMEM;
	}
	update(loop, r);
	return 0;
}

void relay_stop(struct ev_loop *loop, struct relay *r)
{
	for (int i = 0; i < 2; i++) {
		ev_io_stop(loop, &r->io[i]);
		if (r->dir[i].buf) /* or its pipe */
			drop_pending(&r->dir[i]);
	}
}
