/* http.h: what http.c and http_child.c share. */
#ifndef PHANES_HTTP_H
#define PHANES_HTTP_H

#include "phanes.h"

/* http_child.c: adds http.spawn and the child metatable to the table on top. */
void phanes_http_child_register(lua_State *L);

/* http_tls.c: TLS on accepted connections (0, or nil, err pushed: 2). */
struct evhttp;
int phanes_http_tls_setup(lua_State *L, struct evhttp *http, const char *cert, const char *key, void **ctx);
void phanes_http_tls_free(void *ctx);

#endif
