/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A minimal unit-test harness: CHECK(cond) records a failure with its line
 * and goes on; check_done() prints "N passed, N failed" and gives the exit
 * status. */
#ifndef MPREDIR_CHECK_H
#define MPREDIR_CHECK_H

#include <stdio.h>

static unsigned check_passed, check_failed;

#define CHECK(cond) do { \
	if (cond) { check_passed++; } \
	else { check_failed++; \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_MSG(cond, ...) do { \
	if (cond) { check_passed++; } \
	else { check_failed++; \
		fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

static inline int check_done(void)
{
	printf("%u passed, %u failed\n", check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
