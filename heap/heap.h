/* SPDX-License-Identifier: MIT */
/*
 * Internal interface of the heap core, shared by the heap core and preload/. Not
 * installed. Names keep a module prefix; none is exported from the shared
 * objects (-fvisibility=hidden).
 */
#ifndef RH_HEAP_H
#define RH_HEAP_H

#include <bits/types/sigset_t.h>  /* sigset_t alone: signal.h brings REG_* names */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "format.h"
#include "redhawk/shm.h"

/* Declared hidden, as defined: the shared objects reach them directly,
 * not through the GOT. */
#pragma GCC visibility push(hidden)

/* --- options.c: the RH_SHMALLOC_* variables, read once from environ. ------ */
enum pool_policy { POLICY_THREAD, POLICY_CPU };

struct options {
	bool enabled;              /* RH_SHMALLOC */
	enum pool_policy policy;   /* RH_SHMALLOC_POLICY */
	unsigned thread_pools;     /* RH_SHMALLOC_THREAD_NUM_POOLS */
	unsigned cpus_per_pool;    /* RH_SHMALLOC_CPUS_PER_POOL */
	size_t superblock_size;    /* RH_SHMALLOC_SUPERBLOCK_SIZE, rounded to pages */
	bool metrics;              /* RH_SHMALLOC_METRICS */
	unsigned mode;             /* RH_SHMALLOC_MODE */
	unsigned trace_depth;      /* RH_SHMALLOC_TRACE_DEPTH */
	size_t min_size;           /* RH_SHMALLOC_MIN_SIZE */
	size_t private_size;       /* RH_SHMALLOC_PRIVATE_SIZE, 0: none */
	bool private_size_set;     /* given: fixed, else it adapts (alloc.h) */
	bool keep;                 /* RH_SHMALLOC_KEEP */
	bool leak_scan;            /* RH_SHMALLOC_LEAK_SCAN (preload/leakscan.c) */
	char dir[4096];            /* RH_SHM_DIR */
};
#define RH_DEFAULT_TRACE_DEPTH 12
#define RH_DEFAULT_PRIVATE_SIZE ((size_t)8 << 20)
#define RH_MAX_TRACE_DEPTH 64

/* Reads the environment without allocating (walks environ); reports each
 * malformed value once on stderr. Safe to call again: re-reads. */
void options_load(struct options *opt);
extern struct options rh_options;

/* Writes "redhawk-shm: " and the formatted message to stderr, without malloc. */
void rh_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void rh_assert_fail(const char *expr, const char *file, int line);
#define rh_assert(e) ((e) ? (void)0 : rh_assert_fail(#e, __FILE__, __LINE__))

/* --- os.c: every system call on memory and heap files. Each returns 0 or
 * an errno value and fills its out-parameters only on success. ------------ */
size_t os_page_size(void);
int os_reserve(size_t size, size_t align, void **addr); /* PROT_NONE, no memory */
int os_release(void *addr, size_t size);
int os_map_shared(int fd, uint64_t offset, size_t size, void *at); /* MAP_FIXED */
int os_map_shared_new(int fd, uint64_t offset, size_t size, void *at); /* only where nothing is */
/* Where data is in a heap: the first run [*start, *end) at or after pos.
 * 1, 2 when the run is the process's private memory already (kept as it
 * is), 0 when there is none, or minus an errno. */
typedef int (*os_data_runs_fn)(const void *arg, uint64_t pos, uint64_t *start, uint64_t *end);
int os_fd_data_runs(const void *arg, uint64_t pos, uint64_t *start, uint64_t *end); /* arg: int *fd */
/* After fork: the shared mapping at `at` becomes a private copy of its runs
 * of data (read through fd, or from the mapping itself when fd is -1), its
 * holes zeros. 0 or an errno; *done: the bytes from `at` made private. */
int os_map_private_copy(int fd, void *at, size_t size, os_data_runs_fn runs, const void *arg, size_t *done);
int os_map_none(void *at, size_t size);                  /* PROT_NONE, no memory */
int os_map_anon(void *at, size_t size);                  /* private zeros, MAP_FIXED */
int os_map_anon_new(void *at, size_t size);              /* the same, only where nothing is */
bool os_mapped(void *at, size_t size);
bool os_all_zero(const void *p, size_t n);
/* Whether at least half the pages of [p, p+n) (p page-aligned) are mapped,
 * by mincore(2) (pages only read count: the zero page is mapped there);
 * false when it cannot tell. */
