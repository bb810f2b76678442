#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make bench: wall time and peak memory of gitlab-runner-auth against the
local fake GitLab, for a first run (creates every runner) and a no-change run
(verifies only), as the number of runners and the server latency grow."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUSL = os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/gitlab-runner-auth")
GLIBC = os.path.join(ROOT, "target/release/gitlab-runner-auth")
FAKE = os.path.join(ROOT, "target/release/examples/fake-gitlab")
REPEAT = 5


def measure(cmd, env):
    """Run cmd; (exit code, wall seconds, peak RSS in KiB). GNU time reads the
    peak RSS: a forked Python child would report Python's own memory."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        code = subprocess.call(["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name] + cmd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        return code, wall, int(rss.read().split()[-1])


def start_fake(latency_ms, work):
    fake = subprocess.Popen(
        [FAKE, "--no-registration", "--token-interval", "2592000",
         "--latency-ms", str(latency_ms), "--write-tokens", work],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return fake, fake.stdout.readline().strip()


def prefix_for(work, n, url):
    prefix = tempfile.mkdtemp(dir=work)
    for name in ("admin-token", "access-token"):
        shutil.copy(os.path.join(work, "access-token"), os.path.join(prefix, name))
        os.chmod(os.path.join(prefix, name), 0o600)
    types = [f"t{i:03d}" for i in range(n)]
    with open(os.path.join(prefix, "runner-data.json"), "w") as f:
        f.write("{" + ",".join(f'"{t}": {{}}' for t in types) + "}\n")
    with open(os.path.join(prefix, "config.template"), "w") as f:
        f.write("concurrent = 4\n")
        for t in types:
            f.write(f'\n[[runners]]\n  name = "{{hostname}}-{t}"\n  url = "{url}"\n'
                    f"  id = {{{t}.id}}\n  token = \"{{{t}}}\"\n"
                    f"  token_obtained_at = {{{t}.token_obtained_at}}\n"
                    f"  token_expires_at = {{{t}.token_expires_at}}\n  executor = \"shell\"\n")
    return prefix


def row(label, n, latency_ms, work):
    fake, url = start_fake(latency_ms, work)
    try:
        env = {"PATH": "/usr/bin:/bin", "GITLAB_RUNNER_AUTH_API_URL": url,
               "GITLAB_RUNNER_AUTH_HOSTNAME": "bench01", "GITLAB_RUNNER_AUTH_QUIET": "1"}
        first, again = [], []
        for _ in range(REPEAT):
            prefix = prefix_for(work, n, url)
            env["GITLAB_RUNNER_AUTH_PREFIX"] = prefix
            code, t, rss = measure([TOOL], env)
            assert code == 0, f"first run exit {code}"
            first.append((t, rss))
            code, t, rss = measure([TOOL], env)
            assert code == 0, f"no-change run exit {code}"
            again.append((t, rss))
        med = lambda xs: sorted(xs)[len(xs) // 2]
        ft, fr = med([x[0] for x in first]), max(x[1] for x in first)
        nt, nr = med([x[0] for x in again]), max(x[1] for x in again)
        print(f"{label:<22} {n:>7} {latency_ms:>8}  {ft*1000:>9.1f} {fr/1024:>8.2f}  {nt*1000:>9.1f} {nr/1024:>8.2f}")
    finally:
        fake.kill()
        fake.wait()


def main():
    global TOOL
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "gitlab-runner-auth",
                    "--example", "fake-gitlab"], cwd=ROOT, check=True)
    # the shipped static binary when the musl toolchain is here, else glibc
    static = subprocess.run(["make", "--quiet", "build"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode == 0
    TOOL = MUSL if static else GLIBC
    if not os.path.exists("/usr/bin/time"):
        sys.exit("bench: needs GNU time (apt-get install time)")
    print(f"{os.path.relpath(TOOL, ROOT)} against the local fake GitLab; median of {REPEAT} runs, peak RSS = max")
    print(f"{'case':<22} {'runners':>7} {'latency':>8}  {'first ms':>9} {'peak MiB':>8}  {'again ms':>9} {'peak MiB':>8}")
    with tempfile.TemporaryDirectory() as work:
        for n in (2, 10, 50, 200):
            row("runners", n, 0, work)
        for lat in (10, 50, 200):
            row("latency", 2, lat, work)
        row("runners x latency", 10, 50, work)


if __name__ == "__main__":
    sys.exit(main())
