/* SPDX-License-Identifier: MIT */
/*
 * Allocator invariants, checked against a shadow model over long random
 * sequences of alloc, aligned alloc, calloc, realloc and free: no two live
 * blocks overlap, alignment, usable size, contents kept, used bytes counted
 * exactly, and a heap back at zero live blocks has no fragmentation left.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "heap.h"
#include "alloc.h"
#include "testutil.h"
#include <redhawk/shm.h>

#define MIB (1024u * 1024u)

/* --- Counted system calls ----------------------------------------------------
 * The heap's calls that give pages memory in the file go through these
 * (the test program's own definitions), which count them. */

static unsigned long commit_calls, commit_bytes;

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	static ssize_t (*real)(int, const struct iovec *, int, off_t);
	if (!real)
		real = (ssize_t (*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT, "pwritev");
	__atomic_fetch_add(&commit_calls, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < n; i++)
		__atomic_fetch_add(&commit_bytes, iov[i].iov_len, __ATOMIC_RELAXED);
	return real(fd, iov, n, off);
}

int posix_fallocate(int fd, off_t off, off_t len)
{
	static int (*real)(int, off_t, off_t);
	if (!real)
		real = (int (*)(int, off_t, off_t))dlsym(RTLD_NEXT, "posix_fallocate");
	__atomic_fetch_add(&commit_calls, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&commit_bytes, (unsigned long)len, __ATOMIC_RELAXED);
	return real(fd, off, len);
}

/* pthread_mutex_trylock, made to fail the next `busy_trylocks` times: a
 * pool lock another thread holds. */
static int busy_trylocks;

int pthread_mutex_trylock(pthread_mutex_t *m)
{
	static int (*real)(pthread_mutex_t *);
	if (!real)
		real = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_trylock");
	if (__atomic_load_n(&busy_trylocks, __ATOMIC_RELAXED) > 0) {
		__atomic_fetch_sub(&busy_trylocks, 1, __ATOMIC_RELAXED);
		return EBUSY;
	}
	return real(m);
}

/* --- Deterministic randomness and patterns -------------------------------- */

static uint64_t rnd_next(uint64_t *s)
{
	/* xorshift64*: reproducible, so a failure can be replayed. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

/* Requested sizes 0..2 MiB, skewed small as a real program's are. */
static size_t rnd_size(uint64_t *s)
{
	uint64_t r = rnd_next(s) % 1000, x = rnd_next(s);
	if (r < 600)
		return x % 129;
	if (r < 850)
		return 129 + x % 896;
	if (r < 950)
		return 1025 + x % 31744;
	if (r < 990)
		return 32769 + x % 229376;
	return 262145 + x % (2 * MIB - 262144);
}

static size_t rnd_align(uint64_t *s)
{
	return (size_t)8 << (rnd_next(s) % 10); /* 8..4096 */
}

/* Word-wise pattern: byte i of a block depends on the seed and on i, so a
 * copy to the wrong offset or a stray write shows. */
static uint64_t pattern_word(unsigned seed, size_t word)
{
	return (seed + 1) * 0x9E3779B97F4A7C15ULL ^ (word * 0xD6E8FEB86659FD93ULL);
}

static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;
	size_t w;
	for (w = 0; w < n / 8; w++) {
		uint64_t v = pattern_word(seed, w);
		memcpy(c + 8 * w, &v, 8);
	}
	if (n % 8) {
		uint64_t v = pattern_word(seed, w);
		memcpy(c + 8 * w, &v, n % 8);
	}
}

/* Offset of the first wrong byte, or (size_t)-1 when all n are right. */
static size_t check(const void *p, size_t n, unsigned seed)
{
	const unsigned char *c = p;
	size_t w;
	for (w = 0; w < n / 8; w++) {
		uint64_t v = pattern_word(seed, w);
		if (memcmp(c + 8 * w, &v, 8) != 0)
			return 8 * w;
	}
	if (n % 8) {
		uint64_t v = pattern_word(seed, w);
		if (memcmp(c + 8 * w, &v, n % 8) != 0)
			return 8 * w;
	}
	return (size_t)-1;
}

static uint64_t heap_used(void)
{
	struct rh_shm_stats st;
	assert_int_equal(rh_shm_stats(&st), 0);
	return st.heap_used;
}

static uint64_t heap_size(void)
{
	struct rh_shm_stats st;
	assert_int_equal(rh_shm_stats(&st), 0);
	return st.heap_size;
}

static size_t superblock_size(void)
{
	return rh_options.superblock_size ? rh_options.superblock_size : 2 * MIB;
}

/* Whether the header page holding page i's descriptor is committed. */
static bool desc_committed(const struct superblock *sb, uint32_t i)
{
	const uint64_t *bits = (const uint64_t *)&sb->pages[sb->npages];
	uint64_t pg = (offsetof(struct superblock, pages) + (uint64_t)i * sizeof(struct page_desc)) >>
		rh_heap->page_shift;
	return bits[pg >> 6] >> (pg & 63) & 1;
}

/* Every span of every DATA superblock of the heap: its head's and its
 * tail's descriptors lie in committed header pages (the rest of the header
 * may be holes), and agree; the spans tile the superblock. The number of
 * header pages that are holes goes to *holes. */
static void check_span_descs(unsigned *holes)
{
	if (holes)
		*holes = 0;
	if (!rh_heap)
		return;
	uint64_t end = __atomic_load_n(&rh_heap->hdr->superblocks_end, __ATOMIC_ACQUIRE);
	for (uint64_t off = rh_heap->hdr->header_size; off < end;) {
		const struct superblock *sb = (const struct superblock *)(rh_heap->base + off);
		assert_true(sb->size > 0);
		off += sb->size;
		if (sb->kind != RH_SB_DATA)
			continue;
		const uint64_t *bits = (const uint64_t *)&sb->pages[sb->npages];
		uint32_t hp = (uint32_t)(sb->header_size >> rh_heap->page_shift);
		for (uint32_t pg = 0; holes && pg < hp; pg++)
			*holes += !(bits[pg >> 6] >> (pg & 63) & 1);
		uint32_t i = 0;
		while (i < sb->npages) {
			if (!desc_committed(sb, i))
				fail_msg("superblock at %llu: span head %u's descriptor is in a hole",
					 (unsigned long long)sb->offset, i);
			uint32_t n = sb->pages[i].span_pages;
			if (n == 0 || n > sb->npages - i)
				fail_msg("superblock at %llu: span %u of %u pages", (unsigned long long)sb->offset, i, n);
			if (!desc_committed(sb, i + n - 1))
				fail_msg("superblock at %llu: span %u's tail descriptor is in a hole",
					 (unsigned long long)sb->offset, i);
			const struct page_desc *t = &sb->pages[i + n - 1];
			if (t->span_pages != n || t->kind != sb->pages[i].kind)
				fail_msg("superblock at %llu: span %u's tail says %u pages of kind %u, its head %u of %u",
					 (unsigned long long)sb->offset, i, t->span_pages, t->kind, n,
					 sb->pages[i].kind);
			i += n;
		}
	}
}

/* --- The shadow model ----------------------------------------------------- */

struct shadow {
	unsigned char *p;
	size_t size, usable, align;
	unsigned seed;
};

#define MAX_LIVE 400

struct model {
	struct shadow live[MAX_LIVE];
	size_t n;
	uint64_t used;       /* sum of requested sizes */
	unsigned seeds;
	uint64_t rng;
};

/* A new or moved block: aligned, usable, ours, and clear of every other one. */
static void admit(struct model *m, size_t skip, unsigned char *p, size_t size, size_t align)
{
	assert_non_null(p);
	size_t usable = rh_shm_usable_size(p);
	if (usable < size)
		fail_msg("usable size %zu < requested %zu", usable, size);
	if ((uintptr_t)p % align)
		fail_msg("block %p of %zu bytes not aligned to %zu", (void *)p, size, align);
	assert_true(rh_shm_owns(p));
	size_t span = usable ? usable : 1;
	for (size_t i = 0; i < m->n; i++) {
		if (i == skip)
			continue;
		const struct shadow *o = &m->live[i];
		size_t ospan = o->usable ? o->usable : 1;
		if (p < o->p + ospan && o->p < p + span)
			fail_msg("block %p+%zu overlaps live block %p+%zu", (void *)p, usable,
				 (void *)o->p, o->usable);
	}
}

static void verify(const struct shadow *b)
{
	size_t bad = check(b->p, b->usable, b->seed);
	if (bad != (size_t)-1)
		fail_msg("block %p of %zu bytes (%zu usable) corrupted at offset %zu", (void *)b->p,
			 b->size, b->usable, bad);
}

static void add(struct model *m, unsigned char *p, size_t size, size_t align)
{
	admit(m, (size_t)-1, p, size, align);
	struct shadow *b = &m->live[m->n++];
	b->p = p;
	b->size = size;
	b->usable = rh_shm_usable_size(p);
	b->align = align;
	b->seed = ++m->seeds;
	/* All of the usable size: a usable size that reaches into the next
	 * block's header shows up as corruption there. */
	fill(p, b->usable, b->seed);
	m->used += size;
}

static void drop(struct model *m, size_t i)
{
	verify(&m->live[i]);
	m->used -= m->live[i].size;
	rh_shm_free(m->live[i].p);
	m->live[i] = m->live[--m->n];
}

static void step(struct model *m)
{
	uint64_t *s = &m->rng;
	unsigned op = (unsigned)(rnd_next(s) % 100);
	/* Keep the live set between empty and full, leaning towards half. */
	if (m->n == MAX_LIVE || (m->n > MAX_LIVE / 2 && op < 30))
		op = 90;
	if (m->n == 0 && op >= 60)
		op = 0;

	if (op < 40) {
		size_t size = rnd_size(s);
		errno = 0;
		unsigned char *p = rh_shm_alloc(size);
		if (!p && size == 0)
			return; /* malloc(0) may return NULL */
		if (!p)
			fail_msg("rh_shm_alloc(%zu) failed: %s", size, strerror(errno));
		add(m, p, size, 16);
	} else if (op < 50) {
		size_t size = rnd_size(s), align = rnd_align(s);
		unsigned char *p = rh_shm_alloc_aligned(align, size);
		if (!p && size == 0)
			return;
		if (!p)
			fail_msg("rh_shm_alloc_aligned(%zu, %zu) failed: %s", align, size, strerror(errno));
		add(m, p, size, align);
	} else if (op < 55) {
		size_t count = 1 + rnd_next(s) % 64, size = rnd_size(s) / count;
		unsigned char *p = rh_shm_calloc(count, size);
		if (!p && count * size == 0)
			return;
		if (!p)
			fail_msg("rh_shm_calloc(%zu, %zu) failed: %s", count, size, strerror(errno));
		for (size_t i = 0; i < count * size; i++)
			if (p[i])
				fail_msg("calloc(%zu, %zu) byte %zu is %#x", count, size, i, p[i]);
		add(m, p, count * size, 16);
	} else if (op < 70) {
		size_t i = rnd_next(s) % m->n, size = rnd_size(s);
		if (rnd_next(s) % 2) /* often a small change, to hit in-place paths */
			size = m->live[i].size + rnd_next(s) % 4096;
		struct shadow *b = &m->live[i];
		verify(b);
		unsigned char *p = rh_shm_realloc(b->p, size);
		if (!p && size == 0) {
			/* realloc(p, 0) freed it, as glibc's does. */
			m->used -= b->size;
			m->live[i] = m->live[--m->n];
			return;
		}
		if (!p)
			fail_msg("rh_shm_realloc(%zu -> %zu) failed: %s", b->size, size, strerror(errno));
		size_t keep = size < b->size ? size : b->size;
		size_t bad = check(p, keep, b->seed);
		if (bad != (size_t)-1)
			fail_msg("realloc %zu -> %zu (%p -> %p) lost byte %zu", b->size, size,
				 (void *)b->p, (void *)p, bad);
		admit(m, i, p, size, 16);
		m->used += size;
		m->used -= b->size;
		b->p = p;
		b->size = size;
		b->usable = rh_shm_usable_size(p);
		b->align = 16;
		b->seed = ++m->seeds;
		fill(p, b->usable, b->seed);
	} else {
		drop(m, rnd_next(s) % m->n);
	}
}

