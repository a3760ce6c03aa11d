// SPDX-License-Identifier: GPL-2.0-or-later
/* libFuzzer target: the configuration reader (redirector/config.c).
 *
 * Input: the text of a configuration file. Up to the first NUL byte it
 * goes to config_parse_string(); an input that holds a NUL byte is also
 * read by config_load_file() from a memfd, as a file on disk would be
 * (that one must be refused: JSON has no NUL).
 *
 * Checked: a result comes with no error line, a refusal with at least one;
 * every error line is one printable line; and a configuration that parses
 * keeps the invariants the daemon relies on (at least one server, each
 * with an address and a port, credentials in pairs, every count within its
 * array, timeouts in order, distinct WANs, marks that the firewall can
 * use, ...). config_free() and config_errors_free() run on everything:
 * ASan's leak check sees what they miss. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

#include "fuzz.h"

static void check_errors(const struct config *cfg,
			 const struct config_errors *errs)
{
	if (cfg) {
		FUZZ_CHECK(errs->n == 0);
		return;
	}
	FUZZ_CHECK(errs->n >= 1);
	FUZZ_CHECK(errs->n <= 101); /* MAX_ERRORS kept + "N more not shown" */
	for (size_t i = 0; i < errs->n; i++) {
		const char *l = errs->lines[i];
		FUZZ_CHECK(l && l[0]);
		/* one line, printable: user strings are escaped */
		for (const char *p = l; *p; p++)
			FUZZ_CHECK((unsigned char)*p >= 0x20 &&
				   (unsigned char)*p != 0x7f);
		FUZZ_CHECK(strstr(l, ": ") != NULL); /* "PATH: reason" */
	}
}

static void check_ifname(const char *s)
{
	FUZZ_CHECK(s);
	size_t n = strlen(s);
	FUZZ_CHECK(n >= 1 && n <= 15);
	FUZZ_CHECK(!strpbrk(s, "/ \t\n:"));
}

static void check_prefix(const struct addr_prefix *p)
{
	FUZZ_CHECK((p->family == AF_INET && p->len <= 32) ||
		   (p->family == AF_INET6 && p->len <= 128));
}

