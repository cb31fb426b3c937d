/* SPDX-License-Identifier: MIT */
/*
 * Blocks shared between processes: a separate program (tests/progs/shm_peer)
 * attaches this process's blocks by reference, sees and changes the same
 * bytes, and drops its references; the last holder frees, whichever process
 * it is. Bad references fail with errno and never crash, holders are counted
 * while they live, and a holder killed with SIGKILL leaves the heap usable.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "heap.h"
#include "peer.h"
#include "testutil.h"
#include <redhawk/shm.h>

#define HEX_LEN (2 * sizeof(struct rh_shm_ref) + 1)
#define MIB (1024u * 1024u)

static int dir_fd = -1;
/* Used bytes when the test began: each test counts from its own start. */
static uint64_t base;

static uint64_t heap_used(void)
{
	struct rh_shm_stats st;
	assert_int_equal(rh_shm_stats(&st), 0);
	return st.heap_used;
}

/* Blocks freed by another process are reclaimed by their owner, perhaps only
 * when it next allocates: allocate now and then while waiting. */
static uint64_t wait_used(uint64_t expected)
{
	uint64_t used = 0;
	long deadline = peer_now_ms() + 5000;
	while ((used = heap_used()) != expected && peer_now_ms() < deadline) {
		rh_shm_free(rh_shm_alloc(16));
		usleep(5000);
	}
	return used;
}

/* Holders of our heap as the reader sees them, -1 when it cannot tell. */
static int holders(const char *name)
{
	struct rh_heap *h = NULL;
	int rc = rh_heap_open(dir_fd, name, &h);
	if (rc != 0) {
		print_error("rh_heap_open(%s): %s\n", name, strerror(rc));
		if (h)
			rh_heap_close(h);
		return -1;
	}
	int n = rh_heap_info(h)->refcount;
	rh_heap_close(h);
	return n;
}

static void start(struct peer *p)
{
	assert_int_equal(peer_start(p, NULL), 0);
}

/* Sends our block to the peer; returns its id there. */
static int share(struct peer *p, const void *block, size_t size, unsigned seed)
{
	struct rh_shm_ref ref;
	char hex[HEX_LEN], reply[256];
	int id = -1;
	assert_int_equal(rh_shm_ref(block, &ref), 0);
	ref_to_hex(&ref, hex);
	if (peer_cmd(p, reply, sizeof(reply), "attach %s %zu %u", hex, size, seed) != 0)
		fail_msg("peer could not attach a %zu-byte block: %s", size, reply);
	assert_int_equal(sscanf(reply, "ok %d", &id), 1);
	return id;
}

/* What the peer says when it attaches ref: 0 for success, else its errno. */
static int try_attach(struct peer *p, const struct rh_shm_ref *ref)
{
	char hex[HEX_LEN], reply[256];
	int err = 0, id;
	ref_to_hex(ref, hex);
	int rc = peer_cmd(p, reply, sizeof(reply), "attach %s 0 0", hex);
	if (rc < 0)
		fail_msg("the peer died attaching a bad reference");
	if (rc == 0) {
		assert_int_equal(sscanf(reply, "ok %d", &id), 1);
		assert_int_equal(peer_cmd(p, NULL, 0, "free %d", id), 0);
		return 0;
	}
	assert_int_equal(sscanf(reply, "err %d", &err), 1);
	return err;
}

