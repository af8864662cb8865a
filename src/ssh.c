/* ssh.c: phanes.ssh, SSH sessions over libssh2: TCP connect with a
 * timeout, handshake, host key check against known_hosts, authentication
 * in OpenSSH's order. exec and SFTP are in ssh_chan.c.
 *
 *   local s, err, kind = ssh.connect{ host = "10.0.0.2", user = "root" }
 *
 * Failures of the world return nil, "host:port: what: why", kind (kind is
 * resolve|refused|unreachable|timeout|hostkey_changed|hostkey_unknown|auth|
 * protocol|interrupted) and, for auth, a 4th value { methods =, tried = }. */
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
#include <openssl/evp.h>
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

/* ---- host key ------------------------------------------------------------ */

/* "SHA256:" + unpadded base64 of the digest, as OpenSSH prints it. */
static void fingerprint(const unsigned char *digest, char *out, size_t outlen)
{
	unsigned char b64[64];
	int n = EVP_EncodeBlock(b64, digest, 32);
	while (n > 0 && b64[n - 1] == '=')
		n--;
	snprintf(out, outlen, "SHA256:%.*s", n, (const char *)b64);
}

/* Fingerprint of a base64 key blob as stored in known_hosts. */
static void fingerprint_b64(const char *b64, char *out, size_t outlen)
{
	size_t len = strlen(b64);
	unsigned char *raw = malloc(len + 4);
	unsigned char digest[32];
	int n = raw ? EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len) : -1;
	if (n < 0) {
		snprintf(out, outlen, "(unreadable key)");
		free(raw);
		return;
	}
	for (size_t i = len; i > 0 && b64[i - 1] == '='; i--)
		n--; /* EVP_DecodeBlock counts the padding */
	EVP_Digest(raw, (size_t)n, digest, NULL, EVP_sha256(), NULL);
	free(raw);
	fingerprint(digest, out, outlen);
}

static int key_kind(int hostkey_type, const char **name)
{
	switch (hostkey_type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA: *name = "ssh-rsa"; return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	case LIBSSH2_HOSTKEY_TYPE_DSS: *name = "ssh-dss"; return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: *name = "ecdsa-sha2-nistp256"; return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: *name = "ecdsa-sha2-nistp384"; return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: *name = "ecdsa-sha2-nistp521"; return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_ED25519: *name = "ssh-ed25519"; return LIBSSH2_KNOWNHOST_KEY_ED25519;
	default: *name = "unknown"; return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
	}
}

/* Load known_hosts line by line: libssh2_knownhost_readfile stops at the
 * first line it cannot parse (markers, key types it lacks), OpenSSH skips
 * those. Only line `only` when only > 0. */
static void kh_load(LIBSSH2_KNOWNHOSTS *kh, const char *path, int only)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (only > 0 && lineno != only)
			continue;
		if (line[0] == '#' || line[0] == '\n' || line[0] == '@')
			continue;
		libssh2_knownhost_readline(kh, line, (size_t)n, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
	}
	free(line);
	fclose(f);
}

static int kh_count_lines(const char *path)
{
	FILE *f = fopen(path, "re");
	int c, n = 0;
	if (f == NULL)
		return 0;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n + 1;
}

/* The line of known_hosts whose key for this host differs (0: not found). */
static int kh_find_line(struct ssh *ss, const char *path, const char *name,
	const char *key, size_t len, int mask)
{
	int lines = kh_count_lines(path);
	for (int i = 1; i <= lines; i++) {
		LIBSSH2_KNOWNHOSTS *one = libssh2_knownhost_init(ss->s);
		if (one == NULL)
			return 0;
		kh_load(one, path, i);
		int r = libssh2_knownhost_checkp(one, name, -1, key, len, mask, NULL);
		libssh2_knownhost_free(one);
		if (r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
			return i;
	}
	return 0;
}

/* Append one line to known_hosts (creating ~/.ssh 0700 and the file 0600). */
static int kh_append(const char *path, const char *line, size_t len)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return errno;
	}
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	char last = '\n';
	off_t end = lseek(fd, 0, SEEK_END);
	if (end > 0 && pread(fd, &last, 1, end - 1) != 1)
		last = '\n';
	int err = 0;
	if ((last != '\n' && write(fd, "\n", 1) != 1) || write(fd, line, len) != (ssize_t)len)
		err = errno ? errno : EIO;
	if (fsync(fd) < 0 && err == 0 && errno != EINVAL) /* EINVAL: /dev/null */
		err = errno;
	if (close(fd) < 0 && err == 0)
		err = errno;
	return err;
}

