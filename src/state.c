/* state.c: the phanes.state primitives: the lock that keeps two phanes
 * runs from changing one machine at the same time, and the reads and
 * writes of the state file.
 *
 * Root must not follow what others planted: the lock, the state file and
 * its temp file are opened with O_NOFOLLOW, relative to their directory,
 * which is reached one component at a time. A symlink on the way is
 * followed only when root (or we) own it and only root (or we) can write
 * where it lies.
 * In a directory someone other than root (or us) can write, a symlink or a
 * file of another owner is refused with its path and owner, and nothing is
 * written. (file.c has the general helper; this one is kept small and
 * local so the state does not depend on it.) */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "exec.h"

#define LOCK_MT "phanes.state.lock"
#define POLL_NS (50 * 1000 * 1000)
#define MSG (PATH_MAX + 512)

/* Created closed (fd -1), so __gc always finds a consistent object. */
struct lock {
	int fd;
	int watch;        /* our end of the watchdog's socket, -1 when none */
	pid_t watchdog;   /* > 0 until reaped */
};

/* ---- safe opening: a checked directory, then a name in it ---- */

struct where {
	int dir;          /* O_PATH descriptor of the parent, -1 when closed */
	int trusted;      /* only root (or we) can write the parent */
	char name[NAME_MAX + 1];
	char msg[MSG];    /* the reason, when a function returns -1 */
	int err;          /* errno behind msg, 0 when refused by a check */
};

static void owner_name(uid_t uid, char *buf, size_t n)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];
	if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) == 0 && res)
		snprintf(buf, n, "%s (uid %u)", res->pw_name, (unsigned)uid);
	else
		snprintf(buf, n, "uid %u", (unsigned)uid);
}

