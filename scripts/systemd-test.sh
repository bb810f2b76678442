#!/bin/bash
# SPDX-License-Identifier: MIT
# make systemd-test: boot a minimal Debian (systemd 252) in systemd-nspawn
# with the .deb installed, the stock gitlab-runner unit and a stub
# gitlab-runner, against the fake GitLab on the host's loopback. Shows that
# at boot our ExecStartPre wrote config.toml before the stub started, that a
# failing run keeps the stub from starting, and that a restart recovers.
# The debootstrap root is cached in $GRA_BOOT_CACHE between runs.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
CACHE=${GRA_BOOT_CACHE:-/var/cache/gitlab-runner-auth-test}
BASE=$CACHE/bookworm-root
DEB=$(ls -t target/debian/gitlab-runner-auth_*.deb | head -n 1)
fail() { echo "systemd-test: FAIL: $*" >&2; exit 1; }

for tool in systemd-nspawn debootstrap; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install systemd-container debootstrap)"
done
if [ ! -d "$BASE" ]; then
    echo "systemd-test: building the Debian root in $BASE (once)"
    mkdir -p "$CACHE"
    rm -rf "$BASE.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$BASE.tmp" \
        http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 || fail "debootstrap (see $CACHE/debootstrap.log)"
    mv "$BASE.tmp" "$BASE"
fi

