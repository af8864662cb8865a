/* ssh_chan.c: what runs over an open phanes.ssh session: exec with output
 * streamed as it arrives, and SFTP upload/download. The session is
 * non-blocking after connect; every call here loops on EAGAIN, waiting on
 * the socket, sending keepalives and calling back into Lua between reads.
 *
 *   local res, err, kind = s:exec("uname -m", { stream = function(kind, chunk) end })
 *   assert(s:upload({ path = "/usr/bin/phanes" }, "/tmp/phanes.new", tonumber("0700", 8)))
 *   local text = s:download("/var/lib/phanes/state.json") */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ssh_int.h"

#define CHUNK 32768

struct buf {
	char *p;
	size_t n, cap;
};

static int buf_add(struct buf *b, const char *d, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
	return 0;
}

/* Wait for the socket, at most until the deadline (0: none). Returns 1 to
 * retry, 0 when the deadline passed. Sends keepalives while waiting. */
static int again(struct ssh *ss, double deadline)
{
	int ms = 500;
	if (deadline > 0) {
		double left = deadline - ssh_now();
		if (left <= 0)
			return 0;
		if (left * 1000 < ms)
			ms = (int)(left * 1000) + 1;
	}
	ssh_wait(ss, ms);
	ssh_keepalive(ss);
	return 1;
}

#define RETRY(ss, deadline, rc, call) \
	while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN && again((ss), (deadline)))

static int lost(int rc)
{
	return rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_SEND ||
		rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_SOCKET_TIMEOUT ||
		rc == LIBSSH2_ERROR_BAD_SOCKET || rc == LIBSSH2_ERROR_SOCKET_NONE;
}

static int chan_fail(lua_State *L, struct ssh *ss, const char *what, int rc)
{
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return ssh_fail(L, ss, what, "timeout");
	if (lost(rc))
		return ssh_fail(L, ss, "connection lost", "lost");
	return ssh_fail(L, ss, what, "protocol");
}

static double deadline_of(struct ssh *ss)
{
	return ssh_now() + (ss->timeout_ms > 0 ? ss->timeout_ms : 10000) / 1000.0;
}

static LIBSSH2_CHANNEL *chan_open(struct ssh *ss, int *rc)
{
	double deadline = deadline_of(ss);
	LIBSSH2_CHANNEL *ch;
	while ((ch = libssh2_channel_open_session(ss->s)) == NULL) {
		*rc = libssh2_session_last_errno(ss->s);
		if (*rc != LIBSSH2_ERROR_EAGAIN || !again(ss, deadline))
			return NULL;
	}
	ss->channels++;
	return ch;
}

/* ---- exec ---------------------------------------------------------------- */

struct run {
	lua_State *L;
	struct ssh *ss;
	LIBSSH2_CHANNEL *ch;
	int stream, tick;     /* stack slots of the callbacks, 0 when absent */
	const char *in;       /* stdin */
	size_t inlen, inoff;
	int eof_sent, capture;
	struct buf out, err;
	int cb_error;         /* a callback raised: its error is on the stack */
	double deadline;      /* 0: none */
	double started;
};

static int callback(struct run *r, int slot, const char *kind, const char *d, size_t n)
{
	lua_State *L = r->L;
	lua_pushvalue(L, slot);
	int nargs = 0;
	if (kind) {
		lua_pushstring(L, kind);
		lua_pushlstring(L, d, n);
		nargs = 2;
	}
	if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
		r->cb_error = 1;
		return -1;
	}
	return 0;
}

static int push_stdin(struct run *r)
{
	while (r->inoff < r->inlen) {
		size_t want = r->inlen - r->inoff;
		ssize_t rc = libssh2_channel_write(r->ch, r->in + r->inoff, want > CHUNK ? CHUNK : want);
		if (rc == LIBSSH2_ERROR_EAGAIN)
			return 0;
		if (rc < 0) { /* the command ended without reading all of it */
			r->inoff = r->inlen;
			break;
		}
		r->inoff += (size_t)rc;
	}
	if (!r->eof_sent) {
		int rc = libssh2_channel_send_eof(r->ch);
		if (rc == LIBSSH2_ERROR_EAGAIN)
			return 0;
		r->eof_sent = 1;
	}
	return 0;
}

