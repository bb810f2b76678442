// SPDX-License-Identifier: MIT
//! `import`: adopting a host whose runners were registered by hand. The
//! template and state it writes render the old `config.toml` back byte for
//! byte, and the run after it only verifies (and heals or creates the
//! runner whose token was dead). An odd `config.toml` is a clear error,
//! and no secret of it is ever shown.

use crate::support::*;
use gitlab_runner_auth::secret::Secret;
use gitlab_runner_auth::state::State;
use gitlab_runner_auth::template::{RunnerValues, Template};

/// A config.toml as an admin leaves it: comments, odd spacing, both quote
/// styles, literal braces, nested tables. `@URL@`, `@SHELL@`, `@SHELL_ID@`,
/// `@BATCH@`, `@DEAD@` and `@DEAD_ID@` are filled in.
const HAND_MADE: &str = r#"# registered by hand with gitlab-runner register, years ago
concurrent = 4
check_interval = 0   # seconds {not a field}

[session_server]
  session_timeout = 1800

[[runners]]
  name = "node12-shell"
  url = "@URL@"
  id = @SHELL_ID@
  token = "@SHELL@"
  token_obtained_at = 2025-06-06T07:38:01Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  [runners.cache]
    MaxUploadedArchiveSize = 0

[[runners]]
    name="node12-batch"     # odd spacing
    url  =  '@URL@'
    token   =   '@BATCH@'
    executor = "custom"
    environment = ["SCHED={slurm}", "A=}{"]
    [runners.custom]
      run_exec = "/opt/ci/run.sh"

[[runners]]
  name = "node12-docker"
  url = "@URL@"
  id = @DEAD_ID@
  token = "@DEAD@"
  executor = "docker"
  [runners.docker]
    image = "alpine:3"
"#;

/// The tags this host registers a runner of `ty` with.
fn tags(ty: &str) -> [&str; 3] {
    ["node12", "node", ty]
}

/// A fake with this host's shell, batch and docker runners, the docker
/// one's token no longer valid; the filled-in config.toml, and the ids.
fn hand_made(world: World) -> (FakeGitlab, String, [u64; 3]) {
    let gl = FakeGitlab::start(world);
    let (ids, dead) = {
        let mut w = gl.world();
        let ids = ["shell", "batch", "docker"]
            .map(|ty| w.add_runner(&format!("node12-{ty}"), &tags(ty), ty != "batch"));
        let dead = w.token_of(ids[2]);
        w.rotate(ids[2]);
        (ids, dead)
    };
    let w = gl.world();
    let text = HAND_MADE
        .replace("@URL@", &gl.url())
        .replace("@SHELL_ID@", &ids[0].to_string())
        .replace("@SHELL@", &w.token_of(ids[0]))
        .replace("@BATCH@", &w.token_of(ids[1]))
        .replace("@DEAD_ID@", &ids[2].to_string())
        .replace("@DEAD@", &dead);
    drop(w);
    (gl, text, ids)
}

/// `config.template` rendered with `runner-data.json`, as a run renders it.
fn rendered(p: &Prefix) -> String {
    rendered_as(p, HOST)
}

/// [`rendered`] as host `host`.
fn rendered_as(p: &Prefix, host: &str) -> String {
    let t = Template::parse(&p.read("config.template"), "config.template").unwrap();
    let st = State::parse(p.read("runner-data.json").as_bytes()).unwrap();
    t.render(host, |ty| {
        let e = st.entries.get(ty)?;
        Some(RunnerValues {
            token: e.token.as_ref().map_or("", Secret::expose),
            id: e.id,
            token_obtained_at: e.token_obtained_at,
            token_expires_at: e.token_expires_at,
        })
    })
    .unwrap()
}

/// The `[[runners]]` blocks of a config.toml (the part before the first
/// one included, as block 0).
fn blocks(text: &str) -> Vec<String> {
    text.split("[[runners]]").map(String::from).collect()
}

/// Secrets of config.toml that are no runner token of this host.
const S3: &str = "S3secretKEYvalue9876543210x";
const URLPW: &str = "URLpassword9876543210x";
const OTHER: &str = "othertokenNOprefix9876543210x";

/// A shell runner of this host in GitLab: its id and token.
fn one_runner(gl: &FakeGitlab) -> (u64, String) {
    let mut w = gl.world();
    let id = w.add_runner("node12-shell", &["node12", "node", "shell"], true);
    let t = w.token_of(id);
    (id, t)
}

