// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit tests of the UCI reader (redirector/uci.c) through config.c: the
 * file syntax (quoting, escapes, comments, lists, sections), every type
 * conversion, exact error lines (file:line, section, option, reason), and
 * each example file parsing to the same configuration as its JSON twin.
 * Run from the top of the tree (`make test-unit`): the examples are read
 * from doc/examples/ and openwrt-package/. */
#include <glob.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "check.h"
#include "config.h"
#include "uci.h"

static void print_errors(const struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "    got: %s\n", errs->lines[i]);
}

/* The document parses; the caller frees the result. */
static struct config *accepts(const char *doc, int line)
{
	struct config_errors errs = { 0 };
	struct config *cfg = config_parse_string(doc, &errs);
	if (!cfg) {
		fprintf(stderr, "%s:%d: refused:\n%s\n", __FILE__, line, doc);
		print_errors(&errs);
	}
	CHECK(cfg != NULL);
	config_errors_free(&errs);
	return cfg;
}
#define ACCEPTS(doc) accepts(doc, __LINE__)

/* The document is refused with exactly these lines, in this order. */
static void rejects(const char *doc, const char *const *want, size_t n,
		    int line)
{
	struct config_errors errs = { 0 };
	struct config *cfg = config_parse_string(doc, &errs);
	bool ok = !cfg && errs.n == n;
	for (size_t i = 0; ok && i < n; i++)
		ok = strcmp(errs.lines[i], want[i]) == 0;
	if (!ok) {
		fprintf(stderr, "%s:%d: document:\n%.400s\n", __FILE__, line,
			doc);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "  expected: %s\n", want[i]);
		print_errors(&errs);
	}
	CHECK(ok);
	config_free(cfg);
	config_errors_free(&errs);
}
#define REJECTS(doc, ...) do { \
	static const char *const want_[] = { __VA_ARGS__ }; \
	rejects(doc, want_, sizeof(want_) / sizeof(*want_), __LINE__); \
} while (0)

#define EMPTY "(config): empty: no server configured (a JSON object or " \
	"UCI config sections are expected)"

#define SRV "config server\n\toption address '192.0.2.1'\n\toption port 1080\n"

/* ---- the reader's syntax ---------------------------------------------- */

static const char *pw(const char *doc, struct config **keep)
{
	*keep = ACCEPTS(doc);
	return *keep && (*keep)->servers[0].password ?
	       (*keep)->servers[0].password : "(none)";
}

/* The password of a one-server document whose password line is `line`. */
#define PASSWORD_IS(line, want) do { \
	struct config *c_; \
	const char *got_ = pw("config server\n option address h\n option port 1\n" \
			      " option username u\n" line "\n", &c_); \
	CHECK_MSG(strcmp(got_, want) == 0, "%s: [%s] != [%s]", line, got_, want); \
	config_free(c_); \
} while (0)

static void test_quoting(void)
{
	PASSWORD_IS(" option password plain", "plain");
	PASSWORD_IS(" option password 'single quoted'", "single quoted");
	PASSWORD_IS(" option password \"double quoted\"", "double quoted");
	/* no escape inside '...'; UCI writes a ' as '\'' */
	PASSWORD_IS(" option password 'a\\b'", "a\\b");
	PASSWORD_IS(" option password 'it'\\''s'", "it's");
	/* inside "...", \x is x */
	PASSWORD_IS(" option password \"a\\\"b\\\\c\\$d\\n\"", "a\"b\\c$dn");
	PASSWORD_IS(" option password \"it's\"", "it's");
	/* outside quotes too; adjacent parts make one word */
	PASSWORD_IS(" option password a\\ b\\'c", "a b'c");
	PASSWORD_IS(" option password 'a'\"b\"c'd e'", "abcd e");
	/* '#' and ';' are plain characters inside quotes */
	PASSWORD_IS(" option password '#;x'", "#;x");
	PASSWORD_IS(" option password \"#;x\"", "#;x");
	/* a quoted value may span lines; a backslash-newline joins lines */
	PASSWORD_IS(" option password 'two\nlines'", "two\nlines");
	PASSWORD_IS(" option password \"jo\\\nined\"", "joined");
	PASSWORD_IS(" option password jo\\\nined", "joined");
	PASSWORD_IS(" option password \\\n  'next line'", "next line");
	/* a comment after a value, or right after an unquoted word */
	PASSWORD_IS(" option password secret # not this", "secret");
	PASSWORD_IS(" option password secret#not this", "secret");
	/* tabs, CR LF */
	PASSWORD_IS("\toption\tpassword\t'tab'\r", "tab");
	/* non-ASCII bytes as they are */
	PASSWORD_IS(" option password 'pa\xc3\xa9'", "pa\xc3\xa9");
}

