#!/bin/bash
# SPDX-License-Identifier: MIT
# Packaging checks (part of `make test`), for each target given: the binary
# is static, of its architecture and small, and runs (cross ones under
# qemu-user, also against the fake GitLab); the .deb and .rpm hold exactly
# the expected files, modes and config files. For the host's: both install
# into scratch roots and the installed binary runs; the drop-in merged with
# the stock gitlab-runner unit passes systemd-analyze; make install stages.
# The status service and timer pass systemd-analyze and nothing enables them.
# Then the repositories (signed APT metadata, YUM metadata read by dnf), and
# a second `make dist` from a copy of the tree elsewhere is byte-identical.
# Usage: check-packages.sh TARGET...   (after make repo TARGETS="TARGET...")
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
HOST=x86_64-unknown-linux-musl
# a bound that catches an unplanned dependency, not a target: 3.2 MB with
# the commands of several GitLabs and doctor's credential checks
MAX_SIZE=$((4 * 1024 * 1024))
work=$(mktemp -d)
fake=
cleanup() {
    [ -z "$fake" ] || kill "$fake" 2>/dev/null
    # dnf imports the repository key with gpg, which leaves an agent per home
    find "$work" -type d -name pubring -exec gpgconf --homedir {} --kill gpg-agent \; 2>/dev/null || :
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "package-check: FAIL: $*" >&2; exit 1; }
passed=0
pass() { echo "package-check: ok: $*"; passed=$((passed + 1)); }
[ $# -gt 0 ] || set -- "$HOST"

# the fake GitLab on the host's loopback, for the cross binaries
fake_gitlab() {
    [ -z "$fake" ] || return 0
    cargo build --quiet --locked --example fake-gitlab
    "$T/debug/examples/fake-gitlab" --no-registration --token-interval 2592000 \
        --write-tokens "$work" >"$work/url" 2>/dev/null &
    fake=$!
    for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done
    url=$(head -n 1 "$work/url")
    [ -n "$url" ] || fail "the fake GitLab did not start"
}

want_files="-rw-r--r-- ./etc/default/gitlab-runner-auth
-rwxr-xr-x ./usr/bin/gitlab-runner-auth
-rw-r--r-- ./usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf
-rw-r--r-- ./usr/lib/systemd/system/gitlab-runner-auth-status.service
-rw-r--r-- ./usr/lib/systemd/system/gitlab-runner-auth-status.timer
-rw-r--r-- ./usr/share/doc/gitlab-runner-auth/README.md
-rw-r--r-- ./usr/share/doc/gitlab-runner-auth/copyright
-rw-r--r-- ./usr/share/doc/gitlab-runner-auth/examples/config.template
-rw-r--r-- ./usr/share/doc/gitlab-runner-auth/examples/runner-data.json
-rw-r--r-- ./usr/share/man/man8/gitlab-runner-auth.8.gz"
want_rpm="-rw-r--r-- /etc/sysconfig/gitlab-runner-auth
-rw-r--r-- /usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf
-rw-r--r-- /usr/lib/systemd/system/gitlab-runner-auth-status.service
-rw-r--r-- /usr/lib/systemd/system/gitlab-runner-auth-status.timer
-rw-r--r-- /usr/share/doc/gitlab-runner-auth/README.md
-rw-r--r-- /usr/share/doc/gitlab-runner-auth/examples/config.template
-rw-r--r-- /usr/share/doc/gitlab-runner-auth/examples/runner-data.json
-rw-r--r-- /usr/share/licenses/gitlab-runner-auth/LICENSE
-rw-r--r-- /usr/share/man/man8/gitlab-runner-auth.8.gz
-rwxr-xr-x /usr/bin/gitlab-runner-auth"
rpmq() { rpm --dbpath "$work/rpmdb" "$@" 2>/dev/null; }

for TARGET in "$@"; do
arch=${TARGET%%-*}
case $arch in
    x86_64) deb_arch=amd64 file_arch=x86-64 run= ;;
    aarch64) deb_arch=arm64 file_arch=aarch64 run=qemu-aarch64 ;;
    *) fail "unsupported target $TARGET" ;;
esac
BIN=$T/$TARGET/release/gitlab-runner-auth
DEB=$T/debian/gitlab-runner-auth_${VERSION}-1_${deb_arch}.deb
RPM=$T/$TARGET/generate-rpm/gitlab-runner-auth-${VERSION}-1.${arch}.rpm

