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
#include <unistd.h>

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
#include "worker.h"

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
		"  -c, --config FILE  configuration, JSON or UCI (doc/configuration.md)\n"
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
	/* Said at every start and reload, so a fix is seen to take. */
	else if (config_has_password(cfg) && (cfg->file_mode & 044))
		log_warn("%s: mode %04o lets %s read the server password in it: "
			 "make it readable by root only (chmod 600 %s)", path,
			 cfg->file_mode, (cfg->file_mode & 004) ? "every user"
			 : "its group", path);
	config_errors_free(&errs);
	return cfg;
}

/* Two descriptors per flow, two per splice pipe (at most RELAY_PIPES_MAX),
 * plus some for the daemon itself. */
static void raise_fd_limit(unsigned max_flows)
{
	struct rlimit rl;
	rlim_t want = 2 * (rlim_t)max_flows + 2 * RELAY_PIPES_MAX + 64;

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
static void apply(const struct config *cfg)
{
	log_set_level(cfg->log_level);
	raise_fd_limit(cfg->max_flows);
	check_fast_open(cfg);
}

/* A listening socket per worker (SO_REUSEPORT when there are several: the
 * kernel spreads connections over them). 0, or -1 after logging, with
 * none left open. */
static int open_listeners(struct daemon *d, struct listener *ls,
			  const struct config *cfg)
{
	for (unsigned i = 0; i < d->n_workers; i++) {
		const char *what = "";
		int rc = listener_open(&ls[i], worker_env(d->workers[i]),
				       cfg->listen_address, cfg->listen_port,
				       cfg->fw_mode == CONFIG_FW_TPROXY,
				       d->n_workers > 1, &what);
		if (rc < 0) {
			log_error("listen on %s port %u: %s: %s",
				  cfg->listen_address, cfg->listen_port, what,
				  strerror(-rc));
			while (i--)
				listener_close(d->loop, &ls[i]);
			return -1;
		}
	}
	return 0;
}

/* tproxy transparency on every worker's listener: all or none. */
static int set_transparent(struct daemon *d, bool on)
{
	for (unsigned i = 0; i < d->n_workers; i++) {
		const char *what = "";
		int rc = listener_set_transparent(
			worker_listener(d->workers[i]), on, &what);
		if (rc < 0) {
			log_error("listener: %s: %s", what, strerror(-rc));
			while (i--)
				listener_set_transparent(
					worker_listener(d->workers[i]), !on,
					&what);
			return -1;
		}
	}
	return 0;
}

/* Every worker: new flows use ups; with ls, the workers listen there. */
static void apply_workers(struct daemon *d, struct upstream *ups,
			  struct listener *ls)
{
	bool tproxy = ups->cfg->fw_mode == CONFIG_FW_TPROXY;

	d->shared.wans = ups->cfg->n_wans > 0;
	for (unsigned i = 0; i < d->n_workers; i++)
		worker_apply(d->workers[i], ups, tproxy, ls ? &ls[i] : NULL);
}

static void on_network(struct rtmon *rm, unsigned what, void *arg)
{
	struct daemon *d = arg;

	if (d->capture && (what & RTMON_ADDRS))
		capture_addresses_changed(d->capture);
	if (d->linkmon)
		linkmon_network_changed(d->linkmon, what);
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
	const struct config *old = d->ups->cfg;
	bool relisten = strcmp(old->listen_address, cfg->listen_address) != 0 ||
			old->listen_port != cfg->listen_port;
	/* the same sockets can change their transparency (tproxy) */
	bool retransparent = !relisten && old->fw_mode != cfg->fw_mode;
	bool tproxy = cfg->fw_mode == CONFIG_FW_TPROXY;
	struct listener ls[CONFIG_MAX_WORKERS];
	if ((relisten && open_listeners(d, ls, cfg) < 0) ||
	    (retransparent && set_transparent(d, tproxy) < 0)) {
		log_error("reload refused: keeping the running configuration");
		config_free(cfg);
		return false;
	}
	struct upstream *ups = upstream_new(cfg);
	if (!ups) {
		log_error("out of memory");
	} else {
		upstream_carry_over(ups, d->ups);
		apply(cfg);
	}
	if (!ups || set_capture(d, ups) < 0) {
		log_error("reload refused: keeping the running configuration");
		/* undo, then free the new set (nothing may point at it) */
		for (unsigned i = 0; relisten && i < d->n_workers; i++)
			listener_close(d->loop, &ls[i]);
		if (retransparent)
			set_transparent(d, !tproxy);
		apply(d->ups->cfg);
		if (set_capture(d, d->ups) < 0) {
			/* the capture may still refer to the new set: anew */
			capture_stop(d->capture);
			d->capture = NULL;
			set_capture(d, d->ups);
		}
		if (ups)
			upstream_unref(ups);
		else
			config_free(cfg);
		return false;
	}
	d->linkmon = linkmon_reload(d->linkmon, d->loop, ups, d->rtmon);
	apply_workers(d, ups, relisten ? ls : NULL);
	set_control(d, cfg);
	if (cfg->workers != old->workers)
		log_warn("relay.workers changed: takes effect at the next "
			 "start (%u worker(s) now)", d->n_workers);
	upstream_unref(d->ups);
	d->ups = ups;
	d->config_loaded = time(NULL);
	log_info("reloaded %s: %zu server(s); %u flow(s) continue with the "
		 "previous configuration", d->config_path, cfg->n_servers,
		 __atomic_load_n(&d->shared.nflows, __ATOMIC_RELAXED));
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
		 __atomic_load_n(&d->shared.nflows, __ATOMIC_RELAXED));
	ev_break(loop, EVBREAK_ALL); /* stop() resets the flows */
}

