// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * delayemu: a one-way delay (and random loss) emulator on NFQUEUE, for test
 * beds whose kernel has no netem.
 *
 *   delayemu --queue NUM:DELAY_MS[:LOSS_PCT] [--queue ...] [--pidfile F]
 *
 * Each queue is bound on its own nfnetlink socket in copy mode META (no
 * payload: only the packet id matters). A packet queued by the kernel
 * (iptables ... -j NFQUEUE --queue-num NUM --queue-bypass) gets its verdict
 * exactly when DELAY_MS has elapsed since the kernel queued it: NF_ACCEPT, or
 * NF_DROP with probability LOSS_PCT/100. Verdicts are issued in FIFO order
 * per queue (a constant delay keeps the order), several at a time as
 * NFQNL_MSG_VERDICT_BATCH messages in one send. The loop sleeps in
 * epoll_wait(); an absolute CLOCK_MONOTONIC timerfd wakes it when the oldest
 * packet of any queue is due.
 *
 * Queue time: for packets queued in PREROUTING, NFQA_TIMESTAMP: skb->tstamp,
 * the wall-clock time the packet entered the namespace's receive path. The
 * kernel takes it only while some socket on the system has asked for receive
 * timestamps (a global static key), so delayemu holds one such socket (a
 * UDP socket with SO_TIMESTAMPNS; --no-rx-timestamps: not). The stamp must
 * be plausible (0 <= read time - stamp <= 1 s): a TCP sender's skb->tstamp
 * is its departure time on CLOCK_MONOTONIC, which read as wall-clock time is
 * decades old. In other hooks skb->tstamp may be an earlier receive time (of
 * a forwarded packet, perhaps delayed already), so it is not used there.
 * Otherwise, and when absent, the queue time is the time delayemu read the
 * message (CLOCK_MONOTONIC), which is later by the wake-up latency (some
 * 10 us to 100 us).
 *
 * Signals: SIGUSR1 prints the counters (one human line per queue, then one
 * JSON line) to stderr; SIGUSR2 prints them and then resets them; SIGTERM or
 * SIGINT gives every pending packet its verdict at once, prints the
 * counters and exits 0.
 */

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>

#define PROG "delayemu"
#define NSEC_PER_SEC 1000000000LL
#define NSEC_PER_MSEC 1000000LL
#define MAX_QUEUES 64
#define RECV_BUF_SIZE 65536
#define SEND_BUF_SIZE 65536
#define DRAIN_MAX 256		/* messages read per socket per wake-up */
#define TS_MAX_AGE NSEC_PER_SEC	/* plausibility bound of NFQA_TIMESTAMP */

struct pkt {
	uint32_t id;
	bool drop;
	int64_t due;		/* CLOCK_MONOTONIC ns */
};

struct stats {
	uint64_t packets;	/* received from the kernel */
	uint64_t accepted;
	uint64_t dropped;	/* by the loss option */
	uint64_t flushed;	/* verdict before due time (exit) */
	uint64_t verdicts;	/* accepted + dropped on time, for the mean */
	uint64_t late;		/* lateness > late threshold */
	int64_t late_sum;	/* ns */
	int64_t late_max;	/* ns */
	uint64_t kernel_ts;	/* queue time from NFQA_TIMESTAMP */
	uint64_t kernel_ts_rejected;
	int64_t read_lag_sum;	/* read time - NFQA_TIMESTAMP, ns */
	int64_t read_lag_max;
	uint64_t gso;		/* GSO packets (NFQA_SKB_GSO) */
	uint64_t enobufs;	/* receive buffer overruns */
	uint64_t verdict_errors;
	uint64_t max_pending;
	uint64_t sends;		/* verdict sends (each one or more verdicts) */
	int64_t send_sum;	/* their duration (reinjection included), ns */
	int64_t send_max;
};

struct queue {
	uint16_t num;
	double delay_ms;
	double loss_pct;
	int64_t delay_ns;
	uint64_t loss_threshold;	/* drop if rand64() < threshold */
	bool gso;
	struct mnl_socket *nl;
	int fd;
	uint32_t portid;
	struct pkt *ring;
	size_t cap, head, len;
	struct stats st;
	int64_t last_enobufs_log;
};

