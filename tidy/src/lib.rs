//! Tidy: checks that read the workspace's source files as text, in the manner of rust-analyzer's
//! `xtask tidy`. The scanners here are pure functions over text, unit-tested on tiny sources below so
//! that a check cannot pass by finding nothing; `tests/tidy.rs` runs them over the workspace and words
//! the failures (every offender as `file:line`, what is wrong, how to fix it).
//!
//! The scanners read rustfmt-formatted code and rely on its layout instead of parsing Rust: an item's
//! closing brace is the first line after it that is exactly `}` at the item's own indentation.
//!
//! # Layout
//! Everything is in this file (no modules): the `#[cfg(test)]` mask, `mod` declarations and the
//! `//! # Layout` section of a crate root, the edges between a crate's top-level modules and the circles
//! they close, function lengths, and the README's list of event types.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// One place a check objects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offender {
    /// Path relative to the workspace root.
    pub file: String,
    /// 1-based.
    pub line: usize,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Offender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}\n    fix: {}",
            self.file, self.line, self.what, self.fix
        )
    }
}

/// The failure message of a check: what it checks, then every offender.
pub fn report(check: &str, offenders: &[Offender]) -> String {
    let mut message = format!("tidy: {check}: {} offender(s)\n", offenders.len());
    for offender in offenders {
        message.push_str(&format!("  {offender}\n"));
    }
    message
}

/// The `members` of a root `Cargo.toml`'s `[workspace]`.
pub fn workspace_members(cargo_toml: &str) -> Vec<String> {
    let Some(start) = cargo_toml.find("members") else {
        return Vec::new();
    };
    let rest = &cargo_toml[start..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
        return Vec::new();
    };
    rest[open + 1..close]
        .split(',')
        .map(|member| member.trim().trim_matches('"').to_owned())
        .filter(|member| !member.is_empty())
        .collect()
}

/// The indentation of a line, in bytes of leading white space.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Where `#[cfg(test)]` code is in a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestCode {
    /// Per line (0-based): inside a `#[cfg(test)]` item, its attribute lines included.
    pub lines: Vec<bool>,
    /// File modules declared `#[cfg(test)] mod x;`: their files are test code too.
    pub file_modules: Vec<String>,
}

impl TestCode {
    /// Whether the 1-based `line` is test code.
    pub fn contains(&self, line: usize) -> bool {
        line >= 1 && self.lines.get(line - 1).copied().unwrap_or(false)
    }
}

/// Marks every `#[cfg(test)]` item: from the attribute to the item's end — the item line itself when
/// it ends in `;` or closes on its own line, else the first later line at the item's indentation that
/// is exactly `}` (or `};`, `]`, `];`, `)`, `);`).
pub fn test_code(text: &str) -> TestCode {
    let lines: Vec<&str> = text.lines().collect();
    let mut code = TestCode {
        lines: vec![false; lines.len()],
        file_modules: Vec::new(),
    };
    let mut i = 0;
    while i < lines.len() {
        if code.lines[i] || !lines[i].trim().starts_with("#[cfg(test)]") {
            i += 1;
            continue;
        }
        // The item: this line if it goes on after the attribute, else the first line after the
        // attributes and comments.
        let same_line = lines[i].trim().trim_start_matches("#[cfg(test)]").trim();
        let mut item = if same_line.is_empty() { i + 1 } else { i };
        while item > i && item < lines.len() && {
            let t = lines[item].trim();
            t.starts_with("#[") || t.starts_with("//") || t.is_empty()
        } {
            item += 1;
        }
        if item >= lines.len() {
            break;
        }
        let head = if item == i {
            same_line
        } else {
            lines[item].trim_end()
        };
        let end = if head.ends_with(';') || (head.contains('{') && head.ends_with('}')) {
            if let Some(name) = module_declaration(head) {
                code.file_modules.push(name);
            }
            item
        } else {
            let closing = &lines[item][..indent(lines[item])];
            (item + 1..lines.len())
                .find(|&j| {
                    let line = lines[j].trim_end();
                    line.strip_prefix(closing)
                        .is_some_and(|rest| matches!(rest, "}" | "};" | "]" | "];" | ")" | ");"))
                })
                .unwrap_or(lines.len() - 1)
        };
        for line in &mut code.lines[i..=end] {
            *line = true;
        }
        i = end + 1;
    }
    code
}

