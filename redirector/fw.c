// SPDX-License-Identifier: GPL-2.0-or-later
/* fw: the daemon's nftables table `inet mpredir` (see fw.h).
 *
 * The table is described as data: the sets (fw_sets) and the chains
 * (fw_chains) with their rules (fw_rule: the rule's text as in
 * nft-rules/mpredir.nft, and the steps its expressions are built from).
 * Every change is one nftnl_batch of libnftnl objects, each message with
 * NLM_F_ACK and a sequence number whose description ("add rule prerouting
 * ...") is kept so that the first error the kernel reports names the
 * object it refused.
 *
 * Set elements are encoded exactly as nft 1.0.6 encodes them (the same
 * set user data, the same interval elements), so that `nft list table inet
 * mpredir` prints the daemon's table as it prints the reference file's. */
#include "fw.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4.h>
#include <net/if.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include "log.h"
#include "nl.h"

#define FW_FAMILY NFPROTO_INET

/* Batch pages: a message must fit in the overrun (libnftnl writes without
 * bounds checks), so element lists are cut into messages of
 * FW_ELEMS_PER_MSG elements (< 8 KiB each). */
#define FW_BATCH_PAGE    32768
#define FW_BATCH_OVERRUN 65536
#define FW_ELEMS_PER_MSG 128

#define FW_BUF_SIZE 32768        /* receive buffer per socket */
#define FW_ACK_WAIT_MS 2000      /* the kernel acks inside sendmsg(); a guard */
#define FW_EVENT_RCVBUF (1 << 20)
#define FW_REINSTALL_DELAY_S 0.2 /* coalesces a burst of events */
#define FW_RETRY_MAX_S 60.0

/* nft's datatype ids and byte orders (nftables include/datatype.h,
 * include/expression.h): nft stores them in the set, and `nft list`
 * prints the set from them. */
#define NFT_TYPE_IPADDR       7
#define NFT_TYPE_IP6ADDR      8
#define NFT_TYPE_INET_SERVICE 13
#define NFT_TYPE_IFNAME       41
#define NFT_BYTEORDER_HOST    1
#define NFT_BYTEORDER_BIG     2

#define FW_WHAT_LEN 128

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ------------------------------------------------------------------ */
/* The table as data                                                    */

/* Sets, in the order they are created (= the order `nft list` prints). */
enum fw_set_id { FW_SET_LAN, FW_SET_BYPASS4, FW_SET_BYPASS6, FW_SET_PORTS };

struct fw_set_def {
	const char *name;
	uint32_t key_type;  /* nft datatype */
	uint32_t key_len;   /* bytes */
	uint32_t flags;     /* NFT_SET_* */
	uint32_t byteorder; /* of the key, for nft */
	bool auto_merge;    /* nft's `auto-merge` (user data only) */
};

static const struct fw_set_def fw_sets[] = {
	[FW_SET_LAN] = { "lan_ifaces", NFT_TYPE_IFNAME, IFNAMSIZ, 0,
			 NFT_BYTEORDER_HOST, false },
	[FW_SET_BYPASS4] = { "bypass4", NFT_TYPE_IPADDR, 4, NFT_SET_INTERVAL,
			     NFT_BYTEORDER_BIG, true },
	[FW_SET_BYPASS6] = { "bypass6", NFT_TYPE_IP6ADDR, 16, NFT_SET_INTERVAL,
			     NFT_BYTEORDER_BIG, true },
	[FW_SET_PORTS] = { "bypass_ports", NFT_TYPE_INET_SERVICE, 2, 0,
			   NFT_BYTEORDER_BIG, false },
};

/* fw_diff has one bit per set, in this order. */
_Static_assert(FW_DIFF_LAN_IFACES == 1u << FW_SET_LAN &&
	       FW_DIFF_BYPASS4 == 1u << FW_SET_BYPASS4 &&
	       FW_DIFF_BYPASS6 == 1u << FW_SET_BYPASS6 &&
	       FW_DIFF_BYPASS_PORTS == 1u << FW_SET_PORTS &&
	       FW_DIFF_SETS == (1u << ARRAY_SIZE(fw_sets)) - 1,
	       "fw_diff set bits follow enum fw_set_id");

/* NFTA_SET_ID of set i in a batch (any number unique in the batch). */
#define FW_SET_BATCH_ID(i) ((uint32_t)(i) + 1)

/* The pieces rules are made of; each names its nft syntax. */
enum fw_step {
	FS_END = 0,
	FS_IIF_LAN,          /* iifname @lan_ifaces */
	FS_IIF_NOT_LAN,      /* iifname != @lan_ifaces */
	FS_IIF_NOT_LO,       /* iif != "lo" */
	FS_TCP,              /* meta l4proto tcp */
	FS_NOT_TCP,          /* meta l4proto != tcp */
	FS_MARK,             /* meta mark $MARK */
	FS_DADDR_LOCAL,      /* fib daddr type local */
	FS_DADDR_BYPASS4,    /* ip daddr @bypass4 */
	FS_DADDR_BYPASS6,    /* ip6 daddr @bypass6 */
	FS_DPORT_BYPASS,     /* tcp dport @bypass_ports */
	FS_DPORT_LISTEN,     /* tcp dport $LISTEN_PORT */
	FS_UDP_DPORT_443,    /* udp dport 443 */
	FS_SOCKET_TRANSP,    /* socket transparent 1 */
	FS_COUNTER,          /* counter */
	FS_REDIRECT,         /* redirect to :$LISTEN_PORT */
	FS_TPROXY,           /* tproxy to :$LISTEN_PORT */
	FS_SET_TPROXY_MARK,  /* meta mark set $TPROXY_MARK */
	FS_REJECT,           /* reject */
	FS_RETURN,           /* return */
	FS_ACCEPT,           /* accept */
	FS_DROP,             /* drop */
};

struct fw_rule {
	const char *text; /* as written in nft-rules/mpredir.nft */
	enum fw_step steps[8];
};

/* LAN traffic that is never captured. */
static const struct fw_rule lan_exempt[] = {
	{ "iifname != @lan_ifaces return", { FS_IIF_NOT_LAN, FS_RETURN } },
	{ "meta l4proto != tcp return", { FS_NOT_TCP, FS_RETURN } },
	{ "meta mark $MARK return", { FS_MARK, FS_RETURN } },
	{ "fib daddr type local return", { FS_DADDR_LOCAL, FS_RETURN } },
	{ "ip daddr @bypass4 return", { FS_DADDR_BYPASS4, FS_RETURN } },
	{ "ip6 daddr @bypass6 return", { FS_DADDR_BYPASS6, FS_RETURN } },
	{ "tcp dport @bypass_ports return", { FS_DPORT_BYPASS, FS_RETURN } },
};

/* The router's own traffic that is never captured: the mark test comes
 * first, it keeps the daemon's upstream connections out (no loop). */
static const struct fw_rule router_exempt[] = {
	{ "meta mark $MARK return", { FS_MARK, FS_RETURN } },
	{ "meta l4proto != tcp return", { FS_NOT_TCP, FS_RETURN } },
	{ "fib daddr type local return", { FS_DADDR_LOCAL, FS_RETURN } },
	{ "ip daddr @bypass4 return", { FS_DADDR_BYPASS4, FS_RETURN } },
	{ "ip6 daddr @bypass6 return", { FS_DADDR_BYPASS6, FS_RETURN } },
	{ "tcp dport @bypass_ports return", { FS_DPORT_BYPASS, FS_RETURN } },
};

static const struct fw_rule redirect_capture[] = {
	{ "meta l4proto tcp counter redirect to :$LISTEN_PORT",
	  { FS_TCP, FS_COUNTER, FS_REDIRECT } },
};

static const struct fw_rule tproxy_capture[] = {
	{ "meta l4proto tcp socket transparent 1 meta mark set $TPROXY_MARK accept",
	  { FS_TCP, FS_SOCKET_TRANSP, FS_SET_TPROXY_MARK, FS_ACCEPT } },
	{ "meta l4proto tcp counter tproxy to :$LISTEN_PORT meta mark set $TPROXY_MARK accept",
	  { FS_TCP, FS_COUNTER, FS_TPROXY, FS_SET_TPROXY_MARK, FS_ACCEPT } },
};

static const struct fw_rule quic_block[] = {
	{ "iifname @lan_ifaces udp dport 443 counter reject",
	  { FS_IIF_LAN, FS_UDP_DPORT_443, FS_COUNTER, FS_REJECT } },
};

/* The listener is for the LAN (and the router itself, through lo): a
 * connection to its port from anywhere else (a WAN) is dropped before it
 * reaches it. Redirected and tproxied LAN flows come in on a LAN
 * interface. */
static const struct fw_rule listener_guard[] = {
	{ "iifname != @lan_ifaces iif != \"lo\" tcp dport $LISTEN_PORT counter drop",
	  { FS_IIF_NOT_LAN, FS_IIF_NOT_LO, FS_DPORT_LISTEN, FS_COUNTER,
	    FS_DROP } },
};

