#!/bin/sh
# SPDX-License-Identifier: MIT
# redhawk-shmrun: crash cleanup (a segfault, SIGKILL from outside, a crashing
# child reaped by its parent, a crashing orphan), exit statuses as a shell
# gives them, signal forwarding, the leak check's options, bad input (125,
# 126, 127), and heaps it did not create left alone.
. "$TOP/tests/tools/lib.sh"

SHMRUN=$BUILD/bin/redhawk-shmrun
SHIM=$BUILD/lib/libredhawk-shm-preload.so
CRASHER=$BUILD/tests/progs/crasher
LEAKS=$BUILD/tests/leaks
[ "${SANITIZE:-}" = 1 ] && skip "the shim is not preloaded into sanitizer builds"
for f in "$SHMRUN" "$SHIM" "$CRASHER" "$LEAKS/dropped" "$LEAKS/reachable"; do
	[ -x "$f" ] || [ -f "$f" ] || skip "not built: $f"
done

no_heaps() { # what
	left=$(ls -A "$D")
	[ -z "$left" ] || fail "$1 left files behind: $left"
}

# Waits until FILE holds a pid; sets $pid.
wait_pid_file() {
	i=0
	while ! [ -s "$1" ]; do
		i=$((i + 1)); [ $i -lt 500 ] || fail "no pid in $1"
		sleep 0.01
	done
	pid=$(cat "$1")
}

# A segfault: 139, the report names the call site that held the memory.
run "$SHMRUN" -d "$D" "$CRASHER" segv
expect_rc 139 "segfault"
expect_err "killed by signal 11" "segfault report"
expect_err "held 11.7K in 3 blocks" "what was held"
expect_err "hold_buffers (crasher.c:" "call site"
expect_err "unlinking heap-" "removal"
no_heaps "a segfault"
echo "ok segv"

# SIGKILL from outside: 137.
"$SHMRUN" -d "$D" "$CRASHER" wait "$D.pid" >"$D.out" 2>"$D.err" &
runner=$!
KIDS="$runner"
wait_pid_file "$D.pid"
[ -e "$D/heap-$pid" ] || fail "no heap-$pid while it runs"
kill -9 "$pid"
wait "$runner"; rc=$?
rm -f "$D.pid"
expect_rc 137 "SIGKILL"
expect_err "pid $pid (crasher) killed by signal 9" "SIGKILL report"
expect_err "hold_buffers (crasher.c:" "call site after SIGKILL"
no_heaps "SIGKILL"
echo "ok sigkill"

# Signals reach COMMAND: SIGTERM to redhawk-shmrun kills it, 143.
"$SHMRUN" -d "$D" "$CRASHER" wait "$D.pid" >"$D.out" 2>"$D.err" &
runner=$!
KIDS="$runner"
wait_pid_file "$D.pid"
kill -TERM "$runner"
wait "$runner"; rc=$?
rm -f "$D.pid"
expect_rc 143 "forwarded SIGTERM"
expect_err "killed by signal 15" "SIGTERM report"
no_heaps "SIGTERM"
echo "ok forwarding"

# A child that crashes, reaped by its own parent (which exits 3).
run "$SHMRUN" -d "$D" "$CRASHER" fork-segv
expect_rc 3 "parent's status"
expect_err "hold_buffers (crasher.c:" "the child's call site"
no_heaps "a crashing child"
echo "ok fork-segv"

# A crashing orphan, reaped by us as subreaper, with --wait-all.
run "$SHMRUN" -d "$D" --wait-all "$CRASHER" orphan-segv
expect_rc 0 "COMMAND's status"
expect_err "killed by signal 11" "the orphan's death"
no_heaps "a crashing orphan"
echo "ok orphan"

# --keep leaves the heap, still orphaned.
run "$SHMRUN" -d "$D" --keep "$CRASHER" segv
expect_rc 139 "segfault with --keep"
[ -n "$(ls -A "$D")" ] || fail "--keep removed the heap"
rm -f "$D"/heap-*
echo "ok keep"

