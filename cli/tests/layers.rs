//! The layers of the command and of the core, kept so: every file's imports (its `use`
//! trees and the `crate::` / `super::` / child-module paths in its code) may only reach
//! its own layer's folder or a lower layer, and no files import each other in a circle.
//! A new module must be given its layer here. Only the reporter prints, and no
//! `Result` of the command has a bare `String` for its error.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The command's layers, top first: the first part of a module's path names its layer.
const CLI_LAYERS: &[(&str, u32)] = &[
    ("main", 7),
    ("args", 7),
    ("commands", 6),
    ("pipeline", 5),
    ("sources", 4),
    ("sink", 3),
    ("store", 3),
    ("posthog_api", 3),
    ("shared", 1),
];

/// The core's layers, top first (each module is a layer of its own name's group).
const CORE_LAYERS: &[(&str, &str, u32)] = &[
    ("lib", "root", 9),
    ("boundary", "boundary", 8),
    ("migrator", "front", 7),
    ("export", "history", 5),
    ("handover", "history", 5),
    ("export_plan", "history", 5),
    ("delivery", "delivery", 5),
    ("dispatch", "delivery", 5),
    ("parcels", "delivery", 5),
    ("page", "page", 4),
    ("transform", "events", 3),
    ("batch", "events", 3),
    ("settings", "events", 3),
    ("timestamp", "basics", 1),
    ("event_id", "basics", 1),
    ("gzip", "basics", 1),
    ("elements", "basics", 1),
    ("scan", "basics", 1),
    ("raw", "basics", 1),
    ("version", "basics", 1),
    ("host", "basics", 1),
    ("pace", "basics", 1),
    ("inflight", "basics", 1),
];

type Module = Vec<String>;

struct Crate {
    /// Module path -> its file's code, comments and literals taken out.
    files: BTreeMap<Module, String>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path: `a/b/mod.rs` and `a/b.rs` are `a::b`; `x_tests.rs` is `x::tests`.
fn module_of(root: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    match stem {
        "main" | "lib" if parts.is_empty() => {}
        "mod" => {}
        _ => match stem.strip_suffix("_tests") {
            Some(of) => parts.extend([of.to_string(), "tests".to_string()]),
            None => parts.push(stem.to_string()),
        },
    }
    parts
}

/// The code without comments, string and char literals (their text may hold `::`).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i) {
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('x', '\n', '\''); a lifetime has no closing quote.
            let mut j = i + 1;
            if chars[j] == '\\' {
                j += 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
            } else {
                j += 1;
            }
            i = j + 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

impl Crate {
    fn read(root: &Path) -> Crate {
        let mut paths = Vec::new();
        rust_files(root, &mut paths);
        let files =
            paths.iter().map(|path| (module_of(root, path), code_only(&fs::read_to_string(path).unwrap()))).collect();
        Crate { files }
    }

    /// The longest known module a path (from the crate's root) lies in.
    fn module_at(&self, path: &[String]) -> Option<Module> {
        (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| self.files.contains_key(m))
    }

