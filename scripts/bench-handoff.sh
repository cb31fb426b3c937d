#!/bin/sh
# SPDX-License-Identifier: MIT
# Buffers handed from one process to another (bench/handoff.c): a producer
# writes each buffer, a consumer reads it. redhawk-shm passes a reference
# and the consumer attaches the block, holding nothing between buffers
# (shm); the same with the producer's heap mapped again for each buffer
# (shm-remap: the consumer calls rh_shm_trim after each release); and the
# bytes themselves through a pipe (pipe: two copies). Buffers per second
# for 4 KiB, 64 KiB and 1 MiB, each mode run BENCH_HANDOFF_REPS times in
# rotating order (default 5); the table shows pipe's median and, for the
# others, the median over rounds of their rate over pipe's in the same
# round. In a private folder under /dev/shm, removed afterwards.
set -u
export LC_ALL=C
unset LD_PRELOAD RH_SHMALLOC RH_SHMALLOC_KEEP RH_SHMALLOC_MIN_SIZE RH_SHMALLOC_PRIVATE_SIZE
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
REPS=${BENCH_HANDOFF_REPS:-5}
MS=${BENCH_MS:-200}
HO=$BUILD/bench/handoff
SIZES="4096 65536 1048576"
MODES="pipe shm shm-remap"
me=bench-handoff

case $REPS in '' | *[!0-9]* | 0) echo "$me: BENCH_HANDOFF_REPS must be a positive number" >&2; exit 2 ;; esac
[ -x "$HO" ] || { echo "$me: $HO is missing; run 'make bench'" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rh-bench-handoff.XXXXXX") || exit 1
shmdir=$(mktemp -d /dev/shm/rh-bench-handoff.XXXXXX) || { rm -rf "$work"; exit 1; }
trap 'rm -rf "$work" "$shmdir"' EXIT
trap 'exit 130' INT TERM

echo "handoff between processes: $REPS rounds of 3 modes x 3 sizes, ${MS} ms each"
nmodes=3
rep=0
while [ "$rep" -lt "$REPS" ]; do
	set -- $MODES
	i=0
	while [ $i -lt $((rep % nmodes)) ]; do
		first=$1; shift; set -- "$@" "$first"; i=$((i + 1))
	done
	for m in "$@"; do
		if ! RH_SHM_DIR=$shmdir "$HO" -m "$MS" "$m" $SIZES >"$work/out" 2>"$work/err"; then
			echo "$me: $m failed:" >&2
			tail -n 5 "$work/err" >&2
			exit 1
		fi
		left=$(ls -A "$shmdir" | wc -l)
		[ "$left" = 0 ] || { echo "$me: $m left $left file(s) in its RH_SHM_DIR" >&2; exit 1; }
		sed "s/^/$m /" "$work/out" >>"$work/results"
	done
	rep=$((rep + 1))
	printf '.' >&2
done
echo >&2

awk -v sizes="$SIZES" -v reps="$REPS" '
function median(arr, n,   i, j, t) {
	for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
	return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
}
function human(b) { return b >= 1048576 ? b / 1048576 "M" : b / 1024 "K" }
{ k = ++cnt[$1, $2]; r[$1, $2, k] = $3 }
END {
	printf "\nhandoff: buffers per second from one process to another, median of %d rounds\n", reps
	printf "(pipe: buffers/s; shm, shm-remap: their rate over pipe'"'"'s in the same round;\n"
	printf " shm/remap: shm'"'"'s rate over shm-remap'"'"'s)\n"
	printf "%-6s %12s %10s %10s %10s\n", "size", "pipe", "shm", "shm-remap", "shm/remap"
	ns = split(sizes, s, " ")
	for (i = 1; i <= ns; i++) {
		n = cnt["pipe", s[i]]
		for (k = 1; k <= n; k++) {
			p[k] = r["pipe", s[i], k]
			a[k] = r["shm", s[i], k] / p[k]
			b[k] = r["shm-remap", s[i], k] / p[k]
			c[k] = r["shm", s[i], k] / r["shm-remap", s[i], k]
		}
		printf "%-6s %12.0f %9.2fx %9.2fx %9.2fx\n", human(s[i]), median(p, n), median(a, n), median(b, n), median(c, n)
	}
}' "$work/results"
