#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""mpredir benchmarks: `make bench` (root) measures, then writes
doc/benchmarks.md.

Two halves, kept apart:

* measuring: each benchmark is a function `bench_NAME(ctx) -> [Result]`,
  registered in BENCHMARKS. It runs in a shared throwaway topology
  (test/lib: Topology with both WAN links shaped), starts and stops what it
  needs itself (so benchmarks do not depend on each other's order), and
  returns plain data: one Result per table row, each with its samples.
* rendering: render_markdown(data) turns that data (JSON-serialisable,
  `--json` saves it, `--from-json` renders it again without measuring)
  into the markdown document.

To add a benchmark: write bench_NAME(ctx) returning Results (use
ctx.sample() around each transfer: it records time, WAN byte counters and
MPTCP counters), and add it to BENCHMARKS.

Usage: bench.py [--only NAME[,NAME...]] [--runs N] [-o FILE|-] [--json FILE]
       bench.py --from-json FILE [-o FILE|-]
       bench.py --list
A full run writes doc/benchmarks.md; with --only the table goes to stdout
unless -o is given (so a partial run never replaces the document).
"""

import argparse
import dataclasses
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

import clients  # noqa: E402
import mpredir_daemon  # noqa: E402
import socks_servers  # noqa: E402
import topo as T  # noqa: E402

DOC = os.path.join(T.REPO_ROOT, "doc", "benchmarks.md")
LINK_MBIT = 20              # each WAN link, tbf
SIZE = 64 << 20             # bytes per transfer
RUNS = 3
IPERF_PORT = 5201
# mpredir's log line at the end of each download (log level debug)
FLOW_RX = r"flow %s:\d+ -> %s:%d via \S+ \(mptcp\): .*: done" % (
    re.escape(T.LAN4), re.escape(T.DST4), T.HTTP_PORT)
CAPABLE_RX = "MPTcpExtMPCapableSYNRX"
JOIN_RX = "MPTcpExtMPJoinSynRx"


class BenchError(RuntimeError):
    pass


# ===================================================================== data
@dataclasses.dataclass
class Sample:
    """One transfer."""
    bytes: int
    seconds: float
    mbit_s: float
    wan_rx: dict        # WAN interface -> bytes received by rtr
    wan_tx: dict        # WAN interface -> bytes sent by rtr
    mptcp: dict         # srv counters: {"capable": n, "joins": n}
    tbf_drops: int = 0  # packets dropped by the WAN tbf qdiscs (both ends)


@dataclasses.dataclass
class Result:
    """One table row: a measurement repeated ctx.runs times."""
    key: str
    title: str
    path: str
    samples: list
    ceiling: bool = False   # the reference the other rows are compared to
    notes: list = dataclasses.field(default_factory=list)

    @property
    def median(self):
        return statistics.median(s["mbit_s"] if isinstance(s, dict)
                                 else s.mbit_s for s in self.samples)


class Context:
    """What a benchmark gets: the topology, its SOCKS servers, parameters."""

    def __init__(self, topology, runs=RUNS, size=SIZE):
        self.topo = topology
        self.runs = runs
        self.size = size
        self._socks = {}

    def socks(self, name="dante-none"):
        """A SocksFarm server (see test/lib/socks_servers.py), started on
        first use. Only the no-auth ones: the user/password servers would
        need a system account."""
        if name not in self._socks:
            for n, cls, port, auth in socks_servers.SocksFarm.SPECS:
                if n == name and not auth:
                    self._socks[name] = cls(self.topo, n, port).start()
                    break
            else:
                raise BenchError("no such no-auth SOCKS server: %s" % name)
        return self._socks[name]

    def flush_tcp_metrics(self):
        """Forget cached per-destination TCP metrics (ssthresh, RTT), so
        that each run starts like the first."""
        for ns in T.ROLES:
            self.topo.run(ns, ["ip", "tcp_metrics", "flush", "all"],
                          check=False)

    def sample(self, transfer):
        """Run transfer() -> (bytes, seconds); return a Sample with the
        WAN byte counters in rtr and the MPTCP counters of srv."""
        self.flush_tcp_metrics()
        time.sleep(0.5)  # let the tbf queues drain
        wan0, nst0 = self.topo.link_bytes("rtr"), self.topo.nstat("srv")
        drops0 = self.topo.qdisc_drops()
        nbytes, seconds = transfer()
        wan1, nst1 = self.topo.link_bytes("rtr"), self.topo.nstat("srv")
        drops1 = self.topo.qdisc_drops()
        d = T.Topology.delta(nst0, nst1, CAPABLE_RX, JOIN_RX)
        s = Sample(bytes=nbytes, seconds=round(seconds, 3),
                   mbit_s=round(nbytes * 8 / 1e6 / seconds, 2),
                   wan_rx={w: wan1[w][0] - wan0[w][0] for w in T.WAN_IFS},
                   wan_tx={w: wan1[w][1] - wan0[w][1] for w in T.WAN_IFS},
                   mptcp={"capable": d[CAPABLE_RX], "joins": d[JOIN_RX]},
                   tbf_drops=sum(drops1[k] - drops0[k] for k in drops1))
        print("    %6.2f Mbit/s  %6.2f s  received %s, %d tbf drops" % (
            s.mbit_s, s.seconds, " ".join(
                "%s %.1f MB" % (w, b / 1e6) for w, b in s.wan_rx.items()),
            s.tbf_drops), flush=True)
        return s

    def fetch(self, url):
        """A transfer: curl url in lan, checked against the expected
        content (sha256)."""
        def transfer():
            r = clients.fetch(self.topo, "lan", url, timeout=300)
            if not r.ok(self.size):
                raise BenchError("download of %s failed: curl exit %d, HTTP "
                                 "%d, %d bytes, sha256 %s: %s" % (
                                     url, r.rc, r.http_code, r.size,
                                     "ok" if r.sha256 == clients.expected_sha256(
                                         self.size) else "WRONG", r.stderr))
            return r.size, r.elapsed
        return transfer


# =============================================================== benchmarks
def bench_iperf3_mptcp(ctx):
    """The physical ceiling: iperf3 over MPTCP between rtr and srv, on the
    same links, no proxy (download direction: the server sends, -R)."""
    topo = ctx.topo
    server = topo.spawn("srv", ["mptcpize", "run", "iperf3", "-s", "-B",
                                T.SERVICE4, "-p", str(IPERF_PORT)],
                        "iperf3-server")
    topo.wait_for_port("srv", T.SERVICE4, IPERF_PORT, proc=server)

    def transfer():
        r = topo.run("rtr", ["mptcpize", "run", "iperf3", "-c", T.SERVICE4,
                             "-p", str(IPERF_PORT), "-R", "-n", str(ctx.size),
                             "-J"], check=False, timeout=300)
        try:
            end = json.loads(r.stdout)["end"]["sum_received"]
        except (ValueError, KeyError):
            raise BenchError("iperf3 failed (exit %d): %s %s" % (
                r.returncode, r.stdout[-2000:], r.stderr)) from None
        if r.returncode != 0 or end["bytes"] < ctx.size:
            raise BenchError("iperf3: exit %d, %d bytes received" % (
                r.returncode, end["bytes"]))
        return end["bytes"], end["seconds"]

    try:
        samples = [ctx.sample(transfer) for _ in range(ctx.runs)]
    finally:
        server.stop()
    _expect_mptcp(samples, "iperf3")
    return [Result("iperf3-mptcp", "iperf3 over MPTCP (ceiling)",
                   "`mptcpize run iperf3 -c %s -R -n %d` in rtr → srv, "
                   "no proxy" % (T.SERVICE4, ctx.size),
                   samples, ceiling=True,
                   notes=["rate as received (iperf3 `end.sum_received`)"])]


def bench_mpredir(ctx):
    """The product: a LAN download through the redirect, mpredir, one MPTCP
    connection to dante (no auth) and on to the web server."""
    dante = ctx.socks("dante-none")
    # debug: one log line per flow, to check that each went over MPTCP
    cfg = mpredir_daemon.make_config([dante], level="debug")
    nst0 = ctx.topo.nstat("srv")
    m = mpredir_daemon.Mpredir(ctx.topo, cfg, name="mpredir-bench").start()
    try:
        fetch = ctx.fetch(clients.bytes_url(T.DST4, ctx.size))
        samples = [ctx.sample(fetch) for _ in range(ctx.runs)]
        # the end line is written just after curl has seen its EOF
        def flows():
            return len(re.findall(FLOW_RX, m.log()))
        try:
            ctx.topo.wait_until(lambda: flows() >= ctx.runs, timeout=5.0)
        except TimeoutError:
            pass
    finally:
        m.stop()
    nst = T.Topology.delta(nst0, ctx.topo.nstat("srv"), CAPABLE_RX, JOIN_RX)
    if flows() != ctx.runs:
        raise BenchError("mpredir: %d of %d downloads logged as MPTCP flows:"
                         "\n%s" % (flows(), ctx.runs, m.log(tail=20)))
    # Per-run MPTCP counters mean little here: mpredir keeps warm spare
    # connections (its pool) and replaces them. The WAN split shows that
    # each download used both links.
    for s in samples:
        if min(s.wan_rx.values()) < sum(s.wan_rx.values()) // 10:
            raise BenchError("mpredir: a download did not use both links: "
                             "%s" % s.wan_rx)
    return [Result("mpredir", "mpredir, one LAN download",
                   "curl in lan → nft redirect → mpredir → MPTCP over wan1 + "
                   "wan2 → dante (no auth, mptcpize) → httpd in dst",
                   samples,
                   notes=["each download logged by mpredir as an MPTCP flow; "
                          "srv accepted %d MPTCP connections and %d joins "
                          "while mpredir ran (the downloads' and the warm "
                          "spares mpredir opens in advance)"
                          % (nst[CAPABLE_RX], nst[JOIN_RX])])]


def bench_direct_wan1(ctx):
    """What one link gives: the same download without mpredir, routed over
    wan1 and masqueraded (the topology's direct path)."""
    fetch = ctx.fetch(clients.bytes_url(T.DST4, ctx.size))
    samples = [ctx.sample(fetch) for _ in range(ctx.runs)]
    for s in samples:
        if s.wan_rx["wan2"] > s.wan_rx["wan1"] // 100:
            raise BenchError("direct path: %d bytes over wan2" %
                             s.wan_rx["wan2"])
    return [Result("direct-wan1", "direct, one link (no proxy)",
                   "curl in lan → rtr routes over wan1 (masquerade) → "
                   "httpd in dst; plain TCP", samples)]


def _expect_mptcp(samples, what):
    for s in samples:
        if s.mptcp["capable"] < 1 or s.mptcp["joins"] < 1:
            raise BenchError("%s: MPTCP not used as expected: %s" % (
                what, s.mptcp))


# name -> function; run in this order (the ceiling first).
BENCHMARKS = {
    "iperf3-mptcp": bench_iperf3_mptcp,
    "mpredir": bench_mpredir,
    "direct-wan1": bench_direct_wan1,
}


# =============================================================== machine
def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


def machine_info(topology):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    iperf = subprocess.run(["iperf3", "--version"], capture_output=True,
                           text=True).stdout.split("\n")[0].strip()
    qd = topology.run("srv", ["tc", "qdisc", "show", "dev", "wan1"]).stdout
    qd = qd.split()
    tbf = " ".join(qd[qd.index("rate"):]) if "rate" in qd else "?"

    def ns_sysctl(key):
        return topology.run("srv", ["sysctl", "-n", key],
                            check=False).stdout.strip() or "?"

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "congestion_control": ns_sysctl("net.ipv4.tcp_congestion_control"),
        "mptcp_scheduler": ns_sysctl("net.mptcp.scheduler"),
        "tbf": tbf,
        "iperf3": iperf,
        "loadavg_start": _read("/proc/loadavg").split()[0],
    }


def collect(names, runs, size):
    """Measure: build the topology, run the chosen benchmarks; return the
    data dict that render_markdown() takes."""
    results = []
    topo = T.Topology()
    try:
        topo.setup()
        topo.shape_wan(rate_mbit=LINK_MBIT)
        machine = machine_info(topo)
        ctx = Context(topo, runs=runs, size=size)
        for name in names:
            print("%s (%d x %d MiB)" % (name, runs, size >> 20), flush=True)
            for r in BENCHMARKS[name](ctx):
                print("  %s: median %.2f Mbit/s" % (r.key, r.median),
                      flush=True)
                results.append(dataclasses.asdict(r))
        machine["loadavg_end"] = _read("/proc/loadavg").split()[0]
    finally:
        # a second Ctrl-C must not cut the cleanup short
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            topo.teardown()
        finally:
            signal.signal(signal.SIGINT, old)
    return {"machine": machine,
            "params": {"link_mbit": LINK_MBIT, "links": len(T.WAN_IFS),
                       "size": size, "runs": runs},
            "results": results}


# =============================================================== markdown
HEADER = """\
## Throughput: one download over two links (`make bench`)

Generated by `make bench` (root, about 3 minutes): `test/bench/bench.py`
rewrites this section, between its `<!-- bench:begin/end -->` markers,
on each run (other sections of this file are kept); this introduction is
the `HEADER` text in that script. `bench.py --only mpredir` measures one
row and prints it without touching this file; `bench.py --list` names
the benchmarks.

### Set-up

The end-to-end test topology (`test/lib/topo.py`): four network
namespaces on one machine, veth links, no emulated delay.

    lan ── rtr ══ wan1 (20 Mbit/s) ══ srv ── dst
    curl   nft      wan2 (20 Mbit/s)  dante   httpd.py
           mpredir                    (mptcpize)

Both WAN links are shaped with `tbf` at 20 Mbit/s in each direction, on
both ends (`Topology.shape_wan`: burst 16 KiB, latency 50 ms, i.e. a
~140 KB queue). rtr has one MPTCP endpoint (`10.1.2.1 dev wan2 subflow`)
and source routing per WAN, so an MPTCP connection from rtr starts on
wan1 and adds a subflow on wan2.

### What is measured

Each transfer moves 64 MiB from the Internet side to the LAN side (a
download); each row is repeated and the median is reported.

* **iperf3 over MPTCP**: `mptcpize run iperf3 -s` in srv and
  `mptcpize run iperf3 -c 10.9.0.1 -R` in rtr: raw MPTCP over the two
  links, no proxy. The most MPTCP gets out of these links: the ceiling.
* **mpredir**: `curl http://198.18.0.2/bytes/N` in lan with no proxy
  setting; the nft ruleset redirects it to mpredir in rtr, which relays it
  over one MPTCP connection to dante (no auth, under `mptcpize`) in srv,
  which fetches from httpd in dst. The body's sha256 is checked.
* **direct, one link**: the same download with mpredir stopped: rtr
  routes it over wan1 only (masqueraded), plain TCP. What one link gives.

The WAN split counts the bytes received on rtr's `wan1` and `wan2`
(interface counters, headers included); tbf drops are the packets the
four WAN tbf qdiscs dropped during each transfer (a full queue).

Reading the figures: tbf counts whole Ethernet frames. With MTU 1500 a
TCP segment carries 1448 bytes of data in a 1514-byte frame (timestamps
on), an MPTCP segment 1420 (the DSS option takes 28 more), so the most
data the links can carry is ~19.1 Mbit/s per link for TCP and
~37.5 Mbit/s over both links for MPTCP: about 94 % of the 40 Mbit/s sum.

The TCP congestion control matters. The namespaces inherit the host's
default (see the machine table; a namespace may not choose cubic when the
host does not allow it). With bbr, each MPTCP subflow overshoots its
~140 KB tbf queue: thousands of drops per transfer, and runs of the same
row differ by 2-4 %, so mpredir and the iperf3 ceiling are equal within
noise when their medians are that close. With cubic (checked by hand:
`iperf3 -C cubic`, 3 runs) raw MPTCP got a steady 37.4-37.5 Mbit/s, the
framing limit, with about 15 drops per transfer.

With equal links and no delay this is the easy case for MPTCP; links of
different rates and delays are harder and not measured here yet.
"""


def _mb(n):
    return "%.1f" % (n / 1e6)


def _split(samples):
    """Median share of received bytes per WAN interface, as 'a % / b %'."""
    shares = {}
    for s in samples:
        total = sum(s["wan_rx"].values()) or 1
        for w, b in s["wan_rx"].items():
            shares.setdefault(w, []).append(100 * b / total)
    return " / ".join("%.0f %%" % statistics.median(v)
                      for v in shares.values())


def render_markdown(data):
    """The whole document from collect()'s data. Pure: no measuring."""
    p, m = data["params"], data["machine"]
    links = p["link_mbit"] * p["links"]
    results = [Result(**r) for r in data["results"]]
    ceiling = next((r for r in results if r.ceiling), None)
    out = [HEADER]
    out.append("### Machine and run\n")
    out.append("| | |\n|---|---|")
    for k, v in (("date", m["date"]), ("kernel (`uname -r`)", m["kernel"]),
                 ("CPU", m["cpu"]), ("nproc", m["nproc"]),
                 ("TCP congestion control", m["congestion_control"]),
                 ("MPTCP scheduler", m["mptcp_scheduler"]),
                 ("WAN shaping (tbf, each link, each way)", m["tbf"]),
                 ("iperf3", m["iperf3"]),
                 ("load average (1 min), start / end", "%s / %s" % (
                     m.get("loadavg_start", "?"), m.get("loadavg_end", "?"))),
                 ("transfer", "%d MiB, %d run%s per row" % (
                     p["size"] >> 20, p["runs"],
                     "" if p["runs"] == 1 else "s"))):
        out.append("| %s | %s |" % (k, v))
    out.append("")

    out.append("### Results\n")
    out.append("Throughput of the data (payload), Mbit/s = 10^6 bit/s.\n")
    out.append("| measurement | runs (Mbit/s) | median | of the %d Mbit/s "
               "links | of the MPTCP ceiling | received wan1 / wan2 | "
               "tbf drops |" % links)
    out.append("|---|---|---|---|---|---|---|")
    for r in results:
        med = r.median
        vs_ceiling = ("%.0f %%" % (100 * med / ceiling.median)
                      if ceiling else "n/a")
        out.append("| %s | %s | **%.1f** | %.0f %% | %s | %s | %s |" % (
            r.title, ", ".join("%.1f" % s["mbit_s"] for s in r.samples),
            med, 100 * med / links, vs_ceiling, _split(r.samples),
            ", ".join(str(s.get("tbf_drops", "?")) for s in r.samples)))
    out.append("")
    for r in results:
        out.append("* %s: %s%s" % (r.title, r.path, "".join(
            "; " + n for n in r.notes)))
    out.append("")

    for r in results:
        if r.key != "mpredir":
            continue
        out.append("### mpredir download, per run\n")
        out.append("Bytes received on rtr's WAN interfaces during each "
                   "download (MB = 10^6 bytes, frames with their headers).\n")
        out.append("| run | Mbit/s | seconds | wan1 MB | wan2 MB | "
                   "wan1 share | tbf drops |")
        out.append("|---|---|---|---|---|---|---|")
        for i, s in enumerate(r.samples, 1):
            rx = s["wan_rx"]
            total = sum(rx.values()) or 1
            out.append("| %d | %.1f | %.2f | %s | %s | %.1f %% | %s |"
                       % (i, s["mbit_s"], s["seconds"], _mb(rx["wan1"]),
                          _mb(rx["wan2"]), 100 * rx["wan1"] / total,
                          s.get("tbf_drops", "?")))
        out.append("")
    return "\n".join(out)


# =============================================================== document
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
_BLOCK_RX = re.compile(r"(?s)<!-- ([\w-]+):begin -->.*?<!-- \1:end -->")


def write_doc(section, path=DOC):
    """Put section between BEGIN and END in path, keeping the rest of the
    file (other generators, e.g. bench_setup.py, own their own marked
    sections). Without our markers (a new file, or one written before
    they existed): "# Benchmarks", our section, then every other marked
    section of the old file; unmarked old text is dropped."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    block = "%s\n%s\n%s" % (BEGIN, section.strip("\n"), END)
    i, j = text.find(BEGIN), text.find(END)
    if 0 <= i < j:
        text = text[:i] + block + text[j + len(END):]
    else:
        others = [m.group(0) for m in _BLOCK_RX.finditer(text)]
        text = "\n\n".join(["# Benchmarks", block] + others) + "\n"
    if os.path.exists(path) and not os.path.isfile(path):
        with open(path, "w") as f:  # e.g. -o /dev/null: never replace it
            f.write(text)
        return
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


# =============================================================== main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated benchmarks (--list)")
    ap.add_argument("--runs", type=int, default=RUNS,
                    help="repetitions per row (default %d)" % RUNS)
    ap.add_argument("-o", "--output",
                    help="markdown output, '-' for stdout (default: %s for "
                    "a full run, stdout with --only)"
                    % os.path.relpath(DOC, T.REPO_ROOT))
    ap.add_argument("--json", help="also save the raw data to this file")
    ap.add_argument("--from-json", help="render this saved data; measure "
                    "nothing")
    ap.add_argument("--list", action="store_true",
                    help="list the benchmarks and exit")
    a = ap.parse_args(argv)

    if a.list:
        for n, f in BENCHMARKS.items():
            print("%-14s %s" % (n, " ".join(f.__doc__.split())))
        return 0
    names = list(BENCHMARKS)
    if a.only:
        names = [n.strip() for n in a.only.split(",") if n.strip()]
        bad = [n for n in names if n not in BENCHMARKS]
        if bad:
            ap.error("unknown benchmark(s) %s; known: %s" % (
                ", ".join(bad), ", ".join(BENCHMARKS)))
    output = a.output or ("-" if a.only else DOC)

    if a.from_json:
        with open(a.from_json) as f:
            data = json.load(f)
    else:
        if os.geteuid() != 0:
            print("bench.py: needs root (network namespaces)", file=sys.stderr)
            return 1
        if not os.access(mpredir_daemon.binary_path(), os.X_OK):
            print("bench.py: %s not built (run `make bench`)"
                  % mpredir_daemon.binary_path(), file=sys.stderr)
            return 1
        T.install_sigterm_cleanup()
        try:
            data = collect(names, a.runs, SIZE)
        except KeyboardInterrupt:
            print("bench.py: interrupted (cleaned up)", file=sys.stderr)
            return 1
        except Exception as e:  # noqa: BLE001 - cleaned up; report it
            print("bench.py: FAILED: %s: %s" % (type(e).__name__, e),
                  file=sys.stderr)
            return 1
        if a.json:
            with open(a.json, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")

    md = render_markdown(data)
    if output == "-":
        sys.stdout.write(md)
    else:
        write_doc(md, output)
        print("wrote %s" % output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
