/* SPDX-License-Identifier: MIT */
/*
 * redhawk-shmrun: runs a command with the shim preloaded, as REDHAWK's device
 * manager runs its components: passes signals on, reaps every descendant (a
 * child subreaper), removes the heaps that crashed processes of the tree left
 * behind with a report of what they held, and with --leak-check reads each
 * process's heap after its exit scan and reports its leaks.
 *
 * Which processes are ours: every process of the tree announces its pid
 * (checked by the kernel, SO_PASSCRED) and start time on a datagram socket
 * whose name the shim finds in RH_SHMRUN_SOCKET (preload/leakscan.c), and
 * processes we reap ourselves are known by their zombie. A heap is touched
 * only when its creator pid and start time are those of such a process and
 * the reader finds it orphaned (its creator's lock is gone).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <redhawk/shm.h>

#include "../preload/leakscan.h"
#include "format.h"
#include "heap.h"
#include "fmt.h"
#include "options.h"
#include "report.h"
#include "scan.h"
#include "symbolize.h"

static const char *prog = "redhawk-shmrun";

/* Exit statuses of our own failures, as env(1) and timeout(1) use them. */
enum { EXIT_FAILED = 125, EXIT_CANNOT_RUN = 126, EXIT_NOT_FOUND = 127 };
#define DEFAULT_LEAK_EXIT 23

/* --- Command line --------------------------------------------------------- */

struct run_options {
	int keep, leak_check, show_reachable, json, wait_all;
	int error_exitcode;          /* with leaks found; 0: COMMAND's status */
	const char *dir;
	const char *output;
	const char **suppressions;
	size_t nsuppressions;
	struct fmt_ctx fmt;
	int first_arg;
};

static struct run_options opt;

static void usage(FILE *out)
{
	fputs("\nUsage:\n"
		" redhawk-shmrun [options] [--] COMMAND [ARG...]\n"
		"\nRun COMMAND with the redhawk-shm shim preloaded; remove the heaps its\n"
		"crashed processes leave, saying what they held; optionally check for leaks.\n"
		"\nOptions:\n"
		" -d, --dir=DIR              heap folder (default: $RH_SHM_DIR, else /dev/shm)\n"
		"     --keep                 leave heaps of crashed processes in place\n"
		"     --leak-check           report each process's lost blocks at exit\n"
		"     --show-reachable       also report blocks still reachable at exit\n"
		"     --wait-all             after COMMAND, wait for all its descendants\n"
		"     --suppressions=FILE    leak:PATTERN lines (LeakSanitizer's format)\n"
		"     --error-exitcode=N     exit status when leaks are found (default 23;\n"
		"                              0: COMMAND's own status)\n"
		"     --format=FORMAT        print sizes as auto (7.7G), b (bytes) or k (KiB)\n"
		"     --json                 report as one JSON document, sizes in bytes\n"
		" -o, --output=FILE          write reports to FILE (default: standard error)\n"
		"\n"
		" -h, --help                 display this help\n"
		" -V, --version              display version\n"
		"\nExit status: COMMAND's, or 128+N when signal N killed it; 23 (or\n"
		"--error-exitcode's) when --leak-check found leaks; 125 when\n"
		"redhawk-shmrun itself fails, 126 when COMMAND cannot be run, 127 when it\n"
		"is not found.\n"
		"\nFor more details see redhawk-shmrun(1).\n", out);
}

/* Bad usage is reported here; options_finish ends the other cases. */
static enum parse_result parse(int argc, char **argv)
{
	enum { OPT_KEEP = 256, OPT_LEAK, OPT_REACH, OPT_SUPP, OPT_EXIT, OPT_FORMAT, OPT_JSON, OPT_WAIT };
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "error-exitcode", required_argument, NULL, OPT_EXIT },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "keep", no_argument, NULL, OPT_KEEP },
		{ "leak-check", no_argument, NULL, OPT_LEAK },
		{ "output", required_argument, NULL, 'o' },
		{ "show-reachable", no_argument, NULL, OPT_REACH },
		{ "suppressions", required_argument, NULL, OPT_SUPP },
		{ "version", no_argument, NULL, 'V' },
		{ "wait-all", no_argument, NULL, OPT_WAIT },
		{ NULL, 0, NULL, 0 },
	};
	memset(&opt, 0, sizeof(opt));
	opt.error_exitcode = DEFAULT_LEAK_EXIT;
	opterr = 0;
	int c;
	/* '+': options end at COMMAND, whose own options are its business. */
	while ((c = getopt_long(argc, argv, "+:d:ho:V", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': opt.dir = optarg; break;
		case 'o': opt.output = optarg; break;
		case OPT_KEEP: opt.keep = 1; break;
		case OPT_LEAK: opt.leak_check = 1; break;
		case OPT_REACH: opt.show_reachable = 1; break;
		case OPT_JSON: opt.json = 1; break;
		case OPT_WAIT: opt.wait_all = 1; break;
		case OPT_SUPP: {
			const char **v = realloc(opt.suppressions, (opt.nsuppressions + 1) * sizeof(*v));
			if (!v) {
				fprintf(stderr, "%s: %s\n", prog, strerror(ENOMEM));
				return PARSE_USAGE;
			}
			opt.suppressions = v;
			v[opt.nsuppressions++] = optarg;
			break;
		}
		case OPT_EXIT: {
			char *end;
			errno = 0;
			long n = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || n < 0 || n > 255) {
				fprintf(stderr, "%s: invalid exit status '%s' (0 to 255)\n", prog, optarg);
				return PARSE_USAGE;
			}
			opt.error_exitcode = (int)n;
			break;
		}
		case OPT_FORMAT:
			if (fmt_parse_size_format(optarg, &opt.fmt.size) != 0) {
				fprintf(stderr, "%s: invalid format '%s'\n", prog, optarg);
				return PARSE_USAGE;
			}
			break;
		case 'h':
			return PARSE_HELP;
		case 'V':
			return PARSE_VERSION;
		default:
			options_complain(stderr, prog, c, argv, longopts);
			return PARSE_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s: missing COMMAND\n", prog);
		return PARSE_USAGE;
	}
	if (!opt.dir) {
		const char *env = getenv("RH_SHM_DIR");
		opt.dir = env && *env ? env : "/dev/shm";
	}
	opt.first_arg = optind;
	return PARSE_OK;
}

