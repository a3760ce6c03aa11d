// SPDX-License-Identifier: GPL-2.0-or-later
/* libFuzzer target: the SOCKS5 reply parser (redirector/socks5.c).
 *
 * Input: one byte of settings, then the bytes the server sends.
 *   bits 0-1: 0 = socks5_parser_init(none only), 1 = (user/password only),
 *             2 = (both), 3 = socks5_parser_init_connect (a warm
 *             connection: only the CONNECT reply is expected);
 *   bits 2-7: the seed of the split of the byte stream into reads.
 *
 * The stream is parsed twice: as one read, and in reads of random sizes
 * (1 byte to a few hundred). Both must give the same events, stop at the
 * same byte and leave the same parser; and both must agree with a plain
 * reading of RFC 1928 / RFC 1929 written here (ref_parse), which knows
 * where each server message ends and which error each bad byte gives.
 * Also checked: *used never exceeds the input, NEED_MORE consumes it all,
 * a terminal parser keeps returning its last event and consumes nothing,
 * socks5_strerror() gives a terminated line for every event. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "socks5.h"

#include "fuzz.h"

enum mode { MODE_NONE, MODE_USERPASS, MODE_BOTH, MODE_CONNECT_ONLY };

#define MAX_EVENTS 8 /* method, auth, connect: at most 3 */

struct result {
	enum socks5_event ev[MAX_EVENTS];
	size_t n_ev;
	size_t stop;     /* bytes consumed in all (the rest is payload) */
	struct socks5_parser p;
};

static void init(struct socks5_parser *p, enum mode m)
{
	switch (m) {
	case MODE_NONE:
		socks5_parser_init(p, true, false);
		break;
	case MODE_USERPASS:
		socks5_parser_init(p, false, true);
		break;
	case MODE_BOTH:
		socks5_parser_init(p, true, true);
		break;
	case MODE_CONNECT_ONLY:
		socks5_parser_init_connect(p);
		break;
	}
}

static bool terminal(const struct socks5_parser *p)
{
	return p->stage == SOCKS5_STAGE_DONE || p->stage == SOCKS5_STAGE_FAILED;
}

static void check_strerror(const struct socks5_parser *p, enum socks5_event ev)
{
	char buf[128];

	memset(buf, 'x', sizeof(buf));
	FUZZ_CHECK(socks5_strerror(p, ev, buf, sizeof(buf)) == buf);
	FUZZ_CHECK(memchr(buf, '\0', sizeof(buf)) != NULL);
	FUZZ_CHECK(buf[0] != '\0');
	/* a tiny buffer is cut, not overrun */
	char tiny[4];
	socks5_strerror(p, ev, tiny, sizeof(tiny));
	FUZZ_CHECK(memchr(tiny, '\0', sizeof(tiny)) != NULL);
}

/* Feed one read of len bytes the way flow.c does: parse while an event
 * other than NEED_MORE comes and the parser is not terminal. Returns
 * false once the parser is terminal. */
static bool feed(struct result *r, const uint8_t *data, size_t len,
		 size_t offset)
{
	size_t pos = 0;

	while (pos < len) {
		size_t used = (size_t)-1;
		enum socks5_event ev = socks5_parse(&r->p, data + pos,
						    len - pos, &used);
		FUZZ_CHECK(used <= len - pos);
		FUZZ_CHECK(r->p.have <= r->p.need);
		FUZZ_CHECK(r->p.need <= sizeof(r->p.buf));
		pos += used;
		if (ev == SOCKS5_EV_NEED_MORE) {
			FUZZ_CHECK(pos == len);
			FUZZ_CHECK(!terminal(&r->p));
			break;
		}
		FUZZ_CHECK(used > 0); /* progress on a live parser */
		FUZZ_CHECK(r->n_ev < MAX_EVENTS);
		r->ev[r->n_ev++] = ev;
		FUZZ_CHECK(socks5_event_is_error(ev) ==
			   (r->p.stage == SOCKS5_STAGE_FAILED));
		FUZZ_CHECK((ev == SOCKS5_EV_CONNECTED) ==
			   (r->p.stage == SOCKS5_STAGE_DONE));
		check_strerror(&r->p, ev);
		if (terminal(&r->p)) {
			r->stop = offset + pos;
			return false;
		}
	}
	r->stop = offset + len;
	return true;
}

/* After the end: a terminal parser repeats its event, consumes nothing. */
static void check_final(struct result *r, const uint8_t *data, size_t len)
{
	if (!terminal(&r->p))
		return;
	static const uint8_t more[3] = { 5, 0, 0 };
	size_t used = 99;
	enum socks5_event last = r->ev[r->n_ev - 1];
	struct socks5_parser before = r->p;
	FUZZ_CHECK(socks5_parse(&r->p, more, sizeof(more), &used) == last);
	FUZZ_CHECK(used == 0);
	FUZZ_CHECK(socks5_parse(&r->p, data, len, NULL) == last);
	FUZZ_CHECK(memcmp(&before, &r->p, sizeof(before)) == 0);
}

