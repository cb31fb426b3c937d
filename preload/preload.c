/* SPDX-License-Identifier: MIT */
/*
 * LD_PRELOAD shim: the malloc family of any program served from the heap
 * core, each block recording the call stack that made it. Every hook has one
 * shape: re-entered (libunwind, the loader) or not ready, it takes the C
 * library's path; otherwise it sets the thread's guard, works, clears it.
 */
#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <link.h>
#include <locale.h>
#include <stdio.h>
#include <libunwind.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "heap.h"
#include "alloc.h"
#include "leakscan.h"
#include "unwind.h"

#define EXPORT __attribute__((visibility("default")))

/* The C library's allocator, for private memory. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern char **environ;

enum { UNREADY, ENABLED, DISABLED };
static int state = UNREADY;
static size_t min_size;
static unsigned depth;
/* malloc's path without a call serves n when n - fast_lo < fast_len: with
 * provenance off, from RH_SHMALLOC_MIN_SIZE to the largest small request;
 * shut (0) until the options are read. */
static size_t fast_lo, fast_len;
/* RH_SHMALLOC_UNWIND_CHECK=1 (for tests): every stack walked by
 * unwind_fast is walked by libunwind too, and a difference is reported. */
static bool unwind_check;
static size_t (*libc_usable)(void *);
static __thread int capturing __attribute__((tls_model("initial-exec")));

/* Our own code's address range: frames inside it are not call sites. */
static uintptr_t self_lo, self_hi;

static int find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	uintptr_t me = (uintptr_t)arg;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && me - lo < ph->p_memsz) {
			self_lo = lo;
			self_hi = lo + ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

static uint32_t capture(void);

/* Reads the options once environ exists; until then everything goes to the
 * C library (the loader allocates before libc has set environ). */
static void init(void)
{
	if (!environ)
		return;
	rh_tc.busy = 1;
	const struct options *o = options_get();
	min_size = o->min_size;
	if (o->private_size)
		alloc_private_min = o->private_size;
	alloc_private_adapts = o->private_size && !o->private_size_set;
	depth = o->trace_depth;
	const char *check = getenv("RH_SHMALLOC_UNWIND_CHECK");
	unwind_check = check && check[0] == '1';
	libc_usable = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
	dl_iterate_phdr(find_self, (void *)(uintptr_t)find_self);
	/* Per-thread caches spare libunwind its lock, and with it two
	 * sigprocmask calls per frame looked up. libunwind starts up here,
	 * its pipe made as in a capture (see pipe2). */
	if (depth) {
		capturing = 1;
		unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
		unw_set_cache_size(unw_local_addr_space, 1u << 14, 0);
		capturing = 0;
	}
	if (o->enabled && !depth && min_size <= SMALL_MAX_REQUEST) {
		fast_lo = min_size;
		fast_len = SMALL_MAX_REQUEST + 1 - min_size;
	}
	__atomic_store_n(&state, o->enabled ? ENABLED : DISABLED, __ATOMIC_RELEASE);
	rh_tc.busy = 0;
}

/* A fork while another thread was in an unload: the child drops what was
 * cached of the code, as the unload's own flush will not; libunwind's
 * cache at its next walk (its flush may free memory, which is not for a
 * fork handler that may run before the heap's own). */
static bool libunwind_stale;

static void fork_child(void)
{
	if (unwind_fork_child())
		__atomic_store_n(&libunwind_stale, true, __ATOMIC_RELAXED);
}

/* libunwind's walk, step by step: unw_backtrace's cache of frames is never
 * flushed, and keeps rules of code that dlclose unloaded. */
static inline __attribute__((always_inline)) int unwind_steps(void **buf, int max)
{
	unw_context_t uc;
	unw_cursor_t cur;
	if (unw_getcontext(&uc) != 0 || unw_init_local(&cur, &uc) != 0)
		return 0;
	int n = 0;
	do {
		unw_word_t ip;
		if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || !ip)
			break;
		buf[n++] = (void *)(uintptr_t)ip;
	} while (n < max && unw_step(&cur) > 0);
	return n;
}

/* Our own frames at most on top of a stack (a hook, or the API's). */
#define OWN_FRAMES_MAX 8

/* libunwind's walk, where unwind_fast gave up (n < 0) or is checked: the
 * program's frames, without ours (on top, and a hook's below the C library's
 * frames it called), at most max. */
static __attribute__((noinline)) int unwind_slow(void **buf, int n, int max)
{
	void *ref[RH_MAX_TRACE_DEPTH + OWN_FRAMES_MAX];
	if (__builtin_expect(__atomic_load_n(&libunwind_stale, __ATOMIC_RELAXED), 0) &&
	    __atomic_exchange_n(&libunwind_stale, false, __ATOMIC_RELAXED))
		unw_flush_cache(unw_local_addr_space, 0, 0);
	int m = unwind_flushed() ? unwind_steps(ref, max + OWN_FRAMES_MAX) : unw_backtrace(ref, max + OWN_FRAMES_MAX);
	int kept = 0;
	for (int i = 0; i < m && kept < max; i++)
		if ((uintptr_t)ref[i] - self_lo >= self_hi - self_lo)
			ref[kept++] = ref[i];
	m = kept;
	if (n < 0) {
		memcpy(buf, ref, (size_t)m * sizeof(*buf));
		return m;
	}
	bool same = m == n;
	for (int i = 0; same && i < n; i++)
		same = buf[i] == ref[i];
	if (!same) {
		char line[64 * 20 + 64];
		int len = snprintf(line, 64, "redhawk-shm: unwind mismatch:");
		for (int i = 0; i < n && len < (int)sizeof(line) - 40; i++)
			len += snprintf(line + len, 40, " %p", buf[i]);
		len += snprintf(line + len, 8, " /");
		for (int i = 0; i < m && len < (int)sizeof(line) - 40; i++)
			len += snprintf(line + len, 40, " %p", ref[i]);
		line[len++] = '\n';
		if (write(2, line, (size_t)len) < 0)
			return n;
	}
	return n;
}

/* The call site of the current allocation: its stack, innermost caller
 * first, without our own frames. Inlined into each hook. */
