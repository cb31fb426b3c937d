/* SPDX-License-Identifier: MIT */
/*
 * The shim's stack walk (preload/unwind.c) against libunwind's
 * unw_backtrace on the same stacks: frames whose CFA is rsp-based and
 * rbp-based (alloca), the C library's own frames (a qsort callback), a stack
 * cut at the limit, whole stacks down to _start and to a thread's start, and
 * after a flush; a signal handler's stack is left to libunwind (-1). No rule
 * of unloaded code survives: a plugin swapped for one with the same return
 * address and another frame, a fork inside an unload, a walk interrupted by
 * a walk in a signal handler. A library constructor's stack, whose outermost
 * frame is the loader's code without unwind tables, is walked whole.
 */
#define UNW_LOCAL_ONLY
#include <alloca.h>
#include <dlfcn.h>
#include <libunwind.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "unwind.h"

#if defined(__x86_64__)

#define MAX 64
static volatile unsigned sink; /* wraps: it only keeps the compiler from dropping work */

/* Two walks from one function, the shim's (n frames) and libunwind's (m):
 * their first entries are the function's two calls, the rest must be
 * equal. */
static void same_walks(void *const *a, int n, void *const *b, int m)
{
	assert_true(n > 1);
	assert_int_equal(n, m);
	for (int i = 1; i < n; i++)
		if (a[i] != b[i])
			fail_msg("frame %d of %d: %p, libunwind %p", i, n, a[i], b[i]);
}

/* Both walks from here. Returns the frame count. */
static __attribute__((noinline)) int same_as_libunwind(int max)
{
	void *a[MAX], *b[MAX];
	int n = unwind_fast(a, max, 0, 0);
	int m = unw_backtrace(b, max);
	same_walks(a, n, b, m);
	return n;
}

/* Frames of different shapes: a plain one, one with a large frame, one that
 * grows its stack at run time (its CFA is rbp-based). */
static __attribute__((noinline)) int plain(int max)
{
	int n = same_as_libunwind(max);
	sink++;
	return n;
}

/* Keeps enough values live across its call that rbp is saved and used as
 * a plain register: the walk must restore it for the rbp-based frame
 * further out. */
static __attribute__((noinline)) int many_live(int max)
{
	unsigned a = (unsigned)sink, b = a * 3, c = a * 5, d = a * 7, e = a * 11, f = a * 13, g = a * 17;
	int n = plain(max);
	sink = (unsigned)(sink + (a ^ b ^ c ^ d ^ e ^ f ^ g) + (a * b + c * d + e * f + g));
	return n;
}

static __attribute__((noinline)) int big_frame(int max)
{
	volatile char buf[20000];
	buf[sink & 1] = 1;
	int n = many_live(max);
	sink += buf[0];
	return n;
}

static __attribute__((noinline)) int grows(int max, size_t len)
{
	volatile char *p = alloca(len);
	p[0] = 1;
	int n = big_frame(max);
	sink += p[0];
	return n;
}

static void test_shapes(void **state)
{
	(void)state;
	/* Twice: the first walk fills the cache, the second reads it. */
	int n = grows(MAX, 100 + (size_t)sink % 7);
	assert_int_equal(grows(MAX, 3000 + (size_t)sink % 5), n);
	assert_true(n >= 7);  /* grows, big_frame, many_live, plain, the test, cmocka... */
}

/* Frames in the skipped range are left out wherever they are: on top (the
 * shim's own) and under frames outside it (a hook of the shim's that called
 * into the C library, which allocated). Here the range is the return
 * address of the first frame, then of the second. */
static __attribute__((noinline)) int skip_walk(void **buf, uintptr_t lo, uintptr_t hi)
{
	int n = unwind_fast(buf, MAX, lo, hi);
	sink++;
	return n;
}

static __attribute__((noinline)) int skip_outer(void **buf, uintptr_t lo, uintptr_t hi)
{
	int n = skip_walk(buf, lo, hi);
	sink++;
	return n;
}

static volatile int nwalks = 3;

static void test_skipped_frames_anywhere(void **state)
{
	(void)state;
	void *w[3][MAX];
	int n[3];
	uintptr_t lo = 0, hi = 0;
	/* One call site for the three walks (the count is not known to the
	 * compiler), so that they share their frames: all, without the first
	 * (which returns into skip_outer, on top), without the second (which
	 * returns into this function, under skip_outer's). */
	for (int k = 0; k < nwalks; k++) {
		n[k] = skip_outer(w[k], lo, hi);
		lo = (uintptr_t)w[0][k];
		hi = lo + 1;
	}
	assert_true(n[0] >= 3);
	for (int k = 1; k < 3; k++) {
		assert_int_equal(n[k], n[0] - 1);
		for (int i = 0, j = 0; i < n[0]; i++)
			if (i != k - 1)
				assert_ptr_equal(w[k][j++], w[0][i]);
	}
}

