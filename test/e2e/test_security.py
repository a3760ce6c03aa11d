# SPDX-License-Identifier: GPL-2.0-or-later
r"""Security, end to end: who can reach the listener, whether it can be
used as an open proxy, and where the SOCKS password may show up.

  lan ──── rtr (mpredir :1088, its own table inet mpredir) ══ wan1 / wan2 ══ srv ── dst
  LAN host                                                         "WAN side"
(the full drawing is in test/lib/topo.py)

The listener binds every address ("::"), so the daemon's table drops
connections to its port that come in from anywhere but a LAN interface
or lo (chain input); LAN hosts that connect to it straight are reset at
accept, before any upstream connection (flow.c, counted as
`refused.direct`). Also covered elsewhere: the control socket refuses
non-root (test_status.py::test_control_socket_root_only); a direct
connection through the reference ruleset
(test_redirector.py::test_direct_connection_to_listener_is_reset); a
wrong password resets in every set-up mode and is not logged
(test_setup_modes.py::test_wrong_password_resets_in_every_mode).
"""

import copy
import json
import os
import re
import secrets
import stat

import pytest

import clients
import topo as T

MODES = ["redirect", "tproxy"]
PASSIVE_OPENS = "TcpPassiveOpens"

# In a namespace: connect to each ADDR:PORT at once (2 s each), send a
# SOCKS5 greeting, and tell what happened.
PROBE = r"""
import concurrent.futures, json, socket, sys
port, addrs = int(sys.argv[1]), sys.argv[2:]
def one(a):
    s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
    s.settimeout(2)
    try:
        try:
            s.connect((a, port))
        except socket.timeout:
            return "dropped"
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:   # the RST came with the handshake
            return "reset"
        except OSError as e:
            return "error: " + e.strerror
        try:
            s.sendall(b"\x05\x01\x00")
            return "answered" if s.recv(100) else "eof"
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except socket.timeout:
            return "open"
    finally:
        s.close()
with concurrent.futures.ThreadPoolExecutor(len(addrs)) as ex:
    print(json.dumps(dict(zip(addrs, ex.map(one, addrs)))))
"""

RTR_ADDRS = [T.RTR_LAN4, T.RTR_LAN6, T.RTR_WAN1, T.RTR_WAN2, T.RTR_WAN1_6]


def probe(topology, ns, addrs, port):
    r = topology.run(ns, [T.PYTHON, "-c", PROBE, str(port)] + list(addrs),
                     timeout=30)
    return json.loads(r.stdout)


def start(mpredir, socks, mode):
    """The daemon with its own firewall, no warm pool (its connections
    would move the server's counters)."""
    return mpredir(servers=[socks["dante-none"]], load_rules=False,
                   firewall={"enabled": True, "mode": mode,
                             "lan_interfaces": [T.RTR_LAN_IF]},
                   upstream={"pool": {"size": 0}})


def guard_packets(topology):
    """Packets the table's input rule (the listener guard) dropped."""
    out = topology.run("rtr", ["nft", "list", "chain", "inet", "mpredir",
                               "input"]).stdout
    m = re.search(r"tcp dport \d+ counter packets (\d+) bytes \d+ drop", out)
    assert m, out
    return int(m.group(1))


def listener_binds_everything(topology, port):
    r = topology.run("rtr", ["ss", "-Hltn", "sport", "= :%d" % port])
    return any(line.split()[3] in ("*:%d" % port, "[::]:%d" % port)
               for line in r.stdout.splitlines())


