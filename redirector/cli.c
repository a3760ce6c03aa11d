// SPDX-License-Identifier: GPL-2.0-or-later
/* cli: `mpredir status` and `mpredir reload`, clients of the control
 * socket. */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "control.h"

#define REQUEST_TIMEOUT_S 30.0 /* a reload resolves names, talks to netlink */

/* ---- a small table printer ------------------------------------------------ */

#define TABLE_COLS 16

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* nrows * ncols, row-major; NULL: no memory */
};

static void table_row(struct table *t, ...)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));
		if (!c)
			return;
		t->cells = c;
		t->cap = cap;
	}
	va_list ap;
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);
		t->cells[t->nrows * t->ncols + i] = strdup(s ? s : "-");
	}
	va_end(ap);
	t->nrows++;
}

static void table_print(struct table *t)
{
	size_t w[TABLE_COLS] = { 0 };

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];
			size_t len = s ? strlen(s) : 0;
			if (len > w[i])
				w[i] = len;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];
			bool last = i + 1 == t->ncols;
			printf("%-*s%s", last ? 0 : (int)w[i], s ? s : "",
			       last ? "\n" : "  ");
		}
	}
	for (size_t k = 0; k < t->nrows * t->ncols; k++)
		free(t->cells[k]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

/* ---- reading the answer --------------------------------------------------- */

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;
	if (o)
		json_object_object_get_ex(o, key, &v);
	return v;
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v = get(o, key);
	return v && !json_object_is_type(v, json_type_null)
		       ? json_object_get_string(v) : NULL;
}

/* For printing: "-" for a missing member. */
static const char *txt(struct json_object *o, const char *key)
{
	const char *s = str(o, key);
	return s ? s : "-";
}

static uint64_t u64(struct json_object *o, const char *key)
{
	return json_object_get_uint64(get(o, key));
}

static double dbl(struct json_object *o, const char *key)
{
	return json_object_get_double(get(o, key));
}

/* Entries of an array member (0 when it is missing or not an array: an
 * answer from another version must not crash the client). */
static size_t arr_len(struct json_object *a)
{
	return json_object_is_type(a, json_type_array)
		       ? json_object_array_length(a) : 0;
}

/* "12.3 MB" style (decimal units, like link speeds). */
static const char *bytes(char *buf, size_t cap, uint64_t b)
{
	static const char *const unit[] = { "B", "kB", "MB", "GB", "TB", "PB" };
	double v = (double)b;
	size_t u = 0;
	while (v >= 1000 && u + 1 < sizeof(unit) / sizeof(*unit)) {
		v /= 1000;
		u++;
	}
	snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
	return buf;
}

static const char *duration(char *buf, size_t cap, double s)
{
	uint64_t t = s > 0 ? (uint64_t)s : 0;
	if (t < 60)
		snprintf(buf, cap, "%.1fs", s > 0 ? s : 0);
	else if (t < 3600)
		snprintf(buf, cap, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, cap, "%" PRIu64 "h%02" PRIu64 "m", t / 3600,
			 t / 60 % 60);
	else
		snprintf(buf, cap, "%" PRIu64 "d%02" PRIu64 "h", t / 86400,
			 t / 3600 % 24);
	return buf;
}

static const char *num(char *buf, size_t cap, uint64_t v)
{
	snprintf(buf, cap, "%" PRIu64, v);
	return buf;
}

/* "key N, key N" for the non-zero members of an object of counters. */
static void nonzero(const char *title, struct json_object *o)
{
	bool any = false;
	printf("%s:", title);
	if (!json_object_is_type(o, json_type_object)) {
		printf(" ?\n");
		return;
	}
	json_object_object_foreach(o, k, v) {
		uint64_t n = json_object_get_uint64(v);
		if (n) {
			printf("%s %s %" PRIu64, any ? "," : "", k, n);
			any = true;
		}
	}
	printf("%s\n", any ? "" : " none");
}

/* ---- status ---------------------------------------------------------------- */

static void print_head(struct json_object *st)
{
	struct json_object *cfg = get(st, "config"), *fl = get(st, "flows"),
			   *by = get(st, "bytes");
	char a[32], b[32], c[32];

	printf("mpredir %s, pid %" PRIu64 ", up %s; config %s (loaded %s, "
	       "%" PRIu64 " reload(s), %" PRIu64 " refused)\n",
	       txt(st, "version"), u64(st, "pid"),
	       duration(a, sizeof(a), dbl(st, "uptime_s")), txt(cfg, "file"),
	       txt(cfg, "loaded"), u64(cfg, "reloads"),
	       u64(cfg, "reloads_refused"));
	printf("flows: %" PRIu64 " now (max %" PRIu64 "), %" PRIu64
	       " in all; bytes: up %s, down %s, buffered %s\n",
	       u64(fl, "now"), u64(fl, "max"), u64(fl, "total"),
	       bytes(a, sizeof(a), u64(by, "up")),
	       bytes(b, sizeof(b), u64(by, "down")),
	       bytes(c, sizeof(c), u64(by, "buffered")));
	nonzero("ended", get(fl, "ended"));
	nonzero("refused", get(fl, "refused"));
}