static __attribute__((noinline)) int recurse(int levels, int max)
{
	if (levels == 0)
		return same_as_libunwind(max);
	int n = recurse(levels - 1, max);
	sink++;
	return n;
}

/* A stack deeper than the limit is cut at it, the same for both. */
static void test_cut_at_limit(void **state)
{
	(void)state;
	assert_int_equal(recurse(40, 12), 12);
	assert_int_equal(recurse(40, 2), 2);
}

/* Through the C library's frames, which have no frame pointers. */
static int walked;
static int compare(const void *x, const void *y)
{
	if (!walked)
		walked = same_as_libunwind(MAX);
	return (*(const int *)x > *(const int *)y) - (*(const int *)x < *(const int *)y);
}

static void test_through_libc(void **state)
{
	(void)state;
	int v[64];
	for (int i = 0; i < 64; i++)
		v[i] = (i * 37) % 64;
	walked = 0;
	qsort(v, 64, sizeof(v[0]), compare);
	assert_true(walked >= 4);  /* compare, qsort's own, the test... */
	assert_int_equal(v[0], 0);
}

/* A thread's whole stack: it ends where its start marks the return
 * address undefined, as libunwind finds. */
static void *thread_walk(void *arg)
{
	*(int *)arg = plain(MAX);
	return NULL;
}

static void test_thread(void **state)
{
	(void)state;
	int n = 0;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, thread_walk, &n), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(n >= 3 && n < MAX);  /* whole: not cut at MAX */
}

/* The main thread's whole stack, to _start. */
static void test_whole_stack(void **state)
{
	(void)state;
	int n = plain(MAX);
	assert_true(n < MAX);
}

/* 3000 call sites, each a return address of its own: the cache of rules
 * doubles on the way (it starts at 4096 entries, and doubles at half
 * full), and every walk stays right. */
static int walks;
static __attribute__((noinline)) void leaf_walk(void)
{
	same_as_libunwind(MAX);
	walks++;
}
#define CALL1 leaf_walk();
#define CALL10 CALL1 CALL1 CALL1 CALL1 CALL1 CALL1 CALL1 CALL1 CALL1 CALL1
#define CALL100 CALL10 CALL10 CALL10 CALL10 CALL10 CALL10 CALL10 CALL10 CALL10 CALL10
#define CALL1000 CALL100 CALL100 CALL100 CALL100 CALL100 CALL100 CALL100 CALL100 CALL100 CALL100

static __attribute__((noinline)) void many_sites(void)
{
	CALL1000 CALL1000 CALL1000
}

static void test_many_return_addresses(void **state)
{
	(void)state;
	walks = 0;
	many_sites();
	many_sites();  /* again, from the grown cache */
	assert_int_equal(walks, 6000);
}

/* After a flush the rules are found again, and still right. */
static void test_flush(void **state)
{
	(void)state;
	int n = grows(MAX, 64);
	unwind_flush();
	assert_int_equal(grows(MAX, 64), n);
	unwind_flush();
	unwind_flush();
	assert_int_equal(grows(MAX, 512), n);
}

/* Rules of code unloaded go with the flush, also those the thread's last
 * walk kept by step. Plugins a and b have the same code but for their frame
 * size, so loaded one after the other at the same address, their walks pass
 * the same return address at the same step, with different rules. The
 * reference is libunwind's walk step by step, after its cache is flushed
 * (unw_backtrace's cache of frames never is). */
static void *swap_walk[MAX];
static int swap_n;
static char swap_wrong[256];  /* how the last walk differed from libunwind's; "": it did not */

