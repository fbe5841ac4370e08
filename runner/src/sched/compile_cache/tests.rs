//! Tier: unit (docs/testing.md). The key (the run directory's path normalised, every input
//! changes it) and the store (atomic entries, restart, LRU cap, an evicted entry in use stays,
//! single flight).

use std::time::Duration;

use super::*;
use crate::profile::plan::{CmpinfoRule, Limits, StderrFilter};

const DIR_A: &str = "/home/jobe/runs/jobe_aaaaaa";
const DIR_B: &str = "/home/jobe/runs/jobe_bbbbbb";

fn plan(jail_dir: &str) -> Plan {
    let limits = Limits {
        cpu: Duration::from_secs(10),
        wall: Duration::from_secs(30),
        memory_bytes: 1 << 30,
        disk_bytes: 1 << 20,
        stream_bytes: 1 << 20,
        procs: 30,
        address_space_bytes: None,
    };
    let compile = Step {
        argv: vec![
            "/usr/bin/gcc".into(),
            "-o".into(),
            "prog.c.exe".into(),
            "prog.c".into(),
        ],
        env: vec![
            ("HOME".into(), jail_dir.into()),
            ("TMPDIR".into(), jail_dir.into()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ],
        limits,
    };
    Plan {
        files: vec![
            ("prog.c".into(), b"int main(void) { return 0; }".to_vec()),
            ("data.txt".into(), b"x".to_vec()),
        ],
        compile: Some(compile.clone()),
        deferred: None,
        cmpinfo: CmpinfoRule::Stderr {
            stdout_separator: None,
        },
        run: compile,
        stderr_filter: StderrFilter::default(),
        stdin: None,
        seccomp: "default".into(),
        extra_ro_paths: vec![],
    }
}

const TOOL: Toolchain<'static> = Toolchain {
    profile: "c",
    version: "12.2.0",
};

fn key_of(p: &Plan, jail_dir: &str) -> Key {
    key(Use::Compile, TOOL, p, p.compile.as_ref().unwrap(), jail_dir)
}

#[test]
fn test_key_ignores_the_run_directory_path() {
    assert_eq!(key_of(&plan(DIR_A), DIR_A), key_of(&plan(DIR_B), DIR_B));
}

#[test]
fn test_every_input_changes_the_key() {
    let base = key_of(&plan(DIR_A), DIR_A);
    type Change = Box<dyn Fn(&mut Plan)>;
    let changes: Vec<(&str, Change)> = vec![
        (
            "argv",
            Box::new(|p| p.compile.as_mut().unwrap().argv.push("-O2".into())),
        ),
        (
            "argv split",
            Box::new(|p| {
                let argv = &mut p.compile.as_mut().unwrap().argv;
                argv[1] = "-oprog.c.exe".into();
                argv.remove(2);
            }),
        ),
        (
            "env",
            Box::new(|p| {
                p.compile
                    .as_mut()
                    .unwrap()
                    .env
                    .push(("LANG".into(), "C".into()))
            }),
        ),
        (
            "env value",
            Box::new(|p| p.compile.as_mut().unwrap().env[2].1 = "/bin".into()),
        ),
        (
            "cpu",
            Box::new(|p| p.compile.as_mut().unwrap().limits.cpu = Duration::from_secs(11)),
        ),
        (
            "wall",
            Box::new(|p| p.compile.as_mut().unwrap().limits.wall = Duration::from_secs(31)),
        ),
        (
            "memory",
            Box::new(|p| p.compile.as_mut().unwrap().limits.memory_bytes += 1),
        ),
        (
            "disk",
            Box::new(|p| p.compile.as_mut().unwrap().limits.disk_bytes += 1),
        ),
        (
            "stream",
            Box::new(|p| p.compile.as_mut().unwrap().limits.stream_bytes += 1),
        ),
        (
            "procs",
            Box::new(|p| p.compile.as_mut().unwrap().limits.procs += 1),
        ),
        (
            "address space",
            Box::new(|p| p.compile.as_mut().unwrap().limits.address_space_bytes = Some(0)),
        ),
        ("source", Box::new(|p| p.files[0].1.push(b' '))),
        ("source name", Box::new(|p| p.files[0].0 = "prog2.c".into())),
        ("support file", Box::new(|p| p.files[1].1 = b"y".to_vec())),
        (
            "file moved between name and contents",
            Box::new(|p| {
                p.files[1] = ("data.tx".into(), b"tx".to_vec());
            }),
        ),
        (
            "another file",
            Box::new(|p| p.files.push(("more".into(), vec![]))),
        ),
        ("seccomp", Box::new(|p| p.seccomp = "java".into())),
        (
            "extra paths",
            Box::new(|p| p.extra_ro_paths.push("/opt/x".into())),
        ),
        (
            "cmpinfo rule",
            Box::new(|p| {
                p.cmpinfo = CmpinfoRule::Stderr {
                    stdout_separator: Some("\n".into()),
                }
            }),
        ),
    ];
    for (what, change) in &changes {
        let mut p = plan(DIR_A);
        change(&mut p);
        assert_ne!(key_of(&p, DIR_A), base, "{what} must change the key");
    }
    let p = plan(DIR_A);
    let step = p.compile.as_ref().unwrap();
    assert_ne!(key(Use::Check, TOOL, &p, step, DIR_A), base, "use");
    let other = Toolchain {
        profile: "cpp",
        ..TOOL
    };
    assert_ne!(key(Use::Compile, other, &p, step, DIR_A), base, "profile");
    let other = Toolchain {
        version: "12.2.1",
        ..TOOL
    };
    assert_ne!(key(Use::Compile, other, &p, step, DIR_A), base, "version");
}

