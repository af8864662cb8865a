/* ssh_hostkey.c: the server's host key against the known_hosts files, by
 * OpenSSH's rules. Every line whose host field matches counts, across the
 * user's files and the global ones: a @revoked key is refused; the same key
 * passes; another key of the same type, or only keys of other types, is a
 * CHANGED host, refused with both SHA256 fingerprints and the file:line; a
 * host known only through @cert-authority is refused (no host certificates
 * here); an unknown host is recorded in the first user file (accept-new,
 * and no) or refused (yes). The parser itself is in known_hosts.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include "known_hosts.h"
#include "ssh_int.h"

#define KH_MAX_FILE (64u << 20)

/* ---- fingerprints -------------------------------------------------------- */

/* "SHA256:" + unpadded base64 of the digest, as OpenSSH prints it. */
static void fingerprint(const unsigned char *digest, char *out, size_t outlen)
{
	unsigned char b64[64];
	int n = EVP_EncodeBlock(b64, digest, 32);
	while (n > 0 && b64[n - 1] == '=')
		n--;
	snprintf(out, outlen, "SHA256:%.*s", n, (const char *)b64);
}

static void fingerprint_raw(const unsigned char *raw, size_t len, char *out, size_t outlen)
{
	unsigned char digest[32];
	if (EVP_Digest(raw, len, digest, NULL, EVP_sha256(), NULL) != 1)
		snprintf(out, outlen, "(no fingerprint)");
	else
		fingerprint(digest, out, outlen);
}

static const char *key_name(int hostkey_type)
{
	switch (hostkey_type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
	case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
	case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
	default: return "unknown";
	}
}

/* ---- options ------------------------------------------------------------- */

static int add_path(lua_State *L, const char **list, int *n, int idx)
{
	if (*n >= KH_MAX_FILES)
		return luaL_error(L, "known_hosts: at most %d files", KH_MAX_FILES);
	if (lua_type(L, idx) != LUA_TSTRING) /* a number would be converted on the stack only */
		return luaL_error(L, "known_hosts: expected paths (strings), got %s", luaL_typename(L, idx));
	list[(*n)++] = lua_tostring(L, idx);
	return 0;
}

/* opts[key]: a path or a list of paths (the strings stay alive in opts). */
static void opt_paths(lua_State *L, int opts, const char *key, const char **list, int *n)
{
	lua_getfield(L, opts, key);
	if (lua_type(L, -1) == LUA_TTABLE) {
		for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
			add_path(L, list, n, -1);
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	} else if (!lua_isnil(L, -1)) {
		add_path(L, list, n, -1);
	}
	lua_pop(L, 1);
}

static int opt_strict(lua_State *L, int opts)
{
	lua_getfield(L, opts, "strict");
	int t = lua_type(L, -1), mode = KH_ACCEPT_NEW;
	if (t == LUA_TBOOLEAN) {
		mode = lua_toboolean(L, -1) ? KH_YES : KH_ACCEPT_NEW;
	} else if (t != LUA_TNIL) {
		static const char *const names[] = {"accept-new", "yes", "no", "ask", NULL};
		mode = luaL_checkoption(L, -1, NULL, names);
		if (mode == 3)
			mode = KH_YES; /* nobody to ask here: the caller asks, then retries */
	}
	lua_pop(L, 1);
	return mode;
}

/* Reads known_hosts (path or list, default ~/.ssh/known_hosts{,2}),
 * global_known_hosts (default /etc/ssh/ssh_known_hosts{,2}) and strict
 * (boolean, or "yes" | "accept-new" | "no" | "ask"). Raises on misuse. */
void ssh_hostkey_opts(lua_State *L, int opts, struct kh_opts *o)
{
	memset(o, 0, sizeof *o);
	const char *home = getenv("HOME");
	snprintf(o->home[0], sizeof o->home[0], "%s/.ssh/known_hosts", home ? home : "");
	snprintf(o->home[1], sizeof o->home[1], "%s/.ssh/known_hosts2", home ? home : "");
	opt_paths(L, opts, "known_hosts", o->user, &o->nuser);
	if (o->nuser == 0) {
		o->user[o->nuser++] = o->home[0];
		o->user[o->nuser++] = o->home[1];
	}
	lua_getfield(L, opts, "global_known_hosts");
	int global_set = !lua_isnil(L, -1);
	lua_pop(L, 1);
	opt_paths(L, opts, "global_known_hosts", o->global, &o->nglobal);
	if (!global_set) {
		o->global[o->nglobal++] = "/etc/ssh/ssh_known_hosts";
		o->global[o->nglobal++] = "/etc/ssh/ssh_known_hosts2";
	}
	o->strict = opt_strict(L, opts);
	o->alias = ssh_opt_string(L, opts, "hostkey_alias", NULL);
	o->accept_fp = ssh_opt_string(L, opts, "accept_fingerprint", NULL);
	o->hash = ssh_opt_bool(L, opts, "hash_known_hosts", 0);
	luaL_argcheck(L, o->alias == NULL || strlen(o->alias) < 256, opts, "hostkey_alias: too long");
}

