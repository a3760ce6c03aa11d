# SPDX-License-Identifier: GPL-2.0-or-later
r"""The OpenWrt init script (openwrt-package/mpredir/files/mpredir.init)
with the real daemon, and scripts/install.sh.

OpenWrt's /etc/rc.common, /lib/functions.sh and procd cannot exist here:
test/lib/openwrt_rc.sh stands in for them (the one stand-in: procd, and
the config_* readers it comes with). It runs the init script's own
functions and records what they ask procd to do; this file then plays
procd and does it for real: the recorded command line runs under the
recorded descriptor limit in the router namespace, serves a LAN download,
and gets the recorded signals.

  lan ──── rtr (mpredir as the init script asked, own nft table) ══ wan1/2
  curl                                             ══ srv (dante) ── dst

install.sh is run into a temporary DESTDIR (no system file touched).
"""

import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess

import pytest

import clients
import mpredir_daemon
import topo as T
from proc import Daemon

INIT = os.path.join(T.REPO_ROOT, "openwrt-package", "mpredir", "files",
                    "mpredir.init")
RC = os.path.join(T.REPO_ROOT, "test", "lib", "openwrt_rc.sh")
INSTALL = os.path.join(T.REPO_ROOT, "scripts", "install.sh")


# ------------------------------------------------------------------------
# UCI files and the procd stand-in
# ------------------------------------------------------------------------
def uci_text(sections):
    """sections: (type, name or None, {option: str | int | bool | list})."""
    out = []
    for typ, name, opts in sections:
        out.append("config %s%s" % (typ, " '%s'" % name if name else ""))
        for k, v in opts.items():
            for item in (v if isinstance(v, list) else [v]):
                if isinstance(item, bool):
                    item = int(item)
                out.append("\t%s %s '%s'" % (
                    "list" if isinstance(v, list) else "option", k, item))
        out.append("")
    return "\n".join(out)


def parse_records(text):
    """The stand-in's records -> {"instances": [...], "triggers": [...],
    "signals": [...], "kill": bool, "service": None or "set"/"add"}; an
    instance: {"name": str, "params": {...}}."""
    svc = {"instances": [], "triggers": [], "signals": [], "kill": False,
           "service": None}
    inst = None
    for line in text.splitlines():
        f = line.split("\t")
        what, args = f[0], f[1:]
        if what == "open_instance":
            inst = {"name": args[0], "params": {}}
        elif what == "set_param" and inst is not None:
            inst["params"][args[0]] = args[1:]
        elif what == "close_instance":
            svc["instances"].append(inst)
            inst = None
        elif what == "reload_trigger":
            svc["triggers"].extend(args)
        elif what == "send_signal":
            svc["signals"].append(args)
        elif what == "kill":
            svc["kill"] = True
        elif what == "close_service":
            svc["service"] = args[0]
    return svc


