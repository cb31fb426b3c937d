/* SPDX-License-Identifier: MIT */
/* The second plugin of tests/progs/plugin_swap.c: plugin_a.c with a larger
 * frame and another name for its allocating function. */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void *b_alloc(size_t n)
{
	volatile char pad[3000];
	pad[0] = (char)n;
	void *p = malloc(n);
	if (p)
		memset(p, pad[0], n);
	return p;
}

void *plugin_make(size_t n)
{
	return b_alloc(n);
}
