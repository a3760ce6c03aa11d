/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nl: small libmnl helpers shared by the netlink users: a synchronous
 * request on a socket of its own (send, read replies up to the ack or the
 * end of a dump, check sequence numbers), and message buffers. */
#ifndef MPREDIR_NL_H
#define MPREDIR_NL_H

#include <libmnl/libmnl.h>
#include <stdbool.h>
#include <stdint.h>

/* Receive buffer for dumps and events (libmnl 1.0.4 has no
 * MNL_SOCKET_DUMP_SIZE). */
#define NL_BUF_SIZE 32768

/* Send nlh (its nlmsg_seq is set here) on nl and read the replies: each
 * data message goes to cb (may be NULL), until the ack or NLMSG_DONE.
 * A change request must carry NLM_F_ACK; a dump (NLM_F_DUMP) must not:
 * it ends with NLMSG_DONE. (The flags cannot be told apart: NLM_F_DUMP's
 * bits are NLM_F_REPLACE's and NLM_F_EXCL's.)
 * Returns 0, or -errno (the kernel's error for the request). */
int nl_talk(struct mnl_socket *nl, struct nlmsghdr *nlh, mnl_cb_t cb,
	    void *data);

/* Open and bind a netlink socket of `bus`, joined to `groups` (a bitmask
 * of legacy groups, 0 for none), non-blocking when `nonblock`. NULL with
 * errno set. */
struct mnl_socket *nl_open(int bus, unsigned groups, bool nonblock);

#endif
