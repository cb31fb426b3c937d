/* SPDX-License-Identifier: MIT */
/*
 * The shim's journal checked site by site against a program with known
 * allocations (tests/progs/known_sites.c), read with the reader API while
 * the program runs; and the heap file gone once it has exited. More stacks
 * than the private index of sites takes: each still has one site.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "heap.h"
#include "redhawk/shm.h"
#include "testutil.h"

/* Sites counted: alloc_a, alloc_b, alloc_c, and leaf through via_d and
 * through via_e. */
#define KINDS 5
struct known {
	uintptr_t fn[7];             /* alloc_a, alloc_b, alloc_c, main, leaf, via_d, via_e */
	int64_t bytes[KINDS], blocks[KINDS]; /* from the journal's counters */
	int64_t walk_bytes[KINDS], walk_blocks[KINDS];
	int other;
};

/* The known function a return address lies in: the nearest start below it. */
static int which(const struct known *k, uint64_t ra)
{
	int best = -1;
	for (int i = 0; i < 7; i++)
		if (k->fn[i] <= ra && ra - k->fn[i] < 4096 && (best < 0 || k->fn[i] > k->fn[best]))
			best = i;
	return best;
}

/* The kind of a site's stack, or -1. */
static int kind_of(const struct known *k, const struct rh_site_info *s)
{
	int w = s->depth ? which(k, s->frames[0]) : -1;
	if (w == 4) /* leaf: by its caller */
		return s->depth > 1 && which(k, s->frames[1]) == 5 ? 3 : s->depth > 1 && which(k, s->frames[1]) == 6 ? 4 : -1;
	return w >= 0 && w < 3 ? w : -1;
}

static int on_site(const struct rh_site_info *s, void *arg)
{
	struct known *k = arg;
	int w = kind_of(k, s);
	if (w >= 0) {
		k->bytes[w] += s->live_bytes;
		k->blocks[w] += s->live_blocks;
	} else if (s->live_blocks) {
		k->other++;
	}
	return 0;
}

struct site_map {
	struct known *k;
	uint32_t ids[4096];
	int kind[4096];
	int n;
};

static int map_site(const struct rh_site_info *s, void *arg)
{
	struct site_map *m = arg;
	if (m->n < 4096) {
		m->ids[m->n] = s->id;
		m->kind[m->n++] = kind_of(m->k, s);
	}
	return 0;
}

static int on_block(const struct rh_block_info *b, void *arg)
{
	struct site_map *m = arg;
	for (int i = 0; i < m->n; i++)
		if (m->ids[i] == b->site && m->kind[i] >= 0) {
			m->k->walk_bytes[m->kind[i]] += (int64_t)b->size;
			m->k->walk_blocks[m->kind[i]]++;
		}
	return 0;
}