static _Noreturn void die(int status, const char *fmt_, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void die(int status, const char *fmt_, ...)
{
	va_list ap;
	va_start(ap, fmt_);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt_, ap);
	putc('\n', stderr);
	va_end(ap);
	exit(status);
}

/* --- Suppressions (LeakSanitizer's format) -------------------------------- */

static char **patterns;
static size_t npatterns;

/* sanitizer_common's TemplateMatch: '*' matches anything, '^' anchors at
 * the start, '$' at the end; otherwise the pattern may match anywhere. */
static int template_match(const char *t, const char *s)
{
	if (!s || !*s)
		return 0;
	int start = 0, asterisk = 0;
	if (*t == '^') {
		start = 1;
		t++;
	}
	while (*t) {
		if (*t == '*') {
			t++;
			start = 0;
			asterisk = 1;
			continue;
		}
		if (*t == '$')
			return *s == 0 || asterisk;
		if (*s == 0)
			return 0;
		size_t len = strcspn(t, "*$");
		const char *hit = NULL;
		for (const char *p = s; *p; p++)
			if (strncmp(p, t, len) == 0) {
				hit = p;
				break;
			}
		if (!hit || (start && hit != s))
			return 0;
		s = hit + len;
		t += len;
		start = 0;
		asterisk = 0;
	}
	return 1;
}

/* What is wrong with the suppressions file (lineno 0) or one of its lines,
 * with the line's first 80 bytes: name and text escaped, as the file and its
 * name may hold anything. */
static _Noreturn void bad_suppressions(const char *path, unsigned lineno, const char *why, const char *text)
{
	char shown[81];
	fflush(stdout);
	fprintf(stderr, "%s: ", prog);
	fmt_name(stderr, path);
	if (lineno)
		fprintf(stderr, ":%u", lineno);
	fprintf(stderr, ": %s", why);
	if (text) {
		snprintf(shown, sizeof(shown), "%s", text);
		fputs(": ", stderr);
		fmt_name(stderr, shown);
		if (strlen(text) >= sizeof(shown))
			fputs("...", stderr);
	}
	putc('\n', stderr);
	exit(EXIT_FAILED);
}

static void load_suppressions(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		bad_suppressions(path, 0, strerror(errno), NULL);
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	ssize_t got;
	while ((got = getline(&line, &cap, f)) > 0) {
		lineno++;
		if ((size_t)got != strlen(line))
			bad_suppressions(path, lineno, "holds a NUL byte", NULL);
		char *p = line + strspn(line, " \t");
		char *end = p + strlen(p);
		while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
			*--end = 0;
		if (!*p || *p == '#')
			continue;
		if (strncmp(p, "leak:", 5) != 0 || !p[5])
			bad_suppressions(path, lineno, "not a leak suppression (expected leak:PATTERN)", p);
		char **v = realloc(patterns, (npatterns + 1) * sizeof(*v));
		if (!v || !(v[npatterns] = strdup(p + 5)))
			die(EXIT_FAILED, "%s", strerror(ENOMEM));
		patterns = v;
		npatterns++;
	}
	if (ferror(f))
		bad_suppressions(path, 0, strerror(errno), NULL);
	free(line);
	fclose(f);
}

/* Whether any frame's function (demangled, as LeakSanitizer matches it, or
 * its linkage name), file or module matches a pattern. */
static int suppressed(struct symbolizer *sym, const struct site_stat *s)
{
	symbolizer_site(sym, s->id);
	for (unsigned i = 0; i < s->depth; i++) {
		struct frame f;
		symbolizer_frame(sym, s->frames[i], &f);
		for (size_t k = 0; k < npatterns; k++)
			if (template_match(patterns[k], f.function) || template_match(patterns[k], f.symbol) ||
			    template_match(patterns[k], f.file) || template_match(patterns[k], f.module))
				return 1;
	}
	return 0;
}

/* --- The process tree ------------------------------------------------------ */

struct tracked {
	pid_t pid;
	uint64_t start;
};

static struct tracked *tracked;
static size_t ntracked, tracked_cap;
static int sock = -1, heap_dir = -1;
static pid_t child;
static char **command_argv;

