//! RFC 3339 timestamps with a fixed nine-digit fraction, in UTC.
//!
//! Docker's json-file (`jsonlog.RFC3339NanoFixed`) and Scribe's log spec both
//! want `2024-03-21T10:00:00.123456789Z`: always nine fractional digits so the
//! strings sort and align, always `Z`.

use std::time::SystemTime;

use time::OffsetDateTime;

/// Appends `t` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC) to `out`; used by the
/// json-file encoder to format straight into its entry buffer.
pub fn write_rfc3339_nano(out: &mut Vec<u8>, t: SystemTime) {
    use std::io::Write;
    let dt = OffsetDateTime::from(t);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.nanosecond()
    );
}

/// Formats `t` as an RFC 3339 UTC string with nine fractional digits; the
/// timestamp form of json-file entries and Scribe's own records.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(30);
    write_rfc3339_nano(&mut out, t);
    // Only ASCII digits and punctuation were written.
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn epoch_and_fraction() {
        assert_eq!(
            rfc3339_nano(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_711_015_200, 123_456_789);
        assert_eq!(rfc3339_nano(t), "2024-03-21T10:00:00.123456789Z");
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_711_015_200, 5);
        assert_eq!(rfc3339_nano(t), "2024-03-21T10:00:00.000000005Z");
    }
}
