/* SPDX-License-Identifier: MIT */
/*
 * Call-site reports and symbolisation: live blocks summed by site from a
 * fixture heap, "other sites" making the listed lines add up to the heap's
 * used bytes, and frames of this very program symbolised from a synthetic
 * journal (function and file:line), or not when the build-id differs, and
 * at another load base by the same symbolizer in the next heap; C++
 * names demangled, and module+offset frames when libdw cannot be loaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <inttypes.h>
#include <link.h>
#include <errno.h>
#include <sys/inotify.h>
#include <sys/wait.h>

#include "heapfix.h"
#include "report.h"
#include "selfmod.h"
#include "testutil.h"

/* Sites: A 3 blocks of 1000 (one with two refs), B 1 of 1000, C one large
 * block of 40000, and one block of 500 without a site; one freed slot. */
static void write_fixture(const char *name, const uint64_t *fa, unsigned na)
{
	struct heapfix f;
	heapfix_init(&f, 4096);
	uint64_t sb = heapfix_data_sb(&f, 64);
	uint32_t hp = heapfix_sb(&f, sb)->header_size / f.page;
	uint64_t jsb = heapfix_journal_sb(&f, 4);
	static const uint8_t id[20] = { 1, 2, 3 };
	heapfix_module(&f, jsb, "/nonexistent/libx.so", 0x7f0000000000ull, 0x7f0000000000ull,
		0x7f0000100000ull, id, sizeof(id));
	uint64_t b[1] = { 0x7f0000004444ull }, c[1] = { 0x1234 };
	uint32_t sa = heapfix_site(&f, jsb, fa, na, 3000, 3, 3, 3000);
	uint32_t sbid = heapfix_site(&f, jsb, b, 1, 1000, 1, 1, 1000);
	uint32_t sc = heapfix_site(&f, jsb, c, 1, 40000, 1, 1, 40000);
	heapfix_span(&f, sb, hp, 2, RH_PAGE_SMALL, 22);
	heapfix_small(&f, sb, hp, 0, 1000, sa, 1, 0);
	heapfix_small(&f, sb, hp, 1, 1000, sbid, 1, 0);
	heapfix_small(&f, sb, hp, 2, 1000, sa, 1, 0);
	heapfix_small(&f, sb, hp, 3, 500, 0, 1, 0);
	heapfix_small(&f, sb, hp, 4, 1000, sa, 2 | RH_REF_SHARED, 0);
	heapfix_small(&f, sb, hp, 5, 1000, sa, 0, 0);
	heapfix_large(&f, sb, hp + 2, 10, 16, 40000, sc, 1);
	heapfix_counter(&f, 0, 44500, 6);
	assert_int_equal(heapfix_write(&f, test_dir, name), 0);
	heapfix_free(&f);
}

static struct rh_heap *open_heap(const char *name)
{
	int dirfd = open(test_dir, O_RDONLY | O_DIRECTORY);
	struct rh_heap *h = NULL;
	int rc = rh_heap_open(dirfd, name, &h);
	if (rc)
		fprintf(stderr, "rh_heap_open: %d %s\n", rc, h ? rh_heap_error(h) : "");
	assert_int_equal(rc, 0);
	close(dirfd);
	return h;
}

static char *print_report(struct rh_heap *h, size_t limit, int always)
{
	struct site_report r;
	assert_int_equal(report_collect(h, &r), 0);
	struct symbolizer *sym = symbolizer_new();
	assert_int_equal(symbolizer_load(sym, h), 0);
	struct fmt_ctx ctx = { .size = SIZE_AUTO };
	char *s = NULL;
	size_t n;
	FILE *out = open_memstream(&s, &n);
	report_print(out, &ctx, sym, &r, limit, rh_heap_info(h)->heap_used, "  ", always);
	fclose(out);
	symbolizer_free(sym);
	report_free(&r);
	return s;
}