static uint32_t rng_next(uint32_t *s)
{
	/* xorshift32 */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void run_whole(struct result *r, enum mode m, const uint8_t *d,
		      size_t len)
{
	memset(r, 0, sizeof(*r));
	init(&r->p, m);
	feed(r, d, len, 0);
	check_final(r, d, len);
}

static void run_split(struct result *r, enum mode m, const uint8_t *d,
		      size_t len, uint32_t seed)
{
	uint32_t s = seed * 2654435761u + 0x9e3779b9u + (uint32_t)len;
	size_t off = 0;

	if (!s)
		s = 1;
	memset(r, 0, sizeof(*r));
	init(&r->p, m);
	r->stop = 0;
	while (off < len) {
		uint32_t x = rng_next(&s);
		size_t n = (x & 3) ? 1 + (x >> 8) % 8 : 1 + (x >> 8) % 300;
		if (n > len - off)
			n = len - off;
		/* each read in a buffer of its own: ASan sees any overread */
		uint8_t *chunk = malloc(n);
		FUZZ_CHECK(chunk);
		memcpy(chunk, d + off, n);
		bool live = feed(r, chunk, n, off);
		free(chunk);
		if (!live)
			break;
		off += n;
	}
	check_final(r, d, len);
}

/* ---- the reference: RFC 1928 / 1929 read plainly ----------------------- */

/* Events and stop offset a correct parser gives for the whole stream. */
static void ref_parse(struct result *r, enum mode m, const uint8_t *d,
		      size_t len)
{
	size_t pos = 0;
	bool none = m == MODE_NONE || m == MODE_BOTH;
	bool userpass = m == MODE_USERPASS || m == MODE_BOTH;
	bool auth = false;

	memset(r, 0, sizeof(*r));
#define NEED(n) do { if (len < pos + (n)) { r->stop = len; return; } } while (0)
#define EMIT(e, at) do { r->ev[r->n_ev++] = (e); r->stop = (at); } while (0)
	if (m != MODE_CONNECT_ONLY) {
		NEED(1);
		if (d[pos] != 5) {
			EMIT(SOCKS5_EV_ERR_VERSION, pos + 1);
			return;
		}
		NEED(2);
		uint8_t meth = d[pos + 1];
		if (meth == 0xff) {
			EMIT(SOCKS5_EV_ERR_NO_METHOD, pos + 2);
			return;
		}
		if (!(meth == 0x00 && none) && !(meth == 0x02 && userpass)) {
			EMIT(SOCKS5_EV_ERR_METHOD, pos + 2);
			return;
		}
		EMIT(SOCKS5_EV_METHOD, pos + 2);
		auth = meth == 0x02;
		pos += 2;
	}
	if (auth) {
		NEED(1);
		if (d[pos] != 1) {
			EMIT(SOCKS5_EV_ERR_VERSION, pos + 1);
			return;
		}
		NEED(2);
		if (d[pos + 1] != 0) {
			EMIT(SOCKS5_EV_ERR_AUTH, pos + 2);
			return;
		}
		EMIT(SOCKS5_EV_AUTH_OK, pos + 2);
		pos += 2;
	}
	/* VER REP RSV ATYP BND.ADDR BND.PORT */
	NEED(1);
	if (d[pos] != 5) {
		EMIT(SOCKS5_EV_ERR_VERSION, pos + 1);
		return;
	}
	NEED(3);
	if (d[pos + 1] == 0 && d[pos + 2] != 0) {
		EMIT(SOCKS5_EV_ERR_RSV, pos + 3);
		return;
	}
	NEED(4);
	if (d[pos + 1] != 0) {
		EMIT(SOCKS5_EV_ERR_REPLY, pos + 4);
		return;
	}
	size_t total;
	switch (d[pos + 3]) {
	case 1:
		total = 4 + 4 + 2;
		break;
	case 4:
		total = 4 + 16 + 2;
		break;
	case 3:
		NEED(5);
		total = 4 + 1 + (size_t)d[pos + 4] + 2;
		break;
	default:
		EMIT(SOCKS5_EV_ERR_ATYP, pos + 4);
		return;
	}
	NEED(total);
	EMIT(SOCKS5_EV_CONNECTED, pos + total);
#undef NEED
#undef EMIT
}

static void check_same(const struct result *a, const struct result *b)
{
	FUZZ_CHECK(a->n_ev == b->n_ev);
	FUZZ_CHECK(memcmp(a->ev, b->ev, a->n_ev * sizeof(a->ev[0])) == 0);
	FUZZ_CHECK(a->stop == b->stop);
}

static void check_same_parser(const struct socks5_parser *a,
			      const struct socks5_parser *b)
{
	FUZZ_CHECK(a->stage == b->stage);
	FUZZ_CHECK(a->method == b->method);
	FUZZ_CHECK(a->auth_status == b->auth_status);
	FUZZ_CHECK(a->reply == b->reply);
	FUZZ_CHECK(a->atyp == b->atyp);
	FUZZ_CHECK(a->need == b->need);
	FUZZ_CHECK(a->have == b->have);
	FUZZ_CHECK(memcmp(a->buf, b->buf, a->have) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct result whole, split, ref;

	if (size < 1)
		return 0;
	enum mode m = (enum mode)(data[0] & 3);
	uint32_t seed = data[0] >> 2;
	const uint8_t *d = data + 1;
	size_t len = size - 1;

	run_whole(&whole, m, d, len);
	run_split(&split, m, d, len, seed);
	ref_parse(&ref, m, d, len);

	check_same(&whole, &ref);
	check_same(&split, &ref);
	check_same_parser(&whole.p, &split.p);
	/* a successful reply leaves the parser holding exactly it */
	if (whole.p.stage == SOCKS5_STAGE_DONE)
		FUZZ_CHECK(whole.p.have == whole.p.need);
	if (whole.n_ev && whole.ev[0] == SOCKS5_EV_METHOD)
		FUZZ_CHECK(whole.p.method == d[1]);
	return 0;
}
