//! Tests of block volumes against the real parts: a tlog segment store holding real sealed
//! aggregates, vdisk records in their redb file, a hub store and blob store in a temporary
//! data directory.

mod lineage;
