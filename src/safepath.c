/* safepath.c: the path walk of safepath.h (the rule is described there and
 * in doc/internals.md). Costs one openat and one fstat per component; no
 * process, no realpath(). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "safepath.h"

#define SP_MAXLINKS 40

static int trusted_uid(uid_t u)
{
	return u == 0 || u == geteuid();
}

int sp_dir_trusted(const struct stat *d)
{
	return trusted_uid(d->st_uid) && !(d->st_mode & (S_IWGRP | S_IWOTH));
}

static const char *uid_name(uid_t uid, char *buf, size_t size)
{
	struct passwd *pw = getpwuid(uid);
	if (pw)
		snprintf(buf, size, "%s", pw->pw_name);
	else
		snprintf(buf, size, "uid %ld", (long)uid);
	return buf;
}

/* Who besides root can change entries of d, e.g. "deploy", "every user". */
static void writers(const struct stat *d, char *buf, size_t size)
{
	char u[64] = "", g[80] = "";
	if (!trusted_uid(d->st_uid))
		uid_name(d->st_uid, u, sizeof u);
	if (d->st_mode & S_IWOTH) {
		snprintf(g, sizeof g, "every user");
	} else if (d->st_mode & S_IWGRP) {
		struct group *gr = getgrgid(d->st_gid);
		if (gr)
			snprintf(g, sizeof g, "group %s", gr->gr_name);
		else
			snprintf(g, sizeof g, "group %ld", (long)d->st_gid);
	}
	snprintf(buf, size, "%s%s%s", u, *u && *g ? " and " : "", g);
}

/* The directory part of shown (the entry's path), for messages. */
static void dir_part(const char *shown, char *buf, size_t size)
{
	const char *slash = strrchr(shown, '/');
	if (slash == NULL)
		snprintf(buf, size, ".");
	else if (slash == shown)
		snprintf(buf, size, "/");
	else
		snprintf(buf, size, "%.*s", (int)(slash - shown), shown);
}

static int refuse(char *msg, size_t msize, const char *shown, const struct stat *d, const char *what,
		  const char *advice)
{
	char w[160], dir[PATH_MAX];
	writers(d, w, sizeof w);
	dir_part(shown, dir, sizeof dir);
	snprintf(msg, msize, "%s: %s, in %s, a directory %s can write: phanes refuses to follow or change it "
		 "as root (%s)", shown, what, dir, w, advice);
	errno = EPERM;
	return -1;
}

/* The checks of an entry st named shown in directory d (see safepath.h);
 * names are looked up only for a refusal. */
static int check(const struct stat *d, const struct stat *st, const char *shown, int inode,
		 char *msg, size_t msize)
{
	char u[64], what[128];
	if (sp_dir_trusted(d))
		return 0;
	int link = S_ISLNK(st->st_mode);
	int foreign = !trusted_uid(st->st_uid) && st->st_uid != d->st_uid;
	int hard = inode && S_ISREG(st->st_mode) && st->st_nlink > 1;
	if (!link && !foreign && !hard)
		return 0;
	uid_name(st->st_uid, u, sizeof u);
	if (link) {
		snprintf(what, sizeof what, "a symlink owned by %s", u);
		return refuse(msg, msize, shown, d, what, "remove the link");
	}
	if (foreign) {
		snprintf(what, sizeof what, "owned by %s", u);
		return refuse(msg, msize, shown, d, what, "remove it or give it to the directory's owner");
	}
	snprintf(what, sizeof what, "a file owned by %s with %ld hard links", u, (long)st->st_nlink);
	return refuse(msg, msize, shown, d, what, "one may be a planted link to another file; remove it");
}

int sp_check_entry(const struct sp_at *at, char *msg, size_t msize)
{
	return at->exists ? check(&at->dir, &at->st, at->shown, 1, msg, msize) : 0;
}

