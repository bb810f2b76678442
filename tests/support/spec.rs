// SPDX-License-Identifier: MIT
//! GitLab's own word on what a runner request may be: the runner operations
//! of GitLab's published OpenAPI v2 spec (`doc/api/openapi/openapi_v2.yaml`,
//! the commit is under `source` in the fixture), and [`check`], which the
//! fake GitLab runs on every request before routing it.
//!
//! A request passes when its method and path are an operation of the spec,
//! its integer path parameters are integers, every parameter it sends is one
//! the operation declares (path, query, formData or a body-schema property;
//! Grape merges query and body, so either place will do), every required
//! parameter is there, and every parameter with an `enum` carries one of its
//! values. Header parameters and `private_token` are authentication.

use super::Request;
use serde_json::Value;
use std::sync::LazyLock;

const FIXTURE: &str = include_str!("../fixtures/gitlab-openapi-runners.json");

/// The spec's API prefix; the fake answers only below it.
pub const PREFIX: &str = "/api/v4";

/// The authentication parameter of the spec's `securityDefinitions`
/// (`access_token_query`); the header (`PRIVATE-TOKEN`) is not a parameter.
const AUTH_PARAMS: &[&str] = &["private_token"];

/// Parameters the spec marks as always required but GitLab requires only
/// when another parameter has a given value (Grape `given` blocks, which
/// OpenAPI v2 cannot say): (operation, parameter, given parameter, value).
/// `POST /user/runners` needs `group_id` only for a group runner and
/// `project_id` only for a project runner (lib/api/user_runners.rb).
const REQUIRED_ONLY_GIVEN: &[(&str, &str, &str, &str)] = &[
    (
        "postApiV4UserRunners",
        "group_id",
        "runner_type",
        "group_type",
    ),
    (
        "postApiV4UserRunners",
        "project_id",
        "runner_type",
        "project_type",
    ),
];

/// One segment of a spec path: `runners` or `{id}` (with the type the
/// operation gives the path parameter).
#[derive(Debug)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug)]
struct Param {
    name: String,
    required: bool,
    /// The `enum` of the parameter (or of its array items).
    allowed: Option<Vec<String>>,
    /// The property names of an `object` parameter.
    properties: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct Operation {
    pub method: String,
    /// As in the spec: `/api/v4/runners/{id}`.
    pub path: String,
    pub operation_id: String,
    segments: Vec<Segment>,
    /// Path parameters and their types.
    path_params: Vec<(String, String)>,
    /// Query, formData and body-schema parameters.
    params: Vec<Param>,
}

impl Operation {
    /// `"PUT /api/v4/runners/{id}"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Does a path split into `segs` fall under this operation's path?
    fn matches(&self, segs: &[&str]) -> bool {
        self.segments.len() == segs.len()
            && self.segments.iter().zip(segs).all(|(s, g)| match s {
                Segment::Literal(l) => l == g,
                Segment::Param(_) => !g.is_empty(),
            })
    }

    /// For ranking matches: literal segments beat parameters, leftmost first
    /// (`/runners/all` before `/runners/{id}`).
    fn rank(&self) -> Vec<bool> {
        self.segments
            .iter()
            .map(|s| matches!(s, Segment::Param(_)))
            .collect()
    }

    fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// The enum values of a parameter or property (or of its array items).
fn allowed(v: &Value) -> Option<Vec<String>> {
    v.get("enum")
        .or_else(|| v.get("items").and_then(|i| i.get("enum")))
        .and_then(Value::as_array)
        .map(|a| a.iter().map(scalar).collect())
}

fn properties(v: &Value) -> Option<Vec<String>> {
    v.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
}

/// A parameter value as text: strings as they are, other scalars in JSON.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse(fixture: &str) -> Vec<Operation> {
    let doc: Value = serde_json::from_str(fixture).expect("the spec fixture is JSON");
    let ops = doc["operations"]
        .as_array()
        .expect("the spec has operations");
    ops.iter()
        .map(|o| {
            let text = |k: &str| o[k].as_str().unwrap_or_else(|| panic!("{k} in {o}"));
            let path = text("path").to_string();
            let mut path_params = Vec::new();
            let mut params = Vec::new();
            for p in o["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap_or_default().to_string();
                let required = p["required"].as_bool().unwrap_or(false);
                match p["in"].as_str().unwrap_or_default() {
                    "path" => {
                        let ty = p["type"].as_str().unwrap_or("string").to_string();
                        path_params.push((name, ty));
                    }
                    "query" | "formData" => params.push(Param {
                        name,
                        required,
                        allowed: allowed(p),
                        properties: properties(p),
                    }),
                    "body" => {
                        let schema = &p["schema"];
                        let needed: Vec<&str> = schema["required"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                            params.push(Param {
                                name: name.clone(),
                                required: needed.contains(&name.as_str()),
                                allowed: allowed(prop),
                                properties: properties(prop),
                            });
                        }
                    }
                    // header parameters are authentication
                    _ => {}
                }
            }
            let segments = path
                .trim_matches('/')
                .split('/')
                .map(
                    |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => Segment::Param(name.to_string()),
                        None => Segment::Literal(s.to_string()),
                    },
                )
                .collect();
            Operation {
                method: text("method").to_ascii_uppercase(),
                path,
                operation_id: text("operationId").to_string(),
                segments,
                path_params,
                params,
            }
        })
        .collect()
}

