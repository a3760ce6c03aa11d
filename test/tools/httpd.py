#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Test services for the "Internet" host (dst) of the e2e topology.

Stdlib only; runs as a script inside the dst namespace, and is imported by the
test library for `pattern()` / `pattern_sha256()` (the expected content).

Services (all dual-stack on "::" unless --bind says otherwise):
  HTTP/1.1 (default port 80), threaded, keep-alive:
    GET  /                -> "ok\\n"
    GET  /bytes/N         -> the first N bytes of the pattern stream
    PUT|POST /upload      -> body read (Content-Length or chunked); the reply
                             is the hex sha256 of the body + "\\n", and header
                             X-Body-Length carries the body length
  half-close (default port 81): reads until the client's EOF (its FIN), then
    sends HALFCLOSE_BYTES (4 MiB) of the pattern stream and closes.  The
    number of bytes read is not echoed: the client checks that its data
    went through by the reply arriving at all after its shutdown(SHUT_WR).
  banner (default port 25): on accept sends BANNER at once (server speaks
    first), then echoes whatever it receives until EOF.

The pattern stream is pseudo-random and deterministic: block i (1 MiB) is
SHAKE-256(b"mpredir-test-pattern" + i as 8 bytes big-endian). Blocks are
cached, so serving 64 MiB costs a few memory copies per MiB.

Usage: httpd.py --pidfile FILE [--bind ADDR] [--http-port 80]
                [--halfclose-port 81] [--banner-port 25]
The pidfile is written once every listener is bound (a ready signal).
"""

import argparse
import hashlib
import os
import signal
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

BLOCK = 1 << 20
SEED = b"mpredir-test-pattern"
HALFCLOSE_BYTES = 4 << 20
BANNER = b"220 mpredir-test banner ready\r\n"
MAX_CACHED_BLOCKS = 256  # 256 MiB at most

_cache = {}
_cache_lock = threading.Lock()


def _block(i):
    b = _cache.get(i)
    if b is not None:
        return b
    b = hashlib.shake_256(SEED + i.to_bytes(8, "big")).digest(BLOCK)
    if i < MAX_CACHED_BLOCKS:
        with _cache_lock:
            _cache.setdefault(i, b)
    return b


def pattern_chunks(n, offset=0):
    """Yield the pattern stream's bytes [offset, offset+n) as memoryviews."""
    end = offset + n
    pos = offset
    while pos < end:
        i, off = divmod(pos, BLOCK)
        take = min(BLOCK - off, end - pos)
        yield memoryview(_block(i))[off:off + take]
        pos += take


def pattern(n, offset=0):
    """The pattern stream's bytes [offset, offset+n) as one bytes object."""
    return b"".join(pattern_chunks(n, offset))


def pattern_sha256(n, offset=0):
    """Hex sha256 of pattern(n, offset), computed without one big buffer."""
    h = hashlib.sha256()
    for c in pattern_chunks(n, offset):
        h.update(c)
    return h.hexdigest()


class _V6Mixin:
    """Listen on an IPv6 socket; dual-stack when bound to "::"."""

    address_family = socket.AF_INET6
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Not HTTPServer.server_bind: it calls socket.getfqdn(), a DNS
        # lookup that can hang in a namespace without a resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]


def _server_class(base, addr):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    # In the class dict: ThreadingMixIn's own daemon_threads = False and
    # block_on_close = True would win over _V6Mixin's in the MRO, and then
    # SIGTERM would wait for every handler (one blocked on a dead peer).
    return type(base.__name__ + "Srv", (socketserver.ThreadingMixIn, _V6Mixin, base),
                {"address_family": fam, "daemon_threads": True,
                 "block_on_close": False})


# A peer that vanishes without a RST must not pin a handler thread forever.
IO_TIMEOUT = 120


class HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mpredir-test-httpd/1"
    timeout = IO_TIMEOUT

    def log_message(self, fmt, *args):  # quiet: tests read stdout only on failure
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _reply(self, code, body, ctype="text/plain", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._reply(200, b"ok\n")
        if path.startswith("/bytes/"):
            try:
                n = int(path[len("/bytes/"):])
                if n < 0:
                    raise ValueError
            except ValueError:
                return self._reply(400, b"bad length\n")
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command == "HEAD":
                return None
            for c in pattern_chunks(n):
                self.wfile.write(c)
            return None
        return self._reply(404, b"not found\n")

    do_HEAD = do_GET

    def _read_body(self, h):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        rfile = self.rfile
        total = 0
        if "chunked" in te:
            while True:
                line = rfile.readline(1024)
                if not line:
                    raise ConnectionError("EOF in chunk size")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return total
                left = size
                while left:
                    d = rfile.read(min(left, 1 << 20))
                    if not d:
                        raise ConnectionError("EOF in chunk")
                    h.update(d)
                    left -= len(d)
                    total += len(d)
                rfile.readline(16)  # CRLF after chunk data
        n = int(self.headers.get("Content-Length") or 0)
        left = n
        while left:
            d = rfile.read(min(left, 1 << 20))
            if not d:
                raise ConnectionError("EOF in body")
            h.update(d)
            left -= len(d)
            total += len(d)
        return total

    def _upload(self):
        if self.path.split("?", 1)[0] != "/upload":
            return self._reply(404, b"not found\n")
        # "Expect: 100-continue" (curl sends it for bodies > 1 MiB) is
        # answered by BaseHTTPRequestHandler.handle_expect_100 already.
        h = hashlib.sha256()
        n = self._read_body(h)
        return self._reply(200, (h.hexdigest() + "\n").encode(),
                           extra={"X-Body-Length": str(n)})

    do_PUT = _upload
    do_POST = _upload


class HalfCloseHandler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.settimeout(IO_TIMEOUT)
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
        for c in pattern_chunks(HALFCLOSE_BYTES):
            s.sendall(c)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class BannerHandler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.settimeout(IO_TIMEOUT)
        s.sendall(BANNER)
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            s.sendall(d)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--bind", default="::")
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--halfclose-port", type=int, default=81)
    ap.add_argument("--banner-port", type=int, default=25)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)

    # Warm the cache for the common sizes (64 MiB) in the background so the
    # first big download is not slowed by hashing.
    threading.Thread(target=lambda: [_block(i) for i in range(64)],
                     daemon=True).start()

    servers = []
    http_cls = _server_class(HTTPServer, a.bind)
    httpd = http_cls((a.bind, a.http_port), HTTPHandler)
    httpd.verbose = a.verbose
    servers.append(httpd)
    for port, handler in ((a.halfclose_port, HalfCloseHandler),
                          (a.banner_port, BannerHandler)):
        if port:
            cls = _server_class(socketserver.TCPServer, a.bind)
            servers.append(cls((a.bind, port), handler))

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    threads = []
    for s in servers:
        t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                             daemon=True)
        t.start()
        threads.append(t)

    tmp = a.pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, a.pidfile)
    sys.stdout.flush()
    try:
        while True:
            signal.pause()
    finally:
        for s in servers:
            s.server_close()
        try:
            os.unlink(a.pidfile)
        except OSError:
            pass


if __name__ == "__main__":
    main()