static inline __attribute__((always_inline)) uint32_t site_here(void)
{
	if (!depth)
		return 0;
	void *buf[RH_MAX_TRACE_DEPTH];
	capturing = 1;
	int n = unwind_fast(buf, (int)depth, self_lo, self_hi);
	if (unlikely(n < 0 || unwind_check))
		n = unwind_slow(buf, n, (int)depth);
	capturing = 0;
	return n > 0 ? journal_site((const uint64_t *)buf, (unsigned)n) : 0;
}

static __attribute__((noinline)) uint32_t capture(void)
{
	if (state == UNREADY && !rh_tc.busy)
		init();
	return site_here();
}

/* At load: blocks made through the API before any malloc get whole stacks
 * too, and the heap our PID's previous image set aside before exec goes,
 * even if this image never allocates. */
static void hooks_resolve(void);

/* This shim's file, for exec to tell whether the next image loads it. */
static dev_t shim_dev;
static ino_t shim_ino;
static char shim_base[128];
static uintptr_t self_base;  /* its ELF header, as loaded */

static void shim_file(void)
{
	Dl_info info;
	struct stat st;
	if (dladdr((void *)shim_file, &info) && info.dli_fname && stat(info.dli_fname, &st) == 0) {
		self_base = (uintptr_t)info.dli_fbase;
		shim_dev = st.st_dev;
		shim_ino = st.st_ino;
		const char *b = strrchr(info.dli_fname, '/');
		snprintf(shim_base, sizeof(shim_base), "%s", b ? b + 1 : info.dli_fname);
	}
}

__attribute__((constructor)) static void preload_init(void)
{
	shim_file();
	hooks_resolve();
	journal_capture = capture;
	pthread_atfork(NULL, NULL, fork_child);
	if (environ)
		heap_exec_leftover();
}

/* Ready for a shared allocation of n bytes on this thread? */
static void *next_sym(const char *name);

static __thread int saved_errno __attribute__((tls_model("initial-exec")));

static inline bool take(size_t n)
{
	if (unlikely(state != ENABLED)) {
		int e = errno; /* reading the options may change it */
		if (state == UNREADY && !rh_tc.busy)
			init();
		errno = e;
		if (state != ENABLED)
			return false;
	}
	if (rh_tc.busy || n < min_size)
		return false;
	rh_tc.busy = 1;
	saved_errno = errno;
	return true;
}

/* An allocation made leaves errno as it was, whatever failed on the way
 * (making the heap, a full folder, libunwind's probes). */
static inline void *done(void *p)
{
	if (p)
		errno = saved_errno;
	rh_tc.busy = 0;
	return p;
}

static void *fallback(size_t align, size_t n)
{
	stat_add(private_fallbacks, 1);
	return align <= 16 ? __libc_malloc(n) : __libc_memalign(align, n);
}

/* A full filesystem: a large request the heap could not serve is not tried
 * again at a system call each time. For a while after a failure, large
 * requests at least as big as the smallest that failed go straight to
 * private memory. The while is a tenth of a second, doubled by each failure
 * that follows the last within twice its while, up to 1.6 s; a quiet spell
 * starts it over. */
#define FULL_BACKOFF_NS 100000000ull
#define FULL_BACKOFF_MAX 4                /* doublings: 0.1 s << 4 = 1.6 s */
static _Atomic uint64_t full_since;  /* coarse clock of the last failure, 0: backoff over */
static _Atomic uint64_t full_last;   /* the same, kept after the backoff ends */
static _Atomic unsigned full_level;  /* doublings of the current backoff */
static _Atomic size_t full_size;     /* the smallest large request that failed since */

static inline bool heap_full_for(size_t n)
{
	uint64_t t = atomic_load_explicit(&full_since, memory_order_relaxed);
	if (likely(!t) || n <= SMALL_MAX_REQUEST || n < atomic_load_explicit(&full_size, memory_order_relaxed))
		return false;
	unsigned level = atomic_load_explicit(&full_level, memory_order_relaxed);
	/* Signed: t is the clock's reading with its low bit set, so a reading
	 * in the same tick is one nanosecond before it. */
	if ((int64_t)(os_now_ns(CLOCK_MONOTONIC_COARSE) - t) < (int64_t)(FULL_BACKOFF_NS << level))
		return true;
	atomic_store_explicit(&full_since, 0, memory_order_relaxed);
	return false;
}

/* The heap could not serve n bytes: the backoff above. Threads race here
 * only over how long the next backoff lasts. */
static void heap_failed(size_t n)
{
	if (n <= SMALL_MAX_REQUEST)
		return;
	uint64_t now = os_now_ns(CLOCK_MONOTONIC_COARSE) | 1;
	uint64_t last = atomic_load_explicit(&full_last, memory_order_relaxed);
	unsigned level = atomic_load_explicit(&full_level, memory_order_relaxed);
	if (last && (int64_t)(now - last) < (int64_t)((2 * FULL_BACKOFF_NS) << level)) {
		if (!atomic_load_explicit(&full_since, memory_order_relaxed) && level < FULL_BACKOFF_MAX)
			atomic_store_explicit(&full_level, level + 1, memory_order_relaxed);
	} else if (level) {
		atomic_store_explicit(&full_level, 0, memory_order_relaxed);
	}
	size_t was = atomic_load_explicit(&full_size, memory_order_relaxed);
	if (!atomic_load_explicit(&full_since, memory_order_relaxed) || n < was)
		atomic_store_explicit(&full_size, n, memory_order_relaxed);
	atomic_store_explicit(&full_last, now, memory_order_relaxed);
	atomic_store_explicit(&full_since, now, memory_order_relaxed);
}

static void *failed(size_t align, size_t n)
{
	/* Not for a request the heap refuses whatever the filesystem holds
	 * (an alignment over 1 GiB, 16 TiB or more). */
	if (align <= ((size_t)1 << 30) && n < ((size_t)1 << 44))
		heap_failed(n);
	return fallback(align, n);
}