static const size_t sizes[] = { 1, 64, 100, 1000, 4096, 5000, 40000, 100000, 1 << 20, 3 << 20 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* --- Tests ----------------------------------------------------------------- */

static void test_multiproc_peer_attaches_sees_and_frees(void **state)
{
	(void)state;
	struct peer peer;
	unsigned char *blocks[2 * NSIZES];
	int ids[2 * NSIZES];
	start(&peer);
	uint64_t total = 0;
	for (unsigned i = 0; i < 2 * NSIZES; i++) {
		size_t size = sizes[i % NSIZES];
		blocks[i] = i < NSIZES ? rh_shm_alloc(size) : rh_shm_alloc_aligned(4096, size);
		assert_non_null(blocks[i]);
		pattern_fill(blocks[i], size, i);
		ids[i] = share(&peer, blocks[i], size, i);
		total += size;
	}
	assert_int_equal(holders(rh_shm_heap_name()), 2);
	/* Our heap is heap-<our pid>, there while we live. */
	char name[64];
	snprintf(name, sizeof(name), "heap-%d", (int)getpid());
	assert_string_equal(rh_shm_heap_name(), name);
	assert_int_equal(faccessat(dir_fd, name, F_OK, 0), 0);

	/* Zero copy both ways: what the peer writes, we read. */
	for (unsigned i = 0; i < 2 * NSIZES; i++) {
		size_t size = sizes[i % NSIZES];
		assert_int_equal(peer_cmd(&peer, NULL, 0, "write %d %zu %u", ids[i], size, 100 + i), 0);
		if (!pattern_ok(blocks[i], size, 100 + i))
			fail_msg("the peer's write to block %u (%zu bytes) is not visible here", i, size);
	}

	/* We drop our references to the even blocks first: the peer still holds
	 * them, so new allocations must not reuse them. */
	for (unsigned i = 0; i < 2 * NSIZES; i += 2)
		rh_shm_free(blocks[i]);
	void *fresh[2 * NSIZES];
	for (unsigned i = 0; i < 2 * NSIZES; i++) {
		fresh[i] = rh_shm_alloc(sizes[i % NSIZES]);
		assert_non_null(fresh[i]);
		memset(fresh[i], 0xee, sizes[i % NSIZES]);
	}
	for (unsigned i = 0; i < 2 * NSIZES; i += 2)
		if (peer_cmd(&peer, NULL, 0, "check %d %zu %u", ids[i], sizes[i % NSIZES], 100 + i) != 0)
			fail_msg("block %u (%zu bytes) was reused while the peer held it", i,
				 sizes[i % NSIZES]);
	for (unsigned i = 0; i < 2 * NSIZES; i++)
		rh_shm_free(fresh[i]);

	/* The peer drops everything: the even blocks' last references. Then the
	 * odd ones' last references are ours. */
	assert_int_equal(peer_cmd(&peer, NULL, 0, "freeall"), 0);
	for (unsigned i = 1; i < 2 * NSIZES; i += 2)
		rh_shm_free(blocks[i]);
	uint64_t used = wait_used(base);
	if (used != base)
		fail_msg("heap_used is %llu (%llu before) after every reference to %llu bytes was "
			 "dropped", (unsigned long long)used, (unsigned long long)base,
			 (unsigned long long)total);
	assert_int_equal(peer_finish(&peer), 0);
	assert_int_equal(holders(rh_shm_heap_name()), 1);
}

/* Many small blocks freed at the same time here and there: the remote-free
 * path under contention. */
static void test_multiproc_concurrent_frees_balance(void **state)
{
	(void)state;
	enum { N = 1500 };
	static unsigned char *blocks[N];
	struct peer peer;
	char reply[64];
	start(&peer);
	for (unsigned i = 0; i < N; i++) {
		size_t size = 16 + (i * 37) % 3000;
		blocks[i] = rh_shm_alloc(size);
		assert_non_null(blocks[i]);
		pattern_fill(blocks[i], size, i);
		share(&peer, blocks[i], size, i);
	}
	/* Both sides free at once; which one is last varies block by block. */
	assert_int_equal(write(peer.to, "freeall\n", 8), 8);
	for (unsigned i = 0; i < N; i++)
		rh_shm_free(blocks[i]);
	assert_int_equal(peer_read(&peer, reply, sizeof(reply)), 0);
	assert_string_equal(reply, "ok 1500");
	uint64_t used = wait_used(base);
	if (used != base)
		fail_msg("heap_used is %llu (%llu before) after both processes freed everything",
			 (unsigned long long)used, (unsigned long long)base);
	assert_int_equal(peer_finish(&peer), 0);
}

static void test_multiproc_refcount_counts_live_holders(void **state)
{
	(void)state;
	struct peer a, b;
	void *p = rh_shm_alloc(128);
	assert_non_null(p);
	pattern_fill(p, 128, 5);
	const char *name = rh_shm_heap_name();
	assert_int_equal(holders(name), 1);
	start(&a);
	start(&b);
	int ida = share(&a, p, 128, 5);
	assert_int_equal(holders(name), 2);
	share(&b, p, 128, 5);
	assert_int_equal(holders(name), 3);
	/* A holder that ends normally is no longer counted... */
	assert_int_equal(peer_cmd(&a, NULL, 0, "free %d", ida), 0);
	assert_int_equal(peer_finish(&a), 0);
	assert_int_equal(holders(name), 2);
	/* ...and neither is one killed while holding a reference. */
	int status = peer_kill(&b);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(holders(name), 1);
	rh_shm_free(p);
}

/* More holders over time than the header has slots: slots of processes
 * that are gone, by exit or by SIGKILL, are taken again. */
static void test_multiproc_holder_slots_are_reused(void **state)
{
	(void)state;
	void *p = rh_shm_alloc(256);
	assert_non_null(p);
	pattern_fill(p, 256, 9);
	for (unsigned i = 0; i < RH_MAX_HOLDERS + 16; i++) {
		struct peer peer;
		start(&peer);
		int id = share(&peer, p, 256, 9);
		if (i % 2) {
			assert_int_equal(peer_cmd(&peer, NULL, 0, "free %d", id), 0);
			assert_int_equal(peer_finish(&peer), 0);
		} else {
			peer_kill(&peer);
		}
	}
	assert_int_equal(holders(rh_shm_heap_name()), 1);
	rh_shm_free(p);
}

static void test_multiproc_bad_refs_fail_cleanly(void **state)
{
	(void)state;
	struct peer peer;
	struct rh_shm_ref good, ref;
	char path[512];
	int err;
	start(&peer);
	unsigned char *p = rh_shm_alloc(1000);
	unsigned char *gone = rh_shm_alloc(1000);
	assert_non_null(p);
	assert_non_null(gone);
	pattern_fill(p, 1000, 3);
	assert_int_equal(rh_shm_ref(p, &good), 0);
	assert_int_equal(rh_shm_ref(gone, &ref), 0);
	rh_shm_free(gone);
	uint64_t used = heap_used();

	/* A freed block. */
	assert_int_equal(try_attach(&peer, &ref), ESTALE);
	/* Another heap of the same name (a reused pid). */
	ref = good;
	ref.instance ^= 0x5a5a;
	assert_int_equal(try_attach(&peer, &ref), ESTALE);
	/* A heap that is not there. */
	ref = good;
	snprintf(ref.heap, sizeof(ref.heap), "heap-999999999");
	assert_int_equal(try_attach(&peer, &ref), ENOENT);
	/* Names that lead out of the folder. */
	static const char *const names[] = { "../heap-1", "..", "heap-1/../heap-2", "/etc/passwd",
					     "", "." };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		ref = good;
		memset(ref.heap, 0, sizeof(ref.heap));
		strcpy(ref.heap, names[i]);
		err = try_attach(&peer, &ref);
		if (err != EINVAL)
			fail_msg("heap name '%s': expected EINVAL, got %s", names[i], strerror(err));
	}
	/* A name without its NUL. */
	ref = good;
	memset(ref.heap, 'x', sizeof(ref.heap));
	assert_int_equal(try_attach(&peer, &ref), EINVAL);

	/* Offsets that are not a live block's: past the end, in the header,
	 * inside a block, misaligned, and a superblock that does not hold it. */
	const uint64_t offsets[] = { 1ULL << 40, UINT64_MAX - 7, 0, 16, 100, 4096,
				     good.offset + 16, good.offset + 8, good.offset + 1,
				     good.offset - 16, good.superblock };
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		ref = good;
		ref.offset = offsets[i];
		err = try_attach(&peer, &ref);
		if (err != EINVAL && err != ESTALE)
			fail_msg("offset %llu (block at %llu): expected EINVAL or ESTALE, got %s",
				 (unsigned long long)offsets[i], (unsigned long long)good.offset,
				 err ? strerror(err) : "success");
	}
	const uint64_t superblocks[] = { 0, 1ULL << 40, good.superblock + 4096, 8192 + 1 };
	for (size_t i = 0; i < sizeof(superblocks) / sizeof(superblocks[0]); i++) {
		ref = good;
		ref.superblock = superblocks[i];
		err = try_attach(&peer, &ref);
		if (err != EINVAL && err != ESTALE)
			fail_msg("superblock %llu (really %llu): expected EINVAL or ESTALE, got %s",
				 (unsigned long long)superblocks[i],
				 (unsigned long long)good.superblock, err ? strerror(err) : "success");
	}

	/* Garbage from a noisy pipe. */
	uint64_t rng = 0x243F6A8885A308D3ULL;
	for (unsigned i = 0; i < 200; i++) {
		unsigned char *b = (unsigned char *)&ref;
		for (size_t k = 0; k < sizeof(ref); k++) {
			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			b[k] = (unsigned char)(rng >> 56);
		}
		if (i % 2) /* half of them name our heap, to reach the offset checks */
			memcpy(ref.heap, good.heap, sizeof(ref.heap));
		err = try_attach(&peer, &ref);
		assert_true(err != 0);
	}

	/* A file of the right name that is not a heap, and one cut short after
	 * its header: the attacher must not map past the end (SIGBUS). */
	snprintf(path, sizeof(path), "%s/heap-1", test_dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "not a heap\n", 11), 11);
	close(fd);
	ref = good;
	strcpy(ref.heap, "heap-1");
	assert_true(try_attach(&peer, &ref) != 0);

	char src[512];
	snprintf(src, sizeof(src), "%s/%s", test_dir, rh_shm_heap_name());
	int in = open(src, O_RDONLY);
	assert_true(in >= 0);
	static char header[RH_HEADER_SIZE];
	assert_int_equal(pread(in, header, sizeof(header), 0), (ssize_t)sizeof(header));
	close(in);
	snprintf(path, sizeof(path), "%s/heap-2", test_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, header, sizeof(header)), (ssize_t)sizeof(header));
	close(fd);
	strcpy(ref.heap, "heap-2");
	assert_true(try_attach(&peer, &ref) != 0);
	/* Same, with the size of the real file but nothing behind the header. */
	fd = open(path, O_WRONLY);
	struct stat st;
	assert_int_equal(stat(src, &st), 0);
	assert_int_equal(ftruncate(fd, st.st_size), 0);
	close(fd);
	err = try_attach(&peer, &ref);
	assert_true(err != 0);

	/* A header a holder wrote into the block's data, marked displaced (as
	 * an aligned block's is): no block without its slot's marker (its
	 * frees released the slot of the block around it). */
	struct block_header fake;
	memcpy(&fake, p - sizeof(fake), sizeof(fake));
	fake.refcount = RH_REF_SHARED | RH_REF_DISPLACED | 1;
	memcpy(p + 16, &fake, sizeof(fake));
	ref = good;
	ref.offset = good.offset + 32;
	assert_int_equal(try_attach(&peer, &ref), EINVAL);
	pattern_fill(p, 1000, 3);

	/* The peer survived all that, a good ref still works, and nothing above
	 * took a reference on any of our blocks. */
	int id = share(&peer, p, 1000, 3);
	assert_int_equal(peer_cmd(&peer, NULL, 0, "free %d", id), 0);
	assert_int_equal(heap_used(), used);
	assert_int_equal(peer_finish(&peer), 0);
	rh_shm_free(p);
	assert_int_equal(wait_used(base), base);
}

/* References whose superblock lies in pages the heap gave back (holes of
 * its file): the attacher must not read there through its mapping, which
 * gave each page memory again (65 MB of the owner's file from 16,000
 * forged references), or raised SIGBUS on a full filesystem. */