static struct queue queues[MAX_QUEUES];
static unsigned nqueues;
static uint32_t opt_maxlen = 20000;
static int opt_rcvbuf = 16 << 20;
static double opt_late_ms = 0.5;
static bool opt_fail_open;
static bool opt_rx_timestamps = true;
static int opt_rt_prio;
static const char *opt_pidfile;
static uint64_t rng_state[4];
static unsigned stats_seq;
static char sendbuf[SEND_BUF_SIZE];

static void die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
static void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;
	char line[512];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s\n", line);
	exit(1);
}

static void warnx(const char *fmt, ...)
{
	va_list ap;
	char line[512];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s\n", line);
}

static int64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static int64_t mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/*
 * CLOCK_REALTIME - CLOCK_MONOTONIC, for NFQA_TIMESTAMP. The wall clock is
 * read between two monotonic readings (retried if preempted in between) and
 * matched with the later one: an error makes a stamp look younger (a verdict
 * later), never older.
 */
static int64_t real_minus_mono(void)
{
	int64_t best = INT64_MAX, off = 0;

	for (int i = 0; i < 4 && best > 2000; i++) {
		int64_t m1 = mono_ns(), r = clock_ns(CLOCK_REALTIME), m2 = mono_ns();

		if (m2 - m1 < best) {
			best = m2 - m1;
			off = r - m2;
		}
	}
	return off;
}

/* xoshiro256** */
static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rand64(void)
{
	uint64_t *s = rng_state;
	uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

static void rng_seed(uint64_t seed)
{
	for (int i = 0; i < 4; i++) {	/* splitmix64 */
		uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		rng_state[i] = z ^ (z >> 31);
	}
}

/* ------------------------------------------------------------ arguments */

static bool parse_double(const char *s, double *out)
{
	char *end;

	if (*s == '\0')
		return false;
	errno = 0;
	*out = strtod(s, &end);
	return errno == 0 && *end == '\0' && isfinite(*out);
}

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno == 0 && *end == '\0' && *out <= max;
}

