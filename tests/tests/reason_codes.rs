//! Every reason code of every crate, collected from the code itself: the
//! `reason_codes!` table of `payload/wire/src/codes.rs` and the match arms
//! of each error type's `fn code` under `payload/*/src`. Checks that codes
//! are unique (a code shared by two definitions must say so with a
//! `// shared code: Type::Variant` comment on its arm, naming the original
//! with the same code), that each lies in the range `codes::RANGES` gives
//! its crate, that every `ReasonCode(0x…)` literal elsewhere names a
//! defined code, and that `docs/reason-codes.md` is the table generated
//! from all of this. Nothing here is a hand-kept list: a new variant in a
//! `fn code` is picked up, and an arm the scanner does not understand fails
//! the test instead of being skipped.
//!
//! Regenerate the doc: `SPACENODE_BLESS=1 cargo nextest run -p
//! spacenode-system-tests --test reason_codes`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use spacenode_wire::codes::{RANGES, ReasonCode};

/// One definition of a code.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Def {
    code: u16,
    /// `NAME` for the wire table, `Type::Variant` for an error type.
    name: String,
    /// Package name (`spacenode-policy`).
    krate: String,
    /// Source file relative to the repository root.
    file: String,
    meaning: String,
    /// `Type::Variant` this arm deliberately shares its code with.
    shared_with: Option<String>,
    /// Which match arm or table line defined it (variants of one arm share
    /// their code deliberately).
    arm: usize,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The crates whose sources are scanned: every `payload/*` with a `src`
/// (the fuzz crate has none), by package name.
fn crates(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("payload"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let (Ok(manifest), true) = (
            std::fs::read_to_string(dir.join("Cargo.toml")),
            dir.join("src").is_dir(),
        ) else {
            continue;
        };
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("package name")
            .to_string();
        out.push((name, dir.join("src")));
    }
    out
}

/// The source without its `#[cfg(test)] mod tests` (tests assert codes,
/// they do not define them).
fn without_tests(src: &str) -> &str {
    src.find("#[cfg(test)]\nmod tests")
        .map_or(src, |i| src.get(..i).unwrap_or(src))
}

/// Doc comment (first paragraph) or `#[error("…")]` text of each variant of
/// `enum ty` in `src`.
fn variant_docs(src: &str, ty: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(start) = src
        .find(&format!("pub enum {ty} {{"))
        .or_else(|| src.find(&format!("enum {ty} {{")))
    else {
        return out;
    };
    let mut doc: Vec<String> = Vec::new();
    let mut error: Option<String> = None;
    for line in src.get(start..).unwrap_or_default().lines().skip(1) {
        if line == "}" {
            break;
        }
        let t = line.trim();
        // Variant level only (four spaces): field docs are not meanings.
        let variant_level = line.starts_with("    ") && !line.starts_with("     ");
        if !variant_level {
            continue;
        }
        if let Some(d) = t.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if let Some(e) = t.strip_prefix("#[error(\"") {
            error = e.split("\")").next().map(str::to_string);
        } else if t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
            let name: String = t
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let para: Vec<&str> = doc
                .iter()
                .map(String::as_str)
                .take_while(|l| !l.is_empty())
                .collect();
            let text = if para.is_empty() {
                error.take().unwrap_or_default()
            } else {
                para.join(" ")
            };
            out.insert(name, text);
            doc.clear();
            error = None;
        }
    }
    out
}

/// The text between the `{` at `open` and its matching `}`.
fn braced(s: &str, open: usize) -> &str {
    let mut depth = 0usize;
    for (i, c) in s.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return s.get(open + 1..i).unwrap_or_default();
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces");
}

/// Splits at top-level commas.
fn top_level_split(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut last) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s.get(last..i).unwrap_or_default());
                last = i + 1;
            }
            _ => {}
        }
    }
    out.push(s.get(last..).unwrap_or_default());
    out.into_iter().filter(|a| !a.trim().is_empty()).collect()
}

fn parse_hex(s: &str) -> Option<u16> {
    u16::from_str_radix(s.trim().strip_prefix("0x")?.replace('_', "").as_str(), 16).ok()
}

/// What the scan found: definitions, references to wire-table names, and
/// problems.
#[derive(Default)]
struct Scan {
    defs: Vec<Def>,
    /// (file, name) of `ReasonCode::NAME` arms.
    table_refs: Vec<(String, String)>,
    /// (file, code) of `ReasonCode(0x…)` literals outside `fn code`.
    literal_uses: Vec<(String, u16)>,
    problems: Vec<String>,
    arms: usize,
}