# A heap we did not make (an orphan of a process not ours) is left alone.
RH_SHM_DIR=$D LD_PRELOAD=$SHIM "$CRASHER" segv 2>/dev/null
foreign=$(ls -A "$D")
[ -n "$foreign" ] || fail "no foreign orphan made"
run "$SHMRUN" -d "$D" "$CRASHER" segv
expect_rc 139 "segfault next to a foreign orphan"
[ "$(ls -A "$D")" = "$foreign" ] || fail "a heap not ours was touched: $(ls -A "$D")"
rm -f "$D"/heap-*
echo "ok foreign"

# A process outside the tree announces itself on the launcher's socket (its
# name can be read in /proc/net/unix) and leaves a heap of its own making,
# marked scanned, with its true pid and start time: not counted, not removed.
if command -v python3 >/dev/null 2>&1; then
	"$SHMRUN" -d "$D" --leak-check sleep 2 >"$D.out" 2>"$D.err" &
	S=$!
	KIDS="$KIDS $S"
	python3 - "$D" "$MKHEAP" "$S" <<'PY' || fail "announcing from outside the tree"
import os, socket, struct, subprocess, sys, time
d, mkheap, launcher = sys.argv[1], sys.argv[2], sys.argv[3]
for _ in range(500):
    names = [l.split()[-1] for l in open('/proc/net/unix') if '@redhawk-shmrun-%s-' % launcher in l]
    if names:
        break
    time.sleep(0.01)
else:
    sys.exit('no socket')
pid = os.getpid()
start = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])
name = 'heap-%d' % pid
subprocess.run([mkheap, 'native', d, name, str(pid), 'fake'], check=True)
with open(os.path.join(d, name), 'r+b') as f:
    f.seek(40); f.write(struct.pack('<Q', start))   # creator_start
    f.seek(80); f.write(struct.pack('<I', 0x4))     # scanned
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(struct.pack('<IIQ', 0x52484852, 1, start), '\0' + names[0][1:])
PY
	wait $S
	rc=$?
	expect_rc 0 "a process outside the tree announced itself"
	grep -q "0 bytes lost in 0 blocks (0 leaks) in 0 of 1 process" "$D.err" ||
		{ cat "$D.err"; fail "another process's heap counted as the tree's"; }
	[ -n "$(ls -A "$D")" ] || fail "a heap of a process outside the tree removed"
	rm -f "$D"/heap-*
	echo "ok announcements from outside the tree ignored"
fi

