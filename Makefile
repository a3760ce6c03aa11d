# SPDX-License-Identifier: GPL-2.0-or-later
# mpredir: `make` builds redirector/mpredir; `make check` installs test
# dependencies (Debian) and runs every test, plain and under ASan+UBSan.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKG_CONFIG ?= pkg-config
PYTHON  ?= /usr/bin/python3

PKGS    := json-c libmnl libnftnl
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

CFLAGS  ?= -O2 -g
# WERROR= keeps warnings non-fatal (the OpenWrt package's cross build).
WERROR  ?= -Werror
WARN    := -Wall -Wextra $(WERROR) -Wformat=2 -Wmissing-prototypes \
           -Wstrict-prototypes -Wshadow -Wpointer-arith -Wno-unused-parameter
CPPFLAGS += -pthread -D_GNU_SOURCE -DMPREDIR_VERSION='"$(VERSION)"' \
           $(shell $(PKG_CONFIG) --cflags $(PKGS))
# Debian's libev ships no .pc file: fall back to -lev.
LIBEV   := $(shell $(PKG_CONFIG) --libs libev 2>/dev/null || echo -lev)
LDLIBS  += $(shell $(PKG_CONFIG) --libs $(PKGS)) $(LIBEV) -lm -pthread

SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=all

# Modules of the daemon (redirector/X.c). main.c holds main().
MODULES := log config uci socks5 addr origdst upstream pool relay flow listener nl rtmon route fw capture linkmon mptcp_pm paths control status cli worker
DAEMON_SRCS := $(MODULES:%=redirector/%.c) redirector/main.c

# Unit tests: test/unit/test_X.c links the modules it names in UNIT_DEPS_X.
UNITS := socks5 config uci fw mptcp_pm paths
UNIT_DEPS_socks5 := socks5
UNIT_DEPS_config := config uci log addr
UNIT_DEPS_uci := config uci log addr
UNIT_DEPS_fw := fw nl log addr
UNIT_DEPS_mptcp_pm := mptcp_pm nl log addr
UNIT_DEPS_paths := paths addr mptcp_pm nl log

BUILD := build

# `make V=1` shows the full commands.
Q := $(if $(V),,@)

.PHONY: all clean install test test-unit test-e2e test-asan check deps demo \
        bench bench-setup bench-perf asan test-unit-asan test-e2e-asan test-valgrind tools \
        test-load
.PHONY: fuzz fuzz-build fuzz-replay shellcheck
all: redirector/mpredir