static void run_model(struct model *m, uint64_t seed, unsigned steps)
{
	memset(m, 0, sizeof(*m));
	m->rng = seed;
	for (unsigned i = 1; i <= steps; i++) {
		step(m);
		if (i % 997 == 0) {
			uint64_t used = heap_used();
			if (used != m->used)
				fail_msg("after %u steps heap_used is %llu, live blocks hold %llu", i,
					 (unsigned long long)used, (unsigned long long)m->used);
			for (size_t j = 0; j < m->n; j++)
				verify(&m->live[j]);
			check_span_descs(NULL);
		}
	}
	check_span_descs(NULL);
}

static void free_all(struct model *m)
{
	while (m->n)
		drop(m, m->n - 1);
}

/* --- Tests ----------------------------------------------------------------- */

/* Every small request maps to the smallest class whose slot holds it with
 * its header: the class table against the slot sizes themselves. */
static void test_alloc_size_classes_are_the_tightest(void **state)
{
	(void)state;
	for (size_t n = 0; n <= SMALL_MAX_REQUEST; n++) {
		unsigned want = 0;
		while (rh_class_size[want] < n + HDR)
			want++;
		if (size_class(n) != want)
			fail_msg("%zu bytes: class %u, the tightest is %u", n, size_class(n), want);
	}
	assert_int_equal(size_class(SMALL_MAX_REQUEST), RH_NUM_CLASSES - 1);
	assert_int_equal(rh_class_size[RH_NUM_CLASSES - 1], RH_SMALL_MAX_SLOT);
}

static void test_alloc_random_sequence_keeps_invariants(void **state)
{
	static struct model m;
	struct rh_shm_stats st;
	(void)state;
	assert_int_equal(heap_used(), 0);
	run_model(&m, 0x1234567887654321ULL, 40000);
	free_all(&m);
	assert_int_equal(rh_shm_stats(&st), 0);
	assert_int_equal(st.heap_used, 0);
	assert_true(st.blocks_created > 0);
	assert_int_equal(st.blocks_created, st.blocks_destroyed);
}

/* After a fragmenting history, freeing everything must leave each superblock
 * one free span again: nearly a whole superblock fits without growing. */
static void test_alloc_frees_coalesce_fully(void **state)
{
	static struct model m;
	(void)state;
	run_model(&m, 0xfeedfacecafebeefULL, 15000);
	free_all(&m);
	assert_int_equal(heap_used(), 0);

	uint64_t before = heap_size();
	size_t size = superblock_size() - 16 * (size_t)sysconf(_SC_PAGESIZE);
	unsigned char *p = rh_shm_alloc(size);
	assert_non_null(p);
	if (heap_size() != before)
		fail_msg("a %zu-byte block made the heap grow from %llu to %llu bytes: free space "
			 "is fragmented", size, (unsigned long long)before,
			 (unsigned long long)heap_size());
	fill(p, size, 7);
	assert_int_equal(check(p, size, 7), (size_t)-1);
	rh_shm_free(p);
	assert_int_equal(heap_used(), 0);
}

/* Blocks larger than a superblock get one of their own; freeing it must let
 * the next one reuse the space, else a program that cycles 5 MiB buffers
 * grows its heap without end. */
static void test_alloc_large_blocks_reuse_space(void **state)
{
	(void)state;
	size_t size = 5 * MIB + 123;
	unsigned char *p = rh_shm_alloc(size);
	assert_non_null(p);
	assert_true(rh_shm_usable_size(p) >= size);
	fill(p, size, 1);
	assert_int_equal(check(p, size, 1), (size_t)-1);
	rh_shm_free(p);
	uint64_t after_first = heap_size();
	assert_true(after_first >= size);
	for (unsigned i = 0; i < 20; i++) {
		p = rh_shm_alloc(size + i * 4096);
		assert_non_null(p);
		p[0] = 1;
		p[size - 1] = 2;
		rh_shm_free(p);
	}
	if (heap_size() > after_first + 4 * MIB)
		fail_msg("20 alloc/free cycles of a 5 MiB block grew the heap from %llu to %llu",
			 (unsigned long long)after_first, (unsigned long long)heap_size());
	assert_int_equal(heap_used(), 0);
}

/* A block grown step by step across size classes, page spans and a
 * superblock of its own, then shrunk: its bytes follow it. */
static void test_alloc_realloc_ladder_keeps_contents(void **state)
{
	(void)state;
	size_t size = 1;
	unsigned char *p = rh_shm_alloc(size);
	assert_non_null(p);
	fill(p, size, 3);
	while (size < 3 * MIB) {
		size_t next = size * 2 + 5;
		p = rh_shm_realloc(p, next);
		assert_non_null(p);
		if (check(p, size, 3) != (size_t)-1)
			fail_msg("grow %zu -> %zu lost contents", size, next);
		assert_true(rh_shm_usable_size(p) >= next);
		assert_int_equal(heap_used(), next);
		fill(p, next, 3);
		size = next;
	}
	while (size > 8) {
		size_t next = size / 3;
		p = rh_shm_realloc(p, next);
		assert_non_null(p);
		if (check(p, next, 3) != (size_t)-1)
			fail_msg("shrink %zu -> %zu lost contents", size, next);
		assert_int_equal(heap_used(), next);
		size = next;
	}
	rh_shm_free(p);
	assert_int_equal(heap_used(), 0);
}

/* Every alignment up to a page, at sizes around it: the pointer, the usable
 * size, and the reference (a displaced header must still be found). */
static void test_alloc_aligned_blocks_are_complete(void **state)
{
	(void)state;
	static const size_t extra[] = { 1, 0, 1, 2, 40000, 300000 };
	void *blocks[10][6];
	struct rh_shm_ref base_ref;
	unsigned char *base = rh_shm_alloc(32);
	assert_non_null(base);
	assert_int_equal(rh_shm_ref(base, &base_ref), 0);
	for (unsigned a = 0; a < 10; a++) {
		size_t align = (size_t)8 << a;
		for (unsigned k = 0; k < 6; k++) {
			size_t size = k == 0 ? align - 1 : k == 1 ? align : k == 2 ? align + 1
				    : k == 3 ? 3 * align : extra[k];
			unsigned char *p = rh_shm_alloc_aligned(align, size);
			assert_non_null(p);
			if ((uintptr_t)p % align)
				fail_msg("alloc_aligned(%zu, %zu) = %p", align, size, (void *)p);
			assert_true(rh_shm_usable_size(p) >= size);
			assert_true(rh_shm_owns(p));
			fill(p, size, (unsigned)(a * 8 + k));
			struct rh_shm_ref ref;
			assert_int_equal(rh_shm_ref(p, &ref), 0);
			assert_string_equal(ref.heap, base_ref.heap);
			/* File offsets and addresses of one mapping move together. */
			if (ref.offset - base_ref.offset != (uint64_t)(p - base))
				fail_msg("ref of alloc_aligned(%zu, %zu) has offset %llu, expected %llu",
					 align, size, (unsigned long long)ref.offset,
					 (unsigned long long)(base_ref.offset + (uint64_t)(p - base)));
			blocks[a][k] = p;
		}
	}
	for (unsigned a = 0; a < 10; a++)
		for (unsigned k = 0; k < 6; k++) {
			size_t align = (size_t)8 << a;
			size_t size = k == 0 ? align - 1 : k == 1 ? align : k == 2 ? align + 1
				    : k == 3 ? 3 * align : extra[k];
			if (check(blocks[a][k], size, a * 8 + k) != (size_t)-1)
				fail_msg("aligned block %zu/%zu corrupted", align, size);
			rh_shm_free(blocks[a][k]);
		}
	rh_shm_free(base);
	assert_int_equal(heap_used(), 0);
	check_span_descs(NULL);
}

static void test_alloc_owns_only_its_blocks(void **state)
{
	(void)state;
	static int in_data;
	int on_stack = 0;
	char name[64];
	void *ours = rh_shm_alloc(100);
	void *big = rh_shm_alloc(3 * MIB);
	void *theirs = malloc(100);
	assert_non_null(ours);
	assert_non_null(big);
	assert_non_null(theirs);

	assert_true(rh_shm_owns(ours));
	assert_true(rh_shm_owns(big));
	assert_false(rh_shm_owns(theirs));
	assert_false(rh_shm_owns(&on_stack));
	assert_false(rh_shm_owns(&in_data));
	assert_false(rh_shm_owns(NULL));
	assert_false(rh_shm_owns((void *)(uintptr_t)1));

	snprintf(name, sizeof(name), "heap-%d", (int)getpid());
	assert_non_null(rh_shm_heap_name());
	assert_string_equal(rh_shm_heap_name(), name);
	assert_true(rh_shm_enabled());

	struct rh_shm_ref ref;
	assert_int_equal(rh_shm_ref(ours, &ref), 0);
	assert_string_equal(ref.heap, name);
	errno = 0;
	assert_int_equal(rh_shm_ref(theirs, &ref), -1);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(rh_shm_ref(&on_stack, &ref), -1);
	assert_int_equal(errno, EINVAL);

	rh_shm_free(NULL); /* a no-op, as free(NULL) */
	rh_shm_free(ours);
	rh_shm_free(big);
	free(theirs);
	assert_int_equal(heap_used(), 0);
}

/* Sizes near SIZE_MAX must not wrap into small blocks. */
static void test_alloc_huge_requests_fail_cleanly(void **state)
{
	(void)state;
	static const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 15, SIZE_MAX - 4096,
					SIZE_MAX / 2 + 1, (size_t)1 << 62 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (size_t align = 0; align <= 4096; align = align ? align * 8 : 8) {
			errno = 0;
			void *p = align ? rh_shm_alloc_aligned(align, sizes[i]) : rh_shm_alloc(sizes[i]);
			if (p) {
				size_t usable = rh_shm_usable_size(p);
				rh_shm_free(p);
				fail_msg("a request for %zu bytes (alignment %zu) returned a block of "
					 "%zu usable bytes", sizes[i], align, usable);
			}
			assert_int_equal(errno, ENOMEM);
		}
	}
	errno = 0;
	assert_null(rh_shm_calloc(SIZE_MAX / 16 + 2, 16)); /* product wraps */
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	assert_null(rh_shm_calloc((size_t)1 << 33, (size_t)1 << 32));
	assert_int_equal(errno, ENOMEM);

	unsigned char *p = rh_shm_alloc(1000);
	assert_non_null(p);
	fill(p, 1000, 11);
	errno = 0;
	assert_null(rh_shm_realloc(p, SIZE_MAX - 8));
	assert_int_equal(errno, ENOMEM);
	/* A failed realloc leaves the block alone. */
	assert_int_equal(check(p, 1000, 11), (size_t)-1);
	assert_int_equal(heap_used(), 1000);
	rh_shm_free(p);
	assert_int_equal(heap_used(), 0);
}

/* realloc of a LARGE block, with free pages after it, to a size near
 * SIZE_MAX: the page count must not wrap into a small "fits in place". */