static void print_servers(struct json_object *st)
{
	struct table t = { .ncols = 11 };
	struct json_object *arr = get(st, "servers");

	table_row(&t, "SERVER", "ADDRESS", "HEALTH", "FLOWS", "FAILURES",
		  "MPTCP", "FALLBACK", "TCP", "PIPELINING", "FASTOPEN", "POOL");
	for (size_t i = 0; i < arr_len(arr); i++) {
		struct json_object *s = json_object_array_get_idx(arr, i);
		struct json_object *conns = get(s, "connections"),
				   *pool = get(s, "pool");
		char name[300], f[24], e[24], m[24], fb[24], tc[24], pl[64],
		     to[48], po[48];
		snprintf(name, sizeof(name), "%s:%" PRIu64, str(s, "address"),
			 u64(s, "port"));
		snprintf(pl, sizeof(pl), "%s (%s)",
			 json_object_get_boolean(get(s, "pipelined")) ? "on"
								       : "off",
			 str(s, "pipelining"));
		snprintf(to, sizeof(to), "%s, %" PRIu64 " accepted",
			 json_object_get_boolean(get(s, "fast_open")) ? "on"
								      : "off",
			 u64(s, "fast_open_accepted"));
		if (pool)
			snprintf(po, sizeof(po), "%" PRIu64 "/%" PRIu64,
				 u64(pool, "ready"), u64(pool, "size"));
		else
			snprintf(po, sizeof(po), "off");
		table_row(&t, name, str(s, "resolved"), str(s, "health"),
			  num(f, sizeof(f), u64(s, "flows")),
			  num(e, sizeof(e), u64(s, "failures")),
			  num(m, sizeof(m), u64(conns, "mptcp")),
			  num(fb, sizeof(fb), u64(conns, "tcp_fallback")),
			  num(tc, sizeof(tc), u64(conns, "tcp")), pl, to, po);
	}
	printf("\n");
	table_print(&t);
}

static void print_wans(struct json_object *st)
{
	struct json_object *arr = get(st, "wans");
	struct table t = { .ncols = 12 };

	if (!arr_len(arr))
		return;
	table_row(&t, "WAN", "MODE", "STATE", "SINCE", "ADDRESS", "GATEWAY",
		  "RTT", "LOSS", "ENDPOINT", "SENT", "RECEIVED", "WHY");
	for (size_t i = 0; i < arr_len(arr); i++) {
		struct json_object *w = json_object_array_get_idx(arr, i);
		char state[16], since[24], rtt[24], loss[24], ep[16], tx[24],
		     rx[24];
		uint64_t probes = u64(w, "probes");
		snprintf(state, sizeof(state), "%s%s", str(w, "state"),
			 json_object_get_boolean(get(w, "best")) ? "*" : "");
		if (get(w, "rtt_ms") &&
		    !json_object_is_type(get(w, "rtt_ms"), json_type_null))
			snprintf(rtt, sizeof(rtt), "%.1f ms", dbl(w, "rtt_ms"));
		else
			snprintf(rtt, sizeof(rtt), "-");
		if (probes)
			snprintf(loss, sizeof(loss), "%.1f%%",
				 100.0 * (double)u64(w, "probes_lost") /
					 (double)probes);
		else
			snprintf(loss, sizeof(loss), "-");
		table_row(&t, str(w, "interface"), str(w, "mode"), state,
			  duration(since, sizeof(since), dbl(w, "since_s")),
			  str(w, "address"), str(w, "gateway"), rtt, loss,
			  get(w, "endpoint") ? num(ep, sizeof(ep),
						   u64(w, "endpoint")) : "-",
			  bytes(tx, sizeof(tx), u64(w, "bytes_sent")),
			  bytes(rx, sizeof(rx), u64(w, "bytes_received")),
			  str(w, "why"));
	}
	printf("\n");
	table_print(&t);
	printf("(* carries the first subflow of new flows)\n");
}