/// Scans one `fn code` body of `ty` in `file`.
fn scan_fn_code(scan: &mut Scan, krate: &str, file: &str, src: &str, ty: &str, body: &str) {
    // Comments out, except the shared-code marker, which becomes a token
    // inside its arm.
    let mut text = String::new();
    for line in body.lines() {
        match line.split_once("//") {
            Some((code, comment)) => {
                text.push_str(code);
                if let Some(orig) = comment.trim().strip_prefix("shared code:") {
                    let _ = write!(text, " @shared({}) ", orig.trim());
                }
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    let docs = variant_docs(src, ty);
    let Some(m) = text.find("match self {") else {
        // A single code for the whole type.
        let t = text.trim();
        match t.strip_prefix("ReasonCode::") {
            Some(name) => scan.table_refs.push((file.into(), name.trim().to_string())),
            None => scan
                .problems
                .push(format!("{file}: `fn code` of {ty} is not understood: {t}")),
        }
        return;
    };
    let arms = braced(&text, m + "match self ".len());
    for arm in top_level_split(arms) {
        let Some((pat, value)) = arm.split_once("=>") else {
            scan.problems
                .push(format!("{file}: {ty}: arm without `=>`: {arm}"));
            continue;
        };
        let mut shared_with = None;
        let mut pat = pat.to_string();
        if let Some(i) = pat.find("@shared(") {
            let rest = pat.get(i + "@shared(".len()..).unwrap_or_default();
            let orig = rest.split(')').next().unwrap_or_default().to_string();
            pat = pat.replace(&format!("@shared({orig})"), "");
            shared_with = Some(orig.trim().to_string());
        }
        let value = value.trim();
        let variants: Vec<String> = top_level_split_pipe(&pat)
            .into_iter()
            .map(|alt| {
                let path: String = alt
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                path.rsplit("::").next().unwrap_or_default().to_string()
            })
            .collect();
        if variants.iter().any(String::is_empty) {
            scan.problems
                .push(format!("{file}: {ty}: pattern not understood: {pat}"));
            continue;
        }
        if let Some(code) = parse_hex(value) {
            scan.arms += 1;
            for v in variants {
                scan.defs.push(Def {
                    code,
                    name: format!("{ty}::{v}"),
                    krate: krate.into(),
                    file: file.into(),
                    meaning: docs.get(&v).cloned().unwrap_or_default(),
                    shared_with: shared_with.clone(),
                    arm: scan.arms,
                });
            }
        } else if let Some(name) = value.strip_prefix("ReasonCode::") {
            scan.table_refs.push((file.into(), name.trim().to_string()));
        } else if value.ends_with(".code()") || value.ends_with(".code().0") {
            // Delegates to a wrapped error's own codes.
        } else {
            scan.problems.push(format!(
                "{file}: {ty}: code arm not understood (a hex literal, `ReasonCode::NAME` or \
                 `inner.code()`): {}",
                arm.trim()
            ));
        }
    }
}

fn top_level_split_pipe(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut last) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            '|' if depth == 0 => {
                out.push(s.get(last..i).unwrap_or_default());
                last = i + 1;
            }
            _ => {}
        }
    }
    out.push(s.get(last..).unwrap_or_default());
    out
}