/* malloc's body, inlined where it is used. */
static inline __attribute__((always_inline)) void *shared_malloc(size_t n)
{
	if (!take(n))
		return __libc_malloc(n);
	if (unlikely(!rh_heap) && !heap_get_slow())
		return done(fallback(16, n));
	if (heap_full_for(n))
		return done(fallback(16, n));
	void *p = alloc_block(n, 16, site_here());
	return done(p ? p : failed(16, n));
}

static __attribute__((noinline)) void *malloc_slow(size_t n)
{
	return shared_malloc(n);
}

EXPORT void *malloc(size_t n)
{
	/* The common case with provenance off: a block from the thread's
	 * cache, which holds blocks only once bound to the heap. */
	if (likely(n - fast_lo < fast_len && !rh_tc.busy)) {
		void *p = small_cached(n, 0);
		if (likely(p))
			return p;
	}
	return malloc_slow(n);
}

static __attribute__((noinline)) void free_other(void *p);

EXPORT void free(void *p)
{
	if (likely(heap_is_own(p))) {
		free_block(p);
		return;
	}
	free_other(p);
}

static void free_other(void *p)
{
	if (!p)
		return;
	switch (heap_owner(p)) {
	case OWNER_SELF:
		free_block(p);
		break;
	case OWNER_FOREIGN:
		free_foreign(heap_of(p), p);
		break;
	case OWNER_INHERITED:
		break; /* a private copy made at fork; it lives until exit or exec */
	case OWNER_NONE:
		__libc_free(p);
		break;
	}
}

EXPORT void *calloc(size_t count, size_t size)
{
	size_t n;
	if (__builtin_mul_overflow(count, size, &n)) {
		errno = ENOMEM;
		return NULL;
	}
	/* As malloc's fast path, cleared. */
	if (likely(n - fast_lo < fast_len && !rh_tc.busy)) {
		void *p = small_cached(n, 0);
		if (likely(p))
			return memset(p, 0, n);
	}
	if (!take(n))
		return __libc_calloc(count, size);
	void *p = NULL;
	if ((likely(rh_heap) || heap_get_slow()) && !heap_full_for(n)) {
		if ((p = alloc_block(n, 16, site_here()))) {
			block_clear(p, n);
			return done(p);
		}
		heap_failed(n);
	}
	stat_add(private_fallbacks, 1);
	return done(__libc_calloc(count, size));
}

static size_t usable(void *p)
{
	if (heap_owner(p) != OWNER_NONE)
		return block_usable(p);
	return libc_usable ? libc_usable(p) : 0;
}

EXPORT void *realloc(void *p, size_t n)
{
	if (!p)
		return shared_malloc(n);
	if (n == 0) {
		free(p);
		return NULL;
	}
	bool own = heap_is_own(p);
	/* The common case with provenance off: in place, without a call. */
	if (likely(own && state == ENABLED && !depth && !rh_tc.busy && n >= min_size)) {
		void *q = realloc_unsited(p, n);
		if (likely(q))
			return q;
	}
	enum owner o = own ? OWNER_SELF : heap_owner(p);
	if (o == OWNER_NONE && state != ENABLED)
		return __libc_realloc(p, n);
	/* During the full-filesystem backoff the block moves to private memory
	 * below, without trying the filesystem again. */
	if (o == OWNER_SELF && !heap_full_for(n) && take(n)) {
		void *q = realloc_block(p, n, site_here());
		if (q)
			return done(q);
		rh_tc.busy = 0;
		heap_failed(n);
	}
	if (o == OWNER_NONE && (rh_tc.busy || n < min_size || heap_full_for(n)))
		return __libc_realloc(p, n);
	/* Move: between the C library and us, out of an inherited or attached
	 * block, or when the heap is full. */
	void *q = shared_malloc(n);
	if (!q)
		return NULL;
	size_t old = usable(p);
	/* An inherited block whose header changed in the parent during the
	 * copy: its bytes are still the child's, up to the copy's end. */
	if (!old && o == OWNER_INHERITED)
		old = heap_inherited_left(p);
	memcpy(q, p, old < n ? old : n);
	free(p);
	return q;
}

EXPORT void *reallocarray(void *p, size_t count, size_t size)
{
	size_t n;
	if (__builtin_mul_overflow(count, size, &n)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, n);
}

