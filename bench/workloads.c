/* SPDX-License-Identifier: MIT */
/*
 * The synthetic whole-process workloads of scripts/bench-programs.sh, one
 * binary with a mode argument, calling plain malloc/free/realloc so that any
 * allocator can be put under it with LD_PRELOAD. Deterministic (a fixed-seed
 * xorshift); each mode touches the memory it gets, and prints a checksum so
 * that nothing can be optimised away.
 *   workloads churn|threads|large|realloc|pipeline [SCALE]
 * SCALE (default 1.0) multiplies the number of operations.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double scale = 1.0;
static unsigned long checksum;

static uint64_t next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void *get(size_t size)
{
	unsigned char *p = malloc(size);
	if (!p) {
		fprintf(stderr, "workloads: malloc(%zu) failed\n", size);
		exit(1);
	}
	p[0] = (unsigned char)size;
	p[size - 1] = 1;
	return p;
}

static void put(void *p)
{
	if (p)
		checksum += ((unsigned char *)p)[0];
	free(p);
}

/* Small sizes as programs use them: mostly under 128 bytes, a tail to 1 KiB. */
static size_t small_size(uint64_t *s)
{
	uint64_t r = next(s);
	if ((r & 7) != 0)
		return 8 + (r >> 8) % 120;
	return 128 + (r >> 8) % 897;
}

/* Small-object churn: 8192 live objects, each step frees one at random and
 * allocates a new one in its place; every 64 steps a short burst of 32
 * objects is made and freed in LIFO order (a temporary list). */
static void churn(void)
{
	enum { SLOTS = 8192, BURST = 32 };
	static void *slot[SLOTS];
	uint64_t s = 0x9e3779b97f4a7c15u;
	long steps = (long)(16e6 * scale);
	for (unsigned i = 0; i < SLOTS; i++)
		slot[i] = get(small_size(&s));
	for (long k = 0; k < steps; k++) {
		unsigned i = next(&s) % SLOTS;
		put(slot[i]);
		slot[i] = get(small_size(&s));
		if ((k & 63) == 0) {
			void *tmp[BURST];
			for (unsigned j = 0; j < BURST; j++)
				tmp[j] = get(small_size(&s));
			for (unsigned j = BURST; j-- > 0;)
				put(tmp[j]);
		}
	}
	for (unsigned i = 0; i < SLOTS; i++)
		put(slot[i]);
}

/* Two threads, each allocating objects in batches of 256 and handing the
 * batches to the other, which frees them: every object is freed by the
 * thread that did not allocate it. Batches go through a bounded queue per
 * direction under one mutex, so a thread waits instead of spinning when it
 * is ahead (two threads on two noisy cores must not measure the scheduler). */
enum { BATCH = 256, QUEUE = 16 };
struct queue {
	void **batch[QUEUE];
	unsigned head, n;
};
static struct {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct queue q[2];
} xfer = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { { { 0 }, 0, 0 } } };
struct peer {
	int side;
	uint64_t seed;
	long batches;
	unsigned long sum;
};

static void *exchange(void *arg)
{
	struct peer *p = arg;
	struct queue *out = &xfer.q[p->side], *in = &xfer.q[!p->side];
	long made = 0, taken = 0;
	void **batch = NULL, **got[QUEUE];
	for (;;) {
		if (!batch && made < p->batches) {
			batch = get(BATCH * sizeof *batch);
			for (unsigned i = 0; i < BATCH; i++)
				batch[i] = get(small_size(&p->seed));
		}
		pthread_mutex_lock(&xfer.lock);
		while (!(batch && out->n < QUEUE) && !in->n && (batch || taken < p->batches))
			pthread_cond_wait(&xfer.changed, &xfer.lock);
		if (!batch && taken >= p->batches && made >= p->batches) {
			pthread_mutex_unlock(&xfer.lock);
			break;
		}
		int moved = 0;
		if (batch && out->n < QUEUE) {
			out->batch[(out->head + out->n++) % QUEUE] = batch;
			batch = NULL;
			made++;
			moved = 1;
		}
		unsigned n = 0;
		for (; in->n; in->n--, in->head = (in->head + 1) % QUEUE)
			got[n++] = in->batch[in->head];
		if (moved || n)
			pthread_cond_broadcast(&xfer.changed);
		pthread_mutex_unlock(&xfer.lock);
		for (unsigned k = 0; k < n; k++) {
			for (unsigned i = 0; i < BATCH; i++) {
				p->sum += ((unsigned char *)got[k][i])[0];
				free(got[k][i]);
			}
			free(got[k]);
		}
		taken += n;
	}
	return NULL;
}

