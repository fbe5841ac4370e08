//! A `POST runs` body: Jobe's parser and checks, then planning against the shipped profile of its
//! language (`runner::api::fuzzing::run_spec` states the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| runner::api::fuzzing::run_spec(data));
