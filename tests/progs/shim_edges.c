/* SPDX-License-Identifier: MIT */
/*
 * Edge cases of the shim, run under LD_PRELOAD by tests/preload/t-shim-edges.sh.
 * Plain malloc only (no rh_shm_* calls, which would link a second copy of the
 * heap into this program); what the shim knows is asked through dlsym.
 *
 *   thread-exits N   N threads one after another, each ending after glibc
 *                    freed its per-thread data late (dlerror's message); the
 *                    heap's counter slots must not run out
 *   overflow         realloc and pvalloc of sizes near SIZE_MAX: NULL, ENOMEM
 *   fork-depth N     N nested fork generations, each child freeing the block
 *                    its parent allocated
 *   huge-align       an alignment the heap refuses (2 GiB) is served by the C
 *                    library, and the next large block is shared all the same
 *   fork-no-fds      forks with every descriptor taken, so the heap gets no
 *                    pipe to wait on the child's copy: the parent's writes
 *                    right after fork must still not reach the child
 *   fork-in-handler  a single-threaded program forks from a SIGALRM handler
 *                    that may interrupt an allocation holding the heap's
 *                    locks (glibc's malloc takes none there either)
 *   mlockall         mlockall(MCL_CURRENT) succeeds as it does without the
 *                    shim (the heap's unused reservation counts against
 *                    RLIMIT_MEMLOCK), and the heap still grows after it
 *   private MODE     a malloc of 8 MiB with 64 KiB of it written, and one of
 *                    64 MiB with 8 MiB written, each take (MODE private) at
 *                    most 1 MiB of the heap file (8 MiB again, after one all
 *                    written was freed, is in the file), or (MODE shared,
 *                    RH_SHMALLOC_PRIVATE_SIZE=0) all of it; either way it is a
 *                    block of the heap, calloc's zeros hold, realloc keeps the
 *                    contents, a forked child gets a copy of its own, and after
 *                    rh_shm_ref the file holds the block's contents
 *   private-fork     one thread allocates and frees 40 MiB blocks (private
 *                    pages) while the main thread forks 200 times: no child
 *                    may keep a mapping of the parent's heap file
 *   private-maps     with no memory mapping left to make (vm.max_map_count),
 *                    a 64 MiB malloc gets its pages in the heap file instead
 *                    of private ones
 *   exec-while-forking US  a thread forks again and again while the main
 *                    thread execs /bin/true after US microseconds: nothing
 *                    is left (a child copying the heap held its lock, and
 *                    the next image left the heap set aside for a live one)
 *   calloc-reuse [N] small blocks of every size from N (1) to 2 KiB are
 *                    filled, freed, and asked for again with calloc: each comes
 *                    back from the heap (the thread's cache), all zeros; with
 *                    N (RH_SHMALLOC_MIN_SIZE), calloc of N - 1 bytes does not
 *   api-corners      prints what malloc's corner cases return and leave in
 *                    errno; run with and without the shim, the two outputs
 *                    must be the same
 *   fd-taken MODE F  the program takes the numbers of the heap's descriptors
 *                    (of its file and its folder) for file F: with dup2 over
 *                    them (MODE dup2) or after closing every descriptor from 3
 *                    up (MODE closeall). The heap goes on growing, stays
 *                    locked (its mappings keep the locked open file), forks
 *                    right, and F is never written.
 * Exit status 0 when the case holds, 1 when it does not (with a message).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "format.h"

static void *thread_body(void *arg)
{
	(void)arg;
	free(malloc(100));
	/* glibc keeps the message per thread and frees it at thread exit, after
	 * the key destructors (the shim's among them) have run. */
	if (!dlopen("/nonexistent/librh-shim-edges.so", RTLD_NOW))
		(void)dlerror();
	return NULL;
}

/* Counter slots of our heap that ever counted an allocation or a free, read
 * from the file as a tool would (FORMAT.md: the header's counters). */
static int slots_used(void)
{
	const char *(*heap_name)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "rh_shm_heap_name");
	const char *dir = getenv("RH_SHM_DIR");
	char path[512];
	struct heap_counter c[RH_MAX_COUNTERS];
	if (!heap_name || !heap_name()) {
		fprintf(stderr, "no heap: run this under the shim\n");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/dev/shm", heap_name());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread(fd, c, sizeof(c), offsetof(struct heap_header, counters)) != (ssize_t)sizeof(c)) {
		perror(path);
		return -1;
	}
	close(fd);
	int n = 0;
	for (unsigned i = 0; i < RH_MAX_COUNTERS; i++)
		n += c[i].allocs != 0 || c[i].frees != 0;
	return n;
}

static int thread_exits(int n)
{
	free(malloc(10)); /* the main thread takes its slot first */
	for (int i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, thread_body, NULL) != 0 || pthread_join(t, NULL) != 0) {
			fprintf(stderr, "thread %d: cannot start\n", i);
			return 1;
		}
	}
	int used = slots_used();
	if (used < 0)
		return 1;
	printf("%d threads, one after another: %d counter slots used\n", n, used);
	/* The main thread's, the shared slot 0, and one reused by each thread in
	 * turn; a slot lost per thread would use them all. */
	if (used > 4) {
		fprintf(stderr, "%d counter slots used by %d threads that never ran at once\n", used, n);
		return 1;
	}
	return 0;
}

