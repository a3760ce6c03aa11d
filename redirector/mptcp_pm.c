// SPDX-License-Identifier: GPL-2.0-or-later
#include "mptcp_pm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/genetlink.h>
#include <linux/mptcp.h>

#include "log.h"
#include "nl.h"

/* The flags that make two endpoints differ (IMPLICIT: made by the kernel
 * for a subflow from an address with no endpoint). */
#define PM_FLAGS (MPTCP_PM_ADDR_FLAG_SIGNAL | MPTCP_PM_ADDR_FLAG_SUBFLOW | \
		  MPTCP_PM_ADDR_FLAG_BACKUP | MPTCP_PM_ADDR_FLAG_FULLMESH | \
		  MPTCP_PM_ADDR_FLAG_IMPLICIT)

/* mptcp_pm_add looks again at the kernel's list after a change of its own
 * or a lost race, at most this many times. */
#define PM_ADD_ROUNDS 4
/* A dump the kernel marked inconsistent (NLM_F_DUMP_INTR) is redone. */
#define PM_DUMP_TRIES 3

/* An endpoint we created: its id is the index in mptcp_pm.own. */
struct pm_own {
	bool used;
	union sockaddr_any addr; /* family and address, port 0 */
	int ifindex;
};

struct mptcp_pm {
	struct mnl_socket *nl;
	uint16_t family; /* resolved id of "mptcp_pm" */
	struct pm_own own[256];
};

/* The kernel's endpoints, by id (from a GET_ADDR dump). */
struct pm_list {
	uint16_t family;
	int err; /* a malformed entry: the list is incomplete */
	bool present[256];
	struct mptcp_pm_endp ep[256];
};

/* ---- messages ---------------------------------------------------------- */

static struct nlmsghdr *genl_msg(char *buf, uint16_t type, uint16_t flags,
				 uint8_t cmd, uint8_t version)
{
	/* libmnl 1.0.4 leaves attribute padding as it finds it. */
	memset(buf, 0, MPTCP_PM_MSG_SIZE);
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	struct genlmsghdr *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

struct nlmsghdr *mptcp_pm_msg_getfamily(char *buf)
{
	/* Not a dump: without NLM_F_ACK the reply would not be followed by
	 * anything nl_talk waits for. */
	struct nlmsghdr *nlh = genl_msg(buf, GENL_ID_CTRL, NLM_F_ACK,
					CTRL_CMD_GETFAMILY, 1);
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, MPTCP_PM_NAME);
	return nlh;
}

static struct nlattr *addr_nest_start(struct nlmsghdr *nlh)
{
	return mnl_attr_nest_start(nlh, MPTCP_PM_ATTR_ADDR | NLA_F_NESTED);
}

struct nlmsghdr *mptcp_pm_msg_add(char *buf, uint16_t family,
				  const struct mptcp_pm_endp *e)
{
	struct nlmsghdr *nlh = genl_msg(buf, family, NLM_F_ACK,
					MPTCP_PM_CMD_ADD_ADDR, MPTCP_PM_VER);
	struct nlattr *nest = addr_nest_start(nlh);

	mnl_attr_put_u16(nlh, MPTCP_PM_ADDR_ATTR_FAMILY, e->addr.sa.sa_family);
	if (e->id)
		mnl_attr_put_u8(nlh, MPTCP_PM_ADDR_ATTR_ID, e->id);
	if (e->addr.sa.sa_family == AF_INET6)
		mnl_attr_put(nlh, MPTCP_PM_ADDR_ATTR_ADDR6,
			     sizeof(e->addr.in6.sin6_addr),
			     &e->addr.in6.sin6_addr);
	else
		mnl_attr_put(nlh, MPTCP_PM_ADDR_ATTR_ADDR4,
			     sizeof(e->addr.in4.sin_addr),
			     &e->addr.in4.sin_addr);
	mnl_attr_put_u32(nlh, MPTCP_PM_ADDR_ATTR_FLAGS, e->flags);
	if (e->ifindex)
		mnl_attr_put_u32(nlh, MPTCP_PM_ADDR_ATTR_IF_IDX,
				 (uint32_t)e->ifindex);
	mnl_attr_nest_end(nlh, nest);
	return nlh;
}

