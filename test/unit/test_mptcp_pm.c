// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit tests of mptcp_pm (no root): every request is built into memory and
 * read back with libmnl here, independently of the module's parser —
 * header, flags, genetlink command and version, each attribute's type,
 * length and value, nothing more; the module's parsers read kernel-style
 * replies (GET_ADDR entries, CTRL_CMD_NEWFAMILY) including unknown
 * attributes and malformed ones; and the choice of a free endpoint id. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/mptcp.h>

#include "check.h"
#include "mptcp_pm.h"

#define FAM 0x1d /* a family id as the kernel might give */

/* ---------------------------------------------------------------- */
/* Reading messages back                                             */

/* Attributes of one level: each type at most once, all counted. */
struct attrs {
	const struct nlattr *tb[64];
	unsigned n, dups, big;
};

static int collect_cb(const struct nlattr *a, void *data)
{
	struct attrs *s = data;
	uint16_t type = mnl_attr_get_type(a);

	s->n++;
	if (type >= 64) {
		s->big++;
		return MNL_CB_OK;
	}
	if (s->tb[type])
		s->dups++;
	s->tb[type] = a;
	return MNL_CB_OK;
}

/* The header checks common to every request, and its top attributes. */
static const struct genlmsghdr *
read_genl(const struct nlmsghdr *nlh, uint16_t type, uint16_t flags,
	  uint8_t cmd, uint8_t version, struct attrs *top)
{
	memset(top, 0, sizeof(*top));
	CHECK(nlh->nlmsg_len <= MPTCP_PM_MSG_SIZE);
	CHECK(nlh->nlmsg_len >= MNL_NLMSG_HDRLEN + sizeof(struct genlmsghdr));
	CHECK_MSG(nlh->nlmsg_type == type, "type %u", nlh->nlmsg_type);
	CHECK_MSG(nlh->nlmsg_flags == flags, "flags 0x%x", nlh->nlmsg_flags);
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);
	CHECK_MSG(g->cmd == cmd, "cmd %u", g->cmd);
	CHECK_MSG(g->version == version, "version %u", g->version);
	CHECK(g->reserved == 0);
	CHECK(mnl_attr_parse(nlh, sizeof(*g), collect_cb, top) == MNL_CB_OK);
	CHECK(top->dups == 0 && top->big == 0);
	return g;
}

/* The MPTCP_PM_ATTR_ADDR nest of a request: flagged nested, the only top
 * attribute. */
static void read_addr_nest(const struct attrs *top, struct attrs *in)
{
	memset(in, 0, sizeof(*in));
	const struct nlattr *nest = top->tb[MPTCP_PM_ATTR_ADDR];
	CHECK(top->n == 1);
	CHECK(nest != NULL);
	if (!nest)
		return;
	CHECK(nest->nla_type & NLA_F_NESTED);
	CHECK(mnl_attr_validate(nest, MNL_TYPE_NESTED) == 0);
	CHECK(mnl_attr_parse_nested(nest, collect_cb, in) == MNL_CB_OK);
	CHECK(in->dups == 0 && in->big == 0);
}

static bool attr_u8_is(const struct nlattr *a, uint8_t v)
{
	return a && mnl_attr_get_payload_len(a) == 1 && mnl_attr_get_u8(a) == v;
}

static bool attr_u16_is(const struct nlattr *a, uint16_t v)
{
	return a && mnl_attr_get_payload_len(a) == 2 &&
	       mnl_attr_get_u16(a) == v;
}

static bool attr_u32_is(const struct nlattr *a, uint32_t v)
{
	return a && mnl_attr_get_payload_len(a) == 4 &&
	       mnl_attr_get_u32(a) == v;
}

static bool attr_bytes_is(const struct nlattr *a, const void *v, size_t len)
{
	return a && mnl_attr_get_payload_len(a) == len &&
	       memcmp(mnl_attr_get_payload(a), v, len) == 0;
}

static struct mptcp_pm_endp endp(const char *ip, uint8_t id, int ifindex,
				 uint32_t flags)
{
	struct mptcp_pm_endp e = { .id = id, .ifindex = ifindex,
				   .flags = flags };
	CHECK(addr_parse(ip, 0, &e.addr) == 0);
	return e;
}

