// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit tests of config: every key, every default, every validation rule
 * with its exact error line, JSON syntax errors with line:column, files. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/socket.h>

#include "check.h"
#include "config.h"

/* Test documents are written with ' for " (none of them needs a real '). */
static char *dq(const char *s)
{
	char *d = strdup(s);
	for (char *p = d; *p; p++)
		if (*p == '\'')
			*p = '"';
	return d;
}

static struct config *parse(const char *tmpl, struct config_errors *errs)
{
	char *json = dq(tmpl);
	struct config *cfg = config_parse_string(json, errs);
	free(json);
	return cfg;
}

static void print_errors(const struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "    got: %s\n", errs->lines[i]);
}

static bool has_line(const struct config_errors *errs, const char *line)
{
	for (size_t i = 0; i < errs->n; i++)
		if (strcmp(errs->lines[i], line) == 0)
			return true;
	return false;
}

static bool has_sub(const struct config_errors *errs, const char *sub)
{
	for (size_t i = 0; i < errs->n; i++)
		if (strstr(errs->lines[i], sub))
			return true;
	return false;
}

/* The document is rejected with exactly one error, this line. */
static bool rejects_with(const char *tmpl, const char *line)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse(tmpl, &errs);
	bool ok = !cfg && errs.n == 1 && strcmp(errs.lines[0], line) == 0;
	if (!ok) {
		fprintf(stderr, "  document: %s\n  expected: %s\n", tmpl, line);
		print_errors(&errs);
	}
	config_free(cfg);
	config_errors_free(&errs);
	return ok;
}

/* The document is rejected, and one error line contains `sub`. */
static bool rejects_sub(const char *tmpl, const char *sub)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse(tmpl, &errs);
	bool ok = !cfg && has_sub(&errs, sub);
	if (!ok) {
		fprintf(stderr, "  document: %s\n  expected a line with: %s\n",
			tmpl, sub);
		print_errors(&errs);
	}
	config_free(cfg);
	config_errors_free(&errs);
	return ok;
}

static bool accepts(const char *tmpl)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse(tmpl, &errs);
	bool ok = cfg && errs.n == 0;
	if (!ok) {
		fprintf(stderr, "  document: %s\n  expected it accepted\n", tmpl);
		print_errors(&errs);
	}
	config_free(cfg);
	config_errors_free(&errs);
	return ok;
}

#define REJECTS(doc, line) CHECK_MSG(rejects_with(doc, line), "%s", line)
#define REJECTS_SUB(doc, sub) CHECK_MSG(rejects_sub(doc, sub), "%s", sub)
#define ACCEPTS(doc) CHECK_MSG(accepts(doc), "%s", doc)

/* A valid server list, to which one section under test is added. */
#define SRV "'servers':[{'address':'192.0.2.1','port':1080}]"
#define WITH(x) "{" SRV "," x "}"

/* ---- valid documents ------------------------------------------------- */

static void test_full(void)
{
	static const char doc[] =
		"{\n"
		"  'listen': { 'address': '0.0.0.0', 'port': 1099 },\n"
		"  'servers': [\n"
		"    { 'address': 'socks.example.net', 'port': 1080,\n"
		"      'username': 'router1', 'password': 's3cret' },\n"
		"    { 'address': '2001:db8::1', 'port': 443 }\n"
		"  ],\n"
		"  'upstream': { 'mptcp': false, 'mark': 255,\n"
		"    'connect_timeout_ms': 3000, 'handshake_timeout_ms': 8000,\n"
		"    'server_backoff_s': 60 },\n"
		"  'relay': { 'idle_timeout_s': 600, 'half_close_timeout_s': 30,\n"
		"    'max_flows': 20000, 'buffer_size': 16384 },\n"
		"  'log': { 'level': 'debug' }\n"
		"}\n";
	struct config_errors errs = { 0 };
	struct config *cfg = parse(doc, &errs);

	CHECK(cfg != NULL);
	CHECK(errs.n == 0);
	if (errs.n)
		print_errors(&errs);
	if (!cfg)
		return;
	CHECK(strcmp(cfg->listen_address, "0.0.0.0") == 0);
	CHECK(cfg->listen_port == 1099);
	CHECK(cfg->n_servers == 2);
	CHECK(strcmp(cfg->servers[0].address, "socks.example.net") == 0);
	CHECK(cfg->servers[0].port == 1080);
	CHECK(cfg->servers[0].username &&
	      strcmp(cfg->servers[0].username, "router1") == 0);
	CHECK(cfg->servers[0].password &&
	      strcmp(cfg->servers[0].password, "s3cret") == 0);
	CHECK(strcmp(cfg->servers[1].address, "2001:db8::1") == 0);
	CHECK(cfg->servers[1].port == 443);
	CHECK(cfg->servers[1].username == NULL);
	CHECK(cfg->servers[1].password == NULL);
	CHECK(cfg->mptcp == false);
	CHECK(cfg->mark == 255);
	CHECK(cfg->connect_timeout_ms == 3000);
	CHECK(cfg->handshake_timeout_ms == 8000);
	CHECK(cfg->server_backoff_s == 60);
	CHECK(cfg->idle_timeout_s == 600);
	CHECK(cfg->half_close_timeout_s == 30);
	CHECK(cfg->max_flows == 20000);
	CHECK(cfg->buffer_size == 16384);
	CHECK(cfg->log_level == LOG_LVL_DEBUG);
	config_free(cfg);
	config_errors_free(&errs);
}

static void test_minimal(void)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse("{" SRV "}", &errs);

	CHECK(cfg != NULL);
	CHECK(errs.n == 0);
	if (!cfg)
		return;
	CHECK(strcmp(cfg->listen_address, "::") == 0);
	CHECK(strcmp(cfg->listen_address, CONFIG_DEFAULT_LISTEN_ADDRESS) == 0);
	CHECK(cfg->listen_port == 1088);
	CHECK(cfg->listen_port == CONFIG_DEFAULT_LISTEN_PORT);
	CHECK(cfg->n_servers == 1);
	CHECK(strcmp(cfg->servers[0].address, "192.0.2.1") == 0);
	CHECK(cfg->servers[0].port == 1080);
	CHECK(cfg->servers[0].username == NULL);
	CHECK(cfg->servers[0].password == NULL);
	CHECK(cfg->mptcp == true);
	CHECK(cfg->mark == 0x4d50);
	CHECK(cfg->mark == CONFIG_DEFAULT_MARK);
	CHECK(cfg->connect_timeout_ms == 5000);
	CHECK(cfg->handshake_timeout_ms == 10000);
	CHECK(cfg->server_backoff_s == 30);
	CHECK(cfg->idle_timeout_s == 3600);
	CHECK(cfg->half_close_timeout_s == 120);
	CHECK(cfg->max_flows == 4096);
	CHECK(cfg->buffer_size == 65536);
	CHECK(cfg->log_level == LOG_LVL_INFO);
	CHECK(strcmp(cfg->control_socket, CONFIG_DEFAULT_CONTROL_SOCKET) == 0);
	config_free(cfg);
	config_errors_free(&errs);

	/* Empty sections are fine: everything in them has a default. */
	ACCEPTS(WITH("'listen':{},'upstream':{},'relay':{},'log':{}"));
}

