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
# reads the records and runs, stops or signals the real daemon. As procd's
# `set`, a service's records replace its instance list: an instance not
# declared is stopped, one declared unchanged is kept (test_service.py,
# Procd.apply). procd_running answers from $PROCD_STANDIN_RUNNING (a file
# that exists while the test runs the instance).
#
# config_load parses ${UCI_CONFIG_DIR:-/etc/config}/PACKAGE as OpenWrt's
# does with `uci -S -n export` (awk here, there is no uci), then evaluates
# that export: anonymous sections get names (cfg01, cfg02...); a line that
# does not parse is reported on stderr and skipped, as uci does outside
# strict mode (-S), and so are the options of a section whose `config`
# line does not parse (the section is lost). Not handled (taken as lines
# that do not parse): values spanning lines, backslash escapes, words
# joined from several quoted pieces.
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
_CFG_SECTIONS=
_CFG_CUR=

_cfg_var() {
	# a value's variable: section and option names are [A-Za-z0-9_]
	echo "_CFG__$1__$2"
}

config() {
	local name="$2"
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

# PACKAGE's file as uci export writes it (config/option/list lines, each
# word single-quoted): the commands config_load evaluates.
_uci_export() {
	awk -v file="$1" -v SQ="'" '
	# single-quoted for the shell, as uci export writes words
	function q(s,   o, i) {
		o = ""
		while ((i = index(s, SQ)) > 0) {
			o = o substr(s, 1, i - 1) SQ "\\" SQ SQ
			s = substr(s, i + 1)
		}
		return SQ o s SQ
	}
	# one word: quoted or bare; sets W and the rest of the line in R
	function word(s) {
		if (match(s, /^'\''[^'\'']*'\''/) ||
		    match(s, /^"[^"\\]*"/)) {
			W = substr(s, 2, RLENGTH - 2)
		} else if (match(s, /^[^ \t'\''"#;\\]+/)) {
			W = substr(s, 1, RLENGTH)
		} else {
			return 0
		}
		R = substr(s, RLENGTH + 1)
		return 1
	}
	function bad(why) {
		printf "uci: Parse error (%s) at line %d, in %s\n", why, NR,
			file > "/dev/stderr"
	}
	# the end of a command: blanks, then nothing or a comment
	function done(s) { sub(/^[ \t]*/, "", s); return s == "" || s ~ /^#/ }
	# ok: a section is open (its `config` line parsed)
	BEGIN { seq = 0; ok = 0 }
	{
		l = $0
		sub(/^[ \t]+/, "", l)
		if (l == "" || l ~ /^#/)
			next
		if (!match(l, /^[a-z]+[ \t]+/)) {
			bad("invalid command")
			next
		}
		cmd = substr(l, 1, RLENGTH)
		sub(/[ \t]+$/, "", cmd)
		l = substr(l, RLENGTH + 1)
		if (cmd == "package")
			next
		if (cmd == "config") {
			ok = 0 # until the line parses
			if (!word(l) || W !~ /^[A-Za-z0-9_]+$/) {
				bad("invalid section type")
				next
			}
			type = W
			l = R
			sub(/^[ \t]*/, "", l)
			name = ""
			if (l != "" && l !~ /^#/) {
				if (!word(l) || W !~ /^[A-Za-z0-9_]+$/) {
					bad("invalid section name")
					next
				}
				name = W
				l = R
			}
			if (!done(l)) {
				bad("too many arguments")
				next
			}
			if (name == "")
				name = sprintf("cfg%02d", ++seq)
			print "config " q(type) " " q(name)
			ok = 1
			next
		}
		if (cmd != "option" && cmd != "list") {
			bad("invalid command")
			next
		}
		if (!ok) {
			bad("option/list command with no section")
			next
		}
		if (!word(l) || W !~ /^[A-Za-z0-9_]+$/) {
			bad("invalid option name")
			next
		}
		opt = W
		l = R
		sub(/^[ \t]*/, "", l)
		if (!word(l) || !done(R)) {
			bad("invalid value")
			next
		}
		print cmd " " q(opt) " " q(W)
	}' "$1"
}

config_load() {
	local s var data
	for s in $_CFG_SECTIONS; do
		for var in $(set | sed -n "s/^\(_CFG__${s}__[A-Za-z0-9_]*\)=.*/\1/p"); do
			unset "$var"
		done
	done
	_CFG_SECTIONS=
	[ -f "${UCI_CONFIG_DIR:-/etc/config}/$1" ] || return 0
	data=$(_uci_export "${UCI_CONFIG_DIR:-/etc/config}/$1") || return 1
	eval "$data"
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
# as procd.sh's: an instance's name defaults to instanceN (N from 1 in each
# service); close_service adds the triggers, and sends the message, `set`
# (the instance list replaced by the one declared) or `add`
_PROCD_INSTANCE_SEQ=0
procd_open_service() {
	_PROCD_INSTANCE_SEQ=0
	_record open_service "$@"
}
procd_close_service() {
	service_triggers
	_record close_service "${1:-set}"
}
procd_open_instance() {
	_PROCD_INSTANCE_SEQ=$((_PROCD_INSTANCE_SEQ + 1))
	_record open_instance "${1:-instance$_PROCD_INSTANCE_SEQ}"
}
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

# as rc.common's rc_procd: whatever start_service returns, procd gets the
# service's instances (`set`: none declared stops the running one); the
# script's status is close_service's
start() {
	procd_open_service "$_name" "$initscript"
	start_service "$@"
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
