#!/bin/sh
# SPDX-License-Identifier: MIT
# make demo: run gitlab-runner-auth against the bundled fake GitLab in a
# temporary prefix and show what it did and the config.toml it wrote.
set -eu
cargo build --quiet --bin gitlab-runner-auth --example fake-gitlab
bin=target/debug/gitlab-runner-auth
work=$(mktemp -d)
prefix=$work/prefix
mkdir -m 700 "$prefix"
target/debug/examples/fake-gitlab --no-registration --token-interval 2592000 \
    --write-tokens "$work" >"$work/url" 2>/dev/null &
fake=$!
trap 'kill $fake 2>/dev/null; rm -rf "$work"' EXIT INT TERM
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$work/url" ] && break; sleep 0.2; done
url=$(head -n 1 "$work/url")
# registration tokens are disabled (GitLab 17+): admin-token is an access token
cp "$work/access-token" "$prefix/admin-token"
cp "$work/access-token" "$prefix/access-token"
chmod 600 "$prefix/admin-token" "$prefix/access-token"
sed "s|https://gitlab.example.com|$url|" packaging/examples/config.template >"$prefix/config.template"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
export GITLAB_RUNNER_AUTH_API_URL="$url" GITLAB_RUNNER_AUTH_PREFIX="$prefix" GITLAB_RUNNER_AUTH_HOSTNAME=demo01
step "fake GitLab at $url; prefix $prefix"
ls -l "$prefix"
step "gitlab-runner-auth plan   (nothing exists yet: exit 2 = changes pending)"
$bin plan || echo "(exit $?)"
step "gitlab-runner-auth        (first run: creates the runners)"
$bin
step "the config.toml it wrote"
ls -l "$prefix/config.toml"
cat "$prefix/config.toml"
step "gitlab-runner-auth        (second run: only verifies, touches nothing)"
$bin
step "gitlab-runner-auth status"
$bin status
