// SPDX-License-Identifier: MIT
//! GitLab version profiles: what each GitLab the tool meets does differently
//! on the routes the tool calls, as [`World`] settings for the fake. The
//! scenario matrix (`tests/it/profiles.rs`) runs against every profile, and
//! the README's version table is checked against [`Profile::readme_row`].
//!
//! Every difference, with where it was read (the shared notes
//! `gitlab-facts-2026.md` and `gitlab-api.md` quote these files; a version
//! marked ≈ is worked out from a merge date, not a release note):
//!
//! | difference | profiles | source |
//! | --- | --- | --- |
//! | verify answers the plain text `200`, not `{id, token, token_expires_at}` | 13.12, 14.10 | gitlab MR !112168 (≈15.10); `lib/api/ci/runner.rb`, older versions `body "200"`; gitlab-runner `network/gitlab.go` (plain-text fallback) |
//! | (so `--stateless` cannot tell config.toml's token is the listed runner's: the tool re-issues tokens each start) | 13.12, 14.10 | follows from the row above |
//! | no `POST /runners/:id/reset_authentication_token` (404 route) | 13.12 | gitlab MR !69561 (≈14.3); `lib/api/ci/runners.rb` |
//! | no `POST /user/runners` (404 route) | 13.12, 14.10 | `doc/ci/runners/new_creation_workflow.md` (15.11: "`POST /user/runners` available") |
//! | no `GET /personal_access_tokens/self` (404) | 13.12, 14.10 | 15.5 per the issue and the README; not in the shared notes (**unconfirmed**) |
//! | no runner token expiry: no `token_expires_at` key, no `POST /runners/reset_authentication_token` | 13.12, 14.10 | `doc/ci/runners/configure_runners.md` (15.3 behind `enforce_runner_token_expires_at`, GA 15.5); gitlab MR !74336 (reset with the current token, ≈15.3); "very old versions returned only `id` and `token`" (`lib/api/entities/ci/runner_registration_details.rb`) |
//! | no runner managers: verify records no `system_id` | 13.12, 14.10, 15.11 | `ci_runner_machines`, 16.0; gitlab MR !118212 |
//! | registration tokens disabled by default: `POST /runners` 410 `runner registration disallowed` | 17.11, 18.11, 19.x, gitlab.com | gitlab MR !150296 (17.0); `lib/api/ci/runner.rb`; setting `allow_runner_registration_token` gitlab MR !147559 (16.11); not removed in 18.0 (gitlab#525239) |
//! | the admin setting turns registration tokens back on | 17.11, 18.11, 19.x | `doc/administration/settings/continuous_integration.md`; gitlab MR !147559 |
//! | created runners `glrt-…` | 15.11, 16.11 | gitlab MR !110275 (15.9/15.10) |
//! | registered runners: 20 characters, no prefix | 13.12 … 16.11 | `Devise.friendly_token`, `app/models/ci/runner.rb` |
//! | partition prefix `glrt-t1_`/`t2_`/`t3_`, `t1_…` alone for registered runners | 17.11 (issued and held), 19.x (held), gitlab.com (held) | gitlab MR !168017 (≈17.5); `app/models/ci/runner.rb` `prefix_for_new_and_legacy_runner` |
//! | `glrtr-…` for registered runners | 17.11, 18.11, 19.x | gitlab MR !183554 (≈17.11); gitlab#523581 |
//! | routable `glrt(r)-<payload>.01.<len><crc>`, partition in the payload | gitlab.com (group runners) | gitlab MR !170634 (flag `routable_runner_token`); `lib/authn/token_field/generator/routable_token.rb` |
//! | instance prefix before every token (`mycorp-glrt-…`) | 18.11 (flag on in this profile) | gitlab MR !206149 (≈18.6, flag `custom_prefix_for_all_token_types`, off by default) |
//! | per-IP budget of unauthenticated requests, then 429 `Retry later` with `Retry-After` and `RateLimit-*`; `POST /runners` exempt | gitlab.com | gitlab MR !260046 (`unauthenticated_traffic_per_ip`, 60 an hour, 2026-10-19); gitlab MR !50833 (headers) |
//! | 429 `Executing database migrations. Please retry later.` on any runner route | every profile (a fault the matrix injects) | `lib/api/ci/helpers/runner.rb` `check_if_backoff_required!` |
//!
//! Left out, and why:
//! * `GET /runners/:id/managers` (≈17.1, gitlab MR !153715): the tool never
//!   calls it, and the fake answers only what the tool sends.
//! * `token` in `GET /runners/:id` (before 13.0): no profile is that old
//!   (`World::details_with_token` still covers it in `stateless`).
//! * `token_expires_at` in `GET /runners/:id` (gitlab MR !253821, version
//!   unknown): the tool reads expiry from verify, not from the details.
//! * `POST /user/runners` `token_expires_at` / `token_rotation_deadline`
//!   (≈18.10, Premium): the tool does not send them.
//! * the 403 body of `POST /runners` before 16.x (`403 Forbidden` without
//!   "invalid token supplied"): the tool shows either.
//! * verify's `contacted_at` not bumped for `glrt-` tokens in 16.x–17.x:
//!   marked unconfirmed in the notes; the tool does not read it.
//! * the per-runner limit on new managers (gitlab MR !267108): behind flags
//!   that are off by default.
//! * gitlab.com's per-group `allow_runner_registration_token`: the fake
//!   keeps only the instance registration token.

