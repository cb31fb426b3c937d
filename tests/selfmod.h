/* SPDX-License-Identifier: MIT */
/*
 * The running executable as a journal module (load bias, extent, build-id,
 * path), for tests that write heaps whose stacks point into their own code.
 */
#ifndef RH_SELFMOD_H
#define RH_SELFMOD_H

#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

struct self_module {
	uint64_t base, start, end;
	uint8_t id[40];
	uint16_t id_len;
	char path[4096];
};

static inline int self_module_phdr(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct self_module *s = arg;
	s->base = info->dlpi_addr;
	s->start = UINT64_MAX;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];
		if (p->p_type == PT_LOAD) {
			uint64_t lo = info->dlpi_addr + p->p_vaddr, hi = lo + p->p_memsz;
			s->start = lo < s->start ? lo : s->start;
			s->end = hi > s->end ? hi : s->end;
		} else if (p->p_type == PT_NOTE) {
			const uint8_t *n = (const uint8_t *)(info->dlpi_addr + p->p_vaddr);
			const uint8_t *end = n + p->p_memsz;
			while (n + sizeof(ElfW(Nhdr)) <= end) {
				const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)n;
				const uint8_t *name = n + sizeof(*nh);
				const uint8_t *desc = name + ((nh->n_namesz + 3) & ~3u);
				if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
				    !memcmp(name, "GNU", 4) && nh->n_descsz <= sizeof(s->id)) {
					memcpy(s->id, desc, nh->n_descsz);
					s->id_len = (uint16_t)nh->n_descsz;
				}
				n = desc + ((nh->n_descsz + 3) & ~3u);
			}
		}
	}
	return 1; /* the first object is the executable: stop there */
}

/* Fills *s for this program; 0, or -1 when its path cannot be read. */
static inline int self_module(struct self_module *s)
{
	memset(s, 0, sizeof(*s));
	dl_iterate_phdr(self_module_phdr, s);
	ssize_t n = readlink("/proc/self/exe", s->path, sizeof(s->path) - 1);
	if (n <= 0)
		return -1;
	s->path[n] = 0;
	return 0;
}

#endif
