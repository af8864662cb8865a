/* http_tls.c: TLS for phanes.http: evhttp hands each accepted connection
 * to a libevent_openssl bufferevent (OpenSSL is linked statically, as for
 * libssh2). Only mechanism: the certificate and key files, TLS 1.2 at least. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include "http.h"

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
	SSL *ssl = SSL_new(arg);
	if (ssl == NULL)
		return NULL;
	struct bufferevent *bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
		BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		SSL_free(ssl);
	return bev;
}

static int tls_fail(lua_State *L, const char *what, const char *path, SSL_CTX *ctx)
{
	char buf[256];
	unsigned long e = ERR_get_error();
	ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	if (ctx)
		SSL_CTX_free(ctx);
	return phanes_failf(L, "http: %s %s: %s", what, path, e ? buf : "failed");
}

/* Loads cert (a PEM chain) and key into a new context; *out on success.
 * Returns 0, or pushes nil, err and returns 2. */
int phanes_http_tls_setup(lua_State *L, struct evhttp *http, const char *cert, const char *key, void **out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return tls_fail(L, "creating the TLS context for", cert, NULL);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		return tls_fail(L, "setting TLS 1.2 for", cert, ctx);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		return tls_fail(L, "loading the certificate", cert, ctx);
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		return tls_fail(L, "loading the key", key, ctx);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return tls_fail(L, "the key does not match the certificate", cert, ctx);
	evhttp_set_bevcb(http, tls_bev, ctx);
	*out = ctx;
	return 0;
}

void phanes_http_tls_free(void *ctx)
{
	SSL_CTX_free(ctx);
}
