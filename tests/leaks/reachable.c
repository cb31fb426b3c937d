/* SPDX-License-Identifier: MIT */
/* No leak: memory still reachable from a global (and through it). */
#include <stdlib.h>

struct table {
	char *rows[8];
};

static struct table *global;

static void build(void)
{
	global = malloc(sizeof(*global));
	for (int i = 0; i < 8; i++)
		global->rows[i] = malloc(200 + (size_t)i);
}

int main(void)
{
	build();
	return 0;
}
