/* SPDX-License-Identifier: MIT */
/*
 * Command-line parsing of redhawk-shminfo and redhawk-shmclean: defaults,
 * every option, and the messages and result of bad usage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "options.h"

static char errbuf[512];

#define ARGV(...) ((char *[]){ __VA_ARGS__, NULL })
#define ARGC(v) ((int)(sizeof(v) / sizeof(v[0])) - 1)

static enum parse_result info(struct shminfo_options *o, int argc, char **argv)
{
	FILE *err = fmemopen(errbuf, sizeof(errbuf), "w");
	enum parse_result r = shminfo_parse(argc, argv, o, err);
	fclose(err);
	return r;
}

static enum parse_result clean(struct shmclean_options *o, int argc, char **argv)
{
	FILE *err = fmemopen(errbuf, sizeof(errbuf), "w");
	enum parse_result r = shmclean_parse(argc, argv, o, err);
	fclose(err);
	return r;
}

#define INFO(o, ...) ({ char *v_[] = { "redhawk-shminfo", __VA_ARGS__ NULL }; \
	info(o, ARGC(v_), v_); })
#define CLEAN(o, ...) ({ char *v_[] = { "redhawk-shmclean", __VA_ARGS__ NULL }; \
	clean(o, ARGC(v_), v_); })

static void test_options_shminfo_defaults(void **state)
{
	(void)state;
	struct shminfo_options o;
	unsetenv("RH_SHM_DIR");
	assert_int_equal(INFO(&o, ), PARSE_OK);
	assert_string_equal(o.dir, "/dev/shm");
	assert_int_equal(o.all, 0);
	assert_int_equal(o.breakdown_on, 0);
	assert_int_equal(o.output, OUT_TEXT);
	assert_int_equal(o.fmt.size, SIZE_AUTO);
	assert_int_equal(o.fmt.numeric_ids, 0);
	assert_int_equal(o.first_arg, 1);

	setenv("RH_SHM_DIR", "/tmp/heaps", 1);
	assert_int_equal(INFO(&o, ), PARSE_OK);
	assert_string_equal(o.dir, "/tmp/heaps");
	/* --dir wins over the environment. */
	assert_int_equal(INFO(&o, "--dir=/x", ), PARSE_OK);
	assert_string_equal(o.dir, "/x");
	assert_int_equal(INFO(&o, "-d", "/y", ), PARSE_OK);
	assert_string_equal(o.dir, "/y");
	setenv("RH_SHM_DIR", "", 1);
	assert_int_equal(INFO(&o, ), PARSE_OK);
	assert_string_equal(o.dir, "/dev/shm");
	unsetenv("RH_SHM_DIR");
}

static void test_options_shminfo_flags_and_heaps(void **state)
{
	(void)state;
	struct shminfo_options o;
	assert_int_equal(INFO(&o, "-al", "--format=k", "heap-1", "heap-2", ), PARSE_OK);
	assert_int_equal(o.all, 1);
	assert_int_equal(o.fmt.numeric_ids, 1);
	assert_int_equal(o.fmt.size, SIZE_KIB);
	assert_int_equal(o.first_arg, 3);
	/* GNU getopt permutes: options after HEAPs count too. */
	assert_int_equal(INFO(&o, "heap-1", "--all", ), PARSE_OK);
	assert_int_equal(o.all, 1);
	assert_int_equal(o.first_arg, 2);
	assert_int_equal(INFO(&o, "--json", ), PARSE_OK);
	assert_int_equal(o.output, OUT_JSON);
	assert_int_equal(INFO(&o, "--prometheus", ), PARSE_OK);
	assert_int_equal(o.output, OUT_PROMETHEUS);
}

static void test_options_shminfo_breakdown_count(void **state)
{
	(void)state;
	struct shminfo_options o;
	assert_int_equal(INFO(&o, "-b", ), PARSE_OK);
	assert_int_equal(o.breakdown_on, 1);
	assert_int_equal(o.breakdown, 10);
	assert_int_equal(INFO(&o, "-b3", ), PARSE_OK);
	assert_int_equal(o.breakdown, 3);
	assert_int_equal(INFO(&o, "--breakdown=25", ), PARSE_OK);
	assert_int_equal(o.breakdown, 25);
	/* An optional argument must be attached: "-b 5" lists heap "5". */
	assert_int_equal(INFO(&o, "-b", "5", ), PARSE_OK);
	assert_int_equal(o.breakdown, 10);
	assert_int_equal(o.first_arg, 2);
	assert_int_equal(INFO(&o, "--breakdown=x", ), PARSE_USAGE);
	assert_string_equal(errbuf, "redhawk-shminfo: invalid breakdown count 'x'\n");
	assert_int_equal(INFO(&o, "--breakdown=-1", ), PARSE_USAGE);
	assert_int_equal(INFO(&o, "--breakdown=3k", ), PARSE_USAGE);
}

