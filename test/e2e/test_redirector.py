# SPDX-License-Identifier: GPL-2.0-or-later
r"""mpredir end to end: a LAN flow through the router's redirect, over one
MPTCP connection to a real SOCKS5 server (dante, microsocks; with and
without user/password), to a real web server.

  lan ──── rtr (nft redirect → mpredir) ══ wan1 / wan2 ══ srv (SOCKS5 under
  curl                                                     mptcpize) ── dst
                                                                   httpd.py
(the full drawing is in test/lib/topo.py)
"""

import concurrent.futures
import os
import re
import signal
import time

import pytest

import clients
import mpredir_daemon
import topo as T

MiB = 1 << 20
SERVERS = ["dante-none", "dante-user", "micro-none", "micro-user"]
DSTS = [pytest.param(T.DST4, id="v4"), pytest.param(T.DST6, id="v6")]
CAPABLE_RX = "MPTcpExtMPCapableSYNRX"
JOIN_SYN_RX = "MPTcpExtMPJoinSynRx"


def wait_delta(topology, ns, before, name, at_least=1, timeout=5.0):
    """Poll until nstat counter `name` grew by at_least; the delta."""
    def delta():
        return topology.nstat(ns).get(name, 0) - before.get(name, 0)
    try:
        topology.wait_until(lambda: delta() >= at_least, timeout=timeout,
                            what=name)
    except TimeoutError:
        pass
    return delta()


def hold_connection(topology, seconds=20):
    """A LAN connection through the redirect that stays open, idle."""
    code = ("import socket,time;s=socket.create_connection(('%s',%d));"
            "s.recv(100);time.sleep(%d)" % (T.DST4, T.BANNER_PORT, seconds))
    return topology.popen("lan", [T.PYTHON, "-c", code])


# The first flow to a server whose handling of a pipelined handshake is not
# known yet finds out (pipeline "auto"): a server that drops the rest of the
# write (microsocks) costs that flow up to about 1 s more, once.
PROBE_ALLOWANCE = 1.5


def reset_bound(server):
    return 1.0 + (PROBE_ALLOWANCE if server.startswith("micro") else 0)


def expect_reset(topology, url, within=1.0, at_accept=False):
    """curl from the LAN must fail with a connection reset, fast. A reset
    sent right at accept (at_accept) may reach curl while it still checks
    its connect: curl then says "Couldn't connect" (exit 7)."""
    r = clients.fetch(topology, "lan", url, timeout=15)
    resets = [(56, "reset")] + ([(7, "couldn't connect")] if at_accept else [])
    assert any(r.rc == rc and text in r.stderr.lower() for rc, text in resets), \
        "expected a reset, got rc=%d %r" % (r.rc, r.stderr)
    assert r.elapsed < within, "reset took %.2f s" % r.elapsed
    return r


# ------------------------------------------------------------- bulk data
@pytest.mark.parametrize("dst", DSTS)
@pytest.mark.parametrize("server", SERVERS)
def test_download_upload_64mib(topology, socks, mpredir, server, dst):
    srv = socks[server]
    m = mpredir(servers=[srv])
    before = topology.nstat("srv")
    r = clients.fetch(topology, "lan", clients.bytes_url(dst, 64 * MiB))
    assert r.ok(64 * MiB), r
    up = clients.upload(topology, "lan", clients.upload_url(dst), 64 * MiB)
    assert up.ok, up
    # MPTCP really used, and a second subflow joined over wan2.
    assert wait_delta(topology, "srv", before, CAPABLE_RX, 2) >= 2
    assert wait_delta(topology, "srv", before, JOIN_SYN_RX, 2) >= 2
    log = m.log()
    assert "(mptcp)" in log and "(tcp)" not in log


