/* result.c: the one exec result every transport hands to Lua, built here
 * for local children (exec.c) and ssh channels (ssh_chan.c) alike:
 *
 *   { code = exit status | nil, signal = number | nil, signal_name = "TERM" | nil,
 *     stdout = bytes, stderr = bytes, timed_out = bool, duration = seconds }
 *
 * Exactly one of code and signal is set. A signal the remote end names
 * that this libc does not know is signal = 0 with its name kept. */
#include <string.h>
#include <signal.h>
#include "phanes.h"

/* "TERM" -> 15; 0 when unknown (names as SSH sends them: no SIG prefix) */
int phanes_signal_number(const char *name, size_t len)
{
	if (len > 3 && strncmp(name, "SIG", 3) == 0)
		name += 3, len -= 3;
	for (int i = 1; i < 65; i++) {
		const char *a = sigabbrev_np(i);
		if (a && strlen(a) == len && strncmp(a, name, len) == 0)
			return i;
	}
	return 0;
}

static void set_str(lua_State *L, const char *field, const char *p, size_t n)
{
	lua_pushlstring(L, p ? p : "", p ? n : 0);
	lua_setfield(L, -2, field);
}

void phanes_push_result(lua_State *L, const struct phanes_result *r)
{
	lua_createtable(L, 0, 7);
	if (r->signal_name || r->signal > 0) {
		const char *name = r->signal_name;
		size_t len = r->signal_name_len;
		if (!name) {
			name = sigabbrev_np(r->signal);
			len = name ? strlen(name) : 0;
		}
		lua_pushinteger(L, r->signal > 0 ? r->signal : phanes_signal_number(name ? name : "", len));
		lua_setfield(L, -2, "signal");
		if (name) {
			lua_pushlstring(L, name, len);
			lua_setfield(L, -2, "signal_name");
		}
	} else {
		lua_pushinteger(L, r->code);
		lua_setfield(L, -2, "code");
	}
	set_str(L, "stdout", r->out, r->out_len);
	set_str(L, "stderr", r->err, r->err_len);
	lua_pushboolean(L, r->timed_out);
	lua_setfield(L, -2, "timed_out");
	lua_pushnumber(L, r->duration);
	lua_setfield(L, -2, "duration");
}
