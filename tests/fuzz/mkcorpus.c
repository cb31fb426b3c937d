/* SPDX-License-Identifier: MIT */
/*
 * Writes the crafted corpus of tests/fuzz/corpus/: small heap files, sound
 * (ok-*) and broken in one way each (bad-*), built with tests/heapfix.h.
 * They seed the fuzzer and are replayed by make check. Usage:
 *   mkcorpus DIR
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "heapfix.h"

#define PAGE 4096u
/* Above PID_MAX_LIMIT: never a live process, and the files do not depend on
 * who generated them. */
#define CREATOR 4194305

/* Where the pieces of the small heap are. */
static uint64_t sb, jsb, mod_rec, site_rec;

/* A native heap of 36 KiB: header, a 6-page data superblock (64-byte slots
 * with a displaced block, one large block, 4096-byte slots with a displaced
 * block), a 1-page journal. */
static void small_heap(struct heapfix *f)
{
	static const uint64_t frames[] = { 0x401000, 0x401100, 0x401200 };
	static const uint8_t id[20] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 };
	heapfix_init(f, PAGE);
	heapfix_header(f)->creator_pid = heapfix_header(f)->holders[0].pid = CREATOR;
	heapfix_header(f)->creator_uid = 1000;
	sb = heapfix_data_sb(f, 6);
	jsb = heapfix_journal_sb(f, 1);
	mod_rec = heapfix_module(f, jsb, "/usr/lib/x86_64-linux-gnu/libc.so.6", 0x7f0000000000,
		0x7f0000028000, 0x7f00001f0000, id, sizeof(id));
	uint32_t s1 = heapfix_site(f, jsb, frames, 3, 100, 2, 5, 500);
	site_rec = (uint64_t)s1 * 8;
	heapfix_record(f, jsb, 77, 16);
	uint32_t s2 = heapfix_site(f, jsb, frames + 1, 1, 5000, 1, 1, 5000);
	heapfix_span(f, sb, 1, 1, RH_PAGE_SMALL, 2);
	heapfix_small(f, sb, 1, 0, 40, s1, 1, 0);
	heapfix_small(f, sb, 1, 1, 30, s1, 1, 0);
	heapfix_small(f, sb, 1, 2, 8, 0, 0, 0);
	heapfix_small(f, sb, 1, 3, 20, s1, 2 | RH_REF_REACHABLE, 16);
	heapfix_large(f, sb, 2, 2, 16, 5000, s2, 1);
	heapfix_span(f, sb, 4, 2, RH_PAGE_SMALL, 30);
	heapfix_small(f, sb, 4, 0, 3000, s2, 1, 0);
	heapfix_small(f, sb, 4, 1, 100, s2, 1, 64);
	heapfix_counter(f, 0, 8190, 6);
}

static void r22_heap(struct heapfix *f)
{
	heapfix_r22_init(f, CREATOR, 2);
	uint64_t at[2];
	at[0] = heapfix_r22_sb(f, 4096, 1024);
	at[1] = heapfix_r22_sb(f, 4096, 0);
	for (int i = 0; i < 2; i++) {
		memset(heapfix_at(f, at[i]), 0, 256);
		snprintf(heapfix_at(f, at[i]), 256, "heap-%d", CREATOR);
	}
}

#define HDR(f) heapfix_header(f)
#define SB(f) heapfix_sb(f, sb)
#define JSB(f) heapfix_sb(f, jsb)
#define DESC(f, i) heapfix_desc(f, sb, i)
#define BH(f, off) ((struct block_header *)heapfix_at(f, off))
#define SITE(f) ((struct journal_site *)heapfix_at(f, site_rec))
#define MOD(f) ((struct journal_module *)heapfix_at(f, mod_rec))
#define SLOT(k) (sb + PAGE + (k) * 64u)

static void put32(struct heapfix *f, uint64_t off, uint32_t v) { memcpy(heapfix_at(f, off), &v, 4); }
static void put64(struct heapfix *f, uint64_t off, uint64_t v) { memcpy(heapfix_at(f, off), &v, 8); }

struct variant {
	const char *name;
	int r22;
	void (*mutate)(struct heapfix *f);
};

static void ok_native(struct heapfix *f) { (void)f; }
static void ok_empty(struct heapfix *f) { f->size = 8192; HDR(f)->superblocks_end = 8192; HDR(f)->counters[0].used_bytes = 0; }
static void ok_tail(struct heapfix *f) { memset(heapfix_at(f, heapfix_grow(f, PAGE)), 0xa5, PAGE); }
static void ok_r22(struct heapfix *f) { (void)f; }

