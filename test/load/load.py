#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
r"""Load: many concurrent flows held through the daemon while new ones come
and go, every byte checked; then the daemon's descriptors and memory must
come back (root; `make test-load`, or test/e2e/test_load.py).

  lan ──── rtr (nft redirect → mpredir) ══ wan1 / wan2 ══ srv ───────── dst
  loadclient.py × K                           danted (or     loadd.py × D
  (held flows: echo; churn:                   TINY_SOCKS × S, (echo :7,
   request/response)                          MPTCP)          req/resp :8)
(the full drawing is in test/lib/topo.py)

  load.py [--hold N] [--rate R] [--duration S] [--clients K] [--cap C]
          [--again S2] [--socks-server dante|tiny] [--socks S]
          [--servers D] [--json FILE]

1. warm-up: 200 flows opened, checked and closed; the daemon's descriptors
   must come back to what they were at start (exactly), and its RSS then
   is the baseline;
2. K clients open N held flows between them (echo, 64 bytes checked);
3. for S seconds: R new flows a second (request/response: 512 bytes up,
   2,049 down, all checked; at most C open at a time over all clients)
   while each held flow sends and checks 256 bytes every 10 s;
4. each held flow checks 1,024 bytes, half-closes and must get the
   server's EOF;
5. the daemon's descriptors are read once back to the baseline (30 s at
   most), its RSS and counters 2 s later;
6. (S2 > 0) 2-5 again for S2 seconds: the memory kept after the first
   cycle must be reused.

Why not 10,000 held flows: each flow takes 2 descriptors in the daemon
(the LAN socket and the upstream one), and the hard RLIMIT_NOFILE here is
20,000, which cannot be raised without CAP_SYS_RESOURCE: 10,000 flows
would need 20,000 for the flows alone, plus the daemon's own (listeners,
control socket, netlink, eventfds, the reserve descriptor, the warm pool:
17). So N + C (held + churn open at once) stays below (20,000 - 17) / 2;
the default 9,500 + 350 leaves room for flows the daemon is still closing
when the client has already opened the next (peaks seen: 19,709-19,941
descriptors). The clients, the SOCKS servers (2 descriptors a flow) and
the far-end servers (1) are spread over several processes for the same
reason.

The figures go to stdout, one JSON object, and with --json to a file.
"""

import argparse
import json
import os
import select
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))

import mpredir_daemon  # noqa: E402
import relay_perf  # noqa: E402  (TINY_SOCKS, cpu_of, rss_kib, daemon_fds)
import socks_servers  # noqa: E402
import topo as T  # noqa: E402

LOADD = os.path.join(HERE, "loadd.py")
LOADCLIENT = os.path.join(HERE, "loadclient.py")
SOCKS_PORT = 1091
ECHO_PORT, RR_PORT = 7, 8
FD_LIMIT = 20000

DEFAULTS = dict(hold=9500, rate=1000, duration=60, clients=4, cap=350,
                socks=3, servers=2, check_every=10, again=15)