static void test_report_sums_live_blocks_by_site(void **state)
{
	(void)state;
	uint64_t a[2] = { 0x7f0000001234ull, 0x7f0000002000ull };
	write_fixture("heap-1", a, 2);
	struct rh_heap *h = open_heap("heap-1");
	struct site_report r;
	assert_int_equal(report_collect(h, &r), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.blocks, 6);
	assert_int_equal(r.bytes, 44500);
	assert_int_equal(r.nosite_bytes, 500);
	assert_int_equal(r.nosite_blocks, 1);
	/* Most bytes first. */
	assert_int_equal(r.sites[0].bytes, 40000);
	assert_int_equal(r.sites[1].bytes, 3000);
	assert_int_equal(r.sites[1].blocks, 3);
	assert_int_equal(r.sites[1].depth, 2);
	assert_int_equal(r.sites[2].bytes, 1000);
	uint64_t bytes, blocks;
	report_rest(&r, 1, 44500, &bytes, &blocks);
	assert_int_equal(bytes, 4500);
	assert_int_equal(blocks, 5);
	report_free(&r);
	rh_heap_close(h);
}

/* Blocks naming sites the journal does not hold (a damaged or hostile file:
 * each value its own site once, 540 bytes kept for each) count as blocks
 * without a site. */
static void test_report_unknown_sites_count_as_none(void **state)
{
	(void)state;
	struct heapfix f;
	heapfix_init(&f, 4096);
	uint64_t sb = heapfix_data_sb(&f, 64);
	uint32_t hp = heapfix_sb(&f, sb)->header_size / f.page;
	uint64_t jsb = heapfix_journal_sb(&f, 4);
	uint64_t fr[1] = { 0x1234 };
	uint32_t known = heapfix_site(&f, jsb, fr, 1, 100, 1, 1, 100);
	heapfix_span(&f, sb, hp, 4, RH_PAGE_SMALL, 0);  /* 16-byte slots */
	heapfix_small(&f, sb, hp, 0, 10, known, 1, 0);
	for (uint32_t k = 1; k < 200; k++)
		heapfix_small(&f, sb, hp, k, 10, known + k * 977, 1, 0);
	heapfix_counter(&f, 0, 2000, 200);
	assert_int_equal(heapfix_write(&f, test_dir, "heap-3"), 0);
	heapfix_free(&f);
	struct rh_heap *h = open_heap("heap-3");
	struct site_report r;
	assert_int_equal(report_collect(h, &r), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.sites[0].id, known);
	assert_int_equal(r.sites[0].blocks, 1);
	assert_int_equal(r.sites[0].depth, 1);
	assert_int_equal(r.sites[0].frames[0], 0x1234);
	assert_int_equal(r.blocks, 200);
	assert_int_equal(r.nosite_blocks, 199);
	assert_int_equal(r.nosite_bytes, 1990);
	report_free(&r);
	rh_heap_close(h);
}

/* A live heap: a site recorded while the blocks are walked. The file is
 * written first without the site its last two blocks name, and rewritten
 * with it when the walk reaches its first block. */
static void late_fixture(struct heapfix *f, int with_late, uint32_t *late)
{
	heapfix_init(f, 4096);
	uint64_t sb = heapfix_data_sb(f, 64);
	uint32_t hp = heapfix_sb(f, sb)->header_size / f->page;
	uint64_t jsb = heapfix_journal_sb(f, 4);
	uint64_t fr[1] = { 0x1234 }, fl[1] = { 0x5678 };
	uint32_t known = heapfix_site(f, jsb, fr, 1, 100, 1, 1, 100);
	if (with_late)
		*late = heapfix_site(f, jsb, fl, 1, 200, 2, 2, 200);
	heapfix_span(f, sb, hp, 4, RH_PAGE_SMALL, 0);  /* 16-byte slots */
	heapfix_small(f, sb, hp, 0, 10, known, 1, 0);
	heapfix_small(f, sb, hp, 1, 10, *late, 1, 0);
	heapfix_small(f, sb, hp, 2, 10, *late, 1, 0);
	heapfix_counter(f, 0, 30, 3);
}

