/* SPDX-License-Identifier: MIT */
/*
 * Every system call the heap makes on memory and heap files. Each function
 * returns 0 or an errno value and fills its out-parameters only on success,
 * so callers never see half a result.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "heap.h"

size_t os_page_size(void)
{
	static size_t page;
	if (!page) {
		long p = sysconf(_SC_PAGESIZE);
		page = p > 0 ? (size_t)p : 4096;
	}
	return page;
}

/* Reserves address space aligned to `align` (a power of two) without memory:
 * PROT_NONE and MAP_NORESERVE cost neither RAM nor commit charge. */
int os_reserve(size_t size, size_t align, void **addr)
{
	size_t total = size + align;
	char *p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return errno;
	uintptr_t start = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	if (start > (uintptr_t)p)
		munmap(p, start - (uintptr_t)p);
	uintptr_t end = start + size;
	if ((uintptr_t)p + total > end)
		munmap((void *)end, (uintptr_t)p + total - end);
	*addr = (void *)start;
	return 0;
}

int os_release(void *addr, size_t size)
{
	return munmap(addr, size) == 0 ? 0 : errno;
}

int os_map_shared(int fd, uint64_t offset, size_t size, void *at)
{
	void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)offset);
	return p == MAP_FAILED ? errno : 0;
}

int os_map_shared_new(int fd, uint64_t offset, size_t size, void *at)
{
	void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, (off_t)offset);
	if (p == MAP_FAILED)
		return errno;
	if (p != at) { /* a kernel before 4.17 takes the flag for a hint */
		munmap(p, size);
		return EEXIST;
	}
	return 0;
}

int os_map_anon_new(void *at, size_t size)
{
	void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return errno;
	if (p != at) {
		munmap(p, size);
		return EEXIST;
	}
	return 0;
}

bool os_mostly_resident(const void *p, size_t n)
{
	/* A vector of 1 KiB, a chunk at a time (this may run on a signal
	 * handler's small stack), until the answer is known. */
	unsigned char vec[1024];
	size_t page = os_page_size(), pages = (n + page - 1) / page, in = 0, out = 0;
	for (size_t done = 0; done < n && 2 * in < pages && 2 * out <= pages;) {
		size_t len = n - done < sizeof(vec) * page ? n - done : sizeof(vec) * page;
		if (mincore((char *)p + done, len, vec) != 0)
			return false;
		for (size_t i = 0; i < (len + page - 1) / page; i++)
			in += vec[i] & 1;
		out = (done + len + page - 1) / page - in;
		done += len;
	}
	return 2 * in >= pages;
}

/* Whether n bytes at p are all zeros (reading a page never touched maps the
 * zero page: no memory is made for it). */
bool os_all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	/* 64 bytes at a time, so that data is seen at its first line. */
	for (; n >= 64; n -= 64, c += 64) {
		uint64_t x[8];
		memcpy(x, c, 64);
		if (x[0] | x[1] | x[2] | x[3] | x[4] | x[5] | x[6] | x[7])
			return false;
	}
	for (; n; n--)
		if (*c++)
			return false;
	return true;
}

/* Whether every page of the range is mapped (a mapping that failed may or
 * may not have taken the old one down with it, by kernel version). */
bool os_mapped(void *at, size_t size)
{
	int saved = errno;
	bool mapped = msync(at, size, MS_ASYNC) == 0; /* ENOMEM over a gap; changes nothing */
	errno = saved;
	return mapped;
}