/* Read what is there on one stream. Returns bytes read, or <0 on error. */
static ssize_t pull(struct run *r, int id)
{
	char data[CHUNK];
	ssize_t total = 0, rc;
	while ((rc = libssh2_channel_read_ex(r->ch, id, data, sizeof data)) > 0) {
		total += rc;
		struct buf *b = id == 0 ? &r->out : &r->err;
		if (r->capture && buf_add(b, data, (size_t)rc) < 0)
			return LIBSSH2_ERROR_ALLOC;
		if (r->stream && callback(r, r->stream, id == 0 ? "stdout" : "stderr", data, (size_t)rc) < 0)
			return LIBSSH2_ERROR_BAD_USE;
	}
	if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN)
		return rc;
	return total;
}

/* Between reads: timeouts, keepalives, and the Lua tick (Ctrl-C handling). */
static int idle(struct run *r)
{
	if (r->deadline > 0 && ssh_now() >= r->deadline)
		return LIBSSH2_ERROR_TIMEOUT;
	int w = ssh_wait(r->ss, 200);
	ssh_keepalive(r->ss);
	(void)w;
	if (r->tick && callback(r, r->tick, NULL, NULL, 0) < 0)
		return LIBSSH2_ERROR_BAD_USE;
	return 0;
}

/* Read until the remote end closes the channel. */
static int run_loop(struct run *r)
{
	for (;;) {
		push_stdin(r);
		ssize_t a = pull(r, 0), b = a < 0 ? 0 : pull(r, 1);
		if (a < 0 || b < 0)
			return (int)(a < 0 ? a : b);
		if (libssh2_channel_eof(r->ch))
			break;
		if (a == 0 && b == 0) {
			int rc = idle(r);
			if (rc)
				return rc;
		}
	}
	int rc;
	while ((rc = libssh2_channel_wait_closed(r->ch)) == LIBSSH2_ERROR_EAGAIN) {
		int e = idle(r);
		if (e)
			return e;
	}
	return rc;
}

static void chan_free(struct ssh *ss, LIBSSH2_CHANNEL *ch)
{
	int rc;
	double deadline = ssh_now() + 2;
	RETRY(ss, deadline, rc, libssh2_channel_close(ch));
	RETRY(ss, deadline, rc, libssh2_channel_free(ch));
}

static void push_result(lua_State *L, struct run *r)
{
	char *sig = NULL;
	size_t siglen = 0;
	libssh2_channel_get_exit_signal(r->ch, &sig, &siglen, NULL, NULL, NULL, NULL);
	struct phanes_result res = {
		.code = sig ? 0 : libssh2_channel_get_exit_status(r->ch),
		.signal_name = sig, .signal_name_len = siglen,
		.out = r->out.p, .out_len = r->out.n,
		.err = r->err.p, .err_len = r->err.n,
		.duration = ssh_now() - r->started,
	};
	phanes_push_result(L, &res);
	if (sig)
		libssh2_free(r->ss->s, sig);
}

static void run_opts(lua_State *L, struct run *r)
{
	lua_settop(L, 3);
	if (lua_isnoneornil(L, 3)) {
		lua_newtable(L);
		lua_replace(L, 3);
	}
	luaL_checktype(L, 3, LUA_TTABLE);
	lua_getfield(L, 3, "stream"); /* 4 */
	lua_getfield(L, 3, "tick");   /* 5 */
	lua_getfield(L, 3, "stdin");  /* 6 */
	lua_getfield(L, 3, "timeout"); /* 7 */
	lua_getfield(L, 3, "capture"); /* 8 */
	if (!lua_isnil(L, 4))
		luaL_checktype(L, 4, LUA_TFUNCTION), r->stream = 4;
	if (!lua_isnil(L, 5))
		luaL_checktype(L, 5, LUA_TFUNCTION), r->tick = 5;
	r->in = luaL_optlstring(L, 6, "", &r->inlen);
	lua_Number t = luaL_optnumber(L, 7, 0);
	r->deadline = t > 0 ? ssh_now() + t : 0;
	r->capture = lua_isnil(L, 8) || lua_toboolean(L, 8);
}

