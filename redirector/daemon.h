/* SPDX-License-Identifier: GPL-2.0-or-later */
/* daemon: the running daemon's parts, as main.c starts them; status.c reads
 * them to answer `mpredir status`. */
#ifndef MPREDIR_DAEMON_H
#define MPREDIR_DAEMON_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "flow.h"

struct daemon {
	struct ev_loop *loop;       /* the main loop (worker 0's too) */
	const char *config_path;
	struct upstream *ups;       /* the server set (and config) in force */
	struct flow_shared shared;  /* what the workers share */
	struct worker *workers[CONFIG_MAX_WORKERS];
	unsigned n_workers;
	struct rtmon *rtmon;
	struct capture *capture;    /* NULL when firewall.enabled is false */
	struct linkmon *linkmon;    /* NULL without wans */
	struct control *control;    /* NULL when control.socket is "" */
	ev_signal sig_term, sig_int, sig_hup;
	/* byte credits for the WANs from the other workers' flows */
	ev_async credit_wake;
	pthread_mutex_t credit_lock;
	struct wan_credit *credits;
	size_t n_credits, cap_credits;
	time_t started;             /* wall clock */
	double started_mono;        /* ev_now() */
	time_t config_loaded;       /* when the configuration in force was read */
	uint64_t reloads, reloads_refused;
};

#endif
