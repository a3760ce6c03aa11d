#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Performance side by side: mpredir, redsocks, shadowsocks (ss-redir +
ss-server) and direct routing (`make bench-perf`, root, about 10 minutes).

One run, one topology (test/lib/topo.py), one server side; every figure
has a row for every system (the targets of issue 7 are in TARGETS):

  mpredir    redirector/mpredir in rtr -> MPTCP -> dante (mptcpize) in srv
  redsocks   Debian's redsocks in rtr, under `mptcpize run` -> the same dante
  ss-redir   Debian's ss-redir in rtr, under `mptcpize run` -> ss-server,
             under `mptcpize run`, in srv (the OpenMPTCProuter stack)
  direct     no proxy: rtr routes the flow over wan1 (masqueraded)

Figures (FIGURES, run in this order):

  throughput  one 1 GiB download on unshaped links; CPU time of the proxy
              process (utime + stime, /proc/PID/stat) and of the whole
              machine (/proc/stat) per GB
  flows       new connections per second (wrk, `Connection: close`,
              100-byte objects from nginx); the proxy pinned to CPU 1,
              everything else to CPU 0; once with a whole core, once
              capped at CAP_PCT % of it (a cgroup CPU quota), where the
              proxy's CPU saturates
  idle        RSS and descriptors of the proxy holding 10,000 idle
              connections, or as many as RLIMIT_NOFILE allows
              (test/tools/connhold.py at both ends)
  ttfb        time to first byte of fresh connections at 50 ms RTT (the
              method of bench_setup.py, which measures mpredir's modes)
  aggregate   goodput of one download over two shaped (tbf) and delayed
              (delayemu) links, SCENARIOS: 20 + 20 Mbit/s at 10 / 10 ms
              and 10 / 40 ms one way, 20 + 5 Mbit/s at 10 / 40 ms; as a
              fraction of the nominal sum and of what each link carries
              alone with one TCP flow (iperf3)

Two halves, kept apart: measure_FIGURE(env) functions return plain data
(JSON: --json saves it, --from-json renders it again without measuring);
render_section(data) and render_plot(data) turn it into the section of
doc/benchmarks.md between <!-- bench-perf:begin --> and
<!-- bench-perf:end --> (added at the end when missing; the rest of the
file is kept) and doc/bench-perf.png; a full run also keeps its data in
doc/bench-perf.json.

Usage: bench_perf.py [--only FIG[,FIG...]] [--systems SYS[,SYS...]]
                     [--quick] [--json FILE] [--no-doc]
       bench_perf.py --from-json FILE [--no-doc]
--only, --systems and --quick imply --no-doc (a partial run prints its
tables and never replaces the document).
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)

import bench_setup  # noqa: E402  (quantile, the TTFB method)
import delay  # noqa: E402
import mpredir_daemon  # noqa: E402
import nftrules  # noqa: E402
import socks_servers  # noqa: E402
import topo as T  # noqa: E402

DOC = os.path.join(T.REPO_ROOT, "doc", "benchmarks.md")
PLOT = os.path.join(T.REPO_ROOT, "doc", "bench-perf.png")
RAW = os.path.join(T.REPO_ROOT, "doc", "bench-perf.json")
BEGIN = "<!-- bench-perf:begin -->"
END = "<!-- bench-perf:end -->"
CONNHOLD = os.path.join(T.REPO_ROOT, "test", "tools", "connhold.py")

SYSTEMS = ("mpredir", "redsocks", "ss-redir", "direct")
PROXIES = ("mpredir", "redsocks", "ss-redir")
LABELS = {"mpredir": "mpredir", "redsocks": "redsocks + dante",
          "ss-redir": "ss-redir + ss-server", "direct": "direct (no proxy)"}
FIGURES = ("throughput", "flows", "idle", "ttfb", "aggregate")

# server side
NGINX_PORT = 8080
HOLD_PORT = 9000
DANTE_PORT = 1080
SS_PORT = 8388
SS_METHOD = "chacha20-ietf-poly1305"   # ss-redir's default cipher
SS_PASSWORD = "mpredir-bench"
REDSOCKS_PORT = 12345
SSREDIR_PORT = 12346
BLOCK = 16 << 20                        # random block the files repeat

# parameters (--quick: smaller)
FULL = {
    "big_mib": 1024, "tp_runs": 3,
    "flow_seconds": 4, "flow_runs": 3, "flow_conns": 64,
    "idle_flows": 10000,
    "ttfb_requests": 100, "ttfb_warmup": 5, "ttfb_pause_ms": 20,
    "agg_mib": 32, "agg_runs": 2, "agg_direct_runs": 1,
    "agg_alone_s": 10, "agg_alone_runs": 1,
}
QUICK = {
    "big_mib": 256, "tp_runs": 1,
    "flow_seconds": 2, "flow_runs": 1, "flow_conns": 64,
    "idle_flows": 1000,
    "ttfb_requests": 20, "ttfb_warmup": 3, "ttfb_pause_ms": 20,
    "agg_mib": 8, "agg_runs": 1, "agg_direct_runs": 1,
    "agg_alone_s": 5, "agg_alone_runs": 1,
}
CAP_PCT = 10              # flows: the proxy's CPU quota, % of one core
CAP_PERIOD_US = 20000
FD_MARGIN = 300           # descriptors kept free under RLIMIT_NOFILE
TTFB_WAN_MS = 25.0        # one way, each WAN (RTT 50 ms)
TTFB_INET_MS = 0.25       # one way, srv <-> dst
# aggregate scenarios: name, {link: (Mbit/s, one-way ms)}
SCENARIOS = (
    ("2x20 equal", {"wan1": (20, 10.0), "wan2": (20, 10.0)}),
    ("2x20", {"wan1": (20, 10.0), "wan2": (20, 40.0)}),
    ("20+5", {"wan1": (20, 10.0), "wan2": (5, 40.0)}),
)
TARGETS = {
    "cpu": 2.0,       # >= 2 x redsocks' throughput per CPU-second
    "mem": 1024,      # <= 1 KiB of daemon memory per idle flow
    "agg": 0.95,      # >= 95 % of the sum of two equal links
}
CAPABLE_RX = "MPTcpExtMPCapableSYNRX"
JOIN_RX = "MPTcpExtMPJoinSynRx"
HZ = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


def log(msg):
    print(msg, flush=True)


# ============================================================ process data
def proc_cpu(pid):
    """utime + stime of a process (all its threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / HZ


def procs_cpu(pids):
    """{pid: cpu seconds} of the pids still alive."""
    out = {}
    for p in pids:
        try:
            out[p] = proc_cpu(p)
        except (OSError, IndexError):
            pass
    return out


def cpu_delta(before, after):
    """CPU seconds between two procs_cpu() samples (new pids from 0;
    pids gone meanwhile lose what they used after the first sample)."""
    return sum(v - before.get(p, 0.0) for p, v in after.items())


def machine_cpu():
    """/proc/stat: {"cpu": (busy, total, softirq), "cpu0": ..., ...} in
    seconds (busy: all but idle and iowait)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            f_ = line.split()
            v = [int(x) for x in f_[1:]]
            out[f_[0]] = ((sum(v) - v[3] - v[4]) / HZ, sum(v) / HZ, v[6] / HZ)
    return out


def machine_delta(c0, c1):
    """{cpu: {"busy_s", "busy_pct", "softirq_pct"}}"""
    out = {}
    for k in c1:
        b = c1[k][0] - c0[k][0]
        tot = c1[k][1] - c0[k][1] or 1e-9
        out[k] = {"busy_s": round(b, 3), "busy_pct": round(100 * b / tot, 1),
                  "softirq_pct": round(100 * (c1[k][2] - c0[k][2]) / tot, 1)}
    return out


def proc_mem(pid):
    """(VmRSS bytes, RssAnon bytes, open descriptors, threads)."""
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            vals[k] = v.split()
    kb = lambda k: int(vals.get(k, ["0"])[0]) * 1024  # noqa: E731
    return (kb("VmRSS"), kb("RssAnon"), len(os.listdir("/proc/%d/fd" % pid)),
            int(vals.get("Threads", ["1"])[0]))


def background_load(seconds=2.0):
    """Busy share of the CPUs while this benchmark runs nothing: the other
    work on the machine (percent of all CPUs)."""
    c0 = machine_cpu()
    time.sleep(seconds)
    return machine_delta(c0, machine_cpu())["cpu"]["busy_pct"]


def tcp_memory():
    """(pages charged to TCP machine-wide, under memory pressure?) from
    /proc/net/protocols. Under pressure the kernel shrinks every TCP
    socket's buffers, on the whole machine: rates measured then are
    wrong."""
    with open("/proc/net/protocols") as f:
        for line in f:
            x = line.split()
            if x and x[0] == "TCP":
                return int(x[3]), x[4] == "yes"
    return None, None


def can_raise_limits():
    """Does this process have CAP_SYS_RESOURCE (needed to raise a hard
    rlimit, e.g. with prlimit)?"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 24))
    return None


def nofile_hard():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def raise_nofile():
    """Soft RLIMIT_NOFILE to the hard limit: every process started from
    here inherits it (raising the hard limit needs CAP_SYS_RESOURCE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pin(pids, cpus):
    """taskset every thread of pids to cpus ("0", "1", "0-1")."""
    for p in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(p)],
                       capture_output=True, check=False)


class CpuCap:
    """A cgroup CPU quota for one process: pct % of one core (cgroup v1
    cpu controller, or v2 cpu.max). with CpuCap(pid, 10): ..."""

    V1 = "/sys/fs/cgroup/cpu"
    V2 = "/sys/fs/cgroup"

    def __init__(self, pid, pct, tag):
        self.pid, self.pct = pid, pct
        self.name = "mpredir-bench-%s" % tag
        self.path = None
        self.home = None

    @classmethod
    def available(cls):
        if os.path.exists(os.path.join(cls.V1, "cpu.cfs_quota_us")):
            return "v1"
        try:
            with open(os.path.join(cls.V2, "cgroup.subtree_control")) as f:
                if "cpu" in f.read().split():
                    return "v2"
        except OSError:
            pass
        return None

    def _home(self):
        with open("/proc/%d/cgroup" % self.pid) as f:
            for line in f:
                _, ctrl, path = line.rstrip("\n").split(":", 2)
                if (self.kind == "v1" and "cpu" in ctrl.split(",")) or \
                        (self.kind == "v2" and ctrl == ""):
                    return path
        return "/"

    def __enter__(self):
        self.kind = self.available()
        if self.kind is None:
            raise BenchError("no cgroup CPU controller to cap with")
        root = self.V1 if self.kind == "v1" else self.V2
        self.home = os.path.join(root, self._home().lstrip("/"))
        self.path = os.path.join(root, self.name)
        os.makedirs(self.path, exist_ok=True)
        quota = int(CAP_PERIOD_US * self.pct / 100)
        if self.kind == "v1":
            self._write("cpu.cfs_period_us", CAP_PERIOD_US)
            self._write("cpu.cfs_quota_us", quota)
        else:
            self._write("cpu.max", "%d %d" % (quota, CAP_PERIOD_US))
        self._write("cgroup.procs", self.pid)
        return self

    def _write(self, name, value, path=None):
        with open(os.path.join(path or self.path, name), "w") as f:
            f.write("%s\n" % value)

    def throttled(self):
        try:
            with open(os.path.join(self.path, "cpu.stat")) as f:
                return dict(line.split() for line in f)
        except OSError:
            return {}

    def __exit__(self, *exc):
        try:
            self._write("cgroup.procs", self.pid, self.home)
        except OSError:
            pass   # the process is gone
        for _ in range(50):
            try:
                os.rmdir(self.path)
                break
            except OSError:
                time.sleep(0.05)


