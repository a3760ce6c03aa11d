# SPDX-License-Identifier: GPL-2.0-or-later
"""One-way delay and random loss on the test bed's links, without netem.

This kernel has no netem. test/tools/delayemu (`make tools`) holds packets
that iptables-nft sends to an NFQUEUE queue and gives each its verdict when
its delay has elapsed (dropping LOSS % of them at random). This module
installs the rules and runs one delayemu per namespace, with one queue per
(interface, direction):

    "in":  iptables/ip6tables -t mangle -A PREROUTING  -i IF -j NFQUEUE
               --queue-num N --queue-bypass
    "out": iptables/ip6tables -t mangle -A POSTROUTING -o IF -j NFQUEUE
               --queue-num N --queue-bypass

Delays are best applied at the receiving end of a link ("in"): a packet
held on the egress of the host whose TCP socket sent it stays charged to the
socket (netem orphans it, NFQUEUE does not), so TCP small queues throttle
that sender: measured here, iperf3 rtr -> srv fell from 507 Mbit/s (25 ms
"in" at both ends) to 2 Mbit/s (25 ms "out" at both ends). "out" is fine for
forwarded traffic, for senders elsewhere, and for tiny delays.

--queue-bypass: while no delayemu has the queue bound (it died, or is being
restarted for a new configuration, a few ms), packets pass undelayed instead
of being dropped. So a crashed emulator shows as a link without delay, not as
a dead link; `stats()` and `undelay()` (check=True) report a dead emulator.

API (topo: a topo.Topology; ns: a role such as "rtr" or a namespace name):

  delay_wan(topo, ms=25, links=("wan1", "wan2"), loss=0)
      ms one-way delay on each WAN link in both directions (queued on
      ingress in rtr and in srv): the RTT rtr<->srv over each link grows by
      2*ms. loss (%) applies in each direction, so a round trip is lost with
      probability 1 - (1 - loss/100)**2.
  delay_veth(topo, (ns1, if1), (ns2, if2), ms, loss=0)
      the same for any link (a veth pair: if1 in ns1, its peer if2 in ns2):
      "in" at both ends; e.g. srv<->dst RTT + 0.5 ms:
      delay_veth(topo, ("srv", "inet0"), ("dst", "eth0"), 0.25).
  delay_link(topo, ns, ifname, ms, loss=0, directions=("in", "out"))
      ms on the packets entering ("in") and/or leaving ("out") ifname in ns,
      one namespace only (mind "out" and local TCP senders, above); e.g.
      delay_link(topo, "srv", "inet0", 0.25) also adds 0.5 ms to srv<->dst.
  undelay(topo, ns=None, ifname=None, check=True)
      remove the rules (all, or of one namespace / interface), wait for the
      held packets' delay, stop the emulator (it must exit 0 on SIGTERM when
      check) or restart it with what is left.
  stats(topo, ns, reset=False) -> dict
      the emulator's counters (SIGUSR1; SIGUSR2 when reset: read, then zero):
      {"queues": [{"queue", "ifname", "direction", "delay_ms", "loss_pct",
      "packets", "accepted", "dropped", "verdicts", "late",
      "lateness_mean_ms", "lateness_max_ms", "lateness_sum_ns", "kernel_ts",
      "read_lag_mean_ms", "enobufs", "kernel_queue_dropped",
      "kernel_user_dropped", ...}, ...]}
      lateness = verdict time - queue time - delay, per packet.
  link_stats(topo, ns, ifname, direction="in", reset=False) -> dict
      one queue's entry of stats().
  rtt(topo, ns, addr, count=50, interval=0.01, timeout=2.0) -> dict
      ICMP echo probe from ns (test/tools/rttprobe.py): sent, received,
      lost, loss, rtt_ms {mean, min, max, median, p90, stdev}, rtts.
      User space to user space, unlike ping's default (see rttprobe.py).
  emulator(topo, ns) -> proc.Daemon or None

Calling delay_* again for a configured (ns, ifname, direction) changes its
delay and loss (the namespace's emulator restarts; a few ms undelayed).
The emulators are topo.spawn() Daemons (real pid known, log in
WORKDIR/delayemu-NS.log, stopped at teardown); the rules go with the
namespaces. A test on the shared session topology must undelay() at its end.

delayemu runs with SCHED_FIFO priority rt_prio (default 10; None: normal
priority) so that other load on the machine does not make verdicts late.
$DELAYEMU_BIN overrides the binary (e.g. a sanitizer build).
"""

import json
import os
import signal
import time

import topo as T

DEFAULT_BIN = os.path.join(T.REPO_ROOT, "test", "tools", "delayemu")
RTTPROBE = os.path.join(T.REPO_ROOT, "test", "tools", "rttprobe.py")
QUEUE_BASE = 100        # first NFQUEUE queue number used in a namespace
DEFAULT_RT_PRIO = 10
DIRECTIONS = {"in": ("PREROUTING", "-i"), "out": ("POSTROUTING", "-o")}