static void test_alloc_realloc_of_large_block_to_huge_size_fails(void **state)
{
	(void)state;
	static const size_t sizes[] = { SIZE_MAX - 100, SIZE_MAX - 4096 - 16, SIZE_MAX,
					SIZE_MAX / 2 + 1, (size_t)1 << 63 };
	static const size_t start[] = { 100000, 3 * MIB };
	rh_shm_trim(); /* so what follows the block is free */
	for (size_t k = 0; k < sizeof(start) / sizeof(start[0]); k++) {
		unsigned char *p = rh_shm_alloc(start[k]);
		assert_non_null(p);
		size_t usable = rh_shm_usable_size(p);
		fill(p, start[k], 13);
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			errno = 0;
			void *q = rh_shm_realloc(p, sizes[i]);
			if (q)
				fail_msg("realloc of a %zu-byte block to %zu returned %p (the block was "
					 "at %p), %zu usable bytes", start[k], sizes[i], q, (void *)p,
					 rh_shm_usable_size(q));
			assert_int_equal(errno, ENOMEM);
			/* The block is as it was. */
			assert_int_equal(rh_shm_usable_size(p), usable);
			assert_int_equal(check(p, start[k], 13), (size_t)-1);
			assert_int_equal(heap_used(), start[k]);
		}
		/* And the heap around it is whole: a neighbour does not overlap it. */
		unsigned char *next = rh_shm_alloc(200000);
		assert_non_null(next);
		assert_true(next >= p + usable || next + 200000 <= p);
		fill(next, 200000, 14);
		assert_int_equal(check(p, start[k], 13), (size_t)-1);
		rh_shm_free(next);
		rh_shm_free(p);
	}
	assert_int_equal(heap_used(), 0);
}

/* Bytes the heap file holds (pages allocated to it). */
static uint64_t file_bytes(void)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", test_dir, rh_shm_heap_name());
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* Freed pages go back to the filesystem, so df shows them free. */
static void test_alloc_free_returns_pages_to_filesystem(void **state)
{
	(void)state;
	enum { N = 128 };
	void *blocks[N];
	struct rh_shm_stats stats;
	for (unsigned i = 0; i < N; i++) {
		blocks[i] = rh_shm_alloc(256 * 1024);
		assert_non_null(blocks[i]);
		memset(blocks[i], 0x5a, 256 * 1024);
	}
	uint64_t full = file_bytes();
	assert_true(full >= (uint64_t)N * 256 * 1024);
	for (unsigned i = 0; i < N; i++)
		rh_shm_free(blocks[i]);
	rh_shm_trim();
	uint64_t left = file_bytes();
	assert_int_equal(rh_shm_stats(&stats), 0);
	/* Nearly all of what we freed must be gone from the file. */
	if (left + (uint64_t)N * 256 * 1024 * 7 / 8 > full)
		fail_msg("after freeing %u KiB and trimming, the file still holds %llu of %llu bytes",
			 N * 256, (unsigned long long)left, (unsigned long long)full);
	assert_true(stats.bytes_punched > 0);
	assert_int_equal(stats.heap_used, 0);
}

/* A size class a program uses little takes one page of the file, not a
 * whole span's 64 KiB: a span's pages are reserved as its slots reach them,
 * and a thread's first refill of a class takes one page's worth. */
/* The page descriptor of a small block's span. */
static struct page_desc *span_desc(const void *p)
{
	const struct block_header *bh = (const struct block_header *)p - 1;
	struct superblock *sb = (struct superblock *)(rh_heap->base +
		((uint64_t)(bh->sb_page & RH_SB_PAGE_MASK) << rh_heap->page_shift));
	return &sb->pages[bh->span_index];
}

/* A span's free list goes to the thread whole, unread (the stream), when it
 * holds what the refill wants, and its slots come out one at a time: each
 * free slot once and no live one; the stream's slots not handed out go back
 * to the span when the cache is emptied. The span is the class's current
 * one (only it is bumped part way), so the refill starts there. */
static void test_alloc_partial_span_free_list_taken_whole(void **state)
{
	(void)state;
	enum { N = 400, EXTRA = 300, SIZE = 700 };
	static void *p[N + EXTRA];
	unsigned c = size_class(SIZE), n = 0;
	struct page_desc *d = NULL;
	while (!d && n < N + EXTRA) {
		p[n] = rh_shm_alloc(SIZE);
		assert_non_null(p[n]);
		memset(p[n++], 5, SIZE);
		if (n < N)
			continue;
		rh_shm_trim();
		/* The current span, once it holds ten of the blocks. */
		struct page_desc *e = span_desc(p[n - 1]);
		uint32_t capacity = (uint32_t)(((size_t)e->span_pages << rh_heap->page_shift) / rh_class_size[c]);
		unsigned mine = 0;
		for (unsigned i = 0; i < n; i++)
			mine += span_desc(p[i]) == e;
		if (e->bumped < capacity && mine >= 10)
			d = e;
	}
	assert_non_null(d);
	/* Ten of its live blocks freed, and the thread's cache emptied. */
	unsigned freed = 0;
	for (unsigned i = 0; i < n && freed < 10; i++)
		if (p[i] && span_desc(p[i]) == d) {
			rh_shm_free(p[i]);
			p[i] = NULL;
			freed++;
		}
	assert_int_equal(freed, 10);
	rh_shm_trim();
	struct tbin *b = &rh_tc.bins[c];
	assert_int_equal(b->count, 0);
	uint32_t nfree = d->bumped - d->used;
	assert_true(nfree >= freed && nfree + 1 < b->max);
	assert_int_not_equal(d->free_head, 0);

	/* A refill that wants two blocks takes all of them. */
	b->fill = 2;
	static void *q[N];
	q[0] = rh_shm_alloc(SIZE);
	assert_non_null(q[0]);
	assert_ptr_equal(span_desc(q[0]), d);
	assert_int_equal(d->free_head, 0);
	assert_int_equal(d->used, d->bumped);
	assert_int_not_equal(b->stream_next, 0);
	assert_int_equal(b->streamed, nfree - 1);
	assert_int_equal(b->count, 0);

	/* Handed out in turn: slots of that span, none live, none twice. */
	unsigned got = 1, half = nfree / 2;
	for (; got < half; got++) {
		q[got] = rh_shm_alloc(SIZE);
		assert_non_null(q[got]);
	}
	for (unsigned i = 0; i < got; i++) {
		assert_ptr_equal(span_desc(q[i]), d);
		for (unsigned j = 0; j < n; j++)
			assert_ptr_not_equal(p[j], q[i]);
		for (unsigned j = 0; j < i; j++)
			assert_ptr_not_equal(q[j], q[i]);
		memset(q[i], 6, SIZE);
	}

	/* The rest of the stream goes back to the span, unused. */
	rh_shm_trim();
	assert_int_equal(b->stream_next, 0);
	assert_int_equal(b->streamed, 0);
	assert_int_equal(b->count, 0);
	assert_int_equal(d->bumped - d->used, nfree - got);
	assert_int_not_equal(d->free_head, 0);

	for (unsigned i = 0; i < got; i++)
		rh_shm_free(q[i]);
	for (unsigned i = 0; i < n; i++)
		rh_shm_free(p[i]);
	assert_int_equal(heap_used(), 0);
}

/* The free list of a small span: every slot on it once, each one bumped,
 * as many as the span's slots not in use. */
static void check_free_list(struct page_desc *d, char *span, unsigned c)
{
	static unsigned char seen[4096];
	uint32_t capacity = (uint32_t)(((size_t)d->span_pages << rh_heap->page_shift) / rh_class_size[c]);
	assert_true(capacity <= sizeof(seen));
	memset(seen, 0, capacity);
	uint32_t n = 0;
	for (uint32_t k = d->free_head; k; k = *(uint32_t *)(span + (size_t)(k - 1) * rh_class_size[c] + HDR)) {
		assert_true(k - 1 < d->bumped);
		assert_int_equal(seen[k - 1], 0);
		seen[k - 1] = 1;
		n++;
	}
	assert_int_equal(n, d->bumped - d->used);
}

/* Blocks go back from the thread's cache to their spans a span's run at a
 * time: freed interleaved across spans (odd ones, then even ones from the
 * end), the cache emptied, every span's free list is whole and exact. */
static void test_alloc_flushed_runs_keep_free_lists_exact(void **state)
{
	(void)state;
	enum { N = 3000, SIZE = 100 };
	static void *p[N];
	unsigned c = size_class(SIZE);
	for (unsigned i = 0; i < N; i++) {
		p[i] = rh_shm_alloc(SIZE);
		assert_non_null(p[i]);
	}
	for (unsigned i = 1; i < N; i += 2)
		rh_shm_free(p[i]);
	for (unsigned i = N - 2 + N % 2; i < N; i -= 2)
		rh_shm_free(p[i]);
	rh_shm_trim();
	/* Every span the blocks were in (a block's header still names it). */
	for (unsigned i = 0; i < N; i++) {
		struct page_desc *d = span_desc(p[i]);
		if (d->kind != RH_PAGE_SMALL || d->size_class != c)
			continue;  /* freed whole, or taken since */
		const struct block_header *bh = (const struct block_header *)p[i] - 1;
		char *sb = rh_heap->base + ((uint64_t)(bh->sb_page & RH_SB_PAGE_MASK) << rh_heap->page_shift);
		check_free_list(d, sb + ((size_t)bh->span_index << rh_heap->page_shift), c);
	}
	assert_int_equal(heap_used(), 0);
}

/* A batch of blocks allocated and freed in turn settles in the thread's
 * cache: after a few rounds the pools are not asked again, for batches up
 * to 400 small blocks (bins held 128 once: a batch of 200 then took two
 * refills and two flushes a round). A stream shorter than what the refill
 * wanted once left the cache short, so that every round took a refill and
 * a flush of half the batch. In a child: a heap of its own, as a program
 * starts. */
static void child_batches_settle(void)
{
	static const struct { unsigned n; size_t size; } batches[] = {
		{ 80, 16 }, { 100, 48 }, { 127, 80 }, { 200, 16 }, { 400, 48 },
	};
	for (unsigned k = 0; k < sizeof(batches) / sizeof(batches[0]); k++) {
		enum { ROUNDS = 200 };
		static void *a[400];
		size_t size = batches[k].size;
		unsigned long refills = 0, flushes = 0;
		for (unsigned r = 0; r < ROUNDS; r++) {
			if (r == ROUNDS / 2)
				refills = rh_tc.refills, flushes = rh_tc.flushes;
			for (unsigned i = 0; i < batches[k].n; i++) {
				if (!(a[i] = rh_shm_alloc(size)))
					exit(3);
				*(volatile char *)a[i] = 1;
			}
			for (unsigned i = 0; i < batches[k].n; i++)
				rh_shm_free(a[i]);
		}
		refills = rh_tc.refills - refills;
		flushes = rh_tc.flushes - flushes;
		if (refills > 10 || flushes > 10) {
			fprintf(stderr, "batches of %u blocks of %zu bytes: %lu refills and %lu flushes in %u rounds\n",
				batches[k].n, size, refills, flushes, ROUNDS / 2);
			exit(4);
		}
	}
}

static void test_alloc_batches_settle_in_the_cache(void **state)
{
	(void)state;
	test_child_ok(child_batches_settle);
}

/* A trim with several emptied spans kept for a class: each goes back once
 * (a decay under the trim's walk freed them again: free bins that looped,
 * and the trim never returned). */
static void child_trim_kept_spans(void)
{
	enum { N = 3000 };
	static void *a[N];
	alarm(60);
	for (unsigned round = 0; round < 3; round++) {
		for (unsigned i = 0; i < N; i++)
			if (!(a[i] = rh_shm_alloc(48)))
				exit(3);
		for (unsigned i = 0; i < N; i++)
			rh_shm_free(a[i]);
		rh_shm_trim();
	}
	if (heap_used() != 0)
		exit(4);
}

