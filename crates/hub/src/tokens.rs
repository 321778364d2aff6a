//! Bearer tokens: `tokens.json` in the hub's directory holds, per token, its user, when it
//! was made and the BLAKE3 hash of the token (never the token). A token's id is the first
//! [`ID_LEN`] hex digits of that hash: it names the token for `ls` and `revoke` without
//! revealing it. `strata hub token create` and `revoke` replace the file atomically; a
//! running server notices the new file (inode, size, mtime) and re-reads it before the
//! next request, so new tokens work and revoked ones are refused without a restart.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The file's name in the hub's directory.
pub const TOKENS_FILE: &str = "tokens.json";

/// Hex digits of a token's hash that make its id.
pub const ID_LEN: usize = 12;

/// What `strata hub token ls` shows of a token: never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The first [`ID_LEN`] hex digits of the token's BLAKE3 hash.
    pub id: String,
    /// The user it authenticates as.
    pub user: String,
    /// When it was made, in nanoseconds since the Unix epoch.
    pub created_at: u64,
}

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

/// The id of `token`: the first [`ID_LEN`] hex digits of its hash.
pub fn token_id(token: &str) -> String {
    hash(token)[..ID_LEN].to_string()
}

/// Makes a new random token for `user` in `dir` (32 bytes from the OS's secure RNG),
/// stores its hash, and returns the token.
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
    write_file(dir, &file)?;
    Ok(token)
}

/// Every token of `dir`, oldest first: ids, users and creation times.
pub fn list_tokens(dir: &Path) -> Result<Vec<TokenInfo>> {
    let mut tokens: Vec<TokenInfo> =
        read_file(&dir.join(TOKENS_FILE))?.tokens.into_iter().map(info).collect();
    tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(tokens)
}

fn info(t: TokenEntry) -> TokenInfo {
    TokenInfo { id: t.hash.chars().take(ID_LEN).collect(), user: t.user, created_at: t.created_at }
}

/// What [`revoke_tokens`] removes.
#[derive(Debug, Clone, Copy)]
pub enum Revoke<'a> {
    /// The token with this id (or a unique prefix of it, at least 4 digits).
    Id(&'a str),
    /// Every token of this user.
    User(&'a str),
}

/// Removes tokens from `dir` and returns what was removed; a running server refuses them
/// from its next request on. Nothing matching is `NotFound`; an id prefix that matches
/// more than one token is `InvalidArgument`.
pub fn revoke_tokens(dir: &Path, which: Revoke<'_>) -> Result<Vec<TokenInfo>> {
    let path = dir.join(TOKENS_FILE);
    let mut file = read_file(&path)?;
    let matches = |t: &TokenEntry| match which {
        Revoke::Id(id) => id.len() >= 4 && t.hash.starts_with(&id.to_ascii_lowercase()),
        Revoke::User(user) => t.user == user,
    };
    let (gone, kept): (Vec<TokenEntry>, Vec<TokenEntry>) =
        file.tokens.into_iter().partition(|t| matches(t));
    match which {
        Revoke::Id(id) if id.len() < 4 => {
            return Err(Error::InvalidArgument(format!(
                "token id {id:?}: give at least 4 of its digits (`strata hub token ls` lists them)"
            )));
        }
        Revoke::Id(id) if gone.len() > 1 => {
            return Err(Error::InvalidArgument(format!(
                "token id {id:?} matches {} tokens; give more of its digits",
                gone.len()
            )));
        }
        Revoke::Id(id) if gone.is_empty() => {
            return Err(Error::NotFound(format!(
                "no token with id {id} in {}; `strata hub token ls` lists them",
                path.display()
            )));
        }
        Revoke::User(user) if gone.is_empty() => {
            return Err(Error::NotFound(format!("no token of user {user} in {}", path.display())));
        }
        _ => {}
    }
    file.tokens = kept;
    write_file(dir, &file)?;
    Ok(gone.into_iter().map(info).collect())
}

/// Replaces `dir/tokens.json` with `file` atomically: temp file (mode 0600), fsync,
/// rename, fsync of the directory.
fn write_file(dir: &Path, file: &TokenFile) -> Result<()> {
    let path = dir.join(TOKENS_FILE);
    let temp = dir.join(format!(".{TOKENS_FILE}.{}.tmp", std::process::id()));
    let bytes = serde_json::to_vec_pretty(file).map_err(|e| Error::Corrupted(e.to_string()))?;
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
    write().map_err(|e| Error::io(format!("write {}", path.display()), e))
}
