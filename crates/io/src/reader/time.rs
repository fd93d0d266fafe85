//! The times `--since` and `--until` accept, as `docker logs` does: an RFC 3339 time (any
//! fraction, any offset, RFC3339Nano included), a Unix timestamp with an optional fraction
//! (`1711015200.123456789`), or a duration back from now (`10m`, `1h30m`, `1.5s`, `250ms`).
//! Also the fast parser of json-file `time` fields.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses a `--since`/`--until` value relative to `now` (durations count back from it).
pub fn parse_time_arg(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty time".into());
    }
    if s.contains('T') || s.contains('t') {
        return parse_rfc3339(s).ok_or_else(|| format!("{s:?} is not an RFC 3339 time"));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return parse_unix(s).ok_or_else(|| format!("{s:?} is not a Unix timestamp"));
    }
    let d = parse_duration(s).ok_or_else(|| {
        format!("{s:?} is neither an RFC 3339 time, a Unix timestamp nor a duration like 10m")
    })?;
    Ok(now.checked_sub(d).unwrap_or(UNIX_EPOCH))
}

/// `<seconds>[.<fraction up to 9 digits>]` since the epoch.
fn parse_unix(s: &str) -> Option<SystemTime> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || frac.len() > 9 || frac.contains('.') {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    for (i, b) in frac.bytes().enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Go's `time.ParseDuration` units: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; each number may have
/// a fraction; several parts add up (`1h30m`). A sign is refused (a duration is back from now).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return None;
        }
        let n: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Any RFC 3339 time (the `time` crate's parser), to the nanosecond.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    if let Some(t) = parse_fixed_utc(s.as_bytes()) {
        return Some(t);
    }
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let nanos = dt.unix_timestamp_nanos();
    let nanos = u128::try_from(nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(
        u64::try_from(nanos / 1_000_000_000).ok()?,
        (nanos % 1_000_000_000) as u32,
    ))
}

/// The json-file form, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, without the general parser: every entry
/// read has one, and the general parse was most of the cost of reading a file.
pub(crate) fn parse_fixed_utc(b: &[u8]) -> Option<SystemTime> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let mut v = 0u64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u64::from(c - b'0');
        }
        Some(v)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let nanos = match frac {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() && digits.len() <= 9 => {
            let v = num(20..20 + digits.len())?;
            (v * 10u64.pow(9 - digits.len() as u32)) as u32
        }
        _ => return None,
    };
    let days = days_from_civil(y as i64, mo as i64, d as i64);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + s) as i64;
    UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn rfc3339_forms() {
        let now = at(2_000_000_000, 0);
        let t = |s| parse_time_arg(s, now).unwrap();
        assert_eq!(t("2024-03-21T10:00:00Z"), at(1_711_015_200, 0));
        assert_eq!(
            t("2024-03-21T10:00:00.123456789Z"),
            at(1_711_015_200, 123_456_789)
        );
        assert_eq!(t("2024-03-21T10:00:00.5Z"), at(1_711_015_200, 500_000_000));
        assert_eq!(
            t("2024-03-21T12:00:00.5+02:00"),
            at(1_711_015_200, 500_000_000)
        );
        assert_eq!(t("2024-03-21t10:00:00z"), at(1_711_015_200, 0));
        assert!(parse_time_arg("2024-13-21T10:00:00Z", now).is_err());
        assert!(parse_time_arg("2024-03-21T10:00Z", now).is_err());
    }

    #[test]
    fn unix_forms() {
        let now = at(2_000_000_000, 0);
        let t = |s| parse_time_arg(s, now).unwrap();
        assert_eq!(t("1711015200"), at(1_711_015_200, 0));
        assert_eq!(t("1711015200.5"), at(1_711_015_200, 500_000_000));
        assert_eq!(t("1711015200.000000001"), at(1_711_015_200, 1));
        assert!(parse_time_arg("1711015200.0000000001", now).is_err());
        assert!(parse_time_arg("1.2.3", now).is_err());
        assert!(parse_time_arg(".5", now).is_err());
    }

    #[test]
    fn durations_back_from_now() {
        let now = at(2_000_000_000, 0);
        let t = |s| parse_time_arg(s, now).unwrap();
        assert_eq!(t("10m"), at(2_000_000_000 - 600, 0));
        assert_eq!(t("1h30m"), at(2_000_000_000 - 5400, 0));
        assert_eq!(t("1.5s"), at(1_999_999_998, 500_000_000));
        assert_eq!(t("250ms"), at(1_999_999_999, 750_000_000));
        assert_eq!(t("0s"), now);
        for bad in ["10", "", "m", "10x", "-5m", "1h-5m", "5 m"] {
            if bad == "10" {
                // A bare number is a Unix timestamp, not a duration.
                assert_eq!(t(bad), at(10, 0));
                continue;
            }
            assert!(parse_time_arg(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fixed_form_matches_general_parser() {
        for s in [
            "1970-01-01T00:00:00.000000000Z",
            "2000-02-29T23:59:59.999999999Z",
            "2024-03-21T10:00:00.123456789Z",
            "2100-12-31T00:00:00Z",
        ] {
            let general = OffsetDateTime::parse(s, &Rfc3339).unwrap();
            let fixed = parse_fixed_utc(s.as_bytes()).unwrap();
            assert_eq!(
                fixed.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128,
                general.unix_timestamp_nanos(),
                "{s}"
            );
        }
        assert_eq!(parse_fixed_utc(b"2024-03-21T10:00:00.Z"), None);
        assert_eq!(parse_fixed_utc(b"2024-03-21T10:00:00+01:00"), None);
    }
}