static void test_alloc_trim_with_kept_spans(void **state)
{
	(void)state;
	test_child_ok(child_trim_kept_spans);
}

/* Blocks allocated by a thread past its exit (a key destructor of its own,
 * run after the allocator's): its cache is closed, and no span's free list
 * may go to it, which nothing would give back (100 threads grew the heap
 * from 208 KB to 3.7 MB). */
static pthread_key_t late_key;
static void *late_blocks[200];
static unsigned nlate;

static void late_alloc(void *arg)
{
	(void)arg;
	if (nlate < sizeof(late_blocks) / sizeof(late_blocks[0]))
		late_blocks[nlate++] = rh_shm_alloc(48);
}

static void *batch_then_exit(void *arg)
{
	static void *a[2000];
	(void)arg;
	pthread_setspecific(late_key, (void *)1);
	for (unsigned i = 0; i < 2000; i++)
		a[i] = rh_shm_alloc(48);
	for (unsigned i = 0; i < 2000; i++)
		rh_shm_free(a[i]);
	return NULL;
}

static void child_alloc_after_thread_exit(void)
{
	alarm(60);
	rh_shm_free(rh_shm_alloc(48)); /* the allocator's own key first */
	if (pthread_key_create(&late_key, late_alloc))
		exit(3);
	for (unsigned i = 0; i < 200; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, batch_then_exit, NULL) || pthread_join(t, NULL))
			exit(4);
	}
	for (unsigned i = 0; i < nlate; i++)
		rh_shm_free(late_blocks[i]);
	rh_shm_trim();
	struct stat st;
	if (fstat(heap_fd(rh_heap), &st) != 0)
		exit(5);
	if (st.st_blocks * 512 > (2 << 20)) {
		fprintf(stderr, "after 200 threads the heap holds %lld bytes\n", (long long)st.st_blocks * 512);
		exit(6);
	}
}

static void test_alloc_after_thread_exit_keeps_no_span(void **state)
{
	(void)state;
	test_child_ok(child_alloc_after_thread_exit);
}

/* A batch larger than the bin: its blocks come back from their spans' free
 * lists a whole list at a time (the bin's stream), not a refill's worth of
 * blocks each moved through the cache, and the spans the batch emptied are
 * kept with their slots set up, not made anew. 4000 blocks of 48 bytes: 4
 * refills a round, where the first took 7 and neither 13. A round that
 * meets the pool's decay (every 250 ms) makes its spans again: half of the
 * rounds are enough. */
static void child_big_batches_stream(void)
{
	enum { N = 4000, ROUNDS = 40 };
	static void *a[N];
	unsigned quick = 0;
	for (unsigned r = 0; r < ROUNDS; r++) {
		unsigned long refills = rh_tc.refills;
		for (unsigned i = 0; i < N; i++) {
			if (!(a[i] = rh_shm_alloc(48)))
				exit(3);
			memset(a[i], (int)r, 48);
		}
		for (unsigned i = 0; i < N; i++) {
			for (unsigned k = 0; k < 48; k++)
				if (((unsigned char *)a[i])[k] != (unsigned char)r)
					exit(5);  /* a block handed out twice */
			rh_shm_free(a[i]);
		}
		quick += r > 0 && rh_tc.refills - refills <= 5;
	}
	if (quick < ROUNDS / 2) {
		fprintf(stderr, "batches of %u blocks: %u of %u rounds with at most 5 refills\n", N, quick, ROUNDS);
		exit(4);
	}
}

static void test_alloc_big_batches_stream(void **state)
{
	(void)state;
	test_child_ok(child_big_batches_stream);
}

/* A refill that takes many slots of a span gives their pages memory in one
 * call: once the thread's refills of a class are full size, a span of
 * 3000-byte blocks (21 slots, 16 pages) takes about three calls (one per
 * refill that reaches it), where committing as many pages again as the
 * span had used took about six. */
static void child_refill_commits_its_slots_at_once(void)
{
	enum { N = 840, WARM = 210, SIZE = 3000 };
	static void *p[N];
	unsigned long before = 0;
	for (unsigned i = 0; i < N; i++) {
		if (i == WARM)
			before = __atomic_load_n(&commit_calls, __ATOMIC_RELAXED);
		if (!(p[i] = rh_shm_alloc(SIZE)))
			exit(3);
		memset(p[i], 1, SIZE);
	}
	unsigned long calls = __atomic_load_n(&commit_calls, __ATOMIC_RELAXED) - before;
	/* The spans begun after the warm-up: those of the later blocks that
	 * none of the earlier ones is in. */
	unsigned spans = 0;
	for (unsigned i = WARM; i < N; i++) {
		unsigned j = 0;
		while (j < i && span_desc(p[j]) != span_desc(p[i]))
			j++;
		spans += j == i;
	}
	if (spans < 20)
		exit(4);
	if (calls > 4 * spans) {
		fprintf(stderr, "%lu calls to commit %u spans\n", calls, spans);
		exit(5);
	}
}

static void test_alloc_refill_commits_its_slots_at_once(void **state)
{
	(void)state;
	test_child_ok(child_refill_commits_its_slots_at_once);
}

static void test_alloc_little_used_class_takes_a_page(void **state)
{
	(void)state;
	static const size_t sizes[] = { 40, 200, 1000, 3000, 2000 };
	void *first = rh_shm_alloc(100);
	assert_non_null(first);
	uint64_t before = file_bytes();
	void *p[5];
	for (unsigned i = 0; i < 5; i++) {
		p[i] = rh_shm_alloc(sizes[i]);
		assert_non_null(p[i]);
		memset(p[i], 7, sizes[i]);
	}
	uint64_t grew = file_bytes() - before;
	if (grew > 5 * 4096)
		fail_msg("one block of each of 5 new classes took %llu bytes of the file",
			 (unsigned long long)grew);
	/* Used more, a class takes its span's pages as it needs them. */
	enum { N = 3000 };
	static void *more[N];
	for (unsigned i = 0; i < N; i++) {
		more[i] = rh_shm_alloc(40);
		assert_non_null(more[i]);
		memset(more[i], 9, 40);
	}
	for (unsigned i = 0; i < N; i++)
		rh_shm_free(more[i]);
	for (unsigned i = 0; i < 5; i++)
		rh_shm_free(p[i]);
	rh_shm_free(first);
	assert_int_equal(heap_used(), 0);
}

/* The page classes that free reads instead of a block's header: 1 + the
 * class on every page of a SMALL span, 0 once the span is freed, and 0
 * under a LARGE block (else its free would cache it as a small block). */
static unsigned page_class(const void *p)
{
	return rh_heap->classes[((uintptr_t)p - (uintptr_t)rh_heap->base) >> RH_CLASS_GRAIN];
}

static void test_alloc_page_classes_follow_spans(void **state)
{
	(void)state;
	enum { N = 32, SIZE = 23000 };
	unsigned c = size_class(SIZE);
	void *s[N];
	for (unsigned i = 0; i < N; i++) {
		s[i] = rh_shm_alloc(SIZE);
		assert_non_null(s[i]);
		assert_int_equal(page_class(s[i]), c + 1);
		assert_int_equal(page_class((char *)s[i] + SIZE - 1), c + 1);
	}
	for (unsigned i = 0; i < N; i++)
		rh_shm_free(s[i]);
	rh_shm_trim(); /* the thread's cache back to the spans: all but the current one freed */
	unsigned cleared = 0;
	for (unsigned i = 0; i < N; i++) {
		unsigned k = page_class(s[i]);
		if (k != 0 && k != c + 1)
			fail_msg("block %u's page reads class %u after its span was freed", i, k);
		cleared += k == 0;
	}
	/* The current span stays: one of the four these blocks filled (eight
	 * slots of 24 KiB each). */
	if (cleared < N / 2)
		fail_msg("%u of %u blocks' pages still read their class after their spans were freed",
			 N - cleared, N);
	/* A LARGE block where the spans were: its free takes the slow path. */
	void *l = rh_shm_alloc(150000);
	assert_non_null(l);
	assert_int_equal(page_class(l), 0);
	memset(l, 3, 150000);
	rh_shm_free(l);
	assert_int_equal(heap_used(), 0);
}

/* A block of 0 bytes aligned to a page or more: its data lies inside its
 * own span, not at the first byte of the next page (where free took it
 * for a block of the span there). */
static void test_alloc_zero_bytes_aligned_to_pages(void **state)
{
	(void)state;
	static const size_t aligns[] = { 4096, 8192, 65536 };
	for (unsigned i = 0; i < 3; i++) {
		uint64_t used = heap_used();
		void *z = rh_shm_alloc_aligned(aligns[i], 0);
		assert_non_null(z);
		assert_int_equal((uintptr_t)z % aligns[i], 0);
		assert_true(rh_shm_usable_size(z) >= 1);
		unsigned char *q = rh_shm_alloc(40);
		assert_non_null(q);
		fill(q, 40, 11);
		rh_shm_free(z);
		assert_int_equal(heap_used(), used + 40);
		unsigned char *r = rh_shm_alloc(40);
		assert_non_null(r);
		fill(r, 40, 12);
		if ((uintptr_t)r < (uintptr_t)q + 40 && (uintptr_t)q < (uintptr_t)r + 40)
			fail_msg("alignment %zu: a block at %p overlaps a live one at %p", aligns[i], (void *)r,
				 (void *)q);
		assert_int_equal(check(q, 40, 11), (size_t)-1);
		rh_shm_free(r);
		rh_shm_free(q);
		assert_int_equal(heap_used(), used);
	}
}

/* A LARGE block grown a few bytes at a time moves a logarithmic number of
 * times (each move leaves a quarter more room), and keeps its contents. */
static void test_alloc_realloc_growth_moves_rarely(void **state)
{
	(void)state;
	size_t len = 40000;
	unsigned char *p = rh_shm_alloc(len);
	assert_non_null(p);
	fill(p, len, 21);
	unsigned moves = 0;
	while (len < 2 * MIB) {
		size_t grown = len + 1 + len % 61;
		unsigned char *q = rh_shm_realloc(p, grown);
		assert_non_null(q);
		moves += q != p;
		memset(q + len, 0, grown - len);
		p = q;
		len = grown;
	}
	assert_int_equal(check(p, 40000, 21), (size_t)-1);
	/* 40 KB to 2 MiB is 18 steps of a quarter; free pages after a block
	 * let it grow in place sometimes (without the room, it moves at every
	 * page it cannot take in place: 23 times here, up to 500). */
	if (moves > 18)
		fail_msg("growing a block from 40 KB to 2 MiB moved it %u times", moves);
	assert_int_equal(heap_used(), len);
	rh_shm_free(p);
	assert_int_equal(heap_used(), 0);
}

/* Without a trim, freed pages are kept for reuse only within a budget (32
 * MiB or half the heap), and go back once they have been free for a second
 * and the allocator next works on that pool. */