use super::fake_gitlab::World;

/// Whether `POST /runners` takes a registration token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// On (GitLab up to 16.x).
    Enabled,
    /// Off by default (17.0+); `setting`: an admin may turn it back on.
    Disabled { setting: bool },
}

/// One GitLab version (or GitLab.com) as the tool sees it.
#[derive(Debug)]
pub struct Profile {
    pub name: &'static str,
    /// Verify answers `{id, token, token_expires_at}` (15.10+).
    pub verify_json: bool,
    /// `POST /runners/:id/reset_authentication_token` (14.3+).
    pub reset_by_id: bool,
    /// `POST /user/runners` (15.11+).
    pub user_runners: bool,
    /// `GET /personal_access_tokens/self` (15.5+).
    pub token_self: bool,
    /// Runner token expiry and self-rotation (15.5+).
    pub expiry: bool,
    /// Runner managers recorded by verify (16.0+).
    pub managers: bool,
    pub registration: Registration,
    /// `glrt-t1_…`, `t1_…` (≈17.5).
    pub partition: bool,
    /// Registered runners' prefix: `""` or `"glrtr-"` (≈17.11).
    pub registered_prefix: &'static str,
    /// Routable tokens (flag `routable_runner_token`).
    pub routable: bool,
    /// An instance prefix before every token (≈18.6, flag).
    pub instance_prefix: &'static str,
    /// Tokens an instance of this version may still hold from before an
    /// upgrade (or before a flag was turned on): tokens never change form
    /// until rotated.
    pub held: &'static [&'static str],
    /// GitLab.com's per-IP budget of unauthenticated requests an hour.
    pub unauthenticated_budget: Option<usize>,
    /// The runners are group runners of group 42 (GitLab.com: no user may
    /// create instance runners there).
    pub group: bool,
}

/// The tail of every example token [`Profile::held`] lists.
const HELD_BODY: &str = "Hk3mZp9QxW2sTn7vRb4c";

const V13_12: Profile = Profile {
    name: "13.12",
    verify_json: false,
    reset_by_id: false,
    user_runners: false,
    token_self: false,
    expiry: false,
    managers: false,
    registration: Registration::Enabled,
    partition: false,
    registered_prefix: "",
    routable: false,
    instance_prefix: "",
    held: &[],
    unauthenticated_budget: None,
    group: false,
};

const V14_10: Profile = Profile {
    name: "14.10",
    reset_by_id: true,
    ..V13_12
};

const V15_11: Profile = Profile {
    name: "15.11",
    verify_json: true,
    user_runners: true,
    token_self: true,
    expiry: true,
    ..V14_10
};

const V16_11: Profile = Profile {
    name: "16.11",
    managers: true,
    ..V15_11
};

const V17_11: Profile = Profile {
    name: "17.11",
    registration: Registration::Disabled { setting: true },
    partition: true,
    registered_prefix: "glrtr-",
    // registered under ≈17.5–17.10
    held: &["t1_Hk3mZp9QxW2sTn7vRb4c"],
    ..V16_11
};

