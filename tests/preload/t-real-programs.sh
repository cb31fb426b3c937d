# SPDX-License-Identifier: MIT
# Real programs under the shim, with provenance on, against the same run
# without it: python's own tests, gcc, git, sort, threaded C++, fork and exec.
# Each must give the same result and leave no heap file behind.
set -u
TOP=${TOP:-$(pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
SHIM=$BUILD/lib/libredhawk-shm-preload.so
PROGS=$BUILD/tests/progs
fail() { echo "FAIL: $*"; exit 1; }
[ "${SANITIZE:-}" = 1 ] && { echo "the shim is not preloaded into sanitizer builds"; exit 77; }
[ -f "$SHIM" ] || { echo "not built: $SHIM"; exit 77; }

D=$(mktemp -d /dev/shm/rh-preload-test.XXXXXX) || fail mktemp
W=$(mktemp -d "${TMPDIR:-/tmp}/rh-preload-work.XXXXXX") || fail mktemp
trap 'rm -rf "$D" "$W"' EXIT INT TERM
export RH_SHM_DIR=$D
unset RH_SHMALLOC RH_SHMALLOC_TRACE_DEPTH RH_SHMALLOC_KEEP RH_SHMALLOC_MIN_SIZE RH_SHMALLOC_PRIVATE_SIZE

shim() { LD_PRELOAD=$SHIM "$@"; }
no_heaps() { # what
	left=$(ls -A "$D")
	[ -z "$left" ] || fail "$1 left files behind: $left"
}

# sort of a few MB: byte-identical output.
awk 'BEGIN { srand(7); for (i = 0; i < 400000; i++) printf "%d %s\n", int(rand() * 1e9), "line" i }' > "$W/in.txt"
sort "$W/in.txt" > "$W/sort.plain"
shim sort "$W/in.txt" > "$W/sort.shim" || fail "sort under the shim"
cmp -s "$W/sort.plain" "$W/sort.shim" || fail "sort output differs"
no_heaps sort
echo "ok sort"

# gcc -O2 -c of a sizeable C file: byte-identical object.
SRC=$TOP/heap/alloc.c
gcc -O2 -D_GNU_SOURCE -I"$TOP/heap" -I"$TOP/heap/include" -c "$SRC" -o "$W/plain.o" || fail "gcc"
shim gcc -O2 -D_GNU_SOURCE -I"$TOP/heap" -I"$TOP/heap/include" -c "$SRC" -o "$W/shim.o" || fail "gcc under the shim"
cmp -s "$W/plain.o" "$W/shim.o" || fail "object files differ"
no_heaps gcc
echo "ok gcc"

# git init, add, commit, log.
git_run() { # dir, prefix...
	dir=$1; shift
	mkdir -p "$dir" && cd "$dir" || return 1
	"$@" git init -q . && printf 'a\nb\n' > f.txt && "$@" git add f.txt &&
	GIT_AUTHOR_DATE=2020-01-01T00:00:00Z GIT_COMMITTER_DATE=2020-01-01T00:00:00Z \
		"$@" git -c user.name=t -c user.email=t@example.invalid commit -qm first &&
	"$@" git log --format='%H %s' > ../$(basename "$dir").log
	rc=$?; cd - >/dev/null; return $rc
}
git_run "$W/g1" env || fail "git"
git_run "$W/g2" env LD_PRELOAD=$SHIM || fail "git under the shim"
cmp -s "$W/g1.log" "$W/g2.log" || fail "git log differs"
no_heaps git
echo "ok git"

# Threaded C++ with containers; fork with writes to inherited memory, and
# from code on a malloc'd stack (a thread's, a coroutine's); exec chains.
for p in threads forker fork_stacks execself; do
	[ -x "$PROGS/$p" ] || fail "not built: $PROGS/$p"
	"$PROGS/$p" > "$W/$p.plain" 2>&1 || fail "$p without the shim"
	shim "$PROGS/$p" > "$W/$p.shim" 2>&1 || { cat "$W/$p.shim"; fail "$p under the shim"; }
	cmp -s "$W/$p.plain" "$W/$p.shim" || { diff "$W/$p.plain" "$W/$p.shim"; fail "$p output differs"; }
	no_heaps "$p"
	echo "ok $p"
done

# Every normal end removes the heap; death by a signal leaves it, orphaned.
for how in return exit _exit _Exit; do
	shim "$PROGS/exit_ways" $how || fail "exit_ways $how"
	no_heaps "exit_ways $how"
done
shim "$PROGS/exit_ways" abort 2>/dev/null && fail "exit_ways abort did not abort"
left=$(ls -A "$D")
case $left in heap-[0-9]*) ;; *) fail "abort left '$left', expected one heap" ;; esac
"$BUILD/bin/redhawk-shminfo" -d "$D" | grep -q 'orphaned:    true' || fail "the aborted heap is not orphaned"
rm -f "$D"/heap-*
# A kept heap stays, orphaned, after a normal exit.
RH_SHMALLOC_KEEP=1 shim "$PROGS/exit_ways" return || fail "exit_ways with RH_SHMALLOC_KEEP=1"
[ -n "$(ls -A "$D")" ] || fail "RH_SHMALLOC_KEEP=1 left nothing"
rm -f "$D"/heap-*
# Disabled: nothing is made.
RH_SHMALLOC=disable shim "$PROGS/exit_ways" big || fail "exit_ways with RH_SHMALLOC=disable"
no_heaps "RH_SHMALLOC=disable"
echo "ok exit, _exit, _Exit, abort, keep, disable"