static void trunc_header(struct heapfix *f) { f->size = 5000; }
static void version(struct heapfix *f) { HDR(f)->version_major = 2; }
static void page_size(struct heapfix *f) { HDR(f)->page_size = 12288; }
static void header_size(struct heapfix *f) { HDR(f)->header_size = 8192 + 4096 * 1000; }
static void end_past_eof(struct heapfix *f) { HDR(f)->superblocks_end += 1ull << 40; }
static void end_in_header(struct heapfix *f) { HDR(f)->superblocks_end = 4096; }
static void npools(struct heapfix *f) { HDR(f)->npools = 1000; }
static void sb_magic(struct heapfix *f) { SB(f)->magic = 0; }
static void sb_offset(struct heapfix *f) { JSB(f)->offset = 0; }
static void sb_size_zero(struct heapfix *f) { SB(f)->size = 0; }
static void sb_size_huge(struct heapfix *f) { SB(f)->size = UINT64_MAX & ~(uint64_t)(PAGE - 1); }
static void sb_size_odd(struct heapfix *f) { SB(f)->size += 8; }
static void sb_npages(struct heapfix *f) { SB(f)->npages = UINT32_MAX; }
static void sb_hsize_small(struct heapfix *f) { SB(f)->header_size = 8; }
static void sb_hsize_big(struct heapfix *f) { SB(f)->header_size = UINT32_MAX; }
static void sb_kind(struct heapfix *f) { SB(f)->kind = 3; }
static void sb_cut(struct heapfix *f) { f->size = sb + 2 * PAGE; }
static void jend_past(struct heapfix *f) { JSB(f)->journal_end = PAGE + 8; }
static void span_zero(struct heapfix *f) { DESC(f, 1)->span_pages = 0; }
static void span_over(struct heapfix *f) { DESC(f, 2)->span_pages = 5; }
static void span_huge(struct heapfix *f) { DESC(f, 1)->span_pages = UINT32_MAX; }
static void size_class(struct heapfix *f) { DESC(f, 1)->size_class = 200; }
static void bumped(struct heapfix *f) { DESC(f, 1)->bumped = 65; }
static void page_kind(struct heapfix *f) { DESC(f, 1)->kind = 9; }
static void marker_out(struct heapfix *f) { BH(f, SLOT(3))->site = 64; }
static void marker_odd(struct heapfix *f) { BH(f, SLOT(3))->site = 8; }
static void marker_loop(struct heapfix *f) { BH(f, SLOT(3) + 16)->refcount = RH_REF_MARKER; }
static void slack(struct heapfix *f) { BH(f, SLOT(0))->slack = 49; }
static void backptr(struct heapfix *f) { BH(f, SLOT(1))->sb_page = 7; }
static void large_off(struct heapfix *f) { DESC(f, 2)->free_head = 2 * PAGE; }
static void large_size(struct heapfix *f) { DESC(f, 2)->used = 1; }
static void large_marker(struct heapfix *f) { BH(f, sb + 2 * PAGE)->refcount = RH_REF_MARKER; }
static void big_marker(struct heapfix *f) { BH(f, sb + 5 * PAGE)->site = 4096 - 16; }
static void big_backptr(struct heapfix *f) { BH(f, sb + 5 * PAGE + 64)->span_index = 5; }
static void rec_zero(struct heapfix *f) { MOD(f)->rec.size = 0; }
static void rec_odd(struct heapfix *f) { MOD(f)->rec.size = 12; }
static void rec_past(struct heapfix *f) { SITE(f)->rec.size = PAGE; }
static void site_depth(struct heapfix *f) { SITE(f)->depth = 1000; }
static void site_frames(struct heapfix *f) { SITE(f)->depth = 4; }
static void site_small(struct heapfix *f) { SITE(f)->rec.size = 16; }
static void mod_path(struct heapfix *f) { MOD(f)->path_len = 60000; }
static void mod_id(struct heapfix *f) { MOD(f)->build_id_len = 41; }
static void mod_small(struct heapfix *f)
{
	/* Cut the module record to 72 bytes; a record of an unknown kind fills
	 * the rest, so only the module walk can notice. */
	uint32_t size = MOD(f)->rec.size;
	MOD(f)->rec.size = 72;
	struct journal_record *r = heapfix_at(f, mod_rec + 72);
	r->tag = 99;
	r->size = size - 72;
}
static void r22_version(struct heapfix *f) { put32(f, 4, 2); }
static void r22_offset(struct heapfix *f) { put64(f, 4096 + 256, 0x1000000); }
static void r22_size(struct heapfix *f) { put32(f, 4096 + 264, 1u << 20); }
static void r22_used(struct heapfix *f) { put64(f, 4096 + 312, 4097); }
static void r22_start(struct heapfix *f) { put32(f, 4096 + 268, 0); }
static void r22_cut(struct heapfix *f) { f->size -= 100; }
static void r22_unwritten(struct heapfix *f) { heapfix_grow(f, 2 * 4096); }

