#!/bin/sh
# SPDX-License-Identifier: MIT
# Whole programs (issue 3, section 5): wall time and peak RSS of whole
# processes under glibc malloc, jemalloc and mimalloc (LD_PRELOAD of their
# Debian libraries), the shim with provenance off (RH_SHMALLOC_TRACE_DEPTH=0)
# and at its default depth, and heaptrack (the whole `heaptrack -o FILE CMD`
# command, recording every allocation's stack). Workloads: bench/workloads
# (small-object churn, two threads freeing each other's objects, 64 KiB to
# 4 MiB buffers, realloc growth, 64 KiB buffers passed from one thread to
# another), python3 on bench/pywork.py, cc1 -O2 on the
# preprocessed heap/alloc.c, and sort -V of 10 MB.
# Each round runs every workload under every allocator, back to back in a
# rotating order; the table shows, per workload, glibc's median time and peak
# RSS and, per allocator, the median over rounds of its time and RSS divided
# by glibc's in the same round; nt/mi, the shim's time without provenance
# over mimalloc's in the same round; prov/ht, the shim's provenance overhead
# over heaptrack's. Every shim run gets a private RH_SHM_DIR under
# /dev/shm, removed afterwards.
#   BENCH_PROGRAM_REPS rounds (default 5)
set -u
export LC_ALL=C # sort's order, and awk's decimal point
unset LD_PRELOAD RH_SHMALLOC RH_SHMALLOC_TRACE_DEPTH RH_SHMALLOC_MIN_SIZE RH_SHMALLOC_KEEP \
	RH_SHMALLOC_METRICS RH_SHMALLOC_PRIVATE_SIZE
cd "$(dirname "$0")/.." || exit 1 # bench/, heap/ and BUILD are relative to the top
BUILD=${BUILD:-build}
REPS=${BENCH_PROGRAM_REPS:-5}
WL=$BUILD/bench/workloads
RT=$BUILD/bench/runtime
SHIM=$BUILD/lib/libredhawk-shm-preload.so
me=bench-programs

case $REPS in '' | *[!0-9]* | 0) echo "$me: BENCH_PROGRAM_REPS must be a positive number" >&2; exit 2 ;; esac
for f in "$WL" "$RT" "$SHIM"; do
	[ -e "$f" ] || { echo "$me: $f is missing; run 'make bench'" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/rh-bench-programs.XXXXXX") || exit 1
shmdir=
cleanup() { rm -rf "$work"; [ -z "$shmdir" ] || rm -rf "$shmdir"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Peers: skipped with a message when missing.
arch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
allocs=glibc
peer_lib() { # name, library file, package
	for d in "/usr/lib/$arch" /usr/lib /usr/local/lib; do
		if [ -e "$d/$2" ]; then
			allocs="$allocs $1"
			eval "lib_$1=$d/$2"
			return
		fi
	done
	echo "$me: $1 not installed ($3), left out" >&2
}
peer_lib jemalloc libjemalloc.so.2 "apt-get install libjemalloc2"
peer_lib mimalloc libmimalloc.so.2 "apt-get install libmimalloc2.0"
allocs="$allocs rh-notrace redhawk-shm"
HEAPTRACK=$(command -v heaptrack 2>/dev/null) && allocs="$allocs heaptrack" ||
	echo "$me: heaptrack not installed (apt-get install heaptrack), left out" >&2

# The real programs and their inputs. python3 from /usr/bin, not a version
# manager's shim (a shell script that would be timed too).
workloads="churn threads large realloc pipeline"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 2>/dev/null) || PY=
if [ -n "$PY" ]; then
	workloads="$workloads python"
else
	echo "$me: python3 not found, left out" >&2
fi
CC1=$(gcc -print-prog-name=cc1 2>/dev/null)
if [ -x "$CC1" ] && gcc -E -D_GNU_SOURCE -Iheap -Iheap/include heap/alloc.c -o "$work/cc1.i"; then
	workloads="$workloads cc1"
else
	echo "$me: gcc's cc1 or heap/alloc.c not found, cc1 left out" >&2
fi
# 250000 lines of 2 to 7 hex words, 10 MB; version sort, so that comparing
# lines (and not reading them) is most of the time.
awk 'BEGIN { srand(42)
	for (i = 0; i < 250000; i++) {
		n = int(rand() * 6) + 2; s = ""
		for (j = 0; j < n; j++) s = s sprintf("%x ", int(rand() * 2147483647))
		print s } }' >"$work/sort.in"
workloads="$workloads sort"

set_cmd() { # workload: sets cmd to its command line (split on blanks)
	case $1 in
	python) cmd="$PY -I bench/pywork.py 6" ;;
	cc1) cmd="$CC1 -quiet -O2 $work/cc1.i -o /dev/null" ;;
	sort) cmd="sort -V -k2 $work/sort.in -o /dev/null" ;;
	*) cmd="$WL $1" ;;
	esac
}

