// SPDX-License-Identifier: MIT
//! Time as the tool needs it: seconds since the Unix epoch, RFC 3339
//! timestamps (parsed with the `toml` crate's datetime parser), durations
//! such as `30s`, `5m`, `7d`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use toml::value::{Datetime, Offset};

/// What gitlab-runner writes for "no time".
pub const ZERO: &str = "0001-01-01T00:00:00Z";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parse an RFC 3339 date-time with an offset (`Z` or `±hh:mm`) into Unix
/// seconds; fractions are dropped. `None` for anything else.
pub fn parse(text: &str) -> Option<i64> {
    let dt: Datetime = text.trim().parse().ok()?;
    from_datetime(&dt)
}

/// Unix seconds of a TOML offset date-time.
pub fn from_datetime(dt: &Datetime) -> Option<i64> {
    let (date, time, offset) = (dt.date?, dt.time?, dt.offset?);
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let secs = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0));
    let offset_secs = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes) * 60,
    };
    // an offset can carry a time past year 9999 or before year 1, which
    // `format` (and TOML, and the state file) cannot write back
    Some(secs - offset_secs).filter(|t| (FIRST..=LAST).contains(t))
}

/// `0001-01-01T00:00:00Z` and `9999-12-31T23:59:59Z`: the times RFC 3339
/// and TOML can write, in Unix seconds.
const FIRST: i64 = -62_135_596_800;
const LAST: i64 = 253_402_300_799;

/// Format Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parse `30s`, `5m`, `2h`, `7d`, `1w` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_rfc_3339_cannot_write_are_refused() {
        assert_eq!(parse("0001-01-01T00:00:00Z"), Some(FIRST));
        assert_eq!(parse("9999-12-31T23:59:59Z"), Some(LAST));
        assert_eq!(format(FIRST), "0001-01-01T00:00:00Z");
        assert_eq!(format(LAST), "9999-12-31T23:59:59Z");
        for t in [
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+00:01",
            "0000-01-01T00:00:00+23:59",
        ] {
            assert_eq!(parse(t), None, "{t}");
        }
    }

    #[test]
    fn parses_gitlab_and_runner_timestamps() {
        let cases = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2021-09-27T21:05:03.203Z", Some(1_632_776_703)),
            ("2021-09-27T23:05:03+02:00", Some(1_632_776_703)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800)),
            ("0001-01-01T00:00:00Z", Some(-62_135_596_800)),
            ("2021-09-27", None),
            ("2021-09-27T21:05:03", None),
            ("junk", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), want, "{text}");
        }
    }

    #[test]
    fn format_round_trips() {
        for secs in [
            0,
            1_632_776_703,
            1_709_164_800,
            4_102_444_800,
            -62_135_596_800,
        ] {
            assert_eq!(parse(&format(secs)), Some(secs));
        }
        assert_eq!(format(-62_135_596_800), ZERO);
        assert_eq!(format(1_632_776_703), "2021-09-27T21:05:03Z");
    }

    #[test]
    fn durations() {
        let cases = [
            ("30s", Some(30)),
            ("5m", Some(300)),
            ("2h", Some(7200)),
            ("7d", Some(604_800)),
            ("1w", Some(604_800)),
            ("45", Some(45)),
            ("", None),
            ("5x", None),
            ("m", None),
            ("-1s", None),
            ("+1s", None),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551615s", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("18446744073709551615m", None),
            ("307445734561825860m", Some(18_446_744_073_709_551_600)),
            ("307445734561825861m", None),
            ("30500568904943041w", None),
            ("99999999999999999999999999999999d", None),
            ("٣s", None),
            ("5s5", None),
            ("1 s", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).map(|d| d.as_secs()), want, "{text}");
        }
    }
}
