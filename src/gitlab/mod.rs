// SPDX-License-Identifier: MIT
//! The GitLab client: one `ureq::Agent` (timeouts, TLS roots, user agent),
//! bounded retries with backoff and jitter, error decoding, and one method
//! per endpoint this tool calls. The only module that touches the network.

pub mod api;
pub mod retry;

use crate::clock;
use crate::error::{Error, Kind, Result};
use crate::secret::{Secret, mask_tokens};
use crate::settings::Scope;
use api::{ErrorBody, RunnerDetails, TokenAnswer, TokenSelf};
use retry::{Outcome, Repeat, Step};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

pub const USER_AGENT: &str = concat!("gitlab-runner-auth/", env!("CARGO_PKG_VERSION"));

/// A token as GitLab issued it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: Option<u64>,
    pub token: Secret,
    pub expires_at: Option<i64>,
}

/// The answer of `POST /runners/:id/reset_authentication_token`.
#[derive(Debug)]
pub enum ResetById {
    Reset(IssuedToken),
    /// 404 Runner Not Found.
    NoRunner,
    /// The endpoint itself is missing (GitLab before 14.3).
    Unsupported,
}

/// The answer of `POST /runners/verify`.
#[derive(Debug, Clone)]
pub enum Verified {
    /// Valid. `id` is `None` on servers older than 15.10 (plain-text answer).
    Valid {
        id: Option<u64>,
        expires_at: Option<i64>,
    },
    /// 403: unknown, deleted or expired.
    Invalid,
}

/// What to send when creating a runner.
pub struct NewRunner<'a> {
    pub description: &'a str,
    pub tags: &'a [String],
    pub scope: Scope,
}

struct Reply {
    status: u16,
    /// As GitLab sent it, for decoding; shown only through `message()` and
    /// `redacted()`, which mask it.
    body: String,
    next_page: Option<String>,
    /// What the request sent that is secret (its `token`, the
    /// `PRIVATE-TOKEN`): GitLab or a proxy may echo it in an error.
    secrets: Vec<Secret>,
}

pub struct Client {
    agent: ureq::Agent,
    /// For calls that issue a token: their answer is waited for longer than
    /// GitLab's own request timeout, so a slow create or reset is never
    /// taken for a lost one (and then repeated while the first still runs).
    issuing: ureq::Agent,
    base: String,
    wait: Duration,
    timeout: Duration,
    /// Retries stop here: `--wait` bounds them for the whole run.
    deadline: Instant,
    /// No request starts after this, and no read runs past it: `--wait`
    /// and one `--timeout` from the client's start bound the whole run,
    /// however many requests it makes.
    ends: Instant,
    /// What the run learnt of GitLab's limits, and no request starts
    /// before the `Instant` (its turn under a throttle, or a pause while
    /// Puma's queue is long).
    pace: std::sync::Mutex<(retry::Pace, Option<Instant>)>,
    /// Held by the request in flight while the run is congested.
    gate: std::sync::Mutex<()>,
    /// The congestion this run met since its last fast answer: how many
    /// slow failures (a 5xx or a lost answer after [`retry::SLOW`] or
    /// more: a queue past its proxy's timeout; requests in flight together
    /// that fail together count once), and when the last one counted
    /// ended. Each makes the next slow failure wait longer, and while there
    /// is any the run has one request in flight at a time ([`Client::gate`]),
    /// so that its reads side by side do not lengthen the queue they wait
    /// in. A GitLab that is merely slow (far away) keeps them side by side.
    congestion: std::sync::Mutex<(u32, Option<Instant>)>,
    /// The `--spread` hint was logged (once a run).
    hinted: std::sync::atomic::AtomicBool,
}

/// Longer than GitLab's own request timeout (Puma's worker timeout, 60 s):
/// after it, a request GitLab was still working on has been ended.
const ISSUING_TIMEOUT: Duration = Duration::from_secs(65);

/// How long a call that issues a token waits for its answer with
/// `--timeout` `timeout`: [`ISSUING_TIMEOUT`] at least.
pub fn issuing_timeout(timeout: Duration) -> Duration {
    timeout.max(ISSUING_TIMEOUT)
}

/// The most of an answer read: every answer but a runner's details is a
/// few hundred bytes.
const ANSWER_BYTES: u64 = 1024 * 1024;
/// The most of `GET /runners/:id` read (a GitLab that ignores
/// `include_projects=false` lists a project runner's projects).
const DETAILS_BYTES: u64 = 4 * 1024 * 1024;
/// Runners a list page asks for, the most of a page read, and the most
/// runners a listing may name: this host's runners by its hostname tag,
/// which no real host has thousands of.
const LIST_PER_PAGE: usize = 100;
pub const LIST_PAGE_BYTES: u64 = 2 * 1024 * 1024;
pub const LIST_MAX: usize = 10_000;

/// Said when a create succeeded but its answer cannot be read.
const LOST_RUNNER: &str =
    "GitLab may have created a runner whose token this host never got: delete it in GitLab";