static void test_multiproc_forged_superblocks_leave_holes_alone(void **state)
{
	(void)state;
	struct peer peer;
	struct rh_shm_ref keep, big;
	char path[512];
	struct stat st;
	start(&peer);
	unsigned char *k = rh_shm_alloc(64), *b = rh_shm_alloc(8 << 20);
	assert_non_null(k);
	assert_non_null(b);
	memset(b, 1, 8 << 20);
	pattern_fill(k, 64, 0);
	assert_int_equal(rh_shm_ref(k, &keep), 0);
	assert_int_equal(rh_shm_ref(b, &big), 0);
	int id = share(&peer, k, 64, 0);
	rh_shm_free(b);
	rh_shm_trim();
	snprintf(path, sizeof(path), "%s/%s", test_dir, rh_shm_heap_name());
	assert_int_equal(stat(path, &st), 0);
	blkcnt_t before = st.st_blocks;
	for (uint64_t off = big.offset & ~4095ULL; off < big.offset + (8 << 20); off += 4096 * 8) {
		struct rh_shm_ref f = big;
		f.superblock = off;
		f.offset = off + 8192 + 16;
		assert_true(try_attach(&peer, &f) != 0);
	}
	assert_int_equal(stat(path, &st), 0);
	if (st.st_blocks > before + 64)
		fail_msg("forged references gave the heap file %lld KiB", (long long)(st.st_blocks - before) / 2);
	assert_int_equal(peer_cmd(&peer, NULL, 0, "free %d", id), 0);
	assert_int_equal(peer_finish(&peer), 0);
	rh_shm_free(k);
	assert_int_equal(wait_used(base), base);
}

/* The header of a block the peer holds the last reference on, overwritten
 * by another holder (an overrun of the block before it): the peer's release
 * must not follow it (it died of SIGSEGV). */
static void test_multiproc_release_checks_the_header_again(void **state)
{
	(void)state;
	struct peer peer;
	start(&peer);
	unsigned char *b = rh_shm_alloc(1000);
	assert_non_null(b);
	pattern_fill(b, 1000, 8);
	int id = share(&peer, b, 1000, 8);
	struct block_header saved;
	memcpy(&saved, b - sizeof(saved), sizeof(saved));
	rh_shm_free(b); /* the peer's reference is the last */
	struct block_header *bh = (struct block_header *)b - 1;
	bh->sb_page = RH_SB_PAGE_MASK;
	int rc = peer_cmd(&peer, NULL, 0, "free %d", id);
	memcpy(b - sizeof(saved), &saved, sizeof(saved)); /* for the heap's own walk */
	assert_int_equal(rc, 0);
	assert_int_equal(peer_finish(&peer), 0);
}

/* A holder that releases a block twice drops only its own reference: the
 * creator's stays (the second release freed the block under it), and the
 * holder's other attached block stays mapped. */
static void test_multiproc_release_twice_drops_one_reference(void **state)
{
	(void)state;
	struct peer peer;
	start(&peer);
	unsigned char *a = rh_shm_alloc(1000), *b = rh_shm_alloc(1000);
	assert_non_null(a);
	assert_non_null(b);
	pattern_fill(a, 1000, 5);
	pattern_fill(b, 1000, 6);
	int ida = share(&peer, a, 1000, 5);
	int idb = share(&peer, b, 1000, 6);
	uint64_t used = heap_used();
	assert_int_equal(peer_cmd(&peer, NULL, 0, "free2 %d", ida), 0);
	assert_int_equal(peer_cmd(&peer, NULL, 0, "check %d 1000 6", idb), 0);
	assert_int_equal(heap_used(), used);
	/* a is still ours: no allocation is given its slot. */
	void *more[64];
	for (unsigned i = 0; i < 64; i++) {
		more[i] = rh_shm_alloc(1000);
		assert_ptr_not_equal(more[i], a);
	}
	for (unsigned i = 0; i < 64; i++)
		rh_shm_free(more[i]);
	assert_true(pattern_ok(a, 1000, 5));
	assert_int_equal(peer_cmd(&peer, NULL, 0, "free %d", idb), 0);
	assert_int_equal(peer_finish(&peer), 0);
	rh_shm_free(a);
	rh_shm_free(b);
	assert_int_equal(wait_used(base), base);
}

/* In the creator itself, a ref to its own block is a second reference. */
static void test_multiproc_attach_own_block_adds_reference(void **state)
{
	(void)state;
	struct rh_shm_ref ref;
	unsigned char *p = rh_shm_alloc(300);
	assert_non_null(p);
	pattern_fill(p, 300, 4);
	assert_int_equal(rh_shm_ref(p, &ref), 0);
	unsigned char *q = rh_shm_attach(&ref);
	assert_ptr_equal(q, p);
	rh_shm_free(p);
	assert_int_equal(heap_used(), base + 300);
	assert_true(pattern_ok(q, 300, 4));
	rh_shm_free(q);
	assert_int_equal(heap_used(), base);
	/* Now stale. */
	errno = 0;
	assert_null(rh_shm_attach(&ref));
	assert_int_equal(errno, ESTALE);
	ref.instance++;
	errno = 0;
	assert_null(rh_shm_attach(&ref));
	assert_int_equal(errno, ESTALE);
}

/* We attach a block of the peer's heap; the peer drops its reference and
 * exits, its file goes, and our mapping and reference still work. */
static void test_multiproc_attached_block_outlives_its_creator(void **state)
{
	(void)state;
	struct peer peer;
	struct rh_shm_ref ref;
	char reply[256], path[512];
	int id;
	start(&peer);
	assert_int_equal(peer_cmd(&peer, reply, sizeof(reply), "alloc 200000 21"), 0);
	assert_int_equal(sscanf(reply, "ok %d", &id), 1);
	assert_int_equal(ref_from_hex(strchr(reply + 3, ' ') + 1, &ref), 0);
	unsigned char *p = rh_shm_attach(&ref);
	assert_non_null(p);
	assert_true(rh_shm_owns(p));
	assert_true(pattern_ok(p, 200000, 21));
	assert_true(rh_shm_usable_size(p) >= 200000);
	/* Attaching again maps nothing new: the same address. */
	unsigned char *again = rh_shm_attach(&ref);
	assert_ptr_equal(again, p);
	rh_shm_free(again);

	snprintf(path, sizeof(path), "%s/%s", test_dir, ref.heap);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(peer_cmd(&peer, NULL, 0, "free %d", id), 0);
	assert_int_equal(peer_cmd(&peer, NULL, 0, "exit"), 0);
	assert_int_equal(peer_wait(&peer, PEER_TIMEOUT_MS), 0);
	assert_int_equal(access(path, F_OK), -1);

	assert_true(pattern_ok(p, 200000, 21));
	pattern_fill(p, 200000, 22);
	assert_true(pattern_ok(p, 200000, 22));
	rh_shm_free(p); /* the last reference, in a heap whose creator is gone */

	/* New attaches to the vanished heap fail. */
	errno = 0;
	assert_null(rh_shm_attach(&ref));
	assert_true(errno == ENOENT || errno == ESTALE);
	assert_int_equal(heap_used(), base);
}

/* realloc of a block someone else holds, or of someone else's block, makes a
 * copy in our heap and drops exactly our reference. */
static void test_multiproc_realloc_of_shared_blocks_copies(void **state)
{
	(void)state;
	struct peer peer;
	struct rh_shm_ref ref;
	char reply[256];
	int id;
	start(&peer);
	/* Ours, shared: the peer keeps seeing the old bytes. */
	unsigned char *p = rh_shm_alloc(3000);
	assert_non_null(p);
	pattern_fill(p, 3000, 31);
	int pid_id = share(&peer, p, 3000, 31);
	unsigned char *q = rh_shm_realloc(p, 2000);
	assert_non_null(q);
	assert_true(pattern_ok(q, 2000, 31));
	memset(q, 0, 2000);
	q = rh_shm_realloc(q, 50000);
	assert_non_null(q);
	assert_int_equal(peer_cmd(&peer, NULL, 0, "check %d 3000 31", pid_id), 0);
	assert_int_equal(heap_used(), base + 3000 + 50000);
	assert_int_equal(peer_cmd(&peer, NULL, 0, "free %d", pid_id), 0);
	assert_int_equal(wait_used(base + 50000), base + 50000);
	rh_shm_free(q);

	/* Theirs: the copy is ours, their block loses our reference only. */
	assert_int_equal(peer_cmd(&peer, reply, sizeof(reply), "alloc 5000 32"), 0);
	assert_int_equal(sscanf(reply, "ok %d", &id), 1);
	assert_int_equal(ref_from_hex(strchr(reply + 3, ' ') + 1, &ref), 0);
	unsigned char *f = rh_shm_attach(&ref);
	assert_non_null(f);
	unsigned char *g = rh_shm_realloc(f, 20000);
	assert_non_null(g);
	assert_true(pattern_ok(g, 5000, 32));
	struct rh_shm_ref gref;
	assert_int_equal(rh_shm_ref(g, &gref), 0);
	assert_string_equal(gref.heap, rh_shm_heap_name());
	assert_int_equal(heap_used(), base + 20000);
	assert_int_equal(peer_cmd(&peer, NULL, 0, "check %d 5000 32", id), 0);
	assert_int_equal(peer_cmd(&peer, reply, sizeof(reply), "stats"), 0);
	assert_int_equal(strncmp(reply, "ok 5000 ", 8), 0);
	assert_int_equal(peer_cmd(&peer, NULL, 0, "free %d", id), 0);
	assert_int_equal(peer_cmd(&peer, reply, sizeof(reply), "stats"), 0);
	if (strncmp(reply, "ok 0 ", 5) != 0)
		fail_msg("the peer's block is still counted after both references went: %s", reply);
	rh_shm_free(g);
	assert_int_equal(heap_used(), base);
	assert_int_equal(peer_finish(&peer), 0);
}

