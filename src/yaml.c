/* yaml.c: phanes.yaml.decode. libyaml's event parser builds Lua values and
 * records where every mapping, sequence, key and list item stands, so config
 * errors can name file:line:col. Plain scalars resolve by the YAML 1.2 core
 * schema (yaml_schema.c); yaml.encode is in yaml_emit.c. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "codec.h"

#define PARSER_MT "phanes.yaml.parser"
#define CORE_TAG "tag:yaml.org,2002:"

/* ---- the parser handle ---- */

/* The parser and its current event live in a userdata, so a raise while
 * building the result (out of memory included) frees them through __gc. */
struct yparser {
	yaml_parser_t parser;
	yaml_event_t event;
	int ready, has_event;
};

static void yparser_release(struct yparser *p)
{
	if (p->has_event) {
		yaml_event_delete(&p->event);
		p->has_event = 0;
	}
	if (p->ready) {
		yaml_parser_delete(&p->parser);
		p->ready = 0;
	}
}

static int yparser_gc(lua_State *L)
{
	yparser_release(luaL_checkudata(L, 1, PARSER_MT));
	return 0;
}

/* ---- decoding ---- */

struct dctx {
	lua_State *L;
	struct yparser *p;
	const char *name, *text;
	size_t len;
	int marks, anchors, weights; /* stack indexes */
	int depth;
	lua_Integer nodes; /* so far, every alias counted as what it expands to */
};

static char null_anchor; /* what anchors[name] holds for a null node */

static int derr(struct dctx *c, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;
	lua_pushfstring(c->L, "%s:%d:%d: ", c->name, (int)m.line + 1, (int)m.column + 1);
	va_start(ap, fmt);
	lua_pushvfstring(c->L, fmt, ap);
	va_end(ap);
	lua_concat(c->L, 2);
	return lua_error(c->L);
}

/* The byte where a mark stands (lines end at \n; columns count characters). */
static const char *at_mark(struct dctx *c, yaml_mark_t m)
{
	const char *s = c->text, *end = c->text + c->len;
	for (size_t line = 0; line < m.line && s < end; s++)
		if (*s == '\n')
			line++;
	for (size_t col = 0; col < m.column && s < end; col++)
		for (s++; s < end && (*s & 0xC0) == 0x80; s++)
			;
	return s;
}

static int parser_error(struct dctx *c)
{
	yaml_parser_t *ps = &c->p->parser;
	const char *problem = ps->problem ? ps->problem : "invalid YAML";
	yaml_mark_t m = ps->problem_mark;
	if (ps->error == YAML_MEMORY_ERROR) {
		lua_pushfstring(c->L, "%s: not enough memory to parse", c->name);
		return lua_error(c->L);
	}
	if (ps->error == YAML_READER_ERROR) {
		/* the reader reports a byte offset: count lines and characters */
		memset(&m, 0, sizeof m);
		for (size_t i = 0; i < ps->problem_offset && i < c->len; i++) {
			if (c->text[i] == '\n')
				m.line++, m.column = 0;
			else if ((c->text[i] & 0xC0) != 0x80)
				m.column++;
		}
		return derr(c, m, "%s (the text must be UTF-8)", problem);
	}
	const char *hint = "";
	const char *at = at_mark(c, m);
	if (at < c->text + c->len && *at == '\t' && strstr(problem, "tab") == NULL)
		hint = ": a tab, YAML indents with spaces only";
	else if (strcmp(problem, "mapping values are not allowed in this context") == 0)
		hint = " (check this line's indentation, or quote a value holding \": \")";
	if (ps->context)
		return derr(c, m, "%s (%s at %d:%d)%s", problem, ps->context,
			(int)ps->context_mark.line + 1, (int)ps->context_mark.column + 1, hint);
	return derr(c, m, "%s%s", problem, hint);
}

/* The next event; valid until the next call. */
static yaml_event_t *next_event(struct dctx *c)
{
	struct yparser *p = c->p;
	if (p->has_event) {
		yaml_event_delete(&p->event);
		p->has_event = 0;
	}
	if (!yaml_parser_parse(&p->parser, &p->event))
		parser_error(c);
	p->has_event = 1;
	return &p->event;
}

static void push_mark(struct dctx *c, yaml_mark_t m)
{
	lua_createtable(c->L, 0, 2);
	lua_pushinteger(c->L, (lua_Integer)m.line + 1);
	lua_setfield(c->L, -2, "line");
	lua_pushinteger(c->L, (lua_Integer)m.column + 1);
	lua_setfield(c->L, -2, "col");
}

