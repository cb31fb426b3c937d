/* SPDX-License-Identifier: MIT */
/*
 * A fast stack walk for the common frame. Each return address is looked up
 * in a cache of unwind rules; a miss finds the address's FDE through the
 * module's .eh_frame_hdr and runs its call-frame program up to the address.
 * Only the rules a normal x86-64 frame uses are understood: the CFA is rsp
 * or rbp plus an offset, the return address is at CFA-8, rbp is kept or
 * saved at an offset from the CFA. Anything else (signal frames, CFA
 * expressions, realigned stacks, code without unwind tables) makes the whole
 * walk return -1, and the caller asks libunwind instead.
 *
 * The cache is one table for all threads, read without a lock: an entry is
 * a key (the address and the flush generation) and a rule word. A writer
 * clears the key, writes the rule, then publishes the key; a reader checks
 * the key again after it read the rule.
 */
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "heap.h"
#include "unwind.h"

#if defined(__x86_64__)

enum { RULE_NONE, RULE_END, RULE_RSP, RULE_RBP };
enum { REG_RBP = 6, REG_RSP = 7, REG_RA = 16 };

/* A rule packed in 64 bits: kind (2 bits), rbp saved (1 bit), the CFA's
 * offset from its register (signed 32 bits), rbp's slot from the CFA
 * (signed 16 bits). Kind RULE_NONE: libunwind's frame; with RULE_NOINFO,
 * code that no unwind table covers. */
#define RULE_NOINFO 4
static inline uint64_t rule_pack(unsigned kind, int32_t cfa_off, bool rbp_saved, int16_t rbp_off)
{
	return kind | (uint64_t)rbp_saved << 2 | (uint64_t)(uint32_t)cfa_off << 16 |
		(uint64_t)(uint16_t)rbp_off << 48;
}

/* Bits 3 to 15 of a stored rule: the low bits of its return address, so a
 * reader that read an entry while it changed hands twice (to another
 * address and back) does not take the other address's rule. */
#define TAG_MASK 0xfff8ull
static inline uint64_t tag_of(uint64_t ra)
{
	return (ra << 3) & TAG_MASK;
}

/* The table starts at 512 entries (a short program touches few of its
 * pages) and doubles at half full, up to 32768; then a new rule takes the
 * place of an old one. A table left behind is emptied (MADV_DONTNEED reads
 * as zeros: a reader still in it finds nothing). */
#define CACHE_MIN_BITS 9
#define CACHE_MAX_BITS 15
#define CACHE_PROBES 8
struct rule_entry {
	_Atomic uint64_t key;   /* return address | generation << 48; 0: empty */
	_Atomic uint64_t rule;
};
struct rule_table {
	_Atomic unsigned bits;  /* 2^bits entries; 0 in a table emptied */
	unsigned used;
	uint64_t pad;           /* entries 16-byte aligned: none spans two cache lines */
	struct rule_entry e[];
};
static struct rule_table *_Atomic cache;
static atomic_flag cache_writer = ATOMIC_FLAG_INIT;
static _Atomic uint64_t generation = 1;

/* Unloads under way (unwind_unload_begin): while there are any, a walk
 * finds each rule anew from the code mapped now, as another thread may
 * have loaded code where the unloaded code was before the generation
 * changes. */
static _Atomic unsigned unloading;

/* Keys hold 16 bits of the generation: when those wrap, the table is left
 * to its readers and a new one made (never in practice: 65536 dlcloses). */
void unwind_flush(void)
{
	uint64_t gen = atomic_fetch_add_explicit(&generation, 1, memory_order_acq_rel) + 1;
	if (!(gen & 0xffff))
		atomic_store_explicit(&cache, NULL, memory_order_release);
}

/* A thread that was storing a rule, or unloading, when another forked is
 * not in the child: the writer's flag is free there, and nothing unloads.
 * An unload under way in the parent never reaches its flush in the child,
 * which may already have lost the code: the rules go here. */
bool unwind_fork_child(void)
{
	atomic_flag_clear_explicit(&cache_writer, memory_order_relaxed);
	if (!atomic_exchange_explicit(&unloading, 0, memory_order_relaxed))
		return false;
	unwind_flush();
	return true;
}