/* More holders at once than the header has slots: attaching still works,
 * and the count comes back down when they are gone. */
static void test_multiproc_more_holders_than_slots(void **state)
{
	(void)state;
	enum { N = RH_MAX_HOLDERS + 6 };
	static struct peer peers[N];
	void *p = rh_shm_alloc(64);
	assert_non_null(p);
	pattern_fill(p, 64, 12);
	for (unsigned i = 0; i < N; i++) {
		start(&peers[i]);
		share(&peers[i], p, 64, 12);
	}
	int n = holders(rh_shm_heap_name());
	assert_true(n >= RH_MAX_HOLDERS - 1 && n <= N + 1);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(peer_cmd(&peers[i], NULL, 0, "check 0 64 12"), 0);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(peer_cmd(&peers[i], NULL, 0, "free 0"), 0);
		assert_int_equal(peer_finish(&peers[i]), 0);
	}
	assert_int_equal(holders(rh_shm_heap_name()), 1);
	rh_shm_free(p);
	assert_int_equal(wait_used(base), base);
}

/* A long-lived consumer takes one block from each of many short-lived
 * producers (components restarting) and drops it after its producer ended.
 * Each producer's heap must be let go with its last reference: attaching
 * never runs out of room, and no descriptor or mapping of a dead heap stays. */
/* 1 when text names one of the heaps: "/heap-123" not followed by a digit. */
static int names_one_of(const char *text, char names[][RH_HEAP_NAME_LEN], unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		size_t len = strlen(names[i]);
		for (const char *at = strstr(text, names[i]); at; at = strstr(at + 1, names[i]))
			if (at > text && at[-1] == '/' && !(at[len] >= '0' && at[len] <= '9'))
				return 1;
	}
	return 0;
}

/* Mappings of those heaps in this process; the first is copied to found. */
static int maps_naming(char names[][RH_HEAP_NAME_LEN], unsigned n, char *found, size_t size)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[1024];
	int hits = 0;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (names_one_of(line, names, n) && !hits++)
			snprintf(found, size, "%.300s", line);
	fclose(f);
	return hits;
}

/* Descriptors of those heaps open in this process. */
static int fds_naming(char names[][RH_HEAP_NAME_LEN], unsigned n, char *found, size_t size)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int hits = 0;
	assert_non_null(d);
	while ((e = readdir(d))) {
		char link[300], target[512];
		snprintf(link, sizeof(link), "/proc/self/fd/%.250s", e->d_name);
		ssize_t len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = 0;
		if (names_one_of(target, names, n) && !hits++)
			snprintf(found, size, "fd %.20s -> %.300s", e->d_name, target);
	}
	closedir(d);
	return hits;
}

static void test_multiproc_consumer_outlives_many_producers(void **state)
{
	(void)state;
	enum { N = RH_MAX_FOREIGN + 6 };
	static char names[N][RH_HEAP_NAME_LEN];
	char found[600] = "";
	for (unsigned i = 0; i < N; i++) {
		struct peer producer;
		struct rh_shm_ref ref;
		char reply[256];
		int id;
		start(&producer);
		assert_int_equal(peer_cmd(&producer, reply, sizeof(reply), "alloc %u %u", MIB, i), 0);
		assert_int_equal(sscanf(reply, "ok %d", &id), 1);
		assert_int_equal(ref_from_hex(strchr(reply + 3, ' ') + 1, &ref), 0);
		snprintf(names[i], sizeof(names[i]), "%s", ref.heap);
		errno = 0;
		unsigned char *p = rh_shm_attach(&ref);
		if (!p)
			fail_msg("producer %u of %u: attach failed: %s", i + 1, (unsigned)N,
				 strerror(errno));
		assert_true(pattern_ok(p, MIB, i));
		/* The producer drops its reference and ends; its file goes. */
		assert_int_equal(peer_cmd(&producer, NULL, 0, "free %d", id), 0);
		assert_int_equal(peer_finish(&producer), 0);
		assert_true(pattern_ok(p, MIB, i));
		rh_shm_free(p); /* the last reference */
	}
	int fds = fds_naming(names, N, found, sizeof(found));
	if (fds)
		fail_msg("%d descriptors of dead producers' heaps are still open, e.g. %s", fds,
			 found);
	int maps = maps_naming(names, N, found, sizeof(found));
	if (maps)
		fail_msg("%d dead producers' heaps are still mapped, e.g. %s", maps, found);
	assert_int_equal(heap_used(), base);
}

/* A producer's block of SIZE with pattern SEED: its reference, its id there. */
static int produce(struct peer *producer, size_t size, unsigned seed, struct rh_shm_ref *ref)
{
	char reply[256];
	int id;
	assert_int_equal(peer_cmd(producer, reply, sizeof(reply), "alloc %zu %u", size, seed), 0);
	assert_int_equal(sscanf(reply, "ok %d", &id), 1);
	assert_int_equal(ref_from_hex(strchr(reply + 3, ' ') + 1, ref), 0);
	return id;
}

/* A new producer with one block, whose heap's name goes to name. */
static int one_producer(struct peer *producer, size_t size, unsigned seed, struct rh_shm_ref *ref,
			char name[RH_HEAP_NAME_LEN])
{
	start(producer);
	int id = produce(producer, size, seed, ref);
	memcpy(name, ref->heap, RH_HEAP_NAME_LEN - 1);
	name[RH_HEAP_NAME_LEN - 1] = 0;
	return id;
}

/* The producer frees its block and ends. */
static void producer_done(struct peer *producer, int id)
{
	assert_int_equal(peer_cmd(producer, NULL, 0, "free %d", id), 0);
	assert_int_equal(peer_finish(producer), 0);
}

/* A consumer that takes one buffer at a time holds nothing between them:
 * the producer's heap stays mapped (one descriptor, one holder slot) so
 * that the next attach maps nothing, and goes with rh_shm_trim, or a
 * second later at an allocation that refills. */
static void test_multiproc_idle_heap_is_kept_a_while(void **state)
{
	(void)state;
	static char names[1][RH_HEAP_NAME_LEN];
	char found[600] = "";
	struct peer producer;
	struct rh_shm_ref ref;
	int id = one_producer(&producer, 4096, 3, &ref, names[0]);
	for (unsigned round = 0; round < 3; round++) {
		unsigned char *p = rh_shm_attach(&ref);
		assert_non_null(p);
		assert_true(pattern_ok(p, 4096, 3));
		rh_shm_free(p);
		if (maps_naming(names, 1, found, sizeof(found)) == 0)
			fail_msg("round %u: the producer's heap was unmapped at once", round);
		assert_int_equal(fds_naming(names, 1, found, sizeof(found)), 1);
		assert_int_equal(holders(ref.heap), 2);
	}
	rh_shm_trim();
	assert_int_equal(maps_naming(names, 1, found, sizeof(found)), 0);
	assert_int_equal(fds_naming(names, 1, found, sizeof(found)), 0);
	assert_int_equal(holders(ref.heap), 1);

	unsigned char *p = rh_shm_attach(&ref);
	assert_non_null(p);
	rh_shm_free(p);
	usleep(1100 * 1000);
	enum { N = 20000 };
	static void *many[N];
	for (unsigned i = 0; i < N; i++)
		assert_non_null(many[i] = rh_shm_alloc(48));
	for (unsigned i = 0; i < N; i++)
		rh_shm_free(many[i]);
	int maps = maps_naming(names, 1, found, sizeof(found));
	if (maps)
		fail_msg("a second after its last release, the heap is still mapped: %s", found);
	assert_int_equal(holders(ref.heap), 1);
	producer_done(&producer, id);
}

