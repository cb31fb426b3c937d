/* SPDX-License-Identifier: MIT */
/*
 * A heap creator for the tools' tests: allocates COUNT blocks of SIZE bytes
 * with the core API, prints "ready HEAP-NAME" and waits to be killed, so that
 * kill -9 leaves a real orphan behind.
 *   alloc_hold COUNT SIZE
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <redhawk/shm.h>

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 4;
	size_t size = argc > 2 ? (size_t)atol(argv[2]) : 1000;
	for (int i = 0; i < count; i++)
		if (!rh_shm_alloc(size)) {
			perror("alloc_hold: rh_shm_alloc");
			return 1;
		}
	printf("ready %s\n", rh_shm_heap_name() ? rh_shm_heap_name() : "?");
	fflush(stdout);
	for (;;)
		pause();
}
