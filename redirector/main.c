// SPDX-License-Identifier: GPL-2.0-or-later
/* main: command line, start and stop order, signals, reload. */
#include <ev.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "capture.h"
#include "cli.h"
#include "config.h"
#include "control.h"
#include "daemon.h"
#include "flow.h"
#include "linkmon.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "relay.h"
#include "status.h"
#include "upstream.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mpredir -c FILE [--syslog]   run in the foreground\n"
		"       mpredir --check -c FILE      validate FILE and exit\n"
		"       mpredir status [--json] [--flows [--limit N]] [-c FILE | --socket PATH]\n"
		"       mpredir reload [-c FILE | --socket PATH]\n"
		"       mpredir --version | --help\n"
		"\n"
		"Redirects LAN TCP flows (sent to its listener by nftables) to a\n"
		"SOCKS5 server over one Multipath TCP connection per flow.\n"
		"\n"
		"  -c, --config FILE  JSON configuration (see doc/configuration.md)\n"
		"  -t, --check        validate the configuration: exit 0 if valid,\n"
		"                     else 1 with one line per error\n"
		"  -s, --syslog       log to syslog instead of stderr\n"
		"  status             what the running daemon does (doc/status.md)\n"
		"  reload             make it apply its configuration file again\n"
		"  -V, --version      print the version\n"
		"  -h, --help         this text\n");
}

static struct config *load(const char *path)
{
	struct config_errors errs = { 0 };
	struct config *cfg = config_load_file(path, &errs);

	for (size_t i = 0; i < errs.n; i++)
		log_error("%s", errs.lines[i]);
	if (!cfg)
		log_error("%s: invalid configuration", path);
	config_errors_free(&errs);
	return cfg;
}

/* Two descriptors per flow plus some for the daemon itself. */
static void raise_fd_limit(unsigned max_flows)
{
	struct rlimit rl;
	rlim_t want = 2 * (rlim_t)max_flows + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < want)
		log_warn("descriptor limit %llu is below the %llu that "
			 "max_flows %u needs: flows beyond it will be reset",
			 (unsigned long long)rl.rlim_cur,
			 (unsigned long long)want, max_flows);
}

/* Fast Open needs the client bit (1) of net.ipv4.tcp_fastopen. */
static void check_fast_open(const struct config *cfg)
{
	if (cfg->fast_open == CONFIG_OFF)
		return;
	FILE *fp = fopen("/proc/sys/net/ipv4/tcp_fastopen", "r");
	int val = 0;
	if (!fp)
		return;
	if (fscanf(fp, "%i", &val) == 1 && !(val & 1))
		log_msg(cfg->fast_open == CONFIG_ON || !cfg->mptcp ? LOG_LVL_WARN
								  : LOG_LVL_INFO,
			"net.ipv4.tcp_fastopen is %d, without the client bit "
			"(1): upstream connections will not use Fast Open "
			"(sysctl -w net.ipv4.tcp_fastopen=%d)", val, val | 1);
	fclose(fp);
}

/* Apply a configuration's process-wide settings. */
static int apply(struct daemon *d, const struct config *cfg)
{
	log_set_level(cfg->log_level);
	raise_fd_limit(cfg->max_flows);
	check_fast_open(cfg);
	if (relay_set_buffer_size(cfg->buffer_size) < 0) {
		log_error("relay buffer of %u bytes: out of memory",
			  cfg->buffer_size);
		return -1;
	}
	return 0;
}

static int open_listener(struct daemon *d, struct listener *l,
			 const struct config *cfg)
{
	const char *what = "";
	int rc = listener_open(l, &d->env, cfg->listen_address,
			       cfg->listen_port,
			       cfg->fw_mode == CONFIG_FW_TPROXY, &what);
	if (rc < 0) {
		log_error("listen on %s port %u: %s: %s", cfg->listen_address,
			  cfg->listen_port, what, strerror(-rc));
		return -1;
	}
	return 0;
}

static void on_network(struct rtmon *rm, unsigned what, void *arg)
{
	struct daemon *d = arg;

	if (d->capture && (what & RTMON_ADDRS))
		capture_addresses_changed(d->capture);
	if (d->env.linkmon)
		linkmon_network_changed(d->env.linkmon, what);
}

/* Bring the capture (nftables table, tproxy routes) in line with ups. */
static int set_capture(struct daemon *d, const struct upstream *ups)
{
	if (!ups->cfg->fw_enabled) {
		capture_stop(d->capture);
		d->capture = NULL;
		return 0;
	}
	if (d->capture)
		return capture_reload(d->capture, ups);
	d->capture = capture_start(d->loop, ups, d->rtmon);
	return d->capture ? 0 : -1;
}

static struct json_object *on_request(struct json_object *req, void *arg);

/* The control socket where cfg wants it (opened, moved or closed). -1
 * after logging: at start the daemon then stops; on a reload it keeps the
 * socket it has. */
