/* SPDX-License-Identifier: MIT */
/*
 * The allocator: size classes served from per-thread caches, refilled from
 * SMALL spans of the thread's pool; LARGE spans of whole pages for the rest.
 * Frees of ordinary blocks are constant time and touch only the thread's
 * cache. Blocks carry a reference count; the last holder frees, and a holder
 * in another process hands the block back through a lock-free list.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "heap.h"
#include "alloc.h"

const uint32_t rh_class_size[RH_NUM_CLASSES] = { RH_SIZE_CLASSES };

/* The class of a slot of `need` bytes: 16-byte steps up to 256, then four
 * per doubling. A constant expression, for the table below. */
#define CLASS_E(need) (63 - __builtin_clzl((need) - 1))
#define CLASS_OF_NEED(need) ((need) <= 32 ? 0 : (need) <= 256 ? ((need) + 15) / 16 - 2 : \
	15 + (CLASS_E(need) - 8) * 4 + \
	(((need) - (1ul << CLASS_E(need)) + (1ul << CLASS_E(need) >> 2) - 1) >> (CLASS_E(need) - 2)) - 1)
/* Step i holds the requests of i * 16 - 15 to i * 16 bytes (0 in step 0). */
#define CLASS_STEP(i) CLASS_OF_NEED((i) * 16ul + HDR)
#define STEPS4(i) CLASS_STEP(i), CLASS_STEP((i) + 1), CLASS_STEP((i) + 2), CLASS_STEP((i) + 3)
#define STEPS16(i) STEPS4(i), STEPS4((i) + 4), STEPS4((i) + 8), STEPS4((i) + 12)
#define STEPS64(i) STEPS16(i), STEPS16((i) + 16), STEPS16((i) + 32), STEPS16((i) + 48)
#define STEPS256(i) STEPS64(i), STEPS64((i) + 64), STEPS64((i) + 128), STEPS64((i) + 192)
#define STEPS1024(i) STEPS256(i), STEPS256((i) + 256), STEPS256((i) + 512), STEPS256((i) + 768)
const uint8_t rh_class_of[(SMALL_MAX_REQUEST + 15) / 16 + 1] = { STEPS1024(0), STEPS1024(1024) };
_Static_assert((SMALL_MAX_REQUEST + 15) / 16 + 1 == 2048, "class steps");
_Static_assert(CLASS_STEP(2047) == RH_NUM_CLASSES - 1, "class steps");
/* Free committed pages a pool keeps for reuse before it punches holes. */
#define RETAIN_BYTES (32u << 20)

struct span_ref {
	struct superblock *sb;
	uint32_t idx;
};

struct pool {
	pthread_mutex_t lock;
	struct span_ref cur[RH_NUM_CLASSES];   /* span each class refills from */
	struct superblock *first;              /* chain through pool_next */
	size_t retained;                       /* free committed bytes kept */
	bool punch_next;                       /* span_free: punch, whatever the budget */
	uint64_t purged_ns;                    /* last time retained pages were punched */
	size_t bytes;                          /* in its superblocks */
	size_t private_bytes;                  /* in those made for private spans */
	uint8_t empty[RH_NUM_CLASSES];         /* SMALL spans left empty on partial lists */
	unsigned nempty;                       /* their sum */
	bool freeing_empty;                    /* in pool_free_empty */
	bool used;
};

/* Empty SMALL spans a pool keeps per class, their slots set up, for the
 * class's next refills (a batch of blocks freed whole and made again): a
 * span made anew sets up each slot's header again. They go with the pool's
 * retained pages (pool_decay, alloc_trim). */
#define EMPTY_KEEP 4

static struct pool pools[RH_MAX_POOLS];
static unsigned npools;
static _Atomic unsigned thread_seq;
static _Atomic uint64_t counter_slots = 1; /* bit i: slot i taken; 0 is shared */

__thread struct tcache rh_tc;
static pthread_key_t tc_key;

unsigned alloc_npools(void)
{
	if (!npools) {
		const struct options *o = options_get();
		if (o->policy == POLICY_CPU) {
			long n = sysconf(_SC_NPROCESSORS_CONF);
			unsigned cpus = n > 0 ? (unsigned)n : 1;
			npools = (cpus + o->cpus_per_pool - 1) / o->cpus_per_pool;
		} else {
			npools = o->thread_pools;
		}
		if (npools < 1)
			npools = 1;
		if (npools > RH_MAX_POOLS)
			npools = RH_MAX_POOLS;
	}
	return npools;
}

/* The superblock named by a block header's sb_page field (its low bits). */
static inline struct superblock *sb_at(const struct heap *h, uint32_t sb_page)
{
	return (struct superblock *)(h->base + ((uint64_t)(sb_page & RH_SB_PAGE_MASK) << h->page_shift));
}

static inline char *span_start(const struct heap *h, const struct superblock *sb, uint32_t idx)
{
	return (char *)sb + ((uint64_t)idx << h->page_shift);
}

static inline struct superblock *sb_next(const struct heap *h, const struct superblock *sb)
{
	return sb->pool_next ? (struct superblock *)(h->base + sb->pool_next) : NULL;
}

/* --- Counters ------------------------------------------------------------ */

/* --- Thread caches -------------------------------------------------------- */

static void tcache_flush_all(void);

/* Thread exit (a pthread key destructor). The C library may still free and
 * allocate after it (__libc_thread_freeres), so the cache stays bound but
 * holds nothing from now on, and counts in the shared slot 0. */
static void tcache_exit(void *arg)
{
	(void)arg;
	if (!rh_tc.heap)
		return;
	tcache_flush_all();
	if (rh_tc.slot)
		atomic_fetch_and(&counter_slots, ~(1ULL << rh_tc.slot));
	rh_tc.slot = 0;
	rh_tc.counter = &rh_tc.heap->hdr->counters[0];
	for (unsigned c = 0; c < RH_NUM_CLASSES; c++)
		rh_tc.bins[c].max = 0, rh_tc.bins[c].fill = 1;
	rh_tc.large_bytes = LCACHE_BYTES;  /* the LARGE cache takes nothing more */
	rh_tc.exited = true;
	journal_thread_exit();
}

/* Binds this thread's cache to the process's heap (made if needed). */
static bool tcache_init(void)
{
	struct heap *h = rh_heap ? rh_heap : heap_get_slow();
	if (!h)
		return false;
	if (rh_tc.heap == h)
		return true;
	if (rh_tc.heap && !rh_tc.exited)
		tcache_exit(NULL);
	rh_tc.exited = false;
	unsigned n = alloc_npools();
	unsigned seq = atomic_fetch_add(&thread_seq, 1);
	rh_tc.pool = &pools[seq % n];
	uint64_t bits = atomic_load(&counter_slots);
	rh_tc.slot = 0;
	while (~bits) {
		int i = __builtin_ctzll(~bits);
		if (atomic_compare_exchange_weak(&counter_slots, &bits, bits | (1ULL << i))) {
			rh_tc.slot = i;
			break;
		}
	}
	rh_tc.counter = &h->hdr->counters[rh_tc.slot];
	journal_forget_last();  /* a new counter slot */
	rh_tc.nlarge = 0;
	rh_tc.large_bytes = 0;
	/* A bin holds up to 64 KiB of blocks, at least 8 and at most 512:
	 * a program that allocates a batch of blocks and frees them all, in
	 * turn, finds them in the cache up to that many. */
	for (unsigned c = 0; c < RH_NUM_CLASSES; c++) {
		uint32_t m = (64u << 10) / rh_class_size[c];
		m = m < 8 ? 8 : m > 512 ? 512 : m;
		uint32_t f = ((uint32_t)1 << h->page_shift) / rh_class_size[c];
		/* Empty already, but for a block an interrupted free put here
		 * after a fork in a signal handler cleared the cache. */
		rh_tc.bins[c].head = NULL;
		rh_tc.bins[c].count = 0;
		rh_tc.bins[c].stream_next = 0;
		rh_tc.bins[c].streamed = 0;
		rh_tc.bins[c].max = (uint16_t)m;
		rh_tc.bins[c].usable = (uint16_t)(rh_class_size[c] - HDR);
		rh_tc.bins[c].fill = (uint16_t)(f < 1 ? 1 : f > m / 2 + 1 ? m / 2 + 1 : f);
	}
	pthread_setspecific(tc_key, &rh_tc);
	rh_tc.heap = h;
	return true;
}

/* --- Spans ----------------------------------------------------------------- */

static inline unsigned bin_of(uint32_t pages)
{
	if (pages <= 16)
		return pages - 1;
	unsigned b = 16 + (31u - (unsigned)__builtin_clz(pages)) - 4;
	return b > 31 ? 31 : b;
}

static void desc_set(struct superblock *sb, uint32_t idx, uint32_t pages, uint8_t kind, uint16_t flags)
{
	struct page_desc *d = &sb->pages[idx];
	d->span_pages = pages;
	d->kind = kind;
	d->flags = flags;
	struct page_desc *t = &sb->pages[idx + pages - 1];
	t->span_pages = pages;
	t->kind = kind;
	t->flags = flags;
}

static void list_push(struct superblock *sb, uint32_t *head, uint32_t idx)
{
	struct page_desc *d = &sb->pages[idx];
	d->prev = 0;
	d->next = *head;
	if (*head)
		sb->pages[*head].prev = idx;
	*head = idx;
}

static void list_remove(struct superblock *sb, uint32_t *head, uint32_t idx)
{
	struct page_desc *d = &sb->pages[idx];
	if (d->prev)
		sb->pages[d->prev].next = d->next;
	else
		*head = d->next;
	if (d->next)
		sb->pages[d->next].prev = d->prev;
	d->next = d->prev = 0;
}

static void bin_insert(struct superblock *sb, uint32_t idx, uint32_t pages)
{
	unsigned b = bin_of(pages);
	list_push(sb, &sb->free_bins[b], idx);
	sb->bin_mask |= 1u << b;
}

static void bin_remove(struct superblock *sb, uint32_t idx)
{
	unsigned b = bin_of(sb->pages[idx].span_pages);
	list_remove(sb, &sb->free_bins[b], idx);
	if (!sb->free_bins[b])
		sb->bin_mask &= ~(1u << b);
}

/* The superblock's commit bitmap, after its page descriptors: bit i set when
 * page i holds memory (reserved with fallocate, not punched since). */
static inline uint64_t *commit_bits(struct superblock *sb)
{
	return (uint64_t *)&sb->pages[sb->npages];
}

static inline bool bit_get(const uint64_t *bits, uint32_t i)
{
	return bits[i >> 6] >> (i & 63) & 1;
}

/* The first index in [i, end) whose bit is not `set`, or end: a word at a
 * time. */
static uint32_t bits_run_end(const uint64_t *bits, uint32_t i, uint32_t end, bool set)
{
	while (i < end) {
		uint64_t x = set ? ~bits[i >> 6] : bits[i >> 6];
		x &= ~0ULL << (i & 63);
		if (x) {
			uint32_t r = (i & ~63u) + (uint32_t)__builtin_ctzll(x);
			return r < end ? r : end;
		}
		i = (i & ~63u) + 64;
	}
	return end;
}

/* Bits set in [from, to). */
static uint32_t bits_count(const uint64_t *bits, uint32_t from, uint32_t to)
{
	uint32_t n = 0;
	while (from < to) {
		uint32_t w = from >> 6, lo = from & 63, hi = to - (from & ~63u) < 64 ? to & 63 : 64;
		uint64_t x = bits[w] >> lo;
		if (hi < 64)
			x &= (1ULL << (hi - lo)) - 1;
		n += (uint32_t)__builtin_popcountll(x);
		from = (from & ~63u) + hi;
	}
	return n;
}