static void test_commands(void)
{
	struct config *c;

	/* comments, blank lines, a package line, abbreviations, ';' */
	REJECTS(SRV "config listen ''\n l bogus\n",
		"(config):5: @listen[0], list bogus: unknown option");
	c = ACCEPTS("# a comment\n\n   # another\npackage mpredir\n\n"
		    "config server 'a' # named\n"
		    "\toption address '192.0.2.1'; option port 1080\n"
		    "c server\n o address 192.0.2.2\n o port 2\n"
		    "config listen ''\n\n\n o port 1099\n");
	CHECK(c && c->n_servers == 2);
	CHECK(c && strcmp(c->servers[0].address, "192.0.2.1") == 0 &&
	      c->servers[0].port == 1080);
	CHECK(c && strcmp(c->servers[1].address, "192.0.2.2") == 0 &&
	      c->servers[1].port == 2);
	CHECK(c && c->listen_port == 1099);
	config_free(c);
	/* a short command first, as libuci reads it (the format is told by
	 * the same table as the reader's) */
	c = ACCEPTS("c server\n o address 192.0.2.1\n o port 1\n");
	CHECK(c && c->n_servers == 1 && c->servers[0].port == 1);
	config_free(c);
	c = ACCEPTS("# short\np mpredir\n" SRV);
	CHECK(c && c->n_servers == 1);
	config_free(c);
	REJECTS("o port 1\n", "(config):1: option before the first section (a "
		"config line must come first)");
	REJECTS("\n l bypass x\n", "(config):2: list before the first section "
		"(a config line must come first)");
	/* a UTF-8 byte order mark, as for JSON */
	c = ACCEPTS("\xef\xbb\xbf" SRV);
	CHECK(c && c->n_servers == 1);
	config_free(c);
	/* as in libuci, an option set to '' (or to nothing) is not set */
	c = ACCEPTS(SRV "config listen\n option port ''\n option address\n");
	CHECK(c && c->listen_port == 1088 &&
	      strcmp(c->listen_address, "::") == 0);
	config_free(c);
	/* servers in file order, named or not */
	c = ACCEPTS("config server z\n option address c.example\n option port 3\n"
		    "config listen\n"
		    "config server\n option address b.example\n option port 2\n"
		    "config server a\n option address a.example\n option port 1\n");
	CHECK(c && c->n_servers == 3 && c->servers[0].port == 3 &&
	      c->servers[1].port == 2 && c->servers[2].port == 1);
	config_free(c);
	/* the init script's section: checked, then ignored */
	c = ACCEPTS("config mpredir main\n option enabled 0\n" SRV);
	CHECK(c != NULL);
	config_free(c);
}

/* ---- types -------------------------------------------------------------- */

