/* SPDX-License-Identifier: MIT */
/* A cycle of three lost blocks: each points at the next, nothing at any. */
#include <stdlib.h>

struct node {
	struct node *next;
	char pad[40];
};

static struct node *node_new(void)
{
	return calloc(1, sizeof(struct node));
}

static void make_cycle(void)
{
	struct node *a = node_new(), *b = node_new(), *c = node_new();
	a->next = b;
	b->next = c;
	c->next = a;
}

int main(void)
{
	make_cycle();
	return 0;
}