static __attribute__((noinline)) void *walk_alloc(size_t n)
{
	void *ref[MAX];
	int m = 0;
	swap_n = unwind_fast(swap_walk, MAX, 0, 0);
	unw_context_t uc;
	unw_cursor_t c;
	unw_getcontext(&uc);
	unw_init_local(&c, &uc);
	do {
		unw_word_t ip;
		unw_get_reg(&c, UNW_REG_IP, &ip);
		ref[m++] = (void *)(uintptr_t)ip;
	} while (m < MAX && unw_step(&c) > 0);
	swap_wrong[0] = 0;
	if (swap_n != m || swap_n < 4)
		snprintf(swap_wrong, sizeof(swap_wrong), "%d frames, libunwind %d", swap_n, m);
	for (int i = 1; !swap_wrong[0] && i < swap_n; i++)
		if (swap_walk[i] != ref[i])
			snprintf(swap_wrong, sizeof(swap_wrong), "frame %d of %d: %p, libunwind %p", i, swap_n,
				swap_walk[i], ref[i]);
	return malloc(n);
}

/* A walk through plugin function f, as libunwind's. */
#define WALK_THROUGH(f) do {                                    \
	free((f)(16, walk_alloc));                              \
	if (swap_wrong[0])                                      \
		fail_msg("%s", swap_wrong);                     \
} while (0)

typedef void *(*make_with_fn)(size_t, void *(*)(size_t));

static make_with_fn plugin_load(const char *name, void **handle)
{
	char path[4096];
	const char *build = getenv("BUILD");
	snprintf(path, sizeof(path), "%s/tests/plugins/plugin_%s.so", build ? build : "build", name);
	*handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!*handle)
		fail_msg("%s", dlerror());
	make_with_fn f = (make_with_fn)dlsym(*handle, "plugin_make_with");
	assert_non_null(f);
	return f;
}

/* Swaps the plugin `from` for `to` with `flushes` flushes between: the
 * walks through `to` must be its own. */
static make_with_fn plugin_swap(const char *from, const char *to, unsigned flushes, void **h)
{
	make_with_fn a = plugin_load(from, h);
	WALK_THROUGH(a);
	WALK_THROUGH(a);
	void *ra_a = swap_walk[1];
	assert_int_equal(dlclose(*h), 0);
	for (unsigned i = 0; i < flushes; i++)
		unwind_flush();
	unw_flush_cache(unw_local_addr_space, 0, 0);
	make_with_fn b = plugin_load(to, h);
	if ((void *)b != (void *)a) {
		dlclose(*h);
		skip();  /* not at the same address: nothing to show */
	}
	WALK_THROUGH(b);
	assert_ptr_equal(swap_walk[1], ra_a);
	WALK_THROUGH(b);
	return b;
}

static void test_unloaded_code_leaves_no_rule(void **state)
{
	(void)state;
	void *h;
	plugin_swap("a", "b", 1, &h);
	dlclose(h);
	/* The rule table's keys hold 16 bits of the generation; the rules
	 * of the last walk must not come back when those wrap. */
	plugin_swap("b", "a", 1u << 16, &h);
	dlclose(h);
}

/* A fork while another thread is inside an unload (after the code went,
 * before the flush): the child never sees that flush, and must drop the
 * rules itself (unwind_fork_child, which the shim runs at fork). */
static sem_t unloaded, forked;
static void *unloader(void *h)
{
	unwind_unload_begin();
	assert_int_equal(dlclose(h), 0);
	sem_post(&unloaded);
	sem_wait(&forked);
	unwind_flush();
	unwind_unload_end();
	return NULL;
}

static void test_fork_inside_an_unload(void **state)
{
	(void)state;
	void *h;
	make_with_fn a = plugin_load("a", &h);
	WALK_THROUGH(a);
	WALK_THROUGH(a);
	assert_int_equal(sem_init(&unloaded, 0, 0), 0);
	assert_int_equal(sem_init(&forked, 0, 0), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, unloader, h), 0);
	sem_wait(&unloaded);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		unwind_fork_child();
		make_with_fn b = plugin_load("b", &h);
		if ((void *)b != (void *)a)
			_exit(77);
		unw_flush_cache(unw_local_addr_space, 0, 0);
		free(b(16, walk_alloc));
		if (swap_wrong[0])
			fprintf(stderr, "in the child: %s\n", swap_wrong);
		_exit(swap_wrong[0] ? 1 : 0);
	}
	sem_post(&forked);
	assert_int_equal(pthread_join(t, NULL), 0);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();  /* not at the same address: nothing to show */
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* A walk in a signal handler that interrupts a walk of the same thread
 * must not change the rules the interrupted walk is using. Both walk
 * through recursions of their own, whose frames differ in size at every
 * step, so a rule the handler's walk leaves at any step would send the
 * interrupted one astray. Another thread sends the signals, over a second
 * of walks. */
