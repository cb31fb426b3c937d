/* SPDX-License-Identifier: MIT */
/*
 * A library whose constructor walks its stack twice, with the shim's walk
 * and with libunwind's, for test_unwind to compare. Loaded with the test at
 * start, its constructor runs under the loader's entry code, which has no
 * unwind table and clears rbp: the stack's outermost frame.
 */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <stdint.h>

#include "unwind.h"

#define CTOR_MAX 64
__attribute__((visibility("default"))) void *ctor_fast[CTOR_MAX], *ctor_slow[CTOR_MAX];
__attribute__((visibility("default"))) int ctor_fast_n, ctor_slow_n;

__attribute__((constructor)) static void walk_twice(void)
{
	ctor_fast_n = unwind_fast(ctor_fast, CTOR_MAX, 0, 0);
	ctor_slow_n = unw_backtrace(ctor_slow, CTOR_MAX);
}
