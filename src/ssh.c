/* ssh.c: phanes.ssh, SSH sessions over libssh2: TCP connect with a
 * timeout, handshake, then the host key check (ssh_hostkey.c) and
 * authentication (ssh_auth.c). exec and SFTP are in ssh_chan.c.
 *
 *   local s, err, kind = ssh.connect{ host = "10.0.0.2", user = "root" }
 *
 * Failures of the world return nil, "host:port: what: why", kind (kind is
 * resolve|refused|unreachable|timeout|hostkey_changed|hostkey_revoked|
 * hostkey_unknown|auth|protocol|interrupted) and, for auth, a 4th value { methods =, tried = }. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "ssh_int.h"

double ssh_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ssh_wait(struct ssh *ss, int ms)
{
	struct pollfd p = {.fd = ss->sock, .events = 0};
	int dir = libssh2_session_block_directions(ss->s);
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		p.events |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		p.events |= POLLOUT;
	if (p.events == 0)
		p.events = POLLIN;
	int n = poll(&p, 1, ms);
	if (n < 0)
		return errno == EINTR ? -1 : 1; /* let libssh2 report the socket error */
	return n > 0;
}

int ssh_fail(lua_State *L, struct ssh *ss, const char *what, const char *kind)
{
	char *msg = NULL;
	if (ss->s)
		libssh2_session_last_error(ss->s, &msg, NULL, 0);
	luaL_pushfail(L);
	if (msg && *msg)
		lua_pushfstring(L, "%s:%d: %s: %s", ss->host, ss->port, what, msg);
	else
		lua_pushfstring(L, "%s:%d: %s", ss->host, ss->port, what);
	lua_pushstring(L, kind);
	return 3;
}

void ssh_keepalive(struct ssh *ss)
{
	if (ss->keepalive <= 0 || ss->s == NULL)
		return;
	double now = ssh_now();
	if (now - ss->last_keepalive < ss->keepalive)
		return;
	int next;
	libssh2_keepalive_send(ss->s, &next);
	ss->last_keepalive = now;
}

void ssh_sftp_close(struct ssh *ss)
{
	if (ss->sftp == NULL)
		return;
	libssh2_session_set_blocking(ss->s, 1);
	libssh2_sftp_shutdown(ss->sftp);
	libssh2_session_set_blocking(ss->s, 0);
	ss->sftp = NULL;
}

/* Release in reverse order of acquisition; safe to call twice. */
static void ssh_release(struct ssh *ss)
{
	if (ss->s) {
		libssh2_session_set_timeout(ss->s, 2000);
		ssh_sftp_close(ss);
		libssh2_session_set_blocking(ss->s, 1);
		libssh2_session_disconnect(ss->s, "phanes: done");
		libssh2_session_free(ss->s);
		ss->s = NULL;
	}
	if (ss->sock >= 0) {
		close(ss->sock);
		ss->sock = -1;
	}
}

struct ssh *ssh_check(lua_State *L, int idx)
{
	struct ssh *ss = luaL_checkudata(L, idx, SSH_SESSION_MT);
	if (ss->s == NULL)
		luaL_error(L, "ssh session is closed");
	return ss;
}

/* ---- TCP ---------------------------------------------------------------- */

static const char *errno_kind(int err)
{
	switch (err) {
	case ECONNREFUSED: return "refused";
	case ETIMEDOUT: return "timeout";
	case EINTR: return "interrupted";
	default: return "unreachable";
	}
}

/* Wait for a non-blocking connect; returns 0 or an errno. */
static int connect_wait(int fd, double deadline)
{
	int left = (int)((deadline - ssh_now()) * 1000);
	if (left <= 0)
		return ETIMEDOUT;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int n = poll(&p, 1, left);
	if (n < 0)
		return errno;
	if (n == 0)
		return ETIMEDOUT;
	int soerr = 0;
	socklen_t l = sizeof soerr;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
		return errno;
	return soerr;
}

