# SPDX-License-Identifier: GPL-2.0-or-later
"""Client-side helpers: download/upload with curl and raw TCP exchanges
(netclient.py), run inside a namespace, checked against the deterministic
content of test/tools/httpd.py."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time

import topo as T

sys.path.insert(0, os.path.join(T.REPO_ROOT, "test", "tools"))
import httpd  # noqa: E402

NETCLIENT = os.path.join(T.HERE, "netclient.py")
HALFCLOSE_BYTES = httpd.HALFCLOSE_BYTES
BANNER = httpd.BANNER.decode()
UPLOAD_OFFSET = 12345  # uploads use another slice of the pattern stream


def expected_sha256(n, offset=0):
    """sha256 of GET /bytes/n (offset 0) or of another pattern slice."""
    return httpd.pattern_sha256(n, offset)


def host_in_url(host):
    return "[%s]" % host if ":" in host else host


def bytes_url(host, n, port=T.HTTP_PORT):
    return "http://%s:%d/bytes/%d" % (host_in_url(host), port, n)


def upload_url(host, port=T.HTTP_PORT):
    return "http://%s:%d/upload" % (host_in_url(host), port)


@dataclasses.dataclass
class FetchResult:
    rc: int            # curl exit status
    http_code: int     # 0 if no response
    size: int          # body bytes received
    sha256: str        # of the body
    elapsed: float     # seconds, wall clock around curl
    stderr: str

    def ok(self, n):
        """Complete, intact GET /bytes/n?"""
        return (self.rc == 0 and self.http_code == 200 and self.size == n
                and self.sha256 == expected_sha256(n))

    @property
    def mbit_s(self):
        return self.size * 8 / 1e6 / self.elapsed if self.elapsed else 0.0


def _curl_argv(url, args, timeout, mptcp):
    argv = ["curl", "-sS", "--max-time", str(timeout), "-o", "-",
            "-w", "%{stderr}\nHTTP_CODE=%{http_code}\n"] + list(args) + [url]
    return (["mptcpize", "run"] + argv) if mptcp else argv


def _parse_code(stderr):
    code = 0
    lines = []
    for line in stderr.splitlines():
        if line.startswith("HTTP_CODE="):
            code = int(line[len("HTTP_CODE="):] or 0)
        elif line:
            lines.append(line)
    return code, "\n".join(lines)


def fetch(topology, ns, url, args=(), mptcp=False, timeout=60):
    """curl URL in ns; hash the body as it streams (no temp file).
    args: extra curl arguments (e.g. SocksServer.curl_args()).
    mptcp: run curl under `mptcpize run`."""
    argv = topology._argv(ns, _curl_argv(url, args, timeout, mptcp))
    h = hashlib.sha256()
    size = 0
    t0 = time.monotonic()
    with open(os.devnull, "rb") as devnull, \
            _TempText(topology.workdir) as errf:
        p = subprocess.Popen(argv, stdin=devnull, stdout=subprocess.PIPE,
                             stderr=errf.f)
        try:
            while True:
                d = p.stdout.read(1 << 20)
                if not d:
                    break
                h.update(d)
                size += len(d)
            rc = p.wait(timeout + 10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        elapsed = time.monotonic() - t0
        code, err = _parse_code(errf.read())
    return FetchResult(rc, code, size, h.hexdigest(), elapsed, err)


@dataclasses.dataclass
class UploadResult:
    rc: int
    http_code: int
    server_sha256: str   # what the server computed
    sha256: str          # what was sent
    size: int
    elapsed: float
    stderr: str

    @property
    def ok(self):
        return (self.rc == 0 and self.http_code == 200
                and self.server_sha256 == self.sha256)


def upload(topology, ns, url, nbytes, args=(), mptcp=False, timeout=60):
    """PUT nbytes (pattern slice at UPLOAD_OFFSET) to /upload; the server
    replies with the sha256 of what it received."""
    path = os.path.join(topology.workdir, "upload-%d.bin" % nbytes)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            for c in httpd.pattern_chunks(nbytes, UPLOAD_OFFSET):
                f.write(c)
        os.replace(path + ".tmp", path)
    argv = _curl_argv(url, ["-T", path] + list(args), timeout, mptcp)
    t0 = time.monotonic()
    r = topology.run(ns, argv, check=False, timeout=timeout + 10)
    elapsed = time.monotonic() - t0
    code, err = _parse_code(r.stderr)
    return UploadResult(r.returncode, code, r.stdout.strip(),
                        expected_sha256(nbytes, UPLOAD_OFFSET), nbytes,
                        elapsed, err)


def _socks_arg(socks):
    """SocksServer -> netclient's --socks value."""
    v = "%s:%d" % (socks.address, socks.port)
    if socks.auth:
        v += ":%s:%s" % (socks.username, socks.password)
    return v


