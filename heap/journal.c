/* SPDX-License-Identifier: MIT */
/*
 * The provenance journal inside the heap file: loaded modules and call sites
 * as tagged records in JOURNAL superblocks. A record is written whole, then
 * published by advancing journal_end, so a process killed at any instant
 * leaves no torn record behind. Sites are found again through a private hash
 * table of record locators; no malloc anywhere.
 */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "heap.h"

#define NBUCKETS (1u << 14)
#define JOURNAL_SB_SIZE (1u << 20)

static pthread_mutex_t jlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t module_lock = PTHREAD_MUTEX_INITIALIZER;
static struct superblock *jsb;       /* journal superblock being filled */
static uint64_t jcommitted;          /* bytes of jsb that hold memory, from its start */
static uint64_t jretry;              /* the folder was full: nothing is reserved before this */
#define JOURNAL_RETRY_NS 1000000000ull
#define JOURNAL_COMMIT (64u << 10)   /* pages are reserved this many bytes at a time */
static _Atomic uint32_t *buckets;    /* site locators by hash, chains through the records: of
                                      * the sites the index could not take; made for the first */
static bool indexed;                 /* the index was made (or tried): jlock */
/* A private index of sites by 64-bit hash, so that finding a known stack
 * touches neither the chains nor the records. Open addressing, written
 * under jlock, read without: an entry's locator is stored before its hash.
 * It starts small (a short program touches few pages of it) and doubles at
 * half full, up to INDEX_MAX entries; an index left behind is emptied
 * (MADV_DONTNEED reads as zeros: a reader still in it finds nothing, and
 * looks again under jlock). Full at its largest, the chains serve the
 * sites it could not take. */
#define INDEX_MIN (1u << 9)
#define INDEX_MAX (1u << 15)
#define INDEX_PROBES 64
struct index_entry {
	uint64_t hash;
	uint32_t loc, pad;
};
struct site_index {
	unsigned mask;             /* entries - 1 */
	unsigned used;
	bool full;                 /* at its largest, a site was left out */
	struct index_entry e[];
};
static struct site_index *sindex;
/* The modules recorded, with room for MODULES_FIRST at first; more take a
 * mapping twice as big each time, up to MODULES_MAX (past that, modules are
 * not recorded). A table outgrown stays mapped: a reader without
 * module_lock (before glibc 2.35) may still be in it. */
#define MODULES_FIRST 1024
#define MODULES_MAX (1u << 20)
struct module_range {
	uint64_t start, end;
	uint64_t name;             /* hash of the loader's name for it: who is there */
};
static struct module_range modules_first[MODULES_FIRST];
static struct module_range *_Atomic modules = modules_first;
static unsigned modules_cap = MODULES_FIRST;
static _Atomic unsigned nmodules;
/* Unloads under way (journal_unload_begin): while there are any, a frame in
 * a recorded module's range may be another module's, loaded there since. */
static _Atomic unsigned unloading;

static inline struct journal_site *site_at(struct heap_header *hdr, uint32_t loc)
{
	return (struct journal_site *)((char *)hdr + ((uint64_t)loc << 3));
}

static inline uint64_t mix(uint64_t h)
{
	h *= 0xff51afd7ed558ccdULL;
	return h ^ h >> 32;
}

/* Four lanes, each over every fourth frame: their multiplications overlap,
 * where one chain over all frames waits for each in turn. */
static uint64_t hash_frames(const uint64_t *frames, unsigned depth)
{
	uint64_t a = 0x9e3779b97f4a7c15ULL ^ depth, b = 0xc2b2ae3d27d4eb4fULL;
	uint64_t c = 0x165667b19e3779f9ULL, d = 0x27d4eb2f165667c5ULL;
	unsigned i = 0;
	for (; i + 4 <= depth; i += 4) {
		a = mix(a ^ frames[i]);
		b = mix(b ^ frames[i + 1]);
		c = mix(c ^ frames[i + 2]);
		d = mix(d ^ frames[i + 3]);
	}
	for (; i < depth; i++)
		a = mix(a ^ frames[i]);
	uint64_t h = mix(mix(a ^ (b << 17 | b >> 47)) ^ (c << 31 | c >> 33) ^ (d << 47 | d >> 17));
	return h ? h : 1;
}

/* After the folder was found full, the journal waits a second before it
 * tries to reserve again (jlock held). */
