/* yaml_emit.c: phanes.yaml.encode, block style written by hand so the output
 * is stable: keys sorted bytewise, two-space indentation, strings plain only
 * when they read back as the same string (also for YAML 1.1 readers, so
 * `yes`/`on` are quoted), double-quoted otherwise. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "codec.h"

#define WHO "yaml.encode"
#define LONG_KEY 1000 /* YAML allows implicit keys up to 1024 characters */

struct ectx {
	lua_State *L;
	struct cbuf *b;
	int visiting;
};

/* Decodes one UTF-8 character at s (already validated); returns its length. */
static size_t utf8_next(const unsigned char *s, unsigned long *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if (s[0] < 0xE0) {
		*cp = ((unsigned long)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
		return 2;
	} else if (s[0] < 0xF0) {
		*cp = ((unsigned long)(s[0] & 0x0F) << 12) | ((unsigned long)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
		return 3;
	}
	*cp = ((unsigned long)(s[0] & 0x07) << 18) | ((unsigned long)(s[1] & 0x3F) << 12) |
		((unsigned long)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
	return 4;
}

/* Characters YAML allows unescaped (beyond ASCII): not C1 controls, line or
 * paragraph separators, the byte order mark, U+FFFE/U+FFFF. */
static int printable_high(unsigned long cp)
{
	return cp >= 0xA0 && cp != 0x2028 && cp != 0x2029 && cp != 0xFEFF && cp != 0xFFFE && cp != 0xFFFF;
}

static int yaml11_word(const char *s, size_t n)
{
	static const char *const words[] = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
		"on", "On", "ON", "off", "Off", "OFF", NULL};
	for (const char *const *w = words; *w; w++)
		if (strlen(*w) == n && memcmp(*w, s, n) == 0)
			return 1;
	return 0;
}

static int plain_char(const unsigned char *s, size_t i, size_t n)
{
	unsigned char ch = s[i];
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return 1;
	if (ch == ':')
		return i + 1 < n && s[i + 1] != ' ';
	return ch != 0 && strchr("_-./+@=~%()$ ", ch) != NULL;
}

/* Would s, written plain, read back as this very string? */
static int plain_ok(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	struct yvalue v;
	if (n == 0 || n > LONG_KEY || yaml_resolve(str, n, &v) != YS_STR || yaml11_word(str, n))
		return 0;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
		(s[0] >= '0' && s[0] <= '9') || s[0] == '_' || s[0] == '/' || s[0] >= 0x80))
		return 0;
	if (s[n - 1] == ' ')
		return 0;
	for (size_t i = 0; i < n;) {
		if (s[i] >= 0x80) {
			unsigned long cp;
			i += utf8_next(s + i, &cp);
			if (!printable_high(cp))
				return 0;
		} else if (!plain_char(s, i++, n)) {
			return 0;
		}
	}
	return 1;
}

static void emit_quoted(struct ectx *e, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	char esc[16];
	cbuf_addc(e->L, e->b, '"');
	for (size_t i = 0; i < n;) {
		unsigned long cp;
		size_t k = utf8_next(s + i, &cp);
		const char *rep = NULL;
		switch (cp) {
		case '"': rep = "\\\""; break;
		case '\\': rep = "\\\\"; break;
		case '\n': rep = "\\n"; break;
		case '\t': rep = "\\t"; break;
		case '\r': rep = "\\r"; break;
		case 0: rep = "\\0"; break;
		default:
			if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && !printable_high(cp))) {
				snprintf(esc, sizeof esc, "\\u%04lX", cp);
				rep = esc;
			}
		}
		if (rep)
			cbuf_adds(e->L, e->b, rep);
		else
			cbuf_add(e->L, e->b, str + i, k);
		i += k;
	}
	cbuf_addc(e->L, e->b, '"');
}

static void emit_string(struct ectx *e, const char *s, size_t n, const struct cpath *at)
{
	if (codec_utf8_valid(s, n) != n)
		codec_path_error(e->L, WHO, at, "a string is not valid UTF-8");
	if (plain_ok(s, n))
		cbuf_add(e->L, e->b, s, n);
	else
		emit_quoted(e, s, n);
}

static void emit_number(struct ectx *e, int idx)
{
	char num[40];
	if (lua_isinteger(e->L, idx)) {
		snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
	} else {
		double d = (double)lua_tonumber(e->L, idx);
		if (isnan(d))
			strcpy(num, ".nan");
		else if (isinf(d))
			strcpy(num, d > 0 ? ".inf" : "-.inf");
		else
			codec_fmt_float(d, num);
	}
	cbuf_adds(e->L, e->b, num);
}

