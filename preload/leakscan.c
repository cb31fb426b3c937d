/* SPDX-License-Identifier: MIT */
/*
 * The shim's side of redhawk-shmrun. Each process announces itself (pid and
 * start time) on redhawk-shmrun's socket, so that heaps of descendants reaped
 * by their own parents are still found; and, with RH_SHMALLOC_LEAK_SCAN=1, an
 * exit scan marks every live block that a pointer reaches as REACHABLE, as
 * LeakSanitizer does: roots first, then the blocks themselves, transitively.
 *
 * The scan allocates nothing (its work arrays are mmap'd) and stops nothing.
 * Roots: the writable PT_LOAD segments of every loaded module; the exiting
 * thread's stack from the program's frame that called exit or _exit up (for
 * a thread other than the main one this includes its TCB and static TLS,
 * which glibc puts at the top of the thread's stack mapping) and that
 * frame's registers (see find_program_frame); the C library's brk heap;
 * blocks allocated by the dynamic linker (the DTV and dynamic TLS, whose
 * pointers live where we do not look; LeakSanitizer treats them the same
 * way); and blocks published with rh_shm_ref (a reference may be held by
 * another process). Not scanned: the stacks of other threads still running
 * at exit (their stack pointers cannot be had without stopping them), and
 * the main thread's static TLS. Blocks reachable only from those are
 * reported as lost.
 */
#define UNW_LOCAL_ONLY
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "heap.h"
#include "leakscan.h"

static const uint32_t class_size[RH_NUM_CLASSES] = { RH_SIZE_CLASSES };
#define HDR sizeof(struct block_header)

/* --- Announcing ourselves to redhawk-shmrun ------------------------------ */

static struct sockaddr_un shmrun_addr;
static socklen_t shmrun_len;

/* One datagram: the receiver takes our pid from the kernel (SO_PASSCRED),
 * so a process can only ever announce itself. Sent at load (every program
 * image) and in every child of fork. */
static void announce(void)
{
	if (!shmrun_len)
		return;
	int e = errno;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		struct shmrun_hello m = { .magic = SHMRUN_HELLO_MAGIC, .version = 1 };
		os_proc_start_time(getpid(), &m.start);
		/* The receiver's queue is short; wait for room, but never long. */
		struct timeval tv = { .tv_sec = 2 };
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		ssize_t n = sendto(fd, &m, sizeof(m), MSG_NOSIGNAL, (struct sockaddr *)&shmrun_addr, shmrun_len);
		(void)n;
		close(fd);
	}
	errno = e;
}

static void announce_child(void)
{
	announce();
}

void leakscan_fork_child(void)
{
	if (shmrun_len)
		announce();
}

/* Under redhawk-shmrun --leak-check, which sets RH_SHMALLOC_KEEP so that it
 * can read each heap after its process exits: is it still there to read
 * it? A process that outlives it (a daemon started by the command) would
 * otherwise leave its heap for good. */
static bool shmrun_listens(void)
{
	int e = errno;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool yes = fd < 0 || connect(fd, (struct sockaddr *)&shmrun_addr, shmrun_len) == 0;
	if (fd >= 0)
		close(fd);
	/* Out of reach is not gone: a process in another network namespace
	 * cannot see the socket. The launcher's pid is in its name. */
	static const char prefix[] = "redhawk-shmrun-";
	const char *name = shmrun_addr.sun_path + 1, *digits = name + sizeof(prefix) - 1;
	char path[64] = "/proc/", comm[32] = "";
	size_t len = 6;
	if (!yes && strncmp(name, prefix, sizeof(prefix) - 1) == 0) {
		while (*digits >= '0' && *digits <= '9' && len < 20)
			path[len++] = *digits++;
		memcpy(path + len, "/comm", 6);
		int c = len > 6 && *digits == '-' ? open(path, O_RDONLY | O_CLOEXEC) : -1;
		ssize_t n = c >= 0 ? read(c, comm, sizeof(comm) - 1) : -1;
		if (c >= 0)
			close(c);
		yes = n > 0 && strncmp(comm, "redhawk-shmrun", 14) == 0;
	}
	errno = e;
	return yes;
}