static void test_types(void)
{
	struct config *c;

	static const char *const yes[] = { "1", "true", "yes", "on", "enabled" };
	static const char *const no[] = { "0", "false", "no", "off", "disabled" };
	char doc[512];
	for (size_t i = 0; i < 5; i++) {
		snprintf(doc, sizeof(doc), SRV "config upstream\n option mptcp %s\n"
			 "config firewall\n option router_traffic '%s'\n"
			 " option block_quic \"%s\"\n", no[i], yes[i], no[i]);
		c = ACCEPTS(doc);
		CHECK_MSG(c && !c->mptcp && c->fw_router_traffic &&
			  !c->fw_block_quic, "%s/%s", yes[i], no[i]);
		config_free(c);
		snprintf(doc, sizeof(doc), SRV "config upstream\n option mptcp %s\n"
			 " option pipeline %s\n option fast_open %s\n",
			 yes[i], yes[i], no[i]);
		c = ACCEPTS(doc);
		CHECK_MSG(c && c->mptcp && c->pipeline == CONFIG_ON &&
			  c->fast_open == CONFIG_OFF, "%s/%s", yes[i], no[i]);
		config_free(c);
	}
	/* booleans are lower case, as OpenWrt's */
	REJECTS(SRV "config upstream\n option mptcp Yes\n",
		"(config):5: @upstream[0], option mptcp: expected a boolean "
		"(1/0, true/false, yes/no, on/off, enabled/disabled), got \"Yes\"");

	/* modes: a string, or a boolean for on/off; per server too */
	c = ACCEPTS("config server\n option address h\n option port 1\n"
		    " option pipeline auto\n"
		    "config server\n option address h\n option port 2\n"
		    "config upstream\n option pipeline off\n option fast_open on\n");
	CHECK(c && c->servers[0].pipeline == CONFIG_AUTO &&
	      c->servers[1].pipeline == CONFIG_OFF &&
	      c->pipeline == CONFIG_OFF && c->fast_open == CONFIG_ON);
	config_free(c);
	REJECTS(SRV "config upstream\n option pipeline sometimes\n",
		"(config):5: @upstream[0], option pipeline: \"sometimes\" is not "
		"one of \"auto\", \"on\", \"off\"");

	/* integers: decimal, a sign, leading zeros */
	c = ACCEPTS(SRV "config relay\n option max_flows 0100\n"
		    "config upstream\n option pool_size '0'\n");
	CHECK(c && c->max_flows == 100 && c->pool_size == 0);
	config_free(c);
	REJECTS(SRV "config listen\n option port -1\n",
		"(config):5: @listen[0], option port: -1 is not a port (1-65535)");
	REJECTS(SRV "config listen\n option port 99999999999999999999\n",
		"(config):5: @listen[0], option port: 99999999999999999999 is "
		"not a port (1-65535)");
	REJECTS(SRV "config listen\n option port -99999999999999999999\n",
		"(config):5: @listen[0], option port: -99999999999999999999 is "
		"not a port (1-65535)");
	REJECTS(SRV "config listen\n option port 0x50\n",
		"(config):5: @listen[0], option port: expected an integer, got "
		"\"0x50\"");
	REJECTS(SRV "config listen\n option port ' 80'\n",
		"(config):5: @listen[0], option port: expected an integer, got "
		"\" 80\"");
	REJECTS(SRV "config listen\n option port 1.5\n",
		"(config):5: @listen[0], option port: expected an integer, got "
		"\"1.5\"");
	REJECTS(SRV "config listen\n option port +1\n",
		"(config):5: @listen[0], option port: expected an integer, got "
		"\"+1\"");
	REJECTS(SRV "config listen\n option port -\n",
		"(config):5: @listen[0], option port: expected an integer, got "
		"\"-\"");

	/* workers: "auto" or a number */
	c = ACCEPTS(SRV "config relay\n option workers 4\n");
	CHECK(c && c->workers == 4);
	config_free(c);
	c = ACCEPTS(SRV "config relay\n option workers auto\n");
	CHECK(c && c->workers == 0);
	config_free(c);
	REJECTS(SRV "config relay\n option workers many\n",
		"(config):5: @relay[0], option workers: expected \"auto\" or a "
		"number of workers (1-16)");
	REJECTS(SRV "config relay\n option workers 17\n",
		"(config):5: @relay[0], option workers: 17 is out of range (1-16)");

	/* marks: decimal or 0x hexadecimal */
	c = ACCEPTS(SRV "config upstream\n option mark 0x1F\n"
		    "config firewall\n option tproxy_mark 7\n");
	CHECK(c && c->mark == 0x1f && c->fw_tproxy_mark == 7);
	config_free(c);
	REJECTS(SRV "config upstream\n option mark 4294967296\n",
		"(config):5: @upstream[0], option mark: \"4294967296\" is not a "
		"mark (0-4294967295, decimal or hexadecimal like \"0x4d50\")");

	/* lists, and one value given as an option */
	c = ACCEPTS(SRV "config firewall\n list lan_interfaces br-lan\n"
		    " list lan_interfaces 'br-guest'\n option bypass 10.0.0.0/8\n"
		    " list bypass_ports 22\n list bypass_ports 80\n"
		    "config upstream\n option server_first_ports 21\n");
	CHECK(c && c->n_fw_lan_ifaces == 2 &&
	      strcmp(c->fw_lan_ifaces[1], "br-guest") == 0);
	CHECK(c && c->n_fw_bypass == 1 && c->fw_bypass[0].len == 8);
	CHECK(c && c->n_fw_bypass_ports == 2 && c->fw_bypass_ports[1] == 80);
	CHECK(c && c->n_server_first_ports == 1 &&
	      c->server_first_ports[0] == 21);
	config_free(c);
	/* strings: as written */
	c = ACCEPTS(SRV "config log\n option level debug\n"
		    "config control\n option socket /tmp/x.sock\n"
		    "config wan\n option interface eth1\n option mode backup\n"
		    " option gateway 192.0.2.254\n option table 7\n"
		    "config linkmon\n option probe icmp\n option target 192.0.2.9\n");
	CHECK(c && c->log_level == LOG_LVL_DEBUG &&
	      strcmp(c->control_socket, "/tmp/x.sock") == 0);
	CHECK(c && c->n_wans == 1 && c->wans[0].backup &&
	      c->wans[0].gateway_set && c->wans[0].table == 7);
	CHECK(c && c->probe == CONFIG_PROBE_ICMP && c->probe_target_set);
	config_free(c);
}

/* ---- errors ------------------------------------------------------------- */