/* Each limit of each range is accepted; just past it is not. */
static void test_range_edges(void)
{
	ACCEPTS(WITH("'listen':{'port':1}"));
	ACCEPTS(WITH("'listen':{'port':65535}"));
	ACCEPTS(WITH("'listen':{'address':'::1'}"));
	ACCEPTS(WITH("'listen':{'address':'192.168.1.1'}"));
	ACCEPTS("{'servers':[{'address':'h','port':1},"
		"{'address':'h','port':65535}]}");
	ACCEPTS(WITH("'upstream':{'connect_timeout_ms':100,"
		     "'handshake_timeout_ms':100}"));
	ACCEPTS(WITH("'upstream':{'connect_timeout_ms':120000,"
		     "'handshake_timeout_ms':300000}"));
	ACCEPTS(WITH("'upstream':{'connect_timeout_ms':7000,"
		     "'handshake_timeout_ms':7000}"));
	ACCEPTS(WITH("'upstream':{'server_backoff_s':1}"));
	ACCEPTS(WITH("'upstream':{'server_backoff_s':3600}"));
	ACCEPTS(WITH("'upstream':{'mark':0},'firewall':{'enabled':false}"));
	REJECTS(WITH("'upstream':{'mark':0}"),
		"upstream.mark: 0 cannot be used with the firewall enabled: the "
		"daemon's own connections must carry a mark that the rules skip");
	ACCEPTS(WITH("'upstream':{'mark':4294967295}"));
	ACCEPTS(WITH("'relay':{'idle_timeout_s':10,'half_close_timeout_s':1,"
		     "'max_flows':1,'buffer_size':4096}"));
	ACCEPTS(WITH("'relay':{'idle_timeout_s':604800,"
		     "'half_close_timeout_s':86400,'max_flows':1000000,"
		     "'buffer_size':4194304}"));
	for (const char *const *l = (const char *const[]){
		     "error", "warn", "info", "debug", NULL }; *l; l++) {
		char doc[128];
		snprintf(doc, sizeof(doc), WITH("'log':{'level':'%s'}"), *l);
		struct config_errors errs = { 0 };
		struct config *cfg = parse(doc, &errs);
		CHECK_MSG(cfg && (int)cfg->log_level == log_level_parse(*l),
			  "%s", *l);
		config_free(cfg);
		config_errors_free(&errs);
	}
}

/* ---- listen ---------------------------------------------------------- */

static void test_listen(void)
{
	REJECTS(WITH("'listen':[]"), "listen: expected an object, got array");
	REJECTS(WITH("'listen':{'address':1}"),
		"listen.address: expected a string, got integer");
	REJECTS(WITH("'listen':{'address':'localhost'}"),
		"listen.address: \"localhost\" is not an IP address (IPv4 or "
		"IPv6, without brackets; \"::\" for all)");
	REJECTS_SUB(WITH("'listen':{'address':'[::]'}"),
		    "listen.address: \"[::]\" is not an IP address");
	REJECTS_SUB(WITH("'listen':{'address':'1.2.3.4:80'}"),
		    "listen.address: \"1.2.3.4:80\" is not");
	REJECTS(WITH("'listen':{'port':0}"),
		"listen.port: 0 is not a port (1-65535)");
	REJECTS(WITH("'listen':{'port':65536}"),
		"listen.port: 65536 is not a port (1-65535)");
	REJECTS(WITH("'listen':{'port':-1}"),
		"listen.port: -1 is not a port (1-65535)");
	REJECTS(WITH("'listen':{'port':'1088'}"),
		"listen.port: expected an integer, got string");
	REJECTS(WITH("'listen':{'port':1088.5}"),
		"listen.port: expected an integer, got 1088.5");
	REJECTS(WITH("'listen':{'port':1e3}"),
		"listen.port: expected an integer, got 1e3");
	REJECTS(WITH("'listen':{'port':null}"),
		"listen.port: expected an integer, got null");
	REJECTS(WITH("'listen':{'port':true}"),
		"listen.port: expected an integer, got boolean");
	REJECTS_SUB(WITH("'listen':{'port':99999999999999999999}"),
		    "listen.port: 18446744073709551615 is not a port");
	REJECTS_SUB(WITH("'listen':{'port':-99999999999999999999}"),
		    "listen.port: -9223372036854775808 is not a port");
	REJECTS(WITH("'listen':{'bogus':1}"), "listen.bogus: unknown key");
	REJECTS(WITH("'listen':{'Port':1}"), "listen.Port: unknown key");
}

/* ---- servers --------------------------------------------------------- */

static void test_servers(void)
{
	REJECTS("{}", "servers: at least one server is required");
	REJECTS("{'servers':[]}", "servers: at least one server is required");
	REJECTS("{'servers':{'address':'h','port':1}}",
		"servers: expected an array, got object");
	REJECTS("{'servers':null}", "servers: expected an array, got null");
	REJECTS("{'servers':['192.0.2.1']}",
		"servers[0]: expected an object, got string");
	REJECTS("{'servers':[{'port':1080}]}", "servers[0].address: required");
	REJECTS("{'servers':[{'address':'h'}]}", "servers[0].port: required");
	REJECTS("{'servers':[{'address':42,'port':1080}]}",
		"servers[0].address: expected a string, got integer");
	REJECTS("{'servers':[{'address':'h','port':'1080'}]}",
		"servers[0].port: expected an integer, got string");
	REJECTS("{'servers':[{'address':'h','port':1},"
		"{'address':'h','port':70000}]}",
		"servers[1].port: 70000 is not a port (1-65535)");
	REJECTS("{'servers':[{'address':'h','port':1,'bogus':true}]}",
		"servers[0].bogus: unknown key");

	/* 16 servers are fine, 17 are not. */
	char doc[2048] = "{'servers':[";
	for (int i = 0; i < 17; i++) {
		if (i == 16) {
			strcat(doc, "]}");
			ACCEPTS(doc);
			doc[strlen(doc) - 2] = '\0';
		}
		strcat(doc, i ? ",{'address':'h','port':1}"
			      : "{'address':'h','port':1}");
	}
	strcat(doc, "]}");
	REJECTS(doc, "servers: 17 servers, at most 16 are allowed");
}

