/* SPDX-License-Identifier: GPL-2.0-or-later */
/* control: the unix socket that `mpredir status` and `mpredir reload` talk
 * to (config control.socket). One request per connection: the client sends
 * one JSON object (a line), the daemon answers with one JSON object (a
 * line) and closes. Root only: the socket is created 0600, and a client
 * whose SO_PEERCRED uid is not 0 is answered with an error and closed
 * whatever the file's mode. A client that sends nothing valid within
 * CONTROL_TIMEOUT_S or more than CONTROL_MAX_REQUEST bytes gets an error;
 * at most CONTROL_MAX_CLIENTS are served at once (more wait in the
 * listen backlog). */
#ifndef MPREDIR_CONTROL_H
#define MPREDIR_CONTROL_H

#include <ev.h>
#include <json-c/json.h>

#define CONTROL_TIMEOUT_S 5.0
#define CONTROL_MAX_REQUEST 4096
#define CONTROL_MAX_CLIENTS 16

/* Answer one request (a JSON object with at least "request": NAME).
 * Returns the answer, an object the control module frees. */
typedef struct json_object *control_handler(struct json_object *req,
					    void *arg);

struct control;

/* An answer that says why a request failed: {"ok": false, "error": ...}. */
struct json_object *control_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* Listen on path (a stale socket file left by a dead daemon is replaced;
 * a live one is an error: another daemon runs). NULL with *what naming
 * the failed step and *err an errno. */
struct control *control_open(struct ev_loop *loop, const char *path,
			     control_handler *h, void *arg, const char **what,
			     int *err);
/* Move to another path (reload): the old socket file goes, the clients
 * being served stay. 0 or -errno (*what), the old socket then kept. */
int control_rebind(struct control *c, const char *path, const char **what);
const char *control_path(const struct control *c);
/* Close everything and remove the socket file. NULL-safe. May be called
 * from the handler (a reload that turns the socket off): that client gets
 * its answer first. */
void control_close(struct control *c);

/* Client side: send req to the daemon at path and wait (at most timeout_s)
 * for its answer. 0 with *answer set, or -1 with a message in errbuf. */
int control_request(const char *path, struct json_object *req,
		    double timeout_s, struct json_object **answer,
		    char *errbuf, size_t errlen);

#endif
