//! `strata project` end to end: from a directory, from a JSON payload, and its errors.

use std::os::unix::fs::PermissionsExt;

use anyhow::ensure;

use crate::util::Strata;

#[test]
fn project_from_dir_then_from_payload() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let src = strata.dir.path().join("src");
    let target = strata.dir.path().join("target");
    std::fs::create_dir_all(src.join("conf"))?;
    std::fs::write(src.join("conf/app.toml"), "port = 80\n")?;
    std::fs::write(src.join("secret"), "s3cr3t")?;
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o400))?;
    let (src_arg, target_arg) = (src.to_string_lossy(), target.to_string_lossy());
    strata.ok(&["project", "--target", &target_arg, "--from-dir", &src_arg])?;
    ensure!(std::fs::read_to_string(target.join("conf/app.toml"))? == "port = 80\n");
    let mode = std::fs::metadata(target.join("secret"))?.permissions().mode() & 0o777;
    ensure!(mode == 0o400, "mode {mode:o}");
    ensure!(std::fs::symlink_metadata(target.join("..data"))?.file_type().is_symlink());

    let payload = strata.dir.path().join("payload.json");
    std::fs::write(
        &payload,
        r#"{"only.txt": {"text": "hello", "mode": "0640"}, "b.bin": {"data": "AAEC"}}"#,
    )?;
    strata.ok(&["project", "--target", &target_arg, "--payload", &payload.to_string_lossy()])?;
    ensure!(std::fs::read_to_string(target.join("only.txt"))? == "hello");
    ensure!(std::fs::read(target.join("b.bin"))? == [0, 1, 2]);
    ensure!(!target.join("conf").exists() && !target.join("secret").exists(), "old files stayed");
    Ok(())
}

#[test]
fn project_refuses_bad_payloads_clearly() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let target = strata.dir.path().join("target");
    let target_arg = target.to_string_lossy();
    let cases = [
        (r#"{"../escape": {"text": "x"}}"#, ".."),
        (r#"{"/abs": {"text": "x"}}"#, "abs"),
        (r#"{"a": {"text": "x", "mode": "999"}}"#, "mode"),
        (r#"{"a": {"data": "not base64!"}}"#, "base64"),
        ("not json", "JSON"),
    ];
    for (json, needle) in cases {
        let payload = strata.dir.path().join("p.json");
        std::fs::write(&payload, json)?;
        let out = strata.run(&[
            "project",
            "--target",
            &target_arg,
            "--payload",
            &payload.to_string_lossy(),
        ])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2) || out.status.code() == Some(1),
            "{json}: {:?}",
            out.status
        );
        ensure!(
            !out.status.success() && stderr.to_lowercase().contains(&needle.to_lowercase()),
            "{json}: {stderr}"
        );
    }
    Ok(())
}
