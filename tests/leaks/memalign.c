/* SPDX-License-Identifier: MIT */
/* Aligned blocks: posix_memalign, aligned_alloc and memalign, lost and kept. */
#include <malloc.h>
#include <stdlib.h>

static void *kept;

static void aligned_leaks(void)
{
	void *a = NULL;
	if (posix_memalign(&a, 64, 200) != 0)
		abort();
	void *b = aligned_alloc(4096, 8192);
	void *c = memalign(256, 100);
	a = b = c = NULL;
}

int main(void)
{
	aligned_leaks();
	kept = memalign(128, 300);
	return 0;
}