/// Strips visibility and qualifiers off an item line (`pub`, `pub(crate)`, `pub(in …)`, `async`,
/// `const`, `unsafe`, `extern "C"`), so that it starts with the item's keyword.
fn strip_qualifiers(mut item: &str) -> &str {
    loop {
        let before = item;
        if let Some(rest) = item.strip_prefix("pub(") {
            if let Some(close) = rest.find(')') {
                item = rest[close + 1..].trim_start();
            }
        }
        for prefix in [
            "pub ",
            "async ",
            "const ",
            "unsafe ",
            "extern \"C\" ",
            "default ",
        ] {
            if let Some(rest) = item.strip_prefix(prefix) {
                item = rest.trim_start();
            }
        }
        if item == before {
            return item;
        }
    }
}

/// The name of `mod x;` / `pub mod x;` / `pub(crate) mod x;` (a file module).
fn module_declaration(line: &str) -> Option<String> {
    let rest = strip_qualifiers(line.trim()).strip_prefix("mod ")?;
    let name = rest.trim().strip_suffix(';')?.trim();
    is_ident(name).then(|| name.to_owned())
}

/// The name of an inline module's opening line, `mod x {`.
fn inline_module(line: &str) -> Option<String> {
    let rest = strip_qualifiers(line.trim()).strip_prefix("mod ")?;
    let name = rest.trim().strip_suffix('{')?.trim();
    is_ident(name).then(|| name.to_owned())
}

fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A file module declared in a crate root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleDecl {
    pub name: String,
    /// 1-based.
    pub line: usize,
}

/// The file modules a crate root declares outside test code (`mod x;`, `pub mod x;`, …).
pub fn declared_modules(root: &str) -> Vec<ModuleDecl> {
    let tests = test_code(root);
    root.lines()
        .enumerate()
        .filter(|(i, _)| !tests.contains(i + 1))
        .filter_map(|(i, line)| {
            module_declaration(line).map(|name| ModuleDecl { name, line: i + 1 })
        })
        .collect()
}

/// The crate root's `//! # Layout` section: its heading's line and every ``[`name`]`` link in it with
/// its line, up to the next `//! #` heading or the end of the `//!` block.
pub fn layout_links(root: &str) -> Option<(usize, Vec<(String, usize)>)> {
    let lines: Vec<&str> = root.lines().collect();
    let heading = lines.iter().position(|l| l.trim() == "//! # Layout")?;
    let mut links = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(heading + 1) {
        let Some(doc) = line.trim().strip_prefix("//!") else {
            break;
        };
        if doc.trim_start().starts_with('#') {
            break;
        }
        let mut rest = doc;
        while let Some(open) = rest.find("[`") {
            let after = &rest[open + 2..];
            let Some(close) = after.find("`]") else {
                break;
            };
            links.push((after[..close].to_owned(), i + 1));
            rest = &after[close + 2..];
        }
    }
    Some((heading + 1, links))
}

/// Names a crate root declares as items, other than modules (`fn x`, `static X`, `use a::x`, …): a
/// lower-case ``[`x`]`` in the Layout section may name one of them instead of a module.
fn root_items(root: &str) -> BTreeSet<String> {
    let tokens = lex(root);
    let mut items = BTreeSet::new();
    let mut in_use = false;
    for (i, token) in tokens.iter().enumerate() {
        let Tok::Ident(word) = &token.tok else {
            in_use &= token.tok != Tok::Semi;
            continue;
        };
        if word == "use" {
            in_use = true;
        }
        let next = tokens.get(i + 1).map(|t| &t.tok);
        if in_use && next != Some(&Tok::PathSep) {
            items.insert(word.clone());
        }
        let keyword = [
            "fn",
            "static",
            "const",
            "struct",
            "enum",
            "trait",
            "type",
            "macro_rules",
        ];
        if keyword.contains(&word.as_str()) {
            if let Some(Tok::Ident(name)) = tokens.iter().skip(i + 1).find_map(|t| match &t.tok {
                Tok::Ident(_) => Some(&t.tok),
                Tok::Other => None,
                _ => Some(&t.tok),
            }) {
                items.insert(name.clone());
            }
        }
    }
    items
}

