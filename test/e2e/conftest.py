# SPDX-License-Identifier: GPL-2.0-or-later
"""pytest fixtures for the end-to-end tests (root: network namespaces).

Session-wide:
  topology        lib.topo.Topology, built once: lan/rtr/srv/dst namespaces
                  with httpd.py running in dst
  socks_farm      the four SOCKS5 servers in srv (SocksFarm), started once
  mpredir_bin     path of the daemon ($MPREDIR_BIN or redirector/mpredir)
Per test:
  socks           the farm, every server (re)started if a test stopped one
  nft_rules       load(**kw) the reference ruleset into rtr; unloaded after
  mpredir         factory: mpredir(config=None, servers=None, **kw) ->
                  started Mpredir; at the end of the test each one is
                  stopped with SIGTERM and must exit 0 (else the test errors,
                  with the daemon's log)

Test helpers live in test/lib (topo, socks_servers, clients, nftrules,
mpredir_daemon, resources, proc); this file puts test/lib on sys.path.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.abspath(os.path.join(HERE, "..", "lib"))
if LIB not in sys.path:
    sys.path.insert(0, LIB)

import mpredir_daemon  # noqa: E402
import nftrules  # noqa: E402
import socks_servers  # noqa: E402
import topo as T  # noqa: E402

T.install_sigterm_cleanup()


def _need_root():
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root (network namespaces)")


@pytest.fixture(scope="session")
def topology():
    _need_root()
    t = T.Topology()
    t.setup()
    yield t
    t.teardown()


@pytest.fixture(scope="session")
def socks_farm(topology):
    farm = socks_servers.SocksFarm(topology)
    farm.start()
    yield farm
    farm.stop()


@pytest.fixture
def socks(socks_farm):
    """The SOCKS servers, all running at the start of the test."""
    return socks_farm.ensure_running()


@pytest.fixture(scope="session")
def mpredir_bin():
    return mpredir_daemon.binary_path()


@pytest.fixture
def nft_rules(topology):
    """load(lan_ifaces=("lan0",), port=1088, servers=("10.9.0.1",), mark=None)
    loads nft-rules/mpredir.nft into rtr; the table is removed after the
    test."""
    loaded = []

    def load(**kw):
        script = nftrules.load(topology, **kw)
        loaded.append(script)
        return script

    yield load
    if loaded:
        nftrules.unload(topology)


@pytest.fixture
def mpredir(request, topology, socks, mpredir_bin):
    """Factory: mpredir(config=None, servers=None, **kw) -> Mpredir.

    config: a full config dict (see mpredir_daemon.make_config); if None,
      one is made from servers (SocksServer objects or dicts; default: the
      no-auth dante server) and the make_config keywords in kw (port,
      address, mptcp, mark, level, extra sections).
    Mpredir keywords also accepted: binary, load_rules (default True: the
    reference ruleset is loaded with the config's port/servers and removed
    at stop), lan_ifaces, env, start_timeout.
    """
    started = []

    def start(config=None, servers=None, **kw):
        inst_kw = {k: kw.pop(k) for k in ("binary", "load_rules", "lan_ifaces",
                                          "env", "name") if k in kw}
        start_timeout = kw.pop("start_timeout", 10.0)
        if config is None:
            config = mpredir_daemon.make_config(
                servers or [socks["dante-none"]], **kw)
        elif kw:
            raise TypeError("config given: unexpected %s" % sorted(kw))
        m = mpredir_daemon.Mpredir(topology, config,
                                   binary=inst_kw.pop("binary", mpredir_bin),
                                   **inst_kw)
        started.append(m)
        request.node.mpredir_instances = started
        m.start(start_timeout)
        return m

    yield start
    errors = []
    for m in started:
        if m.daemon is None:
            continue
        try:
            if m.exit_status is None or m.running():
                m.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed test, attach the tail of each mpredir log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when != "teardown":  # teardown errors carry it
        for m in getattr(item, "mpredir_instances", []):
            rep.sections.append(("%s log (%s)" % (m.name, m.log_path),
                                 m.log(tail=100)))
