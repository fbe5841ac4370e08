//! The file cache behind Jobe's `PUT/HEAD /files/{id}` and `file_list` (docs/jobe-api.md §1.5).
//!
//! Owns one directory. Layout as in Jobe's `FileCache::idToPath`: an id containing 32 consecutive
//! `[0-9a-f]` is stored at `<dir>/<id[0:2]>/<id[2:4]>/<id[4:]>`, any other id flat at `<dir>/<id>`.
//! Ids are ASCII alphanumeric (checked here too), so they can never name `..` or contain `/`.
//!
//! Writes go to a temp file in the target's directory, are fsynced and then renamed over the
//! target, so a reader sees either the old or the new contents, never a torn file. A size cap is
//! kept with LRU eviction; the in-memory index is rebuilt from the directory at `open` (ordered by
//! mtime), and `get` bumps the file's mtime, so recency survives restarts.
//!
//! Must not: follow symlinks when reading (`O_NOFOLLOW`, plus `O_NONBLOCK` so a FIFO cannot block
//! us), log file contents, or put host paths into anything a client sees (`CacheError` is for logs).
//!
//! Concurrency: all methods are blocking and `&self`; callers on tokio use `spawn_blocking`. A std
//! `Mutex` guards the index. It is held only for index updates and the metadata operations that
//! must agree with the index (rename into place, unlink of evicted files), never across the data
//! write, fsync or read, so it stays short and is never held across an `.await`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crate::lru::Lru;

/// Prefix of in-flight temp files; never a valid id (ids are alphanumeric), removed at `open`.
const TEMP_PREFIX: &str = ".tmp-";

/// Errors of the cache. They carry host paths, so they go to the log, never to a client.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("failed to create cache directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to scan cache directory {path}")]
    Scan {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid file id (must be non-empty ASCII alphanumeric)")]
    InvalidId,
    #[error("file of {size} bytes exceeds the cache cap of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("failed to write cache file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Default)]
struct Index {
    /// id → size in bytes.
    entries: HashMap<String, u64>,
    /// Recency, oldest first (`crate::lru`, shared with the test-set store).
    lru: Lru<String>,
    total: u64,
}

impl Index {
    fn touch(&mut self, id: &str) {
        if self.entries.contains_key(id) {
            self.lru.touch(&id.to_owned());
        }
    }

    fn insert(&mut self, id: &str, size: u64) {
        self.remove(id);
        self.entries.insert(id.to_owned(), size);
        self.lru.touch(&id.to_owned());
        self.total += size;
    }

    fn remove(&mut self, id: &str) -> Option<u64> {
        let size = self.entries.remove(id)?;
        self.lru.remove(&id.to_owned());
        self.total -= size;
        Some(size)
    }
}

/// A size-capped, restart-persistent, content-addressed-by-convention file store.
#[derive(Debug)]
pub struct FileCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    temp_seq: AtomicU64,
}

/// Longest valid id, in bytes, well within a file name's `NAME_MAX` (255). Jobe has no limit: a
/// longer id fails its write with a 500; here it is not a valid id (404 from the router).
pub const MAX_ID_BYTES: usize = 200;

/// Whether `id` is a valid cache id: non-empty ASCII `[A-Za-z0-9]+` (Jobe's `(:alphanum)` route),
/// at most [`MAX_ID_BYTES`] long.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Jobe's `idToPath`, relative to the cache directory. `None` for an invalid id.
pub fn id_to_relative_path(id: &str) -> Option<PathBuf> {
    if !is_valid_id(id) {
        return None;
    }
    if has_md5_run(id) {
        // The 32-hex run guarantees len ≥ 32, so the slices are in range; ids are ASCII.
        Some(Path::new(&id[0..2]).join(&id[2..4]).join(&id[4..]))
    } else {
        Some(PathBuf::from(id))
    }
}

