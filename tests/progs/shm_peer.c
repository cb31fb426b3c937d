/* SPDX-License-Identifier: MIT */
/*
 * A separate process image for the heap tests: reads one command per line on
 * stdin, answers one line on stdout. The tests run it to attach blocks of their
 * heap by reference, to own a heap whose life they watch from outside, and to
 * die in the ways a real component dies (return, exit from a thread, SIGKILL).
 *
 *   alloc SIZE SEED        -> ok ID REFHEX        (block filled with the pattern)
 *   attach REFHEX SIZE SEED-> ok ID | err ERRNO | bad (pattern mismatch)
 *   write ID SIZE SEED     -> ok                  (refill a held block)
 *   check ID SIZE SEED     -> ok | bad
 *   free ID                -> ok
 *   free2 ID               -> ok                  (released twice: a bug of the holder)
 *   freeall                -> ok N                (every held block)
 *   churn REFHEX           -> ok, then attach/free the ref forever (to be killed)
 *   name                   -> ok NAME | ok -
 *   enabled                -> ok 0|1
 *   stats                  -> ok HEAP_USED HEAP_SIZE ALLOC_FAILURES
 *   exec                   -> replaces itself with a fresh image of this program
 *   closefds               -> ok                  (closes every descriptor from 3 on)
 *   fork                   -> ok STATUS           (a child that exits at once, waited for)
 *   return | exit | thread-exit | kill   -> ends that way (after answering ok)
 * End of input returns from main.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <redhawk/shm.h>

#define MAX_BLOCKS 4096

static void *blocks[MAX_BLOCKS];

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(seed + i * 7 + (i >> 9));
}

static int verify(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(seed + i * 7 + (i >> 9)))
			return 0;
	return 1;
}

static void hex_of(const struct rh_shm_ref *ref, char *out)
{
	const unsigned char *b = (const unsigned char *)ref;
	for (size_t i = 0; i < sizeof(*ref); i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static int ref_of(const char *hex, struct rh_shm_ref *ref)
{
	unsigned char *b = (unsigned char *)ref;
	if (strlen(hex) != 2 * sizeof(*ref))
		return -1;
	for (size_t i = 0; i < sizeof(*ref); i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		b[i] = (unsigned char)v;
	}
	return 0;
}

static int slot(void)
{
	for (int i = 0; i < MAX_BLOCKS; i++)
		if (!blocks[i])
			return i;
	return -1;
}

static void *exit_thread(void *arg)
{
	(void)arg;
	exit(0);
}

int main(int argc, char **argv)
{
	char line[512], arg1[256];
	unsigned long a, b;
	int id;
	(void)argc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (sscanf(line, "alloc %lu %lu", &a, &b) == 2) {
			char hex[2 * sizeof(struct rh_shm_ref) + 1];
			struct rh_shm_ref ref;
			int i = slot();
			void *p = i < 0 ? NULL : rh_shm_alloc(a);
			if (!p) {
				printf("err %d\n", errno);
				continue;
			}
			fill(p, a, (unsigned)b);
			if (rh_shm_ref(p, &ref) != 0) {
				printf("err %d\n", errno);
				rh_shm_free(p);
				continue;
			}
			blocks[i] = p;
			hex_of(&ref, hex);
			printf("ok %d %s\n", i, hex);
		} else if (sscanf(line, "attach %255s %lu %lu", arg1, &a, &b) == 3) {
			struct rh_shm_ref ref;
			int i = slot();
			if (i < 0 || ref_of(arg1, &ref) != 0) {
				printf("err %d\n", EINVAL);
				continue;
			}
			errno = 0;
			void *p = rh_shm_attach(&ref);
			if (!p) {
				printf("err %d\n", errno);
				continue;
			}
			blocks[i] = p;
			if (!verify(p, a, (unsigned)b))
				printf("bad %d\n", i);
			else
				printf("ok %d\n", i);
		} else if (sscanf(line, "write %d %lu %lu", &id, &a, &b) == 3 &&
			   id >= 0 && id < MAX_BLOCKS && blocks[id]) {
			fill(blocks[id], a, (unsigned)b);
			printf("ok\n");
		} else if (sscanf(line, "check %d %lu %lu", &id, &a, &b) == 3 &&
			   id >= 0 && id < MAX_BLOCKS && blocks[id]) {
			printf(verify(blocks[id], a, (unsigned)b) ? "ok\n" : "bad\n");
		} else if (sscanf(line, "free2 %d", &id) == 1 && id >= 0 && id < MAX_BLOCKS &&
			   blocks[id]) {
			rh_shm_free(blocks[id]);
			rh_shm_free(blocks[id]);
			blocks[id] = NULL;
			printf("ok\n");
		} else if (sscanf(line, "free %d", &id) == 1 && id >= 0 && id < MAX_BLOCKS &&
			   blocks[id]) {
			rh_shm_free(blocks[id]);
			blocks[id] = NULL;
			printf("ok\n");
		} else if (strcmp(line, "freeall") == 0) {
			int n = 0;
			for (int i = 0; i < MAX_BLOCKS; i++)
				if (blocks[i]) {
					rh_shm_free(blocks[i]);
					blocks[i] = NULL;
					n++;
				}
			printf("ok %d\n", n);
		} else if (sscanf(line, "churn %255s", arg1) == 1) {
			struct rh_shm_ref ref;
			if (ref_of(arg1, &ref) != 0) {
				printf("err %d\n", EINVAL);
				continue;
			}
			printf("ok\n");
			fflush(stdout);
			pid_t parent = getppid();
			for (unsigned n = 0;; n++) {
				if (n % 1024 == 0 && getppid() != parent)
					return 1; /* the test is gone: do not spin forever */
				void *p = rh_shm_attach(&ref);
				if (p)
					rh_shm_free(p);
				void *q = rh_shm_alloc(64);
				rh_shm_free(q);
			}
		} else if (strcmp(line, "name") == 0) {
			const char *n = rh_shm_heap_name();
			printf("ok %s\n", n ? n : "-");
		} else if (strcmp(line, "enabled") == 0) {
			printf("ok %d\n", rh_shm_enabled());
		} else if (strcmp(line, "stats") == 0) {
			struct rh_shm_stats st;
			if (rh_shm_stats(&st) != 0)
				printf("err %d\n", errno);
			else
				printf("ok %llu %llu %llu\n", (unsigned long long)st.heap_used,
				       (unsigned long long)st.heap_size,
				       (unsigned long long)st.alloc_failures);
		} else if (strcmp(line, "exec") == 0) {
			printf("ok\n");
			fflush(stdout);
			execv("/proc/self/exe", argv);
			printf("err %d\n", errno);
		} else if (strcmp(line, "closefds") == 0) {
			closefrom(3);
			printf("ok\n");
		} else if (strcmp(line, "fork") == 0) {
			int status = -1;
			pid_t c = fork();
			if (c == 0)
				_exit(0);
			if (c > 0)
				waitpid(c, &status, 0);
			printf("ok %d\n", status);
		} else if (strcmp(line, "return") == 0) {
			printf("ok\n");
			return 0;
		} else if (strcmp(line, "exit") == 0) {
			printf("ok\n");
			exit(0);
		} else if (strcmp(line, "thread-exit") == 0) {
			pthread_t t;
			printf("ok\n");
			fflush(stdout);
			pthread_create(&t, NULL, exit_thread, NULL);
			for (;;)
				pause();
		} else if (strcmp(line, "kill") == 0) {
			printf("ok\n");
			fflush(stdout);
			raise(SIGKILL);
		} else {
			printf("err %d\n", EINVAL);
		}
	}
	return 0;
}
