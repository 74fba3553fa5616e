//! The manual against the code: every generated reference page is what the binary prints now,
//! every relative link and every `§` reference in the book, the README and the code resolves
//! inside the repository, and every command's help names the book page that covers it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, repo};

fn magpipe(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .current_dir(repo())
        .env_remove("MAGPIPE_STORE")
        .env_remove("MAGPIPE_EXECUTOR")
        .output()
        .expect("magpipe runs");
    assert!(
        out.status.success(),
        "magpipe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The first line where two texts differ, for a failure message a maintainer can act on.
fn first_difference(committed: &str, generated: &str) -> String {
    let (a, b): (Vec<_>, Vec<_>) = (committed.lines().collect(), generated.lines().collect());
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            return format!(
                "line {}: committed {:?}, the binary prints {:?}",
                i + 1,
                x.unwrap_or(&"<end>"),
                y.unwrap_or(&"<end>")
            );
        }
    }
    "only in line endings".to_string()
}

#[test]
fn the_committed_reference_pages_are_what_the_binary_generates() {
    for (page, file) in [
        ("cli", "cli.md"),
        ("kinds", "kinds.md"),
        ("contracts", "contracts.md"),
        ("schemas", "schemas.md"),
    ] {
        let path = repo().join("docs/src/reference").join(file);
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let generated = magpipe(&["docs", "print", page]);
        assert!(
            committed == generated,
            "docs/src/reference/{file} is stale ({}); run `make docs` or `magpipe docs write`",
            first_difference(&committed, &generated)
        );
    }
    // `kinds --format md` is the same page, and `docs write --check` agrees with this test.
    assert_eq!(
        magpipe(&["kinds", "--format", "md"]),
        magpipe(&["docs", "print", "kinds"])
    );
    let check = Command::new(bin())
        .args(["docs", "write", "--check"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn docs_write_check_names_a_stale_page_and_write_mends_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap()
    };
    let d = dir.path().to_str().unwrap();
    let missing = r(&["docs", "write", "--check", d]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("cli.md") && err.contains("make docs"), "{err}");
    assert!(
        !dir.path().join("cli.md").exists(),
        "--check writes nothing"
    );
    assert!(r(&["docs", "write", d]).status.success());
    std::fs::write(dir.path().join("kinds.md"), "# an old page\n").unwrap();
    let stale = r(&["docs", "write", "--check", d]);
    let err = String::from_utf8_lossy(&stale.stderr).to_string();
    assert_eq!(stale.status.code(), Some(1), "{err}");
    assert!(err.contains("kinds.md") && !err.contains("cli.md"), "{err}");
    assert!(r(&["docs", "write", d]).status.success());
    assert!(r(&["docs", "write", "--check", d]).status.success());
}

#[test]
fn the_kinds_page_documents_every_param_of_every_kind_with_its_type() {
    let page = magpipe(&["kinds", "--format", "md"]);
    // A kind's params table, and one param's row in it.
    let row = |kind: &str, param: &str| -> String {
        let section = page
            .split(&format!("\n## {kind}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no section for {kind}"));
        let section = section.split("\n## ").next().unwrap();
        // A free-form params map is one sentence, not a row.
        if param == "params" && section.contains("**Params**: free-form, any names under `params:`")
        {
            return "| `params` | free-form map | |".to_string();
        }
        // The stage-keys and params tables come last in a section, after inputs and outputs.
        let start = ["**Stage keys**", "**Params**"]
            .iter()
            .filter_map(|t| section.find(t))
            .min()
            .expect("a params table");
        section[start..]
            .lines()
            .map(str::to_string)
            .find(|l| l.starts_with(&format!("| `{param}` |")))
            .unwrap_or_else(|| panic!("{kind}: no row for param {param}"))
    };
    // Every kind the binary registers has its section, and every param its row with a type.
    let text = magpipe(&["kinds"]);
    let mut kind = String::new();
    let mut params = 0;
    for line in text.lines() {
        if line.starts_with("Artifact contracts") {
            break;
        }
        if !line.starts_with(' ') && line.contains(" (v") {
            kind = line.split(' ').next().unwrap().to_string();
        }
        if let Some(rest) = line
            .trim_start()
            .strip_prefix("param  ")
            .or_else(|| line.trim_start().strip_prefix("key    "))
        {
            let name = rest.split_whitespace().next().unwrap();
            let r = row(&kind, name);
            let ty = r.split(" | ").nth(1).unwrap_or("");
            assert!(
                !ty.is_empty() && ty != "any",
                "{kind}.{name} has no type: {r}"
            );
            params += 1;
        }
    }
    assert!(params > 80, "only {params} params found");
    // Types come from the param structs: an enum's values, a nullable number, a documented field.
    let mode = row("split_ars", "mode");
    for v in ["`fixed`", "`random`", "`kfold`"] {
        assert!(mode.contains(v), "{mode}");
    }
    let scale = row("train", "loss_scale");
    assert!(scale.contains("null") && scale.contains("×100"), "{scale}");
    assert!(row("train", "model").contains("`MagFluxEnc-Dec`"));
    assert!(row("command", "sandbox").contains("`strict`"));
}

#[test]
fn the_schemas_page_holds_valid_json_schemas_of_what_forecast_runs_and_compare_write() {
    let page = magpipe(&["docs", "print", "schemas"]);
    let blocks: Vec<serde_json::Value> = page
        .split("```json\n")
        .skip(1)
        .map(|b| serde_json::from_str(b.split("\n```").next().unwrap()).expect("valid JSON"))
        .collect();
    assert_eq!(
        blocks.len(),
        7,
        "forecast, replay, runs, comparison, status, lineage, events"
    );
    let fields = |s: &serde_json::Value| -> BTreeSet<String> {
        s["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let forecast = fields(&blocks[0]);
    for f in [
        "schema",
        "model",
        "ar",
        "issued_at",
        "data",
        "geometry",
        "criterion",
        "tiles",
        "summary",
    ] {
        assert!(
            forecast.contains(f),
            "forecast schema lacks {f}: {forecast:?}"
        );
    }
    assert!(fields(&blocks[1]).contains("successes"));
    // What the Python package reads: a run with its stages' results, and a comparison.
    let run = fields(&blocks[2]["$defs"]["RunResults"]);
    for f in [
        "variant",
        "base_variant",
        "overrides",
        "results",
        "started_unix",
    ] {
        assert!(run.contains(f), "runs schema lacks {f}: {run:?}");
    }
    let comparison = fields(&blocks[3]);
    for f in ["variants", "params", "metrics", "stale", "first_detail"] {
        assert!(
            comparison.contains(f),
            "comparison schema lacks {f}: {comparison:?}"
        );
    }
    assert!(blocks[4].to_string().contains("on_remote_signer"));
    let lineage = fields(&blocks[5]);
    for f in ["target", "stages", "raw_files", "lineage_hash"] {
        assert!(lineage.contains(f), "lineage schema lacks {f}: {lineage:?}");
    }
    let events = blocks[6].to_string();
    for e in ["stage_started", "stage_finished", "run_finished"] {
        assert!(events.contains(e), "events schema lacks {e}");
    }
}

#[test]
fn every_command_help_names_its_book_page_and_the_page_exists() {
    let top = magpipe(&["--help"]);
    let subcommands: Vec<String> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(subcommands.len() >= 14, "{subcommands:?}");
    for args in std::iter::once(vec!["--help".to_string()]).chain(
        subcommands
            .iter()
            .map(|c| vec![c.clone(), "--help".to_string()]),
    ) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let help = magpipe(&args);
        let line = help
            .lines()
            .find(|l| l.starts_with("Book: "))
            .unwrap_or_else(|| panic!("`magpipe {}` names no book page", args.join(" ")));
        let page = line["Book: ".len()..].split_whitespace().next().unwrap();
        assert!(
            repo().join(page).is_file(),
            "`magpipe {}` points at {page}, which does not exist",
            args.join(" ")
        );
    }
}

/// Every Markdown file of the manual: the README and the book's sources.
fn manual() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut stack = vec![repo().join("docs/src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The anchors mdBook gives a page's headings (lower case; letters, digits, `-` and `_` kept;
/// spaces to `-`; repeats numbered), plus explicit `<a id="…">`s.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fence = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        if fence {
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            let title = h.trim_start_matches('#').trim();
            let base: String = title
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => c.to_lowercase().next(),
                    _ => None,
                })
                .collect();
            let mut id = base.clone();
            let mut n = 1;
            while seen.contains(&id) {
                id = format!("{base}-{n}");
                n += 1;
            }
            seen.insert(id);
        }
        for part in line.split("<a id=\"").skip(1) {
            if let Some(id) = part.split('"').next() {
                seen.insert(id.to_string());
            }
        }
    }
    seen
}

