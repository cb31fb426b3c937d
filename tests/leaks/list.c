/* SPDX-License-Identifier: MIT */
/* Linked lists: 2000 nodes reachable from a global, 500 lost with their head
 * (one direct leak, 499 indirect). */
#include <stdlib.h>

struct node {
	struct node *next;
	int value;
};

static struct node *kept;

static struct node *build(int n)
{
	struct node *head = NULL;
	for (int i = 0; i < n; i++) {
		struct node *x = malloc(sizeof(*x));
		x->value = i;
		x->next = head;
		head = x;
	}
	return head;
}

static int lose(void)
{
	struct node *l = build(500);
	int v = l->value;
	l = NULL;
	return v;
}

int main(void)
{
	kept = build(2000);
	return lose() != 499;
}
