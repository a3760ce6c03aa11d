/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the fuzz targets share: a check that aborts (libFuzzer then saves
 * the input) with the failed condition named. */
#ifndef MPREDIR_FUZZ_H
#define MPREDIR_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
			__LINE__, #cond); \
		abort(); \
	} \
} while (0)

#endif