/// `[text](target)` links outside code, as (line number, target).
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            fence = !fence;
        }
        if fence {
            continue;
        }
        // Inline code may show link syntax as an example; it is not a link.
        let plain: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((i + 1, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_manual_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in manual() {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(repo()).unwrap().display().to_string();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !dest.exists() {
                broken.push(format!("{rel}:{line}: {target}: no such file"));
                continue;
            }
            if let Some(a) = anchor
                && dest.extension().is_some_and(|x| x == "md")
                && !anchors(&std::fs::read_to_string(&dest).unwrap()).contains(a)
            {
                broken.push(format!("{rel}:{line}: {target}: no heading #{a} there"));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The sections of docs/src/semantics.md: `## 10. Training` → "10", `### 1.2 The …` → "1.2".
fn semantics_sections() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/src/semantics.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("## ") || l.starts_with("### "))
        .filter_map(|l| {
            let n = l.trim_start_matches('#').trim().split([' ']).next()?;
            let n = n.trim_end_matches('.');
            n.chars()
                .all(|c| c.is_ascii_digit() || c == '.')
                .then(|| n.to_string())
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// Every `§n`, `§n.m`, `§n–m` and `§n, §m` in a text.
fn section_refs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for part in line.split('§').skip(1) {
            let n: String = part
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '–' || *c == '-')
                .collect();
            let n = n.trim_end_matches(['.', '-', '–']);
            // `§9–11`: both ends must exist.
            for one in n.split(['–', '-']) {
                out.push((i + 1, one.to_string()));
            }
        }
    }
    out
}

/// The code, the pipeline and the manual: every file that may cite the semantics.
fn citing_files() -> Vec<PathBuf> {
    let mut files = manual();
    let mut stack: Vec<PathBuf> = [
        "src", "engine", "stages", "worker", "tests", "bench", "models",
    ]
    .iter()
    .map(|d| repo().join(d))
    .collect();
    files.push(repo().join("pipeline.yaml"));
    files.push(repo().join("Makefile"));
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| {
                ["rs", "py", "sh", "yaml", "md", "toml"].contains(&&*x.to_string_lossy())
            }) {
                files.push(p);
            }
        }
    }
    files
}