static void track(pid_t pid, uint64_t start)
{
	for (size_t i = 0; i < ntracked; i++)
		if (tracked[i].pid == pid) {
			tracked[i].start = start;
			return;
		}
	if (ntracked == tracked_cap) {
		size_t cap = tracked_cap ? tracked_cap * 2 : 64;
		struct tracked *v = realloc(tracked, cap * sizeof(*v));
		if (!v) {
			fprintf(stderr, "%s: %s; pid %d not tracked\n", prog, strerror(ENOMEM), (int)pid);
			return;
		}
		tracked = v;
		tracked_cap = cap;
	}
	tracked[ntracked++] = (struct tracked){ pid, start };
}

static void untrack(pid_t pid)
{
	for (size_t i = 0; i < ntracked; i++)
		if (tracked[i].pid == pid) {
			tracked[i] = tracked[--ntracked];
			return;
		}
}

/* Fields 4 (the parent's pid) and 22 (the start time) of /proc/PID/stat;
 * 0 when the process is gone. */
static uint64_t proc_stat(pid_t pid, pid_t *ppid)
{
	uint64_t start = 0;
	return os_proc_stat(pid, &start, ppid) == 0 ? start : 0;
}

static uint64_t start_time(pid_t pid)
{
	return proc_stat(pid, NULL);
}

/* Is PID, started at START, a process of our tree? Its parents lead to us:
 * we are the tree's subreaper, so an orphan's parent is us. The socket's
 * name can be read in /proc/net/unix, so any local user may send to it. */
static int in_tree(pid_t pid, uint64_t start)
{
	pid_t self = getpid(), p = pid, parent = 0;
	if (!start || proc_stat(pid, &parent) != start)
		return 0;
	/* Up to us: as PID 1 of a namespace (a container's entry point) our
	 * children's parent is 1 too. */
	for (int depth = 0; depth < 4096 && parent > 0 && parent != p; depth++) {
		if (parent == self)
			return 1;
		if (parent == 1)
			return 0;
		p = parent;
		parent = 0;
		if (!proc_stat(p, &parent))
			return 0;
	}
	return 0;
}

/* Reads every announcement waiting on the socket. */
static void drain_socket(void)
{
	for (;;) {
		struct shmrun_hello m;
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(struct ucred))];
		} ctl;
		struct iovec iov = { &m, sizeof(m) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
			.msg_controllen = sizeof(ctl) };
		ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		if (n != sizeof(m) || m.magic != SHMRUN_HELLO_MAGIC || !c || c->cmsg_level != SOL_SOCKET ||
		    c->cmsg_type != SCM_CREDENTIALS)
			continue;
		struct ucred cred;
		memcpy(&cred, CMSG_DATA(c), sizeof(cred));
		/* One already gone (a grandchild its parent reaped before this
		 * read) cannot be checked: it counts when it ran as the user we
		 * run as, which the kernel vouches for; its heap must then have
		 * the start time it gave. */
		if (cred.pid > 0 && (in_tree(cred.pid, m.start) ||
				     (m.start && !start_time(cred.pid) && cred.uid == getuid())))
			track(cred.pid, m.start);
	}
}


/* --- Reports ----------------------------------------------------------------- */

static FILE *out;              /* text reports */
static FILE *json;             /* the "processes" members, joined at the end */
static char *json_buf;
static size_t json_len;
static unsigned nprocesses, ncrashed, nleaky;
static uint64_t lost_bytes, lost_blocks, leaks, supp_leaks, supp_bytes, supp_blocks;
static uint64_t reach_bytes, reach_blocks;

static int is_lost(const struct rh_block_info *b, void *arg)
{
	(void)arg;
	return !b->reachable;
}

static int is_reachable(const struct rh_block_info *b, void *arg)
{
	(void)arg;
	return b->reachable;
}

/* Takes suppressed sites out of r; returns how many. */
static uint64_t suppress(struct symbolizer *sym, struct site_report *r, uint64_t *bytes, uint64_t *blocks)
{
	uint64_t n = 0;
	size_t k = 0;
	*bytes = *blocks = 0;
	for (size_t i = 0; i < r->n; i++) {
		if (npatterns && suppressed(sym, &r->sites[i])) {
			n++;
			*bytes += r->sites[i].bytes;
			*blocks += r->sites[i].blocks;
			continue;
		}
		r->sites[k++] = r->sites[i];
	}
	r->n = k;
	r->bytes -= *bytes;
	r->blocks -= *blocks;
	return n;
}