static int overflow(void)
{
	int bad = 0;
	/* A LARGE block, free pages after it. Volatile: a failed realloc leaves
	 * it valid, which the compiler's use-after-free warning cannot know. */
	unsigned char *volatile p = malloc(100000);
	if (!p)
		return 1;
	memset(p, 0x5c, 100000);
	size_t usable = malloc_usable_size(p);
	static const size_t sizes[] = { SIZE_MAX - 100, SIZE_MAX - 4096, SIZE_MAX };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		errno = 0;
		void *q = realloc(p, sizes[i]);
		if (q || errno != ENOMEM) {
			fprintf(stderr, "realloc(p, %zu) = %p (p = %p), errno %d: expected NULL, ENOMEM\n",
				sizes[i], q, (void *)p, errno);
			return 1; /* p may be gone */
		}
		if (malloc_usable_size(p) != usable) {
			fprintf(stderr, "a failed realloc changed the block's usable size\n");
			bad = 1;
		}
		for (size_t k = 0; k < 100000; k++)
			if (p[k] != 0x5c) {
				fprintf(stderr, "a failed realloc changed byte %zu of the block\n", k);
				bad = 1;
				break;
			}
	}
	free(p);
	static const size_t vsizes[] = { SIZE_MAX - 10, SIZE_MAX - 4095, SIZE_MAX };
	for (size_t i = 0; i < sizeof(vsizes) / sizeof(vsizes[0]); i++) {
		errno = 0;
		void *v = pvalloc(vsizes[i]);
		if (v || errno != ENOMEM) {
			fprintf(stderr, "pvalloc(%zu) = %p, errno %d: expected NULL, ENOMEM\n", vsizes[i],
				v, errno);
			bad = 1;
		}
	}
	if (!bad)
		printf("realloc and pvalloc near SIZE_MAX: NULL, ENOMEM\n");
	return bad;
}

/* Each generation allocates, then forks; the child frees what its parent
 * allocated (legal: the child owns a private copy, as with glibc malloc). */
static int fork_depth(int depth)
{
	for (int gen = 0; gen < depth; gen++) {
		char *p = malloc(64);
		if (!p)
			return 1;
		strcpy(p, "parent data");
		fflush(NULL);
		pid_t c = fork();
		if (c < 0) {
			perror("fork");
			return 1;
		}
		if (c > 0) {
			int st;
			if (waitpid(c, &st, 0) != c)
				_exit(1);
			if (WIFSIGNALED(st))
				fprintf(stderr, "generation %d: killed by signal %d\n", gen + 1, WTERMSIG(st));
			if (gen == 0 && st == 0)
				printf("%d generations of fork, each freeing its parent's block\n", depth);
			exit(WIFSIGNALED(st) ? 1 : WEXITSTATUS(st));
		}
		if (strcmp(p, "parent data") != 0) {
			fprintf(stderr, "generation %d: the inherited block changed\n", gen + 1);
			return 1;
		}
		free(p);
	}
	return 0;
}

/* The heap refuses alignments over 1 GiB whatever the filesystem holds: the
 * C library serves them, and that is no reason to keep later large blocks
 * out of shared memory. */
static int huge_align(void)
{
	int (*owns)(const void *) = (int (*)(const void *))dlsym(RTLD_DEFAULT, "rh_shm_owns");
	if (!owns) {
		fprintf(stderr, "huge-align: the shim's rh_shm_owns is not there\n");
		return 1;
	}
	void *a = NULL;
	if (posix_memalign(&a, (size_t)1 << 31, 1 << 20) != 0 || ((uintptr_t)a & (((size_t)1 << 31) - 1))) {
		fprintf(stderr, "huge-align: posix_memalign(2 GiB, 1 MiB) failed\n");
		return 1;
	}
	void *b = malloc(2 << 20);
	int shared = b && owns(b);
	free(b);
	free(a);
	if (!shared) {
		fprintf(stderr, "huge-align: a 2 MiB block right after it is not in the heap\n");
		return 1;
	}
	return 0;
}

/* Bytes the process's heap file holds. */
static long long heap_file_bytes(void)
{
	char path[4200];
	struct stat st;
	const char *dir = getenv("RH_SHM_DIR");
	snprintf(path, sizeof(path), "%s/heap-%d", dir ? dir : "/dev/shm", (int)getpid());
	return stat(path, &st) == 0 ? (long long)st.st_blocks * 512 : -1;
}

#define PRIV_MIB (1u << 20)

/* The process's resident bytes (statm), or 0. */
static long long resident_bytes(void)
{
	long long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lld %lld", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res * sysconf(_SC_PAGESIZE);
}

