/* SPDX-License-Identifier: MIT */
/* The plugins of tests/progs/plugin_swap.c, built several times (see the
 * Makefile): the function that allocates is named PLUGIN_FN, its frame has
 * PLUGIN_PAD bytes, so that loaded at the same address their code differs
 * only there, and the return address of its call is the same; with
 * PLUGIN_BSS, the plugin's range is that much larger. */
#include <stdlib.h>
#include <string.h>

#ifdef PLUGIN_BSS
static volatile char bss[PLUGIN_BSS];
#endif

__attribute__((noipa)) static void *PLUGIN_FN(size_t n, void *(*alloc)(size_t))
{
	volatile char pad[PLUGIN_PAD];
	pad[0] = (char)n;
#ifdef PLUGIN_BSS
	bss[n % PLUGIN_BSS] = pad[0];
#endif
	void *p = alloc(n);
	if (p)
		memset(p, pad[0], n);
	return p;
}

void *plugin_make(size_t n)
{
	return PLUGIN_FN(n, malloc);
}

/* The same frame, allocating with fn instead: a test walks the stack there. */
void *plugin_make_with(size_t n, void *(*fn)(size_t))
{
	return PLUGIN_FN(n, fn);
}
