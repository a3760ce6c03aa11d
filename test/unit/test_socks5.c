// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit tests of the SOCKS5 client codec (redirector/socks5.c): builders,
 * the incremental parser on every split of every server message, every
 * malformed reply, and a fixed-seed fuzz loop. Every chunk is handed to
 * the parser in a heap block of exactly its size, so the ASan build
 * catches any read past `len`. */
#include "socks5.h"
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define SENTINEL 0xa5

/* --- helpers ----------------------------------------------------------- */

static bool bytes_eq(const uint8_t *a, const void *b, size_t n)
{
	return memcmp(a, b, n) == 0;
}

static bool untouched(const uint8_t *buf, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (buf[i] != SENTINEL)
			return false;
	return true;
}

static struct sockaddr_in sin4(const char *ip, uint16_t port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
		abort();
	return a;
}

static struct sockaddr_in6 sin6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 a;

	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	a.sin6_port = htons(port);
	if (inet_pton(AF_INET6, ip, &a.sin6_addr) != 1)
		abort();
	return a;
}

/* --- builders ---------------------------------------------------------- */

/* Build with every cap from 0 to exp_len + 2: too small -> -ENOSPC and
 * nothing written; big enough -> exactly `exp` and nothing past it. */
#define CHECK_BUILD(what, call_with_cap, exp, exp_len) do { \
	uint8_t b_[600]; \
	for (size_t cap = 0; cap <= (exp_len) + 2; cap++) { \
		memset(b_, SENTINEL, sizeof(b_)); \
		uint8_t *buf_ = b_; \
		ssize_t r_ = call_with_cap; \
		if (cap < (exp_len)) { \
			CHECK_MSG(r_ == -ENOSPC, "%s cap %zu: got %zd", what, cap, r_); \
			CHECK_MSG(untouched(b_, 0, sizeof(b_)), "%s cap %zu wrote", what, cap); \
		} else { \
			CHECK_MSG(r_ == (ssize_t)(exp_len), "%s cap %zu: got %zd", what, cap, r_); \
			CHECK_MSG(bytes_eq(b_, (exp), (exp_len)), "%s cap %zu: bytes", what, cap); \
			CHECK_MSG(untouched(b_, (exp_len), sizeof(b_)), "%s cap %zu: overwrite", what, cap); \
		} \
	} \
} while (0)

static void test_greeting(void)
{
	static const uint8_t none[] = { 5, 1, 0 };
	static const uint8_t up[] = { 5, 1, 2 };
	static const uint8_t both[] = { 5, 2, 0, 2 };
	uint8_t b[8];

	CHECK_BUILD("greeting none", socks5_build_greeting(buf_, cap, true, false),
		    none, sizeof(none));
	CHECK_BUILD("greeting userpass", socks5_build_greeting(buf_, cap, false, true),
		    up, sizeof(up));
	CHECK_BUILD("greeting both", socks5_build_greeting(buf_, cap, true, true),
		    both, sizeof(both));
	CHECK(sizeof(both) <= SOCKS5_GREETING_MAX);

	/* No method offered is -EINVAL whatever the capacity. */
	memset(b, SENTINEL, sizeof(b));
	CHECK(socks5_build_greeting(b, sizeof(b), false, false) == -EINVAL);
	CHECK(socks5_build_greeting(b, 0, false, false) == -EINVAL);
	CHECK(socks5_build_greeting(NULL, 0, false, false) == -EINVAL);
	CHECK(untouched(b, 0, sizeof(b)));
	CHECK(socks5_build_greeting(NULL, 0, true, true) == -ENOSPC);
}

static void test_auth(void)
{
	static const uint8_t exp[] = { 1, 4, 'u', 's', 'e', 'r', 6, 's', 'e', 'c', 'r', 'e', 't' };
	static const uint8_t exp1[] = { 1, 1, 'a', 1, 'b' };
	char u255[256], u256[257], p255[256];
	uint8_t expmax[SOCKS5_AUTH_MAX], b[600];

	CHECK_BUILD("auth user/secret", socks5_build_auth(buf_, cap, "user", "secret"),
		    exp, sizeof(exp));
	CHECK_BUILD("auth 1/1", socks5_build_auth(buf_, cap, "a", "b"), exp1, sizeof(exp1));

	/* 255-byte user and password: the largest message, 513 bytes. */
	memset(u255, 'u', 255);
	u255[255] = 0;
	memset(p255, 'p', 255);
	p255[255] = 0;
	memset(u256, 'x', 256);
	u256[256] = 0;
	expmax[0] = 1;
	expmax[1] = 255;
	memset(expmax + 2, 'u', 255);
	expmax[257] = 255;
	memset(expmax + 258, 'p', 255);
	CHECK_BUILD("auth 255/255", socks5_build_auth(buf_, cap, u255, p255),
		    expmax, (size_t)SOCKS5_AUTH_MAX);

	memset(b, SENTINEL, sizeof(b));
	CHECK(socks5_build_auth(b, sizeof(b), "", "pw") == -EINVAL);
	CHECK(socks5_build_auth(b, sizeof(b), "user", "") == -EINVAL);
	CHECK(socks5_build_auth(b, sizeof(b), "", "") == -EINVAL);
	CHECK(socks5_build_auth(b, sizeof(b), u256, "pw") == -EINVAL);
	CHECK(socks5_build_auth(b, sizeof(b), "user", u256) == -EINVAL);
	CHECK(socks5_build_auth(b, sizeof(b), u256, u256) == -EINVAL);
	CHECK(socks5_build_auth(b, sizeof(b), NULL, "pw") == -EINVAL);
	CHECK(socks5_build_auth(b, sizeof(b), "user", NULL) == -EINVAL);
	/* Bad arguments win over a small buffer. */
	CHECK(socks5_build_auth(b, 0, "", "pw") == -EINVAL);
	CHECK(socks5_build_auth(b, 0, "user", u256) == -EINVAL);
	CHECK(untouched(b, 0, sizeof(b)));
}

