# SPDX-License-Identifier: GPL-2.0-or-later
r"""The relay's two ways of moving bytes, its bounds and its footprint, end
to end: copy through the thread's read buffer, or (a bulk direction from
a TCP socket) splice() through a pipe that is given back once the
direction is idle.

  lan ──── rtr (nft redirect → mpredir) ══ wan1 / wan2 ══ srv (SOCKS5) ── dst
  clients                                                            httpd.py
(the full drawing is in test/lib/topo.py)

The relay never splices from an MPTCP socket (it would cost more than
copying: see redirector/relay.c): the tests that need pipes both ways run
the daemon with `upstream.mptcp: false`. Pipes are seen as the daemon's
descriptors
(/proc/PID/fd "pipe:[...]"), counted from what it holds when idle.
Figures (throughput, CPU per GB, bytes per idle flow) come from
test/bench/relay_perf.py; the bounds here are loose on purpose.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

import clients
import mpredir_daemon
import topo as T

sys.path.insert(0, os.path.join(T.REPO_ROOT, "test", "bench"))
import relay_perf  # noqa: E402

MiB = 1 << 20
BUFFER = 65536  # relay.buffer_size, default


def pipes(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("pipe:")
        except OSError:
            pass
    return n


class PipeWatch:
    """Polls the daemon's pipe count in the background; .most is the
    highest seen."""

    def __init__(self, pid, interval=0.005):
        self.pid, self.interval, self.most = pid, interval, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.most = max(self.most, pipes(self.pid))
            time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def tcp_daemon(mpredir, socks, **kw):
    """The daemon with plain TCP upstream connections (the relay splices
    from TCP sockets only)."""
    return mpredir(servers=[socks["dante-none"]], mptcp=False,
                   upstream={"pool": {"size": 0}}, **kw)


# ------------------------------------------------------------- splice
@pytest.mark.parametrize("dst", [T.DST4, T.DST6], ids=["v4", "v6"])
def test_bulk_over_tcp_splices_intact(topology, socks, mpredir, dst):
    """A bulk download and upload between TCP sockets go through pipes,
    arrive intact, and leave no pipe behind."""
    m = tcp_daemon(mpredir, socks)
    base = pipes(m.pid)
    with PipeWatch(m.pid) as down:
        # a reader slower than the relay: every read fills the buffer
        r = clients.fetch(topology, "lan", clients.bytes_url(dst, 64 * MiB),
                          args=["--limit-rate", "40M"])
    assert r.ok(64 * MiB), r
    with PipeWatch(m.pid) as up:
        u = clients.upload(topology, "lan", clients.upload_url(dst), 64 * MiB)
    assert u.ok, u
    assert down.most > base and up.most > base, (base, down.most, up.most)
    topology.wait_until(lambda: pipes(m.pid) == base, timeout=5,
                        what="pipes closed with their flows")


def test_mptcp_upstream_copies_down_splices_up(topology, socks, mpredir):
    """With an MPTCP upstream, a download copies (splice from an MPTCP
    socket does not pay: relay.c), an upload (from the LAN's TCP socket)
    splices; both intact."""
    m = mpredir(servers=[socks["dante-none"]])
    base = pipes(m.pid)
    with PipeWatch(m.pid) as down:
        r = clients.fetch(topology, "lan",
                          clients.bytes_url(T.DST4, 32 * MiB),
                          args=["--limit-rate", "40M"])
    assert r.ok(32 * MiB), r
    with PipeWatch(m.pid) as up:
        u = clients.upload(topology, "lan", clients.upload_url(T.DST4),
                           32 * MiB)
    assert u.ok, u
    assert down.most == base and up.most > base, (base, down.most, up.most)


# A LAN client on the echoing banner port: after the banner, N bytes up
# and the same N back (at once, both ways), then idle until told to go on,
# then a ping, its half-close and the server's EOF.
ECHO_CLIENT = r"""
import hashlib, json, socket, sys, threading
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((dst, port), timeout=30)
f = s.makefile("rb")
banner = f.readline()
data = hashlib.shake_256(b"relay-perf").digest(1 << 20) * (n >> 20)
t = threading.Thread(target=s.sendall, args=(data,))
t.start()
got = hashlib.sha256()
left = len(data)
while left:
    d = f.read1(min(left, 1 << 16))
    if not d:
        break
    got.update(d)
    left -= len(d)
t.join()
print("idle", flush=True)
sys.stdin.readline()
s.sendall(b"ping\n")
pong = f.readline()
s.shutdown(socket.SHUT_WR)
rest = f.read()
print(json.dumps({"banner": banner.startswith(b"220"), "left": left,
                  "echo": got.hexdigest() == hashlib.sha256(data).hexdigest(),
                  "pong": pong == b"ping\n", "eof": rest == b""}))
"""


def test_idle_direction_gives_its_pipe_back(topology, socks, mpredir):
    """Once a bulk direction has moved nothing for a second or two, its
    pipe is closed while the flow stays open, and the flow goes on (by
    copy) and ends with its half-close as before."""
    m = tcp_daemon(mpredir, socks)
    base = pipes(m.pid)
    p = topology.popen("lan", [T.PYTHON, "-c", ECHO_CLIENT, T.DST4,
                               str(T.BANNER_PORT), str(16 * MiB)],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       text=True)
    try:
        with PipeWatch(m.pid) as w:
            assert p.stdout.readline().strip() == "idle"
        assert w.most > base, (base, w.most)
        t0 = time.monotonic()
        topology.wait_until(lambda: pipes(m.pid) == base, timeout=5,
                            what="idle pipe given back")
        assert time.monotonic() - t0 < 3.5
        assert m.status()["flows"]["now"] == 1   # the flow is still there
        p.stdin.write("go\n")
        p.stdin.flush()
        res = json.loads(p.stdout.readline())
        assert res == {"banner": True, "left": 0, "echo": True,
                       "pong": True, "eof": True}, res
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


# ------------------------------------------------------------- bounds
# A LAN client that reads 1 MiB of a 64 MiB download, stops reading for a
# while (prints "stalled" then waits for a line), then reads the rest.
SLOW_READER = r"""
import hashlib, socket, sys, time
dst, n = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((dst, 80), timeout=30)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n"
          b"Connection: close\r\n\r\n" % n)
