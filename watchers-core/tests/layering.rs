//! The crate's top-level modules depend on each other in one direction, except for the
//! one cycle that lib.rs names: `event` -> `task` -> `local` -> `event` (and
//! `local` -> `task`).
//!
//! Reads the sources, collects each top-level module's references to its siblings
//! (`crate::m::…`, `use crate::{a, b::c}` groups, `super::` paths that climb to the
//! crate root, and names that lib.rs re-exports, reached as `crate::Name` or
//! `watchers_core::Name`) and checks the graph's strongly connected components and the
//! order that lib.rs's layering note gives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The cycle the layering keeps on purpose, as its edges: an `Event` borrows its `Task`,
/// a `Task` owns its per-task watchers, which are closures taking an `&Event`, and which
/// are attached to a `Task` (`Task::watch`, and the fork's bookkeeping on the child).
const KNOT: [(&str, &str); 4] = [
    ("event", "task"),
    ("task", "local"),
    ("local", "event"),
    ("local", "task"),
];

/// lib.rs's layering note, bottom to top: every edge points to an earlier module,
/// except the knot's `task -> local`.
const LAYERS: [&str; 19] = [
    "event_kind",
    "task_values",
    "location",
    "watcher_result",
    "gate",
    "routing",
    "inflight",
    "counter",
    "error",
    "task",
    "event",
    "local",
    "slot",
    "watcher",
    "runtime",
    "table",
    "register",
    "dispatch",
    "task_table",
];

#[test]
fn every_edge_points_down_the_layers_of_the_lib_rs_note() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let listed: BTreeSet<&str> = LAYERS.into_iter().collect();
    let modules: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    assert_eq!(
        listed, modules,
        "LAYERS and lib.rs's note name every module"
    );
    let layer = |m: &str| LAYERS.iter().position(|l| *l == m);
    let upward: Vec<(&str, &str)> = graph
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |to| (from.as_str(), to.as_str())))
        .filter(|&(from, to)| layer(to) >= layer(from) && (from, to) != ("task", "local"))
        .collect();
    assert!(upward.is_empty(), "edges against the layering: {upward:?}");
}

#[test]
fn top_level_modules_form_a_dag_but_for_the_task_knot() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // The premise: the reader finds edges that are known to exist.
    assert!(edge(&graph, "dispatch", "table"), "{}", show(&graph));
    assert!(edge(&graph, "task_table", "task"), "{}", show(&graph));

    let cycles: Vec<BTreeSet<String>> = components(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
    let knot: BTreeSet<String> = KNOT.iter().map(|(from, _)| from.to_string()).collect();
    assert_eq!(
        cycles,
        std::slice::from_ref(&knot),
        "the only cycle between modules should be the task knot\n{}",
        show(&graph)
    );
    let inside: BTreeSet<(String, String)> = graph
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |to| (from.clone(), to.clone())))
        .filter(|(from, to)| knot.contains(from) && knot.contains(to))
        .collect();
    let expected: BTreeSet<(String, String)> = KNOT
        .iter()
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .collect();
    assert_eq!(
        inside, expected,
        "the knot has an edge more than it needs, or lost one (then update KNOT and lib.rs)"
    );
}

#[test]
fn reader_sees_groups_super_paths_and_skips_comments_and_strings() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .map(String::from)
        .into();
    let source = r#"
        use crate::{a::X, b, self};
        use crate::c::{Y, Z};
        // crate::d::W in a comment
        /* crate::d::W /* nested */ crate::d::W */
        const S: &str = "crate::d::W";
        const R: &str = r"crate::d::W";
        fn f<'a>(x: &'a u8) -> char { let _ = crate::e::f(); let _ = '\''; '"' }
        fn g() { super::super::f::go(); super::ignored(); crate::h(); }
        mod inner { fn i() { super::super::super::g::go(); } }
    "#;
    let found = references(
        source,
        &["x".into(), "y".into()],
        &modules,
        &BTreeMap::new(),
    );
    let expected: BTreeSet<String> = ["a", "b", "c", "e", "f", "g"].map(String::from).into();
    assert_eq!(found, expected);
}

#[test]
fn reader_follows_root_re_exports() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
    let lib = "pub use a::{Alpha, Beta as B2};\npub use b::Gamma;\nmod c;\n";
    let roots = root_names(lib, &modules);
    assert_eq!(roots.get("B2").map(String::as_str), Some("a"));
    let source = r#"
        use crate::Alpha as _;
        use watchers_core::Gamma;
        fn f() { let _ = crate::{B2, d::X}; }
    "#;
    let found = references(source, &["c".into()], &modules, &roots);
    let expected: BTreeSet<String> = ["a", "b", "d"].map(String::from).into();
    assert_eq!(found, expected);
}

fn edge(graph: &Graph, from: &str, to: &str) -> bool {
    graph.get(from).is_some_and(|to_set| to_set.contains(to))
}

fn show(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(from, to)| {
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            format!("{from} -> {}\n", to.join(", "))
        })
        .collect()
}

/// Every top-level module of the crate rooted at `src`, with the siblings it refers to.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_path = |file: &Path| -> Vec<String> {
        let relative = file.strip_prefix(src).expect("under src");
        let mut path: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        let last = path.pop().expect("a file name");
        let stem = last.strip_suffix(".rs").expect("a .rs file");
        if stem != "mod" && stem != "lib" {
            path.push(stem.to_owned());
        }
        path
    };
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|file| module_path(file).first().cloned())
        .collect();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("readable lib.rs");
    let roots = root_names(&lib, &modules);
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let path = module_path(file);
        let Some(top) = path.first() else {
            continue; // lib.rs: the root re-exports everything.
        };
        let source = std::fs::read_to_string(file).expect("readable source");
        let found = references(&source, &path, &modules, &roots);
        let to = graph.get_mut(top).expect("known module");
        to.extend(found.into_iter().filter(|m| m != top));
    }
    graph
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Punct(char),
    PathSep,
}