static void add_queue(const char *spec)
{
	char buf[128], *num, *delay, *loss;
	unsigned long n;
	double d, l = 0;
	struct queue *q;

	if (strlen(spec) >= sizeof(buf))
		die("--queue '%s': too long", spec);
	strcpy(buf, spec);
	num = buf;
	delay = strchr(num, ':');
	if (!delay)
		die("--queue '%s': expected NUM:DELAY_MS[:LOSS_PCT]", spec);
	*delay++ = '\0';
	loss = strchr(delay, ':');
	if (loss)
		*loss++ = '\0';
	if (!parse_ulong(num, 65535, &n))
		die("--queue '%s': queue number must be 0..65535", spec);
	if (!parse_double(delay, &d) || d < 0 || d > 60000)
		die("--queue '%s': delay must be 0..60000 ms", spec);
	if (loss && (!parse_double(loss, &l) || l < 0 || l > 100))
		die("--queue '%s': loss must be 0..100 %%", spec);
	for (unsigned i = 0; i < nqueues; i++)
		if (queues[i].num == n)
			die("--queue '%s': queue %lu given twice", spec, n);
	if (nqueues == MAX_QUEUES)
		die("too many queues (at most %d)", MAX_QUEUES);
	q = &queues[nqueues++];
	memset(q, 0, sizeof(*q));
	q->num = (uint16_t)n;
	q->delay_ms = d;
	q->loss_pct = l;
	q->delay_ns = llround(d * NSEC_PER_MSEC);
	q->loss_threshold = l >= 100 ? UINT64_MAX
				     : (uint64_t)ldexp(l / 100.0, 64);
	q->fd = -1;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: " PROG " --queue NUM:DELAY_MS[:LOSS_PCT] [--queue ...] [options]\n"
"  Delays the packets of NFQUEUE queue NUM by DELAY_MS (fractional allowed)\n"
"  and drops LOSS_PCT %% of them at random (0 by default).\n"
"options:\n"
"  --pidfile FILE   written once every queue is bound (a ready signal)\n"
"  --maxlen N       kernel queue length per queue (default 20000)\n"
"  --rcvbuf BYTES   netlink receive buffer (default 16 MiB, SO_RCVBUFFORCE)\n"
"  --late-ms MS     a verdict later than this counts as late (default 0.5)\n"
"  --seed N         seed of the loss generator (default: random)\n"
"  --fail-open      accept packets when the kernel queue is full (default:\n"
"                   the kernel drops them)\n"
"  --rt-prio N      run with SCHED_FIFO priority N (1..99)\n"
"  --no-rx-timestamps  do not switch on the kernel's receive timestamps\n"
"                   (then a packet's queue time is when delayemu read it)\n"
"signals: USR1 prints counters to stderr, USR2 prints and resets them,\n"
"         TERM/INT releases pending packets, prints counters, exits 0\n");
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "maxlen", required_argument, NULL, 'm' },
		{ "rcvbuf", required_argument, NULL, 'r' },
		{ "late-ms", required_argument, NULL, 'l' },
		{ "seed", required_argument, NULL, 's' },
		{ "fail-open", no_argument, NULL, 'f' },
		{ "rt-prio", required_argument, NULL, 'R' },
		{ "no-rx-timestamps", no_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool seeded = false;
	unsigned long v;
	int c;

	while ((c = getopt_long(argc, argv, "q:p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			add_queue(optarg);
			break;
		case 'p':
			opt_pidfile = optarg;
			break;
		case 'm':
			if (!parse_ulong(optarg, 1000000, &v) || v == 0)
				die("--maxlen '%s': must be 1..1000000", optarg);
			opt_maxlen = (uint32_t)v;
			break;
		case 'r':
			if (!parse_ulong(optarg, 1UL << 30, &v) || v < 4096)
				die("--rcvbuf '%s': must be 4096..1073741824", optarg);
			opt_rcvbuf = (int)v;
			break;
		case 'l':
			if (!parse_double(optarg, &opt_late_ms) || opt_late_ms < 0)
				die("--late-ms '%s': must be a number >= 0", optarg);
			break;
		case 's':
			if (!parse_ulong(optarg, ULONG_MAX, &v))
				die("--seed '%s': must be a non-negative integer", optarg);
			rng_seed(v);
			seeded = true;
			break;
		case 'f':
			opt_fail_open = true;
			break;
		case 'R':
			if (!parse_ulong(optarg, 99, &v) || v == 0)
				die("--rt-prio '%s': must be 1..99", optarg);
			opt_rt_prio = (int)v;
			break;
		case 'T':
			opt_rx_timestamps = false;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	if (nqueues == 0)
		die("no --queue given (see --help)");
	if (!seeded) {
		uint64_t seed;

		if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
			seed = (uint64_t)clock_ns(CLOCK_REALTIME) ^ (uint64_t)getpid();
		rng_seed(seed);
	}
}

/* ------------------------------------------------------------ the FIFO */

static void ring_push(struct queue *q, uint32_t id, bool drop, int64_t due)
{
	if (q->len == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 1024;
		struct pkt *n = malloc(ncap * sizeof(*n));

		if (!n)
			die("queue %u: out of memory (%zu packets pending)", q->num,
			    q->len);
		for (size_t i = 0; i < q->len; i++)
			n[i] = q->ring[(q->head + i) & (q->cap - 1)];
		free(q->ring);
		q->ring = n;
		q->cap = ncap;
		q->head = 0;
	}
	q->ring[(q->head + q->len) & (q->cap - 1)] = (struct pkt){ id, drop, due };
	q->len++;
	if (q->len > q->st.max_pending)
		q->st.max_pending = q->len;
}

static struct pkt *ring_head(struct queue *q)
{
	return q->len ? &q->ring[q->head] : NULL;
}

static void ring_pop(struct queue *q)
{
	q->head = (q->head + 1) & (q->cap - 1);
	q->len--;
}

/* ------------------------------------------------------------ netlink */

static struct nlmsghdr *nfq_msg(char *buf, uint8_t type, uint16_t queue_num)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfg;

	nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | type;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_UNSPEC;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = htons(queue_num);
	return nlh;
}

struct pkt_attrs {
	const struct nlattr *tb[NFQA_MAX + 1];
};

static int attr_cb(const struct nlattr *attr, void *data)
{
	struct pkt_attrs *a = data;
	int type = mnl_attr_get_type(attr);

	if (type <= NFQA_MAX)
		a->tb[type] = attr;
	return MNL_CB_OK;
}

static void handle_packet(struct queue *q, const struct nlmsghdr *nlh,
			  int64_t read_mono, int64_t real_minus_mono)
{
	struct pkt_attrs a = { { 0 } };
	const struct nfqnl_msg_packet_hdr *ph;
	int64_t qtime = read_mono;
	uint32_t id;
	bool drop;

	if (mnl_attr_parse(nlh, sizeof(struct nfgenmsg), attr_cb, &a) < 0 ||
	    !a.tb[NFQA_PACKET_HDR] ||
	    mnl_attr_get_payload_len(a.tb[NFQA_PACKET_HDR]) < sizeof(*ph)) {
		warnx("queue %u: malformed packet message ignored", q->num);
		return;
	}
	ph = mnl_attr_get_payload(a.tb[NFQA_PACKET_HDR]);
	id = ntohl(ph->packet_id);
	q->st.packets++;
	if (ph->hook == NF_INET_PRE_ROUTING && a.tb[NFQA_TIMESTAMP] &&
	    mnl_attr_get_payload_len(a.tb[NFQA_TIMESTAMP]) >=
		    sizeof(struct nfqnl_msg_packet_timestamp)) {
		struct nfqnl_msg_packet_timestamp ts;
		int64_t t, lag;

		uint64_t sec, usec;

		memcpy(&ts, mnl_attr_get_payload(a.tb[NFQA_TIMESTAMP]), sizeof(ts));
		sec = be64toh(ts.sec);
		usec = be64toh(ts.usec);
		if (sec < (uint64_t)(INT64_MAX / NSEC_PER_SEC) - 1 &&
		    usec < 1000000) {
			t = (int64_t)sec * NSEC_PER_SEC + (int64_t)usec * 1000 -
			    real_minus_mono;
			lag = read_mono - t;
		} else {
			lag = INT64_MAX;
		}
		/* usec resolution: up to 1 us "in the future" is rounding */
		if (lag >= -1000 && lag <= TS_MAX_AGE) {
			if (lag < 0)
				lag = 0;
			qtime = read_mono - lag;
			q->st.kernel_ts++;
			q->st.read_lag_sum += lag;
			if (lag > q->st.read_lag_max)
				q->st.read_lag_max = lag;
		} else {
			q->st.kernel_ts_rejected++;
		}
	}
	if (a.tb[NFQA_SKB_INFO] &&
	    (ntohl(mnl_attr_get_u32(a.tb[NFQA_SKB_INFO])) & NFQA_SKB_GSO))
		q->st.gso++;
	drop = q->loss_threshold && rand64() < q->loss_threshold;
	ring_push(q, id, drop, qtime + q->delay_ns);
}

/* Returns 0, or -errno of an NLMSG_ERROR carrying sequence number seq. */
static int handle_messages(struct queue *q, const char *buf, size_t len,
			   int64_t read_mono, uint32_t seq, bool *acked)
{
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
	int64_t offs = real_minus_mono();
	int ret = 0;
	int n = (int)len;

	for (; mnl_nlmsg_ok(nlh, n); nlh = mnl_nlmsg_next(nlh, &n)) {
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

			if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
				continue;
			if (seq && nlh->nlmsg_seq == seq) {
				*acked = true;
				ret = e->error;
			} else if (e->error) {
				q->st.verdict_errors++;
				if (q->st.verdict_errors <= 5)
					warnx("queue %u: verdict: %s", q->num,
					      strerror(-e->error));
			}
			continue;
		}
		if (nlh->nlmsg_type ==
		    ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
			handle_packet(q, nlh, read_mono, offs);
	}
	return ret;
}

/* Read up to max messages; false on a fatal error. */
static bool drain(struct queue *q, int max)
{
	static char buf[RECV_BUF_SIZE];

	for (int i = 0; i < max; i++) {
		ssize_t n = recv(q->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				int64_t now = mono_ns();

				q->st.enobufs++;
				if (now - q->last_enobufs_log > NSEC_PER_SEC) {
					q->last_enobufs_log = now;
					warnx("queue %u: netlink receive buffer "
					      "overrun (ENOBUFS, %" PRIu64
					      " so far): packets dropped by the "
					      "kernel", q->num, q->st.enobufs);
				}
				continue;
			}
			warnx("queue %u: recv: %s", q->num, strerror(errno));
			return false;
		}
		handle_messages(q, buf, (size_t)n, mono_ns(), 0, NULL);
	}
	return true;
}

/* Send a request with NLM_F_ACK and wait for its answer; -errno or 0. */
static int request(struct queue *q, struct nlmsghdr *nlh)
{
	static uint32_t seq_counter;
	static char buf[RECV_BUF_SIZE];
	uint32_t seq = ++seq_counter;
	bool acked = false;
	int err = 0;

	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	while (!acked) {
		ssize_t n = recv(q->fd, buf, sizeof(buf), 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				q->st.enobufs++;
				continue;
			}
			return -errno;
		}
		err = handle_messages(q, buf, (size_t)n, mono_ns(), seq, &acked);
	}
	return err;
}

