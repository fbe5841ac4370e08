//! The compile cache: a compile step whose inputs were seen before is not run again
//! (docs/performance.md, "Compile cache").
//!
//! A [`Key`] is a SHA-256 over a length-prefixed encoding of everything the compile step's
//! result depends on: what the step is used for ([`Use`]), the profile's id and the version its
//! toolchain reported, the step's argv, environment, working directory and limits, the seccomp
//! policy, the extra read-only paths, the cmpinfo rule, and every file written before the step
//! (name and contents). The run directory's random path (`/home/jobe/runs/jobe_XXXXXX`, in the
//! environment's `HOME` and `TMPDIR` and the working directory) is replaced by a placeholder, so
//! identical submissions get identical keys.
//!
//! An [`Entry`] is a directory `<data_dir>/compile-cache/<key>-<suffix>`, root-owned and not
//! writable by job users: `meta` (what the step ended with), and either `files/` (a snapshot of
//! the run directory right after a successful compile step, taken by `jail::copy_out`: regular
//! files and directories only), nothing more (a passed syntax check needs no files), or
//! `cmpinfo` (a compile step that exited and failed; the run directory's path in it replaced by
//! a placeholder and put back for each hit). Entries are built in a `.tmp-` directory and
//! renamed into place, so a reader never sees half an entry; temp directories a dead daemon left
//! are removed at [`CompileCache::open`], which rebuilds the index from disk (recency from the
//! mtime of `meta`, bumped on every hit).
//!
//! Size: the sum of the entries' file bytes is capped; least recently used entries are evicted
//! (`crate::lru`). An evicted entry that is still in use (a judge submission runs its test cases
//! from it) stays on disk until the last [`Arc<Entry>`] is dropped.
//!
//! Single flight: [`CompileCache::lookup`] makes the first caller of a key its leader and lets
//! later callers of the same key wait until the leader's [`Leader`] guard is dropped; then they
//! look again (a hit, or one of them leads when the leader stored nothing: an internal error, a
//! cancelled compile, a compile killed by a limit).
//!
//! Owns: the key, the entries on disk, their index, cap and recency, single flight.
//! Must not: run steps or decide outcomes (the scheduler does), write into a run directory
//! (`RunFiles` does), or follow a link or open a FIFO in an entry.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::job::{Outcome, Usage};
use crate::lru::Lru;
use crate::profile::plan::{Plan, Step};

/// The cache's directory under the data directory.
pub const COMPILE_CACHE_DIR: &str = "compile-cache";
/// Prefix of entries being built; removed at `open`.
const TEMP_PREFIX: &str = ".tmp-";
/// What the step ended with (first line: [`META_MAGIC`]).
const META: &str = "meta";
const META_MAGIC: &str = "runner-compile-cache 1";
const CMPINFO: &str = "cmpinfo";
const FILES: &str = "files";
/// Stands for the run directory's path in a stored `cmpinfo` (NULs: never in a path).
const RUN_DIR_MARK: &[u8] = b"\0run_dir\0";

/// Errors of the cache; they carry host paths, so they go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum CompileCacheError {
    #[error("cannot {step} {path}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(
    step: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CompileCacheError + 'a {
    move |source| CompileCacheError::Io {
        step,
        path: path.to_owned(),
        source,
    }
}

/// What a compile step is used for: entries of one use never answer the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The compile step before the run: a pass keeps the files it left.
    Compile,
    /// A deferred syntax check (docs/profiles.md, "Deferred check"): a pass needs no files.
    Check,
}

/// A cache key: SHA-256 of the compile step's inputs (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl Key {
    /// Lower-case hex, the entry's directory name.
    pub fn hex(&self) -> String {
        crate::hex::hex(&self.0)
    }

    fn parse(s: &str) -> Option<Key> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Key(out))
    }
}