static int private_pages(const char *mode)
{
	int (*owns)(const void *) = (int (*)(const void *))dlsym(RTLD_DEFAULT, "rh_shm_owns");
	int (*ref)(const void *, void *) = (int (*)(const void *, void *))dlsym(RTLD_DEFAULT, "rh_shm_ref");
	if (!owns || !ref) {
		fprintf(stderr, "private: the shim's rh_shm_owns or rh_shm_ref is not there\n");
		return 1;
	}
	int priv = strcmp(mode, "private") == 0;
	free(malloc(100)); /* the heap exists */
	/* At the default threshold: 8 MiB, of which the program writes 64 KiB
	 * (GNU sort's buffer for a small file is 13 MB). */
	long long before = heap_file_bytes();
	unsigned char *e = malloc(8 * PRIV_MIB);
	if (!e || !owns(e)) {
		fprintf(stderr, "private: malloc(8 MiB) is not a block of the heap\n");
		return 1;
	}
	memset(e, 0x5d, 64 * 1024);
	long long took = heap_file_bytes() - before;
	if (priv ? took > (long long)PRIV_MIB : took < (long long)(8 * PRIV_MIB)) {
		fprintf(stderr, "private: 8 MiB with 64 KiB written took %lld bytes of the file (%s)\n", took, mode);
		return 1;
	}
	/* Freed barely touched, it leaves the threshold: the same again. Freed
	 * all written, it raises it (as the C library's mmap threshold rises):
	 * the next one comes from the file, for reuse. */
	for (int round = 0; round < 3; round++) {
		free(e);
		before = heap_file_bytes();
		e = malloc(8 * PRIV_MIB);
		if (!e || !owns(e)) {
			fprintf(stderr, "private: malloc(8 MiB) again is not a block of the heap\n");
			return 1;
		}
		size_t w = round == 0 ? 64 * 1024 : 8 * PRIV_MIB;
		memset(e, 0x5d, w);
		took = heap_file_bytes() - before;
		long long want = round < 2 ? (long long)PRIV_MIB : (long long)(8 * PRIV_MIB);
		if (priv && (round < 2 ? took > want : took < want)) {
			fprintf(stderr, "private: 8 MiB again (round %d, %zu bytes written) took %lld bytes of the file\n",
				round, w, took);
			return 1;
		}
	}
	free(e);
	before = heap_file_bytes();
	size_t n = 64 * PRIV_MIB;
	unsigned char *p = malloc(n);
	if (!p || !owns(p) || malloc_usable_size(p) < n) {
		fprintf(stderr, "private: malloc(64 MiB) is not a block of the heap\n");
		return 1;
	}
	memset(p, 0x5e, 8 * PRIV_MIB);
	took = heap_file_bytes() - before;
	if (priv ? took > (long long)PRIV_MIB : took < (long long)n) {
		fprintf(stderr, "private: 64 MiB with 8 MiB written took %lld bytes of the file (%s)\n", took, mode);
		return 1;
	}
	/* Aligned to a page, the same. */
	unsigned char *a = NULL;
	before = heap_file_bytes();
	if (posix_memalign((void **)&a, 4096, n) != 0 || !owns(a) || ((uintptr_t)a & 4095)) {
		fprintf(stderr, "private: posix_memalign(4096, 64 MiB) is not an aligned block of the heap\n");
		return 1;
	}
	memset(a, 0x5f, 8 * PRIV_MIB);
	took = heap_file_bytes() - before;
	if (priv ? took > (long long)PRIV_MIB : took < (long long)n) {
		fprintf(stderr, "private: posix_memalign'd 64 MiB with 8 MiB written took %lld bytes of the file (%s)\n", took, mode);
		return 1;
	}
	free(a);
	unsigned char *z = calloc(n, 1);
	for (size_t i = 0; z && i < n; i += 4096)
		if (z[i] || z[i + 4095]) {
			fprintf(stderr, "private: calloc's byte %zu is not zero\n", i);
			return 1;
		}
	memset(z, 1, n);
	free(z);
	long long rss = resident_bytes();
	p = realloc(p, 2 * n);
	/* Moved: what was never written is not copied into memory. */
	if (priv && resident_bytes() - rss > 24 * (long long)PRIV_MIB) {
		fprintf(stderr, "private: realloc to 128 MiB made %lld bytes resident\n", resident_bytes() - rss);
		return 1;
	}
	if (!p || !owns(p) || p[0] != 0x5e || p[8 * PRIV_MIB - 1] != 0x5e || p[8 * PRIV_MIB] != 0) {
		fprintf(stderr, "private: realloc to 128 MiB lost the contents\n");
		return 1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int ok = p[0] == 0x5e && p[8 * PRIV_MIB - 1] == 0x5e;
		memset(p, 0x11, 8 * PRIV_MIB);
		free(p);
		_exit(ok ? 0 : 3);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    p[0] != 0x5e || p[8 * PRIV_MIB - 1] != 0x5e) {
		fprintf(stderr, "private: a forked child did not get its own copy\n");
		return 1;
	}
	unsigned char r[64];
	if (ref(p, r) != 0) {
		fprintf(stderr, "private: rh_shm_ref failed: %s\n", strerror(errno));
		return 1;
	}
	if (heap_file_bytes() - before < (long long)(2 * n)) {
		fprintf(stderr, "private: after rh_shm_ref the file does not hold the block\n");
		return 1;
	}
	free(p);
	return 0;
}

static volatile int churning = 1;

static void *private_churn(void *arg)
{
	(void)arg;
	while (churning) {
		char *p = malloc(40 * PRIV_MIB);
		if (p)
			p[0] = 1;
		free(p);
	}
	return NULL;
}

/* A child's own mappings name its parent's heap file? 1 yes, 0 no, -1 unknown. */
static int maps_name(const char *name)
{
	char line[4608];
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	int found = 0;
	size_t len = strlen(name);
	while (!found && fgets(line, sizeof(line), f)) {
		const char *at = strstr(line, name);
		found = at && (at[len] == '\n' || at[len] == ' ' || at[len] == 0);
	}
	fclose(f);
	return found;
}

static int private_fork(void)
{
	char name[64];
	snprintf(name, sizeof(name), "/heap-%d", (int)getpid());
	free(malloc(100));
	pthread_t t;
	if (pthread_create(&t, NULL, private_churn, NULL) != 0)
		return 1;
	int kept = 0;
	for (int i = 0; i < 200; i++) {
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0)
			_exit(maps_name(name) ? 3 : 0);
		int status;
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
			return 1;
		kept += WEXITSTATUS(status) != 0;
	}
	churning = 0;
	pthread_join(t, NULL);
	if (kept) {
		fprintf(stderr, "private-fork: %d of 200 children kept a mapping of the parent's heap\n", kept);
		return 1;
	}
	return 0;
}