def cpu_all(pid):
    """utime + stime + cutime + cstime (seconds) of a process; 0 if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / relay_perf.CLK_TCK


def rss_parts(pid):
    """The process's RSS by kind of mapping, KiB: "heap" (brk: the main
    thread's malloc arena; worker 0 runs there), "anon" (other anonymous
    mappings: the other workers' malloc arenas, thread stacks, large
    allocations), "file" (the binary and libraries)."""
    parts = {"heap": 0, "anon": 0, "file": 0}
    kind = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            head = line.split()
            if not head[0].endswith(":"):       # a mapping's first line
                name = head[5] if len(head) > 5 else ""
                kind = ("heap" if name == "[heap]" else
                        "file" if name.startswith("/") else "anon")
            elif head[0] == "Rss:":
                parts[kind] += int(head[1])
    return parts


def time_wait(topology):
    """Sockets in TIME_WAIT per namespace (they hold a local port: a side
    that closes first holds one for 60 s per connection)."""
    out = {}
    for ns, what, flt in (("lan", "lan", []),
                          ("rtr", "rtr_upstream", ["dst", T.SERVICE4]),
                          ("rtr", "rtr_lan", ["src", T.RTR_LAN4]),
                          ("srv", "srv", [])):
        r = topology.run(ns, ["ss", "-Htan", "state", "time-wait"] + flt,
                         check=False)
        out[what] = len(r.stdout.splitlines())
    return out


def daemon_config(max_flows, level="info"):
    return mpredir_daemon.make_config(
        [{"address": T.SERVICE4, "port": SOCKS_PORT}], level=level,
        relay={"max_flows": max_flows})


class Servers:
    """The SOCKS servers in srv and the far-end servers in dst."""

    def __init__(self, topology, socks=3, servers=2, kind="tiny"):
        self.topo = topology
        self.procs = []
        self.dante = None
        self.kind = kind
        try:
            if kind == "dante":
                self.dante = socks_servers.DanteServer(
                    topology, "load-dante", SOCKS_PORT).start()
                self.procs.append(self.dante.daemon)
            for i in range(socks if kind == "tiny" else 0):
                p = topology.spawn("srv", ["mptcpize", "run", T.PYTHON, "-c",
                                           relay_perf.TINY_SOCKS, T.SERVICE4,
                                           str(SOCKS_PORT)],
                                   "load-socks-%d" % i)
                self.procs.append(p)
            for i in range(servers):
                p = topology.spawn("dst", [T.PYTHON, LOADD, str(ECHO_PORT),
                                           str(RR_PORT)], "load-dst-%d" % i)
                self.procs.append(p)
            topology.wait_for_port("srv", T.SERVICE4, SOCKS_PORT,
                                   proc=self.procs[0])
            topology.wait_for_port("dst", None, RR_PORT, proc=self.procs[-1])
        except Exception:
            self.stop()
            raise

    def fds(self):
        return {p.name: relay_perf.daemon_fds(p.pid) for p in self.procs}

    def cpu(self):
        """CPU seconds of the SOCKS servers; dante's children (live, and
        those it has reaped) included."""
        if self.dante:
            pid = self.dante.daemon.pid
            kids = subprocess.run(["pgrep", "-P", str(pid)],
                                  capture_output=True, text=True).stdout
            return sum(cpu_all(int(p)) for p in [pid] + kids.split())
        return sum(relay_perf.cpu_of(p.pid)[0] for p in self.procs
                   if p.name.startswith("load-socks"))

    def stop(self):
        if self.dante:
            self.dante.stop()
        for p in self.procs:
            p.stop()


class Clients:
    """K loadclient.py processes in lan; JSON lines back."""

    def __init__(self, topology, n, hold, rate, cap, duration, check_every,
                 window=32):
        self.procs = []
        for i in range(n):
            share = hold // n + (1 if i < hold % n else 0)
            argv = [T.PYTHON, LOADCLIENT, "--dst", T.DST4,
                    "--echo-port", str(ECHO_PORT), "--rr-port", str(RR_PORT),
                    "--id", str(i), "--hold", str(share),
                    "--window", str(window), "--rate", str(rate / n),
                    "--cap", str(max(1, cap // n)),
                    "--duration", str(duration),
                    "--check-every", str(check_every)]
            self.procs.append(topology.popen(
                "lan", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))

    def expect(self, event, timeout):
        """One JSON line from every client, with event `event`."""
        out = [None] * len(self.procs)
        deadline = time.monotonic() + timeout
        while any(o is None for o in out):
            left = deadline - time.monotonic()
            waiting = {p.stdout: i for i, p in enumerate(self.procs)
                       if out[i] is None}
            ready, _, _ = select.select(list(waiting), [], [], max(0, left))
            if not ready:
                raise TimeoutError("load clients: no %r after %d s" % (
                    event, timeout))
            for f in ready:
                i = waiting[f]
                line = f.readline()
                if not line:
                    p = self.procs[i]
                    p.wait(5)
                    raise RuntimeError("load client %d exited (%s): %s" % (
                        i, p.returncode, p.stderr.read()[-3000:]))
                msg = json.loads(line)
                if msg.get("event") != event:
                    raise RuntimeError("load client %d: %r" % (i, msg))
                out[i] = msg
        return out

    def say(self, word):
        for p in self.procs:
            p.stdin.write(word + "\n")
            p.stdin.flush()

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


class Sampler(threading.Thread):
    """The daemon's descriptors and RSS, every 0.5 s: the highest seen."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_fds = self.peak_rss = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                self.peak_fds = max(self.peak_fds,
                                    relay_perf.daemon_fds(self.pid))
                self.peak_rss = max(self.peak_rss,
                                    relay_perf.rss_kib(self.pid))
            except (OSError, RuntimeError):
                return
            self._halt.wait(0.5)

    def stop(self):
        self._halt.set()
        self.join()


