# SPDX-License-Identifier: GPL-2.0-or-later
r"""Status, control socket and live reload (issue "See inside"): `mpredir
status` shows each flow's subflows and each WAN's bytes from the kernel's
per-subflow figures; `mpredir reload` applies a changed configuration by
difference without dropping a flow; the control socket is root's only.

Same topology as test_linkmon.py (its module fixtures are reused: each
module builds its own instance):

  lan ── rtr ══ wan1 ══ isp1 ══╗
  (mpredir)     wan2 ══ isp2 ══╩══ srv (SOCKS, MPTCP) ── dst
"""

import json
import os
import socket
import stat
import time

import pytest

import clients
import socks_servers
import topo as T
from test_linkmon import (  # noqa: F401 - fixtures
    BIG, FETCH_TIMEOUT, LINKMON_FAST, MiB, RATE_MBIT, clean_rtr, endpoint,
    lan_fetch_bg, socks_farm, topology, wait_ready, wans_config)

NOBODY = 65534


def start(mpredir, socks, wans=None, servers=("dante-none",), **kw):
    """The daemon with its own firewall (so that a reload can change it),
    no warm pool (a flow's connection opens when it starts), WANs."""
    extra = {"linkmon": LINKMON_FAST}
    if wans is not None:
        extra["wans"] = wans
    return mpredir(servers=[socks[s] for s in servers], load_rules=False,
                   firewall={"lan_interfaces": [T.RTR_LAN_IF]},
                   upstream={"pool": {"size": 0}}, **extra, **kw)


def the_flow(st, dst=T.DST4, port=80):
    """The one relaying flow to dst:port in a status answer, or None."""
    flows = [f for f in st.get("flow_list", [])
             if f["destination"] == "%s:%d" % (dst, port) and
             f["state"] == "relaying"]
    assert len(flows) <= 1, flows
    return flows[0] if flows else None


def wan_bytes(st):
    return {w["interface"]: w["bytes_received"] for w in st["wans"]}


# ------------------------------------------------------------------------
# status
# ------------------------------------------------------------------------
def test_status_shows_subflows_and_wan_bytes(topology, socks, mpredir):
    """While a 64 MiB download runs over two WANs, `mpredir status
    --flows` shows the flow with a live subflow on each WAN and growing
    byte counts; at the end the WANs' received bytes add up to the flow's
    bytes within a few percent, and so do its subflows'."""
    t = topology
    m = start(mpredir, socks, wans_config())
    wait_ready(t, m)
    st0 = m.status()
    assert st0["ok"] and st0["version"] and st0["pid"] == m.pid
    assert [w["interface"] for w in st0["wans"]] == ["wan1", "wan2"]
    for w in st0["wans"]:
        assert w["state"] == "up" and w["endpoint"], w
        assert w["address"] == T.WAN_ADDR[w["interface"]], w
    assert sum(w["best"] for w in st0["wans"]) == 1, st0["wans"]
    base = wan_bytes(st0)

    t.shape_wan(rate_mbit=RATE_MBIT)
    bg = lan_fetch_bg(t)
    readings = []
    deadline = time.monotonic() + FETCH_TIMEOUT
    while not bg.done() and time.monotonic() < deadline:
        f = the_flow(m.status(flows=True))
        if f:
            readings.append(f)
        time.sleep(1.0)
    res = bg.join()
    assert res.ok(BIG), res

    multi = [f for f in readings
             if {s["wan"] for s in f["subflows"]} >= {"wan1", "wan2"}]
    assert len(multi) >= 3, readings[-1:] if readings else "no reading"
    assert all(f["transport"] == "mptcp" for f in multi)
    # each WAN's subflow keeps receiving
    for wan in ("wan1", "wan2"):
        seq = [sum(s["bytes_received"] for s in f["subflows"]
                   if s["wan"] == wan) for f in multi]
        assert seq == sorted(seq) and seq[-1] > seq[0], (wan, seq)
    # the subflows add up to the flow (the last reading mid-download)
    last = multi[-1]
    sub = sum(s["bytes_received"] for s in last["subflows"])
    assert abs(sub - last["bytes_down"]) <= 0.03 * last["bytes_down"] + \
        64 * 1024, (sub, last)

    # the flow has ended: the WANs have its subflows' bytes
    t.wait_until(lambda: m.status()["flows"]["now"] == 0, timeout=5,
                 what="the flow's end")
    st = m.status()
    total = st["bytes"]["down"] - st0["bytes"]["down"]
    assert total >= BIG, st["bytes"]
    got = {w: v - base[w] for w, v in wan_bytes(st).items()}
    print("per-WAN bytes received %s, sum %d, flow %d (%.2f %%)" % (
        got, sum(got.values()), total,
        100.0 * (sum(got.values()) - total) / total))
    assert abs(sum(got.values()) - total) <= 0.03 * total, (got, total)
    assert min(got.values()) > 0.2 * total, got
    srv = st["servers"][0]
    assert srv["connections"]["mptcp"] >= 1 and srv["health"] == "ok", srv
    assert st["flows"]["ended"]["done"] >= 1, st["flows"]


