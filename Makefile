# phanes: `make` builds build/phanes; see README.md for the other targets.
CC ?= cc
# `make ARCH=aarch64` cross-builds build/aarch64/phanes with Debian's
# gcc-aarch64-linux-gnu and the arm64 static archives (multiarch); `make
# dist` builds the binary for every architecture in DIST_ARCHES.
HOST_ARCH := $(shell uname -m)
ARCH ?= $(HOST_ARCH)
DIST_ARCHES := x86_64 aarch64
$(if $(filter $(ARCH),$(DIST_ARCHES)),,$(error ARCH=$(ARCH): phanes builds for $(DIST_ARCHES)))
ifneq ($(ARCH),$(HOST_ARCH))
CC := $(ARCH)-linux-gnu-gcc
B ?= build/$(ARCH)
endif
HOSTCC ?= cc
MULTIARCH := $(shell $(CC) -print-multiarch)
LIBDIR := /usr/lib/$(MULTIARCH)
OPT ?= -O2
CFLAGS := $(OPT) -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-I/usr/include/lua5.4 -Isrc $(EXTRA_CFLAGS)
# Lua, libyaml, libssh2 (+libcrypto, zlib), libevent (+libssl) and luafilesystem are linked from
# Debian's static archives, glibc dynamically. -E exports the Lua API so Lua C
# modules from Debian (busted's term/system) load into the binary for specs.
STATIC_LIBS := liblua5.4-filesystem.a liblua5.4.a libssh2.a libyaml.a libevent_openssl.a libevent_extra.a libevent_core.a libssl.a libcrypto.a libz.a
# libevent-dev cannot be installed for two architectures at once (its
# event-config.h is not multiarch): a foreign build unpacks Debian's arm64
# package into a sysroot of its own (tools/vendor unpack) and takes the
# headers and archives from there.
ifneq ($(ARCH),$(HOST_ARCH))
SYSROOT := $(B)/sysroot
SYSROOT_PKGS := libevent-dev
SYSROOT_LIBS := libevent_openssl.a libevent_extra.a libevent_core.a
CFLAGS += -I$(SYSROOT)/usr/include
endif
libpath = $(if $(filter $(1),$(SYSROOT_LIBS)),$(SYSROOT))$(LIBDIR)/$(1)
LDLIBS := $(foreach l,$(STATIC_LIBS),$(call libpath,$(l))) -lm -ldl -lpthread
STRIP ?= -s
LINKFLAGS := $(STRIP) -Wl,-E $(LDFLAGS) $(EXTRA_LDFLAGS)