static void test_syntax_errors(void)
{
	REJECTS("config server\n option password 'open\n option port 1\n",
		"(config):2: the quote ' opened here is never closed");
	REJECTS("config server\n option password \"open\\\"\n",
		"(config):2: the quote \" opened here is never closed");
	REJECTS("config server\n option port 1 2\n",
		"(config):2: too many words: option NAME 'VALUE' (quote a value "
		"with spaces)");
	REJECTS("config server\n option\n",
		"(config):2: option without a name: option NAME 'VALUE'");
	REJECTS("config server\n list\n",
		"(config):2: list without a name: list NAME 'VALUE'");
	REJECTS("config\n", "(config):1: config without a section type: "
		"config TYPE ['NAME']");
	REJECTS("config server a b\n",
		"(config):1: too many words: config TYPE ['NAME']");
	REJECTS("config server 'a-b'\n", "(config):1: invalid section name "
		"(letters, digits and '_')");
	REJECTS("config 'ser ver'\n", "(config):1: invalid section type "
		"(letters, digits and '_')");
	REJECTS("config server\n option 'po rt' 1\n", "(config):2: invalid "
		"option name (letters, digits and '_')");
	REJECTS("option port 1\n", "(config):1: option before the first "
		"section (a config line must come first)");
	REJECTS("list bypass x\n", "(config):1: list before the first "
		"section (a config line must come first)");
	REJECTS(SRV "\n  options port 1\n", "(config):5: expected config, "
		"option, list or package at the start of a command");
	REJECTS("package\n", "(config):1: package without a name: package NAME");
	REJECTS("package a b\n", "(config):1: too many words: package NAME");
	REJECTS("package a.b\n", "(config):1: invalid package name (letters, "
		"digits, '_' and '-')");
	REJECTS(SRV "package mpredir\n", "(config):4: package must be the first "
		"command, and come once");
	/* the line of a command that spans lines is its first */
	REJECTS("config server\n option password 'a\nb\nc' x\n",
		"(config):2: too many words: option NAME 'VALUE' (quote a value "
		"with spaces)");
	/* ... and lines after it count the lines inside */
	REJECTS("config server\n option password 'a\nb'\n\n option port 1 2\n",
		"(config):5: too many words: option NAME 'VALUE' (quote a value "
		"with spaces)");
	/* NUL bytes and other formats */
	struct config_errors errs = { 0 };
	CHECK(!config_parse_string("hello\n", &errs) && errs.n == 1 &&
	      strcmp(errs.lines[0], "(config):1: neither JSON nor UCI: "
		     "expected '{' (JSON), or config or package (UCI)") == 0);
	config_errors_free(&errs);
	/* nothing but blanks and comments: empty, in either format */
	REJECTS("", EMPTY);
	REJECTS(" \n\t\r\n", EMPTY);
	REJECTS("\xef\xbb\xbf", EMPTY);
	REJECTS("# config server\n#\toption port 1\n", EMPTY);
	/* a package without sections is not empty: it names what is missing */
	REJECTS("package mpredir\n",
		"(config): config server: at least one server is required");
	CHECK(!config_parse_string("# c\n\n  configure x\n", &errs) &&
	      errs.n == 1 && strncmp(errs.lines[0], "(config):3: neither", 19)
	      == 0);
	config_errors_free(&errs);
}

