/* SPDX-License-Identifier: MIT */
/* A leak in a thread, which is joined before exit. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *worker(void *arg)
{
	(void)arg;
	char *buf = malloc(256);
	memset(buf, 2, 256);
	buf = NULL;
	return NULL;
}

int main(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, worker, NULL) != 0)
		return 1;
	pthread_join(t, NULL);
	return 0;
}