void unwind_unload_begin(void)
{
	unloads_enter(&unloading);
}

void unwind_unload_end(void)
{
	unloads_leave(&unloading);
}

bool unwind_flushed(void)
{
	return atomic_load_explicit(&generation, memory_order_relaxed) != 1;
}

static inline unsigned slot_of(uint64_t ra, unsigned bits)
{
	return (unsigned)((ra * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

/* --- Reading DWARF ------------------------------------------------------- */

struct reader {
	const uint8_t *p, *end;
	bool bad;
};

static uint64_t uleb(struct reader *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; r->p < r->end; shift += 7) {
		uint8_t b = *r->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static int64_t sleb(struct reader *r)
{
	int64_t v = 0;
	unsigned shift = 0;
	while (r->p < r->end) {
		uint8_t b = *r->p++;
		if (shift < 64)
			v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
		shift += 7;
		if (!(b & 0x80)) {
			if (shift < 64 && (b & 0x40))
				v |= -((int64_t)1 << shift);
			return v;
		}
	}
	r->bad = true;
	return 0;
}

static uint64_t fixed(struct reader *r, unsigned size)
{
	if ((size_t)(r->end - r->p) < size) {
		r->bad = true;
		return 0;
	}
	uint64_t v = 0;
	memcpy(&v, r->p, size);  /* little-endian */
	r->p += size;
	return v;
}

#define PE_OMIT 0xff

/* A pointer in DWARF's exception-handling encoding; `data` is the base of
 * data-relative values (.eh_frame_hdr's start). */
static uint64_t encoded(struct reader *r, uint8_t enc, uint64_t data)
{
	uint64_t at = (uint64_t)(uintptr_t)r->p, v;
	switch (enc & 0x0f) {
	case 0x00: v = fixed(r, 8); break;
	case 0x01: v = uleb(r); break;
	case 0x02: v = fixed(r, 2); break;
	case 0x03: v = fixed(r, 4); break;
	case 0x04: v = fixed(r, 8); break;
	case 0x09: v = (uint64_t)sleb(r); break;
	case 0x0a: v = (uint64_t)(int64_t)(int16_t)fixed(r, 2); break;
	case 0x0b: v = (uint64_t)(int64_t)(int32_t)fixed(r, 4); break;
	case 0x0c: v = fixed(r, 8); break;
	default: r->bad = true; return 0;
	}
	switch (enc & 0x70) {
	case 0x00: break;
	case 0x10: v += at; break;
	case 0x30: v += data; break;
	default: r->bad = true; return 0;
	}
	if (enc & 0x80)  /* indirect: not in unwind tables we read */
		r->bad = true;
	return v;
}

/* --- Finding the FDE ------------------------------------------------------ */

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
/* The module's .eh_frame_hdr, found without the loader's lock (a thread
 * holding it may wait for a lock the allocating thread holds). */
static const uint8_t *eh_frame_hdr_of(uint64_t pc)
{
	struct dl_find_object o;
	if (_dl_find_object((void *)(uintptr_t)pc, &o) != 0)
		return NULL;
	return o.dlfo_eh_frame;
}
#else
struct find {
	uint64_t pc;
	const uint8_t *hdr;  /* the module's .eh_frame_hdr, NULL: none */
};

static int find_module(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct find *f = arg;
	const ElfW(Phdr) *eh = NULL;
	bool in = false;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && f->pc - (info->dlpi_addr + ph->p_vaddr) < ph->p_memsz)
			in = true;
		else if (ph->p_type == PT_GNU_EH_FRAME)
			eh = ph;
	}
	if (!in)
		return 0;
	f->hdr = eh ? (const uint8_t *)(info->dlpi_addr + eh->p_vaddr) : NULL;
	return 1;
}

static const uint8_t *eh_frame_hdr_of(uint64_t pc)
{
	struct find f = { pc, NULL };
	dl_iterate_phdr(find_module, &f);
	return f.hdr;
}
#endif

/* The FDE covering pc, by binary search in the module's sorted table. NULL,
 * with *noinfo set when pc lies before the first function of its module's
 * table (a module without a table, or no module, leaves it unset). */
static const uint8_t *fde_of(uint64_t pc, bool *noinfo)
{
	const uint8_t *hdr = eh_frame_hdr_of(pc);
	if (!hdr)
		return NULL;
	uint64_t base = (uint64_t)(uintptr_t)hdr;
	if (hdr[0] != 1 || hdr[3] != 0x3b)  /* version 1, table of datarel sdata4 pairs */
		return NULL;
	/* Bounded generously: the table is read through these readers only. */
	struct reader r = { hdr + 4, hdr + 4 + 16, false };
	encoded(&r, hdr[1], base);  /* eh_frame_ptr */
	uint64_t count = hdr[2] == PE_OMIT ? 0 : encoded(&r, hdr[2], base);
	if (r.bad || !count || count > (1u << 28))
		return NULL;
	const int32_t *table = (const int32_t *)r.p;
	uint64_t lo = 0, hi = count;
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if ((uint64_t)((int64_t)base + table[2 * mid]) <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if ((uint64_t)((int64_t)base + table[2 * lo]) > pc) {
		*noinfo = true;
		return NULL;
	}
	return (const uint8_t *)(uintptr_t)((int64_t)base + table[2 * lo + 1]);
}

/* --- Running the call-frame program -------------------------------------- */

struct row {
	unsigned cfa_reg;
	int64_t cfa_off;
	enum { SAME, SAVED, UNDEF, OTHER } rbp, ra;
	int64_t rbp_off, ra_off;
};

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint8_t fde_enc;
	bool has_aug;
	const uint8_t *insns, *end;
};

static bool cie_read(const uint8_t *p, struct cie *c)
{
	uint32_t len;
	memcpy(&len, p, 4);
	if (len == 0 || len == 0xffffffffu)
		return false;
	struct reader r = { p + 4, p + 4 + len, false };
	if (fixed(&r, 4) != 0)  /* a CIE's id */
		return false;
	uint8_t version = (uint8_t)fixed(&r, 1);
	if (version != 1 && version != 3)
		return false;
	const char *aug = (const char *)r.p;
	size_t alen = strnlen(aug, (size_t)(r.end - r.p));
	if (alen == (size_t)(r.end - r.p))
		return false;
	r.p += alen + 1;
	c->code_align = uleb(&r);
	c->data_align = sleb(&r);
	uint64_t ra = version == 1 ? fixed(&r, 1) : uleb(&r);
	if (ra != REG_RA)
		return false;
	c->fde_enc = 0;
	c->has_aug = aug[0] == 'z';
	if (c->has_aug) {
		uint64_t n = uleb(&r);
		if (r.bad || n > (uint64_t)(r.end - r.p))
			return false;
		const uint8_t *after = r.p + n;
		for (const char *a = aug + 1; *a; a++) {
			switch (*a) {
			case 'R': c->fde_enc = (uint8_t)fixed(&r, 1); break;
			case 'L': fixed(&r, 1); break;
			case 'P': {
				uint8_t enc = (uint8_t)fixed(&r, 1);
				encoded(&r, enc & 0x7f, 0);  /* the personality routine, skipped */
				break;
			}
			default: return false;  /* 'S' (a signal frame) and the unknown */
			}
		}
		r.p = after;
	} else if (aug[0]) {
		return false;
	}
	c->insns = r.p;
	c->end = r.end;
	return !r.bad && r.p <= r.end;
}

/* A rule for reg other than "saved at an offset from the CFA": rbp takes
 * it; false for the return address and rsp, which must have none other. */
static bool rule_set(struct row *row, uint64_t reg, int how)
{
	if (reg == REG_RBP)
		row->rbp = how;
	else if (reg == REG_RA || reg == REG_RSP)
		return false;
	return true;
}

/* Runs instructions while their location is at most pc. `init` is the row
 * after the CIE's instructions (DW_CFA_restore goes back to it). */
static bool run(struct reader *r, const struct cie *c, uint64_t loc, uint64_t pc,
	struct row *row, const struct row *init)
{
	struct row stack[8];
	unsigned depth = 0;
	while (r->p < r->end && !r->bad) {
		uint8_t op = *r->p++;
		uint64_t reg, delta = 0;
		int64_t off;
		switch (op >> 6) {
		case 1: delta = (op & 0x3f) * c->code_align; goto advance;
		case 2:
			reg = op & 0x3f;
			off = (int64_t)uleb(r) * c->data_align;
			goto offset;
		case 3:
			reg = op & 0x3f;
			goto restore;
		}
		switch (op) {
		case 0x00: break;  /* nop */
		case 0x02: delta = fixed(r, 1) * c->code_align; goto advance;
		case 0x03: delta = fixed(r, 2) * c->code_align; goto advance;
		case 0x04: delta = fixed(r, 4) * c->code_align; goto advance;
		case 0x05:
			reg = uleb(r);
			off = (int64_t)uleb(r) * c->data_align;
			goto offset;
		case 0x11:
			reg = uleb(r);
			off = sleb(r) * c->data_align;
			goto offset;
		case 0x2f:  /* GNU_negative_offset_extended */
			reg = uleb(r);
			off = -(int64_t)uleb(r) * c->data_align;
			goto offset;
		case 0x06: reg = uleb(r); goto restore;
		case 0x07:  /* undefined */
			reg = uleb(r);
			if (reg == REG_RBP)
				row->rbp = UNDEF;
			else if (reg == REG_RA)
				row->ra = UNDEF;
			else if (reg == REG_RSP)
				return false;
			break;
		case 0x08:  /* same value */
			if (!rule_set(row, uleb(r), SAME))
				return false;
			break;
		case 0x09:  /* register */
			reg = uleb(r);
			uleb(r);
			if (!rule_set(row, reg, OTHER))
				return false;
			break;
		case 0x0a:
			if (depth == 8)
				return false;
			stack[depth++] = *row;
			break;
		case 0x0b:
			if (!depth)
				return false;
			*row = stack[--depth];
			break;
		case 0x0c:
			row->cfa_reg = (unsigned)uleb(r);
			row->cfa_off = (int64_t)uleb(r);
			break;
		case 0x12:
			row->cfa_reg = (unsigned)uleb(r);
			row->cfa_off = sleb(r) * c->data_align;
			break;
		case 0x0d: row->cfa_reg = (unsigned)uleb(r); break;
		case 0x0e: row->cfa_off = (int64_t)uleb(r); break;
		case 0x13: row->cfa_off = sleb(r) * c->data_align; break;
		case 0x0f:  /* def_cfa_expression */
			return false;
		case 0x10:  /* expression */
		case 0x16: {  /* val_expression */
			reg = uleb(r);
			uint64_t n = uleb(r);
			if (n > (uint64_t)(r->end - r->p))
				return false;
			r->p += n;
			if (!rule_set(row, reg, OTHER))
				return false;
			break;
		}
		case 0x14:  /* val_offset */
		case 0x15:
			reg = uleb(r);
			if (op == 0x14)
				uleb(r);
			else
				sleb(r);
			if (!rule_set(row, reg, OTHER))
				return false;
			break;
		case 0x2e: uleb(r); break;  /* GNU_args_size */
		default: return false;      /* set_loc and the unknown */
		}
		continue;
advance:
		loc += delta;
		if (loc > pc)
			return !r->bad;
		continue;
offset:
		if (reg == REG_RBP) {
			row->rbp = SAVED;
			row->rbp_off = off;
		} else if (reg == REG_RA) {
			row->ra = SAVED;
			row->ra_off = off;
		} else if (reg == REG_RSP) {
			return false;
		}
		continue;
restore:
		if (!init)
			return false;  /* in the CIE itself */
		if (reg == REG_RBP) {
			row->rbp = init->rbp;
			row->rbp_off = init->rbp_off;
		} else if (reg == REG_RA) {
			row->ra = init->ra;
			row->ra_off = init->ra_off;
		}
		continue;
	}
	return !r->bad;
}

/* The rule for the frame whose return address is ra (the call is at ra-1). */
static uint64_t rule_find(uint64_t ra)
{
	uint64_t pc = ra - 1;
	bool noinfo = false;
	const uint8_t *fde = fde_of(pc, &noinfo);
	if (!fde)
		return RULE_NONE | (noinfo ? RULE_NOINFO : 0);
	uint32_t len, cie_off;
	memcpy(&len, fde, 4);
	memcpy(&cie_off, fde + 4, 4);
	if (len == 0 || len == 0xffffffffu || cie_off == 0)
		return RULE_NONE;
	struct cie c;
	if (!cie_read(fde + 4 - cie_off, &c))
		return RULE_NONE;
	struct reader r = { fde + 8, fde + 4 + len, false };
	uint64_t begin = encoded(&r, c.fde_enc, 0);
	uint64_t range = encoded(&r, c.fde_enc & 0x0f, 0);
	if (r.bad)
		return RULE_NONE;
	if (pc - begin >= range)  /* between the table's functions */
		return RULE_NONE | RULE_NOINFO;
	if (c.has_aug) {
		uint64_t n = uleb(&r);
		if (r.bad || n > (uint64_t)(r.end - r.p))
			return RULE_NONE;
		r.p += n;
	}
	struct row row = { REG_RSP, 8, SAME, SAVED, 0, -8 }, init;
	struct reader ci = { c.insns, c.end, false };
	if (!run(&ci, &c, 0, UINT64_MAX, &row, NULL))
		return RULE_NONE;
	init = row;
	if (!run(&r, &c, begin, pc, &row, &init))
		return RULE_NONE;
	if (row.ra == UNDEF)
		return RULE_END;
	if (row.ra != SAVED || row.ra_off != -8 || row.rbp == UNDEF || row.rbp == OTHER)
		return RULE_NONE;
	if (row.cfa_reg != REG_RSP && row.cfa_reg != REG_RBP)
		return RULE_NONE;
	if (row.cfa_off <= 0 || row.cfa_off > INT32_MAX ||
	    (row.rbp == SAVED && (row.rbp_off < INT16_MIN || row.rbp_off > INT16_MAX)))
		return RULE_NONE;
	return rule_pack(row.cfa_reg == REG_RSP ? RULE_RSP : RULE_RBP, (int32_t)row.cfa_off,
		row.rbp == SAVED, (int16_t)row.rbp_off);
}

/* --- The cache -------------------------------------------------------------- */

static size_t table_bytes(unsigned bits)
{
	return offsetof(struct rule_table, e) + ((size_t)1 << bits) * sizeof(struct rule_entry);
}

static struct rule_table *table_new(unsigned bits)
{
	struct rule_table *t = mmap(NULL, table_bytes(bits), PROT_READ | PROT_WRITE,
		MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t == MAP_FAILED)
		return NULL;
	atomic_store_explicit(&t->bits, bits, memory_order_relaxed);
	return t;
}

static struct rule_table *cache_get(void)
{
	struct rule_table *t = atomic_load_explicit(&cache, memory_order_acquire);
	if (t)
		return t;
	struct rule_table *m = table_new(CACHE_MIN_BITS), *none = NULL;
	if (!m)
		return NULL;
	if (!atomic_compare_exchange_strong(&cache, &none, m)) {
		munmap(m, table_bytes(CACHE_MIN_BITS));
		return none;
	}
	return m;
}

/* Stores a rule in table t (the writer's flag held): in the first free or
 * stale entry within reach, else the home entry (an eviction: emptying
 * none, it hides no other key from readers). True when it took an entry
 * that was free. */
static bool table_put(struct rule_table *t, unsigned bits, uint64_t key, uint64_t rule, uint64_t gen)
{
	unsigned mask = (1u << bits) - 1, home = slot_of(key & ((1ull << 48) - 1), bits), i = home, n = 0;
	uint64_t k = 0;
	for (; n < CACHE_PROBES; n++, i = (i + 1) & mask) {
		k = atomic_load_explicit(&t->e[i].key, memory_order_relaxed);
		if (k == key)
			return false;
		if (!k || k >> 48 != gen)
			break;
	}
	if (n == CACHE_PROBES)
		i = home;
	atomic_store_explicit(&t->e[i].key, 0, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&t->e[i].rule, rule, memory_order_relaxed);
	atomic_store_explicit(&t->e[i].key, key, memory_order_release);
	return n < CACHE_PROBES && !k;
}

/* The table twice as big, with the rules of this generation, published in
 * place of t, which is emptied (the writer's flag held). */
static struct rule_table *table_grow(struct rule_table *t, unsigned bits, uint64_t gen)
{
	struct rule_table *bigger = table_new(bits + 1);
	if (!bigger)
		return t;
	for (unsigned i = 0; i < 1u << bits; i++) {
		uint64_t k = atomic_load_explicit(&t->e[i].key, memory_order_relaxed);
		if (k && k >> 48 == gen)
			bigger->used += table_put(bigger, bits + 1, k,
				atomic_load_explicit(&t->e[i].rule, memory_order_relaxed), gen);
	}
	atomic_store_explicit(&cache, bigger, memory_order_release);
	madvise(t, table_bytes(bits), MADV_DONTNEED);
	return bigger;
}

static __attribute__((noinline, cold)) uint64_t rule_miss(uint64_t ra, uint64_t gen)
{
	uint64_t rule = rule_find(ra);
	/* One writer at a time; a thread that finds another writing (or a
	 * signal handler that interrupted this one) leaves the rule out. */
	if (atomic_flag_test_and_set_explicit(&cache_writer, memory_order_acquire))
		return rule;
	struct rule_table *t = atomic_load_explicit(&cache, memory_order_acquire);
	unsigned bits = t ? atomic_load_explicit(&t->bits, memory_order_relaxed) : 0;
	if (bits) {
		if (bits < CACHE_MAX_BITS && t->used + 1 > (1u << bits) / 2) {
			t = table_grow(t, bits, gen);
			bits = atomic_load_explicit(&t->bits, memory_order_relaxed);
		}
		t->used += table_put(t, bits, ra | gen << 48, rule | tag_of(ra), gen);
	}
	atomic_flag_clear_explicit(&cache_writer, memory_order_release);
	return rule;
}

static inline uint64_t rule_of(const struct rule_table *t, unsigned bits, uint64_t ra, uint64_t gen)
{
	uint64_t key = ra | gen << 48;
	unsigned mask = (1u << bits) - 1, i = slot_of(ra, bits);
	for (unsigned n = 0; n < CACHE_PROBES; n++, i = (i + 1) & mask) {
		uint64_t k = atomic_load_explicit(&t->e[i].key, memory_order_acquire);
		if (k == key) {
			uint64_t rule = atomic_load_explicit(&t->e[i].rule, memory_order_relaxed);
			atomic_thread_fence(memory_order_acquire);
			if (atomic_load_explicit(&t->e[i].key, memory_order_relaxed) == key &&
			    (rule & TAG_MASK) == tag_of(ra))
				return rule;
			break;
		}
		if (!k)
			break;
	}
	return rule_miss(ra, gen);
}

/* --- The walk --------------------------------------------------------------- */

#define STACK_SPAN (1ull << 30)  /* a walk further from its start is not trusted */

extern void *__libc_stack_end;

/* The end of the stack the walk starts on, which it never reads past: a
 * wrong rule (of code unloaded under a walk, say) must not make it read
 * memory that is not there. A thread's stack ends with its thread's own
 * control block (static TLS and the TCB sit at its top, x86-64's TLS
 * layout), the main thread's at the argument vector. A stack of the
 * program's own (a coroutine's) gets the span as before. */
static inline uint64_t stack_end(uint64_t rsp)
{
	uint64_t self = (uint64_t)pthread_self();
	if (self - rsp - 1 < STACK_SPAN)
		return self;
	uint64_t top = (uint64_t)(uintptr_t)__libc_stack_end;
	if (top - rsp - 1 < STACK_SPAN)
		return top;
	return rsp + STACK_SPAN;
}

/* The thread's last walk, frame by frame: the rule each step found for its
 * return address. A walk from the same place repeats most of them, and a
 * step whose return address is the last walk's at the same step takes its
 * rule from here instead of the shared table. Valid for one generation
 * (all 64 bits of it: the table's keys hold only 16). */
#define LAST_STEPS 32
static __thread struct {
	bool walking;                  /* a walk of this thread uses them */
	uint64_t gen;                  /* generation of the rules; 0: none */
	uint64_t ra[LAST_STEPS], rule[LAST_STEPS];
} last __attribute__((tls_model("initial-exec")));

/* The walk from the frame at fp; with mine, through the rules of the
 * thread's last walk. */
static inline __attribute__((always_inline, no_sanitize_address)) int walk(const uint64_t *fp, void **buf,
	int max, uintptr_t skip_lo, uintptr_t skip_hi, bool mine)
{
	const struct rule_table *t = cache_get();
	unsigned bits = t ? atomic_load_explicit(&t->bits, memory_order_relaxed) : 0;
	if (!bits)
		return -1;  /* none, or one emptied as this walk began */
	bool trusted = atomic_load_explicit(&unloading, memory_order_acquire) == 0;
	uint64_t full = atomic_load_explicit(&generation, memory_order_acquire), gen = full & 0xffff;
	uint64_t ra = fp[1], rsp = (uint64_t)(uintptr_t)(fp + 2), rbp = fp[0];
	uint64_t end = stack_end(rsp);
	/* Not while code unloads: only rules found anew then. */
	mine = mine && trusted;
	bool reuse = mine && last.gen == full;
	if (mine && !reuse) {
		memset(last.ra, 0, sizeof(last.ra));
		last.gen = full;
	}
	int n = 0;
	for (unsigned step = 0; n < max; step++) {
		if (!ra)
			return n;
		if (ra >> 48)
			return -1;  /* no room for the key's generation */
		if (ra - skip_lo >= skip_hi - skip_lo) {
			buf[n++] = (void *)(uintptr_t)ra;
			if (n == max)
				break;
		}
		uint64_t rule;
		if (step < LAST_STEPS && last.ra[step] == ra && reuse) {
			rule = last.rule[step];
		} else if (__builtin_expect(trusted, 1)) {
			rule = rule_of(t, bits, ra, gen);
			if (step < LAST_STEPS && mine) {
				last.ra[step] = ra;
				last.rule[step] = rule;
			}
		} else {
			rule = rule_miss(ra, gen);
		}
		unsigned kind = rule & 3;
		if (kind == RULE_END)
			return n;
		if (kind == RULE_NONE) {
			/* Code of a module whose table does not cover it, with a
			 * frame pointer of 0: the outermost frame (glibc's loader
			 * clears rbp before it calls constructors), where
			 * libunwind's walk, left to follow frame pointers, ends
			 * too. The code itself is not read: a wrong rule may
			 * give any address. */
			if ((rule & RULE_NOINFO) && !rbp)
				return n;
			return -1;
		}
		uint64_t cfa = (kind == RULE_RSP ? rsp : rbp) + (uint64_t)(int64_t)(int32_t)(rule >> 16);
		if (cfa <= rsp || cfa > end || (cfa & 7))
			return -1;
		ra = ((const uint64_t *)(uintptr_t)cfa)[-1];
		if (rule & 4) {
			uint64_t at = cfa + (uint64_t)(int64_t)(int16_t)(rule >> 48);
			if (at < rsp || at > end - 8)
				return -1;
			rbp = *(const uint64_t *)(uintptr_t)at;
		}
		rsp = cfa;
	}
	return n;
}

__attribute__((noinline, no_sanitize_address)) int unwind_fast(void **buf, int max, uintptr_t skip_lo,
	uintptr_t skip_hi)
{
	const uint64_t *fp = __builtin_frame_address(0);
	/* A walk in a signal handler that interrupted one of this thread's
	 * leaves the last walk's rules to it. (A handler that jumps out of a
	 * walk leaves them to no walk of the thread after it.) */
	if (last.walking)
		return walk(fp, buf, max, skip_lo, skip_hi, false);
	last.walking = true;
	atomic_signal_fence(memory_order_seq_cst);
	int n = walk(fp, buf, max, skip_lo, skip_hi, true);
	atomic_signal_fence(memory_order_seq_cst);
	last.walking = false;
	return n;
}

#else

int unwind_fast(void **buf, int max, uintptr_t skip_lo, uintptr_t skip_hi)
{
	(void)buf;
	(void)max;
	(void)skip_lo;
	(void)skip_hi;
	return -1;
}

void unwind_flush(void)
{
}

void unwind_unload_begin(void)
{
}

void unwind_unload_end(void)
{
}

bool unwind_flushed(void)
{
	return false;
}

bool unwind_fork_child(void)
{
	return false;
}

#endif