struct nlmsghdr *mptcp_pm_msg_del(char *buf, uint16_t family, uint8_t id)
{
	struct nlmsghdr *nlh = genl_msg(buf, family, NLM_F_ACK,
					MPTCP_PM_CMD_DEL_ADDR, MPTCP_PM_VER);
	struct nlattr *nest = addr_nest_start(nlh);
	mnl_attr_put_u8(nlh, MPTCP_PM_ADDR_ATTR_ID, id);
	mnl_attr_nest_end(nlh, nest);
	return nlh;
}

struct nlmsghdr *mptcp_pm_msg_set_flags(char *buf, uint16_t family,
					uint8_t id, uint32_t flags)
{
	/* No family: the kernel looks the endpoint up by id, and changes
	 * only "backup" and "fullmesh". */
	struct nlmsghdr *nlh = genl_msg(buf, family, NLM_F_ACK,
					MPTCP_PM_CMD_SET_FLAGS, MPTCP_PM_VER);
	struct nlattr *nest = addr_nest_start(nlh);
	mnl_attr_put_u8(nlh, MPTCP_PM_ADDR_ATTR_ID, id);
	mnl_attr_put_u32(nlh, MPTCP_PM_ADDR_ATTR_FLAGS, flags);
	mnl_attr_nest_end(nlh, nest);
	return nlh;
}

struct nlmsghdr *mptcp_pm_msg_set_limits(char *buf, uint16_t family,
					 unsigned subflows,
					 unsigned add_addr_accepted)
{
	struct nlmsghdr *nlh = genl_msg(buf, family, NLM_F_ACK,
					MPTCP_PM_CMD_SET_LIMITS, MPTCP_PM_VER);
	mnl_attr_put_u32(nlh, MPTCP_PM_ATTR_RCV_ADD_ADDRS, add_addr_accepted);
	mnl_attr_put_u32(nlh, MPTCP_PM_ATTR_SUBFLOWS, subflows);
	return nlh;
}

struct nlmsghdr *mptcp_pm_msg_dump(char *buf, uint16_t family)
{
	return genl_msg(buf, family, NLM_F_DUMP, MPTCP_PM_CMD_GET_ADDR,
			MPTCP_PM_VER);
}

/* ---- parsers ----------------------------------------------------------- */

/* What an attribute must look like; MNL_TYPE_UNSPEC: not used, skipped. */
struct attr_policy {
	enum mnl_attr_data_type type;
	size_t len; /* exact payload length; 0: libmnl's rule for the type */
};

struct attr_table {
	const struct attr_policy *policy;
	uint16_t max;
	const struct nlattr **tb;
};

/* Keep the attributes of the policy that are well formed; skip the rest
 * (newer kernels, attributes we do not use). A malformed one stops the
 * parse. */
static int attr_cb(const struct nlattr *a, void *data)
{
	const struct attr_table *t = data;
	uint16_t type = mnl_attr_get_type(a);

	if (type > t->max || t->policy[type].type == MNL_TYPE_UNSPEC)
		return MNL_CB_OK;
	const struct attr_policy *p = &t->policy[type];
	int rc = p->len ? mnl_attr_validate2(a, p->type, p->len)
			: mnl_attr_validate(a, p->type);
	if (rc < 0)
		return MNL_CB_ERROR;
	t->tb[type] = a;
	return MNL_CB_OK;
}

static const struct attr_policy ctrl_policy[CTRL_ATTR_MAX + 1] = {
	[CTRL_ATTR_FAMILY_ID] = { MNL_TYPE_U16, 0 },
	[CTRL_ATTR_FAMILY_NAME] = { MNL_TYPE_NUL_STRING, 0 },
};

static const struct attr_policy pm_policy[MPTCP_PM_ATTR_MAX + 1] = {
	[MPTCP_PM_ATTR_ADDR] = { MNL_TYPE_NESTED, 0 },
};

static const struct attr_policy pm_addr_policy[MPTCP_PM_ADDR_ATTR_MAX + 1] = {
	[MPTCP_PM_ADDR_ATTR_FAMILY] = { MNL_TYPE_U16, 0 },
	[MPTCP_PM_ADDR_ATTR_ID] = { MNL_TYPE_U8, 0 },
	[MPTCP_PM_ADDR_ATTR_ADDR4] = { MNL_TYPE_BINARY, 4 },
	[MPTCP_PM_ADDR_ATTR_ADDR6] = { MNL_TYPE_BINARY, 16 },
	[MPTCP_PM_ADDR_ATTR_PORT] = { MNL_TYPE_U16, 0 },
	[MPTCP_PM_ADDR_ATTR_FLAGS] = { MNL_TYPE_U32, 0 },
	[MPTCP_PM_ADDR_ATTR_IF_IDX] = { MNL_TYPE_U32, 0 },
};

