# SPDX-License-Identifier: GPL-2.0-or-later
"""The delay emulator (test/tools/delayemu.c driven by test/lib/delay.py):
added RTT, accuracy under a saturating transfer, random loss, bypass when it
dies, error messages.

RTTs are measured with test/tools/rttprobe.py (ICMP echo, user space to user
space) from rtr to srv's address on a WAN link; "base" is the same probe
without delay."""

import json
import subprocess
import time

import pytest

import delay
import topo as T

IPERF_PORT = 5299


@pytest.fixture
def delays(topology):
    """The session topology; every delay and shaping removed afterwards."""
    delay.binary_path()  # not built: fail here, with the make target
    yield topology
    try:
        delay.undelay(topology)
    finally:
        topology.unshape_wan()


def _rtt(topology, addr, count=50, interval=0.01, ns="rtr"):
    """Mean etc. of count probes, after a few to fill the neighbour cache."""
    delay.rtt(topology, ns, addr, count=3, interval=0.01)
    r = delay.rtt(topology, ns, addr, count=count, interval=interval)
    assert r["received"] == count, r
    return r["rtt_ms"]


def _fmt(r):
    return "mean %.3f min %.3f median %.3f max %.3f ms" % (
        r["mean"], r["min"], r["median"], r["max"])


def _rules(topology, ns):
    out = ""
    for tool in ("iptables", "ip6tables"):
        out += topology.run(ns, [tool, "-t", "mangle", "-S"]).stdout
    return [ln for ln in out.splitlines() if "NFQUEUE" in ln]


def test_rtt_grows_by_twice_the_delay(delays):
    t = delays
    base1 = _rtt(t, T.SRV_WAN1)
    base6 = _rtt(t, T.SRV_WAN1_6)
    base2 = _rtt(t, T.SRV_WAN2)

    delay.delay_wan(t, ms=25, links=("wan1",))
    for ns in ("rtr", "srv"):
        rules = _rules(t, ns)
        assert len(rules) == 2, rules  # iptables and ip6tables
        assert all("-i wan1" in r and "--queue-bypass" in r for r in rules)
        assert delay.emulator(t, ns).running()
    d1 = _rtt(t, T.SRV_WAN1)
    d6 = _rtt(t, T.SRV_WAN1_6)
    u2 = _rtt(t, T.SRV_WAN2)
    print("\nwan1 v4: base %s\n         25 ms each way: %s" % (_fmt(base1),
                                                            _fmt(d1)))
    print("wan1 v6: base %s\n         25 ms each way: %s" % (_fmt(base6),
                                                           _fmt(d6)))
    print("wan2 (no delay): before %s\n                 after %s" % (
        _fmt(base2), _fmt(u2)))
    for d, base in ((d1, base1), (d6, base6)):
        assert abs(d["mean"] - base["mean"] - 50.0) < 0.5, (d, base)
        assert d["min"] >= 50.0 - 0.002  # never early (stamps: 1 us)
    assert abs(u2["median"] - base2["median"]) < 0.5, (u2, base2)

    for ns in ("rtr", "srv"):
        s = delay.link_stats(t, ns, "wan1")
        print("%s wan1 in: %d packets, lateness mean %.4f max %.4f ms, "
              "kernel timestamps %d" % (ns, s["packets"], s["lateness_mean_ms"],
                                        s["lateness_max_ms"], s["kernel_ts"]))
        assert s["packets"] >= 106, s   # 2 x (3 + 50) echo requests/replies
        assert s["dropped"] == 0 and s["enobufs"] == 0, s
        assert s["kernel_queue_dropped"] == 0, s

    # changing the delay restarts the emulators with the new one
    delay.delay_wan(t, ms=5, links=("wan1",))
    d1 = _rtt(t, T.SRV_WAN1)
    assert abs(d1["mean"] - base1["mean"] - 10.0) < 0.5, d1

    delay.undelay(t)
    for ns in ("rtr", "srv"):
        assert _rules(t, ns) == []
        assert delay.emulator(t, ns) is None
        assert "mangle" not in t.run(ns, ["nft", "list", "tables"]).stdout
    assert _rtt(t, T.SRV_WAN1)["mean"] < base1["mean"] + 0.5