# 1. a static binary of its architecture, under 3 MB, that runs
file -b "$BIN" | grep -Eq "statically linked|static-pie linked" || fail "$BIN is not statically linked: $(file -b "$BIN")"
file -b "$BIN" | grep -q "$file_arch" || fail "$BIN is not $file_arch: $(file -b "$BIN")"
if [ -z "$run" ] && ldd "$BIN" 2>&1 | grep -q '=>'; then fail "ldd finds libraries in $BIN"; fi
size=$(stat -c %s "$BIN")
[ "$size" -lt "$MAX_SIZE" ] || fail "$BIN is $size bytes (limit $MAX_SIZE)"
$run "$BIN" --version | grep -qx "gitlab-runner-auth $VERSION ($TARGET)" || fail "--version does not name $VERSION ($TARGET)"
pass "$TARGET: static $file_arch binary, $size bytes"
if [ -n "$run" ]; then
    # one real run under qemu: creates both runners on the fake GitLab
    fake_gitlab
    p=$work/prefix-$arch
    mkdir -m 700 "$p"
    install -m 600 "$work/access-token" "$p/admin-token"
    sed "s|https://gitlab.example.com|$url|" packaging/examples/config.template >"$p/config.template"
    out=$(env -i "$(command -v "$run")" "$BIN" --api-url "$url" --prefix "$p" --hostname "node-$arch" 2>&1) \
        || fail "$run $BIN against the fake GitLab: $out"
    echo "$out" | grep -q "created shell runner" || fail "$run $BIN created no shell runner: $out"
    [ "$(grep -c '^  token = "glrt-' "$p/config.toml")" = 2 ] || fail "$run $BIN wrote: $(cat "$p/config.toml")"
    pass "$TARGET: runs under $run against the fake GitLab"
fi

# 2. the .deb: files, modes, control fields, conffiles
got_files=$(dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {print $1, $6}' | sort -k2)
[ "$got_files" = "$(echo "$want_files" | sort -k2)" ] || fail "unexpected .deb contents:
$got_files"
dpkg-deb -c "$DEB" | awk '{print $2}' | sort -u | grep -qx '0/0' || fail ".deb files not owned by root"
field() { dpkg-deb -f "$DEB" "$1"; }
[ "$(field Architecture)" = "$deb_arch" ] || fail ".deb Architecture: $(field Architecture)"
[ "$(field Version)" = "$VERSION-1" ] || fail ".deb Version: $(field Version)"
[ -z "$(field Depends)" ] || fail ".deb Depends: $(field Depends)"
[ "$(field Recommends)" = "gitlab-runner" ] || fail ".deb Recommends: $(field Recommends)"
[ "$(field Enhances)" = "gitlab-runner" ] || fail ".deb Enhances: $(field Enhances)"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx /etc/default/gitlab-runner-auth \
    || fail ".deb conffiles lacks /etc/default/gitlab-runner-auth"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./postinst | grep -q 'daemon-reload' || fail "postinst does not reload systemd"
if dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./postinst ./postrm | grep -v '^ *#' | grep -Eq 'systemctl .*(start|restart|enable)'; then
    fail "maintainer scripts must never (re)start gitlab-runner, nor enable the status timer"
fi
for section in NAME SYNOPSIS DESCRIPTION OPTIONS ENVIRONMENT FILES "EXIT STATUS" EXAMPLES "SEE ALSO"; do
    grep -q "^\.SH \"\?$section\"\?$" packaging/gitlab-runner-auth.8 || fail "man page lacks $section"
done
# groff (Debian: groff-base) on the man page's markup: any warning fails (a
# raw non-ASCII character such as an ellipsis, an unknown macro or escape)
if ! command -v groff >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "package-check: installing groff-base for the man page check"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends groff-base >/dev/null \
            || fail "groff is missing and apt-get install groff-base failed"
    else
        fail "groff is missing (apt-get install groff-base, or dnf install groff-base)"
    fi
fi
warn=$(groff -man -ww -z packaging/gitlab-runner-auth.8 2>&1)
[ -z "$warn" ] || fail "groff -man -ww -z warns about packaging/gitlab-runner-auth.8: $warn"
if command -v man >/dev/null; then
    warn=$(MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z packaging/gitlab-runner-auth.8 2>&1 >/dev/null)
    [ -z "$warn" ] || fail "man page warnings: $warn"
fi
pass "$TARGET: .deb contents, fields and conffiles; man page sections"

# 3. install the .deb into a scratch root, run it, remove, purge
if [ "$TARGET" = "$HOST" ]; then
root=$work/debroot
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
dpkgr() { dpkg --root="$root" --force-not-root --force-script-chrootless --force-depends --log=/dev/null "$@"; }
dpkgr -i "$DEB" >/dev/null
"$root/usr/bin/gitlab-runner-auth" --version >/dev/null || fail "installed binary does not run"
out=$(env -i "$root/usr/bin/gitlab-runner-auth" --prefix "$work" 2>&1) || fail "unconfigured run failed: $out"
echo "$out" | grep -q 'not configured' || fail "unconfigured run said: $out"
echo "# the admin's setting" >> "$root/etc/default/gitlab-runner-auth"
dpkgr -r gitlab-runner-auth >/dev/null
[ ! -e "$root/usr/bin/gitlab-runner-auth" ] || fail "remove left the binary"
grep -q "the admin's setting" "$root/etc/default/gitlab-runner-auth" || fail "remove dropped the admin's env file"
dpkgr -P gitlab-runner-auth >/dev/null
[ ! -e "$root/etc/default/gitlab-runner-auth" ] || fail "purge left the env file"
pass ".deb installs, runs, keeps the env file on remove, purges"
fi

# 4. the .rpm: files, modes, config files, scriptlets; install into a root
got_rpm=$(rpmq -qlvp "$RPM" | awk '{print $1, $NF}' | sort -k2)
[ "$got_rpm" = "$(echo "$want_rpm" | sort -k2)" ] || fail "unexpected .rpm contents:
$got_rpm"
[ "$(rpmq -qcp "$RPM")" = "/etc/sysconfig/gitlab-runner-auth" ] || fail ".rpm config files: $(rpmq -qcp "$RPM")"
rpmq -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" | grep -q '^cn /etc/sysconfig/gitlab-runner-auth$' \
    || fail "/etc/sysconfig/gitlab-runner-auth is not %config(noreplace)"
rpmq -qp --recommends "$RPM" | grep -q '^gitlab-runner' || fail ".rpm does not recommend gitlab-runner"
if rpmq -qpR "$RPM" | grep -Ev '^(rpmlib\(|/bin/sh$|config\(gitlab-runner-auth\))' | grep -q .; then fail ".rpm requires: $(rpmq -qpR "$RPM")"; fi
rpmq -qp --scripts "$RPM" | grep -q 'daemon-reload' || fail ".rpm scriptlets do not reload systemd"
[ "$(rpmq -qp --qf '%{VERSION}-%{RELEASE} %{ARCH}' "$RPM")" = "$VERSION-1 $arch" ] \
    || fail ".rpm version and arch: $(rpmq -qp --qf '%{VERSION}-%{RELEASE} %{ARCH}' "$RPM")"
if [ "$TARGET" = "$HOST" ]; then
rroot=$work/rpmroot
mkdir -p "$rroot"
rpm --root "$rroot" --dbpath /var/lib/rpm --initdb 2>/dev/null
rpm --root "$rroot" --dbpath /var/lib/rpm -i --nodeps --noscripts "$RPM" 2>/dev/null
"$rroot/usr/bin/gitlab-runner-auth" --version >/dev/null || fail "rpm-installed binary does not run"
rpm --root "$rroot" --dbpath /var/lib/rpm -e --noscripts gitlab-runner-auth 2>/dev/null
[ ! -e "$rroot/usr/bin/gitlab-runner-auth" ] || fail "rpm -e left the binary"
pass ".rpm contents, config(noreplace), installs and runs"
else
    pass "$TARGET: .rpm contents, config(noreplace), version and arch"
fi
done

# the host target's unit checks and make install
TARGET=$HOST
BIN=$T/$TARGET/release/gitlab-runner-auth
DEB=$T/debian/gitlab-runner-auth_${VERSION}-1_amd64.deb

# 5. the drop-in with the stock unit: systemd-analyze verify and cat-config
if command -v systemd-analyze >/dev/null; then
    sroot=$work/sysroot
    mkdir -p "$sroot/etc/systemd/system" "$sroot/usr/lib/systemd/system/gitlab-runner.service.d" "$sroot/usr/bin"
    cp -a /usr/lib/systemd/system/. "$sroot/usr/lib/systemd/system/"
    cp tests/fixtures/gitlab-runner.service "$sroot/etc/systemd/system/"
    dpkg-deb -x "$DEB" "$work/debx"
    cp "$work/debx/usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf" \
        "$sroot/usr/lib/systemd/system/gitlab-runner.service.d/"
    install -m 755 "$BIN" "$sroot/usr/bin/gitlab-runner-auth"
    printf '#!/bin/sh\nexit 0\n' > "$sroot/usr/bin/gitlab-runner"
    chmod 755 "$sroot/usr/bin/gitlab-runner"
    err=$(systemd-analyze verify --man=no --root="$sroot" gitlab-runner.service 2>&1 >/dev/null) \
        || fail "systemd-analyze verify: $err"
    [ -z "$err" ] || fail "systemd-analyze verify printed: $err"
    merged=$(systemd-analyze --root="$sroot" cat-config systemd/system/gitlab-runner.service)
    echo "$merged" | grep -qx 'ExecStartPre=/usr/bin/gitlab-runner-auth' || fail "merged unit lacks our ExecStartPre"
    echo "$merged" | grep -qx 'ExecStart=/usr/bin/gitlab-runner .*' || fail "merged unit lost ExecStart"
    if grep -Eq '^ExecStartPre=$|^ExecStart=' systemd/50-gitlab-runner-auth.conf; then
        fail "the drop-in must not reset ExecStartPre= or touch ExecStart="
    fi
    pass "drop-in verified with the stock unit"
    # the status service and its timer, as packaged (the binary is in the root)
    units="gitlab-runner-auth-status.service gitlab-runner-auth-status.timer"
    for u in $units; do cp "$work/debx/usr/lib/systemd/system/$u" "$sroot/usr/lib/systemd/system/"; done
    # shellcheck disable=SC2086
    err=$(systemd-analyze verify --man=no --root="$sroot" $units 2>&1 >/dev/null) \
        || fail "systemd-analyze verify of the status units: $err"
    [ -z "$err" ] || fail "systemd-analyze verify of the status units printed: $err"
    timer=$(systemd-analyze --root="$sroot" cat-config systemd/system/gitlab-runner-auth-status.timer)
    for line in OnCalendar=daily RandomizedDelaySec=1h Persistent=true WantedBy=timers.target; do
        echo "$timer" | grep -qx "$line" || fail "the status timer lacks $line"
    done
    service=$(systemd-analyze --root="$sroot" cat-config systemd/system/gitlab-runner-auth-status.service)
    for line in EnvironmentFile=-/etc/default/gitlab-runner-auth EnvironmentFile=-/etc/sysconfig/gitlab-runner-auth \
        'ExecStart=/usr/bin/gitlab-runner-auth status --metrics-file ${GITLAB_RUNNER_AUTH_METRICS_FILE}'; do
        echo "$service" | grep -qxF "$line" || fail "the status service lacks $line"
    done
    if echo "$service" | grep -q '^\[Install\]'; then fail "the status service must be started by its timer only"; fi
    pass "status service and timer verified"
else
    echo "package-check: skipped: systemd-analyze not installed" >&2
fi
# 6. make install, an admin install: staged with DESTDIR, the drop-in under
# SYSCONFDIR (/etc, not the packages' /usr/lib) running PREFIX's binary
stage=$work/stage
make --quiet install DESTDIR="$stage" PREFIX=/opt/gra >/dev/null
for f in opt/gra/bin/gitlab-runner-auth etc/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf \
    usr/lib/systemd/system/gitlab-runner-auth-status.service usr/lib/systemd/system/gitlab-runner-auth-status.timer \
    opt/gra/share/man/man8/gitlab-runner-auth.8 opt/gra/share/doc/gitlab-runner-auth/examples/config.template \
    etc/default/gitlab-runner-auth; do
    [ -f "$stage/$f" ] || fail "make install did not stage /$f"
done
grep -qx 'ExecStartPre=/opt/gra/bin/gitlab-runner-auth' \
    "$stage/etc/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf" || fail "installed drop-in does not follow PREFIX"
[ ! -e "$stage/usr/lib/systemd/system/gitlab-runner.service.d" ] || fail "make install put the drop-in where the packages put theirs"
grep -q '^ExecStart=/opt/gra/bin/gitlab-runner-auth status ' \
    "$stage/usr/lib/systemd/system/gitlab-runner-auth-status.service" || fail "installed status service does not follow PREFIX"
"$stage/opt/gra/bin/gitlab-runner-auth" --version >/dev/null || fail "installed binary does not run"
pass "make install DESTDIR=… PREFIX=…"

# 7. the repositories: APT metadata signed by the repository key and listing
# every .deb; YUM metadata read by dnf (--installroot, repo_gpgcheck=1:
# repomd.xml's signature checked) listing every .rpm with its checksum
REPO=$(realpath "${REPO_DIR:-target/repo}")
gpgv --keyring "$REPO/gitlab-runner-auth.gpg" "$REPO/apt/InRelease" 2>/dev/null || fail "InRelease: bad signature"
gpgv --keyring "$REPO/gitlab-runner-auth.gpg" "$REPO/apt/Release.gpg" "$REPO/apt/Release" 2>/dev/null \
    || fail "Release.gpg: bad signature"
(cd "$REPO/apt" && sed -n 's/^ \([0-9a-f]\{64\}\) .* \(Packages.*\)$/\1  \2/p' Release | sha256sum --quiet -c -) \
    || fail "Release does not match Packages"
for TARGET in "$@"; do
    arch=${TARGET%%-*}
    case $arch in x86_64) deb_arch=amd64 ;; aarch64) deb_arch=arm64 ;; esac
    deb=gitlab-runner-auth_${VERSION}-1_${deb_arch}.deb
    grep -qx "Filename: ./$deb" "$REPO/apt/Packages" || fail "Packages lacks $deb"
    grep -A20 -x "Filename: ./$deb" "$REPO/apt/Packages" | grep -qx "SHA256: $(sha256sum <"$REPO/apt/$deb" | cut -d' ' -f1)" \
        || fail "Packages: wrong SHA256 for $deb"
