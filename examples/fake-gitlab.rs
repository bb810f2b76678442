// SPDX-License-Identifier: MIT
//! The tests' fake GitLab as a program, for `make demo` and `make bench`.
//! Prints its URL on the first line of stdout, then serves until killed.
//!
//! fake-gitlab [--port N] [--no-registration] [--token-interval SECS]
//!             [--latency-ms N] [--write-tokens DIR] [--keep-alive]
//!             [--pat-expires YYYY-MM-DD] [--tls [--ca-out FILE]]
//!
//! `--write-tokens DIR` writes DIR/registration-token and DIR/access-token
//! (mode 0600) for scripts. `--tls` serves HTTPS with a certificate for
//! 127.0.0.1 and localhost from a CA made at start, whose PEM `--ca-out`
//! writes to FILE (for `--ca-file`, `curl --cacert`). `--keep-alive` keeps
//! connections open for further requests, as GitLab does.
//! `--pat-expires` gives the admin access token an expiry date (default:
//! none), as the metrics report it.

#[path = "../tests/support/fake_gitlab.rs"]
mod fake_gitlab;

use fake_gitlab::{FakeGitlab, FaultKind, World};
use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut world = World::default();
    let mut port = 0u16;
    let mut latency = 0u64;
    let mut token_dir: Option<std::path::PathBuf> = None;
    let mut tls = false;
    let mut ca_out: Option<std::path::PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|v| v.parse().ok()).expect("--port N"),
            "--no-registration" => world.registration_enabled = false,
            "--token-interval" => world.token_interval = args.next().and_then(|v| v.parse().ok()),
            "--latency-ms" => {
                latency = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--latency-ms N")
            }
            "--write-tokens" => {
                token_dir = Some(args.next().expect("--write-tokens DIR").into());
            }
            "--keep-alive" => world.keep_alive = true,
            "--pat-expires" => {
                let date = args.next().expect("--pat-expires YYYY-MM-DD");
                if let Some(pat) = world.pats.get_mut(fake_gitlab::ADMIN_PAT) {
                    pat.expires_at = Some(date);
                }
            }
            "--tls" => tls = true,
            "--ca-out" => ca_out = Some(args.next().expect("--ca-out FILE").into()),
            _ => {
                eprintln!(
                    "usage: fake-gitlab [--port N] [--no-registration] [--token-interval SECS] [--latency-ms N] [--write-tokens DIR] [--keep-alive] [--pat-expires YYYY-MM-DD] [--tls [--ca-out FILE]]"
                );
                std::process::exit(64);
            }
        }
    }
    if latency > 0 {
        world.fault(
            None,
            "/",
            FaultKind::Delay(std::time::Duration::from_millis(latency)),
            usize::MAX,
        );
    }
    if let Some(dir) = token_dir {
        use std::os::unix::fs::OpenOptionsExt;
        for (name, value) in [
            ("registration-token", fake_gitlab::REGISTRATION_TOKEN),
            ("access-token", fake_gitlab::ADMIN_PAT),
        ] {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dir.join(name))
                .expect("write token file");
            writeln!(f, "{value}").expect("write token file");
        }
    }
    if ca_out.is_some() && !tls {
        eprintln!("fake-gitlab: --ca-out needs --tls");
        std::process::exit(64);
    }
    let gl = FakeGitlab::start_on(&format!("127.0.0.1:{port}"), world, tls);
    if let (Some(path), Some(pem)) = (ca_out, &gl.ca_pem) {
        // written before the URL is printed: a script may use it at once
        std::fs::write(&path, pem).expect("write the CA PEM");
    }
    println!("{}", gl.url());
    let _ = std::io::stdout().flush();
    eprintln!(
        "fake GitLab at {}: registration token {}, admin access token {}",
        gl.url(),
        fake_gitlab::REGISTRATION_TOKEN,
        fake_gitlab::ADMIN_PAT
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
