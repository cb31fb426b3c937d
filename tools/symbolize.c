/* SPDX-License-Identifier: MIT */
/*
 * Offline symbolisation with libdwfl. Each journal module gets its own Dwfl,
 * made on first use: the file is opened by us (regular files only, so a
 * hostile path naming a FIFO cannot hang the tool), reported at its recorded
 * load base with dwfl_report_elf, and dropped when its build-id differs from
 * the recorded one (the library was upgraded since). Results are cached per
 * address.
 */
#include "symbolize.h"

#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uthash.h>

enum { MOD_UNTRIED, MOD_READY, MOD_UNUSABLE };

struct sym_module {
	uint64_t base, start, end;
	char *path;
	uint8_t build_id[40];
	size_t build_id_len;
	int state;
	Dwfl *dwfl;
	Dwfl_Module *mod;
};

struct sym_cached {
	uint64_t addr;
	struct frame frame;
	UT_hash_handle hh;
};

struct symbolizer {
	struct sym_module *mods;
	size_t n, cap;
	struct sym_cached *cache;
};

static char *debuginfo_path;
static const Dwfl_Callbacks callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.debuginfo_path = &debuginfo_path,
};

struct symbolizer *symbolizer_new(void)
{
	/* A hostile journal's build-ids are not sent to debuginfod servers, and
	 * a listing never waits on the network. */
	unsetenv("DEBUGINFOD_URLS");
	return calloc(1, sizeof(struct symbolizer));
}

void symbolizer_free(struct symbolizer *s)
{
	if (!s)
		return;
	struct sym_cached *c, *tmp;
	HASH_ITER(hh, s->cache, c, tmp) {
		HASH_DEL(s->cache, c);
		free(c);
	}
	for (size_t i = 0; i < s->n; i++) {
		if (s->mods[i].dwfl)
			dwfl_end(s->mods[i].dwfl);
		free(s->mods[i].path);
	}
	free(s->mods);
	free(s);
}

int symbolizer_add(struct symbolizer *s, const struct rh_module_info *m)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct sym_module *v = realloc(s->mods, cap * sizeof(*v));
		if (!v)
			return -1;
		s->mods = v;
		s->cap = cap;
	}
	struct sym_module *mod = &s->mods[s->n];
	memset(mod, 0, sizeof(*mod));
	mod->path = strdup(m->path ? m->path : "");
	if (!mod->path)
		return -1;
	mod->base = m->base;
	mod->start = m->start;
	mod->end = m->end;
	mod->build_id_len = m->build_id_len <= sizeof(mod->build_id) ? m->build_id_len : 0;
	if (mod->build_id_len)
		memcpy(mod->build_id, m->build_id, mod->build_id_len);
	s->n++;
	return 0;
}

static int add_cb(const struct rh_module_info *m, void *arg)
{
	return symbolizer_add(arg, m) ? 1 : 0;
}

int symbolizer_load(struct symbolizer *s, struct rh_heap *heap)
{
	return rh_heap_walk_modules(heap, add_cb, s) == 0 ? 0 : -1;
}

static void prepare(struct sym_module *m)
{
	m->state = MOD_UNUSABLE;
	if (!m->path[0])
		return;
	int fd = open(m->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return;
	}
	m->dwfl = dwfl_begin(&callbacks);
	if (!m->dwfl) {
		close(fd);
		return;
	}
	dwfl_report_begin(m->dwfl);
	const char *name = strrchr(m->path, '/');
	/* add_p_vaddr: BASE is the load bias (dlpi_addr), as recorded. */
	m->mod = dwfl_report_elf(m->dwfl, name ? name + 1 : m->path, m->path, fd, m->base, true);
	dwfl_report_end(m->dwfl, NULL, NULL);
	if (!m->mod) {
		close(fd); /* consumed only on success */
		return;
	}
	if (m->build_id_len) {
		const unsigned char *bits;
		GElf_Addr vaddr;
		int len = dwfl_module_build_id(m->mod, &bits, &vaddr);
		if (len != (int)m->build_id_len || memcmp(bits, m->build_id, m->build_id_len) != 0)
			return; /* another build of the file: its symbols would lie */
	}
	m->state = MOD_READY;
}

static struct sym_module *module_of(struct symbolizer *s, uint64_t addr)
{
	/* The latest record wins: a range may be reused after a dlclose. */
	for (size_t i = s->n; i-- > 0;)
		if (addr >= s->mods[i].start && addr < s->mods[i].end)
			return &s->mods[i];
	return NULL;
}

static void lookup(struct symbolizer *s, uint64_t addr, struct frame *f)
{
	memset(f, 0, sizeof(*f));
	f->addr = addr;
	struct sym_module *m = module_of(s, addr);
	if (!m)
		return;
	f->module = m->path[0] ? m->path : NULL;
	f->offset = addr - m->base;
	if (m->state == MOD_UNTRIED)
		prepare(m);
	if (m->state != MOD_READY)
		return;
	/* A return address points after the call: look up the call itself. */
	Dwarf_Addr pc = addr ? addr - 1 : addr;
	GElf_Off off;
	GElf_Sym sym;
	const char *name = dwfl_module_addrinfo(m->mod, pc, &off, &sym, NULL, NULL, NULL);
	if (name && name[0])
		f->function = name;
	Dwfl_Line *line = dwfl_module_getsrc(m->mod, pc);
	if (line) {
		int lineno = 0;
		const char *file = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
		if (file && file[0]) {
			const char *base = strrchr(file, '/');
			f->file = base ? base + 1 : file;
			f->line = lineno;
		}
	}
}

void symbolizer_frame(struct symbolizer *s, uint64_t addr, struct frame *f)
{
	struct sym_cached *c;
	HASH_FIND(hh, s->cache, &addr, sizeof(addr), c);
	if (c) {
		*f = c->frame;
		return;
	}
	lookup(s, addr, f);
	c = malloc(sizeof(*c));
	if (c) {
		c->addr = addr;
		c->frame = *f;
		HASH_ADD(hh, s->cache, addr, sizeof(c->addr), c);
	}
}

void symbolizer_print(FILE *out, const struct frame *f)
{
	if (f->function && f->file)
		fprintf(out, "%s (%s:%d)", f->function, f->file, f->line);
	else if (f->function && f->module)
		fprintf(out, "%s (%s+0x%" PRIx64 ")", f->function, f->module, f->offset);
	else if (f->module)
		fprintf(out, "%s+0x%" PRIx64, f->module, f->offset);
	else
		fprintf(out, "0x%" PRIx64, f->addr);
}
