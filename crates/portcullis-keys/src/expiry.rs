//! Parsing of `--expires` and `--grace`, and the RFC 3339 form stored in an
//! ApiKey.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

/// Value of `--expires`: a point in time, or a duration from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// An RFC 3339 time such as `2030-01-31T00:00:00Z`.
    At(DateTime<Utc>),
    /// A duration such as `90d` or `12h`, counted from when the command runs.
    After(Duration),
}

impl Expiry {
    /// Resolves the expiry against `now`, rejecting a time that is not in
    /// the future.
    pub fn resolve(self, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        let at = match self {
            Expiry::At(at) => at,
            Expiry::After(duration) => add_duration(now, duration)?,
        };
        if at <= now {
            return Err(format!(
                "--expires {} is in the past; give a future RFC 3339 time or a duration such as 90d",
                format_time(at)
            ));
        }
        Ok(at)
    }
}

/// Parses `--expires`: an RFC 3339 time, or a duration in humantime syntax
/// (`30d`, `12h`, `1h 30m`).
pub fn parse_expiry(text: &str) -> Result<Expiry, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Expiry::At(at.with_timezone(&Utc)));
    }
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("the duration must be longer than zero".into()),
        Ok(duration) => Ok(Expiry::After(duration)),
        Err(error) => Err(format!(
            "{text:?} is neither an RFC 3339 time (2030-01-31T00:00:00Z) \
             nor a duration (90d, 12h, 1h 30m): {error}"
        )),
    }
}

/// Parses `--grace`: a duration in humantime syntax, longer than zero.
pub fn parse_grace(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err(
            "the grace period must be longer than zero; omit --grace to drop the old key at once"
                .into(),
        ),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!(
            "{text:?} is not a duration (examples: 10m, 24h, 7d): {error}"
        )),
    }
}

/// Adds a duration to a time and rounds up to a whole second, so stored
/// times read `2030-01-31T00:00:00Z` and a grace period is never shorter
/// than requested. Results that chrono cannot represent are rejected.
pub fn add_duration(time: DateTime<Utc>, duration: Duration) -> Result<DateTime<Utc>, String> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|delta| time.checked_add_signed(delta))
        .and_then(round_up_to_second)
        .ok_or_else(|| {
            format!(
                "the duration {} is too long",
                humantime::format_duration(duration)
            )
        })
}

fn round_up_to_second(time: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let whole = time.trunc_subsecs(0);
    if whole == time {
        Some(whole)
    } else {
        whole.checked_add_signed(chrono::Duration::seconds(1))
    }
}

/// Formats a time as stored in an ApiKey: RFC 3339 in UTC, whole seconds
/// unless the time has a fraction.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 time from an ApiKey field.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn expiry_parses_rfc3339_utc() {
        let expiry = parse_expiry("2030-01-31T00:00:00Z").unwrap();
        let expected = Utc.with_ymd_and_hms(2030, 1, 31, 0, 0, 0).unwrap();
        assert_eq!(expiry, Expiry::At(expected));
    }

    #[test]
    fn expiry_parses_rfc3339_offset() {
        let expiry = parse_expiry("2030-01-31T02:00:00+02:00").unwrap();
        let expected = Utc.with_ymd_and_hms(2030, 1, 31, 0, 0, 0).unwrap();
        assert_eq!(expiry, Expiry::At(expected));
    }

    #[test]
    fn expiry_parses_durations() {
        let cases = [
            ("90d", 90 * 86_400),
            ("12h", 12 * 3_600),
            ("1h 30m", 5_400),
            ("45s", 45),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_expiry(text).unwrap(),
                Expiry::After(Duration::from_secs(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn expiry_rejects_garbage() {
        for text in ["", "soon", "2030-01-31", "2030-01-31 00:00", "-5m", "0s"] {
            assert!(parse_expiry(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn expiry_resolves_duration_from_now() {
        let at = Expiry::After(Duration::from_secs(3_600))
            .resolve(noon())
            .unwrap();
        assert_eq!(at, Utc.with_ymd_and_hms(2030, 1, 1, 13, 0, 0).unwrap());
    }

    #[test]
    fn duration_rounds_up_to_second() {
        let now = noon() + chrono::Duration::milliseconds(250);
        let at = Expiry::After(Duration::from_secs(60)).resolve(now).unwrap();
        assert_eq!(format_time(at), "2030-01-01T12:01:01Z");
    }

    #[test]
    fn expiry_rejects_past_time() {
        let past = Expiry::At(Utc.with_ymd_and_hms(2029, 12, 31, 0, 0, 0).unwrap());
        let error = past.resolve(noon()).unwrap_err();
        assert!(error.contains("in the past"), "{error}");
        assert!(Expiry::At(noon()).resolve(noon()).is_err());
    }

    #[test]
    fn expiry_rejects_overflowing_duration() {
        let huge = Expiry::After(Duration::from_secs(u64::MAX));
        assert!(huge.resolve(noon()).is_err());
    }

    #[test]
    fn grace_parses_durations() {
        assert_eq!(parse_grace("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_grace("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_grace("7d").unwrap(), Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn grace_rejects_zero_and_garbage() {
        for text in ["0s", "", "later", "2030-01-31T00:00:00Z", "-1h"] {
            assert!(parse_grace(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn format_time_round_trips() {
        let text = format_time(noon());
        assert_eq!(text, "2030-01-01T12:00:00Z");
        assert_eq!(parse_time(&text).unwrap(), noon());
    }
}
