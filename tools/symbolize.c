/* SPDX-License-Identifier: MIT */
/*
 * Offline symbolisation with libdwfl. One symbolizer serves a whole run: its
 * module table is the current heap's, but the files it parses are kept, one
 * Dwfl each, keyed by the file's identity (device, inode, size, mtime) and
 * recorded build-id, and so are the frames looked up in them. A file is
 * opened by us on the first frame of a heap that needs it and dropped when
 * its build-id differs from the recorded one (the library was upgraded
 * since). A shared object is reported at bias 0 and looked up at addresses
 * relative to its load base, so heaps that load it at different bases share
 * its debug information and frames; an executable that is not
 * position-independent (ET_EXEC) is loaded where its program headers say,
 * and looked up at the recorded addresses whatever base a record gives.
 *
 * The journal that names the files may be hostile, and the tools run as root
 * over folders anyone can write. So a file is parsed only when it is a
 * regular file, an ELF executable or shared object, not writable by others,
 * and root's (not writable by its group either) or ours: libelf maps it, and
 * a file its owner truncated under the mapping would end the tool with
 * SIGBUS. A heap gets at most PARSE_PER_HEAP files parsed, of at most
 * PARSE_BYTES_PER_HEAP bytes in all, and the run keeps at most FILES_KEPT of
 * at most KEPT_BYTES between heaps, so that neither many spellings of a path,
 * nor build-ids made up, nor many load bases, nor the largest files of the
 * system make the tool's memory or descriptors grow without end. Frames of any other file print as
 * module+offset.
 *
 * libdw and libstdc++ (for __cxa_demangle) are opened with dlopen on first
 * need, not linked: mapping libdw, libelf and their compression libraries
 * took a third of a plain listing's run time, and most runs never symbolise.
 */
#include "symbolize.h"
#include "fmt.h"

#include <dlfcn.h>
#include <elf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* A table that cannot grow leaves the entry out (uthash's default is to
 * exit the process, before the heaps are cleaned up). */
static int hash_oom;
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(elt) (hash_oom = 1)
#include <uthash.h>

/* A file as parsed: one per file identity and recorded build-id, so the
 * heaps of one run that load the same library share its Dwfl and its
 * looked-up frames, whatever its path's spelling and load base in each. */
struct sym_key {
	uint64_t dev, ino, size;
	int64_t mtime_sec, mtime_nsec;
	uint64_t build_id_len;
	uint8_t build_id[40];
};

struct sym_cached {
	uint64_t pc;            /* as looked up in the file's Dwfl */
	const char *function, *symbol, *file;
	int line;
	char *demangled;        /* function, when it is ours to free */
	UT_hash_handle hh;
};

struct sym_file {
	struct sym_key key;
	int relative;           /* a shared object, reported at bias 0 */
	int ready;              /* parsed, and its build-id is the recorded one */
	Dwfl *dwfl;
	Dwfl_Module *mod;
	struct sym_cached *frames;
	UT_hash_handle hh;
};

/* A recorded path, kept until symbolizer_free: frames point to it. */
struct sym_path {
	UT_hash_handle hh;
	char path[];
};

/* A module of the current heap. */
struct sym_module {
	uint64_t base, start, end;
	uint64_t pos;           /* the record's offset in the heap file */
	const char *path;       /* interned; "" when none was recorded */
	uint8_t build_id[40];
	size_t build_id_len;
	int resolved;
	struct sym_file *file;  /* NULL: no usable file */
};

struct symbolizer {
	struct sym_module *mods;
	size_t n, cap;
	/* mods by start address, with the greatest end so far along that
	 * order: a lookup walks back only while a range can still hold it. */
	size_t *order;
	uint64_t *max_end;
	size_t indexed, order_cap;  /* mods indexed; 0 with n: not indexed */
	uint64_t steps;         /* lookup steps spent on this heap */
	uint64_t site_pos;      /* the current site's record offset; 0: none */
	struct sym_path *paths;
	struct sym_file *files;
	unsigned nfiles;        /* in files */
	uint64_t kept_bytes;    /* their sizes */
	unsigned parsed;        /* files parsed for the current heap */
	uint64_t parsed_bytes;  /* their sizes */
};

#define PARSE_PER_HEAP 256
#define PARSE_BYTES_PER_HEAP ((uint64_t)4 << 30)
#define FILES_KEPT 256
#define KEPT_BYTES ((uint64_t)4 << 30)

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

