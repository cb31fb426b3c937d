/* SPDX-License-Identifier: MIT */
/*
 * The heap file's lifecycle: made on demand under a temporary name, locked by
 * its creator and then renamed into place; grown superblock by superblock;
 * unlinked at exit; copied privately into a forked child; and other
 * processes' heaps mapped for references (attach).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/single_threaded.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "heap.h"

struct heap *rh_heap;
static struct heap own;
struct own_range rh_own __attribute__((aligned(64)));

/* A heap's reservation changed; for our own, the range heap_is_own tests. */
static void reserve_set(struct heap *h, size_t reserve)
{
	__atomic_store_n(&h->reserve, reserve, __ATOMIC_RELEASE);
	if (h == &own && rh_heap)
		__atomic_store_n(&rh_own.size, reserve, __ATOMIC_RELEASE);
}

/* Heaps of other processes mapped by attach, and regions inherited over
 * fork (private copies). Entries are published by bumping the count with a
 * release store and never removed, so lookups need no lock. */
static struct heap foreign[RH_MAX_FOREIGN];
static _Atomic unsigned nforeign;
/* Attached heaps that nothing is held of stay mapped for a second, so that
 * a process that attaches, releases and attaches again (a consumer taking
 * one buffer at a time) maps the heap once: when the first of them is due
 * to go, UINT64_MAX when none is (see idle_sweep). */
#define IDLE_KEEP_NS 1000000000ull
static uint64_t idle_due_ns = UINT64_MAX;
static struct inherited_region {
	char *base;
	size_t size;
} inherited[RH_MAX_INHERITED];
static _Atomic unsigned ninherited;

static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t grow_lock = PTHREAD_MUTEX_INITIALIZER;
/* The page classes' place and bytes; taken under grow_lock or a pool's. */
static pthread_mutex_t classes_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t foreign_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;
static bool options_loaded;
static uint64_t create_retry_ns;  /* no new attempt before this (monotonic) */
static int create_errno;
/* heap_reclaim_dead_holders: one thread at a time looks, not more often
 * than every 250 ms (a fork child starts afresh). */
static pthread_mutex_t reclaim_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t reclaim_ns;
static unsigned reclaim_next;  /* the next slot to look at, less 1 (reclaim_lock) */
static int fork_pipe[2] = { -1, -1 };
/* When no pipe can be had (no descriptor left): a shared page the child
 * writes its PID and then "done" to. */
static int fork_errno;    /* the program's errno, kept across fork */
static struct fork_sync {
	_Atomic int child;
	_Atomic uint32_t done;
} *fork_sync;

struct process_stats rh_stats;

const struct options *options_get(void)
{
	if (!__atomic_load_n(&options_loaded, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&create_lock);
		if (!options_loaded) {
			options_load(&rh_options);
			__atomic_store_n(&options_loaded, true, __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&create_lock);
	}
	return &rh_options;
}

/* Address space to reserve for a heap: the filesystem's size rounded up to a
 * power of two, between 1 GiB and 1 TiB. A heap cannot outgrow its folder.
 * Under an address space limit (ulimit -v), at most a share of it (a quarter
 * for our own heap, a sixteenth for each attached one), but never less than
 * at_least. */
static size_t reserve_size(int fd, uint64_t at_least, unsigned share)
{
	struct statvfs vfs;
	uint64_t want = 1ULL << 30;
	if (fstatvfs(fd, &vfs) == 0)
		want = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	/* Block headers name superblocks by page number in 26 bits. */
	uint64_t cap = (uint64_t)(RH_SB_PAGE_MASK + 1) * os_page_size();
	if (cap > (1ULL << 40))
		cap = 1ULL << 40;
	struct rlimit rl;
	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / share < cap) {
		cap = 1ULL << 21;
		while (cap * 2 <= rl.rlim_cur / share)
			cap <<= 1;
	}
	uint64_t r = 1ULL << 30;
	if (r > cap)
		r = cap;
	while (r < want && r < cap)
		r <<= 1;
	while (r < at_least)
		r <<= 1;
	return (size_t)r;
}

/* Absolute paths of h's folder and file, to open them again by (a program
 * may chdir, or take our descriptors); empty when they do not fit. */
static void set_paths(struct heap *h, const char *dir, const char *name)
{
	char real[PATH_MAX];
	h->dir[0] = h->path[0] = 0;
	if (!realpath(dir, real) || strlen(real) >= sizeof(h->dir))
		return;
	strcpy(h->dir, real);
	if ((size_t)snprintf(h->path, sizeof(h->path), "%s/%s", real, name) >= sizeof(h->path))
		h->path[0] = 0;
}

static void parse_boot_id(uint8_t out[16])
{
	char buf[64];
	memset(out, 0, 16);
	if (os_read_small("/proc/sys/kernel/random/boot_id", buf, sizeof(buf)))
		return;
	int n = 0;
	for (char *p = buf; *p && n < 32; p++) {
		int v;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else
			continue;
		out[n / 2] |= (uint8_t)(n % 2 ? v : v << 4);
		n++;
	}
}

/* The header's fixed part, rounded up to pages; then the holders'
 * reference tables, rounded up too. */
static uint32_t header_fixed(size_t page)
{
	return RH_HEADER_SIZE > page ? RH_HEADER_SIZE : (uint32_t)page;
}

static uint32_t header_bytes(size_t page)
{
	uint32_t n = header_fixed(page) + RH_MAX_HOLDERS * RH_REF_TABLE_SIZE;
	return (n + (uint32_t)page - 1) & ~((uint32_t)page - 1);
}

static void fill_header(struct heap_header *hdr, const struct options *opt, size_t page)
{
	hdr->version_major = RH_HEAP_VERSION_MAJOR;
	hdr->version_minor = RH_HEAP_VERSION_MINOR;
	hdr->header_size = header_bytes(page);
	hdr->ref_tables = header_fixed(page);
	hdr->ref_table_size = RH_REF_TABLE_SIZE;
	hdr->page_size = (uint32_t)page;
	if (getrandom(&hdr->instance, sizeof(hdr->instance), GRND_NONBLOCK) != sizeof(hdr->instance))
		hdr->instance = os_now_ns(CLOCK_MONOTONIC) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
	hdr->superblocks_end = hdr->header_size;
	hdr->creator_pid = getpid();
	hdr->creator_uid = getuid();
	os_proc_start_time(hdr->creator_pid, &hdr->creator_start);
	hdr->created_ns = os_now_ns(CLOCK_REALTIME);
	struct stat st;
	if (stat("/proc/self/ns/pid", &st) == 0)
		hdr->pid_ns = st.st_ino;
	parse_boot_id(hdr->boot_id);
	hdr->flags = RH_HEAP_F_LOCKED | (opt->keep ? RH_HEAP_F_KEEP : 0);
	hdr->npools = alloc_npools();
	hdr->trace_depth = opt->trace_depth;
	char comm[RH_COMMAND_LEN];
	if (os_read_small("/proc/self/comm", comm, sizeof(comm)) == 0)
		memcpy(hdr->command, comm, strlen(comm) + 1);
	hdr->holders[0].pid = hdr->creator_pid;
	hdr->holders[0].state = RH_HOLDER_CLAIMED;
	hdr->holders[0].start_time = hdr->creator_start;
	/* Last: a reader that finds the file under its first name reads it as
	 * a heap only once its creator and lock flag are there. */
	__atomic_store_n(&hdr->magic, RH_HEAP_MAGIC, __ATOMIC_RELEASE);
}

/* Is the existing heap-<pid> a heap whose creator is gone (or a file of this
 * PID's earlier program image, whose lock went with exec)? Only then may it
 * be replaced. */
static bool replaceable(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT;
	uint32_t magic = 0;
	bool held = true;
	struct stat st;
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		pread(fd, &magic, sizeof(magic), 0) == sizeof(magic) &&
		(magic == RH_HEAP_MAGIC || magic == RH_REDHAWK22_MAGIC) &&
		os_lock_held(fd, RH_LOCK_BASE, &held) == 0 && !held;
	close(fd);
	return ok;
}

/* The thread making the heap, while it does, and the process's end begun:
 * each side sets its own, then looks at the other's (both sequentially
 * consistent), so either the exit waits for the heap being made, or no
 * heap is begun once the exit has looked. The name the heap has while it
 * is made, for an exit from a signal handler that interrupted that. */
static pid_t creating;
static pid_t exiting;  /* the pid ending: a vfork child's _exit is not its parent's */
static int creating_dirfd = -1;
static char creating_tmp[64];

