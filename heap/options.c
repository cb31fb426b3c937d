/* SPDX-License-Identifier: MIT */
/*
 * The RH_SHMALLOC_* environment variables: a table of name, default and
 * parser. Read by walking environ (getenv may not be safe this early and we
 * must not allocate); a malformed value is reported once and the default kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heap.h"

extern char **environ;

struct options rh_options;

void rh_warn(const char *fmt, ...)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "redhawk-shm: ");
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* Never past the file size limit (ulimit -f): the kernel would end
	 * the program with SIGXFSZ for our message. A regular file is written
	 * at its end (O_APPEND) or at the descriptor's offset. */
	int saved = errno;
	struct rlimit rl;
	struct stat st;
	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
		int fl = fcntl(STDERR_FILENO, F_GETFL);
		off_t at = fl >= 0 && !(fl & O_APPEND) ? lseek(STDERR_FILENO, 0, SEEK_CUR) : st.st_size;
		if (at < 0 || (uint64_t)at + (uint64_t)n > (uint64_t)rl.rlim_cur) {
			errno = saved;
			return;
		}
	}
	ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
	(void)w;
	errno = saved;
}

void rh_assert_fail(const char *expr, const char *file, int line)
{
	rh_warn("internal error: %s (%s:%d)", expr, file, line);
	abort();
}

static const char *env_value(const char *name)
{
	size_t len = strlen(name);
	if (!environ)
		return NULL;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
			return *e + len + 1;
	return NULL;
}

/* Parses a size: decimal digits with an optional K, M or G suffix (KiB...). */
static int parse_size(const char *s, unsigned long long *out)
{
	char *end;
	if (!*s || *s == '-')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end == 'i' && shift && end[1] == 'B')
		end += 2;
	else if (*end == 'B' && shift)
		end++;
	if (*end || (shift && v > (~0ULL >> shift)))
		return -1;
	*out = v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned base, unsigned long long lo,
	unsigned long long hi, unsigned long long *out)
{
	char *end;
	if (!*s || *s == '-')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, (int)base);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const no[] = { "0", "false", "no", "off", "disable", "disabled" };
	static const char *const yes[] = { "1", "true", "yes", "on", "enable", "enabled" };
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
	return -1;
}

static unsigned online_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static void bad(const char *name, const char *value, const char *expect)
{
	rh_warn("%s=%s: %s; using the default", name, value, expect);
}

void options_load(struct options *opt)
{
	const char *v;
	unsigned long long n;
	unsigned cpus = online_cpus();
	size_t page = os_page_size();

	memset(opt, 0, sizeof(*opt));
	opt->enabled = true;
	opt->policy = POLICY_THREAD;
	opt->thread_pools = cpus < 8 ? cpus : 8;
	opt->cpus_per_pool = 1;
	opt->superblock_size = 2u << 20;
	opt->mode = 0600;
	opt->trace_depth = RH_DEFAULT_TRACE_DEPTH;
	opt->private_size = RH_DEFAULT_PRIVATE_SIZE;
	strcpy(opt->dir, "/dev/shm");

	if ((v = env_value("RH_SHM_DIR")) && *v) {
		if (strlen(v) < sizeof(opt->dir) - RH_HEAP_NAME_LEN)
			strcpy(opt->dir, v);
		else
			bad("RH_SHM_DIR", v, "path too long");
	}
	if ((v = env_value("RH_SHMALLOC")) && *v) {
		bool b;
		if (parse_bool(v, &b) == 0)
			opt->enabled = b;
		else
			bad("RH_SHMALLOC", v, "expected 'disable' or 'enable'");
	}
	if ((v = env_value("RH_SHMALLOC_POLICY")) && *v) {
		if (strcmp(v, "thread") == 0)
			opt->policy = POLICY_THREAD;
		else if (strcmp(v, "cpu") == 0)
			opt->policy = POLICY_CPU;
		else
			bad("RH_SHMALLOC_POLICY", v, "expected 'thread' or 'cpu'");
	}
	if ((v = env_value("RH_SHMALLOC_THREAD_NUM_POOLS")) && *v) {
		if (parse_uint(v, 10, 1, RH_MAX_POOLS, &n) == 0)
			opt->thread_pools = (unsigned)n;
		else
			bad("RH_SHMALLOC_THREAD_NUM_POOLS", v, "expected a number from 1 to 64");
	}
	if ((v = env_value("RH_SHMALLOC_CPUS_PER_POOL")) && *v) {
		if (parse_uint(v, 10, 1, 4096, &n) == 0)
			opt->cpus_per_pool = (unsigned)n;
		else
			bad("RH_SHMALLOC_CPUS_PER_POOL", v, "expected a number from 1 to 4096");
	}
	if ((v = env_value("RH_SHMALLOC_SUPERBLOCK_SIZE")) && *v) {
		/* Page descriptors index spans with 16 bits: at most 65535 pages. */
		unsigned long long max = 65535ULL * page;
		if (parse_size(v, &n) == 0 && n >= (1u << 20) && n <= max)
			opt->superblock_size = (size_t)((n + page - 1) & ~(unsigned long long)(page - 1));
		else
			bad("RH_SHMALLOC_SUPERBLOCK_SIZE", v, "expected a size from 1M to 255M");
	}
	if ((v = env_value("RH_SHMALLOC_METRICS")))
		opt->metrics = strcmp(v, "disable") != 0;
	if ((v = env_value("RH_SHMALLOC_MODE")) && *v) {
		if (parse_uint(v, 8, 0, 0777, &n) == 0)
			opt->mode = (unsigned)n;
		else
			bad("RH_SHMALLOC_MODE", v, "expected octal permission bits such as 0640");
	}
	if ((v = env_value("RH_SHMALLOC_TRACE_DEPTH")) && *v) {
		if (parse_uint(v, 10, 0, RH_MAX_TRACE_DEPTH, &n) == 0)
			opt->trace_depth = (unsigned)n;
		else
			bad("RH_SHMALLOC_TRACE_DEPTH", v, "expected a number from 0 to 64");
	}
	if ((v = env_value("RH_SHMALLOC_MIN_SIZE")) && *v) {
		if (parse_size(v, &n) == 0)
			opt->min_size = (size_t)n;
		else
			bad("RH_SHMALLOC_MIN_SIZE", v, "expected a size in bytes");
	}
	if ((v = env_value("RH_SHMALLOC_PRIVATE_SIZE")) && *v) {
		/* Each such block is a mapping of its own: not for small ones. */
		if (parse_size(v, &n) == 0 && (n == 0 || n >= (1u << 20))) {
			opt->private_size = (size_t)n;
			opt->private_size_set = true;
		} else
			bad("RH_SHMALLOC_PRIVATE_SIZE", v, "expected 0 (none) or a size of at least 1M");
	}
	if ((v = env_value("RH_SHMALLOC_KEEP")) && *v) {
		bool b;
		if (parse_bool(v, &b) == 0)
			opt->keep = b;
		else
			bad("RH_SHMALLOC_KEEP", v, "expected 1 or 0");
	}
	if ((v = env_value("RH_SHMALLOC_LEAK_SCAN")) && *v) {
		bool b;
		if (parse_bool(v, &b) == 0)
			opt->leak_scan = b;
		else
			bad("RH_SHMALLOC_LEAK_SCAN", v, "expected 1 or 0");
	}
}
