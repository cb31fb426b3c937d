/* SPDX-License-Identifier: MIT */
/*
 * Heap file fixtures: builds heap files byte by byte from heap/format.h, in
 * memory, so that tests (and the fuzzer's seed corpus) can make exact heaps,
 * valid or broken on purpose, without running the allocator. Build the image,
 * poke at it through heapfix_at() to break it, then heapfix_write() it.
 */
#ifndef RH_HEAPFIX_H
#define RH_HEAPFIX_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"

struct heapfix {
	uint8_t *buf;
	uint64_t size;      /* bytes in the image */
	uint32_t page;
};

static const uint32_t heapfix_classes[] = { RH_SIZE_CLASSES };

static inline void *heapfix_at(struct heapfix *f, uint64_t off)
{
	if (off > f->size) {
		fprintf(stderr, "heapfix: offset %llu past the image (%llu)\n",
			(unsigned long long)off, (unsigned long long)f->size);
		abort();
	}
	return f->buf + off;
}

static inline struct heap_header *heapfix_header(struct heapfix *f)
{
	return (struct heap_header *)f->buf;
}

static inline struct superblock *heapfix_sb(struct heapfix *f, uint64_t sb)
{
	return (struct superblock *)heapfix_at(f, sb);
}

static inline struct page_desc *heapfix_desc(struct heapfix *f, uint64_t sb, uint32_t page)
{
	return &heapfix_sb(f, sb)->pages[page];
}

/* Appends n zero bytes; returns the offset where they start. */
static inline uint64_t heapfix_grow(struct heapfix *f, uint64_t n)
{
	uint64_t at = f->size;
	uint8_t *b = realloc(f->buf, at + n);
	if (!b)
		abort();
	memset(b + at, 0, n);
	f->buf = b;
	f->size = at + n;
	return at;
}