/* ---- reading the files --------------------------------------------------- */

/* The whole file into a malloc'd buffer; 0 or an errno. Reads to EOF
 * (/dev/null and pipes have no size). */
static int slurp(const char *path, char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno;
	size_t cap = 0, n = 0;
	char *b = NULL;
	int err = 0;
	for (;;) {
		if (n == cap) {
			char *nb = cap >= KH_MAX_FILE ? NULL : realloc(b, cap ? cap * 2 : 8192);
			if (nb == NULL) {
				err = cap >= KH_MAX_FILE ? EFBIG : ENOMEM;
				break;
			}
			b = nb;
			cap = cap ? cap * 2 : 8192;
		}
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err = r < 0 ? errno : 0;
			break;
		}
		n += (size_t)r;
	}
	close(fd);
	if (err) {
		free(b);
		return err;
	}
	*buf = b;
	*len = n;
	return 0;
}

/* ---- scanning ------------------------------------------------------------ */

struct hit {
	const char *file; /* NULL: none */
	int line;
	char type[64];
	char fp[64];
};

struct scan {
	char name[300];             /* host, or [host]:port, lowercase */
	const char *type;           /* the server's key type; NULL before the handshake */
	const unsigned char *key;
	size_t key_len;
	const char *file;           /* the file being read */
	int match;
	struct hit revoked, changed, other, ca;
	char known[8][64];          /* key types known for the name, first seen first */
	int nknown;
};

static void note(struct hit *h, const struct scan *sc, const struct kh_line *l,
	const unsigned char *raw, size_t n)
{
	if (h->file)
		return;
	h->file = sc->file;
	h->line = l->line;
	snprintf(h->type, sizeof h->type, "%.*s", (int)(l->type_len < 63 ? l->type_len : 63), l->type);
	fingerprint_raw(raw, n, h->fp, sizeof h->fp);
}

static void note_type(struct scan *sc, const struct kh_line *l)
{
	char t[64];
	snprintf(t, sizeof t, "%.*s", (int)(l->type_len < 63 ? l->type_len : 63), l->type);
	for (int i = 0; i < sc->nknown; i++)
		if (strcmp(sc->known[i], t) == 0)
			return;
	if (sc->nknown < 8)
		memcpy(sc->known[sc->nknown++], t, sizeof t);
}

static int scan_line(const struct kh_line *l, void *ud)
{
	struct scan *sc = ud;
	if (kh_host_match(l->hosts, l->hosts_len, sc->name) != 1)
		return 0;
	if (sc->key == NULL) { /* before the handshake: which types are known */
		if (l->marker == KH_PLAIN)
			note_type(sc, l);
		return 0;
	}
	unsigned char *raw = NULL;
	long n = kh_base64_decode(l->key, l->key_len, &raw);
	if (n < 0)
		return 0; /* a key that does not decode is skipped, as OpenSSH does */
	int same = (size_t)n == sc->key_len && memcmp(raw, sc->key, (size_t)n) == 0;
	int same_type = l->type_len == strlen(sc->type) && memcmp(l->type, sc->type, l->type_len) == 0;
	if (l->marker == KH_REVOKED) {
		if (same)
			note(&sc->revoked, sc, l, raw, (size_t)n);
	} else if (l->marker == KH_CA) {
		note(&sc->ca, sc, l, raw, (size_t)n);
	} else if (same) {
		sc->match = 1;
	} else {
		note(same_type ? &sc->changed : &sc->other, sc, l, raw, (size_t)n);
	}
	free(raw);
	return 0;
}

/* Scan every file; 0, or pushes a failure naming the unreadable file. */
static int scan_files(lua_State *L, struct ssh *ss, const struct kh_opts *o, struct scan *sc)
{
	for (int i = 0; i < o->nuser + o->nglobal; i++) {
		const char *path = i < o->nuser ? o->user[i] : o->global[i - o->nuser];
		char *buf = NULL;
		size_t len = 0;
		int err = slurp(path, &buf, &len);
		if (err == ENOENT || err == ENOTDIR)
			continue;
		if (err) {
			luaL_pushfail(L);
			lua_pushfstring(L, "%s:%d: cannot read the known hosts file %s: %s",
				ss->host, ss->port, path, strerror(err));
			lua_pushliteral(L, "hostkey_unknown");
			return 3;
		}
		sc->file = path;
		kh_parse(buf, len, scan_line, sc);
		free(buf);
	}
	return 0;
}