/// What identifies the language: the profile's id and the version its toolchain reported.
#[derive(Debug, Clone, Copy)]
pub struct Toolchain<'a> {
    pub profile: &'a str,
    pub version: &'a str,
}

/// The key of `step` (a compile or check step of `plan`, planned with the run directory at
/// `jail_dir` in the jail).
pub fn key(use_: Use, tool: Toolchain<'_>, plan: &Plan, step: &Step, jail_dir: &str) -> Key {
    let mut h = Encoder(Sha256::new());
    let norm = |s: &str| s.replace(jail_dir, "\0run_dir\0");
    h.field(b"runner compile cache key 1");
    h.field(match use_ {
        Use::Compile => b"compile",
        Use::Check => b"check",
    });
    h.field(tool.profile.as_bytes());
    h.field(tool.version.as_bytes());
    h.count(step.argv.len());
    for a in &step.argv {
        h.field(norm(a).as_bytes());
    }
    h.count(step.env.len());
    for (k, v) in &step.env {
        h.field(norm(k).as_bytes());
        h.field(norm(v).as_bytes());
    }
    // The working directory is the run directory.
    h.field(norm(jail_dir).as_bytes());
    let l = &step.limits;
    for n in [
        u64::try_from(l.cpu.as_nanos()).unwrap_or(u64::MAX),
        u64::try_from(l.wall.as_nanos()).unwrap_or(u64::MAX),
        l.memory_bytes,
        l.disk_bytes,
        l.stream_bytes,
        u64::from(l.procs),
        l.address_space_bytes.map_or(0, |b| b.saturating_add(1)),
    ] {
        h.field(&n.to_le_bytes());
    }
    h.field(plan.seccomp.as_bytes());
    h.count(plan.extra_ro_paths.len());
    for p in &plan.extra_ro_paths {
        h.field(p.as_bytes());
    }
    h.field(format!("{:?}", plan.cmpinfo).as_bytes());
    h.count(plan.files.len());
    for (name, data) in &plan.files {
        h.field(name.as_bytes());
        h.field(data);
    }
    Key(h.0.finalize().into())
}

/// Length-prefixed fields: no two different inputs encode alike.
struct Encoder(Sha256);

impl Encoder {
    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }
}

/// How the cached step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// It passed; `files`: the entry holds the snapshot of the run directory.
    Passed { files: bool },
    /// It exited and failed: the answer (outcome 11, the cmpinfo, the step's usage).
    Failed {
        outcome: Outcome,
        cmpinfo: Vec<u8>,
        usage: Usage,
    },
}

/// One stored result; the directory stays while an `Arc<Entry>` is held, even once evicted.
#[derive(Debug)]
pub struct Entry {
    dir: PathBuf,
    bytes: u64,
    ending: Ending,
    evicted: AtomicBool,
}

impl Entry {
    /// Bytes of its files (or of its cmpinfo).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How the step ended.
    pub fn ending(&self) -> &Ending {
        &self.ending
    }

    /// The snapshot of the run directory (a pass with files), root-owned, never written to.
    pub fn files(&self) -> Option<PathBuf> {
        matches!(self.ending, Ending::Passed { files: true }).then(|| self.dir.join(FILES))
    }

    /// The stored cmpinfo with the run directory's path of this run (`jail_dir`) put back.
    pub fn cmpinfo_for(cmpinfo: &[u8], jail_dir: &str) -> Vec<u8> {
        replace(cmpinfo, RUN_DIR_MARK, jail_dir.as_bytes())
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.evicted.load(Ordering::SeqCst)
            && let Err(err) = fs::remove_dir_all(&self.dir)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(?err, dir = %self.dir.display(), "cannot remove an evicted compile cache entry");
        }
    }
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<Key, Arc<Entry>>,
    lru: Lru<Key>,
    total: u64,
}

/// The cache (see the module docs). Blocking file work, short: small snapshots.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    /// Keys being compiled by a leader; dropped senders wake the waiters.
    flights: Mutex<HashMap<Key, watch::Receiver<()>>>,
    seq: AtomicU64,
}

