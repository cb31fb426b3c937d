/* SPDX-License-Identifier: MIT */
/*
 * Writes heap fixtures for the tools' end-to-end tests (tests/tools/t-*.sh),
 * with tests/heapfix.h, so that outputs are known to the byte:
 *   mkheap r22 DIR NAME CREATOR REFCOUNT [DATA_SIZE:USED]...
 *   mkheap native DIR NAME CREATOR [fake|self] [hold]
 * "native" makes a heap with blocks at three call sites and one without a
 * site; "fake" records a module that does not exist (frames print as
 * module+0xOFFSET), "self" records this program with its build-id and frames
 * inside it (frames print as function (mkheap.c:LINE)). "hold" makes this
 * process the heap's creator, as the allocator does: CREATOR is ignored, the
 * creator's lock is taken, "ready" is printed, and the process waits to be
 * killed (kill -9 makes an orphan whose lock the kernel dropped).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../heapfix.h"
#include "heap.h"
#include "../selfmod.h"

static int usage(void)
{
	fprintf(stderr, "usage: mkheap r22 DIR NAME CREATOR REFCOUNT [DATA_SIZE:USED]...\n"
		"       mkheap native DIR NAME CREATOR [fake|self] [hold|started [PID]]\n");
	return 2;
}

static int r22(int argc, char **argv)
{
	if (argc < 6)
		return usage();
	struct heapfix f;
	heapfix_r22_init(&f, atoi(argv[4]), atoi(argv[5]));
	for (int i = 6; i < argc; i++) {
		unsigned long size, used;
		if (sscanf(argv[i], "%lu:%lu", &size, &used) != 2)
			return usage();
		heapfix_r22_sb(&f, (uint32_t)size, used);
	}
	int rc = heapfix_write(&f, argv[2], argv[3]);
	heapfix_free(&f);
	return rc ? 1 : 0;
}

int main(int argc, char **argv);

/* Return addresses inside this program, made by real calls. */
static __attribute__((noinline)) uint64_t caller_of_a(void)
{
	return (uint64_t)(uintptr_t)__builtin_return_address(0);
}
static __attribute__((noinline)) uint64_t make_buffer(void)
{
	uint64_t r = caller_of_a(); /* frame: make_buffer */
	return r;
}
static __attribute__((noinline)) uint64_t fill_queue(void)
{
	uint64_t r = caller_of_a(); /* frame: fill_queue */
	return r;
}

static int native(int argc, char **argv)
{
	if (argc < 5)
		return usage();
	const char *mode = argc > 5 ? argv[5] : "fake";
	int hold = argc > 6 && !strcmp(argv[6], "hold");
	/* "started [PID]": a heap its creator set aside at exec: locked flag
	 * set, no lock held, and the creator's start time that of the live
	 * process PID (CREATOR by default). */
	int started = argc > 6 && !strcmp(argv[6], "started");
	struct heapfix f;
	heapfix_init(&f, 4096);
	struct heap_header *h = heapfix_header(&f);
	h->creator_pid = atoi(argv[4]);
	h->holders[0].pid = h->creator_pid;
	if (started) {
		if (os_proc_start_time(argc > 7 ? atoi(argv[7]) : h->creator_pid, &h->creator_start) != 0)
			return 1;
		h->holders[0].start_time = h->creator_start;
		h->flags |= RH_HEAP_F_LOCKED;
	}
	strcpy(h->command, "producer");

	uint64_t sb = heapfix_data_sb(&f, 64);
	uint32_t hp = heapfix_sb(&f, sb)->header_size / f.page;
	uint64_t jsb = heapfix_journal_sb(&f, 4);

	uint64_t a[3], b[2], c[1];
	uint32_t da = 3, db = 2, dc = 1;
	if (!strcmp(mode, "self")) {
		struct self_module s;
		if (self_module(&s))
			return 1;
		heapfix_module(&f, jsb, s.path, s.base, s.start, s.end, s.id, s.id_len);
		a[0] = make_buffer();
		a[1] = (uint64_t)(uintptr_t)main + 1;
		da = 2;
		b[0] = fill_queue();
		db = 1;
		c[0] = 0x1234; /* no module covers it */
	} else {
		static const uint8_t id[20] = { 0xde, 0xad, 0xbe, 0xef };
		heapfix_module(&f, jsb, "/nonexistent/libproducer.so", 0x7f0000000000ull,
			0x7f0000000000ull, 0x7f0000100000ull, id, sizeof(id));
		a[0] = 0x7f0000001234ull;
		a[1] = 0x7f0000002000ull;
		a[2] = 0x7f00000030a0ull;
		b[0] = 0x7f0000004444ull;
		b[1] = 0x7f0000002000ull;
		c[0] = 0x1234; /* no module covers it */
	}
	uint32_t sa = heapfix_site(&f, jsb, a, da, 3000, 3, 5, 5000);
	uint32_t sbid = heapfix_site(&f, jsb, b, db, 1000, 1, 1, 1000);
	uint32_t sc = heapfix_site(&f, jsb, c, dc, 40000, 1, 1, 40000);

	/* A SMALL span of 1024-byte slots (class 22) and a LARGE block. */
	heapfix_span(&f, sb, hp, 2, RH_PAGE_SMALL, 22);
	heapfix_small(&f, sb, hp, 0, 1000, sa, 1, 0);
	heapfix_small(&f, sb, hp, 1, 1000, sbid, 1, 0);
	heapfix_small(&f, sb, hp, 2, 1000, sa, 1, 0);
	heapfix_small(&f, sb, hp, 3, 500, 0, 1, 0);
	heapfix_small(&f, sb, hp, 4, 1000, sa, 2 | RH_REF_SHARED, 0);
	heapfix_small(&f, sb, hp, 5, 1000, sa, 0, 0); /* freed */
	heapfix_large(&f, sb, hp + 2, 10, 16, 40000, sc, 1);
	heapfix_counter(&f, 0, 3000 + 1000 + 500 + 40000, 6);
	if (hold) {
		h = heapfix_header(&f);
		h->creator_pid = getpid();
		h->holders[0].pid = getpid();
		h->flags |= RH_HEAP_F_LOCKED;
	}

	int rc = heapfix_write(&f, argv[2], argv[3]);
	heapfix_free(&f);
	if (rc || !hold)
		return rc ? 1 : 0;

	/* The creator's lock: an OFD write lock on byte RH_LOCK_BASE, which the
	 * kernel drops when this process dies, however it dies. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", argv[2], argv[3]);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = RH_LOCK_BASE,
		.l_len = 1 };
	if (fd < 0 || fcntl(fd, F_OFD_SETLK, &fl) != 0) {
		perror("mkheap: lock");
		return 1;
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "r22"))
		return r22(argc, argv);
	if (!strcmp(argv[1], "native"))
		return native(argc, argv);
	return usage();
}