static void test_alloc_freed_pages_are_kept_within_budget_and_age(void **state)
{
	(void)state;
	enum { N = 48, SIZE = 3 * MIB };
	void *blocks[N];
	rh_shm_trim(); /* what earlier tests left */
	uint64_t start = file_bytes();
	for (unsigned i = 0; i < N; i++) {
		blocks[i] = rh_shm_alloc(SIZE);
		assert_non_null(blocks[i]);
		memset(blocks[i], 0x33, SIZE);
	}
	uint64_t full = file_bytes();
	assert_true(full >= (uint64_t)N * SIZE);
	for (unsigned i = 0; i < N; i++)
		rh_shm_free(blocks[i]);
	struct rh_shm_stats st;
	assert_int_equal(rh_shm_stats(&st), 0);
	uint64_t budget = st.heap_size / 2 > 32 * MIB ? st.heap_size / 2 : 32 * MIB;
	uint64_t kept = file_bytes();
	/* The budget, the thread's cache of LARGE spans (8 MiB), headers. */
	if (kept > budget + 8 * MIB + 2 * MIB)
		fail_msg("%u MiB freed in a heap of %llu MiB: the file keeps %llu MiB, over the "
			 "budget of %llu MiB", N * SIZE / MIB, (unsigned long long)st.heap_size / MIB,
			 (unsigned long long)kept / MIB, (unsigned long long)budget / MIB);
	assert_true(st.bytes_punched > 0);
	/* A block reused soon after is served from kept pages: nothing new. */
	void *again = rh_shm_alloc(SIZE);
	assert_non_null(again);
	memset(again, 0x44, SIZE);
	assert_true(file_bytes() <= kept);
	rh_shm_free(again);
	/* A second later, the next slow-path free returns what aged. A block
	 * of an odd size misses the thread's cache, which goes to the pool
	 * (as freed now). */
	struct timespec pause = { 1, 300 * 1000 * 1000 };
	nanosleep(&pause, NULL);
	void *odd = rh_shm_alloc(SIZE + 5 * MIB);
	assert_non_null(odd);
	rh_shm_free(odd);
	void *odd2 = rh_shm_alloc(SIZE + 9 * MIB);
	assert_non_null(odd2);
	rh_shm_free(odd2);
	/* What is left: odd2's pages, freed just now, and what the thread's
	 * LARGE cache held until odd's miss returned it (8 MiB at most). */
	uint64_t left = file_bytes();
	if (left > start + SIZE + 9 * MIB + 8 * MIB + 2 * MIB)
		fail_msg("1.3 s after freeing, the file still keeps %llu MiB (was %llu MiB, "
			 "%llu MiB at the start)", (unsigned long long)left / MIB,
			 (unsigned long long)kept / MIB, (unsigned long long)start / MIB);
	assert_int_equal(heap_used(), 0);
}

/* A program may fill a block up to its usable size: a realloc that moves
 * the block keeps every one of those bytes, not just the requested ones. */
static void test_alloc_realloc_keeps_every_usable_byte(void **state)
{
	(void)state;
	static const size_t from[] = { 20, 100, 40000, 300000 };
	static const size_t to[] = { 4000, 100000, 3 * MIB, 5 * MIB };
	for (unsigned i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		unsigned char *p = rh_shm_alloc(from[i]);
		assert_non_null(p);
		size_t usable = rh_shm_usable_size(p);
		assert_true(usable >= from[i]);
		fill(p, usable, 30 + i);
		unsigned char *q = rh_shm_realloc(p, to[i]);
		assert_non_null(q);
		size_t bad = check(q, usable, 30 + i);
		if (bad != (size_t)-1)
			fail_msg("realloc(%zu -> %zu): byte %zu of %zu usable bytes lost", from[i], to[i],
				 bad, usable);
		rh_shm_free(q);
	}
	assert_int_equal(heap_used(), 0);
}

/* Key destructors that run after the allocator's own (it closed the
 * thread's caches) may still allocate and free: a LARGE block freed then
 * goes back to its pool, not into a cache no one will empty again. */
static pthread_key_t late_key;

static void late_destructor(void *arg)
{
	(void)arg;
	unsigned char *p = rh_shm_alloc(MIB);
	if (p) {
		memset(p, 7, MIB);
		rh_shm_free(p);
	}
}

static void *late_thread(void *arg)
{
	(void)arg;
	pthread_setspecific(late_key, (void *)1);
	rh_shm_free(rh_shm_alloc(64));
	return NULL;
}

static void test_alloc_large_free_after_thread_exit_is_kept_by_no_one(void **state)
{
	(void)state;
	rh_shm_free(rh_shm_alloc(64)); /* the allocator's key first: its destructor runs first */
	assert_int_equal(pthread_key_create(&late_key, late_destructor), 0);
	rh_shm_trim();
	uint64_t start = file_bytes(), used = heap_used();
	for (unsigned i = 0; i < 20; i++) {
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, late_thread, NULL), 0);
		assert_int_equal(pthread_join(t, NULL), 0);
	}
	rh_shm_trim();
	uint64_t left = file_bytes();
	pthread_key_delete(late_key);
	if (left > start + 2 * MIB)
		fail_msg("20 threads each freed 1 MiB in a late key destructor: after a trim the "
			 "file holds %llu KiB more than before", (unsigned long long)(left - start) / 1024);
	assert_int_equal(heap_used(), used);
}

/* A forked child records its blocks' call sites in its own journal, even
 * for a caller its parent had just seen. */
static __attribute__((noinline)) void *alloc_here(size_t n)
{
	void *p = rh_shm_alloc(n);
	__asm__ volatile("" ::: "memory");
	return p;
}

static bool site_is_recorded(void *p)
{
	struct block_header *bh = (struct block_header *)p - 1;
	uint64_t off = (uint64_t)bh->site << 3;
	if (!off || off + sizeof(struct journal_site) > rh_heap->mapped_end)
		return false;
	const struct journal_site *s = (const struct journal_site *)(rh_heap->base + off);
	return s->rec.tag == RH_REC_SITE;
}

static void child_alloc_here(void)
{
	void *q = alloc_here(40);
	int ok = q && site_is_recorded(q);
	rh_shm_free(q);
	if (!ok)
		exit(3);
}

static void test_alloc_forked_child_records_its_own_sites(void **state)
{
	(void)state;
	if (!rh_options.trace_depth)
		skip();
	/* Sites enough that the parent's locator lies past a fresh journal's. */
	for (unsigned i = 0; i < 64; i++)
		rh_shm_free(rh_shm_alloc(8 + i));
	void *p = alloc_here(40);
	assert_non_null(p);
	assert_true(site_is_recorded(p));
	rh_shm_free(p);
	int status = test_in_child(child_alloc_here);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("the child's block points at no call-site record of its own journal");
}

/* A big block freed while its pool's lock is taken (a producer thread
 * allocating what this one consumes): not waited for, the span goes onto
 * the pool's remote-free list, and the next allocation that misses the
 * thread's cache takes it back from there (the same pages again). */
static void test_alloc_free_does_not_wait_for_a_busy_pool(void **state)
{
	(void)state;
	size_t size = 9u << 20; /* past the thread's cache of big blocks */
	char *p = rh_shm_alloc(size);
	assert_non_null(p);
	memset(p, 1, 4096);
	struct heap *h = rh_heap;
	uint64_t pushed = 0;
	for (unsigned i = 0; i < RH_MAX_POOLS; i++)
		pushed += __atomic_load_n(&h->hdr->pools[i].remote_count, __ATOMIC_RELAXED);
	__atomic_store_n(&busy_trylocks, 1, __ATOMIC_RELAXED);
	rh_shm_free(p);
	assert_int_equal(__atomic_load_n(&busy_trylocks, __ATOMIC_RELAXED), 0);
	uint64_t waiting = 0, now = 0;
	for (unsigned i = 0; i < RH_MAX_POOLS; i++) {
		now += __atomic_load_n(&h->hdr->pools[i].remote_count, __ATOMIC_RELAXED);
		waiting |= __atomic_load_n(&h->hdr->pools[i].remote_free, __ATOMIC_RELAXED);
	}
	assert_int_equal(now, pushed + 1);
	assert_true(waiting != 0);
	struct rh_shm_stats st;
	assert_int_equal(rh_shm_stats(&st), 0);
	char *q = rh_shm_alloc(size);
	assert_ptr_equal(q, p);
	waiting = 0;
	for (unsigned i = 0; i < RH_MAX_POOLS; i++)
		waiting |= __atomic_load_n(&h->hdr->pools[i].remote_free, __ATOMIC_RELAXED);
	assert_int_equal(waiting, 0);
	rh_shm_free(q);
}

/* A fork made by a signal handler that interrupted a free or an allocation:
 * the child returns into it after its own fork handling cleared the heap.
 * Finishing there must not crash: the free of a block that is now the
 * child's private copy does nothing, and a count goes nowhere. */
static void *interrupted_block;
static struct heap *interrupted_heap;

static void child_finishes_interrupted_calls(void)
{
	/* As free_block does after its fast path, with what it read before. */
	struct block_header *bh = (struct block_header *)interrupted_block - 1;
	count(100, 1); /* small_start's count, past the fork */
	free_slow(interrupted_heap, bh, 1);
	void *q = rh_shm_alloc(64); /* and the child's own heap works */
	if (!q || heap_is_own(interrupted_block))
		exit(1);
	memset(q, 1, 64);
	rh_shm_free(q);
}

static void test_alloc_calls_interrupted_by_fork_finish_in_the_child(void **state)
{
	(void)state;
	interrupted_block = rh_shm_alloc(100);
	assert_non_null(interrupted_block);
	interrupted_heap = rh_heap;
	int status = test_in_child(child_finishes_interrupted_calls);
	if (WIFSIGNALED(status))
		fail_msg("the child died of signal %d", WTERMSIG(status));
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	rh_shm_free(interrupted_block);
}

/* 3000 call sites counted by one thread: its counter tables fill (1024,
 * 2048 entries...) and are followed by others, and the reader sums every
 * entry of a site, in whichever table it is. */
#define MANY_SITES 3000
struct site_sum {
	uint64_t base;              /* the synthetic frames' first address */
	int64_t bytes, blocks, found;
};

static int sum_site(const struct rh_site_info *si, void *arg)
{
	struct site_sum *sum = arg;
	if (si->depth == 2 && si->frames[1] == sum->base && si->frames[0] - sum->base - 1 < MANY_SITES) {
		uint64_t k = si->frames[0] - sum->base - 1;
		if (si->live_blocks != 1 || si->live_bytes != (int64_t)(16 + k % 50) || si->total_allocs != 2)
			return -1;
		sum->bytes += si->live_bytes;
		sum->blocks += si->live_blocks;
		sum->found++;
	}
	return 0;
}

static void test_alloc_many_sites_count_across_tables(void **state)
{
	(void)state;
	if (!rh_options.trace_depth)
		skip();
	static void *blocks[MANY_SITES];
	struct site_sum sum = { .base = 0x5000000000ull };
	/* Each site makes two blocks and frees one. */
	for (unsigned round = 0; round < 2; round++)
		for (unsigned k = 0; k < MANY_SITES; k++) {
			uint64_t frames[2] = { sum.base + 1 + k, sum.base };
			uint32_t site = journal_site(frames, 2);
			assert_true(site != 0);
			void *p = alloc_block(16 + k % 50, 16, site);
			assert_non_null(p);
			if (round)
				rh_shm_free(blocks[k]);
			blocks[k] = p;
		}
	char dir[512];
	snprintf(dir, sizeof(dir), "%s", test_dir);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	struct rh_heap *h = NULL;
	assert_int_equal(rh_heap_open(dfd, rh_shm_heap_name(), &h), 0);
	int rc = rh_heap_walk_sites(h, sum_site, &sum);
	rh_heap_close(h);
	close(dfd);
	assert_int_equal(rc, 0);
	assert_int_equal(sum.found, MANY_SITES);
	assert_int_equal(sum.blocks, MANY_SITES);
	for (unsigned k = 0; k < MANY_SITES; k++)
		rh_shm_free(blocks[k]);
}

/* --- Private pages (the shim's mallocs of RH_SHMALLOC_PRIVATE_SIZE and more) */

#define PRIVATE_BLOCK (16 * MIB)

/* A block with private pages, as the shim's malloc makes one. */
static void *alloc_private(size_t n)
{
	alloc_private_min = 8 * MIB;
	void *p = alloc_block(n, 16, 0);
	alloc_private_min = SIZE_MAX;
	return p;
}

