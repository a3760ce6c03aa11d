# SPDX-License-Identifier: GPL-2.0-or-later
r"""The daemon's own nftables table (firewall.enabled): capture, bypass,
no loops, tproxy, fail-open when the daemon dies, reinstall after a flush,
QUIC blocking, reloads that rewrite only the sets that changed (or rebuild
the table when the chains change), and the reference ruleset matching what
the daemon builds.

  lan ──── rtr (mpredir installs `table inet mpredir`) ══ wan1/wan2 ══ srv ── dst
           (+ `table inet testnat`: the direct path, masqueraded on wan1)
"""

import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

import clients
import nftrules
import topo as T

MiB = 1 << 20
CAPABLE_RX = "MPTcpExtMPCapableSYNRX"
DSTS = [pytest.param(T.DST4, id="v4"), pytest.param(T.DST6, id="v6")]
MODES = ["redirect", "tproxy"]


def table_listing(topology, ns="rtr"):
    r = topology.run(ns, ["nft", "list", "table", "inet", "mpredir"],
                     check=False)
    return r.stdout if r.returncode == 0 else None


def start(mpredir, socks, mode="redirect", **fw):
    firewall = {"enabled": True, "mode": mode, "lan_interfaces": ["lan0"]}
    firewall.update(fw)
    return mpredir(servers=[socks["dante-none"]], load_rules=False,
                   firewall=firewall, upstream={"pool": {"size": 0}})


def captured(topology, m, fn):
    """Run fn(); return (its result, whether the daemon saw a new flow)."""
    before = m.log().count("accepted")
    res = fn()
    time.sleep(0.05)
    return res, m.log().count("accepted") > before


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dst", DSTS)
def test_lan_flows_are_captured(topology, socks, mpredir, mode, dst):
    m = start(mpredir, socks, mode)
    assert table_listing(topology)
    before = topology.nstat("srv")
    r, seen = captured(topology, m, lambda: clients.fetch(
        topology, "lan", clients.bytes_url(dst, 4 * MiB)))
    assert r.ok(4 * MiB), r
    assert seen
    d = T.Topology.delta(before, topology.nstat("srv"), CAPABLE_RX)
    assert d[CAPABLE_RX] >= 1
    assert m.stop() == 0
    assert table_listing(topology) is None  # removed at exit


def test_new_router_address_updates_only_the_set(topology, socks, mpredir):
    """An address added on the router lands in the bypass set within a
    moment; the chains are not rebuilt (their rule handles stay)."""
    start(mpredir, socks)

    def handles():
        return topology.run("rtr", ["nft", "-a", "list", "chain", "inet",
                                    "mpredir", "prerouting"]).stdout
    before = handles()
    topology.ip("rtr", ["addr", "add", "198.19.77.1/24", "dev", "lan0"])
    try:
        topology.wait_until(lambda: "198.19.77.0/24" in table_listing(topology),
                            timeout=2, what="new subnet in bypass4")
        assert handles() == before
    finally:
        topology.ip("rtr", ["addr", "del", "198.19.77.1/24", "dev", "lan0"])
    topology.wait_until(lambda: "198.19.77.0/24" not in table_listing(topology),
                        timeout=2, what="subnet gone from bypass4")


def table_objects(topology):
    """The table's table, set, chain and rule lines with their handles
    (`nft -a`), counters left out: the same list means nothing was
    recreated."""
    out = topology.run("rtr", ["nft", "-a", "list", "table", "inet",
                               "mpredir"]).stdout
    lines = [re.sub(r"counter packets \d+ bytes \d+", "counter",
                    l.split(" # progname")[0].strip())
             for l in out.splitlines() if "# handle " in l]
    assert sum(" return # handle " in l for l in lines) >= 7, out
    return lines