/* The attributes after the genetlink header; 0 or -EPROTO. */
static int genl_parse(const struct nlmsghdr *nlh, const struct attr_policy *p,
		      uint16_t max, const struct nlattr **tb)
{
	struct attr_table t = { p, max, tb };

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct genlmsghdr) ||
	    mnl_attr_parse(nlh, sizeof(struct genlmsghdr), attr_cb, &t) !=
		    MNL_CB_OK)
		return -EPROTO;
	return 0;
}

int mptcp_pm_parse_family(const struct nlmsghdr *nlh, uint16_t *family)
{
	const struct nlattr *tb[CTRL_ATTR_MAX + 1] = { 0 };

	if (genl_parse(nlh, ctrl_policy, CTRL_ATTR_MAX, tb) < 0 ||
	    !tb[CTRL_ATTR_FAMILY_ID])
		return -EPROTO;
	if (tb[CTRL_ATTR_FAMILY_NAME] &&
	    strcmp(mnl_attr_get_str(tb[CTRL_ATTR_FAMILY_NAME]), MPTCP_PM_NAME))
		return -EPROTO;
	*family = mnl_attr_get_u16(tb[CTRL_ATTR_FAMILY_ID]);
	return *family ? 0 : -EPROTO;
}

int mptcp_pm_parse_endp(const struct nlmsghdr *nlh, struct mptcp_pm_endp *e)
{
	const struct nlattr *tb[MPTCP_PM_ATTR_MAX + 1] = { 0 };
	const struct nlattr *ta[MPTCP_PM_ADDR_ATTR_MAX + 1] = { 0 };
	struct attr_table t = { pm_addr_policy, MPTCP_PM_ADDR_ATTR_MAX, ta };

	memset(e, 0, sizeof(*e));
	if (genl_parse(nlh, pm_policy, MPTCP_PM_ATTR_MAX, tb) < 0 ||
	    !tb[MPTCP_PM_ATTR_ADDR] ||
	    mnl_attr_parse_nested(tb[MPTCP_PM_ATTR_ADDR], attr_cb, &t) !=
		    MNL_CB_OK ||
	    !ta[MPTCP_PM_ADDR_ATTR_ID])
		return -EPROTO;

	e->id = mnl_attr_get_u8(ta[MPTCP_PM_ADDR_ATTR_ID]);
	if (ta[MPTCP_PM_ADDR_ATTR_FLAGS])
		e->flags = mnl_attr_get_u32(ta[MPTCP_PM_ADDR_ATTR_FLAGS]);
	if (ta[MPTCP_PM_ADDR_ATTR_IF_IDX])
		e->ifindex = (int)mnl_attr_get_u32(ta[MPTCP_PM_ADDR_ATTR_IF_IDX]);
	uint16_t port = ta[MPTCP_PM_ADDR_ATTR_PORT] ?
		mnl_attr_get_u16(ta[MPTCP_PM_ADDR_ATTR_PORT]) : 0;
	uint16_t fam = ta[MPTCP_PM_ADDR_ATTR_FAMILY] ?
		mnl_attr_get_u16(ta[MPTCP_PM_ADDR_ATTR_FAMILY]) : AF_UNSPEC;

	switch (fam) {
	case AF_INET:
		if (!ta[MPTCP_PM_ADDR_ATTR_ADDR4])
			return -EPROTO;
		e->addr.in4.sin_family = AF_INET;
		e->addr.in4.sin_port = htons(port);
		memcpy(&e->addr.in4.sin_addr,
		       mnl_attr_get_payload(ta[MPTCP_PM_ADDR_ATTR_ADDR4]), 4);
		break;
	case AF_INET6:
		if (!ta[MPTCP_PM_ADDR_ATTR_ADDR6])
			return -EPROTO;
		e->addr.in6.sin6_family = AF_INET6;
		e->addr.in6.sin6_port = htons(port);
		memcpy(&e->addr.in6.sin6_addr,
		       mnl_attr_get_payload(ta[MPTCP_PM_ADDR_ATTR_ADDR6]), 16);
		break;
	default:
		/* Listed all the same: its id is taken. */
		e->addr.sa.sa_family = AF_UNSPEC;
	}
	return 0;
}

