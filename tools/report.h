/* SPDX-License-Identifier: MIT */
/*
 * Call-site reports, printed the same way by shminfo --breakdown, shmclean -v
 * and the leak checker: one line with bytes, share and blocks, then one line
 * per frame, innermost first (valgrind's and LeakSanitizer's habit).
 */
#ifndef RH_TOOLS_REPORT_H
#define RH_TOOLS_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <redhawk/shm.h>

#include "fmt.h"
#include "symbolize.h"

#define REPORT_MAX_DEPTH 64

struct site_stat {
	uint32_t id;              /* 0: blocks without a recorded site */
	uint64_t bytes, blocks;   /* live, from the block walk */
	unsigned depth;           /* frames known from the journal; 0: none */
	uint64_t *frames;         /* depth of them, innermost first */
};

struct site_report {
	struct site_stat *sites;  /* sites with live blocks (id != 0), most bytes first */
	size_t n;
	uint64_t bytes, blocks;   /* all live blocks walked, site 0 included */
	uint64_t nosite_bytes, nosite_blocks;
};

/* Walks the heap's blocks and sums live bytes and blocks by site, then reads
 * the sites' stacks from the journal. A block naming a site the journal does
 * not hold counts as one without a site: what is kept grows with the
 * journal's sites, not with the values a damaged file's blocks hold. 0, or
 * -1 when the heap turned out bad (rh_heap_error says why; *r holds
 * nothing). */
int report_collect(struct rh_heap *heap, struct site_report *r);
/* The same for the live blocks KEEP returns non-zero for (the leak check:
 * lost, or still reachable). */
int report_collect_if(struct rh_heap *heap, int (*keep)(const struct rh_block_info *block, void *arg),
	void *arg, struct site_report *r);
void report_free(struct site_report *r);

/* Bytes and blocks of the sites after the first LIMIT, for "other sites":
 * WHOLE (the heap's used bytes) minus the listed sites, so that the listed
 * lines and this one add up to WHOLE. */
void report_rest(const struct site_report *r, size_t limit, uint64_t whole,
	uint64_t *bytes, uint64_t *blocks);

/* "24.0K (75.0%) in 3 blocks" and its frames, each line starting with INDENT
 * (frames with four more spaces). WHOLE 0: no share printed. */
void report_print_site(FILE *out, const struct fmt_ctx *ctx, struct symbolizer *sym,
	const struct site_stat *s, uint64_t whole, const char *indent);
/* The first LIMIT sites (all for SIZE_MAX), then, when ALWAYS_REST or it is
 * not empty, "8.0K (25.0%) in 2 blocks from other sites". */
void report_print(FILE *out, const struct fmt_ctx *ctx, struct symbolizer *sym,
	const struct site_report *r, size_t limit, uint64_t whole, const char *indent,
	int always_rest);
/* The same as JSON members "sites": [...], "other_sites": {...}. */
void report_json(FILE *out, struct symbolizer *sym, const struct site_report *r,
	size_t limit, uint64_t whole);

#endif
