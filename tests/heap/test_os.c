/* SPDX-License-Identifier: MIT */
/*
 * os.c: pages committed by writing zeros over a hole (os_commit_fill). They
 * must read as zeros, be counted by the file, come mapped (so the program's
 * first writes do not fault page by page), never raise SIGXFSZ past the
 * file size limit, and be reserved instead where writing is refused. And a
 * process's start time and parent read from /proc (os_proc_stat), which a
 * name of the process's own choosing must not mislead.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "heap.h"
#include "testutil.h"

#define MIB (1u << 20)

static int fd = -1;
static char *map;

static int setup(void **state)
{
	(void)state;
	char path[300];
	test_dir_make();
	snprintf(path, sizeof(path), "%s/file", test_dir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, 4 * MIB) != 0)
		return -1;
	map = mmap(NULL, 4 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return map == MAP_FAILED ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	munmap(map, 4 * MIB);
	close(fd);
	test_dir_remove();
	return 0;
}

static long minor_faults(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* The kernel's fault-around window, where debugfs shows it; 64 KiB, its
 * default since Linux 3.15, otherwise. */
static long fault_around_bytes(void)
{
	char buf[32] = "";
	FILE *f = fopen("/sys/kernel/debug/fault_around_bytes", "r");
	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	return buf[0] ? atol(buf) : 65536;
}

static bool on_tmpfs(int f)
{
	struct statfs sf;
	return fstatfs(f, &sf) == 0 && sf.f_type == TMPFS_MAGIC;
}

static void test_os_fill_is_zeros_counted_and_mapped(void **state)
{
	(void)state;
	struct stat st;
	if (!on_tmpfs(fd))
		skip();  /* the test folder fell back to a disk (no /dev/shm) */
	/* A 2 MiB hole between 1 and 3 MiB, its first page written over. */
	memset(map + MIB - 4096, 0xa5, 4096);
	assert_int_equal(os_commit_fill(fd, MIB, 2 * MIB, map + MIB), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_blocks * 512, 2 * MIB + 4096);
	assert_int_equal(lseek(fd, MIB, SEEK_DATA), MIB);
	assert_int_equal(lseek(fd, MIB, SEEK_HOLE), 3 * MIB);
	assert_int_equal(map[MIB - 1], (char)0xa5); /* the page before is untouched */
	static char buf[2 * MIB];
	memset(buf, 1, sizeof(buf));
	assert_int_equal(pread(fd, buf, sizeof(buf), MIB), sizeof(buf));
	for (size_t k = 0; k < sizeof(buf); k++)
		if (buf[k])
			fail_msg("byte %zu of the fill is %d", k, buf[k]);
	/* Writes, as a program's first use: each would fault on pages that
	 * are only reserved. */
	long before = minor_faults();
	for (size_t k = MIB; k < 3 * MIB; k += 4096)
		map[k] = 1;
	long faults = minor_faults() - before;
	if (fault_around_bytes() >= 65536)  /* the fill reads a byte per 64 KiB */
		assert_in_range(faults, 0, (2 * MIB / 4096) / 8);
	/* An odd length, just short of the pieces written at once: the bytes
	 * after it are kept. */
	uint64_t at = 3 * MIB + 4096, len = 63 * 4096 + 100;
	memset(map + at + len, 0xa5, 200);
	assert_int_equal(os_commit_fill(fd, at, len, map + at), 0);
	for (unsigned i = 0; i < 200; i++)
		assert_int_equal(map[at + len + i], (char)0xa5);
	assert_int_equal(map[at + len - 1], 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_blocks * 512, 2 * MIB + 4096 + 64 * 4096);
	assert_int_equal(lseek(fd, 3 * MIB, SEEK_DATA), 3 * MIB + 4096);
	/* A part page at the end, in a hole: written too. */
	at = 3 * MIB + 512 * 1024;
	assert_int_equal(os_commit_fill(fd, at, 2 * 4096 + 100, map + at), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_blocks * 512, 2 * MIB + 4096 + 67 * 4096);
	assert_int_equal(lseek(fd, at, SEEK_HOLE), at + 3 * 4096);
}