static void test_connect_build(void)
{
	static const uint8_t exp4[] = { 5, 1, 0, 1, 192, 0, 2, 1, 0x04, 0x38 };
	static const uint8_t exp6[] = { 5, 1, 0, 4,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
		0x12, 0x34 };
	static const uint8_t expm[] = { 5, 1, 0, 1, 198, 51, 100, 7, 0, 80 };
	/* ::1.2.3.4 (v4-compatible, not v4-mapped) stays IPv6. */
	static const uint8_t expc[] = { 5, 1, 0, 4,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0xff, 0xfe };
	struct sockaddr_in a4 = sin4("192.0.2.1", 1080);
	struct sockaddr_in6 a6 = sin6("2001:db8::1", 0x1234);
	struct sockaddr_in6 am = sin6("::ffff:198.51.100.7", 80);
	struct sockaddr_in6 ac = sin6("::1.2.3.4", 0xfffe);
	struct sockaddr_un un;
	struct sockaddr_storage unspec;
	uint8_t b[64];

	CHECK_BUILD("connect v4", socks5_build_connect(buf_, cap, (struct sockaddr *)&a4),
		    exp4, sizeof(exp4));
	CHECK_BUILD("connect v6", socks5_build_connect(buf_, cap, (struct sockaddr *)&a6),
		    exp6, sizeof(exp6));
	CHECK_BUILD("connect v4-mapped", socks5_build_connect(buf_, cap, (struct sockaddr *)&am),
		    expm, sizeof(expm));
	CHECK_BUILD("connect v4-compat", socks5_build_connect(buf_, cap, (struct sockaddr *)&ac),
		    expc, sizeof(expc));
	CHECK(sizeof(exp6) == SOCKS5_CONNECT_MAX);

	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	memset(&unspec, 0, sizeof(unspec));
	unspec.ss_family = AF_UNSPEC;
	memset(b, SENTINEL, sizeof(b));
	CHECK(socks5_build_connect(b, sizeof(b), (struct sockaddr *)&un) == -EINVAL);
	CHECK(socks5_build_connect(b, sizeof(b), (struct sockaddr *)&unspec) == -EINVAL);
	CHECK(socks5_build_connect(b, sizeof(b), NULL) == -EINVAL);
	CHECK(socks5_build_connect(b, 0, (struct sockaddr *)&un) == -EINVAL);
	CHECK(untouched(b, 0, sizeof(b)));
}

/* --- reply names, events ----------------------------------------------- */

static const char *const rfc_names[] = {
	"succeeded",
	"general SOCKS server failure",
	"connection not allowed by ruleset",
	"network unreachable",
	"host unreachable",
	"connection refused",
	"TTL expired",
	"command not supported",
	"address type not supported",
};

static void test_names(void)
{
	for (unsigned r = 0; r <= 8; r++) {
		const char *n = socks5_reply_name((uint8_t)r);

		CHECK_MSG(n && strcmp(n, rfc_names[r]) == 0, "rep %u: %s", r,
			  n ? n : "(null)");
	}
	for (unsigned r = 9; r <= 255; r++)
		CHECK_MSG(socks5_reply_name((uint8_t)r) == NULL, "rep %u", r);

	CHECK(!socks5_event_is_error(SOCKS5_EV_NEED_MORE));
	CHECK(!socks5_event_is_error(SOCKS5_EV_METHOD));
	CHECK(!socks5_event_is_error(SOCKS5_EV_AUTH_OK));
	CHECK(!socks5_event_is_error(SOCKS5_EV_CONNECTED));
	CHECK(socks5_event_is_error(SOCKS5_EV_ERR_VERSION));
	CHECK(socks5_event_is_error(SOCKS5_EV_ERR_NO_METHOD));
	CHECK(socks5_event_is_error(SOCKS5_EV_ERR_METHOD));
	CHECK(socks5_event_is_error(SOCKS5_EV_ERR_AUTH));
	CHECK(socks5_event_is_error(SOCKS5_EV_ERR_REPLY));
	CHECK(socks5_event_is_error(SOCKS5_EV_ERR_ATYP));
	CHECK(socks5_event_is_error(SOCKS5_EV_ERR_RSV));
}

/* --- scenario runner --------------------------------------------------- */

/* A server byte stream and what the parser must make of it: the event
 * that ends at each message boundary (the last one is terminal: DONE or
 * FAILED), then possibly bytes that must stay unconsumed. */
#define MAXMSG 4
struct scen {
	char name[96];
	bool none, up;        /* offered methods */
	uint8_t bytes[400];
	size_t len;
	size_t nmsg;
	size_t ends[MAXMSG];  /* offset just past each message */
	enum socks5_event evs[MAXMSG];
	const char *text;     /* substring of the final strerror, or NULL */
	char textbuf[128];
};

static void sc_init(struct scen *s, const char *name, bool none, bool up)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->none = none;
	s->up = up;
}

static void sc_put(struct scen *s, const void *b, size_t n)
{
	if (s->len + n > sizeof(s->bytes))
		abort();
	memcpy(s->bytes + s->len, b, n);
	s->len += n;
}

static void sc_byte(struct scen *s, uint8_t b)
{
	sc_put(s, &b, 1);
}

