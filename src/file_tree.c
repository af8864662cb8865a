/* file_tree.c: the phanes.file primitives on directory entries: mkdir,
 * remove, symlink, list, mkdtemp. Paths are walked by safepath.c; every
 * change is made relative to the descriptor of the directory it was found in. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "file_int.h"
#include "safepath.h"

#define MSG_SIZE (PATH_MAX + 512)

/* ---- mkdir ---- */

/* Makes at's entry a directory with a's mode and owner (the mode set
 * exactly, not through the umask); an existing directory is left alone. */
static int mkdir_at(const struct sp_at *at, const struct attrs *a, int *created)
{
	mode_t mode = a->mode >= 0 ? (mode_t)a->mode : 0755;
	struct stat st;
	if (at->exists || mkdirat(at->dirfd, at->name, mode) < 0) {
		if ((at->exists || errno == EEXIST) && fstatat(at->dirfd, at->name, &st, 0) == 0 && S_ISDIR(st.st_mode))
			return 0;
		if (at->exists || errno == EEXIST)
			errno = ENOTDIR;
		return -1;
	}
	*created = 1;
	int fd = openat(at->dirfd, at->name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	/* the one made here, not one swapped in since by whoever can write there */
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid()) {
		close(fd);
		errno = EAGAIN;
		return -1;
	}
	int r = ((a->uid == (uid_t)-1 && a->gid == (gid_t)-1) ||
		 fchownat(fd, "", a->uid, a->gid, AT_EMPTY_PATH) == 0) && sp_fchmod_path(fd, mode) == 0 ? 0 : -1;
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

/* file.mkdir(path[, {mode, owner, group, parents}]) -> true, created | nil, err
 * Parents get 0755 and no owner; only the last component gets opts. */
int phanes_file_mkdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct attrs a;
	int r = phanes_file_attrs(L, 2, path, &a);
	if (r)
		return r;
	struct sp_at at;
	char msg[MSG_SIZE];
	if (sp_resolve(path, SP_FOLLOW | (a.parents ? SP_MKDIRS : 0), &at, msg, sizeof msg) < 0)
		return phanes_file_fail(L, msg, errno);
	int created = 0;
	r = mkdir_at(&at, &a, &created);
	int e = errno;
	sp_release(&at);
	if (r < 0)
		return phanes_fail(L, path, e);
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
int phanes_file_remove(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int recursive = lua_toboolean(L, 2);
	struct sp_at at;
	char msg[MSG_SIZE];
	if (sp_resolve(path, 0, &at, msg, sizeof msg) < 0)
		return phanes_file_fail(L, msg, errno);
	int r = 0;
	char failed[NAME_MAX + 1] = "";
	if (!at.exists)
		r = 0;
	else if (!S_ISDIR(at.st.st_mode))
		r = unlinkat(at.dirfd, at.name, 0);
	else if (!recursive)
		r = unlinkat(at.dirfd, at.name, AT_REMOVEDIR);
	else
		r = remove_at(at.dirfd, at.name, failed, sizeof failed);
	int e = errno;
	sp_release(&at);
	if (r < 0) {
		if (*failed && strcmp(failed, at.name))
			return phanes_failf(L, "%s: cannot remove %s inside: %s", path, failed, strerror(e));
		return phanes_fail(L, path, e);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* file.symlink(target, path): a temp link renamed over path */
int phanes_file_symlink(lua_State *L)
{
	const char *target = luaL_checkstring(L, 1);
	const char *path = luaL_checkstring(L, 2);
	struct sp_at at;
	char msg[MSG_SIZE], tmp[NAME_MAX + 1];
	if (sp_resolve(path, 0, &at, msg, sizeof msg) < 0)
		return phanes_file_fail(L, msg, errno);
	int r = -1;
	for (int i = 0; r < 0 && i < 100; i++) {
		sp_temp_name(tmp, sizeof tmp, at.name, "phanes-link");
		r = symlinkat(target, at.dirfd, tmp);
		if (r < 0 && errno != EEXIST)
			break;
	}
	if (r == 0 && renameat(at.dirfd, tmp, at.dirfd, at.name) < 0) {
		int e = errno;
		unlinkat(at.dirfd, tmp, 0);
		errno = e;
		r = -1;
	}
	int e = errno;
	sp_release(&at);
	if (r < 0)
		return phanes_fail(L, path, e);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- list ---- */

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in d (closed here) into m, NUL-separated; count or -1. */
static lua_Integer read_names(DIR *d, struct mem *m)
{
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
	errno = e;
	return e ? -1 : n;
}

/* A DIR of path's directory (walked by safepath.c) or NULL with msg. */
static DIR *open_dir(const char *path, char *msg, size_t msize)
{
	struct sp_at at;
	if (sp_resolve(path, SP_FOLLOW, &at, msg, msize) < 0)
		return NULL;
	int fd = !at.exists ? (errno = ENOENT, -1)
		 : !S_ISDIR(at.st.st_mode) ? (errno = ENOTDIR, -1)
		 : openat(at.dirfd, at.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int e = errno;
	sp_release(&at);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (fd >= 0 && d == NULL) {
		e = errno;
		close(fd);
	}
	if (d == NULL)
		snprintf(msg, msize, "%s: %s", path, strerror(e));
	errno = e;
	return d;
}

/* file.list(dir) -> sorted names, without . and .. */
int phanes_file_list(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	/* The names are read into m before any other Lua call, so the DIR
	 * handle is closed before anything can raise. */
	lua_newtable(L);
	struct mem *m = phanes_file_mem(L); /* names, mem */
	char msg[MSG_SIZE];
	DIR *d = open_dir(path, msg, sizeof msg);
	if (d == NULL)
		return phanes_file_fail(L, msg, errno);
	lua_Integer n = read_names(d, m);
	if (n < 0)
		return phanes_fail(L, path, errno);
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

/* file.mkdtemp([prefix]) -> path of a new 0700 directory | nil, err
 * prefix: "/dir/name-" (6 random characters are added); by default
 * $TMPDIR/phanes- or /tmp/phanes-. */
int phanes_file_mkdtemp(lua_State *L)
{
	const char *prefix = luaL_optstring(L, 1, NULL);
	char def[PATH_MAX], out[PATH_MAX], msg[MSG_SIZE];
	if (prefix == NULL) {
		const char *t = getenv("TMPDIR");
		snprintf(def, sizeof def, "%s/phanes-", t && *t == '/' && strlen(t) < PATH_MAX - 16 ? t : "/tmp");
		prefix = def;
	}
	luaL_argcheck(L, *prefix != '\0' && prefix[strlen(prefix) - 1] != '/', 1,
		      "expected a prefix such as \"/tmp/phanes-\"");
	if (sp_mkdtemp(prefix, out, sizeof out, msg, sizeof msg) < 0)
		return phanes_file_fail(L, msg, errno);
	lua_pushstring(L, out);
	return 1;
}