const V18_11: Profile = Profile {
    name: "18.11",
    instance_prefix: "mycorp-",
    // issued before the instance prefix was turned on
    held: &["glrt-t1_Hk3mZp9QxW2sTn7vRb4c", "glrtr-Hk3mZp9QxW2sTn7vRb4c"],
    ..V17_11
};

const V19_X: Profile = Profile {
    name: "19.x",
    instance_prefix: "",
    // registered with GitLab 16 and 17.5–17.10
    held: &["Hk3mZp9QxW2sTn7vRb4c", "t1_Hk3mZp9QxW2sTn7vRb4c"],
    ..V18_11
};

const GITLAB_COM: Profile = Profile {
    name: "gitlab.com",
    registration: Registration::Disabled { setting: false },
    routable: true,
    // created before routable tokens, registered as a project runner
    held: &["glrt-t2_Hk3mZp9QxW2sTn7vRb4c", "t3_Hk3mZp9QxW2sTn7vRb4c"],
    unauthenticated_budget: Some(60),
    group: true,
    ..V19_X
};

/// Every profile, oldest first.
pub const PROFILES: &[Profile] = &[
    V13_12, V14_10, V15_11, V16_11, V17_11, V18_11, V19_X, GITLAB_COM,
];

/// The profile called `name`.
pub fn profile(name: &str) -> &'static Profile {
    PROFILES
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no profile {name}"))
}

impl World {
    /// The fake as GitLab `p` (registration tokens as that version has
    /// them by default).
    pub fn profile(p: &Profile) -> World {
        let mut w = World::default();
        w.legacy_verify = !p.verify_json;
        w.no_reset_by_id = !p.reset_by_id;
        w.no_user_runners = !p.user_runners;
        w.no_token_self = !p.token_self;
        w.no_token_expiry = !p.expiry;
        w.no_managers = !p.managers;
        w.registration_enabled = p.registration == Registration::Enabled;
        w.partition = p.partition;
        w.legacy_prefix = p.registered_prefix.to_string();
        w.routable = p.routable;
        w.instance_prefix = p.instance_prefix.to_string();
        w.unauthenticated_budget = p.unauthenticated_budget;
        w
    }
}