static void test_server_address(void)
{
	static const char *const good[] = {
		"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "socks",
		"socks.example.net", "socks.example.net.", "SOCKS.Example.NET",
		"xn--bcher-kva.example", "a-b.c-d", "1.example", "example.1a",
		"0.0.0.0",
		/* a 63-byte label */
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x",
		NULL,
	};
	static const char *const bad[] = {
		"", ".", "-socks.example", "socks-.example", "socks..example",
		".socks.example", "socks_1.example", "socks example", "h\\u00e9",
		"socks.example.net..", "1.2.3", "192.0.2.256", "0x7f",
		"a.0X7F000001", "[2001:db8::1]", "192.0.2.1:1080",
		"socks.example.net/x", "2001:db8::g",
		/* a 64-byte label */
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x",
		NULL,
	};
	char doc[600];

	for (const char *const *a = good; *a; a++) {
		snprintf(doc, sizeof(doc),
			 "{'servers':[{'address':'%s','port':1}]}", *a);
		ACCEPTS(doc);
	}
	for (const char *const *a = bad; *a; a++) {
		snprintf(doc, sizeof(doc),
			 "{'servers':[{'address':'%s','port':1}]}", *a);
		REJECTS_SUB(doc, "servers[0].address: \"");
	}
	REJECTS("{'servers':[{'address':'socks_1.example','port':1}]}",
		"servers[0].address: \"socks_1.example\" is not an IP address "
		"or a valid host name");
	REJECTS("{'servers':[{'address':'[2001:db8::1]','port':1}]}",
		"servers[0].address: \"[2001:db8::1]\" is not an IP address or "
		"a valid host name (write IPv6 addresses without brackets)");

	/* 253 bytes in all (without the final dot) are the most. */
	char name[300] = "";
	while (strlen(name) < 253 - 50)
		strcat(name, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.");
	while (strlen(name) < 253)
		strcat(name, "b");
	CHECK(strlen(name) == 253);
	snprintf(doc, sizeof(doc), "{'servers':[{'address':'%s','port':1}]}",
		 name);
	ACCEPTS(doc);
	snprintf(doc, sizeof(doc), "{'servers':[{'address':'%s.','port':1}]}",
		 name);
	ACCEPTS(doc);
	snprintf(doc, sizeof(doc), "{'servers':[{'address':'%sb','port':1}]}",
		 name);
	REJECTS_SUB(doc, "is not an IP address or a valid host name");
	/* ... and a long bad name is shown cut short. */
	REJECTS_SUB(doc, "aaa...\" is not");
}

static void test_server_credentials(void)
{
	struct config_errors errs = { 0 };
	char doc[1400], user[256], pass[257];

	REJECTS("{'servers':[{'address':'h','port':1,'password':'pw'}]}",
		"servers[0].username: required when password is set");
	REJECTS("{'servers':[{'address':'h','port':1,'username':'u'}]}",
		"servers[0].password: required when username is set");
	REJECTS("{'servers':[{'address':'h','port':1,'username':'',"
		"'password':'p'}]}",
		"servers[0].username: must be 1-255 bytes long, is 0");
	REJECTS("{'servers':[{'address':'h','port':1,'username':'u',"
		"'password':''}]}",
		"servers[0].password: must be 1-255 bytes long, is 0");
	REJECTS("{'servers':[{'address':'h','port':1,'username':'u',"
		"'password':12345}]}",
		"servers[0].password: expected a string, got integer");
	REJECTS("{'servers':[{'address':'h','port':1,'username':['u'],"
		"'password':'p'}]}",
		"servers[0].username: expected a string, got array");
	REJECTS("{'servers':[{'address':'h','port':1,'username':'u',"
		"'password':'a\\u0000b'}]}",
		"servers[0].password: contains a NUL character (\\u0000)");

	/* 255 bytes each are the most; bytes, not characters. */
	memset(user, 'u', 255);
	user[255] = '\0';
	memset(pass, 'p', 256);
	pass[256] = '\0';
	snprintf(doc, sizeof(doc), "{'servers':[{'address':'h','port':1,"
		 "'username':'%s','password':'%.255s'}]}", user, pass);
	ACCEPTS(doc);
	snprintf(doc, sizeof(doc), "{'servers':[{'address':'h','port':1,"
		 "'username':'%s','password':'%s'}]}", user, pass);
	REJECTS(doc, "servers[0].password: must be 1-255 bytes long, is 256");
	/* 128 two-byte characters: 256 bytes. */
	char *p = doc + sprintf(doc, "{'servers':[{'address':'h','port':1,"
				"'username':'u','password':'");
	for (int i = 0; i < 128; i++)
		p += sprintf(p, "\xc3\xa9");
	strcpy(p, "'}]}");
	REJECTS(doc, "servers[0].password: must be 1-255 bytes long, is 256");

	/* Non-ASCII credentials are kept as UTF-8 bytes. */
	struct config *cfg = parse("{'servers':[{'address':'h','port':1,"
				   "'username':'\\u00fc','password':'p\\\"q'}]}",
				   &errs);
	CHECK(cfg && strcmp(cfg->servers[0].username, "\xc3\xbc") == 0);
	CHECK(cfg && strcmp(cfg->servers[0].password, "p\"q") == 0);
	config_free(cfg);
	config_errors_free(&errs);
}

/* Whatever is wrong around it, a password is never shown. */
static void test_password_never_shown(void)
{
	static const char *const docs[] = {
		/* too long: the length is shown, not the bytes */
		"{'servers':[{'address':'h','port':1,'username':'u','password':"
		"'hunter2hunter2hunter2hunter2hunter2hunter2hunter2hunter2hunter2"
		"hunter2hunter2hunter2hunter2hunter2hunter2hunter2hunter2hunter2"
		"hunter2hunter2hunter2hunter2hunter2hunter2hunter2hunter2hunter2"
		"hunter2hunter2hunter2hunter2hunter2hunter2hunter2hunter2hunter2"
		"hunter2hunter2hunter2hunter2hunter2hunter2'}]}",
		/* without a username, next to other errors */
		"{'servers':[{'address':'bad_host','port':0,"
		"'password':'hunter2'}],'relay':{'max_flows':0}}",
		/* with a NUL */
		"{'servers':[{'address':'h','port':1,'username':'u',"
		"'password':'hunter2\\u0000'}]}",
		/* under a misspelled key: only the key is shown */
		"{'servers':[{'address':'h','port':1,'username':'u',"
		"'passwd':'hunter2'}]}",
		/* as a username: not shown either */
		"{'servers':[{'address':'h','port':1,'username':'hunter2'}]}",
		/* a duplicate */
		"{'servers':[{'address':'h','port':1,'username':'u',"
		"'password':'hunter2','password':'hunter2'}]}",
		/* in a document that is not valid JSON */
		"{'servers':[{'address':'h','port':1,'username':'u',"
		"'password':'hunter2' 'x'}]}",
		"{'servers':[{'address':'h','port':1,'username':'u',"
		"'password':'hunter2'}]} 'hunter2'",
		NULL,
	};

	for (const char *const *d = docs; *d; d++) {
		struct config_errors errs = { 0 };
		struct config *cfg = parse(*d, &errs);
		CHECK_MSG(!cfg && errs.n > 0, "%s", *d);
		CHECK_MSG(!has_sub(&errs, "hunter2"), "%s", *d);
		if (has_sub(&errs, "hunter2"))
			print_errors(&errs);
		config_free(cfg);
		config_errors_free(&errs);
	}
}

/* ---- upstream -------------------------------------------------------- */

static uint32_t mark_of(const char *value)
{
	char doc[256];
	struct config_errors errs = { 0 };
	snprintf(doc, sizeof(doc),
		 WITH("'upstream':{'mark':%s},'firewall':{'enabled':false}"),
		 value);
	struct config *cfg = parse(doc, &errs);
	uint32_t m = cfg ? cfg->mark : 0xdeadbeef;
	if (!cfg)
		print_errors(&errs);
	config_free(cfg);
	config_errors_free(&errs);
	return m;
}

static void test_upstream(void)
{
	REJECTS(WITH("'upstream':true"),
		"upstream: expected an object, got boolean");
	REJECTS(WITH("'upstream':{'mptcp':'yes'}"),
		"upstream.mptcp: expected a boolean, got string");
	REJECTS(WITH("'upstream':{'mptcp':1}"),
		"upstream.mptcp: expected a boolean, got integer");
	REJECTS(WITH("'upstream':{'bogus':1}"), "upstream.bogus: unknown key");

	REJECTS(WITH("'upstream':{'connect_timeout_ms':99}"),
		"upstream.connect_timeout_ms: 99 is out of range (100-120000)");
	REJECTS(WITH("'upstream':{'connect_timeout_ms':120001,"
		     "'handshake_timeout_ms':300000}"),
		"upstream.connect_timeout_ms: 120001 is out of range "
		"(100-120000)");
	REJECTS(WITH("'upstream':{'connect_timeout_ms':'5000'}"),
		"upstream.connect_timeout_ms: expected an integer, got string");
	REJECTS(WITH("'upstream':{'handshake_timeout_ms':99}"),
		"upstream.handshake_timeout_ms: 99 is out of range "
		"(100-300000)");
	REJECTS(WITH("'upstream':{'handshake_timeout_ms':300001}"),
		"upstream.handshake_timeout_ms: 300001 is out of range "
		"(100-300000)");
	REJECTS(WITH("'upstream':{'handshake_timeout_ms':2.5}"),
		"upstream.handshake_timeout_ms: expected an integer, got 2.5");
	REJECTS(WITH("'upstream':{'server_backoff_s':0}"),
		"upstream.server_backoff_s: 0 is out of range (1-3600)");
	REJECTS(WITH("'upstream':{'server_backoff_s':3601}"),
		"upstream.server_backoff_s: 3601 is out of range (1-3600)");
	REJECTS(WITH("'upstream':{'server_backoff_s':{}}"),
		"upstream.server_backoff_s: expected an integer, got object");

	/* handshake_timeout_ms >= connect_timeout_ms, given or default. */
	REJECTS(WITH("'upstream':{'connect_timeout_ms':6000,"
		     "'handshake_timeout_ms':5000}"),
		"upstream.handshake_timeout_ms: 5000 is less than "
		"connect_timeout_ms (6000)");
	REJECTS(WITH("'upstream':{'handshake_timeout_ms':4000}"),
		"upstream.handshake_timeout_ms: 4000 is less than "
		"connect_timeout_ms (5000)");
	REJECTS(WITH("'upstream':{'connect_timeout_ms':20000}"),
		"upstream.handshake_timeout_ms: 10000 (the default) is less "
		"than connect_timeout_ms (20000)");
	/* ... not compared when either is invalid itself: one error each. */
	REJECTS(WITH("'upstream':{'connect_timeout_ms':200000,"
		     "'handshake_timeout_ms':150000}"),
		"upstream.connect_timeout_ms: 200000 is out of range "
		"(100-120000)");
}

/* Connection setup keys (pipelining, first bytes, pool, Fast Open). */
static void test_setup_keys(void)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse(WITH("'upstream':{}"), &errs);
	CHECK(cfg && cfg->pipeline == CONFIG_AUTO && cfg->fast_open == CONFIG_AUTO);
	CHECK(cfg && cfg->first_data_wait_ms == 5 && cfg->pool_size == 2 &&
	      cfg->pool_lifetime_s == 20 && cfg->pool_keep_warm_s == 300);
	CHECK(cfg && config_server_first_port(cfg, 25) &&
	      config_server_first_port(cfg, 3306) &&
	      !config_server_first_port(cfg, 443));
	CHECK(cfg && cfg->servers[0].pipeline == CONFIG_AUTO &&
	      !cfg->servers[0].pipeline_set);
	config_free(cfg);

	/* a server's own pipeline overrides upstream.pipeline, given in any
	 * order */
	cfg = parse("{'servers':[{'address':'192.0.2.1','port':1080,"
		    "'pipeline':'on'},{'address':'192.0.2.2','port':1080}],"
		    "'upstream':{'pipeline':false,'fast_open':true,"
		    "'first_data_wait_ms':0,'server_first_ports':[],"
		    "'pool':{'size':0,'lifetime_s':1,'keep_warm_s':0}}}", &errs);
	CHECK(cfg && cfg->servers[0].pipeline == CONFIG_ON &&
	      cfg->servers[1].pipeline == CONFIG_OFF);
	CHECK(cfg && cfg->fast_open == CONFIG_ON && cfg->first_data_wait_ms == 0);
	CHECK(cfg && cfg->n_server_first_ports == 0 && cfg->pool_size == 0);
	CHECK(errs.n == 0);
	config_free(cfg);
	CHECK(strcmp(config_mode_name(CONFIG_OFF), "off") == 0);

	REJECTS(WITH("'upstream':{'pipeline':'sometimes'}"),
		"upstream.pipeline: \"sometimes\" is not one of \"auto\", "
		"\"on\", \"off\"");
	REJECTS(WITH("'upstream':{'pipeline':1}"),
		"upstream.pipeline: expected \"auto\", \"on\", \"off\" or a "
		"boolean, got integer");
	REJECTS("{'servers':[{'address':'192.0.2.1','port':1080,"
		"'pipeline':'yes'}]}",
		"servers[0].pipeline: \"yes\" is not one of \"auto\", "
		"\"on\", \"off\"");
	REJECTS(WITH("'upstream':{'fast_open':null}"),
		"upstream.fast_open: expected \"auto\", \"on\", \"off\" or a "
		"boolean, got null");
	REJECTS(WITH("'upstream':{'first_data_wait_ms':1001}"),
		"upstream.first_data_wait_ms: 1001 is out of range (0-1000)");
	REJECTS(WITH("'upstream':{'server_first_ports':25}"),
		"upstream.server_first_ports: expected an array of ports, got "
		"integer");
	REJECTS(WITH("'upstream':{'server_first_ports':[25,0]}"),
		"upstream.server_first_ports[1]: 0 is not a port (1-65535)");
	REJECTS(WITH("'upstream':{'server_first_ports':['smtp']}"),
		"upstream.server_first_ports[0]: expected an integer, got string");
	char many[600] = "{" SRV ",'upstream':{'server_first_ports':[1";
	for (int i = 2; i <= 65; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many),
			 ",%d", i);
	strcat(many, "]}}");
	REJECTS(many, "upstream.server_first_ports: 65 ports, at most 64 are "
		"allowed");
	REJECTS(WITH("'upstream':{'pool':2}"),
		"upstream.pool: expected an object, got integer");
	REJECTS(WITH("'upstream':{'pool':{'size':65}}"),
		"upstream.pool.size: 65 is out of range (0-64)");
	REJECTS(WITH("'upstream':{'pool':{'lifetime_s':0}}"),
		"upstream.pool.lifetime_s: 0 is out of range (1-3600)");
	REJECTS(WITH("'upstream':{'pool':{'keep_warm_s':86401}}"),
		"upstream.pool.keep_warm_s: 86401 is out of range (0-86400)");
	REJECTS(WITH("'upstream':{'pool':{'warm':true}}"),
		"upstream.pool.warm: unknown key");
}

