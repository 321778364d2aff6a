//! Bearer tokens: `tokens.json` in the hub's directory holds, per token, its user and the
//! BLAKE3 hash of the token (never the token). `strata hub token create` replaces the file
//! atomically; a running server notices the new file (inode, size, mtime) and re-reads it,
//! so tokens work without a restart.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The file's name in the hub's directory.
pub const TOKENS_FILE: &str = "tokens.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenEntry {
    user: String,
    /// Hex BLAKE3 of the token.
    hash: String,
    created_at: u64,
}

/// What identifies one version of the tokens file: inode, size, mtime.
type Stamp = (u64, u64, i64, i64);

/// The tokens of one hub directory, re-read when the file changes.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    cache: Mutex<(Option<Stamp>, HashMap<String, String>)>,
}

fn hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

fn read_file(path: &Path) -> Result<TokenFile> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupted(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

impl Tokens {
    /// The tokens in `dir/tokens.json` (none while the file is missing).
    pub fn open(dir: &Path) -> Tokens {
        Tokens { path: dir.join(TOKENS_FILE), cache: Mutex::new((None, HashMap::new())) }
    }

    /// The user `token` belongs to, if any.
    pub fn user_for(&self, token: &str) -> Result<Option<String>> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        let mut cache =
            self.cache.lock().map_err(|_| Error::Corrupted("token cache poisoned".into()))?;
        if cache.0 != stamp || stamp.is_none() {
            let file = read_file(&self.path)?;
            cache.1 = file.tokens.into_iter().map(|t| (t.hash, t.user)).collect();
            cache.0 = stamp;
        }
        Ok(cache.1.get(&hash(token)).cloned())
    }
}

/// Makes a new random token for `user` in `dir`, stores its hash, and returns the token.
pub fn create_token(dir: &Path, user: &str) -> Result<String> {
    crate::model::validate_name("user", user)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let mut random = [0u8; 32];
    getrandom::fill(&mut random)
        .map_err(|e| Error::io("the secure RNG", std::io::Error::other(e.to_string())))?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(TOKENS_FILE);
    let mut file = read_file(&path)?;
    file.tokens.push(TokenEntry {
        user: user.into(),
        hash: hash(&token),
        created_at: crate::model::now(),
    });
    let temp = dir.join(format!(".{TOKENS_FILE}.{}.tmp", std::process::id()));
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::Corrupted(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().write(true).create(true).truncate(true),
            0o600,
        )
        .open(&temp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok(token)
}