struct rewrite {
	const char *name;
	int done;
};

static int rewrite_once(const struct rh_block_info *b, void *arg)
{
	(void)b;
	struct rewrite *w = arg;
	if (!w->done++) {
		struct heapfix f;
		uint32_t late = 0;
		late_fixture(&f, 1, &late);
		assert_int_equal(heapfix_write(&f, test_dir, w->name), 0);
		heapfix_free(&f);
	}
	return 1;
}

static void test_report_reads_sites_recorded_during_the_walk(void **state)
{
	(void)state;
	struct heapfix f;
	uint32_t late = 0;
	late_fixture(&f, 1, &late);
	heapfix_free(&f);
	late_fixture(&f, 0, &late);
	assert_int_equal(heapfix_write(&f, test_dir, "heap-4"), 0);
	heapfix_free(&f);
	struct rh_heap *h = open_heap("heap-4");
	struct rewrite w = { "heap-4", 0 };
	struct site_report r;
	assert_int_equal(report_collect_if(h, rewrite_once, &w, &r), 0);
	assert_true(w.done > 3); /* walked again */
	assert_int_equal(r.blocks, 3);
	assert_int_equal(r.nosite_blocks, 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.sites[0].id, late);
	assert_int_equal(r.sites[0].blocks, 2);
	assert_int_equal(r.sites[0].depth, 1);
	assert_int_equal(r.sites[0].frames[0], 0x5678);
	assert_int_equal(r.sites[1].blocks, 1);
	report_free(&r);
	rh_heap_close(h);
}

static void test_report_prints_sites_and_other_sites(void **state)
{
	(void)state;
	uint64_t a[2] = { 0x7f0000001234ull, 0x7f0000002000ull };
	write_fixture("heap-1", a, 2);
	struct rh_heap *h = open_heap("heap-1");
	char *s = print_report(h, 2, 1);
	assert_string_equal(s,
		"  39.1K (89.9%) in 1 block\n"
		"      0x1234\n"
		"  2.9K (6.7%) in 3 blocks\n"
		"      /nonexistent/libx.so+0x1234\n"
		"      /nonexistent/libx.so+0x2000\n"
		"  1.5K (3.4%) in 2 blocks from other sites\n");
	free(s);
	/* All sites: the remainder is the block without a site. */
	s = print_report(h, SIZE_MAX, 0);
	assert_non_null(strstr(s, "  1000 (2.2%) in 1 block\n      /nonexistent/libx.so+0x4444\n"));
	assert_non_null(strstr(s, "  500 (1.1%) in 1 block from other sites\n"));
	free(s);
	rh_heap_close(h);
}

/* --- symbolisation of this program ---------------------------------------- */

static __attribute__((noinline)) uint64_t return_address(void)
{
	return (uint64_t)(uintptr_t)__builtin_return_address(0);
}

static __attribute__((noinline)) uint64_t allocate_frame(void)
{
	uint64_t r = return_address();
	__asm__ volatile("" ::: "memory"); /* keep the call a call */
	return r;
}

/* This program's module; the test is skipped when it was built without a
 * build-id (nothing to check against). */
static void need_self_module(struct self_module *s)
{
	assert_int_equal(self_module(s), 0);
	if (s->id_len == 0)
		skip();
}

/* A symbolizer holding this program's module as a heap would record it, at
 * PATH (its own when NULL), with build-id ID (its own when NULL). */
static struct symbolizer *self_symbolizer(const struct self_module *s, const char *path, const uint8_t *id)
{
	struct rh_module_info m = { .base = s->base, .start = s->start, .end = s->end,
		.build_id = id ? id : s->id, .build_id_len = s->id_len, .path = path ? path : s->path };
	struct symbolizer *sym = symbolizer_new();
	assert_int_equal(symbolizer_add(sym, &m), 0);
	return sym;
}

