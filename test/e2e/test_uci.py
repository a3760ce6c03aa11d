# SPDX-License-Identifier: GPL-2.0-or-later
r"""The daemon configured by an OpenWrt UCI file (/etc/config/mpredir):
`mpredir --check` on UCI files, and a daemon started with one that relays
LAN flows and applies a changed file on `mpredir reload` and on SIGHUP.

  lan ──── rtr (nft redirect → mpredir -c mpredir.uci) ══ wan1 / wan2 ══
  curl                                         srv (dante, microsocks) ── dst
(the full drawing is in test/lib/topo.py)
"""

import json
import os
import signal
import subprocess

import clients
import mpredir_daemon
import topo as T

MiB = 1 << 20
EXAMPLES = os.path.join(T.REPO_ROOT, "doc", "examples")
PACKAGE_CONFIG = os.path.join(T.REPO_ROOT, "openwrt-package", "mpredir",
                              "files", "mpredir.config")


def uci_quote(v):
    """A value as `uci export` writes it: in '...', a ' as '\''."""
    return "'" + str(v).replace("'", "'\\''") + "'"


def uci_value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def to_uci(cfg):
    """A JSON config dict -> the UCI text of the same configuration
    (doc/configuration.md, "UCI"): servers and wans one section each,
    nested objects flattened with '_', arrays as list lines."""
    out = ["package mpredir", "", "config mpredir 'main'",
           "\toption enabled '1'"]

    def section(stype, obj):
        out.append("")
        out.append("config %s" % stype)
        flat = {}
        for k, v in obj.items():
            if isinstance(v, dict):
                flat.update(("%s_%s" % (k, k2), v2) for k2, v2 in v.items())
            else:
                flat[k] = v
        for k, v in flat.items():
            if isinstance(v, list):
                out.extend("\tlist %s %s" % (k, uci_quote(uci_value(x)))
                           for x in v)
            else:
                out.append("\toption %s %s" % (k, uci_quote(uci_value(v))))

    for key, val in cfg.items():
        if key in ("servers", "wans"):
            for item in val:
                section(key[:-1], item)
        else:
            section(key, val)
    return "\n".join(out) + "\n"