static void check_config(const struct config *c)
{
	unsigned char ip[16];

	/* listen */
	FUZZ_CHECK(c->listen_address);
	FUZZ_CHECK(inet_pton(AF_INET, c->listen_address, ip) == 1 ||
		   inet_pton(AF_INET6, c->listen_address, ip) == 1);
	FUZZ_CHECK(c->listen_port >= 1);
	/* servers */
	FUZZ_CHECK(c->n_servers >= 1 && c->n_servers <= 16);
	FUZZ_CHECK(c->servers);
	for (size_t i = 0; i < c->n_servers; i++) {
		const struct config_server *s = &c->servers[i];
		FUZZ_CHECK(s->address && s->address[0]);
		FUZZ_CHECK(strlen(s->address) <= 254);
		FUZZ_CHECK(s->port >= 1);
		FUZZ_CHECK(!s->username == !s->password);
		if (s->username) {
			size_t u = strlen(s->username), p = strlen(s->password);
			FUZZ_CHECK(u >= 1 && u <= 255 && p >= 1 && p <= 255);
		}
		FUZZ_CHECK(s->pipeline <= CONFIG_OFF);
		FUZZ_CHECK(config_mode_name(s->pipeline) != NULL);
	}
	/* upstream */
	FUZZ_CHECK(c->connect_timeout_ms >= 100 &&
		   c->connect_timeout_ms <= 120000);
	FUZZ_CHECK(c->handshake_timeout_ms >= c->connect_timeout_ms &&
		   c->handshake_timeout_ms <= 300000);
	FUZZ_CHECK(c->server_backoff_s >= 1 && c->server_backoff_s <= 3600);
	FUZZ_CHECK(c->pipeline <= CONFIG_OFF && c->fast_open <= CONFIG_OFF);
	FUZZ_CHECK(c->first_data_wait_ms <= 1000);
	FUZZ_CHECK(c->n_server_first_ports <= CONFIG_MAX_SERVER_FIRST_PORTS);
	for (size_t i = 0; i < c->n_server_first_ports; i++) {
		FUZZ_CHECK(c->server_first_ports[i] >= 1);
		FUZZ_CHECK(config_server_first_port(c, c->server_first_ports[i]));
	}
	FUZZ_CHECK(c->pool_size <= 64);
	FUZZ_CHECK(c->pool_lifetime_s >= 1 && c->pool_lifetime_s <= 3600);
	FUZZ_CHECK(c->pool_keep_warm_s <= 86400);
	/* relay */
	FUZZ_CHECK(c->idle_timeout_s >= 10 && c->idle_timeout_s <= 604800);
	FUZZ_CHECK(c->half_close_timeout_s >= 1 &&
		   c->half_close_timeout_s <= 86400);
	FUZZ_CHECK(c->max_flows >= 1 && c->max_flows <= 1000000);
	FUZZ_CHECK(c->buffer_size >= 4096 && c->buffer_size <= 4194304);
	FUZZ_CHECK(c->workers <= CONFIG_MAX_WORKERS);
	/* firewall */
	FUZZ_CHECK(c->fw_mode == CONFIG_FW_REDIRECT ||
		   c->fw_mode == CONFIG_FW_TPROXY);
	FUZZ_CHECK(c->n_fw_lan_ifaces >= 1 &&
		   c->n_fw_lan_ifaces <= CONFIG_MAX_LAN_IFACES);
	for (size_t i = 0; i < c->n_fw_lan_ifaces; i++)
		check_ifname(c->fw_lan_ifaces[i]);
	FUZZ_CHECK(c->n_fw_bypass <= CONFIG_MAX_BYPASS);
	for (size_t i = 0; i < c->n_fw_bypass; i++)
		check_prefix(&c->fw_bypass[i]);
	FUZZ_CHECK(c->n_fw_bypass_ports <= CONFIG_MAX_BYPASS_PORTS);
	for (size_t i = 0; i < c->n_fw_bypass_ports; i++)
		FUZZ_CHECK(c->fw_bypass_ports[i] >= 1);
	if (c->fw_enabled)
		FUZZ_CHECK(c->mark != 0);
	FUZZ_CHECK(c->fw_tproxy_mark != 0);
	if (c->fw_enabled && c->fw_mode == CONFIG_FW_TPROXY)
		FUZZ_CHECK(c->fw_tproxy_mark != c->mark);
	FUZZ_CHECK(c->fw_tproxy_table >= 1 && c->fw_tproxy_table <= 0x7fffffff &&
		   (c->fw_tproxy_table < 253 || c->fw_tproxy_table > 255));
	if (c->fw_router_traffic)
		FUZZ_CHECK(c->fw_mode == CONFIG_FW_REDIRECT);
	/* wans, linkmon */
	FUZZ_CHECK(c->n_wans <= CONFIG_MAX_WANS);
	for (size_t i = 0; i < c->n_wans; i++) {
		const struct config_wan *w = &c->wans[i];
		check_ifname(w->interface);
		FUZZ_CHECK(w->table >= 1 && w->table <= 0x7fffffff &&
			   (w->table < 253 || w->table > 255));
		if (w->gateway_set)
			FUZZ_CHECK(w->gateway.sa.sa_family == AF_INET);
		for (size_t j = 0; j < i; j++) {
			FUZZ_CHECK(strcmp(w->interface, c->wans[j].interface));
			FUZZ_CHECK(w->table != c->wans[j].table);
		}
	}
	FUZZ_CHECK(c->probe <= CONFIG_PROBE_NONE);
	FUZZ_CHECK(c->probe_interval_ms >= 50 && c->probe_interval_ms <= 60000);
	FUZZ_CHECK(c->probe_timeout_ms >= 10 &&
		   c->probe_timeout_ms <= c->probe_interval_ms);
	FUZZ_CHECK(c->down_after >= 1 && c->down_after <= 100);
	FUZZ_CHECK(c->up_after >= 1 && c->up_after <= 100);
	if (c->probe_target_set)
		FUZZ_CHECK(c->probe_target.sa.sa_family == AF_INET ||
			   c->probe_target.sa.sa_family == AF_INET6);
	/* log, control */
	FUZZ_CHECK(c->log_level <= LOG_LVL_DEBUG);
	FUZZ_CHECK(c->control_socket);
	FUZZ_CHECK(c->control_socket[0] == '\0' ||
		   (c->control_socket[0] == '/' &&
		    strlen(c->control_socket) < CONFIG_MAX_SOCKET_PATH));
}

/* config_parse_string() on text, with the checks above; then again with
 * errors only counted: the same verdict. each() (if not NULL) sees every
 * error line first. Returns whether it parsed. fuzz_uci.c uses it too. */
static bool parse_checked(const char *text,
			  void (*each)(const char *line, void *arg), void *arg)
{
	struct config_errors errs = { 0 };
	struct config *cfg = config_parse_string(text, &errs);
	bool parsed = cfg != NULL;
	check_errors(cfg, &errs);
	if (cfg)
		check_config(cfg);
	for (size_t i = 0; each && i < errs.n; i++)
		each(errs.lines[i], arg);
	config_free(cfg);
	config_errors_free(&errs);
	FUZZ_CHECK(errs.n == 0 && errs.lines == NULL);

	struct config *again = config_parse_string(text, NULL);
	FUZZ_CHECK((again != NULL) == parsed);
	config_free(again);
	return parsed;
}

/* The file path of config_load_file(), with the same checks. */
static void load_memfd(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
	if (fd < 0)
		return; /* no memfd here: the string path was fuzzed anyway */
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct config_errors errs = { 0 };
	struct config *cfg = config_load_file(path, &errs);
	FUZZ_CHECK(!cfg); /* it holds a NUL byte */
	check_errors(cfg, &errs);
	config_errors_free(&errs);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	(void)parse_checked(text, NULL, NULL);
	free(text);

	if (memchr(data, '\0', size))
		load_memfd(data, size);
	return 0;
}