static void scan_init(struct scan *sc, const struct ssh *ss, const struct kh_opts *o)
{
	memset(sc, 0, sizeof *sc);
	if (o->alias) /* OpenSSH's HostKeyAlias: used as it is, whatever the port */
		snprintf(sc->name, sizeof sc->name, "%s", o->alias);
	else if (ss->port == 22) /* OpenSSH writes [host]:port for other ports */
		snprintf(sc->name, sizeof sc->name, "%s", ss->host);
	else
		snprintf(sc->name, sizeof sc->name, "[%s]:%d", ss->host, ss->port);
	for (char *c = sc->name; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
}

/* ---- preferring the known key types -------------------------------------- */

static const char *alg_key_type(const char *alg)
{
	if (strcmp(alg, "rsa-sha2-512") == 0 || strcmp(alg, "rsa-sha2-256") == 0)
		return "ssh-rsa";
	return alg;
}

static void pref_add(char *pref, size_t cap, const char *alg)
{
	size_t n = strlen(pref), an = strlen(alg);
	for (const char *p = pref; (p = strstr(p, alg)) != NULL; p += an)
		if ((p == pref || p[-1] == ',') && (p[an] == ',' || p[an] == '\0'))
			return; /* already listed */
	if (n + an + 2 < cap)
		snprintf(pref + n, cap - n, "%s%s", n ? "," : "", alg);
}

/* Before the handshake, as OpenSSH orders HostKeyAlgorithms: ask for the
 * key types known for this host first, so a host that has several keys
 * shows the one we know. Certificates are never asked for. */
void ssh_hostkey_prefer(lua_State *L, struct ssh *ss, const struct kh_opts *o)
{
	struct scan sc;
	scan_init(&sc, ss, o);
	int n = scan_files(L, ss, o, &sc);
	if (n) { /* the check after the handshake reports it */
		lua_pop(L, n);
		return;
	}
	const char **algs = NULL;
	int count = libssh2_session_supported_algs(ss->s, LIBSSH2_METHOD_HOSTKEY, &algs);
	if (sc.nknown == 0 || count <= 0) {
		if (count > 0)
			libssh2_free(ss->s, algs);
		return;
	}
	char pref[1024] = "";
	for (int k = 0; k < sc.nknown; k++)
		for (int i = 0; i < count; i++)
			if (strcmp(alg_key_type(algs[i]), sc.known[k]) == 0)
				pref_add(pref, sizeof pref, algs[i]);
	for (int i = 0; i < count; i++)
		if (strstr(algs[i], "-cert-") == NULL)
			pref_add(pref, sizeof pref, algs[i]);
	libssh2_free(ss->s, algs);
	if (pref[0] && libssh2_session_method_pref(ss->s, LIBSSH2_METHOD_HOSTKEY, pref) != 0)
		return; /* libssh2's own order then; the check stays as strict */
}

/* ---- recording ----------------------------------------------------------- */

/* Append one line to known_hosts (creating its directory 0700 and the file 0600). */
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
	errno = 0;
	if ((last != '\n' && write(fd, "\n", 1) != 1) || write(fd, line, len) != (ssize_t)len)
		err = errno ? errno : EIO;
	if (fsync(fd) < 0 && err == 0 && errno != EINVAL) /* EINVAL: /dev/null */
		err = errno;
	if (close(fd) < 0 && err == 0)
		err = errno;
	return err;
}

/* The name as recorded: as it is, or hashed as `ssh-keygen -H` does:
 * |1|base64(salt)|base64(HMAC-SHA1(salt, name)). 0, or -1. */
static int record_name(const struct scan *sc, int hash, char *out, size_t cap)
{
	unsigned char salt[20], mac[EVP_MAX_MD_SIZE], b64s[32], b64h[32];
	unsigned int maclen = 0;
	if (!hash)
		return snprintf(out, cap, "%s", sc->name) < (int)cap ? 0 : -1;
	if (RAND_bytes(salt, sizeof salt) != 1 ||
		HMAC(EVP_sha1(), salt, sizeof salt, (const unsigned char *)sc->name, strlen(sc->name), mac, &maclen) == NULL ||
		maclen != 20)
		return -1;
	EVP_EncodeBlock(b64s, salt, sizeof salt);
	EVP_EncodeBlock(b64h, mac, 20);
	return snprintf(out, cap, "|1|%s|%s", (const char *)b64s, (const char *)b64h) < (int)cap ? 0 : -1;
}

