//! Tier: unit (docs/testing.md). The repository's documentation stands alone and stays in step
//! with the code (docs/testing.md §6):
//!
//! - no file cites reference material that a clone of the repository does not have, and the
//!   Jobe and CodeRunner references are cited as the repository's `docs/…` files;
//! - every `docs/<file>.md` named anywhere exists, every `§N` after it is a numbered heading of
//!   that file, every `#anchor` one of its headings, and every relative Markdown link resolves;
//! - every test file and every `mod tests` names its tiers as docs/testing.md §2 defines them;
//! - docs/ARCHITECTURE.md names every `cargo xtask` command and every test file.
//!
//! Files are the ones git tracks (or, outside a git checkout, every file but `target/` and
//! hidden directories). The checks that cover `runner/src` are separate tests, so a failure
//! there is told apart from one elsewhere.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Names of reference files that live outside the repository, and paths to them. Built with
/// `concat!` so that this file does not match a search for them.
const OUTSIDE_REFERENCES: [&str; 6] = [
    concat!("STYLE", ".md"),
    concat!("kernel-notes", ".md"),
    concat!("anchors", ".md"),
    concat!("judge-mode", ".md"),
    concat!("../", "shared"),
    concat!("/work/", "shared"),
];

/// The tier names of docs/testing.md §1, in its order.
const TIERS: [&str; 7] = [
    "unit",
    "kernel",
    "http",
    "privileged",
    "vm",
    "broker",
    "toolchain",
];

/// What a tier header ends with: the definition it refers to.
const TIER_REF: &str = " (docs/testing.md)";

/// The name of the tier header's prefix.
const TIER_PREFIX: &str = "//! Tier: ";

/// What marks a `vm` test and a `toolchain` test (split so that this file has neither).
const VM_TEST: &str = concat!("fn ", "vm_");
const IGNORED_TEST: &str = concat!("#[", "ignore");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}

/// One text file of the repository: its path relative to the root, and its content.
struct File {
    path: String,
    text: String,
}

impl File {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset].matches('\n').count() + 1
    }

    fn in_docs(&self) -> bool {
        self.path.starts_with("docs/")
    }

    fn is_markdown(&self) -> bool {
        self.path.ends_with(".md")
    }
}

/// Every tracked text file (non-UTF-8 files are skipped: they cite nothing).
fn files() -> Vec<File> {
    let root = root();
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output();
    let paths: Vec<String> = match listed {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => walk(&root, &root),
    };
    let files: Vec<File> = paths
        .into_iter()
        .filter_map(|path| {
            let text = String::from_utf8(fs::read(root.join(&path)).ok()?).ok()?;
            Some(File { path, text })
        })
        .collect();
    assert!(
        files.iter().any(|f| f.path == "docs/testing.md"),
        "found no docs/testing.md under {}",
        root.display()
    );
    files
}

/// Outside a git checkout: every file under `dir`, but `target/` and hidden directories.
fn walk(root: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            out.extend(walk(root, &path));
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    out
}

fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

/// A mention of a `.md` file: the path as written and where it ends in the text.
struct Mention<'a> {
    start: usize,
    end: usize,
    path: &'a str,
}

/// Every `…/name.md` token of `text` (a maximal run of path characters ending in `.md`).
fn md_mentions(text: &str) -> Vec<Mention<'_>> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(".md") {
        let end = i + 3;
        if text[end..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let start = text[..i]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_path_char(c))
            .last()
            .map_or(i, |(j, _)| j);
        let path = text[start..end].trim_start_matches(['.', '/', '-']);
        let start = end - path.len();
        if path.len() > 3 {
            out.push(Mention { start, end, path });
        }
    }
    out
}

/// The documents under docs/: file name → (numbered section ids, heading anchors).
struct Docs {
    files: Vec<(String, BTreeSet<String>, BTreeSet<String>)>,
}

impl Docs {
    fn new(files: &[File]) -> Docs {
        let files = files
            .iter()
            .filter(|f| f.in_docs() && f.is_markdown())
            .map(|f| {
                let (sections, anchors) = headings(&f.text);
                (f.path["docs/".len()..].to_owned(), sections, anchors)
            })
            .collect();
        Docs { files }
    }

    fn get(&self, name: &str) -> Option<&(String, BTreeSet<String>, BTreeSet<String>)> {
        self.files.iter().find(|(n, _, _)| n == name)
    }
}