static void describe(FILE *f, pid_t pid, const char *command, int status)
{
	fprintf(f, "%s: pid %d (", prog, (int)pid);
	fmt_name(f, command[0] ? command : "?");
	fputc(')', f);
	if (status >= 0 && WIFSIGNALED(status))
		fprintf(f, " killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (status >= 0 && WIFEXITED(status))
		fprintf(f, " exited with status %d", WEXITSTATUS(status));
}

static const char *plural(uint64_t n)
{
	return n == 1 ? "" : "s";
}

static void print_sites(struct symbolizer *sym, const struct site_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		report_print_site(out, &opt.fmt, sym, &r->sites[i], 0, "  ");
	if (r->nosite_blocks) {
		char size[FMT_SIZE_LEN];
		fprintf(out, "  %s in %" PRIu64 " block%s with no recorded call site\n",
			fmt_size(size, r->nosite_bytes, opt.fmt.size), r->nosite_blocks, plural(r->nosite_blocks));
	}
}

static void json_totals(const char *name, const struct site_report *r, struct symbolizer *sym, int sites)
{
	fprintf(json, ", \"%s\": {\"bytes\": %" PRIu64 ", \"blocks\": %" PRIu64, name, r->bytes, r->blocks);
	if (sites) {
		fputs(", ", json);
		report_json(json, sym, r, SIZE_MAX, r->bytes);
	}
	fputc('}', json);
}

/* A heap whose exit scan ran: its leaks. 0, or -1 when it could not be read. */
static int leak_report(struct rh_heap *heap, struct symbolizer *sym, pid_t pid, const char *command, int status)
{
	struct site_report lost, reach;
	if (report_collect_if(heap, is_lost, NULL, &lost) != 0)
		return -1;
	if (report_collect_if(heap, is_reachable, NULL, &reach) != 0) {
		report_free(&lost);
		return -1;
	}
	uint64_t sb, sk, sn = suppress(sym, &lost, &sb, &sk);
	uint64_t nleaks = lost.n + (lost.nosite_blocks ? 1 : 0);
	lost_bytes += lost.bytes;
	lost_blocks += lost.blocks;
	leaks += nleaks;
	supp_leaks += sn;
	supp_bytes += sb;
	supp_blocks += sk;
	reach_bytes += reach.bytes;
	reach_blocks += reach.blocks;
	nleaky += lost.blocks > 0;

	if (opt.json) {
		fprintf(json, ", \"checked\": true");
		json_totals("lost", &lost, sym, 1);
		fprintf(json, ", \"suppressed\": {\"leaks\": %" PRIu64 ", \"bytes\": %" PRIu64
			", \"blocks\": %" PRIu64 "}", sn, sb, sk);
		json_totals("reachable", &reach, sym, opt.show_reachable);
	} else {
		if (lost.blocks) {
			describe(out, pid, command, status);
			fprintf(out, ": %" PRIu64 " bytes lost in %" PRIu64 " block%s, %" PRIu64 " leak%s:\n",
				lost.bytes, lost.blocks, plural(lost.blocks), nleaks, plural(nleaks));
			print_sites(sym, &lost);
		}
		if (opt.show_reachable && reach.blocks) {
			describe(out, pid, command, status);
			fprintf(out, ": %" PRIu64 " bytes still reachable in %" PRIu64 " block%s:\n",
				reach.bytes, reach.blocks, plural(reach.blocks));
			print_sites(sym, &reach);
		}
		if (sn) {
			describe(out, pid, command, status);
			fprintf(out, ": suppressed %" PRIu64 " leak%s, %" PRIu64 " bytes in %" PRIu64 " block%s\n",
				sn, plural(sn), sb, sk, plural(sk));
		}
	}
	report_free(&lost);
	report_free(&reach);
	return 0;
}

/* A heap left by a crash (or by an exit without the scan): what it held. */
static int held_report(struct rh_heap *heap, struct symbolizer *sym, pid_t pid, const char *command,
	int status, const char *name)
{
	struct site_report r;
	const struct rh_heap_info *info = rh_heap_info(heap);
	if (report_collect(heap, &r) != 0)
		return -1;
	if (opt.json) {
		fputs(", \"checked\": false", json);
		json_totals("held", &r, sym, 1);
	} else {
		char size[FMT_SIZE_LEN];
		describe(out, pid, command, status);
		fputs(": ", out);
		fmt_name(out, name);
		fprintf(out, " held %s in %" PRIu64 " block%s", fmt_size(size, info->heap_used, opt.fmt.size),
			r.blocks, plural(r.blocks));
		fputs(r.n || r.blocks ? ":\n" : "\n", out);
		report_print(out, &opt.fmt, sym, &r, SIZE_MAX, info->heap_used, "    ", 0);
	}
	report_free(&r);
	return 0;
}

/* Unlinks NAME if it still is the file *ST describes. */
static int unlink_checked(const char *name, const struct stat *st)
{
	struct stat now;
	if (fstatat(heap_dir, name, &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_dev != st->st_dev ||
	    now.st_ino != st->st_ino)
		return -1;
	return unlinkat(heap_dir, name, 0);
}

/* One for the run: heaps that load the same files share their parsing. */
static struct symbolizer *run_sym;

/* examine, for the heap named NAME. */
static int examine_name(pid_t pid, uint64_t start, int status, const char *name)
{
	struct stat st0, st;
	if (fstatat(heap_dir, name, &st0, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st0.st_mode))
		return 0;
	int fd = openat(heap_dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return 0;
	struct rh_heap *heap = NULL;
	int rc = 0;
	if (fstat(fd, &st) != 0 || st.st_dev != st0.st_dev || st.st_ino != st0.st_ino)
		goto out;
	int err = rh_heap_open_fd(fd, &heap);
	if (err && err != EPROTO)
		goto out;
	const struct rh_heap_info *info = rh_heap_info(heap);
	/* Ours only: made by this very process (pid and start time). */
	if (info->creator_pid != pid || (start && info->creator_start != start))
		goto out;
	int orphaned = rh_heap_fd_orphaned(fd, info);
	if (orphaned != 1) {
		rc = orphaned == 0 ? -1 : 0;
		goto out;
	}
	rc = 1;
	nprocesses++;
	int checked = opt.leak_check && (info->flags & RH_HEAP_F_SCANNED);
	int crashed = status >= 0 ? WIFSIGNALED(status) : !checked;
	ncrashed += crashed;
	if (opt.json) {
		fprintf(json, "%s{\"pid\": %d, \"command\": ", nprocesses > 1 ? ",\n    " : "", (int)pid);
		fmt_json_string(json, info->command);
		fputs(", \"heap\": ", json);
		fmt_json_string(json, name);
		if (status >= 0 && WIFEXITED(status))
			fprintf(json, ", \"exit_code\": %d, \"signal\": null", WEXITSTATUS(status));
		else if (status >= 0)
			fprintf(json, ", \"exit_code\": null, \"signal\": %d", WTERMSIG(status));
		else
			fputs(", \"exit_code\": null, \"signal\": null", json);
		fprintf(json, ", \"crashed\": %s", crashed ? "true" : "false");
	}
	if (!run_sym)
		run_sym = symbolizer_new();
	struct symbolizer *sym = run_sym;
	if (err == EPROTO || !sym) {
		fflush(out);
		fprintf(stderr, "%s: %s: unreadable heap: %s\n", prog, name, sym ? rh_heap_error(heap) : strerror(ENOMEM));
		if (opt.json)
			fputs(", \"checked\": false, \"error\": \"unreadable heap\"", json);
	} else {
		symbolizer_clear(sym);
		symbolizer_load(sym, heap);
		int r = checked ? leak_report(heap, sym, pid, info->command, status)
			: held_report(heap, sym, pid, info->command, status, name);
		if (r != 0) {
			fflush(out);
			fprintf(stderr, "%s: %s: %s\n", prog, name, rh_heap_error(heap));
			if (opt.json)
				fputs(", \"checked\": false, \"error\": \"unreadable heap\"", json);
		}
	}
	int removed = 0;
	if (!opt.keep) {
		removed = unlink_checked(name, &st) == 0;
		if (!removed) {
			fflush(out);
			fprintf(stderr, "%s: %s: not removed: %s\n", prog, name, strerror(errno));
		} else if (!opt.json && (crashed || !checked)) {
			fputs("unlinking ", out);
			fmt_name(out, name);
			fputc('\n', out);
		}
	}
	if (opt.json)
		fprintf(json, ", \"removed\": %s}", removed ? "true" : "false");
	fflush(out);
out:
	rh_heap_close(heap);
	close(fd);
	return rc;
}

/* The pid namespace of this process, and so of the tree's (0: unknown). */
static uint64_t pid_ns;

/* The heap of process PID (started at START), if it left one: under its
 * name, or, when a live heap of another namespace's process held that name
 * as it was made, under the name with our namespace's suffix. Reported and
 * removed. STATUS is its wait status, -1 when another process reaped it.
 * Returns 1 when its heap was found, 0 when there is none, -1 while the
 * creator still holds it. */
static int examine(pid_t pid, uint64_t start, int status)
{
	char name[RH_HEAP_NAME_LEN];
	snprintf(name, sizeof(name), "heap-%d", (int)pid);
	int rc = examine_name(pid, start, status, name), rc2 = 0;
	/* Both may be there: a program exec'd by one that dropped root for
	 * good makes its heap beside the one it could not remove. */
	if (pid_ns) {
		snprintf(name, sizeof(name), "heap-%d-%" PRIu64, (int)pid, pid_ns);
		rc2 = examine_name(pid, start, status, name);
	}
	return rc < 0 || rc2 < 0 ? -1 : rc > 0 || rc2 > 0;
}

/* A dead process's .heap-PID.exec: the heap its earlier program image set
 * aside at exec, left when the new image runs without the shim. Removed
 * silently when it is that process's and orphaned. */
static void remove_exec_aside(pid_t pid, uint64_t start)
{
	char name[64];
	snprintf(name, sizeof(name), ".heap-%d.exec", (int)pid);
	struct stat st;
	if (opt.keep || fstatat(heap_dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
		return;
	int fd = openat(heap_dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return;
	struct rh_heap *heap = NULL;
	struct stat now;
	if (fstat(fd, &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev &&
	    rh_heap_open(heap_dir, name, &heap) == 0) {
		const struct rh_heap_info *info = rh_heap_info(heap);
		if (info->creator_pid == pid && (!start || !info->creator_start || info->creator_start == start) &&
		    rh_heap_fd_orphaned(fd, info) == 1)
			unlink_checked(name, &st);
	}
	rh_heap_close(heap);
	close(fd);
}

/* Every announced process that is gone: its heap, if any. */
static void sweep(void)
{
	drain_socket();
	for (size_t i = 0; i < ntracked;) {
		struct tracked t = tracked[i];
		int r = examine(t.pid, t.start, -1);
		int gone = !t.start || start_time(t.pid) != t.start;
		if (gone)
			remove_exec_aside(t.pid, t.start);
		if (r == 1 || (r == 0 && gone)) {
			untrack(t.pid);  /* handled, or gone without a heap */
			continue;
		}
		i++;
	}
}

/* Every dead descendant we can reap: its heap first (while it is a zombie,
 * its pid cannot be reused), then the zombie. Returns 1 once COMMAND is
 * (with --wait-all: once no descendant is left). */
static int command_reaped;  /* COMMAND's pid is no longer its */

static int reap(int *command_status)
{
	static int command_done;
	for (;;) {
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECHILD)
				return command_done;
			break;
		}
		if (si.si_pid == 0)
			break;
		pid_t pid = si.si_pid;
		int status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f);
		drain_socket();
		uint64_t start = start_time(pid);
		examine(pid, start, status);
		remove_exec_aside(pid, start);
		untrack(pid);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (pid == child) {
			*command_status = status;
			command_done = 1;
			command_reaped = 1;
		}
	}
	return command_done && !opt.wait_all;
}

/* --- Starting COMMAND ------------------------------------------------------- */

/* The shim beside us: ../lib/libredhawk-shm-preload.so from our binary. */
static char *find_shim(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		die(EXIT_FAILED, "cannot find our own binary: %s", strerror(errno));
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (slash)
		*slash = 0;
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/../lib/libredhawk-shm-preload.so", self);
	char *real = realpath(path, NULL);
	if (!real || access(real, R_OK) != 0)
		die(EXIT_FAILED, "cannot find the shim: %s: %s", path, strerror(errno));
	return real;
}

static void set_env(const char *name, const char *value)
{
	if (setenv(name, value, 1) != 0)
		die(EXIT_FAILED, "%s: %s", name, strerror(errno));
}

/* LD_PRELOAD with the shim first, keeping what was there (the shim where
 * it was is moved first). The loader splits it at spaces and colons. */
static void set_preload(const char *shim)
{
	const char *old = getenv("LD_PRELOAD");
	if (strpbrk(shim, " :"))
		die(EXIT_FAILED, "cannot preload the shim: its path has a space or colon: %s", shim);
	size_t sl = strlen(shim), len = sl + (old ? strlen(old) : 0) + 2;
	char *v = malloc(len);
	if (!v)
		die(EXIT_FAILED, "%s", strerror(ENOMEM));
	memcpy(v, shim, sl + 1);
	char *end = v + sl;
	for (const char *e = old; e && *e;) {
		e += strspn(e, " :");
		size_t n = strcspn(e, " :");
		if (n && !(n == sl && !strncmp(e, shim, sl))) {
			*end++ = ':';
			memcpy(end, e, n);
			end += n;
			*end = 0;
		}
		e += n;
	}
	set_env("LD_PRELOAD", v);
	free(v);
}

static void open_socket(void)
{
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sock < 0)
		die(EXIT_FAILED, "socket: %s", strerror(errno));
	int on = 1, size = 1 << 20;
	setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on));
	setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	uint64_t nonce = 0;
	if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce))
		nonce = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	/* Abstract namespace: nothing on disk to clean up. */
	int n = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "redhawk-shmrun-%d-%016" PRIx64,
		(int)getpid(), nonce);
	if (bind(sock, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) != 0)
		die(EXIT_FAILED, "bind: %s", strerror(errno));
	char name[sizeof(a.sun_path) + 1];
	snprintf(name, sizeof(name), "@%s", a.sun_path + 1);
	set_env("RH_SHMRUN_SOCKET", name);
}