static void test_firewall(void)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse(WITH("'firewall':{}"), &errs);
	CHECK(cfg && cfg->fw_enabled && cfg->fw_mode == CONFIG_FW_REDIRECT);
	CHECK(cfg && cfg->n_fw_lan_ifaces == 1 &&
	      strcmp(cfg->fw_lan_ifaces[0], "br-lan") == 0);
	CHECK(cfg && cfg->fw_block_quic && !cfg->fw_router_traffic);
	CHECK(cfg && cfg->fw_tproxy_mark == 0x4d51 &&
	      cfg->fw_tproxy_table == 0x4d51);
	config_free(cfg);

	cfg = parse(WITH("'firewall':{'enabled':true,'mode':'tproxy',"
			 "'lan_interfaces':['lan0','wlan0'],"
			 "'bypass':['192.0.2.77/24','2001:db8::1','10.0.0.1'],"
			 "'bypass_ports':[22,8443],'block_quic':false,"
			 "'tproxy_mark':'0x10','tproxy_table':100}"), &errs);
	CHECK(cfg && cfg->fw_mode == CONFIG_FW_TPROXY);
	CHECK(cfg && cfg->n_fw_lan_ifaces == 2 &&
	      strcmp(cfg->fw_lan_ifaces[1], "wlan0") == 0);
	CHECK(cfg && cfg->n_fw_bypass == 3 && cfg->fw_bypass[0].len == 24 &&
	      cfg->fw_bypass[0].addr[3] == 0 && cfg->fw_bypass[1].len == 128 &&
	      cfg->fw_bypass[2].family == AF_INET);
	CHECK(cfg && cfg->n_fw_bypass_ports == 2 &&
	      cfg->fw_bypass_ports[1] == 8443);
	CHECK(cfg && !cfg->fw_block_quic && cfg->fw_tproxy_mark == 0x10 &&
	      cfg->fw_tproxy_table == 100);
	CHECK(errs.n == 0);
	config_free(cfg);

	REJECTS(WITH("'firewall':{'mode':'nat'}"),
		"firewall.mode: \"nat\" is not \"redirect\" or \"tproxy\"");
	REJECTS(WITH("'firewall':{'lan_interfaces':[]}"),
		"firewall.lan_interfaces: at least one interface is required");
	REJECTS(WITH("'firewall':{'lan_interfaces':'br-lan'}"),
		"firewall.lan_interfaces: expected an array of interface names, "
		"got string");
	REJECTS(WITH("'firewall':{'lan_interfaces':['a-very-long-name0']}"),
		"firewall.lan_interfaces[0]: \"a-very-long-name0\" is not an "
		"interface name (1-15 characters, no '/', ':' or spaces)");
	REJECTS(WITH("'firewall':{'bypass':['192.0.2.0/33']}"),
		"firewall.bypass[0]: \"192.0.2.0/33\" is not an IPv4 or IPv6 "
		"address or prefix (like \"192.0.2.0/24\")");
	REJECTS(WITH("'firewall':{'bypass':['example.com']}"),
		"firewall.bypass[0]: \"example.com\" is not an IPv4 or IPv6 "
		"address or prefix (like \"192.0.2.0/24\")");
	REJECTS(WITH("'firewall':{'bypass_ports':[0]}"),
		"firewall.bypass_ports[0]: 0 is not a port (1-65535)");
	REJECTS(WITH("'firewall':{'router_traffic':'yes'}"),
		"firewall.router_traffic: expected a boolean, got string");
	REJECTS(WITH("'firewall':{'mode':'tproxy','router_traffic':true}"),
		"firewall.router_traffic: only with mode \"redirect\" (tproxy "
		"cannot capture the router's own traffic)");
	REJECTS(WITH("'firewall':{'mode':'tproxy','tproxy_mark':'0x4d50'}"),
		"firewall.tproxy_mark: must differ from upstream.mark");
	REJECTS(WITH("'firewall':{'tproxy_mark':0}"),
		"firewall.tproxy_mark: 0 is not a usable mark");
	REJECTS(WITH("'firewall':{'tproxy_table':254}"),
		"firewall.tproxy_table: 254 is a reserved routing table "
		"(default, main, local)");
	REJECTS(WITH("'firewall':{'bogus':1}"), "firewall.bogus: unknown key");
}

