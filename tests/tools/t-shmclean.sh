#!/bin/sh
# SPDX-License-Identifier: MIT
# redhawk-shmclean end to end: the sweep removes orphans only (never a live
# heap, an unreadable one, another file or a link), named files with and
# without --force, names that lead out of the folder (refused even with
# --force), --dry-run, and --verbose's leak attribution.
. "$TOP/tests/tools/lib.sh"

setup() {
	rm -rf "$D"/* "$D.outside"
	"$MKHEAP" native "$D" heap-2286 99999999 fake || fail "mkheap"
	"$MKHEAP" r22 "$D" heap-3000 99999998 2 4096:100 || fail "mkheap r22"
	cp "$D/heap-2286" "$D/heap-4242" && truncate -s 5000 "$D/heap-4242"
	printf 'hello\n' >"$D/pulse-shm-1"
	mkdir "$D.outside" && printf 'keep\n' >"$D.outside/victim"
	ln -s "$D.outside/victim" "$D/heap-link"
	hold_heap heap-live
}
present() { [ -e "$D/$1" ] || [ -L "$D/$1" ] || fail "$1 was removed ($2)"; }
absent() { [ ! -e "$D/$1" ] || fail "$1 was left ($2)"; }

# The sweep: orphans go (native by its lock or pid, REDHAWK 2.2 by pid).
setup
run "$SHMCLEAN" -d "$D" -n
expect_rc 1 "dry run: the unreadable heap is reported"
printf 'would unlink heap-2286\nwould unlink heap-3000\n' | diff -u - "$D.out" || fail "dry-run output"
present heap-2286 "dry run"
present heap-3000 "dry run"
run "$SHMCLEAN" -d "$D"
printf 'unlinking heap-2286\nunlinking heap-3000\n' | diff -u - "$D.out" || fail "sweep output"
expect_rc 1 "sweep with an unreadable heap"
expect_err "redhawk-shmclean: heap-4242: unreadable heap, not removed: truncated header" "unreadable"
absent heap-2286 "orphan"
absent heap-3000 "REDHAWK 2.2 orphan"
present heap-4242 "unreadable heap is never taken for an orphan"
present heap-live "live heap"
present pulse-shm-1 "other file"
present heap-link "link"
[ -e "$D.outside/victim" ] || fail "link target removed"

# The creator dies: its heap is an orphan now.
kill -9 "$kid"; wait "$kid" 2>/dev/null
run "$SHMCLEAN" -d "$D"
expect_out "unlinking heap-live" "killed creator's heap"
absent heap-live "killed creator's heap"

# Named files.
setup
run "$SHMCLEAN" -d "$D" heap-live pulse-shm-1 heap-4242 heap-link
expect_rc 1 "refusals"
[ ! -s "$D.out" ] || fail "nothing should be unlinked"
expect_err "redhawk-shmclean: heap-live: in use, use -f to force removal" "live"
expect_err "redhawk-shmclean: pulse-shm-1: not a REDHAWK heap, use -f to force removal" "other"
expect_err "redhawk-shmclean: heap-4242: unreadable heap, not removed (use -f to force removal)" "unreadable"
expect_err "redhawk-shmclean: heap-link: is a symbolic link, not removed" "link"
present heap-live "named live heap"
run "$SHMCLEAN" -d "$D" heap-2286 "$D/heap-3000"
expect_rc 0 "named orphans, one as an absolute path"
absent heap-2286 "named orphan"
absent heap-3000 "absolute path inside the folder"
run "$SHMCLEAN" -d "$D" -f heap-live pulse-shm-1 heap-4242
expect_rc 0 "--force"
absent heap-live "forced live heap"
absent pulse-shm-1 "forced other file"
absent heap-4242 "forced unreadable heap"

# Out of the folder: refused even with --force.
ln -s "$D.outside" "$D/sub"
for name in heap-link "../$(basename "$D.outside")/victim" "$D.outside/victim" sub/victim \
	"$D/../$(basename "$D.outside")/victim" "$D/sub/victim" /etc/passwd . ..; do
	run "$SHMCLEAN" -d "$D" -f "$name"
	expect_rc 1 "escape: $name"
	[ ! -s "$D.out" ] || fail "escape: $name: something was unlinked"
done
[ -e "$D.outside/victim" ] || fail "a file outside the folder was removed"
present heap-link "the link itself"
run "$SHMCLEAN" -d "$D" nonexistent
expect_rc 1 "missing name"
expect_err "redhawk-shmclean: nonexistent: No such file or directory" "missing name"

# --verbose: what the orphan held, by call site, then the unlink.
setup
run "$SHMCLEAN" -d "$D" -v heap-2286 heap-3000
expect_rc 0 "verbose"
expect shmclean-verbose.txt "--verbose"

# A folder that is a symbolic link is refused.
ln -s "$D" "$D.outside/link"
run "$SHMCLEAN" -d "$D.outside/link"
expect_rc 1 "folder is a link"
expect_err "link: is a symbolic link, refused" "folder is a link"
present heap-live "folder is a link"

# Heaps never finished, left by a process killed while it made one (empty,
# or without a header yet): removed once a minute old, not locked, and no
# process has the pid in its name; a newer one, one being made (locked),
# one whose maker lives, and other names are left alone.
rm -rf "$D"/* "$D"/.[!.]*
# pids no process has: the maker of an unfinished heap must be gone
dead=
p=4000000
while [ "$(echo $dead | wc -w)" -lt 5 ] && [ $p -gt 300 ]; do
	[ -d /proc/$p ] || dead="$dead $p"
	p=$((p - 7919))
done
set -- $dead
: > "$D/.heap-$1.5f3a.tmp"
head -c 8192 /dev/zero > "$D/.heap-$2.1f.tmp"
: > "$D/.heap-$3.77.tmp"
: > "$D/.heap-$4.zz.tmp"
: > "$D/.heap-$5.88.tmp"
: > "$D/.heap-$$.99.tmp" # this shell's: alive
: > "$D/.heap--$1.5f.tmp"
touch -d '2 minutes ago' "$D/.heap-$1.5f3a.tmp" "$D/.heap-$2.1f.tmp" "$D/.heap-$4.zz.tmp" "$D/.heap-$5.88.tmp" \
	"$D/.heap-$$.99.tmp" "$D/.heap--$1.5f.tmp"
if command -v python3 >/dev/null 2>&1; then
	python3 -c '
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 1, 0))
print("locked", flush=True)
time.sleep(30)' "$D/.heap-$5.88.tmp" > "$D.hold" &
	KIDS="$KIDS $!"
	i=0
	until [ -s "$D.hold" ]; do i=$((i + 1)); [ $i -lt 500 ] || fail "no lock"; sleep 0.01; done
fi
run "$SHMCLEAN" -d "$D"
expect_rc 0 "unfinished heaps"
[ ! -e "$D/.heap-$1.5f3a.tmp" ] && [ ! -e "$D/.heap-$2.1f.tmp" ] || fail "an unfinished heap left: $(ls -A "$D")"
[ -e "$D/.heap-$3.77.tmp" ] && [ -e "$D/.heap-$4.zz.tmp" ] && [ -e "$D/.heap-$5.88.tmp" ] &&
	[ -e "$D/.heap-$$.99.tmp" ] && [ -e "$D/.heap--$1.5f.tmp" ] ||
	fail "a file removed that was not an old unfinished heap of a dead process: $(ls -A "$D")"
rm -f "$D"/.heap-*

# A heap being made whose header already reads as a whole heap of a creator
# that holds no lock (its maker has not set the flag and creator yet): the
# sweep goes by the name's age and lock only, and shminfo lists it as
# another file, shown with -a.
"$MKHEAP" native "$D" heap-2287 99999999 fake || fail "mkheap"
mv "$D/heap-2287" "$D/.heap-$1.4a.tmp"
run "$SHMCLEAN" -d "$D"
expect_rc 0 "a heap being made"
[ -e "$D/.heap-$1.4a.tmp" ] || fail "a heap being made (a minute old or less) was removed"
run "$SHMINFO" -d "$D"
expect_rc 0 "a heap being made, listed"
! grep -q "heap-$1" "$D.out" || fail "a heap being made listed as a heap: $(cat "$D.out")"
run "$SHMINFO" -d "$D" -a
grep -q "^\.heap-$1\.4a\.tmp" "$D.out" && grep -q "other" "$D.out" || fail "-a: a heap being made not listed as another file: $(cat "$D.out")"
rm -f "$D"/.heap-*

# A heap set aside at exec (.heap-PID.exec) is the new image's to remove
# while that process lives; a sweep takes it once the pid is gone.
# A pid that lives but is another process (reused, or another namespace's
# pid) does not keep it either.
"$MKHEAP" native "$D" .heap-$$.exec $$ fake started || fail "mkheap"
"$MKHEAP" native "$D" .heap-$1.exec $1 fake started $$ || fail "mkheap"
"$MKHEAP" native "$D" .heap-1.exec 1 fake started $$ || fail "mkheap"
run "$SHMCLEAN" -d "$D"
expect_rc 0 "heaps set aside at exec"
[ -e "$D/.heap-$$.exec" ] || fail "the heap set aside by a live process was removed"
[ ! -e "$D/.heap-$1.exec" ] || fail "the heap set aside by a dead process was left"
[ ! -e "$D/.heap-1.exec" ] || fail "a heap set aside by another process of a live pid was left"
rm -f "$D"/.heap-*

run "$SHMCLEAN" -x
expect_rc 2 "bad option"
expect_err "Try 'redhawk-shmclean --help' for more information." "usage hint"
echo "ok"