def test_one_upstream_connection_per_flow(topology, socks, mpredir):
    m = mpredir(servers=[socks["dante-none"]], upstream={"pool": {"size": 0}})
    before = topology.nstat("srv")
    for _ in range(10):
        assert clients.fetch(topology, "lan",
                             clients.bytes_url(T.DST4, 1000)).ok(1000)
    assert wait_delta(topology, "srv", before, CAPABLE_RX, 10) == 10
    topology.wait_until(lambda: m.log().count(": done") >= 10, timeout=5)
    assert m.log().count(": done") == 10


# ------------------------------------------------------------- half-close
@pytest.mark.parametrize("dst", DSTS)
def test_half_close(topology, socks, mpredir, dst):
    """The client shuts its sending side; the server still delivers 4 MiB.
    (dante: microsocks closes both directions on the client's FIN.)"""
    mpredir(servers=[socks["dante-none"]])
    res = clients.halfclose(topology, "lan", dst, send=300_000)
    assert res["ok"], res


@pytest.mark.parametrize("dst", DSTS)
def test_server_speaks_first(topology, socks, mpredir, dst):
    mpredir(servers=[socks["dante-user"]])
    res = clients.banner(topology, "lan", dst, send=50_000)
    assert res["ok"], res


# ------------------------------------------------------------- failures → RST
@pytest.mark.parametrize("dst", DSTS)
@pytest.mark.parametrize("server", SERVERS)
def test_connect_refused_resets(topology, socks, mpredir, server, dst):
    m = mpredir(servers=[socks[server]])
    expect_reset(topology, "http://%s:9/" % clients.host_in_url(dst),
                 within=reset_bound(server))
    assert "CONNECT refused" in m.log() or \
        "server closed before CONNECT reply" in m.log()


@pytest.mark.parametrize("dst", DSTS)
@pytest.mark.parametrize("server", ["dante-user", "micro-user"])
def test_wrong_password_resets(topology, socks, mpredir, server, dst):
    cfg = dict(socks[server].server_config(), password="wrong-password")
    m = mpredir(servers=[cfg])
    expect_reset(topology, clients.bytes_url(dst, 1000),
                 within=reset_bound(server))
    log = m.log()
    assert "wrong-password" not in log
    assert "authentication failed" in log or "closed" in log, log


@pytest.mark.parametrize("dst", DSTS)
def test_server_down_resets(topology, socks, mpredir, dst):
    srv = socks["micro-none"]
    m = mpredir(servers=[srv])
    srv.stop()
    # the connect to the stopped server is refused at once: the reset may
    # come while curl still checks its connect
    expect_reset(topology, clients.bytes_url(dst, 1000), at_accept=True)
    assert "no server reachable" in m.log()


def test_refused_reply_code_is_named(topology, socks, mpredir):
    m = mpredir(servers=[socks["dante-none"]])
    expect_reset(topology, "http://%s:9/" % T.DST4)
    assert "connection refused (0x05)" in m.log()


def test_second_server_used_when_first_down(topology, socks, mpredir):
    down, up = socks["micro-none"], socks["dante-none"]
    m = mpredir(servers=[down, up])
    down.stop()
    for _ in range(3):
        assert clients.fetch(topology, "lan",
                             clients.bytes_url(T.DST4, 1000)).ok(1000)
    assert m.wait_log(re.escape("via %s:%d" % (up.address, up.port)))
    assert "failures in a row, skipped" in m.log()


# ------------------------------------------------------------- MPTCP off
def test_mptcp_disabled_falls_back_to_tcp(topology, socks, mpredir):
    topology.sysctl("rtr", **{"net.mptcp.enabled": 0})
    try:
        m = mpredir(servers=[socks["dante-none"]])
        before = topology.nstat("srv")
        for dst in (T.DST4, T.DST6):
            r = clients.fetch(topology, "lan", clients.bytes_url(dst, 4 * MiB))
            assert r.ok(4 * MiB), r
        after = topology.nstat("srv")
        assert T.Topology.delta(before, after, CAPABLE_RX)[CAPABLE_RX] == 0
        log = m.log()
        assert log.count("kernel refuses MPTCP") == 1
        assert "(tcp)" in log
    finally:
        topology.sysctl("rtr", **{"net.mptcp.enabled": 1})


