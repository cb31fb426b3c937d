/* SPDX-License-Identifier: MIT */
/*
 * Formatting of the tools: sizes and percentages as REDHAWK 2.2 prints them,
 * values in column 16, the seed's example entries reproduced line by line,
 * escaping of hostile names, and the shape of the Prometheus exposition.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fmt.h"

/* Runs fn with a memory stream and returns what it wrote (caller frees). */
#define CAPTURE(buf, call) do { \
		size_t len_; \
		FILE *out = open_memstream(&(buf), &len_); \
		assert_non_null(out); \
		call; \
		fclose(out); \
	} while (0)

static void test_fmt_size_auto_matches_redhawk(void **state)
{
	(void)state;
	char b[FMT_SIZE_LEN];
	assert_string_equal(fmt_size(b, 0, SIZE_AUTO), "0");
	assert_string_equal(fmt_size(b, 1023, SIZE_AUTO), "1023");
	assert_string_equal(fmt_size(b, 1024, SIZE_AUTO), "1.0K");
	assert_string_equal(fmt_size(b, 32768, SIZE_AUTO), "32.0K");
	assert_string_equal(fmt_size(b, 63019008, SIZE_AUTO), "60.1M");
	assert_string_equal(fmt_size(b, 62914560, SIZE_AUTO), "60.0M");
	assert_string_equal(fmt_size(b, 8267812864ull, SIZE_AUTO), "7.7G");
	/* REDHAWK divides while >= 1024, so just under 1 MiB is 1024.0K. */
	assert_string_equal(fmt_size(b, 1048575, SIZE_AUTO), "1024.0K");
	assert_string_equal(fmt_size(b, 1ull << 40, SIZE_AUTO), "1.0T");
	assert_string_equal(fmt_size(b, UINT64_MAX, SIZE_AUTO), "16.0E");
}

static void test_fmt_size_bytes_and_kib(void **state)
{
	(void)state;
	char b[FMT_SIZE_LEN];
	assert_string_equal(fmt_size(b, 63019008, SIZE_BYTES), "63019008");
	assert_string_equal(fmt_size(b, 1048576, SIZE_KIB), "1024K");
	assert_string_equal(fmt_size(b, 1023, SIZE_KIB), "0K");
	assert_string_equal(fmt_size(b, 4097, SIZE_KIB), "4K");
}

static void test_fmt_parse_size_format(void **state)
{
	(void)state;
	enum size_format f = SIZE_AUTO;
	assert_int_equal(fmt_parse_size_format("b", &f), 0);
	assert_int_equal(f, SIZE_BYTES);
	assert_int_equal(fmt_parse_size_format("K", &f), 0);
	assert_int_equal(f, SIZE_KIB);
	assert_int_equal(fmt_parse_size_format("Auto", &f), 0);
	assert_int_equal(f, SIZE_AUTO);
	assert_int_equal(fmt_parse_size_format("m", &f), -1);
	assert_int_equal(fmt_parse_size_format("", &f), -1);
}

static void test_fmt_percent_one_decimal(void **state)
{
	(void)state;
	char b[FMT_SIZE_LEN];
	assert_string_equal(fmt_percent(b, 32768, 62914560), "0.1%");
	assert_string_equal(fmt_percent(b, 987, 1000), "98.7%");
	assert_string_equal(fmt_percent(b, 1, 1), "100.0%");
	assert_string_equal(fmt_percent(b, 5, 0), "0.0%");
}

static void test_fmt_label_puts_value_in_column_16(void **state)
{
	(void)state;
	static const char *labels[] = { "type", "file size", "heap size", "heap used", "creator",
		"orphaned", "refcount", "user", "group", "mode", "allocated", "command" };
	for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
		char *s = NULL;
		CAPTURE(s, fmt_label(out, labels[i], "X"));
		assert_int_equal(strchr(s, 'X') - s, 15); /* column 16, counted from 1 */
		assert_memory_equal(s, "  ", 2);
		assert_int_equal(s[2 + strlen(labels[i])], ':');
		free(s);
	}
}

