/* SPDX-License-Identifier: MIT */
/*
 * The heap file's layout: the single source of truth for the writer (heap/) and
 * the reader (heap/reader.c, tools/). heap/FORMAT.md describes the same bytes
 * in prose; every offset below is pinned so the two cannot drift apart.
 *
 * Glossary.
 *   heap file   "heap-<pid>" in RH_SHM_DIR: a header, then superblocks laid end
 *               to end. All positions are byte offsets from the start of the
 *               file, never pointers: every process maps the file elsewhere.
 *   page        the heap's page size (header.page_size, the creator's system
 *               page size): the unit of superblocks, spans and hole punching.
 *   header      the first header.header_size bytes: identity of the creator,
 *               holder slots (who has the heap open), pools' remote-free lists
 *               and the used-byte counters.
 *   superblock  a run of pages starting with its own header. Kind DATA holds
 *               spans and blocks; kind JOURNAL holds journal records. The next
 *               superblock starts at offset + size.
 *   span        a run of pages inside a DATA superblock, described by the page
 *               descriptor of its first page: free, SMALL (equal slots of one
 *               size class) or LARGE (a single block).
 *   block       what an allocation returns: a 16-byte block header followed by
 *               the caller's bytes. The header carries the reference count and
 *               the call site.
 *   journal     tagged, sized records in JOURNAL superblocks: loaded modules
 *               and call sites (a stack of return addresses with counters).
 *
 * Little-endian, naturally aligned, fixed-width fields only (x86_64, aarch64).
 */
#ifndef RH_HEAP_FORMAT_H
#define RH_HEAP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define RH_HEAP_MAGIC          0x50414548u /* "HEAP" read as little-endian bytes */
#define RH_HEAP_VERSION_MAJOR  1
#define RH_HEAP_VERSION_MINOR  1

#define RH_SB_MAGIC            0x4b4c4253u /* "SBLK" */
#define RH_SB_DATA             1
#define RH_SB_JOURNAL          2

/* REDHAWK 2.2's own heaps, read but never written (see FORMAT.md). */
#define RH_REDHAWK22_MAGIC     0xACEB70CCu
#define RH_REDHAWK22_VERSION   1

#define RH_MAX_HOLDERS         64   /* holder slots; slot 0 is the creator's */
#define RH_MAX_POOLS           64
#define RH_MAX_COUNTERS        64   /* used-byte counter slots */
#define RH_COMMAND_LEN         64
#define RH_HEAP_NAME_LEN       32   /* "heap-4294967295" and NUL fit easily */

/* Fcntl open-file-description locks, one byte each, taken at these offsets of
 * the heap file (locks may lie beyond the end of a file). Holder slot i is
 * locked at RH_LOCK_BASE + i; slot 0, the creator's, tells liveness. */
#define RH_LOCK_BASE           0

/* Header flags. */
#define RH_HEAP_F_KEEP         0x1u  /* created with RH_SHMALLOC_KEEP=1 */
#define RH_HEAP_F_LOCKED       0x2u  /* the creator holds the slot-0 lock */
#define RH_HEAP_F_SCANNED      0x4u  /* the exit scan marked reachable blocks */

/* A holder slot: one per process that has the heap open. A slot is claimed by
 * a compare-and-swap of pid from 0, then locked; the lock, not the pid, says
 * whether the holder still lives. */
struct heap_holder {
	int32_t pid;          /* 0: never claimed */
	uint32_t state;       /* RH_HOLDER_* */
	uint64_t start_time;  /* /proc/<pid>/stat field 22, clock ticks since boot */
};
#define RH_HOLDER_FREE     0
#define RH_HOLDER_CLAIMED  1

/* Per-pool shared state: blocks whose last reference was dropped by another
 * process are pushed here (a lock-free stack of block-header offsets, linked
 * through the first 8 bytes of each block's data) and reclaimed by the owner. */
struct heap_pool_shared {
	uint64_t remote_free;   /* offset of a block header, 0 when empty */
	uint64_t remote_count;  /* blocks pushed, ever (statistics) */
};

/* Used-byte counters. Each slot has a single writer (a thread of the creator)
 * except slot 0, which other processes update with atomic adds; the heap's
 * used bytes are the sum over all slots, its live blocks the sum of allocs
 * minus the sum of frees. Values are signed:
 * a block allocated by one thread and freed by another moves two slots. */