fn key_n(n: u8) -> Key {
    Key([n; 32])
}

/// A snapshot of `files` (name, contents), as a run directory's copy-out would write.
fn snapshot(files: &[(&str, &[u8])]) -> impl Fn(&Path) -> Result<u64, crate::jail::JailError> {
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, d)| ((*n).to_owned(), d.to_vec()))
        .collect();
    move |to: &Path| {
        let mut bytes = 0;
        for (n, d) in &files {
            fs::write(to.join(n), d).unwrap();
            bytes += d.len() as u64;
        }
        Ok(bytes)
    }
}

async fn store_pass(cache: &CompileCache, key: Key, files: &[(&str, &[u8])]) -> Option<Arc<Entry>> {
    let Lookup::Lead(leader) = cache.lookup(&key).await else {
        panic!("expected a miss");
    };
    let snap = snapshot(files);
    cache.store(
        &leader,
        Store::Passed {
            snapshot: Some(&snap),
        },
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn test_store_hit_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cc");
    let cache = CompileCache::open(dir.clone(), 1 << 20).unwrap();
    let entry = store_pass(&cache, key_n(1), &[("prog.c.exe", b"ELF...")])
        .await
        .unwrap();
    let files = entry.files().unwrap();
    assert_eq!(fs::read(files.join("prog.c.exe")).unwrap(), b"ELF...");
    // A failure with the run directory's path in its cmpinfo.
    let Lookup::Lead(leader) = cache.lookup(&key_n(2)).await else {
        panic!()
    };
    let usage = Usage {
        cpu_secs: 0.25,
        wall_secs: 0.5,
        peak_memory_bytes: 7,
        ..Usage::default()
    };
    let info = format!("{DIR_A}/prog.c:1: error\n");
    cache.store(
        &leader,
        Store::Failed {
            outcome: Outcome::CompilationError,
            cmpinfo: info.as_bytes(),
            usage: &usage,
            jail_dir: DIR_A,
        },
    );
    drop(leader);
    assert_eq!(cache.size().1, 2);
    drop((entry, cache));
    // A half-built entry a dead daemon left, and a damaged one: removed at open.
    fs::create_dir(dir.join(".tmp-1-1")).unwrap();
    fs::create_dir(dir.join(format!("{}-9-9", key_n(3).hex()))).unwrap();
    let cache = CompileCache::open(dir.clone(), 1 << 20).unwrap();
    // The cmpinfo is stored with a placeholder for the run directory's path.
    let stored = info.len() - DIR_A.len() + RUN_DIR_MARK.len();
    assert_eq!(cache.size(), (6 + stored as u64, 2));
    assert_eq!(names(&dir).len(), 2, "{:?}", names(&dir));
    let hit = cache.get(&key_n(1)).expect("a hit after restart");
    assert_eq!(
        fs::read(hit.files().unwrap().join("prog.c.exe")).unwrap(),
        b"ELF..."
    );
    let Lookup::Hit(failed) = cache.lookup(&key_n(2)).await else {
        panic!("a hit")
    };
    let Ending::Failed {
        outcome,
        cmpinfo,
        usage: u,
    } = failed.ending()
    else {
        panic!()
    };
    assert_eq!(*outcome, Outcome::CompilationError);
    assert_eq!(
        Entry::cmpinfo_for(cmpinfo, DIR_B),
        format!("{DIR_B}/prog.c:1: error\n").into_bytes()
    );
    assert_eq!(
        (u.cpu_secs, u.wall_secs, u.peak_memory_bytes),
        (0.25, 0.5, 7)
    );
}

#[tokio::test]
async fn test_lru_cap_and_an_entry_in_use_survives_eviction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cc");
    let cache = CompileCache::open(dir.clone(), 250).unwrap();
    let held = store_pass(&cache, key_n(1), &[("a", &[1; 100])])
        .await
        .unwrap();
    drop(store_pass(&cache, key_n(2), &[("b", &[2; 100])]).await);
    // 1 is the older: using it makes 2 the one to go.
    assert!(cache.get(&key_n(1)).is_some());
    drop(store_pass(&cache, key_n(3), &[("c", &[3; 100])]).await);
    assert!(
        cache.get(&key_n(2)).is_none(),
        "least recently used evicted"
    );
    assert_eq!(cache.size(), (200, 2));
    drop(store_pass(&cache, key_n(4), &[("d", &[4; 100])]).await);
    assert!(cache.get(&key_n(1)).is_none(), "evicted from the index");
    assert!(
        held.files().unwrap().join("a").is_file(),
        "in use: still on disk"
    );
    let held_dir = held.dir.clone();
    drop(held);
    assert!(!held_dir.exists(), "removed with its last holder");
    assert_eq!(names(&dir).len(), 2);
    // Larger than the cap: not stored, nothing left.
    assert!(
        store_pass(&cache, key_n(5), &[("e", &[5; 300])])
            .await
            .is_none()
    );
    assert_eq!(names(&dir).len(), 2);
    // Recency survives a restart (the mtime of `meta`).
    assert!(cache.get(&key_n(3)).is_some());
    drop(cache);
    let cache = CompileCache::open(dir.clone(), 250).unwrap();
    drop(store_pass(&cache, key_n(6), &[("f", &[6; 100])]).await);
    assert!(cache.get(&key_n(3)).is_some(), "most recently used kept");
    assert!(cache.get(&key_n(4)).is_none());
}

#[tokio::test]
async fn test_single_flight_waits_for_the_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::open(tmp.path().join("cc"), 1 << 20).unwrap());
    let Lookup::Lead(leader) = cache.lookup(&key_n(1)).await else {
        panic!()
    };
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { matches!(cache.lookup(&key_n(1)).await, Lookup::Hit(_)) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "waits while the leader compiles");
    let snap = snapshot(&[("x", b"1")]);
    cache.store(
        &leader,
        Store::Passed {
            snapshot: Some(&snap),
        },
    );
    drop(leader);
    assert!(waiter.await.unwrap(), "the waiter gets the leader's entry");

    // A leader that stores nothing (an internal error, a cancel): a waiter leads instead.
    let Lookup::Lead(leader) = cache.lookup(&key_n(2)).await else {
        panic!()
    };
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { matches!(cache.lookup(&key_n(2)).await, Lookup::Lead(_)) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(leader);
    assert!(waiter.await.unwrap());
}
