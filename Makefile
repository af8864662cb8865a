# phanes: `make` builds build/phanes; see README.md for the other targets.
CC ?= cc
MULTIARCH := $(shell $(CC) -print-multiarch)
LIBDIR := /usr/lib/$(MULTIARCH)
OPT ?= -O2
CFLAGS := $(OPT) -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-I/usr/include/lua5.4 -Isrc $(EXTRA_CFLAGS)
# Lua, libyaml, libssh2 (+libcrypto, zlib), libevent (+libssl) and luafilesystem are linked from
# Debian's static archives, glibc dynamically. -E exports the Lua API so Lua C
# modules from Debian (busted's term/system) load into the binary for specs.
STATIC_LIBS := liblua5.4-filesystem.a liblua5.4.a libssh2.a libyaml.a libevent_openssl.a libevent_extra.a libevent_core.a libssl.a libcrypto.a libz.a
LDLIBS := $(addprefix $(LIBDIR)/,$(STATIC_LIBS)) -lm -ldl -lpthread
STRIP ?= -s
LINKFLAGS := $(STRIP) -Wl,-E $(LDFLAGS) $(EXTRA_LDFLAGS)

B ?= build
SRC := $(wildcard src/*.c)
OBJ := $(SRC:src/%.c=$(B)/%.o) $(B)/files.o
EMBED := $(shell find lua modules profiles templates web -type f ! -name '*~' ! -name '.*' 2>/dev/null | LC_ALL=C sort)

# Debian packages for the build, the specs and the test hosts.
DEPS := build-essential liblua5.4-dev libyaml-dev libssh2-1-dev libssl-dev zlib1g-dev \
	lua-filesystem-dev libevent-dev lua5.4 lua-busted valgrind openssh-client \
	debootstrap apt-cacher-ng iproute2 util-linux procps time patch perl curl \
	clang libclang-rt-14-dev chromium nodejs
RUN_SPECS := spec/run

.PHONY: all deps deps-ok acng-off bench test unit integration asan asan-test demo bench clean FORCE \
	fuzz fuzz-targets fuzz-run
all: $(B)/phanes

$(B)/phanes: $(OBJ)
	$(CC) $(CFLAGS) $(LINKFLAGS) -o $@ $(OBJ) $(LDLIBS)

$(B)/%.o: src/%.c $(wildcard src/*.h) | $(B)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/files.o: $(B)/files.c src/phanes.h
	$(CC) $(CFLAGS) -c -o $@ $<

# The list of embedded files is a target of its own so a removed file
# regenerates the table too.
$(B)/files.list: FORCE | $(B)
	@printf '%s\n' $(EMBED) > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(B)/files.c: $(B)/embed $(B)/files.list $(EMBED)
	$(B)/embed $@.tmp $(EMBED) && mv $@.tmp $@

$(B)/embed: tools/embed.c | $(B)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

$(B):
	mkdir -p $(B)

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps installs Debian packages: run it as root" >&2; exit 2; fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	@had_acng=$$(dpkg-query -W -f='$${db:Status-Abbrev}' apt-cacher-ng 2>/dev/null); \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEPS) || exit 1; \
	case "$$had_acng" in ii*) ;; *) $(MAKE) --no-print-directory acng-off ;; esac

# The test hosts run their own apt-cacher-ng; the system-wide one that its
# package starts on install is stopped and disabled again (only when `make
# deps` installed it), so this machine is left as it was.
acng-off:
	@if [ -d /run/systemd/system ]; then systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true; \
	elif [ -x /etc/init.d/apt-cacher-ng ]; then /etc/init.d/apt-cacher-ng stop >/dev/null 2>&1 || true; \
		update-rc.d apt-cacher-ng disable >/dev/null 2>&1 || true; fi

# Installs the packages only when one is missing, so `make test` sets itself up.
deps-ok:
	@n=$$(dpkg-query -W -f='$${db:Status-Abbrev}\n' $(DEPS) 2>/dev/null | grep -c '^ii'); \
	if [ "$$n" -ne "$(words $(DEPS))" ]; then $(MAKE) deps; fi

test: deps-ok
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration

unit: $(B)/phanes
	$(RUN_SPECS) $(B)/phanes unit

integration: $(B)/phanes
	$(RUN_SPECS) $(B)/phanes integration

# The same specs on a build with AddressSanitizer and UBSan.
asan:
	$(MAKE) B=build/asan OPT=-O1 STRIP= \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined"

asan-test: asan
	ASAN_OPTIONS=detect_leaks=1 $(RUN_SPECS) build/asan/phanes unit

# libFuzzer targets (clang; -fsanitize=fuzzer comes from libclang-rt-14-dev)
# for the parsers that read what users and hosts write: tools/fuzz/*.c, seeds
# in spec/fuzz/TARGET/. `make fuzz-run` runs each for FUZZ_SECONDS and prints
# executions, coverage and crashes per target (tools/fuzz/run).
FUZZ_TARGETS := yaml json template sshconfig inventory config \
	$(if $(wildcard src/known_hosts.h),known_hosts)
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_SECONDS ?= 20
FUZZ_OBJ = $(filter-out $(B)/main.o,$(OBJ))

fuzz:
	$(MAKE) B=build/fuzz CC=clang OPT=-O1 STRIP= \
		EXTRA_CFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" fuzz-targets

fuzz-targets: $(FUZZ_TARGETS:%=$(B)/fuzz-%)

$(B)/fuzz-%: tools/fuzz/%.c tools/fuzz/harness.c tools/fuzz/harness.h $(FUZZ_OBJ)
	$(CC) $(CFLAGS) -Itools/fuzz -fsanitize=fuzzer $(FUZZ_SAN) -Wl,-E -o $@ \
		$< tools/fuzz/harness.c $(FUZZ_OBJ) $(LDLIBS)

fuzz-run: fuzz
	tools/fuzz/run build/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build

# Provisions a throwaway Debian 12 test host with profiles/dev.lua, twice.
demo: deps-ok $(B)/phanes
	DEMO_CONFIG=examples/demo.yaml spec/hosts/demo.sh

bench: deps-ok $(B)/phanes
	spec/bench/run

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, and completion
# scripts for bash, zsh and fish (generated by the binary itself).
PREFIX ?= /usr/local
# The completion spec loads the zsh and fish scripts in those shells.
DEPS += zsh fish
SHARE = $(DESTDIR)$(PREFIX)/share
.PHONY: install
install: $(B)/phanes
	install -d $(DESTDIR)$(PREFIX)/bin $(SHARE)/bash-completion/completions \
		$(SHARE)/zsh/site-functions $(SHARE)/fish/vendor_completions.d
	install -m 0755 $(B)/phanes $(DESTDIR)$(PREFIX)/bin/phanes
	$(B)/phanes completion bash > $(SHARE)/bash-completion/completions/phanes
	$(B)/phanes completion zsh > $(SHARE)/zsh/site-functions/_phanes
	$(B)/phanes completion fish > $(SHARE)/fish/vendor_completions.d/phanes.fish
	chmod 0644 $(SHARE)/bash-completion/completions/phanes $(SHARE)/zsh/site-functions/_phanes \
		$(SHARE)/fish/vendor_completions.d/phanes.fish
