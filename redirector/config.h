/* SPDX-License-Identifier: GPL-2.0-or-later */
/* config: a JSON file (json-c) -> an immutable `struct config`, with strict
 * validation: unknown keys and wrong types are errors, and every error names
 * its JSON path ("servers[1].port: 70000 is not a port"). A UCI file (told
 * by its first word) is converted to the same JSON tree by uci.c, and its
 * errors name the file's line, section and option instead. No sockets, no
 * DNS: host names are checked for form only; `upstream` resolves them. */
#ifndef MPREDIR_CONFIG_H
#define MPREDIR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "log.h"

struct json_object;

#define CONFIG_DEFAULT_LISTEN_ADDRESS "::"
#define CONFIG_DEFAULT_LISTEN_PORT 1088
#define CONFIG_DEFAULT_MARK 0x4d50u /* "MP" */
#define CONFIG_DEFAULT_CONTROL_SOCKET "/var/run/mpredir.sock"
#define CONFIG_MAX_SOCKET_PATH 108 /* sizeof(sun_path), with its NUL */
#define CONFIG_MAX_FILE_SIZE (1u << 20) /* a configuration is a few hundred bytes */
#define CONFIG_MAX_SHOWN 64  /* bytes of a user's string in a message */

/* "auto" / "on" / "off" settings (booleans are accepted for on/off). */
enum config_mode { CONFIG_AUTO, CONFIG_ON, CONFIG_OFF };

struct config_server {
	char *address;   /* IP literal or host name, as written */
	uint16_t port;
	char *username;  /* NULL when absent; set iff password is set */
	char *password;
	enum config_mode pipeline; /* this server's, else upstream.pipeline */
	bool pipeline_set;         /* given for this server */
};

#define CONFIG_MAX_SERVER_FIRST_PORTS 64
#define CONFIG_MAX_BYPASS_PORTS 64
#define CONFIG_MAX_BYPASS 256
#define CONFIG_MAX_LAN_IFACES 16

enum config_fw_mode { CONFIG_FW_REDIRECT, CONFIG_FW_TPROXY };

#define CONFIG_MAX_WANS 8
#define CONFIG_MAX_WORKERS 16
#define CONFIG_WAN_TABLE_BASE 0x4d60u /* wans[i].table default: base + i */

/* One WAN link the link monitor follows. */
struct config_wan {
	char *interface;
	bool backup;              /* carries traffic only without a healthy active */
	bool gateway_set;         /* else learned from the kernel's routes */
	union sockaddr_any gateway;
	uint32_t table;           /* routing table of this WAN */
};

enum config_probe { CONFIG_PROBE_TCP, CONFIG_PROBE_ICMP, CONFIG_PROBE_NONE };

struct config {
	/* listen */
	char *listen_address;          /* default "::" (dual-stack) */
	uint16_t listen_port;          /* default 1088 */
	/* servers[] (at least one) */
	struct config_server *servers;
	size_t n_servers;
	/* upstream */
	bool mptcp;                    /* default true */
	uint32_t mark;                 /* SO_MARK of upstream sockets, 0 = none */
	unsigned connect_timeout_ms;   /* one TCP/MPTCP connect, default 5000 */
	unsigned handshake_timeout_ms; /* accept -> CONNECT reply, default 10000 */
	unsigned server_backoff_s;     /* skip a failing server this long, default 30 */
	enum config_mode pipeline;     /* SOCKS messages + first bytes in one write */
	enum config_mode fast_open;    /* auto: only on plain TCP sockets */
	unsigned first_data_wait_ms;   /* wait for the client's first bytes, default 5 */
	uint16_t server_first_ports[CONFIG_MAX_SERVER_FIRST_PORTS]; /* no wait */
	size_t n_server_first_ports;
	unsigned pool_size;            /* warm connections per server, default 2 */
	unsigned pool_lifetime_s;      /* recycle a warm connection after, default 20 */
	unsigned pool_keep_warm_s;     /* refill only if used within, default 300 */
	/* relay */
	unsigned idle_timeout_s;       /* no byte either way, default 3600 */
	unsigned half_close_timeout_s; /* idle after one side ended, default 120 */
	unsigned max_flows;            /* default 4096 */
	unsigned buffer_size;          /* bytes per direction, default 65536 */
	unsigned workers;              /* threads relaying flows; 0 = "auto":
					* one per CPU (the default) */
	/* firewall: the daemon's own nftables table */
	bool fw_enabled;               /* default true */
	enum config_fw_mode fw_mode;   /* default redirect */
	char *fw_lan_ifaces[CONFIG_MAX_LAN_IFACES]; /* default "br-lan" */
	size_t n_fw_lan_ifaces;
	struct addr_prefix fw_bypass[CONFIG_MAX_BYPASS]; /* the user's list */
	size_t n_fw_bypass;
	uint16_t fw_bypass_ports[CONFIG_MAX_BYPASS_PORTS];
	size_t n_fw_bypass_ports;
	bool fw_router_traffic;        /* default false */
	bool fw_block_quic;            /* default true */
	uint32_t fw_tproxy_mark;       /* default 0x4d51 */
	uint32_t fw_tproxy_table;      /* default 19793 (0x4d51) */
	/* wans[], linkmon: the link monitor (off without wans) */
	struct config_wan wans[CONFIG_MAX_WANS];
	size_t n_wans;
	enum config_probe probe;       /* default tcp (to the first server) */
	unsigned probe_interval_ms;    /* default 1000 */
	unsigned probe_timeout_ms;     /* default 1000, at most the interval */
	unsigned down_after;           /* probes lost in a row, default 3 */
	unsigned up_after;             /* probes answered in a row, default 2 */
	bool probe_target_set;
	union sockaddr_any probe_target; /* port 0 for icmp */
	/* log */
	enum log_level log_level;      /* default info */
	/* control */
	char *control_socket;          /* unix socket path; "" = none */
	/* the file read (config_load_file only; 0 from a string) */
	unsigned file_mode;            /* st_mode & 07777 */
};

/* Collected error lines, each "PATH: reason" (or "FILE: reason" for a file
 * that cannot be read or is not JSON; "FILE:LINE: SECTION, option NAME:
 * reason" in a UCI file). */
struct config_errors {
	char **lines;
	size_t n;
};

/* Parse and validate. Return a new config, or NULL with errs filled (every
 * error found, not just the first). errs must be zeroed by the caller. */
struct config *config_parse_string(const char *json, struct config_errors *errs);
struct config *config_load_file(const char *path, struct config_errors *errs);

/* The JSON tree of a configuration file (JSON, or UCI converted), read as
 * config_load_file() reads it (size limit, byte order mark, NUL bytes,
 * format) but leniently: values are not checked, and errors in UCI values
 * leave them out. NULL if the file cannot be read or parsed. For
 * `mpredir status/reload -c FILE`, which needs control.socket only. */
struct json_object *config_tree_from_file(const char *path);
void config_free(struct config *cfg);

/* True when some server has a password. */
bool config_has_password(const struct config *cfg);

/* A user's string made safe for a one-line message: printable ASCII kept,
 * anything else as \xNN, '"' and '\' escaped, cut after `max` input bytes
 * ("..." appended). Never NULL; free with config_shown_free(). */
char *config_shown(const char *s, size_t len, size_t max);
void config_shown_free(char *s);

/* True when `port` is one of upstream.server_first_ports. */
bool config_server_first_port(const struct config *cfg, uint16_t port);
const char *config_mode_name(enum config_mode m);
void config_errors_free(struct config_errors *errs);

#endif
