/* SPDX-License-Identifier: MIT */
/* A leak in a child process: the parent frees everything and waits. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void child_work(void)
{
	char *p = malloc(64);
	memset(p, 1, 64);
	p = NULL;
}

int main(void)
{
	char *mine = malloc(32);
	pid_t pid = fork();
	if (pid == 0) {
		child_work();
		exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	free(mine);
	return 0;
}