# ------------------------------------------------------------- listener
@pytest.mark.parametrize("mode", MODES)
def test_listener_unreachable_from_wan(topology, socks, mpredir, mode):
    """From srv (beyond both WANs) and dst (the Internet), connections to
    every router address on the listener port are dropped by the daemon's
    table: no SYN reaches the listener, which binds every address."""
    m = start(mpredir, socks, mode)
    assert listener_binds_everything(topology, m.port)
    # srv has no route to the LAN side: give it one, as a hostile
    # neighbour on the WAN would have
    routes = [["route", "add", "192.168.50.0/24", "via", T.RTR_WAN1],
              ["-6", "route", "add", "fd00:50::/64", "via", T.RTR_WAN1_6]]
    for r in routes:
        topology.ip("srv", r)
    try:
        before = m.status()["flows"]
        dropped0 = guard_packets(topology)
        seen = probe(topology, "srv", RTR_ADDRS, m.port)
        seen.update({"dst->" + a: v for a, v in probe(
            topology, "dst", [T.RTR_WAN1, T.RTR_WAN2], m.port).items()})
    finally:
        for r in routes:
            topology.ip("srv", [x if x != "add" else "del" for x in r],
                        check=False)
    assert set(seen.values()) == {"dropped"}, seen
    assert guard_packets(topology) - dropped0 >= len(seen)
    after = m.status()["flows"]
    assert after["total"] == before["total"]
    assert after["refused"] == before["refused"]
    # the same port from the LAN reaches the listener (and is reset)
    lan = probe(topology, "lan", [T.RTR_LAN4], m.port)
    assert lan == {T.RTR_LAN4: "reset"}, lan


@pytest.mark.parametrize("mode", MODES)
def test_listener_is_not_an_open_proxy(topology, socks, mpredir, mode):
    """A LAN host connecting straight to the listener, on any router
    address (not redirected: the table leaves the router's own addresses
    alone), is reset at accept: no flow, no upstream connection (srv sees
    no connection at all), counted as refused.direct."""
    m = start(mpredir, socks, mode)
    before = m.status()["flows"]
    srv0 = topology.nstat("srv")
    seen = probe(topology, "lan", RTR_ADDRS, m.port)
    assert set(seen.values()) == {"reset"}, seen
    topology.wait_until(
        lambda: m.status()["flows"]["refused"]["direct"] -
        before["refused"]["direct"] >= len(RTR_ADDRS), timeout=5,
        what="direct connections counted")
    after = m.status()["flows"]
    assert after["refused"]["direct"] - before["refused"]["direct"] == \
        len(RTR_ADDRS)
    assert after["total"] == before["total"]
    d = T.Topology.delta(srv0, topology.nstat("srv"), PASSIVE_OPENS)
    assert d[PASSIVE_OPENS] == 0, d
    assert "connected straight to the listener" in m.log()


# ------------------------------------------------------------- passwords
def hold_flow(topology):
    """A LAN flow that stays open (for status --flows): the half-close
    service answers only after the client's EOF."""
    code = ("import socket,sys;s=socket.create_connection(('%s',%d));"
            "s.sendall(b'x');print('up',flush=True);sys.stdin.read()"
            % (T.DST4, T.HALFCLOSE_PORT))
    p = topology.popen("lan", [T.PYTHON, "-c", code], stdin=-1, stdout=-1,
                       text=True)
    assert p.stdout.readline().strip() == "up"
    return p


