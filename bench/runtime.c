/* SPDX-License-Identifier: MIT */
/*
 * Runs a command and reports its wall time and peak memory, for
 * scripts/bench-programs.sh: like /usr/bin/time -f '%e %M', with
 * nanosecond clock resolution instead of centiseconds.
 *   runtime FILE [NAME=VALUE]... COMMAND [ARG]...
 * sets the NAME=VALUE variables in the command's environment only (so that
 * an LD_PRELOAD allocator is not loaded into this program too), and appends "SECONDS MAXRSS_KIB" to FILE when COMMAND exits with status 0;
 * exits with COMMAND's status (128+N for signal N). The peak RSS is wait4's
 * ru_maxrss (getrusage(2)): the largest of the command and the descendants
 * it waited for, shared memory that it touched included.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: runtime FILE [NAME=VALUE]... COMMAND [ARG]...\n");
		return 2;
	}
	double t0 = now();
	pid_t pid = fork();
	if (pid < 0) {
		perror("runtime: fork");
		return 126;
	}
	if (pid == 0) {
		int a = 2;
		for (; a < argc && strchr(argv[a], '='); a++)
			putenv(argv[a]);
		if (a == argc) {
			fprintf(stderr, "runtime: no command\n");
			_exit(127);
		}
		execvp(argv[a], argv + a);
		fprintf(stderr, "runtime: %s: %s\n", argv[a], strerror(errno));
		_exit(127);
	}
	int status;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0) {
		perror("runtime: wait4");
		return 126;
	}
	double t = now() - t0;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	if (WEXITSTATUS(status))
		return WEXITSTATUS(status);
	FILE *f = fopen(argv[1], "a");
	if (!f || fprintf(f, "%.6f %ld\n", t, ru.ru_maxrss) < 0 || fclose(f)) {
		perror(argv[1]);
		return 126;
	}
	return 0;
}
