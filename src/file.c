/* file.c: the phanes.file primitives: read, atomic write, stat, mkdir,
 * remove, symlink, modes and owners, listing (sha256 is in sha256.c, file.diff
 * in diff.c). A failure of the world returns nil, "path: why", errno. */
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
#include "phanes.h"

#define MEM_MT "phanes.file.mem"

/* A malloc'd buffer and a descriptor owned by a userdata, so a raise while
 * they are held (out of memory in a push) still frees them. */
struct mem {
	char *p;
	size_t len, cap;
	int fd;
};

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

static struct mem *new_mem(lua_State *L)
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

/* The owner at iu and group at ig -> uid, gid (-1 when nil); 0 or 2. */
static int resolve_owner(lua_State *L, int iu, int ig, const char *path, uid_t *uid, gid_t *gid)
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

/* Options of write and mkdir, read from the table at t (or absent). */
struct attrs {
	int mode; /* -1: not given */
	uid_t uid;
	gid_t gid;
	int parents;
};

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

/* Checks the opts table at t; returns 0, or 2 with nil, err pushed. */
static int check_attrs(lua_State *L, int t, const char *path, struct attrs *a)
{
	a->mode = -1;
	a->uid = (uid_t)-1;
	a->gid = (gid_t)-1;
	a->parents = 0;
	if (lua_isnoneornil(L, t))
		return 0;
	luaL_checktype(L, t, LUA_TTABLE);
	a->mode = opt_mode(L, t);
	lua_getfield(L, t, "parents");
	a->parents = lua_toboolean(L, -1);
	lua_getfield(L, t, "owner");
	lua_getfield(L, t, "group"); /* parents, owner, group */
	int top = lua_gettop(L);
	int r = resolve_owner(L, top - 1, top, path, &a->uid, &a->gid);
	if (r)
		return r;
	lua_pop(L, 3);
	return 0;
}

/* ---- read ---- */

static int l_read(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct mem *m = new_mem(L);
	m->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (m->fd < 0)
		return fail_errno(L, path);
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

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

/* dirname of path into dir (".", "/" or the part before the last slash). */
static void dir_of(const char *path, char *dir, size_t size)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(dir, size, ".");
	else if (slash == path)
		snprintf(dir, size, "/");
	else
		snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

/* The temp file gets the data, owner and mode, reaches the disk, then is
 * renamed over path; returns 0 or -1 with errno (temp file removed). */
static int write_atomic(const char *path, const char *data, size_t len, const struct attrs *a)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	dir_of(path, dir, sizeof dir);
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	if (snprintf(tmp, sizeof tmp, "%s/.%s.phanes-XXXXXX", dir, base) >= (int)sizeof tmp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	struct stat old;
	int existed = stat(path, &old) == 0 && S_ISREG(old.st_mode);
	mode_t mode = a->mode >= 0 ? (mode_t)a->mode : existed ? old.st_mode & 07777 : 0644;
	uid_t uid = a->uid != (uid_t)-1 ? a->uid : existed ? old.st_uid : (uid_t)-1;
	gid_t gid = a->gid != (gid_t)-1 ? a->gid : existed ? old.st_gid : (gid_t)-1;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -1;
	int ok = write_all(fd, data, len) == 0 &&
		 ((uid == (uid_t)-1 && gid == (gid_t)-1) || fchown(fd, uid, gid) == 0) &&
		 fchmod(fd, mode) == 0 && fsync(fd) == 0; /* chmod after chown: chown clears setuid */
	int e = errno;
	if (close(fd) < 0 && ok)
		ok = 0, e = errno;
	if (ok && rename(tmp, path) < 0)
		ok = 0, e = errno;
	if (!ok) {
		unlink(tmp);
		errno = e;
		return -1;
	}
	return fsync_dir(dir) == 0 || errno == EINVAL ? 0 : -1;
}

/* A symlink to an existing file is written through (as `>` would), so
 * /etc/resolv.conf -> ../run/... keeps being a link. */
static const char *write_target(const char *path, char *buf)
{
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && realpath(path, buf) != NULL)
		return buf;
	return path;
}

