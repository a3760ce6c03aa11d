// SPDX-License-Identifier: GPL-2.0-or-later
/* config: JSON -> struct config, strict. Two passes over one document:
 *  1. json_tokener (strict JSON, UTF-8 checked) builds the tree; a small
 *     scanner then walks the same text for duplicate keys, which json-c
 *     silently collapses (the last one wins);
 *  2. the tree is walked section by section: every key is known, every
 *     value has the right JSON type and range, or an error line is added.
 * Every error is collected; the result is a config only when there is none.
 * Secrets (username, password) never appear in an error line: only their
 * length or type does. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "uci.h"

#define STRING_NAME "(config)"     /* the "file name" of config_parse_string */
#define MAX_ERRORS 100             /* lines kept; the rest are counted */
#define MAX_SERVERS 16

/* ---- error collection ------------------------------------------------ */

struct ctx {
	struct config_errors *errs; /* may be NULL: errors are then counted only */
	const char *name;           /* file name, or STRING_NAME */
	const struct uci_map *uci;  /* a UCI file: where each path came from */
	size_t n_errors;            /* all errors, shown or not */
	size_t n_dropped;           /* not stored: over MAX_ERRORS, or no memory */
};

static void add_line(struct ctx *c, char *line)
{
	c->n_errors++;
	if (!line || !c->errs || c->errs->n >= MAX_ERRORS) {
		c->n_dropped++;
		free(line);
		return;
	}
	char **lines = realloc(c->errs->lines,
			       (c->errs->n + 1) * sizeof(*lines));
	if (!lines) {
		c->n_dropped++;
		free(line);
		return;
	}
	lines[c->errs->n++] = line;
	c->errs->lines = lines;
}

/* "PATH: reason". In a UCI file, PATH becomes the place of the value,
 * "FILE:LINE: server 'main', option port" (uci.h); an error on a value the
 * UCI reader has refused already is not repeated. */
static void __attribute__((format(printf, 3, 4)))
add_err(struct ctx *c, const char *path, const char *fmt, ...)
{
	char *reason = NULL, *line = NULL, *loc = NULL;
	va_list ap;

	if (c->uci && path != c->name) {
		bool drop;
		loc = uci_map_locate(c->uci, path, &drop);
		if (drop)
			return;
		if (loc)
			path = loc;
	}
	va_start(ap, fmt);
	if (vasprintf(&reason, fmt, ap) < 0)
		reason = NULL;
	va_end(ap);
	if (reason && asprintf(&line, "%s: %s", path, reason) < 0)
		line = NULL;
	free(reason);
	free(loc);
	add_line(c, line);
}

/* The UCI reader's errors, counted with the others. */
static void uci_error(void *arg, char *line)
{
	add_line(arg, line);
}

/* Close the list: a count of the lines not kept. */
static void finish_errors(struct ctx *c)
{
	if (!c->n_dropped || !c->errs)
		return;
	char *line = NULL;
	if (asprintf(&line, "%s: %zu more error%s not shown", c->name,
		     c->n_dropped, c->n_dropped == 1 ? "" : "s") < 0)
		return;
	char **lines = realloc(c->errs->lines,
			       (c->errs->n + 1) * sizeof(*lines));
	if (!lines) {
		free(line);
		return;
	}
	lines[c->errs->n++] = line;
	c->errs->lines = lines;
}

void config_errors_free(struct config_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->lines[i]);
	free(errs->lines);
	errs->lines = NULL;
	errs->n = 0;
}

/* A user's string made safe for a one-line message: printable ASCII kept,
 * anything else as \xNN, '"' and '\' escaped, cut after `max` input bytes
 * ("..." appended). Always returns a buffer (a static one on no memory). */
static char shown_nomem[] = "?";

char *config_shown(const char *s, size_t len, size_t max)
{
	size_t n = len < max ? len : max;
	char *out = malloc(n * 4 + 4), *p = out;
	if (!out)
		return shown_nomem;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\') {
			*p++ = '\\';
			*p++ = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			p += sprintf(p, "\\x%02x", ch);
		} else {
			*p++ = (char)ch;
		}
	}
	if (n < len)
		p += sprintf(p, "...");
	*p = '\0';
	return out;
}

void config_shown_free(char *s)
{
	if (s != shown_nomem)
		free(s);
}

/* ---- paths ----------------------------------------------------------- */

/* parent + "." + key (or just key at the top), key made printable. */
static char *path_key(const char *parent, const char *key)
{
	char *k = config_shown(key, strlen(key), CONFIG_MAX_SHOWN), *p = NULL;
	if (asprintf(&p, "%s%s%s", parent ? parent : "", parent ? "." : "",
		     k) < 0)
		p = NULL;
	config_shown_free(k);
	return p;
}

static char *path_index(const char *parent, size_t i)
{
	char *p = NULL;
	if (asprintf(&p, "%s[%zu]", parent, i) < 0)
		p = NULL;
	return p;
}

/* ---- JSON values ----------------------------------------------------- */

/* The name of a value's type, as "got ..." in messages. */
static const char *type_name(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return "null";
	case json_type_boolean: return "boolean";
	case json_type_double: return "number";
	case json_type_int: return "integer";
	case json_type_object: return "object";
	case json_type_array: return "array";
	case json_type_string: return "string";
	}
	return "?";
}

/* A number as written ("1.5", "1e3", "70000"). */
static const char *num_text(struct json_object *v)
{
	return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

/* An integer in [min, max]; "port" selects the port wording. */
static bool get_int(struct ctx *c, const char *path, struct json_object *v,
		    int64_t min, int64_t max, bool port, int64_t *out)
{
	if (json_object_is_type(v, json_type_double)) {
		add_err(c, path, "expected an integer, got %s", num_text(v));
		return false;
	}
	if (!json_object_is_type(v, json_type_int)) {
		add_err(c, path, "expected an integer, got %s", type_name(v));
		return false;
	}
	int64_t n = json_object_get_int64(v);
	/* json-c saturates values beyond int64 (and keeps uint64 ones apart):
	 * the limits here are far inside, so a saturated value is just out of
	 * range, and num_text() shows what was stored. */
	if (n < min || n > max) {
		if (port)
			add_err(c, path, "%s is not a port (%" PRId64 "-%"
				PRId64 ")", num_text(v), min, max);
		else
			add_err(c, path, "%s is out of range (%" PRId64 "-%"
				PRId64 ")", num_text(v), min, max);
		return false;
	}
	*out = n;
	return true;
}

static bool get_uint(struct ctx *c, const char *path, struct json_object *v,
		     unsigned min, unsigned max, unsigned *out)
{
	int64_t n;
	if (!get_int(c, path, v, min, max, false, &n))
		return false;
	*out = (unsigned)n;
	return true;
}

static bool get_port(struct ctx *c, const char *path, struct json_object *v,
		     uint16_t *out)
{
	int64_t n;
	if (!get_int(c, path, v, 1, 65535, true, &n))
		return false;
	*out = (uint16_t)n;
	return true;
}

static bool get_bool(struct ctx *c, const char *path, struct json_object *v,
		     bool *out)
{
	if (!json_object_is_type(v, json_type_boolean)) {
		add_err(c, path, "expected a boolean, got %s", type_name(v));
		return false;
	}
	*out = json_object_get_boolean(v);
	return true;
}

/* A string without NUL characters; *s points into the JSON tree. */
static bool get_str(struct ctx *c, const char *path, struct json_object *v,
		    const char **s, size_t *len)
{
	if (!json_object_is_type(v, json_type_string)) {
		add_err(c, path, "expected a string, got %s", type_name(v));
		return false;
	}
	*s = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	if (memchr(*s, '\0', *len)) {
		add_err(c, path, "contains a NUL character (\\u0000)");
		return false;
	}
	return true;
}

static bool is_object(struct ctx *c, const char *path, struct json_object *v)
{
	if (json_object_is_type(v, json_type_object))
		return true;
	add_err(c, path, "expected an object, got %s", type_name(v));
	return false;
}

/* Keep a copy in *dst (replacing any); false (with an error) on no memory. */
static bool keep(struct ctx *c, const char *path, char **dst, const char *s)
{
	char *d = strdup(s);
	if (!d) {
		add_err(c, path, "out of memory");
		return false;
	}
	free(*dst);
	*dst = d;
	return true;
}

/* ---- addresses ------------------------------------------------------- */

static bool is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* A host name by RFC 1123 form: dot-separated labels of letters, digits
 * and '-', 1-63 bytes, not beginning or ending with '-', 253 bytes at most
 * (without the optional trailing dot). The last label must not look like
 * a number ("1.2.3", "0x7f"): resolvers would read it as an IPv4 address
 * in a legacy form. */
static bool is_host_name(const char *s)
{
	size_t len = strlen(s);
	if (len && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	const char *label = s;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.') {
			char ch = s[i];
			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || ch == '-'))
				return false;
			continue;
		}
		size_t n = (size_t)(s + i - label);
		if (n == 0 || n > 63 || label[0] == '-' || label[n - 1] == '-')
			return false;
		if (i == len) { /* the last label */
			size_t digits = strspn(label, "0123456789");
			if (digits >= n)
				return false;
			if (n > 2 && label[0] == '0' &&
			    (label[1] == 'x' || label[1] == 'X') &&
			    strspn(label + 2, "0123456789abcdefABCDEF") >= n - 2)
				return false;
		}
		label = s + i + 1;
	}
	return true;
}

