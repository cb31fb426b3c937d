/* SPDX-License-Identifier: MIT */
/*
 * Command lines of redhawk-shminfo and redhawk-shmclean, parsed without side
 * effects other than messages on the given stream, so that tests can check
 * every case; the mains act on the result, and all three tools end --help,
 * --version and bad usage with options_finish.
 */
#ifndef RH_TOOLS_OPTIONS_H
#define RH_TOOLS_OPTIONS_H

#include <stddef.h>
#include <getopt.h>
#include <stdio.h>

#include "fmt.h"

enum parse_result {
	PARSE_OK = 0,       /* go on */
	PARSE_HELP = 1,     /* print usage, exit 0 */
	PARSE_VERSION = 2,  /* print the version, exit 0 */
	PARSE_USAGE = 3,    /* bad usage: reported on err, exit 2 */
};

enum output { OUT_TEXT, OUT_JSON, OUT_PROMETHEUS };

struct shminfo_options {
	int all;
	int breakdown_on;
	size_t breakdown;       /* sites per heap, 10 by default */
	const char *dir;        /* --dir, else $RH_SHM_DIR, else /dev/shm */
	enum output output;
	struct fmt_ctx fmt;
	int first_arg;          /* argv index of the first HEAP */
};

struct shmclean_options {
	int force, dry_run, verbose;
	const char *dir;
	int first_arg;          /* argv index of the first NAME */
};

/* Both reset getopt (optind = 0) so that they can run more than once. */
enum parse_result shminfo_parse(int argc, char **argv, struct shminfo_options *o, FILE *err);
enum parse_result shmclean_parse(int argc, char **argv, struct shmclean_options *o, FILE *err);

void shminfo_usage(FILE *out);
void shmclean_usage(FILE *out);

/* Ends a run whose command line said not to go on (R is not PARSE_OK), the
 * same way for every tool: PARSE_HELP prints USAGE, PARSE_VERSION "PROG from
 * redhawk-shm VERSION", both to stdout, and exit 0, or WRITE_FAILED when
 * stdout could not take them; PARSE_USAGE (the parser said what was wrong)
 * prints "Try 'PROG --help' for more information." to stderr and exits
 * BAD_USAGE. */
/* Says what getopt_long found wrong (C: ':' or '?') as getopt would, for
 * long options too: one that takes no argument given one, an ambiguous
 * abbreviation. */
void options_complain(FILE *err, const char *prog, int c, char **argv, const struct option *longopts);

_Noreturn void options_finish(enum parse_result r, const char *prog, void (*usage)(FILE *out),
	int bad_usage, int write_failed);

#endif
