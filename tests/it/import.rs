// SPDX-License-Identifier: MIT
//! `import`: adopting a host whose runners were registered by hand. The
//! template and state it writes render the old `config.toml` back byte for
//! byte, and the run after it only verifies (and heals or creates the
//! runner whose token was dead).

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
    let t = Template::parse(&p.read("config.template"), "config.template").unwrap();
    let st = State::parse(p.read("runner-data.json").as_bytes()).unwrap();
    t.render(HOST, |ty| {
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
    // the runner of another GitLab is left as it is; its token never sent
    assert_eq!(gl.world().lines().len(), 2, "{:?}", gl.world().lines());
    assert!(
        p.read("config.template")
            .contains("token = \"glrt-OtherOtherOther0123456789\""),
    );
    assert!(
        r.stderr.contains("runner 'elsewhere' (line 13): its url https://gitlab.other.example is not the GitLab of --api-url"),
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

#[test]
fn a_runner_gitlab_shows_as_another_hosts_is_named_before_the_next_run() {
    let gl = FakeGitlab::start(World::default());
    let token = {
        let mut w = gl.world();
        let id = w.add_runner("build box", &["docker"], true);
        w.token_of(id)
    };
    let config = format!(
        "[[runners]]\n  name = \"build box\"\n  url = \"{}\"\n  token = \"{token}\"\n  executor = \"docker\"\n",
        gl.url()
    );
    let p = Prefix::new();
    p.write("access-token", ADMIN_PAT);
    p.write("config.toml", &config);
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 0);
    assert!(
        r.stderr.contains("GitLab shows runner ")
            && r.stderr
                .contains("as 'build box' with tags [docker], which is not node12's docker runner")
            && r.stderr.contains(
                "give it the description node12-docker and the tags node12 and docker in GitLab"
            ),
        "{r:?}"
    );
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
