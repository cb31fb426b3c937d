/* SPDX-License-Identifier: MIT */
/*
 * The heap folder read into structs: one pass of readdir over a folder opened
 * once, one fstatat per name (never following a symbolic link), and the
 * reader's header-only figures for every heap. Shared by the tools.
 */
#ifndef RH_TOOLS_SCAN_H
#define RH_TOOLS_SCAN_H

#include <stddef.h>
#include <sys/stat.h>

#include <redhawk/shm.h>

enum scan_kind {
	SCAN_HEAP = 1,        /* a heap the reader understood */
	SCAN_UNREADABLE = 2,  /* a heap that could not be read (entry.error says why) */
	SCAN_OTHER = 3,       /* anything else, and heaps this user cannot open */
};

struct scan_entry {
	char *name;
	struct stat st;               /* lstat-like: the name itself */
	enum scan_kind kind;
	int open_err;                 /* errno of a failed open, 0 when opened */
	struct rh_heap_info info;     /* SCAN_HEAP; what could be read for SCAN_UNREADABLE */
	char *error;                  /* SCAN_UNREADABLE: the reader's reason */
};

struct scan {
	struct scan_entry *entries;
	size_t n, cap;
};

/* Opens the heap folder for all later *at calls: O_DIRECTORY|O_NOFOLLOW, so a
 * folder that is a symbolic link is refused. Returns an fd or -1 with errno
 * (ELOOP for a symbolic link); scan_dir_error(errno) says why in words. */
int scan_open_dir(const char *path);
const char *scan_dir_error(int err);

/* Reads every entry of the folder (but . and ..), classifies it and sorts the
 * result by name (version order: heap-99 before heap-100). Names that vanish
 * while being read are left out. 0, or an errno value. */
int scan_dir(int dirfd, struct scan *scan);

/* Classifies one name of the folder into *entry (zeroed first). 0, or an
 * errno value from fstatat when the name cannot be looked at. scan_dir
 * lists a heap still being made (scan_unfinished_name) as another file;
 * named, it is read as a heap. */
int scan_name(int dirfd, const char *name, struct scan_entry *entry);

/* Appends a copy of *entry (taking over its allocations). 0 or ENOMEM. */
int scan_add(struct scan *scan, struct scan_entry *entry);
void scan_sort(struct scan *scan);
void scan_entry_free(struct scan_entry *entry);
void scan_free(struct scan *scan);

/* The pid in ".heap-PID.HEX.tmp", the name a heap has while its creator
 * makes it (renamed to heap-PID once ready); 0 for any other name. */
int scan_unfinished_name(const char *name);

/* Whether NAME is a plain name of the folder: not empty, no '/', not . or .. */
int scan_plain_name(const char *name);

/* Maps a command-line NAME to a plain name of the folder DIR: NAME itself,
 * or DIR/NAME given as a path (also with DIR's trailing slashes or ./
 * components). Returns a pointer into NAME or NULL when NAME leads outside. */
const char *scan_name_in_dir(const char *dir, const char *name);

#endif
