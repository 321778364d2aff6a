//! Tests of strata-hub.
