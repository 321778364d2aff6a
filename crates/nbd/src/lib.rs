//! Virtual disks: records in kv, a sparse image per disk, an NBD server whose every write
//! is journaled through the tlog, and restore from the log.
