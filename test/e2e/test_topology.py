# SPDX-License-Identifier: GPL-2.0-or-later
"""The test bed itself, without mpredir: direct routing, the SOCKS servers
over MPTCP (two subflows), the test services, and the reference ruleset."""

import re

import pytest

import clients
import nftrules
import topo as T

MiB = 1 << 20

# MPTCP counters (nstat names, kernel 6.x): server side of the initial
# subflow, and of a joining subflow (MP_JOIN SYN, then its third ACK).
CAPABLE_RX = "MPTcpExtMPCapableSYNRX"
JOIN_SYN_RX = "MPTcpExtMPJoinSynRx"
JOIN_ACK_RX = "MPTcpExtMPJoinAckRx"


# --------------------------------------------------------------- direct path
@pytest.mark.parametrize("dst", [T.DST4, T.DST6], ids=["v4", "v6"])
@pytest.mark.parametrize("size", [1, 64 * MiB], ids=["1B", "64MiB"])
def test_direct_download(topology, dst, size):
    r = clients.fetch(topology, "lan", clients.bytes_url(dst, size))
    assert r.rc == 0, r.stderr
    assert r.http_code == 200
    assert r.size == size
    assert r.sha256 == clients.expected_sha256(size)


@pytest.mark.parametrize("dst", [T.DST4, T.DST6], ids=["v4", "v6"])
def test_direct_root_and_upload(topology, dst):
    r = topology.run("lan", ["curl", "-sS", "--max-time", "10",
                             "http://%s/" % clients.host_in_url(dst)])
    assert r.stdout == "ok\n"
    up = clients.upload(topology, "lan", clients.upload_url(dst), 3 * MiB + 7)
    assert up.ok, up


def test_direct_path_is_masqueraded(topology):
    """LAN traffic to the "Internet" leaves rtr on wan1 with rtr's address
    (nothing in srv/dst routes back to the LAN)."""
    r = topology.run("dst", ["ip", "route", "get", "192.168.50.2"],
                     check=False)
    assert "via 198.18.0.1" in r.stdout  # only the default route
    out = topology.run("rtr", ["nft", "list", "table", "inet", "testnat"]).stdout
    assert "masquerade" in out


@pytest.mark.parametrize("dst", [T.DST4, T.DST6], ids=["v4", "v6"])
def test_direct_halfclose(topology, dst):
    res = clients.halfclose(topology, "lan", dst, send=300_000)
    assert res["ok"], res
    assert res["sent"] == 300_000


@pytest.mark.parametrize("dst", [T.DST4, T.DST6], ids=["v4", "v6"])
def test_direct_banner(topology, dst):
    res = clients.banner(topology, "lan", dst, send=50_000)
    assert res["ok"], res


# --------------------------------------------------------------- SOCKS + MPTCP
def _wait_counter(topology, ns, before, name, at_least=1, timeout=5.0):
    """Poll until counter name grew by at_least; return the delta."""
    def grown():
        d = topology.nstat(ns).get(name, 0) - before.get(name, 0)
        return d if d >= at_least else 0
    try:
        return topology.wait_until(grown, timeout=timeout, what=name)
    except TimeoutError:
        return topology.nstat(ns).get(name, 0) - before.get(name, 0)


SERVERS = ["dante-none", "dante-user", "micro-none", "micro-user"]


@pytest.mark.parametrize("dst", [T.DST4, T.DST6], ids=["v4", "v6"])
@pytest.mark.parametrize("name", SERVERS)
def test_socks_mptcp_from_rtr(topology, socks, name, dst):
    s = socks[name]
    size = 16 * MiB  # long enough for the second subflow to join
    before = topology.nstat("srv")
    r = clients.fetch(topology, "rtr", clients.bytes_url(dst, size),
                      args=s.curl_args(), mptcp=True)
    assert r.rc == 0, "%s\n--- %s log ---\n%s" % (r.stderr, s.name, s.log(tail=30))
    assert r.ok(size), r
    assert _wait_counter(topology, "srv", before, CAPABLE_RX) >= 1, \
        "the SOCKS connection did not use MPTCP"
    assert _wait_counter(topology, "srv", before, JOIN_SYN_RX) >= 1, \
        "no second subflow (MP_JOIN) reached srv"
    assert _wait_counter(topology, "srv", before, JOIN_ACK_RX) >= 1, \
        "the second subflow was not established"


@pytest.mark.parametrize("dst", [T.DST4, T.DST6], ids=["v4", "v6"])
@pytest.mark.parametrize("name", SERVERS)
def test_socks_halfclose_and_banner(topology, socks, name, dst):
    """Through each SOCKS server (MPTCP, from rtr): a server-speaks-first
    exchange works everywhere; half-close only where the server relays it
    (SocksServer.half_close: dante yes, microsocks no)."""
    s = socks[name]
    b = clients.banner(topology, "rtr", dst, mptcp=True, socks=s)
    assert b["ok"], b
    h = clients.halfclose(topology, "rtr", dst, send=200_000, mptcp=True,
                          socks=s)
    assert h["rc"] == 0, h
    if s.half_close:
        assert h["ok"], h
    else:
        assert h["received"] == 0, (
            "%s now relays half-close: set half_close = True" % s.kind)


