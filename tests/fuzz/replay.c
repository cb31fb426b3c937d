/* SPDX-License-Identifier: MIT */
/*
 * Replays tests/fuzz/corpus/ (or the folders and files given) through the
 * fuzz target, for make check: no file may crash the reader, a file named
 * bad-* must be refused with a reason, and one named ok-* must read whole.
 */
#define RH_FUZZ_NO_ENTRY
#include "fuzz_reader.c"

#include <dirent.h>
#include <sys/stat.h>

static int failures, files;

static int replay_file(const char *path, const char *name)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(path);
		return -1;
	}
	uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) {
		fprintf(stderr, "%s: cannot read\n", path);
		close(fd);
		free(buf);
		return -1;
	}
	close(fd);
	int rc = fuzz_one(buf, (size_t)st.st_size);
	free(buf);
	files++;
	if (!strncmp(name, "bad-", 4) && (rc == 0 || rc == 3)) {
		fprintf(stderr, "FAIL %s: accepted (%s), expected a refusal\n", path,
			rc == 3 ? "not a heap" : "read whole");
		failures++;
	} else if (!strncmp(name, "ok-", 3) && rc != 0) {
		fprintf(stderr, "FAIL %s: refused (%d), expected to read whole\n", path, rc);
		failures++;
	}
	return 0;
}

static int replay_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		const char *slash = strrchr(path, '/');
		return replay_file(path, slash ? slash + 1 : path);
	}
	struct dirent **names;
	int n = scandir(path, &names, NULL, alphasort);
	if (n < 0) {
		perror(path);
		return -1;
	}
	int rc = 0;
	for (int i = 0; i < n; i++) {
		char file[4096];
		if (names[i]->d_name[0] != '.') {
			snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name);
			if (replay_file(file, names[i]->d_name) < 0)
				rc = -1;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	int rc = 0;
	if (argc < 2)
		rc = replay_path("tests/fuzz/corpus");
	for (int i = 1; i < argc; i++)
		if (replay_path(argv[i]) < 0)
			rc = -1;
	printf("replay: %d files, %d failures\n", files, failures);
	return rc < 0 || failures ? 1 : 0;
}
