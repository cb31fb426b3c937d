/* SPDX-License-Identifier: MIT */
/*
 * Tests of heap/reader.c on heap files built byte by byte (tests/heapfix.h):
 * every figure of a known heap, REDHAWK 2.2 heaps, each way a file can be
 * broken, and orphan detection through the creator's lock.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "redhawk/shm.h"
#include "format.h"
#include "testutil.h"
#include "heapfix.h"

#define PAGE 4096u
#define NAME "heap-1"

/* --- The reference heap ------------------------------------------------------ */

#define MAX_BLOCKS 16

/* A native heap with one block of every kind, and what the reader must say. */
struct fixture {
	struct heapfix f;
	uint64_t sb_a, sb_b, jsb;
	uint32_t small_page, big_page, large_page, freed_large_page;
	uint64_t module_rec;
	uint32_t site[3];
	struct rh_block_info blocks[MAX_BLOCKS];
	unsigned nblocks;
};

static const uint64_t frames0[] = { 0x401000, 0x401234, 0x7f0000001000 };
static const uint64_t frames1[] = { 0x402000 };
static const uint64_t frames2[] = { 0x403000, 0x403010, 0x403020, 0x403030, 0x403040 };
static const uint8_t build_id[20] = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
	11, 12, 13, 14, 15, 16 };

static void expect_block(struct fixture *x, uint64_t data, uint64_t size, uint64_t usable,
	uint32_t refs, uint32_t site, unsigned reachable)
{
	assert_true(x->nblocks < MAX_BLOCKS);
	x->blocks[x->nblocks++] = (struct rh_block_info){
		.offset = data, .size = size, .usable = usable, .refcount = refs, .site = site,
		.reachable = reachable,
	};
}

static void fixture_make(struct fixture *x)
{
	struct heapfix *f = &x->f;
	memset(x, 0, sizeof(*x));
	heapfix_init(f, PAGE);

	/* Order in the file: superblock A (16 pages, its descriptors fit in its
	 * first page), the journal, superblock B. The journal is filled before
	 * A's blocks so that they can name its sites. */
	x->sb_a = heapfix_data_sb(f, 16);
	x->jsb = heapfix_journal_sb(f, 2);
	x->module_rec = heapfix_module(f, x->jsb, "/usr/lib/libfixture.so.1", 0x7f0000000000,
		0x7f0000000000, 0x7f0000042000, build_id, sizeof(build_id));
	x->site[0] = heapfix_site(f, x->jsb, frames0, 3, 4096, 2, 10, 9999);
	heapfix_record(f, x->jsb, 99, 24); /* a tag this reader does not know */
	x->site[1] = heapfix_site(f, x->jsb, frames1, 1, -5, 0, 1, 1);
	heapfix_module(f, x->jsb, "a", 0, 0x1000, 0x2000, build_id, 0);
	x->site[2] = heapfix_site(f, x->jsb, frames2, 5, 0, 0, 0, 0);

	/* Page 1: 64-byte slots. Slot 1 was freed; slot 2 is displaced by 16. */
	x->small_page = 1;
	heapfix_span(f, x->sb_a, 1, 1, RH_PAGE_SMALL, 2);
	uint64_t d;
	d = heapfix_small(f, x->sb_a, 1, 0, 40, x->site[0], 1, 0);
	expect_block(x, d, 40, 48, 1, x->site[0], 0);
	heapfix_small(f, x->sb_a, 1, 1, 8, x->site[0], 0, 0);
	d = heapfix_small(f, x->sb_a, 1, 2, 20, x->site[1], 2 | RH_REF_REACHABLE | RH_REF_SHARED, 16);
	expect_block(x, d, 20, 32, 2, x->site[1], 1);
	d = heapfix_small(f, x->sb_a, 1, 3, 48, 0, 1, 0);
	expect_block(x, d, 48, 48, 1, 0, 0);

	/* Pages 2-3: 4096-byte slots (read header by header); slot 1 displaced
	 * by 64 for alignment. */
	x->big_page = 2;
	heapfix_span(f, x->sb_a, 2, 2, RH_PAGE_SMALL, 30);
	d = heapfix_small(f, x->sb_a, 2, 0, 4000, x->site[2], 1, 0);
	expect_block(x, d, 4000, 4080, 1, x->site[2], 0);
	d = heapfix_small(f, x->sb_a, 2, 1, 100, x->site[2], 3, 64);
	expect_block(x, d, 100, 4096 - 64 - 16, 3, x->site[2], 0);

	/* Pages 4-5 free, 6-8 one large block, 9-10 a freed large block. */
	heapfix_span(f, x->sb_a, 4, 2, RH_PAGE_FREE, 0);
	x->large_page = 6;
	d = heapfix_large(f, x->sb_a, 6, 3, 16, 10000, x->site[0], 1);
	expect_block(x, d, 10000, 3 * PAGE - 16, 1, x->site[0], 0);
	x->freed_large_page = 9;
	heapfix_large(f, x->sb_a, 9, 2, 64, 5000, 0, 0);

	/* Superblock B, 4 pages: 32-byte slots. */
	x->sb_b = heapfix_data_sb(f, 4);
	heapfix_span(f, x->sb_b, 1, 1, RH_PAGE_SMALL, 0);
	for (uint32_t k = 0; k < 3; k++) {
		uint64_t size = k == 0 ? 16 : k == 1 ? 1 : 10;
		d = heapfix_small(f, x->sb_b, 1, k, size, x->site[1], 1, 0);
		expect_block(x, d, size, 16, 1, x->site[1], 0);
	}

	heapfix_counter(f, 0, 1000, 5);
	heapfix_counter(f, 3, -200, -1);
}

/* --- Helpers ------------------------------------------------------------------- */

