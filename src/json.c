/* json.c: phanes.json, for the state file and --json output. Encoding is
 * deterministic (keys sorted bytewise) so state files diff cleanly; decoding
 * is strict RFC 8259 with "line:col: message" errors. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "codec.h"

#define WHO "json.encode"

/* ---- encoding ---- */

struct jenc {
	lua_State *L;
	struct cbuf *b;
	int visiting, pretty;
};

static void enc_string(struct jenc *e, const char *s, size_t n, const struct cpath *at)
{
	static const char hex[] = "0123456789abcdef";
	if (codec_utf8_valid(s, n) != n)
		codec_path_error(e->L, WHO, at, "a string is not valid UTF-8");
	cbuf_addc(e->L, e->b, '"');
	size_t run = 0; /* bytes copied as they are, in one go */
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		cbuf_add(e->L, e->b, s + run, i - run);
		run = i + 1;
		char esc[7] = {'\\', 0};
		switch (ch) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
		}
		cbuf_adds(e->L, e->b, esc);
	}
	cbuf_add(e->L, e->b, s + run, n - run);
	cbuf_addc(e->L, e->b, '"');
}

static void enc_number(struct jenc *e, int idx, const struct cpath *at)
{
	char num[40];
	if (lua_isinteger(e->L, idx)) {
		snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
	} else {
		double d = (double)lua_tonumber(e->L, idx);
		if (!isfinite(d))
			codec_path_error(e->L, WHO, at, isnan(d) ? "cannot encode NaN" : "cannot encode infinity");
		codec_fmt_float(d, num);
	}
	cbuf_adds(e->L, e->b, num);
}

static void newline(struct jenc *e, int depth)
{
	if (e->pretty) {
		cbuf_addc(e->L, e->b, '\n');
		cbuf_indent(e->L, e->b, 2 * depth);
	}
}

static void enc_value(struct jenc *e, int idx, int depth, const struct cpath *at);

static void enc_list(struct jenc *e, int t, lua_Integer n, int depth, const struct cpath *at)
{
	cbuf_addc(e->L, e->b, '[');
	for (lua_Integer i = 1; i <= n; i++) {
		struct cpath here = {at, NULL, 0, i};
		if (i > 1)
			cbuf_addc(e->L, e->b, ',');
		newline(e, depth);
		lua_rawgeti(e->L, t, i);
		enc_value(e, lua_gettop(e->L), depth, &here);
		lua_pop(e->L, 1);
	}
	newline(e, depth - 1);
	cbuf_addc(e->L, e->b, ']');
}

static void enc_map(struct jenc *e, int t, lua_Integer n, int depth, const struct cpath *at)
{
	struct ckey *keys = codec_sorted_keys(e->L, t, n);
	cbuf_addc(e->L, e->b, '{');
	for (lua_Integer i = 0; i < n; i++) {
		struct cpath here = {at, keys[i].s, keys[i].len, 0};
		if (i > 0)
			cbuf_addc(e->L, e->b, ',');
		newline(e, depth);
		enc_string(e, keys[i].s, keys[i].len, &here);
		cbuf_add(e->L, e->b, ": ", e->pretty ? 2 : 1);
		lua_pushlstring(e->L, keys[i].s, keys[i].len);
		lua_rawget(e->L, t);
		enc_value(e, lua_gettop(e->L), depth, &here);
		lua_pop(e->L, 1);
	}
	lua_pop(e->L, 1); /* the keys */
	newline(e, depth - 1);
	cbuf_addc(e->L, e->b, '}');
}

static void enc_table(struct jenc *e, int idx, int depth, const struct cpath *at)
{
	lua_Integer n;
	enum ctable kind = codec_classify(e->L, idx, WHO, at, &n);
	if (kind == CT_EMPTY_MAP || kind == CT_EMPTY_LIST) {
		cbuf_adds(e->L, e->b, kind == CT_EMPTY_MAP ? "{}" : "[]");
		return;
	}
	codec_enter(e->L, e->visiting, idx, depth + 1, WHO, at);
	if (kind == CT_LIST)
		enc_list(e, idx, n, depth + 1, at);
	else
		enc_map(e, idx, n, depth + 1, at);
	codec_leave(e->L, e->visiting, idx);
}

