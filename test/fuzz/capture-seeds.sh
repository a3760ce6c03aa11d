#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Capture the netlink seeds of the rtmon and mptcp_pm fuzz targets from the
# running kernel (test/fuzz/README.md). Root; everything happens in a
# network namespace of its own (unshare -n), gone when the script ends.
# Writes test/fuzz/corpus/{rtmon,mptcp_pm}/captured-*, replacing them.
set -eu
cd "$(dirname "$0")/../.."
RT=test/fuzz/corpus/rtmon
PM=test/fuzz/corpus/mptcp_pm
CAP=build/fuzz/capture_nl

if [ "${1-}" != --inside ]; then
	mkdir -p build/fuzz
	# word splitting wanted: pkg-config prints several flags
	# shellcheck disable=SC2046
	${CC:-cc} -O1 -g -Wall -Wextra -Werror -o "$CAP" test/fuzz/capture_nl.c \
		$(pkg-config --cflags --libs libmnl)
	rm -f "$RT"/captured-* "$PM"/captured-*
	exec unshare -n "$0" --inside
fi

# Two WANs as veth pairs, a point-to-point address, IPv6.
ip link set lo up
ip link add wan0 type veth peer name wan0p
ip link add wan1 type veth peer name wan1p
ip link set wan0 up
ip link set wan0p up
ip link set wan1 up
ip link set wan1p up
ip addr add 192.0.2.10/24 dev wan0
ip addr add 198.51.100.10/24 dev wan1
ip addr add 10.9.0.1 peer 10.9.0.2/32 dev wan1
ip -6 addr add 2001:db8:1::10/64 dev wan0 nodad
ip route add default via 192.0.2.1 dev wan0
ip route add default via 198.51.100.1 dev wan1 metric 10
ip route add default via 198.51.100.1 dev wan1 table 102

$CAP links "$RT/captured-dump-links"
$CAP addrs "$RT/captured-dump-addrs"
$CAP routes "$RT/captured-dump-routes"

# Events: each buffer the kernel sends while things change.
$CAP events "$RT/captured-event" 3 >/tmp/capture_nl.$$ &
pid=$!
for _ in $(seq 50); do
	grep -q listening /tmp/capture_nl.$$ 2>/dev/null && break
	sleep 0.1
done
rm -f /tmp/capture_nl.$$
ip link set wan1p down          # carrier lost on wan1
ip link set wan1p up
ip addr del 198.51.100.10/24 dev wan1
ip addr add 198.51.100.11/24 dev wan1
ip route del default via 198.51.100.1 dev wan1 metric 10
ip route add default via 198.51.100.1 dev wan1 metric 10
ip route del default via 192.0.2.1 dev wan0
ip -6 addr del 2001:db8:1::10/64 dev wan0
ip link set wan0 name wanx
ip link del wanx
wait "$pid"

# MPTCP endpoints of every kind the daemon may meet.
ip mptcp endpoint add 198.51.100.11 dev wan1 id 101 subflow
ip mptcp endpoint add 10.9.0.1 dev wan1 id 7 subflow backup
ip -6 addr add 2001:db8:2::1/64 dev wan1 nodad
ip mptcp endpoint add 2001:db8:2::1 dev wan1 id 102 signal port 1080
ip mptcp endpoint add 198.51.100.12 subflow fullmesh
ip mptcp limits set subflow 4 add_addr_accepted 4
$CAP mptcp-family "$PM/captured-family"
$CAP mptcp-endpoints "$PM/captured-endpoints"
ip mptcp endpoint flush
$CAP mptcp-endpoints "$PM/captured-endpoints-empty"
ls -l "$RT" "$PM"
