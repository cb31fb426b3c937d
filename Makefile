# SPDX-License-Identifier: MIT
# redhawk-shm: one non-recursive Makefile. Sources are found by wildcard per
# folder; everything is built under $(BUILD).
#
#   make                 build the library, the shim and the tools
#   make check           build and run every test (SANITIZE=1: under ASan/UBSan)
#   make bench           print the performance tables
#   make demo            the scripted story of README.md
#   make install PREFIX=/usr/local DESTDIR=

PREFIX  ?= /usr/local
DESTDIR ?=
VERSION := 0.1.0

CC      ?= gcc
CXX     ?= g++
ifeq ($(SANITIZE),1)
BUILD   ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     ?= -O1 -g
else
BUILD   ?= build
SANFLAGS :=
OPT     ?= -O2 -g
endif

WARN     := -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers
CPPFLAGS += -D_GNU_SOURCE -DRH_VERSION='"$(VERSION)"' -Iheap/include -Iheap
CFLAGS   += -std=gnu11 $(OPT) $(WARN) -fPIC -fvisibility=hidden $(SANFLAGS)
# Our own code must never become calls to our own malloc.
LIBFLAGS := -fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc -fno-builtin-realloc -ftls-model=initial-exec
LDLIBS_CORE := -lpthread

HEAP_SRC    := $(wildcard heap/*.c)
PRELOAD_SRC := $(wildcard preload/*.c)
TOOL_MAINS  := shminfo shmclean shmrun
TOOL_SRC    := $(filter-out $(addprefix tools/,$(addsuffix .c,$(TOOL_MAINS))),$(wildcard tools/*.c))

HEAP_OBJ    := $(HEAP_SRC:%.c=$(BUILD)/obj/%.o)
PRELOAD_OBJ := $(PRELOAD_SRC:%.c=$(BUILD)/obj/%.o)
TOOL_OBJ    := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o)

LIB_SO      := $(BUILD)/lib/libredhawk-shm.so
LIB_A       := $(BUILD)/lib/libredhawk-shm.a
PRELOAD_SO  := $(BUILD)/lib/libredhawk-shm-preload.so
TOOLS       := $(addprefix $(BUILD)/bin/redhawk-,$(filter $(TOOL_MAINS),$(basename $(notdir $(wildcard tools/*.c)))))

TEST_SRC    := $(wildcard tests/heap/test_*.c tests/tools/test_*.c tests/preload/test_*.c)
TESTS       := $(TEST_SRC:%.c=$(BUILD)/%) $(BUILD)/tests/fuzz/replay
TEST_PROGS_C   := $(wildcard tests/progs/*.c tests/leaks/*.c)
TEST_PROGS_CXX := $(wildcard tests/progs/*.cc tests/leaks/*.cc)
TEST_PROGS  := $(TEST_PROGS_C:%.c=$(BUILD)/%) $(TEST_PROGS_CXX:%.cc=$(BUILD)/%)
FUZZ_SRC    := $(wildcard tests/fuzz/*.c)

.PHONY: all check bench demo install clean deps
.DELETE_ON_ERROR:

all: deps $(LIB_SO) $(LIB_A) $(if $(PRELOAD_SRC),$(PRELOAD_SO)) $(TOOLS)

# Missing build dependencies: install them when we are root, else say how.
deps:
	@scripts/install-deps --check >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then scripts/install-deps; \
	  else echo "redhawk-shm: build dependencies are missing: run 'sudo scripts/install-deps'" >&2; exit 1; fi; }

$(BUILD)/obj/heap/%.o: heap/%.c Makefile $(wildcard heap/*.h heap/include/redhawk/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LIBFLAGS) -c -o $@ $<

$(BUILD)/obj/preload/%.o: preload/%.c Makefile $(wildcard heap/*.h heap/include/redhawk/*.h preload/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LIBFLAGS) -c -o $@ $<

$(BUILD)/obj/tools/%.o: tools/%.c Makefile $(wildcard heap/*.h heap/include/redhawk/*.h tools/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB_SO): $(HEAP_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -shared -Wl,-soname,libredhawk-shm.so.0 -Wl,-z,defs -o $@ $^ $(LDLIBS_CORE)

$(LIB_A): $(HEAP_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# The shim is one self-contained file: the heap objects are linked in.
$(PRELOAD_SO): $(PRELOAD_OBJ) $(HEAP_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -shared -Wl,-z,defs -Wl,-z,nodelete -o $@ $^ -lunwind -ldl $(LDLIBS_CORE)

# libdw and libstdc++ are opened with dlopen when a frame is symbolised
# (tools/symbolize.c); dlopen is in libc since glibc 2.34, in libdl before.
LDLIBS_TOOLS := -Wl,--push-state,--as-needed -ldl -Wl,--pop-state $(LDLIBS_CORE)

$(BUILD)/bin/redhawk-%: tools/%.c $(TOOL_OBJ) $(LIB_A) $(wildcard tools/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(TOOL_OBJ) $(LIB_A) $(LDLIBS_TOOLS)

# Unit tests link the objects directly so that internal functions are
# reachable. Static pattern rules: each set of files has exactly one recipe.
HEAP_TESTS    := $(filter $(BUILD)/tests/heap/%,$(TESTS))
TOOL_TESTS    := $(filter $(BUILD)/tests/tools/%,$(TESTS))
PRELOAD_TESTS := $(filter $(BUILD)/tests/preload/%,$(TESTS))
UNWIND_TEST   := $(BUILD)/tests/preload/test_unwind
PROGS_C       := $(TEST_PROGS_C:%.c=$(BUILD)/%)
PROGS_CXX     := $(TEST_PROGS_CXX:%.cc=$(BUILD)/%)

$(HEAP_TESTS) $(filter-out $(UNWIND_TEST),$(PRELOAD_TESTS)): $(BUILD)/tests/%: tests/%.c $(HEAP_OBJ) $(wildcard tests/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -o $@ $< $(HEAP_OBJ) -lcmocka $(LDLIBS_CORE)

# The shim's stack walk, against libunwind's; also in the constructor of a
# library loaded with the test.
CTOR_LIB := $(BUILD)/tests/plugins/libctor.so
$(CTOR_LIB): tests/plugins/ctor.c $(BUILD)/obj/preload/unwind.o preload/unwind.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Ipreload $(CFLAGS) -shared -o $@ $< $(BUILD)/obj/preload/unwind.o -lunwind
$(UNWIND_TEST): $(BUILD)/tests/%: tests/%.c $(BUILD)/obj/preload/unwind.o preload/unwind.h $(CTOR_LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Ipreload $(CFLAGS) -o $@ $< $(BUILD)/obj/preload/unwind.o \
		-L$(dir $(CTOR_LIB)) -lctor -Wl,-rpath,'$$ORIGIN/../plugins' -lcmocka -lunwind $(LDLIBS_CORE)

$(TOOL_TESTS): $(BUILD)/tests/tools/%: tests/tools/%.c $(TOOL_OBJ) $(HEAP_OBJ) $(wildcard tests/*.h tools/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests -Itools $(CFLAGS) -o $@ $< $(TOOL_OBJ) $(HEAP_OBJ) -lcmocka $(LDLIBS_TOOLS)

# Replays tests/fuzz/corpus/ through the fuzz target (tests/fuzz/README.md).
$(BUILD)/tests/fuzz/replay: tests/fuzz/replay.c tests/fuzz/fuzz_reader.c $(HEAP_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -o $@ $< $(HEAP_OBJ) $(LDLIBS_CORE)

# Programs that tests run (under the shim, or linking the library).
# unload_race's dl_iterate_phdr and libunwind flush are the ones the shim calls.
$(BUILD)/tests/progs/unload_race: PROG_LDFLAGS := -Wl,--export-dynamic-symbol=dl_iterate_phdr \
	-Wl,--export-dynamic-symbol=_Ux86_64_flush_cache
# static_true: an image the loader never runs (the shim not in it).
$(BUILD)/tests/progs/static_true: PROG_LDFLAGS := -static
$(BUILD)/tests/progs/static_true: SANFLAGS :=
$(PROGS_C): $(BUILD)/tests/%: tests/%.c $(LIB_A) $(wildcard tests/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests -std=gnu11 -O0 -g -Wall -Wextra -Werror -fno-omit-frame-pointer $(SANFLAGS) $(PROG_LDFLAGS) -o $@ $< $(LIB_A) $(LDLIBS_CORE)

# The plugins tests/progs/plugin_swap.c loads, from one source: the big one
# spans 1 MiB more; x and y differ in their names only (the same code).
PLUGINS := $(addprefix $(BUILD)/tests/plugins/plugin_,a.so b.so c.so big.so x.so y.so)

$(BUILD)/tests/plugins/plugin_a.so: PLUGIN_DEFS := -DPLUGIN_FN=a_alloc -DPLUGIN_PAD=1000
$(BUILD)/tests/plugins/plugin_b.so: PLUGIN_DEFS := -DPLUGIN_FN=b_alloc -DPLUGIN_PAD=3000
$(BUILD)/tests/plugins/plugin_c.so: PLUGIN_DEFS := -DPLUGIN_FN=c_alloc -DPLUGIN_PAD=2000
$(BUILD)/tests/plugins/plugin_big.so: PLUGIN_DEFS := -DPLUGIN_FN=big_alloc -DPLUGIN_PAD=500 -DPLUGIN_BSS=1048576
$(BUILD)/tests/plugins/plugin_x.so: PLUGIN_DEFS := -DPLUGIN_FN=x_alloc -DPLUGIN_PAD=1000
$(BUILD)/tests/plugins/plugin_y.so: PLUGIN_DEFS := -DPLUGIN_FN=y_alloc -DPLUGIN_PAD=1000
$(PLUGINS): tests/plugins/plugin.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -fPIC -shared $(PLUGIN_DEFS) -o $@ $<

$(PROGS_CXX): $(BUILD)/tests/%: tests/%.cc
	@mkdir -p $(@D)
	$(CXX) -std=gnu++17 -O0 -g -Wall -Wextra -Werror -fno-omit-frame-pointer -o $@ $< $(LDLIBS_CORE)

check: all $(TESTS) $(TEST_PROGS) $(PLUGINS)
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) scripts/run-tests $(TESTS)

# The allocator benchmark, built twice: on rh_shm_alloc and on malloc (which
# scripts/bench also runs under LD_PRELOAD of jemalloc, mimalloc, tcmalloc).
BENCH_BIN := $(BUILD)/bench/alloc_bench_rh $(BUILD)/bench/alloc_bench_libc \
	     $(BUILD)/bench/workloads $(BUILD)/bench/runtime $(BUILD)/bench/handoff

$(BUILD)/bench/alloc_bench_rh: bench/alloc_bench.c $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=gnu11 -O2 -g $(WARN) -DBENCH_RH -o $@ $< $(LIB_A) $(LDLIBS_CORE)

$(BUILD)/bench/alloc_bench_libc: bench/alloc_bench.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=gnu11 -O2 -g $(WARN) -o $@ $< $(LDLIBS_CORE)

# Whole-process workloads for scripts/bench-programs.sh (plain malloc, so any
# allocator goes under them with LD_PRELOAD), and its timer.
$(BUILD)/bench/workloads: bench/workloads.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=gnu11 -O2 -g $(WARN) $(LIBFLAGS) -o $@ $< $(LDLIBS_CORE)

# Buffers handed between processes, for scripts/bench-handoff.sh.
$(BUILD)/bench/handoff: bench/handoff.c $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=gnu11 -O2 -g $(WARN) -o $@ $< $(LIB_A) $(LDLIBS_CORE)

$(BUILD)/bench/runtime: bench/runtime.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=gnu11 -O2 -g $(WARN) -o $@ $<

bench: all $(BENCH_BIN)
	@BUILD=$(BUILD) scripts/bench

# The demo's producer and consumer link the shared library: under the shim
# their rh_shm_* calls then bind to the shim's copy (one heap per process; a
# static copy in the executable would make a second one), and alone to ours.
DEMO_PROGS := $(patsubst tests/demo/%.c,$(BUILD)/tests/demo/%,$(wildcard tests/demo/*.c))

$(DEMO_PROGS): $(BUILD)/tests/demo/%: tests/demo/%.c $(LIB_SO)
	@mkdir -p $(@D)
	ln -sf libredhawk-shm.so $(BUILD)/lib/libredhawk-shm.so.0
	$(CC) $(CPPFLAGS) -std=gnu11 -O0 -g -Wall -Wextra -Werror -fno-omit-frame-pointer -o $@ $< \
	  -L$(BUILD)/lib -lredhawk-shm -Wl,-rpath,'$$ORIGIN/../../lib' $(LDLIBS_CORE)

demo: all $(DEMO_PROGS)
	@BUILD=$(BUILD) scripts/demo

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/redhawk \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/libredhawk-shm.so.0
	ln -sf libredhawk-shm.so.0 $(DESTDIR)$(PREFIX)/lib/libredhawk-shm.so
	$(if $(PRELOAD_SRC),install -m 755 $(PRELOAD_SO) $(DESTDIR)$(PREFIX)/lib/)
	$(if $(TOOLS),install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/)
	install -m 644 heap/include/redhawk/shm.h $(DESTDIR)$(PREFIX)/include/redhawk/
	$(if $(wildcard tools/*.1),install -m 644 $(wildcard tools/*.1) $(DESTDIR)$(PREFIX)/share/man/man1/)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' redhawk-shm.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/redhawk-shm.pc

clean:
	rm -rf build build-san
