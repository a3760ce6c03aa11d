// SPDX-License-Identifier: GPL-2.0-or-later
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "relay.h"
#include "status.h"
#include "upstream.h"

enum request { REQ_NONE, REQ_APPLY, REQ_REPORT, REQ_STOP };

struct worker {
	unsigned index;
	struct ev_loop *loop;
	struct flow_env env;
	struct listener listener;
	bool thread_running;
	pthread_t thread;
	/* requests from the main thread, one at a time */
	ev_async wake;
	pthread_mutex_t lock;
	pthread_cond_t done;
	enum request req;            /* REQ_NONE once done */
	struct upstream *apply_ups;
	bool apply_tproxy;
	struct listener *apply_listener;
	struct worker_report *report;
};

/* ---- what a request does, in the worker's thread -------------------------- */

static void do_apply(struct worker *w, struct upstream *ups, bool tproxy,
		     struct listener *l)
{
	struct upstream *old = w->env.ups;

	w->env.ups = upstream_ref(ups);
	w->env.tproxy = tproxy;
	if (pool_start_all(w->loop, ups, old, w->index) < 0)
		log_error("worker %u: warm connections: out of memory",
			  w->index);
	if (old) {
		pool_stop_all(old, w->index);
		upstream_unref(old);
	}
	if (relay_set_buffer_size(ups->cfg->buffer_size) < 0)
		log_error("worker %u: relay buffer: out of memory", w->index);
	if (l) {
		listener_close(w->loop, &w->listener);
		w->listener = *l;
		w->listener.env = &w->env;
		listener_start(w->loop, &w->listener);
	}
}

static void do_stop(struct worker *w)
{
	listener_close(w->loop, &w->listener);
	flow_close_all(w->loop, &w->env);
	if (w->env.ups) {
		pool_stop_all(w->env.ups, w->index);
		upstream_unref(w->env.ups);
		w->env.ups = NULL;
	}
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
	struct worker *w = a->data;

	pthread_mutex_lock(&w->lock);
	enum request req = w->req;
	pthread_mutex_unlock(&w->lock);
	switch (req) {
	case REQ_NONE:
		return;
	case REQ_APPLY:
		do_apply(w, w->apply_ups, w->apply_tproxy, w->apply_listener);
		break;
	case REQ_REPORT:
		status_worker_report(&w->env, w->report);
		break;
	case REQ_STOP:
		do_stop(w);
		ev_async_stop(loop, &w->wake);
		ev_break(loop, EVBREAK_ALL);
		break;
	}
	pthread_mutex_lock(&w->lock);
	w->req = REQ_NONE;
	pthread_cond_signal(&w->done);
	pthread_mutex_unlock(&w->lock);
}

static void *thread_main(void *arg)
{
	struct worker *w = arg;

	ev_run(w->loop, 0);
	relay_thread_exit();
	return NULL;
}

/* Hand a request to the worker's thread and wait until it is done (the
 * main thread's loop pauses meanwhile: requests are quick). */
static void ask(struct worker *w, enum request req)
{
	pthread_mutex_lock(&w->lock);
	w->req = req;
	pthread_mutex_unlock(&w->lock);
	ev_async_send(w->loop, &w->wake);
	pthread_mutex_lock(&w->lock);
	while (w->req != REQ_NONE)
		pthread_cond_wait(&w->done, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* ---- API ------------------------------------------------------------------ */

struct worker *worker_new(struct flow_shared *shared, unsigned index,
			  struct ev_loop *loop)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (!w) {
		log_error("worker %u: out of memory", index);
		return NULL;
	}
	w->index = index;
	w->loop = index ? ev_loop_new(EVFLAG_AUTO) : loop;
	if (!w->loop) {
		log_error("worker %u: cannot create its event loop", index);
		free(w);
		return NULL;
	}
	w->env.worker = index;
	w->env.shared = shared;
	w->listener.fd = w->listener.reserve_fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->done, NULL);
	ev_async_init(&w->wake, on_wake);
	w->wake.data = w;
	if (index)
		ev_async_start(w->loop, &w->wake);
	return w;
}

struct listener *worker_listener(struct worker *w)
{
	return &w->listener;
}

struct flow_env *worker_env(struct worker *w)
{
	return &w->env;
}

int worker_run(struct worker *w)
{
	int rc = pthread_create(&w->thread, NULL, thread_main, w);
	if (rc)
		return -rc;
	w->thread_running = true;
	return 0;
}

void worker_apply(struct worker *w, struct upstream *ups, bool tproxy,
		  struct listener *l)
{
	if (!w->thread_running) {
		do_apply(w, ups, tproxy, l);
		return;
	}
	w->apply_ups = ups;
	w->apply_tproxy = tproxy;
	w->apply_listener = l;
	ask(w, REQ_APPLY);
}

void worker_report(struct worker *w, struct worker_report *rep)
{
	if (!w->thread_running) {
		status_worker_report(&w->env, rep);
		return;
	}
	w->report = rep;
	ask(w, REQ_REPORT);
}

void worker_stop(struct worker *w)
{
	if (!w)
		return;
	if (w->thread_running) {
		ask(w, REQ_STOP);
		pthread_join(w->thread, NULL);
	} else {
		do_stop(w);
		ev_async_stop(w->loop, &w->wake);
	}
	if (w->index)
		ev_loop_destroy(w->loop);
	pthread_cond_destroy(&w->done);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
