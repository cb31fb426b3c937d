/* SPDX-License-Identifier: MIT */
/* A block known only by a pointer into its middle is not lost (valgrind:
 * possibly lost; LeakSanitizer: reachable); a large block is. */
#include <stdlib.h>
#include <string.h>

static char *middle;

static void keep_middle(void)
{
	char *p = malloc(1000);
	middle = p + 500;
}

static void lose_large(void)
{
	char *p = malloc(3 << 20);
	memset(p, 4, 4096);
	p = NULL;
}

int main(void)
{
	keep_middle();
	lose_large();
	return 0;
}