impl Client {
    /// `base` is `https://host/api/v4`; `wait` bounds the time all retries
    /// of this client may take, from now.
    pub fn new(
        base: &str,
        timeout: Duration,
        wait: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Client> {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(root_certs(ca_file)?)
            .build();
        let proxy = EnvProxy::read();
        if let Some(text) = proxy.unusable_text() {
            log::warn!("{text}");
        }
        let proxy = proxy.proxy.map(|(p, _)| p);
        let agent = |timeout: Duration| -> ureq::Agent {
            ureq::Agent::config_builder()
                .proxy(proxy.clone())
                .http_status_as_error(false)
                .user_agent(USER_AGENT)
                .timeout_global(Some(timeout))
                .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
                .max_redirects(0)
                .tls_config(tls.clone())
                .build()
                .into()
        };
        // settings refused this unless --allow-http
        if let Some(host) = crate::settings::plain_http_host(base) {
            log::warn!(
                "using plain http:// to {host} (--allow-http): tokens cross the network unencrypted"
            );
        }
        Ok(Client {
            agent: agent(timeout),
            issuing: agent(issuing_timeout(timeout)),
            base: base.to_string(),
            wait,
            timeout,
            deadline: Instant::now() + wait,
            ends: Instant::now() + wait + timeout,
            pace: std::sync::Mutex::new((retry::Pace::new(1), None)),
            gate: Default::default(),
            congestion: Default::default(),
            hinted: Default::default(),
        })
    }

    /// This run sends about `requests` requests (one a runner): under a
    /// throttle, each other host is taken to need as many, which spaces
    /// the turns.
    pub fn sharing(self, requests: usize) -> Client {
        *self.pace.lock().unwrap_or_else(|e| e.into_inner()) = (retry::Pace::new(requests), None);
        self
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, (retry::Pace, Option<Instant>)> {
        self.pace.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count `--wait` (retries) and the run's end from `t0` rather than
    /// from now: the time a run waited for the lock is part of the boot.
    pub fn since(mut self, t0: Instant) -> Client {
        self.deadline = t0 + self.wait;
        self.ends = t0 + self.wait + self.timeout;
        self
    }

    /// `--spread`: the run waited `d` before its first request; `--wait`
    /// and the run's end move with it, so the spread takes nothing from
    /// the retries.
    pub fn spread_by(&mut self, d: Duration) {
        self.deadline += d;
        self.ends += d;
    }

    /// `POST /runners/verify`.
    pub fn verify(&self, token: &Secret, system_id: Option<&str>) -> Result<Verified> {
        let mut body = json!({ "token": token.expose() });
        if let Some(s) = system_id {
            body["system_id"] = s.into();
        }
        let what = "POST /runners/verify";
        let reply = self.call("POST", "/runners/verify", None, Some(&body), Repeat::Safe)?;
        match reply.status {
            200 => {
                if reply.body.trim() == "200" || reply.body.trim().is_empty() {
                    return Ok(Verified::Valid {
                        id: None,
                        expires_at: None,
                    });
                }
                let a: TokenAnswer = decode(what, &reply)?;
                Ok(Verified::Valid {
                    id: checked_id(what, a.id)?,
                    expires_at: expiry(what, a.token_expires_at.as_deref())?,
                })
            }
            403 => Ok(Verified::Invalid),
            _ => Err(unexpected(what, &reply)),
        }
    }

    /// `POST /runners/reset_authentication_token` with the current token.
    /// `Ok(None)` when GitLab refuses the token (403).
    pub fn reset_by_token(&self, token: &Secret) -> Result<Option<IssuedToken>> {
        let what = "POST /runners/reset_authentication_token";
        let body = json!({ "token": token.expose() });
        let reply = self.call(
            "POST",
            "/runners/reset_authentication_token",
            None,
            Some(&body),
            Repeat::Issuing,
        )?;
        match reply.status {
            200 | 201 => issued(what, &reply).map(Some),
            403 => Ok(None),
            _ => Err(unexpected(what, &reply)),
        }
    }

    /// `POST /runners/:id/reset_authentication_token` with an access token.
    pub fn reset_by_id(&self, pat: &Secret, id: u64) -> Result<ResetById> {
        let path = format!("/runners/{id}/reset_authentication_token");
        let what = format!("POST {path}");
        let reply = self.call("POST", &path, Some(pat), None, Repeat::Issuing)?;
        match reply.status {
            200 | 201 => issued(&what, &reply)
                .map(|t| ResetById::Reset(IssuedToken { id: Some(id), ..t }))
                .map_err(|e| {
                    e.hint(format!(
                        "runner {id} remains in GitLab with a token this host did not take: reset or delete it there"
                    ))
                }),
            // "404 Runner Not Found"; a bare "404 Not Found" is a missing route (GitLab < 14.3)
            404 if message(&reply).is_some_and(|m| m.contains("Runner")) => Ok(ResetById::NoRunner),
            404 => Ok(ResetById::Unsupported),
            _ => Err(unexpected(&what, &reply)),
        }
    }

    /// `POST /runners` with a registration token (the legacy workflow).
    pub fn register(&self, registration_token: &Secret, new: &NewRunner) -> Result<IssuedToken> {
        let what = "POST /runners";
        let body = json!({
            "token": registration_token.expose(),
            "description": new.description,
            "tag_list": new.tags.join(","),
            "run_untagged": false,
            "locked": false,
        });
        let reply = self.call("POST", "/runners", None, Some(&body), Repeat::Issuing)?;
        match reply.status {
            200 | 201 => issued(what, &reply).map_err(|e| e.hint(LOST_RUNNER)),
            410 => Err(Error::config(format!(
                "{what}: {}: registration tokens are disabled on this GitLab; put an access token with create_runner scope (glpat-…) in admin-token to create runners with POST /user/runners",
                status_text(410, &message(&reply).unwrap_or_default())
            ))),
            403 => Err(Error::denied(format!(
                "{what}: {}: GitLab refused the registration token in admin-token; copy the current one from GitLab's runners page (Admin area, or the group's or project's CI/CD settings), or put an access token with create_runner scope (glpat-…) in admin-token instead",
                status_text(403, &message(&reply).unwrap_or_default())
            ))),
            _ => Err(unexpected(what, &reply)),
        }
    }

    /// `POST /user/runners` with an access token (the 15.11+ workflow).
    pub fn create(&self, pat: &Secret, new: &NewRunner) -> Result<IssuedToken> {
        let what = "POST /user/runners";
        let mut body = json!({
            "runner_type": new.scope.runner_type(),
            "description": new.description,
            "tag_list": new.tags.join(","),
            "run_untagged": false,
            "locked": false,
        });
        match new.scope {
            Scope::Group(g) => body["group_id"] = g.into(),
            Scope::Project(p) => body["project_id"] = p.into(),
            Scope::Instance => {}
        }
        let reply = self.call(
            "POST",
            "/user/runners",
            Some(pat),
            Some(&body),
            Repeat::Issuing,
        )?;
        match reply.status {
            200 | 201 => issued(what, &reply).map_err(|e| e.hint(LOST_RUNNER)),
            404 if !message(&reply)
                .is_some_and(|m| m.contains("Group") || m.contains("Project")) =>
            {
                Err(Error::config(format!(
                    "{what}: 404: this GitLab has no POST /user/runners (it came in 15.11), or --api-url is not its API; put a registration token in admin-token or pass --registration legacy"
                )))
            }
            _ => Err(unexpected(what, &reply)),
        }
    }

    /// `GET /runners/:id`; `Ok(None)` on 404.
    pub fn runner(&self, pat: &Secret, id: u64) -> Result<Option<RunnerDetails>> {
        let path = format!("/runners/{id}");
        let what = format!("GET {path}");
        // the projects of a project runner are not needed (GitLabs that do
        // not know the parameter ignore it)
        let query = format!("{path}?include_projects=false");
        let reply = self.get_bounded(&query, pat, DETAILS_BYTES)?;
        match reply.status {
            200 => {
                let d: RunnerDetails = decode(&what, &reply)?;
                if d.id != id {
                    return Err(Error::data(format!(
                        "{what}: 200 with the details of runner {} instead",
                        d.id
                    )));
                }
                Ok(Some(d))
            }
            404 => Ok(None),
            _ => Err(unexpected(&what, &reply)),
        }
    }

    /// `GET /personal_access_tokens/self`: the access token's scopes and
    /// expiry. `Ok(None)` on 404: GitLab before 15.5, or a token kind that
    /// has no such record.
    pub fn token_self(&self, pat: &Secret) -> Result<Option<TokenSelf>> {
        let what = "GET /personal_access_tokens/self";
        let reply = self.call(
            "GET",
            "/personal_access_tokens/self",
            Some(pat),
            None,
            Repeat::Safe,
        )?;
        match reply.status {
            200 => decode(what, &reply).map(Some),
            404 => Ok(None),
            _ => Err(unexpected(what, &reply)),
        }
    }

    /// `PUT /runners/:id` with the description and tags this host registers.
    pub fn update(&self, pat: &Secret, id: u64, description: &str, tags: &[String]) -> Result<()> {
        let path = format!("/runners/{id}");
        let what = format!("PUT {path}");
        let body = json!({ "description": description, "tag_list": tags.join(",") });
        let reply = self.call("PUT", &path, Some(pat), Some(&body), Repeat::Safe)?;
        match reply.status {
            200 => Ok(()),
            _ => Err(unexpected(&what, &reply)),
        }
    }

    /// `DELETE /runners/:id`; `Ok(false)` when it was already gone.
    pub fn delete(&self, pat: &Secret, id: u64) -> Result<bool> {
        let path = format!("/runners/{id}");
        let what = format!("DELETE {path}");
        let reply = self.call("DELETE", &path, Some(pat), None, Repeat::Safe)?;
        match reply.status {
            200 | 204 => Ok(true),
            404 => Ok(false),
            _ => Err(unexpected(&what, &reply)),
        }
    }

    /// `DELETE /runners` with the runner's own token; `Ok(false)` when
    /// GitLab no longer accepts the token (403).
    pub fn delete_by_token(&self, token: &Secret) -> Result<bool> {
        let what = "DELETE /runners";
        let body = json!({ "token": token.expose() });
        let reply = self.call("DELETE", "/runners", None, Some(&body), Repeat::Safe)?;
        match reply.status {
            200 | 204 => Ok(true),
            403 => Ok(false),
            _ => Err(unexpected(what, &reply)),
        }
    }

    /// The runners carrying every tag in `tags`, every page: `GET /runners/all`
    /// for instance runners, else the group's or project's list. Only the
    /// ids of those `keep` takes (by the description the list shows) are
    /// kept, and the listing is bounded: [`LIST_PAGE_BYTES`] a page, at most
    /// [`LIST_MAX`] runners, within the run's deadline. A GitLab that lists
    /// more is broken or hostile, and the run stops (65).
    pub fn list_tagged(
        &self,
        pat: &Secret,
        scope: Scope,
        tags: &[String],
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<u64>> {
        let list = match scope {
            Scope::Instance => "/runners/all".to_string(),
            Scope::Group(g) => format!("/groups/{g}/runners"),
            Scope::Project(p) => format!("/projects/{p}/runners"),
        };
        let mut out = Vec::new();
        let mut seen = 0usize;
        let mut pages = 0usize;
        let mut page = "1".to_string();
        // each tag encoded, joined by the literal comma GitLab splits on
        let tag_list: Vec<String> = tags.iter().map(|t| percent_encode(t)).collect();
        loop {
            let path = format!(
                "{list}?type={}&tag_list={}&per_page={LIST_PER_PAGE}&page={}",
                scope.runner_type(),
                tag_list.join(","),
                percent_encode(&page)
            );
            let what = format!("GET {path}");
            let reply = self.get_bounded(&path, pat, LIST_PAGE_BYTES)?;
            if reply.status != 200 {
                return Err(unexpected(&what, &reply));
            }
            let entries: Vec<api::Listed> = decode(&what, &reply)?;
            drop(reply.body);
            seen += entries.len();
            if seen > LIST_MAX {
                return Err(Error::data(format!(
                    "GET {list}: GitLab lists more than {LIST_MAX} runners tagged {}: no host has that many; giving up",
                    crate::untrusted::shown(&tags.join(","))
                )));
            }
            for e in entries {
                if !crate::untrusted::id_ok(e.id) {
                    return Err(Error::data(format!(
                        "GET {list}: 200 with runner id {} (not in 1..={})",
                        e.id,
                        crate::untrusted::ID_MAX
                    )));
                }
                if keep(e.description.as_deref().unwrap_or("")) {
                    out.push(e.id);
                }
            }
            pages += 1;
            match reply.next_page.filter(|p| !p.is_empty()) {
                // only a later page, and no more pages than LIST_MAX
                // runners fill: a listing that goes back, stands still or
                // sends empty pages would never end
                Some(p)
                    if pages <= LIST_MAX / LIST_PER_PAGE
                        && p.parse::<u64>().ok() > page.parse::<u64>().ok() =>
                {
                    page = p
                }
                Some(p) => {
                    return Err(Error::data(format!(
                        "GET {list}: page {} says its next page is {}",
                        crate::untrusted::shown(&page),
                        crate::untrusted::shown(&p)
                    )));
                }
                None => return Ok(out),
            }
        }
    }

    /// One request with retries, its answer read up to [`ANSWER_BYTES`].
    fn call(
        &self,
        method: &str,
        path: &str,
        pat: Option<&Secret>,
        body: Option<&Value>,
        repeat: Repeat,
    ) -> Result<Reply> {
        self.call_with(method, path, pat, body, repeat, ANSWER_BYTES)
    }

    /// `GET path` with the access token and retries, its answer read up to
    /// `limit` bytes.
    fn get_bounded(&self, path: &str, pat: &Secret, limit: u64) -> Result<Reply> {
        self.call_with("GET", path, Some(pat), None, Repeat::Safe, limit)
    }

    /// One request with retries (see [`retry::classify`]). Failures that
    /// outlast the `--wait` deadline become `Kind::Unreachable` errors; a
    /// token-issuing call GitLab may have acted on without an answer is a
    /// `Kind::Ambiguous` error, for the caller to resolve. No request starts
    /// after the run's end (`ends`), and no read runs past it.
    fn call_with(
        &self,
        method: &str,
        path: &str,
        pat: Option<&Secret>,
        body: Option<&Value>,
        repeat: Repeat,
        limit: u64,
    ) -> Result<Reply> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let start = Instant::now();
        let mut backoff = retry::Backoff::new(self.deadline);
        let mut attempt = 1;
        // one last try within --wait after a Retry-After that passes it
        let mut hinted = false;
        loop {
            crate::signals::check(&what)?;
            // this run's turn (a throttle's, or Puma's queue draining),
            // never past the deadline
            let turn = self.pace().1.take();
            if let Some(at) = turn.map(|t| t.min(self.deadline))
                && let Some(pause) = at.checked_duration_since(Instant::now())
                && !pause.is_zero()
            {
                crate::signals::sleep(pause, &what)?;
            }
            // one request in flight at a time while GitLab is congested
            // (the congestion lock is let go before the gate is waited for)
            let congested = self.congestion().0 > 0;
            let one = congested.then(|| self.gate.lock().unwrap_or_else(|e| e.into_inner()));
            crate::signals::check(&what)?;
            let t0 = Instant::now();
            let Some(left) = self
                .ends
                .checked_duration_since(t0)
                .filter(|d| !d.is_zero())
            else {
                return Err(Error::new(
                    Kind::Unreachable,
                    format!(
                        "{what}: not sent: the run's time is up (--wait {}s and --timeout {}s from its start, after --spread)",
                        self.wait.as_secs(),
                        self.timeout.as_secs()
                    ),
                ));
            };
            let (agent, own) = match repeat {
                Repeat::Safe => (&self.agent, self.timeout),
                Repeat::Issuing => (&self.issuing, issuing_timeout(self.timeout)),
            };
            // a read gets the agent's own timeout, or less when the run
            // ends sooner; a call that issues a token keeps its own, so
            // that its answer (a live token) is not cut off
            let cap = (repeat == Repeat::Safe && left < own).then_some(left);
            let result = self.once(agent, method, path, pat, body, limit, cap);
            drop(one);
            let took = t0.elapsed();
            let mut limits = retry::Limits::default();
            let (outcome, retry_after, cause, reply) = match result {
                Ok((reply, l)) => {
                    log::debug!("{what} -> {} ({} ms)", reply.status, took.as_millis());
                    let cause = status_text(reply.status, &message(&reply).unwrap_or_default());
                    let retry_after = l.retry_after;
                    limits = l;
                    (
                        retry::outcome(reply.status, took),
                        retry_after,
                        cause,
                        Some(reply),
                    )
                }
                Err(ureq::Error::BodyExceedsLimit(_)) => {
                    // no GitLab answers that much here: junk, not a fault to retry
                    return Err(Error::data(format!(
                        "{what}: the answer is larger than {limit} bytes; not read"
                    )));
                }
                Err(e) => {
                    log::debug!("{what} -> {e} ({} ms)", t0.elapsed().as_millis());
                    if let Some(cause) = tls_refusal(&e) {
                        let host = self.base.split('/').nth(2).unwrap_or("?");
                        return Err(Error::denied(format!(
                            "{what}: the TLS certificate of {host} is not trusted ({cause}): install the site's CA in the system CA bundle or pass --ca-file"
                        )));
                    }
                    let outcome = if never_sent(&e) {
                        Outcome::NotSent
                    } else {
                        Outcome::Lost
                    };
                    (outcome, None, e.to_string(), None)
                }
            };
            match retry::classify(outcome, repeat) {
                Step::Answer => {
                    if let Some(reply) = reply {
                        if took < retry::SLOW {
                            self.uncongested();
                        }
                        self.paced(&what, &limits, took);
                        return Ok(reply);
                    }
                }
                Step::Ambiguous => {
                    // a slow one (Workhorse's proxy timeout): whatever the
                    // caller sends next waits for that queue to drain
                    if took >= retry::SLOW {
                        let at = Instant::now() + retry::half_to_whole(took, retry::random());
                        self.pace().1 = Some(at.min(self.deadline));
                    }
                    return Err(Error::new(
                        Kind::Ambiguous,
                        format!(
                            "{what}: {}; GitLab may have acted on it without this host getting the answer",
                            cause.trim()
                        ),
                    ));
                }
                Step::Retry => {}
            }
            let throttled = match outcome {
                Outcome::Status(429) => self.pace().0.throttled(&limits, retry::random()),
                _ => None,
            };
            if let Some(t) = throttled {
                // never less than the plain backoff: a throttle that keeps
                // refusing is met less and less often
                let floor = backoff
                    .next(None, Instant::now(), retry::random())
                    .unwrap_or_default();
                let sleep = self.turn(&what, &limits, &t, attempt, start)?.max(floor);
                // once a run: what would have spared it
                let spread = limits
                    .per_minute
                    .filter(|_| !self.hinted.swap(true, std::sync::atomic::Ordering::Relaxed))
                    .map(|m| {
                        let rate = m as f64 / 60.0;
                        format!(
                            "; it admits {rate:.1} requests a second, so a cluster starting together stays under it with --spread of (nodes × runners ÷ {rate:.1}) seconds (README: Fleets)"
                        )
                    })
                    .unwrap_or_default();
                log::info!(
                    "{what}: 429 from GitLab's rate limit {}: {} requests before this host's beyond the period's quota; its turn in {:.1}s (the period ends in {}s){spread}",
                    limits.name.as_deref().unwrap_or("(unnamed)"),
                    t.ahead,
                    sleep.as_secs_f64(),
                    t.reset.as_secs()
                );
                crate::signals::sleep(sleep, &what)?;
                attempt += 1;
                continue;
            }
            let slow_before = match outcome {
                Outcome::Lost | Outcome::Status(500..=504)
                    if took >= retry::SLOW && retry_after.is_none() =>
                {
                    self.congested(t0)
                }
                _ => 0,
            };
            let mut next = backoff.next_after(
                retry_after,
                took,
                slow_before,
                Instant::now(),
                retry::random(),
            );
            if next.is_none()
                && !hinted
                && limits.name.is_none()
                && let Some(hint) = retry_after
                && let Some(last) = retry::last_try(
                    hint,
                    self.deadline.saturating_duration_since(Instant::now()),
                    retry::random(),
                )
            {
                hinted = true;
                log::warn!(
                    "{what}: {}; Retry-After {}s passes --wait {}s: trying once more within it",
                    cause.trim(),
                    hint.as_secs(),
                    self.wait.as_secs()
                );
                next = Some(last);
            }
            let Some(sleep) = next else {
                return Err(Error::new(
                    Kind::Unreachable,
                    format!(
                        "{what}: {}; gave up after {attempt} attempt{} in {:.1}s, as another would pass --wait {}s",
                        cause.trim(),
                        if attempt == 1 { "" } else { "s" },
                        start.elapsed().as_secs_f64(),
                        self.wait.as_secs()
                    ),
                ));
            };
            log::info!(
                "{what}: {}; retrying in {:.1}s",
                cause.trim(),
                sleep.as_secs_f64()
            );
            crate::signals::sleep(sleep, &what)?;
            attempt += 1;
        }
    }

    /// A slow failure of an attempt that started at `started`: the run is
    /// congested (one request in flight at a time from now on), and the
    /// number of congestion events before this one. Attempts that were in
    /// flight together when the last counted event ended are that event.
    fn congested(&self, started: Instant) -> u32 {
        let mut c = self.congestion();
        match c.1 {
            Some(end) if started < end => c.0.saturating_sub(1),
            _ => {
                c.0 += 1;
                c.1 = Some(Instant::now());
                c.0 - 1
            }
        }
    }

    /// A fast answer: the queue is gone.
    fn uncongested(&self) {
        *self.congestion() = (0, None);
    }

    fn congestion(&self) -> std::sync::MutexGuard<'_, (u32, Option<Instant>)> {
        self.congestion.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After an answer GitLab served: the pause before this run's next
    /// request, when an unthrottled answer's `RateLimit-Remaining` leaves
    /// no room for it, or a slow answer shows Puma's queue is long.
    fn paced(&self, what: &str, limits: &retry::Limits, took: Duration) {
        let mut pace = self.pace();
        let wait = pace.0.answered(limits, took, clock::now(), retry::random());
        if wait.is_zero() {
            return;
        }
        let at = Instant::now() + wait;
        if at > self.deadline {
            return;
        }
        pace.1 = Some(at);
        match &limits.name {
            Some(name) => log::info!(
                "{what}: GitLab's rate limit {name} has {} left this period; the next request in {:.1}s",
                limits.remaining.unwrap_or(0),
                wait.as_secs_f64()
            ),
            None => log::info!(
                "{what}: GitLab took {:.1}s to answer (a long queue); the next request in {:.1}s",
                took.as_secs_f64(),
                wait.as_secs_f64()
            ),
        }
    }

    /// The wait until this run's turn after a throttled answer, or the
    /// error that says, at once, that the throttle's period outlasts
    /// `--wait`. A turn estimated past `--wait` is tried at its end.
    fn turn(
        &self,
        what: &str,
        limits: &retry::Limits,
        t: &retry::Throttled,
        attempt: u32,
        start: Instant,
    ) -> Result<Duration> {
        let name = limits.name.as_deref().unwrap_or("(unnamed)");
        let now = Instant::now();
        let left = self.deadline.saturating_duration_since(now);
        if t.reset > left {
            let per_minute = limits
                .per_minute
                .map(|l| format!("RateLimit-Limit {l} a minute, "))
                .unwrap_or_default();
            return Err(Error::new(
                Kind::Unreachable,
                format!(
                    "{what}: 429: GitLab's rate limit {name} ({per_minute}{} counted this period) refuses this host until its period ends in {}s, past --wait {}s ({}s left); not waiting (attempt {attempt}, {:.1}s in)",
                    limits.observed.unwrap_or(0),
                    t.reset.as_secs(),
                    self.wait.as_secs(),
                    left.as_secs(),
                    start.elapsed().as_secs_f64(),
                ),
            )
            .hint(format!(
                "ask GitLab's admin to raise {name} or shorten its period for this network, or raise --wait and TimeoutStartSec= to cover the period and spread the hosts' starts (README: Fleets); --offline-ok starts gitlab-runner with the last config.toml"
            )));
        }
        let wait = t.reset.saturating_add(t.turn);
        if wait > left {
            log::warn!(
                "{what}: GitLab's rate limit {name}: {} requests are ahead of this host's, which need about {}s, past --wait {}s; trying once more at its end",
                t.ahead,
                wait.as_secs(),
                self.wait.as_secs()
            );
            return Ok(left);
        }
        Ok(wait)
    }

    /// Send once: the reply and what it said of GitLab's limits, or a
    /// transport error.
    #[allow(clippy::too_many_arguments)]
    fn once(
        &self,
        agent: &ureq::Agent,
        method: &str,
        path: &str,
        pat: Option<&Secret>,
        body: Option<&Value>,
        limit: u64,
        timeout: Option<Duration>,
    ) -> std::result::Result<(Reply, retry::Limits), ureq::Error> {
        let url = format!("{}{}", self.base, path);
        let builder = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Accept", "application/json");
        let builder = match pat {
            Some(p) => builder.header("PRIVATE-TOKEN", p.expose()),
            None => builder,
        };
        let shown = path.split('?').next().unwrap_or(path);
        let secrets = sent_secrets(pat, body);
        if let Some(b) = body {
            log::trace!("{method} {shown} -> {}", redacted(&b.to_string(), &secrets));
        }
        let response =
            match body {
                Some(b) => {
                    let req = builder
                        .header("Content-Type", "application/json")
                        .body(b.to_string())
                        .map_err(ureq::Error::Http)?;
                    match timeout {
                        Some(t) => agent
                            .run(agent.configure_request(req).timeout_global(Some(t)).build())?,
                        None => agent.run(req)?,
                    }
                }
                None => {
                    let req = builder.body(()).map_err(ureq::Error::Http)?;
                    match timeout {
                        Some(t) => agent
                            .run(agent.configure_request(req).timeout_global(Some(t)).build())?,
                        None => agent.run(req)?,
                    }
                }
            };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let limits = retry::Limits::parse(header);
        let next_page = header("x-next-page");
        let mut response = response;
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_string()?;
        log::trace!("{method} {shown} <- {status} {}", redacted(&body, &secrets));
        Ok((
            Reply {
                status,
                body,
                next_page,
                secrets,
            },
            limits,
        ))
    }
}

/// `text` for a URL query value: every byte but the unreserved
/// `A-Z a-z 0-9 - . _ ~` as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A TLS verification failure (never transient), with its cause.
fn tls_refusal(e: &ureq::Error) -> Option<String> {
    match e {
        ureq::Error::Tls(m) => Some(m.to_string()),
        ureq::Error::Rustls(r) => Some(r.to_string()),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => io
            .get_ref()
            .map(|inner| inner.to_string())
            .filter(|m| m.contains("certificate")),
        _ => None,
    }
}

/// The secrets a request sends: the `PRIVATE-TOKEN` and every `token` or
/// `*_token` value of its JSON body.
fn sent_secrets(pat: Option<&Secret>, body: Option<&Value>) -> Vec<Secret> {
    let mut out: Vec<Secret> = pat.into_iter().cloned().collect();
    if let Some(Value::Object(map)) = body {
        out.extend(
            map.iter()
                .filter(|(k, _)| *k == "token" || k.ends_with("_token"))
                .filter_map(|(_, v)| v.as_str())
                .map(Secret::new),
        );
    }
    out
}

/// Mask `secrets` and anything token-like in a text from GitLab.
fn masked(text: &str, secrets: &[Secret]) -> String {
    let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
    mask_tokens(text, &secrets)
}

/// A body for trace logs: JSON with every `token` value, every secret of
/// the request and anything token-like masked; anything else only by size.
fn redacted(body: &str, secrets: &[Secret]) -> String {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match v {
                        Value::String(s) if k == "token" || k.ends_with("_token") => {
                            *s = crate::secret::mask(s);
                        }
                        _ => walk(v),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            walk(&mut v);
            masked(&v.to_string(), secrets)
        }
        Err(_) => format!("({} bytes, not JSON)", body.len()),
    }
}

/// Did this transport error happen before the request could reach GitLab?
fn never_sent(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::Io(io) => {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::HostUnreachable
            )
            // a failed name lookup (getaddrinfo) comes as a plain I/O error
            || io.to_string().contains("failed to lookup address")
        }
        _ => false,
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, reply: &Reply) -> Result<T> {
    serde_json::from_str(&reply.body).map_err(|e| {
        // serde's own message may quote a value from the body: name the place only
        let problem = match e.classify() {
            serde_json::error::Category::Eof => "truncated JSON",
            serde_json::error::Category::Syntax => "malformed JSON",
            serde_json::error::Category::Data => "JSON of an unexpected shape",
            serde_json::error::Category::Io => "unreadable JSON",
        };
        Error::data(format!(
            "{what}: {} with an unreadable body ({}): {problem} at line {} column {}",
            reply.status,
            describe_body(&reply.body),
            e.line(),
            e.column()
        ))
    })
}

fn expiry(what: &str, value: Option<&str>) -> Result<Option<i64>> {
    match value {
        None => Ok(None),
        Some(v) => clock::parse(v).map(Some).ok_or_else(|| {
            Error::data(format!(
                "{what}: token_expires_at '{}' is not an RFC 3339 time",
                crate::untrusted::shown_max(v, 40)
            ))
        }),
    }
}

/// A runner id from an answer, checked (see [`crate::untrusted`]).
fn checked_id(what: &str, id: Option<u64>) -> Result<Option<u64>> {
    match id {
        Some(id) if !crate::untrusted::id_ok(id) => Err(Error::data(format!(
            "{what}: the answer's runner id {id} is not in 1..={}",
            crate::untrusted::ID_MAX
        ))),
        _ => Ok(id),
    }
}

/// The token an answer issued, checked before anything stores or renders
/// it (see [`crate::untrusted`]): one outside GitLab's alphabet is a junk
/// answer (65), and the caller names the runner it leaves behind.
fn issued(what: &str, reply: &Reply) -> Result<IssuedToken> {
    let a: TokenAnswer = decode(what, reply)?;
    let token = a.token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        Error::data(format!(
            "{what}: {} without a token in the answer",
            reply.status
        ))
    })?;
    let token = token.trim();
    if let Some(problem) = crate::untrusted::token_problem(token) {
        return Err(Error::data(format!(
            "{what}: {} with a token that is not a GitLab runner token ({problem}): not stored",
            reply.status
        )));
    }
    let id = checked_id(what, a.id)?;
    // The token is live now: an expiry that does not parse must not throw
    // it away. It is taken as unknown, and verify learns it next time.
    let expires_at = expiry(what, a.token_expires_at.as_deref()).unwrap_or_else(|e| {
        log::warn!("{e}; keeping the token, its expiry unknown");
        None
    });
    Ok(IssuedToken {
        id,
        token: Secret::new(token),
        expires_at,
    })
}