static void print_flows(struct json_object *st)
{
	struct json_object *arr = get(st, "flow_list");
	struct table t = { .ncols = 9 };

	table_row(&t, "FLOW", "LAN", "DESTINATION", "SERVER", "STATE", "AGE",
		  "UP", "DOWN", "TRANSPORT");
	for (size_t i = 0; i < arr_len(arr); i++) {
		struct json_object *f = json_object_array_get_idx(arr, i);
		char id[24], age[24], up[24], down[24];
		table_row(&t, num(id, sizeof(id), u64(f, "id")), str(f, "lan"),
			  str(f, "destination"), str(f, "server"),
			  str(f, "state"), duration(age, sizeof(age),
						    dbl(f, "age_s")),
			  bytes(up, sizeof(up), u64(f, "bytes_up")),
			  bytes(down, sizeof(down), u64(f, "bytes_down")),
			  str(f, "transport"));
		struct json_object *sfs = get(f, "subflows");
		for (size_t k = 0; k < arr_len(sfs); k++) {
			struct json_object *s = json_object_array_get_idx(sfs, k);
			char local[80], wan[40], tx[40], rx[40], rtt[48];
			snprintf(local, sizeof(local), "  %s", str(s, "local"));
			snprintf(wan, sizeof(wan), "wan %s%s",
				 str(s, "wan") ? str(s, "wan") : "?",
				 json_object_get_boolean(get(s, "live"))
					 ? "" : " (closed)");
			snprintf(tx, sizeof(tx), "sent %s",
				 bytes(up, sizeof(up), u64(s, "bytes_sent")));
			snprintf(rx, sizeof(rx), "recv %s",
				 bytes(down, sizeof(down),
				       u64(s, "bytes_received")));
			snprintf(rtt, sizeof(rtt), "rtt %.1f ms",
				 dbl(s, "rtt_ms"));
			table_row(&t, "", local, str(s, "remote"), wan, "", "",
				  tx, rx, rtt);
		}
	}
	printf("\n");
	table_print(&t);
}

/* ---- the commands ---------------------------------------------------------- */

/* control.socket of a configuration file: read leniently (the file may be
 * in the middle of an edit: only this key matters here). */
static char *socket_of(const char *file)
{
	struct json_object *root = config_tree_from_file(file); /* or UCI */
	const char *s = str(get(root, "control"), "socket");
	char *path = strdup(s ? s : CONFIG_DEFAULT_CONTROL_SOCKET);
	json_object_put(root);
	return path;
}

static void cli_usage(FILE *out)
{
	fprintf(out,
		"usage: mpredir status [--json] [--flows [--limit N]] "
		"[-c FILE | --socket PATH]\n"
		"       mpredir reload [-c FILE | --socket PATH]\n"
		"\n"
		"  --json         the daemon's answer as JSON (doc/status.md)\n"
		"  --flows        also each flow and its subflows (newest first)\n"
		"  --limit N      at most N flows (default 100; 0 = all)\n"
		"  -c FILE        the daemon's configuration (for control.socket)\n"
		"  --socket PATH  the control socket (default %s)\n",
		CONFIG_DEFAULT_CONTROL_SOCKET);
}

int cli_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "flows", no_argument, NULL, 'f' },
		{ "limit", required_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool status = strcmp(argv[0], "status") == 0, json = false,
	     flows = false;
	long limit = 100;
	const char *file = NULL, *sock = NULL;
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'f': flows = true; break;
		case 'l':
			limit = strtol(optarg, &end, 10);
			if (*end || end == optarg || limit < 0) {
				fprintf(stderr, "--limit: \"%s\" is not a "
					"number >= 0\n", optarg);
				return 2;
			}
			break;
		case 'c': file = optarg; break;
		case 'S': sock = optarg; break;
		case 'h': cli_usage(stdout); return 0;
		default: cli_usage(stderr); return 2;
		}
	}
	if (optind != argc || (!status && (json || flows))) {
		cli_usage(stderr);
		return 2;
	}
	char *path = sock ? strdup(sock) : file ? socket_of(file)
						: strdup(CONFIG_DEFAULT_CONTROL_SOCKET);
	if (path && !path[0]) {
		fprintf(stderr, "mpredir %s: %s turns the control socket off "
			"(control.socket is \"\")\n", argv[0], file);
		free(path);
		return 1;
	}
	struct json_object *req = json_object_new_object(), *ans = NULL;
	json_object_object_add(req, "request",
			       json_object_new_string(argv[0]));
	if (status) {
		json_object_object_add(req, "flows", json_object_new_boolean(flows));
		json_object_object_add(req, "limit", json_object_new_int64(limit));
	}
	char err[512];
	int rc = path ? control_request(path, req, REQUEST_TIMEOUT_S, &ans,
					err, sizeof(err))
		      : (snprintf(err, sizeof(err), "out of memory"), -1);
	json_object_put(req);
	free(path);
	if (rc < 0) {
		fprintf(stderr, "mpredir %s: %s\n", argv[0], err);
		return 1;
	}
	bool ok = json_object_get_boolean(get(ans, "ok"));
	if (!ok && str(ans, "error")) {
		fprintf(stderr, "mpredir %s: %s\n", argv[0], str(ans, "error"));
	} else if (json) {
		printf("%s\n", json_object_to_json_string_ext(
				       ans, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (status) {
		print_head(ans);
		print_servers(ans);
		print_wans(ans);
		if (flows)
			print_flows(ans);
	} else {
		struct json_object *msgs = get(ans, "messages");
		for (size_t i = 0; i < arr_len(msgs); i++) {
			struct json_object *m = json_object_array_get_idx(msgs, i);
			fprintf(ok ? stdout : stderr, "%s: %s\n",
				str(m, "level"), str(m, "text"));
		}
		if (!ok)
			fprintf(stderr, "mpredir reload: refused; the daemon "
				"keeps its running configuration\n");
	}
	json_object_put(ans);
	return ok ? 0 : 1;
}
