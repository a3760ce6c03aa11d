/* SPDX-License-Identifier: GPL-2.0-or-later */
/* log: levels, stderr or syslog, rate-limited repeats. */
#ifndef MPREDIR_LOG_H
#define MPREDIR_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Name <-> level; log_level_parse returns -1 for an unknown name. */
const char *log_level_name(enum log_level lvl);
int log_level_parse(const char *name);

void log_init(bool use_syslog, enum log_level lvl);
void log_set_level(enum log_level lvl);
bool log_enabled(enum log_level lvl);

void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* While set, every message up to info level (whatever the configured
 * level) is also given to fn: a reload collects what it did this way. */
typedef void log_tap_fn(enum log_level lvl, const char *line, void *arg);
void log_set_tap(log_tap_fn *fn, void *arg);

/* A rate limit for one kind of repetitive message: the first is always
 * printed; later ones at most once per `interval_s`, each with the count
 * of those suppressed meanwhile on its own line. `now` is a monotonic time
 * in seconds.
 * Thread-safe (the workers share their limits). At debug level nothing is
 * suppressed. */
struct log_limit {
	double interval_s;
	double last;
	unsigned suppressed;
	bool printed_once;
};
#define LOG_LIMIT_INIT(sec) { .interval_s = (sec) }
void log_limited(struct log_limit *lim, double now, enum log_level lvl,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