static void *aligned(size_t align, size_t n)
{
	if (align < 16)
		align = 16;
	if (!take(n))
		return __libc_memalign(align, n);
	if (unlikely(!rh_heap) && !heap_get_slow())
		return done(fallback(align, n));
	if (heap_full_for(n))
		return done(fallback(align, n));
	void *p = alloc_block(n, align, site_here());
	return done(p ? p : failed(align, n));
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	if (align < sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	void *p = aligned(align, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	/* An alignment that is not a power of two: glibc before 2.38 rounds it
	 * up, later ones refuse it. Its own answer, whichever it gives. */
	if (align == 0 || (align & (align - 1))) {
		static void *(*real)(size_t, size_t);
		if (!real)
			real = (void *(*)(size_t, size_t))next_sym("aligned_alloc");
		if (real)
			return real(align, n);
		errno = EINVAL;
		return NULL;
	}
	return aligned(align, n);
}

EXPORT void *memalign(size_t align, size_t n)
{
	/* As glibc: an alignment that is not a power of two is rounded up;
	 * one past the largest power of two is invalid. */
	if (align > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	size_t a = 1;
	while (a < align)
		a <<= 1;
	return aligned(a, n);
}

EXPORT void *valloc(size_t n)
{
	return aligned(os_page_size(), n);
}

EXPORT void *pvalloc(size_t n)
{
	size_t page = os_page_size();
	if (n > SIZE_MAX - page) {
		errno = ENOMEM;
		return NULL;
	}
	size_t r = (n + page - 1) & ~(page - 1);
	return aligned(page, r ? r : page);
}

EXPORT size_t malloc_usable_size(void *p)
{
	return p ? usable(p) : 0;
}

/* malloc_trim: our free pages go back to the file too. */
EXPORT int malloc_trim(size_t pad)
{
	static int (*real)(size_t);
	if (state == ENABLED && !rh_tc.busy)
		alloc_trim();
	if (!real)
		real = (int (*)(size_t))next_sym("malloc_trim");
	return real ? real(pad) : 0;
}

/* --- Unloading ------------------------------------------------------------------ */

/* Other code may be loaded where dlclose unloaded some: the unwind rules
 * cached for those addresses go, ours and libunwind's, and the journal
 * retires the ranges of the modules no longer loaded (journal.c). The
 * loader counts the objects it ever unloaded; a dlclose that unloaded
 * nothing (another handle still holds the object) keeps them. The count
 * also takes in what the C library unloaded on its own since the last
 * check: iconv's modules, which iconv_open, iconv_close and the calls that
 * change or free a locale may unload (a module goes after a few releases),
 * so these check it too. While a dlclose is under way, another thread may
 * load code in the freed range and allocate from it before the rules go:
 * walks then find their rules anew, and call sites check their modules
 * (unwind_unload_begin, journal_unload_begin). The other calls are not
 * such windows (walks would lose their cache while any thread converts
 * text); a walk never reads past its stack whatever a rule says. */
static unsigned long long unloads_seen;

static int read_unloads(struct dl_phdr_info *info, size_t size, void *arg)
{
	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs))
		*(unsigned long long *)arg = info->dlpi_subs;
	return 1;
}

static unsigned long long unloads_now(void)
{
	unsigned long long unloads = 0;
	dl_iterate_phdr(read_unloads, &unloads);
	return unloads;
}

/* Code was unloaded: what was cached of it goes. busy: a signal handler's
 * allocation in the meantime goes to the C library, and takes none of the
 * locks held here. */
static void unloads_forget(void)
{
	rh_tc.busy++;
	unw_flush_cache(unw_local_addr_space, 0, 0);
	journal_modules_unloaded();
	unwind_flush();
	rh_tc.busy--;
}

/* After a call that may have unloaded code: whether anything was unloaded
 * since the last check. Only with provenance on: nothing is cached without
 * it. */
static void unloads_check(void)
{
	if (state != ENABLED || !depth)
		return;
	int e = errno;
	unsigned long long unloads = unloads_now();
	if (__atomic_load_n(&unloads_seen, __ATOMIC_RELAXED) != unloads) {
		/* As an unload: a fork before the flush is done flushes in the
		 * child, which never sees this one. */
		unwind_unload_begin();
		if (__atomic_exchange_n(&unloads_seen, unloads, __ATOMIC_RELAXED) != unloads)
			unloads_forget();
		unwind_unload_end();
	}
	errno = e;
}

/* The C library's functions the hooks below call, found when the shim is
 * loaded: looking one up at its first call (dlsym takes the loader's lock)
 * deadlocked a program that first called it inside a dl_iterate_phdr
 * callback while another thread was in dlopen. */
static struct {
	int (*dlclose)(void *);
	iconv_t (*iconv_open)(const char *, const char *);
	int (*iconv_close)(iconv_t);
	char *(*setlocale)(int, const char *);
	locale_t (*newlocale)(int, const char *, locale_t);
	locale_t (*newlocale_)(int, const char *, locale_t);
	void (*freelocale)(locale_t);
	void (*freelocale_)(locale_t);
} hooked;

static void hooks_resolve(void)
{
	hooked.dlclose = (int (*)(void *))next_sym("dlclose");
	hooked.iconv_open = (iconv_t(*)(const char *, const char *))next_sym("iconv_open");
	hooked.iconv_close = (int (*)(iconv_t))next_sym("iconv_close");
	hooked.setlocale = (char *(*)(int, const char *))next_sym("setlocale");
	hooked.newlocale = (locale_t(*)(int, const char *, locale_t))next_sym("newlocale");
	hooked.newlocale_ = (locale_t(*)(int, const char *, locale_t))next_sym("__newlocale");
	hooked.freelocale = (void (*)(locale_t))next_sym("freelocale");
	hooked.freelocale_ = (void (*)(locale_t))next_sym("__freelocale");
}

/* A hook called before the shim's constructor ran (from another's). */
#define REAL(field, name)                                                      \
	do {                                                                   \
		if (!hooked.field)                                               \
			hooked.field = (__typeof__(hooked.field))next_sym(name);   \
	} while (0)

/* The unload count is compared before and after: another thread's check
 * in between may have taken the change already. */
EXPORT int dlclose(void *handle)
{
	REAL(dlclose, "dlclose");
	if (!hooked.dlclose) {
		errno = ENOSYS;
		return -1;
	}
	bool check = state == ENABLED && depth;
	unsigned long long before = check ? unloads_now() : 0;
	unwind_unload_begin();
	journal_unload_begin();
	int r = hooked.dlclose(handle);
	if (check) {
		int e = errno;
		unsigned long long after = unloads_now();
		__atomic_store_n(&unloads_seen, after, __ATOMIC_RELAXED);
		if (after != before)
			unloads_forget();
		errno = e;
	}
	unwind_unload_end();
	journal_unload_end();
	return r;
}

EXPORT iconv_t iconv_open(const char *to, const char *from)
{
	REAL(iconv_open, "iconv_open");
	if (!hooked.iconv_open) {
		errno = ENOSYS;
		return (iconv_t)-1;
	}
	iconv_t cd = hooked.iconv_open(to, from);
	unloads_check();
	return cd;
}

EXPORT int iconv_close(iconv_t cd)
{
	REAL(iconv_close, "iconv_close");
	if (!hooked.iconv_close) {
		errno = ENOSYS;
		return -1;
	}
	int r = hooked.iconv_close(cd);
	unloads_check();
	return r;
}

/* A query (locale NULL) changes nothing. */
EXPORT char *setlocale(int category, const char *locale)
{
	REAL(setlocale, "setlocale");
	if (!hooked.setlocale)
		return NULL;
	char *r = hooked.setlocale(category, locale);
	if (locale)
		unloads_check();
	return r;
}

/* newlocale and freelocale, and the names libstdc++ calls them by. */
static locale_t newlocale_checked(locale_t (*fn)(int, const char *, locale_t), int mask, const char *locale,
	locale_t base)
{
	if (!fn) {
		errno = ENOSYS;
		return (locale_t)0;
	}
	locale_t r = fn(mask, locale, base);
	unloads_check();
	return r;
}

EXPORT locale_t newlocale(int mask, const char *locale, locale_t base)
{
	REAL(newlocale, "newlocale");
	return newlocale_checked(hooked.newlocale, mask, locale, base);
}

EXPORT locale_t __newlocale(int mask, const char *locale, locale_t base)
{
	REAL(newlocale_, "__newlocale");
	return newlocale_checked(hooked.newlocale_, mask, locale, base);
}

static void freelocale_checked(void (*fn)(locale_t), locale_t loc)
{
	if (fn) {
		fn(loc);
		unloads_check();
	}
}

EXPORT void freelocale(locale_t loc)
{
	REAL(freelocale, "freelocale");
	freelocale_checked(hooked.freelocale, loc);
}

EXPORT void __freelocale(locale_t loc)
{
	REAL(freelocale_, "__freelocale");
	freelocale_checked(hooked.freelocale_, loc);
}

/* --- Signal masks ---------------------------------------------------------------- */

/* libunwind blocks all signals around its caches with sigprocmask, two
 * system calls per frame it has not seen; inside our own stack capture no
 * signal handler can re-enter it through us (the hooks take the C library's
 * path while busy), so there the masks are left as they are. Every other
 * call goes to the C library. */
typedef int (*sigmask_fn)(int, const sigset_t *, sigset_t *);

static int mask_passthrough(const char *name, sigmask_fn *real, int how, const sigset_t *set, sigset_t *old)
{
	if (capturing)
		return 0; /* libunwind saves the mask here and restores it here */
	if (!*real)
		*real = (sigmask_fn)next_sym(name);
	return *real ? (*real)(how, set, old) : (errno = ENOSYS, -1);
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	static sigmask_fn real;
	int r = mask_passthrough("pthread_sigmask", &real, how, set, old);
	return r < 0 ? errno : r;
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	static sigmask_fn real;
	return mask_passthrough("sigprocmask", &real, how, set, old);
}

/* --- libunwind's pipe ------------------------------------------------------------ */

/* To check addresses while it unwinds a frame without unwind information,
 * libunwind writes to a pipe it keeps open, made (and made again when the
 * program closed it) inside our stack capture. Its descriptors are moved out
 * of the way of the numbers programs choose, as the heap's are: a program
 * that put a file of its own under the number would have bytes of the stack
 * written into it. Every other pipe is the program's, made as it asked. */
EXPORT int pipe2(int fds[2], int flags)
{
	int r = (int)syscall(SYS_pipe2, fds, flags);
	if (r == 0 && capturing) {
		fds[0] = os_fd_high(fds[0]);
		fds[1] = os_fd_high(fds[1]);
	}
	return r;
}

EXPORT int pipe(int fds[2])
{
	return pipe2(fds, 0);
}

/* --- Limits ------------------------------------------------------------------------ */

/* mlockall(MCL_CURRENT) counts every mapping against RLIMIT_MEMLOCK, and a
 * lowered RLIMIT_AS counts them against the new limit: the address space
 * the heaps reserve but do not use yet is given back first. */
EXPORT int mlockall(int flags)
{
	static int (*real)(int);
	if (flags & MCL_CURRENT)
		heap_trim_reservations();
	if (!real)
		real = (int (*)(int))next_sym("mlockall");
	return real ? real(flags) : (errno = ENOSYS, -1);
}

/* After a successful change: rl points at rlim_cur (64 bits in struct rlimit
 * and struct rlimit64 alike on 64-bit targets, the only ones built). */
static __attribute__((noinline)) int limit_changed(int ret, pid_t pid, int resource, const void *rl)
{
	uint64_t cur;
	if (ret != 0 || !rl || resource != RLIMIT_AS || (pid != 0 && pid != getpid()))
		return ret;
	memcpy(&cur, rl, sizeof(cur));
	if (cur != (uint64_t)RLIM64_INFINITY)
		heap_trim_reservations();
	return ret;
}

EXPORT int setrlimit(__rlimit_resource_t resource, const struct rlimit *rl)
{
	static int (*real)(__rlimit_resource_t, const struct rlimit *);
	if (!real)
		real = (int (*)(__rlimit_resource_t, const struct rlimit *))next_sym("setrlimit");
	return limit_changed(real ? real(resource, rl) : (errno = ENOSYS, -1), 0, (int)resource, rl);
}

EXPORT int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rl)
{
	static int (*real)(__rlimit_resource_t, const struct rlimit64 *);
	if (!real)
		real = (int (*)(__rlimit_resource_t, const struct rlimit64 *))next_sym("setrlimit64");
	return limit_changed(real ? real(resource, rl) : (errno = ENOSYS, -1), 0, (int)resource, rl);
}