/* ---------------------------------------------------------------- */
/* Requests                                                          */

static void test_msg_getfamily(void)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct attrs top;
	const struct nlmsghdr *nlh = mptcp_pm_msg_getfamily(buf);

	read_genl(nlh, GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK,
		  CTRL_CMD_GETFAMILY, 1, &top);
	CHECK(top.n == 1);
	const struct nlattr *name = top.tb[CTRL_ATTR_FAMILY_NAME];
	CHECK(name && mnl_attr_validate(name, MNL_TYPE_NUL_STRING) == 0 &&
	      strcmp(mnl_attr_get_str(name), "mptcp_pm") == 0);
}

static void test_msg_add_v4(void)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct attrs top, in;
	struct mptcp_pm_endp e = endp("192.0.2.7", 5, 3,
				      MPTCP_PM_ADDR_FLAG_SUBFLOW);
	const struct nlmsghdr *nlh = mptcp_pm_msg_add(buf, FAM, &e);
	const uint8_t ip[4] = { 192, 0, 2, 7 };

	read_genl(nlh, FAM, NLM_F_REQUEST | NLM_F_ACK, MPTCP_PM_CMD_ADD_ADDR,
		  MPTCP_PM_VER, &top);
	read_addr_nest(&top, &in);
	CHECK(in.n == 5);
	CHECK(attr_u16_is(in.tb[MPTCP_PM_ADDR_ATTR_FAMILY], AF_INET));
	CHECK(attr_u8_is(in.tb[MPTCP_PM_ADDR_ATTR_ID], 5));
	CHECK(attr_bytes_is(in.tb[MPTCP_PM_ADDR_ATTR_ADDR4], ip, 4));
	CHECK(!in.tb[MPTCP_PM_ADDR_ATTR_ADDR6]);
	CHECK(!in.tb[MPTCP_PM_ADDR_ATTR_PORT]);
	CHECK(attr_u32_is(in.tb[MPTCP_PM_ADDR_ATTR_FLAGS],
			  MPTCP_PM_ADDR_FLAG_SUBFLOW));
	CHECK(attr_u32_is(in.tb[MPTCP_PM_ADDR_ATTR_IF_IDX], 3));
}

static void test_msg_add_v6_backup(void)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct attrs top, in;
	struct mptcp_pm_endp e = endp("2001:db8::1:2", 255, 1234567,
				      MPTCP_PM_ADDR_FLAG_SUBFLOW |
				      MPTCP_PM_ADDR_FLAG_BACKUP);
	/* A port in the address is not sent. */
	e.addr.in6.sin6_port = htons(1080);
	const struct nlmsghdr *nlh = mptcp_pm_msg_add(buf, FAM, &e);
	struct in6_addr ip;
	inet_pton(AF_INET6, "2001:db8::1:2", &ip);

	read_genl(nlh, FAM, NLM_F_REQUEST | NLM_F_ACK, MPTCP_PM_CMD_ADD_ADDR,
		  MPTCP_PM_VER, &top);
	read_addr_nest(&top, &in);
	CHECK(in.n == 5);
	CHECK(attr_u16_is(in.tb[MPTCP_PM_ADDR_ATTR_FAMILY], AF_INET6));
	CHECK(attr_u8_is(in.tb[MPTCP_PM_ADDR_ATTR_ID], 255));
	CHECK(attr_bytes_is(in.tb[MPTCP_PM_ADDR_ATTR_ADDR6], &ip, 16));
	CHECK(!in.tb[MPTCP_PM_ADDR_ATTR_ADDR4]);
	CHECK(!in.tb[MPTCP_PM_ADDR_ATTR_PORT]);
	CHECK(attr_u32_is(in.tb[MPTCP_PM_ADDR_ATTR_FLAGS],
			  MPTCP_PM_ADDR_FLAG_SUBFLOW |
			  MPTCP_PM_ADDR_FLAG_BACKUP));
	CHECK(attr_u32_is(in.tb[MPTCP_PM_ADDR_ATTR_IF_IDX], 1234567));
}

/* id 0: the kernel picks (used to take over an implicit endpoint);
 * ifindex 0: no IF_IDX. */
