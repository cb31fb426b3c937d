# SPDX-License-Identifier: MIT
# Our leak check against the tool users trust: for every program of
# tests/leaks/, redhawk-shmrun --leak-check --json and valgrind --leak-check=full
# must agree on the lost bytes and blocks (valgrind's definitely plus
# indirectly lost, over all processes of the program) and on the allocating
# function of each leak (the innermost frame in the program's own source).
# Programs without leaks must report nothing under both. No heap may be left.
set -u
TOP=${TOP:-$(pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
SHMRUN=$BUILD/bin/redhawk-shmrun
LEAKS=$BUILD/tests/leaks
skip() { echo "$*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[ "${SANITIZE:-}" = 1 ] && skip "the shim is not preloaded into sanitizer builds"
[ -x "$SHMRUN" ] || skip "not built: $SHMRUN"
command -v valgrind >/dev/null 2>&1 || skip "valgrind is not installed (apt-get install valgrind)"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
command -v c++filt >/dev/null 2>&1 || skip "c++filt (binutils) is not installed"

# Programs that leak nothing: both tools must report nothing.
NO_LEAK="noleak containers reachable"

D=$(mktemp -d /dev/shm/rh-leaks-test.XXXXXX) || fail mktemp
W=$(mktemp -d "${TMPDIR:-/tmp}/rh-leaks-work.XXXXXX") || fail mktemp
trap 'rm -rf "$D" "$W"' EXIT INT TERM
unset RH_SHM_DIR RH_SHMALLOC RH_SHMALLOC_KEEP RH_SHMALLOC_MIN_SIZE RH_SHMALLOC_TRACE_DEPTH RH_SHMALLOC_PRIVATE_SIZE DEBUGINFOD_URLS

n=0
for src in "$TOP"/tests/leaks/*.c "$TOP"/tests/leaks/*.cc; do
	[ -e "$src" ] || continue
	name=$(basename "$src"); name=${name%.*}
	prog=$LEAKS/$name
	[ -x "$prog" ] || fail "not built: $prog"
	"$SHMRUN" -d "$D" --leak-check --json -o "$W/$name.json" --error-exitcode=0 "$prog" \
		>/dev/null 2>"$W/$name.err" || { cat "$W/$name.err"; fail "$name: exit status $? under redhawk-shmrun"; }
	left=$(ls -A "$D")
	[ -z "$left" ] || fail "$name left heaps behind: $left"
	mkdir -p "$W/vg-$name"
	valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --xml=yes --xml-file="$W/vg-$name/%p.xml" "$prog" \
		>/dev/null 2>"$W/$name.vgerr" || { cat "$W/$name.vgerr"; fail "$name: exit status $? under valgrind"; }
	case " $NO_LEAK " in *" $name "*) expect=none ;; *) expect=some ;; esac
	python3 - "$W/$name.json" "$W/vg-$name" "$(basename "$src")" "$expect" <<'EOF' || fail "$name: reports differ"
import glob, json, os, re, subprocess, sys
import xml.etree.ElementTree as ET

ours_path, vg_dir, source, expect = sys.argv[1:]

def demangle(names):
    if not names:
        return []
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout
    return out.splitlines()

def short(fn):
    # "Widget::Widget(unsigned int)" and "make_widget(unsigned int)": the name only.
    return fn.split("(")[0].strip() if fn else "?"

ours = json.load(open(ours_path))
ob, ok = ours["summary"]["lost_bytes"], ours["summary"]["lost_blocks"]
raw = []
for p in ours["processes"]:
    for s in (p.get("lost") or {}).get("sites", []):
        fn = "?"
        for f in s["frames"]:
            if f["file"] and os.path.basename(f["file"]) == source:
                fn = f["function"] or "?"
                break
        raw.append(fn)
ofns = sorted(set(short(f) for f in demangle(raw)))

vb = vk = 0
vfns = set()
for path in glob.glob(os.path.join(vg_dir, "*.xml")):
    root = ET.parse(path).getroot()
    for err in root.iter("error"):
        kind = err.findtext("kind")
        if kind not in ("Leak_DefinitelyLost", "Leak_IndirectlyLost"):
            continue
        xw = err.find("xwhat")
        # A definitely lost record counts the blocks it holds indirectly
        # too ("15,984 (16 direct, 15,968 indirect) bytes"); those have records of
        # their own.
        m = re.search(r"\(([\d,]+) direct, [\d,]+ indirect\)", xw.findtext("text"))
        vb += int(m.group(1).replace(",", "")) if m else int(xw.findtext("leakedbytes"))
        vk += int(xw.findtext("leakedblocks"))
        fn = "?"
        for fr in err.find("stack").iter("frame"):
            if fr.findtext("file") == source:
                fn = fr.findtext("fn")
                break
        vfns.add(short(fn))
vfns = sorted(vfns)

print(f"{source}: ours {ob} bytes in {ok} blocks from {ofns}; valgrind {vb} bytes in {vk} blocks from {vfns}")
bad = []
if (ob, ok) != (vb, vk):
    bad.append("lost bytes and blocks differ")
if ofns != vfns:
    bad.append("allocating functions differ")
if expect == "none" and (ob or vb):
    bad.append("a program without leaks reported some")
if expect == "some" and not ob:
    bad.append("a leaking program reported none")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
EOF
	n=$((n + 1))
done
[ $n -ge 12 ] || fail "only $n programs in tests/leaks"
echo "ok: $n programs agree with valgrind"

# valgrind's tools that leave the program its own malloc (none, cachegrind,
# callgrind) run it with the shim's heap: valgrind must not fail on the way
# the heap file is named and mapped.
SHIM=$BUILD/lib/libredhawk-shm-preload.so
[ -f "$SHIM" ] || fail "not built: $SHIM"
for tool in none cachegrind; do
	out=; [ $tool = cachegrind ] && out=--cachegrind-out-file=/dev/null
	RH_SHM_DIR=$D LD_PRELOAD=$SHIM valgrind -q --tool=$tool $out "$LEAKS/list" \
		>/dev/null 2>"$W/$tool.err" 0</dev/null ||
		fail "list under valgrind --tool=$tool with the shim: exit status $?: $(head -c 600 "$W/$tool.err")"
	left=$(ls -A "$D")
	[ -z "$left" ] || fail "list under valgrind --tool=$tool left heaps behind: $left"
done
echo "ok: valgrind --tool=none and cachegrind run programs on the shim's heap"