bool os_mostly_resident(const void *p, size_t n);
int os_map_into_file(int fd, uint64_t offset, size_t size, void *at);
/* Which file a descriptor is: a program may close our descriptor or put
 * another file under its number (dup2), so we check before we write. */
struct os_file_id {
	uint64_t dev, ino;
};
int os_file_id(int fd, struct os_file_id *id);
bool os_fd_is(int fd, const struct os_file_id *id);
int os_fd_high(int fd);                                 /* moved out of the way */
int os_commit(int fd, uint64_t offset, size_t size);    /* posix_fallocate */
int os_commit_fill(int fd, uint64_t offset, size_t size, const volatile char *map); /* a hole: pwritev */
bool os_is_tmpfs(int fd);
int os_decommit(int fd, uint64_t offset, size_t size);  /* FALLOC_FL_PUNCH_HOLE */
int os_grow(int fd, uint64_t size);                     /* ftruncate, within RLIMIT_FSIZE */
int os_shrink(int fd, uint64_t size);                   /* ftruncate */
int os_lock_byte(int fd, uint64_t offset);              /* F_OFD_SETLK write lock */
int os_unlock_byte(int fd, uint64_t offset);
/* Signals held back and cancellation off, for work that a handler's fork
 * or a thread's cancellation must not cut in two (a child finishing its
 * parent's work, a lock left held). */
struct os_quiet {
	sigset_t mask;
	int cancel;
};
void os_quiet_begin(struct os_quiet *q);
void os_quiet_end(const struct os_quiet *q);
/* pread and pwrite, and the writes and hole punching of os_commit_fill and
 * os_decommit, as system calls: not points where a thread is cancelled
 * (they run with locks held). */
ssize_t os_pread(int fd, void *buf, size_t size, uint64_t offset);
ssize_t os_pwrite(int fd, const void *buf, size_t size, uint64_t offset);
uint64_t os_now_ns(clockid_t clock);                    /* clock_gettime, in ns */
int os_lock_held(int fd, uint64_t offset, bool *held);  /* F_OFD_GETLK */
int os_proc_start_time(pid_t pid, uint64_t *ticks);     /* /proc/<pid>/stat field 22 */
int os_proc_stat(pid_t pid, uint64_t *ticks, pid_t *ppid); /* and field 4 */
int os_read_small(const char *path, char *buf, size_t size);

/* --- heap.c: heap files and their lifecycle. ------------------------------ */
#define RH_MAX_FOREIGN 64     /* other processes' heaps attached at once */
#define RH_MAX_INHERITED 64   /* generations of private copies after fork */

#define RH_CLASS_GRAIN 12

/* A heap mapped in this process: its own, or another's (attached). The file
 * is mapped at base so that file offset N is at base + N. */
struct held_ref {
	uint64_t off;     /* HELD_EMPTY, HELD_GONE, or a block's offset (a multiple of 16) */
	uint32_t count;
	uint32_t entry;   /* 1 + its entry in our reference table in the file, 0: none */
};