def test_password_never_shown(topology, socks, mpredir, mpredir_bin,
                              tmp_path):
    """The server's password appears in no log line (level debug) and no
    output: flows that succeed, a server that rejects the password (after
    a reload that changed it), an invalid reload, --check on files with a
    bad value next to the password, status in every form."""
    server = socks["dante-user"]
    secret = server.password
    wrong = "wrong-" + secrets.token_hex(8)
    outputs = []

    def run(*args):
        r = m.control(*args)
        outputs.append((" ".join(args), r.stdout + r.stderr))
        return r

    m = mpredir(servers=[server], level="debug")
    r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, 100_000))
    assert r.ok(100_000), r
    p = hold_flow(topology)
    try:
        topology.wait_until(lambda: m.status()["flows"]["now"] == 1,
                            timeout=5, what="the held flow relaying")
        for args in (["status"], ["status", "--json"],
                     ["status", "--flows"], ["status", "--json", "--flows"]):
            assert run(*args).returncode == 0
    finally:
        p.stdin.close()
        p.wait()
    assert "10.9.0.1:%d" % server.port in outputs[0][1]
    assert "%s:%d" % (T.DST4, T.HALFCLOSE_PORT) in outputs[2][1]

    # the server rejects the password: a reload changed it
    cfg = copy.deepcopy(m.config)
    cfg["servers"][0]["password"] = wrong
    assert m.reload(cfg).returncode == 0
    r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, 1000),
                      timeout=15)
    assert r.rc != 0, r
    assert m.wait_log(r"authentication failed", timeout=5)
    run("status", "--json")

    # an invalid file: refused, its errors printed and logged
    bad = copy.deepcopy(cfg)
    bad["servers"][0]["password"] = secret
    bad["servers"][0]["port"] = 70000
    bad["relay"] = {"max_flows": -1}
    r = m.reload(bad)
    outputs.append(("reload (invalid)", r.stdout + r.stderr))
    assert r.returncode != 0 and "70000" in r.stderr, r

    # back to the right one: flows work again
    good = copy.deepcopy(cfg)
    good["servers"][0]["password"] = secret
    assert m.reload(good).returncode == 0
    r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, 1000))
    assert r.ok(1000), r

    # --check: a bad value next to it, a password too long, a NUL in it,
    # a JSON syntax error just after it
    srv = '"address": "10.9.0.1", "username": "u", '
    files = {
        "port": '{"servers": [{%s"port": 70000, "password": "%s"}]}'
                % (srv, secret),
        "long": '{"servers": [{%s"port": 1080, "password": "%s"}]}'
                % (srv, secret * 20),
        "nul": '{"servers": [{%s"port": 1080, "password": "%s\\u0000"}]}'
               % (srv, secret),
        "syntax": '{"servers": [{%s"port": 1080, "password": "%s" "x"}]}'
                  % (srv, secret),
        "type": '{"servers": [{%s"port": "1080", "password": "%s"}]}'
                % (srv, secret),
    }
    for name, text in files.items():
        f = tmp_path / (name + ".json")
        f.write_text(text)
        os.chmod(f, 0o600)
        r = topology.run(None, [mpredir_bin, "--check", "-c", str(f)],
                         check=False)
        assert r.returncode == 1, (name, r)
        outputs.append(("--check " + name, r.stdout + r.stderr))

    m.stop()
    outputs.append(("daemon log", m.log()))
    for what, text in outputs:
        for pw in (secret, wrong):
            assert pw not in text, "password in %s:\n%s" % (what, text)


# ------------------------------------------------------------- file mode
WARNING = r"mode (\d{4}) lets (every user|its group) read the server password"


def warnings(m):
    return re.findall(WARNING, m.log())


def test_config_mode_warning(topology, socks, mpredir):
    """A config file holding a password that group or others may read:
    one warning at start and at each reload, naming the file and its
    mode, never the password; none at 0600 or without a password. The
    test library creates config files 0600."""
    server = socks["dante-user"]
    m = mpredir(servers=[server], name="mpredir-mode")
    assert stat.S_IMODE(os.stat(m.config_path).st_mode) == 0o600
    assert warnings(m) == []
    m.stop()
    os.chmod(m.config_path, 0o644)
    m.start()   # rewrites the file, keeps its mode
    assert warnings(m) == [("0644", "every user")]
    line = [x for x in m.log().splitlines() if "lets every user" in x][0]
    assert m.config_path in line and "chmod 600" in line
    assert server.password not in m.log()

    os.chmod(m.config_path, 0o640)
    assert m.reload().returncode == 0
    assert warnings(m)[1:] == [("0640", "its group")]
    os.chmod(m.config_path, 0o600)
    assert m.reload().returncode == 0
    assert m.log().count("reloaded ") == 2
    assert len(warnings(m)) == 2
    m.stop()
    assert server.password not in m.log()

    # no password: nothing to warn about
    n = mpredir(servers=[socks["dante-none"]], name="mpredir-mode-none")
    os.chmod(n.config_path, 0o644)
    assert n.reload().returncode == 0
    assert n.log().count("reloaded ") == 1
    assert warnings(n) == []