/* RH_SHMRUN_SOCKET: a socket name, '@' first for the abstract namespace. */
__attribute__((constructor)) static void leakscan_init(void)
{
	const char *name = getenv("RH_SHMRUN_SOCKET");
	size_t len = name ? strlen(name) : 0;
	if (len < 2 || len >= sizeof(shmrun_addr.sun_path))
		return;
	shmrun_addr.sun_family = AF_UNIX;
	memcpy(shmrun_addr.sun_path, name, len);
	if (name[0] == '@')
		shmrun_addr.sun_path[0] = 0;
	shmrun_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	heap_keep_useful = shmrun_listens;
	pthread_atfork(NULL, NULL, announce_child);
	announce();
}

/* --- The heap's spans, indexed by address --------------------------------- */

struct span {
	uintptr_t start, end;
	struct superblock *sb;
	uint32_t idx;
};

struct work {
	uintptr_t data;
	uint64_t size;
};

#define MAX_LDSO_SITES 64

struct scan {
	struct heap *h;
	size_t page;
	uintptr_t lo, hi;          /* where blocks may lie: the data superblocks */
	struct span *spans;        /* in address order */
	size_t nspans;
	struct work *stack;        /* blocks marked but not yet scanned */
	size_t top, cap;
	int overflow;              /* a marked block did not fit on the stack */
	uintptr_t ldso_lo, ldso_hi; /* the dynamic linker's code */
	uint32_t ldso_sites[MAX_LDSO_SITES];
	unsigned nldso;
	size_t map_bytes;          /* of spans and stack, for munmap */
};

static void *map_work(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* The data superblocks from the header to superblocks_end, as published;
 * calls fn for each. A superblock that does not check out ends the walk. */
static void each_superblock(struct scan *s, uint64_t end, void (*fn)(struct scan *, struct superblock *))
{
	struct heap *h = s->h;
	for (uint64_t off = h->hdr->header_size; off < end;) {
		struct superblock *sb = (struct superblock *)(h->base + off);
		if (__atomic_load_n(&sb->magic, __ATOMIC_ACQUIRE) != RH_SB_MAGIC || sb->offset != off ||
		    sb->size < s->page || sb->size % s->page || sb->size > end - off)
			return;
		fn(s, sb);
		off += sb->size;
	}
}

static void count_pages(struct scan *s, struct superblock *sb)
{
	if (sb->kind == RH_SB_DATA)
		s->cap += sb->size / s->page;
}

static void index_spans(struct scan *s, struct superblock *sb)
{
	if (sb->kind != RH_SB_DATA || sb->npages != sb->size / s->page)
		return;
	uint32_t n = sb->npages;
	const uint64_t *bits = (const uint64_t *)&sb->pages[n];
	for (uint32_t i = (uint32_t)(sb->header_size / s->page); i < n;) {
		/* A descriptor's header page may be a hole (alloc.c, desc_page):
		 * not read unless committed. */
		uint64_t pg = (offsetof(struct superblock, pages) + (uint64_t)i * sizeof(struct page_desc)) / s->page;
		if (!(bits[pg >> 6] >> (pg & 63) & 1))
			return;
		const struct page_desc *d = &sb->pages[i];
		uint32_t pages = __atomic_load_n(&d->span_pages, __ATOMIC_RELAXED);
		if (pages == 0 || pages > n - i)
			return;
		uint8_t kind = __atomic_load_n(&d->kind, __ATOMIC_RELAXED);
		if ((kind == RH_PAGE_SMALL || kind == RH_PAGE_LARGE) && s->nspans < s->cap) {
			struct span *sp = &s->spans[s->nspans++];
			sp->start = (uintptr_t)sb + (uintptr_t)i * s->page;
			sp->end = sp->start + (uintptr_t)pages * s->page;
			sp->sb = sb;
			sp->idx = i;
		}
		i += pages;
	}
}

/* The live block of a span holding address a in the data of slot k (SMALL)
 * or of the span (LARGE); NULL when there is none. */
static struct block_header *slot_block(const struct span *sp, const struct page_desc *d, uint32_t k,
	uintptr_t *data, uint64_t *size)
{
	struct block_header *bh;
	uint32_t r;
	if (d->kind == RH_PAGE_LARGE) {
		uint32_t off = d->free_head;
		if (off < HDR || off % 16 || off >= sp->end - sp->start)
			return NULL;
		bh = (struct block_header *)(sp->start + off) - 1;
		r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE);
		if (r == RH_REF_MARKER || !(r & RH_REF_COUNT_MASK))
			return NULL;
		*data = (uintptr_t)(bh + 1);
		uint64_t want = (uint64_t)d->used << 32 | d->bumped;
		*size = want < sp->end - *data ? want : sp->end - *data;
		return bh;
	}
	if (d->kind != RH_PAGE_SMALL || d->size_class >= RH_NUM_CLASSES)
		return NULL;
	uint32_t slot = class_size[d->size_class];
	uintptr_t slotp = sp->start + (uintptr_t)k * slot;
	if (k >= __atomic_load_n(&d->bumped, __ATOMIC_ACQUIRE) || slotp + slot > sp->end)
		return NULL;
	bh = (struct block_header *)slotp;
	r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE);
	if (r == RH_REF_MARKER) {
		uint32_t rel = bh->site;
		if (rel < HDR || rel % 16 || rel > slot - 32)
			return NULL;
		bh = (struct block_header *)(slotp + rel);
		r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE);
		if (r == RH_REF_MARKER)
			return NULL;
	}
	if (!(r & RH_REF_COUNT_MASK))
		return NULL;
	*data = (uintptr_t)(bh + 1);
	uint64_t usable = slotp + slot - *data;
	*size = bh->slack <= usable ? usable - bh->slack : 0;
	return bh;
}

