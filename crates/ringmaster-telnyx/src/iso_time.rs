//! ISO-8601 instants as Telnyx writes them (`2018-02-02T22:25:27.521992Z`), to and from
//! [`Timestamp`].

use ringmaster_core::Timestamp;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Parses an RFC 3339 instant into milliseconds since the epoch; `None` if malformed or before 1970.
pub fn parse_iso(text: &str) -> Option<Timestamp> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).ok().map(Timestamp::from_millis)
}

/// Formats an instant the way Telnyx does: UTC, six fractional digits, `Z`.
pub fn format_iso(at: Timestamp) -> String {
    let nanos = i128::from(at.as_millis()) * 1_000_000;
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000000Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_microseconds_and_round_trips_millis() {
        let at = parse_iso("2018-02-02T22:25:27.521992Z").unwrap();
        assert_eq!(at.as_millis(), 1_517_610_327_521);
        assert_eq!(format_iso(at), "2018-02-02T22:25:27.521000Z");
        assert_eq!(parse_iso(&format_iso(at)), Some(at));
    }

    #[test]
    fn rejects_garbage_and_pre_epoch() {
        assert_eq!(parse_iso("yesterday"), None);
        assert_eq!(parse_iso("1969-12-31T23:59:59Z"), None);
    }
}
