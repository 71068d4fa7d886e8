//! When a connector may make delivery attempts: `always`, `never`, or windows such as
//! `mon-fri 18:00-06:00, sat-sun` in the server's local time zone.
//!
//! A window is `[DAYS] [HH:MM-HH:MM]`: DAYS is a day (`mon`) or a range (`mon-fri`,
//! `fri-mon`), or `daily`; without DAYS every day, without times the whole day. A window
//! whose end is before its start runs past midnight and belongs to the day it starts on,
//! so `mon-fri 18:00-06:00` is open from Friday 18:00 to Saturday 06:00 too.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Always,
    Never,
    Windows(Vec<Window>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit n set: open on weekday n (0 = Sunday, as `tm_wday`).
    days: u8,
    /// Minutes after midnight; `end` may be 1440.
    start: u16,
    end: u16,
}

const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const ALL_DAYS: u8 = 0x7f;

/// A moment as the schedule sees it: weekday (0 = Sunday) and minute of the day.
#[derive(Debug, Clone, Copy)]
pub struct LocalMoment {
    pub weekday: u8,
    pub minute: u16,
}

impl LocalMoment {
    /// Now, in the server's local time zone (libc's `localtime_r`, which follows TZ
    /// and /etc/localtime; the `time` crate refuses local offsets in threaded programs).
    pub fn now() -> LocalMoment {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as libc::time_t)
            .unwrap_or(0);
        // SAFETY: localtime_r writes only into the tm we own.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        if !ok {
            return LocalMoment {
                weekday: 0,
                minute: 0,
            };
        }
        LocalMoment {
            weekday: tm.tm_wday.clamp(0, 6) as u8,
            minute: (tm.tm_hour * 60 + tm.tm_min).clamp(0, 1439) as u16,
        }
    }
}

impl Schedule {
    pub fn is_open(&self, at: LocalMoment) -> bool {
        match self {
            Schedule::Always => true,
            Schedule::Never => false,
            Schedule::Windows(windows) => windows.iter().any(|w| w.contains(at)),
        }
    }

    pub fn is_open_now(&self) -> bool {
        self.is_open(LocalMoment::now())
    }
}

impl Window {
    fn on(&self, weekday: u8) -> bool {
        self.days & (1 << weekday) != 0
    }

    fn contains(&self, at: LocalMoment) -> bool {
        if self.start < self.end {
            self.on(at.weekday) && at.minute >= self.start && at.minute < self.end
        } else {
            let yesterday = (at.weekday + 6) % 7;
            (self.on(at.weekday) && at.minute >= self.start)
                || (self.on(yesterday) && at.minute < self.end)
        }
    }
}

fn parse_day(s: &str) -> Option<u8> {
    DAY_NAMES
        .iter()
        .position(|d| s.eq_ignore_ascii_case(d))
        .map(|n| n as u8)
}

fn parse_days(s: &str) -> Result<u8, String> {
    if s.eq_ignore_ascii_case("daily") {
        return Ok(ALL_DAYS);
    }
    let bad = || format!("{s:?} is not a day or day range (mon, mon-fri, daily)");
    match s.split_once('-') {
        None => parse_day(s).map(|d| 1 << d).ok_or_else(bad),
        Some((a, b)) => {
            let (a, b) = (parse_day(a).ok_or_else(bad)?, parse_day(b).ok_or_else(bad)?);
            let mut days = 0u8;
            let mut d = a;
            loop {
                days |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
            Ok(days)
        }
    }
}

fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

fn parse_times(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a time range (HH:MM-HH:MM)");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (start, end) = (
        parse_clock(a).ok_or_else(bad)?,
        parse_clock(b).ok_or_else(bad)?,
    );
    if start == end || start == 1440 {
        return Err(format!("{s:?} is an empty time range"));
    }
    Ok((start, end))
}

fn parse_window(s: &str) -> Result<Window, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let (days, times) = match words.as_slice() {
        [one] if one.contains(':') => (ALL_DAYS, parse_times(one)?),
        [one] => (parse_days(one)?, (0, 1440)),
        [d, t] => (parse_days(d)?, parse_times(t)?),
        _ => {
            return Err(format!(
                "{s:?} is not a window like \"mon-fri 18:00-06:00\""
            ))
        }
    };
    Ok(Window {
        days,
        start: times.0,
        end: times.1,
    })
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Schedule, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("always") {
            return Ok(Schedule::Always);
        }
        if s.eq_ignore_ascii_case("never") {
            return Ok(Schedule::Never);
        }
        if s.is_empty() {
            return Err(
                "empty schedule (always, never, or windows like \"mon-fri 18:00-06:00\")".into(),
            );
        }
        s.split(',')
            .map(|w| parse_window(w.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(Schedule::Windows)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clock = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        if self.days == ALL_DAYS {
            f.write_str("daily")?;
        } else {
            let names: Vec<&str> = (0..7)
                .filter(|d| self.on(*d))
                .map(|d| DAY_NAMES[d as usize])
                .collect();
            f.write_str(&names.join("+"))?;
        }
        if (self.start, self.end) != (0, 1440) {
            write!(f, " {}-{}", clock(self.start), clock(self.end))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(weekday: u8, hh: u16, mm: u16) -> LocalMoment {
        LocalMoment {
            weekday,
            minute: hh * 60 + mm,
        }
    }

    #[test]
    fn overnight_window_belongs_to_its_start_day() {
        let s: Schedule = "mon-fri 18:00-06:00".parse().unwrap();
        assert!(s.is_open(at(1, 18, 0))); // Monday evening
        assert!(s.is_open(at(2, 5, 59))); // Tuesday early morning
        assert!(!s.is_open(at(2, 6, 0)));
        assert!(s.is_open(at(6, 3, 0))); // Saturday morning, from Friday
        assert!(!s.is_open(at(1, 3, 0))); // Monday morning: Sunday is not in the window
        assert!(!s.is_open(at(0, 20, 0))); // Sunday evening
    }

    #[test]
    fn several_windows_days_only_and_times_only() {
        let s: Schedule = "mon-fri 18:00-06:00, sat-sun".parse().unwrap();
        assert!(s.is_open(at(0, 12, 0)));
        assert!(!s.is_open(at(1, 3, 0))); // a whole-day window ends at midnight
        let t: Schedule = "09:00-17:00".parse().unwrap();
        assert!(t.is_open(at(3, 9, 0)) && !t.is_open(at(3, 17, 0)));
        let w: Schedule = "fri-mon".parse().unwrap();
        assert!(w.is_open(at(0, 1, 0)) && w.is_open(at(1, 23, 59)) && !w.is_open(at(2, 0, 0)));
        assert!(Schedule::Always.is_open(at(3, 3, 3)) && !Schedule::Never.is_open(at(3, 3, 3)));
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in [
            "",
            "mon-fry",
            "mon 25:00-06:00",
            "mon 10:00-10:00",
            "a b c",
            "18:00",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
    }
}