/// `import --dry-run` never prints config.toml's other secrets: an S3
/// secret key, a password in a url, a token of a runner of another GitLab
/// given in a multi-line string.
#[test]
fn dry_run_shows_no_secret_of_config_toml() {
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

/// An odd config.toml (empty, not UTF-8, unterminated, huge, ids out of
/// range, a duplicate key …) never panics (exit 70) and never echoes a
/// token.
#[test]
fn an_odd_config_toml_never_panics_or_echoes_a_token() {
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

#[test]
fn a_hand_registered_host_is_adopted_and_the_dead_runner_healed() {
    let (gl, config, ids) = hand_made(World::default());
    let p = Prefix::new();
    p.write("access-token", ADMIN_PAT);
    p.write("config.toml", &config);
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 0);
    assert_no_secrets(&r, &gl);
    assert!(writes(&gl).is_empty(), "{:?}", gl.world().lines());
    assert_eq!(p.mode("config.template"), 0o600);
    assert_eq!(p.mode("runner-data.json"), 0o600);
    let st = p.state();
    for (ty, id) in ["shell", "batch", "docker"].iter().zip(ids) {
        assert_eq!(st[ty]["id"], id, "{ty}: {st}");
    }
    assert_eq!(p.state_token("shell"), gl.world().token_of(ids[0]));
    let template = p.read("config.template");
    for field in [
        "  id = {shell.id}\n",
        "  token = \"{shell.token}\"\n",
        "  token_obtained_at = {shell.token_obtained_at}\n",
        "  token_expires_at = {shell.token_expires_at}\n",
        "    token   =   '{batch.token}'\n",
        "  id = {docker.id}\n",
        "  token = \"{docker.token}\"\n",
        "check_interval = 0   # seconds {{not a field}}\n",
        "environment = [\"SCHED={{slurm}}\", \"A=}}{{\"]\n",
    ] {
        assert!(template.contains(field), "{field:?} in\n{template}");
    }
    assert_eq!(
        rendered(&p),
        config,
        "the template renders config.toml back"
    );
    assert!(
        r.stderr
            .contains("runner 'node12-docker': GitLab refused its token")
            && r.stderr
                .contains(&format!("the next run heals runner {}", ids[2])),
        "{r:?}"
    );
    assert!(r.stderr.contains("import: adopted 3 runner(s)"), "{r:?}");

    // the next run: verify, read the runners, heal the dead one; nothing else
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_no_secrets(&r, &gl);
    assert_eq!(
        writes(&gl),
        [format!(
            "POST /runners/{}/reset_authentication_token",
            ids[2]
        )],
        "{:?}",
        gl.world().lines()
    );
    let after = p.read("config.toml");
    let (old, new) = (blocks(&config), blocks(&after));
    assert_eq!(new[..3], old[..3], "the preamble, shell and batch blocks");
    let healed = gl.world().token_of(ids[2]);
    assert!(
        new[3].contains(&format!("  token = \"{healed}\"\n")),
        "{after}"
    );
    assert_eq!(p.state_id("docker"), ids[2]);

    // and the one after: reads only, config.toml untouched
    let before = p.snapshot("config.toml");
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(writes(&gl).is_empty(), "{:?}", gl.world().lines());
    assert_eq!(p.snapshot("config.toml"), before);
}

#[test]
fn after_import_a_run_without_access_token_creates_the_dead_runner_and_only_verifies() {
    let (gl, config, ids) = hand_made(World::default());
    let p = Prefix::new();
    p.write("admin-token", REGISTRATION_TOKEN);
    p.write("config.toml", &config);
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 0);
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert!(
        r.stderr.contains(&format!(
            "the next run creates a new runner (runner {} may remain in GitLab)",
            ids[2]
        )),
        "{r:?}"
    );
    assert_eq!(rendered(&p), config);
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_no_secrets(&r, &gl);
    assert_eq!(writes(&gl), ["POST /runners"], "{:?}", gl.world().lines());
    let after = p.read("config.toml");
    assert_eq!(blocks(&after)[..3], blocks(&config)[..3]);
    assert_ne!(p.state_id("docker"), ids[2]);
    assert!(
        r.stderr.contains(&format!(
            "old docker runner {} may remain in GitLab",
            ids[2]
        )),
        "{r:?}"
    );
    // from now on: verify calls only, config.toml keeps its bytes and mtime
    let before = p.snapshot("config.toml");
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert_eq!(p.snapshot("config.toml"), before);
}