/// The numbered section ids (`1.9` of `### 1.9 Outcome codes`, `3` of `## 3. Hybrid cgroups`)
/// and the GitHub anchors of a Markdown file's headings, outside code blocks.
fn headings(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut sections = BTreeSet::new();
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fenced || hashes == 0 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let title = line[hashes..].trim();
        let number = title.split(' ').next().unwrap_or_default();
        let number = number.strip_suffix('.').unwrap_or(number);
        if !number.is_empty()
            && number
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            sections.insert(number.to_owned());
        }
        anchors.insert(anchor(title));
    }
    (sections, anchors)
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The section numbers cited right after `rest`'s start: `§1.4`, `§1.4, §1.6`, `§1.3–1.8`.
fn cited_sections(rest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut s = rest.trim_start_matches([' ', ')']);
    while let Some(after) = s.strip_prefix('§') {
        let (first, mut tail) = number(after);
        if first.is_empty() {
            break;
        }
        out.push(first.to_owned());
        if let Some(range) = tail.strip_prefix(['–', '-']) {
            let (last, t) = number(range);
            if !last.is_empty() {
                out.push(last.to_owned());
                tail = t;
            }
        }
        let next = tail.trim_start_matches(',').trim_start();
        if !next.starts_with('§') || next.len() == tail.len() {
            break;
        }
        s = next;
    }
    out
}

/// A leading section number (`1.12`) of `s`, without a final dot, and the rest of `s`.
fn number(s: &str) -> (&str, &str) {
    let len = s
        .char_indices()
        .take_while(|&(_, c)| c.is_ascii_digit() || c == '.')
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    let n = s[..len].trim_end_matches('.');
    (n, &s[n.len()..])
}

/// Citations of material outside the repository, in `files` for which `select` is true.
fn outside_citations(files: &[File], docs: &Docs, select: impl Fn(&File) -> bool) -> Vec<String> {
    let mut problems = Vec::new();
    for f in files.iter().filter(|f| select(f)) {
        for name in OUTSIDE_REFERENCES {
            for (i, _) in f.text.match_indices(name) {
                problems.push(format!(
                    "{}:{}: cites `{name}`, which is not in the repository: put what the code \
                     relies on into docs/ and cite that",
                    f.path,
                    f.line_of(i)
                ));
            }
        }
        if f.in_docs() {
            continue;
        }
        // Outside docs/, a document of docs/ is cited by its path, `docs/<name>.md`.
        for m in md_mentions(&f.text) {
            // The text of a Markdown link is not a citation: its target is checked.
            let link_text = f.text[m.end..].starts_with("](");
            if !m.path.contains('/') && !link_text && docs.get(m.path).is_some() {
                problems.push(format!(
                    "{}:{}: cites `{}`: write `docs/{}`",
                    f.path,
                    f.line_of(m.start),
                    m.path,
                    m.path
                ));
            }
        }
    }
    problems
}

fn in_runner_src(f: &File) -> bool {
    f.path.starts_with("runner/src/")
}

#[test]
fn test_no_citation_of_material_outside_the_repository() {
    let files = files();
    let docs = Docs::new(&files);
    report(
        "citations outside runner/src",
        &outside_citations(&files, &docs, |f| !in_runner_src(f)),
    );
}

/// Fails until the replacement list of issue 11 is applied to runner/src (docs/testing.md §6).
#[test]
fn test_runner_src_cites_only_repository_docs() {
    let files = files();
    let docs = Docs::new(&files);
    report(
        "citations in runner/src",
        &outside_citations(&files, &docs, in_runner_src),
    );
}

#[test]
fn test_docs_citations_and_links_resolve() {
    let files = files();
    let docs = Docs::new(&files);
    let root = root();
    let mut problems = Vec::new();
    for f in &files {
        for m in md_mentions(&f.text) {
            // `docs/<name>.md` anywhere, or `<name>.md` inside docs/ (its own directory).
            let name = match m.path.strip_prefix("docs/") {
                Some(name) if !name.contains('/') => name,
                _ if f.in_docs() && !m.path.contains('/') => m.path,
                _ => continue,
            };
            let at = format!("{}:{}", f.path, f.line_of(m.start));
            let rest = &f.text[m.end..];
            let Some((_, sections, anchors)) = docs.get(name) else {
                // A bare name in docs/ that is no document there is prose, not a citation,
                // unless it is cited by section.
                if m.path.starts_with("docs/") || !cited_sections(rest).is_empty() {
                    problems.push(format!("{at}: `{}` does not exist", m.path));
                }
                continue;
            };
            if let Some(a) = rest.strip_prefix('#') {
                let a: String = a
                    .chars()
                    .take_while(|&c| c.is_alphanumeric() || matches!(c, '-' | '_'))
                    .collect();
                if !anchors.contains(&a) {
                    problems.push(format!("{at}: docs/{name} has no heading `#{a}`"));
                }
            }
            // Skip a Markdown link's target, `](…)`, to reach the sections cited after it.
            let rest = match rest.strip_prefix("](") {
                Some(r) => r.split_once(')').map_or(r, |(_, after)| after),
                None => rest,
            };
            for s in cited_sections(rest) {
                if !sections.contains(&s) {
                    problems.push(format!("{at}: docs/{name} has no section {s}"));
                }
            }
        }
        if f.is_markdown() {
            problems.extend(broken_links(f, &root));
        }
    }
    report("documentation citations and links", &problems);
}

