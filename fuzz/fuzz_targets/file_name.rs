//! A `sourcefilename` or `file_list` name: the validators, then the whole parser
//! (`runner::api::fuzzing::file_name` states the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data) {
        runner::api::fuzzing::file_name(name);
    }
});
