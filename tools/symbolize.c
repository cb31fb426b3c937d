/* SPDX-License-Identifier: MIT */
/*
 * Offline symbolisation with libdwfl. Each journal module gets its own Dwfl,
 * made on first use: the file is opened by us (regular files only, so a
 * hostile path naming a FIFO cannot hang the tool), reported at its recorded
 * load base with dwfl_report_elf, and dropped when its build-id differs from
 * the recorded one (the library was upgraded since). Results are cached per
 * address.
 *
 * libdw and libstdc++ (for __cxa_demangle) are opened with dlopen on first
 * need, not linked: mapping libdw, libelf and their compression libraries
 * took a third of a plain listing's run time, and most runs never symbolise.
 */
#include "symbolize.h"

#include <dlfcn.h>
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
	char *demangled;        /* frame.function, when it is ours to free */
	UT_hash_handle hh;
};

struct symbolizer {
	struct sym_module *mods;
	size_t n, cap;
	struct sym_cached *cache;
};

/* --- libdw, loaded on first use ------------------------------------------ */

/* The libdwfl functions we call; typeof keeps the header's prototypes. */
#define DW_FUNCS(X) \
	X(dwfl_begin) X(dwfl_end) X(dwfl_report_begin) X(dwfl_report_elf) \
	X(dwfl_report_end) X(dwfl_module_build_id) X(dwfl_module_addrinfo) \
	X(dwfl_module_getsrc) X(dwfl_lineinfo) X(dwfl_build_id_find_elf) \
	X(dwfl_standard_find_debuginfo)

static struct {
#define X(f) typeof(&f) f;
	DW_FUNCS(X)
#undef X
} dw;

const char *symbolizer_libdw = "libdw.so.1";
const char *symbolizer_libstdcxx = "libstdc++.so.6";

static int dw_state; /* 0: not tried, 1: loaded, -1: unavailable */
static char *debuginfo_path;
static Dwfl_Callbacks callbacks = { .debuginfo_path = &debuginfo_path };

static int dw_load(void)
{
	if (dw_state)
		return dw_state > 0;
	dw_state = -1;
	void *h = dlopen(symbolizer_libdw, RTLD_NOW | RTLD_LOCAL);
	const char *missing = NULL;
	if (h) {
#define X(f) if (!missing && !(dw.f = (typeof(&f))dlsym(h, #f))) missing = #f;
		DW_FUNCS(X)
#undef X
	}
	if (!h || missing) {
		/* Said once: every frame is then printed as module+offset. */
		if (!h)
			fprintf(stderr, "%s: %s", program_invocation_short_name, dlerror());
		else
			fprintf(stderr, "%s: %s: no %s", program_invocation_short_name,
				symbolizer_libdw, missing);
		fputs("; call sites shown as module+offset\n", stderr);
		if (h)
			dlclose(h);
		memset(&dw, 0, sizeof(dw));
		return 0;
	}
	callbacks.find_elf = dw.dwfl_build_id_find_elf;
	callbacks.find_debuginfo = dw.dwfl_standard_find_debuginfo;
	dw_state = 1;
	return 1;
}

/* --- C++ names ------------------------------------------------------------ */

/* abi::__cxa_demangle of <cxxabi.h>, the Itanium C++ ABI's: returns a
 * malloc'd string, status 0 on success. */
static char *(*cxa_demangle)(const char *mangled, char *buf, size_t *len, int *status);
static int cxx_state; /* 0: not tried, 1: loaded, -1: unavailable */

char *symbolizer_demangle(const char *name)
{
	/* Itanium C++ ABI names; C names never start with _Z. */
	if (!name || name[0] != '_' || name[1] != 'Z')
		return NULL;
	if (!cxx_state) {
		cxx_state = -1;
		void *h = dlopen(symbolizer_libstdcxx, RTLD_NOW | RTLD_LOCAL);
		if (h && (cxa_demangle = (typeof(cxa_demangle))dlsym(h, "__cxa_demangle")))
			cxx_state = 1;
		else if (h)
			dlclose(h);
	}
	if (cxx_state < 0)
		return NULL;
	int status = 0;
	char *out = cxa_demangle(name, NULL, NULL, &status);
	if (status != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* --- Symbolizer ----------------------------------------------------------- */

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
		free(c->demangled);
		free(c);
	}
	for (size_t i = 0; i < s->n; i++) {
		if (s->mods[i].dwfl)
			dw.dwfl_end(s->mods[i].dwfl);
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
	if (!dw_load()) {
		close(fd);
		return;
	}
	m->dwfl = dw.dwfl_begin(&callbacks);
	if (!m->dwfl) {
		close(fd);
		return;
	}
	dw.dwfl_report_begin(m->dwfl);
	const char *name = strrchr(m->path, '/');
	/* add_p_vaddr: BASE is the load bias (dlpi_addr), as recorded. */
	m->mod = dw.dwfl_report_elf(m->dwfl, name ? name + 1 : m->path, m->path, fd, m->base, true);
	dw.dwfl_report_end(m->dwfl, NULL, NULL);
	if (!m->mod) {
		close(fd); /* consumed only on success */
		return;
	}
	if (m->build_id_len) {
		const unsigned char *bits;
		GElf_Addr vaddr;
		int len = dw.dwfl_module_build_id(m->mod, &bits, &vaddr);
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

/* Fills *F; returns the demangled function name when F->function is one
 * (the caller frees it), else NULL. */
static char *lookup(struct symbolizer *s, uint64_t addr, struct frame *f)
{
	memset(f, 0, sizeof(*f));
	f->addr = addr;
	struct sym_module *m = module_of(s, addr);
	if (!m)
		return NULL;
	f->module = m->path[0] ? m->path : NULL;
	f->offset = addr - m->base;
	if (m->state == MOD_UNTRIED)
		prepare(m);
	if (m->state != MOD_READY)
		return NULL;
	/* A return address points after the call: look up the call itself. */
	Dwarf_Addr pc = addr ? addr - 1 : addr;
	GElf_Off off;
	GElf_Sym sym;
	const char *name = dw.dwfl_module_addrinfo(m->mod, pc, &off, &sym, NULL, NULL, NULL);
	char *demangled = NULL;
	if (name && name[0]) {
		f->symbol = name;
		demangled = symbolizer_demangle(name);
		f->function = demangled ? demangled : name;
	}
	Dwfl_Line *line = dw.dwfl_module_getsrc(m->mod, pc);
	if (line) {
		int lineno = 0;
		const char *file = dw.dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
		if (file && file[0]) {
			const char *base = strrchr(file, '/');
			f->file = base ? base + 1 : file;
			f->line = lineno;
		}
	}
	return demangled;
}

void symbolizer_frame(struct symbolizer *s, uint64_t addr, struct frame *f)
{
	struct sym_cached *c;
	HASH_FIND(hh, s->cache, &addr, sizeof(addr), c);
	if (c) {
		*f = c->frame;
		return;
	}
	char *demangled = lookup(s, addr, f);
	c = malloc(sizeof(*c));
	if (!c) {
		/* Nowhere to keep the demangled name: the raw one lives on. */
		if (demangled)
			f->function = f->symbol;
		free(demangled);
		return;
	}
	c->addr = addr;
	c->frame = *f;
	c->demangled = demangled;
	HASH_ADD(hh, s->cache, addr, sizeof(c->addr), c);
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