/* One more node, or the n nodes an alias expands to. */
static void count_nodes(struct dctx *c, lua_Integer n, yaml_mark_t m, const char *alias)
{
	c->nodes += n;
	if (c->nodes <= CODEC_MAX_NODES)
		return;
	if (alias)
		derr(c, m, "alias *%s expands the document to more than %d nodes "
			"(aliases nested in aliases: an alias bomb?)", alias, CODEC_MAX_NODES);
	derr(c, m, "the document has more than %d nodes", CODEC_MAX_NODES);
}

/* An anchored node weighs the nodes counted since it started (before). */
static void set_weight(struct dctx *c, const yaml_char_t *anchor, lua_Integer before)
{
	if (anchor == NULL)
		return;
	lua_pushinteger(c->L, c->nodes - before);
	lua_setfield(c->L, c->weights, (const char *)anchor);
}

static void set_anchor(struct dctx *c, const yaml_char_t *anchor, int idx)
{
	if (anchor == NULL)
		return;
	idx = lua_absindex(c->L, idx);
	if (lua_isnil(c->L, idx))
		lua_pushlightuserdata(c->L, &null_anchor);
	else
		lua_pushvalue(c->L, idx);
	lua_setfield(c->L, c->anchors, (const char *)anchor);
}

static void push_alias(struct dctx *c, yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	int t = lua_getfield(c->L, c->anchors, name);
	if (t == LUA_TNIL)
		derr(c, ev->start_mark, "unknown alias *%s (no &%s before it)", name, name);
	if (lua_getfield(c->L, c->weights, name) == LUA_TNIL)
		derr(c, ev->start_mark, "alias *%s stands inside the node &%s it names (a cycle)", name, name);
	lua_Integer w = lua_tointeger(c->L, -1);
	lua_pop(c->L, 1);
	count_nodes(c, w, ev->start_mark, name);
	if (t == LUA_TLIGHTUSERDATA) {
		lua_pop(c->L, 1);
		lua_pushnil(c->L);
	}
}

static void push_resolved(struct dctx *c, enum yscalar k, struct yvalue *v, yaml_event_t *ev)
{
	switch (k) {
	case YS_NULL: lua_pushnil(c->L); break;
	case YS_BOOL: lua_pushboolean(c->L, v->b); break;
	case YS_INT: lua_pushinteger(c->L, v->i); break;
	case YS_FLOAT: lua_pushnumber(c->L, v->d); break;
	case YS_INT_RANGE:
		derr(c, ev->start_mark, "integer %s out of range (quote it to keep it as text)",
			(const char *)ev->data.scalar.value);
		break;
	case YS_STR:
		lua_pushlstring(c->L, (const char *)ev->data.scalar.value, ev->data.scalar.length);
		break;
	}
}

/* A scalar with an explicit tag: !!str, !!int, !!float, !!bool, !!null. */
static void push_tagged(struct dctx *c, yaml_event_t *ev, const char *tag)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;
	struct yvalue v;
	enum yscalar k = yaml_resolve(s, n, &v), want = YS_STR;
	if (strcmp(tag, "!") == 0 || strcmp(tag, CORE_TAG "str") == 0) {
		lua_pushlstring(c->L, s, n);
		return;
	}
	if (strcmp(tag, "!vault") == 0) { /* a vault reference: { ["!vault"] = "KEY" } (vault.lua) */
		lua_createtable(c->L, 0, 1);
		lua_pushlstring(c->L, s, n);
		lua_setfield(c->L, -2, "!vault");
		return;
	}
	if (strcmp(tag, CORE_TAG "null") == 0)
		want = YS_NULL;
	else if (strcmp(tag, CORE_TAG "bool") == 0)
		want = YS_BOOL;
	else if (strcmp(tag, CORE_TAG "int") == 0)
		want = YS_INT;
	else if (strcmp(tag, CORE_TAG "float") == 0)
		want = YS_FLOAT;
	else
		derr(c, ev->start_mark, "unsupported tag %s", tag);
	if (want == YS_FLOAT && (k == YS_INT || k == YS_INT_RANGE)) {
		v.d = k == YS_INT ? (double)v.i : strtod(s, NULL);
		k = YS_FLOAT;
	}
	if (k != want && !(want == YS_INT && k == YS_INT_RANGE))
		derr(c, ev->start_mark, "\"%s\" is not a valid %s", s, tag + strlen(CORE_TAG));
	push_resolved(c, k, &v, ev);
}