/* The message (or the failing part of it) ends here with `ev`. */
static void sc_mark(struct scen *s, enum socks5_event ev)
{
	if (s->nmsg >= MAXMSG)
		abort();
	s->ends[s->nmsg] = s->len;
	s->evs[s->nmsg++] = ev;
}

static size_t sc_end(const struct scen *s)
{
	return s->ends[s->nmsg - 1];
}

struct run {
	enum socks5_event ev[16];
	size_t nev;
	size_t consumed;
	bool terminal;
	struct socks5_parser p;
};

/* Feed s->bytes[0..len) cut at the sorted offsets cuts[0..ncuts), each
 * chunk in its own exact-size heap block; within a chunk, call again
 * after every non-terminal event. Stops at the first terminal event. */
static void run_cuts(const struct scen *s, size_t len, const size_t *cuts,
		     size_t ncuts, struct run *r, const char *how)
{
	size_t start = 0;

	memset(r, 0, sizeof(*r));
	socks5_parser_init(&r->p, s->none, s->up);
	for (size_t c = 0; c <= ncuts && !r->terminal; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		size_t n = end - start, off = 0;
		uint8_t *chunk = n ? malloc(n) : NULL;

		if (n)
			memcpy(chunk, s->bytes + start, n);
		for (;;) {
			size_t used = (size_t)-1;
			enum socks5_event ev =
				socks5_parse(&r->p, n ? chunk + off : NULL,
					     n - off, &used);

			CHECK_MSG(used <= n - off, "%s/%s: used %zu > %zu",
				  s->name, how, used, n - off);
			if (used > n - off)
				break;
			off += used;
			if (ev == SOCKS5_EV_NEED_MORE) {
				CHECK_MSG(off == n, "%s/%s: NEED_MORE left %zu bytes",
					  s->name, how, n - off);
				CHECK_MSG(r->p.stage != SOCKS5_STAGE_DONE &&
					  r->p.stage != SOCKS5_STAGE_FAILED,
					  "%s/%s: NEED_MORE in terminal stage",
					  s->name, how);
				break;
			}
			CHECK_MSG(used >= 1, "%s/%s: event without a byte",
				  s->name, how);
			if (r->nev < sizeof(r->ev) / sizeof(r->ev[0]))
				r->ev[r->nev++] = ev;
			CHECK_MSG(socks5_event_is_error(ev) ==
				  (r->p.stage == SOCKS5_STAGE_FAILED),
				  "%s/%s: event %d stage %d", s->name, how, ev,
				  r->p.stage);
			CHECK_MSG((ev == SOCKS5_EV_CONNECTED) ==
				  (r->p.stage == SOCKS5_STAGE_DONE),
				  "%s/%s: event %d stage %d", s->name, how, ev,
				  r->p.stage);
			if (r->p.stage == SOCKS5_STAGE_DONE ||
			    r->p.stage == SOCKS5_STAGE_FAILED) {
				r->terminal = true;
				break;
			}
			if (off == n)
				break;
		}
		r->consumed += off;
		free(chunk);
		start = end;
	}
}

/* The run must show exactly the events of the messages that end within
 * `len`; when the terminal message is complete, the run stops there. */
static void expect(const struct scen *s, size_t len, const struct run *r,
		   const char *how)
{
	size_t want = 0;

	while (want < s->nmsg && s->ends[want] <= len)
		want++;
	CHECK_MSG(r->nev == want, "%s/%s len %zu: %zu events, want %zu",
		  s->name, how, len, r->nev, want);
	for (size_t i = 0; i < want && i < r->nev; i++)
		CHECK_MSG(r->ev[i] == s->evs[i], "%s/%s len %zu: event %zu is %d, want %d",
			  s->name, how, len, i, r->ev[i], s->evs[i]);
	if (want == s->nmsg) {
		CHECK_MSG(r->terminal, "%s/%s: not terminal", s->name, how);
		CHECK_MSG(r->consumed == sc_end(s), "%s/%s: consumed %zu, want %zu",
			  s->name, how, r->consumed, sc_end(s));
	} else {
		/* Truncated: all consumed, no terminal event. */
		CHECK_MSG(!r->terminal, "%s/%s len %zu: terminal on a truncated reply",
			  s->name, how, len);
		CHECK_MSG(r->consumed == len, "%s/%s len %zu: consumed %zu",
			  s->name, how, len, r->consumed);
	}
}

/* After the terminal event: more input (the rest of the stream, a fresh
 * byte, nothing) consumes nothing and repeats the final event. */
static void check_sticky(const struct scen *s, struct run *r)
{
	enum socks5_event fin = s->evs[s->nmsg - 1];
	enum socks5_stage stage = r->p.stage;
	static const uint8_t junk[] = { 5, 0, 0, 1, 0, 0, 0, 0, 0, 0 };
	size_t used;

	for (int i = 0; i < 3; i++) {
		used = 99;
		CHECK_MSG(socks5_parse(&r->p, s->bytes + sc_end(s), s->len - sc_end(s),
				       &used) == fin && used == 0,
			  "%s: after end (rest)", s->name);
		used = 99;
		CHECK_MSG(socks5_parse(&r->p, junk, sizeof(junk), &used) == fin &&
			  used == 0, "%s: after end (junk)", s->name);
		used = 99;
		CHECK_MSG(socks5_parse(&r->p, NULL, 0, &used) == fin && used == 0,
			  "%s: after end (empty)", s->name);
	}
	CHECK_MSG(r->p.stage == stage, "%s: stage changed", s->name);
}

