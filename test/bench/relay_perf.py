#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
r"""The relay's cost, measured through the daemon (root; its own throwaway
topology of test/lib/topo.py, links unshaped):

  relay_perf.py throughput [--bin NAME=PATH ...] [--size MiB] [--runs N]
                           [--dir down,up] [--rate MBIT] [--shape MBIT]
                           [--tcp]
      one iperf3 flow LAN -> dst:5201 through the redirect, mpredir and
      dante (under mptcpize): per run the rate iperf3 saw and the
      daemon's CPU time (utime+stime from /proc/PID/stat, and the
      scheduler's figure from /proc/PID/task/*/schedstat) per GB
      relayed. With several binaries, runs alternate between them (A B A
      B ...) so that the other load of the machine spreads over both.
      --rate caps iperf3's own rate, --shape the WAN links (tbf): small
      reads instead of full ones. --tcp: upstream over TCP
      (upstream.mptcp false), where the relay splices.

  relay_perf.py idle [--bin NAME=PATH ...] [--flows N] [--parallel N]
      N idle flows (LAN -> dst:25, a server that speaks first and then
      waits), through a minimal asyncio SOCKS5 server under MPTCP in srv:
      the daemon's RSS before and with the N flows open, per flow. Each
      flow takes 2 descriptors in the daemon and in the SOCKS server:
      N must fit the hard RLIMIT_NOFILE (9,900 with 20,000). --parallel:
      connections being opened at once (a burst of set-ups leaves heap
      holes behind: compare 32 and 1000).

Figures go to stdout (one line per run, then a summary) and, with
--json FILE, to a file. The default binary is redirector/mpredir.
Timing figures on a shared machine are noisy: repeat (--runs).

The relay's choices are compile-time constants (redirector/relay.c), so
variants to compare are separate builds, e.g. copy only, and splice for
MPTCP sockets too:

  rm redirector/mpredir; make BUILD=build/copy \
      CFLAGS="-O2 -g -DRELAY_SPLICE_AFTER=256" redirector/mpredir
  mv redirector/mpredir /tmp/mpredir-copy
  make BUILD=build/msplice CFLAGS="-O2 -g -DRELAY_SPLICE_MPTCP=1" \
      redirector/mpredir
  mv redirector/mpredir /tmp/mpredir-msplice
  make    # the normal build again
  relay_perf.py throughput --bin copy=/tmp/mpredir-copy \
      --bin auto=redirector/mpredir --bin msplice=/tmp/mpredir-msplice
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import mpredir_daemon  # noqa: E402
import socks_servers  # noqa: E402
import topo as T  # noqa: E402

IPERF_PORT = 5201
IDLE_SOCKS_PORT = 1090
CLK_TCK = os.sysconf("SC_CLK_TCK")
GB = 1e9

# ---------------------------------------------------------------- helpers


def cpu_of(pid):
    """(utime+stime seconds, scheduler run time seconds) of a process, all
    its threads (the workers) included."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])   # utime, stime
    ns = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                ns += int(f.read().split()[0])
        except OSError:     # a thread that just ended
            pass
    return ticks / CLK_TCK, ns / 1e9


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def parse_bins(specs):
    if not specs:
        return [("mpredir", mpredir_daemon.binary_path())]
    out = []
    for s in specs:
        name, _, path = s.partition("=")
        if not path:
            name, path = os.path.basename(s), s
        path = os.path.abspath(path)
        if not os.access(path, os.X_OK):
            sys.exit("not an executable: %s" % path)
        out.append((name, path))
    return out


# ---------------------------------------------------------------- throughput


def iperf_once(topo, direction, size, rate_mbit, tries=3):
    """One iperf3 transfer LAN -> dst through the redirect: (bytes
    received, Mbit/s). Retried when iperf3 itself reports an error."""
    argv = ["iperf3", "-c", T.DST4, "-p", str(IPERF_PORT), "-n", str(size),
            "-J", "--connect-timeout", "5000"]
    if direction == "down":
        argv.append("-R")
    if rate_mbit:
        argv += ["-b", "%dM" % rate_mbit]
    for attempt in range(tries):
        r = topo.run("lan", argv, check=False, timeout=600)
        try:
            end = json.loads(r.stdout)["end"]
            recv = end["sum_received"]
            return recv["bytes"], recv["bits_per_second"] / 1e6
        except (ValueError, KeyError):
            err = r.stdout[-2000:] + r.stderr[-2000:]
            time.sleep(1)
    raise RuntimeError("iperf3 failed %d times: %s" % (tries, err))


