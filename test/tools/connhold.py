#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Many concurrent idle TCP connections, for memory-per-flow benchmarks.

Stdlib only (epoll); one process holds every connection.

  connhold.py serve --port P [--bind ADDR] [--pidfile F]
      accept without limit; on every read, answer b"ok\\n" once per read
      and keep the connection open (never close it first). The pidfile is
      written once the listener is bound. SIGTERM: close all and exit 0.

  connhold.py hold --addr A --port P -n N [--window W] [--timeout S]
      open N connections to A:P, at most W (default 200) not yet answered
      at a time; on each, send b"hello\\n" and wait for b"ok\\n": the whole
      path (a proxy, its upstream, the server) is then established and has
      carried a byte each way. Prints one JSON line
      {"event": "ready", "open": N, "failed": F, "seconds": T} once every
      connection is answered or has failed, then holds them all, idle,
      until its stdin reaches EOF (or SIGTERM); then closes them and prints
      {"event": "closed", "still_open": K} (K: connections that were still
      open, i.e. not closed by the other side meanwhile). Exit status 0.

Raise RLIMIT_NOFILE before starting either side (each connection is one
descriptor); both raise their soft limit to the hard one themselves.
"""

import argparse
import errno
import json
import os
import resource
import select
import signal
import socket
import sys
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Stop(Exception):
    pass


def _term(signum, frame):
    raise Stop()


def serve(a):
    raise_nofile()
    family = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(4096)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns = {}
    if a.pidfile:
        with open(a.pidfile + ".tmp", "w") as f:
            f.write("%d\n" % os.getpid())
        os.replace(a.pidfile + ".tmp", a.pidfile)
    signal.signal(signal.SIGTERM, _term)
    try:
        while True:
            for fd, ev in ep.poll(1.0):
                if fd == ls.fileno():
                    while True:
                        try:
                            c, _ = ls.accept()
                        except BlockingIOError:
                            break
                        except OSError as e:
                            if e.errno in (errno.EMFILE, errno.ENFILE):
                                print("connhold serve: %s" % e.strerror,
                                      file=sys.stderr, flush=True)
                                time.sleep(0.1)
                                break
                            raise
                        c.setblocking(False)
                        conns[c.fileno()] = c
                        ep.register(c.fileno(), select.EPOLLIN)
                    continue
                c = conns.get(fd)
                if c is None:
                    continue
                try:
                    data = c.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    try:
                        c.send(b"ok\n")
                    except OSError:
                        pass
                else:
                    ep.unregister(fd)
                    del conns[fd]
                    c.close()
    except (Stop, KeyboardInterrupt):
        pass
    for c in conns.values():
        c.close()
    return 0


def hold(a):
    hard = raise_nofile()
    if a.n + 64 > hard:
        print("connhold hold: %d connections need more than the %d "
              "descriptors allowed" % (a.n, hard), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _term)
    ep = select.epoll()
    pending = {}   # fd -> [sock, state, deadline]; state "connect"/"answer"
    done = {}      # fd -> sock, answered
    failed = 0
    started = 0
    t0 = time.monotonic()
    errors = {}
    try:
        while started < a.n or pending:
            while started < a.n and len(pending) < a.window:
                s = socket.socket(socket.AF_INET6 if ":" in a.addr
                                  else socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                started += 1
                try:
                    s.connect((a.addr, a.port))
                except BlockingIOError:
                    pass
                except OSError as e:
                    errors[e.strerror] = errors.get(e.strerror, 0) + 1
                    failed += 1
                    s.close()
                    continue
                pending[s.fileno()] = [s, "connect",
                                       time.monotonic() + a.timeout]
                ep.register(s.fileno(), select.EPOLLOUT)
            for fd, ev in ep.poll(0.5):
                p = pending.get(fd)
                if p is None:
                    continue
                s = p[0]
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                ok = not err and not (ev & (select.EPOLLERR | select.EPOLLHUP)
                                      and p[1] == "connect")
                if ok and p[1] == "connect":
                    try:
                        s.send(b"hello\n")
                        p[1] = "answer"
                        ep.modify(fd, select.EPOLLIN)
                        continue
                    except OSError as e:
                        err = e.errno
                        ok = False
                elif ok:
                    try:
                        data = s.recv(64)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        data, err = b"", e.errno
                    if data.startswith(b"ok"):
                        ep.unregister(fd)
                        del pending[fd]
                        done[fd] = s
                        continue
                    ok = False
                    err = err or errno.ECONNRESET
                why = os.strerror(err) if err else "closed"
                errors[why] = errors.get(why, 0) + 1
                ep.unregister(fd)
                del pending[fd]
                s.close()
                failed += 1
            now = time.monotonic()
            for fd in [fd for fd, p in pending.items() if p[2] < now]:
                errors["timeout"] = errors.get("timeout", 0) + 1
                ep.unregister(fd)
                pending.pop(fd)[0].close()
                failed += 1
        print(json.dumps({"event": "ready", "open": len(done),
                          "failed": failed, "errors": errors,
                          "seconds": round(time.monotonic() - t0, 2)}),
              flush=True)
        # hold until stdin ends; watch the held ones (EOF: closed by peer)
        for fd in done:
            ep.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        ep.register(sys.stdin.fileno(), select.EPOLLIN)
        closed_by_peer = 0
        while True:
            evs = ep.poll(1.0)
            if any(fd == sys.stdin.fileno() for fd, _ in evs):
                if not os.read(sys.stdin.fileno(), 4096):
                    break
            for fd, ev in evs:
                if fd in done:
                    ep.unregister(fd)
                    done.pop(fd).close()
                    closed_by_peer += 1
    except (Stop, KeyboardInterrupt):
        pass
    still = len(done)
    for s in done.values():
        s.close()
    for p in pending.values():
        p[0].close()
    print(json.dumps({"event": "closed", "still_open": still}), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--bind", default="::")
    s.add_argument("--pidfile")
    h = sub.add_parser("hold")
    h.add_argument("--addr", required=True)
    h.add_argument("--port", type=int, required=True)
    h.add_argument("-n", type=int, required=True)
    h.add_argument("--window", type=int, default=200)
    h.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    return serve(a) if a.cmd == "serve" else hold(a)


if __name__ == "__main__":
    sys.exit(main())
