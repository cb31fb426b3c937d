/* SPDX-License-Identifier: MIT */
/*
 * Drives tests/progs/shm_peer, a separate process image that attaches blocks,
 * owns a heap and dies on command, over a pair of pipes (one command line out,
 * one answer line back, with a deadline so a hung peer fails the test instead
 * of hanging it). Shared by the multi-process and lifecycle tests.
 */
#ifndef RH_PEER_H
#define RH_PEER_H

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <redhawk/shm.h>

#define PEER_TIMEOUT_MS 10000

struct peer {
	pid_t pid;
	int to, from;          /* its stdin, its stdout */
	char buf[1024];
	size_t len;
};

struct peer_opts {
	const char *const *env;      /* "NAME=VALUE" to set, "NAME" to unset */
	const char *stderr_path;     /* its stderr goes here (else inherited) */
	void (*pre_exec)(void *arg); /* runs in the child just before exec */
	void *arg;
};

/* Peers not yet waited for, so a failed test does not leave them behind. */
#define PEER_MAX 256
static pid_t peer_live[PEER_MAX];

static inline void peer_track(pid_t pid, pid_t old)
{
	for (unsigned i = 0; i < PEER_MAX; i++)
		if (peer_live[i] == old) {
			peer_live[i] = pid;
			return;
		}
}

/* Kills and reaps every peer still running (teardown after a failure). */
static inline void peer_reap_all(void)
{
	for (unsigned i = 0; i < PEER_MAX; i++)
		if (peer_live[i] > 0) {
			kill(peer_live[i], SIGKILL);
			waitpid(peer_live[i], NULL, 0);
			peer_live[i] = 0;
		}
}

static inline long peer_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* The helper is built beside the tests: $BUILD/tests/progs/shm_peer. */
static inline const char *peer_path(void)
{
	static char path[PATH_MAX];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return "build/tests/progs/shm_peer";
	self[n] = 0;
	snprintf(path, sizeof(path), "%s/../progs/shm_peer", dirname(self));
	return path;
}

/* 0, or -1 with errno. */
static inline int peer_start(struct peer *p, const struct peer_opts *o)
{
	int in[2], out[2];
	const char *path = peer_path();
	memset(p, 0, sizeof(*p));
	p->pid = -1;
	if (pipe2(in, O_CLOEXEC) != 0)
		return -1;
	if (pipe2(out, O_CLOEXEC) != 0) {
		close(in[0]);
		close(in[1]);
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		if (o && o->stderr_path) {
			int fd = open(o->stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (fd >= 0)
				dup2(fd, 2);
		}
		for (const char *const *e = o ? o->env : NULL; e && *e; e++) {
			const char *eq = strchr(*e, '=');
			if (eq) {
				char name[128];
				snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
				setenv(name, eq + 1, 1);
			} else {
				unsetenv(*e);
			}
		}
		if (o && o->pre_exec)
			o->pre_exec(o->arg);
		execl(path, "shm_peer", (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	peer_track(pid, 0);
	p->pid = pid;
	p->to = in[1];
	p->from = out[0];
	return 0;
}

/* Reads one answer line into reply (without the newline). 0, or -1 on
 * timeout or end of file. */
static inline int peer_read(struct peer *p, char *reply, size_t size)
{
	long deadline = peer_now_ms() + PEER_TIMEOUT_MS;
	for (;;) {
		char *nl = memchr(p->buf, '\n', p->len);
		if (nl) {
			size_t n = (size_t)(nl - p->buf);
			snprintf(reply, size, "%.*s", (int)n, p->buf);
			memmove(p->buf, nl + 1, p->len - n - 1);
			p->len -= n + 1;
			return 0;
		}
		long left = deadline - peer_now_ms();
		struct pollfd pfd = { .fd = p->from, .events = POLLIN };
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return -1;
		ssize_t r = read(p->from, p->buf + p->len, sizeof(p->buf) - 1 - p->len);
		if (r <= 0)
			return -1;
		p->len += (size_t)r;
	}
}

/* Sends a command and reads its answer. 0 when the answer starts with "ok",
 * 1 for any other answer, -1 when there is none. */
static inline int peer_cmd(struct peer *p, char *reply, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static inline int peer_cmd(struct peer *p, char *reply, size_t size, const char *fmt, ...)
{
	char line[512], dummy[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 1)
		return -1;
	line[n++] = '\n';
	if (write(p->to, line, (size_t)n) != n)
		return -1;
	if (!reply) {
		reply = dummy;
		size = sizeof(dummy);
	}
	if (peer_read(p, reply, size) != 0)
		return -1;
	return strncmp(reply, "ok", 2) == 0 ? 0 : 1;
}

/* Waits for the peer to end, at most timeout_ms; kills it if it does not.
 * Returns its wait status, or -1 when it had to be killed. */
static inline int peer_wait(struct peer *p, long timeout_ms)
{
	int status = -1;
	long deadline = peer_now_ms() + timeout_ms;
	if (p->pid <= 0)
		return -1;
	for (;;) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid)
			break;
		if (r < 0 || peer_now_ms() > deadline) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, NULL, 0);
			status = -1;
			break;
		}
		usleep(2000);
	}
	peer_track(0, p->pid);
	p->pid = -1;
	close(p->to);
	close(p->from);
	return status;
}

/* Closes its stdin (it returns from main) and waits. */
static inline int peer_finish(struct peer *p)
{
	close(p->to);
	p->to = open("/dev/null", O_WRONLY | O_CLOEXEC);
	return peer_wait(p, PEER_TIMEOUT_MS);
}

static inline int peer_kill(struct peer *p)
{
	if (p->pid > 0)
		kill(p->pid, SIGKILL);
	return peer_wait(p, PEER_TIMEOUT_MS);
}

static inline void ref_to_hex(const struct rh_shm_ref *ref, char *out)
{
	const unsigned char *b = (const unsigned char *)ref;
	for (size_t i = 0; i < sizeof(*ref); i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static inline int ref_from_hex(const char *hex, struct rh_shm_ref *ref)
{
	unsigned char *b = (unsigned char *)ref;
	for (size_t i = 0; i < sizeof(*ref); i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		b[i] = (unsigned char)v;
	}
	return 0;
}

/* The pattern shm_peer fills and checks. */
static inline void pattern_fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)(seed + i * 7 + (i >> 9));
}

static inline int pattern_ok(const void *p, size_t n, unsigned seed)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != (unsigned char)(seed + i * 7 + (i >> 9)))
			return 0;
	return 1;
}

#endif
