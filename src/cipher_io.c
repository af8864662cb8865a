/* cipher_io.c: what the vault needs around the cryptography, registered in
 * phanes.cipher by cipher.c:
 *
 *   cipher.wipe(path)          overwrite a regular file with zeros, fsync,
 *                              unlink (no symlink followed) -> true | nil, err
 *   cipher.append(path, line)  one write to a 0600 file of ours, O_APPEND,
 *                              created if missing, no symlink followed
 *   cipher.run_tty(argv)       run an interactive program (an editor) on
 *                              this terminal; -> exit code | nil, "why", interrupted
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cipher.h"

static int write_zeros(int fd, off_t size)
{
	static const char zeros[4096];
	while (size > 0) {
		size_t n = size > (off_t)sizeof zeros ? sizeof zeros : (size_t)size;
		ssize_t w = write(fd, zeros, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		size -= w;
	}
	return 0;
}

int phanes_cipher_wipe(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? (lua_pushboolean(L, 1), 1) : phanes_fail(L, path, errno);
	struct stat st;
	int ok = fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || (errno = EINVAL, 0)) &&
		 write_zeros(fd, st.st_size) == 0 && fsync(fd) == 0;
	int e = errno;
	if (close(fd) < 0 && ok)
		ok = 0, e = errno;
	if (unlink(path) < 0 && ok)
		ok = 0, e = errno;
	if (!ok)
		return phanes_fail(L, path, e);
	lua_pushboolean(L, 1);
	return 1;
}

/* The log must be a regular file of ours, private. */
static int private_fd(int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
		errno = EPERM;
		return -1;
	}
	return (st.st_mode & 077) ? fchmod(fd, 0600) : 0;
}

int phanes_cipher_append(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t len;
	const char *line = luaL_checklstring(L, 2, &len);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return phanes_fail(L, path, errno);
	ssize_t w = -1;
	if (private_fd(fd) == 0) {
		do
			w = write(fd, line, len); /* one write: lines of parallel runs do not mix */
		while (w < 0 && errno == EINTR);
	}
	int e = errno;
	if (close(fd) < 0 && w >= 0)
		w = -1, e = errno;
	if (w != (ssize_t)len)
		return phanes_fail(L, path, w < 0 ? e : EIO);
	lua_pushboolean(L, 1);
	return 1;
}

/* Waits for pid; a SIGINT/SIGTERM seen meanwhile sends it SIGTERM (a
 * second one SIGKILL). Returns the wait status, -1 on error. */
static int wait_child(pid_t pid, int *interrupted)
{
	int status, seen = phanes_signals_seen(), sent = 0;
	for (;;) {
		if (waitpid(pid, &status, 0) == pid)
			return status;
		if (errno != EINTR)
			return -1;
		int now = phanes_signals_seen();
		if (now != seen) {
			seen = now;
			*interrupted = 1;
			kill(pid, sent++ ? SIGKILL : SIGTERM);
		}
	}
}

int phanes_cipher_run_tty(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer n = luaL_len(L, 1);
	luaL_argcheck(L, n >= 1 && n < 256, 1, "argv must have 1..255 words");
	char **argv = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof(char *), 0);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, 1, i);
		argv[i - 1] = (char *)luaL_checkstring(L, -1); /* still referenced by the table */
		lua_pop(L, 1);
	}
	argv[n] = NULL;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return phanes_fail(L, argv[0], errno);
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	int interrupted = 0, status = wait_child(pid, &interrupted);
	if (status < 0)
		return phanes_fail(L, argv[0], errno);
	if (WIFEXITED(status) && !interrupted) {
		lua_pushinteger(L, WEXITSTATUS(status));
		return 1;
	}
	lua_pushnil(L);
	if (WIFSIGNALED(status))
		lua_pushfstring(L, "%s: killed by signal %d", argv[0], WTERMSIG(status));
	else
		lua_pushfstring(L, "%s: interrupted", argv[0]);
	lua_pushboolean(L, interrupted);
	return 3;
}