int os_map_anon(void *at, size_t size)
{
	if (mmap(at, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		return errno;
	return 0;
}

/* The private pages at `at` move into the file at offset, its range
 * reserved and all zeros: the pages that are not all zeros (untouched ones
 * read as zeros too) are written to the file, which is then mapped in their
 * place. Should the mapping fail, the data is in the file all the same. */
int os_map_into_file(int fd, uint64_t offset, size_t size, void *at)
{
	const char *src = at;
	size_t page = os_page_size();
	for (size_t o = 0; o < size; o += page) {
		if (os_all_zero(src + o, page))
			continue;
		for (size_t done = 0; done < page;) {
			int saved = errno;
			ssize_t k = pwrite(fd, src + o + done, page - done, (off_t)(offset + o + done));
			if (k < 0 && errno == EINTR) {
				errno = saved;
				continue;
			}
			if (k <= 0)
				return k < 0 ? errno : EIO;
			done += (size_t)k;
		}
	}
	return os_map_shared(fd, offset, size, at);
}

/* Runs of data by the file itself: lseek SEEK_DATA/SEEK_HOLE, which tmpfs
 * supports (pages reserved but never written count as holes). */
int os_fd_data_runs(const void *arg, uint64_t pos, uint64_t *start, uint64_t *end)
{
	int fd = *(const int *)arg;
	off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
	if (data < 0)
		return errno == ENXIO ? 0 : -errno;
	off_t hole = lseek(fd, data, SEEK_HOLE);
	if (hole < 0)
		return -errno;
	*start = (uint64_t)data;
	*end = (uint64_t)hole;
	return 1;
}

/* Bytes of the shared mapping at `at` from offset `s` to `e` become private:
 * read from the file (fd >= 0) into private memory mapped over them, or,
 * without the file, through a small buffer a piece at a time. Either way no
 * more address space or memory is needed than the copy itself. */
static char bounce[64 << 10];
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  /* Linux 5.14; before, runs fault page by page */
#endif

/* Private memory in place of the shared mapping at `at`: holes and copied
 * runs alike, one kind of mapping, so that the kernel merges neighbours
 * and a heap whose written pages alternate with holes does not need a
 * mapping for each (vm.max_map_count, 65530 by default). No huge pages:
 * with THP "always" one page of data would take 2 MiB, and the holes and
 * pages of zeros around it memory. */
static int map_copy(char *at, size_t len)
{
	if (mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) ==
	    MAP_FAILED)
		return errno;
	madvise(at, len, MADV_NOHUGEPAGE);
	return 0;
}

/* The pages around the thread pointer: the thread's control block and
 * static TLS (errno, the stack guard, the shim's caches), which the copying
 * thread itself reads as it copies. They are in the heap when the thread
 * runs on a stack the program allocated (pthread_attr_setstack). */
#define TP_BELOW ((uintptr_t)64 << 10)
#define TP_ABOVE ((uintptr_t)8 << 10)

/* Bytes of the file (fd >= 0) or of the mapping from s to e, copied into
 * private memory made aside and then moved over them at once: they are
 * never without their contents, as they are for a moment in copy_run. One
 * more mapping, not merged with its neighbours: for a few pages only. */
static int copy_swap(int fd, char *base, uint64_t s, uint64_t e)
{
	size_t len = (size_t)(e - s);
	char *tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (tmp == MAP_FAILED)
		return errno;
	for (size_t c = 0; c < len;) {
		ssize_t n = fd >= 0 ? pread(fd, tmp + c, len - c, (off_t)(s + c))
				    : (memcpy(tmp + c, base + s + c, len - c), (ssize_t)(len - c));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;
			munmap(tmp, len);
			return err;
		}
		c += (size_t)n;
	}
	madvise(tmp, len, MADV_NOHUGEPAGE);
	if (mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, base + s) == MAP_FAILED) {
		int err = errno;
		munmap(tmp, len);
		return err;
	}
	return 0;
}

/* When copy_swap can get no memory to copy into (an address-space limit,
 * vm.max_map_count): the file's pages mapped privately in place, which keeps
 * their contents throughout, then each written to once so that it is the
 * child's own copy and no longer follows the file. The mapping keeps the
 * parent's file allocated while the child lives: for this case only. */
static int copy_in_place(int fd, char *base, uint64_t s, uint64_t e)
{
	if (fd < 0 || mmap(base + s, (size_t)(e - s), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
		    (off_t)s) == MAP_FAILED)
		return fd < 0 ? EBADF : errno;
	for (uint64_t c = s; c < e; c += os_page_size()) {
		volatile char *p = base + c;
		*p = *p;
	}
	return 0;
}