static void tcp_keepalive(int fd)
{
	int on = 1, idle = 15, intvl = 5, cnt = 4;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

/* Try each address in turn until the deadline. Returns 0, or pushes the
 * failure and returns its count. */
static int tcp_connect(lua_State *L, struct ssh *ss)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	char port[16];
	snprintf(port, sizeof port, "%d", ss->port);
	int rc = getaddrinfo(ss->host, port, &hints, &res);
	if (rc != 0) {
		luaL_pushfail(L);
		lua_pushfstring(L, "%s:%d: cannot resolve %s: %s", ss->host, ss->port, ss->host,
			rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		lua_pushliteral(L, "resolve");
		return 3;
	}
	double deadline = ssh_now() + ss->timeout_ms / 1000.0;
	int err = 0;
	for (struct addrinfo *ai = res; ai && err != EINTR; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		err = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
		if (err == EINPROGRESS)
			err = connect_wait(fd, deadline);
		if (err == 0) {
			getnameinfo(ai->ai_addr, ai->ai_addrlen, ss->addr, sizeof ss->addr, NULL, 0, NI_NUMERICHOST);
			tcp_keepalive(fd);
			ss->sock = fd;
			break;
		}
		close(fd);
	}
	freeaddrinfo(res);
	if (ss->sock >= 0)
		return 0;
	luaL_pushfail(L);
	if (err == ETIMEDOUT)
		lua_pushfstring(L, "%s:%d: connect: timed out after %ds", ss->host, ss->port, (ss->timeout_ms + 999) / 1000);
	else
		lua_pushfstring(L, "%s:%d: connect: %s", ss->host, ss->port, strerror(err));
	lua_pushstring(L, errno_kind(err));
	return 3;
}

const char *ssh_opt_string(lua_State *L, int opts, const char *key, const char *def)
{
	lua_getfield(L, opts, key);
	int t = lua_type(L, -1);
	if (t != LUA_TNIL && t != LUA_TSTRING) /* a number would be converted on the stack only */
		luaL_error(L, "%s: expected a string, got %s", key, lua_typename(L, t));
	const char *s = t == LUA_TNIL ? def : lua_tostring(L, -1);
	lua_pop(L, 1); /* the string stays alive in opts */
	return s;
}

int ssh_opt_bool(lua_State *L, int opts, const char *key, int def)
{
	lua_getfield(L, opts, key);
	int b = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
	lua_pop(L, 1);
	return b;
}

/* ---- connect ------------------------------------------------------------- */

static int handshake(lua_State *L, struct ssh *ss, const struct kh_opts *kh)
{
	ss->s = libssh2_session_init_ex(NULL, NULL, NULL, ss);
	if (ss->s == NULL)
		return ssh_fail(L, ss, "cannot create a session", "protocol");
	libssh2_session_set_blocking(ss->s, 1);
	libssh2_session_set_timeout(ss->s, ss->timeout_ms);
	ssh_hostkey_prefer(L, ss, kh);
	int rc = libssh2_session_handshake(ss->s, ss->sock);
	if (rc == LIBSSH2_ERROR_TIMEOUT)
		return ssh_fail(L, ss, "SSH handshake timed out", "timeout");
	if (rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_BANNER_RECV || rc == LIBSSH2_ERROR_SOCKET_RECV)
		return ssh_fail(L, ss, "the server closed the connection during the SSH handshake (is it an SSH server?)", "protocol");
	if (rc != 0)
		return ssh_fail(L, ss, "SSH handshake failed", "protocol");
	return 0;
}

/* ssh.connect{ host, port = 22, user = $USER, timeout = 10,
 * known_hosts = path | {paths} (~/.ssh/known_hosts{,2}), global_known_hosts =
 * path | {paths} (/etc/ssh/ssh_known_hosts{,2}), strict = false | true |
 * "yes" | "accept-new" | "no" | "ask", hostkey_alias, accept_fingerprint =
 * "SHA256:..." (strict, but record a new key with that fingerprint),
 * hash_known_hosts = false, identities = {paths}, agent = true, password,
 * passphrase, prompt = function(question) -> string, keepalive = 15 } */
static int l_connect(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *host = ssh_opt_string(L, 1, "host", NULL);
	if (host == NULL || *host == '\0' || strlen(host) >= 255)
		return luaL_argerror(L, 1, "host: a host name or address is required");
	lua_getfield(L, 1, "port");
	lua_Integer port = luaL_optinteger(L, -1, 22);
	lua_getfield(L, 1, "timeout");
	lua_Number timeout = luaL_optnumber(L, -1, 10);
	lua_getfield(L, 1, "keepalive");
	lua_Integer keepalive = luaL_optinteger(L, -1, 15);
	lua_pop(L, 3);
	luaL_argcheck(L, port > 0 && port < 65536, 1, "port: out of range");
	const char *user = ssh_opt_string(L, 1, "user", getenv("USER") ? getenv("USER") : "root");
	struct kh_opts kh;
	ssh_hostkey_opts(L, 1, &kh);
	ssh_opt_string(L, 1, "password", NULL); /* type checks before acquiring */
	ssh_opt_string(L, 1, "passphrase", NULL);
	luaL_argcheck(L, strlen(user) < 128, 1, "user: too long");

	struct ssh *ss = lua_newuserdatauv(L, sizeof *ss, 0);
	memset(ss, 0, sizeof *ss);
	ss->sock = -1;
	luaL_setmetatable(L, SSH_SESSION_MT);
	snprintf(ss->host, sizeof ss->host, "%s", host);
	snprintf(ss->user, sizeof ss->user, "%s", user);
	ss->port = (int)port;
	ss->timeout_ms = (int)(timeout * 1000);
	ss->keepalive = (int)keepalive;
	int n = tcp_connect(L, ss);
	if (n == 0)
		n = handshake(L, ss, &kh);
	if (n == 0)
		n = ssh_hostkey_check(L, ss, &kh);
	if (n == 0)
		n = ssh_authenticate(L, ss, 1);
	if (n != 0) {
		ssh_release(ss);
		return n;
	}
	libssh2_session_set_blocking(ss->s, 0);
	if (ss->keepalive > 0)
		libssh2_keepalive_config(ss->s, 1, (unsigned)ss->keepalive);
	ss->last_keepalive = ssh_now();
	return 1; /* the session, on top */
}

static int l_info(lua_State *L)
{
	struct ssh *ss = ssh_check(L, 1);
	lua_createtable(L, 0, 10);
	lua_pushstring(L, ss->host);
	lua_setfield(L, -2, "host");
	lua_pushstring(L, ss->addr);
	lua_setfield(L, -2, "address");
	lua_pushinteger(L, ss->port);
	lua_setfield(L, -2, "port");
	lua_pushstring(L, ss->user);
	lua_setfield(L, -2, "user");
	const char *banner = libssh2_session_banner_get(ss->s);
	lua_pushstring(L, banner ? banner : "");
	lua_setfield(L, -2, "banner");
	lua_pushstring(L, ss->hostkey_type);
	lua_setfield(L, -2, "hostkey_type");
	lua_pushstring(L, ss->hostkey_fp);
	lua_setfield(L, -2, "hostkey_fingerprint");
	if (ss->hostkey_added[0]) {
		lua_pushstring(L, ss->hostkey_added);
		lua_setfield(L, -2, "hostkey_added");
	}
	lua_pushstring(L, ss->auth);
	lua_setfield(L, -2, "auth");
	return 1;
}

/* session:stats() -> { channels =, execs =, sftp = }: what this session
 * cost on the wire so far (each channel and exec request is a round trip) */
static int l_stats(lua_State *L)
{
	struct ssh *ss = ssh_check(L, 1);
	lua_createtable(L, 0, 3);
	lua_pushinteger(L, ss->channels);
	lua_setfield(L, -2, "channels");
	lua_pushinteger(L, ss->execs);
	lua_setfield(L, -2, "execs");
	lua_pushinteger(L, ss->sftp_requests);
	lua_setfield(L, -2, "sftp");
	return 1;
}

static int l_close(lua_State *L)
{
	struct ssh *ss = luaL_checkudata(L, 1, SSH_SESSION_MT);
	ssh_release(ss);
	return 0;
}

static int l_tostring(lua_State *L)
{
	struct ssh *ss = luaL_checkudata(L, 1, SSH_SESSION_MT);
	lua_pushfstring(L, "ssh session %s@%s:%d%s", ss->user, ss->host, ss->port, ss->s ? "" : " (closed)");
	return 1;
}

int luaopen_phanes_ssh(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"connect", l_connect},
		{"known_hosts", ssh_l_known_hosts},
		{"gzip", ssh_l_gzip},
		{NULL, NULL},
	};
	static const luaL_Reg meta[] = {
		{"__gc", l_close},
		{"__close", l_close},
		{"__tostring", l_tostring},
		{NULL, NULL},
	};
	static const luaL_Reg methods[] = {
		{"info", l_info},
		{"stats", l_stats},
		{"close", l_close},
		{NULL, NULL},
	};
	if (libssh2_init(0) != 0)
		return luaL_error(L, "libssh2_init failed");
	luaL_newmetatable(L, SSH_SESSION_MT);
	luaL_setfuncs(L, meta, 0);
	luaL_newlib(L, methods);
	ssh_chan_methods(L);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	lua_pushstring(L, libssh2_version(0));
	lua_setfield(L, -2, "libssh2_version");
	return 1;
}
