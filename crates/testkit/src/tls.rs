//! Certificates for tests of TLS: a throwaway CA and a server certificate it signs.

use std::path::Path;
use std::process::Command;

use crate::ensure_program;

/// Writes a test CA (`ca.pem`, `ca.key`) and a server certificate for 127.0.0.1 signed by
/// it (`server.pem`, `server.key`) into `dir`, with `openssl`; valid for two days.
pub fn make_certificates(dir: &Path) -> anyhow::Result<()> {
    ensure_program("openssl", "openssl")?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
    )?;
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: [Vec<&str>; 3] = [
        [&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem"]].concat(),
        [&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr"]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    ];
    for (step, subject) in steps.iter().zip(["strata test ca", "127.0.0.1", ""]) {
        let mut command = Command::new("openssl");
        command.current_dir(dir).args(step).args(["-days", "2"]);
        if !subject.is_empty() {
            command.args(["-subj", &format!("/CN={subject}")]);
        }
        let output = command.output()?;
        anyhow::ensure!(output.status.success(), "openssl {step:?}: {output:?}");
    }
    Ok(())
}
