/* ssh_auth.c: authentication in OpenSSH's order: ssh-agent, identity
 * files (a passphrase from opts or the prompt callback), then password and
 * keyboard-interactive. A failure says what was tried and what the server
 * accepts. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ssh_int.h"

/* ---- authentication ------------------------------------------------------ */

struct auth {
	lua_State *L;
	int opts;           /* index of the options table */
	const char *methods; /* what the server accepts */
	char tried_s[1024];
};

static void add_tried(struct auth *a, const char *fmt, const char *arg)
{
	size_t n = strlen(a->tried_s);
	if (n + 2 >= sizeof a->tried_s)
		return;
	if (n > 0) {
		memcpy(a->tried_s + n, ", ", 3);
		n += 2;
	}
	snprintf(a->tried_s + n, sizeof a->tried_s - n, fmt, arg);
}

static int try_agent(struct ssh *ss, struct auth *a)
{
	LIBSSH2_AGENT *ag = libssh2_agent_init(ss->s);
	int ok = 0, count = 0;
	if (ag && libssh2_agent_connect(ag) == 0 && libssh2_agent_list_identities(ag) == 0) {
		struct libssh2_agent_publickey *id = NULL, *prev = NULL;
		while (!ok && libssh2_agent_get_identity(ag, &id, prev) == 0) {
			count++;
			if (libssh2_agent_userauth(ag, ss->user, id) == 0) {
				ok = 1;
				snprintf(ss->auth, sizeof ss->auth, "publickey (agent: %s)", id->comment ? id->comment : "key");
			}
			prev = id;
		}
		char n[32];
		snprintf(n, sizeof n, "%d", count);
		if (!ok)
			add_tried(a, count == 1 ? "ssh-agent (%s key rejected)" : "ssh-agent (%s keys rejected)", n);
	} else {
		add_tried(a, "ssh-agent (%s)", "not reachable");
	}
	if (ag) {
		libssh2_agent_disconnect(ag);
		libssh2_agent_free(ag);
	}
	return ok;
}

/* Ask Lua's opts.prompt(question) for a passphrase; NULL when none.
 * The string stays on the Lua stack (the caller pops it). */
static const char *ask(struct auth *a, const char *question)
{
	lua_State *L = a->L;
	if (lua_getfield(L, a->opts, "prompt") != LUA_TFUNCTION) {
		lua_pop(L, 1);
		lua_pushnil(L);
		return NULL;
	}
	lua_pushstring(L, question);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1))
		return NULL; /* an error or nil stays on the stack as the placeholder */
	return lua_tostring(L, -1);
}

/* An RSA key, by its .pub file or its PEM header. */
static int is_rsa(const char *path)
{
	char pub[4200], line[64] = "";
	snprintf(pub, sizeof pub, "%s.pub", path);
	FILE *f = fopen(pub, "re");
	if (f == NULL)
		f = fopen(path, "re");
	if (f == NULL)
		return 0;
	if (fgets(line, sizeof line, f) == NULL)
		line[0] = '\0';
	fclose(f);
	return strncmp(line, "ssh-rsa ", 8) == 0 || strstr(line, "BEGIN RSA") != NULL;
}

static int try_keyfile(struct ssh *ss, struct auth *a, const char *path, const char *passphrase)
{
	if (access(path, R_OK) != 0) {
		add_tried(a, "%s (not readable)", path);
		return 0;
	}
	int rc = libssh2_userauth_publickey_fromfile_ex(ss->s, ss->user, (unsigned)strlen(ss->user),
		NULL, path, passphrase ? passphrase : "");
	if (rc == LIBSSH2_ERROR_FILE && passphrase == NULL) {
		char q[4200];
		snprintf(q, sizeof q, "Enter passphrase for key %s: ", path);
		const char *p = ask(a, q);
		if (p)
			rc = libssh2_userauth_publickey_fromfile_ex(ss->s, ss->user, (unsigned)strlen(ss->user), NULL, path, p);
		lua_pop(a->L, 1);
	}
	if (rc == 0) {
		snprintf(ss->auth, sizeof ss->auth, "publickey (%s)", path);
		return 1;
	}
	if (rc == LIBSSH2_ERROR_FILE)
		add_tried(a, "%s (cannot load: wrong passphrase or format)", path);
	else if (is_rsa(path))
		add_tried(a, "%s (rejected: libssh2 " LIBSSH2_VERSION " signs RSA keys with SHA-1, which OpenSSH 8.8+ refuses; use an ed25519 or ecdsa key)", path);
	else
		add_tried(a, "%s (rejected)", path);
	return 0;
}