static void start_signal(struct daemon *d, ev_signal *w, int signum)
{
	ev_signal_init(w, on_signal, signum);
	w->data = d;
	ev_signal_start(d->loop, w);
	ev_unref(d->loop); /* signals alone do not keep the loop alive */
}

/* ---- bytes of the workers' flows for the WANs ----------------------------- */

static void credit_wans(struct daemon *d)
{
	pthread_mutex_lock(&d->credit_lock);
	struct wan_credit *c = d->credits;
	size_t n = d->n_credits;
	d->credits = NULL;
	d->n_credits = d->cap_credits = 0;
	pthread_mutex_unlock(&d->credit_lock);
	status_credit_wans(d->linkmon, c, n);
	free(c);
}

static void on_credit_wake(struct ev_loop *loop, ev_async *a, int revents)
{
	credit_wans(a->data);
}

/* flow_shared.credit: a flow ended in worker `worker`'s thread. The link
 * monitor lives on the main loop: other workers queue for it. */
static void on_credit(struct flow_shared *sh, unsigned worker,
		      const struct wan_credit *c, size_t n)
{
	struct daemon *d = sh->credit_arg;

	if (worker == 0) {
		status_credit_wans(d->linkmon, c, n);
		return;
	}
	pthread_mutex_lock(&d->credit_lock);
	if (d->n_credits + n > d->cap_credits) {
		size_t cap = 2 * (d->n_credits + n);
		struct wan_credit *p = realloc(d->credits, cap * sizeof(*p));
		if (p) {
			d->credits = p;
			d->cap_credits = cap;
		}
	}
	if (d->n_credits + n <= d->cap_credits) { /* else lost: no memory */
		memcpy(d->credits + d->n_credits, c, n * sizeof(*c));
		d->n_credits += n;
	}
	pthread_mutex_unlock(&d->credit_lock);
	ev_async_send(d->loop, &d->credit_wake);
}

/* ---- start and stop ------------------------------------------------------- */

static unsigned n_workers(const struct config *cfg)
{
	long n = cfg->workers ? (long)cfg->workers
			      : sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS
						  : (unsigned)n;
}

/* Undo whatever start() did, in reverse order; safe at any point. */
static void stop(struct daemon *d)
{
	if (d->sig_term.cb)
		for (ev_signal *w = &d->sig_term; w <= &d->sig_hup; w++) {
			ev_ref(d->loop);
			ev_signal_stop(d->loop, w);
		}
	/* the others first: worker 0 shares the main loop */
	for (unsigned i = d->n_workers; i-- > 0;)
		worker_stop(d->workers[i]);
	if (d->credit_wake.cb) {
		ev_ref(d->loop);
		ev_async_stop(d->loop, &d->credit_wake);
		credit_wans(d);
	}
	pthread_mutex_destroy(&d->credit_lock);
	control_close(d->control);
	linkmon_stop(d->linkmon);
	capture_stop(d->capture);
	rtmon_close(d->rtmon);
	upstream_unref(d->ups);
	relay_set_buffer_size(0);
	ev_loop_destroy(d->loop);
}

static int start(struct daemon *d, struct config *cfg)
{
	pthread_mutex_init(&d->credit_lock, NULL);
	d->ups = upstream_new(cfg);
	if (!d->ups) {
		log_error("out of memory");
		config_free(cfg);
		return -1;
	}
	/* first: it finds out whether another daemon runs, before anything
	 * of that one's (table, routes) is touched */
	if (set_control(d, cfg) < 0)
		return -1;
	d->rtmon = rtmon_open(d->loop, on_network, d);
	if (!d->rtmon) {
		log_error("router addresses (rtnetlink): %s", strerror(errno));
		return -1;
	}
	d->shared.credit = on_credit;
	d->shared.credit_arg = d;
	ev_async_init(&d->credit_wake, on_credit_wake);
	d->credit_wake.data = d;
	ev_async_start(d->loop, &d->credit_wake);
	ev_unref(d->loop);
	unsigned n = n_workers(cfg);
	for (unsigned i = 0; i < n; i++) {
		if (!(d->workers[i] = worker_new(&d->shared, i, d->loop)))
			return -1;
		d->n_workers++;
		worker_env(d->workers[i])->ifaddrs = d->rtmon;
	}
	struct listener ls[CONFIG_MAX_WORKERS];
	apply(cfg);
	if (open_listeners(d, ls, cfg) < 0)
		return -1;
	if (set_capture(d, d->ups) < 0 ||
	    (cfg->n_wans && !(d->linkmon = linkmon_start(d->loop, d->ups,
							  d->rtmon)))) {
		for (unsigned i = 0; i < n; i++)
			listener_close(d->loop, &ls[i]);
		return -1;
	}
	apply_workers(d, d->ups, ls);
	for (unsigned i = 1; i < n; i++) {
		int rc = worker_run(d->workers[i]);
		if (rc < 0) {
			log_error("worker %u: thread: %s", i, strerror(-rc));
			return -1;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	start_signal(d, &d->sig_term, SIGTERM);
	start_signal(d, &d->sig_int, SIGINT);
	start_signal(d, &d->sig_hup, SIGHUP);
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
	log_info("mpredir %s listening on %s, %zu server(s), upstream %s, "
		 "%u worker(s)", MPREDIR_VERSION,
		 addr_fmt(&worker_listener(d.workers[0])->addr, a, sizeof(a)),
		 cfg->n_servers, cfg->mptcp ? "MPTCP" : "TCP", d.n_workers);
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