static int private_maps(void)
{
	int (*owns)(const void *) = (int (*)(const void *))dlsym(RTLD_DEFAULT, "rh_shm_owns");
	long max = 0;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	if (!owns || !f || fscanf(f, "%ld", &max) != 1 || max <= 0) {
		fprintf(stderr, "private-maps: no rh_shm_owns or vm.max_map_count\n");
		return 1;
	}
	fclose(f);
	size_t cap = (size_t)max + 1024, page = (size_t)sysconf(_SC_PAGESIZE);
	/* Not in .bss: the mlockall case locks all of this program. */
	void **maps = mmap(NULL, cap * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (maps == MAP_FAILED)
		return 1;
	free(malloc(100));
	free(malloc(64 * PRIV_MIB)); /* the span exists: taking it again maps nothing new */
	size_t n = 0;
	while (n < cap) {
		/* Alternating protections: neighbours do not merge. */
		void *m = mmap(NULL, page, n % 2 ? PROT_READ : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			break;
		maps[n++] = m;
	}
	unsigned char *p = n < cap ? malloc(64 * PRIV_MIB) : NULL;
	int ok = p && owns(p);
	if (ok)
		memset(p, 7, 64 * PRIV_MIB);
	free(p);
	while (n > 0)
		munmap(maps[--n], page);
	munmap(maps, cap * sizeof(void *));
	if (!ok) {
		fprintf(stderr, "private-maps: malloc(64 MiB) %s\n", p ? "went to the C library" : "failed");
		return 1;
	}
	return 0;
}

static int fork_no_fds(void)
{
	enum { SIZE = 96 << 20 };
	char *b = malloc(SIZE);
	if (!b)
		return 1;
	memset(b, 'P', SIZE);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1;
	rl.rlim_cur = 256;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1;
	while (open("/dev/null", O_RDONLY) >= 0)
		;
	for (int round = 0; round < 3; round++) {
		fflush(NULL);
		pid_t c = fork();
		if (c < 0)
			return 1;
		if (c == 0) {
			for (size_t k = 0; k < SIZE; k += 4096)
				if (b[k] != 'P')
					_exit(1);
			_exit(0);
		}
		memset(b, 'Q', SIZE); /* right away, while the child may still copy */
		int st;
		if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "fork-no-fds: round %d: the child saw its parent's later writes (status %#x)\n",
				round, st);
			return 1;
		}
		memset(b, 'P', SIZE);
	}
	free(b);
	return 0;
}

static volatile sig_atomic_t handler_forks;

static void fork_now(int sig)
{
	(void)sig;
	int e = errno;
	pid_t c = fork();
	if (c == 0)
		_exit(0);
	if (c > 0) {
		waitpid(c, NULL, 0);
		handler_forks++;
	}
	errno = e;
}

static int fork_in_handler(void)
{
	struct sigaction sa = { .sa_handler = fork_now, .sa_flags = SA_RESTART };
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 40000 }, { 0, 40000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	void *p[16] = { 0 };
	uint64_t s = 1;
	while (handler_forks < 40) {
		s = s * 6364136223846793005ull + 1;
		unsigned k = (unsigned)(s >> 33) % 16;
		free(p[k]);
		size_t n = (s >> 40) % 2 ? 100000 + (s >> 44) % 300000 : 16 + (s >> 44) % 400;
		if (!(p[k] = malloc(n)))
			return 1;
		memset(p[k], (int)k, n < 4096 ? n : 4096);
	}
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	for (unsigned k = 0; k < 16; k++)
		free(p[k]);
	return 0;
}

static int lock_all(void)
{
	int (*owns)(const void *) = (int (*)(const void *))dlsym(RTLD_DEFAULT, "rh_shm_owns");
	char *a = malloc(100000);
	if (!a || !owns || !owns(a)) {
		fprintf(stderr, "mlockall: no shared heap to begin with\n");
		return 1;
	}
	/* A forked child first: it inherited the reservation too. */
	fflush(NULL);
	pid_t c = fork();
	if (c == 0)
		_exit(mlockall(MCL_CURRENT) == 0 && malloc(1 << 20) ? 0 : 1);
	int st;
	if (c < 0 || waitpid(c, &st, 0) != c || st != 0) {
		fprintf(stderr, "mlockall: fails in a forked child\n");
		return 1;
	}
	if (mlockall(MCL_CURRENT) != 0) {
		perror("mlockall");
		return 1;
	}
	int shared = 0;
	for (int i = 0; i < 20; i++) {
		char *b = malloc(1 << 20);
		if (!b)
			return 1;
		memset(b, i, 1 << 20);
		shared += owns(b);
	}
	munlockall();
	if (!shared) {
		fprintf(stderr, "mlockall: the heap no longer grows\n");
		return 1;
	}
	return 0;
}

static int calloc_reuse(size_t from)
{
	int (*owns)(const void *) = (int (*)(const void *))dlsym(RTLD_DEFAULT, "rh_shm_owns");
	if (!owns) {
		fprintf(stderr, "calloc-reuse: the shim's rh_shm_owns is not there\n");
		return 1;
	}
	enum { MAXN = 2048, EACH = 8 };
	static unsigned char *b[EACH];
	for (size_t n = from; n <= MAXN; n++) {
		for (int i = 0; i < EACH; i++) {
			b[i] = malloc(n);
			if (!b[i] || !owns(b[i])) {
				fprintf(stderr, "calloc-reuse: malloc(%zu) is not a block of the heap\n", n);
				return 1;
			}
			memset(b[i], 0xa5, n);
		}
		for (int i = 0; i < EACH; i++)
			free(b[i]);
		for (int i = 0; i < EACH; i++) {
			unsigned char *z = calloc(1, n);
			if (!z || !owns(z)) {
				fprintf(stderr, "calloc-reuse: calloc(1, %zu) is not a block of the heap\n", n);
				return 1;
			}
			for (size_t k = 0; k < n; k++)
				if (z[k]) {
					fprintf(stderr, "calloc-reuse: calloc(1, %zu): byte %zu is %#x\n", n, k, z[k]);
					return 1;
				}
			b[i] = z;
		}
		for (int i = 0; i < EACH; i++)
			free(b[i]);
	}
	/* Now that the thread's cache holds blocks of that class. */
	if (from > 1) {
		unsigned char *z = calloc(1, from - 1);
		if (!z || owns(z)) {
			fprintf(stderr, "calloc-reuse: calloc(1, %zu) is a block of the heap\n", from - 1);
			return 1;
		}
		free(z);
	}
	return 0;
}