f = s.makefile("rb")
while f.readline() not in (b"\r\n", b""):
    pass
h = hashlib.sha256()
got = 0
first = f.read(1 << 20)
h.update(first)
got += len(first)
print("stalled", flush=True)
sys.stdin.readline()
while True:
    d = f.read1(1 << 16)
    if not d:
        break
    h.update(d)
    got += len(d)
print(got, h.hexdigest(), flush=True)
"""


def rss_kib(pid):
    return relay_perf.rss_kib(pid)


@pytest.mark.parametrize("mptcp", [False, True], ids=["tcp", "mptcp"])
def test_slow_reader_holds_one_buffer(topology, socks, mpredir, mptcp):
    """A LAN reader that stops: the daemon holds at most one buffer's worth
    for it (in a pending buffer or a pipe), its memory does not grow, and
    the download completes intact once the reader resumes."""
    m = mpredir(servers=[socks["dante-none"]], mptcp=mptcp,
                upstream={"pool": {"size": 0}})
    n = 64 * MiB
    rss0 = rss_kib(m.pid)
    p = topology.popen("lan", [T.PYTHON, "-c", SLOW_READER, T.DST4, str(n)],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       text=True)
    try:
        assert p.stdout.readline().strip() == "stalled"
        # the relay fills the socket buffers, then holds what is left
        topology.wait_until(lambda: m.status()["bytes"]["buffered"] > 0,
                            timeout=5, what="bytes held for the reader")
        seen = []
        for _ in range(10):
            seen.append(m.status()["bytes"]["buffered"])
            time.sleep(0.1)
        assert max(seen) <= BUFFER, seen
        assert rss_kib(m.pid) - rss0 < 4096
        p.stdin.write("go\n")
        p.stdin.flush()
        got, digest = p.stdout.readline().split()
        assert int(got) == n and digest == clients.expected_sha256(n)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
    topology.wait_until(lambda: m.status()["bytes"]["buffered"] == 0,
                        timeout=5, what="nothing held once the flow ended")


# ------------------------------------------------------------- fallback
SPLICE_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* splice() as a kernel without it for sockets: SPLICE_SHIM=all refuses
 * every call, SPLICE_SHIM=out only those that write to a socket (the pipe
 * is already filled then). */
ssize_t splice(int in, loff_t *in_off, int out, loff_t *out_off, size_t len,
	       unsigned int flags)
{
	static ssize_t (*real)(int, loff_t *, int, loff_t *, size_t,
			       unsigned int);
	const char *mode = getenv("SPLICE_SHIM");
	struct stat st;

	if (mode && (!strcmp(mode, "all") ||
		     (!strcmp(mode, "out") && fstat(out, &st) == 0 &&
		      S_ISSOCK(st.st_mode)))) {
		errno = EINVAL;
		return -1;
	}
	if (!real)
		real = (ssize_t (*)(int, loff_t *, int, loff_t *, size_t,
				    unsigned int))dlsym(RTLD_NEXT, "splice");
	return real(in, in_off, out, out_off, len, flags);
}
"""


