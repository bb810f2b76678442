// SPDX-License-Identifier: MIT
//! A fake GitLab for tests and `make demo`: a std-only HTTP/1.1 server on
//! 127.0.0.1 that keeps real state (runners, tokens, expiry, managers) and
//! answers the runner endpoints as GitLab does
//! (https://docs.gitlab.com/api/runners/, https://docs.gitlab.com/api/users/#create-a-runner-linked-to-a-user),
//! with a request log and scripted faults. Every request is checked against
//! GitLab's own API spec first ([`spec::check`]): one GitLab would not
//! accept is answered 400 `{"error": problem}` and fails the test.
#![allow(dead_code)]

use gitlab_runner_auth::clock;

/// GitLab's API spec, which every request must pass before it is routed.
#[path = "spec.rs"]
pub mod spec;

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Runner {
    pub id: u64,
    pub token: String,
    pub token_expires_at: Option<i64>,
    pub description: String,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    pub runner_type: String,
    /// The group (group_type) or project (project_type) the runner belongs to.
    pub owner: Option<u64>,
    pub created_at: i64,
    pub contacted_at: Option<i64>,
    /// `system_id`s of the runner managers (`<legacy>` without one).
    pub managers: Vec<String>,
    /// Created through `POST /user/runners` (token family `glrt-`).
    pub created_by_user: bool,
}

#[derive(Debug, Clone)]
pub struct Pat {
    pub scopes: Vec<String>,
    pub admin: bool,
    pub expired: bool,
    pub revoked: bool,
    /// `expires_at` as GitLab shows it: a date, `None` for never.
    pub expires_at: Option<String>,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: `/api/v4/runners/all?page=2`.
    pub target: String,
    /// The path below `/api/v4`, without the query.
    pub path: String,
    pub query: String,
    /// Query, form and JSON parameters merged.
    pub params: Map<String, Value>,
    pub headers: Vec<(String, String)>,
    /// When the fake read it.
    pub at: std::time::Instant,
}

impl Request {
    /// A request for `target` (path and query) with `body`'s parameters
    /// (decoded JSON or form) merged over the query's.
    pub fn new(
        method: &str,
        target: &str,
        headers: Vec<(String, String)>,
        body: Map<String, Value>,
    ) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut params = Map::new();
        merge_form(&mut params, query);
        params.extend(body);
        Request {
            method: method.to_string(),
            target: target.to_string(),
            path: path.strip_prefix(spec::PREFIX).unwrap_or(path).to_string(),
            query: query.to_string(),
            params,
            headers,
            at: std::time::Instant::now(),
        }
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params.get(name)
    }
    /// `GET /personal_access_tokens/self`: the access token's own record.
    pub fn is_token_read(&self) -> bool {
        self.method == "GET" && self.path == "/personal_access_tokens/self"
    }

    /// `"POST /runners/verify"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer with this status, `Retry-After` (if any) and a JSON error body.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Answer with this raw status, content type and body.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// The database-migration backoff every runner route may answer
    /// (`check_if_backoff_required!`): 429
    /// `{"message": "Executing database migrations. Please retry later."}`
    /// with this `Retry-After` (GitLab sends 60).
    Backoff(u64),
    /// Close the connection without answering.
    Drop,
    /// Wait, then answer normally.
    Delay(Duration),
}

/// Where in the handling of a request a [`Hook`] fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// On arrival, before GitLab acts on it.
    Arrival,
    /// After GitLab acted, before the answer is sent.
    Acted,
    /// After the answer was sent.
    Answered,
}

/// What the fake does with a request after a [`Hook`] fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Go on as usual.
    Continue,
    /// Close the connection: no action (at `Arrival`) or no answer.
    Drop,
    /// Answer with this status and a JSON error instead (after `Acted`:
    /// GitLab acted, then a proxy timed out, say).
    Status(u16),
}

/// The process a [`Hook`] signals, known once it is spawned (0 until
/// then: the hook waits for it, so a hook can be set before the spawn).
pub type Pid = Arc<std::sync::atomic::AtomicU32>;

/// When runner request number `nth` (as `World::lines` counts, from 0)
/// reaches `phase`: send `signal` (`"KILL"`, `"TERM"`) to the process, if
/// any, then do `then`. SIGKILL is waited for: the process is dead before
/// the fake goes on.
#[derive(Debug, Clone)]
pub struct Hook {
    pub nth: usize,
    pub phase: Phase,
    pub signal: Option<(Pid, &'static str)>,
    pub then: Then,
}

impl Hook {
    fn fire(&self) {
        let Some((pid, signal)) = &self.signal else {
            return;
        };
        // bounded: 5 s for the test to record the pid
        let mut n = 0;
        let pid = loop {
            let p = pid.load(Ordering::SeqCst);
            if p != 0 || n == 5000 {
                break p;
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(1));
        };
        if pid == 0 {
            return;
        }
        let signal = *signal;
        let _ = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status();
        if signal == "KILL" {
            // bounded: 500 polls of 4 ms
            for _ in 0..500 {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
                let dead = stat.map_or(true, |s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X']))
                });
                if dead {
                    return;
                }
                std::thread::sleep(Duration::from_millis(4));
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// Matches requests whose path starts with this (e.g. `/runners/verify`).
    pub path: String,
    pub method: Option<String>,
    pub kind: FaultKind,
    pub times: usize,
}

/// One Rack::Attack throttle (`Gitlab::RackAttack`): at most `limit`
/// requests of one discriminator in a fixed period. The fake has one client
/// address, 127.0.0.1, so per IP is per fake; the periods are counted from
/// the first request the throttle sees (Rack::Attack counts them from the
/// epoch: the same, shifted, and a test's figures do not depend on the
/// second it starts at). Every matching request is counted, the refused
/// ones too, as Rack::Attack's cache counter does.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// `RateLimit-Name`: `throttle_unauthenticated_api`, …
    pub name: String,
    pub limit: usize,
    pub period: Duration,
    /// Counts only unauthenticated requests (runner-token calls and
    /// registration-token calls, no `PRIVATE-TOKEN`).
    pub unauthenticated: bool,
    /// `POST /runners` is not counted (GitLab.com's per-IP limit).
    pub exempt_register: bool,
    /// Unthrottled answers carry the `RateLimit-*` headers too (flag
    /// `rate_limiting_headers_for_unthrottled_requests`, gitlab MR !209485).
    pub headers_unthrottled: bool,
    observed: usize,
    period_index: u64,
    since: Option<std::time::Instant>,
}

impl Throttle {
    pub fn new(name: &str, limit: usize, period: Duration) -> Throttle {
        Throttle {
            name: name.into(),
            limit,
            period,
            unauthenticated: true,
            exempt_register: false,
            headers_unthrottled: false,
            observed: 0,
            period_index: 0,
            since: None,
        }
    }