#[test]
fn types_come_from_names_or_from_type() {
    let gl = FakeGitlab::start(World::default());
    let (a, b) = {
        let mut w = gl.world();
        let a = w.add_runner("node12-shell", &tags("shell"), true);
        let b = w.add_runner("node12-shell", &tags("shell"), true);
        (w.token_of(a), w.token_of(b))
    };
    let config = format!(
        "[[runners]]\n  name = \"node12-shell\"\n  url = \"{u}\"\n  token = \"{a}\"\n  executor = \"shell\"\n\n\
         [[runners]]\n  name = \"node12-shell\"\n  url = \"{u}/\"\n  token = \"{b}\"\n  executor = \"shell\"\n\n\
         [[runners]]\n  name = \"elsewhere\"\n  url = \"https://gitlab.other.example\"\n  token = \"glrt-OtherOtherOther0123456789\"\n  executor = \"shell\"\n",
        u = gl.url()
    );
    let p = Prefix::new();
    p.write("config.toml", &config);
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 0);
    let keys: Vec<String> = p.state().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["shell", "shell-2"]);
    assert_eq!(p.state_token("shell-2"), b);
    // the runner of another GitLab without credentials here is left as it
    // is (the directory to create is named); its token never sent
    assert_eq!(gl.world().lines().len(), 2, "{:?}", gl.world().lines());
    assert!(
        p.read("config.template")
            .contains("token = \"glrt-OtherOtherOther0123456789\""),
    );
    assert!(
        r.stderr.contains("runner 'elsewhere' (line 13): its url https://gitlab.other.example is another GitLab than --api-url"),
        "{r:?}"
    );
    assert!(!r.output().contains("OtherOtherOther"), "{r:?}");

    // --type: one per [[runners]], in order
    let r = run(&p, &gl, &["import", "--force", "--type", "login"]);
    assert_code(&r, 64);
    assert!(
        r.stderr.contains("1 --type given for 3 [[runners]] in"),
        "{r:?}"
    );
    let r = run(
        &p,
        &gl,
        &[
            "import", "--force", "--type", "a", "--type", "a.b", "--type", "c",
        ],
    );
    assert_code(&r, 64);
    assert!(r.stderr.contains("invalid --type \"a.b\""), "{r:?}");
    let r = run(
        &p,
        &gl,
        &[
            "import", "--force", "--type", "login", "--type", "gpu", "--type", "x",
        ],
    );
    assert_code(&r, 0);
    let keys: Vec<String> = p.state().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["gpu", "login"]);
    assert_eq!(p.state_token("login"), a);
    assert!(
        p.read("config.template")
            .contains("token = \"{gpu.token}\"")
    );
    assert_eq!(rendered(&p), config);
    assert_no_secrets(&r, &gl);
}

#[test]
fn an_existing_template_or_state_is_replaced_only_with_force() {
    let (gl, config, _) = hand_made(World::default());
    let p = Prefix::new();
    p.write("config.toml", &config);
    p.write("runner-data.json", "{\"shell\": {}}\n");
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(&format!(
            "refusing to overwrite {}: import writes it from config.toml; pass --force to replace it",
            p.path("runner-data.json").display()
        )),
        "{r:?}"
    );
    assert!(gl.world().requests.is_empty(), "refused before any request");
    assert_eq!(p.read("runner-data.json"), "{\"shell\": {}}\n");
    assert!(!p.exists("config.template"));
    let r = run(&p, &gl, &["import", "--force"]);
    assert_code(&r, 0);
    assert_eq!(p.mode("runner-data.json"), 0o600);
    assert_eq!(rendered(&p), config);
}

#[test]
fn dry_run_shows_the_files_and_writes_nothing() {
    let (gl, config, _) = hand_made(World::default());
    let p = Prefix::new();
    p.write("access-token", ADMIN_PAT);
    p.write("config.toml", &config);
    let files = p.files();
    let r = run(&p, &gl, &["import", "--dry-run"]);
    assert_code(&r, 0);
    assert_no_secrets(&r, &gl);
    assert_eq!(p.files(), files, "nothing written");
    assert!(writes(&gl).is_empty());
    for shown in [
        "  token = \"{shell.token}\"\n",
        "    token   =   '{batch.token}'\n",
        "\"token\": \"glrt-…",
        "runner-data.json (import would write it; tokens masked)",
    ] {
        assert!(r.stdout.contains(shown), "{shown:?}: {r:?}");
    }
    assert!(r.stderr.contains("nothing written"), "{r:?}");
}