static void check_text(const struct scen *s, const struct run *r)
{
	char buf[256];
	enum socks5_event fin = s->evs[s->nmsg - 1];

	if (!s->text)
		return;
	socks5_strerror(&r->p, fin, buf, sizeof(buf));
	CHECK_MSG(strstr(buf, s->text) != NULL, "%s: strerror \"%s\" lacks \"%s\"",
		  s->name, buf, s->text);
	CHECK_MSG(strchr(buf, '\n') == NULL, "%s: multi-line message", s->name);
}

/* Run a scenario every way: one buffer, one byte at a time, every split
 * into two feeds, and every truncation (one buffer and bytewise). The
 * final parser of the one-buffer run is left in *out. */
static void run_scenario(const struct scen *s, struct socks5_parser *out)
{
	size_t cuts[sizeof(s->bytes)];
	struct run r, one;
	char how[32];

	CHECK_MSG(s->nmsg > 0 && sc_end(s) <= s->len, "%s: bad scenario", s->name);

	run_cuts(s, s->len, NULL, 0, &one, "whole");
	expect(s, s->len, &one, "whole");
	check_text(s, &one);
	check_sticky(s, &one);

	for (size_t i = 0; i + 1 < s->len; i++)
		cuts[i] = i + 1;
	run_cuts(s, s->len, cuts, s->len ? s->len - 1 : 0, &r, "bytewise");
	expect(s, s->len, &r, "bytewise");
	CHECK_MSG(memcmp(&r.p, &one.p, sizeof(r.p)) == 0 ||
		  (r.p.have == one.p.have && r.p.stage == one.p.stage &&
		   memcmp(r.p.buf, one.p.buf, r.p.have) == 0),
		  "%s: bytewise state differs", s->name);
	check_text(s, &r);

	for (size_t k = 0; k <= s->len; k++) {
		snprintf(how, sizeof(how), "split@%zu", k);
		run_cuts(s, s->len, &k, 1, &r, how);
		expect(s, s->len, &r, how);
	}

	for (size_t k = 0; k < sc_end(s); k++) {
		snprintf(how, sizeof(how), "trunc%zu", k);
		run_cuts(s, k, NULL, 0, &r, how);
		expect(s, k, &r, how);
		snprintf(how, sizeof(how), "trunc%zu/bytes", k);
		run_cuts(s, k, cuts, k ? k - 1 : 0, &r, how);
		expect(s, k, &r, how);
	}
	if (out)
		*out = one.p;
}

/* --- successful exchanges ---------------------------------------------- */

static const uint8_t payload[] = "HTTP/1.1 200 OK\r\n";

/* Method reply (+ auth reply), then a successful CONNECT reply whose BND
 * address has type `atyp` (`dlen`: domain length), then payload. */
static void build_ok(struct scen *s, bool userpass, uint8_t atyp, size_t dlen,
		     size_t *connect_at)
{
	sc_byte(s, 5);
	sc_byte(s, userpass ? 2 : 0);
	sc_mark(s, SOCKS5_EV_METHOD);
	if (userpass) {
		sc_byte(s, 1);
		sc_byte(s, 0);
		sc_mark(s, SOCKS5_EV_AUTH_OK);
	}
	*connect_at = s->len;
	sc_byte(s, 5);
	sc_byte(s, 0);
	sc_byte(s, 0);
	sc_byte(s, atyp);
	if (atyp == 1) {
		static const uint8_t a[] = { 203, 0, 113, 9 };

		sc_put(s, a, 4);
	} else if (atyp == 4) {
		for (uint8_t i = 0; i < 16; i++)
			sc_byte(s, (uint8_t)(0xf0 + i));
	} else {
		sc_byte(s, (uint8_t)dlen);
		for (size_t i = 0; i < dlen; i++)
			sc_byte(s, (uint8_t)('a' + i % 26));
	}
	sc_byte(s, 0xc3);
	sc_byte(s, 0x50);
	sc_mark(s, SOCKS5_EV_CONNECTED);
	sc_put(s, payload, sizeof(payload) - 1);
}

static void test_success(void)
{
	static const struct { uint8_t atyp; size_t dlen; } bnd[] = {
		{ 1, 0 }, { 4, 0 }, { 3, 11 }, { 3, 0 }, { 3, 1 }, { 3, 255 },
	};

	for (int up = 0; up <= 1; up++) {
		for (int both = 0; both <= 1; both++) {
			for (size_t i = 0; i < sizeof(bnd) / sizeof(bnd[0]); i++) {
				struct scen s;
				struct socks5_parser p;
				size_t at, rlen;
				char name[96];

				snprintf(name, sizeof(name), "ok %s%s atyp %u dlen %zu",
					 up ? "userpass" : "noauth",
					 both ? " (both offered)" : "",
					 bnd[i].atyp, bnd[i].dlen);
				sc_init(&s, name, !up || both, up || both);
				build_ok(&s, up, bnd[i].atyp, bnd[i].dlen, &at);
				s.text = "connected";
				run_scenario(&s, &p);

				rlen = sc_end(&s) - at;
				CHECK_MSG(p.stage == SOCKS5_STAGE_DONE, "%s: stage", name);
				CHECK_MSG(p.method == (up ? 2 : 0), "%s: method", name);
				CHECK_MSG(!up || p.auth_status == 0, "%s: auth", name);
				CHECK_MSG(p.reply == 0 && p.atyp == bnd[i].atyp,
					  "%s: reply/atyp", name);
				/* BND.ADDR/BND.PORT stay in buf, raw. */
				CHECK_MSG(p.have == rlen && p.need == rlen &&
					  memcmp(p.buf, s.bytes + at, rlen) == 0,
					  "%s: kept reply (have %u)", name, p.have);
				CHECK_MSG(s.len - sc_end(&s) == sizeof(payload) - 1 &&
					  memcmp(s.bytes + sc_end(&s), payload,
						 sizeof(payload) - 1) == 0,
					  "%s: payload left", name);
			}
		}
	}
}

