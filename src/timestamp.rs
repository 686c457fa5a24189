//! Instants with nanosecond precision, as `google.protobuf.Timestamp` stores them.

use std::fmt;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDateTime, Utc};

/// An instant: seconds since the Unix epoch (negative before 1970) and nanoseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

/// A malformed time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Text that is not an RFC 3339 time.
    #[error("malformed time {0:?}: want RFC 3339, e.g. 2026-11-24T21:20:32.123456789Z")]
    Parse(String),
    /// Nanoseconds outside 0..=999,999,999 or an instant outside years 1..=9999.
    #[error("time out of range: seconds {secs}, nanos {nanos}")]
    OutOfRange {
        /// The seconds field.
        secs: i64,
        /// The nanos field.
        nanos: i64,
    },
}

/// The smallest instant we accept: 0001-01-01T00:00:00Z.
const MIN_SECS: i64 = -62_135_596_800;
/// The largest whole second we accept: 9999-12-31T23:59:59Z.
const MAX_SECS: i64 = 253_402_300_799;

impl Timestamp {
    /// The instant from its fields, checked for range.
    pub fn new(secs: i64, nanos: i64) -> Result<Timestamp, TimeError> {
        if !(0..1_000_000_000).contains(&nanos) || !(MIN_SECS..=MAX_SECS).contains(&secs) {
            return Err(TimeError::OutOfRange { secs, nanos });
        }
        Ok(Timestamp {
            secs,
            nanos: nanos as u32,
        })
    }

    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// Seconds since the Unix epoch.
    pub fn secs(&self) -> i64 {
        self.secs
    }

    /// Nanoseconds within the second.
    pub fn nanos(&self) -> u32 {
        self.nanos
    }

    /// Parses RFC 3339 with any offset (`Z`, `+05:30`, ...), or the mount's compact
    /// form `2026-11-24_21-20-32.123456789Z`.
    pub fn parse(text: &str) -> Result<Timestamp, TimeError> {
        let bad = || TimeError::Parse(text.chars().take(80).collect());
        if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
            return Timestamp::try_from_chrono(dt.with_timezone(&Utc)).map_err(|_| bad());
        }
        let naive =
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d_%H-%M-%S%.fZ").map_err(|_| bad())?;
        if !text.ends_with('Z') {
            return Err(bad());
        }
        Timestamp::try_from_chrono(naive.and_utc()).map_err(|_| bad())
    }

    fn try_from_chrono(dt: DateTime<Utc>) -> Result<Timestamp, TimeError> {
        Timestamp::new(dt.timestamp(), i64::from(dt.timestamp_subsec_nanos()))
    }

    fn to_chrono(self) -> DateTime<Utc> {
        // In range by construction.
        DateTime::from_timestamp(self.secs, self.nanos).unwrap_or_default()
    }

    /// UTC RFC 3339 with exactly nine fractional digits: `2026-11-24T21:20:32.123456789Z`.
    pub fn to_rfc3339(&self) -> String {
        self.to_chrono()
            .format("%Y-%m-%dT%H:%M:%S%.9fZ")
            .to_string()
    }

    /// The colon-free form: `2026-11-24_21-20-32.123456789Z`.
    pub fn to_compact(&self) -> String {
        self.to_chrono()
            .format("%Y-%m-%d_%H-%M-%S%.9fZ")
            .to_string()
    }

    /// As the protobuf message.
    pub fn to_proto(&self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.secs,
            nanos: self.nanos as i32,
        }
    }

    /// From the protobuf message, checked.
    pub fn from_proto(p: &prost_types::Timestamp) -> Result<Timestamp, TimeError> {
        Timestamp::new(p.seconds, i64::from(p.nanos))
    }

    /// As a `SystemTime` (for file attributes).
    pub fn to_system_time(&self) -> SystemTime {
        let d = std::time::Duration::new(self.secs.unsigned_abs(), 0);
        let base = if self.secs >= 0 {
            SystemTime::UNIX_EPOCH + d
        } else {
            SystemTime::UNIX_EPOCH - d
        };
        base + std::time::Duration::from_nanos(u64::from(self.nanos))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let (mut s, mut n) = (-(d.as_secs() as i64), d.subsec_nanos());
                if n > 0 {
                    s -= 1;
                    n = 1_000_000_000 - n;
                }
                (s, n)
            }
        };
        Timestamp {
            secs: secs.clamp(MIN_SECS, MAX_SECS),
            nanos,
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Timestamp, TimeError> {
        Timestamp::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_formats_utc9() {
        let t = Timestamp::parse("2021-03-04T11:36:07.123456789+05:30").unwrap();
        assert_eq!(t.to_rfc3339(), "2021-03-04T06:06:07.123456789Z");
        assert_eq!(t.to_compact(), "2021-03-04_06-06-07.123456789Z");
        assert_eq!(Timestamp::parse(&t.to_compact()).unwrap(), t);
        let z = Timestamp::parse("0001-01-01T00:00:00Z").unwrap();
        assert_eq!(z.secs(), -62_135_596_800);
        assert_eq!(z.to_rfc3339(), "0001-01-01T00:00:00.000000000Z");
        let pre = Timestamp::parse("1969-12-31T23:59:59.999999999Z").unwrap();
        assert_eq!((pre.secs(), pre.nanos()), (-1, 999_999_999));
        assert!(pre < Timestamp::new(0, 0).unwrap());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2021-13-01T00:00:00Z",
            "2021-01-01 00:00:00",
            "2021-01-01_00-00-00.0",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        assert!(Timestamp::new(0, 1_000_000_000).is_err());
        assert!(Timestamp::new(0, -1).is_err());
    }

    #[test]
    fn system_time_round_trip() {
        let t = Timestamp::parse("1969-07-20T20:17:40.000000001Z").unwrap();
        assert_eq!(Timestamp::from(t.to_system_time()), t);
        let t = Timestamp::parse("2026-11-24T21:20:32.5Z").unwrap();
        assert_eq!(Timestamp::from(t.to_system_time()), t);
    }
}
