# SPDX-License-Identifier: MIT
CARGO ?= cargo
TARGET ?= x86_64-unknown-linux-musl
PREFIX ?= /usr
SYSCONFDIR ?= /etc
DESTDIR ?=
BIN := target/$(TARGET)/release/gitlab-runner-auth
MAN := target/man/gitlab-runner-auth.8.gz
DROPIN_DIR := /usr/lib/systemd/system/gitlab-runner.service.d
UNIT_DIR := /usr/lib/systemd/system
STATUS_UNITS := gitlab-runner-auth-status.service gitlab-runner-auth-status.timer
# ring's C code for musl is built with musl-gcc (Debian: musl-tools).
export CC_x86_64_unknown_linux_musl ?= musl-gcc

.PHONY: build test lint fmt unit package-check systemd-test demo bench loadtest deb rpm man \
        install uninstall clean

# The static binary.
build:
	$(CARGO) build --release --locked --target $(TARGET)

# Everything CI checks: style, lints, unit and integration tests, packages.
test: lint unit package-check

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
	$(CARGO) deb --target $(TARGET) --no-build --output target/debian/

rpm: build man
	$(CARGO) generate-rpm --target $(TARGET)

# Inspect and install the packages into scratch roots; verify the drop-in.
package-check: deb rpm
	./scripts/check-packages.sh

# Boot a minimal Debian with systemd, the .deb and a stub gitlab-runner.
systemd-test: deb
	./scripts/systemd-test.sh

demo:
	./scripts/demo.sh

bench:
	python3 scripts/bench.py

# The cluster reboot at 50, 200 and 500 nodes (over a minute; outside make test).
loadtest:
	$(CARGO) test --locked --test it load:: -- --include-ignored --nocapture

# The air-gapped install: the binary, the drop-in, the man page.
install:
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/gitlab-runner-auth
	mkdir -p $(DESTDIR)$(DROPIN_DIR)
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