/// Relative links `[text](target)` of a Markdown file whose target does not exist.
fn broken_links(f: &File, root: &Path) -> Vec<String> {
    let dir = Path::new(&f.path).parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    for (i, _) in f.text.match_indices("](") {
        let target = &f.text[i + 2..];
        let Some(end) = target.find([')', ' ', '\n']) else {
            continue;
        };
        let target = &target[..end];
        let path = target.split('#').next().unwrap_or_default();
        if path.is_empty() || path.contains("://") || path.starts_with("mailto:") {
            continue;
        }
        if !root.join(dir).join(path).exists() {
            problems.push(format!(
                "{}:{}: link to `{target}`, which does not exist",
                f.path,
                f.line_of(i)
            ));
        }
    }
    problems
}

/// The tiers a header line names, or why it names none.
fn header_tiers(line: &str) -> Result<Vec<&str>, String> {
    let names = line
        .strip_prefix(TIER_PREFIX)
        .and_then(|l| l.split_once(TIER_REF))
        .map(|(names, _)| names)
        .ok_or_else(|| format!("does not start with `{TIER_PREFIX}<tier>{TIER_REF}`"))?;
    let tiers: Vec<&str> = names.split(" + ").collect();
    match tiers.iter().find(|t| !TIERS.contains(t)) {
        Some(t) => Err(format!("names `{t}`, not a tier of docs/testing.md §1")),
        None => Ok(tiers),
    }
}

/// Checks one tier header against the code it heads (`vm_*` tests, ignored tests).
fn check_header(at: &str, header: Option<&str>, code: &str, problems: &mut Vec<String>) {
    let tiers = match header.filter(|h| h.starts_with("//!")).map(header_tiers) {
        Some(Ok(tiers)) => tiers,
        Some(Err(why)) => return problems.push(format!("{at}: the tier header {why}")),
        None => {
            return problems.push(format!(
                "{at}: no tier header (`{TIER_PREFIX}<tier>{TIER_REF}. …`)"
            ));
        }
    };
    let has_vm = code.contains(VM_TEST);
    if has_vm != tiers.contains(&"vm") {
        problems.push(format!(
            "{at}: has {}`vm_*` tests but its header names {:?}",
            if has_vm { "" } else { "no " },
            tiers
        ));
    }
    if code.contains(IGNORED_TEST) && !tiers.contains(&"toolchain") {
        problems.push(format!(
            "{at}: has {IGNORED_TEST}]d tests but its header does not name `toolchain`"
        ));
    }
}

#[test]
fn test_test_files_name_their_tier() {
    let mut problems = Vec::new();
    let mut seen = 0;
    for f in files() {
        let test_file = f.path.ends_with(".rs")
            && [
                "runner/tests/",
                "tests/tests/",
                "tests/src/",
                "xtask/tests/",
            ]
            .iter()
            .any(|dir| f.path.starts_with(dir));
        if !test_file {
            continue;
        }
        seen += 1;
        check_header(&f.path, f.text.lines().next(), &f.text, &mut problems);
    }
    assert!(seen > 10, "found only {seen} test files");
    report("tier headers of test files", &problems);
}

