/* SPDX-License-Identifier: MIT */
/*
 * The heap file's life, watched from outside: made at the first allocation
 * with the configured mode, complete and locked whenever it is visible,
 * removed when its creator ends normally, left behind (and orphaned) after
 * SIGKILL or with RH_SHMALLOC_KEEP=1, replaced when a dead process left one
 * under our name, and never touched by a forked child. This process never
 * allocates: every heap belongs to a child, so none of ours interferes.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "heap.h"
#include "peer.h"
#include "testutil.h"
#include <redhawk/shm.h>


static int dir_fd = -1;

static void heap_name(pid_t pid, char *name, size_t size)
{
	snprintf(name, size, "heap-%d", (int)pid);
}

static int heap_exists(pid_t pid)
{
	char name[RH_HEAP_NAME_LEN];
	heap_name(pid, name, sizeof(name));
	return faccessat(dir_fd, name, F_OK, 0) == 0;
}

/* The reader's view of heap-<pid>; fails the test when it cannot be read. */
static struct rh_heap_info read_info(pid_t pid)
{
	char name[RH_HEAP_NAME_LEN];
	struct rh_heap *h = NULL;
	heap_name(pid, name, sizeof(name));
	int rc = rh_heap_open(dir_fd, name, &h);
	if (rc != 0)
		fail_msg("rh_heap_open(%s): %s%s%s", name, strerror(rc), h ? ": " : "",
			 h ? rh_heap_error(h) : "");
	struct rh_heap_info info = *rh_heap_info(h);
	rh_heap_close(h);
	return info;
}

static void start_env(struct peer *p, const char *const *env)
{
	struct peer_opts o = { .env = env };
	assert_int_equal(peer_start(p, &o), 0);
}

static void alloc_in(struct peer *p)
{
	char reply[256];
	if (peer_cmd(p, reply, sizeof(reply), "alloc 1000 1") != 0)
		fail_msg("the peer could not allocate: %s", reply);
}

/* --- Tests ----------------------------------------------------------------- */

static void test_lifecycle_heap_made_at_first_allocation(void **state)
{
	(void)state;
	struct peer p;
	char reply[256], name[RH_HEAP_NAME_LEN], expect[64];
	struct stat st;
	start_env(&p, NULL);
	assert_int_equal(peer_cmd(&p, reply, sizeof(reply), "name"), 0);
	assert_string_equal(reply, "ok -");
	assert_int_equal(test_dir_count(), 0);

	alloc_in(&p);
	heap_name(p.pid, name, sizeof(name));
	snprintf(expect, sizeof(expect), "ok %s", name);
	assert_int_equal(peer_cmd(&p, reply, sizeof(reply), "name"), 0);
	assert_string_equal(reply, expect);
	/* Exactly one file: no temporary name left behind. */
	assert_int_equal(test_dir_count(), 1);
	assert_int_equal(fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_uid, getuid());

	struct rh_heap_info info = read_info(p.pid);
	assert_int_equal(info.kind, RH_HEAP_NATIVE);
	assert_int_equal(info.creator_pid, p.pid);
	assert_int_equal(info.creator_uid, getuid());
	assert_int_equal(info.orphaned, 0);
	assert_int_equal(info.refcount, 1);
	assert_true(info.heap_used >= 1000);
	assert_string_equal(info.command, "shm_peer");

	assert_int_equal(peer_cmd(&p, NULL, 0, "return"), 0);
	assert_int_equal(peer_wait(&p, PEER_TIMEOUT_MS), 0);
	assert_int_equal(test_dir_count(), 0);
}

/* A reader that looks while the heap is being made sees nothing, or a
 * complete heap whose creator is alive: never a half-made or unlocked one. */
static void test_lifecycle_heap_appears_complete(void **state)
{
	(void)state;
	for (unsigned round = 0; round < 20; round++) {
		struct peer p;
		char name[RH_HEAP_NAME_LEN], reply[256];
		unsigned seen = 0;
		start_env(&p, NULL);
		heap_name(p.pid, name, sizeof(name));
		assert_int_equal(write(p.to, "alloc 64 1\n", 11), 11);
		struct pollfd pfd = { .fd = p.from, .events = POLLIN };
		while (poll(&pfd, 1, 0) == 0) {
			struct rh_heap *h = NULL;
			int rc = rh_heap_open(dir_fd, name, &h);
			if (rc == ENOENT)
				continue;
			if (rc != 0)
				fail_msg("%s seen half made: %s: %s", name, strerror(rc),
					 h ? rh_heap_error(h) : "");
			const struct rh_heap_info *info = rh_heap_info(h);
			if (info->orphaned || info->creator_pid != p.pid)
				fail_msg("%s seen orphaned (%d) or with creator %d while being made",
					 name, info->orphaned, (int)info->creator_pid);
			rh_heap_close(h);
			seen++;
		}
		assert_int_equal(peer_read(&p, reply, sizeof(reply)), 0);
		assert_int_equal(strncmp(reply, "ok", 2), 0);
		assert_int_equal(peer_finish(&p), 0);
		assert_int_equal(test_dir_count(), 0);
	}
}