static void push_scalar(struct dctx *c, yaml_event_t *ev)
{
	const char *tag = (const char *)ev->data.scalar.tag;
	count_nodes(c, 1, ev->start_mark, NULL);
	set_weight(c, ev->data.scalar.anchor, c->nodes - 1);
	if (tag != NULL) {
		push_tagged(c, ev, tag);
	} else if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
		struct yvalue v;
		push_resolved(c, yaml_resolve((const char *)ev->data.scalar.value,
			ev->data.scalar.length, &v), &v, ev);
	} else {
		lua_pushlstring(c->L, (const char *)ev->data.scalar.value, ev->data.scalar.length);
	}
	set_anchor(c, ev->data.scalar.anchor, -1);
}

static void check_tag(struct dctx *c, const yaml_char_t *tag, const char *want, yaml_mark_t m)
{
	const char *t = (const char *)tag;
	if (t == NULL || strcmp(t, "!") == 0)
		return;
	if (strncmp(t, CORE_TAG, strlen(CORE_TAG)) == 0 && strcmp(t + strlen(CORE_TAG), want) == 0)
		return;
	derr(c, m, "unsupported tag %s", t);
}

/* A new table with its marks entry: pushes t, entry, keys. */
static int open_node(struct dctx *c, yaml_mark_t m, const yaml_char_t *anchor)
{
	lua_State *L = c->L;
	if (++c->depth > CODEC_MAX_DEPTH)
		derr(c, m, "nesting deeper than %d levels", CODEC_MAX_DEPTH);
	if (!lua_checkstack(L, 16))
		derr(c, m, "nesting too deep for the Lua stack");
	lua_newtable(L);
	int t = lua_gettop(L);
	set_anchor(c, anchor, t);
	push_mark(c, m);
	lua_pushvalue(L, t);
	lua_pushvalue(L, -2);
	lua_rawset(L, c->marks); /* t, entry */
	lua_newtable(L);
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "keys"); /* t, entry, keys */
	return t;
}

static void parse_node(struct dctx *c, yaml_event_t *ev);

static void parse_sequence(struct dctx *c, yaml_event_t *ev)
{
	lua_State *L = c->L;
	check_tag(c, ev->data.sequence_start.tag, "seq", ev->start_mark);
	const yaml_char_t *anchor = ev->data.sequence_start.anchor;
	lua_Integer before = c->nodes;
	count_nodes(c, 1, ev->start_mark, NULL);
	int t = open_node(c, ev->start_mark, anchor);
	lua_pushstring(L, anchor ? (const char *)anchor : ""); /* outlives the event */
	lua_Integer i = 0;
	while ((ev = next_event(c))->type != YAML_SEQUENCE_END_EVENT) {
		push_mark(c, ev->start_mark);
		lua_rawseti(L, t + 2, ++i);
		parse_node(c, ev); /* t, entry, keys, value */
		if (lua_isnil(L, -1))
			lua_pop(L, 1);
		else
			lua_rawseti(L, t, i);
	}
	lua_pushinteger(L, i);
	lua_setfield(L, t + 1, "n");
	set_weight(c, anchor ? (const yaml_char_t *)lua_tostring(L, t + 3) : NULL, before);
	lua_settop(L, t);
	c->depth--;
}

/* A mapping table has a marks entry without n. */
static int is_mapping(struct dctx *c, int idx)
{
	lua_State *L = c->L;
	int top = lua_gettop(L), yes = 0;
	idx = lua_absindex(L, idx);
	if (lua_istable(L, idx)) {
		lua_pushvalue(L, idx);
		if (lua_rawget(L, c->marks) == LUA_TTABLE)
			yes = lua_getfield(L, -1, "n") == LUA_TNIL;
	}
	lua_settop(L, top);
	return yes;
}

/* Pushes the key a scalar or alias event stands for; keys stay text as
 * written (`1: x` has the key "1"). Returns 1 for the merge key <<. */