struct fw_rules {
	const struct fw_rule *v;
	size_t n;
};
#define FW_RULES(a) { (a), ARRAY_SIZE(a) }

enum fw_when { FW_WHEN_REDIRECT, FW_WHEN_TPROXY, FW_WHEN_ROUTER, FW_WHEN_QUIC,
	       FW_WHEN_ALWAYS };

struct fw_chain_def {
	const char *name;
	const char *type;
	uint32_t hook;
	int32_t prio;
	enum fw_when when;
	struct fw_rules parts[2]; /* rules, in order */
};

/* Chains, in the order they are created (= the order `nft list` prints). */
static const struct fw_chain_def fw_chains[] = {
	{ "prerouting", "nat", NF_INET_PRE_ROUTING, NF_IP_PRI_NAT_DST,
	  FW_WHEN_REDIRECT, { FW_RULES(lan_exempt), FW_RULES(redirect_capture) } },
	{ "prerouting", "filter", NF_INET_PRE_ROUTING, NF_IP_PRI_MANGLE,
	  FW_WHEN_TPROXY, { FW_RULES(lan_exempt), FW_RULES(tproxy_capture) } },
	{ "output", "nat", NF_INET_LOCAL_OUT, NF_IP_PRI_NAT_DST,
	  FW_WHEN_ROUTER, { FW_RULES(router_exempt), FW_RULES(redirect_capture) } },
	{ "forward", "filter", NF_INET_FORWARD, NF_IP_PRI_FILTER,
	  FW_WHEN_QUIC, { FW_RULES(quic_block), { NULL, 0 } } },
	{ "input", "filter", NF_INET_LOCAL_IN, NF_IP_PRI_FILTER,
	  FW_WHEN_ALWAYS, { FW_RULES(listener_guard), { NULL, 0 } } },
};

static bool chain_wanted(const struct fw_chain_def *c,
			 const struct fw_spec *spec)
{
	switch (c->when) {
	case FW_WHEN_REDIRECT: return spec->mode == FW_REDIRECT;
	case FW_WHEN_TPROXY:   return spec->mode == FW_TPROXY;
	case FW_WHEN_ROUTER:   return spec->router_traffic;
	case FW_WHEN_QUIC:     return spec->block_quic;
	case FW_WHEN_ALWAYS:   return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Prefixes and interval elements                                       */

static unsigned family_bytes(int family)
{
	return family == AF_INET ? 4 : 16;
}

/* A closed range of addresses [lo, hi], big-endian, `alen` bytes used. */
struct fw_range {
	uint8_t lo[16], hi[16];
};

/* One set element as nft encodes it. */
struct fw_elem {
	uint8_t key[16];
	uint8_t len;
	bool end;  /* NFT_SET_ELEM_INTERVAL_END */
	bool open; /* the last range runs to the top of the space */
};

/* Bytes beyond the family's length are zero: compare all 16. */
static int range_cmp(const void *a, const void *b)
{
	const struct fw_range *x = a, *y = b;
	return memcmp(x->lo, y->lo, sizeof(x->lo));
}

/* a += 1; true when it wrapped (a was all ones). */
static bool addr_inc(uint8_t *a, unsigned alen)
{
	for (unsigned i = alen; i-- > 0;)
		if (++a[i] != 0)
			return false;
	return true;
}

/* The prefixes of `family` in p[0..n) as nft interval elements: sorted,
 * overlapping and adjacent ranges merged, each range a start element and
 * an end element (first address after it, INTERVAL_END) unless it runs to
 * the top of the address space (then the start is flagged `open`, as nft
 * does). `out` has room for 2 * n elements; returns how many were
 * written, or -ENOMEM. */
static int prefixes_to_elems(int family, const struct addr_prefix *p, size_t n,
			     struct fw_elem *out)
{
	unsigned alen = family_bytes(family), bits = alen * 8;
	struct fw_range *r = n ? calloc(n, sizeof(*r)) : NULL;
	size_t nr = 0, ne = 0;

	if (n && !r)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (p[i].family != family)
			continue;
		unsigned len = p[i].len > bits ? bits : p[i].len;
		memcpy(r[nr].lo, p[i].addr, alen);
		memcpy(r[nr].hi, p[i].addr, alen);
		for (unsigned bit = len; bit < bits; bit++) {
			uint8_t m = (uint8_t)(0x80u >> (bit % 8));
			r[nr].lo[bit / 8] &= (uint8_t)~m;
			r[nr].hi[bit / 8] |= m;
		}
		nr++;
	}
	if (nr > 1)
		qsort(r, nr, sizeof(*r), range_cmp);

	for (size_t i = 0; i < nr;) {
		struct fw_range cur = r[i++];
		uint8_t next[16];
		bool top;

		/* Absorb every range that starts at or before hi + 1. */
		for (;;) {
			memcpy(next, cur.hi, alen);
			top = addr_inc(next, alen);
			if (i == nr || (!top && memcmp(r[i].lo, next, alen) > 0))
				break;
			if (memcmp(r[i].hi, cur.hi, alen) > 0)
				memcpy(cur.hi, r[i].hi, alen);
			i++;
		}
		memcpy(out[ne].key, cur.lo, alen);
		out[ne].len = (uint8_t)alen;
		out[ne].end = false;
		out[ne].open = top;
		ne++;
		if (!top) {
			memcpy(out[ne].key, next, alen);
			out[ne].len = (uint8_t)alen;
			out[ne].end = true;
			out[ne].open = false;
			ne++;
		}
	}
	free(r);
	return (int)ne;
}

/* ------------------------------------------------------------------ */
/* Batches                                                              */

/* A batch being built: the libnftnl pages and, for every message, what it
 * does (to name it in an error). Message i has sequence number seq0 + i;
 * message 0 is BATCH_BEGIN. */
struct fw_batch {
	struct nftnl_batch *nb;
	uint32_t seq0;
	uint32_t n;             /* messages so far */
	char (*what)[FW_WHAT_LEN];
	size_t cap;
	uint32_t create_table;  /* index of the message creating the table */
};

static void batch_init(struct fw_batch *b, struct nftnl_batch *nb,
		       uint32_t seq0)
{
	memset(b, 0, sizeof(*b));
	b->nb = nb;
	b->seq0 = seq0;
}

static void batch_fini(struct fw_batch *b)
{
	free(b->what);
	b->what = NULL;
}

static const char *batch_what(const struct fw_batch *b, uint32_t idx)
{
	return idx < b->n ? b->what[idx] : "?";
}

/* Start message number b->n, described by fmt; the caller writes its
 * payload into the returned header and calls batch_next(). */
static struct nlmsghdr *batch_msg(struct fw_batch *b, uint16_t type,
				  uint16_t flags, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static struct nlmsghdr *batch_msg(struct fw_batch *b, uint16_t type,
				  uint16_t flags, const char *fmt, ...)
{
	va_list ap;

	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		void *w = realloc(b->what, cap * sizeof(*b->what));
		if (!w)
			return NULL;
		b->what = w;
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->what[b->n], FW_WHAT_LEN, fmt, ap);
	va_end(ap);

	uint32_t seq = b->seq0 + b->n;
	char *buf = nftnl_batch_buffer(b->nb);
	/* libmnl/libnftnl leave attribute padding as the buffer had it: zero
	 * the room of one message (a page's overrun, always inside the
	 * buffer) so that no uninitialised byte goes to the kernel */
	memset(buf, 0, FW_BATCH_OVERRUN);
	if (type == NFNL_MSG_BATCH_BEGIN)
		return nftnl_batch_begin(buf, seq);
	if (type == NFNL_MSG_BATCH_END)
		return nftnl_batch_end(buf, seq);
	return nftnl_nlmsg_build_hdr(buf, type, FW_FAMILY, flags | NLM_F_ACK,
				     seq);
}

static int batch_next(struct fw_batch *b)
{
	if (nftnl_batch_update(b->nb) < 0)
		return -ENOMEM;
	b->n++;
	return 0;
}

static int batch_begin(struct fw_batch *b)
{
	if (!batch_msg(b, NFNL_MSG_BATCH_BEGIN, 0, "batch"))
		return -ENOMEM;
	return batch_next(b);
}

static int batch_end(struct fw_batch *b)
{
	if (!batch_msg(b, NFNL_MSG_BATCH_END, 0, "batch end"))
		return -ENOMEM;
	return batch_next(b);
}

/* ------------------------------------------------------------------ */
/* Table, set and chain messages                                        */

enum fw_table_op {
	FW_TABLE_DECLARE, /* NEWTABLE without flags: a no-op if it exists */
	FW_TABLE_DELETE,
	FW_TABLE_CREATE,
};

static int build_table(struct fw_batch *b, enum fw_table_op op, bool owner)
{
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh = NULL;
	int err = -ENOMEM;

	if (!t)
		return -ENOMEM;
	if (nftnl_table_set_str(t, NFTNL_TABLE_NAME, FW_TABLE) < 0)
		goto out;
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, FW_FAMILY);
	switch (op) {
	case FW_TABLE_DECLARE:
		/* No flags attribute: with one, the kernel would try to
		 * change the flags of an existing (owned) table. */
		nlh = batch_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE,
				"declare table inet %s", FW_TABLE);
		break;
	case FW_TABLE_DELETE:
		nlh = batch_msg(b, NFT_MSG_DELTABLE, 0, "delete table inet %s",
				FW_TABLE);
		break;
	case FW_TABLE_CREATE:
		nftnl_table_set_u32(t, NFTNL_TABLE_FLAGS,
				    owner ? NFT_TABLE_F_OWNER : 0);
		b->create_table = b->n;
		nlh = batch_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL,
				"add table inet %s%s", FW_TABLE,
				owner ? " (flags owner)" : "");
		break;
	}
	if (!nlh)
		goto out;
	nftnl_table_nlmsg_build_payload(nlh, t);
	err = batch_next(b);