class UciMpredir(mpredir_daemon.Mpredir):
    """An Mpredir whose configuration file is written in UCI."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.config_path = os.path.join(self.topo.workdir, self.name + ".uci")

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(to_uci(self.config))


def check(binary, path):
    return subprocess.run([binary, "--check", "-c", path],
                          capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_check_uci_files(topology, mpredir_bin):
    """`--check` accepts the example UCI files and the package's default
    file (exit 0, "valid"), and refuses a broken one with exit 1 and one
    line per error, each naming the file's line, section and option -
    never a password."""
    for path in [PACKAGE_CONFIG] + sorted(
            os.path.join(EXAMPLES, f) for f in os.listdir(EXAMPLES)
            if f.endswith(".uci")):
        r = check(mpredir_bin, path)
        assert r.returncode == 0, (path, r.stderr)
        assert r.stdout == "%s: valid\n" % path, r.stdout

    bad = os.path.join(topology.workdir, "bad-mpredir")
    with open(bad, "w") as f:
        f.write("config mpredir 'main'\n"
                "\toption enabled 'maybe'\n"
                "\n"
                "config server 'vps'\n"
                "\toption address 'socks.example.net'\n"
                "\toption port '70000'\n"
                "\toption username 'router1'\n"
                "\toption password 'Sup3rSecret'\n"
                "\n"
                "config firewall\n"
                "\tlist lan_interfaces 'br-lan'\n"
                "\tlist bypass 'not-a-prefix'\n"
                "\toption bogus '1'\n")
    r = check(mpredir_bin, bad)
    assert r.returncode == 1, r
    assert r.stdout == "", r.stdout
    assert r.stderr.splitlines() == [
        "%s:2: mpredir 'main', option enabled: expected a boolean (1/0, "
        "true/false, yes/no, on/off, enabled/disabled), got \"maybe\"" % bad,
        "%s:6: server 'vps', option port: 70000 is not a port (1-65535)"
        % bad,
        "%s:12: @firewall[0], list bypass: \"not-a-prefix\" is not an IPv4 "
        "or IPv6 address or prefix (like \"192.0.2.0/24\")" % bad,
        "%s:13: @firewall[0], option bogus: unknown option" % bad,
    ], r.stderr
    assert "Sup3rSecret" not in r.stderr + r.stdout

    # a syntax error: its line, and what was expected
    with open(bad, "w") as f:
        f.write("config server\n\toption password 'it's'\n")
    r = check(mpredir_bin, bad)
    assert r.returncode == 1, r
    assert r.stderr == "%s:2: the quote ' opened here is never closed\n" \
        % bad, r.stderr
    # neither JSON nor UCI
    with open(bad, "w") as f:
        f.write("# mpredir\nservers = 1\n")
    r = check(mpredir_bin, bad)
    assert r.returncode == 1, r
    assert r.stderr == ("%s:2: neither JSON nor UCI: expected '{' (JSON), "
                        "or config or package (UCI)\n" % bad), r.stderr

    # commands shortened to their first letter, the first one included
    with open(bad, "w") as f:
        f.write("# short\np mpredir\nc server\n\to address '192.0.2.1'\n"
                "\to port '1080'\nc firewall\n\tl bypass '10.0.0.0/8'\n")
    r = check(mpredir_bin, bad)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "%s: valid\n" % bad, r.stdout

    # an empty file (`touch /etc/config/mpredir`) and one of comments
    # only: one message, that names what is missing
    for text in ("", "\n", "# config server\n#\toption port '1080'\n"):
        with open(bad, "w") as f:
            f.write(text)
        r = check(mpredir_bin, bad)
        assert r.returncode == 1, r
        assert r.stderr == ("%s: empty: no server configured (a JSON object "
                            "or UCI config sections are expected)\n" % bad), \
            (text, r.stderr)


def test_status_socket_from_file(topology, mpredir_bin):
    """`mpredir status -c FILE` reads FILE as the daemon does: a UTF-8
    byte order mark (some editors write one) does not hide control.socket,
    in UCI or in JSON; the answer names the socket it tried (no daemon
    listens on it here)."""
    sock = os.path.join(topology.workdir, "none", "ctl.sock")
    texts = {
        "bom.uci": "\ufeffconfig control\n\toption socket '%s'\n" % sock,
        "bom.json": "\ufeff" + json.dumps({"control": {"socket": sock}}),
        "short.uci": "c control\n o socket '%s'\n" % sock,
        "plain.json": json.dumps({"control": {"socket": sock}}),
    }
    for name, text in texts.items():
        path = os.path.join(topology.workdir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        for cmd in ("status", "reload"):
            r = subprocess.run([mpredir_bin, cmd, "-c", path],
                               capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
            assert r.returncode == 1, (name, r)
            assert r.stderr.startswith("mpredir %s: %s: No such file or "
                                       "directory" % (cmd, sock)), \
                (name, r.stderr)


def test_daemon_runs_and_reloads_uci(topology, socks, mpredir_bin):
    """A daemon started with a UCI file relays a LAN flow through a SOCKS
    server with a password; `mpredir reload` applies a changed file (a
    server added in front), SIGHUP another (back to one server), and a
    broken file is refused with its UCI place while the daemon keeps
    serving."""
    t = topology
    config = mpredir_daemon.make_config([socks["dante-user"]])
    m = UciMpredir(t, config, binary=mpredir_bin)
    try:
        m.start()
        assert m.config_path.endswith(".uci")
        with open(m.config_path) as f:
            text = f.read()
        assert text.startswith("package mpredir\n"), text
        password = socks["dante-user"].password
        assert "\toption password '%s'\n" % password in text, text

        g = clients.fetch(t, "lan", clients.bytes_url(T.DST4, MiB),
                          timeout=30)
        assert g.ok(MiB), g
        st = m.status()
        assert [s["port"] for s in st["servers"]] == [1081]
        assert st["servers"][0]["flows"] == 1, st["servers"]

        # reload: a server in front of the first
        cfg = dict(m.config)
        cfg["servers"] = [socks["dante-none"].server_config()] + \
            m.config["servers"]
        r = m.reload(cfg)
        assert r.returncode == 0, r.stderr
        # (`status -c FILE` finds the control socket in the UCI file)
        r = subprocess.run([mpredir_bin, "status", "--json", "-c",
                            m.config_path], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        assert st["config"]["reloads"] == 1
        assert [s["port"] for s in st["servers"]] == [1080, 1081]
        g = clients.fetch(t, "lan", clients.bytes_url(T.DST6, MiB),
                          timeout=30)
        assert g.ok(MiB), g
        st = m.status()
        assert st["servers"][0]["flows"] == 1, st["servers"]
        assert st["servers"][1]["flows"] == 1, st["servers"]

        # SIGHUP: the file rewritten with the second server only
        m.config = dict(m.config, servers=[socks["micro-none"]
                                           .server_config()])
        m.write_config()
        m.signal(signal.SIGHUP)
        t.wait_until(lambda: m.status()["config"]["reloads"] == 2,
                     timeout=10, what="the SIGHUP reload")
        assert [s["port"] for s in m.status()["servers"]] == [1082]

        # a broken file is refused, with its place in the file
        with open(m.config_path) as f:
            n = len(f.read().splitlines())
        with open(m.config_path, "a") as f:
            f.write("\nconfig relay\n\toption max_flows 'lots'\n")
        r = m.control("reload")
        assert r.returncode == 1, r
        assert ("%s:%d: @relay[0], option max_flows: expected an integer, "
                "got \"lots\"" % (m.config_path, n + 3)) in r.stderr, r.stderr
        st = m.status()
        assert st["config"]["reloads_refused"] == 1
        assert [s["port"] for s in st["servers"]] == [1082]
        g = clients.fetch(t, "lan", clients.bytes_url(T.DST4, MiB),
                          timeout=30)
        assert g.ok(MiB), g
        m.stop()
        assert password not in m.log()
    finally:
        if m.running():
            m.stop(expect_status=None)
