//! `strata vdisk` and `strata nbd serve` end to end, with real NBD clients.