/* The caller's loop as the daemon would write it: one read holding the
 * whole handshake reply and payload, parse until CONNECTED. */
static void test_caller_loop(void)
{
	static const uint8_t in[] = { 5, 2, 1, 0, 5, 0, 0, 1, 10, 0, 0, 1, 0, 80,
				      'd', 'a', 't', 'a' };
	struct socks5_parser p;
	size_t off = 0, used;
	enum socks5_event ev;
	int calls = 0;

	socks5_parser_init(&p, true, true);
	CHECK(p.stage == SOCKS5_STAGE_METHOD);
	used = 7;
	CHECK(socks5_parse(&p, NULL, 0, &used) == SOCKS5_EV_NEED_MORE && used == 0);
	do {
		ev = socks5_parse(&p, in + off, sizeof(in) - off, &used);
		off += used;
		calls++;
	} while (ev != SOCKS5_EV_NEED_MORE && p.stage != SOCKS5_STAGE_DONE &&
		 p.stage != SOCKS5_STAGE_FAILED);
	CHECK(ev == SOCKS5_EV_CONNECTED);
	CHECK(calls == 3);
	CHECK(off == 14);
	CHECK(memcmp(in + off, "data", 4) == 0);
	/* A NULL `used` is tolerated. */
	socks5_parser_init(&p, true, false);
	CHECK(socks5_parse(&p, in, 2, NULL) == SOCKS5_EV_ERR_METHOD);
}

/* --- malformed replies ------------------------------------------------- */

/* Run a failing scenario whose final strerror must contain `text`. */
static void run_fail(struct scen *s, const char *text)
{
	s->text = text;
	run_scenario(s, NULL);
}

static void test_method_errors(void)
{
	struct scen s;
	static const struct { bool none, up; uint8_t m; const char *text; } bad[] = {
		{ true, false, 2, "server chose method 0x02 that was not offered" },
		{ false, true, 0, "server chose method 0x00 that was not offered" },
		{ true, true, 3, "server chose method 0x03 that was not offered" },
		{ true, true, 1, "server chose method 0x01 that was not offered" },
		{ true, true, 0x80, "server chose method 0x80 that was not offered" },
		{ true, false, 0xfe, "server chose method 0xfe that was not offered" },
	};

	/* Bad version: reported on the first byte, the second never read. */
	static const uint8_t vers[] = { 4, 0, 1, 6, 0xff };
	for (size_t i = 0; i < sizeof(vers); i++) {
		char text[64];

		sc_init(&s, "method bad version", true, true);
		snprintf(s.name, sizeof(s.name), "method version 0x%02x", vers[i]);
		sc_byte(&s, vers[i]);
		sc_mark(&s, SOCKS5_EV_ERR_VERSION);
		sc_byte(&s, 0);
		snprintf(text, sizeof(text), "bad SOCKS version 0x%02x in method reply",
			 vers[i]);
		s.text = text;
		run_scenario(&s, NULL);
	}
	/* A SOCKS4 server's reply to a SOCKS5 greeting. */
	sc_init(&s, "socks4 reply", true, false);
	sc_put(&s, "\x00\x5a\x00\x00\x00\x00\x00\x00", 8);
	s.ends[0] = 1;
	s.evs[0] = SOCKS5_EV_ERR_VERSION;
	s.nmsg = 1;
	run_fail(&s, "bad SOCKS version 0x00 in method reply");

	for (int none = 0; none <= 1; none++) {
		for (int up = 0; up <= 1; up++) {
			if (!none && !up)
				continue;
			sc_init(&s, "method 0xff", none, up);
			sc_put(&s, "\x05\xff", 2);
			sc_mark(&s, SOCKS5_EV_ERR_NO_METHOD);
			sc_put(&s, "\x05\x00\x00\x01", 4);
			run_fail(&s, "no acceptable authentication method (server answered 0xff)");
		}
	}

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sc_init(&s, bad[i].text, bad[i].none, bad[i].up);
		sc_byte(&s, 5);
		sc_byte(&s, bad[i].m);
		sc_mark(&s, SOCKS5_EV_ERR_METHOD);
		sc_put(&s, "\x01\x00", 2);
		run_fail(&s, bad[i].text);
	}
}

static void test_auth_errors(void)
{
	struct scen s;
	struct socks5_parser p;
	static const uint8_t vers[] = { 5, 0, 2, 0xff };
	static const uint8_t stat[] = { 1, 2, 0x80, 0xff };

	for (size_t i = 0; i < sizeof(vers); i++) {
		char text[64];

		sc_init(&s, "", true, true);
		snprintf(s.name, sizeof(s.name), "auth version 0x%02x", vers[i]);
		sc_put(&s, "\x05\x02", 2);
		sc_mark(&s, SOCKS5_EV_METHOD);
		sc_byte(&s, vers[i]);
		sc_mark(&s, SOCKS5_EV_ERR_VERSION);
		sc_byte(&s, 0);
		snprintf(text, sizeof(text), "bad SOCKS version 0x%02x in auth reply",
			 vers[i]);
		s.text = text;
		run_scenario(&s, NULL);
	}
	for (size_t i = 0; i < sizeof(stat); i++) {
		char text[64];

		sc_init(&s, "", false, true);
		snprintf(s.name, sizeof(s.name), "auth status 0x%02x", stat[i]);
		sc_put(&s, "\x05\x02", 2);
		sc_mark(&s, SOCKS5_EV_METHOD);
		sc_byte(&s, 1);
		sc_byte(&s, stat[i]);
		sc_mark(&s, SOCKS5_EV_ERR_AUTH);
		sc_put(&s, "\x05\x00\x00\x01", 4);
		snprintf(text, sizeof(text), "authentication failed (status 0x%02x)",
			 stat[i]);
		s.text = text;
		run_scenario(&s, &p);
		CHECK_MSG(p.auth_status == stat[i], "%s: auth_status", s.name);
	}
}

