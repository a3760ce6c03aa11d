/* SPDX-License-Identifier: GPL-2.0-or-later */
/* addr: socket addresses of either family, small enough to keep per flow. */
#ifndef MPREDIR_ADDR_H
#define MPREDIR_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

union sockaddr_any {
	struct sockaddr sa;
	struct sockaddr_in in4;
	struct sockaddr_in6 in6;
};

/* "192.0.2.1:80" or "[2001:db8::1]:443": INET6_ADDRSTRLEN + "[]:65535". */
#define ADDR_STRLEN 56

socklen_t addr_len(const union sockaddr_any *a);
uint16_t addr_port(const union sockaddr_any *a);
const char *addr_fmt(const union sockaddr_any *a, char *buf, size_t cap);
/* A v4-mapped IPv6 address (::ffff:a.b.c.d) becomes plain AF_INET. */
void addr_unmap(union sockaddr_any *a);
/* Same family, address and port. */
bool addr_equal(const union sockaddr_any *a, const union sockaddr_any *b);
/* An IP literal (v4 or v6, no brackets) and a port; 0 or -EINVAL. */
int addr_parse(const char *ip, uint16_t port, union sockaddr_any *out);

#endif
