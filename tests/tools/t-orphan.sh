#!/bin/sh
# SPDX-License-Identifier: MIT
# A real heap, made by the allocator (tests/progs/alloc_hold), whose creator is
# killed with SIGKILL: redhawk-shminfo shows it alive, then orphaned with its
# used bytes, and redhawk-shmclean removes it and only it.
. "$TOP/tests/tools/lib.sh"

HOLD=$BUILD/tests/progs/alloc_hold
[ -x "$HOLD" ] || skip "not built: $HOLD"

RH_SHM_DIR=$D "$HOLD" 4 1000 >"$D.hold" 2>&1 &
kid=$!
KIDS="$kid"
i=0
while ! grep -q ready "$D.hold" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -ge 300 ] || ! kill -0 $kid 2>/dev/null; then
		cat "$D.hold"; fail "alloc_hold did not start"
	fi
	sleep 0.01
done
name=$(awk '{print $2}' "$D.hold")
rm -f "$D.hold"
[ "$name" = "heap-$kid" ] || fail "heap name $name, expected heap-$kid"

run "$SHMINFO" -d "$D"
expect_rc 0 "live heap"
expect_out "heap-$kid" "listed"
expect_out "  creator:     $kid" "creator"
expect_out "  orphaned:    false" "alive"
expect_out "  refcount:    1" "refcount"
expect_out "  heap used:   3.9K" "4 x 1000 bytes"
run "$SHMCLEAN" -d "$D"
[ ! -s "$D.out" ] || fail "sweep removed a live heap"

kill -9 $kid; wait $kid 2>/dev/null
run "$SHMINFO" -d "$D" --json
expect_out '"orphaned": true' "orphan after SIGKILL"
expect_out '"heap_used": 4000' "used bytes survive the crash"
run "$SHMCLEAN" -d "$D" -v
expect_rc 0 "sweep"
expect_out "heap-$kid held 3.9K in 4 blocks" "leak attribution"
expect_out "unlinking heap-$kid" "sweep"
[ ! -e "$D/heap-$kid" ] || fail "orphan left"
echo "ok"
