# SPDX-License-Identifier: GPL-2.0-or-later
r"""Link monitor (issue "Link monitor"): with `wans` in its configuration
the daemon owns the router's multipath set-up — one MPTCP endpoint per
healthy WAN (flags subflow, + backup for a backup WAN), a routing table
per WAN (`default via GATEWAY dev WAN`) with a rule `from WAN-ADDRESS`,
and a rule `fwmark <upstream mark>` to a table whose default route goes
via the best healthy WAN — and follows each WAN's health (carrier, and
probes per `linkmon`).

  lan ── rtr ══ wan1 ══ isp1 ══╗
  (mpredir,     wan2 ══ isp2 ══╩══ srv (SOCKS, MPTCP) ── dst
   reference rules)

Own topology for this module: Topology(isp=True, wan_setup="daemon"):
rtr has no endpoint, no per-WAN rule and no route to the server until the
daemon adds them (see test/lib/topo.py); its main table routes nothing
through wan2 and only the direct path (198.18.0.0/15) through wan1. So
the daemon's probes (bound to a WAN's device and address) can only leave
by the daemon's own per-WAN table and `from` rule, and its upstream
connections only by its fwmark rule. Faults: `set_carrier` (ispN's side
of the line goes down: rtr's wanN shows NO-CARRIER, still admin up) and
`blackhole` (ispN drops what it forwards for rtr; rtr's carrier stays up,
the gateway still answers).

The test_linkmon_topology_* tests do by hand what the daemon is to do
(without its link monitor) and show that the topology and the kernel give
the behaviour the daemon tests expect. The other tests need the feature.
"""

import os
import re
import signal
import threading
import time

import pytest

import clients
import mpredir_daemon
import socks_servers
import topo as T

MiB = 1 << 20
JOIN_SYN_RX = "MPTcpExtMPJoinSynRx"
JOIN_ACK_RX = "MPTcpExtMPJoinAckRx"
MARK = mpredir_daemon.DEFAULT_MARK      # upstream.mark, 0x4d50

# ------------------------------------------------------------------------
# What the tests expect of the implementation (keep in one place).
# ------------------------------------------------------------------------
# protocol number of the daemon's routes and rules ("proto 77")
PROTO = 77
# log lines (regular expressions, searched anywhere in the daemon's log;
# {wan} is the interface name)
LOG_CARRIER_DOWN = r"wan {wan} down: carrier lost"
LOG_PROBES_DOWN = r"wan {wan} down: \d+ probes lost"
LOG_UP = r"wan {wan} up\b"
LOG_DOWN = r"wan {wan} down\b"
LOG_RELOADED = r"reloaded "
LOG_REMOVED = r"wan {wan} removed"
LOG_ADDED = r"wan {wan} added"
LOG_MODE = r"wan {wan}: now {mode}\b"
# timing bounds, seconds
CARRIER_DOWN_S = 1.0     # carrier lost -> its endpoint gone
READY_S = 5.0            # daemon listening -> endpoints and rules in place
MARGIN_S = 1.0           # added to the probe-driven bounds below
# probe-driven bounds (from the linkmon config of the test):
#   down: down_after x interval_ms + timeout_ms + MARGIN_S
#   up:   up_after   x interval_ms + timeout_ms + MARGIN_S
RELOAD_S = 5.0           # SIGHUP -> "reloaded" logged
# shaping of both WAN lines for the downloads that must last a while
RATE_MBIT = 20
BIG = 64 * MiB           # ~14 s over two 20 Mbit/s lines, ~28 s over one
FETCH_TIMEOUT = 150

LINKMON_FAST = {"probe": "tcp", "interval_ms": 300, "timeout_ms": 300,
                "down_after": 3, "up_after": 2}


def down_bound(lm):
    return (lm["down_after"] * lm["interval_ms"] + lm["timeout_ms"]) / 1000 \
        + MARGIN_S


def up_bound(lm):
    return (lm["up_after"] * lm["interval_ms"] + lm["timeout_ms"]) / 1000 \
        + MARGIN_S


def wans_config(wan2_mode="active", gateways=True, tables=None):
    """The `wans` section: wan1 active, wan2 active or backup."""
    out = []
    for w, mode in (("wan1", "active"), ("wan2", wan2_mode)):
        d = {"interface": w, "mode": mode}
        if gateways:
            d["gateway"] = T.WAN_GW[w]
        if tables:
            d["table"] = tables[w]
        out.append(d)
    return out


# ------------------------------------------------------------------------
# Fixtures: this module's own topology (the session one has a static set-up)
# ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def topology():
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root (network namespaces)")
    t = T.Topology(isp=True, wan_setup="daemon")
    t.setup()
    yield t
    t.teardown()


@pytest.fixture(scope="module")
def socks_farm(topology):
    farm = socks_servers.SocksFarm(topology)
    farm.start()
    yield farm
    farm.stop()


def wipe_rtr(t):
    """rtr back to its initial state: no endpoint, no proto-77 rule or
    route, default MPTCP limits, lines up and unshaped."""
    t.restore_wans()
    t.ip("rtr", "mptcp endpoint flush")
    t.ip("rtr", "mptcp limits set subflow 2 add_addr_accepted 0")
    for fam in (4, 6):
        for r in t.ip_rules(family=fam, protocol=PROTO):
            t.ip("rtr", ["-%d" % fam, "rule", "del", "priority",
                         str(r["priority"]), "proto", str(PROTO)],
                 check=False)
        t.run("rtr", ["ip", "-%d" % fam, "route", "flush", "table", "all",
                      "proto", str(PROTO)], check=False)