/* Prefix the CONNECT reply with the method (and auth) replies. */
static void connect_prefix(struct scen *s, bool userpass)
{
	sc_byte(s, 5);
	sc_byte(s, userpass ? 2 : 0);
	sc_mark(s, SOCKS5_EV_METHOD);
	if (userpass) {
		sc_put(s, "\x01\x00", 2);
		sc_mark(s, SOCKS5_EV_AUTH_OK);
	}
}

static void test_connect_errors(void)
{
	struct scen s;
	struct socks5_parser p;
	char text[96];

	for (int up = 0; up <= 1; up++) {
		/* Bad version in the CONNECT reply (even with REP != 0). */
		static const uint8_t vers[] = { 4, 1, 0, 0xff };

		for (size_t i = 0; i < sizeof(vers); i++) {
			sc_init(&s, "", true, true);
			snprintf(s.name, sizeof(s.name), "connect version 0x%02x up %d",
				 vers[i], up);
			connect_prefix(&s, up);
			sc_byte(&s, vers[i]);
			sc_mark(&s, SOCKS5_EV_ERR_VERSION);
			sc_put(&s, "\x05\x00\x01\x00\x00\x00\x00\x00\x00", 9);
			snprintf(text, sizeof(text),
				 "bad SOCKS version 0x%02x in CONNECT reply", vers[i]);
			s.text = text;
			run_scenario(&s, NULL);
		}

		/* Every REP code, and unknown ones: ERR_REPLY on the 4th
		 * header byte, whatever follows (full reply, nothing, odd
		 * RSV/ATYP). */
		static const uint8_t reps[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x2a, 0x80, 0xff };
		for (size_t i = 0; i < sizeof(reps); i++) {
			static const struct { uint8_t rsv, atyp; bool tail; } v[] = {
				{ 0, 1, true }, { 0, 1, false }, { 0, 3, false },
				{ 0, 4, true }, { 7, 1, true }, { 0, 9, true },
				{ 0xff, 0, false },
			};
			const char *name = socks5_reply_name(reps[i]);

			if (reps[i] <= 8)
				CHECK_MSG(name && strcmp(name, rfc_names[reps[i]]) == 0,
					  "rep %u name", reps[i]);
			else
				CHECK_MSG(name == NULL, "rep 0x%02x name", reps[i]);
			if (name)
				snprintf(text, sizeof(text), "CONNECT refused: %s (0x%02x)",
					 name, reps[i]);
			else
				snprintf(text, sizeof(text),
					 "CONNECT refused: unknown reply 0x%02x", reps[i]);

			for (size_t j = 0; j < sizeof(v) / sizeof(v[0]); j++) {
				sc_init(&s, "", true, true);
				snprintf(s.name, sizeof(s.name), "rep 0x%02x rsv %u atyp %u%s up %d",
					 reps[i], v[j].rsv, v[j].atyp,
					 v[j].tail ? "" : " short", up);
				connect_prefix(&s, up);
				sc_byte(&s, 5);
				sc_byte(&s, reps[i]);
				sc_byte(&s, v[j].rsv);
				sc_byte(&s, v[j].atyp);
				sc_mark(&s, SOCKS5_EV_ERR_REPLY);
				if (v[j].tail)
					sc_put(&s, "\x00\x00\x00\x00\x00\x00", 6);
				s.text = text;
				run_scenario(&s, &p);
				CHECK_MSG(p.reply == reps[i], "%s: p->reply", s.name);
			}
			/* The exact strerror text. */
			char exact[128];
			socks5_strerror(&p, SOCKS5_EV_ERR_REPLY, exact, sizeof(exact));
			CHECK_MSG(strcmp(exact, text) == 0, "\"%s\" vs \"%s\"", exact, text);
			/* An unknown code prints its raw value. */
			if (!name) {
				char raw[8];

				snprintf(raw, sizeof(raw), "0x%02x", reps[i]);
				CHECK_MSG(strstr(exact, raw) != NULL, "%s lacks %s", exact, raw);
			}
		}

		/* Unknown address types. */
		static const uint8_t atyps[] = { 0, 2, 5, 6, 0x7f, 0xff };
		for (size_t i = 0; i < sizeof(atyps); i++) {
			sc_init(&s, "", true, true);
			snprintf(s.name, sizeof(s.name), "atyp 0x%02x up %d", atyps[i], up);
			connect_prefix(&s, up);
			sc_byte(&s, 5);
			sc_byte(&s, 0);
			sc_byte(&s, 0);
			sc_byte(&s, atyps[i]);
			sc_mark(&s, SOCKS5_EV_ERR_ATYP);
			sc_put(&s, "\x01\x02\x03\x04\x00\x50", 6);
			snprintf(text, sizeof(text),
				 "unknown address type 0x%02x in CONNECT reply", atyps[i]);
			s.text = text;
			run_scenario(&s, &p);
			CHECK_MSG(p.atyp == atyps[i], "%s: p->atyp", s.name);
		}

		/* Non-zero RSV with REP 0: reported on the RSV byte, before a
		 * bad ATYP would be. */
		static const uint8_t rsvs[] = { 1, 0x80, 0xff };
		for (size_t i = 0; i < sizeof(rsvs); i++) {
			for (uint8_t atyp = 1; atyp <= 5; atyp += 2) {
				sc_init(&s, "", true, true);
				snprintf(s.name, sizeof(s.name), "rsv 0x%02x atyp %u up %d",
					 rsvs[i], atyp, up);
				connect_prefix(&s, up);
				sc_byte(&s, 5);
				sc_byte(&s, 0);
				sc_byte(&s, rsvs[i]);
				sc_mark(&s, SOCKS5_EV_ERR_RSV);
				sc_byte(&s, atyp);
				sc_put(&s, "\x01\x02\x03\x04\x00\x50", 6);
				s.text = "non-zero reserved byte in CONNECT reply";
				run_scenario(&s, NULL);
			}
		}
	}
}

