# SPDX-License-Identifier: GPL-2.0-or-later
"""Load the reference ruleset nft-rules/mpredir.nft into a namespace (rtr),
with the test's LAN interface, listener port and server addresses, in one
nft transaction."""

import ipaddress
import os
import re

import topo as T

NFT_FILE = os.path.join(T.REPO_ROOT, "nft-rules", "mpredir.nft")
TABLE = "inet mpredir"


def _set_define(text, name, value):
    new, n = re.subn(r"(?m)^define\s+%s\s*=.*$" % re.escape(name),
                     "define %s = %s" % (name, value), text)
    if n != 1:
        raise ValueError("%s: no single `define %s` line" % (NFT_FILE, name))
    return new


def render(lan_ifaces=(T.RTR_LAN_IF,), port=1088, servers=(T.SERVICE4,),
           mark=None, path=NFT_FILE):
    """The nft script: the file (port/mark defines replaced) followed by
    element commands for lan_ifaces (replacing the default) and servers."""
    with open(path) as f:
        text = f.read()
    text = _set_define(text, "LISTEN_PORT", int(port))
    if mark is not None:
        text = _set_define(text, "MARK", "0x%x" % int(mark))
    cmds = ["flush set %s lan_ifaces" % TABLE]
    if lan_ifaces:
        cmds.append("add element %s lan_ifaces { %s }" % (
            TABLE, ", ".join('"%s"' % i for i in lan_ifaces)))
    v4 = [str(ipaddress.ip_address(a)) for a in servers
          if ipaddress.ip_address(a).version == 4]
    v6 = [str(ipaddress.ip_address(a)) for a in servers
          if ipaddress.ip_address(a).version == 6]
    # the servers go into the bypass sets, as the daemon puts them
    if v4:
        cmds.append("add element %s bypass4 { %s }" % (TABLE, ", ".join(v4)))
    if v6:
        cmds.append("add element %s bypass6 { %s }" % (TABLE, ", ".join(v6)))
    return text + "\n" + "\n".join(cmds) + "\n"


def check(topology=None, ns="rtr", path=NFT_FILE):
    """`nft -c -f FILE` (in ns, or on the host when topology is None).
    Return the CompletedProcess (check=False: the caller asserts)."""
    if topology is None:
        import subprocess
        return subprocess.run(["nft", "-c", "-f", path], capture_output=True,
                              text=True, check=False)
    return topology.run(ns, ["nft", "-c", "-f", path], check=False)


def load(topology, lan_ifaces=(T.RTR_LAN_IF,), port=1088,
         servers=(T.SERVICE4,), mark=None, ns="rtr", path=NFT_FILE):
    """Load (or reload) the ruleset into ns. Raises CommandError on error."""
    script = render(lan_ifaces, port, servers, mark, path)
    topology.run(ns, ["nft", "-f", "-"], input=script)
    return script


def unload(topology, ns="rtr"):
    topology.run(ns, ["nft", "delete", "table"] + TABLE.split(), check=False)


def listing(topology, ns="rtr"):
    return topology.run(ns, ["nft", "list", "table"] + TABLE.split()).stdout


def redirect_count(topology, ns="rtr"):
    """Packets counted by the redirect rule (first packet of each flow)."""
    out = topology.run(ns, ["nft", "list", "chain"] + TABLE.split()
                       + ["prerouting"]).stdout
    m = re.search(r"counter packets (\d+) bytes \d+ redirect", out)
    return int(m.group(1)) if m else 0
