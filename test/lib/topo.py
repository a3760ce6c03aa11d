# SPDX-License-Identifier: GPL-2.0-or-later
r"""End-to-end test topology: four network namespaces.

   lan (client)         rtr (router)                 srv (aggregation server)    dst ("Internet")
 +--------------+     +-------------------+  wan1   +-----------------------+
 |         eth0 |-----| lan0         wan1 |=========| wan1  10.1.1.2/24     |
 | 192.168.50.2 |     | 192.168.50.1      |         |       fd00:11::2/64   |
 | fd00:50::2   |     | fd00:50::1        |         |                       |
 +--------------+     |  wan1 10.1.1.1/24 |  wan2   |                       |
  default via rtr     |   fd00:11::1/64   |=========| wan2  10.1.2.2/24     |   +-----------------+
  (v4 and v6)         |              wan2 |         |                 inet0 |---| eth0            |
                      |  wan2 10.1.2.1/24 |         |  198.18.0.1/24        |   |  198.18.0.2/24  |
                      |                   |         |  2001:2::1/64         |   |  2001:2::2/64   |
                      | mpredir :1088     |         | lo: 10.9.0.1/32       |   | httpd.py:       |
                      | nft: inet mpredir |         |  SOCKS5 (mptcpize):   |   |  80 HTTP        |
                      |      inet testnat |         |  dante 1080, 1081 u/p |   |  81 half-close  |
                      +-------------------+         |  microsocks 1082,     |   |  25 banner      |
                                                    |             1083 u/p  |   | default via srv |
                                                    +-----------------------+   +-----------------+
rtr routing:
  main:      10.9.0.1 via 10.1.1.2 dev wan1      (initial MPTCP subflow over wan1)
             198.18.0.0/15 via 10.1.1.2 dev wan1 (the "direct" path, masqueraded
             2001:2::/48 via fd00:11::2 dev wan1  by `table inet testnat`)
  rules:     from 10.1.1.1 lookup 101 -> 10.9.0.1 via 10.1.1.2 dev wan1
             from 10.1.2.1 lookup 102 -> 10.9.0.1 via 10.1.2.2 dev wan2
  mptcp:     limits subflow 2 add_addr_accepted 2;
             endpoint 10.1.2.1 dev wan2 subflow  (second subflow joins over wan2)
srv: mptcp limits subflow 2 add_addr_accepted 2; the SOCKS servers listen on
     10.9.0.1 (on lo: this kernel has no dummy driver) and connect out from
     inet0.  No route back to the LAN: the direct path is masqueraded.
dst: default routes via srv (198.18.0.1, 2001:2::1).
IP forwarding (v4 and v6) on rtr and srv. IPv6 addresses are added `nodad`
(no DAD delay). "Internet" addresses are the benchmarking ranges
198.18.0.0/15 and 2001:2::/48: not in mpredir's bypass sets.

Variants (Topology keywords; the defaults build exactly the above):

  isp=True      two more namespaces, isp1 and isp2, between rtr and srv:
                the access links end in an "ISP router" that forwards to
                srv, so a link can fail beyond rtr's carrier:

   rtr                     isp1 (forwards)                       srv
   wan1 10.1.1.1/24 ====== cust 10.1.1.2/24   core 10.3.1.1/24 ====== wan1 10.3.1.2/24
        fd00:11::1/64           fd00:11::2/64      fd00:31::1/64           fd00:31::2/64
   wan2 10.1.2.1/24 ====== cust 10.1.2.2/24   core 10.3.2.1/24 ====== wan2 10.3.2.2/24
                           isp2 (forwards)

                rtr's side is unchanged (same addresses, same gateways
                10.1.1.2 / 10.1.2.2, now in the ISP namespaces); srv's
                links keep their names wan1/wan2 and route 10.1.1.0/24,
                fd00:11::/64 via isp1 and 10.1.2.0/24 via isp2; each isp has
                a default route via srv, and an "unreachable" route for its
                customer subnet (metric 9999) that takes over while the line
                is down, so packets for rtr do not loop back to srv. No
                NAT, no shaping, no delay of their own. The far end of
                rtr's wanN (wan_far_end()) is (ispN, "cust"), not srv's wanN:
                shape_wan, qdisc_drops and delay.delay_wan act on the
                access link, set_carrier() takes "cust" down, blackhole()
                drops in ispN what it forwards (its own address still
                answers: the ISP's upstream is broken, not the line).
  wan_setup="daemon"
                rtr gets none of its multipath set-up: no MPTCP limits or
                endpoint, no tables 101/102 nor their rules, and no main
                route to SERVICE4: mpredir's link monitor (config `wans`)
                adds endpoints, per-WAN tables/rules and the fwmark rule of
                its upstream sockets. rtr keeps only what a real router has
                before the daemon starts: the connected WAN subnets and the
                direct path (198.18.0.0/15, 2001:2::/48 via wan1,
                masqueraded), i.e. one "primary WAN" for what is not
                captured — but nothing that reaches SERVICE4 and nothing
                through wan2, so upstream connections, and probes bound to
                a WAN, work only through the daemon's routing. (A
                test that wants a DHCP-like main default route adds it.)
                Default wan_setup="static": as described above.

Namespace names are "mpr-XXXXXX-ROLE" (XXXXXX random per Topology), so
concurrent or stale sessions do not collide. Cleanup (teardown(): kill every
pid in each namespace, SIGTERM then SIGKILL, then `ip netns del`) runs from
the fixture finalizer, from atexit, and on SIGTERM; a later session reaps
what a killed one left (resources.reap_stale()).
"""