/* ---- sections -------------------------------------------------------- */

typedef void key_fn(struct ctx *c, const char *path, struct json_object *v,
		    struct config *cfg, void *arg);
struct key_def {
	const char *key;
	key_fn *fn;
};

/* Call the handler of each key of obj, in document order; unknown keys are
 * errors. parent NULL for the top level. */
static void walk(struct ctx *c, const char *parent, struct json_object *obj,
		 const struct key_def *defs, struct config *cfg, void *arg)
{
	json_object_object_foreach(obj, key, val) {
		char *path = path_key(parent, key);
		const struct key_def *d = defs;
		while (d->key && strcmp(d->key, key) != 0)
			d++;
		if (!path)
			add_err(c, c->name, "out of memory");
		else if (!d->key)
			add_err(c, path, "unknown key");
		else
			d->fn(c, path, val, cfg, arg);
		free(path);
	}
}

/* listen */
static void k_listen_address(struct ctx *c, const char *path,
			     struct json_object *v, struct config *cfg, void *arg)
{
	const char *s;
	size_t len;
	if (!get_str(c, path, v, &s, &len))
		return;
	if (!is_ip_literal(s)) {
		char *sh = config_shown(s, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not an IP address (IPv4 or IPv6, "
			"without brackets; \"::\" for all)", sh);
		config_shown_free(sh);
		return;
	}
	keep(c, path, &cfg->listen_address, s);
}

static void k_listen_port(struct ctx *c, const char *path,
			  struct json_object *v, struct config *cfg, void *arg)
{
	get_port(c, path, v, &cfg->listen_port);
}

static const struct key_def listen_keys[] = {
	{ "address", k_listen_address },
	{ "port", k_listen_port },
	{ NULL, NULL },
};

/* servers[i]: the server being built and which keys it had. */
struct server_slot {
	struct config_server *srv;
	bool address, port, username, password, pipeline;
};

static void k_server_address(struct ctx *c, const char *path,
			     struct json_object *v, struct config *cfg, void *arg)
{
	struct server_slot *sl = arg;
	const char *str;
	size_t len;
	sl->address = true;
	if (!get_str(c, path, v, &str, &len))
		return;
	if (!is_ip_literal(str) && !is_host_name(str)) {
		char *sh = config_shown(str, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not an IP address or a valid host "
			"name%s", sh, str[0] == '[' ? " (write IPv6 addresses "
			"without brackets)" : "");
		config_shown_free(sh);
		return;
	}
	keep(c, path, &sl->srv->address, str);
}

static void k_server_port(struct ctx *c, const char *path,
			  struct json_object *v, struct config *cfg, void *arg)
{
	struct server_slot *sl = arg;
	sl->port = true;
	get_port(c, path, v, &sl->srv->port);
}

/* username or password (RFC 1929): 1-255 bytes; never shown. */
static void credential(struct ctx *c, const char *path, struct json_object *v,
		       char **dst)
{
	const char *str;
	size_t len;
	if (!get_str(c, path, v, &str, &len))
		return;
	if (len < 1 || len > 255) {
		add_err(c, path, "must be 1-255 bytes long, is %zu", len);
		return;
	}
	keep(c, path, dst, str);
}

static void k_server_username(struct ctx *c, const char *path,
			      struct json_object *v, struct config *cfg, void *arg)
{
	struct server_slot *sl = arg;
	sl->username = true;
	credential(c, path, v, &sl->srv->username);
}

static void k_server_password(struct ctx *c, const char *path,
			      struct json_object *v, struct config *cfg, void *arg)
{
	struct server_slot *sl = arg;
	sl->password = true;
	credential(c, path, v, &sl->srv->password);
}

static const char *const mode_names[] = {
	[CONFIG_AUTO] = "auto", [CONFIG_ON] = "on", [CONFIG_OFF] = "off",
};

const char *config_mode_name(enum config_mode m)
{
	return mode_names[m];
}

/* "auto", "on", "off", or a boolean for on/off. */
static bool get_mode(struct ctx *c, const char *path, struct json_object *v,
		     enum config_mode *out)
{
	if (json_object_is_type(v, json_type_boolean)) {
		*out = json_object_get_boolean(v) ? CONFIG_ON : CONFIG_OFF;
		return true;
	}
	const char *str;
	size_t len;
	if (json_object_is_type(v, json_type_string) &&
	    get_str(c, path, v, &str, &len)) {
		for (size_t i = 0; i < sizeof(mode_names) / sizeof(*mode_names); i++)
			if (strcmp(str, mode_names[i]) == 0) {
				*out = (enum config_mode)i;
				return true;
			}
		char *sh = config_shown(str, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not one of \"auto\", \"on\", \"off\"",
			sh);
		config_shown_free(sh);
		return false;
	}
	if (!json_object_is_type(v, json_type_string))
		add_err(c, path, "expected \"auto\", \"on\", \"off\" or a "
			"boolean, got %s", type_name(v));
	return false;
}

static void k_server_pipeline(struct ctx *c, const char *path,
			      struct json_object *v, struct config *cfg, void *arg)
{
	struct server_slot *sl = arg;
	sl->pipeline = get_mode(c, path, v, &sl->srv->pipeline);
}

static const struct key_def server_keys[] = {
	{ "address", k_server_address },
	{ "port", k_server_port },
	{ "username", k_server_username },
	{ "password", k_server_password },
	{ "pipeline", k_server_pipeline },
	{ NULL, NULL },
};

/* "servers[i].key: reason" for a key of the server at `path`. */
static void server_err(struct ctx *c, const char *path, const char *key,
		       const char *reason)
{
	char *p = path_key(path, key);
	add_err(c, p ? p : path, "%s", reason);
	free(p);
}

static void server(struct ctx *c, const char *path, struct json_object *v,
		   struct config *cfg, struct config_server *out)
{
	struct server_slot sl = { .srv = out };