# ============================================================ the systems
class System:
    """One row of every table. start()/stop() the router side; activate()
    makes LAN flows go through it (the nft redirect to its port, or no
    redirect for direct)."""
    key = None
    port = None

    def __init__(self, env):
        self.env = env
        self.topo = env.topo

    def start(self):
        return self

    def stop(self):
        pass

    def restart(self):
        self.stop()
        return self.start()

    @property
    def pid(self):
        return None

    def activate(self):
        nftrules.load(self.topo, port=self.port, servers=[T.SERVICE4])

    def check_alive(self):
        pass


class Direct(System):
    key = "direct"

    def activate(self):
        nftrules.unload(self.topo)


class SpawnedProxy(System):
    """A proxy process in rtr started with topo.spawn()."""
    comm = None

    def __init__(self, env):
        super().__init__(env)
        self.daemon = None

    def argv(self):
        raise NotImplementedError

    def start(self):
        self.daemon = self.topo.spawn("rtr", self.argv(), self.key)
        self.topo.wait_for_port("rtr", "0.0.0.0", self.port,
                                proc=self.daemon)
        return self

    def stop(self):
        if self.daemon is not None:
            self.daemon.stop()
            if self.daemon in self.topo.daemons:
                self.topo.daemons.remove(self.daemon)
            self.daemon = None

    @property
    def pid(self):
        return real_pid(self.daemon.pid, self.comm)

    def check_alive(self):
        self.daemon.check_alive()


class Redsocks(SpawnedProxy):
    key = "redsocks"
    comm = "redsocks"
    port = REDSOCKS_PORT

    def argv(self):
        conf = os.path.join(self.topo.workdir, "redsocks.conf")
        hard = nofile_hard()
        with open(conf, "w") as f:
            f.write("""\
base {
    log_debug = off;
    log_info = off;
    log = stderr;
    daemon = off;
    redirector = iptables;
    rlimit_nofile = %d;
    redsocks_conn_max = %d;
}
redsocks {
    local_ip = 0.0.0.0;
    local_port = %d;
    ip = %s;
    port = %d;
    type = socks5;
}
""" % (hard, max_flows(), self.port, T.SERVICE4, DANTE_PORT))
        return ["mptcpize", "run", "redsocks", "-c", conf]


class SsRedir(SpawnedProxy):
    key = "ss-redir"
    comm = "ss-redir"
    port = SSREDIR_PORT

    def argv(self):
        return ["mptcpize", "run", "ss-redir", "-s", T.SERVICE4,
                "-p", str(SS_PORT), "-b", "0.0.0.0", "-l", str(self.port),
                "-k", SS_PASSWORD, "-m", SS_METHOD, "-t", "3600",
                "-n", str(nofile_hard()), "--no-delay"]


class Mpredir(System):
    key = "mpredir"
    port = mpredir_daemon.DEFAULT_PORT

    def __init__(self, env):
        super().__init__(env)
        self.m = None
        self.n = 0

    def config(self):
        cfg = mpredir_daemon.make_config(
            [{"address": T.SERVICE4, "port": DANTE_PORT}], level="info",
            relay={"max_flows": max_flows()})
        wk = self.env.mpredir_workers
        if wk:
            section, key, value = wk
            if section:
                cfg.setdefault(section, {})[key] = value
            else:
                cfg[key] = value
        return cfg

    def start(self):
        self.n += 1
        self.m = mpredir_daemon.Mpredir(self.topo, self.config(),
                                        name="mpredir-perf-%d" % self.n)
        self.m.start()
        return self

    def stop(self):
        if self.m is not None:
            self.m.stop()
            if self.m.daemon in self.topo.daemons:
                self.topo.daemons.remove(self.m.daemon)
            self.m = None

    @property
    def pid(self):
        return self.m.pid

    def activate(self):
        nftrules.load(self.topo, port=self.m.port,
                      servers=self.m.server_addresses(), mark=self.m.mark)

    def check_alive(self):
        self.m.check_alive()


SYSTEM_CLASSES = {"mpredir": Mpredir, "redsocks": Redsocks,
                  "ss-redir": SsRedir, "direct": Direct}


def real_pid(pid, comm):
    """The pid of `comm` (the process itself, or a child if a wrapper
    such as `mptcpize run` forked instead of exec'ing)."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            if f.read().strip() == comm:
                return pid
    except OSError:
        pass
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == pid and name == comm:
            return int(d)
    raise BenchError("no %s process under pid %d" % (comm, pid))


def max_flows():
    """The most flows a proxy is allowed: what two descriptors per flow
    leave under the hard RLIMIT_NOFILE (mpredir: 2 x max_flows + 64)."""
    return max(1024, min(1000000, (nofile_hard() - 64) // 2))


def mpredir_workers_key():
    """(section, key, value) for mpredir's worker threads if this build
    knows such a key (`mpredir --check`), else None."""
    for section, key in (("relay", "workers"), (None, "workers")):
        cfg = {"servers": [{"address": T.SERVICE4, "port": DANTE_PORT}]}
        value = os.cpu_count() or 1
        if section:
            cfg[section] = {key: value}
        else:
            cfg[key] = value
        path = "/tmp/mpredir-bench-check-%d.json" % os.getpid()
        with open(path, "w") as f:
            json.dump(cfg, f)
        try:
            r = subprocess.run([mpredir_daemon.binary_path(), "--check",
                                "-c", path], capture_output=True, text=True)
        finally:
            os.unlink(path)
        if r.returncode == 0:
            return (section, key, value)
    return None


# ============================================================ environment
class Env:
    """The topology, the server side, the systems, the parameters."""

    def __init__(self, topo, params, systems):
        self.topo = topo
        self.p = params
        self.keys = systems
        self.systems = {}
        self.mpredir_workers = mpredir_workers_key()
        self.www = os.path.join(topo.workdir, "www")
        self.dante = None
        self.ss_server = None
        self.nginx = None
        self.holdsrv = None
        self.check_sha = None

    # ---------------------------------------------------- server side
    def make_files(self):
        """nginx's files: "100" (100 bytes), "check" (one random block,
        its sha256 kept), "agg" and "big" (the block repeated)."""
        import hashlib
        os.makedirs(self.www, exist_ok=True)
        block = os.urandom(BLOCK)
        self.check_sha = hashlib.sha256(block).hexdigest()
        with open(os.path.join(self.www, "100"), "wb") as f:
            f.write(block[:100])
        with open(os.path.join(self.www, "check"), "wb") as f:
            f.write(block)
        for name, mib in (("agg", self.p["agg_mib"]),
                          ("big", self.p["big_mib"])):
            with open(os.path.join(self.www, name), "wb") as f:
                for _ in range(mib * (1 << 20) // BLOCK):
                    f.write(block)
                rest = mib * (1 << 20) % BLOCK
                f.write(block[:rest])
        os.chmod(self.www, 0o755)
        for n in os.listdir(self.www):
            os.chmod(os.path.join(self.www, n), 0o644)

    def start_server_side(self):
        w = self.topo.workdir
        conf = os.path.join(w, "nginx.conf")
        tmp = os.path.join(w, "nginx-tmp")
        os.makedirs(tmp, exist_ok=True)
        with open(conf, "w") as f:
            f.write("""\
