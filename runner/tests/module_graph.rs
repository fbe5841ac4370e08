//! Tier: unit (docs/testing.md). The import graph of `runner`'s top-level modules has no cycle.
//!
//! Reads every `runner/src/**/*.rs`, finds each `crate::<module>` reference in code (use lines,
//! paths, `use crate::{a, b}` groups; comments and string literals skipped), and builds the graph
//! of top-level modules: an edge `a → b` when a file under `a` names `crate::b`. Module edges
//! must point one way (docs/ARCHITECTURE.md); on failure the cycle is printed.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `src` without comments, string and char literals (each replaced by a space), so that only
/// code is searched. Handles nested block comments, escapes, raw strings and lifetimes.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if let Some(hashes) = raw_string_start(b, i) {
            // r"…", r#"…"#, br"…": ends at a quote followed by the same number of #.
            i += rest.iter().position(|&c| c == b'"').unwrap() + 1;
            let end: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while i < b.len() && !b[i..].starts_with(&end) {
                i += 1;
            }
            i += end.len();
            out.push(' ');
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if b[i] == b'\'' && is_char_literal(b, i) {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else {
            // Copy one whole UTF-8 character.
            let len = src[i..].chars().next().unwrap().len_utf8();
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

/// At `i`, the start of a raw string (`r"`, `r#"`, `br"`…, not part of an identifier): the
/// number of `#`.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some(hashes)
}

/// A `'` at `i` opens a char literal (`'a'`, `'\n'`, `'\u{1F}'`), not a lifetime or label.
fn is_char_literal(b: &[u8], i: usize) -> bool {
    match b.get(i + 1) {
        Some(b'\\') => true,
        Some(_) => {
            // One character (maybe several UTF-8 bytes), then the closing quote.
            let s = std::str::from_utf8(&b[i + 1..]).unwrap_or("");
            s.chars()
                .next()
                .is_some_and(|c| s[c.len_utf8()..].starts_with('\''))
        }
        None => false,
    }
}

/// The top-level modules a piece of code names with `crate::`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `$crate::` (macros) and `foo_crate::` are not this crate's root.
        if before.is_some_and(|c| c == '$' || c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let after = rest.trim_start();
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[k..]);
                        if !name.is_empty() && name != "self" {
                            out.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(after);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The graph of top-level modules of `src`.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let module = first.strip_suffix(".rs").unwrap_or(first).to_owned();
        if module == "lib" || module == "main" {
            continue; // the crate root and the binary (which names `runner::`, not `crate::`)
        }
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        let refs = g.entry(module.clone()).or_default();
        refs.extend(crate_refs(&code).into_iter().filter(|m| *m != module));
    }
    g
}

/// A cycle of `g`, as the list of modules along it (first = last), if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        g: &Graph,
        m: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(m.to_owned(), Mark::OnPath);
        path.push(m.to_owned());
        for next in g.get(m).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::OnPath => {
                    let from = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(g, next, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(m.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in g.keys() {
        if marks.get(m).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(c) = visit(g, m, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn render(g: &Graph) -> String {
    g.iter()
        .map(|(m, to)| {
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            format!("  {m} → {}\n", to.join(", "))
        })
        .collect()
}

#[test]
fn test_module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = module_graph(&src);
    println!("runner/src module graph:\n{}", render(&g));
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "import cycle among runner's modules: {}\ngraph:\n{}",
            cycle.join(" → "),
            render(&g)
        );
    }
}

/// Queue mode reaches the engine through `judge` only: it names neither the HTTP front end nor
/// peer mode nor the config assembler, nor what runs programs (docs/queue.md).
#[test]
fn test_queue_imports_neither_api_nor_peer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = module_graph(&src);
    let queue = g.get("queue").expect("runner/src/queue exists");
    for forbidden in ["api", "peer", "config", "dispatch", "sched", "jail"] {
        assert!(
            !queue.contains(forbidden),
            "queue imports crate::{forbidden}: {queue:?}"
        );
    }
    assert!(queue.contains("judge"), "{queue:?}");
}

/// The scanner itself: references in code count, those in comments and strings do not.
#[test]
fn test_crate_refs_scanner() {
    let code = code_only(
        r####"
        use crate::a::X;
        use crate::{b, c::{D, E}, self};
        let x = crate::d::f();
        // crate::comment
        /* crate::block /* nested crate::n */ crate::still_comment */
        let s = "crate::string \" crate::escaped";
        let r = r#"crate::raw " crate::raw2"#;
        let c = '"'; let l: &'static str = x; crate::e::g();
        $crate::macro_root; other_crate::h;
        "####,
    );
    let refs: Vec<String> = crate_refs(&code).into_iter().collect();
    assert_eq!(refs, ["a", "b", "c", "d", "e"]);

    let g: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .iter()
        .fold(Graph::new(), |mut g, (f, t)| {
            g.entry((*f).into()).or_default().insert((*t).into());
            g
        });
    assert_eq!(find_cycle(&g).unwrap().join(" → "), "a → b → c → a");
    let mut acyclic = g.clone();
    acyclic.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&acyclic), None);
}