/* The walk's state: the directory reached, its path, what is left. */
struct walk {
	int fd;
	struct stat dir;
	char shown[PATH_MAX];
	char rest[PATH_MAX];
	int links;
	const char *path; /* as given, for plain errors */
};

static int fail(struct walk *w, char *msg, size_t msize)
{
	int e = errno;
	snprintf(msg, msize, "%s: %s", w->path, strerror(e));
	errno = e;
	return -1;
}

/* Moves w to the directory fd (taken over), shown being its path; st is
 * its stat when known (else NULL). */
static int enter(struct walk *w, int fd, const struct stat *st, const char *shown, char *msg, size_t msize)
{
	if (fd < 0)
		return fail(w, msg, msize);
	if (st)
		w->dir = *st;
	else if (fstat(fd, &w->dir) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return fail(w, msg, msize);
	}
	if (w->fd >= 0)
		close(w->fd);
	w->fd = fd;
	if (shown != w->shown)
		snprintf(w->shown, sizeof w->shown, "%s", shown);
	return 0;
}

static int start(struct walk *w, const char *from, char *msg, size_t msize)
{
	int abs = from[0] == '/';
	return enter(w, open(abs ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC), NULL, abs ? "" : ".", msg, msize);
}

/* shown + "/" + name into out ("./x" printed as "x"); it is only shown, so
 * a path too long is cut with "...". */
static void join(char *out, size_t size, const char *shown, const char *name)
{
	int dot = !strcmp(shown, ".");
	if (snprintf(out, size, "%s%s%s", dot ? "" : shown, dot ? "" : "/", name) >= (int)size)
		memcpy(out + size - 4, "...", 4);
}

/* The link (fd, an O_PATH descriptor) replaces the walked component: rest
 * becomes target + "/" + after, restarting at / for an absolute target. */
static int follow(struct walk *w, int fd, const char *after, char *msg, size_t msize)
{
	char target[PATH_MAX], next[PATH_MAX];
	if (++w->links > SP_MAXLINKS) {
		errno = ELOOP;
		return fail(w, msg, msize);
	}
	ssize_t n = readlinkat(fd, "", target, sizeof target - 1);
	if (n < 0)
		return fail(w, msg, msize);
	target[n] = '\0';
	if (snprintf(next, sizeof next, "%s%s%s", target, *after ? "/" : "", after) >= (int)sizeof next) {
		errno = ENAMETOOLONG;
		return fail(w, msg, msize);
	}
	memcpy(w->rest, next, sizeof next);
	return target[0] == '/' ? start(w, target, msg, msize) : 0;
}

/* Opens (creating it when asked) the directory name in w; 0, 1 when it was
 * a link that has been followed, or -1. A directory made here gets 0755
 * exactly, once it is known to be the one made. */
