/* SPDX-License-Identifier: MIT */
/*
 * plugin_swap [-n N] P1.so P2.so...: loads each plugin in turn, keeps a
 * block of 100000 x i bytes the i-th one allocated, and unloads it before
 * the next is loaded (most often where it was; all but the last). Prints
 * "same" when the last was loaded where the first was, else "moved". The
 * blocks are never freed: run with RH_SHMALLOC_KEEP=1, the heap file then
 * tells who made them. Then N times more: the last unloaded, the first two
 * loaded again in turn, each making and freeing a block.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_host.h"

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

int main(int argc, char **argv)
{
	long n = 0;
	int a = 1;
	if (argc > 2 && strcmp(argv[1], "-n") == 0) {
		n = atol(argv[2]);
		a = 3;
	}
	if (argc - a < 2) {
		fprintf(stderr, "usage: plugin_swap [-n N] P1.so P2.so...\n");
		return 2;
	}
	void *first = NULL, *h = NULL;
	for (int i = a; i < argc; i++) {
		if (h)
			dlclose(h);
		void *(*make)(size_t) = load(argv[i], &h);
		if (!make_block(make, 100000 * (size_t)(i - a + 1)))
			return 1;
		if (i == a)
			first = (void *)make;
		else if (i == argc - 1)
			printf("%s\n", (void *)make == first ? "same" : "moved");
	}
	for (long k = 0; k < n; k++) {
		dlclose(h);
		void *(*make)(size_t) = load(argv[a + k % 2], &h);
		free(make_block(make, 1000));
	}
	return 0;
}