static void test_msg_add_no_id_no_ifindex(void)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct attrs top, in;
	struct mptcp_pm_endp e = endp("198.51.100.1", 0, 0,
				      MPTCP_PM_ADDR_FLAG_SUBFLOW);
	const struct nlmsghdr *nlh = mptcp_pm_msg_add(buf, FAM, &e);

	read_genl(nlh, FAM, NLM_F_REQUEST | NLM_F_ACK, MPTCP_PM_CMD_ADD_ADDR,
		  MPTCP_PM_VER, &top);
	read_addr_nest(&top, &in);
	CHECK(in.n == 3);
	CHECK(!in.tb[MPTCP_PM_ADDR_ATTR_ID]);
	CHECK(!in.tb[MPTCP_PM_ADDR_ATTR_IF_IDX]);
	CHECK(attr_u16_is(in.tb[MPTCP_PM_ADDR_ATTR_FAMILY], AF_INET));
	CHECK(in.tb[MPTCP_PM_ADDR_ATTR_ADDR4] != NULL);
	CHECK(in.tb[MPTCP_PM_ADDR_ATTR_FLAGS] != NULL);
}

static void test_msg_del(void)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct attrs top, in;
	const struct nlmsghdr *nlh = mptcp_pm_msg_del(buf, FAM, 42);

	read_genl(nlh, FAM, NLM_F_REQUEST | NLM_F_ACK, MPTCP_PM_CMD_DEL_ADDR,
		  MPTCP_PM_VER, &top);
	read_addr_nest(&top, &in);
	CHECK(in.n == 1);
	CHECK(attr_u8_is(in.tb[MPTCP_PM_ADDR_ATTR_ID], 42));
}

static void test_msg_set_flags(void)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct attrs top, in;
	const struct nlmsghdr *nlh = mptcp_pm_msg_set_flags(
		buf, FAM, 9, MPTCP_PM_ADDR_FLAG_SUBFLOW | MPTCP_PM_ADDR_FLAG_BACKUP);

	read_genl(nlh, FAM, NLM_F_REQUEST | NLM_F_ACK, MPTCP_PM_CMD_SET_FLAGS,
		  MPTCP_PM_VER, &top);
	read_addr_nest(&top, &in);
	/* By id: no family, no address. */
	CHECK(in.n == 2);
	CHECK(attr_u8_is(in.tb[MPTCP_PM_ADDR_ATTR_ID], 9));
	CHECK(attr_u32_is(in.tb[MPTCP_PM_ADDR_ATTR_FLAGS],
			  MPTCP_PM_ADDR_FLAG_SUBFLOW | MPTCP_PM_ADDR_FLAG_BACKUP));
}

static void test_msg_set_limits(void)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct attrs top;
	const struct nlmsghdr *nlh = mptcp_pm_msg_set_limits(buf, FAM, 2, 7);

	read_genl(nlh, FAM, NLM_F_REQUEST | NLM_F_ACK,
		  MPTCP_PM_CMD_SET_LIMITS, MPTCP_PM_VER, &top);
	CHECK(top.n == 2);
	CHECK(attr_u32_is(top.tb[MPTCP_PM_ATTR_SUBFLOWS], 2));
	CHECK(attr_u32_is(top.tb[MPTCP_PM_ATTR_RCV_ADD_ADDRS], 7));
}

static void test_msg_dump(void)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct attrs top;
	const struct nlmsghdr *nlh = mptcp_pm_msg_dump(buf, FAM);

	/* A dump has no NLM_F_ACK: it ends with NLMSG_DONE. */
	read_genl(nlh, FAM, NLM_F_REQUEST | NLM_F_DUMP, MPTCP_PM_CMD_GET_ADDR,
		  MPTCP_PM_VER, &top);
	CHECK(top.n == 0);
	CHECK(nlh->nlmsg_len == MNL_NLMSG_HDRLEN + sizeof(struct genlmsghdr));
}

/* No stale bytes go to the kernel: padding after a u8 or a string is
 * zero whatever the buffer held before. */