def test_wan_bytes_without_status_readings(topology, socks, mpredir):
    """Nobody asks for status during a download over two WANs (the
    server's side closes first): its per-WAN bytes, read at its end, still
    add up to the flow within a few percent."""
    t = topology
    m = start(mpredir, socks, wans_config())
    wait_ready(t, m)
    st0 = m.status()
    t.shape_wan(rate_mbit=RATE_MBIT)
    res = clients.fetch(t, "lan", clients.bytes_url(T.DST4, 32 * MiB),
                        timeout=FETCH_TIMEOUT)
    assert res.ok(32 * MiB), res
    t.wait_until(lambda: m.status()["flows"]["now"] == 0, timeout=5,
                 what="the flow's end")
    st = m.status()
    total = st["bytes"]["down"] - st0["bytes"]["down"]
    got = {w: v - wan_bytes(st0)[w] for w, v in wan_bytes(st).items()}
    print("per-WAN bytes received %s, flow %d" % (got, total))
    assert abs(sum(got.values()) - total) <= 0.03 * total, (got, total)
    assert min(got.values()) > 0.2 * total, got


def test_status_text(topology, socks, mpredir):
    """The human-readable tables name the server, each WAN and a flow (an
    idle connection held open: it shows whatever the speed)."""
    t = topology
    m = start(mpredir, socks, wans_config())
    wait_ready(t, m)
    code = ("import socket,time;s=socket.create_connection(('%s',%d));"
            "s.recv(100);time.sleep(30)" % (T.DST4, T.BANNER_PORT))
    held = t.popen("lan", [T.PYTHON, "-c", code])
    try:
        t.wait_until(lambda: the_flow(m.status(flows=True),
                                      port=T.BANNER_PORT) is not None,
                     timeout=10, what="the flow relaying")
        r = m.control("status", "--flows")
    finally:
        held.kill()
        held.wait()
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "SERVER" in out and "%s:1080" % T.SERVICE4 in out, out
    for w in ("wan1", "wan2"):
        assert "\n%s " % w in out, out
    assert "%s:%d" % (T.DST4, T.BANNER_PORT) in out and "mptcp" in out, out
    assert "wan wan1" in out or "wan wan2" in out, out
    r = m.control("status", "--bogus")
    assert r.returncode == 2 and "usage" in r.stderr, r


def test_status_transport_fallback_and_tcp(topology, socks, mpredir):
    """A server without MPTCP (dante not under mptcpize): the flow's
    transport is "tcp_fallback", one subflow, counted on the server; with
    upstream.mptcp off it is "tcp"."""
    t = topology
    plain = socks_servers.DanteServer(t, "plain-dante", 1190,
                                      mptcp=False).start()
    try:
        for mptcp, transport, key in ((True, "tcp_fallback", "tcp_fallback"),
                                      (False, "tcp", "tcp")):
            m = mpredir(servers=[plain], load_rules=False,
                        firewall={"lan_interfaces": [T.RTR_LAN_IF]},
                        upstream={"pool": {"size": 0}, "mptcp": mptcp},
                        wans=wans_config(), linkmon=LINKMON_FAST)
            wait_ready(t, m)
            t.shape_wan(rate_mbit=RATE_MBIT)
            bg = lan_fetch_bg(t, n=16 * MiB)
            t.wait_until(lambda: the_flow(m.status(flows=True)) is not None,
                         timeout=10, what="the flow relaying")
            time.sleep(1)
            f = the_flow(m.status(flows=True))
            assert f["transport"] == transport, f
            assert len(f["subflows"]) == 1, f
            assert f["subflows"][0]["wan"] in ("wan1", "wan2"), f
            assert f["subflows"][0]["bytes_received"] > 0, f
            assert bg.join().ok(16 * MiB)
            conns = m.status()["servers"][0]["connections"]
            assert conns[key] == 1 and sum(conns.values()) == 1, conns
            m.stop()
            t.unshape_wan()
    finally:
        plain.stop()


