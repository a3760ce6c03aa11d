// SPDX-License-Identifier: GPL-2.0-or-later
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct client {
	struct control *c;
	struct client *next;
	ev_io io;
	ev_timer timer;
	int fd;
	size_t in_len;
	char in[CONTROL_MAX_REQUEST];
	struct json_object *ans; /* the answer, once there is one */
	const char *out;         /* its text (owned by ans), then "\n" */
	size_t out_len, out_off;
	bool refused;            /* not root: its request gets an error */
	bool busy;               /* its request is being handled */
};

struct control {
	struct ev_loop *loop;
	control_handler *handler;
	void *arg;
	ev_io accept_io;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct client *clients;
	unsigned n_clients;
	struct log_limit refused_log; /* non-root clients */
	bool closing;  /* closed from a handler: freed with its last client */
};

/* ---- serving ------------------------------------------------------------ */

static void client_free(struct client *cl)
{
	struct control *c = cl->c;

	for (struct client **p = &c->clients; *p; p = &(*p)->next)
		if (*p == cl) {
			*p = cl->next;
			break;
		}
	c->n_clients--;
	ev_io_stop(c->loop, &cl->io);
	ev_timer_stop(c->loop, &cl->timer);
	/* unread input would make the close a reset that can destroy the
	 * answer before the client reads it (a request too long) */
	char sink[4096];
	for (int i = 0; i < 16 && recv(cl->fd, sink, sizeof(sink),
				       MSG_DONTWAIT) > 0; i++)
		;
	close(cl->fd);
	json_object_put(cl->ans);
	free(cl);
	if (c->closing && !c->clients)
		free(c);
	else if (!c->closing && !ev_is_active(&c->accept_io))
		ev_io_start(c->loop, &c->accept_io); /* room again */
}

/* Send the answer's text, then its newline; free the client once done. */
static void on_client_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *cl = w->data;

	while (cl->out_off <= cl->out_len) {
		struct iovec iov[2];
		struct msghdr mh = { .msg_iov = iov };
		if (cl->out_off < cl->out_len)
			iov[mh.msg_iovlen++] = (struct iovec){
				(void *)(cl->out + cl->out_off),
				cl->out_len - cl->out_off };
		iov[mh.msg_iovlen++] = (struct iovec){ (void *)"\n", 1 };
		ssize_t n = sendmsg(cl->fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			break; /* the client went away: nothing to do */
		cl->out_off += (size_t)n;
	}
	client_free(cl);
}

/* Queue the answer (its ownership passes here) and start sending it: the
 * client then has CONTROL_TIMEOUT_S to read it. The client may be freed
 * when this returns. */
static void answer(struct client *cl, struct json_object *ans)
{
	struct control *c = cl->c;
	const char *s = json_object_to_json_string_ext(
		ans, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

	cl->ans = ans;
	cl->out = s ? s : "{}";
	cl->out_len = strlen(cl->out);
	ev_io_stop(c->loop, &cl->io);
	ev_io_init(&cl->io, on_client_write, cl->fd, EV_WRITE);
	cl->io.data = cl;
	ev_io_start(c->loop, &cl->io);
	ev_timer_stop(c->loop, &cl->timer);
	ev_timer_set(&cl->timer, CONTROL_TIMEOUT_S, 0);
	ev_timer_start(c->loop, &cl->timer);
	on_client_write(c->loop, &cl->io, EV_WRITE);
}

struct json_object *control_error(const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	return o;
}

/* A whole request is in (a newline, or EOF): parse it and answer. */
static void handle(struct client *cl)
{
	if (cl->refused) {
		answer(cl, control_error("permission denied: the control "
					"socket is for root"));
		return;
	}
	struct json_tokener *tok = json_tokener_new();
	struct json_object *req = NULL;

	if (tok) {
		req = json_tokener_parse_ex(tok, cl->in, (int)cl->in_len);
		if (json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(req);
			req = NULL;
		}
		json_tokener_free(tok);
	}
	struct json_object *name;
	if (!req || !json_object_is_type(req, json_type_object) ||
	    !json_object_object_get_ex(req, "request", &name) ||
	    !json_object_is_type(name, json_type_string)) {
		json_object_put(req);
		answer(cl, control_error("not a request: expected a JSON object "
					"with a \"request\" string"));
		return;
	}
	cl->busy = true; /* the handler may close the control socket */
	struct json_object *ans = cl->c->handler(req, cl->c->arg);
	cl->busy = false;
	json_object_put(req);
	answer(cl, ans ? ans : control_error("out of memory"));
}

static void on_client_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *cl = w->data;

	for (;;) {
		if (cl->in_len == sizeof(cl->in)) {
			if (cl->refused)
				handle(cl);
			else
				answer(cl, control_error("request longer than "
							 "%d bytes",
							 CONTROL_MAX_REQUEST));
			return;
		}
		ssize_t n = recv(cl->fd, cl->in + cl->in_len,
				 sizeof(cl->in) - cl->in_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			client_free(cl);
			return;
		}
		if (n == 0 || memchr(cl->in + cl->in_len, '\n', (size_t)n)) {
			cl->in_len += (size_t)n;
			handle(cl);
			return;
		}
		cl->in_len += (size_t)n;
	}
}