static bool journal_waiting(void)
{
	if (!jretry)
		return false;
	if (os_now_ns(CLOCK_MONOTONIC_COARSE) < jretry)
		return true;
	jretry = 0;
	return false;
}

static void *journal_full(void)
{
	jretry = os_now_ns(CLOCK_MONOTONIC_COARSE) + JOURNAL_RETRY_NS;
	return NULL;
}

/* Room for a record of `size` bytes (jlock held); NULL when the file cannot
 * grow. The record's offset in the file goes to *off. */
static void *journal_reserve(struct heap *h, uint32_t size, uint64_t *off)
{
	if (journal_waiting())
		return NULL;
	if (!jsb || jsb->journal_end + size > jsb->size) {
		size_t page = (size_t)1 << h->page_shift;
		size_t bytes = JOURNAL_SB_SIZE > size + page ? JOURNAL_SB_SIZE : size + page;
		bytes = (bytes + page - 1) & ~(page - 1);
		struct superblock *sb = heap_grow(h, bytes, (uint32_t)page, 0, 0, RH_SB_JOURNAL, 0);
		if (!sb)
			return journal_full();
		jsb = sb;
		jcommitted = page;  /* the header page */
	}
	/* Pages are reserved before a record is written into them: a full
	 * filesystem stops the journal, it never makes a later write fault.
	 * A short journal reserves little. */
	uint64_t need = jsb->journal_end + size;
	if (need > jcommitted) {
		size_t page = (size_t)1 << h->page_shift;
		uint64_t upto = (need + JOURNAL_COMMIT - 1) & ~(uint64_t)(JOURNAL_COMMIT - 1);
		upto = (upto + page - 1) & ~(uint64_t)(page - 1);
		if (upto > jsb->size)
			upto = jsb->size;
		int fd = heap_fd(h);
		if (fd < 0 || os_commit(fd, jsb->offset + jcommitted, upto - jcommitted))
			return journal_full();  /* what is recorded stays */
		jcommitted = upto;
	}
	*off = jsb->offset + jsb->journal_end;
	return (char *)jsb + jsb->journal_end;
}

static void journal_publish(uint32_t size)
{
	__atomic_store_n(&jsb->journal_end, jsb->journal_end + size, __ATOMIC_RELEASE);
}

/* --- Modules ---------------------------------------------------------------- */

static bool covered(uint64_t addr)
{
	unsigned n = atomic_load_explicit(&nmodules, memory_order_acquire);
	const struct module_range *m = atomic_load_explicit(&modules, memory_order_acquire);
	for (unsigned i = 0; i < n; i++)
		if (addr - m[i].start < m[i].end - m[i].start)
			return true;
	return false;
}

static size_t build_id_of(const struct dl_phdr_info *info, const uint8_t **id)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
		const char *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
			const char *name = p + sizeof(*n);
			const char *desc = name + ((n->n_namesz + 3) & ~3u);
			if (desc + n->n_descsz > end)
				break;
			if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
				*id = (const uint8_t *)desc;
				return n->n_descsz;
			}
			p = desc + ((n->n_descsz + 3) & ~3u);
		}
	}
	return 0;
}

static uint64_t name_hash(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (const unsigned char *c = (const unsigned char *)(name ? name : ""); *c; c++)
		h = (h ^ *c) * 0x100000001b3ull;
	return h;
}

/* Room for one more module (module_lock held). */
static struct module_range *modules_room(unsigned n)
{
	struct module_range *m = atomic_load_explicit(&modules, memory_order_relaxed);
	if (n < modules_cap)
		return m;
	if (modules_cap >= MODULES_MAX)
		return NULL;
	struct module_range *bigger = mmap(NULL, 2 * (size_t)modules_cap * sizeof(*m), PROT_READ | PROT_WRITE,
		MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bigger == MAP_FAILED)
		return NULL;
	memcpy(bigger, m, (size_t)n * sizeof(*m));
	modules_cap *= 2;
	atomic_store_explicit(&modules, bigger, memory_order_release);
	return bigger;
}

/* Records a module in the journal and in modules (module_lock held). A
 * module without a name is the program when it is the first loaded. One
 * that finds no room is not recorded: without a place in modules it would
 * be recorded again at every new site. */
