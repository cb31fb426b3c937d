/* SPDX-License-Identifier: MIT */
/* A leak deep inside a library call chain: strdup called three frames down. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *name_copy(const char *s)
{
	return strdup(s);
}

static size_t measure(const char *s)
{
	char *copy = name_copy(s);  /* never freed */
	return strlen(copy);
}

static size_t parse_config(void)
{
	return measure("component-name-with-some-length");
}

int main(void)
{
	size_t n = parse_config();
	return n == 0;
}
