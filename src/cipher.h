/* cipher.h: phanes.cipher's file and process helpers (cipher_io.c),
 * registered by cipher.c. */
#ifndef PHANES_CIPHER_H
#define PHANES_CIPHER_H

#include "phanes.h"

int phanes_cipher_wipe(lua_State *L);
int phanes_cipher_append(lua_State *L);
int phanes_cipher_run_tty(lua_State *L);
int luaopen_phanes_cipher(lua_State *L);

#endif
