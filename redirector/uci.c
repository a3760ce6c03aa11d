// SPDX-License-Identifier: GPL-2.0-or-later
/* uci: UCI text -> sections -> the JSON tree config.c validates, plus the
 * map from each JSON path back to its file line, section and option.
 *
 * Two steps: the reader cuts the text into commands and words and builds
 * the sections (a syntax error stops it: what follows cannot be read
 * reliably); the converter then gives each option its JSON type from the
 * table below. Values of options that hold secrets (username, password)
 * are never quoted in a message; nor is any word of a line that does not
 * parse, which may be a piece of one. */
#include "uci.h"

#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SECTIONS 64  /* 16 servers, 8 wans and the singletons fit */
#define MAX_OPTIONS 256  /* per section; the largest has 12 */
#define MAX_VALUES 1024  /* per list; the schema allows 256 at most */
#define MAX_WORDS 4      /* "option NAME VALUE" and one too many */

/* ---- the schema of the UCI file --------------------------------------- */

enum vtype {
	T_STR,        /* string as written */
	T_INT,        /* decimal integer */
	T_BOOL,       /* 1/0, true/false, yes/no, on/off, enabled/disabled */
	T_MODE,       /* "auto", "on", "off", or a boolean */
	T_INT_OR_STR, /* an integer if it reads as one ("workers": "auto") */
	T_MARK,       /* a string: config.c reads decimal and 0x hex */
	T_INTS,       /* list of T_INT */
	T_STRS,       /* list of T_STR */
};

struct opt_def {
	const char *name; /* UCI option */
	const char *key;  /* JSON key under the section, '.' for nesting */
	enum vtype type;
};

struct sec_def {
	const char *type;  /* UCI section type */
	const char *key;   /* top-level JSON key; NULL: not converted */
	bool repeat;       /* array element (servers, wans) or singleton */
	const struct opt_def *opts;
};

static const struct opt_def listen_opts[] = {
	{ "address", "address", T_STR },
	{ "port", "port", T_INT },
	{ NULL, NULL, 0 },
};

static const struct opt_def server_opts[] = {
	{ "address", "address", T_STR },
	{ "port", "port", T_INT },
	{ "username", "username", T_STR },
	{ "password", "password", T_STR },
	{ "pipeline", "pipeline", T_MODE },
	{ NULL, NULL, 0 },
};

static const struct opt_def upstream_opts[] = {
	{ "mptcp", "mptcp", T_BOOL },
	{ "mark", "mark", T_MARK },
	{ "connect_timeout_ms", "connect_timeout_ms", T_INT },
	{ "handshake_timeout_ms", "handshake_timeout_ms", T_INT },
	{ "server_backoff_s", "server_backoff_s", T_INT },
	{ "pipeline", "pipeline", T_MODE },
	{ "fast_open", "fast_open", T_MODE },
	{ "first_data_wait_ms", "first_data_wait_ms", T_INT },
	{ "server_first_ports", "server_first_ports", T_INTS },
	{ "pool_size", "pool.size", T_INT },
	{ "pool_lifetime_s", "pool.lifetime_s", T_INT },
	{ "pool_keep_warm_s", "pool.keep_warm_s", T_INT },
	{ NULL, NULL, 0 },
};

static const struct opt_def relay_opts[] = {
	{ "workers", "workers", T_INT_OR_STR },
	{ "idle_timeout_s", "idle_timeout_s", T_INT },
	{ "half_close_timeout_s", "half_close_timeout_s", T_INT },
	{ "max_flows", "max_flows", T_INT },
	{ "buffer_size", "buffer_size", T_INT },
	{ NULL, NULL, 0 },
};

static const struct opt_def firewall_opts[] = {
	{ "enabled", "enabled", T_BOOL },
	{ "mode", "mode", T_STR },
	{ "lan_interfaces", "lan_interfaces", T_STRS },
	{ "bypass", "bypass", T_STRS },
	{ "bypass_ports", "bypass_ports", T_INTS },
	{ "router_traffic", "router_traffic", T_BOOL },
	{ "block_quic", "block_quic", T_BOOL },
	{ "tproxy_mark", "tproxy_mark", T_MARK },
	{ "tproxy_table", "tproxy_table", T_INT },
	{ NULL, NULL, 0 },
};

static const struct opt_def wan_opts[] = {
	{ "interface", "interface", T_STR },
	{ "mode", "mode", T_STR },
	{ "gateway", "gateway", T_STR },
	{ "table", "table", T_INT },
	{ NULL, NULL, 0 },
};

