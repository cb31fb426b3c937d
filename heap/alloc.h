/* SPDX-License-Identifier: MIT */
/*
 * The allocator's fast paths, inlined into the API and the shim: a small
 * block from the thread's cache and back. Everything else is in alloc.c.
 * Internal; included after heap.h.
 */
#ifndef RH_ALLOC_H
#define RH_ALLOC_H

#pragma GCC visibility push(hidden)

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define HDR sizeof(struct block_header)
#define SMALL_MAX_REQUEST (RH_SMALL_MAX_SLOT - sizeof(struct block_header))

extern const uint32_t rh_class_size[RH_NUM_CLASSES];

#define LCACHE_ENTRIES 8
#define LCACHE_BYTES (8u << 20)

struct tbin {
	void *head;
	uint16_t count;   /* blocks in head's list (at most max) */
	uint16_t max;
	uint16_t fill;    /* blocks the next refill takes: one page's worth at first, doubling */
	uint16_t usable;  /* the class's slot size less its header */
	/* The stream: a span's whole free list, taken at once and read a slot
	 * at a time as blocks are handed out, so that following its links
	 * (a cache miss each, when the slots were freed long ago) costs
	 * nothing until the block is used anyway. Not bounded by max: frees
	 * go to head's list, and the stream goes back only when the whole
	 * cache does, so a batch larger than the bin is handed out from its
	 * span's list without moving each block through the cache. */
	char *stream;          /* the span's first slot */
	uint32_t stream_next;  /* the next slot + 1, linked as in the span; 0: empty */
	uint32_t streamed;     /* blocks left in the stream */
};

struct tcache {
	struct tbin bins[RH_NUM_CLASSES];
	struct heap *heap;             /* the heap the cached blocks belong to */
	struct pool *pool;
	struct heap_counter *counter;
	int slot;                      /* counter slot, 0: shared (atomic) */
	/* Recently freed LARGE spans, reused without the pool lock. */
	struct lentry {
		struct superblock *sb;
		uint32_t idx, pages;
	} large[LCACHE_ENTRIES];
	unsigned nlarge;
	size_t large_bytes;
	unsigned long refills, flushes; /* the pools' locks taken for the bins (tests) */
	int busy;                      /* the shim's guard: inside its own code */
	bool exited;                   /* past tcache_exit: cache nothing */
	bool shared_only;              /* an API call: no private pages (below) */
};

extern __thread struct tcache rh_tc __attribute__((tls_model("initial-exec")));

void *alloc_slow(size_t size, size_t align, uint32_t site);
/* LARGE blocks of at least this many bytes (the shim's malloc family; the
 * API's calls set rh_tc.shared_only) get private pages after their first:
 * the heap keeps their header, size and call site, the file only holes, and
 * the pages are made when first touched, as with the C library's mmap'd
 * chunks. rh_shm_ref moves them into the file. SIZE_MAX: none.
 * With alloc_private_adapts, a private block of up to PRIVATE_ADAPT_MAX
 * bytes freed with at least half of its pages used raises it to the
 * smallest span that holds the block, as the C library raises its mmap
 * threshold: a program that allocates and frees such blocks again and again
 * then gets them from the file, where the freed pages are kept for reuse,
 * instead of new private pages each time. */
#define PRIVATE_ADAPT_MAX ((size_t)32 << 20)
/* Address space a pool may add for private spans, over its life, before a
 * private span takes one of its fits whose pages are kept for reuse rather
 * than grow the heap (span_alloc). */
#define PRIVATE_GROWTH_MAX ((size_t)256 << 20)
extern size_t alloc_private_min;
extern bool alloc_private_adapts;
/* Zeros the first n bytes of a block just allocated, skipping its private
 * pages (fresh zeros already). */
void block_clear(void *p, size_t n);
void free_slow(struct heap *h, struct block_header *bh, uint32_t r);

/* Request size to class: 16-byte steps up to 256, then four per doubling.
 * Every slot size is a multiple of 16, so the requests of one 16-byte step
 * share a class, looked up by the step. */
extern const uint8_t rh_class_of[(SMALL_MAX_REQUEST + 15) / 16 + 1];

static inline unsigned size_class(size_t size)
{
	return rh_class_of[(size + 15) >> 4];
}

/* Adds to the thread's counter slot: bytes and blocks made (blocks > 0),
 * freed (blocks < 0) or resized (blocks == 0). */
static inline void count(int64_t bytes, int64_t blocks)
{
	struct heap_counter *k = rh_tc.counter;
	if (likely(rh_tc.slot)) {
		/* Single writer: plain stores, atomic only so readers see no tearing. */
		__atomic_store_n(&k->used_bytes, k->used_bytes + bytes, __ATOMIC_RELAXED);
		if (blocks > 0)
			__atomic_store_n(&k->allocs, k->allocs + 1, __ATOMIC_RELAXED);
		else if (blocks < 0)
			__atomic_store_n(&k->frees, k->frees + 1, __ATOMIC_RELAXED);
	} else {
		__atomic_fetch_add(&k->used_bytes, bytes, __ATOMIC_RELAXED);
		if (blocks)
			__atomic_fetch_add(blocks > 0 ? &k->allocs : &k->frees, 1, __ATOMIC_RELAXED);
	}
}

