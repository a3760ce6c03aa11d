# SPDX-License-Identifier: GPL-2.0-or-later
"""Long-running processes inside a namespace, with their real pid.

`ip netns exec` and wrappers such as `mptcpize run` may fork (depending on
version and options), so Popen.pid is not necessarily the server's pid. A
Daemon is started as

    ip netns exec NS sh -c 'echo $$ >PIDFILE; exec "$@"' PIDFILE ARGV...

and the pid read back from PIDFILE is the one of ARGV[0] (every layer after
the shell execs).  Output (stdout and stderr) goes to a log file.
"""

import os
import signal
import subprocess
import time

from resources import pid_gone

_WRAP = 'echo $$ >"$0"; exec "$@"'


class DaemonError(RuntimeError):
    pass


class Daemon:
    def __init__(self, nsname, argv, name, workdir, env=None):
        self.nsname = nsname
        self.argv = [str(a) for a in argv]
        self.name = name
        self.workdir = workdir
        self.env = env
        self.log_path = os.path.join(workdir, name + ".log")
        self.pidfile = os.path.join(workdir, name + ".wrap.pid")
        self.popen = None
        self.pid = None
        self.returncode = None

    def __repr__(self):
        return "<Daemon %s pid=%s in %s>" % (self.name, self.pid, self.nsname)

    def start(self, timeout=10.0):
        """Start; return once the real pid is known (not once it serves)."""
        if self.running():
            raise DaemonError("%s already running" % self.name)
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass
        self.pid = None
        self.returncode = None
        env = None
        if self.env:
            env = dict(os.environ)
            env.update(self.env)
        # Append: a restarted server keeps one log with every run.
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                ["ip", "netns", "exec", self.nsname, "sh", "-c", _WRAP,
                 self.pidfile] + self.argv,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, close_fds=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.pidfile) as f:
                    txt = f.read().strip()
                if txt:
                    self.pid = int(txt)
                    return self
            except FileNotFoundError:
                pass
            if self.popen.poll() is not None:
                break
            time.sleep(0.01)
        rc = self.popen.poll()
        raise DaemonError("%s did not start (rc=%s): %s\n%s" % (
            self.name, rc, " ".join(self.argv), self.log()))

    def running(self):
        if self.popen is None or self.pid is None:
            return False
        if self.popen.poll() is not None and self.popen.pid == self.pid:
            return False
        return not pid_gone(self.pid)

    def check_alive(self):
        """Raise DaemonError (with the log) if the process has exited."""
        if not self.running():
            raise DaemonError("%s exited (rc=%s)\n--- log %s ---\n%s" % (
                self.name, self.poll(), self.log_path, self.log()))

    def poll(self):
        if self.popen is None:
            return self.returncode
        rc = self.popen.poll()
        if rc is not None:
            self.returncode = rc
        return rc

    def send_signal(self, sig):
        if self.pid is not None and not pid_gone(self.pid):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout=None):
        """Wait for the wrapper process (whose status is the daemon's when
        nothing forks); return the return code (negative: killed by signal).
        """
        if self.popen is None:
            return self.returncode
        try:
            self.returncode = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        # If some layer forked, the real process may outlive the wrapper.
        deadline = time.monotonic() + (timeout or 5.0)
        while self.pid is not None and not pid_gone(self.pid):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
        return self.returncode

    def stop(self, timeout=5.0, sig=signal.SIGTERM):
        """Send sig (SIGTERM), wait up to timeout, then SIGKILL.

        Return the exit status: >= 0 exit code, < 0 the signal that killed
        it, None if it was not started.
        """
        if self.popen is None:
            return self.returncode
        if self.popen.poll() is None or (self.pid and not pid_gone(self.pid)):
            self.send_signal(sig)
            rc = self.wait(timeout)
            if rc is None:
                self.send_signal(signal.SIGKILL)
                if self.popen.poll() is None:
                    self.popen.kill()
                self.wait(5.0)
        self.returncode = self.popen.poll()
        return self.returncode

    def kill(self):
        """SIGKILL at once ("server crashed"); return the exit status."""
        return self.stop(timeout=5.0, sig=signal.SIGKILL)

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)

    def log(self, tail=None):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return ""
        text = data.decode("utf-8", "replace")
        if tail:
            text = "\n".join(text.splitlines()[-tail:])
        return text