static void test_options_shminfo_bad_usage(void **state)
{
	(void)state;
	struct shminfo_options o;
	assert_int_equal(INFO(&o, "--format=m", ), PARSE_USAGE);
	assert_string_equal(errbuf, "redhawk-shminfo: invalid format 'm'\n");
	assert_int_equal(INFO(&o, "--json", "--prometheus", ), PARSE_USAGE);
	assert_non_null(strstr(errbuf, "exclude each other"));
	assert_int_equal(INFO(&o, "-x", ), PARSE_USAGE);
	assert_string_equal(errbuf, "redhawk-shminfo: invalid option -- 'x'\n");
	assert_int_equal(INFO(&o, "--bogus", ), PARSE_USAGE);
	assert_string_equal(errbuf, "redhawk-shminfo: unrecognized option '--bogus'\n");
	assert_int_equal(INFO(&o, "-d", ), PARSE_USAGE);
	assert_string_equal(errbuf, "redhawk-shminfo: option requires an argument -- 'd'\n");
	assert_int_equal(INFO(&o, "--dir", ), PARSE_USAGE);
	assert_string_equal(errbuf, "redhawk-shminfo: option '--dir' requires an argument\n");
	assert_int_equal(INFO(&o, "-h", ), PARSE_HELP);
	assert_int_equal(INFO(&o, "--help", "--bogus", ), PARSE_HELP);
	assert_int_equal(INFO(&o, "--version", ), PARSE_VERSION);
	assert_int_equal(INFO(&o, "-V", ), PARSE_VERSION);
}

static void test_options_shmclean(void **state)
{
	(void)state;
	struct shmclean_options o;
	unsetenv("RH_SHM_DIR");
	assert_int_equal(CLEAN(&o, ), PARSE_OK);
	assert_string_equal(o.dir, "/dev/shm");
	assert_int_equal(o.force | o.dry_run | o.verbose, 0);
	assert_int_equal(o.first_arg, 1);
	assert_int_equal(CLEAN(&o, "-fnv", "heap-1", ), PARSE_OK);
	assert_int_equal(o.force, 1);
	assert_int_equal(o.dry_run, 1);
	assert_int_equal(o.verbose, 1);
	assert_int_equal(o.first_arg, 2);
	assert_int_equal(CLEAN(&o, "--force", "--dry-run", "--verbose", "--dir=/d", "a", "b", ), PARSE_OK);
	assert_int_equal(o.force + o.dry_run + o.verbose, 3);
	assert_string_equal(o.dir, "/d");
	assert_int_equal(o.first_arg, 5);
	/* "--" ends the options: a file may be called -f. */
	assert_int_equal(CLEAN(&o, "--", "-f", ), PARSE_OK);
	assert_int_equal(o.force, 0);
	assert_int_equal(o.first_arg, 2);
	assert_int_equal(CLEAN(&o, "-a", ), PARSE_USAGE);
	assert_string_equal(errbuf, "redhawk-shmclean: invalid option -- 'a'\n");
	assert_int_equal(CLEAN(&o, "--help", ), PARSE_HELP);
	assert_int_equal(CLEAN(&o, "--version", ), PARSE_VERSION);
}

static void test_options_usage_shape(void **state)
{
	(void)state;
	char *s = NULL;
	size_t n;
	FILE *out = open_memstream(&s, &n);
	shminfo_usage(out);
	fclose(out);
	/* util-linux: Usage, synopsis, one sentence, Options, help and version last. */
	assert_memory_equal(s, "\nUsage:\n redhawk-shminfo [options] [HEAP...]\n", 39);
	char *help = strstr(s, " -h, --help"), *version = strstr(s, " -V, --version");
	assert_non_null(help);
	assert_true(version > help);
	assert_non_null(strstr(version, "redhawk-shminfo(1)"));
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options_shminfo_defaults),
		cmocka_unit_test(test_options_shminfo_flags_and_heaps),
		cmocka_unit_test(test_options_shminfo_breakdown_count),
		cmocka_unit_test(test_options_shminfo_bad_usage),
		cmocka_unit_test(test_options_shmclean),
		cmocka_unit_test(test_options_usage_shape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