struct heap_counter {
	int64_t used_bytes;     /* requested bytes of live blocks */
	int64_t reserved0;      /* zero */
	int64_t allocs;         /* blocks made, ever */
	int64_t frees;          /* blocks freed, ever; live blocks: allocs - frees */
	int64_t reserved[4];    /* one cache line per slot */
};

struct heap_header {
	uint32_t magic;               /*   0 RH_HEAP_MAGIC */
	uint16_t version_major;       /*   4 */
	uint16_t version_minor;       /*   6 */
	uint32_t header_size;         /*   8 bytes, a multiple of page_size */
	uint32_t page_size;           /*  12 power of two, 4096..65536 */
	uint64_t instance;            /*  16 random, differs for every heap made */
	uint64_t superblocks_end;     /*  24 end of the last complete superblock */
	int32_t creator_pid;          /*  32 as seen in the creator's PID namespace */
	uint32_t creator_uid;         /*  36 */
	uint64_t creator_start;       /*  40 /proc/<pid>/stat field 22 */
	uint64_t created_ns;          /*  48 CLOCK_REALTIME, nanoseconds */
	uint64_t pid_ns;              /*  56 inode of /proc/self/ns/pid */
	uint8_t boot_id[16];          /*  64 /proc/sys/kernel/random/boot_id */
	uint32_t flags;               /*  80 RH_HEAP_F_* */
	uint32_t npools;              /*  84 pools in use, <= RH_MAX_POOLS */
	uint32_t trace_depth;         /*  88 frames per call site, 0: provenance off */
	uint32_t reserved0;           /*  92 */
	char command[RH_COMMAND_LEN]; /*  96 creator's command name, NUL-terminated */
	uint8_t reserved1[864];       /* 160 zero; fields are appended here */
	struct heap_holder holders[RH_MAX_HOLDERS];     /* 1024 */
	struct heap_pool_shared pools[RH_MAX_POOLS];    /* 2048 */
	uint64_t ref_tables;          /* 3072 offset of holder slot 0's reference table, 0: none */
	uint32_t ref_table_size;      /* 3080 bytes of each slot's table */
	uint32_t reserved3;           /* 3084 */
	uint8_t reserved2[1008];      /* 3088 zero */
	struct heap_counter counters[RH_MAX_COUNTERS];  /* 4096 */
};

#define RH_HEADER_SIZE 8192u

/* Reference tables (minor version 1): one per holder slot, at ref_tables +
 * slot * ref_table_size, inside the header (which then ends past them; the
 * creator's slot 0 has one too, unused). A holder records in its slot's
 * table the blocks it holds references on, so that once it is dead the
 * next process to lock its slot (a new holder, or the creator) can drop
 * them. The count goes up only after the block's refcount did and down
 * before it does: a table never says more than its holder held. An entry
 * whose count is 0 is free; a table is a hole until its holder first
 * writes it. */
struct heap_ref_entry {
	uint64_t offset;     /* the block's data, as in struct rh_shm_ref */
	uint32_t sb_page;    /* its superblock's offset / page_size */
	uint32_t count;      /* references held; 0: free entry */
};
#define RH_REF_TABLE_SIZE 4096u
#define RH_REF_ENTRIES (RH_REF_TABLE_SIZE / sizeof(struct heap_ref_entry))

_Static_assert(offsetof(struct heap_header, version_major) == 4, "format");
_Static_assert(offsetof(struct heap_header, header_size) == 8, "format");
_Static_assert(offsetof(struct heap_header, instance) == 16, "format");
_Static_assert(offsetof(struct heap_header, superblocks_end) == 24, "format");
_Static_assert(offsetof(struct heap_header, creator_pid) == 32, "format");
_Static_assert(offsetof(struct heap_header, creator_start) == 40, "format");
_Static_assert(offsetof(struct heap_header, created_ns) == 48, "format");
_Static_assert(offsetof(struct heap_header, pid_ns) == 56, "format");
_Static_assert(offsetof(struct heap_header, boot_id) == 64, "format");
_Static_assert(offsetof(struct heap_header, flags) == 80, "format");
_Static_assert(offsetof(struct heap_header, npools) == 84, "format");
_Static_assert(offsetof(struct heap_header, trace_depth) == 88, "format");
_Static_assert(offsetof(struct heap_header, command) == 96, "format");
_Static_assert(offsetof(struct heap_header, holders) == 1024, "format");
_Static_assert(offsetof(struct heap_header, pools) == 2048, "format");
_Static_assert(offsetof(struct heap_header, counters) == 4096, "format");
_Static_assert(sizeof(struct heap_header) == RH_HEADER_SIZE, "format");
_Static_assert(offsetof(struct heap_header, ref_tables) == 3072, "format");
_Static_assert(offsetof(struct heap_header, ref_table_size) == 3080, "format");
_Static_assert(sizeof(struct heap_ref_entry) == 16, "format");