static void module_add(const char *name, bool first, uint64_t base, uint64_t lo, uint64_t hi,
	const uint8_t *id, size_t idlen)
{
	char exe[512];
	unsigned n = atomic_load(&nmodules);
	struct module_range *m = lo < hi ? modules_room(n) : NULL;
	if (!m)
		return;
	uint64_t who = name_hash(name);
	if (!name || !*name) {
		ssize_t len = first ? readlink("/proc/self/exe", exe, sizeof(exe) - 1) : -1;
		if (len <= 0)
			return; /* the vdso, or no name to find it by */
		exe[len] = 0;
		name = exe;
	}
	if (journal_module(name, base, lo, hi, id, idlen) == 0) {
		m[n] = (struct module_range){ lo, hi, who };
		atomic_store_explicit(&nmodules, n + 1, memory_order_release);
	}
}

void journal_unload_begin(void)
{
	unloads_enter(&unloading);
}

void journal_unload_end(void)
{
	unloads_leave(&unloading);
}

/* The ranges of recorded modules that were unloaded, where other code may
 * be loaded since: a frame there is hashed with the range's epoch, so its
 * stacks make sites of their own, recorded after that code's module and
 * told by it, while the blocks the unloaded module left keep theirs. A
 * range unloaded again takes a new epoch, up to RETIRE_TIMES times (a
 * plugin reloaded in a loop would otherwise add sites to the journal at
 * every turn); past MAX_RETIRED ranges, others are not told apart. */
#define MAX_RETIRED 64
#define RETIRE_TIMES 16
static struct {
	uint64_t start, end;
	_Atomic uint64_t epoch;
	unsigned times;
} retired[MAX_RETIRED];
static _Atomic unsigned nretired;
static _Atomic uint64_t retired_lo = UINT64_MAX, retired_hi;  /* bounds of them all */

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
static uint64_t retire_epoch;

/* A range of unloaded code (module_lock held). */
static void retire(uint64_t start, uint64_t end)
{
	unsigned r = 0, nr = atomic_load_explicit(&nretired, memory_order_relaxed);
	while (r < nr && (retired[r].start != start || retired[r].end != end))
		r++;
	if (r == nr && nr < MAX_RETIRED) {
		retired[r].start = start;
		retired[r].end = end;
		if (start < atomic_load_explicit(&retired_lo, memory_order_relaxed))
			atomic_store_explicit(&retired_lo, start, memory_order_relaxed);
		if (end > atomic_load_explicit(&retired_hi, memory_order_relaxed))
			atomic_store_explicit(&retired_hi, end, memory_order_relaxed);
		retired[r].times = 1;
		atomic_store_explicit(&retired[r].epoch, ++retire_epoch, memory_order_relaxed);
		atomic_store_explicit(&nretired, nr + 1, memory_order_release);
	} else if (r < nr && retired[r].times < RETIRE_TIMES) {
		retired[r].times++;
		atomic_store_explicit(&retired[r].epoch, ++retire_epoch, memory_order_relaxed);
	}
}

/* The build-id of the module mapped from lo, read from its ELF header and
 * program headers there (where an ordinary object maps them: in its first
 * page, which holds the header). A note is read only where a readable
 * segment maps it: the range between segments may be inaccessible. */
static size_t build_id_mapped(uint64_t lo, uint64_t hi, uint64_t bias, const uint8_t **id)
{
	const uint64_t page = 4096;  /* the smallest page: the header's is at least this */
	const ElfW(Ehdr) *e = (const ElfW(Ehdr) *)(uintptr_t)lo;
	if (hi - lo < page || memcmp(e->e_ident, ELFMAG, SELFMAG) != 0 ||
	    e->e_phentsize != sizeof(ElfW(Phdr)) || e->e_phoff > page ||
	    (uint64_t)e->e_phnum * sizeof(ElfW(Phdr)) > page - e->e_phoff)
		return 0;
	struct dl_phdr_info info = {
		.dlpi_addr = bias,
		.dlpi_phdr = (const ElfW(Phdr) *)(uintptr_t)(lo + e->e_phoff),
		.dlpi_phnum = e->e_phnum,
	};
	for (int i = 0; i < info.dlpi_phnum; i++) {
		const ElfW(Phdr) *n = &info.dlpi_phdr[i];
		if (n->p_type != PT_NOTE)
			continue;
		bool mapped = false;
		for (int k = 0; k < info.dlpi_phnum && !mapped; k++) {
			const ElfW(Phdr) *l = &info.dlpi_phdr[k];
			mapped = l->p_type == PT_LOAD && (l->p_flags & PF_R) && n->p_vaddr >= l->p_vaddr &&
				n->p_memsz <= l->p_memsz && n->p_vaddr - l->p_vaddr <= l->p_memsz - n->p_memsz;
		}
		if (!mapped)
			return 0;
	}
	return build_id_of(&info, id);
}