#[test]
fn literal_braces_round_trip_and_the_next_run_keeps_config_toml() {
    let gl = FakeGitlab::start(World::default());
    let token = {
        let mut w = gl.world();
        let id = w.add_runner("node12-shell", &tags("shell"), true);
        w.token_of(id)
    };
    let config = format!(
        "[[runners]]\n  name = \"node12-shell\"\n  url = \"{}\"\n  token = \"{token}\"\n  executor = \"docker\"\n  environment = [\"X={{y}}\", \"{{{{z}}}}\", \"}}\"]\n  [runners.docker]\n    volumes = [\"/c:{{ro}}\"]\n    sysctls = {{ \"net.ipv4.ip_forward\" = \"1\" }}\n",
        gl.url()
    );
    assert!(config.contains("[\"X={y}\", \"{{z}}\", \"}\"]"), "{config}");
    let p = Prefix::new();
    p.write("config.toml", &config);
    assert_code(&run(&p, &gl, &["import"]), 0);
    assert!(
        p.read("config.template")
            .contains("environment = [\"X={{y}}\", \"{{{{z}}}}\", \"}}\"]")
    );
    assert_eq!(rendered(&p), config);
    let before = p.snapshot("config.toml");
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert_eq!(p.snapshot("config.toml"), before);
}

#[test]
fn before_gitlab_15_10_the_id_comes_from_config_toml() {
    let mut world = World::default();
    world.legacy_verify = true;
    let gl = FakeGitlab::start(world);
    let (a, b) = {
        let mut w = gl.world();
        let a = w.add_runner("node12-shell", &tags("shell"), false);
        let b = w.add_runner("node12-batch", &tags("batch"), false);
        (a, b)
    };
    let w = gl.world();
    let config = format!(
        "[[runners]]\n  name = \"node12-shell\"\n  url = \"{u}\"\n  id = {a}\n  token = \"{ta}\"\n  executor = \"shell\"\n\n\
         [[runners]]\n  name = \"node12-batch\"\n  url = \"{u}\"\n  token = \"{tb}\"\n  executor = \"shell\"\n",
        u = gl.url(),
        ta = w.token_of(a),
        tb = w.token_of(b)
    );
    drop(w);
    let p = Prefix::new();
    p.write("config.toml", &config);
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 0);
    assert_eq!(p.state_id("shell"), a);
    assert!(p.state()["batch"].get("id").is_none(), "{}", p.state());
    assert!(
        r.stderr
            .contains(&format!("runner 'node12-shell': this GitLab (before 15.10) does not say a token's runner id: using id {a} from config.toml")),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("runner 'node12-batch': this GitLab (before 15.10) does not say a token's runner id and config.toml has none: recording no id"),
        "{r:?}"
    );
    assert_eq!(rendered(&p), config);
    assert_no_secrets(&r, &gl);
}

/// Every file of the prefix but the lock, with its bytes and mtime.
fn untouched(p: &Prefix) -> Vec<(String, (Vec<u8>, i128))> {
    p.files()
        .into_iter()
        .filter(|n| n != ".gitlab-runner-auth.lock")
        .map(|n| {
            let snap = p.snapshot(&n);
            (n, snap)
        })
        .collect()
}