static void test_detect(void)
{
	static const struct {
		const char *text;
		enum uci_format format;
		unsigned line;
	} cases[] = {
		{ "config server\n", UCI_FORMAT_UCI, 1 },
		{ "c server\n", UCI_FORMAT_UCI, 1 },
		{ "\n# x\n  p mpredir\n", UCI_FORMAT_UCI, 3 },
		{ "o port 1\n", UCI_FORMAT_UCI, 1 },
		{ "l;", UCI_FORMAT_UCI, 1 },
		{ "list#x", UCI_FORMAT_UCI, 1 },
		{ "package", UCI_FORMAT_UCI, 1 },
		{ "{}", UCI_FORMAT_JSON, 1 },
		{ "\n [1]", UCI_FORMAT_JSON, 2 },
		{ "null", UCI_FORMAT_JSON, 1 },
		{ "", UCI_FORMAT_EMPTY, 1 },
		{ " \t\n\n", UCI_FORMAT_EMPTY, 3 },
		{ "# a\n#b", UCI_FORMAT_EMPTY, 2 },
		{ "configure x", UCI_FORMAT_UNKNOWN, 1 },
		{ "x", UCI_FORMAT_UNKNOWN, 1 },
		{ "\n\nco", UCI_FORMAT_UNKNOWN, 3 },
		{ "'config'", UCI_FORMAT_UNKNOWN, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		unsigned line = 0;
		enum uci_format f = uci_detect(cases[i].text,
					       strlen(cases[i].text), &line);
		CHECK_MSG(f == cases[i].format && line == cases[i].line,
			  "[%s]: format %d line %u", cases[i].text, (int)f,
			  line);
	}
}

static void test_schema_errors(void)
{
	/* the example of the task, and every kind of place */
	REJECTS("package mpredir\n\n"
		"config mpredir 'main'\n\toption enabled '1'\n\n"
		"config server 'first'\n"
		"\toption address 'socks.example.net'\n"
		"\toption port '1080'\n"
		"\toption username 'router1'\n\n"
		"config server\n"
		"\toption address '192.0.2.10'\n"
		"\toption bogus 1\n"
		"\toption port '70000'\n\n"
		"config upstream\n\toption mptcp 'maybe'\n\toption pool_size 65\n"
		"\tlist mark 1\n\n"
		"config relay\n\toption idle_timout_s 600\n"
		"config wan\n option interface wan1\n"
		"config wan w2\n option interface wan1\n"
		"config wan w3\n option interface wan3\n option table 19808\n"
		"config firewall 'fw'\n list lan_interfaces br-lan\n"
		" list lan_interfaces 'no/slash'\n list bypass_ports 22\n"
		" list bypass_ports x\n list bypass_ports 0\n"
		"config bogus\n",
		"(config):6: server 'first', option password: required when "
		"username is set",
		"(config):13: @server[1], option bogus: unknown option",
		"(config):14: @server[1], option port: 70000 is not a port "
		"(1-65535)",
		"(config):17: @upstream[0], option mptcp: expected a boolean (1/0, "
		"true/false, yes/no, on/off, enabled/disabled), got \"maybe\"",
		"(config):18: @upstream[0], option pool_size: 65 is out of range "
		"(0-64)",
		"(config):19: @upstream[0], list mark: expected a single value "
		"(option), got a list",
		"(config):22: @relay[0], option idle_timout_s: unknown option",
		"(config):25: wan 'w2': interface wan1 is already @wan[0]",
		"(config):27: wan 'w3': table 19808 is already @wan[0]'s",
		"(config):32: firewall 'fw', list lan_interfaces: \"no/slash\" is not an "
		"interface name (1-15 characters, no '/', ':' or spaces)",
		"(config):34: firewall 'fw', list bypass_ports: expected an integer, got \"x\"",
		"(config):35: firewall 'fw', list bypass_ports: 0 is not a port (1-65535)",
		"(config):36: @bogus[0]: unknown section type");
}

static void test_structure_errors(void)
{
	REJECTS(SRV "config listen\n option port 1\n option port 2\n",
		"(config):6: @listen[0], option port: duplicate option (also "
		"at line 5)");
	REJECTS(SRV "config firewall\n list bypass_ports 1\n option "
		"bypass_ports 2\n",
		"(config):6: @firewall[0], option bypass_ports: duplicate option "
		"(also at line 5)");
	REJECTS(SRV "config firewall\n option bypass_ports 1\n list "
		"bypass_ports 2\n",
		"(config):6: @firewall[0], list bypass_ports: duplicate option "
		"(also at line 5)");
	/* an option set to '' still counts: libuci would unset the first */
	REJECTS(SRV "config listen\n option port 1\n option port ''\n",
		"(config):6: @listen[0], option port: duplicate option (also "
		"at line 5)");
	REJECTS(SRV "config log\nconfig log 'again'\n",
		"(config):5: log 'again': at most one log section (the first is "
		"at line 4)");
	REJECTS("config mpredir main\n" SRV "config mpredir\n",
		"(config):5: @mpredir[1]: at most one mpredir section (the first "
		"is at line 1)");
	/* section names are shared by all types, as in libuci */
	REJECTS("config mpredir 'main'\nconfig server 'main'\n"
		" option address h\n option port 1\n" SRV,
		"(config):2: server 'main': section name already used at line 1");
	REJECTS("config mpredir main\n option enabled 2\n" SRV,
		"(config):2: mpredir 'main', option enabled: expected a boolean "
		"(1/0, true/false, yes/no, on/off, enabled/disabled), got \"2\"");
	REJECTS("config mpredir main\n option start 1\n" SRV,
		"(config):2: mpredir 'main', option start: unknown option");
	/* what is required, at the section that lacks it */
	REJECTS("config listen\n",
		"(config): config server: at least one server is required");
	REJECTS("config server s1\n option address h\n",
		"(config):1: server 's1', option port: required");
	REJECTS("config server s1\n option address h\n option port ''\n",
		"(config):1: server 's1', option port: required");
	REJECTS(SRV "config wan\n option mode backup\n",
		"(config):4: @wan[0], option interface: required");
	/* a value refused by the reader is not "required" on top */
	REJECTS("config server s1\n option address h\n option port x\n",
		"(config):3: server 's1', option port: expected an integer, got "
		"\"x\"");
	/* a list element refused: the others keep their lines */
	REJECTS(SRV "config firewall\n list bypass_ports x\n"
		" list bypass_ports 2\n list bypass_ports 0\n",
		"(config):5: @firewall[0], list bypass_ports: expected an integer, "
		"got \"x\"",
		"(config):7: @firewall[0], list bypass_ports: 0 is not a port "
		"(1-65535)");
	/* checks across sections */
	REJECTS(SRV "config upstream\n option connect_timeout_ms 20000\n",
		"(config):4: @upstream[0], option handshake_timeout_ms: 10000 "
		"(the default) is less than connect_timeout_ms (20000)");
	REJECTS(SRV "config upstream\n option mark 0\n",
		"(config):5: @upstream[0], option mark: 0 cannot be used with the "
		"firewall enabled: the daemon's own connections must carry a "
		"mark that the rules skip");
	REJECTS(SRV "config linkmon lm\n option timeout_ms 2000\n",
		"(config):5: linkmon 'lm', option timeout_ms: 2000 is more than "
		"interval_ms (1000)");

	/* too many servers: at the last one */
	char doc[4096], *p = doc;
	for (int i = 0; i < 17; i++)
		p += sprintf(p, "config server\n option address h\n option port "
			     "%d\n", i + 1);
	REJECTS(doc, "(config):49: @server[16]: 17 servers, at most 16 are "
		"allowed");
	/* and sections: the reader stops */
	p = doc;
	for (int i = 0; i < 65; i++)
		p += sprintf(p, "config log\n");
	REJECTS(doc, "(config):65: more than 64 sections");
	/* and options in a section */
	char *d = malloc(300 * 16 + 64);
	p = d + sprintf(d, SRV "config relay\n");
	for (int i = 0; i < 300; i++)
		p += sprintf(p, " option o%d 1\n", i);
	REJECTS(d, "(config):261: @relay[0]: more than 256 options");
	free(d);
	/* a list longer than any the schema takes */
	size_t big = 1100 * 24 + 64;
	d = malloc(big);
	p = d + sprintf(d, SRV "config firewall\n");
	for (int i = 0; i < 1100; i++)
		p += sprintf(p, " list bypass_ports %d\n", i + 1);
	REJECTS(d, "(config):5: @firewall[0], list bypass_ports: 1024 ports, at "
		"most 64 are allowed",
		"(config):1029: @firewall[0], list bypass_ports: more than "
		"1024 values");
	free(d);
}

/* Secrets are never shown, whatever is wrong around them. */
static void test_secrets(void)
{
	static const char *const docs[] = {
		"config server\n option address h\n option port 1\n"
		" option password 'SECRETPW'\n",
		"config server\n option address h\n option port 1\n"
		" option username SECRETPW\n",
		"config server\n option address h\n option port 1\n"
		" option username u\n list password SECRETPW\n",
		"config server\n option address h\n option port 1\n"
		" option username u\n option password SECRETPW extra\n",
		"config server\n option address h\n option port 1\n"
		" option username u\n option password 'SECRETPW\n",
		"config server\n option address h\n option port 1\n"
		" option username u\n option password SECRETPW\n"
		" option password SECRETPW\n",
		"config server\n option address h\n option port 1\n"
		" option username u\n option password '' \n",
		"config server\n option address h\n option port 1\n"
		" option username u\n option password 'SECRETPW' # \nSECRETPW\n",
	};
	for (size_t i = 0; i < sizeof(docs) / sizeof(*docs); i++) {
		struct config_errors errs = { 0 };
		struct config *c = config_parse_string(docs[i], &errs);
		CHECK_MSG(!c && errs.n >= 1, "document %zu", i);
		for (size_t k = 0; k < errs.n; k++)
			CHECK_MSG(!strstr(errs.lines[k], "SECRETPW"), "%s",
				  errs.lines[k]);
		config_free(c);
		config_errors_free(&errs);
	}
}

/* ---- files -------------------------------------------------------------- */

static char dir[] = "/tmp/test_uci.XXXXXX";

static char *write_file(const char *name, const char *text, size_t len)
{
	char *path = NULL;
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return NULL;
	FILE *f = fopen(path, "w");
	if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
		free(path);
		return NULL;
	}
	return path;
}

