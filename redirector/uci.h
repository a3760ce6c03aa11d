/* SPDX-License-Identifier: GPL-2.0-or-later */
/* uci: an OpenWrt UCI file (/etc/config/mpredir) -> the json-c tree that
 * config.c validates, so that both formats share one schema. libuci exists
 * only on OpenWrt: this is a reader of the file syntax alone (no delta
 * files, no `uci` command), written to libuci's grammar:
 *
 *   package mpredir
 *   config server 'main'          # a named section ('' or none: anonymous)
 *           option port 1080      # one value
 *           list bypass '10.0.0.0/8'  # one list element per line
 *
 * Words are unquoted, '...' (no escapes) or "..." (\x is x), concatenated
 * when adjacent; a backslash outside '...' escapes the next character, or
 * continues the line before a newline; '#' outside quotes starts a comment;
 * ';' separates commands on one line. As in libuci, an option with an
 * empty value is not set.
 *
 * The mapping (doc/configuration.md, "UCI"): a section type is a top-level
 * JSON key ("server" and "wan" are the elements of "servers" and "wans",
 * in file order; the others appear at most once); an option is a key, with
 * nested objects flattened by '_' (upstream "pool_size" is pool.size); a
 * list is an array. Each option has a type (uci.c's table) that turns the
 * UCI string into the right JSON value. Section "mpredir" (option enabled)
 * belongs to the init script: checked, not converted.
 *
 * Errors name the UCI place, "FILE:LINE: server 'main', option port: ...":
 * the reader's own (syntax, unknown names, values that are not integers or
 * booleans) directly; config.c's, made for a JSON path, through the map
 * kept here (uci_map_locate). */
#ifndef MPREDIR_UCI_H
#define MPREDIR_UCI_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;

enum uci_format {
	UCI_FORMAT_JSON,    /* '{', or any other start of a JSON value */
	UCI_FORMAT_UCI,     /* a first word config, package, option or list,
			     * or its first letter (as libuci reads them) */
	UCI_FORMAT_EMPTY,   /* only blanks and '#' comment lines: either */
	UCI_FORMAT_UNKNOWN, /* neither */
};

/* The format of a configuration file, by its first word or character
 * after blanks and '#' comment lines. On UCI_FORMAT_UNKNOWN, *line is the
 * line of that first word. */
enum uci_format uci_detect(const char *text, size_t len, unsigned *line);

/* Where each JSON path of a converted file came from. */
struct uci_map;

/* Receives each error line of the reader (malloc'ed, NULL when out of
 * memory); the callee owns it. */
typedef void uci_error_fn(void *arg, char *line);

/* Convert text[0..len) (text[len] == '\0'; no NUL byte inside), named
 * `name` in messages (printable). Returns the JSON object and *map, or
 * NULL (and no map) when the file cannot be read as UCI: its first syntax
 * error went to err. Errors in values (reported to err too) leave the
 * value out of the tree: the caller must count them as failures. */
struct json_object *uci_convert(const char *text, size_t len, const char *name,
				struct uci_map **map, uci_error_fn *err,
				void *arg);

/* The UCI place of a JSON path as config.c builds them ("servers[1].port",
 * "firewall.bypass[2]"), as a new string "FILE:LINE: SECTION, option NAME"
 * (or "FILE:LINE: SECTION", or "FILE: config TYPE" when the path names
 * nothing in the file). NULL with *drop set when the value was refused by
 * the reader already: its error is out and a second one would be noise.
 * NULL with *drop clear: out of memory. */
char *uci_map_locate(const struct uci_map *map, const char *path, bool *drop);

/* The UCI name of the section at a JSON path ("wans[1]" -> "wan 'lte'" or
 * "@wan[1]"), for messages that refer to another section; NULL if none
 * (or no memory). */
char *uci_map_section(const struct uci_map *map, const char *path);

void uci_map_free(struct uci_map *map);

/* Put error lines "NAME:LINE: ..." in the order of their lines (stable;
 * lines without a line number after them), so that the reader's errors
 * and config.c's come in file order. */
void uci_sort_errors(char **lines, size_t n, const char *name);

#endif