def add(rows, key):
    return sum(r[key] for r in rows)


def merge_errors(rows):
    out = {}
    for r in rows:
        for k, v in r["errors"].items():
            out[k] = out.get(k, 0) + v
    return out


def warm_up(topology, n=200):
    """n flows opened, checked and closed, a few churn flows."""
    warm = Clients(topology, 1, n, 50, 20, 2, 60)
    try:
        warm.expect("ready", 60)
        warm.say("go")
        warm.expect("done", 60)
        warm.say("close")
        w = warm.expect("closed", 60)[0]
    finally:
        warm.stop()
    if w["closed"] != n or w["errors"]:
        raise RuntimeError("warm-up failed: %r" % w)


def cycle(topology, m, servers, hold, rate, duration, clients, cap,
          check_every, log):
    """Open the held flows, hold them `duration` s with churn, close them:
    the figures of the cycle."""
    pid = m.pid
    rep = {}
    sampler = Sampler(pid)
    sampler.start()
    cl = Clients(topology, clients, hold, rate, cap, duration, check_every)
    try:
        t0 = time.monotonic()
        ready = cl.expect("ready", 300)
        rep["open_s"] = round(time.monotonic() - t0, 1)
        rep["held"] = add(ready, "held")
        rep["held_failed"] = add(ready, "failed")
        topology.wait_until(lambda: m.status()["flows"]["now"] >= rep["held"],
                            timeout=30, what="held flows relaying")
        rep["daemon_fds_held"] = relay_perf.daemon_fds(pid)
        rep["daemon_rss_held_kib"] = relay_perf.rss_kib(pid)
        rep["daemon_rss_held_parts_kib"] = rss_parts(pid)
        log("held: %d flows (%d failed) in %.1f s; daemon %d descriptors, "
            "RSS %d KiB" % (rep["held"], rep["held_failed"], rep["open_s"],
                            rep["daemon_fds_held"],
                            rep["daemon_rss_held_kib"]))
        c0, _ = relay_perf.cpu_of(pid)
        s0 = servers.cpu()
        t0 = time.monotonic()
        cl.say("go")
        done = cl.expect("done", duration + 120)
        wall = time.monotonic() - t0
        c1, _ = relay_perf.cpu_of(pid)
        rep["hold_s"] = round(wall, 1)
        rep["daemon_cpu_s"] = round(c1 - c0, 2)
        rep["daemon_cpu_pct"] = round(100 * (c1 - c0) / wall, 1)
        rep["socks_cpu_s"] = round(servers.cpu() - s0, 1)
        rep["clients_cpu_s"] = round(add(done, "cpu_s") - add(ready, "cpu_s"),
                                     1)
        rep["held_after_hold"] = add(done, "held")
        rep["churn_started"] = add(done, "churn_started")
        rep["churn_ok"] = add(done, "churn_ok")
        rep["churn_rate"] = round(rep["churn_ok"] / duration, 1)
        rep["churn_waited"] = add(done, "churn_waited")
        rep["churn_skipped"] = add(done, "churn_skipped")
        rep["churn_p50_ms"] = max(d.get("churn_p50_ms", 0) for d in done)
        rep["churn_p99_ms"] = max(d.get("churn_p99_ms", 0) for d in done)
        log("hold: %.1f s, %d churn flows ok of %d started (%.0f/s; p50 %.0f"
            " ms, p99 %.0f ms), daemon CPU %.1f s (%.0f %% of a core), "
            "clients CPU %.1f s, SOCKS CPU %.1f s" % (
                wall, rep["churn_ok"], rep["churn_started"],
                rep["churn_rate"], rep["churn_p50_ms"], rep["churn_p99_ms"],
                rep["daemon_cpu_s"], rep["daemon_cpu_pct"],
                rep["clients_cpu_s"], rep["socks_cpu_s"]))
        cl.say("close")
        closed = cl.expect("closed", 300)
    finally:
        cl.stop()
        sampler.stop()
    rep["held_closed_clean"] = add(closed, "closed")
    rep["checks"] = add(closed, "checks")
    rep["checks_ok"] = add(closed, "checks_ok")
    rep["bytes_up_verified"] = add(closed, "bytes_up")
    rep["bytes_down_verified"] = add(closed, "bytes_down")
    rep["errors"] = merge_errors(closed)
    rep["daemon_fds_peak"] = sampler.peak_fds
    rep["daemon_rss_peak_kib"] = sampler.peak_rss
    return rep


