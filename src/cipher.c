/* cipher.c: the phanes.cipher primitives, for the secrets vault. Nothing
 * here is hand-written cryptography: scrypt and AES-256-GCM come from
 * OpenSSL 3's EVP (libcrypto is linked statically), random bytes from
 * RAND_bytes (base64: crypto.base64_encode/decode, src/crypto.c).
 *
 *   local k <close> = cipher.kdf(password, salt, { n = 32768, r = 8, p = 1 })
 *   k:check()                        --> 16 bytes that tell a wrong password
 *   local ct, tag = cipher.seal(k, nonce, aad, plaintext)
 *   local pt, err = cipher.open(k, nonce, aad, ct, tag)   -- nil, "authentication failed"
 *   cipher.random(12)
 *
 * The derived key lives only in a userdata (never a Lua string) and is
 * wiped with OPENSSL_cleanse by k:close(), __close or __gc. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include "cipher.h"

#define KEY_MT "phanes.cipher.key"
#define KEY_LEN 32
#define CHECK_LEN 16
#define TAG_LEN 16
#define NONCE_LEN 12
#define MAX_LEN ((size_t)INT_MAX - 64)

struct key {
	unsigned char k[KEY_LEN + CHECK_LEN]; /* AES key, then the password check */
	int set;
};

static int key_close(lua_State *L)
{
	struct key *k = luaL_checkudata(L, 1, KEY_MT);
	OPENSSL_cleanse(k->k, sizeof k->k);
	k->set = 0;
	return 0;
}

static struct key *check_key(lua_State *L, int idx)
{
	struct key *k = luaL_checkudata(L, idx, KEY_MT);
	luaL_argcheck(L, k->set, idx, "the key is closed");
	return k;
}

static lua_Integer opt_param(lua_State *L, int t, const char *name, lua_Integer max)
{
	lua_getfield(L, t, name);
	lua_Integer v = luaL_checkinteger(L, -1);
	lua_pop(L, 1);
	if (v < 1 || v > max)
		luaL_error(L, "cipher.kdf: %s must be 1..%d", name, (int)max);
	return v;
}

/* Runs scrypt into out; 1 on success. */
static int scrypt(const char *pw, size_t pwlen, const char *salt, size_t slen,
		  uint64_t n, uint32_t r, uint32_t p, unsigned char *out, size_t outlen)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	uint64_t maxmem = (uint64_t)1 << 30;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pw, pwlen),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, slen),
		OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
		OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
		OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
		OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
		OSSL_PARAM_construct_end(),
	};
	int ok = ctx != NULL && EVP_KDF_derive(ctx, out, outlen, params) == 1;
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return ok;
}

/* cipher.kdf(password, salt, {n, r, p}) -> key | nil, "scrypt: why" */
static int l_kdf(lua_State *L)
{
	size_t pwlen, slen;
	const char *pw = luaL_checklstring(L, 1, &pwlen);
	const char *salt = luaL_checklstring(L, 2, &slen);
	luaL_checktype(L, 3, LUA_TTABLE);
	lua_Integer n = opt_param(L, 3, "n", (lua_Integer)1 << 30);
	lua_Integer r = opt_param(L, 3, "r", 64);
	lua_Integer p = opt_param(L, 3, "p", 64);
	luaL_argcheck(L, (n & (n - 1)) == 0 && n > 1, 3, "n must be a power of 2 above 1");
	luaL_argcheck(L, slen >= 8 && pwlen <= MAX_LEN, 2, "the salt must be 8 bytes or more");
	struct key *k = lua_newuserdatauv(L, sizeof *k, 0);
	memset(k, 0, sizeof *k);
	luaL_setmetatable(L, KEY_MT);
	if (!scrypt(pw, pwlen, salt, slen, (uint64_t)n, (uint32_t)r, (uint32_t)p, k->k, sizeof k->k)) {
		OPENSSL_cleanse(k->k, sizeof k->k);
		return phanes_failf(L, "scrypt: OpenSSL could not derive the key (N=%d, r=%d, p=%d)",
				    (int)n, (int)r, (int)p);
	}
	k->set = 1;
	return 1;
}

/* key:export() -> its 48 bytes (AES key, check), only to hand them to a
 * child phanes over a pipe (a fleet: one KDF a run); cipher.key(bytes)
 * makes a key of them again. */
static int l_key_export(lua_State *L)
{
	struct key *k = check_key(L, 1);
	lua_pushlstring(L, (const char *)k->k, sizeof k->k);
	return 1;
}

static int l_key_import(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	luaL_argcheck(L, n == KEY_LEN + CHECK_LEN, 1, "a key has 48 bytes");
	struct key *k = lua_newuserdatauv(L, sizeof *k, 0);
	memcpy(k->k, s, sizeof k->k);
	k->set = 1;
	luaL_setmetatable(L, KEY_MT);
	return 1;
}

/* key:check() -> the 16 bytes after the AES key: stored in the header,
 * they tell a wrong password from a tampered file. */
static int l_key_check(lua_State *L)
{
	struct key *k = check_key(L, 1);
	lua_pushlstring(L, (const char *)k->k + KEY_LEN, CHECK_LEN);
	return 1;
}

/* key:equals_check(s) -> boolean, in constant time */
static int l_key_matches(lua_State *L)
{
	struct key *k = check_key(L, 1);
	size_t n;
	const char *s = luaL_checklstring(L, 2, &n);
	lua_pushboolean(L, n == CHECK_LEN && CRYPTO_memcmp(s, k->k + KEY_LEN, CHECK_LEN) == 0);
	return 1;
}