static inline uint64_t heapfix_round(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

/* A native heap header for this process: no superblocks, no lock flag. */
static inline void heapfix_init(struct heapfix *f, uint32_t page)
{
	memset(f, 0, sizeof(*f));
	f->page = page;
	uint64_t hsize = heapfix_round(sizeof(struct heap_header), page);
	heapfix_grow(f, hsize);
	struct heap_header *h = heapfix_header(f);
	h->magic = RH_HEAP_MAGIC;
	h->version_major = RH_HEAP_VERSION_MAJOR;
	h->version_minor = RH_HEAP_VERSION_MINOR;
	h->header_size = (uint32_t)hsize;
	h->page_size = page;
	h->instance = 0x1122334455667788ull;
	h->superblocks_end = hsize;
	h->creator_pid = getpid();
	h->creator_uid = getuid();
	h->creator_start = 4242;
	h->created_ns = 1700000000123456789ull;
	h->pid_ns = 4026531836ull;
	h->npools = 1;
	h->trace_depth = 8;
	strcpy(h->command, "fixture");
	h->holders[0].pid = getpid();
	h->holders[0].state = RH_HOLDER_CLAIMED;
}

/* A counter slot holding `used` bytes and `live` blocks (allocs minus frees). */
static inline void heapfix_counter(struct heapfix *f, unsigned slot, int64_t used, int64_t live)
{
	heapfix_header(f)->counters[slot].used_bytes = used;
	if (live >= 0)
		heapfix_header(f)->counters[slot].allocs = live;
	else
		heapfix_header(f)->counters[slot].frees = -live;
}

/* Sets the descriptors of a span's first and last page. */
static inline void heapfix_set_span(struct heapfix *f, uint64_t sb, uint32_t page, uint32_t npages,
	uint8_t kind, uint8_t size_class)
{
	struct page_desc d = { .span_pages = npages, .kind = kind, .size_class = size_class };
	*heapfix_desc(f, sb, page) = d;
	*heapfix_desc(f, sb, page + npages - 1) = d;
}

/* Appends a DATA superblock of npages pages (its header included), all free
 * after the header; returns its offset. */
static inline uint64_t heapfix_data_sb(struct heapfix *f, uint32_t npages)
{
	uint32_t hsize = (uint32_t)heapfix_round(sizeof(struct superblock) +
		(uint64_t)npages * sizeof(struct page_desc), f->page);
	uint32_t hpages = hsize / f->page;
	uint64_t at = heapfix_grow(f, (uint64_t)npages * f->page);
	struct superblock *sb = heapfix_sb(f, at);
	sb->magic = RH_SB_MAGIC;
	sb->kind = RH_SB_DATA;
	sb->offset = at;
	sb->size = (uint64_t)npages * f->page;
	sb->header_size = hsize;
	sb->npages = npages;
	heapfix_set_span(f, at, 0, hpages, RH_PAGE_HEADER, 0);
	if (hpages < npages)
		heapfix_set_span(f, at, hpages, npages - hpages, RH_PAGE_FREE, 0);
	heapfix_header(f)->superblocks_end = f->size;
	return at;
}

/* Makes pages [page, page + npages) of superblock sb one span, the rest of
 * the superblock a free span (so spans are laid out in increasing order);
 * returns the span's file offset. */
static inline uint64_t heapfix_span(struct heapfix *f, uint64_t sb, uint32_t page, uint32_t npages,
	uint8_t kind, uint8_t size_class)
{
	uint32_t total = heapfix_sb(f, sb)->npages;
	heapfix_set_span(f, sb, page, npages, kind, size_class);
	if (page + npages < total)
		heapfix_set_span(f, sb, page + npages, total - page - npages, RH_PAGE_FREE, 0);
	return sb + (uint64_t)page * f->page;
}

static inline void heapfix_block_header(struct heapfix *f, uint64_t at, uint64_t sb, uint32_t span,
	uint16_t slack, uint32_t site, uint32_t refcount)
{
	struct block_header *b = heapfix_at(f, at);
	b->sb_page = (uint32_t)(sb / f->page);
	b->span_index = (uint16_t)span;
	b->slack = slack;
	b->site = site;
	b->refcount = refcount;
}

/* Writes a block of size bytes into slot k of the SMALL span at page; shift
 * (a multiple of 16, 0 for none) displaces its header behind a marker.
 * Returns the data offset. */
static inline uint64_t heapfix_small(struct heapfix *f, uint64_t sb, uint32_t page, uint32_t k,
	uint64_t size, uint32_t site, uint32_t refcount, uint32_t shift)
{
	struct page_desc *d = heapfix_desc(f, sb, page);
	uint32_t slot = heapfix_classes[d->size_class];
	uint64_t slot_off = sb + (uint64_t)page * f->page + (uint64_t)k * slot;
	uint64_t hdr = slot_off + shift;
	uint64_t usable = slot_off + slot - (hdr + sizeof(struct block_header));
	if (shift) {
		heapfix_block_header(f, slot_off, sb, page, 0, shift, RH_REF_MARKER);
		refcount |= RH_REF_DISPLACED;
	}
	heapfix_block_header(f, hdr, sb, page, (uint16_t)(usable - size), site, refcount);
	if (k + 1 > d->bumped)
		d->bumped = k + 1;
	if (refcount & RH_REF_COUNT_MASK)
		d->used++;
	return hdr + sizeof(struct block_header);
}

/* Makes a LARGE span holding one block of size bytes whose data starts
 * data_off bytes into the span; returns the data offset. */
static inline uint64_t heapfix_large(struct heapfix *f, uint64_t sb, uint32_t page, uint32_t npages,
	uint32_t data_off, uint64_t size, uint32_t site, uint32_t refcount)
{
	uint64_t span = heapfix_span(f, sb, page, npages, RH_PAGE_LARGE, 0);
	struct page_desc *d = heapfix_desc(f, sb, page);
	d->free_head = data_off;
	d->used = (uint32_t)(size >> 32);
	d->bumped = (uint32_t)size;
	*heapfix_desc(f, sb, page + npages - 1) = *d;
	heapfix_block_header(f, span + data_off - sizeof(struct block_header), sb, page, 0, site,
		refcount);
	return span + data_off;
}

/* Appends a JOURNAL superblock of npages pages; returns its offset. */
static inline uint64_t heapfix_journal_sb(struct heapfix *f, uint32_t npages)
{
	uint64_t at = heapfix_grow(f, (uint64_t)npages * f->page);
	struct superblock *sb = heapfix_sb(f, at);
	sb->magic = RH_SB_MAGIC;
	sb->kind = RH_SB_JOURNAL;
	sb->offset = at;
	sb->size = (uint64_t)npages * f->page;
	sb->header_size = sizeof(struct superblock);
	sb->npages = npages;
	sb->journal_end = sizeof(struct superblock);
	heapfix_header(f)->superblocks_end = f->size;
	return at;
}

/* Appends a record of size bytes (header filled, payload zero) to the journal
 * superblock jsb and publishes it; returns its file offset. */
static inline uint64_t heapfix_record(struct heapfix *f, uint64_t jsb, uint16_t tag, uint32_t size)
{
	struct superblock *sb = heapfix_sb(f, jsb);
	if (sb->journal_end + size > sb->size) {
		fprintf(stderr, "heapfix: journal superblock at %llu is full\n", (unsigned long long)jsb);
		abort();
	}
	uint64_t at = jsb + sb->journal_end;
	struct journal_record *r = heapfix_at(f, at);
	memset(r, 0, size);
	r->tag = tag;
	r->size = size;
	sb->journal_end += size;
	return at;
}

/* Appends a call site; returns its id (record offset / 8). */
static inline uint32_t heapfix_site(struct heapfix *f, uint64_t jsb, const uint64_t *frames,
	uint32_t depth, int64_t live_bytes, int64_t live_blocks, uint64_t total_allocs,
	uint64_t total_bytes)
{
	uint32_t size = (uint32_t)(sizeof(struct journal_site) + (uint64_t)depth * 8);
	uint64_t at = heapfix_record(f, jsb, RH_REC_SITE, size);
	struct journal_site *s = heapfix_at(f, at);
	s->hash = 0x5eed0000u + depth;
	s->live_bytes = live_bytes;
	s->live_blocks = live_blocks;
	s->total_allocs = total_allocs;
	s->total_bytes = total_bytes;
	s->depth = depth;
	memcpy(s->frames, frames, (size_t)depth * 8);
	return (uint32_t)(at / 8);
}

/* Appends a module record; returns its file offset. */
static inline uint64_t heapfix_module(struct heapfix *f, uint64_t jsb, const char *path,
	uint64_t base, uint64_t start, uint64_t end, const uint8_t *build_id, uint16_t build_id_len)
{
	size_t len = strlen(path);
	uint32_t size = (uint32_t)heapfix_round(sizeof(struct journal_module) + len + 1, 8);
	uint64_t at = heapfix_record(f, jsb, RH_REC_MODULE, size);
	struct journal_module *m = heapfix_at(f, at);
	m->base = base;
	m->start = start;
	m->end = end;
	m->build_id_len = build_id_len;
	m->path_len = (uint16_t)len;
	memcpy(m->build_id, build_id, build_id_len);
	memcpy(m->path, path, len);
	return at;
}

/* A REDHAWK 2.2 heap header page (x86_64 layout, see heap/FORMAT.md). */
static inline void heapfix_r22_init(struct heapfix *f, int32_t creator, int32_t refcount)
{
	memset(f, 0, sizeof(*f));
	f->page = 4096;
	heapfix_grow(f, 4096);
	uint32_t magic = RH_REDHAWK22_MAGIC, version = RH_REDHAWK22_VERSION;
	memcpy(f->buf + 0, &magic, 4);
	memcpy(f->buf + 4, &version, 4);
	memcpy(f->buf + 8, &refcount, 4);
	memcpy(f->buf + 12, &creator, 4);
}

/* Appends a REDHAWK 2.2 superblock: a header page, then data_size bytes;
 * returns its offset. */
static inline uint64_t heapfix_r22_sb(struct heapfix *f, uint32_t data_size, uint64_t used)
{
	uint64_t at = heapfix_grow(f, 4096 + (uint64_t)data_size);
	uint8_t *p = f->buf + at;
	uint32_t data_start = 4096;
	snprintf((char *)p, 256, "heap-%d", (int)getpid());
	memcpy(p + 256, &at, 8);
	memcpy(p + 264, &data_size, 4);
	memcpy(p + 268, &data_start, 4);
	memcpy(p + 312, &used, 8);
	return at;
}

/* Writes the image as dir/name (replacing it); 0 or -1 with errno. */
static inline int heapfix_write(struct heapfix *f, const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	uint64_t done = 0;
	while (done < f->size) {
		ssize_t n = write(fd, f->buf + done, f->size - done);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		done += (uint64_t)n;
	}
	return close(fd);
}

static inline void heapfix_free(struct heapfix *f)
{
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

#endif