    fn matches(&self, req: &Request) -> bool {
        let authenticated = req.header("private-token").is_some()
            || req.header("authorization").is_some()
            || req.param("private_token").is_some();
        !(self.unauthenticated && authenticated
            || self.exempt_register && req.method == "POST" && req.path == "/runners")
    }

    /// Count `req`: whether it is over the limit, and the headers to send
    /// (none for an unthrottled answer unless `headers_unthrottled`).
    fn count(&mut self, req: &Request) -> Option<(bool, Vec<(String, String)>)> {
        if !self.matches(req) {
            return None;
        }
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        let period = self.period.as_secs().max(1);
        let elapsed = since.elapsed().as_secs();
        let index = elapsed / period;
        if index != self.period_index {
            self.period_index = index;
            self.observed = 0;
        }
        self.observed += 1;
        let over = self.observed > self.limit;
        if !over && !self.headers_unthrottled {
            return Some((false, Vec::new()));
        }
        // Gitlab::RackAttack.throttled_response_headers
        let retry_after = period - elapsed % period;
        let reset = clock::now() + retry_after as i64;
        let per_minute = (self.limit as u64 * 60).div_ceil(period);
        let mut headers: Vec<(String, String)> = vec![
            ("RateLimit-Name".into(), self.name.clone()),
            ("RateLimit-Limit".into(), per_minute.to_string()),
            ("RateLimit-Observed".into(), self.observed.to_string()),
            (
                "RateLimit-Remaining".into(),
                self.limit.saturating_sub(self.observed).to_string(),
            ),
            ("RateLimit-Reset".into(), reset.to_string()),
            ("RateLimit-ResetTime".into(), http_date(reset)),
        ];
        if over {
            headers.push(("Retry-After".into(), retry_after.to_string()));
        }
        Some((over, headers))
    }
}

/// Unix seconds as an RFC 2616 date: `Tue, 05 Jan 2021 11:00:00 GMT`.
pub fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // clock::format gives YYYY-MM-DDTHH:MM:SSZ
    let iso = clock::format(secs);
    let month: usize = iso[5..7].parse().unwrap_or(1);
    format!(
        "{}, {} {} {} {} GMT",
        DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize],
        &iso[8..10],
        MONTHS[month - 1],
        &iso[0..4],
        &iso[11..19]
    )
}

/// Puma behind Workhorse on a self-managed GitLab with no throttles (the
/// default): `slots` (workers × threads) requests are served at a time,
/// each taking `service`; the others queue. Workhorse answers 502 to a
/// request still queued when `proxy_timeout` has passed since it arrived,
/// but the request stays in Puma's queue and is served later, its answer
/// dropped: a create behind a 502 may have made a runner.
#[derive(Debug, Clone)]
pub struct Puma {
    pub slots: usize,
    pub service: Duration,
    pub proxy_timeout: Duration,
    pool: Arc<(Mutex<usize>, std::sync::Condvar)>,
}

impl Puma {
    pub fn new(slots: usize, service: Duration, proxy_timeout: Duration) -> Puma {
        Puma {
            slots,
            service,
            proxy_timeout,
            pool: Arc::new((Mutex::new(0), std::sync::Condvar::new())),
        }
    }

    /// Wait for a free slot, at most `limit` (bounded: a test's fake
    /// never waits forever): `false` when it passed first.
    fn acquire(&self, limit: Duration) -> bool {
        let (lock, cv) = &*self.pool;
        let busy = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (mut busy, timeout) = cv
            .wait_timeout_while(busy, limit, |b| *b >= self.slots)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() && *busy >= self.slots {
            return false;
        }
        *busy += 1;
        true
    }

    fn release(&self) {
        let (lock, cv) = &*self.pool;
        let mut busy = lock.lock().unwrap_or_else(|e| e.into_inner());
        *busy = busy.saturating_sub(1);
        cv.notify_one();
    }
}

/// The fake's whole state.
#[derive(Debug)]
pub struct World {
    pub runners: BTreeMap<u64, Runner>,
    next_id: u64,
    serial: u64,
    pub instance_registration_token: String,
    /// `allow_runner_registration_token` (disabled by default since 17.0).
    pub registration_enabled: bool,
    pub pats: HashMap<String, Pat>,
    /// Token lifetime in seconds (`None`: tokens never expire).
    pub token_interval: Option<i64>,
    /// Prefix of tokens of registered (legacy) runners: `""`, `"t1_"` or `"glrtr-"`.
    pub legacy_prefix: String,
    /// Answer verify with the plain text `200` of GitLab < 15.10.
    pub legacy_verify: bool,
    /// Send `token` in `GET /runners/:id` as GitLab < 13.0 did.
    pub details_with_token: bool,
    /// No `POST /runners/:id/reset_authentication_token` (GitLab < 14.3).
    pub no_reset_by_id: bool,
    /// No `POST /user/runners` (GitLab < 15.11).
    pub no_user_runners: bool,
    /// No `GET /personal_access_tokens/self` (GitLab < 15.5).
    pub no_token_self: bool,
    /// No runner token expiry (GitLab < 15.3/15.5): answers carry no
    /// `token_expires_at` key, and there is no
    /// `POST /runners/reset_authentication_token` (a token that never
    /// expires needs no self-rotation).
    pub no_token_expiry: bool,
    /// No runner managers (GitLab < 16.0, `ci_runner_machines`): verify
    /// records none.
    pub no_managers: bool,
    /// The partition prefix `t1_`/`t2_`/`t3_` (by runner type) after
    /// `glrt-`, or alone for registered runners (gitlab MR !168017).
    pub partition: bool,
    /// Routable tokens `glrt(r)-<payload>.01.<len><crc>` (feature flag
    /// `routable_runner_token`, gitlab MR !170634).
    pub routable: bool,
    /// An instance prefix before every runner token (`mycorp-`; feature
    /// flag `custom_prefix_for_all_token_types`, gitlab MR !206149).
    pub instance_prefix: String,
    /// GitLab.com's `unauthenticated_traffic_per_ip`: this many
    /// unauthenticated requests (runner-token calls; `POST /runners` is
    /// exempt) in the period, then 429 with `Retry-After` (what is left of
    /// the hour) (gitlab MR !260046).
    pub unauthenticated_budget: Option<usize>,
    /// How many unauthenticated requests the budget counted.
    pub unauthenticated_seen: usize,
    /// When the budget's period (an hour) began.
    unauthenticated_since: Option<std::time::Instant>,
    pub requests: Vec<Request>,
    pub faults: VecDeque<Fault>,
    /// Every runner token ever issued.
    pub issued: Vec<String>,
    /// Signals sent at given requests (crash tests).
    pub hooks: Vec<Hook>,
    /// Added before every answer (a slow GitLab, or a long way to it).
    pub latency: Option<Duration>,
    /// At most this many requests a second; the rest are answered 429 with
    /// a `Retry-After` that says when there is room again.
    pub rate_limit: Option<u32>,
    /// The rate limiter's clock: when the next request has a slot (seconds).
    next_slot: f64,
    /// How many 429s the rate limiter sent.
    pub throttled: usize,
    /// Rack::Attack throttles in fixed periods ([`Throttle`]): every one
    /// that matches a request counts it; the first over its limit answers
    /// 429 with the seven headers of gitlab MR !50833.
    pub throttles: Vec<Throttle>,
    /// Puma: a bounded pool of workers × threads with a queue, and
    /// Workhorse's 502 once its proxy timeout passes ([`Puma`]).
    pub puma: Option<Puma>,
    /// How many 502s Workhorse (the `puma` model) sent.
    pub bad_gateway: usize,
    /// Database migrations for this long from the first request: every
    /// runner route (`check_if_backoff_required!`) answers 429 `Executing
    /// database migrations. Please retry later.` with `Retry-After: n`.
    pub migrations: Option<(Duration, u64)>,
    migrations_since: Option<std::time::Instant>,
    /// Requests refused as not in GitLab's API spec ([`spec::check`]),
    /// with the problem: the fake panics when dropped with any.
    pub refused: Vec<String>,
    /// Keep connections open for further requests (HTTP/1.1 keep-alive, as
    /// GitLab's nginx does); by default every answer closes its connection.
    pub keep_alive: bool,
    /// A hostile GitLab: the next runner tokens it issues (and stores, so
    /// they verify), before its own.
    pub next_tokens: VecDeque<String>,
    /// A hostile GitLab: answers to requests whose `METHOD /path` line
    /// starts with the first get the second's keys set (an id out of range).
    pub answer_patch: Vec<(String, Map<String, Value>)>,
    /// A hostile GitLab: the runner lists never end, each page
    /// `(entries, description)`, every entry with a new id.
    pub endless_list: Option<(usize, String)>,
}

