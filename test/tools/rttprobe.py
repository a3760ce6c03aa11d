#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP echo round-trip probe (IPv4 and IPv6), stdlib only, run as root.

    rttprobe.py [--count 50] [--interval 0.01] [--timeout 2] ADDR

Sends COUNT echo requests, one every INTERVAL seconds, waits up to TIMEOUT
seconds after the last one, and prints one JSON object on stdout: sent,
received, lost, loss (fraction), and over the replies rtt_ms mean, min, max,
median, p90, stdev, plus every rtt in order ("rtts", ms; null for a lost
probe).

Unlike ping(8), the RTT is user space to user space (time.monotonic_ns at
send and at receive). ping's default RTT uses the kernel's receive timestamp
(SO_TIMESTAMP), taken when the reply enters the namespace, before the
PREROUTING hook: a delay added there by delayemu (test/lib/delay.py) would
not show. (`ping -U` measures user to user too; iputils-ping is not a
dependency of the tests.)
"""

import argparse
import json
import os
import select
import socket
import statistics
import struct
import sys
import time


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def probe(addr, count, interval, timeout):
    v6 = ":" in addr
    if v6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                             socket.IPPROTO_ICMPV6)
        req_type, rep_type = 128, 129
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW,
                             socket.IPPROTO_ICMP)
        req_type, rep_type = 8, 0
    sock.setblocking(False)
    ident = (os.getpid() ^ int.from_bytes(os.urandom(2), "big")) & 0xFFFF
    dest = (addr, 0, 0, 0) if v6 else (addr, 0)
    sent_at = {}
    rtts = [None] * count
    sent = 0
    interval_ns = int(interval * 1e9)
    start = time.monotonic_ns()
    next_send = start
    deadline = None

    def send(seq):
        payload = struct.pack("!Q", seq) + b"delayemu-rttprobe"
        hdr = struct.pack("!BBHHH", req_type, 0, 0, ident, seq & 0xFFFF)
        if not v6:  # the kernel fills in the ICMPv6 checksum
            hdr = struct.pack("!BBHHH", req_type, 0, _csum(hdr + payload),
                              ident, seq & 0xFFFF)
        sent_at[seq] = time.monotonic_ns()
        sock.sendto(hdr + payload, dest)

    def receive():
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                return
            now = time.monotonic_ns()
            if not v6:
                data = data[(data[0] & 0x0F) * 4:]  # skip the IPv4 header
            if len(data) < 16:
                continue
            typ, _code, _ck, rid, _rseq = struct.unpack("!BBHHH", data[:8])
            if typ != rep_type or rid != ident:
                continue
            seq = struct.unpack("!Q", data[8:16])[0]
            if seq < count and rtts[seq] is None and seq in sent_at:
                rtts[seq] = (now - sent_at[seq]) / 1e6

    while True:
        now = time.monotonic_ns()
        if sent < count and now >= next_send:
            send(sent)
            sent += 1
            next_send += interval_ns
            if sent == count:
                deadline = time.monotonic_ns() + int(timeout * 1e9)
            continue
        if deadline is not None and (now >= deadline or
                                     all(r is not None for r in rtts)):
            break
        wake = next_send if sent < count else deadline
        r, _, _ = select.select([sock], [], [], max(0.0, (wake - now) / 1e9))
        if r:
            receive()
    sock.close()
    got = [r for r in rtts if r is not None]
    out = {"addr": addr, "sent": sent, "received": len(got),
           "lost": sent - len(got), "loss": (sent - len(got)) / sent,
           "rtts": rtts}
    if got:
        q = sorted(got)
        out["rtt_ms"] = {
            "mean": statistics.fmean(got), "min": q[0], "max": q[-1],
            "median": statistics.median(q), "p90": q[int(0.9 * (len(q) - 1))],
            "stdev": statistics.pstdev(got)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("addr")
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=2.0)
    a = ap.parse_args()
    if a.count < 1 or a.interval < 0 or a.timeout < 0:
        ap.error("count >= 1, interval >= 0, timeout >= 0")
    try:
        res = probe(a.addr, a.count, a.interval, a.timeout)
    except OSError as e:
        print("rttprobe: %s: %s" % (a.addr, e), file=sys.stderr)
        return 1
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
