//! Segment files: the embedded storage engine (being written).