def reload(topology, m, servers=None, listen=None, **firewall):
    """Rewrite m's config (firewall keys, listen keys, servers) and SIGHUP
    it; wait until the reload is done."""
    m.config["firewall"].update(firewall)
    m.config["listen"].update(listen or {})
    if servers is not None:
        m.config["servers"] = [s.server_config() for s in servers]
    n = m.log().count("reloaded ")
    m.write_config()
    m.signal(signal.SIGHUP)
    topology.wait_until(lambda: m.log().count("reloaded ") > n or
                        "reload refused" in m.log(), timeout=5, what="reload")
    assert "reload refused" not in m.log(), m.log(tail=30)


def test_reload_rewrites_only_the_changed_sets(topology, socks, mpredir):
    """A reload that changes only bypass lists rewrites those sets in one
    batch: the chains and rules keep their handles, a download in flight
    through the daemon finishes intact, the newly bypassed destination and
    port go direct and the ones no longer bypassed are captured. A reload
    that changes nothing the table shows sends nothing."""
    m = start(mpredir, socks, bypass=["198.18.0.0/24"],
              bypass_ports=[T.HALFCLOSE_PORT])
    before = table_objects(topology)

    # another server at the same address (10.9.0.1, inside 10.0.0.0/8):
    # the table stays as it is
    reload(topology, m, servers=[socks["dante-user"]])
    assert m.wait_log("nftables: table inet mpredir unchanged")
    assert table_objects(topology) == before

    # a download through the daemon, to a destination about to be bypassed:
    # its connection was redirected on its first packet, it stays so
    n = 16 * MiB
    result = {}
    n_acc = m.log().count("accepted")
    slow = threading.Thread(target=lambda: result.update(r=clients.fetch(
        topology, "lan", clients.bytes_url(T.DST6, n),
        args=["--limit-rate", "4M"])))
    slow.start()
    try:
        topology.wait_until(lambda: m.log().count("accepted") > n_acc,
                            timeout=5, what="download accepted")
        reload(topology, m, bypass=["2001:2::/64"],
               bypass_ports=[T.BANNER_PORT])
        assert slow.is_alive() and not re.search(
            r"\[2001:2::2\]:80 via .* done", m.log()), \
            "the download ended before the reload"
        assert m.wait_log(r"nftables: sets updated: bypass4, bypass6, "
                          r"bypass_ports$")
        assert "rebuilt" not in m.log()
        assert table_objects(topology) == before

        listing = table_listing(topology)
        assert "198.18.0.0/24" not in listing and "2001:2::/64" in listing
        r, seen = captured(topology, m, lambda: clients.fetch(
            topology, "lan", clients.bytes_url(T.DST4, 100_000)))
        assert r.ok(100_000) and seen, "no longer bypassed: captured"
        r, seen = captured(topology, m, lambda: clients.fetch(
            topology, "lan", clients.bytes_url(T.DST6, 100_000)))
        assert r.ok(100_000) and not seen, "newly bypassed: direct"
        res, seen = captured(topology, m, lambda: clients.halfclose(
            topology, "lan", T.DST4, send=1000))
        assert res["ok"] and seen, res
        res, seen = captured(topology, m, lambda: clients.banner(
            topology, "lan", T.DST4))
        assert res["ok"] and not seen, res
    finally:
        slow.join(60)
    assert result["r"].ok(n), result["r"]
    assert table_objects(topology) == before


# (a new mode alone keeps the listener, switching its transparency)
CHAIN_CHANGES = {
    "mode": ({"mode": "tproxy"}, {}, "mode", "tproxy to :1088"),
    "mode+port": ({"mode": "tproxy"}, {"port": 1099}, "mode, port",
                  "tproxy to :1099"),
    "port": ({}, {"port": 1099}, "port", "redirect to :1099"),
    "block_quic": ({"block_quic": False}, {}, "block_quic",
                   "redirect to :1088"),
}


