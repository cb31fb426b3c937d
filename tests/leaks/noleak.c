/* SPDX-License-Identifier: MIT */
/* No leak: everything allocated is freed, through malloc, calloc and realloc. */
#include <stdlib.h>
#include <string.h>

int main(void)
{
	char *v[100];
	for (int i = 0; i < 100; i++)
		v[i] = malloc((size_t)(i * 37 + 1));
	for (int i = 0; i < 100; i += 2)
		v[i] = realloc(v[i], (size_t)(i * 100 + 5));
	char *big = calloc(1, 1 << 20);
	strcpy(big, "big");
	free(big);
	for (int i = 0; i < 100; i++)
		free(v[i]);
	return 0;
}
