# SPDX-License-Identifier: MIT
CARGO ?= cargo
# The target `build`, `deb` and `rpm` act on.
TARGET ?= x86_64-unknown-linux-musl
# The targets `test` (its package checks), `repo` and `dist` cover. CI passes
# all of SUPPORTED_TARGETS.
TARGETS ?= $(TARGET)
SUPPORTED_TARGETS := x86_64-unknown-linux-musl aarch64-unknown-linux-musl
PREFIX ?= /usr
SYSCONFDIR ?= /etc
DESTDIR ?=
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/$(TARGET)/release/gitlab-runner-auth
MAN := target/man/gitlab-runner-auth.8.gz
# `make install` is an admin install: its drop-in goes under SYSCONFDIR (the
# packages' vendor install keeps /usr/lib/systemd/system/…; see the README).
DROPIN_DIR := $(SYSCONFDIR)/systemd/system/gitlab-runner.service.d
UNIT_DIR := /usr/lib/systemd/system
STATUS_UNITS := gitlab-runner-auth-status.service gitlab-runner-auth-status.timer
# ring's C code for musl is built with musl-gcc (Debian: musl-tools) on
# x86_64, with Debian's cross compilers elsewhere; they link too (Rust's
# musl targets bring their own C library).
export CC_x86_64_unknown_linux_musl ?= musl-gcc
export CC_aarch64_unknown_linux_musl ?= aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER ?= aarch64-linux-gnu-gcc
# Reproducible builds: file dates from the last commit, and no path of this
# machine in the binary (the crates' sources are under CARGO_HOME; this
# tree's own paths are relative).
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 1)
CARGO_HOME ?= $(HOME)/.cargo
REPRO_RUSTFLAGS := --remap-path-prefix=$(CARGO_HOME)=/cargo

.PHONY: build test deps deps-boot lint fmt unit packages package-check systemd-test \
        demo bench loadtest deb rpm repo dist man install uninstall clean

# The static binary.
build:
	RUSTFLAGS="$(REPRO_RUSTFLAGS) $$RUSTFLAGS" \
	    $(CARGO) build --release --locked --target $(TARGET)

# Installs what a fresh Debian machine lacks (silent when nothing is missing).
deps:
	@./scripts/deps.sh $(sort $(TARGET) $(TARGETS))

deps-boot:
	@./scripts/deps.sh --boot $(sort $(TARGET) $(TARGETS))

# Everything CI checks: style, lints, unit and integration tests, packages.
test: deps lint unit package-check

unit:
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

man: $(MAN)
$(MAN): packaging/gitlab-runner-auth.8
	mkdir -p $(dir $@)
	gzip -9n < $< > $@

deb: build man
	$(CARGO) deb --target $(TARGET) --no-build --output $(TARGET_DIR)/debian/

# cargo-generate-rpm clamps file dates to SOURCE_DATE_EPOCH but keeps older
# ones (a checkout older than the last commit): make none older.
RPM_ASSETS := $(BIN) $(MAN) $(wildcard systemd/*) packaging/gitlab-runner-auth.env \
    packaging/examples/config.template packaging/examples/runner-data.json README.md LICENSE
rpm: build man
	find $(RPM_ASSETS) ! -newermt @$(SOURCE_DATE_EPOCH) -exec touch {} +
	$(CARGO) generate-rpm --target $(TARGET)

# The .deb and .rpm of every target in TARGETS.
packages:
	@for t in $(TARGETS); do $(MAKE) --no-print-directory deb rpm TARGET=$$t || exit 1; done

# Signed APT and YUM repositories of those packages, under target/repo/
# (REPO_KEY=<key id> signs with that key of your keyring; otherwise with a
# test key made once in target/repo-key/).
repo: packages
	./scripts/repo.sh $(TARGETS)

# Inspect and install the packages into scratch roots; verify the drop-in;
# the YUM metadata; cross binaries under qemu; two dists byte-identical.
package-check: repo
	./scripts/check-packages.sh $(TARGETS)

# Boot a minimal Debian with systemd: the package from the APT repository,
# a stub gitlab-runner, failures, an upgrade.
systemd-test: deps-boot repo
	./scripts/systemd-test.sh

# Release artefacts under target/dist/: binaries, packages, air-gap
# tarballs, SHA256SUMS.
dist: packages
	./scripts/dist.sh $(TARGETS)

demo:
	./scripts/demo.sh

bench:
	python3 scripts/bench.py

# The cluster reboot at 50, 200 and 500 nodes under every load profile, one
# table each (minutes; outside make test). One run at a time: each spawns
# hundreds of processes against its own fake GitLab on 127.0.0.1.
loadtest:
	$(CARGO) test --locked --test it load:: -- --include-ignored --nocapture --test-threads 1

# An admin install (an image build; a single node is easier with
# `gitlab-runner-auth setup`): the binary, the drop-in, the man page.
install:
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/gitlab-runner-auth
	mkdir -p $(DESTDIR)$(DROPIN_DIR) $(DESTDIR)$(UNIT_DIR)
	sed 's|/usr/bin/gitlab-runner-auth|$(PREFIX)/bin/gitlab-runner-auth|' \
	    systemd/50-gitlab-runner-auth.conf > $(DESTDIR)$(DROPIN_DIR)/50-gitlab-runner-auth.conf
	chmod 0644 $(DESTDIR)$(DROPIN_DIR)/50-gitlab-runner-auth.conf
	for u in $(STATUS_UNITS); do \
	    sed 's|/usr/bin/gitlab-runner-auth|$(PREFIX)/bin/gitlab-runner-auth|' systemd/$$u \
	        > $(DESTDIR)$(UNIT_DIR)/$$u && chmod 0644 $(DESTDIR)$(UNIT_DIR)/$$u || exit 1; \
	done
	install -D -m 0644 packaging/gitlab-runner-auth.8 \
	    $(DESTDIR)$(PREFIX)/share/man/man8/gitlab-runner-auth.8
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/doc/gitlab-runner-auth/examples \
	    packaging/examples/config.template packaging/examples/runner-data.json
	[ -e $(DESTDIR)$(SYSCONFDIR)/default/gitlab-runner-auth ] || \
	    install -D -m 0644 packaging/gitlab-runner-auth.env \
	    $(DESTDIR)$(SYSCONFDIR)/default/gitlab-runner-auth

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/gitlab-runner-auth \
	    $(DESTDIR)$(DROPIN_DIR)/50-gitlab-runner-auth.conf \
	    $(addprefix $(DESTDIR)$(UNIT_DIR)/,$(STATUS_UNITS)) \
	    $(DESTDIR)$(PREFIX)/share/man/man8/gitlab-runner-auth.8
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/gitlab-runner-auth

clean:
	$(CARGO) clean