static void test_lifecycle_mode_from_environment(void **state)
{
	(void)state;
	static const char *const env[] = { "RH_SHMALLOC_MODE=0640", NULL };
	struct peer p;
	char name[RH_HEAP_NAME_LEN];
	struct stat st;
	start_env(&p, env);
	alloc_in(&p);
	heap_name(p.pid, name, sizeof(name));
	assert_int_equal(fstatat(dir_fd, name, &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(peer_finish(&p), 0);
	assert_int_equal(test_dir_count(), 0);
}

/* Every normal way to end removes the heap; the process that ended is the
 * one that removed it (no one else is around to). */
static void test_lifecycle_heap_removed_at_normal_exit(void **state)
{
	(void)state;
	static const char *const ways[] = { "return", "exit", "thread-exit", "" };
	for (size_t i = 0; i < sizeof(ways) / sizeof(ways[0]); i++) {
		struct peer p;
		start_env(&p, NULL);
		alloc_in(&p);
		assert_true(heap_exists(p.pid));
		pid_t pid = p.pid;
		int status;
		if (ways[i][0]) {
			assert_int_equal(peer_cmd(&p, NULL, 0, "%s", ways[i]), 0);
			status = peer_wait(&p, PEER_TIMEOUT_MS);
		} else {
			status = peer_finish(&p); /* end of input: return from main */
		}
		assert_int_equal(status, 0);
		if (heap_exists(pid))
			fail_msg("heap-%d is still there after the process ended by '%s'", (int)pid,
				 ways[i][0] ? ways[i] : "end of input");
	}
	assert_int_equal(test_dir_count(), 0);
}

static void test_lifecycle_keep_leaves_orphan(void **state)
{
	(void)state;
	static const char *const env[] = { "RH_SHMALLOC_KEEP=1", NULL };
	struct peer p;
	start_env(&p, env);
	alloc_in(&p);
	pid_t pid = p.pid;
	struct rh_heap_info info = read_info(pid);
	assert_int_equal(info.orphaned, 0);
	assert_true(info.flags & RH_HEAP_F_KEEP);
	assert_int_equal(peer_finish(&p), 0);

	assert_true(heap_exists(pid));
	info = read_info(pid);
	assert_int_equal(info.orphaned, 1);
	assert_int_equal(info.refcount, 0);
	assert_int_equal(info.creator_pid, pid);
	assert_true(info.heap_used >= 1000); /* the block it never freed */
}

static void test_lifecycle_sigkill_leaves_orphan(void **state)
{
	(void)state;
	struct peer p;
	start_env(&p, NULL);
	alloc_in(&p);
	pid_t pid = p.pid;
	assert_int_equal(read_info(pid).orphaned, 0);
	int status = peer_kill(&p);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_true(heap_exists(pid));
	struct rh_heap_info info = read_info(pid);
	assert_int_equal(info.orphaned, 1);
	assert_int_equal(info.refcount, 0);
	assert_int_equal(info.creator_pid, pid);
}

/* A heap-<pid> left by a dead process of the same pid is replaced by the new
 * one: the child puts a copy of a real orphan under its own name just before
 * it execs the peer. */
static const char *orphan_name;

static void plant_orphan(void *arg)
{
	char name[RH_HEAP_NAME_LEN], buf[65536];
	(void)arg;
	heap_name(getpid(), name, sizeof(name));
	int in = openat(dir_fd, orphan_name, O_RDONLY);
	int out = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ssize_t n;
	if (in < 0 || out < 0)
		_exit(120);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			_exit(121);
	close(in);
	close(out);
}

static void test_lifecycle_leftover_of_dead_process_replaced(void **state)
{
	(void)state;
	struct peer dead, p;
	char dead_name[RH_HEAP_NAME_LEN];
	start_env(&dead, NULL);
	alloc_in(&dead);
	pid_t dead_pid = dead.pid;
	heap_name(dead_pid, dead_name, sizeof(dead_name));
	peer_kill(&dead);
	struct rh_heap_info old = read_info(dead_pid);
	assert_int_equal(old.orphaned, 1);

	orphan_name = dead_name;
	struct peer_opts o = { .pre_exec = plant_orphan };
	assert_int_equal(peer_start(&p, &o), 0);
	assert_int_equal(peer_cmd(&p, NULL, 0, "name"), 0); /* it has planted and exec'd */
	assert_true(heap_exists(p.pid));
	alloc_in(&p);
	struct rh_heap_info info = read_info(p.pid);
	assert_int_equal(info.orphaned, 0);
	assert_int_equal(info.creator_pid, p.pid);
	assert_int_not_equal(info.instance, old.instance);
	assert_int_equal(info.refcount, 1);
	pid_t pid = p.pid;
	assert_int_equal(peer_finish(&p), 0);
	assert_false(heap_exists(pid));
}

/* After exec, the same pid is a new program: the old image's heap is dead
 * (its lock went with the close-on-exec descriptor) and is replaced. */
static void test_lifecycle_exec_starts_fresh_heap(void **state)
{
	(void)state;
	struct peer p;
	char reply[256];
	start_env(&p, NULL);
	alloc_in(&p);
	uint64_t before = read_info(p.pid).instance;
	assert_int_equal(peer_cmd(&p, NULL, 0, "exec"), 0);
	assert_int_equal(peer_cmd(&p, reply, sizeof(reply), "name"), 0);
	assert_string_equal(reply, "ok -");
	alloc_in(&p);
	struct rh_heap_info info = read_info(p.pid);
	assert_int_not_equal(info.instance, before);
	assert_int_equal(info.orphaned, 0);
	assert_int_equal(test_dir_count(), 1);
	assert_int_equal(peer_finish(&p), 0);
	assert_int_equal(test_dir_count(), 0);
}

static void test_lifecycle_disabled_allocates_nothing(void **state)
{
	(void)state;
	static const char *const values[] = { "disable", "0", "false", "no" };
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char var[64], reply[256], expect[32];
		snprintf(var, sizeof(var), "RH_SHMALLOC=%s", values[i]);
		const char *const env[] = { var, NULL };
		struct peer p;
		start_env(&p, env);
		assert_int_equal(peer_cmd(&p, reply, sizeof(reply), "enabled"), 0);
		assert_string_equal(reply, "ok 0");
		assert_int_equal(peer_cmd(&p, reply, sizeof(reply), "alloc 100 1"), 1);
		snprintf(expect, sizeof(expect), "err %d", ENOMEM);
		assert_string_equal(reply, expect);
		assert_int_equal(peer_cmd(&p, reply, sizeof(reply), "name"), 0);
		assert_string_equal(reply, "ok -");
		assert_int_equal(test_dir_count(), 0);
		assert_int_equal(peer_finish(&p), 0);
	}
}

/* Two processes with the same PID number in different PID namespaces (two
 * containers sharing the folder): each peer is PID 1 of a namespace of its
 * own. Both get a heap under names of their own, both are alive to a
 * reader, they can attach each other's blocks, and both heaps go at exit. */
static void into_pid_namespace(void *arg)
{
	(void)arg;
	if (unshare(CLONE_NEWPID) != 0)
		_exit(TEST_SKIPPED);
	pid_t pid = fork();
	if (pid < 0)
		_exit(126);
	if (pid == 0) {
		/* PID 1 of the namespace: goes on to exec the peer, and dies with
		 * the process the test knows (which peer_kill kills). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		return;
	}
	/* It never execs: close what exec would have (the pipes' other ends,
	 * other peers' pipes), or the peer would never see end of input. */
	close(0);
	close(1);
	close_range(3, ~0u, 0);
	int status;
	if (waitpid(pid, &status, 0) != pid)
		_exit(126);
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

static int can_unshare_pid(void)
{
	int status;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(unshare(CLONE_NEWPID) == 0 ? 0 : 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_lifecycle_same_pid_in_two_pid_namespaces(void **state)
{
	(void)state;
	struct peer p[2];
	char name[2][64], ref[2][256];
	if (!can_unshare_pid()) {
		printf("cannot make a PID namespace here (needs CAP_SYS_ADMIN): skipped\n");
		skip();
	}
	struct peer_opts o = { .pre_exec = into_pid_namespace };
	for (unsigned i = 0; i < 2; i++) {
		char reply[256];
		assert_int_equal(peer_start(&p[i], &o), 0);
		if (peer_cmd(&p[i], reply, sizeof(reply), "alloc 1000 %u", 60 + i) != 0)
			fail_msg("peer %u, PID 1 of its namespace, could not allocate: %s", i, reply);
		snprintf(ref[i], sizeof(ref[i]), "%s", strchr(reply + 3, ' ') + 1);
		assert_int_equal(peer_cmd(&p[i], reply, sizeof(reply), "name"), 0);
		snprintf(name[i], sizeof(name[i]), "%.60s", reply + 3);
		/* Named after its PID as it sees it. */
		if (strcmp(name[i], "heap-1") != 0 && strncmp(name[i], "heap-1-", 7) != 0)
			fail_msg("peer %u, PID 1 of its namespace, made '%s'", i, name[i]);
	}
	if (strcmp(name[0], name[1]) == 0)
		fail_msg("both peers name their heap %s", name[0]);
	assert_int_equal(test_dir_count(), 2);
	for (unsigned i = 0; i < 2; i++) {
		struct rh_heap *h = NULL;
		int rc = rh_heap_open(dir_fd, name[i], &h);
		if (rc != 0)
			fail_msg("rh_heap_open(%s): %s", name[i], strerror(rc));
		const struct rh_heap_info *info = rh_heap_info(h);
		assert_int_equal(info->creator_pid, 1);
		if (info->orphaned)
			fail_msg("%s is judged orphaned while its creator runs", name[i]);
		assert_int_equal(info->refcount, 1);
		rh_heap_close(h);
	}
	/* A reference names the heap: each attaches the other's block. */
	for (unsigned i = 0; i < 2; i++) {
		char reply[256];
		if (peer_cmd(&p[i], reply, sizeof(reply), "attach %s 1000 %u", ref[1 - i], 61 - i) != 0)
			fail_msg("a peer could not attach a block of %s: %s", name[1 - i], reply);
	}
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(peer_cmd(&p[i], NULL, 0, "freeall"), 0);
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(peer_finish(&p[i]), 0);
	assert_int_equal(test_dir_count(), 0);
}

/* --- fork: scenarios run in children of this process ----------------------- */

/* In a forked child cmocka cannot report: say what failed and exit with the
 * line number, which the parent turns into a failure. */
#define CHECK(c) do { if (!(c)) { \
	fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); _exit(__LINE__ % 200 + 2); } \
	} while (0)

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(seed * 31 + i);
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(seed * 31 + i))
			return 0;
	return 1;
}