/* An idle heap goes when due even while the process keeps another heap
 * busy (it holds a block of it, attaching and releasing others). */
static void test_multiproc_idle_heap_goes_while_another_is_busy(void **state)
{
	(void)state;
	static char names[2][RH_HEAP_NAME_LEN];
	char found[600] = "";
	struct peer busy, idle;
	struct rh_shm_ref busy_ref, idle_ref;
	int busy_id = one_producer(&busy, 4096, 6, &busy_ref, names[0]);
	int idle_id = one_producer(&idle, 4096, 7, &idle_ref, names[1]);
	unsigned char *held = rh_shm_attach(&busy_ref);
	unsigned char *p = rh_shm_attach(&idle_ref);
	assert_non_null(held);
	assert_non_null(p);
	rh_shm_free(p);
	assert_true(maps_naming(names + 1, 1, found, sizeof(found)) > 0);
	usleep(1100 * 1000);
	for (unsigned i = 0; i < 3; i++) {
		p = rh_shm_attach(&busy_ref);
		assert_non_null(p);
		rh_shm_free(p);
	}
	int maps = maps_naming(names + 1, 1, found, sizeof(found));
	if (maps)
		fail_msg("the idle heap is still mapped a second after its last release: %s", found);
	assert_true(maps_naming(names, 1, found, sizeof(found)) > 0);
	rh_shm_free(held);
	rh_shm_trim();
	producer_done(&busy, busy_id);
	producer_done(&idle, idle_id);
}

/* A forked child lets go of the idle heaps it inherited (they hold nothing
 * of its own), and its parent keeps them: closing the child's descriptor
 * leaves the parent's holder lock. */
static void test_multiproc_forked_child_lets_idle_heaps_go(void **state)
{
	(void)state;
	static char names[1][RH_HEAP_NAME_LEN];
	char found[600] = "";
	struct peer producer;
	struct rh_shm_ref ref;
	int id = one_producer(&producer, 4096, 5, &ref, names[0]);
	unsigned char *p = rh_shm_attach(&ref);
	assert_non_null(p);
	rh_shm_free(p);
	assert_int_equal(holders(ref.heap), 2);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		/* Not copied either: the block's page is not there at all. */
		unsigned char vec;
		void *page = (void *)((uintptr_t)p & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1));
		int code = maps_naming(names, 1, found, sizeof(found)) ? 1
			   : fds_naming(names, 1, found, sizeof(found)) ? 2
			   : mincore(page, 1, &vec) == 0 ? 4 : 0;
		/* And it can attach from the heap itself. */
		unsigned char *q = rh_shm_attach(&ref);
		if (!code && (!q || !pattern_ok(q, 4096, 5)))
			code = 3;
		if (q)
			rh_shm_free(q);
		_exit(code);
	}
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status))
		fail_msg("the child: %s", WEXITSTATUS(status) == 1 ? "the idle heap is still mapped" :
			 WEXITSTATUS(status) == 2 ? "a descriptor of the idle heap is open" :
			 WEXITSTATUS(status) == 4 ? "the idle heap was copied" : "cannot attach the block");
	assert_int_equal(holders(ref.heap), 2);
	assert_true(maps_naming(names, 1, found, sizeof(found)) > 0);
	p = rh_shm_attach(&ref);
	assert_non_null(p);
	assert_true(pattern_ok(p, 4096, 5));
	rh_shm_free(p);
	rh_shm_trim();
	assert_int_equal(holders(ref.heap), 1);
	producer_done(&producer, id);
}

/* An attach that cannot reserve address space for the heap fails with
 * ENOMEM and leaves nothing behind: the next attach maps the heap, and a
 * fork does not trip over a half-made entry. */
static void test_multiproc_attach_without_address_space_leaves_nothing(void **state)
{
	(void)state;
	struct peer producer;
	struct rh_shm_ref ref;
	char name[RH_HEAP_NAME_LEN];
	int id = one_producer(&producer, 4096, 8, &ref, name);
	/* A released entry, which the failed attach then takes. */
	unsigned char *first = rh_shm_attach(&ref);
	assert_non_null(first);
	rh_shm_free(first);
	rh_shm_trim();
	struct rlimit old, tight;
	unsigned long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%lu", &pages), 1);
	fclose(f);
	assert_int_equal(getrlimit(RLIMIT_AS, &old), 0);
	tight = old;
	tight.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (16u << 20);
	assert_int_equal(setrlimit(RLIMIT_AS, &tight), 0);
	errno = 0;
	void *p = rh_shm_attach(&ref);
	int err = errno;
	assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
	assert_null(p);
	assert_int_equal(err, ENOMEM);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(0);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the child of a fork after the failed attach ended with status %#x", status);
	unsigned char *q = rh_shm_attach(&ref);
	assert_non_null(q);
	assert_true(pattern_ok(q, 4096, 8));
	rh_shm_free(q);
	rh_shm_trim();
	producer_done(&producer, id);
}

/* With an entry taken by every heap attached so far, all of them idle, one
 * more heap still attaches: the heap idle longest gives way. */
static void test_multiproc_idle_heaps_give_way(void **state)
{
	(void)state;
	enum { N = RH_MAX_FOREIGN + 2 };
	static struct peer producers[N];
	static struct rh_shm_ref refs[N];
	static char names[N][RH_HEAP_NAME_LEN];
	char found[600] = "";
	int ids[N];
	for (unsigned i = 0; i < N; i++) {
		start(&producers[i]);
		ids[i] = produce(&producers[i], 256, i, &refs[i]);
		memcpy(names[i], refs[i].heap, sizeof(names[i]) - 1);
	}
	long start_ms = peer_now_ms();
	for (unsigned i = 0; i < N; i++) {
		errno = 0;
		unsigned char *p = rh_shm_attach(&refs[i]);
		if (!p)
			fail_msg("heap %u of %u: attach failed: %s", i + 1, (unsigned)N, strerror(errno));
		assert_true(pattern_ok(p, 256, i));
		rh_shm_free(p);
	}
	/* Unless the machine took a second for it, and the first heaps went
	 * for their time: the two idle longest gave way, and only they. */
	bool timed_out = peer_now_ms() - start_ms >= 900;
	if (!timed_out) {
		for (unsigned i = 0; i < N; i++)
			if ((maps_naming(names + i, 1, found, sizeof(found)) > 0) != (i >= 2))
				fail_msg("heap %u of %u is %s", i + 1, (unsigned)N, i < 2 ? "still mapped" : "gone");
	}
	rh_shm_trim();
	assert_int_equal(maps_naming(names, N, found, sizeof(found)), 0);
	for (unsigned i = 0; i < N; i++)
		producer_done(&producers[i], ids[i]);
	if (timed_out)
		skip();
}

/* A stale reference to a block whose pages went back to the filesystem:
 * the attacher says ESTALE and must not bring the punched page back (the
 * read would allocate it; on a full filesystem it would raise SIGBUS). */
static void test_multiproc_stale_ref_to_trimmed_block(void **state)
{
	(void)state;
	struct peer peer;
	struct rh_shm_ref ref;
	struct stat st;
	char path[512];
	start(&peer);
	unsigned char *p = rh_shm_alloc(MIB);
	assert_non_null(p);
	memset(p, 0x77, MIB);
	assert_int_equal(rh_shm_ref(p, &ref), 0);
	rh_shm_free(p);
	rh_shm_trim();
	snprintf(path, sizeof(path), "%s/%s", test_dir, rh_shm_heap_name());
	assert_int_equal(stat(path, &st), 0);
	blkcnt_t before = st.st_blocks;
	for (unsigned i = 0; i < 3; i++) {
		int err = try_attach(&peer, &ref);
		if (err != ESTALE)
			fail_msg("a ref to a freed and trimmed block: expected ESTALE, got %s",
				 err ? strerror(err) : "success");
	}
	assert_int_equal(stat(path, &st), 0);
	if (st.st_blocks > before)
		fail_msg("attaching a stale ref grew the heap file from %lld to %lld KiB",
			 (long long)before / 2, (long long)st.st_blocks / 2);
	/* Nor does attaching in the creator itself. */
	errno = 0;
	assert_null(rh_shm_attach(&ref));
	assert_int_equal(errno, ESTALE);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_blocks <= before);
	assert_int_equal(peer_finish(&peer), 0);
	assert_int_equal(heap_used(), base);
}