#[test]
fn a_runner_gitlab_shows_as_another_hosts_stops_import_unless_forced() {
    let gl = FakeGitlab::start(World::default());
    let (other, batch) = {
        let mut w = gl.world();
        let other = w.add_runner("node7-shell", &["node7", "node", "shell"], true);
        let batch = w.add_runner("node12-batch", &tags("batch"), true);
        (other, batch)
    };
    let w = gl.world();
    let config = format!(
        "# copied from node7, then node12's batch runner added by hand\n\
         [[runners]]\n  name = \"shell runner\"\n  url = \"{u}\"\n  token = \"{a}\"\n  executor = \"shell\"\n\n\
         [[runners]]\n  name = \"slurm\"\n  url = \"{u}\"\n  token = \"{b}\"\n  executor = \"custom\"\n",
        u = gl.url(),
        a = w.token_of(other),
        b = w.token_of(batch)
    );
    drop(w);
    let p = Prefix::new();
    p.write("access-token", ADMIN_PAT);
    p.write("config.toml", &config);
    let before = untouched(&p);
    let another = format!(
        "runner 'shell runner' (line 2): GitLab shows runner {other} as 'node7-shell' with tags [node7,node,shell], which is not node12's runner of any type by its ownership rule: give it the description node12-shell and the tags node12 and shell in GitLab to import it as shell; as it is, the next run would leave it alone and create a new shell runner"
    );
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains(&format!(
            "refusing to import {}: {another}; nothing written (pass --force to import it anyway)",
            p.path("config.toml").display()
        )),
        "{r:?}"
    );
    assert!(
        !r.stderr.contains("'slurm'"),
        "the batch runner is fine: {r:?}"
    );
    assert_eq!(untouched(&p), before, "nothing written");
    assert!(writes(&gl).is_empty(), "{:?}", gl.world().lines());
    assert_no_secrets(&r, &gl);

    // a --type that GitLab contradicts is named with the one that adopts it
    let r = run(&p, &gl, &["import", "--type", "shell", "--type", "slurm"]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains(&format!(
            "runner 'slurm' (line 8): GitLab shows runner {batch} as 'node12-batch' with tags [node12,node,batch], which is node12's batch runner, not its slurm: import it with --type batch; as it is, the next run would leave it alone and create a new slurm runner"
        )),
        "{r:?}"
    );
    assert_eq!(untouched(&p), before, "nothing written");

    // --dry-run says so and shows the files
    let r = run(&p, &gl, &["import", "--dry-run"]);
    assert_code(&r, 0);
    assert!(
        r.stderr
            .contains(&format!("{another} (import stops here without --force)")),
        "{r:?}"
    );
    assert_eq!(untouched(&p), before, "nothing written");

    // --force imports it as it is: the batch runner by GitLab's type
    let r = run(&p, &gl, &["import", "--force"]);
    assert_code(&r, 0);
    assert!(
        r.stderr
            .contains(&format!("{another} (--force: imported as it is)")),
        "{r:?}"
    );
    assert_eq!(p.state_id("shell"), other);
    assert_eq!(p.state_id("batch"), batch);
    assert_eq!(rendered(&p), config);
    assert!(writes(&gl).is_empty(), "{:?}", gl.world().lines());
    assert_no_secrets(&r, &gl);
}

#[test]
fn two_runners_gitlab_shows_as_one_type_stop_import() {
    // the pile-up re-registering leaves: two node12-shell runners
    let gl = FakeGitlab::start(World::default());
    let (a, b) = {
        let mut w = gl.world();
        let a = w.add_runner("node12-shell", &tags("shell"), true);
        let b = w.add_runner("node12-shell", &tags("shell"), true);
        (a, b)
    };
    let w = gl.world();
    let config = format!(
        "[[runners]]\n  name = \"node12-shell\"\n  url = \"{u}\"\n  token = \"{ta}\"\n  executor = \"shell\"\n\n\
         [[runners]]\n  name = \"node12-shell\"\n  url = \"{u}\"\n  token = \"{tb}\"\n  executor = \"shell\"\n",
        u = gl.url(),
        ta = w.token_of(a),
        tb = w.token_of(b)
    );
    drop(w);
    let p = Prefix::new();
    p.write("access-token", ADMIN_PAT);
    p.write("config.toml", &config);
    let before = untouched(&p);
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains(&format!(
            "runner 'node12-shell' (line 7): GitLab shows runner {b} as 'node12-shell' with tags [node12,node,shell], which is node12's shell runner, as is the runner of runner 'node12-shell' (line 1): keep one of them in {}; as it is, the next run would leave it alone and create a new shell-2 runner",
            p.path("config.toml").display()
        )),
        "{r:?}"
    );
    assert_eq!(untouched(&p), before, "nothing written");
    assert_no_secrets(&r, &gl);
}

/// What an HPC admin leaves on a login node after `gitlab-runner register`
/// by hand: names that are not `<host>-<type>`, a custom executor (for
/// Jacamar), and gitlab-runner's own keys. `@URL@`, `@<TYPE>_ID@` and
/// `@<TYPE>@` are filled in.
const LOGIN42: &str = r#"# gitlab-runner's config on login42 -- registered by hand, 2023
concurrent = 8
check_interval = 3
log_level = "warning"