/* Records the modules of frames not yet in the journal, found with
 * _dl_find_object, which takes no lock (dl_iterate_phdr's, taken inside
 * malloc, deadlocked against a thread that held it while it waited for a
 * lock the allocating thread held). module_lock is waited for: no path
 * takes the loader's lock under it, and a site must not be recorded before
 * its modules (see FORMAT.md, MODULE). */
static void modules_of_frames(const uint64_t *frames, unsigned depth)
{
	/* During an unload, a recorded range that holds other code already
	 * was retired before the stack was hashed (retire_replaced). */
	pthread_mutex_lock(&module_lock);
	for (unsigned i = 0; i < depth; i++) {
		struct dl_find_object o;
		if (covered(frames[i]) || _dl_find_object((void *)(uintptr_t)frames[i], &o) != 0)
			continue;
		const struct link_map *lm = o.dlfo_link_map;
		uint64_t lo = (uint64_t)(uintptr_t)o.dlfo_map_start, hi = (uint64_t)(uintptr_t)o.dlfo_map_end;
		const uint8_t *id = NULL;
		size_t idlen = build_id_mapped(lo, hi, lm->l_addr, &id);
		module_add(lm->l_name, !lm->l_prev, lm->l_addr, lo, hi, id, idlen);
	}
	pthread_mutex_unlock(&module_lock);
}

/* Code was unloaded: the recorded modules no longer loaded where they were
 * are retired. */
/* Whether recorded module i is still loaded where it was: the same range,
 * under the same name (code of the same size loaded at the same place is
 * another module). */
static bool still_there(const struct module_range *m)
{
	struct dl_find_object o;
	return _dl_find_object((void *)(uintptr_t)m->start, &o) == 0 &&
		(uint64_t)(uintptr_t)o.dlfo_map_start == m->start && (uint64_t)(uintptr_t)o.dlfo_map_end == m->end &&
		name_hash(o.dlfo_link_map->l_name) == m->name;
}

/* module_lock held. */
static void retire_gone(void)
{
	unsigned have = atomic_load_explicit(&nmodules, memory_order_relaxed), keep = 0;
	struct module_range *m = atomic_load_explicit(&modules, memory_order_relaxed);
	for (unsigned i = 0; i < have; i++) {
		if (still_there(&m[i]))
			m[keep++] = m[i];
		else
			retire(m[i].start, m[i].end);
	}
	atomic_store_explicit(&nmodules, keep, memory_order_release);
}

void journal_modules_unloaded(void)
{
	pthread_mutex_lock(&module_lock);
	retire_gone();
	pthread_mutex_unlock(&module_lock);
}

/* During an unload: a frame in a recorded module's range that now holds
 * another module retires it before the stack is hashed, so that the stack
 * makes a site of its own rather than count in the old module's. */
static __attribute__((noinline, cold)) void retire_replaced(const uint64_t *frames, unsigned depth)
{
	pthread_mutex_lock(&module_lock);
	unsigned have = atomic_load_explicit(&nmodules, memory_order_relaxed);
	const struct module_range *m = atomic_load_explicit(&modules, memory_order_relaxed);
	for (unsigned f = 0; f < depth; f++)
		for (unsigned i = 0; i < have; i++)
			if (frames[f] - m[i].start < m[i].end - m[i].start) {
				if (!still_there(&m[i])) {
					retire_gone();
					f = depth;
				}
				break;
			}
	pthread_mutex_unlock(&module_lock);
}
#else
static int record_module(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uint64_t s = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && s < lo)
			lo = s;
		if (ph->p_type == PT_LOAD && s + ph->p_memsz > hi)
			hi = s + ph->p_memsz;
	}
	if (lo < hi && !covered(lo)) {
		const uint8_t *id = NULL;
		size_t idlen = build_id_of(info, &id);
		module_add(info->dlpi_name, atomic_load(&nmodules) == 0, info->dlpi_addr, lo, hi, id, idlen);
	}
	return 0;
}

/* Before glibc 2.35: every loaded module not yet in the journal, recorded
 * through dl_iterate_phdr. trylock: a thread in a dl_iterate_phdr callback
 * of its own holds the loader's lock and may allocate here; waiting for it
 * would deadlock. A module missed now is recorded at the next new site. */
