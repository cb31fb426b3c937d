/* SPDX-License-Identifier: MIT */
/*
 * redhawk-shm: a per-process heap in POSIX shared memory whose blocks other
 * processes can attach by reference (zero copy), and a read-only, validating
 * view of heap files for tools.
 */
#ifndef REDHAWK_SHM_H
#define REDHAWK_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RH_SHM_API __attribute__((visibility("default")))
#else
#define RH_SHM_API
#endif

/* --- Allocation ---------------------------------------------------------
 * Blocks live in this process's heap file, "heap-<pid>" in RH_SHM_DIR, made
 * at the first allocation. They return NULL with errno ENOMEM when shared
 * memory cannot be had (full filesystem, RH_SHMALLOC=disable). Like malloc
 * and free, these and the reference calls below are not async-signal-safe:
 * a signal handler that calls one while its thread is inside another (an
 * attach, say) may wait for ever on a lock that thread holds. */
RH_SHM_API void *rh_shm_alloc(size_t size);
RH_SHM_API void *rh_shm_alloc_aligned(size_t alignment, size_t size);
RH_SHM_API void *rh_shm_calloc(size_t count, size_t size);
RH_SHM_API void *rh_shm_realloc(void *ptr, size_t size);
/* Drops one reference; the last reference, in whichever process, frees. */
RH_SHM_API void rh_shm_free(void *ptr);
RH_SHM_API size_t rh_shm_usable_size(const void *ptr);
/* 1 if ptr is a block of this process's heap or of an attached one. */
RH_SHM_API int rh_shm_owns(const void *ptr);
/* Returns retained free pages to the filesystem, drops the references that
 * processes gone from this heap's holders left on its blocks, and lets go
 * of the attached heaps nothing is held of (see README). */
RH_SHM_API void rh_shm_trim(void);

/* --- References -----------------------------------------------------------
 * A reference is plain bytes: write it to a pipe or socket as it is. */
struct rh_shm_ref {
	char heap[32];        /* file name, "heap-<pid>", NUL-terminated */
	uint64_t instance;    /* the heap's instance id: a reused name is told apart */
	uint64_t superblock;  /* offset of the block's superblock in the file */
	uint64_t offset;      /* offset of the block's data in the file */
};

/* Fills *ref for a block of this process's heap (or an attached one). 0, or -1
 * with errno EINVAL when ptr is not such a block, ENOMEM when the block's
 * private pages (a malloc of RH_SHMALLOC_PRIVATE_SIZE or more under the shim)
 * cannot be moved into the heap file. */
RH_SHM_API int rh_shm_ref(const void *ptr, struct rh_shm_ref *ref);
/* Maps the referenced heap (once: it stays mapped for about a second after
 * the last release, see README) and takes a reference on the block;
 * release it with rh_shm_free (a process releases only references it
 * holds). NULL with errno set when the ref is bad (EINVAL), its heap is gone
 * (ENOENT) or was replaced (ESTALE), the block was already freed (ESTALE;
 * once its place holds a new block, the ref attaches that one: pass refs on
 * while holding the block), 64 heaps are attached already (ENFILE), or
 * memory ran out (ENOMEM). */
RH_SHM_API void *rh_shm_attach(const struct rh_shm_ref *ref);

/* --- State ---------------------------------------------------------------- */
RH_SHM_API const char *rh_shm_heap_name(void); /* NULL before the first allocation */
RH_SHM_API int rh_shm_enabled(void);

#define RH_SHM_STATS(X) \
	X(files_created, "heap files created") \
	X(superblocks, "superblocks created") \
	X(pools_used, "pools used") \
	X(blocks_created, "blocks allocated") \
	X(blocks_attached, "blocks attached from other processes") \
	X(blocks_released, "references released") \
	X(blocks_destroyed, "blocks freed") \
	X(bytes_punched, "bytes returned to the filesystem") \
	X(alloc_failures, "allocations refused (no shared memory)") \
	X(private_fallbacks, "allocations served from private memory")

struct rh_shm_stats {
#define RH_SHM_STATS_FIELD(name, text) uint64_t name;
	RH_SHM_STATS(RH_SHM_STATS_FIELD)
#undef RH_SHM_STATS_FIELD
	uint64_t heap_size;   /* bytes in data superblocks */
	uint64_t heap_used;   /* requested bytes of live blocks */
};
RH_SHM_API int rh_shm_stats(struct rh_shm_stats *stats);

