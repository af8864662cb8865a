/* yaml_schema.c: the YAML 1.2 core schema for plain scalars, shared by
 * yaml.decode (what a scalar means) and yaml.encode (whether a string can be
 * written plain). null: ~ null Null NULL and empty; bool: true/True/TRUE,
 * false/False/FALSE (yes/no/on/off stay strings); int: [-+]?[0-9]+ (decimal,
 * so 0755 is 755), 0o[0-7]+, 0x[0-9a-fA-F]+, past int64 YS_INT_RANGE;
 * float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, .inf, -.inf,
 * .nan; anything else a string. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "codec.h"

static int is_one_of(const char *s, size_t n, const char *const *words)
{
	for (; *words; words++)
		if (strlen(*words) == n && memcmp(s, *words, n) == 0)
			return 1;
	return 0;
}

static int digit_value(char ch, int base)
{
	int d = ch >= '0' && ch <= '9' ? ch - '0'
		: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
		: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : 99;
	return d < base ? d : -1;
}

/* s[0..n) all digits of base (n >= 1): YS_INT, or YS_INT_RANGE past int64. */
static enum yscalar parse_int(const char *s, size_t n, int base, int neg, struct yvalue *v)
{
	uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
	if (n == 0)
		return YS_STR;
	for (size_t i = 0; i < n; i++) {
		int d = digit_value(s[i], base);
		if (d < 0)
			return YS_STR;
		if (acc > (limit - (uint64_t)d) / (uint64_t)base)
			return YS_INT_RANGE;
		acc = acc * (uint64_t)base + (uint64_t)d;
	}
	v->i = neg ? (lua_Integer)(0 - acc) : (lua_Integer)acc;
	return YS_INT;
}

static size_t skip_digits(const char *s, size_t i, size_t n)
{
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	return i;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_float(const char *s, size_t n)
{
	size_t i = 0, j;
	if (i < n && (s[i] == '+' || s[i] == '-'))
		i++;
	j = skip_digits(s, i, n);
	int int_digits = j > i;
	i = j;
	if (i < n && s[i] == '.') {
		j = skip_digits(s, i + 1, n);
		if (!int_digits && j == i + 1)
			return 0;
		i = j;
	} else if (!int_digits) {
		return 0;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		j = skip_digits(s, i, n);
		if (j == i)
			return 0;
		i = j;
	}
	return i == n;
}

/* s must be NUL-terminated at n (libyaml values and Lua strings are). */
enum yscalar yaml_resolve(const char *s, size_t n, struct yvalue *v)
{
	static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
	static const char *const trues[] = {"true", "True", "TRUE", NULL};
	static const char *const falses[] = {"false", "False", "FALSE", NULL};
	static const char *const infs[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
	static const char *const neg_infs[] = {"-.inf", "-.Inf", "-.INF", NULL};
	static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
	if (n == 0 || is_one_of(s, n, nulls))
		return YS_NULL;
	if (is_one_of(s, n, trues) || is_one_of(s, n, falses)) {
		v->b = s[0] == 't' || s[0] == 'T';
		return YS_BOOL;
	}
	if (n > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
		enum yscalar k = parse_int(s + 2, n - 2, s[1] == 'o' ? 8 : 16, 0, v);
		if (k != YS_STR)
			return k;
	}
	size_t sign = s[0] == '+' || s[0] == '-';
	if (n > sign && skip_digits(s, sign, n) == n)
		return parse_int(s + sign, n - sign, 10, s[0] == '-', v);
	if (is_float(s, n)) {
		v->d = strtod(s, NULL);
		return YS_FLOAT;
	}
	if (is_one_of(s, n, infs) || is_one_of(s, n, neg_infs)) {
		v->d = s[0] == '-' ? -HUGE_VAL : HUGE_VAL;
		return YS_FLOAT;
	}
	if (is_one_of(s, n, nans)) {
		v->d = NAN;
		return YS_FLOAT;
	}
	return YS_STR;
}

