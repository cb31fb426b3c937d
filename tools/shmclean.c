/* SPDX-License-Identifier: MIT */
/*
 * redhawk-shmclean: removes orphaned heaps, or the named files of the heap
 * folder. Safe as root in a folder anyone can write: the folder is opened
 * once and every call is relative to it, nothing follows a symbolic link, a
 * file is judged on an fd we hold, and its name is checked to still lead to
 * that same file right before unlinkat(2). A heap that cannot be read is
 * never taken for an orphan.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <redhawk/shm.h>

#include "format.h"
#include "heap.h"

#include "fmt.h"
#include "options.h"
#include "report.h"
#include "scan.h"
#include "symbolize.h"

static const char *prog = "redhawk-shmclean";

static struct shmclean_options opt;
static struct fmt_ctx fmt;
static int status;

__attribute__((format(printf, 2, 3)))
static void error(const char *object, const char *fmt_, ...)
{
	va_list ap;
	va_start(ap, fmt_);
	fmt_error(prog, object, fmt_, ap);
	va_end(ap);
	status = 1;
}

/* One for the run: heaps that load the same files share their parsing. */
static struct symbolizer *run_sym;

/* What a heap still held, by call site: the leak attribution of a crash. */
static void print_held(struct rh_heap *heap, const char *name)
{
	const struct rh_heap_info *info = rh_heap_info(heap);
	char size[FMT_SIZE_LEN];
	fmt_name(stdout, name);
	if (info->kind != RH_HEAP_NATIVE) {
		printf(" held %s (REDHAWK 2.2 heaps record no call sites)\n",
			fmt_size(size, info->heap_used, fmt.size));
		return;
	}
	struct site_report r;
	if (!run_sym)
		run_sym = symbolizer_new();
	struct symbolizer *sym = run_sym;
	if (!sym || report_collect(heap, &r) != 0) {
		putchar('\n');
		error(name, "cannot list its call sites: %s", sym ? rh_heap_error(heap) : strerror(ENOMEM));
		return;
	}
	symbolizer_clear(sym);
	symbolizer_load(sym, heap);
	printf(" held %s in %llu block%s", fmt_size(size, info->heap_used, fmt.size),
		(unsigned long long)r.blocks, r.blocks == 1 ? "" : "s");
	puts(r.n || r.blocks ? ":" : "");
	report_print(stdout, &fmt, sym, &r, SIZE_MAX, info->heap_used, "    ", 0);
	report_free(&r);
}

/* Unlinks NAME if it still is the file *ST describes. */
/* NAMED: asked for by name; a sweep passes quietly over a name that went
 * away or was replaced meanwhile (a process renaming its heap at exec). */
static void unlink_checked(int dirfd, const char *name, const struct stat *st, int named)
{
	struct stat now;
	if (fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0) {
		if (named || errno != ENOENT)
			error(name, "%s", strerror(errno));
		return;
	}
	if (now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
		if (named)
			error(name, "replaced while being checked, not removed");
		return;
	}
	if (!opt.dry_run && unlinkat(dirfd, name, 0) != 0) {
		if (named || errno != ENOENT)
			error(name, "%s", strerror(errno));
		return;
	}
	fputs(opt.dry_run ? "would unlink " : "unlinking ", stdout);
	fmt_name(stdout, name);
	putchar('\n');
}

/* A heap its creator never finished: ".heap-PID.HEX.tmp", the name a heap
 * has while it is made (locked, then renamed once ready), left by a
 * process killed on the way. Gone only when no process has that pid,
 * nobody holds its lock and it is a minute old: a heap being made takes
 * microseconds. */
#define UNFINISHED_AGE 60

static int unfinished(int fd, const char *name, const struct stat *st)
{
	long pid = scan_unfinished_name(name);
	if (!pid)
		return 0;
	/* Its maker may be stopped (a debugger, a frozen cgroup): a process
	 * of that pid leaves it alone. */
	if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
		return 0;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec - st->st_mtim.tv_sec < UNFINISHED_AGE)
		return 0;
	/* A write lock only: a reader's read lock does not keep it (see the
	 * reader's lock_held). */
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = RH_LOCK_BASE, .l_len = 1 };
	return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_UNLCK;
}

/* ".heap-PID.exec", a heap PID set aside at exec, while the process that
 * made it runs the next image (exec keeps its pid and start time): that
 * image removes it. A pid of another process (reused, or another PID
 * namespace's) does not keep it. */
static int aside_of_live(const char *name, const struct rh_heap_info *info)
{
	if (strncmp(name, ".heap-", 6) != 0)
		return 0;
	char *end;
	errno = 0;
	long pid = strtol(name + 6, &end, 10);
	if (errno || pid <= 0 || pid >= 1L << 31 || end == name + 6 || strcmp(end, ".exec") != 0)
		return 0;
	uint64_t start;
	return info && info->creator_pid == pid && info->creator_start &&
		os_proc_start_time((pid_t)pid, &start) == 0 && start == info->creator_start;
}

/* Removes NAME when it should go. NAMED: the user asked for this file (errors
 * are reported); else the folder is being swept for orphans (other files are
 * passed over quietly). */