static struct scan_entry seed_heap(void)
{
	struct scan_entry e;
	memset(&e, 0, sizeof(e));
	e.name = "heap-2286";
	e.kind = SCAN_HEAP;
	e.st.st_size = 63019008;
	e.st.st_blocks = 63019008 / 512;
	e.st.st_uid = 1000;
	e.st.st_gid = 1000;
	e.st.st_mode = 0100640;
	e.info.kind = RH_HEAP_NATIVE;
	e.info.heap_size = 62914560;
	e.info.heap_used = 32768;
	e.info.creator_pid = 2286;
	e.info.refcount = 2;
	e.info.live_blocks = 4;
	return e;
}

static void test_fmt_entry_text_is_the_seed_example(void **state)
{
	(void)state;
	struct fmt_ctx ctx = { .size = SIZE_AUTO, .numeric_ids = 1 };
	struct scan_entry e = seed_heap();
	char *s = NULL;
	CAPTURE(s, fmt_entry_text(out, &ctx, &e));
	assert_string_equal(s,
		"  type:        REDHAWK heap\n"
		"  file size:   60.1M\n"
		"  heap size:   60.0M\n"
		"  heap used:   32.0K (0.1%)\n"
		"  creator:     2286\n"
		"  orphaned:    false\n"
		"  refcount:    2\n"
		"  user:        1000\n"
		"  group:       1000\n"
		"  mode:        640\n");
	free(s);

	/* The command comes after mode; a REDHAWK 2.2 heap has none. */
	strcpy(e.info.command, "producer");
	CAPTURE(s, fmt_entry_text(out, &ctx, &e));
	assert_non_null(strstr(s, "  mode:        640\n  command:     producer\n"));
	free(s);
}

static void test_fmt_entry_text_other_file(void **state)
{
	(void)state;
	struct fmt_ctx ctx = { .size = SIZE_AUTO, .numeric_ids = 1 };
	struct scan_entry e;
	memset(&e, 0, sizeof(e));
	e.name = "pulse-shm-2249902370";
	e.kind = SCAN_OTHER;
	e.st.st_size = 64 << 20;
	e.st.st_blocks = 8;
	e.st.st_uid = 120;
	e.st.st_gid = 121;
	e.st.st_mode = 0100400;
	char *s = NULL;
	CAPTURE(s, fmt_entry_text(out, &ctx, &e));
	assert_string_equal(s,
		"  type:        other\n"
		"  file size:   64.0M\n"
		"  allocated:   4.0K\n"
		"  user:        120\n"
		"  group:       121\n"
		"  mode:        400\n");
	free(s);
}

static void test_fmt_entry_text_unreadable_gives_reason(void **state)
{
	(void)state;
	struct fmt_ctx ctx = { .size = SIZE_BYTES, .numeric_ids = 1 };
	struct scan_entry e = seed_heap();
	e.kind = SCAN_UNREADABLE;
	e.error = "truncated header";
	char *s = NULL;
	CAPTURE(s, fmt_entry_text(out, &ctx, &e));
	assert_string_equal(s,
		"  type:        REDHAWK heap (unreadable)\n"
		"  file size:   63019008\n"
		"  allocated:   63019008\n"
		"  user:        1000\n"
		"  group:       1000\n"
		"  mode:        640\n"
		"  error:       truncated header\n");
	free(s);
}

static void test_fmt_fs_text_is_the_seed_example(void **state)
{
	(void)state;
	struct fmt_ctx ctx = { .size = SIZE_AUTO };
	struct fs_info fs = { .dir = "/dev/shm", .size = 8267812864ull, .free = 8160000000ull };
	char *s = NULL;
	CAPTURE(s, fmt_fs_text(out, &ctx, &fs));
	assert_string_equal(s, "/dev/shm:\n  size: 7.7G\n  free: 7.6G (98.7%)\n");
	free(s);
}

