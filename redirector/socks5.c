// SPDX-License-Identifier: GPL-2.0-or-later
/* socks5: SOCKS5 (RFC 1928) + username/password (RFC 1929) client codec.
 *
 * Builders write one client message into a caller buffer. The parser takes
 * the server's byte stream in arbitrary pieces, one byte at a time
 * internally, and keeps the message being assembled in p->buf[0..have).
 * It validates each byte as it arrives, so most errors are reported by the
 * very byte that is wrong, and it never consumes a byte beyond the end of
 * the server message it is completing.
 *
 * Order of checks in the CONNECT reply (VER REP RSV ATYP BND.ADDR BND.PORT):
 *   1. VER != 5                     -> ERR_VERSION, on byte 1;
 *   2. REP != 0                     -> ERR_REPLY, once the 4 header bytes
 *      are in, whatever RSV and ATYP hold and whether or not BND follows:
 *      servers send short or sloppy failure replies, and the reply code is
 *      what the user needs to see. (Waiting for byte 4 rather than
 *      failing on byte 2 keeps p->atyp filled in and "the header is one
 *      unit" simple; the caller that hits EOF with stage CONNECT and
 *      have >= 2 can still look at p->buf[1].)
 *   3. RSV != 0 (with REP == 0)     -> ERR_RSV, on byte 3;
 *   4. ATYP not 1/3/4 (REP == 0)    -> ERR_ATYP, on byte 4;
 *   5. then BND.ADDR and BND.PORT are collected; the reply is complete
 *      after exactly 4 + addrlen + 2 bytes and CONNECTED is returned.
 *
 * A terminal parser (DONE or FAILED) keeps what it had: stage, fields and
 * the (possibly partial) final message in buf[0..have). The final event
 * is recomputed from that (final_event()), so the struct needs no extra
 * "last event" field. */
#include "socks5.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* The CONNECT reply must fit in p->buf: header, domain length byte, the
 * longest domain, port. */
_Static_assert(sizeof(((struct socks5_parser *)0)->buf) >= 4 + 1 + 255 + 2,
	       "socks5_parser.buf too small for a domain CONNECT reply");

#define ATYP_IPV4 0x01
#define ATYP_DOMAIN 0x03
#define ATYP_IPV6 0x04
#define CMD_CONNECT 0x01

/* RFC 1928 section 6, indexed by REP. */
static const char *const reply_names[] = {
	[SOCKS5_REP_SUCCEEDED] = "succeeded",
	[SOCKS5_REP_GENERAL_FAILURE] = "general SOCKS server failure",
	[SOCKS5_REP_NOT_ALLOWED] = "connection not allowed by ruleset",
	[SOCKS5_REP_NET_UNREACHABLE] = "network unreachable",
	[SOCKS5_REP_HOST_UNREACHABLE] = "host unreachable",
	[SOCKS5_REP_CONN_REFUSED] = "connection refused",
	[SOCKS5_REP_TTL_EXPIRED] = "TTL expired",
	[SOCKS5_REP_CMD_UNSUPPORTED] = "command not supported",
	[SOCKS5_REP_ATYP_UNSUPPORTED] = "address type not supported",
};

const char *socks5_reply_name(uint8_t rep)
{
	if (rep >= sizeof(reply_names) / sizeof(reply_names[0]))
		return NULL;
	return reply_names[rep];
}

/* --- builders ---------------------------------------------------------- */

ssize_t socks5_build_greeting(uint8_t *buf, size_t cap, bool offer_none,
			      bool offer_userpass)
{
	size_t n = 2;

	if (!offer_none && !offer_userpass)
		return -EINVAL;
	n += (size_t)offer_none + (size_t)offer_userpass;
	if (cap < n)
		return -ENOSPC;
	buf[0] = SOCKS5_VERSION;
	buf[1] = (uint8_t)(n - 2);
	n = 2;
	if (offer_none)
		buf[n++] = SOCKS5_METHOD_NONE;
	if (offer_userpass)
		buf[n++] = SOCKS5_METHOD_USERPASS;
	return (ssize_t)n;
}