class Procd:
    """procd's part, played for real: run the instance an init script
    declares (command, nofile limit) in rtr; as procd's `service set`, the
    instances declared replace the service's: one not declared is stopped,
    one declared unchanged is kept (not restarted), one changed is
    restarted; procd_kill stops it; procd_send_signal is delivered."""

    def __init__(self, topology, mpredir_bin, tag):
        self.topo = topology
        self.bin = mpredir_bin
        self.dir = os.path.join(topology.workdir, "openwrt-" + tag)
        self.confdir = os.path.join(self.dir, "etc", "config")
        os.makedirs(self.confdir)
        os.makedirs(os.path.join(self.dir, "etc", "init.d"))
        self.init = os.path.join(self.dir, "etc", "init.d", "mpredir")
        shutil.copy(INIT, self.init)
        self.conf = os.path.join(self.confdir, "mpredir")
        self.records = os.path.join(self.dir, "procd.records")
        self.running_flag = os.path.join(self.dir, "procd.running")
        self.sock = os.path.join(self.dir, "mpredir.sock")
        self.name = "procd-mpredir-" + tag
        self.daemon = None
        self.instance = None

    def write(self, sections):
        self.write_text(uci_text(sections))

    def write_text(self, text):
        with open(self.conf, "w") as f:
            f.write(text)
        os.chmod(self.conf, 0o600)

    def rc(self, action):
        """Run `/etc/init.d/mpredir ACTION` through the stand-in, then do
        what it asked procd; return (CompletedProcess, parsed records)."""
        open(self.records, "w").close()
        env = dict(os.environ, UCI_CONFIG_DIR=self.confdir,
                   MPREDIR_PROG=self.bin, PROCD_STANDIN_LOG=self.records,
                   PROCD_STANDIN_RUNNING=self.running_flag)
        r = subprocess.run(["sh", RC, self.init, action], env=env,
                           capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        with open(self.records) as f:
            svc = parse_records(f.read())
        self.apply(svc)
        return r, svc

    def running(self):
        return self.daemon is not None and self.daemon.running()

    def apply(self, svc):
        if svc["kill"]:
            self.stop()
        if svc["service"]:
            assert svc["service"] == "set", svc
            assert len(svc["instances"]) <= 1, svc
            if not svc["instances"]:
                self.stop()
            else:
                inst = svc["instances"][0]
                if inst != self.instance or not self.running():
                    self.stop()
                    self.start(inst)
        else:
            assert not svc["instances"], svc
        for args in svc["signals"]:
            assert args[0] == "mpredir", args
            assert self.running(), "signal %s with no instance" % args
            self.daemon.send_signal(getattr(signal, "SIG" + args[2]))

    def start(self, inst):
        argv = list(inst["params"]["command"])
        limits = dict(kv.split("=", 1)
                      for kv in inst["params"].get("limits", []))
        if "nofile" in limits:
            soft, hard = (int(x) for x in limits["nofile"].split())
            # procd (root, CAP_SYS_RESOURCE) sets the hard limit asked;
            # here it cannot be raised above this process's own
            hard = min(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            argv = ["prlimit", "--nofile=%d:%d" % (soft, hard), "--"] + argv
        self.daemon = Daemon(self.topo.nsname("rtr"), argv, self.name,
                             self.topo.workdir)
        self.topo.daemons.append(self.daemon)
        self.daemon.start()
        self.instance = inst
        open(self.running_flag, "w").close()

    def stop(self):
        if self.daemon is not None and self.daemon.running():
            rc = self.daemon.stop(timeout=10)
            assert rc == 0, "mpredir: exit status %s after SIGTERM\n%s" % (
                rc, self.daemon.log(tail=50))
        self.instance = None
        if os.path.exists(self.running_flag):
            os.unlink(self.running_flag)

    def log(self):
        """What the daemon wrote on stdout/stderr (it logs to syslog)."""
        return self.daemon.log() if self.daemon else ""

    def try_status(self):
        """`mpredir status --json` on the configured socket, or None."""
        r = subprocess.run([self.bin, "status", "--json", "--socket",
                            self.sock], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def status(self):
        st = self.try_status()
        assert st is not None, "mpredir status failed"
        return st

    def wait_status(self, pred, what, timeout=10.0):
        """Poll the status until pred(status) holds (the control socket
        answers once start-up is complete); fail at once if the daemon
        exits."""
        def check():
            st = self.try_status()
            if st is not None and st.get("pid") == self.daemon.pid and \
                    pred(st):
                return True
            if not self.daemon.running():
                raise AssertionError("mpredir exited (status %s): %s" % (
                    self.daemon.poll(), self.log()))
            return False
        self.topo.wait_until(check, timeout=timeout, what=what)
        return self.try_status()

    def wait_ready(self):
        return self.wait_status(lambda st: True, "mpredir started")


@pytest.fixture
def procd(request, topology, socks, mpredir_bin):
    # the topology is shared: a directory per test, parameters included
    tag = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name[5:]).strip("-")
    p = Procd(topology, mpredir_bin, tag)
    yield p
    p.stop()


def sections(p, socks, servers=("dante-none",), enabled=True, **extra):
    """A UCI configuration for the test router: the daemon's own firewall
    on the LAN interface, its own control socket, servers from the farm."""
    secs = [("mpredir", "main", {"enabled": enabled})]
    for s in servers:
        secs.append(("server", None, socks[s].server_config()))
    secs += [
        ("firewall", None, {"lan_interfaces": [T.RTR_LAN_IF]}),
        ("control", None, {"socket": p.sock}),
        ("log", None, {"level": "debug"}),
    ]
    for typ, opts in extra.items():
        secs.append((typ, None, opts))
    return secs


def done_flows(st):
    return st["flows"]["ended"]["done"]


def lan_download(topology, procd, n=4 << 20):
    """A LAN download, through the daemon: it counts one more flow done
    (without the daemon and its table, the router would route it
    directly)."""
    done = done_flows(procd.status())
    r = clients.fetch(topology, "lan", clients.bytes_url(T.DST4, n))
    assert r.ok(n), r
    procd.wait_status(lambda st: done_flows(st) == done + 1,
                      "one more flow done")
    return r


def proc_nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return tuple(int(x) for x in line.split()[3:5])
    raise AssertionError("no 'Max open files' in /proc/%d/limits" % pid)


# ------------------------------------------------------------------------
# init script
# ------------------------------------------------------------------------
def test_start_declares_instance_and_serves(topology, socks, procd):
    """start: one instance, `mpredir -c /etc/config/mpredir --syslog`,
    respawned, stdout/stderr to syslog, nofile 8768 (the default max_flows'
    need) soft, 524288 hard, reload on mpredir/network/firewall commits;
    the command serves a LAN download; a second start with the file
    unchanged keeps the instance; stop ends it (exit 0)."""
    procd.write(sections(procd, socks))
    r, svc = procd.rc("start")
    assert r.returncode == 0, r.stderr
    assert svc["service"] == "set" and len(svc["instances"]) == 1, \
        (svc, r.stderr)
    params = svc["instances"][0]["params"]
    assert params["command"] == [procd.bin, "-c", procd.conf, "--syslog"]
    assert "respawn" in params
    assert params["limits"] == ["nofile=8768 524288"]
    assert params["stdout"] == ["1"] and params["stderr"] == ["1"]
    assert svc["triggers"] == ["mpredir", "network", "firewall"]

    procd.wait_ready()
    pid = procd.daemon.pid
    if not mpredir_daemon.under_valgrind(procd.bin):
        assert proc_nofile(pid)[0] == 8768
    lan_download(topology, procd)
    st = procd.status()
    assert [s["address"] for s in st["servers"]] == \
        [socks["dante-none"].address]

    r, svc = procd.rc("start")
    assert r.returncode == 0, r.stderr
    assert procd.running() and procd.daemon.pid == pid

    r, svc = procd.rc("stop")
    assert svc["kill"] and not procd.running()


def test_nofile_follows_max_flows_without_restart(topology, socks, procd):
    """The daemon raises its soft limit itself to 2 x max_flows + 576, at
    start and on reload: max_flows 6000 -> 12576, then a reload to 8000 ->
    16576, same process (the script's limit does not depend on the
    file)."""
    if mpredir_daemon.under_valgrind(procd.bin):
        pytest.skip("valgrind emulates the daemon's setrlimit: "
                    "/proc/PID/limits shows valgrind's own limit")
    procd.write(sections(procd, socks, relay={"max_flows": 6000}))
    r, svc = procd.rc("start")
    assert svc["instances"][0]["params"]["limits"] == ["nofile=8768 524288"]
    procd.wait_ready()
    pid = procd.daemon.pid
    assert proc_nofile(pid)[0] == 12576

    procd.write(sections(procd, socks, relay={"max_flows": 8000}))
    r, svc = procd.rc("reload")
    assert svc["signals"] == [["mpredir", "*", "HUP"]], (svc, r.stderr)
    procd.topo.wait_until(lambda: proc_nofile(pid)[0] == 16576,
                          timeout=10, what="soft limit raised to 16576")
    assert procd.daemon.pid == pid and procd.running()


def test_check_gate_refuses_broken_config(topology, socks, procd):
    """Not running, a file `mpredir --check` refuses: no instance, the
    daemon's own error and the reason printed."""
    secs = sections(procd, socks)
    secs.append(("server", None, {"address": "192.0.2.9", "port": 70000}))
    procd.write(secs)
    r, svc = procd.rc("start")
    assert svc["service"] and svc["instances"] == [], svc
    assert not procd.running()
    assert "70000" in r.stderr, r.stderr
    assert "%s is not valid: not started" % procd.conf in r.stderr


def test_start_while_running_keeps_daemon_on_broken_file(topology, socks,
                                                         procd):
    """`start` while the daemon runs, with a file that is not valid: procd
    gets the same instance (rc.common sends the service whatever
    start_service returns; none declared would stop the daemon): the
    daemon keeps running, on its configuration, and says so."""
    procd.write(sections(procd, socks))
    procd.rc("start")
    procd.wait_ready()
    pid = procd.daemon.pid
    inst = procd.instance

    broken = sections(procd, socks)
    broken.append(("relay", None, {"max_flows": 0}))
    procd.write(broken)
    r, svc = procd.rc("start")
    assert procd.running() and procd.daemon.pid == pid, (svc, r.stderr)
    assert svc["instances"] == [inst], (svc, r.stderr)
    assert r.returncode == 0, r.stderr  # close_service's status
    assert "max_flows" in r.stderr, r.stderr
    assert "%s is not valid: the running daemon keeps its configuration" \
        % procd.conf in r.stderr, r.stderr
    lan_download(topology, procd)


@pytest.mark.parametrize("breakage", ["enabled", "main"])
def test_reload_keeps_daemon_on_broken_main(topology, socks, procd,
                                            breakage):
    """reload while running, the file broken where the script reads
    `enabled`: `option enabled 'maybe'`, or the `config mpredir 'main'`
    line itself not parsing (uci drops the section, so `enabled` reads 0):
    the check comes first, so no stop, no signal; the daemon keeps
    running."""
    procd.write(sections(procd, socks))
    procd.rc("start")
    procd.wait_ready()
    pid = procd.daemon.pid

    if breakage == "enabled":
        procd.write(sections(procd, socks, enabled="maybe"))
        said = "maybe"
    else:
        text = uci_text(sections(procd, socks))
        good = "config mpredir 'main'\n"
        assert text.startswith(good)
        procd.write_text("config mpredir 'main\n" + text[len(good):])
        said = "quote"
    r, svc = procd.rc("reload")
    assert procd.running() and procd.daemon.pid == pid, (svc, r.stderr)
    assert svc["signals"] == [] and not svc["kill"], (svc, r.stderr)
    assert said in r.stderr, r.stderr
    assert "not valid: the running daemon keeps its configuration" in \
        r.stderr, r.stderr
    assert "disabled: uci set" not in r.stderr, r.stderr
    lan_download(topology, procd)


def test_disabled_not_started(topology, socks, procd):
    """enabled 0 (as shipped), or no file: no instance, and how to enable
    is said."""
    r, svc = procd.rc("start")
    assert svc["service"] and svc["instances"] == [], svc
    assert "uci set mpredir.main.enabled=1;" in r.stderr, r.stderr
    procd.write(sections(procd, socks, enabled=False))
    r, svc = procd.rc("start")
    assert svc["service"] and svc["instances"] == [], svc
    assert "uci set mpredir.main.enabled=1;" in r.stderr, r.stderr
    assert not procd.running()


def test_reload_sighup_and_enable_disable(topology, socks, procd):
    """reload while running: check, then SIGHUP, which the daemon applies
    (a second server); a broken file: no signal, errors printed, daemon
    unchanged; enabled 0 + reload stops it; enabled 1 + reload starts."""
    procd.write(sections(procd, socks))
    procd.rc("start")
    procd.wait_ready()
    pid = procd.daemon.pid

    procd.write(sections(procd, socks, servers=("dante-none", "micro-none")))
    r, svc = procd.rc("reload")
    assert svc["signals"] == [["mpredir", "*", "HUP"]], (svc, r.stderr)
    assert svc["instances"] == [] and svc["service"] is None
    procd.wait_status(lambda st: len(st["servers"]) == 2,
                      "the reloaded configuration's 2 servers")
    assert procd.daemon.pid == pid and procd.running()
    lan_download(topology, procd)

    broken = sections(procd, socks)
    broken.append(("relay", None, {"max_flows": 0}))
    procd.write(broken)
    r, svc = procd.rc("reload")
    assert svc["signals"] == [] and "max_flows" in r.stderr, r.stderr
    assert "not valid: the running daemon keeps its configuration" in \
        r.stderr, r.stderr
    assert procd.running() and procd.daemon.pid == pid
    assert len(procd.status()["servers"]) == 2

    procd.write(sections(procd, socks, enabled=False))
    r, svc = procd.rc("reload")
    assert svc["service"] and svc["instances"] == []
    assert not procd.running()

    procd.write(sections(procd, socks))
    r, svc = procd.rc("reload")
    assert len(svc["instances"]) == 1, (svc, r.stderr)
    procd.wait_ready()
    assert procd.daemon.pid != pid
    lan_download(topology, procd)


# ------------------------------------------------------------------------
# scripts/install.sh (Debian/Ubuntu)
# ------------------------------------------------------------------------
def run_install(destdir, mpredir_bin, *args):
    # the executable itself, not a valgrind wrapper that finds it by a
    # relative path
    mpredir_bin = mpredir_daemon.elf_binary(mpredir_bin)
    return subprocess.run(
        ["bash", INSTALL, "--destdir", destdir, "--binary", mpredir_bin,
         *args], capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL)


def test_install_sh(topology, mpredir_bin):
    """Into a temporary DESTDIR: binary, unit, sysctl file, config 0600
    (in a 0700 directory) that `mpredir --check` refuses until a server is
    set; a second run keeps the edited config; the unit passes
    `systemd-analyze verify`."""
    dest = os.path.join(topology.workdir, "install-root")
    r = run_install(dest, mpredir_bin)
    assert r.returncode == 0, r.stdout + r.stderr
    sbin = os.path.join(dest, "usr", "local", "sbin", "mpredir")
    unit = os.path.join(dest, "etc", "systemd", "system", "mpredir.service")
    sysctl = os.path.join(dest, "etc", "sysctl.d", "60-mpredir.conf")
    conf = os.path.join(dest, "etc", "mpredir", "mpredir.json")
    for path in (sbin, unit, sysctl, conf):
        assert os.path.isfile(path), path
    assert os.access(sbin, os.X_OK)
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(conf)).st_mode) == 0o700
    with open(unit) as f:
        text = f.read()
    # the unit names the installed paths
    assert "ExecStart=/usr/local/sbin/mpredir -c /etc/mpredir/mpredir.json" \
        in text, text
    with open(sysctl) as f:
        assert re.search(r"^net\.mptcp\.enabled *= *1$", f.read(), re.M)
    # the shipped config waits for a server: the unit's check refuses it
    chk = subprocess.run([sbin, "--check", "-c", conf], capture_output=True,
                         text=True)
    assert chk.returncode == 1, chk.stderr
    assert "at least one server is required" in chk.stderr

    with open(conf, "w") as f:
        f.write('{"servers": [{"address": "192.0.2.77", "port": 1080}]}\n')
    chk = subprocess.run([sbin, "--check", "-c", conf], capture_output=True,
                         text=True)
    assert chk.returncode == 0, chk.stderr
    r = run_install(dest, mpredir_bin)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(conf) as f:
        assert "192.0.2.77" in f.read()
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600

    if shutil.which("systemd-analyze"):
        # verify resolves ExecStart: point it at the installed binary
        root_unit = os.path.join(topology.workdir, "mpredir.service")
        with open(root_unit, "w") as f:
            f.write(text.replace("/usr/local/sbin/mpredir", sbin))
        v = subprocess.run(["systemd-analyze", "verify", root_unit],
                           capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr


def test_install_sh_prefix(topology, mpredir_bin):
    """--prefix moves the daemon, and the unit follows it."""
    dest = os.path.join(topology.workdir, "install-prefix")
    r = run_install(dest, mpredir_bin, "--prefix", "/opt/mpredir")
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.access(os.path.join(dest, "opt", "mpredir", "sbin", "mpredir"),
                     os.X_OK)
    with open(os.path.join(dest, "etc", "systemd", "system",
                           "mpredir.service")) as f:
        unit = f.read()
    execs = re.findall(r"^Exec\w+=(\S+)", unit, re.M)
    assert execs.count("/opt/mpredir/sbin/mpredir") == 3, execs
    assert "/usr/local" not in unit
    r = run_install(dest, mpredir_bin, "--prefix", "relative/dir")
    assert r.returncode == 1 and "absolute" in r.stderr, r.stderr
