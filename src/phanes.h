/* phanes.h: what the C host's files share. */
#ifndef PHANES_H
#define PHANES_H

#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>

#define PHANES_VERSION "0.1.0"

/* One file of the embedded tree (lua/, modules/, profiles/, templates/). */
struct phanes_file {
	const char *name;
	const unsigned char *data;
	size_t len;
};
extern const struct phanes_file phanes_files[]; /* sorted by name, ends with {0} */
const struct phanes_file *phanes_file_find(const char *name);

/* "the world failed" results, as luaL_fileresult: nil, "what: why", errno */
int phanes_fail(lua_State *L, const char *what, int err);
int phanes_failf(lua_State *L, const char *fmt, ...);

/* result.c: the exec result contract, one builder for local children and
 * ssh channels: { code | signal (+ signal_name), stdout, stderr,
 * timed_out, duration }. signal > 0, or signal_name, marks a killed
 * command; else code is its exit status. */
struct phanes_result {
	int code;
	int signal;              /* 0: none (or only a name, below) */
	const char *signal_name; /* NULL: from signal; else not 0-terminated */
	size_t signal_name_len;
	const char *out, *err;   /* NULL: empty */
	size_t out_len, err_len;
	int timed_out;
	double duration;
};
void phanes_push_result(lua_State *L, const struct phanes_result *r);
int phanes_signal_number(const char *name, size_t len);

/* Primitive families, one file each. */
/* exec.c: send sig to every running child process group (async-signal-safe). */
int phanes_kill_children(int sig);

/* sys.c: SIGINT/SIGTERM received since sys.trap_signals() (0 before). */
int phanes_signals_seen(void);

/* sha256.c: file.sha256 and file.sha256_file, registered by file.c. */
int phanes_sha256(lua_State *L);
int phanes_sha256_file(lua_State *L);

/* diff.c: file.diff, registered by file.c (init creates its metatable). */
int phanes_diff(lua_State *L);
void phanes_diff_init(lua_State *L);

int luaopen_phanes_embedded(lua_State *L);
int luaopen_phanes_exec(lua_State *L);
int luaopen_phanes_file(lua_State *L);
int luaopen_phanes_sys(lua_State *L);
int luaopen_phanes_state(lua_State *L);
int luaopen_phanes_yaml(lua_State *L);
int luaopen_phanes_json(lua_State *L);
int luaopen_phanes_ssh(lua_State *L);
int luaopen_phanes_crypto(lua_State *L);
int luaopen_phanes_http(lua_State *L);
int luaopen_lfs(lua_State *L);
/* Every primitive family above (and phanes.cipher) into package.preload: src/api.c. */
void phanes_preload(lua_State *L);
/* version.c: build.info(), what the binary is made of. */
int luaopen_phanes_build(lua_State *L);

#endif