[session_server]
  session_timeout = 1800

[[runners]]
  name = "login42 shell"
  url = "@URL@"
  id = @SHELL_ID@
  token = "@SHELL@"
  token_obtained_at = 2025-06-06T07:38:01Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  environment = ["GIT_DEPTH=1"]
  [runners.cache]
    MaxUploadedArchiveSize = 0

[[runners]]
  name = "login42 batch"
  url = "@URL@"
  id = @BATCH_ID@
  token = "@BATCH@"
  token_obtained_at = 2025-06-06T07:39:12Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "custom"
  builds_dir = "/scratch/ci/builds"   # the parallel file system
  [runners.custom]
    config_exec = "/opt/jacamar/bin/jacamar"
    config_args = ["config", "--configuration", "/etc/jacamar/custom-config.toml"]
    run_exec = "/opt/jacamar/bin/jacamar"
    run_args = ["run", "--configuration", "/etc/jacamar/custom-config.toml"]
  [runners.cache]

[[runners]]
  name = "login42 gpu"
  url = "@URL@"
  id = @GPU_ID@
  token = "@GPU@"
  token_obtained_at = 2025-06-06T07:40:30Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  environment = ["CUDA_VISIBLE_DEVICES=0"]
"#;

#[test]
fn import_names_each_runner_by_its_type_in_gitlab_and_the_next_start_creates_none() {
    let gl = FakeGitlab::start(World::default());
    let types = ["shell", "batch", "gpu"];
    let (ids, dead) = {
        let mut w = gl.world();
        let ids =
            types.map(|ty| w.add_runner(&format!("login42-{ty}"), &["login42", "login", ty], true));
        let dead = w.token_of(ids[2]);
        w.rotate(ids[2]);
        (ids, dead)
    };
    let mut config = LOGIN42.replace("@URL@", &gl.url());
    for (ty, id) in types.iter().zip(ids) {
        let up = ty.to_uppercase();
        let token = if *ty == "gpu" {
            dead.clone()
        } else {
            gl.world().token_of(id)
        };
        config = config
            .replace(&format!("@{up}_ID@"), &id.to_string())
            .replace(&format!("@{up}@"), &token);
    }
    let p = Prefix::new();
    p.write("access-token", ADMIN_PAT);
    p.write("config.toml", &config);
    let import = run_host(&p, &gl.url(), "login42", &["import"]);
    assert_code(&import, 0);
    assert_no_secrets(&import, &gl);
    assert!(writes(&gl).is_empty(), "{:?}", gl.world().lines());
    for (ty, id) in types.iter().zip(ids) {
        assert_eq!(p.state_id(ty), id, "{ty}: {}", p.state());
    }
    let keys: Vec<String> = p.state().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["batch", "gpu", "shell"]);
    assert_eq!(
        p.state_token("gpu"),
        dead,
        "kept for the next start to heal"
    );
    let template = p.read("config.template");
    for field in [
        "  id = {batch.id}\n  token = \"{batch.token}\"\n",
        "  id = {gpu.id}\n  token = \"{gpu.token}\"\n",
    ] {
        assert!(template.contains(field), "{field:?} in\n{template}");
    }
    assert!(!import.stderr.contains("--type"), "{import:?}");
    assert!(
        import
            .stderr
            .contains("runner 'login42 gpu': GitLab refused its token")
            && import.stderr.contains(&format!(
                "recorded as gpu: the next run heals runner {} (reset by id with access-token)",
                ids[2]
            )),
        "{import:?}"
    );
    assert_eq!(rendered_as(&p, "login42"), config);

    // the start: no runner created, the gpu runner healed by id
    gl.world().requests.clear();
    let r = run_host(&p, &gl.url(), "login42", &[]);
    assert_code(&r, 0);
    assert_no_secrets(&r, &gl);
    let lines = gl.world().lines();
    assert!(
        !lines
            .iter()
            .any(|l| l == "POST /runners" || l == "POST /user/runners"),
        "{lines:?}"
    );
    assert_eq!(
        writes(&gl),
        [format!(
            "POST /runners/{}/reset_authentication_token",
            ids[2]
        )],
        "{lines:?}"
    );
    let after = p.read("config.toml");
    let (old, new) = (blocks(&config), blocks(&after));
    assert_eq!(new[..3], old[..3], "the preamble, shell and batch blocks");
    let healed = gl.world().token_of(ids[2]);
    assert!(
        new[3].contains(&format!("  id = {}\n  token = \"{healed}\"\n", ids[2])),
        "{after}"
    );
    assert_eq!(p.state_token("gpu"), healed);
    assert!(config_tokens_valid(&p, &gl));

    // the next start: the three verify calls (and, with access-token, the
    // reads of each runner's details); config.toml keeps its bytes and mtime
    let before = p.snapshot("config.toml");
    gl.world().requests.clear();
    let r = run_host(&p, &gl.url(), "login42", &[]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    let reads = ids.map(|id| format!("GET /runners/{id}"));
    assert!(
        lines
            .iter()
            .all(|l| l == "POST /runners/verify" || reads.contains(l)),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "POST /runners/verify")
            .count(),
        3,
        "{lines:?}"
    );
    assert_eq!(p.snapshot("config.toml"), before);
}