out:
	nftnl_table_free(t);
	return err;
}

/* nft's set user data: key byte order, and auto-merge. */
static int set_udata(struct nftnl_set *s, const struct fw_set_def *d)
{
	struct nftnl_udata_buf *u = nftnl_udata_buf_alloc(64);
	int err = -ENOMEM;

	if (!u)
		return -ENOMEM;
	if (!nftnl_udata_put_u32(u, NFTNL_UDATA_SET_KEYBYTEORDER, d->byteorder))
		goto out;
	if (d->auto_merge &&
	    !nftnl_udata_put_u32(u, NFTNL_UDATA_SET_MERGE_ELEMENTS, 1))
		goto out;
	if (nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(u),
			       nftnl_udata_buf_len(u)) < 0)
		goto out;
	err = 0;
out:
	nftnl_udata_buf_free(u);
	return err;
}

/* A set object naming set i of the table (for sets and element lists). */
static struct nftnl_set *set_ref(enum fw_set_id i)
{
	struct nftnl_set *s = nftnl_set_alloc();

	if (!s)
		return NULL;
	if (nftnl_set_set_str(s, NFTNL_SET_TABLE, FW_TABLE) < 0 ||
	    nftnl_set_set_str(s, NFTNL_SET_NAME, fw_sets[i].name) < 0) {
		nftnl_set_free(s);
		return NULL;
	}
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, FW_FAMILY);
	nftnl_set_set_u32(s, NFTNL_SET_ID, FW_SET_BATCH_ID(i));
	return s;
}

static int build_set(struct fw_batch *b, enum fw_set_id i)
{
	const struct fw_set_def *d = &fw_sets[i];
	struct nftnl_set *s = set_ref(i);
	struct nlmsghdr *nlh;
	int err;

	if (!s)
		return -ENOMEM;
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, d->flags);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, d->key_type);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, d->key_len);
	err = set_udata(s, d);
	if (err == 0) {
		nlh = batch_msg(b, NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL,
				"add set %s", d->name);
		if (!nlh) {
			err = -ENOMEM;
		} else {
			nftnl_set_nlmsg_build_payload(nlh, s);
			err = batch_next(b);
		}
	}
	nftnl_set_free(s);
	return err;
}

/* nft marks the open-ended last range of an interval set with this
 * element user data (NFTNL_SET_ELEM_F_INTERVAL_OPEN). */
static int elem_open_udata(struct nftnl_set_elem *e)
{
	struct nftnl_udata_buf *u = nftnl_udata_buf_alloc(16);
	int err = -ENOMEM;

	if (!u)
		return -ENOMEM;
	if (nftnl_udata_put_u32(u, NFTNL_UDATA_SET_ELEM_FLAGS,
				NFTNL_SET_ELEM_F_INTERVAL_OPEN) &&
	    nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA,
			       nftnl_udata_buf_data(u),
			       nftnl_udata_buf_len(u)) == 0)
		err = 0;
	nftnl_udata_buf_free(u);
	return err;
}

/* Add (NEWSETELEM) or flush (DELSETELEM, n == 0) elements of set i, in
 * messages of at most FW_ELEMS_PER_MSG elements. */
static int build_elems(struct fw_batch *b, enum fw_set_id i, uint16_t type,
		       const struct fw_elem *el, size_t n)
{
	size_t done = 0;

	do {
		struct nftnl_set *s = set_ref(i);
		size_t chunk = n - done > FW_ELEMS_PER_MSG ? FW_ELEMS_PER_MSG
							    : n - done;
		struct nlmsghdr *nlh;
		int err = 0;

		if (!s)
			return -ENOMEM;
		for (size_t k = 0; k < chunk && err == 0; k++) {
			const struct fw_elem *x = &el[done + k];
			struct nftnl_set_elem *e = nftnl_set_elem_alloc();
			if (!e) {
				err = -ENOMEM;
				break;
			}
			nftnl_set_elem_add(s, e); /* s owns it now */
			if (nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, x->key,
					       x->len) < 0)
				err = -ENOMEM;
			else if (x->end)
				nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS,
						       NFT_SET_ELEM_INTERVAL_END);
			else if (x->open)
				err = elem_open_udata(e);
		}
		if (err == 0) {
			if (type == NFT_MSG_DELSETELEM)
				nlh = batch_msg(b, type, 0, "flush set %s",
						fw_sets[i].name);
			else
				nlh = batch_msg(b, type, NLM_F_CREATE,
						"add elements to set %s",
						fw_sets[i].name);
			if (!nlh) {
				err = -ENOMEM;
			} else {
				nftnl_set_elems_nlmsg_build_payload(nlh, s);
				err = batch_next(b);
			}
		}
		nftnl_set_free(s);
		if (err)
			return err;
		done += chunk;
	} while (done < n);
	return 0;
}

static int build_chain(struct fw_batch *b, const struct fw_chain_def *d)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;
	int err = -ENOMEM;

	if (!c)
		return -ENOMEM;
	if (nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, FW_TABLE) < 0 ||
	    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, d->name) < 0 ||
	    nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, d->type) < 0)
		goto out;
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, FW_FAMILY);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, d->hook);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, d->prio);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nlh = batch_msg(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL,
			"add chain %s", d->name);
	if (!nlh)
		goto out;
	nftnl_chain_nlmsg_build_payload(nlh, c);
	err = batch_next(b);
out:
	nftnl_chain_free(c);
	return err;
}

/* ------------------------------------------------------------------ */
/* Rule expressions                                                     */

/* A new expression appended to r (which frees it), or NULL. */
static struct nftnl_expr *expr_add(struct nftnl_rule *r, const char *name)
{
	struct nftnl_expr *e = nftnl_expr_alloc(name);

	if (e)
		nftnl_rule_add_expr(r, e);
	return e;
}

static int expr_meta_load(struct nftnl_rule *r, uint32_t key)
{
	struct nftnl_expr *e = expr_add(r, "meta");

	if (!e)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
	return 0;
}

static int expr_meta_store(struct nftnl_rule *r, uint32_t key)
{
	struct nftnl_expr *e = expr_add(r, "meta");

	if (!e)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
	return 0;
}

static int expr_cmp(struct nftnl_rule *r, uint32_t op, const void *data,
		    uint32_t len)
{
	struct nftnl_expr *e = expr_add(r, "cmp");

	if (!e)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	return nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len) < 0 ? -ENOMEM
								     : 0;
}

static int expr_cmp_u8(struct nftnl_rule *r, uint32_t op, uint8_t v)
{
	return expr_cmp(r, op, &v, sizeof(v));
}

static int expr_payload(struct nftnl_rule *r, uint32_t base, uint32_t off,
			uint32_t len)
{
	struct nftnl_expr *e = expr_add(r, "payload");

	if (!e)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	return 0;
}

static int expr_lookup(struct nftnl_rule *r, enum fw_set_id set, bool inv)
{
	struct nftnl_expr *e = expr_add(r, "lookup");

	if (!e)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
	if (nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, fw_sets[set].name) < 0)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, FW_SET_BATCH_ID(set));
	if (inv)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
	return 0;
}

static int expr_immediate(struct nftnl_rule *r, const void *data,
			  uint32_t len)
{
	struct nftnl_expr *e = expr_add(r, "immediate");

	if (!e)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
	return nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len) < 0 ? -ENOMEM
								    : 0;
}

static int expr_verdict(struct nftnl_rule *r, int verdict)
{
	struct nftnl_expr *e = expr_add(r, "immediate");

	if (!e)
		return -ENOMEM;
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	return 0;
}

/* Bare expressions with a couple of u32 attributes. */
static int expr_u32s(struct nftnl_rule *r, const char *name, uint16_t a1,
		     uint32_t v1, uint16_t a2, uint32_t v2, uint16_t a3,
		     uint32_t v3)
{
	struct nftnl_expr *e = expr_add(r, name);

	if (!e)
		return -ENOMEM;
	nftnl_expr_set_u32(e, a1, v1);
	nftnl_expr_set_u32(e, a2, v2);
	if (a3)
		nftnl_expr_set_u32(e, a3, v3);
	return 0;
}

