/* SPDX-License-Identifier: MIT */
/* A plugin for tests/progs/plugin_swap.c: plugin_b.c has the same layout
 * with a larger frame, so that loaded at the same address its code differs
 * where this one's was. */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void *a_alloc(size_t n)
{
	volatile char pad[1000];
	pad[0] = (char)n;
	void *p = malloc(n);
	if (p)
		memset(p, pad[0], n);
	return p;
}

void *plugin_make(size_t n)
{
	return a_alloc(n);
}