static void fill_past_the_size_limit(void)
{
	struct rlimit rl = { MIB, MIB };
	struct stat st;
	if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
		exit(3);
	/* A write there would raise SIGXFSZ; the pages are reserved instead. */
	if (os_commit_fill(fd, 2 * MIB, MIB, map + 2 * MIB) != 0)
		exit(4);
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_blocks * 512 != MIB)
		exit(5);
	map[2 * MIB] = 1;
	map[3 * MIB - 1] = 1;
}

static void test_os_fill_past_the_size_limit_does_not_raise_sigxfsz(void **state)
{
	(void)state;
	int status = test_in_child(fill_past_the_size_limit);
	if (WIFSIGNALED(status))
		fail_msg("the fill died of signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* A system call filter that answers pwritev with `action`, as a sandbox's
 * does; 0 or -1. */
static void fill_under_a_filter(void)
{
	struct stat st;
	if (test_filter_pwritev(SECCOMP_RET_ERRNO | EPERM) != 0)
		exit(TEST_SKIPPED);  /* no system call filters here */
	errno = 12345;
	if (os_commit_fill(fd, MIB, MIB, map + MIB) != 0)
		exit(4);
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_blocks * 512 != MIB)
		exit(5);
	if (errno != 12345)
		exit(6);  /* a successful commit leaves errno alone */
	/* The next is reserved without asking again: writing would now end
	 * the process. */
	if (test_filter_pwritev(SECCOMP_RET_KILL_PROCESS) != 0)
		exit(8);
	if (os_commit_fill(fd, 2 * MIB, 4096, map + 2 * MIB) != 0 || errno != 12345)
		exit(7);
}

static void test_os_fill_refused_by_a_filter_reserves(void **state)
{
	(void)state;
	test_child_ok_or_skipped(fill_under_a_filter);
}

/* Only tmpfs gets its pages written: on a disk the zeros would be written
 * out. The test folder's file, and one of the working folder's. */
static void test_os_tmpfs_is_told_apart(void **state)
{
	(void)state;
	char path[] = "os-test-XXXXXX";
	assert_true(os_is_tmpfs(fd) == on_tmpfs(fd));
	int other = mkstemp(path);
	if (other < 0)
		skip();
	unlink(path);
	assert_true(os_is_tmpfs(other) == on_tmpfs(other));
	close(other);
	assert_false(os_is_tmpfs(-1));
}

/* A child named to look like more fields (the name is the process's own
 * to set): its parent and start time are still read right, the same from
 * both calls, and a process gone reads as an error. */
static void test_os_proc_stat_reads_parent_and_start(void **state)
{
	(void)state;
	uint64_t mine = 0, again = 0, child_start = 0;
	pid_t parent = -1;
	assert_int_equal(os_proc_stat(getpid(), &mine, &parent), 0);
	assert_int_equal(parent, getppid());
	assert_true(mine > 0);
	assert_int_equal(os_proc_start_time(getpid(), &again), 0);
	assert_true(again == mine);

	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_NAME, "x) R 1 1 1 1 (");
		if (write(ready[1], "", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char c;
	ssize_t got = read(ready[0], &c, 1);
	parent = -1;
	int err = os_proc_stat(pid, &child_start, &parent);
	/* Ended before any check, which would leave it running. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(ready[0]);
	close(ready[1]);
	assert_int_equal(got, 1);
	assert_int_equal(err, 0);
	assert_int_equal(parent, getpid());
	assert_true(child_start >= mine);
	assert_int_not_equal(os_proc_stat(pid, &child_start, &parent), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_os_fill_is_zeros_counted_and_mapped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_os_fill_past_the_size_limit_does_not_raise_sigxfsz, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_os_fill_refused_by_a_filter_reserves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_os_tmpfs_is_told_apart, setup, teardown),
		cmocka_unit_test(test_os_proc_stat_reads_parent_and_start),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
