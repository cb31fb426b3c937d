#!/bin/sh
# SPDX-License-Identifier: MIT
# The tools over many heaps (issue 4, Speed): redhawk-shminfo over folders
# of 0, 1, 100 and 1000 heaps, and redhawk-shmclean removing 1000 orphans
# against `find DIR -name 'heap-*' -delete` of the same files (the floor: the
# kernel freeing the pages), with ratios to REDHAWK 2.2's tools measured on
# these machines. The heaps are copies, every page allocated, of one real
# orphan: `sleep` run under the shim and killed with SIGKILL, so that the
# kernel dropped its creator lock. The copies are named heap-N with N above
# kernel.pid_max, which no process can have. All in a private folder under
# /dev/shm, removed afterwards.
#   BENCH_TOOLS_REPS runs of shminfo per folder (default 21),
#   BENCH_CLEAN_REPS paired rounds of shmclean and find (default 7)
set -u
export LC_ALL=C
unset LD_PRELOAD RH_SHMALLOC RH_SHMALLOC_KEEP RH_SHMALLOC_MIN_SIZE RH_SHMALLOC_PRIVATE_SIZE
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
REPS=${BENCH_TOOLS_REPS:-21}
CLEAN_REPS=${BENCH_CLEAN_REPS:-7}
RT=$BUILD/bench/runtime
SHIM=$BUILD/lib/libredhawk-shm-preload.so
INFO=$BUILD/bin/redhawk-shminfo
CLEAN=$BUILD/bin/redhawk-shmclean
me=bench-tools

for v in "$REPS" "$CLEAN_REPS"; do
	case $v in '' | *[!0-9]* | 0) echo "$me: BENCH_TOOLS_REPS and BENCH_CLEAN_REPS must be positive numbers" >&2; exit 2 ;; esac
done
for f in "$RT" "$SHIM" "$INFO" "$CLEAN"; do
	[ -e "$f" ] || { echo "$me: $f is missing; run 'make bench'" >&2; exit 1; }
done

top=$(mktemp -d /dev/shm/rh-bench-tools.XXXXXX) || exit 1
victim=
cleanup() {
	[ -z "$victim" ] || kill -9 "$victim" 2>/dev/null
	rm -rf "$top"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The real orphan.
mkdir "$top/src" || exit 1
RH_SHM_DIR=$top/src LD_PRELOAD=$SHIM sleep 600 &
victim=$!
i=0
while :; do
	# Its heap exists and it is asleep: its allocations are done.
	state=$(cut -d' ' -f3 "/proc/$victim/stat" 2>/dev/null)
	[ -e "$top/src/heap-$victim" ] && [ "$state" = S ] && break
	i=$((i + 1))
	[ $i -lt 200 ] || { echo "$me: the shim made no heap for sleep" >&2; exit 1; }
	sleep 0.05
done
kill -9 "$victim"
wait "$victim" 2>/dev/null
src=$top/src/heap-$victim
victim=
if ! "$INFO" -d "$top/src" | grep -q '^  orphaned: *true'; then
	echo "$me: redhawk-shminfo does not see the killed heap as an orphan:" >&2
	"$INFO" -d "$top/src" >&2
	exit 1
fi
kib=$(($(stat -c %s "$src") / 1024))

# 1000 names no process can have; hard links to the orphan, from which each
# folder gets real copies (cp makes separate files of hard links).
base=$(($(cat /proc/sys/kernel/pid_max) + 1))
mkdir "$top/names" || exit 1
i=0
while [ $i -lt 1000 ]; do
	ln "$src" "$top/names/heap-$((base + i))" || exit 1
	i=$((i + 1))
done
fill() { # folder, number of heaps
	mkdir "$1" || exit 1
	[ "$2" -gt 0 ] || return 0
	(cd "$top/names" && ls | head -n "$2" | xargs cp --sparse=never -t "$1") || exit 1
}

timed() { # result file, command...: appends the wall time in seconds
	f=$1; shift
	"$RT" "$f.t" "$@" >/dev/null 2>"$top/err" || {
		echo "$me: $* failed:" >&2; cat "$top/err" >&2; exit 1; }
	cut -d' ' -f1 "$f.t" | tail -n 1 >>"$f"
	rm -f "$f.t"
}

# shminfo: every folder in turn, REPS rounds, after one untimed run each.
for n in 0 1 100 1000; do
	fill "$top/info$n" $n
	got=$("$INFO" -d "$top/info$n" | grep -c '^heap-')
	[ "$got" = $n ] || { echo "$me: shminfo lists $got heaps of $n" >&2; exit 1; }
done
r=0
while [ $r -lt "$REPS" ]; do
	for n in 0 1 100 1000; do
		timed "$top/r.info$n" "$INFO" -d "$top/info$n"
	done
	r=$((r + 1))
done
rm -rf "$top"/info*

# shmclean against find, paired, alternating which goes first; each on a
# fresh folder of 1000 real copies.
r=0
while [ $r -lt "$CLEAN_REPS" ]; do
	for tool in $([ $((r % 2)) = 0 ] && echo "clean find" || echo "find clean"); do
		d=$top/$tool
		fill "$d" 1000
		if [ $tool = clean ]; then
			timed "$top/r.clean" "$CLEAN" -d "$d"
		else
			timed "$top/r.find" find "$d" -name 'heap-*' -delete
		fi
		left=$(ls -A "$d" | wc -l)
		[ "$left" = 0 ] || { echo "$me: $tool left $left of 1000 orphans" >&2; exit 1; }
		rmdir "$d"
	done
	r=$((r + 1))
	printf '.' >&2
done
echo >&2

med() { sort -n "$1" | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
paste "$top/r.clean" "$top/r.find" | awk '{ print $1 / $2 }' >"$top/r.ratio"

printf '\ntools: wall time of the whole command, median of %d runs (shminfo) and of %d paired\n' "$REPS" "$CLEAN_REPS"
printf 'rounds (shmclean, find); heaps: copies of a real orphan, %d KiB each, every page allocated\n' "$kib"
printf '(REDHAWK 2.2: its own tools, measured on these machines; target: shminfo <= 0.30x of\n'
printf ' REDHAWK 2.2, shmclean <= 1.05x of find -delete on the same files)\n\n'
{
	echo "shminfo,_empty_folder $(med "$top/r.info0") 2.9"
	echo "shminfo,_1_heap $(med "$top/r.info1") -"
	echo "shminfo,_100_heaps $(med "$top/r.info100") 10"
	echo "shminfo,_1000_heaps $(med "$top/r.info1000") 46"
	echo "shmclean,_1000_orphans $(med "$top/r.clean") 521"
	echo "find_-delete,_same_files $(med "$top/r.find") 500"
} | awk -v ratio="$(med "$top/r.ratio")" '
BEGIN { printf "%-26s %10s %13s %8s\n", "", "time", "REDHAWK 2.2", "ratio" }
{
	gsub("_", " ", $1)
	if ($3 == "-") printf "%-26s %7.2f ms %13s %8s\n", $1, $2 * 1000, "-", "-"
	else printf "%-26s %7.2f ms %10s ms %7.2fx\n", $1, $2 * 1000, $3, $2 * 1000 / $3
}
END { printf "%-26s %10s %13s %7.2fx  (median of paired ratios; REDHAWK 2.2: 1.04x)\n", "shmclean / find -delete", "", "", ratio }'