EXPORT int prlimit(pid_t pid, enum __rlimit_resource resource, const struct rlimit *rl, struct rlimit *old)
{
	static int (*real)(pid_t, enum __rlimit_resource, const struct rlimit *, struct rlimit *);
	if (!real)
		real = (int (*)(pid_t, enum __rlimit_resource, const struct rlimit *, struct rlimit *))next_sym("prlimit");
	return limit_changed(real ? real(pid, resource, rl, old) : (errno = ENOSYS, -1), pid, (int)resource, rl);
}

EXPORT int prlimit64(pid_t pid, enum __rlimit_resource resource, const struct rlimit64 *rl, struct rlimit64 *old)
{
	static int (*real)(pid_t, enum __rlimit_resource, const struct rlimit64 *, struct rlimit64 *);
	if (!real)
		real = (int (*)(pid_t, enum __rlimit_resource, const struct rlimit64 *, struct rlimit64 *))next_sym("prlimit64");
	return limit_changed(real ? real(pid, resource, rl, old) : (errno = ENOSYS, -1), pid, (int)resource, rl);
}

/* --- clone -------------------------------------------------------------------- */

/* The C library's clone runs no fork handlers, but a child made without
 * CLONE_VM has a copy of its parent's memory, the heap's shared mapping
 * included: without the handlers' private copy it would write into its
 * parent's heap. Here the child gets what a forked child gets. (A child of
 * a raw clone or fork system call still does not: see README.) */
