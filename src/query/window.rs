//! The time window and cluster a query is restricted to (`--since`,
//! `--until`, `--cluster`).
//!
//! A window restricts the relations themselves: `audit`, `audit_events` and
//! `requests` are views over the unrestricted `lake.*` tables with the
//! window's predicate, so plain SQL and named queries see the same rows. The
//! predicate names `dt` and `hour` as well as `request_received_at`, so the
//! partitions outside the window are never listed or opened, and row groups
//! inside them are skipped by their `request_received_at` statistics.
//! `since` is inclusive and `until` exclusive.

use chrono::{DateTime, NaiveDate, Utc};

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("--{flag} {value:?} is not a time: use RFC 3339 (`2026-11-20T09:00:00Z`, `2026-11-20T10:00:00+01:00`), a date (`2026-11-20`, midnight UTC), or a span back from now (`90s`, `15m`, `24h`, `7d`, `2w`)")]
    BadTime { flag: &'static str, value: String },
    #[error("--since {since} is not before --until {until}: the window would be empty")]
    Empty { since: String, until: String },
}

/// Which rows a query may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub cluster: Option<String>,
    /// Microseconds since the epoch, inclusive.
    pub since: Option<i64>,
    /// Microseconds since the epoch, exclusive.
    pub until: Option<i64>,
}

/// Parse a `--since`/`--until` value relative to `now_us`.
pub fn parse_time(flag: &'static str, value: &str, now_us: i64) -> Result<i64, WindowError> {
    let bad = || WindowError::BadTime {
        flag,
        value: value.to_string(),
    };
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc).timestamp_micros());
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros())
            .ok_or_else(bad);
    }
    let unit_at = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = v.split_at(unit_at);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .and_then(|s| s.checked_mul(1_000_000))
        .and_then(|us| now_us.checked_sub(us))
        .ok_or_else(bad)
}

/// RFC 3339 with microseconds, UTC.
/// `w`'s span in words: `--since … --until …`, `everything before …`, `the whole lake`.
pub fn describe(w: &Window) -> String {
    match (w.since, w.until) {
        (None, None) => "the whole lake".to_string(),
        (Some(s), None) => format!("--since {}", format_us(s)),
        (None, Some(u)) => format!("--until {}", format_us(u)),
        (Some(s), Some(u)) => format!("--since {} --until {}", format_us(s), format_us(u)),
    }
}

pub fn format_us(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| us.to_string())
}

fn partition_of(us: i64) -> Option<(String, String)> {
    let t = DateTime::<Utc>::from_timestamp_micros(us)?;
    Some((t.format("%Y-%m-%d").to_string(), t.format("%H").to_string()))
}

fn lit(s: &str) -> String {
    super::named::sql_literal(s)
}

impl Window {
    pub fn new(
        cluster: Option<String>,
        since: Option<&str>,
        until: Option<&str>,
        now_us: i64,
    ) -> Result<Window, WindowError> {
        let since_us = since.map(|s| parse_time("since", s, now_us)).transpose()?;
        let until_us = until.map(|s| parse_time("until", s, now_us)).transpose()?;
        if let (Some(s), Some(u)) = (since_us, until_us) {
            if s >= u {
                return Err(WindowError::Empty {
                    since: format_us(s),
                    until: format_us(u),
                });
            }
        }
        Ok(Window {
            cluster,
            since: since_us,
            until: until_us,
        })
    }

    pub fn is_everything(&self) -> bool {
        *self == Window::default()
    }

    /// The same window without its start: for questions that must see
    /// history before the window (what was *first* seen inside it).
    pub fn without_since(&self) -> Window {
        Window {
            since: None,
            ..self.clone()
        }
    }

    /// The SQL predicate over a relation's columns, or `None` for no limit.
    pub fn predicate(&self) -> Option<String> {
        let mut c = Vec::new();
        if let Some(cl) = &self.cluster {
            c.push(format!("cluster = {}", lit(cl)));
        }
        if let Some(s) = self.since {
            c.push(format!(
                "request_received_at >= to_timestamp_micros({})",
                lit(&format_us(s))
            ));
            if let Some((d, h)) = partition_of(s) {
                c.push(format!(
                    "dt >= {d} AND (dt > {d} OR hour >= {h})",
                    d = lit(&d),
                    h = lit(&h)
                ));
            }
        }
        if let Some(u) = self.until {
            c.push(format!(
                "request_received_at < to_timestamp_micros({})",
                lit(&format_us(u))
            ));
            // The last partition that can hold a row before `until`.
            if let Some((d, h)) = partition_of(u - 1) {
                c.push(format!(
                    "dt <= {d} AND (dt < {d} OR hour <= {h})",
                    d = lit(&d),
                    h = lit(&h)
                ));
            }
        }
        (!c.is_empty()).then(|| c.join(" AND "))
    }

    /// `since` as a SQL timestamp expression (the epoch when unset).
    pub fn since_sql(&self) -> String {
        format!(
            "to_timestamp_micros({})",
            lit(&format_us(self.since.unwrap_or(0)))
        )
    }

    /// `until` as a SQL timestamp expression (year 2100 when unset).
    pub fn until_sql(&self) -> String {
        format!(
            "to_timestamp_micros({})",
            lit(&format_us(self.until.unwrap_or(4_102_444_800_000_000)))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_168_800_000_000; // 2026-11-20T10:00:00Z

    #[test]
    fn times() {
        for (v, want) in [
            ("2026-11-20T09:00:00Z", Some(NOW - 3_600_000_000)),
            ("2026-11-20T10:00:00+01:00", Some(NOW - 3_600_000_000)),
            ("2026-11-20T09:59:59.5Z", Some(NOW - 500_000)),
            ("2026-11-20", Some(NOW - 10 * 3_600_000_000)),
            ("15m", Some(NOW - 900_000_000)),
            ("24h", Some(NOW - 86_400_000_000)),
            ("7d", Some(NOW - 7 * 86_400_000_000)),
            ("2w", Some(NOW - 14 * 86_400_000_000)),
            ("90s", Some(NOW - 90_000_000)),
            ("yesterday", None),
            ("15", None),
            ("15y", None),
            ("-5m", None),
            ("", None),
            ("2026-02-30", None),
            ("99999999999999999999d", None),
        ] {
            assert_eq!(parse_time("since", v, NOW).ok(), want, "{v}");
        }
        let e = parse_time("since", "yesterday", NOW)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--since") && e.contains("24h"), "{e}");
    }

    #[test]
    fn predicates() {
        assert_eq!(Window::default().predicate(), None);
        let w = Window::new(
            Some("prod".into()),
            Some("2026-11-20T09:30:00Z"),
            Some("2026-11-21T00:00:00Z"),
            NOW,
        )
        .expect("window");
        let p = w.predicate().expect("predicate");
        assert!(p.contains("cluster = 'prod'"), "{p}");
        assert!(
            p.contains("dt >= '2026-11-20' AND (dt > '2026-11-20' OR hour >= '09')"),
            "{p}"
        );
        // until is exclusive: midnight ends the day before.
        assert!(
            p.contains("dt <= '2026-11-20' AND (dt < '2026-11-20' OR hour <= '23')"),
            "{p}"
        );
        assert!(Window::new(None, Some("1h"), Some("2h"), NOW).is_err());
        assert_eq!(w.without_since().since, None);
        assert_eq!(w.without_since().until, w.until);
    }
}