# COMMAND's pid already names a live heap (a process of another PID
# namespace sharing the folder; here a file whose creator lock another
# process holds), so its heap takes the namespace's suffix: that is the
# heap reported and removed after its crash; the other is left alone.
if command -v python3 >/dev/null 2>&1 && [ -e /proc/self/ns/pid ]; then
	run "$SHMRUN" -d "$D" env RH_SHMALLOC=disable sh -c '
		"$1" native "$2" heap-$$ $$ fake || exit 90
		python3 -c "
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack(\"hhqqi4x\", fcntl.F_WRLCK, 0, 0, 1, 0))
print(\"locked\", flush=True)
time.sleep(60)" "$2/heap-$$" > "$2.hold" &
		echo $! > "$2.holder"
		i=0
		until [ -s "$2.hold" ]; do i=$((i + 1)); [ $i -lt 500 ] || exit 91; sleep 0.01; done
		exec env -u RH_SHMALLOC "$3" segv' sh "$MKHEAP" "$D" "$CRASHER"
	[ -s "$D.holder" ] && KIDS="$KIDS $(cat "$D.holder")"
	expect_rc 139 "segfault with the pid's name taken"
	ns=$(stat -L -c %i /proc/self/ns/pid)
	expect_err "heap-" "report"
	grep -q "unlinking heap-[0-9]*-$ns" "$D.err" || { cat "$D.err"; fail "the suffixed heap not removed"; }
	kill "$(cat "$D.holder")" 2>/dev/null
	left=$(ls -A "$D" | grep -v "^heap-[0-9]*$")
	[ -z "$left" ] || fail "left behind: $left"
	[ -n "$(ls -A "$D")" ] || fail "the other process's heap removed"
	rm -f "$D"/heap-* "$D.hold" "$D.holder"
	echo "ok a heap with the namespace's suffix"
fi

# A command that drops root for good and execs a program that crashes: the
# root heap it could not remove and the crashed program's own (with the
# namespace's suffix) are both reported and removed.
if [ "$(id -u)" = 0 ] && [ -e /proc/self/ns/pid ]; then
	S=$(mktemp -d /dev/shm/rh-shmrun-drop.XXXXXX) || fail mktemp
	chmod 1777 "$S"
	run "$SHMRUN" -d "$S" "$BUILD/tests/progs/shim_edges" drop-user setresuid 65534 exec-crash
	left=$(ls -A "$S")
	rm -rf "$S"
	expect_rc 139 "a crash after a drop of root and an exec"
	[ "$(grep -c "^unlinking heap-" "$D.err")" = 2 ] || { cat "$D.err"; fail "not both heaps removed"; }
	[ -z "$left" ] || fail "left after a drop of root and a crash: $left"
	echo "ok a crash after a drop of root"
fi

# Statuses pass through; nothing printed without a crash.
run "$SHMRUN" -d "$D" sh -c 'exit 7'
expect_rc 7 "exit status"
[ ! -s "$D.err" ] || { cat "$D.err"; fail "output without a crash"; }
run "$SHMRUN" -d "$D" -- env LD_PRELOAD=kept sh -c 'echo "$LD_PRELOAD"'
expect_rc 0 "LD_PRELOAD kept"
run "$SHMRUN" -d "$D" sh -c 'echo "$LD_PRELOAD"'
expect_out "libredhawk-shm-preload.so" "LD_PRELOAD set"
LD_PRELOAD=/lib/x86_64-linux-gnu/libc.so.6 run "$SHMRUN" -d "$D" sh -c 'echo "$LD_PRELOAD"'
expect_out "libredhawk-shm-preload.so:/lib/x86_64-linux-gnu/libc.so.6" "LD_PRELOAD prepended"
no_heaps "plain runs"
echo "ok status"

# The leak check: 23 by default, the leak's stack, the summary.
run "$SHMRUN" -d "$D" --leak-check "$LEAKS/dropped"
expect_rc 23 "leaks found"
expect_err "100 bytes lost in 1 block, 1 leak:" "leak line"
expect_err "make (dropped.c:" "leak stack"
expect_err "leak summary: 100 bytes lost in 1 block (1 leak) in 1 of 1 process" "summary"
no_heaps "a leak check"
run "$SHMRUN" -d "$D" --leak-check --error-exitcode=0 "$LEAKS/dropped"
expect_rc 0 "--error-exitcode=0 keeps COMMAND's status"
run "$SHMRUN" -d "$D" --leak-check --error-exitcode=42 "$LEAKS/dropped"
expect_rc 42 "--error-exitcode=42"
printf '# comment\n\nleak:^make$\n' > "$D.supp"
run "$SHMRUN" -d "$D" --leak-check --suppressions="$D.supp" "$LEAKS/dropped"
expect_rc 0 "all leaks suppressed"
expect_err "suppressed 1 leak, 100 bytes in 1 block" "suppressed counts"
printf 'leak:dropped.c\n' > "$D.supp"
run "$SHMRUN" -d "$D" --leak-check --suppressions="$D.supp" "$LEAKS/dropped"
expect_rc 0 "suppressed by file name"
printf 'leak:no_such_function\n' > "$D.supp"
run "$SHMRUN" -d "$D" --leak-check --suppressions="$D.supp" "$LEAKS/dropped"
expect_rc 23 "a suppression that matches nothing"
# C++: frames show demangled names; a suppression matches the demangled name
# (LeakSanitizer's habit) or the linkage name.
if [ -x "$LEAKS/widget" ]; then
	run "$SHMRUN" -d "$D" --leak-check "$LEAKS/widget"
	expect_rc 23 "C++ leaks"
	expect_err "Widget::Widget(unsigned int) (widget.cc:" "demangled frame"
	for p in '^Widget::Widget(' '^_ZN6WidgetC'; do
		printf 'leak:%s\n' "$p" > "$D.supp"
		run "$SHMRUN" -d "$D" --leak-check --suppressions="$D.supp" "$LEAKS/widget"
		expect_err "suppressed 1 leak, 500 bytes in 1 block" "suppressed by $p"
	done
fi
run "$SHMRUN" -d "$D" --leak-check "$LEAKS/reachable"
expect_rc 0 "reachable is not a leak"
run "$SHMRUN" -d "$D" --leak-check --show-reachable "$LEAKS/reachable"
expect_rc 0 "--show-reachable"
expect_err "1692 bytes still reachable in 9 blocks" "reachable listed"
expect_err "build (reachable.c:" "reachable stack"
run "$SHMRUN" -d "$D" --leak-check --json -o "$D.json" "$LEAKS/dropped"
expect_rc 23 "--json"
grep -q '"lost_bytes": 100' "$D.json" || { cat "$D.json"; fail "--json summary"; }
if command -v python3 >/dev/null 2>&1; then
	python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$D.json" || fail "--json is not JSON"
fi
rm -f "$D.json" "$D.supp"
no_heaps "leak checks"
echo "ok leak-check"

# A process of the tree that outlives the launcher (a daemon the command
# started) ends with nobody left to read its heap: the heap goes, though the
# leak check asked every process to keep its heap.
run "$SHMRUN" -d "$D" --leak-check sh -c "(sleep 0.5; exec \"$LEAKS/dropped\") & exit 0"
expect_rc 0 "a daemon left running"
i=0
while [ -n "$(ls -A "$D")" ] && [ $i -lt 300 ]; do sleep 0.01; i=$((i + 1)); done
sleep 1
no_heaps "a process that outlived the launcher"
echo "ok a process that outlives the launcher"

# A grandchild that announced itself and was reaped by its parent before the
# launcher read its announcement (the launcher held stopped meanwhile) is
# still checked; so is a command in another network namespace, where the
# launcher's socket is out of reach.
run "$SHMRUN" -d "$D" --leak-check sh -c "kill -STOP \$PPID; \"$LEAKS/dropped\"; kill -CONT \$PPID"
expect_rc 23 "a grandchild reaped before its announcement was read"
expect_err "(dropped): 100 bytes lost in 1 block" "the grandchild's leak"
no_heaps "a grandchild reaped before its announcement was read"
if command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
	run "$SHMRUN" -d "$D" --leak-check unshare -n "$LEAKS/dropped"
	expect_rc 23 "another network namespace"
	expect_err "100 bytes lost in 1 block" "the leak in another network namespace"
	no_heaps "another network namespace"
fi
echo "ok announcements read late, and from another network namespace"

# Bad input: 125 for our own failures, 126 and 127 for COMMAND's.
run "$SHMRUN" -d "$D"
expect_rc 125 "missing COMMAND"
expect_err "missing COMMAND" "message"
expect_err "Try 'redhawk-shmrun --help'" "hint"
run "$SHMRUN" --bogus true
expect_rc 125 "unknown option"
run "$SHMRUN" -d "$D" /nonexistent/command
expect_rc 127 "command not found"
expect_err "redhawk-shmrun: /nonexistent/command: No such file or directory" "message"
printf 'x' > "$D.noexec"; chmod 644 "$D.noexec"
run "$SHMRUN" -d "$D" "$D.noexec"
expect_rc 126 "not executable"
rm -f "$D.noexec"
run "$SHMRUN" -d "$D" --leak-check --suppressions="$D.missing" true
expect_rc 125 "unreadable suppressions"
expect_err "$D.missing: No such file or directory" "names the file"
printf 'race:foo\n' > "$D.supp"
run "$SHMRUN" -d "$D" --leak-check --suppressions="$D.supp" true
expect_rc 125 "bad suppressions"
expect_err "$D.supp:1: not a leak suppression" "names the line"
# A file of anything: the line is shown escaped and cut, a NUL refused.
printf 'leak:a\n\033]0;x\007%0200d\n' 0 > "$D.supp"
run "$SHMRUN" -d "$D" --leak-check --suppressions="$D.supp" true
expect_rc 125 "suppressions with control bytes"
expect_err "$D.supp:2: not a leak suppression (expected leak:PATTERN): \\x1b]0;x\\x07000" "escaped"
expect_err "000..." "cut"
! grep -q "$(printf '\033')" "$D.err" || fail "a control byte of the file reached the terminal"
[ "$(wc -c < "$D.err")" -lt 300 ] || fail "the whole line was printed"
printf 'leak:a\000b\n' > "$D.supp"
run "$SHMRUN" -d "$D" --leak-check --suppressions="$D.supp" true
expect_rc 125 "suppressions with a NUL"
expect_err "$D.supp:1: holds a NUL byte" "NUL named"
run "$SHMRUN" -d "$D" --leak-check --suppressions="$(printf '%s.mis\nsing' "$D")" true
expect_rc 125 "unreadable suppressions with a newline in the name"
expect_err "$D.mis\\nsing: No such file or directory" "the name escaped"
rm -f "$D.supp"
mkdir -p "$D.outside/bin"
cp "$SHMRUN" "$D.outside/bin/"
run "$D.outside/bin/redhawk-shmrun" -d "$D" true
expect_rc 125 "missing shim"
expect_err "cannot find the shim" "message"
run "$SHMRUN" --help
expect_rc 0 "--help"
expect_out "Usage:" "usage"
no_heaps "bad input"
echo "ok bad input"

# Started with SIGCHLD ignored (the kernel would reap COMMAND unseen): the
# launcher still sees COMMAND end and exits with its status. An ignored
# SIGPIPE stays ignored for COMMAND (bit 13 of SigIgn).
if command -v python3 >/dev/null 2>&1; then
	timeout -s KILL 20 python3 -c 'import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])' "$SHMRUN" -d "$D" sh -c 'exit 7'; rc=$?
	expect_rc 7 "SIGCHLD ignored by the caller"
fi
sh -c "trap '' PIPE; exec \"$SHMRUN\" -d \"$D\" grep SigIgn /proc/self/status" >"$D.out" 2>"$D.err"
ign=$(sed -n 's/^SigIgn:[[:space:]]*//p' "$D.out")
[ -n "$ign" ] && [ $(( 0x$ign & 0x1000 )) -ne 0 ] || fail "an ignored SIGPIPE not kept for COMMAND: SigIgn $ign"
no_heaps "inherited dispositions"
echo "ok dispositions as given"

# COMMAND dead of a signal: the launcher dies of it too, after its report,
# so that a calling shell's loop stops on Ctrl-C as without it.
if command -v python3 >/dev/null 2>&1; then
	python3 - "$SHMRUN" "$D" <<'PY' || fail "death by a signal not passed on"
import subprocess, sys
shmrun, d = sys.argv[1:]
r = subprocess.run([shmrun, "-d", d, "-o", "/dev/null", "sh", "-c", "kill -INT $$"])
sys.exit(0 if r.returncode == -2 else f"the launcher ended with {r.returncode}, not by SIGINT")
PY
fi
no_heaps "death by a signal"
echo "ok death by a signal"

# --wait-all after COMMAND ended: SIGTERM ends the wait (it went to the
# reaped COMMAND's pid, maybe another process's by then, and was lost), and
# the launcher dies of it.
"$SHMRUN" -d "$D" --wait-all sh -c "sleep 30 & echo \$! > '$D.pid'; exit 3" >/dev/null 2>&1 &
runner=$!
KIDS="$runner"
wait_pid_file "$D.pid"
KIDS="$KIDS $pid"
sleep 0.3
kill -TERM "$runner"
i=0
while kill -0 "$runner" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 500 ] || fail "--wait-all: SIGTERM did not end the wait"
	sleep 0.01
done
wait "$runner"; rc=$?
expect_rc 143 "--wait-all ended by SIGTERM"
kill "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 500 ] || fail "sleep $pid did not end"
	sleep 0.01
done
rm -f "$D.pid" "$D/heap-$pid" # the sleep died of SIGTERM: its heap stays
no_heaps "--wait-all ended by SIGTERM"
echo "ok --wait-all ends on SIGTERM"

# A relative folder, and COMMAND changing its working folder: the heap is
# still made, and cleaned, in the folder named.
(cd "$(dirname "$D")" && "$SHMRUN" -d "$(basename "$D")" sh -c "cd / && exec '$CRASHER' segv") >"$D.out" 2>"$D.err"; rc=$?
expect_rc 139 "relative folder"
expect_err "unlinking heap-" "relative folder: the heap cleaned"
no_heaps "relative folder"
# LD_PRELOAD naming another file whose name starts with the shim's: the shim
# is preloaded all the same (the leak check found 0 processes before).
LD_PRELOAD="$SHIM.old" run "$SHMRUN" -d "$D" --leak-check "$LEAKS/dropped"
expect_rc 23 "LD_PRELOAD with a longer name"
no_heaps "LD_PRELOAD with a longer name"
echo "ok folder and LD_PRELOAD"

# The leak check serves every allocation from the heap: a heap turned off
# or a size threshold in the caller's environment would hide the leak (0
# processes checked, exit 0). A static program: it says nothing was checked.
RH_SHMALLOC=disable RH_SHMALLOC_MIN_SIZE=4096 run "$SHMRUN" -d "$D" --leak-check "$LEAKS/dropped"
expect_rc 23 "--leak-check with the heap turned off by the caller"
no_heaps "--leak-check with the heap turned off"
if [ -x "$BUILD/tests/progs/static_true" ]; then
	run "$SHMRUN" -d "$D" --leak-check "$BUILD/tests/progs/static_true"
	expect_rc 0 "--leak-check of a static program"
	expect_err "no process was checked for leaks" "--leak-check of a static program"
fi
echo "ok leak check of every allocation"

# A launcher under another (the shim serving its own allocations): the inner
# one does not die of COMMAND's signal, which would leave its heap for the
# outer one to report as a crash.
run "$SHMRUN" -d "$D" "$SHMRUN" -d "$D" "$CRASHER" segv
expect_rc 139 "nested launchers"
grep -q "(redhawk-shmrun)" "$D.err" && fail "the inner launcher reported as a crash: $(cat "$D.err")"
expect_err "(crasher) killed by signal 11" "nested launchers: the crash reported"
no_heaps "nested launchers"
# The loader splits LD_PRELOAD at spaces and colons only: an entry joined to
# the shim's path by a tab is another file, and the shim is added first.
LD_PRELOAD="$SHIM	/nonexistent.so" run "$SHMRUN" -d "$D" --leak-check "$LEAKS/dropped"
expect_rc 23 "LD_PRELOAD with a tab"
no_heaps "LD_PRELOAD with a tab"
echo "ok nested launchers, LD_PRELOAD separators"

# As PID 1 of a PID namespace (a container's entry point), processes left
# when COMMAND exits would be killed by the kernel unseen: the launcher ends
# them itself, and reports and removes what they held.
if unshare -pf --mount-proc true 2>/dev/null; then
	run unshare -pf --mount-proc "$SHMRUN" -d "$D" sh -c "'$CRASHER' wait '$D.pid' & sleep 0.3; exit 0"
	expect_rc 0 "PID 1"
	no_heaps "PID 1 with a process left"
	rm -f "$D.pid"
	echo "ok PID 1"
fi

# Ctrl-C at a terminal reaches its foreground process group; COMMAND in a
# group of its own (setsid) does not get it, and the launcher passes it on
# (it dropped every signal the kernel sent, taking COMMAND for a member).
if command -v script >/dev/null 2>&1 && command -v setsid >/dev/null 2>&1; then
	rm -f "$D.pid"
	(i=0; while ! [ -s "$D.pid" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i + 1)); done
	 sleep 0.2; printf '\003'; sleep 2) | timeout -s KILL 15 script -qec \
		"'$SHMRUN' -d '$D' -o /dev/null setsid '$CRASHER' wait '$D.pid'" /dev/null >/dev/null 2>&1
	[ -s "$D.pid" ] || fail "Ctrl-C: COMMAND did not start"
	pid=$(cat "$D.pid")
	! kill -0 "$pid" 2>/dev/null || { kill -9 "$pid"; fail "Ctrl-C did not reach COMMAND in a group of its own"; }
	no_heaps "Ctrl-C to COMMAND in a group of its own"
	rm -f "$D.pid"
	echo "ok Ctrl-C passed on"
fi
