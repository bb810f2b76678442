// SPDX-License-Identifier: MIT
//! The fake GitLab's checker against GitLab's own API spec
//! (tests/support/spec.rs, tests/fixtures/gitlab-openapi-runners.json).

use crate::support::fake_gitlab::{ADMIN_PAT, FakeGitlab, Request, World, spec};
use serde_json::{Value, json};

fn request(method: &str, target: &str, body: Value) -> Request {
    let Value::Object(body) = body else {
        panic!("a body is a JSON object")
    };
    let headers = vec![("PRIVATE-TOKEN".to_string(), "glpat-x".to_string())];
    Request::new(method, target, headers, body)
}

#[test]
fn the_spec_fixture_has_the_runner_operations() {
    let ops = spec::operations();
    assert!(ops.len() > 20, "{} operations", ops.len());
    for line in [
        "POST /api/v4/user/runners",
        "POST /api/v4/runners/verify",
        "GET /api/v4/runners/{id}",
        "POST /api/v4/runners/{id}/reset_authentication_token",
    ] {
        assert!(ops.iter().any(|o| o.line() == line), "{line}");
    }
}

/// One valid request for every route the fake serves, then what GitLab
/// would refuse.
#[test]
fn requests_are_checked_against_the_spec() {
    let ok: &[(&str, &str, Value)] = &[
        // every route of the fake (fake_gitlab.rs `route`)
        (
            "POST",
            "/api/v4/runners",
            json!({"token": "GR1348941x", "description": "d", "tag_list": "a,b",
                   "run_untagged": false, "locked": false, "access_level": "not_protected"}),
        ),
        (
            "POST",
            "/api/v4/runners",
            json!({"token": "t", "info": {"name": "gitlab-runner"}}),
        ),
        (
            "POST",
            "/api/v4/runners/verify",
            json!({"token": "t", "system_id": "s_1"}),
        ),
        (
            "POST",
            "/api/v4/runners/reset_authentication_token",
            json!({"token": "t"}),
        ),
        ("DELETE", "/api/v4/runners", json!({"token": "t"})),
        ("DELETE", "/api/v4/runners?token=t", json!({})),
        (
            "POST",
            "/api/v4/user/runners",
            json!({"runner_type": "instance_type", "tag_list": "a", "run_untagged": false}),
        ),
        (
            "POST",
            "/api/v4/user/runners",
            json!({"runner_type": "group_type", "group_id": 7}),
        ),
        (
            "POST",
            "/api/v4/user/runners",
            json!({"runner_type": "project_type", "project_id": "9"}),
        ),
        (
            "GET",
            "/api/v4/runners/all?type=instance_type&tag_list=a,b&per_page=100&page=2",
            json!({}),
        ),
        (
            "GET",
            "/api/v4/groups/7/runners?type=group_type&tag_list=a",
            json!({}),
        ),
        (
            "GET",
            "/api/v4/groups/my%2Fgroup/runners?status=online",
            json!({}),
        ),
        (
            "GET",
            "/api/v4/projects/9/runners?type=project_type&scope=specific",
            json!({}),
        ),
        ("GET", "/api/v4/runners/100", json!({})),
        (
            "PUT",
            "/api/v4/runners/100",
            json!({"description": "d", "tag_list": ["a", "b"]}),
        ),
        ("DELETE", "/api/v4/runners/100", json!({})),
        (
            "POST",
            "/api/v4/runners/100/reset_authentication_token",
            json!({}),
        ),
        // the access token as a query parameter is authentication
        (
            "GET",
            "/api/v4/runners/100?private_token=glpat-x",
            json!({}),
        ),
        // arrays in form encoding, and enum values in arrays
        (
            "GET",
            "/api/v4/runners/all?tag_list[]=a&tag_list[]=b",
            json!({}),
        ),
    ];
    for (method, target, body) in ok {
        let r = request(method, target, body.clone());
        assert_eq!(spec::check(&r), Ok(()), "{method} {target} {body}");
    }

    let refused: &[(&str, &str, Value, &str)] = &[
        // unknown paths
        (
            "GET",
            "/api/v4/runners/100/tokens",
            json!({}),
            "no such path",
        ),
        ("GET", "/api/v4/nothing", json!({}), "no such path"),
        (
            "POST",
            "/runners/verify",
            json!({"token": "t"}),
            "not below /api/v4",
        ),
        (
            "GET",
            "/api/v4/projects/9/runners/100",
            json!({}),
            "no GET on this path",
        ),
        // unknown methods
        (
            "PATCH",
            "/api/v4/runners/100",
            json!({}),
            "no PATCH on this path (only GET, PUT, DELETE)",
        ),
        (
            "GET",
            "/api/v4/runners/verify",
            json!({"token": "t"}),
            "id is invalid",
        ),
        (
            "PUT",
            "/api/v4/user/runners",
            json!({"runner_type": "instance_type"}),
            "no PUT on this path (only POST)",
        ),
        // undeclared parameters
        (
            "POST",
            "/api/v4/runners/verify",
            json!({"token": "t", "description": "d"}),
            "description is not a parameter of POST /api/v4/runners/verify",
        ),
        (
            "GET",
            "/api/v4/groups/7/runners?scope=specific",
            json!({}),
            "scope is not a parameter",
        ),
        (
            "PUT",
            "/api/v4/runners/100",
            json!({"token": "t"}),
            "token is not a parameter",
        ),
        (
            "POST",
            "/api/v4/runners",
            json!({"token": "t", "info": {"os": "linux"}}),
            "info[os] is not a parameter",
        ),
        (
            "POST",
            "/api/v4/runners/100/reset_authentication_token",
            json!({"token": "t"}),
            "token is not a parameter",
        ),
        // missing required parameters
        (
            "POST",
            "/api/v4/runners/verify",
            json!({"system_id": "s_1"}),
            "token is missing",
        ),
        ("DELETE", "/api/v4/runners", json!({}), "token is missing"),
        (
            "POST",
            "/api/v4/user/runners",
            json!({"description": "d"}),
            "runner_type is missing",
        ),
        (
            "POST",
            "/api/v4/user/runners",
            json!({"runner_type": "group_type"}),
            "group_id is missing",
        ),
        (
            "POST",
            "/api/v4/user/runners",
            json!({"runner_type": "project_type", "group_id": 7}),
            "project_id is missing",
        ),
        // values outside an enum
        (
            "GET",
            "/api/v4/runners/all?type=shared",
            json!({}),
            "type does not have a valid value ('shared'",
        ),
        (
            "POST",
            "/api/v4/user/runners",
            json!({"runner_type": "shared"}),
            "runner_type does not have a valid value",
        ),
        (
            "PUT",
            "/api/v4/runners/100",
            json!({"access_level": "protected"}),
            "access_level does not have a valid value",
        ),
        // a path parameter of the wrong type
        (
            "DELETE",
            "/api/v4/runners/node12",
            json!({}),
            "id is invalid",
        ),
    ];
    for (method, target, body, want) in refused {
        let r = request(method, target, body.clone());
        let problem = spec::check(&r).expect_err(&format!("{method} {target} {body}"));
        assert!(
            problem.contains(want),
            "{method} {target} {body}: {problem}"
        );
        assert!(
            problem.starts_with(&format!("{method} {}", target.split('?').next().unwrap())),
            "{problem}"
        );
    }
}

