/* SPDX-License-Identifier: MIT */
/*
 * redhawk-shminfo: the shared-memory filesystem and the REDHAWK heaps in it,
 * in REDHAWK 2.2's format (seed document), as JSON or as Prometheus metrics,
 * with an optional breakdown of each heap's live memory by call site.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <redhawk/shm.h>

#include "fmt.h"
#include "options.h"
#include "report.h"
#include "scan.h"
#include "symbolize.h"

static const char *prog = "redhawk-shminfo";

static int status;

__attribute__((format(printf, 2, 3)))
static void error(const char *object, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fmt_error(prog, object, fmt, ap);
	va_end(ap);
	status = 1;
}

/* One for the run: heaps that load the same files share their parsing. */
static struct symbolizer *run_sym;
/* HEAP arguments given: a heap named that vanished is still shown. */
static int named_heaps;

/* A heap's call sites, read again from the file at print time. */
struct breakdown {
	int ok;
	struct site_report report;
	struct symbolizer *sym;
};

/* A live heap changes while its blocks are walked: a walk that finds it
 * inconsistent is tried again a few times before the heap counts as bad. */
#define BREAKDOWN_TRIES 4

/* 0: b holds the breakdown, or nothing for a heap without one (b->ok 0);
 * 1: the heap is gone since the folder was read (left out, as a name that
 * vanishes while the folder is read); -1: reported as an error. */
static int breakdown_load(int dirfd, const struct scan_entry *e, struct breakdown *b)
{
	memset(b, 0, sizeof(*b));
	if (e->kind != SCAN_HEAP || e->info.kind != RH_HEAP_NATIVE)
		return 0;
	if (!run_sym && !(run_sym = symbolizer_new())) {
		error(e->name, "breakdown: %s", strerror(ENOMEM));
		return -1;
	}
	for (int tries = 1;; tries++) {
		struct rh_heap *heap = NULL;
		int err = rh_heap_open(dirfd, e->name, &heap);
		if (err == ENOENT) {
			rh_heap_close(heap);
			return 1;
		}
		if (!err && rh_heap_info(heap)->instance != e->info.instance) {
			/* Another heap under the name: the one listed is gone. */
			rh_heap_close(heap);
			return 1;
		}
		if (!err && report_collect(heap, &b->report) == 0) {
			b->sym = run_sym;
			symbolizer_clear(b->sym);
			/* Modules are read now; files are opened only when a frame
			 * needs them. */
			if (symbolizer_load(b->sym, heap) != 0)
				error(e->name, "breakdown: module table: %s", rh_heap_error(heap));
			rh_heap_close(heap);
			b->ok = 1;
			return 0;
		}
		if (!err) /* the walk found the heap bad, or memory ran out */
			err = rh_heap_error(heap) && *rh_heap_error(heap) ? EPROTO : ENOMEM;
		int live = err == EPROTO && heap && !rh_heap_info(heap)->orphaned;
		if (!live || tries == BREAKDOWN_TRIES) {
			error(e->name, "breakdown: %s", err == EPROTO ? rh_heap_error(heap) : strerror(err));
			rh_heap_close(heap);
			return -1;
		}
		rh_heap_close(heap);
	}
}

/* What shares are of: the heap's used bytes, or its blocks as walked when it
 * grew since the listing read it (no share above 100%). */
static uint64_t whole(const struct scan_entry *e, const struct breakdown *b)
{
	return b->report.bytes > e->info.heap_used ? b->report.bytes : e->info.heap_used;
}

static void breakdown_free(struct breakdown *b)
{
	report_free(&b->report);
	b->sym = NULL;
}

static void print_text(int dirfd, const struct shminfo_options *o, const struct fs_info *fs,
	const struct scan_entry *const *shown, size_t n)
{
	fmt_fs_text(stdout, &o->fmt, fs);
	for (size_t i = 0; i < n; i++) {
		const struct scan_entry *e = shown[i];
		struct breakdown b = { 0 };
		if (o->breakdown_on && breakdown_load(dirfd, e, &b) == 1 && !named_heaps)
			continue;
		putchar('\n');
		fmt_name(stdout, e->name);
		putchar('\n');
		fmt_entry_text(stdout, &o->fmt, e);
		if (!b.ok)
			continue;
		char count[32];
		snprintf(count, sizeof(count), "%zu", b.report.n);
		fmt_label(stdout, "call sites", count);
		report_print(stdout, &o->fmt, b.sym, &b.report, o->breakdown, whole(e, &b), "    ", 1);
		breakdown_free(&b);
	}
}