static int api_corners(void)
{
	void *p, *q;
	int r;
	errno = EDOM; /* the first allocation, which makes the heap, keeps it too */
	p = malloc(100);
	printf("malloc(100): errno %d\n", errno);
	free(p);
	errno = 0;
	p = calloc(3, 1000);
	printf("calloc(3, 1000): errno %d\n", errno);
	free(p);
	static const size_t aligns[] = { 0, 3, 24, 48, 64 };
	for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++) {
		errno = 0;
		p = aligned_alloc(aligns[i], 10);
		printf("aligned_alloc(%zu, 10): %s, errno %d\n", aligns[i], p ? "a block" : "NULL", errno);
		free(p);
	}
	errno = 0;
	p = memalign(SIZE_MAX / 2 + 2, 1);
	printf("memalign(SIZE_MAX / 2 + 2, 1): %s, errno %d\n", p ? "a block" : "NULL", errno);
	errno = 0;
	p = memalign((size_t)1 << 41, 16);
	printf("memalign(2^41, 16): %s, errno %d\n", p ? ((uintptr_t)p & (((size_t)1 << 41) - 1) ? "misaligned" : "a block") : "NULL", errno);
	free(p);
	errno = 0;
	r = posix_memalign(&q, (size_t)1 << 31, 100);
	printf("posix_memalign(2^31, 100): %d, errno %d\n", r, errno);
	if (r == 0)
		free(q);
	errno = 0;
	r = posix_memalign(&q, 24, 100);
	printf("posix_memalign(24, 100): %d, errno %d\n", r, errno);
	errno = 0;
	p = realloc(NULL, 50);
	printf("realloc(NULL, 50): errno %d\n", errno);
	free(p);
	return 0;
}

/* The descriptor whose link is `target` exactly, or -1. */
static int fd_of(const char *target)
{
	for (int fd = 0; fd < 4096; fd++) {
		char link[64], to[600];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, to, sizeof(to) - 1);
		if (n < 0)
			continue;
		to[n] = 0;
		if (strcmp(to, target) == 0)
			return fd;
	}
	return -1;
}

static int fill_check(unsigned char **b, int n, size_t size, int set)
{
	for (int i = 0; i < n; i++)
		for (size_t k = 0; k < size; k += 512) {
			unsigned char want = (unsigned char)(i * 7 + k / 512);
			if (set)
				b[i][k] = want;
			else if (b[i][k] != want)
				return 1;
		}
	return 0;
}

static int fd_taken(const char *mode, const char *victim)
{
	const char *(*heap_name)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "rh_shm_heap_name");
	const char *dir = getenv("RH_SHM_DIR");
	char path[600], dirpath[512];
	enum { SMALL = 2000, BIG = 8 };
	static unsigned char *small[SMALL], *big[BIG];
	for (int i = 0; i < SMALL; i++)
		small[i] = malloc(100);
	for (int i = 0; i < BIG; i++)
		big[i] = malloc(1 << 20);
	if (!heap_name || !heap_name() || !dir || !realpath(dir, dirpath)) {
		fprintf(stderr, "fd-taken: run this under the shim with RH_SHM_DIR set\n");
		return 1;
	}
	fill_check(small, SMALL, 100, 1);
	fill_check(big, BIG, 1 << 20, 1);
	snprintf(path, sizeof(path), "%s/%s", dirpath, heap_name());
	int hfd = fd_of(path), dfd = fd_of(dirpath);
	if (hfd < 0 || dfd < 0) {
		fprintf(stderr, "fd-taken: no descriptor of %s or of %s\n", path, dirpath);
		return 1;
	}
	/* Out of the way of the numbers programs pick; so is libunwind's
	 * pipe, the one pipe with both ends open here. */
	if (hfd < 100 || dfd < 100) {
		fprintf(stderr, "fd-taken: the heap's descriptors are %d and %d, not kept high\n", hfd, dfd);
		return 1;
	}
	char seen[128][64];
	int seen_fd[128], nseen = 0;
	for (int fd = 3; fd < 4096 && nseen < 128; fd++) {
		char link[64];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, seen[nseen], sizeof(seen[0]) - 1);
		if (n <= 0)
			continue;
		seen[nseen][n] = 0;
		if (strncmp(seen[nseen], "pipe:", 5) != 0)
			continue;
		for (int i = 0; i < nseen; i++)
			if (strcmp(seen[i], seen[nseen]) == 0 && (seen_fd[i] < 100 || fd < 100)) {
				fprintf(stderr, "fd-taken: a pipe of ours at %d and %d\n", seen_fd[i], fd);
				return 1;
			}
		seen_fd[nseen++] = fd;
	}
	int v = open(victim, O_RDWR);
	if (v < 0) {
		perror(victim);
		return 1;
	}
	if (strcmp(mode, "closeall") == 0 && syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
		perror("close_range");
		return 1;
	}
	if (strcmp(mode, "closeall") == 0)
		v = open(victim, O_RDWR);
	if (v < 0 || dup2(v, hfd) != hfd || dup2(v, dfd) != dfd) {
		perror("dup2");
		return 1;
	}
	/* Growth: new superblocks, pages committed, the journal extended. */
	enum { MORE = 64 };
	static unsigned char *more[MORE];
	for (int i = 0; i < MORE; i++) {
		more[i] = malloc(1 << 20);
		if (!more[i])
			return 1;
		memset(more[i], i, 1 << 20);
	}
	for (int i = 0; i < 20000; i++)
		free(malloc(50 + i % 3000));
	/* Still locked, as a live heap must be (FORMAT.md: the lock byte). */
	int probe = open(path, O_RDONLY | O_CLOEXEC);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = RH_LOCK_BASE, .l_len = 1 };
	if (probe < 0 || fcntl(probe, F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK) {
		fprintf(stderr, "fd-taken: the heap is no longer locked\n");
		return 1;
	}
	close(probe);
	fflush(NULL);
	pid_t c = fork();
	if (c < 0)
		return 1;
	if (c == 0) {
		if (fill_check(small, SMALL, 100, 0) || fill_check(big, BIG, 1 << 20, 0)) {
			fprintf(stderr, "fd-taken: the child's inherited blocks differ\n");
			_exit(1);
		}
		memset(big[0], 0xee, 1 << 20);
		for (int i = 0; i < BIG; i++)
			free(big[i]);
		free(malloc(3 << 20));
		exit(0);
	}
	int st;
	if (waitpid(c, &st, 0) != c || st != 0) {
		fprintf(stderr, "fd-taken: the child failed (status %#x)\n", st);
		return 1;
	}
	if (fill_check(small, SMALL, 100, 0) || fill_check(big, BIG, 1 << 20, 0)) {
		fprintf(stderr, "fd-taken: the parent's blocks changed\n");
		return 1;
	}
	for (int i = 0; i < MORE; i++)
		free(more[i]);
	for (int i = 0; i < BIG; i++)
		free(big[i]);
	for (int i = 0; i < SMALL; i++)
		free(small[i]);
	char got[64] = "";
	ssize_t n = pread(v, got, sizeof(got) - 1, 0);
	struct stat vs;
	if (n != 7 || memcmp(got, "victim\n", 7) != 0 || fstat(v, &vs) != 0 || vs.st_size != 7) {
		fprintf(stderr, "fd-taken: %s was written to\n", victim);
		return 1;
	}
	printf("fd-taken %s: descriptors %d and %d taken, the heap went on\n", mode, hfd, dfd);
	return 0;
}