/* One GCM pass (enc 1: seal, 0: open) of in into out; tag is written
 * (seal) or checked (open). 1 on success, 0 on failure (a bad tag too). */
static int gcm(int enc, const struct key *k, const char *nonce, const char *aad, size_t aadlen,
	       const char *in, size_t len, unsigned char *out, unsigned char *tag)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0;
	int ok = ctx != NULL &&
		 EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1 &&
		 EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
		 EVP_CipherInit_ex(ctx, NULL, NULL, k->k, (const unsigned char *)nonce, enc) == 1 &&
		 EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)aadlen) == 1 &&
		 EVP_CipherUpdate(ctx, out, &n, (const unsigned char *)in, (int)len) == 1 &&
		 (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1) &&
		 EVP_CipherFinal_ex(ctx, out + n, &fin) == 1 &&
		 (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1);
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

/* A malloc'd buffer owned by a userdata (freed and wiped by __gc), so a
 * raise while it is held leaks nothing. */
#define BUF_MT "phanes.cipher.buf"
struct buf {
	unsigned char *p;
	size_t len;
};

static int buf_gc(lua_State *L)
{
	struct buf *b = luaL_checkudata(L, 1, BUF_MT);
	if (b->p) {
		OPENSSL_cleanse(b->p, b->len);
		free(b->p);
	}
	b->p = NULL;
	b->len = 0;
	return 0;
}

static unsigned char *new_buf(lua_State *L, size_t len)
{
	struct buf *b = lua_newuserdatauv(L, sizeof *b, 0);
	b->p = NULL;
	b->len = 0;
	luaL_setmetatable(L, BUF_MT);
	b->p = malloc(len + 1);
	if (b->p == NULL)
		luaL_error(L, "cipher: out of memory");
	b->len = len + 1;
	return b->p;
}

static const char *check_nonce(lua_State *L, int idx)
{
	size_t n;
	const char *s = luaL_checklstring(L, idx, &n);
	luaL_argcheck(L, n == NONCE_LEN, idx, "the nonce must be 12 bytes");
	return s;
}

/* cipher.seal(key, nonce, aad, plaintext) -> ciphertext, tag */
static int l_seal(lua_State *L)
{
	struct key *k = check_key(L, 1);
	const char *nonce = check_nonce(L, 2);
	size_t alen, len;
	const char *aad = luaL_checklstring(L, 3, &alen);
	const char *pt = luaL_checklstring(L, 4, &len);
	luaL_argcheck(L, alen <= MAX_LEN && len <= MAX_LEN, 4, "too long");
	unsigned char *out = new_buf(L, len), tag[TAG_LEN];
	if (!gcm(1, k, nonce, aad, alen, pt, len, out, tag))
		return luaL_error(L, "cipher.seal: OpenSSL AES-256-GCM failed");
	lua_pushlstring(L, (const char *)out, len);
	lua_pushlstring(L, (const char *)tag, TAG_LEN);
	return 2;
}

/* cipher.open(key, nonce, aad, ciphertext, tag) -> plaintext
 * | nil, "authentication failed" (wrong key, or any byte altered) */
static int l_open(lua_State *L)
{
	struct key *k = check_key(L, 1);
	const char *nonce = check_nonce(L, 2);
	size_t alen, len, tlen;
	const char *aad = luaL_checklstring(L, 3, &alen);
	const char *ct = luaL_checklstring(L, 4, &len);
	const char *tag = luaL_checklstring(L, 5, &tlen);
	luaL_argcheck(L, alen <= MAX_LEN && len <= MAX_LEN, 4, "too long");
	luaL_argcheck(L, tlen == TAG_LEN, 5, "the tag must be 16 bytes");
	unsigned char t[TAG_LEN];
	memcpy(t, tag, TAG_LEN);
	unsigned char *out = new_buf(L, len);
	if (!gcm(0, k, nonce, aad, alen, ct, len, out, t)) {
		OPENSSL_cleanse(out, len);
		lua_pushnil(L);
		lua_pushliteral(L, "authentication failed");
		return 2;
	}
	lua_pushlstring(L, (const char *)out, len); /* the buffer is wiped by its __gc */
	return 1;
}

/* cipher.random(n) -> n bytes from RAND_bytes */
static int l_random(lua_State *L)
{
	lua_Integer n = luaL_checkinteger(L, 1);
	luaL_argcheck(L, n >= 1 && n <= 4096, 1, "1..4096 bytes");
	unsigned char b[4096];
	if (RAND_bytes(b, (int)n) != 1)
		return luaL_error(L, "cipher.random: OpenSSL RAND_bytes failed");
	lua_pushlstring(L, (const char *)b, (size_t)n);
	OPENSSL_cleanse(b, (size_t)n);
	return 1;
}

int luaopen_phanes_cipher(lua_State *L)
{
	static const luaL_Reg key_methods[] = {
		{"check", l_key_check},
		{"matches", l_key_matches},
		{"export", l_key_export},
		{"close", key_close},
		{NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"kdf", l_kdf},
		{"key", l_key_import},
		{"seal", l_seal},
		{"open", l_open},
		{"random", l_random},
		{"wipe", phanes_cipher_wipe},
		{"append", phanes_cipher_append},
		{"run_tty", phanes_cipher_run_tty},
		{NULL, NULL},
	};
	if (luaL_newmetatable(L, KEY_MT)) {
		luaL_newlib(L, key_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, key_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, key_close);
		lua_setfield(L, -2, "__close");
	}
	lua_pop(L, 1);
	if (luaL_newmetatable(L, BUF_MT)) {
		lua_pushcfunction(L, buf_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