# --- plain build --------------------------------------------------------
$(BUILD)/plain/%.o: redirector/%.c redirector/*.h | $(BUILD)/plain
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<
redirector/mpredir: $(DAEMON_SRCS:redirector/%.c=$(BUILD)/plain/%.o)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# --- sanitizer build ----------------------------------------------------
$(BUILD)/asan/%.o: redirector/%.c redirector/*.h | $(BUILD)/asan
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) -O1 -g $(SAN_FLAGS) $(WARN) -c -o $@ $<
$(BUILD)/asan/mpredir: $(DAEMON_SRCS:redirector/%.c=$(BUILD)/asan/%.o)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)
asan: $(BUILD)/asan/mpredir

$(BUILD)/plain $(BUILD)/asan:
	mkdir -p $@

# --- test tools (not part of `all`) ---------------------------------------
# delayemu: delay/loss emulator on NFQUEUE (test/lib/delay.py drives it).
MNL_LIBS := $(shell $(PKG_CONFIG) --libs libmnl)
tools: test/tools/delayemu
test/tools/delayemu: test/tools/delayemu.c
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $< $(MNL_LIBS) -lm
$(BUILD)/asan/delayemu: test/tools/delayemu.c | $(BUILD)/asan
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) -O1 -g $(SAN_FLAGS) $(WARN) -o $@ $< $(MNL_LIBS) -lm

# --- unit tests (no root) -----------------------------------------------
define unit_rules
$(BUILD)/plain/test_$(1): test/unit/test_$(1).c test/unit/check.h $(UNIT_DEPS_$(1):%=$(BUILD)/plain/%.o)
	$$(CC) $$(CPPFLAGS) -Iredirector $$(CFLAGS) $$(WARN) -o $$@ $$< $(UNIT_DEPS_$(1):%=$(BUILD)/plain/%.o) $$(LDLIBS)
$(BUILD)/asan/test_$(1): test/unit/test_$(1).c test/unit/check.h $(UNIT_DEPS_$(1):%=$(BUILD)/asan/%.o)
	$$(CC) $$(CPPFLAGS) -Iredirector -O1 -g $$(SAN_FLAGS) $$(WARN) -o $$@ $$< $(UNIT_DEPS_$(1):%=$(BUILD)/asan/%.o) $$(LDLIBS)
endef
$(foreach u,$(UNITS),$(eval $(call unit_rules,$(u))))

test-unit: $(UNITS:%=$(BUILD)/plain/test_%)
	@set -e; for t in $^; do echo "== $$t"; ./$$t; done

test-unit-asan: $(UNITS:%=$(BUILD)/asan/test_%)
	@set -e; for t in $^; do echo "== $$t (asan)"; ./$$t; done

# --- fuzz targets (clang + libFuzzer; test/fuzz/README.md) ---------------
# test/fuzz/fuzz_X.c links the modules in FUZZ_DEPS_X, built with coverage
# into build/fuzz/. `make fuzz` runs each for FUZZ_SECONDS on a copy of its
# seed corpus; `make fuzz-replay` runs every seed and saved crash once.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
FUZZ_TARGETS := socks5 config uci rtmon mptcp_pm
FUZZ_DEPS_socks5 := socks5
FUZZ_DEPS_config := config uci log addr
FUZZ_DEPS_uci := config uci log addr
FUZZ_DEPS_rtmon := rtmon nl log addr
FUZZ_DEPS_mptcp_pm := mptcp_pm nl log addr
$(BUILD)/fuzz:
	mkdir -p $@
$(BUILD)/fuzz/%.o: redirector/%.c redirector/*.h | $(BUILD)/fuzz
	@$(if $(Q),echo "  FUZZCC  $@")
	$(Q)$(FUZZ_CC) $(CPPFLAGS) -O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN) $(WARN) -c -o $@ $<
define fuzz_rules
$(BUILD)/fuzz/fuzz_$(1): test/fuzz/fuzz_$(1).c $(FUZZ_DEPS_$(1):%=$(BUILD)/fuzz/%.o)
	@$$(if $$(Q),echo "  FUZZLD  $$@")
	$$(Q)$$(FUZZ_CC) $$(CPPFLAGS) -Iredirector -O1 -g -fsanitize=fuzzer $$(FUZZ_SAN) $$(WARN) -o $$@ $$< $(FUZZ_DEPS_$(1):%=$(BUILD)/fuzz/%.o) $$(LDLIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_rules,$(t))))
# fuzz_uci reuses fuzz_config's checks
$(BUILD)/fuzz/fuzz_uci: test/fuzz/fuzz_config.c test/fuzz/fuzz.h
fuzz-build: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

# New inputs go to build/fuzz/corpus/X (the seeds stay as committed); a
# crash or a hang (10 s per input) is written to build/fuzz/crash-X-* (or
# timeout-X-*); every target runs, and any failure fails `make fuzz`.
fuzz: fuzz-build
	@rc=0; for t in $(FUZZ_TARGETS); do \
	    echo "== fuzz_$$t ($(FUZZ_SECONDS) s)"; \
	    mkdir -p $(BUILD)/fuzz/corpus/$$t; \
	    $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/crash-$$t- \
	        $$(test -f test/fuzz/$$t.dict && echo -dict=test/fuzz/$$t.dict) \
	        $(BUILD)/fuzz/corpus/$$t test/fuzz/corpus/$$t || rc=1; \
	done; exit $$rc

fuzz-replay: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    files=$$(find test/fuzz/corpus/$$t test/fuzz/crashes/$$t -type f \
	        ! -name '.*' 2>/dev/null | sort); \
	    n=$$(echo "$$files" | grep -c . || true); \
	    echo "== fuzz_$$t: replay $$n inputs"; \
	    [ "$$n" -eq 0 ] || $(BUILD)/fuzz/fuzz_$$t -timeout=10 $$files \
	        2>$(BUILD)/fuzz/replay-$$t.log || \
	        { cat $(BUILD)/fuzz/replay-$$t.log; exit 1; }; \
	done

# --- end-to-end tests (root: network namespaces) ------------------------
test-e2e: redirector/mpredir tools
	$(PYTHON) -m pytest -q -p no:cacheprovider test/e2e

test-e2e-asan: $(BUILD)/asan/mpredir $(BUILD)/asan/delayemu
	MPREDIR_BIN=$(CURDIR)/$(BUILD)/asan/mpredir \
	DELAYEMU_BIN=$(CURDIR)/$(BUILD)/asan/delayemu \
	    $(PYTHON) -m pytest -q -p no:cacheprovider test/e2e

# The whole e2e suite with the daemon under valgrind: any error or leak
# fails (what cannot run there skips and says why; doc/reliability.md).
test-valgrind: redirector/mpredir tools
	MPREDIR_BIN=$(CURDIR)/test/tools/valgrind-mpredir \
	    $(PYTHON) -m pytest -q -p no:cacheprovider -rs test/e2e

# --- shell scripts --------------------------------------------------------
# What runs on OpenWrt (busybox ash) and the procd stand-in as POSIX sh;
# scripts/*.sh and .ci/run as the bash they are written for.
SH_SCRIPTS := openwrt-package/mpredir/files/mpredir.init \
              openwrt-package/mpredir/files/mpredir.uci-defaults \
              test/lib/openwrt_rc.sh test/tools/valgrind-mpredir
BASH_SCRIPTS := $(wildcard scripts/*.sh) .ci/run test/fuzz/capture-seeds.sh
shellcheck:
	shellcheck -s sh $(SH_SCRIPTS)
	shellcheck -s bash $(BASH_SCRIPTS)

# Load (test/load/load.py; about 3 minutes): 9,500 flows held for 60 s
# with churn, every byte checked, the daemon's descriptors and RSS before,
# at the peak and after. test/e2e/test_load.py runs the same with asserts.
test-load: redirector/mpredir
	$(PYTHON) test/load/load.py

test: shellcheck test-unit fuzz-replay test-e2e
test-asan: test-unit-asan test-e2e-asan

# Everything, from a fresh Debian 12: dependencies, build, all tests.
check: deps
	$(MAKE) all
	$(MAKE) test
	$(MAKE) test-asan
	$(MAKE) test-valgrind
	$(MAKE) fuzz

deps:
	scripts/install-deps.sh

demo: deps all
	$(PYTHON) scripts/demo.py

# Every benchmark (doc/benchmarks.md, one section each; about 20 minutes).
bench: deps all tools bench-setup bench-perf
	$(PYTHON) test/bench/bench.py

# Time to first byte per connection setup mode (doc/benchmarks.md, section
# between the bench-setup markers, and doc/bench-setup.png).
bench-setup: deps all tools
	$(PYTHON) test/bench/bench_setup.py

# mpredir, redsocks, shadowsocks and direct routing side by side (section
# between the bench-perf markers, and doc/bench-perf.png).
bench-perf: deps all tools
	$(PYTHON) test/bench/bench_perf.py

install: redirector/mpredir
	install -D -m 0755 redirector/mpredir $(DESTDIR)$(PREFIX)/sbin/mpredir

clean:
	rm -rf $(BUILD) redirector/mpredir test/tools/delayemu