/* The names libstdc++ makes and frees locales by, __newlocale and
 * __freelocale: the shim's (its hooks check for code the C library
 * unloaded), and they work: a UTF-8 locale made, used and freed many times
 * over, as a C++ program's streams do. */
extern locale_t __newlocale(int, const char *, locale_t);
extern void __freelocale(locale_t);

static int locale_names(void)
{
	static const char *const names[] = { "__newlocale", "__freelocale" };
	for (unsigned i = 0; i < 2; i++) {
		Dl_info info;
		void *fn = dlsym(RTLD_DEFAULT, names[i]);
		if (!fn || !dladdr(fn, &info) || !info.dli_fname || !strstr(info.dli_fname, "redhawk-shm-preload")) {
			fprintf(stderr, "locale-names: %s is not the shim's (%s)\n", names[i],
				fn && info.dli_fname ? info.dli_fname : "not found");
			return 1;
		}
	}
	for (int i = 0; i < 1000; i++) {
		locale_t loc = __newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
		if (!loc) {
			perror("locale-names: __newlocale C.UTF-8");
			return 1;
		}
		locale_t old = uselocale(loc);
		size_t max = MB_CUR_MAX;
		uselocale(old);
		__freelocale(loc);
		if (max < 4) {
			fprintf(stderr, "locale-names: C.UTF-8 has MB_CUR_MAX %zu\n", max);
			return 1;
		}
	}
	return 0;
}

/* Allocates as the user it started as, becomes `uid` through `how`
 * (setuid, seteuid, setreuid or setresuid), allocates again and ends, by
 * returning or, with `then` "exec", in /bin/true. */
static int drop_user(const char *how, uid_t uid, const char *then)
{
	char *before = malloc(5000);
	if (!before)
		return 1;
	memset(before, 1, 5000);
	int r = strcmp(how, "setuid") == 0     ? setuid(uid)
		: strcmp(how, "seteuid") == 0  ? seteuid(uid)
		: strcmp(how, "setreuid") == 0 ? setreuid(uid, uid)
		: strcmp(how, "setresuid") == 0 ? setresuid(uid, uid, uid)
		: (errno = EINVAL, -1);
	if (r != 0 || geteuid() != uid) {
		fprintf(stderr, "drop-user: %s(%d): %s\n", how, (int)uid, strerror(errno));
		return 1;
	}
	/* Never given to the user: it held root's data, and after seteuid the
	 * process can even be root again. */
	char name[4200];
	struct stat st;
	snprintf(name, sizeof(name), "%s/heap-%d", getenv("RH_SHM_DIR"), (int)getpid());
	if (stat(name, &st) != 0 || st.st_uid != 0 || (st.st_mode & 077)) {
		fprintf(stderr, "drop-user: after %s the heap is user %d's, mode %o\n", how, (int)st.st_uid,
			(unsigned)(st.st_mode & 0777));
		return 1;
	}
	char *after = malloc(70000);
	if (!after)
		return 1;
	memset(after, 2, 70000);
	free(before);
	if (then && strcmp(then, "exec") == 0) {
		/* A program that allocates: a shell. */
		execl("/bin/sh", "sh", "-c", "x=$(echo made); [ \"$x\" = made ]", (char *)NULL);
		perror("drop-user: /bin/sh");
		return 1;
	}
	if (then && strcmp(then, "exec-crash") == 0) {
		execl("/bin/sh", "sh", "-c", "x=$(echo made); kill -SEGV $$", (char *)NULL);
		perror("drop-user: /bin/sh");
		return 1;
	}
	return 0;
}

/* A vfork child that ends with _exit before its parent ever allocated:
 * the parent still gets its heap (the child's exit is not the parent's). */
