/* SPDX-License-Identifier: MIT */
/*
 * fork() semantics under the shim: the child writes to and frees inherited
 * memory and allocates its own; the parent's data must be unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	char *small = malloc(100);
	char *big = malloc(3 << 20);
	strcpy(small, "parent");
	memset(big, 'p', 3 << 20);
	for (int round = 0; round < 3; round++) {
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			strcpy(small, "child");
			memset(big, 'c', 3 << 20);
			free(small);
			free(big);
			char *mine = malloc(5000);
			memset(mine, 1, 5000);
			char *re = realloc(mine, 100000);
			_exit(re[4999] == 1 ? 0 : 3);
		}
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
			return 2;
		/* The parent's heap still works and its data is its own. */
		void *more = malloc(1000);
		free(more);
	}
	size_t bad = 0;
	for (size_t i = 0; i < (3u << 20); i++)
		bad += big[i] != 'p';
	printf("%s %zu\n", small, bad);
	free(small);
	free(big);
	return 0;
}