#define DEEP 24
#define RECURSION(name, bytes)                                                  \
	static __attribute__((noinline)) int name(void **buf, int n)           \
	{                                                                       \
		volatile char pad[bytes];                                       \
		pad[n & 31] = (char)n;                                          \
		int r = n ? name(buf, n - 1) : unwind_fast(buf, 32, 0, 0);      \
		sink += pad[0];                                                 \
		return r;                                                       \
	}
RECURSION(deep_small, 40)
RECURSION(deep_big, 232)

static volatile long nested_walks;
static void nested_handler(int sig)
{
	(void)sig;
	void *a[32];
	deep_big(a, DEEP);
	nested_walks++;
}

static volatile int kick_stop;
static void *kicker(void *arg)
{
	pid_t pid = getpid(), tid = *(pid_t *)arg;
	while (!kick_stop)
		syscall(SYS_tgkill, pid, tid, SIGUSR2), sched_yield();
	return NULL;
}

static void test_walk_interrupted_by_a_walk(void **state)
{
	(void)state;
	void *ref[32], *buf[32];
	int n = deep_small(ref, DEEP);
	assert_int_equal(deep_small(ref, DEEP), n);
	assert_true(n > DEEP + 1);
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = nested_handler;
	sa.sa_flags = SA_RESTART;
	assert_int_equal(sigaction(SIGUSR2, &sa, &old), 0);
	pid_t tid = (pid_t)syscall(SYS_gettid);
	pthread_t k;
	kick_stop = 0;
	nested_walks = 0;
	assert_int_equal(pthread_create(&k, NULL, kicker, &tid), 0);
	long done = 0, wrong = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (int i = 0; i < 10000; i++, done++) {
			/* The recursion's frames; the next is this loop's call. */
			int m = deep_small(buf, DEEP);
			if (m != n || memcmp(buf, ref, (DEEP + 1) * sizeof(void *)))
				wrong++;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 1000000000L);
	kick_stop = 1;
	assert_int_equal(pthread_join(k, NULL), 0);
	sigaction(SIGUSR2, &old, NULL);
	if (wrong)
		fail_msg("%ld wrong stacks of %ld walks (%ld walks in signal handlers)", wrong, done, nested_walks);
	assert_true(nested_walks > 0);
}

/* In a signal handler the stack runs through the kernel's signal frame,
 * which the fast walk leaves to libunwind. */
static volatile int handler_n = 0;
static void handler(int sig)
{
	(void)sig;
	void *a[MAX];
	handler_n = unwind_fast(a, MAX, 0, 0);
}

/* A caller whose unwind table is wrong (it leaves out two pushes), so that
 * the walk takes the word it pushed, its argument, for its return address;
 * it clears rbp before it calls. */
__asm__(".text\n"
	"wrong_cfi_caller:\n"
	".cfi_startproc\n"
	"\tpush %rbp\n"
	"\tpush %rdi\n"
	"\tsub $8, %rsp\n"
	"\t.cfi_adjust_cfa_offset 8\n"
	"\txor %ebp, %ebp\n"
	"\tcall walk_from_wrong_cfi\n"
	"\tadd $8, %rsp\n"
	"\t.cfi_adjust_cfa_offset -8\n"
	"\tpop %rdi\n"
	"\tpop %rbp\n"
	"\tret\n"
	".cfi_endproc\n");
void wrong_cfi_caller(uint64_t fake_return);
static volatile int wrong_n;
static void *wrong_fast[MAX], *wrong_slow[MAX];
static volatile int wrong_m;
__attribute__((noinline, used)) void walk_from_wrong_cfi(void)
{
	wrong_n = unwind_fast(wrong_fast, MAX, 0, 0);
	wrong_m = unw_backtrace(wrong_slow, MAX);
}

/* The return address such a rule gives lies in the program's own .bss, in
 * a page made unreadable: no unwind table covers it and rbp is 0, so the
 * walk ends there as libunwind's does, without reading what is there. */
static void test_wrong_rule_to_unreadable_code(void **state)
{
	(void)state;
	static char guard[3 * 4096] __attribute__((aligned(4096)));
	uint64_t fake = (uint64_t)(uintptr_t)(guard + 4096 + 100);
	assert_int_equal(mprotect(guard + 4096, 4096, PROT_NONE), 0);
	wrong_n = 0;
	wrong_cfi_caller(fake);
	assert_int_equal(mprotect(guard + 4096, 4096, PROT_READ | PROT_WRITE), 0);
	/* This function, the wrong caller, the word taken for its caller. */
	assert_int_equal(wrong_n, 3);
	same_walks(wrong_fast, wrong_n, wrong_slow, wrong_m);
	assert_true((uint64_t)(uintptr_t)wrong_fast[2] == fake);
}

