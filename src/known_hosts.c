/* known_hosts.c: the known_hosts format of OpenSSH's sshd(8) manual:
 * [@marker] hosts keytype base64 [comment], hosts being comma-separated
 * patterns (`*`, `?`, `!negation`, `[host]:port`) or one hashed name
 * |1|base64(salt)|base64(HMAC-SHA1(salt, name)). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "known_hosts.h"

long kh_base64_decode(const char *b64, size_t len, unsigned char **out)
{
	if (len == 0 || len % 4 != 0 || len > (1u << 20))
		return -1;
	unsigned char *raw = malloc(len / 4 * 3 + 1);
	if (raw == NULL)
		return -1;
	int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
	if (n < 0) {
		free(raw);
		return -1;
	}
	for (size_t i = len; i > len - 2 && b64[i - 1] == '='; i--)
		n--; /* EVP_DecodeBlock counts the padding */
	*out = raw;
	return n;
}

/* Glob with `*` and `?`, the pattern case-folded, name already lowercase.
 * Iterative (back to the last star), so no pattern can make it slow. */
static int glob_match(const char *p, size_t pn, const char *s, size_t sn)
{
	size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;
	while (si < sn) {
		if (pi < pn && p[pi] == '*') {
			star = pi++;
			mark = si;
		} else if (pi < pn && (p[pi] == '?' || tolower((unsigned char)p[pi]) == (unsigned char)s[si])) {
			pi++;
			si++;
		} else if (star != (size_t)-1) {
			pi = star + 1;
			si = ++mark;
		} else {
			return 0;
		}
	}
	while (pi < pn && p[pi] == '*')
		pi++;
	return pi == pn;
}

static int hashed_match(const char *f, size_t len, const char *name)
{
	const char *salt = f + 3, *end = f + len;
	const char *bar = memchr(salt, '|', (size_t)(end - salt));
	if (bar == NULL)
		return 0;
	unsigned char *s = NULL, *h = NULL, mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	long sn = kh_base64_decode(salt, (size_t)(bar - salt), &s);
	long hn = sn == 20 ? kh_base64_decode(bar + 1, (size_t)(end - bar - 1), &h) : -1;
	int ok = hn == 20 &&
		HMAC(EVP_sha1(), s, (int)sn, (const unsigned char *)name, strlen(name), mac, &maclen) != NULL &&
		maclen == 20 && CRYPTO_memcmp(mac, h, 20) == 0;
	free(s);
	free(h);
	return ok;
}

int kh_host_match(const char *hosts, size_t len, const char *name)
{
	if (len > 3 && memcmp(hosts, "|1|", 3) == 0)
		return hashed_match(hosts, len, name);
	int yes = 0;
	size_t nlen = strlen(name), i = 0;
	while (i < len) {
		const char *comma = memchr(hosts + i, ',', len - i);
		size_t j = comma ? (size_t)(comma - hosts) : len;
		const char *p = hosts + i;
		size_t pn = j - i;
		int neg = pn > 0 && p[0] == '!';
		if (glob_match(p + neg, pn - (size_t)neg, name, nlen)) {
			if (neg)
				return -1;
			yes = 1;
		}
		i = j + 1;
	}
	return yes;
}

/* The next blank-separated field of [*p, end), or 0 when none is left. */
static int field(const char **p, const char *end, const char **f, size_t *flen)
{
	const char *s = *p;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	const char *e = s;
	while (e < end && *e != ' ' && *e != '\t')
		e++;
	*p = e;
	*f = s;
	*flen = (size_t)(e - s);
	return e > s;
}

static int is_word(const char *f, size_t n, const char *w)
{
	return n == strlen(w) && memcmp(f, w, n) == 0;
}

/* One line; returns what fn returned, 0 for a skipped line. */
static int parse_line(const char *s, const char *end, int lineno, kh_line_fn fn, void *ud)
{
	struct kh_line l = {.line = lineno, .marker = KH_PLAIN};
	const char *f;
	size_t n;
	if (end > s && end[-1] == '\r')
		end--;
	if (!field(&s, end, &f, &n) || f[0] == '#')
		return 0;
	if (f[0] == '@') {
		if (is_word(f, n, "@revoked"))
			l.marker = KH_REVOKED;
		else if (is_word(f, n, "@cert-authority"))
			l.marker = KH_CA;
		else
			return 0;
		if (!field(&s, end, &f, &n))
			return 0;
	}
	l.hosts = f;
	l.hosts_len = n;
	if (!field(&s, end, &l.type, &l.type_len) || !field(&s, end, &l.key, &l.key_len))
		return 0;
	if (isdigit((unsigned char)l.type[0]))
		return 0; /* the SSH-1 "bits exponent modulus" form */
	return fn(&l, ud);
}

int kh_parse(const char *buf, size_t len, kh_line_fn fn, void *ud)
{
	const char *p = buf, *end = buf + len;
	int lineno = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		int r = parse_line(p, eol, ++lineno, fn, ud);
		if (r != 0)
			return r;
		p = nl ? nl + 1 : end;
	}
	return 0;
}
