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
#include "http.h"

#define SRV_MT "phanes.http.server"

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
	phanes_http_push_info(L, req);
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
			phanes_http_req_abandon(h);
	}
	lua_pushnil(L);
	lua_setfield(L, LUA_REGISTRYINDEX, "phanes.http.current");
	lua_settop(L, top);
}

/* ---- the server ---- */

static void srv_release(lua_State *L, struct srv *s)
{
	while (s->live)
		phanes_http_req_abandon(s->live);
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
	lua_pop(L, 1);
	phanes_http_req_register(L);
	luaL_newlib(L, funcs);
	phanes_http_child_register(L);
	return 1;
}
