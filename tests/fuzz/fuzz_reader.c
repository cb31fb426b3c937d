/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for heap/reader.c: each input is written as a heap file
 * in a private folder, then opened, described and walked in every way a tool
 * does. tests/fuzz/replay.c runs the same function over the corpus in
 * make check. See tests/fuzz/README.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redhawk/shm.h"

#define FUZZ_FILE "heap-1"

static char fuzz_dir[256];
static int fuzz_dirfd = -1;

static void fuzz_cleanup(void)
{
	if (fuzz_dirfd < 0)
		return;
	unlinkat(fuzz_dirfd, FUZZ_FILE, 0);
	close(fuzz_dirfd);
	rmdir(fuzz_dir);
	fuzz_dirfd = -1;
}

static int fuzz_setup(void)
{
	/* tmpfs when we can: the fuzzer writes a file per input. */
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/rh-fuzz-XXXXXX", tmp);
	if (!mkdtemp(fuzz_dir) || (fuzz_dirfd = open(fuzz_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		perror("rh-fuzz: private folder");
		abort();
	}
	atexit(fuzz_cleanup);
	return 0;
}

/* The callbacks touch every byte they are given, so that AddressSanitizer
 * sees any pointer the reader hands out that it should not. */
static int on_block(const struct rh_block_info *b, void *arg)
{
	*(uint64_t *)arg += b->offset ^ b->size ^ b->usable ^ b->refcount ^ b->site ^ b->reachable;
	if (b->size > b->usable)
		abort(); /* the reader promises size <= usable */
	return 0;
}

static int on_site(const struct rh_site_info *s, void *arg)
{
	uint64_t *sum = arg;
	if (s->depth > 64)
		abort();
	*sum += s->id ^ (uint64_t)s->live_bytes ^ (uint64_t)s->live_blocks ^ s->total_allocs ^ s->total_bytes;
	for (unsigned i = 0; i < s->depth; i++)
		*sum += s->frames[i];
	return 0;
}

static int on_module(const struct rh_module_info *m, void *arg)
{
	uint64_t *sum = arg;
	if (m->build_id_len > 40)
		abort();
	*sum += m->base ^ m->start ^ m->end ^ strlen(m->path);
	for (size_t i = 0; i < m->build_id_len; i++)
		*sum += m->build_id[i];
	return 0;
}

/* Runs the reader over one file image: 0 read whole, 1 refused by open,
 * 2 refused by a walk, 3 not a heap. Aborts when the API breaks a promise. */
static int fuzz_one(const uint8_t *data, size_t size)
{
	if (fuzz_dirfd < 0)
		fuzz_setup();
	int fd = openat(fuzz_dirfd, FUZZ_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) || close(fd) < 0) {
		perror("rh-fuzz: writing the input");
		abort();
	}

	struct rh_heap *h = NULL;
	int rc = rh_heap_open(fuzz_dirfd, FUZZ_FILE, &h);
	if (rc == ENOTSUP) {
		if (h)
			abort();
		return 3;
	}
	if ((rc != 0 && rc != EPROTO) || !h)
		abort();
	const struct rh_heap_info *in = rh_heap_info(h);
	const char *err = rh_heap_error(h);
	if (strlen(err) >= 256 || strlen(in->command) >= sizeof(in->command))
		abort();
	if (rc == EPROTO && !*err)
		abort(); /* a refusal always says why */
	if (in->file_size != size)
		abort();

	volatile uint64_t sum = 0;
	uint64_t acc = 0;
	int walks = rh_heap_walk_blocks(h, on_block, &acc);
	walks |= rh_heap_walk_sites(h, on_site, &acc);
	walks |= rh_heap_walk_modules(h, on_module, &acc);
	sum += acc + strlen(rh_heap_error(h));
	if (walks && !*rh_heap_error(h))
		abort();

	int rfd = openat(fuzz_dirfd, FUZZ_FILE, O_RDONLY | O_CLOEXEC);
	if (rfd >= 0) {
		sum += (uint64_t)rh_heap_fd_orphaned(rfd, in);
		close(rfd);
	}
	(void)sum;
	rh_heap_close(h);
	return rc == EPROTO ? 1 : walks ? 2 : 0;
}

#ifndef RH_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_one(data, size);
	return 0;
}
#endif
