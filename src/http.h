/* http.h: what http.c and http_child.c share. */
#ifndef PHANES_HTTP_H
#define PHANES_HTTP_H

#include "phanes.h"

/* http_child.c: adds http.spawn and the child metatable to the table on top. */
void phanes_http_child_register(lua_State *L);

#endif
