#!/bin/bash
# SPDX-License-Identifier: MIT
# Packaging checks (part of `make test`): the binary is static and small;
# the .deb and .rpm hold exactly the expected files, modes and config files;
# both install into scratch roots and the installed binary runs; the drop-in
# merged with the stock gitlab-runner unit passes systemd-analyze.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
BIN=target/x86_64-unknown-linux-musl/release/gitlab-runner-auth
DEB=$(ls -t target/debian/gitlab-runner-auth_*.deb | head -n 1)
RPM=$(ls -t target/x86_64-unknown-linux-musl/generate-rpm/gitlab-runner-auth-*.rpm | head -n 1)
MAX_SIZE=$((3 * 1024 * 1024))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "package-check: FAIL: $*" >&2; exit 1; }
pass() { echo "package-check: ok: $*"; }

# 1. a static binary under 3 MB
file -b "$BIN" | grep -q 'static' || fail "$BIN is not statically linked: $(file -b "$BIN")"
if ldd "$BIN" 2>&1 | grep -q '=>'; then fail "ldd finds libraries in $BIN"; fi
size=$(stat -c %s "$BIN")
[ "$size" -lt "$MAX_SIZE" ] || fail "$BIN is $size bytes (limit $MAX_SIZE)"
"$BIN" --version | grep -q 'x86_64-unknown-linux-musl' || fail "--version does not name the target"
pass "static binary, $size bytes"

# 2. the .deb: files, modes, control fields, conffiles
want_files="-rw-r--r-- ./etc/default/gitlab-runner-auth
-rwxr-xr-x ./usr/bin/gitlab-runner-auth
-rw-r--r-- ./usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf
-rw-r--r-- ./usr/share/doc/gitlab-runner-auth/README.md
-rw-r--r-- ./usr/share/doc/gitlab-runner-auth/copyright
-rw-r--r-- ./usr/share/doc/gitlab-runner-auth/examples/config.template
-rw-r--r-- ./usr/share/doc/gitlab-runner-auth/examples/runner-data.json
-rw-r--r-- ./usr/share/man/man8/gitlab-runner-auth.8.gz"
got_files=$(dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {print $1, $6}' | sort -k2)
[ "$got_files" = "$(echo "$want_files" | sort -k2)" ] || fail "unexpected .deb contents:
$got_files"
dpkg-deb -c "$DEB" | awk '{print $2}' | sort -u | grep -qx '0/0' || fail ".deb files not owned by root"
field() { dpkg-deb -f "$DEB" "$1"; }
[ -z "$(field Depends)" ] || fail ".deb Depends: $(field Depends)"
[ "$(field Recommends)" = "gitlab-runner" ] || fail ".deb Recommends: $(field Recommends)"
[ "$(field Enhances)" = "gitlab-runner" ] || fail ".deb Enhances: $(field Enhances)"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx /etc/default/gitlab-runner-auth \
    || fail ".deb conffiles lacks /etc/default/gitlab-runner-auth"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./postinst | grep -q 'daemon-reload' || fail "postinst does not reload systemd"
if dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./postinst ./postrm | grep -v '^ *#' | grep -Eq 'systemctl .*(start|restart)'; then
    fail "maintainer scripts must never (re)start gitlab-runner"
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
pass ".deb contents, fields and conffiles; man page sections"

# 3. install the .deb into a scratch root, run it, remove, purge
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

# 4. the .rpm: files, modes, config files, scriptlets; install into a root
want_rpm="-rw-r--r-- /etc/sysconfig/gitlab-runner-auth
-rw-r--r-- /usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf
-rw-r--r-- /usr/share/doc/gitlab-runner-auth/README.md
-rw-r--r-- /usr/share/doc/gitlab-runner-auth/examples/config.template
-rw-r--r-- /usr/share/doc/gitlab-runner-auth/examples/runner-data.json
-rw-r--r-- /usr/share/licenses/gitlab-runner-auth/LICENSE
-rw-r--r-- /usr/share/man/man8/gitlab-runner-auth.8.gz
-rwxr-xr-x /usr/bin/gitlab-runner-auth"
rpmq() { rpm --dbpath "$work/rpmdb" "$@" 2>/dev/null; }
got_rpm=$(rpmq -qlvp "$RPM" | awk '{print $1, $NF}' | sort -k2)
[ "$got_rpm" = "$(echo "$want_rpm" | sort -k2)" ] || fail "unexpected .rpm contents:
$got_rpm"
[ "$(rpmq -qcp "$RPM")" = "/etc/sysconfig/gitlab-runner-auth" ] || fail ".rpm config files: $(rpmq -qcp "$RPM")"
rpmq -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" | grep -q '^cn /etc/sysconfig/gitlab-runner-auth$' \
    || fail "/etc/sysconfig/gitlab-runner-auth is not %config(noreplace)"
rpmq -qp --recommends "$RPM" | grep -q '^gitlab-runner' || fail ".rpm does not recommend gitlab-runner"
if rpmq -qpR "$RPM" | grep -Ev '^(rpmlib\(|/bin/sh$|config\(gitlab-runner-auth\))' | grep -q .; then fail ".rpm requires: $(rpmq -qpR "$RPM")"; fi
rpmq -qp --scripts "$RPM" | grep -q 'daemon-reload' || fail ".rpm scriptlets do not reload systemd"
rroot=$work/rpmroot
mkdir -p "$rroot"
rpm --root "$rroot" --dbpath /var/lib/rpm --initdb 2>/dev/null
rpm --root "$rroot" --dbpath /var/lib/rpm -i --nodeps --noscripts "$RPM" 2>/dev/null
"$rroot/usr/bin/gitlab-runner-auth" --version >/dev/null || fail "rpm-installed binary does not run"
rpm --root "$rroot" --dbpath /var/lib/rpm -e --noscripts gitlab-runner-auth 2>/dev/null
[ ! -e "$rroot/usr/bin/gitlab-runner-auth" ] || fail "rpm -e left the binary"
pass ".rpm contents, config(noreplace), installs and runs"

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
else
    echo "package-check: skipped: systemd-analyze not installed" >&2
fi
# 6. make install, the air-gapped path: staged with DESTDIR, drop-in follows PREFIX
stage=$work/stage
make --quiet install DESTDIR="$stage" PREFIX=/opt/gra >/dev/null
for f in opt/gra/bin/gitlab-runner-auth usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf \
    opt/gra/share/man/man8/gitlab-runner-auth.8 opt/gra/share/doc/gitlab-runner-auth/examples/config.template \
    etc/default/gitlab-runner-auth; do
    [ -f "$stage/$f" ] || fail "make install did not stage /$f"
done
grep -qx 'ExecStartPre=/opt/gra/bin/gitlab-runner-auth' \
    "$stage/usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf" || fail "installed drop-in does not follow PREFIX"
"$stage/opt/gra/bin/gitlab-runner-auth" --version >/dev/null || fail "installed binary does not run"
pass "make install DESTDIR=… PREFIX=…"
echo "package-check: 6 passed, 0 failed"