static void print_json(int dirfd, const struct shminfo_options *o, const struct fs_info *fs,
	const struct scan_entry *const *shown, size_t n)
{
	fputs("{\n  \"version\": 1,\n  \"filesystem\": {", stdout);
	fmt_fs_json(stdout, fs);
	fputs("},\n  \"files\": [", stdout);
	size_t shown_n = 0;
	for (size_t i = 0; i < n; i++) {
		const struct scan_entry *e = shown[i];
		struct breakdown b = { 0 };
		if (o->breakdown_on && breakdown_load(dirfd, e, &b) == 1 && !named_heaps)
			continue;
		fputs(shown_n++ ? ",\n    {" : "\n    {", stdout);
		fmt_entry_json(stdout, &o->fmt, e);
		if (b.ok) {
			fputs(", ", stdout);
			report_json(stdout, b.sym, &b.report, o->breakdown, whole(e, &b));
		}
		breakdown_free(&b);
		putchar('}');
	}
	fputs(shown_n ? "\n  ]\n}\n" : "]\n}\n", stdout);
}

int main(int argc, char **argv)
{
	struct shminfo_options o;
	enum parse_result pr = shminfo_parse(argc, argv, &o, stderr);
	if (pr != PARSE_OK)
		options_finish(pr, prog, shminfo_usage, 2, EXIT_FAILURE);

	static char buf[1 << 16];
	setvbuf(stdout, buf, _IOFBF, sizeof(buf));

	int dirfd = scan_open_dir(o.dir);
	if (dirfd < 0) {
		error(o.dir, "%s", scan_dir_error(errno));
		return 1;
	}
	struct statvfs vfs;
	struct fs_info fs = { .dir = o.dir };
	if (fstatvfs(dirfd, &vfs) == 0) {
		fs.size = (uint64_t)vfs.f_blocks * vfs.f_frsize;
		fs.free = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	} else {
		error(o.dir, "statvfs: %s", strerror(errno));
	}

	struct scan scan = { 0 };
	int named = named_heaps = o.first_arg < argc;
	if (named) {
		for (int i = o.first_arg; i < argc; i++) {
			const char *name = scan_name_in_dir(o.dir, argv[i]);
			if (!name) {
				error(argv[i], "not a file of %s", o.dir);
				continue;
			}
			struct scan_entry e;
			int err = scan_name(dirfd, name, &e);
			if (err == 0)
				err = scan_add(&scan, &e);
			scan_entry_free(&e);
			if (err)
				error(argv[i], "%s", strerror(err));
		}
	} else {
		int err = scan_dir(dirfd, &scan);
		if (err)
			error(o.dir, "%s", strerror(err));
	}

	const struct scan_entry **shown = calloc(scan.n ? scan.n : 1, sizeof(*shown));
	if (!shown) {
		error(NULL, "%s", strerror(ENOMEM));
		return 1;
	}
	size_t n = 0;
	for (size_t i = 0; i < scan.n; i++) {
		const struct scan_entry *e = &scan.entries[i];
		/* Named files are shown whatever they are: the user asked. */
		if (e->kind == SCAN_OTHER && !o.all && !named)
			continue;
		if (e->kind == SCAN_UNREADABLE)
			error(e->name, "%s", e->error);
		shown[n++] = e;
	}

	switch (o.output) {
	case OUT_TEXT:
		print_text(dirfd, &o, &fs, shown, n);
		break;
	case OUT_JSON:
		print_json(dirfd, &o, &fs, shown, n);
		break;
	case OUT_PROMETHEUS:
		fmt_prometheus(stdout, &o.fmt, &fs, shown, n);
		break;
	}

	symbolizer_free(run_sym);
	free(shown);
	scan_free(&scan);
	close(dirfd);
	/* A full disk or a closed pipe must not pass for success. */
	errno = 0; /* what the flush finds, not an earlier call's */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		error(NULL, "write error: %s", strerror(errno ? errno : EIO));
		return 1;
	}
	return status;
}
