// SPDX-License-Identifier: GPL-2.0-or-later
/* libFuzzer target: the UCI reader (redirector/uci.c) and its way through
 * config.c.
 *
 * Input: the body of a UCI file. It is read three ways:
 *  1. after a "package mpredir" line (so that it is always taken as UCI),
 *     by config_parse_string(), with fuzz_config's checks: a result has no
 *     error line, a refusal at least one, each one printable line, and a
 *     configuration that parses keeps the daemon's invariants; besides,
 *     every error names the file, and its line number (when it has one) is
 *     a line of the text;
 *  2. the same with errors only counted: the same verdict;
 *  3. by uci_convert() directly (when the input has no NUL byte): every
 *     JSON path of the tree it returns is located, as one printable line
 *     "NAME:LINE: ..." with a line of the text.
 * uci_detect() runs on the raw input (a format, a line of the input).
 * ASan's leak check sees what the free functions miss. */
#include <json-c/json.h>

#include "uci.h"

/* fuzz_config's checks (parse_checked), without its entry point. */
#define LLVMFuzzerTestOneInput fuzz_config_one_input
#include "fuzz_config.c"
#undef LLVMFuzzerTestOneInput

#define PREFIX "package mpredir\n"

static size_t n_lines(const char *s)
{
	size_t n = 1;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* "NAME:LINE: ..." or "NAME: ...", printable, LINE within the text. */
static void check_place(const char *l, const char *name, size_t lines)
{
	size_t n = strlen(name);
	FUZZ_CHECK(strncmp(l, name, n) == 0 && l[n] == ':');
	for (const char *p = l; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p != 0x7f);
	if (l[n + 1] >= '0' && l[n + 1] <= '9') {
		char *end;
		unsigned long ln = strtoul(l + n + 1, &end, 10);
		FUZZ_CHECK(ln >= 1 && ln <= lines && *end == ':');
	} else {
		FUZZ_CHECK(l[n + 1] == ' ');
	}
}

static void locate_all(const struct uci_map *map, const char *path,
		       struct json_object *v, size_t lines)
{
	bool drop;
	char *loc = uci_map_locate(map, path, &drop);
	if (loc)
		check_place(loc, "(fuzz)", lines);
	free(loc);
	free(uci_map_section(map, path));

	char *sub = NULL;
	if (json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, key, val) {
			if (asprintf(&sub, "%s%s%s", path, *path ? "." : "",
				     key) < 0)
				return;
			locate_all(map, sub, val, lines);
			free(sub);
		}
	} else if (json_object_is_type(v, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			if (asprintf(&sub, "%s[%zu]", path, i) < 0)
				return;
			locate_all(map, sub, json_object_array_get_idx(v, i),
				   lines);
			free(sub);
		}
	}
}

/* An error line of config_parse_string(); arg: the number of lines. */
static void config_place(const char *line, void *arg)
{
	check_place(line, "(config)", *(size_t *)arg);
}

static void count_error(void *arg, char *line)
{
	size_t *lines = arg;
	FUZZ_CHECK(line != NULL);
	check_place(line, "(fuzz)", *lines);
	free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned line;
	enum uci_format f = uci_detect((const char *)data, size, &line);
	FUZZ_CHECK(f <= UCI_FORMAT_UNKNOWN && line >= 1 && line <= size + 1);

	char *text = malloc(sizeof(PREFIX) + size);
	if (!text)
		return 0;
	memcpy(text, PREFIX, sizeof(PREFIX) - 1);
	memcpy(text + sizeof(PREFIX) - 1, data, size);
	text[sizeof(PREFIX) - 1 + size] = '\0';
	size_t lines = n_lines(text);

	(void)parse_checked(text, config_place, &lines);

	if (!memchr(data, '\0', size)) {
		struct uci_map *map = NULL;
		size_t len = strlen(text);
		struct json_object *root = uci_convert(text, len, "(fuzz)", &map,
						       count_error, &lines);
		FUZZ_CHECK(!root == !map);
		if (root) {
			FUZZ_CHECK(json_object_is_type(root, json_type_object));
			locate_all(map, "", root, lines);
		}
		json_object_put(root);
		uci_map_free(map);
	}
	free(text);
	return 0;
}
