#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Raw TCP test clients, run inside a namespace (there is no nc here):

  Common options: --timeout S, --mptcp (IPPROTO_MPTCP socket),
  --socks ADDR:PORT[:USER:PASS] (through a SOCKS5 server; HOST an IP),
  --mark N (SO_MARK on the socket, decimal or 0x-hex: policy routing by
  fwmark, as mpredir's upstream sockets).

  netclient.py halfclose HOST PORT [--send N]
      connect, send N pattern bytes (offset 777), shutdown(SHUT_WR), read
      until EOF; the half-close service answers only after the client's FIN.
  netclient.py banner HOST PORT [--send N]
      connect, read the banner line before sending anything (server speaks
      first), send N pattern bytes, read the echo, shutdown(SHUT_WR), read
      until EOF.
  netclient.py readline HOST PORT
      connect, print the first line the server sends.
  netclient.py get HOST PORT --path /bytes/N
      HTTP/1.0 GET; prints the status, the body's size and sha256.

  netclient.py origdst-server BIND PORT
      (a server, for checking redirect rules without mpredir) accept on
      BIND:PORT (dual-stack on "::"); for each connection send one line
      "ORIGDST <addr> <port>\n" from SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST
      for IPv6 peers) or "ORIGDST-ERROR <errno text>\n", then close.

