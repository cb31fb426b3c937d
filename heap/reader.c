/* SPDX-License-Identifier: MIT */
/*
 * The read-only, validating view of heap files that the tools use. A heap
 * file is untrusted input (any user may write one into /dev/shm, and a live
 * one changes underneath us), so every offset and length is checked against
 * the file's size before use, every walk is bounded by it, and the file is
 * read with pread(2) only (never mapped): a file that shrinks gives a short
 * read, not SIGBUS. Walks skip holes with lseek(2), which moves the file
 * offset.
 * heap/FORMAT.md lists each check.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "redhawk/shm.h"
#include "format.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the heap format is little-endian; this reader reads it in place"
#endif

/* Reads go through buffers of this size: large enough that a 1 GiB heap
 * needs few system calls, small enough to sit in the L2 cache. */
#define CHUNK (64 * 1024)
/* The journal window holds the longest record we ever parse whole: a
 * thread's counter table (16 + 40 x 4096 bytes), or a module record's fixed
 * part and a path of up to 65535 bytes. */
#define JOURNAL_WINDOW (256 * 1024)
/* Frames per site: heap.h's RH_MAX_TRACE_DEPTH, the most any writer records. */
#define SITE_MAX_DEPTH 64

/* REDHAWK 2.2 (x86_64): a one-page file header, then superblocks, each a
 * one-page header followed by its data. Offsets inside those pages. */
#define R22_PAGE          4096u
#define R22_HDR_VERSION   4
#define R22_HDR_REFCOUNT  8
#define R22_HDR_CREATOR   12
#define R22_SB_OFFSET     256
#define R22_SB_SIZE       264
#define R22_SB_DATA_START 268
#define R22_SB_USED       312
#define R22_SB_READ       320

static const uint32_t size_classes[] = { RH_SIZE_CLASSES };
_Static_assert(sizeof(size_classes) / sizeof(size_classes[0]) == RH_NUM_CLASSES,
	"RH_NUM_CLASSES matches RH_SIZE_CLASSES");

/* A superblock as validated by rh_heap_open; walks use this snapshot. */
struct sb_entry {
	uint64_t offset;
	uint64_t size;
	uint64_t journal_end;   /* JOURNAL: absolute end of the published records */
	uint32_t header_size;
	uint32_t npages;
	uint16_t kind;
};

struct rh_heap {
	int fd;
	int own_fd;             /* rh_heap_close closes fd (rh_heap_open's) */
	int bad;                /* open found the file bad: walks refuse */
	uint32_t page_size;
	struct rh_heap_info info;
	struct sb_entry *sbs;
	size_t nsbs, sbs_cap;
	char error[256];
};

__attribute__((format(printf, 2, 3)))
static int fail(struct rh_heap *h, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->error, sizeof(h->error), fmt, ap);
	va_end(ap);
	errno = EPROTO;
	return -1;
}