static void test_files(void)
{
	struct config_errors errs = { 0 };
	char *want = NULL;

	CHECK(mkdtemp(dir) != NULL);
	static const char doc[] = "config server 'main'\n"
				  "\toption address h\n\toption port 70000\n";
	char *path = write_file("mpredir", doc, strlen(doc));
	CHECK(path != NULL);
	CHECK(!config_load_file(path, &errs));
	CHECK(asprintf(&want, "%s:3: server 'main', option port: 70000 is not "
		       "a port (1-65535)", path) > 0);
	CHECK(errs.n == 1 && strcmp(errs.lines[0], want) == 0);
	config_errors_free(&errs);
	free(want);
	unlink(path);
	free(path);

	/* a NUL byte: refused with its line */
	path = write_file("nul", SRV "# x\0y\n", sizeof(SRV) + 5);
	CHECK(!config_load_file(path, &errs));
	CHECK(asprintf(&want, "%s:4: NUL byte", path) > 0);
	CHECK(errs.n == 1 && strcmp(errs.lines[0], want) == 0);
	config_errors_free(&errs);
	free(want);
	unlink(path);
	free(path);

	/* the size limit, as for JSON */
	size_t n = (1u << 20) + 1;
	char *big = malloc(n);
	memset(big, '#', n);
	memcpy(big, SRV, sizeof(SRV) - 1);
	path = write_file("big", big, n);
	CHECK(!config_load_file(path, &errs));
	CHECK(asprintf(&want, "%s: too large (1048577 bytes, at most 1048576)",
		       path) > 0);
	CHECK(errs.n == 1 && strcmp(errs.lines[0], want) == 0);
	config_errors_free(&errs);
	free(want);
	unlink(path);
	free(path);
	free(big);

	/* `mpredir status -c FILE`'s reading: as config_load_file()'s, a
	 * byte order mark included, in both formats */
	static const char bom_uci[] = "\xef\xbb\xbf# mpredir\nconfig control\n"
				      "\toption socket '/run/x.sock'\n"
				      "config relay\n\toption max_flows lots\n";
	static const char bom_json[] = "\xef\xbb\xbf{ \"control\": "
				       "{ \"socket\": \"/run/j.sock\" } }";
	static const struct {
		const char *text;
		size_t len;
		const char *socket; /* NULL: no tree */
	} trees[] = {
		{ bom_uci, sizeof(bom_uci) - 1, "/run/x.sock" },
		{ bom_json, sizeof(bom_json) - 1, "/run/j.sock" },
		{ bom_uci + 3, sizeof(bom_uci) - 4, "/run/x.sock" },
		{ "c control\n o socket /run/s.sock\n", 32, "/run/s.sock" },
		{ "config control\n\0", 16, NULL },
		{ "", 0, NULL },
		{ "config control 'a\n", 18, NULL },
		{ "hello", 5, NULL },
	};
	for (size_t i = 0; i < sizeof(trees) / sizeof(*trees); i++) {
		path = write_file("tree", trees[i].text, trees[i].len);
		struct json_object *root = config_tree_from_file(path), *ctl,
				   *sock;
		const char *got = root &&
			json_object_object_get_ex(root, "control", &ctl) &&
			json_object_object_get_ex(ctl, "socket", &sock) ?
			json_object_get_string(sock) : NULL;
		CHECK_MSG(trees[i].socket ? got && !strcmp(got, trees[i].socket)
					  : !root, "tree %zu: %s", i,
			  got ? got : "(none)");
		json_object_put(root);
		unlink(path);
		free(path);
	}
	CHECK(!config_tree_from_file("/nonexistent/mpredir"));
	rmdir(dir);
}