static int build_step(struct nftnl_rule *r, enum fw_step step,
		      const struct fw_spec *spec)
{
	uint16_t port = htons(spec->port);
	int err;

	switch (step) {
	case FS_END:
		return 0;
	case FS_IIF_LAN:
	case FS_IIF_NOT_LAN:
		if ((err = expr_meta_load(r, NFT_META_IIFNAME)))
			return err;
		return expr_lookup(r, FW_SET_LAN, step == FS_IIF_NOT_LAN);
	case FS_IIF_NOT_LO: {
		uint32_t lo = 1; /* LOOPBACK_IFINDEX, in every namespace */
		if ((err = expr_meta_load(r, NFT_META_IIF)))
			return err;
		return expr_cmp(r, NFT_CMP_NEQ, &lo, sizeof(lo));
	}
	case FS_TCP:
	case FS_NOT_TCP:
		if ((err = expr_meta_load(r, NFT_META_L4PROTO)))
			return err;
		return expr_cmp_u8(r, step == FS_TCP ? NFT_CMP_EQ : NFT_CMP_NEQ,
				   IPPROTO_TCP);
	case FS_MARK:
		if ((err = expr_meta_load(r, NFT_META_MARK)))
			return err;
		return expr_cmp(r, NFT_CMP_EQ, &spec->mark, sizeof(spec->mark));
	case FS_DADDR_LOCAL: {
		uint32_t local = 2; /* RTN_LOCAL */
		if ((err = expr_u32s(r, "fib", NFTNL_EXPR_FIB_DREG, NFT_REG_1,
				     NFTNL_EXPR_FIB_RESULT,
				     NFT_FIB_RESULT_ADDRTYPE,
				     NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR)))
			return err;
		return expr_cmp(r, NFT_CMP_EQ, &local, sizeof(local));
	}
	case FS_DADDR_BYPASS4:
	case FS_DADDR_BYPASS6: {
		bool v4 = step == FS_DADDR_BYPASS4;
		if ((err = expr_meta_load(r, NFT_META_NFPROTO)) ||
		    (err = expr_cmp_u8(r, NFT_CMP_EQ,
				       v4 ? NFPROTO_IPV4 : NFPROTO_IPV6)) ||
		    (err = expr_payload(r, NFT_PAYLOAD_NETWORK_HEADER,
					v4 ? 16 : 24, v4 ? 4 : 16)))
			return err;
		return expr_lookup(r, v4 ? FW_SET_BYPASS4 : FW_SET_BYPASS6,
				   false);
	}
	case FS_DPORT_BYPASS:
		if ((err = build_step(r, FS_TCP, spec)) ||
		    (err = expr_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)))
			return err;
		return expr_lookup(r, FW_SET_PORTS, false);
	case FS_DPORT_LISTEN:
		if ((err = build_step(r, FS_TCP, spec)) ||
		    (err = expr_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)))
			return err;
		return expr_cmp(r, NFT_CMP_EQ, &port, sizeof(port));
	case FS_UDP_DPORT_443: {
		uint16_t https = htons(443);
		if ((err = expr_meta_load(r, NFT_META_L4PROTO)) ||
		    (err = expr_cmp_u8(r, NFT_CMP_EQ, IPPROTO_UDP)) ||
		    (err = expr_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)))
			return err;
		return expr_cmp(r, NFT_CMP_EQ, &https, sizeof(https));
	}
	case FS_SOCKET_TRANSP:
		if ((err = expr_u32s(r, "socket", NFTNL_EXPR_SOCKET_KEY,
				     NFT_SOCKET_TRANSPARENT,
				     NFTNL_EXPR_SOCKET_DREG, NFT_REG_1, 0, 0)))
			return err;
		return expr_cmp_u8(r, NFT_CMP_EQ, 1);
	case FS_COUNTER:
		return expr_add(r, "counter") ? 0 : -ENOMEM;
	case FS_REDIRECT:
		if ((err = expr_immediate(r, &port, sizeof(port))))
			return err;
		return expr_u32s(r, "redir", NFTNL_EXPR_REDIR_REG_PROTO_MIN,
				 NFT_REG_1, NFTNL_EXPR_REDIR_FLAGS,
				 NF_NAT_RANGE_PROTO_SPECIFIED, 0, 0);
	case FS_TPROXY:
		/* No family: one rule for IPv4 and IPv6 (inet tables). */
		if ((err = expr_immediate(r, &port, sizeof(port))))
			return err;
		return expr_u32s(r, "tproxy", NFTNL_EXPR_TPROXY_FAMILY,
				 NFPROTO_UNSPEC, NFTNL_EXPR_TPROXY_REG_PORT,
				 NFT_REG_1, 0, 0);
	case FS_SET_TPROXY_MARK:
		if ((err = expr_immediate(r, &spec->tproxy_mark,
					  sizeof(spec->tproxy_mark))))
			return err;
		return expr_meta_store(r, NFT_META_MARK);
	case FS_REJECT:
		return expr_u32s(r, "reject", NFTNL_EXPR_REJECT_TYPE,
				 NFT_REJECT_ICMPX_UNREACH, NFTNL_EXPR_REJECT_CODE,
				 NFT_REJECT_ICMPX_PORT_UNREACH, 0, 0);
	case FS_RETURN:
		return expr_verdict(r, NFT_RETURN);
	case FS_ACCEPT:
		return expr_verdict(r, NF_ACCEPT);
	case FS_DROP:
		return expr_verdict(r, NF_DROP);
	}
	return -EINVAL;
}

static int build_rule(struct fw_batch *b, const struct fw_chain_def *c,
		      const struct fw_rule *rd, const struct fw_spec *spec)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	struct nlmsghdr *nlh;
	int err = -ENOMEM;

	if (!r)
		return -ENOMEM;
	if (nftnl_rule_set_str(r, NFTNL_RULE_TABLE, FW_TABLE) < 0 ||
	    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, c->name) < 0)
		goto out;
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, FW_FAMILY);
	err = 0;
	for (size_t i = 0; i < ARRAY_SIZE(rd->steps) && rd->steps[i] && !err;
	     i++)
		err = build_step(r, rd->steps[i], spec);
	if (err)
		goto out;
	nlh = batch_msg(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
			"add rule %s \"%s\"", c->name, rd->text);
	if (!nlh) {
		err = -ENOMEM;
		goto out;
	}
	nftnl_rule_nlmsg_build_payload(nlh, r);
	err = batch_next(b);
out:
	nftnl_rule_free(r);
	return err;
}

/* ------------------------------------------------------------------ */
/* Whole transactions                                                   */

static int spec_check(const struct fw_spec *spec, char *errbuf,
		      size_t errlen)
{
#define BAD(...) do { if (errbuf && errlen) snprintf(errbuf, errlen, __VA_ARGS__); \
		      return -EINVAL; } while (0)
	if (!spec)
		BAD("nftables: no specification");
	if (spec->mode != FW_REDIRECT && spec->mode != FW_TPROXY)
		BAD("nftables: unknown mode %d", (int)spec->mode);
	if (spec->port == 0)
		BAD("nftables: listener port 0");
	if (spec->mark == 0)
		BAD("nftables: mark 0 would exempt all unmarked traffic");
	if (spec->mode == FW_TPROXY &&
	    (spec->tproxy_mark == 0 || spec->tproxy_mark == spec->mark))
		BAD("nftables: tproxy mark 0x%x must be non-zero and differ "
		    "from the mark 0x%x", spec->tproxy_mark, spec->mark);
	if ((spec->n_lan_ifaces && !spec->lan_ifaces) ||
	    (spec->n_bypass_ports && !spec->bypass_ports) ||
	    (spec->n_bypass && !spec->bypass))
		BAD("nftables: a list without elements");
	for (size_t i = 0; i < spec->n_lan_ifaces; i++) {
		const char *n = spec->lan_ifaces[i];
		if (!n || !*n || strlen(n) >= IFNAMSIZ)
			BAD("nftables: \"%s\" is not an interface name",
			    n ? n : "(null)");
	}
	for (size_t i = 0; i < spec->n_bypass; i++) {
		const struct addr_prefix *p = &spec->bypass[i];
		if ((p->family != AF_INET && p->family != AF_INET6) ||
		    p->len > family_bytes(p->family) * 8)
			BAD("nftables: bypass[%zu] is not an IPv4 or IPv6 prefix",
			    i);
	}
	return 0;
#undef BAD
}

/* Elements of set i for spec (bypass sets from `bypass`, n). *out is
 * malloc'ed; returns the count or -ENOMEM. */