/// GitLab's error text from a JSON error body, if there is one, with the
/// request's secrets and anything token-like masked. Every error and log
/// line that quotes GitLab takes its words from here.
fn message(reply: &Reply) -> Option<String> {
    let text = serde_json::from_str::<ErrorBody>(&reply.body)
        .ok()?
        .text()?;
    // masked whole first: a cut must not leave half a token unmasked
    Some(crate::untrusted::shown_max(
        &masked(&text, &reply.secrets),
        MESSAGE_MAX,
    ))
}

/// How much of GitLab's error text a message quotes.
const MESSAGE_MAX: usize = 300;

fn describe_body(body: &str) -> String {
    let t = body.trim_start();
    if t.is_empty() {
        "empty".into()
    } else if t.starts_with('<') {
        "an HTML page, not the GitLab API: check --api-url".into()
    } else {
        format!("{} bytes", body.len())
    }
}

/// `403 Forbidden - invalid token supplied`: the status once, then GitLab's
/// text, which often starts with the status itself (`403 Forbidden - …`).
fn status_text(status: u16, detail: &str) -> String {
    let code = status.to_string();
    let detail = detail.trim();
    match detail.strip_prefix(&code) {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => detail.to_string(),
        _ if detail.is_empty() => code,
        _ => format!("{code} {detail}"),
    }
}

