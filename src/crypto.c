/* crypto.c: phanes.crypto — keyed hashes and randomness from the kernel.
 *   crypto.random(n)            -> n random bytes (getrandom)
 *   crypto.hmac_sha256(key, s)  -> hex HMAC-SHA256 of s under key
 *   crypto.key(path, create)    -> the 32-byte per-host key | nil, err
 * The state file's config_hash is an HMAC under the key in hash.key beside
 * it (root-only, 0600): a short secret in a config section cannot be
 * recovered offline from the world-readable state. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "phanes.h"

#define KEY_LEN 32
#define RANDOM_MAX 4096

/* Fills buf with n random bytes; 0, or -1 with errno. */
static int fill_random(unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(buf + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static int l_random(lua_State *L)
{
	lua_Integer n = luaL_checkinteger(L, 1);
	unsigned char buf[RANDOM_MAX];
	luaL_argcheck(L, n >= 1 && n <= RANDOM_MAX, 1, "must be 1..4096");
	if (fill_random(buf, (size_t)n) < 0)
		return phanes_fail(L, "getrandom", errno);
	lua_pushlstring(L, (const char *)buf, (size_t)n);
	return 1;
}

static int l_hmac_sha256(lua_State *L)
{
	static const char hex[] = "0123456789abcdef";
	size_t klen, dlen;
	const char *key = luaL_checklstring(L, 1, &klen);
	const char *data = luaL_checklstring(L, 2, &dlen);
	unsigned char md[EVP_MAX_MD_SIZE];
	char out[2 * EVP_MAX_MD_SIZE];
	unsigned n = 0;
	luaL_argcheck(L, klen >= 1 && klen <= (size_t)INT_MAX, 1, "the key must not be empty");
	if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)data, dlen, md, &n))
		return luaL_error(L, "crypto.hmac_sha256: OpenSSL HMAC failed");
	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	lua_pushlstring(L, out, 2 * (size_t)n);
	return 1;
}

/* Reads the key from fd after checking what the file is: 0, an errno, or
 * -1 (not a private file of ours) or -2 (not KEY_LEN bytes), with st set. */
static int read_key(int fd, struct stat *st, unsigned char *key)
{
	if (fstat(fd, st) < 0)
		return errno;
	if (!S_ISREG(st->st_mode) || st->st_uid != geteuid() || (st->st_mode & 077) != 0)
		return -1;
	ssize_t r;
	do
		r = pread(fd, key, KEY_LEN, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno;
	return r == KEY_LEN && st->st_size == KEY_LEN ? 0 : -2;
}

static int key_error(lua_State *L, const char *path, int r, const struct stat *st)
{
	if (r > 0)
		return phanes_fail(L, path, r);
	if (r == -1) {
		char mode[16];
		snprintf(mode, sizeof mode, "%04o", (unsigned)(st->st_mode & 07777));
		return phanes_failf(L, "%s: the config hash key must be a file owned by uid %d with mode 0600 "
			"(it is uid %d, mode %s): remove it and run again to make a new one",
			path, (int)geteuid(), (int)st->st_uid, mode);
	}
	return phanes_failf(L, "%s: the config hash key must be %d bytes, not %d: "
		"remove it and run again to make a new one", path, KEY_LEN, (int)st->st_size);
}

/* Writes a new key to a private temporary name, then links it to path:
 * link fails with EEXIST when another run made the key first, and nobody
 * ever sees a half-written key. 0, 1 (lost the race) or -1 with errno. */
static int create_key(const char *path, const char *tmp)
{
	unsigned char key[KEY_LEN];
	if (fill_random(key, sizeof key) < 0)
		return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	int rc = -1, err = 0;
	ssize_t w;
	do
		w = write(fd, key, sizeof key);
	while (w < 0 && errno == EINTR);
	if (w != (ssize_t)sizeof key) {
		err = w < 0 ? errno : EIO;
		goto out;
	}
	if (fsync(fd) < 0) {
		err = errno;
		goto out;
	}
	if (link(tmp, path) == 0)
		rc = 0;
	else if (errno == EEXIST)
		rc = 1;
	else
		err = errno;
out:
	close(fd);
	unlink(tmp);
	errno = err;
	return rc;
}

static int l_key(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int create = lua_toboolean(L, 2);
	unsigned char key[KEY_LEN];
	for (int tries = 0; tries < 3; tries++) {
		int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			struct stat st;
			int r = read_key(fd, &st, key);
			close(fd);
			if (r != 0)
				return key_error(L, path, r, &st);
			lua_pushlstring(L, (const char *)key, sizeof key);
			return 1;
		}
		if (errno != ENOENT || !create)
			return phanes_fail(L, path, errno);
		unsigned char salt[8];
		if (fill_random(salt, sizeof salt) < 0)
			return phanes_fail(L, "getrandom", errno);
		const char *tmp = lua_pushfstring(L, "%s.new-%d-%d%d", path, (int)getpid(),
			(int)salt[0], (int)salt[1]);
		int c = create_key(path, tmp);
		lua_pop(L, 1);
		if (c < 0)
			return phanes_fail(L, path, errno);
	}
	return phanes_failf(L, "%s: cannot create the config hash key", path);
}

int luaopen_phanes_crypto(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"random", l_random},
		{"hmac_sha256", l_hmac_sha256},
		{"key", l_key},
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	return 1;
}