/// Check 1: the crate root's `//! # Layout` names every declared module as ``[`x`]``, and names none
/// that does not exist. A crate without modules needs no Layout section.
pub fn layout_offenders(file: &str, root: &str) -> Vec<Offender> {
    let modules = declared_modules(root);
    let mut offenders = Vec::new();
    let Some((heading, links)) = layout_links(root) else {
        if let Some(first) = modules.first() {
            let names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
            offenders.push(Offender {
                file: file.to_owned(),
                line: first.line,
                what: format!("no `//! # Layout` section, but modules {names:?} are declared"),
                fix: "add a `//! # Layout` section to the crate doc with a `//! - [`x`]: …` line per \
                      module"
                    .to_owned(),
            });
        }
        return offenders;
    };
    let named: BTreeSet<&str> = links.iter().map(|(name, _)| name.as_str()).collect();
    for module in &modules {
        if !named.contains(module.name.as_str()) {
            offenders.push(Offender {
                file: file.to_owned(),
                line: module.line,
                what: format!(
                    "module `{}` is not named in the `# Layout` section (line {heading})",
                    module.name
                ),
                fix: format!(
                    "add `//! - [`{}`]: what it is for.` to the Layout section",
                    module.name
                ),
            });
        }
    }
    let declared: BTreeSet<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    let items = root_items(root);
    for (name, line) in &links {
        let lower = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if lower && is_ident(name) && !declared.contains(name.as_str()) && !items.contains(name) {
            offenders.push(Offender {
                file: file.to_owned(),
                line: *line,
                what: format!("the `# Layout` section names [`{name}`], which is no module here"),
                fix: format!(
                    "drop [`{name}`] from the Layout section, or name the module it became"
                ),
            });
        }
    }
    offenders
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    tok: Tok,
    /// 1-based.
    line: usize,
}