/* The live block whose data [start, start + size) holds a (or that starts
 * at a, for a block of 0 bytes): interior pointers count, as in
 * LeakSanitizer. */
static struct block_header *find_block(const struct scan *s, uintptr_t a, uintptr_t *data, uint64_t *size)
{
	if (a - s->lo >= s->hi - s->lo)
		return NULL;
	size_t lo = 0, hi = s->nspans;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->spans[mid].start <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	const struct span *sp = &s->spans[lo - 1];
	if (a >= sp->end)
		return NULL;
	const struct page_desc *d = &sp->sb->pages[sp->idx];
	uint32_t k = 0;
	if (d->kind == RH_PAGE_SMALL && d->size_class < RH_NUM_CLASSES)
		k = (uint32_t)((a - sp->start) / class_size[d->size_class]);
	struct block_header *bh = slot_block(sp, d, k, data, size);
	if (!bh || a < *data || (a - *data >= *size && a != *data))
		return NULL;
	return bh;
}

/* --- Marking ------------------------------------------------------------------- */

static void mark(struct scan *s, struct block_header *bh, uintptr_t data, uint64_t size)
{
	uint32_t r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE);
	do {
		if (r == RH_REF_MARKER || !(r & RH_REF_COUNT_MASK) || (r & RH_REF_REACHABLE))
			return;
	} while (!__atomic_compare_exchange_n(&bh->refcount, &r, r | RH_REF_REACHABLE, true,
		__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	if (s->top == s->cap) {
		s->overflow = 1;  /* rescanned later (drain) */
		return;
	}
	s->stack[s->top++] = (struct work){ data, size };
}

/* Every aligned word of [from, to) that points into a live block marks it. */
static void scan_range(struct scan *s, uintptr_t from, uintptr_t to)
{
	from = (from + sizeof(uintptr_t) - 1) & ~(uintptr_t)(sizeof(uintptr_t) - 1);
	for (uintptr_t p = from; p + sizeof(uintptr_t) <= to && p >= from; p += sizeof(uintptr_t)) {
		uintptr_t v = __atomic_load_n((uintptr_t *)p, __ATOMIC_RELAXED);
		if (v - s->lo >= s->hi - s->lo)
			continue;
		uintptr_t data;
		uint64_t size;
		struct block_header *bh = find_block(s, v, &data, &size);
		if (bh)
			mark(s, bh, data, size);
	}
}

/* Calls fn for every live block of the indexed spans. */
static void each_block(struct scan *s, void (*fn)(struct scan *, struct block_header *, uintptr_t, uint64_t))
{
	for (size_t i = 0; i < s->nspans; i++) {
		const struct span *sp = &s->spans[i];
		const struct page_desc *d = &sp->sb->pages[sp->idx];
		uint32_t n = 1;
		if (d->kind == RH_PAGE_SMALL && d->size_class < RH_NUM_CLASSES)
			n = __atomic_load_n(&d->bumped, __ATOMIC_ACQUIRE);
		for (uint32_t k = 0; k < n; k++) {
			uintptr_t data;
			uint64_t size;
			struct block_header *bh = slot_block(sp, d, k, &data, &size);
			if (bh)
				fn(s, bh, data, size);
		}
	}
}

static void rescan_marked(struct scan *s, struct block_header *bh, uintptr_t data, uint64_t size)
{
	if (__atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE) & RH_REF_REACHABLE)
		scan_range(s, data, data + size);
}