static void on_client_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct client *cl = t->data;

	if (cl->ans) {
		client_free(cl); /* it does not read its answer */
		return;
	}
	/* (answer() gives it CONTROL_TIMEOUT_S more to read this) */
	answer(cl, control_error("no complete request within %.0f s",
				 CONTROL_TIMEOUT_S));
}

static bool peer_is_root(int fd, uid_t *uid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	*uid = cr.uid;
	return cr.uid == 0;
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct control *c = w->data;

	for (;;) {
		if (c->n_clients >= CONTROL_MAX_CLIENTS) {
			/* the rest wait in the backlog until one is done */
			ev_io_stop(loop, &c->accept_io);
			return;
		}
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_debug("control: accept: %s", strerror(errno));
			return;
		}
		uid_t uid = (uid_t)-1;
		bool root = peer_is_root(fd, &uid);
		if (!root)
			log_limited(&c->refused_log, ev_now(loop), LOG_LVL_WARN,
				    "control: refusing a client with uid %d "
				    "(root only)", (int)uid);
		struct client *cl;
		if (!(cl = calloc(1, sizeof(*cl)))) {
			close(fd);
			continue;
		}
		cl->c = c;
		cl->fd = fd;
		cl->refused = !root; /* answered once it has sent its request */
		cl->next = c->clients;
		c->clients = cl;
		c->n_clients++;
		ev_io_init(&cl->io, on_client_read, fd, EV_READ);
		cl->io.data = cl;
		ev_io_start(loop, &cl->io);
		ev_timer_init(&cl->timer, on_client_timeout, CONTROL_TIMEOUT_S, 0);
		cl->timer.data = cl;
		ev_timer_start(loop, &cl->timer);
	}
}

/* ---- the socket --------------------------------------------------------- */

static int fill_addr(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
}

/* Whether a daemon answers at path: 1 yes, 0 no (nothing there, or a
 * socket left by a dead daemon), -errno when that cannot be told or
 * something else is there (never removed: a typo must not delete a
 * file). */
static int live_socket(const char *path)
{
	struct sockaddr_un sun;
	struct stat st;
	int rc = fill_addr(&sun, path);

	if (rc < 0)
		return rc;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* EAGAIN: its backlog is full, so it is alive */
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ||
	     errno == EAGAIN ? 1
	     : errno == ECONNREFUSED || errno == ENOENT ? 0 : -errno;
	close(fd);
	return rc;
}

