//! How commands show things to people: lines on standard output, times, progress bars.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

/// Prints `text` and a newline on standard output, flushed.
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// A progress bar on standard error in `template`'s style, hidden when standard error is
/// not a terminal.
pub(crate) fn progress_bar(template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A table of text columns sized to their widest cell, so long names never break the
/// columns. A heading that starts with `>` is right-aligned (numbers); the `>` is not shown.
pub(crate) struct Table {
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<const N: usize>(headings: [&str; N]) -> Table {
        let right = headings.iter().map(|h| h.starts_with('>')).collect();
        let head = headings.iter().map(|h| h.trim_start_matches('>').to_string()).collect();
        Table { right, rows: vec![head] }
    }

    /// Adds a row; it must have as many cells as there are headings.
    pub(crate) fn row<const N: usize>(&mut self, cells: [String; N]) {
        debug_assert_eq!(N, self.right.len(), "a row of another width than the headings");
        self.rows.push(cells.into());
    }

    /// The rows, two spaces between columns, no padding after the last.
    pub(crate) fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.right.len())
            .map(|c| self.rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let lines: Vec<String> = self
            .rows
            .iter()
            .map(|row| {
                let cells: Vec<String> = row
                    .iter()
                    .enumerate()
                    .map(|(c, cell)| match self.right[c] {
                        true => format!("{cell:>w$}", w = widths[c]),
                        false => format!("{cell:<w$}", w = widths[c]),
                    })
                    .collect();
                cells.join("  ").trim_end().to_string()
            })
            .collect();
        lines.join("\n")
    }
}

/// Unix nanoseconds from RFC 3339 (UTC) or from digits that already are nanoseconds.
pub(crate) fn parse_time(text: &str) -> Result<u64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|e| format!("{text:?}: {e}"));
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|e| {
        format!("{text:?}: {e}; give RFC 3339 in UTC (2026-11-21T10:00:00Z) or Unix nanoseconds")
    })?;
    let nanos = time.duration_since(UNIX_EPOCH).map_err(|_| format!("{text:?} is before 1970"))?;
    u64::try_from(nanos.as_nanos()).map_err(|_| format!("{text:?} is too far in the future"))
}

/// RFC 3339 of Unix nanoseconds.
pub(crate) fn rfc3339(nanos: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(nanos)).to_string()
}

/// Prints what a backup (`strata kv backup`, `strata snapshot backup`) copied.
pub(crate) fn backup(
    out: &mut impl std::io::Write,
    file: &std::path::Path,
    backup: &strata_kv::Backup,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let value =
            serde_json::json!({ "file": file, "keys": backup.keys, "revision": backup.revision });
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "{} keys copied to {}", backup.keys, file.display())?;
    }
    Ok(())
}

/// A size for people: `1.50 GiB` (powers of 1024). `--json` output keeps raw byte counts.
pub(crate) fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_fit_their_widest_cell() {
        let mut t = Table::new(["NAME", ">SIZE", "PATH"]);
        t.row(["a-rather-long-name".into(), "7".into(), "/x".into()]);
        t.row(["b".into(), "123456".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME                  SIZE  PATH\n\
             a-rather-long-name       7  /x\n\
             b                   123456"
        );
    }

    #[test]
    fn times_are_rfc3339_or_nanoseconds() {
        assert_eq!(parse_time("1700000000000000000"), Ok(1_700_000_000_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1_500_000_000));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(rfc3339(1_500_000_000), "1970-01-01T00:00:01.500000000Z");
    }
}
