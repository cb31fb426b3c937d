/* SPDX-License-Identifier: MIT */
/*
 * Sizes, percentages and the field table. Each reported field is one row of
 * fields[]: its text label, JSON member, Prometheus metric and a getter; the
 * three outputs walk the same rows. Text labels and their order are REDHAWK
 * 2.2's (seed document); new rows go after "mode".
 */
#include "fmt.h"

#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

int fmt_parse_size_format(const char *s, enum size_format *out)
{
	if (!strcasecmp(s, "auto"))
		*out = SIZE_AUTO;
	else if (!strcasecmp(s, "b"))
		*out = SIZE_BYTES;
	else if (!strcasecmp(s, "k"))
		*out = SIZE_KIB;
	else
		return -1;
	return 0;
}

char *fmt_size(char *buf, uint64_t bytes, enum size_format format)
{
	static const char suffix[] = " KMGTPE";
	switch (format) {
	case SIZE_BYTES:
		snprintf(buf, FMT_SIZE_LEN, "%" PRIu64, bytes);
		break;
	case SIZE_KIB:
		snprintf(buf, FMT_SIZE_LEN, "%" PRIu64 "K", bytes / 1024);
		break;
	case SIZE_AUTO:
	default:
		if (bytes < 1024) {
			snprintf(buf, FMT_SIZE_LEN, "%" PRIu64, bytes);
			break;
		}
		/* As REDHAWK 2.2: divide while >= 1024, then one decimal, so
		 * 1048575 bytes print as 1024.0K, not 1.0M. */
		double v = (double)bytes;
		int p = 0;
		while (v >= 1024.0 && suffix[p + 1]) {
			v /= 1024.0;
			p++;
		}
		snprintf(buf, FMT_SIZE_LEN, "%.1f%c", v, suffix[p]);
		break;
	}
	return buf;
}

static double percent(uint64_t part, uint64_t whole)
{
	return whole ? (double)part * 100.0 / (double)whole : 0.0;
}

char *fmt_percent(char *buf, uint64_t part, uint64_t whole)
{
	snprintf(buf, FMT_SIZE_LEN, "%.1f%%", percent(part, whole));
	return buf;
}

void fmt_label(FILE *out, const char *label, const char *value)
{
	/* "  " + "label:" padded to 13: the value starts in column 16. */
	int pad = 13 - (int)strlen(label) - 1;
	fprintf(out, "  %s:%*s%s\n", label, pad > 1 ? pad : 1, "", value);
}

