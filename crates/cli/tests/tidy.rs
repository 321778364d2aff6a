//! Tidy checks over the whole workspace, run with the tests: every Rust file says what it is
//! in a `//!` header, and no test is ignored or left unfinished.

use std::path::{Path, PathBuf};

use anyhow::ensure;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() && name != "target" && !name.starts_with('.') {
            rust_files(&path, out)?;
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn workspace_files() -> anyhow::Result<Vec<PathBuf>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&crates, &mut files)?;
    ensure!(files.len() > 10, "found only {} Rust files under {}", files.len(), crates.display());
    Ok(files)
}

#[test]
fn every_rust_file_starts_with_a_module_doc() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for file in workspace_files()? {
        let text = std::fs::read_to_string(&file)?;
        let generated = text.starts_with("// @generated");
        if !generated && !text.trim_start().starts_with("//!") {
            missing.push(file.display().to_string());
        }
    }
    ensure!(missing.is_empty(), "files without a //! header: {missing:#?}");
    Ok(())
}

#[test]
fn no_ignored_or_unfinished_code() -> anyhow::Result<()> {
    let banned = [concat!("#[", "ignore]"), concat!("todo", "!("), concat!("unimplemented", "!(")];
    let mut found = Vec::new();
    for file in workspace_files()? {
        let text = std::fs::read_to_string(&file)?;
        for (n, line) in text.lines().enumerate() {
            if banned.iter().any(|b| line.contains(b)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    ensure!(found.is_empty(), "banned constructs: {found:#?}");
    Ok(())
}
