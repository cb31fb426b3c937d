/* SPDX-License-Identifier: MIT */
/*
 * A program with known allocations, for checking the journal site by site:
 * alloc_a makes 10 blocks of 1000 bytes, alloc_b 5 of 100000, alloc_c 3 of
 * 64 and frees one; via_d and via_e, called in turn (twice each) from the
 * same place, each make 8 blocks of 200 through the same leaf, whose call to malloc then
 * has the same return address and stack pointer for both (two stacks of one
 * shape that differ further out). Prints "ready" with the functions'
 * addresses, then waits for its standard input to close and frees
 * everything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *held[64];
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

__attribute__((noinline)) static void *leaf(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" : : "r"(p) : "memory"); /* no tail call */
	return p;
}

__attribute__((noinline)) static void via_d(void)
{
	held[nheld++] = leaf(200);
	__asm__ volatile("" : : : "memory");
}

__attribute__((noinline)) static void via_e(void)
{
	held[nheld++] = leaf(200);
	__asm__ volatile("" : : : "memory");
}

int main(void)
{
	alloc_a();
	alloc_b();
	alloc_c();
	for (int i = 0; i < 4; i++) {
		via_d();
		via_d();
		via_e();
		via_e();
	}
	printf("ready %d %p %p %p %p %p %p %p\n", (int)getpid(), (void *)alloc_a, (void *)alloc_b,
		(void *)alloc_c, (void *)main, (void *)leaf, (void *)via_d, (void *)via_e);
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	for (int i = 0; i < nheld; i++)
		free(held[i]);
	return 0;
}
