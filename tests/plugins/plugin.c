/* SPDX-License-Identifier: MIT */
/* The plugins of tests/progs/plugin_swap.c, built twice: plugin_a.so
 * (PLUGIN_FN a_alloc, a 1000-byte frame) and plugin_b.so (b_alloc, 3000
 * bytes), so that loaded at the same address their code differs. */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void *PLUGIN_FN(size_t n)
{
	volatile char pad[PLUGIN_PAD];
	pad[0] = (char)n;
	void *p = malloc(n);
	if (p)
		memset(p, pad[0], n);
	return p;
}

void *plugin_make(size_t n)
{
	return PLUGIN_FN(n);
}