/* --- strerror details -------------------------------------------------- */

static void test_strerror(void)
{
	struct socks5_parser p;
	char buf[128];
	size_t used;

	socks5_parser_init(&p, true, false);
	CHECK(socks5_parse(&p, (const uint8_t *)"\x05\x00\x05\x05\x00\x01", 6, &used) ==
	      SOCKS5_EV_METHOD && used == 2);
	CHECK(socks5_parse(&p, (const uint8_t *)"\x05\x05\x00\x01", 4, &used) ==
	      SOCKS5_EV_ERR_REPLY && used == 4);
	CHECK(strcmp(socks5_strerror(&p, SOCKS5_EV_ERR_REPLY, buf, sizeof(buf)),
		     "CONNECT refused: connection refused (0x05)") == 0);

	/* Truncation to the caller's capacity, always terminated. */
	memset(buf, SENTINEL, sizeof(buf));
	CHECK(socks5_strerror(&p, SOCKS5_EV_ERR_REPLY, buf, 0) == buf);
	CHECK(untouched((uint8_t *)buf, 0, sizeof(buf)));
	CHECK(socks5_strerror(&p, SOCKS5_EV_ERR_REPLY, buf, 1) == buf && buf[0] == 0);
	CHECK(untouched((uint8_t *)buf, 1, sizeof(buf)));
	socks5_strerror(&p, SOCKS5_EV_ERR_REPLY, buf, 9);
	CHECK(strcmp(buf, "CONNECT ") == 0);
	CHECK(untouched((uint8_t *)buf, 9, sizeof(buf)));

	/* Every event has a one-line, non-empty description. */
	for (int ev = SOCKS5_EV_NEED_MORE; ev <= SOCKS5_EV_ERR_RSV; ev++) {
		socks5_strerror(&p, (enum socks5_event)ev, buf, sizeof(buf));
		CHECK_MSG(buf[0] && !strchr(buf, '\n'), "event %d: \"%s\"", ev, buf);
	}
	/* The parser never sees credentials, so none can be printed; the
	 * auth failure text is fixed apart from the status byte. */
	socks5_parser_init(&p, false, true);
	CHECK(socks5_parse(&p, (const uint8_t *)"\x05\x02", 2, &used) == SOCKS5_EV_METHOD);
	CHECK(socks5_parse(&p, (const uint8_t *)"\x01\x01", 2, &used) == SOCKS5_EV_ERR_AUTH);
	CHECK(strcmp(socks5_strerror(&p, SOCKS5_EV_ERR_AUTH, buf, sizeof(buf)),
		     "authentication failed (status 0x01)") == 0);
}

/* --- fuzz -------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t xorshift64(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static unsigned rnd(unsigned n)
{
	return (unsigned)(xorshift64() % n);
}

/* Feed `in` in random chunks (exact-size heap copies); return the event
 * sequence's terminal event and the bytes consumed; count violations. */
static enum socks5_event fuzz_feed(struct socks5_parser *p, const uint8_t *in,
				   size_t len, bool bytewise, bool random_cuts,
				   size_t *consumed, enum socks5_event *evs,
				   size_t *nev, unsigned *bad)
{
	size_t off = 0;
	enum socks5_event ev = SOCKS5_EV_NEED_MORE;

	*nev = 0;
	while (off < len) {
		size_t n = len - off, used = (size_t)-1;
		uint8_t *chunk;

		if (bytewise)
			n = 1;
		else if (random_cuts)
			n = 1 + rnd((unsigned)n);
		chunk = malloc(n);
		memcpy(chunk, in + off, n);
		ev = socks5_parse(p, chunk, n, &used);
		free(chunk);
		if (used > n) {
			(*bad)++;
			break;
		}
		if (ev == SOCKS5_EV_NEED_MORE && used != n)
			(*bad)++;
		if (ev != SOCKS5_EV_NEED_MORE && used == 0)
			(*bad)++;
		if (p->have > sizeof(p->buf) || p->have > p->need)
			(*bad)++;
		off += used;
		if (ev != SOCKS5_EV_NEED_MORE && *nev < 8)
			evs[(*nev)++] = ev;
		if (p->stage == SOCKS5_STAGE_DONE || p->stage == SOCKS5_STAGE_FAILED)
			break;
	}
	*consumed = off;
	return ev;
}