struct heap {
	char *base;
	struct heap_header *hdr;    /* == base */
	size_t reserve;             /* address space held at base (ours: mapped or reserved) */
	uint64_t mapped_end;        /* file bytes mapped */
	unsigned page_shift;
	bool trimmed;               /* the reservation past the mapping was given back */
	size_t limit;               /* trimmed: how far the heap may still grow */
	/* Own heap: per 4 KiB from base (RH_CLASS_GRAIN), 1 + the size class
	 * of the SMALL span there, 0 anywhere else; private to the process,
	 * so that the common free reads a block's class without waiting on
	 * the block. classes_size bytes reserved, the first classes_ready
	 * usable, which cover mapped_end. NULL for attached heaps. */
	uint8_t *classes;
	size_t classes_size, classes_ready;
	int fd;                     /* -1: a foreign heap inherited over fork; see heap_fd */
	bool writes_new_pages;      /* on tmpfs: new pages are written (os_commit_fill) */
	int dirfd;                  /* see heap_dirfd */
	struct os_file_id id, dir_id;
	int holder;                 /* holder slot (attached heaps) */
	pid_t pid;                  /* creator */
	uint64_t instance;
	bool unlinked;
	/* Attached heaps: references held through it; 0 once none is (the
	 * heap stays mapped a while: heap_idle_sweep), -1 while the entry is
	 * made or released, and after. */
	long attached;
	uint64_t idle_since;        /* last release, CLOCK_MONOTONIC_COARSE */
	uint64_t alive_ns;          /* when its creator was last seen alive, likewise */
	/* Attached heaps: the references this process holds, by block offset
	 * (open addressing; offset 0 empty, 1 removed), so that it never
	 * releases one it does not hold (another process's). */
	struct held_ref *held;
	uint32_t held_cap, held_used;
	pthread_mutex_t held_lock;
	/* Where the holders' reference tables start in the file (format.h),
	 * 0: none; the own heap's as made, an attached one's as read once.
	 * Under held_lock: our slot's table (NULL until first used, or when it
	 * cannot be: no slot or no tables, then refs_retry_ns is UINT64_MAX;
	 * a full filesystem, then the time to try again), and which of its
	 * entries are ours (a bit each). */
	uint64_t ref_tables;
	struct heap_ref_entry *refs;
	uint64_t refs_retry_ns;
	uint64_t refs_used[RH_REF_ENTRIES / 64];
	/* Offsets of superblocks checked against the file (a reference's
	 * superblock is read through the mapping only once it is known to be
	 * one: reading a hole would allocate the page, or raise SIGBUS on a
	 * full filesystem). Superblocks never go: a set that only grows, read
	 * without a lock (slot 0 holds the capacity; outgrown sets stay mapped
	 * until the heap is). */
	uint64_t *_Atomic sb_set;
	struct sb_sets *sb_old;     /* outgrown sets, to unmap with the heap */
	uint32_t sb_count;          /* under held_lock */
	char name[RH_HEAP_NAME_LEN];
	char dir[320];              /* the folder's absolute path ("": too long) */
	char path[320];             /* the file's, the same way */
};
extern struct heap *rh_heap;    /* this process's heap, NULL until made */
/* What free reads of the own heap on every call, without going through
 * rh_heap, on a cache line of its own: its reservation, for heap_is_own
 * (the size is stored last and read first, 0 while there is no heap), and
 * its page classes (struct heap.classes): an address's byte is at
 * classes_bias + (address >> RH_CLASS_GRAIN). */
struct own_range {
	size_t size;
	uintptr_t base;
	uintptr_t classes_bias;
};
extern struct own_range rh_own;

const struct options *options_get(void);
/* Makes this process's heap when needed; NULL with errno when it cannot. */
struct heap *heap_get_slow(void);
/* h's descriptor of its file, or of its folder, checked to still be that
 * (reopened if the program closed it or reused its number); -1 if lost. */
int heap_fd(struct heap *h);
int heap_dirfd(struct heap *h);
/* Appends a superblock, its header's pages committed but for those in
 * [hole_from, hole_to) (bytes from its start, multiples of the page size;
 * none when hole_to <= hole_from); NULL with errno (ENOMEM when the folder is
 * full). */
struct superblock *heap_grow(struct heap *h, uint64_t size, uint32_t header_size, uint32_t hole_from,
			     uint32_t hole_to, unsigned kind, unsigned pool);
/* Sets the page classes of `bytes` of the own heap from `offset` (both
 * multiples of 4 KiB) to v. */
void heap_classes_set(struct heap *h, uint64_t offset, uint64_t bytes, uint8_t v);
void heap_unlink_at_exit(void);  /* unless RH_SHMALLOC_KEEP */
/* With RH_SHMALLOC_KEEP: is there still someone to read the heap kept? Set
 * by the shim under redhawk-shmrun; NULL: yes. */
extern bool (*heap_keep_useful)(void);
void heap_unlink_now(void);      /* the own heap's name, whatever KEEP says */
/* Before this process (not a vfork child) execs: waits for a fork under way
 * (its child holds the heap's lock until it has its copy) and for another
 * thread's making of the heap, and keeps forks from starting until
 * heap_exec_release (the exec failed). False when the wait gave up (1 s). */
