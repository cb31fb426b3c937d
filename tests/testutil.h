/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the cmocka tests: a private RH_SHM_DIR under /dev/shm
 * (or TMPDIR when /dev/shm is missing) made in setup and removed, with
 * everything in it, in teardown. Tests never touch heaps they did not make.
 */
#ifndef RH_TESTUTIL_H
#define RH_TESTUTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char test_dir[256];

/* Makes a fresh private folder and exports it as RH_SHM_DIR. */
static inline const char *test_dir_make(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(test_dir, sizeof(test_dir), "%s/rh-test-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(test_dir)) {
		perror("mkdtemp");
		abort();
	}
	setenv("RH_SHM_DIR", test_dir, 1);
	return test_dir;
}

/* Removes the private folder and its files (one level: tests make no subfolders). */
static inline void test_dir_remove(void)
{
	if (!test_dir[0])
		return;
	DIR *d = opendir(test_dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(test_dir);
	test_dir[0] = 0;
}

/* cmocka setup and teardown making and removing the private folder. */
/* Runs fn in a forked child that then exits 0; the child's wait status. */
static inline int test_in_child(void (*fn)(void))
{
	int status;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fn();
		exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

/* Runs fn in a child, which must exit with status 0. */
static inline void test_child_ok(void (*fn)(void))
{
	int status = test_in_child(fn);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* The same, but a child that exits with TEST_SKIPPED (it cannot run here)
 * skips the test. */
#define TEST_SKIPPED 77
static inline void test_child_ok_or_skipped(void (*fn)(void))
{
	int status = test_in_child(fn);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == TEST_SKIPPED)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

static inline int test_setup(void **state)
{
	(void)state;
	test_dir_make();
	return 0;
}

static inline int test_teardown(void **state)
{
	(void)state;
	test_dir_remove();
	return 0;
}

/* Number of entries in the private folder. */
static inline int test_dir_count(void)
{
	int n = 0;
	DIR *d = opendir(test_dir);
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Adds a system call filter that answers pwritev with `action` (a
 * SECCOMP_RET_* value) for the rest of the process: 0, or -1 where filters
 * cannot be set. For tests in a child. */
static inline int test_filter_pwritev(uint32_t action)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwritev, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, action),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) ? -1 : 0;
}

#endif