static int ours(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/* Only root or we can add, remove or replace names in it. */
static int dir_trusted(const struct stat *st)
{
	if (!ours(st->st_uid) || (st->st_mode & S_IWOTH))
		return 0;
	return !(st->st_mode & S_IWGRP) || st->st_gid == 0;
}

static int fail_errno(struct where *w, const char *path, int e)
{
	w->err = e;
	snprintf(w->msg, sizeof w->msg, "%s: %s", path, strerror(e));
	return -1;
}

static int refuse(struct where *w, const char *path, const char *what, uid_t uid)
{
	char owner[128];
	owner_name(uid, owner, sizeof owner);
	w->err = 0;
	snprintf(w->msg, sizeof w->msg, "%s: refusing: %s owned by %s in a directory writable by "
		 "someone other than root; remove it, or give a path in a root-only directory",
		 path, what, owner);
	return -1;
}

/* One component in w->dir: the next directory's descriptor, or -1. */
static int step(struct where *w, const char *prefix, const char *comp, struct stat *dst)
{
	struct stat st;
	if (fstatat(w->dir, comp, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return fail_errno(w, prefix, errno);
	int flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
	if (S_ISLNK(st.st_mode)) {
		if (!w->trusted || !ours(st.st_uid))
			return refuse(w, prefix, "a symlink", st.st_uid);
	} else {
		flags |= O_NOFOLLOW;
	}
	int fd = openat(w->dir, comp, flags);
	if (fd < 0)
		return fail_errno(w, prefix, errno);
	if (fstat(fd, dst) < 0) {
		int e = errno;
		close(fd);
		return fail_errno(w, prefix, e);
	}
	return fd;
}

/* Opens path's parent directory into w (w->dir >= 0 on success) and keeps
 * the last component in w->name. Returns 0, or -1 with w->msg. */
static int open_parent(const char *path, struct where *w)
{
	char buf[PATH_MAX];
	w->dir = -1;
	w->err = 0;
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof buf)
		return fail_errno(w, path[0] ? path : "(empty path)", ENAMETOOLONG);
	memcpy(buf, path, len + 1);
	char *slash = strrchr(buf, '/');
	const char *last = slash ? slash + 1 : buf;
	if (!*last || strcmp(last, ".") == 0 || strcmp(last, "..") == 0 || strlen(last) > NAME_MAX)
		return fail_errno(w, path, EISDIR);
	strcpy(w->name, last);
	const char *start = buf[0] == '/' ? "/" : ".";
	w->dir = open(start, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (w->dir < 0 || fstat(w->dir, &st) < 0)
		return fail_errno(w, start, errno);
	w->trusted = dir_trusted(&st);
	if (!slash)
		return 0;
	*slash = '\0';
	char *save = NULL;
	for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		char prefix[PATH_MAX];
		snprintf(prefix, sizeof prefix, "%.*s", (int)(c - buf + strlen(c)), path);
		int fd = step(w, prefix, c, &st);
		if (fd < 0)
			goto fail;
		close(w->dir);
		w->dir = fd;
		w->trusted = dir_trusted(&st);
	}
	return 0;
fail:
	close(w->dir);
	w->dir = -1;
	return -1;
}

static void close_where(struct where *w)
{
	if (w->dir >= 0)
		close(w->dir);
	w->dir = -1;
}

/* What is at w->name (not followed) may be used: 0 (also when absent:
 * *exists = 0), or -1 with w->msg. */
static int check_name(struct where *w, const char *path, int *exists)
{
	struct stat st;
	*exists = 0;
	if (fstatat(w->dir, w->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : fail_errno(w, path, errno);
	*exists = 1;
	if (S_ISLNK(st.st_mode))
		return refuse(w, path, "a symlink", st.st_uid);
	return 0;
}

/* The opened file is what it should be: a regular file, one link, and of
 * root's or our own in a directory others can write. 0 or -1 with msg. */
static int check_fd(struct where *w, const char *path, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return fail_errno(w, path, errno);
	if (!S_ISREG(st.st_mode)) {
		w->err = 0;
		snprintf(w->msg, sizeof w->msg, "%s: refusing: not a regular file", path);
		return -1;
	}
	if (!w->trusted && !ours(st.st_uid))
		return refuse(w, path, "a file", st.st_uid);
	if (!w->trusted && st.st_nlink > 1) {
		w->err = 0;
		snprintf(w->msg, sizeof w->msg, "%s: refusing: a file with %lu hard links in a directory "
			 "writable by someone other than root", path, (unsigned long)st.st_nlink);
		return -1;
	}
	return 0;
}

/* Opens w->name in w->dir without following a link, then checks it. */
static int open_checked(struct where *w, const char *path, int flags, mode_t mode)
{
	int exists;
	if (check_name(w, path, &exists) < 0)
		return -1;
	int fd = openat(w->dir, w->name, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode);
	if (fd < 0) {
		int e = errno;
		if (e == ELOOP) /* a link planted since the check */
			return check_name(w, path, &exists) < 0 ? -1 : fail_errno(w, path, e);
		return fail_errno(w, path, e);
	}
	if (check_fd(w, path, fd) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Pushes nil, w->msg, code and returns 3: code "missing", "unsafe" (a
 * check refused) or "io". */
static int push_where_fail(lua_State *L, const struct where *w)
{
	luaL_pushfail(L);
	lua_pushstring(L, w->msg);
	lua_pushstring(L, w->err == ENOENT ? "missing" : w->err == 0 ? "unsafe" : "io");
	return 3;
}

/* ---- the lock ---- */

/* ---- the watchdog: the lock outlives phanes until its children are gone ----
 *
 * Forked when the lock is taken, it shares the lock's open file (so the
 * flock stays held while it lives) and keeps nothing else. exec.c tells it
 * each child's process group as it starts and ends. When phanes goes,
 * SIGKILL included, its end of the socket closes: the watchdog kills the
 * groups still running, waits (up to WATCH_GRACE s) until they are gone,
 * and exits, which lets the lock go. So a next run never meets a half-done
 * command of the last one, and nothing it started runs on. */

#define WATCH_MAX 256
#define WATCH_GRACE 5.0

static double now(void);

/* close_range(a, b), nothing when a > b; -1 when the kernel lacks it. */
static int close_span(unsigned a, unsigned b)
{
	if (a > b)
		return 0;
#ifdef SYS_close_range
	return (int)syscall(SYS_close_range, a, b, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

static void close_others(int keep1, int keep2)
{
	unsigned lo = (unsigned)(keep1 < keep2 ? keep1 : keep2), hi = (unsigned)(keep1 < keep2 ? keep2 : keep1);
	if (close_span(3, lo - 1) == 0 && close_span(lo + 1, hi - 1) == 0 && close_span(hi + 1, ~0U) == 0)
		return;
	for (int fd = 3; fd < 4096; fd++) /* kernels before 5.9 */
		if (fd != keep1 && fd != keep2)
			close(fd);
}

static void quiet_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);
	for (int i = 0; i < 3 && fd >= 0; i++)
		dup2(fd, i);
	if (fd > 2)
		close(fd);
}

static int groups_alive(const pid_t *g, int n)
{
	int alive = 0;
	for (int i = 0; i < n; i++)
		if (g[i] > 0 && kill(-g[i], 0) == 0)
			alive++;
	return alive;
}

static void add_group(pid_t *g, int *n, int v)
{
	if (v > 0) {
		if (*n < WATCH_MAX)
			g[(*n)++] = v;
		return;
	}
	for (int i = 0; i < *n; i++)
		if (g[i] == -v) {
			g[i] = g[--*n];
			return;
		}
}

static void watchdog(int lockfd, int sock)
{
	setsid(); /* no terminal's Ctrl-C or hangup reaches it */
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		signal(sigs[i], SIG_IGN);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	close_others(lockfd, sock);
	quiet_stdio();
	pid_t groups[WATCH_MAX];
	int n = 0, msg;
	for (;;) {
		ssize_t got = recv(sock, &msg, sizeof msg, MSG_WAITALL);
		if (got < 0 && errno == EINTR)
			continue;
		if (got != (ssize_t)sizeof msg)
			break; /* phanes is gone (or let go of the lock) */
		add_group(groups, &n, msg);
	}
	for (int i = 0; i < n; i++)
		kill(-groups[i], SIGKILL);
	double until = now() + WATCH_GRACE;
	while (groups_alive(groups, n) && now() < until) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	_exit(0);
}

/* Starts the watchdog for l; without one (fork failed) the children still
 * die with phanes (exec.c), only grandchildren may not. */
static void start_watchdog(struct lock *l)
{
	int sv[2];
	if (phanes_exec_watching() >= 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return; /* a second lock in one process: the first one watches */
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		watchdog(l->fd, sv[1]);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return;
	}
	l->watch = sv[0];
	l->watchdog = pid;
	phanes_exec_watch(sv[0]);
}

static void stop_watchdog(struct lock *l)
{
	if (l->watch >= 0) {
		if (phanes_exec_watching() == l->watch)
			phanes_exec_watch(-1);
		close(l->watch); /* the watchdog sees the end and exits */
		l->watch = -1;
	}
	if (l->watchdog > 0) {
		while (waitpid(l->watchdog, NULL, 0) < 0 && errno == EINTR)
			;
		l->watchdog = 0;
	}
}

static int lock_release(lua_State *L)
{
	struct lock *l = luaL_checkudata(L, 1, LOCK_MT);
	if (l->fd >= 0)
		close(l->fd); /* with the watchdog's, the last descriptor: drops the flock */
	l->fd = -1;
	stop_watchdog(l);
	return 0;
}

/* lock:unlock() -> true (also when already unlocked) */
static int l_unlock(lua_State *L)
{
	lock_release(L);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_tostring(lua_State *L)
{
	struct lock *l = luaL_checkudata(L, 1, LOCK_MT);
	lua_pushstring(L, l->fd >= 0 ? "phanes.state.lock (held)" : "phanes.state.lock (released)");
	return 1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Try, then (when waiting) retry every 50 ms until the deadline. Returns 0
 * when locked, else an errno (EWOULDBLOCK: held elsewhere, EINTR: a trapped
 * signal arrived while waiting). */
static int acquire(int fd, int wait, double timeout)
{
	double until = now() + timeout;
	int seen = phanes_signals_seen();
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return errno;
		if (!wait || (timeout > 0 && now() >= until))
			return EWOULDBLOCK;
		if (phanes_signals_seen() != seen)
			return EINTR;
		struct timespec ts = {0, POLL_NS};
		nanosleep(&ts, NULL);
	}
}

/* The holder's pid as it wrote it, 0 when unreadable. */
static long holder(int fd)
{
	char buf[24];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *end;
	long pid = strtol(buf, &end, 10);
	return pid > 0 && end != buf ? pid : 0;
}

/* Our pid in place (same inode: the flock stays valid), padded to a fixed
 * width instead of truncating: on ext4 a truncate-and-rewrite makes close()
 * start writeback (auto_da_alloc), 5-80 ms on a busy disk. The file is only
 * ever one we created or checked above, never a link. */
static void write_pid(int fd)
{
	char buf[16];
	int n = snprintf(buf, sizeof buf, "%-10ld\n", (long)getpid());
	if (pwrite(fd, buf, (size_t)n, 0) != n)
		return; /* only a hint for the next run's message */
}

static void lock_opts(lua_State *L, int *wait, double *timeout)
{
	if (lua_isnoneornil(L, 2))
		return;
	luaL_checktype(L, 2, LUA_TTABLE);
	int t = lua_getfield(L, 2, "wait");
	luaL_argcheck(L, t == LUA_TNIL || t == LUA_TBOOLEAN, 2, "opts.wait must be a boolean");
	*wait = lua_toboolean(L, -1);
	int wait_given = t != LUA_TNIL;
	t = lua_getfield(L, 2, "timeout");
	luaL_argcheck(L, t == LUA_TNIL || (t == LUA_TNUMBER && lua_tonumber(L, -1) >= 0), 2,
		      "opts.timeout must be seconds >= 0");
	*timeout = lua_tonumber(L, -1);
	if (t != LUA_TNIL && !wait_given)
		*wait = 1; /* {timeout = 5} means wait up to 5 s */
	lua_pop(L, 2);
}

/* state.lock(path[, {wait = false, timeout = s}]) -> lock | nil, err, code
 * code: "locked", "unsafe" (a planted link or foreign file), "io",
 * "missing" (no parent directory), "interrupted". Without wait, a held lock
 * is refused at once; with wait, retried until timeout (forever when none),
 * or until a trapped signal arrives. */
static int l_lock(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int wait = 0;
	double timeout = 0;
	lock_opts(L, &wait, &timeout);
	struct lock *l = lua_newuserdatauv(L, sizeof *l, 0);
	l->fd = -1;
	l->watch = -1;
	l->watchdog = 0;
	luaL_setmetatable(L, LOCK_MT);
	struct where w;
	if (open_parent(path, &w) < 0)
		return push_where_fail(L, &w);
	int fd = open_checked(&w, path, O_RDWR | O_CREAT, 0600);
	close_where(&w);
	if (fd < 0)
		return push_where_fail(L, &w);
	l->fd = fd; /* from here __gc closes it, whatever happens */
	int e = acquire(fd, wait, timeout);
	if (e == 0) {
		write_pid(fd);
		start_watchdog(l);
		return 1;
	}
	long pid = e == EWOULDBLOCK ? holder(fd) : 0;
	close(fd);
	l->fd = -1;
	luaL_pushfail(L);
	if (e == EWOULDBLOCK && pid)
		lua_pushfstring(L, "%s: locked by another phanes run (pid %d)", path, (int)pid);
	else if (e == EWOULDBLOCK)
		lua_pushfstring(L, "%s: locked by another phanes run", path);
	else if (e == EINTR)
		lua_pushfstring(L, "%s: interrupted while waiting for the lock", path);
	else
		lua_pushfstring(L, "%s: %s", path, strerror(e));
	lua_pushstring(L, e == EWOULDBLOCK ? "locked" : e == EINTR ? "interrupted" : "io");
	return 3;
}

/* ---- the state file ---- */

struct text {
	char *p;
	size_t len;
};

static int read_all(struct where *w, const char *path, int fd, struct text *t)
{
	size_t cap = 8192;
	t->p = malloc(cap);
	t->len = 0;
	if (!t->p)
		return fail_errno(w, path, ENOMEM);
	for (;;) {
		if (t->len == cap) {
			char *p = cap < (SIZE_MAX / 2) ? realloc(t->p, cap * 2) : NULL;
			if (!p)
				return fail_errno(w, path, ENOMEM);
			t->p = p;
			cap *= 2;
		}
		ssize_t n = read(fd, t->p + t->len, cap - t->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail_errno(w, path, errno);
		if (n == 0)
			return 0;
		t->len += (size_t)n;
	}
}

/* state.read(path) -> text | nil, err, code ("missing", "unsafe", "io") */
static int l_read(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct where w;
	if (open_parent(path, &w) < 0)
		return push_where_fail(L, &w);
	int fd = open_checked(&w, path, O_RDONLY, 0);
	close_where(&w);
	if (fd < 0)
		return push_where_fail(L, &w);
	struct text t = {NULL, 0};
	int rc = read_all(&w, path, fd, &t);
	close(fd);
	if (rc == 0)
		lua_pushlstring(L, t.p, t.len); /* may raise ENOMEM: free first */
	free(t.p);
	if (rc < 0)
		return push_where_fail(L, &w);
	return 1;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A new temp file next to the target: ".NAME.XXXXXXXX", O_EXCL, never a
 * link. Returns its fd (name in tmp) or -1 with errno. */
static int create_temp(struct where *w, char *tmp, size_t n)
{
	for (int i = 0; i < 100; i++) {
		unsigned int r;
		if (getrandom(&r, sizeof r, 0) != sizeof r)
			r = (unsigned int)getpid() * 2654435761u + (unsigned int)i;
		if ((size_t)snprintf(tmp, n, ".%.200s.%08x", w->name, r) >= n) {
			errno = ENAMETOOLONG;
			return -1;
		}
		int fd = openat(w->dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	return -1;
}

/* Write, mode, fsync, rename over the name, fsync the directory. */
static int replace(struct where *w, const char *path, const char *p, size_t len, mode_t mode)
{
	char tmp[NAME_MAX + 1];
	int fd = create_temp(w, tmp, sizeof tmp);
	if (fd < 0)
		return fail_errno(w, path, errno);
	int ok = write_all(fd, p, len) == 0 && fchmod(fd, mode) == 0 && fsync(fd) == 0;
	int e = errno;
	if (close(fd) < 0 && ok)
		ok = 0, e = errno;
	if (ok && renameat(w->dir, tmp, w->dir, w->name) < 0)
		ok = 0, e = errno;
	if (!ok) {
		unlinkat(w->dir, tmp, 0);
		return fail_errno(w, path, e);
	}
	int d = openat(w->dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d >= 0) {
		fsync(d); /* the rename is durable; EINVAL on some file systems */
		close(d);
	}
	return 0;
}

/* state.write(path, text[, mode = 0644]) -> true | nil, err, code
 * Atomic: a temp file in the same checked directory renamed over path. A
 * symlink at path is refused (nothing written), so is a file of another
 * owner where someone other than root can write. */
static int l_write(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t len;
	const char *text = luaL_checklstring(L, 2, &len);
	mode_t mode = (mode_t)luaL_optinteger(L, 3, 0644) & 07777;
	struct where w;
	if (open_parent(path, &w) < 0)
		return push_where_fail(L, &w);
	int exists, rc = check_name(&w, path, &exists);
	if (rc == 0 && exists) {
		int fd = open_checked(&w, path, O_RDONLY, 0);
		rc = fd < 0 ? -1 : 0;
		if (fd >= 0)
			close(fd);
	}
	if (rc == 0)
		rc = replace(&w, path, text, len, mode);
	close_where(&w);
	if (rc < 0)
		return push_where_fail(L, &w);
	lua_pushboolean(L, 1);
	return 1;
}

/* Renames name to aside in dir, failing with EEXIST rather than replacing
 * anything: renameat2(RENAME_NOREPLACE), or where the file system lacks it,
 * link then unlink. 0 or -1 with errno. */
static int move_new(int dir, const char *name, const char *aside)
{
	if (renameat2(dir, name, dir, aside, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (linkat(dir, name, dir, aside, 0) < 0)
		return -1;
	return unlinkat(dir, name, 0);
}

/* state.set_aside(path, suffix) -> new path | nil, err, code
 * Moves path to path .. suffix (then -2, -3, ...: a name that does not
 * exist yet, never replacing one). */
static int l_set_aside(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const char *suffix = luaL_checkstring(L, 2);
	luaL_argcheck(L, !strchr(suffix, '/'), 2, "suffix must not contain /");
	struct where w;
	if (open_parent(path, &w) < 0)
		return push_where_fail(L, &w);
	int exists, rc = check_name(&w, path, &exists);
	if (rc == 0 && !exists)
		rc = fail_errno(&w, path, ENOENT);
	char aside[NAME_MAX + 1];
	for (int n = 1; rc == 0; n++) {
		int len = n == 1 ? snprintf(aside, sizeof aside, "%s%s", w.name, suffix)
				 : snprintf(aside, sizeof aside, "%s%s-%d", w.name, suffix, n);
		if (len < 0 || (size_t)len >= sizeof aside || n > 1000)
			rc = fail_errno(&w, path, n > 1000 ? EEXIST : ENAMETOOLONG);
		else if (move_new(w.dir, w.name, aside) == 0)
			break;
		else if (errno != EEXIST)
			rc = fail_errno(&w, path, errno);
	}
	close_where(&w);
	if (rc < 0)
		return push_where_fail(L, &w);
	const char *slash = strrchr(path, '/');
	lua_pushlstring(L, path, slash ? (size_t)(slash - path + 1) : 0);
	lua_pushstring(L, aside);
	lua_concat(L, 2);
	return 1;
}

int luaopen_phanes_state(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"unlock", l_unlock},
		{NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"lock", l_lock},
		{"read", l_read},
		{"write", l_write},
		{"set_aside", l_set_aside},
		{NULL, NULL},
	};
	if (luaL_newmetatable(L, LOCK_MT)) {
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, lock_release);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, lock_release);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, l_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