fn scan_sources(root: &Path) -> Scan {
    let mut scan = Scan::default();
    for (krate, src_dir) in crates(root) {
        let mut files = Vec::new();
        rust_files(&src_dir, &mut files);
        for path in files {
            let full = std::fs::read_to_string(&path).unwrap();
            let src = without_tests(&full);
            let file = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if file.ends_with("wire/src/codes.rs") {
                scan_table(&mut scan, &krate, &file, src);
            }
            let mut code_bodies: Vec<(usize, usize)> = Vec::new();
            let mut from = 0;
            while let Some(i) = src.get(from..).and_then(|s| s.find("fn code(")) {
                let at = from + i;
                from = at + 1;
                let sig_end = src.get(at..).and_then(|s| s.find('{')).map(|j| at + j);
                let Some(open) = sig_end else { continue };
                let sig = src.get(at..open).unwrap_or_default();
                if !(sig.contains("-> u16") || sig.contains("-> ReasonCode")) {
                    continue;
                }
                let body = braced(src, open);
                code_bodies.push((open, open + body.len()));
                let ty = src
                    .get(..at)
                    .unwrap_or_default()
                    .rmatch_indices("\nimpl ")
                    .next()
                    .and_then(|(j, _)| src.get(j + "\nimpl ".len()..at))
                    .map(|s| {
                        s.chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                scan_fn_code(&mut scan, &krate, &file, src, &ty, body);
            }
            // `ReasonCode(0x…)` literals outside `fn code` bodies are uses.
            let mut from = 0;
            while let Some(i) = src.get(from..).and_then(|s| s.find("ReasonCode(0x")) {
                let at = from + i;
                from = at + 1;
                if code_bodies.iter().any(|(a, b)| (*a..*b).contains(&at)) {
                    continue;
                }
                let lit: String = src
                    .get(at + "ReasonCode(".len()..)
                    .unwrap_or_default()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                match parse_hex(&lit) {
                    Some(code) => scan.literal_uses.push((file.clone(), code)),
                    None => scan.problems.push(format!("{file}: bad literal {lit}")),
                }
            }
        }
    }
    scan
}

/// The `reason_codes!` table: `NAME = 0x0001, "meaning";`.
fn scan_table(scan: &mut Scan, krate: &str, file: &str, src: &str) {
    let Some(start) = src.find("reason_codes! {") else {
        scan.problems
            .push(format!("{file}: no reason_codes! table"));
        return;
    };
    let table = braced(src, start + "reason_codes! ".len());
    for line in table.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let parsed = line.split_once(" = ").and_then(|(name, rest)| {
            let (value, text) = rest.split_once(", \"")?;
            let text = text.strip_suffix("\";")?;
            Some((name.trim(), parse_hex(value)?, text))
        });
        match parsed {
            Some((name, code, text)) => {
                scan.arms += 1;
                scan.defs.push(Def {
                    code,
                    name: name.to_string(),
                    krate: krate.into(),
                    file: file.into(),
                    meaning: text.to_string(),
                    shared_with: None,
                    arm: scan.arms,
                });
            }
            None => scan
                .problems
                .push(format!("{file}: table line not understood: {line}")),
        }
    }
}

fn render(defs: &[Def]) -> String {
    let mut rows: Vec<&Def> = defs.iter().collect();
    rows.sort_by(|a, b| (a.code, &a.name).cmp(&(b.code, &b.name)));
    let mut s = String::from(
        "# Reason codes\n\n\
         Generated by `tests/tests/reason_codes.rs` from the code (the `reason_codes!` table \
         in `payload/wire/src/codes.rs` and every error type's `fn code`); do not edit. \
         Regenerate with `SPACENODE_BLESS=1 cargo nextest run -p spacenode-system-tests \
         --test reason_codes`. Ranges and their owners: `payload/wire/src/codes.rs` \
         (`RANGES`); the wire protocol: [wire.md](wire.md).\n\n\
         A code appears twice only where the code says it is deliberately the same meaning \
         (`// shared code: Type::Variant` on the arm).\n\n\
         | code | name | crate | meaning |\n|---|---|---|---|\n",
    );
    for d in rows {
        let meaning = d.meaning.replace('|', "\\|");
        let meaning = match &d.shared_with {
            Some(orig) => format!("{meaning} (same code as `{orig}`)"),
            None => meaning,
        };
        let _ = writeln!(
            s,
            "| 0x{:04X} | `{}` | {} | {} |",
            d.code, d.name, d.krate, meaning
        );
    }
    s
}

#[test]
fn reason_codes_are_unique_in_their_ranges_and_documented() {
    let root = repo_root();
    let scan = scan_sources(&root);
    let mut problems = scan.problems.clone();
    assert!(
        scan.defs.len() > 200,
        "the scan found only {} codes: is the scanner broken?",
        scan.defs.len()
    );
    // The table the wire crate compiles agrees with the scan of its source.
    for (code, name, _) in ReasonCode::ALL {
        if !scan
            .defs
            .iter()
            .any(|d| d.code == code.0 && d.name == *name)
        {
            problems.push(format!("wire table {name} not found by the scan"));
        }
    }
    let by_name: BTreeMap<&str, &Def> = scan.defs.iter().map(|d| (d.name.as_str(), d)).collect();
    // Unique, or deliberately shared.
    let mut by_code: BTreeMap<u16, Vec<&Def>> = BTreeMap::new();
    for d in &scan.defs {
        by_code.entry(d.code).or_default().push(d);
    }
    for (code, defs) in &by_code {
        let originals: Vec<&&Def> = defs.iter().filter(|d| d.shared_with.is_none()).collect();
        let arms: std::collections::BTreeSet<usize> = originals.iter().map(|d| d.arm).collect();
        if arms.len() > 1 {
            problems.push(format!(
                "0x{code:04X} defined by {} (if the meaning is the same, say so with \
                 `// shared code: Type::Variant` on the later arm)",
                originals
                    .iter()
                    .map(|d| format!("{} ({})", d.name, d.file))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for d in scan.defs.iter().filter(|d| d.shared_with.is_some()) {
        let orig = d.shared_with.as_deref().unwrap_or_default();
        match by_name.get(orig) {
            Some(o) if o.code == d.code && o.shared_with.is_none() => {}
            _ => problems.push(format!(
                "{}: {} says `shared code: {orig}`, which is not a definition of 0x{:04X}",
                d.file, d.name, d.code
            )),
        }
    }
    // In the range of the crate that defines it.
    for d in scan.defs.iter().filter(|d| d.shared_with.is_none()) {
        match RANGES.iter().find(|r| (r.first..=r.last).contains(&d.code)) {
            Some(r) if r.crates.contains(&d.krate.as_str()) => {}
            Some(r) => problems.push(format!(
                "{} 0x{:04X} ({}) lies in {:#06x}..={:#06x} owned by {:?} ({})",
                d.name, d.code, d.krate, r.first, r.last, r.crates, r.owner
            )),
            None => problems.push(format!("{} 0x{:04X} is in no range", d.name, d.code)),
        }
    }
    // Uses name defined codes.
    for (file, name) in &scan.table_refs {
        if !scan
            .defs
            .iter()
            .any(|d| d.krate == "spacenode-wire" && d.name == *name)
        {
            problems.push(format!(
                "{file}: ReasonCode::{name} is not in the wire table"
            ));
        }
    }
    for (file, code) in &scan.literal_uses {
        if !by_code.contains_key(code) {
            problems.push(format!(
                "{file}: ReasonCode(0x{code:04X}) is not defined by any `fn code` or the table"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "reason code problems:\n{}",
        problems.join("\n")
    );

    let doc_path = root.join("docs/reason-codes.md");
    let want = render(&scan.defs);
    if std::env::var_os("SPACENODE_BLESS").is_some() {
        std::fs::write(&doc_path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&doc_path).unwrap_or_default();
    assert!(
        have == want,
        "docs/reason-codes.md is stale; regenerate it with \
         `SPACENODE_BLESS=1 cargo nextest run -p spacenode-system-tests --test reason_codes`"
    );
}

/// The scanner reads the arm shapes the crates use, and refuses others.
#[test]
fn the_scanner_reads_every_arm_shape_and_refuses_unknown_ones() {
    let src = "pub enum E {\n    /// First thing.\n    A,\n    #[error(\"b broke\")]\n    B { x: u8 },\n    C(u8),\n    D,\n}\n";
    let body = "\n        match self {\n            Self::A => 0x0501,\n            Self::B { .. }\n            | E::C(_) => 0x0502,\n            // shared code: Other::Thing\n            Self::D => 0x0503,\n            Self::W(w) => w.code(),\n            Self::S => ReasonCode::STORAGE,\n        }\n    ";
    let mut scan = Scan::default();
    scan_fn_code(&mut scan, "spacenode-policy", "f.rs", src, "E", body);
    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
    let got: Vec<(u16, &str, &str, Option<&str>)> = scan
        .defs
        .iter()
        .map(|d| {
            (
                d.code,
                d.name.as_str(),
                d.meaning.as_str(),
                d.shared_with.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0x0501, "E::A", "First thing.", None),
            (0x0502, "E::B", "b broke", None),
            (0x0502, "E::C", "", None),
            (0x0503, "E::D", "", Some("Other::Thing")),
        ]
    );
    assert_eq!(
        scan.table_refs,
        vec![("f.rs".to_string(), "STORAGE".to_string())]
    );

    let mut scan = Scan::default();
    scan_fn_code(
        &mut scan,
        "spacenode-policy",
        "f.rs",
        src,
        "E",
        "match self { Self::A => CODE_A, }",
    );
    assert_eq!(
        scan.problems.len(),
        1,
        "an unknown arm must fail, not vanish"
    );
}