# ------------------------------------------------------------------------
# the control socket
# ------------------------------------------------------------------------
def test_control_socket_root_only(topology, socks, mpredir):
    """The socket is 0600 and root's; made world-writable by someone, it
    still answers a non-root client only with a refusal (SO_PEERCRED),
    logged; root is still served."""
    m = start(mpredir, socks)
    st = os.stat(m.control_socket)
    assert stat.S_ISSOCK(st.st_mode) and st.st_uid == 0
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    r = m.control("status", user=NOBODY)
    assert r.returncode == 1 and "Permission denied" in r.stderr, r
    os.chmod(m.control_socket, 0o666)
    r = m.control("status", "--json", user=NOBODY)
    assert r.returncode == 1, r
    assert "permission denied: the control socket is for root" in r.stderr, r
    assert r.stdout == "", r.stdout
    r = m.control("reload", user=NOBODY)
    assert r.returncode == 1, r
    assert m.wait_log(r"control: refusing a client with uid %d" % NOBODY)
    assert m.status()["config"]["reloads"] == 0
    m.stop()
    assert not os.path.exists(m.control_socket)


def test_control_socket_misbehaving_clients(topology, socks, mpredir):
    """A client that sends nothing gets an error after the timeout; one that
    sends garbage or an unknown request gets an error at once; one that
    leaves at once is forgotten; the daemon serves on."""
    m = start(mpredir, socks)
    path = m.control_socket

    def ask(data, shut=True, timeout=10):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(path)
        if data:
            s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        s.close()
        return json.loads(out)

    t0 = time.monotonic()
    a = ask(b"", shut=False)
    assert not a["ok"] and "no complete request" in a["error"], a
    assert 4 <= time.monotonic() - t0 < 8
    a = ask(b"not json\n")
    assert not a["ok"] and "not a request" in a["error"], a
    a = ask(b'{"request": "explode"}\n')
    assert not a["ok"] and "unknown request" in a["error"], a
    a = ask(b"x" * 10000)
    assert not a["ok"] and "longer than" in a["error"], a
    for _ in range(50):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.close()
    assert m.status()["ok"]
    m.check_alive()


def test_reload_moves_and_turns_off_the_socket(topology, socks, mpredir):
    """A reload to another control.socket answers on the old one, then the
    daemon listens on the new one; a reload to "" answers, then the socket
    is gone. A path that holds another kind of file is never removed: the
    daemon refuses to start there."""
    m = start(mpredir, socks)
    old = m.control_socket
    new = old + ".2"
    cfg = dict(m.config, control={"socket": new})
    r = m.reload(cfg)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(old) and os.path.exists(new)
    assert m.status()["config"]["control_socket"] == new
    r = m.reload(dict(m.config, control={"socket": ""}))
    assert r.returncode == 0, r.stderr
    assert "reloaded" in r.stdout, r.stdout
    assert not os.path.exists(new)
    m.check_alive()
    m.stop()

    keep = os.path.join(topology.workdir, "precious.json")
    with open(keep, "w") as f:
        f.write("{}\n")
    cfg = dict(m.config, control={"socket": keep},
               listen={"address": "::", "port": 1090})
    with pytest.raises(AssertionError):
        mpredir(config=cfg, load_rules=False, start_timeout=3)
    with open(keep) as f:
        assert f.read() == "{}\n"