pub const REGISTRATION_TOKEN: &str = "GR1348941Zx9ypQmFv3sW2nRtK8a";
pub const ADMIN_PAT: &str = "glpat-AdminAdminAdmin0123456789";

impl Default for World {
    fn default() -> Self {
        let mut pats = HashMap::new();
        pats.insert(
            ADMIN_PAT.to_string(),
            Pat {
                scopes: vec!["api".into()],
                admin: true,
                expired: false,
                revoked: false,
                expires_at: None,
            },
        );
        World {
            runners: BTreeMap::new(),
            next_id: 100,
            serial: 0,
            instance_registration_token: REGISTRATION_TOKEN.into(),
            registration_enabled: true,
            pats,
            token_interval: None,
            legacy_prefix: String::new(),
            legacy_verify: false,
            details_with_token: false,
            no_reset_by_id: false,
            no_user_runners: false,
            no_token_self: false,
            no_token_expiry: false,
            no_managers: false,
            partition: false,
            routable: false,
            instance_prefix: String::new(),
            unauthenticated_budget: None,
            unauthenticated_seen: 0,
            unauthenticated_since: None,
            requests: Vec::new(),
            faults: VecDeque::new(),
            issued: Vec::new(),
            hooks: Vec::new(),
            latency: None,
            rate_limit: None,
            next_slot: 0.0,
            throttled: 0,
            throttles: Vec::new(),
            puma: None,
            bad_gateway: 0,
            migrations: None,
            migrations_since: None,
            refused: Vec::new(),
            keep_alive: false,
            next_tokens: VecDeque::new(),
            answer_patch: Vec::new(),
            endless_list: None,
        }
    }
}

fn now() -> i64 {
    clock::now()
}