/* file.write(path, data[, {mode, owner, group}]) -> true | nil, err, errno */
static int l_write(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	struct attrs a;
	int r = check_attrs(L, 3, path, &a);
	if (r)
		return r;
	char real[PATH_MAX];
	if (write_atomic(write_target(path, real), data, len, &a) < 0)
		return fail_errno(L, path);
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

/* file.stat(path[, follow]) -> {type, mode, uid, gid, owner, group, size, mtime, target} */
static int l_stat(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int follow = lua_toboolean(L, 2);
	struct stat st;
	if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
		return fail_errno(L, path);
	lua_createtable(L, 0, 9);
	lua_pushstring(L, type_name(st.st_mode));
	lua_setfield(L, -2, "type");
	set_int(L, "mode", st.st_mode & 07777);
	set_int(L, "uid", st.st_uid);
	set_int(L, "gid", st.st_gid);
	set_int(L, "size", st.st_size);
	lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
	lua_setfield(L, -2, "mtime");
	struct passwd *pw = getpwuid(st.st_uid);
	if (pw) {
		lua_pushstring(L, pw->pw_name);
		lua_setfield(L, -2, "owner");
	}
	struct group *gr = getgrgid(st.st_gid);
	if (gr) {
		lua_pushstring(L, gr->gr_name);
		lua_setfield(L, -2, "group");
	}
	char target[PATH_MAX];
	ssize_t n = S_ISLNK(st.st_mode) ? readlink(path, target, sizeof target) : -1;
	if (n >= 0) {
		lua_pushlstring(L, target, (size_t)n);
		lua_setfield(L, -2, "target");
	}
	return 1;
}

static int l_exists(lua_State *L)
{
	struct stat st;
	lua_pushboolean(L, lstat(luaL_checkstring(L, 1), &st) == 0);
	return 1;
}

static int l_readlink(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	char target[PATH_MAX];
	ssize_t n = readlink(path, target, sizeof target);
	if (n < 0)
		return fail_errno(L, path);
	lua_pushlstring(L, target, (size_t)n);
	return 1;
}

static int l_chmod(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TNUMBER); /* "755" would read as decimal */
	lua_Integer mode = luaL_checkinteger(L, 2);
	luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "expected a permission mode such as tonumber(\"0644\", 8)");
	if (chmod(path, (mode_t)mode) < 0)
		return fail_errno(L, path);
	lua_pushboolean(L, 1);
	return 1;
}

/* file.chown(path, owner, group): either may be nil (unchanged) */
static int l_chown(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	uid_t uid;
	gid_t gid;
	int r = resolve_owner(L, 2, 3, path, &uid, &gid);
	if (r)
		return r;
	if (chown(path, uid, gid) < 0)
		return fail_errno(L, path);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- mkdir ---- */

static int mkdir_one(const char *path, const struct attrs *a, int *created)
{
	mode_t mode = a->mode >= 0 ? (mode_t)a->mode : 0755;
	if (mkdir(path, mode) < 0) {
		struct stat st;
		if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		if (errno == EEXIST)
			errno = ENOTDIR;
		return -1;
	}
	*created = 1;
	/* mkdir's mode went through the umask: set it exactly. */
	if ((a->uid != (uid_t)-1 || a->gid != (gid_t)-1) && chown(path, a->uid, a->gid) < 0)
		return -1;
	return chmod(path, mode);
}

/* Parents get 0755 and no owner; only the last component gets opts. */
static int mkdir_parents(char *path, const struct attrs *a, int *created)
{
	static const struct attrs plain = {-1, (uid_t)-1, (gid_t)-1, 0};
	for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
		if (s[1] == '\0' || s[-1] == '/')
			continue;
		*s = '\0';
		int dummy = 0, r = mkdir_one(path, &plain, &dummy);
		*s = '/';
		if (r < 0)
			return -1;
	}
	return mkdir_one(path, a, created);
}

/* file.mkdir(path[, {mode, owner, group, parents}]) -> true, created | nil, err */
static int l_mkdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct attrs a;
	int r = check_attrs(L, 2, path, &a);
	if (r)
		return r;
	char buf[PATH_MAX];
	if (strlen(path) >= sizeof buf)
		return phanes_fail(L, path, ENAMETOOLONG);
	strcpy(buf, path);
	int created = 0;
	if ((a.parents ? mkdir_parents(buf, &a, &created) : mkdir_one(buf, &a, &created)) < 0)
		return fail_errno(L, path);
	lua_pushboolean(L, 1);
	lua_pushboolean(L, created);
	return 2;
}

/* ---- remove ---- */

/* Remove name under dirfd, descending into directories without following
 * symlinks. On failure errno is set and failed names the entry. */
