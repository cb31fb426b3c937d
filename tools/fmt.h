/* SPDX-License-Identifier: MIT */
/*
 * How the tools print what they found: sizes and percentages as REDHAWK 2.2
 * prints them, and the table of reported fields (label, JSON name, Prometheus
 * name, formatter) from which the text, --json and --prometheus outputs all
 * come, so that the three cannot drift apart.
 */
#ifndef RH_TOOLS_FMT_H
#define RH_TOOLS_FMT_H

#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/types.h>

#include "scan.h"

enum size_format {
	SIZE_AUTO,   /* 7.7G, 60.1M, 32.0K, one decimal; plain bytes under 1 KiB */
	SIZE_BYTES,  /* 63019008 */
	SIZE_KIB,    /* 61542K, rounded down */
};

struct fmt_ctx {
	enum size_format size;
	int numeric_ids;          /* -l: print uid and gid, no name lookups */
};

#define FMT_SIZE_LEN 32

/* Parses auto|b|k (any case). 0, or -1 for anything else. */
int fmt_parse_size_format(const char *s, enum size_format *out);
/* Formats BYTES into buf (FMT_SIZE_LEN bytes) and returns buf. */
char *fmt_size(char *buf, uint64_t bytes, enum size_format format);
/* PART of WHOLE as "98.7%" (one decimal); "0.0%" when WHOLE is 0. */
char *fmt_percent(char *buf, uint64_t part, uint64_t whole);
/* Writes "  LABEL:" padded so that VALUE starts in column 16, and a newline. */
void fmt_label(FILE *out, const char *label, const char *value);
/* Writes NAME for a terminal or a pipe: control characters and backslashes
 * as C escapes, so that a hostile file name cannot forge output lines. */
void fmt_name(FILE *out, const char *name);
/* "PROG: OBJECT: message" on stderr (OBJECT may be NULL), after flushing
 * stdout so that results and errors keep their order on a terminal. */
void fmt_error(const char *prog, const char *object, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
/* Writes S as a JSON string, quotes included; invalid UTF-8 becomes U+FFFD. */
void fmt_json_string(FILE *out, const char *s);
/* Writes S as a Prometheus label value, quotes included. */
void fmt_prom_label(FILE *out, const char *s);
/* User and group names, cached; the number when -l or unknown. */
const char *fmt_user(const struct fmt_ctx *ctx, uid_t uid);
const char *fmt_group(const struct fmt_ctx *ctx, gid_t gid);

/* The folder: "DIR:" then size and free (text), or as JSON members. */
struct fs_info {
	const char *dir;
	uint64_t size, free;
};
void fmt_fs_text(FILE *out, const struct fmt_ctx *ctx, const struct fs_info *fs);
/* Writes the members "dir", "size", "free", "free_percent" (no braces). */
void fmt_fs_json(FILE *out, const struct fs_info *fs);

/* One entry's labelled lines (not its name line). */
void fmt_entry_text(FILE *out, const struct fmt_ctx *ctx, const struct scan_entry *e);
/* One entry's JSON members, "name" first, without the braces. */
void fmt_entry_json(FILE *out, const struct fmt_ctx *ctx, const struct scan_entry *e);
/* The whole Prometheus exposition for the folder and the entries shown. */
void fmt_prometheus(FILE *out, const struct fmt_ctx *ctx, const struct fs_info *fs,
	const struct scan_entry *const *entries, size_t n);

#endif