static int spec_elems(enum fw_set_id i, const struct fw_spec *spec,
		      const struct addr_prefix *bypass, size_t n,
		      struct fw_elem **out)
{
	struct fw_elem *el;
	size_t cnt = 0;

	switch (i) {
	case FW_SET_LAN:
		el = calloc(spec->n_lan_ifaces + 1, sizeof(*el));
		if (!el)
			return -ENOMEM;
		for (size_t k = 0; k < spec->n_lan_ifaces; k++) {
			const char *name = spec->lan_ifaces[k];
			bool dup = false;
			for (size_t j = 0; j < k && !dup; j++)
				dup = strcmp(spec->lan_ifaces[j], name) == 0;
			if (dup)
				continue;
			memcpy(el[cnt].key, name, strlen(name)); /* 0-padded */
			el[cnt++].len = IFNAMSIZ;
		}
		break;
	case FW_SET_PORTS:
		el = calloc(spec->n_bypass_ports + 1, sizeof(*el));
		if (!el)
			return -ENOMEM;
		for (size_t k = 0; k < spec->n_bypass_ports; k++) {
			uint16_t be = htons(spec->bypass_ports[k]);
			bool dup = false;
			for (size_t j = 0; j < k && !dup; j++)
				dup = spec->bypass_ports[j] == spec->bypass_ports[k];
			if (dup)
				continue;
			memcpy(el[cnt].key, &be, 2);
			el[cnt++].len = 2;
		}
		break;
	case FW_SET_BYPASS4:
	case FW_SET_BYPASS6: {
		int r;
		el = calloc(2 * n + 1, sizeof(*el));
		if (!el)
			return -ENOMEM;
		r = prefixes_to_elems(i == FW_SET_BYPASS4 ? AF_INET : AF_INET6,
				      bypass, n, el);
		if (r < 0) {
			free(el);
			return r;
		}
		cnt = (size_t)r;
		break;
	}
	default:
		return -EINVAL;
	}
	*out = el;
	return (int)cnt;
}

static int add_spec_elems(struct fw_batch *b, enum fw_set_id i,
			  const struct fw_spec *spec,
			  const struct addr_prefix *bypass, size_t n)
{
	struct fw_elem *el = NULL;
	int cnt = spec_elems(i, spec, bypass, n, &el);
	int err = 0;

	if (cnt < 0)
		return cnt;
	if (cnt > 0)
		err = build_elems(b, i, NFT_MSG_NEWSETELEM, el, (size_t)cnt);
	free(el);
	return err;
}

static int build_install(struct fw_batch *b, const struct fw_spec *spec,
			 bool owner)
{
	int err;

	if ((err = batch_begin(b)) ||
	    (err = build_table(b, FW_TABLE_DECLARE, false)) ||
	    (err = build_table(b, FW_TABLE_DELETE, false)) ||
	    (err = build_table(b, FW_TABLE_CREATE, owner)))
		return err;
	for (size_t i = 0; i < ARRAY_SIZE(fw_sets); i++)
		if ((err = build_set(b, (enum fw_set_id)i)))
			return err;
	for (size_t i = 0; i < ARRAY_SIZE(fw_sets); i++)
		if ((err = add_spec_elems(b, (enum fw_set_id)i, spec,
					  spec->bypass, spec->n_bypass)))
			return err;
	for (size_t c = 0; c < ARRAY_SIZE(fw_chains); c++) {
		const struct fw_chain_def *d = &fw_chains[c];
		if (!chain_wanted(d, spec))
			continue;
		if ((err = build_chain(b, d)))
			return err;
		for (size_t p = 0; p < ARRAY_SIZE(d->parts); p++)
			for (size_t r = 0; r < d->parts[p].n; r++)
				if ((err = build_rule(b, d, &d->parts[p].v[r],
						      spec)))
					return err;
	}
	return batch_end(b);
}

/* Replace the elements of the sets in `sets` (FW_DIFF_SETS bits) with
 * spec's: per set, a flush and the whole new list, in one transaction. The
 * table, its sets, chains and rules stay (same handles, counters keep
 * counting), and a packet meets either the old list or the new one.
 *
 * Why not element-level adds and deletes: on the interval sets (bypass4,
 * bypass6) a prefix that appears or goes merges or splits neighbouring
 * ranges, i.e. moves start and end elements that belong to other
 * prefixes, and how the kernel checks overlaps between interval elements
 * added and removed in one transaction has changed across versions (the
 * rbtree set's overlap detection was rewritten in 2023): a delta that one
 * kernel takes, another may refuse. A flush + add is what `nft flush set`
 * + `add element` does on every kernel, and the lists are small (a few
 * hundred elements at most). */
static int build_sets(struct fw_batch *b, const struct fw_spec *spec,
		      unsigned sets)
{
	int err;

	if ((err = batch_begin(b)))
		return err;
	for (size_t i = 0; i < ARRAY_SIZE(fw_sets); i++) {
		if (!(sets & (1u << i)))
			continue;
		if ((err = build_elems(b, (enum fw_set_id)i, NFT_MSG_DELSETELEM,
				       NULL, 0)) ||
		    (err = add_spec_elems(b, (enum fw_set_id)i, spec,
					  spec->bypass, spec->n_bypass)))
			return err;
	}
	return batch_end(b);
}

/* ------------------------------------------------------------------ */
/* Differences                                                          */

/* Elements compare by every field: sets do not care for order. */
static int elem_cmp(const void *a, const void *b)
{
	const struct fw_elem *x = a, *y = b;
	int c = memcmp(x->key, y->key, sizeof(x->key)); /* 0-padded */

	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	if (x->end != y->end)
		return x->end ? 1 : -1;
	if (x->open != y->open)
		return x->open ? 1 : -1;
	return 0;
}

/* Set i's elements for spec, sorted. *out is malloc'ed; count or -ENOMEM. */
static int sorted_elems(enum fw_set_id i, const struct fw_spec *spec,
			struct fw_elem **out)
{
	int n = spec_elems(i, spec, spec->bypass, spec->n_bypass, out);

	if (n > 1)
		qsort(*out, (size_t)n, sizeof(**out), elem_cmp);
	return n;
}

/* 1 if set i holds other elements for b than for a, 0 if the same,
 * -ENOMEM. */
static int set_differs(enum fw_set_id i, const struct fw_spec *a,
		       const struct fw_spec *b)
{
	struct fw_elem *ea = NULL, *eb = NULL;
	int na = sorted_elems(i, a, &ea), nb = -ENOMEM, r;

	if (na >= 0)
		nb = sorted_elems(i, b, &eb);
	if (na < 0 || nb < 0)
		r = -ENOMEM;
	else if (na != nb)
		r = 1;
	else
		r = 0;
	for (int k = 0; r == 0 && k < na; k++)
		r = elem_cmp(&ea[k], &eb[k]) != 0;
	free(ea);
	free(eb);
	return r;
}

/* The settings that chain_wanted() and build_step() read: any difference
 * changes chains or rules. What the sets hold is not among them: every
 * rule is built whatever the sets hold, empty or not (test_fw checks that
 * this agrees with the rules built). */
static unsigned chains_diff(const struct fw_spec *a, const struct fw_spec *b)
{
	unsigned d = 0;

	if (a->mode != b->mode)
		d |= FW_DIFF_MODE;
	if (a->port != b->port)
		d |= FW_DIFF_PORT;
	if (a->mark != b->mark)
		d |= FW_DIFF_MARK;
	/* only the tproxy chain's rules carry it */
	if (a->mode == FW_TPROXY && b->mode == FW_TPROXY &&
	    a->tproxy_mark != b->tproxy_mark)
		d |= FW_DIFF_TPROXY_MARK;
	if (a->router_traffic != b->router_traffic)
		d |= FW_DIFF_ROUTER_TRAFFIC;
	if (a->block_quic != b->block_quic)
		d |= FW_DIFF_BLOCK_QUIC;
	return d;
}

int fw_spec_diff(const struct fw_spec *old, const struct fw_spec *spec)
{
	unsigned d;
	int err;

	if ((err = spec_check(old, NULL, 0)) || (err = spec_check(spec, NULL, 0)))
		return err;
	d = chains_diff(old, spec);
	for (size_t i = 0; i < ARRAY_SIZE(fw_sets); i++) {
		int r = set_differs((enum fw_set_id)i, old, spec);
		if (r < 0)
			return r;
		if (r)
			d |= 1u << i;
	}
	return (int)d;
}

/* Names of the fw_diff bits past the sets' (theirs are fw_sets' names):
 * the settings as the configuration calls them. */
static const char *const diff_settings[] = {
	"mode", "port", "mark", "tproxy_mark", "router_traffic", "block_quic",
	"table missing",
};
_Static_assert(FW_DIFF_NO_TABLE ==
	       1u << (ARRAY_SIZE(fw_sets) + ARRAY_SIZE(diff_settings) - 1),
	       "a name for every fw_diff bit");