struct clone_start {
	int (*fn)(void *);
	void *arg;
};

static int clone_child(void *p)
{
	/* The parent's stack, copied into the child: still there. */
	struct clone_start *cs = p;
	heap_fork_child();
	fork_child();
	leakscan_fork_child();
	int status = cs->fn(cs->arg);
	/* The C library ends the child with the exit system call, as _exit
	 * does, when fn returns. */
	leakscan_run();
	heap_unlink_at_exit();
	return status;
}

EXPORT int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	static int (*real)(int (*)(void *), void *, int, void *, ...);
	if (!real)
		real = (int (*)(int (*)(void *), void *, int, void *, ...))next_sym("clone");
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	/* The optional arguments, passed on as they came (the C library reads
	 * them from their registers whether given or not). */
	va_list ap;
	va_start(ap, arg);
	pid_t *parent_tid = va_arg(ap, pid_t *);
	void *tls = va_arg(ap, void *);
	pid_t *child_tid = va_arg(ap, pid_t *);
	va_end(ap);
	/* With CLONE_FILES the fork handling would close and reuse descriptors
	 * of the parent's (the pipe it waits on, the heap's): such a child is
	 * left as a raw clone's. */
	if ((flags & (CLONE_VM | CLONE_FILES)) || !fn)
		return real(fn, stack, flags, arg, parent_tid, tls, child_tid);
	/* A stack in a heap (a malloc'd one) is among the pages the child's
	 * fork handling maps anew: the child runs on a stack of its own
	 * instead, mapped here and, in the parent, unmapped once the child has
	 * its copy. */
	size_t own_size = 0;
	char *own_stack = NULL;
	if (stack && heap_owner((char *)stack - 1) != OWNER_NONE) {
		own_size = (size_t)64 << 20;
		own_stack = mmap(NULL, own_size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
		if (own_stack == MAP_FAILED)
			own_stack = NULL;
		else
			stack = own_stack + own_size;
	}
	struct clone_start cs = { fn, arg };
	heap_fork_prepare();
	int r = real(clone_child, stack, flags, &cs, parent_tid, tls, child_tid);
	heap_fork_parent(); /* tells a failed clone by errno, as after fork */
	if (own_stack) {
		int e = errno;
		munmap(own_stack, own_size);
		errno = e;
	}
	return r;
}

/* --- fork from a stack in the heap --------------------------------------------- */

/* Code running on a malloc'd stack (a thread given its stack, a coroutine)
 * runs in the heap's shared mapping. After the fork system call, child and
 * parent would both write to those pages, each the other's frames, until
 * the child's fork handler has made its copy. So such a fork runs on a stack
 * of its own, private memory copied at fork: there the parent waits in its
 * fork handler until the child has its copy (heap_fork_parent), and the
 * child returns to its frames only once they are its own. */
#if defined(__x86_64__)
/* fn() on the stack that ends at top (16-byte aligned); all the registers a
 * call may change are given up. */
