/* SPDX-License-Identifier: MIT */
/*
 * unload_race A.so B.so SPACER.so: the main thread unloads plugin A while a
 * second thread loads plugin B, which lands where A was, and allocates
 * through it, after the C library's dlclose unloaded A and before the
 * shim's dlclose hook is done. The window is held open by this program's
 * own dl_iterate_phdr (exported, so the shim's hook calls it): at the
 * hook's first call after A is gone, it lets the second thread run, and
 * waits for it.
 * Blocks kept: 100000 bytes from A by the main thread, 50000 from A by the
 * second thread before the window and 200000 from B in it, through the
 * same call instruction (with plugins of the same code, the same stack),
 * 300000 from B after. Run with RH_SHMALLOC_KEEP=1: the heap file then
 * tells who made them. Prints "same" when B was loaded where A was, else
 * "moved".
 * unload_race A.so B.so SPACER.so fork: in the window the second thread
 * forks instead, and the child (which never sees the hook's flush) loads B
 * and makes the 200000 bytes from it, in its own heap; it prints "child
 * same" or "child moved".
 * unload_race A.so B.so SPACER.so check-fork: the same, for an unload the
 * C library makes on its own (as of an iconv module: its dlclose, not the
 * shim's hook), which the shim notices after setlocale. The window is the
 * shim's flush of libunwind's cache, held open by this program's own
 * _Ux86_64_flush_cache (libunwind's name for unw_flush_cache).
 */
#include <dlfcn.h>
#include <link.h>
#include <locale.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plugin_host.h"

typedef int (*iterate_fn)(int (*)(struct dl_phdr_info *, size_t, void *), void *);
typedef void *(*make_fn)(size_t);

static sem_t ready, go, done;
static volatile int armed, armed_flush, forking;
static const char *b_path;
static make_fn a_make, b_make;

__attribute__((visibility("default"))) int dl_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *),
	void *arg)
{
	static iterate_fn real;
	if (!real)
		real = (iterate_fn)dlsym(RTLD_NEXT, "dl_iterate_phdr");
	Dl_info where;
	if (armed && !dladdr((void *)a_make, &where)) { /* A is unloaded */
		armed = 0;
		sem_post(&go);
		sem_wait(&done);
	}
	return real(cb, arg);
}

typedef void (*flush_fn)(void *, unsigned long, unsigned long);
__attribute__((visibility("default"))) void _Ux86_64_flush_cache(void *as, unsigned long lo, unsigned long hi)
{
	static flush_fn real;
	if (!real)
		real = (flush_fn)dlsym(RTLD_NEXT, "_Ux86_64_flush_cache");
	if (armed_flush) {
		armed_flush = 0;
		sem_post(&go);
		sem_wait(&done);
	}
	real(as, lo, hi);
}

static make_fn load(const char *path, void **handle)
{
	*handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	make_fn make = *handle ? (make_fn)dlsym(*handle, "plugin_make") : NULL;
	if (!make) {
		fprintf(stderr, "unload_race: %s: %s\n", path, *handle ? "no plugin_make" : dlerror());
		exit(2);
	}
	return make;
}

static void kept(void *p)
{
	if (!p) {
		fprintf(stderr, "unload_race: a block was not made\n");
		exit(1);
	}
}

/* Zeros where B's frame will be: a wrong rule reads a 0 return address. */
static __attribute__((noinline)) void scrub(void)
{
	volatile char z[16384];
	for (size_t i = 0; i < sizeof(z); i++)
		z[i] = 0;
}

static void *second(void *arg)
{
	(void)arg;
	kept(make_block(a_make, 50000));
	sem_post(&ready);
	sem_wait(&go);
	pid_t pid = forking ? fork() : 0;
	if (pid < 0) {
		perror("unload_race: fork");
		exit(2);
	}
	if (pid == 0) {
		void *h;
		make_fn b = load(b_path, &h);
		scrub();
		kept(make_block(b, 200000));
		if (!forking) {
			b_make = b;
		} else {
			printf("child %s\n", (void *)b == (void *)a_make ? "same" : "moved");
			fflush(stdout);
			_exit(0);
		}
	} else {
		int status;
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "unload_race: the child failed\n");
			exit(1);
		}
	}
	sem_post(&done);
	return NULL;
}

int main(int argc, char **argv)
{
	int check = argc == 5 && strcmp(argv[4], "check-fork") == 0;
	if (argc < 4 || (argc == 5 && strcmp(argv[4], "fork") && !check) || argc > 5) {
		fprintf(stderr, "usage: unload_race A.so B.so SPACER.so [fork|check-fork]\n");
		return 2;
	}
	b_path = argv[2];
	forking = argc == 5;
	sem_init(&ready, 0, 0);
	sem_init(&go, 0, 0);
	sem_init(&done, 0, 0);
	void *ha, *hs;
	a_make = load(argv[1], &ha);
	load(argv[3], &hs); /* below A: A's range stays a hole of its own */
	kept(make_block(a_make, 100000));
	pthread_t t;
	if (pthread_create(&t, NULL, second, NULL) != 0)
		return 2;
	sem_wait(&ready); /* its block from A is made */
	fflush(stdout);
	if (check) {
		void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
		int (*libc_dlclose)(void *) = libc ? (int (*)(void *))dlsym(libc, "dlclose") : NULL;
		if (!libc_dlclose) {
			fprintf(stderr, "unload_race: no dlclose in libc.so.6\n");
			return 2;
		}
		libc_dlclose(ha);
		armed_flush = 1;
		setlocale(LC_ALL, "C");
	} else {
		armed = 1;
		dlclose(ha);
	}
	pthread_join(t, NULL);
	if (!b_make) {
		void *hb;
		b_make = load(b_path, &hb);
	}
	kept(make_block(b_make, 300000));
	printf("%s\n", (void *)b_make == (void *)a_make ? "same" : "moved");
	return 0;
}