static _Atomic bool forget_pending;  /* modules to record again, when module_lock is free */

static void modules_of_frames(const uint64_t *frames, unsigned depth)
{
	bool forget = atomic_load_explicit(&forget_pending, memory_order_acquire);
	for (unsigned i = 0; i < depth; i++)
		if (forget || !covered(frames[i])) {
			if (pthread_mutex_trylock(&module_lock) != 0)
				return;
			if (atomic_exchange_explicit(&forget_pending, false, memory_order_acq_rel))
				atomic_store_explicit(&nmodules, 0, memory_order_release);
			dl_iterate_phdr(record_module, NULL);
			pthread_mutex_unlock(&module_lock);
			return;
		}
}

/* Before glibc 2.35 the modules are recorded again after an unload, but
 * code loaded where other code was is not told apart. Not waited for
 * either: a thread holding module_lock may be in dl_iterate_phdr, and the
 * caller may be in a callback of its own. */
void journal_modules_unloaded(void)
{
	atomic_store_explicit(&forget_pending, true, memory_order_release);
}

static void retire_replaced(const uint64_t *frames, unsigned depth)
{
	(void)frames;
	(void)depth;
}
#endif

/* The site hash of frames some of which lie in retired ranges. */
static __attribute__((noinline)) uint64_t hash_retired(const uint64_t *frames, unsigned depth, uint64_t hash,
	unsigned nr)
{
	/* Every range that holds the frame counts: code loaded inside a larger
	 * range unloaded before keeps its own range's epoch too. */
	uint64_t lo = atomic_load_explicit(&retired_lo, memory_order_relaxed);
	uint64_t hi = atomic_load_explicit(&retired_hi, memory_order_relaxed);
	for (unsigned i = 0; i < depth; i++) {
		if (frames[i] - lo >= hi - lo)
			continue;
		for (unsigned r = 0; r < nr; r++)
			if (frames[i] - retired[r].start < retired[r].end - retired[r].start) {
				uint64_t e = atomic_load_explicit(&retired[r].epoch, memory_order_relaxed);
				hash = mix(hash ^ e ^ (uint64_t)i << 56 ^ (uint64_t)r << 48);
			}
	}
	return hash ? hash : 1;
}

int journal_module(const char *path, uint64_t base, uint64_t start, uint64_t end,
	const uint8_t *build_id, size_t build_id_len)
{
	struct heap *h = rh_heap;
	if (!h)
		return ENOMEM;
	size_t plen = strnlen(path, 4095);
	uint32_t size = (uint32_t)((offsetof(struct journal_module, path) + plen + 1 + 7) & ~(size_t)7);
	uint64_t off;
	pthread_mutex_lock(&jlock);
	struct journal_module *m = journal_reserve(h, size, &off);
	if (!m) {
		pthread_mutex_unlock(&jlock);
		return ENOMEM;
	}
	memset(m, 0, size);
	m->rec.tag = RH_REC_MODULE;
	m->rec.size = size;
	m->base = base;
	m->start = start;
	m->end = end;
	if (build_id_len > sizeof(m->build_id))
		build_id_len = sizeof(m->build_id);
	m->build_id_len = (uint16_t)build_id_len;
	if (build_id_len)
		memcpy(m->build_id, build_id, build_id_len);
	m->path_len = (uint16_t)plen;
	memcpy(m->path, path, plen);
	journal_publish(size);
	pthread_mutex_unlock(&jlock);
	return 0;
}

/* --- Sites -------------------------------------------------------------------- */

static uint32_t site_make(struct heap *h, const uint64_t *frames, unsigned depth, uint64_t hash, unsigned bucket);

static uint32_t lookup(struct heap_header *hdr, uint32_t head, uint64_t hash, const uint64_t *frames, unsigned depth)
{
	for (uint32_t loc = head; loc; loc = site_at(hdr, loc)->next) {
		struct journal_site *s = site_at(hdr, loc);
		if (s->hash == hash && s->depth == depth && memcmp(s->frames, frames, depth * sizeof(uint64_t)) == 0)
			return loc;
	}
	return 0;
}

/* Each thread's most recent sites, by hash, two to a set (the last used
 * first): a hit spares the shared index, which is likely a cache miss. An
 * entry matches on the 64-bit hash (as the index does) and the journal's
 * generation. */
#define RECENT 2048
struct recent {
	uint64_t hash;
	uint32_t loc;
	unsigned gen;
};
static __thread struct recent *recent;  /* RECENT entries, mmap'd per thread */
static __thread bool recent_gone;       /* past the thread's exit: none made again */

