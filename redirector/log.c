// SPDX-License-Identifier: GPL-2.0-or-later
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static const char *const level_names[] = {
	[LOG_LVL_ERROR] = "error",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};
static const int level_syslog[] = {
	[LOG_LVL_ERROR] = LOG_ERR,
	[LOG_LVL_WARN] = LOG_WARNING,
	[LOG_LVL_INFO] = LOG_INFO,
	[LOG_LVL_DEBUG] = LOG_DEBUG,
};

static bool log_syslog;
static enum log_level log_max = LOG_LVL_INFO;

const char *log_level_name(enum log_level lvl)
{
	return (unsigned)lvl < sizeof(level_names) / sizeof(level_names[0])
		       ? level_names[lvl] : "?";
}

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_init(bool use_syslog, enum log_level lvl)
{
	log_syslog = use_syslog;
	log_max = lvl;
	if (use_syslog)
		openlog("mpredir", LOG_PID, LOG_DAEMON);
}

/* (set by the main thread on a reload, read by the workers) */
void log_set_level(enum log_level lvl)
{
	__atomic_store_n(&log_max, lvl, __ATOMIC_RELAXED);
}

bool log_enabled(enum log_level lvl)
{
	return lvl <= __atomic_load_n(&log_max, __ATOMIC_RELAXED);
}

/* per thread: a reload (main thread) collects only its own messages */
static __thread log_tap_fn *tap;
static __thread void *tap_arg;

void log_set_tap(log_tap_fn *fn, void *arg)
{
	tap = fn;
	tap_arg = arg;
}

static void log_v(enum log_level lvl, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void log_v(enum log_level lvl, const char *fmt, va_list ap)
{
	bool tapped = tap && lvl <= LOG_LVL_INFO;
	if (!log_enabled(lvl) && !tapped)
		return;
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	if (tapped)
		tap(lvl, line, tap_arg);
	if (!log_enabled(lvl))
		return;
	if (log_syslog) {
		syslog(level_syslog[lvl], "%s", line);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%02d:%02d:%02d.%03ld %-5s %s\n", tm.tm_hour, tm.tm_min,
		tm.tm_sec, ts.tv_nsec / 1000000, log_level_name(lvl), line);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_v(lvl, fmt, ap);
	va_end(ap);
}

/* Limits are shared by the worker threads. */
static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;

void log_limited(struct log_limit *lim, double now, enum log_level lvl,
		 const char *fmt, ...)
{
	unsigned suppressed;

	if (!log_enabled(lvl))
		return;
	pthread_mutex_lock(&limit_lock);
	if (!log_enabled(LOG_LVL_DEBUG) && lim->printed_once &&
	    now - lim->last < lim->interval_s) {
		lim->suppressed++;
		pthread_mutex_unlock(&limit_lock);
		return;
	}
	suppressed = lim->suppressed;
	lim->printed_once = true;
	lim->last = now;
	lim->suppressed = 0;
	pthread_mutex_unlock(&limit_lock);
	va_list ap;
	va_start(ap, fmt);
	if (!suppressed) {
		log_v(lvl, fmt, ap);
	} else {
		/* one line, count included: a flood costs a line a second */
		char line[1024];
		vsnprintf(line, sizeof(line), fmt, ap);
		log_msg(lvl, "%s (%u similar messages suppressed)", line,
			suppressed);
	}
	va_end(ap);
}
