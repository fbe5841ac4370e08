//! The test-set store (docs/judge.md, "Storage"): versions of problems' test sets on disk, under
//! `<data_dir>/testsets`, with leases, LRU eviction by total size, and an index rebuilt at open.
//!
//! Owns the directory `testsets/` (mode 0700, owned by the daemon; no jail mounts it):
//! - `objects/<sha[0..2]>/<sha256>`: case files by the SHA-256 of their content (mode 0600),
//!   shared between versions and problems;
//! - `manifests/<problem>/<version>.json`: one manifest per version, listing its cases by hash;
//! - `tmp/`: staging of uploads and spooled bodies, emptied at open.
//!
//! A version is immutable: the same content again is "unchanged", other content under an
//! existing version is a conflict. A put is atomic: the archive is checked and its files staged
//! first; then, under the index lock, the new files are renamed into `objects/` and the manifest
//! (written to a staged temp file and fsynced) renamed into place last, so a crash leaves either
//! the whole version or nothing that `open` keeps (a manifest whose files are missing is dropped,
//! files no manifest names are deleted).
//!
//! Leases: `get` hands out a `Lease` that keeps the version's files while a submission runs on
//! it. `delete` and eviction take the version out of the index at once (no new lease), and its
//! files go when the last lease drops. Eviction skips leased versions.
//!
//! Must not: follow symlinks (files are created new with `O_NOFOLLOW`, opened with
//! `O_NOFOLLOW`), put host paths into what a client sees (`TestsetError::Io` is for the log), hold
//! the index lock across reading an archive or writing file data, or read a case file into memory
//! (a case's input is handed out as an open file, for a jail's stdin).
//!
//! Concurrency: blocking and `&self`, as `cache::FileCache`; callers on tokio use
//! `spawn_blocking`. One std `Mutex` guards the index, held only for index updates and the
//! metadata operations that must agree with it (renames and unlinks).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::archive::{self, ArchiveError, ArchiveLimits, StagedCase, create_private};
use super::compare::CompareSpec;
use super::problem::{Limits, Problem};
use crate::lru::Lru;
use crate::sync::lock;

/// The store's directory under the data directory.
pub const TESTSETS_DIR: &str = "testsets";
const OBJECTS: &str = "objects";
const MANIFESTS: &str = "manifests";
const TMP: &str = "tmp";
const MANIFEST_SUFFIX: &str = ".json";
/// Longest problem or version name.
pub const MAX_NAME_BYTES: usize = 64;

/// Errors of the store. `Io` and `NoCase` are the daemon's faults (500, or IE for a submission;
/// `Io` carries a host path, so it goes to the log only); the others are the client's.
#[derive(Debug, thiserror::Error)]
pub enum TestsetError {
    #[error(
        "invalid {what} {name}: must be 1 to {MAX_NAME_BYTES} characters of A-Z a-z 0-9 . _ - (not . or ..)"
    )]
    InvalidName { what: &'static str, name: String },
    #[error("test set {id}")]
    Archive {
        id: TestsetId,
        #[source]
        source: ArchiveError,
    },
    #[error("test set {id} already exists with different content (versions are immutable)")]
    Conflict { id: TestsetId },
    #[error("test set {id} holds {bytes} bytes, more than the store's cap of {max} bytes")]
    TooLarge { id: TestsetId, bytes: u64, max: u64 },
    #[error("test set {id} has no case {index}")]
    NoCase { id: TestsetId, index: usize },
    #[error("test-set store: failed to {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl TestsetError {
    /// Whether the daemon is at fault rather than the request.
    pub fn is_internal(&self) -> bool {
        match self {
            TestsetError::Io { .. } | TestsetError::NoCase { .. } => true,
            TestsetError::Archive { source, .. } => source.is_internal(),
            _ => false,
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TestsetError {
    let path = path.to_owned();
    move |source| TestsetError::Io { op, path, source }
}

/// Whether `name` may be a problem or version name: 1–64 characters of `[A-Za-z0-9._-]`, not
/// `.` or `..` (so it is a safe file name and needs no escaping in a URL).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A problem and a version, both valid names. Displayed as `problem/version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TestsetId {
    problem: String,
    version: String,
}

impl TestsetId {
    pub fn new(problem: &str, version: &str) -> Result<TestsetId, TestsetError> {
        for (what, name) in [("problem", problem), ("version", version)] {
            if !is_valid_name(name) {
                return Err(TestsetError::InvalidName {
                    what,
                    name: super::compare::excerpt(name.as_bytes()),
                });
            }
        }
        Ok(TestsetId {
            problem: problem.to_owned(),
            version: version.to_owned(),
        })
    }

    pub fn problem(&self) -> &str {
        &self.problem
    }

    pub fn version(&self) -> &str {
        &self.version
    }
}

impl fmt::Display for TestsetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.problem, self.version)
    }
}

/// One case in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestCase {
    pub name: String,
    pub input_sha256: String,
    pub input_bytes: u64,
    pub output_sha256: String,
    pub output_bytes: u64,
}

/// A stored version: what `GET .../testsets/{version}` answers, and the file
/// `manifests/<problem>/<version>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub problem: String,
    pub version: String,
    /// SHA-256 of the content (see [`Manifest::content_sha256`]); equal for equal content
    /// under any name.
    pub sha256: String,
    pub compare: CompareSpec,
    pub limits: Limits,
    /// In natural order of their names; a submission's case `i` is `cases[i]`.
    pub cases: Vec<ManifestCase>,
}

/// The part of a manifest that is content, in the order it is hashed.
#[derive(Serialize)]
struct Content<'a> {
    compare: &'a CompareSpec,
    limits: &'a Limits,
    cases: &'a [ManifestCase],
}