import atexit
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import resources
from proc import Daemon

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
HTTPD = os.path.join(REPO_ROOT, "test", "tools", "httpd.py")
PYTHON = "/usr/bin/python3"

ROLES = ("lan", "rtr", "srv", "dst")
ISP_ROLES = ("isp1", "isp2")   # isp=True only
WAN_SETUPS = ("static", "daemon")

# Addresses (also used by tests).
LAN4, LAN6 = "192.168.50.2", "fd00:50::2"
RTR_LAN4, RTR_LAN6 = "192.168.50.1", "fd00:50::1"
RTR_WAN1, SRV_WAN1 = "10.1.1.1", "10.1.1.2"
RTR_WAN2, SRV_WAN2 = "10.1.2.1", "10.1.2.2"
RTR_WAN1_6, SRV_WAN1_6 = "fd00:11::1", "fd00:11::2"
SERVICE4 = "10.9.0.1"
# rtr's WAN addresses and their gateways (srv's, or with isp=True the ISP
# routers'), by interface
WAN_ADDR = {"wan1": RTR_WAN1, "wan2": RTR_WAN2}
WAN_GW = {"wan1": SRV_WAN1, "wan2": SRV_WAN2}
# isp=True: the ISP <-> srv links ("core" in ispN, wanN in srv)
ISP_CORE = {"wan1": ("10.3.1.1", "10.3.1.2"), "wan2": ("10.3.2.1", "10.3.2.2")}
ISP1_CORE6, SRV_ISP1_6 = "fd00:31::1", "fd00:31::2"
SRV_INET4, SRV_INET6 = "198.18.0.1", "2001:2::1"
DST4, DST6 = "198.18.0.2", "2001:2::2"
HTTP_PORT, HALFCLOSE_PORT, BANNER_PORT = 80, 81, 25

# Interface names (inside their namespaces).
LAN_IF = "eth0"         # in lan
RTR_LAN_IF = "lan0"     # in rtr
WAN_IFS = ("wan1", "wan2")  # same names in rtr and srv
SRV_INET_IF = "inet0"   # in srv
DST_IF = "eth0"         # in dst
ISP_CUST_IF = "cust"    # in ispN, toward rtr's wanN (isp=True)
ISP_CORE_IF = "core"    # in ispN, toward srv's wanN (isp=True)

_live = []


def _cleanup_all():
    for t in list(_live):
        try:
            t.teardown()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print("mpredir-test: cleanup of %s failed: %s" % (t.tag, e),
                  file=sys.stderr)


atexit.register(_cleanup_all)