/* Scans marked blocks until none is left. When the stack overflowed, every
 * marked block is scanned again until a pass marks nothing new. */
static void drain(struct scan *s)
{
	for (;;) {
		while (s->top) {
			struct work w = s->stack[--s->top];
			scan_range(s, w.data, w.data + w.size);
		}
		if (!s->overflow)
			return;
		s->overflow = 0;
		each_block(s, rescan_marked);
	}
}

/* --- Roots ---------------------------------------------------------------------- */

static int module_roots(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct scan *s = arg;
	int ldso = info->dlpi_addr && info->dlpi_addr == getauxval(AT_BASE);
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t from = info->dlpi_addr + ph->p_vaddr;
		if (ldso && (ph->p_flags & PF_X)) {
			s->ldso_lo = from;
			s->ldso_hi = from + ph->p_memsz;
		}
		if (ph->p_flags & PF_W)
			scan_range(s, from, from + ph->p_memsz);
	}
	return 0;
}

static unsigned long hex(const char **p)
{
	unsigned long v = 0;
	for (;; (*p)++) {
		char c = **p;
		if (c >= '0' && c <= '9')
			v = v << 4 | (unsigned long)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (unsigned long)(c - 'a' + 10);
		else
			return v;
	}
}

/* From /proc/self/maps, read without stdio: the current stack from sp to the
 * end of its mapping, and the C library's brk heap. */
static void maps_roots(struct scan *s, uintptr_t sp)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[8192];
	size_t have = 0;
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - have);
		if (n <= 0 && have == 0)
			break;
		if (n > 0)
			have += (size_t)n;
		char *nl = memchr(buf, '\n', have);
		if (!nl) {
			if (n > 0 && have < sizeof(buf))
				continue;
			nl = buf + have - 1;  /* an over-long line: taken as it is */
		}
		*nl = 0;
		const char *p = buf;
		uintptr_t lo = hex(&p);
		uintptr_t hi = *p == '-' ? (p++, hex(&p)) : 0;
		int writable = p[0] == ' ' && p[1] && p[2] == 'w';
		if (lo < hi && writable) {
			if (sp - lo < hi - lo)
				scan_range(s, sp, hi);
			else if (strstr(p, "[heap]"))
				scan_range(s, lo, hi);
		}
		size_t used = (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, have - used);
		have -= used;
	}
	close(fd);
}

