//! The crate's dependency order, checked: each top-level module uses only the modules below it
//! (the order the crate docs state), and no source files import each other in a circle.
//!
//! The check reads the sources: every `crate::a::b`, `super::` and `self::` path and every
//! relative `use child::...` outside comments and test modules, resolved to the file that
//! defines it. A module's own file (`mod.rs`) and its direct children count as one: the parent
//! declares what they share and re-exports what they define, so the edges between them are not
//! imports between modules. Everything else, siblings included, must not form a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first: a module may use only those before it.
const LAYERS: &[&str] = &[
    "error",
    "functions",
    "metrics",
    "config",
    "changelog",
    "state",
    "statement",
    "catalog",
    "connectors",
    "checkpoint",
    "physical",
    "planner",
    "context",
    "runtime",
    "cli",
    "server",
];

/// Every `.rs` file under `dir`, by module path (`physical/operator/mod.rs` is
/// `["physical", "operator"]`).
fn sources(root: &Path) -> BTreeMap<Vec<String>, (PathBuf, String)> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).expect("under src");
            let mut module: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            if module == ["lib"] || module == ["main"] {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            out.insert(module, (path, code_of(&text)));
        }
    }
    out
}

/// The code of a file without its comments and its test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths `code` (of module `module`) refers to: `crate::...`, `super::...` and, in
/// `use` trees, `self::...`, with braces expanded one level.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if at > 0 && code[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| is_ident(*c) || *c == ':')
                .collect();
            let mut parts: Vec<String> = path
                .split("::")
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            let mut absolute: Vec<String> = Vec::new();
            if parts.first().is_some_and(|p| p == "crate") {
                parts.remove(0);
            } else {
                absolute = module.to_vec();
                if parts.first().is_some_and(|p| p == "self") {
                    parts.remove(0);
                }
                while parts.first().is_some_and(|p| p == "super") {
                    parts.remove(0);
                    absolute.pop();
                }
            }
            absolute.extend(parts);
            // `crate::a::{b, c::d}`: each branch.
            let rest = &code[at + path.len()..];
            if path.ends_with("::") && rest.starts_with('{') {
                let inner: String = rest[1..].chars().take_while(|c| *c != '}').collect();
                for item in inner.split(',') {
                    let item: String = item
                        .trim()
                        .chars()
                        .take_while(|c| is_ident(*c) || *c == ':')
                        .collect();
                    let mut branch = absolute.clone();
                    branch.extend(
                        item.split("::")
                            .filter(|p| !p.is_empty())
                            .map(str::to_string),
                    );
                    out.push(branch);
                }
            } else {
                out.push(absolute);
            }
        }
    }
    // `use child::Item;`: a path relative to this module (one that names no child module, an
    // external crate, resolves to this file and is dropped).
    for statement in code.split(';') {
        let statement = statement.trim_start();
        let statement = statement.strip_prefix("pub ").unwrap_or(statement);
        let Some(path) = statement.strip_prefix("use ") else {
            continue;
        };
        let first: String = path
            .trim_start()
            .chars()
            .take_while(|c| is_ident(*c))
            .collect();
        if first.is_empty() || ["crate", "super", "self"].contains(&first.as_str()) {
            continue;
        }
        let mut relative = module.to_vec();
        relative.push(first);
        out.push(relative);
    }
    out
}

/// The file (module path) defining `path`: its longest prefix that is a file.
fn resolve<'a>(
    files: &'a BTreeMap<Vec<String>, (PathBuf, String)>,
    path: &[String],
) -> Option<&'a Vec<String>> {
    (1..=path.len())
        .rev()
        .find_map(|n| files.get_key_value(&path[..n]).map(|(k, _)| k))
}

/// Every file's imports of other files.
fn imports() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&root);
    let mut edges = BTreeMap::new();
    for (module, (_, code)) in &files {
        let targets: BTreeSet<Vec<String>> = references(module, code)
            .iter()
            .filter_map(|path| resolve(&files, path))
            .filter(|target| *target != module)
            // A module's own file (`mod.rs`) and its direct children are one module's
            // interface: the parent re-exports and uses them, they use what it declares.
            .filter(|target| {
                let parent_of =
                    |a: &[String], b: &[String]| b.len() == a.len() + 1 && b.starts_with(a);
                !parent_of(module, target) && !parent_of(target, module)
            })
            .cloned()
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

#[test]
fn modules_use_only_the_modules_below_them() {
    let mut wrong = Vec::new();
    for (module, targets) in imports() {
        let top = &module[0];
        let Some(rank) = LAYERS.iter().position(|l| l == top) else {
            wrong.push(format!("{} is not in LAYERS", top));
            continue;
        };
        for target in targets {
            let to = &target[0];
            if to == top {
                continue;
            }
            match LAYERS.iter().position(|l| l == to) {
                Some(r) if r < rank => {}
                _ => wrong.push(format!("{} uses {}", module.join("/"), target.join("/"))),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "against the dependency order:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let edges = imports();
    // Depth-first search for a back edge; reports one cycle.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                0 => {
                    if let Some(cycle) = visit(next, edges, state, stack) {
                        return Some(cycle);
                    }
                }
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    return Some(stack[from..].to_vec());
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(node, &edges, &mut state, &mut Vec::new())
        {
            let names: Vec<String> = cycle.iter().map(|m| m.join("/")).collect();
            panic!(
                "files import each other in a circle: {}",
                names.join(" -> ")
            );
        }
    }
}

#[test]
fn the_check_sees_imports() {
    // The reader itself: a `use` tree with braces, a `super::` path, a path in code.
    let module = vec![
        "physical".to_string(),
        "joins".to_string(),
        "window".to_string(),
    ];
    let code = "use crate::state::{backend::StateBackend, redistribute};\nuse super::state::SideCodec;\nuse stream::Open;\nlet x = crate::metrics::global();";
    let found = references(&module, code);
    let want: Vec<Vec<String>> = [
        vec!["state", "backend", "StateBackend"],
        vec!["state", "redistribute"],
        vec!["metrics", "global"],
        vec!["physical", "joins", "state", "SideCodec"],
        vec!["physical", "joins", "window", "stream"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    for w in &want {
        assert!(found.contains(w), "{w:?} not in {found:?}");
    }
    assert!(!imports().is_empty());
}
