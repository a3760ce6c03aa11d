# SPDX-License-Identifier: GPL-2.0-or-later
"""Run the mpredir daemon in the rtr namespace.

CLI: `mpredir -c FILE` (foreground, logs on stderr). Config JSON, e.g.
  {"listen": {"address": "::", "port": 1088},
   "servers": [{"address": "10.9.0.1", "port": 1080,
                "username": "u", "password": "p"}],
   "upstream": {"mptcp": true, "mark": 19792},
   "log": {"level": "debug"}}
"""

import copy
import json
import os
import re
import signal
import subprocess
import time

import nftrules
import topo as T
from proc import Daemon

DEFAULT_BIN = os.path.join(T.REPO_ROOT, "redirector", "mpredir")
DEFAULT_PORT = 1088
DEFAULT_MARK = 0x4d50  # 19792


def binary_path():
    """$MPREDIR_BIN, else redirector/mpredir of this repository."""
    return os.path.abspath(os.environ.get("MPREDIR_BIN") or DEFAULT_BIN)


def plain_build(path):
    """An ELF without a sanitizer runtime (not ASan, not a wrapper such as
    valgrind's): its RSS means something."""
    with open(path, "rb") as f:
        data = f.read()
    return data[:4] == b"\x7fELF" and b"__asan_init" not in data


def under_valgrind(path):
    """The daemon run by a valgrind wrapper (test/tools/valgrind-mpredir).
    valgrind keeps descriptors of its own above the daemon's limit and
    emulates setrlimit(RLIMIT_NOFILE): /proc/PID/limits shows its limit,
    not the daemon's."""
    with open(path, "rb") as f:
        data = f.read(4096)
    return not data.startswith(b"\x7fELF") and b"valgrind" in data


def elf_binary(path):
    """The daemon's executable itself: `path`, or the build a valgrind
    wrapper runs (for tests that copy or install the binary)."""
    return DEFAULT_BIN if under_valgrind(path) else path