bool heap_exec_hold(void);
bool heap_making_here(void);     /* a thread of this process makes the heap */
void heap_exec_release(void);
/* Gives back the address space reserved past what each heap maps (for
 * mlockall, and a lowered RLIMIT_AS); heaps grow on where it is free. */
void heap_trim_reservations(void);
/* Whether this fork takes the heap's locks: not in a single-threaded
 * process, where the only holder could be the thread that forks (from a
 * signal handler that interrupted an allocation), as glibc's own malloc
 * does not either. */
extern bool rh_fork_locking;
void heap_fork_prepare(void);
void heap_fork_parent(void);
void heap_fork_child(void);
enum owner { OWNER_NONE, OWNER_SELF, OWNER_FOREIGN, OWNER_INHERITED };
enum owner heap_owner(const void *p);
/* The common case of heap_owner, inlined: a block of this process's heap. */
static inline bool heap_is_own(const void *p)
{
	size_t size = __atomic_load_n(&rh_own.size, __ATOMIC_ACQUIRE);
	return (uintptr_t)p - __atomic_load_n(&rh_own.base, __ATOMIC_RELAXED) < size;
}
struct heap *heap_of(const void *p);  /* own or attached heap holding p */
/* For a block inherited over fork: a view with base, size and page shift. */
bool heap_inherited_view(const void *p, struct heap *view);
/* Bytes from p to the end of the region inherited over fork that holds it;
 * 0 when none does. */
size_t heap_inherited_left(const void *p);
void *heap_attach(const struct rh_shm_ref *ref);
void heap_foreign_dropped(struct heap *h);
void heap_foreign_dropped_n(struct heap *h, long n);  /* n at once */
/* One more attached to h while p is in it: true, and heap_foreign_dropped
 * later; false (nothing taken) when h is released or p is not in it. */
bool heap_foreign_pin(struct heap *h, const void *p);
/* A reference on the block at OFF (its superblock at SB_OFF) of the
 * attached heap h is taken (0, or ENOMEM), or given back: false when this
 * process holds none there. Both keep our slot's reference table in the
 * file: call take after the block's refcount went up, drop before it goes
 * down. */
int heap_held_take(struct heap *h, uint64_t sb_off, uint64_t off);
/* Whether a DATA superblock starts at sb_off (alloc.c) and what is known of
 * them goes with the heap (heap.c). */
bool heap_sb_known(struct heap *h, uint64_t sb_off);
void heap_sb_add(struct heap *h, uint64_t sb_off);
void heap_sb_forget(struct heap *h);
bool heap_held_drop(struct heap *h, uint64_t off);
void heap_exec_leftover(void);
/* The own heap: drops the references recorded by holders that died (or
 * exited, or exec'd and then died) without releasing them. At most every
 * 250 ms unless `now`; cheap when no other process ever attached. */
void heap_reclaim_dead_holders(bool now);
/* Lets go of the attached heaps nothing has been held of for a second (or,
 * `all`, at all): cheap when there are none, or none is due yet. */
void heap_idle_sweep(bool all);
#define FOREIGN_RELEASED (-2)      /* struct heap.fd of a reusable entry */
int heap_ref(const void *p, struct rh_shm_ref *ref);

/* --- alloc.c: the allocator. site is a journal locator or 0. ------------- */
unsigned alloc_npools(void);
void free_foreign(struct heap *h, void *p);     /* a block of an attached heap (h may be NULL) */
void *realloc_block(void *p, size_t size, uint32_t site);
size_t block_usable(const void *p);
void *alloc_attach(struct heap *h, uint64_t sb_off, uint64_t off);
/* Drops up to N references a dead holder left on the block at OFF of h
 * (its superblock at SB_OFF), checked as an attach checks it: no more than
 * the block has, none when it is not a shared, allocated block. The
 * references dropped. */
uint32_t alloc_release_dead(struct heap *h, uint64_t sb_off, uint64_t off, uint32_t n);
/* Gives back the reference alloc_attach took (the attach failed after). */
void alloc_unattach(struct heap *h, void *p);
int alloc_ref(struct heap *h, const void *p, uint64_t *sb_off, uint64_t *off);
void alloc_trim(void);
void alloc_fork_prepare(void);
void alloc_fork_parent(void);
void alloc_fork_child(void);
/* The runs of data of the heap `arg` (os_data_runs_fn), from its own
 * records: the header, the committed pages of data superblocks outside free
 * spans, the journals up to their last record. For fork; its locks must be
 * held. */