daemon off;
master_process off;
worker_processes 1;
user root;
pid %(w)s/nginx.pid;
error_log %(w)s/nginx.error.log warn;
worker_rlimit_nofile %(nofile)d;
events { worker_connections %(conns)d; multi_accept on; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 3600s;
    client_body_temp_path %(tmp)s;
    proxy_temp_path %(tmp)s;
    fastcgi_temp_path %(tmp)s;
    uwsgi_temp_path %(tmp)s;
    scgi_temp_path %(tmp)s;
    default_type application/octet-stream;
    server {
        listen %(port)d backlog=4096;
        root %(www)s;
    }
}
""" % {"w": w, "tmp": tmp, "www": self.www, "port": NGINX_PORT,
       "nofile": nofile_hard(), "conns": nofile_hard() - 100})
        self.nginx = self.topo.spawn("dst", ["nginx", "-c", conf, "-p", w],
                                     "nginx")
        self.topo.wait_for_port("dst", "0.0.0.0", NGINX_PORT,
                                proc=self.nginx)
        self.holdsrv = self.topo.spawn(
            "dst", [T.PYTHON, CONNHOLD, "serve", "--port", str(HOLD_PORT),
                    "--bind", "0.0.0.0"], "connhold-serve")
        self.topo.wait_for_port("dst", "0.0.0.0", HOLD_PORT,
                                proc=self.holdsrv)
        self.dante = socks_servers.DanteServer(self.topo, "dante-none",
                                               DANTE_PORT).start()
        self.ss_server = self.topo.spawn(
            "srv", ["mptcpize", "run", "ss-server", "-s", T.SERVICE4,
                    "-p", str(SS_PORT), "-k", SS_PASSWORD, "-m", SS_METHOD,
                    "-t", "3600", "-n", str(nofile_hard()), "--no-delay"],
            "ss-server")
        self.topo.wait_for_port("srv", T.SERVICE4, SS_PORT,
                                proc=self.ss_server)

    def tune(self):
        """Room for many short connections: the whole port range, TIME_WAIT
        reuse for outgoing ones, short TIME_WAIT conntrack entries."""
        for ns in ("lan", "rtr", "srv"):
            self.topo.sysctl(ns, **{
                "net.ipv4.ip_local_port_range": "1024 65000",
                "net.ipv4.tcp_tw_reuse": 1})
        self.topo.run("rtr", ["sysctl", "-q", "-w",
                              "net.netfilter.nf_conntrack_tcp_timeout_time_wait"
                              "=10"], check=False)

    def start_systems(self):
        for k in self.keys:
            self.systems[k] = SYSTEM_CLASSES[k](self).start()

    def stop_systems(self):
        for s in self.systems.values():
            s.stop()
        nftrules.unload(self.topo)

    def url(self, name):
        return "http://%s:%d/%s" % (T.DST4, NGINX_PORT, name)

    def far_pids(self):
        """Every process of the far side: lan (clients), srv, dst."""
        return [p for ns in ("lan", "srv", "dst") for p in self.topo.pids(ns)]

    def srv_mptcp(self):
        n = self.topo.nstat("srv")
        return n.get(CAPABLE_RX, 0), n.get(JOIN_RX, 0)

    def curl(self, url, max_time=300, out="/dev/null"):
        """One download in lan: dict code, bytes, seconds, ttfb, rc."""
        r = self.topo.run("lan", [
            "curl", "-sS", "--no-keepalive", "--max-time", str(max_time),
            "-o", out, "-w", "%{http_code} %{size_download} %{time_total} "
            "%{time_starttransfer} %{time_connect}\n", url],
            check=False, timeout=max_time + 30)
        f = r.stdout.split()
        if len(f) != 5:
            raise BenchError("curl %s: exit %d: %s" % (url, r.returncode,
                                                         r.stderr))
        return {"rc": r.returncode, "code": int(f[0]), "bytes": int(f[1]),
                "seconds": float(f[2]), "ttfb": float(f[3]),
                "connect": float(f[4]), "stderr": r.stderr.strip()}

    def check_download(self, key):
        """The content through this system: one block, sha256 checked."""
        r = self.topo.run("lan", "curl -sS --max-time 60 %s | sha256sum"
                          % self.url("check"), check=False, timeout=90)
        got = r.stdout.split()[0] if r.stdout.split() else ""
        if got != self.check_sha:
            raise BenchError("%s: content check failed: sha256 %s, expected "
                             "%s (%s)" % (key, got, self.check_sha, r.stderr))


# ============================================================ figure 1
def measure_throughput(env):
    """One big download per run, systems interleaved run by run."""
    p = env.p
    size = p["big_mib"] << 20
    with open(os.path.join(env.www, "big"), "rb") as f:   # page cache
        while f.read(BLOCK):
            pass
    rows = {k: {"samples": []} for k in env.keys}
    for k in env.keys:
        env.systems[k].activate()
        env.check_download(k)
    for run in range(p["tp_runs"]):
        for k in env.keys:
            s = env.systems[k]
            s.activate()
            time.sleep(0.3)
            pid = s.pid
            cap0, join0 = env.srv_mptcp()
            c0, m0 = (proc_cpu(pid) if pid else None), machine_cpu()
            d = env.curl(env.url("big"))
            c1, m1 = (proc_cpu(pid) if pid else None), machine_cpu()
            cap1, join1 = env.srv_mptcp()
            if d["rc"] != 0 or d["code"] != 200 or d["bytes"] != size:
                raise BenchError("%s: download failed: %s" % (k, d))
            md = machine_delta(m0, m1)
            smp = {"bytes": d["bytes"], "seconds": d["seconds"],
                   "gbit_s": round(d["bytes"] * 8 / 1e9 / d["seconds"], 3),
                   "proxy_cpu_s": (round(c1 - c0, 3) if pid else None),
                   "machine_cpu_s": md["cpu"]["busy_s"],
                   "machine_softirq_pct": md["cpu"]["softirq_pct"],
                   "mptcp": [cap1 - cap0, join1 - join0]}
            rows[k]["samples"].append(smp)
            log("  throughput %-9s run %d: %6.2f Gbit/s, proxy %s CPU-s, "
                "machine %.2f CPU-s, MPTCP accepted/joins %s" % (
                    k, run + 1, smp["gbit_s"],
                    "%.2f" % smp["proxy_cpu_s"] if pid else "-",
                    smp["machine_cpu_s"], smp["mptcp"]))
    for k in PROXIES:
        if k in rows and any(s["mptcp"][0] < 1 for s in rows[k]["samples"]):
            raise BenchError("%s: a download did not go over MPTCP: %s" % (
                k, [s["mptcp"] for s in rows[k]["samples"]]))
    return {"size": size, "rows": rows}


# ============================================================ figure 2
WRK_RX = {
    "requests": re.compile(r"(\d+) requests in ([\d.]+)(m?s)"),
    "rps": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "errors": re.compile(r"Socket errors: connect (\d+), read (\d+), "
                         r"write (\d+), timeout (\d+)"),
    "non2xx": re.compile(r"Non-2xx or 3xx responses: (\d+)"),
    "latency": re.compile(r"Latency\s+([\d.]+)(us|ms|s)"),
}


def wrk(env, url, seconds, conns):
    """wrk in lan, pinned to CPU 0, one new connection per request."""
    t0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = env.topo.run("lan", ["taskset", "-c", "0", "wrk", "-t1",
                             "-c%d" % conns, "-d%ds" % seconds,
                             "-H", "Connection: close", url],
                     check=False, timeout=seconds + 60)
    t1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = r.stdout
    m = WRK_RX["requests"].search(out)
    if r.returncode != 0 or not m:
        raise BenchError("wrk %s: exit %d: %s %s" % (url, r.returncode, out,
                                                     r.stderr))
    secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    e = WRK_RX["errors"].search(out)
    n2 = WRK_RX["non2xx"].search(out)
    lat = WRK_RX["latency"].search(out)
    lat_ms = None
    if lat:
        lat_ms = float(lat.group(1)) * {"us": 1e-3, "ms": 1,
                                         "s": 1e3}[lat.group(2)]
    return {"requests": int(m.group(1)), "seconds": secs,
            "rate": round(int(m.group(1)) / secs, 1),
            "errors": sum(int(x) for x in e.groups()) if e else 0,
            "non2xx": int(n2.group(1)) if n2 else 0,
            "latency_ms": lat_ms,
            "wrk_cpu_s": round((t1.ru_utime + t1.ru_stime)
                               - (t0.ru_utime + t0.ru_stime), 3)}


def flows_run(env, k, capped, seconds):
    s = env.systems[k]
    pid = s.pid
    far = env.far_pids()
    nginx = env.nginx.pid
    cap0, _ = env.srv_mptcp()
    f0, m0 = procs_cpu(far), machine_cpu()
    c0 = proc_cpu(pid) if pid else 0
    throttled = {}
    if capped:
        with CpuCap(pid, CAP_PCT, k) as cg:
            c0 = proc_cpu(pid)
            w = wrk(env, env.url("100"), seconds, env.p["flow_conns"])
            c1 = proc_cpu(pid)
            throttled = cg.throttled()
    else:
        w = wrk(env, env.url("100"), seconds, env.p["flow_conns"])
        c1 = proc_cpu(pid) if pid else 0
    f1, m1 = procs_cpu(env.far_pids()), machine_cpu()
    cap1, _ = env.srv_mptcp()
    md = machine_delta(m0, m1)
    far_s = cpu_delta(f0, f1)
    smp = dict(w)
    smp.update({
        "proxy_cpu_s": round(c1 - c0, 3) if pid else None,
        "proxy_pct": round(100 * (c1 - c0) / w["seconds"], 1) if pid
        else None,
        "nginx_cpu_s": round(f1.get(nginx, 0) - f0.get(nginx, 0), 3),
        "far_cpu_s": round(far_s, 3),
        "cpu0_pct": md["cpu0"]["busy_pct"] if "cpu0" in md else None,
        "cpu1_pct": md["cpu1"]["busy_pct"] if "cpu1" in md else None,
        "mptcp_accepted": cap1 - cap0,
        "throttled": int(throttled.get("nr_throttled", 0)),
    })
    log("  flows %-9s %s: %7.1f/s, proxy %s %%, nginx %.0f %%, far side "
        "%.0f %%, CPU0 %s %%, CPU1 %s %%, errors %d, MPTCP %d" % (
            k, "capped" if capped else "core  ", smp["rate"],
            smp["proxy_pct"], 100 * smp["nginx_cpu_s"] / w["seconds"],
            100 * far_s / w["seconds"], smp["cpu0_pct"], smp["cpu1_pct"],
            smp["errors"] + smp["non2xx"], smp["mptcp_accepted"]))
    return smp


def measure_flows(env):
    """wrk with `Connection: close` against nginx; the proxy on CPU 1, the
    rest on CPU 0; runs interleaved across systems."""
    p = env.p
    topo = env.topo
    out = {"cap_pct": CAP_PCT, "cgroup": CpuCap.available(),
           "conns": p["flow_conns"], "seconds": p["flow_seconds"],
           "rows": {k: {"core": [], "capped": []} for k in env.keys}}
    two = (os.cpu_count() or 1) >= 2
    if not two:
        out["note"] = "one CPU: no pinning"
    try:
        if two:
            pin(env.far_pids(), "0")
            pin(topo.pids("rtr"), "1")
        # is the Python server (httpd.py) or nginx a limit? direct, both
        Direct(env).activate()
        time.sleep(0.3)
        w_py = wrk(env, "http://%s:%d/bytes/100" % (T.DST4, T.HTTP_PORT),
                   p["flow_seconds"], p["flow_conns"])
        w_ng = wrk(env, env.url("100"), p["flow_seconds"],
                   p["flow_conns"])
        out["server_check"] = {"httpd.py": w_py, "nginx": w_ng}
        log("  flows: direct to httpd.py %.0f/s, to nginx %.0f/s" % (
            w_py["rate"], w_ng["rate"]))
        for k in env.keys:   # warm-up: 1 s each
            env.systems[k].activate()
            time.sleep(0.2)
            wrk(env, env.url("100"), 1, p["flow_conns"])
        for run in range(p["flow_runs"]):
            for k in env.keys:
                s = env.systems[k]
                s.activate()
                if two and s.pid:
                    pin([s.pid], "1")
                time.sleep(0.3)
                out["rows"][k]["core"].append(
                    flows_run(env, k, False, p["flow_seconds"]))
                if s.pid and out["cgroup"]:
                    time.sleep(0.3)
                    out["rows"][k]["capped"].append(
                        flows_run(env, k, True, p["flow_seconds"]))
                s.check_alive()
    finally:
        if two:
            pin(env.far_pids() + topo.pids("rtr"), "0-%d"
                % ((os.cpu_count() or 1) - 1))
    for k in PROXIES:
        for smp in out["rows"].get(k, {}).get("core", []):
            if smp["mptcp_accepted"] < 0.9 * smp["requests"]:
                raise BenchError("flows %s: %d requests but srv accepted only"
                                 " %d MPTCP connections" % (
                                     k, smp["requests"],
                                     smp["mptcp_accepted"]))
    return out


# ============================================================ figure 3
class Holder:
    """connhold.py hold in lan: n connections through the current path."""

    def __init__(self, env, n, window=200):
        self.p = env.topo.popen("lan", [
            T.PYTHON, CONNHOLD, "hold", "--addr", T.DST4, "--port",
            str(HOLD_PORT), "-n", str(n), "--window", str(window)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def _line(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise BenchError("connhold: no answer in %d s" % timeout)
        line = self.p.stdout.readline()
        if not line:
            raise BenchError("connhold exited: %s" % self.p.stderr.read())
        return json.loads(line)

    def ready(self, timeout=300):
        return self._line(timeout)

    def close(self, timeout=60):
        self.p.stdin.close()
        try:
            res = self._line(timeout)
        finally:
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
        return res


def wait_fds(pid, target, timeout=30.0):
    """Until the process has at most target descriptors (flows closed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc_mem(pid)[2] <= target:
            return True
        time.sleep(0.2)
    return False


def measure_idle(env):
    """Per proxy (a fresh process): RSS and descriptors idle, then with
    N idle flows (N: IDLE_FLOWS, or what the descriptor limit allows)."""
    want = env.p["idle_flows"]
    hard = nofile_hard()
    out = {"want": want, "nofile_hard": hard, "rows": {}}
    for k in env.keys:
        s = env.systems[k]
        if not s.pid:
            continue
        s.restart()
        s.activate()
        pid = s.pid
        time.sleep(1.0)
        _, _, fds_start, _ = proc_mem(pid)
        # probe: descriptors per flow, and the code paths warmed
        h = Holder(env, 100)
        r = h.ready(120)
        if r["open"] < 100:
            raise BenchError("idle %s: probe: %s" % (k, r))
        time.sleep(0.5)
        fds_probe = proc_mem(pid)[2]
        h.close()
        wait_fds(pid, fds_start + 2)
        per = max(1, math.ceil((fds_probe - fds_start) / 100 - 0.05))
        n = min(want, (hard - fds_start - FD_MARGIN) // per // 100 * 100)
        time.sleep(1.0)
        rss0, anon0, fds0, thr0 = proc_mem(pid)
        cap0, join0 = env.srv_mptcp()
        t0 = time.monotonic()
        h = Holder(env, n)
        r = h.ready(600)
        setup_s = time.monotonic() - t0
        time.sleep(2.0)
        rss1, anon1, fds1, thr1 = proc_mem(pid)
        cap1, join1 = env.srv_mptcp()
        closed = h.close()
        wait_fds(pid, fds0 + 2, timeout=60)
        time.sleep(1.0)
        rss2, _, fds2, _ = proc_mem(pid)
        s.check_alive()
        opened = r["open"]
        row = {"n": n, "open": opened, "failed": r["failed"],
               "errors": r.get("errors", {}), "setup_s": round(setup_s, 1),
               "still_open": closed["still_open"],
               "fds_per_flow_probe": per,
               "rss_idle": rss0, "rss_flows": rss1, "rss_after": rss2,
               "anon_idle": anon0, "anon_flows": anon1,
               "fds_idle": fds0, "fds_flows": fds1, "fds_after": fds2,
               "threads": thr1,
               "bytes_per_flow": round((rss1 - rss0) / opened, 1)
               if opened else None,
               "fds_per_flow": round((fds1 - fds0) / opened, 2)
               if opened else None,
               "mptcp": [cap1 - cap0, join1 - join0]}
        out["rows"][k] = row
        log("  idle %-9s %d flows (%d failed, %.1f s): RSS %.1f -> %.1f MiB "
            "(%.0f B/flow), fds %d -> %d, after close %.1f MiB, MPTCP %s" % (
                k, opened, r["failed"], setup_s, rss0 / 2**20, rss1 / 2**20,
                row["bytes_per_flow"] or 0, fds0, fds1, rss2 / 2**20,
                row["mptcp"]))
        if opened < 0.99 * n:
            raise BenchError("idle %s: only %d of %d flows opened: %s" % (
                k, opened, n, r))
    return out


# ============================================================ figure 5
def measure_ttfb(env):
    """Fresh connections at 50 ms RTT (bench_setup.py's method: curl
    time_starttransfer, one new connection per request, a pause between
    them, warm-up requests discarded)."""
    p = env.p
    topo = env.topo
    delay.delay_wan(topo, ms=TTFB_WAN_MS)
    delay.delay_veth(topo, ("srv", T.SRV_INET_IF), ("dst", T.DST_IF),
                     TTFB_INET_MS)
    out = {"wan_ms": TTFB_WAN_MS, "inet_ms": TTFB_INET_MS,
           "requests": p["ttfb_requests"], "warmup": p["ttfb_warmup"],
           "pause_ms": p["ttfb_pause_ms"], "rows": {}}
    try:
        delay.rtt(topo, "rtr", T.SRV_WAN1, count=3)
        r = delay.rtt(topo, "rtr", T.SRV_WAN1, count=30, interval=0.01)
        out["rtt_ms"] = round(r["rtt_ms"]["median"], 2)
        log("  ttfb: RTT rtr-srv %.2f ms" % out["rtt_ms"])
        for k in env.keys:
            env.systems[k].activate()
            time.sleep(0.3)
            for _ in range(p["ttfb_warmup"]):
                env.curl(env.url("100"), max_time=10)
                time.sleep(p["ttfb_pause_ms"] / 1000)
            cap0, _ = env.srv_mptcp()
            ttfb, conn = [], []
            for _ in range(p["ttfb_requests"]):
                d = env.curl(env.url("100"), max_time=10)
                if d["rc"] != 0 or d["code"] != 200 or d["bytes"] != 100:
                    raise BenchError("ttfb %s: %s" % (k, d))
                ttfb.append(round(d["ttfb"] * 1000, 3))
                conn.append(round(d["connect"] * 1000, 3))
                time.sleep(p["ttfb_pause_ms"] / 1000)
            cap1, _ = env.srv_mptcp()
            out["rows"][k] = {"ttfb_ms": ttfb, "connect_ms": conn,
                              "mptcp_accepted": cap1 - cap0}
            log("  ttfb %-9s median %.1f ms, p90 %.1f ms, MPTCP %d" % (
                k, statistics.median(ttfb), bench_setup.quantile(ttfb, 0.9),
                cap1 - cap0))
    finally:
        delay.undelay(topo)
    return out


# ============================================================ figure 4
IPERF_PORT = 5202


def link_alone(env, link, seconds):
    """What the link carries alone with one plain TCP flow: iperf3 from
    rtr's address on it to srv's (-R: srv sends), the first 2 s (slow
    start) left out; Mbit/s of data received."""
    r = env.topo.run("rtr", [
        "iperf3", "-c", T.WAN_GW[link], "-B", T.WAN_ADDR[link],
        "-p", str(IPERF_PORT), "-R", "-t", str(seconds), "-O", "2", "-J"],
        check=False, timeout=seconds + 60)
    try:
        end = json.loads(r.stdout)["end"]["sum_received"]
    except (ValueError, KeyError):
        raise BenchError("iperf3 over %s failed (exit %d): %s %s" % (
            link, r.returncode, r.stdout[-1000:], r.stderr)) from None
    return {"mbit_s": round(end["bits_per_second"] / 1e6, 2),
            "seconds": round(end["seconds"], 2), "bytes": end["bytes"]}


def agg_download(env, k):
    size = env.p["agg_mib"] << 20
    time.sleep(0.5)   # the tbf queues drain
    for ns in ("lan", "rtr", "srv", "dst"):
        env.topo.run(ns, ["ip", "tcp_metrics", "flush", "all"], check=False)
    w0 = env.topo.link_bytes("rtr")
    d = env.curl(env.url("agg"), max_time=600)
    w1 = env.topo.link_bytes("rtr")
    if d["rc"] != 0 or d["code"] != 200 or d["bytes"] != size:
        raise BenchError("aggregate %s: download failed: %s" % (k, d))
    return {"bytes": d["bytes"], "seconds": d["seconds"],
            "mbit_s": round(d["bytes"] * 8 / 1e6 / d["seconds"], 2),
            "wan_rx": {w: w1[w][0] - w0[w][0] for w in T.WAN_IFS}}


def measure_aggregate(env):
    """Per scenario: shape and delay both links; each link alone (iperf3,
    plain TCP); then one download per system and run (direct: fewer
    runs: it is wan1 alone again)."""
    p = env.p
    topo = env.topo
    out = {"size": p["agg_mib"] << 20, "alone_s": p["agg_alone_s"],
           "scenarios": []}
    iperf = topo.spawn("srv", ["iperf3", "-s", "-p", str(IPERF_PORT)],
                       "iperf3-server")
    topo.wait_for_port("srv", None, IPERF_PORT, proc=iperf)
    try:
        for name, links in SCENARIOS:
            sc = {"name": name, "links": {w: {"mbit": r, "ms": ms}
                                          for w, (r, ms) in links.items()},
                  "rows": {k: [] for k in env.keys}, "alone": {}}
            try:
                for w, (rate, ms) in links.items():
                    topo.shape_wan(rate_mbit=rate, links=(w,))
                    delay.delay_wan(topo, ms=ms, links=(w,))
                log("  aggregate %s: %s" % (name, ", ".join(
                    "%s %d Mbit/s %g ms" % (w, r, ms)
                    for w, (r, ms) in links.items())))
                for w in T.WAN_IFS:
                    sc["alone"][w] = [link_alone(env, w, p["agg_alone_s"])
                                      for _ in range(p["agg_alone_runs"])]
                    log("    %s alone (iperf3, TCP): %s Mbit/s" % (
                        w, ", ".join("%.2f" % s["mbit_s"]
                                     for s in sc["alone"][w])))
                for run in range(p["agg_runs"]):
                    for k in env.keys:
                        if k == "direct" and run >= p["agg_direct_runs"]:
                            continue
                        env.systems[k].activate()
                        smp = agg_download(env, k)
                        sc["rows"][k].append(smp)
                        log("    %-9s run %d: %.2f Mbit/s (wan1 %.0f %%)" % (
                            k, run + 1, smp["mbit_s"],
                            100 * smp["wan_rx"]["wan1"]
                            / (sum(smp["wan_rx"].values()) or 1)))
            finally:
                delay.undelay(topo)
                topo.unshape_wan()
            out["scenarios"].append(sc)
    finally:
        iperf.stop()
        if iperf in topo.daemons:
            topo.daemons.remove(iperf)
    return out


MEASURE = {"throughput": measure_throughput, "flows": measure_flows,
           "idle": measure_idle, "ttfb": measure_ttfb,
           "aggregate": measure_aggregate}


# ============================================================ collect
def pkg_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def kernel_config(*keys):
    """{key: value or None} from /proc/config.gz or /boot/config-*."""
    import gzip
    text = ""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            text = f.read()
    except OSError:
        try:
            with open("/boot/config-" + platform.release()) as f:
                text = f.read()
        except OSError:
            return {k: None for k in keys}
    out = {k: "n" for k in keys}
    for line in text.splitlines():
        k, _, v = line.partition("=")
        if k in out:
            out[k] = v
    return out


def machine_info(env):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    binary = mpredir_daemon.binary_path()
    try:
        ver = subprocess.run([binary, "--version"], capture_output=True,
                             text=True).stdout.strip() or "?"
    except OSError as e:
        ver = "? (%s)" % e.strerror
    git = ["git", "-C", T.REPO_ROOT]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--",
                                  "redirector"], capture_output=True,
                           text=True).stdout.strip()
    if os.environ.get("MPREDIR_BIN"):
        ver += " (`MPREDIR_BIN=%s`)" % binary
    elif head:
        ver += ", commit %s%s" % (head, " + uncommitted changes in "
                                  "redirector/" if dirty else "")
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wk = env.mpredir_workers
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "mpredir": ver,
        "mpredir_workers": ("`%s` = %d" % (
            "%s.%s" % (wk[0], wk[1]) if wk[0] else wk[1], wk[2]) if wk
            else "no such setting in this build"),
        "redsocks": pkg_version("redsocks"),
        "shadowsocks": pkg_version("shadowsocks-libev"),
        "dante": pkg_version("dante-server"),
        "nginx": pkg_version("nginx"),
        "wrk": " ".join((wrk_v.stdout + wrk_v.stderr).split()[:2]),
        "curl": " ".join(subprocess.run(["curl", "--version"],
                                        capture_output=True, text=True)
                         .stdout.split()[:2]),
        "congestion_control": env.topo.run(
            "srv", ["sysctl", "-n", "net.ipv4.tcp_congestion_control"],
            check=False).stdout.strip() or "?",
        "nofile_hard": nofile_hard(),
        "cap_sys_resource": can_raise_limits(),
        "kconfig": kernel_config("CONFIG_IRQ_TIME_ACCOUNTING",
                                 "CONFIG_VIRT_CPU_ACCOUNTING_GEN",
                                 "CONFIG_HZ"),
        "loadavg_start": open("/proc/loadavg").read().split()[0],
    }


