/* file_int.h: what file.c and file_tree.c (the phanes.file module) share. */
#ifndef PHANES_FILE_INT_H
#define PHANES_FILE_INT_H

#include <sys/types.h>
#include "phanes.h"

/* A malloc'd buffer and a descriptor owned by a userdata, so a raise while
 * they are held (out of memory in a push) still frees them. */
struct mem {
	char *p;
	size_t len, cap;
	int fd;
};
struct mem *phanes_file_mem(lua_State *L); /* pushed; freed by __gc/__close */

/* Options of write and mkdir, read from the table at t (or absent). */
struct attrs {
	int mode; /* -1: not given */
	uid_t uid;
	gid_t gid;
	int parents;
	int nosync; /* write: {sync = false}, no fsync (records that may be lost) */
};
/* 0, or 2 with nil, err pushed (unknown user or group); raises on misuse. */
int phanes_file_attrs(lua_State *L, int t, const char *path, struct attrs *a);
/* The owner at iu and group at ig -> uid, gid (-1 when nil); 0 or 2. */
int phanes_file_owner(lua_State *L, int iu, int ig, const char *path, uid_t *uid, gid_t *gid);
/* nil, msg, err: 3 */
int phanes_file_fail(lua_State *L, const char *msg, int err);

int phanes_file_mkdir(lua_State *L);
int phanes_file_remove(lua_State *L);
int phanes_file_symlink(lua_State *L);
int phanes_file_list(lua_State *L);
int phanes_file_mkdtemp(lua_State *L);

#endif
