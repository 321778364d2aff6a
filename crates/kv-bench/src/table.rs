//! Markdown tables as the reports print them: rows, durations and rates formatted alike in
//! every report, rounds pooled, and targets judged PASS or MISS.
//!
//! A target is judged on the median of the rounds' ratios, which one disturbed round cannot
//! swing; the reports list every round's ratio next to it, so the spread is in plain sight.
//! Formatting only: every number arrives measured.

use std::fmt::Write;
use std::time::Duration;

use crate::measure::Summary;

/// Appends `text` and a newline.
pub fn line(out: &mut String, text: &str) {
    let _ = writeln!(out, "{text}");
}

/// Appends one table row of `cells`.
pub fn row(out: &mut String, cells: &[String]) {
    line(out, &format!("| {} |", cells.join(" | ")));
}

/// The disk floor's table (see [`crate::disk`]), under its own heading.
pub fn disk_floor(out: &mut String, disk: &Summary) {
    line(out, "#### Disk floor\n");
    line(out, "| measurement | median | p99 | per second |\n|---|---:|---:|---:|");
    let cells = ["4 KiB write + fdatasync".into(), dur(disk.p50), dur(disk.p99), rate(disk)];
    row(out, &cells);
    line(out, "");
}

/// The rounds' `pick`ed summaries, pooled (see [`Summary::pooled`]).
pub fn pool<R>(rounds: &[R], pick: impl Fn(&R) -> Summary) -> Summary {
    Summary::pooled(&rounds.iter().map(pick).collect::<Vec<_>>())
}

/// The median of the rounds' `ratio`s, and every round's, listed as `1.02, 0.97, 1.10`.
pub fn per_round<R>(rounds: &[R], ratio: impl Fn(&R) -> f64) -> (f64, String) {
    let ratios: Vec<f64> = rounds.iter().map(ratio).collect();
    let listed = ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
    let mut sorted = ratios;
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    (median, listed)
}

/// `PASS` when `measured` is at most `limit`, else `MISS` with how far over it is.
pub fn at_most(measured: f64, limit: f64) -> String {
    if measured <= limit {
        "PASS".into()
    } else {
        format!("MISS ({} over)", percent(measured / limit - 1.0))
    }
}

/// `PASS` when `measured` is at least `floor`, else `MISS` with how far short it falls.
pub fn at_least(measured: f64, floor: f64) -> String {
    if measured >= floor {
        "PASS".into()
    } else {
        format!("MISS ({} short)", percent(1.0 - measured / floor))
    }
}

/// A fraction as a percentage, with a decimal when it is under 1% (a MISS by 0.4% should
/// not read as "0% over").
fn percent(fraction: f64) -> String {
    let percent = fraction * 100.0;
    if percent < 1.0 { format!("{percent:.1}%") } else { format!("{percent:.0}%") }
}

/// A latency with about three significant digits (`412 ns`, `1.27 µs`, `183 µs`, `6.29 ms`),
/// or nothing when the run did not report it.
pub fn dur(d: Option<Duration>) -> String {
    let Some(d) = d else { return String::new() };
    let ns = d.as_nanos() as f64;
    match ns {
        ns if ns < 1e3 => format!("{ns:.0} ns"),
        ns if ns < 1e4 => format!("{:.2} µs", ns / 1e3),
        ns if ns < 1e6 => format!("{:.0} µs", ns / 1e3),
        ns => format!("{:.2} ms", ns / 1e6),
    }
}

/// The operations per second of a run, as [`count`] formats it.
pub fn rate(s: &Summary) -> String {
    count(s.per_second())
}

/// A rate rounded to a whole number, with thousands separators: `12,345`.
pub fn count(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts_and_durations() {
        assert_eq!(count(1234567.4), "1,234,567");
        assert_eq!(count(999.0), "999");
        assert_eq!(dur(Some(Duration::from_nanos(412))), "412 ns");
        assert_eq!(dur(Some(Duration::from_nanos(183_400))), "183 µs");
        assert_eq!(dur(Some(Duration::from_nanos(6_290_000))), "6.29 ms");
        assert_eq!(dur(None), "");
    }

    #[test]
    fn judges_on_the_median_round() {
        let (median, listed) = per_round(&[3.0, 0.5, 1.0], |r| *r);
        assert_eq!((median, listed.as_str()), (1.0, "3.00, 0.50, 1.00"));
        assert_eq!(per_round(&[1.0, 2.0], |r| *r).0, 1.5);
        assert_eq!(at_most(1.21, 1.1), "MISS (10% over)");
        assert_eq!(at_least(2.4, 3.0), "MISS (20% short)");
        assert_eq!(at_most(1.104, 1.1), "MISS (0.4% over)");
    }
}