static int hostkey_record(lua_State *L, struct ssh *ss, LIBSSH2_KNOWNHOSTS *kh,
	const char *path, const char *name, const char *key, size_t len, int mask)
{
	struct libssh2_knownhost *entry = NULL;
	char line[8192];
	size_t outlen = 0;
	if (libssh2_knownhost_addc(kh, name, NULL, key, len, NULL, 0, mask, &entry) != 0 ||
		libssh2_knownhost_writeline(kh, entry, line, sizeof line, &outlen,
			LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
		return ssh_fail(L, ss, "cannot format the known_hosts line", "protocol");
	int err = kh_append(path, line, outlen);
	if (err) {
		luaL_pushfail(L);
		lua_pushfstring(L, "%s:%d: cannot record the host key (%s %s) in %s: %s",
			ss->host, ss->port, ss->hostkey_type, ss->hostkey_fp, path, strerror(err));
		lua_pushliteral(L, "hostkey_unknown");
		return 3;
	}
	snprintf(ss->hostkey_added, sizeof ss->hostkey_added, "%s", path);
	return 0;
}

static int hostkey_changed(lua_State *L, struct ssh *ss, const char *path,
	const char *name, const char *key, size_t len, int mask, struct libssh2_knownhost *known)
{
	char oldfp[64];
	fingerprint_b64(known->key, oldfp, sizeof oldfp);
	int line = kh_find_line(ss, path, name, key, len, mask);
	luaL_pushfail(L);
	lua_pushfstring(L, "%s:%d: host key has CHANGED: %s records %s, the server offers %s %s. "
		"Someone may be intercepting the connection, or the host was reinstalled. "
		"If you know why it changed, remove the old key (%s:%d, or `ssh-keygen -R '%s' -f %s`) and connect again",
		ss->host, ss->port, path, oldfp, ss->hostkey_type, ss->hostkey_fp,
		path, line, name, path);
	lua_pushliteral(L, "hostkey_changed");
	return 3;
}

/* Returns 0 when the key is known (or newly recorded), else pushes a failure. */
static int hostkey_check(lua_State *L, struct ssh *ss, const char *path, int strict)
{
	size_t len;
	int type;
	const char *key = libssh2_session_hostkey(ss->s, &len, &type);
	const unsigned char *digest = (const unsigned char *)libssh2_hostkey_hash(ss->s, LIBSSH2_HOSTKEY_HASH_SHA256);
	if (key == NULL || digest == NULL)
		return ssh_fail(L, ss, "no host key from the server", "protocol");
	const char *tname;
	int mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | key_kind(type, &tname);
	snprintf(ss->hostkey_type, sizeof ss->hostkey_type, "%s", tname);
	fingerprint(digest, ss->hostkey_fp, sizeof ss->hostkey_fp);
	char name[300]; /* OpenSSH writes [host]:port for ports other than 22 */
	if (ss->port == 22)
		snprintf(name, sizeof name, "%s", ss->host);
	else
		snprintf(name, sizeof name, "[%s]:%d", ss->host, ss->port);
	LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(ss->s);
	if (kh == NULL)
		return ssh_fail(L, ss, "known_hosts", "protocol");
	kh_load(kh, path, 0);
	struct libssh2_knownhost *known = NULL;
	int r = libssh2_knownhost_checkp(kh, name, -1, key, len, mask, &known), n = 0;
	if (r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
		n = hostkey_changed(L, ss, path, name, key, len, mask, known);
	} else if (r == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && strict) {
		luaL_pushfail(L);
		lua_pushfstring(L, "%s:%d: host key not known (%s %s) and strict host key checking is on: "
			"check the fingerprint and add it to %s (e.g. connect once without --strict-host-keys)",
			ss->host, ss->port, ss->hostkey_type, ss->hostkey_fp, path);
		lua_pushliteral(L, "hostkey_unknown");
		n = 3;
	} else if (r == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND) {
		n = hostkey_record(L, ss, kh, path, name, key, len, mask);
	} else if (r != LIBSSH2_KNOWNHOST_CHECK_MATCH) {
		n = ssh_fail(L, ss, "checking the host key", "protocol");
	}
	libssh2_knownhost_free(kh);
	return n;
}

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
	add_tried(a, rc == LIBSSH2_ERROR_FILE ? "%s (cannot load: wrong passphrase or format)" : "%s (rejected)", path);
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

static const char *opt_string(lua_State *L, int opts, const char *key, const char *def)
{
	lua_getfield(L, opts, key);
	const char *s = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
	lua_pop(L, 1); /* the string stays alive in opts */
	return s;
}

static int opt_bool(lua_State *L, int opts, const char *key, int def)
{
	lua_getfield(L, opts, key);
	int b = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
	lua_pop(L, 1);
	return b;
}

static int authenticate(lua_State *L, struct ssh *ss, int opts)
{
	struct auth a = {.L = L, .opts = opts, .tried_s = ""};
	char *list = libssh2_userauth_list(ss->s, ss->user, (unsigned)strlen(ss->user));
	if (list == NULL) {
		if (libssh2_userauth_authenticated(ss->s)) {
			snprintf(ss->auth, sizeof ss->auth, "none");
			return 0;
		}
		return ssh_fail(L, ss, "asking for authentication methods", "protocol");
	}
	char methods[256];
	snprintf(methods, sizeof methods, "%s", list);
	a.methods = methods;
	const char *password = opt_string(L, opts, "password", NULL);
	const char *passphrase = opt_string(L, opts, "passphrase", NULL);
	int ok = 0;
	if (strstr(methods, "publickey")) {
		const char *sock = getenv("SSH_AUTH_SOCK");
		if (opt_bool(L, opts, "agent", 1) && sock && *sock)
			ok = try_agent(ss, &a);
		if (!ok)
			ok = try_keys(ss, &a, passphrase);
	}
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

/* ---- connect ------------------------------------------------------------- */

static int handshake(lua_State *L, struct ssh *ss)
{
	ss->s = libssh2_session_init_ex(NULL, NULL, NULL, ss);
	if (ss->s == NULL)
		return ssh_fail(L, ss, "cannot create a session", "protocol");
	libssh2_session_set_blocking(ss->s, 1);
	libssh2_session_set_timeout(ss->s, ss->timeout_ms);
	int rc = libssh2_session_handshake(ss->s, ss->sock);
	if (rc == LIBSSH2_ERROR_TIMEOUT)
		return ssh_fail(L, ss, "SSH handshake timed out", "timeout");
	if (rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_BANNER_RECV || rc == LIBSSH2_ERROR_SOCKET_RECV)
		return ssh_fail(L, ss, "the server closed the connection during the SSH handshake (is it an SSH server?)", "protocol");
	if (rc != 0)
		return ssh_fail(L, ss, "SSH handshake failed", "protocol");
	return 0;
}

/* ssh.connect{ host, port = 22, user = $USER, timeout = 10, known_hosts,
 * strict = false, identities = {paths}, agent = true, password, passphrase,
 * prompt = function(question) -> string, keepalive = 15 } */
static int l_connect(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *host = opt_string(L, 1, "host", NULL);
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
	const char *user = opt_string(L, 1, "user", getenv("USER") ? getenv("USER") : "root");
	const char *home = getenv("HOME");
	char khdefault[4096];
	snprintf(khdefault, sizeof khdefault, "%s/.ssh/known_hosts", home ? home : "");
	const char *kh = opt_string(L, 1, "known_hosts", khdefault);
	int strict = opt_bool(L, 1, "strict", 0);
	opt_string(L, 1, "password", NULL); /* type checks before acquiring */
	opt_string(L, 1, "passphrase", NULL);
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
		n = handshake(L, ss);
	if (n == 0)
		n = hostkey_check(L, ss, kh, strict);
	if (n == 0)
		n = authenticate(L, ss, 1);
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
