//! Reading a test-set archive (docs/judge.md, "Archive format"): a tar, or a gzip-compressed tar,
//! streamed from any reader and checked entry by entry.
//!
//! Owns: the archive rules (which entries are allowed, how case files pair up, the natural order
//! of cases, the size and count caps) and staging the case files, each hashed with SHA-256 while
//! it is written, into a directory the caller gives (`<sha256>` per distinct content).
//!
//! Must not: hold an archive or a case file in memory (everything streams through a 64 KiB
//! buffer), extract anything by the names in the archive (staged files are named by their hash),
//! follow links, or decide what is stored: the caller (`testset`) commits the staged files or
//! throws the staging directory away, so nothing is stored when an archive is invalid.
//!
//! Rules, decided here (and documented in docs/judge.md):
//! - Compression is recognised by its magic bytes, not by a content type: gzip is read; xz,
//!   bzip2 and zstd are refused by name; anything else is read as tar.
//! - The cap on size counts the *uncompressed* tar stream (headers included), so a gzip bomb
//!   stops at the cap. The cap on cases counts distinct case names.
//! - Entries: `NAME.in`, `NAME.out` or `NAME.ans` (`.ans` is accepted for `.out`, as in
//!   ICPC/Kattis packages), and `problem.toml`. NAME is 1–128 characters of `[A-Za-z0-9._-]`.
//! - Either all entries are at the top level, or all in one directory (what `tar -czf p.tgz
//!   problem1/` makes); `./` prefixes are fine. Deeper directories are refused.
//! - Entries whose path has a component starting with `.` (`.DS_Store`, macOS `._1.in`, `.git/`)
//!   are ignored: operating systems and editors add them, and they are never test data. Every
//!   other file must be a case file or `problem.toml`: a misspelt case file (`1.out.txt`,
//!   `1.OUT`) is refused rather than silently dropped, so a test set never has fewer cases than
//!   its author thinks.
//! - Refused: absolute names, `..`, links (symbolic or hard), devices, FIFOs, sparse files and
//!   other special entries (also when hidden), duplicate names, `NAME.out` beside `NAME.ans`, a
//!   `.in` without its `.out` or the reverse, no case at all. A pax global header (`git archive`
//!   writes one) is skipped.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::compare::excerpt;
use super::problem::{Problem, ProblemError};

/// The settings file's name in an archive.
pub const PROBLEM_FILE: &str = "problem.toml";
/// Largest `problem.toml`.
const MAX_PROBLEM_FILE_BYTES: u64 = 64 << 10;
/// Longest case name (NAME of `NAME.in`).
pub const MAX_CASE_NAME_BYTES: usize = 128;
const COPY_BUFFER: usize = 64 << 10;

/// Caps on one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Largest uncompressed tar stream, in bytes.
    pub max_bytes: u64,
    /// Most cases.
    pub max_cases: usize,
}

/// Why an archive was refused. Every variant but `Stage` is about the archive (a client's
/// error: 400, or 413 for `TooLarge`); `Stage` is the daemon's own disk failing (500; its path is
/// for the log only).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a readable tar archive")]
    Corrupt(#[source] io::Error),
    #[error("{0} archives are not supported (send a tar or a gzip-compressed tar)")]
    Compression(&'static str),
    #[error("archive is larger than {max} bytes uncompressed")]
    TooLarge { max: u64 },
    #[error("archive has more than {max} cases")]
    TooManyCases { max: usize },
    #[error("archive has no test case (NAME.in with NAME.out)")]
    NoCases,
    #[error("entry {entry}: {reason}")]
    Entry { entry: String, reason: &'static str },
    #[error("entry {entry} and entry {other}: {reason}")]
    Entries {
        entry: String,
        other: String,
        reason: &'static str,
    },
    #[error("entry {entry}")]
    Problem {
        entry: String,
        #[source]
        source: ProblemError,
    },
    #[error("failed to stage a test-set file in {path}")]
    Stage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    /// Whether the daemon is at fault (its staging directory), not the archive.
    pub fn is_internal(&self) -> bool {
        matches!(self, ArchiveError::Stage { .. })
    }
}

/// A staged file: its content address and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Lower-case hex SHA-256 of the content; also the staged file's name.
    pub sha256: String,
    pub bytes: u64,
}

/// One case of a read archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedCase {
    pub name: String,
    pub input: Blob,
    pub output: Blob,
}