static void test_msg_padding(void)
{
	char a[MPTCP_PM_MSG_SIZE], b[MPTCP_PM_MSG_SIZE];
	struct mptcp_pm_endp e = endp("192.0.2.1", 3, 2,
				      MPTCP_PM_ADDR_FLAG_SUBFLOW);
	struct nlmsghdr *x, *y;

	memset(a, 0xa5, sizeof(a));
	memset(b, 0x00, sizeof(b));
	x = mptcp_pm_msg_getfamily(a);
	y = mptcp_pm_msg_getfamily(b);
	CHECK(x->nlmsg_len == y->nlmsg_len && !memcmp(a, b, x->nlmsg_len));
	memset(a, 0xa5, sizeof(a));
	x = mptcp_pm_msg_add(a, FAM, &e);
	y = mptcp_pm_msg_add(b, FAM, &e);
	CHECK(x->nlmsg_len == y->nlmsg_len && !memcmp(a, b, x->nlmsg_len));
	memset(a, 0xa5, sizeof(a));
	x = mptcp_pm_msg_del(a, FAM, 3);
	y = mptcp_pm_msg_del(b, FAM, 3);
	CHECK(x->nlmsg_len == y->nlmsg_len && !memcmp(a, b, x->nlmsg_len));
}

/* ---------------------------------------------------------------- */
/* Replies                                                           */

static void endp_equal(const struct mptcp_pm_endp *got,
		       const struct mptcp_pm_endp *want, const char *what)
{
	CHECK_MSG(got->id == want->id, "%s: id %u", what, got->id);
	CHECK_MSG(got->ifindex == want->ifindex, "%s: ifindex %d", what,
		  got->ifindex);
	CHECK_MSG(got->flags == want->flags, "%s: flags 0x%x", what,
		  got->flags);
	CHECK_MSG(addr_equal(&got->addr, &want->addr), "%s: address", what);
}

/* What the kernel sends: built by our ADD_ADDR builder, parsed back. */
static void test_parse_round_trip(void)
{
	static const struct {
		const char *ip;
		uint8_t id;
		int ifindex;
		uint32_t flags;
	} cases[] = {
		{ "192.0.2.1", 1, 2, MPTCP_PM_ADDR_FLAG_SUBFLOW },
		{ "203.0.113.254", 200, 0,
		  MPTCP_PM_ADDR_FLAG_SUBFLOW | MPTCP_PM_ADDR_FLAG_BACKUP },
		{ "2001:db8::5", 11, 7, MPTCP_PM_ADDR_FLAG_SUBFLOW },
		{ "fe80::1", 255, 0x7fffffff,
		  MPTCP_PM_ADDR_FLAG_SUBFLOW | MPTCP_PM_ADDR_FLAG_BACKUP },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[MPTCP_PM_MSG_SIZE];
		struct mptcp_pm_endp in = endp(cases[i].ip, cases[i].id,
					       cases[i].ifindex, cases[i].flags);
		struct mptcp_pm_endp out;
		const struct nlmsghdr *nlh = mptcp_pm_msg_add(buf, FAM, &in);

		CHECK(mptcp_pm_parse_endp(nlh, &out) == 0);
		endp_equal(&out, &in, cases[i].ip);
	}
}

/* A GET_ADDR entry as the kernel writes it (mptcp_nl_fill_addr: family,
 * port, id, flags, ifindex if any, address), plus what a newer kernel
 * might add. */
struct reply_spec {
	int family;           /* written as given */
	const char *ip;       /* NULL: no address attribute */
	int addr_attr_len;    /* 0: the right one */
	bool no_id;
	bool id_as_u16;
	bool no_nest;
	bool extra;           /* unknown attributes, top and nested */
	uint16_t port;
	uint8_t id;
	uint32_t flags;
	int ifindex;
};