static const struct opt_def linkmon_opts[] = {
	{ "probe", "probe", T_STR },
	{ "interval_ms", "interval_ms", T_INT },
	{ "timeout_ms", "timeout_ms", T_INT },
	{ "down_after", "down_after", T_INT },
	{ "up_after", "up_after", T_INT },
	{ "target", "target", T_STR },
	{ NULL, NULL, 0 },
};

static const struct opt_def log_opts[] = {
	{ "level", "level", T_STR },
	{ NULL, NULL, 0 },
};

static const struct opt_def control_opts[] = {
	{ "socket", "socket", T_STR },
	{ NULL, NULL, 0 },
};

/* The init script's: start the service or not. */
static const struct opt_def mpredir_opts[] = {
	{ "enabled", "enabled", T_BOOL },
	{ NULL, NULL, 0 },
};

static const struct sec_def sec_defs[] = {
	{ "mpredir", NULL, false, mpredir_opts },
	{ "listen", "listen", false, listen_opts },
	{ "server", "servers", true, server_opts },
	{ "upstream", "upstream", false, upstream_opts },
	{ "relay", "relay", false, relay_opts },
	{ "firewall", "firewall", false, firewall_opts },
	{ "wan", "wans", true, wan_opts },
	{ "linkmon", "linkmon", false, linkmon_opts },
	{ "log", "log", false, log_opts },
	{ "control", "control", false, control_opts },
};
#define N_SEC_DEFS (sizeof(sec_defs) / sizeof(*sec_defs))

/* ---- messages ----------------------------------------------------------- */

static char * __attribute__((format(printf, 1, 2))) fmt(const char *f, ...)
{
	char *s = NULL;
	va_list ap;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* ---- reading ------------------------------------------------------------ */

struct opt {
	char *name;
	unsigned line;     /* of its first (or only) line */
	bool is_list;
	char **values;     /* none for an option set to '' */
	unsigned *lines;
	size_t n;
	struct opt *next;
};

struct sec {
	char *type;
	char *name;        /* NULL: anonymous */
	char *desc;        /* "server 'main'" or "@server[1]" */
	unsigned line;
	size_t index;      /* among the sections of its type */
	size_t n_opts;
	bool skip;         /* refused (its name was taken): not converted */
	struct opt *opts, **opt_tail;
	struct sec *next;
};

struct reader {
	const char *s;
	size_t len, pos;
	unsigned line;
	const char *name;
	uci_error_fn *err;
	void *arg;
	struct sec *secs, **sec_tail, *cur;
	size_t n_secs;
	bool package_seen;
	bool errors;       /* any error reported */
	/* the words of the current command */
	char *words[MAX_WORDS];
	size_t n_words;
	char *w;           /* the word being read */
	size_t wlen, wcap;
	unsigned word_line;
};

static void __attribute__((format(printf, 3, 4)))
rd_error(struct reader *r, unsigned line, const char *f, ...)
{
	char *reason = NULL;
	va_list ap;

	va_start(ap, f);
	if (vasprintf(&reason, f, ap) < 0)
		reason = NULL;
	va_end(ap);
	r->errors = true;
	r->err(r->arg, reason ? fmt("%s:%u: %s", r->name, line, reason) : NULL);
	free(reason);
}

/* Free a copy of the text, wiped first: a word or value may be a
 * password (see wipe_free() in config.c for what is wiped, and what not). */
static void wipe_free(char *s, size_t len)
{
	if (s)
		explicit_bzero(s, len);
	free(s);
}

static bool addc(struct reader *r, char ch)
{
	if (r->wlen + 1 >= r->wcap) {
		/* not realloc, which would leave the old copy unwiped */
		size_t cap = r->wcap ? r->wcap * 2 : 64;
		char *w = malloc(cap);
		if (!w)
			return false;
		if (r->w)
			memcpy(w, r->w, r->wlen + 1);
		wipe_free(r->w, r->wcap);
		r->w = w;
		r->wcap = cap;
	}
	r->w[r->wlen++] = ch;
	r->w[r->wlen] = '\0';
	return true;
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* A backslash before a newline (or CR LF) at pos: the line goes on. */
static size_t continuation(const struct reader *r, size_t pos)
{
	if (pos + 1 < r->len && r->s[pos] == '\\' && r->s[pos + 1] == '\n')
		return 2;
	if (pos + 2 < r->len && r->s[pos] == '\\' && r->s[pos + 1] == '\r' &&
	    r->s[pos + 2] == '\n')
		return 3;
	return 0;
}

static void skip_blanks(struct reader *r)
{
	for (;;) {
		size_t n = continuation(r, r->pos);
		if (n) {
			r->pos += n;
			r->line++;
		} else if (r->pos < r->len && is_blank(r->s[r->pos])) {
			r->pos++;
		} else {
			return;
		}
	}
}

enum tok { TOK_WORD, TOK_END, TOK_ERROR };

/* One quoted part, from the opening quote at r->pos. */
static enum tok quoted(struct reader *r)
{
	char q = r->s[r->pos++];
	unsigned line = r->line;

	for (;;) {
		if (r->pos >= r->len) {
			rd_error(r, line, "the quote %c opened here is never "
				 "closed", q);
			return TOK_ERROR;
		}
		char ch = r->s[r->pos];
		if (ch == q) {
			r->pos++;
			return TOK_WORD;
		}
		if (q == '"' && ch == '\\') {
			size_t n = continuation(r, r->pos);
			if (n) {
				r->pos += n;
				r->line++;
				continue;
			}
			if (++r->pos >= r->len)
				continue; /* reported as never closed */
			ch = r->s[r->pos];
		}
		if (ch == '\n')
			r->line++; /* a value may span lines */
		if (!addc(r, ch))
			return TOK_ERROR;
		r->pos++;
	}
}

/* The next word of the command into r->w, or its end: a newline (eaten),
 * ';' (eaten), a '#' comment (up to the newline), or the end of text. */
static enum tok next_word(struct reader *r)
{
	skip_blanks(r);
	r->wlen = 0;
	if (!addc(r, '\0'))
		return TOK_ERROR;
	r->wlen = 0;
	r->word_line = r->line;
	if (r->pos >= r->len)
		return TOK_END;
	switch (r->s[r->pos]) {
	case '\n':
		r->pos++;
		r->line++;
		return TOK_END;
	case ';':
		r->pos++;
		return TOK_END;
	case '#':
		while (r->pos < r->len && r->s[r->pos] != '\n')
			r->pos++;
		return TOK_END;
	}
	while (r->pos < r->len) {
		char ch = r->s[r->pos];
		size_t n = continuation(r, r->pos);
		if (n) {
			r->pos += n;
			r->line++;
		} else if (ch == '\'' || ch == '"') {
			enum tok t = quoted(r);
			if (t != TOK_WORD)
				return t;
		} else if (ch == '\\') {
			if (++r->pos < r->len && !addc(r, r->s[r->pos++]))
				return TOK_ERROR;
		} else if (ch == '#' || ch == ';' || ch == '\n' || is_blank(ch)) {
			break;
		} else {
			if (!addc(r, ch))
				return TOK_ERROR;
			r->pos++;
		}
	}
	return TOK_WORD;
}

/* Letters, digits and '_' (libuci's names); '-' too for a package. */
static bool valid_name(const char *s, bool package)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		char ch = *s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' ||
		      (package && ch == '-')))
			return false;
	}
	return true;
}