static void test_fuzz(void)
{
	static const uint8_t interesting[] = { 0, 1, 2, 3, 4, 5, 0xff };
	unsigned bad = 0, differ = 0, sticky = 0, text = 0, stats[16] = { 0 };

	for (unsigned iter = 0; iter < 100000; iter++) {
		uint8_t in[300];
		size_t len = rnd(48), c1, c2, c3, n1, n2, n3;
		enum socks5_event e1[8], e2[8], e3[8], f1, f2, f3;
		struct socks5_parser p1, p2, p3;
		bool none = rnd(2), up = rnd(2);
		char msg[64];

		if (!none && !up)
			none = true;
		if (rnd(8) == 0)
			len = rnd(sizeof(in)); /* sometimes long domain replies */
		/* Start from a plausible handshake often, so the deeper
		 * states get visited, then bytes biased to the values that
		 * matter. */
		for (size_t i = 0; i < len; i++)
			in[i] = rnd(2) ? interesting[rnd(sizeof(interesting))]
				       : (uint8_t)xorshift64();
		if (len >= 2 && rnd(2)) {
			in[0] = 5;
			in[1] = up && (!none || rnd(2)) ? 2 : 0;
			if (in[1] == 2 && len >= 4 && rnd(4)) {
				in[2] = 1;
				in[3] = 0;
			}
		}

		socks5_parser_init(&p1, none, up);
		socks5_parser_init(&p2, none, up);
		socks5_parser_init(&p3, none, up);
		f1 = fuzz_feed(&p1, in, len, false, false, &c1, e1, &n1, &bad);
		f2 = fuzz_feed(&p2, in, len, true, false, &c2, e2, &n2, &bad);
		f3 = fuzz_feed(&p3, in, len, false, true, &c3, e3, &n3, &bad);
		if (c1 > len || c2 > len || c3 > len)
			bad++;
		/* However the input is cut, the outcome is the same. */
		if (f1 != f2 || f1 != f3 || c1 != c2 || c1 != c3 || n1 != n2 ||
		    n1 != n3 || memcmp(e1, e2, n1 * sizeof(e1[0])) ||
		    memcmp(e1, e3, n1 * sizeof(e1[0])) || p1.stage != p2.stage ||
		    p1.stage != p3.stage || p1.have != p2.have ||
		    memcmp(p1.buf, p2.buf, p1.have))
			differ++;
		stats[f1 & 15]++;
		if (p1.stage == SOCKS5_STAGE_DONE || p1.stage == SOCKS5_STAGE_FAILED) {
			size_t used = 1;

			if (socks5_parse(&p1, in, len, &used) != f1 || used != 0)
				sticky++;
			if (socks5_event_is_error(f1) != (p1.stage == SOCKS5_STAGE_FAILED))
				sticky++;
		}
		memset(msg, SENTINEL, sizeof(msg));
		socks5_strerror(&p1, f1, msg, 1 + rnd(sizeof(msg)));
		if (!memchr(msg, 0, sizeof(msg)))
			text++;
	}
	CHECK_MSG(bad == 0, "%u invariant violations", bad);
	CHECK_MSG(differ == 0, "%u inputs parsed differently when split", differ);
	CHECK_MSG(sticky == 0, "%u terminal parsers not sticky", sticky);
	CHECK_MSG(text == 0, "%u unterminated messages", text);
	/* The generator reaches every outcome. */
	for (int ev = SOCKS5_EV_NEED_MORE; ev <= SOCKS5_EV_ERR_RSV; ev++) {
		if (ev == SOCKS5_EV_METHOD || ev == SOCKS5_EV_AUTH_OK)
			continue; /* never final */
		CHECK_MSG(stats[ev] > 0, "fuzz never ended with event %d", ev);
	}
}

/* A parser that starts at the CONNECT reply (warm pooled connection). */
static void test_connect_only(void)
{
	static const uint8_t ok[] = { 5, 0, 0, 1, 10, 0, 0, 1, 0x1f, 0x90, 'x' };
	static const uint8_t refused[] = { 5, 5, 0, 1, 0, 0, 0, 0, 0, 0 };
	struct socks5_parser p;
	size_t used;
	char msg[160];

	socks5_parser_init_connect(&p);
	CHECK(p.stage == SOCKS5_STAGE_CONNECT);
	CHECK(socks5_parse(&p, ok, sizeof(ok), &used) == SOCKS5_EV_CONNECTED);
	CHECK(used == sizeof(ok) - 1);
	CHECK(p.stage == SOCKS5_STAGE_DONE);

	/* byte by byte */
	socks5_parser_init_connect(&p);
	enum socks5_event ev = SOCKS5_EV_NEED_MORE;
	for (size_t i = 0; i < sizeof(ok) - 1; i++) {
		ev = socks5_parse(&p, ok + i, 1, &used);
		CHECK(used == 1);
		CHECK(ev == (i + 2 == sizeof(ok) ? SOCKS5_EV_CONNECTED
						  : SOCKS5_EV_NEED_MORE));
	}

	socks5_parser_init_connect(&p);
	ev = socks5_parse(&p, refused, sizeof(refused), &used);
	CHECK(ev == SOCKS5_EV_ERR_REPLY);
	CHECK(strstr(socks5_strerror(&p, ev, msg, sizeof(msg)),
		     "connection refused (0x05)") != NULL);
	/* a terminal parser repeats its event */
	CHECK(socks5_parse(&p, ok, sizeof(ok), &used) == SOCKS5_EV_ERR_REPLY);
	CHECK(used == 0);

	/* a bad version is reported as such, in the CONNECT reply */
	static const uint8_t bad[] = { 4, 0 };
	socks5_parser_init_connect(&p);
	ev = socks5_parse(&p, bad, sizeof(bad), &used);
	CHECK(ev == SOCKS5_EV_ERR_VERSION);
	CHECK(strstr(socks5_strerror(&p, ev, msg, sizeof(msg)),
		     "CONNECT reply") != NULL);
}

int main(void)
{
	test_greeting();
	test_auth();
	test_connect_build();
	test_names();
	test_success();
	test_caller_loop();
	test_method_errors();
	test_auth_errors();
	test_connect_errors();
	test_strerror();
	test_connect_only();
	test_fuzz();
	return check_done();
}
