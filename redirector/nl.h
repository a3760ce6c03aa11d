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

/* One buffer of replies, as nl_talk reads it: nl_buf_ok(), then
 * mnl_cb_run(). MNL_CB_OK (read on), MNL_CB_STOP (the ack or NLMSG_DONE),
 * or -1 with errno (EBADMSG: a buffer libmnl cannot walk; the kernel's
 * error from an NLMSG_ERROR; ...). */
int nl_run(const void *buf, size_t len, uint32_t seq, unsigned portid,
	   mnl_cb_t cb, void *data);

/* Whether nlh, with len bytes left in the buffer, is a whole message to
 * read and step over: its length, padding included, is inside the
 * buffer. libmnl 1.0.4's mnl_nlmsg_ok() is not enough: it compares
 * (int)nlmsg_len, so a length of 2 GiB or more passes as negative and
 * mnl_nlmsg_next() then leaves the buffer (or, for 0xfffffffd and up,
 * stays on the same message forever); and it ignores the padding, which
 * libmnl's attribute walk reads (up to 3 bytes past the end of a buffer
 * whose last message has an unaligned length). The kernel's messages
 * always pass. Use it to walk a buffer. */
bool nl_msg_ok(const struct nlmsghdr *nlh, int len);
/* Whether libmnl's own walk of buf[0..len) (mnl_cb_run) stays inside it:
 * it meets only messages that pass nl_msg_ok(). */
bool nl_buf_ok(const void *buf, size_t len);

/* Open and bind a netlink socket of `bus`, joined to `groups` (a bitmask
 * of legacy groups, 0 for none), non-blocking when `nonblock`. NULL with
 * errno set. */
struct mnl_socket *nl_open(int bus, unsigned groups, bool nonblock);

#endif