/* Sets (or clears) bits [from, to). */
static void bits_set(uint64_t *bits, uint32_t from, uint32_t to, bool on)
{
	for (uint32_t i = from; i < to;) {
		if ((i & 63) == 0 && to - i >= 64) {
			bits[i >> 6] = on ? ~0ULL : 0;
			i += 64;
			continue;
		}
		if (on)
			bits[i >> 6] |= 1ULL << (i & 63);
		else
			bits[i >> 6] &= ~(1ULL << (i & 63));
		i++;
	}
}

/* The header page holding page i's descriptor. A superblock's header is
 * committed page by page as descriptors are first written in it (a huge
 * block's superblock would otherwise reserve 32 bytes of descriptors per
 * page: 5 MB for GNU sort's 664 MB buffer, 1.3 ms of fallocate), so a
 * descriptor is written or read only where its page's commit bit is set:
 * those of span heads and tails always are (see desc_commit's callers).
 * Header pages are never punched. */
static inline uint32_t desc_page(const struct heap *h, uint32_t i)
{
	return (uint32_t)((offsetof(struct superblock, pages) + (uint64_t)i * sizeof(struct page_desc)) >>
			  h->page_shift);
}

static int span_commit(struct heap *h, struct superblock *sb, uint32_t from, uint32_t to);

/* Commits the header page of page i's descriptor. 0 or an errno. */
static inline int desc_commit(struct heap *h, struct superblock *sb, uint32_t i)
{
	uint32_t pg = desc_page(h, i);
	return bit_get(commit_bits(sb), pg) ? 0 : span_commit(h, sb, pg, pg + 1);
}

/* Pages a pool keeps committed in free spans before it punches holes: 32
 * MiB, or half of its superblocks when that is more. */
static inline size_t retain_budget(const struct pool *pl)
{
	size_t half = pl->bytes / 2;
	return half > RETAIN_BYTES ? half : RETAIN_BYTES;
}

/* Punches the committed pages of [idx, idx+pages) out of the file; the
 * bytes punched. */
static size_t span_punch(struct heap *h, struct superblock *sb, uint32_t idx, uint32_t pages)
{
	size_t punched = 0;
	uint64_t *bits = commit_bits(sb);
	uint32_t end = idx + pages;
	int fd = heap_fd(h);
	if (fd < 0)
		return 0;
	for (uint32_t i = bits_run_end(bits, idx, end, false); i < end; i = bits_run_end(bits, i, end, false)) {
		uint32_t j = bits_run_end(bits, i, end, true);
		size_t bytes = (size_t)(j - i) << h->page_shift;
		if (os_decommit(fd, sb->offset + ((uint64_t)i << h->page_shift), bytes) == 0) {
			bits_set(bits, i, j, false);
			stat_add(bytes_punched, bytes);
			punched += bytes;
		}
		i = j;
	}
	return punched;
}

/* Free pages kept for reuse go back to the file once they have been free
 * for a second (checked on the pool's slow paths at most four times a
 * second; rh_shm_trim returns them at once), or, oldest first, when the
 * pool keeps more than its budget. */
#define PURGE_AGE_MS 1000u
#define PURGE_EVERY_NS 250000000ull

/* Coarse monotonic milliseconds, for the age of free spans (wraps). */
static uint32_t now_ms(void)
{
	return (uint32_t)(os_now_ns(CLOCK_MONOTONIC_COARSE) / 1000000u);
}

/* Punches the committed pages of the pool's free spans (locked) that have
 * been free for at least age_ms, until at most `keep` bytes are kept. */
static void pool_purge_older(struct heap *h, struct pool *pl, uint32_t age_ms, size_t keep)
{
	uint32_t now = now_ms();
	for (struct superblock *sb = pl->first; sb; sb = sb_next(h, sb))
		for (unsigned b = 0; b < 32; b++)
			for (uint32_t idx = sb->free_bins[b]; idx; idx = sb->pages[idx].next) {
				if (pl->retained <= keep && keep)
					return;
				if (now - sb->pages[idx].freed_ms < age_ms)
					continue;
				size_t n = span_punch(h, sb, idx, sb->pages[idx].span_pages);
				pl->retained -= pl->retained < n ? pl->retained : n;
			}
}

static void pool_free_empty(struct heap *h, struct pool *pl);

/* Every free committed page of the pool goes back to the file. */
static void pool_purge(struct heap *h, struct pool *pl)
{
	pool_free_empty(h, pl);
	pool_purge_older(h, pl, 0, 0);
	pl->retained = 0;
}

static void pool_decay(struct heap *h, struct pool *pl)
{
	if (!pl->retained && !pl->nempty)
		return;
	uint64_t now = os_now_ns(CLOCK_MONOTONIC_COARSE);
	if (now - pl->purged_ns < PURGE_EVERY_NS)
		return;
	pl->purged_ns = now;  /* first: span_free comes back here */
	pool_free_empty(h, pl);
	pool_purge_older(h, pl, PURGE_AGE_MS, 0);
	/* Pools whose threads are gone or idle age too. */
	for (unsigned i = 0; i < npools; i++) {
		struct pool *o = &pools[i];
		if (o == pl || pthread_mutex_trylock(&o->lock))
			continue;
		if (o->used && (o->retained || o->nempty) && now - o->purged_ns >= PURGE_EVERY_NS) {
			o->purged_ns = now;
			pool_free_empty(h, o);
			pool_purge_older(h, o, PURGE_AGE_MS, 0);
		}
		pthread_mutex_unlock(&o->lock);
	}
}

/* Marks the pages of a span in the heap's page classes: 1 + its size class
 * for a SMALL span, 0 once it is freed. */
static inline void page_classes_set(struct heap *h, const struct superblock *sb, uint32_t idx, uint32_t pages,
	uint8_t v)
{
	heap_classes_set(h, sb->offset + ((uint64_t)idx << h->page_shift), (uint64_t)pages << h->page_shift, v);
}

/* Returns a span's pages to its superblock's free bins, merging neighbours;
 * the merged span counts as freed now. The pages stay committed for reuse
 * (see above) unless punch_next is set; punched pages are free for every
 * process (df shows it). */
static void span_free(struct heap *h, struct pool *pl, struct superblock *sb, uint32_t idx, uint32_t pages)
{
	/* What the span keeps: its committed pages (a private span's first). */
	size_t bytes = (size_t)bits_count(commit_bits(sb), idx, idx + pages) << h->page_shift;
	if (sb->pages[idx].kind == RH_PAGE_SMALL)
		page_classes_set(h, sb, idx, pages, 0);
	if (pl->punch_next) {
		span_punch(h, sb, idx, pages);
	} else {
		/* Past the budget, the oldest pages kept go back to the file
		 * until half the budget is left; the span freed now stays. */
		size_t budget = retain_budget(pl);
		if (pl->retained + bytes > budget) {
			size_t keep = budget / 2 > bytes ? budget / 2 - bytes : 1;
			static const uint32_t ages[] = { PURGE_AGE_MS, 100, 10, 0 };
			for (unsigned i = 0; i < 4 && pl->retained > keep; i++)
				pool_purge_older(h, pl, ages[i], keep);
		}
		pl->retained += bytes;
	}
	sb->free_pages += pages;
	uint32_t next = idx + pages;
	if (next < sb->npages && sb->pages[next].kind == RH_PAGE_FREE) {
		uint32_t np = sb->pages[next].span_pages;
		bin_remove(sb, next);
		pages += np;
	}
	if (idx > 0 && sb->pages[idx - 1].kind == RH_PAGE_FREE) {
		uint32_t pp = sb->pages[idx - 1].span_pages;
		uint32_t start = idx - pp;
		bin_remove(sb, start);
		idx = start;
		pages += pp;
	}
	desc_set(sb, idx, pages, RH_PAGE_FREE, 0);
	sb->pages[idx].freed_ms = now_ms();
	bin_insert(sb, idx, pages);
	if (!pl->punch_next)
		pool_decay(h, pl);
}

#define FILL_MIN_PAGES 4u
#define FILL_MAX (8u << 20)

/* Commits the pages of [from, to) that hold no memory. 0 or an errno
 * (ENOMEM when the filesystem is full). On tmpfs, runs of FILL_MIN_PAGES
 * pages to FILL_MAX bytes are written and mapped at once (os_commit_fill),
 * which costs less than reserving them when the program uses them soon, as
 * it does a small span's pages and most buffers. Shorter runs are reserved:
 * for one to three pages the write's fixed cost (two more system calls)
 * outweighs what it saves (a page: 2.7 us reserved and touched, 4.2 us
 * written; four pages: the same). Longer runs are reserved too, so a huge
 * block the program barely touches costs no more than its reservation. */
static int span_commit(struct heap *h, struct superblock *sb, uint32_t from, uint32_t to)
{
	uint64_t *bits = commit_bits(sb);
	int fd = -1;
	for (uint32_t i = bits_run_end(bits, from, to, true); i < to; i = bits_run_end(bits, i, to, true)) {
		uint32_t j = bits_run_end(bits, i, to, false);
		if (fd < 0)
			fd = heap_fd(h);
		uint64_t off = sb->offset + ((uint64_t)i << h->page_shift);
		size_t len = (size_t)(j - i) << h->page_shift;
		int err = ENOMEM;
		if (fd >= 0 && h->writes_new_pages && len >> h->page_shift >= FILL_MIN_PAGES && len <= FILL_MAX)
			err = os_commit_fill(fd, off, len, h->base + off);
		else if (fd >= 0)
			err = os_commit(fd, off, len);
		if (err)
			return err == ENOSPC ? ENOMEM : err;
		bits_set(bits, i, j, true);
		i = j;
	}
	return 0;
}

/* Takes `pages` from the free span at idx (removed from its bin), returning
 * the rest to the bins; commits the first `commit` pages taken that hold no
 * memory. The others are punched (a private span's, hidden while it lives)
 * or, `lazy`, left as they are, for span_commit when they are reached (a
 * small span's). 0 or an errno (ENOMEM when the filesystem is full). */
static int span_take(struct heap *h, struct pool *pl, struct superblock *sb, uint32_t idx, uint32_t pages,
		     uint32_t commit, bool lazy)
{
	uint32_t have = sb->pages[idx].span_pages;
	uint32_t end = idx + (commit < pages ? commit : pages);
	uint32_t reused = bits_count(commit_bits(sb), idx, end);
	/* The descriptors the split writes: the span's new tail, the rest's
	 * head. */
	int err = desc_commit(h, sb, idx + pages - 1);
	if (!err && have > pages)
		err = desc_commit(h, sb, idx + pages);
	if (!err)
		err = span_commit(h, sb, idx, end);
	if (err) {
		bin_insert(sb, idx, have);
		return err;
	}
	size_t kept = (size_t)reused << h->page_shift;
	if (commit < pages && lazy)
		kept += (size_t)bits_count(commit_bits(sb), end, idx + pages) << h->page_shift;
	else if (commit < pages)
		kept += span_punch(h, sb, end, pages - commit);
	pl->retained -= pl->retained < kept ? pl->retained : kept;
	if (have > pages) {
		desc_set(sb, idx + pages, have - pages, RH_PAGE_FREE, 0);
		sb->pages[idx + pages].freed_ms = sb->pages[idx].freed_ms;
		bin_insert(sb, idx + pages, have - pages);
	}
	sb->free_pages -= pages;
	return 0;
}

/* A free span of at least `pages`. Spans start below page 65536 because
 * block headers hold span indexes in 16 bits: the far end of a superblock
 * made for one huge block is only ever used as part of a span that starts
 * below that. */