static __attribute__((noinline)) pid_t call_on_stack(pid_t (*fn)(void), char *top)
{
	pid_t r;
	__asm__ volatile("mov %%rsp, %%rbx\n\t"
			 "mov %[top], %%rsp\n\t"
			 "call *%[fn]\n\t"
			 "mov %%rbx, %%rsp"
			 : "=a"(r)
			 : [top] "r"(top), [fn] "r"(fn)
			 : "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc",
			   "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
			   "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	return r;
}
#define FORK_STACK ((size_t)8 << 20)
#endif

EXPORT pid_t fork(void)
{
	static pid_t (*real)(void);
	if (!real)
		real = (pid_t(*)(void))next_sym("fork");
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
#if defined(__x86_64__)
	if (heap_owner(__builtin_frame_address(0)) != OWNER_NONE) {
		char *stack = mmap(NULL, FORK_STACK, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
		if (stack != MAP_FAILED) {
			/* A stack walk from there ends at the zeros on top. */
			memset(stack + FORK_STACK - 64, 0, 64);
			pid_t r = call_on_stack(real, stack + FORK_STACK - 64);
			int e = errno;
			munmap(stack, FORK_STACK);
			errno = e;
			return r;
		}
	}
#endif
	return real();
}

/* --- Process ends and program images ------------------------------------------ */

/* _exit and _Exit end a process without exit handlers: the heap goes now. */
EXPORT void _exit(int status)
{
	leakscan_run();
	heap_unlink_at_exit();
	syscall(SYS_exit_group, status);
	__builtin_unreachable();
}

EXPORT void _Exit(int status)
{
	_exit(status);
}

/* --- exec: will the next image remove the heap? ------------------------------- */

/* exec replaces the program image: the heap is set aside under a name the
 * next image removes (heap_exec_leftover), and put back if exec fails. An
 * image that will not load the shim, or will look for it in another folder,
 * would leave it there for good: then the heap's name goes now instead, and
 * a failed exec leaves the process a heap without a name (it works on, but
 * no tool sees it and no other process can attach its blocks). Nothing here
 * allocates: a child of vfork runs it too (and returns at once, its heap
 * being its parent's). */

/* The value of `name` in envp, or NULL. */
static const char *env_in(char *const envp[], const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; envp && envp[i]; i++)
		if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
			return envp[i] + n + 1;
	return NULL;
}

#if defined(__x86_64__)
#define RH_MULTIARCH "x86_64-linux-gnu"
#elif defined(__aarch64__)
#define RH_MULTIARCH "aarch64-linux-gnu"
#else
#define RH_MULTIARCH "."
#endif

/* Is path this shim's file? */
static bool is_shim(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && st.st_dev == shim_dev && st.st_ino == shim_ino;
}

/* Is dir/name (dir the first len bytes of dir) this shim's file? */
static bool shim_at(const char *dir, size_t len, const char *name)
{
	char path[4096];
	int n = snprintf(path, sizeof(path), "%.*s/%s", (int)len, dir, name);
	return n > 0 && (size_t)n < sizeof(path) && is_shim(path);
}

/* Does the list (LD_PRELOAD's, or /etc/ld.so.preload's: names separated by
 * spaces, colons or line ends) name this shim? A name with a slash is
 * compared by its file; one without is looked for as the loader would, in
 * the new image's LD_LIBRARY_PATH and then the system's folders (not its
 * cache: a shim found only there is taken for another). */
static bool names_shim(const char *list, const char *libpath)
{
	static const char *const system_dirs[] = { "/lib/" RH_MULTIARCH, "/usr/lib/" RH_MULTIARCH, "/lib", "/usr/lib",
		"/lib64", "/usr/lib64", "/usr/local/lib" };
	char name[4096];
	while (list && *list) {
		size_t n = strcspn(list, " :\t\n");
		if (n > 0 && n < sizeof(name)) {
			memcpy(name, list, n);
			name[n] = 0;
			if (strchr(name, '/')) {
				if (is_shim(name))
					return true;
			} else if (strcmp(name, shim_base) == 0) {
				for (const char *d = libpath; d && *d; d += strspn(d, ":;")) {
					size_t k = strcspn(d, ":;");
					if (k && shim_at(d, k, name))
						return true;
					d += k;
				}
				for (size_t i = 0; i < sizeof(system_dirs) / sizeof(system_dirs[0]); i++)
					if (shim_at(system_dirs[i], strlen(system_dirs[i]), name))
						return true;
			}
		}
		list += n;
		list += strspn(list, " :\t\n");
	}
	return false;
}

static bool preloads_shim(char *const envp[])
{
	const char *libpath = env_in(envp, "LD_LIBRARY_PATH");
	if (shim_ino && names_shim(env_in(envp, "LD_PRELOAD"), libpath))
		return true;
	char buf[4096];
	int fd = open("/etc/ld.so.preload", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return shim_ino && names_shim(buf, libpath);
}

/* Can the program in the file open at fd run with the shim: not one that
 * the loader runs in secure mode (set-user-ID or set-group-ID to another
 * user, or with file capabilities, which make it ignore LD_PRELOAD), and not
 * a static executable (no loader at all)? A script is judged by its
 * interpreter, as the kernel runs it (a few levels deep). A file that
 * cannot be read (execute-only, an O_PATH descriptor) is taken not to: the
 * heap then goes at exec, which leaves nothing whatever runs. */
static bool runs_shim(int fd, int level)
{
	struct stat st;
	struct statvfs vfs;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return false;
	bool nosuid = fstatvfs(fd, &vfs) == 0 && (vfs.f_flag & ST_NOSUID);
	if (!nosuid && (((st.st_mode & S_ISUID) && st.st_uid != getuid()) ||
			((st.st_mode & S_ISGID) && st.st_gid != getgid())))
		return false;
	if (getuid() != 0 && fgetxattr(fd, "security.capability", NULL, 0) > 0)
		return false;
	union {
		ElfW(Ehdr) eh;
		char line[256];
	} head;
	ssize_t n = pread(fd, &head, sizeof(head), 0);
	if (n < 0 && errno == EBADF) { /* O_PATH: read through /proc */
		char self[64];
		snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
		int rd = open(self, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		n = rd >= 0 ? pread(rd, &head, sizeof(head), 0) : -1;
		if (rd >= 0) {
			bool ok = n >= 0 && runs_shim(rd, level);
			close(rd);
			return ok;
		}
	}
	if (n < 2)
		return false;
	if (head.line[0] == '#' && head.line[1] == '!') {
		size_t k = (size_t)n < sizeof(head.line) ? (size_t)n : sizeof(head.line) - 1;
		head.line[k] = 0;
		char *interp = head.line + 2 + strspn(head.line + 2, " \t");
		interp[strcspn(interp, " \t\n")] = 0;
		int in = level < 4 && *interp ? open(interp, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) : -1;
		bool ok = in >= 0 && runs_shim(in, level + 1);
		if (in >= 0)
			close(in);
		return ok;
	}
	const ElfW(Ehdr) *eh = &head.eh;
	if (n < (ssize_t)sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return false;
	/* A program of another class or machine cannot load this shim. */
	const ElfW(Ehdr) *self = (const ElfW(Ehdr) *)(uintptr_t)self_base;
	if (self && (eh->e_ident[EI_CLASS] != self->e_ident[EI_CLASS] || eh->e_machine != self->e_machine))
		return false;
	if (eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phnum == 0)
		return false;
	ElfW(Phdr) ph[16]; /* a few at a time: the stack may be a small one */
	for (unsigned i = 0; i < eh->e_phnum; i += 16) {
		unsigned k = eh->e_phnum - i < 16 ? eh->e_phnum - i : 16;
		size_t bytes = k * sizeof(ph[0]);
		if (pread(fd, ph, bytes, (off_t)(eh->e_phoff + i * sizeof(ph[0]))) != (ssize_t)bytes)
			return false;
		for (unsigned j = 0; j < k; j++)
			if (ph[j].p_type == PT_INTERP)
				return true;
	}
	return false;
}

/* Opened to be read, or, when it may not be read (execute-only), with
 * O_PATH (runs_shim then takes it not to run the shim). */
static int open_target(int dirfd, const char *file)
{
	int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0 && errno == EACCES)
		fd = openat(dirfd, file, O_PATH | O_CLOEXEC);
	return fd;
}

/* The file exec will run, opened: `file` itself when it has a slash (or
 * execvp's search is not asked for), else the first match on PATH. */
static int exec_target(int dirfd, const char *file, bool search)
{
	if (!file || !*file)
		return -1;
	if (!search || strchr(file, '/'))
		return open_target(dirfd, file);
	const char *path = getenv("PATH");
	if (!path)
		path = "/bin:/usr/bin";
	char cand[4096];
	for (const char *p = path;; p++) {
		size_t n = strcspn(p, ":");
		int len = n ? snprintf(cand, sizeof(cand), "%.*s/%s", (int)n, p, file)
			    : snprintf(cand, sizeof(cand), "%s", file);
		struct stat st;
		if (len > 0 && (size_t)len < sizeof(cand) && stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(cand, X_OK) == 0)
			return open_target(AT_FDCWD, cand);
		p += n;
		if (!*p)
			return -1;
	}
}

/* Will the next image, run from the file open at fd (-1: not known) with
 * envp, remove the heap set aside in our folder? */
static bool next_image_cleans(struct heap *h, int fd, char *const envp[])
{
	if (geteuid() != getuid() || getegid() != getgid())
		return false; /* the loader's secure mode: LD_PRELOAD ignored */
	if (!preloads_shim(envp))
		return false;
	/* A heap file of another user (made as root by a process that became
	 * another, keeping capabilities until the exec drops them): the next
	 * image could neither open nor remove it. */
	struct stat file;
	int hfd = heap_fd(h);
	if (hfd >= 0 && fstat(hfd, &file) == 0 && file.st_uid != geteuid())
		return false;
	const char *dir = env_in(envp, "RH_SHM_DIR");
	struct stat there, ours;
	int dirfd = heap_dirfd(h);
	if (dirfd < 0 || fstat(dirfd, &ours) != 0 || stat(dir && *dir ? dir : "/dev/shm", &there) != 0 ||
	    there.st_dev != ours.st_dev || there.st_ino != ours.st_ino)
		return false;
	return fd < 0 || runs_shim(fd, 0);
}

/* A heap this very process made and still names (not a vfork child's,
 * whose heap is its parent's)? */
static bool heap_named_mine(void)
{
	struct heap *h = rh_heap;
	return h && h->pid == getpid() && !h->unlinked;
}

/* exec_aside's result: bits for exec_failed. */
#define EXEC_ASIDE 1  /* the heap was set aside, to be put back */
#define EXEC_HELD 2   /* heap_exec_hold held, to be released */

/* Before exec of the file open at fd with envp: which of EXEC_ASIDE and
 * EXEC_HELD exec_failed undoes. A fork under way in another thread is
 * waited for: its child holds the heap's lock through its copy of the
 * descriptor until it has copied the heap, and the next image would take
 * the heap set aside for a live one's and leave it. No new fork starts
 * until the exec is done (in this process, not in a vfork child, which
 * shares our memory, locks included, and would leave them held). */
static int exec_aside(int fd, char *const envp[])
{
	struct heap *h = rh_heap;
	int saved = errno;
	bool hold = (h && h->pid == getpid()) || heap_making_here();
	int held = hold && heap_exec_hold() ? EXEC_HELD : 0;
	h = rh_heap; /* a heap another thread was making is made now */
	bool mine = heap_named_mine();
	/* A fork still copying after the wait (a heap of gigabytes): the heap
	 * set aside would be left, so it goes now. */
	bool cleans = mine && (!hold || held) && next_image_cleans(h, fd, envp);
	if (fd >= 0)
		close(fd);
	errno = saved;
	if (!mine)
		return held;
	if (!cleans) {
		heap_unlink_now();
		return held;
	}
	char aside[64];
	snprintf(aside, sizeof(aside), ".heap-%d.exec", (int)h->pid);
	int dirfd = heap_dirfd(h);
	if (dirfd < 0 || renameat(dirfd, h->name, dirfd, aside) != 0)
		return held;
	errno = saved;
	return held | EXEC_ASIDE;
}

static void exec_failed(int aside)
{
	struct heap *h = rh_heap;
	int e = errno;
	if ((aside & EXEC_ASIDE) && h) {
		char name[64];
		snprintf(name, sizeof(name), ".heap-%d.exec", (int)h->pid);
		int dirfd = heap_dirfd(h);
		if (dirfd >= 0)
			renameat2(dirfd, name, dirfd, h->name, RENAME_NOREPLACE);
	}
	if (aside & EXEC_HELD)
		heap_exec_release();
	errno = e;
}

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execvpe_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*execveat_fn)(int, const char *, char *const[], char *const[], int);

static void *next_sym(const char *name)
{
	rh_tc.busy++;
	void *f = dlsym(RTLD_NEXT, name);
	rh_tc.busy--;
	return f;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	static execve_fn real;
	if (!real)
		real = (execve_fn)next_sym("execve");
	int aside = exec_aside(heap_named_mine() ? exec_target(AT_FDCWD, path, false) : -1, envp);
	int r = real(path, argv, envp);
	exec_failed(aside);
	return r;
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	static execvpe_fn real;
	if (!real)
		real = (execvpe_fn)next_sym("execvpe");
	int aside = exec_aside(heap_named_mine() ? exec_target(AT_FDCWD, file, true) : -1, envp);
	int r = real(file, argv, envp);
	exec_failed(aside);
	return r;
}

EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	static fexecve_fn real;
	if (!real)
		real = (fexecve_fn)next_sym("fexecve");
	int aside = exec_aside(heap_named_mine() ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1, envp);
	int r = real(fd, argv, envp);
	exec_failed(aside);
	return r;
}

EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	static execveat_fn real;
	if (!real)
		real = (execveat_fn)next_sym("execveat");
	int fd = -1;
	if (heap_named_mine())
		fd = (flags & AT_EMPTY_PATH) && !*path ? fcntl(dirfd, F_DUPFD_CLOEXEC, 0) : exec_target(dirfd, path, false);
	int aside = exec_aside(fd, envp);
	int r = real(dirfd, path, argv, envp, flags);
	exec_failed(aside);
	return r;
}

/* The execl family: the variadic arguments gathered into an array on the
 * stack (no malloc: we may be in a child after vfork). */
#define GATHER(first, ap, argv, envp_out)                                  \
	size_t argc = 1;                                                   \
	va_start(ap, first);                                               \
	while (va_arg(ap, char *))                                         \
		argc++;                                                    \
	va_end(ap);                                                        \
	char *argv[argc + 1];                                              \
	argv[0] = (char *)first;                                           \
	va_start(ap, first);                                               \
	for (size_t i = 1; i <= argc; i++)                                 \
		argv[i] = va_arg(ap, char *);                              \
	envp_out;                                                          \
	va_end(ap)

EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	GATHER(arg, ap, argv, (void)0);
	return execve(path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	GATHER(arg, ap, argv, (void)0);
	return execvpe(file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	char **envp;
	GATHER(arg, ap, argv, envp = va_arg(ap, char **));
	return execve(path, argv, envp);
}