static void test_symbolize_own_frames_to_function_and_line(void **state)
{
	(void)state;
	struct self_module s;
	need_self_module(&s);
	struct symbolizer *sym = self_symbolizer(&s, NULL, NULL);
	struct frame f;
	symbolizer_frame(sym, allocate_frame(), &f);
	assert_non_null(f.function);
	assert_string_equal(f.function, "allocate_frame");
	assert_non_null(f.file);
	assert_string_equal(f.file, "test_report.c");
	assert_true(f.line > 0);
	char *out = NULL;
	size_t n;
	FILE *o = open_memstream(&out, &n);
	symbolizer_print(o, &f);
	fclose(o);
	char want[64];
	snprintf(want, sizeof(want), "allocate_frame (test_report.c:%d)", f.line);
	assert_string_equal(out, want);
	free(out);
	symbolizer_free(sym);
}

static void test_symbolize_refuses_a_file_with_another_build_id(void **state)
{
	(void)state;
	struct self_module s;
	need_self_module(&s);
	s.id[0] ^= 0xff; /* as if the program had been rebuilt since */
	struct symbolizer *sym = self_symbolizer(&s, NULL, NULL);
	struct frame f;
	uint64_t addr = allocate_frame();
	symbolizer_frame(sym, addr, &f);
	assert_null(f.function);
	assert_null(f.file);
	assert_string_equal(f.module, s.path);
	assert_int_equal(f.offset, addr - s.base);
	symbolizer_free(sym);
}

/* One symbolizer over several heaps (as a tool's run): the same library
 * loaded at another base in the next heap shares the parsed file and its
 * frames, and still resolves; the same path with another build-id is another
 * file, refused even after the good one was parsed. */
static void test_symbolize_one_module_at_two_bases(void **state)
{
	(void)state;
	struct self_module s;
	need_self_module(&s);
	uint64_t addr = allocate_frame();
	struct symbolizer *sym = symbolizer_new();
	struct frame want, f;
	/* Heaps 1 and 2: this program at its base, then 16 MiB higher (as
	 * another process of it under ASLR); heap 4 at its base again. */
	const uint64_t shift[] = { 0, 0x1000000, 0, 0 };
	for (int heap = 0; heap < 4; heap++) {
		uint8_t id[sizeof(s.id)];
		memcpy(id, s.id, sizeof(id));
		if (heap == 2)
			id[0] ^= 0xff; /* heap 3: a rebuilt program at the same path */
		uint64_t d = shift[heap];
		struct rh_module_info m = { .base = s.base + d, .start = s.start + d, .end = s.end + d,
			.build_id = id, .build_id_len = s.id_len, .path = s.path };
		symbolizer_clear(sym);
		assert_int_equal(symbolizer_add(sym, &m), 0);
		symbolizer_frame(sym, addr + d, &f);
		assert_int_equal(f.addr, addr + d);
		assert_string_equal(f.module, s.path);
		assert_int_equal(f.offset, addr - s.base);
		if (heap == 2) {
			assert_null(f.function);
			assert_null(f.file);
			continue;
		}
		assert_non_null(f.function);
		assert_string_equal(f.function, "allocate_frame");
		assert_non_null(f.file);
		assert_string_equal(f.file, "test_report.c");
		if (heap == 0)
			want = f;
		assert_int_equal(f.line, want.line);
		/* An address of no module of this heap is no module's. */
		symbolizer_frame(sym, s.end + d, &f);
		assert_null(f.module);
		if (s.base == 0)
			break; /* not a PIE: an executable has no other base */
	}
	symbolizer_free(sym);
}

/* The frame of this program, looked up in a fresh symbolizer through the
 * file at PATH (a copy of the program); its function, or NULL. */
