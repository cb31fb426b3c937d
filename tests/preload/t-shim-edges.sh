# SPDX-License-Identifier: MIT
# Edge cases of the shim found in review: threads that end after glibc frees
# their data late, realloc and pvalloc near SIZE_MAX, deep chains of fork,
# and every way a process ends (quick_exit among them) removing its heap.
# The programs are tests/progs/shim_edges.c and tests/progs/exit_ways.c.
set -u
TOP=${TOP:-$(pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
SHIM=$BUILD/lib/libredhawk-shm-preload.so
PROGS=$BUILD/tests/progs
fail() { echo "FAIL: $*"; exit 1; }
[ "${SANITIZE:-}" = 1 ] && { echo "the shim is not preloaded into sanitizer builds"; exit 77; }
[ -f "$SHIM" ] || { echo "not built: $SHIM"; exit 77; }
for p in shim_edges exit_ways; do
	[ -x "$PROGS/$p" ] || { echo "not built: $PROGS/$p"; exit 77; }
done

D=$(mktemp -d /dev/shm/rh-shim-edges.XXXXXX) || fail mktemp
V=$(mktemp "${TMPDIR:-/tmp}/rh-shim-edges.XXXXXX") || fail mktemp
trap 'rm -rf "$D" "$V" "$V.err" "$V.link" "$V.plain" "$V.shim"' EXIT INT TERM
export RH_SHM_DIR=$D
unset RH_SHMALLOC RH_SHMALLOC_TRACE_DEPTH RH_SHMALLOC_KEEP RH_SHMALLOC_MIN_SIZE RH_SHMALLOC_PRIVATE_SIZE \
	RH_SHMALLOC_THREAD_NUM_POOLS RH_SHMALLOC_POLICY

shim() { LD_PRELOAD=$SHIM "$@"; }
no_heaps() { # what
	left=$(ls -A "$D")
	[ -z "$left" ] || { rm -f "$D"/* "$D"/.[!.]*; fail "$1 left files behind: $left"; }
}

# 100 threads one after another, each ending after glibc freed its dlerror
# message (past the shim's thread-exit hook): the heap's counter slots are
# taken again, not lost one per thread.
shim "$PROGS/shim_edges" thread-exits 100 || fail "thread-exits: counter slots lost"
no_heaps thread-exits
echo "ok thread exits"

# realloc and pvalloc of sizes near SIZE_MAX fail as glibc's do.
"$PROGS/shim_edges" overflow > /dev/null || fail "overflow without the shim (the test is wrong)"
shim "$PROGS/shim_edges" overflow || fail "realloc or pvalloc near SIZE_MAX"
no_heaps overflow
echo "ok realloc and pvalloc overflow"

# malloc's corner cases return what the C library's return and leave errno
# as it leaves it, also when the heap cannot be made (a missing folder).
"$PROGS/shim_edges" api-corners > "$V.plain" || fail "api-corners without the shim"
for dir in "$D" "$D/missing"; do
	RH_SHM_DIR=$dir shim "$PROGS/shim_edges" api-corners > "$V.shim" 2> "$V.err" || fail "api-corners in $dir"
	diff "$V.plain" "$V.shim" || fail "api-corners in $dir: not as the C library"
done
no_heaps api-corners
echo "ok return values and errno as the C library's"

# calloc of blocks that come back from the thread's cache: zeros, with and
# without provenance (which has a path of its own), and none under
# RH_SHMALLOC_MIN_SIZE from the heap.
shim "$PROGS/shim_edges" calloc-reuse || fail "calloc-reuse"
RH_SHMALLOC_TRACE_DEPTH=0 shim "$PROGS/shim_edges" calloc-reuse || fail "calloc-reuse without provenance"
RH_SHMALLOC_TRACE_DEPTH=0 RH_SHMALLOC_MIN_SIZE=64 shim "$PROGS/shim_edges" calloc-reuse 64 ||
	fail "calloc-reuse with RH_SHMALLOC_MIN_SIZE"
no_heaps calloc-reuse
echo "ok calloc of reused blocks"

# A malloc of RH_SHMALLOC_PRIVATE_SIZE (8 MiB, rising) or more keeps its pages
# private until rh_shm_ref: a huge buffer the program barely touches takes
# nothing from the filesystem. 0 turns that off.
shim "$PROGS/shim_edges" private private || fail "private pages"
no_heaps private
RH_SHMALLOC_PRIVATE_SIZE=0 shim "$PROGS/shim_edges" private shared || fail "private pages turned off"
no_heaps private-off
shim "$PROGS/shim_edges" private-fork || fail "private pages and fork"
no_heaps private-fork
shim "$PROGS/shim_edges" private-maps || fail "private pages refused: shared ones instead"
no_heaps private-maps
echo "ok private pages of huge blocks"

# An alignment the heap refuses goes to the C library, and later large
# blocks still go to the heap.
shim "$PROGS/shim_edges" huge-align || fail "huge-align"
no_heaps huge-align
echo "ok huge alignment"

# The program takes the numbers of the heap's descriptors for a file of its
# own (dup2 over them, or close everything and dup2): the heap reopens its
# file, stays locked, grows, forks and is removed at exit; the file is never
# written.
ln -s "$D" "$V.link" || fail "ln -s"
for mode in dup2 closeall; do
	for dir in "$D" "$V.link"; do
		printf 'victim\n' > "$V"
		RH_SHM_DIR=$dir shim "$PROGS/shim_edges" fd-taken $mode "$V" || fail "fd-taken $mode in $dir"
		[ "$(cat "$V")" = victim ] || fail "fd-taken $mode: the program's file was written"
		no_heaps "fd-taken $mode in $dir"
	done
done
echo "ok descriptors taken by the program"

# Under a file size limit the heap stops growing at it, and the program
# goes on with private memory instead of dying of SIGXFSZ.
(ulimit -f 2000 && shim "$PROGS/exit_ways" big) || fail "ulimit -f: exit status $?"
no_heaps "ulimit -f"
echo "ok file size limit"

# Under an address space limit the heap reserves a quarter of it (here
# 128 MiB), and 64 blocks of 1 MiB all fit: none goes private.
(ulimit -v 1000000 && RH_SHMALLOC_METRICS=1 shim "$PROGS/exit_ways" big) 2> "$V.err" ||
	{ cat "$V.err"; fail "ulimit -v: exit status $?"; }
grep -q 'served from private memory  *0$' "$V.err" || { cat "$V.err"; fail "ulimit -v: blocks went private"; }
no_heaps "ulimit -v"
echo "ok address space limit"

# A limit lowered at run time (ulimit -v in a shell): the heap gives back the
# address space it reserved but does not use, so the shell and what it
# starts still get memory.
if command -v bash > /dev/null; then
	out=$(timeout 60 env LD_PRELOAD="$SHIM" bash -c 'ulimit -v 4000000; /bin/echo hi; echo $?' 2> "$V.err")
	[ "$out" = "hi
0" ] || { cat "$V.err"; fail "ulimit -v at run time: '$out'"; }
	# In a forked subshell: the reservation it inherited is not kept either.
	out=$(timeout 60 env LD_PRELOAD="$SHIM" bash -c \
		'x=$(ulimit -v 4000000; /bin/echo hi; echo $?); echo "$x"; (ulimit -v 4000000; x=$(printf "%0500000d" 1); echo ${#x})' \
		2> "$V.err")
	[ "$out" = "hi
0
500000" ] || { cat "$V.err"; fail "ulimit -v in a subshell: '$out'"; }
	no_heaps "ulimit -v at run time"
	echo "ok address space limit lowered at run time"
fi

# mlockall as a user with the usual RLIMIT_MEMLOCK (root is not limited), in
# the process and in a child it forked.
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
	N=$(mktemp -d /dev/shm/rh-shim-edges-n.XXXXXX) || fail mktemp
	chmod 777 "$N"
	(ulimit -l 8192 && RH_SHM_DIR=$N setpriv --reuid=65534 --regid=65534 --clear-groups \
		env LD_PRELOAD="$SHIM" "$PROGS/shim_edges" mlockall) || { rm -rf "$N"; fail "mlockall"; }
	left=$(ls -A "$N"); rm -rf "$N"
	[ -z "$left" ] || fail "mlockall left $left"
	echo "ok mlockall"
fi

# A folder that is not there: the program runs on private memory, with one
# warning. bash allocates first inside setlocale, which holds the C
# library's locale lock: the warning must not take it again.
if command -v bash > /dev/null; then
	out=$(RH_SHM_DIR=$D/missing timeout 20 env LD_PRELOAD="$SHIM" bash -c 'echo hi' 2> "$V.err")
	rc=$?
	[ "$out" = hi ] || { cat "$V.err"; fail "a missing folder: bash printed '$out' (status $rc, 124: hung)"; }
	grep -q "cannot create a heap in $D/missing: No such file or directory" "$V.err" ||
		{ cat "$V.err"; fail "a missing folder: no warning"; }
	echo "ok missing folder"
fi

# Fork with no descriptor left for the pipe the parent waits on while the
# child copies the heap: it waits all the same.
shim "$PROGS/shim_edges" fork-no-fds || fail "fork-no-fds"
no_heaps fork-no-fds
echo "ok fork with no descriptor left"

# fork from a signal handler that may interrupt an allocation: no deadlock.
timeout 60 env LD_PRELOAD="$SHIM" "$PROGS/shim_edges" fork-in-handler ||
	fail "fork from a signal handler: status $? (124: hung)"
rm -f "$D"/heap-* # a hang killed by timeout leaves the heap; the failure is reported
no_heaps fork-in-handler
echo "ok fork from a signal handler"

# 70 nested generations of fork, each child freeing its parent's block.
shim "$PROGS/shim_edges" fork-depth 70 || fail "70 nested forks"
no_heaps fork-depth
echo "ok fork depth"

# Every normal way to end removes the heap.
for how in quick_exit pthread_exit return exit _exit _Exit; do
	shim "$PROGS/exit_ways" $how || fail "exit_ways $how: exit status $?"
	no_heaps "exit_ways $how"
done
echo "ok quick_exit, pthread_exit, return, exit, _exit, _Exit"

# A plugin unloaded and another loaded where it was (most often at the same
# address): each kept block is told by the module that made it, the stacks
# walked through the second plugin are right (the unwind rules of the first
# were dropped at its dlclose; RH_SHMALLOC_UNWIND_CHECK=1 compares them with
# libunwind's), and no frame is garbage.
PLUG=$BUILD/tests/plugins
[ -x "$PROGS/plugin_swap" ] && [ -f "$PLUG/plugin_a.so" ] && [ -f "$PLUG/plugin_c.so" ] ||
	fail "not built: plugin_swap and its plugins"
where=$(RH_SHMALLOC_KEEP=1 RH_SHMALLOC_UNWIND_CHECK=1 shim "$PROGS/plugin_swap" \
	"$PLUG/plugin_a.so" "$PLUG/plugin_b.so" 2> "$V.err") || { cat "$V.err"; fail "plugin_swap"; }
! grep -q 'unwind mismatch' "$V.err" || { cat "$V.err"; fail "plugin_swap: the stack walks differ"; }
"$BUILD/bin/redhawk-shminfo" -d "$D" --format=b --breakdown=2 > "$V" || fail "shminfo after plugin_swap"
rm -f "$D"/heap-*
# The first two frames of each block: the plugin's function (each plugin
# names it its own way: a frame given to the wrong module is named wrong),
# then make_block, which calls both plugins from one place: each block must
# have a site of its own.
frames() { # bytes
	awk -v b="$1" '$1 == b && /in 1 block/ { n = 2; next } n > 0 { print $1; n-- }' "$V" | tr '\n' ' '
}
[ "$(frames 100000)" = "a_alloc make_block " ] || { cat "$V"; fail "plugin_swap: the first plugin's block is not a_alloc's ($where)"; }
[ "$(frames 200000)" = "b_alloc make_block " ] || { cat "$V"; fail "plugin_swap: the second plugin's block is not b_alloc's ($where)"; }
echo "ok a plugin loaded where another was unloaded ($where)"

# Reloaded in a loop, the plugins do not grow the journal at every turn: a
# range takes a new epoch (and its stacks new sites) 16 times at most.
size_after() { # reloads
	RH_SHMALLOC_KEEP=1 shim "$PROGS/plugin_swap" -n "$1" "$PLUG/plugin_a.so" "$PLUG/plugin_b.so" > /dev/null ||
		fail "plugin_swap $1"
	set -- "$D"/heap-*
	stat -c %s "$1"
	rm -f "$D"/heap-*
}
few=$(size_after 20)
many=$(size_after 10000)
[ "$many" -le "$few" ] || fail "10000 plugin reloads grew the heap file from $few to $many bytes"
echo "ok 10000 plugin reloads, heap file $many bytes (20 reloads: $few)"

# Plugins loaded inside the range of a larger one unloaded before them: the
# second and the third share their own range, which is unloaded in turn;
# each keeps a site of its own.
where=$(RH_SHMALLOC_KEEP=1 shim "$PROGS/plugin_swap" "$PLUG/plugin_big.so" "$PLUG/plugin_b.so" \
	"$PLUG/plugin_c.so" 2> "$V.err") || { cat "$V.err"; fail "plugin_swap, three plugins"; }
"$BUILD/bin/redhawk-shminfo" -d "$D" --format=b --breakdown=3 > "$V" || fail "shminfo after plugin_swap"
rm -f "$D"/heap-*
[ "$(frames 100000)" = "big_alloc make_block " ] && [ "$(frames 200000)" = "b_alloc make_block " ] &&
	[ "$(frames 300000)" = "c_alloc make_block " ] || { cat "$V"; fail "three plugins: blocks not told by their plugins ($where)"; }
echo "ok three plugins, two loaded inside the first one's range ($where)"

# A plugin loaded by a second thread where the first unloaded one, and used
# while the first thread is still inside dlclose (unload_race holds it
# there): the stacks walked in that window are whole, and each block is
# told by the plugin that made it; also with plugins of the same code, whose
# stacks through the same call are the same.
[ -x "$PROGS/unload_race" ] || fail "not built: unload_race"
for pair in a,b x,y; do
	p1=${pair%,*} p2=${pair#*,}
	where=$(RH_SHMALLOC_KEEP=1 timeout 30 env LD_PRELOAD="$SHIM" "$PROGS/unload_race" "$PLUG/plugin_$p1.so" \
		"$PLUG/plugin_$p2.so" "$PLUG/plugin_c.so" 2> "$V.err") || { rc=$?; cat "$V.err"; fail "unload_race: status $rc (124: hung)"; }
	"$BUILD/bin/redhawk-shminfo" -d "$D" --format=b --breakdown=4 > "$V" || fail "shminfo after unload_race"
	rm -f "$D"/heap-*
	[ "$(frames 100000)" = "${p1}_alloc make_block " ] && [ "$(frames 50000)" = "${p1}_alloc make_block " ] &&
		[ "$(frames 200000)" = "${p2}_alloc make_block " ] && [ "$(frames 300000)" = "${p2}_alloc make_block " ] ||
		{ cat "$V"; fail "unload_race $p1 $p2: blocks not told by their plugins ($where)"; }
	echo "ok plugin $p2 used while another thread unloads $p1, which it replaced ($where)"
done
# The same window, with the second thread forking in it: the child never
# sees the unload's flush in the parent, and drops the rules of the
# unloaded code itself (the shim's walk's and, checked against it,
# libunwind's).
where=$(RH_SHMALLOC_KEEP=1 RH_SHMALLOC_UNWIND_CHECK=1 timeout 30 env LD_PRELOAD="$SHIM" "$PROGS/unload_race" \
	"$PLUG/plugin_a.so" "$PLUG/plugin_b.so" "$PLUG/plugin_c.so" fork 2> "$V.err") ||
	{ rc=$?; cat "$V.err"; fail "unload_race fork: status $rc (124: hung)"; }
! grep -q "unwind mismatch" "$V.err" || { cat "$V.err"; fail "unload_race fork: libunwind's rules of the unloaded plugin"; }
"$BUILD/bin/redhawk-shminfo" -d "$D" --format=b --breakdown=4 > "$V" || fail "shminfo after unload_race fork"
rm -f "$D"/heap-*
[ "$(frames 200000)" = "b_alloc make_block " ] || { cat "$V"; fail "unload_race fork: the child's block is not b_alloc's ($where)"; }
echo "ok a child forked inside an unload uses the plugin loaded in its place ($(echo $where))"
# And inside the shim's flush after an unload the C library made on its own.
where=$(RH_SHMALLOC_KEEP=1 RH_SHMALLOC_UNWIND_CHECK=1 timeout 30 env LD_PRELOAD="$SHIM" "$PROGS/unload_race" \
	"$PLUG/plugin_a.so" "$PLUG/plugin_b.so" "$PLUG/plugin_c.so" check-fork 2> "$V.err") ||
	{ rc=$?; cat "$V.err"; fail "unload_race check-fork: status $rc (124: hung)"; }
! grep -q "unwind mismatch" "$V.err" || { cat "$V.err"; fail "unload_race check-fork: libunwind's rules of the unloaded plugin"; }
"$BUILD/bin/redhawk-shminfo" -d "$D" --format=b --breakdown=4 > "$V" || fail "shminfo after unload_race check-fork"
rm -f "$D"/heap-*
[ "$(frames 200000)" = "b_alloc make_block " ] ||
	{ cat "$V"; fail "unload_race check-fork: the child's block is not b_alloc's ($where)"; }
echo "ok a child forked inside the flush after the C library's own unload ($(echo $where))"

# The C library unloads an iconv module on its own (iconv_close), and a
# plugin is loaded where it was: the plugin's block is the plugin's.
if [ -x "$PROGS/gconv_swap" ]; then
	where=$(RH_SHMALLOC_KEEP=1 shim "$PROGS/gconv_swap" "$PLUG/plugin_a.so" 2> "$V.err") ||
		{ cat "$V.err"; fail "gconv_swap: status $?"; }
	"$BUILD/bin/redhawk-shminfo" -d "$D" --format=b --breakdown=3 > "$V" || fail "shminfo after gconv_swap"
	rm -f "$D"/heap-*
	[ "$(frames 777777)" = "a_alloc make_block " ] || { cat "$V"; fail "gconv_swap: the plugin's block is not a_alloc's ($where)"; }
	echo "ok a plugin loaded where the C library unloaded an iconv module ($where)"
fi

# A hook of the shim's that calls into the C library, which allocates
# (setlocale): the recorded stacks hold the C library's frames and the
# program's, none of the shim's (walked by the shim and by libunwind).
printf 'b\na\n' | LC_ALL=C.UTF-8 RH_SHMALLOC_KEEP=1 RH_SHMALLOC_UNWIND_CHECK=1 shim sort > /dev/null 2> "$V.err" ||
	{ cat "$V.err"; fail "sort under the shim"; }
! grep -q "unwind mismatch" "$V.err" || { cat "$V.err"; fail "setlocale: the walks differ"; }
"$BUILD/bin/redhawk-shminfo" -d "$D" --breakdown=100 > "$V" || fail "shminfo after sort"
rm -f "$D"/heap-*
grep -q "setlocale" "$V" || { cat "$V"; fail "setlocale: no stack through it (the test is wrong)"; }
! grep -q "preload\.c\|libredhawk-shm-preload" "$V" || { cat "$V"; fail "setlocale: the shim's own frames recorded"; }
echo "ok no frame of the shim's in the stacks of its hooks' allocations"

# libstdc++'s names for making and freeing locales go through the shim's
# hooks, which hand them on.
shim "$PROGS/shim_edges" locale-names || fail "__newlocale and __freelocale under the shim"
no_heaps locale-names
echo "ok __newlocale and __freelocale"

# A process that starts as root and drops its privileges: its heap is never
# given to the user it becomes (it holds root's data). After seteuid, which
# it can undo, it still removes its heap at exit and exec, as the file's
# owner again; after a drop for good it cannot, in a folder with the sticky
# bit as /dev/shm has, and the heap stays, root's, for redhawk-shmclean. An
# image exec'd after such a drop makes its own heap beside the stale one.
if [ "$(id -u)" = 0 ]; then
	S=$(mktemp -d /dev/shm/rh-shim-drop.XXXXXX) || fail mktemp
	chmod 1777 "$S"
	for how in setuid seteuid setreuid setresuid; do
		for then in return exec; do
			RH_SHM_DIR=$S shim "$PROGS/shim_edges" drop-user $how 65534 $then 2> "$V.err" ||
				{ cat "$V.err"; rm -rf "$S"; fail "drop-user $how $then"; }
			! grep -q "cannot create a heap" "$V.err" || { cat "$V.err"; rm -rf "$S"; fail "drop-user $how $then: no heap after exec"; }
			left=$(ls -A "$S")
			if [ $how = seteuid ]; then
				[ -z "$left" ] || { rm -rf "$S"; fail "drop-user $how, then $then: left $left"; }
			else
				case $left in
				heap-[0-9]*) [ "$(stat -c %u:%a "$S/$left")" = 0:600 ] ||
					{ rm -rf "$S"; fail "drop-user $how, then $then: $left is $(stat -c %u:%a "$S/$left")"; } ;;
				*) rm -rf "$S"; fail "drop-user $how, then $then: left '$left', not the heap alone" ;;
				esac
				"$BUILD/bin/redhawk-shmclean" -d "$S" > /dev/null || { rm -rf "$S"; fail "shmclean after a drop"; }
				[ -z "$(ls -A "$S")" ] || { rm -rf "$S"; fail "shmclean left $(ls -A "$S")"; }
			fi
		done
	done
	# Ids from which the way back to the effective one would not be sure
	# (effective 2000, real and saved 1000, the heap 1000's): the heap is
	# not removed as its owner, and the ids stay as they were.
	out=$(RH_SHM_DIR=$S shim "$PROGS/shim_edges" euid-kept) || { rm -rf "$S"; fail "euid-kept"; }
	[ "$out" = 2000 ] || { rm -rf "$S"; fail "after exec the effective user is $out, not 2000"; }
	rm -rf "$S"
	echo "ok heaps after a drop of privileges"
else
	echo "skip heaps after a drop of privileges (needs root)"
fi

# exec into an image that will not remove the heap set aside for it (no
# LD_PRELOAD, another folder, a static program, a set-user-ID program run by
# another user): the heap's name goes at exec instead of staying for good.
# An exec that fails puts the name back, or says it is gone.
O=$(mktemp -d /dev/shm/rh-shim-other.XXXXXX) || fail mktemp
for how in none other same; do
	for prog in /bin/true "$PROGS/static_true"; do
		shim "$PROGS/shim_edges" exec-env $how "$prog" "$O" || { rm -rf "$O"; fail "exec-env $how $prog"; }
		left=$(ls -A "$D" "$O" | grep heap)
		[ -z "$left" ] || { rm -rf "$O"; fail "exec with environment '$how' into $prog: left $left"; }
	done
done
# A script whose interpreter is a static program; an execute-only static
# program (it cannot be read to be looked at) run by another user.
printf '#!%s\n' "$PROGS/static_true" > "$O/script"
chmod 755 "$O/script"
shim "$PROGS/shim_edges" exec-env same "$O/script" || { rm -rf "$O"; fail "exec-env: script"; }
left=$(ls -A "$D" | grep heap)
[ -z "$left" ] || { rm -rf "$O"; fail "exec of a script with a static interpreter: left $left"; }
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
	X=$(mktemp -d /dev/shm/rh-shim-xonly.XXXXXX) || fail mktemp
	chmod 1777 "$X"
	cp "$PROGS/static_true" "$X/xonly"
	chmod 711 "$X/xonly"
	RH_SHM_DIR=$X setpriv --reuid=65534 --regid=65534 --clear-groups env LD_PRELOAD="$SHIM" \
		"$PROGS/shim_edges" exec-env same "$X/xonly" || { rm -rf "$X" "$O"; fail "exec-env: execute-only"; }
	left=$(ls -A "$X" | grep heap)
	rm -rf "$X"
	[ -z "$left" ] || { rm -rf "$O"; fail "exec of an execute-only static program: left $left"; }
fi
out=$(shim "$PROGS/shim_edges" exec-env same "$D/missing")
[ "$out" = named ] || { rm -rf "$O"; fail "a failed exec did not put the heap's name back ($out)"; }
out=$(shim "$PROGS/shim_edges" exec-env none "$D/missing")
[ "$out" = unnamed ] || { rm -rf "$O"; fail "a failed exec into an image without the shim: $out"; }
no_heaps exec-env
rm -rf "$O"
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
	suid=
	for f in /usr/bin/chfn /usr/bin/chsh /usr/bin/passwd /usr/bin/newgrp; do
		[ -u "$f" ] && [ "$(stat -c %u "$f")" = 0 ] && { suid=$f; break; }
	done
	if [ -n "$suid" ]; then
		S=$(mktemp -d /dev/shm/rh-shim-suid.XXXXXX) || fail mktemp
		chmod 1777 "$S"
		RH_SHM_DIR=$S setpriv --reuid=65534 --regid=65534 --clear-groups env LD_PRELOAD="$SHIM" \
			"$PROGS/shim_edges" exec-env same "$suid" > /dev/null 2>&1
		left=$(ls -A "$S")
		rm -rf "$S"
		[ -z "$left" ] || fail "exec of $suid (set-user-ID) by another user: left $left"
	fi
	# setpriv becomes another user keeping its capabilities until its
	# exec: the heap it made as root goes then, as the next image, without
	# them, could neither open nor remove it.
	S=$(mktemp -d /dev/shm/rh-shim-caps.XXXXXX) || fail mktemp
	chmod 1777 "$S"
	RH_SHM_DIR=$S shim setpriv --reuid=65534 --regid=65534 --clear-groups sh -c : || { rm -rf "$S"; fail "setpriv"; }
	left=$(ls -A "$S")
	rm -rf "$S"
	[ -z "$left" ] || fail "setpriv to another user, then exec: left $left"
fi
echo "ok exec into images that do not load the shim"

# clone(2) without CLONE_VM, through the C library (which runs no fork
# handlers): the child gets a private copy of the heap as a forked child
# does, and its own heap goes when its function returns.
shim "$PROGS/shim_edges" clone || fail "clone: the parent's heap changed, or the child failed"
no_heaps clone
echo "ok clone without CLONE_VM"

# exit() from one thread while another makes the process's first allocation,
# and so its heap: nothing is left, named or half made (RH_SHMALLOC_MIN_SIZE
# keeps the C library's own small allocations from making it earlier).
exit_races() { # mode, runs per value, values...
	mode=$1 runs=$2
	shift 2
	for v in "$@"; do
		i=0
		while [ $i -lt "$runs" ]; do
			RH_SHMALLOC_MIN_SIZE=4096 shim "$PROGS/shim_edges" "$mode" "$v" || fail "$mode $v"
			i=$((i + 1))
		done
	done
	no_heaps "$mode"
}
exit_races exit-while-creating 15 0 1000 5000 20000 50000 100000
# _exit from a signal handler that interrupted the heap being made.
exit_races exit-from-handler 8 40 80 120 160 200 260 320 400
echo "ok exit while the heap is being made"

# Under a file size limit no heap can be made, and each process says so on
# stderr: never past the limit when stderr is a file (SIGXFSZ ended the
# shell at the limit once).
( ulimit -f 1 && shim sh -c 'i=0; while [ $i -lt 20 ]; do sh -c : || exit 1; i=$((i + 1)); done' 2> "$V.err" ) ||
	fail "a warning past the file size limit ended the program"
grep -q 'cannot create a heap' "$V.err" || fail "no warning under the file size limit"
# Written where the descriptor is, not at the end: at the start of a file
# already past the limit, the warning fits.
head -c 8192 /dev/zero > "$V.err"
( ulimit -f 1 && shim sh -c : 2<> "$V.err" ) || fail "a warning at the start of a long file"
grep -q 'cannot create a heap' "$V.err" || fail "no warning at the start of a file past the limit"
no_heaps fsize
echo "ok warnings under a file size limit"

# exec while another thread's fork child copies the heap: the heap set
# aside is the next image's to remove (left in 10 of 60 runs once).
for us in 0 100 300 700 1000 1500 2000 3000 4000 5000 6000 8000 10000 13000 16000 20000 25000 30000 40000 50000; do
	shim "$PROGS/shim_edges" exec-while-forking $us || fail "exec-while-forking $us"
done
sleep 0.2  # the last children's ends
no_heaps exec-while-forking
echo "ok exec while forking"

# A vfork child's _exit is not its parent's: the parent, which had not
# allocated yet, still gets its heap.
shim "$PROGS/shim_edges" vfork-exit || fail "vfork-exit: the parent got no heap"
no_heaps vfork-exit
echo "ok a vfork child's _exit"