static struct nlmsghdr *build_reply(char *buf, const struct reply_spec *s)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = FAM;
	nlh->nlmsg_flags = NLM_F_MULTI;
	struct genlmsghdr *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = MPTCP_PM_CMD_GET_ADDR;
	g->version = MPTCP_PM_VER;
	if (s->extra)
		mnl_attr_put_u32(nlh, MPTCP_PM_ATTR_MAX + 5, 0xdeadbeef);
	if (s->no_nest)
		return nlh;
	struct nlattr *nest = mnl_attr_nest_start(nlh, MPTCP_PM_ATTR_ADDR);
	mnl_attr_put_u16(nlh, MPTCP_PM_ADDR_ATTR_FAMILY, (uint16_t)s->family);
	mnl_attr_put_u16(nlh, MPTCP_PM_ADDR_ATTR_PORT, s->port);
	if (s->id_as_u16)
		mnl_attr_put_u16(nlh, MPTCP_PM_ADDR_ATTR_ID, s->id);
	else if (!s->no_id)
		mnl_attr_put_u8(nlh, MPTCP_PM_ADDR_ATTR_ID, s->id);
	mnl_attr_put_u32(nlh, MPTCP_PM_ADDR_ATTR_FLAGS, s->flags);
	if (s->ifindex)
		mnl_attr_put_u32(nlh, MPTCP_PM_ADDR_ATTR_IF_IDX,
				 (uint32_t)s->ifindex);
	if (s->extra) {
		mnl_attr_put_u8(nlh, MPTCP_PM_ADDR_ATTR_MAX + 1, 1);
		mnl_attr_put_strz(nlh, 200, "from the future");
	}
	if (s->ip) {
		uint8_t a[20] = { 0 };
		int fam = strchr(s->ip, ':') ? AF_INET6 : AF_INET;
		int len = fam == AF_INET6 ? 16 : 4;
		inet_pton(fam, s->ip, a);
		if (s->addr_attr_len)
			len = s->addr_attr_len;
		mnl_attr_put(nlh, fam == AF_INET6 ? MPTCP_PM_ADDR_ATTR_ADDR6
						  : MPTCP_PM_ADDR_ATTR_ADDR4,
			     (size_t)len, a);
	}
	mnl_attr_nest_end(nlh, nest);
	if (s->extra) {
		struct nlattr *n2 = mnl_attr_nest_start(nlh, MPTCP_PM_ATTR_MAX + 9);
		mnl_attr_put_u32(nlh, 1, 5);
		mnl_attr_nest_end(nlh, n2);
	}
	return nlh;
}

static void test_parse_kernel_reply(void)
{
	char buf[512];
	struct mptcp_pm_endp e;
	struct reply_spec s = {
		.family = AF_INET, .ip = "192.0.2.9", .id = 10,
		.flags = MPTCP_PM_ADDR_FLAG_SUBFLOW | MPTCP_PM_ADDR_FLAG_BACKUP,
		.ifindex = 4, .extra = true,
	};
	struct mptcp_pm_endp want = endp("192.0.2.9", 10, 4, s.flags);

	CHECK(mptcp_pm_parse_endp(build_reply(buf, &s), &e) == 0);
	endp_equal(&e, &want, "v4 with unknown attributes");

	/* A "signal" endpoint with a port; an implicit one without ifindex. */
	s = (struct reply_spec){ .family = AF_INET6, .ip = "2001:db8::9",
				 .id = 3, .port = 8080,
				 .flags = MPTCP_PM_ADDR_FLAG_SIGNAL };
	want = endp("2001:db8::9", 3, 0, MPTCP_PM_ADDR_FLAG_SIGNAL);
	want.addr.in6.sin6_port = htons(8080);
	CHECK(mptcp_pm_parse_endp(build_reply(buf, &s), &e) == 0);
	endp_equal(&e, &want, "v6 signal with port");

	s = (struct reply_spec){ .family = AF_INET, .ip = "10.0.0.1", .id = 1,
				 .flags = MPTCP_PM_ADDR_FLAG_IMPLICIT };
	want = endp("10.0.0.1", 1, 0, MPTCP_PM_ADDR_FLAG_IMPLICIT);
	CHECK(mptcp_pm_parse_endp(build_reply(buf, &s), &e) == 0);
	endp_equal(&e, &want, "implicit");

	/* A family we do not know: listed, id taken, no address. */
	s = (struct reply_spec){ .family = 17, .id = 77 };
	CHECK(mptcp_pm_parse_endp(build_reply(buf, &s), &e) == 0);
	CHECK(e.id == 77 && e.addr.sa.sa_family == AF_UNSPEC);
}

