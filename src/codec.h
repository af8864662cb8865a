/* codec.h: what the YAML and JSON codecs share (yaml.c, yaml_emit.c, json.c):
 * an output buffer owned by a userdata, UTF-8 checks, float formatting that
 * reads back to the same double, the array marker and table walking. */
#ifndef PHANES_CODEC_H
#define PHANES_CODEC_H

#include <stddef.h>
#include "phanes.h"

/* Both codecs refuse to nest deeper than this (decode and encode). */
#define CODEC_MAX_DEPTH 512
#define CODEC_MAX_DEPTH_S "512"

/* yaml.decode refuses a text longer than this, and a document that holds
 * more nodes than this once every alias is counted as the copy it stands
 * for (an alias bomb: twelve lines that expand to a billion nodes). */
#define CODEC_MAX_TEXT (8u << 20)
#define CODEC_MAX_NODES 100000

/* A growing byte buffer inside a userdata whose __gc frees it, so a raise
 * while encoding leaks nothing. */
struct cbuf {
	char *p;
	size_t len, cap;
};
struct cbuf *cbuf_new(lua_State *L); /* pushes the userdata */
void cbuf_add(lua_State *L, struct cbuf *b, const char *s, size_t n);
void cbuf_adds(lua_State *L, struct cbuf *b, const char *s);
void cbuf_addc(lua_State *L, struct cbuf *b, char c);
void cbuf_indent(lua_State *L, struct cbuf *b, int n);
void cbuf_pushresult(lua_State *L, struct cbuf *b); /* pushes the text, frees */

/* Length of the valid UTF-8 prefix of s (== n when all of it is valid).
 * Overlong forms, surrogates and code points above U+10FFFF are invalid. */
size_t codec_utf8_valid(const char *s, size_t n);
/* Encodes code point cp as UTF-8 into out (4 bytes room); returns length. */
int codec_utf8_put(unsigned long cp, char *out);

/* Shortest "%.Ng" form of a finite d that reads back as d, with ".0" added
 * when it would otherwise read as an integer. out needs 32 bytes. */
void codec_fmt_float(double d, char *out);

/* The metatable json.array puts on a table: encode it as a list even empty. */
void codec_push_array_mt(lua_State *L);
int codec_is_marked_array(lua_State *L, int idx);

/* Where a value being encoded stands, for error messages: a.b[3].c */
struct cpath {
	const struct cpath *up;
	const char *key; /* NULL for a list index */
	size_t klen;
	lua_Integer idx;
};
/* Raises "<who>: <msg> at <path>" (or "at the top level"). */
int codec_path_error(lua_State *L, const char *who, const struct cpath *at, const char *msg);

/* A table to encode: an empty object, a list of n items, or n string keys. */
enum ctable { CT_EMPTY_MAP, CT_EMPTY_LIST, CT_LIST, CT_MAP };
/* Classifies the table at idx; raises (naming the path) on keys that are
 * neither all strings nor exactly 1..n. */
enum ctable codec_classify(lua_State *L, int idx, const char *who, const struct cpath *at, lua_Integer *n);
/* Pushes a userdata holding the n string keys of the table at idx, sorted
 * bytewise; returns the array. The strings stay alive through the table. */
struct ckey {
	const char *s;
	size_t len;
};
struct ckey *codec_sorted_keys(lua_State *L, int idx, lua_Integer n);

/* The visiting set: enter raises on a cycle or too deep nesting. */
void codec_enter(lua_State *L, int visiting, int idx, int depth, const char *who, const struct cpath *at);
void codec_leave(lua_State *L, int visiting, int idx);

/* YAML 1.2 core schema resolution of a plain scalar. */
enum yscalar { YS_NULL, YS_BOOL, YS_INT, YS_FLOAT, YS_STR, YS_INT_RANGE };
struct yvalue {
	int b;
	lua_Integer i;
	double d;
};
enum yscalar yaml_resolve(const char *s, size_t n, struct yvalue *v);

/* json.null: a light userdata pointing here (yaml.encode writes it as null). */
extern char codec_null;

/* json.base64_decode(s) -> bytes | nil, why (strict RFC 4648): the same
 * function as crypto.base64_decode, by EVP in crypto.c. */
int phanes_base64_decode(lua_State *L);

/* yaml.encode, in yaml_emit.c */
int phanes_yaml_encode(lua_State *L);

#endif