B ?= build
SRC := $(wildcard src/*.c)
# The commit the binary says it was built from (phanes version -v).
GIT_COMMIT := $(shell git describe --always --dirty --abbrev=12 --exclude='*' 2>/dev/null || echo unknown)
OBJ := $(SRC:src/%.c=$(B)/%.o) $(B)/files.o
EMBED := $(shell find lua modules profiles templates web -type f ! -name '*~' ! -name '.*' 2>/dev/null | LC_ALL=C sort)

# Debian packages for the build, the specs and the test hosts.
DEPS := build-essential liblua5.4-dev libyaml-dev libssh2-1-dev libssl-dev zlib1g-dev \
	lua-filesystem-dev libevent-dev lua5.4 lua-busted valgrind openssh-client \
	debootstrap apt-cacher-ng iproute2 util-linux procps time patch perl curl \
	clang libclang-rt-14-dev chromium nodejs python3 zip unzip git wrk jq
# The arm64 cross-build (make ARCH=aarch64, make dist) and its emulation
# (make test-arm64): Debian's cross compiler and arm64 static archives.
DEPS += gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static \
	liblua5.4-dev:arm64 libyaml-dev:arm64 libssh2-1-dev:arm64 libssl-dev:arm64 \
	zlib1g-dev:arm64 lua-filesystem-dev:arm64
RUN_SPECS := spec/run

.PHONY: all dist vendor-update sysroot test-arm64 binfmt-off deps deps-ok acng-off bench test unit integration asan asan-test demo bench clean FORCE \
	fuzz fuzz-targets fuzz-run
all: $(B)/phanes

$(B)/phanes: $(OBJ) $(B)/vendor.ok
	$(CC) $(CFLAGS) $(LINKFLAGS) -o $@ $(OBJ) $(LDLIBS)

# The third-party archives linked in must be the ones vendor/manifest
# records (package, version, sha256); checked again only when an archive or
# the manifest changes. `make vendor-update` records the installed ones.
$(B)/vendor.ok: vendor/manifest tools/vendor $(wildcard $(foreach l,$(STATIC_LIBS),$(call libpath,$(l)))) \
		$(if $(SYSROOT),$(B)/sysroot.ok) | $(B)
	@SYSROOT=$(SYSROOT) tools/vendor check $(ARCH) $(STATIC_LIBS)
	@touch $@

vendor-update:
	@set -e; for a in $(filter-out $(HOST_ARCH),$(DIST_ARCHES)); do $(MAKE) --no-print-directory ARCH=$$a sysroot; done
	SYSROOT=build/aarch64/sysroot tools/vendor update "$(DIST_ARCHES)" $(STATIC_LIBS)

sysroot: $(if $(SYSROOT),$(B)/sysroot.ok)
$(B)/sysroot.ok: tools/vendor | $(B)
	tools/vendor unpack $(ARCH) $(SYSROOT) $(SYSROOT_PKGS)
	@touch $@

$(B)/version.o: CFLAGS += -DPHANES_COMMIT='"$(GIT_COMMIT)"'
$(B)/version.o: $(B)/commit

$(B)/commit: FORCE | $(B)
	@echo '$(GIT_COMMIT)' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

# The aarch64 binary and the unit specs under qemu user emulation (root:
# binfmt_misc, registered only when absent and removed again). Left out: the
# specs that compare the binary's architecture with this machine's `uname -m`
# (x86_64 under user emulation), and state_spec's lock-held-after-kill check
# (a killed emulated process's children); and one wall-clock bound (the YAML
# alias bomb refused "in well under a second"). ARM64_SPECS= runs them all.
ARM64_SPECS ?= $(filter-out $(addprefix spec/unit/,remote_args_spec.lua remote_prologue_spec.lua \
	sys_spec.lua state_spec.lua),$(sort $(wildcard spec/unit/*_spec.lua))) \
	--filter-out='in well under a second'

# Then an arm64 Debian 12 test host (debootstrap --arch arm64, systemd, sshd,
# all under qemu-user: spec/integration/arm64_spec.lua, about 4 minutes here).
test-arm64:
	$(MAKE) ARCH=aarch64
	$(MAKE)
	tools/test-arm64 build/aarch64/phanes $(ARM64_SPECS)
	PHANES_TEST_ARCH=arm64 $(RUN_SPECS) $(B)/phanes integration spec/integration/arm64_spec.lua

# Both binaries; build/phanes-ARCH links to each foreign one, where a remote
# run looks for the binary of a target of that architecture.
dist:
	$(MAKE) ARCH=$(HOST_ARCH)
	@set -e; for a in $(filter-out $(HOST_ARCH),$(DIST_ARCHES)); do \
		$(MAKE) ARCH=$$a; ln -sfn $$a/phanes build/phanes-$$a; done
	@tools/distsize build/phanes $(foreach a,$(filter-out $(HOST_ARCH),$(DIST_ARCHES)),build/$(a)/phanes)

$(B)/%.o: src/%.c $(wildcard src/*.h) | $(B) $(if $(SYSROOT),$(B)/sysroot.ok)
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
	$(HOSTCC) -O2 -Wall -Wextra -Werror -o $@ $<

$(B):
	mkdir -p $(B)

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps installs Debian packages: run it as root" >&2; exit 2; fi
	@[ "$$(dpkg --print-architecture)" = arm64 ] || dpkg --add-architecture arm64
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	@had_acng=$$(dpkg-query -W -f='$${db:Status-Abbrev}' apt-cacher-ng 2>/dev/null); \
	had_binfmt=" $$(ls /proc/sys/fs/binfmt_misc 2>/dev/null | tr '\n' ' ') "; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEPS) || exit 1; \
	case "$$had_acng" in ii*) ;; *) $(MAKE) --no-print-directory acng-off ;; esac; \
	$(MAKE) --no-print-directory binfmt-off had_binfmt="$$had_binfmt"

# Installing qemu-user-static makes systemd register its binfmt_misc handlers
# at once: the ones that were not there before are removed again (make
# test-arm64 registers what it needs for its run only).
binfmt-off:
	@for f in /proc/sys/fs/binfmt_misc/qemu-*; do [ -e "$$f" ] || continue; \
		case " $(had_binfmt) " in *" $${f##*/} "*) ;; *) echo -1 > "$$f" || true ;; esac; done

# The test hosts run their own apt-cacher-ng; the system-wide one that its
# package starts on install is stopped and disabled again (only when `make
# deps` installed it), so this machine is left as it was.
acng-off:
	@if [ -d /run/systemd/system ]; then systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true; \
	elif [ -x /etc/init.d/apt-cacher-ng ]; then /etc/init.d/apt-cacher-ng stop >/dev/null 2>&1 || true; \
		update-rc.d apt-cacher-ng disable >/dev/null 2>&1 || true; fi

# Installs the packages only when one is missing, so `make test` sets itself up.
deps-ok:
# (an unqualified name is installed as itself or as NAME:<native arch>)
	@dpkg-query -W -f='$${db:Status-Abbrev} $${binary:Package}\n' $(DEPS) 2>/dev/null | \
	awk -v native="$$(dpkg --print-architecture)" -v deps="$(DEPS)" '/^ii/ { have[$$2] = 1 } \
		END { n = split(deps, d, " "); for (i = 1; i <= n; i++) \
			if (!(d[i] in have) && !((d[i] ":" native) in have)) exit 1 }' || $(MAKE) deps

