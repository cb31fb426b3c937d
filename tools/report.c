/* SPDX-License-Identifier: MIT */
/*
 * Call-site reports: live blocks summed by site from one block walk (the
 * journal's own counters are not trusted for a heap whose creator may have
 * died part way through an update), stacks from the journal, printed as
 * valgrind and LeakSanitizer users expect.
 */
#include "report.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
/* A table that cannot grow: out of memory, reported (uthash's default is to
 * exit the process, before the heaps are cleaned up). */
static int hash_oom;
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(elt) (hash_oom = 1)
#include <uthash.h>

/* A site of the journal; index into the report once it has live blocks. */
#define NO_STAT SIZE_MAX
struct agg {
	uint32_t id;
	size_t index;
	UT_hash_handle hh;
};

struct collect {
	struct site_report *r;
	struct agg *by_id;
	size_t cap, known;
	uint64_t unknown; /* blocks naming a site not (yet) read */
	int nomem;
	int (*keep)(const struct rh_block_info *block, void *arg);
	void *keep_arg;
};

/* First walk of the journal: its sites, with no statistics yet. */
static int on_known(const struct rh_site_info *si, void *arg)
{
	struct collect *c = arg;
	struct agg *a;
	HASH_FIND(hh, c->by_id, &si->id, sizeof(si->id), a);
	if (a || si->id == 0)
		return 0;
	if (!(a = malloc(sizeof(*a)))) {
		c->nomem = 1;
		return 1;
	}
	a->id = si->id;
	a->index = NO_STAT;
	hash_oom = 0;
	HASH_ADD(hh, c->by_id, id, sizeof(a->id), a);
	if (hash_oom) {
		free(a);
		c->nomem = 1;
		return 1;
	}
	c->known++;
	return 0;
}

static struct site_stat *site_get(struct collect *c, struct agg *a)
{
	if (a->index != NO_STAT)
		return &c->r->sites[a->index];
	if (c->r->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct site_stat *v = realloc(c->r->sites, cap * sizeof(*v));
		if (!v)
			return NULL;
		c->r->sites = v;
		c->cap = cap;
	}
	a->index = c->r->n;
	struct site_stat *s = &c->r->sites[c->r->n++];
	memset(s, 0, sizeof(*s));
	s->id = a->id;
	return s;
}

static int on_block(const struct rh_block_info *b, void *arg)
{
	struct collect *c = arg;
	if (b->refcount == 0 || (c->keep && !c->keep(b, c->keep_arg)))
		return 0;
	c->r->bytes += b->size;
	c->r->blocks++;
	struct agg *a = NULL;
	if (b->site)
		HASH_FIND(hh, c->by_id, &b->site, sizeof(b->site), a);
	if (!a) {
		if (b->site)
			c->unknown++;
		c->r->nosite_bytes += b->size;
		c->r->nosite_blocks++;
		return 0;
	}
	struct site_stat *s = site_get(c, a);
	if (!s) {
		c->nomem = 1;
		return 1;
	}
	s->bytes += b->size;
	s->blocks++;
	return 0;
}

/* Second walk of the journal: the stacks of the sites with live blocks. */
static int on_site(const struct rh_site_info *si, void *arg)
{
	struct collect *c = arg;
	struct agg *a;
	HASH_FIND(hh, c->by_id, &si->id, sizeof(si->id), a);
	if (!a || a->index == NO_STAT)
		return 0; /* no live blocks: not reported */
	struct site_stat *s = &c->r->sites[a->index];
	unsigned depth = si->depth < REPORT_MAX_DEPTH ? si->depth : REPORT_MAX_DEPTH;
	if (!si->frames || !depth || s->frames)
		return 0;
	if (!(s->frames = malloc(depth * sizeof(*s->frames)))) {
		c->nomem = 1;
		return 1;
	}
	memcpy(s->frames, si->frames, depth * sizeof(*s->frames));
	s->depth = depth;
	return 0;
}

static int by_bytes(const void *a, const void *b)
{
	const struct site_stat *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	if (x->blocks != y->blocks)
		return x->blocks < y->blocks ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

int report_collect(struct rh_heap *heap, struct site_report *r)
{
	return report_collect_if(heap, NULL, NULL, r);
}

/* A live heap's process may record sites while its blocks are walked: when
 * blocks named sites the first reading did not hold and reading the journal
 * again finds more, the blocks are walked again (a few times at most; a
 * damaged file's made-up site values find nothing and cost one reading). */
#define REPORT_TRIES 3

int report_collect_if(struct rh_heap *heap, int (*keep)(const struct rh_block_info *block, void *arg),
	void *arg, struct site_report *r)
{
	memset(r, 0, sizeof(*r));
	struct collect c = { .r = r, .keep = keep, .keep_arg = arg };
	struct agg *a, *tmp;
	int rc = rh_heap_walk_sites(heap, on_known, &c);
	for (int tries = 0; rc == 0 && !c.nomem; tries++) {
		c.unknown = 0;
		rc = rh_heap_walk_blocks(heap, on_block, &c);
		if (rc != 0 || c.nomem || !c.unknown || tries + 1 == REPORT_TRIES)
			break;
		size_t known = c.known;
		rc = rh_heap_walk_sites(heap, on_known, &c);
		if (rc != 0 || c.nomem || c.known == known)
			break;
		/* New sites: count again from nothing. */
		HASH_ITER(hh, c.by_id, a, tmp)
			a->index = NO_STAT;
		r->n = 0;
		r->bytes = r->blocks = r->nosite_bytes = r->nosite_blocks = 0;
	}
	if (rc == 0 && !c.nomem)
		rc = rh_heap_walk_sites(heap, on_site, &c);
	HASH_ITER(hh, c.by_id, a, tmp) {
		HASH_DEL(c.by_id, a);
		free(a);
	}
	if (rc != 0 || c.nomem) {
		report_free(r);
		return -1;
	}
	if (r->n > 1)
		qsort(r->sites, r->n, sizeof(*r->sites), by_bytes);
	return 0;
}

void report_free(struct site_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->sites[i].frames);
	free(r->sites);
	memset(r, 0, sizeof(*r));
}

