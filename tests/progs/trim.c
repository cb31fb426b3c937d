/* SPDX-License-Identifier: MIT */
/*
 * malloc_trim under the shim: 8 MiB allocated, touched and freed (less than
 * the shim keeps for reuse, so nothing is returned before), then
 * malloc_trim(0); the metrics must show pages returned to the filesystem.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	void *p[8];
	for (int i = 0; i < 8; i++) {
		p[i] = malloc(1 << 20);
		if (!p[i])
			return 1;
		memset(p[i], 1, 1 << 20);
	}
	for (int i = 0; i < 8; i++)
		free(p[i]);
	return malloc_trim(0) < 0;
}
