/* SPDX-License-Identifier: MIT */
/*
 * The public C API of redhawk/shm.h over the allocator, and the process's
 * metrics. Blocks made through this API record their caller as call site.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "heap.h"
#include "alloc.h"
#include "redhawk/shm.h"

/* The last call site each thread saw, to spare the journal lookup when a
 * caller allocates in a loop; valid for the journal of its generation (a
 * forked child has a journal of its own). */
static __thread struct {
	uint64_t frame;
	uint32_t site;
	unsigned gen;
} last;

/* The call site of an API call when it needs no lookup: none with
 * provenance off, or the caller seen last time. False when it does. */
static inline bool known_site(void *ret, uint32_t *site)
{
	if (!rh_options.trace_depth) {
		*site = 0;
		return true;
	}
	if (journal_capture || last.frame != (uint64_t)(uintptr_t)ret || last.gen != journal_gen)
		return false;
	*site = last.site;
	return true;
}

/* The call site of an API call: its caller's return address (or, under the
 * shim, its whole stack). */
static inline uint32_t caller_site(void *ret)
{
	uint32_t site;
	if (known_site(ret, &site))
		return site;
	if (journal_capture)
		return journal_capture();
	uint64_t frame = (uint64_t)(uintptr_t)ret;
	if ((site = journal_site(&frame, 1))) {
		last.frame = frame;
		last.site = site;
		last.gen = journal_gen;
	}
	return site;
}

static __attribute__((noinline)) void *alloc_api(size_t size, size_t align, void *ret)
{
	if (!rh_heap && !heap_get_slow())
		return NULL;
	bool was = rh_tc.shared_only;
	rh_tc.shared_only = true;
	void *p = alloc_block(size, align, caller_site(ret));
	rh_tc.shared_only = was;
	if (!p)
		errno = ENOMEM;
	return p;
}

RH_SHM_API void *rh_shm_alloc(size_t size)
{
	/* The common case inline: a block from the thread's cache, for a caller
	 * seen last time (or with provenance off). */
	void *ret = __builtin_return_address(0);
	uint32_t site;
	if (likely(__atomic_load_n(&rh_heap, __ATOMIC_ACQUIRE) && known_site(ret, &site))) {
		void *p = alloc_cached(size, site);
		if (likely(p))
			return p;
	}
	return alloc_api(size, 16, ret);
}

RH_SHM_API void *rh_shm_alloc_aligned(size_t alignment, size_t size)
{
	if (alignment == 0 || (alignment & (alignment - 1))) {
		errno = EINVAL;
		return NULL;
	}
	return alloc_api(size, alignment < 16 ? 16 : alignment, __builtin_return_address(0));
}

RH_SHM_API void *rh_shm_calloc(size_t count, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(count, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = alloc_api(total, 16, __builtin_return_address(0));
	if (p)
		memset(p, 0, total);
	return p;
}

static __attribute__((noinline)) void free_other(void *ptr);

RH_SHM_API void rh_shm_free(void *ptr)
{
	if (likely(heap_is_own(ptr))) {
		free_block(ptr);
		return;
	}
	free_other(ptr);
}

static void free_other(void *ptr)
{
	if (!ptr)
		return;
	switch (heap_owner(ptr)) {
	case OWNER_SELF:
		free_block(ptr);
		break;
	case OWNER_FOREIGN:
		free_foreign(heap_of(ptr), ptr);
		break;
	case OWNER_INHERITED:
		break; /* a private copy made at fork: it lives until exit or exec */
	case OWNER_NONE:
		rh_warn("rh_shm_free(%p): not a shared-memory block", ptr);
		break;
	}
}

RH_SHM_API void *rh_shm_realloc(void *ptr, size_t size)
{
	if (!ptr)
		return alloc_api(size, 16, __builtin_return_address(0));
	enum owner o = heap_owner(ptr);
	if (o == OWNER_NONE) {
		errno = EINVAL;
		return NULL;
	}
	if (o == OWNER_SELF) {
		uint32_t site = rh_heap ? caller_site(__builtin_return_address(0)) : 0;
		bool was = rh_tc.shared_only;
		rh_tc.shared_only = true;
		void *p = realloc_block(ptr, size, site);
		rh_tc.shared_only = was;
		if (!p)
			errno = ENOMEM;
		return p;
	}
	void *p = alloc_api(size, 16, __builtin_return_address(0));
	if (p) {
		size_t old = block_usable(ptr);
		if (!old && o == OWNER_INHERITED)
			old = heap_inherited_left(ptr);  /* as the shim's realloc */
		memcpy(p, ptr, old < size ? old : size);
		rh_shm_free(ptr);
	}
	return p;
}

RH_SHM_API size_t rh_shm_usable_size(const void *ptr)
{
	return ptr && heap_owner(ptr) != OWNER_NONE ? block_usable(ptr) : 0;
}

RH_SHM_API int rh_shm_owns(const void *ptr)
{
	enum owner o = heap_owner(ptr);
	return o == OWNER_SELF || o == OWNER_FOREIGN;
}

RH_SHM_API void rh_shm_trim(void)
{
	alloc_trim();
}

RH_SHM_API int rh_shm_ref(const void *ptr, struct rh_shm_ref *ref)
{
	if (!ptr || !ref) {
		errno = EINVAL;
		return -1;
	}
	return heap_ref(ptr, ref);
}

RH_SHM_API void *rh_shm_attach(const struct rh_shm_ref *ref)
{
	return heap_attach(ref);
}

RH_SHM_API const char *rh_shm_heap_name(void)
{
	return rh_heap ? rh_heap->name : NULL;
}

RH_SHM_API int rh_shm_enabled(void)
{
	return options_get()->enabled;
}

RH_SHM_API int rh_shm_stats(struct rh_shm_stats *st)
{
	if (!st) {
		errno = EINVAL;
		return -1;
	}
	memset(st, 0, sizeof(*st));
#define COPY(name, text) st->name = rh_stats.name;
	RH_SHM_STATS(COPY)
#undef COPY
	alloc_stats(st);
	return 0;
}

void stats_print(void)
{
	struct rh_shm_stats st;
	rh_shm_stats(&st);
	rh_warn("metrics for %s:", rh_heap ? rh_heap->name : "(no heap)");
#define PRINT(name, text) rh_warn("  %-40s %llu", text, (unsigned long long)st.name);
	RH_SHM_STATS(PRINT)
#undef PRINT
	rh_warn("  %-40s %llu", "heap size (bytes)", (unsigned long long)st.heap_size);
	rh_warn("  %-40s %llu", "heap used (bytes)", (unsigned long long)st.heap_used);
	rh_warn("  %-40s %llu", "heaps of other processes mapped", (unsigned long long)rh_stats.heaps_mapped);
}