void report_rest(const struct site_report *r, size_t limit, uint64_t whole,
	uint64_t *bytes, uint64_t *blocks)
{
	uint64_t lb = 0, lk = 0;
	for (size_t i = 0; i < r->n && i < limit; i++) {
		lb += r->sites[i].bytes;
		lk += r->sites[i].blocks;
	}
	/* Live heaps change between reading the counters and walking: never
	 * print a negative remainder. */
	*bytes = whole > lb ? whole - lb : 0;
	*blocks = r->blocks > lk ? r->blocks - lk : 0;
}

static void amount(FILE *out, const struct fmt_ctx *ctx, uint64_t bytes, uint64_t blocks,
	uint64_t whole)
{
	char a[FMT_SIZE_LEN], b[FMT_SIZE_LEN];
	fputs(fmt_size(a, bytes, ctx->size), out);
	if (whole)
		fprintf(out, " (%s)", fmt_percent(b, bytes, whole));
	fprintf(out, " in %" PRIu64 " block%s", blocks, blocks == 1 ? "" : "s");
}

void report_print_site(FILE *out, const struct fmt_ctx *ctx, struct symbolizer *sym,
	const struct site_stat *s, uint64_t whole, const char *indent)
{
	fputs(indent, out);
	amount(out, ctx, s->bytes, s->blocks, whole);
	putc('\n', out);
	if (s->depth == 0)
		fprintf(out, "%s    (no stack recorded for site %" PRIu32 ")\n", indent, s->id);
	symbolizer_site(sym, s->id);
	for (unsigned i = 0; i < s->depth; i++) {
		struct frame f;
		symbolizer_frame(sym, s->frames[i], &f);
		fprintf(out, "%s    ", indent);
		symbolizer_print(out, &f);
		putc('\n', out);
	}
}

void report_print(FILE *out, const struct fmt_ctx *ctx, struct symbolizer *sym,
	const struct site_report *r, size_t limit, uint64_t whole, const char *indent,
	int always_rest)
{
	for (size_t i = 0; i < r->n && i < limit; i++)
		report_print_site(out, ctx, sym, &r->sites[i], whole, indent);
	uint64_t bytes, blocks;
	report_rest(r, limit, whole, &bytes, &blocks);
	if (always_rest || bytes || blocks) {
		fputs(indent, out);
		amount(out, ctx, bytes, blocks, whole);
		fputs(" from other sites\n", out);
	}
}

static void json_frame(FILE *out, const struct frame *f)
{
	fprintf(out, "{\"address\": \"0x%" PRIx64 "\", \"function\": ", f->addr);
	if (f->function)
		fmt_json_string(out, f->function);
	else
		fputs("null", out);
	fputs(", \"file\": ", out);
	if (f->file) {
		fmt_json_string(out, f->file);
		fprintf(out, ", \"line\": %d", f->line);
	} else {
		fputs("null, \"line\": null", out);
	}
	fputs(", \"module\": ", out);
	if (f->module) {
		fmt_json_string(out, f->module);
		fprintf(out, ", \"offset\": \"0x%" PRIx64 "\"}", f->offset);
	} else {
		fputs("null, \"offset\": null}", out);
	}
}

static double share(uint64_t part, uint64_t whole)
{
	return whole ? (double)part * 100.0 / (double)whole : 0.0;
}

void report_json(FILE *out, struct symbolizer *sym, const struct site_report *r,
	size_t limit, uint64_t whole)
{
	fputs("\"sites\": [", out);
	for (size_t i = 0; i < r->n && i < limit; i++) {
		const struct site_stat *s = &r->sites[i];
		fprintf(out, "%s{\"id\": %" PRIu32 ", \"bytes\": %" PRIu64 ", \"percent\": %.1f, "
			"\"blocks\": %" PRIu64 ", \"frames\": [", i ? ", " : "", s->id, s->bytes,
			share(s->bytes, whole), s->blocks);
		symbolizer_site(sym, s->id);
		for (unsigned k = 0; k < s->depth; k++) {
			struct frame f;
			symbolizer_frame(sym, s->frames[k], &f);
			if (k)
				fputs(", ", out);
			json_frame(out, &f);
		}
		fputs("]}", out);
	}
	uint64_t bytes, blocks;
	report_rest(r, limit, whole, &bytes, &blocks);
	fprintf(out, "], \"other_sites\": {\"bytes\": %" PRIu64 ", \"percent\": %.1f, "
		"\"blocks\": %" PRIu64 "}", bytes, share(bytes, whole), blocks);
}