static int copy_pieces(int fd, char *base, uint64_t s, uint64_t e);

/* The part [*a, *b) of [s, e) (offsets from base) that holds the pages
 * around the thread pointer: false when none does. */
static bool tp_window(const char *base, uint64_t s, uint64_t e, uint64_t *a, uint64_t *b)
{
	uintptr_t page = os_page_size(), tp = (uintptr_t)__builtin_thread_pointer();
	uintptr_t lo = tp > TP_BELOW ? (tp - TP_BELOW) & ~(page - 1) : 0;
	uintptr_t hi = (tp + TP_ABOVE + page - 1) & ~(page - 1);
	uintptr_t from = (uintptr_t)base + s, to = (uintptr_t)base + e;
	if (to <= lo || from >= hi)
		return false;
	*a = from < lo ? lo - (uintptr_t)base : s;
	*b = to > hi ? hi - (uintptr_t)base : e;
	return true;
}

static int copy_run(int fd, char *base, uint64_t s, uint64_t e)
{
	uint64_t a, b;
	if (!tp_window(base, s, e, &a, &b))
		return copy_pieces(fd, base, s, e);
	int err = 0;
	if (a > s)
		err = copy_pieces(fd, base, s, a);
	/* Failing that, as the rest: the pages are copied all the same. */
	if (!err && copy_swap(fd, base, a, b) != 0)
		err = copy_pieces(fd, base, a, b);
	if (!err && e > b)
		err = copy_pieces(fd, base, b, e);
	return err;
}

/* The file's bytes from s to e into the private memory now mapped at
 * base + s, a piece at a time through the buffer: pages of zeros are not
 * copied and take no memory (pages written with zeros and never used since,
 * os_commit_fill, are data to SEEK_DATA). */
static int fill_run(int fd, char *base, uint64_t s, uint64_t e)
{
	size_t page = os_page_size();
	for (uint64_t c = s; c < e;) {
		size_t want = e - c < sizeof(bounce) ? (size_t)(e - c) : sizeof(bounce);
		ssize_t n = pread(fd, bounce, want, (off_t)c);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		/* Each run of pages that hold data is populated at once: a fault
		 * per page would cost more than the copy (a page alone faults: the
		 * same work, without a system call). */
		for (size_t k = 0, run = 0;;) {
			size_t len = (size_t)n - k < page ? (size_t)n - k : page;
			if (len && !os_all_zero(bounce + k, len)) {
				run += len;
				k += len;
				continue;
			}
			if (run) {
				if (run > page)
					madvise(base + c + k - run, run, MADV_POPULATE_WRITE);
				memcpy(base + c + k - run, bounce + k - run, run);
				run = 0;
			}
			if (!len)
				break;
			k += len;
		}
		c += (uint64_t)n;
	}
	return 0;
}

static int copy_pieces(int fd, char *base, uint64_t s, uint64_t e)
{
	if (fd >= 0) {
		int err = map_copy(base + s, (size_t)(e - s));
		return err ? err : fill_run(fd, base, s, e);
	}
	for (uint64_t c = s; c < e; c += sizeof(bounce)) {
		size_t n = e - c < sizeof(bounce) ? (size_t)(e - c) : sizeof(bounce);
		memcpy(bounce, base + c, n);
		int err = map_copy(base + c, n);
		if (err)
			return err;
		memcpy(base + c, bounce, n);
	}
	return 0;
}

/* The run of data (or hole, found 0) at or after pos, within size: found 2
 * is a range the process holds privately already. A run that changed under
 * us (no data where the heap's records said there is) is a page of hole. */
static int next_run(os_data_runs_fn runs, const void *arg, uint64_t pos, uint64_t size, uint64_t page,
	uint64_t *s, uint64_t *e)
{
	*s = *e = size;
	int found = runs(arg, pos, s, e);
	if (found < 0)
		return found;
	if (!found || *s > size)
		*s = *e = size;
	if (*e > size)
		*e = size;
	if (*s < pos)
		*s = pos;
	if (*e <= *s && *s < size)
		*e = *s = *s + page < size ? *s + page : size;
	return *e > *s ? found : 0;
}