static bool sb_find(struct superblock *sb, uint32_t pages, uint32_t *idx)
{
	if (sb->free_pages < pages)
		return false;
	/* Best fit in the first bin that has a fit (among its first 16 spans,
	 * or the first fit after them): small holes fill up and large spans
	 * stay whole. */
	for (unsigned b = bin_of(pages); b < 32; b++) {
		if (!(sb->bin_mask >> b))
			return false;
		uint32_t best = 0, looked = 0;
		for (uint32_t i = sb->free_bins[b]; i; i = sb->pages[i].next, looked++) {
			uint32_t n = sb->pages[i].span_pages;
			if (n >= pages && i <= UINT16_MAX &&
			    (!best || n < sb->pages[best].span_pages ||
			     (n == sb->pages[best].span_pages && i < best))) {
				best = i;
				if (n == pages)
					break;
			}
			if (best && looked >= 16)
				break;  /* past 16 spans, the first fit will do */
		}
		if (best) {
			*idx = best;
			return true;
		}
	}
	return false;
}

static uint32_t header_pages(const struct heap *h, uint64_t total_pages)
{
	uint64_t bytes = offsetof(struct superblock, pages) + total_pages * sizeof(struct page_desc) +
		(total_pages + 63) / 64 * sizeof(uint64_t);
	return (uint32_t)((bytes + ((uint64_t)1 << h->page_shift) - 1) >> h->page_shift);
}

/* A new DATA superblock for the pool, big enough for a span of `pages`. */
static struct superblock *sb_new(struct heap *h, struct pool *pl, uint32_t pages, bool counted)
{
	/* Superblocks grow with the pool (doubling it, up to 64 MiB): big
	 * blocks then share superblocks, and their free pages merge, instead of
	 * each standing alone in a superblock of its own size. */
	uint64_t base = rh_options.superblock_size >> h->page_shift;
	uint64_t grown = pl->bytes >> h->page_shift, cap = (64u << 20) >> h->page_shift;
	if (grown > cap)
		grown = cap;
	struct superblock *sb = NULL;
	uint64_t total, tried = 0;
	uint32_t hp, lo = 0, hi = 0;
	int saved = errno;
	/* When the grown size does not fit (the end of the reservation, a
	 * nearly full folder), the least that holds the span. */
	for (int least = 0; least < 2 && !sb; least++) {
		total = base;
		if (!least && grown > total)
			total = grown / total * total;
		hp = header_pages(h, total);
		if (pages + hp > total) {
			total = pages + 1;
			while ((hp = header_pages(h, total)) + pages > total)
				total = pages + hp;
		}
		if (total > UINT32_MAX || (total > 65535 && pages + hp < total)) {
			errno = ENOMEM;
			return NULL;
		}
		if (least && total >= tried)
			break;
		tried = total;
		/* Committed: the page of the first free span's head and those
		 * before it, the page of its tail and those after it (the
		 * commit bitmap); the rest as descriptors are written there. */
		lo = desc_page(h, hp) + 1;
		hi = desc_page(h, (uint32_t)total - 1);
		if (hi < lo)
			hi = lo;
		sb = heap_grow(h, total << h->page_shift, hp << h->page_shift, lo << h->page_shift, hi << h->page_shift,
			       RH_SB_DATA, (unsigned)(pl - pools));
	}
	if (!sb)
		return NULL;
	errno = saved;
	desc_set(sb, 0, hp, RH_PAGE_HEADER, 0);
	bits_set(commit_bits(sb), 0, lo < hp ? lo : hp, true);
	if (hi < hp)
		bits_set(commit_bits(sb), hi, hp, true);
	if (counted)
		pl->bytes += sb->size;
	else
		pl->private_bytes += sb->size;
	desc_set(sb, hp, (uint32_t)total - hp, RH_PAGE_FREE, 0);
	sb->pages[hp].freed_ms = now_ms();
	bin_insert(sb, hp, (uint32_t)total - hp);
	sb->free_pages = (uint32_t)total - hp;
	sb->pool_next = pl->first ? pl->first->offset : 0;
	pl->first = sb;
	pl->used = true;
	return sb;
}

/* A free span whose pages hold memory (kept for reuse), for span_alloc: the
 * one holding the most so far, the tightest on a tie. */
struct kept_fit {
	struct superblock *sb;
	uint32_t idx, held;
};

static inline void kept_offer(struct kept_fit *f, struct superblock *s, uint32_t i, uint32_t held)
{
	if (held > f->held || (held == f->held && s->pages[i].span_pages <= f->sb->pages[f->idx].span_pages))
		*f = (struct kept_fit){ s, i, held };
}

/* span_alloc's ways: grow the heap when nothing fits; a private span may
 * take a fit holding kept pages whatever the pool has grown (another pool's,
 * which this one's growth would not spare). */
#define SPAN_GROW 1u
#define SPAN_KEPT_OK 2u

/* Finds and takes `pages` in the pool, growing the heap when needed. */
static int span_alloc(struct heap *h, struct pool *pl, uint32_t pages, uint32_t commit, bool lazy,
		      struct span_ref *out, unsigned how)
{
	bool grow = how & SPAN_GROW;
	/* The tightest fit over the pool's superblocks, the oldest on a tie.
	 * A private span (which punches the pages it does not commit) takes
	 * one whose pages hold no memory past its first where there is one:
	 * taking the pages a buffer just freed, it made the next buffer in the
	 * file make them all again (buffers of 8 to 24 MiB, cycled beside 64
	 * MiB of small blocks: 2.6 times glibc's time). Where every fit holds
	 * some, it takes new address space, up to PRIVATE_GROWTH_MAX for the
	 * pool's life or while the heap can grow, then the tightest all the
	 * same (growing without a bound made the file's size grow without one
	 * for some patterns, and fail under an address space limit). */
	uint32_t idx = 0, i;
	bool priv = commit < pages && !lazy;
	struct superblock *sb = NULL;
	struct kept_fit dirty = { NULL, 0, 0 };  /* the tightest holding memory */
	for (struct superblock *s = pl->first; s; s = sb_next(h, s)) {
		if (!sb_find(s, pages, &i))
			continue;
		if (priv && bits_run_end(commit_bits(s), i + commit, i + pages, false) != i + pages) {
			kept_offer(&dirty, s, i, 1);
			continue;
		}
		if (!sb || s->pages[i].span_pages <= sb->pages[idx].span_pages) {
			sb = s;
			idx = i;
			if (sb->pages[idx].span_pages == pages)
				break;
		}
	}
	if (!sb && dirty.sb &&
	    ((how & SPAN_KEPT_OK) || pl->private_bytes + ((size_t)pages << h->page_shift) > PRIVATE_GROWTH_MAX)) {
		sb = dirty.sb;
		idx = dirty.idx;
	}
	/* But where none of the pages it would commit hold memory, the fit
	 * whose pages hold the most (freed pages kept for reuse), the tightest
	 * on a tie. Tightest alone, a program that allocates and frees buffers
	 * of varying sizes took the punched span that fit best, and punched
	 * the one it had just freed: every page made again each time (19
	 * times glibc's time for 12 to 24 MiB buffers). While the pool holds
	 * more than twice the request in blocks, only fits holding no more
	 * than twice the request in all are taken: a span holding much more is
	 * left for the large block that will want it again, rather than cut
	 * for one that may live long (the file grew by a third where 3 to 5
	 * MiB blocks piled up beside a 16 to 24 MiB buffer made and freed in
	 * turn). A private span keeps to the rule above. */
	uint32_t want = commit < pages ? commit : pages;
	if (sb && want && !priv && bits_run_end(commit_bits(sb), idx, idx + want, false) == idx + want) {
		struct kept_fit any = { NULL, 0, 0 }, near = { NULL, 0, 0 };
		uint64_t live = 0;
		for (struct superblock *s = pl->first; s; s = sb_next(h, s)) {
			live += s->npages - (s->header_size >> h->page_shift) - s->free_pages;
			if (!sb_find(s, pages, &i))
				continue;
			const uint64_t *b = commit_bits(s);
			uint32_t c = bits_count(b, i, i + want);
			if (!c)
				continue;
			kept_offer(&any, s, i, c);
			if (c + bits_count(b, i + want, i + s->pages[i].span_pages) <= 2 * (uint64_t)pages)
				kept_offer(&near, s, i, c);
		}
		const struct kept_fit *f = live > 2 * (uint64_t)pages ? &near : &any;
		if (f->sb) {
			sb = f->sb;
			idx = f->idx;
		}
	}
	if (!sb) {
		if (!grow)
			return ENOMEM;
		/* One made for a private span does not count towards the pool's
		 * size, which sets how much freed memory it keeps in the file. */
		int saved = errno;
		sb = sb_new(h, pl, pages, lazy || commit >= pages);
		if (sb && !sb_find(sb, pages, &idx))
			return ENOMEM;
		if (!sb && !dirty.sb)
			return errno ? errno : ENOMEM;
		if (!sb) {
			/* No room to grow (an address space limit): kept pages
			 * after all. */
			errno = saved;
			sb = dirty.sb;
			idx = dirty.idx;
		}
	}
	bin_remove(sb, idx);
	int err = span_take(h, pl, sb, idx, pages, commit, lazy);
	if (err)
		return err;
	out->sb = sb;
	out->idx = idx;
	return 0;
}

/* --- Small blocks ---------------------------------------------------------- */

static uint32_t small_span_pages(const struct heap *h, unsigned c)
{
	size_t bytes = (size_t)rh_class_size[c] * 8;
	if (bytes < (64u << 10))
		bytes = 64u << 10;
	return (uint32_t)((bytes + ((size_t)1 << h->page_shift) - 1) >> h->page_shift);
}

static inline uint32_t span_capacity(const struct heap *h, const struct page_desc *d)
{
	return (uint32_t)(((uint64_t)d->span_pages << h->page_shift) / rh_class_size[d->size_class]);
}

static inline bool is_current(const struct pool *pl, unsigned c, const struct superblock *sb, uint32_t idx)
{
	return pl->cur[c].sb == sb && pl->cur[c].idx == idx;
}

/* Gives n slots back to their span (pool locked): a chain linked as the
 * span's free list is, from head (a slot index + 1) to the slot at last. */
static void slots_release(struct heap *h, struct pool *pl, struct superblock *sb, uint32_t idx, uint32_t head,
			  char *last, uint32_t n)
{
	struct page_desc *d = &sb->pages[idx];
	unsigned c = d->size_class;
	*(uint32_t *)(last + HDR) = d->free_head;
	d->free_head = head;
	d->used -= n;
	if (is_current(pl, c, sb, idx))
		return;
	bool keep = d->used == 0 && pl->empty[c] < EMPTY_KEEP;
	if (keep) {
		pl->empty[c]++;
		pl->nempty++;
	}
	if (d->used == 0 && !keep) {
		if (d->flags & RH_PAGE_F_LISTED) {
			list_remove(sb, &sb->partial[c], idx);
			if (!sb->partial[c])
				sb->class_mask &= ~(1ULL << c);
		}
		span_free(h, pl, sb, idx, d->span_pages);
	} else if (!(d->flags & RH_PAGE_F_LISTED)) {
		d->flags |= RH_PAGE_F_LISTED;
		list_push(sb, &sb->partial[c], idx);
		sb->class_mask |= 1ULL << c;
	}
}

/* The index of a slot of class c in the span at idx, + 1: as the span's
 * free list links it. */
