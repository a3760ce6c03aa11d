#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Install mpredir on a Debian/Ubuntu router run by systemd: the daemon,
# its unit, the sysctl defaults and, when there is none yet, a config
# /etc/mpredir/mpredir.json (0600) to fill in. Safe to run again: files are
# replaced, the config never is. Starts nothing. doc/openwrt.md, "Other
# Linux".
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--binary FILE]
#
#   --prefix DIR    the daemon goes to DIR/sbin (default /usr/local)
#   --destdir DIR   install under DIR, as for packaging or a test (also
#                   $DESTDIR); nothing is applied to the running system
#   --binary FILE   install FILE instead of building redirector/mpredir
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/usr/local
DESTDIR=${DESTDIR:-}
BINARY=
CONF_DIR=/etc/mpredir
CONF=$CONF_DIR/mpredir.json
BUILD_DEPS="build-essential pkg-config libev-dev libjson-c-dev libmnl-dev libnftnl-dev"

die() {
	echo "install.sh: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
	--destdir) DESTDIR=${2:?--destdir needs a directory}; shift 2 ;;
	--binary) BINARY=${2:?--binary needs a file}; shift 2 ;;
	-h | --help) sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
case "$PREFIX" in
/*) ;;
*) die "--prefix must be an absolute path: $PREFIX" ;;
esac
if [ -n "$DESTDIR" ]; then
	mkdir -p "$DESTDIR"
	DESTDIR=$(cd "$DESTDIR" && pwd)
elif [ "$(id -u)" -ne 0 ]; then
	die "must run as root (or give --destdir)"
fi
SBIN=$PREFIX/sbin/mpredir

if [ -z "$BINARY" ]; then
	if ! make -C "$REPO" redirector/mpredir; then
		die "build failed; the build needs: apt-get install $BUILD_DEPS"
	fi
	BINARY=$REPO/redirector/mpredir
fi
[ -x "$BINARY" ] || die "not an executable: $BINARY"

install -D -m 0755 "$BINARY" "$DESTDIR$SBIN"

# The unit, with this prefix's path to the daemon.
install -d -m 0755 "$DESTDIR/etc/systemd/system"
sed "s|/usr/local/sbin/mpredir|$SBIN|g" "$REPO/scripts/mpredir.service" \
	>"$DESTDIR/etc/systemd/system/mpredir.service.tmp"
chmod 0644 "$DESTDIR/etc/systemd/system/mpredir.service.tmp"
mv -f "$DESTDIR/etc/systemd/system/mpredir.service.tmp" \
	"$DESTDIR/etc/systemd/system/mpredir.service"

install -D -m 0644 "$REPO/openwrt-package/mpredir/files/mpredir.sysctl" \
	"$DESTDIR/etc/sysctl.d/60-mpredir.conf"

# The config holds the SOCKS password: root only, and never replaced.
install -d -m 0700 "$DESTDIR$CONF_DIR"
if [ -e "$DESTDIR$CONF" ]; then
	echo "install.sh: keeping $DESTDIR$CONF"
	case "$(stat -c %a "$DESTDIR$CONF")" in
	600 | 400) ;;
	*) echo "install.sh: warning: $DESTDIR$CONF is readable by others" \
		"(chmod 600 it: it may hold a password)" >&2 ;;
	esac
else
	(
		umask 077
		cat >"$DESTDIR$CONF.tmp" <<'JSON'
{
  "servers": [],
  "firewall": { "lan_interfaces": ["br-lan"] }
}
JSON
		mv "$DESTDIR$CONF.tmp" "$DESTDIR$CONF"
	)
	chmod 0600 "$DESTDIR$CONF"
	echo "install.sh: created $DESTDIR$CONF"
fi

if [ -z "$DESTDIR" ]; then
	sysctl -q -p /etc/sysctl.d/60-mpredir.conf ||
		echo "install.sh: warning: sysctl defaults not applied" >&2
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload
	fi
fi

cat <<EOF2
install.sh: installed $DESTDIR$SBIN, the unit mpredir.service and the
sysctl defaults. Next: set "servers" (and the LAN and WAN interfaces) in
$CONF (doc/configuration.md), check it with
  $SBIN --check -c $CONF
then: systemctl enable --now mpredir
EOF2