static uint64_t used_now(void)
{
	struct rh_shm_stats st;
	CHECK(rh_shm_stats(&st) == 0);
	return st.heap_used;
}

static const size_t fork_sizes[] = { 24, 500, 5000, 70000, 3 << 20 };
#define NFORK (sizeof(fork_sizes) / sizeof(fork_sizes[0]))

/* Runs a scenario in a child: it must end with exit status 0, by no signal,
 * and leave the folder empty; TEST_SKIPPED skips the test. */
static void run_scenario(void (*fn)(void), const char *what)
{
	int status = test_in_child(fn);
	if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIPPED)
		skip();
	if (WIFSIGNALED(status))
		fail_msg("%s: the process died of signal %d (%s)", what, WTERMSIG(status), strsignal(WTERMSIG(status)));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s scenario failed (status %#x; see the line above)", what, status);
	assert_int_equal(test_dir_count(), 0);
}

/* The descriptor of this process open on path, or -1. */
static int fd_open_on(const char *path)
{
	char link[64], to[512];
	for (int fd = 3; fd < 4096; fd++) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, to, sizeof(to) - 1);
		if (n > 0 && (to[n] = 0, strcmp(to, path) == 0))
			return fd;
	}
	return -1;
}

/* The child writes and frees what it inherited, allocates into a heap of its
 * own, and exits; the parent's blocks, counters and file are untouched. */