/* session:exec(cmd, { stdin = str, stream = fn(kind, chunk), tick = fn(),
 *   timeout = s, capture = true }) -> { code | signal, stdout, stderr } | nil, err, kind */
static int l_exec(lua_State *L)
{
	struct ssh *ss = ssh_check(L, 1);
	size_t cmdlen;
	const char *cmd = luaL_checklstring(L, 2, &cmdlen);
	struct run r = {.L = L, .ss = ss, .started = ssh_now()};
	run_opts(L, &r);
	int rc = 0;
	r.ch = chan_open(ss, &rc);
	if (r.ch == NULL)
		return chan_fail(L, ss, "cannot open a channel", rc);
	double deadline = deadline_of(ss);
	RETRY(ss, deadline, rc, libssh2_channel_process_startup(r.ch, "exec", 4, cmd, (unsigned)cmdlen));
	ss->execs++;
	if (rc == 0)
		rc = run_loop(&r);
	int n = 0;
	if (r.cb_error)
		lua_insert(L, 1); /* keep the callback's error out of the way of the results */
	else if (rc == LIBSSH2_ERROR_TIMEOUT)
		n = ssh_fail(L, ss, "command timed out", "timeout");
	else if (rc != 0)
		n = chan_fail(L, ss, "exec", rc);
	else
		push_result(L, &r), n = 1;
	chan_free(ss, r.ch);
	free(r.out.p);
	free(r.err.p);
	if (r.cb_error) {
		lua_pushvalue(L, 1);
		return lua_error(L);
	}
	return n;
}

/* ---- SFTP ---------------------------------------------------------------- */

static const char *sftp_reason(unsigned long code)
{
	switch (code) {
	case LIBSSH2_FX_NO_SUCH_FILE: return "no such file";
	case LIBSSH2_FX_PERMISSION_DENIED: return "permission denied";
	case LIBSSH2_FX_NO_SUCH_PATH: return "no such directory";
	case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: return "no space left";
	case LIBSSH2_FX_QUOTA_EXCEEDED: return "quota exceeded";
	case LIBSSH2_FX_WRITE_PROTECT: return "read-only file system";
	default: return "SFTP failure";
	}
}

static int sftp_fail(lua_State *L, struct ssh *ss, const char *what, const char *path, int rc)
{
	if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL && ss->sftp) {
		luaL_pushfail(L);
		lua_pushfstring(L, "%s:%d: %s %s: %s", ss->host, ss->port, what, path,
			sftp_reason(libssh2_sftp_last_error(ss->sftp)));
		lua_pushliteral(L, "sftp");
		return 3;
	}
	return chan_fail(L, ss, what, rc);
}

static int sftp_ready(struct ssh *ss)
{
	double deadline = deadline_of(ss);
	while (ss->sftp == NULL) {
		ss->sftp = libssh2_sftp_init(ss->s);
		int rc = ss->sftp ? 0 : libssh2_session_last_errno(ss->s);
		if (rc && (rc != LIBSSH2_ERROR_EAGAIN || !again(ss, deadline)))
			return rc;
		if (rc == 0)
			ss->channels++;
	}
	return 0;
}

static LIBSSH2_SFTP_HANDLE *sftp_open(struct ssh *ss, const char *path, unsigned long flags, long mode, int *rc)
{
	double deadline = deadline_of(ss);
	LIBSSH2_SFTP_HANDLE *h;
	while ((h = libssh2_sftp_open_ex(ss->sftp, path, (unsigned)strlen(path), flags, mode, LIBSSH2_SFTP_OPENFILE)) == NULL) {
		*rc = libssh2_session_last_errno(ss->s);
		if (*rc != LIBSSH2_ERROR_EAGAIN || !again(ss, deadline))
			return NULL;
	}
	ss->sftp_requests++;
	return h;
}

