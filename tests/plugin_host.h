/* SPDX-License-Identifier: MIT */
/*
 * For the programs that load the plugins of tests/plugins/: one call
 * instruction for every plugin, so that the stacks through two plugins
 * loaded one after the other at the same address differ only where the
 * plugins' code was.
 */
#ifndef RH_TEST_PLUGIN_HOST_H
#define RH_TEST_PLUGIN_HOST_H
#include <stddef.h>

static __attribute__((noinline)) void *make_block(void *(*make)(size_t), size_t n)
{
	void *p = make(n);
	__asm__ volatile("" ::: "memory");
	return p;
}

#endif
