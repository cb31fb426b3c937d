/* SPDX-License-Identifier: MIT */
/* Realloc chains: one grown from 10 bytes to 100000 and dropped, one kept. */
#include <stdlib.h>
#include <string.h>

static char *kept;

static char *grow(char *p, size_t n)
{
	p = realloc(p, n);
	memset(p, 3, n);
	return p;
}

static void chain(void)
{
	char *p = malloc(10);
	p = grow(p, 100);
	p = grow(p, 1000);
	p = grow(p, 100000);
	p = NULL;
}

int main(void)
{
	chain();
	kept = grow(NULL, 5000);
	kept = grow(kept, 20);
	return 0;
}