/// Routes every GitLab has (`what` as `METHOD /path`): a 404 for one of
/// them means the URL is not GitLab's API.
const EVERY_GITLAB: &[&str] = &["POST /runners", "DELETE /runners", "POST /runners/verify"];

/// An error for a status the caller did not expect, with GitLab's message.
fn unexpected(what: &str, reply: &Reply) -> Error {
    let msg = message(reply);
    let detail = msg.clone().unwrap_or_else(|| describe_body(&reply.body));
    let kind = match reply.status {
        401 | 403 => Kind::Denied,
        400 | 404 | 409 | 410 | 422 => Kind::Config,
        s if s >= 500 || s == 429 || s == 408 => Kind::Unreachable,
        _ => Kind::Data,
    };
    let hint = match (reply.status, msg) {
        (401, _) => "; check access-token / admin-token (missing, expired or revoked)",
        (403, Some(m)) if m.contains("insufficient_scope") => {
            "; the access token needs the api scope (create_runner for admin-token)"
        }
        (403, _) => "; the token lacks permission for this runner",
        (300..=399, _) => "; redirected: check --api-url",
        (404, _) if EVERY_GITLAB.contains(&what) && !detail.contains("check --api-url") => {
            "; check --api-url (GitLab answered 404 for the API itself)"
        }
        _ => "",
    };
    Error::new(
        kind,
        format!("{what}: {}{hint}", status_text(reply.status, &detail)),
    )
}