def settle(topology, m, fds_start, status0, rep, log):
    """After a cycle: wait for the descriptors to come back, then read the
    daemon's descriptors, RSS and counters into rep."""
    pid = m.pid
    try:
        topology.wait_until(
            lambda: relay_perf.daemon_fds(pid) == fds_start,
            timeout=30, what="daemon descriptors back")
    except TimeoutError:
        pass
    time.sleep(2)
    st = m.status()
    rep["daemon_fds_after"] = relay_perf.daemon_fds(pid)
    rep["daemon_rss_after_kib"] = relay_perf.rss_kib(pid)
    # (sampled every 0.5 s until the clients were done: after may be more)
    rep["daemon_rss_peak_kib"] = max(rep["daemon_rss_peak_kib"],
                                     rep["daemon_rss_after_kib"])
    rep["daemon_rss_after_parts_kib"] = rss_parts(pid)
    rep["flows_now_after"] = st["flows"]["now"]
    rep["bytes_buffered_after"] = st["bytes"]["buffered"]

    def delta(key):
        d = {k: v - status0["flows"][key].get(k, 0)
             for k, v in st["flows"][key].items()}
        return {k: v for k, v in d.items() if v}
    rep["time_wait"] = time_wait(topology)
    rep["flows_ended"] = delta("ended")
    rep["refused"] = delta("refused")
    log("after: daemon %d descriptors (peak %d), RSS %d KiB (peak %d); "
        "flows now %d; ended %r; refused %r; client errors %r" % (
            rep["daemon_fds_after"], rep["daemon_fds_peak"],
            rep["daemon_rss_after_kib"], rep["daemon_rss_peak_kib"],
            rep["flows_now_after"], rep["flows_ended"], rep["refused"],
            rep["errors"]))
    return st


PORT_RANGE = "10000 65535"


class PortRange:
    """A wider ephemeral port range in rtr and srv for the run, the old
    one back after. Each MPTCP flow takes two local ports in rtr (the
    first subflow's, and the second's: the join binds to its WAN address,
    which takes a port of its own), and a flow the daemon closes first
    (here, every held flow) keeps both in TIME_WAIT for 60 s: with the
    default 32768-60999, the second cycle's connects got EADDRNOTAVAIL
    after about 4,600 flows. dante binds its external address before it
    connects: the same in srv."""

    def __init__(self, topology, namespaces=("rtr", "srv")):
        self.topo, self.namespaces, self.old = topology, namespaces, {}

    def __enter__(self):
        for ns in self.namespaces:
            self.old[ns] = self.topo.run(
                ns, ["sysctl", "-n", "net.ipv4.ip_local_port_range"]
            ).stdout.split()
            self.topo.sysctl(ns, **{"net.ipv4.ip_local_port_range":
                                    PORT_RANGE})
        return self

    def __exit__(self, *exc):
        for ns, (lo, hi) in self.old.items():
            self.topo.sysctl(ns, **{"net.ipv4.ip_local_port_range":
                                    "%s %s" % (lo, hi)})