int mptcp_pm_pick_id(const bool taken[256], uint8_t want_id)
{
	if (!want_id)
		return -EINVAL;
	for (unsigned i = 0; i < 255; i++) {
		unsigned id = (want_id - 1u + i) % 255u + 1u;
		if (!taken[id])
			return (int)id;
	}
	return -ENOSPC;
}

/* ---- talking to the kernel --------------------------------------------- */

/* Callbacks never stop a reply half read (that would leave the rest in
 * the socket for the next request): a bad message is noted and skipped. */

struct family_reply {
	uint16_t family;
	int err;
};

static int family_cb(const struct nlmsghdr *nlh, void *data)
{
	struct family_reply *r = data;

	if (nlh->nlmsg_type != GENL_ID_CTRL)
		return MNL_CB_OK;
	if (mptcp_pm_parse_family(nlh, &r->family) < 0)
		r->err = -EPROTO;
	return MNL_CB_OK;
}

static int list_cb(const struct nlmsghdr *nlh, void *data)
{
	struct pm_list *l = data;
	struct mptcp_pm_endp e;

	if (nlh->nlmsg_type != l->family)
		return MNL_CB_OK;
	if (mptcp_pm_parse_endp(nlh, &e) < 0) {
		l->err = -EPROTO;
		return MNL_CB_OK;
	}
	if (e.id) {
		l->present[e.id] = true;
		l->ep[e.id] = e;
	}
	return MNL_CB_OK;
}

static int pm_list(struct mptcp_pm *pm, struct pm_list *l)
{
	char buf[MPTCP_PM_MSG_SIZE];
	int rc;

	for (int i = 0; i < PM_DUMP_TRIES; i++) {
		memset(l, 0, sizeof(*l));
		l->family = pm->family;
		rc = nl_talk(pm->nl, mptcp_pm_msg_dump(buf, pm->family),
			     list_cb, l);
		if (rc != -EINTR)
			break;
	}
	if (rc == 0 && l->err) {
		log_warn("mptcp endpoints: malformed entry in the kernel's list");
		rc = l->err;
	}
	return rc;
}

static int pm_request(struct mptcp_pm *pm, struct nlmsghdr *nlh)
{
	return nl_talk(pm->nl, nlh, NULL, NULL);
}

static bool same_ip(const union sockaddr_any *a, const union sockaddr_any *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
	if (a->sa.sa_family == AF_INET6)
		return IN6_ARE_ADDR_EQUAL(&a->in6.sin6_addr, &b->in6.sin6_addr);
	return false;
}

static uint16_t ep_port(const struct mptcp_pm_endp *e)
{
	return e->addr.sa.sa_family == AF_INET6 ? e->addr.in6.sin6_port
						: e->addr.in4.sin_port;
}

/* The id of the endpoint the kernel would call a duplicate of a "subflow"
 * endpoint for ip (same address, no port), or 0. */
static int list_find(const struct pm_list *l, const union sockaddr_any *ip)
{
	for (int id = 1; id < 256; id++)
		if (l->present[id] && !ep_port(&l->ep[id]) &&
		    same_ip(&l->ep[id].addr, ip))
			return id;
	return 0;
}

static const char *ip_fmt(const union sockaddr_any *a, char *buf)
{
	const void *src = a->sa.sa_family == AF_INET6
		? (const void *)&a->in6.sin6_addr : (const void *)&a->in4.sin_addr;
	if (!inet_ntop(a->sa.sa_family, src, buf, INET6_ADDRSTRLEN))
		strcpy(buf, "?");
	return buf;
}

/* Forget our endpoints the kernel no longer lists under their id with
 * their address: removed by someone else (the id maybe reused since), no
 * longer ours to touch. */
static void pm_own_sync(struct mptcp_pm *pm, const struct pm_list *l)
{
	char ip[INET6_ADDRSTRLEN];

	for (int id = 1; id < 256; id++) {
		struct pm_own *o = &pm->own[id];
		if (!o->used || (l->present[id] &&
				 same_ip(&l->ep[id].addr, &o->addr) &&
				 !(l->ep[id].flags & MPTCP_PM_ADDR_FLAG_IMPLICIT)))
			continue;
		log_info("mptcp endpoint %d (%s) was removed by someone else",
			 id, ip_fmt(&o->addr, ip));
		o->used = false;
	}
}

/* Delete endpoint id, which was ours when last listed. Gone meanwhile is
 * done (6.x says EINVAL, "address not found", for an unknown id). */
