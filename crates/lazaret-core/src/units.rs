//! Sizes ("25MB") and durations ("5m", "1h30m") as admins write them in the config
//! file and on the command line.

use serde::{Deserialize, Deserializer};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("invalid size {0:?}: expected a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. \"25MB\"")]
    Size(String),
    #[error("invalid duration {0:?}: expected numbers with units s, m, h, d or w, e.g. \"90s\", \"1h30m\", \"7d\"")]
    Duration(String),
}

/// A byte count. KB/MB/GB are decimal (as mail size limits are usually quoted),
/// KiB/MiB/GiB binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, UnitError> {
        let err = || UnitError::Size(text.to_string());
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| err())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            _ => return Err(err()),
        };
        n.checked_mul(mult).map(Size).ok_or_else(err)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if self.0 >= 1_000_000_000 {
            write!(f, "{:.1} GB", b / 1e9)
        } else if self.0 >= 1_000_000 {
            write!(f, "{:.1} MB", b / 1e6)
        } else if self.0 >= 1_000 {
            write!(f, "{:.1} KB", b / 1e3)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

/// A span of time in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub u64);

impl Duration {
    pub fn parse(text: &str) -> Result<Duration, UnitError> {
        let err = || UnitError::Duration(text.to_string());
        let t = text.trim();
        if t.is_empty() {
            return Err(err());
        }
        let mut total: u64 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if split == 0 {
                return Err(err());
            }
            let n: u64 = rest[..split].parse().map_err(|_| err())?;
            let unit_len = rest[split..]
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len() - split);
            let mult = match &rest[split..split + unit_len] {
                "s" => 1,
                "m" => 60,
                "h" => 3_600,
                "d" => 86_400,
                "w" => 604_800,
                _ => return Err(err()),
            };
            total = n
                .checked_mul(mult)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(err)?;
            rest = &rest[split + unit_len..];
        }
        Ok(Duration(total))
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

/// Accepts either a string with a unit or a bare integer (bytes / seconds).
fn string_or_int<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(u64),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::S(s) => s,
        Raw::I(i) => i.to_string(),
    })
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Size::parse(&string_or_int(d)?).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = string_or_int(d)?;
        if let Ok(secs) = s.parse::<u64>() {
            return Ok(Duration(secs));
        }
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("25MB"), Ok(Size(25_000_000)));
        assert_eq!(Size::parse("25 mb"), Ok(Size(25_000_000)));
        assert_eq!(Size::parse("1KiB"), Ok(Size(1024)));
        assert_eq!(Size::parse("512"), Ok(Size(512)));
        assert!(Size::parse("25XB").is_err());
        assert!(Size::parse("MB").is_err());
        assert!(Size::parse("99999999999999999999GB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("90s"), Ok(Duration(90)));
        assert_eq!(Duration::parse("1h30m"), Ok(Duration(5400)));
        assert_eq!(Duration::parse("7d"), Ok(Duration(604_800)));
        assert!(Duration::parse("").is_err());
        assert!(Duration::parse("h").is_err());
        assert!(Duration::parse("5x").is_err());
        assert!(Duration::parse("5").is_err());
    }
}