/* libuci's commands, each written whole or as its first letter: one
 * table for the reader (command()) and for uci_detect(). */
enum cmd { CMD_CONFIG, CMD_OPTION, CMD_LIST, CMD_PACKAGE, CMD_NONE };

static const char *const cmd_names[] = { "config", "option", "list",
					 "package" };

/* The command that w[0..n) names (not NUL-terminated in uci_detect). */
static enum cmd cmd_of(const char *w, size_t n)
{
	for (size_t k = 0; k < CMD_NONE; k++)
		if ((n == strlen(cmd_names[k]) &&
		     memcmp(w, cmd_names[k], n) == 0) ||
		    (n == 1 && w[0] == cmd_names[k][0]))
			return (enum cmd)k;
	return CMD_NONE;
}

static bool out_of_memory(struct reader *r)
{
	rd_error(r, r->line, "out of memory");
	return false;
}

static bool cmd_package(struct reader *r, unsigned line)
{
	if (r->n_words < 2) {
		rd_error(r, line, "package without a name: package NAME");
		return false;
	}
	if (r->n_words > 2) {
		rd_error(r, line, "too many words: package NAME");
		return false;
	}
	if (!valid_name(r->words[1], true)) {
		rd_error(r, line, "invalid package name (letters, digits, '_' "
			 "and '-')");
		return false;
	}
	if (r->package_seen || r->secs) {
		rd_error(r, line, "package must be the first command, and "
			 "come once");
		return false;
	}
	r->package_seen = true;
	return true;
}