impl Manifest {
    fn new(id: &TestsetId, problem: Problem, cases: &[StagedCase]) -> Manifest {
        let mut m = Manifest {
            problem: id.problem.clone(),
            version: id.version.clone(),
            sha256: String::new(),
            compare: problem.compare,
            limits: problem.limits,
            cases: cases
                .iter()
                .map(|c| ManifestCase {
                    name: c.name.clone(),
                    input_sha256: c.input.sha256.clone(),
                    input_bytes: c.input.bytes,
                    output_sha256: c.output.sha256.clone(),
                    output_bytes: c.output.bytes,
                })
                .collect(),
        };
        m.sha256 = m.content_sha256();
        m
    }

    /// The SHA-256 of the compact JSON of `{"compare":…,"limits":…,"cases":[…]}`, keys in the
    /// manifest's order: it covers the settings and every case's name and file hashes, not the
    /// problem or version name. Recomputed at every load, so it always follows this definition.
    pub fn content_sha256(&self) -> String {
        let content = Content {
            compare: &self.compare,
            limits: &self.limits,
            cases: &self.cases,
        };
        let json = serde_json::to_vec(&content).expect("plain data serialises");
        super::hex(&Sha256::digest(&json))
    }

    /// The version's id (its names were checked when it was made or loaded).
    pub fn id(&self) -> TestsetId {
        TestsetId {
            problem: self.problem.clone(),
            version: self.version.clone(),
        }
    }

    /// Distinct files of the version: sha256 → bytes.
    fn files(&self) -> BTreeMap<&str, u64> {
        self.cases
            .iter()
            .flat_map(|c| {
                [
                    (c.input_sha256.as_str(), c.input_bytes),
                    (c.output_sha256.as_str(), c.output_bytes),
                ]
            })
            .collect()
    }

    fn total_bytes(&self) -> u64 {
        self.files().values().sum()
    }
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutStatus {
    /// A new version (HTTP 201).
    Created,
    /// The version existed with the same content (HTTP 200).
    Unchanged,
}

/// The result of a put: what happened, and a lease on the stored version (so that a caller
/// about to judge with it cannot see it evicted in between).
#[derive(Debug, Clone)]
pub struct Put {
    pub status: PutStatus,
    pub lease: Lease,
}

impl Put {
    pub fn manifest(&self) -> &Arc<Manifest> {
        self.lease.manifest()
    }
}

/// Sizes for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes of the stored case files (each distinct file once).
    pub bytes: u64,
    pub max_bytes: u64,
    /// Versions in the index.
    pub testsets: usize,
    /// Distinct case files.
    pub files: usize,
}

#[derive(Debug)]
struct Entry {
    id: TestsetId,
    manifest: Arc<Manifest>,
    leases: usize,
    /// Out of the index (deleted or evicted); freed when `leases` reaches 0.
    doomed: bool,
}

#[derive(Debug, Clone, Copy)]
struct FileRefs {
    bytes: u64,
    /// Versions (live or leased) that name the file.
    refs: usize,
}

#[derive(Debug, Default)]
struct State {
    /// The index: id → entry number.
    live: HashMap<TestsetId, u64>,
    /// Live and doomed entries.
    entries: HashMap<u64, Entry>,
    files: HashMap<String, FileRefs>,
    total: u64,
    lru: Lru<TestsetId>,
    next_entry: u64,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    limits: ArchiveLimits,
    state: Mutex<State>,
    temp_seq: AtomicU64,
}

/// The store. Cheap to clone (one shared index).
#[derive(Debug, Clone)]
pub struct TestsetStore {
    shared: Arc<Shared>,
}

/// A version in use: its files stay until the lease (and every clone of it) is dropped.
#[derive(Debug)]
pub struct Lease {
    shared: Arc<Shared>,
    entry: u64,
    manifest: Arc<Manifest>,
}

/// A private temp file in the store's `tmp/` (a request body or an origin's answer on its way
/// to `put_archive`), removed when dropped; `open` removes any left by a crash.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
}