@pytest.mark.parametrize("name", ["dante-user", "micro-user"])
def test_socks_auth_enforced(topology, socks, name):
    s = socks[name]
    url = clients.bytes_url(T.DST4, 100)
    bad = ["--socks5", "%s:%d" % (s.address, s.port),
           "--proxy-user", "%s:wrong-%s" % (s.username, s.password)]
    r = clients.fetch(topology, "rtr", url, args=bad, mptcp=True, timeout=10)
    assert r.rc != 0 and r.size == 0, r
    noauth = ["--socks5", "%s:%d" % (s.address, s.port)]
    r = clients.fetch(topology, "rtr", url, args=noauth, mptcp=True, timeout=10)
    assert r.rc != 0 and r.size == 0, r


def test_socks_server_stop_restart(topology, socks):
    """A test can take a server down and bring it back (the `socks` fixture
    restarts anything a test left stopped)."""
    s = socks["micro-none"]
    url = clients.bytes_url(T.DST4, 1000)
    s.kill()
    assert not s.running()
    r = clients.fetch(topology, "rtr", url, args=s.curl_args(), timeout=5)
    assert r.rc != 0
    s.start()
    r = clients.fetch(topology, "rtr", url, args=s.curl_args(), timeout=5)
    assert r.ok(1000), r
    d = socks["dante-none"]
    d.stop()
    assert not d.running()
    assert not topology.listening("srv", d.address, d.port)
    # left stopped on purpose: the next test's `socks` fixture restarts it


def test_socks_restarted_by_fixture(topology, socks):
    for s in socks.all:
        assert s.running(), s
        assert topology.listening("srv", s.address, s.port), s


def test_wan_shaping(topology):
    """tbf on both WAN links caps the direct path's throughput."""
    topology.shape_wan(rate_mbit=40)
    try:
        r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, 2 * MiB))
        assert r.ok(2 * MiB), r
        assert r.mbit_s < 60, r.mbit_s
        qd = topology.run("srv", ["tc", "qdisc", "show", "dev", "wan1"]).stdout
        assert "tbf" in qd
    finally:
        topology.unshape_wan()
    qd = topology.run("srv", ["tc", "qdisc", "show", "dev", "wan1"]).stdout
    assert "tbf" not in qd


# --------------------------------------------------------------- nft ruleset
def test_nft_file_checks(topology):
    r = nftrules.check(topology, "rtr")
    assert r.returncode == 0, r.stderr
    # the file names neither test range in its bypass sets
    with open(nftrules.NFT_FILE) as f:
        text = f.read()
    elements = re.findall(r"elements\s*=\s*\{([^}]*)\}", text)
    assert "198.18." not in "".join(elements)
    assert "2001:2:" not in "".join(elements)


def test_nft_load_idempotent(topology, nft_rules):
    nft_rules(port=1088, servers=(T.SERVICE4,))
    # reload; servers go into the bypass sets (10.9.0.1 merges into
    # 10.0.0.0/8, so take addresses outside the reserved ranges too)
    nft_rules(port=1099, servers=(T.SERVICE4, "198.19.0.10", "2001:2:0:1::10"))
    out = nftrules.listing(topology)
    assert out.count("table inet mpredir") == 1
    assert '"lan0"' in out and '"br-lan"' not in out
    assert "redirect to :1099" in out
    assert "198.19.0.10" in out and "2001:2:0:1::10" in out
    assert "meta mark 0x00004d50 return" in out
    assert "198.18." not in out


@pytest.mark.parametrize("dst", [T.DST4, T.DST6], ids=["v4", "v6"])
def test_nft_redirect_origdst(topology, nft_rules, dst):
    """The rules send LAN TCP flows to the local listener, where
    SO_ORIGINAL_DST recovers the destination (what mpredir does); the
    bypass set and local addresses are left alone."""
    port = 1088
    nft_rules(port=port, servers=(T.SERVICE4,))
    srv = clients.start_origdst_server(topology, port)
    try:
        before = nftrules.redirect_count(topology)
        line = clients.readline(topology, "lan", dst, T.BANNER_PORT)
        assert line == "ORIGDST %s %d" % (dst, T.BANNER_PORT)
        assert nftrules.redirect_count(topology) == before + 1
        # a destination in the bypass set goes direct: the real banner
        rng = "198.18.0.0/15" if dst == T.DST4 else "2001:2::/48"
        setname = "bypass4" if dst == T.DST4 else "bypass6"
        topology.run("rtr", ["nft", "add", "element", "inet", "mpredir",
                             setname, "{ %s }" % rng])
        line = clients.readline(topology, "lan", dst, T.BANNER_PORT)
        assert line == clients.BANNER.rstrip("\r\n")
        # the router's own address is not redirected (nothing on port 22)
        rtr = T.RTR_LAN4 if dst == T.DST4 else T.RTR_LAN6
        assert clients.readline(topology, "lan", rtr, 22, timeout=3) is None
    finally:
        srv.stop()