static void files_free(struct symbolizer *s)
{
	struct sym_file *f, *ftmp;
	HASH_ITER(hh, s->files, f, ftmp) {
		struct sym_cached *c, *tmp;
		HASH_ITER(hh, f->frames, c, tmp) {
			HASH_DEL(f->frames, c);
			free(c->demangled);
			free(c);
		}
		HASH_DEL(s->files, f);
		if (f->dwfl)
			dw.dwfl_end(f->dwfl);
		free(f);
	}
	s->nfiles = 0;
	s->kept_bytes = 0;
}

void symbolizer_free(struct symbolizer *s)
{
	if (!s)
		return;
	files_free(s);
	struct sym_path *p, *ptmp;
	HASH_ITER(hh, s->paths, p, ptmp) {
		HASH_DEL(s->paths, p);
		free(p);
	}
	free(s->mods);
	free(s->order);
	free(s->max_end);
	free(s);
}

void symbolizer_clear(struct symbolizer *s)
{
	s->n = 0;
	s->indexed = 0;
	s->steps = 0;
	s->site_pos = 0;
	s->parsed = 0;
	s->parsed_bytes = 0;
	/* The files of the heaps before: kept for the next, up to a bound. */
	if (s->nfiles > FILES_KEPT || s->kept_bytes > KEPT_BYTES)
		files_free(s);
}

static const char *intern(struct symbolizer *s, const char *path)
{
	struct sym_path *p;
	size_t len = strlen(path);
	HASH_FIND(hh, s->paths, path, len, p);
	if (p)
		return p->path;
	p = malloc(sizeof(*p) + len + 1);
	if (!p)
		return NULL;
	memcpy(p->path, path, len + 1);
	hash_oom = 0;
	HASH_ADD_KEYPTR(hh, s->paths, p->path, len, p);
	if (hash_oom) {
		free(p);
		return NULL;
	}
	return p->path;
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
	mod->path = intern(s, m->path ? m->path : "");
	if (!mod->path)
		return -1;
	mod->base = m->base;
	mod->start = m->start;
	mod->end = m->end;
	mod->pos = m->pos;
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

/* 1 for an ELF shared object (ET_DYN: libdwfl then takes the load base as
 * its bias, so its lookups depend on addr - base only), 0 for an executable
 * (ET_EXEC), -1 for anything else, which is not handed to libdwfl. */
static int elf_type(int fd)
{
	unsigned char h[EI_NIDENT + 2];
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, ELFMAG, SELFMAG) != 0)
		return -1;
	unsigned type;
	if (h[EI_DATA] == ELFDATA2LSB)
		type = h[EI_NIDENT] | h[EI_NIDENT + 1] << 8;
	else if (h[EI_DATA] == ELFDATA2MSB)
		type = h[EI_NIDENT] << 8 | h[EI_NIDENT + 1];
	else
		return -1;
	if (h[EI_CLASS] != ELFCLASS32 && h[EI_CLASS] != ELFCLASS64)
		return -1;
	return type == ET_DYN ? 1 : type == ET_EXEC ? 0 : -1;
}

/* A file we may parse (see the top of this file): regular, large enough to
 * be an ELF file (files of /proc and /sys mostly say 0 bytes, and reading
 * some of them acts), writable by no others, and owned by root and not
 * writable by its group, or owned by us (a user's own build, made with
 * umask 002, is group-writable; as root, only root's files). */
static int trusted(const struct stat *st)
{
	if (!S_ISREG(st->st_mode) || st->st_size < (off_t)sizeof(Elf32_Ehdr) || (st->st_mode & S_IWOTH))
		return 0;
	if (st->st_uid == 0)
		return !(st->st_mode & S_IWGRP);
	return st->st_uid == geteuid();
}

/* Parses the file open on FD (consumed) into F, named PATH, at bias 0;
 * dropped when its build-id differs from the recorded one (the library was
 * upgraded since). */
