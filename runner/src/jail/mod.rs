//! jail (in progress)
