// SPDX-License-Identifier: MIT
//! Regressions from the third review (import, doctor, --metrics-file,
//! --auto-tags, access-token checks): no secret of config.toml or of a
//! settings value in any output, metrics never written where others could
//! swap them, odd input a clear error.

use crate::doctor::{doctor, healthy, settings_file};
use crate::support::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

const S3: &str = "S3secretKEYvalue9876543210x";
const URLPW: &str = "URLpassword9876543210x";
const OTHER: &str = "othertokenNOprefix9876543210x";

fn one_runner(gl: &FakeGitlab) -> (u64, String) {
    let mut w = gl.world();
    let id = w.add_runner("node12-shell", &["node12", "node", "shell"], true);
    let t = w.token_of(id);
    (id, t)
}

/// import --dry-run prints config.toml's other secrets: an S3 secret key,
/// a password in a url, a token of a runner of another GitLab given in a
/// multi-line string.
#[test]
fn import_dry_run_shows_no_secret_of_config_toml() {
    let gl = FakeGitlab::start(World::default());
    let (id, t) = one_runner(&gl);
    let p = Prefix::new();
    let config = format!(
        r#"concurrent = 1
[[runners]]
  name = "node12-shell"
  url = "{url}"
  id = {id}
  token = "{t}"
  executor = "shell"
  [runners.cache]
    Type = "s3"
    [runners.cache.s3]
      AccessKey = "AKIAEXAMPLE"
      SecretKey = "{S3}"
[[runners]]
  name = "other"
  url = "https://ci:{URLPW}@other.example.com"
  token = """
{OTHER}"""
  executor = "shell"
"#,
        url = gl.url()
    );
    p.write("config.toml", &config);
    let r = run(&p, &gl, &["-vv", "import", "--dry-run"]);
    eprintln!("{r:?}");
    assert_no_secrets(&r, &gl);
    for s in [OTHER, URLPW, S3] {
        assert!(!r.output().contains(&s[..12]), "{s} shown:\n{r:?}");
    }
}

/// import: odd config.toml never panics (exit 70) and never echoes a token.
#[test]
fn import_odd_config_toml() {
    let gl = FakeGitlab::start(World::default());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("garbage", vec![0xff, 0xfe, 0, 1, 2, b'\n']),
        ("unterminated", b"[[runners]]\ntoken = \"glrt-unterminatedSECRET0123".to_vec()),
        ("noprefix", b"[[runners]]\nurl = \"x\"\ntoken = 'unterminatedSECRET0123\n".to_vec()),
        ("huge", vec![b'#'; 2 << 20]),
        ("runners-not-table", b"runners = [1, \"a\"]\n".to_vec()),
        ("id-huge", b"[[runners]]\nurl=\"http://127.0.0.1\"\ntoken=\"tokSECRETvalue012345\"\nid = 18446744073709551615\n".to_vec()),
        ("id-neg", b"[[runners]]\nurl=\"http://127.0.0.1\"\ntoken=\"tokSECRETvalue012345\"\nid = -1\n".to_vec()),
        ("dup-key", b"[[runners]]\ntoken=\"tokSECRETvalue012345\"\ntoken=\"tokSECRETvalue012345\"\n".to_vec()),
    ];
    for (name, bytes) in cases {
        let p = Prefix::new();
        std::fs::write(p.path("config.toml"), &bytes).unwrap();
        chmod(&p.path("config.toml"), 0o600);
        let r = run(&p, &gl, &["-vv", "import", "--dry-run"]);
        eprintln!("== {name}: {r:?}");
        assert_ne!(r.code, 70, "{name}: {r:?}");
        assert!(!r.output().contains("SECRET"), "{name}: {r:?}");
    }
}

/// --metrics-file: a symlink at the path is replaced, its target kept; a
/// FIFO does not hang; a file of another user is not replaced.
#[test]
fn metrics_file_odd_paths() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let dir = p.path("m");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("gra.prom");
    let f = path_str(&file);
    // symlink to a file elsewhere
    let victim = p.path("victim");
    p.write("victim", "keep\n");
    std::os::unix::fs::symlink(&victim, &file).unwrap();
    let r = run(&p, &gl, &["--metrics-file", &f]);
    assert_code(&r, 0);
    assert_eq!(p.read("victim"), "keep\n");
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    // FIFO
    std::fs::remove_file(&file).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&file)
            .status()
            .unwrap()
            .success()
    );
    let r = run(&p, &gl, &["--metrics-file", &f]);
    assert_code(&r, 0);
    assert!(
        !std::fs::symlink_metadata(&file)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // owned by another user: not replaced (warned)
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, "theirs\n").unwrap();
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let r = run(&p, &gl, &["--metrics-file", &f]);
    eprintln!("{r:?}");
    assert_code(&r, 0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "theirs\n");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), 65534);
}