static int push_key(struct dctx *c, yaml_event_t *ev)
{
	lua_State *L = c->L;
	if (ev->type == YAML_SCALAR_EVENT) {
		const char *s = (const char *)ev->data.scalar.value, *tag = (const char *)ev->data.scalar.tag;
		int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		if ((plain && tag == NULL && strcmp(s, "<<") == 0) ||
			(tag != NULL && strcmp(tag, CORE_TAG "merge") == 0))
			return 1;
		if (plain && tag == NULL && ev->data.scalar.length == 0)
			derr(c, ev->start_mark, "empty mapping key");
		if (ev->data.scalar.anchor != NULL) {
			push_scalar(c, ev);
			lua_pop(L, 1);
		}
		lua_pushlstring(L, s, ev->data.scalar.length);
		return 0;
	}
	if (ev->type == YAML_ALIAS_EVENT) {
		push_alias(c, ev);
		int t = lua_type(L, -1);
		if (t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
			luaL_tolstring(L, -1, NULL);
			lua_remove(L, -2);
		} else if (t != LUA_TSTRING) {
			derr(c, ev->start_mark, "a mapping key must be text, not %s", t == LUA_TNIL ? "null" : "a table");
		}
		return 0;
	}
	return derr(c, ev->start_mark, "a mapping key must be a scalar, not a %s",
		ev->type == YAML_MAPPING_START_EVENT ? "mapping" : "sequence");
}

/* Keys of the mapping src not in t yet go to t, with their marks. */
static void merge_one(struct dctx *c, int t, int keys, int src)
{
	lua_State *L = c->L;
	src = lua_absindex(L, src);
	lua_pushvalue(L, src);
	lua_rawget(L, c->marks);
	lua_getfield(L, -1, "keys");
	int src_keys = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, src)) { /* key, value */
		lua_pushvalue(L, -2);
		if (lua_rawget(L, keys) == LUA_TNIL) {
			lua_pushvalue(L, -3);
			lua_pushvalue(L, -3);
			lua_rawset(L, t);
			lua_pushvalue(L, -3);
			lua_pushvalue(L, -1);
			lua_rawget(L, src_keys);
			lua_rawset(L, keys);
		}
		lua_pop(L, 2);
	}
	lua_pop(L, 2);
}

/* << takes a mapping or a list of mappings; earlier ones win. */
static void apply_merge(struct dctx *c, int t, int keys, int merge, yaml_mark_t at)
{
	lua_State *L = c->L;
	if (is_mapping(c, merge)) {
		merge_one(c, t, keys, merge);
		return;
	}
	if (!lua_istable(L, merge))
		derr(c, at, "the merge key << needs a mapping or a list of mappings");
	lua_pushvalue(L, merge);
	lua_rawget(L, c->marks);
	lua_getfield(L, -1, "keys"); /* entry, item marks */
	lua_getfield(L, -2, "n");
	lua_Integer n = lua_tointeger(L, -1);
	lua_pop(L, 1);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, merge, i);
		if (!is_mapping(c, -1)) {
			lua_rawgeti(L, -2, i);
			lua_getfield(L, -1, "line");
			lua_getfield(L, -2, "col");
			lua_pushfstring(L, "%s:%d:%d: a merge list item must be a mapping", c->name,
				(int)lua_tointeger(L, -2), (int)lua_tointeger(L, -1));
			lua_error(L);
		}
		merge_one(c, t, keys, -1);
		lua_pop(L, 1);
	}
	lua_pop(L, 2);
}

static void duplicate_key(struct dctx *c, yaml_mark_t at)
{
	lua_State *L = c->L; /* key, first mark */
	lua_getfield(L, -1, "line");
	lua_getfield(L, -2, "col");
	derr(c, at, "duplicate key \"%s\" (first at %d:%d)", lua_tostring(L, -4),
		(int)lua_tointeger(L, -2), (int)lua_tointeger(L, -1));
}