static int step(struct walk *w, const char *name, const char *after, int flags, char *msg, size_t msize)
{
	char shown[PATH_MAX];
	join(shown, sizeof shown, w->shown, name);
	int made = 0, fd = openat(w->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && (flags & SP_MKDIRS)) {
		made = mkdirat(w->fd, name, 0755) == 0;
		if (!made && errno != EEXIST)
			return fail(w, msg, msize);
		fd = openat(w->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0)
		return fail(w, msg, msize);
	struct stat st;
	int r = fstat(fd, &st) < 0 ? fail(w, msg, msize) : check(&w->dir, &st, shown, 0, msg, msize);
	if (r == 0 && S_ISLNK(st.st_mode))
		r = follow(w, fd, after, msg, msize) < 0 ? -1 : 1;
	else if (r == 0 && !S_ISDIR(st.st_mode))
		errno = ENOTDIR, r = fail(w, msg, msize);
	else if (r == 0 && made && st.st_uid == geteuid() && sp_fchmod_path(fd, 0755) < 0)
		r = fail(w, msg, msize);
	if (r != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return r;
	}
	return enter(w, fd, &st, shown, msg, msize);
}

/* The next component of w->rest into name; *after points past it. 0 when
 * there is none, -1 when too long. */
static int next_name(struct walk *w, size_t *off, char *name, const char **after)
{
	const char *p = w->rest + *off;
	while (*p == '/')
		p++;
	if (*p == '\0')
		return 0;
	size_t len = strcspn(p, "/");
	if (len > NAME_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(name, p, len);
	name[len] = '\0';
	p += len;
	while (*p == '/')
		p++;
	*after = p;
	*off = (size_t)(p - w->rest);
	return 1;
}

/* The last component: a trusted link is followed when asked (1 returned). */
static int last(struct walk *w, struct sp_at *at, const char *name, int flags, char *msg, size_t msize)
{
	join(at->shown, sizeof at->shown, w->shown, name);
	at->exists = 0;
	if (fstatat(w->fd, name, &at->st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : fail(w, msg, msize);
	at->exists = 1;
	if (!S_ISLNK(at->st.st_mode) || !(flags & SP_FOLLOW))
		return 0;
	if (check(&w->dir, &at->st, at->shown, 0, msg, msize) < 0)
		return -1;
	int fd = openat(w->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail(w, msg, msize);
	int r = follow(w, fd, "", msg, msize);
	close(fd);
	return r < 0 ? -1 : 1;
}

static int walk(struct walk *w, struct sp_at *at, int flags, char *msg, size_t msize)
{
	size_t off = 0;
	char name[NAME_MAX + 1], up[PATH_MAX];
	const char *after = "";
	for (;;) {
		int n = next_name(w, &off, name, &after);
		if (n < 0)
			return fail(w, msg, msize);
		if (n == 0) { /* the path ends in a directory: "/", ".", "x/.." */
			snprintf(at->name, sizeof at->name, ".");
			snprintf(at->shown, sizeof at->shown, "%s", *w->shown ? w->shown : "/");
			at->exists = fstatat(w->fd, ".", &at->st, 0) == 0;
			return 0;
		}
		int r;
		if (!strcmp(name, ".")) {
			r = 0;
		} else if (!strcmp(name, "..")) {
			join(up, sizeof up, w->shown, "..");
			r = enter(w, openat(w->fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC), NULL, up, msg, msize);
		} else if (*after == '\0') {
			r = last(w, at, name, flags, msg, msize);
			if (r == 0)
				memcpy(at->name, name, sizeof name);
			if (r <= 0)
				return r;
		} else {
			r = step(w, name, after, flags, msg, msize);
		}
		if (r < 0)
			return -1;
		if (r == 1)
			off = 0;
	}
}

int sp_resolve(const char *path, int flags, struct sp_at *at, char *msg, size_t msize)
{
	struct walk w = {.fd = -1, .path = path};
	at->dirfd = -1;
	if (*path == '\0') {
		errno = ENOENT;
		return fail(&w, msg, msize);
	}
	if (strlen(path) >= sizeof w.rest) {
		errno = ENAMETOOLONG;
		return fail(&w, msg, msize);
	}
	snprintf(w.rest, sizeof w.rest, "%s", path);
	if (start(&w, path, msg, msize) < 0)
		return -1;
	if (walk(&w, at, flags, msg, msize) < 0) {
		int e = errno;
		close(w.fd);
		errno = e;
		return -1;
	}
	at->dirfd = w.fd;
	at->dir = w.dir;
	return 0;
}

void sp_release(struct sp_at *at)
{
	if (at->dirfd >= 0)
		close(at->dirfd);
	at->dirfd = -1;
}

int sp_entry_fd(const struct sp_at *at, char *msg, size_t msize)
{
	struct stat st;
	int fd = openat(at->dirfd, at->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == at->st.st_dev && st.st_ino == at->st.st_ino)
		return fd;
	int e = fd < 0 ? errno : EAGAIN;
	if (fd >= 0)
		close(fd);
	snprintf(msg, msize, "%s: %s", at->shown, e == EAGAIN ? "changed while phanes was opening it" : strerror(e));
	errno = e;
	return -1;
}

int sp_open(const char *path, int oflags, mode_t mode, char *msg, size_t msize)
{
	struct sp_at at;
	if (sp_resolve(path, SP_FOLLOW, &at, msg, msize) < 0)
		return -1;
	int fd = -1, e = 0;
	struct stat st;
	if (!at.exists && !(oflags & O_CREAT)) {
		e = ENOENT;
	} else if (sp_check_entry(&at, msg, msize) < 0) {
		e = EPERM;
	} else {
		fd = openat(at.dirfd, at.name, oflags | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, mode);
		if (fd < 0 || fstat(fd, &st) < 0)
			e = errno;
		else if (at.exists && (st.st_dev != at.st.st_dev || st.st_ino != at.st.st_ino))
			e = EAGAIN;
		else if (check(&at.dir, &st, at.shown, 1, msg, msize) < 0) /* made in between by someone else */
			e = EPERM;
	}
	if (e && e != EPERM)
		snprintf(msg, msize, "%s: %s", path, e == EAGAIN ? "changed while phanes was opening it" : strerror(e));
	if (e && fd >= 0)
		close(fd);
	sp_release(&at);
	errno = e;
	return e ? -1 : fd;
}

int sp_fchmod_path(int fd, mode_t mode)
{
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	return chmod(proc, mode);
}

/* 6 random letters and digits into s. */
static void rand6(char s[7])
{
	static const char set[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	static unsigned n;
	unsigned char r[6];
	if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
		unsigned v = (unsigned)getpid() * 2654435761u + ++n * 40503u + (unsigned)time(NULL);
		for (size_t i = 0; i < sizeof r; i++, v = v * 1103515245u + 12345u)
			r[i] = (unsigned char)(v >> 16);
	}
	for (size_t i = 0; i < sizeof r; i++)
		s[i] = set[r[i] % (sizeof set - 1)];
	s[6] = '\0';
}

void sp_temp_name(char *out, size_t size, const char *base, const char *tag)
{
	char s[7];
	rand6(s);
	snprintf(out, size, ".%.200s.%s-%s", base, tag, s);
}

int sp_mkdtemp(const char *prefix, char *out, size_t osize, char *msg, size_t msize)
{
	struct sp_at at;
	const char *slash = strrchr(prefix, '/');
	char dir[PATH_MAX], base[NAME_MAX + 1], name[NAME_MAX + 1];
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - prefix) + (slash == prefix) : 1, slash ? prefix : ".");
	snprintf(base, sizeof base, "%.200s", slash ? slash + 1 : prefix);
	if (sp_resolve(dir, SP_FOLLOW, &at, msg, msize) < 0) {
		if (errno != EPERM)
			snprintf(msg, msize, "%s: %s", prefix, strerror(errno));
		return -1;
	}
	int fd = at.exists && S_ISDIR(at.st.st_mode) ? sp_entry_fd(&at, msg, msize) : -1;
	if (!at.exists || !S_ISDIR(at.st.st_mode)) {
		errno = at.exists ? ENOTDIR : ENOENT;
		snprintf(msg, msize, "%s: %s", prefix, strerror(errno));
	}
	int r = -1;
	for (int i = 0; fd >= 0 && i < 100; i++) {
		char s[7];
		rand6(s);
		if (snprintf(name, sizeof name, "%s%s", base, s) >= (int)sizeof name)
			break; /* cannot happen: base holds 200 characters at most */
		if (mkdirat(fd, name, 0700) == 0) {
			r = 0;
			break;
		}
		if (errno != EEXIST) {
			snprintf(msg, msize, "%s: %s", prefix, strerror(errno));
			break;
		}
	}
	int e = errno;
	if (r == 0 && snprintf(out, osize, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", name) >= (int)osize)
		r = -1, e = ENAMETOOLONG, snprintf(msg, msize, "%s: %s", prefix, strerror(e));
	if (fd >= 0)
		close(fd);
	sp_release(&at);
	errno = e;
	return r;
}