static int create(struct heap *h)
{
	const struct options *opt = options_get();
	size_t page = os_page_size();
	char tmp[64];
	int err;

	if (!opt->enabled)
		return ENOMEM;
	int dirfd = os_fd_high(open(opt->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (dirfd < 0)
		return errno;

	memset(h, 0, sizeof(*h));
	h->pid = getpid();
	h->page_shift = (unsigned)__builtin_ctzl(page);
	snprintf(h->name, sizeof(h->name), "heap-%d", (int)h->pid);
	snprintf(tmp, sizeof(tmp), ".heap-%d.%lx.tmp", (int)h->pid, (unsigned long)os_now_ns(CLOCK_MONOTONIC));
	memcpy(creating_tmp, tmp, sizeof(creating_tmp));
	__atomic_store_n(&creating_dirfd, dirfd, __ATOMIC_RELEASE);

	int fd = os_fd_high(openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
	if (fd < 0) {
		err = errno;
		close(dirfd);
		return err;
	}
	/* Locked from the start: a tool that finds the file half made, its
	 * maker stopped, sees it held. */
	if ((err = os_lock_byte(fd, RH_LOCK_BASE)) || (err = os_file_id(fd, &h->id)) ||
	    (err = os_file_id(dirfd, &h->dir_id)))
		goto fail;
	/* Exactly the mode asked for, whatever the umask. */
	if (fchmod(fd, opt->mode) != 0 && fchmod(fd, opt->mode & 0777) != 0)
		goto fail_errno;
	/* The reference tables stay holes until their holders write them. */
	uint32_t hsize = header_bytes(page);
	if ((err = os_grow(fd, hsize)) || (err = os_commit(fd, 0, header_fixed(page))))
		goto fail;
	h->reserve = reserve_size(dirfd, hsize, 4);
	void *base, *classes;
	if ((err = os_reserve(h->reserve, 1u << 21, &base)))
		goto fail;
	/* Reserved only: heap_grow makes what the heap maps usable. */
	h->classes_size = ((h->reserve >> RH_CLASS_GRAIN) + page - 1) & ~(size_t)(page - 1);
	if ((err = os_reserve(h->classes_size, page, &classes))) {
		os_release(base, h->reserve);
		goto fail;
	}
	h->base = base;
	h->classes = classes;
	if ((err = os_map_shared(fd, 0, hsize, base))) {
		os_release(classes, h->classes_size);
		os_release(base, h->reserve);
		goto fail;
	}
	h->hdr = base;
	h->mapped_end = hsize;
	h->fd = fd;
	h->writes_new_pages = os_is_tmpfs(fd);
	fill_header(h->hdr, opt, page);
	h->ref_tables = h->hdr->ref_tables;
	h->instance = h->hdr->instance;
	/* Visible under its name only now, initialised and locked. */
	for (int tries = 0;; tries++) {
		if (renameat2(dirfd, tmp, dirfd, h->name, RENAME_NOREPLACE) == 0)
			break;
		err = errno;
		if (err != EEXIST || tries > 4)
			goto fail_unmap;
		if (replaceable(dirfd, h->name) && unlinkat(dirfd, h->name, 0) == 0)
			continue;
		if (tries == 0 || strchr(h->name + 5, '-') == NULL) {
			/* A live heap of the same PID: a process of another PID
			 * namespace (a container sharing the folder); or a dead one
			 * we may not remove (this PID's earlier image, root's, in a
			 * folder with the sticky bit, before it dropped root for
			 * good and exec'd us). Ours takes the namespace's inode as a
			 * suffix. */
			snprintf(h->name, sizeof(h->name), "heap-%d-%llu", (int)h->pid,
				(unsigned long long)h->hdr->pid_ns);
		}
	}
	/* Under valgrind, the header again, mapped under the file's final name:
	 * its address-space manager keeps a name per mapping and fails an
	 * assertion (3.19) when it merges a mapping of the old name with the
	 * next one of this file. The same pages at the same address. */
	const char *preload = getenv("LD_PRELOAD");
	if (preload && strstr(preload, "/vgpreload_"))
		os_map_shared(fd, 0, hsize, base);
	set_paths(h, opt->dir, h->name);
	h->dirfd = dirfd;
	stat_add(files_created, 1);
	return 0;

fail_errno:
	err = errno;
	goto fail;
fail_unmap:
	munmap(h->classes, h->classes_size);
	munmap(h->base, h->reserve);
fail:
	unlinkat(dirfd, tmp, 0);
	close(fd);
	close(dirfd);
	memset(h, 0, sizeof(*h));
	return err;
}

struct heap *heap_get_slow(void)
{
	struct heap *h = NULL;
	pthread_mutex_lock(&create_lock);
	if (rh_heap) {
		h = rh_heap;
		goto out;
	}
	if (!options_loaded) {
		options_load(&rh_options);
		__atomic_store_n(&options_loaded, true, __ATOMIC_RELEASE);
	}
	/* After a failure (full or missing folder), try again at most once a
	 * second rather than on every allocation. */
	uint64_t t = os_now_ns(CLOCK_MONOTONIC_COARSE);
	if (create_errno && t < create_retry_ns) {
		errno = create_errno;
		goto out;
	}
	int saved = errno;
	__atomic_store_n(&creating, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&exiting, __ATOMIC_SEQ_CST) == getpid()) {
		errno = ENOMEM; /* the process is ending: private memory will do */
		goto out;
	}
	int err = create(&own);
	errno = saved;  /* a heap made is no error for the caller to see */
	if (err) {
		if (!create_errno && rh_options.enabled)
			/* Not strerror: it takes the C library's locale lock, which
			 * setlocale holds when it allocates. */
			rh_warn("cannot create a heap in %s: %s", rh_options.dir,
				strerrordesc_np(err) ? strerrordesc_np(err) : "unknown error");
		create_errno = err == ENOSPC ? ENOMEM : err;
		create_retry_ns = t + 1000000000u;
		errno = create_errno;
		goto out;
	}
	create_errno = 0;
	/* Under the growth lock, which a trim of the reservation takes: the
	 * range published is the one a trim then shrinks. */
	pthread_mutex_lock(&grow_lock);
	rh_own.classes_bias = (uintptr_t)own.classes - ((uintptr_t)own.base >> RH_CLASS_GRAIN);
	__atomic_store_n(&rh_own.base, (uintptr_t)own.base, __ATOMIC_RELAXED);
	__atomic_store_n(&rh_own.size, own.reserve, __ATOMIC_RELEASE);
	__atomic_store_n(&rh_heap, &own, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&grow_lock);
	h = &own;
out:
	__atomic_store_n(&creating_dirfd, -1, __ATOMIC_RELEASE);
	__atomic_store_n(&creating, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&create_lock);
	return h;
}

/* Opens path again when it is still the file id names: a descriptor moved
 * out of the way, or -1. The folder may be anyone's: the name may now be a
 * symlink (the file is opened with O_NOFOLLOW, the folder only as one), a
 * FIFO or another file, none of which is taken. */
static int reopen(const char *path, int flags, const struct os_file_id *id)
{
	int fd = open(path, flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -1;
	if (!os_fd_is(fd, id)) {
		close(fd);
		return -1;
	}
	return os_fd_high(fd);
}

/* *slot, checked to still be the file id names. The program may have closed
 * our descriptor, or put another file under its number: that number is the
 * program's now and is left alone, and the file is opened again by path.
 * Our locks stay: they belong to the open file, which our mappings keep
 * open until exit or exec. */
static int checked_fd(int *slot, const struct os_file_id *id, const char *path, int flags)
{
	int fd = __atomic_load_n(slot, __ATOMIC_ACQUIRE), saved = errno;
	if (os_fd_is(fd, id))
		return fd;
	pthread_mutex_lock(&fd_lock);
	fd = *slot;
	if (fd >= 0 && !os_fd_is(fd, id)) {
		fd = path[0] ? reopen(path, flags, id) : -1;
		if (fd >= 0)
			__atomic_store_n(slot, fd, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&fd_lock);
	errno = fd < 0 ? EBADF : saved; /* a free or an allocation that succeeds leaves errno as it was */
	return fd;
}

int heap_fd(struct heap *h)
{
	return checked_fd(&h->fd, &h->id, h->path, O_RDWR | O_NOFOLLOW);
}

int heap_dirfd(struct heap *h)
{
	return checked_fd(&h->dirfd, &h->dir_id, h->dir, O_RDONLY | O_DIRECTORY);
}

/* Closes what is still ours of h's descriptors. */
static void heap_close(struct heap *h)
{
	if (os_fd_is(h->fd, &h->id))
		close(h->fd);
	if (h->dir_id.ino && os_fd_is(h->dirfd, &h->dir_id))
		close(h->dirfd);
}

/* The page classes cover the heap up to `end` (grow_lock held): within
 * their reservation, or past it (trimmed) where nothing else is mapped;
 * else they move to a new place twice as big. The old place stays mapped,
 * as a free may still read there: what it reads is right for the blocks
 * it can hold, which were all made before the move, and the bytes written
 * since (heap_classes_set, under classes_lock too) go to the new place. */
static bool classes_cover(struct heap *h, uint64_t end)
{
	size_t page = (size_t)1 << h->page_shift;
	size_t need = ((end >> RH_CLASS_GRAIN) + page - 1) & ~(page - 1);
	if (need <= h->classes_ready)
		return true;
	bool ok = true;
	pthread_mutex_lock(&classes_lock);
	uint8_t *at = h->classes + h->classes_ready;
	size_t n = need - h->classes_ready;
	if (need <= h->classes_size ? os_map_anon(at, n) == 0 :
	    h->classes_ready == h->classes_size && os_map_anon_new(at, n) == 0) {
		if (h->classes_size < need)
			h->classes_size = need;
		h->classes_ready = need;
	} else {
		size_t size = need * 2;
		uint8_t *moved = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (moved != MAP_FAILED) {
			memcpy(moved, h->classes, h->classes_ready);
			h->classes = moved;
			h->classes_size = h->classes_ready = size;
			__atomic_store_n(&rh_own.classes_bias, (uintptr_t)moved - ((uintptr_t)h->base >> RH_CLASS_GRAIN),
				__ATOMIC_RELEASE);
		} else {
			ok = false;
		}
	}
	pthread_mutex_unlock(&classes_lock);
	return ok;
}

void heap_classes_set(struct heap *h, uint64_t offset, uint64_t bytes, uint8_t v)
{
	pthread_mutex_lock(&classes_lock);
	memset(h->classes + (offset >> RH_CLASS_GRAIN), v, (size_t)(bytes >> RH_CLASS_GRAIN));
	pthread_mutex_unlock(&classes_lock);
}

/* Appends a superblock of `size` bytes (a multiple of the page size) with a
 * header of `header_size` bytes. The header pages are reserved with
 * fallocate; data pages stay holes until spans are carved from them. */
struct superblock *heap_grow(struct heap *h, uint64_t size, uint32_t header_size, uint32_t hole_from,
			     uint32_t hole_to, unsigned kind, unsigned pool)
{
	struct superblock *sb = NULL;
	int err;
	pthread_mutex_lock(&grow_lock);
	struct heap_header *hdr = h->hdr;
	uint64_t off = hdr->superblocks_end;
	uint64_t cap = h->trimmed ? h->limit : h->reserve;
	if (size > cap || off > cap - size) {
		errno = ENOMEM;
		goto out;
	}
	/* Past what we hold (the reservation was trimmed): only where the
	 * address space is still free. */
	bool beyond = off + size > h->reserve;
	int fd = heap_fd(h);
	if (fd < 0) {
		errno = ENOMEM;
		goto out;
	}
	if ((err = os_grow(fd, off + size))) {
		errno = err == EFBIG ? ENOMEM : err;
		goto out;
	}
	if (h->classes && !classes_cover(h, off + size)) {
		os_shrink(fd, off);
		errno = ENOMEM;
		goto out;
	}
	bool mapped = false;
	err = beyond ? os_map_shared_new(fd, off, size, h->base + off) : os_map_shared(fd, off, size, h->base + off);
	if (!err) {
		mapped = true;
		if (hole_to <= hole_from || hole_from > header_size)
			hole_from = hole_to = header_size;
		else if (hole_to > header_size)
			hole_to = header_size;
		err = hole_from ? os_commit(fd, off, hole_from) : 0;
		if (!err && hole_to < header_size)
			err = os_commit(fd, off + hole_to, header_size - hole_to);
	}
	if (err) {
		/* Give the address range back to the reservation (or, past it, to
		 * the system if we mapped it), the bytes to the filesystem. */
		if (!beyond)
			os_map_none(h->base + off, size);
		else if (mapped)
			munmap(h->base + off, size);
		os_shrink(fd, off);
		errno = err == ENOSPC || err == EEXIST ? ENOMEM : err;
		goto out;
	}
	sb = (struct superblock *)(h->base + off);
	sb->kind = (uint16_t)kind;
	sb->pool = (uint16_t)pool;
	sb->offset = off;
	sb->size = size;
	sb->header_size = header_size;
	sb->npages = (uint32_t)(size >> h->page_shift);
	if (kind == RH_SB_JOURNAL)
		sb->journal_end = header_size;
	__atomic_store_n(&sb->magic, RH_SB_MAGIC, __ATOMIC_RELEASE);
	h->mapped_end = off + size;
	if (beyond)
		reserve_set(h, off + size);
	__atomic_store_n(&hdr->superblocks_end, off + size, __ATOMIC_RELEASE);
	stat_add(superblocks, 1);
out:
	pthread_mutex_unlock(&grow_lock);
	return sb;
}

static void trim(struct heap *h)
{
	uint64_t end = h->mapped_end;
	if (h->trimmed || !h->base || end >= h->reserve)
		return;
	/* Ownership shrinks first: once unmapped, the range may be anyone's. */
	size_t was = h->reserve;
	h->limit = was;
	h->trimmed = true;
	reserve_set(h, end);
	munmap(h->base + end, was - end);
	if (h->classes && h->classes_size > h->classes_ready) {
		munmap(h->classes + h->classes_ready, h->classes_size - h->classes_ready);
		h->classes_size = h->classes_ready;
	}
}

void heap_trim_reservations(void)
{
	pthread_mutex_lock(&grow_lock);
	if (rh_heap)
		trim(&own);
	pthread_mutex_unlock(&grow_lock);
	pthread_mutex_lock(&foreign_lock);
	unsigned n = atomic_load(&nforeign);
	for (unsigned i = 0; i < n; i++)
		if (foreign[i].fd >= 0)
			trim(&foreign[i]);
	pthread_mutex_unlock(&foreign_lock);
}

struct heap *heap_of(const void *p)
{
	uintptr_t a = (uintptr_t)p;
	if (heap_is_own(p))
		return &own;
	unsigned n = atomic_load_explicit(&nforeign, memory_order_acquire);
	for (unsigned i = 0; i < n; i++)
		if (a - (uintptr_t)foreign[i].base < foreign[i].mapped_end)
			return &foreign[i];
	return NULL;
}

/* The region inherited over fork that holds p, or NULL. */
static const struct inherited_region *inherited_at(const void *p)
{
	uintptr_t a = (uintptr_t)p;
	unsigned n = atomic_load_explicit(&ninherited, memory_order_acquire);
	for (unsigned i = 0; i < n; i++)
		if (a - (uintptr_t)inherited[i].base < inherited[i].size)
			return &inherited[i];
	return NULL;
}

enum owner heap_owner(const void *p)
{
	struct heap *h = heap_of(p);
	/* An entry released meanwhile is still an attached heap's (free_foreign
	 * refuses the pointer); inherited ones have fd -1. */
	if (h)
		return h == &own ? OWNER_SELF : h->fd != -1 ? OWNER_FOREIGN : OWNER_INHERITED;
	return inherited_at(p) ? OWNER_INHERITED : OWNER_NONE;
}

bool heap_inherited_view(const void *p, struct heap *view)
{
	uintptr_t a = (uintptr_t)p;
	const struct inherited_region *r = inherited_at(p);
	if (r) {
		memset(view, 0, sizeof(*view));
		view->base = r->base;
		view->hdr = (struct heap_header *)view->base;
		view->reserve = r->size;
		view->mapped_end = r->size;
		view->page_shift = (unsigned)__builtin_ctzl(os_page_size());
		view->fd = -1;
		return true;
	}
	unsigned n = atomic_load_explicit(&nforeign, memory_order_acquire);
	for (unsigned i = 0; i < n; i++)
		if (foreign[i].fd < 0 && a - (uintptr_t)foreign[i].base < foreign[i].mapped_end) {
			*view = foreign[i];
			return true;
		}
	return false;
}

size_t heap_inherited_left(const void *p)
{
	const struct inherited_region *r = inherited_at(p);
	return r ? r->size - (size_t)((const char *)p - r->base) : 0;
}

/* --- Exit ---------------------------------------------------------------- */

bool (*heap_keep_useful)(void);

void heap_unlink_at_exit(void)
{
	__atomic_store_n(&exiting, getpid(), __ATOMIC_SEQ_CST);
	if (!rh_options.keep || (heap_keep_useful && !heap_keep_useful()))
		heap_unlink_now();
}

/* The process runs, for now, as another user than its heap file's owner
 * (seteuid), and the folder has the sticky bit: this thread alone (the raw
 * system call, not the C library's, which changes every thread) becomes
 * the owner again, when its real or saved user id allows, removes the
 * name, and goes back. A process that dropped root for good cannot: its
 * heap stays, root's, for the tools to remove; it is never given to the
 * user the process became, who could then read what it held as root. */
static void unlink_as_owner(struct heap *h, int dirfd, uid_t owner)
{
	uid_t r, e, s;
	int saved = errno;
	/* Only where the way back is sure: to root, or to an id the real or
	 * saved one still is. */
	if (getresuid(&r, &e, &s) == 0 && owner != e && (owner == r || owner == s) &&
	    (owner == 0 || e == r || e == s) && syscall(SYS_setresuid, -1, owner, -1) == 0) {
		unlinkat(dirfd, h->name, 0);
		if (syscall(SYS_setresuid, -1, e, -1) != 0)
			rh_warn("cannot take back user id %u after removing the heap", (unsigned)e);
	}
	errno = saved;
}

/* Waits (at most 1 s: a thread stopped in a debugger) until no thread makes
 * the heap. */
static void wait_for_maker(void)
{
	for (int i = 0; i < 1000 && __atomic_load_n(&creating, __ATOMIC_ACQUIRE); i++) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
}

void heap_unlink_now(void)
{
	struct heap *h = rh_heap;
	/* Another thread may be making the heap as this one ends the process:
	 * its name, once made, must go too. The wait is bounded (a thread
	 * stopped in a debugger), and never on this thread's own making (an
	 * exit from a signal handler that interrupted it). */
	pid_t maker = __atomic_load_n(&creating, __ATOMIC_SEQ_CST);
	pid_t self = maker ? (pid_t)syscall(SYS_gettid) : 0;
	int tmpdir = __atomic_load_n(&creating_dirfd, __ATOMIC_ACQUIRE);
	if (!h && maker && maker == self && tmpdir >= 0) {
		/* This very thread was making it (an exit from a signal handler
		 * that interrupted that): its temporary name goes, or its name
		 * if it was renamed already (still our file). */
		struct stat st;
		unlinkat(tmpdir, creating_tmp, 0);
		if (own.id.ino && fstatat(tmpdir, own.name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    (uint64_t)st.st_dev == own.id.dev && (uint64_t)st.st_ino == own.id.ino)
			unlinkat(tmpdir, own.name, 0);
		return;
	}
	if (!h && maker && maker != self) {
		wait_for_maker();
		h = __atomic_load_n(&rh_heap, __ATOMIC_ACQUIRE);
	}
	if (!h || h->unlinked || h->pid != getpid())
		return;
	h->unlinked = true;
	/* Remove the name only if it is still our file. */
	struct stat there;
	int dirfd = heap_dirfd(h);
	if (dirfd >= 0 && fstatat(dirfd, h->name, &there, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (uint64_t)there.st_dev == h->id.dev && (uint64_t)there.st_ino == h->id.ino &&
	    unlinkat(dirfd, h->name, 0) != 0 && (errno == EPERM || errno == EACCES))
		unlink_as_owner(h, dirfd, there.st_uid);
}

bool heap_exec_hold(void)
{
	/* Bounded: a signal handler that interrupted this thread's fork or
	 * making of the heap would wait on itself. */
	pid_t maker = __atomic_load_n(&creating, __ATOMIC_SEQ_CST);
	if (maker && maker != (pid_t)syscall(SYS_gettid))
		wait_for_maker();
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 1;
	return pthread_mutex_clocklock(&create_lock, CLOCK_MONOTONIC, &until) == 0;
}

bool heap_making_here(void)
{
	/* The maker's thread id, in this thread group (not in a vfork child's). */
	pid_t maker = __atomic_load_n(&creating, __ATOMIC_SEQ_CST);
	return maker && syscall(SYS_tgkill, getpid(), maker, 0) == 0;
}

void heap_exec_release(void)
{
	pthread_mutex_unlock(&create_lock);
}

__attribute__((destructor)) static void heap_fini(void)
{
	if (rh_options.metrics)
		stats_print();
	heap_unlink_at_exit();
}

/* --- Fork ---------------------------------------------------------------- */

static bool anything_mapped(void)
{
	return rh_heap || atomic_load(&nforeign) > 0;
}

bool rh_fork_locking;

void heap_fork_prepare(void)
{
	rh_fork_locking = !__libc_single_threaded;
	if (rh_fork_locking) {
		/* The child copies the heaps through their descriptors: still ours? */
		if (rh_heap)
			heap_fd(&own);
		pthread_mutex_lock(&create_lock);
		pthread_mutex_lock(&foreign_lock);
		unsigned n = atomic_load(&nforeign);
		for (unsigned i = 0; i < n; i++)
			if (foreign[i].fd >= 0)
				heap_fd(&foreign[i]);
	}
	journal_fork_prepare();
	alloc_fork_prepare();
	if (rh_fork_locking) {
		pthread_mutex_lock(&grow_lock);
		pthread_mutex_lock(&fd_lock);
	}
	if (anything_mapped() && pipe2(fork_pipe, O_CLOEXEC) != 0) {
		fork_pipe[0] = fork_pipe[1] = -1;
		void *m = mmap(NULL, sizeof(*fork_sync), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		fork_sync = m == MAP_FAILED ? NULL : m;
	}
	/* errno 0 from here: after fork, the parent's handler tells a failed
	 * fork (errno set) from one that made a child, and puts errno back. */
	fork_errno = errno;
	errno = 0;
}

/* The parent's wait on fork_sync: until the child is done or has died.
 * A child that never says its PID (killed at once) is given up after 10 s;
 * so is one whose PID we cannot ask about (another PID namespace). */
static void fork_sync_wait(void)
{
	uint64_t start = os_now_ns(CLOCK_MONOTONIC);
	while (!atomic_load(&fork_sync->done)) {
		pid_t c = atomic_load(&fork_sync->child);
		siginfo_t si = { 0 };
		if (c > 0 && waitid(P_PID, (id_t)c, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == c)
			break; /* died before it was done */
		if (os_now_ns(CLOCK_MONOTONIC) - start > 10000000000ull)
			break;
		struct timespec ts = { 0, 1000000 };
		syscall(SYS_futex, &fork_sync->done, FUTEX_WAIT, 0, &ts, NULL, 0);
	}
}

/* The parent waits until the child has copied the shared mappings, so the
 * child's copy is the memory as it was at fork(); our locks are still held,
 * so no allocation changes the heap meanwhile. */
void heap_fork_parent(void)
{
	bool failed = errno != 0;
	if (fork_pipe[0] >= 0) {
		close(fork_pipe[1]);
		char c;
		while (read(fork_pipe[0], &c, 1) < 0 && errno == EINTR)
			;
		close(fork_pipe[0]);
		fork_pipe[0] = fork_pipe[1] = -1;
	} else if (fork_sync) {
		if (!failed)
			fork_sync_wait();
		munmap(fork_sync, sizeof(*fork_sync));
		fork_sync = NULL;
	}
	if (rh_fork_locking) {
		pthread_mutex_unlock(&fd_lock);
		pthread_mutex_unlock(&grow_lock);
	}
	alloc_fork_parent();
	journal_fork_parent();
	if (rh_fork_locking) {
		pthread_mutex_unlock(&foreign_lock);
		pthread_mutex_unlock(&create_lock);
	}
	if (!failed)
		errno = fork_errno;
}

/* Runs of data of our heap for the child's copy: where the heap's records
 * and the file (SEEK_DATA) agree there is data. The file's last run is
 * kept: on tmpfs SEEK_HOLE walks the whole run of data it starts in, and
 * the heap's records cut a heap written end to end into many runs, which
 * asked the file again each time made a fork's copy quadratic (1 GB of
 * small blocks: 4 to 11 s). */
struct copy_runs {
	const struct heap *h;
	uint64_t data, hole;  /* the file's last run of data: [data, hole) */
};

#define SHORT_RUN (64u << 10)

static int own_data_runs(const void *arg, uint64_t pos, uint64_t *start, uint64_t *end)
{
	struct copy_runs *c = (struct copy_runs *)arg;
	const struct heap *h = c->h;
	for (;;) {
		uint64_t s = pos, e = pos, d, x;
		int r = alloc_data_runs(h, pos, &s, &e);
		if (s < pos)
			s = pos;
		if (r == 2) {
			*start = s;
			*end = e;
		}
		if (r != 1)
			return r;
		/* A short run is read whole: asking the file where its data is
		 * (two system calls) costs more than reading a few pages, and
		 * pages of zeros are not copied either way. */
		if (e - s <= SHORT_RUN) {
			*start = s;
			*end = e;
			return 1;
		}
		if (s >= c->data && s < c->hole) {
			d = s;
			x = c->hole;
		} else {
			r = os_fd_data_runs(&h->fd, s, &d, &x);
			if (r <= 0)
				return r;
			c->data = d;
			c->hole = x;
		}
		if (d < e) {
			*start = d > s ? d : s;
			*end = x < e ? x : e;
			return 1;
		}
		pos = d; /* the next data the file has, past this run */
	}
}

/* Records a region inherited over fork. When the table is full the last
 * entry grows to cover the new region too: a pointer the hull covers that was
 * never a heap block is then treated as inherited (its free does nothing),
 * which leaks rather than crashes. */
static void inherit(char *base, size_t size)
{
	unsigned n = atomic_load(&ninherited);
	if (n < RH_MAX_INHERITED) {
		inherited[n].base = base;
		inherited[n].size = size;
		atomic_store_explicit(&ninherited, n + 1, memory_order_release);
		return;
	}
	char *lo = inherited[n - 1].base < base ? inherited[n - 1].base : base;
	char *a = inherited[n - 1].base + inherited[n - 1].size, *b = base + size;
	char *hi = a > b ? a : b;
	inherited[n - 1].size = (size_t)(hi - lo);
	inherited[n - 1].base = lo;
}

/* What a forked child could not copy stops being the parent's memory: no
 * access to it, or no mapping at all. Failing both (no mapping left to
 * split under vm.max_map_count), the child would write into the parent's
 * heap, so it ends instead. Unmapped, the range is reserved again where
 * that can be (one mapping fits where the pieces' splits did not), so
 * that nothing else is placed there: it stays the parent's, whose blocks'
 * frees do nothing, and a free of one of them never reaches the C library
 * (which would read the unmapped header). */
static void fork_cut(char *at, size_t size, const char *what, int err)
{
	rh_warn("fork: cannot copy all of %s (%s); the child cannot use the rest", what,
		strerrordesc_np(err) ? strerrordesc_np(err) : "unknown error");
	if (os_map_none(at, size) == 0)
		return;
	if (munmap(at, size) == 0) {
		(void)os_map_none(at, size);
		return;
	}
	rh_warn("fork: the child cannot part from %s: it exits", what);
	_exit(127);
}

static void foreign_release(struct heap *h);
static bool idle_take(struct heap *h);

/* The child gets private copies of every shared mapping, at the same
 * addresses, and from then on treats those blocks as private memory: its own
 * new allocations go to a heap of its own. */
void heap_fork_child(void)
{
	if (fork_sync)
		atomic_store(&fork_sync->child, getpid());
	if (rh_heap) {
		/* The heap's own records tell which pages hold data (free spans
		 * hold none), the file which of those were ever written; they are
		 * read from the file, or from the mapping when the program took
		 * our descriptor. */
		int fd = os_fd_is(own.fd, &own.id) ? own.fd : -1;
		size_t done;
		struct copy_runs runs = { &own, 0, 0 };
		int err = fd >= 0 ? os_map_private_copy(fd, own.base, own.mapped_end, own_data_runs, &runs, &done)
				  : os_map_private_copy(fd, own.base, own.mapped_end, alloc_data_runs, &own, &done);
		if (err)
			fork_cut(own.base + done, own.mapped_end - done, "the parent's heap", err);
		heap_close(&own);
		/* The reservation past the heap is not the child's to keep. */
		if (own.reserve > own.mapped_end)
			munmap(own.base + own.mapped_end, own.reserve - own.mapped_end);
		inherit(own.base, own.mapped_end);
		rh_own.classes_bias = 0;
		munmap(own.classes, own.classes_size);
		rh_own.size = 0;
		rh_own.base = 0;
		rh_heap = NULL;
		memset(&own, 0, sizeof(own));
	}
	unsigned n = atomic_load(&nforeign);
	for (unsigned i = 0; i < n; i++) {
		if (foreign[i].fd < 0)
			continue;
		/* Nothing of an idle heap is the child's. */
		if (idle_take(&foreign[i])) {
			foreign_release(&foreign[i]);
			continue;
		}
		/* Blocks the parent attached are private copies in the child;
		 * the parent still holds the references. */
		struct heap *f = &foreign[i];
		int fd = f->fd;
		size_t done = 0;
		int err = os_fd_is(fd, &f->id) ? os_map_private_copy(fd, f->base, f->mapped_end, os_fd_data_runs, &fd, &done)
					       : EBADF;
		if (err)
			fork_cut(f->base + done, f->mapped_end - done, f->name, err);
		heap_close(f);
		if (f->reserve > f->mapped_end)
			munmap(f->base + f->mapped_end, f->reserve - f->mapped_end);
		f->reserve = f->mapped_end;
		f->fd = -1;
	}
	if (fork_pipe[1] >= 0) {
		char c = 1;
		ssize_t w = write(fork_pipe[1], &c, 1);
		(void)w;
		close(fork_pipe[0]);
		close(fork_pipe[1]);
		fork_pipe[0] = fork_pipe[1] = -1;
	} else if (fork_sync) {
		atomic_store(&fork_sync->done, 1);
		syscall(SYS_futex, &fork_sync->done, FUTEX_WAKE, 1, NULL, NULL, 0);
		munmap(fork_sync, sizeof(*fork_sync));
		fork_sync = NULL;
	}
	create_errno = 0;
	memset(&rh_stats, 0, sizeof(rh_stats));
	pthread_mutex_init(&grow_lock, NULL);
	pthread_mutex_init(&classes_lock, NULL);
	pthread_mutex_init(&fd_lock, NULL);
	pthread_mutex_init(&foreign_lock, NULL);
	pthread_mutex_init(&create_lock, NULL);
	creating = 0;
	exiting = 0;
	creating_dirfd = -1;
	pthread_mutex_init(&reclaim_lock, NULL);
	reclaim_ns = 0;
	idle_due_ns = UINT64_MAX;
	alloc_fork_child();
	journal_fork_child();
	errno = fork_errno;
}

__attribute__((constructor)) static void heap_init(void)
{
	pthread_atfork(heap_fork_prepare, heap_fork_parent, heap_fork_child);
	/* quick_exit runs no destructors; handlers run last-registered first,
	 * and this one is registered before any program's. */
	at_quick_exit(heap_unlink_at_exit);
}

/* --- Attach -------------------------------------------------------------- */

/* "heap-<pid>" or "heap-<pid>-<pid namespace>". */
static bool valid_name(const char *name, size_t cap)
{
	size_t n = strnlen(name, cap);
	if (n == cap || n < 6 || strncmp(name, "heap-", 5) != 0)
		return false;
	int dashes = 0;
	for (size_t i = 5; i < n; i++) {
		if (name[i] == '-' && i > 5 && name[i - 1] != '-' && i + 1 < n && !dashes++)
			continue;
		if (name[i] < '0' || name[i] > '9')
			return false;
	}
	return true;
}

/* A heap this PID's previous program image set aside before exec (see the
 * shim): removed once its lock is gone, that is once exec succeeded. */
void heap_exec_leftover(void)
{
	const struct options *opt = options_get();
	char name[64];
	snprintf(name, sizeof(name), ".heap-%d.exec", (int)getpid());
	int dirfd = open(opt->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return;
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && replaceable(dirfd, name))
		unlinkat(dirfd, name, 0);
	close(dirfd);
}

/* Maps the file's current extent, up to the reservation. */
static int map_more(struct heap *h)
{
	struct stat st;
	int fd = heap_fd(h);
	if (fd < 0 || fstat(fd, &st) != 0)
		return errno;
	uint64_t end = (uint64_t)st.st_size & ~(((uint64_t)1 << h->page_shift) - 1);
	uint64_t cap = h->trimmed ? h->limit : h->reserve;
	if (end > cap)
		end = cap;
	if (end <= h->mapped_end)
		return 0;
	bool beyond = end > h->reserve;
	int err = beyond ? os_map_shared_new(fd, h->mapped_end, end - h->mapped_end, h->base + h->mapped_end) :
		os_map_shared(fd, h->mapped_end, end - h->mapped_end, h->base + h->mapped_end);
	if (err)
		return err == EEXIST ? ENOMEM : err;
	if (beyond)
		reserve_set(h, end);
	__atomic_store_n(&h->mapped_end, end, __ATOMIC_RELEASE);
	return 0;
}

/* --- Holders' reference tables (format.h) -------------------------------------- */

/* Where slot i's table lies in h's file, 0 when the heap has none. */
static inline uint64_t ref_table_at(const struct heap *h, unsigned i)
{
	return h->ref_tables ? h->ref_tables + (uint64_t)i * RH_REF_TABLE_SIZE : 0;
}

/* The reference tables of an attached heap, read once from its header (any
 * holder can write it later) and taken only where they lie as this version
 * lays them out; 0 when not (an older minor version, a newer layout). */
static uint64_t ref_tables_of(const struct heap *h)
{
	const struct heap_header *hdr = h->hdr;
	uint64_t at = __atomic_load_n(&hdr->ref_tables, __ATOMIC_RELAXED);
	uint64_t end = __atomic_load_n(&hdr->header_size, __ATOMIC_RELAXED);
	size_t page = (size_t)1 << h->page_shift;
	if (__atomic_load_n(&hdr->version_minor, __ATOMIC_RELAXED) < 1 ||
	    __atomic_load_n(&hdr->ref_table_size, __ATOMIC_RELAXED) != RH_REF_TABLE_SIZE ||
	    at != header_fixed(page) || end < header_bytes(page) || end > h->mapped_end)
		return 0;
	return at;
}

/* Drops the references recorded in slot i's table: we hold the slot's lock
 * and its holder is gone (callers hold signals back). Read and written
 * with pread and pwrite, as a table never written is a hole, which a read
 * through the mapping would fill. The counts of each piece of the table
 * are zeroed (one write) before its references are dropped: should we die
 * in between, they stay (a leak), and are never dropped twice. The table
 * is a hole again afterwards. */
static void reclaim_slot(struct heap *h, int fd, unsigned i)
{
	uint64_t at = ref_table_at(h, i);
	if (!at || fd < 0)
		return;
	struct heap_ref_entry e[64];
	uint32_t count[64];
	int saved = errno;
	for (uint64_t pos = at; pos < at + RH_REF_TABLE_SIZE; pos += sizeof(e)) {
		if (os_pread(fd, e, sizeof(e), pos) != (ssize_t)sizeof(e))
			break;
		bool any = false;
		for (unsigned k = 0; k < 64; k++) {
			count[k] = e[k].count;
			any |= count[k] != 0;
			e[k].count = 0;
		}
		if (!any)
			continue;
		if (os_pwrite(fd, e, sizeof(e), pos) != (ssize_t)sizeof(e))
			break;
		for (unsigned k = 0; k < 64; k++)
			if (count[k])
				alloc_release_dead(h, (uint64_t)e[k].sb_page << h->page_shift, e[k].offset, count[k]);
	}
	os_decommit(fd, at, RH_REF_TABLE_SIZE);
	errno = saved;
}

void heap_reclaim_dead_holders(bool now)
{
	struct heap *h = __atomic_load_n(&rh_heap, __ATOMIC_ACQUIRE);
	if (!h)
		return;
	uint64_t t = os_now_ns(CLOCK_MONOTONIC_COARSE);
	if (!now && t - __atomic_load_n(&reclaim_ns, __ATOMIC_RELAXED) < 250000000ull)
		return;
	__atomic_store_n(&reclaim_ns, t, __ATOMIC_RELAXED);
	/* Quiet from here: a child forked by a signal handler would go on
	 * with its parent's work on a heap cleared at fork, and a cancelled
	 * thread would leave the locks held. */
	struct os_quiet q;
	os_quiet_begin(&q);
	if (__atomic_load_n(&rh_heap, __ATOMIC_ACQUIRE) != h || h->pid != getpid() || !h->ref_tables ||
	    (now ? pthread_mutex_lock(&reclaim_lock) : pthread_mutex_trylock(&reclaim_lock)) != 0) {
		os_quiet_end(&q);
		return;
	}
	/* From an allocation, a few slots and one reclaim at a time, so that
	 * malloc does not wait long; rh_shm_trim does all. */
	int saved = errno, fd = -1;
	unsigned looked = 0, reclaimed = 0;
	for (unsigned n = 0; n < RH_MAX_HOLDERS - 1; n++) {
		if (!now && (looked >= 8 || reclaimed))
			break;
		unsigned i = 1 + reclaim_next;
		reclaim_next = (reclaim_next + 1) % (RH_MAX_HOLDERS - 1);
		struct heap_holder *s = &h->hdr->holders[i];
		if (!__atomic_load_n(&s->pid, __ATOMIC_RELAXED))
			continue;
		looked++;
		if (fd < 0 && (fd = heap_fd(h)) < 0)
			break;
		if (os_lock_byte(fd, RH_LOCK_BASE + i) != 0)
			continue;
		reclaimed++;
		reclaim_slot(h, fd, i);
		__atomic_store_n(&s->state, RH_HOLDER_FREE, __ATOMIC_RELAXED);
		__atomic_store_n(&s->pid, 0, __ATOMIC_RELEASE);
		os_unlock_byte(fd, RH_LOCK_BASE + i);
	}
	pthread_mutex_unlock(&reclaim_lock);
	os_quiet_end(&q);
	errno = saved;
}

/* Our slot's table, committed in the file before its first use (held_lock
 * held); NULL when there is none to be had: no slot or no tables, or no
 * room on the filesystem for now (tried again a second later). */
static struct heap_ref_entry *refs_table(struct heap *h)
{
	if (h->refs || h->refs_retry_ns == UINT64_MAX)
		return h->refs;
	uint64_t now = os_now_ns(CLOCK_MONOTONIC_COARSE);
	if (now < h->refs_retry_ns)
		return NULL;
	uint64_t at = h->holder > 0 ? ref_table_at(h, (unsigned)h->holder) : 0;
	if (!at) {
		h->refs_retry_ns = UINT64_MAX;
		return NULL;
	}
	int saved = errno, fd = heap_fd(h);
	if (fd >= 0 && os_commit(fd, at, RH_REF_TABLE_SIZE) == 0)
		h->refs = (struct heap_ref_entry *)(h->base + at);
	else
		h->refs_retry_ns = now + 1000000000ull;
	errno = saved;
	return h->refs;
}

/* Our table's entry for e says e's count (held_lock held). A take (sb_off
 * known) of a block without an entry makes one, in an entry our own
 * records say is free; none is kept once the block is no longer held. A
 * full table leaves the block out: its references stay if we die. */
static void ref_note(struct heap *h, struct held_ref *e, uint64_t sb_off)
{
	if (!e->entry) {
		uint64_t sb_page = sb_off >> h->page_shift;
		if (!sb_off || !e->count || sb_page > UINT32_MAX || !refs_table(h))
			return;
		uint32_t k = RH_REF_ENTRIES;
		for (unsigned w = 0; w < RH_REF_ENTRIES / 64 && k == RH_REF_ENTRIES; w++)
			if (~h->refs_used[w])
				k = w * 64 + (uint32_t)__builtin_ctzll(~h->refs_used[w]);
		if (k == RH_REF_ENTRIES)
			return;
		h->refs_used[k / 64] |= 1ull << (k % 64);
		h->refs[k].offset = e->off;
		h->refs[k].sb_page = (uint32_t)sb_page;
		e->entry = k + 1;
	}
	uint32_t k = e->entry - 1;
	__atomic_store_n(&h->refs[k].count, e->count, __ATOMIC_RELEASE);
	if (!e->count) {
		h->refs_used[k / 64] &= ~(1ull << (k % 64));
		e->entry = 0;
	}
}

/* Takes a free holder slot: the first one whose lock byte we can lock
 * (its last holder is gone); what that one left is dropped first. */
static void claim_holder(struct heap *h)
{
	h->holder = -1;
	h->ref_tables = ref_tables_of(h);
	pid_t self = getpid();
	for (int i = 1; i < RH_MAX_HOLDERS; i++) {
		if (os_lock_byte(h->fd, RH_LOCK_BASE + (uint64_t)i) != 0)
			continue;
		struct heap_holder *s = &h->hdr->holders[i];
		reclaim_slot(h, h->fd, (unsigned)i);
		uint64_t start = 0;
		os_proc_start_time(self, &start);
		__atomic_store_n(&s->start_time, start, __ATOMIC_RELAXED);
		__atomic_store_n(&s->state, RH_HOLDER_CLAIMED, __ATOMIC_RELAXED);
		__atomic_store_n(&s->pid, self, __ATOMIC_RELEASE);
		h->holder = i;
		return;
	}
}

/* Unmaps and closes attached heap h, whose entry we took from idle to -1
 * (foreign_lock held, quiet): our holder lock goes with its descriptor and
 * mapping, and the entry is free for another heap. */
static void foreign_release(struct heap *h)
{
	__atomic_store_n(&h->mapped_end, 0, __ATOMIC_RELEASE);
	os_release(h->base, h->reserve);
	heap_close(h);
	h->fd = FOREIGN_RELEASED;
	h->base = NULL;
	if (h->held)
		munmap(h->held, (size_t)h->held_cap * sizeof(*h->held));
	h->held = NULL;
	h->held_cap = h->held_used = 0;
	heap_sb_forget(h);
}

/* Takes an idle entry (nothing attached) for release: no attach can pin it
 * after this. */
static bool idle_take(struct heap *h)
{
	long zero = 0;
	return h->fd >= 0 && __atomic_compare_exchange_n(&h->attached, &zero, -1, false, __ATOMIC_SEQ_CST,
							  __ATOMIC_RELAXED);
}

static void due_at_most(uint64_t t)
{
	uint64_t d = __atomic_load_n(&idle_due_ns, __ATOMIC_SEQ_CST);
	while (t < d && !__atomic_compare_exchange_n(&idle_due_ns, &d, t, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		;
}

/* Releases the idle heaps that are due, or `all` of them (foreign_lock
 * held, quiet). The time due starts again from none before the entries are
 * looked at: one that goes idle meanwhile either is looked at or lowers it
 * itself. */
static void idle_sweep(uint64_t now, bool all)
{
	__atomic_store_n(&idle_due_ns, UINT64_MAX, __ATOMIC_SEQ_CST);
	uint64_t due = UINT64_MAX;
	unsigned n = atomic_load_explicit(&nforeign, memory_order_acquire);
	for (unsigned i = 0; i < n; i++) {
		struct heap *h = &foreign[i];
		if (h->fd < 0 || __atomic_load_n(&h->attached, __ATOMIC_SEQ_CST) != 0)
			continue;
		uint64_t at = __atomic_load_n(&h->idle_since, __ATOMIC_RELAXED) + IDLE_KEEP_NS;
		if (all || at <= now) {
			if (idle_take(h))
				foreign_release(h);
		} else if (at < due) {
			due = at;
		}
	}
	due_at_most(due);
}

void heap_idle_sweep(bool all)
{
	if (!all && __atomic_load_n(&idle_due_ns, __ATOMIC_RELAXED) == UINT64_MAX)
		return;
	uint64_t now = os_now_ns(CLOCK_MONOTONIC_COARSE);
	if (all ? !atomic_load_explicit(&nforeign, memory_order_relaxed)
		: now < __atomic_load_n(&idle_due_ns, __ATOMIC_RELAXED))
		return;
	struct os_quiet q;
	os_quiet_begin(&q);
	pthread_mutex_lock(&foreign_lock);
	idle_sweep(now, all);
	pthread_mutex_unlock(&foreign_lock);
	os_quiet_end(&q);
}

/* Clears entry h for a new heap, all but its count: -1 until it is made. */
static void entry_clear(struct heap *h)
{
	memset(h, 0, offsetof(struct heap, attached));
	memset((char *)h + offsetof(struct heap, attached) + sizeof(h->attached), 0,
	       sizeof(*h) - offsetof(struct heap, attached) - sizeof(h->attached));
}

/* The entry of the referenced heap, with one more attached to it (foreign_lock
 * held, quiet: os_quiet_begin; a child forked by a signal handler would
 * otherwise finish the making of an entry that is its parent's, with its
 * parent's lock and shared mapping). An idle entry of the heap is used
 * again; when every entry is taken, the one idle longest gives way. */
static struct heap *open_foreign(const struct rh_shm_ref *ref, const struct options *opt)
{
	unsigned n = atomic_load_explicit(&nforeign, memory_order_acquire);
	unsigned slot = n;
	for (unsigned i = 0; i < n; i++) {
		struct heap *h = &foreign[i];
		if (h->fd >= 0 && h->instance == ref->instance && strcmp(h->name, ref->heap) == 0) {
			__atomic_add_fetch(&h->attached, 1, __ATOMIC_SEQ_CST);
			return h;
		}
		if (h->fd == FOREIGN_RELEASED && slot == n)
			slot = i;
	}
	/* Every entry taken: the idle ones, longest idle first (one attached
	 * again meanwhile is passed over). */
	_Static_assert(RH_MAX_FOREIGN <= 64, "tried is a bit per entry");
	uint64_t tried = 0;
	while (slot >= RH_MAX_FOREIGN) {
		unsigned oldest = n;
		for (unsigned i = 0; i < n; i++) {
			struct heap *h = &foreign[i];
			if (!(tried >> i & 1) && h->fd >= 0 && __atomic_load_n(&h->attached, __ATOMIC_RELAXED) == 0 &&
			    (oldest == n || __atomic_load_n(&h->idle_since, __ATOMIC_RELAXED) <
						    __atomic_load_n(&foreign[oldest].idle_since, __ATOMIC_RELAXED)))
				oldest = i;
		}
		if (oldest == n)
			break;
		tried |= 1ull << oldest;
		if (idle_take(&foreign[oldest])) {
			foreign_release(&foreign[oldest]);
			slot = oldest;
		}
	}
	if (slot >= RH_MAX_FOREIGN) {
		errno = ENFILE;
		return NULL;
	}
	int dirfd = open(opt->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return NULL;
	int fd = os_fd_high(openat(dirfd, ref->heap, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
	int err = errno;
	close(dirfd);
	if (fd < 0) {
		errno = err == ELOOP ? EINVAL : err;
		return NULL;
	}
	struct heap_header hdr;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    pread(fd, &hdr, offsetof(struct heap_header, holders), 0) != offsetof(struct heap_header, holders) ||
	    hdr.magic != RH_HEAP_MAGIC || hdr.version_major != RH_HEAP_VERSION_MAJOR ||
	    hdr.page_size != os_page_size() || hdr.header_size < sizeof(struct heap_header) ||
	    (uint64_t)st.st_size < hdr.header_size) {
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	if (hdr.instance != ref->instance) {
		close(fd);
		errno = ESTALE;
		return NULL;
	}
	struct heap *h = &foreign[slot];
	entry_clear(h);
	h->fd = fd;
	h->id.dev = (uint64_t)st.st_dev;
	h->id.ino = (uint64_t)st.st_ino;
	set_paths(h, opt->dir, ref->heap);
	h->page_shift = (unsigned)__builtin_ctzl(os_page_size());
	h->reserve = reserve_size(fd, (uint64_t)st.st_size, 16);
	__atomic_store_n(&h->instance, hdr.instance, __ATOMIC_RELAXED); /* read by pin_open_foreign */
	h->pid = hdr.creator_pid;
	memcpy(h->name, ref->heap, strlen(ref->heap) + 1);
	void *base;
	if ((err = os_reserve(h->reserve, 1u << 21, &base))) {
		close(fd);
		h->fd = FOREIGN_RELEASED;
		errno = err;
		return NULL;
	}
	h->base = base;
	h->hdr = base;
	if ((err = map_more(h))) {
		os_release(base, h->reserve);
		heap_close(h);
		h->fd = FOREIGN_RELEASED;
		errno = err;
		return NULL;
	}
	claim_holder(h);
	stat_add(heaps_mapped, 1);
	__atomic_store_n(&h->attached, 1, __ATOMIC_SEQ_CST);
	if (slot == n)
		atomic_store_explicit(&nforeign, n + 1, memory_order_release);
	return h;
}

/* One reference taken through h was dropped. When none is left, the heap
 * is idle: unmapped and closed (which drops our holder lock) a second
 * later, unless something is attached from it again before. */
void heap_foreign_dropped(struct heap *h)
{
	heap_foreign_dropped_n(h, 1);
}

void heap_foreign_dropped_n(struct heap *h, long n)
{
	/* The last reference: is the creator still there (asked at most every
	 * 100 ms, while the entry is still pinned)? A dead one's heap goes at
	 * once. */
	uint64_t now = 0;
	bool gone = false;
	if (__atomic_load_n(&h->attached, __ATOMIC_RELAXED) == n) {
		now = os_now_ns(CLOCK_MONOTONIC_COARSE);
		if (now - __atomic_load_n(&h->alive_ns, __ATOMIC_RELAXED) >= 100000000ull) {
			bool held = true;
			int saved = errno;
			gone = os_lock_held(h->fd, RH_LOCK_BASE, &held) == 0 && !held;
			errno = saved;
			__atomic_store_n(&h->alive_ns, now, __ATOMIC_RELAXED);
		}
	}
	if (__atomic_sub_fetch(&h->attached, n, __ATOMIC_SEQ_CST) > 0) {
		heap_idle_sweep(false);  /* other heaps may be due */
		return;
	}
	if (!now)
		now = os_now_ns(CLOCK_MONOTONIC_COARSE);
	if (gone) {
		struct os_quiet q;
		os_quiet_begin(&q);
		pthread_mutex_lock(&foreign_lock);
		if (idle_take(h))
			foreign_release(h);
		pthread_mutex_unlock(&foreign_lock);
		os_quiet_end(&q);
		return;
	}
	/* A sweep that sees the count before the time may let the heap go
	 * early: it is mapped again when next attached. */
	__atomic_store_n(&h->idle_since, now, __ATOMIC_RELAXED);
	due_at_most(now + IDLE_KEEP_NS);
	if (now >= __atomic_load_n(&idle_due_ns, __ATOMIC_RELAXED))
		heap_idle_sweep(false);
}

/* One more attached to entry h, in use or idle; false for one being made or
 * released. Whose entry it is, is for the caller to check then. */
static bool pin(struct heap *h)
{
	long a = __atomic_load_n(&h->attached, __ATOMIC_ACQUIRE);
	while (a >= 0 && !__atomic_compare_exchange_n(&h->attached, &a, a + 1, true, __ATOMIC_SEQ_CST,
						      __ATOMIC_ACQUIRE))
		;
	return a >= 0;
}

bool heap_foreign_pin(struct heap *h, const void *p)
{
	if (!pin(h))
		return false;
	if (__atomic_load_n(&h->fd, __ATOMIC_ACQUIRE) >= 0 &&
	    (uintptr_t)p - (uintptr_t)h->base < __atomic_load_n(&h->mapped_end, __ATOMIC_ACQUIRE))
		return true;
	heap_foreign_dropped(h);
	return false;
}

/* --- References this process holds on attached heaps ---------------------------- */

#define HELD_EMPTY 0
#define HELD_GONE 1
#define HELD_FIRST 256    /* entries of a first table: one page and a bit */

static struct held_ref *held_find(struct held_ref *t, uint32_t cap, uint64_t off, bool insert)
{
	uint32_t i = (uint32_t)((off >> 4) * 0x9e3779b97f4a7c15ull >> 32) & (cap - 1);
	struct held_ref *gone = NULL;
	for (uint32_t n = 0; n < cap; n++, i = (i + 1) & (cap - 1)) {
		if (t[i].off == off)
			return &t[i];
		if (t[i].off == HELD_GONE && !gone)
			gone = &t[i];
		if (t[i].off == HELD_EMPTY)
			return insert ? (gone ? gone : &t[i]) : NULL;
	}
	return insert ? gone : NULL;
}

/* The table again, with room (held_lock held): twice as big when over half
 * full of live entries, else as big without the removed ones. Mapped, not
 * malloc'd: under the shim malloc is ours. */
static int held_grow(struct heap *h)
{
	uint32_t live = 0;
	for (uint32_t i = 0; i < h->held_cap; i++)
		live += h->held[i].off > HELD_GONE;
	uint32_t cap = h->held_cap ? h->held_cap : HELD_FIRST;
	while (live + 1 > cap / 2)
		cap *= 2;
	struct held_ref *t = mmap(NULL, (size_t)cap * sizeof(*t), PROT_READ | PROT_WRITE,
		MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		return ENOMEM;
	for (uint32_t i = 0; i < h->held_cap; i++)
		if (h->held[i].off > HELD_GONE)
			*held_find(t, cap, h->held[i].off, true) = h->held[i];
	if (h->held)
		munmap(h->held, (size_t)h->held_cap * sizeof(*h->held));
	h->held = t;
	h->held_cap = cap;
	h->held_used = live;
	return 0;
}

/* A mutex, not a spin lock: a holder descheduled under a real-time thread
 * of higher priority on its CPU would never run again to let go. */
static void held_lock(struct heap *h)
{
	pthread_mutex_lock(&h->held_lock);
}

static void held_unlock(struct heap *h)
{
	pthread_mutex_unlock(&h->held_lock);
}

/* --- Superblocks known to be there (see struct heap) ---------------------------- */

struct sb_sets {
	struct sb_sets *next;
	uint64_t *set;
};

#define SB_SET_FIRST 64

static uint64_t *sb_find(uint64_t *set, uint64_t sb_off)
{
	uint64_t cap = set[0];
	uint64_t i = (sb_off >> 12) * 0x9e3779b97f4a7c15ull >> 40;
	for (uint64_t n = 0; n < cap; n++) {
		uint64_t *e = &set[1 + (i + n) % cap];
		uint64_t v = __atomic_load_n(e, __ATOMIC_ACQUIRE);
		if (v == sb_off || v == 0)
			return e;
	}
	return NULL;
}

bool heap_sb_known(struct heap *h, uint64_t sb_off)
{
	uint64_t *set = atomic_load_explicit(&h->sb_set, memory_order_acquire);
	if (!set || !sb_off)
		return false;
	uint64_t *e = sb_find(set, sb_off);
	return e && __atomic_load_n(e, __ATOMIC_ACQUIRE) == sb_off;
}

/* Under held_lock; a set that cannot grow leaves the offset out (it is
 * read from the file again next time). Mapped, not malloc'd: under the
 * shim malloc is ours. */
void heap_sb_add(struct heap *h, uint64_t sb_off)
{
	held_lock(h);
	uint64_t *set = h->sb_set;
	if (!set || (uint64_t)(h->sb_count + 1) * 2 > set[0]) {
		uint64_t cap = set ? set[0] * 2 : SB_SET_FIRST;
		size_t bytes = (size_t)(cap + 1) * sizeof(uint64_t);
		uint64_t *bigger = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct sb_sets *old = set ? mmap(NULL, sizeof(*old), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
		if (bigger == MAP_FAILED || old == MAP_FAILED) {
			if (bigger != MAP_FAILED)
				munmap(bigger, bytes);
			if (old && old != MAP_FAILED)
				munmap(old, sizeof(*old));
			held_unlock(h);
			return;
		}
		bigger[0] = cap;
		for (uint64_t i = 0; set && i < set[0]; i++)
			if (set[1 + i])
				*sb_find(bigger, set[1 + i]) = set[1 + i];
		if (old) {
			old->set = set;
			old->next = h->sb_old;
			h->sb_old = old;
		}
		atomic_store_explicit(&h->sb_set, bigger, memory_order_release);
		set = bigger;
	}
	uint64_t *e = sb_find(set, sb_off);
	if (e && *e != sb_off) {
		__atomic_store_n(e, sb_off, __ATOMIC_RELEASE);
		h->sb_count++;
	}
	held_unlock(h);
}

/* The heap is released (foreign_lock held, no reader left). */
void heap_sb_forget(struct heap *h)
{
	uint64_t *set = atomic_load_explicit(&h->sb_set, memory_order_relaxed);
	if (set)
		munmap(set, (size_t)(set[0] + 1) * sizeof(uint64_t));
	while (h->sb_old) {
		struct sb_sets *o = h->sb_old;
		h->sb_old = o->next;
		munmap(o->set, (size_t)(o->set[0] + 1) * sizeof(uint64_t));
		munmap(o, sizeof(*o));
	}
	atomic_store_explicit(&h->sb_set, NULL, memory_order_relaxed);
	h->sb_count = 0;
}

int heap_held_take(struct heap *h, uint64_t sb_off, uint64_t off)
{
	int err = 0;
	held_lock(h);
	struct held_ref *e = h->held ? held_find(h->held, h->held_cap, off, false) : NULL;
	if (!e && (h->held_used + 1) * 4 > (uint64_t)h->held_cap * 3)
		err = held_grow(h);
	if (!err && !e) {
		e = held_find(h->held, h->held_cap, off, true);
		if (e->off == HELD_EMPTY)
			h->held_used++;
		e->off = off;
		e->count = 0;
		e->entry = 0;
	}
	if (!err) {
		e->count++;
		ref_note(h, e, sb_off);
	}
	held_unlock(h);
	return err;
}

bool heap_held_drop(struct heap *h, uint64_t off)
{
	held_lock(h);
	struct held_ref *e = h->held ? held_find(h->held, h->held_cap, off, false) : NULL;
	if (e) {
		e->count--;
		ref_note(h, e, 0);
		if (!e->count)
			e->off = HELD_GONE;
	}
	held_unlock(h);
	return e != NULL;
}

/* An attached heap open already (in use or idle), with the block's range
 * mapped, taken without foreign_lock: one more in its count of what is
 * attached pins it (an entry is released, and reused, only by taking its
 * count from 0 to -1), and what it is is checked once it is pinned. NULL:
 * the locked path decides. */
static struct heap *pin_open_foreign(const struct rh_shm_ref *ref)
{
	unsigned n = atomic_load_explicit(&nforeign, memory_order_acquire);
	for (unsigned i = 0; i < n; i++) {
		struct heap *h = &foreign[i];
		if (__atomic_load_n(&h->instance, __ATOMIC_RELAXED) != ref->instance || !pin(h))
			continue;
		if (__atomic_load_n(&h->fd, __ATOMIC_ACQUIRE) >= 0 && h->instance == ref->instance &&
		    strcmp(h->name, ref->heap) == 0 && ref->offset >= h->hdr->header_size &&
		    ref->offset < __atomic_load_n(&h->mapped_end, __ATOMIC_ACQUIRE))
			return h;
		heap_foreign_dropped(h);
	}
	return NULL;
}

void *heap_attach(const struct rh_shm_ref *ref)
{
	if (!ref || !valid_name(ref->heap, sizeof(ref->heap))) {
		errno = EINVAL;
		return NULL;
	}
	struct heap *h;
	if (rh_heap && strcmp(ref->heap, own.name) == 0) {
		if (ref->instance != own.instance) {
			errno = ESTALE;
			return NULL;
		}
		h = &own;
	} else if (!(h = pin_open_foreign(ref))) {
		/* Options first: options_get takes create_lock, which fork's
		 * prepare handler takes before foreign_lock. */
		const struct options *opt = options_get();
		struct os_quiet q;
		os_quiet_begin(&q);
		pthread_mutex_lock(&foreign_lock);
		uint64_t now = os_now_ns(CLOCK_MONOTONIC_COARSE);
		if (now >= __atomic_load_n(&idle_due_ns, __ATOMIC_RELAXED))
			idle_sweep(now, false);
		h = open_foreign(ref, opt);
		if (h && (ref->offset >= h->mapped_end || ref->offset < h->hdr->header_size))
			map_more(h);
		pthread_mutex_unlock(&foreign_lock);
		os_quiet_end(&q);
		if (!h)
			return NULL;
	}
	void *p = alloc_attach(h, ref->superblock, ref->offset);
	if (p && h != &own && heap_held_take(h, ref->superblock, ref->offset) != 0) {
		alloc_unattach(h, p);
		p = NULL;
		errno = ENOMEM;
	}
	if (p) {
		stat_add(blocks_attached, 1);
	} else if (h != &own) {
		int e = errno;
		heap_foreign_dropped(h);
		errno = e;
	}
	return p;
}

int heap_ref(const void *p, struct rh_shm_ref *ref)
{
	struct heap *h = heap_of(p);
	if (!h || alloc_ref(h, p, &ref->superblock, &ref->offset) != 0) {
		if (!h || errno != ENOMEM)
			errno = EINVAL;
		return -1;
	}
	memset(ref->heap, 0, sizeof(ref->heap));
	memcpy(ref->heap, h->name, strlen(h->name));
	ref->instance = h->instance;
	return 0;
}