static void test_parse_malformed(void)
{
	static const struct {
		const char *what;
		struct reply_spec s;
	} bad[] = {
		{ "no nest", { .family = AF_INET, .ip = "192.0.2.1", .id = 1,
			       .no_nest = true } },
		{ "no id", { .family = AF_INET, .ip = "192.0.2.1", .no_id = true } },
		{ "id as u16", { .family = AF_INET, .ip = "192.0.2.1", .id = 1,
				 .id_as_u16 = true } },
		{ "v4 without address", { .family = AF_INET, .id = 1 } },
		{ "v6 without address", { .family = AF_INET6, .id = 1 } },
		{ "v6 family, v4 address", { .family = AF_INET6,
					     .ip = "192.0.2.1", .id = 1 } },
		{ "short v4 address", { .family = AF_INET, .ip = "192.0.2.1",
					.addr_attr_len = 3, .id = 1 } },
		{ "long v6 address", { .family = AF_INET6, .ip = "2001:db8::1",
				       .addr_attr_len = 17, .id = 1 } },
	};
	char buf[512];
	struct mptcp_pm_endp e;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct nlmsghdr *nlh = build_reply(buf, &bad[i].s);
		int rc = mptcp_pm_parse_endp(nlh, &e);
		CHECK_MSG(rc == -EPROTO, "%s: %d", bad[i].what, rc);
	}

	/* Flags and ifindex of the wrong size. */
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = FAM;
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct genlmsghdr));
	struct nlattr *nest = mnl_attr_nest_start(nlh, MPTCP_PM_ATTR_ADDR);
	mnl_attr_put_u8(nlh, MPTCP_PM_ADDR_ATTR_ID, 1);
	mnl_attr_put_u16(nlh, MPTCP_PM_ADDR_ATTR_FLAGS, 2);
	mnl_attr_nest_end(nlh, nest);
	CHECK(mptcp_pm_parse_endp(nlh, &e) == -EPROTO);

	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = FAM;
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct genlmsghdr));
	nest = mnl_attr_nest_start(nlh, MPTCP_PM_ATTR_ADDR);
	mnl_attr_put_u8(nlh, MPTCP_PM_ADDR_ATTR_ID, 1);
	mnl_attr_put_u64(nlh, MPTCP_PM_ADDR_ATTR_IF_IDX, 2);
	mnl_attr_nest_end(nlh, nest);
	CHECK(mptcp_pm_parse_endp(nlh, &e) == -EPROTO);

	/* The nest itself too short to hold an attribute. */
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = FAM;
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct genlmsghdr));
	mnl_attr_put(nlh, MPTCP_PM_ATTR_ADDR, 2, "\1\2");
	CHECK(mptcp_pm_parse_endp(nlh, &e) == -EPROTO);

	/* No room for the genetlink header. */
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = FAM;
	mnl_nlmsg_put_extra_header(nlh, 2);
	CHECK(mptcp_pm_parse_endp(nlh, &e) == -EPROTO);
}

/* CTRL_CMD_NEWFAMILY as the kernel writes it: id, name, version,
 * hdrsize, maxattr, ops (nested), mcast groups (nested). */
static struct nlmsghdr *build_family(char *buf, const char *name, bool id,
				     bool id_u32)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = GENL_ID_CTRL;
	struct genlmsghdr *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = CTRL_CMD_NEWFAMILY;
	g->version = 2;
	if (name)
		mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, name);
	if (id_u32)
		mnl_attr_put_u32(nlh, CTRL_ATTR_FAMILY_ID, FAM);
	else if (id)
		mnl_attr_put_u16(nlh, CTRL_ATTR_FAMILY_ID, FAM);
	mnl_attr_put_u32(nlh, CTRL_ATTR_VERSION, 1);
	mnl_attr_put_u32(nlh, CTRL_ATTR_HDRSIZE, 0);
	mnl_attr_put_u32(nlh, CTRL_ATTR_MAXATTR, MPTCP_PM_ATTR_MAX);
	struct nlattr *ops = mnl_attr_nest_start(nlh, CTRL_ATTR_OPS);
	struct nlattr *op = mnl_attr_nest_start(nlh, 1);
	mnl_attr_put_u32(nlh, CTRL_ATTR_OP_ID, MPTCP_PM_CMD_ADD_ADDR);
	mnl_attr_put_u32(nlh, CTRL_ATTR_OP_FLAGS, 0x0b);
	mnl_attr_nest_end(nlh, op);
	mnl_attr_nest_end(nlh, ops);
	mnl_attr_put_u32(nlh, 250, 1); /* unknown */
	return nlh;
}