impl Spool {
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Back to the start, to read what was written.
    pub fn rewind(&mut self) -> Result<(), TestsetError> {
        io::Seek::rewind(&mut self.file).map_err(io_err("rewind", &self.path))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A staging directory under `tmp/`, removed with everything in it when dropped.
struct StageDir(PathBuf);

impl Drop for StageDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl TestsetStore {
    /// Opens (creating if needed) the store in `dir` (normally `<data_dir>/testsets`), capped
    /// at `max_bytes` of case files, reading archives within `limits`. Rebuilds the index from
    /// the manifests; drops manifests that are unreadable or name missing files, deletes files
    /// that no manifest names and everything in `tmp/`, and evicts down to the cap (least
    /// recently used first, by the manifests' mtimes).
    pub fn open(
        dir: PathBuf,
        max_bytes: u64,
        limits: ArchiveLimits,
    ) -> Result<TestsetStore, TestsetError> {
        private_dir(&dir)?;
        for sub in [OBJECTS, MANIFESTS, TMP] {
            private_dir(&dir.join(sub))?;
        }
        let tmp = dir.join(TMP);
        for entry in fs::read_dir(&tmp).map_err(io_err("read", &tmp))? {
            let path = entry.map_err(io_err("read", &tmp))?.path();
            let removed = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            removed.map_err(io_err("remove", &path))?;
        }
        let store = TestsetStore {
            shared: Arc::new(Shared {
                dir,
                max_bytes,
                limits,
                state: Mutex::new(State::default()),
                temp_seq: AtomicU64::new(0),
            }),
        };
        store.load()?;
        Ok(store)
    }

    /// The archive limits puts are checked against.
    pub fn limits(&self) -> ArchiveLimits {
        self.shared.limits
    }

    /// Reads an archive from `reader`, checks it and stores it as `id`. `Unchanged` when `id`
    /// exists with the same content; `Conflict` when with other content. Nothing is stored
    /// when the archive is refused.
    pub fn put_archive(&self, id: &TestsetId, reader: impl Read) -> Result<Put, TestsetError> {
        let sh = &self.shared;
        let stage = self.stage_dir()?;
        let staged = archive::read_archive(reader, &sh.limits, &stage.0).map_err(|source| {
            TestsetError::Archive {
                id: id.clone(),
                source,
            }
        })?;
        let manifest = Manifest::new(id, staged.problem, &staged.cases);
        if let Some(existing) = self.get(id) {
            return same_or_conflict(id, existing, &manifest);
        }
        let bytes = manifest.total_bytes();
        if bytes > sh.max_bytes {
            return Err(TestsetError::TooLarge {
                id: id.clone(),
                bytes,
                max: sh.max_bytes,
            });
        }
        let staged_manifest = stage.0.join("manifest.json");
        write_synced(
            &staged_manifest,
            &serde_json::to_vec(&manifest).expect("plain data serialises"),
        )?;
        let manifest = Arc::new(manifest);
        let final_path = self.manifest_path(id);
        let mut st = lock(&sh.state);
        // Checked again: another put of `id` may have committed while this one staged.
        if let Some(existing) = self.lease(&mut st, id) {
            drop(st);
            return same_or_conflict(id, existing, &manifest);
        }
        // Files not stored yet move in; if one fails, those moved are unnamed and removed by
        // the next `open` (or replaced by the next put of the same content).
        let files = manifest.files();
        let new_files: Vec<&str> = files
            .keys()
            .copied()
            .filter(|s| !st.files.contains_key(*s))
            .collect();
        let new_dirs: BTreeSet<PathBuf> = new_files
            .iter()
            .filter_map(|sha| self.object_path(sha).parent().map(Path::to_owned))
            .collect();
        for d in &new_dirs {
            private_dir(d)?;
        }
        for sha in new_files {
            let target = self.object_path(sha);
            fs::rename(stage.0.join(sha), &target).map_err(io_err("store", &target))?;
        }
        let problem_dir = final_path.parent().expect("manifests/<problem>/<file>");
        private_dir(problem_dir)?;
        fs::rename(&staged_manifest, &final_path).map_err(io_err("store", &final_path))?;
        // Committed: index it.
        for (sha, bytes) in &files {
            st.add_ref(sha, *bytes);
        }
        st.insert(id.clone(), manifest.clone());
        let lease = self.lease(&mut st, id).expect("just inserted");
        self.evict(&mut st, Some(id));
        drop(st);
        // Make the renames durable; a failure only weakens crash safety (`open` drops a
        // manifest whose files are missing), not correctness.
        for d in new_dirs.iter().map(PathBuf::as_path).chain([problem_dir]) {
            if let Ok(d) = File::open(d) {
                let _ = d.sync_all();
            }
        }
        tracing::info!(testset = %id, cases = manifest.cases.len(), bytes, "test set stored");
        Ok(Put {
            status: PutStatus::Created,
            lease,
        })
    }

    /// A lease on `id`, if stored; marks it most recently used.
    pub fn get(&self, id: &TestsetId) -> Option<Lease> {
        let lease = self.lease(&mut lock(&self.shared.state), id)?;
        // Persist recency for the next `open`; a failure only costs LRU accuracy.
        if let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.manifest_path(id))
        {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(lease)
    }

    /// A lease on live `id` (the caller holds the index lock; the lease must be dropped after
    /// the lock, as its `Drop` takes it).
    fn lease(&self, st: &mut State, id: &TestsetId) -> Option<Lease> {
        let entry = *st.live.get(id)?;
        let e = st.entries.get_mut(&entry)?;
        e.leases += 1;
        let manifest = e.manifest.clone();
        st.lru.touch(id);
        Some(Lease {
            shared: self.shared.clone(),
            entry,
            manifest,
        })
    }

    /// Whether `id` is stored (no lease, no recency change).
    pub fn contains(&self, id: &TestsetId) -> bool {
        lock(&self.shared.state).live.contains_key(id)
    }

    /// Removes `id` from the store: at once from the index (no new lease, and the version may
    /// be put again), its files when its last lease drops. `false` if it was not stored.
    pub fn delete(&self, id: &TestsetId) -> Result<bool, TestsetError> {
        let mut st = lock(&self.shared.state);
        if !st.live.contains_key(id) {
            return Ok(false);
        }
        let path = self.manifest_path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("remove", &path)(e));
            }
            _ => {}
        }
        self.unindex(&mut st, id);
        drop(st);
        tracing::info!(testset = %id, "test set deleted");
        Ok(true)
    }

    pub fn stats(&self) -> StoreStats {
        let st = lock(&self.shared.state);
        StoreStats {
            bytes: st.total,
            max_bytes: self.shared.max_bytes,
            testsets: st.live.len(),
            files: st.files.len(),
        }
    }

    /// A new private temp file in `tmp/`, for a body on its way to `put_archive`.
    pub fn spool(&self) -> Result<Spool, TestsetError> {
        let path = self.temp_path("spool");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("create", &path))?;
        Ok(Spool { path, file })
    }

    fn temp_path(&self, what: &str) -> PathBuf {
        let seq = self.shared.temp_seq.fetch_add(1, Ordering::Relaxed);
        self.shared
            .dir
            .join(TMP)
            .join(format!("{what}-{}-{seq}", std::process::id()))
    }

    fn stage_dir(&self) -> Result<StageDir, TestsetError> {
        let path = self.temp_path("put");
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_err("create", &path))?;
        Ok(StageDir(path))
    }

    fn object_path(&self, sha: &str) -> PathBuf {
        object_path(&self.shared.dir, sha)
    }

    fn manifest_path(&self, id: &TestsetId) -> PathBuf {
        self.shared
            .dir
            .join(MANIFESTS)
            .join(&id.problem)
            .join(format!("{}{MANIFEST_SUFFIX}", id.version))
    }

    /// Takes `id` out of the index (its manifest file is already gone) and frees its files
    /// unless leased.
    fn unindex(&self, st: &mut State, id: &TestsetId) {
        let Some(entry) = st.live.remove(id) else {
            return;
        };
        st.lru.remove(id);
        // The problem's directory goes with its last version (fails harmlessly otherwise).
        let _ = fs::remove_dir(self.shared.dir.join(MANIFESTS).join(&id.problem));
        let e = st.entries.get_mut(&entry).expect("live ids have entries");
        e.doomed = true;
        if e.leases == 0 {
            self.shared.free(st, entry);
        }
    }

    /// Evicts least recently used versions without leases (never `keep`) until the store fits.
    fn evict(&self, st: &mut State, keep: Option<&TestsetId>) {
        while st.total > self.shared.max_bytes {
            let victim = st
                .lru
                .oldest_first()
                .find(|id| Some(*id) != keep && st.entries[&st.live[*id]].leases == 0)
                .cloned();
            let Some(victim) = victim else {
                tracing::warn!(
                    bytes = st.total,
                    max = self.shared.max_bytes,
                    "test-set store over its cap; every other version is in use"
                );
                break;
            };
            let path = self.manifest_path(&victim);
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, testset = %victim, "failed to remove an evicted manifest");
            }
            self.unindex(st, &victim);
            tracing::info!(testset = %victim, "test set evicted");
        }
    }

    /// Rebuilds the index from disk (see `open`).
    fn load(&self) -> Result<(), TestsetError> {
        let dir = &self.shared.dir;
        let found_files = scan_objects(&dir.join(OBJECTS))?;
        let mut manifests = Vec::new();
        let mdir = dir.join(MANIFESTS);
        for problem in fs::read_dir(&mdir).map_err(io_err("read", &mdir))? {
            let problem = problem.map_err(io_err("read", &mdir))?;
            let ppath = problem.path();
            let is_dir = problem.file_type().is_ok_and(|t| t.is_dir());
            let pname = problem.file_name();
            if !is_dir || !pname.to_str().is_some_and(is_valid_name) {
                tracing::warn!(path = %ppath.display(), "ignoring a stray entry in the test-set store");
                continue;
            }
            for file in fs::read_dir(&ppath).map_err(io_err("read", &ppath))? {
                let path = file.map_err(io_err("read", &ppath))?.path();
                match load_manifest(&path, &found_files) {
                    Ok((m, mtime)) => manifests.push((mtime, m)),
                    Err(why) => {
                        tracing::warn!(path = %path.display(), why, "dropping a test-set manifest");
                        let _ = fs::remove_file(&path);
                    }
                }
            }
            let _ = fs::remove_dir(&ppath); // only if it ended up empty
        }
        manifests.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id().cmp(&b.1.id())));
        let mut st = lock(&self.shared.state);
        for (_, m) in manifests {
            for (sha, bytes) in m.files() {
                st.add_ref(sha, bytes);
            }
            st.insert(m.id(), Arc::new(m));
        }
        for sha in found_files.keys().filter(|s| !st.files.contains_key(*s)) {
            let _ = fs::remove_file(self.object_path(sha));
        }
        self.evict(&mut st, None);
        tracing::info!(
            testsets = st.live.len(),
            bytes = st.total,
            "test-set store opened"
        );
        Ok(())
    }
}