/// --metrics-file in a directory others can write (no sticky bit): not
/// written (others could swap the file), warned about; the run stands.
#[test]
fn metrics_file_in_a_directory_others_can_write() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let dir = p.path("m");
    std::fs::create_dir(&dir).unwrap();
    chmod(&p.dir, 0o755);
    chmod(&dir, 0o777);
    let file = dir.join("gra.prom");
    let r = run(&p, &gl, &["--metrics-file", &path_str(&file)]);
    eprintln!("{r:?}");
    assert_code(&r, 0);
    assert!(!file.exists(), "not written where others could swap it");
    assert!(
        r.stderr.contains(&format!(
            "refusing {}: it is writable by group or others",
            path_str(&dir)
        )),
        "{r:?}"
    );
}

/// doctor: a settings file with a token in it (a value the service would
/// refuse, an unknown variable) never shows the token.
#[test]
fn doctor_odd_settings_file_shows_no_token() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    let secret_pat = "glpat-SETTINGSsecret9876543210x";
    let plain = "plainSETTINGSsecret9876543210x";
    settings_file(
        &p,
        &format!(
            "GITLAB_RUNNER_AUTH_API_URL={url}\nGITLAB_RUNNER_AUTH_PREFIX={pre}\nGITLAB_RUNNER_AUTH_HOSTNAME={HOST}\nGITLAB_RUNNER_AUTH_TIMEOUT={secret_pat}\nGITLAB_RUNNER_AUTH_ACCESS_TOKEN={plain}\nGITLAB_RUNNER_AUTH_TAG={plain},x\nGITLAB_RUNNER_AUTH_API_URL2=https://u:{plain}@h\n\u{0}\u{ff}garbage line without equals {plain}\nexport GITLAB_RUNNER_AUTH_REGISTRATION=\"{plain}\n",
            url = gl.url(),
            pre = path_str(&p.dir)
        ),
    );
    for json in [false, true] {
        let args: &[&str] = if json { &["--json"] } else { &[] };
        let r = doctor(&p, &gl, args);
        eprintln!("{r:?}");
        assert_ne!(r.code, 70, "{r:?}");
        assert_no_secrets(&r, &gl);
        assert!(
            !r.output().contains("SETTINGSsecret"),
            "settings value shown: {r:?}"
        );
    }
}

/// doctor with the api url carrying credentials, and tokens without a known
/// prefix: none shown.
#[test]
fn doctor_tokens_without_prefix_are_not_shown() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    p.write("admin-token", "noprefixADMINsecret9876543210x\n");
    for json in [false, true] {
        let mut args = vec!["-vv"];
        if json {
            args.push("--json");
        }
        let r = doctor(&p, &gl, &args);
        eprintln!("{r:?}");
        assert_no_secrets(&r, &gl);
        assert!(!r.output().contains("ADMINsecret"), "{r:?}");
    }
}

/// doctor with a group-writable prefix sends no token to GitLab.
#[test]
fn doctor_untrusted_prefix_sends_no_token() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    chmod(&p.dir, 0o770);
    gl.world().requests.clear();
    let r = doctor(&p, &gl, &[]);
    eprintln!("{r:?}");
    let w = gl.world();
    for q in &w.requests {
        assert!(
            q.header("private-token").is_none()
                && q.param("token")
                    .is_none_or(|t| t.as_str() == Some(gitlab_runner_auth_probe())),
            "doctor sent a token from an untrusted prefix: {}",
            q.line()
        );
        assert!(
            q.method == "GET" || q.path == "/runners/verify",
            "{}",
            q.line()
        );
    }
}

fn gitlab_runner_auth_probe() -> &'static str {
    "gitlab-runner-auth-doctor-probe"
}