	if (!is_object(c, path, v))
		return;
	walk(c, path, v, server_keys, cfg, &sl);
	out->pipeline_set = sl.pipeline;
	if (!sl.address)
		server_err(c, path, "address", "required");
	if (!sl.port)
		server_err(c, path, "port", "required");
	if (sl.password && !sl.username)
		server_err(c, path, "username", "required when password is set");
	if (sl.username && !sl.password)
		server_err(c, path, "password", "required when username is set");
}

static void k_servers(struct ctx *c, const char *path, struct json_object *v,
		      struct config *cfg, void *arg)
{
	bool *seen = arg;
	*seen = true;
	if (!json_object_is_type(v, json_type_array)) {
		add_err(c, path, "expected an array, got %s", type_name(v));
		return;
	}
	size_t n = json_object_array_length(v);
	if (n == 0) {
		add_err(c, path, "at least one server is required");
		return;
	}
	if (n > MAX_SERVERS)
		add_err(c, path, "%zu servers, at most %d are allowed", n,
			MAX_SERVERS);
	cfg->servers = calloc(n, sizeof(*cfg->servers));
	if (!cfg->servers) {
		add_err(c, path, "out of memory");
		return;
	}
	cfg->n_servers = n;
	for (size_t i = 0; i < n; i++) {
		char *p = path_index(path, i);
		if (!p) {
			add_err(c, path, "out of memory");
			continue;
		}
		server(c, p, json_object_array_get_idx(v, i), cfg,
		       &cfg->servers[i]);
		free(p);
	}
}

/* upstream */
struct upstream_seen {
	bool connect_ok, handshake_set, handshake_ok;
};

static bool parse_mark_string(const char *s, uint32_t *out)
{
	int base = 10;
	const char *digits = s;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		digits = s + 2;
	}
	if (!*digits || strspn(digits, base == 16 ? "0123456789abcdefABCDEF"
						  : "0123456789") != strlen(digits))
		return false;
	errno = 0;
	unsigned long long n = strtoull(digits, NULL, base);
	if (errno || n > UINT32_MAX)
		return false;
	*out = (uint32_t)n;
	return true;
}

/* A 32-bit mark: an integer, or a string in decimal or "0x" hexadecimal. */
static bool get_mark(struct ctx *c, const char *path, struct json_object *v,
		     uint32_t *out)
{
	if (json_object_is_type(v, json_type_string)) {
		const char *s;
		size_t len;
		if (!get_str(c, path, v, &s, &len))
			return false;
		if (!parse_mark_string(s, out)) {
			char *sh = config_shown(s, len, CONFIG_MAX_SHOWN);
			add_err(c, path, "\"%s\" is not a mark (0-4294967295, "
				"decimal or hexadecimal like \"0x4d50\")", sh);
			config_shown_free(sh);
			return false;
		}
		return true;
	}
	if (json_object_is_type(v, json_type_int) ||
	    json_object_is_type(v, json_type_double)) {
		int64_t n;
		if (!get_int(c, path, v, 0, UINT32_MAX, false, &n))
			return false;
		*out = (uint32_t)n;
		return true;
	}
	add_err(c, path, "expected an integer or a string like \"0x4d50\", "
		"got %s", type_name(v));
	return false;
}

static void k_mark(struct ctx *c, const char *path, struct json_object *v,
		   struct config *cfg, void *arg)
{
	get_mark(c, path, v, &cfg->mark);
}

static void k_mptcp(struct ctx *c, const char *path, struct json_object *v,
		    struct config *cfg, void *arg)
{
	get_bool(c, path, v, &cfg->mptcp);
}

static void k_connect_timeout(struct ctx *c, const char *path,
			      struct json_object *v, struct config *cfg, void *arg)
{
	struct upstream_seen *seen = arg;
	seen->connect_ok = get_uint(c, path, v, 100, 120000,
				    &cfg->connect_timeout_ms);
}

static void k_handshake_timeout(struct ctx *c, const char *path,
				struct json_object *v, struct config *cfg,
				void *arg)
{
	struct upstream_seen *seen = arg;
	seen->handshake_set = true;
	seen->handshake_ok = get_uint(c, path, v, 100, 300000,
				      &cfg->handshake_timeout_ms);
}

static void k_backoff(struct ctx *c, const char *path, struct json_object *v,
		      struct config *cfg, void *arg)
{
	get_uint(c, path, v, 1, 3600, &cfg->server_backoff_s);
}

static void k_pipeline(struct ctx *c, const char *path, struct json_object *v,
		       struct config *cfg, void *arg)
{
	get_mode(c, path, v, &cfg->pipeline);
}

static void k_fast_open(struct ctx *c, const char *path, struct json_object *v,
			struct config *cfg, void *arg)
{
	get_mode(c, path, v, &cfg->fast_open);
}

static void k_first_data_wait(struct ctx *c, const char *path,
			      struct json_object *v, struct config *cfg, void *arg)
{
	get_uint(c, path, v, 0, 1000, &cfg->first_data_wait_ms);
}

static void k_server_first_ports(struct ctx *c, const char *path,
				 struct json_object *v, struct config *cfg,
				 void *arg)
{
	if (!json_object_is_type(v, json_type_array)) {
		add_err(c, path, "expected an array of ports, got %s",
			type_name(v));
		return;
	}
	size_t n = json_object_array_length(v);
	if (n > CONFIG_MAX_SERVER_FIRST_PORTS) {
		add_err(c, path, "%zu ports, at most %d are allowed", n,
			CONFIG_MAX_SERVER_FIRST_PORTS);
		return;
	}
	cfg->n_server_first_ports = 0;
	for (size_t i = 0; i < n; i++) {
		char *p = path_index(path, i);
		if (!p) {
			add_err(c, path, "out of memory");
			return;
		}
		uint16_t port;
		if (get_port(c, p, json_object_array_get_idx(v, i), &port))
			cfg->server_first_ports[cfg->n_server_first_ports++] = port;
		free(p);
	}
}

static void k_pool_size(struct ctx *c, const char *path, struct json_object *v,
			struct config *cfg, void *arg)
{
	get_uint(c, path, v, 0, 64, &cfg->pool_size);
}

static void k_pool_lifetime(struct ctx *c, const char *path,
			    struct json_object *v, struct config *cfg, void *arg)
{
	get_uint(c, path, v, 1, 3600, &cfg->pool_lifetime_s);
}

static void k_pool_keep_warm(struct ctx *c, const char *path,
			     struct json_object *v, struct config *cfg, void *arg)
{
	get_uint(c, path, v, 0, 86400, &cfg->pool_keep_warm_s);
}

static const struct key_def pool_keys[] = {
	{ "size", k_pool_size },
	{ "lifetime_s", k_pool_lifetime },
	{ "keep_warm_s", k_pool_keep_warm },
	{ NULL, NULL },
};

static void k_pool(struct ctx *c, const char *path, struct json_object *v,
		   struct config *cfg, void *arg)
{
	if (is_object(c, path, v))
		walk(c, path, v, pool_keys, cfg, NULL);
}