/* --- SIGKILL in the middle of things --------------------------------------- */

static void watchdog(int sig)
{
	static const char msg[] = "test_multiproc: the heap hung after a holder was killed\n";
	(void)sig;
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	_exit(1);
}

static void test_multiproc_sigkill_while_attached_leaves_heap_usable(void **state)
{
	(void)state;
	struct rh_shm_ref ref;
	char hex[HEX_LEN];
	unsigned char *p = rh_shm_alloc(4000);
	assert_non_null(p);
	pattern_fill(p, 4000, 8);
	assert_int_equal(rh_shm_ref(p, &ref), 0);
	ref_to_hex(&ref, hex);

	signal(SIGALRM, watchdog);
	alarm(60);
	/* Peers attach and drop the block in a tight loop while we allocate and
	 * free: killing them at random moments hits them inside every step. */
	uint64_t rng = 77;
	for (unsigned round = 0; round < 12; round++) {
		struct peer a, b;
		start(&a);
		start(&b);
		assert_int_equal(peer_cmd(&a, NULL, 0, "churn %s", hex), 0);
		assert_int_equal(peer_cmd(&b, NULL, 0, "churn %s", hex), 0);
		rng = rng * 6364136223846793005ULL + 1;
		long until = peer_now_ms() + 5 + (long)(rng >> 59);
		while (peer_now_ms() < until) {
			void *q = rh_shm_alloc(64);
			assert_non_null(q);
			rh_shm_free(q);
		}
		peer_kill(&a);
		peer_kill(&b);
	}
	/* Our heap still works for us and for a new peer. */
	uint64_t used = heap_used();
	assert_int_equal(used, base + 4000);
	void *more[100];
	for (unsigned i = 0; i < 100; i++) {
		more[i] = rh_shm_alloc(64 + i * 100);
		assert_non_null(more[i]);
		memset(more[i], i, 64 + i * 100);
	}
	for (unsigned i = 0; i < 100; i++)
		rh_shm_free(more[i]);
	assert_int_equal(heap_used(), used);
	assert_true(pattern_ok(p, 4000, 8));
	struct peer c;
	start(&c);
	int id = share(&c, p, 4000, 8);
	assert_int_equal(holders(rh_shm_heap_name()), 2);
	assert_int_equal(peer_cmd(&c, NULL, 0, "free %d", id), 0);
	assert_int_equal(peer_finish(&c), 0);
	alarm(0);
	assert_int_equal(holders(rh_shm_heap_name()), 1);
	/* References the killed peers held are dropped, but for one taken by
	 * a peer killed between taking it and recording it (the record comes
	 * after, so that it never says more than is held): the block goes,
	 * or stays, never goes twice or below zero. */
	rh_shm_free(p);
	rh_shm_trim();
	used = wait_used(base);
	assert_true(used == base || used == base + 4000);
}

/* --- References of holders that are gone --------------------------------------- */

/* The references held on our block p (its refcount, without the flags). */
static uint32_t refs_on(const void *p)
{
	const struct block_header *bh = (const struct block_header *)p - 1;
	return __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE) & RH_REF_COUNT_MASK;
}

/* A block of ours of SIZE bytes, filled with the pattern of SEED. */
static unsigned char *patterned(size_t size, unsigned seed)
{
	unsigned char *p = rh_shm_alloc(size);
	assert_non_null(p);
	pattern_fill(p, size, seed);
	return p;
}

/* Our reference on p (SIZE bytes, pattern SEED) goes, and a trim: the live
 * holder a keeps its reference ID, reads the block, and gives it back. */
static void holder_keeps(struct peer *a, unsigned char *p, size_t size, unsigned seed, int id)
{
	rh_shm_free(p);
	rh_shm_trim();
	assert_int_equal(heap_used(), base + size);
	assert_int_equal(refs_on(p), 1);
	assert_int_equal(peer_cmd(a, NULL, 0, "check %d %zu %u", id, size, seed), 0);
	assert_int_equal(peer_cmd(a, NULL, 0, "free %d", id), 0);
	assert_int_equal(wait_used(base), base);
	assert_int_equal(peer_finish(a), 0);
}

static void test_multiproc_killed_holder_references_are_dropped(void **state)
{
	(void)state;
	unsigned char *p = patterned(5000, 1), *q = patterned(200000, 2);
	struct peer a;
	start(&a);
	share(&a, p, 5000, 1);
	share(&a, q, 200000, 2);
	share(&a, q, 200000, 2);  /* two references on one block */
	assert_int_equal(refs_on(q), 3);
	peer_kill(&a);
	rh_shm_free(p);
	rh_shm_free(q);
	/* Only the dead holder's references keep them. */
	assert_int_equal(heap_used(), base + 205000);
	rh_shm_trim();
	assert_int_equal(heap_used(), base);
	/* Its slot is free again, and nothing more is dropped. */
	assert_int_equal(holders(rh_shm_heap_name()), 1);
	rh_shm_trim();
	assert_int_equal(wait_used(base), base);
}

static void test_multiproc_next_holder_drops_what_a_dead_one_held(void **state)
{
	(void)state;
	unsigned char *p = patterned(3000, 3), *r = patterned(100, 4);
	struct peer a, b;
	start(&a);
	share(&a, p, 3000, 3);
	peer_kill(&a);
	rh_shm_free(p);
	assert_int_equal(heap_used(), base + 3100);
	/* The next holder takes the dead one's slot, and first drops what it
	 * held: we neither allocate nor trim here. */
	start(&b);
	int id = share(&b, r, 100, 4);
	assert_int_equal(heap_used(), base + 100);
	assert_int_equal(refs_on(r), 2);
	assert_int_equal(peer_cmd(&b, NULL, 0, "free %d", id), 0);
	assert_int_equal(peer_finish(&b), 0);
	rh_shm_free(r);
	assert_int_equal(wait_used(base), base);
}

static void test_multiproc_exited_holder_references_are_dropped(void **state)
{
	(void)state;
	unsigned char *p = patterned(70000, 5);
	struct peer a;
	start(&a);
	share(&a, p, 70000, 5);
	/* It ends without releasing what it holds, as a process may. */
	assert_int_equal(peer_cmd(&a, NULL, 0, "exit"), 0);
	assert_int_equal(peer_wait(&a, PEER_TIMEOUT_MS), 0);
	rh_shm_free(p);
	assert_int_equal(heap_used(), base + 70000);
	rh_shm_trim();
	assert_int_equal(heap_used(), base);
}

static void test_multiproc_exec_drops_the_old_image_references(void **state)
{
	(void)state;
	unsigned char *p = patterned(4000, 6), *r = patterned(50, 7);
	struct peer a, b;
	start(&a);
	share(&a, p, 4000, 6);
	/* The same process, a new image: what the old one held is gone. */
	assert_int_equal(peer_cmd(&a, NULL, 0, "exec"), 0);
	assert_int_equal(peer_cmd(&a, NULL, 0, "enabled"), 0);
	rh_shm_free(p);
	rh_shm_trim();
	assert_int_equal(heap_used(), base + 50);
	/* The same when the new image attaches first, taking the old one's
	 * slot. */
	p = patterned(4000, 6);
	start(&b);
	share(&b, p, 4000, 6);
	assert_int_equal(peer_cmd(&b, NULL, 0, "exec"), 0);
	assert_int_equal(peer_cmd(&b, NULL, 0, "enabled"), 0);
	rh_shm_free(p);
	int id = share(&b, r, 50, 7);
	assert_int_equal(heap_used(), base + 50);
	assert_int_equal(peer_cmd(&b, NULL, 0, "free %d", id), 0);
	assert_int_equal(peer_finish(&b), 0);
	assert_int_equal(peer_finish(&a), 0);
	rh_shm_free(r);
	assert_int_equal(wait_used(base), base);
}