/* Netlink port id bound to queue num in this namespace, 0 if none. */
static uint32_t queue_owner(unsigned num)
{
	FILE *f = fopen("/proc/net/netfilter/nfnetlink_queue", "re");
	unsigned n, portid, rest[6];
	int one;
	uint32_t owner = 0;

	if (!f)
		return 0;
	while (fscanf(f, "%u %u %u %u %u %u %u %u %d", &n, &portid, &rest[0],
		      &rest[1], &rest[2], &rest[3], &rest[4], &rest[5],
		      &one) == 9)
		if (n == num)
			owner = portid;
	fclose(f);
	return owner;
}

static void open_queue(struct queue *q)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh;
	struct nfqnl_msg_config_cmd cmd = { .command = NFQNL_CFG_CMD_BIND };
	struct nfqnl_msg_config_params params = { .copy_mode = NFQNL_COPY_META };
	uint32_t flags = 0, mask;
	int err;

	q->nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!q->nl)
		die("queue %u: netlink socket: %s", q->num, strerror(errno));
	if (mnl_socket_bind(q->nl, 0, MNL_SOCKET_AUTOPID) < 0)
		die("queue %u: netlink bind: %s", q->num, strerror(errno));
	q->fd = mnl_socket_get_fd(q->nl);
	q->portid = mnl_socket_get_portid(q->nl);
	if (setsockopt(q->fd, SOL_SOCKET, SO_RCVBUFFORCE, &opt_rcvbuf,
		       sizeof(opt_rcvbuf)) < 0 &&
	    setsockopt(q->fd, SOL_SOCKET, SO_RCVBUF, &opt_rcvbuf,
		       sizeof(opt_rcvbuf)) < 0)
		die("queue %u: SO_RCVBUF %d: %s", q->num, opt_rcvbuf,
		    strerror(errno));

	nlh = nfq_msg(buf, NFQNL_MSG_CONFIG, q->num);
	mnl_attr_put(nlh, NFQA_CFG_CMD, sizeof(cmd), &cmd);
	err = request(q, nlh);
	if (err) {
		/* The kernel answers EPERM both without CAP_NET_ADMIN and when
		 * another socket has bound the queue: tell which. */
		uint32_t owner = queue_owner(q->num);

		if (err == -EPERM && owner && owner != q->portid)
			die("queue %u: bind: %s (already bound by netlink port "
			    "%u, another process)", q->num, strerror(-err), owner);
		die("queue %u: bind: %s", q->num, strerror(-err));
	}

	nlh = nfq_msg(buf, NFQNL_MSG_CONFIG, q->num);
	mnl_attr_put(nlh, NFQA_CFG_PARAMS, sizeof(params), &params);
	mnl_attr_put_u32(nlh, NFQA_CFG_QUEUE_MAXLEN, htonl(opt_maxlen));
	err = request(q, nlh);
	if (err)
		die("queue %u: set copy mode and maxlen %u: %s", q->num,
		    opt_maxlen, strerror(-err));

	/* GSO packets are queued whole (not segmented, no drop if segmenting
	 * fails) unless the queue drops at random: then loss applies per
	 * wire-sized packet, so the kernel segments them. */
	q->gso = q->loss_threshold == 0;
	mask = NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN;
	if (q->gso)
		flags |= NFQA_CFG_F_GSO;
	if (opt_fail_open)
		flags |= NFQA_CFG_F_FAIL_OPEN;
	nlh = nfq_msg(buf, NFQNL_MSG_CONFIG, q->num);
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(mask));
	err = request(q, nlh);
	if (err)
		die("queue %u: set flags 0x%x: %s", q->num, flags, strerror(-err));

	if (fcntl(q->fd, F_SETFL, fcntl(q->fd, F_GETFL) | O_NONBLOCK) < 0)
		die("queue %u: O_NONBLOCK: %s", q->num, strerror(errno));
}