# One run: appends "ALLOC WORKLOAD SECONDS MAXRSS_KIB" to results, or says
# what failed. The command's own output is discarded.
run_one() { # allocator, workload
	set_cmd "$2"
	rm -f "$work/t"
	case $1 in
	glibc) $RT "$work/t" $cmd ;;
	jemalloc | mimalloc)
		eval "lib=\$lib_$1"
		$RT "$work/t" LD_PRELOAD="$lib" $cmd ;;
	rh-notrace | redhawk-shm)
		shmdir=$(mktemp -d /dev/shm/rh-bench-programs.XXXXXX) || exit 1
		depth=
		[ "$1" = rh-notrace ] && depth=RH_SHMALLOC_TRACE_DEPTH=0
		$RT "$work/t" RH_SHM_DIR="$shmdir" $depth LD_PRELOAD="$SHIM" $cmd ;;
	heaptrack)
		# heaptrack 1.4.0's heaptrack_interpret aborts (std::bad_alloc,
		# after a minute) on cc1's trace: record cc1 raw, uninterpreted.
		raw=
		[ "$2" = cc1 ] && raw=--raw
		$RT "$work/t" "$HEAPTRACK" $raw -o "$work/ht" $cmd ;;
	esac >/dev/null 2>"$work/err"
	rc=$?
	if [ -n "$shmdir" ]; then
		left=$(ls -A "$shmdir" | wc -l)
		[ "$left" = 0 ] || echo "$me: $1 $2 left $left file(s) in its RH_SHM_DIR" >&2
		rm -rf "$shmdir"
		shmdir=
	fi
	rm -f "$work"/ht.*
	if [ $rc != 0 ] || [ ! -s "$work/t" ]; then
		echo "$me: $1 $2 failed (status $rc):" >&2
		tail -n 5 "$work/err" >&2
		return 1
	fi
	echo "$1 $2 $(cat "$work/t")" >>"$work/results"
}

# One untimed run of each workload first: page cache, and a broken command
# shows up before the rounds.
for w in $workloads; do
	run_one glibc "$w" || exit 1
done
: >"$work/results"

nallocs=$(echo $allocs | wc -w)
echo "whole programs: $REPS rounds of $(echo $workloads | wc -w) workloads x $nallocs allocators"
rep=0
while [ "$rep" -lt "$REPS" ]; do
	wi=0
	for w in $workloads; do
		# Rotate by round and workload: no allocator always runs first or
		# right after the same one.
		set -- $allocs
		i=0
		while [ $i -lt $(((rep + wi) % nallocs)) ]; do
			first=$1; shift; set -- "$@" "$first"; i=$((i + 1))
		done
		for a in "$@"; do
			run_one "$a" "$w" || echo "$a $w fail fail" >>"$work/results"
		done
		wi=$((wi + 1))
	done
	rep=$((rep + 1))
	printf '.' >&2
done
echo >&2

awk -v allocs="$allocs" -v workloads="$workloads" -v reps="$REPS" '
function median(arr, n,   i, j, t) {
	for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
	return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
}
# The results come in rounds: the k-th run of (allocator, workload) is
# paired with the k-th glibc run of that workload.
{ k = ++cnt[$1, $2]; t[$1, $2, k] = $3; m[$1, $2, k] = $4 }
END {
	na = split(allocs, a, " "); nw = split(workloads, w, " ")
	printf "\nwhole programs: wall time and peak RSS, median of %d paired rounds\n", reps
	printf "(glibc: seconds and MiB; others: time x RSS, each divided by glibc in the same round;\n"
	printf " rh-notrace: the shim with RH_SHMALLOC_TRACE_DEPTH=0; redhawk-shm: provenance at the\n"
	printf " default depth; heaptrack: the whole heaptrack command, RSS of its largest process;\n"
	printf " nt/mi: rh-notrace'"'"'s time over mimalloc'"'"'s in the same round, target <= 1.25;\n"
	printf " prov/ht: the shim'"'"'s provenance overhead (redhawk-shm - 1) over heaptrack'"'"'s, target <= 0.33;\n"
	printf " cc1: heaptrack --raw, as its interpreter (1.4.0) aborts on cc1; raw recording costs less)\n\n"
	printf "%-9s %14s", "workload", "glibc"
	for (i = 2; i <= na; i++) printf "  %13s", a[i]
	hasmi = index(" " allocs " ", " mimalloc ") > 0
	if (hasmi) printf "  %5s", "nt/mi"
	hasprov = index(" " allocs " ", " heaptrack ") > 0
	if (hasprov) printf "  %7s", "prov/ht"
	printf "\n"
	for (j = 1; j <= nw; j++) {
		n = 0
		for (k = 1; k <= cnt["glibc", w[j]]; k++) if (t["glibc", w[j], k] != "fail") { n++; bt[n] = t["glibc", w[j], k]; bm[n] = m["glibc", w[j], k] }
		if (!n) { printf "%-9s %14s\n", w[j], "failed"; continue }
		printf "%-9s %6.3fs %5.1fM", w[j], median(bt, n), median(bm, n) / 1024
		delete r
		for (i = 2; i <= na; i++) {
			n = 0
			for (k = 1; k <= cnt[a[i], w[j]]; k++) {
				g = t["glibc", w[j], k]; x = t[a[i], w[j], k]
				if (g == "fail" || x == "fail" || g <= 0) continue
				n++; rt[n] = x / g; rm[n] = m[a[i], w[j], k] / m["glibc", w[j], k]
			}
			if (!n) { printf "  %13s", "failed"; continue }
			r[a[i]] = median(rt, n)
			printf "  %5.2fx %5.2fx", r[a[i]], median(rm, n)
		}
		if (hasmi) {
			n = 0
			for (k = 1; k <= cnt["mimalloc", w[j]]; k++) {
				x = t["rh-notrace", w[j], k]; y = t["mimalloc", w[j], k]
				if (x == "fail" || y == "fail" || x == "" || y <= 0) continue
				n++; rt[n] = x / y
			}
			if (n) printf "  %5.2f", median(rt, n)
			else printf "  %5s", "-"
		}
		if (hasprov) {
			if (("redhawk-shm" in r) && ("heaptrack" in r) && r["heaptrack"] > 1)
				printf "  %7.2f", (r["redhawk-shm"] - 1) / (r["heaptrack"] - 1)
			else printf "  %7s", "-"
		}
		printf "\n"
	}
}' "$work/results"
