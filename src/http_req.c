/* http_req.c: a request of phanes.http as Lua sees it: what came in
 * (method, path, query, headers, body, peer) and how to answer it, whole
 * (respond) or chunked (start, send..., finish). The userdata keeps the
 * evhttp_request until it is answered; the server's list of live requests
 * lets it answer what Lua left pending when it closes. */
#include <errno.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include "http.h"

/* ---- requests ---- */

static void unlink_req(struct hreq *h)
{
	if (h->srv) {
		if (h->prev)
			h->prev->next = h->next;
		else
			h->srv->live = h->next;
		if (h->next)
			h->next->prev = h->prev;
	}
	h->next = h->prev = NULL;
	h->srv = NULL;
	h->req = NULL;
}

/* Answers what Lua left unanswered (so libevent frees the request) and
 * forgets it. Idempotent. */
void phanes_http_req_abandon(struct hreq *h)
{
	if (h->req) {
		if (h->started)
			evhttp_send_reply_end(h->req);
		else
			evhttp_send_error(h->req, 500, "no answer");
	}
	unlink_req(h);
}

static int req_gc(lua_State *L)
{
	phanes_http_req_abandon(luaL_checkudata(L, 1, REQ_MT));
	return 0;
}

static struct hreq *check_open_req(lua_State *L)
{
	struct hreq *h = luaL_checkudata(L, 1, REQ_MT);
	if (h->req == NULL)
		luaL_error(L, "http: the request was already answered");
	return h;
}

/* Headers from the table at idx into the request's output headers. */
static void add_headers(lua_State *L, int idx, struct evhttp_request *req)
{
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
		if (k == NULL || v == NULL || lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "http: headers must map strings to strings");
		if (evhttp_add_header(out, k, v) < 0)
			luaL_error(L, "http: invalid header %s", k);
		lua_pop(L, 1);
	}
}

static int check_status(lua_State *L, int idx)
{
	lua_Integer st = luaL_checkinteger(L, idx);
	luaL_argcheck(L, st >= 100 && st <= 599, idx, "HTTP status from 100 to 599");
	return (int)st;
}

/* req:respond(status, headers, body) */
static int req_respond(lua_State *L)
{
	struct hreq *h = check_open_req(L);
	int st = check_status(L, 2);
	size_t len = 0;
	const char *body = luaL_optlstring(L, 4, "", &len);
	luaL_argcheck(L, !h->started, 1, "a chunked reply was started: use finish");
	add_headers(L, 3, h->req);
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		return phanes_fail(L, "http: respond", ENOMEM);
	int rc = evbuffer_add(b, body, len);
	if (rc == 0)
		evhttp_send_reply(h->req, st, NULL, b);
	else
		evhttp_send_error(h->req, 500, NULL);
	evbuffer_free(b);
	unlink_req(h);
	if (rc != 0)
		return phanes_fail(L, "http: respond", ENOMEM);
	lua_pushboolean(L, 1);
	return 1;
}

/* req:start(status, headers[, idle_s]): a chunked (or, for HTTP/1.0,
 * until-close) reply; idle_s replaces the server's timeout for this
 * connection (a quiet log tail outlives it). */
static int req_start(lua_State *L)
{
	struct hreq *h = check_open_req(L);
	int st = check_status(L, 2);
	lua_Integer idle = luaL_optinteger(L, 4, 0);
	luaL_argcheck(L, !h->started, 1, "already started");
	luaL_argcheck(L, idle >= 0 && idle <= 7 * 86400, 4, "seconds, up to a week");
	add_headers(L, 3, h->req);
	struct evhttp_connection *c = evhttp_request_get_connection(h->req);
	if (idle > 0 && c)
		evhttp_connection_set_timeout(c, (int)idle);
	evhttp_send_reply_start(h->req, st, NULL);
	h->started = 1;
	lua_pushboolean(L, 1);
	return 1;
}

static int gone(struct hreq *h)
{
	return h->req == NULL || evhttp_request_get_connection(h->req) == NULL;
}