/* Reads exactly len bytes at off; a short read means the file shrank. */
static int read_at(struct rh_heap *h, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	if (off > (uint64_t)INT64_MAX - len)
		return fail(h, "read at offset %" PRIu64 ": offset out of range", off);
	while (done < len) {
		ssize_t n = pread(h->fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(h, "read at offset %" PRIu64 ": %s", off + done, strerror(errno));
		if (n == 0)
			return fail(h, "file ends at offset %" PRIu64 ", expected %zu more bytes (it shrank)",
				off + done, len - done);
		done += (size_t)n;
	}
	return 0;
}

/* Reads up to len bytes at 0; returns the count, or -1. */
static ssize_t read_head(int fd, void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* --- Liveness --------------------------------------------------------------- */

/* 1 when some other open file description holds a write lock on the byte,
 * 0 when not, -1 with errno. Asked as for a read lock, which only a write
 * lock conflicts with: a read lock anyone who can read the file may take
 * (without write access) must not make a dead creator look alive. l_pid
 * must be 0 for OFD locks. */
static int lock_held(int fd, uint64_t byte)
{
	struct flock fl = {
		.l_type = F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = (off_t)byte,
		.l_len = 1,
		.l_pid = 0,
	};
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -1;
	return fl.l_type != F_UNLCK;
}

/* 1 when no process pid exists, 0 when one does (EPERM: it belongs to another
 * user, see kill(2)), -1 with errno. Signal 0 sends nothing. */
static int pid_gone(pid_t pid)
{
	if (pid <= 0)
		return 1;
	if (kill(pid, 0) == 0 || errno == EPERM)
		return 0;
	return errno == ESRCH ? 1 : -1;
}

int rh_heap_fd_orphaned(int fd, const struct rh_heap_info *info)
{
	if (!info) {
		errno = EINVAL;
		return -1;
	}
	if (info->kind == RH_HEAP_NATIVE && (info->flags & RH_HEAP_F_LOCKED)) {
		int held = lock_held(fd, RH_LOCK_BASE);
		return held < 0 ? -1 : !held;
	}
	return pid_gone(info->creator_pid);
}

/* Orphan state and live holders of a native heap whose header we hold. The
 * creator's lock byte (or pid) is asked once: tools open many heaps. */
static void native_liveness(struct rh_heap *h, const struct heap_header *hdr)
{
	int locked = (hdr->flags & RH_HEAP_F_LOCKED) != 0;
	int held0 = locked ? lock_held(h->fd, RH_LOCK_BASE) : -1;
	if (held0 < 0) /* no lock, or no lock support here: the pid decides */
		locked = 0;
	int creator_gone = locked ? !held0 : pid_gone(hdr->creator_pid) == 1;
	h->info.orphaned = creator_gone;

	int refs = 0;
	for (unsigned i = 0; i < RH_MAX_HOLDERS; i++) {
		pid_t pid = hdr->holders[i].pid;
		if (pid == 0)
			continue;
		if (locked)
			refs += i == 0 ? held0 : lock_held(h->fd, RH_LOCK_BASE + i) == 1;
		else if (pid == hdr->creator_pid)
			refs += !creator_gone;
		else
			refs += pid_gone(pid) == 0;
	}
	h->info.refcount = refs;
}

/* --- Opening ------------------------------------------------------------------ */

static int sb_add(struct rh_heap *h, const struct sb_entry *e)
{
	if (h->nsbs == h->sbs_cap) {
		/* Bounded by the file: every superblock is at least a page. */
		size_t cap = h->sbs_cap ? h->sbs_cap * 2 : 16;
		struct sb_entry *n = realloc(h->sbs, cap * sizeof(*n));
		if (!n)
			return fail(h, "out of memory");
		h->sbs = n;
		h->sbs_cap = cap;
	}
	h->sbs[h->nsbs++] = *e;
	return 0;
}

/* Checks one superblock header read at pos; limit is where superblocks end. */
static int check_superblock(struct rh_heap *h, const struct superblock *sb, uint64_t pos,
	uint64_t limit, struct sb_entry *e)
{
	uint64_t page = h->page_size;
	uint64_t fsize = h->info.file_size;

	if (sb->magic != RH_SB_MAGIC)
		return fail(h, "superblock at offset %" PRIu64 ": bad magic 0x%08" PRIx32, pos, sb->magic);
	if (sb->offset != pos)
		return fail(h, "superblock at offset %" PRIu64 ": its offset field says %" PRIu64,
			pos, sb->offset);
	if (sb->size == 0 || sb->size % page)
		return fail(h, "superblock at offset %" PRIu64 ": size %" PRIu64
			" is not a multiple of the page size", pos, sb->size);
	if (sb->size > limit - pos) {
		if (sb->size > fsize - pos)
			return fail(h, "superblock at offset %" PRIu64 ": size %" PRIu64
				" runs past the end of the file (%" PRIu64 " bytes)", pos, sb->size, fsize);
		return fail(h, "superblock at offset %" PRIu64 ": size %" PRIu64
			" runs past the end of the superblocks (%" PRIu64 ")", pos, sb->size, limit);
	}
	if (sb->npages != sb->size / page)
		return fail(h, "superblock at offset %" PRIu64 ": %" PRIu32 " pages, its size says %" PRIu64,
			pos, sb->npages, sb->size / page);
	if (sb->header_size < sizeof(struct superblock) || sb->header_size > sb->size)
		return fail(h, "superblock at offset %" PRIu64 ": header size %" PRIu32
			" is not between %zu and its size %" PRIu64,
			pos, sb->header_size, sizeof(struct superblock), sb->size);

	*e = (struct sb_entry){
		.offset = pos, .size = sb->size, .header_size = sb->header_size,
		.npages = sb->npages, .kind = sb->kind,
	};
	switch (sb->kind) {
	case RH_SB_DATA:
		if (sb->header_size % page)
			return fail(h, "superblock at offset %" PRIu64 ": header size %" PRIu32
				" is not a multiple of the page size", pos, sb->header_size);
		if (sb->header_size < offsetof(struct superblock, pages) + (uint64_t)sb->npages * sizeof(struct page_desc))
			return fail(h, "superblock at offset %" PRIu64 ": header size %" PRIu32
				" cannot hold %" PRIu32 " page descriptors", pos, sb->header_size, sb->npages);
		return 0;
	case RH_SB_JOURNAL:
		if (sb->header_size % 8)
			return fail(h, "superblock at offset %" PRIu64 ": journal header size %" PRIu32
				" is not a multiple of 8", pos, sb->header_size);
		/* 0: the journal superblock was made but holds no record yet. */
		if (sb->journal_end != 0 && (sb->journal_end < sb->header_size ||
				sb->journal_end > sb->size || sb->journal_end % 8))
			return fail(h, "superblock at offset %" PRIu64 ": journal end %" PRIu64
				" is not a multiple of 8 between %" PRIu32 " and %" PRIu64,
				pos, sb->journal_end, sb->header_size, sb->size);
		e->journal_end = pos + (sb->journal_end ? sb->journal_end : sb->header_size);
		return 0;
	default:
		return fail(h, "superblock at offset %" PRIu64 ": unknown kind %u", pos, sb->kind);
	}
}

static int open_native(struct rh_heap *h, const struct heap_header *hdr, size_t n)
{
	struct rh_heap_info *in = &h->info;

	in->kind = RH_HEAP_NATIVE;
	if (n < 8)
		return fail(h, "truncated header: the file has %" PRIu64 " bytes", in->file_size);
	in->version_major = hdr->version_major;
	in->version_minor = hdr->version_minor;
	if (hdr->version_major != RH_HEAP_VERSION_MAJOR)
		return fail(h, "format version %u.%u, this reader knows %u.x",
			hdr->version_major, hdr->version_minor, RH_HEAP_VERSION_MAJOR);
	if (n < sizeof(*hdr))
		return fail(h, "truncated header: the file has %" PRIu64 " bytes, the header needs %zu",
			in->file_size, sizeof(*hdr));

	/* Identity first, so that a heap failing the checks below still says
	 * whose it was and whether its creator lives. */
	in->creator_pid = hdr->creator_pid;
	in->creator_uid = hdr->creator_uid;
	in->creator_start = hdr->creator_start;
	in->created_ns = hdr->created_ns;
	in->instance = hdr->instance;
	in->flags = hdr->flags;
	in->npools = hdr->npools;
	in->trace_depth = hdr->trace_depth;
	/* NUL-terminated whatever the file says; control bytes would reach a
	 * terminal through the tools. */
	for (size_t i = 0; i < sizeof(in->command) - 1 && hdr->command[i]; i++) {
		unsigned char c = (unsigned char)hdr->command[i];
		unsigned char next = i + 1 < sizeof(in->command) - 1 ? (unsigned char)hdr->command[i + 1] : 0;
		int c1 = c == 0xc2 && next >= 0x80 && next <= 0x9f; /* C1 controls, as UTF-8 */
		in->command[i] = c < 0x20 || c == 0x7f || c1 ? '?' : (char)c;
		if (c1)
			in->command[++i] = '?';
	}
	native_liveness(h, hdr);

	int64_t used = 0, live = 0;
	for (unsigned i = 0; i < RH_MAX_COUNTERS; i++) {
		/* Wrapping adds: a hostile file must not reach signed overflow. */
		used = (int64_t)((uint64_t)used + (uint64_t)hdr->counters[i].used_bytes);
		live = (int64_t)((uint64_t)live + (uint64_t)hdr->counters[i].allocs -
			(uint64_t)hdr->counters[i].frees);
	}
	/* Counters of different threads move at different times: a sum can
	 * dip below zero for a moment. */
	in->heap_used = used > 0 ? (uint64_t)used : 0;
	in->live_blocks = live > 0 ? live : 0;

	uint32_t page = hdr->page_size;
	if (page < 4096 || page > 65536 || (page & (page - 1)))
		return fail(h, "page size %" PRIu32 " is not a power of two between 4096 and 65536", page);
	h->page_size = page;
	if (hdr->header_size < sizeof(*hdr) || hdr->header_size % page)
		return fail(h, "header size %" PRIu32 " is not a multiple of the page size %" PRIu32
			", at least %zu", hdr->header_size, page, sizeof(*hdr));
	if (hdr->header_size > in->file_size)
		return fail(h, "truncated header: the file has %" PRIu64 " bytes, the header needs %" PRIu32,
			in->file_size, hdr->header_size);
	if (hdr->npools > RH_MAX_POOLS)
		return fail(h, "%" PRIu32 " pools, at most %d", hdr->npools, RH_MAX_POOLS);
	if (hdr->trace_depth > SITE_MAX_DEPTH)
		return fail(h, "trace depth %" PRIu32 ", at most %d", hdr->trace_depth, SITE_MAX_DEPTH);

	uint64_t end = hdr->superblocks_end;
	if (end == 0) /* no superblock yet */
		end = hdr->header_size;
	if (end < hdr->header_size)
		return fail(h, "superblocks end at %" PRIu64 ", inside the header (%" PRIu32 " bytes)",
			end, hdr->header_size);
	if (end > in->file_size) {
		/* The creator grows the file before it publishes a superblock:
		 * the file may have grown since our fstat. */
		struct stat st;
		if (fstat(h->fd, &st) == 0 && (uint64_t)st.st_size > in->file_size)
			in->file_size = (uint64_t)st.st_size;
	}
	uint64_t limit = end < in->file_size ? end : in->file_size;

	/* Each step advances by at least a page, so this ends. */
	for (uint64_t pos = hdr->header_size; pos < limit; ) {
		struct superblock sb;
		struct sb_entry e;
		if (limit - pos < sizeof(sb))
			return fail(h, "superblock at offset %" PRIu64 ": truncated, the %s ends at %" PRIu64,
				pos, limit == end ? "superblock area" : "file", limit);
		if (read_at(h, &sb, sizeof(sb), pos) < 0 || check_superblock(h, &sb, pos, limit, &e) < 0)
			return -1;
		if (sb_add(h, &e) < 0)
			return -1;
		in->superblocks++;
		if (e.kind == RH_SB_JOURNAL)
			in->journal_superblocks++;
		else
			in->heap_size += e.size - e.header_size;
		pos += e.size;
	}
	if (end > in->file_size)
		return fail(h, "superblocks end at %" PRIu64 ", past the end of the file (%" PRIu64 " bytes)",
			end, in->file_size);
	return 0;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static int open_redhawk22(struct rh_heap *h, const uint8_t *head, size_t n, uid_t owner)
{
	struct rh_heap_info *in = &h->info;

	in->kind = RH_HEAP_REDHAWK22;
	in->live_blocks = -1;
	if (n < 16)
		return fail(h, "truncated header: the file has %" PRIu64 " bytes", in->file_size);
	uint32_t version = get32(head + R22_HDR_VERSION);
	in->version_major = version;
	if (version != RH_REDHAWK22_VERSION)
		return fail(h, "REDHAWK 2.2 heap version %" PRIu32 ", this reader knows %d",
			version, RH_REDHAWK22_VERSION);
	in->refcount = (int32_t)get32(head + R22_HDR_REFCOUNT);
	in->creator_pid = (int32_t)get32(head + R22_HDR_CREATOR);
	in->creator_uid = owner; /* the header does not say; the creator made the file */
	in->orphaned = pid_gone(in->creator_pid) == 1;
	if (in->file_size < R22_PAGE)
		return fail(h, "truncated header: the file has %" PRIu64 " bytes, the header needs %u",
			in->file_size, R22_PAGE);

	/* REDHAWK 2.2 has no end mark: superblocks run to the end of the file.
	 * Each step advances by at least a page, so this ends. */
	uint64_t fsize = in->file_size;
	for (uint64_t pos = R22_PAGE; pos < fsize; ) {
		uint8_t sb[R22_SB_READ];
		if (fsize - pos < R22_PAGE)
			return fail(h, "superblock at offset %" PRIu64 ": truncated, the file ends at %" PRIu64,
				pos, fsize);
		if (read_at(h, sb, sizeof(sb), pos) < 0)
			return -1;
		uint64_t off = get64(sb + R22_SB_OFFSET);
		uint64_t size = get32(sb + R22_SB_SIZE);
		uint32_t data_start = get32(sb + R22_SB_DATA_START);
		uint64_t used = get64(sb + R22_SB_USED);
		/* REDHAWK 2.2 grows the file before it writes the new superblock's
		 * header: a creator caught in between, or killed there, leaves
		 * zeros. What follows cannot be found, so the file is unreadable. */
		if (off == 0)
			return fail(h, "superblock at offset %" PRIu64 ": header not written", pos);
		if (off != pos)
			return fail(h, "superblock at offset %" PRIu64 ": its offset field says %" PRIu64, pos, off);
		if (data_start != R22_PAGE)
			return fail(h, "superblock at offset %" PRIu64 ": data starts at %" PRIu32 ", expected %u",
				pos, data_start, R22_PAGE);
		if (size > fsize - pos - R22_PAGE)
			return fail(h, "superblock at offset %" PRIu64 ": size %" PRIu64
				" runs past the end of the file (%" PRIu64 " bytes)", pos, size, fsize);
		if (used > size)
			return fail(h, "superblock at offset %" PRIu64 ": %" PRIu64 " bytes used of %" PRIu64,
				pos, used, size);
		in->superblocks++;
		in->heap_size += size;
		in->heap_used += used;
		pos += R22_PAGE + size;
	}
	return 0;
}

/* rh_heap_open and rh_heap_open_fd: the heap on fd, closed on failure when
 * own (and then by rh_heap_close). */
static int open_on(int fd, int own, struct rh_heap **heap)
{
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int err = errno;
		if (own)
			close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		if (own)
			close(fd);
		return ENOTSUP;
	}

	/* One read covers a native header (holders and counters included) and
	 * REDHAWK 2.2's header page. */
	union {
		struct heap_header hdr;
		uint8_t bytes[sizeof(struct heap_header)];
	} head;
	ssize_t n = read_head(fd, head.bytes, sizeof(head.bytes));
	if (n < 0) {
		int err = errno;
		if (own)
			close(fd);
		return err;
	}
	memset(head.bytes + n, 0, sizeof(head.bytes) - (size_t)n);
	uint32_t magic = get32(head.bytes);
	if (n < 4 || (magic != RH_HEAP_MAGIC && magic != RH_REDHAWK22_MAGIC)) {
		if (own)
			close(fd);
		return ENOTSUP;
	}

	struct rh_heap *h = calloc(1, sizeof(*h));
	if (!h) {
		if (own)
			close(fd);
		return ENOMEM;
	}
	h->fd = fd;
	h->own_fd = own;
	h->info.file_size = (uint64_t)st.st_size;
	int rc = magic == RH_HEAP_MAGIC ? open_native(h, &head.hdr, (size_t)n)
		: open_redhawk22(h, head.bytes, (size_t)n, st.st_uid);
	*heap = h;
	if (rc < 0) {
		h->bad = 1;
		return EPROTO;
	}
	return 0;
}

int rh_heap_open(int dirfd, const char *name, struct rh_heap **heap)
{
	if (!heap || !name)
		return EINVAL;
	*heap = NULL;
	/* O_NONBLOCK: opening a FIFO someone left here must not hang us. */
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return errno;
	return open_on(fd, 1, heap);
}

int rh_heap_open_fd(int fd, struct rh_heap **heap)
{
	if (!heap)
		return EINVAL;
	*heap = NULL;
	if (fd < 0)
		return EINVAL;
	return open_on(fd, 0, heap);
}

void rh_heap_close(struct rh_heap *heap)
{
	if (!heap)
		return;
	if (heap->own_fd)
		close(heap->fd);
	free(heap->sbs);
	free(heap);
}

const char *rh_heap_error(const struct rh_heap *heap)
{
	return heap ? heap->error : "no heap";
}

const struct rh_heap_info *rh_heap_info(const struct rh_heap *heap)
{
	return heap ? &heap->info : NULL;
}

/* Common entry checks of the walks: 1 to walk, 0 nothing to walk, -1 bad. */
static int walk_start(struct rh_heap *h, int have_fn)
{
	if (!h || !have_fn) {
		errno = EINVAL;
		return -1;
	}
	if (h->bad) {
		errno = EPROTO;
		return -1;
	}
	return h->info.kind == RH_HEAP_NATIVE;
}

/* --- Blocks -------------------------------------------------------------------- */

struct block_walk {
	struct rh_heap *h;
	const struct sb_entry *sb;
	int (*fn)(const struct rh_block_info *, void *);
	void *arg;
	struct page_desc *descs;   /* a window of descriptors */
	uint8_t *slots;            /* a window of slots */
};

static int report_block(struct block_walk *w, const struct block_header *bh, uint32_t span,
	uint64_t hdr_off, uint64_t size, uint64_t usable)
{
	uint64_t sb_page = w->sb->offset / w->h->page_size;
	/* span_index is 16 bits wide: it holds the low bits of larger indices. */
	if ((bh->sb_page & RH_SB_PAGE_MASK) != sb_page || bh->span_index != (uint16_t)span)
		return fail(w->h, "block header at offset %" PRIu64 ": names superblock page %" PRIu32
			" span %u, but lies in superblock page %" PRIu64 " span %" PRIu32,
			hdr_off, bh->sb_page & RH_SB_PAGE_MASK, bh->span_index, sb_page, span);
	struct rh_block_info b = {
		.offset = hdr_off + sizeof(*bh),
		.size = size,
		.usable = usable,
		.refcount = bh->refcount & RH_REF_COUNT_MASK,
		.site = bh->site,
		.reachable = (bh->refcount & RH_REF_REACHABLE) != 0,
	};
	return w->fn(&b, w->arg);
}

/* One slot of a SMALL span; buf holds its bytes, or is NULL to read them. */
static int walk_slot(struct block_walk *w, uint32_t span, uint64_t slot_off, uint32_t slot,
	const uint8_t *buf)
{
	struct block_header bh;
	uint32_t rel = 0;

	if (buf)
		memcpy(&bh, buf, sizeof(bh));
	else if (read_at(w->h, &bh, sizeof(bh), slot_off) < 0)
		return -1;
	if (bh.refcount == RH_REF_MARKER) {
		/* The real header must leave room for itself and 16 bytes of data
		 * inside the slot. */
		rel = bh.site;
		if (rel < sizeof(bh) || rel % 16 || rel > slot - 32)
			return fail(w->h, "slot at offset %" PRIu64 ": marker points %" PRIu32
				" bytes in, outside its %" PRIu32 "-byte slot", slot_off, rel, slot);
		if (buf)
			memcpy(&bh, buf + rel, sizeof(bh));
		else if (read_at(w->h, &bh, sizeof(bh), slot_off + rel) < 0)
			return -1;
		if (bh.refcount == RH_REF_MARKER)
			return fail(w->h, "slot at offset %" PRIu64 ": marker points to another marker", slot_off);
	}
	if (!(bh.refcount & RH_REF_COUNT_MASK))
		return 0;
	uint64_t usable = slot - rel - sizeof(bh);
	if (bh.slack > usable)
		return fail(w->h, "block header at offset %" PRIu64 ": slack %u exceeds its %" PRIu64
			" usable bytes", slot_off + rel, bh.slack, usable);
	return report_block(w, &bh, span, slot_off + rel, usable - bh.slack, usable);
}

/* The first slot index >= k of the span that may hold data: slots wholly
 * inside a hole read as zeros, so none of them is a block. A hostile sparse
 * file can claim billions of slots in pages it never allocated; this keeps
 * the walk proportional to what the file really holds (lseek(2), SEEK_DATA).
 * Returns the span's slot count when the rest is a hole, -1 when the file
 * shrank. */
static int64_t next_slot(struct block_walk *w, uint64_t span_off, uint32_t slot, uint32_t k,
	uint32_t nslots)
{
	uint64_t off = span_off + (uint64_t)k * slot;
	off_t data = lseek(w->h->fd, (off_t)off, SEEK_DATA);
	if (data < 0 && errno == ENXIO) {
		struct stat st;
		uint64_t end = span_off + (uint64_t)nslots * slot;
		if (fstat(w->h->fd, &st) == 0 && (uint64_t)st.st_size < end)
			return fail(w->h, "file ends at offset %" PRIu64 ", before the slots that end at %"
				PRIu64 " (it shrank)", (uint64_t)st.st_size, end);
		return nslots;
	}
	if (data < 0 || (uint64_t)data <= off) /* no hole support: read everything */
		return k;
	uint64_t first = ((uint64_t)data - span_off) / slot;
	return first < nslots ? (int64_t)first : nslots;
}

static int walk_small(struct block_walk *w, uint32_t span, const struct page_desc *d,
	uint64_t span_off, uint64_t span_bytes)
{
	if (d->size_class >= RH_NUM_CLASSES)
		return fail(w->h, "span at offset %" PRIu64 ": size class %u, there are %d",
			span_off, d->size_class, RH_NUM_CLASSES);
	uint32_t slot = size_classes[d->size_class];
	uint64_t capacity = span_bytes / slot;
	uint32_t nslots = d->bumped;
	if (nslots > capacity)
		return fail(w->h, "span at offset %" PRIu64 ": %" PRIu32 " slots bumped, it holds %" PRIu64,
			span_off, nslots, capacity);

	/* Slots are taken a window (CHUNK bytes) at a time. Small slots are
	 * read whole; from page-sized slots up, reading just the headers
	 * touches far fewer bytes. */
	uint32_t per_window = CHUNK / slot;
	for (uint32_t k = 0; k < nslots; ) {
		int64_t next = next_slot(w, span_off, slot, k, nslots);
		if (next < 0)
			return -1;
		if ((uint32_t)next != k) {
			k = (uint32_t)next;
			continue;
		}
		uint32_t m = nslots - k < per_window ? nslots - k : per_window;
		uint64_t off = span_off + (uint64_t)k * slot;
		const uint8_t *buf = NULL;
		if (slot < 4096) {
			if (read_at(w->h, w->slots, (size_t)m * slot, off) < 0)
				return -1;
			buf = w->slots;
		}
		for (uint32_t j = 0; j < m; j++) {
			int rc = walk_slot(w, span, off + (uint64_t)j * slot, slot,
				buf ? buf + (size_t)j * slot : NULL);
			if (rc)
				return rc;
		}
		k += m;
	}
	return 0;
}

static int walk_large(struct block_walk *w, uint32_t span, const struct page_desc *d,
	uint64_t span_off, uint64_t span_bytes)
{
	uint32_t data = d->free_head;
	if (data < sizeof(struct block_header) || data % 16 || data >= span_bytes)
		return fail(w->h, "large span at offset %" PRIu64 ": data offset %" PRIu32
			" lies outside its %" PRIu64 " bytes", span_off, data, span_bytes);
	struct block_header bh;
	uint64_t hdr_off = span_off + data - sizeof(bh);
	if (read_at(w->h, &bh, sizeof(bh), hdr_off) < 0)
		return -1;
	if (bh.refcount == RH_REF_MARKER)
		return fail(w->h, "large span at offset %" PRIu64 ": marker header", span_off);
	if (!(bh.refcount & RH_REF_COUNT_MASK))
		return 0;
	uint64_t size = (uint64_t)d->used << 32 | d->bumped;
	uint64_t usable = span_bytes - data;
	if (size > usable)
		return fail(w->h, "large span at offset %" PRIu64 ": block of %" PRIu64
			" bytes, %" PRIu64 " usable", span_off, size, usable);
	return report_block(w, &bh, span, hdr_off, size, usable);
}

static int walk_superblock(struct block_walk *w)
{
	const struct sb_entry *sb = w->sb;
	uint32_t page = w->h->page_size;
	uint32_t npages = sb->npages;
	uint32_t win_lo = 0, win_n = 0;
	const uint32_t win_max = CHUNK / sizeof(struct page_desc);

	/* Spans follow one another from the first page after the header; only
	 * the first page's descriptor of each is current. i grows by at least
	 * one each step. */
	for (uint32_t i = sb->header_size / page; i < npages; ) {
		if (i < win_lo || i - win_lo >= win_n) {
			win_lo = i;
			win_n = npages - i < win_max ? npages - i : win_max;
			if (read_at(w->h, w->descs, (size_t)win_n * sizeof(struct page_desc),
					sb->offset + offsetof(struct superblock, pages) + (uint64_t)i * sizeof(struct page_desc)) < 0)
				return -1;
		}
		struct page_desc d = w->descs[i - win_lo];
		uint64_t span_off = sb->offset + (uint64_t)i * page;
		if (d.span_pages == 0 || d.span_pages > npages - i)
			return fail(w->h, "span at offset %" PRIu64 ": %" PRIu32 " pages, %" PRIu32
				" are left in its superblock", span_off, d.span_pages, npages - i);
		uint64_t span_bytes = (uint64_t)d.span_pages * page;
		int rc;
		switch (d.kind) {
		case RH_PAGE_FREE:
			rc = 0;
			break;
		case RH_PAGE_SMALL:
			rc = walk_small(w, i, &d, span_off, span_bytes);
			break;
		case RH_PAGE_LARGE:
			rc = walk_large(w, i, &d, span_off, span_bytes);
			break;
		default:
			return fail(w->h, "span at offset %" PRIu64 ": unknown page kind %u", span_off, d.kind);
		}
		if (rc)
			return rc;
		i += d.span_pages;
	}
	return 0;
}

int rh_heap_walk_blocks(struct rh_heap *heap,
	int (*fn)(const struct rh_block_info *block, void *arg), void *arg)
{
	int go = walk_start(heap, fn != NULL);
	if (go <= 0)
		return go;
	struct block_walk w = { .h = heap, .fn = fn, .arg = arg };
	w.descs = malloc(CHUNK);
	w.slots = malloc(CHUNK);
	int rc = 0;
	if (!w.descs || !w.slots)
		rc = fail(heap, "out of memory");
	for (size_t i = 0; rc == 0 && i < heap->nsbs; i++) {
		if (heap->sbs[i].kind != RH_SB_DATA)
			continue;
		w.sb = &heap->sbs[i];
		rc = walk_superblock(&w);
	}
	free(w.descs);
	free(w.slots);
	return rc;
}

/* --- Journal ------------------------------------------------------------------ */

/* Per-thread site counters (RH_REC_DELTAS), summed by site. */
struct site_delta {
	uint32_t site;
	int64_t live_bytes, live_blocks, total_allocs, total_bytes;
};

struct journal_walk {
	struct rh_heap *h;
	struct site_delta *deltas;  /* sorted by site */
	size_t ndeltas, cap;
	uint8_t *buf;              /* JOURNAL_WINDOW bytes of the file from win_off */
	uint64_t win_off, win_len;
	int (*site_fn)(const struct rh_site_info *, void *);
	int (*module_fn)(const struct rh_module_info *, void *);
	void *arg;
	char *path;                /* modules: 64 KiB for a NUL-terminated path */
};

/* Makes [pos, pos + need) available in the window; need <= end - pos and
 * need <= JOURNAL_WINDOW. */
static const uint8_t *window(struct journal_walk *w, uint64_t pos, uint64_t need, uint64_t end)
{
	if (pos < w->win_off || pos + need > w->win_off + w->win_len) {
		uint64_t len = end - pos < JOURNAL_WINDOW ? end - pos : JOURNAL_WINDOW;
		w->win_len = 0;
		if (read_at(w->h, w->buf, len, pos) < 0)
			return NULL;
		w->win_off = pos;
		w->win_len = len;
	}
	return w->buf + (pos - w->win_off);
}

static int site_record(struct journal_walk *w, uint64_t pos, const uint8_t *rec, uint32_t size)
{
	struct journal_site s;
	uint64_t frames[SITE_MAX_DEPTH];

	if (size < sizeof(s))
		return fail(w->h, "site record at offset %" PRIu64 ": size %" PRIu32 " is too small",
			pos, size);
	memcpy(&s, rec, sizeof(s));
	if (s.depth > SITE_MAX_DEPTH)
		return fail(w->h, "site record at offset %" PRIu64 ": depth %" PRIu32 ", at most %d",
			pos, s.depth, SITE_MAX_DEPTH);
	if (sizeof(s) + (uint64_t)s.depth * 8 > size)
		return fail(w->h, "site record at offset %" PRIu64 ": %" PRIu32
			" frames do not fit in %" PRIu32 " bytes", pos, s.depth, size);
	if (pos / 8 > UINT32_MAX)
		return fail(w->h, "site record at offset %" PRIu64 ": beyond a 32-bit site id", pos);
	memcpy(frames, rec + sizeof(s), (size_t)s.depth * 8);
	/* Add the threads' own counters for this site. */
	uint32_t id = (uint32_t)(pos / 8);
	size_t lo = 0, hi = w->ndeltas;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (w->deltas[mid].site < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < w->ndeltas && w->deltas[lo].site == id) {
		const struct site_delta *d = &w->deltas[lo];
		s.live_bytes = (int64_t)((uint64_t)s.live_bytes + (uint64_t)d->live_bytes);
		s.live_blocks = (int64_t)((uint64_t)s.live_blocks + (uint64_t)d->live_blocks);
		s.total_allocs += (uint64_t)d->total_allocs;
		s.total_bytes += (uint64_t)d->total_bytes;
	}
	struct rh_site_info si = {
		.id = (uint32_t)(pos / 8),
		.live_bytes = s.live_bytes,
		.live_blocks = s.live_blocks,
		.total_allocs = s.total_allocs,
		.total_bytes = s.total_bytes,
		.depth = s.depth,
		.frames = frames,
	};
	return w->site_fn(&si, w->arg);
}

static int deltas_record(struct journal_walk *w, uint64_t pos, const uint8_t *rec, uint32_t size)
{
	struct journal_deltas t;
	if (size < sizeof(t))
		return fail(w->h, "counter table at offset %" PRIu64 ": size %" PRIu32 " is too small",
			pos, size);
	memcpy(&t, rec, sizeof(t));
	if (sizeof(t) + (uint64_t)t.count * sizeof(struct journal_delta) > size ||
	    size > JOURNAL_WINDOW)
		return fail(w->h, "counter table at offset %" PRIu64 ": %" PRIu32
			" entries do not fit in %" PRIu32 " bytes", pos, t.count, size);
	for (uint32_t i = 0; i < t.count; i++) {
		struct journal_delta e;
		memcpy(&e, rec + sizeof(t) + (size_t)i * sizeof(e), sizeof(e));
		if (!e.site)
			continue;
		if (w->ndeltas == w->cap) {
			size_t cap = w->cap ? w->cap * 2 : 256;
			struct site_delta *n = realloc(w->deltas, cap * sizeof(*n));
			if (!n)
				return fail(w->h, "out of memory");
			w->deltas = n;
			w->cap = cap;
		}
		w->deltas[w->ndeltas++] = (struct site_delta){ e.site, e.live_bytes, e.live_blocks,
			e.total_allocs, e.total_bytes };
	}
	return 0;
}

static int delta_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct site_delta *)a)->site, y = ((const struct site_delta *)b)->site;
	return x < y ? -1 : x > y;
}