# ------------------------------------------------------------- listener
@pytest.mark.parametrize("addr", [T.RTR_LAN4, T.RTR_LAN6], ids=["v4", "v6"])
def test_direct_connection_to_listener_is_reset(topology, socks, mpredir,
                                                addr):
    # no warm pool: its connections would move the server's counters
    m = mpredir(servers=[socks["dante-none"]], upstream={"pool": {"size": 0}})
    before = topology.nstat("srv")
    expect_reset(topology, "http://%s:%d/" % (clients.host_in_url(addr),
                                             m.port), at_accept=True)
    assert "connected straight to the listener" in m.log()
    after = topology.nstat("srv")
    assert T.Topology.delta(before, after, CAPABLE_RX)[CAPABLE_RX] == 0


def test_max_flows_resets_beyond(topology, socks, mpredir):
    m = mpredir(servers=[socks["dante-none"]], relay={"max_flows": 1})
    hold = hold_connection(topology)
    try:
        topology.wait_until(lambda: "accepted" in m.log(), timeout=5)
        expect_reset(topology, clients.bytes_url(T.DST4, 1000),
                     at_accept=True)
        assert "max_flows (1) reached" in m.log()
    finally:
        hold.kill()
        hold.wait()


def test_half_close_timeout_reaps(topology, socks, mpredir):
    """A flow whose LAN side has ended while the destination stays silent is
    reset after half_close_timeout_s."""
    silent = topology.spawn("dst", [T.PYTHON, "-c", (
        "import socket,time;l=socket.create_server(('::',7007),"
        "family=socket.AF_INET6,dualstack_ipv6=True);c=l.accept();"
        "time.sleep(60)")], "silent-7007")
    topology.wait_for_port("dst", None, 7007, proc=silent)
    m = mpredir(servers=[socks["dante-none"]],
                relay={"half_close_timeout_s": 1})
    code = ("import socket,time;s=socket.create_connection(('%s',7007));"
            "s.shutdown(socket.SHUT_WR);t=time.time()\n"
            "try: s.recv(100); print('eof')\n"
            "except ConnectionResetError: print('reset')\n"
            "print(round(time.time()-t,1))" % T.DST4)
    r = topology.run("lan", [T.PYTHON, "-c", code], timeout=20)
    what, secs = r.stdout.split()
    assert what == "reset" and 1.0 <= float(secs) < 3.0, r.stdout
    assert "idle timeout" in m.log()
    silent.stop()


# ------------------------------------------------------------- signals
def test_sighup_reload(topology, socks, mpredir):
    first, second = socks["dante-none"], socks["micro-none"]
    m = mpredir(servers=[first])
    assert clients.fetch(topology, "lan",
                         clients.bytes_url(T.DST4, 1000)).ok(1000)
    # a download in progress continues across the reload
    slow = topology.popen("lan", ["curl", "-sS", "--limit-rate", "2M", "-o",
                                  "/dev/null", "-w", "%{size_download}",
                                  clients.bytes_url(T.DST4, 4 * MiB)],
                          stdout=__import__("subprocess").PIPE, text=True)
    topology.wait_until(lambda: m.log().count("accepted") >= 2, timeout=5)
    m.config["servers"] = [second.server_config()]
    m.write_config()
    m.signal(signal.SIGHUP)
    topology.wait_until(lambda: "reloaded" in m.log(), timeout=5)
    assert clients.fetch(topology, "lan",
                         clients.bytes_url(T.DST4, 1000)).ok(1000)
    out, _ = slow.communicate(timeout=30)
    assert slow.returncode == 0 and out.strip() == str(4 * MiB)
    # (a flow's line is written just after its client saw the end)
    assert m.wait_log(re.escape("via %s:%d" % (second.address, second.port)))
    # an invalid file is refused and the running config stays
    with open(m.config_path, "w") as f:
        f.write('{"servers": [], "bogus": 1}')
    m.signal(signal.SIGHUP)
    topology.wait_until(lambda: "reload of" in m.log(), timeout=5)
    log = m.log()
    assert "bogus: unknown key" in log and "refused" in log
    assert clients.fetch(topology, "lan",
                         clients.bytes_url(T.DST4, 1000)).ok(1000)