static const int forwarded[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2 };
static struct sigaction given_pipe, given_chld;  /* as we were started */
static char *given_dir;                          /* RH_SHM_DIR, as we were started */

/* Forks and execs COMMAND; exits 126 or 127 when exec fails. */
static void start(char **argv, const sigset_t *old_mask)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		die(EXIT_FAILED, "pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		die(EXIT_FAILED, "fork: %s", strerror(errno));
	if (child == 0) {
		close(p[0]);
		/* COMMAND gets the dispositions we were given (an ignored SIGPIPE
		 * or SIGCHLD stays ignored across exec). */
		sigaction(SIGPIPE, &given_pipe, NULL);
		sigaction(SIGCHLD, &given_chld, NULL);
		sigprocmask(SIG_SETMASK, old_mask, NULL);
		execvp(argv[0], argv);
		int e = errno;
		ssize_t w = write(p[1], &e, sizeof(e));
		(void)w;
		_exit(e == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN);
	}
	close(p[1]);
	int e;
	ssize_t n;
	while ((n = read(p[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(p[0]);
	if (n == sizeof(e)) {
		waitpid(child, NULL, 0);
		die(e == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN, "%s: %s", argv[0], strerror(e));
	}
}

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Reaps what ends for up to MS milliseconds: 1 when no child is left. */
static int settle(int *command_status, unsigned ms)
{
	uint64_t until = now_ms() + ms;
	for (;;) {
		reap(command_status);
		siginfo_t si = { 0 };
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD)
			return 1;
		if (now_ms() >= until)
			return 0;
		struct timespec t = { 0, 10 * 1000 * 1000 };
		nanosleep(&t, NULL);
	}
}

static void die_of(int sig)
{
	struct rlimit none = { 0, 0 };
	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0); /* a core_pattern pipe ignores the limit */
	signal(sig, SIG_DFL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
}


/* Whether COMMAND got signal si as we did: the terminal's signals (Ctrl-C,
 * a hangup) go to its foreground process group, which holds COMMAND only
 * when COMMAND is in ours. A hangup of our session's terminal reaches us
 * alone when we lead the session. */
static int received_too(const struct signalfd_siginfo *si)
{
	if (si->ssi_code != SI_KERNEL)
		return 0;
	if (si->ssi_signo == SIGHUP && getsid(0) == getpid())
		return 0;
	return getpgid(child) == getpgrp();
}

static void finish_json(int status, int command_status)
{
	FILE *f = out;
	fputs("{\n  \"version\": 1,\n  \"command\": [", f);
	for (char **a = command_argv; *a; a++) {
		if (a != command_argv)
			fputs(", ", f);
		fmt_json_string(f, *a);
	}
	fputc(']', f);
	fprintf(f, ",\n  \"exit_status\": %d,\n  \"command_status\": ", status);
	if (WIFEXITED(command_status))
		fprintf(f, "{\"exit_code\": %d, \"signal\": null}", WEXITSTATUS(command_status));
	else
		fprintf(f, "{\"exit_code\": null, \"signal\": %d}", WTERMSIG(command_status));
	fprintf(f, ",\n  \"leak_check\": %s,\n  \"processes\": [", opt.leak_check ? "true" : "false");
	fclose(json);
	if (json_len)
		fprintf(f, "\n    %s\n  ", json_buf);
	free(json_buf);
	fprintf(f, "],\n  \"summary\": {\"processes\": %u, \"crashed\": %u, \"leaks\": %" PRIu64
		", \"lost_bytes\": %" PRIu64 ", \"lost_blocks\": %" PRIu64 ", \"suppressed_leaks\": %" PRIu64
		", \"suppressed_bytes\": %" PRIu64 ", \"suppressed_blocks\": %" PRIu64
		", \"reachable_bytes\": %" PRIu64 ", \"reachable_blocks\": %" PRIu64 "}\n}\n",
		nprocesses, ncrashed, leaks, lost_bytes, lost_blocks, supp_leaks, supp_bytes, supp_blocks,
		reach_bytes, reach_blocks);
}

int main(int argc, char **argv)
{
	enum parse_result pr = parse(argc, argv);
	if (pr != PARSE_OK)
		options_finish(pr, prog, usage, EXIT_FAILED, EXIT_FAILED);
	for (size_t i = 0; i < opt.nsuppressions; i++)
		load_suppressions(opt.suppressions[i]);
	char *shim = find_shim();
	if ((heap_dir = scan_open_dir(opt.dir)) < 0)
		die(EXIT_FAILED, "%s: %s", opt.dir, scan_dir_error(errno));
	out = stderr;
	if (opt.output && !(out = fopen(opt.output, "we")))
		die(EXIT_FAILED, "%s: %s", opt.output, strerror(errno));
	if (opt.json && !(json = open_memstream(&json_buf, &json_len)))
		die(EXIT_FAILED, "%s", strerror(ENOMEM));

	set_preload(shim);
	free(shim);
	/* The folder as we were given it: the shim's, when it serves our own
	 * allocations (its heap is ours to remove if we die of a signal). */
	const char *given = getenv("RH_SHM_DIR");
	if (!(given_dir = strdup(given && *given ? given : "/dev/shm")))
		die(EXIT_FAILED, "%s", strerror(ENOMEM));
	/* Absolute: COMMAND may change its working folder. */
	char *abs_dir = realpath(opt.dir, NULL);
	set_env("RH_SHM_DIR", abs_dir ? abs_dir : opt.dir);
	free(abs_dir);
	if (opt.leak_check) {
		/* Every allocation from the heap, or leaks go unseen: the heap
		 * is turned on, a size threshold dropped. */
		set_env("RH_SHMALLOC", "enable");
		if (unsetenv("RH_SHMALLOC_MIN_SIZE") != 0)
			die(EXIT_FAILED, "RH_SHMALLOC_MIN_SIZE: %s", strerror(errno));
		set_env("RH_SHMALLOC_KEEP", "1");
		set_env("RH_SHMALLOC_LEAK_SCAN", "1");
	}
	struct stat ns;
	if (stat("/proc/self/ns/pid", &ns) == 0)
		pid_ns = (uint64_t)ns.st_ino;
	open_socket();
	/* Orphans of the tree are reparented to us, so we can reap them and
	 * see how they died (prctl(2), PR_SET_CHILD_SUBREAPER). */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		die(EXIT_FAILED, "prctl: %s", strerror(errno));
	/* The tree is known by /proc: one of another PID namespace names
	 * other processes. */
	char selfpid[32];
	ssize_t sn = readlink("/proc/self", selfpid, sizeof(selfpid) - 1);
	if (sn > 0 && (selfpid[sn] = 0, atoi(selfpid) != (int)getpid()))
		fprintf(stderr, "%s: /proc is another PID namespace's: crashes in the tree cannot be "
			"seen (mount /proc for this namespace, as unshare --mount-proc does)\n", prog);

	/* A closed report stream must not kill us before the heaps are
	 * cleaned up (the child gets SIGPIPE back before exec). SIGCHLD
	 * ignored by whoever started us would have the kernel reap COMMAND
	 * unseen: we would wait for it for ever. */
	struct sigaction ign = { .sa_handler = SIG_IGN }, dfl = { .sa_handler = SIG_DFL };
	sigaction(SIGPIPE, &ign, &given_pipe);
	sigaction(SIGCHLD, &dfl, &given_chld);
	sigset_t mask, old;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaddset(&mask, forwarded[i]);
	sigprocmask(SIG_BLOCK, &mask, &old);
	int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		die(EXIT_FAILED, "signalfd: %s", strerror(errno));
	command_argv = argv + opt.first_arg;
	start(command_argv, &old);

	int command_status = 0, done = 0, stop_signal = 0;
	uint64_t last_sweep = now_ms();
	while (!done) {
		struct pollfd fds[2] = { { sigfd, POLLIN, 0 }, { sock, POLLIN, 0 } };
		int n = poll(fds, 2, 1000);
		if (n < 0 && errno != EINTR)
			die(EXIT_FAILED, "poll: %s", strerror(errno));
		/* Every second, busy or not: heaps of processes whose parents
		 * reaped them. */
		if (now_ms() - last_sweep >= 1000) {
			sweep();
			last_sweep = now_ms();
		}
		if (n <= 0)
			continue;
		if (fds[1].revents)
			drain_socket();
		struct signalfd_siginfo si;
		while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
			int sig = (int)si.ssi_signo;
			if (sig == SIGCHLD)
				continue;
			if (command_reaped) {
				/* --wait-all, COMMAND gone: its pid may be another
				 * process's now. A signal to end ends the wait. */
				if (sig != SIGUSR1 && sig != SIGUSR2)
					stop_signal = sig;
				continue;
			}
			if (!received_too(&si))
				kill(child, sig);
		}
		done = reap(&command_status) || stop_signal;
	}
	/* A signal that ended --wait-all (Ctrl-C) reached the tree too:
	 * descendants that die of it a moment later are seen. As PID 1 of a
	 * namespace, the processes left would be killed by the kernel when we
	 * exit, unseen: they are asked to end, then made to, and reaped. */
	if (stop_signal)
		settle(&command_status, 500);
	if (getpid() == 1) {
		kill(-1, SIGTERM);
		if (!settle(&command_status, 1000)) {
			kill(-1, SIGKILL);
			settle(&command_status, 1000);
		}
	}
	/* Descendants that died with COMMAND, and heaps of processes their own
	 * parents reaped. Processes still running are left alone. */
	reap(&command_status);
	sweep();
	symbolizer_free(run_sym);
	run_sym = NULL;

	int status = WIFEXITED(command_status) ? WEXITSTATUS(command_status) : 128 + WTERMSIG(command_status);
	if (stop_signal)
		status = 128 + stop_signal;
	if (opt.leak_check && lost_blocks && opt.error_exitcode)
		status = opt.error_exitcode;
	if (opt.leak_check && !nprocesses)
		fprintf(stderr, "%s: no process was checked for leaks: none made a heap (a static "
			"program, one that never allocated, or a folder where no heap could be made)\n", prog);
	if (opt.json) {
		finish_json(status, command_status);
	} else if (opt.leak_check) {
		fprintf(out, "%s: leak summary: %" PRIu64 " bytes lost in %" PRIu64 " block%s (%" PRIu64
			" leak%s) in %u of %u process%s", prog, lost_bytes, lost_blocks, plural(lost_blocks),
			leaks, plural(leaks), nleaky, nprocesses, nprocesses == 1 ? "" : "es");
		if (supp_leaks)
			fprintf(out, "; suppressed %" PRIu64 " leak%s, %" PRIu64 " bytes in %" PRIu64 " block%s",
				supp_leaks, plural(supp_leaks), supp_bytes, supp_blocks, plural(supp_blocks));
		fprintf(out, "; %" PRIu64 " bytes still reachable in %" PRIu64 " block%s\n",
			reach_bytes, reach_blocks, plural(reach_blocks));
	}
	errno = 0; /* what the flush finds, not an earlier call's */
	if (fflush(out) != 0 || ferror(out) || (out != stderr && fclose(out) != 0)) {
		fprintf(stderr, "%s: write error: %s\n", prog, strerror(errno ? errno : EIO));
		if (!status)
			status = EXIT_FAILED;
	}
	/* COMMAND died of a signal, or one ended --wait-all: so do we (without
	 * a core dump of our own), so that a shell's loop stops on Ctrl-C as
	 * it would without us. Not when the shim serves our own allocations
	 * (a launcher under another): a death by a signal would leave our heap.
	 * 128+N when the signal does not end us. */
	int sig = stop_signal ? stop_signal : WIFEXITED(command_status) ? 0 : WTERMSIG(command_status);
	if (sig && status == 128 + sig) {
		/* Under the shim ourselves (a launcher under another): our own
		 * heap goes first, as a normal exit would remove it. */
		const char *(*heap_name)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "rh_shm_heap_name");
		const char *name = heap_name ? heap_name() : NULL;
		char path[PATH_MAX];
		int n = name && *name ? snprintf(path, sizeof(path), "%s/%s", given_dir, name) : -1;
		if (n > 0 && (size_t)n < sizeof(path))
			unlink(path);
		die_of(sig);
	}
	return status;
}
