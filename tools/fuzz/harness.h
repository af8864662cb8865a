/* harness.h: what the libFuzzer targets share (tools/fuzz, `make fuzz`).
 * A Lua target boots the phanes primitives and the Lua tree embedded in
 * the binary, runs `setup` (a chunk that returns the function to fuzz) once,
 * then calls that function with each input as a string. A Lua error that
 * escapes it is a finding: the parsers return nil, err on bad input. */
#ifndef PHANES_FUZZ_HARNESS_H
#define PHANES_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

int fuzz_lua_init(const char *name, const char *setup);
int fuzz_lua_run(const uint8_t *data, size_t size);

/* One target in a file: name, then the Lua chunk. */
#define FUZZ_LUA_TARGET(name, setup)                                        \
	int LLVMFuzzerInitialize(int *argc, char ***argv);                  \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);       \
	int LLVMFuzzerInitialize(int *argc, char ***argv)                   \
	{                                                                   \
		(void)argc;                                                 \
		(void)argv;                                                 \
		return fuzz_lua_init(name, setup);                          \
	}                                                                   \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)        \
	{                                                                   \
		return fuzz_lua_run(data, size);                            \
	}

#endif
