/* gzip.c: ssh.gzip, the gzip format made with zlib (linked for libssh2
 * already): what a first contact streams to `gunzip` on the target.
 *
 *   local gz = ssh.gzip({ path = "/usr/bin/phanes" }, 6) -- or ssh.gzip(data)
 *
 * A file is read and compressed in chunks; only the compressed result
 * becomes a Lua string. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "ssh_int.h"

#define GZ_CHUNK (256 * 1024)

struct gz {
	z_stream z;
	int z_ok;
	FILE *f;
	char *in, *out;
	size_t outlen, outcap;
};

static void gz_free(struct gz *g)
{
	if (g->z_ok)
		deflateEnd(&g->z);
	if (g->f)
		fclose(g->f);
	free(g->in);
	free(g->out);
}

/* Deflate what is in z's input (finishing when flush is Z_FINISH) into
 * g->out, growing it. Returns 0 or -1 (out of memory / zlib error). */
static int gz_pump(struct gz *g, int flush)
{
	for (;;) {
		if (g->outcap - g->outlen < GZ_CHUNK) {
			size_t cap = g->outcap ? g->outcap * 2 : 2 * GZ_CHUNK;
			char *p = realloc(g->out, cap);
			if (p == NULL)
				return -1;
			g->out = p;
			g->outcap = cap;
		}
		g->z.next_out = (Bytef *)g->out + g->outlen;
		g->z.avail_out = (uInt)(g->outcap - g->outlen);
		int rc = deflate(&g->z, flush);
		g->outlen = g->outcap - g->z.avail_out;
		if (rc == Z_STREAM_END)
			return 0;
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return -1;
		if (flush != Z_FINISH && g->z.avail_in == 0 && g->z.avail_out != 0)
			return 0;
	}
}

static int gz_file(struct gz *g)
{
	g->in = malloc(GZ_CHUNK);
	if (g->in == NULL)
		return -1;
	size_t n;
	while ((n = fread(g->in, 1, GZ_CHUNK, g->f)) > 0) {
		g->z.next_in = (Bytef *)g->in;
		g->z.avail_in = (uInt)n;
		if (gz_pump(g, Z_NO_FLUSH) < 0)
			return -1;
	}
	return ferror(g->f) ? -2 : 0;
}

/* ssh.gzip(data | { path = file }[, level = 6]) -> gzip bytes | nil, err */
int ssh_l_gzip(lua_State *L)
{
	const char *data = NULL, *path = NULL;
	size_t len = 0;
	lua_Integer level = luaL_optinteger(L, 2, 6);
	luaL_argcheck(L, level >= 1 && level <= 9, 2, "level: 1 to 9");
	lua_settop(L, 1);
	if (lua_istable(L, 1)) {
		lua_getfield(L, 1, "path");
		path = luaL_checkstring(L, -1);
	} else {
		data = luaL_checklstring(L, 1, &len);
	}
	struct gz g;
	memset(&g, 0, sizeof g);
	if (path && (g.f = fopen(path, "rbe")) == NULL)
		return phanes_fail(L, path, errno);
	int rc = -1;
	/* 15 + 16: a gzip header and trailer around the deflate stream */
	if (deflateInit2(&g.z, (int)level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK) {
		g.z_ok = 1;
		if (path) {
			rc = gz_file(&g);
		} else {
			g.z.next_in = (Bytef *)data;
			g.z.avail_in = (uInt)len;
			rc = len > UINT32_MAX ? -1 : 0;
		}
		if (rc == 0)
			rc = gz_pump(&g, Z_FINISH);
	}
	if (rc == 0)
		lua_pushlstring(L, g.out ? g.out : "", g.outlen);
	gz_free(&g);
	if (rc == -2)
		return phanes_fail(L, path, EIO);
	if (rc != 0) {
		luaL_pushfail(L);
		lua_pushfstring(L, "gzip %s: out of memory or zlib error", path ? path : "data");
		return 2;
	}
	return 1;
}