/* ------------------------------------------------------------ verdicts */

static size_t sendlen;

static void flush_send(struct queue *q)
{
	if (sendlen == 0)
		return;
	if (mnl_socket_sendto(q->nl, sendbuf, sendlen) < 0) {
		q->st.verdict_errors++;
		if (q->st.verdict_errors <= 5)
			warnx("queue %u: sending verdicts: %s", q->num,
			      strerror(errno));
	}
	sendlen = 0;
}

static void put_verdict(struct queue *q, uint32_t id, bool drop)
{
	struct nlmsghdr *nlh;
	struct nfqnl_msg_verdict_hdr vh;

	if (sendlen + 64 > sizeof(sendbuf))
		flush_send(q);
	nlh = nfq_msg(sendbuf + sendlen, NFQNL_MSG_VERDICT_BATCH, q->num);
	vh.verdict = htonl(drop ? NF_DROP : NF_ACCEPT);
	vh.id = htonl(id);
	mnl_attr_put(nlh, NFQA_VERDICT_HDR, sizeof(vh), &vh);
	sendlen += NLMSG_ALIGN(nlh->nlmsg_len);
}

/*
 * Verdicts for the packets due at now (every pending one if all), in FIFO
 * order: one batch verdict per run of equal verdicts (a batch verdict covers
 * every queued packet whose id is not after its id, and every earlier packet
 * has had its verdict already). A packet's lateness is counted from its due
 * time to the end of the send: the kernel reinjects the packets of a send
 * one after the other, each through the rest of the stack, in this call.
 */
