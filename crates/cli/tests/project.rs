//! `strata project` end to end: from a directory, from a JSON payload, and its errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
    let cases = [
        (r#"{"../escape": {"text": "x"}}"#, ".."),
        (r#"{"/abs": {"text": "x"}}"#, "abs"),
        (r#"{"a": {"text": "x", "mode": "999"}}"#, "mode"),
        (r#"{"a": {"data": "not base64!"}}"#, "base64"),
        ("not json", "JSON"),
        (r#"{"..bar": {"text": "x"}}"#, "..bar"),
        (r#"{"a/../b": {"text": "x"}}"#, "a/../b"),
        (r#"{"/etc/passwd": {"text": "x"}}"#, "/etc/passwd"),
        (r#"{"": {"text": "x"}}"#, "empty"),
    ];
    // A refused payload leaves the target untouched: first a target that does not exist yet,
    // then one that exists with a file of its own.
    for existing in [false, true] {
        if existing {
            std::fs::create_dir_all(&target)?;
            std::fs::write(target.join("mine"), "keep")?;
        }
        check_refused(&strata, &target, &cases)?;
        if existing {
            let names: Vec<_> = std::fs::read_dir(&target)?
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            ensure!(names == ["mine"], "a refused payload changed the target: {names:?}");
        } else {
            ensure!(!target.exists(), "a refused payload created the target");
        }
    }
    Ok(())
}

/// Projects each JSON payload of `cases` into `target` and checks that it is refused with an
/// error containing the case's needle.
fn check_refused(strata: &Strata, target: &Path, cases: &[(&str, &str)]) -> anyhow::Result<()> {
    let target_arg = target.to_string_lossy();
    for &(json, needle) in cases {
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

#[test]
fn project_watch_follows_the_source_and_skips_a_bad_change() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let (src, target) = (strata.dir.path().join("src"), strata.dir.path().join("target"));
    std::fs::create_dir_all(src.join("conf"))?;
    std::fs::write(src.join("conf/app.toml"), "v = 1\n")?;
    let mut child = strata
        .command()
        .args(["project", "--watch", "--debounce-ms", "20", "--target"])
        .arg(&target)
        .arg("--from-dir")
        .arg(&src)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let watched = (|| {
        let file = target.join("conf/app.toml");
        wait_for(|| std::fs::read_to_string(&file).is_ok_and(|text| text == "v = 1\n"))?;
        // A change in a directory read after the start is seen too.
        std::fs::write(src.join("conf/app.toml"), "v = 2\n")?;
        wait_for(|| std::fs::read_to_string(&file).is_ok_and(|text| text == "v = 2\n"))?;
        // A name the writer keeps for itself is refused; the target keeps its last version
        // and the watcher goes on.
        std::fs::write(src.join("..data_x"), "no")?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        ensure!(child.try_wait()?.is_none(), "the watcher stopped on a refused payload");
        ensure!(std::fs::read_to_string(&file)? == "v = 2\n");
        std::fs::remove_file(src.join("..data_x"))?;
        std::fs::write(src.join("conf/app.toml"), "v = 3\n")?;
        wait_for(|| std::fs::read_to_string(&file).is_ok_and(|text| text == "v = 3\n"))
    })();
    child.kill()?;
    child.wait()?;
    watched
}

/// Waits up to ten seconds for `done`.
fn wait_for(mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        ensure!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}
