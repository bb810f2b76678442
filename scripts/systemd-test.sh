#!/bin/bash
# SPDX-License-Identifier: MIT
# make systemd-test: a minimal Debian (systemd 252) booted twice in
# systemd-nspawn, with the stock gitlab-runner unit, a stub gitlab-runner and
# the fake GitLab on the host's loopback.
#   boot 1: `apt-get install gitlab-runner-auth` by name from the signed APT
#           repository (make repo) as a file: source; the admin configures it.
#   boot 2: at boot our ExecStartPre wrote config.toml before the stub
#           started; nothing at -p err; a refused token file keeps the stub
#           from starting and shows at -p warning; a restart recovers; an
#           upgrade to a rebuilt N+1 from the repository keeps the admin's
#           settings file, reloads systemd, does not restart gitlab-runner and
#           leaves the drop-in in place; both token files encrypted with
#           systemd-creds and passed with LoadCredentialEncrypted= in a
#           drop-in, none left in the prefix: the restart creates the
#           runners, doctor names where each token comes from, no token in
#           the journal; a gpu runner on a second fake GitLab, its
#           credentials in <prefix>/<authority>/: created there, the first
#           GitLab's runners verified; unconfigured, the runner starts.
#           And the metrics: gitlab-runner-auth-status.timer enabled, its
#           service started, its default --metrics-file scraped from the
#           guest's own prometheus-node-exporter (Debian's package, which
#           makes /var/lib/prometheus the prometheus user's).
#   boot 3: a guest without the package: `gitlab-runner-auth setup` from the
#           static binary alone, a restart, `setup --uninstall`; and setup
#           refused where the .deb is installed.
# And the .rpm's upgrade with `rpm -U` in a scratch root: the edited settings
# file stays, the new one lands as .rpmnew.
# The debootstrap root is cached in $GRA_BOOT_CACHE between runs; its mirror
# is the one apt uses here (DEBIAN_MIRROR overrides).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
CACHE=${GRA_BOOT_CACHE:-/var/cache/gitlab-runner-auth-test}
BASE=$CACHE/bookworm-root
REPO=$(realpath "${REPO_DIR:-target/repo}")
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
NEXT=$(echo "$VERSION" | awk -F. '{printf "%d.%d.%d", $1, $2, $3 + 1}')
fail() { echo "systemd-test: FAIL: $*" >&2; exit 1; }
passed=0
ok() { passed=$((passed + 1)); }

# The Debian mirror apt uses on this machine: the first deb line of
# sources.list(.d/*.list), else the first deb stanza of sources.list.d/*.sources,
# never a security suite.
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local m
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' | awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}')
    if [ -z "$m" ]; then
        m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '^[[:space:]]*#' |
            awk 'BEGIN { RS = "" }
                 /(^|\n)Types:[^\n]*[[:space:]]deb([[:space:]]|$)/ && !/(^|\n)Suites:[^\n]*security/ {
                     if (match($0, /(^|\n)URIs:[[:space:]]*[^[:space:]]+/)) {
                         u = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[[:space:]]*/, "", u); print u; exit
                     }
                 }')
    fi
    [ -n "$m" ] || fail "no Debian mirror in /etc/apt/sources.list{,.d}: set DEBIAN_MIRROR"
    echo "$m"
}

for tool in systemd-nspawn debootstrap rpm; do
    command -v "$tool" >/dev/null || fail "$tool is missing (make deps-boot)"
done
[ -s "$REPO/apt/InRelease" ] || fail "no APT repository in $REPO (make repo)"
# a root cached before the metrics test has no node_exporter: build it again
if [ -d "$BASE" ] && [ ! -x "$BASE/usr/bin/prometheus-node-exporter" ]; then
    echo "systemd-test: $BASE has no prometheus-node-exporter; building it again"
    rm -rf "$BASE"
fi
if [ ! -d "$BASE" ]; then
    mirror=$(debian_mirror)
    echo "systemd-test: building the Debian root in $BASE (once, from $mirror)"
    mkdir -p "$CACHE"
    rm -rf "$BASE.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,prometheus-node-exporter bookworm "$BASE.tmp" \
        "$mirror" >"$CACHE/debootstrap.log" 2>&1 || fail "debootstrap (see $CACHE/debootstrap.log)"
    mv "$BASE.tmp" "$BASE"
fi

