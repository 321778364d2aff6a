//! Tests of strata-volume.