static int vfork_exit(void)
{
	pid_t pid = vfork();
	if (pid == 0)
		_exit(0);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return 1;
	char *p = malloc(5000);
	char name[4200];
	snprintf(name, sizeof(name), "%s/heap-%d", getenv("RH_SHM_DIR"), (int)getpid());
	if (!p || access(name, F_OK) != 0) {
		fprintf(stderr, "vfork-exit: no heap after a vfork child's _exit\n");
		return 1;
	}
	free(p);
	return 0;
}

/* Ids left as real 1000, effective 2000, saved 1000 (as root: set, then
 * moved about), then an exec into a program without the shim, which
 * prints its effective id: the heap's removal on the way, as root's file's
 * owner again, must leave the ids as they were (2000 effective). */
static int euid_kept(void)
{
	if (setresuid(1000, 1000, 2000) != 0)
		return perror("setresuid"), 1;
	char *p = malloc(5000);
	if (!p)
		return 1;
	memset(p, 1, 5000);
	if (setresuid((uid_t)-1, 2000, (uid_t)-1) != 0 || setresuid((uid_t)-1, (uid_t)-1, 1000) != 0)
		return perror("setresuid"), 1;
	char *none[] = { NULL }, *argv[] = { "id", "-u", NULL };
	execve("/usr/bin/id", argv, none);
	perror("/usr/bin/id");
	return 1;
}

/* clone(2) without CLONE_VM, through the C library: the child writes to,
 * frees and allocates beside what it inherited; the parent's blocks stay
 * as they were and its heap keeps working. */
static char *clone_keep[1000];

static int clone_fn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000; i++)
		memset(clone_keep[i], 0xaa, 64);
	for (int i = 0; i < 1000; i += 2)
		free(clone_keep[i]);
	for (int i = 0; i < 2000; i++) {
		char *p = malloc(64);
		if (!p)
			return 1;
		memset(p, 0xbb, 64);
	}
	return 0;
}

static int clone_nothing(void *arg)
{
	(void)arg;
	return 0;
}

/* Fills clone_keep with 1000 blocks of 64 bytes of i & 0x7f; 0 or -1. */
static int keep_fill(void)
{
	for (int i = 0; i < 1000; i++) {
		if (!(clone_keep[i] = malloc(64)))
			return -1;
		memset(clone_keep[i], i & 0x7f, 64);
	}
	return 0;
}

/* Bytes of clone_keep's blocks that are not what keep_fill wrote. */
static int keep_changed(void)
{
	int bad = 0;
	for (int i = 0; i < 1000; i++)
		for (int k = 0; k < 64; k++)
			bad += clone_keep[i][k] != (char)(i & 0x7f);
	return bad;
}

/* A clone child (running clone_fn) on the given stack, then the parent's
 * blocks checked and its heap used again; 0 when all is well. */
static int clone_checked(char *stack_top, const char *what)
{
	if (keep_fill() != 0)
		return 1;
	int st = 0;
	pid_t pid = clone(clone_fn, stack_top, SIGCHLD, NULL);
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "clone: the child %s failed (%#x)\n", what, st);
		return 1;
	}
	int bad = keep_changed();
	char *more[1000];
	for (int i = 0; i < 1000; i++) {
		if (!(more[i] = malloc(64)))
			return 1;
		memset(more[i], 0xcc, 64);
	}
	bad += keep_changed();
	if (bad) {
		fprintf(stderr, "clone: %d bytes of the parent's blocks changed (%s)\n", bad, what);
		return 1;
	}
	for (int i = 0; i < 1000; i++) {
		free(more[i]);
		free(clone_keep[i]);
	}
	return 0;
}

static int clone_child_heap(void)
{
	static char stack[1 << 16];
	if (clone_checked(stack + sizeof(stack), "on a static stack"))
		return 1;
	/* A child whose stack was malloc'd, in the heap the fork handling
	 * maps anew. */
	char *heap_stack = malloc(1 << 20);
	if (!heap_stack || clone_checked(heap_stack + (1 << 20), "on a malloc'd stack"))
		return 1;
	free(heap_stack);
	/* A child sharing the descriptor table (CLONE_FILES) gets no fork
	 * handling, which would close the parent's: the heap's descriptor is
	 * still its file afterwards. */
	int st = 0;
	pid_t pid = clone(clone_nothing, stack + sizeof(stack), CLONE_FILES | SIGCHLD, NULL);
	if (pid < 0 || waitpid(pid, &st, 0) != pid) {
		perror("clone CLONE_FILES");
		return 1;
	}
	char want[64], link[64], to[4200];
	snprintf(want, sizeof(want), "/heap-%d", (int)getpid());
	int found = 0;
	for (int fd = 3; fd < 1024 && !found; fd++) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, to, sizeof(to) - 1);
		if (n > 0) {
			to[n] = 0;
			size_t w = strlen(want);
			found = (size_t)n >= w && strcmp(to + n - w, want) == 0;
		}
	}
	if (!found) {
		fprintf(stderr, "clone: after a CLONE_FILES child, no descriptor is the heap's file\n");
		return 1;
	}
	return 0;
}

/* A signal handler ends the process with _exit while the first allocation
 * makes the heap, `us` microseconds in: nothing is left, named or not. */
static void exit_now(int sig)
{
	(void)sig;
	_exit(0);
}

static int exit_from_handler(int us)
{
	signal(SIGALRM, exit_now);
	struct itimerval it = { { 0, 0 }, { 0, us > 0 ? us : 1 } };
	setitimer(ITIMER_REAL, &it, NULL);
	void *p = malloc(100000);
	__asm__ volatile("" : : "r"(p) : "memory");
	for (;;)
		pause();
	return 1;
}

/* One thread makes the process's first allocation (and so its heap) while
 * another ends the process: the heap must not outlive it, named or not. */