static void test_parse_family(void)
{
	char buf[512];
	uint16_t fam = 0;

	CHECK(mptcp_pm_parse_family(build_family(buf, "mptcp_pm", true, false),
				    &fam) == 0);
	CHECK(fam == FAM);
	fam = 0;
	CHECK(mptcp_pm_parse_family(build_family(buf, NULL, true, false),
				    &fam) == 0);
	CHECK(fam == FAM);
	CHECK(mptcp_pm_parse_family(build_family(buf, "nl80211", true, false),
				    &fam) == -EPROTO);
	CHECK(mptcp_pm_parse_family(build_family(buf, "mptcp_pm", false, false),
				    &fam) == -EPROTO);
	CHECK(mptcp_pm_parse_family(build_family(buf, "mptcp_pm", false, true),
				    &fam) == -EPROTO);
	/* Id 0 is no family (GENL_ID_CTRL is 16, the first). */
	struct nlmsghdr *nlh = build_family(buf, "mptcp_pm", false, false);
	mnl_attr_put_u16(nlh, CTRL_ATTR_FAMILY_ID, 0);
	CHECK(mptcp_pm_parse_family(nlh, &fam) == -EPROTO);
}

/* ---------------------------------------------------------------- */
/* Free ids                                                          */

static void test_pick_id(void)
{
	static const struct {
		const char *what;
		uint8_t taken[12]; /* ids, 0-terminated */
		bool all;          /* 1-255 all taken, minus `taken` */
		uint8_t want;
		int id;
	} cases[] = {
		{ "free", { 0 }, false, 1, 1 },
		{ "free, high", { 0 }, false, 255, 255 },
		{ "want taken", { 10 }, false, 10, 11 },
		{ "run taken", { 10, 11, 12, 14 }, false, 10, 13 },
		{ "others taken, want free", { 1, 2, 3 }, false, 4, 4 },
		{ "wrap", { 254, 255 }, false, 254, 1 },
		{ "wrap past taken", { 255, 1, 2 }, false, 255, 3 },
		{ "only lower free", { 0 }, true, 200, -ENOSPC },
		/* all taken except the listed ones */
		{ "one free, below", { 7 }, true, 200, 7 },
		{ "one free, above", { 250 }, true, 3, 250 },
		{ "one free = want", { 42 }, true, 42, 42 },
		{ "want 0", { 0 }, false, 0, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool taken[256];
		for (int id = 0; id < 256; id++)
			taken[id] = cases[i].all;
		for (size_t k = 0; k < 12 && cases[i].taken[k]; k++)
			taken[cases[i].taken[k]] = !cases[i].all;
		int got = mptcp_pm_pick_id(taken, cases[i].want);
		CHECK_MSG(got == cases[i].id, "%s: %d, expected %d",
			  cases[i].what, got, cases[i].id);
	}

	/* taken[0] does not matter, and id 0 is never chosen. */
	bool taken[256] = { [0] = true };
	CHECK(mptcp_pm_pick_id(taken, 1) == 1);
	memset(taken, 0, sizeof(taken));
	for (int id = 1; id < 256; id++)
		taken[id] = true;
	CHECK(mptcp_pm_pick_id(taken, 1) == -ENOSPC);
	CHECK(mptcp_pm_pick_id(taken, 255) == -ENOSPC);
	/* Every starting point reaches the only free id. */
	taken[128] = false;
	int bad = 0;
	for (int want = 1; want < 256; want++)
		bad += mptcp_pm_pick_id(taken, (uint8_t)want) != 128;
	CHECK_MSG(bad == 0, "%d starting points missed id 128", bad);
}

int main(void)
{
	test_msg_getfamily();
	test_msg_add_v4();
	test_msg_add_v6_backup();
	test_msg_add_no_id_no_ifindex();
	test_msg_del();
	test_msg_set_flags();
	test_msg_set_limits();
	test_msg_dump();
	test_msg_padding();
	test_parse_round_trip();
	test_parse_kernel_reply();
	test_parse_malformed();
	test_parse_family();
	test_pick_id();
	return check_done();
}