/* Length of the valid UTF-8 sequence at p, or 0. */
static int utf8_len(const unsigned char *p)
{
	int n;
	uint32_t c;
	if (p[0] < 0x80)
		return 1;
	else if ((p[0] & 0xe0) == 0xc0)
		n = 2, c = p[0] & 0x1f;
	else if ((p[0] & 0xf0) == 0xe0)
		n = 3, c = p[0] & 0x0f;
	else if ((p[0] & 0xf8) == 0xf0)
		n = 4, c = p[0] & 0x07;
	else
		return 0;
	for (int i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are invalid. */
	static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (c < min[n] || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	return n;
}

/* Unicode's bidirectional and format controls, which reorder or hide what
 * follows on a terminal (U+061C, U+200B-U+200F, U+202A-U+202E, U+2060-U+2069,
 * U+FEFF), as UTF-8 of n bytes at p. */
static int invisible(const unsigned char *p, int n)
{
	if (n == 2)
		return p[0] == 0xd8 && p[1] == 0x9c;
	if (n != 3)
		return 0;
	if (p[0] == 0xe2 && p[1] == 0x80)
		return (p[2] >= 0x8b && p[2] <= 0x8f) || (p[2] >= 0xaa && p[2] <= 0xae);
	if (p[0] == 0xe2 && p[1] == 0x81)
		return p[2] >= 0xa0 && p[2] <= 0xa9;
	return p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf;
}

/* NAME as text: printable UTF-8 as it is, a backslash doubled, \n and \t,
 * and every other byte (controls, C1 ones too, bidirectional controls, bytes
 * that are not UTF-8) as \xNN. No two names print the same. PROM: each
 * backslash written is doubled again and '"' escaped, for a Prometheus
 * label value, whose decoded value is then the text form. */
static void escape_name(FILE *out, const char *name, int prom)
{
	const char *bs = prom ? "\\\\" : "\\";
	for (const unsigned char *p = (const unsigned char *)name; *p;) {
		int n = utf8_len(p);
		if (n > 1 && !(n == 2 && p[0] == 0xc2 && p[1] < 0xa0) && !invisible(p, n)) {
			fwrite(p, 1, (size_t)n, out);
			p += n;
			continue;
		}
		if (n == 0)
			n = 1;
		for (int i = 0; i < n; i++, p++) {
			if (*p == '\\')
				fprintf(out, "%s%s", bs, bs);
			else if (*p == '\n')
				fprintf(out, "%sn", bs);
			else if (*p == '\t')
				fprintf(out, "%st", bs);
			else if (*p < 0x20 || *p >= 0x7f)
				fprintf(out, "%sx%02x", bs, *p);
			else if (*p == '"' && prom)
				fputs("\\\"", out);
			else
				putc(*p, out);
		}
	}
}

void fmt_name(FILE *out, const char *name)
{
	escape_name(out, name, 0);
}

void fmt_json_string(FILE *out, const char *s)
{
	putc('"', out);
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = utf8_len(p);
		if (n == 0) {
			fputs("\\ufffd", out);
			p++;
			continue;
		}
		if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) { /* C1 controls */
			fprintf(out, "\\u%04x", p[1]);
			p += n;
			continue;
		}
		if (n > 1) {
			fwrite(p, 1, (size_t)n, out);
			p += n;
			continue;
		}
		switch (*p) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\t': fputs("\\t", out); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(out, "\\u%04x", *p);
			else
				putc(*p, out);
		}
		p++;
	}
	putc('"', out);
}

void fmt_prom_label(FILE *out, const char *s)
{
	/* Text exposition format: label values are UTF-8 and escape \, " and
	 * newline, and have no escape for other bytes. The value is the name
	 * as the text output prints it, so that two names never give one
	 * series (a scrape with the same series twice is refused whole). */
	putc('"', out);
	escape_name(out, s, 1);
	putc('"', out);
}

/* --- user and group names ------------------------------------------------ */

struct id_name {
	unsigned id;
	char name[64];
};
struct id_cache {
	struct id_name *v;
	size_t n, cap;
};
static struct id_cache users, groups;

static const char *id_lookup(struct id_cache *c, unsigned id, int numeric, int is_user)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].id == id)
			return c->v[i].name;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct id_name *v = realloc(c->v, cap * sizeof(*v));
		if (!v) {
			static char num[16];
			snprintf(num, sizeof(num), "%u", id);
			return num;
		}
		c->v = v;
		c->cap = cap;
	}
	struct id_name *e = &c->v[c->n++];
	e->id = id;
	snprintf(e->name, sizeof(e->name), "%u", id);
	if (!numeric) {
		char buf[4096];
		if (is_user) {
			struct passwd pw, *res = NULL;
			if (getpwuid_r(id, &pw, buf, sizeof(buf), &res) == 0 && res && res->pw_name[0])
				snprintf(e->name, sizeof(e->name), "%s", res->pw_name);
		} else {
			struct group gr, *res = NULL;
			if (getgrgid_r(id, &gr, buf, sizeof(buf), &res) == 0 && res && res->gr_name[0])
				snprintf(e->name, sizeof(e->name), "%s", res->gr_name);
		}
	}
	return e->name;
}

const char *fmt_user(const struct fmt_ctx *ctx, uid_t uid)
{
	return id_lookup(&users, uid, ctx->numeric_ids, 1);
}

const char *fmt_group(const struct fmt_ctx *ctx, gid_t gid)
{
	return id_lookup(&groups, gid, ctx->numeric_ids, 0);
}

/* --- the field table ------------------------------------------------------ */

