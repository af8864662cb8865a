/* http.h: what the phanes.http files (http.c, http_req.c, http_child.c, http_tls.c) share. */
#ifndef PHANES_HTTP_H
#define PHANES_HTTP_H

#include <event2/event.h>
#include <event2/http.h>
#include "phanes.h"

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

/* http_req.c: the request object. */
void phanes_http_req_abandon(struct hreq *h); /* answers 500 (or ends a stream), forgets */
void phanes_http_push_info(lua_State *L, struct evhttp_request *req);
void phanes_http_req_register(lua_State *L); /* the request metatable */

/* http_child.c: adds http.spawn and the child metatable to the table on top. */
void phanes_http_child_register(lua_State *L);

/* http_tls.c: TLS on accepted connections (0, or nil, err pushed: 2). */
int phanes_http_tls_setup(lua_State *L, struct evhttp *http, const char *cert, const char *key, void **ctx);
void phanes_http_tls_free(void *ctx);

#endif
