// SPDX-License-Identifier: GPL-2.0-or-later
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

socklen_t addr_len(const union sockaddr_any *a)
{
	return a->sa.sa_family == AF_INET6 ? sizeof(a->in6) : sizeof(a->in4);
}

uint16_t addr_port(const union sockaddr_any *a)
{
	return ntohs(a->sa.sa_family == AF_INET6 ? a->in6.sin6_port
						 : a->in4.sin_port);
}

const char *addr_fmt(const union sockaddr_any *a, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	switch (a->sa.sa_family) {
	case AF_INET:
		inet_ntop(AF_INET, &a->in4.sin_addr, ip, sizeof(ip));
		snprintf(buf, cap, "%s:%u", ip, ntohs(a->in4.sin_port));
		break;
	case AF_INET6:
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, cap, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
		break;
	default:
		snprintf(buf, cap, "(family %d)", a->sa.sa_family);
	}
	return buf;
}

const char *addr_ip(const union sockaddr_any *a, char *buf, size_t cap)
{
	const void *ip = a->sa.sa_family == AF_INET6
				 ? (const void *)&a->in6.sin6_addr
				 : (const void *)&a->in4.sin_addr;

	if (!inet_ntop(a->sa.sa_family, ip, buf, (socklen_t)cap))
		snprintf(buf, cap, "?");
	return buf;
}

void addr_unmap(union sockaddr_any *a)
{
	if (a->sa.sa_family != AF_INET6 ||
	    !IN6_IS_ADDR_V4MAPPED(&a->in6.sin6_addr))
		return;
	struct sockaddr_in in4 = {
		.sin_family = AF_INET,
		.sin_port = a->in6.sin6_port,
	};
	memcpy(&in4.sin_addr, &a->in6.sin6_addr.s6_addr[12], 4);
	memset(a, 0, sizeof(*a));
	a->in4 = in4;
}

bool addr_equal(const union sockaddr_any *a, const union sockaddr_any *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in4.sin_port == b->in4.sin_port &&
		       a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
	if (a->sa.sa_family == AF_INET6)
		return a->in6.sin6_port == b->in6.sin6_port &&
		       IN6_ARE_ADDR_EQUAL(&a->in6.sin6_addr, &b->in6.sin6_addr);
	return false;
}

int addr_parse(const char *ip, uint16_t port, union sockaddr_any *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, ip, &out->in4.sin_addr) == 1) {
		out->in4.sin_family = AF_INET;
		out->in4.sin_port = htons(port);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &out->in6.sin6_addr) == 1) {
		out->in6.sin6_family = AF_INET6;
		out->in6.sin6_port = htons(port);
		return 0;
	}
	return -EINVAL;
}

void addr_prefix_mask(struct addr_prefix *p)
{
	unsigned max = p->family == AF_INET ? 32 : 128;

	for (unsigned bit = p->len; bit < max; bit++)
		p->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
}

int addr_prefix_parse(const char *s, struct addr_prefix *p)
{
	char ip[INET6_ADDRSTRLEN];
	const char *slash;
	size_t iplen;
	unsigned max, len;

	memset(p, 0, sizeof(*p));
	if (!s)
		return -EINVAL;
	slash = strchr(s, '/');
	iplen = slash ? (size_t)(slash - s) : strlen(s);
	if (iplen == 0 || iplen >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, iplen);
	ip[iplen] = '\0';
	if (inet_pton(AF_INET, ip, p->addr) == 1)
		p->family = AF_INET;
	else if (inet_pton(AF_INET6, ip, p->addr) == 1)
		p->family = AF_INET6;
	else
		goto bad;
	max = p->family == AF_INET ? 32 : 128;
	len = max;
	if (slash) {
		/* 1 to 3 decimal digits, nothing else ("/", "/+8", "/08x"). */
		const char *d = slash + 1;
		size_t nd = strspn(d, "0123456789");
		if (nd == 0 || nd > 3 || d[nd] != '\0')
			goto bad;
		len = 0;
		for (size_t i = 0; i < nd; i++)
			len = len * 10 + (unsigned)(d[i] - '0');
		if (len > max)
			goto bad;
	}
	p->len = (uint8_t)len;
	addr_prefix_mask(p);
	return 0;
bad:
	memset(p, 0, sizeof(*p));
	return -EINVAL;
}