ssize_t socks5_build_auth(uint8_t *buf, size_t cap, const char *user,
			  const char *pass)
{
	size_t ulen, plen, n;

	if (!user || !pass)
		return -EINVAL;
	/* strnlen: never scan further than one byte past the limit. */
	ulen = strnlen(user, 256);
	plen = strnlen(pass, 256);
	if (ulen < 1 || ulen > 255 || plen < 1 || plen > 255)
		return -EINVAL;
	n = 3 + ulen + plen;
	if (cap < n)
		return -ENOSPC;
	buf[0] = SOCKS5_AUTH_VERSION;
	buf[1] = (uint8_t)ulen;
	memcpy(buf + 2, user, ulen);
	buf[2 + ulen] = (uint8_t)plen;
	memcpy(buf + 3 + ulen, pass, plen);
	return (ssize_t)n;
}

ssize_t socks5_build_connect(uint8_t *buf, size_t cap,
			     const struct sockaddr *dst)
{
	const uint8_t *addr, *port;
	uint8_t atyp;
	size_t alen, n;

	if (!dst)
		return -EINVAL;
	if (dst->sa_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)dst;

		atyp = ATYP_IPV4;
		addr = (const uint8_t *)&in4->sin_addr;
		alen = 4;
		port = (const uint8_t *)&in4->sin_port;
	} else if (dst->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
			(const struct sockaddr_in6 *)dst;

		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			atyp = ATYP_IPV4;
			addr = &in6->sin6_addr.s6_addr[12];
			alen = 4;
		} else {
			atyp = ATYP_IPV6;
			addr = in6->sin6_addr.s6_addr;
			alen = 16;
		}
		port = (const uint8_t *)&in6->sin6_port;
	} else {
		return -EINVAL;
	}
	n = 4 + alen + 2;
	if (cap < n)
		return -ENOSPC;
	buf[0] = SOCKS5_VERSION;
	buf[1] = CMD_CONNECT;
	buf[2] = 0x00; /* RSV */
	buf[3] = atyp;
	memcpy(buf + 4, addr, alen);
	memcpy(buf + 4 + alen, port, 2); /* already in network order */
	return (ssize_t)n;
}

/* --- parser ------------------------------------------------------------ */

/* Which server message a parser is on (or failed in). */
enum msg_kind { MSG_METHOD, MSG_AUTH, MSG_CONNECT };

static void next_message(struct socks5_parser *p, enum socks5_stage stage,
			 uint16_t need);

void socks5_parser_init(struct socks5_parser *p, bool offered_none,
			bool offered_userpass)
{
	memset(p, 0, sizeof(*p));
	p->stage = SOCKS5_STAGE_METHOD;
	p->offered_none = offered_none;
	p->offered_userpass = offered_userpass;
	/* 0xff = "no method agreed yet" and "no auth status yet": only a
	 * successful method reply sets method to 0x00/0x02, only a
	 * successful auth reply sets auth_status to 0. failed_kind()
	 * relies on this. */
	p->method = SOCKS5_METHOD_UNACCEPTABLE;
	p->auth_status = 0xff;
	p->need = 2;
}

void socks5_parser_init_connect(struct socks5_parser *p)
{
	socks5_parser_init(p, true, false);
	p->method = SOCKS5_METHOD_NONE; /* whatever it was, it is behind us */
	next_message(p, SOCKS5_STAGE_CONNECT, 4);
}

bool socks5_event_is_error(enum socks5_event ev)
{
	return ev >= SOCKS5_EV_ERR_VERSION && ev <= SOCKS5_EV_ERR_RSV;
}

/* The message a FAILED parser failed in, from what it retained: no
 * method agreed -> method reply; user/password agreed but no successful
 * auth status -> auth reply; otherwise the CONNECT reply. */
static enum msg_kind failed_kind(const struct socks5_parser *p)
{
	if (p->method == SOCKS5_METHOD_UNACCEPTABLE)
		return MSG_METHOD;
	if (p->method == SOCKS5_METHOD_USERPASS && p->auth_status != 0)
		return MSG_AUTH;
	return MSG_CONNECT;
}

/* The event a terminal parser keeps returning. buf[0..have) holds the
 * failing message up to and including the offending byte, so its length
 * tells which check failed (see the top of this file). */