static int dirfd_open(void)
{
	int fd = open(test_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/* Writes the image as NAME and opens it; returns open's result. */
static int write_open(struct heapfix *f, struct rh_heap **h)
{
	assert_int_equal(heapfix_write(f, test_dir, NAME), 0);
	int dfd = dirfd_open();
	int rc = rh_heap_open(dfd, NAME, h);
	close(dfd);
	return rc;
}

struct collect {
	struct rh_block_info blocks[4096];
	unsigned n;
	unsigned stop_at;     /* return stop_rc from this call, 0: never */
	int stop_rc;
	uint64_t total_size;
};

static int collect_block(const struct rh_block_info *b, void *arg)
{
	struct collect *c = arg;
	if (c->n < sizeof(c->blocks) / sizeof(c->blocks[0]))
		c->blocks[c->n] = *b;
	c->n++;
	c->total_size += b->size;
	return c->stop_at && c->n == c->stop_at ? c->stop_rc : 0;
}

static int count_cb(const void *item, void *arg)
{
	(void)item;
	(*(unsigned *)arg)++;
	return 0;
}

static int count_site(const struct rh_site_info *s, void *arg) { return count_cb(s, arg); }
static int count_module(const struct rh_module_info *m, void *arg) { return count_cb(m, arg); }
static int count_block(const struct rh_block_info *b, void *arg) { return count_cb(b, arg); }

/* The heap must be refused with reason in its error: by rh_heap_open, or, when
 * the header and superblocks are sound, by one of the walks. */
static void assert_rejected(struct heapfix *f, const char *reason)
{
	struct rh_heap *h = NULL;
	int rc = write_open(f, &h);
	assert_non_null(h);
	if (rc == 0) {
		unsigned n = 0;
		int failed = rh_heap_walk_blocks(h, count_block, &n) == -1 ||
			rh_heap_walk_sites(h, count_site, &n) == -1 ||
			rh_heap_walk_modules(h, count_module, &n) == -1;
		if (!failed)
			fail_msg("file accepted, expected \"%s\"", reason);
	} else {
		assert_int_equal(rc, EPROTO);
		unsigned n = 0;
		assert_int_equal(rh_heap_walk_blocks(h, count_block, &n), -1);
		assert_int_equal(rh_heap_walk_sites(h, count_site, &n), -1);
		assert_int_equal(n, 0);
	}
	if (!strstr(rh_heap_error(h), reason))
		fail_msg("error \"%s\", expected \"%s\"", rh_heap_error(h), reason);
	rh_heap_close(h);
}

static struct fixture fx;

static int setup(void **state)
{
	(void)state;
	fixture_make(&fx);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	heapfix_free(&fx.f);
	return 0;
}

/* --- A sound native heap ------------------------------------------------------ */

static void test_reader_reads_native_heap_info(void **state)
{
	(void)state;
	struct rh_heap *h;
	assert_int_equal(write_open(&fx.f, &h), 0);
	const struct rh_heap_info *in = rh_heap_info(h);
	assert_string_equal(rh_heap_error(h), "");
	assert_int_equal(in->kind, RH_HEAP_NATIVE);
	assert_int_equal(in->version_major, 1);
	assert_int_equal(in->version_minor, RH_HEAP_VERSION_MINOR);
	assert_int_equal(in->file_size, fx.f.size);
	assert_int_equal(in->heap_size, (16 - 1) * PAGE + (4 - 1) * PAGE);
	assert_int_equal(in->heap_used, 800);
	assert_int_equal(in->live_blocks, 4);
	assert_int_equal(in->creator_pid, getpid());
	assert_int_equal(in->creator_uid, getuid());
	assert_int_equal(in->creator_start, 4242);
	assert_int_equal(in->created_ns, 1700000000123456789ull);
	assert_int_equal(in->instance, 0x1122334455667788ull);
	assert_string_equal(in->command, "fixture");
	assert_int_equal(in->superblocks, 3);
	assert_int_equal(in->journal_superblocks, 1);
	assert_int_equal(in->npools, 1);
	assert_int_equal(in->trace_depth, 8);
	assert_int_equal(in->flags, 0);
	/* No lock flag: judged by pid, and this process is alive. */
	assert_int_equal(in->orphaned, 0);
	assert_int_equal(in->refcount, 1);
	rh_heap_close(h);
}

/* rh_heap_open_fd reads the same heap from the caller's fd, which stays
 * open after a failure and after rh_heap_close. */
static void test_reader_opens_the_callers_fd(void **state)
{
	(void)state;
	struct rh_heap *h = NULL, *g = NULL;
	assert_int_equal(write_open(&fx.f, &h), 0);
	int dfd = dirfd_open();
	int fd = openat(dfd, NAME, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(rh_heap_open_fd(fd, &g), 0);
	const struct rh_heap_info *a = rh_heap_info(h), *b = rh_heap_info(g);
	assert_int_equal(b->instance, a->instance);
	assert_int_equal(b->heap_size, a->heap_size);
	assert_int_equal(b->heap_used, a->heap_used);
	assert_int_equal(b->live_blocks, a->live_blocks);
	assert_int_equal(b->superblocks, a->superblocks);
	assert_string_equal(b->command, a->command);
	static struct collect c, d;
	memset(&c, 0, sizeof(c));
	memset(&d, 0, sizeof(d));
	assert_int_equal(rh_heap_walk_blocks(g, collect_block, &c), 0);
	assert_int_equal(rh_heap_walk_blocks(h, collect_block, &d), 0);
	assert_true(c.n > 0);
	assert_int_equal(c.n, d.n);
	for (unsigned i = 0; i < c.n; i++) {
		assert_int_equal(c.blocks[i].offset, d.blocks[i].offset);
		assert_int_equal(c.blocks[i].size, d.blocks[i].size);
		assert_int_equal(c.blocks[i].refcount, d.blocks[i].refcount);
	}
	rh_heap_close(g);
	rh_heap_close(h);
	assert_true(fcntl(fd, F_GETFD) >= 0);  /* still the caller's */
	close(fd);

	char path[512];
	snprintf(path, sizeof(path), "%s/text-fd", test_dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("not a heap\n", fp);
	fclose(fp);
	fd = openat(dfd, "text-fd", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	g = (void *)1;
	assert_int_equal(rh_heap_open_fd(fd, &g), ENOTSUP);
	assert_null(g);
	assert_true(fcntl(fd, F_GETFD) >= 0);
	close(fd);
	unlink(path);
	assert_int_equal(rh_heap_open_fd(dfd, &g), ENOTSUP);  /* a folder */
	assert_true(fcntl(dfd, F_GETFD) >= 0);
	assert_int_equal(rh_heap_open_fd(-1, &g), EINVAL);
	close(dfd);
}

static void test_reader_walks_blocks(void **state)
{
	(void)state;
	struct rh_heap *h;
	static struct collect c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(write_open(&fx.f, &h), 0);
	assert_int_equal(rh_heap_walk_blocks(h, collect_block, &c), 0);
	assert_int_equal(c.n, fx.nblocks);
	for (unsigned i = 0; i < c.n; i++) {
		const struct rh_block_info *got = &c.blocks[i], *want = &fx.blocks[i];
		assert_int_equal(got->offset, want->offset);
		assert_int_equal(got->size, want->size);
		assert_int_equal(got->usable, want->usable);
		assert_int_equal(got->refcount, want->refcount);
		assert_int_equal(got->site, want->site);
		assert_int_equal(got->reachable, want->reachable);
	}
	rh_heap_close(h);
}

struct sites {
	struct rh_site_info s[8];
	uint64_t frames[8][64];
	unsigned n;
};

static int collect_site(const struct rh_site_info *s, void *arg)
{
	struct sites *c = arg;
	assert_true(c->n < 8);
	c->s[c->n] = *s;
	memcpy(c->frames[c->n], s->frames, s->depth * sizeof(uint64_t));
	c->n++;
	return 0;
}

static void test_reader_walks_sites(void **state)
{
	(void)state;
	struct rh_heap *h;
	struct sites c = { .n = 0 };
	assert_int_equal(write_open(&fx.f, &h), 0);
	assert_int_equal(rh_heap_walk_sites(h, collect_site, &c), 0);
	assert_int_equal(c.n, 3);
	const uint64_t *frames[3] = { frames0, frames1, frames2 };
	const unsigned depth[3] = { 3, 1, 5 };
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(c.s[i].id, fx.site[i]);
		assert_int_equal(c.s[i].depth, depth[i]);
		assert_memory_equal(c.frames[i], frames[i], depth[i] * sizeof(uint64_t));
	}
	assert_int_equal(c.s[0].live_bytes, 4096);
	assert_int_equal(c.s[0].live_blocks, 2);
	assert_int_equal(c.s[0].total_allocs, 10);
	assert_int_equal(c.s[0].total_bytes, 9999);
	assert_int_equal(c.s[1].live_bytes, -5);
	rh_heap_close(h);
}

struct modules {
	struct rh_module_info m[4];
	char path[4][64];
	uint8_t build_id[4][40];
	unsigned n;
};

static int collect_module(const struct rh_module_info *m, void *arg)
{
	struct modules *c = arg;
	assert_true(c->n < 4);
	c->m[c->n] = *m;
	assert_true(strlen(m->path) < sizeof(c->path[0]));
	strcpy(c->path[c->n], m->path);
	memcpy(c->build_id[c->n], m->build_id, m->build_id_len);
	c->n++;
	return 0;
}

static void test_reader_walks_modules(void **state)
{
	(void)state;
	struct rh_heap *h;
	struct modules c = { .n = 0 };
	assert_int_equal(write_open(&fx.f, &h), 0);
	assert_int_equal(rh_heap_walk_modules(h, collect_module, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.path[0], "/usr/lib/libfixture.so.1");
	assert_int_equal(c.m[0].base, 0x7f0000000000);
	assert_int_equal(c.m[0].start, 0x7f0000000000);
	assert_int_equal(c.m[0].end, 0x7f0000042000);
	assert_int_equal(c.m[0].build_id_len, sizeof(build_id));
	assert_memory_equal(c.build_id[0], build_id, sizeof(build_id));
	assert_string_equal(c.path[1], "a");
	assert_int_equal(c.m[1].build_id_len, 0);
	assert_int_equal(c.m[1].start, 0x1000);
	rh_heap_close(h);
}

static void test_reader_clamps_negative_counters(void **state)
{
	(void)state;
	struct fixture x;
	struct rh_heap *h;
	fixture_make(&x);
	heapfix_counter(&x.f, 5, -5000, -100);
	assert_int_equal(write_open(&x.f, &h), 0);
	assert_int_equal(rh_heap_info(h)->heap_used, 0);
	assert_int_equal(rh_heap_info(h)->live_blocks, 0);
	rh_heap_close(h);
	heapfix_free(&x.f);
}

static void test_reader_walk_returns_callback_result(void **state)
{
	(void)state;
	struct rh_heap *h;
	static struct collect c;
	memset(&c, 0, sizeof(c));
	c.stop_at = 2;
	c.stop_rc = 7;
	assert_int_equal(write_open(&fx.f, &h), 0);
	assert_int_equal(rh_heap_walk_blocks(h, collect_block, &c), 7);
	assert_int_equal(c.n, 2);
	rh_heap_close(h);
}

static void test_reader_reads_newer_minor_version(void **state)
{
	(void)state;
	struct fixture x;
	struct rh_heap *h;
	fixture_make(&x);
	heapfix_header(&x.f)->version_minor = 7;
	assert_int_equal(write_open(&x.f, &h), 0);
	assert_int_equal(rh_heap_info(h)->version_minor, 7);
	rh_heap_close(h);
	heapfix_free(&x.f);
}

static void test_reader_sanitizes_command(void **state)
{
	(void)state;
	struct fixture x;
	struct rh_heap *h;
	fixture_make(&x);
	struct heap_header *hdr = heapfix_header(&x.f);
	memset(hdr->command, 'x', sizeof(hdr->command)); /* no NUL at all */
	hdr->command[1] = '\033';
	hdr->command[5] = '\xc2'; /* U+009B, CSI, as UTF-8 */
	hdr->command[6] = '\x9b';
	hdr->command[10] = '\xc3'; /* U+00E9: a letter, kept */
	hdr->command[11] = '\xa9';
	assert_int_equal(write_open(&x.f, &h), 0);
	const char *cmd = rh_heap_info(h)->command;
	assert_int_equal(strlen(cmd), 63);
	assert_int_equal(cmd[1], '?');
	assert_int_equal(cmd[5], '?');
	assert_int_equal(cmd[6], '?');
	assert_int_equal((unsigned char)cmd[10], 0xc3);
	assert_int_equal((unsigned char)cmd[11], 0xa9);
	rh_heap_close(h);
	heapfix_free(&x.f);
}

/* Descriptor and slot windows, and journal windows, cut through spans and
 * records: a heap larger than one window of each must walk completely. */
static void test_reader_walks_across_read_windows(void **state)
{
	(void)state;
	struct heapfix f;
	struct rh_heap *h;
	static struct collect c;
	memset(&c, 0, sizeof(c));
	heapfix_init(&f, PAGE);
	const uint32_t npages = 3000; /* > 2048 descriptors per 64 KiB */
	uint64_t sb = heapfix_data_sb(&f, npages);
	uint32_t first = heapfix_sb(&f, sb)->header_size / PAGE;
	static const uint8_t classes[] = { 1, 4, 19, 0 }; /* 48, 96, 640, 32 bytes */
	uint64_t want_blocks = 0, want_bytes = 0;
	unsigned n = 0;
	for (uint32_t p = first; p + 20 <= npages; p += 20, n++) {
		uint8_t cls = classes[n % 4];
		uint32_t slot = heapfix_classes[cls];
		heapfix_span(&f, sb, p, 20, RH_PAGE_SMALL, cls);
		uint32_t slots = 20 * PAGE / slot;
		for (uint32_t k = 0; k < slots; k++) {
			if ((k + n) % 7 == 0) /* some free slots */
				continue;
			uint32_t shift = k % 11 == 0 && slot >= 64 ? 16 : 0;
			uint64_t size = slot - 16 - shift - (k % 5);
			heapfix_small(&f, sb, p, k, size, 0, 1, shift);
			want_blocks++;
			want_bytes += size;
		}
		heapfix_desc(&f, sb, p)->bumped = slots;
	}
	/* Journal: sites of varying depth across several 80 KiB windows. */
	uint64_t jsb = heapfix_journal_sb(&f, 128);
	uint64_t frames[64];
	unsigned nsites = 0;
	for (;;) {
		unsigned depth = nsites % 65;
		struct superblock *j = heapfix_sb(&f, jsb);
		if (j->journal_end + sizeof(struct journal_site) + depth * 8 > j->size)
			break;
		for (unsigned i = 0; i < depth; i++)
			frames[i] = (uint64_t)nsites << 8 | i;
		heapfix_site(&f, jsb, frames, depth, nsites, 0, 0, 0);
		nsites++;
	}
	assert_true(nsites > 1000);

	assert_int_equal(write_open(&f, &h), 0);
	assert_int_equal(rh_heap_walk_blocks(h, collect_block, &c), 0);
	assert_int_equal(c.n, want_blocks);
	assert_int_equal(c.total_size, want_bytes);
	for (unsigned i = 1; i < c.n && i < 4096; i++)
		assert_true(c.blocks[i].offset > c.blocks[i - 1].offset);

	unsigned got = 0;
	assert_int_equal(rh_heap_walk_sites(h, count_site, &got), 0);
	assert_int_equal(got, nsites);
	rh_heap_close(h);
	heapfix_free(&f);
}

/* A sparse file whose SMALL span claims millions of slots in pages that were
 * never written: holes hold no block, and the walk must still find the few
 * slots that were written, at both ends and in the middle. */
static void test_reader_skips_holes_in_sparse_spans(void **state)
{
	(void)state;
	const uint32_t npages = 1u << 18; /* 1 GiB */
	const uint32_t hsize = (uint32_t)heapfix_round(offsetof(struct superblock, pages) +
		(uint64_t)npages * sizeof(struct page_desc), PAGE);
	const uint32_t first = hsize / PAGE;
	const uint64_t sb = 8192, span = sb + hsize;
	const uint32_t nslots = (npages - first) * (PAGE / 64);
	/* The middle block opens a page: the first slot after a hole. */
	const uint32_t live[3] = { 0, nslots / 2 / (PAGE / 64) * (PAGE / 64), nslots - 1 };
	struct heapfix f;
	heapfix_init(&f, PAGE);
	heapfix_header(&f)->superblocks_end = sb + (uint64_t)npages * PAGE;

	char path[512];
	snprintf(path, sizeof(path), "%s/%s", test_dir, NAME);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(sb + (uint64_t)npages * PAGE)), 0);
	assert_int_equal(pwrite(fd, f.buf, 8192, 0), 8192);
	struct superblock s = {
		.magic = RH_SB_MAGIC, .kind = RH_SB_DATA, .offset = sb,
		.size = (uint64_t)npages * PAGE, .header_size = hsize, .npages = npages,
	};
	assert_int_equal(pwrite(fd, &s, sizeof(s), (off_t)sb), sizeof(s));
	struct page_desc d = { .span_pages = npages - first, .kind = RH_PAGE_SMALL, .size_class = 2,
		.bumped = nslots, .used = 3 };
	off_t at = (off_t)(sb + offsetof(struct superblock, pages) + first * sizeof(d));
	assert_int_equal(pwrite(fd, &d, sizeof(d), at), sizeof(d));
	for (unsigned i = 0; i < 3; i++) {
		struct block_header b = { .sb_page = sb / PAGE, .span_index = (uint16_t)first,
			.slack = (uint16_t)i, .site = 0, .refcount = 1 };
		assert_int_equal(pwrite(fd, &b, sizeof(b), (off_t)(span + (uint64_t)live[i] * 64)),
			sizeof(b));
	}
	close(fd);
	heapfix_free(&f);

	struct rh_heap *h;
	static struct collect c;
	memset(&c, 0, sizeof(c));
	int dfd = dirfd_open();
	assert_int_equal(rh_heap_open(dfd, NAME, &h), 0);
	close(dfd);
	assert_int_equal(rh_heap_walk_blocks(h, collect_block, &c), 0);
	assert_int_equal(c.n, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(c.blocks[i].offset, span + (uint64_t)live[i] * 64 + 16);
		assert_int_equal(c.blocks[i].size, 48 - i);
	}
	rh_heap_close(h);
	unlink(path);
}

/* A crash (or a reader racing the creator) can leave a superblock past
 * superblocks_end and a record past journal_end: both are not published yet. */
static void test_reader_ignores_unpublished_tail(void **state)
{
	(void)state;
	struct fixture x;
	struct rh_heap *h;
	unsigned n = 0;
	fixture_make(&x);
	uint64_t end = heapfix_header(&x.f)->superblocks_end;
	struct superblock *j = heapfix_sb(&x.f, x.jsb);
	memset(heapfix_at(&x.f, x.jsb + j->journal_end), 0xff, 64); /* half-written record */
	uint64_t extra = heapfix_grow(&x.f, 3 * PAGE);
	memset(heapfix_at(&x.f, extra), 0xa5, 3 * PAGE);       /* half-made superblock */
	heapfix_header(&x.f)->superblocks_end = end;
	assert_int_equal(write_open(&x.f, &h), 0);
	assert_int_equal(rh_heap_info(h)->superblocks, 3);
	assert_int_equal(rh_heap_walk_sites(h, count_site, &n), 0);
	assert_int_equal(n, 3);
	rh_heap_close(h);
	heapfix_free(&x.f);
}

/* The file shrinks after open: walks fail with a reason, never SIGBUS. */
static void test_reader_survives_file_shrinking(void **state)
{
	(void)state;
	struct rh_heap *h;
	unsigned n = 0;
	assert_int_equal(write_open(&fx.f, &h), 0);
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", test_dir, NAME);
	assert_int_equal(truncate(path, fx.sb_a + PAGE + 100), 0);
	assert_int_equal(rh_heap_walk_blocks(h, count_block, &n), -1);
	assert_non_null(strstr(rh_heap_error(h), "shrank"));
	assert_int_equal(rh_heap_walk_sites(h, count_site, &n), -1);
	rh_heap_close(h);
}

/* --- Files that are not heaps --------------------------------------------------- */

static void test_reader_refuses_non_heaps(void **state)
{
	(void)state;
	struct rh_heap *h = (void *)1;
	int dfd = dirfd_open();
	char path[512];

	snprintf(path, sizeof(path), "%s/text", test_dir);
	FILE *fp = fopen(path, "w");
	fputs("hello, world\n", fp);
	fclose(fp);
	assert_int_equal(rh_heap_open(dfd, "text", &h), ENOTSUP);
	assert_null(h);

	snprintf(path, sizeof(path), "%s/empty", test_dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(rh_heap_open(dfd, "empty", &h), ENOTSUP);

	snprintf(path, sizeof(path), "%s/dir", test_dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(rh_heap_open(dfd, "dir", &h), ENOTSUP);
	rmdir(path);

	snprintf(path, sizeof(path), "%s/fifo", test_dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(rh_heap_open(dfd, "fifo", &h), ENOTSUP); /* and does not hang */

	assert_int_equal(heapfix_write(&fx.f, test_dir, NAME), 0);
	snprintf(path, sizeof(path), "%s/link", test_dir);
	assert_int_equal(symlink(NAME, path), 0);
	assert_int_equal(rh_heap_open(dfd, "link", &h), ELOOP);
	assert_null(h);

	assert_int_equal(rh_heap_open(dfd, "missing", &h), ENOENT);
	assert_null(h);
	close(dfd);
}

/* --- Broken native heaps ------------------------------------------------------ */

static void test_reader_rejects_truncated_header(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	x.f.size = 5000;
	assert_rejected(&x.f, "truncated header");
	x.f.size = 6;
	assert_rejected(&x.f, "truncated header");
	heapfix_free(&x.f);
}

static void test_reader_rejects_truncated_superblock(void **state)
{
	(void)state;
	struct fixture x;
	struct rh_heap *h;
	fixture_make(&x);
	x.f.size = x.sb_a + 5 * PAGE; /* cut inside superblock A */
	assert_rejected(&x.f, "superblock at offset 8192: size 65536 runs past the end of the file");
	/* What could be read is still told. */
	assert_int_equal(write_open(&x.f, &h), EPROTO);
	assert_int_equal(rh_heap_info(h)->creator_pid, getpid());
	assert_int_equal(rh_heap_info(h)->heap_used, 800);
	rh_heap_close(h);
	x.f.size = x.sb_a + 40; /* cut inside its header */
	assert_rejected(&x.f, "superblock at offset 8192: truncated");
	heapfix_free(&x.f);
}

static void test_reader_rejects_bad_magic(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_sb(&x.f, x.sb_b)->magic = 0x12345678;
	assert_rejected(&x.f, "bad magic 0x12345678");
	heapfix_free(&x.f);
}

static void test_reader_rejects_newer_major_version(void **state)
{
	(void)state;
	struct fixture x;
	struct rh_heap *h;
	fixture_make(&x);
	heapfix_header(&x.f)->version_major = 2;
	heapfix_header(&x.f)->version_minor = 0;
	assert_rejected(&x.f, "format version 2.0, this reader knows 1.x");
	assert_int_equal(write_open(&x.f, &h), EPROTO);
	assert_int_equal(rh_heap_info(h)->version_major, 2);
	rh_heap_close(h);
	heapfix_free(&x.f);
}

static void test_reader_rejects_bad_page_or_header_size(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct heap_header *hdr = heapfix_header(&x.f);
	hdr->page_size = 12288;
	assert_rejected(&x.f, "page size 12288");
	hdr->page_size = 2048;
	assert_rejected(&x.f, "page size 2048");
	hdr->page_size = PAGE;
	hdr->header_size = 4096;
	assert_rejected(&x.f, "header size 4096");
	hdr->header_size = 8192 + 100;
	assert_rejected(&x.f, "header size 8292");
	hdr->header_size = 0x80000000u;
	assert_rejected(&x.f, "truncated header");
	heapfix_free(&x.f);
}

static void test_reader_rejects_superblock_offset_mismatch(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_sb(&x.f, x.jsb)->offset = x.sb_a;
	assert_rejected(&x.f, "its offset field says 8192");
	heapfix_free(&x.f);
}

static void test_reader_rejects_zero_superblock_size(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_sb(&x.f, x.jsb)->size = 0;
	assert_rejected(&x.f, "size 0 is not a multiple of the page size");
	heapfix_sb(&x.f, x.jsb)->size = PAGE + 8;
	assert_rejected(&x.f, "is not a multiple of the page size");
	heapfix_free(&x.f);
}

static void test_reader_rejects_huge_superblock_size(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_sb(&x.f, x.sb_b)->size = UINT64_MAX - PAGE + 1; /* wraps if added */
	assert_rejected(&x.f, "runs past the end of the file");
	/* Fits the file, not the superblock area. */
	heapfix_sb(&x.f, x.sb_b)->size = 8 * PAGE;
	heapfix_grow(&x.f, 8 * PAGE);
	assert_rejected(&x.f, "runs past the end of the superblocks");
	heapfix_free(&x.f);
}

static void test_reader_rejects_superblocks_end_past_eof(void **state)
{
	(void)state;
	struct fixture x;
	struct rh_heap *h;
	fixture_make(&x);
	heapfix_header(&x.f)->superblocks_end = x.f.size + 64 * PAGE;
	assert_rejected(&x.f, "past the end of the file");
	/* The superblocks that are there were read. */
	assert_int_equal(write_open(&x.f, &h), EPROTO);
	assert_int_equal(rh_heap_info(h)->superblocks, 3);
	rh_heap_close(h);
	heapfix_header(&x.f)->superblocks_end = 4096;
	assert_rejected(&x.f, "inside the header");
	heapfix_free(&x.f);
}

static void test_reader_rejects_bad_superblock_header(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct superblock *sb = heapfix_sb(&x.f, x.sb_a);
	sb->npages = 17;
	assert_rejected(&x.f, "17 pages");
	sb->npages = 16;
	sb->header_size = 32;
	assert_rejected(&x.f, "header size 32");
	sb->header_size = 17 * PAGE;
	assert_rejected(&x.f, "header size 69632");
	sb->header_size = PAGE + 100;
	assert_rejected(&x.f, "header size 4196 is not a multiple of the page size");
	sb->header_size = PAGE;
	sb->kind = 7;
	assert_rejected(&x.f, "unknown kind 7");
	heapfix_free(&x.f);

	/* A superblock of 200 pages needs two pages of descriptors. */
	struct heapfix f;
	heapfix_init(&f, PAGE);
	uint64_t at = heapfix_data_sb(&f, 200);
	heapfix_sb(&f, at)->header_size = PAGE;
	assert_rejected(&f, "cannot hold 200 page descriptors");
	heapfix_free(&f);
}

static void test_reader_rejects_zero_span_pages(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_desc(&x.f, x.sb_a, 4)->span_pages = 0; /* the free span */
	assert_rejected(&x.f, "span at offset 24576: 0 pages");
	heapfix_free(&x.f);
}

static void test_reader_rejects_overflowing_span(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_desc(&x.f, x.sb_a, x.large_page)->span_pages = 11; /* 6 + 11 > 16 */
	assert_rejected(&x.f, "11 pages, 10 are left");
	heapfix_desc(&x.f, x.sb_a, x.large_page)->span_pages = UINT32_MAX;
	assert_rejected(&x.f, "are left in its superblock");
	heapfix_free(&x.f);
}

static void test_reader_rejects_size_class_out_of_range(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_desc(&x.f, x.sb_a, x.small_page)->size_class = RH_NUM_CLASSES;
	assert_rejected(&x.f, "size class 43");
	heapfix_desc(&x.f, x.sb_a, x.small_page)->size_class = 255;
	assert_rejected(&x.f, "size class 255");
	heapfix_free(&x.f);
}

static void test_reader_rejects_bumped_beyond_capacity(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_desc(&x.f, x.sb_a, x.small_page)->bumped = PAGE / 64 + 1;
	assert_rejected(&x.f, "65 slots bumped, it holds 64");
	heapfix_desc(&x.f, x.sb_a, x.small_page)->bumped = UINT32_MAX;
	assert_rejected(&x.f, "slots bumped");
	heapfix_free(&x.f);
}

static void test_reader_rejects_unknown_page_kind(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_desc(&x.f, x.sb_a, 4)->kind = RH_PAGE_HEADER;
	assert_rejected(&x.f, "unknown page kind 0");
	heapfix_free(&x.f);
}

static void test_reader_rejects_marker_outside_slot(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	uint64_t slot2 = x.sb_a + x.small_page * PAGE + 2 * 64;
	struct block_header *marker = heapfix_at(&x.f, slot2);
	assert_int_equal(marker->refcount, RH_REF_MARKER);
	marker->site = 48; /* 64-byte slot: the header must start by 32 */
	assert_rejected(&x.f, "marker points 48 bytes in, outside its 64-byte slot");
	marker->site = 24; /* not a multiple of 16 */
	assert_rejected(&x.f, "marker points 24 bytes in");
	marker->site = 0; /* at itself */
	assert_rejected(&x.f, "marker points 0 bytes in");
	marker->site = 0xfffffff0u;
	assert_rejected(&x.f, "outside its 64-byte slot");
	/* The big-slot path (headers read one by one) checks the same. */
	heapfix_free(&x.f);
	fixture_make(&x);
	marker = heapfix_at(&x.f, x.sb_a + x.big_page * PAGE + 4096);
	assert_int_equal(marker->refcount, RH_REF_MARKER);
	marker->site = 4096;
	assert_rejected(&x.f, "outside its 4096-byte slot");
	heapfix_free(&x.f);
}

static void test_reader_rejects_large_data_offset_outside_span(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct page_desc *d = heapfix_desc(&x.f, x.sb_a, x.large_page);
	d->free_head = 3 * PAGE;
	assert_rejected(&x.f, "data offset 12288 lies outside its 12288 bytes");
	d->free_head = 0;
	assert_rejected(&x.f, "data offset 0");
	d->free_head = 40;
	assert_rejected(&x.f, "data offset 40");
	heapfix_free(&x.f);
}

static void test_reader_rejects_large_size_beyond_span(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct page_desc *d = heapfix_desc(&x.f, x.sb_a, x.large_page);
	d->bumped = 3 * PAGE - 16 + 1;
	assert_rejected(&x.f, "block of 12273 bytes, 12272 usable");
	d->bumped = 100;
	d->used = 1; /* 4 GiB + 100 */
	assert_rejected(&x.f, "block of 4294967396 bytes");
	heapfix_free(&x.f);
}

static void test_reader_rejects_slack_beyond_usable(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct block_header *b = heapfix_at(&x.f, x.sb_a + x.small_page * PAGE);
	b->slack = 49;
	assert_rejected(&x.f, "slack 49 exceeds its 48 usable bytes");
	heapfix_free(&x.f);
}

static void test_reader_rejects_header_pointing_elsewhere(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct block_header *b = heapfix_at(&x.f, x.sb_a + x.small_page * PAGE + 3 * 64);
	b->span_index = 2;
	assert_rejected(&x.f, "names superblock page 2 span 2, but lies in superblock page 2 span 1");
	b->span_index = (uint16_t)x.small_page;
	b->sb_page = 99;
	assert_rejected(&x.f, "names superblock page 99");
	heapfix_free(&x.f);
}

static void test_reader_rejects_zero_record_size(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct journal_record *r = heapfix_at(&x.f, x.module_rec);
	r->size = 0;
	assert_rejected(&x.f, "size 0 is not a multiple of 8");
	heapfix_free(&x.f);
}

static void test_reader_rejects_unaligned_record_size(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct journal_record *r = heapfix_at(&x.f, x.module_rec);
	r->size += 4;
	assert_rejected(&x.f, "is not a multiple of 8");
	r->size = 4;
	assert_rejected(&x.f, "size 4 is not");
	heapfix_free(&x.f);
}

static void test_reader_rejects_record_past_journal_end(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct superblock *j = heapfix_sb(&x.f, x.jsb);
	/* The last record claims more bytes than were published. */
	uint64_t last = x.site[2] * 8ull;
	struct journal_record *r = heapfix_at(&x.f, last);
	r->size += 8;
	assert_rejected(&x.f, "size 104 is not a multiple of 8 between 8 and the 96 bytes left");
	r->size -= 8;
	/* The journal end cuts a record. */
	j->journal_end = last - x.jsb + 16;
	assert_rejected(&x.f, "size 96 is not a multiple of 8 between 8 and the 16 bytes left");
	heapfix_free(&x.f);
}

static void test_reader_rejects_journal_end_past_superblock(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct superblock *j = heapfix_sb(&x.f, x.jsb);
	j->journal_end = j->size + 8;
	assert_rejected(&x.f, "journal end 8200");
	j->journal_end = 8;
	assert_rejected(&x.f, "journal end 8 ");
	j->journal_end = 100;
	assert_rejected(&x.f, "journal end 100");
	heapfix_free(&x.f);
}

static void test_reader_rejects_deep_site(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct journal_site *s = heapfix_at(&x.f, x.site[0] * 8ull);
	s->depth = 65;
	assert_rejected(&x.f, "depth 65, at most 64");
	s->depth = UINT32_MAX;
	assert_rejected(&x.f, "depth 4294967295");
	heapfix_free(&x.f);
}

static void test_reader_rejects_site_frames_past_record(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct journal_site *s = heapfix_at(&x.f, x.site[0] * 8ull);
	s->depth = 4; /* the record holds 3 */
	assert_rejected(&x.f, "4 frames do not fit in 80 bytes");
	s->depth = 3;
	s->rec.size = 48; /* smaller than a site; the next record follows at once */
	assert_rejected(&x.f, "size 48 is too small");
	heapfix_free(&x.f);
}

static void test_reader_rejects_long_module_path(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct journal_module *m = heapfix_at(&x.f, x.module_rec);
	m->path_len = (uint16_t)(m->rec.size - 80 + 1);
	assert_rejected(&x.f, "does not fit in 112");
	m->path_len = UINT16_MAX;
	assert_rejected(&x.f, "path of 65535 bytes");
	heapfix_free(&x.f);
}

static void test_reader_rejects_long_build_id(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	struct journal_module *m = heapfix_at(&x.f, x.module_rec);
	m->build_id_len = 41;
	assert_rejected(&x.f, "build-id of 41 bytes");
	heapfix_free(&x.f);
}

static void test_reader_rejects_bad_pools_or_depth(void **state)
{
	(void)state;
	struct fixture x;
	fixture_make(&x);
	heapfix_header(&x.f)->npools = RH_MAX_POOLS + 1;
	assert_rejected(&x.f, "65 pools");
	heapfix_header(&x.f)->npools = 2;
	heapfix_header(&x.f)->trace_depth = 65;
	assert_rejected(&x.f, "trace depth 65");
	heapfix_free(&x.f);
}

/* --- REDHAWK 2.2 ----------------------------------------------------------------- */

static void r22_make(struct heapfix *f)
{
	heapfix_r22_init(f, getpid(), 3);
	heapfix_r22_sb(f, 8192, 1000);
	heapfix_r22_sb(f, 4096, 0);
	heapfix_r22_sb(f, 65536, 65536);
}

static void test_reader_reads_redhawk22_heap(void **state)
{
	(void)state;
	struct heapfix f;
	struct rh_heap *h;
	unsigned n = 0;
	r22_make(&f);
	assert_int_equal(write_open(&f, &h), 0);
	const struct rh_heap_info *in = rh_heap_info(h);
	assert_int_equal(in->kind, RH_HEAP_REDHAWK22);
	assert_int_equal(in->version_major, 1);
	assert_int_equal(in->file_size, 4096 + 3 * 4096 + 8192 + 4096 + 65536);
	assert_int_equal(in->heap_size, 8192 + 4096 + 65536);
	assert_int_equal(in->heap_used, 1000 + 65536);
	assert_int_equal(in->live_blocks, -1);
	assert_int_equal(in->creator_pid, getpid());
	assert_int_equal(in->creator_uid, getuid());
	assert_int_equal(in->refcount, 3);
	assert_int_equal(in->orphaned, 0);
	assert_int_equal(in->superblocks, 3);
	assert_string_equal(in->command, "");
	assert_int_equal(rh_heap_walk_blocks(h, count_block, &n), 0);
	assert_int_equal(rh_heap_walk_sites(h, count_site, &n), 0);
	assert_int_equal(rh_heap_walk_modules(h, count_module, &n), 0);
	assert_int_equal(n, 0);
	rh_heap_close(h);

	/* A superblock whose header is still zero (the file was grown, the
	 * header not yet written): what the header said is still told. */
	heapfix_grow(&f, 4096 + 4096);
	assert_int_equal(write_open(&f, &h), EPROTO);
	assert_string_equal(rh_heap_error(h), "superblock at offset 94208: header not written");
	assert_int_equal(rh_heap_info(h)->refcount, 3);
	assert_int_equal(rh_heap_info(h)->orphaned, 0);
	rh_heap_close(h);
	heapfix_free(&f);
}

static void test_reader_rejects_bad_redhawk22_heap(void **state)
{
	(void)state;
	struct heapfix f;
	uint64_t v;
	uint32_t u;

	r22_make(&f);
	u = 2;
	memcpy(f.buf + 4, &u, 4);
	assert_rejected(&f, "REDHAWK 2.2 heap version 2, this reader knows 1");
	heapfix_free(&f);

	r22_make(&f);
	v = 4096 * 3;
	memcpy(f.buf + 4096 + 4096 + 8192 + 256, &v, 8); /* second superblock */
	assert_rejected(&f, "superblock at offset 16384: its offset field says 12288");
	heapfix_free(&f);

	r22_make(&f);
	u = 65536 + 1;
	memcpy(f.buf + 4096 + 4096 + 8192 + 4096 + 4096 + 264, &u, 4);
	assert_rejected(&f, "runs past the end of the file");
	heapfix_free(&f);

	r22_make(&f);
	u = UINT32_MAX;
	memcpy(f.buf + 4096 + 264, &u, 4);
	assert_rejected(&f, "size 4294967295 runs past");
	heapfix_free(&f);

	r22_make(&f);
	v = 8193;
	memcpy(f.buf + 4096 + 312, &v, 8);
	assert_rejected(&f, "8193 bytes used of 8192");
	heapfix_free(&f);

	r22_make(&f);
	u = 8192;
	memcpy(f.buf + 4096 + 268, &u, 4);
	assert_rejected(&f, "data starts at 8192");
	heapfix_free(&f);

	r22_make(&f);
	f.size -= 65536 + 100; /* a partial superblock header at the end */
	assert_rejected(&f, "truncated");
	f.size = 100;
	assert_rejected(&f, "truncated header");
	heapfix_free(&f);
}

/* --- Orphans ---------------------------------------------------------------------- */

/* A child takes the creator's lock and holds it until the pipe closes. */
static void test_reader_detects_orphan_by_lock(void **state)
{
	(void)state;
	struct fixture x;
	struct rh_heap *h;
	int ready[2], release[2];
	fixture_make(&x);
	assert_int_equal(heapfix_write(&x.f, test_dir, NAME), 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(release), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		char path[512], c;
		snprintf(path, sizeof(path), "%s/%s", test_dir, NAME);
		int fd = open(path, O_RDWR);
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			.l_start = RH_LOCK_BASE, .l_len = 1 };
		if (fd < 0 || fcntl(fd, F_OFD_SETLK, &fl) < 0)
			_exit(1);
		close(ready[0]);
		close(release[1]);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		while (read(release[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(ready[1]);
	close(release[0]);
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);

	struct heap_header *hdr = heapfix_header(&x.f);
	hdr->flags |= RH_HEAP_F_LOCKED;
	hdr->creator_pid = child;
	hdr->holders[0].pid = child;
	hdr->holders[1].pid = getpid(); /* claimed, but not locked: not counted */
	assert_int_equal(write_open(&x.f, &h), 0);
	assert_int_equal(rh_heap_info(h)->orphaned, 0);
	assert_int_equal(rh_heap_info(h)->refcount, 1);
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", test_dir, NAME);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(rh_heap_fd_orphaned(fd, rh_heap_info(h)), 0);

	close(release[1]);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(rh_heap_fd_orphaned(fd, rh_heap_info(h)), 1);
	rh_heap_close(h);
	close(fd);
	close(ready[0]);

	/* Reopened: orphaned, and the dead holder is not counted. A read
	 * lock on the creator's and the holders' bytes, which anyone who can
	 * read the file may take, changes neither. */
	int rfd = open(path, O_RDONLY);
	assert_true(rfd >= 0);
	struct flock rl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = RH_LOCK_BASE, .l_len = RH_MAX_HOLDERS };
	assert_int_equal(fcntl(rfd, F_OFD_SETLK, &rl), 0);
	int dfd = dirfd_open();
	assert_int_equal(rh_heap_open(dfd, NAME, &h), 0);
	close(dfd);
	assert_int_equal(rh_heap_info(h)->orphaned, 1);
	assert_int_equal(rh_heap_info(h)->refcount, 0);
	rh_heap_close(h);
	close(rfd);
	heapfix_free(&x.f);
}

/* Without the lock flag, the creator's pid decides; the lock is not asked. */
static void test_reader_detects_orphan_by_pid(void **state)
{
	(void)state;
	struct rh_heap_info in = { .kind = RH_HEAP_NATIVE };
	int fd = open(test_dir, O_RDONLY | O_DIRECTORY);

	in.creator_pid = getpid();
	assert_int_equal(rh_heap_fd_orphaned(fd, &in), 0);
	in.creator_pid = 1;
	assert_int_equal(rh_heap_fd_orphaned(fd, &in), 0);
	/* A process of another user is alive: kill(2) says EPERM. As root,
	 * become nobody in a child to see it. */
	pid_t other = fork();
	if (other == 0) {
		if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(2);
		errno = 0;
		_exit(kill(1, 0) == -1 && errno == EPERM ? rh_heap_fd_orphaned(fd, &in) : 3);
	}
	int status;
	assert_int_equal(waitpid(other, &status, 0), other);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	in.creator_pid = 0;
	assert_int_equal(rh_heap_fd_orphaned(fd, &in), 1);
	in.creator_pid = -1;
	assert_int_equal(rh_heap_fd_orphaned(fd, &in), 1);

	pid_t child = fork();
	if (child == 0)
		_exit(0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	in.creator_pid = child;
	assert_int_equal(rh_heap_fd_orphaned(fd, &in), 1);
	in.kind = RH_HEAP_REDHAWK22;
	in.flags = RH_HEAP_F_LOCKED; /* meaningless for REDHAWK 2.2 */
	assert_int_equal(rh_heap_fd_orphaned(fd, &in), 1);
	in.creator_pid = getpid();
	assert_int_equal(rh_heap_fd_orphaned(fd, &in), 0);

	/* A dead creator in a file: open says so. */
	struct fixture x;
	struct rh_heap *h;
	fixture_make(&x);
	heapfix_header(&x.f)->creator_pid = child;
	heapfix_header(&x.f)->holders[0].pid = child;
	assert_int_equal(write_open(&x.f, &h), 0);
	assert_int_equal(rh_heap_info(h)->orphaned, 1);
	assert_int_equal(rh_heap_info(h)->refcount, 0);
	rh_heap_close(h);
	heapfix_free(&x.f);
	close(fd);
}

static int group_setup(void **state)
{
	(void)state;
	test_dir_make();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	test_dir_remove();
	return 0;
}

/* Every test gets the reference heap fresh (fx), built by setup. */
#define T(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_reader_reads_native_heap_info),
		T(test_reader_opens_the_callers_fd),
		T(test_reader_walks_blocks),
		T(test_reader_walks_sites),
		T(test_reader_walks_modules),
		T(test_reader_clamps_negative_counters),
		T(test_reader_walk_returns_callback_result),
		T(test_reader_reads_newer_minor_version),
		T(test_reader_sanitizes_command),
		T(test_reader_walks_across_read_windows),
		T(test_reader_skips_holes_in_sparse_spans),
		T(test_reader_ignores_unpublished_tail),
		T(test_reader_survives_file_shrinking),
		T(test_reader_refuses_non_heaps),
		T(test_reader_rejects_truncated_header),
		T(test_reader_rejects_truncated_superblock),
		T(test_reader_rejects_bad_magic),
		T(test_reader_rejects_newer_major_version),
		T(test_reader_rejects_bad_page_or_header_size),
		T(test_reader_rejects_superblock_offset_mismatch),
		T(test_reader_rejects_zero_superblock_size),
		T(test_reader_rejects_huge_superblock_size),
		T(test_reader_rejects_superblocks_end_past_eof),
		T(test_reader_rejects_bad_superblock_header),
		T(test_reader_rejects_zero_span_pages),
		T(test_reader_rejects_overflowing_span),
		T(test_reader_rejects_size_class_out_of_range),
		T(test_reader_rejects_bumped_beyond_capacity),
		T(test_reader_rejects_unknown_page_kind),
		T(test_reader_rejects_marker_outside_slot),
		T(test_reader_rejects_large_data_offset_outside_span),
		T(test_reader_rejects_large_size_beyond_span),
		T(test_reader_rejects_slack_beyond_usable),
		T(test_reader_rejects_header_pointing_elsewhere),
		T(test_reader_rejects_zero_record_size),
		T(test_reader_rejects_unaligned_record_size),
		T(test_reader_rejects_record_past_journal_end),
		T(test_reader_rejects_journal_end_past_superblock),
		T(test_reader_rejects_deep_site),
		T(test_reader_rejects_site_frames_past_record),
		T(test_reader_rejects_long_module_path),
		T(test_reader_rejects_long_build_id),
		T(test_reader_rejects_bad_pools_or_depth),
		T(test_reader_reads_redhawk22_heap),
		T(test_reader_rejects_bad_redhawk22_heap),
		T(test_reader_detects_orphan_by_lock),
		T(test_reader_detects_orphan_by_pid),
	};
	return cmocka_run_group_tests_name("reader", tests, group_setup, group_teardown);
}
