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
/* The address alone, without brackets or port. */
const char *addr_ip(const union sockaddr_any *a, char *buf, size_t cap);
/* A v4-mapped IPv6 address (::ffff:a.b.c.d) becomes plain AF_INET. */
void addr_unmap(union sockaddr_any *a);
/* Same family, address and port. */
bool addr_equal(const union sockaddr_any *a, const union sockaddr_any *b);
/* An IP literal (v4 or v6, no brackets) and a port; 0 or -EINVAL. */
int addr_parse(const char *ip, uint16_t port, union sockaddr_any *out);

/* An IPv4 or IPv6 prefix; addr in network byte order (IPv4 in the first 4
 * bytes), bits beyond len cleared. */
struct addr_prefix {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint8_t len;
};

/* "192.0.2.0/24", "2001:db8::/32", or a bare address (full length).
 * 0 or -EINVAL. */
int addr_prefix_parse(const char *s, struct addr_prefix *p);
/* Clear the bits beyond p->len. */
void addr_prefix_mask(struct addr_prefix *p);

#endif
