# SPDX-License-Identifier: GPL-2.0-or-later
"""Bookkeeping of what a test session creates outside its own process
(network namespaces, system users, its temp dir), so it can always be removed:

* by the owner: Topology.teardown() (fixture finalizer) and an atexit hook;
* by a later session, when the owner died without cleaning up (SIGKILL, a
  CI time-out): reap_stale() removes whatever a dead owner left.

Each owner keeps a JSON record in STATE_DIR: its pid and that pid's start
time (so a reused pid is not mistaken for the owner), and its resources.
"""

import json
import os
import pwd
import shutil
import signal
import subprocess
import time

STATE_DIR = "/run/mpredir-test"


def _starttime(pid):
    """Kernel start time (clock ticks since boot) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and ')': the fields after the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[19])  # field 22 overall


def _alive(pid, starttime):
    st = _starttime(pid)
    return st is not None and st == starttime


def pid_state(pid):
    """Process state letter ('R', 'S', 'Z', ...) or None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()[0]


def pid_gone(pid):
    st = pid_state(pid)
    return st is None or st in ("Z", "X")


def become_subreaper():
    """Make this process the reaper of its orphaned descendants (e.g. dante
    children outliving their mother), so that they are reaped here instead
    of lingering as zombies under a PID 1 that may not reap."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def reap_zombies(exclude=()):
    """waitpid() every zombie child of this process, except pids in exclude
    (children whose status someone else will collect, e.g. a Popen)."""
    me = str(os.getpid())
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude:
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                data = f.read()
        except OSError:
            continue
        f = data[data.rindex(")") + 2:].split()
        if f[0] == "Z" and f[1] == me:
            try:
                os.waitpid(int(d), os.WNOHANG)
            except ChildProcessError:
                pass


def netns_pids(name):
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        return []
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def kill_pids(pids, grace=2.0):
    """SIGTERM, wait up to grace seconds, then SIGKILL what is left."""
    pids = [p for p in pids if p != os.getpid()]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if all(pid_gone(p) for p in pids):
            return
        time.sleep(0.02)
    for p in pids:
        if not pid_gone(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not all(pid_gone(p) for p in pids):
        time.sleep(0.02)


def netns_exists(name):
    return os.path.exists(os.path.join("/run/netns", name))


def destroy_netns(name):
    """Kill every process in namespace `name`, then delete it. Idempotent."""
    if not netns_exists(name):
        return
    for _ in range(5):
        pids = netns_pids(name)
        if not pids:
            break
        kill_pids(pids)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def remove_user(name):
    if not user_exists(name):
        return
    # A process still running as the user makes userdel fail: kill them.
    r = subprocess.run(["pgrep", "-u", name], capture_output=True, text=True,
                       check=False)
    kill_pids([int(x) for x in r.stdout.split() if x.isdigit()])
    subprocess.run(["userdel", name], capture_output=True, check=False)
    if user_exists(name):
        subprocess.run(["userdel", "-f", name], capture_output=True, check=False)


class Record:
    """The on-disk record of one owner's resources."""

    def __init__(self, tag):
        self.tag = tag
        self.path = os.path.join(STATE_DIR, tag + ".json")
        self.data = {"pid": os.getpid(), "starttime": _starttime(os.getpid()),
                     "netns": [], "users": [], "workdirs": []}
        os.makedirs(STATE_DIR, mode=0o755, exist_ok=True)
        self._write()

    def _write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)

    def add(self, kind, name):
        self.data.setdefault(kind, [])
        if name not in self.data[kind]:
            self.data[kind].append(name)
            self._write()

    def discard(self, kind, name):
        if name in self.data.get(kind, []):
            self.data[kind].remove(name)
            self._write()

    def close(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def cleanup_record_data(data):
    for ns in data.get("netns", []):
        destroy_netns(ns)
    for user in data.get("users", []):
        remove_user(user)
    for d in data.get("workdirs", []):
        # only what this library creates: a temp dir named mpr-*
        if os.path.basename(d).startswith("mpr-") and os.path.isdir(d):
            shutil.rmtree(d, ignore_errors=True)


def reap_stale():
    """Remove resources recorded by owners that are no longer running."""
    try:
        names = os.listdir(STATE_DIR)
    except FileNotFoundError:
        return []
    reaped = []
    for n in names:
        if not n.endswith(".json"):
            continue
        p = os.path.join(STATE_DIR, n)
        try:
            with open(p) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if _alive(data.get("pid", -1), data.get("starttime")):
            continue
        cleanup_record_data(data)
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        reaped.append(n[:-5])
    return reaped
