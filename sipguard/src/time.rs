//! The two clocks sipguard deals with, and how times are written and read.
//!
//! The data plane stamps bans, budgets and events with boot-time nanoseconds
//! (`CLOCK_BOOTTIME`, which keeps counting across suspend); people read UTC. Calendar work is
//! jiff's.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::{Timestamp, civil::DateTime, tz::TimeZone};

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Nanoseconds since boot, the clock of the data plane (`bpf_ktime_get_boot_ns`).
pub fn boot_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// A data-plane timestamp as seconds since the Unix epoch (0 stays 0).
pub fn boot_ns_to_unix(boot_ns: u64) -> u64 {
    if boot_ns == 0 {
        return 0;
    }
    let unix_ns = Clock::now().unix_ns(boot_ns);
    u64::try_from(unix_ns.div_euclid(1_000_000_000)).unwrap_or(0)
}

/// Converts data-plane (boot-time) nanoseconds to wall-clock time, with the offset between the
/// two taken once (take a new one now and then: NTP moves the wall clock).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    pub fn now() -> Clock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Clock {
            offset_ns: unix - i128::from(boot_now_ns()),
        }
    }

    /// A clock whose boot time 0 is `unix_ns` (tests).
    pub const fn with_offset(unix_ns: i128) -> Clock {
        Clock { offset_ns: unix_ns }
    }

    /// Unix nanoseconds of a boot-time stamp.
    pub fn unix_ns(&self, boot_ns: u64) -> i128 {
        i128::from(boot_ns) + self.offset_ns
    }
}

/// Renders `unix` (seconds since the epoch) as UTC, e.g. `2026-11-26 04:28:08Z`; 0 is `never`.
pub fn format_time(unix: u64) -> String {
    if unix == 0 {
        return "never".to_string();
    }
    match i64::try_from(unix)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
    {
        Some(time) => time.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        None => format!("{unix} (out of range)"),
    }
}

/// A span of seconds as operators write it: `1h`, `1h30m`, `45s`, `2d`, `0s`.
pub fn format_duration(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    let mut rest = seconds;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            text.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    text
}

/// `2026-11-26T05:30:01.123456Z`: RFC 3339, UTC, microseconds.
pub fn rfc3339_micros(unix_ns: i128) -> String {
    let time = Timestamp::from_nanosecond(unix_ns).unwrap_or(Timestamp::UNIX_EPOCH);
    time.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Seconds since the epoch from `2026-11-26T04:00:00Z` (or with a space, or without `Z`: UTC),
/// or from a duration meaning that long ago (`30m`, `2h`).
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(ago) = crate::policy::parse_duration(text) {
        return Ok(now_unix().saturating_sub(ago.as_secs()));
    }
    let bad = || format!("'{text}' is not a time (2026-11-26T04:00:00Z) or a duration ago (30m)");
    let civil = text.trim().trim_end_matches('Z').replacen(' ', "T", 1);
    let time: DateTime = civil.parse().map_err(|_| bad())?;
    let stamp = TimeZone::UTC.to_timestamp(time).map_err(|_| bad())?;
    u64::try_from(stamp.as_second()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_utc() {
        assert_eq!(format_time(0), "never");
        assert_eq!(format_time(1_795_667_288), "2026-11-26 04:28:08Z");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(
            rfc3339_micros(1_795_667_288_123_456_789),
            "2026-11-26T04:28:08.123456Z"
        );
        assert_eq!(rfc3339_micros(1_000_000_000), "1970-01-01T00:00:01.000000Z");
    }

    #[test]
    fn durations_render_as_written() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(3600), "1h");
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(2 * 86_400 + 61), "2d1m1s");
    }

    #[test]
    fn times_parse_back() {
        for unix in [951_782_400u64, 1_795_667_288] {
            let text = format_time(unix);
            assert_eq!(parse_time(&text.replace(' ', "T")), Ok(unix), "{text}");
            assert_eq!(parse_time(&text), Ok(unix), "{text}");
            assert_eq!(parse_time(text.trim_end_matches('Z')), Ok(unix), "{text}");
        }
        let ago = parse_time("30m").unwrap();
        assert!(now_unix() - ago >= 1800);
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
        assert!(parse_time("2026-02-30T00:00:00Z").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn boot_time_converts_to_wall_time() {
        let now = now_unix();
        let converted = boot_ns_to_unix(boot_now_ns());
        assert!(converted.abs_diff(now) <= 1, "{converted} vs {now}");
        assert_eq!(boot_ns_to_unix(0), 0);
    }
}