static bool cmd_config(struct reader *r, unsigned line)
{
	if (r->n_words < 2) {
		rd_error(r, line, "config without a section type: config "
			 "TYPE ['NAME']");
		return false;
	}
	if (r->n_words > 3) {
		rd_error(r, line, "too many words: config TYPE ['NAME']");
		return false;
	}
	const char *type = r->words[1];
	const char *name = r->n_words == 3 && r->words[2][0] ? r->words[2] : NULL;
	if (!valid_name(type, false)) {
		rd_error(r, line, "invalid section type (letters, digits and "
			 "'_')");
		return false;
	}
	if (name && !valid_name(name, false)) {
		rd_error(r, line, "invalid section name (letters, digits and "
			 "'_')");
		return false;
	}
	if (r->n_secs == MAX_SECTIONS) {
		rd_error(r, line, "more than %d sections", MAX_SECTIONS);
		return false;
	}
	struct sec *s = calloc(1, sizeof(*s));
	if (!s)
		return out_of_memory(r);
	*r->sec_tail = s;
	r->sec_tail = &s->next;
	r->n_secs++;
	r->cur = s;
	s->opt_tail = &s->opts;
	s->line = line;
	for (struct sec *o = r->secs; o != s; o = o->next)
		s->index += strcmp(o->type, type) == 0;
	s->type = strdup(type);
	s->name = name ? strdup(name) : NULL;
	if (name)
		s->desc = fmt("%s '%s'", type, name);
	else
		s->desc = fmt("@%s[%zu]", type, s->index);
	if (!s->type || (name && !s->name) || !s->desc)
		return out_of_memory(r);
	/* libuci merges a section into an earlier one of the same name: here
	 * that is a mistake to show */
	for (struct sec *o = r->secs; name && o != s; o = o->next)
		if (o->name && strcmp(o->name, name) == 0) {
			rd_error(r, line, "%s: section name already used at "
				 "line %u", s->desc, o->line);
			s->skip = true;
			break;
		}
	return true;
}

static bool add_value(struct reader *r, struct opt *o, const char *v,
		      unsigned line)
{
	if (o->n == MAX_VALUES) {
		if (o->n++ == MAX_VALUES) /* once */
			rd_error(r, line, "%s, list %s: more than %d values",
				 r->cur->desc, o->name, MAX_VALUES);
		return true;
	}
	if (o->n > MAX_VALUES)
		return true;
	char **vals = realloc(o->values, (o->n + 1) * sizeof(*vals));
	if (!vals)
		return out_of_memory(r);
	o->values = vals;
	unsigned *lines = realloc(o->lines, (o->n + 1) * sizeof(*lines));
	if (!lines)
		return out_of_memory(r);
	o->lines = lines;
	if (!(o->values[o->n] = strdup(v)))
		return out_of_memory(r);
	o->lines[o->n++] = line;
	return true;
}

static bool cmd_option(struct reader *r, unsigned line, bool list)
{
	const char *cmd = list ? "list" : "option";

	if (!r->cur) {
		rd_error(r, line, "%s before the first section (a config line "
			 "must come first)", cmd);
		return false;
	}
	if (r->n_words < 2) {
		rd_error(r, line, "%s without a name: %s NAME 'VALUE'", cmd, cmd);
		return false;
	}
	if (r->n_words > 3) {
		rd_error(r, line, "too many words: %s NAME 'VALUE' (quote a "
			 "value with spaces)", cmd);
		return false;
	}
	const char *name = r->words[1];
	const char *value = r->n_words == 3 ? r->words[2] : "";
	if (!valid_name(name, false)) {
		rd_error(r, line, "invalid option name (letters, digits and "
			 "'_')");
		return false;
	}
	struct opt *o = r->cur->opts;
	while (o && strcmp(o->name, name) != 0)
		o = o->next;
	if (o && !(list && o->is_list)) {
		/* libuci would keep the last one: a mistake to show */
		rd_error(r, line, "%s, %s %s: duplicate option (also at line "
			 "%u)", r->cur->desc, cmd, name, o->line);
		return true;
	}
	if (!o && r->cur->n_opts == MAX_OPTIONS) {
		rd_error(r, line, "%s: more than %d options", r->cur->desc,
			 MAX_OPTIONS);
		return false;
	}
	if (!o) {
		r->cur->n_opts++;
		o = calloc(1, sizeof(*o));
		if (!o)
			return out_of_memory(r);
		*r->cur->opt_tail = o;
		r->cur->opt_tail = &o->next;
		o->line = line;
		o->is_list = list;
		if (!(o->name = strdup(name)))
			return out_of_memory(r);
	}
	/* as in libuci, an option set to '' is not set */
	if (!list && !value[0])
		return true;
	return add_value(r, o, value, line);
}

static void free_words(struct reader *r)
{
	for (size_t i = 0; i < r->n_words; i++)
		wipe_free(r->words[i], strlen(r->words[i]));
	r->n_words = 0;
}