static void test_fmt_name_escapes_control_characters(void **state)
{
	(void)state;
	char *s = NULL;
	CAPTURE(s, fmt_name(out, "heap-1\n  orphaned:    true\x1b[2J\\"));
	assert_string_equal(s, "heap-1\\n  orphaned:    true\\x1b[2J\\\\");
	free(s);
	/* C1 controls, bidirectional controls (U+202E turns what follows
	 * around) and bytes that are not UTF-8 (a lone 0x9b is CSI to an
	 * 8-bit terminal); other UTF-8 stays. */
	CAPTURE(s, fmt_name(out, "a\xc2\x9b" "b\xe2\x80\xae" "c\x9b\xff\xc3\xa9\xe2\x81\xa6"));
	assert_string_equal(s, "a\\xc2\\x9bb\\xe2\\x80\\xaec\\x9b\\xff\xc3\xa9\\xe2\\x81\\xa6");
	free(s);
}

static void test_fmt_json_string_escapes_and_repairs_utf8(void **state)
{
	(void)state;
	char *s = NULL;
	CAPTURE(s, fmt_json_string(out, "a\"b\\c\n\x01 \xc3\xa9 \xff \xc0\xaf"));
	assert_string_equal(s, "\"a\\\"b\\\\c\\n\\u0001 \xc3\xa9 \\ufffd \\ufffd\\ufffd\"");
	free(s);
}

static void test_fmt_entry_json_members(void **state)
{
	(void)state;
	struct fmt_ctx ctx = { .size = SIZE_AUTO, .numeric_ids = 1 };
	struct scan_entry e = seed_heap();
	char *s = NULL;
	CAPTURE(s, fmt_entry_json(out, &ctx, &e));
	/* Sizes in bytes whatever --format says; stable member names. */
	assert_non_null(strstr(s, "\"name\": \"heap-2286\""));
	assert_non_null(strstr(s, "\"type\": \"heap\""));
	assert_non_null(strstr(s, "\"file_size\": 63019008"));
	assert_non_null(strstr(s, "\"heap_used\": 32768, \"heap_used_percent\": 0.1"));
	assert_non_null(strstr(s, "\"orphaned\": false"));
	assert_non_null(strstr(s, "\"mode\": \"640\""));
	assert_non_null(strstr(s, "\"command\": null"));
	assert_null(strstr(s, "\"error\""));
	assert_null(strstr(s, "\"name_text\""));
	free(s);
	/* Two names JSON strings cannot tell apart (a byte that is not UTF-8,
	 * and U+FFFD itself): name_text tells them apart. */
	e.name = "heap-15\xff";
	CAPTURE(s, fmt_entry_json(out, &ctx, &e));
	assert_non_null(strstr(s, "\"name\": \"heap-15\\ufffd\", \"name_text\": \"heap-15\\\\xff\""));
	free(s);
	e.name = "heap-15\xef\xbf\xbd";
	CAPTURE(s, fmt_entry_json(out, &ctx, &e));
	assert_non_null(strstr(s, "\"name\": \"heap-15\xef\xbf\xbd\", \"type\""));
	free(s);
}

