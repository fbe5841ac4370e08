//! A language profile (TOML), as `profiles_dir` holds them: parse, validate, plan a trivial job.
//! Seeded with the shipped profiles (`cargo xtask fuzz` adds ../profiles to the corpus).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        runner::api::fuzzing::profile(text);
    }
});
