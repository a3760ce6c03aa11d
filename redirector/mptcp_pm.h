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

/* `ip mptcp limits set subflow N add_addr_accepted M`. 0 or -errno. */
int mptcp_pm_set_limits(struct mptcp_pm *pm, unsigned subflows,
			unsigned add_addr_accepted);

/* An endpoint for addr (port ignored) on ifindex, flags "subflow" and, if
 * backup, "backup". want_id (1-255) is the id to use, so that a WAN keeps
 * its id across down/up; if another endpoint (not ours) holds it, the next
 * free id is taken. Returns the id (> 0) or -errno. If an endpoint of ours
 * with this address exists, it is replaced (e.g. the flags changed). */
int mptcp_pm_add(struct mptcp_pm *pm, const union sockaddr_any *addr,
		 int ifindex, bool backup, uint8_t want_id);

/* Delete our endpoint `id` (the kernel closes the subflows that use it).
 * 0, or -errno; an id that is not ours is refused with -EPERM. */
int mptcp_pm_del(struct mptcp_pm *pm, uint8_t id);

/* Delete every endpoint of ours and close. NULL-safe. */
void mptcp_pm_close(struct mptcp_pm *pm);

#endif
