#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""mpredir in one minute: `make demo` (as root; it builds first).

Builds a throwaway network of namespaces with test/lib (diagram in
test/lib/topo.py): a LAN host, a router with two WAN links shaped to
20 Mbit/s each, an aggregation server running dante (SOCKS5, no
authentication) under `mptcpize`, and a web server "on the Internet".
mpredir runs on the router with the configuration CONFIG below and the
reference nftables ruleset; the LAN host downloads 32 MiB with a plain
curl (no proxy setting). The demo then shows that the flow went through
mpredir, over MPTCP with one subflow per WAN link, how the bytes were
split between the links, the throughput, and that the data is intact.

Everything is removed at the end (namespaces, processes), also on Ctrl-C
or SIGTERM; a run killed with SIGKILL is cleaned up by the next run.
Exit status: 0 if everything worked, 1 otherwise.

The no-authentication dante server is used so that the demo creates no
system account; for username/password see doc/configuration.md and the
dante-user server in test/lib/socks_servers.py.
"""

import json
import os
import re
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "lib"))

import clients  # noqa: E402
import mpredir_daemon  # noqa: E402
import nftrules  # noqa: E402
import socks_servers  # noqa: E402
import topo as T  # noqa: E402

# The configuration mpredir runs with (what /etc/mpredir.json would hold).
# Every key is in doc/configuration.md; only "servers" is required.
CONFIG = {
    "listen": {"address": "::", "port": 1088},
    "servers": [{"address": T.SERVICE4, "port": 1080}],
    "upstream": {"mptcp": True, "mark": "0x4d50"},
    # the daemon installs its own nftables table for this LAN interface
    "firewall": {"lan_interfaces": [T.RTR_LAN_IF]},
    "log": {"level": "debug"},
}

RATE_MBIT = 20           # per WAN link
SIZE = 32 << 20          # bytes downloaded
SNAPSHOT_AFTER = 2.0     # seconds into the download: look at the sockets

CAPABLE_RX = "MPTcpExtMPCapableSYNRX"
JOIN_RX = "MPTcpExtMPJoinSynRx"


def say(text="", indent=0):
    for line in str(text).splitlines() or [""]:
        print(" " * indent + line)
    sys.stdout.flush()


def plural(n, what):
    return "%d %s%s" % (n, what, "" if n == 1 else "s")


def config_text(cfg):
    """The config as JSON, one line per section."""
    return "{\n%s\n}" % ",\n".join("  %s: %s" % (json.dumps(k), json.dumps(v))
                                   for k, v in cfg.items())


def mb(n):
    return "%.1f MB" % (n / 1e6)


# ------------------------------------------------------------ while running
def _ss(topo, args):
    """`ss -H ARGS` in rtr with -i: [(fields of the socket line, words of
    its info line)]."""
    lines = topo.run("rtr", ["ss", "-H"] + args).stdout.splitlines()
    return [(h.split(), i.split()) for h, i in zip(lines[::2], lines[1::2])]


def _word(words, prefix, default=""):
    return next((w[len(prefix):] for w in words if w.startswith(prefix)),
                default)


def socket_snapshot(topo):
    """What the router shows while the download runs: its MPTCP endpoint,
    the MPTCP connection carrying the download and its TCP subflows
    (condensed); other (idle) MPTCP connections are only counted."""
    out = []
    ep = topo.run("rtr", ["ip", "mptcp", "endpoint", "show"]).stdout.strip()
    out.append("%-26s # where extra subflows start" % "$ ip mptcp endpoint show")
    out += ["  " + ln for ln in ep.splitlines()]

    # subflows name their MPTCP connection: token:REMOTE(id:N)/LOCAL(id:N)
    subs = []
    for f, info in _ss(topo, ["-tni", "dst", T.SERVICE4]):
        tok = _word(info, "token:").partition("/")[2].partition("(")[0]
        subs.append((f[3], f[4], tok, int(_word(info, "bytes_received:", 0))))
    conns = []
    for f, info in _ss(topo, ["-Mni"]):
        tok = _word(info, "token:")
        rx = sum(b for _, _, t, b in subs if t == tok)
        conns.append((rx, f[3], f[4], tok, _word(info, "subflows:", "?")))
    if not conns:
        return "\n".join(out + ["$ ss -Mni: no MPTCP connection"])
    rx, local, peer, tok, extra = max(conns)
    out.append("%-26s # MPTCP connections (condensed)" % "$ ss -Mni")
    out.append("  %s -> %s  token %s, subflows:%s (besides the first)" % (
        local, peer, tok, extra))
    if len(conns) > 1:
        out.append("  and %d idle: warm spares of mpredir's connection pool"
                   % (len(conns) - 1))
    out.append("%-26s # that connection's TCP subflows (condensed)"
               % ("$ ss -tni dst " + T.SERVICE4))
    for local, peer, t, got in sorted(subs):
        if t == tok:
            out.append("  %-22s -> %s  %s received so far" % (
                local, peer, mb(got)))
    return "\n".join(out)


def snapshot_later(topo, done, result):
    if done.wait(SNAPSHOT_AFTER):
        result.append("(the download had already finished)")
        return
    try:
        result.append(socket_snapshot(topo))
    except Exception as e:  # noqa: BLE001 - only an illustration
        result.append("(could not read the sockets: %s)" % e)


# ------------------------------------------------------------ the demo
def demo(topo):
    """Run the demo in a set-up topology; return a list of failures."""
    failures = []
    topo.shape_wan(rate_mbit=RATE_MBIT)
    qd = topo.run("srv", ["tc", "qdisc", "show", "dev", "wan1"]).stdout.split()
    qd = qd[1:2] + qd[qd.index("rate"):] if "rate" in qd else qd
    say("network: LAN host %s -> router -> wan1 + wan2 -> server %s -> "
        "web server %s" % (T.LAN4, T.SERVICE4, T.DST4))
    say("         each WAN link shaped to %d Mbit/s both ways (tc %s)"
        % (RATE_MBIT, " ".join(qd)))

    dante = socks_servers.DanteServer(topo, "dante-none", 1080).start()
    say("server:  dante (SOCKS5, no authentication) on %s:%d, under "
        "`mptcpize run`" % (dante.address, dante.port))

    nst0 = topo.nstat("srv")
    m = mpredir_daemon.Mpredir(topo, CONFIG, name="mpredir",
                               load_rules=False).start()
    say("router:  mpredir -c %s (pid %d); its own nft table %s redirects TCP"
        " from %s to :%d" % (os.path.basename(m.config_path), m.pid,
                             nftrules.TABLE, T.RTR_LAN_IF, m.port))
    added = {k: v for k, v in m.config.items() if CONFIG.get(k) != v}
    if added:  # the test library may adapt the config (e.g. for its rules)
        say("(test/lib adds %s to that file)" % json.dumps(added), 9)

    url = clients.bytes_url(T.DST4, SIZE)
    say()
    say("downloading %d MiB on the LAN host: curl %s" % (SIZE >> 20, url))
    wan0 = topo.link_bytes("rtr")
    done, snap = threading.Event(), []
    t = threading.Thread(target=snapshot_later, args=(topo, done, snap),
                         daemon=True)
    t.start()
    try:
        r = clients.fetch(topo, "lan", url, timeout=120)
    finally:
        done.set()
    t.join(10)
    wan1 = topo.link_bytes("rtr")
    nst1 = topo.nstat("srv")
    say("while it ran, on the router:", 2)
    say("\n".join(snap) or "(no snapshot)", 4)

    say()
    say("results:")
    # 1. through mpredir
    redirected = nftrules.redirect_count(topo)
    # the flow's end line (written just after curl has seen its EOF)
    line = m.wait_log(r"^.*flow %s:\d+ -> %s:%d via \S+ \(\w+\): up .*$"
                      % (re.escape(T.LAN4), re.escape(T.DST4), T.HTTP_PORT),
                      timeout=5.0)
    if line and "(mptcp)" in line.group(0):
        say("mpredir      the nft rule redirected %s; mpredir logged:"
            % plural(redirected, "flow"), 2)
        say(line.group(0).split(" ", 2)[2], 15)
    else:
        failures.append("no MPTCP flow line in the mpredir log")
        say("mpredir      FAILED: no \"(mptcp)\" flow line in the log", 2)

    # 2. MPTCP: connections accepted by the server, subflows joined (since
    # mpredir started: it may open connections ahead of the flows)
    d = T.Topology.delta(nst0, nst1, CAPABLE_RX, JOIN_RX)
    say("MPTCP        since mpredir started, the server accepted %s"
        % plural(d[CAPABLE_RX], "MPTCP connection"), 2)
    say("(nstat %s +%d%s)" % (
        CAPABLE_RX, d[CAPABLE_RX], ": the download's, and spares mpredir "
        "opened in advance" if d[CAPABLE_RX] > 1 else ""), 15)
    say("and %s joined them over wan2 (nstat %s +%d)"
        % (plural(d[JOIN_RX], "second subflow"), JOIN_RX, d[JOIN_RX]), 15)
    if d[CAPABLE_RX] < 1:
        failures.append("the server accepted no MPTCP connection")
    if d[JOIN_RX] < 1:
        failures.append("no second subflow joined")

    # 3. bytes per WAN link (rx on the router: the download direction)
    rx = {w: wan1[w][0] - wan0[w][0] for w in T.WAN_IFS}
    tx = {w: wan1[w][1] - wan0[w][1] for w in T.WAN_IFS}
    total = sum(rx.values()) or 1
    for i, w in enumerate(T.WAN_IFS):
        say("%-12s %s: %s in (%2.0f %%), %s out" % (
            "WAN links" if i == 0 else "", w, mb(rx[w]), 100 * rx[w] / total,
            mb(tx[w])), 2)
    if min(rx.values()) < total * 0.1:
        failures.append("one WAN link carried less than 10 % of the bytes")

    # 4. throughput
    links = RATE_MBIT * len(T.WAN_IFS)
    say("throughput   %.1f Mbit/s in %.1f s: %.0f %% of the %d Mbit/s of both"
        " links" % (r.mbit_s, r.elapsed, 100 * r.mbit_s / links, links), 2)
    say("(headers take ~6 %% of each frame: ~%.1f Mbit/s of data at most;"
        % (links * 1420 / 1514), 15)
    say("one link alone: at most %.1f)" % (RATE_MBIT * 1448 / 1514), 16)

    # 5. integrity
    if r.ok(SIZE):
        say("data         %d bytes, sha256 %s... as expected" % (
            r.size, r.sha256[:16]), 2)
    else:
        failures.append("download failed or corrupt: curl exit %d, HTTP %d, "
                        "%d bytes, %s" % (r.rc, r.http_code, r.size,
                                          r.stderr.strip()))
        say("data         FAILED: %s" % failures[-1], 2)

    try:
        m.stop()  # SIGTERM: must exit 0
    except mpredir_daemon.MpredirError as e:
        failures.append(str(e).splitlines()[0])
    if failures:
        say()
        say("--- mpredir log (last 20 lines) ---")
        say(m.log(tail=20))
    return failures


def main():
    if os.geteuid() != 0:
        say("demo.py: needs root (network namespaces); try: sudo make demo")
        return 1
    binary = mpredir_daemon.binary_path()
    if not os.access(binary, os.X_OK):
        say("demo.py: %s not built; run `make demo` (or `make` first)" % binary)
        return 1
    T.install_sigterm_cleanup()  # SIGTERM -> KeyboardInterrupt -> cleanup

    t0 = time.monotonic()
    say("mpredir demo: a LAN download through mpredir over two %d Mbit/s "
        "links" % RATE_MBIT)
    say()
    say("mpredir configuration (embedded in %s):" % os.path.relpath(__file__))
    say(config_text(CONFIG), 2)
    say('("debug" logs one line per flow, shown below; "info" is the usual '
        'level)', 2)
    say()

    topo = T.Topology()
    failures = []
    try:
        topo.setup()
        say("namespaces %s-{lan,rtr,srv,dst} (removed at the end)" % topo.tag)
        failures = demo(topo)
    except KeyboardInterrupt:
        failures = ["interrupted"]
    except Exception as e:  # noqa: BLE001 - report, clean up, exit 1
        failures = ["%s: %s" % (type(e).__name__, e)]
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            topo.teardown()
            cleanup = "cleaned up"
        except Exception as e:  # noqa: BLE001
            failures.append("cleanup: %s" % e)
            cleanup = "cleanup FAILED"
    say()
    if failures:
        say("demo FAILED (%s, %.0f s):" % (cleanup, time.monotonic() - t0))
        for f in failures:
            say("- " + f, 2)
        return 1
    say("demo OK (%s, %.0f s)" % (cleanup, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
