//! `runner judge --testset DIR_OR_TAR`: a problem folder (or an archive of one) as the archive
//! the test-set store takes, optionally with another compare mode (docs/judge.md, "Local use").
//!
//! Owns: turning a folder into a tar (its regular files at the top level; the store's archive
//! checks then apply as to an upload) and replacing `problem.toml`'s `compare`. Must not: follow
//! links out of the folder (symlinks are left out, and the store would refuse them anyway).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::archive::PROBLEM_FILE;
use super::compare::CompareMode;

/// Why the test set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the archive")]
    Write(#[source] io::Error),
    #[error("{PROBLEM_FILE} is not valid TOML")]
    Problem(#[source] toml::de::Error),
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> LocalError + '_ {
    move |source| LocalError::Read {
        path: path.to_owned(),
        source,
    }
}

/// Writes the test set at `path` (a directory, or a tar / tar.gz file) to `out` as a tar, with
/// `problem.toml`'s compare mode set to `compare` when given.
pub fn testset_archive(
    path: &Path,
    compare: Option<CompareMode>,
    out: &mut File,
) -> Result<(), LocalError> {
    let meta = fs::metadata(path).map_err(read_err(path))?;
    if !meta.is_dir() {
        let mut input = File::open(path).map_err(read_err(path))?;
        return match compare {
            None => io::copy(&mut input, out)
                .map(|_| ())
                .map_err(LocalError::Write),
            Some(mode) => rewrite_archive(path, input, mode, out),
        };
    }
    let mut names: Vec<String> = Vec::new();
    for e in fs::read_dir(path).map_err(read_err(path))? {
        let e = e.map_err(read_err(path))?;
        if e.file_type().map_err(read_err(path))?.is_file()
            && let Some(name) = e.file_name().to_str()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    let mut b = tar::Builder::new(out);
    let mut problem: Option<String> = None;
    for name in names {
        let file = path.join(&name);
        if name == PROBLEM_FILE {
            problem = Some(fs::read_to_string(&file).map_err(read_err(&file))?);
            continue;
        }
        b.append_path_with_name(&file, &name)
            .map_err(read_err(&file))?;
    }
    if let Some(text) = problem_text(problem, compare)? {
        append_bytes(&mut b, PROBLEM_FILE, text.as_bytes())?;
    }
    b.finish().map_err(LocalError::Write)
}

/// `problem.toml` with `compare` set (and the keys that only other modes take removed).
fn problem_text(
    text: Option<String>,
    compare: Option<CompareMode>,
) -> Result<Option<String>, LocalError> {
    let Some(mode) = compare else {
        return Ok(text);
    };
    let mut table: toml::Table = match &text {
        Some(t) => t.parse().map_err(LocalError::Problem)?,
        None => toml::Table::new(),
    };
    table.insert("compare".into(), mode.name().into());
    if mode != CompareMode::Float {
        table.remove("float_abs_eps");
        table.remove("float_rel_eps");
    }
    if mode == CompareMode::Text {
        table.remove("case_sensitive");
    }
    Ok(Some(table.to_string()))
}

fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> Result<(), LocalError> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append_data(&mut h, name, data).map_err(LocalError::Write)
}

/// Copies an archive (tar or tar.gz) entry by entry, replacing `problem.toml`.
fn rewrite_archive(
    path: &Path,
    mut input: File,
    mode: CompareMode,
    out: &mut File,
) -> Result<(), LocalError> {
    let mut magic = [0u8; 2];
    let gz = input.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    input.seek(SeekFrom::Start(0)).map_err(read_err(path))?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(input))
    } else {
        Box::new(input)
    };
    let mut archive = tar::Archive::new(reader);
    let mut b = tar::Builder::new(out);
    let mut problem = None;
    // Where the new problem.toml goes: where the old one was, else beside the cases (an archive
    // of a folder keeps its entries in that folder, and the store wants one layout).
    let mut problem_name: Option<PathBuf> = None;
    let mut case_dir: Option<PathBuf> = None;
    for entry in archive.entries().map_err(read_err(path))? {
        let mut entry = entry.map_err(read_err(path))?;
        let name = entry.path().map_err(read_err(path))?.into_owned();
        let base = name
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if base == PROBLEM_FILE {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(read_err(path))?;
            problem = Some(text);
            problem_name = Some(name);
            continue;
        }
        if case_dir.is_none() && base.ends_with(".in") && !base.starts_with('.') {
            case_dir = Some(name.parent().map(Path::to_path_buf).unwrap_or_default());
        }
        let mut header = entry.header().clone();
        b.append_data(&mut header, &name, &mut entry)
            .map_err(LocalError::Write)?;
    }
    if let Some(text) = problem_text(problem, Some(mode))? {
        let name = problem_name
            .unwrap_or_else(|| case_dir.unwrap_or_default().join(PROBLEM_FILE))
            .to_string_lossy()
            .into_owned();
        append_bytes(&mut b, &name, text.as_bytes())?;
    }
    b.finish().map_err(LocalError::Write)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). A folder and an archive become what the store accepts.
    use super::*;
    use crate::judge::archive::{ArchiveLimits, read_archive};

    fn read_back(f: &mut File) -> Vec<String> {
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut a = tar::Archive::new(f);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn test_folder_and_compare_override() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sum");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("1.in"), "1 2\n").unwrap();
        fs::write(dir.join("1.out"), "3\n").unwrap();
        fs::write(
            dir.join("problem.toml"),
            "compare = \"float\"\nfloat_abs_eps = 0.1\n",
        )
        .unwrap();
        let out_path = tmp.path().join("a.tar");
        let mut out = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&out_path)
            .unwrap();
        testset_archive(&dir, Some(CompareMode::Token), &mut out).unwrap();
        assert_eq!(read_back(&mut out), ["1.in", "1.out", "problem.toml"]);
        out.seek(SeekFrom::Start(0)).unwrap();
        let stage = tmp.path().join("stage");
        fs::create_dir(&stage).unwrap();
        let staged = read_archive(
            &mut out,
            &ArchiveLimits {
                max_bytes: 1 << 20,
                max_cases: 10,
            },
            &stage,
        );
        let staged = staged.expect("the store's checks accept it");
        assert_eq!(staged.problem.compare.mode, CompareMode::Token);
        // The archive again, to text mode.
        let mut again = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp.path().join("b.tar"))
            .unwrap();
        testset_archive(&out_path, Some(CompareMode::Text), &mut again).unwrap();
        assert_eq!(read_back(&mut again), ["1.in", "1.out", "problem.toml"]);
    }

    /// An archive of a folder (`tar -czf sum.tgz sum`, every entry under `sum/`): the new
    /// `problem.toml` goes into that folder too, with or without one there before.
    #[test]
    fn test_compare_override_of_an_archive_with_a_folder() {
        let tmp = tempfile::tempdir().unwrap();
        for with_problem in [false, true] {
            let mut files: Vec<(&str, &[u8])> = vec![("sum/1.in", b"1 2\n"), ("sum/1.out", b"3\n")];
            if with_problem {
                files.push(("sum/problem.toml", b"cputime = 1\n"));
            }
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            b.append_data(&mut h, "sum/", &b""[..]).unwrap();
            for (name, data) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, name, data).unwrap();
            }
            let tgz = tmp.path().join(format!("sum-{with_problem}.tgz"));
            let mut gz = flate2::write::GzEncoder::new(
                File::create(&tgz).unwrap(),
                flate2::Compression::fast(),
            );
            gz.write_all(&b.into_inner().unwrap()).unwrap();
            gz.finish().unwrap();
            let mut out = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(tmp.path().join(format!("out-{with_problem}.tar")))
                .unwrap();
            testset_archive(&tgz, Some(CompareMode::Float), &mut out).unwrap();
            assert_eq!(
                read_back(&mut out),
                ["sum/", "sum/1.in", "sum/1.out", "sum/problem.toml"]
            );
            out.seek(SeekFrom::Start(0)).unwrap();
            let stage = tmp.path().join(format!("stage-{with_problem}"));
            fs::create_dir(&stage).unwrap();
            let limits = ArchiveLimits {
                max_bytes: 1 << 20,
                max_cases: 10,
            };
            let staged = read_archive(&mut out, &limits, &stage).expect("the store accepts it");
            assert_eq!(staged.problem.compare.mode, CompareMode::Float);
            let cputime = staged.problem.limits.cputime;
            assert_eq!(cputime, with_problem.then_some(1.0));
        }
    }
}