def test_sigterm_resets_flows_and_exits_0(topology, socks, mpredir):
    m = mpredir(servers=[socks["dante-none"]])
    hold = hold_connection(topology)
    try:
        topology.wait_until(lambda: "accepted" in m.log(), timeout=5)
        assert m.stop() == 0
        assert "stopping (1 flow(s) open)" in m.log()
    finally:
        hold.kill()
        hold.wait()


def test_check_option(topology, mpredir_bin, tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"servers": [{"address": "10.9.0.1", "port": 1080}]}')
    r = topology.run("rtr", [mpredir_bin, "--check", "-c", str(good)],
                     check=False)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"servers": [{"address": "10.9.0.1", "port": 70000}],'
                   ' "relay": {"max_flows": "many"}}')
    r = topology.run("rtr", [mpredir_bin, "--check", "-c", str(bad)],
                     check=False)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("servers[0].port:")
    assert lines[1].startswith("relay.max_flows:")


# ------------------------------------------------------------- descriptors
HOLD_MANY = r"""
import json, socket, sys
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok, reset = [], 0
for i in range(n):
    try:                      # a reset may come before connect() returns
        s = socket.create_connection((dst, port), timeout=5)
    except (ConnectionResetError, ConnectionRefusedError):
        reset += 1
        continue
    try:
        if s.recv(100).startswith(b"220"):
            ok.append(s)
            continue
    except (ConnectionResetError, socket.timeout):
        pass
    reset += 1
    s.close()
echo = 0
for s in ok:                  # the flows that got through still work
    s.sendall(b"ping\n")
    echo += s.recv(100) == b"ping\n"
print(json.dumps({"ok": len(ok), "reset": reset, "echo": echo}))
"""


def test_descriptor_shortage(topology, socks, mpredir, tmp_path):
    """With too few descriptors, new flows are reset at once, running flows
    are untouched, and service is back as soon as descriptors free up."""
    wrapper = tmp_path / "mpredir-nofile"
    wrapper.write_text('#!/bin/sh\nexec prlimit --nofile=48:48 -- %s "$@"\n'
                       % mpredir_daemon.binary_path())
    wrapper.chmod(0o755)
    m = mpredir(servers=[socks["dante-none"]], binary=str(wrapper),
                level="info")
    # (48, or less where a wrapper such as valgrind keeps some for itself)
    assert re.search(r"descriptor limit \d+ is below", m.log())
    t0 = time.monotonic()
    r = topology.run("lan", [T.PYTHON, "-c", HOLD_MANY, T.DST4,
                             str(T.BANNER_PORT), "40"], timeout=120)
    res = __import__("json").loads(r.stdout)
    assert res["ok"] >= 10 and res["reset"] >= 5, res
    assert res["echo"] == res["ok"], res
    log = m.log()
    lines = [l for l in log.splitlines() if "descriptors" in l
             or "resetting new connections" in l]
    # logged, but at most once a second (per kind of message)
    assert 1 <= len(lines) <= 2 * (time.monotonic() - t0 + 1), lines
    # the held connections are closed now: service is back by itself, as
    # soon as the daemon has seen them end
    topology.wait_until(lambda: clients.fetch(
        topology, "lan", clients.bytes_url(T.DST4, MiB)).ok(MiB), timeout=3)


