#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
r"""One load client (runs in lan; load.py starts several, each holding a
share of the flows, since each connection is one descriptor here and the
hard RLIMIT_NOFILE is per process). Every byte is checked.

  loadclient.py --dst A --echo-port P --rr-port Q --id I --hold N
                [--window W] [--rate R] [--cap C] [--duration S]
                [--check-every T]

Dialogue with load.py, one JSON line each way on stdout, a word on stdin:

  1. opens N held flows to A:P (echo), at most W being set up at a time;
     each sends pattern(tag, "e", 64) and must get it back
     -> {"event": "ready", "held": n, "failed": f, "seconds": t, ...}
  2. <- "go": for S seconds,
     - churn: R new flows a second to A:Q (request/response, loadd.py):
       24-byte header + 512 bytes up, b"+" + 2,048 bytes down, the server
       closes first; at most C of them open at a time (a flow due while C
       are open waits: the rate then falls, and says so);
     - the held flows are checked in rounds, one every T seconds: each
       sends 256 bytes and must get them back.
     -> {"event": "done", ...counters}
  3. <- "close": each held flow is checked once more (1,024 bytes), then
     half-closed; the server's EOF must follow, then it is closed
     -> {"event": "closed", ...counters}

pattern(tag, d, n) = SHAKE-256(tag + d), n bytes; tag = 16 bytes unique
per client, flow and round. Errors are counted by kind (connect: errno
name, reset, timeout, mismatch, eof: the peer closed too soon).
"""

import argparse
import asyncio
import collections
import hashlib
import json
import resource
import struct
import sys
import time

HDR = struct.Struct("!16sII")
CHURN_UP, CHURN_DOWN = 512, 2048
HOLD_OPEN, HOLD_CHECK, HOLD_FINAL = 64, 256, 1024
TIMEOUT = 30.0


def pattern(tag, direction, n):
    return hashlib.shake_256(tag + direction).digest(n)