/* One command; false on a syntax error (reported) or no memory. */
static bool command(struct reader *r)
{
	unsigned line = 0;
	enum tok t;
	bool ok;

	while ((t = next_word(r)) == TOK_WORD) {
		if (r->n_words == 0)
			line = r->word_line;
		if (r->n_words == MAX_WORDS)
			continue; /* too many: counted, not kept */
		if (!(r->words[r->n_words++] = strdup(r->w)))
			return out_of_memory(r);
	}
	if (t == TOK_ERROR)
		return false;
	if (r->n_words == 0)
		return true;
	switch (cmd_of(r->words[0], strlen(r->words[0]))) {
	case CMD_CONFIG:
		ok = cmd_config(r, line);
		break;
	case CMD_OPTION:
		ok = cmd_option(r, line, false);
		break;
	case CMD_LIST:
		ok = cmd_option(r, line, true);
		break;
	case CMD_PACKAGE:
		ok = cmd_package(r, line);
		break;
	default:
		rd_error(r, line, "expected config, option, list or package "
			 "at the start of a command");
		ok = false;
	}
	free_words(r);
	return ok;
}

static void free_sections(struct sec *s)
{
	while (s) {
		struct sec *next = s->next;
		struct opt *o = s->opts;
		while (o) {
			struct opt *on = o->next;
			for (size_t i = 0; i < o->n && i < MAX_VALUES; i++)
				wipe_free(o->values[i], strlen(o->values[i]));
			free(o->values);
			free(o->lines);
			free(o->name);
			free(o);
			o = on;
		}
		free(s->type);
		free(s->name);
		free(s->desc);
		free(s);
		s = next;
	}
}

/* ---- detection ---------------------------------------------------------- */

enum uci_format uci_detect(const char *text, size_t len, unsigned *line)
{
	size_t i = 0;
	unsigned ln = 1;

	for (;;) {
		while (i < len && (is_blank(text[i]) || text[i] == '\n'))
			ln += text[i++] == '\n';
		if (i < len && text[i] == '#') {
			while (i < len && text[i] != '\n')
				i++;
			continue;
		}
		break;
	}
	*line = ln;
	if (i >= len)
		return UCI_FORMAT_EMPTY;
	if (text[i] == '{' || text[i] == '[' || text[i] == '"' ||
	    text[i] == '-' || (text[i] >= '0' && text[i] <= '9'))
		return UCI_FORMAT_JSON;
	size_t n = 0;
	while (i + n < len && !is_blank(text[i + n]) && text[i + n] != '\n' &&
	       text[i + n] != ';' && text[i + n] != '#')
		n++;
	static const char *const json_words[] = { "true", "false", "null" };
	if (cmd_of(text + i, n) != CMD_NONE)
		return UCI_FORMAT_UCI;
	for (size_t k = 0; k < 3; k++)
		if (strlen(json_words[k]) == n &&
		    memcmp(text + i, json_words[k], n) == 0)
			return UCI_FORMAT_JSON;
	return UCI_FORMAT_UNKNOWN;
}

/* ---- the path map ------------------------------------------------------- */

struct map_ent {
	char *path;   /* JSON path: "servers[1].port" */
	char *loc;    /* "FILE:LINE: server 'b', option port" */
	char *desc;   /* sections only: "server 'b'" */
	bool bad;     /* refused by the reader */
};

struct uci_map {
	struct map_ent *e;
	size_t n, cap;
	char *name;
};

/* Takes path and loc (NULL: no memory, then false). */
static bool map_add(struct uci_map *m, char *path, char *loc, const char *desc,
		    bool bad)
{
	char *d = desc ? strdup(desc) : NULL;
	if (!path || !loc || (desc && !d))
		goto fail;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 32;
		struct map_ent *e = realloc(m->e, cap * sizeof(*e));
		if (!e)
			goto fail;
		m->e = e;
		m->cap = cap;
	}
	m->e[m->n++] = (struct map_ent){ path, loc, d, bad };
	return true;
fail:
	free(path);
	free(loc);
	free(d);
	return false;
}

void uci_map_free(struct uci_map *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->e[i].path);
		free(m->e[i].loc);
		free(m->e[i].desc);
	}
	free(m->e);
	free(m->name);
	free(m);
}

/* The UCI type of a top-level JSON key. */
static const char *uci_type_of(const char *key, size_t len)
{
	for (size_t i = 0; i < N_SEC_DEFS; i++)
		if (sec_defs[i].key && strlen(sec_defs[i].key) == len &&
		    memcmp(sec_defs[i].key, key, len) == 0)
			return sec_defs[i].type;
	return NULL;
}