# malloc_trim returns the shim's free pages too.
RH_SHMALLOC_METRICS=1 shim "$PROGS/trim" 2> "$W/trim.err" || fail "trim"
grep -q 'bytes returned to the filesystem *[1-9]' "$W/trim.err" ||
	{ cat "$W/trim.err"; fail "malloc_trim returned nothing to the filesystem"; }
no_heaps trim
echo "ok malloc_trim"

# A full filesystem: a 4 MiB tmpfs of our own; 64 MiB still allocate, from
# private memory, and the program ends well. Once a block of 1 MiB could not
# be had, the next ones do not each try the full filesystem again: the
# backoff (0.1 s, doubling) allows a fifth try only after 1.5 s.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	mkdir "$W/small"
	if unshare -m sh -c "mount -t tmpfs -o size=4m rh-test '$W/small' && \
		RH_SHM_DIR='$W/small' RH_SHMALLOC_METRICS=1 LD_PRELOAD='$SHIM' '$PROGS/exit_ways' big" \
		2> "$W/full.err"; then
		grep -q 'allocations served from private memory *[1-9]' "$W/full.err" ||
			{ cat "$W/full.err"; fail "a full filesystem: no private fallback counted"; }
		refused=$(sed -n 's/.*allocations refused (no shared memory) *\([0-9]*\).*/\1/p' "$W/full.err")
		[ -n "$refused" ] && [ "$refused" -le 4 ] ||
			{ cat "$W/full.err"; fail "a full filesystem: $refused of 64 allocations tried it again"; }
		echo "ok full filesystem ($refused of 64 large allocations tried it)"
	else
		grep -q 'mount' "$W/full.err" && echo "cannot mount a tmpfs here: full-filesystem part skipped" ||
			{ cat "$W/full.err"; fail "a full filesystem: the program failed"; }
	fi
fi

# python3's own test suite: same verdict.
PY=$(command -v python3)
if [ -n "$PY" ] && "$PY" -c 'import test.test_dict' 2>/dev/null; then
	mods="test_dict test_list test_threading test_json test_re"
	"$PY" -m test $mods > "$W/py.plain" 2>&1; a=$?
	shim "$PY" -m test $mods > "$W/py.shim" 2>&1; b=$?
	# Some of these tests depend on timing: on a loaded machine one may fail
	# once. A verdict that differs is taken again, both ways, before it counts.
	if [ $a != $b ]; then
		"$PY" -m test $mods > "$W/py.plain" 2>&1; a=$?
		shim "$PY" -m test $mods > "$W/py.shim" 2>&1; b=$?
	fi
	[ $a = $b ] || { tail -20 "$W/py.shim"; fail "python3 -m test: $a without the shim, $b with it"; }
	# Some of python's tests end child interpreters with abort() on purpose:
	# death by a signal leaves a heap, as it must. Those are orphans, and
	# redhawk-shmclean removes them; nothing else may be left.
	"$BUILD/bin/redhawk-shmclean" -d "$D" > /dev/null || fail "shmclean after python3"
	no_heaps python3
	echo "ok python3 ($mods)"
else
	echo "python3 without its test package: skipped that part"
fi

# The shim's own stack walk against libunwind's on every stack these
# programs allocate from (RH_SHMALLOC_UNWIND_CHECK=1 walks each twice and
# reports a difference): the compiler, the interpreter, git, sort, threads.
check() { RH_SHMALLOC_UNWIND_CHECK=1 LD_PRELOAD=$SHIM "$@"; }
: > "$W/walk.err"
check gcc -O2 -D_GNU_SOURCE -I"$TOP/heap" -I"$TOP/heap/include" -c "$TOP/heap/journal.c" \
	-o "$W/walk.o" 2>> "$W/walk.err" || fail "gcc with the walk checked"
if [ -n "$PY" ]; then
	check "$PY" -c 'import json, re, decimal, threading, collections
t = [threading.Thread(target=lambda: sorted(json.dumps({str(i): [i] * 9}) for i in range(3000))) for _ in range(4)]
[x.start() for x in t]; [x.join() for x in t]
print(decimal.Decimal(1) / 7, re.sub("a+", "b", "caaat"))' > /dev/null 2>> "$W/walk.err" ||
		fail "python3 with the walk checked"
fi
git_run "$W/g3" env RH_SHMALLOC_UNWIND_CHECK=1 LD_PRELOAD=$SHIM 2>> "$W/walk.err" ||
	fail "git with the walk checked"
check sort "$W/in.txt" > /dev/null 2>> "$W/walk.err" || fail "sort with the walk checked"
check "$PROGS/threads" > /dev/null 2>> "$W/walk.err" || fail "threads with the walk checked"
if grep -q 'unwind mismatch' "$W/walk.err"; then
	head -5 "$W/walk.err"
	fail "the shim's stack walk differs from libunwind's ($(grep -c 'unwind mismatch' "$W/walk.err") stacks)"
fi
no_heaps "the checked walks"
echo "ok stack walk, as libunwind's"
