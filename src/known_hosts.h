/* known_hosts.h: OpenSSH known_hosts files, parsed from a buffer. No
 * libssh2 and no Lua here, so a fuzzer can drive kh_parse alone. */
#ifndef PHANES_KNOWN_HOSTS_H
#define PHANES_KNOWN_HOSTS_H

#include <stddef.h>

enum { KH_PLAIN = 0, KH_REVOKED = 1, KH_CA = 2 };

struct kh_line {
	int line;              /* 1-based line number in the buffer */
	int marker;            /* KH_PLAIN, KH_REVOKED (@revoked), KH_CA (@cert-authority) */
	const char *hosts;     /* the host field: "a,b,!c", "[h]:2222", "|1|salt|hash" */
	size_t hosts_len;
	const char *type;      /* "ssh-ed25519", ... */
	size_t type_len;
	const char *key;       /* base64 of the key blob */
	size_t key_len;
};

/* Called for each well-formed line; a non-zero return stops the parse and
 * is returned by kh_parse. */
typedef int (*kh_line_fn)(const struct kh_line *l, void *ud);

/* Parse a whole known_hosts buffer (not NUL-terminated). Comments, blank
 * lines, unknown markers and lines with fewer than three fields are
 * skipped, as OpenSSH does. Returns 0, or what fn returned to stop. */
int kh_parse(const char *buf, size_t len, kh_line_fn fn, void *ud);

/* Does the host field of a line match name ("host" or "[host]:port",
 * lowercase)? 1 yes, 0 no, -1 a negated pattern (!pat) matches, which
 * rules the line out. Hashed fields (|1|salt|hash) are checked with
 * HMAC-SHA1. */
int kh_host_match(const char *hosts, size_t len, const char *name);

/* Decode base64 (len a multiple of 4) into a malloc'd buffer. Returns the
 * decoded length, or -1 (out untouched) when it does not decode. */
long kh_base64_decode(const char *b64, size_t len, unsigned char **out);

#endif