def run(topology, m, servers, hold, rate, duration, clients, cap,
        check_every, again=15, log=print):
    """The load run against a started daemon `m` (mpredir_daemon.Mpredir)
    whose SOCKS server is `servers` (Servers): warm-up and baseline, one
    cycle of `duration` s, then (again > 0) a second, shorter one with
    the same flows, to see the memory kept after the first reused.
    Returns the figures (dict)."""
    pid = m.pid
    fds_start = relay_perf.daemon_fds(pid)
    rss_start = relay_perf.rss_kib(pid)
    rep = {"hold": hold, "rate": rate, "duration_s": duration,
           "clients": clients, "cap": cap, "socks_server": servers.kind,
           "daemon_max_flows": m.config["relay"]["max_flows"],
           "daemon_fds_start": fds_start, "daemon_rss_start_kib": rss_start,
           "port_range": PORT_RANGE}
    with PortRange(topology):
        return _run(topology, m, servers, hold, rate, duration, clients, cap,
                    check_every, again, log, rep)


def _run(topology, m, servers, hold, rate, duration, clients, cap,
         check_every, again, log, rep):
    pid = m.pid
    fds_start = rep["daemon_fds_start"]
    rss_start = rep["daemon_rss_start_kib"]
    warm_up(topology)
    topology.wait_until(lambda: relay_perf.daemon_fds(pid) == fds_start, timeout=30,
                        what="daemon descriptors back after the warm-up")
    time.sleep(1)
    rep["daemon_rss_base_kib"] = relay_perf.rss_kib(pid)
    rep["daemon_rss_base_parts_kib"] = rss_parts(pid)
    status0 = m.status()
    log("baseline: %d descriptors, RSS %d KiB (%d KiB at start, before the "
        "warm-up)" % (fds_start, rep["daemon_rss_base_kib"], rss_start))
    rep.update(cycle(topology, m, servers, hold, rate, duration, clients,
                     cap, check_every, log))
    status1 = settle(topology, m, fds_start, status0, rep, log)
    if again > 0:
        log("again, %d s:" % again)
        a = cycle(topology, m, servers, hold, rate, again, clients, cap,
                  check_every, log)
        settle(topology, m, fds_start, status1, a, log)
        rep["again"] = a
    return rep


def max_flows(hold, cap):
    """The daemon's max_flows for a run: room for the held and churn
    flows, and for churn flows the daemon is still closing when the client
    has opened the next; never more than the descriptor limit allows (2 a
    flow, and 100 for the daemon's own), so that a flow too many is
    refused by max_flows (counted) rather than by EMFILE."""
    return min(hold + cap + 100, (FD_LIMIT - 100) // 2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for k, v in DEFAULTS.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--level", default="info")
    ap.add_argument("--socks-server", choices=("dante", "tiny"),
                    default="dante", help="dante (under mptcpize; it forks"
                    " a process per few flows), or tiny: relay_perf.py's"
                    " TINY_SOCKS, --socks processes")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    T.install_sigterm_cleanup()
    with T.Topology(httpd=False) as topo:
        servers = Servers(topo, a.socks, a.servers, a.socks_server)
        m = mpredir_daemon.Mpredir(topo, daemon_config(
            max_flows(a.hold, a.cap), a.level), name="mpredir-load")
        m.start()
        try:
            rep = run(topo, m, servers, a.hold, a.rate, a.duration,
                      a.clients, a.cap, a.check_every, a.again,
                      log=lambda s: print(s, file=sys.stderr, flush=True))
        finally:
            m.stop()
            servers.stop()
    print(json.dumps(rep, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
