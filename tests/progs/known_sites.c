/* SPDX-License-Identifier: MIT */
/*
 * A program with known allocations, for checking the journal site by site:
 * alloc_a makes 10 blocks of 1000 bytes, alloc_b 5 of 100000, alloc_c 3 of
 * 64 and frees one. Prints "ready" with the functions' addresses, then waits
 * for its standard input to close and frees everything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *held[32];
static int nheld;

__attribute__((noinline)) static void alloc_a(void)
{
	for (int i = 0; i < 10; i++)
		held[nheld++] = malloc(1000);
}

__attribute__((noinline)) static void alloc_b(void)
{
	for (int i = 0; i < 5; i++)
		held[nheld++] = malloc(100000);
}

__attribute__((noinline)) static void alloc_c(void)
{
	void *x = malloc(64);
	held[nheld++] = malloc(64);
	held[nheld++] = malloc(64);
	free(x);
}

int main(void)
{
	alloc_a();
	alloc_b();
	alloc_c();
	printf("ready %d %p %p %p %p\n", (int)getpid(), (void *)alloc_a, (void *)alloc_b,
		(void *)alloc_c, (void *)main);
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	for (int i = 0; i < nheld; i++)
		free(held[i]);
	return 0;
}