/* ---- example files and their JSON twins ---------------------------------- */

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Every field of two configurations; the first difference named in why. */
static bool config_same(const struct config *a, const struct config *b,
			const char **why)
{
#define SAME(cond, name) do { if (!(cond)) { *why = name; return false; } } while (0)
	SAME(same_str(a->listen_address, b->listen_address), "listen_address");
	SAME(a->listen_port == b->listen_port, "listen_port");
	SAME(a->n_servers == b->n_servers, "n_servers");
	for (size_t i = 0; i < a->n_servers; i++) {
		const struct config_server *x = &a->servers[i], *y = &b->servers[i];
		SAME(same_str(x->address, y->address), "server address");
		SAME(x->port == y->port, "server port");
		SAME(same_str(x->username, y->username), "server username");
		SAME(same_str(x->password, y->password), "server password");
		SAME(x->pipeline == y->pipeline, "server pipeline");
		SAME(x->pipeline_set == y->pipeline_set, "server pipeline_set");
	}
	SAME(a->mptcp == b->mptcp, "mptcp");
	SAME(a->mark == b->mark, "mark");
	SAME(a->connect_timeout_ms == b->connect_timeout_ms, "connect_timeout_ms");
	SAME(a->handshake_timeout_ms == b->handshake_timeout_ms,
	     "handshake_timeout_ms");
	SAME(a->server_backoff_s == b->server_backoff_s, "server_backoff_s");
	SAME(a->pipeline == b->pipeline, "pipeline");
	SAME(a->fast_open == b->fast_open, "fast_open");
	SAME(a->first_data_wait_ms == b->first_data_wait_ms, "first_data_wait_ms");
	SAME(a->n_server_first_ports == b->n_server_first_ports,
	     "n_server_first_ports");
	SAME(!memcmp(a->server_first_ports, b->server_first_ports,
		     a->n_server_first_ports * sizeof(*a->server_first_ports)),
	     "server_first_ports");
	SAME(a->pool_size == b->pool_size, "pool_size");
	SAME(a->pool_lifetime_s == b->pool_lifetime_s, "pool_lifetime_s");
	SAME(a->pool_keep_warm_s == b->pool_keep_warm_s, "pool_keep_warm_s");
	SAME(a->idle_timeout_s == b->idle_timeout_s, "idle_timeout_s");
	SAME(a->half_close_timeout_s == b->half_close_timeout_s,
	     "half_close_timeout_s");
	SAME(a->max_flows == b->max_flows, "max_flows");
	SAME(a->buffer_size == b->buffer_size, "buffer_size");
	SAME(a->workers == b->workers, "workers");
	SAME(a->fw_enabled == b->fw_enabled, "fw_enabled");
	SAME(a->fw_mode == b->fw_mode, "fw_mode");
	SAME(a->n_fw_lan_ifaces == b->n_fw_lan_ifaces, "n_fw_lan_ifaces");
	for (size_t i = 0; i < a->n_fw_lan_ifaces; i++)
		SAME(same_str(a->fw_lan_ifaces[i], b->fw_lan_ifaces[i]),
		     "fw_lan_ifaces");
	SAME(a->n_fw_bypass == b->n_fw_bypass, "n_fw_bypass");
	for (size_t i = 0; i < a->n_fw_bypass; i++) {
		const struct addr_prefix *x = &a->fw_bypass[i], *y = &b->fw_bypass[i];
		SAME(x->family == y->family && x->len == y->len &&
		     !memcmp(x->addr, y->addr, sizeof(x->addr)), "fw_bypass");
	}
	SAME(a->n_fw_bypass_ports == b->n_fw_bypass_ports, "n_fw_bypass_ports");
	SAME(!memcmp(a->fw_bypass_ports, b->fw_bypass_ports,
		     a->n_fw_bypass_ports * sizeof(*a->fw_bypass_ports)),
	     "fw_bypass_ports");
	SAME(a->fw_router_traffic == b->fw_router_traffic, "fw_router_traffic");
	SAME(a->fw_block_quic == b->fw_block_quic, "fw_block_quic");
	SAME(a->fw_tproxy_mark == b->fw_tproxy_mark, "fw_tproxy_mark");
	SAME(a->fw_tproxy_table == b->fw_tproxy_table, "fw_tproxy_table");
	SAME(a->n_wans == b->n_wans, "n_wans");
	for (size_t i = 0; i < a->n_wans; i++) {
		const struct config_wan *x = &a->wans[i], *y = &b->wans[i];
		SAME(same_str(x->interface, y->interface), "wan interface");
		SAME(x->backup == y->backup, "wan backup");
		SAME(x->gateway_set == y->gateway_set, "wan gateway_set");
		SAME(!x->gateway_set || addr_equal(&x->gateway, &y->gateway),
		     "wan gateway");
		SAME(x->table == y->table, "wan table");
	}
	SAME(a->probe == b->probe, "probe");
	SAME(a->probe_interval_ms == b->probe_interval_ms, "probe_interval_ms");
	SAME(a->probe_timeout_ms == b->probe_timeout_ms, "probe_timeout_ms");
	SAME(a->down_after == b->down_after, "down_after");
	SAME(a->up_after == b->up_after, "up_after");
	SAME(a->probe_target_set == b->probe_target_set, "probe_target_set");
	SAME(!a->probe_target_set ||
	     addr_equal(&a->probe_target, &b->probe_target), "probe_target");
	SAME(a->log_level == b->log_level, "log_level");
	SAME(same_str(a->control_socket, b->control_socket), "control_socket");
#undef SAME
	return true;
}