def throughput(topo, bins, size, runs, directions, rate_mbit, level, mptcp,
               buffers=(0,)):
    dante = socks_servers.DanteServer(topo, "dante-none", 1080).start()
    iperf = topo.spawn("dst", ["iperf3", "-s", "-p", str(IPERF_PORT)],
                       "iperf3-server")
    topo.wait_for_port("dst", None, IPERF_PORT, proc=iperf)
    rows = []
    try:
        daemons = {}
        for name, path in bins:
            for buf in buffers:
                relay = {"buffer_size": buf} if buf else {}
                cfg = mpredir_daemon.make_config(
                    [dante], level=level, mptcp=mptcp, relay=relay,
                    upstream={"pool": {"size": 0}})
                key = name + ("@%dk" % (buf >> 10) if buf else "")
                daemons[key] = (path, cfg)
        for run in range(runs):
            for direction in directions:
                for name, (path, cfg) in daemons.items():
                    m = mpredir_daemon.Mpredir(topo, cfg, binary=path,
                                               name="mpredir-" + name)
                    m.start()
                    try:
                        for ns in T.ROLES:
                            topo.run(ns, ["ip", "tcp_metrics", "flush", "all"],
                                     check=False)
                        c0, s0 = cpu_of(m.pid)
                        t0 = time.monotonic()
                        nbytes, mbit = iperf_once(topo, direction, size,
                                                  rate_mbit)
                        wall = time.monotonic() - t0
                        c1, s1 = cpu_of(m.pid)
                    finally:
                        m.stop()
                    row = {"bin": name, "dir": direction, "run": run,
                           "bytes": nbytes, "mbit_s": round(mbit, 1),
                           "wall_s": round(wall, 2),
                           "cpu_s": round(c1 - c0, 2),
                           "cpu_s_per_gb": round((c1 - c0) / (nbytes / GB), 3),
                           "sched_s_per_gb": round((s1 - s0) / (nbytes / GB),
                                                   3)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        iperf.stop()
        dante.stop()
    print("\nmedians (runs: %d, %d MiB each):" % (runs, size >> 20))
    print("%-16s %-5s %10s %12s %14s" % ("binary", "dir", "Mbit/s",
                                         "cpu s/GB", "sched s/GB"))
    summary = []
    for name in daemons:
        for direction in directions:
            sel = [r for r in rows
                   if r["bin"] == name and r["dir"] == direction]
            med = {k: statistics.median(r[k] for r in sel)
                   for k in ("mbit_s", "cpu_s_per_gb", "sched_s_per_gb")}
            summary.append(dict(bin=name, dir=direction, **med))
            print("%-16s %-5s %10.1f %12.3f %14.3f" % (
                name, direction, med["mbit_s"], med["cpu_s_per_gb"],
                med["sched_s_per_gb"]))
    return {"rows": rows, "summary": summary}


# ---------------------------------------------------------------- idle flows

# srv: SOCKS5 (no auth, CONNECT) over MPTCP, asyncio: holds many idle
# connections cheaply. SO_REUSEPORT: several processes may share the load
# (each flow takes 2 descriptors here).
TINY_SOCKS = r"""
import asyncio, ipaddress, resource, socket, struct, sys
_h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (_h, _h))
addr, port = sys.argv[1], int(sys.argv[2])

async def pump(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
        w.write_eof()
    except (OSError, RuntimeError):
        w.close()

async def client(r, w):
    uw = None
    try:
        ver, n = await r.readexactly(2)
        await r.readexactly(n)
        w.write(b"\x05\x00")
        ver, cmd, _, atyp = await r.readexactly(4)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await r.readexactly(4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(await r.readexactly(16)))
        else:
            host = (await r.readexactly((await r.readexactly(1))[0])).decode()
        dport = struct.unpack("!H", await r.readexactly(2))[0]
        ur, uw = await asyncio.open_connection(host, dport)
        w.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        await asyncio.gather(pump(r, uw), pump(ur, w))
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        w.close()
        if uw:
            uw.close()

async def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # several processes may share the port (test/load/load.py)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((addr, port))
    s.listen(4096)
    srv = await asyncio.start_server(client, sock=s, backlog=4096)
    await srv.serve_forever()

asyncio.run(main())
"""

# dst: sends a banner at once, then echoes; asyncio.
BANNER_SERVER = r"""
import asyncio, resource, sys
_h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (_h, _h))

async def client(r, w):
    w.write(b"220 relay-perf banner\r\n")
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    except OSError:
        pass
    w.close()

async def main():
    srv = await asyncio.start_server(client, None, int(sys.argv[1]),
                                     backlog=4096)
    await srv.serve_forever()

asyncio.run(main())
"""

# lan: open N connections (a few at a time), each until its banner came;
# print "open N", then hold them until stdin closes.
HOLD_CLIENT = r"""
import asyncio, resource, sys
_h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (_h, _h))
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []

async def one(sem):
    async with sem:
        for attempt in range(5):
            try:
                r, w = await asyncio.open_connection(dst, port)
                line = await asyncio.wait_for(r.readline(), 20)
                if line.startswith(b"220"):
                    held.append(w)
                    return
                w.close()
            except (OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.2)

async def main():
    sem = asyncio.Semaphore(int(sys.argv[4]))
    await asyncio.gather(*(one(sem) for _ in range(n)))
    print("open", len(held), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in held:
        w.close()

asyncio.run(main())
"""


def hold_flows(topo, n, parallel=32):
    p = topo.popen("lan", [T.PYTHON, "-c", HOLD_CLIENT, T.DST4,
                           str(T.BANNER_PORT), str(n), str(parallel)],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) != 2 or line[0] != "open":
        p.kill()
        raise RuntimeError("hold client: %r" % line)
    return p, int(line[1])


def release(p):
    p.stdin.close()
    p.wait(timeout=60)


def daemon_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def idle(topo, bins, nflows, level, parallel):
    socks = topo.spawn("srv", ["mptcpize", "run", T.PYTHON, "-c", TINY_SOCKS,
                               T.SERVICE4, str(IDLE_SOCKS_PORT)], "tinysocks")
    topo.wait_for_port("srv", T.SERVICE4, IDLE_SOCKS_PORT, proc=socks)
    banner = topo.spawn("dst", [T.PYTHON, "-c", BANNER_SERVER,
                                str(T.BANNER_PORT)], "banner")
    topo.wait_for_port("dst", None, T.BANNER_PORT, proc=banner)
    results = []
    try:
        for name, path in bins:
            cfg = mpredir_daemon.make_config(
                [{"address": T.SERVICE4, "port": IDLE_SOCKS_PORT}],
                level=level, relay={"max_flows": nflows + 1000},
                upstream={"pool": {"size": 0}})
            # (the daemon raises its soft descriptor limit to what
            # max_flows needs, as far as the hard limit allows)
            m = mpredir_daemon.Mpredir(topo, cfg, binary=path,
                                       name="mpredir-idle-" + name)
            m.start()
            try:
                # warm up: the loop's arrays and the heap, then back to 0
                p, got = hold_flows(topo, 200)
                release(p)
                topo.wait_until(lambda: daemon_fds(m.pid) < 40, timeout=30,
                                what="warm-up flows ended")
                time.sleep(0.5)
                before = rss_kib(m.pid)
                p, got = hold_flows(topo, nflows, parallel)
                topo.wait_until(lambda: daemon_fds(m.pid) >= 2 * got,
                                timeout=60, what="flows relaying")
                time.sleep(1.0)
                with_flows = rss_kib(m.pid)
                release(p)
                topo.wait_until(lambda: daemon_fds(m.pid) < 40, timeout=60,
                                what="flows ended")
                time.sleep(0.5)
                after = rss_kib(m.pid)
                # the servers too, before the next binary's turn
                for d in (socks, banner):
                    topo.wait_until(lambda: daemon_fds(d.pid) < 40,
                                    timeout=60, what="%s idle" % d.name)
            finally:
                m.stop()
            row = {"bin": name, "flows": got, "rss_before_kib": before,
                   "rss_with_flows_kib": with_flows,
                   "rss_after_close_kib": after,
                   "bytes_per_flow": round((with_flows - before) * 1024 / got)}
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        socks.stop()
        banner.stop()
    return {"rows": results}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("throughput", "idle"))
    ap.add_argument("--bin", action="append", default=[],
                    help="NAME=PATH of a daemon binary (repeatable)")
    ap.add_argument("--size", type=int, default=2048, help="MiB per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="down,up")
    ap.add_argument("--rate", type=int, default=0, help="iperf3 -b, Mbit/s")
    ap.add_argument("--shape", type=int, default=0,
                    help="shape both WAN links to MBIT (tbf; default: none)")
    ap.add_argument("--tcp", action="store_true",
                    help="upstream over TCP (upstream.mptcp false)")
    ap.add_argument("--flows", type=int, default=9900,
                    help="idle flows (2 descriptors each in the daemon)")
    ap.add_argument("--parallel", type=int, default=32,
                    help="idle: connections being opened at a time")
    ap.add_argument("--buffer", default="",
                    help="throughput: relay.buffer_size values to compare,"
                    " e.g. 65536,262144 (default: the daemon's)")
    ap.add_argument("--level", default="info")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    bins = parse_bins(a.bin)
    T.install_sigterm_cleanup()
    with T.Topology(httpd=False) as topo:
        if a.shape:
            topo.shape_wan(rate_mbit=a.shape)
        if a.what == "throughput":
            out = throughput(topo, bins, a.size << 20, a.runs,
                             a.dir.split(","), a.rate, a.level, not a.tcp,
                             [int(b) for b in a.buffer.split(",") if b]
                             or [0])
        else:
            out = idle(topo, bins, a.flows, a.level, a.parallel)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
