/* crypto.c: phanes.crypto — keyed hashes, base64, SCRAM and randomness,
 * all by OpenSSL's EVP (no digest or encoding written here).
 *   crypto.random(n)            -> n random bytes (getrandom)
 *   crypto.hmac_sha256(key, s[, raw]) -> HMAC-SHA256 of s under key, hex
 *                                  (raw: the 32 bytes)
 *   crypto.pbkdf2_sha256(pw, salt, iterations) -> 32 raw bytes
 *   crypto.scram_sha256(pw, salt, iterations)
 *       -> "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>" (RFC 5802,
 *          RFC 7677), the verifier PostgreSQL keeps in pg_authid
 *   crypto.base64_encode(s)     -> RFC 4648 base64 with padding
 *   crypto.base64_decode(s)     -> bytes | nil, "base64: why" (strict: the
 *          standard alphabet only, no whitespace, "=" optional but right,
 *          the unused low bits zero, so one text decodes one way)
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
#include "codec.h"

#define KEY_LEN 32
#define RANDOM_MAX 4096
#define B64_MAX (64 * 1024 * 1024)
#define SCRAM_SALT_MAX 64

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

static void push_hex(lua_State *L, const unsigned char *md, unsigned n)
{
	static const char hex[] = "0123456789abcdef";
	char out[2 * EVP_MAX_MD_SIZE];
	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	lua_pushlstring(L, out, 2 * (size_t)n);
}

static int l_hmac_sha256(lua_State *L)
{
	size_t klen, dlen;
	const char *key = luaL_checklstring(L, 1, &klen);
	const char *data = luaL_checklstring(L, 2, &dlen);
	int raw = lua_toboolean(L, 3);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	luaL_argcheck(L, klen >= 1 && klen <= (size_t)INT_MAX, 1, "the key must not be empty");
	if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)data, dlen, md, &n))
		return luaL_error(L, "crypto.hmac_sha256: OpenSSL HMAC failed");
	if (raw)
		lua_pushlstring(L, (const char *)md, n);
	else
		push_hex(L, md, n);
	return 1;
}

/* The iterations argument of pbkdf2 and scram, checked. */
static int check_iterations(lua_State *L, int arg)
{
	lua_Integer iter = luaL_checkinteger(L, arg);
	luaL_argcheck(L, iter >= 1 && iter <= 10000000, arg, "iterations must be 1..10000000");
	return (int)iter;
}

static int l_pbkdf2_sha256(lua_State *L)
{
	size_t plen, slen;
	const char *pw = luaL_checklstring(L, 1, &plen);
	const char *salt = luaL_checklstring(L, 2, &slen);
	int iter = check_iterations(L, 3);
	unsigned char out[32];
	luaL_argcheck(L, plen <= (size_t)INT_MAX && slen <= (size_t)INT_MAX, 1, "too long");
	if (!PKCS5_PBKDF2_HMAC(pw, (int)plen, (const unsigned char *)salt, (int)slen, iter,
	                       EVP_sha256(), (int)sizeof out, out))
		return luaL_error(L, "crypto.pbkdf2_sha256: OpenSSL PBKDF2 failed");
	lua_pushlstring(L, (const char *)out, sizeof out);
	OPENSSL_cleanse(out, sizeof out);
	return 1;
}

/* StoredKey and ServerKey of SCRAM-SHA-256 from the password; 1, or 0
 * when OpenSSL failed. */
static int scram_keys(const char *pw, size_t plen, const unsigned char *salt, size_t slen, int iter,
                      unsigned char *stored, unsigned char *server)
{
	unsigned char salted[32], client[32];
	unsigned n = 0;
	int ok = PKCS5_PBKDF2_HMAC(pw, (int)plen, salt, (int)slen, iter, EVP_sha256(), 32, salted)
		&& HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, client, &n)
		&& EVP_Digest(client, 32, stored, &n, EVP_sha256(), NULL)
		&& HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10, server, &n);
	OPENSSL_cleanse(salted, sizeof salted);
	OPENSSL_cleanse(client, sizeof client);
	return ok;
}