const char *fw_diff_str(unsigned diff, char *buf, size_t len)
{
	size_t n_bits = ARRAY_SIZE(fw_sets) + ARRAY_SIZE(diff_settings);
	size_t used = 0;

	if (!len)
		return buf;
	buf[0] = '\0';
	for (size_t bit = 0; bit < n_bits; bit++) {
		if (!(diff & (1u << bit)))
			continue;
		const char *name = bit < ARRAY_SIZE(fw_sets) ? fw_sets[bit].name
				   : diff_settings[bit - ARRAY_SIZE(fw_sets)];
		int r = snprintf(buf + used, len - used, "%s%s",
				 used ? ", " : "", name);
		if (r < 0 || (size_t)r >= len - used) {
			buf[used] = '\0'; /* whole names only */
			break;
		}
		used += (size_t)r;
	}
	return buf;
}

int fw_build_install_batch(struct nftnl_batch *nb, const struct fw_spec *spec,
			   uint32_t seq, bool owner)
{
	struct fw_batch b;
	int err = spec_check(spec, NULL, 0);

	if (err)
		return err;
	batch_init(&b, nb, seq);
	err = build_install(&b, spec, owner);
	batch_fini(&b);
	return err ? err : (int)b.n;
}

int fw_build_sets_batch(struct nftnl_batch *nb, const struct fw_spec *spec,
			unsigned sets, uint32_t seq)
{
	struct fw_batch b;
	int err = spec_check(spec, NULL, 0);

	if (err)
		return err;
	batch_init(&b, nb, seq);
	err = build_sets(&b, spec, sets & FW_DIFF_SETS);
	batch_fini(&b);
	return err ? err : (int)b.n;
}

/* ------------------------------------------------------------------ */
/* The module                                                           */

enum fw_todo { FW_TODO_NONE, FW_TODO_CHECK, FW_TODO_REINSTALL };

/* The last installed spec, with copies of everything it points to. */
struct fw_saved {
	struct fw_spec spec;
	char **ifaces;
	uint16_t *ports;
	struct addr_prefix *bypass;
};

struct fw {
	struct ev_loop *loop;
	struct mnl_socket *nl;    /* changes and queries; owns the table */
	struct mnl_socket *ev_nl; /* NFNLGRP_NFTABLES events */
	uint32_t portid;          /* nl's: the requester in our own events */
	uint32_t seq;
	ev_io ev_watcher;         /* ev_nl readable */
	ev_timer timer;           /* delayed reinstall / check */
	enum fw_todo todo;
	double retry_s;           /* next delay after a failed reinstall */
	struct log_limit overrun_limit;
	bool owner_supported;     /* false once the kernel refused the flag */
	bool has_owner;           /* the installed table has it */
	bool installed;
	struct fw_saved saved;
	char ack_buf[FW_BUF_SIZE];
	char ev_buf[FW_BUF_SIZE];
};

static void saved_free(struct fw_saved *s)
{
	if (s->ifaces)
		for (size_t i = 0; i < s->spec.n_lan_ifaces; i++)
			free(s->ifaces[i]);
	free(s->ifaces);
	free(s->ports);
	free(s->bypass);
	memset(s, 0, sizeof(*s));
}

static int saved_copy(struct fw_saved *d, const struct fw_spec *spec)
{
	memset(d, 0, sizeof(*d));
	d->spec = *spec;
	d->spec.n_lan_ifaces = 0;
	d->ifaces = calloc(spec->n_lan_ifaces + 1, sizeof(*d->ifaces));
	d->ports = calloc(spec->n_bypass_ports + 1, sizeof(*d->ports));
	d->bypass = calloc(spec->n_bypass + 1, sizeof(*d->bypass));
	if (!d->ifaces || !d->ports || !d->bypass)
		goto fail;
	for (size_t i = 0; i < spec->n_lan_ifaces; i++) {
		d->ifaces[i] = strdup(spec->lan_ifaces[i]);
		if (!d->ifaces[i])
			goto fail;
		d->spec.n_lan_ifaces = i + 1;
	}
	if (spec->n_bypass_ports)
		memcpy(d->ports, spec->bypass_ports,
		       spec->n_bypass_ports * sizeof(*d->ports));
	if (spec->n_bypass)
		memcpy(d->bypass, spec->bypass,
		       spec->n_bypass * sizeof(*d->bypass));
	d->spec.lan_ifaces = (const char *const *)d->ifaces;
	d->spec.bypass_ports = d->ports;
	d->spec.bypass = d->bypass;
	return 0;
fail:
	saved_free(d);
	return -ENOMEM;
}

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!errbuf || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

static int sock_int(struct mnl_socket *nl, int level, int opt, int val)
{
	return setsockopt(mnl_socket_get_fd(nl), level, opt, &val, sizeof(val));
}

/* Make room for `need` bytes in a socket buffer: SO_xxxBUFFORCE (root)
 * or the sysctl-capped SO_xxxBUF. */
static int sock_buf(struct mnl_socket *nl, int opt, int force_opt, int need)
{
	int cur = 0;
	socklen_t len = sizeof(cur);

	if (getsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, opt, &cur, &len) < 0)
		return -errno;
	if (cur >= need)
		return 0;
	if (sock_int(nl, SOL_SOCKET, force_opt, need) == 0 ||
	    sock_int(nl, SOL_SOCKET, opt, need) == 0)
		return 0;
	return -errno;
}

/* What the acknowledgements of one request said. */
struct ack_state {
	uint32_t seq0, n;        /* messages seq0 .. seq0 + n - 1 */
	uint32_t expected, got;  /* acks */
	int err;                 /* first error (-errno), 0 */
	uint32_t err_idx;        /* its message */
	char kmsg[128];          /* the kernel's extended ack message */
	mnl_cb_t data_cb;        /* replies other than acks (may be NULL) */
	void *data;
};

static int ack_cb(const struct nlmsghdr *nlh, void *data)
{
	struct ack_state *a = data;
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	uint32_t idx = nlh->nlmsg_seq - a->seq0;

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
		return MNL_CB_OK; /* malformed: not ours to count */
	if (idx >= a->n)
		return MNL_CB_OK; /* a late ack of an earlier request */
	a->got++;
	if (e->error == 0 || a->err)
		return MNL_CB_OK;
	a->err = e->error < 0 ? e->error : -e->error;
	a->err_idx = idx;
	/* Extended ack TLVs follow the (capped) original message. */
	if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
		size_t off = sizeof(*e);
		if (!(nlh->nlmsg_flags & NLM_F_CAPPED) &&
		    e->msg.nlmsg_len >= sizeof(e->msg))
			off += e->msg.nlmsg_len - sizeof(e->msg);
		if (mnl_nlmsg_size(MNL_ALIGN(off)) > nlh->nlmsg_len)
			return MNL_CB_OK;
		const struct nlattr *attr;
		mnl_attr_for_each(attr, nlh, MNL_ALIGN(off)) {
			if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
			    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) {
				snprintf(a->kmsg, sizeof(a->kmsg), "%s",
					 mnl_attr_get_str(attr));
				break;
			}
		}
	}
	return MNL_CB_OK;
}

static int reply_cb(const struct nlmsghdr *nlh, void *data)
{
	struct ack_state *a = data;

	if (nlh->nlmsg_seq - a->seq0 >= a->n || !a->data_cb)
		return MNL_CB_OK;
	return a->data_cb(nlh, a->data);
}

/* Read the acknowledgements of the request just sent, up to the last one
 * (or a batch-level error). The kernel queues them before sendmsg()
 * returns; waiting is only a guard. 0 or -errno (reading failed). */
static int read_acks(struct fw *fw, struct ack_state *a)
{
	static mnl_cb_t ctl[NLMSG_MIN_TYPE] = { [NLMSG_ERROR] = ack_cb };
	int fd = mnl_socket_get_fd(fw->nl);

	while (a->got < a->expected && !(a->err && a->err_idx == 0)) {
		ssize_t len = recv(fd, fw->ack_buf, sizeof(fw->ack_buf),
				   MSG_DONTWAIT);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int r = poll(&pfd, 1, FW_ACK_WAIT_MS);
			if (r < 0 && errno != EINTR)
				return -errno;
			if (r == 0)
				return -ETIMEDOUT;
			continue;
		}
		if (!nl_buf_ok(fw->ack_buf, (size_t)len))
			return -EBADMSG; /* libmnl could not walk it safely */
		errno = 0;
		if (mnl_cb_run2(fw->ack_buf, (size_t)len, 0, fw->portid,
				reply_cb, a, ctl, ARRAY_SIZE(ctl)) < 0)
			return errno ? -errno : -EPROTO;
	}
	return 0;
}