/// Send one HTTP/1.1 request to the fake: its status and body.
fn send(gl: &FakeGitlab, method: &str, target: &str, body: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gl.addr).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nPRIVATE-TOKEN: {ADMIN_PAT}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn the_fake_refuses_what_gitlab_would_not_accept_before_acting() {
    let mut world = World::default();
    let id = world.add_runner("node12-shell", &["node12"], true);
    let gl = FakeGitlab::start(world);
    let (status, body) = send(
        &gl,
        "PUT",
        &format!("/api/v4/runners/{id}"),
        r#"{"description":"renamed","token":"t"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let problem = body["error"].as_str().unwrap_or_default();
    assert_eq!(
        problem,
        format!("PUT /api/v4/runners/{id}: token is not a parameter of PUT /api/v4/runners/{{id}}"),
        "{body}"
    );
    let (status, body) = send(&gl, "GET", "/api/v4/runners/all?type=shared", "");
    assert_eq!(status, 400, "{body}");
    let (status, body) = send(&gl, "GET", &format!("/api/v4/runners/{id}"), "");
    assert_eq!(
        (status, &body["description"]),
        (200, &json!("node12-shell"))
    );
    {
        let w = gl.world();
        assert_eq!(w.requests.len(), 3, "refused requests are logged");
        assert_eq!(w.refused.len(), 2, "{:?}", w.refused);
        assert_eq!(w.refused[0], problem);
    }
    // a fake that refused anything fails the test that used it
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(gl)));
    let panic = dropped.expect_err("dropping the fake panics");
    let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains(problem), "{text}");
}