#[test]
fn import_errors_say_what_is_wrong() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::new();
    let config = p.path("config.toml").display().to_string();
    // no API URL
    let mut c = command(&p);
    c.arg("--prefix").arg(&p.dir).arg("import");
    let r = run_cmd(c);
    assert_code(&r, 78);
    assert!(
        r.stderr
            .contains("import verifies each token of config.toml with GitLab: pass --api-url"),
        "{r:?}"
    );
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(&format!(
            "failed to read {config}: it does not exist; import adopts the config.toml"
        )),
        "{r:?}"
    );
    let url = gl.url();
    let runner = |token: &str| {
        format!(
            "[[runners]]\n  name = \"node12-shell\"\n  url = \"{url}\"\n  token = \"{token}\"\n"
        )
    };
    // (config.toml, arguments, exit code, message)
    let cases: [(String, &[&str], i32, String); 6] = [
        (
            "[[runners]\ntoken = \"glrt-SecretSecretSecret0123\"\n".into(),
            &[],
            65,
            format!("failed to parse {config}: line 1, column "),
        ),
        (
            "concurrent = 1\n".into(),
            &[],
            78,
            format!("{config} has no [[runners]]: nothing to import"),
        ),
        (
            format!(
                "{}{}",
                runner("glrt-SameSameSame0123456789"),
                runner("glrt-SameSameSame0123456789")
            ),
            &[],
            65,
            format!(
                "runner 'node12-shell' (line 1) and runner 'node12-shell' (line 5) of {config} hold the same token"
            ),
        ),
        (
            format!(
                "{}{}",
                runner("glrt-AAAAAAAAAAAAAAAAAAAA"),
                runner("glrt-BBBBBBBBBBBBBBBBBBBB")
            ),
            &["--type", "x", "--type", "x"],
            64,
            "--type x given twice: each [[runners]] needs a type of its own".into(),
        ),
        (
            runner("glrt-AAAAAAAAAAAAAAAAAAAA"),
            &["--type", "hostname"],
            64,
            "invalid --type \"hostname\": hostname is the template's own field".into(),
        ),
        (
            runner("$RUNNER_TOKEN"),
            &[],
            78,
            format!("no runner of {config} can be adopted: nothing to import"),
        ),
    ];
    for (text, args, code, want) in cases {
        p.write("config.toml", &text);
        let mut argv = vec!["import"];
        argv.extend_from_slice(args);
        let r = run(&p, &gl, &argv);
        assert_code(&r, code);
        assert!(r.stderr.contains(&want), "{want}: {r:?}");
        assert!(!r.output().contains("Secret0123"), "{r:?}");
        assert!(!p.exists("config.template") && !p.exists("runner-data.json"));
    }
    assert!(gl.world().requests.is_empty(), "{:?}", gl.world().lines());
    // --stateless keeps no runner-data.json
    let r = run(&p, &gl, &["import", "--stateless"]);
    assert_code(&r, 78);
    assert!(
        r.stderr
            .contains("import writes runner-data.json, which --stateless does not use")
    );
    // local trust: a config.toml others can change is refused
    p.write_mode("config.toml", &runner("glrt-AAAAAAAAAAAAAAAAAAAA"), 0o664);
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 77);
    assert!(r.stderr.contains(&format!("refusing {config}")), "{r:?}");
}