static void test_fmt_prometheus_is_valid_exposition(void **state)
{
	(void)state;
	struct fmt_ctx ctx = { .size = SIZE_AUTO, .numeric_ids = 1 };
	struct scan_entry h1 = seed_heap(), h2 = seed_heap(), o = seed_heap();
	h2.name = "heap-77";
	h2.info.orphaned = 1;
	strcpy(h2.info.command, "a\"b\\c");
	o.name = "other";
	o.kind = SCAN_OTHER;
	const struct scan_entry *v[] = { &h1, &h2, &o };
	struct fs_info fs = { .dir = "/dev/shm", .size = 100, .free = 50 };
	char *s = NULL;
	CAPTURE(s, fmt_prometheus(out, &ctx, &fs, v, 3));

	/* Every family: HELP, then TYPE gauge, then its samples, and only once. */
	char seen[64][80];
	int nseen = 0;
	char family[80] = "";
	for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
		char name[80];
		if (!strncmp(line, "# HELP ", 7)) {
			assert_int_equal(sscanf(line + 7, "%79s", name), 1);
			for (int i = 0; i < nseen; i++)
				assert_string_not_equal(seen[i], name);
			assert_true(nseen < 64);
			strcpy(seen[nseen++], name);
			strcpy(family, name);
			continue;
		}
		if (!strncmp(line, "# TYPE ", 7)) {
			assert_int_equal(sscanf(line + 7, "%79s", name), 1);
			assert_string_equal(name, family);
			assert_non_null(strstr(line, " gauge"));
			continue;
		}
		/* A sample: name{labels} value, name being the current family. */
		size_t n = strcspn(line, "{ ");
		assert_int_equal(n, strlen(family));
		assert_memory_equal(line, family, n);
		char *value = strrchr(line, ' ');
		assert_non_null(value);
		char *end;
		strtod(value + 1, &end);
		assert_int_equal(*end, 0);
	}
	assert_true(nseen >= 8);
	free(s);

	CAPTURE(s, fmt_prometheus(out, &ctx, &fs, v, 3));
	assert_non_null(strstr(s, "redhawk_shm_heap_used_bytes{dir=\"/dev/shm\",heap=\"heap-77\","
		"creator=\"2286\",command=\"a\\\"b\\\\\\\\c\",orphaned=\"true\"} 32768\n"));
	assert_non_null(strstr(s, "redhawk_shm_filesystem_free_bytes{dir=\"/dev/shm\"} 50\n"));
	assert_non_null(strstr(s, "redhawk_shm_file_size_bytes{dir=\"/dev/shm\",file=\"other\",type=\"other\"} 63019008\n"));
	free(s);

	/* Label values must be UTF-8, and two names must not give one series
	 * (the scrape would be refused): the value is the name as text prints
	 * it, \xNN for a byte that is not UTF-8, a backslash doubled; a valid
	 * sequence stays. */
	o.name = "x\xff\xc3\xa9";
	CAPTURE(s, fmt_prometheus(out, &ctx, &fs, v, 3));
	assert_non_null(strstr(s, "file=\"x\\\\xff\xc3\xa9\""));
	free(s);
	o.name = "x\xfe\xc3\xa9";
	CAPTURE(s, fmt_prometheus(out, &ctx, &fs, v, 3));
	assert_non_null(strstr(s, "file=\"x\\\\xfe\xc3\xa9\""));
	free(s);
	o.name = "x\\xff\xc3\xa9"; /* the four characters, not the byte */
	CAPTURE(s, fmt_prometheus(out, &ctx, &fs, v, 3));
	assert_non_null(strstr(s, "file=\"x\\\\\\\\xff\xc3\xa9\""));
	free(s);
	/* Control characters, C1 ones too, have no escape there but this. */
	o.name = "a\x1b]0;t\x07\xc2\x9b" "b";
	CAPTURE(s, fmt_prometheus(out, &ctx, &fs, v, 3));
	assert_non_null(strstr(s, "file=\"a\\\\x1b]0;t\\\\x07\\\\xc2\\\\x9b" "b\""));
	free(s);
	/* JSON escapes them. */
	char *j = NULL;
	size_t jn;
	FILE *jo = open_memstream(&j, &jn);
	fmt_json_string(jo, o.name);
	fclose(jo);
	assert_string_equal(j, "\"a\\u001b]0;t\\u0007\\u009b" "b\"");
	free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fmt_size_auto_matches_redhawk),
		cmocka_unit_test(test_fmt_size_bytes_and_kib),
		cmocka_unit_test(test_fmt_parse_size_format),
		cmocka_unit_test(test_fmt_percent_one_decimal),
		cmocka_unit_test(test_fmt_label_puts_value_in_column_16),
		cmocka_unit_test(test_fmt_entry_text_is_the_seed_example),
		cmocka_unit_test(test_fmt_entry_text_other_file),
		cmocka_unit_test(test_fmt_entry_text_unreadable_gives_reason),
		cmocka_unit_test(test_fmt_fs_text_is_the_seed_example),
		cmocka_unit_test(test_fmt_name_escapes_control_characters),
		cmocka_unit_test(test_fmt_json_string_escapes_and_repairs_utf8),
		cmocka_unit_test(test_fmt_entry_json_members),
		cmocka_unit_test(test_fmt_prometheus_is_valid_exposition),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
