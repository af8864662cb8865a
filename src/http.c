/* http.c: the phanes.http primitives: an HTTP server on libevent's evhttp
 * (Debian's libevent, linked statically), driven one step at a time from
 * Lua. C is mechanism only: it parses nothing itself, hands each request to
 * one Lua callback, and sends what Lua answers, whole or chunked (SSE).
 *
 *   local srv <close> = http.server { max_body = 65536, timeout = 60 }
 *   local port = assert(srv:listen("127.0.0.1", 8001))
 *   srv:handle(function(req, info) req:respond(200, { ["Content-Type"] = "text/plain" }, "hi\n") end)
 *   srv:watch(child:fd())             -- a child's pipe wakes the loop
 *   local ready = srv:step(0.25)      -- { fd, ... } readable watched fds
 *
 * A request userdata stays valid until answered (respond, or finish after
 * start); the callback may keep it and answer in a later step. Every
 * Lua call from inside the loop is protected: a raising callback answers
 * 500 and the message goes to stderr; no longjmp crosses libevent. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include "http.h"

#define SRV_MT "phanes.http.server"
#define REQ_MT "phanes.http.req"
#define MAX_WATCH 256

struct hreq;

struct watch {
	int fd;
	struct event *ev;
};

struct srv {
	struct event_base *base; /* NULL: closed */
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	struct event *tick;
	void *tls;                /* SSL_CTX, NULL without TLS */
	lua_State *L;             /* set during step only */
	int handler;              /* registry ref, LUA_NOREF when none */
	struct hreq *live;        /* unanswered requests */
	size_t max_body, max_headers;
	int timeout;
	struct watch watches[MAX_WATCH];
	int nwatch;
	int ready[MAX_WATCH];
	int nready;
};

struct hreq {
	struct evhttp_request *req; /* NULL once answered */
	struct srv *srv;            /* NULL once the server closed */
	struct hreq *next, *prev;
	int started;                /* a chunked reply began */
};

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
static void req_abandon(struct hreq *h)
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
	req_abandon(luaL_checkudata(L, 1, REQ_MT));
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

/* ---- the request callback ---- */

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
static void push_info(lua_State *L, struct evhttp_request *req)
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

/* Under lua_pcall: (srv, evhttp_request lightuserdata) -> calls handler(req, info) */
static int call_handler(lua_State *L)
{
	struct srv *s = lua_touserdata(L, 1);
	struct evhttp_request *req = lua_touserdata(L, 2);
	struct hreq *h = lua_newuserdatauv(L, sizeof *h, 0);
	memset(h, 0, sizeof *h);
	luaL_setmetatable(L, REQ_MT);
	h->req = req;
	h->srv = s;
	h->next = s->live;
	if (s->live)
		s->live->prev = h;
	s->live = h;
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, "phanes.http.current");
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->handler); /* req, fn */
	lua_insert(L, -2);
	push_info(L, req);
	lua_call(L, 2, 0);
	return 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct srv *s = arg;
	lua_State *L = s->L;
	if (L == NULL || s->handler == LUA_NOREF) {
		evhttp_send_error(req, 503, NULL);
		return;
	}
	int top = lua_gettop(L);
	lua_pushcfunction(L, call_handler);
	lua_pushlightuserdata(L, s);
	lua_pushlightuserdata(L, req);
	if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		fprintf(stderr, "phanes: http handler: %s\n", msg ? msg : "(error object)");
		lua_getfield(L, LUA_REGISTRYINDEX, "phanes.http.current");
		struct hreq *h = luaL_testudata(L, -1, REQ_MT);
		if (h && h->req == req)
			req_abandon(h);
	}
	lua_pushnil(L);
	lua_setfield(L, LUA_REGISTRYINDEX, "phanes.http.current");
	lua_settop(L, top);
}

/* ---- the server ---- */

static void srv_release(lua_State *L, struct srv *s)
{
	while (s->live)
		req_abandon(s->live);
	for (int i = 0; i < s->nwatch; i++)
		event_free(s->watches[i].ev);
	s->nwatch = 0;
	if (s->tick)
		event_free(s->tick);
	if (s->http)
		evhttp_free(s->http);
	if (s->base)
		event_base_free(s->base);
	if (s->tls)
		phanes_http_tls_free(s->tls);
	s->tls = NULL;
	s->tick = NULL;
	s->http = NULL;
	s->base = NULL;
	s->sock = NULL;
	if (L && s->handler != LUA_NOREF) {
		luaL_unref(L, LUA_REGISTRYINDEX, s->handler);
		s->handler = LUA_NOREF;
	}
}

static int srv_gc(lua_State *L)
{
	srv_release(L, luaL_checkudata(L, 1, SRV_MT));
	return 0;
}