/* The heap file's bytes at [off, off+n), read with pread (not the mapping). */
static void file_read(uint64_t off, void *buf, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", test_dir, rh_shm_heap_name());
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, n, (off_t)off), (ssize_t)n);
	close(fd);
}

/* Whether the mapping holding addr is of this process's heap file
 * (/proc/self/maps). */
static bool maps_heap_file(const void *addr)
{
	char line[1024];
	bool heap = false;
	FILE *f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
			heap = strstr(line, rh_shm_heap_name()) != NULL;
			break;
		}
	}
	fclose(f);
	return heap;
}

/* Private pages take nothing from the filesystem, however much they are
 * written; rh_shm_ref moves them into the file; a freed private span is the
 * file's again. */
static void test_alloc_private_pages_stay_out_of_the_file(void **state)
{
	(void)state;
	const size_t n = PRIVATE_BLOCK;
	rh_shm_free(rh_shm_alloc(16)); /* the heap exists */
	uint64_t before = file_bytes(), used = heap_used();
	unsigned char *p = alloc_private(n);
	assert_non_null(p);
	assert_true(rh_shm_owns(p));
	assert_true(maps_heap_file(p));      /* the header's page */
	assert_false(maps_heap_file(p + n / 2));
	assert_true(rh_shm_usable_size(p) >= n);
	fill(p, n, 7);
	if (file_bytes() > before + MIB)
		fail_msg("a %zu-byte private block, all written, took %llu bytes of the file", n,
			 (unsigned long long)(file_bytes() - before));
	assert_int_equal(heap_used(), used + n);

	/* Shared on request: the file then holds what the block held. */
	struct rh_shm_ref ref;
	assert_int_equal(rh_shm_ref(p, &ref), 0);
	assert_int_equal(check(p, n, 7), (size_t)-1);
	assert_true(file_bytes() >= before + n);
	unsigned char *copy = malloc(n);
	assert_non_null(copy);
	file_read(ref.offset, copy, n);
	assert_int_equal(check(copy, n, 7), (size_t)-1);
	p[n - 1] ^= 0xff; /* and the block is the file's memory now */
	file_read(ref.offset + n - 1, copy, 1);
	assert_int_equal(copy[0], p[n - 1]);
	rh_shm_free(p);

	/* Freed without being shared: the same pages, reused through the API,
	 * are the file's again (the pages kept from the block above go back
	 * first: a private block takes a span holding memory only where no
	 * other fits). */
	rh_shm_trim();
	p = alloc_private(n);
	assert_non_null(p);
	fill(p, n, 9);
	rh_shm_free(p);
	unsigned char *q = rh_shm_alloc(n);
	assert_ptr_equal(q, p);
	fill(q, n, 11);
	errno = EDOM; /* a call that succeeds leaves errno alone */
	assert_int_equal(rh_shm_ref(q, &ref), 0);
	assert_int_equal(errno, EDOM);
	file_read(ref.offset, copy, n);
	assert_int_equal(check(copy, n, 11), (size_t)-1);
	rh_shm_free(q);

	/* Aligned to a page: the data starts on the first private page. */
	alloc_private_min = 8 * MIB;
	unsigned char *a = alloc_block(n, 4096, 0);
	alloc_private_min = SIZE_MAX;
	assert_non_null(a);
	assert_int_equal((uintptr_t)a % 4096, 0);
	fill(a, n, 13);
	if (maps_heap_file(a + n / 2))
		fail_msg("a page-aligned private block's pages are the heap file's");
	assert_int_equal(rh_shm_ref(a, &ref), 0);
	file_read(ref.offset, copy, n);
	assert_int_equal(check(copy, n, 13), (size_t)-1);
	rh_shm_free(a);
	free(copy);
	assert_int_equal(heap_used(), used);

	/* A block freed already is not one to share. */
	void *gone = rh_shm_alloc(100);
	rh_shm_free(gone);
	errno = ENOMEM;
	assert_int_equal(rh_shm_ref(gone, &ref), -1);
	assert_int_equal(errno, EINVAL);
}

/* A freed private block keeps one committed page, and counts as no more
 * among the pages its pool keeps for reuse: the pool's later frees still
 * keep their pages instead of punching them. In a child, whose heap and
 * pools start empty. */
/* With alloc_private_adapts (the shim's default), a freed private block of
 * up to PRIVATE_ADAPT_MAX whose pages were mostly used raises the threshold
 * to the smallest span that holds it, as the C library raises its mmap
 * threshold: a program that allocates and frees such a buffer again and
 * again gets it from the file after the first time, and then the same pages
 * each time, instead of new private pages. A block barely touched, or a
 * larger one, leaves the threshold alone. */
static int private_reset(void **state)
{
	(void)state;
	alloc_private_adapts = false;
	alloc_private_min = SIZE_MAX;
	return 0;
}

static void test_alloc_private_threshold_adapts(void **state)
{
	(void)state;
	const size_t n = 12 * MIB, page = (size_t)1 << rh_heap->page_shift;
	rh_shm_free(rh_shm_alloc(16)); /* the heap exists */
	alloc_private_min = 8 * MIB;
	alloc_private_adapts = true;
	unsigned char *p = alloc_block(n, 16, 0);
	assert_non_null(p);
	assert_false(maps_heap_file(p + n / 2));
	memset(p, 1, n / 4);
	rh_shm_free(p);
	assert_int_equal(alloc_private_min, 8 * MIB);
	p = alloc_block(n, 16, 0);
	assert_non_null(p);
	assert_false(maps_heap_file(p + n / 2));
	memset(p, 1, n);
	rh_shm_free(p);
	size_t now = alloc_private_min;
	assert_int_equal(now, n + page);
	p = alloc_block(n, 16, 0);
	assert_non_null(p);
	assert_true(maps_heap_file(p + n / 2));
	memset(p, 2, n);
	rh_shm_free(p);
	uint64_t file = file_bytes();
	for (unsigned i = 0; i < 5; i++) {
		unsigned char *q = alloc_block(n, 16, 0);
		assert_ptr_equal(q, p);
		memset(q, 3, n);
		rh_shm_free(q);
	}
	assert_int_equal(file_bytes(), file);
	/* Above PRIVATE_ADAPT_MAX: private, and the threshold stays; at it,
	 * the threshold rises to it. */
	p = alloc_block(PRIVATE_ADAPT_MAX + 1, 16, 0);
	assert_non_null(p);
	assert_false(maps_heap_file(p + PRIVATE_ADAPT_MAX / 2));
	memset(p, 4, PRIVATE_ADAPT_MAX + 1);
	rh_shm_free(p);
	assert_int_equal(alloc_private_min, now);
	p = alloc_block(PRIVATE_ADAPT_MAX, 16, 0);
	assert_non_null(p);
	assert_false(maps_heap_file(p + PRIVATE_ADAPT_MAX / 2));
	memset(p, 5, PRIVATE_ADAPT_MAX);
	rh_shm_free(p);
	assert_int_equal(alloc_private_min, PRIVATE_ADAPT_MAX + page);
	alloc_private_adapts = false;
	alloc_private_min = SIZE_MAX;
	assert_int_equal(heap_used(), 0);
}

/* A program that allocates, fills and frees buffers of varying sizes, one
 * at a time, gets the pages it freed again: a fit that holds memory comes
 * before a tighter one that was punched (which, taken, made the kept one
 * be punched in turn: every page new each time). In a fresh heap (a
 * child), where the pool keeps 32 MiB of freed pages. */
static void child_varying_buffers(void)
{
	uint64_t rng = 0xb0f;
	unsigned long bytes = 0;
	for (unsigned k = 0; k < 60; k++) {
		if (k == 20)
			bytes = __atomic_load_n(&commit_bytes, __ATOMIC_RELAXED);
		size_t n = 4 * MIB + (size_t)(rnd_next(&rng) % 20480) * 1024;
		unsigned char *p = rh_shm_alloc(n);
		if (!p)
			exit(3);
		for (size_t off = 0; off < n; off += 4096)
			p[off] = (unsigned char)k;
		rh_shm_free(p);
	}
	/* The pages of one buffer, at most, are new (a larger one than any
	 * before; descriptors' header pages). */
	bytes = __atomic_load_n(&commit_bytes, __ATOMIC_RELAXED) - bytes;
	if (bytes > 24 * MIB) {
		fprintf(stderr, "40 buffers of 4 to 24 MiB, one at a time, gave %lu MiB new pages\n", bytes >> 20);
		exit(4);
	}
}

static void test_alloc_varying_buffers_reuse_kept_pages(void **state)
{
	(void)state;
	test_child_ok(child_varying_buffers);
}

/* A private block (whose span commits its first page and punches the
 * rest) takes a punched fit, not a span whose pages are kept for reuse
 * (that one would lose them): when the punched fit is the tightest, and
 * when the kept one is. A block of `punched` MiB is freed and its pages
 * punched, one of `kept` MiB freed and its pages kept, then a private block
 * of `want` MiB is made. */
static void private_spares(size_t punched, size_t kept, size_t want)
{
	unsigned char *c = rh_shm_alloc(punched * MIB), *a = rh_shm_alloc(kept * MIB);
	if (!a || !c)
		exit(3);
	memset(c, 1, punched * MIB);
	memset(a, 2, kept * MIB);
	rh_shm_free(c);
	rh_shm_trim();        /* c's pages punched */
	rh_shm_free(a);       /* a's kept */
	uint64_t before = file_bytes();
	alloc_private_min = 8 * MIB;
	unsigned char *p = alloc_block(want * MIB, 16, 0);
	alloc_private_min = SIZE_MAX;
	if (!p)
		exit(5);
	if (file_bytes() + MIB < before) {
		fprintf(stderr, "a private block of %zu MiB took the place of kept pages: the file went from %llu to %llu bytes\n",
			want, (unsigned long long)before, (unsigned long long)file_bytes());
		exit(4);
	}
	rh_shm_free(p);
}

static void child_private_spares_kept_pages(void)
{
	private_spares(9, 16, 9);
}

static void child_private_prefers_punched_fit(void)
{
	private_spares(20, 12, 10);
}

/* Where every fit holds kept pages, a private block takes new address
 * space only up to PRIVATE_GROWTH_MAX: a block shrinking step by step, with
 * a smaller one filled and freed between, would otherwise add a superblock
 * each time (the file's size grew to 4 GiB in 300 steps). */
static void child_private_growth_bounded(void)
{
	char path[512];
	struct stat st;
	alloc_private_min = 8 * MIB;
	for (unsigned k = 0; k < 300; k++) {
		unsigned char *p = alloc_block(20 * MIB - (size_t)k * 16384, 16, 0);
		if (!p)
			exit(3);
		p[0] = 1;
		rh_shm_free(p);
		unsigned char *s = rh_shm_alloc(MIB + MIB / 2);
		if (!s)
			exit(3);
		memset(s, 1, MIB + MIB / 2);
		rh_shm_free(s);
	}
	alloc_private_min = SIZE_MAX;
	snprintf(path, sizeof(path), "%s/%s", test_dir, rh_shm_heap_name());
	if (stat(path, &st) != 0)
		exit(5);
	if ((uint64_t)st.st_size > PRIVATE_GROWTH_MAX + 64 * MIB) {
		fprintf(stderr, "300 private blocks of 15 to 20 MiB, one at a time, made the file %llu MiB\n",
			(unsigned long long)st.st_size >> 20);
		exit(4);
	}
}

/* Where the heap cannot grow and the only fit is another pool's, holding
 * kept pages, a private block takes it. */
static void *fill_and_free_20_mib(void *arg)
{
	(void)arg;
	unsigned char *a = rh_shm_alloc(20 * MIB);
	if (a) {
		memset(a, 2, 20 * MIB);
		rh_shm_free(a);
	}
	return a;
}