/// `n` in base 36, `width` digits (lower case, zero-padded).
fn to_base36(mut n: u64, width: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for d in out.iter_mut().rev() {
        *d = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap()
}

/// A routable token's payload: base64url (no padding) of the routing keys
/// (`o` organization, `g`/`p` owner, `c` cell, `t` partition) and 16
/// random bytes (here `random`'s 20 hex digits), as
/// `lib/authn/token_field/generator/routable_token.rb` lays it out.
fn routable_payload(runner_type: &str, random: &str) -> String {
    let owner = if runner_type == "project_type" {
        'p'
    } else {
        'g'
    };
    let partition = match runner_type {
        "group_type" => 2,
        "project_type" => 3,
        _ => 1,
    };
    let text = format!("c:1\no:1\n{owner}:42\nt:{partition}\n{random}");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn iso(t: i64) -> String {
    // GitLab sends milliseconds.
    clock::format(t).replace('Z', ".000Z")
}

impl World {
    fn new_token(&mut self, user: bool, runner_type: &str) -> String {
        self.serial += 1;
        if let Some(t) = self.next_tokens.pop_front() {
            self.issued.push(t.clone());
            return t;
        }
        let r = std::collections::hash_map::RandomState::new();
        use std::hash::{BuildHasher, Hasher};
        let mut h = r.build_hasher();
        h.write_u64(self.serial);
        let body = format!("{:016x}{:04x}", h.finish(), self.serial % 0x10000);
        let part = match (self.partition, runner_type) {
            (false, _) => "",
            (true, "group_type") => "t2_",
            (true, "project_type") => "t3_",
            (true, _) => "t1_",
        };
        let token = if self.routable {
            // the partition and routing keys are in the payload (MR !183554)
            let payload = routable_payload(runner_type, &body);
            let family = if user { "glrt-" } else { "glrtr-" };
            let len = to_base36(payload.len() as u64, 2);
            let crc = to_base36(h.finish() % 36u64.pow(7), 7);
            format!("{family}{payload}.01.{len}{crc}")
        } else if user {
            format!("glrt-{part}{body}")
        } else if self.legacy_prefix.is_empty() {
            format!("{part}{body}")
        } else {
            format!("{}{body}", self.legacy_prefix)
        };
        let token = format!("{}{token}", self.instance_prefix);
        self.issued.push(token.clone());
        token
    }

    /// Every secret the fake knows: runner tokens, PATs, registration token.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = self.issued.clone();
        s.extend(self.pats.keys().cloned());
        s.push(self.instance_registration_token.clone());
        s
    }

    fn expiry(&self) -> Option<i64> {
        self.token_interval
            .filter(|_| !self.no_token_expiry)
            .map(|i| now() + i)
    }

    /// A token answer (`RunnerRegistrationDetails` with `id`, else
    /// `ResetTokenResult`): no `token_expires_at` key before expiry existed.
    fn token_answer(&self, id: Option<u64>, token: &str, exp: Option<i64>) -> Value {
        let mut v = json!({ "token": token });
        if let Some(id) = id {
            v["id"] = id.into();
        }
        if !self.no_token_expiry {
            v["token_expires_at"] = exp.map(iso).into();
        }
        v
    }

    /// Add a runner as if registered earlier; returns its id.
    pub fn add_runner(&mut self, description: &str, tags: &[&str], user: bool) -> u64 {
        let tags = tags.iter().map(|s| s.to_string()).collect();
        self.new_runner(description, tags, false, "instance_type", user)
    }

    /// Store a new runner with a fresh token; returns its id.
    fn new_runner(
        &mut self,
        description: &str,
        tags: Vec<String>,
        run_untagged: bool,
        runner_type: &str,
        user: bool,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let token = self.new_token(user, runner_type);
        let token_expires_at = self.expiry();
        self.runners.insert(
            id,
            Runner {
                id,
                token,
                token_expires_at,
                description: description.into(),
                tags,
                run_untagged,
                runner_type: runner_type.into(),
                owner: None,
                created_at: now(),
                contacted_at: None,
                managers: Vec::new(),
                created_by_user: user,
            },
        );
        id
    }

    /// The runner a runner token authenticates: must exist and not be expired.
    fn by_token(&self, token: &str) -> Option<u64> {
        self.runners
            .values()
            .find(|r| r.token == token && r.token_expires_at.is_none_or(|e| e >= now()))
            .map(|r| r.id)
    }

    /// Give runner `id` a fresh token, as if something else rotated it.
    pub fn rotate(&mut self, id: u64) -> String {
        let user = self.runners[&id].created_by_user;
        let runner_type = self.runners[&id].runner_type.clone();
        let token = self.new_token(user, &runner_type);
        let exp = self.expiry();
        let r = self.runners.get_mut(&id).unwrap();
        r.token = token.clone();
        r.token_expires_at = exp;
        token
    }

    pub fn token_of(&self, id: u64) -> String {
        self.runners[&id].token.clone()
    }

    /// The requests seen, as `"METHOD /path"` lines.
    /// The runner requests seen, as `"METHOD /path"` lines: the reads of
    /// an access token's own record (`GET /personal_access_tokens/self`)
    /// are left out (see `token_reads`).
    pub fn lines(&self) -> Vec<String> {
        self.runner_requests().map(Request::line).collect()
    }

    /// The requests but `GET /personal_access_tokens/self`.
    pub fn runner_requests(&self) -> impl Iterator<Item = &Request> {
        self.requests.iter().filter(|q| !q.is_token_read())
    }

    /// How many `GET /personal_access_tokens/self` were made.
    pub fn token_reads(&self) -> usize {
        self.requests.iter().filter(|q| q.is_token_read()).count()
    }

    pub fn fault(&mut self, method: Option<&str>, path: &str, kind: FaultKind, times: usize) {
        self.faults.push_back(Fault {
            path: path.into(),
            method: method.map(String::from),
            kind,
            times,
        });
    }

    /// The rate limiter: `None` when the request has a slot, else the
    /// seconds until there is room again (for `Retry-After`).
    fn throttle(&mut self) -> Option<u64> {
        let rate = f64::from(self.rate_limit?);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let slot = self.next_slot.max(t);
        // a burst of up to one second's worth is admitted at once
        if slot - t >= 1.0 {
            self.throttled += 1;
            return Some((slot - t).ceil() as u64);
        }
        self.next_slot = slot + 1.0 / rate;
        None
    }

    /// GitLab.com's per-IP budget of unauthenticated requests: `None`
    /// when `req` is authenticated, exempt (`POST /runners`) or within the
    /// budget, else the seconds left in the period (for `Retry-After`).
    fn unauthenticated_throttle(&mut self, req: &Request) -> Option<u64> {
        let budget = self.unauthenticated_budget?;
        let authenticated = req.header("private-token").is_some()
            || req.header("authorization").is_some()
            || req.param("private_token").is_some();
        if authenticated || (req.method == "POST" && req.path == "/runners") {
            return None;
        }
        let since = *self
            .unauthenticated_since
            .get_or_insert_with(std::time::Instant::now);
        self.unauthenticated_seen += 1;
        if self.unauthenticated_seen <= budget {
            return None;
        }
        self.throttled += 1;
        Some(3600u64.saturating_sub(since.elapsed().as_secs()).max(1))
    }

    fn take_fault(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let i = self.faults.iter().position(|f| {
            path.starts_with(&f.path) && f.method.as_deref().is_none_or(|m| m == method)
        })?;
        let f = &mut self.faults[i];
        let kind = f.kind.clone();
        f.times -= 1;
        if f.times == 0 {
            self.faults.remove(i);
        }
        Some(kind)
    }
}

/// An HTTP answer.
struct Answer {
    status: u16,
    content_type: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn json_answer(status: u16, v: Value) -> Answer {
    Answer {
        status,
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: v.to_string(),
    }
}

fn message(status: u16, msg: &str) -> Answer {
    json_answer(status, json!({ "message": msg }))
}

fn no_content() -> Answer {
    Answer {
        status: 204,
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: String::new(),
    }
}

pub struct FakeGitlab {
    pub addr: std::net::SocketAddr,
    /// The CA that signed the server certificate (PEM), when serving TLS.
    pub ca_pem: Option<String>,
    world: Arc<Mutex<World>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeGitlab {
    pub fn start(world: World) -> FakeGitlab {
        Self::start_on("127.0.0.1:0", world, false)
    }

    /// Serve HTTPS with a certificate for `127.0.0.1` and `localhost`
    /// signed by a CA made for this server (`ca_pem`).
    pub fn start_tls(world: World) -> FakeGitlab {
        Self::start_on("127.0.0.1:0", world, true)
    }

    pub fn start_on(bind: &str, world: World, tls: bool) -> FakeGitlab {
        let listener = TcpListener::bind(bind).expect("bind the fake GitLab");
        let addr = listener.local_addr().unwrap();
        let world = Arc::new(Mutex::new(world));
        let stop = Arc::new(AtomicBool::new(false));
        let (tls_config, ca_pem) = match tls {
            true => {
                let (config, ca) = tls_server_config();
                (Some(config), Some(ca))
            }
            false => (None, None),
        };
        let (w, s) = (world.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let w = w.clone();
                let tls_config = tls_config.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = conn.set_nodelay(true);
                    let _ = match tls_config {
                        Some(c) => match rustls::ServerConnection::new(c) {
                            Ok(server) => serve(rustls::StreamOwned::new(server, conn), &w),
                            Err(_) => Ok(()),
                        },
                        None => serve(conn, &w),
                    };
                });
            }
        });
        FakeGitlab {
            addr,
            ca_pem,
            world,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (or `https://`)
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeGitlab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let refused = std::mem::take(&mut self.world().refused);
        if !refused.is_empty() && !std::thread::panicking() {
            panic!(
                "the fake GitLab refused requests not in GitLab's API spec:\n{}",
                refused.join("\n")
            );
        }
    }
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Merge `a=1&b[]=2` pairs into `params` (`x[]` keys become arrays).
fn merge_form(params: &mut Map<String, Value>, text: &str) {
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (url_decode(k), url_decode(v));
        if let Some(base) = k.strip_suffix("[]") {
            let entry = params.entry(base.to_string()).or_insert_with(|| json!([]));
            if let Value::Array(a) = entry {
                a.push(Value::String(v));
            }
        } else {
            params.insert(k, Value::String(v));
        }
    }
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it.
fn tls_server_config() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake GitLab test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der_key)
        .unwrap();
    (Arc::new(config), ca.pem())
}

fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let ctype = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let mut params = Map::new();
    if ctype.starts_with("application/json") && !body.is_empty() {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&body) {
            params = m;
        }
    } else if ctype.starts_with("application/x-www-form-urlencoded") {
        merge_form(&mut params, &String::from_utf8_lossy(&body));
    }
    Ok(Some(Request::new(&method, &target, headers, params)))
}

fn write_answer(
    stream: &mut impl Write,
    a: &Answer,
    request_id: Option<&str>,
    keep_alive: bool,
) -> std::io::Result<()> {
    let reason = match a.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        a.status,
        a.content_type,
        a.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if let Some(id) = request_id {
        head.push_str(&format!("X-Request-Id: {id}\r\n"));
    }
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // one write, as a server does: head and body in separate segments
    // would meet Nagle and a delayed ACK (40 ms) on the way
    head.push_str(&a.body);
    stream.write_all(head.as_bytes())?;
    stream.flush()
}

/// Answer the requests of one connection: one, or with `keep_alive` as
/// many as the client sends.
fn serve(stream: impl Read + Write, world: &Mutex<World>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    while serve_one(&mut reader, world)? {}
    Ok(())
}

/// Answer one request; whether the connection stays open for another.
fn serve_one<S: Read + Write>(
    reader: &mut BufReader<S>,
    world: &Mutex<World>,
) -> std::io::Result<bool> {
    let Some(req) = read_request(reader)? else {
        return Ok(false);
    };
    let keep_alive = world.lock().unwrap_or_else(|e| e.into_inner()).keep_alive
        && !req
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
    let stream = reader.get_mut();
    let request_id = req.header("x-request-id").map(String::from);
    let (fault, hook, latency, throttled, limited, rate_headers, puma, migrating) = {
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        w.requests.push(req.clone());
        // GitLab itself would refuse it (or do something else with it)
        if let Err(problem) = spec::check(&req) {
            w.refused.push(problem.clone());
            drop(w);
            let a = json_answer(400, json!({ "error": problem }));
            return write_answer(stream, &a, request_id.as_deref(), keep_alive).map(|_| keep_alive);
        }
        // hooks count the runner requests (as `lines()` shows them)
        let nth = w.runner_requests().count().wrapping_sub(1);
        let hook = if req.is_token_read() {
            None
        } else {
            w.hooks
                .iter()
                .position(|h| h.nth == nth)
                .map(|i| w.hooks.remove(i))
        };
        let throttled = match w.throttle() {
            Some(s) => Some((s, None)),
            None => w.unauthenticated_throttle(&req).map(|s| {
                let seen = w.unauthenticated_seen;
                (s, w.unauthenticated_budget.map(|b| (b, seen)))
            }),
        };
        // every matching throttle counts the request; the first one over
        // its limit answers, else the first with headers lends them
        let mut limited: Option<Vec<(String, String)>> = None;
        let mut migrating: Option<Answer> = None;
        let mut rate_headers = Vec::new();
        for t in w.throttles.iter_mut() {
            if let Some((over, headers)) = t.count(&req) {
                if over && limited.is_none() {
                    limited = Some(headers);
                } else if rate_headers.is_empty() {
                    rate_headers = headers;
                }
            }
        }
        if limited.is_none()
            && let Some((window, retry_after)) = w.migrations
            && matches!(
                req.path.as_str(),
                "/runners" | "/runners/verify" | "/runners/reset_authentication_token"
            )
            && w.migrations_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                < window
        {
            let mut a = message(429, "Executing database migrations. Please retry later.");
            a.headers
                .push(("Retry-After".into(), retry_after.to_string()));
            limited = Some(a.headers.clone());
            migrating = Some(a);
        }
        if limited.is_some() {
            w.throttled += 1;
        }
        (
            w.take_fault(&req.method, &req.path),
            hook,
            w.latency,
            throttled,
            limited,
            rate_headers,
            w.puma.clone(),
            migrating,
        )
    };
    if let Some(a) = migrating {
        return write_answer(stream, &a, request_id.as_deref(), keep_alive).map(|_| keep_alive);
    }
    if let Some(headers) = limited {
        let a = Answer {
            status: 429,
            content_type: "text/plain".into(),
            headers,
            body: "Retry later\n".into(),
        };
        return write_answer(stream, &a, request_id.as_deref(), keep_alive).map(|_| keep_alive);
    }
    if let Some((seconds, budget)) = throttled {
        let mut a = message(429, "429 Too Many Requests");
        if let Some((limit, w_seen)) = budget {
            // Rack::Attack's answer (gitlab MR !50833)
            a.content_type = "text/plain".into();
            a.body = "Retry later\n".into();
            let reset = clock::now() + seconds as i64;
            for (k, v) in [
                (
                    "RateLimit-Name",
                    "unauthenticated_traffic_per_ip".to_string(),
                ),
                // the hour's budget scaled to a minute, as GitLab sends it
                ("RateLimit-Limit", (limit * 60).div_ceil(3600).to_string()),
                ("RateLimit-Observed", w_seen.to_string()),
                ("RateLimit-Remaining", "0".to_string()),
                ("RateLimit-Reset", reset.to_string()),
                ("RateLimit-ResetTime", clock::format(reset)),
            ] {
                a.headers.push((k.into(), v));
            }
        }
        a.headers.push(("Retry-After".into(), seconds.to_string()));
        return write_answer(stream, &a, request_id.as_deref(), keep_alive).map(|_| keep_alive);
    }
    if let Some(d) = latency {
        std::thread::sleep(d);
    }
    let mut gave_up = false;
    if let Some(p) = &puma {
        if !p.acquire(p.proxy_timeout) {
            // Workhorse gives up; Puma still has the request queued
            world.lock().unwrap_or_else(|e| e.into_inner()).bad_gateway += 1;
            let a = Answer {
                status: 502,
                content_type: "text/plain".into(),
                headers: Vec::new(),
                body: "GitLab is not responding\n".into(),
            };
            write_answer(stream, &a, request_id.as_deref(), false)?;
            if !p.acquire(Duration::from_secs(120)) {
                return Ok(false);
            }
            gave_up = true;
        }
        std::thread::sleep(p.service);
    }
    // released however the request ends
    struct Slot<'a>(Option<&'a Puma>);
    impl Drop for Slot<'_> {
        fn drop(&mut self) {
            if let Some(p) = self.0 {
                p.release();
            }
        }
    }
    let _slot = Slot(puma.as_ref());
    let fires = |phase: Phase| hook.as_ref().filter(|h| h.phase == phase);
    if let Some(h) = fires(Phase::Arrival) {
        h.fire();
        match h.then {
            Then::Drop => return Ok(false),
            Then::Status(s) => {
                let a = message(s, &format!("{s} Error"));
                return write_answer(stream, &a, request_id.as_deref(), keep_alive)
                    .map(|_| keep_alive);
            }
            Then::Continue => {}
        }
    }
    let answer = match fault {
        Some(FaultKind::Drop) => return Ok(false),
        Some(FaultKind::Backoff(seconds)) => {
            let mut a = message(429, "Executing database migrations. Please retry later.");
            a.headers.push(("Retry-After".into(), seconds.to_string()));
            a
        }
        Some(FaultKind::Status {
            status,
            retry_after,
        }) => {
            let mut a = if status == 429 {
                Answer {
                    status,
                    content_type: "text/plain".into(),
                    headers: Vec::new(),
                    body: "Retry later\n".into(),
                }
            } else {
                message(status, &format!("{status} Internal Server Error"))
            };
            if let Some(s) = retry_after {
                a.headers.push(("Retry-After".into(), s.to_string()));
            }
            a
        }
        Some(FaultKind::Raw {
            status,
            content_type,
            body,
        }) => Answer {
            status,
            content_type,
            headers: Vec::new(),
            body,
        },
        Some(FaultKind::Delay(d)) => {
            std::thread::sleep(d);
            route(&req, world)
        }
        None => route(&req, world),
    };
    let mut answer = match fires(Phase::Acted) {
        Some(h) => {
            h.fire();
            match h.then {
                Then::Drop => return Ok(false),
                Then::Status(s) => message(s, &format!("{s} Gateway Timeout")),
                Then::Continue => answer,
            }
        }
        None => answer,
    };
    answer.headers.extend(rate_headers);
    if gave_up {
        // served after Workhorse's 502: the answer goes nowhere
        return Ok(false);
    }
    write_answer(stream, &answer, request_id.as_deref(), keep_alive)?;
    if let Some(h) = fires(Phase::Answered) {
        h.fire();
    }
    Ok(keep_alive)
}

