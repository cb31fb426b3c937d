#!/bin/sh
# SPDX-License-Identifier: MIT
# A heap whose creator was killed and whose PID now belongs to another process
# is still an orphan (the creator's lock, not the PID, tells). Made in a fresh
# PID namespace, where /proc/sys/kernel/ns_last_pid hands the dead creator's
# PID to a new process.
. "$TOP/tests/tools/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root for unshare --pid and ns_last_pid"
command -v unshare >/dev/null || skip "no unshare(1)"
unshare --pid --fork --mount-proc true 2>/dev/null || skip "unshare --pid --fork --mount-proc is not permitted here"

export D MKHEAP SHMINFO SHMCLEAN
unshare --pid --fork --mount-proc sh -c '
	"$MKHEAP" native "$D" heap-reuse 0 fake hold >"$D.hold" &
	creator=$!
	i=0
	while ! grep -q ready "$D.hold" 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 200 ] || { echo "mkheap did not start"; exit 1; }
		sleep 0.01
	done
	kill -9 $creator; wait $creator 2>/dev/null
	echo $((creator - 1)) >/proc/sys/kernel/ns_last_pid 2>/dev/null || { echo "SKIP: ns_last_pid not writable"; exit 77; }
	sleep 30 &
	reuser=$!
	[ "$reuser" = "$creator" ] || { echo "SKIP: PID $creator went to another process"; kill $reuser; exit 77; }
	"$SHMINFO" -d "$D" heap-reuse >"$D.out" 2>&1 || { cat "$D.out"; exit 1; }
	grep -q "^  creator:     $creator\$" "$D.out" || { cat "$D.out"; echo "creator"; exit 1; }
	grep -q "^  orphaned:    true\$" "$D.out" || { cat "$D.out"; echo "PID reuse made the heap look alive"; exit 1; }
	"$SHMCLEAN" -d "$D" >"$D.out" 2>&1
	grep -q "^unlinking heap-reuse\$" "$D.out" || { cat "$D.out"; echo "not removed"; exit 1; }
	kill $reuser
	exit 0
'
rc=$?
rm -f "$D.hold"
[ $rc = 77 ] && skip "PID reuse could not be arranged"
[ $rc = 0 ] || fail "PID reuse"
[ ! -e "$D/heap-reuse" ] || fail "heap left"
echo "ok"