static void release(struct queue *q, int64_t now, bool all)
{
	struct pkt *p;
	uint32_t run_id = 0;
	bool run_drop = false, in_run = false;
	size_t first = q->head, n = 0;
	int64_t start, sent;

	while ((p = ring_head(q)) && (all || p->due <= now)) {
		if (in_run && p->drop != run_drop)
			put_verdict(q, run_id, run_drop);
		run_id = p->id;
		run_drop = p->drop;
		in_run = true;
		ring_pop(q);
		n++;
	}
	if (!in_run)
		return;
	put_verdict(q, run_id, run_drop);
	start = mono_ns();
	flush_send(q);
	sent = mono_ns();
	q->st.sends++;
	q->st.send_sum += sent - start;
	if (sent - start > q->st.send_max)
		q->st.send_max = sent - start;
	for (size_t i = 0; i < n; i++) {
		p = &q->ring[(first + i) & (q->cap - 1)];
		if (p->drop)
			q->st.dropped++;
		else
			q->st.accepted++;
		if (p->due > sent) {
			q->st.flushed++;
			continue;
		}
		int64_t late = sent - p->due;

		q->st.verdicts++;
		q->st.late_sum += late;
		if (late > q->st.late_max)
			q->st.late_max = late;
		if (late > (int64_t)(opt_late_ms * NSEC_PER_MSEC))
			q->st.late++;
	}
}

/* ------------------------------------------------------------ counters */

struct kstats {
	bool found;
	unsigned total, dropped, user_dropped;
};

static struct kstats kernel_stats(const struct queue *q)
{
	struct kstats k = { 0 };
	FILE *f = fopen("/proc/net/netfilter/nfnetlink_queue", "re");
	unsigned num, portid, total, mode, range, qd, ud, seq;
	int one;

	if (!f)
		return k;
	while (fscanf(f, "%u %u %u %u %u %u %u %u %d", &num, &portid, &total,
		      &mode, &range, &qd, &ud, &seq, &one) == 9) {
		if (num == q->num && portid == q->portid) {
			k.found = true;
			k.total = total;
			k.dropped = qd;
			k.user_dropped = ud;
		}
	}
	fclose(f);
	return k;
}