static int set_control(struct daemon *d, const struct config *cfg)
{
	const char *what = "";
	int err = 0;

	if (!cfg->control_socket[0]) {
		control_close(d->control);
		d->control = NULL;
		return 0;
	}
	if (d->control)
		err = -control_rebind(d->control, cfg->control_socket, &what);
	else if (!(d->control = control_open(d->loop, cfg->control_socket,
					     on_request, d, &what, &err)))
		err = err ? err : ENOMEM;
	if (err) {
		log_error("control socket %s: %s: %s", cfg->control_socket,
			  what, strerror(err));
		return -1;
	}
	return 0;
}

/* Apply the configuration file again, by difference: servers that stay
 * keep their state and warm connections, the firewall rewrites only the
 * sets that changed, WANs that stay keep their endpoints; flows go on with
 * the set they started with. True when applied; else the running
 * configuration stays and the reasons are logged. */
static bool reload(struct daemon *d)
{
	struct config *cfg = load(d->config_path);
	if (!cfg) {
		log_error("reload of %s refused: keeping the running "
			  "configuration", d->config_path);
		return false;
	}
	const struct config *old = d->env.ups->cfg;
	bool relisten = strcmp(old->listen_address, cfg->listen_address) != 0 ||
			old->listen_port != cfg->listen_port;
	/* the same socket can change its transparency (tproxy) */
	bool retransparent = !relisten && old->fw_mode != cfg->fw_mode;
	bool tproxy = cfg->fw_mode == CONFIG_FW_TPROXY;
	struct listener l;
	const char *what = "";
	int rc = 0;
	if (retransparent &&
	    (rc = listener_set_transparent(&d->listener, tproxy, &what)) < 0)
		log_error("listener: %s: %s", what, strerror(-rc));
	if ((relisten && open_listener(d, &l, cfg) < 0) ||
	    (retransparent && rc < 0)) {
		log_error("reload refused: keeping the running configuration");
		config_free(cfg);
		return false;
	}
	struct upstream *ups = upstream_new(cfg);
	if (ups)
		upstream_carry_over(ups, d->env.ups);
	if (!ups || apply(d, cfg) < 0 || set_capture(d, ups) < 0 ||
	    pool_start_all(d->loop, ups, d->env.ups) < 0) {
		log_error("reload refused: keeping the running configuration");
		/* undo, then free the new set (nothing may point at it) */
		if (relisten)
			listener_close(d->loop, &l);
		if (retransparent)
			listener_set_transparent(&d->listener, !tproxy, &what);
		apply(d, d->env.ups->cfg);
		if (set_capture(d, d->env.ups) < 0) {
			/* the capture may still refer to the new set: anew */
			capture_stop(d->capture);
			d->capture = NULL;
			set_capture(d, d->env.ups);
		}
		if (ups)
			pool_stop_all(ups);
		pool_start_all(d->loop, d->env.ups, NULL);
		if (ups)
			upstream_unref(ups);
		else
			config_free(cfg);
		return false;
	}
	if (relisten) {
		listener_close(d->loop, &d->listener);
		d->listener = l;
		listener_start(d->loop, &d->listener);
	}
	d->env.tproxy = cfg->fw_mode == CONFIG_FW_TPROXY;
	d->env.linkmon = linkmon_reload(d->env.linkmon, d->loop, ups, d->rtmon);
	set_control(d, cfg);
	pool_stop_all(d->env.ups);
	upstream_unref(d->env.ups);
	d->env.ups = ups;
	d->config_loaded = time(NULL);
	log_info("reloaded %s: %zu server(s); %u flow(s) continue with the "
		 "previous configuration", d->config_path, cfg->n_servers,
		 d->env.nflows);
	return true;
}

static bool reload_counted(struct daemon *d)
{
	bool ok = reload(d);
	if (ok)
		d->reloads++;
	else
		d->reloads_refused++;
	return ok;
}

/* ---- control requests --------------------------------------------------- */

static void collect(enum log_level lvl, const char *line, void *arg)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "level",
			       json_object_new_string(log_level_name(lvl)));
	json_object_object_add(o, "text", json_object_new_string(line));
	json_object_array_add(arg, o);
}

static struct json_object *request_reload(struct daemon *d)
{
	struct json_object *ans = json_object_new_object();
	struct json_object *msgs = json_object_new_array();

	log_info("reload requested on the control socket");
	log_set_tap(collect, msgs);
	bool ok = reload_counted(d);
	log_set_tap(NULL, NULL);
	json_object_object_add(ans, "ok", json_object_new_boolean(ok));
	json_object_object_add(ans, "messages", msgs);
	return ans;
}

static struct json_object *on_request(struct json_object *req, void *arg)
{
	struct daemon *d = arg;
	struct json_object *v;
	const char *name = json_object_get_string(
		json_object_object_get(req, "request"));