impl State {
    /// Indexes a new live version (its files' references are the caller's).
    fn insert(&mut self, id: TestsetId, manifest: Arc<Manifest>) {
        let entry = self.next_entry;
        self.next_entry += 1;
        self.lru.touch(&id);
        self.live.insert(id.clone(), entry);
        self.entries.insert(
            entry,
            Entry {
                id,
                manifest,
                leases: 0,
                doomed: false,
            },
        );
    }

    fn add_ref(&mut self, sha: &str, bytes: u64) {
        match self.files.get_mut(sha) {
            Some(f) => f.refs += 1,
            None => {
                self.files
                    .insert(sha.to_owned(), FileRefs { bytes, refs: 1 });
                self.total += bytes;
            }
        }
    }
}

impl Shared {
    /// Drops a doomed, unleased entry and the files only it named.
    fn free(&self, st: &mut State, entry: u64) {
        let Some(e) = st.entries.remove(&entry) else {
            return;
        };
        for sha in e.manifest.files().keys() {
            let Some(f) = st.files.get_mut(*sha) else {
                continue;
            };
            f.refs -= 1;
            if f.refs == 0 {
                st.total -= f.bytes;
                st.files.remove(*sha);
                let path = object_path(&self.dir, sha);
                if let Err(err) = fs::remove_file(&path)
                    && err.kind() != io::ErrorKind::NotFound
                {
                    tracing::warn!(error = %err, testset = %e.id, "failed to remove a test-set file");
                }
            }
        }
    }
}

impl Lease {
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Case `index`'s input, opened read-only: for a jail's stdin (never read into memory).
    pub fn open_input(&self, index: usize) -> Result<File, TestsetError> {
        let sha = &self.case(index)?.input_sha256;
        self.open(sha)
    }

