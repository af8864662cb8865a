/* codec.c: helpers shared by the YAML and JSON codecs (see codec.h). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdint.h>
#include "codec.h"

#define CBUF_MT "phanes.codec.buffer"
#define ARRAY_MT "phanes.array"

char codec_null;

static int cbuf_gc(lua_State *L)
{
	struct cbuf *b = luaL_checkudata(L, 1, CBUF_MT);
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	return 0;
}

struct cbuf *cbuf_new(lua_State *L)
{
	struct cbuf *b = lua_newuserdatauv(L, sizeof *b, 0);
	b->p = NULL;
	b->len = b->cap = 0;
	if (luaL_newmetatable(L, CBUF_MT)) {
		lua_pushcfunction(L, cbuf_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, cbuf_gc);
		lua_setfield(L, -2, "__close");
	}
	lua_setmetatable(L, -2);
	return b;
}

void cbuf_add(lua_State *L, struct cbuf *b, const char *s, size_t n)
{
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n) {
			if (cap > SIZE_MAX / 2)
				luaL_error(L, "not enough memory");
			cap *= 2;
		}
		char *p = realloc(b->p, cap);
		if (p == NULL)
			luaL_error(L, "not enough memory");
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

void cbuf_adds(lua_State *L, struct cbuf *b, const char *s)
{
	cbuf_add(L, b, s, strlen(s));
}

void cbuf_addc(lua_State *L, struct cbuf *b, char c)
{
	cbuf_add(L, b, &c, 1);
}

void cbuf_indent(lua_State *L, struct cbuf *b, int n)
{
	static const char spaces[] = "                                ";
	while (n > 0) {
		int k = n < 32 ? n : 32;
		cbuf_add(L, b, spaces, (size_t)k);
		n -= k;
	}
}

void cbuf_pushresult(lua_State *L, struct cbuf *b)
{
	lua_pushlstring(L, b->p ? b->p : "", b->len);
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

size_t codec_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t k;
		unsigned long cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			k = 1, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			k = 2, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			k = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return i;
		}
		if (n - i <= k)
			return i;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return i;
		i += k + 1;
	}
	return n;
}

int codec_utf8_put(unsigned long cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	} else if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	} else if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

void codec_fmt_float(double d, char *out)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, 32, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			break;
	}
	if (strspn(out, "-0123456789") == strlen(out))
		strcat(out, ".0");
}

void codec_push_array_mt(lua_State *L)
{
	if (luaL_newmetatable(L, ARRAY_MT)) {
		lua_pushliteral(L, "array");
		lua_setfield(L, -2, "__name");
	}
}

int codec_is_marked_array(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return 0;
	luaL_getmetatable(L, ARRAY_MT);
	int same = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return same;
}

static void path_add(lua_State *L, luaL_Buffer *B, const struct cpath *p)
{
	if (p == NULL)
		return;
	path_add(L, B, p->up);
	if (p->key != NULL) {
		if (p->up != NULL)
			luaL_addchar(B, '.');
		luaL_addlstring(B, p->key, p->klen);
	} else {
		char num[32];
		snprintf(num, sizeof num, "[%lld]", (long long)p->idx);
		luaL_addstring(B, num);
	}
}

int codec_path_error(lua_State *L, const char *who, const struct cpath *at, const char *msg)
{
	luaL_Buffer B;
	luaL_buffinit(L, &B);
	luaL_addstring(&B, who);
	luaL_addstring(&B, ": ");
	luaL_addstring(&B, msg);
	if (at == NULL) {
		luaL_addstring(&B, " at the top level");
	} else {
		luaL_addstring(&B, " at ");
		path_add(L, &B, at);
	}
	luaL_pushresult(&B);
	return lua_error(L);
}

enum ctable codec_classify(lua_State *L, int idx, const char *who, const struct cpath *at, lua_Integer *n)
{
	lua_Integer count = 0, strs = 0, ints = 0, max = 0;
	idx = lua_absindex(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		count++;
		if (lua_type(L, -2) == LUA_TSTRING) {
			strs++;
		} else if (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1) {
			ints++;
			if (lua_tointeger(L, -2) > max)
				max = lua_tointeger(L, -2);
		}
		lua_pop(L, 1);
	}
	*n = count;
	int is_list = ints == count && max == count;
	if (codec_is_marked_array(L, idx)) {
		if (!is_list)
			codec_path_error(L, who, at, "a table marked as an array has keys other than 1..n");
		return count ? CT_LIST : CT_EMPTY_LIST;
	}
	if (count == 0)
		return CT_EMPTY_MAP;
	if (strs == count)
		return CT_MAP;
	if (is_list)
		return CT_LIST;
	if (strs > 0)
		codec_path_error(L, who, at, "a table mixes string keys with other keys");
	codec_path_error(L, who, at, "a table's keys are neither strings nor exactly 1..n");
	return CT_EMPTY_MAP; /* not reached */
}

static int key_cmp(const void *a, const void *b)
{
	const struct ckey *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s, y->s, n);
	if (c != 0)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

struct ckey *codec_sorted_keys(lua_State *L, int idx, lua_Integer n)
{
	idx = lua_absindex(L, idx);
	struct ckey *keys = lua_newuserdatauv(L, (size_t)n * sizeof *keys, 0);
	lua_Integer i = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (i < n && lua_type(L, -1) == LUA_TSTRING) {
			keys[i].s = lua_tolstring(L, -1, &keys[i].len);
			i++;
		}
	}
	qsort(keys, (size_t)i, sizeof *keys, key_cmp);
	return keys;
}

void codec_enter(lua_State *L, int visiting, int idx, int depth, const char *who, const struct cpath *at)
{
	if (depth > CODEC_MAX_DEPTH)
		codec_path_error(L, who, at, "nesting deeper than " CODEC_MAX_DEPTH_S " levels");
	luaL_checkstack(L, 8, "nesting too deep");
	lua_pushvalue(L, idx);
	if (lua_rawget(L, visiting) != LUA_TNIL)
		codec_path_error(L, who, at, "a table contains itself (a cycle)");
	lua_pop(L, 1);
	lua_pushvalue(L, idx);
	lua_pushboolean(L, 1);
	lua_rawset(L, visiting);
}

void codec_leave(lua_State *L, int visiting, int idx)
{
	lua_pushvalue(L, idx);
	lua_pushnil(L);
	lua_rawset(L, visiting);
}