static void parse_mapping(struct dctx *c, yaml_event_t *ev)
{
	lua_State *L = c->L;
	check_tag(c, ev->data.mapping_start.tag, "map", ev->start_mark);
	const yaml_char_t *anchor = ev->data.mapping_start.anchor;
	lua_Integer before = c->nodes;
	count_nodes(c, 1, ev->start_mark, NULL);
	int t = open_node(c, ev->start_mark, anchor);
	int keys = t + 2, merge = t + 3;
	yaml_mark_t merge_at = ev->start_mark;
	int has_merge = 0;
	lua_pushnil(L); /* t, entry, keys, merge */
	lua_pushstring(L, anchor ? (const char *)anchor : ""); /* outlives the event */
	anchor = anchor ? (const yaml_char_t *)lua_tostring(L, t + 4) : NULL;
	while ((ev = next_event(c))->type != YAML_MAPPING_END_EVENT) {
		yaml_mark_t at = ev->start_mark;
		if (push_key(c, ev)) {
			if (has_merge)
				derr(c, at, "duplicate merge key <<");
			has_merge = 1;
			parse_node(c, next_event(c));
			lua_replace(L, merge);
			merge_at = at;
			continue;
		}
		lua_pushvalue(L, -1);
		if (lua_rawget(L, keys) != LUA_TNIL)
			duplicate_key(c, at);
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		push_mark(c, at);
		lua_rawset(L, keys);
		parse_node(c, next_event(c)); /* t, entry, keys, merge, key, value */
		if (lua_isnil(L, -1))
			lua_pop(L, 2);
		else
			lua_rawset(L, t);
	}
	if (has_merge)
		apply_merge(c, t, keys, merge, merge_at);
	set_weight(c, anchor, before);
	lua_settop(L, t);
	c->depth--;
}

static void parse_node(struct dctx *c, yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT: push_scalar(c, ev); break;
	case YAML_ALIAS_EVENT: push_alias(c, ev); break;
	case YAML_SEQUENCE_START_EVENT: parse_sequence(c, ev); break;
	case YAML_MAPPING_START_EVENT: parse_mapping(c, ev); break;
	default: derr(c, ev->start_mark, "unexpected YAML event %d", (int)ev->type);
	}
}

/* Runs under lua_pcall: text, name, parser -> value, marks (raises a
 * "name:line:col: message" string on bad input). */
static int decode_protected(lua_State *L)
{
	struct dctx c;
	c.L = L;
	c.text = lua_tolstring(L, 1, &c.len);
	c.name = lua_tostring(L, 2);
	c.p = lua_touserdata(L, 3);
	c.depth = 0;
	c.nodes = 0;
	lua_newtable(L);
	c.marks = lua_gettop(L);
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, c.marks);
	lua_newtable(L);
	c.anchors = lua_gettop(L);
	lua_newtable(L);
	c.weights = lua_gettop(L);
	next_event(&c); /* stream start */
	if (next_event(&c)->type == YAML_STREAM_END_EVENT) {
		lua_pushnil(L);
	} else {
		parse_node(&c, next_event(&c));
		next_event(&c); /* document end: the first document is well formed */
	}
	lua_pushvalue(L, c.marks);
	return 2;
}

/* yaml.decode(text[, name]) -> value, marks | nil, "name:line:col: message"
 *   local cfg, marks = yaml.decode(file.read "phanes.yaml", "phanes.yaml")
 *   local m = marks[cfg].keys.redis  --> { line = 3, col = 1 }
 * See doc/internals.md for the schema and what marks holds. */
static int l_decode(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	luaL_optstring(L, 2, "<string>");
	lua_settop(L, 2);
	if (lua_isnil(L, 2)) {
		lua_pushliteral(L, "<string>");
		lua_replace(L, 2);
	}
	if (len > CODEC_MAX_TEXT) {
		luaL_pushfail(L);
		lua_pushfstring(L, "%s: %I bytes of YAML, more than the limit of %d MiB",
			lua_tostring(L, 2), (lua_Integer)len, (int)(CODEC_MAX_TEXT >> 20));
		return 2;
	}
	struct yparser *p = lua_newuserdatauv(L, sizeof *p, 0);
	memset(p, 0, sizeof *p);
	luaL_setmetatable(L, PARSER_MT);
	if (!yaml_parser_initialize(&p->parser))
		return luaL_error(L, "not enough memory");
	p->ready = 1;
	yaml_parser_set_input_string(&p->parser, (const unsigned char *)text, len);
	lua_pushcfunction(L, decode_protected);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	int status = lua_pcall(L, 3, 2, 0);
	yparser_release(p);
	if (status == LUA_OK)
		return 2;
	if (status != LUA_ERRRUN || lua_type(L, -1) != LUA_TSTRING)
		return lua_error(L);
	luaL_pushfail(L);
	lua_insert(L, -2);
	return 2;
}

int luaopen_phanes_yaml(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"decode", l_decode},
		{"encode", phanes_yaml_encode},
		{NULL, NULL},
	};
	if (luaL_newmetatable(L, PARSER_MT)) {
		lua_pushcfunction(L, yparser_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, yparser_gc);
		lua_setfield(L, -2, "__close");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