static enum socks5_event final_event(const struct socks5_parser *p)
{
	if (p->stage == SOCKS5_STAGE_DONE)
		return SOCKS5_EV_CONNECTED;
	if (p->have <= 1)
		return SOCKS5_EV_ERR_VERSION;
	switch (failed_kind(p)) {
	case MSG_METHOD:
		return p->buf[1] == SOCKS5_METHOD_UNACCEPTABLE
			       ? SOCKS5_EV_ERR_NO_METHOD
			       : SOCKS5_EV_ERR_METHOD;
	case MSG_AUTH:
		return SOCKS5_EV_ERR_AUTH;
	case MSG_CONNECT:
		break;
	}
	if (p->reply != SOCKS5_REP_SUCCEEDED)
		return SOCKS5_EV_ERR_REPLY;
	return p->have == 3 ? SOCKS5_EV_ERR_RSV : SOCKS5_EV_ERR_ATYP;
}

static enum socks5_event fail(struct socks5_parser *p, enum socks5_event ev)
{
	p->stage = SOCKS5_STAGE_FAILED;
	return ev;
}

/* Start collecting the next message of `need` bytes in `stage`. */
static void next_message(struct socks5_parser *p, enum socks5_stage stage,
			 uint16_t need)
{
	p->stage = stage;
	p->need = need;
	p->have = 0;
}

/* Each step_* looks at the byte just appended (buf[have - 1]) and returns
 * NEED_MORE to go on, or the event that ends this call. */
static enum socks5_event step_method(struct socks5_parser *p)
{
	uint8_t m;

	if (p->have == 1)
		return p->buf[0] == SOCKS5_VERSION
			       ? SOCKS5_EV_NEED_MORE
			       : fail(p, SOCKS5_EV_ERR_VERSION);
	m = p->buf[1];
	if (m == SOCKS5_METHOD_UNACCEPTABLE)
		return fail(p, SOCKS5_EV_ERR_NO_METHOD);
	if (m == SOCKS5_METHOD_NONE && p->offered_none) {
		p->method = m;
		next_message(p, SOCKS5_STAGE_CONNECT, 4);
		return SOCKS5_EV_METHOD;
	}
	if (m == SOCKS5_METHOD_USERPASS && p->offered_userpass) {
		p->method = m;
		next_message(p, SOCKS5_STAGE_AUTH, 2);
		return SOCKS5_EV_METHOD;
	}
	return fail(p, SOCKS5_EV_ERR_METHOD);
}

static enum socks5_event step_auth(struct socks5_parser *p)
{
	if (p->have == 1)
		return p->buf[0] == SOCKS5_AUTH_VERSION
			       ? SOCKS5_EV_NEED_MORE
			       : fail(p, SOCKS5_EV_ERR_VERSION);
	p->auth_status = p->buf[1];
	if (p->auth_status != 0)
		return fail(p, SOCKS5_EV_ERR_AUTH);
	next_message(p, SOCKS5_STAGE_CONNECT, 4);
	return SOCKS5_EV_AUTH_OK;
}

static enum socks5_event step_connect(struct socks5_parser *p)
{
	switch (p->have) {
	case 1:
		return p->buf[0] == SOCKS5_VERSION
			       ? SOCKS5_EV_NEED_MORE
			       : fail(p, SOCKS5_EV_ERR_VERSION);
	case 2:
		p->reply = p->buf[1];
		return SOCKS5_EV_NEED_MORE;
	case 3:
		/* A failure reply is reported on byte 4, even with a bad RSV. */
		if (p->reply == SOCKS5_REP_SUCCEEDED && p->buf[2] != 0)
			return fail(p, SOCKS5_EV_ERR_RSV);
		return SOCKS5_EV_NEED_MORE;
	case 4:
		p->atyp = p->buf[3];
		if (p->reply != SOCKS5_REP_SUCCEEDED)
			return fail(p, SOCKS5_EV_ERR_REPLY);
		switch (p->atyp) {
		case ATYP_IPV4:
			p->need = 4 + 4 + 2;
			break;
		case ATYP_IPV6:
			p->need = 4 + 16 + 2;
			break;
		case ATYP_DOMAIN:
			p->need = 4 + 1; /* the length byte, then we know */
			break;
		default:
			return fail(p, SOCKS5_EV_ERR_ATYP);
		}
		return SOCKS5_EV_NEED_MORE;
	case 5:
		/* A zero-length domain is accepted: nothing here uses
		 * BND.ADDR, and RFC 1928 does not forbid it. The reply is
		 * then 4 + 1 + 0 + 2 = 7 bytes. */
		if (p->atyp == ATYP_DOMAIN)
			p->need = (uint16_t)(4 + 1 + p->buf[4] + 2);
		break;
	default:
		break;
	}
	if (p->have < p->need)
		return SOCKS5_EV_NEED_MORE;
	p->stage = SOCKS5_STAGE_DONE;
	return SOCKS5_EV_CONNECTED;
}