/* Size classes: slot sizes in bytes, header included. Requests whose slot
 * would exceed the last class are served by LARGE spans. */
#define RH_SIZE_CLASSES \
	32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, \
	320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, \
	2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, \
	16384, 20480, 24576, 28672, 32768
#define RH_NUM_CLASSES 43
#define RH_SMALL_MAX_SLOT 32768u

/*
 * Page descriptors: one per page of a DATA superblock, in its header. Only the
 * descriptors of a span's first and last page are kept current; the others are
 * stale. A free span's list links are page numbers within the superblock.
 */
enum page_kind {
	RH_PAGE_HEADER = 0,  /* the superblock's own header pages */
	RH_PAGE_FREE = 1,
	RH_PAGE_SMALL = 2,
	RH_PAGE_LARGE = 3,
};
#define RH_PAGE_F_LISTED    0x2u /* a SMALL span on its superblock's partial list */
#define RH_PAGE_F_PRIVATE   0x4u /* a LARGE span whose pages after its first are the
                                  * owner's private memory: holes in the file */

struct page_desc {
	uint32_t span_pages;   /*  0 length of the span in pages */
	uint8_t kind;          /*  4 enum page_kind */
	uint8_t size_class;    /*  5 SMALL: index into the size-class table */
	uint16_t flags;        /*  6 RH_PAGE_F_* */
	uint32_t next;         /*  8 list link (free bin or partial list): page index in this superblock, 0: none */
	uint32_t prev;         /* 12 */
	uint32_t bumped;       /* 16 SMALL: slots handed out at least once; the reader walks [0, bumped) */
	uint32_t used;         /* 20 SMALL: slots not on the span's free list */
	uint32_t free_head;    /* 24 SMALL: first free slot + 1, 0: none. LARGE: data offset in span */
	uint32_t freed_ms;     /* 28 FREE (span head): when freed, coarse monotonic ms (allocator-private) */
};
_Static_assert(sizeof(struct page_desc) == 32, "format");
/* For LARGE spans, bumped and used together hold the block's requested size. */

struct superblock {
	uint32_t magic;        /*   0 RH_SB_MAGIC */
	uint16_t kind;         /*   4 RH_SB_DATA or RH_SB_JOURNAL */
	uint16_t pool;         /*   6 owning pool */
	uint64_t offset;       /*   8 this superblock's own offset in the file */
	uint64_t size;         /*  16 bytes, header included, a multiple of page_size */
	uint32_t header_size;  /*  24 bytes of header (this struct and descriptors) */
	uint32_t npages;       /*  28 size / page_size */
	uint64_t journal_end;  /*  32 JOURNAL: end of the last complete record, from offset */
	uint64_t pool_next;    /*  40 offset of the pool's next superblock, 0: none */
	uint32_t free_pages;   /*  48 DATA: pages in free spans */
	uint32_t bin_mask;     /*  52 DATA: bit b set when free_bins[b] is not empty */
	uint64_t class_mask;   /*  56 DATA: bit c set when partial[c] is not empty */
	uint32_t free_bins[32];  /*  64 DATA: free spans by length, page index, 0: none */
	uint32_t partial[RH_NUM_CLASSES + 5]; /* 192 DATA: SMALL spans with free slots */
	struct page_desc pages[];  /* 384 DATA: npages descriptors, then the
	                            * commit bitmap: npages bits in u64 words,
	                            * bit i set when page i holds memory */
};
_Static_assert(offsetof(struct superblock, offset) == 8, "format");
_Static_assert(offsetof(struct superblock, size) == 16, "format");
_Static_assert(offsetof(struct superblock, header_size) == 24, "format");
_Static_assert(offsetof(struct superblock, journal_end) == 32, "format");
_Static_assert(offsetof(struct superblock, free_bins) == 64, "format");
_Static_assert(offsetof(struct superblock, partial) == 192, "format");
_Static_assert(offsetof(struct superblock, pages) == 384, "format");