@pytest.fixture(autouse=True)
def clean_rtr(topology):
    """Every test starts from (and leaves) a router without multipath
    set-up, whatever a failed test or daemon left."""
    wipe_rtr(topology)
    yield
    wipe_rtr(topology)


# ------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------
def endpoint(t, wan):
    """rtr's MPTCP endpoint for wan's address, or None."""
    for e in t.mptcp_endpoints():
        if e.get("address") == T.WAN_ADDR[wan]:
            return e
    return None


def fwmark_rule(t, mark=MARK):
    for r in t.ip_rules(protocol=PROTO):
        if "fwmark" in r and int(r["fwmark"], 16) == mark:
            return r
    return None


def from_rule(t, wan):
    for r in t.ip_rules(protocol=PROTO):
        if r.get("src") == T.WAN_ADDR[wan] and r.get("srclen", 32) == 32:
            return r
    return None


def default_route(t, table):
    """(gateway, dev, protocol) of the default route of table, or None."""
    for r in t.ip_routes(table):
        if r.get("dst") == "default":
            return r.get("gateway"), r.get("dev"), str(r.get("protocol"))
    return None


def best_wan(t, mark=MARK):
    """The WAN whose gateway the fwmark rule's table routes by, or None."""
    r = fwmark_rule(t, mark)
    if r is None:
        return None
    d = default_route(t, r["table"])
    if d is None:
        return None
    for w in T.WAN_IFS:
        if d[:2] == (T.WAN_GW[w], w):
            return w
    return None


def wan_ready(t, wan):
    """The daemon's set-up for a healthy wan is in place: endpoint (flag
    subflow, its device), rule from its address to a table whose default
    route goes via its gateway, with proto 77."""
    e = endpoint(t, wan)
    if not e or not e.get("subflow") or e.get("dev") != wan:
        return False
    r = from_rule(t, wan)
    if r is None:
        return False
    return default_route(t, r["table"]) == (T.WAN_GW[wan], wan, str(PROTO))


def wait_ready(t, m, wans=T.WAN_IFS, timeout=READY_S):
    """Wait until every WAN in wans is set up and the fwmark rule routes
    via one of them."""
    def ready():
        m.check_alive()
        return all(wan_ready(t, w) for w in wans) and best_wan(t) in wans
    try:
        t.wait_until(ready, timeout=timeout, interval=0.05,
                     what="the daemon's WAN set-up")
    except TimeoutError:
        pytest.fail("WAN set-up not complete %.1f s after start:\n%s" % (
            timeout, state(t)))


def state(t):
    """rtr's multipath state, for failure messages."""
    return "\n".join(
        "$ %s\n%s" % (c, t.run("rtr", c, check=False).stdout.rstrip())
        for c in ("ip mptcp endpoint show", "ip mptcp limits show",
                  "ip rule show", "ip route show table all proto %d" % PROTO,
                  "ip -br link show"))


def wait_gone(t, wan, t0, bound, what=""):
    """Poll until wan's endpoint is gone; assert within bound seconds of
    t0 (monotonic); return the delay."""
    deadline = t0 + bound
    while endpoint(t, wan) is not None:
        if time.monotonic() > deadline:
            pytest.fail("endpoint of %s still there %.2f s after %s:\n%s" % (
                wan, time.monotonic() - t0, what, state(t)))
        time.sleep(0.01)
    return time.monotonic() - t0


def wait_back(t, wan, t0, bound, what=""):
    deadline = t0 + bound
    while not wan_ready(t, wan):
        if time.monotonic() > deadline:
            pytest.fail("%s not set up again %.2f s after %s:\n%s" % (
                wan, time.monotonic() - t0, what, state(t)))
        time.sleep(0.01)
    return time.monotonic() - t0


def count_log(m, pattern):
    return len(re.findall(pattern, m.log(), re.M))


def wait_log_more(m, pattern, before, timeout=2.0):
    """Wait until pattern occurs more often than `before` times."""
    deadline = time.monotonic() + timeout
    while count_log(m, pattern) <= before:
        if time.monotonic() > deadline:
            pytest.fail("no new log line matching %r within %.1f s; log "
                        "tail:\n%s" % (pattern, timeout, m.log(tail=40)))
        time.sleep(0.05)


