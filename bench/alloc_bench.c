/* SPDX-License-Identifier: MIT */
/*
 * Alloc+free pairs per second, the loop of issue 2's benchmark: each thread
 * keeps a ring of live blocks and, in turn, frees its oldest and allocates a
 * new one, writing its first and last byte. Built twice: with -DBENCH_RH
 * every block comes from rh_shm_alloc (and is checked to be shared memory),
 * without it from the C library's malloc (or whatever LD_PRELOAD puts there).
 *
 *   alloc_bench [-m MILLISECONDS] SIZE:THREADS...
 * prints one line per configuration: SIZE THREADS PAIRS_PER_SECOND
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef BENCH_RH
#include <redhawk/shm.h>
#define bench_alloc rh_shm_alloc
#define bench_free rh_shm_free
#else
#define bench_alloc malloc
#define bench_free free
#endif

#define RING 32       /* live blocks per thread */
#define BATCH 256     /* pairs between clock reads */
#define MAX_THREADS 16

struct run {
	size_t size;
	long ms;
	pthread_barrier_t start;
	atomic_int stop;
};

struct worker {
	struct run *run;
	pthread_t thread;
	uint64_t pairs;
	double seconds;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *get(size_t size)
{
	unsigned char *p = bench_alloc(size);
	if (!p) {
		fprintf(stderr, "alloc_bench: allocation of %zu bytes failed: %s\n", size,
			strerror(errno));
		exit(1);
	}
	p[0] = 1;
	p[size - 1] = 2;
	return p;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	size_t size = r->size;
	void *ring[RING];
	unsigned i = 0;

	for (unsigned k = 0; k < RING; k++)
		ring[k] = get(size);
#ifdef BENCH_RH
	if (!rh_shm_owns(ring[0])) {
		fprintf(stderr, "alloc_bench: a block is not in shared memory\n");
		exit(1);
	}
#endif
	/* Warm up: caches, pools and superblocks settle before timing. */
	for (unsigned k = 0; k < 4 * BATCH; k++, i = (i + 1) % RING) {
		bench_free(ring[i]);
		ring[i] = get(size);
	}
	pthread_barrier_wait(&r->start);
	double t0 = now(), deadline = t0 + r->ms / 1000.0, t = t0;
	uint64_t pairs = 0;
	while (t < deadline) {
		for (unsigned k = 0; k < BATCH; k++) {
			bench_free(ring[i]);
			ring[i] = get(size);
			i = i + 1 == RING ? 0 : i + 1;
		}
		pairs += BATCH;
		t = now();
	}
	w->pairs = pairs;
	w->seconds = t - t0;
	for (unsigned k = 0; k < RING; k++)
		bench_free(ring[k]);
	return NULL;
}

static double measure(size_t size, unsigned threads, long ms)
{
	struct run r = { .size = size, .ms = ms };
	struct worker w[MAX_THREADS];
	double rate = 0;
	pthread_barrier_init(&r.start, NULL, threads);
	for (unsigned k = 0; k < threads; k++) {
		w[k] = (struct worker){ .run = &r };
		if (pthread_create(&w[k].thread, NULL, work, &w[k]) != 0) {
			fprintf(stderr, "alloc_bench: pthread_create failed\n");
			exit(1);
		}
	}
	/* Each thread's own rate, summed: the threads run side by side. */
	for (unsigned k = 0; k < threads; k++) {
		pthread_join(w[k].thread, NULL);
		rate += w[k].pairs / w[k].seconds;
	}
	pthread_barrier_destroy(&r.start);
	return rate;
}

int main(int argc, char **argv)
{
	long ms = 200;
	int opt;
	while ((opt = getopt(argc, argv, "m:")) != -1) {
		if (opt != 'm' || (ms = atol(optarg)) <= 0) {
			fprintf(stderr, "usage: alloc_bench [-m MILLISECONDS] SIZE:THREADS...\n");
			return 2;
		}
	}
	for (int a = optind; a < argc; a++) {
		unsigned long size;
		unsigned threads;
		if (sscanf(argv[a], "%lu:%u", &size, &threads) != 2 || !size || !threads ||
		    threads > MAX_THREADS) {
			fprintf(stderr, "alloc_bench: bad configuration '%s'\n", argv[a]);
			return 2;
		}
		printf("%lu %u %.0f\n", size, threads, measure(size, threads, ms));
		fflush(stdout);
	}
#ifdef BENCH_RH
	struct rh_shm_stats st;
	if (rh_shm_stats(&st) == 0 && st.alloc_failures) {
		fprintf(stderr, "alloc_bench: %llu allocations were refused\n",
			(unsigned long long)st.alloc_failures);
		return 1;
	}
#endif
	return 0;
}