/* A small block of class c taken from a span or cache becomes live. */
static inline __attribute__((always_inline)) void *small_start(void *p, unsigned c, size_t size, uint32_t site)
{
	struct block_header *bh = (struct block_header *)p - 1;
	bh->slack = (uint16_t)(rh_tc.bins[c].usable - size);
	bh->site = site;
	__atomic_store_n(&bh->refcount, 1, __ATOMIC_RELEASE);
	count((int64_t)size, 1);
	if (site && likely(rh_tc.heap)) /* none: a fork in a signal handler cleared it */
		journal_count(rh_tc.heap->hdr, site, (unsigned)rh_tc.slot, (int64_t)size, 1);
	return p;
}

/* The next block of the bin's stream (not empty); the caller counts it. */
static inline void *stream_pop(struct tbin *b, unsigned c)
{
	char *slot = b->stream + (size_t)(b->stream_next - 1) * rh_class_size[c];
	struct block_header *bh = (struct block_header *)slot;
	b->stream_next = *(uint32_t *)(slot + HDR);
	if (bh->refcount == RH_REF_MARKER)
		bh->refcount = 0;
	return slot + HDR;
}

/* A small block from the thread's cache, or NULL: alloc_block's fast path,
 * which the shim also calls on its own (it makes no call when site is 0). */
static inline __attribute__((always_inline)) void *small_cached(size_t size, uint32_t site)
{
	unsigned c = size_class(size);
	struct tbin *b = &rh_tc.bins[c];
	void *p = b->head;
	/* A cache holds blocks only while bound to the current heap: it is
	 * emptied at thread exit and cleared in a forked child. */
	if (likely(p)) {
		b->head = *(void **)p;
		b->count--;
		return small_start(p, c, size, site);
	}
	if (b->stream_next) {
		b->streamed--;
		return small_start(stream_pop(b, c), c, size, site);
	}
	return NULL;
}

static inline __attribute__((always_inline)) void *alloc_cached(size_t size, uint32_t site)
{
	return likely(size <= SMALL_MAX_REQUEST) ? small_cached(size, site) : NULL;
}

/* A block of size bytes aligned to align (at most HDR, or more through the
 * slow path), with its call site. */
static inline void *alloc_block(size_t size, size_t align, uint32_t site)
{
	if (likely(align <= HDR)) {
		void *p = alloc_cached(size, site);
		if (likely(p))
			return p;
	}
	return alloc_slow(size, align, site);
}

/* realloc's fast path, for blocks without a call site: a block of this
 * heap resized in place, small within its class, LARGE within its span
 * (down to half of it); NULL when that cannot be. */
static inline __attribute__((always_inline)) void *realloc_unsited(void *p, size_t size)
{
	struct block_header *bh = (struct block_header *)p - 1;
	unsigned c = bh->sb_page >> RH_CLASS_SHIFT;
	/* refcount 1 exactly: one holder, not displaced by alignment. */
	if (unlikely(bh->refcount != 1 || bh->site || rh_tc.heap != rh_heap))
		return NULL;
	if (likely(c < RH_NUM_CLASSES)) {
		size_t usable = rh_class_size[c] - HDR;
		if (size <= usable && (size >= usable / 4 || usable <= 64)) {
			int64_t old = (int64_t)(usable - bh->slack);
			bh->slack = (uint16_t)(usable - size);
			count((int64_t)size - old, 0);
			return p;
		}
	} else if (c == RH_CLASS_LARGE) {
		const struct heap *h = rh_heap;
		struct superblock *sb = (struct superblock *)(h->base +
			((uint64_t)(bh->sb_page & RH_SB_PAGE_MASK) << h->page_shift));
		struct page_desc *d = &sb->pages[bh->span_index];
		size_t usable = ((size_t)d->span_pages << h->page_shift) - d->free_head;
		if (size <= usable && size >= usable / 2 && size > SMALL_MAX_REQUEST) {
			int64_t old = (int64_t)((uint64_t)d->used << 32 | d->bumped);
			d->bumped = (uint32_t)size;
			d->used = (uint32_t)((uint64_t)size >> 32);
			count((int64_t)size - old, 0);
			return p;
		}
	}
	return NULL;
}

/* A block of this process's heap, with its last reference (or one of them)
 * dropped. */
static inline __attribute__((always_inline)) void free_block(void *p)
{
	struct block_header *bh = (struct block_header *)p - 1;
	uint32_t r = bh->refcount;
	/* The size class from the page of the header (always in its span),
	 * not from the header: nothing the common free does waits on what it
	 * reads from the block. Any page but a SMALL span's gives a class
	 * past the last. */
	uintptr_t bias = __atomic_load_n(&rh_own.classes_bias, __ATOMIC_RELAXED);
	unsigned c = (unsigned)*(const uint8_t *)(bias + ((uintptr_t)bh >> RH_CLASS_GRAIN)) - 1;
	if (likely(r == 1 && c < RH_NUM_CLASSES)) {
		/* max is 0 until the cache is bound to this heap, and again after
		 * the thread's exit. */
		struct tbin *b = &rh_tc.bins[c];
		if (likely(b->count < b->max)) {
			uint64_t size = (uint64_t)b->usable - bh->slack;
			uint32_t site = bh->site;
			bh->refcount = 0;
			count(-(int64_t)size, -1);
			*(void **)p = b->head;
			b->head = p;
			b->count++;
			/* Last, so the common free makes no call before it is done. */
			if (site && likely(rh_tc.heap))
				journal_count(rh_tc.heap->hdr, site, (unsigned)rh_tc.slot, (int64_t)(size), -1);
			return;
		}
	}
	free_slow(rh_heap, bh, r);
}

#pragma GCC visibility pop

#endif