static atomic_int exit_go;

static void *exit_maker(void *arg)
{
	(void)arg;
	atomic_store(&exit_go, 1);
	void *p = malloc(100000);
	__asm__ volatile("" : : "r"(p) : "memory"); /* kept */
	for (;;)
		pause();
	return NULL;
}

static void *exit_ender(void *arg)
{
	int spin = *(int *)arg;
	while (!atomic_load(&exit_go))
		;
	for (volatile int i = 0; i < spin; i++)
		;
	exit(0);
	return NULL;
}

static int exit_while_creating(int spin)
{
	pthread_t a, b;
	pthread_create(&b, NULL, exit_ender, &spin);
	pthread_create(&a, NULL, exit_maker, NULL);
	for (;;)
		pause();
	return 1;
}

/* Allocates, then execs `target` with an environment: "none" (empty),
 * "other" (the shim preloaded, RH_SHM_DIR the folder `arg`) or "same" (the
 * program's own). If exec fails, says whether the heap still has its name
 * ("named" or "unnamed" on stdout) and ends normally. */
static int exec_env(const char *how, const char *target, const char *arg)
{
	char *p = malloc(5000);
	if (!p)
		return 1;
	memset(p, 3, 5000);
	char preload[4200], dir[4200];
	snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
	snprintf(dir, sizeof(dir), "RH_SHM_DIR=%s", arg ? arg : "");
	char *none[] = { NULL }, *other[] = { preload, dir, NULL };
	char **envp = strcmp(how, "none") == 0 ? none : strcmp(how, "other") == 0 ? other : environ;
	char *argv[] = { (char *)target, NULL };
	execve(target, argv, envp);
	char name[4200];
	snprintf(name, sizeof(name), "%s/heap-%d", getenv("RH_SHM_DIR"), (int)getpid());
	printf("%s\n", access(name, F_OK) == 0 ? "named" : "unnamed");
	free(p);
	return 0;
}

/* exec-while-forking: a thread forks again and again (each child allocates
 * and ends) while the main thread execs /bin/true after MICROSECONDS: the
 * heap set aside for the next image must not be taken for a live one's
 * because a child copying it still holds its lock. */
static void *fork_loop(void *arg)
{
	(void)arg;
	for (;;) {
		pid_t pid = fork();
		if (pid == 0) {
			char *p = malloc(3000);
			memset(p, 1, 3000);
			_exit(0);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	return NULL;
}

static int exec_while_forking(int us)
{
	char *p = malloc(1000);
	memset(p, 2, 1000);
	pthread_t t;
	if (pthread_create(&t, NULL, fork_loop, NULL))
		return 1;
	usleep((useconds_t)us);
	execl("/bin/true", "true", (char *)NULL);
	return 2;
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "";
	int n = argc > 2 ? atoi(argv[2]) : 0;
	if (strcmp(what, "thread-exits") == 0)
		return thread_exits(n > 0 ? n : 100);
	if (strcmp(what, "overflow") == 0)
		return overflow();
	if (strcmp(what, "fork-depth") == 0)
		return fork_depth(n > 0 ? n : 70);
	if (strcmp(what, "huge-align") == 0)
		return huge_align();
	if (strcmp(what, "fork-in-handler") == 0)
		return fork_in_handler();
	if (strcmp(what, "mlockall") == 0)
		return lock_all();
	if (strcmp(what, "fork-no-fds") == 0)
		return fork_no_fds();
	if (strcmp(what, "api-corners") == 0)
		return api_corners();
	if (strcmp(what, "calloc-reuse") == 0)
		return calloc_reuse(n > 0 ? (size_t)n : 1);
	if (strcmp(what, "private-maps") == 0)
		return private_maps();
	if (strcmp(what, "private-fork") == 0)
		return private_fork();
	if (strcmp(what, "private") == 0 && argc > 2)
		return private_pages(argv[2]);
	if (strcmp(what, "locale-names") == 0)
		return locale_names();
	if (strcmp(what, "fd-taken") == 0 && argc > 3)
		return fd_taken(argv[2], argv[3]);
	if (strcmp(what, "vfork-exit") == 0)
		return vfork_exit();
	if (strcmp(what, "euid-kept") == 0)
		return euid_kept();
	if (strcmp(what, "exit-from-handler") == 0)
		return exit_from_handler(n);
	if (strcmp(what, "exit-while-creating") == 0)
		return exit_while_creating(n);
	if (strcmp(what, "clone") == 0)
		return clone_child_heap();
	if (strcmp(what, "exec-while-forking") == 0)
		return exec_while_forking(n);
	if (strcmp(what, "exec-env") == 0 && argc > 3)
		return exec_env(argv[2], argv[3], argc > 4 ? argv[4] : NULL);
	if (strcmp(what, "drop-user") == 0 && argc > 3)
		return drop_user(argv[2], (uid_t)atoi(argv[3]), argc > 4 ? argv[4] : NULL);
	fprintf(stderr, "usage: shim_edges thread-exits|overflow|fork-depth|huge-align [N]\n"
		"       shim_edges api-corners | calloc-reuse | fork-no-fds | fork-in-handler | mlockall\n"
		"       shim_edges private private|shared | private-fork | private-maps\n"
		"       shim_edges fd-taken dup2|closeall FILE | locale-names\n"
		"       shim_edges drop-user setuid|seteuid|setreuid|setresuid UID [exec]\n"
		"       shim_edges exec-env none|other|same PROGRAM [FOLDER] | clone | exit-while-creating SPIN\n"
		"       shim_edges exit-from-handler MICROSECONDS | vfork-exit | euid-kept\n"
		"       shim_edges exec-while-forking MICROSECONDS\n"
		"       shim_edges drop-user HOW UID exec-crash\n");
	return 2;
}