/* FILE (UCI) and TWIN (JSON) give the same configuration. */
static void check_twins(const char *uci, const char *json)
{
	struct config_errors e1 = { 0 }, e2 = { 0 };
	struct config *a = config_load_file(uci, &e1);
	struct config *b = config_load_file(json, &e2);
	const char *why = NULL;

	CHECK_MSG(a != NULL, "%s refused", uci);
	CHECK_MSG(b != NULL, "%s refused", json);
	print_errors(&e1);
	print_errors(&e2);
	if (a && b)
		CHECK_MSG(config_same(a, b, &why), "%s and %s differ: %s", uci,
			  json, why);
	config_free(a);
	config_free(b);
	config_errors_free(&e1);
	config_errors_free(&e2);
}

/* The whole of a file, or NULL. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0;

	if (!f)
		return NULL;
	ssize_t n = getdelim(&buf, &cap, '\0', f);
	fclose(f);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* doc/examples/NAME.json is the Nth ```json block of configuration.md. */
static void check_doc_block(const char *doc, size_t nth, const char *name)
{
	char *path = NULL;
	const char *p = doc;

	for (size_t i = 0; p && i <= nth; i++) {
		p = strstr(p, "```json\n");
		p = p ? p + 8 : NULL;
	}
	const char *end = p ? strstr(p, "```") : NULL;
	if (asprintf(&path, "doc/examples/%s.json", name) < 0)
		abort();
	char *file = slurp(path);
	CHECK_MSG(end && file && strlen(file) == (size_t)(end - p) &&
		  memcmp(file, p, (size_t)(end - p)) == 0,
		  "%s is not block %zu of doc/configuration.md", path, nth);
	free(file);
	free(path);
}

static void test_twins(void)
{
	char *doc = slurp("doc/configuration.md");
	CHECK(doc != NULL);
	if (doc) {
		check_doc_block(doc, 0, "full");
		check_doc_block(doc, 1, "minimal");
	}
	free(doc);

	glob_t g;
	size_t n = 0;

	CHECK(glob("doc/examples/*.uci", 0, NULL, &g) == 0);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		char *json = NULL;
		const char *u = g.gl_pathv[i];
		if (asprintf(&json, "%.*sjson", (int)strlen(u) - 3, u) < 0)
			abort();
		check_twins(g.gl_pathv[i], json);
		free(json);
		n++;
	}
	globfree(&g);
	CHECK_MSG(n >= 3, "%zu examples in doc/examples", n);
	check_twins("openwrt-package/mpredir/files/mpredir.config",
		    "openwrt-package/mpredir/files/mpredir.config.json");

	/* the comparison itself sees a difference (it can fail) */
	struct config *a = config_parse_string("config server\n option "
		"address h\n option port 1\n option username u\n option "
		"password p1\n", NULL);
	struct config *b = config_parse_string("{\"servers\":[{\"address\":"
		"\"h\",\"port\":1,\"username\":\"u\",\"password\":\"p2\"}]}",
		NULL);
	const char *why = NULL;
	CHECK(a && b && !config_same(a, b, &why) &&
	      strcmp(why, "server password") == 0);
	config_free(a);
	config_free(b);
}

int main(void)
{
	test_quoting();
	test_commands();
	test_types();
	test_syntax_errors();
	test_detect();
	test_schema_errors();
	test_structure_errors();
	test_secrets();
	test_files();
	test_twins();
	return check_done();
}