work=$(mktemp -d /var/tmp/gra-boot.XXXXXX)
fake=
fake2=
cleanup() {
    [ -n "$fake" ] && kill "$fake" 2>/dev/null
    [ -n "$fake2" ] && kill "$fake2" 2>/dev/null
    [ -n "${GRA_BOOT_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
start_all=$(date +%s)

# N+1: this tree with the next version and a settings file that changed (a
# new release's new setting), rebuilt quickly (no LTO, no optimisation: only
# the version and the files matter here) and put in a second repository
# signed with the same key.
next=$work/next-src
mkdir -p "$next"
tar --exclude=./target --exclude=./.git -c . | tar -x -C "$next"
sed -i "0,/^version = \"$VERSION\"$/s//version = \"$NEXT\"/" "$next/Cargo.toml"
sed -i "/^name = \"gitlab-runner-auth\"$/{n;s/^version = \"$VERSION\"$/version = \"$NEXT\"/}" "$next/Cargo.lock"
printf '\n# New in %s.\n#GITLAB_RUNNER_AUTH_NEW_SETTING=\n' "$NEXT" >>"$next/packaging/gitlab-runner-auth.env"
key=$(cat target/repo-key/key-id 2>/dev/null) || fail "no test key in target/repo-key (make repo)"
# (errexit does not apply inside a subshell followed by ||: each step
# says itself when it fails)
(
    cd "$next" || exit 1
    export CARGO_TARGET_DIR=$CACHE/next-target CARGO_PROFILE_RELEASE_LTO=false \
        CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
    make --no-print-directory --quiet packages >"$work/next-build.log" 2>&1 || exit 1
    export GNUPGHOME=$OLDPWD/target/repo-key
    REPO_KEY=$key REPO_DIR=$work/repo-next ./scripts/repo.sh >>"$work/next-build.log" 2>&1
    rc=$?
    gpgconf --kill gpg-agent 2>/dev/null || :
    exit $rc
) || { tail -20 "$work/next-build.log"; fail "building $NEXT"; }
RPM_NEXT=$CACHE/next-target/x86_64-unknown-linux-musl/generate-rpm/gitlab-runner-auth-$NEXT-1.x86_64.rpm
[ -s "$RPM_NEXT" ] || { tail -20 "$work/next-build.log"; fail "building $NEXT left no $RPM_NEXT"; }
echo "systemd-test: built $NEXT in $(( $(date +%s) - start_all ))s"

# the .rpm: rpm -U keeps the edited %config(noreplace) file, the new one is
# .rpmnew; scriptlets run in a copy of the Debian root (it has /bin/sh)
rr=$work/rpmroot
cp -a "$BASE" "$rr"
rpmr() { rpm --root "$rr" --dbpath /var/lib/rpm "$@" 2>&1 | grep -v 'use Alien' || true; }
rpmr --initdb
rpmr -i --nodeps "$REPO/yum/gitlab-runner-auth-$VERSION-1.x86_64.rpm"
echo "GITLAB_RUNNER_AUTH_API_URL=https://gitlab.example.com # the admin's" >>"$rr/etc/sysconfig/gitlab-runner-auth"
rpmr -U --nodeps "$RPM_NEXT" >"$work/rpm-U.log"
[ "$(rpm --root "$rr" --dbpath /var/lib/rpm -q --qf '%{VERSION}' gitlab-runner-auth 2>/dev/null)" = "$NEXT" ] \
    || fail "rpm -U did not install $NEXT"
grep -q "the admin's" "$rr/etc/sysconfig/gitlab-runner-auth" || fail "rpm -U replaced the edited settings file"
grep -q "New in $NEXT" "$rr/etc/sysconfig/gitlab-runner-auth.rpmnew" || fail "rpm -U left no .rpmnew: $(cat "$work/rpm-U.log")"
chroot "$rr" /usr/bin/gitlab-runner-auth --version | grep -q "^gitlab-runner-auth $NEXT " || fail "rpm -U: old binary"
ok
echo "systemd-test: ok: rpm -U $VERSION → $NEXT keeps the edited /etc/sysconfig/gitlab-runner-auth, new one as .rpmnew"
rm -rf "$rr"

R=$work/root
out=$work/out
mkdir -p "$out"
cp -a "$BASE" "$R"
cargo build --quiet --locked --example fake-gitlab
"$T/debug/examples/fake-gitlab" --no-registration --token-interval 2592000 \
    --pat-expires "$(date -u -d '+365 days' +%F)" --write-tokens "$work" >"$work/url" 2>/dev/null &
fake=$!
for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done
url=$(head -n 1 "$work/url")
[ -n "$url" ] || fail "the fake GitLab did not start"
# a second GitLab (README: Several GitLab instances), for the gpu runner
mkdir -p "$work/gl2"
"$T/debug/examples/fake-gitlab" --no-registration --write-tokens "$work/gl2" >"$work/url2" 2>/dev/null &
fake2=$!
for _ in $(seq 50); do [ -s "$work/url2" ] && break; sleep 0.1; done
url2=$(head -n 1 "$work/url2")
[ -n "$url2" ] || fail "the second fake GitLab did not start"
gl2=${url2#*://}

# the site mirror: N now, N+1 for the upgrade; apt sees only it
mkdir -p "$R/srv"
cp -a "$REPO/apt" "$R/srv/repo-$VERSION"
cp -a "$work/repo-next/apt" "$R/srv/repo-$NEXT"
ln -s "repo-$VERSION" "$R/srv/repo"
install -D -m 644 "$REPO/gitlab-runner-auth.gpg" "$R/usr/share/keyrings/gitlab-runner-auth.gpg"
echo 'deb [signed-by=/usr/share/keyrings/gitlab-runner-auth.gpg] file:/srv/repo ./' >"$R/etc/apt/sources.list"
# the stock unit (as gitlab-runner's post-install writes it) and a stub runner
cp tests/fixtures/gitlab-runner.service "$R/etc/systemd/system/"
cat >"$R/usr/bin/gitlab-runner" <<'STUB'
#!/bin/sh
# stub gitlab-runner: record what config.toml held when it started
n=$(grep -c '^  token = "glrt-' /etc/gitlab-runner/config.toml 2>/dev/null || echo 0)
echo "stub started with $n runner tokens" >> /probe-out/stub.log
exec sleep infinity
STUB
chmod 755 "$R/usr/bin/gitlab-runner"
mkdir -m 700 "$R/etc/gitlab-runner"
install -m 600 "$work/access-token" "$R/etc/gitlab-runner/admin-token"
install -D -m 600 "$work/gl2/access-token" "$R/root/gl2-token"
sed "s|https://gitlab.example.com|$url|" packaging/examples/config.template >"$R/etc/gitlab-runner/config.template"
printf 'GITLAB_RUNNER_AUTH_API_URL=%s\nGITLAB_RUNNER_AUTH_HOSTNAME=bootnode\nGITLAB_RUNNER_AUTH_WAIT=5s\n' "$url" \
    >"$R/etc/gitlab-runner-auth.settings"
# the guest's node_exporter (the package's service, its defaults) listens on
# a free loopback port, not :9100: the guest shares the host's network, and
# the host may run its own
ne_port=
for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then ne_port=$p; break; fi
done
[ -n "$ne_port" ] || fail "no free loopback port for node_exporter"
echo "ARGS=\"--web.listen-address=127.0.0.1:$ne_port\"" >"$R/etc/default/prometheus-node-exporter"

# boot 1: install by name, as an admin does, then configure and enable
cat >"$R/usr/local/bin/probe-install.sh" <<PROBE
#!/bin/sh
exec >/probe-out/install.log 2>&1
export DEBIAN_FRONTEND=noninteractive
{ apt-get update -q && apt-get install -y -q gitlab-runner-auth; } >/probe-out/apt-install.log 2>&1 && echo "install: ok"
echo "install: version \$(dpkg-query -W -f '\${Version}' gitlab-runner-auth)"
systemctl show -p DropInPaths -p NeedDaemonReload gitlab-runner
cat /etc/gitlab-runner-auth.settings >>/etc/default/gitlab-runner-auth
systemctl enable gitlab-runner
echo done
systemctl poweroff
PROBE
# boot 2: the runner started at boot; then failure, recovery and the upgrade
cat >"$R/usr/local/bin/probe.sh" <<PROBE
#!/bin/sh
exec >/probe-out/probe.log 2>&1
export DEBIAN_FRONTEND=noninteractive
tool() { journalctl -b -u gitlab-runner -o cat SYSLOG_IDENTIFIER=gitlab-runner-auth "\$@"; }
echo "boot: gitlab-runner \$(systemctl is-active gitlab-runner)"
echo "boot: config \$(stat -c %a /etc/gitlab-runner/config.toml)"
systemctl show -p DropInPaths gitlab-runner
journalctl -b -u gitlab-runner -p err -o cat > /probe-out/boot-err.log
{ gitlab-runner-auth doctor; echo "doctor: exit \$?"
  d=/etc/systemd/system/gitlab-runner.service.d
  mkdir -p \$d && ln -s /dev/null \$d/50-gitlab-runner-auth.conf && systemctl daemon-reload
  gitlab-runner-auth doctor; echo "masked doctor: exit \$?"
  rm \$d/50-gitlab-runner-auth.conf && rmdir \$d && systemctl daemon-reload
  echo "doctor done"; } > /probe-out/doctor.log 2>&1
systemctl stop gitlab-runner
rm -f /etc/gitlab-runner/config.toml /etc/gitlab-runner/runner-data.json
chmod 644 /etc/gitlab-runner/admin-token
systemctl restart gitlab-runner && echo "broken: restart ok" || echo "broken: restart failed"
echo "broken: gitlab-runner \$(systemctl is-active gitlab-runner)"
journalctl -b -u gitlab-runner -p warning -o cat > /probe-out/broken-warning.log
chmod 600 /etc/gitlab-runner/admin-token
systemctl restart gitlab-runner && echo "fixed: restart ok" || echo "fixed: restart failed"
echo "fixed: gitlab-runner \$(systemctl is-active gitlab-runner)"
# the metrics: the status timer enabled and its service started, as the
# README says; the file in the package's textfile directory, scraped from
# the package's own node_exporter (running as prometheus)
systemctl enable gitlab-runner-auth-status.timer >/dev/null 2>&1
echo "metrics: timer \$(systemctl is-enabled gitlab-runner-auth-status.timer)"
systemctl start gitlab-runner-auth-status.service && echo "metrics: status ok" || echo "metrics: status failed"
journalctl -b -u gitlab-runner-auth-status -o cat > /probe-out/status-service.log
stat -c 'metrics: %n %U' /var/lib/prometheus /var/lib/prometheus/node-exporter
stat -c 'metrics: %n %a %U' /var/lib/prometheus/node-exporter/gitlab-runner-auth.prom
echo "metrics: node_exporter \$(systemctl is-active prometheus-node-exporter) as \$(systemctl show -p User --value prometheus-node-exporter)"
for i in \$(seq 100); do
    bash -c 'exec 3<>/dev/tcp/127.0.0.1/$ne_port && printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' \
        > /probe-out/scrape.txt 2>/dev/null && grep -q '^node_textfile_scrape_error ' /probe-out/scrape.txt && break
    sleep 0.2
done
grep -q '^node_textfile_scrape_error ' /probe-out/scrape.txt && echo "metrics: scraped"
# the upgrade: N+1 appears on the mirror; a marker drop-in systemd has not
# loaded yet shows whether the package reloads it
pid=\$(systemctl show -p MainPID --value gitlab-runner)
mkdir -p /run/systemd/system/gitlab-runner.service.d
printf '[Service]\nEnvironment=UPGRADE_PROBE=1\n' > /run/systemd/system/gitlab-runner.service.d/zz-probe.conf
systemctl show -p Environment gitlab-runner | grep -q UPGRADE_PROBE=1 || echo "upgrade: marker not loaded yet"
ln -sfn repo-$NEXT /srv/repo
{ apt-get update -q && apt-get install -y -q -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold gitlab-runner-auth; } >/probe-out/apt-upgrade.log 2>&1 && echo "upgrade: ok"
echo "upgrade: version \$(dpkg-query -W -f '\${Version}' gitlab-runner-auth)"
gitlab-runner-auth --version | sed 's/^/upgrade: binary /'
echo "upgrade: after \$(systemctl show -p NeedDaemonReload gitlab-runner)"
systemctl show -p Environment gitlab-runner | grep -q UPGRADE_PROBE=1 && echo "upgrade: reloaded"
[ "\$(systemctl show -p MainPID --value gitlab-runner)" = "\$pid" ] && echo "upgrade: same runner pid"
echo "upgrade: gitlab-runner \$(systemctl is-active gitlab-runner)"
systemctl show -p DropInPaths gitlab-runner | sed 's/^/upgrade: /'
grep -q '^GITLAB_RUNNER_AUTH_HOSTNAME=bootnode$' /etc/default/gitlab-runner-auth && echo "upgrade: settings kept"
grep -q 'New in $NEXT' /etc/default/gitlab-runner-auth.dpkg-dist && echo "upgrade: new settings as .dpkg-dist"
systemctl restart gitlab-runner && echo "upgraded: restart ok" || echo "upgraded: restart failed"
# encrypted credentials (README: Encrypted credentials): both token files
# encrypted with the host key (no TPM here), passed with
# LoadCredentialEncrypted= in an admin's drop-in, no token file left in the
# prefix; runner-data.json gone and a new host name, so that the restart
# creates its runners with an admin-token only the service can decrypt
systemctl --version | sed -n '1s/^/creds: /p'
install -m 600 /etc/gitlab-runner/admin-token /etc/gitlab-runner/access-token
mkdir -p -m 700 /etc/credstore.encrypted
for t in admin-token access-token; do
    systemd-creds encrypt --with-key=host --name=\$t /etc/gitlab-runner/\$t /etc/credstore.encrypted/gitlab-runner-auth.\$t \\
        || echo "creds: encrypting \$t failed"
done
ls -l /etc/credstore.encrypted /var/lib/systemd/credential.secret > /probe-out/creds-files.txt 2>&1
mkdir -p /etc/systemd/system/gitlab-runner.service.d
printf '[Service]\nLoadCredentialEncrypted=admin-token:/etc/credstore.encrypted/gitlab-runner-auth.admin-token\nLoadCredentialEncrypted=access-token:/etc/credstore.encrypted/gitlab-runner-auth.access-token\n' \\
    > /etc/systemd/system/gitlab-runner.service.d/60-credentials.conf
rm /etc/gitlab-runner/admin-token /etc/gitlab-runner/access-token /etc/gitlab-runner/runner-data.json
ls -A /etc/gitlab-runner > /probe-out/creds-prefix.txt
grep -qx -e admin-token -e access-token /probe-out/creds-prefix.txt || echo "creds: no token file in the prefix"
sed -i 's/^GITLAB_RUNNER_AUTH_HOSTNAME=bootnode\$/GITLAB_RUNNER_AUTH_HOSTNAME=credsnode/' /etc/default/gitlab-runner-auth
systemctl daemon-reload
cursor=\$(journalctl -n 1 --show-cursor -o cat | sed -n 's/^-- cursor: //p')
systemctl restart gitlab-runner && echo "creds: restart ok" || echo "creds: restart failed"
echo "creds: gitlab-runner \$(systemctl is-active gitlab-runner)"
systemctl show -p LoadCredentialEncrypted -p DropInPaths gitlab-runner > /probe-out/creds-show.txt
busctl --json=short get-property org.freedesktop.systemd1 /org/freedesktop/systemd1/unit/gitlab_2drunner_2eservice \\
    org.freedesktop.systemd1.Service LoadCredential LoadCredentialEncrypted >> /probe-out/creds-show.txt 2>&1
journalctl -u gitlab-runner --after-cursor="\$cursor" -o cat > /probe-out/creds-journal.log
echo "creds: config tokens \$(grep -c '^  token = "glrt-' /etc/gitlab-runner/config.toml)"
grep -o 'glrt-[A-Za-z0-9_.-]*' /etc/gitlab-runner/config.toml > /probe-out/creds-runner-tokens
gitlab-runner-auth doctor > /probe-out/creds-doctor.log 2>&1; echo "creds: doctor exit \$?"
# several GitLabs: a gpu runner on the second, its credentials (an access
# token that creates and manages runners) in <prefix>/<authority>/
install -d -m 700 "/etc/gitlab-runner/$gl2"
install -m 600 /root/gl2-token "/etc/gitlab-runner/$gl2/admin-token"
install -m 600 /root/gl2-token "/etc/gitlab-runner/$gl2/access-token"
printf '\n[[runners]]\n  name = "{hostname}-gpu"\n  url = "%s"\n  token = "{gpu}"\n  executor = "shell"\n' "$url2" \
    >> /etc/gitlab-runner/config.template
sed -i '1s/^{\$/{\n  "gpu": {},/' /etc/gitlab-runner/runner-data.json
cursor=\$(journalctl -n 1 --show-cursor -o cat | sed -n 's/^-- cursor: //p')
systemctl restart gitlab-runner && echo "gitlabs: restart ok" || echo "gitlabs: restart failed"
echo "gitlabs: gitlab-runner \$(systemctl is-active gitlab-runner)"
journalctl -u gitlab-runner --after-cursor="\$cursor" -o cat > /probe-out/gitlabs-journal.log
echo "gitlabs: config tokens \$(grep -c '^  token = "glrt-' /etc/gitlab-runner/config.toml)"
grep -o 'glrt-[A-Za-z0-9_.-]*' /etc/gitlab-runner/config.toml >> /probe-out/creds-runner-tokens
cp /etc/gitlab-runner/runner-data.json /probe-out/gitlabs-state.json
sed -i 's/^GITLAB_RUNNER_AUTH_API_URL=/#&/' /etc/default/gitlab-runner-auth
systemctl restart gitlab-runner && echo "unconfigured: restart ok" || echo "unconfigured: restart failed"
echo "unconfigured: gitlab-runner \$(systemctl is-active gitlab-runner)"
journalctl -b -u gitlab-runner --no-pager -o cat > /probe-out/journal.log
journalctl -b --no-pager -o cat > /probe-out/journal-all.log
tool -p warning > /probe-out/tool-warning.log
tool -p info..info > /probe-out/tool-info.log
echo done
systemctl poweroff
PROBE
chmod 755 "$R/usr/local/bin/probe-install.sh" "$R/usr/local/bin/probe.sh"
for p in probe-install probe; do
    cat >"$R/etc/systemd/system/$p.service" <<UNIT
[Unit]
After=gitlab-runner.service
ConditionPathExists=/probe-out/$p
[Service]
Type=oneshot
ExecStart=/usr/local/bin/$p.sh
[Install]
WantedBy=multi-user.target
UNIT
    ln -s "/etc/systemd/system/$p.service" "$R/etc/systemd/system/multi-user.target.wants/"
done

boot() {
    local start
    start=$(date +%s)
    touch "$out/$1"
    timeout 300 systemd-nspawn -D "$R" --register=no --keep-unit -b --bind="$out:/probe-out" \
        >"$work/console-$1.log" 2>&1 || true
    rm -f "$out/$1"
    echo "systemd-test: boot ($1) ran $(( $(date +%s) - start ))s"
}
show() { echo "--- $1"; cat "$out/$1" 2>/dev/null || true; }
expect() { grep -qx -- "$1" "$out/$2" || { show journal.log; fail "expected '$1' in $2"; }; ok; }

echo "systemd-test: booting (fake GitLab at $url)"
boot probe-install
grep -q '^done$' "$out/install.log" 2>/dev/null || { tail -30 "$work/console-probe-install.log"; show install.log; fail "the install probe did not finish"; }
grep -qx 'install: ok' "$out/install.log" || { show apt-install.log; fail "apt-get install gitlab-runner-auth"; }
ok
expect "install: version $VERSION-1" install.log
expect 'DropInPaths=/usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf' install.log
expect 'NeedDaemonReload=no' install.log

boot probe
grep -q '^done$' "$out/probe.log" 2>/dev/null || { tail -30 "$work/console-probe.log"; show probe.log; fail "the probe did not finish"; }
show probe.log
show stub.log
expect 'boot: gitlab-runner active' probe.log
expect 'boot: config 600' probe.log
expect 'DropInPaths=/usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf' probe.log
expect 'broken: restart failed' probe.log
expect 'broken: gitlab-runner activating' probe.log
expect 'fixed: restart ok' probe.log
expect 'fixed: gitlab-runner active' probe.log
# the metrics, as Debian's node_exporter serves them: every family status
# writes, read without error
mexpect() { grep -qx -- "$1" "$out/probe.log" || { show status-service.log; show scrape.txt; fail "expected '$1' in probe.log"; }; ok; }
mexpect 'metrics: timer enabled'
mexpect 'metrics: status ok'
mexpect 'metrics: /var/lib/prometheus prometheus'
mexpect 'metrics: /var/lib/prometheus/node-exporter/gitlab-runner-auth.prom 644 root'
mexpect 'metrics: node_exporter active as prometheus'
mexpect 'metrics: scraped'
for f in last_run_timestamp_seconds last_run_duration_seconds last_run_success last_run_exit_code \
    runner_info runner_token_valid runner_token_expiry_timestamp_seconds access_token_expiry_timestamp_seconds; do
    grep -q "^gitlab_runner_auth_$f{" "$out/scrape.txt" || { show scrape.txt; fail "node_exporter does not serve gitlab_runner_auth_$f"; }
done
grep -qx 'gitlab_runner_auth_last_run_success{command="status"} 1' "$out/scrape.txt" \
    || { show scrape.txt; fail "node_exporter does not serve a successful status"; }
grep -qx 'node_textfile_scrape_error 0' "$out/scrape.txt" || { show scrape.txt; fail "node_textfile_scrape_error is not 0"; }
ok
echo "systemd-test: ok: gitlab-runner-auth-status.service's metrics served by Debian's node_exporter"
expect 'upgrade: marker not loaded yet' probe.log
grep -qx 'upgrade: ok' "$out/probe.log" || { show apt-upgrade.log; fail "the upgrade to $NEXT"; }
ok
expect "upgrade: version $NEXT-1" probe.log
expect "upgrade: binary gitlab-runner-auth $NEXT (x86_64-unknown-linux-musl)" probe.log
expect 'upgrade: after NeedDaemonReload=no' probe.log
expect 'upgrade: reloaded' probe.log
expect 'upgrade: same runner pid' probe.log
expect 'upgrade: gitlab-runner active' probe.log
expect 'upgrade: DropInPaths=/usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf /run/systemd/system/gitlab-runner.service.d/zz-probe.conf' probe.log
expect 'upgrade: settings kept' probe.log
expect 'upgrade: new settings as .dpkg-dist' probe.log
expect 'upgraded: restart ok' probe.log
# the start from encrypted credentials
cexpect() {
    grep -qx -- "$1" "$out/probe.log" || {
        for f in creds-files.txt creds-prefix.txt creds-show.txt creds-journal.log creds-doctor.log; do show $f; done
        fail "expected '$1' in probe.log"
    }
    ok
}
cexpect 'creds: no token file in the prefix'
cexpect 'creds: restart ok'
cexpect 'creds: gitlab-runner active'
cexpect 'creds: config tokens 2'
for ty in shell batch; do
    grep -q "^created $ty runner " "$out/creds-journal.log" || { show creds-journal.log; fail "no $ty runner created from the encrypted credentials"; }
done
ok
cexpect 'creds: doctor exit 0'
for t in admin-token access-token; do
    line=$(grep -E "^  ok    $t +/" "$out/creds-doctor.log" || true)
    grep -qF "/etc/credstore.encrypted/gitlab-runner-auth.$t (LoadCredentialEncrypted of gitlab-runner.service): encrypted; systemd decrypts it into the service's \$CREDENTIALS_DIRECTORY (systemd-creds decrypt reads it here)" <<<"$line" \
        || { show creds-doctor.log; show creds-show.txt; fail "doctor does not say $t comes from LoadCredentialEncrypted"; }
    grep -q "^  ok    $t  *holds glpat-" "$out/creds-doctor.log" || { show creds-doctor.log; fail "doctor did not classify the decrypted $t"; }
done
ok
# no token in the journal (the unit's, and the whole boot's), nor in doctor's report
[ -s "$out/creds-runner-tokens" ] || fail "no runner token in config.toml after the encrypted start"
for f in journal.log journal-all.log creds-doctor.log; do
    if grep -qF -f "$out/creds-runner-tokens" -f "$work/access-token" "$out/$f"; then
        fail "a token in $f: $(grep -oF -f "$out/creds-runner-tokens" -f "$work/access-token" "$out/$f" | head -c 12)…"
    fi
done
ok
echo "--- creds-doctor.log (the token lines)"
grep -E '^  [a-z]+ +(admin|access)-token ' "$out/creds-doctor.log"
echo "systemd-test: ok: a start from LoadCredentialEncrypted= ($(sed -n 's/^creds: systemd \([0-9]*\).*/systemd \1/p' "$out/probe.log")), no token file in the prefix, runners created, doctor names the source, no token in the journal"
# several GitLabs: the gpu runner made on the second, the others verified
gexpect() {
    grep -qx -- "$1" "$out/probe.log" || { show gitlabs-journal.log; show gitlabs-state.json; fail "expected '$1' in probe.log"; }
    ok
}
gexpect 'gitlabs: restart ok'
gexpect 'gitlabs: gitlab-runner active'
gexpect 'gitlabs: config tokens 3'
grep -q '^created gpu runner ' "$out/gitlabs-journal.log" || { show gitlabs-journal.log; fail "no gpu runner created on the second GitLab"; }
grep -qF "$url2: 1 runner ok (1 created)" "$out/gitlabs-journal.log" || { show gitlabs-journal.log; fail "the second GitLab's summary"; }
grep -qF "$url: 2 runners ok (2 verified)" "$out/gitlabs-journal.log" || { show gitlabs-journal.log; fail "the first GitLab's summary"; }
grep -qF "\"gitlab\": \"$url2\"" "$out/gitlabs-state.json" || { show gitlabs-state.json; fail "the gpu entry does not record its GitLab"; }
ok
echo "systemd-test: ok: two GitLabs: the gpu runner created on the second with <prefix>/$gl2/'s token, the first's verified"
expect 'unconfigured: restart ok' probe.log
expect 'unconfigured: gitlab-runner active' probe.log
# the stub started at boot, after the fix, after the upgrade, from the
# encrypted credentials (both tokens), with the second GitLab's gpu runner
# and unconfigured (three), never while broken
[ "$(cat "$out/stub.log")" = "$({ printf 'stub started with 2 runner tokens\n%.0s' 1 2 3 4; printf 'stub started with 3 runner tokens\n%.0s' 1 2; } | head -c -1)" ] \
    || fail "stub starts: $(cat "$out/stub.log")"
ok
# journald: priorities parsed (no <N>, level word or module path left in the
# text); a clean boot has nothing at -p err; the refusal, and only it, at -p
# warning from the tool; info lines at info
refusal='refusing /etc/gitlab-runner/admin-token: it is accessible by group or others (mode 0644); fix it with: chmod 600 /etc/gitlab-runner/admin-token'
[ ! -s "$out/boot-err.log" ] || fail "a clean boot logged at -p err: $(cat "$out/boot-err.log")"
ok
grep -qxF "$refusal" "$out/broken-warning.log" || { show broken-warning.log; fail "no refusal at -p warning"; }
ok
[ "$(cat "$out/tool-warning.log")" = "$refusal" ] || { show tool-warning.log; fail "-p warning holds more than the refusal"; }
ok
grep -q '^created shell runner' "$out/tool-info.log" || { show tool-info.log; fail "no creation at -p info"; }
grep -q '^not configured: no GitLab API URL' "$out/tool-info.log" || fail "no notice when unconfigured"
ok
if grep -Eq '^<[0-9]>|INFO|gitlab_runner_auth' "$out/journal.log"; then show journal.log; fail "unparsed log lines in the journal"; fi
ok
# doctor (run by the main probe before it breaks anything): all ok on the
# healthy setup, the drop-in line failing once the drop-in is masked
grep -q '^doctor done$' "$out/doctor.log" 2>/dev/null || { show doctor.log; fail "the doctor run did not finish"; }
expect 'doctor: exit 0' doctor.log
expect 'masked doctor: exit 78' doctor.log
grep -q '^  fail  drop-in  *not loaded: /etc/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf ' "$out/doctor.log" \
    || { show doctor.log; fail "doctor's drop-in line did not fail with the drop-in masked"; }
[ "$(grep -c '^  fail ' "$out/doctor.log")" = 1 ] || { show doctor.log; fail "doctor failed more than the drop-in line"; }
ok
show doctor.log

# ---- air-gapped: `gitlab-runner-auth setup` from the static binary alone --
# A third guest without the package: only the binary in /usr/local/sbin,
# setup, the token, a restart; then setup --uninstall. And on the guest the
# .deb is installed on, setup is refused naming the package's drop-in.
refused=$(chroot "$R" /usr/bin/gitlab-runner-auth setup 2>&1) && fail "setup ran where the package is installed: $refused"
code=$(chroot "$R" /usr/bin/gitlab-runner-auth setup >/dev/null 2>&1; echo $?)
[ "$code" = 78 ] || fail "setup where the package is installed: exit $code, not 78"
grep -q '/usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf' <<<"$refused" \
    || fail "setup's refusal does not name the package's drop-in: $refused"
ok
A=$work/airgap-root
aout=$work/out-airgap
mkdir -p "$aout"
cp -a "$BASE" "$A"
cp tests/fixtures/gitlab-runner.service "$A/etc/systemd/system/"
# no node_exporter here: it would listen on the host's :9100
ln -sf /dev/null "$A/etc/systemd/system/prometheus-node-exporter.service"
install -m 755 "$R/usr/bin/gitlab-runner" "$A/usr/bin/gitlab-runner"
static=$T/x86_64-unknown-linux-musl/release/gitlab-runner-auth
[ -x "$static" ] || fail "no static binary $static (make build)"
install -D -m 755 "$static" "$A/usr/local/sbin/gitlab-runner-auth"
install -m 600 "$work/access-token" "$A/root/admin-token"
cat >"$A/usr/local/bin/probe-airgap.sh" <<PROBE
#!/bin/sh
exec >/probe-out/airgap.log 2>&1
S=/usr/local/sbin/gitlab-runner-auth
d=/etc/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf
\$S setup --api-url $url >/probe-out/setup.log 2>&1; echo "setup: exit \$?"
echo "setup: drop-in \$(stat -c %a \$d) settings \$(stat -c %a /etc/default/gitlab-runner-auth) prefix \$(stat -c %a /etc/gitlab-runner)"
grep '^ExecStartPre=' \$d | sed 's/^/setup: /'
systemctl show -p NeedDaemonReload gitlab-runner | sed 's/^/setup: /'
printf 'GITLAB_RUNNER_AUTH_HOSTNAME=airnode\nGITLAB_RUNNER_AUTH_WAIT=5s\n' >>/etc/default/gitlab-runner-auth
install -m 600 /root/admin-token /etc/gitlab-runner/admin-token
systemctl restart gitlab-runner && echo "restart: ok" || echo "restart: failed"
echo "restart: gitlab-runner \$(systemctl is-active gitlab-runner)"
systemctl show -p DropInPaths gitlab-runner | sed 's/^/restart: /'
systemctl show -p ExecStartPre gitlab-runner >/probe-out/exec-start-pre.txt
grep -q 'path=/usr/local/sbin/gitlab-runner-auth ; .* pid=[1-9][0-9]* ; code=exited ; status=0\(/0\)\? }' /probe-out/exec-start-pre.txt \
    && echo "restart: pre-start ran from /usr/local/sbin"
(set -a; . /etc/default/gitlab-runner-auth; \$S status) >/probe-out/status.log 2>&1; echo "status: exit \$?"
\$S doctor >/probe-out/doctor.log 2>&1; echo "doctor: exit \$?"
\$S setup --uninstall >/probe-out/uninstall.log 2>&1; echo "uninstall: exit \$?"
[ -e \$d ] || echo "uninstall: drop-in gone"
systemctl show -p DropInPaths -p NeedDaemonReload gitlab-runner | sed 's/^/uninstall: /'
[ -e /etc/default/gitlab-runner-auth ] && echo "uninstall: edited settings kept"
journalctl -b -u gitlab-runner --no-pager -o cat >/probe-out/journal.log
echo done
systemctl poweroff
PROBE
chmod 755 "$A/usr/local/bin/probe-airgap.sh"
cat >"$A/etc/systemd/system/probe-airgap.service" <<UNIT
[Service]
Type=oneshot
ExecStart=/usr/local/bin/probe-airgap.sh
[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/probe-airgap.service "$A/etc/systemd/system/multi-user.target.wants/"
start=$(date +%s)
timeout 300 systemd-nspawn -D "$A" --register=no --keep-unit -b --bind="$aout:/probe-out" \
    >"$work/console-airgap.log" 2>&1 || true
echo "systemd-test: boot (airgap) ran $(( $(date +%s) - start ))s"
aexpect() {
    grep -qx -- "$1" "$aout/airgap.log" || {
        for f in airgap.log setup.log exec-start-pre.txt status.log doctor.log uninstall.log journal.log; do
            echo "--- $f"; cat "$aout/$f" 2>/dev/null || true
        done
        fail "expected '$1' in airgap.log"
    }
    ok
}
grep -q '^done$' "$aout/airgap.log" 2>/dev/null || { tail -30 "$work/console-airgap.log"; aexpect done; }
echo "--- airgap.log"; cat "$aout/airgap.log"
aexpect 'setup: exit 0'
aexpect 'setup: drop-in 644 settings 600 prefix 700'
aexpect 'setup: ExecStartPre=/usr/local/sbin/gitlab-runner-auth'
aexpect 'setup: NeedDaemonReload=no'
aexpect 'restart: ok'
aexpect 'restart: gitlab-runner active'
aexpect 'restart: DropInPaths=/etc/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf'
aexpect 'restart: pre-start ran from /usr/local/sbin'
aexpect 'status: exit 0'
aexpect 'doctor: exit 0'
aexpect 'uninstall: exit 0'
aexpect 'uninstall: drop-in gone'
aexpect 'uninstall: DropInPaths='
aexpect 'uninstall: NeedDaemonReload=no'
aexpect 'uninstall: edited settings kept'
[ "$(cat "$aout/stub.log")" = 'stub started with 2 runner tokens' ] || fail "airgap stub: $(cat "$aout/stub.log")"
ok
echo "systemd-test: ok: setup from the static binary alone, the restart, setup --uninstall; refused where the package is"
# ---- end of the air-gapped block --------------------------------------------
echo "systemd-test: took $(( $(date +%s) - start_all ))s"
echo "systemd-test: $passed passed, 0 failed"