/// Identifiers and the punctuation paths are made of; comments, strings and character literals are
/// dropped, so a path named in a comment or a string is no dependency.
fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a string whose opening quote is at `i`, ended by a quote and `hashes` hashes.
    let skip_string = |mut i: usize, hashes: usize, line: &mut usize| -> usize {
        i += 1;
        while i < chars.len() {
            match chars[i] {
                '\n' => *line += 1,
                '\\' if hashes == 0 => {
                    if at(i + 1) == '\n' {
                        *line += 1;
                    }
                    i += 1;
                }
                '"' if (1..=hashes).all(|h| at(i + h) == '#') => return i + 1 + hashes,
                _ => {}
            }
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        let raw_hashes = |start: usize| -> Option<usize> {
            let hashes = (start..).take_while(|&j| at(j) == '#').count();
            (at(start + hashes) == '"').then_some(hashes)
        };
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(i, 0, &mut line);
        } else if c == 'b' && at(i + 1) == '"' {
            i = skip_string(i + 1, 0, &mut line);
        } else if let (Some(hashes), true) = (raw_hashes(i + 1), c == 'r') {
            i = skip_string(i + 1 + hashes, hashes, &mut line);
        } else if let (Some(hashes), true) = (raw_hashes(i + 2), c == 'b' && at(i + 1) == 'r') {
            i = skip_string(i + 2 + hashes, hashes, &mut line);
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let quote = if c == 'b' { i + 1 } else { i };
            if at(quote + 1) == '\\' {
                // An escaped character: up to the closing quote.
                i = quote + 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(quote + 2) == '\'' {
                i = quote + 3;
            } else {
                // A lifetime or label: its name is lexed as an identifier, which is harmless.
                i = quote + 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            // `r#type`: a raw identifier.
            let start = if c == 'r' && at(i + 1) == '#' {
                i + 2
            } else {
                i
            };
            let mut end = start;
            while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            tokens.push(Token {
                tok: Tok::Ident(chars[start..end].iter().collect()),
                line,
            });
            i = end.max(i + 1);
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else {
            let tok = match c {
                ':' if at(i + 1) == ':' => {
                    i += 1;
                    Tok::PathSep
                }
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                _ => Tok::Other,
            };
            tokens.push(Token { tok, line });
            i += 1;
        }
    }
    tokens
}

/// The module path of a file under `src/` (`x.rs` → `[x]`, `x/y.rs` and `x/y/mod.rs` → `[x, y]`), or
/// `None` for crate roots (`lib.rs`, `main.rs`, `bin/**`).
pub fn module_path(relative_to_src: &str) -> Option<Vec<String>> {
    let path = relative_to_src.strip_suffix(".rs")?;
    if matches!(path, "lib" | "main") || path.starts_with("bin/") {
        return None;
    }
    let mut segments: Vec<String> = path.split('/').map(str::to_owned).collect();
    if segments.last().is_some_and(|s| s == "mod") {
        segments.pop();
    }
    (!segments.is_empty()).then_some(segments)
}

/// One place a top-level module names another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub file: String,
    /// 1-based.
    pub line: usize,
}

/// Check 2's edges: every place outside test code where the file at `module` (see [`module_path`])
/// names another of the crate's top-level `modules` through `crate::x` (also in `use crate::{x, y::z}`
/// groups) or a `super::` that reaches the crate root.
pub fn module_edges(
    file: &str,
    module: &[String],
    text: &str,
    modules: &BTreeSet<String>,
) -> Vec<Edge> {
    let Some(from) = module.first() else {
        return Vec::new();
    };
    let tests = test_code(text);
    // Inline modules (`mod x {`) deepen the path `super::` starts from.
    let mut inline: Vec<Vec<String>> = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        while stack
            .last()
            .is_some_and(|(level, _)| line.trim() == "}" && indent(line) == *level)
        {
            stack.pop();
        }
        inline.push(stack.iter().map(|(_, name)| name.clone()).collect());
        if let (Some(name), false) = (inline_module(line), tests.contains(i + 1)) {
            stack.push((indent(line), name));
        }
    }
    let tokens: Vec<Token> = lex(text)
        .into_iter()
        .filter(|t| !tests.contains(t.line))
        .collect();
    let ident = |i: usize| match tokens.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(word)) => Some(word.as_str()),
        _ => None,
    };
    let mut edges = Vec::new();
    let mut push = |to: &str, line: usize| {
        if to != from && modules.contains(to) {
            edges.push(Edge {
                from: from.clone(),
                to: to.to_owned(),
                file: file.to_owned(),
                line,
            });
        }
    };
    for i in 0..tokens.len() {
        let at_path_start = i == 0
            || !(tokens[i - 1].tok == Tok::PathSep
                || (i >= 2 && ident(i - 1) == Some("in") && tokens[i - 2].tok == Tok::Other));
        if !at_path_start {
            continue;
        }
        // Where the path starts: the crate root (`crate::`, or `super::` enough times), else skip.
        let mut next = i;
        match ident(i) {
            Some("crate") if tokens.get(i + 1).map(|t| &t.tok) == Some(&Tok::PathSep) => {
                next = i + 2;
            }
            Some("super") => {
                let line = tokens[i].line;
                let mut path: Vec<String> = module.to_vec();
                path.extend(inline.get(line - 1).cloned().unwrap_or_default());
                while ident(next) == Some("super")
                    && tokens.get(next + 1).map(|t| &t.tok) == Some(&Tok::PathSep)
                {
                    path.pop();
                    next += 2;
                }
                if next == i || !path.is_empty() {
                    continue;
                }
            }
            _ => continue,
        }
        match tokens.get(next).map(|t| &t.tok) {
            Some(Tok::Ident(to)) => push(to, tokens[next].line),
            Some(Tok::Open) => {
                // A group: the first segment of each top-level entry.
                let mut depth = 0;
                let mut expect_entry = true;
                for token in &tokens[next..] {
                    match &token.tok {
                        Tok::Open => {
                            depth += 1;
                            expect_entry = depth == 1;
                            continue;
                        }
                        Tok::Close => depth -= 1,
                        Tok::Comma if depth == 1 => {
                            expect_entry = true;
                            continue;
                        }
                        Tok::Ident(to) if expect_entry && depth == 1 => push(to, token.line),
                        _ => {}
                    }
                    expect_entry = false;
                    if depth == 0 {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    edges
}

/// Check 2's circles: for every edge that lies on one, the shortest circle through it, each circle
/// once, as its modules from the smallest name round to it again (`[a, b, a]`).
pub fn cycles(edges: &[Edge]) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for edge in edges {
        graph.entry(&edge.from).or_default().insert(&edge.to);
    }
    let mut found = BTreeSet::new();
    for (&a, targets) in &graph {
        for &b in targets {
            // Shortest path b → … → a.
            let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = VecDeque::from([b]);
            let mut seen = BTreeSet::from([b]);
            while let Some(node) = queue.pop_front() {
                if node == a {
                    break;
                }
                for &next in graph.get(node).into_iter().flatten() {
                    if seen.insert(next) {
                        previous.insert(next, node);
                        queue.push_back(next);
                    }
                }
            }
            if !seen.contains(a) {
                continue;
            }
            let mut back = vec![a];
            while let Some(&node) = back.last().and_then(|n| previous.get(n)) {
                back.push(node);
            }
            // back = [a, …, b]: the circle is a → b → … → a.
            let mut circle: Vec<&str> = vec![a];
            circle.extend(back.iter().rev().filter(|&&n| n != a));
            let smallest = (0..circle.len()).min_by_key(|&i| circle[i]).unwrap_or(0);
            circle.rotate_left(smallest);
            let mut circle: Vec<String> = circle.into_iter().map(str::to_owned).collect();
            circle.push(circle[0].clone());
            found.insert(circle);
        }
    }
    found.into_iter().collect()
}

/// Check 2's offenders: each circle, with every place each of its edges is made.
pub fn cycle_offenders(crate_name: &str, edges: &[Edge]) -> Vec<Offender> {
    cycles(edges)
        .into_iter()
        .map(|circle| {
            let mut places = Vec::new();
            for pair in circle.windows(2) {
                let at: Vec<String> = edges
                    .iter()
                    .filter(|e| e.from == pair[0] && e.to == pair[1])
                    .map(|e| format!("{}:{}", e.file, e.line))
                    .collect();
                places.push(format!("{} → {} at {}", pair[0], pair[1], at.join(", ")));
            }
            let first = edges
                .iter()
                .find(|e| e.from == circle[0] && e.to == circle[1]);
            Offender {
                file: first.map(|e| e.file.clone()).unwrap_or_default(),
                line: first.map_or(0, |e| e.line),
                what: format!(
                    "import circle in {crate_name}: {}\n      {}",
                    circle.join(" → "),
                    places.join("\n      ")
                ),
                fix: "break one edge: move what both sides need into one of them (or a new module \
                      below both), or pass it in instead of importing it"
                    .to_owned(),
            }
        })
        .collect()
}

/// A function outside test code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// 1-based line of `fn`.
    pub line: usize,
    /// Lines from `fn` to the closing brace, both included.
    pub length: usize,
}

/// Check 3's functions: every line whose trimmed start is `fn NAME` (after `pub`, `pub(crate)`,
/// `async`, `const`, `unsafe`), up to the next line at its indentation that is exactly `}`. Bodiless
/// declarations (a `;` before any line ends in `{`) and test code are skipped.
pub fn functions(text: &str) -> Vec<Function> {
    let tests = test_code(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if tests.contains(i + 1) {
            continue;
        }
        let Some(rest) = strip_qualifiers(line.trim_start()).strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !is_ident(&name) {
            continue;
        }
        let closing = format!("{}}}", &line[..indent(line)]);
        let mut end = None;
        let mut opened = false;
        for (j, next) in lines.iter().enumerate().skip(i) {
            let next = next.trim_end();
            if (j == i && next.contains('{') && next.ends_with('}')) || (j > i && next == closing) {
                end = Some(j);
                break;
            }
            // Once the body is open, only its closing brace ends the function.
            opened |= next.ends_with('{');
            if !opened && next.ends_with(';') {
                break;
            }
        }
        if let Some(end) = end {
            found.push(Function {
                name,
                line: i + 1,
                length: end - i + 1,
            });
        }
    }
    found
}

/// The lines of a Markdown section (after its heading, up to the next heading of its level or
/// above; headings inside fenced code blocks do not count), with the 1-based line of the first.
pub fn markdown_section<'a>(text: &'a str, title: &str) -> Option<(usize, Vec<&'a str>)> {
    let mut in_code = false;
    let mut section: Option<(usize, usize, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let level = line.chars().take_while(|&c| c == '#').count();
        let heading = !in_code && level > 0 && line[level..].starts_with(' ');
        match &mut section {
            None if heading && line[level..].trim() == title => {
                section = Some((level, i + 2, vec![]))
            }
            Some((own, _, _)) if heading && level <= *own => break,
            Some((_, _, lines)) => lines.push(line),
            None => {}
        }
    }
    section.map(|(_, start, lines)| (start, lines))
}

/// Check 4's list: the list items of a section that start with a code span (``- `name` …``), each
/// name with its 1-based line.
pub fn listed_names(start: usize, lines: &[&str]) -> Vec<(String, usize)> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let rest = line.strip_prefix("- `")?;
            let name = &rest[..rest.find('`')?];
            Some((name.to_owned(), start + i))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(lines: &[&str]) -> String {
        lines.join("\n") + "\n"
    }

    fn names(modules: &[&str]) -> BTreeSet<String> {
        modules.iter().map(|m| m.to_string()).collect()
    }

    #[test]
    fn members_are_read_from_the_workspace_table() {
        let toml =
            "[workspace]\nresolver = \"2\"\nmembers = [\n    \"schemas\",\n    \"tidy\",\n]\n";
        assert_eq!(workspace_members(toml), ["schemas", "tidy"]);
    }

    #[test]
    fn a_test_module_is_masked_to_its_closing_brace() {
        let text = source(&[
            "fn a() {}",
            "#[cfg(test)]",
            "mod tests {",
            "    fn b() {",
            "    }",
            "}",
            "fn c() {}",
            "#[cfg(test)]",
            "mod more;",
            "#[cfg(test)] use crate::x;",
            "fn d() {}",
        ]);
        let code = test_code(&text);
        let masked: Vec<usize> = (1..=11).filter(|&l| code.contains(l)).collect();
        assert_eq!(masked, [2, 3, 4, 5, 6, 8, 9, 10]);
        assert_eq!(code.file_modules, ["more"]);
    }

    #[test]
    fn declared_modules_skip_inline_and_test_modules() {
        let root = source(&[
            "pub mod a;",
            "mod b;",
            "pub(crate) mod c;",
            "mod inline {",
            "}",
            "#[cfg(test)]",
            "mod tests;",
        ]);
        let found: Vec<String> = declared_modules(&root)
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(found, ["a", "b", "c"]);
    }

    #[test]
    fn the_layout_must_name_every_module_and_only_modules() {
        let root = source(&[
            "//! A crate.",
            "//!",
            "//! # Layout",
            "//! - [`a`]: the first; [`Thing`] and [`helper`] are items.",
            "//! - [`gone`]: was removed.",
            "//!",
            "//! # Other",
            "//! - [`b`] is named outside the Layout section.",
            "pub mod a;",
            "mod b;",
            "pub use a::helper;",
        ]);
        let offenders = layout_offenders("x/src/lib.rs", &root);
        let found: Vec<(usize, &str)> = offenders
            .iter()
            .map(|o| (o.line, o.what.as_str()))
            .collect();
        assert_eq!(offenders.len(), 2, "{found:?}");
        assert!(found[0].0 == 10 && found[0].1.contains("`b`"), "{found:?}");
        assert!(
            found[1].0 == 5 && found[1].1.contains("[`gone`]"),
            "{found:?}"
        );
    }

    #[test]
    fn a_crate_with_modules_needs_a_layout_section() {
        let offenders = layout_offenders("x/src/lib.rs", "//! A crate.\nmod a;\n");
        assert_eq!(offenders.len(), 1);
        assert!(offenders[0].what.contains("no `//! # Layout`"));
        assert!(layout_offenders("x/src/lib.rs", "//! No modules.\nfn f() {}\n").is_empty());
    }

    #[test]
    fn module_paths_of_files() {
        assert_eq!(module_path("a.rs"), Some(vec!["a".to_owned()]));
        assert_eq!(
            module_path("a/b/mod.rs"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(module_path("lib.rs"), None);
        assert_eq!(module_path("main.rs"), None);
        assert_eq!(module_path("bin/tool.rs"), None);
    }

    #[test]
    fn edges_come_from_crate_paths_groups_and_super_at_the_root() {
        let modules = names(&["a", "b", "c", "d", "e", "f"]);
        let text = source(&[
            "use crate::b::Thing;",
            "use crate::{",
            "    c::{One, Two},",
            "    self as root,",
            "    d,",
            "};",
            "// crate::f in a comment, and in a string:",
            "const S: &str = \"crate::f\";",
            "fn g() -> char { let _ = crate::e::call(); 'x' }",
            "pub(crate) fn h() {}",
            "#[cfg(test)]",
            "mod tests {",
            "    use crate::f;",
            "}",
        ]);
        let edges = module_edges("k/src/a.rs", &["a".to_owned()], &text, &modules);
        let found: Vec<(&str, usize)> = edges.iter().map(|e| (e.to.as_str(), e.line)).collect();
        assert_eq!(found, [("b", 1), ("c", 3), ("d", 5), ("e", 9)]);

        // In a.rs, super:: is the crate root; in a/x.rs it is a, and super::super:: the root.
        let top = module_edges("k/src/a.rs", &["a".to_owned()], "use super::b;\n", &modules);
        assert_eq!(top.len(), 1);
        let sub = ["a".to_owned(), "x".to_owned()];
        let inner = module_edges("k/src/a/x.rs", &sub, "use super::b;\n", &modules);
        assert!(inner.is_empty(), "{inner:?}");
        let text = "use super::super::{b, c};\nfn f() { super::super::d::go() }\n";
        let outer = module_edges("k/src/a/x.rs", &sub, text, &modules);
        let found: Vec<&str> = outer.iter().map(|e| e.to.as_str()).collect();
        assert_eq!(found, ["b", "c", "d"]);
    }

    #[test]
    fn a_circle_is_found_with_the_place_of_each_edge() {
        let modules = names(&["a", "b", "c"]);
        let mut edges = module_edges("k/src/a.rs", &["a".to_owned()], "use crate::b;\n", &modules);
        edges.extend(module_edges(
            "k/src/b.rs",
            &["b".to_owned()],
            "use crate::c;\nfn f() { crate::a::g() }\n",
            &modules,
        ));
        edges.extend(module_edges(
            "k/src/c.rs",
            &["c".to_owned()],
            "use std::fs;\n",
            &modules,
        ));
        assert_eq!(cycles(&edges), [vec!["a", "b", "a"]]);
        let offenders = cycle_offenders("k", &edges);
        assert_eq!(offenders.len(), 1);
        let what = &offenders[0].what;
        assert!(what.contains("a → b → a"), "{what}");
        assert!(what.contains("a → b at k/src/a.rs:1"), "{what}");
        assert!(what.contains("b → a at k/src/b.rs:2"), "{what}");
    }

    #[test]
    fn a_longer_circle_is_reported_once() {
        let edge = |from: &str, to: &str| Edge {
            from: from.to_owned(),
            to: to.to_owned(),
            file: format!("k/src/{from}.rs"),
            line: 1,
        };
        let edges = [
            edge("b", "c"),
            edge("c", "a"),
            edge("a", "b"),
            edge("a", "d"),
        ];
        assert_eq!(cycles(&edges), [vec!["a", "b", "c", "a"]]);
        assert!(cycles(&[edge("a", "b"), edge("b", "c")]).is_empty());
    }

    #[test]
    fn a_91_line_function_is_measured_and_a_test_one_is_not() {
        let mut lines = vec![
            "impl X {",
            "    pub(crate) async fn long(",
            "        a: u8,",
            "    ) {",
        ];
        lines.extend(std::iter::repeat_n("        step();", 87));
        lines.extend([
            "    }",
            "    fn declared(&self);",
            "    const fn short() -> u8 { 1 }",
            "}",
        ]);
        lines.extend([
            "#[cfg(test)]",
            "mod tests {",
            "    fn hidden() {",
            "    }",
            "}",
        ]);
        let found = functions(&source(&lines));
        let summary: Vec<(&str, usize, usize)> = found
            .iter()
            .map(|f| (f.name.as_str(), f.line, f.length))
            .collect();
        assert_eq!(summary, [("long", 2, 91), ("short", 94, 1)]);
    }

    #[test]
    fn a_markdown_section_ends_at_its_next_heading_outside_code() {
        let text = source(&[
            "# Title",
            "## Events",
            "Types:",
            "```sh",
            "# a shell comment, not a heading",
            "```",
            "- `one` first",
            "### Detail",
            "- `two` second",
            "## Next",
            "- `three` third",
        ]);
        let (start, lines) = markdown_section(&text, "Events").unwrap();
        assert_eq!(start, 3);
        let listed = listed_names(start, &lines);
        assert_eq!(listed, [("one".to_owned(), 7), ("two".to_owned(), 9)]);
        assert!(markdown_section(&text, "Missing").is_none());
    }

    #[test]
    fn the_lexer_skips_comments_strings_and_characters() {
        let text = "/* crate::a /* nested */ */ let s = r#\"crate::b\"#; let c = '\"'; crate::c\n";
        let idents: Vec<String> = lex(text)
            .into_iter()
            .filter_map(|t| match t.tok {
                Tok::Ident(word) => Some(word),
                _ => None,
            })
            .collect();
        assert_eq!(idents, ["let", "s", "let", "c", "crate", "c"]);
    }
}