work=$(mktemp -d /var/tmp/gra-boot.XXXXXX)
fake=
cleanup() { [ -n "$fake" ] && kill "$fake" 2>/dev/null; [ -n "${GRA_BOOT_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
R=$work/root
out=$work/out
mkdir -p "$out"
cp -a "$BASE" "$R"

cargo build --quiet --example fake-gitlab
target/debug/examples/fake-gitlab --no-registration --token-interval 2592000 \
    --write-tokens "$work" >"$work/url" 2>/dev/null &
fake=$!
for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done
url=$(head -n 1 "$work/url")
[ -n "$url" ] || fail "the fake GitLab did not start"

# the package, the way an admin installs it
cp "$DEB" "$R/tmp/gitlab-runner-auth.deb"
chroot "$R" dpkg -i /tmp/gitlab-runner-auth.deb >/dev/null
# the stock unit (as gitlab-runner's post-install writes it) and a stub runner
cp tests/fixtures/gitlab-runner.service "$R/etc/systemd/system/"
ln -s /etc/systemd/system/gitlab-runner.service "$R/etc/systemd/system/multi-user.target.wants/"
cat >"$R/usr/bin/gitlab-runner" <<'STUB'
#!/bin/sh
# stub gitlab-runner: record what config.toml held when it started
n=$(grep -c '^  token = "glrt-' /etc/gitlab-runner/config.toml 2>/dev/null || echo 0)
echo "stub started with $n runner tokens" >> /probe-out/stub.log
exec sleep infinity
STUB
chmod 755 "$R/usr/bin/gitlab-runner"
# configure the tool
mkdir -m 700 "$R/etc/gitlab-runner"
install -m 600 "$work/access-token" "$R/etc/gitlab-runner/admin-token"
sed "s|https://gitlab.example.com|$url|" packaging/examples/config.template >"$R/etc/gitlab-runner/config.template"
printf 'GITLAB_RUNNER_AUTH_API_URL=%s\nGITLAB_RUNNER_AUTH_HOSTNAME=bootnode\nGITLAB_RUNNER_AUTH_WAIT=5s\n' "$url" \
    >>"$R/etc/default/gitlab-runner-auth"
# the probe: runs after gitlab-runner started at boot, then plays the failure
cat >"$R/usr/local/bin/probe.sh" <<'PROBE'
#!/bin/sh
exec >/probe-out/probe.log 2>&1
echo "boot: gitlab-runner $(systemctl is-active gitlab-runner)"
echo "boot: config $(stat -c %a /etc/gitlab-runner/config.toml)"
systemctl show -p DropInPaths gitlab-runner
systemctl stop gitlab-runner
rm -f /etc/gitlab-runner/config.toml /etc/gitlab-runner/runner-data.json
chmod 644 /etc/gitlab-runner/admin-token
systemctl restart gitlab-runner && echo "broken: restart ok" || echo "broken: restart failed"
echo "broken: gitlab-runner $(systemctl is-active gitlab-runner)"
chmod 600 /etc/gitlab-runner/admin-token
systemctl restart gitlab-runner && echo "fixed: restart ok" || echo "fixed: restart failed"
echo "fixed: gitlab-runner $(systemctl is-active gitlab-runner)"
sed -i 's/^GITLAB_RUNNER_AUTH_API_URL=/#&/' /etc/default/gitlab-runner-auth
systemctl restart gitlab-runner && echo "unconfigured: restart ok" || echo "unconfigured: restart failed"
echo "unconfigured: gitlab-runner $(systemctl is-active gitlab-runner)"
journalctl -u gitlab-runner --no-pager -o cat > /probe-out/journal.log
echo done
systemctl poweroff
PROBE
chmod 755 "$R/usr/local/bin/probe.sh"
cat >"$R/etc/systemd/system/probe.service" <<'UNIT'
[Unit]
After=gitlab-runner.service
[Service]
Type=oneshot
ExecStart=/usr/local/bin/probe.sh
[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/probe.service "$R/etc/systemd/system/multi-user.target.wants/"

# doctor inside the booted guest, in its own probe before the main one: all
# ok on the healthy setup, the drop-in line failing once the drop-in is masked
cat >"$R/usr/local/bin/doctor-probe.sh" <<'DOCTOR'
#!/bin/sh
exec >/probe-out/doctor.log 2>&1
gitlab-runner-auth doctor; echo "doctor: exit $?"
d=/etc/systemd/system/gitlab-runner.service.d
mkdir -p $d && ln -s /dev/null $d/50-gitlab-runner-auth.conf && systemctl daemon-reload
gitlab-runner-auth doctor; echo "masked doctor: exit $?"
rm $d/50-gitlab-runner-auth.conf && systemctl daemon-reload
echo "doctor done"
DOCTOR
chmod 755 "$R/usr/local/bin/doctor-probe.sh"
printf '[Unit]\nAfter=gitlab-runner.service\nBefore=probe.service\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/doctor-probe.sh\n[Install]\nWantedBy=multi-user.target\n' \
    >"$R/etc/systemd/system/doctor-probe.service"
ln -s /etc/systemd/system/doctor-probe.service "$R/etc/systemd/system/multi-user.target.wants/"

echo "systemd-test: booting (fake GitLab at $url)"
start=$(date +%s)
timeout 300 systemd-nspawn -D "$R" --register=no --keep-unit -b --bind="$out:/probe-out" \
    >"$work/console.log" 2>&1 || true
echo "systemd-test: guest ran $(( $(date +%s) - start ))s"
show() { echo "--- $1"; cat "$out/$1" 2>/dev/null || true; }
grep -q '^done$' "$out/probe.log" 2>/dev/null || { tail -30 "$work/console.log"; show probe.log; fail "the probe did not finish"; }
show probe.log
show stub.log
expect() { grep -qx "$1" "$out/$2" || { show journal.log; fail "expected '$1' in $2"; }; }
expect 'boot: gitlab-runner active' probe.log
expect 'boot: config 600' probe.log
expect 'DropInPaths=/usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf' probe.log
expect 'broken: restart failed' probe.log
expect 'broken: gitlab-runner activating' probe.log
expect 'fixed: restart ok' probe.log
expect 'fixed: gitlab-runner active' probe.log
expect 'unconfigured: restart ok' probe.log
expect 'unconfigured: gitlab-runner active' probe.log
# the stub started at boot, after the fix and unconfigured, each time with
# both tokens, never while broken
[ "$(cat "$out/stub.log")" = "$(printf 'stub started with 2 runner tokens\n%.0s' 1 2 3 | head -c -1)" ] \
    || fail "stub starts: $(cat "$out/stub.log")"
# doctor (the doctor probe above)
grep -q '^doctor done$' "$out/doctor.log" 2>/dev/null || { show doctor.log; fail "the doctor probe did not finish"; }
expect 'doctor: exit 0' doctor.log
expect 'masked doctor: exit 78' doctor.log
grep -q '^  fail  drop-in  *not loaded: /etc/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf ' "$out/doctor.log" \
    || { show doctor.log; fail "doctor's drop-in line did not fail with the drop-in masked"; }
[ "$(grep -c '^  fail ' "$out/doctor.log")" = 1 ] || { show doctor.log; fail "doctor failed more than the drop-in line"; }
show doctor.log
echo "systemd-test: doctor: 4 passed"
grep -q 'refusing token file /etc/gitlab-runner/admin-token' "$out/journal.log" || fail "no refusal in the journal"
grep -q 'created shell runner' "$out/journal.log" || fail "no creation in the journal"
grep -q 'not configured: no GitLab API URL' "$out/journal.log" || fail "no notice when unconfigured"
echo "systemd-test: 10 passed, 0 failed"