static int try_keys(struct ssh *ss, struct auth *a, const char *passphrase)
{
	lua_State *L = a->L;
	if (lua_getfield(L, a->opts, "identities") == LUA_TTABLE) {
		int n = (int)luaL_len(L, -1);
		for (int i = 1; i <= n; i++) {
			lua_rawgeti(L, -1, i);
			int ok = try_keyfile(ss, a, lua_tostring(L, -1), passphrase);
			lua_pop(L, 1);
			if (ok) {
				lua_pop(L, 1);
				return 1;
			}
		}
		lua_pop(L, 1);
		return 0;
	}
	lua_pop(L, 1);
	const char *home = getenv("HOME");
	static const char *names[] = {"id_ed25519", "id_ecdsa", "id_rsa"};
	for (size_t i = 0; home && i < sizeof names / sizeof *names; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/.ssh/%s", home, names[i]);
		if (access(path, F_OK) == 0 && try_keyfile(ss, a, path, passphrase))
			return 1;
	}
	return 0;
}

static void kbd_callback(const char *name, int name_len, const char *instruction, int instruction_len,
	int num_prompts, const LIBSSH2_USERAUTH_KBDINT_PROMPT *prompts,
	LIBSSH2_USERAUTH_KBDINT_RESPONSE *responses, void **abstract)
{
	(void)name, (void)name_len, (void)instruction, (void)instruction_len, (void)prompts;
	struct ssh *ss = *abstract;
	for (int i = 0; i < num_prompts; i++) {
		responses[i].text = strdup(ss->password ? ss->password : "");
		responses[i].length = responses[i].text ? (unsigned)strlen(responses[i].text) : 0;
	}
}

static int try_password(struct ssh *ss, struct auth *a, const char *password)
{
	unsigned ulen = (unsigned)strlen(ss->user);
	if (strstr(a->methods, "password")) {
		if (libssh2_userauth_password_ex(ss->s, ss->user, ulen, password, (unsigned)strlen(password), NULL) == 0) {
			snprintf(ss->auth, sizeof ss->auth, "password");
			return 1;
		}
		add_tried(a, "%s (rejected)", "password");
	}
	if (strstr(a->methods, "keyboard-interactive")) {
		ss->password = password;
		int rc = libssh2_userauth_keyboard_interactive_ex(ss->s, ss->user, ulen, kbd_callback);
		ss->password = NULL;
		if (rc == 0) {
			snprintf(ss->auth, sizeof ss->auth, "keyboard-interactive");
			return 1;
		}
		add_tried(a, "%s (rejected)", "keyboard-interactive");
	}
	return 0;
}

/* Keys (agent, then files), when the server takes publickey. */
static int try_publickey(struct ssh *ss, struct auth *a, const char *passphrase)
{
	int ok = 0;
	const char *sock = getenv("SSH_AUTH_SOCK");
	if (ssh_opt_bool(a->L, a->opts, "agent", 1) && sock && *sock)
		ok = try_agent(ss, a);
	if (!ok)
		ok = try_keys(ss, a, passphrase);
	return ok;
}

int ssh_authenticate(lua_State *L, struct ssh *ss, int opts)
{
	struct auth a = {.L = L, .opts = opts, .tried_s = ""};
	const char *password = ssh_opt_string(L, opts, "password", NULL);
	const char *passphrase = ssh_opt_string(L, opts, "passphrase", NULL);
	/* Without a password to fall back on, the keys go first, unasked: asking
	 * for the methods (a "none" request) costs a round trip that a key
	 * login does not need. The methods are asked for when no key worked. */
	int ok = 0;
	if (password == NULL) {
		ok = try_publickey(ss, &a, passphrase);
		if (ok)
			return 0;
	}
	char *list = libssh2_userauth_list(ss->s, ss->user, (unsigned)strlen(ss->user));
	if (list == NULL) {
		if (libssh2_userauth_authenticated(ss->s)) {
			snprintf(ss->auth, sizeof ss->auth, "none");
			return 0;
		}
		if (a.tried_s[0] == '\0') /* keys were tried: their failure is the news */
			return ssh_fail(L, ss, "asking for authentication methods", "protocol");
	}
	char methods[256];
	snprintf(methods, sizeof methods, "%s", list ? list : "(not told: the server stopped answering)");
	a.methods = methods;
	if (password != NULL && strstr(methods, "publickey"))
		ok = try_publickey(ss, &a, passphrase);
	if (!ok && password)
		ok = try_password(ss, &a, password);
	if (ok)
		return 0;
	if (a.tried_s[0] == '\0')
		snprintf(a.tried_s, sizeof a.tried_s, "nothing (no key found, no password given)");
	luaL_pushfail(L);
	lua_pushfstring(L, "%s@%s:%d: authentication failed; tried %s; the server accepts %s",
		ss->user, ss->host, ss->port, a.tried_s, methods);
	lua_pushliteral(L, "auth");
	lua_createtable(L, 0, 2);
	lua_pushstring(L, methods);
	lua_setfield(L, -2, "methods");
	lua_pushstring(L, a.tried_s);
	lua_setfield(L, -2, "tried");
	return 4;
}

