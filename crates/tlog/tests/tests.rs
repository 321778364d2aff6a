//! Integration tests of the tlog.