static void test_wans(void)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse(WITH("'wans':[{'interface':'wan1'},"
					"{'interface':'lte0','mode':'backup',"
					"'gateway':'10.64.0.1','table':300}],"
					"'linkmon':{'probe':'icmp','interval_ms':300,"
					"'timeout_ms':200,'down_after':2,'up_after':4,"
					"'target':'198.18.0.9'}"), &errs);
	CHECK(cfg && cfg->n_wans == 2);
	CHECK(cfg && strcmp(cfg->wans[0].interface, "wan1") == 0 &&
	      !cfg->wans[0].backup && !cfg->wans[0].gateway_set &&
	      cfg->wans[0].table == CONFIG_WAN_TABLE_BASE);
	CHECK(cfg && cfg->wans[1].backup && cfg->wans[1].gateway_set &&
	      cfg->wans[1].table == 300);
	CHECK(cfg && cfg->probe == CONFIG_PROBE_ICMP &&
	      cfg->probe_interval_ms == 300 && cfg->probe_timeout_ms == 200 &&
	      cfg->down_after == 2 && cfg->up_after == 4);
	CHECK(cfg && cfg->probe_target_set &&
	      cfg->probe_target.sa.sa_family == AF_INET);
	CHECK(errs.n == 0);
	config_free(cfg);

	cfg = parse(WITH("'linkmon':{'target':'[2001:db8::1]:443'}"), &errs);
	CHECK(cfg && cfg->probe_target.sa.sa_family == AF_INET6 &&
	      addr_port(&cfg->probe_target) == 443);
	CHECK(cfg && cfg->probe == CONFIG_PROBE_TCP && cfg->down_after == 3 &&
	      cfg->up_after == 2 && cfg->probe_interval_ms == 1000);
	config_free(cfg);

	REJECTS(WITH("'wans':[{'mode':'active'}]"),
		"wans[0].interface: required");
	REJECTS(WITH("'wans':[{'interface':'wan1','mode':'primary'}]"),
		"wans[0].mode: \"primary\" is not \"active\" or \"backup\"");
	REJECTS(WITH("'wans':[{'interface':'wan1','gateway':'fe80::1'}]"),
		"wans[0].gateway: \"fe80::1\" is not an IPv4 address");
	REJECTS(WITH("'wans':[{'interface':'wan1','table':255}]"),
		"wans[0].table: 255 is a reserved routing table (default, main, "
		"local)");
	REJECTS(WITH("'wans':[{'interface':'wan1'},{'interface':'wan1'}]"),
		"wans[1]: interface wan1 is already wans[0]");
	REJECTS(WITH("'wans':[{'interface':'wan1','table':7},"
		     "{'interface':'wan2','table':7}]"),
		"wans[1]: table 7 is already wans[0]'s");
	REJECTS(WITH("'linkmon':{'probe':'http'}"),
		"linkmon.probe: \"http\" is not one of \"tcp\", \"icmp\", "
		"\"none\"");
	REJECTS(WITH("'linkmon':{'interval_ms':500,'timeout_ms':600}"),
		"linkmon.timeout_ms: 600 is more than interval_ms (500)");
	REJECTS(WITH("'linkmon':{'down_after':0}"),
		"linkmon.down_after: 0 is out of range (1-100)");
	REJECTS(WITH("'linkmon':{'target':'192.0.2.1:0'}"),
		"linkmon.target: \"192.0.2.1:0\" is not an address with an "
		"optional port (like \"192.0.2.1:443\" or "
		"\"[2001:db8::1]:443\")");
	REJECTS(WITH("'linkmon':{'target':'host.example:80'}"),
		"linkmon.target: \"host.example:80\" is not an address with an "
		"optional port (like \"192.0.2.1:443\" or "
		"\"[2001:db8::1]:443\")");
}