static void fork_scenario(void)
{
	unsigned char *blocks[NFORK];
	for (unsigned i = 0; i < NFORK; i++) {
		blocks[i] = rh_shm_alloc(fork_sizes[i]);
		CHECK(blocks[i]);
		fill(blocks[i], fork_sizes[i], i);
	}
	const char *name = rh_shm_heap_name();
	CHECK(name);
	char parent_name[RH_HEAP_NAME_LEN];
	snprintf(parent_name, sizeof(parent_name), "%s", name);
	uint64_t used = used_now();
	pid_t parent = getpid();
	CHECK(heap_exists(parent));

	fflush(NULL);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		char own[RH_HEAP_NAME_LEN];
		heap_name(getpid(), own, sizeof(own));
		const char *n = rh_shm_heap_name();
		CHECK(!n || strcmp(n, own) == 0);
		for (unsigned i = 0; i < NFORK; i++) {
			CHECK(same(blocks[i], fork_sizes[i], i));
			CHECK(rh_shm_usable_size(blocks[i]) >= fork_sizes[i]);
			fill(blocks[i], fork_sizes[i], 50 + i);
			blocks[i] = rh_shm_realloc(blocks[i], fork_sizes[i] * 2);
			CHECK(blocks[i] && same(blocks[i], fork_sizes[i], 50 + i));
			if (i % 2)
				rh_shm_free(blocks[i]);
		}
		unsigned char *mine = rh_shm_alloc(1000);
		CHECK(mine);
		fill(mine, 1000, 9);
		struct rh_shm_ref ref;
		CHECK(rh_shm_ref(mine, &ref) == 0);
		CHECK(strcmp(ref.heap, own) == 0);
		CHECK(rh_shm_heap_name() && strcmp(rh_shm_heap_name(), own) == 0);
		CHECK(heap_exists(getpid()));
		CHECK(heap_exists(parent));
		rh_shm_free(mine);
		exit(0);
	}
	int status;
	CHECK(waitpid(child, &status, 0) == child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(!heap_exists(child));     /* the child's heap went with it */
	CHECK(heap_exists(parent));     /* and ours stayed */
	CHECK(strcmp(rh_shm_heap_name(), parent_name) == 0);
	CHECK(used_now() == used);
	for (unsigned i = 0; i < NFORK; i++)
		CHECK(same(blocks[i], fork_sizes[i], i));
	/* Our heap is still consistent: reuse, grow and free it all. */
	for (unsigned i = 0; i < NFORK; i++) {
		blocks[i] = rh_shm_realloc(blocks[i], fork_sizes[i] + 100);
		CHECK(blocks[i] && same(blocks[i], fork_sizes[i], i));
	}
	for (unsigned i = 0; i < NFORK; i++)
		rh_shm_free(blocks[i]);
	CHECK(used_now() == 0);
	void *p = rh_shm_alloc(100);
	CHECK(p);
	rh_shm_free(p);
	struct rh_heap *h = NULL;
	CHECK(rh_heap_open(dir_fd, parent_name, &h) == 0);
	CHECK(rh_heap_info(h)->heap_used == 0);
	CHECK(rh_heap_info(h)->orphaned == 0);
	rh_heap_close(h);
}

static void test_lifecycle_fork_child_leaves_parent_heap_alone(void **state)
{
	(void)state;
	run_scenario(fork_scenario, "fork");
}

/* SEEK_HOLE calls: the fork copy asks the file where its data is. */
static unsigned long seek_holes;

off_t lseek(int fd, off_t off, int whence)
{
	static off_t (*real)(int, off_t, int);
	if (!real)
		real = (off_t (*)(int, off_t, int))dlsym(RTLD_NEXT, "lseek");
	if (whence == SEEK_HOLE)
		__atomic_fetch_add(&seek_holes, 1, __ATOMIC_RELAXED);
	return real(fd, off, whence);
}

/* Mappings made at a fixed address (the copy's private memory), counted
 * as the lseek calls above. */
