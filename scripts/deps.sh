#!/bin/bash
# SPDX-License-Identifier: MIT
# make deps: install what the build, the tests, the packages and the
# repositories need and a fresh Debian machine lacks. Idempotent, and silent
# when everything is there.
#   deps.sh [--boot] TARGET...
# TARGET: the Rust targets to build for; a cross target brings its C
# compiler and qemu-user to run the result. --boot: also what
# `make systemd-test` needs (systemd-nspawn, debootstrap).
# Debian packages are installed only as root; otherwise one line names the
# command to run. Rust targets, components and the cargo tools go to ~/.cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# pinned: the packages' bytes depend on these tools (make dist is reproducible)
CARGO_DEB=3.8.0
CARGO_GENERATE_RPM=0.21.1

boot=
if [ "${1:-}" = --boot ]; then boot=1; shift; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-musl)

apt=()
# need COMMAND|/PATH PACKAGE: PACKAGE provides that command or file
need() {
    case $1 in
        /*) [ -e "$1" ] || apt+=("$2") ;;
        *) command -v "$1" >/dev/null 2>&1 || apt+=("$2") ;;
    esac
}
need file file
need rpm rpm
need systemd-analyze systemd
need apt-ftparchive apt-utils
need gpg gnupg
need createrepo_c createrepo-c
need dnf dnf
need groff groff-base
# the metrics test scrapes Debian's real node_exporter (its textfile
# collector reading /var/lib/prometheus/node-exporter, owned by prometheus)
need /usr/bin/prometheus-node-exporter prometheus-node-exporter
for t in "${targets[@]}"; do
    case $t in
        x86_64-unknown-linux-musl) need musl-gcc musl-tools ;;
        aarch64-unknown-linux-musl)
            # ring's C code includes <stdint.h>: the cross C library's headers
            need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
            need /usr/aarch64-linux-gnu/include/stdint.h libc6-dev-arm64-cross
            need qemu-aarch64 qemu-user ;;
        *) echo "deps: unsupported target $t" >&2; exit 64 ;;
    esac
done
if [ -n "$boot" ]; then
    need systemd-nspawn systemd-container
    need debootstrap debootstrap
fi
if [ ${#apt[@]} -gt 0 ]; then
    mapfile -t apt < <(printf '%s\n' "${apt[@]}" | sort -u)
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "deps: missing ${apt[*]}; run: sudo apt-get install --no-install-recommends ${apt[*]}" >&2
        exit 1
    fi
    echo "deps: installing ${apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt[@]}" >/dev/null
fi

if ! command -v rustup >/dev/null; then
    echo "deps: rustup not found; install the Rust targets ${targets[*]}, clippy and rustfmt" >&2
    exit 1
fi
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || { echo "deps: adding Rust target $t"; rustup target add "$t" >/dev/null 2>&1; }
done
components=$(rustup component list --installed)
for c in clippy rustfmt; do
    grep -q "^$c" <<<"$components" || { echo "deps: adding $c"; rustup component add "$c" >/dev/null 2>&1; }
done
# cargo-deb prints "cargo-deb 3.8.0"; cargo-generate-rpm the same shape
for tool in cargo-deb@$CARGO_DEB cargo-generate-rpm@$CARGO_GENERATE_RPM; do
    name=${tool%@*} version=${tool#*@}
    if [ "$("$name" --version 2>/dev/null)" != "$name $version" ]; then
        echo "deps: installing $name $version"
        env -u CARGO_TARGET_DIR cargo install --quiet --locked "$name@$version"
    fi
done
