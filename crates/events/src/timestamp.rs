//! RFC3339Nano timestamps in UTC, the time format of every Scribe record.
//!
//! Scribe always writes `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: UTC, exactly nine
//! fractional digits (so lines sort and compare as plain strings). Reading is
//! lenient: any RFC3339 time (any offset, any number of fractional digits) is
//! accepted and converted to UTC.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Why a time could not become a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampError(String);

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimestampError {}

/// A point in time that formats as RFC3339Nano UTC; the `timestamp` field of
/// every record.
///
/// It is limited to the years 0000..=9999, the range RFC3339 can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current wall-clock time (the Unix epoch if the clock is outside
    /// RFC3339's range, which only a broken clock can be).
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now()).unwrap_or(Self(OffsetDateTime::UNIX_EPOCH))
    }

    /// Converts a `SystemTime`, failing outside the years 0000..=9999.
    pub fn from_system_time(t: SystemTime) -> Result<Self, TimestampError> {
        let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
            Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
            Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
        };
        let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .map_err(|e| TimestampError(format!("time out of range: {e}")))?;
        Self::checked(dt)
    }

    /// Parses any RFC3339 time (lenient: any offset and fraction length) into UTC.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let dt = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| TimestampError(format!("invalid RFC3339 time {s:?}: {e}")))?;
        Self::checked(dt.to_offset(UtcOffset::UTC))
    }

    /// Whether `s` is exactly the form Scribe writes: UTC `Z` suffix and nine
    /// fractional digits, and a valid time. Schema checks use this.
    pub fn is_canonical(s: &str) -> bool {
        let b = s.as_bytes();
        let shape_ok = b.len() == 30
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'.',
                29 => *c == b'Z',
                _ => c.is_ascii_digit(),
            });
        shape_ok && Self::parse(s).is_ok()
    }

    /// The same instant as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        let nanos = self.0.unix_timestamp_nanos();
        let magnitude =
            Duration::from_nanos(u64::try_from(nanos.unsigned_abs()).unwrap_or(u64::MAX));
        if nanos >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }

    fn checked(dt: OffsetDateTime) -> Result<Self, TimestampError> {
        if (0..=9999).contains(&dt.year()) {
            Ok(Self(dt))
        } else {
            Err(TimestampError(format!(
                "year {} is outside RFC3339's 0000..=9999",
                dt.year()
            )))
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        t.to_system_time()
    }
}

impl TryFrom<SystemTime> for Timestamp {
    type Error = TimestampError;
    fn try_from(t: SystemTime) -> Result<Self, Self::Error> {
        Self::from_system_time(t)
    }
}

impl fmt::Display for Timestamp {
    /// RFC3339Nano UTC with exactly nine fractional digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
            d.nanosecond()
        )
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Formats a `SystemTime` as RFC3339Nano UTC with nine fractional digits.
pub fn format_rfc3339_nano(t: SystemTime) -> Result<String, TimestampError> {
    Timestamp::from_system_time(t).map(|ts| ts.to_string())
}

/// Parses an RFC3339 time (any offset, any fraction) back into a `SystemTime`.
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, TimestampError> {
    Timestamp::parse(s).map(Timestamp::to_system_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_nine_digits_utc() {
        let t = UNIX_EPOCH + Duration::new(1_711_015_200, 123_456_789);
        assert_eq!(
            format_rfc3339_nano(t).as_deref(),
            Ok("2024-03-21T10:00:00.123456789Z")
        );
        let whole = UNIX_EPOCH + Duration::new(1_711_015_200, 0);
        assert_eq!(
            format_rfc3339_nano(whole).as_deref(),
            Ok("2024-03-21T10:00:00.000000000Z")
        );
    }

    #[test]
    fn parses_back_exactly() {
        let t = UNIX_EPOCH + Duration::new(1_711_015_200, 5);
        let s = format_rfc3339_nano(t).expect("in range");
        assert_eq!(parse_rfc3339(&s), Ok(t));
    }

    #[test]
    fn parse_is_lenient_and_converts_to_utc() {
        let ts = Timestamp::parse("2024-03-21T12:00:00.5+02:00").expect("valid");
        assert_eq!(ts.to_string(), "2024-03-21T10:00:00.500000000Z");
        let ts = Timestamp::parse("2024-03-21T10:00:00Z").expect("valid");
        assert_eq!(ts.to_string(), "2024-03-21T10:00:00.000000000Z");
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2024-03-21T10:00:00",
            "2024-13-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn canonical_form_is_strict() {
        assert!(Timestamp::is_canonical("2024-03-21T10:00:00.123456789Z"));
        for bad in [
            "2024-03-21T10:00:00.123456Z",
            "2024-03-21T10:00:00.123456789+00:00",
            "2024-03-21T10:00:00Z",
            "2024-02-30T10:00:00.123456789Z",
            "2024-03-21t10:00:00.123456789z",
        ] {
            assert!(!Timestamp::is_canonical(bad), "{bad:?}");
        }
    }

    #[test]
    fn now_round_trips_through_serde() {
        let ts = Timestamp::now();
        let json = serde_json::to_string(&ts).expect("serialize");
        let back: Timestamp = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, ts);
        assert!(Timestamp::is_canonical(json.trim_matches('"')));
    }

    #[test]
    fn out_of_range_is_an_error() {
        let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 24 * 3600 * 25);
        assert!(Timestamp::from_system_time(far).is_err());
    }
}
