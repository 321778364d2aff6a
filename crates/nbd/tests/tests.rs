//! Tests of strata-nbd.