/* --- Reader ---------------------------------------------------------------
 * A read-only view of a heap file, for tools. Every offset and length in the
 * file is checked against its size before use (the file may be hostile or
 * changing): a bad file makes these calls fail with a reason, never read out
 * of bounds. The reader uses pread(2) only, so a shrinking file cannot raise
 * SIGBUS. */
enum rh_heap_kind {
	RH_HEAP_NATIVE = 1,      /* written by this library */
	RH_HEAP_REDHAWK22 = 2,   /* written by REDHAWK 2.2 */
};

struct rh_heap_info {
	enum rh_heap_kind kind;
	unsigned version_major, version_minor;
	uint64_t file_size;
	uint64_t heap_size;       /* bytes of data superblocks */
	uint64_t heap_used;       /* live bytes */
	int64_t live_blocks;      /* -1 where the format does not say */
	pid_t creator_pid;
	uid_t creator_uid;
	uint64_t creator_start;   /* clock ticks since boot; 0 unknown */
	uint64_t created_ns;
	uint64_t instance;
	char command[64];         /* empty when unknown */
	unsigned superblocks, journal_superblocks;
	unsigned npools, trace_depth;
	uint32_t flags;
	int refcount;             /* live holders, creator included */
	int orphaned;             /* 1: the creator is gone */
};

struct rh_heap;

/* Opens NAME in the folder DIRFD, read-only, without following a symbolic
 * link, and reads its header. Returns 0, or an errno value:
 *   ENOENT, EACCES, ELOOP...  from open(2); *heap is NULL
 *   ENOTSUP  the file is not a heap (no known magic); *heap is NULL
 *   EPROTO   a heap that cannot be read (*heap is set: rh_heap_error says why,
 *            rh_heap_info gives what could be read) */
RH_SHM_API int rh_heap_open(int dirfd, const char *name, struct rh_heap **heap);
/* The same for a file the caller opened for reading: FD stays the caller's
 * (rh_heap_close does not close it) and must stay open while the heap is
 * used; walks move its file offset. EINVAL for a negative FD. */
RH_SHM_API int rh_heap_open_fd(int fd, struct rh_heap **heap);
RH_SHM_API void rh_heap_close(struct rh_heap *heap);
RH_SHM_API const char *rh_heap_error(const struct rh_heap *heap);
/* Header figures, heap size and used bytes (from superblock headers and
 * counters, without walking blocks), holders and orphan state. */
RH_SHM_API const struct rh_heap_info *rh_heap_info(const struct rh_heap *heap);

struct rh_block_info {
	uint64_t offset;          /* of the data in the file */
	uint64_t size;            /* requested bytes */
	uint64_t usable;          /* bytes the caller may use */
	uint32_t refcount;        /* references held */
	uint32_t site;            /* call-site id, 0: none */
	unsigned reachable : 1;   /* the exit scan found a pointer to it */
};

struct rh_site_info {
	uint32_t id;
	int64_t live_bytes, live_blocks;
	uint64_t total_allocs, total_bytes;
	unsigned depth;
	const uint64_t *frames;   /* innermost first; valid during the callback */
};

struct rh_module_info {
	uint64_t base, start, end;
	const uint8_t *build_id;
	size_t build_id_len;
	const char *path;
	uint64_t pos;             /* the record's offset in the file: a module recorded
	                             before a site (site id * 8) was loaded when the
	                             site was first seen */
};

/* Walks call each function for every item, in file order, until it returns
 * non-zero (which the walk returns). -1 with rh_heap_error set when the file
 * turns out to be bad part way through; items already reported stay valid. */
RH_SHM_API int rh_heap_walk_blocks(struct rh_heap *heap,
	int (*fn)(const struct rh_block_info *block, void *arg), void *arg);
RH_SHM_API int rh_heap_walk_sites(struct rh_heap *heap,
	int (*fn)(const struct rh_site_info *site, void *arg), void *arg);
RH_SHM_API int rh_heap_walk_modules(struct rh_heap *heap,
	int (*fn)(const struct rh_module_info *module, void *arg), void *arg);

/* Orphan test on an open file descriptor of a heap: 1 orphaned, 0 alive, -1
 * with errno. Uses the creator's lock where the heap has one, else the pid
 * (a process of another user counts as alive). */
RH_SHM_API int rh_heap_fd_orphaned(int fd, const struct rh_heap_info *info);

#ifdef __cplusplus
}
#endif

#endif