/* Without the file: run by run, each read from the mapping as it is
 * replaced (holes read as zeros, tmpfs counts pages reserved but never
 * written as holes too). */
static int copy_from_mapping(void *at, size_t size, os_data_runs_fn runs, const void *arg, size_t *done)
{
	char *base = at;
	uint64_t pos = 0, page = (uint64_t)os_page_size();
	int err = 0;
	while (pos < size && !err) {
		uint64_t s, e;
		int found = next_run(runs, arg, pos, size, page, &s, &e);
		if (found < 0) {
			err = -found;
			break;
		}
		if (s > pos && (err = map_copy(base + pos, (size_t)(s - pos))))
			break;
		pos = s;
		if (found == 1 && (err = copy_run(-1, base, s, e)))
			break;
		pos = e;
	}
	*done = (size_t)pos;
	return err;
}

/* [s, e) of the mapping becomes private memory, in as few calls as the
 * pages around the thread pointer allow: those are filled from the file at
 * once (copy_swap), and [*ta, *tb) tells which they were. */
static int replace(int fd, char *base, uint64_t s, uint64_t e, uint64_t *ta, uint64_t *tb)
{
	uint64_t a, b;
	*ta = *tb = 0;
	if (s >= e)
		return 0;
	if (!tp_window(base, s, e, &a, &b))
		return map_copy(base + s, (size_t)(e - s));
	int err = 0;
	if (a > s && (err = map_copy(base + s, (size_t)(a - s))))
		return err;
	if (copy_swap(fd, base, a, b) == 0 || copy_in_place(fd, base, a, b) == 0) {
		*ta = a;
		*tb = b;
	} else if ((err = map_copy(base + a, (size_t)(b - a)))) {
		return err;
	}
	return e > b ? map_copy(base + b, (size_t)(e - b)) : 0;
}

/* Runs are taken RUN_BATCH at a time, and private memory mapped over all of
 * their range, holes included, at once: a heap with a page of data in each
 * span (a shell's) took two mappings and two advices for each, 8 system
 * calls a span, and a fork of bash three times glibc's time. */
#define RUN_BATCH 64

int os_map_private_copy(int fd, void *at, size_t size, os_data_runs_fn runs, const void *arg, size_t *done)
{
	if (fd < 0)
		return copy_from_mapping(at, size, runs, arg, done);
	char *base = at;
	uint64_t pos = 0, page = (uint64_t)os_page_size();
	struct { uint64_t s, e; } batch[RUN_BATCH];
	int err = 0;
	while (pos < size && !err) {
		/* The batch: [pos, end), then [keep_s, keep_e) left as it is. */
		uint64_t end = pos, keep_s = 0, keep_e = 0, ta, tb;
		unsigned n = 0;
		while (n < RUN_BATCH && end < size) {
			uint64_t s, e;
			int found = next_run(runs, arg, end, size, page, &s, &e);
			if (found < 0) {
				err = -found;
				break;
			}
			if (found == 2) {
				keep_s = s;
				keep_e = e;
				end = s;
				break;
			}
			if (found)
				batch[n].s = s, batch[n++].e = e;
			end = e;
		}
		int rerr = replace(fd, base, pos, end, &ta, &tb);
		if (rerr) {
			err = rerr;
			break;
		}
		for (unsigned i = 0; i < n; i++) {
			uint64_t s = batch[i].s, e = batch[i].e;
			int ferr = 0;
			if (ta < tb && s < tb && e > ta) {
				if (s < ta)
					ferr = fill_run(fd, base, s, ta);
				if (!ferr && e > tb)
					ferr = fill_run(fd, base, tb, e);
			} else {
				ferr = fill_run(fd, base, s, e);
			}
			if (ferr) {
				*done = (size_t)s;
				return ferr;
			}
		}
		pos = keep_e > keep_s ? keep_e : end;
	}
	*done = (size_t)pos;
	return err;
}

