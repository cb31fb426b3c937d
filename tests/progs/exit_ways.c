/* SPDX-License-Identifier: MIT */
/*
 * Ends in the way its argument names, after allocating: "return", "exit"
 * (from a second thread while the first still runs), "_exit", "_Exit",
 * "quick_exit" (no atexit handlers, no destructors), "pthread_exit" (from
 * main while a second thread still runs), "abort" (death by a signal), and
 * "big" (allocates 64 MiB, for a full filesystem: must still succeed, from
 * private memory).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *exit_from_thread(void *arg)
{
	(void)arg;
	char *p = malloc(1000);
	memset(p, 1, 1000);
	exit(0);
}

static void *linger(void *arg)
{
	(void)arg;
	usleep(20000);
	char *p = malloc(300);
	memset(p, 3, 300);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "return";
	char *p = malloc(5000);
	memset(p, 2, 5000);
	if (strcmp(how, "exit") == 0) {
		pthread_t t;
		pthread_create(&t, NULL, exit_from_thread, NULL);
		for (;;)
			pause();
	}
	if (strcmp(how, "_exit") == 0)
		_exit(0);
	if (strcmp(how, "_Exit") == 0)
		_Exit(0);
	if (strcmp(how, "quick_exit") == 0)
		quick_exit(0);
	if (strcmp(how, "pthread_exit") == 0) {
		pthread_t t;
		pthread_create(&t, NULL, linger, NULL);
		pthread_exit(NULL); /* the process ends when the last thread does */
	}
	if (strcmp(how, "abort") == 0)
		abort();
	if (strcmp(how, "big") == 0) {
		for (int i = 0; i < 64; i++) {
			char *b = malloc(1 << 20);
			if (!b)
				return 2;
			memset(b, i, 1 << 20);
		}
	}
	return 0;
}