def collect(figures, systems, params):
    raise_nofile()
    log("background load (other work on this machine), 2 s sample ...")
    bg0 = background_load()
    topo = T.Topology()
    data = {"params": params, "figures": list(figures),
            "systems": list(systems)}
    t_start = time.monotonic()
    try:
        topo.setup()
        env = Env(topo, params, systems)
        data["machine"] = machine_info(env)
        data["machine"]["background_busy_start"] = bg0
        env.tune()
        env.make_files()
        env.start_server_side()
        env.start_systems()
        data["machine"]["tcp_mem_limits"] = open(
            "/proc/sys/net/ipv4/tcp_mem").read().split()
        data["machine"]["tcp_pressure"] = {}
        for fig in figures:
            pages, pressure = tcp_memory()
            data["machine"]["tcp_pressure"][fig] = [pages, pressure]
            if pressure:
                log("WARNING: the kernel is under TCP memory pressure (%d "
                    "pages charged to TCP, limits %s): figures taken now "
                    "are wrong" % (pages, " ".join(
                        data["machine"]["tcp_mem_limits"])))
            log("%s ..." % fig)
            t0 = time.monotonic()
            data[fig] = MEASURE[fig](env)
            data[fig]["elapsed_s"] = round(time.monotonic() - t0)
            log("%s: %d s" % (fig, data[fig]["elapsed_s"]))
        env.stop_systems()
        data["machine"]["loadavg_end"] = \
            open("/proc/loadavg").read().split()[0]
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            topo.teardown()
        finally:
            signal.signal(signal.SIGINT, old)
    data["machine"]["background_busy_end"] = background_load()
    data["elapsed_s"] = round(time.monotonic() - t_start)
    return data