def _netclient(topology, ns, mode, host, port, send, timeout, mptcp,
               socks=None):
    argv = [T.PYTHON, NETCLIENT, mode, host, str(port), "--send", str(send),
            "--timeout", str(timeout)]
    if mptcp:
        argv.append("--mptcp")
    if socks is not None:
        argv += ["--socks", _socks_arg(socks)]
    r = topology.run(ns, argv, check=False, timeout=timeout * 3 + 10)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"error": "no JSON: rc=%d stdout=%r stderr=%r" % (
            r.returncode, r.stdout, r.stderr)}
    res["rc"] = r.returncode
    return res


def halfclose(topology, ns, host, port=T.HALFCLOSE_PORT, send=100_000,
              timeout=20, mptcp=False, socks=None):
    """Send `send` bytes, shutdown(SHUT_WR), read the reply to EOF.
    socks: a SocksServer to go through (host must be an IP literal).
    Result dict: rc, sent, received, sha256, ok (reply complete and intact).
    """
    res = _netclient(topology, ns, "halfclose", host, port, send, timeout,
                     mptcp, socks)
    res["ok"] = (res["rc"] == 0 and res.get("received") == HALFCLOSE_BYTES
                 and res.get("sha256") == expected_sha256(HALFCLOSE_BYTES))
    return res


def banner(topology, ns, host, port=T.BANNER_PORT, send=10_000, timeout=20,
           mptcp=False, socks=None):
    """Read the banner before sending, then check the echo of `send` bytes.
    Result dict: rc, banner, echo_ok, ok."""
    res = _netclient(topology, ns, "banner", host, port, send, timeout, mptcp,
                     socks)
    res["ok"] = (res["rc"] == 0 and res.get("banner") == BANNER
                 and res.get("echo_ok") is True)
    return res


def readline(topology, ns, host, port, timeout=10, mptcp=False, socks=None):
    """Connect and return the first line the server sends ("" if none);
    None on a connection error."""
    res = _netclient(topology, ns, "readline", host, port, 0, timeout, mptcp,
                     socks)
    return res.get("line") if res["rc"] == 0 else None


def get(topology, ns, host, nbytes, port=T.HTTP_PORT, timeout=60,
        mptcp=False, socks=None, mark=0):
    """GET /bytes/nbytes with netclient.py (a Python socket: unlike curl it
    can set SO_MARK, e.g. mpredir's upstream mark, so that fwmark rules
    route it). socks: a SocksServer to go through. Result dict: rc,
    status, received, sha256, elapsed, ok (complete and intact)."""
    argv = [T.PYTHON, NETCLIENT, "get", host, str(port), "--path",
            "/bytes/%d" % nbytes, "--timeout", str(timeout)]
    if mptcp:
        argv.append("--mptcp")
    if socks is not None:
        argv += ["--socks", _socks_arg(socks)]
    if mark:
        argv += ["--mark", str(int(mark))]
    r = topology.run(ns, argv, check=False, timeout=timeout * 3 + 10)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"error": "no JSON: rc=%d stdout=%r stderr=%r" % (
            r.returncode, r.stdout, r.stderr)}
    res["rc"] = r.returncode
    res["ok"] = (res["rc"] == 0 and res.get("status") == 200
                 and res.get("received") == nbytes
                 and res.get("sha256") == expected_sha256(nbytes))
    return res


def start_origdst_server(topology, port, ns="rtr", bind="::"):
    """A stand-in for mpredir's listener: answers each connection with
    "ORIGDST <addr> <port>" (SO_ORIGINAL_DST) and closes. Returns the
    Daemon (stopped at teardown, or by the caller)."""
    d = topology.spawn(ns, [T.PYTHON, NETCLIENT, "origdst-server", bind,
                            str(port)], "origdst-%d" % port)
    topology.wait_for_port(ns, bind, port, proc=d)
    return d


class _TempText:
    """A temp file for a child's stderr (no pipe to drain concurrently)."""

    def __init__(self, d):
        self.d = d

    def __enter__(self):
        import tempfile
        self.f = tempfile.TemporaryFile(dir=self.d)
        return self

    def read(self):
        self.f.seek(0)
        return self.f.read().decode("utf-8", "replace")

    def __exit__(self, *exc):
        self.f.close()