/// A valid archive: its settings and its cases in natural order, their files staged.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    pub problem: Problem,
    pub cases: Vec<StagedCase>,
}

/// Reads and checks the archive from `reader`, writing each distinct case file to
/// `stage/<sha256>` (mode 0600; `stage` must exist and be private to the daemon). On an error
/// the staged files are left for the caller to remove with the directory.
pub fn read_archive(
    reader: impl Read,
    limits: &ArchiveLimits,
    stage: &Path,
) -> Result<Staged, ArchiveError> {
    let mut reader = BufReader::with_capacity(COPY_BUFFER, reader);
    let head = reader.fill_buf().map_err(ArchiveError::Corrupt)?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    for (magic, name) in [
        (&b"\xfd7zXZ\x00"[..], "xz-compressed"),
        (b"BZh", "bzip2-compressed"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
        (b"PK\x03\x04", "zip"),
    ] {
        if head.starts_with(magic) {
            return Err(ArchiveError::Compression(name));
        }
    }
    let exceeded = Rc::new(Cell::new(false));
    let decoded: Box<dyn Read> = if gzip {
        Box::new(GzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let capped = Capped {
        inner: decoded,
        left: limits.max_bytes,
        exceeded: exceeded.clone(),
    };
    let too_large = || ArchiveError::TooLarge {
        max: limits.max_bytes,
    };
    let read_err = |e: io::Error| {
        if exceeded.get() {
            too_large()
        } else {
            ArchiveError::Corrupt(e)
        }
    };
    let mut archive = tar::Archive::new(capped);
    let mut book = Book::new(limits.max_cases, stage);
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        if entry.size() > limits.max_bytes {
            return Err(too_large());
        }
        let raw_path = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        book.entry(&raw_path, kind, &mut entry, &read_err)?;
    }
    // Read what follows the end-of-archive blocks: for gzip this checks the CRC of the whole
    // stream; the size cap still applies.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(read_err)?;
    book.finish()
}

/// Counts what is read and fails once more than `left` bytes come.
struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than allowed, to tell "exactly at the cap" from "over it".
        let want = buf.len().min(
            usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(io::Error::other("archive exceeds the size cap"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// What a file entry is, by its name.
enum CaseFile {
    Input,
    /// `.out` or `.ans`.
    Output,
}

#[derive(Default)]
struct Pair {
    input: Option<(Blob, String)>,
    output: Option<(Blob, String)>,
}

/// The entries seen so far.
struct Book<'a> {
    max_cases: usize,
    stage: &'a Path,
    /// The directory all entries are in (`Some("")` for the top level), set by the first file.
    prefix: Option<(String, String)>,
    seen: HashSet<Vec<u8>>,
    cases: BTreeMap<String, Pair>,
    problem: Option<Problem>,
    next_part: u64,
}

impl<'a> Book<'a> {
    fn new(max_cases: usize, stage: &'a Path) -> Book<'a> {
        Book {
            max_cases,
            stage,
            prefix: None,
            seen: HashSet::new(),
            cases: BTreeMap::new(),
            problem: None,
            next_part: 0,
        }
    }

    fn entry(
        &mut self,
        raw_path: &[u8],
        kind: EntryType,
        data: &mut impl Read,
        read_err: &dyn Fn(io::Error) -> ArchiveError,
    ) -> Result<(), ArchiveError> {
        let shown = excerpt(raw_path);
        let refuse = |reason| ArchiveError::Entry {
            entry: shown.clone(),
            reason,
        };
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::XGlobalHeader => return Ok(()),
            EntryType::Symlink | EntryType::Link => return Err(refuse("links are not allowed")),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                return Err(refuse("devices and FIFOs are not allowed"));
            }
            _ => {
                return Err(refuse(
                    "unsupported entry type (only files and directories)",
                ));
            }
        }
        if raw_path.first() == Some(&b'/') {
            return Err(refuse("absolute names are not allowed"));
        }
        let parts: Vec<&[u8]> = raw_path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        if parts.iter().any(|c| *c == b"..") {
            return Err(refuse("path traversal (..) is not allowed"));
        }
        if parts.iter().any(|c| c.starts_with(b".")) {
            return Ok(()); // hidden: ignored (module docs)
        }
        let is_dir = kind == EntryType::Directory;
        let (dir, file): (&[u8], &[u8]) = match (parts.as_slice(), is_dir) {
            ([], _) => return Ok(()), // "./"
            ([d], true) => (d, b""),
            ([f], false) => (b"", f),
            ([d, f], false) => (d, f),
            _ => return Err(refuse("directories inside directories are not allowed")),
        };
        let Ok(dir) = std::str::from_utf8(dir) else {
            return Err(refuse("directory name is not UTF-8"));
        };
        match &self.prefix {
            None => self.prefix = Some((dir.to_owned(), shown.clone())),
            Some((p, first)) if p != dir => {
                return Err(ArchiveError::Entries {
                    entry: first.clone(),
                    other: shown,
                    reason: "entries must all be at the top level or all in one directory",
                });
            }
            Some(_) => {}
        }
        if is_dir {
            return Ok(());
        }
        // All files share one directory (checked above), so the file name identifies an entry.
        if !self.seen.insert(file.to_vec()) {
            return Err(refuse("duplicate entry"));
        }
        if file == PROBLEM_FILE.as_bytes() {
            let mut bytes = Vec::new();
            data.take(MAX_PROBLEM_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(read_err)?;
            if bytes.len() as u64 > MAX_PROBLEM_FILE_BYTES {
                return Err(refuse("problem.toml is larger than 64 KiB"));
            }
            let Ok(text) = String::from_utf8(bytes) else {
                return Err(refuse("problem.toml is not UTF-8"));
            };
            let problem = Problem::parse(&text).map_err(|source| ArchiveError::Problem {
                entry: shown.clone(),
                source,
            })?;
            self.problem = Some(problem);
            return Ok(());
        }
        let (name, which) = case_file(file).ok_or_else(|| {
            refuse("not a test case file (NAME.in, NAME.out or NAME.ans) or problem.toml")
        })?;
        if !self.cases.contains_key(name) && self.cases.len() == self.max_cases {
            return Err(ArchiveError::TooManyCases {
                max: self.max_cases,
            });
        }
        let blob = self.stage_file(data, read_err)?;
        let pair = self.cases.entry(name.to_owned()).or_default();
        let slot = match which {
            CaseFile::Input => &mut pair.input,
            CaseFile::Output => &mut pair.output,
        };
        if let Some((_, other)) = slot {
            return Err(ArchiveError::Entries {
                entry: other.clone(),
                other: shown,
                reason: "both give the expected output of one case",
            });
        }
        *slot = Some((blob, shown));
        Ok(())
    }

    /// Copies one entry to `stage/<sha256>`, hashing it on the way.
    fn stage_file(
        &mut self,
        data: &mut impl Read,
        read_err: &dyn Fn(io::Error) -> ArchiveError,
    ) -> Result<Blob, ArchiveError> {
        let part = self.stage.join(format!("part-{}", self.next_part));
        self.next_part += 1;
        let stage_err = |path: &Path| {
            let path = path.to_owned();
            move |source| ArchiveError::Stage { path, source }
        };
        let mut file = create_private(&part).map_err(stage_err(&part))?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(stage_err(&part))?;
            bytes += n as u64;
        }
        // Durable before a manifest may name it (the store writes the manifest last).
        file.sync_all().map_err(stage_err(&part))?;
        let sha256 = super::hex(&hasher.finalize());
        let target = self.stage.join(&sha256);
        // A second file with the same content replaces the first: same bytes, same name.
        fs::rename(&part, &target).map_err(stage_err(&target))?;
        Ok(Blob { sha256, bytes })
    }

    fn finish(self) -> Result<Staged, ArchiveError> {
        let mut cases = Vec::with_capacity(self.cases.len());
        for (name, pair) in self.cases {
            match (pair.input, pair.output) {
                (Some((input, _)), Some((output, _))) => cases.push(StagedCase {
                    name,
                    input,
                    output,
                }),
                (Some((_, entry)), None) => {
                    return Err(ArchiveError::Entry {
                        entry,
                        reason: "has no matching NAME.out or NAME.ans",
                    });
                }
                (None, Some((_, entry))) => {
                    return Err(ArchiveError::Entry {
                        entry,
                        reason: "has no matching NAME.in",
                    });
                }
                // Not recorded: a name enters the map with one of its files.
                (None, None) => {}
            }
        }
        if cases.is_empty() {
            return Err(ArchiveError::NoCases);
        }
        cases.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        Ok(Staged {
            problem: self.problem.unwrap_or_default(),
            cases,
        })
    }
}

/// `NAME.in` / `NAME.out` / `NAME.ans` with a valid NAME.
fn case_file(file: &[u8]) -> Option<(&str, CaseFile)> {
    let file = std::str::from_utf8(file).ok()?;
    let (name, ext) = file.rsplit_once('.')?;
    let which = match ext {
        "in" => CaseFile::Input,
        "out" | "ans" => CaseFile::Output,
        _ => return None,
    };
    is_valid_case_name(name).then_some((name, which))
}

/// 1–128 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_case_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CASE_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Creates `path` new (never through a symlink), mode 0600.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Natural order of case names: runs of digits compare by their value (`2` before `10`), other
/// bytes by their byte value; names equal that way (`01` and `1`) are ordered by bytes.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (m, n) = (digit_run(x), digit_run(y));
                let (p, q) = (strip_zeros(&x[..m]), strip_zeros(&y[..n]));
                let by_value = p.len().cmp(&q.len()).then_with(|| p.cmp(q));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                x = &x[m..];
                y = &y[n..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn digit_run(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    &digits[digits.iter().take_while(|&&b| b == b'0').count()..]
}

#[cfg(test)]
pub(crate) mod tests {
    //! Tier: unit (docs/testing.md). Valid archives (plain, gzip, one directory), the natural
    //! order, and every kind of bad archive.
    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;
    use crate::judge::compare::CompareMode;
    use crate::telemetry::error_chain;

    /// One tar entry: name bytes exactly as given (no checks, so hostile names can be built).
    #[derive(Clone, Copy)]
    pub(crate) struct E<'a> {
        pub(crate) name: &'a [u8],
        pub(crate) kind: EntryType,
        pub(crate) data: &'a [u8],
        pub(crate) link: &'a [u8],
    }

    pub(crate) fn file<'a>(name: &'a str, data: &'a [u8]) -> E<'a> {
        E {
            name: name.as_bytes(),
            kind: EntryType::Regular,
            data,
            link: b"",
        }
    }

    fn special(name: &str, kind: EntryType) -> E<'_> {
        E {
            name: name.as_bytes(),
            kind,
            data: b"",
            link: b"target",
        }
    }

    /// A tar of `entries` (GNU headers, names up to 100 bytes).
    pub(crate) fn tar(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            let gnu = h.as_gnu_mut().expect("gnu header");
            gnu.name[..e.name.len()].copy_from_slice(e.name);
            gnu.linkname[..e.link.len()].copy_from_slice(e.link);
            gnu.set_real_size(e.data.len() as u64); // read only for GNU sparse entries
            h.set_entry_type(e.kind);
            h.set_size(e.data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, e.data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut g = GzEncoder::new(Vec::new(), Compression::fast());
        g.write_all(data).unwrap();
        g.finish().unwrap()
    }

    const LIMITS: ArchiveLimits = ArchiveLimits {
        max_bytes: 1 << 20,
        max_cases: 10,
    };

    fn read(
        data: &[u8],
        limits: &ArchiveLimits,
    ) -> (Result<Staged, ArchiveError>, tempfile::TempDir) {
        let stage = tempfile::tempdir().unwrap();
        (read_archive(data, limits, stage.path()), stage)
    }

    fn names(s: &Staged) -> Vec<&str> {
        s.cases.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn test_valid_archive_plain_and_gzip() {
        let data = tar(&[
            file("10.in", b"ten\n"),
            file("2.in", b"two\n"),
            file("10.out", b"TEN\n"),
            file("1.in", b"same\n"),
            file("1.ans", b"same\n"),
            file("2.out", b""),
            file("problem.toml", b"compare = \"float\"\ncputime = 0.5\n"),
        ]);
        for body in [data.clone(), gzip(&data)] {
            let (staged, stage) = read(&body, &LIMITS);
            let staged = staged.unwrap();
            assert_eq!(names(&staged), ["1", "2", "10"]);
            assert_eq!(staged.problem.compare.mode, CompareMode::Float);
            assert_eq!(staged.problem.limits.cputime, Some(0.5));
            let c1 = &staged.cases[0];
            // Same content, one staged file, named by its SHA-256.
            assert_eq!(c1.input, c1.output);
            assert_eq!(
                c1.input.sha256,
                "a6328afc76e9db71da297ebff4b0d3e7a7eb3b01d917c05a6573fef121b6ecb6"
            );
            assert_eq!(c1.input.bytes, 5);
            let staged_file = stage.path().join(&c1.input.sha256);
            assert_eq!(fs::read(&staged_file).unwrap(), b"same\n");
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&staged_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            // An empty expected output is a valid case.
            assert_eq!(staged.cases[1].output.bytes, 0);
            // 5 distinct contents staged, no part files left.
            let files: Vec<_> = fs::read_dir(stage.path()).unwrap().collect();
            assert_eq!(files.len(), 5);
        }
    }

    #[test]
    fn test_one_directory_and_dot_prefixes_allowed() {
        let dir = |n: &'static str| special(n, EntryType::Directory);
        for entries in [
            vec![dir("p/"), file("p/1.in", b"1"), file("p/1.out", b"1")],
            vec![
                dir("./"),
                dir("./p/"),
                file("./p/1.in", b"1"),
                file("./p//1.out", b"1"),
            ],
            vec![dir("./"), file("./1.in", b"1"), file("1.out", b"1")],
            // Hidden entries anywhere are ignored, a pax global header is skipped.
            vec![
                E {
                    name: b"pax_global_header",
                    kind: EntryType::XGlobalHeader,
                    data: b"52 comment=0123456789abcdef0123456789abcdef01234567\n",
                    link: b"",
                },
                file("._1.in", b"mac"),
                file(".DS_Store", b"mac"),
                file(".git/config", b"x"),
                file(".git/objects/ab/cd", b"x"),
                file("p/1.in", b"1"),
                file("p/.1.out.swp", b"x"),
                file("p/1.out", b"1"),
            ],
        ] {
            let (staged, _stage) = read(&tar(&entries), &LIMITS);
            let staged = staged.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(names(&staged), ["1"]);
        }
    }

    #[test]
    fn test_long_names_and_a_large_file_streamed_from_disk() {
        // A name longer than a tar header holds (GNU long-name entry) and an 8 MiB input, the
        // archive written to a file and read from it.
        let name = format!("p/{}", "n".repeat(120));
        let big = 8u64 << 20;
        let mut f = tempfile::tempfile().unwrap();
        {
            let mut b = tar::Builder::new(&mut f);
            let mut h = tar::Header::new_gnu();
            h.set_size(big);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("{name}.in"), io::repeat(b'7').take(big))
                .unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("{name}.ans"), &b"7\n"[..])
                .unwrap();
            b.finish().unwrap();
        }
        io::Seek::rewind(&mut f).unwrap();
        let limits = ArchiveLimits {
            max_bytes: 16 << 20,
            max_cases: 1,
        };
        let stage = tempfile::tempdir().unwrap();
        let staged = read_archive(f, &limits, stage.path()).unwrap();
        assert_eq!(staged.cases[0].name, "n".repeat(120));
        assert_eq!(staged.cases[0].input.bytes, big);
        let mut hasher = Sha256::new();
        let chunk = [b'7'; 1 << 16];
        for _ in 0..big / chunk.len() as u64 {
            hasher.update(chunk);
        }
        assert_eq!(
            staged.cases[0].input.sha256,
            crate::judge::hex(&hasher.finalize())
        );
        let staged_file = stage.path().join(&staged.cases[0].input.sha256);
        assert_eq!(fs::metadata(staged_file).unwrap().len(), big);
    }

    #[test]
    fn test_natural_order() {
        let mut v = vec![
            "10",
            "2",
            "1",
            "01",
            "a10",
            "a9",
            "b",
            "1a",
            "001",
            "sample-2",
            "sample-10",
            "a",
            "1.10",
            "1.9",
            "0",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "0",
                "001",
                "01",
                "1",
                "1.9",
                "1.10",
                "1a",
                "2",
                "10",
                "a",
                "a9",
                "a10",
                "b",
                "sample-2",
                "sample-10"
            ]
        );
        // Huge numbers do not overflow.
        let big = "9".repeat(50);
        assert_eq!(natural_cmp(&big, &format!("1{big}")), Ordering::Less);
    }

    /// The error for an archive of `entries`, as text.
    fn refused(entries: &[E<'_>]) -> String {
        let (r, _stage) = read(&tar(entries), &LIMITS);
        let e = r.expect_err("must be refused");
        assert!(!e.is_internal(), "{e:?}");
        error_chain(&e)
    }

    #[test]
    fn test_bad_entries_are_refused_by_name() {
        let ok_in = file("1.in", b"1");
        let ok_out = file("1.out", b"1");
        let dir = |n: &'static str| special(n, EntryType::Directory);
        for (entries, want) in [
            (
                vec![file("1.in", b"1")],
                "entry \"1.in\": has no matching NAME.out or NAME.ans",
            ),
            (
                vec![file("1.ans", b"1")],
                "entry \"1.ans\": has no matching NAME.in",
            ),
            (
                vec![ok_in, file("2.out", b"1"), file("1.out", b"1")],
                "entry \"2.out\": has no matching NAME.in",
            ),
            (
                vec![file("../1.in", b"1")],
                "entry \"../1.in\": path traversal (..) is not allowed",
            ),
            (
                vec![file("p/../../1.in", b"1")],
                "entry \"p/../../1.in\": path traversal (..) is not allowed",
            ),
            (
                vec![file("/1.in", b"1")],
                "entry \"/1.in\": absolute names are not allowed",
            ),
            (
                vec![file("1.in", b"1"), special("1.out", EntryType::Symlink)],
                "entry \"1.out\": links are not allowed",
            ),
            (
                vec![file("1.in", b"1"), special("1.out", EntryType::Link)],
                "entry \"1.out\": links are not allowed",
            ),
            (
                vec![special(".hidden", EntryType::Symlink)],
                "entry \".hidden\": links are not allowed",
            ),
            (
                vec![special("1.in", EntryType::Char)],
                "entry \"1.in\": devices and FIFOs are not allowed",
            ),
            (
                vec![special("1.in", EntryType::Block)],
                "entry \"1.in\": devices and FIFOs are not allowed",
            ),
            (
                vec![special("1.in", EntryType::Fifo)],
                "entry \"1.in\": devices and FIFOs are not allowed",
            ),
            (
                vec![special("1.in", EntryType::GNUSparse)],
                "entry \"1.in\": unsupported entry type (only files and directories)",
            ),
            (
                vec![file("a/b/1.in", b"1")],
                "entry \"a/b/1.in\": directories inside directories are not allowed",
            ),
            (
                vec![dir("a/b/")],
                "entry \"a/b/\": directories inside directories are not allowed",
            ),
            (
                vec![file("a/1.in", b"1"), file("b/1.out", b"1")],
                "entry \"a/1.in\" and entry \"b/1.out\": entries must all be at the top level or all in one directory",
            ),
            (
                vec![ok_out, file("p/1.in", b"1")],
                "entry \"1.out\" and entry \"p/1.in\": entries must all be at the top level or all in one directory",
            ),
            (
                vec![file("p/1.in", b"1"), file("p/1.out", b"1"), dir("q/")],
                "entry \"p/1.in\" and entry \"q/\": entries must all be at the top level or all in one directory",
            ),
            (
                vec![file("readme.txt", b"hi")],
                "entry \"readme.txt\": not a test case file (NAME.in, NAME.out or NAME.ans) or problem.toml",
            ),
            (
                vec![file("1.OUT", b"1")],
                "entry \"1.OUT\": not a test case file (NAME.in, NAME.out or NAME.ans) or problem.toml",
            ),
            (
                vec![file("1.out.txt", b"1")],
                "entry \"1.out.txt\": not a test case file (NAME.in, NAME.out or NAME.ans) or problem.toml",
            ),
            (
                vec![file("a b.in", b"1")],
                "entry \"a b.in\": not a test case file (NAME.in, NAME.out or NAME.ans) or problem.toml",
            ),
            (
                vec![file(".in", b"1")],
                "archive has no test case (NAME.in with NAME.out)",
            ),
            (
                vec![file("\u{e9}\u{301}.in", b"1")],
                "entry \"\u{e9}\\u{301}.in\": not a test case file (NAME.in, NAME.out or NAME.ans) or problem.toml",
            ),
            (
                vec![file("1.in", b"1"), file("1.out", b"1"), file("1.ans", b"1")],
                "entry \"1.out\" and entry \"1.ans\": both give the expected output of one case",
            ),
            (
                vec![file("1.in", b"1"), file("1.out", b"1"), file("1.in", b"2")],
                "entry \"1.in\": duplicate entry",
            ),
            (
                vec![
                    file("p/1.in", b"1"),
                    file("p/1.out", b"1"),
                    file("./p/1.in", b"2"),
                ],
                "entry \"./p/1.in\": duplicate entry",
            ),
            (vec![], "archive has no test case (NAME.in with NAME.out)"),
            (
                vec![file("problem.toml", b"")],
                "archive has no test case (NAME.in with NAME.out)",
            ),
            (
                vec![file("problem.toml", b"compare = \"exact\""), ok_in],
                "entry \"problem.toml\": problem.toml line 1: unknown variant `exact`, expected one of `text`, `token`, `float`",
            ),
            (
                vec![file("problem.toml", b"\xff")],
                "entry \"problem.toml\": problem.toml is not UTF-8",
            ),
            (
                vec![file("problem.toml", &[b' '; 70_000])],
                "entry \"problem.toml\": problem.toml is larger than 64 KiB",
            ),
        ] {
            assert_eq!(refused(&entries), want);
        }
    }

    #[test]
    fn test_too_many_cases() {
        let names: Vec<(String, String)> = (0..11)
            .map(|i| (format!("{i}.in"), format!("{i}.out")))
            .collect();
        let mut entries = Vec::new();
        for (i, o) in &names {
            entries.push(file(i, b"x"));
            entries.push(file(o, b"x"));
        }
        // Ten cases are fine, the eleventh name is refused.
        let (r, _s) = read(&tar(&entries[..20]), &LIMITS);
        assert_eq!(r.unwrap().cases.len(), 10);
        assert_eq!(refused(&entries), "archive has more than 10 cases");
    }

    #[test]
    fn test_size_cap_counts_uncompressed_bytes() {
        let data = tar(&[file("1.in", &[b'a'; 5000]), file("1.out", b"x")]);
        let exact = ArchiveLimits {
            max_bytes: data.len() as u64,
            max_cases: 10,
        };
        assert!(read(&data, &exact).0.is_ok());
        let below = ArchiveLimits {
            max_bytes: data.len() as u64 - 1,
            max_cases: 10,
        };
        for body in [data.clone(), gzip(&data)] {
            let (r, _s) = read(&body, &below);
            assert!(
                matches!(r, Err(ArchiveError::TooLarge { max }) if max == below.max_bytes),
                "{r:?}"
            );
        }
        // A gzip bomb: 64 MiB of zeros in about 64 KiB stops at the 1 MiB cap, early.
        let zeros = vec![0u8; 64 << 20];
        let bomb = gzip(&tar(&[file("1.in", &zeros), file("1.out", b"x")]));
        assert!(bomb.len() < 1 << 20);
        let (r, stage) = read(&bomb, &LIMITS);
        assert!(matches!(r, Err(ArchiveError::TooLarge { .. })), "{r:?}");
        // Refused from the header's size, before anything was staged.
        assert_eq!(fs::read_dir(stage.path()).unwrap().count(), 0);
    }

    #[test]
    fn test_not_a_tar() {
        let valid = tar(&[file("1.in", b"1"), file("1.out", b"1")]);
        let mut bad_sum = valid.clone();
        bad_sum[0] ^= 1;
        let mut bad_gz = gzip(&valid);
        let n = bad_gz.len();
        bad_gz[n - 5] ^= 0xff; // a byte of the stored CRC-32
        for (body, want) in [
            (&b"hello world"[..], "not a readable tar archive"),
            (&[7u8; 2048][..], "not a readable tar archive"),
            (&bad_sum[..], "not a readable tar archive"),
            (&valid[..700], "not a readable tar archive"),
            (&bad_gz[..], "not a readable tar archive"),
            (
                &gzip(b"plain text, not a tar")[..],
                "not a readable tar archive",
            ),
            (
                &b"\xfd7zXZ\x00\x00\x04"[..],
                "xz-compressed archives are not supported (send a tar or a gzip-compressed tar)",
            ),
            (
                &b"BZh91AY&SY"[..],
                "bzip2-compressed archives are not supported (send a tar or a gzip-compressed tar)",
            ),
            (
                &b"PK\x03\x04...."[..],
                "zip archives are not supported (send a tar or a gzip-compressed tar)",
            ),
        ] {
            let (r, _s) = read(body, &LIMITS);
            let e = r.expect_err("refused");
            assert!(!e.is_internal());
            assert_eq!(e.to_string(), want);
        }
        // The empty body is a tar without cases.
        assert!(matches!(read(b"", &LIMITS).0, Err(ArchiveError::NoCases)));
    }

    #[test]
    fn test_stage_failure_is_internal() {
        let data = tar(&[file("1.in", b"1"), file("1.out", b"1")]);
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = read_archive(&data[..], &LIMITS, &missing).unwrap_err();
        assert!(e.is_internal(), "{e:?}");
    }

    #[test]
    fn test_case_names() {
        for ok in ["1", "a", "sample-01", "x_y.z", &"a".repeat(128)] {
            assert!(is_valid_case_name(ok), "{ok}");
        }
        for bad in ["", "a b", "é", "a/b", "a\\b", &"a".repeat(129)] {
            assert!(!is_valid_case_name(bad), "{bad}");
        }
    }
}
