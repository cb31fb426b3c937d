/* SPDX-License-Identifier: MIT */
/*
 * fork() from code running on a malloc'd stack (a thread given its stack
 * with pthread_attr_setstack, a ucontext coroutine): under the shim that
 * stack is in the heap's shared mapping, which the child makes private.
 * Parent and child must each go on with their own frames: the child checks
 * a local of the forking frame and allocates, the parent checks its locals
 * after the child is done. Prints the same lines with or without the shim.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static int fork_here(const char *who)
{
	char local[256];
	snprintf(local, sizeof(local), "frame of %s", who);
	for (int round = 0; round < 3; round++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			/* Writes to the stack (this frame and deeper calls). */
			char *mine = malloc(5000);
			memset(mine, 2, 5000);
			snprintf(local, sizeof(local), "changed by the child");
			_exit(strcmp(local, "changed by the child") == 0 && mine[4999] == 2 ? 7 : 3);
		}
		int st;
		if (waitpid(pid, &st, 0) != pid)
			return 2;
		char want[256];
		snprintf(want, sizeof(want), "frame of %s", who);
		printf("%s: child %s, parent's frame %s\n", who,
		       WIFEXITED(st) && WEXITSTATUS(st) == 7 ? "ok" : "failed",
		       strcmp(local, want) == 0 ? "kept" : "changed");
	}
	return 0;
}

static void *thread_main(void *arg)
{
	(void)arg;
	return (void *)(long)fork_here("thread");
}

/* A fork from a malloc'd stack in an address space nearly at its limit
 * (RLIMIT_AS a little above what is mapped): the child cannot map memory to
 * copy the pages around its thread pointer into, and must not lose them. */
static char **tight_data;
static long tight_slack_kb;
static int tight_signals;

static long vm_size_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "VmSize:", 7) == 0)
			kb = atol(line + 7);
	if (f)
		fclose(f);
	return kb;
}

static void *tight_main(void *arg)
{
	(void)arg;
	struct rlimit rl;
	getrlimit(RLIMIT_AS, &rl);
	struct rlimit tight = { (rlim_t)(vm_size_kb() + (8 << 10) + tight_slack_kb) << 10, rl.rlim_max };
	setrlimit(RLIMIT_AS, &tight);
	pid_t pid = fork();
	setrlimit(RLIMIT_AS, &rl);
	if (pid == 0) {
		int bad = 0;
		for (int i = 0; i < 200; i++)
			bad += tight_data[i][0] != (char)('a' + i % 26);
		_exit(bad ? 3 : 0);
	}
	int st;
	if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFSIGNALED(st))
		tight_signals++;
	return NULL;
}

static ucontext_t main_ctx, co_ctx;
static int co_result;

static void coroutine(void)
{
	co_result = fork_here("coroutine");
}

int main(void)
{
	/* Stacks from 64 KiB to 4 MiB: below the size from which the shim
	 * gives a block private pages. */
	static const size_t sizes[] = { 256 << 10, 4 << 20 };
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *stack;
		if (posix_memalign(&stack, 4096, sizes[i]))
			return 1;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setstack(&at, stack, sizes[i]);
		pthread_t t;
		void *r;
		if (pthread_create(&t, &at, thread_main, NULL) || pthread_join(t, &r) || r)
			return 2;
		free(stack);
	}
	for (size_t size = 64 << 10; size <= (1 << 20); size *= 16) {
		char *stack = malloc(size);
		getcontext(&co_ctx);
		co_ctx.uc_stack.ss_sp = stack;
		co_ctx.uc_stack.ss_size = size;
		co_ctx.uc_link = &main_ctx;
		makecontext(&co_ctx, coroutine, 0);
		if (swapcontext(&main_ctx, &co_ctx) || co_result)
			return 3;
		free(stack);
	}
	tight_data = malloc(200 * sizeof(*tight_data));
	for (int i = 0; i < 200; i++) {
		tight_data[i] = malloc(100);
		memset(tight_data[i], 'a' + i % 26, 100);
	}
	for (tight_slack_kb = 0; tight_slack_kb <= 160; tight_slack_kb += 4) {
		void *stack = malloc(1 << 20);
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setstack(&at, stack, 1 << 20);
		pthread_t t;
		if (pthread_create(&t, &at, tight_main, NULL) || pthread_join(t, NULL))
			return 4;
		free(stack);
	}
	printf("tight address space: %d children died of a signal\n", tight_signals);
	printf("done\n");
	return 0;
}