static inline uint32_t slot_link(const struct heap *h, const struct superblock *sb, uint32_t idx, const char *slot,
				 unsigned c)
{
	/* A span of small blocks is far under 4 GiB: a 32-bit division. */
	return (uint32_t)(slot - span_start(h, sb, idx)) / rh_class_size[c] + 1;
}

/* Gives a slot back to its span (pool locked). */
static void slot_release(struct heap *h, struct pool *pl, struct superblock *sb, uint32_t idx, char *slot)
{
	slots_release(h, pl, sb, idx, slot_link(h, sb, idx, slot, sb->pages[idx].size_class), slot, 1);
}

/* The pool's kept empty spans (locked) go back to its free pages. */
static void pool_free_empty(struct heap *h, struct pool *pl)
{
	/* Not again from span_free's decay (a trim's, or a decay's for
	 * another pool): the walk keeps the next span. */
	if (pl->freeing_empty)
		return;
	pl->freeing_empty = true;
	for (struct superblock *sb = pl->first; sb && pl->nempty; sb = sb_next(h, sb))
		for (uint64_t m = sb->class_mask; m; m &= m - 1) {
			unsigned c = (unsigned)__builtin_ctzll(m);
			for (uint32_t idx = sb->partial[c], next; idx; idx = next) {
				struct page_desc *d = &sb->pages[idx];
				next = d->next;
				if (d->used)
					continue;
				list_remove(sb, &sb->partial[c], idx);
				d->flags &= (uint16_t)~RH_PAGE_F_LISTED;
				pl->empty[c]--;
				pl->nempty--;
				span_free(h, pl, sb, idx, d->span_pages);
			}
			if (!sb->partial[c])
				sb->class_mask &= ~(1ULL << c);
		}
	pl->freeing_empty = false;
}

/* A span to refill class c from: a partial one, else a new one. */
static int small_span_next(struct heap *h, struct pool *pl, unsigned c)
{
	for (struct superblock *sb = pl->first; sb; sb = sb_next(h, sb)) {
		if (!(sb->class_mask & (1ULL << c)))
			continue;
		uint32_t idx = sb->partial[c];
		list_remove(sb, &sb->partial[c], idx);
		if (!sb->partial[c])
			sb->class_mask &= ~(1ULL << c);
		sb->pages[idx].flags &= (uint16_t)~RH_PAGE_F_LISTED;
		if (!sb->pages[idx].used) {
			pl->empty[c]--;
			pl->nempty--;
		}
		pl->cur[c].sb = sb;
		pl->cur[c].idx = idx;
		return 0;
	}
	struct span_ref r;
	uint32_t pages = small_span_pages(h, c);
	/* Pages are committed as slots reach them (refill): a class a
	 * program uses little takes one page of the file, not 64 KiB. */
	int err = span_alloc(h, pl, pages, 0, true, &r, SPAN_GROW);
	if (err)
		return err;
	struct page_desc *d = &r.sb->pages[r.idx];
	desc_set(r.sb, r.idx, pages, RH_PAGE_SMALL, 0);
	d->size_class = (uint8_t)c;
	d->bumped = d->used = d->free_head = 0;
	page_classes_set(h, r.sb, r.idx, pages, (uint8_t)(c + 1));
	pl->cur[c] = r;
	return 0;
}

static void drain_remote(struct heap *h, struct pool *pl);

/* Remote frees of other pools too, whose threads may be gone: taken when
 * their lock is free (trylock, so no lock order between pools arises). */
static void drain_others(struct heap *h, struct pool *mine)
{
	for (unsigned i = 0; i < npools; i++) {
		struct pool *pl = &pools[i];
		if (pl == mine || !__atomic_load_n(&h->hdr->pools[i].remote_free, __ATOMIC_RELAXED))
			continue;
		if (pthread_mutex_trylock(&pl->lock) == 0) {
			drain_remote(h, pl);
			pthread_mutex_unlock(&pl->lock);
		}
	}
}

/* Fills the thread's bin for class c and returns one block of it. */
static void *refill(unsigned c)
{
	if (!tcache_init())
		return NULL;
	struct heap *h = rh_tc.heap;
	struct pool *pl = rh_tc.pool;
	if (rh_options.policy == POLICY_CPU) {
		int cpu = sched_getcpu();
		pl = &pools[(unsigned)(cpu < 0 ? 0 : cpu) / rh_options.cpus_per_pool % npools];
	}
	struct tbin *b = &rh_tc.bins[c];
	/* A stream left (small_aligned looks at the list only): no refill. */
	if (b->stream_next) {
		b->streamed--;
		return stream_pop(b, c);
	}
	/* A class the thread uses little takes little of a span (whose pages
	 * are committed as slots reach them); one it uses more, more at once:
	 * up to half of what its bin holds (1 once the thread has exited). */
	uint32_t want = b->fill, got = 0;
	if (b->fill < b->max / 2 + 1)
		b->fill = (uint16_t)(b->fill * 2 < b->max / 2 + 1 ? b->fill * 2 : b->max / 2 + 1);
	void *first = NULL;
	const struct page_desc *cap_of = NULL;  /* the span whose capacity is cap */
	uint32_t cap = 0;
	rh_tc.refills++;
	heap_idle_sweep(false);
	if (!pl->cur[c].sb)
		heap_reclaim_dead_holders(false);
	pthread_mutex_lock(&pl->lock);
	drain_remote(h, pl);
	if (!pl->cur[c].sb) {
		drain_others(h, pl);
		pool_decay(h, pl);
	}
	while (got < want) {
		struct span_ref *cur = &pl->cur[c];
		if (!cur->sb) {
			if (small_span_next(h, pl, c))
				break;
			continue;
		}
		struct superblock *sb = cur->sb;
		struct page_desc *d = &sb->pages[cur->idx];
		char *span = span_start(h, sb, cur->idx);
		char *slot;
		/* Every slot bumped and not in use is on the free list. Taken
		 * whole when it holds what the refill still wants (a shorter
		 * list would leave the thread short, so that the blocks of a
		 * batch it allocates and frees go back and forth between the
		 * span and its cache), however long: the stream is not bounded
		 * by the bin (see struct tbin). Not past the thread's exit (max
		 * 0), whose cache nothing flushes again. */
		uint32_t nfree = d->bumped - d->used;
		if (d->free_head && nfree > 1 && nfree >= want - got && b->max) {
			/* The whole list, read as it is used. */
			b->stream = span;
			b->stream_next = d->free_head;
			b->streamed = nfree;
			d->free_head = 0;
			d->used += nfree;
			if (!first) {
				first = stream_pop(b, c);
				b->streamed--;
			}
			break;
		}
		if (d->free_head) {
			slot = span + (size_t)(d->free_head - 1) * rh_class_size[c];
			d->free_head = *(uint32_t *)(slot + HDR);
		} else if (d->bumped < (cap_of == d ? cap : (cap_of = d, cap = span_capacity(h, d)))) {
			size_t off = (size_t)d->bumped * rh_class_size[c], last = off + rh_class_size[c] - 1;
			slot = span + off;
			/* A slot reaching a page the one before it did not: its
			 * pages are committed, and as many again as the span has
			 * used, or those of all the slots this refill still takes
			 * when that is more (one system call for them). */
			if (!off || last >> h->page_shift != (off - 1) >> h->page_shift) {
				uint32_t pg = cur->idx + (uint32_t)(off >> h->page_shift);
				uint32_t pg_end = cur->idx + 1 + (uint32_t)(last >> h->page_shift);
				size_t taken_end = off + (size_t)(want - got) * rh_class_size[c];
				uint32_t pg_taken = cur->idx + (uint32_t)((taken_end + ((size_t)1 << h->page_shift) - 1) >>
									 h->page_shift);
				uint32_t upto = pg + (pg - cur->idx), span_end = cur->idx + d->span_pages;
				if (upto < pg_taken)
					upto = pg_taken;
				upto = upto < pg_end ? pg_end : upto > span_end ? span_end : upto;
				/* On a nearly full filesystem, at least the slot's own
				 * pages; failing those, what was taken is served. */
				if (bits_run_end(commit_bits(sb), pg, pg_end, true) < pg_end && span_commit(h, sb, pg, upto) &&
				    (upto == pg_end || span_commit(h, sb, pg, pg_end)))
					break;
			}
			struct block_header *bh = (struct block_header *)slot;
			bh->sb_page = (uint32_t)(sb->offset >> h->page_shift) | (uint32_t)c << RH_CLASS_SHIFT;
			bh->span_index = (uint16_t)cur->idx;
			bh->site = 0;
			bh->refcount = 0;
			/* Publish the slot's header before the reader may walk it. */
			__atomic_store_n(&d->bumped, d->bumped + 1, __ATOMIC_RELEASE);
		} else {
			cur->sb = NULL;  /* full: it is listed again when a slot comes back */
			continue;
		}
		struct block_header *bh = (struct block_header *)slot;
		if (bh->refcount == RH_REF_MARKER)
			bh->refcount = 0;
		d->used++;
		got++;
		void *p = slot + HDR;
		if (!first) {
			first = p;
		} else {
			*(void **)p = b->head;
			b->head = p;
			b->count++;
		}
	}
	pthread_mutex_unlock(&pl->lock);
	if (!first)
		errno = ENOMEM;
	return first;
}

/* Pushes a chain of free blocks (header offsets, each linked through its
 * first data word) onto a pool's remote-free list, for its owner to take. */