static unsigned long fixed_maps;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static void *(*real)(void *, size_t, int, int, int, off_t);
	if (!real)
		real = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
	if (flags & MAP_FIXED)
		__atomic_fetch_add(&fixed_maps, 1, __ATOMIC_RELAXED);
	return real(addr, len, prot, flags, fd, off);
}

/* Runs of the heap's data, each a page alone between free spans (a shell's
 * heap looks like this): the copy maps private memory over many runs and
 * holes at once, not over each run and each hole (2 mappings and 2 advices
 * a run made a fork of bash three times glibc's time). */
static void fork_sparse_scenario(void)
{
	enum { N = 400, SIZE = 100000 };
	static unsigned char *blocks[N];
	for (unsigned i = 0; i < N; i++) {
		blocks[i] = rh_shm_alloc(SIZE);
		CHECK(blocks[i]);
		blocks[i][0] = (unsigned char)(i % 251 + 1);
	}
	for (unsigned i = 0; i < N; i += 2)
		rh_shm_free(blocks[i]);
	fflush(NULL);
	__atomic_store_n(&fixed_maps, 0, __ATOMIC_RELAXED);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		unsigned long n = __atomic_load_n(&fixed_maps, __ATOMIC_RELAXED);
		if (n > 40) {
			fprintf(stderr, "the copy of %u runs took %lu mappings\n", N / 2, n);
			_exit(3);
		}
		for (unsigned i = 1; i < N; i += 2) {
			CHECK(blocks[i][0] == (unsigned char)(i % 251 + 1));
			blocks[i][0] = 0; /* the child's own copy */
		}
		_exit(0);
	}
	int status;
	CHECK(waitpid(child, &status, 0) == child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (unsigned i = 1; i < N; i += 2) {
		CHECK(blocks[i][0] == (unsigned char)(i % 251 + 1));
		rh_shm_free(blocks[i]);
	}
}

static void test_lifecycle_fork_maps_many_runs_at_once(void **state)
{
	(void)state;
	run_scenario(fork_sparse_scenario, "fork, sparse runs");
}

/* A heap written end to end, whose records cut it into many runs (every
 * other block of 300 freed, its pages kept): the copy asks the file about
 * its one run of data a few times, not once for each of the heap's runs
 * (on tmpfs each SEEK_HOLE walks the whole run: a quadratic fork). */
static void fork_seek_scenario(void)
{
	enum { N = 300, SIZE = 40000 };
	static unsigned char *blocks[N];
	for (unsigned i = 0; i < N; i++) {
		blocks[i] = rh_shm_alloc(SIZE);
		CHECK(blocks[i]);
		fill(blocks[i], SIZE, i);
	}
	for (unsigned i = 0; i < N; i += 2)
		rh_shm_free(blocks[i]);
	fflush(NULL);
	__atomic_store_n(&seek_holes, 0, __ATOMIC_RELAXED);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		unsigned long n = __atomic_load_n(&seek_holes, __ATOMIC_RELAXED);
		if (n > 20) {
			fprintf(stderr, "the copy asked the file %lu times\n", n);
			_exit(3);
		}
		for (unsigned i = 1; i < N; i += 2)
			CHECK(same(blocks[i], SIZE, i));
		_exit(0);
	}
	int status;
	CHECK(waitpid(child, &status, 0) == child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (unsigned i = 1; i < N; i += 2)
		rh_shm_free(blocks[i]);
}

static void test_lifecycle_fork_asks_the_file_once_per_run(void **state)
{
	(void)state;
	run_scenario(fork_seek_scenario, "fork, one question per run of the file");
}

/* The parent's other threads go on while a child copies the heap, so a
 * block the child inherited may show a header changed meanwhile (freed and
 * reused, or written over as data). Such a header is never followed: the
 * child's usable size is 0 and realloc moves the bytes up to the end of the
 * copy, where reading the header would have faulted. */
static void fork_changed_header_scenario(void)
{
	unsigned char *blocks[NFORK];
	for (unsigned i = 0; i < NFORK; i++) {
		blocks[i] = rh_shm_alloc(fork_sizes[i]);
		CHECK(blocks[i]);
		fill(blocks[i], fork_sizes[i], i);
	}
	fflush(NULL);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		for (unsigned i = 0; i < NFORK; i++) {
			memset(blocks[i] - 16, 0xa5, 16);
			CHECK(rh_shm_usable_size(blocks[i]) == 0);
			unsigned char *moved = rh_shm_realloc(blocks[i], fork_sizes[i] * 2);
			CHECK(moved && moved != blocks[i]);
			CHECK(same(moved, fork_sizes[i], i));
			rh_shm_free(moved);
		}
		exit(0);
	}
	int status;
	CHECK(waitpid(child, &status, 0) == child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (unsigned i = 0; i < NFORK; i++) {
		CHECK(same(blocks[i], fork_sizes[i], i));
		CHECK(rh_shm_usable_size(blocks[i]) >= fork_sizes[i]);
		rh_shm_free(blocks[i]);
	}
	CHECK(used_now() == 0);
}

static void test_lifecycle_fork_changed_header_not_followed(void **state)
{
	(void)state;
	run_scenario(fork_changed_header_scenario, "fork, header changed");
}

static long rss_anon_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* New pages are written with zeros before they are handed out, so to the
 * file a block's untouched pages hold data: the child's copy must still
 * take memory only for the pages that are not zeros. */