class Stats:
    def __init__(self):
        self.errors = collections.Counter()
        self.up = 0     # bytes sent and found intact by the other end
        self.down = 0   # bytes received and found intact here
        self.churn_started = self.churn_ok = 0
        self.churn_waited = 0   # launches that found C flows open
        self.churn_skipped = 0  # launches dropped: more than 1 s late
        self.checks = self.checks_ok = 0
        self.rounds = 0
        self.churn_ms = []

    def error(self, e):
        if isinstance(e, asyncio.TimeoutError):
            self.errors["timeout"] += 1
        elif isinstance(e, ConnectionResetError):
            self.errors["reset"] += 1
        elif isinstance(e, asyncio.IncompleteReadError):
            self.errors["eof"] += 1
        elif isinstance(e, OSError) and e.errno:
            import errno
            self.errors[errno.errorcode.get(e.errno, str(e.errno))] += 1
        else:
            self.errors[type(e).__name__] += 1

    def as_dict(self):
        ms = sorted(self.churn_ms)
        pct = {}
        for p in (50, 99):
            if ms:
                pct["churn_p%d_ms" % p] = round(ms[min(len(ms) - 1,
                                                       len(ms) * p // 100)], 1)
        return dict(errors=dict(self.errors), bytes_up=self.up,
                    bytes_down=self.down, churn_started=self.churn_started,
                    churn_ok=self.churn_ok, churn_waited=self.churn_waited,
                    churn_skipped=self.churn_skipped, checks=self.checks,
                    checks_ok=self.checks_ok, rounds=self.rounds, **pct)


class Held:
    def __init__(self, cid, n):
        self.cid, self.n = cid, n
        self.round = 0
        self.r = self.w = None

    def tag(self):
        self.round += 1
        return struct.pack("!HIIxxxxxx", self.cid, self.n, self.round)

    async def check(self, st, size):
        """Send size bytes, expect them back."""
        data = pattern(self.tag(), b"e", size)
        st.checks += 1
        self.w.write(data)
        await self.w.drain()
        got = await asyncio.wait_for(self.r.readexactly(size), TIMEOUT)
        if got != data:
            st.errors["mismatch"] += 1
            raise ValueError("mismatch")
        st.up += size
        st.down += size
        st.checks_ok += 1


class Client:
    def __init__(self, a):
        self.a = a
        self.st = Stats()
        self.held = []
        self.churn_open = 0
        self.churn_seq = 0
        self.slot = None    # set when a churn flow ends

    async def open_held(self, n, sem):
        async with sem:
            h = Held(self.a.id, n)
            try:
                h.r, h.w = await asyncio.wait_for(
                    asyncio.open_connection(self.a.dst, self.a.echo_port),
                    TIMEOUT)
                await h.check(self.st, HOLD_OPEN)
                self.held.append(h)
            except (OSError, asyncio.TimeoutError, ValueError,
                    asyncio.IncompleteReadError) as e:
                if not isinstance(e, ValueError):
                    self.st.error(e)
                if h.w:
                    h.w.transport.abort()

    async def check_round(self, size, final=False):
        sem = asyncio.Semaphore(64)
        bad = []

        async def one(h):
            async with sem:
                try:
                    await h.check(self.st, size)
                    if final:
                        h.w.write_eof()
                        rest = await asyncio.wait_for(h.r.read(1), TIMEOUT)
                        if rest != b"":
                            self.st.errors["no_eof"] += 1
                            raise ValueError("no eof")
                        h.w.close()
                except (OSError, asyncio.TimeoutError, ValueError,
                        asyncio.IncompleteReadError) as e:
                    if not isinstance(e, ValueError):
                        self.st.error(e)
                    h.w.transport.abort()
                    bad.append(h)
        await asyncio.gather(*(one(h) for h in self.held))
        self.st.rounds += 1
        for h in bad:
            self.held.remove(h)

    async def churn_one(self):
        self.churn_seq += 1
        tag = struct.pack("!HIxxxxxxxxxx", self.a.id, self.churn_seq)
        t0 = time.monotonic()
        w = None
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(self.a.dst, self.a.rr_port), TIMEOUT)
            w.write(HDR.pack(tag, CHURN_UP, CHURN_DOWN) +
                    pattern(tag, b"u", CHURN_UP))
            got = await asyncio.wait_for(r.read(), TIMEOUT)
            if got[:1] == b"+":
                self.st.up += CHURN_UP
            if got != b"+" + pattern(tag, b"d", CHURN_DOWN):
                self.st.errors["mismatch" if len(got) == 1 + CHURN_DOWN
                               else "short"] += 1
                return
            self.st.down += len(got)
            self.st.churn_ok += 1
            self.st.churn_ms.append((time.monotonic() - t0) * 1000)
        except (OSError, asyncio.TimeoutError) as e:
            self.st.error(e)
        finally:
            if w:
                w.close()
            self.churn_open -= 1
            if self.slot and not self.slot.done():
                self.slot.set_result(None)

    async def churn(self, end):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tasks = set()
        while True:
            now = loop.time()
            if now >= end:
                break
            due = int((now - t0) * self.a.rate) - self.st.churn_started \
                - self.st.churn_skipped
            if due > self.a.rate:      # more than 1 s behind: drop it
                self.st.churn_skipped += due - int(self.a.rate)
                due = int(self.a.rate)
            while due > 0:
                if self.churn_open >= self.a.cap:
                    self.st.churn_waited += 1
                    self.slot = loop.create_future()
                    try:
                        await asyncio.wait_for(self.slot, end - loop.time())
                    except asyncio.TimeoutError:
                        break
                    continue
                self.churn_open += 1
                self.st.churn_started += 1
                t = asyncio.ensure_future(self.churn_one())
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                due -= 1
            await asyncio.sleep(0.005)
        if tasks:
            await asyncio.gather(*tasks)

    async def checker(self, end):
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        while True:
            nxt += self.a.check_every
            if nxt >= end:
                break
            await asyncio.sleep(max(0, nxt - loop.time()))
            await self.check_round(HOLD_CHECK)

    async def main(self):
        loop = asyncio.get_running_loop()
        out = sys.stdout
        t0 = time.monotonic()
        sem = asyncio.Semaphore(self.a.window)
        await asyncio.gather(*(self.open_held(i, sem)
                               for i in range(self.a.hold)))
        emit(out, "ready", held=len(self.held),
             failed=self.a.hold - len(self.held),
             seconds=round(time.monotonic() - t0, 2), **self.st.as_dict())
        await self.read_word(loop, "go")
        t0 = time.monotonic()
        end = loop.time() + self.a.duration
        await asyncio.gather(self.churn(end), self.checker(end))
        emit(out, "done", held=len(self.held),
             seconds=round(time.monotonic() - t0, 2), **self.st.as_dict())
        await self.read_word(loop, "close")
        await self.check_round(HOLD_FINAL, final=True)
        emit(out, "closed", closed=len(self.held), **self.st.as_dict())

    @staticmethod
    async def read_word(loop, word):
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() != word:
            raise SystemExit("loadclient: expected %r, got %r" % (word, line))


def emit(out, event, **kw):
    kw["cpu_s"] = round(time.process_time(), 2)
    out.write(json.dumps(dict(event=event, **kw)) + "\n")
    out.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dst", required=True)
    ap.add_argument("--echo-port", type=int, required=True)
    ap.add_argument("--rr-port", type=int, required=True)
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("--hold", type=int, required=True)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--cap", type=int, default=100)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--check-every", type=float, default=10)
    a = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.hold + a.cap + 64 > hard:
        sys.exit("loadclient: %d held + %d churn flows need more than the "
                 "%d descriptors this process may have" % (a.hold, a.cap,
                                                            hard))
    asyncio.run(Client(a).main())


if __name__ == "__main__":
    main()