static double ms(int64_t ns)
{
	return (double)ns / NSEC_PER_MSEC;
}

static void print_stats(const char *event)
{
	char json[16384];
	size_t off = 0;

	stats_seq++;
#define J(...) (off += (size_t)snprintf(json + off, off < sizeof(json) ? \
					sizeof(json) - off : 0, __VA_ARGS__))
	J("{\"delayemu\": %u, \"event\": \"%s\", \"pid\": %d, \"queues\": [",
	  stats_seq, event, (int)getpid());
	for (unsigned i = 0; i < nqueues; i++) {
		struct queue *q = &queues[i];
		struct stats *s = &q->st;
		struct kstats k = kernel_stats(q);
		double mean = s->verdicts ? ms(s->late_sum) / (double)s->verdicts : 0;
		double lag = s->kernel_ts ? ms(s->read_lag_sum) / (double)s->kernel_ts : 0;

		fprintf(stderr, PROG ": queue %u: delay %.3f ms loss %.2f %%: "
			"packets %" PRIu64 " accepted %" PRIu64 " dropped %" PRIu64
			" late %" PRIu64 " (> %.3f ms), lateness mean %.4f max "
			"%.4f ms, pending %zu (max %" PRIu64 "), kernel ts %"
			PRIu64 " (rejected %" PRIu64 ", read lag mean %.4f max "
			"%.4f ms), gso %" PRIu64 ", enobufs %" PRIu64
			", verdict errors %" PRIu64 ", kernel queue_dropped %u "
			"user_dropped %u\n",
			q->num, q->delay_ms, q->loss_pct, s->packets, s->accepted,
			s->dropped, s->late, opt_late_ms, mean, ms(s->late_max),
			q->len, s->max_pending, s->kernel_ts,
			s->kernel_ts_rejected, lag, ms(s->read_lag_max), s->gso,
			s->enobufs, s->verdict_errors, k.dropped, k.user_dropped);
		J("%s{\"queue\": %u, \"delay_ms\": %.6f, \"loss_pct\": %.6f, "
		  "\"packets\": %" PRIu64 ", \"accepted\": %" PRIu64
		  ", \"dropped\": %" PRIu64 ", \"flushed\": %" PRIu64
		  ", \"verdicts\": %" PRIu64 ", \"late\": %" PRIu64
		  ", \"late_threshold_ms\": %.6f, \"lateness_mean_ms\": %.6f"
		  ", \"lateness_max_ms\": %.6f, \"lateness_sum_ns\": %" PRId64
		  ", \"pending\": %zu, \"max_pending\": %" PRIu64
		  ", \"kernel_ts\": %" PRIu64 ", \"kernel_ts_rejected\": %" PRIu64
		  ", \"read_lag_mean_ms\": %.6f, \"read_lag_max_ms\": %.6f"
		  ", \"gso\": %" PRIu64 ", \"gso_enabled\": %s, \"enobufs\": %"
		  PRIu64 ", \"verdict_errors\": %" PRIu64
		  ", \"sends\": %" PRIu64 ", \"send_mean_ms\": %.6f"
		  ", \"send_max_ms\": %.6f"
		  ", \"kernel_queue_total\": %u, \"kernel_queue_dropped\": %u"
		  ", \"kernel_user_dropped\": %u}",
		  i ? ", " : "", q->num, q->delay_ms, q->loss_pct, s->packets,
		  s->accepted, s->dropped, s->flushed, s->verdicts, s->late,
		  opt_late_ms, mean, ms(s->late_max), s->late_sum, q->len,
		  s->max_pending, s->kernel_ts, s->kernel_ts_rejected, lag,
		  ms(s->read_lag_max), s->gso, q->gso ? "true" : "false",
		  s->enobufs, s->verdict_errors, s->sends,
		  s->sends ? ms(s->send_sum) / (double)s->sends : 0,
		  ms(s->send_max), k.total, k.dropped, k.user_dropped);
	}
	J("]}");
#undef J
	if (off >= sizeof(json))
		warnx("counters: JSON line truncated");
	else
		fprintf(stderr, "%s\n", json);
}

static void reset_stats(void)
{
	for (unsigned i = 0; i < nqueues; i++) {
		memset(&queues[i].st, 0, sizeof(queues[i].st));
		queues[i].st.max_pending = queues[i].len;
	}
}