@pytest.mark.parametrize("change", sorted(CHAIN_CHANGES))
def test_reload_changing_the_chains_rebuilds(topology, socks, mpredir,
                                             change):
    """firewall.mode, listen.port, block_quic shape the chains: the table
    is rebuilt (new handles), and LAN flows are captured by the new rules."""
    firewall, listen, what, rule = CHAIN_CHANGES[change]
    m = start(mpredir, socks)
    before = table_objects(topology)
    reload(topology, m, listen=listen, **firewall)
    assert m.wait_log(r"nftables: table inet mpredir rebuilt, changed: %s "
                      r"\(" % what)
    listing = table_listing(topology)
    assert rule in listing
    assert ("chain forward" in listing) == (change != "block_quic")
    assert table_objects(topology) != before
    for dst in (T.DST4, T.DST6):
        r, seen = captured(topology, m, lambda: clients.fetch(
            topology, "lan", clients.bytes_url(dst, MiB)))
        assert r.ok(MiB) and seen, r


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dst", DSTS)
def test_bypassed_destinations_ports_and_router_go_direct(topology, socks,
                                                          mpredir, mode, dst):
    net = "198.18.0.0/24" if dst == T.DST4 else "2001:2::/64"
    m = start(mpredir, socks, mode, bypass=[net])
    r, seen = captured(topology, m, lambda: clients.fetch(
        topology, "lan", clients.bytes_url(dst, 100_000)))
    assert r.ok(100_000), r
    assert not seen, "a bypassed destination went through the daemon"

    m.stop()
    m = start(mpredir, socks, mode, bypass_ports=[T.HALFCLOSE_PORT])
    res, seen = captured(topology, m, lambda: clients.halfclose(
        topology, "lan", dst, send=1000))
    assert res["ok"], res
    assert not seen, "a bypassed port went through the daemon"
    r, seen = captured(topology, m, lambda: clients.fetch(
        topology, "lan", clients.bytes_url(dst, 1000)))
    assert r.ok(1000) and seen

    # a service on the router itself
    web = topology.spawn("rtr", [T.PYTHON, "-m", "http.server", "--bind",
                                 "::", "8080"], "rtr-web")
    topology.wait_for_port("rtr", None, 8080, proc=web)
    rtr = T.RTR_LAN4 if dst == T.DST4 else T.RTR_LAN6
    r, seen = captured(topology, m, lambda: topology.run(
        "lan", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                "http://%s:8080/" % clients.host_in_url(rtr)], check=False))
    assert r.stdout == "200", r
    assert not seen
    web.stop()


ROUTER_FLOWS = r"""
import socket, sys
dst, n = sys.argv[1], int(sys.argv[2])
ok = 0
for i in range(n):
    s = socket.create_connection((dst, 80), timeout=10)
    s.sendall(b"GET /bytes/10 HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    ok += data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200")
    s.close()
print(ok)
"""


def test_router_traffic_one_upstream_per_flow(topology, socks, mpredir):
    """router_traffic: the router's own TCP goes through the daemon too —
    and the daemon's own upstream connections (marked) never loop back
    into it: exactly one upstream connection per flow, over 1,000 flows."""
    m = start(mpredir, socks, router_traffic=True)
    before = topology.nstat("srv")
    n_before = m.log().count("accepted")
    r = topology.run("rtr", [T.PYTHON, "-c", ROUTER_FLOWS, T.DST4, "1000"],
                     timeout=300)
    assert r.stdout.strip() == "1000"
    # and LAN flows alongside
    r = topology.run("lan", [T.PYTHON, "-c", ROUTER_FLOWS, T.DST6, "200"],
                     timeout=300)
    assert r.stdout.strip() == "200"
    d = T.Topology.delta(before, topology.nstat("srv"), CAPABLE_RX)
    assert d[CAPABLE_RX] == 1200, d
    assert m.log().count("accepted") - n_before == 1200


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_fails_open_and_restart_recaptures(topology, socks, mpredir,
                                                   mode):
    m = start(mpredir, socks, mode)
    assert table_listing(topology)
    m.daemon.kill()
    m.exit_status = -9
    # owner flag: the table went with the daemon's netlink socket
    topology.wait_until(lambda: table_listing(topology) is None, timeout=2,
                        what="table removed")
    for dst in (T.DST4, T.DST6):   # the LAN still reaches the Internet
        r = clients.fetch(topology, "lan", clients.bytes_url(dst, MiB))
        assert r.ok(MiB), r
    if mode == "tproxy":           # its routes stay until the next start
        pass
    m.start()
    assert table_listing(topology)
    r, seen = captured(topology, m, lambda: clients.fetch(
        topology, "lan", clients.bytes_url(T.DST4, MiB)))
    assert r.ok(MiB) and seen