static void prepare(struct sym_file *f, const char *path, int fd)
{
	f->dwfl = dw.dwfl_begin(&callbacks);
	if (!f->dwfl) {
		close(fd);
		return;
	}
	dw.dwfl_report_begin(f->dwfl);
	const char *name = strrchr(path, '/');
	/* add_p_vaddr: BASE is the load bias (dlpi_addr), as recorded. */
	f->mod = dw.dwfl_report_elf(f->dwfl, name ? name + 1 : path, path, fd, 0, true);
	dw.dwfl_report_end(f->dwfl, NULL, NULL);
	if (!f->mod)
		close(fd); /* consumed only on success */
	if (f->mod && f->key.build_id_len) {
		const unsigned char *bits;
		GElf_Addr vaddr;
		int len = dw.dwfl_module_build_id(f->mod, &bits, &vaddr);
		if (len != (int)f->key.build_id_len || memcmp(bits, f->key.build_id, f->key.build_id_len) != 0)
			f->mod = NULL; /* another build of the file: its symbols would lie */
	}
	if (!f->mod) {
		/* Kept as the key alone: the file is not parsed again. */
		dw.dwfl_end(f->dwfl);
		f->dwfl = NULL;
		return;
	}
	f->ready = 1;
}

/* Finds or makes the parsed file of M, on its first frame in this heap. */
static void resolve(struct symbolizer *s, struct sym_module *m)
{
	m->resolved = 1;
	if (!m->path[0])
		return;
	/* The journal names the file: it is looked at before it is opened,
	 * since opening a device (a tty, a watchdog) acts on it. */
	int at = open(m->path, O_PATH | O_CLOEXEC);
	if (at < 0)
		return;
	struct stat st, now;
	if (fstat(at, &st) != 0 || !trusted(&st) || !dw_load()) {
		close(at);
		return;
	}
	struct sym_key key;
	memset(&key, 0, sizeof(key)); /* padding is hashed */
	key.dev = st.st_dev;
	key.ino = st.st_ino;
	key.size = (uint64_t)st.st_size;
	key.mtime_sec = st.st_mtim.tv_sec;
	key.mtime_nsec = st.st_mtim.tv_nsec;
	key.build_id_len = m->build_id_len;
	memcpy(key.build_id, m->build_id, m->build_id_len);
	struct sym_file *f;
	HASH_FIND(hh, s->files, &key, sizeof(key), f);
	if (f) {
		close(at);
		if (f->ready)
			m->file = f;
		return;
	}
	/* The heap's first file is parsed whatever its size (a debug build
	 * of gigabytes). */
	if (s->parsed >= PARSE_PER_HEAP || (s->parsed && s->parsed_bytes + key.size > PARSE_BYTES_PER_HEAP)) {
		close(at);
		return;
	}
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", at);
	int fd = open(self, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	/* Without /proc, by its name again (the same file, checked below; a
	 * device put there in between would be opened, then refused). */
	if (fd < 0 && errno == ENOENT)
		fd = open(m->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	close(at);
	if (fd < 0)
		return;
	int type;
	if (fstat(fd, &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino || !trusted(&now) ||
	    (type = elf_type(fd)) < 0 || !(f = calloc(1, sizeof(*f)))) {
		close(fd);
		return;
	}
	s->parsed++;
	s->parsed_bytes += key.size;
	f->relative = type;
	f->key = key;
	prepare(f, m->path, fd);
	hash_oom = 0;
	HASH_ADD(hh, s->files, key, sizeof(f->key), f);
	if (hash_oom) {
		if (f->dwfl)
			dw.dwfl_end(f->dwfl);
		free(f);
		return;
	}
	s->nfiles++;
	s->kept_bytes += key.size;
	if (f->ready)
		m->file = f;
}

void symbolizer_site(struct symbolizer *s, uint32_t id)
{
	s->site_pos = (uint64_t)id * 8;
}

/* A heap's module records may overlap (a range reused after a dlclose),
 * or be made hostile: a lookup spends at most this many steps per heap in
 * all, past which frames print as bare addresses. */
#define LOOKUP_STEPS (64ull << 20)

static int by_start(const void *a, const void *b, void *mods)
{
	const struct sym_module *x = (const struct sym_module *)mods + *(const size_t *)a;
	const struct sym_module *y = (const struct sym_module *)mods + *(const size_t *)b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

static int index_mods(struct symbolizer *s)
{
	if (s->n > s->order_cap) {
		size_t cap = s->n;
		size_t *o = realloc(s->order, cap * sizeof(*o));
		if (!o)
			return -1;
		s->order = o;
		uint64_t *e = realloc(s->max_end, cap * sizeof(*e));
		if (!e)
			return -1;
		s->max_end = e;
		s->order_cap = cap;
	}
	for (size_t i = 0; i < s->n; i++)
		s->order[i] = i;
	qsort_r(s->order, s->n, sizeof(*s->order), by_start, s->mods);
	uint64_t end = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (s->mods[s->order[i]].end > end)
			end = s->mods[s->order[i]].end;
		s->max_end[i] = end;
	}
	s->indexed = s->n;
	return 0;
}

static struct sym_module *module_of(struct symbolizer *s, uint64_t addr)
{
	/* A range may be reused after a dlclose: the latest record made before
	 * the site's wins, else the latest (records come in file order). */
	if (s->indexed != s->n && index_mods(s) != 0)
		return NULL;
	size_t lo = 0, hi = s->n; /* the first module starting past addr */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->mods[s->order[mid]].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t before = SIZE_MAX, latest = SIZE_MAX;
	for (size_t j = lo; j-- > 0 && s->max_end[j] > addr;) {
		if (++s->steps > LOOKUP_STEPS)
			return NULL;
		size_t i = s->order[j];
		const struct sym_module *m = &s->mods[i];
		if (addr >= m->end)
			continue;
		if ((latest == SIZE_MAX || i > latest))
			latest = i;
		if ((!s->site_pos || m->pos < s->site_pos) && (before == SIZE_MAX || i > before))
			before = i;
	}
	size_t pick = before != SIZE_MAX ? before : latest;
	return pick != SIZE_MAX ? &s->mods[pick] : NULL;
}

/* Looks PC up in F into *C; C->demangled is then set when C->function is a
 * demangled name (the caller frees it). */
static void lookup(struct sym_file *f, uint64_t pc, struct sym_cached *c)
{
	memset(c, 0, sizeof(*c));
	c->pc = pc;
	GElf_Off off;
	GElf_Sym sym;
	const char *name = dw.dwfl_module_addrinfo(f->mod, pc, &off, &sym, NULL, NULL, NULL);
	if (name && name[0]) {
		c->symbol = name;
		c->demangled = symbolizer_demangle(name);
		c->function = c->demangled ? c->demangled : name;
	}
	Dwfl_Line *line = dw.dwfl_module_getsrc(f->mod, pc);
	if (line) {
		int lineno = 0;
		const char *file = dw.dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
		if (file && file[0]) {
			const char *base = strrchr(file, '/');
			c->file = base ? base + 1 : file;
			c->line = lineno;
		}
	}
}

void symbolizer_frame(struct symbolizer *s, uint64_t addr, struct frame *f)
{
	memset(f, 0, sizeof(*f));
	f->addr = addr;
	struct sym_module *m = module_of(s, addr);
	if (!m)
		return;
	f->module = m->path[0] ? m->path : NULL;
	f->offset = addr - m->base;
	if (!m->resolved)
		resolve(s, m);
	struct sym_file *file = m->file;
	if (!file)
		return;
	/* A return address points after the call: look up the call itself,
	 * relative to the load base when the file was reported at bias 0. */
	uint64_t pc = (addr ? addr - 1 : addr) - (file->relative ? m->base : 0);
	struct sym_cached *c, tmp;
	HASH_FIND(hh, file->frames, &pc, sizeof(pc), c);
	if (!c) {
		lookup(file, pc, &tmp);
		c = malloc(sizeof(*c));
		if (!c) {
			/* Nowhere to keep the demangled name: the raw one lives on. */
			if (tmp.demangled)
				tmp.function = tmp.symbol;
			free(tmp.demangled);
			tmp.demangled = NULL;
			c = &tmp;
		} else {
			*c = tmp;
			hash_oom = 0;
			HASH_ADD(hh, file->frames, pc, sizeof(c->pc), c);
			if (hash_oom) { /* as above, the raw name */
				free(c);
				if (tmp.demangled)
					tmp.function = tmp.symbol;
				free(tmp.demangled);
				tmp.demangled = NULL;
				c = &tmp;
			}
		}
	}
	f->function = c->function;
	f->symbol = c->symbol;
	f->file = c->file;
	f->line = c->line;
}

/* Every name here comes from the journal or from a file it names: control
 * characters are escaped, as in file names. */
void symbolizer_print(FILE *out, const struct frame *f)
{
	if (f->function && (f->file || f->module)) {
		fmt_name(out, f->function);
		fputs(" (", out);
		fmt_name(out, f->file ? f->file : f->module);
		if (f->file)
			fprintf(out, ":%d)", f->line);
		else
			fprintf(out, "+0x%" PRIx64 ")", f->offset);
	} else if (f->module) {
		fmt_name(out, f->module);
		fprintf(out, "+0x%" PRIx64, f->offset);
	} else {
		fprintf(out, "0x%" PRIx64, f->addr);
	}
}
