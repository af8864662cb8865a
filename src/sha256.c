/* sha256.c: file.sha256(data) and file.sha256_file(path), hex digests by
 * OpenSSL's EVP (libcrypto is linked statically). */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "phanes.h"

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

int phanes_sha256(lua_State *L)
{
	size_t len;
	const char *data = luaL_checklstring(L, 1, &len);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL))
		return luaL_error(L, "file.sha256: OpenSSL digest failed");
	push_hex(L, md, n);
	return 1;
}

/* Digest of fd's contents; 0, or -1 with errno (EIO for an OpenSSL failure). */
static int digest_fd(int fd, unsigned char *md, unsigned *n)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(ctx);
		errno = ENOMEM;
		return -1;
	}
	char buf[65536];
	int r = 0;
	for (;;) {
		ssize_t got = read(fd, buf, sizeof buf);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			r = got < 0 ? -1 : 0;
			break;
		}
		if (!EVP_DigestUpdate(ctx, buf, (size_t)got)) {
			errno = EIO, r = -1;
			break;
		}
	}
	int e = errno;
	if (r == 0 && !EVP_DigestFinal_ex(ctx, md, n))
		e = EIO, r = -1;
	EVP_MD_CTX_free(ctx);
	errno = e;
	return r;
}

int phanes_sha256_file(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return phanes_fail(L, path, errno);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	int r = digest_fd(fd, md, &n);
	int e = errno;
	close(fd);
	if (r < 0)
		return phanes_fail(L, path, e);
	push_hex(L, md, n);
	return 1;
}
