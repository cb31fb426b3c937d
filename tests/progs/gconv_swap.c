/* SPDX-License-Identifier: MIT */
/*
 * gconv_swap PLUGIN.so: the C library unloads an iconv module on its own
 * (not through dlclose), and a plugin loaded next, most often where that
 * module was, allocates. Opens a conversion to UTF-16 (its module
 * allocates as it starts), closes it, then opens and closes three others,
 * after which the C library unloads UTF-16's module. Keeps one block of
 * 777777 bytes from the plugin. Run with RH_SHMALLOC_KEEP=1: the heap file
 * then tells who made it. Prints "overlaps" when the plugin lies in the
 * module's old range, "outside" when not, "kept" when the module was not
 * unloaded.
 */
#include <dlfcn.h>
#include <iconv.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "plugin_host.h"

struct range {
	const char *name;
	uintptr_t lo, hi;
	int found;
};

static int find(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct range *r = arg;
	const char *slash = strrchr(info->dlpi_name, '/');
	if (!slash || strcmp(slash + 1, r->name) != 0)
		return 0;
	r->found = 1;
	r->lo = UINTPTR_MAX;
	r->hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t s = info->dlpi_addr + ph->p_vaddr;
		if (s < r->lo)
			r->lo = s;
		if (s + ph->p_memsz > r->hi)
			r->hi = s + ph->p_memsz;
	}
	return 1;
}

static struct range where(const char *name)
{
	struct range r = { name, 0, 0, 0 };
	dl_iterate_phdr(find, &r);
	return r;
}

int main(int argc, char **argv)
{
	if (argc != 2 || !strrchr(argv[1], '/')) {
		fprintf(stderr, "usage: gconv_swap DIR/PLUGIN.so\n");
		return 2;
	}
	iconv_t cd = iconv_open("UTF-16", "UTF-8");
	if (cd == (iconv_t)-1) {
		perror("gconv_swap: iconv_open UTF-16");
		return 2;
	}
	struct range utf16 = where("UTF-16.so");
	iconv_close(cd);
	static const char *const other[] = { "ISO-8859-2", "ISO-8859-3", "ISO-8859-4" };
	for (unsigned i = 0; i < 3; i++)
		if ((cd = iconv_open(other[i], "UTF-8")) != (iconv_t)-1)
			iconv_close(cd);
	int kept = where("UTF-16.so").found;
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	void *(*make)(size_t) = h ? (void *(*)(size_t))dlsym(h, "plugin_make") : NULL;
	if (!make) {
		fprintf(stderr, "gconv_swap: %s: %s\n", argv[1], h ? "no plugin_make" : dlerror());
		return 2;
	}
	struct range plugin = where(strrchr(argv[1], '/') + 1);
	if (!make_block(make, 777777))
		return 1;
	printf("%s\n", !utf16.found || kept ? "kept" :
		plugin.lo < utf16.hi && utf16.lo < plugin.hi ? "overlaps" : "outside");
	return 0;
}