/* Sorts the collected deltas by site and sums those of the same site. */
static void deltas_merge(struct journal_walk *w)
{
	if (!w->ndeltas)
		return;
	qsort(w->deltas, w->ndeltas, sizeof(*w->deltas), delta_cmp);
	size_t out = 0;
	for (size_t i = 1; i < w->ndeltas; i++) {
		struct site_delta *a = &w->deltas[out], *b = &w->deltas[i];
		if (a->site == b->site) {
			a->live_bytes = (int64_t)((uint64_t)a->live_bytes + (uint64_t)b->live_bytes);
			a->live_blocks = (int64_t)((uint64_t)a->live_blocks + (uint64_t)b->live_blocks);
			a->total_allocs = (int64_t)((uint64_t)a->total_allocs + (uint64_t)b->total_allocs);
			a->total_bytes = (int64_t)((uint64_t)a->total_bytes + (uint64_t)b->total_bytes);
		} else {
			w->deltas[++out] = *b;
		}
	}
	w->ndeltas = out + 1;
}

static int module_record(struct journal_walk *w, uint64_t pos, const uint8_t *rec, uint32_t size)
{
	struct journal_module m;

	if (size < sizeof(m))
		return fail(w->h, "module record at offset %" PRIu64 ": size %" PRIu32 " is too small",
			pos, size);
	memcpy(&m, rec, sizeof(m));
	if (m.build_id_len > sizeof(m.build_id))
		return fail(w->h, "module record at offset %" PRIu64 ": build-id of %u bytes, at most %zu",
			pos, m.build_id_len, sizeof(m.build_id));
	if (sizeof(m) + (uint64_t)m.path_len > size)
		return fail(w->h, "module record at offset %" PRIu64 ": path of %u bytes does not fit in %"
			PRIu32, pos, m.path_len, size);
	memcpy(w->path, rec + sizeof(m), m.path_len);
	w->path[m.path_len] = 0;
	struct rh_module_info mi = {
		.base = m.base,
		.start = m.start,
		.end = m.end,
		.build_id = m.build_id,
		.build_id_len = m.build_id_len,
		.path = w->path,
		.pos = pos,
	};
	return w->module_fn(&mi, w->arg);
}