enum socks5_event socks5_parse(struct socks5_parser *p, const uint8_t *data,
			       size_t len, size_t *used)
{
	enum socks5_event ev = SOCKS5_EV_NEED_MORE;
	size_t i = 0;

	if (p->stage == SOCKS5_STAGE_DONE || p->stage == SOCKS5_STAGE_FAILED) {
		if (used)
			*used = 0;
		return final_event(p);
	}
	while (ev == SOCKS5_EV_NEED_MORE && i < len) {
		/* Cannot overflow: have < need <= sizeof(buf) here. */
		p->buf[p->have++] = data[i++];
		switch (p->stage) {
		case SOCKS5_STAGE_METHOD:
			ev = step_method(p);
			break;
		case SOCKS5_STAGE_AUTH:
			ev = step_auth(p);
			break;
		case SOCKS5_STAGE_CONNECT:
			ev = step_connect(p);
			break;
		case SOCKS5_STAGE_DONE:
		case SOCKS5_STAGE_FAILED:
			break; /* not reached: checked above */
		}
	}
	if (used)
		*used = i;
	return ev;
}

/* --- messages ---------------------------------------------------------- */

const char *socks5_strerror(const struct socks5_parser *p,
			    enum socks5_event ev, char *buf, size_t cap)
{
	static const char *const msg_names[] = {
		[MSG_METHOD] = "method reply",
		[MSG_AUTH] = "auth reply",
		[MSG_CONNECT] = "CONNECT reply",
	};
	const char *name;

	if (!buf || cap == 0)
		return buf;
	switch (ev) {
	case SOCKS5_EV_NEED_MORE:
		snprintf(buf, cap, "SOCKS handshake incomplete");
		break;
	case SOCKS5_EV_METHOD:
		snprintf(buf, cap, "server chose method 0x%02x", p->method);
		break;
	case SOCKS5_EV_AUTH_OK:
		snprintf(buf, cap, "authentication succeeded");
		break;
	case SOCKS5_EV_CONNECTED:
		snprintf(buf, cap, "connected");
		break;
	case SOCKS5_EV_ERR_VERSION:
		snprintf(buf, cap, "bad SOCKS version 0x%02x in %s", p->buf[0],
			 msg_names[failed_kind(p)]);
		break;
	case SOCKS5_EV_ERR_NO_METHOD:
		snprintf(buf, cap,
			 "no acceptable authentication method (server answered 0xff)");
		break;
	case SOCKS5_EV_ERR_METHOD:
		snprintf(buf, cap, "server chose method 0x%02x that was not offered",
			 p->buf[1]);
		break;
	case SOCKS5_EV_ERR_AUTH:
		/* The parser never sees the credentials: nothing to leak. */
		snprintf(buf, cap, "authentication failed (status 0x%02x)",
			 p->auth_status);
		break;
	case SOCKS5_EV_ERR_REPLY:
		name = socks5_reply_name(p->reply);
		if (name)
			snprintf(buf, cap, "CONNECT refused: %s (0x%02x)", name,
				 p->reply);
		else
			snprintf(buf, cap, "CONNECT refused: unknown reply 0x%02x",
				 p->reply);
		break;
	case SOCKS5_EV_ERR_ATYP:
		snprintf(buf, cap, "unknown address type 0x%02x in CONNECT reply",
			 p->atyp);
		break;
	case SOCKS5_EV_ERR_RSV:
		snprintf(buf, cap, "non-zero reserved byte in CONNECT reply");
		break;
	default:
		snprintf(buf, cap, "unknown SOCKS event %d", (int)ev);
		break;
	}
	return buf;
}