@pytest.mark.parametrize("mode", ["all", "out"])
def test_splice_refused_falls_back_to_copy(topology, socks, mpredir,
                                           tmp_path, mode):
    """splice() refused (EINVAL: all calls, or only once the pipe holds the
    bytes): the direction copies instead, nothing is lost, no pipe stays."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the splice() shim")
    src, lib = tmp_path / "shim.c", tmp_path / "splice-shim.so"
    src.write_text(SPLICE_SHIM)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src),
                    "-ldl"], check=True)
    m = tcp_daemon(mpredir, socks, env={
        "LD_PRELOAD": str(lib), "SPLICE_SHIM": mode,
        # (an ASan build wants its runtime first: fine for this test)
        "ASAN_OPTIONS": "verify_asan_link_order=0"})
    base = pipes(m.pid)
    r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, 16 * MiB),
                      args=["--limit-rate", "40M"])
    assert r.ok(16 * MiB), r
    u = clients.upload(topology, "lan", clients.upload_url(T.DST4), 16 * MiB)
    assert u.ok, u
    topology.wait_until(lambda: pipes(m.pid) == base, timeout=5,
                        what="no pipe left")
    assert "LAN side reset" not in m.log() and "server side reset" \
        not in m.log()


# ------------------------------------------------------------- footprint


IDLE_FLOWS = 2000


def test_idle_flow_footprint(topology, socks, mpredir, mpredir_bin):
    """Idle relaying flows cost the daemon little memory: no buffer, no
    pipe, setup state freed (loose bound; relay_perf.py idle measures)."""
    if not mpredir_daemon.plain_build(mpredir_bin):
        pytest.skip("memory figures need a plain build (not %s)"
                    % mpredir_bin)
    tiny = topology.spawn("srv", ["mptcpize", "run", T.PYTHON, "-c",
                                  relay_perf.TINY_SOCKS, T.SERVICE4,
                                  str(relay_perf.IDLE_SOCKS_PORT)],
                          "tinysocks")
    try:
        topology.wait_for_port("srv", T.SERVICE4, relay_perf.IDLE_SOCKS_PORT,
                               proc=tiny)
        m = mpredir(servers=[{"address": T.SERVICE4,
                              "port": relay_perf.IDLE_SOCKS_PORT}],
                    level="info", relay={"max_flows": IDLE_FLOWS + 500},
                    upstream={"pool": {"size": 0}})
        fds0 = len(os.listdir("/proc/%d/fd" % m.pid))
        base = pipes(m.pid)
        warm, _ = relay_perf.hold_flows(topology, 100)
        relay_perf.release(warm)
        topology.wait_until(
            lambda: len(os.listdir("/proc/%d/fd" % m.pid)) <= fds0,
            timeout=30, what="warm-up flows ended")
        before = rss_kib(m.pid)
        p, n = relay_perf.hold_flows(topology, IDLE_FLOWS)
        try:
            assert n == IDLE_FLOWS
            topology.wait_until(lambda: m.status()["flows"]["now"] == n,
                                timeout=30, what="flows relaying")
            per_flow = (rss_kib(m.pid) - before) * 1024 / n
            assert per_flow < 2048, "%.0f bytes per idle flow" % per_flow
            assert m.status()["bytes"]["buffered"] == 0
            assert pipes(m.pid) == base  # none for idle flows
        finally:
            relay_perf.release(p)
    finally:
        tiny.stop()