static void enc_value(struct jenc *e, int idx, int depth, const struct cpath *at)
{
	lua_State *L = e->L;
	size_t n;
	const char *s;
	switch (lua_type(L, idx)) {
	case LUA_TNIL: cbuf_adds(L, e->b, "null"); break;
	case LUA_TBOOLEAN: cbuf_adds(L, e->b, lua_toboolean(L, idx) ? "true" : "false"); break;
	case LUA_TNUMBER: enc_number(e, idx, at); break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &n);
		enc_string(e, s, n, at);
		break;
	case LUA_TTABLE: enc_table(e, idx, depth, at); break;
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

/* json.encode(value[, {pretty = true}]) -> text; raises, naming where, on
 * functions, userdata, cycles, NaN/infinity, invalid UTF-8, mixed tables.
 *   json.encode({ b = 1, a = { 1, 2 } })  --> {"a":[1,2],"b":1}
 * Pretty output indents by two spaces and ends with a newline. */
static int l_encode(lua_State *L)
{
	struct jenc e;
	lua_settop(L, 2);
	e.L = L;
	e.pretty = 0;
	if (!lua_isnil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_getfield(L, 2, "pretty");
		e.pretty = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	lua_newtable(L);
	e.visiting = lua_gettop(L);
	e.b = cbuf_new(L);
	enc_value(&e, 1, 0, NULL);
	if (e.pretty)
		cbuf_addc(L, e.b, '\n');
	cbuf_pushresult(L, e.b);
	return 1;
}

/* ---- decoding ---- */

struct jdec {
	lua_State *L;
	const char *text, *p, *end;
	int depth;
};

static int jerr(struct jdec *d, const char *at, const char *fmt, ...)
{
	int line = 1, col = 1;
	va_list ap;
	for (const char *s = d->text; s < at; s++) {
		if (*s == '\n')
			line++, col = 1;
		else if ((*s & 0xC0) != 0x80)
			col++;
	}
	lua_pushfstring(d->L, "%d:%d: ", line, col);
	va_start(ap, fmt);
	lua_pushvfstring(d->L, fmt, ap);
	va_end(ap);
	lua_concat(d->L, 2);
	return lua_error(d->L);
}

static void skip_ws(struct jdec *d)
{
	while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
		d->p++;
}

static int unexpected(struct jdec *d, const char *what)
{
	if (d->p >= d->end)
		return jerr(d, d->p, "unexpected end of input (expected %s)", what);
	unsigned char ch = (unsigned char)*d->p;
	if (ch >= 0x20 && ch < 0x7F)
		return jerr(d, d->p, "unexpected '%c' (expected %s)", ch, what);
	char hex[8];
	snprintf(hex, sizeof hex, "0x%02x", ch);
	return jerr(d, d->p, "unexpected byte %s (expected %s)", hex, what);
}

static int hex4(struct jdec *d, const char *at)
{
	int v = 0;
	if (d->end - at < 4)
		jerr(d, at, "bad \\u escape (four hex digits needed)");
	for (int i = 0; i < 4; i++) {
		char ch = at[i];
		int x = ch >= '0' && ch <= '9' ? ch - '0'
			: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
			: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
		if (x < 0)
			jerr(d, at, "bad \\u escape (four hex digits needed)");
		v = v * 16 + x;
	}
	return v;
}

/* At the backslash of \uXXXX: one code point, a surrogate pair joined. */
static unsigned long unicode_escape(struct jdec *d)
{
	const char *start = d->p;
	unsigned long cp = (unsigned long)hex4(d, d->p + 2);
	d->p += 6;
	if (cp >= 0xDC00 && cp <= 0xDFFF)
		jerr(d, start, "lone low surrogate (a pair starts with \\uD800-\\uDBFF)");
	if (cp >= 0xD800 && cp <= 0xDBFF) {
		if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u')
			jerr(d, start, "high surrogate without its low half");
		unsigned long lo = (unsigned long)hex4(d, d->p + 2);
		if (lo < 0xDC00 || lo > 0xDFFF)
			jerr(d, start, "high surrogate without its low half");
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		d->p += 6;
	}
	return cp;
}

static void escape(struct jdec *d, luaL_Buffer *B)
{
	char out[4];
	if (d->end - d->p < 2)
		jerr(d, d->p, "unfinished escape in a string");
	switch (d->p[1]) {
	case '"': luaL_addchar(B, '"'); break;
	case '\\': luaL_addchar(B, '\\'); break;
	case '/': luaL_addchar(B, '/'); break;
	case 'b': luaL_addchar(B, '\b'); break;
	case 'f': luaL_addchar(B, '\f'); break;
	case 'n': luaL_addchar(B, '\n'); break;
	case 'r': luaL_addchar(B, '\r'); break;
	case 't': luaL_addchar(B, '\t'); break;
	case 'u':
		luaL_addlstring(B, out, (size_t)codec_utf8_put(unicode_escape(d), out));
		return;
	default: jerr(d, d->p, "unknown escape \\%c", d->p[1]);
	}
	d->p += 2;
}

/* At the opening quote; pushes the string. */
static void dec_string(struct jdec *d)
{
	const char *start = d->p++;
	luaL_Buffer B;
	luaL_buffinit(d->L, &B);
	for (;;) {
		const char *run = d->p;
		while (d->p < d->end && *d->p != '"' && *d->p != '\\' && (unsigned char)*d->p >= 0x20)
			d->p++;
		luaL_addlstring(&B, run, (size_t)(d->p - run));
		if (d->p >= d->end)
			jerr(d, start, "unclosed string");
		if (*d->p == '"')
			break;
		if (*d->p != '\\')
			jerr(d, d->p, "control character in a string (it must be escaped)");
		escape(d, &B);
	}
	d->p++;
	luaL_pushresult(&B);
}

static size_t digits(const char *p, const char *end)
{
	const char *s = p;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return (size_t)(p - s);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?: an integer when it has no
 * fraction or exponent and fits, a float otherwise (Lua's own reading). */
static void dec_number(struct jdec *d)
{
	const char *s = d->p, *p = d->p, *end = d->end;
	size_t n;
	if (p < end && *p == '-')
		p++;
	n = digits(p, end);
	if (n == 0 || (n > 1 && *p == '0'))
		jerr(d, s, "bad number");
	p += n;
	if (p < end && *p == '.') {
		if ((n = digits(p + 1, end)) == 0)
			jerr(d, s, "bad number (digits needed after the point)");
		p += n + 1;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if ((n = digits(p, end)) == 0)
			jerr(d, s, "bad number (digits needed in the exponent)");
		p += n;
	}
	lua_pushlstring(d->L, s, (size_t)(p - s));
	if (lua_stringtonumber(d->L, lua_tostring(d->L, -1)) == 0)
		jerr(d, s, "bad number");
	if (!lua_isinteger(d->L, -1) && !isfinite(lua_tonumber(d->L, -1)))
		jerr(d, s, "number out of range (beyond a double)");
	lua_remove(d->L, -2);
	d->p = p;
}

static void dec_value(struct jdec *d);

static void open_nested(struct jdec *d)
{
	if (++d->depth > CODEC_MAX_DEPTH)
		jerr(d, d->p, "nesting deeper than %d levels", CODEC_MAX_DEPTH);
	if (!lua_checkstack(d->L, 8))
		jerr(d, d->p, "nesting too deep for the Lua stack");
	d->p++;
	lua_newtable(d->L);
	skip_ws(d);
}

static void dec_array(struct jdec *d)
{
	open_nested(d);
	codec_push_array_mt(d->L);
	lua_setmetatable(d->L, -2);
	if (d->p < d->end && *d->p == ']') {
		d->p++;
		d->depth--;
		return;
	}
	for (lua_Integer i = 1;; i++) {
		dec_value(d);
		lua_rawseti(d->L, -2, i);
		skip_ws(d);
		if (d->p < d->end && *d->p == ']')
			break;
		if (d->p >= d->end || *d->p != ',')
			unexpected(d, "',' or ']'");
		d->p++;
	}
	d->p++;
	d->depth--;
}

static void dec_object(struct jdec *d)
{
	open_nested(d);
	if (d->p < d->end && *d->p == '}') {
		d->p++;
		d->depth--;
		return;
	}
	for (;;) {
		skip_ws(d);
		const char *key_at = d->p;
		if (d->p >= d->end || *d->p != '"')
			unexpected(d, "a string key");
		dec_string(d);
		lua_pushvalue(d->L, -1);
		if (lua_rawget(d->L, -3) != LUA_TNIL)
			jerr(d, key_at, "duplicate key \"%s\"", lua_tostring(d->L, -2));
		lua_pop(d->L, 1);
		skip_ws(d);
		if (d->p >= d->end || *d->p != ':')
			unexpected(d, "':'");
		d->p++;
		dec_value(d);
		lua_rawset(d->L, -3);
		skip_ws(d);
		if (d->p < d->end && *d->p == '}')
			break;
		if (d->p >= d->end || *d->p != ',')
			unexpected(d, "',' or '}'");
		d->p++;
	}
	d->p++;
	d->depth--;
}

static int literal(struct jdec *d, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(d->end - d->p) >= n && memcmp(d->p, word, n) == 0) {
		d->p += n;
		return 1;
	}
	return 0;
}

static void dec_value(struct jdec *d)
{
	skip_ws(d);
	char ch = d->p < d->end ? *d->p : 0;
	if (ch == '{')
		dec_object(d);
	else if (ch == '[')
		dec_array(d);
	else if (ch == '"')
		dec_string(d);
	else if (ch == '-' || (ch >= '0' && ch <= '9'))
		dec_number(d);
	else if (literal(d, "true"))
		lua_pushboolean(d->L, 1);
	else if (literal(d, "false"))
		lua_pushboolean(d->L, 0);
	else if (literal(d, "null"))
		lua_pushlightuserdata(d->L, &codec_null);
	else
		unexpected(d, "a value");
}

/* Under lua_pcall: text -> value (raises "line:col: message"). */
static int decode_protected(lua_State *L)
{
	struct jdec d;
	size_t len;
	d.L = L;
	d.text = d.p = lua_tolstring(L, 1, &len);
	d.end = d.text + len;
	d.depth = 0;
	size_t valid = codec_utf8_valid(d.text, len);
	if (valid != len)
		jerr(&d, d.text + valid, "invalid UTF-8");
	if (len >= 3 && memcmp(d.p, "\xEF\xBB\xBF", 3) == 0)
		d.p += 3;
	dec_value(&d);
	skip_ws(&d);
	if (d.p != d.end)
		unexpected(&d, "the end after the value");
	return 1;
}

/* json.decode(text) -> value | nil, "line:col: message"
 *   json.decode '{"a": [1, 2.5, null]}'  --> { a = { 1, 2.5, json.null } }
 * Arrays come back marked with json.array, so they encode as arrays again. */
static int l_decode(lua_State *L)
{
	luaL_checkstring(L, 1);
	lua_settop(L, 1);
	lua_pushcfunction(L, decode_protected);
	lua_insert(L, 1);
	int status = lua_pcall(L, 1, 1, 0);
	if (status == LUA_OK)
		return 1;
	if (status != LUA_ERRRUN || lua_type(L, -1) != LUA_TSTRING)
		return lua_error(L);
	luaL_pushfail(L);
	lua_insert(L, -2);
	return 2;
}

/* json.array([t]) -> t, marked so it encodes as a JSON array even empty. */
static int l_array(lua_State *L)
{
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	if (lua_getmetatable(L, 1) && !codec_is_marked_array(L, 1))
		return luaL_argerror(L, 1, "the table already has a metatable");
	lua_settop(L, 1);
	codec_push_array_mt(L);
	lua_setmetatable(L, 1);
	return 1;
}

int luaopen_phanes_json(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"encode", l_encode},
		{"decode", l_decode},
		{"array", l_array},
		{"base64_decode", phanes_base64_decode},
		{"null", NULL},
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	lua_pushlightuserdata(L, &codec_null);
	lua_setfield(L, -2, "null");
	return 1;
}
