/* file.c: the phanes.file primitives: read, atomic write, stat, modes and
 * owners (mkdir, remove, symlink, list, mkdtemp are in file_tree.c, sha256
 * in sha256.c, file.diff in diff.c). Every path is walked by safepath.c,
 * never followed blindly. A failure of the world returns nil, "path: why",
 * errno. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "file_int.h"
#include "phanes.h"
#include "safepath.h"

#define MEM_MT "phanes.file.mem"

static int mem_gc(lua_State *L)
{
	struct mem *m = luaL_checkudata(L, 1, MEM_MT);
	free(m->p);
	m->p = NULL;
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	return 0;
}

struct mem *phanes_file_mem(lua_State *L)
{
	struct mem *m = lua_newuserdatauv(L, sizeof *m, 0);
	memset(m, 0, sizeof *m);
	m->fd = -1;
	luaL_setmetatable(L, MEM_MT);
	return m;
}

static int fail_errno(lua_State *L, const char *path)
{
	return phanes_fail(L, path, errno);
}

int phanes_file_fail(lua_State *L, const char *msg, int err)
{
	luaL_pushfail(L);
	lua_pushstring(L, msg);
	lua_pushinteger(L, err);
	return 3;
}

/* ---- owners and groups: names or numeric ids ---- */

/* opts value at idx -> id (-1 when nil): a number as is, a name looked up
 * (pw when user, else group); 0 or nil-err pushed (returns 2). */
static int resolve_id(lua_State *L, int idx, const char *path, int user, long *out)
{
	const char *what = user ? "user" : "group";
	*out = -1;
	if (lua_isnoneornil(L, idx))
		return 0;
	if (lua_type(L, idx) == LUA_TNUMBER) {
		*out = (long)luaL_checkinteger(L, idx);
		return 0;
	}
	if (lua_type(L, idx) != LUA_TSTRING)
		luaL_error(L, "%s must be a %s name or %cid, got %s", user ? "owner" : "group",
			   what, user ? 'u' : 'g', luaL_typename(L, idx));
	const char *name = lua_tostring(L, idx);
	struct passwd *pw = user ? getpwnam(name) : NULL;
	struct group *gr = user ? NULL : getgrnam(name);
	if (pw == NULL && gr == NULL)
		return phanes_failf(L, "%s: unknown %s '%s'", path, what, name);
	*out = user ? (long)pw->pw_uid : (long)gr->gr_gid;
	return 0;
}

int phanes_file_owner(lua_State *L, int iu, int ig, const char *path, uid_t *uid, gid_t *gid)
{
	long u, g;
	int r = resolve_id(L, iu, path, 1, &u);
	if (r == 0)
		r = resolve_id(L, ig, path, 0, &g);
	if (r)
		return r;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return 0;
}


static int opt_mode(lua_State *L, int t)
{
	if (lua_getfield(L, t, "mode") == LUA_TNIL) {
		lua_pop(L, 1);
		return -1;
	}
	if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 07777)
		luaL_error(L, "opts.mode must be an integer permission mode such as tonumber(\"0644\", 8)");
	int mode = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	return mode;
}

int phanes_file_attrs(lua_State *L, int t, const char *path, struct attrs *a)
{
	a->mode = -1;
	a->uid = (uid_t)-1;
	a->gid = (gid_t)-1;
	a->parents = 0;
	a->nosync = 0;
	if (lua_isnoneornil(L, t))
		return 0;
	luaL_checktype(L, t, LUA_TTABLE);
	a->mode = opt_mode(L, t);
	a->nosync = lua_getfield(L, t, "sync") == LUA_TBOOLEAN && !lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, t, "parents");
	a->parents = lua_toboolean(L, -1);
	lua_getfield(L, t, "owner");
	lua_getfield(L, t, "group"); /* parents, owner, group */
	int top = lua_gettop(L);
	int r = phanes_file_owner(L, top - 1, top, path, &a->uid, &a->gid);
	if (r)
		return r;
	lua_pop(L, 3);
	return 0;
}

/* ---- read ---- */

