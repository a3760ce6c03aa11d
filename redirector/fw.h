/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fw: the daemon's own nftables table, `inet mpredir`, built with libnftnl
 * and sent as one batch through libmnl (delete-if-present + create: a
 * restart is idempotent), every acknowledgement read and kernel errors
 * reported. The table carries the `owner` flag where the kernel has it
 * (Linux >= 5.12), so it disappears with the daemon's netlink socket:
 * after a crash or SIGKILL no rule redirects LAN traffic into a dead port
 * (fail-open). The module also listens to nftables events and puts the
 * table back (once, after a short delay) when someone else removed it,
 * e.g. `nft flush ruleset` on a kernel without `owner`. It never touches
 * another table. */
#ifndef MPREDIR_FW_H
#define MPREDIR_FW_H

#include <ev.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define FW_TABLE "mpredir"


enum fw_mode { FW_REDIRECT, FW_TPROXY };

/* What the table is to do. All pointers are only read during the call. */
struct fw_spec {
	enum fw_mode mode;
	const char *const *lan_ifaces; /* interface names whose TCP is captured */
	size_t n_lan_ifaces;
	uint16_t port;                 /* the daemon's listener */
	uint32_t mark;                 /* upstream sockets' mark: never captured */
	uint32_t tproxy_mark;          /* tproxy: mark of captured packets */
	bool router_traffic;           /* also capture TCP the router originates */
	bool block_quic;               /* reject UDP/443 from the LAN */
	const uint16_t *bypass_ports;  /* destination ports never captured */
	size_t n_bypass_ports;
	const struct addr_prefix *bypass; /* destinations never captured */
	size_t n_bypass;
};

struct fw;

/* Open the netlink sockets (one for changes, kept open for the table's
 * owner; one for events) and watch them in loop. NULL with *err set (an
 * errno) on failure. */
struct fw *fw_open(struct ev_loop *loop, int *err);

/* Build and install the whole table for spec, in one batch, replacing any
 * table of that name. 0, or -errno with a message in errbuf naming what
 * the kernel refused. The spec is kept (copied) for reinstalling. */
int fw_install(struct fw *fw, const struct fw_spec *spec, char *errbuf,
	       size_t errlen);

/* Replace the elements of the bypass sets (both families) with `bypass`,
 * in one batch, without touching the chains. 0 or -errno (errbuf). */
int fw_set_bypass(struct fw *fw, const struct addr_prefix *bypass, size_t n,
		  char *errbuf, size_t errlen);

/* Whether the installed table has the owner flag. */
bool fw_has_owner(const struct fw *fw);

/* Delete the table (if installed) and close everything. NULL-safe. */
void fw_close(struct fw *fw);


/* For tests: the batches fw_install and fw_set_bypass send, appended to
 * `batch` (from libnftnl's nftnl_batch_alloc) without sending, messages
 * numbered from seq (BATCH_BEGIN is seq). fw_build_install_batch builds
 * the table with or without the owner flag. Return the number of messages
 * (BATCH_BEGIN and BATCH_END included), or -errno (-EINVAL for an invalid
 * spec or prefix). */
struct nftnl_batch;
int fw_build_install_batch(struct nftnl_batch *batch,
			   const struct fw_spec *spec, uint32_t seq, bool owner);
int fw_build_bypass_batch(struct nftnl_batch *batch,
			  const struct addr_prefix *bypass, size_t n,
			  uint32_t seq);

#endif