static int sftp_write_all(struct ssh *ss, LIBSSH2_SFTP_HANDLE *h, const char *d, size_t n)
{
	double deadline = deadline_of(ss);
	while (n > 0) {
		ssize_t rc = libssh2_sftp_write(h, d, n);
		if (rc == LIBSSH2_ERROR_EAGAIN) {
			if (!again(ss, deadline))
				return LIBSSH2_ERROR_EAGAIN;
			continue;
		}
		if (rc < 0)
			return (int)rc;
		ss->sftp_requests++;
		d += rc, n -= (size_t)rc;
		deadline = deadline_of(ss); /* an idle timeout, not a total one */
	}
	return 0;
}

/* Copy a local file in chunks: a 5 MB binary never becomes a Lua string. */
static int sftp_write_file(struct ssh *ss, LIBSSH2_SFTP_HANDLE *h, FILE *f)
{
	char *chunk = malloc(256 * 1024);
	int rc = chunk ? 0 : LIBSSH2_ERROR_ALLOC;
	size_t n;
	while (rc == 0 && (n = fread(chunk, 1, 256 * 1024, f)) > 0)
		rc = sftp_write_all(ss, h, chunk, n);
	free(chunk);
	return rc;
}

/* session:upload(data | { path = local }, remote_path[, mode = 0644]) -> true | nil, err, kind */
static int l_upload(lua_State *L)
{
	struct ssh *ss = ssh_check(L, 1);
	size_t len = 0;
	const char *data = NULL, *local = NULL;
	if (lua_istable(L, 2)) {
		lua_getfield(L, 2, "path");
		local = luaL_checkstring(L, -1);
	} else {
		data = luaL_checklstring(L, 2, &len);
	}
	const char *path = luaL_checkstring(L, 3);
	long mode = (long)luaL_optinteger(L, 4, 0644);
	FILE *f = NULL;
	if (local && (f = fopen(local, "rbe")) == NULL)
		return phanes_fail(L, local, errno);
	int rc = sftp_ready(ss);
	LIBSSH2_SFTP_HANDLE *h = rc ? NULL : sftp_open(ss, path,
		LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC, mode, &rc);
	if (h) {
		rc = f ? sftp_write_file(ss, h, f) : sftp_write_all(ss, h, data, len);
		int crc;
		double deadline = deadline_of(ss);
		RETRY(ss, deadline, crc, libssh2_sftp_close_handle(h));
		if (rc == 0)
			rc = crc;
	}
	int ferr = f && ferror(f);
	if (f)
		fclose(f);
	if (ferr)
		return phanes_fail(L, local, EIO);
	if (rc)
		return sftp_fail(L, ss, "upload to", path, rc);
	lua_pushboolean(L, 1);
	return 1;
}

/* session:download(remote_path) -> data | nil, err, kind */
static int l_download(lua_State *L)
{
	struct ssh *ss = ssh_check(L, 1);
	const char *path = luaL_checkstring(L, 2);
	int rc = sftp_ready(ss);
	LIBSSH2_SFTP_HANDLE *h = rc ? NULL : sftp_open(ss, path, LIBSSH2_FXF_READ, 0, &rc);
	if (h == NULL)
		return sftp_fail(L, ss, "download", path, rc);
	struct buf b = {0};
	char chunk[CHUNK];
	double deadline = deadline_of(ss);
	for (;;) {
		ssize_t n = libssh2_sftp_read(h, chunk, sizeof chunk);
		if (n == LIBSSH2_ERROR_EAGAIN && again(ss, deadline))
			continue;
		if (n <= 0) {
			rc = (int)n;
			break;
		}
		ss->sftp_requests++;
		if (buf_add(&b, chunk, (size_t)n) < 0) {
			rc = LIBSSH2_ERROR_ALLOC;
			break;
		}
		deadline = deadline_of(ss);
	}
	int crc;
	deadline = deadline_of(ss);
	RETRY(ss, deadline, crc, libssh2_sftp_close_handle(h));
	int n;
	if (rc != 0) {
		n = sftp_fail(L, ss, "download", path, rc);
	} else {
		lua_pushlstring(L, b.p ? b.p : "", b.n);
		n = 1;
	}
	free(b.p);
	return n;
}

void ssh_chan_methods(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"exec", l_exec},
		{"upload", l_upload},
		{"download", l_download},
		{NULL, NULL},
	};
	luaL_setfuncs(L, methods, 0);
}
