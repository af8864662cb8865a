/* ssh_int.h: what ssh.c (connect, host key, auth) and ssh_chan.c (exec,
 * SFTP) share. A session is a userdata created closed, then filled. */
#ifndef PHANES_SSH_INT_H
#define PHANES_SSH_INT_H

#include <libssh2.h>
#include <libssh2_sftp.h>
#include "phanes.h"

#define SSH_SESSION_MT "phanes.ssh.session"

struct ssh {
	int sock;              /* -1 when closed */
	LIBSSH2_SESSION *s;    /* NULL when closed */
	LIBSSH2_SFTP *sftp;    /* opened on the first upload/download */
	int timeout_ms;        /* connect, handshake, and each SFTP step */
	int keepalive;         /* seconds between keepalives, 0 for none */
	double last_keepalive; /* monotonic seconds */
	int port;
	char host[256];
	char addr[64];         /* numeric address actually connected to */
	char user[128];
	const char *password;  /* only while authenticating */
	char hostkey_type[32];
	char hostkey_fp[64];   /* SHA256:base64, as OpenSSH prints it */
	char hostkey_added[4096]; /* known_hosts file when a new key was recorded */
	char auth[512];        /* how we got in: "publickey /root/.ssh/id_ed25519" */
	unsigned channels;     /* channels opened (exec and SFTP), for session:stats() */
	unsigned execs;        /* exec requests */
	unsigned sftp_requests; /* SFTP open/write/read/close calls that completed */
};

struct ssh *ssh_check(lua_State *L, int idx); /* an open session or raise */
double ssh_now(void);
/* Wait until the socket is ready in the direction libssh2 wants.
 * Returns 1 ready, 0 timed out (ms elapsed), -1 interrupted by a signal. */
int ssh_wait(struct ssh *ss, int ms);
/* nil, "host:port: what: libssh2's last error", kind */
int ssh_fail(lua_State *L, struct ssh *ss, const char *what, const char *kind);
void ssh_keepalive(struct ssh *ss);

/* known hosts: the files to read and what to do with an unknown host */
#define KH_MAX_FILES 8
enum { KH_ACCEPT_NEW = 0, KH_YES = 1, KH_NO = 2 };
struct kh_opts {
	const char *user[KH_MAX_FILES];   /* new keys go to user[0] */
	int nuser;
	const char *global[KH_MAX_FILES]; /* read only */
	int nglobal;
	int strict;                       /* KH_ACCEPT_NEW, KH_YES, KH_NO */
	const char *alias;                /* HostKeyAlias: the name to look up, or NULL */
	const char *accept_fp;            /* strict, but record this one fingerprint (asked) */
	int hash;                         /* HashKnownHosts: record |1|salt|hash names */
	char home[2][4096];               /* the defaults under $HOME */
};
void ssh_hostkey_opts(lua_State *L, int opts, struct kh_opts *o); /* raises on misuse */
void ssh_hostkey_prefer(lua_State *L, struct ssh *ss, const struct kh_opts *o);
int ssh_hostkey_check(lua_State *L, struct ssh *ss, const struct kh_opts *o);
int ssh_l_known_hosts(lua_State *L); /* ssh.known_hosts(text[, name]) */
int ssh_authenticate(lua_State *L, struct ssh *ss, int opts);
const char *ssh_opt_string(lua_State *L, int opts, const char *key, const char *def);
int ssh_opt_bool(lua_State *L, int opts, const char *key, int def);
void ssh_chan_methods(lua_State *L); /* adds exec/upload/download to the table on top */
void ssh_sftp_close(struct ssh *ss);
int ssh_l_gzip(lua_State *L); /* ssh.gzip(data | { path }[, level]) (gzip.c) */

#endif