class DelayError(RuntimeError):
    pass


def binary_path():
    b = os.environ.get("DELAYEMU_BIN") or DEFAULT_BIN
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        raise DelayError("delay emulator %s is not built: run `make tools`"
                         % b)
    return b


class _Emu:
    """What one namespace has: queues, installed rules, the process."""

    def __init__(self, nsname, label):
        self.nsname = nsname
        self.label = label
        self.queues = {}        # (ifname, direction) -> {num, ms, loss}
        self.rules = set()      # (ifname, direction, num) installed
        self.daemon = None
        self.running_config = None
        self.rt_prio = DEFAULT_RT_PRIO

    def config(self):
        return tuple(sorted((q["num"], q["ms"], q["loss"])
                            for q in self.queues.values()))

    def by_num(self, num):
        for (ifname, direction), q in self.queues.items():
            if q["num"] == num:
                return ifname, direction
        return None, None


def _emus(topo):
    st = getattr(topo, "_delayemu", None)
    if st is None:
        st = topo._delayemu = {}
    return st


def _emu(topo, ns, create=True):
    name = topo.nsname(ns)
    st = _emus(topo)
    if name not in st and create:
        label = next((r for r, n in topo.ns.items() if n == name), name)
        st[name] = _Emu(name, label)
    return st.get(name)


def emulator(topo, ns):
    e = _emu(topo, ns, create=False)
    return e.daemon if e else None


def _rule(topo, emu, op, ifname, direction, num):
    chain, flag = DIRECTIONS[direction]
    for tool in ("iptables", "ip6tables"):
        topo.run(emu.nsname, [tool, "-w", "-t", "mangle", op, chain, flag,
                              ifname, "-j", "NFQUEUE", "--queue-num", str(num),
                              "--queue-bypass"],
                 check=(op == "-A"))


def _drop_empty_tables(topo, emu):
    """Once no rule is left, remove the mangle tables that iptables-nft
    created for them (if nothing else put a rule there)."""
    for tool, family in (("iptables", "ip"), ("ip6tables", "ip6")):
        r = topo.run(emu.nsname, [tool, "-w", "-t", "mangle", "-S"],
                     check=False)
        if r.returncode == 0 and not any(ln.startswith("-A ")
                                         for ln in r.stdout.splitlines()):
            topo.run(emu.nsname, ["nft", "delete", "table", family, "mangle"],
                     check=False)


def _start(topo, emu):
    pidfile = os.path.join(topo.workdir, "delayemu-%s.pid" % emu.label)
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass
    argv = [binary_path(), "--pidfile", pidfile]
    if emu.rt_prio:
        argv += ["--rt-prio", str(emu.rt_prio)]
    for num, ms, loss in emu.config():
        argv += ["--queue", "%d:%.6f:%.6f" % (num, ms, loss)]
    d = topo.spawn(emu.nsname, argv, "delayemu-" + emu.label)
    emu.daemon = d
    deadline = time.monotonic() + 10.0
    while not os.path.exists(pidfile):  # written once every queue is bound
        if not d.running():
            emu.daemon = None
            raise DelayError("delayemu in %s did not start (rc=%s):\n%s" % (
                emu.nsname, d.poll(), d.log(tail=20)))
        if time.monotonic() > deadline:
            raise DelayError("delayemu in %s: not ready after 10 s:\n%s" % (
                emu.nsname, d.log(tail=20)))
        time.sleep(0.005)
    emu.running_config = emu.config()


def _stop(topo, emu, check):
    d = emu.daemon
    emu.daemon = None
    emu.running_config = None
    alive = d.running()
    rc = d.stop(timeout=5.0)
    if d in topo.daemons:
        topo.daemons.remove(d)
    if check and (not alive or rc != 0):
        raise DelayError("delayemu in %s %s (rc=%s); log:\n%s" % (
            emu.nsname, "had died" if not alive else "did not exit 0 on "
            "SIGTERM", rc, d.log(tail=30)))


def _apply(topo, emu, check=True):
    want = {(ifname, direction, q["num"])
            for (ifname, direction), q in emu.queues.items()}
    gone = emu.rules - want
    for r in sorted(gone):
        _rule(topo, emu, "-D", *r)
        emu.rules.discard(r)
    if gone and not emu.rules:
        _drop_empty_tables(topo, emu)
    if emu.daemon is not None and emu.running_config == emu.config():
        pass  # nothing changed for the process
    else:
        if emu.daemon is not None:
            if gone and not want:
                # let the held packets leave on time, not all at once
                time.sleep(min(1.0, max(
                    (ms for _n, ms, _l in emu.running_config), default=0)
                    / 1000 + 0.005))
            _stop(topo, emu, check)
        if emu.queues:
            _start(topo, emu)
    for r in sorted(want - emu.rules):
        _rule(topo, emu, "-A", *r)
        emu.rules.add(r)


