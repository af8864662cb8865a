/* diff.c: file.diff(old, new, opts) -> the unified diff of two texts by
 * line, as `diff -u` prints it ("" when equal).
 *
 * Myers' O((N+M)D) algorithm on what is left after the common head and
 * tail are set aside; config files differ in a few lines, so D is small.
 * Past MAX_D edits or WORK_BUDGET steps the middle is shown as replaced
 * whole: still a correct diff, only not a minimal one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "phanes.h"

#define DIFF_MT "phanes.file.diff"
#define MAX_D 1000
#define WORK_BUDGET 50000000L

struct line {
	const char *p;
	size_t len; /* with its '\n', when it has one */
	uint64_t hash;
};

/* Everything malloc'd for one diff, freed by __gc even if a push raises. */
struct dmem {
	struct line *a, *b;
	int *trace;
	char *ops;
};

static int dmem_gc(lua_State *L)
{
	struct dmem *d = luaL_checkudata(L, 1, DIFF_MT);
	free(d->a);
	free(d->b);
	free(d->trace);
	free(d->ops);
	memset(d, 0, sizeof *d);
	return 0;
}

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
	return h;
}

/* Split s into lines; returns the count or -1 when out of memory. */
static long split(const char *s, size_t len, struct line **out)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += s[i] == '\n';
	n += len > 0 && s[len - 1] != '\n';
	struct line *v = malloc((n ? n : 1) * sizeof *v);
	if (v == NULL)
		return -1;
	size_t k = 0;
	for (const char *p = s, *end = s + len; p < end; k++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		v[k] = (struct line){p, l, fnv1a(p, l)};
		p += l;
	}
	*out = v;
	return (long)n;
}

static int same(const struct line *x, const struct line *y)
{
	return x->hash == y->hash && x->len == y->len && memcmp(x->p, y->p, x->len) == 0;
}

/* Myers on a[0..n) and b[0..m): writes the edit script ('=', '-', '+') to
 * ops, returns its length, or -1 when the budget ran out (-2: no memory). */
static long myers(const struct line *a, long n, const struct line *b, long m, struct dmem *d, char *ops)
{
	long max = n + m < MAX_D ? n + m : MAX_D, work = 0;
	long off = max + 1; /* v[k + off]: furthest x on diagonal k, k in [-max-1, max+1] */
	int *v = calloc((size_t)(2 * off + 1), sizeof *v);
	d->trace = malloc((size_t)(max + 1) * (size_t)(max + 1) * sizeof(int));
	if (v == NULL || d->trace == NULL) {
		free(v);
		return -2;
	}
	long found = -1;
	for (long dd = 0; dd <= max && found < 0 && work < WORK_BUDGET; dd++) {
		for (long k = -dd; k <= dd; k += 2) {
			long x = (k == -dd || (k != dd && v[k - 1 + off] < v[k + 1 + off])) ? v[k + 1 + off]
											  : v[k - 1 + off] + 1;
			long y = x - k;
			while (x < n && y < m && same(&a[x], &b[y]))
				x++, y++, work++;
			v[k + off] = (int)x;
			work++;
			if (x >= n && y >= m)
				found = dd;
		}
		memcpy(d->trace + dd * dd, v + off - dd, (size_t)(2 * dd + 1) * sizeof(int));
	}
	free(v);
	if (found < 0)
		return -1;
	/* Walk back from (n, m), writing the script from its end. */
	long x = n, y = m, len = 0;
	for (long dd = found; dd > 0; dd--) {
		const int *pv = d->trace + (dd - 1) * (dd - 1) + (dd - 1); /* pv[k], k in [-(dd-1), dd-1] */
		long k = x - y;
		long pk = (k == -dd || (k != dd && pv[k - 1] < pv[k + 1])) ? k + 1 : k - 1;
		long px = pv[pk], py = px - pk;
		while (x > px && y > py)
			ops[len++] = '=', x--, y--;
		ops[len++] = x == px ? '+' : '-';
		x = px, y = py;
	}
	while (x > 0)
		ops[len++] = '=', x--;
	for (long i = 0; i < len / 2; i++) {
		char t = ops[i];
		ops[i] = ops[len - 1 - i];
		ops[len - 1 - i] = t;
	}
	return len;
}

/* The script for the whole texts; returns its length or -1 (no memory). */
static long script(struct dmem *d, long na, long nb)
{
	long pre = 0, suf = 0;
	while (pre < na && pre < nb && same(&d->a[pre], &d->b[pre]))
		pre++;
	while (suf < na - pre && suf < nb - pre && same(&d->a[na - 1 - suf], &d->b[nb - 1 - suf]))
		suf++;
	d->ops = malloc((size_t)(na + nb + 1));
	if (d->ops == NULL)
		return -1;
	memset(d->ops, '=', (size_t)pre);
	long n = na - pre - suf, m = nb - pre - suf;
	long mid = myers(d->a + pre, n, d->b + pre, m, d, d->ops + pre);
	if (mid == -2)
		return -1;
	if (mid == -1) { /* too different: replace the middle whole */
		memset(d->ops + pre, '-', (size_t)n);
		memset(d->ops + pre + n, '+', (size_t)m);
		mid = n + m;
	}
	memset(d->ops + pre + mid, '=', (size_t)suf);
	return pre + mid + suf;
}

