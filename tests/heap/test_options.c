/* SPDX-License-Identifier: MIT */
/*
 * The RH_SHMALLOC_* table: defaults, every variable's parser, and the rule
 * for bad values (one line on stderr naming the variable, default kept),
 * both on options_load directly and end to end in a separate program.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "heap.h"
#include "peer.h"
#include "testutil.h"
#include <redhawk/shm.h>

static const char *const vars[] = {
	"RH_SHMALLOC", "RH_SHMALLOC_POLICY", "RH_SHMALLOC_THREAD_NUM_POOLS",
	"RH_SHMALLOC_CPUS_PER_POOL", "RH_SHMALLOC_SUPERBLOCK_SIZE", "RH_SHMALLOC_METRICS",
	"RH_SHMALLOC_MODE", "RH_SHMALLOC_TRACE_DEPTH", "RH_SHMALLOC_MIN_SIZE",
	"RH_SHMALLOC_KEEP", "RH_SHMALLOC_PRIVATE_SIZE",
};

static void clear_env(void)
{
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

/* Loads the options with one variable set; returns what went to stderr. */
static const char *load_with(struct options *opt, const char *name, const char *value)
{
	static char out[4096];
	char path[300];
	snprintf(path, sizeof(path), "%s/stderr", test_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	int saved = dup(2);
	dup2(fd, 2);
	clear_env();
	if (name)
		setenv(name, value, 1);
	options_load(opt);
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
	out[n > 0 ? n : 0] = 0;
	close(fd);
	unlink(path);
	if (name)
		unsetenv(name);
	return out;
}

static unsigned lines(const char *s)
{
	unsigned n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_options_defaults(void **state)
{
	(void)state;
	struct options o;
	const char *err = load_with(&o, NULL, NULL);
	assert_string_equal(err, "");
	assert_true(o.enabled);
	assert_int_equal(o.policy, POLICY_THREAD);
	assert_in_range(o.thread_pools, 1, 8);
	assert_int_equal(o.cpus_per_pool, 1);
	assert_int_equal(o.superblock_size, 2 << 20);
	assert_false(o.metrics);
	assert_int_equal(o.mode, 0600);
	assert_true(o.trace_depth >= 8);
	assert_int_equal(o.min_size, 0);
	assert_false(o.keep);
	assert_string_equal(o.dir, test_dir); /* RH_SHM_DIR, from setup */
}

static void test_options_values_parsed(void **state)
{
	(void)state;
	struct options o;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	assert_string_equal(load_with(&o, "RH_SHMALLOC_MODE", "0640"), "");
	assert_int_equal(o.mode, 0640);
	load_with(&o, "RH_SHMALLOC_MODE", "644"); /* octal, as chmod takes it */
	assert_int_equal(o.mode, 0644);
	assert_string_equal(load_with(&o, "RH_SHMALLOC_SUPERBLOCK_SIZE", "4M"), "");
	assert_int_equal(o.superblock_size, 4 << 20);
	load_with(&o, "RH_SHMALLOC_SUPERBLOCK_SIZE", "3000001");
	assert_true(o.superblock_size >= 3000001 && o.superblock_size < 3000001 + page);
	assert_int_equal(o.superblock_size % page, 0);
	load_with(&o, "RH_SHMALLOC_SUPERBLOCK_SIZE", "8388608");
	assert_int_equal(o.superblock_size, 8 << 20);
	load_with(&o, "RH_SHMALLOC_POLICY", "cpu");
	assert_int_equal(o.policy, POLICY_CPU);
	load_with(&o, "RH_SHMALLOC_POLICY", "thread");
	assert_int_equal(o.policy, POLICY_THREAD);
	load_with(&o, "RH_SHMALLOC_THREAD_NUM_POOLS", "3");
	assert_int_equal(o.thread_pools, 3);
	load_with(&o, "RH_SHMALLOC_CPUS_PER_POOL", "2");
	assert_int_equal(o.cpus_per_pool, 2);
	load_with(&o, "RH_SHMALLOC_TRACE_DEPTH", "0");
	assert_int_equal(o.trace_depth, 0);
	load_with(&o, "RH_SHMALLOC_TRACE_DEPTH", "20");
	assert_int_equal(o.trace_depth, 20);
	load_with(&o, "RH_SHMALLOC_MIN_SIZE", "4096");
	assert_int_equal(o.min_size, 4096);
	load_with(&o, "RH_SHMALLOC_MIN_SIZE", "4K");
	assert_int_equal(o.min_size, 4096);
	load_with(&o, NULL, NULL);
	assert_int_equal(o.private_size, 8 << 20);
	load_with(&o, "RH_SHMALLOC_PRIVATE_SIZE", "64M");
	assert_int_equal(o.private_size, 64 << 20);
	load_with(&o, "RH_SHMALLOC_PRIVATE_SIZE", "0");
	assert_int_equal(o.private_size, 0);
	load_with(&o, "RH_SHMALLOC_KEEP", "1");
	assert_true(o.keep);
	load_with(&o, "RH_SHMALLOC_KEEP", "0");
	assert_false(o.keep);
	load_with(&o, "RH_SHMALLOC_METRICS", "1");
	assert_true(o.metrics);
	load_with(&o, "RH_SHMALLOC_METRICS", "disable");
	assert_false(o.metrics);
	static const char *const off[] = { "disable", "0", "false", "no" };
	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		assert_string_equal(load_with(&o, "RH_SHMALLOC", off[i]), "");
		assert_false(o.enabled);
	}
	load_with(&o, "RH_SHMALLOC", "enable");
	assert_true(o.enabled);
}

static bool same(const struct options *a, const struct options *b)
{
	return a->enabled == b->enabled && a->policy == b->policy &&
	       a->thread_pools == b->thread_pools && a->cpus_per_pool == b->cpus_per_pool &&
	       a->superblock_size == b->superblock_size && a->metrics == b->metrics &&
	       a->mode == b->mode && a->trace_depth == b->trace_depth &&
	       a->min_size == b->min_size && a->private_size == b->private_size && a->keep == b->keep &&
	       strcmp(a->dir, b->dir) == 0;
}

/* A bad value: one line on stderr that names the variable, and the default. */
static void test_options_bad_values_warn_and_keep_default(void **state)
{
	(void)state;
	static const struct { const char *name, *value; } bad[] = {
		{ "RH_SHMALLOC", "maybe" },
		{ "RH_SHMALLOC_POLICY", "bogus" },
		{ "RH_SHMALLOC_THREAD_NUM_POOLS", "0" },
		{ "RH_SHMALLOC_THREAD_NUM_POOLS", "two" },
		{ "RH_SHMALLOC_CPUS_PER_POOL", "-1" },
		{ "RH_SHMALLOC_SUPERBLOCK_SIZE", "lots" },
		{ "RH_SHMALLOC_SUPERBLOCK_SIZE", "-2097152" },
		{ "RH_SHMALLOC_SUPERBLOCK_SIZE", "99999999999999999999999" },
		{ "RH_SHMALLOC_SUPERBLOCK_SIZE", "2Q" },
		{ "RH_SHMALLOC_MODE", "abc" },
		{ "RH_SHMALLOC_MODE", "0999" },
		{ "RH_SHMALLOC_MODE", "01777" },
		{ "RH_SHMALLOC_MODE", "0640x" },
		{ "RH_SHMALLOC_TRACE_DEPTH", "-3" },
		{ "RH_SHMALLOC_TRACE_DEPTH", "100000" },
		{ "RH_SHMALLOC_MIN_SIZE", "12Q" },
		{ "RH_SHMALLOC_PRIVATE_SIZE", "-1" },
		{ "RH_SHMALLOC_PRIVATE_SIZE", "big" },
		{ "RH_SHMALLOC_PRIVATE_SIZE", "4096" },
		{ "RH_SHMALLOC_KEEP", "sometimes" },
	};
	struct options def, o;
	load_with(&def, NULL, NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = load_with(&o, bad[i].name, bad[i].value);
		char needle[128];
		snprintf(needle, sizeof(needle), "%s=", bad[i].name);
		if (lines(err) != 1 || !strstr(err, needle) || strncmp(err, "redhawk-shm: ", 13))
			fail_msg("%s=%s: expected one 'redhawk-shm: %s...' line, got '%s'",
				 bad[i].name, bad[i].value, needle, err);
		if (!same(&o, &def))
			fail_msg("%s=%s changed the options", bad[i].name, bad[i].value);
	}
}

/* End to end: a program with a bad mode warns once, however much it
 * allocates, and makes its heap 0600; the superblock size is honoured. */
static void test_options_bad_value_reported_once_by_program(void **state)
{
	(void)state;
	static const char *const env[] = { "RH_SHMALLOC_MODE=rw-r-----",
					   "RH_SHMALLOC_SUPERBLOCK_SIZE=8M", NULL };
	char errpath[300], name[320], reply[256], buf[4096];
	struct stat st;
	struct peer p;
	snprintf(errpath, sizeof(errpath), "%s/peer.err", test_dir);
	struct peer_opts o = { .env = env, .stderr_path = errpath };
	assert_int_equal(peer_start(&p, &o), 0);
	for (unsigned i = 0; i < 20; i++)
		assert_int_equal(peer_cmd(&p, NULL, 0, "alloc %u 1", 1000 + i * 10000), 0);
	assert_int_equal(peer_cmd(&p, reply, sizeof(reply), "stats"), 0);
	unsigned long long used, size, fails;
	assert_int_equal(sscanf(reply, "ok %llu %llu %llu", &used, &size, &fails), 3);
	/* One superblock of 8 MiB (less its header) holds 2 MB of blocks. */
	if (size <= 4 << 20 || size > 8 << 20)
		fail_msg("RH_SHMALLOC_SUPERBLOCK_SIZE=8M gave a heap of %llu bytes", size);
	snprintf(name, sizeof(name), "%s/heap-%d", test_dir, (int)p.pid);
	assert_int_equal(stat(name, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(peer_finish(&p), 0);

	int fd = open(errpath, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(errpath);
	buf[n > 0 ? n : 0] = 0;
	if (lines(buf) != 1 || !strstr(buf, "RH_SHMALLOC_MODE"))
		fail_msg("expected one line about RH_SHMALLOC_MODE on stderr, got '%s'", buf);
}

/* Runs a peer that allocates and frees once, with env; returns its stderr. */
static const char *peer_stderr(const char *const *env)
{
	static char buf[8192];
	char errpath[300];
	struct peer p;
	snprintf(errpath, sizeof(errpath), "%s/peer.err", test_dir);
	struct peer_opts o = { .env = env, .stderr_path = errpath };
	assert_int_equal(peer_start(&p, &o), 0);
	assert_int_equal(peer_cmd(&p, NULL, 0, "alloc 100 1"), 0);
	assert_int_equal(peer_cmd(&p, NULL, 0, "free 0"), 0);
	assert_int_equal(peer_finish(&p), 0);
	int fd = open(errpath, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(errpath);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

/* RH_SHMALLOC_METRICS prints every counter at exit; without it, nothing. */
static void test_options_metrics_printed_at_exit(void **state)
{
	(void)state;
	static const char *const on[] = { "RH_SHMALLOC_METRICS=1", NULL };
	static const char *const off[] = { "RH_SHMALLOC_METRICS=disable", NULL };
	static const char *const labels[] = {
#define LABEL(name, text) text,
		RH_SHM_STATS(LABEL)
#undef LABEL
	};
	const char *out = peer_stderr(on);
	for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
		if (!strstr(out, labels[i]))
			fail_msg("RH_SHMALLOC_METRICS=1: '%s' missing from stderr:\n%s", labels[i], out);
	assert_string_equal(peer_stderr(off), "");
	assert_string_equal(peer_stderr(NULL), "");
}

static int setup(void **state)
{
	(void)state;
	umask(022);
	test_dir_make();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options_defaults),
		cmocka_unit_test(test_options_values_parsed),
		cmocka_unit_test(test_options_bad_values_warn_and_keep_default),
		cmocka_unit_test(test_options_bad_value_reported_once_by_program),
		cmocka_unit_test(test_options_metrics_printed_at_exit),
	};
	return cmocka_run_group_tests(tests, setup, test_teardown);
}