static int send_iov(struct fw *fw, struct iovec *iov, size_t n_iov)
{
	struct sockaddr_nl snl = { .nl_family = AF_NETLINK };
	struct msghdr msg = {
		.msg_name = &snl, .msg_namelen = sizeof(snl),
		.msg_iov = iov, .msg_iovlen = n_iov,
	};
	size_t total = 0;
	int err;

	for (size_t i = 0; i < n_iov; i++)
		total += iov[i].iov_len;
	if (total > INT32_MAX / 2)
		return -EMSGSIZE;
	/* The whole batch goes in one sendmsg(): the socket's send buffer
	 * must hold it. */
	if ((err = sock_buf(fw->nl, SO_SNDBUF, SO_SNDBUFFORCE,
			    (int)total + 4096)))
		return err;
	for (;;) {
		ssize_t r = sendmsg(mnl_socket_get_fd(fw->nl), &msg, 0);
		if (r >= 0)
			return (size_t)r == total ? 0 : -EMSGSIZE;
		if (errno != EINTR)
			return -errno;
	}
}

/* Send a built batch and read every acknowledgement. 0 or -errno with a
 * message naming the refused object in errbuf; *failed gets the index of
 * the refused message (or UINT32_MAX). */
static int batch_talk(struct fw *fw, struct fw_batch *b, uint32_t *failed,
		      char *errbuf, size_t errlen)
{
	int n_iov = nftnl_batch_iovec_len(b->nb);
	struct iovec *iov = calloc((size_t)n_iov, sizeof(*iov));
	struct ack_state a = {
		.seq0 = b->seq0, .n = b->n,
		.expected = b->n >= 2 ? b->n - 2 : 0, /* not BEGIN, END */
	};
	int err;

	*failed = UINT32_MAX;
	if (!iov) {
		set_err(errbuf, errlen, "nftables: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	nftnl_batch_iovec(b->nb, iov, (uint32_t)n_iov);
	/* Room for every ack (each one its own skb). */
	if ((err = sock_buf(fw->nl, SO_RCVBUF, SO_RCVBUFFORCE,
			    (int)(a.expected * 2048 + 65536))) ||
	    (err = send_iov(fw, iov, (size_t)n_iov))) {
		free(iov);
		set_err(errbuf, errlen, "nftables: sending %u messages: %s",
			b->n, strerror(-err));
		return err;
	}
	free(iov);
	err = read_acks(fw, &a);
	if (a.err) {
		*failed = a.err_idx;
		const char *hint = "";
		if (a.err == -EPERM && a.err_idx != 0 && a.err_idx < b->create_table)
			hint = " (another process owns the table: is another "
			       "mpredir running?)";
		set_err(errbuf, errlen, "nftables: %s: %s%s%s%s%s",
			batch_what(b, a.err_idx), strerror(-a.err),
			a.kmsg[0] ? " (kernel: " : "", a.kmsg,
			a.kmsg[0] ? ")" : "", hint);
		return a.err;
	}
	if (err) {
		set_err(errbuf, errlen, "nftables: reading acknowledgements: %s",
			strerror(-err));
		return err;
	}
	if (a.got < a.expected) {
		set_err(errbuf, errlen,
			"nftables: %u of %u acknowledgements received",
			a.got, a.expected);
		return -EPROTO;
	}
	return 0;
}

static uint32_t next_seq(struct fw *fw, uint32_t n)
{
	uint32_t s = fw->seq;
	fw->seq += n;
	return s;
}

/* Build and send one transaction: the whole table for spec (sets == 0),
 * or the elements of the sets named in `sets` (FW_DIFF_SETS bits). */
static int transact(struct fw *fw, const struct fw_spec *spec, unsigned sets,
		    bool owner, uint32_t *failed, uint32_t *create_table,
		    char *errbuf, size_t errlen)
{
	struct nftnl_batch *nb = nftnl_batch_alloc(FW_BATCH_PAGE,
						   FW_BATCH_OVERRUN);
	struct fw_batch b;
	int err;

	*failed = UINT32_MAX;
	if (!nb) {
		set_err(errbuf, errlen, "nftables: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	batch_init(&b, nb, fw->seq);
	if (sets)
		err = build_sets(&b, spec, sets);
	else
		err = build_install(&b, spec, owner);
	next_seq(fw, b.n + 1);
	if (err)
		set_err(errbuf, errlen, "nftables: building the batch: %s",
			strerror(-err));
	else
		err = batch_talk(fw, &b, failed, errbuf, errlen);
	*create_table = b.create_table;
	batch_fini(&b);
	nftnl_batch_free(nb);
	return err;
}

static int install(struct fw *fw, const struct fw_spec *spec, char *errbuf,
		   size_t errlen)
{
	uint32_t failed, create_table;
	bool owner = fw->owner_supported;
	int err;

	err = transact(fw, spec, 0, owner, &failed, &create_table, errbuf,
		       errlen);
	if (owner && (err == -EOPNOTSUPP || err == -EINVAL) &&
	    failed == create_table) {
		log_warn("nftables: the kernel refused the owner flag (%s): "
			 "table inet %s will outlive mpredir if it is killed",
			 strerror(-err), FW_TABLE);
		fw->owner_supported = false;
		owner = false;
		err = transact(fw, spec, 0, false, &failed, &create_table,
			       errbuf, errlen);
	}
	if (err == 0) {
		fw->has_owner = owner;
		fw->installed = true;
	}
	return err;
}

static void cancel_pending(struct fw *fw)
{
	fw->todo = FW_TODO_NONE;
	fw->retry_s = 0;
	ev_timer_stop(fw->loop, &fw->timer);
}

int fw_install(struct fw *fw, const struct fw_spec *spec, char *errbuf,
	       size_t errlen)
{
	struct fw_saved copy;
	int err;

	if (!fw) {
		set_err(errbuf, errlen, "nftables: not open");
		return -EINVAL;
	}
	if ((err = spec_check(spec, errbuf, errlen)))
		return err;
	if (saved_copy(&copy, spec) < 0) {
		set_err(errbuf, errlen, "nftables: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	err = install(fw, &copy.spec, errbuf, errlen);
	if (err) {
		saved_free(&copy);
		return err;
	}
	saved_free(&fw->saved);
	fw->saved = copy;
	cancel_pending(fw);
	return 0;
}

int fw_update(struct fw *fw, const struct fw_spec *spec, unsigned *diff,
	      char *errbuf, size_t errlen)
{
	struct fw_saved copy;
	uint32_t failed, create_table;
	int d, err;

	*diff = 0;
	if (!fw) {
		set_err(errbuf, errlen, "nftables: not open");
		return -EINVAL;
	}
	if ((err = spec_check(spec, errbuf, errlen)))
		return err;
	/* Nothing to compare with: never installed, or someone removed it
	 * (or may have: lost events) and it is not back yet. */
	if (!fw->installed || fw->todo != FW_TODO_NONE) {
		*diff = FW_DIFF_NO_TABLE;
		return fw_install(fw, spec, errbuf, errlen);
	}
	d = fw_spec_diff(&fw->saved.spec, spec);
	if (d < 0) {
		set_err(errbuf, errlen, "nftables: comparing: %s", strerror(-d));
		return d;
	}
	*diff = (unsigned)d;
	if (*diff & FW_DIFF_REBUILD)
		return fw_install(fw, spec, errbuf, errlen);
	/* Even when nothing is sent the spec is kept: it may differ in what
	 * does not show in the table (order, tproxy_mark in redirect mode),
	 * and a reinstall must build the new one. */
	if (saved_copy(&copy, spec) < 0) {
		set_err(errbuf, errlen, "nftables: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	if (*diff) {
		err = transact(fw, &copy.spec, *diff, false, &failed,
			       &create_table, errbuf, errlen);
		if (err) {
			saved_free(&copy);
			if (err != -ENOENT)
				return err;
			/* removed just now, its event not read yet */
			*diff = FW_DIFF_NO_TABLE;
			return fw_install(fw, spec, errbuf, errlen);
		}
	}
	saved_free(&fw->saved);
	fw->saved = copy;
	return 0;
}

bool fw_has_owner(const struct fw *fw)
{
	return fw && fw->installed && fw->has_owner;
}

/* ------------------------------------------------------------------ */
/* Watching for removal                                                 */

static void schedule(struct fw *fw, enum fw_todo todo, double delay)
{
	if (todo > fw->todo)
		fw->todo = todo;
	if (!ev_is_active(&fw->timer)) {
		ev_timer_set(&fw->timer, delay, 0.);
		ev_timer_start(fw->loop, &fw->timer);
	}
}

static int table_reply_cb(const struct nlmsghdr *nlh, void *data)
{
	bool *exists = data;

	if (NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWTABLE)
		*exists = true;
	return MNL_CB_OK;
}

/* 1 if table inet mpredir exists, 0 if not, -errno. */
static int table_exists(struct fw *fw)
{
	char buf[256];
	struct nftnl_table *t = nftnl_table_alloc();
	bool exists = false;
	uint32_t seq = next_seq(fw, 1);
	struct ack_state a = { .seq0 = seq, .n = 1, .expected = 1,
			       .data_cb = table_reply_cb, .data = &exists };
	struct nlmsghdr *nlh;
	int err;

	if (!t)
		return -ENOMEM;
	if (nftnl_table_set_str(t, NFTNL_TABLE_NAME, FW_TABLE) < 0) {
		nftnl_table_free(t);
		return -ENOMEM;
	}
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, FW_FAMILY, NLM_F_ACK,
				    seq);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	struct iovec iov = { .iov_base = nlh, .iov_len = nlh->nlmsg_len };
	if ((err = send_iov(fw, &iov, 1)) || (err = read_acks(fw, &a)))
		return err;
	if (a.err == -ENOENT)
		return 0;
	if (a.err)
		return a.err;
	return exists ? 1 : 0;
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fw *fw = container_of(w, struct fw, timer);
	enum fw_todo todo = fw->todo;
	char err[256];
	int r;

	(void)loop;
	(void)revents;
	fw->todo = FW_TODO_NONE;
	if (!fw->installed)
		return;
	if (todo == FW_TODO_CHECK) {
		r = table_exists(fw);
		if (r > 0)
			return;
		if (r < 0) {
			log_error("nftables: checking table inet %s: %s",
				  FW_TABLE, strerror(-r));
			schedule(fw, FW_TODO_CHECK, 1.0);
			return;
		}
		log_warn("nftables: table inet %s was removed by someone else; "
			 "reinstalling", FW_TABLE);
	} else if (todo != FW_TODO_REINSTALL) {
		return;
	}
	r = install(fw, &fw->saved.spec, err, sizeof(err));
	if (r == 0) {
		fw->retry_s = 0;
		log_debug("nftables: table inet %s reinstalled", FW_TABLE);
		return;
	}
	fw->retry_s = fw->retry_s ? fw->retry_s * 2 : 1.0;
	if (fw->retry_s > FW_RETRY_MAX_S)
		fw->retry_s = FW_RETRY_MAX_S;
	log_error("%s; retrying in %.0f s", err, fw->retry_s);
	schedule(fw, FW_TODO_REINSTALL, fw->retry_s);
}

static int table_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);

	if (mnl_attr_type_valid(attr, NFTA_TABLE_MAX) < 0)
		return MNL_CB_OK; /* newer than us: skip */
	if (type == NFTA_TABLE_NAME &&
	    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0)
		return MNL_CB_OK;
	tb[type] = attr;
	return MNL_CB_OK;
}

static int event_cb(const struct nlmsghdr *nlh, void *data)
{
	struct fw *fw = data;
	const struct nlattr *tb[NFTA_TABLE_MAX + 1] = { 0 };
	const struct nfgenmsg *g;

	if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES ||
	    NFNL_MSG_TYPE(nlh->nlmsg_type) != NFT_MSG_DELTABLE)
		return MNL_CB_OK;
	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*g)))
		return MNL_CB_OK;
	g = mnl_nlmsg_get_payload(nlh);
	if (g->nfgen_family != FW_FAMILY ||
	    mnl_attr_parse(nlh, sizeof(*g), table_attr_cb, tb) < 0 ||
	    !tb[NFTA_TABLE_NAME] ||
	    strcmp(mnl_attr_get_str(tb[NFTA_TABLE_NAME]), FW_TABLE) != 0)
		return MNL_CB_OK;
	/* The kernel puts the requester's port id in events: ours are the
	 * delete + create of an install. */
	if (nlh->nlmsg_pid == fw->portid || !fw->installed)
		return MNL_CB_OK;
	if (fw->todo != FW_TODO_REINSTALL)
		log_warn("nftables: table inet %s was removed by someone else; "
			 "reinstalling", FW_TABLE);
	schedule(fw, FW_TODO_REINSTALL, FW_REINSTALL_DELAY_S);
	return MNL_CB_OK;
}

