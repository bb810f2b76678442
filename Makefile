# SPDX-License-Identifier: MIT
CARGO ?= cargo
TARGET ?= x86_64-unknown-linux-musl
PREFIX ?= /usr
DESTDIR ?=
BIN := target/$(TARGET)/release/gitlab-runner-auth

.PHONY: build test lint fmt demo bench clean install uninstall

# The static binary (musl). ring's C code is built with musl-gcc.
build:
	CC_x86_64_unknown_linux_musl=$${CC_x86_64_unknown_linux_musl:-musl-gcc} \
	    $(CARGO) build --release --locked --target $(TARGET)

test: lint
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

demo:
	./scripts/demo.sh

bench:
	python3 scripts/bench.py

install:
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/gitlab-runner-auth

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/gitlab-runner-auth

clean:
	$(CARGO) clean
