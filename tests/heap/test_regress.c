/* SPDX-License-Identifier: MIT */
/*
 * Regressions that need a process of their own: options read at its first
 * allocation, threads numbered from its start, spans laid out in a fresh
 * file. This process never
 * allocates; each scenario runs in a forked child, which makes a fresh heap,
 * and talks to tests/progs/shm_peer for the other side of its references.
 */
#include <errno.h>
#include <pthread.h>
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

#define MIB (1024u * 1024u)

/* In a forked child cmocka cannot report: say what failed and exit with the
 * line number, which the parent turns into a failure. */
#define CHECK(c) do { if (!(c)) { \
	fprintf(stderr, "%s:%d: %s (errno %d)\n", __FILE__, __LINE__, #c, errno); \
	_exit(__LINE__ % 200 + 2); } } while (0)

static void run_child(void (*fn)(void), const char *what)
{
	int status = test_in_child(fn);
	if (WIFSIGNALED(status))
		fail_msg("%s: the child died of signal %d (%s)", what, WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s: failed (status %#x; see the line above)", what, status);
}

static struct rh_shm_stats stats_now(void)
{
	struct rh_shm_stats st;
	CHECK(rh_shm_stats(&st) == 0);
	return st;
}

/* --- Remote frees into the pool of a thread that has exited ----------------- */

#define NBIG 64

static struct peer consumer;
static unsigned char *big[NBIG];

/* The producer: its blocks go to the consumer (which checks their first
 * page), then it drops its own references and ends. */
static void *producer(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < NBIG; i++) {
		struct rh_shm_ref ref;
		char hex[2 * sizeof(ref) + 1], reply[256];
		big[i] = rh_shm_alloc(MIB);
		if (!big[i])
			return "alloc";
		pattern_fill(big[i], MIB, i);
		if (rh_shm_ref(big[i], &ref) != 0)
			return "ref";
		ref_to_hex(&ref, hex);
		if (peer_cmd(&consumer, reply, sizeof(reply), "attach %s 4096 %u", hex, i) != 0) {
			fprintf(stderr, "block %u: the consumer says '%s'\n", i, reply);
			return "attach";
		}
	}
	for (unsigned i = 0; i < NBIG; i++)
		rh_shm_free(big[i]);
	return NULL;
}

/* With two pools, the main thread takes one and the producer thread the
 * other. The consumer drops the last references after the producer exited:
 * those blocks wait on the producer's pool's remote-free list, which no
 * thread of that pool is left to take. The next 64 MiB must come from them,
 * not from a bigger file. */
static void remote_frees_of_exited_thread(void)
{
	setenv("RH_SHMALLOC_THREAD_NUM_POOLS", "2", 1);
	options_load(&rh_options);
	rh_shm_free(rh_shm_alloc(16)); /* the main thread binds to its pool */
	CHECK(peer_start(&consumer, NULL) == 0);
	pthread_t t;
	void *why = NULL;
	CHECK(pthread_create(&t, NULL, producer, NULL) == 0);
	CHECK(pthread_join(t, &why) == 0);
	if (why) {
		fprintf(stderr, "producer thread failed at %s\n", (char *)why);
		_exit(3);
	}
	CHECK(stats_now().pools_used == 2); /* else the scenario is not the one meant */
	char reply[64];
	CHECK(peer_cmd(&consumer, reply, sizeof(reply), "freeall") == 0);
	CHECK(strcmp(reply, "ok 64") == 0);
	CHECK(peer_finish(&consumer) == 0);

	struct rh_shm_stats before = stats_now();
	CHECK(before.heap_used == 0);
	for (unsigned i = 0; i < NBIG; i++) {
		big[i] = rh_shm_alloc(MIB);
		CHECK(big[i]);
		memset(big[i], 0x3c, MIB);
	}
	struct rh_shm_stats after = stats_now();
	if (after.heap_size > before.heap_size) {
		fprintf(stderr, "64 MiB allocated again grew the heap from %llu to %llu bytes: "
			"the blocks the consumer freed were not reused\n",
			(unsigned long long)before.heap_size, (unsigned long long)after.heap_size);
		_exit(4);
	}
	CHECK(after.heap_used == (uint64_t)NBIG * MIB);
	for (unsigned i = 0; i < NBIG; i++)
		rh_shm_free(big[i]);
	CHECK(stats_now().heap_used == 0);
}

static void test_regress_remote_frees_of_exited_thread_are_reused(void **state)
{
	(void)state;
	run_child(remote_frees_of_exited_thread, "remote frees of an exited thread's pool");
	assert_int_equal(test_dir_count(), 0);
}

/* --- Alignment above a page --------------------------------------------------- */

/* An alignment above a page is had by taking a span larger by the
 * alignment; the whole pages before the block must go back, not stay
 * committed with it: 16 small blocks aligned to 1 MiB commit far less than
 * 16 MiB, round after round. A fresh heap, so that where the spans fall is
 * always the same. */
static uint64_t committed(const char *path)
{
	struct stat st;
	CHECK(stat(path, &st) == 0);
	return (uint64_t)st.st_blocks * 512;
}

static void aligned_above_page(void)
{
	enum { N = 16 };
	void *blocks[N];
	char path[512];
	rh_shm_free(rh_shm_alloc(16));
	rh_shm_trim();
	snprintf(path, sizeof(path), "%s/%s", test_dir, rh_shm_heap_name());
	uint64_t before = committed(path);
	for (unsigned round = 0; round < 3; round++) {
		for (unsigned i = 0; i < N; i++) {
			blocks[i] = rh_shm_alloc_aligned(MIB, 4096);
			CHECK(blocks[i]);
			CHECK((uintptr_t)blocks[i] % MIB == 0);
			pattern_fill(blocks[i], 4096, round * N + i);
		}
		uint64_t grown = committed(path) - before;
		if (grown > 4 * MIB) {
			fprintf(stderr, "round %u: %u blocks of 4 KiB aligned to 1 MiB grew the heap "
				"file by %llu KiB\n", round + 1, (unsigned)N,
				(unsigned long long)grown / 1024);
			_exit(3);
		}
		for (unsigned i = 0; i < N; i++) {
			CHECK(pattern_ok(blocks[i], 4096, round * N + i));
			rh_shm_free(blocks[i]);
		}
		CHECK(stats_now().heap_used == 0);
	}
}

static void test_regress_aligned_above_page_commits_little(void **state)
{
	(void)state;
	run_child(aligned_above_page, "alignment above a page");
	assert_int_equal(test_dir_count(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regress_remote_frees_of_exited_thread_are_reused),
		cmocka_unit_test(test_regress_aligned_above_page_commits_little),
	};
	return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