/* Address space kept without memory or access: a reservation given back its
 * range, or what a forked child could not copy of its parent's heap (so it
 * can never write into it). */
int os_map_none(void *at, size_t size)
{
	if (mmap(at, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
		return errno;
	return 0;
}

/* Descriptors of ours sit high, out of the way of the numbers programs
 * pick themselves (`exec 6>file` in a shell, dup2 onto 3 in a daemon):
 * 32 below the soft limit (8 below a limit under 128), or below 1024 when
 * the limit is higher, so the kernel's descriptor table stays small. */
int os_fd_high(int fd)
{
	struct rlimit rl;
	if (fd < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return fd;
	rlim_t top = rl.rlim_cur < 1024 ? rl.rlim_cur : 1024;
	rlim_t from = top >= 128 ? top - 32 : top - 8;
	if (top < 16 || (rlim_t)fd >= from)
		return fd;
	int high = fcntl(fd, F_DUPFD_CLOEXEC, (int)from);
	if (high < 0)
		return fd;
	close(fd);
	return high;
}

bool os_fd_is(int fd, const struct os_file_id *id)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_dev == id->dev && (uint64_t)st.st_ino == id->ino;
}

int os_file_id(int fd, struct os_file_id *id)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return errno;
	id->dev = (uint64_t)st.st_dev;
	id->ino = (uint64_t)st.st_ino;
	return 0;
}

int os_commit(int fd, uint64_t offset, size_t size)
{
	/* posix_fallocate returns the error instead of setting errno. On tmpfs
	 * this reserves the pages, so touching them later cannot SIGBUS. */
	return posix_fallocate(fd, (off_t)offset, (off_t)size);
}

/* Pages in place of a hole, written with zeros rather than reserved, then
 * mapped at `map` by a read of one byte in each 64 KiB. A written page is
 * ready, so the kernel maps its neighbours with it (fault-around, 64 KiB
 * by default): a few faults for the range where reserved pages take one
 * each when first touched, and the program's writes then fault no more.
 * This is about a third less time per page on tmpfs (for files on disk,
 * where the zeros would be written out, callers reserve). Only for a range
 * the caller knows to be a hole: what it held is overwritten. Past the
 * file size limit, where a write would raise SIGXFSZ, and once writing has
 * been refused for another reason than space (a sandbox's system call
 * filter, say), the pages are reserved instead. */
static const char zeros[4096];
static const struct iovec zero_pieces[64] = { [0 ... 63] = { (void *)zeros, sizeof(zeros) } };
static bool fill_refused;

int os_commit_fill(int fd, uint64_t offset, size_t size, const volatile char *map)
{
	struct rlimit rl;
	if (!size)
		return 0;
	if (__atomic_load_n(&fill_refused, __ATOMIC_RELAXED) || getrlimit(RLIMIT_FSIZE, &rl) != 0 ||
	    (rl.rlim_cur != RLIM_INFINITY && offset + size > rl.rlim_cur))
		return os_commit(fd, offset, size);
	int saved = errno;
	uint64_t at = offset, end = offset + size;
	while (at < end) {
		uint64_t pieces = (end - at) / sizeof(zeros);
		ssize_t w = pieces ? syscall(SYS_pwritev, fd, zero_pieces, pieces < 64 ? (int)pieces : 64, (off_t)at, 0)
				   : os_pwrite(fd, zeros, (size_t)(end - at), at);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int err = w < 0 ? errno : ENOSPC;
			/* Reserving works where writing did not: writing is
			 * what is refused, so it is not tried again. */
			if (err != ENOSPC && err != EDQUOT && err != EFBIG && err != ENOMEM &&
			    (err = os_commit(fd, at, (size_t)(end - at))) == 0) {
				__atomic_store_n(&fill_refused, true, __ATOMIC_RELAXED);
				break;
			}
			if (at > offset)
				os_decommit(fd, offset, (size_t)(at - offset));
			return err;
		}
		at += (uint64_t)w;
	}
	for (size_t k = 0; k < size; k += 64u << 10)
		(void)map[k];
	(void)map[size - 1];
	errno = saved;
	return 0;
}

