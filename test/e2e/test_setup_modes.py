# SPDX-License-Identifier: GPL-2.0-or-later
r"""Connection setup modes, end to end: step by step, pipelined (with the
automatic fallback for servers that drop a pipelined write), warm pool, and
TCP Fast Open (over the plain-TCP fallback) — against dante and microsocks,
with and without user/password, IPv4 and IPv6. Correctness only: the
timings are in `make bench` (doc/benchmarks.md).

  lan ──── rtr (nft redirect → mpredir) ══ wan1 / wan2 ══ srv (SOCKS5) ── dst
"""

import time

import pytest

import clients
import socks_servers
import topo as T

MiB = 1 << 20
SERVERS = ["dante-none", "dante-user", "micro-none", "micro-user"]

# upstream settings of each mode
MODES = {
    "step": {"pipeline": "off", "pool": {"size": 0}},
    "pipelined": {"pipeline": "auto", "pool": {"size": 0}},
    "forced": {"pipeline": "on", "pool": {"size": 0}},
    "pool": {"pipeline": "auto", "pool": {"size": 2}},
    "fastopen": {"pipeline": "auto", "pool": {"size": 0}, "mptcp": False,
                 "fast_open": "on"},
}


def combos(servers=SERVERS):
    for mode in MODES:
        for server in servers:
            if mode == "forced" and server.startswith("micro"):
                continue  # "on" is for servers known to take it
            yield pytest.param(mode, server, id="%s-%s" % (mode, server))


@pytest.fixture(scope="module")
def plain_socks(topology, socks_farm):
    """The same four servers without mptcpize, for Fast Open over plain
    TCP: this kernel gives no Fast Open cookie on an MPTCP listener."""
    made = {}
    for i, (name, cls, _port, auth) in enumerate(socks_servers.SocksFarm.SPECS):
        kw = {}
        if auth:
            kw = {"username": socks_farm.user.name,
                  "password": socks_farm.user.password}
        made[name] = cls(topology, "plain-" + name, 1180 + i, mptcp=False,
                         **kw).start()
    yield made
    for srv in made.values():
        srv.stop()


@pytest.fixture
def servers(request, socks):
    """mode -> its servers: the plain-TCP ones for fastopen."""
    def pick(mode):
        if mode == "fastopen":
            return request.getfixturevalue("plain_socks")
        return socks
    return pick


@pytest.fixture
def fastopen_server(topology):
    """Server-side Fast Open in srv for unmodified servers (0x400: without
    the TCP_FASTOPEN socket option), restored afterwards."""
    old = topology.run("srv", ["sysctl", "-n", "net.ipv4.tcp_fastopen"]).stdout
    topology.sysctl("srv", **{"net.ipv4.tcp_fastopen": 0x403})
    yield
    topology.sysctl("srv", **{"net.ipv4.tcp_fastopen": int(old)})


def is_reset(r):
    """curl saw a reset: during the exchange (56, or 55 while it was still
    sending its request), or so early that its connect() failed (7) — e.g.
    the warm pool already found the password wrong and the server is
    backing off, so the flow is reset at once."""
    err = r.stderr.lower()
    return (r.rc in (55, 56) and "reset" in err) or \
        (r.rc == 7 and "couldn't connect" in err)


def start(mpredir, mode, servers, **upstream):
    up = dict(MODES[mode], **upstream)
    mptcp = up.pop("mptcp", True)
    return mpredir(servers=servers, mptcp=mptcp, upstream=up)


@pytest.mark.parametrize("mode,server", list(combos()))
def test_mode_end_to_end(topology, servers, mpredir, fastopen_server, mode,
                         server):
    srv = servers(mode)[server]
    m = start(mpredir, mode, [srv])
    rtr0 = topology.nstat("rtr")
    for dst in (T.DST4, T.DST6):
        # data intact, both ways
        r = clients.fetch(topology, "lan", clients.bytes_url(dst, 3 * MiB))
        assert r.ok(3 * MiB), r
        up = clients.upload(topology, "lan", clients.upload_url(dst), MiB + 3)
        assert up.ok, up
        # a server-speaks-first protocol (port 25: no wait for first bytes)
        res = clients.banner(topology, "lan", dst, send=20_000)
        assert res["ok"], res
        # CONNECT refused by the server: the LAN client is reset
        rr = clients.fetch(topology, "lan",
                           "http://%s:9/" % clients.host_in_url(dst))
        assert is_reset(rr), rr
    log = m.log()
    assert "CONNECT refused" in log
    # the mode was really in use
    if mode in ("pipelined", "pool"):
        expect = ("does not answer a pipelined" if server.startswith("micro")
                  else "takes a pipelined SOCKS handshake")
        assert expect in log
    if mode == "pool":
        assert "warm connection" in log
    if mode == "step":
        assert "pipelined" not in log
    if mode == "fastopen":
        d = T.Topology.delta(rtr0, topology.nstat("rtr"),
                             "TcpExtTCPFastOpenActive")
        assert d["TcpExtTCPFastOpenActive"] >= 1, d
        assert "(tcp)" in log and "(mptcp)" not in log


@pytest.mark.parametrize("mode,server",
                         list(combos(["dante-user", "micro-user"])))
def test_wrong_password_resets_in_every_mode(topology, servers, mpredir,
                                             fastopen_server, mode, server):
    cfg = dict(servers(mode)[server].server_config(),
               password="not-the-password")
    m = start(mpredir, mode, [cfg])
    for dst in (T.DST4, T.DST6):
        r = clients.fetch(topology, "lan", clients.bytes_url(dst, 1000),
                          timeout=15)
        assert is_reset(r), r
        assert r.elapsed < 3.0, r
    assert "not-the-password" not in m.log()


