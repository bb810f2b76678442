#!/bin/bash
# SPDX-License-Identifier: MIT
# make dist: the release artefacts under target/dist/, for each target:
#   gitlab-runner-auth-VERSION-ARCH-linux          the static binary
#   gitlab-runner-auth_VERSION-1_DEBARCH.deb, gitlab-runner-auth-VERSION-1.ARCH.rpm
#   gitlab-runner-auth-VERSION-ARCH-linux.tar.gz   the air-gapped copy: binary,
#                                                  drop-in, man page, env file, README
# and SHA256SUMS. Reproducible: the same bytes from the same commit (the
# Makefile sets SOURCE_DATE_EPOCH and remaps paths; the tarball is sorted,
# dated and owned by 0:0).
# Usage: dist.sh TARGET...   (after make packages TARGETS="TARGET...")
set -euo pipefail
export LC_ALL=C
umask 022
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
OUT=${DIST_DIR:-target/dist}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
: "${SOURCE_DATE_EPOCH:?is set by the Makefile}"
fail() { echo "dist: FAIL: $*" >&2; exit 1; }
[ $# -gt 0 ] || set -- x86_64-unknown-linux-musl

rm -rf "$OUT"
mkdir -p "$OUT"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for t in "$@"; do
    arch=${t%%-*}
    case $arch in
        x86_64) deb_arch=amd64 ;;
        aarch64) deb_arch=arm64 ;;
        *) fail "no Debian architecture for $t" ;;
    esac
    bin=$T/$t/release/gitlab-runner-auth
    deb=$T/debian/gitlab-runner-auth_${VERSION}-1_${deb_arch}.deb
    rpm=$T/$t/generate-rpm/gitlab-runner-auth-${VERSION}-1.${arch}.rpm
    for f in "$bin" "$deb" "$rpm"; do [ -f "$f" ] || fail "$f missing (make packages TARGETS=$t)"; done
    name=gitlab-runner-auth-$VERSION-$arch-linux
    install -m 755 "$bin" "$OUT/$name"
    install -m 644 "$deb" "$rpm" "$OUT/"
    dir=$stage/$name
    install -d -m 755 "$dir"
    install -m 755 "$bin" "$dir/gitlab-runner-auth"
    install -m 644 systemd/50-gitlab-runner-auth.conf packaging/gitlab-runner-auth.8 \
        packaging/gitlab-runner-auth.env README.md "$dir/"
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        --format=gnu -C "$stage" -c "$name" | gzip -9n >"$OUT/$name.tar.gz"
done
(cd "$OUT" && sha256sum -- * >SHA256SUMS.new && mv SHA256SUMS.new SHA256SUMS)
echo "dist: $OUT:"
sed 's/^/dist:   /' "$OUT/SHA256SUMS"