/* JSON key under a section -> UCI option name ("pool.size" ->
 * "pool_size"; an array index dropped). */
static char *option_of(const char *tail)
{
	char *o = strdup(tail);
	if (!o)
		return NULL;
	char *b = strchr(o, '[');
	if (b)
		*b = '\0';
	for (char *p = o; *p; p++)
		if (*p == '.')
			*p = '_';
	return o;
}

char *uci_map_locate(const struct uci_map *m, const char *path, bool *drop)
{
	const struct map_ent *best = NULL;
	size_t best_len = 0;

	*drop = false;
	for (size_t i = 0; i < m->n; i++) {
		const struct map_ent *e = &m->e[i];
		size_t n = strlen(e->path);
		if (strncmp(e->path, path, n) != 0)
			continue;
		if (path[n] == '\0') {
			if (e->bad) {
				*drop = true;
				return NULL;
			}
			return strdup(e->loc);
		}
		if ((path[n] == '.' || path[n] == '[') && n > best_len) {
			best = e;
			best_len = n;
		}
	}
	if (best && best->bad) {
		*drop = true;
		return NULL;
	}
	if (best) {
		/* a key the section lacks ("required") */
		const char *tail = path + best_len + (path[best_len] == '.');
		char *o = option_of(tail), *loc;
		loc = o ? fmt("%s, option %s", best->loc, o) : NULL;
		free(o);
		return loc;
	}
	/* nothing in the file: "servers" without a server section */
	size_t n = strcspn(path, ".[");
	const char *type = uci_type_of(path, n);
	char *o = path[n] == '.' ? option_of(path + n + 1) : NULL, *loc;
	if (path[n] == '.' && !o)
		return NULL;
	if (!type)
		loc = fmt("%s: %s", m->name, path);
	else if (o)
		loc = fmt("%s: config %s, option %s", m->name, type, o);
	else
		loc = fmt("%s: config %s", m->name, type);
	free(o);
	return loc;
}

char *uci_map_section(const struct uci_map *m, const char *path)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->e[i].desc && strcmp(m->e[i].path, path) == 0)
			return strdup(m->e[i].desc);
	return NULL;
}

/* The line number of "NAME:LINE: ...", or UINT_MAX. */
static unsigned line_of(const char *l, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(l, name, n) != 0 || l[n] != ':' || l[n + 1] < '0' ||
	    l[n + 1] > '9')
		return UINT_MAX;
	unsigned long v = strtoul(l + n + 1, NULL, 10);
	return v < UINT_MAX ? (unsigned)v : UINT_MAX;
}

void uci_sort_errors(char **lines, size_t n, const char *name)
{
	for (size_t i = 1; i < n; i++) {
		char *l = lines[i];
		unsigned k = line_of(l, name);
		size_t j = i;
		while (j > 0 && line_of(lines[j - 1], name) > k) {
			lines[j] = lines[j - 1];
			j--;
		}
		lines[j] = l;
	}
}

/* ---- conversion --------------------------------------------------------- */

struct conv {
	struct reader *r;
	struct uci_map *map;
	struct json_object *root;
	unsigned first_line[N_SEC_DEFS]; /* of each singleton; 0: none */
	size_t count[N_SEC_DEFS];        /* sections converted, per type */
	const struct sec *last[N_SEC_DEFS]; /* the last one converted */
};