def test_table_removed_on_sigterm_with_tproxy_routes(topology, socks,
                                                     mpredir):
    m = start(mpredir, socks, "tproxy")
    rules = topology.run("rtr", ["ip", "rule", "show"]).stdout
    assert "fwmark 0x4d51 lookup 19793" in rules
    assert "local default dev lo" in topology.run(
        "rtr", ["ip", "route", "show", "table", "19793"]).stdout
    assert m.stop() == 0
    assert table_listing(topology) is None
    assert "fwmark 0x4d51" not in topology.run("rtr", ["ip", "rule",
                                                       "show"]).stdout
    assert "0x4d51" not in topology.run("rtr", ["ip", "-6", "rule",
                                                "show"]).stdout


def test_flush_ruleset_rules_back(topology, socks, mpredir):
    saved = topology.run("rtr", ["nft", "list", "table", "inet",
                                 "testnat"]).stdout
    m = start(mpredir, socks)
    try:
        topology.run("rtr", ["nft", "flush", "ruleset"])
        t0 = time.monotonic()
        topology.wait_until(lambda: table_listing(topology), timeout=2,
                            what="table back")
        # once, without a duplicate
        time.sleep(0.5)
        listing = table_listing(topology)
        assert listing.count("chain prerouting") == 1
        assert listing.count("redirect to :") == 1
        print("back after %.2f s" % (time.monotonic() - t0))
    finally:
        topology.run("rtr", ["nft", "-f", "-"], input=saved)
    r, seen = captured(topology, m, lambda: clients.fetch(
        topology, "lan", clients.bytes_url(T.DST4, 1000)))
    assert r.ok(1000) and seen


UDP_ECHO = r"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", PORT))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)
"""

UDP_CLIENT = r"""
import socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((dst, port))
s.send(b"hello")
try:
    print("echo" if s.recv(100) == b"hello" else "other")
except ConnectionRefusedError:
    print("rejected")
except socket.timeout:
    print("timeout")
"""


@pytest.mark.parametrize("dst", DSTS)
def test_block_quic(topology, socks, mpredir, dst):
    echo = [topology.spawn("dst", [T.PYTHON, "-c",
                                   UDP_ECHO.replace("PORT", str(p))],
                           "udp-echo-%d" % p) for p in (443, 4433)]
    for p, e in zip((443, 4433), echo):
        topology.wait_for_port("dst", None, p, proto="udp", proc=e)
    start(mpredir, socks, block_quic=True)

    def udp(port):
        return topology.run("lan", [T.PYTHON, "-c", UDP_CLIENT, dst,
                                    str(port)]).stdout.strip()
    assert udp(443) == "rejected"
    assert udp(4433) == "echo"
    for e in echo:
        e.stop()


def test_reference_ruleset_matches_the_daemon(topology, socks, mpredir):
    """nft-rules/mpredir.nft is what the daemon builds with the default
    firewall settings (the router's subnets and the server here all fall
    in the reserved ranges, so the bypass sets are the same too)."""
    nftrules.check(topology)
    m = mpredir(servers=[socks["dante-none"]], load_rules=False,
                firewall={"enabled": True})
    daemon = table_listing(topology)
    m.stop()
    topology.run("rtr", ["nft", "-f", nftrules.NFT_FILE])
    try:
        reference = table_listing(topology)
    finally:
        topology.run("rtr", ["nft", "delete", "table", "inet", "mpredir"])
    # Only the daemon's table can carry the owner flag (nft's would vanish
    # with the nft process), and nft names the owning program.
    def strip(text):
        return [l.split(" # progname")[0] for l in text.splitlines()
                if l.strip() not in ("flags owner", "")]
    assert "flags owner" in daemon
    assert strip(daemon) == strip(reference)
