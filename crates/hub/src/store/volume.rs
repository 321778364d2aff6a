//! Volumes: the records of writable copies.

use super::{Hub, encode};
use crate::model::{Volume, validate_id};
use crate::{Error, Result};

impl Hub {
    /// Records a volume.
    pub fn put_volume(&self, volume: &Volume) -> Result<()> {
        validate_id("volume", &volume.id)?;
        self.store.with_txn(|txn| {
            let all: Vec<Volume> = self.list_json(txn, &["vol", ""])?;
            if !volume.name.is_empty()
                && all.iter().any(|v| v.name == volume.name && v.id != volume.id)
            {
                return Err(Error::AlreadyExists(format!(
                    "a volume named {:?} exists already; choose another name",
                    volume.name
                )));
            }
            txn.put(&self.key(&["vol", &volume.id]), &encode(volume));
            Ok(())
        })
    }

    /// Every volume, oldest first.
    pub fn volumes(&self) -> Result<Vec<Volume>> {
        let mut all: Vec<Volume> = self.list_json(&mut self.read()?, &["vol", ""])?;
        all.sort_by_key(|v| v.created_at);
        Ok(all)
    }

    /// The volume whose name, id or path is `what`.
    pub fn find_volume(&self, what: &str) -> Result<Volume> {
        let canonical = std::fs::canonicalize(what).ok();
        self.volumes()?
            .into_iter()
            .find(|v| {
                v.id == what
                    || v.name == what
                    || v.path == what
                    || canonical.as_deref() == Some(std::path::Path::new(&v.path))
            })
            .ok_or_else(|| {
                Error::NotFound(format!("no volume {what:?}; `strata volume ls` lists them"))
            })
    }

    /// Removes a volume's record.
    pub fn delete_volume(&self, id: &str) -> Result<()> {
        self.store.with_txn(|txn| {
            txn.delete(&self.key(&["vol", id]));
            Ok(())
        })
    }
}