static int l_read(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct mem *m = phanes_file_mem(L);
	char msg[PATH_MAX + 512];
	m->fd = sp_open(path, O_RDONLY, 0, msg, sizeof msg);
	if (m->fd < 0)
		return phanes_file_fail(L, msg, errno);
	for (;;) {
		if (m->cap - m->len < 65536) {
			size_t cap = m->cap ? m->cap * 2 : 65536;
			char *p = realloc(m->p, cap);
			if (p == NULL)
				return phanes_fail(L, path, ENOMEM);
			m->p = p, m->cap = cap;
		}
		ssize_t n = read(m->fd, m->p + m->len, m->cap - m->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail_errno(L, path);
		if (n == 0)
			break;
		m->len += (size_t)n;
	}
	lua_pushlstring(L, m->p ? m->p : "", m->len);
	return 1; /* the mem userdata is freed by __gc */
}

/* ---- atomic write ---- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* fsync of the directory dirfd (an O_PATH descriptor); one that cannot be
 * opened for reading (not root) is left to the file system. */
static int fsync_dir(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == EACCES ? 0 : -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r == 0 || e == EINVAL ? 0 : -1;
}

/* A new temp file next to at's entry (openat O_EXCL | O_NOFOLLOW in its
 * directory); its name goes to tmp. fd or -1. */
static int create_temp(const struct sp_at *at, char *tmp, size_t size)
{
	for (int i = 0; i < 100; i++) {
		sp_temp_name(tmp, size, at->name, "phanes");
		int fd = openat(at->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	return -1;
}

/* The temp file gets the data, owner and mode, reaches the disk, then is
 * renamed over at's entry; returns 0 or -1 with errno (temp file removed). */
static int write_atomic(const struct sp_at *at, const char *data, size_t len, const struct attrs *a)
{
	char tmp[NAME_MAX + 1];
	const struct stat *old = &at->st;
	int existed = at->exists && S_ISREG(old->st_mode);
	mode_t mode = a->mode >= 0 ? (mode_t)a->mode : existed ? old->st_mode & 07777 : 0644;
	uid_t uid = a->uid != (uid_t)-1 ? a->uid : existed ? old->st_uid : (uid_t)-1;
	gid_t gid = a->gid != (gid_t)-1 ? a->gid : existed ? old->st_gid : (gid_t)-1;
	int fd = create_temp(at, tmp, sizeof tmp);
	if (fd < 0)
		return -1;
	int ok = write_all(fd, data, len) == 0 &&
		 ((uid == (uid_t)-1 && gid == (gid_t)-1) || fchown(fd, uid, gid) == 0) &&
		 fchmod(fd, mode) == 0 && (a->nosync || fsync(fd) == 0); /* chmod after chown: chown clears setuid */
	int e = errno;
	if (close(fd) < 0 && ok)
		ok = 0, e = errno;
	if (ok && renameat(at->dirfd, tmp, at->dirfd, at->name) < 0)
		ok = 0, e = errno;
	if (!ok) {
		unlinkat(at->dirfd, tmp, 0);
		errno = e;
		return -1;
	}
	return a->nosync ? 0 : fsync_dir(at->dirfd);
}

/* file.write(path, data[, {mode, owner, group, sync}]) -> true | nil, err, errno
 * sync = false: renamed into place without fsync (a record that may be lost
 * in a crash, written where a program must not wait for the disk).
 * A symlink is written through only where safepath.h follows it (a root
 * directory, e.g. /etc/resolv.conf -> ../run/...); elsewhere it is refused. */
static int l_write(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	struct attrs a;
	int r = phanes_file_attrs(L, 3, path, &a);
	if (r)
		return r;
	struct sp_at at;
	char msg[PATH_MAX + 512];
	if (sp_resolve(path, SP_FOLLOW, &at, msg, sizeof msg) < 0)
		return phanes_file_fail(L, msg, errno);
	if (sp_check_entry(&at, msg, sizeof msg) < 0) {
		sp_release(&at);
		return phanes_file_fail(L, msg, EPERM);
	}
	r = write_atomic(&at, data, len, &a);
	int e = errno;
	sp_release(&at);
	if (r < 0)
		return phanes_fail(L, path, e);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- stat and friends ---- */

static const char *type_name(mode_t m)
{
	return S_ISREG(m) ? "file" : S_ISDIR(m) ? "directory" : S_ISLNK(m) ? "link" : "other";
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, k);
}

static void push_stat(lua_State *L, const struct stat *st, const char *target, ssize_t tlen)
{
	lua_createtable(L, 0, 9);
	lua_pushstring(L, type_name(st->st_mode));
	lua_setfield(L, -2, "type");
	set_int(L, "mode", st->st_mode & 07777);
	set_int(L, "uid", st->st_uid);
	set_int(L, "gid", st->st_gid);
	set_int(L, "size", st->st_size);
	lua_pushnumber(L, (lua_Number)st->st_mtim.tv_sec + (lua_Number)st->st_mtim.tv_nsec / 1e9);
	lua_setfield(L, -2, "mtime");
	struct passwd *pw = getpwuid(st->st_uid);
	if (pw) {
		lua_pushstring(L, pw->pw_name);
		lua_setfield(L, -2, "owner");
	}
	struct group *gr = getgrgid(st->st_gid);
	if (gr) {
		lua_pushstring(L, gr->gr_name);
		lua_setfield(L, -2, "group");
	}
	if (tlen >= 0) {
		lua_pushlstring(L, target, (size_t)tlen);
		lua_setfield(L, -2, "target");
	}
}

/* Resolves path (flags as sp_resolve) to an existing entry: 0, or the
 * number of results pushed (nil, err, errno); at is released on failure. */
static int existing(lua_State *L, const char *path, int flags, struct sp_at *at)
{
	char msg[PATH_MAX + 512];
	if (sp_resolve(path, flags, at, msg, sizeof msg) < 0)
		return phanes_file_fail(L, msg, errno);
	if (at->exists)
		return 0;
	sp_release(at);
	return phanes_fail(L, path, ENOENT);
}

/* file.stat(path[, follow]) -> {type, mode, uid, gid, owner, group, size, mtime, target} */
static int l_stat(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct sp_at at;
	int r = existing(L, path, lua_toboolean(L, 2) ? SP_FOLLOW : 0, &at);
	if (r)
		return r;
	char target[PATH_MAX];
	ssize_t n = S_ISLNK(at.st.st_mode) ? readlinkat(at.dirfd, at.name, target, sizeof target) : -1;
	sp_release(&at);
	push_stat(L, &at.st, target, n);
	return 1;
}

static int l_exists(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct sp_at at;
	char msg[PATH_MAX + 512];
	int found = sp_resolve(path, 0, &at, msg, sizeof msg) == 0 && at.exists;
	sp_release(&at);
	lua_pushboolean(L, found);
	return 1;
}

static int l_readlink(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct sp_at at;
	int r = existing(L, path, 0, &at);
	if (r)
		return r;
	char target[PATH_MAX];
	ssize_t n = readlinkat(at.dirfd, at.name, target, sizeof target);
	int e = errno;
	sp_release(&at);
	if (n < 0)
		return phanes_fail(L, path, e);
	lua_pushlstring(L, target, (size_t)n);
	return 1;
}

/* file.check(path) -> true, trusted | nil, err, errno: phanes may read or
 * replace path (absent, or not refused by the rules of safepath.h);
 * trusted: only root (or the user phanes runs as) can change its directory. */
static int l_check(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct sp_at at;
	char msg[PATH_MAX + 512];
	if (sp_resolve(path, SP_FOLLOW, &at, msg, sizeof msg) < 0)
		return phanes_file_fail(L, msg, errno);
	int r = sp_check_entry(&at, msg, sizeof msg);
	int trusted = sp_dir_trusted(&at.dir);
	sp_release(&at);
	if (r < 0)
		return phanes_file_fail(L, msg, EPERM);
	lua_pushboolean(L, 1);
	lua_pushboolean(L, trusted);
	return 2;
}

/* chmod (mode >= 0) or chown of path's entry, through a descriptor of it. */
static int change(lua_State *L, const char *path, int mode, uid_t uid, gid_t gid)
{
	struct sp_at at;
	int r = existing(L, path, SP_FOLLOW, &at);
	if (r)
		return r;
	char msg[PATH_MAX + 512];
	int fd = sp_check_entry(&at, msg, sizeof msg) < 0 ? -1 : sp_entry_fd(&at, msg, sizeof msg);
	int e = errno;
	sp_release(&at);
	if (fd < 0)
		return phanes_file_fail(L, msg, e);
	r = mode >= 0 ? sp_fchmod_path(fd, (mode_t)mode) : fchownat(fd, "", uid, gid, AT_EMPTY_PATH);
	e = errno;
	close(fd);
	if (r < 0)
		return phanes_fail(L, path, e);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_chmod(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TNUMBER); /* "755" would read as decimal */
	lua_Integer mode = luaL_checkinteger(L, 2);
	luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "expected a permission mode such as tonumber(\"0644\", 8)");
	return change(L, path, (int)mode, (uid_t)-1, (gid_t)-1);
}

/* file.chown(path, owner, group): either may be nil (unchanged) */
static int l_chown(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	uid_t uid;
	gid_t gid;
	int r = phanes_file_owner(L, 2, 3, path, &uid, &gid);
	if (r)
		return r;
	return change(L, path, -1, uid, gid);
}

int luaopen_phanes_file(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"read", l_read},
		{"write", l_write},
		{"stat", l_stat},
		{"exists", l_exists},
		{"check", l_check},
		{"readlink", l_readlink},
		{"chmod", l_chmod},
		{"chown", l_chown},
		{"mkdir", phanes_file_mkdir},
		{"remove", phanes_file_remove},
		{"symlink", phanes_file_symlink},
		{"list", phanes_file_list},
		{"mkdtemp", phanes_file_mkdtemp},
		{"sha256", phanes_sha256},
		{"sha256_file", phanes_sha256_file},
		{"diff", phanes_diff},
		{NULL, NULL},
	};
	if (luaL_newmetatable(L, MEM_MT)) {
		lua_pushcfunction(L, mem_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, mem_gc);
		lua_setfield(L, -2, "__close");
	}
	lua_pop(L, 1);
	phanes_diff_init(L);
	luaL_newlib(L, funcs);
	return 1;
}