/// What [`CompileCache::lookup`] found.
#[derive(Debug)]
pub enum Lookup<'a> {
    Hit(Arc<Entry>),
    /// Not cached and nobody compiling it: the caller compiles and stores through the guard
    /// (dropping it without storing lets a waiter compile instead).
    Lead(Leader<'a>),
}

/// The one caller compiling a key; waiters of the key wake when it is dropped.
#[derive(Debug)]
pub struct Leader<'a> {
    cache: &'a CompileCache,
    key: Key,
    _done: watch::Sender<()>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        lock(&self.cache.flights).remove(&self.key);
    }
}

/// Copies a finished compile step's run directory into the directory given; the bytes copied.
pub type Snapshot<'a> = &'a dyn Fn(&Path) -> Result<u64, crate::jail::JailError>;

/// What a leader stores.
pub enum Store<'a> {
    /// A pass; `snapshot` copies the run directory into the directory given (`None`: a check,
    /// no files) and returns the bytes copied.
    Passed { snapshot: Option<Snapshot<'a>> },
    /// A compile step that exited and failed, with the cmpinfo as answered and the run
    /// directory's path in the jail (replaced by a placeholder in the entry).
    Failed {
        outcome: Outcome,
        cmpinfo: &'a [u8],
        usage: &'a Usage,
        jail_dir: &'a str,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    crate::sync::lock(m)
}

impl CompileCache {
    /// Opens (creating if needed) the cache in `dir`, capped at `max_bytes`: removes
    /// half-built entries, indexes the complete ones (oldest `meta` first), evicts beyond the
    /// cap.
    pub fn open(dir: PathBuf, max_bytes: u64) -> Result<CompileCache, CompileCacheError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&dir)
            .map_err(io_err("create", &dir))?;
        let mut found: Vec<(SystemTime, Key, Entry)> = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let e = e.map_err(io_err("read", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let parsed = name
                .split_once('-')
                .and_then(|(k, _)| Key::parse(k))
                .filter(|_| {
                    !name.starts_with(TEMP_PREFIX) && e.file_type().is_ok_and(|t| t.is_dir())
                });
            match parsed.and_then(|k| load(&path).map(|(m, entry)| (m, k, entry))) {
                Some(f) => found.push(f),
                None => {
                    // A half-built entry, a damaged one, or something that is not ours.
                    tracing::info!(path = %path.display(), "removing an incomplete compile cache entry");
                    remove_any(&path);
                }
            }
        }
        found.sort_by_key(|(mtime, _, _)| *mtime);
        let cache = CompileCache {
            dir,
            max_bytes,
            index: Mutex::new(Index::default()),
            flights: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        };
        {
            let mut idx = lock(&cache.index);
            for (_, key, entry) in found {
                // A key stored twice (a daemon died between storing and removing): the newest.
                let entry = Arc::new(entry);
                idx.total += entry.bytes;
                if let Some(old) = idx.entries.insert(key, entry) {
                    idx.total -= old.bytes;
                    old.evicted.store(true, Ordering::SeqCst);
                }
                idx.lru.touch(&key);
            }
            cache.evict(&mut idx, None);
        }
        Ok(cache)
    }

    /// Bytes and number of the entries.
    pub fn size(&self) -> (u64, usize) {
        let idx = lock(&self.index);
        (idx.total, idx.entries.len())
    }

    /// The entry of `key` if there is one (marked most recently used), without waiting.
    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        let entry = {
            let mut idx = lock(&self.index);
            let entry = idx.entries.get(key).cloned()?;
            idx.lru.touch(key);
            entry
        };
        // Recency for the next start; a failure only costs LRU accuracy.
        if let Ok(f) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(entry.dir.join(META))
        {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(entry)
    }

    /// The entry of `key`; or, if none, leadership of its compile; or, while another caller
    /// leads it, waits for that leader to finish and looks again.
    pub async fn lookup(&self, key: &Key) -> Lookup<'_> {
        loop {
            if let Some(e) = self.get(key) {
                return Lookup::Hit(e);
            }
            let mut waiting = {
                let mut flights = lock(&self.flights);
                // A leader stores before it leaves the flights: look again under the lock.
                if let Some(e) = self.get(key) {
                    return Lookup::Hit(e);
                }
                match flights.get(key) {
                    Some(rx) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(());
                        flights.insert(*key, rx);
                        return Lookup::Lead(Leader {
                            cache: self,
                            key: *key,
                            _done: tx,
                        });
                    }
                }
            };
            // Resolves once the leader's guard (the only sender) is dropped.
            while waiting.changed().await.is_ok() {}
        }
    }

    /// Stores the leader's result and returns the entry (`None`: not stored, e.g. larger than
    /// the cap, or the disk failed; the reason goes to the log).
    pub fn store(&self, leader: &Leader<'_>, what: Store<'_>) -> Option<Arc<Entry>> {
        match self.build(leader.key, what) {
            Ok(entry) => entry,
            Err(err) => {
                tracing::warn!(err = ?crate::telemetry::error_chain(&err), "cannot store a compile cache entry");
                None
            }
        }
    }

    fn build(&self, key: Key, what: Store<'_>) -> Result<Option<Arc<Entry>>, CompileCacheError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("{}-{seq}", std::process::id());
        let tmp = self.dir.join(format!("{TEMP_PREFIX}{suffix}"));
        DirBuilder::new()
            .mode(0o755)
            .create(&tmp)
            .map_err(io_err("create", &tmp))?;
        let built = (|| -> Result<Option<(u64, Ending)>, CompileCacheError> {
            let (bytes, ending, meta) = match what {
                Store::Passed { snapshot } => {
                    let files = snapshot.is_some();
                    let mut bytes = 0;
                    if let Some(snapshot) = snapshot {
                        let to = tmp.join(FILES);
                        DirBuilder::new()
                            .mode(0o755)
                            .create(&to)
                            .map_err(io_err("create", &to))?;
                        bytes = snapshot(&to).map_err(|e| CompileCacheError::Io {
                            step: "snapshot the run directory into",
                            path: to.clone(),
                            source: io::Error::other(e.to_string()),
                        })?;
                    }
                    let meta = format!(
                        "{META_MAGIC}\npassed {}\n{bytes}\n",
                        if files { "files" } else { "nofiles" }
                    );
                    (bytes, Ending::Passed { files }, meta)
                }
                Store::Failed {
                    outcome,
                    cmpinfo,
                    usage,
                    jail_dir,
                } => {
                    let stored = replace(cmpinfo, jail_dir.as_bytes(), RUN_DIR_MARK);
                    write_new(&tmp.join(CMPINFO), &stored)?;
                    let bytes = stored.len() as u64;
                    let meta = format!(
                        "{META_MAGIC}\nfailed {} {} {} {}\n{bytes}\n",
                        outcome.code(),
                        usage.cpu_secs,
                        usage.wall_secs,
                        usage.peak_memory_bytes
                    );
                    let ending = Ending::Failed {
                        outcome,
                        cmpinfo: stored,
                        usage: Usage {
                            cpu_secs: usage.cpu_secs,
                            wall_secs: usage.wall_secs,
                            peak_memory_bytes: usage.peak_memory_bytes,
                            ..Usage::default()
                        },
                    };
                    (bytes, ending, meta)
                }
            };
            if bytes > self.max_bytes {
                return Ok(None);
            }
            // Last: an entry without `meta` is incomplete.
            write_new(&tmp.join(META), meta.as_bytes())?;
            Ok(Some((bytes, ending)))
        })();
        let (bytes, ending) = match built {
            Ok(Some(b)) => b,
            Ok(None) => {
                remove_any(&tmp);
                return Ok(None);
            }
            Err(e) => {
                remove_any(&tmp);
                return Err(e);
            }
        };
        let dir = self.dir.join(format!("{}-{suffix}", key.hex()));
        let mut idx = lock(&self.index);
        if let Err(e) = fs::rename(&tmp, &dir) {
            drop(idx);
            remove_any(&tmp);
            return Err(io_err("rename into place", &dir)(e));
        }
        let entry = Arc::new(Entry {
            dir,
            bytes,
            ending,
            evicted: AtomicBool::new(false),
        });
        idx.total += bytes;
        if let Some(old) = idx.entries.insert(key, entry.clone()) {
            idx.total -= old.bytes;
            old.evicted.store(true, Ordering::SeqCst);
        }
        idx.lru.touch(&key);
        self.evict(&mut idx, Some(key));
        Ok(Some(entry))
    }

    /// Evicts least recently used entries (never `keep`) until the cap holds. An entry still
    /// in use is removed from disk by the last holder's drop.
    fn evict(&self, idx: &mut Index, keep: Option<Key>) {
        while idx.total > self.max_bytes {
            let Some(victim) = idx.lru.oldest_first().find(|k| Some(**k) != keep).copied() else {
                break;
            };
            idx.lru.remove(&victim);
            if let Some(entry) = idx.entries.remove(&victim) {
                idx.total -= entry.bytes;
                entry.evicted.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Reads a complete entry: `meta` parses and the sizes it records are there.
fn load(dir: &Path) -> Option<(SystemTime, Entry)> {
    let meta_path = dir.join(META);
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&meta_path)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.len() > 4096 {
        return None;
    }
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    let mut lines = text.lines();
    if lines.next()? != META_MAGIC {
        return None;
    }
    let what: Vec<&str> = lines.next()?.split(' ').collect();
    let bytes: u64 = lines.next()?.parse().ok()?;
    let ending = match what.as_slice() {
        ["passed", "files"] => {
            (tree_bytes(&dir.join(FILES), 0)? == bytes).then_some(Ending::Passed { files: true })?
        }
        ["passed", "nofiles"] => Ending::Passed { files: false },
        ["failed", outcome, cpu, wall, peak] => {
            let cmpinfo = read_nofollow(&dir.join(CMPINFO))?;
            if cmpinfo.len() as u64 != bytes {
                return None;
            }
            Ending::Failed {
                outcome: Outcome::from_code(outcome.parse().ok()?)?,
                cmpinfo,
                usage: Usage {
                    cpu_secs: cpu.parse().ok()?,
                    wall_secs: wall.parse().ok()?,
                    peak_memory_bytes: peak.parse().ok()?,
                    ..Usage::default()
                },
            }
        }
        _ => return None,
    };
    Some((
        m.modified().ok()?,
        Entry {
            dir: dir.to_owned(),
            bytes,
            ending,
            evicted: AtomicBool::new(false),
        },
    ))
}

/// Bytes of the regular files under `dir`; `None` if anything else is there.
fn tree_bytes(dir: &Path, depth: usize) -> Option<u64> {
    if depth > 32 {
        return None;
    }
    let mut total = 0;
    for e in fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        let ty = e.file_type().ok()?;
        if ty.is_dir() {
            total += tree_bytes(&e.path(), depth + 1)?;
        } else if ty.is_file() {
            total += e.metadata().ok()?.len();
        } else {
            return None;
        }
    }
    Some(total)
}

fn read_nofollow(path: &Path) -> Option<Vec<u8>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn write_new(path: &Path, data: &[u8]) -> Result<(), CompileCacheError> {
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err("create", path))?;
    f.write_all(data).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("sync", path))
}

fn remove_any(path: &Path) {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return,
    };
    if let Err(err) = r {
        tracing::warn!(?err, path = %path.display(), "cannot remove from the compile cache");
    }
}

#[cfg(test)]
mod tests;
