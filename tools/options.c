/* SPDX-License-Identifier: MIT */
/*
 * Option parsing and usage texts of the tools, in util-linux's shape. getopt's
 * own messages are turned off (opterr = 0) and written here instead, to the
 * stream the caller gives, with the program name in front.
 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *default_dir(void)
{
	const char *env = getenv("RH_SHM_DIR");
	return env && *env ? env : "/dev/shm";
}

/* getopt's complaint, in its words. */
void options_complain(FILE *err, const char *prog, int c, char **argv, const struct option *longopts)
{
	const char *arg = argv[optind - 1];
	/* A bad byte among short options: getopt may not have moved past
	 * their word yet, so the word before is not the one at fault. A long
	 * option given an argument it does not take reports its own value. */
	int long_val = 0;
	for (const struct option *o = longopts; o->name; o++)
		long_val |= optopt && o->val == optopt;
	if (c != ':' && optopt && !long_val) {
		fprintf(err, "%s: invalid option -- '%c'\n", prog, optopt);
		return;
	}
	if (arg[0] == '-' && arg[1] == '-' && c != ':') {
		const char *name = arg + 2;
		size_t len = strcspn(name, "=");
		unsigned matches = 0;
		const struct option *exact = NULL;
		for (const struct option *o = longopts; o->name; o++)
			if (!strncmp(o->name, name, len)) {
				matches++;
				if (strlen(o->name) == len)
					exact = o;
			}
		if (matches > 1 && !exact) {
			fprintf(err, "%s: option '%s' is ambiguous; possibilities:", prog, arg);
			for (const struct option *o = longopts; o->name; o++)
				if (!strncmp(o->name, name, len))
					fprintf(err, " '--%s'", o->name);
			putc('\n', err);
			return;
		}
		if (matches && name[len] == '=') {
			for (const struct option *o = longopts; o->name; o++)
				if (!strncmp(o->name, name, len) && (o == exact || !exact)) {
					fprintf(err, "%s: option '--%s' doesn't allow an argument\n", prog, o->name);
					return;
				}
		}
		fprintf(err, "%s: unrecognized option '%s'\n", prog, arg);
		return;
	}
	if (c == ':') {
		const struct option *o = longopts;
		if (arg[0] == '-' && arg[1] == '-')
			for (; o->name && strncmp(o->name, arg + 2, strlen(arg + 2)); o++)
				;
		if (arg[0] == '-' && arg[1] == '-' && o->name)
			fprintf(err, "%s: option '--%s' requires an argument\n", prog, o->name);
		else if (arg[0] == '-' && arg[1] == '-')
			fprintf(err, "%s: option '%s' requires an argument\n", prog, arg);
		else
			fprintf(err, "%s: option requires an argument -- '%c'\n", prog, optopt);
	} else if (optopt > ' ' && optopt < 127) {
		fprintf(err, "%s: invalid option -- '%c'\n", prog, optopt);
	} else {
		fprintf(err, "%s: unrecognized option '%s'\n", prog, arg);
	}
}

void shminfo_usage(FILE *out)
{
	fputs("\nUsage:\n"
		" redhawk-shminfo [options] [HEAP...]\n"
		"\nShow the shared-memory filesystem and the REDHAWK heaps in it.\n"
		"\nOptions:\n"
		" -a, --all               also list other shared-memory files\n"
		" -b, --breakdown[=N]     show each heap's N call sites holding the most\n"
		"                           live memory (default 10)\n"
		" -d, --dir=DIR           read heaps from DIR (default: $RH_SHM_DIR, else /dev/shm)\n"
		" -l                      do not look up user and group names\n"
		"     --format=FORMAT     print sizes as auto (7.7G), b (bytes) or k (KiB)\n"
		"     --json              print one JSON document, sizes in bytes\n"
		"     --prometheus        print metrics in the Prometheus text format\n"
		"\n"
		" -h, --help              display this help\n"
		" -V, --version           display version\n"
		"\nFor more details see redhawk-shminfo(1).\n", out);
}