static void fork_copy_scenario(void)
{
	enum { SIZE = 6 << 20 };
	unsigned char *p = rh_shm_alloc(SIZE);
	CHECK(p);
	memset(p + (1 << 20), 0x5a, 4096);
	p[SIZE - 1] = 7;
	/* Huge pages (THP "always") would round the child's copy up to 2 MiB
	 * at a time. */
	prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	long before = rss_anon_kib();
	int fds[2];
	CHECK(pipe(fds) == 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		long grown = rss_anon_kib() - before;
		int ok = p[SIZE - 1] == 7 && p[0] == 0 && p[SIZE / 2] == 0;
		for (unsigned i = 0; i < 4096; i++)
			ok &= p[(1 << 20) + i] == 0x5a;
		memset(p, 1, 4096);  /* the child's copy is its own */
		dprintf(fds[1], "%ld %d\n", grown, ok);
		_exit(0);
	}
	char buf[64] = "";
	close(fds[1]);
	CHECK(read(fds[0], buf, sizeof(buf) - 1) > 0);
	close(fds[0]);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	long grown;
	int ok;
	CHECK(sscanf(buf, "%ld %d", &grown, &ok) == 2);
	if (grown > 2048)
		fprintf(stderr, "the child's copy took %ld KiB for 8 KiB of data\n", grown);
	CHECK(grown <= 2048);
	CHECK(ok);
	CHECK(p[0] == 0);
	rh_shm_free(p);
}

static void test_lifecycle_fork_copies_only_pages_with_data(void **state)
{
	(void)state;
	run_scenario(fork_copy_scenario, "fork copy");
}

/* Written pages alternating with pages never touched, in a block too big
 * to be written at once (so the untouched pages are holes in the file):
 * the child's copy must be a few mappings, not one per run, which would
 * pass vm.max_map_count (65530 by default) for a heap of 256 MiB. */
static void fork_alternating_scenario(void)
{
	enum { BLOCK = 16 << 20, PAGE = 4096 };
	static char maps[1 << 20];
	unsigned char *p = rh_shm_alloc(BLOCK);
	CHECK(p);
	for (size_t o = 0; o < BLOCK; o += 2 * PAGE)
		p[o] = (unsigned char)(o / PAGE % 251 + 1);
	uintptr_t lo = (uintptr_t)rh_heap->base, hi = lo + rh_heap->mapped_end;
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);  /* not cmocka's handler: the child ends */
		signal(SIGBUS, SIG_DFL);
		size_t n = 0;
		ssize_t r;
		int fd = open("/proc/self/maps", O_RDONLY);
		CHECK(fd >= 0);
		while (n < sizeof(maps) - 1 && (r = read(fd, maps + n, sizeof(maps) - 1 - n)) > 0)
			n += (size_t)r;
		maps[n] = 0;
		close(fd);
		unsigned mappings = 0;
		for (char *l = maps; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
			unsigned long a, b;
			if (sscanf(l, "%lx-%lx", &a, &b) == 2 && a < hi && b > lo)
				mappings++;
		}
		if (mappings > 8)
			fprintf(stderr, "the child's copy of the heap takes %u mappings\n", mappings);
		CHECK(mappings <= 8);
		for (size_t o = 0; o < BLOCK; o += PAGE)
			CHECK(p[o] == (o / PAGE % 2 ? 0 : (unsigned char)(o / PAGE % 251 + 1)));
		p[0] = 0xee;  /* its own copy */
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status))
		fprintf(stderr, "the child died of signal %d reading its copy\n", WTERMSIG(status));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(p[0] == 1);
	rh_shm_free(p);
}

static void test_lifecycle_fork_copies_alternating_pages(void **state)
{
	(void)state;
	run_scenario(fork_alternating_scenario, "fork, alternating pages");
}

/* Makes reads of files fail (EIO) and PROT_NONE mappings fail (ENOMEM)
 * for the rest of the process: 0, or -1 where filters cannot be set. */
static int filter_pread_and_prot_none(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pread64, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EIO),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_NONE, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOMEM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) ? -1 : 0;
}

/* A child that can neither copy its parent's heap nor keep the rest of it
 * without access unmaps it. The range stays the parent's: a free of one of
 * its blocks does nothing (it must not reach the C library, which would
 * read the unmapped header), and is not taken for any other memory. */