/* From tests/plugins/ctor.c, run by the loader before main. */
extern void *ctor_fast[], *ctor_slow[];
extern int ctor_fast_n, ctor_slow_n;

/* Its walk ends where libunwind's does, at the loader's entry code (no
 * unwind table covers it; its rbp is 0), instead of giving up. */
static void test_constructor_stack(void **state)
{
	(void)state;
	same_walks(ctor_fast, ctor_fast_n, ctor_slow, ctor_slow_n);
	Dl_info where;
	if (!dladdr(ctor_fast[ctor_fast_n - 1], &where) || !where.dli_fname || !strstr(where.dli_fname, "ld-linux"))
		skip();  /* a loader that runs constructors from code with tables */
}

static void test_signal_frame(void **state)
{
	(void)state;
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	handler_n = 0;
	raise(SIGUSR1);
	assert_int_equal(handler_n, -1);
	sigaction(SIGUSR1, &old, NULL);
}

/* A frame whose unwind rule is wrong (as a rule of code unloaded under a
 * walk would be): its CFA lies 1 MiB above it. On a thread stack of 256
 * KiB with inaccessible memory above, the walk must stop at the stack's
 * end, not read past it. */
__asm__(".text\n"
	".type bogus_frame, @function\n"
	"bogus_frame:\n"
	".cfi_startproc\n"
	"	subq $8, %rsp\n"
	".cfi_adjust_cfa_offset 1048576\n"
	"	call *%rdi\n"
	"	addq $8, %rsp\n"
	".cfi_adjust_cfa_offset -1048576\n"
	"	ret\n"
	".cfi_endproc\n"
	".size bogus_frame, .-bogus_frame\n");
void bogus_frame(void (*fn)(void));

static volatile int bogus_n = 0;
static __attribute__((noinline)) void walk_from_bogus(void)
{
	void *a[MAX];
	bogus_n = unwind_fast(a, MAX, 0, 0);
	sink++;
}

static void *bogus_thread(void *arg)
{
	(void)arg;
	bogus_frame(walk_from_bogus);
	return NULL;
}

static void test_wrong_rule_stays_on_stack(void **state)
{
	(void)state;
	enum { STACK = 256 << 10, ALL = 4 << 20 };
	char *m = mmap(NULL, ALL, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mprotect(m, STACK, PROT_READ | PROT_WRITE), 0);
	pthread_attr_t at;
	pthread_t t;
	assert_int_equal(pthread_attr_init(&at), 0);
	assert_int_equal(pthread_attr_setstack(&at, m, STACK), 0);
	bogus_n = 0;
	assert_int_equal(pthread_create(&t, &at, bogus_thread, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	pthread_attr_destroy(&at);
	munmap(m, ALL);
	assert_int_equal(bogus_n, -1);
}

/* While an unload is under way the rules are found anew, not taken from
 * the cache; the walks stay right. */
static void test_walks_during_unload(void **state)
{
	(void)state;
	int n = grows(MAX, 64);
	unwind_unload_begin();
	unwind_unload_begin();
	assert_int_equal(grows(MAX, 64), n);
	unwind_unload_end();
	assert_int_equal(grows(MAX, 64), n);
	unwind_flush();
	unwind_unload_end();
	unwind_unload_end();  /* one end too many: nothing goes below none */
	assert_int_equal(grows(MAX, 512), n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_skipped_frames_anywhere),
		cmocka_unit_test(test_cut_at_limit),
		cmocka_unit_test(test_through_libc),
		cmocka_unit_test(test_thread),
		cmocka_unit_test(test_whole_stack),
		cmocka_unit_test(test_many_return_addresses),
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_unloaded_code_leaves_no_rule),
		cmocka_unit_test(test_fork_inside_an_unload),
		cmocka_unit_test(test_walk_interrupted_by_a_walk),
		cmocka_unit_test(test_constructor_stack),
		cmocka_unit_test(test_signal_frame),
		cmocka_unit_test(test_wrong_rule_to_unreadable_code),
		cmocka_unit_test(test_wrong_rule_stays_on_stack),
		cmocka_unit_test(test_walks_during_unload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

static void test_not_here(void **state)
{
	(void)state;
	void *a[4];
	assert_int_equal(unwind_fast(a, 4, 0, 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_not_here) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
