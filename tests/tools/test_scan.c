/* SPDX-License-Identifier: MIT */
/*
 * Reading the heap folder: classification of heaps, broken heaps, other files,
 * links and FIFOs (never followed, never opened), name order, and the mapping
 * of command-line names to names of the folder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/stat.h>

#include "heapfix.h"
#include "scan.h"
#include "testutil.h"

static void write_heap(const char *name, int32_t creator)
{
	struct heapfix f;
	heapfix_init(&f, 4096);
	heapfix_header(&f)->creator_pid = creator;
	heapfix_data_sb(&f, 16);
	heapfix_counter(&f, 0, 100, 1);
	assert_int_equal(heapfix_write(&f, test_dir, name), 0);
	heapfix_free(&f);
}

static void write_bytes(const char *name, const void *buf, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", test_dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	close(fd);
}

static const struct scan_entry *find(const struct scan *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->entries[i].name, name))
			return &s->entries[i];
	return NULL;
}

static void test_scan_classifies_every_kind(void **state)
{
	(void)state;
	write_heap("heap-100", 99999999);
	write_heap("heap-99", getpid());
	write_bytes("garbage", "not a heap at all", 17);
	/* A native magic with a bad version: a heap, but unreadable. */
	uint32_t bad[4] = { RH_HEAP_MAGIC, 0x00630063, 8192, 4096 };
	write_bytes("heap-broken", bad, sizeof(bad));
	char path[512], target[512];
	snprintf(path, sizeof(path), "%s/heap-link", test_dir);
	snprintf(target, sizeof(target), "%s/heap-99", test_dir);
	assert_int_equal(symlink(target, path), 0);
	snprintf(path, sizeof(path), "%s/fifo", test_dir);
	assert_int_equal(mkfifo(path, 0600), 0);

	int dirfd = scan_open_dir(test_dir);
	assert_true(dirfd >= 0);
	struct scan s = { 0 };
	assert_int_equal(scan_dir(dirfd, &s), 0);
	assert_int_equal(s.n, 6);

	const struct scan_entry *e = find(&s, "heap-100");
	assert_non_null(e);
	assert_int_equal(e->kind, SCAN_HEAP);
	assert_int_equal(e->info.creator_pid, 99999999);
	assert_int_equal(e->info.orphaned, 1);
	e = find(&s, "heap-99");
	assert_int_equal(e->kind, SCAN_HEAP);
	assert_int_equal(e->info.orphaned, 0);
	assert_int_equal(e->info.heap_used, 100);
	e = find(&s, "heap-broken");
	assert_int_equal(e->kind, SCAN_UNREADABLE);
	assert_non_null(e->error);
	assert_true(strlen(e->error) > 0);
	assert_int_equal(find(&s, "garbage")->kind, SCAN_OTHER);
	/* The link is listed as what it is, not as the heap it points to. */
	e = find(&s, "heap-link");
	assert_int_equal(e->kind, SCAN_OTHER);
	assert_true(S_ISLNK(e->st.st_mode));
	e = find(&s, "fifo");
	assert_int_equal(e->kind, SCAN_OTHER);
	assert_true(S_ISFIFO(e->st.st_mode));

	/* Version order: heap-99 before heap-100. */
	size_t i99 = (size_t)(find(&s, "heap-99") - s.entries);
	size_t i100 = (size_t)(find(&s, "heap-100") - s.entries);
	assert_true(i99 < i100);
	scan_free(&s);
	close(dirfd);
}

static void test_scan_open_dir_refuses_a_link(void **state)
{
	(void)state;
	char link[512];
	snprintf(link, sizeof(link), "%s/dirlink", test_dir);
	assert_int_equal(symlink(test_dir, link), 0);
	errno = 0;
	assert_int_equal(scan_open_dir(link), -1);
	assert_int_equal(errno, ELOOP);
	/* With trailing slashes too, which make open follow the link. */
	char slashed[520];
	snprintf(slashed, sizeof(slashed), "%s//", link);
	errno = 0;
	assert_int_equal(scan_open_dir(slashed), -1);
	assert_int_equal(errno, ELOOP);
	/* And with "." after it, the last component then. */
	static const char *const dots[] = { "/.", "/./", "/././/.", "//." };
	for (unsigned i = 0; i < sizeof(dots) / sizeof(dots[0]); i++) {
		snprintf(slashed, sizeof(slashed), "%s%s", link, dots[i]);
		errno = 0;
		assert_int_equal(scan_open_dir(slashed), -1);
		assert_int_equal(errno, ELOOP);
	}
	snprintf(slashed, sizeof(slashed), "%s/.", test_dir);
	int fd = scan_open_dir(slashed);
	assert_true(fd >= 0);
	close(fd);
	fd = scan_open_dir(".");
	assert_true(fd >= 0);
	close(fd);
	fd = scan_open_dir(test_dir);
	assert_true(fd >= 0);
	close(fd);
	snprintf(slashed, sizeof(slashed), "%s/", test_dir);
	fd = scan_open_dir(slashed);
	assert_true(fd >= 0);
	close(fd);
	fd = scan_open_dir("/");
	assert_true(fd >= 0);
	close(fd);
}

static void test_scan_name_in_dir(void **state)
{
	(void)state;
	assert_string_equal(scan_name_in_dir("/dev/shm", "heap-1"), "heap-1");
	assert_string_equal(scan_name_in_dir("/dev/shm", "/dev/shm/heap-1"), "heap-1");
	assert_string_equal(scan_name_in_dir("/dev/shm/", "/dev//shm/./heap-1"), "heap-1");
	assert_string_equal(scan_name_in_dir("/dev/shm", "./heap-1"), "heap-1");
	assert_string_equal(scan_name_in_dir("d", "d/heap-1"), "heap-1");
	assert_null(scan_name_in_dir("/dev/shm", ".."));
	assert_null(scan_name_in_dir("/dev/shm", "."));
	assert_null(scan_name_in_dir("/dev/shm", ""));
	assert_null(scan_name_in_dir("/dev/shm", "../etc/passwd"));
	assert_null(scan_name_in_dir("/dev/shm", "/dev/shm/../etc/passwd"));
	assert_null(scan_name_in_dir("/dev/shm", "/etc/passwd"));
	assert_null(scan_name_in_dir("/dev/shm", "/dev/shmx/heap-1"));
	assert_null(scan_name_in_dir("/dev/shm", "/dev/shm/sub/heap-1"));
	assert_null(scan_name_in_dir("/dev/shm", "sub/heap-1"));
	assert_null(scan_name_in_dir("/dev/shm", "/dev/shm/heap-1/"));
	assert_null(scan_name_in_dir("/dev/shm", "/dev/shm"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_scan_classifies_every_kind, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_scan_open_dir_refuses_a_link, test_setup, test_teardown),
		cmocka_unit_test(test_scan_name_in_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