static void test_multiproc_holder_closing_descriptors_keeps_references(void **state)
{
	(void)state;
	unsigned char *p = patterned(6000, 8);
	struct peer a;
	start(&a);
	int id = share(&a, p, 6000, 8);
	/* It closes every descriptor, ours too: its mapping of the heap keeps
	 * the open file, and the lock with it. */
	assert_int_equal(peer_cmd(&a, NULL, 0, "closefds"), 0);
	holder_keeps(&a, p, 6000, 8, id);
}

static void test_multiproc_forked_child_leaves_holder_references(void **state)
{
	(void)state;
	unsigned char *p = patterned(9000, 9);
	struct peer a;
	char reply[64];
	start(&a);
	int id = share(&a, p, 9000, 9);
	/* The child shares the holder's lock, and ends: the lock stays. */
	assert_int_equal(peer_cmd(&a, reply, sizeof(reply), "fork"), 0);
	assert_string_equal(reply, "ok 0");
	assert_int_equal(holders(rh_shm_heap_name()), 2);
	holder_keeps(&a, p, 9000, 9, id);
}

/* A pid no process has: a child of ours, reaped. */
static pid_t dead_pid(void)
{
	pid_t c = fork();
	if (c == 0)
		_exit(0);
	assert_true(c > 0);
	assert_int_equal(waitpid(c, NULL, 0), c);
	return c;
}

static void test_multiproc_hostile_reference_table(void **state)
{
	(void)state;
	unsigned char *shared = rh_shm_alloc(2000), *plain = rh_shm_alloc(3000);
	assert_non_null(shared);
	assert_non_null(plain);
	pattern_fill(plain, 3000, 10);
	struct rh_shm_ref ref;
	assert_int_equal(rh_shm_ref(shared, &ref), 0);
	struct heap_header *hdr = rh_heap->hdr;
	assert_true(hdr->ref_tables >= sizeof(*hdr));
	assert_int_equal(hdr->ref_table_size, RH_REF_TABLE_SIZE);
	/* Slot 7, claimed by a process that is gone, whose table holds noise,
	 * entries naming places that are no blocks, a block never shared, and
	 * many more references on a shared block than it has. */
	unsigned slot = 7;
	struct heap_ref_entry t[RH_REF_ENTRIES];
	uint64_t rng = 99;
	for (size_t i = 0; i < sizeof(t); i++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		((unsigned char *)t)[i] = (unsigned char)(rng >> 56);
	}
	uint64_t plain_off = (uint64_t)(plain - (unsigned char *)rh_heap->base);
	t[0] = (struct heap_ref_entry){ plain_off, (uint32_t)(ref.superblock >> rh_heap->page_shift), 5 };
	t[1] = (struct heap_ref_entry){ ref.offset, (uint32_t)(ref.superblock >> rh_heap->page_shift), 0xffffffffu };
	t[2] = (struct heap_ref_entry){ ref.offset + 16, (uint32_t)(ref.superblock >> rh_heap->page_shift), 1 };
	t[3] = (struct heap_ref_entry){ rh_heap->mapped_end + 4096, 1, 1 };
	t[4] = (struct heap_ref_entry){ ref.offset, 0, 1 };
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", test_dir, rh_shm_heap_name());
	int fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	uint64_t at = hdr->ref_tables + slot * (uint64_t)RH_REF_TABLE_SIZE;
	assert_int_equal(pwrite(fd, t, sizeof(t), (off_t)at), (ssize_t)sizeof(t));
	hdr->holders[slot].pid = dead_pid();
	hdr->holders[slot].state = RH_HOLDER_CLAIMED;
	rh_shm_trim();
	/* The block never shared is left as it was; the shared one had our
	 * reference only, and is gone; the table is a hole again. */
	assert_int_equal(refs_on(plain), 1);
	assert_true(pattern_ok(plain, 3000, 10));
	assert_int_equal(heap_used(), base + 3000);
	assert_int_equal(hdr->holders[slot].pid, 0);
	off_t data = lseek(fd, (off_t)at, SEEK_DATA);
	assert_true(data < 0 || data >= (off_t)(at + RH_REF_TABLE_SIZE));
	close(fd);
	rh_shm_free(plain);
	assert_int_equal(wait_used(base), base);
}

static void test_multiproc_full_reference_table(void **state)
{
	(void)state;
	enum { N = RH_REF_ENTRIES + 2 };
	static unsigned char *b[N];
	struct peer a;
	int id[N];
	start(&a);
	for (unsigned i = 0; i < N; i++) {
		b[i] = patterned(32, i);
		id[i] = share(&a, b[i], 32, i);
	}
	/* The table holds the first RH_REF_ENTRIES blocks. The last block
	 * gets two more references; the first block's entry is freed; one
	 * reference on the last block goes back, which makes no entry; a take
	 * of it then makes one that says all three references it holds. */
	share(&a, b[N - 1], 32, N - 1);
	int extra = share(&a, b[N - 1], 32, N - 1);
	assert_int_equal(peer_cmd(&a, NULL, 0, "free %d", id[0]), 0);
	assert_int_equal(peer_cmd(&a, NULL, 0, "free %d", extra), 0);
	share(&a, b[N - 1], 32, N - 1);
	assert_int_equal(refs_on(b[N - 1]), 4);
	peer_kill(&a);
	rh_shm_trim();
	/* Block N-2 had no entry: its reference stays (README). */
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(refs_on(b[i]), i == N - 2 ? 2 : 1);
	for (unsigned i = 0; i < N; i++)
		rh_shm_free(b[i]);
	assert_int_equal(heap_used(), base + 32);
}

/* A header whose reference-table fields another process changed: the
 * creator goes by the layout it made. */
static void test_multiproc_creator_ignores_forged_table_layout(void **state)
{
	(void)state;
	unsigned char *p = patterned(1000, 11);
	struct heap_header *hdr = rh_heap->hdr;
	uint64_t tables = hdr->ref_tables;
	uint32_t size = hdr->header_size;
	hdr->ref_tables = size;  /* the first superblock */
	hdr->header_size = size + 64 * RH_REF_TABLE_SIZE;
	for (unsigned i = 1; i < RH_MAX_HOLDERS; i++)
		if (!hdr->holders[i].pid)
			hdr->holders[i].pid = dead_pid();
	rh_shm_trim();
	hdr->ref_tables = tables;
	hdr->header_size = size;
	assert_true(pattern_ok(p, 1000, 11));
	void *more[64];
	for (unsigned i = 0; i < 64; i++) {
		more[i] = rh_shm_alloc(16 + i * 64);
		assert_non_null(more[i]);
		memset(more[i], 0x5a, 16 + i * 64);
	}
	for (unsigned i = 0; i < 64; i++)
		rh_shm_free(more[i]);
	rh_shm_free(p);
	assert_int_equal(wait_used(base), base);
}

/* A signal handler that forks while the creator drops dead holders'
 * references: the child must not go on with the work (it would drop them
 * twice, with its parent, or crash on its heap, cleared at fork), and every
 * reference is dropped once, by the parent. Half of the blocks are held by
 * the dead holders alone, which frees them. */
static pid_t reclaimer;

static void fork_now(int sig)
{
	(void)sig;
	int saved = errno;
	(void)fork();
	errno = saved;
}

