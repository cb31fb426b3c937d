/* SPDX-License-Identifier: MIT */
/*
 * The demo's producer: fills COUNT frames of SIZE bytes in its shared heap
 * and sends a reference to each down standard output (plain bytes, struct
 * rh_shm_ref), keeping its own reference, then waits to be killed.
 *   producer COUNT SIZE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <redhawk/shm.h>

struct frame_info {
	unsigned seq;
	size_t size;
};

static unsigned char *make_frame(unsigned seq, size_t size)
{
	unsigned char *p = rh_shm_alloc(size);
	if (p)
		for (size_t i = 0; i < size; i++)
			p[i] = (unsigned char)(seq * 31 + i);
	return p;
}

static struct frame_info *log_frame(unsigned seq, size_t size)
{
	struct frame_info *f = malloc(sizeof(*f));
	if (f)
		*f = (struct frame_info){ seq, size };
	return f;
}

int main(int argc, char **argv)
{
	unsigned count = argc > 1 ? (unsigned)atoi(argv[1]) : 8;
	size_t size = argc > 2 ? (size_t)atol(argv[2]) : 256 << 10;
	fprintf(stderr, "producer: pid %d\n", (int)getpid());
	for (unsigned seq = 0; seq < count; seq++) {
		unsigned char *frame = make_frame(seq, size);
		struct rh_shm_ref ref;
		if (!frame || !log_frame(seq, size) || rh_shm_ref(frame, &ref) != 0) {
			perror("producer");
			return 1;
		}
		if (write(STDOUT_FILENO, &ref, sizeof(ref)) != (ssize_t)sizeof(ref)) {
			perror("producer: write");
			return 1;
		}
	}
	for (;;)
		pause();
}