/// The system's CA bundles, in the order they are looked for.
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system CA bundle the client trusts (`SSL_CERT_FILE`, else the first
/// of [`BUNDLES`] that can be read) and its bytes; `None`: the bundled
/// Mozilla roots are used.
fn system_bundle() -> Option<(std::path::PathBuf, Vec<u8>)> {
    std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(BUNDLES.iter().map(std::path::PathBuf::from))
        .find_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
}

/// The path of the system CA bundle the client trusts (see [`system_bundle`]).
pub fn system_ca_bundle() -> Option<std::path::PathBuf> {
    system_bundle().map(|(p, _)| p)
}

/// The environment variables a proxy is read from, in ureq's order.
pub const PROXY_ENV: &[&str] = &[
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// The proxy the client connects through, read from the environment as
/// ureq reads it (the first of [`PROXY_ENV`] that names a proxy; `NO_PROXY`
/// exemptions) but skipping a variable that names a proxy this client
/// cannot use: ureq (built without its `socks-proxy` feature) ignores a
/// SOCKS proxy and connects directly, and would not look further for an
/// `HTTPS_PROXY`.
#[derive(Debug, Default)]
pub struct EnvProxy {
    /// The proxy, and the variable it came from.
    pub proxy: Option<(ureq::Proxy, &'static str)>,
    /// Each variable skipped, with its value without credentials.
    pub unusable: Vec<(&'static str, String)>,
}

impl EnvProxy {
    pub fn read() -> EnvProxy {
        let mut out = EnvProxy::default();
        for var in PROXY_ENV {
            let Some(value) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            match ureq::Proxy::new(&value).and_then(with_no_proxy) {
                Ok(p) if !is_socks(p.protocol()) => {
                    out.proxy = Some((p, var));
                    break;
                }
                _ => out
                    .unusable
                    .push((var, crate::secret::url_without_credentials(&value))),
            }
        }
        out
    }

    /// The proxy for `url` as `scheme://host:port` without credentials;
    /// `None` for a direct connection (none set, or `NO_PROXY` exempts it).
    pub fn for_url(&self, url: &str) -> Option<String> {
        let (proxy, _) = self.proxy.as_ref()?;
        let uri: ureq::http::Uri = url.parse().ok()?;
        if proxy.is_no_proxy(&uri) {
            return None;
        }
        let scheme = proxy.uri().scheme_str().unwrap_or("http");
        Some(format!("{scheme}://{}:{}", proxy.host(), proxy.port()))
    }

    /// A line for each skipped variable, and what the client does instead.
    pub fn unusable_text(&self) -> Option<String> {
        if self.unusable.is_empty() {
            return None;
        }
        let skipped: Vec<String> = self
            .unusable
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let instead = match &self.proxy {
            Some((p, var)) => format!(
                "connecting through {}://{}:{} (from {var}) instead",
                p.uri().scheme_str().unwrap_or("http"),
                p.host(),
                p.port()
            ),
            None => "connecting directly instead".to_string(),
        };
        Some(format!(
            "ignoring {}: not an http:// or https:// proxy (SOCKS is not supported); {instead}",
            skipped.join(", ")
        ))
    }
}

/// `p` with the exemptions of `NO_PROXY` (or `no_proxy`).
fn with_no_proxy(p: ureq::Proxy) -> std::result::Result<ureq::Proxy, ureq::Error> {
    let mut b = ureq::Proxy::builder(p.protocol())
        .host(p.host())
        .port(p.port())
        .resolve_target(p.resolve_target());
    if let Some(u) = p.username() {
        b = b.username(u);
    }
    if let Some(pw) = p.password() {
        b = b.password(pw);
    }
    let no_proxy = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default();
    for entry in no_proxy.split(',') {
        b = b.no_proxy(entry.trim());
    }
    b.build()
}

fn is_socks(p: ureq::ProxyProtocol) -> bool {
    use ureq::ProxyProtocol as P;
    matches!(p, P::Socks4 | P::Socks4A | P::Socks5 | P::Socks5h)
}

/// Trust: the system's CA bundle (or `SSL_CERT_FILE`) plus `ca_file`; the
/// bundled Mozilla roots when the system has no bundle.
fn root_certs(ca_file: Option<&Path>) -> Result<ureq::tls::RootCerts> {
    let mut certs = Vec::new();
    if let Some(f) = ca_file {
        crate::trust::check_parent_dirs(f)?;
        let pem = crate::trust::read(f, crate::trust::Class::Input)?
            .ok_or_else(|| Error::read(f, std::io::Error::from(std::io::ErrorKind::NotFound)))?;
        let found = pem_certs(&pem);
        if found.is_empty() {
            return Err(Error::config(format!(
                "failed to read {}: no PEM certificates in it",
                f.display()
            )));
        }
        certs.extend(found);
    }
    match system_bundle().map(|(_, pem)| pem) {
        Some(pem) => certs.extend(pem_certs(&pem)),
        None if certs.is_empty() => return Ok(ureq::tls::RootCerts::WebPki),
        None => {}
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

fn pem_certs(pem: &[u8]) -> Vec<ureq::tls::Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        let cases = [
            ("node12", "node12"),
            ("a-b.c_d~e", "a-b.c_d~e"),
            ("x&tag_list=", "x%26tag_list%3D"),
            ("a,b", "a%2Cb"),
            ("a b+c", "a%20b%2Bc"),
            ("100%", "100%25"),
            ("#?/", "%23%3F%2F"),
            ("ü", "%C3%BC"),
            ("\n\u{7f}", "%0A%7F"),
            ("", ""),
        ];
        for (text, want) in cases {
            assert_eq!(percent_encode(text), want, "{text:?}");
        }
    }

    #[test]
    fn the_status_is_shown_once() {
        let cases = [
            (
                403,
                "403 Forbidden - invalid token supplied",
                "403 Forbidden - invalid token supplied",
            ),
            (404, "404 Not Found", "404 Not Found"),
            (401, "401 Unauthorized", "401 Unauthorized"),
            (410, "410", "410"),
            (
                403,
                "insufficient_scope: more",
                "403 insufficient_scope: more",
            ),
            (400, "4000 things", "400 4000 things"),
            (500, "", "500"),
            (502, "  ", "502"),
        ];
        for (status, detail, want) in cases {
            assert_eq!(status_text(status, detail), want, "{status} {detail:?}");
        }
    }

    #[test]
    fn a_404_for_a_route_every_gitlab_has_points_at_the_api_url() {
        let reply = |body: &str| Reply {
            status: 404,
            body: body.to_string(),
            next_page: None,
            secrets: Vec::new(),
        };
        let not_found = reply(r#"{"message":"404 Not Found"}"#);
        let cases = [
            (
                "POST /runners",
                &not_found,
                "POST /runners: 404 Not Found; check --api-url (GitLab answered 404 for the API itself)",
            ),
            (
                "POST /runners/verify",
                &not_found,
                "POST /runners/verify: 404 Not Found; check --api-url (GitLab answered 404 for the API itself)",
            ),
            // a route older GitLab versions lack, or a runner that is gone: no hint
            (
                "GET /runners/7",
                &not_found,
                "GET /runners/7: 404 Not Found",
            ),
        ];
        for (what, r, want) in cases {
            let e = unexpected(what, r);
            assert_eq!(e.to_string(), want);
            assert_eq!(e.exit_code(), 78);
        }
        let html = reply("<html>not found</html>");
        assert_eq!(
            unexpected("POST /runners/verify", &html).to_string(),
            "POST /runners/verify: 404 an HTML page, not the GitLab API: check --api-url"
        );
    }

    #[test]
    fn trace_bodies_mask_tokens() {
        let body = r#"{"id":7,"token":"glrt-abcdefghijklmnopqrst","runners":[{"registration_token":"GR1348941abcdefghijklmnop"}]}"#;
        let out = redacted(body, &[]);
        assert!(
            !out.contains("abcdefghijklmnopqrst") && !out.contains("GR1348941abcdefghijklmnop"),
            "{out}"
        );
        assert!(
            out.contains(r#""token":"glrt-…qrst""#) && out.contains(r#""id":7"#),
            "{out}"
        );
        assert_eq!(redacted("<html>", &[]), "(6 bytes, not JSON)");
        let echo = r#"{"message":"bad: abcdefghijklmnopqrst, glpat-0123456789abcdefghij"}"#;
        let out = redacted(echo, &[Secret::new("abcdefghijklmnopqrst")]);
        assert_eq!(out, r#"{"message":"bad: …qrst, glpat-…ghij"}"#);
    }

    #[test]
    fn error_texts_mask_what_the_request_sent() {
        let body = json!({ "token": "abcdefghij0123456789", "description": "node12-shell" });
        let pat = Secret::new("notaprefix0123456789xyz");
        let reply = |text: &str| Reply {
            status: 400,
            body: text.to_string(),
            next_page: None,
            secrets: sent_secrets(Some(&pat), Some(&body)),
        };
        let cases = [
            (
                r#"{"message":"400 Bad request - token abcdefghij0123456789 from notaprefix0123456789xyz"}"#,
                "400 Bad request - token …6789 from …9xyz",
            ),
            (
                r#"{"message":{"token":["abcdefghij0123456789 is invalid"]}}"#,
                r#"{"token":["…6789 is invalid"]}"#,
            ),
            (
                r#"{"error":"invalid_token","error_description":"Token is expired."}"#,
                "invalid_token: Token is expired.",
            ),
            (
                r#"{"message":"404 Runner Not Found"}"#,
                "404 Runner Not Found",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(message(&reply(text)).as_deref(), Some(want), "{text}");
        }
        let r = reply(r#"{"message":"echo abcdefghij0123456789"}"#);
        let e = unexpected("POST /runners", &r).to_string();
        assert!(
            !e.contains("abcdefghij0123456789") && e.contains("…6789"),
            "{e}"
        );
        assert_eq!(
            r.body, r#"{"message":"echo abcdefghij0123456789"}"#,
            "raw body kept"
        );
    }
}
