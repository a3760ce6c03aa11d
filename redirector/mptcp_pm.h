/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mptcp_pm: the in-kernel MPTCP path manager over generic netlink (family
 * "mptcp_pm", libmnl): limits, and the endpoints of the router's WAN
 * addresses. Only endpoints this module created are ever changed or
 * removed; mptcp_pm_close() removes them all. */
#ifndef MPREDIR_MPTCP_PM_H
#define MPREDIR_MPTCP_PM_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

struct mptcp_pm;

/* Resolve the family. NULL with *err (errno; ENOENT: no MPTCP in this
 * kernel) on failure. */
struct mptcp_pm *mptcp_pm_open(int *err);

/* `ip mptcp limits set subflow N add_addr_accepted M`. 0 or -errno
 * (-EINVAL from the kernel above its maximum, 8). */
int mptcp_pm_set_limits(struct mptcp_pm *pm, unsigned subflows,
			unsigned add_addr_accepted);

/* An endpoint for addr (port ignored) on ifindex, flags "subflow" and, if
 * backup, "backup". The kernel at once opens a subflow from it on every
 * established connection (to the connection's first remote address,
 * bound to ifindex), within the "subflows" limit. want_id (1-255) is the
 * id to use, so that a WAN keeps its id across down/up; if another
 * endpoint (not ours) holds it, the next free id is taken. Returns the id
 * (> 0) or -errno. If an endpoint of ours with this address exists, it is
 * replaced (e.g. the flags changed).
 *
 * In detail: our endpoint for addr that is still as asked is kept (its id
 * returned, want_id not enforced); if only "backup" differs, it is changed
 * in place (MPTCP_PM_CMD_SET_FLAGS: the subflows stay, peers get MP_PRIO);
 * otherwise (ifindex) it is deleted and added again. An endpoint of
 * someone else with this address: -EEXIST, left alone — except one the
 * kernel made itself ("implicit", for a subflow from an address with no
 * endpoint), which is taken over in place, keeping its id and its
 * subflows. -ENOSPC: no free id; -ERANGE: the kernel's limit of 8
 * endpoints; -EINVAL: want_id 0, or addr neither IPv4 nor IPv6. */
int mptcp_pm_add(struct mptcp_pm *pm, const union sockaddr_any *addr,
		 int ifindex, bool backup, uint8_t want_id);

/* Delete our endpoint `id`: the kernel closes at once every subflow from
 * its address, the initial subflow of a connection included (a connection
 * left with none stays open, silent, until an endpoint gives it a subflow
 * again). 0, or -errno; an id that is not ours is refused with -EPERM. An
 * endpoint that is gone already (or whose id now holds another address)
 * counts as deleted. */
int mptcp_pm_del(struct mptcp_pm *pm, uint8_t id);

/* Delete every endpoint of ours and close. NULL-safe. */
void mptcp_pm_close(struct mptcp_pm *pm);

/* --- For tests: the messages and parsers, without a socket ------------ */

struct nlmsghdr;

/* Bytes enough for any message built below. */
#define MPTCP_PM_MSG_SIZE 256

/* An endpoint as the kernel lists it. */
struct mptcp_pm_endp {
	uint8_t id;
	/* Family and address; the port is MPTCP_PM_ADDR_ATTR_PORT (0 for
	 * a "subflow" endpoint). AF_UNSPEC: a family we do not know. */
	union sockaddr_any addr;
	int ifindex;    /* 0: none */
	uint32_t flags; /* MPTCP_PM_ADDR_FLAG_* */
};

/* Each builds one request into buf (MPTCP_PM_MSG_SIZE bytes) and returns
 * it; `family` is the resolved id of "mptcp_pm". Change requests carry
 * NLM_F_ACK, the dump NLM_F_DUMP. */
struct nlmsghdr *mptcp_pm_msg_getfamily(char *buf);
/* e->id 0: no MPTCP_PM_ADDR_ATTR_ID (the kernel picks one); e->ifindex 0:
 * no IF_IDX; addr's port is not sent. */
struct nlmsghdr *mptcp_pm_msg_add(char *buf, uint16_t family,
				  const struct mptcp_pm_endp *e);
struct nlmsghdr *mptcp_pm_msg_del(char *buf, uint16_t family, uint8_t id);
struct nlmsghdr *mptcp_pm_msg_set_flags(char *buf, uint16_t family,
					uint8_t id, uint32_t flags);
struct nlmsghdr *mptcp_pm_msg_set_limits(char *buf, uint16_t family,
					 unsigned subflows,
					 unsigned add_addr_accepted);
struct nlmsghdr *mptcp_pm_msg_dump(char *buf, uint16_t family);

/* The family id in a CTRL_CMD_NEWFAMILY reply: 0 or -EPROTO. */
int mptcp_pm_parse_family(const struct nlmsghdr *nlh, uint16_t *family);
/* One endpoint from a GET_ADDR reply (or any message of the family with
 * an MPTCP_PM_ATTR_ADDR nest): 0, or -EPROTO (malformed attribute, no
 * nest, no id, or no address for the family). Unknown attributes are
 * skipped. */
int mptcp_pm_parse_endp(const struct nlmsghdr *nlh, struct mptcp_pm_endp *e);

/* The id for a new endpoint: want_id (1-255) if !taken[want_id], else the
 * next free one upward, wrapping from 255 to 1. taken[0] is ignored.
 * -ENOSPC when 1-255 are all taken, -EINVAL for want_id 0. */
int mptcp_pm_pick_id(const bool taken[256], uint8_t want_id);

#endif