/* Sites whose allocating frame is in the dynamic linker. */
static void ldso_sites_in(struct scan *s, struct superblock *sb)
{
	if (sb->kind != RH_SB_JOURNAL || !s->ldso_hi)
		return;
	uint64_t end = __atomic_load_n(&sb->journal_end, __ATOMIC_ACQUIRE);
	if (end > sb->size)
		return;
	for (uint64_t off = sb->header_size; off + sizeof(struct journal_record) <= end;) {
		const struct journal_record *rec = (const struct journal_record *)((char *)sb + off);
		if (rec->size < sizeof(*rec) || rec->size % 8 || rec->size > end - off)
			return;
		const struct journal_site *site = (const struct journal_site *)rec;
		if (rec->tag == RH_REC_SITE && rec->size >= sizeof(*site) + sizeof(uint64_t) && site->depth > 0 &&
		    site->frames[0] - s->ldso_lo < s->ldso_hi - s->ldso_lo && s->nldso < MAX_LDSO_SITES)
			s->ldso_sites[s->nldso++] = (uint32_t)((sb->offset + off) / 8);
		off += rec->size;
	}
}

static void special_roots(struct scan *s, struct block_header *bh, uintptr_t data, uint64_t size)
{
	uint32_t r = __atomic_load_n(&bh->refcount, __ATOMIC_ACQUIRE);
	bool root = (r & RH_REF_SHARED) != 0;
	for (unsigned i = 0; i < s->nldso && !root; i++)
		root = bh->site == s->ldso_sites[i];
	if (root)
		mark(s, bh, data, size);
}

/* --- Where the program's stack starts ------------------------------------------
 * At exit the stack below the program's last live frame holds the frames of
 * the exit machinery (exit, its handlers, _dl_fini, us), and their unwritten
 * slots still hold words of the program's dead frames: stale pointers that
 * would make lost blocks look reachable (valgrind ignores them as undefined
 * memory). So the stack is scanned from the innermost frame that lies outside
 * the C library, the dynamic linker and the shim (the program's frame that
 * called exit or _exit; _start when main returned), and that frame's
 * registers, as unwinding recovers them, are roots too. */

struct text {
	uintptr_t want, lo, hi;
};

static int text_of(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct text *t = arg;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	int hit = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t from = info->dlpi_addr + ph->p_vaddr;
		hit |= t->want - from < ph->p_memsz;
		if (!(ph->p_flags & PF_X))
			continue;
		lo = from < lo ? from : lo;
		hi = from + ph->p_memsz > hi ? from + ph->p_memsz : hi;
	}
	if (!hit)
		return 0;
	t->lo = lo;
	t->hi = hi;
	return 1;
}

struct program_frame {
	uintptr_t sp;
	uintptr_t regs[32];
	unsigned nregs;
};

static __attribute__((noinline)) int find_program_frame(struct program_frame *pf)
{
	struct text mach[3] = {
		{ .want = (uintptr_t)&exit },          /* the C library */
		{ .want = (uintptr_t)&leakscan_run },  /* the shim */
		{ .want = getauxval(AT_BASE) },        /* the dynamic linker */
	};
	for (int i = 0; i < 3; i++)
		if (mach[i].want)
			dl_iterate_phdr(text_of, &mach[i]);
	unw_context_t uc;
	unw_cursor_t cur;
	if (unw_getcontext(&uc) != 0 || unw_init_local(&cur, &uc) != 0)
		return -1;
	for (int depth = 0; depth < 256; depth++) {
		unw_word_t ip = 0, sp = 0;
		if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || unw_get_reg(&cur, UNW_REG_SP, &sp) != 0)
			return -1;
		int ours = 0;
		for (int i = 0; i < 3; i++)
			ours |= ip - mach[i].lo < mach[i].hi - mach[i].lo;
		if (!ours) {
			pf->sp = (uintptr_t)sp;
			pf->nregs = 0;
			for (int r = 0; r < 32; r++) {
				unw_word_t v;
				if (r != UNW_REG_IP && unw_get_reg(&cur, r, &v) == 0)
					pf->regs[pf->nregs++] = (uintptr_t)v;
			}
			return 0;
		}
		if (unw_step(&cur) <= 0)
			return -1;
	}
	return -1;
}

