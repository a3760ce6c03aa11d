# SPDX-License-Identifier: GPL-2.0-or-later
"""SOCKS5 servers in the srv namespace, each run under `mptcpize run` so that
they accept (and open) MPTCP connections.

    dante-none    danted      1080  no auth
    dante-user    danted      1081  username/password (a system account)
    micro-none    microsocks  1082  no auth
    micro-user    microsocks  1083  username/password (-u/-P)

dante's `username` method checks system accounts (getpwnam + shadow), so
SocksUser creates a throwaway system user with a random name and password,
removed at cleanup (recorded through Topology.add_user, so a later session
also reaps it if this one is killed).
"""

import os
import secrets
import subprocess
import time

import resources
import topo as T

MPTCPIZE = ["mptcpize", "run"]


class SocksUser:
    def __init__(self, topology, name=None, password=None):
        self.topo = topology
        self.name = name or ("mprt" + secrets.token_hex(4))
        self.password = password or secrets.token_hex(8)
        self.created = False

    def create(self):
        while resources.user_exists(self.name):  # never take over a user
            self.name = "mprt" + secrets.token_hex(4)
        self.topo.add_user(self.name)  # recorded before it exists
        useradd = ["useradd", "--system", "--no-create-home",
                   "--no-user-group", "--gid", "nogroup",
                   "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                   "--comment", "mpredir e2e test (temporary)", self.name]
        chpasswd = ["chpasswd"]
        for argv, inp in ((useradd, None),
                          (chpasswd, "%s:%s\n" % (self.name, self.password))):
            # /etc/passwd may be locked a moment by another session: retry
            for attempt in range(10):
                r = subprocess.run(argv, input=inp, text=True,
                                   capture_output=True, check=False)
                if r.returncode == 0:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError("%s failed: %s" % (argv[0], r.stderr))
        self.created = True
        return self


class SocksServer:
    """One SOCKS5 server process in srv. Subclasses give argv()."""

    kind = None
    # Does the server relay a half-close (client FIN -> shutdown(SHUT_WR)
    # toward the destination, other direction kept open)?
    half_close = True

    def __init__(self, topology, name, port, username=None, password=None,
                 address=T.SERVICE4, mptcp=True):
        self.topo = topology
        self.name = name
        self.port = port
        self.address = address
        self.username = username
        self.password = password
        self.mptcp = mptcp  # run under `mptcpize run`
        self.daemon = None

    # --- facts a test needs
    @property
    def auth(self):
        return self.username is not None

    @property
    def creds(self):
        return (self.username, self.password) if self.auth else None

    def url(self, scheme="socks5"):
        """curl -x URL form (socks5h: the proxy resolves names)."""
        cred = ""
        if self.auth:
            cred = "%s:%s@" % (self.username, self.password)
        return "%s://%s%s:%d" % (scheme, cred, self.address, self.port)

    def curl_args(self):
        a = ["--socks5", "%s:%d" % (self.address, self.port)]
        if self.auth:
            a += ["--proxy-user", "%s:%s" % (self.username, self.password)]
        return a

    def server_config(self):
        """The mpredir config `servers[]` entry for this server."""
        d = {"address": self.address, "port": self.port}
        if self.auth:
            d.update(username=self.username, password=self.password)
        return d

    @property
    def log_path(self):
        return os.path.join(self.topo.workdir, self.name + ".log")

    def log(self, tail=None):
        return self.daemon.log(tail) if self.daemon else ""

    # --- lifecycle
    def argv(self):
        raise NotImplementedError

    def start(self, timeout=10.0):
        if self.daemon is None:
            prefix = MPTCPIZE if self.mptcp else []
            self.daemon = self.topo.spawn("srv", prefix + self.argv(),
                                          self.name, timeout=timeout)
        else:
            self.daemon.start(timeout)
        self.topo.wait_for_port("srv", self.address, self.port, timeout,
                                proc=self.daemon)
        return self

    def running(self):
        return self.daemon is not None and self.daemon.running()

    def stop(self, timeout=5.0):
        """SIGTERM (then SIGKILL), and wait until the port is closed."""
        if self.daemon is not None:
            self.daemon.stop(timeout)
            self.topo.reap()
            self.topo.wait_until(
                lambda: not self.topo.listening("srv", self.address, self.port),
                timeout=timeout, what="%s port %d closed" % (self.name, self.port))

    def kill(self):
        """SIGKILL: "the server crashed"."""
        if self.daemon is not None:
            self.daemon.kill()
            self.topo.reap()
            self.topo.wait_until(
                lambda: not self.topo.listening("srv", self.address, self.port),
                timeout=5.0, what="%s port %d closed" % (self.name, self.port))

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)

    def ensure_running(self):
        if not self.running():
            self.start()
        return self

    def __repr__(self):
        return "<%s %s %s:%d auth=%s>" % (type(self).__name__, self.name,
                                          self.address, self.port, self.auth)


