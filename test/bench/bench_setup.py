#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Connection setup benchmark: time to the first response byte of fresh
connections (`make bench-setup`, root, about 4 minutes).

Topology: test/lib/topo.py with 25 ms one-way delay on each WAN link (RTT
rtr<->srv 50 ms) and 0.25 ms each way on srv<->dst (test/lib/delay.py:
NFQUEUE, no netem here). A client in lan fetches a 100-byte object from
httpd in dst with curl, REQUESTS times in a row, each a new curl process
and so a new TCP connection, and records curl's `time_starttransfer` (and
`time_connect`). Rows:

  direct      no proxy: rtr routes over wan1 (masqueraded), plain TCP
  redsocks    Debian's redsocks in rtr (under mptcpize) -> dante
  step        mpredir, pipeline off, no pool
  pipelined   mpredir, pipeline auto (learned on warm-up flows), no pool
  pool        mpredir, pipeline auto, pool size 2: the default config
  fastopen    mpredir over plain TCP (upstream.mptcp false) with TCP Fast
              Open on, pipeline auto, no pool, to a dante NOT under
              mptcpize, srv with net.ipv4.tcp_fastopen=0x403

Every proxied row uses dante without authentication (the MPTCP ones under
`mptcpize run`), reached through the reference nftables ruleset.

The results go into doc/benchmarks.md between the markers
<!-- bench-setup:begin --> and <!-- bench-setup:end --> (the section is
added at the end when they are missing; the rest of the file is kept), and
the plot into doc/bench-setup.png.

Usage: bench_setup.py [--requests N] [--warmup N] [--pause-ms MS]
                      [--only ROW[,ROW...]] [--json FILE] [--no-doc]
       bench_setup.py --from-json FILE        (render again, no measuring)
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import delay  # noqa: E402
import mpredir_daemon  # noqa: E402
import nftrules  # noqa: E402
import socks_servers  # noqa: E402
import topo as T  # noqa: E402

DOC = os.path.join(T.REPO_ROOT, "doc", "benchmarks.md")
PLOT = os.path.join(T.REPO_ROOT, "doc", "bench-setup.png")
BEGIN = "<!-- bench-setup:begin -->"
END = "<!-- bench-setup:end -->"

WAN_DELAY_MS = 25.0          # one way, each WAN link
INET_DELAY_MS = 0.25         # one way, srv <-> dst
OBJECT = 100                 # bytes of the response body
URL = "http://%s:%d/bytes/%d" % (T.DST4, T.HTTP_PORT, OBJECT)
REQUESTS = 200
WARMUP = 5
PAUSE_MS = 20
REDSOCKS_PORT = 12345
DANTE_PORT = 1080            # under mptcpize
PLAIN_DANTE_PORT = 1180      # not under mptcpize (Fast Open over TCP)
FASTOPEN_SERVER = 0x403      # srv: client + server + server without sockopt

CAPABLE_RX = "MPTcpExtMPCapableSYNRX"
FO_COUNTERS = ("TcpExtTCPFastOpenActive", "TcpExtTCPFastOpenActiveFail")
FO_SRV_COUNTERS = ("TcpExtTCPFastOpenPassive", "TcpExtTCPFastOpenPassiveFail",
                   "TcpExtTCPFastOpenCookieReqd")

# key, label, goal (max ratio of the median to direct's), mpredir upstream
# settings (None: not mpredir)
ROWS = [
    ("direct", "direct (no proxy, wan1)", None, None),
    ("redsocks", "redsocks + dante (step by step)", None, None),
    ("step", "mpredir step by step", None,
     {"pipeline": "off", "pool": {"size": 0}}),
    ("pipelined", "mpredir pipelined", 1.05,
     {"pipeline": "auto", "pool": {"size": 0}}),
    ("pool", "mpredir pipelined + pool (default config)", 0.6,
     {"pipeline": "auto", "pool": {"size": 2}}),
    ("fastopen", "mpredir Fast Open over TCP, pipelined", None,
     {"mptcp": False, "fast_open": "on", "pipeline": "auto",
      "pool": {"size": 0}}),
]
ROW_KEYS = [r[0] for r in ROWS]
# redsocks is expected (not a goal) near 2x: reported as within this band
REDSOCKS_BAND = (1.8, 2.2)


class BenchError(RuntimeError):
    pass


def log(msg):
    print(msg, flush=True)