# ============================================================ summaries
def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _spread(xs):
    """(max - min) / median, percent."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2 or not statistics.median(xs):
        return None
    return 100 * (max(xs) - min(xs)) / statistics.median(xs)


def best_peer(values, key, higher=True):
    """The best value among the proxies other than key: (peer, value)."""
    peers = [(k, v) for k, v in values.items()
             if k != key and k in PROXIES and v is not None]
    if not peers:
        return None, None
    return (max if higher else min)(peers, key=lambda kv: kv[1])


def summarize(data):
    """Plain numbers per figure and system, used by the tables, the plot
    and the targets."""
    S = {}
    tp = data.get("throughput")
    if tp:
        rows = {}
        for k, r in tp["rows"].items():
            sm = r["samples"]
            gb = [s["bytes"] / 1e9 for s in sm]
            rows[k] = {
                "gbit_s": _med([s["gbit_s"] for s in sm]),
                "runs": [s["gbit_s"] for s in sm],
                "proxy_cpu_gb": _med([s["proxy_cpu_s"] / g if s["proxy_cpu_s"]
                                      is not None else None
                                      for s, g in zip(sm, gb)]),
                "machine_cpu_gb": _med([s["machine_cpu_s"] / g
                                        for s, g in zip(sm, gb)]),
                "softirq_pct": _med([s["machine_softirq_pct"] for s in sm]),
                "spread": _spread([s["gbit_s"] for s in sm]),
                "cpu_spread": _spread([s["proxy_cpu_s"] for s in sm]),
                "mptcp": [s["mptcp"] for s in sm],
            }
            c = rows[k]["proxy_cpu_gb"]
            rows[k]["gb_per_cpu_s"] = 1 / c if c else None
        S["throughput"] = rows
    fl = data.get("flows")
    if fl:
        rows = {}
        for k, r in fl["rows"].items():
            core, capd = r["core"], r["capped"]
            per_cpu = [s["requests"] / s["proxy_cpu_s"] if s["proxy_cpu_s"]
                       else None for s in core]
            rows[k] = {
                "rate": _med([s["rate"] for s in core]),
                "runs": [s["rate"] for s in core],
                "proxy_pct": _med([s["proxy_pct"] for s in core]),
                "cpu0_pct": _med([s["cpu0_pct"] for s in core]),
                "cpu1_pct": _med([s["cpu1_pct"] for s in core]),
                "nginx_pct": _med([100 * s["nginx_cpu_s"] / s["seconds"]
                                   for s in core]),
                "far_pct": _med([100 * s["far_cpu_s"] / s["seconds"]
                                 for s in core]),
                "wrk_pct": _med([100 * s["wrk_cpu_s"] / s["seconds"]
                                 for s in core]),
                "per_cpu_s": _med(per_cpu),
                "errors": sum(s["errors"] + s["non2xx"] for s in core + capd),
                "latency_ms": _med([s["latency_ms"] for s in core]),
                "capped_rate": _med([s["rate"] for s in capd]),
                "capped_runs": [s["rate"] for s in capd],
                "capped_pct": _med([s["proxy_pct"] for s in capd]),
                "capped_cpu0": _med([s["cpu0_pct"] for s in capd]),
                "spread": _spread([s["rate"] for s in core]),
                "capped_spread": _spread([s["rate"] for s in capd]),
                "per_cpu_spread": _spread(per_cpu),
            }
            x = rows[k]
            if x["proxy_pct"] is not None and x["proxy_pct"] >= 90:
                x["bottleneck"] = "the proxy (CPU 1 full)"
            elif x["cpu0_pct"] is not None and x["cpu0_pct"] >= 90:
                x["bottleneck"] = "CPU 0 (client, nginx, server side)"
            else:
                x["bottleneck"] = "neither CPU full"
            x["saturated"] = (x["capped_pct"] is not None and
                              x["capped_pct"] >= 0.9 * fl["cap_pct"])
        S["flows"] = rows
    idle = data.get("idle")
    if idle:
        S["idle"] = idle["rows"]
    tt = data.get("ttfb")
    if tt:
        rows = {}
        for k, r in tt["rows"].items():
            rows[k] = {"median": statistics.median(r["ttfb_ms"]),
                       "p90": bench_setup.quantile(r["ttfb_ms"], 0.9),
                       "connect": statistics.median(r["connect_ms"]),
                       "n": len(r["ttfb_ms"]),
                       "mptcp": r["mptcp_accepted"]}
        d = rows.get("direct")
        rtt = tt.get("rtt_ms")
        for k, x in rows.items():
            x["slow"] = (sum(1 for v in tt["rows"][k]["ttfb_ms"]
                             if v > 1.5 * rtt) if rtt else None)
            x["ratio"] = x["median"] / d["median"] if d else None
            x["rtts"] = x["median"] / tt["rtt_ms"] if tt.get("rtt_ms") \
                else None
        S["ttfb"] = rows
    ag = data.get("aggregate")
    if ag:
        scs = []
        for sc in ag["scenarios"]:
            nominal = sum(l["mbit"] for l in sc["links"].values())
            alone = {w: _med([s["mbit_s"] for s in v])
                     for w, v in sc["alone"].items()}
            alone_sum = sum(v for v in alone.values() if v)
            rows = {}
            for k, sm in sc["rows"].items():
                med = _med([s["mbit_s"] for s in sm])
                tot = [sum(s["wan_rx"].values()) or 1 for s in sm]
                rows[k] = {"mbit_s": med,
                           "runs": [s["mbit_s"] for s in sm],
                           "of_nominal": med / nominal if med else None,
                           "of_alone": med / alone_sum if med and alone_sum
                           else None,
                           "wan1_share": _med([100 * s["wan_rx"]["wan1"] / t
                                               for s, t in zip(sm, tot)]),
                           "spread": _spread([s["mbit_s"] for s in sm])}
            scs.append({"name": sc["name"], "links": sc["links"],
                        "nominal": nominal, "alone": alone,
                        "alone_sum": alone_sum, "rows": rows})
        S["aggregate"] = scs
    S["targets"] = targets(S)
    return S


def scenario_label(links, sep=", "):
    """ "20 + 20 Mbit/s, 10 / 40 ms" from {link: {"mbit", "ms"}}."""
    return "%s Mbit/s%s%s ms" % (
        " + ".join("%d" % l["mbit"] for l in links.values()), sep,
        " / ".join("%g" % l["ms"] for l in links.values()))


def targets(S):
    """[(target, measured, met)]; met None when not measured."""
    out = []
    tp = S.get("throughput", {})
    m, r = tp.get("mpredir", {}), tp.get("redsocks", {})
    if m.get("gb_per_cpu_s") and r.get("gb_per_cpu_s"):
        x = m["gb_per_cpu_s"] / r["gb_per_cpu_s"]
        out.append(("throughput per router CPU-second ≥ %g × redsocks'"
                    % TARGETS["cpu"], "%.2f × (%.2f vs %.2f GB per CPU-s)"
                    % (x, m["gb_per_cpu_s"], r["gb_per_cpu_s"]),
                    x >= TARGETS["cpu"]))
    else:
        out.append(("throughput per router CPU-second ≥ %g × redsocks'"
                    % TARGETS["cpu"], "not measured", None))
    idle = S.get("idle", {}).get("mpredir")
    if idle and idle.get("bytes_per_flow") is not None:
        b = idle["bytes_per_flow"]
        out.append(("daemon memory per idle flow ≤ %d B (1 KiB)"
                    % TARGETS["mem"], "%.0f B (RSS, %d flows)"
                    % (b, idle["open"]), b <= TARGETS["mem"]))
    else:
        out.append(("daemon memory per idle flow ≤ 1 KiB", "not measured",
                    None))
    eqs = [x for x in S.get("aggregate", [])
           if len({l["mbit"] for l in x["links"].values()}) == 1
           and x["rows"].get("mpredir", {}).get("mbit_s")]
    for eq in eqs:
        x = eq["rows"]["mpredir"]
        what_links = scenario_label(eq["links"]) + " one way"
        for what, frac, base in (
                ("the nominal sum", x["of_nominal"], eq["nominal"]),
                ("the links' TCP-alone sum", x["of_alone"],
                 eq["alone_sum"])):
            out.append(("goodput ≥ %.0f %% of %s (%s)" % (
                100 * TARGETS["agg"], what, what_links),
                "%.1f %% (%.1f of %.1f Mbit/s)" % (
                    100 * frac, x["mbit_s"], base), frac >= TARGETS["agg"]))
    if not eqs:
        out.append(("goodput ≥ 95 % of the sum of two equal links",
                    "not measured", None))
    return out


# ============================================================ markdown
def _f(v, fmt="%.2f", none="–"):
    return none if v is None else fmt % v


def _peer_ratio(values, k, higher, fmt="%.2f ×"):
    """value / best peer's value, with the peer's name."""
    v = values.get(k)
    peer, pv = best_peer(values, k, higher)
    if v is None or not pv or k not in PROXIES:
        return "–"
    return (fmt % (v / pv)) + " (%s)" % peer


def render_section(data, plot_name):
    S = summarize(data)
    m = data["machine"]
    keys = [k for k in SYSTEMS if k in data["systems"]]
    L = []
    a = L.append
    a("## Performance side by side: mpredir, redsocks, shadowsocks, direct")
    a("")
    a("Generated by `make bench-perf` (part of `make bench`; root, about "
      "%d minutes here): `test/bench/bench_perf.py` rewrites only this "
      "section, between its `<!-- bench-perf:begin/end -->` markers, and "
      "`doc/%s`, and keeps its raw data in `doc/bench-perf.json` "
      "(`bench_perf.py --from-json doc/bench-perf.json` renders it "
      "again). `bench_perf.py --only flows --quick` measures one figure, "
      "small, and prints it without touching this file."
      % (max(1, round(data.get("elapsed_s", 600) / 60)), plot_name))
    a("")
    a("### Set-up")
    a("")
    a("The end-to-end test topology (`test/lib/topo.py`), one run, one "
      "server side for all:")
    a("")
    a("    lan ───── rtr ══ wan1 ══ srv ───────────────── dst")
    a("    curl      nft     wan2    dante :%d (mptcpize)   nginx :%d"
      % (DANTE_PORT, NGINX_PORT))
    a("    wrk       mpredir :%d    ss-server :%d (mptcpize) connhold :%d"
      % (mpredir_daemon.DEFAULT_PORT, SS_PORT, HOLD_PORT))
    a("    connhold  redsocks :%d (mptcpize)" % REDSOCKS_PORT)
    a("              ss-redir :%d (mptcpize)" % SSREDIR_PORT)
    a("")
    a("* **mpredir**: `redirector/mpredir` in rtr, default configuration "
      "(pool of 2 warm connections, pipelined SOCKS) except "
      "`relay.max_flows` = %d and log level `info`; worker threads: %s. "
      "One MPTCP connection per flow to **dante** (Debian %s, no "
      "authentication, under `mptcpize run`) in srv."
      % (max_flows_from(m), m.get("mpredir_workers", "?"), m["dante"]))
    a("* **redsocks + dante**: Debian's redsocks (%s) in rtr under "
      "`mptcpize run` (so that its upstream connections are MPTCP), "
      "`type = socks5`, to the same dante; `redsocks_conn_max` and "
      "`rlimit_nofile` raised like mpredir's limits." % m["redsocks"])
    a("* **ss-redir + ss-server**: Debian's shadowsocks-libev (%s), "
      "`ss-redir` in rtr and `ss-server` in srv, both under `mptcpize run` "
      "(the OpenMPTCProuter / OverTheBox stack), cipher `%s` (the "
      "default), `--no-delay` (so that Nagle does not hold the first "
      "request behind the address header), `-t 3600`. Its server side is "
      "ss-server, not dante: shadowsocks speaks its own protocol."
      % (m["shadowsocks"], SS_METHOD))
    a("* **direct**: no proxy, no redirect: rtr routes the flow over wan1 "
      "(masqueraded), plain TCP; the kernel's forwarding is the whole "
      "router-side cost.")
    a("")
    a("Every proxy gets its LAN flows from the reference nftables ruleset "
      "(`nft-rules/mpredir.nft`, `redirect` to the proxy's port); only "
      "one system's redirect is loaded at a time, all proxies stay "
      "running, idle, while another is measured. Content is served by "
      "nginx (Debian %s, one worker, `sendfile`) from files of random "
      "bytes; each system's path is first checked with a 16 MiB download "
      "whose sha256 is compared. The proxies' MPTCP use is checked on "
      "srv (`%s`, MPTCP connections accepted) for every figure."
      % (m["nginx"], CAPABLE_RX))
    a("")
    a("### Machine and run")
    a("")
    a("| | |")
    a("|---|---|")
    for k_, v in (
            ("date", m["date"]), ("kernel (`uname -r`)", m["kernel"]),
            ("CPU", m["cpu"]), ("nproc", m["nproc"]),
            ("mpredir", m["mpredir"]),
            ("redsocks / shadowsocks-libev / dante-server (Debian)",
             "%s / %s / %s" % (m["redsocks"], m["shadowsocks"], m["dante"])),
            ("nginx / wrk / curl", "%s / %s / %s" % (m["nginx"], m["wrk"],
                                                    m["curl"])),
            ("TCP congestion control", m["congestion_control"]),
            ("descriptor limit (hard `RLIMIT_NOFILE`)", m["nofile_hard"]),
            ("other work on the machine: CPU busy before / after the run "
             "(2 s, nothing of ours running)", "%s %% / %s %%" % (
                 m.get("background_busy_start", "?"),
                 m.get("background_busy_end", "?"))),
            ("load average (1 min), start / end", "%s / %s" % (
                m["loadavg_start"], m.get("loadavg_end", "?"))),
            ("kernel TCP memory pressure at the start of a figure",
             ", ".join(f for f, (_, pr) in (m.get("tcp_pressure") or {})
                       .items() if pr) or "none"),
            ("duration", "%d s" % data.get("elapsed_s", 0))):
        a("| %s | %s |" % (k_, v))
    a("")
    a("### Targets")
    a("")
    a("| target (mpredir) | measured | met |")
    a("|---|---|---|")
    for t, v, met in S["targets"]:
        a("| %s | %s | %s |" % (t, v, "–" if met is None else
                                ("**met**" if met else "**not met**")))
    a("")
    a("![Performance, side by side](%s)" % plot_name)
    a("")
    if "throughput" in S:
        render_throughput(a, data, S, keys)
    if "flows" in S:
        render_flows(a, data, S, keys)
    if "idle" in S:
        render_idle(a, data, S, keys)
    if "aggregate" in S:
        render_aggregate(a, data, S, keys)
    if "ttfb" in S:
        render_ttfb(a, data, S, keys)
    render_noise(a, data, S)
    return "\n".join(L) + "\n"


def max_flows_from(m):
    return max(1024, min(1000000, (int(m["nofile_hard"]) - 64) // 2))


def render_throughput(a, data, S, keys):
    tp = data["throughput"]
    R = S["throughput"]
    a("### 1. One download on unshaped links, and CPU per GB")
    a("")
    a("`curl -o /dev/null http://%s:%d/big` in lan: %d MiB, no shaping and "
      "no delay (veth links), %d runs per system, systems taken in turn "
      "within each run. CPU: the proxy process's `utime + stime` "
      "(`/proc/PID/stat`, all threads) before and after each download; "
      "*whole machine*: all CPUs' busy time (`/proc/stat`) over the same "
      "interval — curl, nginx, the server side, every namespace's network "
      "stack, and whatever else ran. GB = 10^9 bytes."
      % (T.DST4, NGINX_PORT, tp["size"] >> 20, data["params"]["tp_runs"]))
    a("")
    tput = {k: R[k]["gbit_s"] for k in keys}
    eff = {k: R[k]["gb_per_cpu_s"] for k in keys}
    a("| system | Gbit/s (median) | runs | vs best peer | router CPU-s "
      "per GB (proxy process) | GB per router CPU-s | vs best peer | "
      "whole-machine CPU-s per GB |")
    a("|---|---|---|---|---|---|---|---|")
    for k in keys:
        x = R[k]
        a("| %s | **%.2f** | %s | %s | %s | %s | %s | %.2f |" % (
            LABELS[k], x["gbit_s"], ", ".join("%.2f" % v for v in x["runs"]),
            _peer_ratio(tput, k, True),
            "**%.2f**" % x["proxy_cpu_gb"] if x["proxy_cpu_gb"] is not None
            else "n/a: kernel forwarding",
            _f(x["gb_per_cpu_s"]), _peer_ratio(eff, k, True),
            x["machine_cpu_gb"]))
    a("")
    busy = _med([R[k]["machine_cpu_gb"] * R[k]["gbit_s"] / 8
                 for k in keys if k in PROXIES])
    nproc = data["machine"]["nproc"]
    if busy is not None and busy >= 0.9 * nproc:
        why = ("on this %s-CPU machine, which also runs curl, nginx, the "
               "server side and MPTCP at both ends: their rate is the "
               "machine's, and the router's CPU per GB is what compares "
               "the proxies." % nproc)
    else:
        why = ("of this machine's %s: one flow's rate here is not bound by "
               "the machine's total CPU but somewhere along its chain (one "
               "thread per hop, socket buffers, MPTCP at both ends; not "
               "investigated further), and other work on the machine moves "
               "it (see the runs). The router's CPU per GB is what "
               "compares the proxies." % nproc)
    a("*vs best peer*: the row's value divided by the best of the other "
      "proxies' (named); higher is better in both. The proxied downloads "
      "kept about %.1f CPUs busy (whole-machine CPU-s per GB × GB/s, "
      "median of the proxies) %s" % (busy or 0, why))
    a("")
    a("For direct there is no "
      "router process: its router-side cost is the kernel's forwarding, "
      "in softirq, which per-process accounting does not see; the "
      "whole-machine column is the only one that covers it, for every "
      "row alike (softirq was %s %% of all CPU time during direct's "
      "downloads)." % _f(R.get("direct", {}).get("softirq_pct"), "%.0f"))
    a("")
    kc = data["machine"].get("kconfig") or {}
    if kc.get("CONFIG_IRQ_TIME_ACCOUNTING") == "n":
        a("How to read the CPU figures: this kernel accounts CPU time by "
          "ticks (%s Hz) without `CONFIG_IRQ_TIME_ACCOUNTING`, so a "
          "process's `stime` also holds the softirq work that runs in its "
          "context: when a proxy writes to a socket, the veth delivers the "
          "packets and the receiving namespace's TCP processes them right "
          "there. Part of the far side's network stack is therefore "
          "charged to every proxy, to each in proportion to what it "
          "sends; the comparison between proxies stays fair, the absolute "
          "CPU-s are above what the proxy's own code costs."
          % (kc.get("CONFIG_HZ") or "?"))
        a("")


def render_flows(a, data, S, keys):
    fl = data["flows"]
    R = S["flows"]
    sc = fl.get("server_check", {})
    a("### 2. New flows per second")
    a("")
    a("`wrk -t1 -c%d -d%ds -H 'Connection: close' http://%s:%d/100` in lan: "
      "%d connections at a time, one new connection per request, 100-byte "
      "object; nginx closes each connection after its response. %d runs "
      "per system, systems in turn within each run, after a 1 s warm-up "
      "each. Pinning (`taskset`): the proxy process alone on CPU 1, "
      "everything else (wrk, nginx, dante or ss-server, every other "
      "process of lan, srv and dst) on CPU 0; kernel network work runs "
      "on the CPU of the process that sends. Two runs per system and "
      "round:" % (fl["conns"], fl["seconds"], T.DST4, NGINX_PORT,
                  fl["conns"], data["params"]["flow_runs"]))
    a("")
    a("* **whole core**: the proxy may use all of CPU 1. Its CPU use tells "
      "how close it came to saturating; *flows per router CPU-second* = "
      "requests ÷ the proxy's CPU time: the rate at which the proxy alone "
      "would fill one core of this CPU.")
    a("* **capped at %d %%**: the same, with the proxy in a cgroup "
      "limited to %d %% of one core (%s CPU controller, quota %d µs per "
      "%d µs): a small router. Here the router's CPU saturates first "
      "(column *proxy CPU*: at the cap means saturated) and the rate is "
      "the router's." % (fl["cap_pct"], fl["cap_pct"],
                         fl.get("cgroup") or "no", CAP_PERIOD_US *
                         fl["cap_pct"] // 100, CAP_PERIOD_US))
    a("")
    if sc:
        py, ng = sc["httpd.py"], sc["nginx"]
        a("The far side must not be the limit where the router is measured. "
          "Checked first, direct (no proxy), same pinning: "
          "`test/tools/httpd.py` (Python, the e2e tests' server) answered "
          "%.0f new connections/s (%d socket errors), nginx %.0f/s: "
          "httpd.py would be the bottleneck, so nginx serves every figure "
          "here. The load generator is wrk (C, epoll; Debian %s)."
          % (py["rate"], py["errors"], ng["rate"],
             data["machine"]["wrk"].split()[1]
             if len(data["machine"]["wrk"].split()) > 1 else "?"))
        a("")
    per = {k: R[k]["per_cpu_s"] for k in keys}
    capr = {k: R[k]["capped_rate"] for k in keys}
    a("| system | whole core: flows/s (median) | runs | proxy CPU | CPU 0 "
      "busy | limited by | flows per router CPU-s | vs best peer | "
      "capped at %d %%: flows/s | runs | proxy CPU | vs best peer | "
      "errors |" % fl["cap_pct"])
    a("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in keys:
        x = R[k]
        a("| %s | **%.0f** | %s | %s | %s | %s | %s | %s | %s | %s | %s | "
          "%s | %d |" % (
              LABELS[k], x["rate"], ", ".join("%.0f" % v for v in x["runs"]),
              _f(x["proxy_pct"], "%.0f %%", "n/a"),
              _f(x["cpu0_pct"], "%.0f %%"), x["bottleneck"]
              if k != "direct" else "the far side (CPU 0)",
              _f(x["per_cpu_s"], "**%.0f**", "n/a"),
              _peer_ratio(per, k, True),
              _f(x["capped_rate"], "**%.0f**", "n/a"),
              ", ".join("%.0f" % v for v in x["capped_runs"]) or "–",
              _f(x["capped_pct"], "%.1f %%", "–") + (
                  "" if x["capped_pct"] is None else
                  (" (saturated)" if x["saturated"] else " (NOT saturated)")),
              _peer_ratio(capr, k, True), x["errors"]))
    a("")
    a("*proxy CPU*: the proxy's CPU time ÷ wall time, in %% of one core; "
      "*CPU 0 busy*: all of CPU 0's busy time (the far side, and other "
      "work on the machine); *errors*: wrk's socket errors and non-2xx "
      "answers over all runs. During the whole-core runs nginx used "
      "about %s and the far side's processes (lan, srv, dst; wrk "
      "included) %s of CPU 0 (medians over the proxies' runs). Direct "
      "has no router process: the kernel forwards, and its row is "
      "what client and servers do without a proxy.%s"
      % (_f(_med([R[k]["nginx_pct"] for k in keys if k in PROXIES]),
            "%.0f %%"),
         _f(_med([R[k]["far_pct"] for k in keys if k in PROXIES]),
            "%.0f %%"),
         "" if any(R[k]["bottleneck"] != "CPU 0 (client, nginx, server "
                   "side)" for k in keys if k in PROXIES) else
         " With a whole core, no proxy was the limit: CPU 0 was full in "
         "every row, so those rates compare the far sides (dante forks "
         "and hands each client between its processes; ss-server is one "
         "libev process), not the routers; the flows per router "
         "CPU-second and the capped rows compare the routers."))
    a("")


def render_idle(a, data, S, keys):
    idle = data["idle"]
    R = S["idle"]
    a("### 3. Idle flows: memory and descriptors")
    a("")
    a("`test/tools/connhold.py`: in lan, `hold` opens the flows to "
      "`connhold.py serve` in dst, at most 200 unanswered at a time; on "
      "each it sends 6 bytes and waits for the 3-byte answer (so the whole "
      "path is up and has carried data both ways), then leaves all of them "
      "idle. Each proxy is a fresh process; 100 flows opened and closed "
      "first (warm-up, and they give the descriptors per flow). RSS "
      "(`VmRSS`) and open descriptors of the proxy process: idle before, "
      "2 s after the last flow is up, and 1 s after all are closed. "
      "*Per flow* = (RSS with flows − RSS idle) ÷ flows.")
    a("")
    want = idle["want"]
    cut = [k for k in keys if k in R and R[k]["n"] < want]
    if cut:
        cap = data["machine"].get("cap_sys_resource")
        a("**Fewer than %d flows where the descriptor limit did not allow "
          "more**: this machine's hard `RLIMIT_NOFILE` is %d%s, and a "
          "proxy needs %s descriptors per flow; each proxy got the most "
          "flows that fit, in hundreds (column *flows*). Per-flow figures "
          "are divided by the flows each really held." % (
              want, idle["nofile_hard"],
              " and cannot be raised here (no `CAP_SYS_RESOURCE`: "
              "`prlimit` fails)" if cap is False else "", ", ".join(
                  "%s %d" % (k, R[k]["fds_per_flow_probe"]) for k in keys
                  if k in R)))
        a("")
    per = {k: R[k]["bytes_per_flow"] for k in keys if k in R}
    a("| system | flows | RSS idle | RSS with the flows | per flow | vs "
      "best peer | descriptors idle → with flows | per flow | RSS after "
      "closing |")
    a("|---|---|---|---|---|---|---|---|---|")
    for k in keys:
        if k not in R:
            a("| %s | n/a: no router process (the kernel keeps a conntrack "
              "entry per forwarded flow) | | | | | | | |" % LABELS[k])
            continue
        x = R[k]
        a("| %s | %d%s | %.2f MiB | %.2f MiB | **%.0f B** | %s | %d → %d | "
          "%.2f | %.2f MiB |" % (
              LABELS[k], x["open"],
              "" if x["open"] == x["n"] else " (of %d)" % x["n"],
              x["rss_idle"] / 2**20, x["rss_flows"] / 2**20,
              x["bytes_per_flow"], _peer_ratio(per, k, False),
              x["fds_idle"], x["fds_flows"], x["fds_per_flow"],
              x["rss_after"] / 2**20))
    a("")
    pipes = ["%s %g" % (k, R[k]["fds_per_flow"] - 2) for k in keys
             if k in R and R[k]["fds_per_flow"] and
             R[k]["fds_per_flow"] > 2.5]
    a("*vs best peer*: lower is better. RSS is user-space memory only: "
      "the kernel's sockets (two per flow for every proxy, with their "
      "buffers) are not in it%s. Every flow went over MPTCP (srv "
      "accepted %s MPTCP connections for the proxies' flows)." % (
          ", nor the pipes of a splice relay (the descriptors beyond two "
          "per flow: %s)" % ", ".join(pipes) if pipes else "",
          ", ".join("%s %d" % (k, R[k]["mptcp"][0]) for k in keys
                    if k in R)))
    a("")


def render_aggregate(a, data, S, keys):
    ag = data["aggregate"]
    a("### 4. One download over two links")
    a("")
    a("Both WAN links shaped with `tbf` at both ends (`Topology.shape_wan`) "
      "and delayed one way at the receiving ends (`delay.delay_wan`, "
      "delayemu); wan1 carries the initial subflow. One download of %d MiB "
      "from nginx per run (%d runs for the proxies, %d for direct, systems "
      "in turn within a run); goodput = body bytes ÷ curl's `time_total`, "
      "so connection set-up and slow start count against it. Two sums of "
      "the links: *nominal* (the tbf rates) and *TCP alone*: what each "
      "link carries alone with one plain TCP flow, measured just before "
      "(`iperf3 -R -t %d -O 2` from rtr's address on the link to srv's: "
      "steady state, the first 2 s left out, which favours the links, not "
      "the proxies). Direct is one plain TCP download over wan1."
      % (ag["size"] >> 20, data["params"]["agg_runs"],
         data["params"].get("agg_direct_runs", 1), ag["alone_s"]))
    a("")
    for sc in S["aggregate"]:
        links = ", ".join("%s %d Mbit/s, %g ms one way" % (w, l["mbit"],
                                                          l["ms"])
                          for w, l in sc["links"].items())
        a("**%s**: %s. Nominal sum %d Mbit/s; TCP alone: %s; sum %.1f "
          "Mbit/s." % (scenario_label(sc["links"]), links, sc["nominal"],
                       ", ".join(
              "%s %.1f" % (w, v) for w, v in sc["alone"].items()),
              sc["alone_sum"]))
        a("")
        a("| system | Mbit/s (median) | runs | of nominal sum | of TCP-alone "
          "sum | vs best peer | received over wan1 |")
        a("|---|---|---|---|---|---|---|")
        vals = {k: sc["rows"][k]["mbit_s"] for k in keys}
        for k in keys:
            x = sc["rows"][k]
            a("| %s | **%.1f** | %s | %.1f %% | **%.1f %%** | %s | %.0f %% |"
              % (LABELS[k], x["mbit_s"], ", ".join("%.1f" % v
                                                   for v in x["runs"]),
                 100 * x["of_nominal"], 100 * x["of_alone"],
                 _peer_ratio(vals, k, True), x["wan1_share"]))
        a("")
    a("Reading the figures: tbf counts whole frames, so one TCP flow "
      "carries at most 1448 / 1514 of a link's rate as data (~95.6 %), and "
      "MPTCP, whose data segments carry a 28-byte DSS option, 1420 / 1514 "
      "(~93.8 %): against the *nominal* sum no MPTCP flow can reach 95 %. "
      "Against the *TCP-alone* sum MPTCP's ceiling is about 98 %. Links "
      "of different delay (RTT 20 and 80 ms) make the scheduler's job "
      "harder than equal ones. All three proxies leave the scheduling to "
      "the same kernel MPTCP (default scheduler): what differs between "
      "them is only how fast they move the bytes they get.")
    a("")


def render_ttfb(a, data, S, keys):
    tt = data["ttfb"]
    R = S["ttfb"]
    a("### 5. Time to first byte at 50 ms RTT")
    a("")
    a("bench_setup.py's method (and its delays: %g ms one way on each WAN "
      "link, %g ms on srv ↔ dst; measured RTT rtr ↔ srv %.2f ms): %d "
      "fresh connections per system, each a new curl process, %d ms "
      "apart, after %d warm-up requests; time to first byte is curl's "
      "`time_starttransfer` for the 100-byte object from nginx. "
      "bench_setup.py's section shows mpredir's other modes (step by "
      "step, without the pool, Fast Open)."
      % (tt["wan_ms"], tt["inet_ms"], tt.get("rtt_ms", 0), tt["requests"],
         tt["pause_ms"], tt["warmup"]))
    a("")
    med = {k: R[k]["median"] for k in keys}
    a("| system | median | p90 | in RTTs | / direct | vs best peer | "
      "requests above 1.5 RTT |")
    a("|---|---|---|---|---|---|---|")
    for k in keys:
        x = R[k]
        a("| %s | **%.1f ms** | %.1f ms | %.2f | %.2f | %s | %s of %d |" % (
            LABELS[k], x["median"], x["p90"], x["rtts"] or 0,
            x["ratio"] or 0, _peer_ratio(med, k, False),
            _f(x["slow"], "%d", "?"), x["n"]))
    a("")
    a("*vs best peer*: lower is better. mpredir's default configuration "
      "keeps warm connections (handshake and SOCKS method negotiation "
      "done), so a flow costs one round trip, and two when it finds no "
      "warm connection ready (then it connects and pipelines, as "
      "bench_setup.py's *pipelined* row: the requests above 1.5 RTT); "
      "redsocks negotiates step by step (4 round trips); ss-redir "
      "connects on accept and sends its address header with the first "
      "data (2).")
    a("")


def render_noise(a, data, S):
    a("### How noisy these figures are")
    a("")
    m = data["machine"]
    bits = []
    for fig, key, label in (("throughput", "spread", "throughput"),
                            ("throughput", "cpu_spread", "proxy CPU per "
                             "download"),
                            ("flows", "spread", "flows/s (whole core)"),
                            ("flows", "capped_spread", "flows/s (capped)"),
                            ("flows", "per_cpu_spread",
                             "flows per CPU-second")):
        if fig in S:
            v = [x.get(key) for x in S[fig].values()]
            v = [x for x in v if x is not None]
            if v:
                bits.append("%s %.0f-%.0f %%" % (label, min(v), max(v)))
    if "aggregate" in S:
        v = [x["spread"] for sc in S["aggregate"]
             for x in sc["rows"].values() if x["spread"] is not None]
        if v:
            bits.append("aggregate goodput %.0f-%.0f %%" % (min(v), max(v)))
    a("This machine has %s CPUs, and other work (builds, test suites) may "
      "run during the benchmark: before the run the CPUs were %s %% busy "
      "with it, after the run %s %% (load average %s at the start, %s at "
      "the end). The spread of the runs of one system ((max − min) ÷ "
      "median, the range over the systems): %s." % (
          m["nproc"], m.get("background_busy_start", "?"),
          m.get("background_busy_end", "?"), m["loadavg_start"],
          m.get("loadavg_end", "?"), "; ".join(bits) or "one run each"))
    a("")
    bad = [f for f, (_, pr) in (m.get("tcp_pressure") or {}).items() if pr]
    if bad:
        a("**WARNING: the kernel was under TCP memory pressure when these "
          "figures started: %s.** Under pressure every TCP socket on the "
          "machine gets small buffers: their rates are wrong; run again "
          "(`/proc/net/protocols`, TCP *memory* against `net.ipv4.tcp_mem` "
          "%s)." % (", ".join(bad), " ".join(m.get("tcp_mem_limits", []))))
        a("")
    a("What is robust and what is not: CPU time per GB and per flow is "
      "counted per process and moves less with other load (a busy "
      "machine costs cache misses, not CPU time); rates (Gbit/s, flows/s) "
      "fall when other work takes CPU from any process of the chain, so "
      "read them as ratios between systems measured in turn within the "
      "same rounds, not as absolute capacities. A capped row whose proxy "
      "reached its cap measured what that CPU budget buys; other work on "
      "CPU 1 could only have kept it below the cap, which the table "
      "would show (NOT saturated). Memory per idle flow does not depend "
      "on load. Shaped-link goodput depends on tbf and delayemu (which "
      "runs at real-time priority), hardly on load.")
    a("")


# ============================================================ plot
def render_plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    S = summarize(data)
    keys = [k for k in SYSTEMS if k in data["systems"]]
    colors = {"mpredir": "tab:blue", "redsocks": "tab:orange",
              "ss-redir": "tab:green", "direct": "tab:gray"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    ax = axes.flat

    def bars(axis, vals, title, ylabel, fmt="%.2f", note=None, tops=None):
        ks = [k for k in keys if vals.get(k) is not None]
        ys = [vals[k] for k in ks]
        b = axis.bar(range(len(ks)), ys, color=[colors[k] for k in ks])
        axis.set_xticks(range(len(ks)))
        axis.set_xticklabels([LABELS[k].replace(" + ", "\n+ ")
                              .replace(" (", "\n(") for k in ks], fontsize=8)
        for rect, y, k in zip(b, ys, ks):
            axis.text(rect.get_x() + rect.get_width() / 2,
                      max(y, (tops or {}).get(k, y)) * 1.01, fmt % y,
                      ha="center", va="bottom", fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.set_ylabel(ylabel, fontsize=9)
        axis.grid(True, axis="y", alpha=0.3)
        if ys:
            axis.set_ylim(0, max(ys) * 1.18)
        if note:
            axis.text(0.02, 0.97, note, transform=axis.transAxes, fontsize=7,
                      va="top", color="dimgray")

    i = 0
    if "throughput" in S:
        R = S["throughput"]
        bars(ax[0], {k: R[k]["gbit_s"] for k in keys},
             "1. one download, unshaped (%d MiB)" % (
                 data["throughput"]["size"] >> 20), "Gbit/s")
        bars(ax[1], {k: R[k]["gb_per_cpu_s"] for k in keys},
             "1. GB relayed per router CPU-second\n(proxy utime+stime; "
             "direct: kernel, n/a)", "GB / CPU-s")
        i = 2
    if "flows" in S:
        R = S["flows"]
        axis = ax[i]
        ks = [k for k in keys]
        x = range(len(ks))
        core = [R[k]["rate"] or 0 for k in ks]
        capd = [R[k]["capped_rate"] or 0 for k in ks]
        axis.bar([j - 0.2 for j in x], core, width=0.4, label="whole core",
                 color=[colors[k] for k in ks], alpha=0.55)
        axis.bar([j + 0.2 for j in x], capd, width=0.4,
                 label="capped at %d %%" % data["flows"]["cap_pct"],
                 color=[colors[k] for k in ks], hatch="//",
                 edgecolor="black")
        for j, (c, d) in enumerate(zip(core, capd)):
            axis.text(j - 0.2, c, "%.0f" % c, ha="center", va="bottom",
                      fontsize=7)
            if d:
                axis.text(j + 0.2, d, "%.0f" % d, ha="center", va="bottom",
                          fontsize=7)
        axis.set_xticks(list(x))
        axis.set_xticklabels([LABELS[k].replace(" + ", "\n+ ")
                              .replace(" (", "\n(") for k in ks], fontsize=8)
        axis.set_title("2. new flows per second (proxy on CPU 1)",
                       fontsize=10)
        axis.set_ylabel("flows/s", fontsize=9)
        axis.legend(fontsize=7, loc="upper right")
        axis.grid(True, axis="y", alpha=0.3)
        axis.set_ylim(0, max(core + capd + [1]) * 1.2)
        i += 1
    if "idle" in S:
        R = S["idle"]
        bars(ax[i], {k: R[k]["bytes_per_flow"] for k in keys if k in R},
             "3. proxy RSS per idle flow", "bytes", fmt="%.0f",
             note="flows: " + ", ".join("%s %d" % (k, R[k]["open"])
                                        for k in keys if k in R))
        ax[i].axhline(TARGETS["mem"], color="red", linewidth=1)
        ax[i].text(ax[i].get_xlim()[1], TARGETS["mem"], " 1 KiB",
                   color="red", fontsize=7, va="bottom", ha="right")
        i += 1
    if "aggregate" in S:
        axis = ax[i]
        scs = S["aggregate"]
        w = 0.8 / max(1, len(keys))
        for j, k in enumerate(keys):
            ys = [100 * (sc["rows"][k]["of_alone"] or 0) for sc in scs]
            xs = [n + (j - (len(keys) - 1) / 2) * w for n in range(len(scs))]
            axis.bar(xs, ys, width=w, color=colors[k], label=LABELS[k])
            for xx, yy in zip(xs, ys):
                axis.text(xx, yy, "%.0f" % yy, ha="center", va="bottom",
                          fontsize=7)
        axis.axhline(100 * TARGETS["agg"], color="red", linewidth=1)
        axis.set_xticks(range(len(scs)))
        axis.set_xticklabels([scenario_label(sc["links"], "\n")
                              for sc in scs], fontsize=8)
        axis.set_ylabel("% of the links' TCP-alone sum", fontsize=9)
        axis.set_title("4. one download over two links", fontsize=10)
        axis.legend(fontsize=7, loc="lower right")
        axis.set_ylim(0, 115)
        axis.grid(True, axis="y", alpha=0.3)
        i += 1
    if "ttfb" in S:
        R = S["ttfb"]
        bars(ax[i], {k: R[k]["median"] for k in keys},
             "5. time to first byte, RTT %.0f ms\n(bar: median, line: p90)"
             % data["ttfb"].get("rtt_ms", 50), "ms", fmt="%.1f",
             tops={k: R[k]["p90"] for k in R})
        for j, k in enumerate([k for k in keys if k in R]):
            ax[i].plot([j], [R[k]["p90"]], marker="_", color="black",
                       markersize=20)
        i += 1
    for j in range(i, 6):
        ax[j].axis("off")
    fig.suptitle("mpredir, redsocks, shadowsocks, direct (%s, %s CPUs, %s)"
                 % (data["machine"]["kernel"], data["machine"]["nproc"],
                    data["machine"]["date"]), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ============================================================ document
def write_doc(section, path=DOC):
    """Put section between BEGIN and END in path, keeping the rest; without
    the markers, append it."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    block = BEGIN + "\n" + section.rstrip("\n") + "\n" + END
    i, j = text.find(BEGIN), text.find(END)
    if 0 <= i < j:
        text = text[:i] + block + text[j + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--only", help="figures, comma-separated: " +
                    ",".join(FIGURES))
    ap.add_argument("--systems", help="systems, comma-separated: " +
                    ",".join(SYSTEMS))
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and one run (development)")
    ap.add_argument("--json", help="save the raw data to this file")
    ap.add_argument("--from-json", help="render this data; measure nothing")
    ap.add_argument("--no-doc", action="store_true",
                    help="print only; do not touch doc/")
    a = ap.parse_args(argv)

    if a.from_json:
        with open(a.from_json) as f:
            data = json.load(f)
    else:
        if os.geteuid() != 0:
            sys.exit("bench_perf.py: needs root (network namespaces)")
        figs = list(FIGURES)
        if a.only:
            figs = [x.strip() for x in a.only.split(",") if x.strip()]
            bad = [x for x in figs if x not in FIGURES]
            if bad:
                sys.exit("unknown figures %s (known: %s)" % (
                    ", ".join(bad), ", ".join(FIGURES)))
        systems = list(SYSTEMS)
        if a.systems:
            systems = [x.strip() for x in a.systems.split(",") if x.strip()]
            bad = [x for x in systems if x not in SYSTEMS]
            if bad:
                sys.exit("unknown systems %s (known: %s)" % (
                    ", ".join(bad), ", ".join(SYSTEMS)))
        if a.only or a.systems or a.quick:
            a.no_doc = True
        for tool in ("wrk", "nginx", "redsocks", "ss-redir", "ss-server",
                     "danted", "mptcpize", "curl", "taskset"):
            if shutil.which(tool) is None and \
                    not os.path.exists("/usr/sbin/" + tool):
                sys.exit("bench_perf.py: %s missing (make deps)" % tool)
        if not os.access(mpredir_daemon.binary_path(), os.X_OK):
            sys.exit("bench_perf.py: %s not built (make)"
                     % mpredir_daemon.binary_path())
        delay.binary_path()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        T.install_sigterm_cleanup()
        params = dict(QUICK if a.quick else FULL)
        try:
            data = collect(figs, systems, params)
        except KeyboardInterrupt:
            sys.exit("bench_perf.py: interrupted (cleaned up)")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
    section = render_section(data, os.path.basename(PLOT))
    if a.no_doc:
        sys.stdout.write(section)
        return 0
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        sys.exit("bench_perf.py: matplotlib missing (make deps)")
    render_plot(data, PLOT)
    write_doc(section)
    if not a.from_json:
        with open(RAW, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    log("wrote %s" % ", ".join(os.path.relpath(x, T.REPO_ROOT) for x in
                                (DOC, PLOT) + (() if a.from_json else (RAW,))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
