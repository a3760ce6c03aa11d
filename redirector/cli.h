/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cli: `mpredir status ...` and `mpredir reload ...` (argv[0] is the
 * command): ask the running daemon over its control socket and print the
 * answer. Returns the exit status: 0, 1 (refused, or no daemon), 2 (usage). */
#ifndef MPREDIR_CLI_H
#define MPREDIR_CLI_H

int cli_main(int argc, char **argv);

#endif