/* ------------------------------------------------------------ main */

static void write_pidfile(void)
{
	FILE *f;

	if (!opt_pidfile)
		return;
	f = fopen(opt_pidfile, "we");
	if (!f)
		die("pidfile %s: %s", opt_pidfile, strerror(errno));
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) != 0)
		die("pidfile %s: %s", opt_pidfile, strerror(errno));
}

static void arm_timer(int tfd)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	int64_t next = INT64_MAX;

	for (unsigned i = 0; i < nqueues; i++) {
		struct pkt *p = ring_head(&queues[i]);

		if (p && p->due < next)
			next = p->due;
	}
	if (next != INT64_MAX) {
		if (next <= 0)
			next = 1;	/* 0 would disarm */
		its.it_value.tv_sec = next / NSEC_PER_SEC;
		its.it_value.tv_nsec = next % NSEC_PER_SEC;
	}
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		die("timerfd_settime: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	struct epoll_event ev, evs[MAX_QUEUES + 2];
	sigset_t sigs;
	int ep, tfd, sfd;
	bool stop = false;

	setvbuf(stderr, NULL, _IOLBF, 0);
	parse_args(argc, argv);

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	sigaddset(&sigs, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0)
		die("sigprocmask: %s", strerror(errno));
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		die("signalfd: %s", strerror(errno));
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (tfd < 0)
		die("timerfd_create: %s", strerror(errno));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));
	/* no timer slack: wake-ups as close to the due time as the kernel can */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	if (opt_rx_timestamps) {
		/* held open until exit: receive timestamps stay on */
		int one = 1, tsfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

		if (tsfd < 0 || setsockopt(tsfd, SOL_SOCKET, SO_TIMESTAMPNS,
					   &one, sizeof(one)) < 0)
			warnx("receive timestamps: %s (queue times are read "
			      "times)", strerror(errno));
	}
	if (opt_rt_prio) {
		struct sched_param sp = { .sched_priority = opt_rt_prio };

		if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0)
			warnx("SCHED_FIFO priority %d: %s (running at normal "
			      "priority)", opt_rt_prio, strerror(errno));
	}

	for (unsigned i = 0; i < nqueues; i++) {
		open_queue(&queues[i]);
		ev.events = EPOLLIN;
		ev.data.u32 = i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, queues[i].fd, &ev) < 0)
			die("epoll_ctl: %s", strerror(errno));
	}
	ev.events = EPOLLIN;
	ev.data.u32 = MAX_QUEUES;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	ev.data.u32 = MAX_QUEUES + 1;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	write_pidfile();
	for (unsigned i = 0; i < nqueues; i++)
		fprintf(stderr, PROG ": queue %u: delay %.3f ms, loss %.2f %%%s\n",
			queues[i].num, queues[i].delay_ms, queues[i].loss_pct,
			queues[i].gso ? "" : " (GSO packets segmented)");

	while (!stop) {
		int n = epoll_wait(ep, evs, MAX_QUEUES + 2, -1);
		int64_t now;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			uint32_t k = evs[i].data.u32;

			if (k < MAX_QUEUES) {
				if (!drain(&queues[k], DRAIN_MAX))
					exit(1);
			} else if (k == MAX_QUEUES) {
				uint64_t exp;

				if (read(tfd, &exp, sizeof(exp)) < 0 &&
				    errno != EAGAIN)
					die("timerfd read: %s", strerror(errno));
			} else {
				struct signalfd_siginfo si;

				while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGUSR1)
						print_stats("usr1");
					else if (si.ssi_signo == SIGUSR2) {
						print_stats("usr2");
						reset_stats();
					} else if (si.ssi_signo != SIGHUP)
						stop = true;
				}
			}
		}
		now = mono_ns();
		for (unsigned i = 0; i < nqueues; i++)
			release(&queues[i], now, stop);
		if (!stop)
			arm_timer(tfd);
	}
	print_stats("exit");
	for (unsigned i = 0; i < nqueues; i++) {
		mnl_socket_close(queues[i].nl);
		free(queues[i].ring);
	}
	close(ep);
	close(tfd);
	close(sfd);
	if (opt_pidfile)
		unlink(opt_pidfile);
	return 0;
}
