// SPDX-License-Identifier: MIT
//! `--auto-tags`: tags read from the host (`arch`, `os`, `gpu`, `env:NAME`)
//! under `--sysroot`, pointed at the fixture trees in
//! `tests/fixtures/hosts/`; kept current by drift repair when the hardware
//! or the OS changes, without ever removing a tag an admin added by hand.

use crate::support::*;

const ALL: &str = "arch,os,gpu";

/// The fixture host tree `name` (`nvidia`, `amd`, `cpu`).
fn host_tree(name: &str) -> String {
    format!("{}/tests/fixtures/hosts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Run as `node12` with `--sysroot root --auto-tags items`, the
/// environment `env`, and `args`.
fn run_auto(
    p: &Prefix,
    gl: &FakeGitlab,
    root: &str,
    items: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Run {
    let mut c = command(p);
    c.envs(env.iter().copied())
        .args(["--api-url", &gl.url(), "--prefix"])
        .arg(&p.dir)
        .args(["--hostname", HOST, "--timeout", "5s", "--wait", "5s"])
        .args(["--sysroot", root, "--auto-tags", items])
        .args(args);
    run_cmd(c)
}

/// (id, tags) of the runner described `node12-<ty>`.
fn runner(gl: &FakeGitlab, ty: &str) -> (u64, Vec<String>) {
    let w = gl.world();
    let r = w
        .runners
        .values()
        .find(|r| r.description == format!("{HOST}-{ty}"))
        .unwrap_or_else(|| panic!("no {HOST}-{ty} runner"));
    (r.id, r.tags.clone())
}

/// Run again and check that GitLab saw no write call.
fn assert_settled(p: &Prefix, gl: &FakeGitlab, root: &str, items: &str, args: &[&str]) {
    gl.world().requests.clear();
    let r = run_auto(p, gl, root, items, &[], args);
    assert_code(&r, 0);
    assert!(writes(gl).is_empty(), "{:?}\n{r:?}", writes(gl));
}

#[test]
fn the_fixture_hosts_get_their_tags_on_a_first_run() {
    let cases = [
        ("nvidia", vec!["x86_64", "rhel9", "gpu", "nvidia"]),
        ("amd", vec!["x86_64", "ubuntu24", "gpu", "amd"]),
        ("cpu", vec!["x86_64", "rhel9"]),
    ];
    for (name, auto) in cases {
        let gl = FakeGitlab::start(World::default());
        let p = pat_prefix(ADMIN_PAT);
        let root = host_tree(name);
        let r = run_auto(&p, &gl, &root, ALL, &[], &[]);
        assert_code(&r, 0);
        assert_eq!(
            writes(&gl),
            vec!["POST /user/runners", "POST /user/runners"]
        );
        for ty in ["shell", "batch"] {
            let mut want = vec![HOST, "node", ty];
            want.extend(&auto);
            assert_eq!(runner(&gl, ty).1, want, "{name} {ty}");
        }
        assert!(
            r.stderr
                .contains(&format!("tags node12,node,shell,{}", auto.join(","))),
            "{r:?}"
        );
        // the next start finds nothing to change
        assert_settled(&p, &gl, &root, ALL, &[]);
    }
}

#[test]
fn auto_tags_go_after_the_scheduler_and_before_tag() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let sbatch = p.path("bin/sbatch");
    std::fs::write(&sbatch, "#!/bin/sh\n").unwrap();
    chmod(&sbatch, 0o755);
    let root = host_tree("amd");
    let r = run_auto(&p, &gl, &root, "gpu,arch", &[], &["--tag", "site-a"]);
    assert_code(&r, 0);
    assert_eq!(
        runner(&gl, "batch").1,
        vec![
            "node12", "node", "batch", "slurm", "gpu", "amd", "x86_64", "site-a"
        ]
    );
}

#[test]
fn a_gpu_put_in_later_is_repaired_onto_the_runners_and_removed_with_the_card() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let (cpu, nvidia) = (host_tree("cpu"), host_tree("nvidia"));
    assert_code(&run_auto(&p, &gl, &cpu, ALL, &[], &[]), 0);
    let (shell, before) = runner(&gl, "shell");
    assert_eq!(before, vec!["node12", "node", "shell", "x86_64", "rhel9"]);
    let shell_token = gl.world().token_of(shell);

    // plan shows it, read-only
    gl.world().requests.clear();
    let r = run_auto(&p, &gl, &nvidia, ALL, &[], &["plan"]);
    assert_code(&r, 2);
    assert!(
        r.stdout.contains(&format!(
            "shell (runner {shell}): would update description and tags on GitLab: 'node12-shell' [node12,node,shell,x86_64,rhel9] -> 'node12-shell' [node12,node,shell,x86_64,rhel9,gpu,nvidia]"
        )),
        "{r:?}"
    );
    assert!(writes(&gl).is_empty(), "{:?}", writes(&gl));

    // the card is in: PUT with the access token, same runner, same token
    let r = run_auto(&p, &gl, &nvidia, ALL, &[], &[]);
    assert_code(&r, 0);
    let batch = runner(&gl, "batch").0;
    let mut w = writes(&gl);
    w.sort();
    let mut want = vec![
        format!("PUT /runners/{shell}"),
        format!("PUT /runners/{batch}"),
    ];
    want.sort();
    assert_eq!(w, want, "only the two updates");
    let puts: Vec<_> = gl
        .world()
        .requests
        .iter()
        .filter(|q| q.method == "PUT")
        .map(|q| (q.path.clone(), q.header("private-token").map(String::from)))
        .collect();
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert!(
        puts.iter().all(|(_, t)| t.as_deref() == Some(ADMIN_PAT)),
        "with the access token: {puts:?}"
    );
    assert_eq!(
        runner(&gl, "shell"),
        (
            shell,
            [
                "node12", "node", "shell", "x86_64", "rhel9", "gpu", "nvidia"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    assert_eq!(gl.world().token_of(shell), shell_token, "no new token");
    assert!(
        r.stderr
            .contains(&format!("updated shell runner {shell} on GitLab")),
        "{r:?}"
    );
    assert_settled(&p, &gl, &nvidia, ALL, &[]);

    // the card is taken out again: gpu and nvidia leave the runners
    let r = run_auto(&p, &gl, &cpu, ALL, &[], &[]);
    assert_code(&r, 0);
    assert_eq!(runner(&gl, "shell").1, before);
    assert_eq!(
        runner(&gl, "batch").1,
        vec!["node12", "node", "batch", "x86_64", "rhel9"]
    );
    assert_settled(&p, &gl, &cpu, ALL, &[]);
}

#[test]
fn a_tag_an_admin_added_by_hand_is_never_removed() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let (cpu, nvidia) = (host_tree("cpu"), host_tree("nvidia"));
    assert_code(&run_auto(&p, &gl, &nvidia, ALL, &[], &[]), 0);
    let (id, _) = runner(&gl, "shell");
    // by hand, in GitLab: a tag of the admin's, and a case-different GPU
    gl.world()
        .runners
        .get_mut(&id)
        .unwrap()
        .tags
        .extend(["bigmem".into(), "GPU".into()]);
    let hand = [
        "node12", "node", "shell", "x86_64", "rhel9", "gpu", "nvidia", "bigmem", "GPU",
    ];
    assert_settled(&p, &gl, &nvidia, ALL, &[]);
    assert_eq!(runner(&gl, "shell").1, hand);

    // hardware changes: only this host's tags move
    gl.world().requests.clear();
    assert_code(&run_auto(&p, &gl, &cpu, ALL, &[], &[]), 0);
    assert!(writes(&gl).contains(&format!("PUT /runners/{id}")));
    assert_eq!(
        runner(&gl, "shell").1,
        vec![
            "node12", "node", "shell", "x86_64", "rhel9", "bigmem", "GPU"
        ]
    );
    // and a tag this host sets, removed by hand, is put back next to it
    gl.world()
        .runners
        .get_mut(&id)
        .unwrap()
        .tags
        .retain(|t| t != "rhel9");
    assert_code(&run_auto(&p, &gl, &cpu, ALL, &[], &[]), 0);
    assert_eq!(
        runner(&gl, "shell").1,
        vec![
            "node12", "node", "shell", "x86_64", "rhel9", "bigmem", "GPU"
        ]
    );

    // without --auto-tags nothing says those tags were this host's: all kept
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(writes(&gl).is_empty(), "{:?}", writes(&gl));
    assert!(runner(&gl, "shell").1.contains(&"bigmem".to_string()));
}

#[test]
fn an_os_upgrade_replaces_the_os_tag() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let root = p.path("root");
    let write = |rel: &str, text: &str| {
        let f = root.join(rel);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    };
    write("proc/sys/kernel/arch", "aarch64\n");
    write(
        "etc/os-release",
        "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"8.9\"\n",
    );
    let root_s = path_str(&root);
    // a hand-added `rocky` (no version) and another family's tag stay
    assert_code(&run_auto(&p, &gl, &root_s, "os,arch", &[], &[]), 0);
    let (id, tags) = runner(&gl, "shell");
    assert_eq!(tags, vec!["node12", "node", "shell", "rocky8", "aarch64"]);
    gl.world()
        .runners
        .get_mut(&id)
        .unwrap()
        .tags
        .extend(["rocky".into(), "rhel8".into()]);
    write(
        "etc/os-release",
        "NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.4\"\n",
    );
    assert_code(&run_auto(&p, &gl, &root_s, "os,arch", &[], &[]), 0);
    assert_eq!(
        runner(&gl, "shell").1,
        vec![
            "node12", "node", "shell", "rocky9", "aarch64", "rocky", "rhel8"
        ]
    );
    assert_settled(&p, &gl, &root_s, "os,arch", &[]);
}

#[test]
fn stateless_runners_are_found_and_repaired_with_auto_tags() {
    let gl = FakeGitlab::start(World::default());
    let p = stateless_prefix();
    let (cpu, nvidia) = (host_tree("cpu"), host_tree("nvidia"));
    assert_code(&run_auto(&p, &gl, &cpu, ALL, &[], &["--stateless"]), 0);
    let (id, _) = runner(&gl, "shell");
    assert_settled(&p, &gl, &cpu, ALL, &["--stateless"]);
    gl.world().requests.clear();
    let r = run_auto(&p, &gl, &nvidia, ALL, &[], &["--stateless"]);
    assert_code(&r, 0);
    let w = writes(&gl);
    assert!(w.contains(&format!("PUT /runners/{id}")), "{w:?}");
    assert!(
        w.iter().all(|l| l.starts_with("PUT ")),
        "no runner made again: {w:?}"
    );
    assert_eq!(gl.world().runners.len(), 2);
    assert!(runner(&gl, "shell").1.contains(&"nvidia".to_string()));
}

#[test]
fn env_items_tag_with_the_variables_value() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let cpu = host_tree("cpu");
    let r = run_auto(
        &p,
        &gl,
        &cpu,
        "arch,env:SITE,env:UNSET",
        &[("SITE", "llnl")],
        &[],
    );
    assert_code(&r, 0);
    assert_eq!(
        runner(&gl, "shell").1,
        vec!["node12", "node", "shell", "x86_64", "llnl"]
    );
    // the list from the environment file works the same
    let r = run_cmd({
        let mut c = command(&p);
        c.env("GITLAB_RUNNER_AUTH_AUTO_TAGS", "env:SITE,arch")
            .env("GITLAB_RUNNER_AUTH_SYSROOT", &cpu)
            .env("SITE", "llnl")
            .args(["--api-url", &gl.url(), "--prefix"])
            .arg(&p.dir)
            .args(["--hostname", HOST, "--wait", "5s", "plan"]);
        c
    });
    assert_code(&r, 0);

    // a value GitLab would split is a usage error naming the variable
    gl.world().requests.clear();
    let r = run_auto(&p, &gl, &cpu, "env:SITE", &[("SITE", "llnl,ornl")], &[]);
    assert_code(&r, 64);
    assert!(
        r.stderr.contains(
            r#"invalid environment variable SITE (--auto-tags env:SITE) "llnl,ornl": runner tags cannot hold a comma"#
        ),
        "{r:?}"
    );
    assert!(gl.world().lines().is_empty(), "{:?}", gl.world().lines());
}

#[test]
fn an_unknown_item_is_a_usage_error_before_any_request() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    for items in ["arch,cuda", "env:", "GPU"] {
        let r = run_auto(&p, &gl, &host_tree("nvidia"), items, &[], &[]);
        assert_code(&r, 64);
        assert!(r.stderr.contains("invalid --auto-tags item"), "{r:?}");
    }
    let r = run_auto(&p, &gl, &host_tree("nvidia"), "arch,cuda", &[], &[]);
    assert!(
        r.stderr
            .contains(r#"invalid --auto-tags item "cuda": expected arch, os, gpu or env:NAME"#),
        "{r:?}"
    );
    assert!(gl.world().lines().is_empty(), "{:?}", gl.world().lines());
    assert!(!p.exists("config.toml") && !p.exists("runner-data.json"));
}