static void test_mark(void)
{
	CHECK(mark_of("19792") == 0x4d50);
	CHECK(mark_of("0") == 0);
	CHECK(mark_of("4294967295") == 0xffffffffu);
	CHECK(mark_of("'0x4d50'") == 0x4d50);
	CHECK(mark_of("'0X4D50'") == 0x4d50);
	CHECK(mark_of("'0x1'") == 1);
	CHECK(mark_of("'0xffffffff'") == 0xffffffffu);
	CHECK(mark_of("'0x00000000ff'") == 0xff);
	CHECK(mark_of("'19792'") == 19792);
	CHECK(mark_of("'0'") == 0);
	CHECK(mark_of("'4294967295'") == 0xffffffffu);

	REJECTS(WITH("'upstream':{'mark':4294967296}"),
		"upstream.mark: 4294967296 is out of range (0-4294967295)");
	REJECTS(WITH("'upstream':{'mark':-1}"),
		"upstream.mark: -1 is out of range (0-4294967295)");
	REJECTS(WITH("'upstream':{'mark':1.5}"),
		"upstream.mark: expected an integer, got 1.5");
	REJECTS(WITH("'upstream':{'mark':true}"),
		"upstream.mark: expected an integer or a string like "
		"\"0x4d50\", got boolean");
	REJECTS(WITH("'upstream':{'mark':[1]}"),
		"upstream.mark: expected an integer or a string like "
		"\"0x4d50\", got array");
	REJECTS(WITH("'upstream':{'mark':'0x100000000'}"),
		"upstream.mark: \"0x100000000\" is not a mark (0-4294967295, "
		"decimal or hexadecimal like \"0x4d50\")");
	static const char *const bad[] = {
		"''", "'0x'", "'x10'", "'0xg'", "'4294967296'", "'-1'", "'+1'",
		"' 1'", "'1 '", "'0x 1'", "'1e3'", "'MP'", "'0x-1'",
		"'99999999999999999999999'", "'0b101'", NULL,
	};
	for (const char *const *b = bad; *b; b++) {
		char doc[256];
		snprintf(doc, sizeof(doc), WITH("'upstream':{'mark':%s}"), *b);
		REJECTS_SUB(doc, "is not a mark");
	}
}

/* ---- relay, log, top level ------------------------------------------- */

static void test_relay(void)
{
	REJECTS(WITH("'relay':null"), "relay: expected an object, got null");
	REJECTS(WITH("'relay':{'bogus':1}"), "relay.bogus: unknown key");
	REJECTS(WITH("'relay':{'idle_timeout_s':9}"),
		"relay.idle_timeout_s: 9 is out of range (10-604800)");
	REJECTS(WITH("'relay':{'idle_timeout_s':604801}"),
		"relay.idle_timeout_s: 604801 is out of range (10-604800)");
	REJECTS(WITH("'relay':{'half_close_timeout_s':0}"),
		"relay.half_close_timeout_s: 0 is out of range (1-86400)");
	REJECTS(WITH("'relay':{'half_close_timeout_s':86401}"),
		"relay.half_close_timeout_s: 86401 is out of range (1-86400)");
	REJECTS(WITH("'relay':{'max_flows':0}"),
		"relay.max_flows: 0 is out of range (1-1000000)");
	REJECTS(WITH("'relay':{'max_flows':1000001}"),
		"relay.max_flows: 1000001 is out of range (1-1000000)");
	REJECTS(WITH("'relay':{'max_flows':'many'}"),
		"relay.max_flows: expected an integer, got string");
	REJECTS(WITH("'relay':{'buffer_size':4095}"),
		"relay.buffer_size: 4095 is out of range (4096-4194304)");
	REJECTS(WITH("'relay':{'buffer_size':4194305}"),
		"relay.buffer_size: 4194305 is out of range (4096-4194304)");
	REJECTS(WITH("'relay':{'buffer_size':65536.0}"),
		"relay.buffer_size: expected an integer, got 65536.0");
}

static void test_workers(void)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse("{" SRV "}", &errs);
	CHECK(cfg && cfg->workers == 0); /* auto */
	config_free(cfg);
	cfg = parse("{" SRV ",'relay':{'workers':3}}", &errs);
	CHECK(cfg && cfg->workers == 3);
	config_free(cfg);
	cfg = parse("{" SRV ",'relay':{'workers':'auto'}}", &errs);
	CHECK(cfg && cfg->workers == 0);
	config_free(cfg);
	config_errors_free(&errs);
	REJECTS(WITH("'relay':{'workers':0}"),
		"relay.workers: 0 is out of range (1-16)");
	REJECTS(WITH("'relay':{'workers':17}"),
		"relay.workers: 17 is out of range (1-16)");
	REJECTS(WITH("'relay':{'workers':'all'}"),
		"relay.workers: expected \"auto\" or a number of workers (1-16)");
	REJECTS(WITH("'relay':{'workers':true}"),
		"relay.workers: expected \"auto\" or a number of workers (1-16)");
}

static void test_log(void)
{
	REJECTS(WITH("'log':'debug'"), "log: expected an object, got string");
	REJECTS(WITH("'log':{'bogus':1}"), "log.bogus: unknown key");
	REJECTS(WITH("'log':{'level':'verbose'}"),
		"log.level: \"verbose\" is not a level (error, warn, info, "
		"debug)");
	REJECTS(WITH("'log':{'level':'INFO'}"),
		"log.level: \"INFO\" is not a level (error, warn, info, debug)");
	REJECTS(WITH("'log':{'level':3}"),
		"log.level: expected a string, got integer");
	REJECTS(WITH("'log':{'level':'?'}"),
		"log.level: \"?\" is not a level (error, warn, info, debug)");
}

#define X100 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define X63 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
static void test_control(void)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse("{" SRV ",'control':{'socket':'/tmp/x.sock'}}",
				   &errs);
	CHECK(cfg && strcmp(cfg->control_socket, "/tmp/x.sock") == 0);
	config_free(cfg);
	config_errors_free(&errs);
	cfg = parse("{" SRV ",'control':{'socket':''}}", &errs);
	CHECK(cfg && strcmp(cfg->control_socket, "") == 0);
	config_free(cfg);
	config_errors_free(&errs);

	REJECTS(WITH("'control':'/tmp/x'"),
		"control: expected an object, got string");
	REJECTS(WITH("'control':{'path':'/tmp/x'}"), "control.path: unknown key");
	REJECTS(WITH("'control':{'socket':'run/x.sock'}"),
		"control.socket: \"run/x.sock\" is not an absolute path of at "
		"most 107 bytes (or \"\" for no control socket)");
	REJECTS(WITH("'control':{'socket':'/" X100 "/x.sock'}"),
		"control.socket: \"/" X63 "...\" is not an absolute path "
		"of at most 107 bytes (or \"\" for no control socket)");
	REJECTS(WITH("'control':{'socket':1}"),
		"control.socket: expected a string, got integer");
}