static void test_multiproc_fork_in_handler_during_reclaim(void **state)
{
	(void)state;
	enum { N = 200, PEERS = 4, ROUNDS = 12 };
	static unsigned char *b[N];
	reclaimer = getpid();
	struct sigaction sa = { .sa_handler = fork_now }, old;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
	unsigned forked = 0;
	for (unsigned round = 0; round < ROUNDS; round++) {
		for (unsigned i = 0; i < N; i++)
			b[i] = patterned(48, i);
		struct peer a[PEERS];
		for (unsigned k = 0; k < PEERS; k++) {
			start(&a[k]);
			for (unsigned i = 0; i < N; i++)
				share(&a[k], b[i], 48, i);
		}
		for (unsigned k = 0; k < PEERS; k++)
			peer_kill(&a[k]);
		assert_int_equal(refs_on(b[0]), 1 + PEERS);
		for (unsigned i = 1; i < N; i += 2)
			rh_shm_free(b[i]);
		struct itimerval t = { { 0, 0 }, { 0, 50 + (long)round * 150 } };
		assert_int_equal(setitimer(ITIMER_REAL, &t, NULL), 0);
		rh_shm_trim();
		while (getpid() == reclaimer && !getitimer(ITIMER_REAL, &t) && t.it_value.tv_usec)
			usleep(100);
		if (getpid() != reclaimer)
			_exit(0);  /* a child that got out: it did no harm */
		int status;
		pid_t c;
		while ((c = waitpid(-1, &status, WNOHANG)) > 0) {
			forked++;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				fail_msg("round %u: the child forked in the handler ended with status 0x%x", round, status);
		}
		rh_shm_trim();
		for (unsigned i = 0; i < N; i += 2)
			if (refs_on(b[i]) != 1)
				fail_msg("round %u: block %u has %u references, not 1", round, i, refs_on(b[i]));
		assert_int_equal(heap_used(), base + N / 2 * 48);
		for (unsigned i = 0; i < N; i += 2)
			rh_shm_free(b[i]);
	}
	sigaction(SIGALRM, &old, NULL);
	print_message("%u of %u rounds forked in the handler\n", forked, ROUNDS);
	assert_int_equal(wait_used(base), base);
}

/* A large allocation that would grow the heap takes, first, a block that
 * only a dead holder kept: the heap does not grow. */
static void test_multiproc_dead_holder_block_reused_before_growing(void **state)
{
	(void)state;
	unsigned char *p = patterned(8 << 20, 13);
	struct peer a;
	start(&a);
	share(&a, p, 8 << 20, 13);
	peer_kill(&a);
	rh_shm_free(p);
	struct rh_shm_stats st;
	assert_int_equal(rh_shm_stats(&st), 0);
	uint64_t size = st.heap_size;
	usleep(300 * 1000);  /* the creator looks every 250 ms at most */
	void *q = rh_shm_alloc(8 << 20);
	assert_non_null(q);
	assert_int_equal(rh_shm_stats(&st), 0);
	assert_int_equal(st.heap_size, size);
	rh_shm_free(q);
	assert_int_equal(wait_used(base), base);
}

/* A thread with a cancellation pending drops a dead holder's references:
 * it is not cancelled in the middle, with the locks held. */
static void *trim_cancelled(void *arg)
{
	(void)arg;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cancel(pthread_self());
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	rh_shm_trim();
	pthread_testcancel();
	return NULL;
}

static void test_multiproc_reclaim_is_no_cancellation_point(void **state)
{
	(void)state;
	unsigned char *p = patterned(2000, 12);
	struct peer a;
	start(&a);
	share(&a, p, 2000, 12);
	peer_kill(&a);
	rh_shm_free(p);
	pthread_t t;
	void *ret = NULL;
	assert_int_equal(pthread_create(&t, NULL, trim_cancelled, NULL), 0);
	assert_int_equal(pthread_join(t, &ret), 0);
	assert_ptr_equal(ret, PTHREAD_CANCELED);
	assert_int_equal(heap_used(), base);
	signal(SIGALRM, watchdog);
	alarm(20);
	rh_shm_trim();
	alarm(0);
}

static int setup(void **state)
{
	(void)state;
	test_dir_make();
	options_load(&rh_options); /* in case the library read them already */
	dir_fd = open(test_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return dir_fd >= 0 ? 0 : -1;
}

static int baseline(void **state)
{
	(void)state;
	rh_shm_trim();  /* what holders killed by earlier tests held goes first */
	base = heap_used();
	return 0;
}

static int reap(void **state)
{
	(void)state;
	peer_reap_all();
	alarm(0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close(dir_fd);
	test_dir_remove();
	return 0;
}

/* A thread attaches and releases the one block of a heap it holds nothing
 * else of, while another lets idle heaps go over and over: the heap is let
 * go and mapped again many times, and no attach fails or reads a heap
 * being unmapped. With `twice`, each block is released a second time,
 * which must be refused (with a warning) even as the heap goes. */
struct churn_arg {
	const struct rh_shm_ref *ref;
	bool twice;
	unsigned bad;
	_Atomic bool stop;
};

static void *attach_churn(void *arg)
{
	struct churn_arg *a = arg;
	while (!atomic_load(&a->stop)) {
		unsigned char *p = rh_shm_attach(a->ref);
		if (!p || !pattern_ok(p, 256, 9))
			a->bad++;
		if (p)
			rh_shm_free(p);
		if (p && a->twice)
			rh_shm_free(p);
	}
	return NULL;
}

static uint64_t heaps_mapped(void)
{
	return __atomic_load_n(&rh_stats.heaps_mapped, __ATOMIC_RELAXED);
}

static void idle_race(bool twice)
{
	static char names[1][RH_HEAP_NAME_LEN];
	char found[600] = "";
	struct peer producer;
	struct rh_shm_ref ref;
	int id = one_producer(&producer, 256, 9, &ref, names[0]);
	uint64_t mapped = heaps_mapped();
	/* The warnings of the second releases go nowhere. */
	int err = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
	assert_true(err >= 0 && null >= 0);
	if (twice)
		dup2(null, STDERR_FILENO);
	pthread_t t;
	struct churn_arg arg = { .ref = &ref, .twice = twice };
	assert_int_equal(pthread_create(&t, NULL, attach_churn, &arg), 0);
	/* Until the heap went and came back 3000 times, or 10 s. */
	for (long end = peer_now_ms() + 10000; heaps_mapped() - mapped < 3000 && peer_now_ms() < end;)
		heap_idle_sweep(true);
	atomic_store(&arg.stop, true);
	pthread_join(t, NULL);
	dup2(err, STDERR_FILENO);
	close(err);
	close(null);
	assert_int_equal(arg.bad, 0);
	/* A machine too busy to let the two threads take turns makes the
	 * race too rare to mean anything. */
	uint64_t times = heaps_mapped() - mapped;
	bool busy = times < 100;
	rh_shm_trim();
	assert_int_equal(maps_naming(names, 1, found, sizeof(found)), 0);
	assert_int_equal(holders(ref.heap), 1);
	/* Only the producer's reference is left on the block. */
	assert_int_equal(peer_cmd(&producer, NULL, 0, "check %d 256 9", id), 0);
	producer_done(&producer, id);
	if (times < 3000)
		print_message("the heap was mapped again only %" PRIu64 " times in 10 s\n", times);
	if (busy)
		skip();
}

static void test_multiproc_idle_heap_races_its_release(void **state)
{
	(void)state;
	idle_race(false);
}

static void test_multiproc_second_release_races_the_heaps_release(void **state)
{
	(void)state;
	idle_race(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_multiproc_peer_attaches_sees_and_frees, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_concurrent_frees_balance, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_refcount_counts_live_holders, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_holder_slots_are_reused, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_bad_refs_fail_cleanly, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_release_twice_drops_one_reference, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_release_checks_the_header_again, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_forged_superblocks_leave_holes_alone, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_attach_own_block_adds_reference, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_attached_block_outlives_its_creator, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_realloc_of_shared_blocks_copies, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_more_holders_than_slots, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_consumer_outlives_many_producers, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_idle_heap_is_kept_a_while, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_idle_heap_goes_while_another_is_busy, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_forked_child_lets_idle_heaps_go, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_idle_heaps_give_way, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_attach_without_address_space_leaves_nothing, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_stale_ref_to_trimmed_block, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_sigkill_while_attached_leaves_heap_usable, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_killed_holder_references_are_dropped, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_next_holder_drops_what_a_dead_one_held, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_exited_holder_references_are_dropped, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_exec_drops_the_old_image_references, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_holder_closing_descriptors_keeps_references, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_forked_child_leaves_holder_references, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_hostile_reference_table, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_full_reference_table, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_creator_ignores_forged_table_layout, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_fork_in_handler_during_reclaim, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_dead_holder_block_reused_before_growing, baseline, reap),
		/* Tests that make threads come last: once a process has had a
		 * thread, fork takes the heap's locks, and the fork in a signal
		 * handler above is of a process that never had one. */
		cmocka_unit_test_setup_teardown(test_multiproc_reclaim_is_no_cancellation_point, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_idle_heap_races_its_release, baseline, reap),
		cmocka_unit_test_setup_teardown(test_multiproc_second_release_races_the_heaps_release, baseline, reap),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