/* A listening socket at path, mode 0600. -errno with *what. */
static int listen_at(const char *path, const char **what)
{
	struct sockaddr_un sun;
	int rc;

	*what = "path";
	if ((rc = fill_addr(&sun, path)) < 0)
		return rc;
	*what = "checking for another daemon";
	rc = live_socket(path);
	if (rc == 1) {
		*what = "another mpredir answers there";
		return -EADDRINUSE;
	}
	if (rc == -EEXIST)
		*what = "a file that is not a socket is there";
	if (rc < 0)
		return rc;
	*what = "removing a stale socket";
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	*what = "socket";
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* never reachable by others, not even between bind and chmod */
	mode_t old = umask(0077);
	*what = "bind";
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc == 0) {
		*what = "chmod";
		rc = chmod(path, 0600);
	}
	if (rc == 0) {
		*what = "listen";
		rc = listen(fd, CONTROL_MAX_CLIENTS);
	}
	if (rc < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

struct control *control_open(struct ev_loop *loop, const char *path,
			     control_handler *h, void *arg, const char **what,
			     int *err)
{
	struct control *c = calloc(1, sizeof(*c));
	if (!c) {
		*what = "control";
		*err = ENOMEM;
		return NULL;
	}
	c->fd = listen_at(path, what);
	if (c->fd < 0) {
		*err = -c->fd;
		free(c);
		return NULL;
	}
	c->loop = loop;
	c->handler = h;
	c->arg = arg;
	c->refused_log.interval_s = 1.0;
	snprintf(c->path, sizeof(c->path), "%s", path);
	ev_io_init(&c->accept_io, on_accept, c->fd, EV_READ);
	c->accept_io.data = c;
	ev_io_start(loop, &c->accept_io);
	return c;
}

int control_rebind(struct control *c, const char *path, const char **what)
{
	if (strcmp(path, c->path) == 0)
		return 0;
	int fd = listen_at(path, what);
	if (fd < 0)
		return fd;
	ev_io_stop(c->loop, &c->accept_io);
	close(c->fd);
	unlink(c->path);
	c->fd = fd;
	snprintf(c->path, sizeof(c->path), "%s", path);
	ev_io_set(&c->accept_io, fd, EV_READ);
	ev_io_start(c->loop, &c->accept_io);
	return 0;
}

const char *control_path(const struct control *c)
{
	return c->path;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	ev_io_stop(c->loop, &c->accept_io);
	close(c->fd);
	unlink(c->path);
	for (struct client *cl = c->clients, *next; cl; cl = next) {
		next = cl->next;
		if (!cl->busy)
			client_free(cl);
	}
	if (!c->clients)
		free(c);
	else
		c->closing = true; /* called from a handler: its client ends it */
}

/* ---- client side -------------------------------------------------------- */

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait for fd to be ready for `events` until deadline: 0, or -1 (timeout
 * or error, errno set). */
static int wait_fd(int fd, short events, double deadline)
{
	for (;;) {
		double left = deadline - mono_now();
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd p = { .fd = fd, .events = events };
		int rc = poll(&p, 1, (int)(left * 1000) + 1);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

static int connect_error(const char *path, int err, char *errbuf,
			 size_t errlen)
{
	const char *hint = err == ENOENT ? ": is mpredir running? (see "
					   "control.socket in its config)"
			 : err == ECONNREFUSED ? ": mpredir is not running (a "
						 "stale socket)"
			 : err == EACCES || err == EPERM ? ": the control "
							  "socket is for root"
			 : "";
	snprintf(errbuf, errlen, "%s: %s%s", path, strerror(err), hint);
	return -1;
}

/* Read until EOF (the daemon closes after its answer). */
static char *read_answer(int fd, double deadline, char *errbuf, size_t errlen)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);

	while (buf) {
		if (len + 1 == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (n == 0) {
			buf[len] = '\0';
			return buf;
		}
		if (errno == EINTR)
			continue;
		if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
		    wait_fd(fd, POLLIN, deadline) == 0)
			continue;
		snprintf(errbuf, errlen, "reading the answer: %s",
			 strerror(errno));
		free(buf);
		return NULL;
	}
	free(buf);
	snprintf(errbuf, errlen, "reading the answer: out of memory");
	return NULL;
}

int control_request(const char *path, struct json_object *req,
		    double timeout_s, struct json_object **answer_out,
		    char *errbuf, size_t errlen)
{
	double deadline = mono_now() + timeout_s;
	struct sockaddr_un sun;

	if (fill_addr(&sun, path) < 0)
		return connect_error(path, ENAMETOOLONG, errbuf, errlen);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return connect_error(path, errno, errbuf, errlen);
	/* a full backlog (EAGAIN) is waited out, up to the deadline */
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int err = errno;
		if (err == EINTR)
			continue;
		if (err == EAGAIN && mono_now() < deadline) {
			poll(NULL, 0, 10);
			continue;
		}
		close(fd);
		return connect_error(path, err, errbuf, errlen);
	}
	const char *s = json_object_to_json_string_ext(
		req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len = strlen(s), off = 0;
	while (off <= len) { /* the text, then "\n" */
		ssize_t n = off < len ? send(fd, s + off, len - off, MSG_NOSIGNAL)
				      : send(fd, "\n", 1, MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || ((errno == EAGAIN) &&
		    wait_fd(fd, POLLOUT, deadline) == 0)))
			continue;
		if (n < 0)
			break; /* the daemon may have answered and closed (a
				* refusal): its answer is still there to read */
		off += (size_t)n;
	}
	char *text = read_answer(fd, deadline, errbuf, errlen);
	close(fd);
	if (!text)
		return -1;
	enum json_tokener_error jerr;
	*answer_out = json_tokener_parse_verbose(text, &jerr);
	if (!*answer_out || !json_object_is_type(*answer_out, json_type_object)) {
		snprintf(errbuf, errlen, "the daemon's answer is not JSON%s",
			 text[0] ? "" : " (empty)");
		json_object_put(*answer_out);
		*answer_out = NULL;
		free(text);
		return -1;
	}
	free(text);
	return 0;
}