#[test]
fn every_section_reference_resolves_in_the_semantics_page() {
    let sections = semantics_sections();
    for n in ["1", "1.1", "1.2", "10", "11", "16", "18"] {
        assert!(
            sections.contains(n),
            "semantics.md has no section {n}: {sections:?}"
        );
    }
    let mut broken = Vec::new();
    let mut cited = 0;
    for file in citing_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let rel = file.strip_prefix(repo()).unwrap().display().to_string();
        if rel == "tests/docs.rs" {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            // The reference file this project once cited lives outside the repository.
            if line.contains("SEMANTICS.md") || line.contains("SEMANTICS §") {
                broken.push(format!(
                    "{rel}:{}: cites SEMANTICS.md, not in the repository",
                    i + 1
                ));
            }
        }
        for (line, n) in section_refs(&text) {
            cited += 1;
            if !sections.contains(&n) {
                broken.push(format!(
                    "{rel}:{line}: §{n} is not a section of docs/src/semantics.md"
                ));
            }
        }
    }
    assert!(cited > 30, "only {cited} § references found");
    assert!(broken.is_empty(), "unresolved:\n{}", broken.join("\n"));
}

#[test]
fn the_book_lists_every_page_and_every_listed_page_exists() {
    let summary = std::fs::read_to_string(repo().join("docs/src/SUMMARY.md")).unwrap();
    let listed: BTreeSet<PathBuf> = links(&summary)
        .into_iter()
        .map(|(_, t)| Path::new(&t).to_path_buf())
        .collect();
    let on_disk: BTreeSet<PathBuf> = manual()
        .into_iter()
        .filter_map(|p| {
            p.strip_prefix(repo().join("docs/src"))
                .ok()
                .map(Path::to_path_buf)
        })
        .filter(|p| p != Path::new("SUMMARY.md"))
        .collect();
    assert_eq!(listed, on_disk, "SUMMARY.md and docs/src disagree");
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.lines().count() <= 250,
        "the README is a front page: {} lines",
        readme.lines().count()
    );
}