static const struct variant variants[] = {
	{ "ok-native", 0, ok_native },
	{ "ok-native-empty", 0, ok_empty },
	{ "ok-native-unpublished-tail", 0, ok_tail },
	{ "ok-redhawk22", 1, ok_r22 },
	{ "bad-truncated-header", 0, trunc_header },
	{ "bad-major-version", 0, version },
	{ "bad-page-size", 0, page_size },
	{ "bad-header-size", 0, header_size },
	{ "bad-superblocks-end-past-eof", 0, end_past_eof },
	{ "bad-superblocks-end-in-header", 0, end_in_header },
	{ "bad-npools", 0, npools },
	{ "bad-sb-magic", 0, sb_magic },
	{ "bad-sb-offset", 0, sb_offset },
	{ "bad-sb-size-zero", 0, sb_size_zero },
	{ "bad-sb-size-huge", 0, sb_size_huge },
	{ "bad-sb-size-unaligned", 0, sb_size_odd },
	{ "bad-sb-npages", 0, sb_npages },
	{ "bad-sb-header-size-small", 0, sb_hsize_small },
	{ "bad-sb-header-size-huge", 0, sb_hsize_big },
	{ "bad-sb-kind", 0, sb_kind },
	{ "bad-sb-truncated", 0, sb_cut },
	{ "bad-journal-end", 0, jend_past },
	{ "bad-span-zero", 0, span_zero },
	{ "bad-span-overflow", 0, span_over },
	{ "bad-span-huge", 0, span_huge },
	{ "bad-size-class", 0, size_class },
	{ "bad-bumped", 0, bumped },
	{ "bad-page-kind", 0, page_kind },
	{ "bad-marker-outside", 0, marker_out },
	{ "bad-marker-unaligned", 0, marker_odd },
	{ "bad-marker-to-marker", 0, marker_loop },
	{ "bad-slack", 0, slack },
	{ "bad-back-pointer", 0, backptr },
	{ "bad-large-offset", 0, large_off },
	{ "bad-large-size", 0, large_size },
	{ "bad-large-marker", 0, large_marker },
	{ "bad-big-slot-marker", 0, big_marker },
	{ "bad-big-slot-back-pointer", 0, big_backptr },
	{ "bad-record-size-zero", 0, rec_zero },
	{ "bad-record-size-unaligned", 0, rec_odd },
	{ "bad-record-past-end", 0, rec_past },
	{ "bad-site-depth", 0, site_depth },
	{ "bad-site-frames", 0, site_frames },
	{ "bad-site-small", 0, site_small },
	{ "bad-module-path", 0, mod_path },
	{ "bad-module-build-id", 0, mod_id },
	{ "bad-module-small", 0, mod_small },
	{ "bad-redhawk22-version", 1, r22_version },
	{ "bad-redhawk22-offset", 1, r22_offset },
	{ "bad-redhawk22-size", 1, r22_size },
	{ "bad-redhawk22-used", 1, r22_used },
	{ "bad-redhawk22-data-start", 1, r22_start },
	{ "bad-redhawk22-truncated", 1, r22_cut },
	{ "bad-redhawk22-unwritten", 1, r22_unwritten },
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkcorpus DIR\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		struct heapfix f;
		if (variants[i].r22)
			r22_heap(&f);
		else
			small_heap(&f);
		variants[i].mutate(&f);
		if (heapfix_write(&f, argv[1], variants[i].name) < 0) {
			fprintf(stderr, "mkcorpus: %s/%s: %s\n", argv[1], variants[i].name, strerror(errno));
			return 1;
		}
		heapfix_free(&f);
	}
	return 0;
}