def make_config(servers, port=DEFAULT_PORT, address="::", mptcp=True,
                mark=DEFAULT_MARK, level="debug", **extra):
    """A config dict. servers: SocksServer objects or dicts. extra: more
    top-level sections (merged one level deep, e.g. relay={...})."""
    cfg = {
        "listen": {"address": address, "port": port},
        "servers": [s if isinstance(s, dict) else s.server_config()
                    for s in servers],
        "upstream": {"mptcp": mptcp, "mark": mark},
        "log": {"level": level},
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg


# Logged once start-up is complete.
READY_LINE = " listening on "


class MpredirError(AssertionError):
    pass


class Mpredir:
    """One mpredir process. start() writes the config, launches, waits for
    the listener; stop() sends SIGTERM and checks the exit status."""

    _seq = 0

    def __init__(self, topology, config, binary=None, ns="rtr", name=None,
                 load_rules=True, lan_ifaces=(T.RTR_LAN_IF,), env=None):
        Mpredir._seq += 1
        self.topo = topology
        self.config = copy.deepcopy(config)
        if load_rules:
            # the test loads the reference ruleset itself: the daemon must
            # not install its own table over it
            self.config.setdefault("firewall", {}).setdefault("enabled",
                                                              False)
        self.binary = binary or binary_path()
        self.ns = ns
        self.name = name or "mpredir-%d" % Mpredir._seq
        self.load_rules = load_rules
        self.lan_ifaces = lan_ifaces
        self.env = env
        self.config_path = os.path.join(topology.workdir, self.name + ".json")
        # each daemon its own control socket (the default is system-wide)
        self.config.setdefault("control", {}).setdefault(
            "socket", os.path.join(topology.workdir, self.name + ".sock"))
        self.daemon = None
        self.exit_status = None

    # --- facts
    @property
    def port(self):
        return self.config.get("listen", {}).get("port", DEFAULT_PORT)

    @property
    def listen_address(self):
        return self.config.get("listen", {}).get("address", "::")

    @property
    def mark(self):
        """upstream.mark as an integer (the config may give it as a string,
        "0x4d50" or "19792", as the daemon accepts)."""
        return parse_mark(self.config.get("upstream", {}).get("mark",
                                                              DEFAULT_MARK))

    @property
    def pid(self):
        return self.daemon.pid if self.daemon else None

    @property
    def log_path(self):
        return os.path.join(self.topo.workdir, self.name + ".log")

    def log(self, tail=None):
        """The daemon's stderr so far."""
        return self.daemon.log(tail) if self.daemon else ""

    def running(self):
        return self.daemon is not None and self.daemon.running()

    def wait_log(self, pattern, timeout=5.0):
        """Poll the log until regex `pattern` matches a line; return the
        match, or None after timeout (e.g. a flow's end line, which is
        written just after the client has seen its EOF)."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    def server_addresses(self):
        return [s["address"] for s in self.config.get("servers", [])
                if _is_ip(s.get("address", ""))]

    # --- control socket (`mpredir status`, `mpredir reload`)
    @property
    def control_socket(self):
        return self.config["control"]["socket"]

    def control(self, *args, user=None, timeout=30, sock=None):
        """Run `mpredir ARGS --socket <ours>` (as `user`, a uid, when
        given); return the CompletedProcess (text)."""
        argv = [self.binary] + list(args) + [
            "--socket", sock or self.control_socket]
        env = None
        if user is not None:
            argv = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user,
                    "--clear-groups"] + argv
            # a temp dir the user may write (valgrind needs one; /tmp
            # may be root's only)
            tmp = os.path.join(self.topo.workdir, "tmp-any")
            os.makedirs(tmp, exist_ok=True)
            os.chmod(tmp, 0o1777)
            env = dict(os.environ, TMPDIR=tmp)
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              env=env)

    def status(self, flows=False, limit=None):
        """`mpredir status --json` as a dict (MpredirError if it fails)."""
        args = ["status", "--json"]
        if flows:
            args.append("--flows")
        if limit is not None:
            args += ["--limit", str(limit)]
        r = self.control(*args)
        if r.returncode != 0:
            raise MpredirError("mpredir status: exit %d: %s" % (
                r.returncode, r.stderr))
        return json.loads(r.stdout)

    def reload(self, config=None):
        """Write `config` (when given) and run `mpredir reload`; return the
        CompletedProcess. The running config (self.config) follows only
        when the reload succeeded."""
        old = self.config
        if config is not None:
            self.config = copy.deepcopy(config)
            self.config.setdefault("control", {}).setdefault(
                "socket", old["control"]["socket"])
            self.write_config()
        # (asked on the socket the daemon has now)
        r = self.control("reload", sock=old["control"]["socket"])
        if r.returncode != 0:
            self.config = old
        return r

    # --- lifecycle
    def write_config(self):
        # it may hold a password: created readable by root only (an
        # existing file keeps its mode, which a test may have changed)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.config, f, indent=2)
            f.write("\n")

    def start(self, timeout=10.0):
        if not os.access(self.binary, os.X_OK):
            raise MpredirError("mpredir binary not found or not executable: "
                               "%s (build it with `make`, or set MPREDIR_BIN)"
                               % self.binary)
        self.write_config()
        if self.load_rules:
            nftrules.load(self.topo, lan_ifaces=self.lan_ifaces,
                          port=self.port, servers=self.server_addresses(),
                          mark=self.mark, ns=self.ns)
        if self.daemon is None:
            self.daemon = Daemon(self.topo.nsname(self.ns),
                                 [self.binary, "-c", self.config_path],
                                 self.name, self.topo.workdir, env=self.env)
            self.topo.daemons.append(self.daemon)
        self.exit_status = None
        ready_before = self.log().count(READY_LINE)
        self.daemon.start(timeout)
        addr = self.listen_address
        try:
            self.topo.wait_for_port(self.ns, addr, self.port, timeout,
                                    proc=self.daemon)
            # the listener opens before the rest of the start-up (the
            # firewall, the link monitor): wait for the line that ends it
            self.topo.wait_until(
                lambda: self.check_alive() or
                self.log().count(READY_LINE) > ready_before,
                timeout=timeout, what="mpredir start-up")
        except Exception as e:
            self.exit_status = self.daemon.stop(timeout=2.0)
            if self.load_rules:
                nftrules.unload(self.topo, self.ns)
            raise MpredirError("mpredir did not start listening on %s port %s"
                               " (exit status %s): %s" % (
                                   addr, self.port, self.exit_status, e)) from None
        return self

    def check_alive(self):
        """Raise MpredirError with the log if the daemon has exited."""
        if not self.running():
            rc = self.daemon.poll() if self.daemon else None
            raise MpredirError("mpredir is not running (exit status %s)\n"
                               "--- %s ---\n%s" % (rc, self.log_path,
                                                   self.log(tail=200)))

    def signal(self, sig):
        self.daemon.send_signal(sig)

    def stop(self, timeout=10.0, expect_status=0, unload_rules=True):
        """SIGTERM; wait up to timeout (then SIGKILL). Unless expect_status
        is None, raise MpredirError (with the log) when the exit status is
        not expect_status (or the daemon had already exited)."""
        if self.daemon is None:
            return None
        was_running = self.daemon.running()
        rc = self.daemon.stop(timeout=timeout, sig=signal.SIGTERM)
        self.exit_status = rc
        if unload_rules and self.load_rules:
            nftrules.unload(self.topo, self.ns)
        if expect_status is None:
            return rc
        if not was_running:
            raise MpredirError("mpredir had exited before stop (status %s)\n"
                               "--- %s ---\n%s" % (rc, self.log_path,
                                                   self.log(tail=200)))
        if rc != expect_status:
            how = ("killed by signal %d" % -rc) if rc is not None and rc < 0 \
                else "exit status %s" % rc
            raise MpredirError("mpredir: %s after SIGTERM (expected %s)\n"
                               "--- %s ---\n%s" % (how, expect_status,
                                                   self.log_path,
                                                   self.log(tail=200)))
        return rc

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)


def parse_mark(v):
    """A config mark (integer, or string in decimal or 0x-hexadecimal) ->
    int."""
    if isinstance(v, str):
        return int(v, 16) if v[:2].lower() == "0x" else int(v, 10)
    return int(v)


def _is_ip(s):
    import ipaddress
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False