int alloc_data_runs(const void *arg, uint64_t pos, uint64_t *start, uint64_t *end);
void alloc_stats(struct rh_shm_stats *st);

/* --- journal.c: modules and call sites. ---------------------------------- */
/* Locator of the site for these frames, made on first sight; 0 when the
 * journal is full or there is no heap. Never allocates with malloc. */
uint32_t journal_site(const uint64_t *frames, unsigned depth);
int journal_module(const char *path, uint64_t base, uint64_t start, uint64_t end,
	const uint8_t *build_id, size_t build_id_len);
void journal_modules_unloaded(void);
/* Around anything that may unload code: until the end, a frame in a
 * recorded module's range is checked to be that module's. */
void journal_unload_begin(void);
void journal_unload_end(void);
/* The unload counters (the journal's and the shim's walk's): one more
 * unload under way, or one fewer but never below none, as a forked child
 * starts from none even when the thread that forked was in an unload. */
static inline void unloads_enter(_Atomic unsigned *n)
{
	__atomic_fetch_add(n, 1, __ATOMIC_SEQ_CST);
}

static inline void unloads_leave(_Atomic unsigned *n)
{
	unsigned v = __atomic_load_n(n, __ATOMIC_RELAXED);
	while (v && !__atomic_compare_exchange_n(n, &v, v - 1, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
}
void journal_thread_exit(void);
/* Set by the shim: captures the current call stack as a site (its own
 * frames left out), so blocks made through the API get whole stacks too. */
extern uint32_t (*journal_capture)(void);
/* A block of `bytes` made (blocks 1) or freed (-1) at a site, counted by the
 * thread with counter slot `slot` (0: shared, atomic). Inline: the thread's
 * last entry, for a loop allocating at one site. */
void journal_count_slow(struct heap_header *hdr, uint32_t site, unsigned slot, int64_t bytes, int blocks);
/* The thread's last entry: valid for its counter slot and heap, so it is
 * forgotten when either changes (journal_forget_last). */
struct journal_last {
	struct journal_delta *e;
	uint32_t site;
};
extern __thread struct journal_last rh_jlast __attribute__((tls_model("initial-exec")));
extern unsigned journal_gen;        /* bumped when the heap changes (fork) */
static inline void journal_forget_last(void)
{
	rh_jlast.site = 0;
}

/* Single writer: plain stores, atomic only so readers see no tearing. */
static inline void journal_delta_add(struct journal_delta *e, int64_t bytes, int blocks)
{
	__atomic_store_n(&e->live_bytes, e->live_bytes + bytes * blocks, __ATOMIC_RELAXED);
	__atomic_store_n(&e->live_blocks, e->live_blocks + blocks, __ATOMIC_RELAXED);
	if (blocks > 0) {
		__atomic_store_n(&e->total_allocs, e->total_allocs + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&e->total_bytes, e->total_bytes + bytes, __ATOMIC_RELAXED);
	}
}

static inline void journal_count(struct heap_header *hdr, uint32_t site, unsigned slot, int64_t bytes, int blocks)
{
	if (__builtin_expect(slot && rh_jlast.site == site, 1)) {
		journal_delta_add(rh_jlast.e, bytes, blocks);
		return;
	}
	journal_count_slow(hdr, site, slot, bytes, blocks);
}
void journal_fork_prepare(void);
void journal_fork_parent(void);
void journal_fork_child(void);

/* --- api.c: process metrics. ---------------------------------------------- */
struct process_stats {
#define RH_STAT_FIELD(name, text) uint64_t name;
	RH_SHM_STATS(RH_STAT_FIELD)
#undef RH_STAT_FIELD
	uint64_t heaps_mapped;      /* other processes' heaps mapped by attach, in all */
};
extern struct process_stats rh_stats;
#define stat_add(field, n) __atomic_fetch_add(&rh_stats.field, (n), __ATOMIC_RELAXED)
void stats_print(void);

#pragma GCC visibility pop

#endif
