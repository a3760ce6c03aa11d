#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# A stand-in for OpenWrt's /etc/rc.common, /lib/functions.sh (config_*)
# and /lib/functions/procd.sh, to run a procd init script on Debian:
#
#   sh openwrt_rc.sh INITSCRIPT ACTION        (start, stop, reload, restart)
#
# It stands in for procd only: the init script's own functions run as they
# are. Nothing is started here. Each procd_* call is recorded, one line of
# tab-separated fields, in $PROCD_STANDIN_LOG; the test plays procd: it
# reads the records and runs, stops or signals the real daemon.
# procd_running answers from $PROCD_STANDIN_RUNNING (a file that exists
# while the test runs the instance). config_load reads
# ${UCI_CONFIG_DIR:-/etc/config}/PACKAGE; like uci's export, anonymous
# sections get names (cfg01, cfg02...).
#
# shellcheck disable=SC3043 # busybox ash and dash have `local`

: "${PROCD_STANDIN_LOG:?}" "${PROCD_STANDIN_RUNNING:?}"

initscript=$1
action=${2:-help}
shift 2

_record() {
	local IFS='	'
	echo "$*" >>"$PROCD_STANDIN_LOG"
}

# --- /lib/functions.sh: the config_* functions ---------------------------
_CFG_SEQ=0
_CFG_SECTIONS=
_CFG_CUR=

_cfg_var() {
	# a value's variable: section and option names are [A-Za-z0-9_]
	echo "_CFG__$1__$2"
}

config() {
	local name="$2"
	if [ -z "$name" ]; then
		_CFG_SEQ=$((_CFG_SEQ + 1))
		name=$(printf 'cfg%02d' "$_CFG_SEQ")
	fi
	_CFG_CUR=$name
	_CFG_SECTIONS="$_CFG_SECTIONS $name"
	eval "$(_cfg_var "$name" TYPE)=\$1"
}

option() {
	eval "$(_cfg_var "$_CFG_CUR" "$1")=\$2"
}

list() {
	local var
	var=$(_cfg_var "$_CFG_CUR" "$1")
	eval "$var=\"\${$var:+\$$var }\$2\""
}

config_load() {
	local s var
	for s in $_CFG_SECTIONS; do
		for var in $(set | sed -n "s/^\(_CFG__${s}__[A-Za-z0-9_]*\)=.*/\1/p"); do
			unset "$var"
		done
	done
	_CFG_SECTIONS=
	_CFG_SEQ=0
	# shellcheck disable=SC1090 # the UCI file, read as shell like old uci
	[ -f "${UCI_CONFIG_DIR:-/etc/config}/$1" ] &&
		. "${UCI_CONFIG_DIR:-/etc/config}/$1"
	return 0
}

config_get() {
	local var
	var=$(_cfg_var "$2" "$3")
	eval "$1=\${$var-\$4}"
}

config_get_bool() {
	local v
	config_get v "$2" "$3" "$4"
	case "$v" in
	1 | on | true | yes | enabled) v=1 ;;
	0 | off | false | no | disabled) v=0 ;;
	*) v=$4 ;;
	esac
	eval "$1=\$v"
}

config_foreach() {
	local fn="$1" type="$2" s t
	shift 2
	for s in $_CFG_SECTIONS; do
		config_get t "$s" TYPE
		[ -z "$type" ] || [ "$t" = "$type" ] || continue
		"$fn" "$s" "$@"
	done
}

# --- /lib/functions/procd.sh ------------------------------------------
procd_open_service() { _record open_service "$@"; }
procd_close_service() { _record close_service "$@"; }
procd_open_instance() { _record open_instance "$@"; }
procd_close_instance() { _record close_instance "$@"; }
procd_set_param() { _record set_param "$@"; }
procd_append_param() { _record append_param "$@"; }
procd_add_reload_trigger() { _record reload_trigger "$@"; }
procd_send_signal() { _record send_signal "$@"; }
procd_kill() { _record kill "$@"; }
procd_running() { [ -e "$PROCD_STANDIN_RUNNING" ]; }

# --- /etc/rc.common ----------------------------------------------------
start_service() { return 0; }
stop_service() { return 0; }
service_triggers() { return 0; }

# shellcheck disable=SC1090
. "$initscript"

_name=$(basename "$initscript")

# as rc.common's: start_service's status is not the script's (procd's
# close_service is)
start() {
	procd_open_service "$_name" "$initscript"
	start_service "$@"
	service_triggers
	procd_close_service set
}

stop() {
	stop_service "$@"
	procd_kill "$_name" "$1"
}

reload() {
	if type reload_service >/dev/null 2>&1; then
		reload_service "$@"
	else
		start "$@"
	fi
}

restart() {
	stop "$@"
	start "$@"
}

case "$action" in
start | stop | reload | restart) "$action" "$@" ;;
*)
	echo "usage: $0 INITSCRIPT start|stop|reload|restart" >&2
	exit 2
	;;
esac