	if (strcmp(name, "status") == 0) {
		bool flows = json_object_object_get_ex(req, "flows", &v) &&
			     json_object_get_boolean(v);
		int64_t limit = json_object_object_get_ex(req, "limit", &v)
					? json_object_get_int64(v) : 0;
		return status_json(d, flows, limit < 0 ? 0
				   : limit > UINT32_MAX ? UINT32_MAX
				   : (unsigned)limit);
	}
	if (strcmp(name, "reload") == 0)
		return request_reload(d);
	return control_error("unknown request \"%s\" (status, reload)", name);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;

	if (w->signum == SIGHUP) {
		(void)reload_counted(d);
		return;
	}
	log_info("%s: stopping (%u flow(s) open)", strsignal(w->signum),
		 d->env.nflows);
	listener_close(loop, &d->listener);
	flow_close_all(loop, &d->env);
	ev_break(loop, EVBREAK_ALL);
}

static void start_signal(struct daemon *d, ev_signal *w, int signum)
{
	ev_signal_init(w, on_signal, signum);
	w->data = d;
	ev_signal_start(d->loop, w);
	ev_unref(d->loop); /* signals alone do not keep the loop alive */
}

/* Undo whatever start() did, in reverse order; safe at any point. */
static void stop(struct daemon *d)
{
	if (d->sig_term.cb)
		for (ev_signal *w = &d->sig_term; w <= &d->sig_hup; w++) {
			ev_ref(d->loop);
			ev_signal_stop(d->loop, w);
		}
	listener_close(d->loop, &d->listener);
	flow_close_all(d->loop, &d->env);
	control_close(d->control);
	linkmon_stop(d->env.linkmon);
	capture_stop(d->capture);
	rtmon_close(d->rtmon);
	if (d->env.ups) {
		pool_stop_all(d->env.ups);
		upstream_unref(d->env.ups);
	}
	relay_set_buffer_size(0);
	ev_loop_destroy(d->loop);
}

static int start(struct daemon *d, struct config *cfg)
{
	d->listener.fd = -1;
	d->env.ups = upstream_new(cfg);
	if (!d->env.ups) {
		log_error("out of memory");
		config_free(cfg);
		return -1;
	}
	d->env.tproxy = cfg->fw_mode == CONFIG_FW_TPROXY;
	/* first: it finds out whether another daemon runs, before anything
	 * of that one's (table, routes) is touched */
	if (set_control(d, cfg) < 0)
		return -1;
	d->rtmon = rtmon_open(d->loop, on_network, d);
	if (!d->rtmon) {
		log_error("router addresses (rtnetlink): %s", strerror(errno));
		return -1;
	}
	d->env.ifaddrs = d->rtmon;
	if (apply(d, cfg) < 0 || open_listener(d, &d->listener, cfg) < 0 ||
	    set_capture(d, d->env.ups) < 0)
		return -1;
	if (cfg->n_wans && !(d->env.linkmon = linkmon_start(d->loop, d->env.ups,
							    d->rtmon)))
		return -1;
	if (pool_start_all(d->loop, d->env.ups, NULL) < 0)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	start_signal(d, &d->sig_term, SIGTERM);
	start_signal(d, &d->sig_int, SIGINT);
	start_signal(d, &d->sig_hup, SIGHUP);
	listener_start(d->loop, &d->listener);
	return 0;
}

static int run(const char *path, bool use_syslog)
{
	struct daemon d = { .config_path = path, .started = time(NULL) };

	log_init(use_syslog, LOG_LVL_INFO);
	struct config *cfg = load(path);
	if (!cfg)
		return 1;
	d.loop = ev_default_loop(EVFLAG_AUTO);
	if (!d.loop) {
		log_error("cannot initialise libev");
		config_free(cfg);
		return 1;
	}
	d.started_mono = ev_now(d.loop);
	d.config_loaded = d.started;
	if (start(&d, cfg) < 0) {
		stop(&d);
		return 1;
	}
	char a[ADDR_STRLEN];
	log_info("mpredir %s listening on %s, %zu server(s), upstream %s",
		 MPREDIR_VERSION, addr_fmt(&d.listener.addr, a, sizeof(a)),
		 cfg->n_servers, cfg->mptcp ? "MPTCP" : "TCP");
	ev_run(d.loop, 0);
	stop(&d);
	log_info("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 't' },
		{ "syslog", no_argument, NULL, 's' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = NULL;
	bool check = false, use_syslog = false;
	int c;

	if (argc > 1 && (strcmp(argv[1], "status") == 0 ||
			 strcmp(argv[1], "reload") == 0))
		return cli_main(argc - 1, argv + 1);
	while ((c = getopt_long(argc, argv, "c:tsVh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 't': check = true; break;
		case 's': use_syslog = true; break;
		case 'V': printf("mpredir %s\n", MPREDIR_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (check) {
		struct config_errors errs = { 0 };
		struct config *cfg = config_load_file(path, &errs);
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.lines[i]);
		config_errors_free(&errs);
		if (!cfg)
			return 1;
		config_free(cfg);
		printf("%s: valid\n", path);
		return 0;
	}
	return run(path, use_syslog);
}
