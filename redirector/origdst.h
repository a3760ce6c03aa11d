/* SPDX-License-Identifier: GPL-2.0-or-later */
/* origdst: the destination a redirected LAN connection was really for. */
#ifndef MPREDIR_ORIGDST_H
#define MPREDIR_ORIGDST_H

#include <stdbool.h>

#include "addr.h"

/* For a socket accepted on a tproxy listener: its local address, which is
 * the destination the client asked for. For one accepted on a REDIRECT
 * listener: the conntrack original
 * destination (SO_ORIGINAL_DST for IPv4, also on a dual-stack socket's
 * v4-mapped connections; IP6T_SO_ORIGINAL_DST for IPv6). The result is
 * never v4-mapped; neither is *local, the address the connection was
 * accepted on (equal to *dst when someone connected straight to us). Returns 0 or -errno (-ENOENT: no conntrack entry, i.e.
 * the connection was not redirected). */
int origdst_get(int fd, union sockaddr_any *dst, union sockaddr_any *local,
		bool tproxy);

#endif