/* As diff(1): in each run of changes, the removed lines come first. */
static void deletions_first(char *ops, long len)
{
	for (long i = 0; i < len;) {
		if (ops[i] == '=') {
			i++;
			continue;
		}
		long j = i, dels = 0;
		for (; j < len && ops[j] != '='; j++)
			dels += ops[j] == '-';
		memset(ops + i, '-', (size_t)dels);
		memset(ops + i + dels, '+', (size_t)(j - i - dels));
		i = j;
	}
}

static void add_line(luaL_Buffer *out, char mark, const struct line *l)
{
	luaL_addchar(out, mark);
	luaL_addlstring(out, l->p, l->len);
	if (l->len == 0 || l->p[l->len - 1] != '\n')
		luaL_addstring(out, "\n\\ No newline at end of file\n");
}

static void add_range(lua_State *L, luaL_Buffer *out, long start, long count)
{
	if (count == 1)
		lua_pushfstring(L, "%d", (int)start + 1);
	else
		lua_pushfstring(L, "%d,%d", (int)(count ? start + 1 : start), (int)count);
	luaL_addvalue(out);
}

/* One hunk: ops[from..to), starting at line ia of a and ib of b. */
static void add_hunk(lua_State *L, luaL_Buffer *out, const struct dmem *d, long from, long to, long ia, long ib)
{
	long la = 0, lb = 0;
	for (long i = from; i < to; i++)
		la += d->ops[i] != '+', lb += d->ops[i] != '-';
	luaL_addstring(out, "@@ -");
	add_range(L, out, ia, la);
	luaL_addstring(out, " +");
	add_range(L, out, ib, lb);
	luaL_addstring(out, " @@\n");
	for (long i = from; i < to; i++) {
		char op = d->ops[i];
		add_line(out, op == '=' ? ' ' : op, op == '+' ? &d->b[ib] : &d->a[ia]);
		ia += op != '+';
		ib += op != '-';
	}
}

/* Hunks: each change with ctx lines around it; changes closer than 2*ctx
 * equal lines share a hunk. */
static void add_hunks(lua_State *L, luaL_Buffer *out, const struct dmem *d, long len, long ctx)
{
	long ia = 0, ib = 0; /* line numbers before ops[i] */
	for (long i = 0; i < len;) {
		if (d->ops[i] == '=') {
			i++, ia++, ib++;
			continue;
		}
		long start = i - ctx < 0 ? 0 : i - ctx;
		long sa = ia - (i - start), sb = ib - (i - start);
		long j = i, end;
		for (;;) {
			while (j < len && d->ops[j] != '=')
				j++;
			long e = j;
			while (e < len && d->ops[e] == '=')
				e++;
			if (e == len || e - j > 2 * ctx) {
				end = j + ctx < len ? j + ctx : len;
				break;
			}
			j = e;
		}
		add_hunk(L, out, d, start, end, sa, sb);
		for (; i < end; i++)
			ia += d->ops[i] != '+', ib += d->ops[i] != '-';
	}
}

/* file.diff(old, new[, {from = "a", to = "b", context = 3}]) -> text */
int phanes_diff(lua_State *L)
{
	size_t la, lb;
	const char *a = luaL_checklstring(L, 1, &la);
	const char *b = luaL_checklstring(L, 2, &lb);
	const char *from = "a", *to = "b";
	lua_Integer ctx = 3;
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		lua_getfield(L, 3, "from");
		lua_getfield(L, 3, "to");
		lua_getfield(L, 3, "context");
		from = lua_isnil(L, -3) ? from : luaL_checkstring(L, -3);
		to = lua_isnil(L, -2) ? to : luaL_checkstring(L, -2);
		ctx = lua_isnil(L, -1) ? ctx : luaL_checkinteger(L, -1);
		luaL_argcheck(L, ctx >= 0 && ctx < 1000000, 3, "context must be >= 0");
	}
	if (la == lb && memcmp(a, b, la) == 0) {
		lua_pushliteral(L, "");
		return 1;
	}
	struct dmem *d = lua_newuserdatauv(L, sizeof *d, 0);
	memset(d, 0, sizeof *d);
	luaL_setmetatable(L, DIFF_MT);
	long na = split(a, la, &d->a), nb = na < 0 ? -1 : split(b, lb, &d->b);
	long len = nb < 0 ? -1 : script(d, na, nb);
	if (len < 0)
		return luaL_error(L, "file.diff: out of memory");
	deletions_first(d->ops, len);
	luaL_Buffer out;
	luaL_buffinit(L, &out);
	lua_pushfstring(L, "--- %s\n+++ %s\n", from, to);
	luaL_addvalue(&out);
	add_hunks(L, &out, d, len, (long)ctx);
	luaL_pushresult(&out);
	return 1;
}

void phanes_diff_init(lua_State *L)
{
	if (luaL_newmetatable(L, DIFF_MT)) {
		lua_pushcfunction(L, dmem_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
}