/// Identifiers and punctuation, with comments, strings and char literals left out.
fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && raw_string_end(&chars, i).is_some()
        {
            i = raw_string_end(&chars, i).unwrap_or(chars.len());
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '"'), or a lifetime ('a), which is skipped too.
            if next == Some('\\') {
                // Past the quote, the backslash and the escaped character (which may be
                // a quote itself: '\'').
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && next == Some(':') {
            out.push(Token::PathSep);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// Where the raw string starting at `start` (`r"…"`, `r#"…"#`) ends, if it is one.
fn raw_string_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    if chars.get(i) != Some(&'"') {
        return None;
    }
    i += 1;
    while i < chars.len() {
        if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    Some(chars.len())
}

/// The top-level modules (of `modules`) that code in the file at module path `path`
/// refers to through the crate root, directly or by climbing with `super::`.
fn references(
    source: &str,
    path: &[String],
    modules: &BTreeSet<String>,
    roots: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let tokens = tokens(source);
    let mut found = BTreeSet::new();
    // The module path at each brace depth: inline `mod name { … }` blocks nest it.
    let mut scopes: Vec<(usize, Vec<String>)> = vec![(0, path.to_vec())];
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if scopes.len() > 1 && scopes.last().is_some_and(|(d, _)| *d > depth) {
                    scopes.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Punct('{'))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    let mut inner = scopes.last().map(|(_, p)| p.clone()).unwrap_or_default();
                    inner.push(name.clone());
                    scopes.push((depth + 1, inner));
                }
            }
            // `watchers_core` is the crate itself too (`extern crate self as …`).
            Token::Ident(word)
                if (word == "crate" || word == "watchers_core")
                    && tokens.get(i + 1) == Some(&Token::PathSep) =>
            {
                root_reference(&tokens, i + 2, modules, roots, &mut found);
            }
            Token::Ident(word) if word == "super" => {
                let here = scopes.last().map(|(_, p)| p.len()).unwrap_or_default();
                let mut climbed = 0;
                let mut j = i;
                while tokens.get(j) == Some(&Token::Ident("super".into()))
                    && tokens.get(j + 1) == Some(&Token::PathSep)
                {
                    climbed += 1;
                    j += 2;
                }
                if climbed >= here && climbed > 0 {
                    root_reference(&tokens, j, modules, roots, &mut found);
                }
                i = j.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Records the module a path that continues at the crate root from `at` names: `m::…`,
/// `m;`, `m as …`, a name lib.rs re-exports from `m`, or each entry of a `{…}` group.
/// `crate::f()` names no module.
fn root_reference(
    tokens: &[Token],
    at: usize,
    modules: &BTreeSet<String>,
    roots: &BTreeMap<String, String>,
    found: &mut BTreeSet<String>,
) {
    match tokens.get(at) {
        Some(Token::Ident(name)) if !modules.contains(name) && roots.contains_key(name) => {
            found.insert(roots[name].clone());
        }
        Some(Token::Ident(name)) if modules.contains(name) => {
            let names_module = match tokens.get(at + 1) {
                Some(Token::PathSep | Token::Punct(';' | ',' | '}')) => true,
                Some(Token::Ident(word)) => word == "as",
                _ => false,
            };
            if names_module {
                found.insert(name.clone());
            }
        }
        Some(Token::Punct('{')) => {
            // Each entry of the group starts after the `{` or after a `,` at its own level.
            let mut level = 0;
            let mut entry_start = true;
            for (k, token) in tokens.iter().enumerate().skip(at) {
                match token {
                    Token::Punct('{') => {
                        level += 1;
                        entry_start = level == 1;
                        continue;
                    }
                    Token::Punct('}') => {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    }
                    Token::Punct(',') if level == 1 => {
                        entry_start = true;
                        continue;
                    }
                    _ if entry_start && level == 1 => {
                        root_reference(tokens, k, modules, roots, found);
                    }
                    _ => {}
                }
                entry_start = false;
            }
        }
        _ => {}
    }
}

/// The names lib.rs re-exports from its own modules (`pub use m::Name;`,
/// `pub use m::{A, B as C};`), each with its module.
fn root_names(lib: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let tokens = tokens(lib);
    let mut names = BTreeMap::new();
    for (i, window) in tokens.windows(4).enumerate() {
        let [
            Token::Ident(public),
            Token::Ident(used),
            Token::Ident(module),
            Token::PathSep,
        ] = window
        else {
            continue;
        };
        if public != "pub" || used != "use" || !modules.contains(module) {
            continue;
        }
        let mut k = i + 4;
        let group = tokens.get(k) == Some(&Token::Punct('{'));
        if group {
            k += 1;
        }
        while let Some(Token::Ident(name)) = tokens.get(k) {
            let mut exported = name.clone();
            k += 1;
            if tokens.get(k) == Some(&Token::Ident("as".into())) {
                if let Some(Token::Ident(alias)) = tokens.get(k + 1) {
                    exported = alias.clone();
                }
                k += 2;
            }
            names.insert(exported, module.clone());
            if !group || tokens.get(k) != Some(&Token::Punct(',')) {
                break;
            }
            k += 1;
        }
    }
    names
}

/// Strongly connected components (Tarjan).
fn components(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct State<'g> {
        graph: &'g Graph,
        next: usize,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut state = State {
        graph,
        next: 0,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.out
}