/// An integer parameter sent as a JSON number or a string.
fn id_param(req: &Request, name: &str) -> Option<u64> {
    match req.param(name)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn str_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.param(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn bool_param(req: &Request, name: &str) -> Result<Option<bool>, Answer> {
    match req.param(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "t" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "f" | "no" | "off" => Ok(Some(false)),
            _ => Err(json_answer(
                400,
                json!({ "error": format!("{name} is invalid") }),
            )),
        },
        Some(_) => Err(json_answer(
            400,
            json!({ "error": format!("{name} is invalid") }),
        )),
    }
}

/// `tag_list` coercion: comma string or array (elements comma-split), stripped.
fn tag_list(req: &Request) -> Option<Vec<String>> {
    let split = |s: &str| {
        s.split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
    };
    let mut tags: Vec<String> = match req.param("tag_list")? {
        Value::String(s) => split(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).flat_map(split).collect(),
        _ => Vec::new(),
    };
    let mut seen = Vec::new();
    tags.retain(|t| {
        let t = t.trim_matches(|c| c == '"' || c == '\'').to_string();
        if seen.contains(&t) {
            false
        } else {
            seen.push(t);
            true
        }
    });
    Some(seen)
}

/// Authenticate a PAT and check `scope_ok`; the error answer otherwise.
fn authenticate<'a>(
    req: &Request,
    w: &'a World,
    scope_ok: &dyn Fn(&str) -> bool,
) -> Result<&'a Pat, Answer> {
    let token = req
        .header("private-token")
        .map(String::from)
        .or_else(|| {
            req.header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(String::from)
        })
        .or_else(|| str_param(req, "private_token").map(String::from));
    let Some(pat) = token.and_then(|t| w.pats.get(&t)) else {
        return Err(message(401, "401 Unauthorized"));
    };
    if pat.expired {
        return Err(json_answer(
            401,
            json!({"error": "invalid_token", "error_description": "Token is expired. You can either do re-authorization or token refresh."}),
        ));
    }
    if pat.revoked {
        return Err(json_answer(
            401,
            json!({"error": "invalid_token", "error_description": "Token was revoked. You have to re-authorize from the user."}),
        ));
    }
    if !pat.scopes.iter().any(|s| scope_ok(s)) {
        return Err(json_answer(
            403,
            json!({"error": "insufficient_scope", "error_description": "The request requires higher privileges than provided by the access token.", "scope": "api"}),
        ));
    }
    Ok(pat)
}

/// `GET /personal_access_tokens/self`, as
/// https://docs.gitlab.com/api/personal_access_tokens/#get-a-single-personal-access-token
/// describes it (any scope may ask; an expired or revoked token gets 401).
fn token_self(req: &Request, w: &World) -> Result<Answer, Answer> {
    if w.no_token_self {
        return Ok(json_answer(404, json!({"error": "404 Not Found"})));
    }
    let pat = authenticate(req, w, &|_| true)?;
    Ok(json_answer(
        200,
        json!({
            "id": 1,
            "name": "gitlab-runner-auth",
            "revoked": pat.revoked,
            "created_at": "2026-01-01T00:00:00.000Z",
            "description": null,
            "scopes": pat.scopes,
            "user_id": 1,
            "last_used_at": null,
            "active": !pat.revoked && !pat.expired,
            "expires_at": pat.expires_at,
            "last_used_ips": [],
        }),
    ))
}

