//! Naive calendar timestamps as microseconds since 1970-01-01T00:00:00 (no time zone: the SolARED
//! files store naive `datetime.datetime` values, TAI-tagged mid-times of each Doppler series).

/// One hour in the microseconds SolARED timestamps are kept in.
pub const HOUR: i64 = 3_600_000_000;

// The calendar itself is the engine's (its record times use it too).
pub use magpipe_engine::time::{civil_from_days, days_from_civil, days_in_month};

/// The broken-down fields of a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micro: u32,
}

impl Civil {
    /// A real calendar date and time of day (years 1–9999, as Python's `datetime`).
    pub fn is_valid(&self) -> bool {
        (1..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
            && self.micro < 1_000_000
    }

    pub fn to_micros(self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        secs * 1_000_000 + i64::from(self.micro)
    }

    pub fn from_micros(us: i64) -> Civil {
        let secs = us.div_euclid(1_000_000);
        let micro = us.rem_euclid(1_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            micro,
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`, Python's `str(datetime)` with microseconds always shown.
pub fn format_micros(us: i64) -> String {
    let c = Civil::from_micros(us);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.micro
    )
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` (also with a `T` separator).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let hour: u32 = t.next()?.parse().ok()?;
    let minute: u32 = t.next().unwrap_or("0").parse().ok()?;
    let second: u32 = t.next().unwrap_or("0").parse().ok()?;
    let micro: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").get(..6)?.parse().ok()?
    };
    let c = Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micro,
    };
    c.is_valid().then(|| c.to_micros())
}

/// The last instant a timestamp written to some precision covers: `2013-03-12 04:59` covers the
/// whole minute (so it includes the sample stamped 04:59:37.5), `2013-03-12` the whole day; with
/// a fraction it is exact.
pub fn parse_until(s: &str) -> Option<i64> {
    let start = parse_timestamp(s)?;
    let s = s.trim();
    let time = s.split_once([' ', 'T']).map(|(_, t)| t);
    let width = match time {
        None => 86_400_000_000,
        Some(t) if t.contains('.') => 1,
        Some(t) => match t.split(':').count() {
            1 => HOUR,
            2 => 60_000_000,
            _ => 1_000_000,
        },
    };
    Some(start + width - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_centuries() {
        for z in (-800_000..800_000).step_by(37) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn format_and_parse_agree() {
        let us = parse_timestamp("2013-03-07 18:59:37.5").unwrap();
        assert_eq!(format_micros(us), "2013-03-07 18:59:37.500000");
        assert_eq!(parse_timestamp("2013-02-29 00:00:00"), None);
    }

    #[test]
    fn until_covers_what_was_written() {
        let stamp = parse_timestamp("2013-03-12 04:59:37.5").unwrap();
        for covering in [
            "2013-03-12 04:59",
            "2013-03-12 04",
            "2013-03-12",
            "2013-03-12T04:59:37",
        ] {
            assert!(parse_until(covering).unwrap() >= stamp, "{covering}");
        }
        assert!(parse_until("2013-03-12 04:58").unwrap() < stamp);
        assert!(parse_until("2013-03-12 04:59:37.4").unwrap() < stamp);
        assert_eq!(parse_until("2013-03-12 04:59:37.5").unwrap(), stamp);
        assert_eq!(parse_until("next tuesday"), None);
    }
}
