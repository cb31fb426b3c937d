/* SPDX-License-Identifier: MIT */
/* A dropped pointer: one block lost, one freed. */
#include <stdlib.h>
#include <string.h>

static char *make(size_t n)
{
	char *p = malloc(n);
	memset(p, 'x', n);
	return p;
}

static void drop(void)
{
	char *p = make(100);
	p[0] = 'y';
	p = NULL;  /* the only pointer is gone */
}

int main(void)
{
	drop();
	free(make(50));
	return 0;
}