    /// Case `index`'s expected output, opened read-only: for `compare`, in the daemon only.
    pub fn open_expected(&self, index: usize) -> Result<File, TestsetError> {
        let sha = &self.case(index)?.output_sha256;
        self.open(sha)
    }

    fn case(&self, index: usize) -> Result<&ManifestCase, TestsetError> {
        self.manifest
            .cases
            .get(index)
            .ok_or_else(|| TestsetError::NoCase {
                id: self.manifest.id(),
                index,
            })
    }

    fn open(&self, sha: &str) -> Result<File, TestsetError> {
        let path = object_path(&self.shared.dir, sha);
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("open", &path))
    }
}

impl Clone for Lease {
    fn clone(&self) -> Lease {
        let mut st = lock(&self.shared.state);
        if let Some(e) = st.entries.get_mut(&self.entry) {
            e.leases += 1;
        }
        Lease {
            shared: self.shared.clone(),
            entry: self.entry,
            manifest: self.manifest.clone(),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        let Some(e) = st.entries.get_mut(&self.entry) else {
            return;
        };
        e.leases -= 1;
        if e.doomed && e.leases == 0 {
            self.shared.free(&mut st, self.entry);
        }
    }
}

fn same_or_conflict(id: &TestsetId, existing: Lease, new: &Manifest) -> Result<Put, TestsetError> {
    if existing.manifest.sha256 == new.sha256 {
        Ok(Put {
            status: PutStatus::Unchanged,
            lease: existing,
        })
    } else {
        Err(TestsetError::Conflict { id: id.clone() })
    }
}

fn object_path(dir: &Path, sha: &str) -> PathBuf {
    dir.join(OBJECTS).join(&sha[..2]).join(sha)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Creates `path` as a directory of mode 0700 if missing; makes an existing one 0700. Refuses
/// a symlink or a non-directory in its place.
fn private_dir(path: &Path) -> Result<(), TestsetError> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create", path)(e)),
    }
    let meta = fs::symlink_metadata(path).map_err(io_err("inspect", path))?;
    if !meta.is_dir() {
        return Err(io_err("use", path)(io::Error::other(
            "exists and is not a directory (or is a symlink)",
        )));
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", path))?;
    }
    Ok(())
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), TestsetError> {
    let mut f = create_private(path).map_err(io_err("create", path))?;
    f.write_all(data).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("write", path))
}

/// `objects/<xx>/<sha256>` regular files: sha256 → size. Anything else is left alone.
fn scan_objects(objects: &Path) -> Result<HashMap<String, u64>, TestsetError> {
    let mut found = HashMap::new();
    for sub in fs::read_dir(objects).map_err(io_err("read", objects))? {
        let sub = sub.map_err(io_err("read", objects))?;
        if !sub.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let spath = sub.path();
        let prefix = sub.file_name();
        for file in fs::read_dir(&spath).map_err(io_err("read", &spath))? {
            let file = file.map_err(io_err("read", &spath))?;
            let name = file.file_name();
            let (Some(name), Some(prefix)) = (name.to_str(), prefix.to_str()) else {
                continue;
            };
            if !is_sha256_hex(name) || !name.starts_with(prefix) || prefix.len() != 2 {
                continue;
            }
            // `DirEntry::metadata` does not follow symlinks.
            if let Ok(meta) = file.metadata()
                && meta.is_file()
            {
                found.insert(name.to_owned(), meta.len());
            }
        }
    }
    Ok(found)
}