void journal_thread_exit(void)
{
	journal_forget_last();  /* the thread's counter slot goes */
	/* Forgotten before it is unmapped: a signal handler that allocates
	 * in between must not use it. */
	struct recent *r = recent;
	recent_gone = true;
	recent = NULL;
	atomic_signal_fence(memory_order_seq_cst);
	if (r)
		munmap(r, RECENT * sizeof(*r));
}
/* The site the index holds for hash, or 0. */
static inline uint32_t index_find(const struct site_index *ix, uint64_t hash)
{
	if (!ix)
		return 0;
	unsigned mask = __atomic_load_n(&ix->mask, __ATOMIC_RELAXED);
	unsigned i = (unsigned)(hash >> 16) & mask;
	for (unsigned n = 0; n < INDEX_PROBES; n++, i = (i + 1) & mask) {
		uint64_t eh = __atomic_load_n(&ix->e[i].hash, __ATOMIC_ACQUIRE);
		if (eh == hash)
			return ix->e[i].loc;
		if (!eh)
			break;
	}
	return 0;
}

unsigned journal_gen = 1;  /* bumped when the heap changes (fork) */
uint32_t (*journal_capture)(void);

uint32_t journal_site(const uint64_t *frames, unsigned depth)
{
	struct heap *h = rh_heap;
	if (!h || !depth)
		return 0;
	if (depth > RH_MAX_TRACE_DEPTH)
		depth = RH_MAX_TRACE_DEPTH;
	if (__builtin_expect(atomic_load_explicit(&unloading, memory_order_acquire) != 0, 0))
		retire_replaced(frames, depth);
	uint64_t hash = hash_frames(frames, depth);
	unsigned nr = atomic_load_explicit(&nretired, memory_order_acquire);
	if (__builtin_expect(nr != 0, 0))
		hash = hash_retired(frames, depth, hash, nr);
	if (!recent && !recent_gone) {
		void *m = mmap(NULL, RECENT * sizeof(*recent), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		/* A signal handler may have made one meanwhile. */
		if (m != MAP_FAILED && (recent || recent_gone))
			munmap(m, RECENT * sizeof(*recent));
		else if (m != MAP_FAILED)
			recent = m;
	}
	struct recent *r = recent ? &recent[((hash >> 40) % (RECENT / 2)) * 2] : NULL;
	if (r && r[0].hash == hash && r[0].gen == journal_gen)
		return r[0].loc;
	if (r && r[1].hash == hash && r[1].gen == journal_gen) {
		struct recent t = r[1];
		r[1] = r[0];
		r[0] = t;
		return t.loc;
	}
	struct site_index *ix = __atomic_load_n(&sindex, __ATOMIC_ACQUIRE);
	uint32_t loc = index_find(ix, hash);
	_Atomic uint32_t *b = atomic_load_explicit(&buckets, memory_order_acquire);
	unsigned bucket = (unsigned)(hash & (NBUCKETS - 1));
	if (!loc && b && (!ix || __atomic_load_n(&ix->full, __ATOMIC_RELAXED)))
		loc = lookup(h->hdr, atomic_load_explicit(&b[bucket], memory_order_acquire), hash, frames, depth);
	if (!loc)
		loc = site_make(h, frames, depth, hash, bucket);
	if (loc && r)
		r[1] = r[0], r[0] = (struct recent){ hash, loc, journal_gen };
	return loc;
}

static size_t index_bytes(unsigned entries)
{
	return offsetof(struct site_index, e) + (size_t)entries * sizeof(struct index_entry);
}

static struct site_index *index_new(unsigned entries)
{
	struct site_index *ix = mmap(NULL, index_bytes(entries), PROT_READ | PROT_WRITE,
		MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ix == MAP_FAILED)
		return NULL;
	ix->mask = entries - 1;
	return ix;
}

static bool index_put(struct site_index *ix, uint64_t hash, uint32_t loc)
{
	unsigned i = (unsigned)(hash >> 16) & ix->mask;
	for (unsigned n = 0; n < INDEX_PROBES; n++, i = (i + 1) & ix->mask)
		if (!ix->e[i].hash) {
			ix->e[i].loc = loc;
			__atomic_store_n(&ix->e[i].hash, hash, __ATOMIC_RELEASE);
			ix->used++;
			return true;
		}
	return false;
}

static void chain_add(uint64_t hash, uint32_t loc);

/* The index twice as big, published in place of the old one, which is
 * emptied (jlock held). A site it could not take (64 entries taken in a
 * row) goes on a chain. */
static struct site_index *index_grow(struct site_index *ix)
{
	struct site_index *bigger = index_new((ix->mask + 1) * 2);
	if (!bigger)
		return NULL;
	for (unsigned i = 0; i <= ix->mask; i++)
		if (ix->e[i].hash && !index_put(bigger, ix->e[i].hash, ix->e[i].loc))
			chain_add(ix->e[i].hash, ix->e[i].loc);
	__atomic_store_n(&sindex, bigger, __ATOMIC_RELEASE);
	madvise(ix, index_bytes(ix->mask + 1), MADV_DONTNEED);
	return bigger;
}

/* Indexes a new site (jlock held): the index doubles at half full, or when
 * the site finds no room near its place. False when it could not take it. */
static bool index_add(uint64_t hash, uint32_t loc)
{
	struct site_index *ix = sindex;
	while (ix && !ix->full) {
		bool largest = ix->mask + 1 >= INDEX_MAX;
		if ((largest || ix->used + 1 <= (ix->mask + 1) / 2) && index_put(ix, hash, loc))
			return true;
		if (largest)
			__atomic_store_n(&ix->full, true, __ATOMIC_RELEASE);
		else
			ix = index_grow(ix);
	}
	return false;
}

/* Puts a site the index cannot take on its hash chain (jlock held), the
 * chains made for the first. Its record's `next` is read by nobody but
 * this process, through the bucket it is found by. Without memory for the
 * chains the site is found by none: a stack seen again gets a second
 * record (the tools count both). */
static void chain_add(uint64_t hash, uint32_t loc)
{
	_Atomic uint32_t *b = buckets;
	if (!b) {
		void *m = mmap(NULL, NBUCKETS * sizeof(uint32_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
		if (m == MAP_FAILED)
			return;
		atomic_store_explicit(&buckets, b = m, memory_order_release);
	}
	unsigned bucket = (unsigned)(hash & (NBUCKETS - 1));
	site_at(rh_heap->hdr, loc)->next = atomic_load_explicit(&b[bucket], memory_order_relaxed);
	atomic_store_explicit(&b[bucket], loc, memory_order_release);
}

static uint32_t site_make(struct heap *h, const uint64_t *frames, unsigned depth, uint64_t hash, unsigned bucket)
{
	_Atomic uint32_t *b;
	/* First sight: make sure the modules of these frames are on record so
	 * the stack can be symbolised after the process is gone. */
	modules_of_frames(frames, depth);
	uint32_t loc = 0;
	pthread_mutex_lock(&jlock);
	if (!indexed) {
		__atomic_store_n(&sindex, index_new(INDEX_MIN), __ATOMIC_RELEASE);
		indexed = true;
	}
	b = buckets;
	if ((loc = index_find(sindex, hash)) ||
	    (b && (loc = lookup(h->hdr, atomic_load_explicit(&b[bucket], memory_order_relaxed), hash, frames, depth))))
		goto out;
	uint32_t size = (uint32_t)(offsetof(struct journal_site, frames) + depth * sizeof(uint64_t));
	uint64_t off;
	struct journal_site *s = journal_reserve(h, size, &off);
	if (!s || (off >> 3) > UINT32_MAX)
		goto out;
	memset(s, 0, offsetof(struct journal_site, frames));
	s->rec.tag = RH_REC_SITE;
	s->rec.size = size;
	s->hash = hash;
	s->depth = depth;
	memcpy(s->frames, frames, depth * sizeof(uint64_t));
	journal_publish(size);
	loc = (uint32_t)(off >> 3);
	if (!index_add(hash, loc))
		chain_add(hash, loc);
out:
	pthread_mutex_unlock(&jlock);
	return loc;
}

/* --- Site counters ------------------------------------------------------------- */

/* A slot's table that fills up near a site's place is followed by another,
 * up to DELTA_TABLES of them: a site may then have entries in several, all
 * counted. Past that, the record's counters take the overflow. */
#define DELTA_TABLES 8
#define DELTA_PROBES 8
static struct journal_deltas *tables[RH_MAX_COUNTERS]; /* by counter slot: the one filled */
static uint8_t ntables[RH_MAX_COUNTERS];

/* A new table for the counter slot (a journal record), the one it fills
 * from now on: the first of 1024 entries (a short program touches few
 * pages of it), the second of 2048, the others of RH_DELTA_ENTRIES. */
static struct journal_deltas *table_new(unsigned slot)
{
	struct heap *h = rh_heap;
	if (!h)
		return NULL;
	uint32_t count = RH_DELTA_ENTRIES >> (ntables[slot] < 2 ? 2 - ntables[slot] : 0);
	uint32_t size = (uint32_t)(offsetof(struct journal_deltas, entries) +
		count * sizeof(struct journal_delta));
	uint64_t off;
	pthread_mutex_lock(&jlock);
	struct journal_deltas *t = journal_reserve(h, size, &off);
	if (t) {
		/* The journal only ever appends into pages fresh from the file,
		 * which read as zeros: the entries need no clearing (which would
		 * fault in the whole table at once). */
		t->rec.tag = RH_REC_DELTAS;
		t->rec.size = size;
		t->slot = slot;
		t->count = count;
		journal_publish(size);
		__atomic_store_n(&tables[slot], t, __ATOMIC_RELEASE);
		ntables[slot]++;
	}
	pthread_mutex_unlock(&jlock);
	return t;
}

/* This thread's entry for the site, claimed on first use; NULL when no
 * table has room near the site's place (the record's counters take over). */
static struct journal_delta *delta_of(unsigned slot, uint32_t site)
{
	struct journal_deltas *t = __atomic_load_n(&tables[slot], __ATOMIC_ACQUIRE);
	if (!t && !(t = table_new(slot)))
		return NULL;
	for (;;) {
		unsigned mask = t->count - 1;  /* a power of two, as made */
		unsigned i = (site * 0x9e3779b1u) >> (32 - __builtin_ctz(t->count));
		for (unsigned n = 0; n < DELTA_PROBES; n++, i = (i + 1) & mask) {
			struct journal_delta *e = &t->entries[i];
			if (e->site == site)
				return e;
			if (e->site == 0) {
				__atomic_store_n(&e->site, site, __ATOMIC_RELEASE);
				return e;
			}
		}
		if (ntables[slot] >= DELTA_TABLES || !(t = table_new(slot)))
			return NULL;
	}
}

/* Counts a block made (blocks 1) or freed (blocks -1) at a site. Slot 0 is
 * shared (other processes, threads past the 63rd): atomic adds on the record. */
__thread struct journal_last rh_jlast;

void journal_count_slow(struct heap_header *hdr, uint32_t site, unsigned slot, int64_t bytes, int blocks)
{
	struct journal_delta *e = NULL;
	if (slot && (e = delta_of(slot, site))) {
		rh_jlast.e = e;
		rh_jlast.site = site;
		journal_delta_add(e, bytes, blocks);
		return;
	}
	struct journal_site *s = site_at(hdr, site);
	if (s->rec.tag != RH_REC_SITE)
		return; /* a bad locator from another process's heap */
	__atomic_fetch_add(&s->live_bytes, bytes * blocks, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->live_blocks, blocks, __ATOMIC_RELAXED);
	if (blocks > 0) {
		__atomic_fetch_add(&s->total_allocs, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->total_bytes, (uint64_t)bytes, __ATOMIC_RELAXED);
	}
}

/* --- Fork --------------------------------------------------------------------- */

void journal_fork_prepare(void)
{
	if (rh_fork_locking) {
		pthread_mutex_lock(&module_lock);
		pthread_mutex_lock(&jlock);
	}
}

void journal_fork_parent(void)
{
	if (rh_fork_locking) {
		pthread_mutex_unlock(&jlock);
		pthread_mutex_unlock(&module_lock);
	}
}

/* The child's heap will be a new file with a new journal. */
void journal_fork_child(void)
{
	journal_gen++;
	journal_forget_last();  /* the only thread left in the child */
	jsb = NULL;
	jcommitted = 0;
	jretry = 0;
	memset(tables, 0, sizeof(tables));
	memset(ntables, 0, sizeof(ntables));
	if (buckets)
		munmap((void *)buckets, NBUCKETS * sizeof(uint32_t));
	buckets = NULL;
	indexed = false;
	if (sindex)
		munmap(sindex, index_bytes(sindex->mask + 1));
	sindex = NULL;
	atomic_store(&nmodules, 0);
	atomic_store(&unloading, 0);
	pthread_mutex_init(&jlock, NULL);
	pthread_mutex_init(&module_lock, NULL);
}
