/* SPDX-License-Identifier: MIT */
/*
 * The demo's consumer: reads references from standard input, attaches each
 * frame (the producer's memory itself, no copy), checks its contents, and
 * holds it until the input ends. After COUNT frames it creates READY_FILE.
 *   consumer COUNT READY_FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <redhawk/shm.h>

#define MAX_FRAMES 1024

struct held {
	unsigned char *frame;
	unsigned seq;
};

static struct held *hold_frame(unsigned char *frame, unsigned seq)
{
	struct held *h = malloc(sizeof(*h));
	if (h)
		*h = (struct held){ frame, seq };
	return h;
}

static int check(const unsigned char *p, unsigned seq, size_t size)
{
	for (size_t i = 0; i < size; i++)
		if (p[i] != (unsigned char)(seq * 31 + i))
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	unsigned count = argc > 1 ? (unsigned)atoi(argv[1]) : 8;
	const char *ready = argc > 2 ? argv[2] : NULL;
	struct held *frames[MAX_FRAMES];
	unsigned n = 0;
	struct rh_shm_ref ref;
	while (n < MAX_FRAMES && fread(&ref, sizeof(ref), 1, stdin) == 1) {
		unsigned char *p = rh_shm_attach(&ref);
		if (!p) {
			perror("consumer: rh_shm_attach");
			return 1;
		}
		size_t size = rh_shm_usable_size(p);
		if (!(frames[n] = hold_frame(p, n)))
			return 1;
		printf("consumer: frame %u attached from %s, %s\n", n, ref.heap,
			check(p, n, 4096 < size ? 4096 : size) ? "contents checked" : "CONTENTS DIFFER");
		fflush(stdout);
		if (++n == count && ready) {
			FILE *f = fopen(ready, "w");
			if (f) {
				fputs("ready\n", f);
				fclose(f);
			}
		}
	}
	printf("consumer: input ended, releasing %u frames\n", n);
	for (unsigned i = 0; i < n; i++) {
		rh_shm_free(frames[i]->frame);
		free(frames[i]);
	}
	return 0;
}
