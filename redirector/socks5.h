/* SPDX-License-Identifier: GPL-2.0-or-later */
/* socks5: a pure SOCKS5 (RFC 1928) + username/password (RFC 1929) client
 * codec. Builds the client's messages into caller buffers and parses the
 * server's replies incrementally, from any split of the byte stream.
 * No I/O, no allocation, no global state: safe to fuzz. */
#ifndef MPREDIR_SOCKS5_H
#define MPREDIR_SOCKS5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SOCKS5_VERSION 0x05
#define SOCKS5_AUTH_VERSION 0x01

enum socks5_method {
	SOCKS5_METHOD_NONE = 0x00,
	SOCKS5_METHOD_USERPASS = 0x02,
	SOCKS5_METHOD_UNACCEPTABLE = 0xff,
};

/* CONNECT reply codes (RFC 1928 section 6). */
enum socks5_reply {
	SOCKS5_REP_SUCCEEDED = 0x00,
	SOCKS5_REP_GENERAL_FAILURE = 0x01,
	SOCKS5_REP_NOT_ALLOWED = 0x02,
	SOCKS5_REP_NET_UNREACHABLE = 0x03,
	SOCKS5_REP_HOST_UNREACHABLE = 0x04,
	SOCKS5_REP_CONN_REFUSED = 0x05,
	SOCKS5_REP_TTL_EXPIRED = 0x06,
	SOCKS5_REP_CMD_UNSUPPORTED = 0x07,
	SOCKS5_REP_ATYP_UNSUPPORTED = 0x08,
};

/* Human name of a reply code ("connection refused"); NULL when unknown
 * (callers then print the raw value). One table, used for printing. */
const char *socks5_reply_name(uint8_t rep);

/* Largest message the builders produce: auth is 3 + 255 + 255. */
#define SOCKS5_AUTH_MAX 513
#define SOCKS5_GREETING_MAX 4
#define SOCKS5_CONNECT_MAX 22 /* 4 + 16 (IPv6) + 2 */

/* Builders. Each writes into buf[0..cap) and returns the number of bytes
 * written, or -ENOSPC when cap is too small, -EINVAL for bad arguments
 * (no method offered, user or password empty or longer than 255 bytes,
 * address family other than AF_INET / AF_INET6). */
ssize_t socks5_build_greeting(uint8_t *buf, size_t cap, bool offer_none,
			      bool offer_userpass);
ssize_t socks5_build_auth(uint8_t *buf, size_t cap, const char *user,
			  const char *pass);
/* CONNECT to an IPv4 or IPv6 address+port taken from `dst`. A v4-mapped
 * IPv6 address is sent as an IPv4 address (ATYP 1). */
ssize_t socks5_build_connect(uint8_t *buf, size_t cap,
			     const struct sockaddr *dst);

/* Incremental parser of everything the server sends before relaying:
 * method selection, then (if user/password was selected) the auth status,
 * then the CONNECT reply with a BND address of any type. */
enum socks5_stage {
	SOCKS5_STAGE_METHOD,
	SOCKS5_STAGE_AUTH,
	SOCKS5_STAGE_CONNECT,
	SOCKS5_STAGE_DONE,
	SOCKS5_STAGE_FAILED,
};

enum socks5_event {
	SOCKS5_EV_NEED_MORE = 0, /* all input consumed, reply incomplete */
	SOCKS5_EV_METHOD,        /* method reply complete: see p->method */
	SOCKS5_EV_AUTH_OK,       /* RFC 1929 status 0 */
	SOCKS5_EV_CONNECTED,     /* CONNECT reply 0x00; bytes after it are data */
	/* errors; the parser is then in SOCKS5_STAGE_FAILED */
	SOCKS5_EV_ERR_VERSION,   /* version byte is not 5 (or 1 for auth) */
	SOCKS5_EV_ERR_NO_METHOD, /* server answered 0xff: no acceptable method */
	SOCKS5_EV_ERR_METHOD,    /* server chose a method we did not offer */
	SOCKS5_EV_ERR_AUTH,      /* RFC 1929 status != 0: see p->auth_status */
	SOCKS5_EV_ERR_REPLY,     /* CONNECT reply != 0: see p->reply */
	SOCKS5_EV_ERR_ATYP,      /* unknown BND address type: see p->atyp */
	SOCKS5_EV_ERR_RSV,       /* reserved byte of the CONNECT reply != 0 */
};

struct socks5_parser {
	enum socks5_stage stage;
	bool offered_none, offered_userpass;
	uint8_t method;      /* chosen method, valid after SOCKS5_EV_METHOD */
	uint8_t auth_status; /* valid after an auth reply */
	uint8_t reply;       /* REP field, valid after the CONNECT reply */
	uint8_t atyp;        /* ATYP field of the CONNECT reply */
	/* BND.ADDR/BND.PORT of a successful reply, raw (domain: length-prefixed). */
	uint16_t need;       /* bytes the current message needs in total */
	uint16_t have;       /* bytes of it collected in buf */
	uint8_t buf[4 + 1 + 255 + 2];
};

/* Start a parser for a handshake in which the client offered these
 * methods (the same flags given to socks5_build_greeting). */
void socks5_parser_init(struct socks5_parser *p, bool offered_none,
			bool offered_userpass);

/* Start a parser that expects only the CONNECT reply: for a connection
 * whose method negotiation (and auth) are already done, e.g. a warm one
 * from the pool. */
void socks5_parser_init_connect(struct socks5_parser *p);

/* Feed bytes. Consumes at most one complete server message per call and
 * stores in *used how many bytes of `data` it took; call again with the
 * rest while it returns an event other than SOCKS5_EV_NEED_MORE and the
 * stage is not DONE/FAILED. After SOCKS5_EV_CONNECTED, data[*used..len)
 * is the destination's first payload and belongs to the relay.
 * Feeding a parser in DONE or FAILED stage returns the last error or
 * SOCKS5_EV_CONNECTED without consuming anything. */
enum socks5_event socks5_parse(struct socks5_parser *p, const uint8_t *data,
			       size_t len, size_t *used);

/* True for the error events. */
bool socks5_event_is_error(enum socks5_event ev);

/* Describe the parser's failure in words, e.g. "CONNECT refused:
 * connection refused (0x05)" or "server chose method 0x03 that was not
 * offered", into buf; returns buf. */
const char *socks5_strerror(const struct socks5_parser *p,
			    enum socks5_event ev, char *buf, size_t cap);

#endif
