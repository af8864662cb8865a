/* exec.h: what exec.c and exec_opts.c share. */
#ifndef PHANES_EXEC_H
#define PHANES_EXEC_H

#include <stddef.h>
#include "phanes.h"

/* exec.run's options, checked and converted before anything is acquired. */
struct spawn {
	char **argv;
	char **envp;    /* NULL: inherit environ */
	const char *cwd;
	int umask;      /* the child's umask; -1: inherited */
	const char *stdin_p;
	size_t stdin_len;
	int has_stdin, merge;
	double timeout; /* 0: none */
	int stream;     /* stack index of the callback, 0 when none */
	double tick;    /* > 0: stream("tick", "") at least this often (seconds) */
	int result;     /* exec.spawn: a pipe on the child's fd 3 (RESULT_FD) */
	int res_w;      /* its write end while the child is started, else -1 */
};

/* The descriptor a spawned child writes its structured result to. */
#define RESULT_FD 3

/* Checks opts (stack index 1), raising on misuse; what sp points to is
 * anchored on the Lua stack above index 1 until the call returns. */
void phanes_exec_opts(lua_State *L, struct spawn *sp);
/* The same for exec.spawn: no stream or timeout; opts.result; stdin <= PIPE_BUF. */
void phanes_spawn_opts(lua_State *L, struct spawn *sp);

/* The lock watchdog's socket (state.c) that learns of every child's
 * process group; -1 for none. phanes_exec_watching() -> the current one. */
void phanes_exec_watch(int fd);
int phanes_exec_watching(void);

#endif