impl Profile {
    /// The options every run against this profile takes: group runners of
    /// group 42 on GitLab.com.
    pub fn args(&self) -> &'static [&'static str] {
        if self.group {
            &["--runner-type", "group_type", "--group-id", "42"]
        } else {
            &[]
        }
    }

    /// The runner type GitLab gives the runners the tool makes.
    pub fn runner_type(&self) -> &'static str {
        if self.group {
            "group_type"
        } else {
            "instance_type"
        }
    }

    /// Whether `admin` can make runners here by default: an access token
    /// needs `POST /user/runners`, a registration token needs registration
    /// on.
    pub fn creates_with(&self, admin: &str) -> bool {
        if admin.starts_with("glpat-") {
            self.user_runners
        } else {
            self.registration == Registration::Enabled
        }
    }

    /// The admin token the first run of most scenarios uses: an access
    /// token where `POST /user/runners` exists, else the registration token.
    pub fn admin(&self) -> &'static str {
        if self.user_runners {
            super::ADMIN_PAT
        } else {
            super::REGISTRATION_TOKEN
        }
    }

    /// Does `token` have the form this profile issues to a runner created
    /// with an access token (`user`) or a registration token?
    pub fn issued_form(&self, token: &str, user: bool) -> bool {
        let Some(t) = token.strip_prefix(self.instance_prefix) else {
            return false;
        };
        let hex20 = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let part = match (self.partition, self.group) {
            (false, _) => "",
            (true, true) => "t2_",
            (true, false) => "t1_",
        };
        if self.routable {
            let family = if user { "glrt-" } else { "glrtr-" };
            return t.strip_prefix(family).is_some_and(|rest| {
                let Some((payload, tail)) = rest.split_once(".01.") else {
                    return false;
                };
                (27..=300).contains(&payload.len())
                    && payload
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && tail.len() == 9
                    && tail
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            });
        }
        let rest = if user {
            t.strip_prefix("glrt-").and_then(|r| r.strip_prefix(part))
        } else if self.registered_prefix.is_empty() {
            t.strip_prefix(part)
        } else {
            t.strip_prefix(self.registered_prefix)
        };
        rest.is_some_and(hex20)
    }

    /// Every token form this profile may hold: one issued each way it
    /// issues tokens, and [`Profile::held`].
    pub fn forms(&self) -> Vec<String> {
        let mut w = World::profile(self);
        let mut out = Vec::new();
        for user in [true, false] {
            if user && !self.user_runners {
                continue;
            }
            let id = w.add_runner("x", &[], user);
            out.push(w.token_of(id));
        }
        out.extend(self.held.iter().map(|t| t.to_string()));
        out
    }

    /// The token forms, as the README shows them: `created: glrt-…;
    /// registered: 20 characters; held: t1_…`.
    pub fn forms_text(&self) -> String {
        let ip = self.instance_prefix;
        let part = match (self.partition, self.group) {
            (false, _) => "",
            (true, true) => "t2_",
            (true, false) => "t1_",
        };
        let created = if !self.user_runners {
            None
        } else if self.routable {
            Some(format!("`{ip}glrt-<payload>.01.<len><crc>`"))
        } else {
            Some(format!("`{ip}glrt-{part}…`"))
        };
        let registered = if self.routable {
            format!("`{ip}glrtr-<payload>.01.<len><crc>`")
        } else if !self.registered_prefix.is_empty() {
            format!("`{ip}{}…`", self.registered_prefix)
        } else if !part.is_empty() {
            format!("`{ip}{part}…`")
        } else {
            "20 characters".to_string()
        };
        let mut out: Vec<String> = created
            .map(|c| format!("created {c}"))
            .into_iter()
            .collect();
        out.push(format!("registered {registered}"));
        let held: Vec<String> = self
            .held
            .iter()
            .map(|t| match t.strip_suffix(HELD_BODY) {
                Some("") => "20 characters".to_string(),
                Some(p) => format!("`{p}…`"),
                None => format!("`{t}`"),
            })
            .collect();
        if !held.is_empty() {
            out.push(format!("held {}", held.join(", ")));
        }
        out.join("; ")
    }

    /// This profile's row of the README's version table.
    pub fn readme_row(&self) -> String {
        let yes_no = |b: bool, no: &str| if b { "yes" } else { no }.to_string();
        let verify = if self.verify_json {
            "JSON with the runner id".to_string()
        } else {
            "plain `200`: ids from `config.toml`".to_string()
        };
        let heal = yes_no(
            self.reset_by_id,
            "no (404): a new runner is made, the old one named",
        );
        let create = yes_no(self.user_runners, "no (404, exit 78)");
        let registration = match self.registration {
            Registration::Enabled => "yes".to_string(),
            Registration::Disabled { setting: true } => {
                "410 by default; the admin setting turns it on".to_string()
            }
            Registration::Disabled { setting: false } => "410".to_string(),
        };
        let forms = self.forms_text();
        let expiry = yes_no(self.expiry, "no: tokens never expire, nothing to rotate");
        let token_self = yes_no(self.token_self, "no: \"unknown\"");
        let stateless = if self.verify_json {
            "keeps the tokens"
        } else if self.reset_by_id {
            "keeps the tokens whose block fills `{type.id}`; fresh tokens by id for the others each start"
        } else {
            "keeps the tokens whose block fills `{type.id}`; new runners for the others each start"
        };
        let limits = match self.unauthenticated_budget {
            Some(n) => format!("migrations; {n} unauthenticated requests an hour per IP"),
            None => "migrations".to_string(),
        };
        format!(
            "| {} | {verify} | {heal} | {create} | {registration} | {} | {expiry} | {stateless} | {token_self} | {limits} |",
            self.name, forms
        )
    }
}