static __attribute__((noinline)) void scan_heap(struct heap *h, uintptr_t sp)
{
	struct scan s;
	memset(&s, 0, sizeof(s));
	s.h = h;
	s.page = (size_t)1 << h->page_shift;
	uint64_t end = __atomic_load_n(&h->hdr->superblocks_end, __ATOMIC_ACQUIRE);
	if (end > h->mapped_end)
		end = h->mapped_end;
	each_superblock(&s, end, count_pages);
	if (!s.cap)
		return;
	/* Each block is pushed at most once (it is marked first); a block
	 * takes at least 32 bytes. */
	size_t span_bytes = s.cap * sizeof(struct span);
	size_t stack_cap = s.cap * (s.page / 32);
	if (stack_cap > ((size_t)1 << 26))
		stack_cap = (size_t)1 << 26;
	s.map_bytes = span_bytes + stack_cap * sizeof(struct work);
	char *mem = map_work(s.map_bytes);
	if (!mem) {
		rh_warn("leak scan: no memory for its work arrays; nothing marked");
		return;
	}
	s.spans = (struct span *)mem;
	s.stack = (struct work *)(mem + span_bytes);
	each_superblock(&s, end, index_spans);
	s.cap = stack_cap;
	s.lo = (uintptr_t)h->base + h->hdr->header_size;
	s.hi = (uintptr_t)h->base + end;

	struct program_frame pf;
	if (find_program_frame(&pf) == 0) {
		sp = pf.sp;
		scan_range(&s, (uintptr_t)pf.regs, (uintptr_t)(pf.regs + pf.nregs));
	}
	dl_iterate_phdr(module_roots, &s);
	maps_roots(&s, sp);
	each_superblock(&s, end, ldso_sites_in);
	each_block(&s, special_roots);
	drain(&s);
	__atomic_fetch_or(&h->hdr->flags, RH_HEAP_F_SCANNED, __ATOMIC_RELEASE);
	munmap(mem, s.map_bytes);
}

static __attribute__((noinline)) uintptr_t stack_pointer(void)
{
	return (uintptr_t)__builtin_frame_address(0);
}

void leakscan_run(void)
{
	static int done;
	struct heap *h = rh_heap;
	if (!rh_options.leak_scan || !h || h->pid != getpid() || h->unlinked)
		return;
	if (__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
		return;
	/* Without an unwind: the callee-saved registers into this frame, which
	 * lies above the stack pointer taken next, to be scanned with it. */
	__builtin_unwind_init();
	jmp_buf regs;
	setjmp(regs);
	scan_heap(h, stack_pointer());
	__asm__ volatile("" : : "r"(&regs) : "memory");
}

/* --- When --------------------------------------------------------------------
 * At a normal exit the scan must come after everything that may still free
 * memory or drop pointers: atexit handlers and every module's destructors.
 * This destructor runs inside _dl_fini, which __libc_start_main registered
 * with atexit before main's own handlers, so it runs after them; and a
 * handler registered while the exit handlers run is run too (glibc's
 * __run_exit_handlers starts its list over), after _dl_fini has finished
 * every other destructor. Only handlers that libraries registered in their
 * constructors, before _dl_fini was, come after the scan. _exit and _Exit
 * call leakscan_run directly (preload.c). */
static void leakscan_last(void)
{
	leakscan_run();
}

__attribute__((destructor)) static void leakscan_fini(void)
{
	if (!rh_options.leak_scan || !rh_heap)
		return;
	if (atexit(leakscan_last) != 0)
		leakscan_run();
}