static void fork_cut_unmapped_scenario(void)
{
	unsigned char *p = rh_shm_alloc(1 << 20), *q = rh_shm_alloc(40);
	CHECK(p && q);
	memset(p, 7, 1 << 20);
	char *base = rh_heap->base;
	if (filter_pread_and_prot_none() != 0)
		exit(TEST_SKIPPED);  /* no system call filters here */
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* The copy failed, no access could not be set: unmapped. */
		void *m = mmap(base, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		CHECK(m == base);
		CHECK(munmap(m, 4096) == 0);
		CHECK(heap_owner(p) == OWNER_INHERITED);
		CHECK(heap_owner(q) == OWNER_INHERITED);
		rh_shm_free(p);
		rh_shm_free(q);
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(p[0] == 7);
	rh_shm_free(p);
	rh_shm_free(q);
}

static void test_lifecycle_fork_cut_unmapped_stays_inherited(void **state)
{
	(void)state;
	run_scenario(fork_cut_unmapped_scenario, "fork, copy and cut refused");
}

/* A successful first allocation leaves errno alone, even when making the
 * heap met errors it got past: here a leftover of a dead process under our
 * name (EEXIST at the rename, then replaced). */
static void first_allocation_errno_scenario(void)
{
	for (unsigned leftover = 0; leftover < 2; leftover++) {
		fflush(NULL);
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			if (leftover) {
				char name[RH_HEAP_NAME_LEN];
				uint32_t magic = RH_HEAP_MAGIC; /* a heap, its creator gone */
				heap_name(getpid(), name, sizeof(name));
				int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL, 0600);
				CHECK(fd >= 0);
				CHECK(write(fd, &magic, sizeof(magic)) == sizeof(magic));
				close(fd);
			}
			errno = 12345;
			void *p = rh_shm_alloc(100);
			int saved = errno;
			CHECK(p);
			CHECK(rh_shm_heap_name());
			if (saved != 12345) {
				fprintf(stderr, "errno %d (%s) after a successful first allocation%s\n",
					saved, strerror(saved), leftover ? " over a leftover heap" : "");
				_exit(3);
			}
			errno = 12345;
			rh_shm_free(p);
			CHECK(errno == 12345);
			exit(0);
		}
		int status;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CHECK(!heap_exists(pid));
	}
}

static void test_lifecycle_first_allocation_keeps_errno(void **state)
{
	(void)state;
	run_scenario(first_allocation_errno_scenario, "errno");
}

/* The heap is named after the process (its main thread's name), also when
 * another thread, named otherwise, makes it with the first allocation. */
static void *named_thread_allocates(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "io-worker-3");
	return rh_shm_alloc(100);
}

static void thread_named_scenario(void)
{
	char comm[64] = "";
	FILE *f = fopen("/proc/self/comm", "r");
	CHECK(f && fgets(comm, sizeof(comm), f));
	fclose(f);
	comm[strcspn(comm, "\n")] = 0;
	CHECK(comm[0] && strcmp(comm, "io-worker-3") != 0);
	pthread_t t;
	void *p = NULL;
	CHECK(pthread_create(&t, NULL, named_thread_allocates, NULL) == 0);
	CHECK(pthread_join(t, &p) == 0 && p);
	char name[RH_HEAP_NAME_LEN];
	heap_name(getpid(), name, sizeof(name));
	struct rh_heap *h = NULL;
	CHECK(rh_heap_open(dir_fd, name, &h) == 0);
	if (strcmp(rh_heap_info(h)->command, comm) != 0) {
		fprintf(stderr, "heap made by a thread named io-worker-3 of %s is named %s\n", comm,
			rh_heap_info(h)->command);
		exit(1);
	}
	rh_heap_close(h);
	rh_shm_free(p);
}

static void test_lifecycle_named_after_the_process(void **state)
{
	(void)state;
	run_scenario(thread_named_scenario, "thread-named");
}

/* Under a file size limit (ulimit -f), growing the heap file past it would
 * have the kernel end the process with SIGXFSZ: allocation fails with
 * ENOMEM instead, and the heap goes on serving what fits. */
static void file_size_limit_scenario(void)
{
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_FSIZE, &rl) == 0);
	rl.rlim_cur = 6u << 20;
	CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
	void *b[64];
	int made = 0;
	for (int i = 0; i < 64; i++) {
		errno = 0;
		b[i] = rh_shm_alloc(1 << 20);
		if (b[i]) {
			memset(b[i], i, 1 << 20);
			made++;
		} else {
			CHECK(errno == ENOMEM);
		}
	}
	CHECK(made >= 1 && made < 64);
	for (int i = 0; i < 64; i++)
		rh_shm_free(b[i]);
	CHECK(rh_shm_alloc(1000));
	exit(0);
}

static void test_lifecycle_file_size_limit_fails_cleanly(void **state)
{
	(void)state;
	run_scenario(file_size_limit_scenario, "file size limit");
}

/* The program puts a file of its own under the heap's descriptor (dup2):
 * the heap reopens its file, stays locked (the lock is the open file's,
 * which the mappings keep open), grows, and never writes to the program's
 * file; at exit it still removes its own name. */
