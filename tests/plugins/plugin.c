/* SPDX-License-Identifier: MIT */
/* The plugins of tests/progs/plugin_swap.c, built several times (see the
 * Makefile): the function that allocates is named PLUGIN_FN, its frame has
 * PLUGIN_PAD bytes, so that loaded at the same address their code differs;
 * with PLUGIN_BSS, the plugin's range is that much larger. */
#include <stdlib.h>
#include <string.h>

#ifdef PLUGIN_BSS
static volatile char bss[PLUGIN_BSS];
#endif

__attribute__((noinline)) static void *PLUGIN_FN(size_t n)
{
	volatile char pad[PLUGIN_PAD];
	pad[0] = (char)n;
#ifdef PLUGIN_BSS
	bss[n % PLUGIN_BSS] = pad[0];
#endif
	void *p = malloc(n);
	if (p)
		memset(p, pad[0], n);
	return p;
}

void *plugin_make(size_t n)
{
	return PLUGIN_FN(n);
}