    /// The modules each file imports.
    fn imports(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut out = BTreeMap::new();
        for (module, code) in &self.files {
            let children: BTreeSet<String> = declared_children(code);
            // Inline modules (`mod tests { ... }`): their `super` is this file.
            let inline_at = inline_module_start(code);
            let mut targets = BTreeSet::new();
            for (at, path) in paths_in(code) {
                let depth = usize::from(inline_at.is_some_and(|start| at > start));
                let Some(absolute) = absolute(module, depth, &path, &children) else { continue };
                if let Some(target) = self.module_at(&absolute) {
                    if &target != module && !target.is_empty() {
                        targets.insert(target);
                    }
                }
            }
            out.insert(module.clone(), targets);
        }
        out
    }
}

fn declared_children(code: &str) -> BTreeSet<String> {
    let words: Vec<&str> = code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ';' || c == '{')).collect();
    let mut out = BTreeSet::new();
    for pair in words.windows(2) {
        if pair[0] == "mod" {
            let name = pair[1].trim_end_matches(';');
            if pair[1].ends_with(';') && !name.is_empty() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn inline_module_start(code: &str) -> Option<usize> {
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(found) = code[from..].find("mod ") {
        let at = from + found;
        let before_ok = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let rest = &code[at + 4..];
        let name_len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if before_ok && name_len > 0 && rest[name_len..].trim_start().starts_with('{') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Every path a file names: each leaf of its `use` trees, and each `a::b` in its code
/// (with where it stands).
fn paths_in(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest_at = 0;
    // `use` trees.
    while let Some(found) = code[rest_at..].find("use ") {
        let at = rest_at + found;
        let word_start = at == 0 || !code.as_bytes()[at - 1].is_ascii_alphanumeric() && code.as_bytes()[at - 1] != b'_';
        let end = code[at..].find(';').map_or(code.len(), |e| at + e);
        if word_start {
            for leaf in expand_tree(&code[at + 4..end]) {
                out.push((at, leaf));
            }
        }
        rest_at = at + 4;
    }
    // Paths in code: identifiers joined by `::`.
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if (chars[i].is_alphabetic() || chars[i] == '_') && !prev_is_ident(&chars, i) && !(i > 1 && chars[i - 1] == ':')
        {
            let start = i;
            let mut parts = Vec::new();
            loop {
                let s = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                parts.push(chars[s..i].iter().collect::<String>());
                if i + 2 < chars.len()
                    && chars[i] == ':'
                    && chars[i + 1] == ':'
                    && (chars[i + 2].is_alphabetic() || chars[i + 2] == '_')
                {
                    i += 2;
                } else {
                    break;
                }
            }
            if parts.len() > 1 {
                out.push((start, parts));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The leaves of a `use` tree: `a::{b, c::{d, e}}` is `a::b`, `a::c::d`, `a::c::e`.
fn expand_tree(tree: &str) -> Vec<Vec<String>> {
    // `x as y` names x.
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut kept = String::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" {
            let alias = words.get(i + 1).copied().unwrap_or("");
            kept.push_str(alias.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'));
            i += 2;
            continue;
        }
        kept.push_str(words[i]);
        i += 1;
    }
    let tree = kept;
    let mut out = Vec::new();
    expand(&tree, &mut Vec::new(), &mut out);
    out
}

fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head: Vec<String> =
            tree[..open].trim_end_matches("::").split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let n = head.len();
        prefix.extend(head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], prefix, out);
        prefix.truncate(prefix.len() - n);
    } else if !tree.is_empty() {
        let mut leaf = prefix.clone();
        leaf.extend(tree.split("::").filter(|s| !s.is_empty() && *s != "*").map(str::to_string));
        if leaf.last().is_some_and(|s| s == "self") {
            leaf.pop();
        }
        out.push(leaf);
    }
}

/// A path as seen from `module` (`depth` levels inside it), from the crate's root;
/// `None` for a path into another crate or a local item.
fn absolute(module: &Module, depth: usize, path: &[String], children: &BTreeSet<String>) -> Option<Vec<String>> {
    let mut here: Vec<String> = module.clone();
    // Inside an inline module, `super` first climbs back to this file.
    let mut climb_free = depth;
    let mut parts = path.iter().peekable();
    match parts.peek().map(|s| s.as_str()) {
        Some("crate") => {
            parts.next();
            here.clear();
        }
        Some("super") | Some("self") => {
            while let Some(part) = parts.peek() {
                match part.as_str() {
                    "super" if climb_free > 0 => climb_free -= 1,
                    "super" => {
                        here.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                parts.next();
            }
        }
        Some(first) if children.contains(first) => {}
        _ => return None,
    }
    here.extend(parts.cloned());
    Some(here)
}

fn cli_layer(module: &Module) -> (String, u32) {
    let first = module.first().map_or("main", |s| s.as_str());
    let rank = CLI_LAYERS
        .iter()
        .find(|(name, _)| *name == first)
        .unwrap_or_else(|| panic!("cli/src/{first}: no layer; give it one in cli/tests/layers.rs"))
        .1;
    let group = if first == "args" { "main" } else { first };
    (group.to_string(), rank)
}

fn core_layer(module: &Module) -> (String, u32) {
    let first = module.first().map_or("lib", |s| s.as_str());
    let (_, group, rank) = CORE_LAYERS
        .iter()
        .find(|(name, ..)| *name == first)
        .unwrap_or_else(|| panic!("src/{first}.rs: no layer; give it one in cli/tests/layers.rs"));
    (group.to_string(), *rank)
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "(root)".into()
    } else {
        module.join("::")
    }
}

/// Imports that reach up, or sideways into another layer of the same height.
fn upward(imports: &BTreeMap<Module, BTreeSet<Module>>, layer: fn(&Module) -> (String, u32)) -> Vec<String> {
    let mut out = Vec::new();
    for (from, targets) in imports {
        let (from_group, from_rank) = layer(from);
        for to in targets {
            let (to_group, to_rank) = layer(to);
            if to_group != from_group && to_rank >= from_rank {
                out.push(format!("{} ({from_group}) imports {} ({to_group})", name(from), name(to)));
            }
        }
    }
    out
}

/// Every circle of imports between files.
fn circles(imports: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<String> {
    let mut out = Vec::new();
    let mut done: BTreeSet<&Module> = BTreeSet::new();
    for start in imports.keys() {
        let mut stack: Vec<&Module> = Vec::new();
        visit(start, imports, &mut stack, &mut done, &mut out);
    }
    out
}

fn visit<'a>(
    module: &'a Module,
    imports: &'a BTreeMap<Module, BTreeSet<Module>>,
    stack: &mut Vec<&'a Module>,
    done: &mut BTreeSet<&'a Module>,
    out: &mut Vec<String>,
) {
    if let Some(at) = stack.iter().position(|m| *m == module) {
        let mut circle: Vec<String> = stack[at..].iter().map(|m| name(m)).collect();
        circle.push(name(module));
        out.push(circle.join(" -> "));
        return;
    }
    if done.contains(module) {
        return;
    }
    stack.push(module);
    for next in imports.get(module).into_iter().flatten() {
        visit(next, imports, stack, done, out);
    }
    stack.pop();
    done.insert(module);
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn the_command_imports_only_downwards_and_in_no_circle() {
    let krate = Crate::read(&root().join("cli/src"));
    let imports = krate.imports();
    assert!(imports.len() > 40, "the command's files were not found: {}", imports.len());
    let up = upward(&imports, cli_layer);
    assert!(up.is_empty(), "imports of a higher (or a neighbouring) layer:\n{}", up.join("\n"));
    let found = circles(&imports);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_core_imports_only_downwards_and_in_no_circle() {
    let krate = Crate::read(&root().join("src"));
    let imports = krate.imports();
    assert!(imports.len() > 20, "the core's files were not found: {}", imports.len());
    let up = upward(&imports, core_layer);
    assert!(up.is_empty(), "imports of a higher (or a neighbouring) layer:\n{}", up.join("\n"));
    let found = circles(&imports);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn only_the_reporter_prints() {
    let krate = Crate::read(&root().join("cli/src"));
    let printing: Vec<String> = krate
        .files
        .iter()
        .filter(|(module, code)| {
            let allowed = module.is_empty() || module.join("::") == "shared::reporter";
            !allowed && (code.contains("println!") || code.contains("print!("))
        })
        .map(|(module, _)| name(module))
        .collect();
    assert!(printing.is_empty(), "print through shared::reporter (note!, say!), not println!: {printing:?}");
}

#[test]
fn the_reader_sees_what_a_file_imports() {
    let code = code_only(
        "use crate::a::{b, c::{d, self}};\n// use crate::z;\nfn f() { let s = \"crate::y\"; super::e::f(); }\n",
    );
    let leaves: Vec<String> = paths_in(&code).into_iter().map(|(_, p)| p.join("::")).collect();
    assert!(leaves.contains(&"crate::a::b".to_string()), "{leaves:?}");
    assert!(leaves.contains(&"crate::a::c::d".to_string()), "{leaves:?}");
    assert!(leaves.contains(&"crate::a::c".to_string()), "{leaves:?}");
    assert!(leaves.contains(&"super::e::f".to_string()), "{leaves:?}");
    assert!(!leaves.iter().any(|l| l.contains('z') || l.contains('y')), "{leaves:?}");
}

/// Each `Result<…, String>` in a file's code (its error a bare message), as written:
/// generics nested in the value are read through, `StoreResult<…>` and the like are not
/// `Result<`, and a one-argument `io::Result<String>` has no error type to look at.
fn string_errors(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("Result<") {
        let at = from + found;
        from = at + "Result<".len();
        let start = code[..at].chars().count();
        if prev_is_ident(&chars, start) {
            continue;
        }
        // The arguments between `Result<` and its `>`, split at the commas of its level.
        let (mut depth, mut args, mut arg) = (0i32, Vec::new(), String::new());
        for i in start + "Result<".len()..chars.len() {
            let c = chars[i];
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' if chars[i - 1] == '-' => {}
                '>' | ')' | ']' if depth > 0 => depth -= 1,
                '>' => break,
                ',' if depth == 0 => {
                    args.push(std::mem::take(&mut arg));
                    continue;
                }
                _ => {}
            }
            arg.push(c);
        }
        args.push(arg);
        let error: String = args.last().unwrap().split_whitespace().collect();
        let error =
            error.trim_start_matches("::").trim_start_matches("std::string::").trim_start_matches("alloc::string::");
        if args.len() > 1 && error == "String" {
            out.push(format!("Result<{}>", args.iter().map(|a| a.trim()).collect::<Vec<_>>().join(", ")));
        }
    }
    out
}

#[test]
fn no_result_of_the_command_has_a_string_for_its_error() {
    let krate = Crate::read(&root().join("cli/src"));
    let found: Vec<String> = krate
        .files
        .iter()
        .flat_map(|(module, code)| string_errors(code).into_iter().map(move |r| format!("{}: {r}", name(module))))
        .collect();
    assert!(
        found.is_empty(),
        "give these an error type of their layer (e.g. sources::error, store::error, commands::exit), not a String:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_reader_sees_a_string_for_an_error() {
    let code = code_only(
        "fn a() -> Result<(), String> {}\ntype B = Result<Vec<u8>, String>;\nfn c() -> Result<HashMap<String, (u8, \
         String)>, std::string::String> {}\nfn d() -> Result<fn(u8) -> u8, String> {}\n// Result<(), String>\nfn e() \
         -> StoreResult<String> {}\nfn f() -> io::Result<String> {}\nfn g() -> Result<String, StoreError> {}\nfn h() \
         -> Result<Option<String>, CommandError> {}\nlet s = \"Result<(), String>\";\n",
    );
    assert_eq!(
        string_errors(&code),
        [
            "Result<(), String>",
            "Result<Vec<u8>, String>",
            "Result<HashMap<String, (u8, String)>, std::string::String>",
            "Result<fn(u8) -> u8, String>"
        ]
    );
}