class Background:
    """Run fn() in a thread; join() returns its result (or raises)."""

    def __init__(self, fn):
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,),
                                       daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in join
            self.error = e

    def done(self):
        return not self.thread.is_alive()

    def join(self, timeout=FETCH_TIMEOUT + 30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background download hangs"
        if self.error is not None:
            raise self.error
        return self.result


def lan_fetch_bg(t, n=BIG, dst=T.DST4):
    return Background(lambda: clients.fetch(
        t, "lan", clients.bytes_url(dst, n), timeout=FETCH_TIMEOUT))


def rx(t):
    """{wan: rx bytes} on rtr (the download direction)."""
    return {w: v[0] for w, v in t.link_bytes("rtr").items()}


def rx_delta(before, after):
    return {w: after[w] - before[w] for w in before}


def wait_rx(t, before, wan, nbytes, bg, timeout=20.0):
    """Wait until wan has received nbytes since `before` (the download is
    flowing there)."""
    deadline = time.monotonic() + timeout
    while rx(t)[wan] - before[wan] < nbytes:
        if bg.done():
            pytest.fail("download ended before %s carried %d bytes: %r" % (
                wan, nbytes, bg.join()))
        if time.monotonic() > deadline:
            pytest.fail("%s carried %d of %d bytes in %.0f s" % (
                wan, rx(t)[wan] - before[wan], nbytes, timeout))
        time.sleep(0.05)


def shares(d):
    total = sum(d.values()) or 1
    return {w: v / total for w, v in d.items()}


def assert_download_uses_both(t, when):
    """A 32 MiB download arrives intact, with a subflow joined, and wan2
    carries more than a fifth of it."""
    n0, b0 = t.nstat("srv"), rx(t)
    f = clients.fetch(t, "lan", clients.bytes_url(T.DST4, 32 * MiB),
                      timeout=FETCH_TIMEOUT)
    assert f.ok(32 * MiB), f
    d = T.Topology.delta(n0, t.nstat("srv"), JOIN_SYN_RX, JOIN_ACK_RX)
    assert d[JOIN_SYN_RX] >= 1 and d[JOIN_ACK_RX] >= 1, d
    sh = shares(rx_delta(b0, rx(t)))
    print("shares %s %s" % (when, sh))
    assert sh["wan2"] > 0.2, sh


def reload(t, m, wans, linkmon=None):
    """Rewrite the daemon's configuration with these `wans` (None: no
    wans, no linkmon) and `linkmon` (None: as it was), SIGHUP it, and wait
    for its "reloaded" line: the link monitor's changes are made (and
    logged) before it."""
    before = count_log(m, LOG_RELOADED)
    if wans is None:
        m.config.pop("wans", None)
        m.config.pop("linkmon", None)
    else:
        m.config["wans"] = wans
    if linkmon is not None:
        m.config["linkmon"] = linkmon
    m.write_config()
    m.signal(signal.SIGHUP)
    wait_log_more(m, LOG_RELOADED, before, timeout=RELOAD_S)
    m.check_alive()


def endpoint_ids(t):
    return {w: (endpoint(t, w) or {}).get("id") for w in T.WAN_IFS}


def start_daemon(mpredir, socks, wans, linkmon=None, **kw):
    """mpredir with the reference ruleset (the fixture's default), no warm
    pool (each flow opens its connection when it starts, on the paths
    of that moment), and the given wans/linkmon."""
    extra = {"wans": wans}
    if linkmon is not None:
        extra["linkmon"] = linkmon
    return mpredir(servers=[socks["dante-none"]],
                   upstream={"pool": {"size": 0}}, **extra, **kw)


# ------------------------------------------------------------------------
# By hand: what the daemon is to do (shows the topology and the kernel)
# ------------------------------------------------------------------------
HAND_TABLES = {"wan1": 101, "wan2": 102}
DEFAULT_TABLE = 0x4d60   # wans[i].table default: this + i
HAND_BEST_TABLE = 100


def hand_setup(t, backup=()):
    """Endpoints, limits, per-WAN tables and rules, fwmark rule — as the
    daemon does for two healthy WANs (proto 77, so wipe_rtr clears it)."""
    t.ip("rtr", "mptcp limits set subflow 2 add_addr_accepted 0")
    for i, w in enumerate(T.WAN_IFS, 1):
        hand_wan_up(t, w, backup=w in backup)
        t.ip("rtr", ["rule", "add", "from", T.WAN_ADDR[w], "lookup",
                     str(HAND_TABLES[w]), "priority", str(1000 + 10 * i),
                     "proto", str(PROTO)])
    hand_best(t, "wan1")
    t.ip("rtr", ["rule", "add", "fwmark", hex(MARK), "lookup",
                 str(HAND_BEST_TABLE), "priority", "1100", "proto",
                 str(PROTO)])


def hand_wan_up(t, w, backup=False):
    t.ip("rtr", ["route", "replace", "default", "via", T.WAN_GW[w], "dev", w,
                 "table", str(HAND_TABLES[w]), "proto", str(PROTO)])
    t.ip("rtr", ["mptcp", "endpoint", "add", T.WAN_ADDR[w], "dev", w,
                 "id", w[-1], "subflow"] + (["backup"] if backup else []))


def hand_wan_down(t, w):
    t.ip("rtr", ["mptcp", "endpoint", "delete", "id", w[-1]])


def hand_best(t, w):
    t.ip("rtr", ["route", "replace", "default", "via", T.WAN_GW[w], "dev", w,
                 "table", str(HAND_BEST_TABLE), "proto", str(PROTO)])


def rtr_get(t, socks, n, timeout=FETCH_TIMEOUT):
    """A download from rtr itself as mpredir's upstream sockets make it:
    MPTCP, SO_MARK = upstream mark, through the SOCKS server."""
    return clients.get(t, "rtr", T.DST4, n, mptcp=True,
                       socks=socks["dante-none"], mark=MARK, timeout=timeout)


def test_linkmon_topology_needs_the_wan_setup(topology, socks):
    """wan_setup="daemon": before any set-up rtr cannot reach the server
    (marked or not), while the direct path and the gateways work."""
    t = topology
    assert t.mptcp_endpoints() == []
    assert t.ip_rules(protocol=PROTO) == []
    r = rtr_get(t, socks, 1000, timeout=3)
    assert not r["ok"] and "unreachable" in r.get("error", ""), r
    for w in T.WAN_IFS:
        t.run("rtr", ["ping", "-c1", "-W2", T.WAN_GW[w]])
    f = clients.fetch(t, "lan", clients.bytes_url(T.DST4, 100_000))
    assert f.ok(100_000), f
    # the faults: carrier loss keeps rtr's device up; a black hole keeps
    # the carrier and the gateway, not what lies beyond it
    t.set_carrier("wan2", False)
    out = t.run("rtr", ["ip", "link", "show", "wan2"]).stdout
    assert "NO-CARRIER" in out and ",UP" in out, out
    t.set_carrier("wan2", True)
    hand_setup(t)
    t.run("rtr", ["ping", "-c1", "-W2", "-I", T.RTR_WAN2, T.SERVICE4])
    t.blackhole("wan2")
    assert t.carrier("wan2")
    t.run("rtr", ["ping", "-c1", "-W2", T.WAN_GW["wan2"]])
    r = t.run("rtr", ["ping", "-c1", "-W1", "-I", T.RTR_WAN2, T.SERVICE4],
              check=False)
    assert r.returncode != 0, r.stdout
    t.blackhole("wan2", False)
    t.run("rtr", ["ping", "-c1", "-W2", "-I", T.RTR_WAN2, T.SERVICE4])


def test_linkmon_topology(topology, socks):
    """By hand, as the daemon would: a marked MPTCP download from rtr uses
    both WANs (two subflows, each a real share of the bytes)."""
    t = topology
    hand_setup(t)
    t.shape_wan(rate_mbit=RATE_MBIT)
    n0, b0 = t.nstat("srv"), rx(t)
    r = rtr_get(t, socks, BIG)
    assert r["ok"], r
    d = T.Topology.delta(n0, t.nstat("srv"), JOIN_SYN_RX, JOIN_ACK_RX)
    assert d[JOIN_SYN_RX] == 1 and d[JOIN_ACK_RX] == 1, d
    sh = shares(rx_delta(b0, rx(t)))
    print("shares %s, %.1f Mbit/s" % (sh, BIG * 8 / 1e6 / r["elapsed"]))
    assert min(sh.values()) > 0.25, sh


def test_linkmon_topology_lan_path(topology, socks, mpredir):
    """By hand, with today's daemon (no `wans`): LAN flows through mpredir
    (reference ruleset, marked upstream sockets) use both WANs."""
    t = topology
    hand_setup(t)
    t.shape_wan(rate_mbit=RATE_MBIT)
    mpredir(servers=[socks["dante-none"]], upstream={"pool": {"size": 0}})
    n0, b0 = t.nstat("srv"), rx(t)
    f = clients.fetch(t, "lan", clients.bytes_url(T.DST4, BIG),
                      timeout=FETCH_TIMEOUT)
    assert f.ok(BIG), f
    d = T.Topology.delta(n0, t.nstat("srv"), JOIN_SYN_RX)
    assert d[JOIN_SYN_RX] == 1, d
    sh = shares(rx_delta(b0, rx(t)))
    print("shares %s, %.1f Mbit/s" % (sh, f.mbit_s))
    assert min(sh.values()) > 0.25, sh


@pytest.mark.parametrize("fault", ["carrier", "blackhole", "backup"])
def test_linkmon_topology_failover(topology, socks, fault):
    """By hand, as the daemon would react: a WAN fails mid-download, its
    endpoint is removed (and the fwmark table moves to the other WAN if it
    was the best); the download completes intact. "backup": wan2 is a
    backup endpoint and carries almost nothing until wan1's carrier is
    lost."""
    t = topology
    backup = ("wan2",) if fault == "backup" else ()
    failing = "wan1" if fault == "backup" else "wan2"
    other = "wan2" if failing == "wan1" else "wan1"
    hand_setup(t, backup=backup)
    t.shape_wan(rate_mbit=RATE_MBIT)
    b0 = rx(t)
    bg = Background(lambda: rtr_get(t, socks, BIG))
    wait_rx(t, b0, "wan1", 6 * MiB, bg)
    b1 = rx(t)
    if fault == "backup":
        assert shares(rx_delta(b0, b1))["wan2"] < 0.05, rx_delta(b0, b1)
    if fault == "blackhole":
        t.blackhole(failing)
        time.sleep(down_bound(LINKMON_FAST) - MARGIN_S)
    else:
        t.set_carrier(failing, False)
    hand_wan_down(t, failing)
    hand_best(t, other)
    r = bg.join()
    assert r["ok"], r
    after = rx_delta(b1, rx(t))
    print("after the fault: %s, whole download %.1f s" % (after,
                                                          r["elapsed"]))
    assert after[other] > 0.8 * (BIG - sum(rx_delta(b0, b1).values())), after
    # and a new connection starts on the remaining WAN
    r = rtr_get(t, socks, MiB, timeout=20)
    assert r["ok"], r


# ------------------------------------------------------------------------
# The daemon's link monitor
# ------------------------------------------------------------------------
def test_two_active_wans_share_a_download(topology, socks, mpredir):
    """Two active WANs: the daemon's endpoints and rules (proto 77, the
    tables of the config) are in place, and a 64 MiB download through
    mpredir uses both WANs, intact."""
    t = topology
    tables = {"wan1": 201, "wan2": 202}
    m = start_daemon(mpredir, socks, wans_config(tables=tables),
                     LINKMON_FAST)
    wait_ready(t, m)
    e2 = endpoint(t, "wan2")
    assert e2["subflow"] and not e2.get("backup") and e2["dev"] == "wan2", e2
    e1 = endpoint(t, "wan1")  # optional: the initial subflow's address
    if e1 is not None:
        assert e1.get("subflow") and not e1.get("backup"), e1
    for w in T.WAN_IFS:
        assert int(from_rule(t, w)["table"]) == tables[w]
        assert default_route(t, tables[w]) == (T.WAN_GW[w], w, str(PROTO))
    assert best_wan(t) in T.WAN_IFS
    text = t.run("rtr", ["ip", "rule", "show"]).stdout
    assert "fwmark %#x" % MARK in text and "proto 77" in text, text
    assert t.mptcp_limits()["subflows"] >= 1

    t.shape_wan(rate_mbit=RATE_MBIT)
    n0, b0 = t.nstat("srv"), rx(t)
    f = clients.fetch(t, "lan", clients.bytes_url(T.DST4, BIG),
                      timeout=FETCH_TIMEOUT)
    assert f.ok(BIG), f
    d = T.Topology.delta(n0, t.nstat("srv"), JOIN_SYN_RX, JOIN_ACK_RX)
    assert d[JOIN_SYN_RX] >= 1 and d[JOIN_ACK_RX] >= 1, d
    sh = shares(rx_delta(b0, rx(t)))
    print("shares %s, %.1f Mbit/s" % (sh, f.mbit_s))
    assert min(sh.values()) > 0.25, sh


def test_carrier_lost_mid_download(topology, socks, mpredir):
    """wan2's line goes down a few seconds into a download: its endpoint
    is gone within CARRIER_DOWN_S, the daemon logs it, the fwmark table
    routes via wan1, and the download completes intact."""
    t = topology
    m = start_daemon(mpredir, socks, wans_config(), LINKMON_FAST)
    wait_ready(t, m)
    t.shape_wan(rate_mbit=RATE_MBIT)
    b0 = rx(t)
    bg = lan_fetch_bg(t)
    wait_rx(t, b0, "wan2", 2 * MiB, bg)
    t0 = t.set_carrier("wan2", False)
    took = wait_gone(t, "wan2", t0, CARRIER_DOWN_S, "the carrier loss")
    print("endpoint gone %.3f s after the carrier loss" % took)
    t.wait_until(lambda: best_wan(t) == "wan1", timeout=CARRIER_DOWN_S,
                 what="fwmark table via wan1")
    assert m.wait_log(LOG_CARRIER_DOWN.format(wan="wan2"), timeout=2), \
        m.log(tail=30)
    f = bg.join()
    assert f.ok(BIG), f
    assert endpoint(t, "wan2") is None   # stays down while the line is


@pytest.mark.parametrize("probe", ["tcp", "icmp"])
def test_blackhole_mid_download(topology, socks, mpredir, probe):
    """wan2 stops carrying anything beyond its gateway (carrier up): after
    down_after lost probes its endpoint is gone; the download completes
    intact. tcp probes use the default target (the first server's address
    and port); icmp probes are given the server's address."""
    t = topology
    lm = dict(LINKMON_FAST, probe=probe)
    if probe == "icmp":
        lm["target"] = T.SERVICE4
    m = start_daemon(mpredir, socks, wans_config(), lm)
    wait_ready(t, m)
    t.shape_wan(rate_mbit=RATE_MBIT)
    b0 = rx(t)
    bg = lan_fetch_bg(t)
    wait_rx(t, b0, "wan2", 2 * MiB, bg)
    t0 = t.blackhole("wan2")
    took = wait_gone(t, "wan2", t0, down_bound(lm), "the black hole")
    print("endpoint gone %.3f s after the black hole (bound %.2f)" % (
        took, down_bound(lm)))
    assert t.carrier("wan2")
    assert m.wait_log(LOG_PROBES_DOWN.format(wan="wan2"), timeout=2), \
        m.log(tail=30)
    assert best_wan(t) == "wan1"
    f = bg.join()
    assert f.ok(BIG), f
    assert endpoint(t, "wan2") is None


@pytest.mark.parametrize("fault", ["carrier", "blackhole"])
def test_wan_back(topology, socks, mpredir, fault):
    """After wan2 failed, its line comes back (carrier up / black hole
    removed): endpoint, rule and table are back within up_after probes,
    the daemon logs it, and a new flow gets a second subflow over wan2
    again, which carries a real share."""
    t = topology
    lm = LINKMON_FAST
    m = start_daemon(mpredir, socks, wans_config(), lm)
    wait_ready(t, m)
    if fault == "carrier":
        t0 = t.set_carrier("wan2", False)
        wait_gone(t, "wan2", t0, CARRIER_DOWN_S, "the carrier loss")
    else:
        t0 = t.blackhole("wan2")
        wait_gone(t, "wan2", t0, down_bound(lm), "the black hole")
    time.sleep(1)
    assert endpoint(t, "wan2") is None
    ups = count_log(m, LOG_UP.format(wan="wan2"))
    if fault == "carrier":
        t0 = t.set_carrier("wan2", True)
    else:
        t0 = t.blackhole("wan2", False)
    took = wait_back(t, "wan2", t0, up_bound(lm), "the repair")
    print("wan2 back %.3f s after the repair (bound %.2f)" % (took,
                                                             up_bound(lm)))
    wait_log_more(m, LOG_UP.format(wan="wan2"), ups)

    t.shape_wan(rate_mbit=RATE_MBIT)
    assert_download_uses_both(t, "after the repair")


def test_backup_wan(topology, socks, mpredir):
    """wan2 is a backup: its endpoint has the backup flag, it carries
    almost nothing while wan1 is healthy, the fwmark table routes via
    wan1; when wan1's line is lost the download continues over wan2 and
    completes intact, and new flows start over wan2."""
    t = topology
    m = start_daemon(mpredir, socks, wans_config(wan2_mode="backup"),
                     LINKMON_FAST)
    wait_ready(t, m)
    e2 = endpoint(t, "wan2")
    assert e2.get("backup") and e2.get("subflow"), e2
    assert best_wan(t) == "wan1"
    t.shape_wan(rate_mbit=RATE_MBIT)
    b0 = rx(t)
    bg = lan_fetch_bg(t)
    wait_rx(t, b0, "wan1", 6 * MiB, bg)
    b1 = rx(t)
    phase1 = rx_delta(b0, b1)
    print("healthy phase: %s" % phase1)
    assert shares(phase1)["wan2"] < 0.05, phase1

    t0 = t.set_carrier("wan1", False)
    t.wait_until(lambda: best_wan(t) == "wan2", timeout=CARRIER_DOWN_S,
                 what="fwmark table via wan2")
    wait_gone(t, "wan1", t0, CARRIER_DOWN_S, "wan1's carrier loss")
    assert m.wait_log(LOG_CARRIER_DOWN.format(wan="wan1"), timeout=2), \
        m.log(tail=30)
    f = bg.join()
    assert f.ok(BIG), f
    after = rx_delta(b1, rx(t))
    print("after wan1's loss: %s; download %.1f s" % (after, f.elapsed))
    assert after["wan2"] > 0.8 * (BIG - sum(phase1.values())), after
    # a new flow starts over wan2 alone
    b2 = rx(t)
    f = clients.fetch(t, "lan", clients.bytes_url(T.DST4, MiB), timeout=30)
    assert f.ok(MiB), f
    assert rx_delta(b2, rx(t))["wan2"] >= MiB


def test_exit_removes_own_setup_only(topology, socks, mpredir):
    """At SIGTERM the daemon removes its endpoints, rules and routes (v4
    and v6); an endpoint, a rule and a route it did not create survive
    its whole life, WAN down/up included."""
    t = topology
    t.ip("rtr", "mptcp endpoint add 198.51.100.50 id 50 signal")
    t.ip("rtr", "rule add fwmark 0x99 lookup 4242 priority 4242")
    t.ip("rtr", "route add blackhole 203.0.113.0/24 table 4242")
    try:
        foreign = [e for e in t.mptcp_endpoints() if e["id"] == 50]
        m = start_daemon(mpredir, socks, wans_config(), LINKMON_FAST)
        wait_ready(t, m)
        f = clients.fetch(t, "lan", clients.bytes_url(T.DST4, MiB))
        assert f.ok(MiB), f
        t0 = t.set_carrier("wan2", False)
        wait_gone(t, "wan2", t0, CARRIER_DOWN_S, "the carrier loss")
        t0 = t.set_carrier("wan2", True)
        wait_back(t, "wan2", t0, up_bound(LINKMON_FAST), "the carrier")
        assert [e for e in t.mptcp_endpoints() if e["id"] == 50] == foreign

        assert m.stop() == 0
        assert t.mptcp_endpoints() == foreign, state(t)
        for fam in (4, 6):
            assert t.ip_rules(family=fam, protocol=PROTO) == [], state(t)
            assert t.ip_routes("all", family=fam, protocol=PROTO) == [], \
                state(t)
        assert any(r.get("table") == "4242" for r in t.ip_rules())
        assert t.ip_routes(4242)
    finally:
        t.ip("rtr", "mptcp endpoint delete id 50", check=False)
        t.ip("rtr", "rule del priority 4242", check=False)
        t.ip("rtr", "route flush table 4242", check=False)


def test_probe_none_follows_carrier_only(topology, socks, mpredir):
    """probe "none": a black hole goes unnoticed (no probes), the carrier
    is still followed."""
    t = topology
    m = start_daemon(mpredir, socks, wans_config(),
                     {"probe": "none", "interval_ms": 300, "timeout_ms": 300,
                      "down_after": 3, "up_after": 2})
    wait_ready(t, m)
    t.blackhole("wan2")
    time.sleep(down_bound(LINKMON_FAST) + 0.5)
    assert wan_ready(t, "wan2"), state(t)
    t.blackhole("wan2", False)
    t0 = t.set_carrier("wan2", False)
    wait_gone(t, "wan2", t0, CARRIER_DOWN_S, "the carrier loss")
    assert m.wait_log(LOG_CARRIER_DOWN.format(wan="wan2"), timeout=2)
    t0 = t.set_carrier("wan2", True)
    wait_back(t, "wan2", t0, up_bound(LINKMON_FAST), "the carrier")


def test_gateway_learned_from_default_route(topology, socks, mpredir):
    """Without `gateway`, each WAN's gateway is taken from the kernel's
    default route on that interface (as DHCP on two WANs leaves them)."""
    t = topology
    t.ip("rtr", ["route", "add", "default", "via", T.WAN_GW["wan1"], "dev",
                 "wan1", "metric", "10"])
    t.ip("rtr", ["route", "add", "default", "via", T.WAN_GW["wan2"], "dev",
                 "wan2", "metric", "20"])
    try:
        m = start_daemon(mpredir, socks, wans_config(gateways=False),
                         LINKMON_FAST)
        wait_ready(t, m)
        n0 = t.nstat("srv")
        f = clients.fetch(t, "lan", clients.bytes_url(T.DST4, 8 * MiB))
        assert f.ok(8 * MiB), f
        d = T.Topology.delta(n0, t.nstat("srv"), JOIN_ACK_RX)
        assert d[JOIN_ACK_RX] >= 1, d
    finally:
        for w in T.WAN_IFS:
            t.ip("rtr", ["route", "del", "default", "via", T.WAN_GW[w],
                         "dev", w], check=False)


def test_new_address_moves_endpoint_and_rule(topology, socks, mpredir):
    """A WAN renumbered (a DHCP renewal with a new address): its endpoint
    and its `from` rule follow the new address; the old ones are gone."""
    t = topology
    m = start_daemon(mpredir, socks, wans_config(), LINKMON_FAST)
    wait_ready(t, m)
    old, new = T.WAN_ADDR["wan2"], "10.1.2.7"
    # (in this order: deleting a subnet's primary address also deletes
    # its secondaries)
    t.ip("rtr", ["addr", "del", old + "/24", "dev", "wan2"])
    t.ip("rtr", ["addr", "add", new + "/24", "dev", "wan2"])
    try:
        def moved():
            eps = [e.get("address") for e in t.mptcp_endpoints()]
            srcs = [r.get("src") for r in t.ip_rules(protocol=PROTO)]
            return new in eps and old not in eps and new in srcs and \
                old not in srcs
        t.wait_until(moved, timeout=up_bound(LINKMON_FAST) + 1,
                     what="endpoint and rule on the new address")
        r = clients.fetch(t, "lan", clients.bytes_url(T.DST4, MiB))
        assert r.ok(MiB), r
    finally:
        t.ip("rtr", ["addr", "flush", "dev", "wan2", "to", new + "/32"])
        t.ip("rtr", ["addr", "add", old + "/24", "dev", "wan2"])
    wait_ready(t, m)


# ------------------------------------------------------------------------
# Reload: WANs reconciled by difference (matched by interface name)
# ------------------------------------------------------------------------
MPC_SYN_RX = "MPTcpExtMPCapableSYNRX"


def test_reload_removes_and_adds_a_wan(topology, socks, mpredir):
    """A reload without wan2 while a download runs over both WANs: wan2's
    endpoint, `from` rule and table route are gone at once, wan1's
    endpoint keeps its id, and the flow goes on over its wan1 subflow (the
    same MPTCP connection: no new MP_CAPABLE, no new MP_JOIN) to the end,
    intact. A reload with wan2 again brings its set-up back, and the next
    download uses both WANs."""
    t = topology
    m = start_daemon(mpredir, socks, wans_config(), LINKMON_FAST)
    wait_ready(t, m)
    ids = endpoint_ids(t)
    table2 = int(from_rule(t, "wan2")["table"])
    assert t.mptcp_limits()["subflows"] == 2
    t.shape_wan(rate_mbit=RATE_MBIT)
    n0, r0, b0 = t.nstat("srv"), t.nstat("rtr"), rx(t)
    bg = lan_fetch_bg(t)
    wait_rx(t, b0, "wan2", 4 * MiB, bg)
    wait_rx(t, b0, "wan1", 4 * MiB, bg)

    reload(t, m, wans_config()[:1])
    assert m.wait_log(LOG_REMOVED.format(wan="wan2"), timeout=0), \
        m.log(tail=30)
    b1 = rx(t)
    assert endpoint(t, "wan2") is None, state(t)
    assert from_rule(t, "wan2") is None, state(t)
    assert default_route(t, table2) is None, state(t)
    assert endpoint_ids(t)["wan1"] == ids["wan1"], state(t)
    assert wan_ready(t, "wan1") and best_wan(t) == "wan1", state(t)
    assert t.mptcp_limits()["subflows"] == 1
    # the download goes on over wan1
    wait_rx(t, b1, "wan1", 8 * MiB, bg)
    f = bg.join()
    assert f.ok(BIG), f
    after = rx_delta(b1, rx(t))
    d = T.Topology.delta(n0, t.nstat("srv"), MPC_SYN_RX, JOIN_SYN_RX)
    dr = {k: v for k, v in T.Topology.delta(r0, t.nstat("rtr")).items()
          if k.startswith("MPTcpExt") and v}
    print("before the reload %s, after %s; download %.1f s; srv %s; "
          "rtr %s" % (rx_delta(b0, b1), after, f.elapsed, d, dr))
    assert d == {MPC_SYN_RX: 1, JOIN_SYN_RX: 1}, d
    # rtr closed the one subflow of wan2's endpoint (and told srv)
    assert dr.get("MPTcpExtRmSubflow") == 1, dr
    assert after["wan1"] > 0.8 * (BIG - sum(rx_delta(b0, b1).values())), \
        after
    assert after["wan2"] < MiB, after
    assert not re.search(LOG_DOWN.format(wan="wan1"), m.log()), m.log()

    # wan2 again
    t0 = time.monotonic()
    reload(t, m, wans_config())
    assert m.wait_log(LOG_ADDED.format(wan="wan2"), timeout=0), \
        m.log(tail=30)
    took = wait_back(t, "wan2", t0, up_bound(LINKMON_FAST), "the reload")
    print("wan2 set up %.3f s after the reload" % took)
    assert int(from_rule(t, "wan2")["table"]) == table2
    assert endpoint_ids(t)["wan1"] == ids["wan1"], state(t)
    assert t.mptcp_limits()["subflows"] == 2
    assert_download_uses_both(t, "after wan2's return")


def test_reload_switches_mode_in_place(topology, socks, mpredir):
    """A reload making wan2 a backup changes its endpoint's flag in place:
    same id, flag backup, the running download keeps its wan2 subflow
    (no new MP_JOIN), which goes idle; back to active, it carries a share
    again. The download completes intact."""
    t = topology
    m = start_daemon(mpredir, socks, wans_config(), LINKMON_FAST)
    wait_ready(t, m)
    ids = endpoint_ids(t)
    assert not endpoint(t, "wan2").get("backup")
    t.shape_wan(rate_mbit=RATE_MBIT)
    n0, b0 = t.nstat("srv"), rx(t)
    bg = lan_fetch_bg(t)
    wait_rx(t, b0, "wan2", 4 * MiB, bg)

    reload(t, m, wans_config(wan2_mode="backup"))
    assert m.wait_log(LOG_MODE.format(wan="wan2", mode="backup"),
                      timeout=0), m.log(tail=30)
    e2 = endpoint(t, "wan2")
    assert e2["id"] == ids["wan2"] and e2.get("backup") and \
        e2.get("subflow"), state(t)
    assert endpoint_ids(t) == ids and best_wan(t) == "wan1", state(t)
    wait_rx(t, rx(t), "wan1", 2 * MiB, bg)     # (what was queued drains)
    b1 = rx(t)
    wait_rx(t, b1, "wan1", 8 * MiB, bg)
    backup_phase = rx_delta(b1, rx(t))
    print("wan2 a backup: %s" % backup_phase)
    assert shares(backup_phase)["wan2"] < 0.05, backup_phase

    reload(t, m, wans_config())
    assert m.wait_log(LOG_MODE.format(wan="wan2", mode="active"),
                      timeout=0), m.log(tail=30)
    e2 = endpoint(t, "wan2")
    assert e2["id"] == ids["wan2"] and not e2.get("backup"), state(t)
    b2 = rx(t)
    wait_rx(t, b2, "wan2", 4 * MiB, bg)
    f = bg.join()
    assert f.ok(BIG), f
    active_phase = rx_delta(b2, rx(t))
    print("wan2 active again: %s; download %.1f s" % (active_phase,
                                                     f.elapsed))
    assert shares(active_phase)["wan2"] > 0.2, active_phase
    d = T.Topology.delta(n0, t.nstat("srv"), MPC_SYN_RX, JOIN_SYN_RX)
    assert d == {MPC_SYN_RX: 1, JOIN_SYN_RX: 1}, d
    log = m.log()
    assert not re.search(LOG_DOWN.format(wan=r"wan\d"), log), log


def test_reload_reorders_wans_and_probes(topology, socks, mpredir):
    """A reload listing wan2 before wan1 (so with default tables they trade
    tables and rule priorities) and with other probe settings, mid-
    download: both stay up with their endpoint ids, each rule and table
    follows its new position, new flows start on wan2 (now the first
    active one), and the running download keeps both subflows to the end,
    intact."""
    t = topology
    m = start_daemon(mpredir, socks, wans_config(), LINKMON_FAST)
    wait_ready(t, m)
    ids = endpoint_ids(t)
    assert best_wan(t) == "wan1"
    t.shape_wan(rate_mbit=RATE_MBIT)
    n0, b0 = t.nstat("srv"), rx(t)
    bg = lan_fetch_bg(t)
    wait_rx(t, b0, "wan2", 4 * MiB, bg)

    lm = dict(LINKMON_FAST, probe="icmp", target=T.SERVICE4,
              interval_ms=250, timeout_ms=200)
    reload(t, m, wans_config()[::-1], lm)
    assert endpoint_ids(t) == ids, state(t)
    for i, w in enumerate(("wan2", "wan1")):
        r = from_rule(t, w)
        assert r is not None and int(r["table"]) == DEFAULT_TABLE + i and \
            r["priority"] == 10000 + i, state(t)
        assert wan_ready(t, w), state(t)
    assert len(t.ip_rules(protocol=PROTO)) == 3, state(t)  # + fwmark
    assert len(t.ip_routes("all", protocol=PROTO)) == 3, state(t)
    assert best_wan(t) == "wan2", state(t)
    b1 = rx(t)
    wait_rx(t, b1, "wan2", 4 * MiB, bg)
    wait_rx(t, b1, "wan1", 4 * MiB, bg)
    f = bg.join()
    assert f.ok(BIG), f
    d = T.Topology.delta(n0, t.nstat("srv"), MPC_SYN_RX, JOIN_SYN_RX)
    assert d == {MPC_SYN_RX: 1, JOIN_SYN_RX: 1}, d
    # health kept: nothing went down; probes (icmp now) keep it up
    time.sleep(down_bound(lm))
    log = m.log()
    assert not re.search(LOG_DOWN.format(wan=r"wan\d"), log), log
    assert endpoint_ids(t) == ids, state(t)


def test_reload_without_wans_and_back(topology, socks, mpredir):
    """A reload without `wans` stops the link monitor: every endpoint,
    rule and route it made is gone (the daemon runs on); a reload with
    them again sets both WANs up as at start."""
    t = topology
    m = start_daemon(mpredir, socks, wans_config(), LINKMON_FAST)
    wait_ready(t, m)
    reload(t, m, None)
    assert t.mptcp_endpoints() == [], state(t)
    assert t.ip_rules(protocol=PROTO) == [], state(t)
    assert t.ip_routes("all", protocol=PROTO) == [], state(t)
    reload(t, m, wans_config(), LINKMON_FAST)
    wait_ready(t, m, timeout=up_bound(LINKMON_FAST))
