//! `--log-format json` (or `STRATA_LOG_FORMAT=json`): every log line on standard error is one
//! JSON object with the level and the message under `fields`.

use anyhow::{Context, ensure};

use crate::util::Strata;

/// The JSON objects of `stderr`, failing on any line that is not one.
fn json_lines(stderr: &[u8]) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect()
}

#[test]
fn log_format_json_writes_one_object_per_line() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    // -vv: debug, at which opening the kv store logs.
    let by_flag = strata.command().args(["--log-format", "json", "-vv", "kv", "ls"]).output()?;
    let by_env =
        strata.command().env("STRATA_LOG_FORMAT", "json").args(["-vv", "kv", "ls"]).output()?;
    for output in [by_flag, by_env] {
        ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let lines = json_lines(&output.stderr)?;
        ensure!(!lines.is_empty(), "nothing logged");
        for line in &lines {
            ensure!(line["level"].is_string() && line["fields"]["message"].is_string(), "{line}");
        }
        let open = lines.iter().find(|l| l["fields"]["message"] == "kv store open");
        let open = open.context("no `kv store open` event")?;
        ensure!(open["level"] == "DEBUG" && open["fields"]["engine"] == "redb", "{open}");
    }
    Ok(())
}

#[test]
fn log_format_text_is_the_default_and_others_are_refused() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let output = strata.run(&["-vv", "kv", "ls"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(stderr.contains("kv store open") && !stderr.starts_with('{'), "{stderr}");
    let output = strata.run(&["--log-format", "xml", "kv", "ls"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.code() == Some(2) && stderr.contains("'xml'"), "{stderr}");
    Ok(())
}