def test_pipelining_learned_once(topology, socks, mpredir):
    """auto: the first flow to microsocks finds out, later ones go step by
    step at once (no second probe), and still deliver their first bytes."""
    m = start(mpredir, "pipelined", [socks["micro-none"]])
    for _ in range(5):
        r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, 5000))
        assert r.ok(5000), r
        assert r.elapsed < 3.0
    assert m.log().count("does not answer a pipelined") == 1


def test_pool_connection_closed_by_server_is_never_used(topology, socks,
                                                        mpredir):
    """dante ends negotiations after timeout.negotiate (2 s here) — sooner
    than the pool recycles (60 s): the pool sees them die and replaces
    them, and no flow ever gets a dead one."""
    srv = socks_servers.DanteServer(topology, "dante-short", 1090)
    srv.negotiate_timeout = 2
    srv.start()
    try:
        m = start(mpredir, "pool", [srv],
                  pool={"size": 2, "lifetime_s": 60})
        assert clients.fetch(topology, "lan",
                             clients.bytes_url(T.DST4, 1000)).ok(1000)
        deadline = time.monotonic() + 7
        n = 0
        while time.monotonic() < deadline:   # flows across several expiries
            r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, 1000))
            assert r.ok(1000), (r, m.log(tail=20))
            n += 1
            time.sleep(0.2)
        log = m.log()
        assert "closed by the server" in log   # they did die, and were seen
        assert "warm connection" in log         # and the pool was used
        assert "retrying fresh" not in log     # never handed out dead
    finally:
        srv.stop()


def test_server_restart_leaves_no_flow_hanging(topology, socks, mpredir):
    srv = socks["dante-none"]
    m = start(mpredir, "pool", [srv])
    assert clients.fetch(topology, "lan",
                         clients.bytes_url(T.DST4, 1000)).ok(1000)
    # a download in progress while the server restarts
    slow = topology.popen("lan", ["curl", "-sS", "--max-time", "30",
                                  "--limit-rate", "2M", "-o", "/dev/null",
                                  clients.bytes_url(T.DST4, 8 * MiB)])
    topology.wait_until(lambda: m.log().count("accepted") >= 2, timeout=5)
    srv.kill()
    # dante's child serving the download may live on (its relay then ends
    # normally) or die with the master (the download is reset): either way
    # it ends, it does not hang
    slow.wait(timeout=30)
    srv.start()
    # the warm connections died with the server; new flows work at once
    for _ in range(5):
        r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, 1000),
                          timeout=10)
        assert r.ok(1000), (r, m.log(tail=20))
        assert r.elapsed < 3


def test_first_bytes_wait_and_server_first_ports(topology, socks, mpredir):
    """A client that sends nothing on a port not listed as server-first
    still gets its connection, after first_data_wait_ms."""
    m = start(mpredir, "pipelined", [socks["dante-none"]],
              first_data_wait_ms=200, server_first_ports=[])
    res = clients.banner(topology, "lan", T.DST4, send=1000)
    assert res["ok"], res
    assert "takes a pipelined" in m.log()


def test_pool_warm_connections_have_their_subflows(topology, socks, mpredir):
    """Warm connections are full MPTCP connections: their second subflow
    (over wan2) joins before any flow uses them."""
    before = topology.nstat("srv")
    start(mpredir, "pool", [socks["dante-none"]], pool={"size": 2})
    topology.wait_until(
        lambda: T.Topology.delta(before, topology.nstat("srv"),
                                 "MPTcpExtMPJoinSynRx")["MPTcpExtMPJoinSynRx"]
        >= 2, timeout=5, what="subflows of the warm connections")


def test_idle_pool_drains_and_goes_quiet(topology, socks, mpredir):
    """Unused for keep_warm_s, the pool stops replacing expired warm
    connections: an idle router opens no more connections."""
    start(mpredir, "pool", [socks["dante-none"]],
          pool={"size": 2, "lifetime_s": 1, "keep_warm_s": 2})

    def opened():
        return topology.nstat("srv").get("MPTcpExtMPCapableSYNRX", 0)

    time.sleep(3.5)  # the pool is used for nothing: past keep_warm_s
    quiet_from = opened()
    time.sleep(2.5)  # more than two lifetimes: nothing replaced
    assert opened() == quiet_from
    # a flow wakes it up again: it refills
    assert clients.fetch(topology, "lan",
                         clients.bytes_url(T.DST4, 1000)).ok(1000)
    topology.wait_until(lambda: opened() >= quiet_from + 3, timeout=5,
                        what="refill after use")


def test_fast_open_sysctl_warning(topology, socks, mpredir):
    old = topology.run("rtr", ["sysctl", "-n", "net.ipv4.tcp_fastopen"]).stdout
    topology.sysctl("rtr", **{"net.ipv4.tcp_fastopen": 0})
    try:
        m = start(mpredir, "fastopen", [socks["dante-none"]])
        assert "net.ipv4.tcp_fastopen is 0, without the client bit" in m.log()
        assert clients.fetch(topology, "lan",
                             clients.bytes_url(T.DST4, 1000)).ok(1000)
    finally:
        topology.sysctl("rtr", **{"net.ipv4.tcp_fastopen": int(old)})