static bool parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on", "enabled" };
	static const char *const no[] = { "0", "false", "no", "off", "disabled" };
	for (size_t i = 0; i < 5; i++) {
		if (strcmp(v, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(v, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool is_int(const char *v)
{
	const char *d = v + (v[0] == '-');
	return *d && strspn(d, "0123456789") == strlen(d);
}

/* A decimal integer. Beyond int64 it is kept saturated, but written as in
 * the file, so that config.c's "... is out of range" shows it. */
static struct json_object *new_int(const char *v)
{
	errno = 0;
	long long n = strtoll(v, NULL, 10);
	struct json_object *j = json_object_new_int64(n);
	if (j && errno == ERANGE) {
		char *text = strdup(v);
		if (!text) {
			json_object_put(j);
			return NULL;
		}
		json_object_set_serializer(j, json_object_userdata_to_json_string,
					   text, json_object_free_userdata);
	}
	return j;
}

/* One value as JSON; NULL with *reason set (or NULL: out of memory). */
static struct json_object *value(enum vtype t, const char *v, char **reason)
{
	bool b;

	*reason = NULL;
	switch (t) {
	case T_INT:
	case T_INTS:
		if (is_int(v))
			return new_int(v);
		char *sh = config_shown(v, strlen(v), CONFIG_MAX_SHOWN);
		*reason = fmt("expected an integer, got \"%s\"", sh);
		config_shown_free(sh);
		return NULL;
	case T_BOOL:
		if (parse_bool(v, &b))
			return json_object_new_boolean(b);
		sh = config_shown(v, strlen(v), CONFIG_MAX_SHOWN);
		*reason = fmt("expected a boolean (1/0, true/false, yes/no, "
			      "on/off, enabled/disabled), got \"%s\"", sh);
		config_shown_free(sh);
		return NULL;
	case T_MODE:
		if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0 &&
		    parse_bool(v, &b))
			return json_object_new_boolean(b);
		return json_object_new_string(v);
	case T_INT_OR_STR:
		if (is_int(v))
			return new_int(v);
		return json_object_new_string(v);
	case T_STR:
	case T_STRS:
	case T_MARK:
		return json_object_new_string(v);
	}
	return NULL;
}

static bool is_list_type(enum vtype t)
{
	return t == T_INTS || t == T_STRS;
}

/* obj[key], key "a.b" nesting into (new) objects. Takes v. */
static bool put(struct json_object *obj, const char *key, struct json_object *v)
{
	const char *dot = strchr(key, '.');
	if (!dot)
		return json_object_object_add(obj, key, v) == 0;
	char sub[32];
	size_t n = (size_t)(dot - key);
	if (n >= sizeof(sub))
		goto fail;
	memcpy(sub, key, n);
	sub[n] = '\0';
	struct json_object *inner;
	if (!json_object_object_get_ex(obj, sub, &inner)) {
		inner = json_object_new_object();
		if (!inner || json_object_object_add(obj, sub, inner) != 0) {
			json_object_put(inner);
			goto fail;
		}
	}
	return put(inner, dot + 1, v);
fail:
	json_object_put(v);
	return false;
}

/* "FILE:LINE: DESC, option NAME: reason" of the reader. */
static void opt_error(struct conv *cv, const struct sec *s,
		      const struct opt *o, unsigned line, const char *reason)
{
	rd_error(cv->r, line, "%s, %s %s: %s", s->desc,
		 o->is_list ? "list" : "option", o->name,
		 reason ? reason : "out of memory");
}

/* A list option (or one value given as an option) as an array in obj, at
 * `path`; each element in the map at its own line. Takes path and loc. */
static bool convert_list(struct conv *cv, const struct sec *s,
			 const struct opt *o, const struct opt_def *d,
			 struct json_object *obj, char *path, char *loc)
{
	struct json_object *arr = json_object_new_array();
	char *reason = NULL;

	if (!arr || !put(obj, d->key, arr))
		goto fail;
	for (size_t i = 0; i < o->n && i < MAX_VALUES; i++) {
		struct json_object *v = value(d->type, o->values[i], &reason);
		if (!v)
			opt_error(cv, s, o, o->lines[i], reason);
		free(reason);
		/* a refused element stays as null, for the indexes after it
		 * to keep their place: config.c's error on it is dropped */
		if (json_object_array_add(arr, v) != 0) {
			json_object_put(v);
			goto fail;
		}
		if (!map_add(cv->map, fmt("%s[%zu]", path, i),
			     fmt("%s:%u: %s, %s %s", cv->r->name, o->lines[i],
				 s->desc, o->is_list ? "list" : "option",
				 o->name), NULL, !v))
			goto fail;
	}
	return map_add(cv->map, path, loc, NULL, false);
fail:
	free(path);
	free(loc);
	return false;
}

/* One option of a section: its value(s) into obj at spath.KEY (obj and
 * spath NULL: checked only). False only when out of memory. */
static bool convert_opt(struct conv *cv, const struct sec *s,
			const struct opt *o, const struct opt_def *d,
			struct json_object *obj, const char *spath)
{
	char *path = spath ? fmt("%s.%s", spath, d->key) : NULL;
	char *loc = fmt("%s:%u: %s, %s %s", cv->r->name, o->line, s->desc,
			o->is_list ? "list" : "option", o->name);
	struct json_object *v = NULL;
	char *reason = NULL;

	if ((spath && !path) || !loc) {
		free(path);
		free(loc);
		return false;
	}
	if (is_list_type(d->type)) {
		if (path)
			return convert_list(cv, s, o, d, obj, path, loc);
		free(loc);
		return true;
	}
	if (o->is_list) {
		opt_error(cv, s, o, o->line, "expected a single value (option), "
			  "got a list");
	} else if (!(v = value(d->type, o->values[0], &reason))) {
		opt_error(cv, s, o, o->line, reason);
	} else if (!obj) {
		json_object_put(v);
	} else if (!put(obj, d->key, v)) {
		opt_error(cv, s, o, o->line, NULL);
	}
	free(reason);
	if (!path) {
		free(loc);
		return true;
	}
	/* a refused value: config.c's "required" on it is dropped */
	return map_add(cv->map, path, loc, NULL, v == NULL);
}

/* A new object for section s (of sec_defs[k]) in the tree, at *spath
 * ("servers[1]", "upstream"), placed in the map. */
static struct json_object *attach(struct conv *cv, const struct sec *s,
				  size_t k, char **spath)
{
	const struct sec_def *d = &sec_defs[k];
	struct json_object *obj = json_object_new_object(), *arr;

	*spath = NULL;
	if (!obj)
		return NULL;
	if (d->repeat && !json_object_object_get_ex(cv->root, d->key, &arr)) {
		arr = json_object_new_array();
		if (!arr || json_object_object_add(cv->root, d->key, arr)) {
			json_object_put(arr);
			json_object_put(obj);
			return NULL;
		}
	}
	if (d->repeat ? json_object_array_add(arr, obj)
		      : json_object_object_add(cv->root, d->key, obj)) {
		json_object_put(obj);
		return NULL;
	}
	/* from here on, obj belongs to the tree */
	*spath = d->repeat ? fmt("%s[%zu]", d->key, cv->count[k])
			   : strdup(d->key);
	if (!*spath || !map_add(cv->map, strdup(*spath),
				fmt("%s:%u: %s", cv->r->name, s->line, s->desc),
				s->desc, false)) {
		free(*spath);
		*spath = NULL;
		return NULL;
	}
	return obj;
}

static bool convert_sec(struct conv *cv, const struct sec *s)
{
	size_t k = 0;

	while (k < N_SEC_DEFS && strcmp(sec_defs[k].type, s->type) != 0)
		k++;
	if (k == N_SEC_DEFS) {
		rd_error(cv->r, s->line, "%s: unknown section type", s->desc);
		return true;
	}
	const struct sec_def *d = &sec_defs[k];
	if (!d->repeat && cv->first_line[k]) {
		rd_error(cv->r, s->line, "%s: at most one %s section (the "
			 "first is at line %u)", s->desc, s->type,
			 cv->first_line[k]);
		return true;
	}
	cv->first_line[k] = s->line;

	/* the init script's section is checked, not converted */
	struct json_object *obj = NULL;
	char *spath = NULL;
	if (d->key && !(obj = attach(cv, s, k, &spath)))
		return false;
	cv->count[k]++;
	cv->last[k] = s;

	bool ok = true;
	for (const struct opt *o = s->opts; o && ok; o = o->next) {
		const struct opt_def *od = d->opts;
		while (od->name && strcmp(od->name, o->name) != 0)
			od++;
		if (!od->name)
			opt_error(cv, s, o, o->line, "unknown option");
		else if (o->n)
			ok = convert_opt(cv, s, o, od, obj, spath);
	}
	free(spath);
	return ok;
}

struct json_object *uci_convert(const char *text, size_t len, const char *name,
				struct uci_map **map, uci_error_fn *err,
				void *arg)
{
	struct reader r = {
		.s = text, .len = len, .line = 1, .name = name,
		.err = err, .arg = arg,
	};
	struct conv cv = { .r = &r };
	bool ok = true;

	*map = NULL;
	r.sec_tail = &r.secs;
	while (ok && r.pos < r.len)
		ok = command(&r);
	free_words(&r);
	wipe_free(r.w, r.wcap);
	if (!ok) {
		free_sections(r.secs);
		return NULL;
	}
	cv.map = calloc(1, sizeof(*cv.map));
	cv.root = json_object_new_object();
	if (cv.map)
		cv.map->name = strdup(name);
	ok = cv.map && cv.map->name && cv.root;
	for (const struct sec *s = r.secs; ok && s; s = s->next)
		if (!s->skip)
			ok = convert_sec(&cv, s);
	/* a group ("servers": "17 servers, at most 16 are allowed") is
	 * placed at its last section */
	for (size_t k = 0; ok && k < N_SEC_DEFS; k++)
		if (sec_defs[k].repeat && cv.last[k])
			ok = map_add(cv.map, strdup(sec_defs[k].key),
				     fmt("%s:%u: %s", name, cv.last[k]->line,
					 cv.last[k]->desc), NULL, false);
	free_sections(r.secs);
	if (!ok) {
		out_of_memory(&r);
		uci_map_free(cv.map);
		json_object_put(cv.root);
		return NULL;
	}
	*map = cv.map;
	return cv.root;
}
