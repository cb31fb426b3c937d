/* SPDX-License-Identifier: MIT */
/*
 * Command lines of redhawk-shminfo and redhawk-shmclean, parsed without side
 * effects other than messages on the given stream, so that tests can check
 * every case; the mains act on the result.
 */
#ifndef RH_TOOLS_OPTIONS_H
#define RH_TOOLS_OPTIONS_H

#include <stddef.h>
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

#endif
