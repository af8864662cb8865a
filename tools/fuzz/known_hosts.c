/* fuzz target: the known_hosts parser (src/known_hosts.c): every line it
 * accepts is matched against a host name and its key decoded. */
#include <stdint.h>
#include <stdlib.h>
#include "known_hosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_line(const struct kh_line *l, void *ud)
{
	(void)ud;
	unsigned char *blob = NULL;
	(void)kh_host_match(l->hosts, l->hosts_len, "web1.example.com");
	(void)kh_host_match(l->hosts, l->hosts_len, "[10.0.0.1]:2222");
	if (kh_base64_decode(l->key, l->key_len, &blob) >= 0)
		free(blob);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)kh_parse((const char *)data, size, on_line, NULL);
	return 0;
}