def test_second_daemon_refused(topology, socks, mpredir):
    """A second daemon with the same control socket does not start (and
    does not touch the first one's table); a stale socket file (a daemon
    killed) is replaced."""
    m = start(mpredir, socks)
    cfg = dict(m.config, listen={"address": "::", "port": 1089})
    with pytest.raises(AssertionError):
        mpredir(config=cfg, load_rules=False, start_timeout=3)
    assert m.status()["ok"]
    r = topology.run("rtr", ["nft", "list", "table", "inet", "mpredir"])
    assert r.returncode == 0
    m.daemon.kill()
    assert os.path.exists(m.control_socket)
    m.start()
    assert m.status()["flows"]["now"] == 0


# ------------------------------------------------------------------------
# reload
# ------------------------------------------------------------------------
def test_reload_by_difference(topology, socks, mpredir):
    """During a 64 MiB download over two WANs, one reload adds a server
    (first in the list), removes wan2 and bypasses the download's
    destination: the download finishes intact; wan2's endpoint is gone
    and wan1's keeps its id; the old server keeps its counters; a new
    flow to another destination uses the new first server, and a new
    flow to the bypassed destination goes direct (not through the
    daemon)."""
    t = topology
    m = start(mpredir, socks, wans_config())
    wait_ready(t, m)
    ep1 = endpoint(t, "wan1")["id"]
    t.shape_wan(rate_mbit=RATE_MBIT)
    bg = lan_fetch_bg(t)
    t.wait_until(lambda: the_flow(m.status(flows=True)) is not None,
                 timeout=10, what="the download relaying")
    time.sleep(2)

    cfg = dict(m.config)
    cfg["servers"] = [socks["micro-none"].server_config()] + \
        m.config["servers"]
    cfg["wans"] = [w for w in m.config["wans"] if w["interface"] == "wan1"]
    cfg["firewall"] = dict(m.config["firewall"], bypass=[T.DST4 + "/32"])
    r = m.reload(cfg)
    assert r.returncode == 0, r.stderr
    assert "wan wan2 removed" in r.stdout, r.stdout
    st = m.status(flows=True)
    assert [s["port"] for s in st["servers"]] == [1082, 1080]
    old_flows = st["servers"][1]["flows"]
    assert old_flows >= 1, st["servers"]  # carried over
    assert [w["interface"] for w in st["wans"]] == ["wan1"]
    assert st["config"]["reloads"] == 1
    assert endpoint(t, "wan2") is None
    assert endpoint(t, "wan1")["id"] == ep1
    assert the_flow(st) is not None, "the download was dropped"

    res = bg.join()
    assert res.ok(BIG), res
    # new flows follow the new configuration
    before = m.status()["flows"]["total"]
    g = clients.fetch(t, "lan", clients.bytes_url(T.DST4, MiB), timeout=30)
    assert g.ok(MiB), g                       # bypassed: direct
    assert m.status()["flows"]["total"] == before
    g = clients.fetch(t, "lan", clients.bytes_url(T.DST6, MiB), timeout=30)
    assert g.ok(MiB), g                       # captured: the new server
    st = m.status()
    assert st["flows"]["total"] == before + 1
    # (microsocks takes no pipelined handshake: the flow's second attempt,
    # step by step, counts too)
    assert st["servers"][0]["flows"] >= 1, st["servers"]
    assert st["servers"][1]["flows"] == old_flows, st["servers"]


def test_reload_invalid_refused(topology, socks, mpredir):
    """An invalid file is refused: `mpredir reload` exits 1 and prints each
    error with its path; the daemon keeps its configuration and serves."""
    t = topology
    m = start(mpredir, socks, wans_config())
    wait_ready(t, m)
    bad = dict(m.config, servers=[{"address": "10.9.0.1", "port": 99999}],
               bogus=1)
    r = m.reload(bad)
    assert r.returncode == 1, r
    assert "servers[0].port: 99999 is not a port" in r.stderr, r.stderr
    assert "bogus: unknown key" in r.stderr, r.stderr
    assert "refused" in r.stderr, r.stderr
    st = m.status()
    assert st["config"]["reloads_refused"] == 1
    assert st["config"]["reloads"] == 0
    assert [s["port"] for s in st["servers"]] == [1080]
    g = clients.fetch(t, "lan", clients.bytes_url(T.DST4, MiB), timeout=30)
    assert g.ok(MiB), g
    assert m.status()["flows"]["total"] == 1
