/* SPDX-License-Identifier: MIT */
/*
 * Execs itself a few times, allocating in every image: each new image starts
 * a fresh heap and the old one does not linger. Also one failed exec.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4;
	char *p = malloc(4096);
	snprintf(p, 4096, "image %d", n);
	if (n == 4 && execl("/nonexistent/program", "x", (char *)NULL) == 0)
		return 1;
	char *q = malloc(100);  /* the heap still works after a failed exec */
	free(q);
	if (n > 0) {
		char next[16];
		snprintf(next, sizeof(next), "%d", n - 1);
		execl("/proc/self/exe", argv[0], next, (char *)NULL);
		perror("execl");
		return 1;
	}
	printf("%s\n", p);
	free(p);
	return 0;
}