static void test_top(void)
{
	REJECTS(WITH("'bogus':1"), "bogus: unknown key");
	REJECTS(WITH("'Servers':[]"), "Servers: unknown key");
	REJECTS(WITH("'':1"), ": unknown key");
	/* A key is shown escaped, on one line. */
	REJECTS(WITH("'a\\nb\\u00e9\\\"':1"),
		"a\\x0ab\\xc3\\xa9\\\": unknown key");
	/* ... and cut short. */
	REJECTS(WITH("'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx':1"),
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		"...: unknown key");
	REJECTS("[]", "(config): expected a JSON object at the top level, "
		"got array");
	REJECTS("42", "(config): expected a JSON object at the top level, "
		"got integer");
	REJECTS("'servers'", "(config): expected a JSON object at the top "
		"level, got string");
	REJECTS("null", "(config): expected a JSON object at the top level, "
		"got null");
}

/* Every error of a document, in document order, at once. */
static void test_many_errors(void)
{
	struct config_errors errs = { 0 };
	struct config *cfg = parse(
		"{'listen':{'port':0,'bogus':1},\n"
		" 'servers':[{'address':'h','port':1},{'port':70000},7],\n"
		" 'upstream':{'mptcp':'yes','mark':'0xzz'},\n"
		" 'relay':{'max_flows':0,'buffer_size':1.5},\n"
		" 'log':{'level':'loud'},\n"
		" 'extra':{}}", &errs);
	static const char *const want[] = {
		"listen.port: 0 is not a port (1-65535)",
		"listen.bogus: unknown key",
		"servers[1].port: 70000 is not a port (1-65535)",
		"servers[1].address: required",
		"servers[2]: expected an object, got integer",
		"upstream.mptcp: expected a boolean, got string",
		("upstream.mark: \"0xzz\" is not a mark (0-4294967295, decimal "
		 "or hexadecimal like \"0x4d50\")"),
		"relay.max_flows: 0 is out of range (1-1000000)",
		"relay.buffer_size: expected an integer, got 1.5",
		"log.level: \"loud\" is not a level (error, warn, info, debug)",
		"extra: unknown key",
	};
	size_t n = sizeof(want) / sizeof(want[0]);

	CHECK(cfg == NULL);
	CHECK_MSG(errs.n == n, "%zu errors", errs.n);
	for (size_t i = 0; i < n && i < errs.n; i++)
		CHECK_MSG(strcmp(errs.lines[i], want[i]) == 0, "[%zu] %s != %s",
			  i, errs.lines[i], want[i]);
	config_free(cfg);
	config_errors_free(&errs);

	/* Past 100 lines, the rest are counted in one last line. */
	char *doc = malloc(150 * 16 + 64), *p = doc;
	p += sprintf(p, "{" SRV);
	for (int i = 0; i < 150; i++)
		p += sprintf(p, ",'k%d':1", i);
	strcpy(p, "}");
	cfg = parse(doc, &errs);
	CHECK(cfg == NULL);
	CHECK_MSG(errs.n == 101, "%zu lines", errs.n);
	CHECK(errs.n == 101 && strcmp(errs.lines[0], "k0: unknown key") == 0);
	CHECK(errs.n == 101 && strcmp(errs.lines[99], "k99: unknown key") == 0);
	CHECK(errs.n == 101 && strcmp(errs.lines[100],
				      "(config): 50 more errors not shown") == 0);
	config_free(cfg);
	config_errors_free(&errs);
	free(doc);

	/* Without a place for the lines, the result is still NULL. */
	CHECK(parse(WITH("'bogus':1"), NULL) == NULL);
	cfg = parse("{" SRV "}", NULL);
	CHECK(cfg != NULL);
	config_free(cfg);
}

static void test_duplicates(void)
{
	REJECTS(WITH("'listen':{'port':1,'port':2}"),
		"listen.port: duplicate key (the last one would be used)");
	REJECTS("{'servers':[{'address':'h','port':1},"
		"{'address':'h','port':1,'address':'i'}]}",
		"servers[1].address: duplicate key (the last one would be used)");
	REJECTS("{" SRV "," SRV "}",
		"servers: duplicate key (the last one would be used)");
	/* The same key however it is escaped. */
	REJECTS(WITH("'log':{'level':'info','\\u006cevel':'debug'}"),
		"log.level: duplicate key (the last one would be used)");
	/* Inside a value that is wrong anyway: both errors. */
	struct config_errors errs = { 0 };
	struct config *cfg = parse(WITH("'x':[1,{'a':[{},{'b':1,'b':2}]}]"),
				   &errs);
	CHECK(!cfg && errs.n == 2);
	CHECK(has_line(&errs, "x[1].a[1].b: duplicate key (the last one would "
			      "be used)"));
	CHECK(has_line(&errs, "x: unknown key"));
	config_free(cfg);
	config_errors_free(&errs);
	/* Same key in different objects, and strings that look like keys. */
	ACCEPTS("{'servers':[{'address':'port','port':1},"
		"{'address':'h','port':2}],'listen':{'port':3}}");
	ACCEPTS("{'servers':[{'address':'h','port':1,'username':'a\\\"b\\\\',"
		"'password':'}'},{'address':'h','port':2}]}");
}

/* ---- JSON syntax ----------------------------------------------------- */

static void test_syntax(void)
{
	REJECTS("", "(config): empty: no server configured (a JSON "
		"object or UCI config sections are expected)");
	REJECTS(" \n\t\r\n", "(config): empty: no server configured (a JSON "
		"object or UCI config sections are expected)");
	REJECTS("{\n  'servers': [\n    {'address': 'h' 'port': 1}\n  ]\n}\n",
		"(config):3:21: invalid JSON: object value separator ',' "
		"expected");
	REJECTS("{'servers':[{'address':'h','port':1}]",
		"(config):1:38: invalid JSON: unexpected end of data");
	REJECTS("{\n'servers':\n", "(config):3:1: invalid JSON: unexpected "
		"end of data");
	REJECTS("{'servers':[{'address':'h','port':1,}]}",
		"(config):1:37: invalid JSON: unexpected character");
	REJECTS("{" SRV ", // comment\n}",
		"(config):1:51: invalid JSON: quoted object property name "
		"expected");
	REJECTS("{" SRV "/* comment */}",
		"(config):1:49: invalid JSON: object value separator ',' "
		"expected");
	REJECTS("{'servers':[{'address':'h','port':01}]}",
		"(config):1:37: invalid JSON: number expected");
	REJECTS("{'servers':[{'address':'h','port':1}],'x':tru}",
		"(config):1:46: invalid JSON: boolean expected");
	REJECTS("{'servers':[{'address':'h\xff','port':1}]}",
		"(config):1:26: invalid JSON: invalid utf-8 string");
	/* Trailing data after the object. */
	REJECTS("{" SRV "} x",
		"(config):1:51: invalid JSON: unexpected data after the "
		"top-level value");
	REJECTS("{" SRV "}\n\n{}\n",
		"(config):3:1: invalid JSON: unexpected data after the "
		"top-level value");
	ACCEPTS("\n\n  {" SRV "}  \n\n\t");
	/* A UTF-8 byte order mark is skipped. */
	ACCEPTS("\xef\xbb\xbf{" SRV "}\n");
}