static void child_private_takes_other_pools_kept_pages(void)
{
	if (alloc_npools() < 2)
		exit(TEST_SKIPPED);
	rh_shm_free(rh_shm_alloc(16)); /* this thread's pool */
	pthread_t t;
	void *made = NULL;
	if (pthread_create(&t, NULL, fill_and_free_20_mib, NULL) != 0 || pthread_join(t, &made) != 0 || !made)
		exit(3);
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", test_dir, rh_shm_heap_name());
	if (stat(path, &st) != 0)
		exit(3);
	struct rlimit rl = { (rlim_t)st.st_size, RLIM_INFINITY };
	if (getrlimit(RLIMIT_FSIZE, &rl) != 0 || (rl.rlim_cur = (rlim_t)st.st_size, setrlimit(RLIMIT_FSIZE, &rl)) != 0)
		exit(3);
	alloc_private_min = 8 * MIB;
	errno = 0;
	unsigned char *p = alloc_block(16 * MIB, 16, 0);
	alloc_private_min = SIZE_MAX;
	if (!p || !rh_shm_owns(p) || errno) {
		fprintf(stderr, "a private block of 16 MiB with only another pool's kept pages to fit: %p, %s\n",
			(void *)p, strerror(errno));
		exit(4);
	}
	p[16 * MIB - 1] = 1;
	rh_shm_free(p);
}

static void test_alloc_private_spares_kept_pages(void **state)
{
	(void)state;
	test_child_ok(child_private_spares_kept_pages);
	test_child_ok(child_private_prefers_punched_fit);
	test_child_ok(child_private_growth_bounded);
	test_child_ok_or_skipped(child_private_takes_other_pools_kept_pages);
}

/* A huge block's superblock reserves only the header pages whose
 * descriptors are written: a span's head and tail, not one descriptor per
 * page (a block of 1 GiB would reserve 8 MiB of them). Spans cut from it
 * later, aligned ones too, commit the pages of their own descriptors. */
static void test_alloc_huge_superblock_header_reserved_as_needed(void **state)
{
	(void)state;
	const size_t n = 1024 * MIB;
	rh_shm_free(rh_shm_alloc(16)); /* the heap exists */
	uint64_t before = file_bytes();
	unsigned char *p = alloc_private(n);
	assert_non_null(p);
	p[0] = 1;
	p[n - 1] = 2;
	uint64_t took = file_bytes() - before;
	if (took > MIB)
		fail_msg("a private block of %zu bytes took %llu bytes of the file", n, (unsigned long long)took);
	unsigned holes;
	check_span_descs(&holes);
	assert_true(holes > 1000);
	rh_shm_free(p);
	check_span_descs(NULL);
	/* Its superblock's pages cut into spans anywhere: the descriptors
	 * written are in committed pages. */
	enum { N = 24 };
	unsigned char *q[N];
	uint64_t rng = 0x5eed;
	for (unsigned round = 0; round < 3; round++) {
		for (unsigned i = 0; i < N; i++) {
			size_t size = (size_t)(1 + rnd_next(&rng) % 12) * MIB + rnd_next(&rng) % 5000;
			q[i] = i % 3 == 0 ? rh_shm_alloc_aligned((size_t)64 << 10 << (i % 4), size) : rh_shm_alloc(size);
			assert_non_null(q[i]);
			memset(q[i], (int)i, 4096);
		}
		check_span_descs(NULL);
		for (unsigned i = 0; i < N; i += 2)
			rh_shm_free(q[i]);
		check_span_descs(NULL);
		for (unsigned i = 1; i < N; i += 2) {
			q[i] = rh_shm_realloc(q[i], rh_shm_usable_size(q[i]) + 3 * MIB);
			assert_non_null(q[i]);
			assert_int_equal(q[i][4095], (unsigned char)i);
		}
		check_span_descs(NULL);
		for (unsigned i = 1; i < N; i += 2)
			rh_shm_free(q[i]);
		check_span_descs(NULL);
	}
	assert_int_equal(heap_used(), 0);
}

static void child_private_free(void)
{
	struct rh_shm_stats a, b;
	void *p = alloc_private(64 * MIB);
	if (!p)
		exit(4);
	rh_shm_free(p);
	if (rh_shm_stats(&a) != 0)
		exit(4);
	for (unsigned round = 0; round < 20; round++) {
		void *blocks[12];
		for (unsigned i = 0; i < 12; i++) {
			if (!(blocks[i] = rh_shm_alloc(2 * MIB)))
				exit(4);
			memset(blocks[i], 1, 2 * MIB);
		}
		for (unsigned i = 0; i < 12; i++)
			rh_shm_free(blocks[i]);
	}
	if (rh_shm_stats(&b) != 0)
		exit(4);
	if (b.bytes_punched - a.bytes_punched > 8 * MIB) {
		fprintf(stderr, "20 rounds of 12 x 2 MiB punched %llu bytes after a private block was freed\n",
			(unsigned long long)(b.bytes_punched - a.bytes_punched));
		exit(3);
	}
}

/* After the reservations were trimmed (mlockall, a lowered RLIMIT_AS) the
 * page classes grow only where nothing else is mapped. With a page in the
 * way (inaccessible, so that reading it would kill), the heap still grows:
 * the classes move, and every block is freed right. */
static void child_trim_blocked(void)
{
	uint64_t used = heap_used();
	void *first = rh_shm_alloc(100);
	if (!first)
		exit(4);
	heap_trim_reservations();
	struct heap *h = rh_heap;
	size_t ready = h->classes_ready;
	void *in_way = mmap(h->classes + h->classes_size, 4096, PROT_NONE,
		MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (in_way == MAP_FAILED && errno != EEXIST)
		exit(5);
	/* Past what the classes cover: 1 MiB blocks, then small ones. */
	enum { N = 64, SMALL = 20000 };
	static void *big[N], *small[SMALL];
	uint64_t cover = (uint64_t)ready << RH_CLASS_GRAIN;
	unsigned n = 0;
	while (n < N && h->mapped_end <= cover + 4 * MIB) {
		if (!(big[n] = rh_shm_alloc(MIB)))
			exit(6);
		memset(big[n++], 1, MIB);
	}
	if (h->mapped_end <= cover)
		exit(7);
	for (unsigned i = 0; i < SMALL; i++) {
		if (!(small[i] = rh_shm_alloc(200)))
			exit(6);
		memset(small[i], 2, 200);
	}
	for (unsigned i = 0; i < SMALL; i++)
		rh_shm_free(small[i]);
	for (unsigned i = 0; i < n; i++)
		rh_shm_free(big[i]);
	rh_shm_free(first);
	if (((uint64_t)h->classes_ready << RH_CLASS_GRAIN) < h->mapped_end || h->classes_ready == ready)
		exit(8);
	if (heap_used() != used) {
		fprintf(stderr, "used bytes %llu, before %llu\n", (unsigned long long)heap_used(),
			(unsigned long long)used);
		exit(3);
	}
}

static void test_alloc_grows_after_trim_with_classes_in_the_way(void **state)
{
	(void)state;
	test_child_ok(child_trim_blocked);
}

/* A superblock made for a private block holds no memory of the file: it
 * does not raise how much freed memory the pool keeps (32 MiB, or half its
 * superblocks). */
static void child_private_superblock_budget(void)
{
	void *p = alloc_private(256 * MIB);
	if (!p)
		exit(4);
	rh_shm_free(p);
	enum { N = 64 };
	void *blocks[N];
	for (unsigned i = 0; i < N; i++) {
		if (!(blocks[i] = rh_shm_alloc(MIB)))
			exit(4);
		memset(blocks[i], 1, MIB);
	}
	for (unsigned i = 0; i < N; i++)
		rh_shm_free(blocks[i]);
	uint64_t kept = file_bytes();
	if (kept > 48 * (uint64_t)MIB) {
		fprintf(stderr, "after freeing 64 MiB the file keeps %llu bytes\n", (unsigned long long)kept);
		exit(3);
	}
}

static void test_alloc_private_superblock_keeps_budget(void **state)
{
	(void)state;
	test_child_ok(child_private_superblock_budget);
}

static void test_alloc_private_free_keeps_retention(void **state)
{
	(void)state;
	test_child_ok(child_private_free);
}

/* Freeing a private block maps the heap file back; when the program has
 * closed the heap's descriptor the file is reopened, and free leaves errno
 * as it was. In a child: the descriptor is the process's. */
static void child_free_without_descriptor(void)
{
	void *p = alloc_private(PRIVATE_BLOCK);
	if (!p)
		exit(4);
	close(rh_heap->fd);
	errno = EDOM;
	rh_shm_free(p);
	if (errno != EDOM) {
		fprintf(stderr, "free of a private block set errno to %d\n", errno);
		exit(3);
	}
	p = alloc_private(PRIVATE_BLOCK); /* the same span, private again */
	if (!p)
		exit(5);
	memset(p, 1, PRIVATE_BLOCK);
	rh_shm_free(p);
}

static void test_alloc_private_free_keeps_errno(void **state)
{
	(void)state;
	test_child_ok(child_free_without_descriptor);
}

static unsigned char *forked_private;

static void child_private(void)
{
	/* The child has the parent's contents, and its writes are its own. */
	if (check(forked_private, PRIVATE_BLOCK, 21) != (size_t)-1)
		exit(3);
	fill(forked_private, PRIVATE_BLOCK, 22);
	rh_shm_free(forked_private);
	void *mine = alloc_private(PRIVATE_BLOCK);
	if (!mine)
		exit(4);
	fill(mine, PRIVATE_BLOCK, 23);
	rh_shm_free(mine);
}

/* Over fork, a block's private pages are the child's copy like the rest. */
static void test_alloc_private_pages_are_copied_to_a_forked_child(void **state)
{
	(void)state;
	forked_private = alloc_private(PRIVATE_BLOCK);
	assert_non_null(forked_private);
	fill(forked_private, PRIVATE_BLOCK, 21);
	int status = test_in_child(child_private);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 3)
		fail_msg("the child did not see the parent's private block");
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(check(forked_private, PRIVATE_BLOCK, 21), (size_t)-1);
	rh_shm_free(forked_private);
}

/* --- Threads: each allocates, and frees blocks other threads made. --------- */

#define EXCHANGE 64

struct exchange {
	pthread_mutex_t lock;
	struct shadow slot[EXCHANGE];
	unsigned failures;
	char why[256];
};

struct worker {
	struct exchange *x;
	unsigned id;
	uint64_t rng;
};

static void note(struct exchange *x, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&x->lock);
	if (!x->failures++) {
		va_start(ap, fmt);
		vsnprintf(x->why, sizeof(x->why), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&x->lock);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct exchange *x = w->x;
	struct shadow mine[32];
	unsigned nmine = 0;
	memset(mine, 0, sizeof(mine));
	for (unsigned i = 0; i < 30000; i++) {
		size_t size = rnd_size(&w->rng) % (64 * 1024) + 1;
		unsigned seed = w->id << 24 | i;
		unsigned char *p = (i & 7) == 3 ? rh_shm_alloc_aligned(rnd_align(&w->rng), size)
						: rh_shm_alloc(size);
		if (!p) {
			note(x, "thread %u: alloc(%zu) failed: %s", w->id, size, strerror(errno));
			return NULL;
		}
		fill(p, size, seed);
		struct shadow b = { .p = p, .size = size, .seed = seed };
		if (rnd_next(&w->rng) % 2) {
			/* Swap it into the exchange; free what another thread left. */
			unsigned k = (unsigned)(rnd_next(&w->rng) % EXCHANGE);
			pthread_mutex_lock(&x->lock);
			struct shadow old = x->slot[k];
			x->slot[k] = b;
			pthread_mutex_unlock(&x->lock);
			if (!old.p)
				continue;
			if (check(old.p, old.size, old.seed) != (size_t)-1)
				note(x, "thread %u: block of %zu bytes from thread %u corrupted",
				     w->id, old.size, old.seed >> 24);
			if (rnd_next(&w->rng) % 4 == 0) {
				size_t grown = old.size + 1 + rnd_next(&w->rng) % 8192;
				unsigned char *q = rh_shm_realloc(old.p, grown);
				if (!q || check(q, old.size, old.seed) != (size_t)-1) {
					note(x, "thread %u: realloc of a foreign block failed", w->id);
					return NULL;
				}
				old.p = q;
			}
			rh_shm_free(old.p);
		} else {
			unsigned k = nmine < 32 ? nmine++ : (unsigned)(rnd_next(&w->rng) % 32);
			if (mine[k].p) {
				if (check(mine[k].p, mine[k].size, mine[k].seed) != (size_t)-1)
					note(x, "thread %u: own block corrupted", w->id);
				rh_shm_free(mine[k].p);
			}
			mine[k] = b;
		}
	}
	for (unsigned k = 0; k < nmine; k++)
		rh_shm_free(mine[k].p);
	return NULL;
}

