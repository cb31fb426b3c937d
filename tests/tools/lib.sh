# SPDX-License-Identifier: MIT
# Shared by tests/tools/t-*.sh (sourced, not run): the tools, the fixture
# writer, a private heap folder removed at exit, and comparison helpers.
# scripts/run-tests runs each script with TOP (the tree) and BUILD set.
set -u
TOP=${TOP:-$(pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
SHMINFO=$BUILD/bin/redhawk-shminfo
SHMCLEAN=$BUILD/bin/redhawk-shmclean
MKHEAP=$BUILD/tests/progs/mkheap
EXPECTED=$TOP/tests/tools/expected

skip() { echo "$*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

for f in "$SHMINFO" "$SHMCLEAN" "$MKHEAP"; do
	[ -x "$f" ] || skip "not built: $f"
done
[ -d /dev/shm ] && [ -w /dev/shm ] || skip "no writable /dev/shm"

# A private heap folder: tests never touch heaps they did not make.
D=$(mktemp -d /dev/shm/rh-tools-test.XXXXXX) || fail "mktemp"
KIDS=""
cleanup() {
	for p in $KIDS; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$D" "$D.out" "$D.err" "$D.hold" "$D.holder" "$D.outside" "$D.pid" "$D.json" "$D.supp" "$D.noexec"
}
trap cleanup EXIT INT TERM
unset RH_SHM_DIR DEBUGINFOD_URLS
umask 022

# Runs a tool, keeping stdout in $D.out, stderr in $D.err and the status in $rc.
run() {
	"$@" >"$D.out" 2>"$D.err"
	rc=$?
}

# The output with the folder's name as DIR and its size lines blanked.
normal() {
	sed -e "s|$D|DIR|g" -e 's/^  size: .*/  size: SIZE/' -e 's/^  free: .*/  free: FREE/' "$1"
}

# Compares normal(stdout) with tests/tools/expected/NAME.
expect() {
	normal "$D.out" | diff -u "$EXPECTED/$1" - || fail "output differs from expected/$1 ($2)"
}

expect_rc() { [ "$rc" = "$1" ] || { cat "$D.err"; fail "exit status $rc, expected $1 ($2)"; }; }
expect_err() { grep -qF -- "$1" "$D.err" || { cat "$D.err"; fail "stderr lacks '$1' ($2)"; }; }
expect_out() { grep -qF -- "$1" "$D.out" || { cat "$D.out"; fail "stdout lacks '$1' ($2)"; }; }

# Starts a process that creates heap NAME and holds its creator lock, as the
# allocator does; sets $kid to its PID once the heap exists.
hold_heap() {
	"$MKHEAP" native "$D" "$1" 0 "${2:-fake}" hold >"$D.hold" &
	kid=$!
	KIDS="$KIDS $kid"
	i=0
	while ! grep -q ready "$D.hold" 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 200 ] || fail "mkheap hold did not start"
		sleep 0.01
	done
	rm -f "$D.hold"
}