static void events_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct fw *fw = container_of(w, struct fw, ev_watcher);

	(void)revents;
	for (int i = 0; i < 64; i++) {
		ssize_t len = recv(w->fd, fw->ev_buf, sizeof(fw->ev_buf),
				   MSG_DONTWAIT);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			if (errno == ENOBUFS) {
				/* Events were lost: ask the kernel. */
				log_limited(&fw->overrun_limit, ev_now(loop),
					    LOG_LVL_WARN,
					    "nftables: event socket overrun; "
					    "checking table inet %s", FW_TABLE);
				if (fw->installed)
					schedule(fw, FW_TODO_CHECK,
						 FW_REINSTALL_DELAY_S);
				continue;
			}
			log_limited(&fw->overrun_limit, ev_now(loop),
				    LOG_LVL_ERROR, "nftables: reading events: %s",
				    strerror(errno));
			return;
		}
		if (nl_run(fw->ev_buf, (size_t)len, 0, 0, event_cb, fw) < 0)
			log_debug("nftables: malformed event: %s",
				  strerror(errno));
	}
}

/* ------------------------------------------------------------------ */
/* Open and close                                                       */

struct fw *fw_open(struct ev_loop *loop, int *err)
{
	struct fw *fw = calloc(1, sizeof(*fw));
	const char *what = "";
	int group = NFNLGRP_NFTABLES, r;

	if (!fw) {
		*err = ENOMEM;
		return NULL;
	}
	fw->loop = loop;
	fw->owner_supported = true;
	fw->seq = (uint32_t)time(NULL);
	fw->overrun_limit = (struct log_limit)LOG_LIMIT_INIT(60);

	what = "socket";
	fw->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!fw->nl)
		goto fail;
	what = "bind";
	if (mnl_socket_bind(fw->nl, 0, MNL_SOCKET_AUTOPID) < 0)
		goto fail;
	fw->portid = mnl_socket_get_portid(fw->nl);
	/* Short acks (no copy of the request) with the kernel's message. */
	what = "setsockopt(NETLINK_CAP_ACK)";
	if (sock_int(fw->nl, SOL_NETLINK, NETLINK_CAP_ACK, 1) < 0)
		goto fail;
	what = "setsockopt(NETLINK_EXT_ACK)";
	if (sock_int(fw->nl, SOL_NETLINK, NETLINK_EXT_ACK, 1) < 0)
		goto fail;

	what = "event socket";
	fw->ev_nl = mnl_socket_open2(NETLINK_NETFILTER,
				     SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (!fw->ev_nl)
		goto fail;
	what = "event socket bind";
	if (mnl_socket_bind(fw->ev_nl, 0, MNL_SOCKET_AUTOPID) < 0)
		goto fail;
	what = "setsockopt(NETLINK_ADD_MEMBERSHIP NFNLGRP_NFTABLES)";
	if (mnl_socket_setsockopt(fw->ev_nl, NETLINK_ADD_MEMBERSHIP, &group,
				  sizeof(group)) < 0)
		goto fail;
	what = "event socket SO_RCVBUF";
	r = sock_buf(fw->ev_nl, SO_RCVBUF, SO_RCVBUFFORCE, FW_EVENT_RCVBUF);
	if (r < 0) {
		errno = -r;
		goto fail;
	}

	ev_io_init(&fw->ev_watcher, events_cb, mnl_socket_get_fd(fw->ev_nl),
		   EV_READ);
	ev_io_start(loop, &fw->ev_watcher);
	ev_timer_init(&fw->timer, timer_cb, 0., 0.);
	return fw;
fail:
	*err = errno ? errno : EIO;
	log_error("nftables: %s: %s", what, strerror(*err));
	if (fw->ev_nl)
		mnl_socket_close(fw->ev_nl);
	if (fw->nl)
		mnl_socket_close(fw->nl);
	free(fw);
	return NULL;
}

/* Delete the table (an owned one only through its owner socket). */
static int delete_table(struct fw *fw, char *errbuf, size_t errlen)
{
	struct nftnl_batch *nb = nftnl_batch_alloc(FW_BATCH_PAGE,
						   FW_BATCH_OVERRUN);
	struct fw_batch b;
	uint32_t failed;
	int err;

	if (!nb)
		return -ENOMEM;
	batch_init(&b, nb, fw->seq);
	if (!(err = batch_begin(&b)) &&
	    !(err = build_table(&b, FW_TABLE_DELETE, false)))
		err = batch_end(&b);
	next_seq(fw, b.n + 1);
	if (err == 0)
		err = batch_talk(fw, &b, &failed, errbuf, errlen);
	else
		set_err(errbuf, errlen, "nftables: %s", strerror(-err));
	batch_fini(&b);
	nftnl_batch_free(nb);
	return err;
}

void fw_close(struct fw *fw)
{
	char err[256];

	if (!fw)
		return;
	ev_io_stop(fw->loop, &fw->ev_watcher);
	ev_timer_stop(fw->loop, &fw->timer);
	if (fw->installed) {
		int r = delete_table(fw, err, sizeof(err));
		if (r < 0 && r != -ENOENT)
			log_warn("%s", err);
	}
	mnl_socket_close(fw->ev_nl);
	mnl_socket_close(fw->nl);
	saved_free(&fw->saved);
	free(fw);
}
