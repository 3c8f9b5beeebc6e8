//! The one calendar: Unix time as RFC 3339 (the API's timestamps) and as the
//! people-facing `YYYY-MM-DD HH:MM:SS UTC` of the CLI and the web UI.

/// (year, month, day, hour, minute, second) of Unix seconds, UTC.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Unix seconds as an RFC 3339 UTC timestamp (`2026-11-18T11:06:40Z`).
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d, h, mi, s) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Days since the Unix epoch of a civil date (Howard Hinnant's days-from-civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An instant as a query gives it: Unix milliseconds (`1795000000000`) or RFC
/// 3339 (`2026-11-18T11:06:40Z`, `2026-11-18T12:06:40.5+01:00`; `t` and `z` in
/// any case, a space for `T`). None for anything else, or before 1970.
pub fn parse_instant(s: &str) -> Option<u64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in_month || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Fractional seconds: milliseconds kept, the rest of the digits dropped.
    let mut i = 19;
    let mut ms = 0;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let frac = &s[i + 1..i + 1 + digits];
        ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
        i += 1 + digits;
    }
    let offset_secs = match &s[i..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':' =>
        {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if zone.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    u64::try_from(secs * 1000 + ms).ok()
}

/// Unix milliseconds as `2026-11-18 11:06:40 UTC`; empty for 0 (never).
pub fn utc(ms: u64) -> String {
    if ms == 0 {
        return String::new();
    }
    let (y, m, d, h, mi, s) = civil(ms / 1000);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// 1536 -> "1.5 KiB".
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(0), "");
        assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06:40 UTC");
    }

    #[test]
    fn instants_parse_as_rfc3339_or_milliseconds() {
        assert_eq!(parse_instant("1795000000000"), Some(1_795_000_000_000));
        assert_eq!(
            parse_instant("2026-11-18T11:06:40Z"),
            Some(1_795_000_000_000)
        );
        assert_eq!(
            parse_instant("2026-11-18t11:06:40z"),
            Some(1_795_000_000_000)
        );
        assert_eq!(
            parse_instant("2026-11-18 12:06:40.5+01:00"),
            Some(1_795_000_000_500)
        );
        assert_eq!(
            parse_instant("2026-11-18T06:06:40.123456-05:00"),
            Some(1_795_000_000_123)
        );
        assert_eq!(parse_instant("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Some(0));
        for bad in [
            "",
            "yesterday",
            "2026-11-18",
            "2026-11-18T11:06:40",
            "2026-02-30T00:00:00Z",
            "2026-11-18T24:00:00Z",
            "2026-11-18T11:06:40.Z",
            "2026-11-18T11:06:40+0100",
            "1969-12-31T23:59:59Z",
            "-5",
            "2026-11-18T11:06:40Zjunk",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad:?}");
        }
        // Round trip with the writer.
        assert_eq!(
            parse_instant(&rfc3339(1_795_000_000)),
            Some(1_795_000_000_000)
        );
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
