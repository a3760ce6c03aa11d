/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fw: the daemon's own nftables table, `inet mpredir`, built with libnftnl
 * and sent as one batch through libmnl (delete-if-present + create: a
 * restart is idempotent), every acknowledgement read and kernel errors
 * reported. Later changes (reload, new router addresses) replace only the
 * sets whose elements differ when the chains would come out the same, so
 * rules keep their handles and counters. The table carries the `owner` flag where the kernel has it
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

/* What differs between the installed table and a spec: one bit per set
 * whose elements differ (the set bits, in the sets' order), one per
 * setting the chains and rules are built from. */
enum fw_diff {
	FW_DIFF_LAN_IFACES     = 1u << 0,
	FW_DIFF_BYPASS4        = 1u << 1,
	FW_DIFF_BYPASS6        = 1u << 2,
	FW_DIFF_BYPASS_PORTS   = 1u << 3,
	FW_DIFF_MODE           = 1u << 4,
	FW_DIFF_PORT           = 1u << 5,
	FW_DIFF_MARK           = 1u << 6,
	FW_DIFF_TPROXY_MARK    = 1u << 7,  /* both specs in tproxy mode */
	FW_DIFF_ROUTER_TRAFFIC = 1u << 8,
	FW_DIFF_BLOCK_QUIC     = 1u << 9,
	FW_DIFF_NO_TABLE       = 1u << 10, /* none installed, or it was removed */
};
#define FW_DIFF_SETS (FW_DIFF_LAN_IFACES | FW_DIFF_BYPASS4 | \
		      FW_DIFF_BYPASS6 | FW_DIFF_BYPASS_PORTS)
/* Any of these: the whole table is built again. */
#define FW_DIFF_REBUILD (~(unsigned)FW_DIFF_SETS)

/* Bring the table to spec, touching only what differs from the installed
 * one (the last spec installed or updated): with the same chains, one
 * batch replaces the elements of the sets that differ (nothing is sent if
 * none does); otherwise, or without a table, the whole table is built
 * (fw_install). *diff gets what differed (fw_diff bits; FW_DIFF_NO_TABLE
 * alone when there was nothing to compare with). The spec is kept for
 * reinstalling, whatever was sent. 0, or -errno (errbuf); on error the
 * table and the kept spec are as they were. */
int fw_update(struct fw *fw, const struct fw_spec *spec, unsigned *diff,
	      char *errbuf, size_t errlen);

/* What differs from `old` to `spec` (fw_diff bits, FW_DIFF_NO_TABLE
 * aside): >= 0, or -EINVAL (an invalid spec), -ENOMEM. Sets are compared
 * by content: order and duplicates do not count, nor, for the bypass
 * sets, prefixes that merge into the same ranges. */
int fw_spec_diff(const struct fw_spec *old, const struct fw_spec *spec);

/* The names of the bits in diff, ", "-separated ("bypass4, port"), into
 * buf (truncated to len); returns buf. */
const char *fw_diff_str(unsigned diff, char *buf, size_t len);

/* Whether the installed table has the owner flag. */
bool fw_has_owner(const struct fw *fw);

/* Delete the table (if installed) and close everything. NULL-safe. */
void fw_close(struct fw *fw);


/* For tests: the batches fw_install and fw_update send, appended to
 * `batch` (from libnftnl's nftnl_batch_alloc) without sending, messages
 * numbered from seq (BATCH_BEGIN is seq). fw_build_install_batch builds
 * the table with or without the owner flag; fw_build_sets_batch replaces
 * the elements of the sets named by the FW_DIFF_SETS bits in `sets` with
 * spec's. Return the number of messages (BATCH_BEGIN and BATCH_END
 * included), or -errno (-EINVAL for an invalid spec). */
struct nftnl_batch;
int fw_build_install_batch(struct nftnl_batch *batch,
			   const struct fw_spec *spec, uint32_t seq, bool owner);
int fw_build_sets_batch(struct nftnl_batch *batch, const struct fw_spec *spec,
			unsigned sets, uint32_t seq);

#endif