enum parse_result shminfo_parse(int argc, char **argv, struct shminfo_options *o, FILE *err)
{
	static const char *prog = "redhawk-shminfo";
	enum { OPT_FORMAT = 256, OPT_JSON, OPT_PROMETHEUS };
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "breakdown", optional_argument, NULL, 'b' },
		{ "dir", required_argument, NULL, 'd' },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "prometheus", no_argument, NULL, OPT_PROMETHEUS },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	memset(o, 0, sizeof(*o));
	o->breakdown = 10;
	optind = 0;
	opterr = 0;
	int c, outputs = 0;
	while ((c = getopt_long(argc, argv, ":ab::d:hlV", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			o->all = 1;
			break;
		case 'b': {
			o->breakdown_on = 1;
			if (!optarg)
				break;
			char *end;
			errno = 0;
			unsigned long long n = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || n > SIZE_MAX) {
				fprintf(err, "%s: invalid breakdown count '%s'\n", prog, optarg);
				return PARSE_USAGE;
			}
			o->breakdown = (size_t)n;
			break;
		}
		case 'd':
			o->dir = optarg;
			break;
		case 'l':
			o->fmt.numeric_ids = 1;
			break;
		case OPT_FORMAT:
			if (fmt_parse_size_format(optarg, &o->fmt.size) != 0) {
				fprintf(err, "%s: invalid format '%s'\n", prog, optarg);
				return PARSE_USAGE;
			}
			break;
		case OPT_JSON:
			o->output = OUT_JSON;
			outputs++;
			break;
		case OPT_PROMETHEUS:
			o->output = OUT_PROMETHEUS;
			outputs++;
			break;
		case 'h':
			return PARSE_HELP;
		case 'V':
			return PARSE_VERSION;
		default:
			options_complain(err, prog, c, argv, longopts);
			return PARSE_USAGE;
		}
	}
	if (outputs > 1) {
		fprintf(err, "%s: --json and --prometheus exclude each other\n", prog);
		return PARSE_USAGE;
	}
	if (!o->dir)
		o->dir = default_dir();
	o->first_arg = optind;
	return PARSE_OK;
}

void shmclean_usage(FILE *out)
{
	fputs("\nUsage:\n"
		" redhawk-shmclean [options] [NAME...]\n"
		"\nRemove orphaned REDHAWK heaps, or the named shared-memory files.\n"
		"\nOptions:\n"
		" -d, --dir=DIR       work in DIR (default: $RH_SHM_DIR, else /dev/shm)\n"
		" -f, --force         remove the named files whatever they are\n"
		" -n, --dry-run       say what would be removed; remove nothing\n"
		" -v, --verbose       print what each heap still held, by call site\n"
		"\n"
		" -h, --help          display this help\n"
		" -V, --version       display version\n"
		"\nNAMEs are relative to the heap folder. Without NAMEs, every orphaned\n"
		"heap is removed.\n"
		"\nFor more details see redhawk-shmclean(1).\n", out);
}

enum parse_result shmclean_parse(int argc, char **argv, struct shmclean_options *o, FILE *err)
{
	static const char *prog = "redhawk-shmclean";
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	memset(o, 0, sizeof(*o));
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":d:fhnvV", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': o->dir = optarg; break;
		case 'f': o->force = 1; break;
		case 'n': o->dry_run = 1; break;
		case 'v': o->verbose = 1; break;
		case 'h': return PARSE_HELP;
		case 'V': return PARSE_VERSION;
		default:
			options_complain(err, prog, c, argv, longopts);
			return PARSE_USAGE;
		}
	}
	if (!o->dir)
		o->dir = default_dir();
	o->first_arg = optind;
	return PARSE_OK;
}

void options_finish(enum parse_result r, const char *prog, void (*usage)(FILE *out),
	int bad_usage, int write_failed)
{
	switch (r) {
	case PARSE_HELP:
		usage(stdout);
		break;
	case PARSE_VERSION:
		printf("%s from redhawk-shm %s\n", prog, RH_VERSION);
		break;
	default:
		fprintf(stderr, "Try '%s --help' for more information.\n", prog);
		exit(bad_usage);
	}
	/* A full disk or a closed pipe must not pass for success. */
	exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : write_failed);
}