static int remove_at(int at, const char *name, char *failed, size_t fsize)
{
	if (unlinkat(at, name, 0) == 0)
		return 0;
	int unlink_err = errno;
	if (errno != EISDIR && errno != EPERM)
		goto fail;
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOTDIR || errno == ELOOP)
			errno = unlink_err;
		goto fail;
	}
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		int e = errno;
		close(fd);
		errno = e;
		goto fail;
	}
	struct dirent *de;
	int r = 0;
	while (r == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			r = remove_at(dirfd(d), de->d_name, failed, fsize);
	}
	int e = errno;
	closedir(d);
	if (r < 0) {
		errno = e;
		return -1;
	}
	if (unlinkat(at, name, AT_REMOVEDIR) == 0)
		return 0;
fail:
	if (!*failed)
		snprintf(failed, fsize, "%s", name);
	return -1;
}

/* file.remove(path[, recursive]) -> true (also when absent) | nil, err */
static int l_remove(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int recursive = lua_toboolean(L, 2);
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT) {
			lua_pushboolean(L, 1);
			return 1;
		}
		return fail_errno(L, path);
	}
	int r;
	char failed[NAME_MAX + 1] = "";
	if (!S_ISDIR(st.st_mode))
		r = unlink(path);
	else if (!recursive)
		r = rmdir(path);
	else
		r = remove_at(AT_FDCWD, path, failed, sizeof failed);
	if (r < 0) {
		if (*failed && strcmp(failed, path))
			return phanes_failf(L, "%s: cannot remove %s inside: %s", path, failed, strerror(errno));
		return fail_errno(L, path);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* file.symlink(target, path): a temp link renamed over path */
static int l_symlink(lua_State *L)
{
	const char *target = luaL_checkstring(L, 1);
	const char *path = luaL_checkstring(L, 2);
	char tmp[PATH_MAX], dir[PATH_MAX];
	dir_of(path, dir, sizeof dir);
	for (int i = 0;; i++) {
		if (snprintf(tmp, sizeof tmp, "%s/.phanes-link-%d-%d", dir, (int)getpid(), i) >= (int)sizeof tmp)
			return phanes_fail(L, path, ENAMETOOLONG);
		if (symlink(target, tmp) == 0)
			break;
		if (errno != EEXIST || i > 100)
			return fail_errno(L, path);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return phanes_fail(L, path, e);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* file.list(dir) -> sorted names, without . and .. */
static int l_list(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	/* The names are read into m before any other Lua call, so the DIR
	 * handle is closed before anything can raise. */
	lua_newtable(L);
	struct mem *m = new_mem(L); /* names, mem */
	DIR *d = opendir(path);
	if (d == NULL)
		return fail_errno(L, path);
	lua_Integer n = 0;
	struct dirent *de;
	int e = 0;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		size_t l = strlen(de->d_name) + 1;
		if (m->cap - m->len < l) {
			size_t cap = m->cap ? m->cap * 2 + l : 4096 + l;
			char *p = realloc(m->p, cap);
			if (p == NULL) {
				e = ENOMEM;
				break;
			}
			m->p = p, m->cap = cap;
		}
		memcpy(m->p + m->len, de->d_name, l);
		m->len += l;
		n++;
	}
	if (!e)
		e = errno;
	closedir(d);
	if (e)
		return phanes_fail(L, path, e);
	char **v = lua_newuserdatauv(L, (size_t)n * sizeof(char *) + 1, 0); /* names, mem, v */
	size_t off = 0;
	for (lua_Integer i = 0; i < n; i++, off += strlen(m->p + off) + 1)
		v[i] = m->p + off;
	qsort(v, (size_t)n, sizeof *v, cmp_names);
	for (lua_Integer i = 0; i < n; i++) {
		lua_pushstring(L, v[i]);
		lua_rawseti(L, -4, i + 1);
	}
	lua_pop(L, 2);
	return 1;
}

int luaopen_phanes_file(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"read", l_read},
		{"write", l_write},
		{"stat", l_stat},
		{"exists", l_exists},
		{"readlink", l_readlink},
		{"chmod", l_chmod},
		{"chown", l_chown},
		{"mkdir", l_mkdir},
		{"remove", l_remove},
		{"symlink", l_symlink},
		{"list", l_list},
		{"sha256", phanes_sha256},
		{"sha256_file", phanes_sha256_file},
		{"hmac_sha256", phanes_hmac_sha256},
		{"pbkdf2_sha256", phanes_pbkdf2_sha256},
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
