#!/bin/bash
# SPDX-License-Identifier: MIT
# make repo: signed APT and YUM repositories of this version's packages, the
# way a site mirror serves them:
#   target/repo/apt/   flat APT repository: the .debs, Packages(.gz), Release,
#                      Release.gpg, InRelease
#   target/repo/yum/   the .rpms and repodata/ (createrepo_c), repomd.xml.asc
#   target/repo/gitlab-runner-auth.gpg, .asc   the public key
# Usage: repo.sh TARGET...   (the targets whose packages go in)
# Signing key: REPO_KEY (a key id in your GNUPGHOME); without it a test key
# made once in target/repo-key/. REPO_DIR overrides target/repo.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
OUT=${REPO_DIR:-target/repo}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
fail() { echo "repo: FAIL: $*" >&2; exit 1; }
[ $# -gt 0 ] || set -- x86_64-unknown-linux-musl

if [ -n "${REPO_KEY:-}" ]; then
    key=$REPO_KEY
else
    export GNUPGHOME=$PWD/target/repo-key
    if [ ! -s "$GNUPGHOME/key-id" ]; then
        rm -rf "$GNUPGHOME"
        mkdir -m 700 -p "$GNUPGHOME"
        gpg --batch --quiet --passphrase '' --quick-generate-key \
            'gitlab-runner-auth test repository <gitlab-runner-auth@users.noreply.github.com>' \
            ed25519 sign never 2>/dev/null
        gpg --batch --list-keys --with-colons | awk -F: '$1 == "fpr" {print $10; exit}' >"$GNUPGHOME/key-id"
    fi
    key=$(cat "$GNUPGHOME/key-id")
    # gpg starts an agent for this home: leave none running
    trap 'gpgconf --kill gpg-agent 2>/dev/null || :' EXIT
fi
sign() { gpg --batch --quiet --yes --local-user "$key" "$@"; }

rm -rf "$OUT"
mkdir -p "$OUT/apt" "$OUT/yum"
gpg --batch --quiet --export "$key" >"$OUT/gitlab-runner-auth.gpg"
gpg --batch --quiet --armor --export "$key" >"$OUT/gitlab-runner-auth.asc"
[ -s "$OUT/gitlab-runner-auth.gpg" ] || fail "no public key for $key"

arches=()
for t in "$@"; do
    arch=${t%%-*}
    case $arch in
        x86_64) deb_arch=amd64 ;;
        aarch64) deb_arch=arm64 ;;
        *) fail "no Debian architecture for $t" ;;
    esac
    deb=$T/debian/gitlab-runner-auth_${VERSION}-1_${deb_arch}.deb
    rpm=$T/$t/generate-rpm/gitlab-runner-auth-${VERSION}-1.${arch}.rpm
    [ -f "$deb" ] || fail "$deb missing (make deb TARGET=$t)"
    [ -f "$rpm" ] || fail "$rpm missing (make rpm TARGET=$t)"
    cp "$deb" "$OUT/apt/"
    cp "$rpm" "$OUT/yum/"
    arches+=("$deb_arch")
done

# APT: a flat repository (deb [signed-by=…] URL ./)
(
    cd "$OUT/apt"
    apt-ftparchive packages . >Packages 2>/dev/null
    gzip -9n <Packages >Packages.gz
    apt-ftparchive \
        -o APT::FTPArchive::Release::Origin=gitlab-runner-auth \
        -o APT::FTPArchive::Release::Label=gitlab-runner-auth \
        -o APT::FTPArchive::Release::Suite=stable \
        -o "APT::FTPArchive::Release::Architectures=${arches[*]}" \
        -o APT::FTPArchive::Release::Description="gitlab-runner-auth packages" \
        release . >Release.new
    mv Release.new Release
    sign --clearsign -o InRelease Release
    sign --armor --detach-sign -o Release.gpg Release
)
# YUM/DNF: repodata/ and a signed repomd.xml (repo_gpgcheck=1)
createrepo_c --quiet "$OUT/yum" >/dev/null
sign --armor --detach-sign -o "$OUT/yum/repodata/repomd.xml.asc" "$OUT/yum/repodata/repomd.xml"
echo "repo: $OUT/apt ($(grep -c '^Package:' "$OUT/apt/Packages") packages), $OUT/yum, signed by $key"