fn runner_json(r: &Runner, with_token: bool) -> Value {
    let status = match r.contacted_at {
        None => "never_contacted",
        Some(t) if now() - t < 7200 => "online",
        Some(_) => "offline",
    };
    let mut v = json!({
        "id": r.id,
        "description": r.description,
        "ip_address": null,
        "active": true,
        "paused": false,
        "is_shared": r.runner_type == "instance_type",
        "runner_type": r.runner_type,
        "name": "gitlab-runner",
        "online": r.contacted_at.map(|t| now() - t < 7200),
        "status": status,
        "tag_list": r.tags,
        "run_untagged": r.run_untagged,
        "locked": false,
        "access_level": "not_protected",
        "maximum_timeout": null,
        "contacted_at": r.contacted_at.map(iso),
        "created_at": iso(r.created_at),
    });
    if with_token {
        v["token"] = r.token.clone().into();
    }
    v
}

fn route(req: &Request, world: &Mutex<World>) -> Answer {
    let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let result = match (req.method.as_str(), segs.as_slice()) {
        // routes older GitLab versions do not have
        ("POST", ["runners", _, "reset_authentication_token"]) if w.no_reset_by_id => {
            Ok(json_answer(404, json!({"error": "404 Not Found"})))
        }
        ("POST", ["runners", "reset_authentication_token"]) if w.no_token_expiry => {
            Ok(json_answer(404, json!({"error": "404 Not Found"})))
        }
        ("POST", ["user", "runners"]) if w.no_user_runners => {
            Ok(json_answer(404, json!({"error": "404 Not Found"})))
        }
        ("POST", ["runners"]) => register(req, &mut w),
        ("POST", ["runners", "verify"]) => verify(req, &mut w),
        ("POST", ["runners", "reset_authentication_token"]) => reset_by_token(req, &mut w),
        ("DELETE", ["runners"]) => delete_by_token(req, &mut w),
        ("POST", ["user", "runners"]) => create(req, &mut w),
        ("GET", ["runners", "all"]) => list(req, &w, None),
        ("GET", ["personal_access_tokens", "self"]) => token_self(req, &w),
        ("GET", ["groups", g, "runners"]) => list(req, &w, Some(("group_type", g))),
        ("GET", ["projects", p, "runners"]) => list(req, &w, Some(("project_type", p))),
        ("GET", ["runners", id]) => by_id(req, &mut w, id, "GET"),
        ("PUT", ["runners", id]) => by_id(req, &mut w, id, "PUT"),
        ("DELETE", ["runners", id]) => by_id(req, &mut w, id, "DELETE"),
        ("POST", ["runners", id, "reset_authentication_token"]) => by_id(req, &mut w, id, "RESET"),
        _ => Ok(json_answer(404, json!({"error": "404 Not Found"}))),
    };
    let mut answer = result.unwrap_or_else(|a| a);
    let line = req.line();
    for (start, keys) in &w.answer_patch {
        if line.starts_with(start.as_str())
            && let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(&answer.body)
        {
            v.extend(keys.clone());
            answer.body = Value::Object(v).to_string();
        }
    }
    answer
}

fn runner_token(req: &Request, w: &World) -> Result<u64, Answer> {
    let token = str_param(req, "token")
        .ok_or_else(|| json_answer(400, json!({"error": "token is missing"})))?;
    w.by_token(token)
        .ok_or_else(|| message(403, "403 Forbidden"))
}

fn validate_tags(run_untagged: bool, tags: &[String]) -> Result<(), Answer> {
    if !run_untagged && tags.is_empty() {
        return Err(json_answer(
            400,
            json!({"message": {"tags_list": ["can not be empty when runner is not allowed to pick untagged jobs"]}}),
        ));
    }
    if tags.len() > 50 {
        return Err(json_answer(
            400,
            json!({"message": {"tags_list": ["Too many tags specified. Please limit the number of tags to 50"]}}),
        ));
    }
    Ok(())
}

fn insert_runner(
    w: &mut World,
    req: &Request,
    runner_type: &str,
    user: bool,
) -> Result<Answer, Answer> {
    let tags = tag_list(req).unwrap_or_default();
    let run_untagged = bool_param(req, "run_untagged")?.unwrap_or(true);
    validate_tags(run_untagged, &tags)?;
    let description = str_param(req, "description").unwrap_or("");
    let id = w.new_runner(description, tags, run_untagged, runner_type, user);
    let owner = match runner_type {
        "group_type" => id_param(req, "group_id"),
        "project_type" => id_param(req, "project_id"),
        _ => None,
    };
    w.runners.get_mut(&id).unwrap().owner = owner;
    let r = &w.runners[&id];
    Ok(json_answer(
        201,
        w.token_answer(Some(id), &r.token, r.token_expires_at),
    ))
}

fn register(req: &Request, w: &mut World) -> Result<Answer, Answer> {
    let token = str_param(req, "token")
        .ok_or_else(|| json_answer(400, json!({"error": "token is missing"})))?;
    if !w.registration_enabled {
        return Err(message(410, "410 Gone - runner registration disallowed"));
    }
    if token != w.instance_registration_token {
        return Err(message(403, "403 Forbidden - invalid token supplied"));
    }
    insert_runner(w, req, "instance_type", false)
}

fn verify(req: &Request, w: &mut World) -> Result<Answer, Answer> {
    let id = runner_token(req, w)?;
    let legacy = w.legacy_verify;
    let managers = !w.no_managers;
    let system_id = str_param(req, "system_id")
        .unwrap_or("<legacy>")
        .to_string();
    let r = w.runners.get_mut(&id).unwrap();
    if managers && !r.managers.contains(&system_id) {
        r.managers.push(system_id);
    }
    r.contacted_at = Some(now());
    if legacy {
        return Ok(Answer {
            status: 200,
            content_type: "text/plain".into(),
            headers: Vec::new(),
            body: "200".into(),
        });
    }
    let r = r.clone();
    Ok(json_answer(
        200,
        w.token_answer(Some(r.id), &r.token, r.token_expires_at),
    ))
}

fn reset_by_token(req: &Request, w: &mut World) -> Result<Answer, Answer> {
    let id = runner_token(req, w)?;
    let token = w.rotate(id);
    let exp = w.runners[&id].token_expires_at;
    Ok(json_answer(201, w.token_answer(None, &token, exp)))
}

