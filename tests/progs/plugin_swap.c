/* SPDX-License-Identifier: MIT */
/*
 * plugin_swap A.so B.so [N]: loads plugin A, keeps a block of 100000 bytes
 * it allocated, unloads it, then loads plugin B (most often where A was)
 * and keeps a block of 200000 bytes of B's. Prints "same" when B was loaded
 * at A's address, else "moved". The blocks are never freed: run with
 * RH_SHMALLOC_KEEP=1, the heap file then tells who made them. Then N times
 * more: B unloaded, A and B loaded again in turn, each making and freeing a
 * block.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static void *(*load(const char *path, void **handle))(size_t)
{
	*handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!*handle) {
		fprintf(stderr, "plugin_swap: %s\n", dlerror());
		exit(2);
	}
	void *(*make)(size_t) = (void *(*)(size_t))dlsym(*handle, "plugin_make");
	if (!make) {
		fprintf(stderr, "plugin_swap: %s: no plugin_make\n", path);
		exit(2);
	}
	return make;
}

/* One call instruction for both plugins: their stacks differ only where
 * the plugins' code was, at the same addresses when B took A's place. */
static __attribute__((noinline)) void *make_block(void *(*make)(size_t), size_t n)
{
	void *p = make(n);
	__asm__ volatile("" ::: "memory");
	return p;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: plugin_swap A.so B.so [N]\n");
		return 2;
	}
	void *first = NULL, *h = NULL;
	for (int i = 0; i < 2; i++) {
		void *(*make)(size_t) = load(argv[1 + i], &h);
		if (!make_block(make, i ? 200000 : 100000))
			return 1;
		if (i == 0) {
			first = (void *)make;
			dlclose(h);
		} else {
			printf("%s\n", (void *)make == first ? "same" : "moved");
		}
	}
	long n = argc == 4 ? atol(argv[3]) : 0;
	for (long k = 0; k < n; k++) {
		dlclose(h);
		void *(*make)(size_t) = load(argv[1 + k % 2], &h);
		free(make_block(make, 1000));
	}
	return 0;
}