static struct srv *check_srv(lua_State *L)
{
	struct srv *s = luaL_checkudata(L, 1, SRV_MT);
	if (s->base == NULL)
		luaL_error(L, "http: the server is closed");
	return s;
}

static lua_Integer opt_field(lua_State *L, const char *name, lua_Integer def)
{
	if (lua_getfield(L, 1, name) == LUA_TNIL) {
		lua_pop(L, 1);
		return def;
	}
	if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
		luaL_error(L, "http.server: %s must be a positive integer", name);
	lua_Integer v = lua_tointeger(L, -1);
	lua_pop(L, 1);
	return v;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg; /* firing is enough: the loop returns */
}

/* http.server{ max_body = bytes, max_headers = bytes, timeout = s } -> server | nil, err */
static int l_server(lua_State *L)
{
	if (lua_isnoneornil(L, 1))
		lua_newtable(L);
	luaL_checktype(L, 1, LUA_TTABLE);
	size_t max_body = (size_t)opt_field(L, "max_body", 1 << 20);
	size_t max_headers = (size_t)opt_field(L, "max_headers", 16384);
	int timeout = (int)opt_field(L, "timeout", 60);
	struct srv *s = lua_newuserdatauv(L, sizeof *s, 0);
	memset(s, 0, sizeof *s);
	s->handler = LUA_NOREF;
	s->max_body = max_body;
	s->max_headers = max_headers;
	s->timeout = timeout;
	luaL_setmetatable(L, SRV_MT);
	s->base = event_base_new();
	s->http = s->base ? evhttp_new(s->base) : NULL;
	s->tick = s->base ? evtimer_new(s->base, on_tick, NULL) : NULL;
	if (s->tick == NULL) {
		srv_release(L, s);
		return phanes_failf(L, "http.server: cannot create the event loop");
	}
	evhttp_set_max_body_size(s->http, s->max_body);
	evhttp_set_max_headers_size(s->http, s->max_headers);
	evhttp_set_timeout(s->http, s->timeout);
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
		EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(s->http, on_request, s);
	return 1;
}