static int l_scram_sha256(lua_State *L)
{
	size_t plen, slen;
	const char *pw = luaL_checklstring(L, 1, &plen);
	const char *salt = luaL_checklstring(L, 2, &slen);
	int iter = check_iterations(L, 3);
	luaL_argcheck(L, plen <= (size_t)INT_MAX, 1, "too long");
	luaL_argcheck(L, slen >= 1 && slen <= SCRAM_SALT_MAX, 2, "the salt must be 1..64 bytes");
	unsigned char stored[32], server[32];
	unsigned char b_salt[4 * (SCRAM_SALT_MAX + 2) / 3 + 1], b_stored[45], b_server[45];
	if (!scram_keys(pw, plen, (const unsigned char *)salt, slen, iter, stored, server))
		return luaL_error(L, "crypto.scram_sha256: OpenSSL failed");
	EVP_EncodeBlock(b_salt, (const unsigned char *)salt, (int)slen);
	EVP_EncodeBlock(b_stored, stored, 32);
	EVP_EncodeBlock(b_server, server, 32);
	lua_pushfstring(L, "SCRAM-SHA-256$%d:%s$%s:%s", iter, (const char *)b_salt,
		(const char *)b_stored, (const char *)b_server);
	return 1;
}

static int l_base64_encode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	luaL_argcheck(L, n <= B64_MAX, 1, "too long");
	luaL_Buffer B;
	unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &B, 4 * ((n + 2) / 3) + 1);
	int w = EVP_EncodeBlock(out, (const unsigned char *)s, (int)n);
	if (w < 0)
		return luaL_error(L, "crypto.base64_encode: OpenSSL failed");
	luaL_pushresultsize(&B, (size_t)w);
	return 1;
}

/* Value of one base64 digit, -1 for anything else (NUL included). */
static int b64_value(char c)
{
	static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(digits, c) : NULL;
	return p ? (int)(p - digits) : -1;
}

/* The number of digits of s (without its "=" padding), or -1 with *why
 * (and *at, the offset of a bad character, or -1). */
static long b64_check(const char *s, size_t n, const char **why, long *at)
{
	size_t body = n;
	while (body > 0 && n - body < 2 && s[body - 1] == '=')
		body--;
	if ((body != n && n % 4 != 0) || body % 4 == 1) {
		*why = "base64: bad length or padding";
		return -1;
	}
	for (size_t i = 0; i < body; i++) {
		if (b64_value(s[i]) < 0) {
			*why = "base64: invalid character at offset %d";
			*at = (long)i;
			return -1;
		}
	}
	int last = body ? b64_value(s[body - 1]) : 0;
	if ((body % 4 == 2 && (last & 15)) || (body % 4 == 3 && (last & 3))) {
		*why = "base64: trailing bits are not zero";
		return -1;
	}
	return (long)body;
}

/* Also json.base64_decode (codec.h): the one base64 decoder of phanes. */
int phanes_base64_decode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	const char *why = NULL;
	long at = -1;
	luaL_argcheck(L, n <= B64_MAX, 1, "too long");
	long body = b64_check(s, n, &why, &at);
	if (body < 0) {
		luaL_pushfail(L);
		lua_pushfstring(L, why, (int)at);
		return 2;
	}
	size_t full = (size_t)body / 4 * 4, rest = (size_t)body - full;
	luaL_Buffer B;
	unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &B, full / 4 * 3 + 3);
	int w = full ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)full) : 0;
	if (w >= 0 && rest) {
		unsigned char last[4] = { '=', '=', '=', '=' };
		memcpy(last, s + full, rest);
		w = EVP_DecodeBlock(out + w, last, 4) == 3 ? w + (int)rest - 1 : -1;
	}
	if (w < 0)
		return luaL_error(L, "crypto.base64_decode: OpenSSL failed");
	luaL_pushresultsize(&B, (size_t)w);
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
		{"pbkdf2_sha256", l_pbkdf2_sha256},
		{"scram_sha256", l_scram_sha256},
		{"base64_encode", l_base64_encode},
		{"base64_decode", phanes_base64_decode},
		{"key", l_key},
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	return 1;
}