static char *function_via(const struct self_module *s, const char *path, uint64_t addr)
{
	struct symbolizer *sym = self_symbolizer(s, path, NULL);
	struct frame f;
	symbolizer_frame(sym, addr, &f);
	assert_string_equal(f.module, path);
	char *fn = f.function ? strdup(f.function) : NULL;
	symbolizer_free(sym);
	return fn;
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* A file is parsed only when no one but root or us can change it (libelf
 * maps it, and its owner could truncate it under the mapping: SIGBUS), and
 * many spellings of one path are one file, parsed once. */
static void test_symbolize_only_files_no_one_else_can_change(void **state)
{
	(void)state;
	struct self_module s;
	need_self_module(&s);
	uint64_t addr = allocate_frame();
	char copy[512], cmd[4700];
	snprintf(copy, sizeof(copy), "%s/copy", test_dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", s.path, copy);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(chmod(copy, 0755), 0);
	char *fn = function_via(&s, copy, addr);
	assert_non_null(fn);
	assert_string_equal(fn, "allocate_frame");
	free(fn);
	if (geteuid() == 0) {
		assert_int_equal(chmod(copy, 0775), 0); /* root's, group-writable */
		assert_null(function_via(&s, copy, addr));
	}
	assert_int_equal(chmod(copy, 0757), 0); /* writable by others */
	assert_null(function_via(&s, copy, addr));
	assert_int_equal(chmod(copy, 0755), 0);
	if (geteuid() == 0) {
		assert_int_equal(chown(copy, 65534, 65534), 0); /* another user's */
		assert_null(function_via(&s, copy, addr));
		assert_int_equal(chown(copy, 0, 0), 0);
	}

	/* 300 spellings of the path in one heap, each at its own base: one
	 * file, one descriptor. */
	struct symbolizer *sym = symbolizer_new();
	static char paths[300][600];
	for (unsigned i = 0; i < 300; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%.*s%s", (int)(i % 50) + 1,
			"//////////////////////////////////////////////////", test_dir);
		for (unsigned k = 0; k < i / 50; k++)
			strcat(paths[i], "/.");
		strcat(paths[i], "/copy");
		uint64_t d = (uint64_t)i << 32;
		struct rh_module_info m = { .base = s.base + d, .start = s.start + d, .end = s.end + d,
			.build_id = s.id, .build_id_len = s.id_len, .path = paths[i] };
		assert_int_equal(symbolizer_add(sym, &m), 0);
	}
	int before = open_fds();
	for (unsigned i = 0; i < 300; i++) {
		struct frame f;
		symbolizer_frame(sym, addr + ((uint64_t)i << 32), &f);
		assert_string_equal(f.module, paths[i]);
		if (s.base) {
			assert_non_null(f.function);
			assert_string_equal(f.function, "allocate_frame");
		}
	}
	assert_true(open_fds() <= before + 1);
	symbolizer_free(sym);

	/* 300 build-ids made up for it: none used, none kept open. */
	sym = symbolizer_new();
	static uint8_t ids[300][sizeof(s.id)];
	for (unsigned i = 0; i < 300; i++) {
		memcpy(ids[i], s.id, sizeof(s.id));
		ids[i][0] ^= (uint8_t)(i + 1);
		ids[i][1] ^= (uint8_t)((i + 1) >> 8);
		uint64_t d = (uint64_t)i << 32;
		struct rh_module_info m = { .base = s.base + d, .start = s.start + d, .end = s.end + d,
			.build_id = ids[i], .build_id_len = s.id_len, .path = copy };
		assert_int_equal(symbolizer_add(sym, &m), 0);
	}
	before = open_fds();
	for (unsigned i = 0; i < 300; i++) {
		struct frame f;
		symbolizer_frame(sym, addr + ((uint64_t)i << 32), &f);
		assert_null(f.function);
	}
	assert_true(open_fds() <= before + 1);
	symbolizer_free(sym);
	unlink(copy);

	/* An executable that is not position-independent (the static test
	 * program, ET_EXEC), named at 300 load bases: libdwfl places it where
	 * its headers say, so it is one file, parsed once. */
	char exe[4096], prog[4200];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = 0;
	*strrchr(exe, '/') = 0;
	snprintf(prog, sizeof(prog), "%s/../progs/static_true", exe);
	if (access(prog, R_OK) != 0)
		return;
	sym = symbolizer_new();
	for (unsigned i = 0; i < 300; i++) {
		uint64_t d = (uint64_t)(i + 1) << 32;
		struct rh_module_info m = { .base = d, .start = d + 0x400000, .end = d + 0x500000, .path = prog };
		assert_int_equal(symbolizer_add(sym, &m), 0);
	}
	before = open_fds();
	for (unsigned i = 0; i < 300; i++) {
		struct frame f;
		symbolizer_frame(sym, ((uint64_t)(i + 1) << 32) + 0x401000, &f);
		assert_string_equal(f.module, prog);
	}
	assert_true(open_fds() <= before + 1);
	symbolizer_free(sym);
}

static void test_symbolize_ignores_hostile_paths(void **state)
{
	(void)state;
	/* A FIFO as a module path must not hang the tool, and is not even
	 * opened (opening a device node acts on the device: a tty, a
	 * watchdog): inotify sees no open. */
	char fifo[512];
	snprintf(fifo, sizeof(fifo), "%s/fifo", test_dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(in >= 0);
	assert_true(inotify_add_watch(in, fifo, IN_OPEN) >= 0);
	struct rh_module_info m = { .base = 0x1000, .start = 0x1000, .end = 0x2000, .path = fifo };
	struct symbolizer *sym = symbolizer_new();
	assert_int_equal(symbolizer_add(sym, &m), 0);
	struct frame f;
	symbolizer_frame(sym, 0x1800, &f);
	assert_null(f.function);
	assert_string_equal(f.module, fifo);
	assert_int_equal(f.offset, 0x800);
	symbolizer_free(sym);
	char ev[256];
	assert_int_equal(read(in, ev, sizeof(ev)), -1);
	assert_int_equal(errno, EAGAIN);
	/* The check can fail: a real open is seen. */
	close(open(fifo, O_RDONLY | O_NONBLOCK));
	assert_true(read(in, ev, sizeof(ev)) > 0);
	close(in);
}

/* Many modules: each frame finds its own (a lookup by address, not a walk
 * over all of them); ranges made to overlap, as a hostile journal can, cost
 * a bounded number of steps per heap, past which frames are bare addresses. */
static void test_symbolize_many_modules(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct symbolizer *sym = symbolizer_new();
	char path[64];
	for (unsigned i = 0; i < N; i++) {
		/* Added out of address order. */
		unsigned k = (i * 7919u) % N;
		snprintf(path, sizeof(path), "/nonexistent/m%u.so", k);
		struct rh_module_info m = { .base = 0x100000ull * (k + 1), .start = 0x100000ull * (k + 1),
			.end = 0x100000ull * (k + 1) + 0x80000, .path = path, .pos = 64 + i };
		assert_int_equal(symbolizer_add(sym, &m), 0);
	}
	struct frame f;
	for (unsigned k = 0; k < N; k++) {
		symbolizer_frame(sym, 0x100000ull * (k + 1) + 0x1234, &f);
		snprintf(path, sizeof(path), "/nonexistent/m%u.so", k);
		assert_non_null(f.module);
		assert_string_equal(f.module, path);
		assert_int_equal(f.offset, 0x1234);
		symbolizer_frame(sym, 0x100000ull * (k + 1) + 0x90000, &f); /* between two */
		assert_null(f.module);
	}
	symbolizer_clear(sym);
	for (unsigned i = 0; i < 100000; i++) {
		struct rh_module_info m = { .base = 0x1000, .start = 0x1000, .end = 0x100000, .path = "/nonexistent/o.so",
			.pos = 64 + i };
		assert_int_equal(symbolizer_add(sym, &m), 0);
	}
	symbolizer_frame(sym, 0x2000, &f);
	assert_non_null(f.module);
	unsigned bare = 0;
	for (unsigned i = 0; i < 2000; i++) {
		symbolizer_frame(sym, 0x2000 + i, &f);
		bare += !f.module;
	}
	assert_true(bare > 1000);
	symbolizer_clear(sym); /* the next heap gets its own steps */
	struct rh_module_info m = { .base = 0x1000, .start = 0x1000, .end = 0x2000, .path = "/nonexistent/p.so" };
	assert_int_equal(symbolizer_add(sym, &m), 0);
	symbolizer_frame(sym, 0x1800, &f);
	assert_non_null(f.module);
	symbolizer_free(sym);
}

static void test_symbolize_escapes_names_from_the_journal(void **state)
{
	(void)state;
	/* A module path with terminal escapes and a line end, and a C1
	 * control as UTF-8: printed escaped, on one line. */
	const char *path = "/x\x1b]0;T\x07\x1b[2J\nunlinking heap-1\xc2\x9b";
	struct rh_module_info m = { .base = 0x1000, .start = 0x1000, .end = 0x2000, .path = path };
	struct symbolizer *sym = symbolizer_new();
	assert_int_equal(symbolizer_add(sym, &m), 0);
	struct frame f;
	symbolizer_frame(sym, 0x1800, &f);
	char *s = NULL;
	size_t n;
	FILE *out = open_memstream(&s, &n);
	symbolizer_print(out, &f);
	fclose(out);
	assert_string_equal(s, "/x\\x1b]0;T\\x07\\x1b[2J\\nunlinking heap-1\\xc2\\x9b+0x800");
	free(s);
	symbolizer_free(sym);
}

static void test_symbolize_demangles_cxx_names(void **state)
{
	(void)state;
	void *h = dlopen(symbolizer_libstdcxx, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		skip(); /* no libstdc++: names stay as they are */
	dlclose(h);
	char *d = symbolizer_demangle("_ZN6WidgetC2Ej");
	assert_non_null(d);
	assert_string_equal(d, "Widget::Widget(unsigned int)");
	free(d);
	d = symbolizer_demangle("_ZL11make_widgetj");
	assert_non_null(d);
	assert_string_equal(d, "make_widget(unsigned int)");
	free(d);
	/* C names, and what is not a valid mangled name, are left alone. */
	assert_null(symbolizer_demangle("main"));
	assert_null(symbolizer_demangle("_Z"));
	assert_null(symbolizer_demangle("_Z!!"));
	assert_null(symbolizer_demangle(NULL));
}

static int phdr_find(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct self_module *s = arg;
	uint64_t start = UINT64_MAX, end = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];
		if (p->p_type != PT_LOAD)
			continue;
		uint64_t lo = info->dlpi_addr + p->p_vaddr, hi = lo + p->p_memsz;
		start = lo < start ? lo : start;
		end = hi > end ? hi : end;
	}
	if (s->base < start || s->base >= end)
		return 0;
	/* Found: s->base held the address looked for. */
	s->base = info->dlpi_addr;
	s->start = start;
	s->end = end;
	snprintf(s->path, sizeof(s->path), "%s", info->dlpi_name);
	return 1;
}

static void test_symbolize_frames_with_demangled_names(void **state)
{
	(void)state;
	/* operator new, in libstdc++: its .dynsym names it _Znwm. */
	void *h = dlopen(symbolizer_libstdcxx, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		skip();
	void *op_new = dlsym(h, "_Znwm");
	if (!op_new) {
		dlclose(h);
		skip();
	}
	struct self_module s;
	memset(&s, 0, sizeof(s));
	s.base = (uint64_t)(uintptr_t)op_new;
	assert_int_equal(dl_iterate_phdr(phdr_find, &s), 1);
	struct rh_module_info m = { .base = s.base, .start = s.start, .end = s.end, .path = s.path };
	struct symbolizer *sym = symbolizer_new();
	assert_int_equal(symbolizer_add(sym, &m), 0);
	/* A return address one byte in: the call looked up is op_new itself. */
	struct frame f;
	for (int round = 0; round < 2; round++) { /* the second from the cache */
		symbolizer_frame(sym, (uint64_t)(uintptr_t)op_new + 1, &f);
		assert_non_null(f.function);
		assert_string_equal(f.function, "operator new(unsigned long)");
		assert_non_null(f.symbol);
		assert_string_equal(f.symbol, "_Znwm");
	}
	symbolizer_free(sym);
	dlclose(h);
}

/* Run as "test_report no-libdw": symbolises as if libdw were missing, in a
 * process of its own (libdw is loaded once per process). Exits 0 when both
 * frames print as module+offset. */
static int no_libdw_child(void)
{
	symbolizer_libdw = "libdw-missing.so.0";
	struct self_module s;
	assert_int_equal(self_module(&s), 0);
	struct rh_module_info m = { .base = s.base, .start = s.start, .end = s.end,
		.build_id = s.id, .build_id_len = s.id_len, .path = s.path };
	int bad = 0;
	for (int i = 0; i < 2; i++) { /* two symbolizers: the warning is said once */
		struct symbolizer *sym = symbolizer_new();
		if (symbolizer_add(sym, &m) != 0)
			return 2;
		struct frame f;
		uint64_t addr = allocate_frame();
		symbolizer_frame(sym, addr, &f);
		char got[4200], want[4200];
		FILE *o = fmemopen(got, sizeof(got), "w");
		symbolizer_print(o, &f);
		fclose(o);
		snprintf(want, sizeof(want), "%s+0x%" PRIx64, s.path, addr - s.base);
		if (f.function || f.file || strcmp(got, want) != 0) {
			fprintf(stdout, "got '%s', want '%s'\n", got, want);
			bad = 1;
		}
		symbolizer_free(sym);
	}
	return bad;
}

static void test_symbolize_without_libdw_prints_module_offset(void **state)
{
	(void)state;
	char err[512];
	snprintf(err, sizeof(err), "%s/stderr", test_dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(3);
		execl("/proc/self/exe", "test_report", "no-libdw", (char *)NULL);
		_exit(4);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	FILE *f = fopen(err, "r");
	assert_non_null(f);
	char line[1024];
	int said = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "test_report: libdw-missing.so.0: ") == line &&
		    strstr(line, "; call sites shown as module+offset\n"))
			said++;
	fclose(f);
	assert_int_equal(said, 1);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "no-libdw") == 0)
		return no_libdw_child();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_report_sums_live_blocks_by_site, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_report_unknown_sites_count_as_none, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_report_reads_sites_recorded_during_the_walk, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_report_prints_sites_and_other_sites, test_setup, test_teardown),
		cmocka_unit_test(test_symbolize_own_frames_to_function_and_line),
		cmocka_unit_test(test_symbolize_refuses_a_file_with_another_build_id),
		cmocka_unit_test(test_symbolize_one_module_at_two_bases),
		cmocka_unit_test_setup_teardown(test_symbolize_ignores_hostile_paths, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_symbolize_only_files_no_one_else_can_change, test_setup, test_teardown),
		cmocka_unit_test(test_symbolize_escapes_names_from_the_journal),
		cmocka_unit_test(test_symbolize_many_modules),
		cmocka_unit_test(test_symbolize_demangles_cxx_names),
		cmocka_unit_test(test_symbolize_frames_with_demangled_names),
		cmocka_unit_test_setup_teardown(test_symbolize_without_libdw_prints_module_offset,
			test_setup, test_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