done
dnf=(dnf -q -y --installroot="$work/dnfroot" --releasever=9 --setopt=reposdir=/dev/null
     --setopt=cachedir="$work/dnfcache" --repofrompath="gra,file://$REPO/yum" --repo=gra
     --setopt=gra.skip_if_unavailable=0 --setopt=gra.gpgcheck=0 --setopt=gra.repo_gpgcheck=1
     --setopt=gra.gpgkey="file://$REPO/gitlab-runner-auth.asc")
got=$("${dnf[@]}" repoquery --forcearch=aarch64 --qf '%{name} %{evr} %{arch} %{location}' 2>"$work/dnf.err" | sort) \
    || fail "dnf cannot read the YUM repository: $(cat "$work/dnf.err")"
want=$(for TARGET in "$@"; do a=${TARGET%%-*}; echo "gitlab-runner-auth $VERSION-1 $a gitlab-runner-auth-$VERSION-1.$a.rpm"; done | sort)
[ "$got" = "$want" ] || fail "dnf repoquery: $got"
primary=$(ls "$REPO"/yum/repodata/*-primary.xml.gz)
for f in "$REPO"/yum/*.rpm; do
    zcat "$primary" | grep -q "<checksum type=\"sha256\" pkgid=\"YES\">$(sha256sum <"$f" | cut -d' ' -f1)</checksum>" \
        || fail "primary.xml: wrong checksum for $f"
done
pass "repositories: signed APT metadata; dnf reads the YUM metadata (repomd.xml signature checked)"

# 8. reproducible: make dist again from a copy of this tree elsewhere, its
# files dated 1970, with a new target directory; the host target's
# artefacts are byte-identical
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
make --no-print-directory --quiet dist TARGETS="$*" >"$work/dist1.log" 2>&1 || { tail -20 "$work/dist1.log"; fail "make dist"; }
copy=$work/elsewhere/gitlab-runner-auth
mkdir -p "$copy"
tar --exclude=./target --exclude=./.git -c . | tar -x -C "$copy"
# dated long before the commit, as in an old checkout
find "$copy" -exec touch -h -d @1 {} +
(cd "$copy" && CARGO_TARGET_DIR="$copy/target" make --no-print-directory --quiet dist TARGETS="$HOST") \
    >"$work/dist2.log" 2>&1 || { tail -20 "$work/dist2.log"; fail "second make dist"; }
while read -r sum file; do
    grep -qx "$sum  $file" target/dist/SHA256SUMS || fail "$file differs between two builds of the same tree"
done <"$copy/target/dist/SHA256SUMS"
pass "reproducible: $(wc -l <"$copy/target/dist/SHA256SUMS") artefacts byte-identical in a second build elsewhere"
echo "package-check: $passed passed, 0 failed"
