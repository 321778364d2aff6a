//! The committed generated code must be exactly what capnpc makes of the schema today.
//!
//! Where the `capnp` tool is installed (scripts/test installs Debian's `capnproto`), this
//! regenerates the code into a temporary directory and compares. `UPDATE_GENERATED=1`
//! writes the fresh code over the committed file instead.

use std::path::Path;

#[test]
fn generated_code_is_fresh() -> Result<(), Box<dyn std::error::Error>> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir()?;
    capnpc::CompilerCommand::new()
        .src_prefix(crate_dir.join("schema"))
        .file(crate_dir.join("schema/tlog.capnp"))
        .output_path(out.path())
        .run()
        .map_err(|err| format!("capnp compile failed (is Debian's capnproto installed?): {err}"))?;
    let fresh = std::fs::read_to_string(out.path().join("tlog_capnp.rs"))?;
    let committed_path = crate_dir.join("src/generated/tlog_capnp.rs");
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&committed_path, &fresh)?;
    }
    let committed = std::fs::read_to_string(&committed_path)?;
    assert!(
        committed == fresh,
        "src/generated/tlog_capnp.rs is stale; run `UPDATE_GENERATED=1 cargo test -p strata-proto`"
    );
    Ok(())
}
