/* SPDX-License-Identifier: MIT */
/*
 * A full filesystem: each scenario runs in a child with a 4 MiB tmpfs
 * mounted as its RH_SHM_DIR (in a mount namespace of its own, so the mount
 * goes with the child however it ends). Allocation must fail with ENOMEM,
 * never raise SIGBUS on memory it handed out, and work again once space is
 * back. Skipped when the test may not mount (not root, no CAP_SYS_ADMIN).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "heap.h"
#include "alloc.h"
#include "testutil.h"
#include <redhawk/shm.h>

#define FS_SIZE "4m"

static char mnt[300];

/* In the child cmocka cannot report: print and exit with the line number. */
#define CHECK(c) do { if (!(c)) { \
	fprintf(stderr, "%s:%d: %s (errno %d)\n", __FILE__, __LINE__, #c, errno); \
	_exit(__LINE__ % 200 + 2); } } while (0)

static uint64_t fs_free(void)
{
	struct statvfs sv;
	CHECK(statvfs(mnt, &sv) == 0);
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static int entries(void)
{
	int n = 0;
	DIR *d = opendir(mnt);
	struct dirent *e;
	CHECK(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Takes every free byte of the filesystem with a file of its own. */
static void fill_fs(const char *name)
{
	char path[400], buf[4096];
	snprintf(path, sizeof(path), "%s/%s", mnt, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	memset(buf, 1, sizeof(buf));
	while (write(fd, buf, sizeof(buf)) > 0)
		;
	CHECK(errno == ENOSPC);
	close(fd);
	CHECK(fs_free() < 8192);
}

static void unfill_fs(const char *name)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", mnt, name);
	CHECK(unlink(path) == 0);
}

#define MAX_BLOCKS 100000

static void *blocks[MAX_BLOCKS];
static unsigned nblocks;

/* Allocates blocks of size until the heap refuses, touching every byte (a
 * page that was not reserved would raise SIGBUS here). Returns bytes got. */
static uint64_t alloc_until_full(size_t size)
{
	uint64_t got = 0;
	for (;;) {
		CHECK(nblocks < MAX_BLOCKS);
		errno = 0;
		void *p = rh_shm_alloc(size);
		if (!p) {
			CHECK(errno == ENOMEM);
			return got;
		}
		memset(p, 0xa5, size);
		blocks[nblocks++] = p;
		got += size;
	}
}

static void free_all(void)
{
	while (nblocks)
		rh_shm_free(blocks[--nblocks]);
}

static uint64_t failures(void)
{
	struct rh_shm_stats st;
	CHECK(rh_shm_stats(&st) == 0);
	return st.alloc_failures;
}

/* --- Scenarios, each in a child with the tmpfs mounted -------------------- */

static void scenario_fill_free_refill(void)
{
	uint64_t got = alloc_until_full(64 * 1024);
	CHECK(got >= 1024 * 1024); /* the filesystem was really used */
	got += alloc_until_full(1000);
	got += alloc_until_full(40);
	errno = 0;
	CHECK(!rh_shm_alloc(1 << 20) && errno == ENOMEM);
	errno = 0;
	CHECK(!rh_shm_alloc(5 << 20) && errno == ENOMEM);
	CHECK(!rh_shm_alloc_aligned(4096, 1 << 20) && errno == ENOMEM);
	CHECK(failures() >= 5);
	/* A block that cannot grow stays as it was. */
	unsigned char *last = blocks[nblocks - 1];
	errno = 0;
	CHECK(!rh_shm_realloc(last, 3 << 20) && errno == ENOMEM);
	for (unsigned i = 0; i < 40; i++)
		CHECK(last[i] == 0xa5);

	uint64_t free_full = fs_free();
	free_all();
	rh_shm_trim();
	/* Freed memory shows as free space again (df /dev/shm). */
	CHECK(fs_free() > free_full + 1024 * 1024);
	uint64_t again = alloc_until_full(64 * 1024);
	CHECK(again >= got / 2);
	free_all();
	void *p = rh_shm_alloc(1 << 20);
	CHECK(p);
	memset(p, 1, 1 << 20);
	rh_shm_free(p);
}

/* Pages given back to the filesystem must be reserved again before reuse:
 * once someone else has taken the space, the heap says no instead. */
static void scenario_space_taken_after_free(void)
{
	CHECK(alloc_until_full(64 * 1024) > 0);
	free_all();
	rh_shm_trim();
	fill_fs("filler");
	/* Whatever the heap hands out now must be real memory. */
	alloc_until_full(64 * 1024);
	alloc_until_full(4096);
	alloc_until_full(100);
	free_all();
	unfill_fs("filler");
	CHECK(alloc_until_full(64 * 1024) >= 1024 * 1024);
	free_all();
}

/* Pages written over a hole that stop short (the filesystem filled) are
 * punched again: the file holds what it held before, the space is back. */
static void scenario_fill_stopped_short_is_undone(void)
{
	char path[400];
	struct stat st;
	snprintf(path, sizeof(path), "%s/file", mnt);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0 && ftruncate(fd, 8 << 20) == 0);
	char *map = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(map != MAP_FAILED);
	memset(map, 7, 4096);
	uint64_t before = fs_free();
	CHECK(os_commit_fill(fd, 4096, (8 << 20) - 4096, map + 4096) == ENOSPC);
	CHECK(fstat(fd, &st) == 0 && st.st_blocks * 512 == 4096);
	CHECK(fs_free() == before);
	CHECK(map[4095] == 7);
	/* What fits is written whole. */
	CHECK(os_commit_fill(fd, 4096, 1 << 20, map + 4096) == 0);
	CHECK(fstat(fd, &st) == 0 && st.st_blocks * 512 == 4096 + (1 << 20));
	CHECK(map[4096] == 0 && map[(1 << 20) + 4095] == 0);
	munmap(map, 8 << 20);
	close(fd);
	unlink(path);
}

/* A block with private pages (the shim's malloc of RH_SHMALLOC_PRIVATE_SIZE
 * or more) needs one page of the filesystem: on a nearly full one, a block
 * far larger than the filesystem can be written whole. Sharing it then fails
 * cleanly, and leaves it as it was. */
static void scenario_private_block_larger_than_the_filesystem(void)
{
	const size_t n = 32 << 20;
	void *keep = rh_shm_alloc(1 << 20); /* room for a superblock header later */
	CHECK(keep);
	fill_fs("filler");
	rh_shm_free(keep);
	rh_shm_trim();
	CHECK(fs_free() >= (1 << 20));
	alloc_private_min = 1 << 20;
	unsigned char *p = alloc_block(n, 16, 0);
	alloc_private_min = SIZE_MAX;
	CHECK(p);
	memset(p, 0x3c, n);
	CHECK(fs_free() >= (1 << 19));
	struct rh_shm_ref ref;
	errno = 0;
	CHECK(rh_shm_ref(p, &ref) == -1 && errno == ENOMEM);
	for (size_t i = 0; i < n; i += 4096)
		CHECK(p[i] == 0x3c && p[i + 4095] == 0x3c);
	memset(p, 0x3d, n); /* still the process's memory */
	rh_shm_free(p);
	CHECK(rh_shm_heap_name());
	unfill_fs("filler");
}

/* No room for even the header: the first allocation fails with ENOMEM and
 * leaves no file behind, not even under a temporary name; so do attempts
 * right after it (the heap may wait a moment before it tries again). */
static void scenario_full_from_the_start(void)
{
	fill_fs("filler");
	for (unsigned i = 0; i < 3; i++) {
		errno = 0;
		CHECK(!rh_shm_alloc(100));
		CHECK(errno == ENOMEM);
	}
	CHECK(entries() == 1);
	unfill_fs("filler");
	void *p = NULL;
	for (unsigned i = 0; i < 300 && !p; i++) {
		errno = 0;
		if (!(p = rh_shm_alloc(100))) {
			CHECK(errno == ENOMEM);
			usleep(10000);
		}
	}
	CHECK(p);
	CHECK(rh_shm_heap_name());
	memset(p, 2, 100);
	rh_shm_free(p);
	CHECK(entries() == 1);
}

/* A small class's span reserves its pages as its slots reach them: on a
 * full filesystem the slots past what it reserved are refused, never handed
 * out (writing to one would raise SIGBUS), and the pages reserved so far
 * serve. */
static void scenario_small_span_reserves_as_it_goes(void)
{
	void *first = rh_shm_alloc(40);
	CHECK(first);
	fill_fs("filler");
	uint64_t got = alloc_until_full(40);
	CHECK(got > 0);
	CHECK(got <= 8192 / 48 * 40);  /* two pages of 48-byte slots at most, not the span's 64 KiB */
	CHECK(failures() >= 1);
	free_all();
	unfill_fs("filler");
	for (unsigned i = 0; i < 3000; i++) {
		void *p = rh_shm_alloc(40);
		CHECK(p);
		memset(p, 3, 40);
		blocks[nblocks++] = p;
	}
	free_all();
	rh_shm_free(first);
}

/* The last pages of a nearly full filesystem are used: a refill that would
 * commit the pages of all the slots it takes, or as many pages again as
 * the span has used, commits at least the next slot's when those do not
 * fit. */
static void scenario_last_pages_used(void)
{
	static void *warm[300];
	for (unsigned i = 0; i < 300; i++) {  /* the class's refills at full size */
		warm[i] = rh_shm_alloc(1000);
		CHECK(warm[i]);
		memset(warm[i], 1, 1000);
	}
	fill_fs("filler");
	char path[400];
	snprintf(path, sizeof(path), "%s/filler", mnt);
	struct stat st;
	CHECK(stat(path, &st) == 0);
	CHECK(truncate(path, st.st_size - 12 * 4096) == 0);  /* twelve pages free */
	CHECK(alloc_until_full(1000) >= 11 * 4 * 1000);
	CHECK(fs_free() < 4096);
	free_all();
	for (unsigned i = 0; i < 300; i++)
		rh_shm_free(warm[i]);
	unfill_fs("filler");
}

/* A stale reference to a freed block whose pages went back to the
 * filesystem, attached while the filesystem is full: reading the punched
 * block header would need a page the filesystem cannot give (SIGBUS). The
 * attacher, another process, must get ESTALE instead. */
static void scenario_stale_ref_on_full_fs(void)
{
	unsigned char *p = rh_shm_alloc(1 << 20);
	CHECK(p);
	memset(p, 1, 1 << 20);
	struct rh_shm_ref ref;
	CHECK(rh_shm_ref(p, &ref) == 0);
	rh_shm_free(p);
	rh_shm_trim();
	fill_fs("filler");
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* Die of the signal rather than run cmocka's handler in a copy. */
		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		errno = 0;
		void *q = rh_shm_attach(&ref);
		CHECK(!q);
		CHECK(errno == ESTALE);
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "attaching a stale ref on a full filesystem: killed by signal %d (%s)\n",
			WTERMSIG(status), strsignal(WTERMSIG(status)));
		_exit(3);
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	unfill_fs("filler");
}

/* The journal stops while the filesystem is full and records again once
 * there is room (it tries again a second later). Its sites here are made
 * directly, a thousand pages' worth. */
static void scenario_journal_resumes(void)
{
	void *p = rh_shm_alloc(100);
	CHECK(p);
	uint64_t frame = 0x10000;
	unsigned made = 0;
	for (unsigned i = 0; i < 100; i++, frame += 16)
		made += journal_site(&frame, 1) != 0;
	CHECK(made == 100);
	fill_fs("filler");
	unsigned refused = 0;
	for (unsigned i = 0; i < 4000; i++, frame += 16)
		refused += journal_site(&frame, 1) == 0;
	CHECK(refused > 0); /* past the pages reserved before, nothing more */
	unfill_fs("filler");
	usleep(1100 * 1000);
	made = 0;
	for (unsigned i = 0; i < 100; i++, frame += 16)
		made += journal_site(&frame, 1) != 0;
	CHECK(made == 100);
	rh_shm_free(p);
}

static void in_tmpfs(void (*scenario)(void))
{
	/* A private mount namespace: the tmpfs vanishes with this child. */
	if (unshare(CLONE_NEWNS) == 0)
		mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (mount("rh-test-tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=" FS_SIZE ",mode=0700")
	    != 0) {
		printf("cannot mount a tmpfs on %s: %s\n", mnt, strerror(errno));
		_exit(TEST_SKIPPED);
	}
	setenv("RH_SHM_DIR", mnt, 1);
	options_load(&rh_options);
	scenario();
	exit(0); /* removes the heap (tested elsewhere) */
}

static void run(void (*scenario)(void), const char *what)
{
	int status;
	assert_int_equal(mkdir(mnt, 0700), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		in_tmpfs(scenario);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* Only when the namespace could not be made is the mount ours to undo. */
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
	if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIPPED)
		skip();
	if (WIFSIGNALED(status))
		fail_msg("%s: the process died of signal %d (%s)", what, WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s: failed (see the line above)", what);
}

static void test_tmpfs_full_allocation_fails_then_recovers(void **state)
{
	(void)state;
	run(scenario_fill_free_refill, "fill, free, refill");
}

static void test_tmpfs_full_returned_pages_are_reserved_again(void **state)
{
	(void)state;
	run(scenario_space_taken_after_free, "space taken after free");
}

static void test_tmpfs_full_first_allocation_fails_cleanly(void **state)
{
	(void)state;
	run(scenario_full_from_the_start, "full from the start");
}

static void test_tmpfs_full_small_span_reserves_as_it_goes(void **state)
{
	(void)state;
	run(scenario_small_span_reserves_as_it_goes, "small span reserves as it goes");
}

static void test_tmpfs_full_journal_resumes_when_room_returns(void **state)
{
	(void)state;
	run(scenario_journal_resumes, "journal resumes");
}

static void test_tmpfs_full_stale_ref_attach_fails_cleanly(void **state)
{
	(void)state;
	run(scenario_stale_ref_on_full_fs, "stale ref on a full filesystem");
}

static void test_tmpfs_full_private_block_larger_than_the_filesystem(void **state)
{
	(void)state;
	run(scenario_private_block_larger_than_the_filesystem, "private block larger than the filesystem");
}

static void test_tmpfs_full_last_pages_used(void **state)
{
	(void)state;
	run(scenario_last_pages_used, "last pages used");
}

static void test_tmpfs_full_fill_stopped_short_is_undone(void **state)
{
	(void)state;
	run(scenario_fill_stopped_short_is_undone, "fill stopped short");
}

static int setup(void **state)
{
	(void)state;
	test_dir_make();
	options_load(&rh_options);
	snprintf(mnt, sizeof(mnt), "%s/mnt", test_dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
	test_dir_remove();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tmpfs_full_allocation_fails_then_recovers),
		cmocka_unit_test(test_tmpfs_full_returned_pages_are_reserved_again),
		cmocka_unit_test(test_tmpfs_full_first_allocation_fails_cleanly),
		cmocka_unit_test(test_tmpfs_full_small_span_reserves_as_it_goes),
		cmocka_unit_test(test_tmpfs_full_journal_resumes_when_room_returns),
		cmocka_unit_test(test_tmpfs_full_stale_ref_attach_fails_cleanly),
		cmocka_unit_test(test_tmpfs_full_private_block_larger_than_the_filesystem),
		cmocka_unit_test(test_tmpfs_full_fill_stopped_short_is_undone),
		cmocka_unit_test(test_tmpfs_full_last_pages_used),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