/*
 * Block header: the 16 bytes right before the data a caller gets.
 * refcount: 0 free; otherwise the low 29 bits count references.
 */
struct block_header {
	uint32_t sb_page;      /*  0 low 26 bits: offset of the superblock, in pages;
	                        *    high 6 bits: size class, RH_CLASS_LARGE for LARGE */
	uint16_t span_index;   /*  4 page index of the span in its superblock */
	uint16_t slack;        /*  6 SMALL: usable size minus requested size */
	uint32_t site;         /*  8 call site: journal record offset / 8, 0: none */
	uint32_t refcount;     /* 12 RH_REF_* flags and count */
};
_Static_assert(sizeof(struct block_header) == 16, "format");

#define RH_SB_PAGE_MASK    0x03ffffffu
#define RH_CLASS_SHIFT     26
#define RH_CLASS_LARGE     63u
#define RH_REF_COUNT_MASK  0x1fffffffu
#define RH_REF_REACHABLE   0x20000000u /* the exit scan found a pointer to it */
#define RH_REF_SHARED      0x80000000u /* a ref was taken: frees use atomics */
#define RH_REF_DISPLACED   0x40000000u /* header is not at its slot's start (aligned block) */
/* A slot whose block was displaced for alignment starts with a marker header:
 * refcount == RH_REF_MARKER and site == distance in bytes from the slot's
 * start to the real header. */
#define RH_REF_MARKER      0xffffffffu


/*
 * Journal records: [u16 tag][u16 flags][u32 size] then payload, size counting
 * the whole record, a multiple of 8. A record is published by writing it whole
 * and then advancing the superblock's journal_end with a release store;
 * readers stop at journal_end and skip tags they do not know.
 */
struct journal_record {
	uint16_t tag;          /* RH_REC_* */
	uint16_t flags;
	uint32_t size;
};
#define RH_REC_MODULE  1
#define RH_REC_SITE    2
#define RH_REC_DELTAS  3

/* A loaded module: enough to symbolise its addresses after the process died. */
struct journal_module {
	struct journal_record rec;  /*  0 */
	uint64_t base;              /*  8 load address (dlpi_addr) */
	uint64_t start;             /* 16 lowest mapped address of its segments */
	uint64_t end;               /* 24 end of its highest segment */
	uint16_t build_id_len;      /* 32 bytes of build_id used */
	uint16_t path_len;          /* 34 bytes of path, without NUL */
	uint32_t reserved;          /* 36 */
	uint8_t build_id[40];       /* 40 */
	char path[];                /* 80 path_len bytes, NUL, padding to 8 */
};
_Static_assert(offsetof(struct journal_module, path) == 80, "format");

/* A call site: a stack and its counters, updated with atomic adds. */
struct journal_site {
	struct journal_record rec;  /*  0 */
	uint64_t hash;              /*  8 of the frames, for deduplication */
	int64_t live_bytes;         /* 16 */
	int64_t live_blocks;        /* 24 */
	uint64_t total_allocs;      /* 32 */
	uint64_t total_bytes;       /* 40 */
	uint32_t depth;             /* 48 frames that follow */
	uint32_t next;              /* 52 hash chain: locator of the next site, 0: none */
	uint64_t frames[];          /* 56 return addresses, innermost first */
};
_Static_assert(offsetof(struct journal_site, frames) == 56, "format");

/*
 * Per-thread site counters. A thread of the creator adds its changes to a
 * site's counters in an entry of its own table (one per counter slot, single
 * writer, plain stores) instead of the site record, so threads never contend;
 * a site's figures are its record's counters plus every table entry naming
 * it. An entry's site is set before its counters move and never changes.
 */
struct journal_delta {
	uint32_t site;              /*  0 locator, 0: unused entry */
	uint32_t reserved;          /*  4 */
	int64_t live_bytes;         /*  8 */
	int64_t live_blocks;        /* 16 */
	int64_t total_allocs;       /* 24 */
	int64_t total_bytes;        /* 32 */
};
_Static_assert(sizeof(struct journal_delta) == 40, "format");

struct journal_deltas {
	struct journal_record rec;  /*  0 */
	uint32_t slot;              /*  8 counter slot of the writing thread */
	uint32_t count;             /* 12 entries that follow */
	struct journal_delta entries[]; /* 16 */
};
_Static_assert(offsetof(struct journal_deltas, entries) == 16, "format");
#define RH_DELTA_ENTRIES 4096

#endif
