//! `strata hub`, `strata volumeset|volume|log|push|pull|sync` end to end.
