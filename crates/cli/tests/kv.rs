//! `strata kv` on both engines, and its errors.

use anyhow::ensure;

use crate::util::Strata;

fn round_trip(strata: &Strata, engine: &[&str]) -> anyhow::Result<()> {
    fn join<'a>(engine: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
        [engine, args].concat()
    }
    let with = |args: &[&'static str]| join(engine, args);
    strata.ok(&with(&["put", "vol/a", "alpha"]))?;
    strata.ok(&with(&["put", "vol/b", "beta"]))?;
    strata.ok(&with(&["put", "other", "x"]))?;
    ensure!(strata.ok(&with(&["get", "vol/a"]))? == "alpha\n");
    ensure!(strata.ok(&with(&["ls", "vol/"]))? == "vol/a\nvol/b\n");
    let json: serde_json::Value = serde_json::from_str(&strata.ok(&with(&["ls", "--json"]))?)?;
    ensure!(json.as_array().map(Vec::len) == Some(3), "{json}");
    ensure!(json[0]["key"] == "other" && json[0]["value"] == "x", "{json}");
    ensure!(strata.ok(&with(&["del", "--prefix", "vol/"]))? == "2\n");
    ensure!(strata.ok(&with(&["ls"]))? == "other\n");
    let missing = strata.run(&with(&["get", "vol/a"]))?;
    ensure!(missing.status.code() == Some(3), "absent key exits {:?}", missing.status);
    ensure!(String::from_utf8_lossy(&missing.stderr).contains("\"vol/a\": not found"));
    Ok(())
}

#[test]
fn kv_round_trip_on_redb() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    round_trip(&strata, &["kv"])?;
    ensure!(strata.dir.path().join("kv.redb").is_file(), "no kv.redb in the data directory");
    Ok(())
}

#[test]
fn kv_round_trip_on_etcd() -> anyhow::Result<()> {
    let etcd = strata_testkit::shared_etcd();
    let strata = Strata::new()?;
    let endpoint = etcd.endpoint();
    let prefix = format!("cli-{}/", std::process::id());
    round_trip(&strata, &["kv", "--etcd-endpoints", &endpoint, "--etcd-prefix", &prefix])?;
    ensure!(!strata.dir.path().join("kv.redb").exists(), "etcd engine touched the redb file");
    Ok(())
}

#[test]
fn engine_from_config_file() -> anyhow::Result<()> {
    let etcd = strata_testkit::shared_etcd();
    let strata = Strata::new()?;
    let config = strata.dir.path().join("strata.toml");
    let prefix = format!("cfg-{}/", std::process::id());
    let toml = format!(
        "[kv]\nengine = \"etcd\"\n[kv.etcd]\nendpoints = [\"{}\"]\nprefix = \"{prefix}\"\n",
        etcd.endpoint()
    );
    std::fs::write(&config, toml)?;
    let config = config.to_string_lossy();
    strata.ok(&["--config", &config, "kv", "put", "k", "from-config"])?;
    let direct = ["kv", "--etcd-endpoints", &etcd.endpoint(), "--etcd-prefix", &prefix, "get", "k"];
    ensure!(strata.ok(&direct)? == "from-config\n");
    Ok(())
}

#[test]
fn bad_config_and_unreachable_etcd_are_clear_errors() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let config = strata.dir.path().join("bad.toml");
    std::fs::write(&config, "[kv]\nengine = \"sqlite\"\n")?;
    let out = strata.run(&["--config", &config.to_string_lossy(), "kv", "ls"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2), "bad config exits {:?}: {stderr}", out.status);
    ensure!(stderr.contains("bad.toml") && stderr.contains("sqlite"), "{stderr}");

    let port = strata_testkit::free_port()?.to_string();
    let url = format!("http://127.0.0.1:{port}");
    let out =
        strata.command().env("STRATA_CONFIG", "/nonexistent.toml").args(["kv", "ls"]).output()?;
    ensure!(out.status.code() == Some(2), "missing config exits {:?}", out.status);
    let out = strata.run(&["kv", "--etcd-endpoints", &url, "ls"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(7), "unreachable etcd exits {:?}: {stderr}", out.status);
    ensure!(stderr.contains(&url), "{stderr}");
    Ok(())
}

/// A second server on one data directory is refused (redb allows one process per file),
/// while commands go through the first one's admin socket.
#[test]
fn second_server_on_one_data_dir_is_refused() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let (_server, _) = crate::util::serve(&strata, "serve.log")?;
    let out = strata.run(&[
        "serve",
        "--tlog-listen",
        "127.0.0.1:0",
        "--ckpt-listen",
        "127.0.0.1:0",
        "--nbd-listen",
        "127.0.0.1:0",
        "--hub-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && stderr.contains("already open"), "{stderr}");
    strata.ok(&["kv", "put", "k", "v"])?;
    ensure!(strata.ok(&["kv", "get", "k"])? == "v\n");
    Ok(())
}
