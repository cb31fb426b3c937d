/* SPDX-License-Identifier: MIT */
/*
 * Reading the heap folder: one readdir pass over the folder's fd, fstatat with
 * AT_SYMLINK_NOFOLLOW per name, and rh_heap_open (header figures only) for the
 * regular files. Nothing here follows a symbolic link or opens a non-file.
 */
#include "scan.h"

#include <dirent.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int dir_is_link;  /* the last scan_open_dir found a symbolic link */

int scan_open_dir(const char *path)
{
	/* O_NOFOLLOW does not apply to "link/" or "link/.": a trailing slash
	 * makes the kernel follow the link, and "." is the last component
	 * there. The path is opened without them. */
	char bare[PATH_MAX];
	size_t len = strlen(path);
	for (;;) {
		if (len > 1 && path[len - 1] == '/')
			len--;
		else if (len > 2 && path[len - 1] == '.' && path[len - 2] == '/')
			len -= 2;
		else
			break;
	}
	if (len >= sizeof(bare)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(bare, path, len);
	bare[len] = 0;
	int fd = open(bare, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	/* O_DIRECTORY is checked first: a link to a folder gives ENOTDIR.
	 * Say what is wrong instead. */
	dir_is_link = fd < 0 && (errno == ENOTDIR || errno == ELOOP) && lstat(bare, &st) == 0 &&
		S_ISLNK(st.st_mode);
	if (dir_is_link)
		errno = ELOOP;
	return fd;
}

const char *scan_dir_error(int err)
{
	return err == ELOOP && dir_is_link ? "is a symbolic link, refused (name the folder it leads to)" :
		strerror(err);
}

int scan_plain_name(const char *name)
{
	return name[0] && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

int scan_unfinished_name(const char *name)
{
	/* ".heap-", digits, ".", hex digits, ".tmp", nothing else. */
	const char *p = name + 6;
	long pid = 0;
	if (strncmp(name, ".heap-", 6) != 0 || *p < '1' || *p > '9')
		return 0;
	for (; *p >= '0' && *p <= '9' && pid < 1L << 31; p++)
		pid = pid * 10 + (*p - '0');
	if (*p++ != '.' || !isxdigit((unsigned char)*p))
		return 0;
	while (isxdigit((unsigned char)*p))
		p++;
	return strcmp(p, ".tmp") == 0 && pid < 1L << 31 ? (int)pid : 0;
}

static int classify(int dirfd, const char *name, struct scan_entry *entry, int listing)
{
	memset(entry, 0, sizeof(*entry));
	if (fstatat(dirfd, name, &entry->st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno;
	entry->name = strdup(name);
	if (!entry->name)
		return ENOMEM;
	entry->kind = SCAN_OTHER;
	/* Only regular files are opened: a FIFO or device would block or worse.
	 * A heap being made is not one yet: listed with the other files. */
	if (!S_ISREG(entry->st.st_mode) || (listing && scan_unfinished_name(name)))
		return 0;

	struct rh_heap *heap = NULL;
	int err = rh_heap_open(dirfd, name, &heap);
	if (err == 0 || err == EPROTO) {
		if (heap) {
			entry->info = *rh_heap_info(heap);
			if (err == EPROTO) {
				const char *why = rh_heap_error(heap);
				entry->error = strdup(why && *why ? why : "unreadable");
			}
			rh_heap_close(heap);
		}
		entry->kind = err == 0 ? SCAN_HEAP : SCAN_UNREADABLE;
		if (err == EPROTO && !entry->error)
			entry->error = strdup("unreadable");
	} else {
		if (heap)
			rh_heap_close(heap);
		/* ENOTSUP: not a heap. EACCES: a heap of another user, maybe;
		 * REDHAWK lists those as other files too. */
		entry->open_err = err == ENOTSUP ? 0 : err;
	}
	return 0;
}

int scan_name(int dirfd, const char *name, struct scan_entry *entry)
{
	return classify(dirfd, name, entry, 0);
}

int scan_add(struct scan *scan, struct scan_entry *entry)
{
	if (scan->n == scan->cap) {
		size_t cap = scan->cap ? scan->cap * 2 : 64;
		struct scan_entry *e = realloc(scan->entries, cap * sizeof(*e));
		if (!e)
			return ENOMEM;
		scan->entries = e;
		scan->cap = cap;
	}
	scan->entries[scan->n++] = *entry;
	memset(entry, 0, sizeof(*entry));
	return 0;
}

static int by_name(const void *a, const void *b)
{
	const struct scan_entry *x = a, *y = b;
	return strverscmp(x->name, y->name);
}

void scan_sort(struct scan *scan)
{
	if (scan->n > 1)
		qsort(scan->entries, scan->n, sizeof(*scan->entries), by_name);
}

int scan_dir(int dirfd, struct scan *scan)
{
	/* fdopendir takes over the fd it gets: give it a duplicate, and rewind,
	 * since the duplicate shares the file offset with dirfd. */
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int err = errno;
		close(fd);
		return err;
	}
	rewinddir(dir);
	int err = 0;
	struct dirent *d;
	errno = 0;
	while ((d = readdir(dir))) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		struct scan_entry entry;
		int e = classify(dirfd, d->d_name, &entry, 1);
		if (e == 0)
			e = scan_add(scan, &entry);
		scan_entry_free(&entry);
		if (e == ENOMEM) {
			err = e;
			break;
		}
		/* Any other failure: the name vanished under us; leave it out. */
		errno = 0;
	}
	if (!err && errno)
		err = errno;
	closedir(dir);
	scan_sort(scan);
	return err;
}

void scan_entry_free(struct scan_entry *entry)
{
	free(entry->name);
	free(entry->error);
	entry->name = NULL;
	entry->error = NULL;
}

void scan_free(struct scan *scan)
{
	for (size_t i = 0; i < scan->n; i++)
		scan_entry_free(&scan->entries[i]);
	free(scan->entries);
	memset(scan, 0, sizeof(*scan));
}

/* Collapses "//" and "/./", drops trailing slashes and a leading "./".
 * Returns 0, or -1 when a ".." component appears or the result is too long. */
static int normalise(const char *in, char *out, size_t size)
{
	size_t n = 0;
	const char *p = in;
	int absolute = *p == '/';
	if (absolute)
		out[n++] = '/';
	while (*p) {
		while (*p == '/')
			p++;
		const char *end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		if (len == 0)
			break;
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return -1;
		if (!(len == 1 && p[0] == '.')) {
			if (n > (size_t)absolute)
				out[n++] = '/';
			if (n + len + 2 > size)
				return -1;
			memcpy(out + n, p, len);
			n += len;
		}
		p = end;
	}
	out[n] = 0;
	return 0;
}

static const char *strip_dir(const char *dir, const char *norm_name, const char *name)
{
	char d[PATH_MAX];
	if (normalise(dir, d, sizeof(d)) != 0)
		return NULL;
	size_t len = strlen(d);
	if (len == 1 && d[0] == '/')
		len = 0;
	if (strncmp(norm_name, d, len) != 0 || norm_name[len] != '/')
		return NULL;
	const char *rest = norm_name + len + 1;
	if (!scan_plain_name(rest))
		return NULL;
	/* Point into the caller's string: its last component is the same name. */
	const char *base = strrchr(name, '/');
	if (!base || !base[1]) /* trailing slash: a directory, not a file */
		return NULL;
	return base + 1;
}

const char *scan_name_in_dir(const char *dir, const char *name)
{
	if (scan_plain_name(name))
		return name;
	if (!name[0])
		return NULL;
	char n[PATH_MAX];
	if (normalise(name, n, sizeof(n)) != 0)
		return NULL;
	/* "./heap-1" is the plain name heap-1. */
	if (n[0] != '/' && scan_plain_name(n)) {
		const char *base = strrchr(name, '/');
		return base && base[1] && scan_plain_name(base + 1) ? base + 1 : NULL;
	}
	const char *r = strip_dir(dir, n, name);
	if (r)
		return r;
	char real[PATH_MAX];
	if (realpath(dir, real))
		return strip_dir(real, n, name);
	return NULL;
}
