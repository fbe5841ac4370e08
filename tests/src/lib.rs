//! Privileged tests live in tests/ of this crate.