/// Fails until the tier list of issue 11 is applied to runner/src (docs/testing.md §6).
#[test]
fn test_unit_test_modules_name_their_tier() {
    let files = files();
    let mut problems = Vec::new();
    for f in files.iter().filter(|f| {
        f.path.ends_with(".rs") && f.path.contains("/src/") && !f.path.starts_with("tests/src/")
    }) {
        for (i, _) in f.text.match_indices("mod tests {") {
            let code = &f.text[i..];
            let header = code.lines().nth(1).map(str::trim_start);
            let at = format!("{}:{}", f.path, f.line_of(i) + 1);
            check_header(&at, header, code, &mut problems);
        }
        for (i, _) in f.text.match_indices("mod tests;") {
            let dir = Path::new(&f.path).parent().unwrap_or(Path::new(""));
            let path = dir.join("tests.rs").to_string_lossy().into_owned();
            match files.iter().find(|t| t.path == path) {
                Some(t) => check_header(&t.path, t.text.lines().next(), &t.text, &mut problems),
                None => problems.push(format!(
                    "{}:{}: `mod tests;` without {path}",
                    f.path,
                    f.line_of(i)
                )),
            }
        }
    }
    report("tier headers of `mod tests`", &problems);
}

/// The subcommands `xtask <args> -h` lists, or its `[possible values: …]` (the short help
/// prints them on one line).
fn xtask_help(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .arg("-h")
        .output()
        .expect("running xtask -h");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    if let Some((_, values)) = help.split_once("[possible values: ") {
        let values = values.split(']').next().unwrap_or_default();
        return values.split(", ").map(str::to_owned).collect();
    }
    help.split_once("Commands:")
        .map(|(_, commands)| commands)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A command starts at column 2; deeper lines continue a description.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn test_architecture_names_every_xtask_command_and_test_file() {
    let files = files();
    let arch = &files
        .iter()
        .find(|f| f.path == "docs/ARCHITECTURE.md")
        .expect("docs/ARCHITECTURE.md")
        .text;
    let row = arch
        .lines()
        .find(|l| l.starts_with("| `xtask` |"))
        .expect("an `xtask` row in docs/ARCHITECTURE.md");
    let mut problems = Vec::new();
    let commands = xtask_help(&[]);
    assert!(commands.len() > 5, "xtask -h lists {commands:?}");
    for command in &commands {
        let named = match command.as_str() {
            "vm" | "bench" => xtask_help(&[command]).iter().all(|sub| {
                row.contains(&format!("`{command} {sub}")) || row.contains(&format!("`{sub}`"))
            }),
            c => [format!("`{c}`"), format!("`{c} ")]
                .iter()
                .any(|form| row.contains(form.as_str())),
        };
        if !named {
            problems.push(format!(
                "docs/ARCHITECTURE.md: the xtask row does not name `cargo xtask {command}` (with \
                 each of {:?})",
                xtask_help(&[command])
            ));
        }
    }
    for f in &files {
        let Some(name) = f.path.rsplit('/').next() else {
            continue;
        };
        let listed = if f.path.starts_with("tests/src/") {
            arch.contains(&format!("`{}`", f.path))
        } else if f.path.starts_with("runner/tests/") && !f.path.contains("/common/")
            || f.path.starts_with("tests/tests/")
        {
            arch.contains(&format!("`{name}`"))
        } else {
            continue;
        };
        if f.path.ends_with(".rs") && !listed {
            problems.push(format!(
                "docs/ARCHITECTURE.md does not name the test file {}",
                f.path
            ));
        }
    }
    report("docs/ARCHITECTURE.md", &problems);
}

#[test]
fn test_the_checks_themselves() {
    assert_eq!(
        cited_sections(" §1.4, §1.6, §1.10)"),
        ["1.4", "1.6", "1.10"]
    );
    assert_eq!(cited_sections(" §1.3–1.8 against"), ["1.3", "1.8"]);
    assert_eq!(cited_sections(") §5). More"), ["5"]);
    assert_eq!(cited_sections(" §1.9. Serialised"), ["1.9"]);
    assert!(cited_sections(" for the schema").is_empty());
    let (sections, anchors) = headings(
        "# T\n## 1. The API\n### 1.12 Names\n```sh\n# not 2.1\n```\n## Limits: from Jobe's `x`\n",
    );
    assert_eq!(sections.into_iter().collect::<Vec<_>>(), ["1", "1.12"]);
    assert!(anchors.contains("limits-from-jobes-x"));
    let paths: Vec<&str> = md_mentions("see (docs/jail.md#cgroups) and ../x/README.md, a.mdx")
        .iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(paths, ["docs/jail.md", "x/README.md"]);
    assert_eq!(
        header_tiers("//! Tier: privileged + vm (docs/testing.md). Text"),
        Ok(vec!["privileged", "vm"])
    );
    assert!(header_tiers("//! Tier 4 (root): text").is_err());
    assert!(header_tiers("//! Tier: e2e (docs/testing.md)").is_err());
}