/// How a GitLab limits a cluster booting at once: the load profiles
/// `make loadtest` runs (`tests/it/load.rs`). Times are scaled down from
/// the real ones so that a run takes seconds; what a node is told (the
/// headers, the `Retry-After`) has the real form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// A flat 50 requests a second, the rest 429 with a `Retry-After` that
    /// says when there is room (no real GitLab; the first load test's).
    Flat,
    /// Rack::Attack's `throttle_unauthenticated_api`, per IP, in fixed
    /// periods: 300 requests a 10 s period (`RateLimit-Limit: 1800` a
    /// minute); a throttled answer carries the seven headers of gitlab MR
    /// !50833, `Retry-After` the time left in the period.
    FixedPeriod,
    /// The same with the `RateLimit-*` headers on unthrottled answers too
    /// (flag `rate_limiting_headers_for_unthrottled_requests`, gitlab MR
    /// !209485, ≈18.6).
    FixedPeriodHeaders,
    /// GitLab.com's `unauthenticated_traffic_per_ip`: 60 runner-token calls
    /// an hour per IP, `POST /runners` exempt (gitlab MR !260046). The
    /// cluster is behind one address: every node is 127.0.0.1.
    GitlabCom,
    /// A self-managed GitLab with no throttle (the default): Puma with 8
    /// slots (2 workers × 4 threads), 100 ms a request, a queue, and
    /// Workhorse's 502 after a 5 s proxy timeout (scaled down from
    /// Workhorse's `proxy_headers_timeout`).
    Puma,
    /// Database migrations for the first 20 s: every runner route answers
    /// 429 `Executing database migrations.` with GitLab's own
    /// `Retry-After: 60` (`check_if_backoff_required!`).
    Migrations,
}

impl Load {
    pub const ALL: [Load; 6] = [
        Load::Flat,
        Load::FixedPeriod,
        Load::FixedPeriodHeaders,
        Load::GitlabCom,
        Load::Puma,
        Load::Migrations,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Load::Flat => "flat 50 requests/s",
            Load::FixedPeriod => "fixed period: throttle_unauthenticated_api 300 per 10 s per IP",
            Load::FixedPeriodHeaders => {
                "fixed period, RateLimit-* on unthrottled answers too (18.6 flag)"
            }
            Load::GitlabCom => "GitLab.com: 60 unauthenticated requests an hour per IP, one NAT",
            Load::Puma => "Puma: 8 slots, 100 ms each, 502 after a 5 s proxy timeout",
            Load::Migrations => "database migrations for 20 s: 429 with Retry-After: 60",
        }
    }

    /// The `--spread` that keeps 500 nodes of two runners each under the
    /// limit: 1,000 requests at the throttle's rate (30 a second: 33 s),
    /// at Puma's (80 a second: 12.5 s) or the flat 50 a second (20 s),
    /// with a margin; `None` where no spread within `--wait` helps (an
    /// hour's quota, a migration).
    pub fn spread(self) -> Option<&'static str> {
        match self {
            Load::Flat => Some("25s"),
            Load::FixedPeriod | Load::FixedPeriodHeaders => Some("40s"),
            Load::Puma => Some("15s"),
            Load::GitlabCom | Load::Migrations => None,
        }
    }

    /// Puma's share of the floor: the seconds Puma needs to serve
    /// `requests` one slot-time each, with every slot busy.
    pub fn queueing_floor(self, requests: usize) -> Option<std::time::Duration> {
        match self {
            Load::Puma => Some(std::time::Duration::from_millis(100) * requests as u32 / 8),
            _ => None,
        }
    }

    pub fn apply(self, w: &mut World) {
        use super::fake_gitlab::{Puma, Throttle};
        use std::time::Duration;
        match self {
            Load::Flat => {
                w.rate_limit = Some(50);
                w.latency = Some(Duration::from_millis(50));
            }
            Load::FixedPeriod | Load::FixedPeriodHeaders => {
                let mut t =
                    Throttle::new("throttle_unauthenticated_api", 300, Duration::from_secs(10));
                t.headers_unthrottled = self == Load::FixedPeriodHeaders;
                w.throttles.push(t);
                w.latency = Some(Duration::from_millis(50));
            }
            Load::GitlabCom => {
                let mut t = Throttle::new(
                    "unauthenticated_traffic_per_ip",
                    60,
                    Duration::from_secs(3600),
                );
                t.exempt_register = true;
                w.throttles.push(t);
                w.latency = Some(Duration::from_millis(50));
            }
            Load::Migrations => {
                w.migrations = Some((Duration::from_secs(20), 60));
                w.latency = Some(Duration::from_millis(50));
            }
            Load::Puma => {
                w.puma = Some(Puma::new(
                    8,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                ));
            }
        }
    }
}