static void threads(void)
{
	long batches = (long)(4e6 * scale) / BATCH;
	struct peer a = { 0, 0x1234567u, batches, 0 }, b = { 1, 0x7654321u, batches, 0 };
	pthread_t ta, tb;
	if (pthread_create(&ta, NULL, exchange, &a) || pthread_create(&tb, NULL, exchange, &b)) {
		fprintf(stderr, "workloads: pthread_create failed\n");
		exit(1);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	checksum += a.sum + b.sum;
}

/* Large buffers, 64 KiB to 4 MiB (log-uniform), 8 live: each new one is
 * written on every page, as a buffer being filled would be. An allocator
 * that returns them to the kernel on free pays a page fault per page. */
static void large(void)
{
	enum { LIVE = 8 };
	void *slot[LIVE] = { 0 };
	uint64_t s = 0xdeadbeefcafef00du;
	long steps = (long)(4500 * scale);
	for (long k = 0; k < steps; k++) {
		unsigned i = next(&s) % LIVE;
		put(slot[i]);
		/* 2^16 .. 2^22 bytes, then a random fraction of the next power. */
		unsigned e = 16 + next(&s) % 6;
		size_t size = ((size_t)1 << e) + next(&s) % ((size_t)1 << e);
		unsigned char *p = get(size);
		for (size_t off = 0; off < size; off += 4096)
			p[off] = (unsigned char)off;
		slot[i] = p;
	}
	for (unsigned i = 0; i < LIVE; i++)
		put(slot[i]);
}

/* Realloc growth: 16 buffers grown a few bytes at a time, the way naive
 * string building and vectors without a growth factor do, each to a random
 * final size from 1 KiB to 512 KiB, then freed and started again. */
static void grow(void)
{
	enum { BUFS = 16 };
	struct { unsigned char *p; size_t len, cap; } b[BUFS] = { 0 };
	uint64_t s = 0x0123456789abcdefu;
	long steps = (long)(5e6 * scale);
	for (long k = 0; k < steps; k++) {
		unsigned i = next(&s) % BUFS;
		if (b[i].len >= b[i].cap) {
			put(b[i].p);
			b[i].p = NULL;
			b[i].len = 0;
			b[i].cap = ((size_t)1 << (10 + next(&s) % 10)) + next(&s) % 1024;
		}
		size_t add = 1 + next(&s) % 64;
		unsigned char *p = realloc(b[i].p, b[i].len + add);
		if (!p) {
			fprintf(stderr, "workloads: realloc(%zu) failed\n", b[i].len + add);
			exit(1);
		}
		memset(p + b[i].len, (int)k, add);
		b[i].p = p;
		b[i].len += add;
	}
	for (unsigned i = 0; i < BUFS; i++)
		put(b[i].p);
}

/* A pipeline of buffers, as REDHAWK components pass them: one thread fills
 * 64 KiB buffers (a page of each written) and queues them, 32 at most in
 * flight; the other takes them, reads them and frees them. Every buffer is
 * freed by the thread that did not allocate it. */
enum { PIPE_DEPTH = 32, PIPE_BYTES = 64 << 10 };
static struct {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	unsigned char *buf[PIPE_DEPTH];
	unsigned head, n;
	long total;
} pipe_q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { 0 }, 0, 0, 0 };

static void *pipe_producer(void *arg)
{
	(void)arg;
	for (long k = 0; k < pipe_q.total; k++) {
		unsigned char *b = get(PIPE_BYTES);
		memset(b, (int)k, 4096);
		pthread_mutex_lock(&pipe_q.lock);
		while (pipe_q.n == PIPE_DEPTH)
			pthread_cond_wait(&pipe_q.changed, &pipe_q.lock);
		pipe_q.buf[(pipe_q.head + pipe_q.n++) % PIPE_DEPTH] = b;
		pthread_cond_broadcast(&pipe_q.changed);
		pthread_mutex_unlock(&pipe_q.lock);
	}
	return NULL;
}

static void pipeline(void)
{
	pipe_q.total = (long)(2e5 * scale);
	pthread_t t;
	if (pthread_create(&t, NULL, pipe_producer, NULL)) {
		fprintf(stderr, "workloads: pthread_create failed\n");
		exit(1);
	}
	for (long k = 0; k < pipe_q.total; k++) {
		pthread_mutex_lock(&pipe_q.lock);
		while (!pipe_q.n)
			pthread_cond_wait(&pipe_q.changed, &pipe_q.lock);
		unsigned char *b = pipe_q.buf[pipe_q.head];
		pipe_q.head = (pipe_q.head + 1) % PIPE_DEPTH;
		pipe_q.n--;
		pthread_cond_broadcast(&pipe_q.changed);
		pthread_mutex_unlock(&pipe_q.lock);
		checksum += b[4095];
		put(b);
	}
	pthread_join(t, NULL);
}

int main(int argc, char **argv)
{
	static const struct { const char *name; void (*run)(void); } modes[] = {
		{ "churn", churn }, { "threads", threads }, { "large", large }, { "realloc", grow },
		{ "pipeline", pipeline },
	};
	if (argc > 2 && (scale = atof(argv[2])) <= 0)
		argc = 0;
	for (unsigned m = 0; argc > 1 && m < sizeof modes / sizeof modes[0]; m++) {
		if (!strcmp(argv[1], modes[m].name)) {
			modes[m].run();
			printf("%s %lu\n", modes[m].name, checksum);
			return 0;
		}
	}
	fprintf(stderr, "usage: workloads churn|threads|large|realloc|pipeline [SCALE]\n");
	return 2;
}