static int pm_del_id(struct mptcp_pm *pm, uint8_t id)
{
	char buf[MPTCP_PM_MSG_SIZE];
	int rc = pm_request(pm, mptcp_pm_msg_del(buf, pm->family, id));

	if (rc == -ENOENT)
		rc = 0;
	if (rc == -EINVAL) {
		struct pm_list *l = malloc(sizeof(*l));
		if (!l)
			return -ENOMEM;
		if (pm_list(pm, l) == 0 &&
		    !(l->present[id] &&
		      same_ip(&l->ep[id].addr, &pm->own[id].addr)))
			rc = 0;
		free(l);
	}
	if (rc == 0)
		pm->own[id].used = false;
	return rc;
}

/* Record endpoint e as ours; `what` happened to it (for the log). */
static void pm_own_set(struct mptcp_pm *pm, const struct mptcp_pm_endp *e,
		       const char *what)
{
	char ip[INET6_ADDRSTRLEN];

	pm->own[e->id] = (struct pm_own){
		.used = true, .addr = e->addr, .ifindex = e->ifindex,
	};
	log_debug("mptcp endpoint %u %s: %s ifindex %d flags 0x%x", e->id,
		  what, ip_fmt(&e->addr, ip), e->ifindex, e->flags);
}

/* ---- API --------------------------------------------------------------- */

struct mptcp_pm *mptcp_pm_open(int *err)
{
	char buf[MPTCP_PM_MSG_SIZE];
	struct family_reply r = { 0 };
	struct mptcp_pm *pm = calloc(1, sizeof(*pm));
	int rc;

	if (!pm) {
		*err = ENOMEM;
		return NULL;
	}
	pm->nl = nl_open(NETLINK_GENERIC, 0, false);
	if (!pm->nl) {
		*err = errno;
		free(pm);
		return NULL;
	}
	/* An unknown family: ENOENT from the kernel. */
	rc = nl_talk(pm->nl, mptcp_pm_msg_getfamily(buf), family_cb, &r);
	if (rc == 0)
		rc = r.err ? r.err : r.family ? 0 : -EPROTO;
	if (rc < 0) {
		*err = -rc;
		mnl_socket_close(pm->nl);
		free(pm);
		return NULL;
	}
	pm->family = r.family;
	return pm;
}

int mptcp_pm_set_limits(struct mptcp_pm *pm, unsigned subflows,
			unsigned add_addr_accepted)
{
	char buf[MPTCP_PM_MSG_SIZE];

	return pm_request(pm, mptcp_pm_msg_set_limits(buf, pm->family, subflows,
						      add_addr_accepted));
}

/* Our endpoint `id` (cur, as listed) for the address of `want`: keep it
 * (> 0, its id), change its backup flag in place (> 0), or delete it (0:
 * add anew) when more than that differs. Or -errno. */
static int pm_update(struct mptcp_pm *pm, uint8_t id,
		     const struct mptcp_pm_endp *cur, struct mptcp_pm_endp *want)
{
	char buf[MPTCP_PM_MSG_SIZE];
	uint32_t diff = (cur->flags ^ want->flags) & PM_FLAGS;

	if (cur->ifindex == want->ifindex && !diff)
		return id;
	if (cur->ifindex == want->ifindex && diff == MPTCP_PM_ADDR_FLAG_BACKUP) {
		int rc = pm_request(pm, mptcp_pm_msg_set_flags(buf, pm->family,
							       id, want->flags));
		if (rc < 0)
			return rc;
		want->id = id;
		pm_own_set(pm, want, "changed");
		return id;
	}
	int rc = pm_del_id(pm, id);
	return rc < 0 ? rc : 0;
}

/* Add `want` with the first free id from want_id on (want->id is set
 * here). 0 or -errno; -EBUSY (id taken meanwhile) is handled here. */
static int pm_add_free_id(struct mptcp_pm *pm, const struct pm_list *l,
			  struct mptcp_pm_endp *want, uint8_t want_id)
{
	char buf[MPTCP_PM_MSG_SIZE];
	bool taken[256];
	int rc;

	memcpy(taken, l->present, sizeof(taken));
	for (;;) {
		int id = mptcp_pm_pick_id(taken, want_id);
		if (id < 0)
			return id;
		want->id = (uint8_t)id;
		rc = pm_request(pm, mptcp_pm_msg_add(buf, pm->family, want));
		if (rc != -EBUSY)
			return rc;
		taken[id] = true;
	}
}

