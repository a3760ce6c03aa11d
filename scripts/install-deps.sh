#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Install what mpredir's build and tests need, on Debian (12 and later).
# Non-interactive, as root, with no stdin. Fast when nothing is missing:
# apt-get is not run at all then.
set -eu

PACKAGES=(
	# build
	build-essential pkg-config libev-dev libjson-c-dev libmnl-dev
	libnftnl-dev
	# end-to-end tests
	dante-server microsocks mptcpize curl iperf3 nftables iptables iproute2
	python3 python3-pytest procps passwd util-linux valgrind
	# make shellcheck (part of make test)
	shellcheck
	# fuzz targets (make fuzz, make fuzz-replay): clang; libclang-rt-dev
	# holds libFuzzer and the sanitizer runtimes (only recommended by
	# clang); llvm has llvm-symbolizer, for readable crash reports
	clang libclang-rt-dev llvm
	# benchmarks (make bench: bench-setup, bench-perf)
	redsocks python3-matplotlib shadowsocks-libev nginx wrk
)

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: must run as root (it uses apt-get), e.g.:" >&2
	echo "  sudo $0" >&2
	exit 1
fi
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps.sh: needs Debian (dpkg-query, apt-get); install by hand:" >&2
	echo "  ${PACKAGES[*]}" >&2
	exit 1
fi

exec </dev/null

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	if [ "$status" != "installed" ]; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-deps.sh: all ${#PACKAGES[@]} packages are installed"
	exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"

# Keep package scripts from starting services (dante-server ships a danted
# service) while installing: a policy-rc.d that denies every start, unless
# the system already has its own policy.
POLICY=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
	if [ "$own_policy" -eq 1 ]; then
		rm -f "$POLICY"
	fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
	printf '#!/bin/sh\n# temporary, from mpredir scripts/install-deps.sh\nexit 101\n' >"$POLICY"
	chmod 0755 "$POLICY"
	own_policy=1
fi

# apt drops privileges to its sandbox user (_apt), which cannot create its
# temporary files when /tmp is not world-writable (seen on some VM images:
# "Couldn't create temporary file /tmp/apt.conf.XXXX for passing config to
# apt-key", and the package lists are silently not updated). Stay root then.
apt_opts=()
case "$(stat -c %a /tmp 2>/dev/null || echo 1777)" in
1777 | 777) ;;
*) apt_opts+=(-o APT::Sandbox::User=root) ;;
esac

export DEBIAN_FRONTEND=noninteractive
apt-get "${apt_opts[@]}" update
apt-get "${apt_opts[@]}" install -y --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	"${missing[@]}"

cleanup
own_policy=0

# The tests run their own danted (and the benchmarks their own redsocks,
# ss-server, ss-redir and nginx) inside network namespaces; a system service
# (enabled by the package) is of no use to them. Stop and disable it if it
# was installed just now.
for p in "${missing[@]}"; do
	case "$p" in
	dante-server) svc=danted ;;
	redsocks) svc=redsocks ;;
	shadowsocks-libev) svc=shadowsocks-libev ;;
	nginx) svc=nginx ;;
	*) continue ;;
	esac
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
	elif [ -x "/etc/init.d/$svc" ]; then
		"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
done

echo "install-deps.sh: done"