fn delete_by_token(req: &Request, w: &mut World) -> Result<Answer, Answer> {
    let id = runner_token(req, w)?;
    w.runners.remove(&id);
    Ok(no_content())
}

fn create(req: &Request, w: &mut World) -> Result<Answer, Answer> {
    let pat = authenticate(req, w, &|s| s == "api" || s == "create_runner")?.clone();
    let runner_type = match str_param(req, "runner_type") {
        None => {
            return Err(json_answer(
                400,
                json!({"error": "runner_type is missing, runner_type does not have a valid value"}),
            ));
        }
        Some(t @ ("instance_type" | "group_type" | "project_type")) => t.to_string(),
        Some(_) => {
            return Err(json_answer(
                400,
                json!({"error": "runner_type does not have a valid value"}),
            ));
        }
    };
    match runner_type.as_str() {
        "group_type" if req.param("group_id").is_none() => {
            return Err(json_answer(400, json!({"error": "group_id is missing"})));
        }
        "project_type" if req.param("project_id").is_none() => {
            return Err(json_answer(400, json!({"error": "project_id is missing"})));
        }
        _ => {}
    }
    if !pat.admin {
        return Err(message(403, "403 Forbidden - Insufficient permissions"));
    }
    let tags = tag_list(req).unwrap_or_default();
    if !bool_param(req, "run_untagged")?.unwrap_or(true) && tags.is_empty() {
        return Err(message(
            400,
            "400 Bad request - Tags list can not be empty when runner is not allowed to pick untagged jobs",
        ));
    }
    insert_runner(w, req, &runner_type, true)
}

/// `GET /runners/all` (`owner` None, admins only) or a group's or project's
/// list (only that owner's runners of that type; ancestors' and instance
/// runners are left out of this model).
fn list(req: &Request, w: &World, owner: Option<(&str, &str)>) -> Result<Answer, Answer> {
    let pat = authenticate(req, w, &|s| s == "api" || s == "read_api")?;
    if owner.is_none() && !pat.admin {
        return Err(message(403, "403 Forbidden"));
    }
    let owner = owner.map(|(ty, id)| (ty, id.parse::<u64>().ok()));
    let want = tag_list(req).unwrap_or_default();
    if let Some(t) = str_param(req, "type")
        && !["instance_type", "group_type", "project_type"].contains(&t)
    {
        return Err(json_answer(
            400,
            json!({"error": "type does not have a valid value"}),
        ));
    }
    let matching: Vec<&Runner> = w
        .runners
        .values()
        .filter(|r| want.iter().all(|t| r.tags.contains(t)))
        .filter(|r| owner.is_none_or(|(ty, id)| r.runner_type == ty && r.owner == id))
        .filter(|r| str_param(req, "type").is_none_or(|t| r.runner_type == t))
        .collect();
    let num = |name: &str, default: usize| {
        req.param(name)
            .and_then(|v| {
                v.as_str()
                    .map(String::from)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let per_page = num("per_page", 20).clamp(1, 100);
    let page = num("page", 1).max(1);
    if let Some((n, description)) = &w.endless_list {
        let items: Vec<Value> = (0..*n)
            .map(|i| json!({"id": 1_000_000 + page * n + i, "description": description}))
            .collect();
        let mut a = json_answer(200, Value::Array(items));
        a.headers = vec![("X-Next-Page".into(), (page + 1).to_string())];
        return Ok(a);
    }
    let total = matching.len();
    let pages = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = matching
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|r| {
            // list items are the `Runner` entity: no tags or other details
            let mut v = runner_json(r, false);
            if let Some(o) = v.as_object_mut() {
                for k in [
                    "tag_list",
                    "run_untagged",
                    "locked",
                    "access_level",
                    "maximum_timeout",
                    "contacted_at",
                ] {
                    o.remove(k);
                }
            }
            v
        })
        .collect();
    let mut a = json_answer(200, Value::Array(items));
    let next = if page < pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    let link = |p: usize, rel: &str| {
        format!("<http://fake/api/v4/runners/all?page={p}&per_page={per_page}>; rel=\"{rel}\"")
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < pages {
        links.push(link(page + 1, "next"));
    }
    links.push(link(1, "first"));
    links.push(link(pages, "last"));
    a.headers = vec![
        ("X-Page".into(), page.to_string()),
        ("X-Per-Page".into(), per_page.to_string()),
        ("X-Next-Page".into(), next),
        ("X-Prev-Page".into(), prev),
        ("X-Total".into(), total.to_string()),
        ("X-Total-Pages".into(), pages.to_string()),
        ("Link".into(), links.join(", ")),
    ];
    Ok(a)
}

fn by_id(req: &Request, w: &mut World, id: &str, op: &str) -> Result<Answer, Answer> {
    let read = op == "GET";
    authenticate(req, w, &|s| {
        s == "api" || s == "manage_runner" || (read && s == "read_api")
    })?;
    let id: u64 = id
        .parse()
        .map_err(|_| json_answer(400, json!({"error": "id is invalid"})))?;
    if !w.runners.contains_key(&id) {
        return Err(message(404, "404 Runner Not Found"));
    }
    match op {
        "GET" => Ok(json_answer(
            200,
            runner_json(&w.runners[&id], w.details_with_token),
        )),
        "PUT" => {
            let tags = tag_list(req);
            let desc = str_param(req, "description").map(String::from);
            if tags.is_none() && desc.is_none() && req.param("run_untagged").is_none() {
                return Err(json_answer(
                    400,
                    json!({"error": "description, active, paused, tag_list, run_untagged, locked, access_level, maximum_timeout, maintenance_note, maintainer_note are missing, at least one parameter must be provided"}),
                ));
            }
            let run_untagged = bool_param(req, "run_untagged")?;
            let r = w.runners.get_mut(&id).unwrap();
            let new_tags = tags.unwrap_or_else(|| r.tags.clone());
            let new_untagged = run_untagged.unwrap_or(r.run_untagged);
            validate_tags(new_untagged, &new_tags)?;
            r.tags = new_tags;
            r.run_untagged = new_untagged;
            if let Some(d) = desc {
                r.description = d;
            }
            Ok(json_answer(200, runner_json(r, false)))
        }
        "DELETE" => {
            w.runners.remove(&id);
            Ok(no_content())
        }
        _ => {
            let token = w.rotate(id);
            let exp = w.runners[&id].token_expires_at;
            Ok(json_answer(201, w.token_answer(None, &token, exp)))
        }
    }
}