/// Reads and checks one manifest file; the reason it is unusable otherwise.
fn load_manifest(
    path: &Path,
    files: &HashMap<String, u64>,
) -> Result<(Manifest, SystemTime), String> {
    let problem = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let version = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(MANIFEST_SUFFIX))
        .filter(|v| is_valid_name(v))
        .ok_or("not a manifest name")?;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = Vec::new();
    f.read_to_end(&mut text).map_err(|e| e.to_string())?;
    let mut m: Manifest = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if m.problem != problem || m.version != version {
        return Err("names do not match its path".into());
    }
    if m.cases.is_empty() {
        return Err("no cases".into());
    }
    for c in &m.cases {
        if !archive::is_valid_case_name(&c.name) {
            return Err(format!("invalid case name {:?}", c.name));
        }
        for (sha, bytes) in [
            (&c.input_sha256, c.input_bytes),
            (&c.output_sha256, c.output_bytes),
        ] {
            if !is_sha256_hex(sha) || files.get(sha.as_str()) != Some(&bytes) {
                return Err(format!(
                    "case {}: file {sha} missing or of another size",
                    c.name
                ));
            }
        }
    }
    m.sha256 = m.content_sha256();
    Ok((m, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Puts, immutability, leases, eviction, restart, and that a
    //! refused archive stores nothing.
    use super::*;
    use crate::judge::archive::tests::{file, gzip, tar};
    use crate::judge::compare::CompareMode;

    const LIMITS: ArchiveLimits = ArchiveLimits {
        max_bytes: 1 << 20,
        max_cases: 100,
    };

    fn id(p: &str, v: &str) -> TestsetId {
        TestsetId::new(p, v).unwrap()
    }

    fn open(dir: &Path, max: u64) -> TestsetStore {
        TestsetStore::open(dir.join(TESTSETS_DIR), max, LIMITS).unwrap()
    }

    /// A test set with `n` cases, case i: input "in-<tag>-i", output "out-<tag>-i".
    fn archive(tag: &str, n: usize) -> Vec<u8> {
        let contents: Vec<(String, String, String, String)> = (1..=n)
            .map(|i| {
                (
                    format!("{i}.in"),
                    format!("in-{tag}-{i}\n"),
                    format!("{i}.out"),
                    format!("out-{tag}-{i}\n"),
                )
            })
            .collect();
        let mut entries = Vec::new();
        for (a, b, c, d) in &contents {
            entries.push(file(a, b.as_bytes()));
            entries.push(file(c, d.as_bytes()));
        }
        tar(&entries)
    }

    fn read_all(mut f: File) -> String {
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    fn files_under(dir: &Path) -> usize {
        let mut n = 0;
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                n += files_under(&e.path());
            } else {
                n += 1;
            }
        }
        n
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn test_put_get_and_open_cases() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 1 << 20);
        let body = tar(&[
            file("2.in", b"1 1\n"),
            file("2.out", b"2\n"),
            file("10.in", b"5 5\n"),
            file("10.ans", b"10\n"),
            file("problem.toml", b"compare = \"float\"\nmemorylimit = 64\n"),
        ]);
        let put = s.put_archive(&id("sum", "v1"), &body[..]).unwrap();
        assert_eq!(put.status, PutStatus::Created);
        let m = put.manifest();
        assert_eq!((m.problem.as_str(), m.version.as_str()), ("sum", "v1"));
        assert_eq!(m.compare.mode, CompareMode::Float);
        assert_eq!(m.limits.memorylimit, Some(64));
        assert_eq!(m.cases.len(), 2);
        assert_eq!(m.cases[0].name, "2");
        assert_eq!(m.cases[1].output_bytes, 3);
        assert_eq!(m.sha256, m.content_sha256());
        // The manifest's JSON has exactly the documented keys.
        let json: serde_json::Value = serde_json::to_value(&**m).unwrap();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["cases", "compare", "limits", "problem", "sha256", "version"]
        );
        let case_keys: Vec<_> = json["cases"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            case_keys,
            [
                "input_bytes",
                "input_sha256",
                "name",
                "output_bytes",
                "output_sha256"
            ]
        );

        let lease = s.get(&id("sum", "v1")).unwrap();
        assert_eq!(lease.manifest(), m);
        assert_eq!(read_all(lease.open_input(0).unwrap()), "1 1\n");
        assert_eq!(read_all(lease.open_expected(1).unwrap()), "10\n");
        assert!(matches!(
            lease.open_input(2),
            Err(TestsetError::NoCase { index: 2, .. })
        ));
        assert!(s.get(&id("sum", "v2")).is_none());
        assert!(s.get(&id("other", "v1")).is_none());
        assert_eq!(
            s.stats(),
            StoreStats {
                bytes: 4 + 2 + 4 + 3,
                max_bytes: 1 << 20,
                testsets: 1,
                files: 4
            }
        );
        // Only the daemon can read anything: 0700 directories, 0600 files.
        let root = tmp.path().join(TESTSETS_DIR);
        assert_eq!(mode(&root), 0o700);
        for sub in [OBJECTS, MANIFESTS, TMP] {
            assert_eq!(mode(&root.join(sub)), 0o700);
        }
        let obj = object_path(&root, &m.cases[0].output_sha256);
        assert_eq!(mode(&obj), 0o600);
        assert_eq!(mode(obj.parent().unwrap()), 0o700);
        assert_eq!(mode(&root.join("manifests/sum/v1.json")), 0o600);
        assert_eq!(mode(&root.join("manifests/sum")), 0o700);
        assert_eq!(files_under(&root.join(TMP)), 0, "staging is cleaned up");
    }

    #[test]
    fn test_versions_are_immutable() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 1 << 20);
        let v1 = id("p", "v1");
        let first = s.put_archive(&v1, &archive("a", 3)[..]).unwrap();
        // The same content again, even gzip-compressed: unchanged.
        let again = s.put_archive(&v1, &gzip(&archive("a", 3))[..]).unwrap();
        assert_eq!(again.status, PutStatus::Unchanged);
        assert_eq!(again.manifest(), first.manifest());
        // Other content, or other settings: conflict, and the stored version is untouched.
        for body in [
            archive("b", 3),
            archive("a", 2),
            tar(&[
                file("1.in", b"in-a-1\n"),
                file("1.out", b"out-a-1\n"),
                file("problem.toml", b"hide_diff = true"),
            ]),
        ] {
            let e = s.put_archive(&v1, &body[..]).unwrap_err();
            assert!(matches!(e, TestsetError::Conflict { .. }), "{e:?}");
            assert_eq!(
                e.to_string(),
                "test set p/v1 already exists with different content (versions are immutable)"
            );
        }
        assert_eq!(s.get(&v1).unwrap().manifest(), first.manifest());
        // Same content under another version or problem: same sha256, files shared.
        let other = s.put_archive(&id("q", "x"), &archive("a", 3)[..]).unwrap();
        assert_eq!(other.status, PutStatus::Created);
        assert_eq!(other.manifest().sha256, first.manifest().sha256);
        assert_eq!(s.stats().files, 6);
        assert_eq!(s.stats().testsets, 2);
    }

    #[test]
    fn test_refused_archive_stores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 1 << 20);
        let root = tmp.path().join(TESTSETS_DIR);
        for (body, want) in [
            (
                tar(&[file("1.in", b"a"), file("1.out", b"b"), file("2.in", b"c")]),
                "test set p/v: entry \"2.in\": has no matching NAME.out or NAME.ans",
            ),
            (
                tar(&[file("1.in", b"a"), file("../1.out", b"b")]),
                "test set p/v: entry \"../1.out\": path traversal (..) is not allowed",
            ),
            (
                b"garbage".to_vec(),
                "test set p/v: not a readable tar archive",
            ),
        ] {
            let e = s.put_archive(&id("p", "v"), &body[..]).unwrap_err();
            assert!(!e.is_internal());
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                if c.to_string() != "archive header checksum mismatch"
                    && !c.to_string().starts_with("failed to read entire block")
                {
                    msg.push_str(": ");
                    msg.push_str(&c.to_string());
                }
                src = c.source();
            }
            assert_eq!(msg, want);
            for sub in [OBJECTS, MANIFESTS, TMP] {
                assert_eq!(files_under(&root.join(sub)), 0, "{sub} after {want}");
            }
            assert!(!s.contains(&id("p", "v")));
        }
        assert_eq!(s.stats().bytes, 0);
    }

    #[test]
    fn test_too_large_for_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 10);
        let e = s
            .put_archive(&id("p", "v"), &archive("a", 2)[..])
            .unwrap_err();
        assert!(matches!(e, TestsetError::TooLarge { max: 10, .. }), "{e:?}");
        assert_eq!(files_under(&tmp.path().join(TESTSETS_DIR)), 0);
    }

    #[test]
    fn test_names() {
        for ok in ["a", "A-1.b_c", &"x".repeat(64), "..."] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65), "a\0"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        let e = TestsetId::new("ok", "..").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid version \"..\": must be 1 to 64 characters of A-Z a-z 0-9 . _ - (not . or ..)"
        );
        assert!(matches!(
            TestsetId::new("a/b", "v"),
            Err(TestsetError::InvalidName {
                what: "problem",
                ..
            })
        ));
        assert_eq!(id("p", "v").to_string(), "p/v");
    }

    #[test]
    fn test_delete_waits_for_leases() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 1 << 20);
        let v = id("p", "v");
        s.put_archive(&v, &archive("a", 2)[..]).unwrap();
        let lease = s.get(&v).unwrap();
        let lease2 = lease.clone();
        assert!(s.delete(&v).unwrap());
        assert!(!s.delete(&v).unwrap());
        // Gone from the index at once ...
        assert!(s.get(&v).is_none());
        assert_eq!(s.stats().testsets, 0);
        assert!(!tmp.path().join("testsets/manifests/p").exists());
        // ... but a running submission still reads its files.
        drop(lease);
        assert_eq!(read_all(lease2.open_input(1).unwrap()), "in-a-2\n");
        assert_eq!(s.stats().files, 4);
        // The version may be put again meanwhile (other content is fine: it was deleted).
        s.put_archive(&v, &archive("b", 1)[..]).unwrap();
        assert_eq!(read_all(lease2.open_expected(0).unwrap()), "out-a-1\n");
        drop(lease2);
        // The old files are gone, the new version's stay.
        assert_eq!(s.stats().files, 2);
        assert_eq!(files_under(&tmp.path().join("testsets/objects")), 2);
        let l = s.get(&v).unwrap();
        assert_eq!(read_all(l.open_input(0).unwrap()), "in-b-1\n");
    }

    #[test]
    fn test_shared_files_outlive_one_version() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 1 << 20);
        s.put_archive(&id("p", "1"), &archive("a", 2)[..]).unwrap();
        s.put_archive(&id("p", "2"), &archive("a", 3)[..]).unwrap();
        assert_eq!(s.stats().files, 6);
        s.delete(&id("p", "2")).unwrap();
        assert_eq!(s.stats().files, 4);
        let l = s.get(&id("p", "1")).unwrap();
        assert_eq!(read_all(l.open_input(1).unwrap()), "in-a-2\n");
        s.delete(&id("p", "1")).unwrap();
        drop(l);
        assert_eq!(
            s.stats(),
            StoreStats {
                bytes: 0,
                max_bytes: 1 << 20,
                testsets: 0,
                files: 0
            }
        );
        assert_eq!(files_under(&tmp.path().join("testsets")), 0);
    }

    #[test]
    fn test_lru_eviction_skips_leased_versions() {
        let tmp = tempfile::tempdir().unwrap();
        // Each archive("x", 2) holds 4 files of 7-8 bytes: 30 bytes.
        let s = open(tmp.path(), 70);
        for v in ["a", "b"] {
            s.put_archive(&id("p", v), &archive(v, 2)[..]).unwrap();
        }
        assert_eq!(s.stats().bytes, 60);
        // Use "a": "b" becomes the least recently used and goes for "c".
        drop(s.get(&id("p", "a")).unwrap());
        s.put_archive(&id("p", "c"), &archive("c", 2)[..]).unwrap();
        assert!(s.contains(&id("p", "a")) && s.contains(&id("p", "c")));
        assert!(!s.contains(&id("p", "b")));
        assert!(!tmp.path().join("testsets/manifests/p/b.json").exists());
        assert_eq!(s.stats().bytes, 60);
        // Lease "a", then use "c": "a" is the oldest but leased, so "c" goes instead.
        let lease_a = s.get(&id("p", "a")).unwrap();
        drop(s.get(&id("p", "c")).unwrap());
        s.put_archive(&id("p", "d"), &archive("d", 2)[..]).unwrap();
        assert!(s.contains(&id("p", "a")), "leased: not evicted");
        assert!(!s.contains(&id("p", "c")));
        assert!(s.contains(&id("p", "d")));
        // With everything else leased, the store goes over its cap rather than break a lease.
        let lease_d = s.get(&id("p", "d")).unwrap();
        s.put_archive(&id("p", "e"), &archive("e", 2)[..]).unwrap();
        assert_eq!(s.stats().testsets, 3);
        assert_eq!(s.stats().bytes, 90);
        // When the leases drop, the next put evicts down to the cap.
        drop(lease_a);
        drop(lease_d);
        s.put_archive(&id("p", "f"), &archive("f", 2)[..]).unwrap();
        assert!(s.stats().bytes <= 70);
        assert!(s.contains(&id("p", "f")));
    }

    #[test]
    fn test_restart_rebuilds_index_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(TESTSETS_DIR);
        {
            let s = open(tmp.path(), 1 << 20);
            s.put_archive(&id("p", "old"), &archive("o", 2)[..])
                .unwrap();
            s.put_archive(&id("p", "new"), &archive("n", 2)[..])
                .unwrap();
            s.put_archive(&id("q", "gone"), &archive("g", 1)[..])
                .unwrap();
        }
        // Order by mtime: "old" older than "new".
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for (f, t) in [
            ("p/old.json", t0),
            ("p/new.json", t0 + std::time::Duration::from_secs(10)),
        ] {
            File::options()
                .write(true)
                .open(root.join(MANIFESTS).join(f))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        // A crash's leftovers and damage:
        fs::write(root.join("tmp/spool-1-1"), b"half a body").unwrap();
        fs::create_dir(root.join("tmp/put-1-2")).unwrap();
        fs::write(root.join("tmp/put-1-2/part-0"), b"x").unwrap();
        let orphan = "ab".repeat(32);
        fs::create_dir_all(root.join("objects/ab")).unwrap();
        fs::write(root.join("objects/ab").join(&orphan), b"orphan").unwrap();
        // q/gone names a file that is missing now.
        let gone = fs::read(root.join("manifests/q/gone.json")).unwrap();
        let gone: Manifest = serde_json::from_slice(&gone).unwrap();
        fs::remove_file(object_path(&root, &gone.cases[0].input_sha256)).unwrap();
        fs::write(root.join("manifests/p/broken.json"), b"{").unwrap();
        fs::copy(
            root.join("manifests/p/old.json"),
            root.join("manifests/p/renamed.json"),
        )
        .unwrap();

        let s = open(tmp.path(), 1 << 20);
        assert_eq!(s.stats().testsets, 2);
        assert!(s.contains(&id("p", "old")) && s.contains(&id("p", "new")));
        assert!(!s.contains(&id("q", "gone")));
        assert!(!root.join("manifests/q").exists());
        assert!(!root.join("manifests/p/broken.json").exists());
        assert!(!root.join("manifests/p/renamed.json").exists());
        assert!(!root.join("objects/ab").join(&orphan).exists());
        assert_eq!(files_under(&root.join(TMP)), 0);
        assert_eq!(fs::read_dir(root.join(TMP)).unwrap().count(), 0);
        // gone's other file (only it named) was deleted as an orphan.
        assert_eq!(s.stats().files, 8);
        assert_eq!(files_under(&root.join(OBJECTS)), 8);
        let l = s.get(&id("p", "old")).unwrap();
        assert_eq!(read_all(l.open_input(0).unwrap()), "in-o-1\n");
        drop(l);
        drop(s);
        // Reading "old" made it the most recent (its mtime): a smaller cap evicts "new".
        let s = open(tmp.path(), 30);
        assert!(s.contains(&id("p", "old")));
        assert!(!s.contains(&id("p", "new")));
        assert_eq!(s.stats().files, 4);
    }

    #[test]
    fn test_concurrent_puts_of_one_version() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 1 << 20);
        let body = archive("a", 5);
        let other = archive("b", 5);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let s = s.clone();
                    let body = if i % 2 == 0 { &body } else { &other };
                    scope.spawn(move || {
                        s.put_archive(&id("p", "v"), &body[..])
                            .map(|p| (p.status, p.manifest().sha256.clone()))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let created = results
            .iter()
            .filter(|r| matches!(r, Ok((PutStatus::Created, _))))
            .count();
        assert_eq!(created, 1, "{results:?}");
        let winner = s.get(&id("p", "v")).unwrap().manifest().sha256.clone();
        for r in &results {
            match r {
                Ok((_, sha)) => assert_eq!(sha, &winner),
                Err(e) => assert!(matches!(e, TestsetError::Conflict { .. }), "{e:?}"),
            }
        }
        assert_eq!(s.stats().files, 10);
        assert_eq!(files_under(&tmp.path().join("testsets/objects")), 10);
        assert_eq!(files_under(&tmp.path().join("testsets/tmp")), 0);
    }

    #[test]
    fn test_symlinks_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 1 << 20);
        let put = s.put_archive(&id("p", "v"), &archive("a", 1)[..]).unwrap();
        let root = tmp.path().join(TESTSETS_DIR);
        let secret = tmp.path().join("secret");
        fs::write(&secret, b"secret").unwrap();
        let obj = object_path(&root, &put.manifest().cases[0].input_sha256);
        fs::remove_file(&obj).unwrap();
        std::os::unix::fs::symlink(&secret, &obj).unwrap();
        let l = s.get(&id("p", "v")).unwrap();
        let e = l.open_input(0).unwrap_err();
        assert!(e.is_internal());
        // A symlink in place of the store directory is refused.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), &link).unwrap();
        fs::create_dir(tmp.path().join("elsewhere")).unwrap();
        assert!(TestsetStore::open(link, 100, LIMITS).is_err());
    }

    #[test]
    fn test_spool_is_private_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 1 << 20);
        let mut sp = s.spool().unwrap();
        sp.file().write_all(&archive("a", 1)).unwrap();
        let path = sp.path.clone();
        assert_eq!(mode(&path), 0o600);
        sp.rewind().unwrap();
        let put = s.put_archive(&id("p", "v"), sp.file()).unwrap();
        assert_eq!(put.status, PutStatus::Created);
        drop(sp);
        assert!(!path.exists());
    }

    #[test]
    fn test_existing_dir_mode_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(TESTSETS_DIR);
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let _s = open(tmp.path(), 100);
        assert_eq!(mode(&root), 0o700);
    }
}