static void clean(int dirfd, const char *name, int named)
{
	struct stat st0;
	if (fstatat(dirfd, name, &st0, AT_SYMLINK_NOFOLLOW) != 0) {
		if (named)
			error(name, "%s", strerror(errno));
		return;
	}
	if (S_ISLNK(st0.st_mode) || S_ISDIR(st0.st_mode)) {
		/* Even with --force: a link may lead out of the folder, and the
		 * contract is to remove files of the folder only. */
		if (named)
			error(name, "is a %s, not removed", S_ISLNK(st0.st_mode) ?
				"symbolic link" : "directory");
		return;
	}
	if (!S_ISREG(st0.st_mode)) {
		if (!named)
			return;
		if (opt.force)
			unlink_checked(dirfd, name, &st0, named);
		else
			error(name, "not a REDHAWK heap, use -f to force removal");
		return;
	}

	/* Our own fd: the reader, the orphan test and the final identity
	 * check use it. */
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (!named)
			return; /* another user's file, most likely */
		if (opt.force)
			unlink_checked(dirfd, name, &st0, named);
		else
			error(name, "%s", strerror(errno));
		return;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_dev != st0.st_dev || st.st_ino != st0.st_ino) {
		if (named)
			error(name, "replaced while being checked, not removed");
		close(fd);
		return;
	}

	/* A heap being made: its header may already read as a heap's, its
	 * creator and lock not yet (the sweep took one for an orphan, 1 in 1000
	 * process starts). Only its age and lock tell. */
	if (!named && scan_unfinished_name(name)) {
		if (unfinished(fd, name, &st))
			unlink_checked(dirfd, name, &st, named);
		close(fd);
		return;
	}
	struct rh_heap *heap = NULL;
	int err = rh_heap_open_fd(fd, &heap);
	/* A heap set aside at exec: the new image removes it, a sweep only
	 * once its maker is gone. */
	if (!named && !err && aside_of_live(name, rh_heap_info(heap))) {
		rh_heap_close(heap);
		close(fd);
		return;
	}
	if (err == ENOTSUP || (err && err != EPROTO)) {
		if (named) {
			if (opt.force)
				unlink_checked(dirfd, name, &st, named);
			else if (err == ENOTSUP)
				error(name, "not a REDHAWK heap, use -f to force removal");
			else
				error(name, "%s", strerror(err));
		}
		close(fd);
		return;
	}
	if (err == EPROTO) {
		if (named && opt.force)
			unlink_checked(dirfd, name, &st, named);
		else
			error(name, "unreadable heap, not removed%s: %s",
				named ? " (use -f to force removal)" : "", rh_heap_error(heap));
		rh_heap_close(heap);
		close(fd);
		return;
	}

	int orphaned = rh_heap_fd_orphaned(fd, rh_heap_info(heap));
	if (orphaned < 0) {
		if (named && opt.force) {
			unlink_checked(dirfd, name, &st, named);
		} else {
			int e = errno;
			error(name, "cannot tell whether its creator lives: %s", strerror(e));
		}
	} else if (orphaned || (named && opt.force)) {
		if (opt.verbose)
			print_held(heap, name);
		unlink_checked(dirfd, name, &st, named);
	} else if (named) {
		error(name, "in use, use -f to force removal");
	}
	rh_heap_close(heap);
	close(fd);
}

static int by_name(const void *a, const void *b)
{
	return strverscmp(*(char *const *)a, *(char *const *)b);
}

/* The sweep: every orphaned heap of the folder, in name order. */
static void sweep(int dirfd)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		error(opt.dir, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(dir);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *d;
	errno = 0;
	while ((d = readdir(dir))) {
		/* Links, folders and devices are never swept: skip them unseen. */
		if (d->d_type != DT_REG && d->d_type != DT_UNKNOWN)
			continue;
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			char **v = realloc(names, cap * sizeof(*v));
			if (!v)
				break;
			names = v;
		}
		if (!(names[n] = strdup(d->d_name)))
			break;
		n++;
		errno = 0;
	}
	if (errno)
		error(opt.dir, "%s", strerror(errno));
	closedir(dir);
	if (n > 1)
		qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		clean(dirfd, names[i], 0);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	enum parse_result pr = shmclean_parse(argc, argv, &opt, stderr);
	if (pr != PARSE_OK)
		options_finish(pr, prog, shmclean_usage, 2, EXIT_FAILURE);
	int dirfd = scan_open_dir(opt.dir);
	if (dirfd < 0) {
		error(opt.dir, "%s", scan_dir_error(errno));
		return 1;
	}
	if (opt.first_arg == argc) {
		sweep(dirfd);
	} else {
		for (int i = opt.first_arg; i < argc; i++) {
			const char *name = scan_name_in_dir(opt.dir, argv[i]);
			if (!name)
				error(argv[i], "not a file of %s, not removed", opt.dir);
			else
				clean(dirfd, name, 1);
		}
	}
	symbolizer_free(run_sym);
	close(dirfd);
	errno = 0; /* what the flush finds, not an earlier call's */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		error(NULL, "write error: %s", strerror(errno ? errno : EIO));
		return 1;
	}
	return status;
}
