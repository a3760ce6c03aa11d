/* SPDX-License-Identifier: GPL-2.0-or-later */
/* daemon: the running daemon's parts, as main.c starts them; status.c reads
 * them to answer `mpredir status`. */
#ifndef MPREDIR_DAEMON_H
#define MPREDIR_DAEMON_H

#include <ev.h>
#include <stdint.h>
#include <time.h>

#include "flow.h"
#include "listener.h"

struct daemon {
	struct ev_loop *loop;
	const char *config_path;
	struct flow_env env;      /* env.ups->cfg is the configuration in force */
	struct listener listener;
	struct rtmon *rtmon;
	struct capture *capture;  /* NULL when firewall.enabled is false */
	struct control *control;  /* NULL when control.socket is "" */
	ev_signal sig_term, sig_int, sig_hup;
	time_t started;           /* wall clock */
	double started_mono;      /* ev_now() */
	time_t config_loaded;     /* when the configuration in force was read */
	uint64_t reloads, reloads_refused;
};

#endif