static void remote_push(struct heap *h, unsigned pool, uint64_t first, uint64_t last, uint64_t n)
{
	uint64_t *head = &h->hdr->pools[pool].remote_free;
	uint64_t *link = (uint64_t *)(h->base + last + HDR);
	uint64_t old = __atomic_load_n(head, __ATOMIC_RELAXED);
	do
		*link = old;
	while (!__atomic_compare_exchange_n(head, &old, first, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
	__atomic_fetch_add(&h->hdr->pools[pool].remote_count, n, __ATOMIC_RELAXED);
}

/* Returns all but `keep` blocks of the thread's bin (and, keeping none, its
 * stream): those of its own pool under the pool's lock, those of other pools
 * (freed here, made by another thread) onto their remote-free lists, without
 * taking their locks. */
static void tcache_flush(unsigned c, uint32_t keep)
{
	struct heap *h = rh_tc.heap;
	struct tbin *b = &rh_tc.bins[c];
	struct pool *mine = rh_tc.pool;
	bool locked = false;
	struct { uint64_t first, last, n; } chain[RH_MAX_POOLS];
	uint64_t pending = 0;  /* bit i: chain[i] holds blocks */
	/* Blocks of the own pool go back a span's run at a time. */
	struct { struct superblock *sb; uint32_t idx, head, n; char *last; } run = { NULL, 0, 0, 0, NULL };
	for (;;) {
		void *p = b->head;
		if (p && b->count > keep) {
			b->head = *(void **)p;
			b->count--;
		} else if (!keep && b->stream_next) {
			p = stream_pop(b, c);
			b->streamed--;
		} else {
			break;
		}
		struct block_header *bh = (struct block_header *)p - 1;
		struct superblock *sb = sb_at(h, bh->sb_page);
		unsigned i = sb->pool % RH_MAX_POOLS;
		if (&pools[i] == mine) {
			if (!locked) {
				rh_tc.flushes++;
				pthread_mutex_lock(&mine->lock);
				locked = true;
			}
			char *slot = (char *)bh;
			uint32_t idx = bh->span_index;
			if (run.n && (run.sb != sb || run.idx != idx)) {
				slots_release(h, mine, run.sb, run.idx, run.head, run.last, run.n);
				run.n = 0;
			}
			if (!run.n) {
				run.sb = sb;
				run.idx = idx;
				run.last = slot;
			} else {
				*(uint32_t *)(slot + HDR) = run.head;
			}
			run.head = slot_link(h, sb, idx, slot, c);
			run.n++;
			continue;
		}
		uint64_t off = (uint64_t)((char *)bh - h->base);
		if (pending >> i & 1) {
			*(uint64_t *)(h->base + chain[i].last + HDR) = off;
			chain[i].last = off;
			chain[i].n++;
		} else {
			chain[i].first = chain[i].last = off;
			chain[i].n = 1;
			pending |= 1ULL << i;
		}
	}
	if (run.n)
		slots_release(h, mine, run.sb, run.idx, run.head, run.last, run.n);
	if (locked)
		pthread_mutex_unlock(&mine->lock);
	while (pending) {
		unsigned i = (unsigned)__builtin_ctzll(pending);
		pending &= pending - 1;
		remote_push(h, i, chain[i].first, chain[i].last, chain[i].n);
	}
}

/* The thread's cached LARGE spans go back to their pools. */
static void lcache_flush(void)
{
	while (rh_tc.nlarge) {
		struct lentry *e = &rh_tc.large[--rh_tc.nlarge];
		struct pool *pl = &pools[e->sb->pool];
		pthread_mutex_lock(&pl->lock);
		span_free(rh_tc.heap, pl, e->sb, e->idx, e->pages);
		pthread_mutex_unlock(&pl->lock);
	}
	/* Past the thread's exit the cache stays closed (see tcache_exit). */
	rh_tc.large_bytes = rh_tc.exited ? LCACHE_BYTES : 0;
}

static void tcache_flush_all(void)
{
	for (unsigned c = 0; c < RH_NUM_CLASSES; c++)
		if (rh_tc.bins[c].count || rh_tc.bins[c].stream_next)
			tcache_flush(c, 0);
	lcache_flush();
}

/* --- Large blocks ---------------------------------------------------------- */

size_t alloc_private_min = SIZE_MAX;
bool alloc_private_adapts;

/* A private block of `size` bytes was freed, most of its pages used (see
 * alloc.h): the threshold rises to the smallest span that holds it. */
static void private_adapt(const struct heap *h, uint64_t size)
{
	size_t page = (size_t)1 << h->page_shift;
	size_t bytes = (size_t)(size + HDR + page - 1) & ~(page - 1);
	size_t now = __atomic_load_n(&alloc_private_min, __ATOMIC_RELAXED);
	while (size <= PRIVATE_ADAPT_MAX && bytes > now &&
	       !__atomic_compare_exchange_n(&alloc_private_min, &now, bytes, true, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED))
		;
}

/* A private span's pages after its first: their offset and length. */
static inline void private_range(const struct heap *h, const struct superblock *sb, uint32_t idx,
				 uint64_t *off, size_t *len)
{
	*off = sb->offset + ((uint64_t)(idx + 1) << h->page_shift);
	*len = (size_t)(sb->pages[idx].span_pages - 1) << h->page_shift;
}

/* A span just taken with RH_PAGE_F_PRIVATE gets its private pages, its
 * pool locked (a fork then never sees the flag without the mapping). False
 * when the mapping cannot be made: the span is given back if the file's
 * mapping is whole again, else kept out of use. */
static bool private_pages(struct heap *h, struct pool *pl, struct superblock *sb, uint32_t idx)
{
	uint64_t off;
	size_t len;
	private_range(h, sb, idx, &off, &len);
	if (os_map_anon(h->base + off, len) == 0)
		return true;
	int fd = -1;
	if (os_mapped(h->base + off, len) || ((fd = heap_fd(h)) >= 0 && os_map_shared(fd, off, len, h->base + off) == 0))
		span_free(h, pl, sb, idx, sb->pages[idx].span_pages);
	return false;
}

/* The file's pages take the place of a private span's again, before it is
 * freed (its pool locked); false when they cannot (the span is then never
 * reused, its private memory given back). */
static bool private_end(struct heap *h, struct superblock *sb, uint32_t idx)
{
	uint64_t off;
	size_t len;
	private_range(h, sb, idx, &off, &len);
	int fd = heap_fd(h);
	if (fd >= 0 && os_map_shared(fd, off, len, h->base + off) == 0)
		return true;
	os_map_anon(h->base + off, len);
	rh_warn("cannot map the heap file over a freed private block; its %zu bytes stay unused", len);
	return false;
}

/* A private span's pages move into the file, so that other processes can
 * attach the block (rh_shm_ref). Writes other threads make to the block
 * meanwhile may be lost. 0 or an errno. */
static int private_publish(struct heap *h, struct superblock *sb, uint32_t idx)
{
	struct pool *pl = &pools[sb->pool];
	uint64_t off;
	size_t len;
	int err = 0;
	pthread_mutex_lock(&pl->lock);
	struct page_desc *d = &sb->pages[idx];
	if (d->kind == RH_PAGE_LARGE && (d->flags & RH_PAGE_F_PRIVATE)) {
		private_range(h, sb, idx, &off, &len);
		uint32_t first = idx + 1, end = idx + d->span_pages;
		/* The file's range is made all zeros (a page left committed would
		 * show old bytes where the copy skips zeros), then reserved. */
		int fd = heap_fd(h);
		err = fd < 0 ? EBADF : os_decommit(fd, off, len);
		if (!err) {
			bits_set(commit_bits(sb), first, end, false);
			err = os_commit(fd, off, len);
		}
		if (!err && (err = os_map_into_file(fd, off, len, h->base + off)) != 0) {
			/* The private pages still there: the block stays as it
			 * was. Gone with a failed mapping (older kernels): the
			 * data is in the file, which must be mapped after all. */
			if (os_mapped(h->base + off, len))
				os_decommit(fd, off, len);
			else if (os_map_shared(fd, off, len, h->base + off) == 0)
				err = 0;
		}
		if (!err) {
			bits_set(commit_bits(sb), first, end, true);
			desc_set(sb, idx, d->span_pages, RH_PAGE_LARGE, 0);
		}
	}
	pthread_mutex_unlock(&pl->lock);
	return err ? ENOMEM : 0;
}

static void *large_alloc(size_t size, size_t align, uint32_t site, size_t room);

/* The same block with its pages in the file: private memory may be refused
 * where shared memory is not (no mapping left under vm.max_map_count, strict
 * overcommit). */
static void *large_shared(size_t size, size_t align, uint32_t site, size_t room)
{
	bool was = rh_tc.shared_only;
	rh_tc.shared_only = true;
	void *p = large_alloc(size, align, site, room);
	rh_tc.shared_only = was;
	return p;
}

/* A LARGE block of `size` bytes, its span `room` bytes longer (for realloc
 * growth). */
static void *large_alloc(size_t size, size_t align, uint32_t site, size_t room)
{
	if (!tcache_init())
		return NULL;
	struct heap *h = rh_tc.heap;
	size_t page = (size_t)1 << h->page_shift;
	size_t lead = align <= HDR ? HDR : align > page ? align + HDR : align;
	if (size > ((size_t)1 << 46) || align > ((size_t)1 << 30)) {
		errno = ENOMEM;
		return NULL;
	}
	if (room > size || align > HDR)
		room = 0;
	/* A block of 0 bytes takes 1: its data must lie inside its span (at
	 * a page's start, it would be the next page's first byte). */
	size_t body = size ? size : 1;
	uint64_t pages64 = (body + room + lead + page - 1) >> h->page_shift;
	if (pages64 > UINT32_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	struct pool *pl = rh_tc.pool;
	struct span_ref r = { NULL, 0 };
	/* Private pages: only the first page, which holds the header, is
	 * taken from the file (alignments above a page are carved out of a
	 * larger span, below). */
	bool priv = size >= __atomic_load_n(&alloc_private_min, __ATOMIC_RELAXED) && align <= page && !rh_tc.shared_only && pages64 > 1;
	uint32_t commit = priv ? 1 : UINT32_MAX;
	uint16_t flags = priv ? RH_PAGE_F_PRIVATE : 0;
	for (unsigned i = 0; i < rh_tc.nlarge && !priv; i++) {
		struct lentry *e = &rh_tc.large[i];
		if (e->pages >= pages64 && e->pages - pages64 <= pages64 / 8) {
			r.sb = e->sb;
			r.idx = e->idx;
			pages64 = e->pages;
			rh_tc.large_bytes -= (size_t)e->pages << h->page_shift;
			*e = rh_tc.large[--rh_tc.nlarge];
			break;
		}
	}
	if (!r.sb) {
		/* A miss: the cached spans go back first, so they merge with
		 * their neighbours instead of fragmenting the pool. */
		lcache_flush();
		pthread_mutex_lock(&pl->lock);
		drain_remote(h, pl);
		drain_others(h, pl);
		int err = span_alloc(h, pl, (uint32_t)pages64, commit, false, &r, 0);
		if (err) {
			/* Free pages of another pool (its threads may be gone) before
			 * growing the file. A LARGE span stays its superblock's pool's. */
			pthread_mutex_unlock(&pl->lock);
			for (unsigned i = 0; i < npools && err; i++) {
				struct pool *other = &pools[i];
				if (other == pl || !other->used || pthread_mutex_trylock(&other->lock))
					continue;
				if ((err = span_alloc(h, other, (uint32_t)pages64, commit, false, &r, SPAN_KEPT_OK)) == 0) {
					desc_set(r.sb, r.idx, (uint32_t)pages64, RH_PAGE_LARGE, flags);
					if (priv && !private_pages(h, other, r.sb, r.idx)) {
						pthread_mutex_unlock(&other->lock);
						return large_shared(size, align, site, room);
					}
				}
				pthread_mutex_unlock(&other->lock);
			}
			if (!err)
				goto placed;
			/* Before the heap grows: what dead holders kept, which
			 * goes onto the pools' remote-free lists. */
			heap_reclaim_dead_holders(false);
			pthread_mutex_lock(&pl->lock);
			drain_remote(h, pl);
			drain_others(h, pl);
			err = span_alloc(h, pl, (uint32_t)pages64, commit, false, &r, SPAN_GROW);
		}
		if (err) {
			pthread_mutex_unlock(&pl->lock);
			errno = ENOMEM;
			return NULL;
		}
		desc_set(r.sb, r.idx, (uint32_t)pages64, RH_PAGE_LARGE, flags);
		if (priv && !private_pages(h, pl, r.sb, r.idx)) {
			pthread_mutex_unlock(&pl->lock);
			return large_shared(size, align, site, room);
		}
		pthread_mutex_unlock(&pl->lock);
	}
placed:;
	char *span = span_start(h, r.sb, r.idx);
	uint64_t data = HDR;
	if (align > HDR) {
		uintptr_t a = ((uintptr_t)span + HDR + align - 1) & ~(uintptr_t)(align - 1);
		data = a - (uintptr_t)span;
	}
	uint32_t before = (uint32_t)((data - HDR) >> h->page_shift);
	uint32_t need = (uint32_t)((data + body + page - 1) >> h->page_shift);
	if (align > page && (before || need < pages64)) {
		struct pool *owner = &pools[r.sb->pool];
		pthread_mutex_lock(&owner->lock);
		uint32_t after = (uint32_t)pages64 - need;
		/* The descriptors the cut writes; where they cannot be
		 * committed, the block keeps the whole span. */
		bool cut = true;
		if (before)
			cut = !desc_commit(h, r.sb, r.idx + before - 1) && !desc_commit(h, r.sb, r.idx + before);
		if (after && cut)
			cut = !desc_commit(h, r.sb, r.idx + need - 1) && !desc_commit(h, r.sb, r.idx + need);
		if (!cut) {
			pthread_mutex_unlock(&owner->lock);
			goto whole;
		}
		/* Alignment above a page: the whole pages before the header's
		 * page and after the block go back to the bins, punched, rather
		 * than stay committed with it. */
		desc_set(r.sb, r.idx + before, need - before, RH_PAGE_LARGE, 0);
		owner->punch_next = true;
		if (before)
			span_free(h, owner, r.sb, r.idx, before);
		if (after)
			span_free(h, owner, r.sb, r.idx + need, after);
		owner->punch_next = false;
		pthread_mutex_unlock(&owner->lock);
		r.idx += before;
		span += (size_t)before << h->page_shift;
		data -= (uint64_t)before << h->page_shift;
	}
whole:;
	struct page_desc *d = &r.sb->pages[r.idx];
	d->free_head = (uint32_t)data;
	d->bumped = (uint32_t)size;
	d->used = (uint32_t)((uint64_t)size >> 32);
	struct block_header *bh = (struct block_header *)(span + data) - 1;
	bh->sb_page = (uint32_t)(r.sb->offset >> h->page_shift) | RH_CLASS_LARGE << RH_CLASS_SHIFT;
	bh->span_index = (uint16_t)r.idx;
	bh->slack = 0;
	bh->site = site;
	__atomic_store_n(&bh->refcount, 1, __ATOMIC_RELEASE);
	count((int64_t)size, 1);
	if (site)
		journal_count(h->hdr, site, (unsigned)rh_tc.slot, (int64_t)(size), 1);
	return bh + 1;
}

/* Bytes of the block at p (of this process's heap) before its private
 * pages; SIZE_MAX when it has none. */
static size_t before_private(void *p)
{
	struct block_header *bh = (struct block_header *)p - 1;
	struct heap *h = rh_heap;
	if ((bh->sb_page >> RH_CLASS_SHIFT) != RH_CLASS_LARGE || !h)
		return SIZE_MAX;
	struct superblock *sb = sb_at(h, bh->sb_page);
	if (!(sb->pages[bh->span_index].flags & RH_PAGE_F_PRIVATE))
		return SIZE_MAX;
	return (size_t)(span_start(h, sb, bh->span_index) + ((size_t)1 << h->page_shift) - (char *)p);
}

void block_clear(void *p, size_t n)
{
	size_t head = before_private(p);
	memset(p, 0, head < n ? head : n);
}

static inline uint64_t large_size(const struct page_desc *d)
{
	return (uint64_t)d->used << 32 | d->bumped;
}

/* --- Block geometry --------------------------------------------------------- */

/* Start of the slot holding a SMALL block's header. */
static inline char *slot_of(const struct heap *h, struct superblock *sb, const struct block_header *bh)
{
	if (!(bh->refcount & RH_REF_DISPLACED))
		return (char *)bh;
	struct page_desc *d = &sb->pages[bh->span_index];
	char *span = span_start(h, sb, bh->span_index);
	uint32_t slot = rh_class_size[d->size_class];
	return span + (size_t)(((char *)bh - span) / slot) * slot;
}

/* Bytes the caller may use, for a block of heap h. */
static size_t usable_in(const struct heap *h, const struct block_header *bh)
{
	struct superblock *sb = sb_at(h, bh->sb_page);
	struct page_desc *d = &sb->pages[bh->span_index];
	if (d->kind == RH_PAGE_LARGE)
		return ((size_t)d->span_pages << h->page_shift) - d->free_head;
	char *slot = slot_of(h, sb, bh);
	return (size_t)(slot + rh_class_size[d->size_class] - (char *)(bh + 1));
}

static uint64_t size_in(const struct heap *h, const struct block_header *bh)
{
	struct superblock *sb = sb_at(h, bh->sb_page);
	struct page_desc *d = &sb->pages[bh->span_index];
	if (d->kind == RH_PAGE_LARGE)
		return large_size(d);
	return usable_in(h, bh) - bh->slack;
}

/* --- Freeing ------------------------------------------------------------------ */

/* The last reference is gone: the block goes back (owner process). `account`
 * is false when another process already counted the free. */
static void release(struct heap *h, struct block_header *bh, bool account)
{
	struct superblock *sb = sb_at(h, bh->sb_page);
	struct page_desc *d = &sb->pages[bh->span_index];
	if (account) {
		uint64_t size = size_in(h, bh);
		count(-(int64_t)size, -1);
		if (bh->site)
			journal_count(h->hdr, bh->site, (unsigned)rh_tc.slot, (int64_t)(size), -1);
	}
	if (d->kind == RH_PAGE_LARGE) {
		__atomic_store_n(&bh->refcount, 0, __ATOMIC_RELEASE);
		size_t bytes = (size_t)d->span_pages << h->page_shift;
		if (!(d->flags & RH_PAGE_F_PRIVATE) && rh_tc.heap == h && rh_tc.nlarge < LCACHE_ENTRIES &&
		    rh_tc.large_bytes + bytes <= LCACHE_BYTES) {
			rh_tc.large[rh_tc.nlarge++] = (struct lentry){ sb, bh->span_index, d->span_pages };
			rh_tc.large_bytes += bytes;
			return;
		}
		struct pool *pl = &pools[sb->pool];
		bool priv = d->flags & RH_PAGE_F_PRIVATE, adapt = false;
		uint64_t size = large_size(d);
		if (priv && alloc_private_adapts && size <= PRIVATE_ADAPT_MAX) {
			/* Only a block whose pages were mostly used: one barely
			 * touched would otherwise make the next ones reserve all
			 * their pages in the file. */
			uint64_t off;
			size_t len;
			private_range(h, sb, bh->span_index, &off, &len);
			adapt = os_mostly_resident(h->base + off, len);
		}
		/* A pool busy with another thread (a producer allocating what
		 * this thread consumes and frees) is not waited for: the span
		 * goes onto its remote-free list, which the next allocation
		 * there takes under the lock it holds anyway. */
		if (pthread_mutex_trylock(&pl->lock) != 0) {
			if (rh_tc.heap == h && !priv) {
				uint64_t off = (uint64_t)((char *)bh - h->base);
				remote_push(h, sb->pool, off, off, 1);
				return;
			}
			pthread_mutex_lock(&pl->lock);
		}
		if (!priv || private_end(h, sb, bh->span_index))
			span_free(h, pl, sb, bh->span_index, d->span_pages);
		pthread_mutex_unlock(&pl->lock);
		if (adapt)
			private_adapt(h, size);
		return;
	}
	char *slot = slot_of(h, sb, bh);
	__atomic_store_n(&bh->refcount, 0, __ATOMIC_RELEASE);
	((struct block_header *)slot)->refcount = 0;  /* clears a displacement marker */
	void *p = slot + HDR;
	unsigned c = d->size_class;
	struct tbin *b = &rh_tc.bins[c];
	if (rh_tc.heap == h && b->count < b->max) {
		*(void **)p = b->head;
		b->head = p;
		b->count++;
		return;
	}
	struct pool *pl = &pools[sb->pool];
	pthread_mutex_lock(&pl->lock);
	slot_release(h, pl, sb, bh->span_index, slot);
	pthread_mutex_unlock(&pl->lock);
}

/* Drops one reference with atomics; true when it was the last. */
static bool unref(struct block_header *bh)
{
	uint32_t r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE);
	for (;;) {
		if ((r & RH_REF_COUNT_MASK) == 0 || r == RH_REF_MARKER) {
			rh_warn("free of a block that is not allocated (double free?)");
			return false;
		}
		uint32_t n = r - 1;
		if ((n & RH_REF_COUNT_MASK) == 0)
			n = r & RH_REF_DISPLACED;  /* keep the geometry bit while it is released */
		if (__atomic_compare_exchange_n(&bh->refcount, &r, n, true, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return (n & RH_REF_COUNT_MASK) == 0;
	}
}

/* Everything but an ordinary block going back to the thread's cache. */
__attribute__((noinline)) void free_slow(struct heap *h, struct block_header *bh, uint32_t r)
{
	/* No heap of our own any more, or not the block's: a child forked by a
	 * signal handler that interrupted this free, whose heap is now a new
	 * one and the block a private copy of the parent's (left as it is). */
	if (!tcache_init() || !h || !heap_is_own(bh + 1))
		return;
	if (r == 1) {
		__atomic_store_n(&bh->refcount, 0, __ATOMIC_RELAXED);
	} else if (!unref(bh)) {
		return;
	}
	struct superblock *sb = sb_at(h, bh->sb_page);
	struct page_desc *d = &sb->pages[bh->span_index];
	if (d->kind == RH_PAGE_SMALL) {
		struct tbin *b = &rh_tc.bins[d->size_class];
		if (b->count >= b->max)
			tcache_flush(d->size_class, b->max / 2);
	}
	/* release() reads the geometry bit; restore it for displaced blocks. */
	if (r & RH_REF_DISPLACED)
		bh->refcount = RH_REF_DISPLACED;
	release(h, bh, true);
}

static struct block_header *check_block(struct heap *h, uint64_t sb_off, uint64_t off);

/* The last reference on block bh of the attached heap h is gone: counts
 * the free there and hands the block to its owner's pool (its remote
 * list). */
static void foreign_freed(struct heap *h, struct block_header *bh)
{
	struct superblock *sb = sb_at(h, bh->sb_page);
	uint64_t size = size_in(h, bh);
	struct heap_header *hdr = h->hdr;
	__atomic_fetch_add(&hdr->counters[0].used_bytes, -(int64_t)size, __ATOMIC_RELAXED);
	__atomic_fetch_add(&hdr->counters[0].frees, 1, __ATOMIC_RELAXED);
	if (bh->site && ((uint64_t)bh->site << 3) + sizeof(struct journal_site) <= h->mapped_end)
		journal_count(hdr, bh->site, 0, (int64_t)(size), -1);
	uint64_t off = (uint64_t)((char *)bh - h->base);
	remote_push(h, sb->pool % RH_MAX_POOLS, off, off, 1);
}

/* Drops a reference on block bh of the attached heap h. */
static void unref_foreign(struct heap *h, struct block_header *bh)
{
	stat_add(blocks_released, 1);
	if (unref(bh))
		foreign_freed(h, bh);
}

uint32_t alloc_release_dead(struct heap *h, uint64_t sb_off, uint64_t off, uint32_t n)
{
	struct block_header *bh = check_block(h, sb_off, off);
	if (!bh)
		return 0;
	/* Only a block that was handed out by reference, allocated still;
	 * all n at once, or as many as it has. */
	uint32_t r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE), have, k, to;
	do {
		have = r & RH_REF_COUNT_MASK;
		if (!(r & RH_REF_SHARED) || r == RH_REF_MARKER || !have)
			return 0;
		k = n < have ? n : have;
		to = k == have ? r & RH_REF_DISPLACED : r - k;
	} while (!__atomic_compare_exchange_n(&bh->refcount, &r, to, true, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	stat_add(blocks_released, k);
	if (k == have)
		foreign_freed(h, bh);
	return k;
}

void alloc_unattach(struct heap *h, void *p)
{
	unref_foreign(h, (struct block_header *)p - 1);
}

void free_foreign(struct heap *h, void *p)
{
	/* Pinned while we look: a heap nothing is held of may be let go at
	 * any time (a second release comes to such a heap). */
	if (!h || !heap_foreign_pin(h, p)) {
		rh_warn("free(%p): this process holds no reference on a block there (released twice?)", p);
		return;
	}
	uint64_t off = (uint64_t)((char *)p - h->base);
	/* Only a reference this process took: a second release of one would
	 * drop another process's (the block freed under it). */
	if (!heap_held_drop(h, off)) {
		rh_warn("free(%p): this process holds no reference on a block of %s there "
			"(released twice, or not a block)", p, h->name);
		heap_foreign_dropped(h);
		return;
	}
	/* Its header is checked again: any holder can write it since. */
	struct block_header *bh = (struct block_header *)p - 1;
	int saved = errno;
	if (check_block(h, (uint64_t)(bh->sb_page & RH_SB_PAGE_MASK) << h->page_shift, off))
		unref_foreign(h, bh);
	else
		rh_warn("free(%p): the header of that block of %s was overwritten: its reference is left", p,
			h->name);
	errno = saved;
	heap_foreign_dropped_n(h, 2);  /* the pin and the reference */
}

/* Blocks other processes released into this pool (pool locked). */
static void drain_remote(struct heap *h, struct pool *pl)
{
	uint64_t *head = &h->hdr->pools[pl - pools].remote_free;
	if (!__atomic_load_n(head, __ATOMIC_RELAXED))
		return;
	uint64_t off = __atomic_exchange_n(head, 0, __ATOMIC_ACQUIRE);
	for (unsigned n = 0; off && n < (1u << 30); n++) {
		if (off % 16 || off < h->hdr->header_size || off + HDR + 8 > h->mapped_end) {
			rh_warn("ignoring a corrupt remote-free list");
			return;
		}
		struct block_header *bh = (struct block_header *)(h->base + off);
		uint64_t next = *(uint64_t *)(bh + 1);
		struct superblock *sb = sb_at(h, bh->sb_page);
		struct page_desc *d = &sb->pages[bh->span_index];
		if (d->kind == RH_PAGE_LARGE) {
			/* Blocks others attached were moved into the file first. */
			if (!(d->flags & RH_PAGE_F_PRIVATE) || private_end(h, sb, bh->span_index))
				span_free(h, pl, sb, bh->span_index, d->span_pages);
		} else {
			char *slot = slot_of(h, sb, bh);
			bh->refcount = 0;
			((struct block_header *)slot)->refcount = 0;
			slot_release(h, pl, sb, bh->span_index, slot);
		}
		off = next;
	}
}

/* --- Allocation entry points ------------------------------------------------ */

static void *small_aligned(size_t size, size_t align, uint32_t site)
{
	size_t room = size ? size : 1;  /* data must start inside its slot */
	unsigned c = size_class(room + align - HDR);
	struct tbin *b = &rh_tc.bins[c];
	void *p = b->head;
	if (p && rh_tc.heap == rh_heap) {
		b->head = *(void **)p;
		b->count--;
	} else if (!(p = refill(c))) {
		return NULL;
	}
	struct heap *h = rh_tc.heap;
	char *slot = (char *)p - HDR;
	char *data = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	struct block_header *bh = (struct block_header *)data - 1;
	uint32_t flags = 0;
	if ((char *)bh != slot) {
		struct block_header *m = (struct block_header *)slot;
		*bh = *m;
		m->site = (uint32_t)((char *)bh - slot);
		__atomic_store_n(&m->refcount, RH_REF_MARKER, __ATOMIC_RELEASE);
		flags = RH_REF_DISPLACED;
	}
	bh->slack = (uint16_t)(slot + rh_class_size[c] - data - size);
	bh->site = site;
	__atomic_store_n(&bh->refcount, 1 | flags, __ATOMIC_RELEASE);
	count((int64_t)size, 1);
	if (site)
		journal_count(h->hdr, site, (unsigned)rh_tc.slot, (int64_t)(size), 1);
	return data;
}

/* Everything but a small block from the thread's cache. */
__attribute__((noinline)) void *alloc_slow(size_t size, size_t align, uint32_t site)
{
	void *p;
	if (align <= HDR && size <= SMALL_MAX_REQUEST) {
		unsigned c = size_class(size);
		p = refill(c);
		if (p)
			return small_start(p, c, size, site);
	} else if (align > HDR && align < RH_SMALL_MAX_SLOT / 4 && size <= SMALL_MAX_REQUEST - align + HDR) {
		p = small_aligned(size, align, site);
	} else {
		p = large_alloc(size, align, site, 0);
	}
	if (!p)
		stat_add(alloc_failures, 1);
	return p;
}

size_t block_usable(const void *p)
{
	const struct block_header *bh = (const struct block_header *)p - 1;
	struct heap *h = heap_of(p), tmp;
	if (h == rh_heap && h)
		return usable_in(h, bh);
	if (!h && heap_inherited_view(p, &tmp))
		h = &tmp;
	if (!h)
		return 0;
	/* Another process's heap, or a private copy inherited over fork (its
	 * base not a heap of ours any more): its records are checked before
	 * use. The parent's other threads went on while the copy was made, so
	 * a block freed and reused meanwhile may show another's header. */
	int saved = errno;
	uint64_t off = (uint64_t)((const char *)p - h->base);
	bool ok = check_block(h, (uint64_t)(bh->sb_page & RH_SB_PAGE_MASK) << h->page_shift, off) != NULL;
	errno = saved;
	return ok ? usable_in(h, bh) : 0;
}

/* memcpy into a block just made. Its private pages are fresh zeros: the
 * parts of the source that are zeros too (a buffer's untouched pages) are
 * not copied, so they stay without memory, as the C library's realloc of
 * an mmap'd chunk leaves them. */
static void copy_into(void *to, const void *from, size_t n)
{
	size_t head = before_private(to);
	if (head >= n) {
		memcpy(to, from, n);
		return;
	}
	memcpy(to, from, head);
	size_t page = (size_t)1 << rh_heap->page_shift;
	for (size_t o = head; o < n; o += page) {
		size_t k = n - o < page ? n - o : page;
		if (!os_all_zero((const char *)from + o, k))
			memcpy((char *)to + o, (const char *)from + o, k);
	}
}

/* Grows or shrinks in place where the block's slot or span allows. */
void *realloc_block(void *p, size_t size, uint32_t site)
{
	struct heap *h = rh_heap;
	if (size > ((size_t)1 << 46)) {
		errno = ENOMEM;
		return NULL;
	}
	struct block_header *bh = (struct block_header *)p - 1;
	if (bh->refcount == 1 && rh_tc.heap == h) {
		struct superblock *sb = sb_at(h, bh->sb_page);
		struct page_desc *d = &sb->pages[bh->span_index];
		size_t usable = usable_in(h, bh);
		uint64_t old = d->kind == RH_PAGE_LARGE ? large_size(d) : usable - bh->slack;
		bool fits = false;
		if (d->kind == RH_PAGE_SMALL) {
			fits = size <= usable && (size >= usable / 4 || usable <= 64);
			if (fits)
				bh->slack = (uint16_t)(usable - size);
		} else if (size <= usable && size > SMALL_MAX_REQUEST && size >= usable / 2) {
			fits = true;
		} else if (size > usable && !(d->flags & RH_PAGE_F_PRIVATE)) {
			/* Take the following free pages of the superblock, if enough. */
			uint32_t idx = bh->span_index, pages = d->span_pages;
			uint64_t need = (d->free_head + size + ((size_t)1 << h->page_shift) - 1) >> h->page_shift;
			uint32_t next = idx + pages;
			struct pool *pl = &pools[sb->pool];
			pthread_mutex_lock(&pl->lock);
			if (need <= UINT32_MAX && next < sb->npages && sb->pages[next].kind == RH_PAGE_FREE &&
			    pages + sb->pages[next].span_pages >= need) {
				bin_remove(sb, next);
				if (span_take(h, pl, sb, next, (uint32_t)need - pages, UINT32_MAX, false) == 0) {
					desc_set(sb, idx, (uint32_t)need, RH_PAGE_LARGE, 0);
					fits = true;
				}
			}
			pthread_mutex_unlock(&pl->lock);
		}
		if (fits) {
			if (d->kind == RH_PAGE_LARGE) {
				d->bumped = (uint32_t)size;
				d->used = (uint32_t)((uint64_t)size >> 32);
			}
			count((int64_t)size - (int64_t)old, 0);
			if (bh->site)
				journal_count(h->hdr, bh->site, (unsigned)rh_tc.slot, (int64_t)(old), -1);
			bh->site = site;
			if (site)
				journal_count(h->hdr, site, (unsigned)rh_tc.slot, (int64_t)(size), 1);
			return p;
		}
	}
	/* Moved. A LARGE block that grows gets a quarter more room, so that a
	 * block grown in small steps is copied a logarithmic number of times. */
	size_t keep = block_usable(p);  /* programs may fill what usable_size says */
	void *n = NULL;
	if (size > SMALL_MAX_REQUEST && size > keep)
		n = large_alloc(size, HDR, site, size / 4);
	if (!n && !(n = alloc_block(size, HDR, site)))
		return NULL;
	copy_into(n, p, keep < size ? keep : size);
	free_block(p);
	return n;
}

/* --- References --------------------------------------------------------------- */

/* Checks that [off-16, off) of heap h is the header of a block: bounds,
 * superblock and span agree. Every byte here may come from another process. */
static struct block_header *check_block_errno(struct heap *h, uint64_t sb_off, uint64_t off);

/* check_block_errno, errno kept as it was on success. */
static struct block_header *check_block(struct heap *h, uint64_t sb_off, uint64_t off)
{
	int saved = errno;
	struct block_header *bh = check_block_errno(h, sb_off, off);
	if (bh)
		errno = saved;
	return bh;
}

/* Whether a DATA superblock starts at sb_off: known, or read from the file
 * (a hole reads as zeros there, and takes no memory). */
static bool sb_is_known(struct heap *h, uint64_t sb_off)
{
	if (heap_sb_known(h, sb_off))
		return true;
	/* No file: a heap inherited over fork, private memory now. */
	if (h->fd < 0)
		return true;
	/* A descriptor known to be the heap's (the program may have taken
	 * ours); none to be had: the mapping is trusted, as before. */
	int saved = errno, fd = heap_fd(h);
	errno = saved;
	if (fd < 0)
		return true;
	struct superblock head;
	const size_t n = offsetof(struct superblock, journal_end);
	if (os_pread(fd, &head, n, sb_off) != (ssize_t)n || head.magic != RH_SB_MAGIC ||
	    head.kind != RH_SB_DATA || head.offset != sb_off) {
		errno = saved;
		return false;
	}
	heap_sb_add(h, sb_off);
	return true;
}

static struct block_header *check_block_errno(struct heap *h, uint64_t sb_off, uint64_t off)
{
	uint64_t page = (uint64_t)1 << h->page_shift;
	uint64_t end = __atomic_load_n(&h->mapped_end, __ATOMIC_ACQUIRE);
	errno = EINVAL;
	if (off % 16 || sb_off % page || end < page || off < h->hdr->header_size + HDR || off > end - 16 ||
	    sb_off < h->hdr->header_size || sb_off > end - page || sb_off >= off)
		return NULL;
	/* A real superblock's first header page and its commit bitmap are
	 * always committed: safe to read once the file says it is one. */
	if (!sb_is_known(h, sb_off))
		return NULL;
	struct superblock *sb = (struct superblock *)(h->base + sb_off);
	uint64_t size = sb->size, npages = sb->npages, hsize = sb->header_size;
	if (__atomic_load_n(&sb->magic, __ATOMIC_ACQUIRE) != RH_SB_MAGIC || sb->kind != RH_SB_DATA ||
	    sb->offset != sb_off || size > end - sb_off || off >= sb_off + size ||
	    npages != size >> h->page_shift || hsize > size ||
	    hsize < offsetof(struct superblock, pages) + npages * sizeof(struct page_desc) + (npages + 63) / 64 * 8)
		return NULL;
	/* The block's header page must hold memory: a punched page would be
	 * allocated by the read, or raise SIGBUS on a full filesystem. */
	struct block_header *bh = (struct block_header *)(h->base + off) - 1;
	uint64_t pg = ((uint64_t)((char *)bh - (char *)sb)) >> h->page_shift;
	if (pg * page < hsize || !bit_get(commit_bits(sb), (uint32_t)pg)) {
		errno = ESTALE;
		return NULL;
	}
	if (((uint64_t)(bh->sb_page & RH_SB_PAGE_MASK) << h->page_shift) != sb_off)
		return NULL;
	uint32_t idx = bh->span_index;
	if ((uint64_t)idx * page < hsize || idx >= npages || !bit_get(commit_bits(sb), desc_page(h, idx)))
		return NULL;
	struct page_desc *d = &sb->pages[idx];
	uint32_t span_pages = d->span_pages;
	if (span_pages == 0 || span_pages > npages - idx)
		return NULL;
	char *span = span_start(h, sb, idx);
	char *span_end = span + ((size_t)span_pages << h->page_shift);
	if ((char *)bh < span || (char *)(bh + 1) >= span_end)
		return NULL;
	if (d->kind == RH_PAGE_LARGE)
		return (char *)(bh + 1) == span + d->free_head ? bh : NULL;
	uint8_t cls = d->size_class;
	if (d->kind != RH_PAGE_SMALL || cls >= RH_NUM_CLASSES)
		return NULL;
	uint32_t slot = rh_class_size[cls];
	uint32_t r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE);
	uint64_t dist = (uint64_t)((char *)bh - span) % slot;
	if (!(r & RH_REF_DISPLACED) || r == RH_REF_MARKER)
		return dist ? NULL : bh;
	/* Displaced: its slot must start with a marker that points at it (a
	 * header written into a block's data by a holder is not a block, and
	 * its frees would release the slot of the block around it). */
	if (dist < 16 || dist > slot - 32)
		return NULL;
	struct block_header *mk = (struct block_header *)((char *)bh - dist);
	uint64_t mpg = ((uint64_t)((char *)mk - (char *)sb)) >> h->page_shift;
	if (!bit_get(commit_bits(sb), (uint32_t)mpg) ||
	    __atomic_load_n(&mk->refcount, __ATOMIC_ACQUIRE) != RH_REF_MARKER || mk->site != dist)
		return NULL;
	return bh;
}

void *alloc_attach(struct heap *h, uint64_t sb_off, uint64_t off)
{
	struct block_header *bh = check_block(h, sb_off, off);
	if (!bh)
		return NULL;
	uint32_t r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE);
	for (;;) {
		if (r == RH_REF_MARKER || (r & RH_REF_COUNT_MASK) == 0) {
			errno = ESTALE;
			return NULL;
		}
		if (!(r & RH_REF_SHARED)) {
			errno = EINVAL;  /* never published with rh_shm_ref */
			return NULL;
		}
		if ((r & RH_REF_COUNT_MASK) == RH_REF_COUNT_MASK) {
			errno = EOVERFLOW;
			return NULL;
		}
		if (__atomic_compare_exchange_n(&bh->refcount, &r, r + 1, true, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return bh + 1;
	}
}

int alloc_ref(struct heap *h, const void *p, uint64_t *sb_off, uint64_t *off)
{
	struct block_header *bh = (struct block_header *)p - 1;
	uint64_t o = (uint64_t)((const char *)p - h->base);
	uint64_t s = (uint64_t)(bh->sb_page & RH_SB_PAGE_MASK) << h->page_shift;
	if (!check_block(h, s, o))
		return -1;
	struct superblock *sb = sb_at(h, bh->sb_page);
	if (h == rh_heap && (sb->pages[bh->span_index].flags & RH_PAGE_F_PRIVATE)) {
		int err = private_publish(h, sb, bh->span_index);
		if (err) {
			errno = err;
			return -1;
		}
	}
	/* Marked shared only while it is allocated (a freed block's header
	 * may be someone else's again by now). */
	uint32_t r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE);
	do {
		if ((r & RH_REF_COUNT_MASK) == 0 || r == RH_REF_MARKER) {
			errno = EINVAL;
			return -1;
		}
	} while (!__atomic_compare_exchange_n(&bh->refcount, &r, r | RH_REF_SHARED, true, __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
	*sb_off = s;
	*off = o;
	return 0;
}

/* --- Maintenance, fork, statistics ---------------------------------------- */

void alloc_trim(void)
{
	heap_idle_sweep(true);
	struct heap *h = rh_heap;
	if (!h)
		return;
	heap_reclaim_dead_holders(true);
	/* Quiet, a pool at a time: a child forked by a signal handler would
	 * go on with this on the heap cleared at fork. */
	struct os_quiet q;
	os_quiet_begin(&q);
	bool ours = __atomic_load_n(&rh_heap, __ATOMIC_ACQUIRE) == h;
	if (ours && rh_tc.heap == h)
		tcache_flush_all();
	os_quiet_end(&q);
	for (unsigned i = 0; ours && i < RH_MAX_POOLS; i++) {
		struct pool *pl = &pools[i];
		if (!pl->used)
			continue;
		os_quiet_begin(&q);
		if ((ours = __atomic_load_n(&rh_heap, __ATOMIC_ACQUIRE) == h)) {
			pthread_mutex_lock(&pl->lock);
			drain_remote(h, pl);
			pool_purge(h, pl);
			pthread_mutex_unlock(&pl->lock);
		}
		os_quiet_end(&q);
	}
}

void alloc_fork_prepare(void)
{
	for (unsigned i = 0; rh_fork_locking && i < RH_MAX_POOLS; i++)
		pthread_mutex_lock(&pools[i].lock);
}

void alloc_fork_parent(void)
{
	for (unsigned i = 0; rh_fork_locking && i < RH_MAX_POOLS; i++)
		pthread_mutex_unlock(&pools[i].lock);
}

/* The child starts with no heap: everything private is reset, the blocks it
 * inherited stay where they are as private memory. */
/* Where an allocation or free interrupted by a fork in a signal handler
 * counts, in the child, when the handler returns into it: nowhere. */
static struct heap_counter fork_counter;

void alloc_fork_child(void)
{
	memset(pools, 0, sizeof(pools));
	for (unsigned i = 0; i < RH_MAX_POOLS; i++)
		pthread_mutex_init(&pools[i].lock, NULL);
	int busy = rh_tc.busy;
	memset(&rh_tc, 0, sizeof(rh_tc));
	rh_tc.busy = busy;
	rh_tc.counter = &fork_counter;
	atomic_store(&counter_slots, 1);
}

void alloc_stats(struct rh_shm_stats *st)
{
	for (unsigned i = 0; i < RH_MAX_POOLS; i++)
		st->pools_used += pools[i].used;
	struct heap *h = rh_heap;
	if (!h)
		return;
	int64_t bytes = 0, allocs = 0, frees = 0;
	for (unsigned i = 0; i < RH_MAX_COUNTERS; i++) {
		struct heap_counter *k = &h->hdr->counters[i];
		bytes += __atomic_load_n(&k->used_bytes, __ATOMIC_RELAXED);
		allocs += __atomic_load_n(&k->allocs, __ATOMIC_RELAXED);
		frees += __atomic_load_n(&k->frees, __ATOMIC_RELAXED);
	}
	st->heap_used = bytes > 0 ? (uint64_t)bytes : 0;
	st->blocks_created = (uint64_t)allocs;
	st->blocks_destroyed = (uint64_t)frees;
	uint64_t end = __atomic_load_n(&h->hdr->superblocks_end, __ATOMIC_ACQUIRE);
	for (uint64_t off = h->hdr->header_size; off < end;) {
		struct superblock *sb = (struct superblock *)(h->base + off);
		if (sb->kind == RH_SB_DATA)
			st->heap_size += sb->size - sb->header_size;
		off += sb->size;
	}
}

/* The first run of committed pages of sb in [a, b), as offsets in the heap. */
static bool committed_run(const struct heap *h, struct superblock *sb, uint32_t a, uint32_t b, uint64_t *start,
			  uint64_t *end)
{
	const uint64_t *bits = commit_bits(sb);
	a = bits_run_end(bits, a, b, false);
	if (a >= b)
		return false;
	uint32_t j = bits_run_end(bits, a, b, true);
	*start = sb->offset + ((uint64_t)a << h->page_shift);
	*end = sb->offset + ((uint64_t)j << h->page_shift);
	return true;
}

int alloc_data_runs(const void *arg, uint64_t pos, uint64_t *start, uint64_t *end)
{
	const struct heap *h = arg;
	uint64_t page = (uint64_t)1 << h->page_shift;
	uint64_t top = h->hdr->superblocks_end, hsize = h->hdr->header_size;
	if (top > h->mapped_end)
		top = h->mapped_end;
	/* The header's fixed part; holders' reference tables are no concern
	 * of a copy (read through the mapping, their holes would be filled). */
	uint64_t fixed = h->ref_tables && h->ref_tables < hsize ? h->ref_tables : hsize;
	if (pos < fixed) {
		*start = pos;
		*end = fixed < top ? fixed : top;
		return *end > pos;
	}
	if (pos < hsize)
		pos = hsize;
	for (uint64_t off = hsize; off < top;) {
		struct superblock *sb = (struct superblock *)(h->base + off);
		if (sb->size < page || sb->size > top - off)
			break;
		uint64_t sb_end = off + sb->size;
		if (pos < sb_end) {
			if (sb->kind == RH_SB_JOURNAL) {
				uint64_t n = (sb->journal_end + page - 1) & ~(page - 1);
				uint64_t s = pos > off ? pos : off, e = off + (n < sb->size ? n : sb->size);
				if (s < e) {
					*start = s;
					*end = e;
					return 1;
				}
			} else {
				uint32_t npages = sb->npages < (sb->size >> h->page_shift) ? sb->npages :
					(uint32_t)(sb->size >> h->page_shift);
				uint32_t i = pos > off ? (uint32_t)((pos - off) >> h->page_shift) : 0;
				/* Span by span from the start: committed pages of spans
				 * that are not free (what a free span holds is no one's).
				 * A chain that does not add up: committed pages, all. */
				uint32_t idx = 0, len = 0;
				bool chain = true;
				for (; idx < npages; idx += len) {
					len = sb->pages[idx].span_pages;
					if (!len || len > npages - idx) {
						chain = false;
						break;
					}
					if (idx + len <= i || sb->pages[idx].kind == RH_PAGE_FREE)
						continue;
					if (sb->pages[idx].kind == RH_PAGE_LARGE && (sb->pages[idx].flags & RH_PAGE_F_PRIVATE) &&
					    len > 1) {
						/* The header's page from the file, the rest
						 * is the process's own memory already. */
						if (i <= idx && committed_run(h, sb, idx, idx + 1, start, end))
							return 1;
						uint32_t from = i > idx + 1 ? i : idx + 1;
						*start = off + ((uint64_t)from << h->page_shift);
						*end = off + ((uint64_t)(idx + len) << h->page_shift);
						return 2;
					}
					if (committed_run(h, sb, i > idx ? i : idx, idx + len, start, end))
						return 1;
				}
				if (!chain && committed_run(h, sb, i > idx ? i : idx, npages, start, end))
					return 1;
			}
		}
		off = sb_end;
	}
	return 0;
}

__attribute__((constructor)) static void alloc_init(void)
{
	pthread_key_create(&tc_key, tcache_exit);
}
