#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
r"""The far end of the load test (runs in dst): two services on
SO_REUSEPORT listeners, so that several processes share the connections
(each connection is one descriptor here; the hard RLIMIT_NOFILE is per
process).

  loadd.py ECHO_PORT RR_PORT

  ECHO_PORT  echo: every byte back as it comes; the client's EOF is
             answered with ours once everything is sent (held flows).
  RR_PORT    request/response (churn flows): the client sends a 24-byte
             header, TAG (16 bytes) UP (4, big-endian) DOWN (4), then UP
             bytes that must be pattern(TAG, "u", UP); the answer is one
             byte, b"+" if they were, else b"-", then pattern(TAG, "d",
             DOWN), and the server closes first (so TIME_WAIT stays on the
             server side: 1,000 new flows a second would otherwise use up
             the client's ephemeral ports).

pattern(tag, d, n) = SHAKE-256(tag + d) of n bytes: see loadclient.py.
"""

import asyncio
import hashlib
import resource
import socket
import struct
import sys

HDR = struct.Struct("!16sII")
MAX_LEN = 1 << 20


def pattern(tag, direction, n):
    return hashlib.shake_256(tag + direction).digest(n)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        self.t.write(data)

    def eof_received(self):
        return False    # close (after the buffered bytes): our FIN

    # back-pressure: stop reading while the client does not read
    def pause_writing(self):
        self.t.pause_reading()

    def resume_writing(self):
        self.t.resume_reading()


class RequestResponse(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = bytearray()
        self.want = None

    def data_received(self, data):
        self.buf += data
        if self.want is None and len(self.buf) >= HDR.size:
            tag, up, down = HDR.unpack_from(self.buf)
            if up > MAX_LEN or down > MAX_LEN:
                self.t.abort()
                return
            self.want = (tag, up, down)
        if self.want is not None and len(self.buf) >= HDR.size + self.want[1]:
            tag, up, down = self.want
            body = bytes(self.buf[HDR.size:])
            ok = body == pattern(tag, b"u", up)
            self.t.write((b"+" if ok else b"-") + pattern(tag, b"d", down))
            self.t.close()

    def eof_received(self):
        if self.want is None or len(self.buf) < HDR.size + self.want[1]:
            self.t.write(b"-")  # short request
        return False


def listener(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(4096)
    return s


async def main():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(Echo, sock=listener(int(sys.argv[1])),
                                    backlog=4096)
    rr = await loop.create_server(RequestResponse,
                                  sock=listener(int(sys.argv[2])),
                                  backlog=4096)
    await asyncio.gather(echo.serve_forever(), rr.serve_forever())


if __name__ == "__main__":
    asyncio.run(main())
