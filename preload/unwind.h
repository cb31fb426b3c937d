/* SPDX-License-Identifier: MIT */
#ifndef RH_UNWIND_H
#define RH_UNWIND_H

#include <stdbool.h>
#include <stdint.h>

/* The return addresses of the calling thread's stack, innermost first,
 * starting with the caller's return address into its own caller... as
 * libunwind's unw_backtrace gives them, at most `max`; those that lie in
 * [skip_lo, skip_hi) (the caller's own code: on top, and a hook's under
 * the code it called) are left out. Frames are unwound
 * with their DWARF call-frame information, each return address's rule
 * cached; -1 when a frame needs more than this (a signal frame, a CFA
 * expression, code without unwind tables): then ask libunwind. x86-64
 * only; elsewhere always -1. */
int unwind_fast(void **buf, int max, uintptr_t skip_lo, uintptr_t skip_hi);

/* Code was unloaded (dlclose): the cached rules go. */
void unwind_flush(void);

/* Around anything that may unload code (dlclose, and the C library's
 * calls that may unload iconv's modules): until the end, walks find their
 * rules anew instead of from the cache, since another thread may load code
 * where the unloaded code was before the end; what was unloaded is
 * dropped with unwind_flush before it. */
void unwind_unload_begin(void);
void unwind_unload_end(void);

/* Whether unwind_flush was ever called: libunwind's unw_backtrace keeps
 * rules of unloaded code that no flush reaches. */
bool unwind_flushed(void);

/* In a forked child (from its pthread_atfork handler): whether an unload
 * was under way in the parent, whose rules this dropped. */
bool unwind_fork_child(void);

#endif
