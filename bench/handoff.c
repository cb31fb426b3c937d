/* SPDX-License-Identifier: MIT */
/*
 * Buffers handed from a producer process to a consumer process, for
 * scripts/bench-handoff.sh. Per buffer the producer writes every byte and
 * the consumer reads every byte (a checksum); in between:
 *   shm        the producer sends a reference (rh_shm_ref) down a pipe; the
 *              consumer attaches the block, says so on a pipe back (the
 *              producer, which sends up to WINDOW buffers ahead, frees its
 *              own reference then), reads the bytes and releases its
 *              reference, holding nothing until the next one
 *   shm-remap  the same, with the consumer calling rh_shm_trim after each
 *              release, which unmaps the producer's heap: it is mapped
 *              again for every buffer
 *   pipe       the bytes themselves go down a pipe (made as big as a
 *              buffer, up to the system's limit): two copies
 *   handoff [-m MS] MODE SIZE...
 * prints "SIZE BUFFERS_PER_SECOND" for each size, each measured for MS
 * milliseconds (default 200).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <redhawk/shm.h>

enum mode { SHM, SHM_REMAP, PIPE };

#define WINDOW 32

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int full_read(int fd, void *buf, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static int full_write(int fd, const void *buf, size_t n)
{
	for (size_t put = 0; put < n;) {
		ssize_t w = write(fd, (const char *)buf + put, n - put);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		put += (size_t)w;
	}
	return 0;
}

static uint64_t checksum(const void *p, size_t n)
{
	const uint64_t *w = p;
	uint64_t s = 0;
	for (size_t i = 0; i < n / 8; i++)
		s += w[i];
	return s;
}

/* Reads buffers (or references to them) until the producer closes the
 * pipe; writes the sum of their checksums back at the end. */
static int consume(enum mode mode, size_t size, int in, int out)
{
	uint64_t sum = 0;
	char *copy = mode == PIPE ? malloc(size) : NULL;
	if (mode == PIPE && !copy)
		return 1;
	for (;;) {
		if (mode == PIPE) {
			if (full_read(in, copy, size) != 0)
				break;
			sum += checksum(copy, size);
			continue;
		}
		struct rh_shm_ref ref;
		if (full_read(in, &ref, sizeof(ref)) != 0)
			break;
		void *p = rh_shm_attach(&ref);
		char ok = p != NULL;
		if (full_write(out, &ok, 1) != 0 || !p) {
			fprintf(stderr, "handoff: consumer: attach: %s\n", strerror(errno));
			return 1;
		}
		sum += checksum(p, size);
		rh_shm_free(p);
		if (mode == SHM_REMAP)
			rh_shm_trim();
	}
	free(copy);
	return full_write(out, &sum, sizeof(sum)) != 0;
}

/* Hands buffers to a consumer for `ms` milliseconds: buffers per second, or
 * a negative number on failure. */
static double run(enum mode mode, size_t size, long ms)
{
	int down[2], up[2];
	if (pipe(down) != 0 || pipe(up) != 0)
		return -1;
	if (mode == PIPE) {
		int want = size > (1u << 20) ? 1 << 20 : (int)size;
		if (want > 65536)
			(void)fcntl(down[1], F_SETPIPE_SZ, want);
	}
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(down[1]);
		close(up[0]);
		_exit(consume(mode, size, down[0], up[1]));
	}
	close(down[0]);
	close(up[1]);
	char *buf = mode == PIPE ? malloc(size) : NULL;
	char *flight[WINDOW];
	uint64_t sent = 0, acked = 0, sum = 0;
	double start = now(), end = start + ms / 1000.0, t;
	bool failed = mode == PIPE && !buf;
	do {
		for (unsigned k = 0; k < 16 && !failed; k++, sent++) {
			char ok = 0;
			if (mode != PIPE && sent - acked == WINDOW) {
				failed = full_read(up[0], &ok, 1) != 0 || !ok;
				rh_shm_free(flight[acked++ % WINDOW]);
				if (failed)
					break;
			}
			char *p = mode == PIPE ? buf : rh_shm_alloc(size);
			if (!p) {
				failed = true;
				break;
			}
			memset(p, (int)(sent & 0xff), size);
			sum += checksum(p, size);
			if (mode == PIPE) {
				failed = full_write(down[1], p, size) != 0;
				continue;
			}
			struct rh_shm_ref ref;
			flight[sent % WINDOW] = p;
			failed = rh_shm_ref(p, &ref) != 0 || full_write(down[1], &ref, sizeof(ref)) != 0;
		}
	} while (!failed && (t = now()) < end);
	for (char ok = 1; mode != PIPE && acked < sent; acked++) {
		failed |= !failed && (full_read(up[0], &ok, 1) != 0 || !ok);
		rh_shm_free(flight[acked % WINDOW]);
	}
	close(down[1]);
	uint64_t theirs = 0;
	failed |= full_read(up[0], &theirs, sizeof(theirs)) != 0 || theirs != sum;
	t = now();
	close(up[0]);
	free(buf);
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		failed = true;
	return failed ? -1 : (double)sent / (t - start);
}

int main(int argc, char **argv)
{
	long ms = 200;
	int a = 1;
	if (a + 1 < argc && strcmp(argv[a], "-m") == 0) {
		ms = atol(argv[a + 1]);
		a += 2;
	}
	if (a >= argc || ms <= 0) {
		fprintf(stderr, "usage: handoff [-m MS] shm|shm-remap|pipe SIZE...\n");
		return 2;
	}
	enum mode mode;
	const char *name = argv[a];
	if (strcmp(argv[a], "shm") == 0)
		mode = SHM;
	else if (strcmp(argv[a], "shm-remap") == 0)
		mode = SHM_REMAP;
	else if (strcmp(argv[a], "pipe") == 0)
		mode = PIPE;
	else {
		fprintf(stderr, "handoff: unknown mode %s\n", argv[a]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (a++; a < argc; a++) {
		char *end;
		unsigned long size = strtoul(argv[a], &end, 10);
		if (*end || size < 8 || size % 8) {
			fprintf(stderr, "handoff: bad size %s (a multiple of 8)\n", argv[a]);
			return 2;
		}
		double rate = run(mode, size, ms);
		if (rate < 0) {
			fprintf(stderr, "handoff: %s of %lu-byte buffers failed\n", name, size);
			return 1;
		}
		printf("%lu %.0f\n", size, rate);
		fflush(stdout);
	}
	return 0;
}