/* srv:listen(addr, port) -> bound port | nil, err (port 0: any free one) */
static int srv_listen(lua_State *L)
{
	struct srv *s = check_srv(L);
	const char *addr = luaL_checkstring(L, 2);
	lua_Integer port = luaL_checkinteger(L, 3);
	luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port from 0 to 65535");
	luaL_argcheck(L, s->sock == NULL, 1, "already listening");
	/* A client gone mid-reply must not kill the server with SIGPIPE. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return phanes_fail(L, "http: ignoring SIGPIPE", errno);
	s->sock = evhttp_bind_socket_with_handle(s->http, addr, (ev_uint16_t)port);
	if (s->sock == NULL)
		return phanes_failf(L, "http: cannot listen on %s:%d: %s", addr, (int)port, strerror(errno));
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int fd = evhttp_bound_socket_get_fd(s->sock);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return phanes_fail(L, "http: getsockname", errno);
	int bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	lua_pushinteger(L, bound);
	return 1;
}

/* srv:tls(cert_pem, key_pem) -> true | nil, err: connections accepted from
 * now on speak TLS (1.2 or later) */
static int srv_tls(lua_State *L)
{
	struct srv *s = check_srv(L);
	const char *cert = luaL_checkstring(L, 2), *key = luaL_checkstring(L, 3);
	luaL_argcheck(L, s->tls == NULL, 1, "TLS is already set up");
	if (phanes_http_tls_setup(L, s->http, cert, key, &s->tls))
		return 2;
	lua_pushboolean(L, 1);
	return 1;
}

/* srv:stop_listening(): no new connections; open ones carry on */
static int srv_stop_listening(lua_State *L)
{
	struct srv *s = check_srv(L);
	if (s->sock)
		evhttp_del_accept_socket(s->http, s->sock);
	s->sock = NULL;
	return 0;
}

/* srv:handle(fn): fn(req, info) for every request */
static int srv_handle(lua_State *L)
{
	struct srv *s = check_srv(L);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_settop(L, 2);
	if (s->handler != LUA_NOREF)
		luaL_unref(L, LUA_REGISTRYINDEX, s->handler);
	s->handler = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
	struct srv *s = arg;
	(void)what;
	for (int i = 0; i < s->nready; i++)
		if (s->ready[i] == fd)
			return;
	if (s->nready < MAX_WATCH)
		s->ready[s->nready++] = fd;
}

/* srv:watch(fd): step returns fd when it is readable (or at end of file) */
static int srv_watch(lua_State *L)
{
	struct srv *s = check_srv(L);
	lua_Integer fd = luaL_checkinteger(L, 2);
	luaL_argcheck(L, fd >= 0 && fd < 1 << 30, 2, "a file descriptor");
	for (int i = 0; i < s->nwatch; i++)
		luaL_argcheck(L, s->watches[i].fd != fd, 2, "already watched");
	if (s->nwatch == MAX_WATCH)
		return phanes_failf(L, "http.watch: more than %d descriptors", MAX_WATCH);
	struct event *ev = event_new(s->base, (int)fd, EV_READ | EV_PERSIST, on_ready, s);
	if (ev == NULL || event_add(ev, NULL) < 0) {
		if (ev)
			event_free(ev);
		return phanes_failf(L, "http.watch: cannot watch descriptor %d", (int)fd);
	}
	s->watches[s->nwatch++] = (struct watch){(int)fd, ev};
	lua_pushboolean(L, 1);
	return 1;
}

/* srv:unwatch(fd): before the descriptor is closed */
static int srv_unwatch(lua_State *L)
{
	struct srv *s = check_srv(L);
	lua_Integer fd = luaL_checkinteger(L, 2);
	for (int i = 0; i < s->nwatch; i++) {
		if (s->watches[i].fd == fd) {
			event_free(s->watches[i].ev);
			s->watches[i] = s->watches[--s->nwatch];
			break;
		}
	}
	return 0;
}

/* srv:step([timeout_s]) -> { readable watched fds } after handling what came
 * in; waits at most timeout seconds (default: until something happens). */
static int srv_step(lua_State *L)
{
	struct srv *s = check_srv(L);
	double t = luaL_optnumber(L, 2, -1);
	luaL_argcheck(L, s->L == NULL, 1, "step is not reentrant");
	s->nready = 0;
	if (t >= 0) {
		struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
		evtimer_add(s->tick, &tv);
	}
	s->L = L;
	int rc = event_base_loop(s->base, EVLOOP_ONCE);
	s->L = NULL;
	evtimer_del(s->tick);
	if (rc < 0)
		return phanes_failf(L, "http: the event loop failed");
	lua_createtable(L, s->nready, 0);
	for (int i = 0; i < s->nready; i++) {
		lua_pushinteger(L, s->ready[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

static int srv_close(lua_State *L)
{
	struct srv *s = luaL_checkudata(L, 1, SRV_MT);
	luaL_argcheck(L, s->L == NULL, 1, "cannot close the server from its own handler");
	srv_release(L, s);
	return 0;
}

/* http.random(n) -> n bytes from the kernel's CSPRNG | nil, err (tokens) */
static int l_random(lua_State *L)
{
	lua_Integer n = luaL_checkinteger(L, 1);
	luaL_argcheck(L, n > 0 && n <= 256, 1, "from 1 to 256 bytes");
	unsigned char buf[256];
	ssize_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(buf + got, (size_t)(n - got), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return phanes_fail(L, "http.random: getrandom", errno);
		got += r;
	}
	lua_pushlstring(L, (const char *)buf, (size_t)n);
	return 1;
}

/* http.equal(a, b) -> boolean, in time that depends on the lengths only
 * (a bearer token compared against what a client sent). */
static int l_equal(lua_State *L)
{
	size_t la, lb;
	const unsigned char *a = (const unsigned char *)luaL_checklstring(L, 1, &la);
	const unsigned char *b = (const unsigned char *)luaL_checklstring(L, 2, &lb);
	volatile unsigned char diff = la != lb;
	size_t n = la > lb ? la : lb;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)((i < la ? a[i] : 0) ^ (i < lb ? b[i] : 0));
	lua_pushboolean(L, diff == 0);
	return 1;
}

int luaopen_phanes_http(lua_State *L)
{
	static const luaL_Reg srv_m[] = {
		{"listen", srv_listen}, {"stop_listening", srv_stop_listening}, {"tls", srv_tls},
		{"handle", srv_handle}, {"watch", srv_watch}, {"unwatch", srv_unwatch},
		{"step", srv_step}, {"close", srv_close}, {NULL, NULL},
	};
	static const luaL_Reg req_m[] = {
		{"respond", req_respond}, {"start", req_start}, {"send", req_send},
		{"finish", req_finish}, {"gone", req_gone}, {"pending", req_pending}, {NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"server", l_server},
		{"random", l_random},
		{"equal", l_equal},
		{NULL, NULL},
	};
	luaL_newmetatable(L, SRV_MT);
	luaL_newlib(L, srv_m);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, srv_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, srv_close);
	lua_setfield(L, -2, "__close");
	luaL_newmetatable(L, REQ_MT);
	luaL_newlib(L, req_m);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, req_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, req_gc);
	lua_setfield(L, -2, "__close");
	lua_pop(L, 2);
	luaL_newlib(L, funcs);
	phanes_http_child_register(L);
	return 1;
}