enum vtype { V_NONE, V_STR, V_SIZE, V_U64, V_I64, V_BOOL };

struct value {
	enum vtype type;
	const char *s;
	uint64_t u;
	int64_t i;
	int has_whole;   /* V_SIZE: print the share of whole too */
	uint64_t whole;
	char buf[32];
};

#define K_HEAP (1u << SCAN_HEAP)
#define K_UNREADABLE (1u << SCAN_UNREADABLE)
#define K_OTHER (1u << SCAN_OTHER)
#define K_FILES (K_UNREADABLE | K_OTHER)
#define K_ALL (K_HEAP | K_FILES)

struct field {
	const char *label;     /* text label; NULL: JSON and metrics only */
	unsigned text_kinds;   /* kinds whose text shows this row */
	const char *json;      /* JSON member (a V_SIZE with a whole adds NAME_percent) */
	unsigned json_kinds;
	const char *prom_heap; /* metric for heaps, labelled heap, creator, command, orphaned */
	const char *prom_file; /* metric for other files, labelled file, type */
	const char *help;
	void (*get)(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v);
};

static void get_type(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_STR;
	v->s = e->kind == SCAN_HEAP ? "REDHAWK heap" :
	       e->kind == SCAN_UNREADABLE ? "REDHAWK heap (unreadable)" : "other";
}

static void get_json_type(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_STR;
	v->s = e->kind == SCAN_HEAP ? "heap" : e->kind == SCAN_UNREADABLE ? "unreadable" : "other";
}

static void get_format(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_STR;
	v->s = e->info.kind == RH_HEAP_REDHAWK22 ? "redhawk-2.2" : "native";
}

static void get_file_size(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_SIZE;
	v->u = e->st.st_size > 0 ? (uint64_t)e->st.st_size : 0;
}

static void get_allocated(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_SIZE;
	/* st_blocks counts 512-byte units whatever the block size (stat(2)). */
	v->u = e->st.st_blocks > 0 ? (uint64_t)e->st.st_blocks * 512 : 0;
}

static void get_heap_size(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_SIZE;
	v->u = e->info.heap_size;
}

static void get_heap_used(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_SIZE;
	v->u = e->info.heap_used;
	v->has_whole = 1;
	v->whole = e->info.heap_size;
}

static void get_creator(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_I64;
	v->i = e->info.creator_pid;
}

static void get_orphaned(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_BOOL;
	v->i = e->info.orphaned != 0;
}

static void get_refcount(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_I64;
	v->i = e->info.refcount;
}

static void get_user(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	v->type = V_STR;
	v->s = fmt_user(ctx, e->st.st_uid);
}

static void get_uid(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_U64;
	v->u = e->st.st_uid;
}

static void get_group(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	v->type = V_STR;
	v->s = fmt_group(ctx, e->st.st_gid);
}

static void get_gid(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	v->type = V_U64;
	v->u = e->st.st_gid;
}

static void get_mode(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	/* Permission bits in octal without a leading zero, as REDHAWK 2.2. */
	snprintf(v->buf, sizeof(v->buf), "%o", (unsigned)(e->st.st_mode & 0777));
	v->type = V_STR;
	v->s = v->buf;
}

static void get_command(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	/* The header's copy is NUL-terminated by the writer, but the file is
	 * untrusted: bound it. */
	size_t n = strnlen(e->info.command, sizeof(e->info.command));
	if (n == 0)
		return;
	if (n >= sizeof(v->buf))
		n = sizeof(v->buf) - 1;
	memcpy(v->buf, e->info.command, n);
	v->buf[n] = 0;
	v->type = V_STR;
	v->s = v->buf;
}

static void get_live_blocks(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	if (e->info.live_blocks < 0)
		return;
	v->type = V_I64;
	v->i = e->info.live_blocks;
}

static void get_error(const struct fmt_ctx *ctx, const struct scan_entry *e, struct value *v)
{
	(void)ctx;
	if (!e->error)
		return;
	v->type = V_STR;
	v->s = e->error;
}

