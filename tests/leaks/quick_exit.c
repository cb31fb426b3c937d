/* SPDX-License-Identifier: MIT */
/* A leak, then _exit: no exit handlers run, the scan still does. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void leak_before_exit(void)
{
	char *p = malloc(777);
	memset(p, 5, 777);
	p = NULL;
}

int main(void)
{
	leak_before_exit();
	_exit(0);
}