/* Calls w's function for every record tagged tag, in file order. */
/* A live heap's journal grows while the file is open: each walk reads how far
 * the records are published now. A value that is not one open would accept,
 * or that would move the end back, leaves the end as it was. */
static void journal_end_now(struct rh_heap *h, struct sb_entry *sb)
{
	uint64_t end;
	if (pread(h->fd, &end, sizeof(end), (off_t)(sb->offset + offsetof(struct superblock, journal_end)))
			!= (ssize_t)sizeof(end))
		return;
	if (end < sb->header_size || end > sb->size || end % 8 || sb->offset + end <= sb->journal_end)
		return;
	sb->journal_end = sb->offset + end;
}

static int walk_journal(struct journal_walk *w, uint16_t tag)
{
	struct rh_heap *h = w->h;
	int rc = 0;

	w->buf = malloc(JOURNAL_WINDOW);
	w->win_off = w->win_len = 0;
	if (tag == RH_REC_MODULE)
		w->path = malloc(UINT16_MAX + 1);
	if (!w->buf || (tag == RH_REC_MODULE && !w->path))
		rc = fail(h, "out of memory");
	for (size_t i = 0; rc == 0 && i < h->nsbs; i++) {
		struct sb_entry *sb = &h->sbs[i];
		if (sb->kind != RH_SB_JOURNAL)
			continue;
		journal_end_now(h, sb);
		uint64_t end = sb->journal_end;
		/* Each record is at least 8 bytes: pos grows every step. */
		for (uint64_t pos = sb->offset + sb->header_size; rc == 0 && pos < end; ) {
			struct journal_record r;
			const uint8_t *p;
			if (end - pos < sizeof(r)) {
				rc = fail(h, "journal record at offset %" PRIu64 ": truncated by the journal end %"
					PRIu64, pos, end);
				break;
			}
			if (!(p = window(w, pos, sizeof(r), end))) {
				rc = -1;
				break;
			}
			memcpy(&r, p, sizeof(r));
			if (r.size < sizeof(r) || r.size % 8 || r.size > end - pos) {
				rc = fail(h, "journal record at offset %" PRIu64 ": size %" PRIu32
					" is not a multiple of 8 between 8 and the %" PRIu64 " bytes left",
					pos, r.size, end - pos);
				break;
			}
			if (r.tag == tag) {
				uint64_t need = r.size < JOURNAL_WINDOW ? r.size : JOURNAL_WINDOW;
				if (!(p = window(w, pos, need, end)))
					rc = -1;
				else if (tag == RH_REC_SITE)
					rc = site_record(w, pos, p, r.size);
				else if (tag == RH_REC_DELTAS)
					rc = deltas_record(w, pos, p, r.size);
				else
					rc = module_record(w, pos, p, r.size);
			}
			pos += r.size;
		}
	}
	free(w->buf);
	free(w->path);
	return rc;
}

int rh_heap_walk_sites(struct rh_heap *heap,
	int (*fn)(const struct rh_site_info *site, void *arg), void *arg)
{
	int go = walk_start(heap, fn != NULL);
	if (go <= 0)
		return go;
	struct journal_walk w = { .h = heap, .site_fn = fn, .arg = arg };
	/* The threads' counter tables first; a bad record is reported by the
	 * site walk when it lies before the end of the sites, in file order. */
	int first = walk_journal(&w, RH_REC_DELTAS);
	deltas_merge(&w);
	int rc = walk_journal(&w, RH_REC_SITE);
	free(w.deltas);
	return rc ? rc : first;
}

int rh_heap_walk_modules(struct rh_heap *heap,
	int (*fn)(const struct rh_module_info *module, void *arg), void *arg)
{
	int go = walk_start(heap, fn != NULL);
	if (go <= 0)
		return go;
	struct journal_walk w = { .h = heap, .module_fn = fn, .arg = arg };
	return walk_journal(&w, RH_REC_MODULE);
}
