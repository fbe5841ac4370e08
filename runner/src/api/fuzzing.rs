//! Entry points for the cargo-fuzz targets in `fuzz/` (docs/robustness.md). Not an API: hidden
//! from the docs, and it may change with the validators it reaches.
//!
//! Each function takes the fuzzer's bytes, runs them through the same code a request takes, and
//! panics only when an invariant of the validators' results is broken (a panic is what the fuzzer
//! reports). Errors are expected outcomes and are ignored.
//!
//! Must not: touch the file system, the jail or the network.

use std::path::{Component, Path};
use std::sync::OnceLock;

use hyper::Method;

use super::router::{self, Route};
use super::wire;
use crate::cache;
use crate::profile::{PlanConfig, Profile, embedded_profiles};

/// The shipped profiles, parsed once (no version probes: nothing is started).
fn profiles() -> &'static [Profile] {
    static PROFILES: OnceLock<Vec<Profile>> = OnceLock::new();
    PROFILES.get_or_init(|| embedded_profiles().expect("the shipped profiles are valid"))
}

/// A `POST runs` body: Jobe's parser and checks, then planning against the shipped profile of
/// its language (limits clamped to the profile's maxima, argument splitting, file names).
pub fn run_spec(body: &[u8]) {
    let known = |l: &str| profiles().iter().any(|p| p.id == l);
    let Ok(req) = wire::parse_run_body(body, known, 120) else {
        return;
    };
    let job = &req.job;
    assert_eq!(job.language, job.language.to_ascii_lowercase());
    if let Some(name) = &job.source_name {
        assert_source_name(name);
    }
    for (id, name) in &req.file_list {
        assert!(cache::is_valid_id(id), "file_list id {id:?} accepted");
        assert_file_name(name);
    }
    let profile = profiles()
        .iter()
        .find(|p| p.id == job.language)
        .expect("a known language has a profile");
    let Ok(plan) = profile.plan(job, &PlanConfig::default(), "/home/jobe/runs/fuzz") else {
        return;
    };
    for (name, _) in &plan.files {
        assert_plain(name);
    }
    for step in plan.compile.iter().chain([&plan.run]) {
        assert!(
            step.argv.iter().all(|a| !a.contains('\0')),
            "an argv element with a NUL byte was planned"
        );
        let l = &step.limits;
        // Jobe's MB is 1 024 000 bytes (runguard's unit).
        assert!(
            l.memory_bytes >= 1_024_000,
            "memory limit below 1 MB planned"
        );
        assert!(l.procs >= 1, "no process allowed");
        assert!(l.cpu.as_secs_f64() <= 3600.0 && l.wall >= l.cpu);
    }
}

/// A file id as it arrives in `PUT/HEAD /files/{id}`: the router and the cache's id → path map.
pub fn file_id(id: &str) {
    for method in [Method::PUT, Method::HEAD] {
        let path = format!("/jobe/index.php/restapi/files/{id}");
        if let Ok(Route::PutFile(routed) | Route::HeadFile(routed)) =
            router::route(&method, &path, false)
        {
            assert!(cache::is_valid_id(&routed), "router accepted id {routed:?}");
        }
    }
    if let Some(rel) = cache::id_to_relative_path(id) {
        assert!(cache::is_valid_id(id));
        assert!(
            rel.components().all(|c| matches!(c, Component::Normal(_))),
            "id {id:?} maps to {rel:?}, which is not below the cache directory"
        );
        assert!(rel.components().count() <= 3);
    }
}

/// A name as a `sourcefilename` and as a `file_list` name.
pub fn file_name(name: &str) {
    if wire::is_valid_file_name(name) {
        assert_file_name(name);
    }
    if wire::is_valid_source_filename(name) {
        assert!(!name.contains(['/', '\0', '\\']) && !name.starts_with('.'));
    }
    // And through the whole parser, as a client would send them.
    let body = serde_json::json!({"run_spec": {
        "language_id": "python3", "sourcecode": "", "sourcefilename": name,
        "file_list": [["abcdefgh12345678", name]],
    }});
    run_spec(body.to_string().as_bytes());
}

/// A language profile (TOML) as `profiles_dir` would hold it: parse and validate; a profile that
/// validates must also plan a trivial job.
pub fn profile(text: &str) {
    let Ok(p) = Profile::from_toml("fuzz.toml", text) else {
        return;
    };
    let job = crate::job::Job {
        language: p.id.clone(),
        source: String::new(),
        source_name: None,
        input: String::new(),
        files: Vec::new(),
        params: crate::job::Params::default(),
        debug: false,
        details: false,
    };
    let _ = p.plan(&job, &PlanConfig::default(), "/home/jobe/runs/fuzz");
}

fn assert_plain(name: &str) {
    let path = Path::new(name);
    assert!(
        path.components().count() == 1
            && matches!(path.components().next(), Some(Component::Normal(_)))
            && !name.contains('\0')
            && name.len() <= wire::MAX_NAME_BYTES,
        "{name:?} is not a plain file name"
    );
}

fn assert_source_name(name: &str) {
    assert_plain(name);
    assert!(!name.starts_with(['.', '-']), "source name {name:?}");
}

fn assert_file_name(name: &str) {
    assert_plain(name);
    assert!(name != "." && name != "..", "file name {name:?}");
}
