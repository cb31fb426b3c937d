/* SPDX-License-Identifier: MIT */
/*
 * Return addresses recorded in a heap's journal turned into "function
 * (file:line)" after the process is gone: the journal's module table (path,
 * load base, build-id) is reported to elfutils' libdwfl one module at a time,
 * offline, and a file is trusted only when its build-id matches the record.
 * One symbolizer serves a run of many heaps (symbolizer_clear between them):
 * the files it parsed and the frames it looked up are shared by every heap
 * that loaded the same file, at whatever base.
 */
#ifndef RH_TOOLS_SYMBOLIZE_H
#define RH_TOOLS_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <redhawk/shm.h>

struct symbolizer;

struct frame {
	uint64_t addr;
	const char *function;   /* NULL when unknown; C++ names demangled */
	const char *symbol;     /* the symbol's own (linkage) name, NULL when unknown */
	const char *file;       /* NULL when no line information */
	int line;
	const char *module;     /* the module's recorded path, NULL when none covers addr */
	uint64_t offset;        /* addr - module load base */
};

struct symbolizer *symbolizer_new(void);
void symbolizer_free(struct symbolizer *s);

/* Forgets the module table (of the previous heap); parsed files and looked-up
 * frames are kept for the next. */
void symbolizer_clear(struct symbolizer *s);
/* Adds the modules of a heap (rh_heap_walk_modules). 0, or -1 when the walk
 * failed part way (modules read so far are kept). */
int symbolizer_load(struct symbolizer *s, struct rh_heap *heap);
/* Adds one module; the strings are copied. 0 or -1 (ENOMEM). */
int symbolizer_add(struct symbolizer *s, const struct rh_module_info *m);

/* Fills *f for a return address (the call instruction is looked up, one byte
 * before). Strings stay valid until symbolizer_free. */
void symbolizer_frame(struct symbolizer *s, uint64_t addr, struct frame *f);

/* The site whose frames follow (its id; 0: none known): where dlclose let
 * other code load at the same addresses, a frame belongs to the module
 * last recorded there before the site was. */
void symbolizer_site(struct symbolizer *s, uint32_t id);

/* A C++ linkage name (_Z...) demangled by libstdc++'s __cxa_demangle,
 * loaded on first use; the caller frees it. NULL when NAME is no such name or
 * libstdc++ is not there. */
char *symbolizer_demangle(const char *name);

/* The libraries opened on first use (tests point them elsewhere). libdw
 * missing: said once on stderr, frames then print as module+0xOFF. */
extern const char *symbolizer_libdw;
extern const char *symbolizer_libstdcxx;

/* Writes a frame as "function (file:line)", "function (module+0xOFF)",
 * "module+0xOFF" or "0xADDR", the richest that is known. */
void symbolizer_print(FILE *out, const struct frame *f);

#endif
