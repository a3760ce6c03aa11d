// SPDX-License-Identifier: GPL-2.0-or-later
#include "relay.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* One read buffer for every flow of the loop (so one per worker thread):
 * bytes are read into it and sent on at once; only what the destination
 * does not take is copied to a per-direction buffer of exactly that size. */
static __thread char *scratch;
static __thread size_t scratch_size;
static size_t buffered_total; /* all threads: atomic */

int relay_set_buffer_size(size_t size)
{
	if (!size) {
		free(scratch);
		scratch = NULL;
		scratch_size = 0;
		return 0;
	}
	char *p = realloc(scratch, size);
	if (!p)
		return -ENOMEM;
	scratch = p;
	scratch_size = size;
	return 0;
}

void relay_thread_exit(void)
{
	relay_set_buffer_size(0);
}

size_t relay_buffered_bytes(void)
{
	return __atomic_load_n(&buffered_total, __ATOMIC_RELAXED);
}

static struct relay *relay_of(struct relay_dir *d)
{
	struct relay_dir *first = d - d->src;
	return (struct relay *)((char *)first - offsetof(struct relay, dir));
}

static void set_pending(struct relay_dir *d, char *buf, uint32_t len)
{
	d->buf = buf;
	d->off = 0;
	d->len = len;
	__atomic_add_fetch(&buffered_total, len, __ATOMIC_RELAXED);
}

static void drop_pending(struct relay_dir *d)
{
	if (!d->buf)
		return;
	__atomic_sub_fetch(&buffered_total, d->len, __ATOMIC_RELAXED);
	free(d->buf);
	d->buf = NULL;
	d->off = d->len = 0;
}

/* EOF seen and nothing pending: pass the FIN on, once, and say whether the
 * whole relay is now finished. */
static void finish_dir(struct ev_loop *loop, struct relay *r,
		       struct relay_dir *d)
{
	int dst = r->fd[!d->src];

	d->shut = true;
	if (shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) {
		r->notify(loop, r, RELAY_EV_RESET, !d->src, errno);
		return;
	}
	bool both = r->dir[0].shut && r->dir[1].shut;
	r->notify(loop, r, both ? RELAY_EV_DONE : RELAY_EV_HALF, d->src, 0);
}

static void fail(struct ev_loop *loop, struct relay *r, enum relay_side side,
		 int err)
{
	r->notify(loop, r, RELAY_EV_RESET, side, err);
}

/* Send what is pending. Returns 1 when all is out, 0 when the destination
 * is full, -1 after reporting an error (the relay may be gone). */
static int flush(struct ev_loop *loop, struct relay *r, struct relay_dir *d)
{
	int dst = r->fd[!d->src];

	while (d->off < d->len) {
		ssize_t n = send(dst, d->buf + d->off, d->len - d->off,
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			fail(loop, r, !d->src, errno);
			return -1;
		}
		d->off += n;
		d->bytes += n;
	}
	drop_pending(d);
	return 1;
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct relay_dir *d = (struct relay_dir *)w; /* rd is the first member */
	struct relay *r = relay_of(d);
	int dst = r->fd[!d->src];

	ssize_t n = recv(w->fd, scratch, scratch_size, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			fail(loop, r, d->src, errno);
		return;
	}
	if (n == 0) {
		d->eof = true;
		ev_io_stop(loop, &d->rd);
		finish_dir(loop, r, d);
		return;
	}
	ssize_t sent = send(dst, scratch, n, MSG_NOSIGNAL);
	if (sent < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			fail(loop, r, !d->src, errno);
			return;
		}
		sent = 0;
	}
	d->bytes += sent;
	if (sent == n)
		return;
	char *rest = malloc(n - sent);
	if (!rest) {
		fail(loop, r, d->src, ENOMEM);
		return;
	}
	memcpy(rest, scratch + sent, n - sent);
	set_pending(d, rest, n - sent);
	ev_io_stop(loop, &d->rd);
	ev_io_start(loop, &d->wr);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct relay_dir *d = (struct relay_dir *)((char *)w -
						   offsetof(struct relay_dir, wr));
	struct relay *r = relay_of(d);

	int rc = flush(loop, r, d);
	if (rc <= 0)
		return;
	ev_io_stop(loop, &d->wr);
	if (d->eof)
		finish_dir(loop, r, d);
	else
		ev_io_start(loop, &d->rd);
}

static int init_dir(struct relay *r, enum relay_side src, const void *pending,
		    size_t len)
{
	struct relay_dir *d = &r->dir[src];

	memset(d, 0, sizeof(*d));
	d->src = src;
	ev_io_init(&d->rd, on_readable, r->fd[src], EV_READ);
	ev_io_init(&d->wr, on_writable, r->fd[!src], EV_WRITE);
	if (!len)
		return 0;
	char *copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, pending, len);
	set_pending(d, copy, len);
	return 0;
}

int relay_start(struct ev_loop *loop, struct relay *r, int lan_fd, int up_fd,
		relay_notify_fn *notify, const void *pending_up,
		size_t pending_up_len, const void *pending_lan,
		size_t pending_lan_len)
{
	r->fd[RELAY_LAN] = lan_fd;
	r->fd[RELAY_UP] = up_fd;
	r->notify = notify;
	if (!scratch && relay_set_buffer_size(65536) < 0)
		return -ENOMEM;
	if (init_dir(r, RELAY_LAN, pending_up, pending_up_len) < 0 ||
	    init_dir(r, RELAY_UP, pending_lan, pending_lan_len) < 0) {
		drop_pending(&r->dir[RELAY_LAN]);
		return -ENOMEM;
	}
	for (int i = 0; i < 2; i++)
		ev_io_start(loop, r->dir[i].buf ? &r->dir[i].wr : &r->dir[i].rd);
	return 0;
}

void relay_stop(struct ev_loop *loop, struct relay *r)
{
	for (int i = 0; i < 2; i++) {
		ev_io_stop(loop, &r->dir[i].rd);
		ev_io_stop(loop, &r->dir[i].wr);
		drop_pending(&r->dir[i]);
	}
}