static void test_alloc_threads_free_each_others_blocks(void **state)
{
	(void)state;
	static struct exchange x;
	struct worker w[4];
	pthread_t t[4];
	memset(&x, 0, sizeof(x));
	pthread_mutex_init(&x.lock, NULL);
	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct worker){ .x = &x, .id = i + 1, .rng = 0x9876543210ULL * (i + 1) };
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	if (x.failures)
		fail_msg("%u failures, first: %s", x.failures, x.why);
	for (unsigned k = 0; k < EXCHANGE; k++)
		if (x.slot[k].p) {
			assert_int_equal(check(x.slot[k].p, x.slot[k].size, x.slot[k].seed), (size_t)-1);
			rh_shm_free(x.slot[k].p);
		}
	assert_int_equal(heap_used(), 0);
	/* The threads' blocks are reusable from this one. */
	void *p = rh_shm_alloc(100);
	assert_non_null(p);
	rh_shm_free(p);
	assert_int_equal(heap_used(), 0);

	struct rh_shm_stats st;
	assert_int_equal(rh_shm_stats(&st), 0);
	assert_true(st.pools_used >= 1 && st.pools_used <= rh_options.thread_pools);
	assert_int_equal(st.blocks_created, st.blocks_destroyed);
	/* What the exited threads cached went back with them: once trimmed, the
	 * file holds little more than its headers and journal. */
	char path[512];
	struct stat fst;
	rh_shm_trim();
	snprintf(path, sizeof(path), "%s/%s", test_dir, rh_shm_heap_name());
	assert_int_equal(stat(path, &fst), 0);
	if ((uint64_t)fst.st_blocks * 512 > st.heap_size / 4 + 2 * MIB)
		fail_msg("after the threads exited and everything was freed and trimmed, the file "
			 "still holds %llu bytes (heap size %llu)",
			 (unsigned long long)fst.st_blocks * 512, (unsigned long long)st.heap_size);
}

/* More threads than the header has counter slots, all alive at once, each
 * freeing a neighbour's blocks: the shared fallback slot must add up too. */
#define CROWD 100

static void *crowd[CROWD][8];
static pthread_barrier_t crowd_made, crowd_counted, crowd_freed;

static void *crowd_work(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	for (unsigned k = 0; k < 8; k++) {
		crowd[id][k] = rh_shm_alloc(24 + id * 8 + k * 1000);
		if (crowd[id][k])
			memset(crowd[id][k], (int)id, 24 + id * 8 + k * 1000);
	}
	pthread_barrier_wait(&crowd_made);
	pthread_barrier_wait(&crowd_counted);
	unsigned other = (id + 1) % CROWD;
	for (unsigned k = 0; k < 8; k++)
		rh_shm_free(crowd[other][k]);
	pthread_barrier_wait(&crowd_freed);
	return NULL;
}

static void test_alloc_crowd_of_threads_counts_exactly(void **state)
{
	(void)state;
	pthread_t t[CROWD];
	uint64_t expect = 0;
	pthread_barrier_init(&crowd_made, NULL, CROWD + 1);
	pthread_barrier_init(&crowd_counted, NULL, CROWD + 1);
	pthread_barrier_init(&crowd_freed, NULL, CROWD + 1);
	for (unsigned i = 0; i < CROWD; i++)
		assert_int_equal(pthread_create(&t[i], NULL, crowd_work, (void *)(uintptr_t)i), 0);
	pthread_barrier_wait(&crowd_made);
	unsigned missing = 0;
	for (unsigned i = 0; i < CROWD; i++)
		for (unsigned k = 0; k < 8; k++) {
			missing += !crowd[i][k];
			expect += 24 + i * 8 + k * 1000;
		}
	uint64_t used = heap_used();
	/* Let them free and end before failing, so no thread is left waiting. */
	pthread_barrier_wait(&crowd_counted);
	pthread_barrier_wait(&crowd_freed);
	for (unsigned i = 0; i < CROWD; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&crowd_made);
	pthread_barrier_destroy(&crowd_counted);
	pthread_barrier_destroy(&crowd_freed);
	assert_int_equal(missing, 0);
	assert_int_equal(used, expect);
	struct rh_shm_stats st;
	assert_int_equal(rh_shm_stats(&st), 0);
	assert_int_equal(st.heap_used, 0);
	assert_int_equal(st.blocks_created, st.blocks_destroyed);
}

/* On tmpfs a block's new pages are written with zeros when it is made
 * (data to SEEK_DATA) up to 8 MiB a run; a bigger block's are only
 * reserved (holes until written). In a child: a heap of its own, no pages
 * kept from earlier tests. */
static void child_fill_up_to_its_limit(void)
{
	char *small = rh_shm_alloc(1 << 20), *big = rh_shm_alloc(16 << 20);
	if (!small || !big)
		exit(3);
	int fd = rh_heap->fd;
	struct statfs sf;
	if (fstatfs(fd, &sf) != 0)
		exit(4);
	off_t a = (small - rh_heap->base + (512 << 10)) & ~(off_t)4095;
	off_t b = (big - rh_heap->base + (8 << 20)) & ~(off_t)4095;
	if (sf.f_type != TMPFS_MAGIC)
		exit(TEST_SKIPPED);  /* elsewhere reserving may write zeros too (NFS) */
	if (lseek(fd, a, SEEK_DATA) != a)
		exit(5);  /* written */
	if (lseek(fd, b, SEEK_DATA) == b)
		exit(6);  /* reserved: a hole until written */
	big[8 << 20] = 1;
	if (lseek(fd, b, SEEK_DATA) > b + 4096)
		exit(7);
}

/* A run of one to three pages is reserved, not written: a filter that ends
 * the process on pwritev lets a block of each of five new classes through
 * (each takes its span's first page), and the pages are the file's. */
static void child_short_runs_reserved(void)
{
	void *first = rh_shm_alloc(100);
	if (!first)
		exit(3);
	struct stat st;
	if (!rh_heap->writes_new_pages)
		exit(TEST_SKIPPED);  /* not tmpfs: nothing is written anyway */
	if (fstat(rh_heap->fd, &st) != 0)
		exit(4);
	blkcnt_t before = st.st_blocks;
	if (test_filter_pwritev(SECCOMP_RET_KILL_PROCESS) != 0)
		exit(TEST_SKIPPED);  /* no system call filters here */
	static const size_t sizes[] = { 40, 200, 1000, 3000, 2000 };
	for (unsigned i = 0; i < 5; i++) {
		char *p = rh_shm_alloc(sizes[i]);
		if (!p)
			exit(5);
		memset(p, 1, sizes[i]);
	}
	if (fstat(rh_heap->fd, &st) != 0 || (st.st_blocks - before) * 512 < 5 * 4096)
		exit(6);
}

static void test_alloc_short_runs_are_reserved(void **state)
{
	(void)state;
	test_child_ok_or_skipped(child_short_runs_reserved);
}

static void test_alloc_new_pages_written_up_to_8_mib(void **state)
{
	(void)state;
	test_child_ok_or_skipped(child_fill_up_to_its_limit);
}

static int setup(void **state)
{
	(void)state;
	test_dir_make();
	options_load(&rh_options); /* in case the library read them already */
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_little_used_class_takes_a_page),  /* first: its classes are new */
		cmocka_unit_test(test_alloc_owns_only_its_blocks),
		cmocka_unit_test(test_alloc_size_classes_are_the_tightest),
		cmocka_unit_test(test_alloc_page_classes_follow_spans),
		cmocka_unit_test(test_alloc_zero_bytes_aligned_to_pages),
		cmocka_unit_test(test_alloc_random_sequence_keeps_invariants),
		cmocka_unit_test(test_alloc_frees_coalesce_fully),
		cmocka_unit_test(test_alloc_realloc_ladder_keeps_contents),
		cmocka_unit_test(test_alloc_aligned_blocks_are_complete),
		cmocka_unit_test(test_alloc_large_blocks_reuse_space),
		cmocka_unit_test(test_alloc_huge_requests_fail_cleanly),
		cmocka_unit_test(test_alloc_realloc_of_large_block_to_huge_size_fails),
		cmocka_unit_test(test_alloc_threads_free_each_others_blocks),
		cmocka_unit_test(test_alloc_crowd_of_threads_counts_exactly),
		cmocka_unit_test(test_alloc_free_returns_pages_to_filesystem),
		cmocka_unit_test(test_alloc_freed_pages_are_kept_within_budget_and_age),
		cmocka_unit_test(test_alloc_realloc_growth_moves_rarely),
		cmocka_unit_test(test_alloc_realloc_keeps_every_usable_byte),
		cmocka_unit_test(test_alloc_large_free_after_thread_exit_is_kept_by_no_one),
		cmocka_unit_test(test_alloc_forked_child_records_its_own_sites),
		cmocka_unit_test(test_alloc_many_sites_count_across_tables),
		cmocka_unit_test(test_alloc_private_pages_stay_out_of_the_file),
		cmocka_unit_test(test_alloc_private_pages_are_copied_to_a_forked_child),
		cmocka_unit_test(test_alloc_huge_superblock_header_reserved_as_needed),
		cmocka_unit_test(test_alloc_varying_buffers_reuse_kept_pages),
		cmocka_unit_test(test_alloc_private_spares_kept_pages),
		cmocka_unit_test_teardown(test_alloc_private_threshold_adapts, private_reset),
		cmocka_unit_test(test_alloc_private_free_keeps_retention),
		cmocka_unit_test(test_alloc_private_free_keeps_errno),
		cmocka_unit_test(test_alloc_private_superblock_keeps_budget),
		cmocka_unit_test(test_alloc_grows_after_trim_with_classes_in_the_way),
		cmocka_unit_test(test_alloc_new_pages_written_up_to_8_mib),
		cmocka_unit_test(test_alloc_partial_span_free_list_taken_whole),
		cmocka_unit_test(test_alloc_flushed_runs_keep_free_lists_exact),
		cmocka_unit_test(test_alloc_batches_settle_in_the_cache),
		cmocka_unit_test(test_alloc_big_batches_stream),
		cmocka_unit_test(test_alloc_trim_with_kept_spans),
		cmocka_unit_test(test_alloc_after_thread_exit_keeps_no_span),
		cmocka_unit_test(test_alloc_short_runs_are_reserved),
		cmocka_unit_test(test_alloc_refill_commits_its_slots_at_once),
		cmocka_unit_test(test_alloc_calls_interrupted_by_fork_finish_in_the_child),
		cmocka_unit_test(test_alloc_free_does_not_wait_for_a_busy_pool),
	};
	return cmocka_run_group_tests(tests, setup, test_teardown);
}