/* A scalar, or an empty table as {} / []. */
static void emit_inline(struct ectx *e, int idx, enum ctable kind, const struct cpath *at)
{
	lua_State *L = e->L;
	size_t n;
	const char *s;
	switch (lua_type(L, idx)) {
	case LUA_TNIL: cbuf_adds(L, e->b, "null"); break;
	case LUA_TBOOLEAN: cbuf_adds(L, e->b, lua_toboolean(L, idx) ? "true" : "false"); break;
	case LUA_TNUMBER: emit_number(e, idx); break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &n);
		emit_string(e, s, n, at);
		break;
	case LUA_TTABLE: cbuf_adds(L, e->b, kind == CT_EMPTY_LIST ? "[]" : "{}"); break;
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == &codec_null) {
			cbuf_adds(L, e->b, "null");
			break;
		}
		/* fall through */
	default:
		lua_pushfstring(L, "cannot encode a %s", luaL_typename(L, idx));
		codec_path_error(L, WHO, at, lua_tostring(L, -1));
	}
}

static enum ctable kind_of(struct ectx *e, int idx, const struct cpath *at, lua_Integer *n)
{
	*n = 0;
	if (lua_type(e->L, idx) != LUA_TTABLE)
		return CT_EMPTY_MAP;
	return codec_classify(e->L, idx, WHO, at, n);
}

static void emit_block(struct ectx *e, int idx, enum ctable kind, lua_Integer n, int indent,
	int inline_first, int depth, const struct cpath *at);

/* After "key:" or "- ": a scalar on the same line, a block on the next
 * lines (a list item's block starts on the same line). */
static void emit_value(struct ectx *e, int idx, int indent, int in_list, int depth, const struct cpath *at)
{
	lua_Integer n;
	enum ctable kind = kind_of(e, idx, at, &n);
	if (kind == CT_LIST || kind == CT_MAP) {
		if (!in_list)
			cbuf_addc(e->L, e->b, '\n');
		emit_block(e, idx, kind, n, indent + 2, in_list, depth + 1, at);
		return;
	}
	if (!in_list)
		cbuf_addc(e->L, e->b, ' ');
	emit_inline(e, idx, kind, at);
	cbuf_addc(e->L, e->b, '\n');
}

static void emit_list(struct ectx *e, int t, lua_Integer n, int indent, int inline_first, int depth,
	const struct cpath *at)
{
	for (lua_Integer i = 1; i <= n; i++) {
		struct cpath here = {at, NULL, 0, i};
		if (i > 1 || !inline_first)
			cbuf_indent(e->L, e->b, indent);
		cbuf_add(e->L, e->b, "- ", 2);
		lua_rawgeti(e->L, t, i);
		emit_value(e, lua_gettop(e->L), indent, 1, depth, &here);
		lua_pop(e->L, 1);
	}
}

static void emit_map(struct ectx *e, int t, lua_Integer n, int indent, int inline_first, int depth,
	const struct cpath *at)
{
	struct ckey *keys = codec_sorted_keys(e->L, t, n);
	for (lua_Integer i = 0; i < n; i++) {
		struct cpath here = {at, keys[i].s, keys[i].len, 0};
		if (i > 0 || !inline_first)
			cbuf_indent(e->L, e->b, indent);
		if (keys[i].len > LONG_KEY) { /* explicit key: "? key" then ":" */
			cbuf_add(e->L, e->b, "? ", 2);
			emit_string(e, keys[i].s, keys[i].len, &here);
			cbuf_addc(e->L, e->b, '\n');
			cbuf_indent(e->L, e->b, indent);
		} else {
			emit_string(e, keys[i].s, keys[i].len, &here);
		}
		cbuf_addc(e->L, e->b, ':');
		lua_pushlstring(e->L, keys[i].s, keys[i].len);
		lua_rawget(e->L, t);
		emit_value(e, lua_gettop(e->L), indent, 0, depth, &here);
		lua_pop(e->L, 1);
	}
	lua_pop(e->L, 1); /* the keys */
}

static void emit_block(struct ectx *e, int idx, enum ctable kind, lua_Integer n, int indent,
	int inline_first, int depth, const struct cpath *at)
{
	codec_enter(e->L, e->visiting, idx, depth, WHO, at);
	if (kind == CT_LIST)
		emit_list(e, idx, n, indent, inline_first, depth, at);
	else
		emit_map(e, idx, n, indent, inline_first, depth, at);
	codec_leave(e->L, e->visiting, idx);
}

/* yaml.encode(value) -> text; raises (naming where) on values YAML cannot
 * hold: functions, userdata, cycles, invalid UTF-8, mixed tables.
 *   yaml.encode { redis = { port = 6379, bind = "127.0.0.1" } }
 *   --> "redis:\n  bind: 127.0.0.1\n  port: 6379\n" */
int phanes_yaml_encode(lua_State *L)
{
	struct ectx e;
	lua_Integer n;
	lua_settop(L, 1);
	e.L = L;
	lua_newtable(L);
	e.visiting = lua_gettop(L);
	e.b = cbuf_new(L);
	enum ctable kind = kind_of(&e, 1, NULL, &n);
	if (kind == CT_LIST || kind == CT_MAP) {
		emit_block(&e, 1, kind, n, 0, 0, 1, NULL);
	} else {
		emit_inline(&e, 1, kind, NULL);
		cbuf_addc(L, e.b, '\n');
	}
	cbuf_pushresult(L, e.b);
	return 1;
}