/// Jobe's unanchored `/[0-9abcdef]{32}/`: 32 consecutive lower-case hex digits anywhere.
fn has_md5_run(id: &str) -> bool {
    let mut run = 0usize;
    for b in id.bytes() {
        if b.is_ascii_digit() || (b'a'..=b'f').contains(&b) {
            run += 1;
            if run >= 32 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

impl FileCache {
    /// Opens (creating if needed) the cache in `dir`, capped at `max_bytes`, and rebuilds the
    /// index from the files already there. Leftover temp files are removed; files whose path does
    /// not map back to a valid id are ignored (left alone). If the existing files exceed the cap,
    /// the oldest are evicted.
    pub fn open(dir: PathBuf, max_bytes: u64) -> Result<FileCache, CacheError> {
        fs::create_dir_all(&dir).map_err(|source| CacheError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
        scan(&dir, &dir, 0, &mut found).map_err(|source| CacheError::Scan {
            path: dir.clone(),
            source,
        })?;
        found.sort();
        let mut index = Index::default();
        for (_, id, size) in found {
            index.insert(&id, size);
        }
        let cache = FileCache {
            dir,
            max_bytes,
            index: Mutex::new(index),
            temp_seq: AtomicU64::new(0),
        };
        {
            let mut idx = cache.lock();
            cache.evict(&mut idx, None);
        }
        Ok(cache)
    }

    /// Stores `data` under `id` (create or replace), then evicts least recently used files until
    /// the cache fits its cap. A file larger than the cap is refused.
    pub fn put(&self, id: &str, data: &[u8]) -> Result<(), CacheError> {
        let rel = id_to_relative_path(id).ok_or(CacheError::InvalidId)?;
        let size = data.len() as u64;
        if size > self.max_bytes {
            return Err(CacheError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        let path = self.dir.join(rel);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        let werr = |source| CacheError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&parent).map_err(werr)?;
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!("{TEMP_PREFIX}{}-{seq}", std::process::id()));
        let written = write_synced(&tmp, data);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(werr(e));
        }
        let mut idx = self.lock();
        if let Err(e) = fs::rename(&tmp, &path) {
            drop(idx);
            let _ = fs::remove_file(&tmp);
            return Err(werr(e));
        }
        // Make the rename durable; a failure here only weakens crash safety, not correctness.
        if let Ok(d) = File::open(&parent) {
            let _ = d.sync_all();
        }
        idx.insert(id, size);
        self.evict(&mut idx, Some(id));
        Ok(())
    }

    /// Reads the file stored under `id` and marks it most recently used. `None` if absent,
    /// invalid, not a regular file, or unreadable (a vanished file is dropped from the index).
    pub fn get(&self, id: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(id_to_relative_path(id)?);
        if !self.lock().entries.contains_key(id) {
            return None;
        }
        match read_nofollow(&path) {
            Ok(data) => {
                let mut idx = self.lock();
                if idx.entries.contains_key(id) {
                    idx.touch(id);
                    drop(idx);
                    // Persist recency for the next `open`; failure only costs LRU accuracy.
                    if let Ok(f) = OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                        .open(&path)
                    {
                        let _ = f.set_modified(SystemTime::now());
                    }
                    Some(data)
                } else {
                    // Evicted while we were reading: treat as missing, as a client would have
                    // seen had it come a moment later.
                    None
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cache file unreadable; dropping it from the index");
                self.lock().remove(id);
                None
            }
        }
    }

    /// Whether a file is stored under `id` (does not change recency).
    pub fn contains(&self, id: &str) -> bool {
        let Some(rel) = id_to_relative_path(id) else {
            return false;
        };
        if !self.lock().entries.contains_key(id) {
            return false;
        }
        fs::symlink_metadata(self.dir.join(rel)).is_ok_and(|m| m.is_file())
    }

    /// Total bytes of the files in the index.
    pub fn size_bytes(&self) -> u64 {
        self.lock().total
    }

    /// The configured cap in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the index inconsistent in a way that
        // matters more than refusing service would.
        crate::sync::lock(&self.index)
    }

    /// Removes least recently used files (never `keep`) until `total <= max_bytes`.
    fn evict(&self, idx: &mut Index, keep: Option<&str>) {
        while idx.total > self.max_bytes {
            let victim = idx
                .lru
                .oldest_first()
                .find(|id| Some(id.as_str()) != keep)
                .cloned();
            let Some(victim) = victim else { break };
            idx.remove(&victim);
            if let Some(rel) = id_to_relative_path(&victim) {
                match fs::remove_file(self.dir.join(rel)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(error = %e, "failed to remove evicted cache file"),
                }
            }
            tracing::debug!(file_id = %victim, "evicted cache file");
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Walks the cache tree (at most 3 levels: `aa/bb/rest`), collecting `(mtime, id, size)` for
/// every regular file whose path maps back to its id. Removes stale temp files.
fn scan(
    root: &Path,
    dir: &Path,
    depth: u32,
    out: &mut Vec<(SystemTime, String, u64)>,
) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        let ft = entry.file_type()?; // does not follow symlinks
        if name.starts_with(TEMP_PREFIX) && ft.is_file() {
            let _ = fs::remove_file(&path);
            continue;
        }
        if ft.is_dir() && depth < 2 {
            scan(root, &path, depth + 1, out)?;
        } else if ft.is_file() {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let id: String = rel
                .components()
                .filter_map(|c| c.as_os_str().to_str())
                .collect();
            if id_to_relative_path(&id).as_deref() == Some(rel) {
                let meta = entry.metadata()?;
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((mtime, id, meta.len()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Jobe's layout, the cap, LRU eviction and restarts, in a
    //! temporary directory.
    use super::*;

    const MD5: &str = "fa8857a7b22b4b1f9c2b0f3c1e2d3a4b";

    #[test]
    fn test_id_to_path_md5_is_nested() {
        assert_eq!(
            id_to_relative_path(MD5).unwrap(),
            PathBuf::from("fa/88/57a7b22b4b1f9c2b0f3c1e2d3a4b")
        );
        // Unanchored: a hex run inside a longer id also nests.
        let id = format!("XY{MD5}Z");
        assert_eq!(
            id_to_relative_path(&id).unwrap(),
            PathBuf::from(format!("XY/{}/{}", &MD5[0..2], &id[4..]))
        );
    }

    #[test]
    fn test_id_to_path_other_ids_are_flat() {
        assert_eq!(id_to_relative_path("ab").unwrap(), PathBuf::from("ab"));
        // Upper-case hex does not count (Jobe's regex is lower-case only).
        let upper = MD5.to_uppercase();
        assert_eq!(id_to_relative_path(&upper).unwrap(), PathBuf::from(&upper));
        // 31 hex digits: flat.
        assert_eq!(
            id_to_relative_path(&MD5[..31]).unwrap(),
            PathBuf::from(&MD5[..31])
        );
    }

    #[test]
    fn test_invalid_ids_rejected() {
        for id in ["", "..", "a/b", "abc-def", "a.b", "é"] {
            assert!(id_to_relative_path(id).is_none(), "{id:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let c = FileCache::open(dir.path().join("c"), 100).unwrap();
        assert!(matches!(c.put("../x", b"1"), Err(CacheError::InvalidId)));
        assert!(c.get("../x").is_none());
        assert!(!c.contains(""));
    }

    #[test]
    fn test_put_get_contains() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileCache::open(dir.path().to_path_buf(), 1000).unwrap();
        assert!(!c.contains(MD5));
        assert!(c.get(MD5).is_none());
        c.put(MD5, b"hello").unwrap();
        assert!(c.contains(MD5));
        assert_eq!(c.get(MD5).unwrap(), b"hello");
        assert!(dir.path().join("fa/88").join(&MD5[4..]).is_file());
        // Overwrite replaces contents and size.
        c.put(MD5, b"hi").unwrap();
        assert_eq!(c.get(MD5).unwrap(), b"hi");
        assert_eq!(c.size_bytes(), 2);
        // Empty files are fine.
        c.put("empty123", b"").unwrap();
        assert_eq!(c.get("empty123").unwrap(), b"");
    }

    #[test]
    fn test_too_large_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileCache::open(dir.path().to_path_buf(), 4).unwrap();
        assert!(matches!(
            c.put("abcdefgh", b"12345"),
            Err(CacheError::TooLarge { size: 5, max: 4 })
        ));
        assert!(!c.contains("abcdefgh"));
        c.put("abcdefgh", b"1234").unwrap();
        assert_eq!(c.size_bytes(), 4);
    }

    #[test]
    fn test_lru_eviction_respects_recency() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileCache::open(dir.path().to_path_buf(), 10).unwrap();
        c.put("aaaa", b"1234").unwrap();
        c.put("bbbb", b"1234").unwrap();
        // Touch aaaa so bbbb becomes the least recently used.
        assert!(c.get("aaaa").is_some());
        c.put("cccc", b"1234").unwrap();
        assert!(c.contains("aaaa"));
        assert!(!c.contains("bbbb"));
        assert!(!dir.path().join("bbbb").exists());
        assert!(c.contains("cccc"));
        assert_eq!(c.size_bytes(), 8);
        // A put that needs the whole cap evicts everything else but keeps itself.
        c.put("dddd", b"0123456789").unwrap();
        assert!(c.contains("dddd"));
        assert!(!c.contains("aaaa") && !c.contains("cccc"));
        assert_eq!(c.size_bytes(), 10);
    }

    #[test]
    fn test_restart_persistence_and_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = FileCache::open(dir.path().to_path_buf(), 100).unwrap();
            c.put("old11111", b"aaaa").unwrap();
            c.put(MD5, b"bbbb").unwrap();
        }
        // Make the mtimes unambiguous: old11111 is older.
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let t1 = t0 + std::time::Duration::from_secs(10);
        File::options()
            .write(true)
            .open(dir.path().join("old11111"))
            .unwrap()
            .set_modified(t0)
            .unwrap();
        File::options()
            .write(true)
            .open(dir.path().join(id_to_relative_path(MD5).unwrap()))
            .unwrap()
            .set_modified(t1)
            .unwrap();
        // A stale temp file and a stray file are handled.
        fs::write(dir.path().join(".tmp-1-1"), b"junk").unwrap();
        fs::write(dir.path().join("fa").join("stray"), b"x").unwrap();
        let c = FileCache::open(dir.path().to_path_buf(), 100).unwrap();
        assert_eq!(c.size_bytes(), 8);
        assert!(c.contains(MD5));
        // Reading the older file makes it the most recently used, persistently (mtime).
        assert_eq!(c.get("old11111").unwrap(), b"aaaa");
        assert!(!dir.path().join(".tmp-1-1").exists());
        drop(c);
        // Reopen with a smaller cap: the least recently used one (MD5, never read) goes.
        let c = FileCache::open(dir.path().to_path_buf(), 5).unwrap();
        assert!(c.contains("old11111"));
        assert!(!c.contains(MD5));
        assert!(c.get(MD5).is_none());
        assert_eq!(c.size_bytes(), 4);
    }

    #[test]
    fn test_symlink_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, b"secret").unwrap();
        let cdir = dir.path().join("cache");
        fs::create_dir(&cdir).unwrap();
        std::os::unix::fs::symlink(&secret, cdir.join("link1234")).unwrap();
        let c = FileCache::open(cdir.clone(), 100).unwrap();
        // Not indexed at open (not a regular file) ...
        assert!(!c.contains("link1234"));
        assert!(c.get("link1234").is_none());
        // ... and not read even if it appears behind an indexed entry.
        c.put("link1234", b"mine").unwrap();
        fs::remove_file(cdir.join("link1234")).unwrap();
        std::os::unix::fs::symlink(&secret, cdir.join("link1234")).unwrap();
        assert!(c.get("link1234").is_none());
    }

    #[test]
    fn test_concurrent_puts_and_gets() {
        let dir = tempfile::tempdir().unwrap();
        let c = std::sync::Arc::new(FileCache::open(dir.path().to_path_buf(), 64).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let id = format!("f{t}x{}", i % 5);
                        c.put(&id, &[t as u8; 8]).unwrap();
                        if let Some(d) = c.get(&id) {
                            assert_eq!(d.len(), 8);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(c.size_bytes() <= 64);
    }
}
