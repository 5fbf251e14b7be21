//! Kernel monotonic time to wall-clock time, and RFC 3339 with nanoseconds both ways.

/// realtime − monotonic, measured once at start (and refreshed), so kernel timestamps
/// (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) convert to wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    pub offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl WallClock {
    pub fn measure() -> Self {
        // Bracket the realtime read by two monotonic reads to halve the error.
        let m1 = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let m2 = clock_ns(libc::CLOCK_MONOTONIC);
        Self {
            offset_ns: r - (m1 + m2) / 2,
        }
    }

    /// Take a new offset when the wall clock moved against the monotonic one by more than
    /// `STEP_NS` (a clock step, or NTP slew adding up): events keep converting to the time the
    /// node shows. Below that the old offset stays, so measurement jitter never reorders
    /// events microseconds apart.
    pub fn refresh(&mut self) -> bool {
        self.adopt(Self::measure())
    }

    fn adopt(&mut self, now: Self) -> bool {
        const STEP_NS: i128 = 1_000_000;
        let moved = (now.offset_ns - self.offset_ns).abs() > STEP_NS;
        if moved {
            *self = now;
        }
        moved
    }

    pub fn wall_ns(&self, mono_ns: u64) -> i128 {
        mono_ns as i128 + self.offset_ns
    }

    pub fn now_mono_ns() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }

    pub fn now_wall_ns() -> i128 {
        clock_ns(libc::CLOCK_REALTIME)
    }
}

// Formatting is the engine's (one implementation of the calendar); parsing lives here.
pub use podlife_core::timeline::format_rfc3339;

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parse RFC 3339 (`Z` or `±hh:mm`, optional fraction) to wall-clock ns.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &frac[..digits.min(9)];
        nanos = kept.parse::<i128>().ok()? * 10i128.pow(9 - kept.len() as u32);
        rest = &frac[digits..];
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        // Bytes, not str slices: the offset may hold multi-byte characters (a query is any text).
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':' =>
        {
            let two = |r: std::ops::Range<usize>| -> Option<i64> {
                let t = tz.get(r)?;
                t.bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| t.parse().ok())?
            };
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (two(1..3)? * 3600 + two(4..6)? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_follows_a_step_but_not_jitter() {
        let mut c = WallClock {
            offset_ns: 1_000_000_000,
        };
        assert!(
            !c.adopt(WallClock {
                offset_ns: 1_000_000_500
            }),
            "jitter"
        );
        assert_eq!(c.offset_ns, 1_000_000_000);
        assert!(
            c.adopt(WallClock {
                offset_ns: 5_000_000_000
            }),
            "a 4 s step"
        );
        assert_eq!(c.wall_ns(1), 5_000_000_001);
    }

    #[test]
    fn round_trip() {
        let t = parse_rfc3339("2026-11-22T12:00:00.123456789Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-11-22T12:00:00.123456789Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00+01:00").unwrap(),
            parse_rfc3339("2024-02-28T23:00:00Z").unwrap()
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T12:00:00.5Z").unwrap() % 1_000_000_000,
            500_000_000
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-22 12:00",
            "2026-11-22T12:00:00",
            "2026-11-22T12:00:00.Z",
            "2026-11-22T12:00:00+0100",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// Found by the api_params fuzz target (fuzz/regressions/api_params/offset-multibyte): a
    /// multi-byte character in the offset panicked on a str slice.
    #[test]
    fn offset_with_multibyte_characters_is_refused() {
        assert_eq!(parse_rfc3339("2026-11-22t12:00:00.5-0\u{a451}0"), None);
        assert_eq!(parse_rfc3339("2026-11-22T12:00:00+\u{e9}:00"), None);
        assert_eq!(parse_rfc3339("2026-11-22T12:00:00+01:\u{e9}"), None);
        // Signs inside the offset digits were taken by i64's parser.
        assert_eq!(parse_rfc3339("2026-11-22T12:00:00-+1:00"), None);
        assert_eq!(
            parse_rfc3339("2026-11-22T12:00:00-05:30"),
            parse_rfc3339("2026-11-22T17:30:00Z")
        );
    }

    #[test]
    fn wall_clock_is_close_to_realtime() {
        let c = WallClock::measure();
        let diff = c.wall_ns(WallClock::now_mono_ns()) - WallClock::now_wall_ns();
        assert!(diff.abs() < 1_000_000_000, "{diff}");
    }
}