test: deps-ok
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration

unit: $(B)/phanes
	$(RUN_SPECS) $(B)/phanes unit

# The profile and module specs run on Debian 13 too (the rest on Debian 12).
integration: $(B)/phanes
	$(RUN_SPECS) $(B)/phanes integration
	PHANES_TEST_SUITE=trixie $(RUN_SPECS) $(B)/phanes integration spec/integration/profiles_spec.lua

# The same specs on a build with AddressSanitizer and UBSan.
asan:
	$(MAKE) B=build/asan OPT=-O1 STRIP= \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined"

asan-test: asan
	ASAN_OPTIONS=detect_leaks=1 $(RUN_SPECS) build/asan/phanes unit

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, the man page, and completion
# scripts for bash, zsh and fish (generated by the binary itself).
PREFIX ?= /usr/local
# The completion spec loads the zsh and fish scripts in those shells.
DEPS += zsh fish
SHARE = $(DESTDIR)$(PREFIX)/share
.PHONY: install
install: $(B)/phanes
	install -d $(DESTDIR)$(PREFIX)/bin $(SHARE)/bash-completion/completions \
		$(SHARE)/zsh/site-functions $(SHARE)/fish/vendor_completions.d $(SHARE)/man/man1
	install -m 0755 $(B)/phanes $(DESTDIR)$(PREFIX)/bin/phanes
	install -m 0644 doc/phanes.1 $(SHARE)/man/man1/phanes.1
	$(B)/phanes completion bash > $(SHARE)/bash-completion/completions/phanes
	$(B)/phanes completion zsh > $(SHARE)/zsh/site-functions/_phanes
	$(B)/phanes completion fish > $(SHARE)/fish/vendor_completions.d/phanes.fish
	chmod 0644 $(SHARE)/bash-completion/completions/phanes $(SHARE)/zsh/site-functions/_phanes \
		$(SHARE)/fish/vendor_completions.d/phanes.fish

# make deb: build/phanes_VERSION_ARCH.deb with dpkg-deb, from `make install
# DESTDIR=... PREFIX=/usr` (the binary, the man page, the completions); the
# version from src/phanes.h, the architecture from the build. libc is the
# only dynamic dependency (glibc >= 2.34).
VERSION := $(shell sed -n 's/^\#define PHANES_VERSION "\(.*\)"/\1/p' src/phanes.h)
DEB_ARCH := $(if $(filter aarch64,$(ARCH)),arm64,$(if $(filter x86_64,$(ARCH)),amd64,$(ARCH)))
DEB := $(B)/phanes_$(VERSION)_$(DEB_ARCH).deb
DEB_ROOT := $(B)/deb-root
.PHONY: deb
deb: $(B)/phanes
	rm -rf $(DEB_ROOT)
	$(MAKE) --no-print-directory -o $(B)/phanes install B=$(B) PREFIX=/usr DESTDIR=$(abspath $(DEB_ROOT))
	install -d $(DEB_ROOT)/DEBIAN
	printf '%s\n' 'Package: phanes' 'Version: $(VERSION)' 'Architecture: $(DEB_ARCH)' \
		'Maintainer: phanes <phanes@localhost>' 'Depends: libc6 (>= 2.34)' 'Section: admin' 'Priority: optional' \
		"Installed-Size: $$(du -sk $(DEB_ROOT)/usr | cut -f1)" \
		'Description: server provisioner in one binary' \
		' phanes applies modules (packages, files, users, services) to Debian' \
		' hosts, locally or over SSH, from one statically linked binary.' > $(DEB_ROOT)/DEBIAN/control
	dpkg-deb --root-owner-group -Zxz --build $(DEB_ROOT) $(DEB)
	rm -rf $(DEB_ROOT)

# make docs: doc/modules/NAME.md for each built-in module, doc/profiles.md,
# doc/module-api.md, doc/cli.md (every command and option, from
# lua/phanes/cli/options.lua) and the man page doc/phanes.1, generated by the
# binary from the module tables, the resources' M.api declarations and the
# CLI's help (spec/unit/docs_spec.lua fails when they are stale).
.PHONY: docs
DEPS += man-db
docs: $(B)/phanes
	$(B)/phanes __docs doc

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

# Provisions a throwaway Debian 12 test host with profiles/dev.lua, twice
# (DEMO_SUITE=trixie: Debian 13).
demo: deps-ok $(B)/phanes
	DEMO_CONFIG=examples/demo.yaml spec/hosts/demo.sh

bench: deps-ok $(B)/phanes $(B)/delayproxy
	spec/bench/run

# the bench's WAN section: a TCP relay that adds a one-way delay
$(B)/delayproxy: tools/delayproxy.c | $(B)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<
