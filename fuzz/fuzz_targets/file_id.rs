//! A file id from `PUT/HEAD /files/{id}`: the router and the cache's id → path mapping
//! (`runner::api::fuzzing::file_id` states the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = std::str::from_utf8(data) {
        runner::api::fuzzing::file_id(id);
    }
});