bool os_is_tmpfs(int fd)
{
	struct statfs sf;
	int saved = errno;
	bool tmpfs = fstatfs(fd, &sf) == 0 && sf.f_type == TMPFS_MAGIC;
	errno = saved;
	return tmpfs;
}

int os_decommit(int fd, uint64_t offset, size_t size)
{
	if (syscall(SYS_fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)size) == 0)
		return 0;
	return errno;
}

int os_shrink(int fd, uint64_t size)
{
	return ftruncate(fd, (off_t)size) == 0 ? 0 : errno;
}

int os_grow(int fd, uint64_t size)
{
	/* Past the file size limit (ulimit -f) the kernel would end the
	 * process with SIGXFSZ. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && size > rl.rlim_cur)
		return EFBIG;
	return ftruncate(fd, (off_t)size) == 0 ? 0 : errno;
}

static int byte_lock(int fd, uint64_t offset, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)offset, .l_len = 1 };
	return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : errno;
}

int os_lock_byte(int fd, uint64_t offset)
{
	return byte_lock(fd, offset, F_WRLCK);
}

int os_unlock_byte(int fd, uint64_t offset)
{
	return byte_lock(fd, offset, F_UNLCK);
}

/* Every signal but those a fault or a system call filter raises (SIGSYS:
 * a seccomp trap while it is held back kills) is held back in this thread,
 * and cancellation is off, until os_quiet_end. The system call, not the C
 * library's wrapper (which the shim interposes); sigfillset leaves out the
 * C library's own signals. */
void os_quiet_begin(struct os_quiet *q)
{
	sigset_t all;
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGTRAP);
	sigdelset(&all, SIGSYS);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &q->mask, _NSIG / 8);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &q->cancel);
}

void os_quiet_end(const struct os_quiet *q)
{
	int saved = errno, ignored;
	pthread_setcancelstate(q->cancel, &ignored);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &q->mask, NULL, _NSIG / 8);
	errno = saved;
}

ssize_t os_pread(int fd, void *buf, size_t size, uint64_t offset)
{
	return syscall(SYS_pread64, fd, buf, size, (off_t)offset);
}

ssize_t os_pwrite(int fd, const void *buf, size_t size, uint64_t offset)
{
	return syscall(SYS_pwrite64, fd, buf, size, (off_t)offset);
}

/* Asked as for a read lock: only another's write lock conflicts with it, not
 * a read lock a reader of the file took (see the reader's lock_held). */
int os_lock_held(int fd, uint64_t offset, bool *held)
{
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = (off_t)offset, .l_len = 1 };
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return errno;
	*held = fl.l_type != F_UNLCK;
	return 0;
}

/* Field 22 of /proc/<pid>/stat: the process's start time in clock ticks
 * since boot. Together with the pid it names one process (proc(5)). With
 * ppid, field 4 too: the parent's pid. */
int os_proc_stat(pid_t pid, uint64_t *ticks, pid_t *ppid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int e = errno;
	close(fd);
	if (n <= 0)
		return n < 0 ? e : EIO;
	buf[n] = 0;
	/* The command may contain spaces and parentheses: count from the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return EIO;
	int field = 2;
	pid_t parent = 0;
	for (; *p && field < 22; p++)
		if (*p == ' ' && ++field == 4)
			for (const char *d = p + 1; *d >= '0' && *d <= '9' && parent < 100000000; d++)
				parent = parent * 10 + (*d - '0');
	if (field != 22)
		return EIO;
	uint64_t v = 0;
	if (*p < '0' || *p > '9')
		return EIO;
	for (; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	*ticks = v;
	if (ppid)
		*ppid = parent;
	return 0;
}

int os_proc_start_time(pid_t pid, uint64_t *ticks)
{
	return os_proc_stat(pid, ticks, NULL);
}

/* Reads a small file into buf (NUL-terminated, trailing newline removed). */
int os_read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	ssize_t n = read(fd, buf, size - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return e;
	while (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n] = 0;
	return 0;
}

uint64_t os_now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
