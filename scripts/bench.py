#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make bench: wall time and peak memory of gitlab-runner-auth against the
local fake GitLab, for a first run (creates every runner) and a no-change run
(verifies only), as the number of runners and the server latency grow; a
no-change start at 200 ms of server latency, request by request; and the
same start over TLS through a link with a 20 ms delay each way
(scripts/delay_link.py), next to curl making the same requests."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
MUSL = os.path.join(TARGET, "x86_64-unknown-linux-musl/release/gitlab-runner-auth")
GLIBC = os.path.join(TARGET, "release/gitlab-runner-auth")
FAKE = os.path.join(TARGET, "release/examples/fake-gitlab")
LINK = os.path.join(ROOT, "scripts/delay_link.py")
REPEAT = 5
# every process the bench starts is bounded
RUN_TIMEOUT = 60
LINK_DELAY_MS = 20
ONE_ROUND_LATENCY_MS = 200
ONE_ROUND_LIMIT_MS = 300
GNU_TIME = "/usr/bin/time"


def gnu_time():
    """GNU time reads the peak RSS (the `time` package); without it there is
    no peak RSS: a forked Python child would report Python's own memory."""
    try:
        ok = subprocess.run([GNU_TIME, "-q", "-f", "%M", "true"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return ok


HAVE_TIME = False


def timed(cmd, env=None, capture=False):
    """Run cmd, killed after RUN_TIMEOUT: (exit code, wall seconds, stdout).
    A watchdog, not `timeout=`: Python waits for a timeout by polling, in
    sleeps of up to 50 ms that would be measured."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(RUN_TIMEOUT, p.kill)
    watchdog.start()
    try:
        stdout, _ = p.communicate()
    finally:
        watchdog.cancel()
    return p.returncode, time.perf_counter() - start, stdout


def measure(cmd, env):
    """Run cmd; (exit code, wall seconds, peak RSS in KiB or None)."""
    if not HAVE_TIME:
        code, wall, _ = timed(cmd, env)
        return code, wall, None
    with tempfile.NamedTemporaryFile("r") as rss:
        code, wall, _ = timed([GNU_TIME, "-q", "-f", "%M", "-o", rss.name] + cmd, env)
        return code, wall, int(rss.read().split()[-1])


def first_line(proc, what):
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        sys.exit(f"bench: {what} did not start")
    return line


def start_fake(latency_ms, work, tls=False):
    """The fake GitLab: (process, URL, CA file or None). Over TLS it keeps
    connections open, as GitLab's nginx does."""
    cmd = [FAKE, "--no-registration", "--token-interval", "2592000",
           "--latency-ms", str(latency_ms), "--write-tokens", work]
    ca = None
    if tls:
        ca = os.path.join(work, "fake-ca.pem")
        cmd += ["--tls", "--ca-out", ca, "--keep-alive"]
    fake = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return fake, first_line(fake, "the fake GitLab"), ca


def start_link(upstream, delay_ms):
    """scripts/delay_link.py in front of upstream (host:port): (process, host:port)."""
    link = subprocess.Popen([sys.executable, LINK, "--delay-ms", str(delay_ms), "--to", upstream,
                             "--max-seconds", "600"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return link, first_line(link, "the delay link")


def stop(*procs):
    for p in procs:
        p.kill()
        p.wait()


def prefix_for(work, n, url):
    prefix = tempfile.mkdtemp(dir=work)
    for name in ("admin-token", "access-token"):
        shutil.copy(os.path.join(work, "access-token"), os.path.join(prefix, name))
        os.chmod(os.path.join(prefix, name), 0o600)
    types = [f"t{i:03d}" for i in range(n)]
    state = os.path.join(prefix, "runner-data.json")
    with open(state, "w") as f:
        f.write("{" + ",".join(f'"{t}": {{}}' for t in types) + "}\n")
    # it will hold tokens: private from the start, as the tool wants it
    os.chmod(state, 0o600)
    with open(os.path.join(prefix, "config.template"), "w") as f:
        f.write("concurrent = 4\n")
        for t in types:
            f.write(f'\n[[runners]]\n  name = "{{hostname}}-{t}"\n  url = "{url}"\n'
                    f"  id = {{{t}.id}}\n  token = \"{{{t}}}\"\n"
                    f"  token_obtained_at = {{{t}.token_obtained_at}}\n"
                    f"  token_expires_at = {{{t}.token_expires_at}}\n  executor = \"shell\"\n")
    return prefix


def tool_env(url, prefix, ca=None):
    env = {"PATH": "/usr/bin:/bin", "GITLAB_RUNNER_AUTH_API_URL": url,
           "GITLAB_RUNNER_AUTH_HOSTNAME": "bench01", "GITLAB_RUNNER_AUTH_QUIET": "1",
           "GITLAB_RUNNER_AUTH_PREFIX": prefix}
    if ca:
        env["GITLAB_RUNNER_AUTH_CA_FILE"] = ca
    return env


def med(xs):
    return sorted(xs)[len(xs) // 2]


def mib(kib):
    return f"{kib / 1024:>8.2f}" if kib is not None else f"{'-':>8}"


def peak(xs):
    return None if any(x is None for x in xs) else max(xs)


def runs(url, n, work, ca=None):
    """REPEAT times in a fresh prefix: a first run, then a no-change run.
    ([(wall, rss)] first, [(wall, rss)] no change, the last prefix)."""
    first, again = [], []
    for _ in range(REPEAT):
        prefix = prefix_for(work, n, url)
        env = tool_env(url, prefix, ca)
        code, t, rss = measure([TOOL], env)
        assert code == 0, f"first run exit {code}"
        first.append((t, rss))
        code, t, rss = measure([TOOL], env)
        assert code == 0, f"no-change run exit {code}"
        again.append((t, rss))
    return first, again, prefix


def row(label, n, latency_ms, work):
    fake, url, _ = start_fake(latency_ms, work)
    try:
        first, again, _ = runs(url + "/api/v4", n, work)
        ft, fr = med([x[0] for x in first]), peak([x[1] for x in first])
        nt, nr = med([x[0] for x in again]), peak([x[1] for x in again])
        print(f"{label:<22} {n:>7} {latency_ms:>8}  {ft*1000:>9.1f} {mib(fr)}  {nt*1000:>9.1f} {mib(nr)}")
        return nt
    finally:
        stop(fake)


# "2026-12-01T08:29:17.105Z DEBUG [gitlab_runner_auth::gitlab] GET /runners/101 -> 200 (202 ms)"
LOG_LINE = re.compile(r"^(\S+?)Z?\s+DEBUG\s+\[(?:gitlab_runner_auth::)?gitlab\]\s+"
                      r"(\S+) (\S+) -> (\S+).*\((\d+) ms\)\s*$")


def request_log(env, verbose="-v"):
    """Run the tool once with -v: the requests it made as (start ms, end ms,
    "METHOD /path", status) from its log, in order of start; the number of
    TCP connections ureq opened (-vv only; else None); its stderr."""
    r = subprocess.run([TOOL, verbose], env={**env, "GITLAB_RUNNER_AUTH_QUIET": "0"},
                       capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    out = []
    for line in r.stderr.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        stamp, method, path, status, ms = m.groups()
        hms = stamp.split("T")[-1]
        h, mi, s = hms.split(":")
        end = (int(h) * 3600 + int(mi) * 60 + float(s)) * 1000
        out.append((end - int(ms), end, f"{method} {re.sub(r'/[0-9]+', '/:id', path)}", status))
    out.sort()
    conns = None
    if verbose == "-vv":
        conns = sum("Connected TcpStream" in line for line in r.stderr.splitlines())
    return out, conns, r.stderr


def rounds(reqs):
    """How many round trips one after another the requests took: a request
    that starts only after an earlier one ended is in a later round."""
    n, round_end = 0, None
    for start, end, _, _ in reqs:
        if round_end is None or start >= round_end - 1:
            n, round_end = n + 1, end
        else:
            round_end = max(round_end, end)
    return n


def one_round(work):
    """A no-change start, 2 runners and an access token, with the server
    answering after ONE_ROUND_LATENCY_MS: its requests and their timing."""
    fake, url, _ = start_fake(ONE_ROUND_LATENCY_MS, work)
    try:
        url += "/api/v4"
        prefix = prefix_for(work, 2, url)
        env = tool_env(url, prefix)
        code, _, _ = measure([TOOL], env)
        assert code == 0, f"first run exit {code}"
        reqs, _, _ = request_log(env)
        walls = []
        for _ in range(REPEAT):
            code, t, _ = measure([TOOL], env)
            assert code == 0, f"no-change run exit {code}"
            walls.append(t)
    finally:
        stop(fake)
    wall = med(walls) * 1000
    print(f"\nno-change start, 2 runners, access token, server latency {ONE_ROUND_LATENCY_MS} ms "
          f"(plain http on loopback): median {wall:.1f} ms of {REPEAT} "
          f"(min {min(walls)*1000:.1f}, max {max(walls)*1000:.1f})")
    if not reqs:
        print("  (the tool's -v log names no requests)")
    t0 = reqs[0][0] if reqs else 0
    for start, end, what, status in reqs:
        print(f"  {start - t0:>7.0f} .. {end - t0:>5.0f} ms  {what} -> {status}")
    n = rounds(reqs)
    verdict = "under" if wall < ONE_ROUND_LIMIT_MS else "NOT under"
    print(f"  {len(reqs)} requests in {n} round{'s' if n != 1 else ''}; "
          f"{verdict} {ONE_ROUND_LIMIT_MS} ms")


def curl_cmd(base, ca, state, pat, system_id, parallel):
    """One curl process making the requests of a no-change start: a verify
    per token, GET /runners/:id per runner, one after another on one
    connection (or all at once with --parallel)."""
    cmd = ["curl", "--no-progress-meter"]
    if parallel:
        cmd += ["--parallel", "--parallel-immediate", "--parallel-max", "8"]
    ops = []
    for e in state.values():
        body = {"token": e["token"]}
        if system_id:
            body["system_id"] = system_id
        ops.append([f"{base}/runners/verify", "-H", "Content-Type: application/json",
                    "--data-binary", json.dumps(body)])
    for e in state.values():
        ops.append([f"{base}/runners/{e['id']}", "-H", f"PRIVATE-TOKEN: {pat}"])
    for i, op in enumerate(ops):
        if i:
            cmd.append("--next")
        cmd += ["--silent", "--show-error", "--fail", "--cacert", ca,
                "-H", "Accept: application/json", "-A", "curl-bench",
                "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n"] + op
    return cmd, len(ops)


def rtt(work):
    """The tool and curl over TLS through a link with LINK_DELAY_MS each way."""
    fake, url, ca = start_fake(0, work, tls=True)
    link = None
    try:
        link, addr = start_link(url.split("://", 1)[1], LINK_DELAY_MS)
        base = f"https://{addr}/api/v4"
        first, again, prefix = runs(base, 2, work, ca)
        first_reqs, first_conns, _ = request_log(tool_env(base, prefix_for(work, 2, base), ca),
                                                 "-vv")
        env = tool_env(base, prefix, ca)
        reqs, conns, log = request_log(env, "-vv")
        sid = re.search(r'"system_id":"([^"]+)"', log)
        with open(os.path.join(prefix, "runner-data.json")) as f:
            state = json.load(f)
        with open(os.path.join(work, "access-token")) as f:
            pat = f.read().strip()
        curls = []
        for parallel in (False, True):
            cmd, nreq = curl_cmd(base, ca, state, pat, sid and sid.group(1), parallel)
            walls, nconn = [], None
            for _ in range(REPEAT):
                code, wall, stdout = timed(cmd, capture=True)
                walls.append(wall)
                lines = stdout.split()
                assert code == 0 and lines[0::2] == ["200"] * nreq, f"curl: exit {code} {stdout}"
                nconn = sum(int(c) for c in lines[1::2])
            curls.append((parallel, nreq, nconn, walls))
    finally:
        stop(*[p for p in (fake, link) if p])
    made = sorted(r[2] for r in reqs)
    want = sorted(["POST /runners/verify"] * len(state) + ["GET /runners/:id"] * len(state))
    tool_ms = med([x[0] for x in again]) * 1000
    print(f"\nTLS through a link with {LINK_DELAY_MS} ms each way (scripts/delay_link.py), the fake "
          f"keeping connections open; 2 runners, access token; median of {REPEAT}.\n"
          f"A new connection costs 3 round trips (TCP, TLS, request): "
          f"{6 * LINK_DELAY_MS} ms at least for a no-change start.")
    print(f"{'client':<34} {'requests':>8} {'conns':>5} {'ms':>8} {'peak MiB':>8}  {'tool/client':>11}")
    ft = med([x[0] for x in first]) * 1000
    print(f"{'gitlab-runner-auth, first run':<34} {len(first_reqs):>8} {first_conns or '?':>5} {ft:>8.1f} "
          f"{mib(peak([x[1] for x in first]))}")
    print(f"{'gitlab-runner-auth, no change':<34} {len(reqs):>8} {conns or '?':>5} "
          f"{tool_ms:>8.1f} {mib(peak([x[1] for x in again]))}")
    for parallel, nreq, nconn, walls in curls:
        label = "curl --parallel" if parallel else "curl, one after another"
        ms = med(walls) * 1000
        print(f"{label:<34} {nreq:>8} {nconn:>5} {ms:>8.1f} {'':>8}  {tool_ms / ms:>11.2f}")
    if made != want:
        print(f"  note: the tool made {made}, curl {want}")
    n = rounds(reqs)
    print(f"  the tool's no-change start: {len(reqs)} requests in {n} round{'s' if n != 1 else ''} "
          f"({', '.join(sorted(set(r[2] for r in reqs)))})")


def build():
    """The fake, and the shipped static binary when the musl toolchain is
    here, else the glibc one."""
    subprocess.run(["cargo", "build", "--quiet", "--release", "--locked", "--example",
                    "fake-gitlab"], cwd=ROOT, check=True)
    static = subprocess.run(["make", "--quiet", "build"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode == 0
    if static:
        return MUSL
    subprocess.run(["cargo", "build", "--quiet", "--release", "--locked", "--bin",
                    "gitlab-runner-auth"], cwd=ROOT, check=True)
    return GLIBC


def main():
    global TOOL, HAVE_TIME
    HAVE_TIME = gnu_time()
    if not HAVE_TIME:
        print("bench: no GNU time at /usr/bin/time (apt-get install time): no peak RSS",
              file=sys.stderr)
    have_curl = shutil.which("curl") is not None
    TOOL = build()
    print(f"{os.path.relpath(TOOL, ROOT)} against the local fake GitLab; median of {REPEAT} runs, peak RSS = max")
    print(f"{'case':<22} {'runners':>7} {'latency':>8}  {'first ms':>9} {'peak MiB':>8}  {'again ms':>9} {'peak MiB':>8}")
    with tempfile.TemporaryDirectory() as work:
        for n in (2, 10, 50, 200):
            row("runners", n, 0, work)
        for lat in (10, 50, 200):
            row("latency", 2, lat, work)
        row("runners x latency", 10, 50, work)
        one_round(work)
        if have_curl:
            rtt(work)
        else:
            print("\nbench: no curl: the round-trip scenario is left out", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