Clients print one JSON object on stdout. Exit 0 when the exchange completed (the
caller checks the content), 2 on a socket error or time-out (JSON carries
"error").
"""

import argparse
import hashlib
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools"))
import httpd  # noqa: E402  (pattern stream)

SEND_OFFSET = 777


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise ConnectionError("SOCKS server closed the connection")
        buf += d
    return buf


def socks5_connect(up, host, port, username=None, password=None):
    """SOCKS5 handshake + CONNECT to an IP literal on connected socket up."""
    up.sendall(b"\x05\x01" + (b"\x02" if username is not None else b"\x00"))
    _, method = _recv_exact(up, 2)
    if method == 0x02:
        u, p = username.encode(), password.encode()
        up.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        if _recv_exact(up, 2)[1] != 0:
            raise ConnectionError("SOCKS authentication failed")
    elif method != 0x00:
        raise ConnectionError("SOCKS method %#x refused" % method)
    if ":" in host:
        addr = b"\x04" + socket.inet_pton(socket.AF_INET6, host)
    else:
        addr = b"\x01" + socket.inet_pton(socket.AF_INET, host)
    up.sendall(b"\x05\x01\x00" + addr + port.to_bytes(2, "big"))
    rep = _recv_exact(up, 4)
    if rep[1] != 0:
        raise ConnectionError("SOCKS CONNECT reply %d" % rep[1])
    if rep[3] == 1:
        n = 4
    elif rep[3] == 4:
        n = 16
    else:
        n = _recv_exact(up, 1)[0]
    _recv_exact(up, n + 2)  # BND.ADDR, BND.PORT


def _connect(host, port, timeout, mptcp, socks=None, mark=0):
    """Connect to host:port, directly or through socks = "ADDR:PORT" or
    "ADDR:PORT:USER:PASS" (a SOCKS5 server, given as an IPv4 literal).
    mark: SO_MARK of the socket (0: none)."""
    if socks:
        f = socks.split(":")
        s = _connect(f[0], int(f[1]), timeout, mptcp, mark=mark)
        socks5_connect(s, host, port, *(f[2:4] if len(f) >= 4 else ()))
        return s
    last = None
    for fam, typ, proto, _, addr in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM):
        proto = 262 if mptcp else proto  # IPPROTO_MPTCP
        s = socket.socket(fam, typ, proto)
        if mark:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        s.settimeout(timeout)
        try:
            s.connect(addr)
            return s
        except OSError as e:
            last = e
            s.close()
    raise last or OSError("no address for %s" % host)


def _send_pattern(s, n):
    for c in httpd.pattern_chunks(n, SEND_OFFSET):
        s.sendall(c)


def _recv_all(s, h):
    total = 0
    while True:
        d = s.recv(1 << 18)
        if not d:
            return total
        h.update(d)
        total += len(d)


def halfclose(a):
    res = {"sent": 0, "received": 0}
    t0 = time.monotonic()
    s = _connect(a.host, a.port, a.timeout, a.mptcp, a.socks, a.mark)
    _send_pattern(s, a.send)
    res["sent"] = a.send
    s.shutdown(socket.SHUT_WR)
    h = hashlib.sha256()
    res["received"] = _recv_all(s, h)
    res["sha256"] = h.hexdigest()
    res["elapsed"] = time.monotonic() - t0
    s.close()
    return res


def banner(a):
    res = {}
    t0 = time.monotonic()
    s = _connect(a.host, a.port, a.timeout, a.mptcp, a.socks, a.mark)
    buf = b""
    while b"\n" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    line, sep, rest = buf.partition(b"\n")
    res["banner"] = (line + sep).decode("latin-1")
    res["banner_elapsed"] = time.monotonic() - t0
    want = httpd.pattern(a.send, SEND_OFFSET)
    got = bytearray(rest)
    # Send and read concurrently enough for small sizes: interleave.
    view = memoryview(want)
    pos = 0
    while pos < len(want) or len(got) < len(want):
        if pos < len(want):
            n = s.send(view[pos:pos + (1 << 16)])
            pos += n
        if len(got) < pos:
            d = s.recv(1 << 16)
            if not d:
                break
            got += d
    res["echo_ok"] = bytes(got[:len(want)]) == want
    res["echoed"] = len(got)
    s.shutdown(socket.SHUT_WR)
    h = hashlib.sha256()
    res["trailing"] = _recv_all(s, h)
    res["elapsed"] = time.monotonic() - t0
    s.close()
    return res


SO_ORIGINAL_DST = 80       # linux/netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv6/ip6_tables.h


def original_dst(conn):
    """(addr, port) that conn was sent to before a redirect/DNAT."""
    peer = conn.getpeername()[0]
    if conn.family == socket.AF_INET or peer.startswith("::ffff:"):
        # IPv4, also on a dual-stack IPv6 socket (v4-mapped peer): the
        # SOL_IP getsockopt of an AF_INET6 TCP socket reaches ip_getsockopt.
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port = int.from_bytes(raw[2:4], "big")
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    raw = conn.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
    port = int.from_bytes(raw[2:4], "big")
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port


def origdst_server(bind, port):
    fam = socket.AF_INET6 if ":" in bind else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind((bind, port))
    ls.listen(64)
    while True:
        conn, _ = ls.accept()
        try:
            try:
                addr, oport = original_dst(conn)
                line = "ORIGDST %s %d\n" % (addr, oport)
            except OSError as e:
                line = "ORIGDST-ERROR %s\n" % e
            conn.sendall(line.encode())
        except OSError:
            pass
        finally:
            conn.close()


def readline(a):
    """Connect and return the first line the server sends."""
    s = _connect(a.host, a.port, a.timeout, a.mptcp, a.socks, a.mark)
    buf = b""
    while b"\n" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    s.close()
    return {"line": buf.decode("latin-1").rstrip("\r\n")}


def get(a):
    """HTTP/1.0 GET a.path; hash the body as it arrives."""
    t0 = time.monotonic()
    s = _connect(a.host, a.port, a.timeout, a.mptcp, a.socks, a.mark)
    host = "[%s]" % a.host if ":" in a.host else a.host
    s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (a.path, host))
              .encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise ConnectionError("closed before the end of the headers")
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    h = hashlib.sha256(body)
    n = len(body) + _recv_all(s, h)
    s.close()
    return {"status": status, "received": n, "sha256": h.hexdigest(),
            "elapsed": time.monotonic() - t0}


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["origdst-server"]:
        origdst_server(argv[1], int(argv[2]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("halfclose", "banner", "readline",
                                     "get"))
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--send", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--mptcp", action="store_true",
                    help="use an IPPROTO_MPTCP socket")
    ap.add_argument("--socks", metavar="ADDR:PORT[:USER:PASS]",
                    help="go through this SOCKS5 server")
    ap.add_argument("--mark", type=lambda v: int(v, 0), default=0,
                    help="SO_MARK of the socket")
    ap.add_argument("--path", default="/", help="get: the URL path")
    a = ap.parse_args(argv)
    try:
        res = {"halfclose": halfclose, "banner": banner,
               "readline": readline, "get": get}[a.mode](a)
        rc = 0
    except (OSError, socket.timeout) as e:
        res = {"error": "%s: %s" % (type(e).__name__, e)}
        rc = 2
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