/// The spec's operations, read once from the fixture.
pub fn operations() -> &'static [Operation] {
    static OPERATIONS: LazyLock<Vec<Operation>> = LazyLock::new(|| parse(FIXTURE));
    &OPERATIONS
}

/// The operation a request is for, or what is wrong with its method and path.
pub fn operation(method: &str, path: &str) -> Result<&'static Operation, String> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut candidates: Vec<&Operation> =
        operations().iter().filter(|o| o.matches(&segs)).collect();
    if candidates.is_empty() {
        return Err(format!(
            "{method} {path}: no such path in GitLab's API (not in its OpenAPI spec)"
        ));
    }
    candidates.sort_by_key(|o| o.rank());
    match candidates.iter().find(|o| o.method == method) {
        Some(o) => Ok(o),
        None => {
            let mut methods: Vec<String> = Vec::new();
            for o in &candidates {
                if !methods.contains(&o.method) {
                    methods.push(o.method.clone());
                }
            }
            Err(format!(
                "{method} {path}: GitLab's API has no {method} on this path (only {})",
                methods.join(", ")
            ))
        }
    }
}

/// Is `req` a request GitLab's API spec allows? `Err` names every problem.
pub fn check(req: &Request) -> Result<(), String> {
    let full = req.target.split('?').next().unwrap_or_default();
    let line = format!("{} {full}", req.method);
    if full != PREFIX && !full.starts_with(&format!("{PREFIX}/")) {
        return Err(format!("{line}: not below {PREFIX}, GitLab's API"));
    }
    let op = operation(&req.method, full)?;
    let mut problems = Vec::new();
    let segs: Vec<&str> = full.trim_matches('/').split('/').collect();
    for (seg, value) in op.segments.iter().zip(&segs) {
        let Segment::Param(name) = seg else { continue };
        let ty = op.path_params.iter().find(|(n, _)| n == name);
        if ty.is_some_and(|(_, t)| t == "integer") && value.parse::<i64>().is_err() {
            problems.push(format!("{name} is invalid (an integer in {})", op.line()));
        }
    }
    // a form key `info[name]` is property `name` of parameter `info`
    let mut sent: Vec<(&str, Option<&str>, &Value)> = Vec::new();
    for (key, value) in &req.params {
        match key.split_once('[') {
            Some((base, rest)) => {
                let inner = rest.split(']').next().filter(|s| !s.is_empty());
                sent.push((base, inner, value));
            }
            None => sent.push((key.as_str(), None, value)),
        }
    }
    for (name, inner, value) in &sent {
        if AUTH_PARAMS.contains(name) || op.path_params.iter().any(|(n, _)| n == name) {
            continue;
        }
        let Some(param) = op.param(name) else {
            problems.push(format!("{name} is not a parameter of {}", op.line()));
            continue;
        };
        if let Some(props) = &param.properties {
            let mut inner_names: Vec<&str> = inner.iter().copied().collect();
            if let Value::Object(m) = value {
                inner_names.extend(m.keys().map(String::as_str));
            }
            for i in inner_names {
                if !props.iter().any(|p| p == i) {
                    problems.push(format!("{name}[{i}] is not a parameter of {}", op.line()));
                }
            }
        }
        if let Some(allowed) = &param.allowed {
            let values: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                v => vec![v],
            };
            for v in values {
                let v = scalar(v);
                if !allowed.contains(&v) {
                    problems.push(format!(
                        "{name} does not have a valid value ('{v}'; {} allows {})",
                        op.line(),
                        allowed.join(", ")
                    ));
                }
            }
        }
    }
    let given = |name: &str| req.params.get(name).filter(|v| !v.is_null());
    for p in op.params.iter().filter(|p| p.required) {
        let condition = REQUIRED_ONLY_GIVEN
            .iter()
            .find(|(o, n, _, _)| *o == op.operation_id && *n == p.name);
        let required = match condition {
            Some((_, _, other, value)) => given(other).is_some_and(|v| scalar(v) == *value),
            None => true,
        };
        if required && given(&p.name).is_none() {
            problems.push(format!("{} is missing ({} requires it)", p.name, op.line()));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(format!("{line}: {}", problems.join("; "))),
    }
}