static const struct field fields[] = {
	{ "type", K_ALL, NULL, 0, NULL, NULL, NULL, get_type },
	{ NULL, 0, "type", K_ALL, NULL, NULL, NULL, get_json_type },
	{ NULL, 0, "format", K_HEAP, NULL, NULL, NULL, get_format },
	{ "file size", K_ALL, "file_size", K_ALL,
	  "redhawk_shm_heap_file_size_bytes", "redhawk_shm_file_size_bytes",
	  "Size of the file in bytes (files are sparse).", get_file_size },
	{ "allocated", K_FILES, "allocated", K_ALL,
	  "redhawk_shm_heap_allocated_bytes", "redhawk_shm_file_allocated_bytes",
	  "Bytes of shared memory the file holds (st_blocks * 512).", get_allocated },
	{ "heap size", K_HEAP, "heap_size", K_HEAP, "redhawk_shm_heap_size_bytes", NULL,
	  "Bytes of the heap's data superblocks.", get_heap_size },
	{ "heap used", K_HEAP, "heap_used", K_HEAP, "redhawk_shm_heap_used_bytes", NULL,
	  "Bytes of live blocks in the heap, as requested.", get_heap_used },
	{ "creator", K_HEAP, "creator", K_HEAP, NULL, NULL, NULL, get_creator },
	{ "orphaned", K_HEAP, "orphaned", K_HEAP, "redhawk_shm_heap_orphaned", NULL,
	  "1 when the process that created the heap is gone.", get_orphaned },
	{ "refcount", K_HEAP, "refcount", K_HEAP, "redhawk_shm_heap_refcount", NULL,
	  "Live processes that have the heap open, the creator included.", get_refcount },
	{ "user", K_ALL, "user", K_ALL, NULL, NULL, NULL, get_user },
	{ NULL, 0, "uid", K_ALL, NULL, NULL, NULL, get_uid },
	{ "group", K_ALL, "group", K_ALL, NULL, NULL, NULL, get_group },
	{ NULL, 0, "gid", K_ALL, NULL, NULL, NULL, get_gid },
	{ "mode", K_ALL, "mode", K_ALL, NULL, NULL, NULL, get_mode },
	/* New rows: after mode, as the contract asks. */
	{ "command", K_HEAP, "command", K_HEAP, NULL, NULL, NULL, get_command },
	{ NULL, 0, "live_blocks", K_HEAP, "redhawk_shm_heap_live_blocks", NULL,
	  "Live blocks in the heap.", get_live_blocks },
	{ "error", K_UNREADABLE, "error", K_UNREADABLE, NULL, NULL, NULL, get_error },
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static void value_text(const struct fmt_ctx *ctx, const struct value *v, char *out, size_t size)
{
	char a[FMT_SIZE_LEN], b[FMT_SIZE_LEN];
	switch (v->type) {
	case V_STR:
		snprintf(out, size, "%s", v->s);
		break;
	case V_SIZE:
		if (v->has_whole)
			snprintf(out, size, "%s (%s)", fmt_size(a, v->u, ctx->size),
				fmt_percent(b, v->u, v->whole));
		else
			snprintf(out, size, "%s", fmt_size(a, v->u, ctx->size));
		break;
	case V_U64:
		snprintf(out, size, "%" PRIu64, v->u);
		break;
	case V_I64:
		snprintf(out, size, "%" PRId64, v->i);
		break;
	case V_BOOL:
		snprintf(out, size, "%s", v->i ? "true" : "false");
		break;
	case V_NONE:
		out[0] = 0;
		break;
	}
}

void fmt_entry_text(FILE *out, const struct fmt_ctx *ctx, const struct scan_entry *e)
{
	unsigned kind = 1u << e->kind;
	for (size_t i = 0; i < NFIELDS; i++) {
		const struct field *f = &fields[i];
		if (!f->label || !(f->text_kinds & kind))
			continue;
		struct value v = { 0 };
		f->get(ctx, e, &v);
		if (v.type == V_NONE)
			continue;
		char text[512];
		value_text(ctx, &v, text, sizeof(text));
		if (v.type == V_STR) { /* strings from the file: escape them */
			int pad = 13 - (int)strlen(f->label) - 1;
			fprintf(out, "  %s:%*s", f->label, pad > 1 ? pad : 1, "");
			fmt_name(out, v.s);
			putc('\n', out);
		} else {
			fmt_label(out, f->label, text);
		}
	}
}

void fmt_entry_json(FILE *out, const struct fmt_ctx *ctx, const struct scan_entry *e)
{
	unsigned kind = 1u << e->kind;
	fputs("\"name\": ", out);
	fmt_json_string(out, e->name);
	/* JSON strings hold text only: a name with bytes that are not UTF-8
	 * (U+FFFD in "name") also as the text output prints it, which tells
	 * every name apart. */
	for (const unsigned char *p = (const unsigned char *)e->name; *p;) {
		int n = utf8_len(p);
		if (n == 0) {
			char *text = NULL;
			size_t len = 0;
			FILE *m = open_memstream(&text, &len);
			if (m) {
				escape_name(m, e->name, 0);
				if (fclose(m) == 0) {
					fputs(", \"name_text\": ", out);
					fmt_json_string(out, text);
				}
			}
			free(text);
			break;
		}
		p += n;
	}
	for (size_t i = 0; i < NFIELDS; i++) {
		const struct field *f = &fields[i];
		if (!f->json || !(f->json_kinds & kind))
			continue;
		struct value v = { 0 };
		f->get(ctx, e, &v);
		fprintf(out, ", \"%s\": ", f->json);
		switch (v.type) {
		case V_NONE:
			fputs("null", out);
			break;
		case V_STR:
			fmt_json_string(out, v.s);
			break;
		case V_SIZE:
		case V_U64:
			fprintf(out, "%" PRIu64, v.u);
			if (v.has_whole)
				fprintf(out, ", \"%s_percent\": %.1f", f->json, percent(v.u, v.whole));
			break;
		case V_I64:
			fprintf(out, "%" PRId64, v.i);
			break;
		case V_BOOL:
			fputs(v.i ? "true" : "false", out);
			break;
		}
	}
}

void fmt_fs_text(FILE *out, const struct fmt_ctx *ctx, const struct fs_info *fs)
{
	char a[FMT_SIZE_LEN], b[FMT_SIZE_LEN];
	fmt_name(out, fs->dir);
	fputs(":\n", out);
	fprintf(out, "  size: %s\n", fmt_size(a, fs->size, ctx->size));
	fprintf(out, "  free: %s (%s)\n", fmt_size(a, fs->free, ctx->size),
		fmt_percent(b, fs->free, fs->size));
}

void fmt_fs_json(FILE *out, const struct fs_info *fs)
{
	fputs("\"dir\": ", out);
	fmt_json_string(out, fs->dir);
	fprintf(out, ", \"size\": %" PRIu64 ", \"free\": %" PRIu64 ", \"free_percent\": %.1f",
		fs->size, fs->free, percent(fs->free, fs->size));
}

static void prom_heap_labels(FILE *out, const struct fmt_ctx *ctx, const struct fs_info *fs,
	const struct scan_entry *e)
{
	struct value cmd = { 0 };
	get_command(ctx, e, &cmd);
	char pid[24];
	snprintf(pid, sizeof(pid), "%d", (int)e->info.creator_pid);
	fputs("{dir=", out);
	fmt_prom_label(out, fs->dir);
	fputs(",heap=", out);
	fmt_prom_label(out, e->name);
	fputs(",creator=", out);
	fmt_prom_label(out, pid);
	fputs(",command=", out);
	fmt_prom_label(out, cmd.type == V_STR ? cmd.s : "");
	fputs(",orphaned=", out);
	fmt_prom_label(out, e->info.orphaned ? "true" : "false");
	fputs("}", out);
}

static void prom_file_labels(FILE *out, const struct fs_info *fs, const struct scan_entry *e)
{
	fputs("{dir=", out);
	fmt_prom_label(out, fs->dir);
	fputs(",file=", out);
	fmt_prom_label(out, e->name);
	fputs(",type=", out);
	fmt_prom_label(out, e->kind == SCAN_UNREADABLE ? "unreadable" : "other");
	fputs("}", out);
}

static void prom_value(FILE *out, const struct value *v)
{
	if (v->type == V_I64 || v->type == V_BOOL)
		fprintf(out, " %" PRId64 "\n", v->i);
	else
		fprintf(out, " %" PRIu64 "\n", v->u);
}

static void prom_head(FILE *out, const char *name, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

void fmt_prometheus(FILE *out, const struct fmt_ctx *ctx, const struct fs_info *fs,
	const struct scan_entry *const *entries, size_t n)
{
	size_t heaps = 0, orphans = 0, unreadable = 0, files = 0;
	for (size_t i = 0; i < n; i++) {
		heaps += entries[i]->kind == SCAN_HEAP;
		orphans += entries[i]->kind == SCAN_HEAP && entries[i]->info.orphaned;
		unreadable += entries[i]->kind == SCAN_UNREADABLE;
		files += entries[i]->kind != SCAN_HEAP;
	}
	prom_head(out, "redhawk_shm_filesystem_size_bytes", "Size of the shared-memory filesystem.");
	fputs("redhawk_shm_filesystem_size_bytes{dir=", out);
	fmt_prom_label(out, fs->dir);
	fprintf(out, "} %" PRIu64 "\n", fs->size);
	prom_head(out, "redhawk_shm_filesystem_free_bytes", "Free bytes of the shared-memory filesystem.");
	fputs("redhawk_shm_filesystem_free_bytes{dir=", out);
	fmt_prom_label(out, fs->dir);
	fprintf(out, "} %" PRIu64 "\n", fs->free);
	prom_head(out, "redhawk_shm_heaps", "REDHAWK heaps in the folder.");
	fputs("redhawk_shm_heaps{dir=", out);
	fmt_prom_label(out, fs->dir);
	fprintf(out, "} %zu\n", heaps);
	prom_head(out, "redhawk_shm_heaps_orphaned", "Heaps whose creator is gone.");
	fputs("redhawk_shm_heaps_orphaned{dir=", out);
	fmt_prom_label(out, fs->dir);
	fprintf(out, "} %zu\n", orphans);
	prom_head(out, "redhawk_shm_heaps_unreadable", "Heaps that could not be read.");
	fputs("redhawk_shm_heaps_unreadable{dir=", out);
	fmt_prom_label(out, fs->dir);
	fprintf(out, "} %zu\n", unreadable);

	/* One metric family at a time: the format wants a family's samples together. */
	for (size_t i = 0; i < NFIELDS; i++) {
		const struct field *f = &fields[i];
		if (f->prom_heap && heaps) {
			int head = 0;
			for (size_t j = 0; j < n; j++) {
				const struct scan_entry *e = entries[j];
				if (e->kind != SCAN_HEAP)
					continue;
				struct value v = { 0 };
				f->get(ctx, e, &v);
				if (v.type == V_NONE)
					continue;
				if (!head++)
					prom_head(out, f->prom_heap, f->help);
				fputs(f->prom_heap, out);
				prom_heap_labels(out, ctx, fs, e);
				prom_value(out, &v);
			}
		}
		if (f->prom_file && files) {
			prom_head(out, f->prom_file, f->help);
			for (size_t j = 0; j < n; j++) {
				const struct scan_entry *e = entries[j];
				if (e->kind == SCAN_HEAP)
					continue;
				struct value v = { 0 };
				f->get(ctx, e, &v);
				fputs(f->prom_file, out);
				prom_file_labels(out, fs, e);
				prom_value(out, &v);
			}
		}
	}
}

void fmt_error(const char *prog, const char *object, const char *fmt, va_list ap)
{
	fflush(stdout);
	fprintf(stderr, "%s: ", prog);
	if (object) {
		fmt_name(stderr, object);
		fputs(": ", stderr);
	}
	vfprintf(stderr, fmt, ap);
	putc('\n', stderr);
}