static void test_journal_matches_known_program(void **state)
{
	(void)state;
	const char *san = getenv("SANITIZE");
	if (san && strcmp(san, "1") == 0) {
		print_message("the shim is not preloaded into sanitizer builds\n");
		skip();
	}
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	char shim[512], prog[512];
	snprintf(shim, sizeof(shim), "%s/lib/libredhawk-shm-preload.so", build);
	snprintf(prog, sizeof(prog), "%s/tests/progs/known_sites", build);
	assert_int_equal(access(shim, R_OK), 0);
	int in[2], out[2];
	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		setenv("LD_PRELOAD", shim, 1);
		execl(prog, prog, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	FILE *f = fdopen(out[0], "r");
	struct known k = { 0 };
	int cpid = 0;
	void *fn[7];
	assert_int_equal(fscanf(f, "ready %d %p %p %p %p %p %p %p", &cpid, &fn[0], &fn[1], &fn[2], &fn[3], &fn[4],
			     &fn[5], &fn[6]), 8);
	assert_int_equal(cpid, pid);
	for (int i = 0; i < 7; i++)
		k.fn[i] = (uintptr_t)fn[i];

	char name[64];
	snprintf(name, sizeof(name), "heap-%d", (int)pid);
	int dirfd = open(test_dir, O_RDONLY | O_DIRECTORY);
	assert_true(dirfd >= 0);
	struct rh_heap *heap = NULL;
	assert_int_equal(rh_heap_open(dirfd, name, &heap), 0);
	const struct rh_heap_info *info = rh_heap_info(heap);
	assert_int_equal(info->creator_pid, pid);
	assert_int_equal(info->orphaned, 0);
	assert_int_equal(rh_heap_walk_sites(heap, on_site, &k), 0);
	assert_int_equal(k.bytes[0], 10000);
	assert_int_equal(k.blocks[0], 10);
	assert_int_equal(k.bytes[1], 500000);
	assert_int_equal(k.blocks[1], 5);
	assert_int_equal(k.bytes[2], 128);
	assert_int_equal(k.blocks[2], 2);
	/* Stacks of one shape near malloc are told apart further out. */
	assert_int_equal(k.bytes[3], 1600);
	assert_int_equal(k.blocks[3], 8);
	assert_int_equal(k.bytes[4], 1600);
	assert_int_equal(k.blocks[4], 8);
	/* The blocks themselves agree with the counters. */
	static struct site_map m;
	m.k = &k;
	assert_int_equal(rh_heap_walk_sites(heap, map_site, &m), 0);
	assert_int_equal(rh_heap_walk_blocks(heap, on_block, &m), 0);
	for (int i = 0; i < KINDS; i++) {
		assert_int_equal(k.walk_bytes[i], k.bytes[i]);
		assert_int_equal(k.walk_blocks[i], k.blocks[i]);
	}
	rh_heap_close(heap);

	close(in[1]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fclose(f);
	assert_int_equal(faccessat(dirfd, name, F_OK, 0), -1);
	assert_int_equal(errno, ENOENT);
	close(dirfd);
}

#define MANY_SITES 40000  /* past the index's 32768 entries: the rest on chains */
#define MANY_DEPTH 3

static void many_frames(int i, uint64_t *frames)
{
	frames[0] = 0x10000000u + (uint64_t)i * 16;
	frames[1] = 0x20000000u + (uint64_t)(i % 7) * 16;
	frames[2] = 0x30000000u;
}

static int count_many(const struct rh_site_info *s, void *arg)
{
	if (s->depth == MANY_DEPTH && s->frames[2] == 0x30000000u)
		++*(int *)arg;
	return 0;
}

/* Each stack gets a site once, and finds the same one again, whether the
 * index holds it or a hash chain does; the journal holds each once. */
static void test_sites_past_the_index(void **state)
{
	(void)state;
	void *p = rh_shm_alloc(16);  /* the heap, and its journal */
	assert_non_null(p);
	static uint32_t loc[MANY_SITES];
	uint64_t frames[MANY_DEPTH];
	for (int i = 0; i < MANY_SITES; i++) {
		many_frames(i, frames);
		loc[i] = journal_site(frames, MANY_DEPTH);
		assert_true(loc[i] != 0);
		assert_true(i == 0 || loc[i] != loc[i - 1]);
	}
	for (int i = MANY_SITES - 1; i >= 0; i--) {
		many_frames(i, frames);
		if (journal_site(frames, MANY_DEPTH) != loc[i])
			fail_msg("stack %d: site %u, first %u", i, journal_site(frames, MANY_DEPTH), loc[i]);
	}
	char name[64];
	snprintf(name, sizeof(name), "heap-%d", (int)getpid());
	int dirfd = open(test_dir, O_RDONLY | O_DIRECTORY);
	assert_true(dirfd >= 0);
	struct rh_heap *heap = NULL;
	assert_int_equal(rh_heap_open(dirfd, name, &heap), 0);
	int count = 0;
	assert_int_equal(rh_heap_walk_sites(heap, count_many, &count), 0);
	assert_int_equal(count, MANY_SITES);
	rh_heap_close(heap);
	close(dirfd);
	rh_shm_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_journal_matches_known_program, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_sites_past_the_index, test_setup, test_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