def _configure(topo, items, rt_prio):
    """items: (ns, ifname, direction, ms, loss); one restart per namespace."""
    touched = []
    for ns, ifname, direction, ms, loss in items:
        if direction not in DIRECTIONS:
            raise ValueError("direction %r: must be 'in' or 'out'"
                             % (direction,))
        if not 0 <= ms <= 60000:
            raise ValueError("delay %r ms out of range" % (ms,))
        if not 0 <= loss <= 100:
            raise ValueError("loss %r %% out of range" % (loss,))
        emu = _emu(topo, ns)
        q = emu.queues.get((ifname, direction))
        if q is None:
            used = {x["num"] for x in emu.queues.values()}
            num = next(n for n in range(QUEUE_BASE, 65536) if n not in used)
            q = emu.queues[(ifname, direction)] = {"num": num}
        q["ms"] = float(ms)
        q["loss"] = float(loss)
        emu.rt_prio = rt_prio
        if emu not in touched:
            touched.append(emu)
    for emu in touched:
        _apply(topo, emu)


def delay_link(topo, ns, ifname, ms, loss=0.0, directions=("in", "out"),
               rt_prio=DEFAULT_RT_PRIO):
    """Delay (ms, one way) and drop (loss %) the packets entering ("in")
    and/or leaving ("out") interface ifname of namespace ns."""
    if isinstance(directions, str):
        directions = (directions,)
    _configure(topo, [(ns, ifname, d, ms, loss) for d in directions],
               rt_prio)


def delay_veth(topo, end1, end2, ms, loss=0.0, rt_prio=DEFAULT_RT_PRIO):
    """ms one-way delay (and loss % per direction) both ways on the link
    between end1 = (ns1, ifname1) and end2 = (ns2, ifname2): on ingress at
    each end."""
    _configure(topo, [(ns, ifname, "in", ms, loss)
                      for ns, ifname in (end1, end2)], rt_prio)


def delay_wan(topo, ms=25, links=T.WAN_IFS, loss=0.0,
              rt_prio=DEFAULT_RT_PRIO):
    """ms one-way delay (and loss % per direction) on each WAN link, both
    directions: on ingress at the far end (srv's wanN, or ispN's "cust"
    with Topology(isp=True)) for rtr -> srv, and in rtr for srv -> rtr."""
    if isinstance(links, str):
        links = (links,)
    ends = [("rtr", link) for link in links] + \
        [topo.wan_far_end(link) for link in links]
    _configure(topo, [(ns, dev, "in", ms, loss) for ns, dev in ends],
               rt_prio)


def undelay(topo, ns=None, ifname=None, check=True):
    """Remove delays: all, or those of namespace ns and/or interface
    ifname. With check, an emulator that had died or does not exit 0 on
    SIGTERM raises DelayError (after everything is cleaned up)."""
    errors = []
    for name, emu in list(_emus(topo).items()):
        if ns is not None and name != topo.nsname(ns):
            continue
        for key in list(emu.queues):
            if ifname is None or key[0] == ifname:
                del emu.queues[key]
        try:
            _apply(topo, emu, check)
        except DelayError as e:
            errors.append(str(e))
    if errors:
        raise DelayError("\n".join(errors))


def stats(topo, ns, reset=False, timeout=5.0):
    """The emulator's counters in ns (see the module doc)."""
    emu = _emu(topo, ns, create=False)
    d = emu.daemon if emu else None
    if d is None:
        raise DelayError("no delay emulator in %s" % topo.nsname(ns))
    if not d.running():
        raise DelayError("delayemu in %s has died (rc=%s):\n%s" % (
            emu.nsname, d.poll(), d.log(tail=30)))
    start = os.path.getsize(d.log_path)
    d.send_signal(signal.SIGUSR2 if reset else signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while True:
        with open(d.log_path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
        for line in text.splitlines(keepends=True):
            if line.startswith('{"delayemu"') and line.endswith("\n"):
                out = json.loads(line)
                for q in out["queues"]:
                    q["ifname"], q["direction"] = emu.by_num(q["queue"])
                return out
        if time.monotonic() > deadline:
            raise DelayError("delayemu in %s: no counters after %.0f s:\n%s"
                             % (emu.nsname, timeout, d.log(tail=20)))
        time.sleep(0.01)


def link_stats(topo, ns, ifname, direction="in", reset=False):
    for q in stats(topo, ns, reset)["queues"]:
        if q["ifname"] == ifname and q["direction"] == direction:
            return q
    raise DelayError("no delay on %s %s in %s" % (
        ifname, direction, topo.nsname(ns)))


def rtt(topo, ns, addr, count=50, interval=0.01, timeout=2.0):
    """ICMP echo RTTs from ns to addr (see test/tools/rttprobe.py)."""
    r = topo.run(ns, [T.PYTHON, RTTPROBE, "--count", str(count),
                      "--interval", str(interval), "--timeout", str(timeout),
                      addr], timeout=count * interval + timeout + 30)
    return json.loads(r.stdout)