static const struct key_def upstream_keys[] = {
	{ "mptcp", k_mptcp },
	{ "mark", k_mark },
	{ "connect_timeout_ms", k_connect_timeout },
	{ "handshake_timeout_ms", k_handshake_timeout },
	{ "server_backoff_s", k_backoff },
	{ "pipeline", k_pipeline },
	{ "fast_open", k_fast_open },
	{ "first_data_wait_ms", k_first_data_wait },
	{ "server_first_ports", k_server_first_ports },
	{ "pool", k_pool },
	{ NULL, NULL },
};

/* relay */
static void k_idle(struct ctx *c, const char *path, struct json_object *v,
		   struct config *cfg, void *arg)
{
	get_uint(c, path, v, 10, 604800, &cfg->idle_timeout_s);
}

static void k_half_close(struct ctx *c, const char *path,
			 struct json_object *v, struct config *cfg, void *arg)
{
	get_uint(c, path, v, 1, 86400, &cfg->half_close_timeout_s);
}

static void k_max_flows(struct ctx *c, const char *path, struct json_object *v,
			struct config *cfg, void *arg)
{
	get_uint(c, path, v, 1, 1000000, &cfg->max_flows);
}

static void k_buffer_size(struct ctx *c, const char *path,
			  struct json_object *v, struct config *cfg, void *arg)
{
	get_uint(c, path, v, 4096, 4194304, &cfg->buffer_size);
}

/* "auto" (0: one per CPU) or a number */
static void k_workers(struct ctx *c, const char *path, struct json_object *v,
		      struct config *cfg, void *arg)
{
	if (json_object_is_type(v, json_type_string) &&
	    strcmp(json_object_get_string(v), "auto") == 0) {
		cfg->workers = 0;
		return;
	}
	if (!json_object_is_type(v, json_type_int)) {
		add_err(c, path, "expected \"auto\" or a number of workers "
			"(1-%d)", CONFIG_MAX_WORKERS);
		return;
	}
	get_uint(c, path, v, 1, CONFIG_MAX_WORKERS, &cfg->workers);
}

static const struct key_def relay_keys[] = {
	{ "workers", k_workers },
	{ "idle_timeout_s", k_idle },
	{ "half_close_timeout_s", k_half_close },
	{ "max_flows", k_max_flows },
	{ "buffer_size", k_buffer_size },
	{ NULL, NULL },
};

/* firewall */
static void k_fw_enabled(struct ctx *c, const char *path, struct json_object *v,
			 struct config *cfg, void *arg)
{
	get_bool(c, path, v, &cfg->fw_enabled);
}

static void k_fw_mode(struct ctx *c, const char *path, struct json_object *v,
		      struct config *cfg, void *arg)
{
	const char *str;
	size_t len;
	if (!get_str(c, path, v, &str, &len))
		return;
	if (strcmp(str, "redirect") == 0) {
		cfg->fw_mode = CONFIG_FW_REDIRECT;
	} else if (strcmp(str, "tproxy") == 0) {
		cfg->fw_mode = CONFIG_FW_TPROXY;
	} else {
		char *sh = config_shown(str, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not \"redirect\" or \"tproxy\"", sh);
		config_shown_free(sh);
	}
}

/* An array of at most max elements: calls fn(c, "path[i]", element, i). */
static bool each_element(struct ctx *c, const char *path, struct json_object *v,
			 size_t max, const char *what,
			 void (*fn)(struct ctx *, const char *,
				    struct json_object *, struct config *),
			 struct config *cfg)
{
	if (!json_object_is_type(v, json_type_array)) {
		add_err(c, path, "expected an array of %s, got %s", what,
			type_name(v));
		return false;
	}
	size_t n = json_object_array_length(v);
	if (n > max) {
		add_err(c, path, "%zu %s, at most %zu are allowed", n, what, max);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char *p = path_index(path, i);
		if (!p) {
			add_err(c, path, "out of memory");
			return false;
		}
		fn(c, p, json_object_array_get_idx(v, i), cfg);
		free(p);
	}
	return true;
}