static void descriptor_taken_scenario(void)
{
	char path[512], victim[512];
	CHECK(rh_shm_alloc(100));
	snprintf(path, sizeof(path), "%s/heap-%d", test_dir, (int)getpid());
	int hfd = fd_open_on(path);
	CHECK(hfd >= 100); /* kept out of the way of the program's numbers */
	snprintf(victim, sizeof(victim), "%s/victim", test_dir); /* removed by the next test's setup if left */
	int v = open(victim, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(v >= 0 && write(v, "victim", 6) == 6);
	CHECK(dup2(v, hfd) == hfd);
	for (int i = 0; i < 24; i++)
		CHECK(rh_shm_alloc(1 << 20)); /* superblocks and pages: writes to the file */
	int probe = open(path, O_RDONLY | O_CLOEXEC);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = RH_LOCK_BASE, .l_len = 1 };
	CHECK(probe >= 0 && fcntl(probe, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK);
	close(probe);
	struct stat st;
	CHECK(fstat(v, &st) == 0 && st.st_size == 6);
	unlink(victim);
	exit(0);
}

/* Worse: the descriptor taken and the name gone, so the heap cannot open its
 * file again. A forked child still gets private copies (the heap's own
 * records tell which pages hold data), and writes nothing into its parent. */
static void descriptor_lost_fork_scenario(void)
{
	enum { N = 40 };
	unsigned char *b[N];
	char path[512], moved[520];
	for (int i = 0; i < N; i++) {
		size_t n = i % 4 == 3 ? (size_t)300000 : (size_t)(40 + i * 70);
		CHECK((b[i] = rh_shm_alloc(n)));
		memset(b[i], 0x40 + i, n);
	}
	snprintf(path, sizeof(path), "%s/heap-%d", test_dir, (int)getpid());
	snprintf(moved, sizeof(moved), "%s.moved", path);
	int hfd = fd_open_on(path);
	CHECK(hfd >= 0);
	CHECK(rename(path, moved) == 0);
	int v = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(v >= 0 && dup2(v, hfd) == hfd);
	fflush(NULL);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		for (int i = 0; i < N; i++) {
			size_t n = i % 4 == 3 ? (size_t)300000 : (size_t)(40 + i * 70);
			for (size_t k = 0; k < n; k++)
				if (b[i][k] != 0x40 + i)
					_exit(3);
			memset(b[i], 0xee, n);
		}
		/* The heap's records of inherited blocks came along too. */
		if (rh_shm_usable_size(b[3]) < 300000)
			_exit(4);
		unsigned char *r = rh_shm_realloc(b[3], 600000);
		if (!r || r[299999] != 0xee)
			_exit(5);
		exit(0); /* removes the heap the child made for r */
	}
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (int i = 0; i < N; i++) {
		size_t n = i % 4 == 3 ? (size_t)300000 : (size_t)(40 + i * 70);
		for (size_t k = 0; k < n; k++)
			CHECK(b[i][k] == 0x40 + i);
	}
	CHECK(rename(moved, path) == 0);
	exit(0);
}

static void test_lifecycle_fork_without_the_heap_descriptor(void **state)
{
	(void)state;
	run_scenario(descriptor_lost_fork_scenario, "descriptor lost");
}

static void test_lifecycle_descriptor_taken_by_the_program(void **state)
{
	(void)state;
	run_scenario(descriptor_taken_scenario, "descriptor");
}

/* A child that inherited the heap's descriptor must not keep its creator
 * looking alive: the creator dies by SIGKILL, its child lives on, then ends
 * with exit() and must not remove the heap it inherited either. */
static int release_fd[2], done_fd[2];

static void inherited_lock_scenario(void)
{
	CHECK(rh_shm_alloc(100));
	fflush(NULL);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		char c;
		close(release_fd[1]);
		CHECK(read(release_fd[0], &c, 1) == 0); /* until the test lets go */
		exit(0); /* done_fd[1] closes after the exit handlers ran */
	}
	raise(SIGKILL);
}

static void test_lifecycle_forked_child_does_not_keep_creator_alive(void **state)
{
	(void)state;
	char c;
	assert_int_equal(pipe(release_fd), 0);
	assert_int_equal(pipe(done_fd), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		inherited_lock_scenario();
		_exit(1);
	}
	close(done_fd[1]);
	close(release_fd[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_true(heap_exists(pid));
	struct rh_heap_info info = read_info(pid);
	close(release_fd[1]); /* the grandchild exits now */
	struct pollfd pfd = { .fd = done_fd[0], .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, PEER_TIMEOUT_MS), 1);
	assert_int_equal(read(done_fd[0], &c, 1), 0);
	close(done_fd[0]);
	assert_int_equal(info.orphaned, 1);
	assert_int_equal(info.refcount, 0);
	assert_true(heap_exists(pid));
	assert_int_equal(test_dir_count(), 1);
}

static int setup(void **state)
{
	(void)state;
	umask(022);
	test_dir_make();
	options_load(&rh_options); /* in case the library read them already */
	dir_fd = open(test_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return dir_fd >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	close(dir_fd);
	test_dir_remove();
	return 0;
}

static int reap(void **state)
{
	(void)state;
	peer_reap_all();
	return 0;
}

/* Each test starts with an empty folder (orphans of the last one removed). */
static int empty(void **state)
{
	(void)state;
	DIR *d = opendir(test_dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dir_fd, e->d_name, 0);
	if (d)
		closedir(d);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lifecycle_heap_made_at_first_allocation, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_named_after_the_process, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_heap_appears_complete, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_mode_from_environment, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_heap_removed_at_normal_exit, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_keep_leaves_orphan, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_sigkill_leaves_orphan, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_leftover_of_dead_process_replaced, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_exec_starts_fresh_heap, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_disabled_allocates_nothing, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_same_pid_in_two_pid_namespaces, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_first_allocation_keeps_errno, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_fork_copies_only_pages_with_data, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_fork_copies_alternating_pages, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_fork_child_leaves_parent_heap_alone, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_fork_changed_header_not_followed, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_fork_asks_the_file_once_per_run, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_fork_maps_many_runs_at_once, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_forked_child_does_not_keep_creator_alive, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_file_size_limit_fails_cleanly, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_descriptor_taken_by_the_program, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_fork_without_the_heap_descriptor, empty, reap),
		cmocka_unit_test_setup_teardown(test_lifecycle_fork_cut_unmapped_stays_inherited, empty, reap),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