/* ---- files ----------------------------------------------------------- */

static char *tmpdir;

/* No config, and exactly this one error line. */
static bool one_error(const struct config *cfg,
		      const struct config_errors *errs, const char *line)
{
	bool ok = !cfg && errs->n == 1 && line &&
		  strcmp(errs->lines[0], line) == 0;
	if (!ok) {
		fprintf(stderr, "  expected: %s\n", line ? line : "?");
		print_errors(errs);
	}
	return ok;
}

static char *write_file(const char *name, const char *data, size_t len)
{
	char *path = NULL;
	if (asprintf(&path, "%s/%s", tmpdir, name) < 0)
		return NULL;
	FILE *f = fopen(path, "w");
	if (f) {
		fwrite(data, 1, len, f);
		fclose(f);
	}
	return path;
}

static void test_files(void)
{
	struct config_errors errs = { 0 };
	struct config *cfg;
	char *path, *line = NULL;

	const char *base = getenv("TMPDIR");
	if (asprintf(&tmpdir, "%s/test_config.XXXXXX",
		     base && *base ? base : "/tmp") < 0 || !mkdtemp(tmpdir)) {
		CHECK_MSG(0, "mkdtemp: %s", strerror(errno));
		return;
	}

	/* A valid file. */
	char *json = dq("{\n  " SRV ",\n  'listen': {'port': 2000}\n}\n");
	path = write_file("good.json", json, strlen(json));
	free(json);
	cfg = config_load_file(path, &errs);
	CHECK(cfg && errs.n == 0 && cfg->listen_port == 2000 &&
	      cfg->n_servers == 1);
	config_free(cfg);
	config_errors_free(&errs);
	unlink(path);
	free(path);

	/* Missing, a directory. */
	if (asprintf(&path, "%s/missing.json", tmpdir) < 0)
		path = NULL;
	cfg = config_load_file(path, &errs);
	if (asprintf(&line, "%s: cannot read: %s", path, strerror(ENOENT)) < 0)
		line = NULL;
	CHECK(one_error(cfg, &errs, line));
	config_errors_free(&errs);
	free(line);
	free(path);

	cfg = config_load_file(tmpdir, &errs);
	if (asprintf(&line, "%s: cannot read: %s", tmpdir, strerror(EISDIR)) < 0)
		line = NULL;
	CHECK(one_error(cfg, &errs, line));
	config_errors_free(&errs);
	free(line);

	/* Unreadable (unless root, who reads anything). */
	path = write_file("secret.json", "{}", 2);
	chmod(path, 0);
	if (geteuid() != 0) {
		cfg = config_load_file(path, &errs);
		if (asprintf(&line, "%s: cannot read: %s", path,
			     strerror(EACCES)) < 0)
			line = NULL;
		CHECK(one_error(cfg, &errs, line));
		config_errors_free(&errs);
		free(line);
	}
	unlink(path);
	free(path);

	/* Errors are named by the file; JSON errors with line:column. */
	static const char bad[] = "{\n  \"servers\": [\n    {\"port\": 1}\n  ],\n"
				  "  \"listen\": {\"port\": 0\n}\n";
	path = write_file("bad.json", bad, sizeof(bad) - 1);
	cfg = config_load_file(path, &errs);
	if (asprintf(&line, "%s:7:1: invalid JSON: unexpected end of data",
		     path) < 0)
		line = NULL;
	CHECK(one_error(cfg, &errs, line));
	config_errors_free(&errs);
	free(line);
	unlink(path);
	free(path);

	/* Empty file; one with only spaces. */
	path = write_file("empty.json", "", 0);
	cfg = config_load_file(path, &errs);
	if (asprintf(&line, "%s: empty: no server configured (a JSON object "
		     "or UCI config sections are expected)", path) < 0)
		line = NULL;
	CHECK(one_error(cfg, &errs, line));
	config_errors_free(&errs);
	free(line);
	unlink(path);
	free(path);

	/* A NUL byte. */
	path = write_file("nul.json", "{\n  \0}", 6);
	cfg = config_load_file(path, &errs);
	if (asprintf(&line, "%s:2:3: invalid JSON: NUL byte", path) < 0)
		line = NULL;
	CHECK(one_error(cfg, &errs, line));
	config_errors_free(&errs);
	free(line);
	unlink(path);
	free(path);

	/* Trailing garbage. */
	json = dq("{" SRV "}\n]\n");
	path = write_file("trailing.json", json, strlen(json));
	free(json);
	cfg = config_load_file(path, &errs);
	if (asprintf(&line, "%s:2:1: invalid JSON: unexpected data after the "
		     "top-level value", path) < 0)
		line = NULL;
	CHECK(one_error(cfg, &errs, line));
	config_errors_free(&errs);
	free(line);
	unlink(path);
	free(path);

	/* Validation errors name paths, whole-file ones the file. */
	json = dq("[{" SRV "}]");
	path = write_file("array.json", json, strlen(json));
	free(json);
	cfg = config_load_file(path, &errs);
	if (asprintf(&line, "%s: expected a JSON object at the top level, got "
		     "array", path) < 0)
		line = NULL;
	CHECK(one_error(cfg, &errs, line));
	config_errors_free(&errs);
	free(line);
	unlink(path);
	free(path);

	/* More than 1 MiB. */
	size_t big = (1u << 20) + 1;
	char *data = malloc(big);
	memset(data, ' ', big);
	data[0] = '{';
	data[big - 1] = '}';
	path = write_file("big.json", data, big);
	free(data);
	cfg = config_load_file(path, &errs);
	if (asprintf(&line, "%s: too large (1048577 bytes, at most 1048576)",
		     path) < 0)
		line = NULL;
	CHECK(one_error(cfg, &errs, line));
	config_errors_free(&errs);
	free(line);
	unlink(path);
	free(path);

	/* Password not in a file's error lines either. */
	json = dq("{'servers':[{'address':'h','port':1,'password':'hunter2'}],"
		  "'hunter2':1}");
	path = write_file("pw.json", json, strlen(json));
	free(json);
	cfg = config_load_file(path, &errs);
	CHECK(!cfg && errs.n == 2);
	CHECK(has_line(&errs, "servers[0].username: required when password "
			      "is set"));
	CHECK(has_line(&errs, "hunter2: unknown key")); /* a key is no secret */
	config_errors_free(&errs);
	unlink(path);
	free(path);

	rmdir(tmpdir);
	free(tmpdir);
}

static void test_free_null(void)
{
	struct config_errors errs = { 0 };
	config_free(NULL);
	config_errors_free(&errs);
	config_errors_free(NULL);
	CHECK(errs.n == 0 && errs.lines == NULL);
}

int main(void)
{
	test_full();
	test_minimal();
	test_range_edges();
	test_listen();
	test_servers();
	test_server_address();
	test_server_credentials();
	test_password_never_shown();
	test_upstream();
	test_setup_keys();
	test_firewall();
	test_wans();
	test_mark();
	test_relay();
	test_log();
	test_control();
	test_workers();
	test_top();
	test_many_errors();
	test_duplicates();
	test_syntax();
	test_files();
	test_free_null();
	return check_done();
}