static int pm_add(struct mptcp_pm *pm, struct pm_list *l,
		  struct mptcp_pm_endp *want, uint8_t want_id)
{
	char buf[MPTCP_PM_MSG_SIZE];
	char ip[INET6_ADDRSTRLEN];
	bool took_implicit = false;
	int prev = 0;      /* the last failure that sent us round again */
	bool add_einval = false;

	for (int round = 0; round < PM_ADD_ROUNDS; round++) {
		int rc = pm_list(pm, l);
		if (rc < 0)
			return rc;
		pm_own_sync(pm, l);

		int have = list_find(l, &want->addr);
		if (have) {
			const struct mptcp_pm_endp *cur = &l->ep[have];
			if (pm->own[have].used) {
				rc = pm_update(pm, (uint8_t)have, cur, want);
				if (rc != 0)
					return rc;
				continue; /* deleted: add anew */
			}
			if (took_implicit && cur->ifindex == want->ifindex &&
			    (cur->flags & PM_FLAGS) == want->flags) {
				want->id = (uint8_t)have;
				pm_own_set(pm, want, "taken over");
				return have;
			}
			if (!(cur->flags & MPTCP_PM_ADDR_FLAG_IMPLICIT))
				return -EEXIST;
			/* The kernel's own: it replaces it, keeping the id and
			 * the subflows, only when asked without an id. */
			log_info("mptcp endpoint %d (%s): taking over the "
				 "kernel's implicit endpoint",
				 have, ip_fmt(&want->addr, ip));
			want->id = 0;
			rc = pm_request(pm, mptcp_pm_msg_add(buf, pm->family,
							     want));
			if (rc < 0 && rc != -EEXIST && rc != -EINVAL)
				return rc;
			took_implicit = rc == 0;
			if (rc < 0)
				prev = rc;
			continue; /* learn the id from the list */
		}
		/* EINVAL for an address not listed is the kernel's answer,
		 * not a race with an implicit endpoint. */
		if (add_einval)
			return -EINVAL;
		rc = pm_add_free_id(pm, l, want, want_id);
		if (rc == 0) {
			pm_own_set(pm, want, "added");
			return want->id;
		}
		/* EEXIST: the address came meanwhile; EINVAL: maybe as an
		 * implicit endpoint, which refuses an id. Look again. */
		if (rc != -EEXIST && rc != -EINVAL)
			return rc;
		prev = rc;
		add_einval = rc == -EINVAL;
	}
	return prev < 0 ? prev : -EAGAIN;
}

int mptcp_pm_add(struct mptcp_pm *pm, const union sockaddr_any *addr,
		 int ifindex, bool backup, uint8_t want_id)
{
	struct mptcp_pm_endp want = {
		.ifindex = ifindex,
		.flags = MPTCP_PM_ADDR_FLAG_SUBFLOW |
			 (backup ? MPTCP_PM_ADDR_FLAG_BACKUP : 0),
	};
	union sockaddr_any a = *addr;

	if (!want_id || ifindex < 0)
		return -EINVAL;
	addr_unmap(&a);
	if (a.sa.sa_family == AF_INET) {
		want.addr.in4.sin_family = AF_INET;
		want.addr.in4.sin_addr = a.in4.sin_addr;
	} else if (a.sa.sa_family == AF_INET6) {
		want.addr.in6.sin6_family = AF_INET6;
		want.addr.in6.sin6_addr = a.in6.sin6_addr;
	} else {
		return -EINVAL;
	}

	struct pm_list *l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	int rc = pm_add(pm, l, &want, want_id);
	free(l);
	return rc;
}

int mptcp_pm_del(struct mptcp_pm *pm, uint8_t id)
{
	if (!id || !pm->own[id].used)
		return -EPERM;

	struct pm_list *l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	int rc = pm_list(pm, l);
	if (rc == 0) {
		pm_own_sync(pm, l);
		if (pm->own[id].used)
			rc = pm_del_id(pm, id);
	}
	free(l);
	return rc;
}

void mptcp_pm_close(struct mptcp_pm *pm)
{
	char ip[INET6_ADDRSTRLEN];

	if (!pm)
		return;
	for (int id = 1; id < 256; id++) {
		if (!pm->own[id].used)
			continue;
		int rc = mptcp_pm_del(pm, (uint8_t)id);
		if (rc < 0)
			log_warn("mptcp endpoint %d (%s): delete: %s", id,
				 ip_fmt(&pm->own[id].addr, ip), strerror(-rc));
	}
	mnl_socket_close(pm->nl);
	free(pm);
}