/* An interface name, kept in *dst. */
static bool get_ifname(struct ctx *c, const char *path, struct json_object *v,
		       char **dst)
{
	const char *str;
	size_t len;
	if (!get_str(c, path, v, &str, &len))
		return false;
	/* IFNAMSIZ is 16 with the terminating NUL; no '/', no spaces */
	if (len < 1 || len > 15 || strpbrk(str, "/ \t\n:")) {
		char *sh = config_shown(str, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not an interface name (1-15 "
			"characters, no '/', ':' or spaces)", sh);
		config_shown_free(sh);
		return false;
	}
	return keep(c, path, dst, str);
}

static void lan_iface(struct ctx *c, const char *path, struct json_object *v,
		      struct config *cfg)
{
	if (get_ifname(c, path, v, &cfg->fw_lan_ifaces[cfg->n_fw_lan_ifaces]))
		cfg->n_fw_lan_ifaces++;
}

static void k_fw_lan_ifaces(struct ctx *c, const char *path,
			    struct json_object *v, struct config *cfg, void *arg)
{
	for (size_t i = 0; i < cfg->n_fw_lan_ifaces; i++) {
		free(cfg->fw_lan_ifaces[i]);
		cfg->fw_lan_ifaces[i] = NULL;
	}
	cfg->n_fw_lan_ifaces = 0;
	if (each_element(c, path, v, CONFIG_MAX_LAN_IFACES, "interface names",
			 lan_iface, cfg) &&
	    json_object_array_length(v) == 0)
		add_err(c, path, "at least one interface is required");
}

static void bypass_prefix(struct ctx *c, const char *path,
			  struct json_object *v, struct config *cfg)
{
	const char *str;
	size_t len;
	if (!get_str(c, path, v, &str, &len))
		return;
	if (addr_prefix_parse(str, &cfg->fw_bypass[cfg->n_fw_bypass]) < 0) {
		char *sh = config_shown(str, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not an IPv4 or IPv6 address or "
			"prefix (like \"192.0.2.0/24\")", sh);
		config_shown_free(sh);
		return;
	}
	cfg->n_fw_bypass++;
}

static void k_fw_bypass(struct ctx *c, const char *path, struct json_object *v,
			struct config *cfg, void *arg)
{
	each_element(c, path, v, CONFIG_MAX_BYPASS, "prefixes", bypass_prefix,
		     cfg);
}

static void bypass_port(struct ctx *c, const char *path, struct json_object *v,
			struct config *cfg)
{
	if (get_port(c, path, v, &cfg->fw_bypass_ports[cfg->n_fw_bypass_ports]))
		cfg->n_fw_bypass_ports++;
}

static void k_fw_bypass_ports(struct ctx *c, const char *path,
			      struct json_object *v, struct config *cfg, void *arg)
{
	each_element(c, path, v, CONFIG_MAX_BYPASS_PORTS, "ports", bypass_port,
		     cfg);
}

static void k_fw_router_traffic(struct ctx *c, const char *path,
				struct json_object *v, struct config *cfg,
				void *arg)
{
	get_bool(c, path, v, &cfg->fw_router_traffic);
}

static void k_fw_block_quic(struct ctx *c, const char *path,
			    struct json_object *v, struct config *cfg, void *arg)
{
	get_bool(c, path, v, &cfg->fw_block_quic);
}

static void k_fw_tproxy_mark(struct ctx *c, const char *path,
			     struct json_object *v, struct config *cfg, void *arg)
{
	uint32_t m;
	if (!get_mark(c, path, v, &m))
		return;
	if (m == 0) {
		add_err(c, path, "0 is not a usable mark");
		return;
	}
	cfg->fw_tproxy_mark = m;
}

static void k_fw_tproxy_table(struct ctx *c, const char *path,
			      struct json_object *v, struct config *cfg,
			      void *arg)
{
	unsigned t;
	if (!get_uint(c, path, v, 1, 0x7fffffff, &t))
		return;
	if (t >= 253 && t <= 255) {
		add_err(c, path, "%u is a reserved routing table (default, "
			"main, local)", t);
		return;
	}
	cfg->fw_tproxy_table = t;
}

static const struct key_def firewall_keys[] = {
	{ "enabled", k_fw_enabled },
	{ "mode", k_fw_mode },
	{ "lan_interfaces", k_fw_lan_ifaces },
	{ "bypass", k_fw_bypass },
	{ "bypass_ports", k_fw_bypass_ports },
	{ "router_traffic", k_fw_router_traffic },
	{ "block_quic", k_fw_block_quic },
	{ "tproxy_mark", k_fw_tproxy_mark },
	{ "tproxy_table", k_fw_tproxy_table },
	{ NULL, NULL },
};

static void k_firewall(struct ctx *c, const char *path, struct json_object *v,
		       struct config *cfg, void *arg)
{
	if (is_object(c, path, v))
		walk(c, path, v, firewall_keys, cfg, NULL);
}

/* wans[] */
struct wan_slot {
	struct config_wan *wan;
	bool interface;
};

static void k_wan_interface(struct ctx *c, const char *path,
			    struct json_object *v, struct config *cfg, void *arg)
{
	struct wan_slot *sl = arg;
	sl->interface = true;
	get_ifname(c, path, v, &sl->wan->interface);
}

static void k_wan_mode(struct ctx *c, const char *path, struct json_object *v,
		       struct config *cfg, void *arg)
{
	struct wan_slot *sl = arg;
	const char *str;
	size_t len;
	if (!get_str(c, path, v, &str, &len))
		return;
	if (strcmp(str, "active") == 0 || strcmp(str, "backup") == 0) {
		sl->wan->backup = str[0] == 'b';
		return;
	}
	char *sh = config_shown(str, len, CONFIG_MAX_SHOWN);
	add_err(c, path, "\"%s\" is not \"active\" or \"backup\"", sh);
	config_shown_free(sh);
}

static void k_wan_gateway(struct ctx *c, const char *path,
			  struct json_object *v, struct config *cfg, void *arg)
{
	struct wan_slot *sl = arg;
	const char *str;
	size_t len;
	if (!get_str(c, path, v, &str, &len))
		return;
	if (addr_parse(str, 0, &sl->wan->gateway) < 0 ||
	    sl->wan->gateway.sa.sa_family != AF_INET) {
		char *sh = config_shown(str, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not an IPv4 address", sh);
		config_shown_free(sh);
		return;
	}
	sl->wan->gateway_set = true;
}

static void k_wan_table(struct ctx *c, const char *path, struct json_object *v,
			struct config *cfg, void *arg)
{
	struct wan_slot *sl = arg;
	unsigned t;
	if (!get_uint(c, path, v, 1, 0x7fffffff, &t))
		return;
	if (t >= 253 && t <= 255) {
		add_err(c, path, "%u is a reserved routing table (default, "
			"main, local)", t);
		return;
	}
	sl->wan->table = t;
}

static const struct key_def wan_keys[] = {
	{ "interface", k_wan_interface },
	{ "mode", k_wan_mode },
	{ "gateway", k_wan_gateway },
	{ "table", k_wan_table },
	{ NULL, NULL },
};

static void wan(struct ctx *c, const char *path, struct json_object *v,
		struct config *cfg)
{
	struct config_wan *w = &cfg->wans[cfg->n_wans];
	struct wan_slot sl = { .wan = w };

	if (!is_object(c, path, v))
		return;
	w->table = CONFIG_WAN_TABLE_BASE + (uint32_t)cfg->n_wans;
	walk(c, path, v, wan_keys, cfg, &sl);
	if (!sl.interface) {
		char *p = path_key(path, "interface");
		add_err(c, p ? p : path, "required");
		free(p);
	}
	cfg->n_wans++;
}

static void k_wans(struct ctx *c, const char *path, struct json_object *v,
		   struct config *cfg, void *arg)
{
	each_element(c, path, v, CONFIG_MAX_WANS, "WANs", wan, cfg);
}

/* linkmon */
static void k_probe(struct ctx *c, const char *path, struct json_object *v,
		    struct config *cfg, void *arg)
{
	static const char *const names[] = {
		[CONFIG_PROBE_TCP] = "tcp", [CONFIG_PROBE_ICMP] = "icmp",
		[CONFIG_PROBE_NONE] = "none",
	};
	const char *str;
	size_t len;
	if (!get_str(c, path, v, &str, &len))
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
		if (strcmp(str, names[i]) == 0) {
			cfg->probe = (enum config_probe)i;
			return;
		}
	char *sh = config_shown(str, len, CONFIG_MAX_SHOWN);
	add_err(c, path, "\"%s\" is not one of \"tcp\", \"icmp\", \"none\"",
		sh);
	config_shown_free(sh);
}

static void k_probe_interval(struct ctx *c, const char *path,
			     struct json_object *v, struct config *cfg, void *arg)
{
	get_uint(c, path, v, 50, 60000, &cfg->probe_interval_ms);
}

static void k_probe_timeout(struct ctx *c, const char *path,
			    struct json_object *v, struct config *cfg, void *arg)
{
	get_uint(c, path, v, 10, 60000, &cfg->probe_timeout_ms);
}

static void k_down_after(struct ctx *c, const char *path,
			 struct json_object *v, struct config *cfg, void *arg)
{
	get_uint(c, path, v, 1, 100, &cfg->down_after);
}

static void k_up_after(struct ctx *c, const char *path, struct json_object *v,
		       struct config *cfg, void *arg)
{
	get_uint(c, path, v, 1, 100, &cfg->up_after);
}

/* "IP" or "IP:port" / "[IPv6]:port" */
static void k_probe_target(struct ctx *c, const char *path,
			   struct json_object *v, struct config *cfg, void *arg)
{
	const char *str;
	size_t len;
	if (!get_str(c, path, v, &str, &len))
		return;
	char host[64];
	unsigned long port = 0;
	const char *colon = strrchr(str, ':');
	bool ok = len < sizeof(host);
	if (ok && str[0] == '[') {
		const char *end = strchr(str, ']');
		ok = end && (end[1] == '\0' || end[1] == ':');
		if (ok) {
			memcpy(host, str + 1, (size_t)(end - str - 1));
			host[end - str - 1] = '\0';
			colon = end[1] == ':' ? end + 1 : NULL;
		}
	} else if (ok && colon && strchr(str, ':') == colon) {
		memcpy(host, str, (size_t)(colon - str));
		host[colon - str] = '\0';
	} else if (ok) {
		strcpy(host, str);
		colon = NULL;
	}
	if (ok && colon) {
		char *end;
		port = strtoul(colon + 1, &end, 10);
		ok = colon[1] && !*end && port >= 1 && port <= 65535;
	}
	if (!ok || addr_parse(host, (uint16_t)port, &cfg->probe_target) < 0) {
		char *sh = config_shown(str, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not an address with an optional "
			"port (like \"192.0.2.1:443\" or \"[2001:db8::1]:443\")",
			sh);
		config_shown_free(sh);
		return;
	}
	cfg->probe_target_set = true;
}

static const struct key_def linkmon_keys[] = {
	{ "probe", k_probe },
	{ "interval_ms", k_probe_interval },
	{ "timeout_ms", k_probe_timeout },
	{ "down_after", k_down_after },
	{ "up_after", k_up_after },
	{ "target", k_probe_target },
	{ NULL, NULL },
};

static void k_linkmon(struct ctx *c, const char *path, struct json_object *v,
		      struct config *cfg, void *arg)
{
	if (is_object(c, path, v))
		walk(c, path, v, linkmon_keys, cfg, NULL);
}

/* log */
static void k_log_level(struct ctx *c, const char *path, struct json_object *v,
			struct config *cfg, void *arg)
{
	const char *s;
	size_t len;
	if (!get_str(c, path, v, &s, &len))
		return;
	int lvl = log_level_parse(s);
	if (lvl < 0) {
		char *sh = config_shown(s, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not a level (error, warn, info, "
			"debug)", sh);
		config_shown_free(sh);
		return;
	}
	cfg->log_level = (enum log_level)lvl;
}

static const struct key_def log_keys[] = {
	{ "level", k_log_level },
	{ NULL, NULL },
};

/* control */
static void k_control_socket(struct ctx *c, const char *path,
			     struct json_object *v, struct config *cfg, void *arg)
{
	const char *s;
	size_t len;
	if (!get_str(c, path, v, &s, &len))
		return;
	/* "" turns the control socket off */
	if (len && (s[0] != '/' || len >= CONFIG_MAX_SOCKET_PATH)) {
		char *sh = config_shown(s, len, CONFIG_MAX_SHOWN);
		add_err(c, path, "\"%s\" is not an absolute path of at most "
			"%d bytes (or \"\" for no control socket)", sh,
			CONFIG_MAX_SOCKET_PATH - 1);
		config_shown_free(sh);
		return;
	}
	keep(c, path, &cfg->control_socket, s);
}

static const struct key_def control_keys[] = {
	{ "socket", k_control_socket },
	{ NULL, NULL },
};

/* top level */
static void section(struct ctx *c, const char *path, struct json_object *v,
		    const struct key_def *defs, struct config *cfg, void *arg)
{
	if (is_object(c, path, v))
		walk(c, path, v, defs, cfg, arg);
}

static void k_listen(struct ctx *c, const char *path, struct json_object *v,
		     struct config *cfg, void *arg)
{
	section(c, path, v, listen_keys, cfg, NULL);
}

static void k_upstream(struct ctx *c, const char *path, struct json_object *v,
		       struct config *cfg, void *arg)
{
	struct upstream_seen seen = { .connect_ok = true };
	section(c, path, v, upstream_keys, cfg, &seen);
	/* One connect attempt must fit in the whole setup. Checked only when
	 * both values are valid (a default counts as valid). */
	if (seen.connect_ok && (!seen.handshake_set || seen.handshake_ok) &&
	    cfg->handshake_timeout_ms < cfg->connect_timeout_ms) {
		char *p = path_key(path, "handshake_timeout_ms");
		add_err(c, p ? p : path, "%u%s is less than "
			"connect_timeout_ms (%u)", cfg->handshake_timeout_ms,
			seen.handshake_set ? "" : " (the default)",
			cfg->connect_timeout_ms);
		free(p);
	}
}

static void k_relay(struct ctx *c, const char *path, struct json_object *v,
		    struct config *cfg, void *arg)
{
	section(c, path, v, relay_keys, cfg, NULL);
}

static void k_log(struct ctx *c, const char *path, struct json_object *v,
		  struct config *cfg, void *arg)
{
	section(c, path, v, log_keys, cfg, NULL);
}

static void k_control(struct ctx *c, const char *path, struct json_object *v,
		      struct config *cfg, void *arg)
{
	section(c, path, v, control_keys, cfg, NULL);
}

static const struct key_def top_keys[] = {
	{ "listen", k_listen },
	{ "servers", k_servers },
	{ "upstream", k_upstream },
	{ "relay", k_relay },
	{ "firewall", k_firewall },
	{ "wans", k_wans },
	{ "linkmon", k_linkmon },
	{ "log", k_log },
	{ "control", k_control },
	{ NULL, NULL },
};

/* ---- duplicate keys -------------------------------------------------- */

/* json-c keeps the last of duplicate keys without a word. This walks the
 * text json-c has already accepted (strict mode: no comments; strings in
 * double or single quotes) and reports each repeated key by its path.
 * Keys are decoded by json-c itself, so "\u0070ort" is "port". Objects are
 * checked up to DUP_KEYS keys (ours have at most five; a bigger one is
 * full of unknown keys anyway). */
#define DUP_DEPTH 64
#define DUP_KEYS 32

struct dup_frame {
	bool is_object;
	size_t index;          /* arrays: current element */
	char *keys[DUP_KEYS];  /* objects: keys seen so far */
	size_t n_keys;
	char *extra;           /* the current key once keys[] is full */
	const char *cur;       /* the current key */
};

static char *decode_key(const char *start, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	if (!tok)
		return NULL;
	struct json_object *o = json_tokener_parse_ex(tok, start, (int)len);
	char *s = NULL;
	if (json_object_is_type(o, json_type_string))
		s = strdup(json_object_get_string(o));
	json_object_put(o);
	json_tokener_free(tok);
	return s;
}

/* The path of the key being defined in frames[0..depth). */
static char *dup_path(struct dup_frame *f, size_t depth, const char *key)
{
	char *p = NULL;
	for (size_t i = 0; i < depth; i++) {
		char *q;
		if (i + 1 == depth)
			q = path_key(p, key);
		else if (f[i].is_object)
			q = path_key(p, f[i].cur ? f[i].cur : "?");
		else
			q = path_index(p ? p : "", f[i].index);
		free(p);
		if (!q)
			return NULL;
		p = q;
	}
	return p;
}

static void dup_free(struct dup_frame *f)
{
	for (size_t i = 0; i < f->n_keys; i++)
		free(f->keys[i]);
	free(f->extra);
	memset(f, 0, sizeof(*f));
}

static void check_duplicates(struct ctx *c, const char *s, size_t len)
{
	struct dup_frame *f = calloc(DUP_DEPTH, sizeof(*f));
	size_t depth = 0;
	bool want_key = false;

	if (!f)
		return;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		switch (ch) {
		case '{':
		case '[':
			if (depth == DUP_DEPTH)
				goto out; /* json-c allows less */
			f[depth].is_object = ch == '{';
			want_key = ch == '{';
			depth++;
			continue;
		case '}':
		case ']':
			if (depth)
				dup_free(&f[--depth]);
			want_key = false;
			if (depth == 0)
				goto out;
			continue;
		case ',':
			if (depth && f[depth - 1].is_object)
				want_key = true;
			else if (depth)
				f[depth - 1].index++;
			continue;
		case '"':
		case '\'': {
			size_t start = i++;
			while (i < len && s[i] != ch)
				i += s[i] == '\\' ? 2 : 1;
			if (i >= len)
				goto out;
			if (!want_key || !depth)
				continue;
			want_key = false;
			struct dup_frame *top = &f[depth - 1];
			char *key = decode_key(s + start, i + 1 - start);
			if (!key)
				goto out;
			bool dup = false;
			for (size_t k = 0; k < top->n_keys; k++)
				dup = dup || strcmp(top->keys[k], key) == 0;
			if (dup) {
				char *p = dup_path(f, depth, key);
				add_err(c, p ? p : c->name, "duplicate key "
					"(the last one would be used)");
				free(p);
			}
			if (top->n_keys < DUP_KEYS) {
				top->keys[top->n_keys++] = key;
			} else {
				free(top->extra);
				top->extra = key;
			}
			top->cur = key;
			continue;
		}
		default:
			continue; /* whitespace, ':', numbers, literals */
		}
	}
out:
	while (depth)
		dup_free(&f[--depth]);
	free(f);
}

/* ---- documents ------------------------------------------------------- */

static void line_col(const char *s, size_t off, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (s[i] == '\n') {
			++*line;
			*col = 1;
		} else {
			++*col;
		}
	}
}

static void json_error(struct ctx *c, const char *s, size_t off,
		       const char *what)
{
	size_t line, col;
	char *p = NULL;
	line_col(s, off, &line, &col);
	if (asprintf(&p, "%s:%zu:%zu", c->name, line, col) < 0)
		p = NULL;
	add_err(c, p ? p : c->name, "invalid JSON: %s", what);
	free(p);
}

static void config_defaults(struct config *cfg)
{
	cfg->listen_port = CONFIG_DEFAULT_LISTEN_PORT;
	cfg->mptcp = true;
	cfg->mark = CONFIG_DEFAULT_MARK;
	cfg->connect_timeout_ms = 5000;
	cfg->handshake_timeout_ms = 10000;
	cfg->server_backoff_s = 30;
	cfg->pipeline = CONFIG_AUTO;
	cfg->fast_open = CONFIG_AUTO;
	cfg->first_data_wait_ms = 5;
	/* Protocols whose server speaks first: FTP, telnet, SMTP, POP3, IMAP,
	 * submission, MySQL, VNC. */
	static const uint16_t server_first[] = { 21, 23, 25, 110, 143, 587,
						 3306, 5900 };
	memcpy(cfg->server_first_ports, server_first, sizeof(server_first));
	cfg->n_server_first_ports = sizeof(server_first) / sizeof(*server_first);
	cfg->pool_size = 2;
	cfg->pool_lifetime_s = 20;
	cfg->pool_keep_warm_s = 300;
	cfg->fw_enabled = true;
	cfg->fw_block_quic = true;
	cfg->fw_tproxy_mark = 0x4d51;
	cfg->fw_tproxy_table = 0x4d51;
	cfg->probe = CONFIG_PROBE_TCP;
	cfg->probe_interval_ms = 1000;
	cfg->probe_timeout_ms = 1000;
	cfg->down_after = 3;
	cfg->up_after = 2;
	cfg->idle_timeout_s = 3600;
	cfg->half_close_timeout_s = 120;
	cfg->max_flows = 4096;
	cfg->buffer_size = 65536;
	cfg->log_level = LOG_LVL_INFO;
}

/* The tree of a JSON document, or NULL (errors added). */
static struct json_object *parse_json(struct ctx *c, const char *text,
				      size_t len)
{
	static const char ws[] = " \t\r\n";

	struct json_tokener *tok = json_tokener_new();
	if (!tok) {
		add_err(c, c->name, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
				    JSON_TOKENER_ALLOW_TRAILING_CHARS |
				    JSON_TOKENER_VALIDATE_UTF8);
	/* len + 1: the terminating '\0' ends a top-level number too. */
	struct json_object *root = json_tokener_parse_ex(tok, text, (int)len + 1);
	size_t end = json_tokener_get_parse_end(tok);
	enum json_tokener_error e = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (e != json_tokener_success) {
		json_object_put(root);
		json_error(c, text, end > len ? len : end,
			   json_tokener_error_desc(e));
		return NULL;
	}
	/* root is NULL for a document that is just "null". */
	if (end > len)
		end = len;
	end += strspn(text + end, ws);
	if (end < len) {
		json_error(c, text, end, "unexpected data after the top-level "
			   "value");
		json_object_put(root);
		return NULL;
	}
	if (!json_object_is_type(root, json_type_object)) {
		add_err(c, c->name, "expected a JSON object at the top level, "
			"got %s", type_name(root));
		json_object_put(root);
		return NULL;
	}
	check_duplicates(c, text, len);
	return root;
}

/* What is checked before the format is read, the same way for
 * config_load_file(), config_parse_string() and config_tree_from_file():
 * the size, a byte order mark (dropped), NUL bytes, an empty file, the
 * format. text[len] must be '\0'. UCI_FORMAT_UNKNOWN: refused (reported). */
static enum uci_format front(struct ctx *c, const char **text, size_t *len)
{
	if (*len > CONFIG_MAX_FILE_SIZE) {
		add_err(c, c->name, "too large (%zu bytes, at most %u)", *len,
			CONFIG_MAX_FILE_SIZE);
		return UCI_FORMAT_UNKNOWN;
	}
	/* A UTF-8 byte order mark, as some editors write: not JSON, harmless. */
	if (*len >= 3 && memcmp(*text, "\xef\xbb\xbf", 3) == 0) {
		*text += 3;
		*len -= 3;
	}
	unsigned first_line;
	enum uci_format format = uci_detect(*text, *len, &first_line);
	const char *nul = memchr(*text, '\0', *len);
	if (nul) {
		size_t line, col;
		char *p = NULL;
		if (format == UCI_FORMAT_JSON) {
			json_error(c, *text, (size_t)(nul - *text), "NUL byte");
			return UCI_FORMAT_UNKNOWN;
		}
		line_col(*text, (size_t)(nul - *text), &line, &col);
		if (asprintf(&p, "%s:%zu", c->name, line) < 0)
			p = NULL;
		add_err(c, p ? p : c->name, "NUL byte");
		free(p);
		return UCI_FORMAT_UNKNOWN;
	}
	/* `touch /etc/config/mpredir`, or every line commented out: the same
	 * bytes in both formats, so one message that names what is missing */
	if (format == UCI_FORMAT_EMPTY) {
		add_err(c, c->name, "empty: no server configured (a JSON object "
			"or UCI config sections are expected)");
		return UCI_FORMAT_UNKNOWN;
	}
	if (format == UCI_FORMAT_UNKNOWN) {
		char *p = NULL;
		if (asprintf(&p, "%s:%u", c->name, first_line) < 0)
			p = NULL;
		add_err(c, p ? p : c->name, "neither JSON nor UCI: expected "
			"'{' (JSON), or config or package (UCI)");
		free(p);
	}
	return format;
}

/* text[len] must be '\0'. JSON or UCI, told apart by the first word. */
static struct config *parse(struct ctx *c, const char *text, size_t len)
{
	enum uci_format format = front(c, &text, &len);
	if (format == UCI_FORMAT_UNKNOWN)
		return NULL;

	struct uci_map *map = NULL;
	struct json_object *root;
	if (format == UCI_FORMAT_UCI)
		root = uci_convert(text, len, c->name, &map, uci_error, c);
	else
		root = parse_json(c, text, len);
	if (!root)
		return NULL;
	c->uci = map;

	struct config *cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		add_err(c, c->name, "out of memory");
		json_object_put(root);
		c->uci = NULL;
		uci_map_free(map);
		return NULL;
	}
	config_defaults(cfg);
	bool servers_seen = false;
	walk(c, NULL, root, top_keys, cfg, &servers_seen);
	if (!servers_seen)
		add_err(c, "servers", "at least one server is required");
	if (!cfg->listen_address)
		keep(c, "listen.address", &cfg->listen_address,
		     CONFIG_DEFAULT_LISTEN_ADDRESS);
	if (!cfg->control_socket)
		keep(c, "control.socket", &cfg->control_socket,
		     CONFIG_DEFAULT_CONTROL_SOCKET);
	for (size_t i = 0; i < cfg->n_servers; i++)
		if (!cfg->servers[i].pipeline_set)
			cfg->servers[i].pipeline = cfg->pipeline;
	if (!cfg->n_fw_lan_ifaces && !c->n_errors &&
	    keep(c, "firewall.lan_interfaces", &cfg->fw_lan_ifaces[0], "br-lan"))
		cfg->n_fw_lan_ifaces = 1;
	if (cfg->fw_enabled && cfg->mark == 0)
		add_err(c, "upstream.mark", "0 cannot be used with the firewall "
			"enabled: the daemon's own connections must carry a "
			"mark that the rules skip");
	if (cfg->fw_enabled && cfg->fw_mode == CONFIG_FW_TPROXY &&
	    cfg->fw_tproxy_mark == cfg->mark)
		add_err(c, "firewall.tproxy_mark", "must differ from "
			"upstream.mark");
	if (cfg->probe_timeout_ms > cfg->probe_interval_ms)
		add_err(c, "linkmon.timeout_ms", "%u is more than interval_ms "
			"(%u)", cfg->probe_timeout_ms, cfg->probe_interval_ms);
	for (size_t i = 0; i < cfg->n_wans; i++)
		for (size_t j = 0; j < i; j++) {
			const struct config_wan *a = &cfg->wans[i], *b = &cfg->wans[j];
			char p[32], q[32];
			snprintf(p, sizeof(p), "wans[%zu]", i);
			snprintf(q, sizeof(q), "wans[%zu]", j);
			/* the other one by its UCI name in a UCI file */
			char *other = c->uci ? uci_map_section(c->uci, q) : NULL;
			if (a->interface && b->interface &&
			    strcmp(a->interface, b->interface) == 0)
				add_err(c, p, "interface %s is already %s",
					a->interface, other ? other : q);
			else if (a->table == b->table)
				add_err(c, p, "table %u is already %s's",
					a->table, other ? other : q);
			free(other);
		}
	if (cfg->fw_router_traffic && cfg->fw_mode == CONFIG_FW_TPROXY)
		add_err(c, "firewall.router_traffic", "only with mode "
			"\"redirect\" (tproxy cannot capture the router's own "
			"traffic)");
	json_object_put(root);
	c->uci = NULL;
	uci_map_free(map);
	if (map && c->errs)
		uci_sort_errors(c->errs->lines, c->errs->n, c->name);
	if (c->n_errors) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

struct config *config_parse_string(const char *json, struct config_errors *errs)
{
	struct ctx c = { .errs = errs, .name = STRING_NAME };
	struct config *cfg = parse(&c, json, strlen(json));
	finish_errors(&c);
	return cfg;
}

/* Free a copy of a file's text, wiped first: it may hold a password.
 * Of the copies made while reading a file, these are wiped before they are
 * freed: this buffer (and each smaller one it grew from), the UCI reader's
 * words and values (uci.c), and the passwords of a struct config
 * (config_free). These are not: json-c's (the string objects of a JSON
 * tree, the tokener's buffer), which json-c frees as they are; and the
 * kernel's page cache of the file. */
static void wipe_free(char *buf, size_t cap)
{
	if (buf)
		explicit_bzero(buf, cap);
	free(buf);
}

/* The one reader of a configuration file: read to EOF (the size may be
 * unknown, e.g. a pipe), up to one byte past the limit so that front()
 * can tell it was exceeded. Returns the text (*len bytes, then '\0'; free
 * with wipe_free(buf, *cap)), or NULL with *err (an errno value). */
static char *read_all(int fd, size_t *len, size_t *cap, int *err)
{
	char *buf = malloc(4096);

	*len = 0;
	*cap = 4096;
	while (buf) {
		if (*len + 1 >= *cap) {
			if (*len > CONFIG_MAX_FILE_SIZE)
				break;
			/* not realloc, which would leave the old copy unwiped */
			char *nb = malloc(*cap * 2);
			if (nb)
				memcpy(nb, buf, *len);
			wipe_free(buf, *cap);
			buf = nb;
			*cap *= 2;
			continue;
		}
		ssize_t r = read(fd, buf + *len, *cap - *len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*err = errno;
			wipe_free(buf, *cap);
			return NULL;
		}
		if (r == 0)
			break;
		*len += (size_t)r;
	}
	if (!buf) {
		*err = ENOMEM;
		return NULL;
	}
	buf[*len] = '\0';
	return buf;
}

struct config *config_load_file(const char *path, struct config_errors *errs)
{
	char *name = config_shown(path, strlen(path), strlen(path));
	struct ctx c = { .errs = errs, .name = name };
	struct config *cfg = NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int err = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !(buf = read_all(fd, &len, &cap, &err))) {
		add_err(&c, name, "cannot read: %s",
			strerror(fd < 0 ? errno : err));
		goto out;
	}
	cfg = parse(&c, buf, len);
	struct stat st;
	if (cfg && fstat(fd, &st) == 0)
		cfg->file_mode = st.st_mode & 07777;
out:
	if (fd >= 0)
		close(fd);
	wipe_free(buf, cap);
	finish_errors(&c);
	config_shown_free(name);
	return cfg;
}

static void ignore_error(void *arg, char *line)
{
	(void)arg;
	free(line);
}

struct json_object *config_tree_from_file(const char *path)
{
	struct ctx c = { .name = path }; /* errors counted only */
	struct json_object *root = NULL;
	struct uci_map *map = NULL;
	size_t len = 0, cap = 0;
	int err;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = fd >= 0 ? read_all(fd, &len, &cap, &err) : NULL;
	const char *text = buf;

	if (fd >= 0)
		close(fd);
	if (!buf)
		return NULL;
	switch (front(&c, &text, &len)) {
	case UCI_FORMAT_JSON:
		root = json_tokener_parse(text);
		break;
	case UCI_FORMAT_UCI:
		root = uci_convert(text, len, path, &map, ignore_error, NULL);
		uci_map_free(map);
		break;
	default:
		break;
	}
	wipe_free(buf, cap);
	return root;
}

bool config_has_password(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_servers; i++)
		if (cfg->servers[i].password)
			return true;
	return false;
}

bool config_server_first_port(const struct config *cfg, uint16_t port)
{
	for (size_t i = 0; i < cfg->n_server_first_ports; i++)
		if (cfg->server_first_ports[i] == port)
			return true;
	return false;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->listen_address);
	free(cfg->control_socket);
	for (size_t i = 0; i < cfg->n_servers; i++) {
		struct config_server *s = &cfg->servers[i];
		free(s->address);
		free(s->username);
		if (s->password) {
			explicit_bzero(s->password, strlen(s->password));
			free(s->password);
		}
	}
	free(cfg->servers);
	for (size_t i = 0; i < cfg->n_fw_lan_ifaces; i++)
		free(cfg->fw_lan_ifaces[i]);
	for (size_t i = 0; i < cfg->n_wans; i++)
		free(cfg->wans[i].interface);
	free(cfg);
}