# ================================================================ measuring
def quantile(xs, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def curl_once(topo, timeout=10):
    """One fresh connection: (time_connect, time_starttransfer) in ms."""
    r = topo.run("lan", ["curl", "-sS", "--no-keepalive", "--max-time",
                         str(timeout), "-o", "/dev/null", "-w",
                         "%{http_code} %{size_download} %{time_connect} "
                         "%{time_starttransfer}\n", URL],
                 check=False, timeout=timeout + 10)
    f = r.stdout.split()
    if r.returncode != 0 or len(f) != 4 or f[0] != "200" or \
            int(f[1]) != OBJECT:
        raise BenchError("curl %s failed: exit %d, out %r, err %r" % (
            URL, r.returncode, r.stdout, r.stderr))
    return float(f[2]) * 1000, float(f[3]) * 1000


def series(topo, n, pause_ms, label):
    """n requests in a row, pause_ms between them; lists of ms."""
    connect, ttfb = [], []
    for i in range(n):
        c, t = curl_once(topo)
        connect.append(round(c, 3))
        ttfb.append(round(t, 3))
        if (i + 1) % 50 == 0:
            log("    %s: %d/%d, median so far %.1f ms" % (
                label, i + 1, n, statistics.median(ttfb)))
        time.sleep(pause_ms / 1000)
    return connect, ttfb


def srv_capable(topo):
    return topo.nstat("srv").get(CAPABLE_RX, 0)


class Bench:
    def __init__(self, topo, requests, warmup, pause_ms):
        self.topo = topo
        self.requests = requests
        self.warmup = warmup
        self.pause_ms = pause_ms
        self._dante = {}
        self._known = {}

    def dante(self, mptcp=True):
        if mptcp not in self._dante:
            name, port = (("dante-none", DANTE_PORT) if mptcp
                          else ("plain-dante-none", PLAIN_DANTE_PORT))
            self._dante[mptcp] = socks_servers.DanteServer(
                self.topo, name, port, mptcp=mptcp).start()
        return self._dante[mptcp]

    def knows_key(self, section):
        """Does the daemon's --check accept this top-level section?"""
        if section not in self._known:
            path = os.path.join(self.topo.workdir, "check-%s.json" % section)
            with open(path, "w") as f:
                json.dump({"servers": [{"address": T.SERVICE4,
                                        "port": DANTE_PORT}],
                           section: {}}, f)
            r = subprocess.run([mpredir_daemon.binary_path(), "--check",
                                "-c", path], capture_output=True, text=True)
            self._known[section] = r.returncode == 0
        return self._known[section]

    def measure(self, key, label, notes, warmup=True):
        """Warm-up, then the measured series; counts MPTCP connections
        srv accepted during the series."""
        if warmup and self.warmup:
            series(self.topo, self.warmup, self.pause_ms, key + " warm-up")
        cap0 = srv_capable(self.topo)
        rtr0 = self.topo.nstat("rtr")
        srv0 = self.topo.nstat("srv")
        t0 = time.monotonic()
        connect, ttfb = series(self.topo, self.requests, self.pause_ms, key)
        secs = time.monotonic() - t0
        rtr1 = self.topo.nstat("rtr")
        srv1 = self.topo.nstat("srv")
        row = {"key": key, "label": label, "connect_ms": connect,
               "ttfb_ms": ttfb, "seconds": round(secs, 1),
               "mptcp_accepted": srv_capable(self.topo) - cap0,
               "fastopen_rtr": T.Topology.delta(rtr0, rtr1, *FO_COUNTERS),
               "fastopen_srv": T.Topology.delta(srv0, srv1, *FO_SRV_COUNTERS),
               "notes": notes}
        log("  %s: median %.1f ms, p90 %.1f ms (%d requests, %.0f s)" % (
            key, statistics.median(ttfb), quantile(ttfb, 0.9), len(ttfb),
            secs))
        return row

    # ------------------------------------------------------------- rows
    def row_direct(self, key, label, _up):
        nftrules.unload(self.topo)
        return self.measure(key, label, [
            "curl in lan -> rtr routes 198.18.0.0/15 over wan1 (masquerade)"
            " -> dst; plain TCP end to end"])

    def row_redsocks(self, key, label, _up):
        srv = self.dante(mptcp=True)
        conf = os.path.join(self.topo.workdir, "redsocks.conf")
        with open(conf, "w") as f:
            f.write("""\
base {
    log_debug = off;
    log_info = off;
    log = stderr;
    daemon = off;
    redirector = iptables;
}
redsocks {
    local_ip = 0.0.0.0;
    local_port = %d;
    ip = %s;
    port = %d;
    type = socks5;
}
""" % (REDSOCKS_PORT, srv.address, srv.port))
        d = self.topo.spawn("rtr", ["mptcpize", "run", "redsocks", "-c",
                                    conf], "redsocks")
        try:
            self.topo.wait_for_port("rtr", "0.0.0.0", REDSOCKS_PORT, proc=d)
            nftrules.load(self.topo, port=REDSOCKS_PORT,
                          servers=[srv.address])
            row = self.measure(key, label, [
                "redsocks %s, `redsocks -c CONF` under `mptcpize run` in rtr"
                " (so its upstream connections are MPTCP, like mpredir's),"
                " `type = socks5`, no auth; the reference nft ruleset"
                " redirects to its port %d" % (
                    redsocks_version(), REDSOCKS_PORT)])
            d.check_alive()
        finally:
            nftrules.unload(self.topo)
            d.stop()
            self.topo.daemons.remove(d)
        return row

    def row_mpredir(self, key, label, up):
        up = dict(up)
        mptcp = up.pop("mptcp", True)
        old_fo = None
        if up.get("fast_open") == "on":
            # before the server listens: the kernel sizes a listener's Fast
            # Open queue (0x400: for servers without TCP_FASTOPEN) in
            # listen(); a listener made earlier never hands out a cookie
            old_fo = self.topo.run("srv", ["sysctl", "-n",
                                           "net.ipv4.tcp_fastopen"]).stdout
            self.topo.sysctl("srv", **{"net.ipv4.tcp_fastopen":
                                       FASTOPEN_SERVER})
            if not mptcp and False in self._dante:
                self._dante[False].restart()
        srv = self.dante(mptcp=mptcp)
        cfg = mpredir_daemon.make_config([srv], mptcp=mptcp, level="debug",
                                         upstream=up)
        m = mpredir_daemon.Mpredir(self.topo, cfg, name="mpredir-" + key)
        if "firewall" in m.config and not self.knows_key("firewall"):
            # an older daemon ($MPREDIR_BIN): it has no firewall section
            # (it never installs a ruleset of its own)
            del m.config["firewall"]
        m.start()
        try:
            log_start = len(m.log())
            if self.warmup:
                series(self.topo, self.warmup, self.pause_ms, key + " warm-up")
            time.sleep(0.3)   # the warm-up flows' end lines are written
            warm_log = m.log()[log_start:]
            log_mark = len(warm_log) + log_start
            row = self.measure(key, label, [], warmup=False)
            time.sleep(0.2)
            m.check_alive()
            run_log = m.log()[log_mark:]
        finally:
            m.stop()
            if old_fo is not None:
                self.topo.sysctl("srv", **{"net.ipv4.tcp_fastopen":
                                           int(old_fo)})
        row["config"] = dict(up, mptcp=mptcp)
        row["warm_hits"] = len(re.findall(r"flow to \S+: warm connection$",
                                          run_log, re.M))
        row["retried_fresh"] = run_log.count("retrying fresh")
        ends = re.findall(r"^.*flow \S+ -> \S+ via \S+ \((mptcp|tcp)\): "
                          r".*: (\w[\w ]*?)(?::|$)", run_log, re.M)
        row["flows_mptcp"] = sum(1 for p, _ in ends if p == "mptcp")
        row["flows_tcp"] = sum(1 for p, _ in ends if p == "tcp")
        row["flows_not_done"] = sum(1 for _, e in ends if e != "done")
        row["accepted"] = len(re.findall(r": accepted$", run_log, re.M))
        row["learned_pipelining"] = (
            "takes a pipelined SOCKS handshake" in warm_log + run_log)
        row["not_pipelining"] = "does not answer a pipelined" in \
            warm_log + run_log
        errors = [ln for ln in run_log.splitlines()
                  if re.search(r"\b(warn|error)\b", ln, re.I)]
        row["log_warnings"] = errors[:10]
        return row


def redsocks_version():
    r = subprocess.run(["redsocks", "-v"], capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip().splitlines()
    return out[0] if out else "?"


def pkg_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def machine_info():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    curl = subprocess.run(["curl", "--version"], capture_output=True,
                          text=True).stdout.split("\n")[0]
    binary = mpredir_daemon.binary_path()
    try:
        ver = subprocess.run([binary, "--version"], capture_output=True,
                             text=True).stdout.strip() or "?"
    except OSError as e:
        ver = "? (%s)" % e.strerror
    if os.environ.get("MPREDIR_BIN"):
        ver += " (`MPREDIR_BIN=%s`)" % binary
    else:
        git = ["git", "-C", T.REPO_ROOT]
        head = subprocess.run(git + ["rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--",
                                      "redirector"], capture_output=True,
                               text=True).stdout.strip()
        if head:
            ver += ", commit %s%s" % (
                head, " + uncommitted changes in redirector/" if dirty
                else "")
    return {
        "mpredir": ver,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "curl": " ".join(curl.split()[:2]),
        "dante": pkg_version("dante-server"),
        "redsocks": pkg_version("redsocks"),
        "loadavg_start": open("/proc/loadavg").read().split()[0],
    }


def measure_rtts(topo):
    out = {}
    for name, ns, addr in (("rtr-srv wan1", "rtr", T.SRV_WAN1),
                           ("rtr-srv wan2", "rtr", T.SRV_WAN2),
                           ("srv-dst", "srv", T.DST4),
                           ("lan-dst (direct path)", "lan", T.DST4)):
        delay.rtt(topo, ns, addr, count=3)   # neighbour caches
        r = delay.rtt(topo, ns, addr, count=50, interval=0.01)
        if r["received"] != r["sent"]:
            raise BenchError("RTT probe %s: %d of %d lost" % (
                name, r["lost"], r["sent"]))
        out[name] = {k: round(r["rtt_ms"][k], 3)
                     for k in ("median", "mean", "min", "max", "p90")}
        log("  RTT %s: median %.2f ms" % (name, out[name]["median"]))
    for link in ("rtr-srv wan1", "rtr-srv wan2"):
        med = out[link]["median"]
        if not 2 * WAN_DELAY_MS <= med <= 2 * WAN_DELAY_MS + 5:
            raise BenchError("RTT %s is %.2f ms, expected ~%.0f ms" % (
                link, med, 2 * WAN_DELAY_MS))
    return out


def collect(keys, requests, warmup, pause_ms):
    data = {"params": {"requests": requests, "warmup": warmup,
                       "pause_ms": pause_ms, "wan_delay_ms": WAN_DELAY_MS,
                       "inet_delay_ms": INET_DELAY_MS, "object": OBJECT,
                       "url": URL},
            "machine": machine_info(), "rows": []}
    topo = T.Topology()
    try:
        topo.setup()
        delay.binary_path()
        delay.delay_wan(topo, ms=WAN_DELAY_MS)
        delay.delay_veth(topo, ("srv", T.SRV_INET_IF), ("dst", T.DST_IF),
                         INET_DELAY_MS)
        data["rtt"] = measure_rtts(topo)
        b = Bench(topo, requests, warmup, pause_ms)
        for key, label, _goal, up in ROWS:
            if key not in keys:
                continue
            log("%s: %s (%d warm-up + %d requests, %d ms apart)" % (
                key, label, warmup, requests, pause_ms))
            fn = (b.row_mpredir if up is not None
                  else getattr(b, "row_" + key))
            data["rows"].append(fn(key, label, up))
        # the delays were in force all along (emulators alive, packets seen)
        for ns in ("rtr", "srv", "dst"):
            for q in delay.stats(topo, ns)["queues"]:
                if q["packets"] == 0 and ns != "dst":
                    raise BenchError("no packet went through the delay "
                                     "queue %s in %s" % (q["ifname"], ns))
        delay.undelay(topo)
        data["machine"]["loadavg_end"] = \
            open("/proc/loadavg").read().split()[0]
    finally:
        # a second Ctrl-C must not cut the cleanup short
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            topo.teardown()
        finally:
            signal.signal(signal.SIGINT, old)
    return data


# ================================================================ rendering
def summarize(data):
    """Per row: median, p90, ratios to direct, goal and verdict."""
    rows = {r["key"]: r for r in data["rows"]}
    d = rows.get("direct")
    out = []
    for key, label, goal, _up in ROWS:
        r = rows.get(key)
        if r is None:
            continue
        med = statistics.median(r["ttfb_ms"])
        p90 = quantile(r["ttfb_ms"], 0.9)
        s = {"key": key, "label": label, "median": med, "p90": p90,
             "connect": statistics.median(r["connect_ms"]),
             "n": len(r["ttfb_ms"]), "goal": goal, "ratio": None,
             "p90_ratio": None, "met": None}
        if d is not None:
            s["ratio"] = med / statistics.median(d["ttfb_ms"])
            s["p90_ratio"] = p90 / quantile(d["ttfb_ms"], 0.9)
            if goal is not None:
                s["met"] = s["ratio"] <= goal
        out.append(s)
    return out


def _fmt_goal(s):
    if s["key"] == "redsocks":
        if s["ratio"] is None:
            return "≈ 2 × (expected)", ""
        lo, hi = REDSOCKS_BAND
        return ("≈ 2 × (expected)",
                "yes" if lo <= s["ratio"] <= hi else "no")
    if s["goal"] is None:
        return "", ""
    return ("≤ %.2f ×" % s["goal"],
            "" if s["met"] is None else ("**yes**" if s["met"] else "**NO**"))


def render_section(data, plot_name):
    m = data["machine"]
    p = data["params"]
    rtt = data["rtt"]
    summ = summarize(data)
    by = {s["key"]: s for s in summ}
    rows = {r["key"]: r for r in data["rows"]}
    base = rtt["rtr-srv wan1"]["median"]
    L = []
    a = L.append
    a("## Connection setup: time to first byte")
    a("")
    a("Generated by `make bench-setup` (root, about 4 minutes; "
      "`test/bench/bench_setup.py`, which rewrites only this section, "
      "between its markers, and `doc/%s`)." % plot_name)
    a("")
    a("### Set-up")
    a("")
    a("The end-to-end test topology (`test/lib/topo.py`) without rate "
      "shaping, with delay emulated by `test/lib/delay.py` (NFQUEUE; this "
      "kernel has no netem): %g ms one way on each WAN link, in both "
      "directions (RTT rtr ↔ srv %g ms added), and %g ms one way on "
      "srv ↔ dst (%g ms added)." % (
          p["wan_delay_ms"], 2 * p["wan_delay_ms"], p["inet_delay_ms"],
          2 * p["inet_delay_ms"]))
    a("")
    a("    lan ── rtr ══ wan1 (25 ms each way) ══ srv ── (0.25 ms) ── dst")
    a("    curl   nft      wan2 (25 ms each way)  dante              httpd.py")
    a("           mpredir / redsocks")
    a("")
    a("RTT measured before the runs (ICMP echo, user space to user space, "
      "`delay.rtt`, 50 probes, median):")
    a("")
    a("| path | median | min | p90 |")
    a("|---|---|---|---|")
    for k, v in rtt.items():
        a("| %s | %.2f ms | %.2f ms | %.2f ms |" % (k, v["median"], v["min"],
                                                    v["p90"]))
    a("")
    a("The client in lan runs `curl -o /dev/null -w '%%{time_connect} "
      "%%{time_starttransfer}' %s` (a %d-byte object) %d times in a row, "
      "each a new curl process and so a new TCP connection, with a %d ms "
      "pause between requests (plus a few ms to start the next curl in "
      "the namespace): the pause lets the warm pool refill, and is the "
      "same for every row. Time to first byte is curl's "
      "`time_starttransfer`: from the start of the request to the first "
      "byte of the response. (Not the total time: httpd.py writes the "
      "headers and the body separately, without `TCP_NODELAY`, so Nagle "
      "holds the body until the headers are acknowledged — on the direct "
      "path one more WAN round trip, `time_total` ≈ "
      "`time_starttransfer` + 50 ms.) Every proxied row goes through dante 1.4 "
      "(Debian %s, no authentication) in srv and through the reference "
      "nftables ruleset in rtr (`nft-rules/mpredir.nft`), which redirects "
      "the LAN flow to the local proxy." % (
          p["url"], p["object"], p["requests"], p["pause_ms"], m["dante"]))
    a("")
    a("* **direct**: no proxy, no redirect: rtr routes the flow over wan1 "
      "(masqueraded), plain TCP to httpd in dst.")
    a("* **redsocks + dante**: Debian's redsocks (%s) in rtr, run under "
      "`mptcpize run` so that its upstream connections are MPTCP like "
      "mpredir's, `type = socks5`, to dante under `mptcpize`. redsocks "
      "goes step by step: TCP connect, then the method greeting, its "
      "reply, the CONNECT, its reply, and only then the client's "
      "request." % m["redsocks"])
    a("* **mpredir step by step**: `\"pipeline\": \"off\"`, "
      "`\"pool\": {\"size\": 0}`: the same exchange as redsocks.")
    a("* **mpredir pipelined**: `\"pipeline\": \"auto\"`, "
      "`\"pool\": {\"size\": 0}`: greeting, CONNECT and the client's "
      "request in one write once the connection is up.")
    a("* **mpredir pipelined + pool**: `\"pipeline\": \"auto\"`, "
      "`\"pool\": {\"size\": 2}` — **the default configuration** "
      "(`fast_open` `\"auto\"`, which means off over MPTCP): a flow takes "
      "a warm connection that has already done the handshake and the "
      "method negotiation, and sends only CONNECT + request.")
    a("* **mpredir Fast Open over TCP**: `\"mptcp\": false`, "
      "`\"fast_open\": \"on\"`, `\"pipeline\": \"auto\"`, "
      "`\"pool\": {\"size\": 0}`, to a second dante that is *not* under "
      "`mptcpize` (an MPTCP listener gives no Fast Open cookie to TCP "
      "clients on this kernel), srv with `net.ipv4.tcp_fastopen=0x403` "
      "(Fast Open for servers that do not set the socket option): the SYN "
      "carries greeting, CONNECT and request. One TCP path (wan1), no "
      "multipath.")
    a("")
    a("Each mpredir row is a new daemon; %d requests before the measured "
      "ones are discarded (warm-up: `auto` learns that dante takes a "
      "pipelined write, the pool fills, the Fast Open cookie is fetched). "
      "redsocks and direct get the same warm-up." % p["warmup"])
    a("")
    a("### Machine and run")
    a("")
    a("| | |")
    a("|---|---|")
    a("| date | %s |" % m["date"])
    a("| kernel (`uname -r`) | %s |" % m["kernel"])
    a("| CPU | %s |" % m["cpu"])
    a("| nproc | %s |" % m["nproc"])
    a("| mpredir | %s |" % m.get("mpredir", "?"))
    a("| curl | %s |" % m["curl"])
    a("| dante-server / redsocks (Debian) | %s / %s |" % (m["dante"],
                                                        m["redsocks"]))
    a("| requests per row (after %d warm-up) | %d, %d ms apart |" % (
        p["warmup"], p["requests"], p["pause_ms"]))
    a("| load average (1 min), start / end | %s / %s |" % (
        m["loadavg_start"], m.get("loadavg_end", "?")))
    a("")
    a("### Results")
    a("")
    a("Time to first response byte (curl `time_starttransfer`), ms; ratios "
      "to the direct row (median to median, p90 to p90). Base RTT "
      "rtr ↔ srv: **%.1f ms**." % base)
    a("")
    a("| setup | median | p90 | median / direct | p90 / direct | goal "
      "| met | in RTTs (median / base RTT) | curl connect (median) |")
    a("|---|---|---|---|---|---|---|---|---|")
    for s in summ:
        goal, met = _fmt_goal(s)
        a("| %s | **%.1f** | %.1f | %s | %s | %s | %s | %.2f | %.1f |" % (
            s["label"], s["median"], s["p90"],
            "**%.2f**" % s["ratio"] if s["ratio"] is not None else "–",
            "%.2f" % s["p90_ratio"] if s["p90_ratio"] is not None else "–",
            goal, met, s["median"] / base, s["connect"]))
    a("")
    a("Goals from the issue: pipelined ≤ 1.05 × direct, pipelined + pool "
      "≤ 0.6 × direct (medians); redsocks is expected near 2 × "
      "(\"met\" there: within %.1f-%.1f ×)." % REDSOCKS_BAND)
    a("")
    a("Checks of what each row really did, over its measured requests:")
    a("")
    for s in summ:
        r = rows[s["key"]]
        bits = []
        if s["key"] != "direct":
            bits.append("srv accepted %d MPTCP connections"
                        % r["mptcp_accepted"])
        if "flows_mptcp" in r:
            bits.append("mpredir logged %d flows over MPTCP, %d over TCP, "
                        "%d not ended normally" % (
                            r["flows_mptcp"], r["flows_tcp"],
                            r.get("flows_not_done", 0)))
            if r["config"].get("pipeline") == "auto":
                bits.append("pipelining learned: %s" % (
                    "yes" if r["learned_pipelining"] else "NO"))
            if r["config"]["pool"]["size"]:
                bits.append("%d of %d flows took a warm connection (%d "
                            "retried fresh)" % (r["warm_hits"], s["n"],
                                                r["retried_fresh"]))
            if r["config"].get("fast_open") == "on":
                fo, fs = r["fastopen_rtr"], r["fastopen_srv"]
                bits.append("rtr `TcpExtTCPFastOpenActive` +%d, "
                            "`TcpExtTCPFastOpenActiveFail` +%d; srv "
                            "`TcpExtTCPFastOpenPassive` +%d" % (
                                fo["TcpExtTCPFastOpenActive"],
                                fo["TcpExtTCPFastOpenActiveFail"],
                                fs["TcpExtTCPFastOpenPassive"]))
        if bits:
            a("* %s: %s." % (s["label"], "; ".join(bits)))
    a("")
    a("![Time to first byte per setup](%s)" % plot_name)
    a("")
    a("### Reading the figures")
    a("")
    a(interpretation(data, by, base))
    return "\n".join(L) + "\n"


def interpretation(data, by, base):
    """The explanation, with the measured figures."""
    def val(k, f="median"):
        return by[k][f] if k in by else float("nan")

    def ratio(k):
        return by[k]["ratio"] if k in by and by[k]["ratio"] else float("nan")

    t = []
    t.append(
        "Counting round trips over the WAN (base RTT %.1f ms; rtr ↔ lan and "
        "srv ↔ dst add well under 1 ms):" % base)
    t.append("")
    t.append(
        "* **direct** (%.1f ms, %.2f RTT): the TCP handshake with the "
        "destination (1 RTT; curl's `time_connect` is already %.1f ms), then "
        "the request and its response (1 RTT): **2 RTT**." % (
            val("direct"), val("direct") / base, val("direct", "connect")))
    t.append(
        "* **redsocks** and **mpredir step by step** (%.1f and %.1f ms): "
        "the LAN handshake ends at once in rtr; then the TCP handshake with "
        "the server (1 RTT), the method greeting and its reply (1 RTT), the "
        "CONNECT and its reply, which waits for dante's own connect to dst "
        "(1 RTT), and the request and its response (1 RTT): **4 RTT**, "
        "about twice direct (%.2f × and %.2f ×)." % (
            val("redsocks"), val("step"), ratio("redsocks"), ratio("step")))
    t.append(
        "* **pipelined** (%.1f ms, %.2f × direct): the TCP handshake with "
        "the server (1 RTT), then greeting, CONNECT and request in one "
        "write; dante answers the greeting, connects to dst, answers the "
        "CONNECT and forwards the request, and the response follows, all "
        "within the next RTT: **2 RTT**, as direct. Both also cross "
        "srv ↔ dst twice (direct: its handshake and its request; "
        "pipelined: dante's connect and the request), so the %.1f ms "
        "between them is the work of mpredir and dante (which hands each "
        "client from process to process)." % (
            val("pipelined"), ratio("pipelined"),
            val("pipelined") - val("direct")))
    t.append(
        "* **pipelined + pool** (%.1f ms, %.2f × direct): the handshake "
        "and the method negotiation were done before the client "
        "connected; the flow sends CONNECT + request on a warm connection "
        "and the response comes back one RTT later: **1 RTT**, half of "
        "direct." % (val("pool"), ratio("pool")))
    if "fastopen" in by:
        t.append(
            "* **Fast Open over TCP** (%.1f ms, %.2f × direct): the SYN "
            "carries greeting, CONNECT and request (with the cookie from "
            "an earlier connection), so the response arrives one RTT after "
            "the SYN: **1 RTT**, like the pool, without a connection kept "
            "open in advance — but over one plain TCP path, without "
            "multipath. Server side, `net.ipv4.tcp_fastopen` must have "
            "0x400 *before* the server starts: the kernel sets up a "
            "listener's Fast Open queue in `listen()`, so a dante started "
            "before the sysctl counts the cookie requests "
            "(`TcpExtTCPFastOpenCookieReqd`) but never answers one, and "
            "every flow takes 2 RTT like the pipelined row (seen while "
            "writing this benchmark)." % (val("fastopen"),
                                          ratio("fastopen")))
    t.append("")
    spread = max(s["p90"] - s["median"] for s in by.values())
    worst = max(max(r["ttfb_ms"]) - statistics.median(r["ttfb_ms"])
                for r in data["rows"])
    t.append(
        "The emulated delay is exact to a fraction of a millisecond, so "
        "the rows hardly spread: p90 is at most %.1f ms above the median, "
        "and the slowest request of any row %.1f ms above its median "
        "(scheduling of curl, "
        "dante and httpd.py on this %s-CPU machine). The ratios are those "
        "of round-trip counts; with a longer RTT they stay the same, and "
        "with a shorter one the fixed work above weighs more." % (
            spread, worst, data["machine"]["nproc"]))
    return "\n".join(t)


def render_plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = summarize(data)
    rows = {r["key"]: r for r in data["rows"]}
    base = data["rtt"]["rtr-srv wan1"]["median"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5.6),
                                   gridspec_kw={"width_ratios": [3, 2]})
    hi = max(quantile(rows[s["key"]]["ttfb_ms"], 0.99) for s in summ)
    styles = {"direct": "--", "fastopen": ":"}
    for s in summ:
        xs = sorted(rows[s["key"]]["ttfb_ms"])
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax1.step(xs, ys, where="post", label=s["label"],
                 linestyle=styles.get(s["key"], "-"),
                 linewidth=2.2 if s["key"] in styles else 1.6)
    for k in range(1, int(hi * 1.08 / base) + 1):
        ax1.axvline(k * base, color="grey", linewidth=0.6, alpha=0.5)
        ax1.text(k * base, 1.01, "%d RTT" % k, ha="center", va="bottom",
                 fontsize=8, color="grey")
    ax1.set_xlim(0, hi * 1.08)
    ax1.set_ylim(0, 1)
    ax1.set_xlabel("time to first byte (curl time_starttransfer), ms")
    ax1.set_ylabel("fraction of requests")
    ax1.set_title("CDF, %d fresh connections per setup" % summ[0]["n"],
                  pad=16)
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2,
               fontsize=8)
    ax1.grid(True, alpha=0.3)

    labels = [s["label"].replace(" (", "\n(") for s in summ]
    y = list(range(len(summ)))[::-1]
    meds = [s["ratio"] or 0 for s in summ]
    p90s = [s["p90_ratio"] or 0 for s in summ]
    ax2.barh(y, meds, color="tab:blue", alpha=0.75, label="median / direct")
    ax2.scatter(p90s, y, color="black", marker="|", s=200, zorder=3,
                label="p90 / direct")
    for yi, s in zip(y, summ):
        ax2.text((s["ratio"] or 0) + 0.03, yi, "%.2f" % (s["ratio"] or 0),
                 va="center", fontsize=8)
        if s["goal"]:
            ax2.plot([s["goal"]] * 2, [yi - 0.4, yi + 0.4], color="red",
                     linewidth=2)
    ax2.plot([], [], color="red", linewidth=2, label="goal")
    ax2.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax2.set_yticks(y)
    ax2.set_yticklabels(labels, fontsize=8)
    ax2.set_xlabel("ratio to direct")
    ax2.set_title("ratio to direct", pad=16)
    ax2.legend(loc="lower right", fontsize=8)
    ax2.grid(True, axis="x", alpha=0.3)
    fig.suptitle("Time to first byte, RTT rtr-srv %.1f ms (%s, %s)" % (
        base, data["machine"]["kernel"], data["machine"]["date"]),
        fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_doc(section, path=DOC):
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    block = BEGIN + "\n" + section + END
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        i = text.index(BEGIN)
        j = text.index(END) + len(END)
        text = text[:i] + block + text[j:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def print_table(data):
    for s in summarize(data):
        goal, met = _fmt_goal(s)
        log("%-45s median %6.1f  p90 %6.1f  ratio %s  p90 ratio %s  %s %s"
            % (s["label"], s["median"], s["p90"],
               "%.2f" % s["ratio"] if s["ratio"] else "-",
               "%.2f" % s["p90_ratio"] if s["p90_ratio"] else "-", goal, met))


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--requests", type=int, default=REQUESTS)
    ap.add_argument("--warmup", type=int, default=WARMUP)
    ap.add_argument("--pause-ms", type=int, default=PAUSE_MS)
    ap.add_argument("--only", help="rows, comma-separated: " +
                    ",".join(ROW_KEYS) + " (implies --no-doc)")
    ap.add_argument("--json", help="save the raw data to this file")
    ap.add_argument("--from-json", help="render this data, do not measure")
    ap.add_argument("--no-doc", action="store_true",
                    help="print only; do not touch doc/")
    a = ap.parse_args(argv)

    if a.from_json:
        with open(a.from_json) as f:
            data = json.load(f)
    else:
        if os.geteuid() != 0:
            sys.exit("bench_setup.py: needs root (network namespaces)")
        keys = ROW_KEYS
        if a.only:
            keys = [k.strip() for k in a.only.split(",")]
            bad = [k for k in keys if k not in ROW_KEYS]
            if bad:
                sys.exit("unknown rows: %s (known: %s)" % (
                    ", ".join(bad), ", ".join(ROW_KEYS)))
            a.no_doc = True
        # Ctrl-C (and SIGTERM) stop the run and clean up, even when started
        # in the background, where SIGINT comes in ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
        T.install_sigterm_cleanup()
        try:
            data = collect(keys, a.requests, a.warmup, a.pause_ms)
        except KeyboardInterrupt:
            sys.exit("bench_setup.py: interrupted (cleaned up)")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(data, f, indent=1)
    print_table(data)
    if not a.no_doc:
        if not any(r["key"] == "direct" for r in data["rows"]):
            sys.exit("no direct row: not writing the document")
        import importlib.util
        if importlib.util.find_spec("matplotlib") is None:
            sys.exit("bench_setup.py: matplotlib missing: run %s with "
                     "/usr/bin/python3 and python3-matplotlib (make deps)"
                     % sys.argv[0])
        render_plot(data, PLOT)
        write_doc(render_section(data, os.path.basename(PLOT)))
        log("wrote %s and %s" % (os.path.relpath(DOC, T.REPO_ROOT),
                                 os.path.relpath(PLOT, T.REPO_ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
