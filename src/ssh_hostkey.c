/* ssh_hostkey.c: the server's host key against known_hosts, as OpenSSH's
 * accept-new (or strict): a known key passes, an unknown one is recorded
 * (or refused when strict), a changed one is refused with both SHA256
 * fingerprints and the file:line to look at. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "ssh_int.h"

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
int ssh_hostkey_check(lua_State *L, struct ssh *ss, const char *path, int strict)
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