#[test]
fn a_value_the_next_run_writes_differently_is_named() {
    let gl = FakeGitlab::start(World::default());
    let (id, token) = {
        let mut w = gl.world();
        let id = w.add_runner("node12-shell", &tags("shell"), true);
        (id, w.token_of(id))
    };
    // gitlab-runner keeps nanoseconds after it rotated; id 0 is its "unknown"
    let config = format!(
        "[[runners]]\n  name = \"node12-shell\"\n  url = \"{}\"\n  id = 0\n  token = \"{token}\"\n  token_obtained_at = 2025-06-06T07:38:01.123456789Z\n  token_expires_at = 0001-01-01T00:00:00Z\n  executor = \"shell\"\n",
        gl.url()
    );
    let p = Prefix::new();
    p.write("config.toml", &config);
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 0);
    for said in [
        format!("runner 'node12-shell' (line 4): the next run writes id = {id} (config.toml has 0)"),
        "runner 'node12-shell' (line 6): the next run writes token_obtained_at = 2025-06-06T07:38:01Z (config.toml has 2025-06-06T07:38:01.123456789Z)".into(),
    ] {
        assert!(r.stderr.contains(&said), "{said}: {r:?}");
    }
    let want = config
        .replace("id = 0", &format!("id = {id}"))
        .replace(".123456789Z", "Z");
    assert_eq!(rendered(&p), want);
    // the next run writes just that, then keeps it
    gl.world().requests.clear();
    assert_code(&run(&p, &gl, &[]), 0);
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert_eq!(p.read("config.toml"), want);
}

#[test]
fn dry_run_masks_the_secrets_that_are_not_runner_tokens() {
    let (gl, config, _) = hand_made(World::default());
    let secrets = [
        "AzureAccountKeyZm9vYmFyYmF6cXV4==",
        "-----BEGIN PRIVATE KEY-----\\nMIIEvGcsPrivateKey\\n-----END PRIVATE KEY-----\\n",
        "MIIEvGcsPrivateKey",
        "dXNlcjpwYXNz",
        "abc123",
        "HelperPassw0rdXyz",
        "S3SecretKeyXyz987",
    ];
    let config = config.replace(
        "    MaxUploadedArchiveSize = 0\n",
        r#"    MaxUploadedArchiveSize = 0
    Type = "azure"
    [runners.cache.azure]
      AccountName = "ciacct"
      AccountKey = "AzureAccountKeyZm9vYmFyYmF6cXV4=="
      ContainerName = "runner"
    [runners.cache.gcs]
      ClientEmail = "ci@example.iam.gserviceaccount.com"
      PrivateKey = "-----BEGIN PRIVATE KEY-----\nMIIEvGcsPrivateKey\n-----END PRIVATE KEY-----\n"
    [runners.cache.s3]
      AccessKey = "AKIAEXAMPLE"
      SecretKey = "S3SecretKeyXyz987"
"#,
    );
    let config = config.replace(
        "    image = \"alpine:3\"\n",
        r#"    image = "alpine:3"
    helper_credentials = { username = "ci", password = "HelperPassw0rdXyz" }
  environment = ["DOCKER_AUTH_CONFIG={\"auths\":{\"r\":{\"auth\":\"dXNlcjpwYXNz\"}}}", "HDR=Authorization: Bearer abc123", "PLAIN=visible"]
"#,
    );
    assert!(config.parse::<toml::Table>().is_ok(), "{config}");
    let p = Prefix::new();
    p.write("access-token", ADMIN_PAT);
    p.write("config.toml", &config);
    let r = run(&p, &gl, &["import", "--dry-run"]);
    assert_code(&r, 0);
    assert_no_secrets(&r, &gl);
    for s in secrets {
        assert!(!r.output().contains(s), "{s} shown: {r:?}");
    }
    for shown in [
        "      AccountName = \"ciacct\"\n",
        "      AccountKey = \"…V4==\"\n",
        "      SecretKey = \"…z987\"\n",
        // the template's literal braces are doubled
        "    helper_credentials = {{ username = \"ci\", password = \"…dXyz\" }}\n",
        r#"  environment = ["DOCKER_AUTH_CONFIG={{\"auths\":{{\"r\":{{\"auth\":\"…\"}}}}}}", "HDR=Authorization: Bearer …", "PLAIN=visible"]"#,
    ] {
        assert!(r.stdout.contains(shown), "{shown:?}: {r:?}");
    }
}