def install_sigterm_cleanup():
    """Turn SIGTERM (e.g. a CI time-out) into KeyboardInterrupt, so that
    pytest stops the session and runs the fixture finalizers (and atexit
    runs in any case); by default SIGTERM kills Python without either.
    Only if nobody else handles SIGTERM."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def _term(signum, frame):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            raise KeyboardInterrupt("SIGTERM")
        signal.signal(signal.SIGTERM, _term)


class CommandError(RuntimeError):
    pass


class Topology:
    """The four namespaces (six with isp=True). Use as a context manager or
    setup()/teardown().

    isp: put isp1/isp2 namespaces between rtr's WAN links and srv.
    wan_setup: "static" (default) sets rtr's MPTCP endpoint, limits and
      per-WAN routing; "daemon" leaves them to mpredir's link monitor (see
      the module docstring)."""

    def __init__(self, tag=None, keep_workdir=None, httpd=True, isp=False,
                 wan_setup="static"):
        if wan_setup not in WAN_SETUPS:
            raise ValueError("wan_setup %r: one of %s" % (wan_setup,
                                                          WAN_SETUPS))
        self.isp = bool(isp)
        self.wan_setup = wan_setup
        self.roles = ROLES + (ISP_ROLES if self.isp else ())
        self._fixed_tag = tag is not None
        self.tag = tag or ("mpr-" + secrets.token_hex(3))
        self.ns = {r: "%s-%s" % (self.tag, r) for r in self.roles}
        self.workdir = None
        self.keep_workdir = (os.environ.get("MPREDIR_TEST_KEEP") == "1"
                             if keep_workdir is None else keep_workdir)
        self.want_httpd = httpd
        self.record = None
        self.daemons = []
        self.httpd = None
        self.users = []
        self.created_ns = []
        self._torn_down = False

    # ------------------------------------------------------------ basics
    def nsname(self, ns):
        """Role ("rtr") or full namespace name -> full name; None: host."""
        if ns is None:
            return None
        return self.ns.get(ns, ns)

    def _argv(self, ns, cmd):
        if isinstance(cmd, str):
            cmd = ["sh", "-c", cmd]
        cmd = [str(c) for c in cmd]
        name = self.nsname(ns)
        return (["ip", "netns", "exec", name] + cmd) if name else cmd

    def run(self, ns, cmd, check=True, timeout=60, input=None, text=True,
            capture=True, env=None):
        """subprocess.run(cmd) inside namespace ns (role or name).

        cmd: list (exec'd) or str (run by sh -c). With check, a non-zero
        exit raises CommandError carrying stdout and stderr."""
        argv = self._argv(ns, cmd)
        if env is not None:
            e = dict(os.environ)
            e.update(env)
            env = e
        r = subprocess.run(
            argv, input=input, text=text, timeout=timeout, env=env,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None)
        if check and r.returncode != 0:
            raise CommandError("%s: exit %d\nstdout: %s\nstderr: %s" % (
                " ".join(shlex.quote(a) for a in argv), r.returncode,
                r.stdout, r.stderr))
        return r

    def popen(self, ns, cmd, **kw):
        """subprocess.Popen(cmd) inside ns. Note that its pid may not be the
        command's pid; use spawn() for servers."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self._argv(ns, cmd), **kw)

    def spawn(self, ns, argv, name, env=None, timeout=10.0):
        """Start a long-running process in ns; return a started Daemon that
        knows its real pid, logs to WORKDIR/NAME.log, and is stopped at
        teardown."""
        d = Daemon(self.nsname(ns), argv, name, self.workdir, env=env)
        d.start(timeout)
        self.daemons.append(d)
        return d

    def ip(self, ns, args, **kw):
        return self.run(ns, ["ip"] + args.split() if isinstance(args, str)
                        else ["ip"] + list(args), **kw)

    def sysctl(self, ns, **kv):
        """sysctl(ns, **{"net.ipv4.ip_forward": 1})"""
        args = ["%s=%s" % (k, v) for k, v in kv.items()]
        return self.run(ns, ["sysctl", "-q", "-w"] + args)

    # ------------------------------------------------------------ probes
    def listening(self, ns, addr=None, port=None, proto="tcp"):
        """True if something listens on addr:port in ns (via `ss -l`; no
        connection is made). addr None or wildcard listeners match any."""
        flag = {"tcp": "-t", "mptcp": "-M", "udp": "-u"}[proto]
        r = self.run(ns, ["ss", "-Hln", flag], check=False)
        want = None if addr is None else addr.strip("[]")
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) < 4:
                continue
            local = f[3]
            host, _, p = local.rpartition(":")
            host = host.strip("[]").split("%")[0]
            if port is not None and p != str(port):
                continue
            if want is None or host in ("*", "0.0.0.0", "::", want):
                return True
        return False

    def wait_for_port(self, ns, addr, port, timeout=10.0, proto="tcp",
                      proc=None):
        """Poll until addr:port listens in ns; raise TimeoutError.
        If proc (a Daemon) dies meanwhile, raise at once with its log."""
        deadline = time.monotonic() + timeout
        while True:
            if self.listening(ns, addr, port, proto):
                return True
            if proc is not None:
                proc.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("%s:%s not listening in %s after %.1fs%s" % (
                    addr, port, self.nsname(ns), timeout,
                    ("\n--- log ---\n" + proc.log(tail=50)) if proc else ""))
            time.sleep(0.02)

    def wait_until(self, pred, timeout=10.0, interval=0.02, what="condition"):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise TimeoutError("timed out waiting for " + what)
            time.sleep(interval)

    def nstat(self, ns):
        """Absolute values of every SNMP/netstat counter of ns, as a dict
        (e.g. MPTcpExtMPCapableSYNRX, MPTcpExtMPJoinSynRx, TcpActiveOpens).
        `nstat -asz`: absolute, zeros included, history file not touched."""
        r = self.run(ns, ["nstat", "-asz"])
        out = {}
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) >= 2 and not f[0].startswith("#"):
                try:
                    out[f[0]] = int(f[1])
                except ValueError:
                    pass
        return out

    @staticmethod
    def delta(before, after, *names):
        """after - before for names (all counters if none given)."""
        names = names or tuple(after)
        return {n: after.get(n, 0) - before.get(n, 0) for n in names}

    def reap(self):
        """Reap zombie orphans (this process is their subreaper), leaving
        alone the children that Daemon objects will wait for."""
        busy = {d.popen.pid for d in self.daemons
                if d.popen is not None and d.popen.returncode is None}
        resources.reap_zombies(exclude=busy)

    def pids(self, ns):
        return resources.netns_pids(self.nsname(ns))

    def link_bytes(self, ns="rtr", devs=WAN_IFS):
        """Byte counters of interfaces in ns: {dev: (rx_bytes, tx_bytes)}
        (`ip -s -j link`; take deltas). Frames as the interface sees them,
        Ethernet header included; a GRO/GSO packet counts once with its
        total length, so per-packet header bytes are undercounted."""
        r = self.run(ns, ["ip", "-s", "-j", "link", "show"])
        stats = {l["ifname"]: l["stats64"] for l in json.loads(r.stdout)}
        return {d: (stats[d]["rx"]["bytes"], stats[d]["tx"]["bytes"])
                for d in devs}

    # ------------------------------------------------------------ shaping
    def shape_wan(self, rate_mbit=20, burst_kb=None, latency_ms=50,
                  links=WAN_IFS):
        """tbf on the egress of both ends of each WAN link: rtr's wanN and
        its far end (wan_far_end(): srv's wanN, or ispN's "cust").

        Values (checked at 20 Mbit/s on kernel 6.18, HZ=250):
        * burst: 16 KiB or 5 ms at the rate, whichever is more. tbf
          refills by hrtimer, so HZ no longer bounds the rate, but burst
          still covers the classic rate/HZ rule (20 Mbit/s: 10 KB at
          HZ=250, 2.5 KB at HZ=1000) and far exceeds one 1514-byte frame
          (tbf drops a non-GSO packet larger than burst; it segments a
          larger GSO packet).
        * latency 50 ms: tc sets limit = rate x latency + burst (141 KB at
          20 Mbit/s), i.e. a queue of ~56 ms. The namespaces add no delay,
          so that is far above the bandwidth-delay product: the links are
          never starved, at the cost of some queueing delay (and tbf drops
          when a sender overshoots; with BBR, ~10 % of packets, harmless
          to throughput). Raising burst to 64 KiB or latency to 200 ms
          changed MPTCP throughput by < 1 %.
        tbf counts whole frames (Ethernet header included), so payload
        throughput is below rate_mbit: x 1448/1514 for TCP, x 1420/1514
        for MPTCP (DSS option) with MTU 1500."""
        rate_bytes = rate_mbit * 1_000_000 // 8
        burst = burst_kb * 1024 if burst_kb else max(16 * 1024, rate_bytes // 200)
        for ns, dev in self.wan_ends(links):
            self.run(ns, ["tc", "qdisc", "replace", "dev", dev, "root",
                          "tbf", "rate", "%dmbit" % rate_mbit,
                          "burst", str(burst),
                          "latency", "%dms" % latency_ms])

    def qdisc_drops(self, links=WAN_IFS):
        """Packets dropped so far by the root qdiscs (tbf) of the WAN links,
        both ends: {(ns, dev): drops} (ns a role: "rtr", "srv" or "ispN");
        take deltas. A GSO packet counts as one."""
        out = {}
        for ns, dev in self.wan_ends(links):
            r = self.run(ns, ["tc", "-s", "-j", "qdisc", "show", "dev",
                              dev, "root"])
            q = json.loads(r.stdout or "[]")
            out[(ns, dev)] = q[0].get("drops", 0) if q else 0
        return out

    def unshape_wan(self, links=WAN_IFS):
        for ns, dev in self.wan_ends(links):
            self.run(ns, ["tc", "qdisc", "del", "dev", dev, "root"],
                     check=False)

    def set_link(self, link, up, ns="rtr"):
        """Take a WAN link (e.g. "wan2") down or up on one side (here rtr's
        interface itself goes administratively down: see set_carrier for
        a line that fails while rtr's interface stays up)."""
        self.ip(ns, ["link", "set", link, "up" if up else "down"])

    # ------------------------------------------------------------ WAN faults
    def wan_far_end(self, link):
        """(role, device) at the other end of rtr's WAN link: ("srv",
        "wan1"), or with isp=True ("isp1", "cust")."""
        if link not in WAN_IFS:
            raise ValueError("%r: not a WAN link %s" % (link, WAN_IFS))
        if self.isp:
            return "isp" + link[len("wan"):], ISP_CUST_IF
        return "srv", link

    def wan_ends(self, links=WAN_IFS):
        """[(role, device)] of both ends of each WAN link: rtr's first."""
        if isinstance(links, str):
            links = (links,)
        out = []
        for link in links:
            out += [("rtr", link), self.wan_far_end(link)]
        return out

    def carrier(self, link, ns="rtr"):
        """Does rtr's link have carrier (IFF_LOWER_UP)? The rtnetlink query
        also flushes a pending linkwatch event (see wait_links_ready)."""
        r = self.run(ns, ["ip", "-j", "link", "show", "dev", link])
        return "LOWER_UP" in json.loads(r.stdout)[0].get("flags", [])

    def set_carrier(self, link, up, wait=2.0):
        """Carrier loss on a WAN link: the far end's device (srv's wanN, or
        ispN's "cust") goes down (or back up), so rtr's wanN stays
        administratively up and shows NO-CARRIER, as when a modem loses
        its line. Waits until rtr sees the change (the veth signals it at
        once). Returns the monotonic time just after the change was
        made."""
        ns, dev = self.wan_far_end(link)
        self.ip(ns, ["link", "set", dev, "up" if up else "down"])
        t = time.monotonic()
        self.wait_until(lambda: self.carrier(link) == bool(up), timeout=wait,
                        interval=0.005,
                        what="carrier %s on rtr %s" % ("up" if up else
                                                      "down", link))
        return t

    def _blackhole_table(self, link):
        return "mpr_blackhole_" + link

    def blackhole(self, link, on=True, scope=None):
        """Black hole on a WAN link, rtr's carrier staying up: nft drops at
        the far end (`table inet mpr_blackhole_wanN` in wan_far_end's
        namespace), both directions.

        scope "upstream" (default with isp=True): ispN drops what it would
        forward to or from rtr; its own address (the gateway) still answers
        ping and ARP: the ISP's network beyond the line is broken.
        scope "all" (the only one without isp, where srv is the far end):
        every IPv4/IPv6 packet in or out of the far end's device (ARP still
        passes). on=False removes it (no error if absent). Returns the
        monotonic time just after the change."""
        ns, dev = self.wan_far_end(link)
        table = self._blackhole_table(link)
        if not on:
            self.run(ns, ["nft", "delete", "table", "inet", table],
                     check=False)
            return time.monotonic()
        scope = scope or ("upstream" if self.isp else "all")
        if scope == "upstream":
            if not self.isp:
                raise ValueError("scope 'upstream' needs isp=True")
            body = """
    chain forward {
        type filter hook forward priority -10; policy accept;
        iifname "%(dev)s" drop
        oifname "%(dev)s" drop
    }""" % {"dev": dev}
        elif scope == "all":
            body = """
    chain pre {
        type filter hook prerouting priority -310; policy accept;
        iifname "%(dev)s" drop
    }
    chain post {
        type filter hook postrouting priority 310; policy accept;
        oifname "%(dev)s" drop
    }""" % {"dev": dev}
        else:
            raise ValueError("scope %r: 'upstream' or 'all'" % (scope,))
        self.run(ns, ["nft", "-f", "-"], input="""
table inet %s
delete table inet %s
table inet %s {%s
}
""" % (table, table, table, body))
        return time.monotonic()

    def blackholed(self, link):
        ns, _ = self.wan_far_end(link)
        return self.run(ns, ["nft", "list", "table", "inet",
                             self._blackhole_table(link)],
                        check=False).returncode == 0

    def restore_wans(self):
        """Undo every WAN fault and shaping: black holes removed, far ends
        and rtr's WAN devices up (carrier back), tbf removed."""
        for link in WAN_IFS:
            self.blackhole(link, on=False)
            ns, dev = self.wan_far_end(link)
            self.ip(ns, ["link", "set", dev, "up"])
            self.ip("rtr", ["link", "set", link, "up"])
        self.unshape_wan()
        self.wait_links_ready()

    # ------------------------------------------------------------ rtr state
    def mptcp_endpoints(self, ns="rtr"):
        """`ip -j mptcp endpoint show`: [{"address", "id", "dev"?,
        "subflow"?: true, "backup"?: true, "signal"?: true, ...}]."""
        r = self.run(ns, ["ip", "-j", "mptcp", "endpoint", "show"])
        return json.loads(r.stdout or "[]")

    def mptcp_limits(self, ns="rtr"):
        """{"subflows": N, "add_addr_accepted": M} (parsed from the text
        form: iproute2 6.1 prints no JSON for `ip -j mptcp limits`)."""
        f = self.run(ns, ["ip", "mptcp", "limits", "show"]).stdout.split()
        return {k: int(v) for k, v in zip(f[0::2], f[1::2])}

    def ip_rules(self, ns="rtr", family=4, protocol=None):
        """`ip -j rule show` (family 4 or 6): [{"priority", "src", "fwmark",
        "table", "protocol"?, ...}]; protocol (e.g. 77) keeps only those."""
        r = self.run(ns, ["ip", "-%d" % family, "-j", "rule", "show"])
        rules = json.loads(r.stdout or "[]")
        if protocol is not None:
            rules = [x for x in rules
                     if str(x.get("protocol")) == str(protocol)]
        return rules

    def ip_routes(self, table, ns="rtr", family=4, protocol=None):
        """`ip -j route show table T [proto P]` (table "all" for every
        table): [{"dst", "gateway", "dev", "protocol", "table"?, ...}]."""
        argv = ["ip", "-%d" % family, "-j", "route", "show", "table",
                str(table)]
        if protocol is not None:
            argv += ["proto", str(protocol)]
        r = self.run(ns, argv, check=False)
        if r.returncode != 0:   # e.g. a table that does not exist
            return []
        return json.loads(r.stdout or "[]")

    # ------------------------------------------------------------ lifecycle
    def __enter__(self):
        self.setup()
        return self

    def __exit__(self, *exc):
        self.teardown()

    def setup(self):
        resources.reap_stale()
        resources.become_subreaper()
        while any(resources.netns_exists(n) for n in self.ns.values()):
            if self._fixed_tag:
                raise RuntimeError("namespaces %s-* exist already" % self.tag)
            self.tag = "mpr-" + secrets.token_hex(3)
            self.ns = {r: "%s-%s" % (self.tag, r) for r in self.roles}
        self.record = resources.Record(self.tag)
        self.workdir = tempfile.mkdtemp(prefix=self.tag + "-")
        os.chmod(self.workdir, 0o755)
        if not self.keep_workdir:
            self.record.add("workdirs", self.workdir)
        _live.append(self)
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def _build(self):
        for r in self.roles:
            # recorded first: a crash right after `add` still gets it reaped
            self.record.add("netns", self.ns[r])
            subprocess.run(["ip", "netns", "add", self.ns[r]], check=True,
                           capture_output=True)
            self.created_ns.append(self.ns[r])
        n = self.ns
        for r in self.roles:
            self.ip(r, "link set lo up")
            self.sysctl(r, **{
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.default.rp_filter": 0,
                "net.ipv6.conf.all.accept_dad": 0,
                "net.ipv6.conf.default.accept_dad": 0,
                "net.ipv6.conf.all.accept_ra": 0,
                "net.ipv6.conf.default.accept_ra": 0,
                "net.mptcp.enabled": 1,
            })
        for r in ("rtr", "srv") + (ISP_ROLES if self.isp else ()):
            self.sysctl(r, **{"net.ipv4.ip_forward": 1,
                              "net.ipv6.conf.all.forwarding": 1})

        # links (created directly in their namespaces: no name clashes)
        self.ip("lan", ["link", "add", LAN_IF, "type", "veth", "peer", "name",
                        RTR_LAN_IF, "netns", n["rtr"]])
        for w in WAN_IFS:
            if self.isp:
                isp = self.wan_far_end(w)[0]
                self.ip("rtr", ["link", "add", w, "type", "veth", "peer",
                                "name", ISP_CUST_IF, "netns", n[isp]])
                self.ip(isp, ["link", "add", ISP_CORE_IF, "type", "veth",
                              "peer", "name", w, "netns", n["srv"]])
            else:
                self.ip("rtr", ["link", "add", w, "type", "veth", "peer",
                                "name", w, "netns", n["srv"]])
        self.ip("srv", ["link", "add", SRV_INET_IF, "type", "veth", "peer",
                        "name", DST_IF, "netns", n["dst"]])

        def addr(ns, dev, *cidrs):
            for c in cidrs:
                extra = ["nodad"] if ":" in c else []
                self.ip(ns, ["addr", "add", c, "dev", dev] + extra)
            self.ip(ns, ["link", "set", dev, "up"])

        addr("lan", LAN_IF, LAN4 + "/24", LAN6 + "/64")
        addr("rtr", RTR_LAN_IF, RTR_LAN4 + "/24", RTR_LAN6 + "/64")
        addr("rtr", "wan1", RTR_WAN1 + "/24", RTR_WAN1_6 + "/64")
        addr("rtr", "wan2", RTR_WAN2 + "/24")
        if self.isp:
            addr("isp1", ISP_CUST_IF, SRV_WAN1 + "/24", SRV_WAN1_6 + "/64")
            addr("isp2", ISP_CUST_IF, SRV_WAN2 + "/24")
            addr("isp1", ISP_CORE_IF, ISP_CORE["wan1"][0] + "/24",
                 ISP1_CORE6 + "/64")
            addr("isp2", ISP_CORE_IF, ISP_CORE["wan2"][0] + "/24")
            addr("srv", "wan1", ISP_CORE["wan1"][1] + "/24",
                 SRV_ISP1_6 + "/64")
            addr("srv", "wan2", ISP_CORE["wan2"][1] + "/24")
        else:
            addr("srv", "wan1", SRV_WAN1 + "/24", SRV_WAN1_6 + "/64")
            addr("srv", "wan2", SRV_WAN2 + "/24")
        addr("srv", SRV_INET_IF, SRV_INET4 + "/24", SRV_INET6 + "/64")
        addr("dst", DST_IF, DST4 + "/24", DST6 + "/64")
        # service address of the aggregation server
        self.ip("srv", ["addr", "add", SERVICE4 + "/32", "dev", "lo"])

        # routes
        self.ip("lan", ["route", "add", "default", "via", RTR_LAN4])
        self.ip("lan", ["-6", "route", "add", "default", "via", RTR_LAN6])
        self.ip("dst", ["route", "add", "default", "via", SRV_INET4])
        self.ip("dst", ["-6", "route", "add", "default", "via", SRV_INET6])
        if self.isp:
            for w in WAN_IFS:
                isp = self.wan_far_end(w)[0]
                core, srv_end = ISP_CORE[w]
                self.ip(isp, ["route", "add", "default", "via", srv_end])
                subnet = WAN_ADDR[w].rsplit(".", 1)[0] + ".0/24"
                self.ip("srv", ["route", "add", subnet, "via", core,
                                "dev", w])
                # while the line is down (its connected route gone), the
                # ISP answers "unreachable" instead of bouncing the
                # customer's packets back to srv by its default route
                self.ip(isp, ["route", "add", "unreachable", subnet,
                              "metric", "9999"])
            self.ip("isp1", ["-6", "route", "add", "default", "via",
                             SRV_ISP1_6])
            self.ip("isp1", ["-6", "route", "add", "unreachable",
                             "fd00:11::/64", "metric", "9999"])
            self.ip("srv", ["-6", "route", "add", "fd00:11::/64", "via",
                            ISP1_CORE6, "dev", "wan1"])
        # the direct path (what the firewall does not capture)
        self.ip("rtr", ["route", "add", "198.18.0.0/15", "via", SRV_WAN1,
                        "dev", "wan1"])
        self.ip("rtr", ["-6", "route", "add", "2001:2::/48", "via", SRV_WAN1_6,
                        "dev", "wan1"])
        if self.wan_setup == "static":
            self.ip("rtr", ["route", "add", SERVICE4, "via", SRV_WAN1, "dev",
                            "wan1"])
            for table, src, gw, dev in ((101, RTR_WAN1, SRV_WAN1, "wan1"),
                                        (102, RTR_WAN2, SRV_WAN2, "wan2")):
                self.ip("rtr", ["route", "add", SERVICE4, "via", gw, "dev",
                                dev, "table", str(table)])
                self.ip("rtr", ["rule", "add", "from", src, "lookup",
                                str(table), "priority", str(table * 10)])

            # MPTCP path management
            self.ip("rtr", "mptcp limits set subflow 2 add_addr_accepted 2")
            self.ip("rtr", ["mptcp", "endpoint", "add", RTR_WAN2, "dev",
                            "wan2", "subflow"])
        self.ip("srv", "mptcp limits set subflow 2 add_addr_accepted 2")

        # direct path: masquerade LAN traffic leaving on wan1
        self.run("rtr", ["nft", "-f", "-"], input="""
table inet testnat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan1" ip saddr 192.168.50.0/24 masquerade
        oifname "wan1" ip6 saddr fd00:50::/64 masquerade
    }
}
""")
        self.wait_links_ready()
        if self.want_httpd:
            self.start_httpd()

    def wait_links_ready(self, timeout=5.0):
        """Wait until every interface that is up has its carrier processed.

        A veth's carrier-up is handled by the kernel's linkwatch work, which
        may run up to a second later; until then the device's operstate
        stays "down" (/sys/class/net/DEV/operstate) and IPv6 neighbour
        discovery through it fails (seen here: the first IPv6 connection
        from lan took 1 s, a SYN retransmission). An rtnetlink query of a
        link syncs its pending linkwatch event, so polling `ip link show`
        in each namespace both waits and makes it happen at once."""
        deadline = time.monotonic() + timeout
        for r in self.roles:
            while True:
                out = self.run(r, ["ip", "-o", "link", "show", "up"]).stdout
                pending = [ln.split(":")[1].strip() for ln in out.splitlines()
                           if "LOOPBACK" not in ln and
                           ("qdisc noop" in ln or "state UP" not in ln)]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("links not ready in %s: %s" % (
                        self.ns[r], pending))
                time.sleep(0.01)

    def start_httpd(self):
        """httpd.py in dst: HTTP 80, half-close 81, banner 25 (dual-stack)."""
        pidfile = os.path.join(self.workdir, "httpd.pid")
        self.httpd = self.spawn("dst", [PYTHON, HTTPD, "--pidfile", pidfile],
                                "httpd")
        for port in (HTTP_PORT, HALFCLOSE_PORT, BANNER_PORT):
            self.wait_for_port("dst", "::", port, proc=self.httpd)
        return self.httpd

    def add_user(self, name):
        """Record a system user so that cleanup removes it."""
        self.users.append(name)
        self.record.add("users", name)

    def teardown(self):
        if self._torn_down:
            return
        self._torn_down = True
        errors = []
        for d in reversed(self.daemons):
            try:
                d.stop(timeout=2.0)
            except Exception as e:  # noqa: BLE001
                errors.append("%r: %s" % (d, e))
        for n in self.created_ns:
            resources.destroy_netns(n)
            if resources.netns_exists(n):
                errors.append("netns %s still exists" % n)
        self.reap()
        for u in self.users:
            resources.remove_user(u)
            if resources.user_exists(u):
                errors.append("user %s still exists" % u)
        if self.record and not errors:
            self.record.close()
        if self.workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self in _live:
            _live.remove(self)
        if errors:
            raise RuntimeError("teardown of %s: %s" % (self.tag, "; ".join(errors)))