class DanteServer(SocksServer):
    kind = "dante"
    # seconds dante gives a client to finish method negotiation and auth
    negotiate_timeout = 30

    def config_text(self):
        method = "username" if self.auth else "none"
        logfile = os.path.join(self.topo.workdir, self.name + ".dante.log")
        # dante 1.4: "0/0" matches IPv4 and IPv6 alike ("0.0.0.0/0" would
        # only match IPv4); the external addresses are given per family.
        return """\
# generated by test/lib/socks_servers.py
logoutput: %(logfile)s
debug: 0
internal: %(addr)s port = %(port)d
external: %(ext4)s
external: %(ext6)s
clientmethod: none
socksmethod: %(method)s
user.privileged: root
user.unprivileged: nobody
timeout.negotiate: %(negotiate)d
timeout.io: 0

client pass {
    from: 10.1.0.0/16 to: 0/0
    log: error
}
socks pass {
    from: 10.1.0.0/16 to: 0/0
    command: connect
    log: error connect disconnect
}
""" % {"logfile": logfile, "addr": self.address, "port": self.port,
       "ext4": T.SRV_INET4, "ext6": T.SRV_INET6, "method": method,
       "negotiate": self.negotiate_timeout}

    @property
    def dante_log_path(self):
        return os.path.join(self.topo.workdir, self.name + ".dante.log")

    def log(self, tail=None):
        """danted's own log (logoutput) after the captured stdout/stderr."""
        txt = super().log()
        try:
            with open(self.dante_log_path, errors="replace") as f:
                txt += f.read()
        except FileNotFoundError:
            pass
        if tail:
            txt = "\n".join(txt.splitlines()[-tail:])
        return txt

    def argv(self):
        conf = os.path.join(self.topo.workdir, self.name + ".conf")
        with open(conf, "w") as f:
            f.write(self.config_text())
        pidfile = os.path.join(self.topo.workdir, self.name + ".pid")
        return ["danted", "-f", conf, "-p", pidfile]


class MicrosocksServer(SocksServer):
    kind = "microsocks"
    # microsocks 1.0.3 ends the whole relay when either side reaches EOF:
    # after the client's FIN it closes both connections, so a reply sent
    # after the client's FIN (the half-close service) never arrives.
    half_close = False

    def argv(self):
        a = ["microsocks", "-i", self.address, "-p", str(self.port)]
        if self.auth:
            a += ["-u", self.username, "-P", self.password]
        return a


class SocksFarm:
    """The four standard servers, plus the system user dante needs.

    farm["dante-user"], farm.all, farm.by_port[1081], farm.start(),
    farm.ensure_running(), farm.stop()."""

    SPECS = (("dante-none", DanteServer, 1080, False),
             ("dante-user", DanteServer, 1081, True),
             ("micro-none", MicrosocksServer, 1082, False),
             ("micro-user", MicrosocksServer, 1083, True))

    def __init__(self, topology):
        self.topo = topology
        self.user = SocksUser(topology)
        self.servers = {}
        for name, cls, port, auth in self.SPECS:
            kw = {}
            if auth:
                kw = {"username": self.user.name, "password": self.user.password}
            self.servers[name] = cls(topology, name, port, **kw)

    def __getitem__(self, name):
        return self.servers[name]

    @property
    def all(self):
        return list(self.servers.values())

    @property
    def by_port(self):
        return {s.port: s for s in self.servers.values()}

    def start(self):
        self.user.create()
        for s in self.servers.values():
            if s.auth:  # create() may have picked another name
                s.username = self.user.name
            s.start()
        return self

    def ensure_running(self):
        for s in self.servers.values():
            s.ensure_running()
        return self

    def stop(self):
        for s in self.servers.values():
            s.stop()