static int hostkey_record(lua_State *L, struct ssh *ss, const struct scan *sc,
	const struct kh_opts *o, const char *key, size_t len)
{
	char name[320];
	if (record_name(sc, o->hash, name, sizeof name) != 0)
		return ssh_fail(L, ss, "cannot record the host key: hashing the name failed", "protocol");
	size_t cap = strlen(name) + strlen(ss->hostkey_type) + 4 * ((len + 2) / 3) + 4;
	char *line = malloc(cap);
	if (line == NULL)
		return ssh_fail(L, ss, "cannot record the host key: out of memory", "protocol");
	int n = snprintf(line, cap, "%s %s ", name, ss->hostkey_type);
	n += EVP_EncodeBlock((unsigned char *)line + n, (const unsigned char *)key, (int)len);
	line[n++] = '\n';
	const char *path = o->user[0];
	int err = kh_append(path, line, (size_t)n);
	free(line);
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

/* ---- refusals ------------------------------------------------------------ */

/* libssh2 before 1.11 verifies ssh-rsa host keys only with SHA-1
 * signatures, which OpenSSH 8.8 and later no longer make. */
static int rsa_sha2(struct ssh *ss)
{
	const char **algs = NULL;
	int count = libssh2_session_supported_algs(ss->s, LIBSSH2_METHOD_HOSTKEY, &algs), found = 0;
	for (int i = 0; i < count; i++)
		found |= strcmp(algs[i], "rsa-sha2-256") == 0;
	if (count > 0)
		libssh2_free(ss->s, algs);
	return found;
}

static int refuse_changed(lua_State *L, struct ssh *ss, const struct scan *sc, const struct hit *h)
{
	if (h == &sc->other && strcmp(h->type, "ssh-rsa") == 0 && !rsa_sha2(ss))
		lua_pushfstring(L, " (phanes' SSH library, libssh2 %s, cannot check ssh-rsa host keys of OpenSSH 8.8 "
			"and later: verify the host's ed25519 or ecdsa key out of band and add it to the known hosts)",
			libssh2_version(0));
	else
		lua_pushliteral(L, "");
	const char *why = lua_tostring(L, -1);
	luaL_pushfail(L);
	lua_pushfstring(L, "%s:%d: REMOTE HOST IDENTIFICATION HAS CHANGED: host key has CHANGED: "
		"%s:%d records %s %s for %s, the server offers %s %s%s. "
		"Someone may be intercepting the connection, or the host was reinstalled. "
		"If you know why it changed, remove the old key (%s:%d, or `ssh-keygen -R '%s' -f %s`) and connect again",
		ss->host, ss->port, h->file, h->line, h->type, h->fp, sc->name, ss->hostkey_type, ss->hostkey_fp,
		h == &sc->other ? " (a key of another type than the known one)" : "",
		h->file, h->line, sc->name, h->file);
	lua_pushfstring(L, "%s%s", lua_tostring(L, -1), why);
	lua_replace(L, -2);
	lua_pushliteral(L, "hostkey_changed");
	lua_remove(L, -4); /* why */
	return 3;
}

static int refuse_revoked(lua_State *L, struct ssh *ss, const struct hit *h)
{
	luaL_pushfail(L);
	lua_pushfstring(L, "%s:%d: the server's host key %s %s is REVOKED (@revoked at %s:%d): refusing to connect. "
		"The host's key must be replaced; ask whoever runs it",
		ss->host, ss->port, ss->hostkey_type, ss->hostkey_fp, h->file, h->line);
	lua_pushliteral(L, "hostkey_revoked");
	return 3;
}

static int refuse_ca(lua_State *L, struct ssh *ss, const struct scan *sc, const char *user_file)
{
	const struct hit *h = &sc->ca;
	luaL_pushfail(L);
	lua_pushfstring(L, "%s:%d: %s is known only through a @cert-authority line (%s:%d), and phanes does not "
		"support host certificates. To trust this host, check that its key is %s %s and add it to %s: "
		"`ssh-keyscan -p %d -t %s %s >> %s`",
		ss->host, ss->port, sc->name, h->file, h->line, ss->hostkey_type, ss->hostkey_fp, user_file,
		ss->port, ss->hostkey_type, ss->host, user_file);
	lua_pushliteral(L, "hostkey_unknown");
	return 3;
}

/* nil, message, "hostkey_unknown", { type, fingerprint, name } (so the
 * caller can ask, then connect again accepting only that fingerprint) */
static int refuse_unknown(lua_State *L, struct ssh *ss, const struct scan *sc, const char *user_file)
{
	luaL_pushfail(L);
	lua_pushfstring(L, "%s:%d: host key not known (%s %s) and strict host key checking is on: "
		"check the fingerprint and add it to %s",
		ss->host, ss->port, ss->hostkey_type, ss->hostkey_fp, user_file);
	lua_pushliteral(L, "hostkey_unknown");
	lua_createtable(L, 0, 3);
	lua_pushstring(L, ss->hostkey_type);
	lua_setfield(L, -2, "type");
	lua_pushstring(L, ss->hostkey_fp);
	lua_setfield(L, -2, "fingerprint");
	lua_pushstring(L, sc->name);
	lua_setfield(L, -2, "name");
	return 4;
}

/* Returns 0 when the key is known (or newly recorded), else pushes a failure. */
int ssh_hostkey_check(lua_State *L, struct ssh *ss, const struct kh_opts *o)
{
	size_t len;
	int type;
	const char *key = libssh2_session_hostkey(ss->s, &len, &type);
	if (key == NULL || len == 0)
		return ssh_fail(L, ss, "no host key from the server", "protocol");
	snprintf(ss->hostkey_type, sizeof ss->hostkey_type, "%s", key_name(type));
	fingerprint_raw((const unsigned char *)key, len, ss->hostkey_fp, sizeof ss->hostkey_fp);
	struct scan sc;
	scan_init(&sc, ss, o);
	sc.type = ss->hostkey_type;
	sc.key = (const unsigned char *)key;
	sc.key_len = len;
	int n = scan_files(L, ss, o, &sc);
	if (n)
		return n;
	if (sc.revoked.file)
		return refuse_revoked(L, ss, &sc.revoked);
	if (sc.match)
		return 0;
	if (sc.changed.file)
		return refuse_changed(L, ss, &sc, &sc.changed);
	if (sc.other.file)
		return refuse_changed(L, ss, &sc, &sc.other);
	if (sc.ca.file)
		return refuse_ca(L, ss, &sc, o->user[0]);
	if (o->strict == KH_YES && !(o->accept_fp && strcmp(o->accept_fp, ss->hostkey_fp) == 0))
		return refuse_unknown(L, ss, &sc, o->user[0]);
	return hostkey_record(L, ss, &sc, o, key, len);
}

/* ---- from Lua ------------------------------------------------------------ */

struct lua_lines {
	lua_State *L;
	const char *name; /* lowercase, or NULL */
};

static int push_line(const struct kh_line *l, void *ud)
{
	struct lua_lines *p = ud;
	lua_State *L = p->L;
	static const char *const markers[] = {"", "revoked", "cert-authority"};
	lua_createtable(L, 0, 6);
	lua_pushinteger(L, l->line);
	lua_setfield(L, -2, "line");
	if (l->marker != KH_PLAIN) {
		lua_pushstring(L, markers[l->marker]);
		lua_setfield(L, -2, "marker");
	}
	lua_pushlstring(L, l->hosts, l->hosts_len);
	lua_setfield(L, -2, "hosts");
	lua_pushlstring(L, l->type, l->type_len);
	lua_setfield(L, -2, "type");
	lua_pushlstring(L, l->key, l->key_len);
	lua_setfield(L, -2, "key");
	if (p->name) {
		lua_pushinteger(L, kh_host_match(l->hosts, l->hosts_len, p->name));
		lua_setfield(L, -2, "match");
	}
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	return 0;
}

/* ssh.known_hosts(text[, name]) -> { {line, marker, hosts, type, key,
 * match = 1 | 0 | -1 (when name is given)}, ... }: the parser the host key
 * check uses, for specs and tools. name: "host" or "[host]:port". */
int ssh_l_known_hosts(lua_State *L)
{
	size_t len, nlen = 0;
	const char *text = luaL_checklstring(L, 1, &len);
	const char *name = luaL_optlstring(L, 2, NULL, &nlen);
	luaL_argcheck(L, nlen < 300, 2, "name too long");
	char lower[300];
	for (size_t i = 0; name && i <= nlen; i++)
		lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
	struct lua_lines p = {.L = L, .name = name ? lower : NULL};
	lua_newtable(L);
	kh_parse(text, len, push_line, &p);
	return 1;
}