def test_other_links(delays):
    """srv <-> dst + 0.5 ms (delay_veth: ingress at both ends); and both
    directions in one namespace (delay_link "in" + "out" in rtr)."""
    t = delays
    base_dst = _rtt(t, T.DST4, ns="srv")
    base2 = _rtt(t, T.SRV_WAN2)
    delay.delay_veth(t, ("srv", T.SRV_INET_IF), ("dst", T.DST_IF), 0.25)
    delay.delay_link(t, "rtr", "wan2", 5, directions=("in", "out"))
    d_dst = _rtt(t, T.DST4, ns="srv")
    d2 = _rtt(t, T.SRV_WAN2)
    print("\nsrv -> dst, 0.25 ms each way: base %s\n    delayed %s" % (
        _fmt(base_dst), _fmt(d_dst)))
    print("rtr -> srv wan2, 5 ms in + out in rtr: base %s\n    delayed %s" % (
        _fmt(base2), _fmt(d2)))
    # medians: these check the wiring; accuracy is the other tests' job
    assert abs(d_dst["median"] - base_dst["median"] - 0.5) < 0.25, d_dst
    assert d_dst["min"] >= 0.5 - 0.002
    assert abs(d2["median"] - base2["median"] - 10) < 0.5, d2
    assert len(_rules(t, "rtr")) == 4  # in + out, v4 + v6
    assert len(_rules(t, "dst")) == 2
    delay.undelay(t, ns="dst")
    assert delay.emulator(t, "dst") is None and _rules(t, "dst") == []
    assert delay.emulator(t, "srv").running()