/* req:send(data) -> true | nil, "http: the client is gone" */
static int req_send(lua_State *L)
{
	struct hreq *h = check_open_req(L);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	luaL_argcheck(L, h->started, 1, "start the reply first");
	if (gone(h))
		return phanes_failf(L, "http: the client is gone");
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		return phanes_fail(L, "http: send", ENOMEM);
	int rc = evbuffer_add(b, data, len);
	if (rc == 0)
		evhttp_send_reply_chunk(h->req, b);
	evbuffer_free(b);
	if (rc != 0)
		return phanes_fail(L, "http: send", ENOMEM);
	lua_pushboolean(L, 1);
	return 1;
}

/* req:finish(): ends a started reply; safe on an answered request */
static int req_finish(lua_State *L)
{
	struct hreq *h = luaL_checkudata(L, 1, REQ_MT);
	if (h->req && h->started) {
		evhttp_send_reply_end(h->req);
		unlink_req(h);
	}
	return 0;
}

/* req:gone() -> true when answered or the client closed the connection */
static int req_gone(lua_State *L)
{
	lua_pushboolean(L, gone(luaL_checkudata(L, 1, REQ_MT)));
	return 1;
}

/* req:pending() -> bytes queued for the client, not yet written */
static int req_pending(lua_State *L)
{
	struct hreq *h = luaL_checkudata(L, 1, REQ_MT);
	struct evhttp_connection *c = h->req ? evhttp_request_get_connection(h->req) : NULL;
	struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
	lua_pushinteger(L, bev ? (lua_Integer)evbuffer_get_length(bufferevent_get_output(bev)) : 0);
	return 1;
}

/* ---- what the Lua callback learns of a request ---- */

static const char *method_name(enum evhttp_cmd_type c)
{
	switch (c) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_PATCH: return "PATCH";
	default: return "OTHER";
	}
}

static void push_headers(lua_State *L, struct evhttp_request *req)
{
	lua_newtable(L);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
		luaL_Buffer b;
		luaL_buffinit(L, &b);
		for (const char *p = kv->key; *p; p++)
			luaL_addchar(&b, (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p);
		luaL_pushresult(&b);
		lua_pushstring(L, kv->value);
		lua_settable(L, -3); /* a repeated header: the last one wins */
	}
}

static void push_body(lua_State *L, struct evhttp_request *req)
{
	struct evbuffer *b = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(b);
	char *p = (char *)evbuffer_pullup(b, -1);
	lua_pushlstring(L, p ? p : "", p ? n : 0);
}

static void push_peer(lua_State *L, struct evhttp_request *req)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port = 0;
	if (c)
		evhttp_connection_get_peer(c, &addr, &port);
	lua_pushstring(L, addr ? addr : "");
}

/* info = { method, uri, path, query, headers, body, peer } */
void phanes_http_push_info(lua_State *L, struct evhttp_request *req)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	const char *query = u ? evhttp_uri_get_query(u) : NULL;
	lua_createtable(L, 0, 7);
	lua_pushstring(L, method_name(evhttp_request_get_command(req)));
	lua_setfield(L, -2, "method");
	lua_pushstring(L, evhttp_request_get_uri(req));
	lua_setfield(L, -2, "uri");
	lua_pushstring(L, path && *path ? path : "/");
	lua_setfield(L, -2, "path");
	lua_pushstring(L, query ? query : "");
	lua_setfield(L, -2, "query");
	push_headers(L, req);
	lua_setfield(L, -2, "headers");
	push_body(L, req);
	lua_setfield(L, -2, "body");
	push_peer(L, req);
	lua_setfield(L, -2, "peer");
}

void phanes_http_req_register(lua_State *L)
{
	static const luaL_Reg req_m[] = {
		{"respond", req_respond}, {"start", req_start}, {"send", req_send},
		{"finish", req_finish}, {"gone", req_gone}, {"pending", req_pending}, {NULL, NULL},
	};
	luaL_newmetatable(L, REQ_MT);
	luaL_newlib(L, req_m);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, req_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, req_gc);
	lua_setfield(L, -2, "__close");
	lua_pop(L, 1);
}