# ------------------------------------------------------------- timeouts
def test_silent_server_setup_timeout(topology, socks, mpredir):
    """A server that accepts but never answers the greeting: the LAN client
    is reset at handshake_timeout_ms."""
    silent = topology.spawn("srv", [T.PYTHON, "-c", (
        "import socket,time;l=socket.create_server(('%s',1099));"
        "c=[l.accept() for _ in range(10)];time.sleep(60)" % T.SERVICE4)],
        "silent-socks")
    topology.wait_for_port("srv", T.SERVICE4, 1099, proc=silent)
    m = mpredir(servers=[{"address": T.SERVICE4, "port": 1099}],
                upstream={"connect_timeout_ms": 500,
                          "handshake_timeout_ms": 1000})
    r = expect_reset(topology, clients.bytes_url(T.DST4, 1000), within=3.0)
    assert r.elapsed >= 0.9, r
    assert "setup timeout: waiting for SOCKS reply" in m.log()
    silent.stop()


def test_black_holed_server_connect_timeout_fails_over(topology, socks,
                                                       mpredir):
    """SYNs to the first server are dropped: after connect_timeout_ms the
    flow moves on to the second server and succeeds."""
    topology.run("srv", "nft add table inet bh; nft add chain inet bh in "
                 "'{ type filter hook input priority 0; }'; "
                 "nft add rule inet bh in tcp dport 1099 drop")
    try:
        m = mpredir(servers=[{"address": T.SERVICE4, "port": 1099},
                             socks["dante-none"].server_config()],
                    upstream={"connect_timeout_ms": 300,
                              "handshake_timeout_ms": 3000})
        r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, 1000))
        assert r.ok(1000), r
        assert r.elapsed >= 0.25
        assert "connect: timed out" in m.log()
    finally:
        topology.run("srv", "nft delete table inet bh")


# ------------------------------------------------------------- workers
def test_workers_share_the_flows(topology, socks, mpredir):
    """relay.workers 4: four threads, each with a listener on the port;
    40 concurrent downloads all arrive intact, `mpredir status` lists every
    open flow whichever worker carries it, and a reload reaches them all
    (new flows use the new server)."""
    t = topology
    m = mpredir(servers=[socks["dante-none"]], relay={"workers": 4})
    tasks = os.listdir("/proc/%d/task" % m.pid)
    assert len(tasks) >= 4, tasks
    st = m.status()
    assert st["flows"]["workers"] == 4
    assert st["servers"][0]["pool"]["size"] == 2 * 4

    n, size = 40, 2 * MiB
    t.shape_wan(rate_mbit=50)
    try:
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            procs = [pool.submit(clients.fetch, t, "lan", clients.bytes_url(
                T.DST4 if i % 2 else T.DST6, size)) for i in range(n)]
            t.wait_until(lambda: m.status()["flows"]["now"] >= n // 2,
                         timeout=15, what="downloads relaying")
            st = m.status(flows=True, limit=0)
            assert len(st["flow_list"]) == st["flows"]["now"], st["flows"]
            ids = [f["id"] for f in st["flow_list"]]
            assert ids == sorted(ids, reverse=True), ids
            assert len(set(ids)) == len(ids), ids
            results = [p.result() for p in procs]
    finally:
        t.unshape_wan()
    assert all(r.ok(size) for r in results), [r for r in results
                                              if not r.ok(size)][:3]
    st = m.status()
    assert st["flows"]["ended"]["done"] >= n, st["flows"]

    cfg = dict(m.config, servers=[socks["micro-none"].server_config()])
    r = m.reload(cfg)
    assert r.returncode == 0, r.stderr
    for _ in range(8):
        g = clients.fetch(t, "lan", clients.bytes_url(T.DST4, 1000))
        assert g.ok(1000), g
    srv = m.status()["servers"]
    assert [s["port"] for s in srv] == [1082] and srv[0]["flows"] >= 8, srv
