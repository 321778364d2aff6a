//! `strata completions SHELL` and `strata man DIR`: scripts and pages generated from the
//! command line's definition, checked by the programs that read them (bash, groff).

use std::process::Command;

use anyhow::ensure;
use strata_testkit::ensure_program;

use crate::util::Strata;

#[test]
fn bash_completion_is_valid_bash_and_knows_the_subcommands() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let script = strata.ok(&["completions", "bash"])?;
    for word in ["serve", "snapshotter", "tlog", "--log-format", "--tlog-listen"] {
        ensure!(script.contains(word), "the bash completion lacks {word}");
    }
    let file = strata.dir.path().join("strata.bash");
    std::fs::write(&file, &script)?;
    let output = Command::new("bash").arg("-n").arg(&file).output()?;
    ensure!(output.status.success(), "bash -n: {}", String::from_utf8_lossy(&output.stderr));
    // Sourced, it registers the completion function for `strata`.
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p strata", file.display()))
        .output()?;
    let registered = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success() && registered.contains("strata"), "{registered}");
    Ok(())
}

#[test]
fn completions_for_every_shell_and_a_clear_error_otherwise() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = strata.ok(&["completions", shell])?;
        ensure!(script.contains("snapshotter"), "{shell}: {script}");
    }
    let output = strata.run(&["completions", "tcsh"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.code() == Some(2) && stderr.contains("tcsh"), "{stderr}");
    Ok(())
}

#[test]
fn man_pages_for_every_subcommand_render_with_groff() -> anyhow::Result<()> {
    ensure_program("groff", "groff-base")?;
    let strata = Strata::new()?;
    let dir = strata.dir.path().join("man/man1");
    let printed = strata.ok(&["man", &dir.to_string_lossy()])?;
    for page in ["strata.1", "strata-serve.1", "strata-kv.1", "strata-tlog-serve.1"] {
        ensure!(dir.join(page).is_file(), "no {page} in {printed}");
        ensure!(printed.lines().any(|l| l.ends_with(&format!("/{page}"))), "{printed}");
    }
    ensure!(!dir.join("strata-help.1").exists(), "a page for the help subcommand");
    // groff formats the page without a warning, and the flags are in the text.
    let output = Command::new("groff")
        .args(["-man", "-Tascii", "-ww", "-P-cbu"])
        .arg(dir.join("strata-serve.1"))
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success() && stderr.trim().is_empty(), "groff: {stderr}");
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(text.contains("--tlog-listen") && text.contains("--log-format"), "{text}");
    Ok(())
}

#[test]
fn man_into_a_path_that_is_a_file_names_it() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let file = strata.dir.path().join("taken");
    std::fs::write(&file, "")?;
    let output = strata.run(&["man", &file.to_string_lossy()])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success() && stderr.contains("taken"), "{stderr}");
    ensure!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}
