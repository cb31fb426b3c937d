/* SPDX-License-Identifier: MIT */
/*
 * A component that dies badly, for redhawk-shmrun's crash tests. It holds
 * 3 blocks of 4000 bytes from hold_buffers() (malloc, so the shim serves it),
 * then:
 *   crasher segv        dereferences NULL
 *   crasher wait FILE   writes its pid to FILE and waits to be killed
 *   crasher fork-segv   forks a child that holds its own blocks and
 *                       segfaults; the parent reaps it and exits with 3
 *   crasher orphan-segv forks a child that segfaults after its parent exited
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *held[3];

static void hold_buffers(void)
{
	for (int i = 0; i < 3; i++) {
		held[i] = malloc(4000);
		memset(held[i], i, 4000);
	}
}

static void crash(void)
{
	volatile int *p = NULL;
	*p = 1;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "segv";
	hold_buffers();
	if (strcmp(mode, "segv") == 0) {
		crash();
	} else if (strcmp(mode, "wait") == 0 && argc > 2) {
		FILE *f = fopen(argv[2], "w");
		if (!f)
			return 1;
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
		for (;;)
			pause();
	} else if (strcmp(mode, "fork-segv") == 0) {
		pid_t pid = fork();
		if (pid == 0) {
			hold_buffers();
			crash();
		}
		int status;
		waitpid(pid, &status, 0);
		return WIFSIGNALED(status) ? 3 : 4;
	} else if (strcmp(mode, "orphan-segv") == 0) {
		pid_t pid = fork();
		if (pid == 0) {
			usleep(200000);
			hold_buffers();
			crash();
		}
		return 0;
	}
	return 2;
}
