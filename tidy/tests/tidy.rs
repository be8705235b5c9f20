//! The tidy checks, run over the workspace's source files as text. Each failure lists every offender
//! as `file:line`, what is wrong and how to fix it; each check also asserts that it scanned a
//! plausible amount of code, so that a broken scanner cannot pass by finding nothing.
//!
//! Run with `cargo test -p tidy`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use tidy::{
    cycle_offenders, declared_modules, functions, layout_offenders, listed_names, markdown_section,
    module_edges, module_path, report, test_code, workspace_members, Offender,
};

/// The longest function allowed in the services and libraries, in lines (`fn` to `}`).
const MAX_FUNCTION_LINES: usize = 90;

/// Crates whose functions may be longer: test support and benchmarks, and tidy itself.
const LONG_FUNCTIONS_ALLOWED: &[&str] = &["harness", "bench", "faults", "tidy"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tidy lives one level below the workspace root")
        .to_path_buf()
}

/// A `.rs` file under a crate's `src/`.
struct SourceFile {
    /// Relative to the workspace root, for messages.
    path: String,
    /// Relative to the crate's `src/`, `/`-separated.
    in_src: String,
    text: String,
}

struct Crate {
    name: String,
    files: Vec<SourceFile>,
}

impl Crate {
    fn file(&self, in_src: &str) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.in_src == in_src)
    }

    /// Its files outside test-only file modules (`#[cfg(test)] mod x;` and everything below `x`).
    fn non_test_files(&self) -> Vec<&SourceFile> {
        let mut test_modules: Vec<Vec<String>> = Vec::new();
        for file in &self.files {
            let parent = module_path(&file.in_src).unwrap_or_default();
            for name in test_code(&file.text).file_modules {
                let mut module = parent.clone();
                module.push(name);
                test_modules.push(module);
            }
        }
        self.files
            .iter()
            .filter(|file| {
                let module = module_path(&file.in_src).unwrap_or_default();
                !test_modules.iter().any(|test| module.starts_with(test))
            })
            .collect()
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every workspace member (from the root `Cargo.toml`) with the `.rs` files under its `src/`.
fn crates() -> Vec<Crate> {
    let root = workspace_root();
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("the root Cargo.toml");
    let members = workspace_members(&manifest);
    assert!(
        members.len() >= 9,
        "tidy found only {members:?} as workspace members in the root Cargo.toml"
    );
    members
        .into_iter()
        .map(|name| {
            let src = root.join(&name).join("src");
            let mut paths = Vec::new();
            rust_files(&src, &mut paths);
            paths.sort();
            let files = paths
                .into_iter()
                .map(|path| SourceFile {
                    path: path
                        .strip_prefix(&root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .replace('\\', "/"),
                    in_src: path
                        .strip_prefix(&src)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .replace('\\', "/"),
                    text: fs::read_to_string(&path).expect("a readable source file"),
                })
                .collect();
            Crate { name, files }
        })
        .collect()
}

fn assert_none(check: &str, offenders: &[Offender]) {
    assert!(offenders.is_empty(), "{}", report(check, offenders));
}

#[test]
fn every_layout_section_names_the_crates_modules() {
    let mut roots = 0;
    let mut modules = 0;
    let mut offenders = Vec::new();
    for krate in crates() {
        let Some(lib) = krate.file("lib.rs") else {
            continue;
        };
        roots += 1;
        modules += declared_modules(&lib.text).len();
        offenders.extend(layout_offenders(&lib.path, &lib.text));
    }
    assert!(
        roots >= 9 && modules > 40,
        "scanned only {roots} crate roots declaring {modules} modules"
    );
    assert_none(
        &format!(
            "every module a crate root declares is named as [`x`] in its `//! # Layout` section \
             ({roots} crate roots, {modules} modules)"
        ),
        &offenders,
    );
}

#[test]
fn no_import_circle_between_a_crates_top_level_modules() {
    let mut files = 0;
    let mut edges_seen = 0;
    let mut offenders = Vec::new();
    for krate in crates() {
        let Some(lib) = krate.file("lib.rs") else {
            continue;
        };
        let modules: BTreeSet<String> = declared_modules(&lib.text)
            .into_iter()
            .map(|m| m.name)
            .collect();
        let mut edges = Vec::new();
        for file in krate.non_test_files() {
            let Some(module) = module_path(&file.in_src) else {
                continue;
            };
            if !modules.contains(&module[0]) {
                continue;
            }
            files += 1;
            edges.extend(module_edges(&file.path, &module, &file.text, &modules));
        }
        edges_seen += edges.len();
        offenders.extend(cycle_offenders(&krate.name, &edges));
    }
    assert!(
        files > 50 && edges_seen > 30,
        "scanned only {files} module files with {edges_seen} `crate::`/`super::` edges"
    );
    assert_none(
        &format!(
            "no import circle between the top-level modules of a crate, code outside #[cfg(test)] \
             ({files} files, {edges_seen} edges)"
        ),
        &offenders,
    );
}

#[test]
fn no_function_over_90_lines_in_services_and_libraries() {
    let mut scanned = 0;
    let mut offenders = Vec::new();
    for krate in crates() {
        if LONG_FUNCTIONS_ALLOWED.contains(&krate.name.as_str()) {
            continue;
        }
        for file in krate.non_test_files() {
            for function in functions(&file.text) {
                scanned += 1;
                if function.length > MAX_FUNCTION_LINES {
                    offenders.push(Offender {
                        file: file.path.clone(),
                        line: function.line,
                        what: format!(
                            "fn `{}` is {} lines long (at most {MAX_FUNCTION_LINES})",
                            function.name, function.length
                        ),
                        fix: "split it: give each step its own function, or move a long match \
                              arm's body into one"
                            .to_owned(),
                    });
                }
            }
        }
    }
    assert!(scanned > 300, "measured only {scanned} functions");
    assert_none(
        &format!(
            "no function over {MAX_FUNCTION_LINES} lines outside harness and tidy, code outside \
             #[cfg(test)] ({scanned} functions)"
        ),
        &offenders,
    );
}

#[test]
fn readme_lists_exactly_the_known_event_types() {
    let file = "README.md";
    let readme = fs::read_to_string(workspace_root().join(file)).expect("README.md");
    let Some((start, lines)) = markdown_section(&readme, "Events") else {
        panic!("{file} has no \"Events\" section (a `## Events` heading)");
    };
    let listed = listed_names(start, &lines);
    let known = schemas::events::KNOWN_EVENT_TYPES;
    assert!(
        known.len() >= 12,
        "schemas knows only {known:?}: the README check would check too little"
    );
    let mut offenders = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, line) in &listed {
        if !known.contains(&name.as_str()) {
            offenders.push(Offender {
                file: file.to_owned(),
                line: *line,
                what: format!("lists `{name}`, which is not in schemas::KNOWN_EVENT_TYPES"),
                fix: "remove the line, or spell the type as the envelope's `type` does".to_owned(),
            });
        } else if !seen.insert(name.as_str()) {
            offenders.push(Offender {
                file: file.to_owned(),
                line: *line,
                what: format!("lists `{name}` twice"),
                fix: "keep one line per event type".to_owned(),
            });
        }
    }
    for name in known.iter().filter(|name| !seen.contains(*name)) {
        offenders.push(Offender {
            file: file.to_owned(),
            line: start,
            what: format!("the Events section does not list `{name}`"),
            fix: format!(
                "add a line ``- `{name}` `{{payload fields}}`, keyed by …: what it means`` to the \
                 section's list (see schemas/src/events.rs)"
            ),
        });
    }
    assert_none(
        "README's Events section lists every event type once (`- `type` …` lines)",
        &offenders,
    );
}