def test_accuracy_under_load(delays):
    """wan1 shaped to 50 Mbit/s both ways and saturated by iperf3 --bidir,
    25 ms each way on wan1 and wan2: the emulators' lateness, and the RTT of
    a probe on wan2 (unshaped, same emulator processes) during the load."""
    t = delays
    base = _rtt(t, T.SRV_WAN2)
    t.shape_wan(rate_mbit=50, links=("wan1",))
    delay.delay_wan(t, ms=25)
    server = t.spawn("srv", ["iperf3", "-s", "-B", T.SRV_WAN1, "-p",
                             str(IPERF_PORT)], "iperf3-delayemu")
    try:
        t.wait_for_port("srv", T.SRV_WAN1, IPERF_PORT, proc=server)
        client = t.popen("rtr", ["iperf3", "-c", T.SRV_WAN1, "-p",
                                 str(IPERF_PORT), "-t", "8", "--bidir", "-J"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        try:
            time.sleep(2.0)  # past slow start
            for ns in ("rtr", "srv"):
                delay.stats(t, ns, reset=True)
            probe = delay.rtt(t, "rtr", T.SRV_WAN2, count=400, interval=0.01)
            st = {ns: delay.stats(t, ns) for ns in ("rtr", "srv")}
            out, err = client.communicate(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    finally:
        server.stop()
        t.daemons.remove(server)
    assert client.returncode == 0, err
    end = json.loads(out)["end"]
    up = end["sum_sent"]["bits_per_second"] / 1e6
    down = end["sum_sent_bidir_reverse"]["bits_per_second"] / 1e6

    print("\niperf3 --bidir over wan1 (tbf 50 Mbit/s, 25 ms each way): "
          "rtr->srv %.1f Mbit/s, srv->rtr %.1f Mbit/s" % (up, down))
    for ns in ("rtr", "srv"):
        for q in st[ns]["queues"]:
            print("%s %s in: %6d packets (%5d GSO), lateness mean %.4f "
                  "max %.4f ms, %d > %.1f ms; kernel timestamps %d, read lag "
                  "mean %.4f ms; %d sends, mean %.4f max %.4f ms" % (
                      ns, q["ifname"], q["packets"], q["gso"],
                      q["lateness_mean_ms"], q["lateness_max_ms"], q["late"],
                      q["late_threshold_ms"], q["kernel_ts"],
                      q["read_lag_mean_ms"], q["sends"], q["send_mean_ms"],
                      q["send_max_ms"]))
    r = probe["rtt_ms"]
    err_ms = r["mean"] - base["mean"] - 50.0
    print("probe over wan2 during the load: %s; base %.3f ms; error of the "
          "mean vs base + 50 ms: %+.3f ms; lost %d/%d" % (
              _fmt(r), base["mean"], err_ms, probe["lost"], probe["sent"]))

    assert up > 35 and down > 35, (up, down)  # the link is saturated
    for ns in ("rtr", "srv"):
        for q in st[ns]["queues"]:
            assert q["enobufs"] == 0 and q["kernel_user_dropped"] == 0, q
            assert q["kernel_queue_dropped"] == 0, q
            assert q["lateness_mean_ms"] < 0.5, q
            if q["ifname"] == "wan1":
                assert q["packets"] > 1000, q  # it did carry the load
    assert probe["lost"] == 0, probe
    assert abs(err_ms) < 0.5, (r, base)


def test_loss(delays):
    """10 % loss on rtr -> srv over wan2: about 10 % of 1000 echo requests
    are lost, and exactly those the emulator dropped."""
    t = delays
    delay.delay_link(t, "srv", "wan2", 1, loss=10, directions="in")
    r = delay.rtt(t, "rtr", T.SRV_WAN2, count=1000, interval=0.005,
                  timeout=1.0)
    s = delay.link_stats(t, "srv", "wan2")
    print("\n10 %% loss: %d of %d probes lost (%.1f %%); emulator: %d packets, "
          "%d dropped" % (r["lost"], r["sent"], 100 * r["loss"], s["packets"],
                          s["dropped"]))
    assert 0.06 <= r["loss"] <= 0.14, r["loss"]
    assert r["lost"] <= s["dropped"] <= r["lost"] + 3, (r["lost"], s)
    assert s["gso_enabled"] is False  # loss per wire packet
    assert r["rtt_ms"]["min"] >= 1.0 - 0.002


def test_bypass_when_the_emulator_dies(delays):
    """--queue-bypass: with the emulator killed, packets pass undelayed;
    undelay() reports the dead emulator and still removes everything."""
    t = delays
    base = _rtt(t, T.SRV_WAN2, count=20)["median"]
    delay.delay_wan(t, ms=10, links=("wan2",))
    assert abs(_rtt(t, T.SRV_WAN2, count=20)["median"] - base - 20) < 0.5
    delay.emulator(t, "srv").kill()
    # only rtr's ingress delay is left
    assert abs(_rtt(t, T.SRV_WAN2, count=20)["median"] - base - 10) < 0.5
    with pytest.raises(delay.DelayError, match="had died"):
        delay.undelay(t)
    for ns in ("rtr", "srv"):
        assert _rules(t, ns) == []
        assert delay.emulator(t, ns) is None
    assert not [d for d in t.daemons if d.name.startswith("delayemu")]


def test_errors(delays):
    t = delays
    b = delay.binary_path()
    for args, msg in (
            ([], "no --queue given"),
            (["--queue", "1"], "expected NUM:DELAY_MS[:LOSS_PCT]"),
            (["--queue", "70000:5"], "queue number must be 0..65535"),
            (["--queue", "1:-3"], "delay must be 0..60000 ms"),
            (["--queue", "1:5:101"], "loss must be 0..100 %"),
            (["--queue", "1:5", "--queue", "1:6"], "queue 1 given twice"),
            (["--queue", "1:5", "extra"], "unexpected argument 'extra'")):
        r = subprocess.run([b] + args, capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1, (args, r)
        assert r.stderr.startswith("delayemu: ") and msg in r.stderr, (
            args, r.stderr)
    delay.delay_link(t, "srv", "wan2", 5, directions="in")
    num = delay.link_stats(t, "srv", "wan2")["queue"]
    r = t.run("srv", [b, "--queue", "%d:5" % num], check=False, timeout=10)
    assert r.returncode == 1
    assert ("delayemu: queue %d: bind: Operation not permitted (already bound"
            % num) in r.stderr, r.stderr
    r = t.run("srv", ["setpriv", "--reuid=65534", "--regid=65534",
                      "--clear-groups", b, "--queue", "7:5"], check=False,
              timeout=10)
    assert r.returncode == 1
    assert r.stderr == "delayemu: queue 7: bind: Operation not permitted\n"
